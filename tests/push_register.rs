//! Setups that do not save() locally (a push gateway in front of another registrar): the script
//! tells the module about devices with push_register() and resumes held calls with push_resume().

use std::fs;
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::{caller_expecting, stat};
use testkit::*;

const TOKEN: &str = "cafe0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

fn gateway(setup: &Setup, push_url: &str) -> String {
    format!(
        "{pre}loadmodule \"sl.so\"\nloadmodule \"textops.so\"\nloadmodule \"pv.so\"\n\
         modparam(\"push\", \"auto_resume\", 0)\n\
         modparam(\"push\", \"app\", \"id=org.example.phone;provider=webhook;url={push_url}\")\n\
         modparam(\"push\", \"default_app\", \"org.example.phone\")\n\
         request_route {{\n\
           if (is_method(\"REGISTER\")) {{\n\
             push_register(); $var(reg) = $rc;\n\
             push_resume(); $var(res) = $rc;\n\
             append_to_reply(\"X-Push-Register: $var(reg)\\r\\nX-Push-Resume: $var(res)\\r\\n\");\n\
             sl_send_reply(\"200\", \"OK\");\n\
             exit;\n\
           }}\n\
           if (is_method(\"CANCEL\")) {{ if (t_check_trans()) t_relay(); exit; }}\n\
           if (is_method(\"ACK\")) {{ t_check_trans(); exit; }}\n\
           if (is_method(\"INVITE\")) {{\n\
             push_suspend();\n\
             if ($rc == -1) {{ sl_send_reply(\"404\", \"No Push Device\"); }}\n\
             exit;\n\
           }}\n\
         }}\n\
         route[PUSH_RESUME] {{\n  t_reply(\"486\", \"Resumed By Gateway\");\n}}\n",
        pre = setup.preamble(2)
    )
}

/// A REGISTER with `contact` and `expires`, whose 200 must carry the expected return codes.
fn register(k: &Kamailio, contact_params: &str, expires: u32, reg: &str, res: &str) {
    let scenario = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register, check return codes">
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:alice@[remote_ip]>;tag=[pid]r[call_number]
      To: <sip:alice@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:alice@[local_ip]:[local_port]{contact_params}>;+sip.instance="<urn:uuid:11111111-2222-4333-8444-555555555555>"
      Expires: {expires}
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200">
    <action>
      <ereg regexp="^ *{reg}$" search_in="hdr" header="X-Push-Register:" check_it="true" assign_to="a"/>
      <ereg regexp="^ *{res}$" search_in="hdr" header="X-Push-Resume:" check_it="true" assign_to="b"/>
    </action>
  </recv>
  <Reference variables="a,b" />
</scenario>
"#
    );
    let path = k
        .setup
        .dir
        .join(format!("register-{reg}-{res}-{expires}.xml"));
    fs::write(&path, scenario).unwrap();
    let (ok, out) = Sipp::spawn(path.to_str().unwrap(), k.sip_port(), &[], &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(
        ok,
        "REGISTER ({contact_params}, expires {expires}) did not get codes {reg}/{res}:\n{out}"
    );
}

#[test]
fn push_register_and_push_resume_drive_a_gateway() {
    let server = PushServer::ok(None);
    let setup = Setup::new("gateway");
    let cfg = gateway(&setup, &server.url());
    let k = Kamailio::start(setup, &cfg);
    let push =
        format!(";pn-provider=apns;pn-prid={TOKEN};pn-param=ABCDE12345.org.example.phone.voip");

    // No push parameters: -1, and nothing to resume (-1).
    register(&k, "", 3600, "-1", "-1");
    // A push-capable device: stored (1).
    register(&k, &push, 3600, "1", "-1");
    assert!(eventually(Duration::from_secs(3), || k
        .kamcmd(&["push.devices", "alice"])
        .map(|o| o.contains("cafe00"))
        .unwrap_or(false)));
    assert_eq!(stat(&k, "devices_stored"), 1);

    // A call is held and pushed; the next REGISTER resumes it (push_resume returns 1).
    let call = caller_expecting(&k, "alice", "udp", 486);
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    register(&k, &push, 3600, "1", "1");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");

    // De-registration removes the device (2).
    register(&k, &push, 0, "2", "-1");
    assert!(eventually(Duration::from_secs(3), || stat(
        &k,
        "devices_removed"
    ) == 1));
    let devices = k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(!devices.contains("cafe00"), "{devices}");

    // Stored again, then the same instance registers without push parameters: it no longer
    // wants pushes, and its record goes.
    register(&k, &push, 3600, "1", "-1");
    assert!(eventually(Duration::from_secs(3), || stat(
        &k,
        "devices_stored"
    ) == 2));
    register(&k, "", 3600, "-1", "-1");
    assert!(eventually(Duration::from_secs(3), || stat(
        &k,
        "devices_removed"
    ) == 2));

    // Malformed push parameters are refused with a log line, not stored.
    register(&k, ";pn-provider=apns;pn-prid=%zz", 3600, "-1", "-1");
    assert!(k.wait_for_log(
        "Contact of alice ignored: invalid percent-escape",
        Duration::from_secs(3)
    ));
}

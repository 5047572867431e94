//! A Kazoo-style User-Agent profile: an app that names its push parameters its own way is
//! recognised by its User-Agent, stored and pushed like any other.

use std::fs;
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "d00d0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

fn register(k: &Kamailio, user_agent: &str, contact_params: &str) {
    let scenario = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with an app's own parameter names">
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:carol@[remote_ip]>;tag=[pid]p[call_number]
      To: <sip:carol@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:carol@[local_ip]:[local_port]{contact_params}>
      Expires: 1
      User-Agent: {user_agent}
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200" />
</scenario>
"#
    );
    let path = k
        .setup
        .dir
        .join(format!("register-{}.xml", user_agent.len()));
    fs::write(&path, scenario).unwrap();
    let (ok, out) = Sipp::spawn(path.to_str().unwrap(), k.sip_port(), &[], &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

#[test]
fn kazoo_style_profile_maps_custom_parameter_names() {
    let server = PushServer::ok(None);
    let k = registrar_with(
        "profile",
        &server.url(),
        20,
        &[(
            "PUSH_UA_PROFILE",
            "\"name=kazoo;regex=^Kazoo-Phone/[0-9];app=x-app;type=x-push-type;token=x-push-token\"",
        )],
    );
    let params = format!(";x-push-token={TOKEN};x-push-type=apple;x-app=org.example.phone");
    // Another app with the same names is not recognised: nothing stored.
    register(&k, "Other-Phone/1.0", &params);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!k
        .kamcmd(&["push.devices", "carol"])
        .unwrap()
        .contains("d00d00"));
    // The profile's app: stored as an APNs device with its token and app.
    register(&k, "Kazoo-Phone/3.2 (iPhone)", &params);
    assert!(eventually(Duration::from_secs(3), || k
        .kamcmd(&["push.devices", "carol"])
        .unwrap()
        .contains("d00d00")));
    let devices = k.kamcmd(&["push.devices", "carol"]).unwrap();
    assert!(
        devices.contains("provider: apns") && devices.contains("app: org.example.phone"),
        "{devices}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    // And a call to carol pushes that token.
    let call = caller_cancelling(&k, "carol");
    let pushes = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(pushes.len(), 1);
    let body = pushes[0].json();
    assert_eq!(body["token"], TOKEN);
    assert_eq!(body["provider"], "apns");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

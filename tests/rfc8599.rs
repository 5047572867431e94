//! RFC 8599 registrar behaviour against real Kamailio: Feature-Caps with +sip.pnsreg on the 200 OK
//! of a push REGISTER, 555 for a push service no app serves, and binding-refresh pushes sent once
//! before a binding expires (through the local FCM HTTP v1 server, which checks the message).

use std::fs;
use std::time::Duration;
use testkit::mock_push::*;
use testkit::wake::*;
use testkit::*;

const ANDROID_TOKEN: &str = "fcmtoken:APA91bH-refresh0123456789abcdefghijklmnopqrstuvwxyz";

/// Sends one REGISTER (a 3600 s binding) with the given Contact parameters and expects `status`,
/// and, if given, a Feature-Caps header matching `caps` (a regular expression).
fn register_expecting(
    k: &Kamailio,
    user: &str,
    contact_params: &str,
    status: u16,
    caps: Option<&str>,
) {
    let check = caps
        .map(|re| {
            format!(
                r#"<action><ereg regexp="{re}" search_in="hdr" header="Feature-Caps:" check_it="true" assign_to="caps" /></action>"#
            )
        })
        .unwrap_or_default();
    let reference = if caps.is_some() {
        r#"<Reference variables="caps" />"#
    } else {
        ""
    };
    let scenario = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register expecting {status}">
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@[remote_ip]>;tag=[pid]r[call_number]
      To: <sip:{user}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port]{contact_params}>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="{status}">{check}</recv>
  {reference}
</scenario>
"#
    );
    let path = k.setup.dir.join(format!("register-{user}-{status}.xml"));
    fs::write(&path, scenario).unwrap();
    let (ok, out) = Sipp::spawn(path.to_str().unwrap(), k.sip_port(), &[], &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "REGISTER did not get {status}:\n{out}");
}

#[test]
fn unsupported_service_gets_555_and_bindings_get_one_refresh_push_before_expiry() {
    // Bindings of 60 s, refresh pushes 57 s before expiry: due about 3 s after registering.
    let (k, mock) = fcm_registrar(
        "rfc8599",
        "com.example.android",
        fcm_always_ok(),
        &[
            ("PUSH_DEFAULT_APP", "\"com.example.android\""),
            ("REFRESH_WINDOW", "57"),
        ],
    );

    // Only an FCM app is configured: an APNs device is refused with 555 and not stored.
    register_expecting(
        &k,
        "carol",
        ";pn-provider=apns;pn-prid=0123456789abcdef;pn-param=ABCDE12345.org.example.phone.voip",
        555,
        None,
    );
    assert!(
        k.log_text().contains("names pn-provider \"apns\""),
        "no log line for the unsupported provider"
    );
    let devices = k.kamcmd(&["push.devices", "carol"]).unwrap_or_default();
    assert!(!devices.contains("0123456789"), "{devices}");
    // A REGISTER without push parameters is not concerned.
    register_expecting(&k, "carol", "", 200, None);
    // A supported one is announced, with the refresh window.
    register_expecting(
        &k,
        "dave",
        ";pn-provider=fcm;pn-prid=fcmtoken:dave0123456789;pn-param=kamailio-push-test",
        200,
        Some(r#"^ *\+sip\.pns=&quot;fcm&quot;;\+sip\.pnsreg=&quot;57&quot;$"#),
    );

    // An Android phone registers for 60 s; its 200 OK carries
    // Feature-Caps: +sip.pns="fcm";+sip.pnsreg="57" (device_register.xml checks the header).
    let phone = Phone {
        provider: "fcm".into(),
        pnparam: "kamailio-push-test".into(),
        ..Phone::new("bob", ANDROID_TOKEN, "udp")
    };
    phone.register_for(&k, 60);
    let sends = mock.wait_for_sends(1, Duration::from_secs(10));
    assert_eq!(sends.len(), 1, "no refresh push reached FCM");
    let m = &sends[0];
    assert_eq!(m.status, 200, "{m:?}");
    assert_eq!(m.token(), Some(ANDROID_TOKEN));
    assert_eq!(m.data("type"), Some("refresh"));
    assert_eq!(m.data("callee_aor"), Some("bob"));
    assert_eq!(
        m.data("call_id").map(|c| c.starts_with("refresh-")),
        Some(true)
    );
    // Not a call: normal priority.
    assert_eq!(m.body["message"]["android"]["priority"], "normal");

    // The phone does not answer the refresh push: it is not pushed again.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(mock.sends().len(), 1, "a silent device was pushed again");
    assert_eq!(stat(&k, "refresh_pushes"), 1);

    // It registers again: a new binding, so one more refresh push before that one expires.
    phone.register_for(&k, 60);
    let sends = mock.wait_for_sends(2, Duration::from_secs(10));
    assert_eq!(sends.len(), 2, "no refresh push for the renewed binding");
    assert_eq!(sends[1].data("type"), Some("refresh"));
    // Counted once the module has read the answer, which the mock sends after recording.
    assert!(
        eventually(Duration::from_secs(5), || k
            .kamcmd(&["stats.get_statistics", "push:"])
            .unwrap_or_default()
            .contains("push:refresh_pushes = 2")),
        "{:?}",
        k.kamcmd(&["stats.get_statistics", "push:"])
    );
}

//! Issue 12, what one REGISTER may do, against real Kamailio running push-registrar.cfg: it cannot
//! fan out (at most max_devices devices per AOR, so at most that many pushes per call), an FCM
//! device naming its Firebase project in pn-param (RFC 8599) is served by the app of that project,
//! push parameters given as Contact header parameters count on the usrloc path too, and a
//! percent-escaped user part is one AOR with its decoded form, as registrar stores it.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use testkit::mock_push::*;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

/// Sends one REGISTER over UDP from `socket` and returns the final response (text).
fn register_raw(
    k: &Kamailio,
    socket: &UdpSocket,
    user: &str,
    call_id: &str,
    contacts: &[String],
) -> String {
    let local = socket.local_addr().unwrap();
    let contact_lines: String = contacts
        .iter()
        .map(|c| format!("Contact: {c}\r\n"))
        .collect();
    let message = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@127.0.0.1>;tag={call_id}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\n\
         {contact_lines}\
         Expires: 1\r\n\
         Content-Length: 0\r\n\r\n",
        port = k.sip_port()
    );
    socket
        .send_to(message.as_bytes(), ("127.0.0.1", k.sip_port()))
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains(call_id) && !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
    panic!("no final response to REGISTER {call_id}");
}

/// The devices push.devices lists for `aor`.
fn devices(k: &Kamailio, aor: &str) -> String {
    k.kamcmd(&["push.devices", aor]).unwrap_or_default()
}

fn device_count(k: &Kamailio, aor: &str) -> usize {
    devices(k, aor).matches("provider:").count()
}

fn push_contact(user: &str, local: std::net::SocketAddr, token: &str) -> String {
    format!("<sip:{user}@{local};pn-provider=apns;pn-prid={token};pn-param=ABCDE12345.{APP}.voip>")
}

#[test]
fn one_register_cannot_fan_out_into_more_than_max_devices_pushes() {
    let server = PushServer::ok(None);
    let k = registrar("fanout", &server.url(), 8);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap();

    // One unauthenticated REGISTER with 30 push Contacts: 10 devices (max_devices' default).
    let contacts: Vec<String> = (0..30)
        .map(|i| push_contact("mallory", local, &format!("tokA{i:02}-0123456789abcdef")))
        .collect();
    let reply = register_raw(&k, &socket, "mallory", "fanout-1", &contacts);
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(
        eventually(Duration::from_secs(5), || device_count(&k, "mallory") == 10),
        "{}",
        devices(&k, "mallory")
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        device_count(&k, "mallory"),
        10,
        "{}",
        devices(&k, "mallory")
    );
    assert!(k
        .log_text()
        .contains("more than 10 push Contacts (max_devices)"));

    // Five more devices a second later: the least recently registered give way.
    std::thread::sleep(Duration::from_millis(1100));
    let contacts: Vec<String> = (0..5)
        .map(|i| push_contact("mallory", local, &format!("tokB{i:02}-0123456789abcdef")))
        .collect();
    let reply = register_raw(&k, &socket, "mallory", "fanout-2", &contacts);
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(
        eventually(Duration::from_secs(5), || devices(&k, "mallory")
            .matches("token: tokB")
            .count()
            == 5),
        "{}",
        devices(&k, "mallory")
    );
    assert_eq!(
        device_count(&k, "mallory"),
        10,
        "{}",
        devices(&k, "mallory")
    );
    assert!(k.log_text().contains("least recently registered"));

    // The 1 s bindings have expired: a call is held and pushes exactly max_devices devices.
    std::thread::sleep(Duration::from_millis(1500));
    let call = caller_expecting(&k, "mallory", "udp", 480);
    server.wait_for(10, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let pushes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.json()["callee_aor"] == "mallory")
        .collect();
    assert_eq!(
        pushes.len(),
        10,
        "{pushes:#?}\n{}",
        k.kamcmd(&["push.stats"]).unwrap_or_default()
    );
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

#[test]
fn fcm_device_naming_its_firebase_project_is_stored_and_pushed() {
    const TOKEN: &str = "fcmtoken:APA91bH-project0123456789abcdefghijklmnopqrstuvwxyz";
    // The only app is the fcm one, under its package name; there is no default app.
    let (k, mock) = fcm_registrar(
        "fcm-project",
        "com.example.phone.android",
        fcm_always_ok(),
        &[("NO_DEFAULT_APP", "1"), ("PUSH_TIMEOUT", "20")],
    );
    // RFC 8599: pn-param is the Firebase project id. The 200 OK must carry
    // Feature-Caps: +sip.pns="fcm" (device_register.xml checks it) and the device is stored.
    let phone = Phone {
        provider: "fcm".into(),
        pnparam: FCM_PROJECT_ID.into(),
        ..Phone::new("bob", TOKEN, "udp")
    };
    phone.register_then_sleep(&k);
    let call = caller(&k, "bob", "udp", "fcmproject-%u");
    let sends = mock.wait_for_sends(1, Duration::from_secs(10));
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].status, 200, "{:?}", sends[0]);
    assert_eq!(sends[0].token(), Some(TOKEN));
    let (ok, out) = phone
        .wake(&k, "fcmproject-%u")
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

#[test]
fn push_parameters_as_contact_header_parameters_count_on_the_usrloc_path() {
    let server = PushServer::ok(None);
    let k = registrar("header-params", &server.url(), 3);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap();
    let contact = format!(
        "<sip:carol@{local}>;pn-provider=apns;pn-prid=hdrtoken0123456789abcdef;pn-param=ABCDE12345.{APP}.voip"
    );
    let reply = register_raw(&k, &socket, "carol", "header-params-1", &[contact]);
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(
        reply.contains("Feature-Caps: +sip.pns=\"apns\""),
        "no Feature-Caps in the 200 OK:\n{reply}"
    );
    assert!(
        eventually(Duration::from_secs(5), || devices(&k, "carol")
            .contains("hdrtok")),
        "device not stored: {}",
        devices(&k, "carol")
    );
}

#[test]
fn percent_escaped_user_is_one_aor_with_its_decoded_form() {
    let server = PushServer::ok(None);
    let k = registrar("escaped-aor", &server.url(), 20);
    let phone = Phone::new(
        "%2B4930123",
        "escaped0123456789abcdef0123456789abcdef",
        "udp",
    );
    // registrar stores the user part decoded; push.devices finds it under either form
    // (register_then_sleep asks for the escaped one; kamcmd needs s: for the other).
    phone.register_then_sleep(&k);
    assert!(
        devices(&k, "s:+4930123").contains("escape"),
        "{}",
        devices(&k, "s:+4930123")
    );
    // An INVITE to the same (escaped) URI finds the device, holds the call and pushes.
    let call = caller(&k, "%2B4930123", "udp", "escaped-%u");
    let pushes = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(pushes.len(), 1, "no push for the escaped AOR");
    assert_eq!(pushes[0].json()["callee_aor"], "+4930123");
    let (ok, out) = phone.wake(&k, "escaped-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

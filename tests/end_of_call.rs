//! End-of-call pushes (issue 14): when a held call ends, every device pushed for it that did not
//! join it gets exactly one push saying why (`cancelled`, `answered_elsewhere`, `timeout`); a
//! device that joined gets tm's CANCEL instead. Through the webhook (signed JSON), APNs (an alert
//! push to the app's own topic, never a VoIP push) and FCM (a high-priority data message).

use std::time::Duration;
use testkit::mock_push::*;
use testkit::netns::run_in_private_netns;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN_A: &str = "aaaa0000111122223333444455556666777788889999aaaabbbbccccddddeeee";
const TOKEN_B: &str = "bbbb0000111122223333444455556666777788889999aaaabbbbccccddddeeee";
const IOS_TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const ANDROID_TOKEN: &str = "fcmtoken:APA91bH-abcdefghijklmnopqrstuvwxyz0123456789";

/// alice's phone and tablet, both asleep.
fn phone_and_tablet(k: &Kamailio) -> (Phone, Phone) {
    let phone = Phone::new("alice", TOKEN_A, "udp");
    let tablet = Phone {
        instance: "00000000-0000-4000-8000-0000000ab1e7".into(),
        ..Phone::new("alice", TOKEN_B, "udp")
    };
    phone.register_then_sleep(k);
    tablet.register_then_sleep(k);
    (phone, tablet)
}

/// The woken `phone` registers, gets the held INVITE of `call_id` and rings until cancelled.
fn wake_and_ring(k: &Kamailio, phone: &Phone, call_id: &str) -> Sipp {
    phone.wake_with(k, call_id, "device_wake_ring.xml")
}

/// The end-of-call pushes among `pushes`: (token, reason), sorted.
fn ends(pushes: &[serde_json::Value], call_id: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pushes
        .iter()
        .filter(|p| p["type"] == "cancel")
        .map(|p| {
            assert_eq!(p["call_id"], call_id, "{p}");
            assert_eq!(p["callee_aor"], "alice", "{p}");
            assert!(
                p["caller_uri"].as_str().unwrap().starts_with("sip:bob@"),
                "{p}"
            );
            assert_eq!(p["caller_name"], "Bob Caller", "{p}");
            (
                p["token"].as_str().unwrap().to_string(),
                p["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn caller_cancelling_pushes_the_sleeping_device_and_cancels_the_one_that_rings() {
    let (rx, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let k = registrar("eoc-cancel", &server.url(), 20);
    let (phone, _tablet) = phone_and_tablet(&k);
    let mut args = transport_args("udp");
    args.extend(["-key", "user", "alice", "-cid_str", "eoc-cancel-%u"]);
    let call = Sipp::spawn(
        "caller_cancel_ringing.xml",
        k.sip_port(),
        &args,
        &k.setup.dir,
    );
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(5)).expect("call push");
    }
    // The phone wakes and rings; the caller hangs up: tm's CANCEL reaches the phone.
    let ringing = wake_and_ring(&k, &phone, "eoc-cancel-%u");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = ringing.wait(Duration::from_secs(20));
    assert!(ok, "the ringing device got no CANCEL: {out}");
    // The tablet never woke: one end-of-call push, reason cancelled. None for the phone.
    let pushes = settled(&server, 3);
    assert_eq!(
        ends(&pushes, "eoc-cancel-1"),
        [(TOKEN_B.to_string(), "cancelled".to_string())]
    );
    assert!(eventually(Duration::from_secs(3), || stat(
        &k,
        "end_pushes"
    ) == 1));
}

#[test]
fn another_device_answering_pushes_answered_elsewhere_to_the_one_still_asleep() {
    let (rx, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let k = registrar("eoc-answered", &server.url(), 20);
    let (phone, _tablet) = phone_and_tablet(&k);
    let call = caller(&k, "alice", "udp", "eoc-answer-%u");
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(5)).expect("call push");
    }
    let (ok, out) = phone
        .wake(&k, "eoc-answer-%u")
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let pushes = settled(&server, 3);
    assert_eq!(
        ends(&pushes, "eoc-answer-1"),
        [(TOKEN_B.to_string(), "answered_elsewhere".to_string())]
    );
}

#[test]
fn timeout_pushes_every_pushed_device_with_the_missed_call_alert() {
    let server = PushServer::ok(None);
    // The app string is `id=...;url=<this>;secret=...`: the URL carries the app's alert setting.
    let url = format!(
        "{};missed_call_alert=Missed call from {{caller}}",
        server.url()
    );
    let k = registrar("eoc-timeout", &url, 2);
    phone_and_tablet(&k);
    let (ok, out) = caller_expecting(&k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let pushes = settled(&server, 4);
    let call_id = pushes[0]["call_id"].as_str().unwrap().to_string();
    assert_eq!(
        ends(&pushes, &call_id),
        [
            (TOKEN_A.to_string(), "timeout".to_string()),
            (TOKEN_B.to_string(), "timeout".to_string())
        ]
    );
    for p in pushes.iter().filter(|p| p["type"] == "cancel") {
        assert_eq!(p["alert"], "Missed call from Bob Caller", "{p}");
    }
    // The call pushes carry no alert and no reason.
    assert!(pushes[0].get("reason").is_none() && pushes[0].get("alert").is_none());
}

#[test]
fn cancel_push_off_sends_no_end_push() {
    let server = PushServer::ok(None);
    let k = registrar("eoc-off", &format!("{};cancel_push=0", server.url()), 20);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let (ok, out) = caller_cancelling(&k, "alice").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let pushes = settled(&server, 1);
    assert_eq!(pushes[0]["type"], "call");
    assert_eq!(stat(&k, "end_pushes"), 0);
}

#[test]
fn apns_end_of_call_push_is_an_alert_to_the_app_topic_never_a_voip_push() {
    if !run_in_private_netns("apns_end_of_call_push_is_an_alert_to_the_app_topic_never_a_voip_push")
    {
        return;
    }
    let (k, mock, _key, _pki) =
        apns_registrar("eoc-apns", "push-registrar.cfg", apns_always_ok(), 20, &[]);
    Phone::new("alice", IOS_TOKEN, "udp").register_then_sleep(&k);
    let (ok, out) = caller_cancelling(&k, "alice").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let reqs = mock.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    let (call, end) = (&reqs[0], &reqs[1]);
    assert_eq!(call.header("apns-push-type"), Some("voip"));
    assert_eq!(call.body["type"], "call");
    // The end of the call: an alert to the app's own topic, at once, replacing the call's
    // notification (same collapse id), never a VoIP push (iOS would report it as a new call).
    assert_eq!(end.status, 200, "{end:?}");
    assert_eq!(end.path, format!("/3/device/{IOS_TOKEN}"));
    assert_eq!(end.header("apns-push-type"), Some("alert"));
    assert_eq!(end.header("apns-topic"), Some(APP));
    assert_eq!(end.header("apns-priority"), Some("10"));
    assert_eq!(
        end.header("apns-collapse-id"),
        call.header("apns-collapse-id")
    );
    assert_eq!(end.body["type"], "cancel");
    assert_eq!(end.body["reason"], "cancelled");
    assert_eq!(end.body["call_id"], call.body["call_id"]);
    assert_eq!(end.body["aps"]["content-available"], 1);
    // No missed_call_alert configured: nothing shown.
    assert!(end.body["aps"].get("alert").is_none(), "{}", end.body_text);
    let voip = mock
        .requests()
        .iter()
        .filter(|r| r.header("apns-push-type") == Some("voip"))
        .count();
    assert_eq!(voip, 1, "a VoIP push that was not for the INVITE");
}

#[test]
fn apns_message_push_is_an_alert_to_the_app_topic() {
    if !run_in_private_netns("apns_message_push_is_an_alert_to_the_app_topic") {
        return;
    }
    let (k, mock, _key, _pki) =
        apns_registrar("msg-apns", "push-plain.cfg", apns_always_ok(), 2, &[]);
    Phone::new("alice", IOS_TOKEN, "udp").register_then_sleep(&k);
    let (ok, out) =
        message_expecting(&k, "alice", "msg-apns-%u", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let reqs = mock.wait_for(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mock.requests().len(), 1, "{:#?}", mock.requests());
    let r = &reqs[0];
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-topic"), Some(APP));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-collapse-id"), Some("msg-apns-1"));
    assert_eq!(r.body["type"], "message");
    assert_eq!(r.body["call_id"], "msg-apns-1");
    assert_eq!(r.body["aps"]["alert"]["title"], "Bob Caller");
    // No message_preview: the text stays on the server.
    assert_eq!(r.body["aps"]["alert"]["body"], "New message");
    assert!(!r.body_text.contains("hello from bob"), "{}", r.body_text);
    // A message that timed out is no call: no end-of-call push.
    assert_eq!(stat(&k, "end_pushes"), 0);
}

#[test]
fn fcm_end_of_call_push_is_a_high_priority_data_message() {
    let (k, mock, _phone) = fcm_sleeping_phone("eoc-fcm", fcm_always_ok(), 20, ANDROID_TOKEN);
    let (ok, out) = caller_cancelling(&k, "bob").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let sends = mock.wait_for_sends(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mock.sends().len(), 2);
    let (call, end) = (&sends[0], &sends[1]);
    assert_eq!(call.data("type"), Some("call"));
    assert_eq!(end.status, 200, "{end:?}");
    assert_eq!(end.token(), Some(ANDROID_TOKEN));
    assert_eq!(end.data("type"), Some("cancel"));
    assert_eq!(end.data("reason"), Some("cancelled"));
    assert_eq!(end.data("call_id"), call.data("call_id"));
    assert_eq!(end.body["message"]["android"]["priority"], "high");
}

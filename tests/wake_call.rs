//! The product's core flow against real Kamailio: a caller calls a user whose only device sleeps;
//! the module holds the call, pushes through the webhook, the device registers again, and the call
//! is delivered after the REGISTER's 200, answered and hung up.

use std::sync::mpsc;
use std::time::Duration;
use testkit::push_server::{PushServer, Request};
use testkit::wake::*;
use testkit::*;

fn wake_call(transport: &'static str) {
    let (tx, rx) = mpsc::channel::<Request>();
    let tx = std::sync::Mutex::new(tx);
    let server = PushServer::ok(Some(Box::new(move |req| {
        let _ = tx.lock().unwrap().send(req.clone());
    })));
    let k = registrar(&format!("wake-{transport}"), &server.url(), 20);
    let phone = Phone::new(
        "alice",
        "f00dfeed0123456789abcdef0123456789abcdef0123456789abcdef01234567",
        transport,
    );
    phone.register_then_sleep(&k);

    let call_id = format!("wake-{transport}-%u");
    let call = caller(&k, "alice", transport, &call_id);
    let push = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no push arrived");
    // The call is held while the phone sleeps.
    let pending = k.kamcmd(&["push.pending"]).unwrap();
    assert!(
        pending.contains(&format!("wake-{transport}-1")),
        "{pending}"
    );
    let device = phone.wake(&k, &call_id);

    let (ok, out) = device.wait(Duration::from_secs(30));
    assert!(
        ok,
        "the woken device did not get the call after its 200 OK:\n{out}"
    );
    let (ok, out) = call.wait(Duration::from_secs(30));
    assert!(ok, "the caller's call was not answered:\n{out}");

    // What the push endpoint received.
    assert_eq!(push.path, "/push");
    verify_signature(&push);
    let body = push.json();
    assert_eq!(body["call_id"], format!("wake-{transport}-1"));
    assert_eq!(body["callee_aor"], "alice");
    assert_eq!(body["token"], phone.token);
    assert_eq!(body["app_id"], APP);
    assert_eq!(body["provider"], "apns");
    assert_eq!(body["caller_name"], "Bob Caller");
    assert!(body["caller_uri"].as_str().unwrap().starts_with("sip:bob@"));
    assert!(body["expires_at"].as_u64().unwrap() > body["sent_at"].as_u64().unwrap() / 1000);

    assert!(eventually(Duration::from_secs(5), || k
        .kamcmd(&["push.pending"])
        .map(|p| !p.contains("wake-"))
        .unwrap_or(false)));
    assert_eq!(stat(&k, "suspended"), 1);
    assert_eq!(stat(&k, "resumed"), 1);
    assert_eq!(stat_reaching(&k, "pushes_sent", 1), 1);
    assert_eq!(stat(&k, "held_now"), 0);
    // The same counters as Kamailio statistics (what xhttp_prom exports to Prometheus).
    let stats = k.kamcmd(&["stats.get_statistics", "push:"]).unwrap();
    for line in [
        "push:suspended = 1",
        "push:resumed = 1",
        "push:pushes_sent = 1",
        "push:held_now = 0",
    ] {
        assert!(stats.contains(line), "no '{line}' in:\n{stats}");
    }
    // The wake time (pushes out to the device registering) of this one call.
    let wake_ms: u64 = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("push:wake_ms_max = "))
        .unwrap_or_else(|| panic!("no push:wake_ms_max in:\n{stats}"))
        .parse()
        .unwrap();
    assert!(wake_ms > 0 && wake_ms < 10_000, "{stats}");
    let wake = k.kamcmd(&["push.stats"]).unwrap();
    assert!(wake.contains("wake_ns: {"), "{wake}");
}

#[test]
fn sleeping_phone_gets_the_call_over_udp() {
    wake_call("udp");
}

#[test]
fn sleeping_phone_gets_the_call_over_tcp() {
    wake_call("tcp");
}

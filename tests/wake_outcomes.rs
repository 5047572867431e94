//! What happens to a held call when things do not go the happy way: nobody to push, nobody wakes,
//! the caller gives up, the push endpoint is down, slow, flaky or refuses; several calls and
//! devices; a challenged REGISTER; a restart.

use std::time::{Duration, Instant};
use testkit::push_server::{PushServer, Request};
use testkit::wake::*;
use testkit::*;

const TOKEN_A: &str = "aaaa0000111122223333444455556666777788889999aaaabbbbccccddddeeee";
const TOKEN_B: &str = "bbbb0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

#[test]
fn user_without_push_device_gets_480_at_once_and_nothing_is_held() {
    let server = PushServer::ok(None);
    let k = registrar("nodevice", &server.url(), 20);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "nobody", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(server.requests().is_empty());
    assert_eq!(stat(&k, "suspended"), 0);
    assert_eq!(stat(&k, "held_now"), 0);
}

#[test]
fn phone_that_never_wakes_gets_480_at_the_timeout() {
    let server = PushServer::ok(None);
    let k = registrar("timeout", &server.url(), 3);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let start = Instant::now();
    let call = caller_expecting(&k, "alice", "udp", 480);
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert!(eventually(Duration::from_secs(3), || stat(&k, "timed_out") == 1));
    assert_eq!(stat(&k, "held_now"), 0);
}

#[test]
fn cancel_while_held_gets_487_and_leaves_no_entry() {
    let server = PushServer::ok(None);
    let k = registrar("cancel", &server.url(), 20);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let call = caller_cancelling(&k, "alice");
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    assert!(pending(&k).contains("alice"), "{}", pending(&k));
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "cancelled"), 1);
    assert_eq!(stat(&k, "held_now"), 0);
}

#[test]
fn two_callers_to_one_sleeping_user_are_both_delivered() {
    let server = PushServer::ok(None);
    let k = registrar("twocalls", &server.url(), 20);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    phone.register_then_sleep(&k);
    let first = caller(&k, "alice", "udp", "two-a-%u");
    let second = caller(&k, "alice", "udp", "two-b-%u");
    assert_eq!(server.wait_for(2, Duration::from_secs(5)).len(), 2);
    assert!(eventually(Duration::from_secs(3), || stat(&k, "held_now") == 2));
    // The phone's SIP stack answers both calls on its port; it registers from there.
    let port = free_port();
    let port_text = port.to_string();
    let answering = Sipp::spawn(
        "device_answer.xml",
        k.sip_port(),
        &["-p", port_text.as_str(), "-m", "2"],
        &k.setup.dir,
    );
    std::thread::sleep(Duration::from_millis(200));
    let keys = phone.keys(3600, port);
    let args: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (ok, out) = Sipp::spawn("device_register.xml", k.sip_port(), &args, &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = first.wait(Duration::from_secs(20));
    assert!(ok, "first caller: {out}");
    let (ok, out) = second.wait(Duration::from_secs(20));
    assert!(ok, "second caller: {out}");
    let (ok, out) = answering.wait(Duration::from_secs(20));
    assert!(ok, "device: {out}");
    assert_eq!(stat(&k, "resumed"), 2);
    assert!(no_call_pending(&k));
}

#[test]
fn user_with_two_devices_gets_two_pushes_and_the_first_to_wake_gets_the_call() {
    let (rx, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let k = registrar("twodevices", &server.url(), 20);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    let tablet = Phone {
        instance: "00000000-0000-4000-8000-00000000beef".into(),
        ..Phone::new("alice", TOKEN_B, "udp")
    };
    phone.register_then_sleep(&k);
    tablet.register_then_sleep(&k);
    let call = caller(&k, "alice", "udp", "twodev-%u");
    let pushes: Vec<Request> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("push"))
        .collect();
    let mut tokens: Vec<String> = pushes
        .iter()
        .map(|p| p.json()["token"].as_str().unwrap().to_string())
        .collect();
    tokens.sort();
    assert_eq!(tokens, vec![TOKEN_A.to_string(), TOKEN_B.to_string()]);
    let (ok, out) = tablet.wake(&k, "twodev-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat(&k, "resumed"), 1);
}

#[test]
fn challenged_register_resumes_the_call_once() {
    let server = PushServer::ok(None);
    let k = registrar_with("auth", &server.url(), 20, &[("WITH_AUTH", "1")]);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    let port = free_port();
    let port_text = port.to_string();
    // Initial registration, with its challenge.
    let keys = phone.keys(1, port);
    let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
    args.extend(["-p", port_text.as_str(), "-au", "alice", "-ap", "secret"]);
    let (ok, out) = Sipp::spawn(
        "device_register_auth.xml",
        k.sip_port(),
        &args,
        &k.setup.dir,
    )
    .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(1500));
    let call = caller(&k, "alice", "udp", "auth-%u");
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    let port = free_port();
    let port_text = port.to_string();
    let keys = phone.keys(3600, port);
    let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
    args.extend([
        "-p",
        port_text.as_str(),
        "-au",
        "alice",
        "-ap",
        "secret",
        "-cid_str",
        "auth-%u",
    ]);
    let (ok, out) = Sipp::spawn("device_wake_auth.xml", k.sip_port(), &args, &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat(&k, "resumed"), 1);
    assert_eq!(stat(&k, "suspended"), 1);
}

#[test]
fn push_endpoint_down_ends_in_480_and_counts_the_failure() {
    // A port nobody listens on.
    let dead = format!("http://127.0.0.1:{}/push", free_port());
    let k = registrar("down", &dead, 3);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(start.elapsed() < Duration::from_secs(8));
    assert!(eventually(Duration::from_secs(5), || stat(
        &k,
        "pushes_failed"
    ) == 1));
    assert!(no_call_pending(&k));
}

#[test]
fn slow_push_endpoint_still_wakes_the_phone() {
    let (rx, on_push) = notifier();
    let server = PushServer::start(
        Box::new(|_| (200, Duration::from_millis(2000))),
        Some(on_push),
    );
    let k = registrar("slow", &server.url(), 20);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    phone.register_then_sleep(&k);
    let call = caller(&k, "alice", "udp", "slow-%u");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no push answered");
    let (ok, out) = phone.wake(&k, "slow-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat_reaching(&k, "pushes_sent", 1), 1);
}

#[test]
fn push_answered_500_then_200_is_retried_and_the_call_delivered() {
    let (rx, on_push) = notifier();
    let server = PushServer::start(
        Box::new(|n| (if n == 0 { 500 } else { 200 }, Duration::ZERO)),
        Some(on_push),
    );
    let k = registrar("retry", &server.url(), 20);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    phone.register_then_sleep(&k);
    let call = caller(&k, "alice", "udp", "retry-%u");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no successful push");
    assert_eq!(server.requests().len(), 2);
    let (ok, out) = phone.wake(&k, "retry-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
}

#[test]
fn push_refused_with_400_fails_the_call_fast() {
    let server = PushServer::start(Box::new(|_| (400, Duration::ZERO)), None);
    let k = registrar("refused", &server.url(), 20);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "480 took {:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 1, "a 400 must not be retried");
    assert!(no_call_pending(&k));
    assert_eq!(stat(&k, "pushes_failed"), 1);
}

#[test]
fn devices_survive_a_kamailio_restart() {
    let server = PushServer::ok(None);
    let setup = Setup::new("restart");
    let db = setup.db_define();
    let app = format!(
        "\"id={APP};provider=webhook;url={};secret={SECRET}\"",
        server.url()
    );
    let defines = [
        ("PUSH_DB", db.as_str()),
        ("PUSH_APP", app.as_str()),
        ("MIN_EXPIRES", "1"),
    ];
    let dir = setup.dir.clone();
    let mut k = Kamailio::start_example(setup, "push-registrar.cfg", &defines);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    k.stop_within(Duration::from_secs(65))
        .expect("kamailio did not stop");
    drop(k);
    // Same database, new process: the device is still known and a call still pushes it.
    let setup = Setup::in_dir(dir);
    let k = Kamailio::start_example(setup, "push-registrar.cfg", &defines);
    let devices = k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(devices.contains("aaaa00"), "{devices}");
    let call = caller_expecting(&k, "alice", "udp", 480);
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    drop(call);
}

#[test]
fn second_device_waking_while_the_call_rings_joins_and_can_answer() {
    let (rx, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let k = registrar("latejoin", &server.url(), 20);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    let tablet = Phone {
        instance: "00000000-0000-4000-8000-0000000ab1e7".into(),
        ..Phone::new("alice", TOKEN_B, "udp")
    };
    phone.register_then_sleep(&k);
    tablet.register_then_sleep(&k);
    let call = caller(&k, "alice", "udp", "late-%u");
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(5)).expect("push");
    }
    // The phone wakes first and rings without answering...
    let port = free_port();
    let port_text = port.to_string();
    let keys = phone.keys(3600, port);
    let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
    args.extend(["-cid_str", "late-%u", "-p", port_text.as_str()]);
    let ringing = Sipp::spawn("device_wake_ring.xml", k.sip_port(), &args, &k.setup.dir);
    assert!(eventually(Duration::from_secs(5), || stat(&k, "resumed") == 1));
    std::thread::sleep(Duration::from_millis(300));
    // ...then the tablet wakes: it joins the ringing call as a new branch and answers.
    let (ok, out) = tablet.wake(&k, "late-%u").wait(Duration::from_secs(20));
    assert!(ok, "the late device did not get the call: {out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = ringing.wait(Duration::from_secs(20));
    assert!(ok, "the first device was not cancelled: {out}");
    // (logged after the branch went out: waited for, not read at once)
    assert!(
        k.wait_for_log("woke late: 1 branch(es) added", Duration::from_secs(5)),
        "{}",
        k.log_text()
    );
}

#[test]
fn registered_but_silent_contact_is_tried_first_then_pushed() {
    let (rx, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let k = registrar_with("tryfirst", &server.url(), 20, &[("TRY_FIRST_MS", "1000")]);
    let phone = Phone::new("alice", TOKEN_A, "udp");
    // Registered for an hour, but the app was then killed: its port no longer answers.
    let port = free_port();
    let port_text = port.to_string();
    let keys = phone.keys(3600, port);
    let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
    args.extend(["-p", port_text.as_str()]);
    let (ok, out) = Sipp::spawn("device_register.xml", k.sip_port(), &args, &k.setup.dir)
        .wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let start = Instant::now();
    let call = caller(&k, "alice", "udp", "tryfirst-%u");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no push after the silent contact");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "pushed before trying the contact: {waited:?}"
    );
    let (ok, out) = phone.wake(&k, "tryfirst-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat(&k, "resumed"), 1);
}

#[test]
fn calls_beyond_max_pending_get_503() {
    let server = PushServer::ok(None);
    let k = registrar_with(
        "maxpending",
        &server.url(),
        20,
        &[("PUSH_MAX_PENDING", "1")],
    );
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let first = caller_cancelling(&k, "alice");
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    let (ok, out) = caller_expecting(&k, "alice", "udp", 503).wait(Duration::from_secs(10));
    assert!(ok, "the second call was not refused with 503: {out}");
    let (ok, out) = first.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat(&k, "suspended"), 1);
}

#[test]
fn caller_who_gives_up_stops_the_pushes_still_retrying() {
    // The push service answers 503 every time: the module retries with backoff inside the call's
    // 20 s wait, until the caller cancels.
    let server = PushServer::start(Box::new(|_| (503, Duration::ZERO)), None);
    let k = registrar("giveup", &server.url(), 20);
    Phone::new("alice", TOKEN_A, "udp").register_then_sleep(&k);
    let call = caller_cancelling(&k, "alice");
    assert!(
        server.wait_for(2, Duration::from_secs(5)).len() >= 2,
        "no retry seen"
    );
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(no_call_pending(&k), "{}", pending(&k));
    // (a request already on its way when the push was stopped may still arrive)
    std::thread::sleep(Duration::from_secs(1));
    let after_cancel = server.requests().len();
    // Backoff is at most 2 s between attempts: without stopping, more would come in 3 s.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        server.requests().len(),
        after_cancel,
        "pushes went on after the call ended"
    );
    assert_eq!(stat(&k, "cancelled"), 1);
}

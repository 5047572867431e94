//! How a held call ends with a plain config (cfg-examples/push-plain.cfg: no failure route, no
//! push_failed()): 480 at the timeout, 480 at once when every push failed for good (even with a
//! binding that looks registered), 200 for a CANCEL before the INVITE's 487 (messages:
//! tests/messages.rs).

use std::time::{Duration, Instant};
use testkit::push_server::{Answer, PushServer};
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "cccc0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

fn plain(name: &str, push_url: &str, timeout: u32) -> Kamailio {
    let cfg = repo_root().join("cfg-examples/push-plain.cfg");
    registrar_from(Setup::new(name), &cfg, push_url, timeout, &[])
}

#[test]
fn plain_config_timeout_answers_480_not_408() {
    let server = PushServer::ok(None);
    let k = plain("plain-timeout", &server.url(), 2);
    Phone::new("alice", TOKEN, "udp").register_then_sleep(&k);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_millis(6000),
        "{waited:?}"
    );
    // The call push, then the end-of-call push telling the phone it missed the call.
    assert_eq!(server.wait_for(2, Duration::from_secs(5)).len(), 2);
    std::thread::sleep(Duration::from_millis(500));
    let pushes: Vec<_> = server.requests().iter().map(|r| r.json()).collect();
    assert_eq!(pushes.len(), 2, "{pushes:#?}");
    assert_eq!(pushes[0]["type"], "call");
    assert_eq!(pushes[1]["type"], "cancel");
    assert_eq!(pushes[1]["reason"], "timeout");
    assert!(eventually(Duration::from_secs(3), || stat(&k, "timed_out") == 1));
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "held_now"), 0);
}

#[test]
fn plain_config_dead_token_answers_480_at_once_despite_a_registered_binding() {
    let server =
        PushServer::answering(|_, _| Answer::status(410).body("{\"reason\":\"Unregistered\"}"));
    let k = plain("plain-dead", &server.url(), 20);
    // A binding that looks registered for an hour: nobody answers at its address.
    Phone::new("alice", TOKEN, "udp").register_for(&k, 3600);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(eventually(Duration::from_secs(3), || !k
        .kamcmd(&["push.devices", "alice"])
        .unwrap_or_default()
        .contains(&TOKEN[..6])));
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "resumed"), 0);
}

#[test]
fn plain_config_cancel_gets_200_before_487() {
    let server = PushServer::ok(None);
    let k = plain("plain-cancel", &server.url(), 20);
    Phone::new("alice", TOKEN, "udp").register_then_sleep(&k);
    let call = Sipp::spawn(
        "caller_cancel_ordered.xml",
        k.sip_port(),
        &["-key", "user", "alice"],
        &k.setup.dir,
    );
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "cancelled"), 1);
    assert_eq!(stat(&k, "held_now"), 0);
}

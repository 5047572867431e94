//! A push service that is down (issue 11): a webhook refusing connections ends a call with 480
//! within 5 s instead of its whole timeout; after `breaker_failures` such pushes the app is marked
//! failing (push.apps, the `apps_failing` statistic, one log line) and new calls to its devices
//! fail at once; once the service is back, the next probe push wakes a call again and the app is
//! healthy (one log line).

use std::time::{Duration, Instant};
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "dddd0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

/// `push:apps_failing = <n>` from Kamailio's statistics.
fn apps_failing(k: &Kamailio) -> String {
    k.kamcmd(&["stats.get_statistics", "push:"])
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("push:apps_failing"))
        .unwrap_or_default()
        .to_string()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// One call that must get 480; returns how long it took.
fn call_480(k: &Kamailio) -> Duration {
    let start = Instant::now();
    let (ok, out) = caller_expecting(k, "alice", "udp", 480).wait(Duration::from_secs(30));
    assert!(ok, "{out}");
    start.elapsed()
}

#[test]
fn refused_connections_end_calls_fast_then_the_breaker_opens_and_closes_again() {
    // Nothing listens on this port yet: every connection is refused.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/push");
    let k = registrar_with(
        "breaker",
        &url,
        20,
        &[("BREAKER_FAILURES", "2"), ("BREAKER_PROBE_INTERVAL", "3")],
    );
    let phone = Phone::new("alice", TOKEN, "udp");
    phone.register_then_sleep(&k);

    // First call: a few attempts, then 480, well before the 20 s timeout.
    let took = call_480(&k);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(k.wait_for_log("failed after 3 attempt(s)", Duration::from_secs(3)));
    assert!(apps_failing(&k).contains("= 0"), "{}", apps_failing(&k));

    // Second failing call: the breaker opens (breaker_failures 2), said once in the log.
    let took = call_480(&k);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(eventually(Duration::from_secs(3), || apps_failing(&k).contains("= 1")));
    let apps = k.kamcmd(&["push.apps"]).unwrap();
    assert!(apps.contains("failing (circuit open"), "{apps}");
    assert_eq!(count(&k.log_text(), "marked failing"), 1);

    // While it is open, a call fails at once and no push is tried.
    let tried = count(&k.log_text(), "failed after");
    let took = call_480(&k);
    // (no push waited for: far less than a push attempt's 5 s, with room for a loaded machine)
    assert!(took < Duration::from_secs(3), "{took:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&k.log_text(), "failed after"), tried);
    assert_eq!(count(&k.log_text(), "marked failing"), 1);

    // The service comes back; once a probe is due, a call's push goes through and wakes the phone.
    let server = PushServer::ok_on_port(port, None);
    std::thread::sleep(Duration::from_millis(3500));
    let call = caller(&k, "alice", "udp", "back-%u");
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).len(), 1);
    let (ok, out) = phone.wake(&k, "back-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(eventually(Duration::from_secs(3), || apps_failing(&k).contains("= 0")));
    let log = k.log_text();
    assert_eq!(count(&log, "the push service answers again"), 1, "{log}");
    assert_eq!(count(&log, "marked failing"), 1);
    let apps = k.kamcmd(&["push.apps"]).unwrap();
    assert!(apps.contains("ok"), "{apps}");
    assert_eq!(stat(&k, "resumed"), 1);
}

//! Stopping Kamailio with held calls (issue 11): each caller gets a final answer (503) before
//! Kamailio's processes exit, none is left with 100 Trying.

use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "eeee0000111122223333444455556666777788889999aaaabbbbccccddddeeee";
const CALLS: usize = 50;

#[test]
fn sigterm_with_50_held_calls_answers_each_503() {
    let server = PushServer::ok(None);
    let mut k = registrar("shutdown", &server.url(), 60);
    Phone::new("alice", TOKEN, "udp").register_then_sleep(&k);

    let scenario = scenario_expecting(&k, "caller_rejected.xml", 503);
    let calls = CALLS.to_string();
    let callers = Sipp::spawn(
        scenario.to_str().unwrap(),
        k.sip_port(),
        &[
            "-key", "user", "alice", "-m", &calls, "-l", &calls, "-r", "50",
        ],
        &k.setup.dir,
    );
    assert!(
        eventually(Duration::from_secs(15), || stat(&k, "held_now")
            == CALLS as u64),
        "held: {}",
        stat(&k, "held_now")
    );
    assert_eq!(server.wait_for(CALLS, Duration::from_secs(5)).len(), CALLS);

    // Within Kamailio's own shutdown time (ser_kill_timeout, 60 s by default, after which its main
    // process kills what is left). Usually about 3 s; one CI run on a loaded machine took more than
    // 10 s, every caller answered 503 all the same (cause not found yet: see the session note).
    let started = std::time::Instant::now();
    let status = k.stop_within(Duration::from_secs(65));
    assert!(
        status.is_some(),
        "Kamailio did not exit within its shutdown time"
    );
    if started.elapsed() > Duration::from_secs(10) {
        eprintln!("shutdown took {:?}", started.elapsed());
    }
    let (ok, out) = callers.wait(Duration::from_secs(30));
    assert!(ok, "not every caller got 503:\n{out}");
    assert!(
        k.log_text().contains(&format!(
            "Kamailio shuts down: {CALLS} held call(s) answered 503"
        )),
        "{}",
        k.log_text()
    );
}

//! The device store seen from outside the module: its writes are batched (one commit per
//! dispatcher tick), and nothing batched is lost when Kamailio stops.

use push_core::devices::store::Store;
use std::time::{Duration, Instant};
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "d00d0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

/// A device stored a moment before Kamailio stops (its batch not yet committed by a tick) is in
/// the store file afterwards: the dispatcher commits its last batch when it is told to stop.
#[test]
fn devices_stored_just_before_a_stop_are_not_lost() {
    let server = PushServer::start(Box::new(|_| (200, Duration::ZERO)), None);
    let mut k = registrar("store-stop", &server.url(), 20);
    let db = k.setup.dir.join("push.sqlite");
    let dispatcher = k.process_pid("push dispatcher").unwrap();
    for user in ["erin", "frank", "grace"] {
        Phone::new(user, TOKEN, "udp").register_for(&k, 3600);
    }
    // push.devices has just shown grace's device (the dispatcher reads its own batch); stop now.
    // What this test is about is the dispatcher's last commit; Kamailio's own exit is
    // tests/shutdown.rs's. (Under load its children sometimes hang in their SIGTERM handler, all
    // on one lock, before they log: Kamailio's main process then waits its ser_kill_timeout; the
    // test kit prints what is left when its 10 s pass.)
    if k.stop().is_none() {
        eprintln!("Kamailio took longer than 10 s to stop; its dispatcher is checked below");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(dispatcher) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!process_alive(dispatcher), "the dispatcher did not stop");
    let store = Store::open_reader(&db).unwrap();
    for user in ["erin", "frank", "grace"] {
        let devices = store.devices(user).unwrap();
        assert_eq!(devices.len(), 1, "{user}'s device lost at stop");
        assert_eq!(devices[0].prid, TOKEN);
    }
    assert!(
        k.log_text().contains("the push dispatcher stops"),
        "{}",
        k.log_text()
    );
}

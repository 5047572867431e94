//! The test kit's own sipp scenarios against a sipp peer, without Kamailio: what they must
//! tolerate from a real proxy. A caller scenario that aborts on a legal message order makes a
//! wake-up test fail for a reason that has nothing to do with the module.

use std::time::Duration;
use testkit::*;

/// A proxy relays a phone's 180 and 200 in two worker processes at once, so the caller can get
/// the 180 after the 200 and its ACK (it happened in CI with one Kamailio). The caller's call must
/// go on: ACK, BYE, 200.
#[test]
fn caller_survives_a_ringing_that_arrives_after_the_answer() {
    let setup = Setup::new("late-ringing");
    let port = free_port();
    let port_arg = port.to_string();
    // The phone listens; its "remote" address is unused until it has a call.
    let phone = Sipp::spawn(
        "phone_answer_before_ringing.xml",
        free_port(),
        &["-p", &port_arg],
        &setup.dir,
    );
    std::thread::sleep(Duration::from_millis(300));
    let call = Sipp::spawn("caller.xml", port, &["-key", "user", "phone"], &setup.dir);
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "the caller aborted its call:\n{out}");
    assert!(
        out.contains("SIP/2.0 180 Ringing"),
        "the 180 never reached the caller, so this shows nothing:\n{out}"
    );
    let (ok, out) = phone.wait(Duration::from_secs(10));
    assert!(ok, "the phone's call did not end with a BYE:\n{out}");
}

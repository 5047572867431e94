//! A user with 12 contacts that look registered (issue 11): cfg-examples/push-registrar.cfg tries
//! them all first (TRY_FIRST_MS), then holds the call and pushes; with Kamailio's default of 12
//! branches per transaction there is no room left to hold it, and the caller gets a deliberate
//! 480 (push_suspend() -5), never a 500.

use std::time::{Duration, Instant};
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const CONTACTS: usize = 12;

fn phones() -> Vec<Phone> {
    (0..CONTACTS)
        .map(|i| {
            let token = format!("{i:02x}{}", "0123456789abcdef".repeat(4).get(2..).unwrap());
            Phone {
                instance: format!("00000000-0000-4000-8000-0000000000{i:02x}"),
                ..Phone::new("alice", &token, "udp")
            }
        })
        .collect()
}

/// Registers 12 bindings for alice that look alive for an hour; nobody answers at them.
fn register_all(k: &Kamailio) -> Vec<Phone> {
    let phones = phones();
    for phone in &phones {
        phone.register_for(k, 3600);
    }
    let contacts = k.kamcmd(&["ul.lookup", "location", "alice"]).unwrap();
    assert_eq!(contacts.matches("Address:").count(), CONTACTS, "{contacts}");
    phones
}

#[test]
fn twelve_contacts_tried_first_then_the_call_is_held_pushed_and_delivered() {
    let server = PushServer::ok(None);
    let k = registrar_with("contacts12", &server.url(), 20, &[("TRY_FIRST_MS", "1000")]);
    let phones = register_all(&k);
    let call = caller(&k, "alice", "udp", "many-%u");
    // Held after the 12 contacts did not answer; max_devices (10) devices pushed.
    assert_eq!(server.wait_for(10, Duration::from_secs(8)).len(), 10);
    // (the SIP worker counts the call after handing it to the dispatcher, which may push first)
    assert_eq!(stat_reaching(&k, "suspended", 1), 1);
    let woken = phones.last().unwrap();
    let (ok, out) = woken.wake(&k, "many-%u").wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    let (ok, out) = call.wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert_eq!(stat(&k, "resumed"), 1);
    assert!(!k.log_text().contains("maximum number of branches exceeded"));
}

#[test]
fn with_twelve_branches_only_the_call_gets_480_not_500() {
    let server = PushServer::ok(None);
    let k = registrar_with(
        "contacts12-max12",
        &server.url(),
        20,
        &[("TRY_FIRST_MS", "1000"), ("MAX_BRANCHES", "12")],
    );
    register_all(&k);
    let start = Instant::now();
    let (ok, out) = caller_expecting(&k, "alice", "udp", 480).wait(Duration::from_secs(20));
    assert!(ok, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(k.wait_for_log("none is left to hold it", Duration::from_secs(3)));
    assert_eq!(stat(&k, "suspended"), 0);
    assert!(server.requests().is_empty());
}

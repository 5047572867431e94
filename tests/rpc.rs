//! Every push.* RPC command through kamcmd, with good and bad arguments.

use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "beef0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

fn phone(user: &str, token: &str) -> Phone {
    Phone::new(user, token, "udp")
}

/// push.send against a push service that hangs answers within about 2 s (Kamailio has one ctl
/// process: it must not be held), and the push it sends is a test push, not a call.
#[test]
fn push_send_never_holds_ctl_and_sends_a_test_push() {
    let server = PushServer::start(Box::new(|_| (200, Duration::from_secs(8))), None);
    let k = registrar("rpc-send", &server.url(), 20);
    phone("carol", TOKEN).register_then_sleep(&k);
    let started = std::time::Instant::now();
    let answer = k.kamcmd(&["push.send", "carol"]).unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(4000),
        "push.send held ctl for {took:?}"
    );
    assert!(answer.contains("no answer within"), "{answer}");
    let started = std::time::Instant::now();
    k.kamcmd(&["core.version"]).unwrap();
    // (ctl is free again: not held until the push's answer, 8 s away)
    assert!(started.elapsed() < Duration::from_secs(2));
    let push = server.wait_for(1, Duration::from_secs(2));
    assert_eq!(push[0].json()["type"], "test", "{:?}", push[0].body);
}

#[test]
fn rpc_commands_answer_and_refuse_bad_arguments() {
    let server = PushServer::start(
        Box::new(|n| (if n == 0 { 200 } else { 410 }, Duration::ZERO)),
        None,
    );
    let k = registrar("rpc", &server.url(), 20);
    phone("alice", TOKEN).register_then_sleep(&k);

    // push.stats and push.pending (nothing held).
    let stats = k.kamcmd(&["push.stats"]).unwrap();
    assert!(field(&stats, "pid").is_some());
    // The module's version and the Kamailio it was built for, in push.stats and at start.
    let kamailio = std::process::Command::new(kamailio_bin())
        .arg("-v")
        .output()
        .unwrap();
    let kamailio = String::from_utf8_lossy(&kamailio.stdout).into_owned();
    let built_for = field(&stats, "built_for_kamailio").expect("no built_for_kamailio");
    let running = built_for.split_whitespace().next().unwrap().to_string();
    assert!(
        kamailio.contains(&format!("version: kamailio {running}")),
        "{built_for} / {kamailio}"
    );
    assert_eq!(
        field(&stats, "version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(k.log_text().contains(&format!(
        "kamailio-push {} built for Kamailio {built_for}",
        env!("CARGO_PKG_VERSION")
    )));
    // The node (host name, Kamailio's server_id: 0 unless the config sets one), in push.stats
    // and in push.pending's first entry.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        field(&stats, "node").as_deref(),
        Some(host.trim()),
        "{stats}"
    );
    assert_eq!(field(&stats, "server_id").as_deref(), Some("0"), "{stats}");
    let pending = k.kamcmd(&["push.pending"]).unwrap();
    assert_eq!(
        field(&pending, "node").as_deref(),
        Some(host.trim()),
        "{pending}"
    );
    assert!(!pending.contains("call_id"));
    assert!(!k
        .kamcmd(&["push.pending", "alice"])
        .unwrap()
        .contains("call_id"));

    // Arguments longer than any AOR are refused naming the problem (a 5 KB one used to hit the
    // queue's frame size), and a fault quoting a long AOR still reaches kamcmd (ctl's fault
    // buffer is small: kamcmd used to print nothing).
    for len in [300, 5000] {
        let err = k.kamcmd(&["push.devices", &"a".repeat(len)]).unwrap_err();
        assert!(err.contains("AORs are at most 256 bytes"), "{len}: {err}");
    }
    let err = k.kamcmd(&["push.send", &"b".repeat(250)]).unwrap_err();
    assert!(err.contains("no push device for bbbb"), "{err}");

    // push.devices: without an AOR the count and a page of every device (tests/rpc_devices.rs);
    // with one, its devices, tokens shortened.
    let all = k.kamcmd(&["push.devices"]).unwrap();
    assert_eq!(field(&all, "total").as_deref(), Some("1"), "{all}");
    let devices = k.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(
        devices.contains("beef00…eeee") && !devices.contains(TOKEN),
        "{devices}"
    );
    assert!(!k
        .kamcmd(&["push.devices", "nobody"])
        .unwrap()
        .contains("provider"));
    // Numeric users are common; kamcmd sends them as numbers.
    assert!(!k
        .kamcmd(&["push.devices", "1001"])
        .unwrap()
        .contains("provider"));

    // push.apps and push.reload.
    let apps = k.kamcmd(&["push.apps"]).unwrap();
    assert!(
        apps.contains(&format!("id: {APP}")) && apps.contains("provider: webhook"),
        "{apps}"
    );
    assert!(!apps.contains(SECRET), "push.apps shows the secret: {apps}");
    assert!(k.kamcmd(&["push.reload"]).unwrap().contains("reloaded"));

    // push.send: a test push with the provider's answer.
    let err = k.kamcmd(&["push.send"]).unwrap_err();
    assert!(err.contains("needs an AOR"), "{err}");
    let err = k.kamcmd(&["push.send", "nobody"]).unwrap_err();
    assert!(err.contains("no push device for nobody"), "{err}");
    let sent = k.kamcmd(&["push.send", "alice"]).unwrap();
    assert!(sent.contains("answer: sent (200"), "{sent}");
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.requests()[0].json()["token"], TOKEN);
    // The endpoint now says the token is dead: the device is forgotten.
    let sent = k.kamcmd(&["push.send", "alice"]).unwrap();
    assert!(sent.contains("token dead (410"), "{sent}");
    assert!(eventually(Duration::from_secs(3), || !k
        .kamcmd(&["push.devices", "alice"])
        .unwrap()
        .contains("beef00")));

    // push.remove: needs an AOR; unknown device refused; a device by id, then all of an AOR.
    phone(
        "bob",
        "1111000011112222333344445555666677778888999900001111222233334444",
    )
    .register_then_sleep(&k);
    Phone {
        instance: "00000000-0000-4000-8000-0000000000b2".into(),
        ..phone(
            "bob",
            "2222000011112222333344445555666677778888999900001111222233334444",
        )
    }
    .register_then_sleep(&k);
    let err = k.kamcmd(&["push.remove"]).unwrap_err();
    assert!(err.contains("needs an AOR"), "{err}");
    let err = k
        .kamcmd(&["push.remove", "bob", "no-such-device"])
        .unwrap_err();
    assert!(err.contains("no such device"), "{err}");
    let removed = k
        .kamcmd(&[
            "push.remove",
            "bob",
            "s:2222000011112222333344445555666677778888999900001111222233334444",
        ])
        .unwrap();
    assert!(removed.contains("removed: 1"), "{removed}");
    let devices = k.kamcmd(&["push.devices", "bob"]).unwrap();
    assert!(
        devices.contains("111100") && !devices.contains("222200"),
        "{devices}"
    );
    assert!(k
        .kamcmd(&["push.remove", "bob"])
        .unwrap()
        .contains("removed: 1"));
    // With no device left, a call to bob is refused at once.
    let (ok, out) = caller_expecting(&k, "bob", "udp", 480).wait(Duration::from_secs(10));
    assert!(ok, "{out}");
}

/// The calls push.pending lists on one page of kamcmd's output, and the page's `total`.
fn page(k: &Kamailio, args: &[&str]) -> (u64, Vec<String>, Option<u64>) {
    let mut command = vec!["push.pending"];
    command.extend_from_slice(args);
    let text = k.kamcmd(&command).unwrap();
    let total = field(&text, "total")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let next = field(&text, "next_offset").and_then(|t| t.parse().ok());
    let calls = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("call_id: "))
        .map(str::to_string)
        .collect();
    (total, calls, next)
}

/// Thousands of held calls: a single answer used to pass the datagram the dispatcher answers in
/// (a 2 s timeout for kamcmd); pages of `limit=` from `offset=` list every call once, and every
/// answer is bounded. Bad arguments get a 400 naming the problem.
#[test]
fn push_pending_pages_through_thousands_of_held_calls() {
    const CALLS: u64 = 2000;
    let server = PushServer::start(Box::new(|_| (200, Duration::ZERO)), None);
    let k = registrar("rpc-pending", &server.url(), 120);
    phone("dave", TOKEN).register_then_sleep(&k);
    let count = CALLS.to_string();
    let _callers = Sipp::spawn(
        "caller.xml",
        k.sip_port(),
        &[
            "-key", "user", "dave", "-m", &count, "-r", "400", "-l", &count, "-timeout", "300s",
        ],
        &k.setup.dir,
    );
    assert!(
        eventually(Duration::from_secs(60), || page(&k, &["limit=1"]).0
            == CALLS),
        "not all {CALLS} calls held: {}",
        pending(&k)
    );

    // The default page is bounded, and says where the next one starts.
    let (total, first, next) = page(&k, &[]);
    assert_eq!(total, CALLS);
    assert_eq!(first.len(), 100);
    assert_eq!(next, Some(100));

    // Pages of 1000 (the largest limit) list every call once.
    let mut seen = std::collections::BTreeSet::new();
    let mut ordered = Vec::new();
    let mut offset = 0u64;
    loop {
        let (total, calls, next) = page(&k, &[&format!("offset={offset}"), "limit=1000", "dave"]);
        assert_eq!(total, CALLS);
        assert!(!calls.is_empty());
        offset += calls.len() as u64;
        ordered.extend(calls.iter().cloned());
        seen.extend(calls);
        match next {
            Some(n) => assert_eq!(n, offset),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, CALLS);
    // Oldest first: the default page is the start of the same order.
    assert_eq!(first[..], ordered[..100]);
    let (_, beyond, next) = page(&k, &["offset=5000"]);
    assert!(beyond.is_empty() && next.is_none());

    // Arguments checked with a 400 naming the problem.
    for (args, expected) in [
        (vec!["1.5"], "argument 1 is not text or a whole number"),
        (
            vec!["limit=0"],
            "limit must be a whole number from 1 to 1000",
        ),
        (
            vec!["limit=5000"],
            "limit must be a whole number from 1 to 1000",
        ),
        (vec!["offset=-1"], "offset must be a whole number"),
        (vec!["dave", "erin"], "second AOR"),
    ] {
        let mut command = vec!["push.pending"];
        command.extend(args.iter().copied());
        let err = k.kamcmd(&command).unwrap_err();
        assert!(
            err.contains("400") && err.contains(expected),
            "{args:?}: {err}"
        );
    }
    let big = "x".repeat(5000);
    let err = k.kamcmd(&["push.remove", "dave", &big]).unwrap_err();
    assert!(
        err.contains("400") && err.contains("5000 bytes long"),
        "{err}"
    );
    let err = k.kamcmd(&["push.apps", "extra"]).unwrap_err();
    assert!(err.contains("takes no argument"), "{err}");
}

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
        took < Duration::from_millis(2500),
        "push.send held ctl for {took:?}"
    );
    assert!(answer.contains("no answer within"), "{answer}");
    let started = std::time::Instant::now();
    k.kamcmd(&["core.version"]).unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
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
    assert!(!k.kamcmd(&["push.pending"]).unwrap().contains("call_id"));
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

    // push.devices: needs an AOR; shows tokens shortened.
    let err = k.kamcmd(&["push.devices"]).unwrap_err();
    assert!(err.contains("needs an AOR"), "{err}");
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

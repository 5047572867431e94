//! The shared device store (issue 15): `db_url` naming a real PostgreSQL server (started by the
//! test, testkit::postgres) that several real Kamailio nodes use. A device registered on one node
//! is in the database and wakes for a call on a node started afterwards; a database stopped for
//! 10 s costs no call to a known device, a device registered meanwhile reaches the database when
//! it is back, and the log says so once each way; the password shows nowhere.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use testkit::postgres::Postgres;
use testkit::push_server::{PushServer, Request};
use testkit::wake::*;
use testkit::*;

const ALICE: &str = "a11ce0000111122223333444455556666777788889999aaaabbbbccccddddeeee";
const CAROL: &str = "ca401000111122223333444455556666777788889999aaaabbbbccccddddeeee";

/// A node running push-registrar.cfg with the webhook app at `push_url` and its devices in `pg`.
/// The URL is written into the config's modparam line itself, as an operator would: passed as a
/// `-A` define, Kamailio's own preprocessor would echo it at debug level 3 (pp_define_get).
fn node(name: &str, pg: &Postgres, push_url: &str, debug: &str) -> Kamailio {
    let setup = Setup::new(name);
    let cfg = pg.registrar_cfg(&setup.dir);
    let app = format!("\"id={APP};provider=webhook;url={push_url};secret={SECRET}\"");
    let defines = [
        ("PUSH_APP", app.as_str()),
        ("MIN_EXPIRES", "1"),
        ("PUSH_TIMEOUT", "20"),
        ("DEBUG_LEVEL", debug),
    ];
    Kamailio::start_file(setup, &cfg, &defines)
}

/// The redacted URL the module shows for `pg`.
fn shown_url(pg: &Postgres) -> String {
    format!(
        "postgres://{}:<redacted>@127.0.0.1:{}/{}",
        pg.user, pg.port, pg.database
    )
}

/// Waits for the log line saying the node connected (or reconnected) and loaded `n` devices.
fn wait_loaded(k: &Kamailio, pg: &Postgres, n: usize) {
    let line = format!("{} connected: {n} devices loaded", shown_url(pg));
    assert!(
        k.wait_for_log(&line, Duration::from_secs(15)),
        "no '{line}' in:\n{}",
        k.log_text()
    );
}

/// How many devices of `aor` with token `token` the database holds.
fn rows(pg: &Postgres, aor: &str, token: &str) -> String {
    pg.query(&format!(
        "SELECT count(*) FROM push_devices WHERE aor = '{aor}' AND prid = '{token}'"
    ))
    .unwrap()
}

/// A call to `phone`'s user on `k`: it is held, pushed (the push names the phone's token), the
/// phone wakes and registers on `k`, and gets the call, which is answered.
fn call_wakes(k: &Kamailio, phone: &Phone, pushes: &Receiver<Request>, call_id: &str) {
    let call = caller(k, &phone.user, "udp", call_id);
    let push = pushes
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no push for {}:\n{}", phone.user, k.log_text()));
    verify_signature(&push);
    let body = push.json();
    assert_eq!(body["callee_aor"], phone.user.as_str());
    assert_eq!(body["token"], phone.token.as_str());
    let device = phone.wake(k, call_id);
    let (ok, out) = device.wait(Duration::from_secs(30));
    assert!(
        ok,
        "the woken device did not get the call:\n{out}\n{}",
        k.log_text()
    );
    let (ok, out) = call.wait(Duration::from_secs(30));
    assert!(ok, "the call was not answered:\n{out}");
}

/// Neither the log nor any push.* answer shows the database password; push.stats shows the URL
/// redacted.
fn password_hidden(k: &Kamailio, pg: &Postgres) {
    let stats = k.kamcmd(&["push.stats"]).unwrap();
    assert!(stats.contains(&shown_url(pg)), "{stats}");
    for answer in [
        stats,
        k.kamcmd(&["push.apps"]).unwrap(),
        k.kamcmd(&["push.devices", "alice"]).unwrap_or_else(|e| e),
        k.kamcmd(&["push.pending"]).unwrap_or_else(|e| e),
        k.kamcmd(&["stats.get_statistics", "push:"]).unwrap(),
    ] {
        assert!(
            !answer.contains(&pg.password),
            "password in an answer:\n{answer}"
        );
    }
    let log = k.log_text();
    assert!(!log.is_empty());
    assert!(!log.contains(&pg.password), "password in the log:\n{log}");
}

/// A device registered on node A is stored in PostgreSQL; node B, started afterwards (the device
/// never registered there, and its binding on A expired), knows it, pushes it for a call and
/// delivers the call when it registers on B.
#[test]
fn a_node_started_later_wakes_a_device_registered_on_another() {
    let pg = Postgres::start("two-nodes");
    let (pushes, hook) = notifier();
    let server = PushServer::ok(Some(hook));
    // Node A at debug level 3: the password must stay out of even the debug lines.
    let a = node("pg-node-a", &pg, &server.url(), "3");
    wait_loaded(&a, &pg, 0);
    let alice = Phone::new("alice", ALICE, "udp");
    alice.register_then_sleep(&a);
    pg.wait_for(
        &format!("SELECT count(*) FROM push_devices WHERE aor = 'alice' AND prid = '{ALICE}'"),
        "1",
        Duration::from_secs(5),
    )
    .unwrap();
    let schema = pg.query("SELECT version FROM push_schema").unwrap();
    assert_eq!(schema, "1");

    let b = node("pg-node-b", &pg, &server.url(), "2");
    wait_loaded(&b, &pg, 1);
    let devices = b.kamcmd(&["push.devices", "alice"]).unwrap();
    assert!(devices.contains(&ALICE[..6]), "{devices}");
    call_wakes(&b, &alice, &pushes, "pg-two-nodes-%u");
    // A pushed nothing: the call was B's.
    assert!(pushes.try_recv().is_err());
    assert_eq!(stat(&b, "resumed"), 1);
    assert_eq!(stat(&a, "suspended"), 0);
    let stats = b.kamcmd(&["push.stats"]).unwrap();
    assert!(stats.contains("state: connected"), "{stats}");
    password_hidden(&a, &pg);
    password_hidden(&b, &pg);
}

/// PostgreSQL stopped for 10 s: a call to a known device still wakes it and is delivered; a
/// device registered meanwhile is stored once the database is back (seen in the database, and
/// by a node started afterwards, which wakes it); one log line when the database goes, one when
/// it is back. A node started while the database is down starts empty, says so, and loads the
/// devices when it is back.
#[test]
fn a_database_down_for_10_s_costs_no_call_and_loses_no_device() {
    let mut pg = Postgres::start("outage");
    let (pushes, hook) = notifier();
    let server = PushServer::ok(Some(hook));
    let mut a = node("pg-outage-a", &pg, &server.url(), "2");
    wait_loaded(&a, &pg, 0);
    let alice = Phone::new("alice", ALICE, "udp");
    alice.register_then_sleep(&a);
    pg.wait_for(
        &format!("SELECT count(*) FROM push_devices WHERE aor = 'alice' AND prid = '{ALICE}'"),
        "1",
        Duration::from_secs(5),
    )
    .unwrap();

    pg.stop();
    let down_at = Instant::now();
    let gone = format!("device store {} is unreachable", shown_url(&pg));
    assert!(
        a.wait_for_log(&gone, Duration::from_secs(10)),
        "no '{gone}':\n{}",
        a.log_text()
    );
    // Calls to the known device are still held and pushed, and delivered.
    call_wakes(&a, &alice, &pushes, "pg-outage-%u");
    // A new device registers meanwhile: the node knows it at once.
    let carol = Phone::new("carol", CAROL, "udp");
    carol.register_then_sleep(&a);
    let stats = a.kamcmd(&["push.stats"]).unwrap();
    assert!(stats.contains("state: unreachable"), "{stats}");
    let queued: u64 = field(&stats, "writes_queued").unwrap().parse().unwrap();
    assert!(queued >= 1, "{stats}");
    // A node started while the database is down starts empty and says so.
    let b = node("pg-outage-b", &pg, &server.url(), "2");
    let empty = "this node starts with no stored devices";
    assert!(
        b.wait_for_log(empty, Duration::from_secs(10)),
        "no '{empty}':\n{}",
        b.log_text()
    );
    let before = b.kamcmd(&["push.devices", "alice"]).unwrap_or_default();
    assert!(!before.contains(&ALICE[..6]), "{before}");

    std::thread::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed()));
    pg.start_again();
    let back = format!("device store {} is reachable again", shown_url(&pg));
    for k in [&a, &b] {
        assert!(
            k.wait_for_log(&back, Duration::from_secs(10)),
            "no '{back}':\n{}",
            k.log_text()
        );
    }
    // Carol's device, registered while the database was down, is stored now.
    pg.wait_for(
        &format!("SELECT count(*) FROM push_devices WHERE aor = 'carol' AND prid = '{CAROL}'"),
        "1",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(rows(&pg, "alice", ALICE), "1");
    // B loaded what the database held when it came back (alice at least).
    assert!(eventually(Duration::from_secs(5), || b
        .kamcmd(&["push.devices", "alice"])
        .map(|d| d.contains(&ALICE[..6]))
        .unwrap_or(false)));
    // Exactly one line each way, however many attempts failed in between.
    std::thread::sleep(Duration::from_millis(500));
    for k in [&a, &b] {
        let log = k.log_text();
        assert_eq!(log.matches("is unreachable").count(), 1, "{log}");
        assert_eq!(log.matches("is reachable again").count(), 1, "{log}");
    }
    let stats = a.kamcmd(&["push.stats"]).unwrap();
    assert!(stats.contains("state: connected"), "{stats}");
    assert_eq!(
        field(&stats, "writes_queued").as_deref(),
        Some("0"),
        "{stats}"
    );
    assert_eq!(
        field(&stats, "writes_dropped").as_deref(),
        Some("0"),
        "{stats}"
    );
    password_hidden(&a, &pg);
    password_hidden(&b, &pg);

    // A node restarted afterwards knows both devices and wakes carol.
    a.stop();
    let c = node("pg-outage-c", &pg, &server.url(), "2");
    wait_loaded(&c, &pg, 2);
    call_wakes(&c, &carol, &pushes, "pg-outage-carol-%u");
    password_hidden(&c, &pg);
}

/// A `db_url` that cannot be used stops `kamailio -c` with a line naming the parameter, the URL
/// shown with its password redacted; a good one passes without any server (nothing connects
/// before the dispatcher runs).
#[test]
fn a_bad_postgres_url_is_refused_without_showing_the_password() {
    let dir = run_dir("pg-bad-url");
    let example =
        std::fs::read_to_string(repo_root().join("cfg-examples/push-registrar.cfg")).unwrap();
    let line = "modparam(\"push\", \"db_url\", PUSH_DB)";
    let app = format!("\"id={APP};provider=webhook;url=http://127.0.0.1:9/push\"");
    let check = |url: &str| {
        let cfg = dir.join("bad-url.cfg");
        let text = example.replace(line, &format!("modparam(\"push\", \"db_url\", \"{url}\")"));
        std::fs::write(&cfg, text).unwrap();
        check_config(&cfg, &[("PUSH_APP", app.as_str())])
    };
    for url in [
        "postgres://kam:Hush-4242@127.0.0.1:99999/push",
        "postgres://kam:Hush-4242@127.0.0.1/push?sslmode=require",
        "postgres://kam:Hush-4242@127.0.0.1:5432/",
    ] {
        let (ok, out) = check(url);
        assert!(!ok, "{url} accepted:\n{out}");
        assert!(out.contains("modparam(\"push\", \"db_url\""), "{out}");
        assert!(out.contains("kam:<redacted>@127.0.0.1"), "{out}");
        assert!(!out.contains("Hush-4242"), "{out}");
    }
    // Nothing listens on port 9: the config is still good (the database is not needed to start).
    let (ok, out) = check("postgres://kam:Hush-4242@127.0.0.1:9/push");
    assert!(ok, "{out}");
    assert!(!out.contains("Hush-4242"), "{out}");
}

//! Two Kamailio nodes running cfg-examples/push-cluster.cfg whose usrloc keeps the location
//! table in one shared PostgreSQL database (`db_mode` 3, -A WITH_USRLOC_DB; a real server the
//! test starts, testkit::postgres, with Kamailio's own location schema), without dmq_usrloc, with
//! `enable_dmq`: a call held on node A is delivered when the phone registers on node B. usrloc's
//! callback fires only on B (it saved the binding); the push module's DMQ message tells A, which
//! resumes the call and relays it to B (push_cluster_relay()), which delivers it to the binding
//! it wrote in the database.

use std::path::Path;
use std::time::Duration;
use testkit::postgres::Postgres;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

const TOKEN: &str = "db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3db3d";

/// Kamailio's location schema (version table, location tables), created as the module's role.
fn location_schema(pg: &Postgres) -> Option<String> {
    let dir = Path::new("/usr/share/kamailio/postgres");
    let standard = std::fs::read_to_string(dir.join("standard-create.sql")).ok()?;
    let usrloc = std::fs::read_to_string(dir.join("usrloc-create.sql")).ok()?;
    Some(format!("SET ROLE {};\n{standard}\n{usrloc}", pg.user))
}

/// Why this test cannot run here, if it cannot: the Kamailio under test (Debian's, or one built
/// from source by scripts/build-kamailio.sh, which builds no db_postgres) has no db_postgres
/// module, or Kamailio's PostgreSQL schema files are missing.
fn missing() -> Option<String> {
    let module = Path::new(&system_modules()).join("db_postgres.so");
    if !module.is_file() {
        return Some(format!(
            "this Kamailio has no db_postgres module ({}; Debian: kamailio-postgres-modules), \
             which usrloc db_mode 3 on PostgreSQL needs",
            module.display()
        ));
    }
    if !Path::new("/usr/share/kamailio/postgres/usrloc-create.sql").is_file() {
        return Some(
            "Kamailio's PostgreSQL schema (/usr/share/kamailio/postgres) is missing".into(),
        );
    }
    None
}

fn node(
    setup: Setup,
    push_url: &str,
    peer_port: u16,
    usrloc_db: &str,
    enable_dmq: bool,
    timeout: u32,
) -> Kamailio {
    let cfg = repo_root().join("cfg-examples/push-cluster.cfg");
    let app = format!("\"id={APP};provider=webhook;url={push_url};secret={SECRET}\"");
    let me = format!("\"sip:127.0.0.1:{}\"", setup.sip_port);
    let peer = format!("\"sip:127.0.0.1:{peer_port}\"");
    let defines = [
        ("DMQ_SELF", me.as_str()),
        ("DMQ_NOTIFY", peer.as_str()),
        ("ENABLE_DMQ", if enable_dmq { "1" } else { "0" }),
        ("DEBUG_LEVEL", "2"),
        ("WITH_USRLOC_DB", "1"),
        ("USRLOC_DB_URL", usrloc_db),
    ];
    start_with_app(setup, &cfg, &app, timeout, &defines)
}

/// Two DMQ nodes sharing the location table in `pg` (Kamailio's schema created first).
fn pair(
    name: &str,
    pg: &Postgres,
    push_url: &str,
    enable_dmq: bool,
    timeout: u32,
) -> (Kamailio, Kamailio) {
    pg.query(&location_schema(pg).expect("Kamailio's PostgreSQL schema files"))
        .unwrap();
    let usrloc_db = format!("\"{}\"", pg.url());
    let (sa, sb) = (
        Setup::new(&format!("{name}-a")),
        Setup::new(&format!("{name}-b")),
    );
    let (pa, pb) = (sa.sip_port, sb.sip_port);
    let a = node(sa, push_url, pb, &usrloc_db, enable_dmq, timeout);
    let b = node(sb, push_url, pa, &usrloc_db, enable_dmq, timeout);
    for (k, other) in [(&a, pb), (&b, pa)] {
        assert!(
            eventually(Duration::from_secs(20), || dmq_sees_active(k, other)),
            "the DMQ nodes do not see each other:\n{}",
            k.kamcmd(&["dmq.list_nodes"]).unwrap_or_default()
        );
    }
    (a, b)
}

/// The phone registered at A once, and fell asleep; usrloc wrote its binding to the shared table
/// at once (db_mode 3).
fn asleep_after_registering_at(phone: &Phone, a: &Kamailio, pg: &Postgres) {
    phone.register_then_sleep(a);
    let rows = pg
        .query("SELECT count(*) FROM location WHERE username = 'alice'")
        .unwrap();
    assert_eq!(rows, "1", "the binding is not in the shared location table");
}

#[test]
fn with_a_shared_location_database_a_call_held_on_a_is_delivered_through_b() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let started = std::time::Instant::now();
    let pg = Postgres::start("usrloc-db");
    let (pushes, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let (a, b) = pair("uldb", &pg, &server.url(), true, 20);
    let phone = Phone::new("alice", TOKEN, "udp");
    asleep_after_registering_at(&phone, &a, &pg);

    let call = caller(&a, "alice", "udp", "uldb-%u");
    let push = pushes
        .recv_timeout(Duration::from_secs(10))
        .expect("A pushed nothing");
    assert_eq!(push.json()["callee_aor"], "alice");
    assert!(pending(&a).contains("uldb-1"), "{}", pending(&a));
    // The woken phone registers at B, then gets the call held on A.
    let device = phone.wake(&b, "uldb-%u");
    let (ok, out) = device.wait(Duration::from_secs(30));
    assert!(
        ok,
        "the phone, registered at B, did not get the call held on A:\n{out}\n--- A:\n{}\n--- B:\n{}",
        a.log_text(),
        b.log_text()
    );
    let (ok, out) = call.wait(Duration::from_secs(30));
    assert!(ok, "the caller's call was not answered:\n{out}");
    // A heard it through the push module's DMQ message (usrloc's callback ran on B only), and
    // relayed the call to B, which had the phone's binding in the shared table.
    let log_a = assert_resumed_and_relayed_to(&a, &b, "alice", 1);
    assert!(no_call_pending(&a), "{}", pending(&a));
    assert_eq!(stat(&a, "suspended"), 1);
    assert_eq!(stat(&a, "resumed"), 1);
    assert_eq!(stat(&b, "suspended"), 0);
    assert_eq!(stat(&b, "pushes_sent"), 0);
    for log in [&log_a, &b.log_text()] {
        assert!(!log.contains(&TOKEN[..24]), "{log}");
    }
    eprintln!("wall time: {:?}", started.elapsed());
}

/// The same cluster without `enable_dmq`: usrloc's callback fires on B only, so A never hears of
/// the phone, and its call times out although B's binding is in the table A reads (what issue 15
/// reported for db_mode 3 clusters).
#[test]
fn with_a_shared_location_database_but_no_enable_dmq_the_call_held_on_a_times_out() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let pg = Postgres::start("usrloc-db-nodmq");
    let (pushes, on_push) = notifier();
    let server = PushServer::ok(Some(on_push));
    let (a, b) = pair("uldb-nodmq", &pg, &server.url(), false, 5);
    let phone = Phone::new("alice", TOKEN, "udp");
    asleep_after_registering_at(&phone, &a, &pg);
    let call = caller_expecting(&a, "alice", "udp", 480);
    pushes
        .recv_timeout(Duration::from_secs(10))
        .expect("A pushed nothing");
    phone.register_for(&b, 3600);
    let (ok, out) = call.wait(Duration::from_secs(30));
    assert!(
        ok,
        "without enable_dmq the call held on A must time out (480):\n{out}"
    );
    assert!(!a.log_text().contains("registered on another node"));
    assert_eq!(stat(&a, "resumed"), 0);
    assert_eq!(stat(&a, "timed_out"), 1);
}

//! Binding-refresh pushes in a cluster (issue 15): three Kamailio nodes share one PostgreSQL
//! device store (a real server the test starts, testkit::postgres), each with `refresh_window`
//! set and each knowing the phone (the two started after it registered loaded it, with when its
//! binding expires, from the database). Each binding gets exactly one refresh push per cycle
//! from the whole cluster, not one per node: the nodes claim the due bindings in the database.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use testkit::postgres::Postgres;
use testkit::push_server::{PushServer, Request};
use testkit::wake::*;
use testkit::*;

const DAVE: &str = "da7e0000111122223333444455556666777788889999aaaabbbbccccddddeeee";

/// Seconds before a binding expires that its refresh push goes out.
const WINDOW: u32 = 10;

/// A node running push-registrar.cfg with refresh pushes on, its devices in `pg`.
fn node(name: &str, pg: &Postgres, push_url: &str) -> Kamailio {
    let setup = Setup::new(name);
    let cfg = pg.registrar_cfg(&setup.dir);
    let app = format!("\"id={APP};provider=webhook;url={push_url};secret={SECRET}\"");
    let window = WINDOW.to_string();
    let defines = [
        ("PUSH_APP", app.as_str()),
        ("MIN_EXPIRES", "1"),
        ("PUSH_TIMEOUT", "20"),
        ("REFRESH_WINDOW", window.as_str()),
        ("DEBUG_LEVEL", "2"),
    ];
    Kamailio::start_file(setup, &cfg, &defines)
}

fn wait_loaded(k: &Kamailio, n: usize) {
    let line = format!("connected: {n} devices loaded");
    assert!(
        k.wait_for_log(&line, Duration::from_secs(15)),
        "no '{line}' in:\n{}",
        k.log_text()
    );
}

/// The refresh pushes for DAVE that arrive within `within`, and then none more for `quiet` after
/// the last (every node scans each second: a second node's push would come within that).
fn refresh_pushes(pushes: &Receiver<Request>, within: Duration, quiet: Duration) -> Vec<Request> {
    let mut got = Vec::new();
    let until = Instant::now() + within;
    loop {
        let wait = if got.is_empty() {
            until.saturating_duration_since(Instant::now())
        } else {
            quiet
        };
        match pushes.recv_timeout(wait) {
            Ok(push) => {
                let body = push.json();
                assert_eq!(body["type"], "refresh", "not a refresh push: {body}");
                assert_eq!(body["token"], DAVE);
                got.push(push);
            }
            Err(_) => return got,
        }
    }
}

fn refresh_stats(nodes: &[&Kamailio]) -> Vec<u64> {
    nodes.iter().map(|k| stat(k, "refresh_pushes")).collect()
}

#[test]
fn three_nodes_send_one_refresh_push_per_binding_and_cycle() {
    let started = Instant::now();
    let mut pg = Postgres::start("refresh-three");
    let (pushes, hook) = notifier();
    let server = PushServer::ok(Some(hook));
    let a = node("refresh-node-a", &pg, &server.url());
    wait_loaded(&a, 0);
    let dave = Phone::new("dave", DAVE, "udp");

    // Cycle 1: a 20 s binding at A, due for its refresh push 10 s later. B and C start meanwhile
    // and load the device and its binding's expiry from the database.
    let registered = Instant::now();
    // (due 20 s from now: B and C have 19 s to start, even on a loaded machine)
    dave.register_for(&a, WINDOW + 20);
    pg.wait_for(
        "SELECT count(*) FROM push_refresh WHERE aor = 'dave' AND pushed_at IS NULL",
        "1",
        Duration::from_secs(5),
    )
    .unwrap();
    let b = node("refresh-node-b", &pg, &server.url());
    let c = node("refresh-node-c", &pg, &server.url());
    wait_loaded(&b, 1);
    wait_loaded(&c, 1);
    for k in [&b, &c] {
        let devices = k.kamcmd(&["push.devices", "dave"]).unwrap();
        assert!(devices.contains(&DAVE[..6]), "{devices}");
    }
    assert!(
        registered.elapsed() < Duration::from_secs(19),
        "the nodes started too slowly for the test ({:?})",
        registered.elapsed()
    );
    let got = refresh_pushes(&pushes, Duration::from_secs(30), Duration::from_secs(4));
    let nodes = [&a, &b, &c];
    let per_node = refresh_stats(&nodes);
    eprintln!(
        "cycle 1: {} refresh push(es) received, refresh_pushes per node {per_node:?}, first after {:?}",
        got.len(),
        registered.elapsed()
    );
    assert_eq!(got.len(), 1, "refresh pushes in cycle 1");
    assert_eq!(per_node.iter().sum::<u64>(), 1, "{per_node:?}");
    // The claim is in the database.
    let pushed = pg
        .query("SELECT count(*) FROM push_refresh WHERE aor = 'dave' AND pushed_at IS NOT NULL")
        .unwrap();
    assert_eq!(pushed, "1");

    // Cycle 2: the woken phone registers again, at B this time; its new binding gets one refresh
    // push from the cluster.
    let registered = Instant::now();
    dave.register_for(&b, WINDOW + 4);
    let got = refresh_pushes(&pushes, Duration::from_secs(15), Duration::from_secs(4));
    let per_node = refresh_stats(&nodes);
    eprintln!(
        "cycle 2: {} refresh push(es) received, refresh_pushes per node {per_node:?}, first after {:?}",
        got.len(),
        registered.elapsed()
    );
    assert_eq!(got.len(), 1, "refresh pushes in cycle 2");
    assert_eq!(per_node.iter().sum::<u64>(), 2, "{per_node:?}");

    // Cycle 3: the database is down when the phone registers again (at C) and while its binding
    // becomes due: no node can claim it, so none pushes it, and each says so once in the line
    // that says the database is unreachable. When the database is back, C writes the binding
    // and the cluster pushes it once (it has not expired yet).
    pg.stop();
    for k in nodes {
        assert!(
            k.wait_for_log(
                "no binding-refresh push is sent until it is back",
                Duration::from_secs(10)
            ),
            "{}",
            k.log_text()
        );
    }
    let registered = Instant::now();
    dave.register_for(&c, 2 * WINDOW + 4);
    let got = refresh_pushes(
        &pushes,
        Duration::from_secs(u64::from(WINDOW) + 4),
        Duration::ZERO,
    );
    assert!(got.is_empty(), "refresh pushes while the database was down");
    assert_eq!(refresh_stats(&nodes).iter().sum::<u64>(), 2);
    pg.start_again();
    let got = refresh_pushes(&pushes, Duration::from_secs(8), Duration::from_secs(4));
    let per_node = refresh_stats(&nodes);
    eprintln!(
        "cycle 3 (database down while due, back {:?} after the REGISTER): {} refresh push(es) \
         received, refresh_pushes per node {per_node:?}",
        registered.elapsed(),
        got.len()
    );
    assert_eq!(got.len(), 1, "refresh pushes in cycle 3");
    assert_eq!(per_node.iter().sum::<u64>(), 3, "{per_node:?}");
    for k in nodes {
        assert_eq!(
            k.log_text()
                .matches("no binding-refresh push is sent until it is back")
                .count(),
            1,
            "{}",
            k.log_text()
        );
        assert_eq!(stat(k, "pushes_failed"), 0);
        assert!(!k.log_text().contains(&pg.password));
    }
    eprintln!("wall time: {:?}", started.elapsed());
}

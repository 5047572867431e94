//! Cluster benchmark: wake-up calls per second with three Kamailio nodes (calls and the phones'
//! REGISTERs landing on any node), against one node with the same total load, and the DMQ
//! messages each call costs.
//!
//! Every node runs cfg-examples/push-cluster.cfg (DMQ, `enable_dmq` 1, no dmq_usrloc) with its
//! devices in one PostgreSQL server the benchmark starts (testkit::postgres). N users each have
//! a phone that registered with push parameters on some node and fell asleep (1 s binding). The
//! local push endpoint plays the push service and the phones' wake-up: on every push it sends the
//! phone's REGISTER (2 s binding) to a node picked by a hash, unrelated to the node holding the
//! call (so with three nodes two wake-ups in three land elsewhere: the holding node hears of it
//! over DMQ and relays the call through the registering node, push_cluster_relay()). One sipp
//! caller per node calls that node's share of the users, the rates adding up to the step's rate;
//! the rate doubles until a step has a failed call.
//!
//! All nodes share the machine's cores: this measures what clustering costs per call (DMQ
//! messages, the relay hop, the shared store), not the capacity more machines would add.
//!
//! Usage: cargo bench --bench cluster [-- --nodes 1,3 --first-rate 100 --max-rate 3200 --seconds 5]

#[path = "common_bench/mod.rs"]
#[allow(dead_code)]
mod common_bench;

use common_bench::*;
use std::time::{Duration, Instant};
use testkit::postgres::Postgres;
use testkit::*;

/// One step of one configuration.
struct Step {
    rate: u64,
    calls: usize,
    ok: bool,
    failed: String,
    wake_p50_ms: f64,
}

/// One configuration's run.
struct Run {
    nodes: usize,
    steps: Vec<Step>,
    /// DMQ broadcasts (cluster_sent) and messages acted on (cluster_received), all nodes, during
    /// the call steps; the calls they carried.
    sent: u64,
    received: u64,
    calls: u64,
    /// Held calls resumed (all nodes), during the call steps and the rest of the run.
    resumed: u64,
    /// DMQ broadcasts for 1,000 REGISTER refreshes of unchanged, live bindings on one node.
    refresh_messages: u64,
}

fn stat_of(k: &Kamailio, name: &str) -> u64 {
    field(&k.kamcmd(&["push.stats"]).unwrap_or_default(), name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn total(nodes: &[Kamailio], name: &str) -> u64 {
    nodes.iter().map(|k| stat_of(k, name)).sum()
}

fn run(nodes_wanted: usize, rates: &[u64], seconds: u64) -> Run {
    let users = rates.iter().map(|r| r * seconds).max().unwrap_or(0) as usize;
    let pg = Postgres::start(&format!("bench-cluster{nodes_wanted}"));
    let phones = Phones::start();
    let endpoint = PushEndpoint::start(phones.clone(), Duration::ZERO);
    let app = format!(
        "\"id=org.example.phone;provider=webhook;url={}\"",
        endpoint.url()
    );
    let db = format!("\"{}\"", pg.url());
    let cfg = repo_root().join("cfg-examples/push-cluster.cfg");
    // BENCH_DEBUG=2 keeps the nodes' INFO lines (for a look at a failed step).
    let debug = std::env::var("BENCH_DEBUG").unwrap_or_else(|_| "1".into());
    let setups: Vec<Setup> = (0..nodes_wanted)
        .map(|i| Setup::new(&format!("bench-cluster{nodes_wanted}-{i}")))
        .collect();
    let ports: Vec<u16> = setups.iter().map(|s| s.sip_port).collect();
    let nodes: Vec<Kamailio> = setups
        .into_iter()
        .enumerate()
        .map(|(i, setup)| {
            let me = format!("\"sip:127.0.0.1:{}\"", ports[i]);
            let notify = format!("\"sip:127.0.0.1:{}\"", ports[(i + 1) % ports.len()]);
            let defines = [
                ("DMQ_SELF", me.as_str()),
                ("DMQ_NOTIFY", notify.as_str()),
                // One node needs no cluster bus (and must not tell itself).
                ("ENABLE_DMQ", if nodes_wanted > 1 { "1" } else { "0" }),
                ("DEBUG_LEVEL", debug.as_str()),
                ("PUSH_DB", db.as_str()),
                ("PUSH_APP", app.as_str()),
                ("MIN_EXPIRES", "1"),
                ("PUSH_TIMEOUT", "20"),
            ];
            Kamailio::start_file(setup, &cfg, &defines)
        })
        .collect();
    if nodes.len() > 1 {
        for k in &nodes {
            assert!(
                eventually(Duration::from_secs(30), || {
                    let list = k.kamcmd(&["dmq.list_nodes"]).unwrap_or_default();
                    list.matches("status: active").count() >= nodes.len()
                }),
                "the DMQ nodes do not all see each other:\n{}",
                k.kamcmd(&["dmq.list_nodes"]).unwrap_or_default()
            );
        }
    }
    phones.set_registrars(&ports);

    // Every phone registers once (1 s binding) on some node and falls asleep; every node learns
    // every device (DMQ device messages).
    eprintln!("bench: {nodes_wanted} node(s), registering {users} phones");
    register_all(
        users,
        |i, _| phones.register(i, 1, true, false),
        || total(&nodes, "devices_stored"),
    );
    std::thread::sleep(Duration::from_millis(3000));

    // 1,000 other phones register on one node with a live binding, then refresh it unchanged
    // (before any call: no node waits for them).
    phones.set_registrars(&ports[..1]);
    let refreshing: Vec<usize> = (users..users + 1000).collect();
    for &i in &refreshing {
        phones.register(i, 3600, true, false);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let mark = total(&nodes, "cluster_sent");
    for &i in &refreshing {
        phones.register(i, 3600, true, false);
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let refresh_messages = total(&nodes, "cluster_sent") - mark;
    phones.set_registrars(&ports);

    let scenario = caller_scenario(&nodes[0].setup.dir);
    let before = (
        total(&nodes, "cluster_sent"),
        total(&nodes, "cluster_received"),
    );
    let mut steps = Vec::new();
    let mut calls_made = 0u64;
    for &rate in rates {
        let calls = (rate * seconds) as usize;
        phones.reset();
        let started = Instant::now();
        let share = rate as f64 / nodes.len() as f64;
        let running: Vec<Sipp> = nodes
            .iter()
            .enumerate()
            .map(|(n, k)| {
                let mine: Vec<usize> = (0..calls).filter(|i| i % nodes.len() == n).collect();
                spawn_callers_of(
                    k,
                    &scenario,
                    &format!("{share:.3}"),
                    &mine,
                    &format!("{rate}-{n}"),
                    Duration::from_secs(60),
                )
            })
            .collect();
        let mut ok = true;
        let mut failed = 0u64;
        for caller in running {
            let (done, out) = caller.wait(Duration::from_secs(seconds * 4 + 90));
            ok &= done;
            failed += sipp_count(&out, "Failed call").unwrap_or(0);
        }
        calls_made += calls as u64;
        let mut delays: Vec<Duration> = phones.wake_delays();
        let p50 = if delays.is_empty() {
            0.0
        } else {
            quantile(&mut delays, 0.5).as_secs_f64() * 1000.0
        };
        eprintln!(
            "bench: {nodes_wanted} node(s), {rate} calls/s x {calls}: {} ({failed} failed), {:.1} s, wake p50 {p50:.1} ms",
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        steps.push(Step {
            rate,
            calls,
            ok,
            failed: failed.to_string(),
            wake_p50_ms: p50,
        });
        if !ok {
            break;
        }
        // The woken phones' 2 s bindings expire: they sleep again.
        std::thread::sleep(Duration::from_millis(3500));
    }
    let sent = total(&nodes, "cluster_sent") - before.0;
    let received = total(&nodes, "cluster_received") - before.1;
    let resumed = total(&nodes, "resumed");

    drop(nodes);
    drop(pg);
    Run {
        nodes: nodes_wanted,
        steps,
        sent,
        received,
        calls: calls_made,
        resumed,
        refresh_messages,
    }
}

fn main() {
    if std::env::var_os("KAMAILIO_SHM_MB").is_none() {
        std::env::set_var("KAMAILIO_SHM_MB", "512");
    }
    let configs = arg_list("--nodes", &[1, 3]);
    let first = arg("--first-rate", 100);
    let max = arg("--max-rate", 3200);
    let seconds = arg("--seconds", 5);
    let mut rates = Vec::new();
    let mut r = first;
    while r <= max {
        rates.push(r);
        r *= 2;
    }
    let runs: Vec<Run> = configs
        .iter()
        .map(|&n| run(n as usize, &rates, seconds))
        .collect();

    println!("\n| nodes | rate (calls/s) | calls | all delivered | wake p50 (ms) |");
    println!("| --- | --- | --- | --- | --- |");
    for run in &runs {
        for s in &run.steps {
            println!(
                "| {} | {} | {} | {} | {:.1} |",
                run.nodes,
                s.rate,
                s.calls,
                if s.ok {
                    "yes".to_string()
                } else {
                    format!("no ({} failed)", s.failed)
                },
                s.wake_p50_ms
            );
        }
    }
    println!();
    for run in &runs {
        let clean = run
            .steps
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.rate)
            .max()
            .unwrap_or(0);
        let per_call = run.sent as f64 / run.calls.max(1) as f64;
        println!(
            "{} node(s): last clean rate {clean} calls/s; {} calls, {} resumed; \
             DMQ broadcasts {} ({per_call:.2} per call, each to {} node(s)), messages acted on {}; \
             DMQ broadcasts for 1,000 unchanged REGISTER refreshes: {}",
            run.nodes,
            run.calls,
            run.resumed,
            run.sent,
            run.nodes.saturating_sub(1),
            run.received,
            run.refresh_messages
        );
    }
}

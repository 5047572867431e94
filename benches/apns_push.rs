//! APNs push throughput: how many pushes per second the module's APNs provider (the code the
//! dispatcher runs) sustains over one HTTP/2 connection to a local APNs server that checks every
//! JWT and request like Apple, and the round-trip time of each push.
//!
//! APNs is reached at its real host name: the benchmark re-runs itself in a private mount and
//! network namespace where /etc/hosts sends api.push.apple.com to 127.0.0.1 and the local server
//! listens on 443 (root, `unshare`). The server runs in the same process and shares the 2 cores.
//! Usage: cargo bench --bench apns_push [-- --pushes 50000 --in-flight 500]

#[path = "common_bench/mod.rs"]
#[allow(dead_code)]
mod common_bench;

use common_bench::arg;
use push_core::latency::Histogram;
use push_core::providers::apns::{ApnsSender, ApnsTarget};
use push_core::providers::{CallPush, Outcome};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::mock_push::{self, *};

/// Re-runs this benchmark inside a private namespace; returns false in the outer process.
fn in_namespace() -> bool {
    if std::env::var("PUSH_TEST_NETNS").as_deref() == Ok("1") {
        return true;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("apns-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost api.push.apple.com api.sandbox.push.apple.com\n",
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "ip link set lo up && mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
            hosts.display()
        ))
        .arg(&exe)
        .args(std::env::args().skip(1))
        .env("PUSH_TEST_NETNS", "1")
        .status()
        .expect("cannot run unshare");
    assert!(
        status.success(),
        "the benchmark failed inside its namespace"
    );
    false
}

fn main() {
    if !in_namespace() {
        return;
    }
    let pushes = arg("--pushes", 50_000);
    let in_flight = arg("--in-flight", 500) as usize;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("apns-bench")
        .join("pki");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pki = TestPki::create(&dir);
    let key = apns_signing_key(&dir);
    std::env::set_var("SSL_CERT_FILE", &pki.ca_pem);
    let mock = ApnsMock::start(
        "127.0.0.1:443".parse().unwrap(),
        &pki,
        mock_push::ApnsAuth::token(&key),
        apns_always_ok(),
    );

    // The dispatcher's runtime: 2 worker threads (dispatcher_threads' default).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let auth = push_core::config::ApnsAuth::Token {
        key_file: key.p8_path.clone(),
        key_id: key.key_id.clone(),
        team_id: key.team_id.clone(),
    };
    let sender = {
        let _guard = runtime.enter();
        ApnsSender::new("org.example.phone", &auth, false, true).expect("APNs client")
    };
    let latency = Arc::new(Histogram::default());
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let run = |n: u64| {
        let started = Instant::now();
        runtime.block_on(async {
            let gate = Arc::new(tokio::sync::Semaphore::new(in_flight));
            let mut tasks = Vec::with_capacity(n as usize);
            for i in 0..n {
                let permit = gate.clone().acquire_owned().await.unwrap();
                let (sender, latency, sent, failed) = (
                    sender.clone(),
                    latency.clone(),
                    sent.clone(),
                    failed.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let push = CallPush {
                        kind: push_core::providers::PushKind::Call,
                        call_id: format!("bench-{i}@127.0.0.1"),
                        caller_uri: "sip:bob@127.0.0.1".into(),
                        caller_name: Some("Bob".into()),
                        callee_aor: format!("u{i}"),
                        token: String::new(),
                        app_id: "org.example.phone".into(),
                        provider: "apns".into(),
                        sent_at: 0,
                        expires_at: 4_000_000_000,
                        reason: None,
                        text: None,
                        alert: None,
                    };
                    let target = ApnsTarget {
                        token: format!("{:064x}", i + 1),
                        alert_token: None,
                        sandbox: false,
                        param: Some("ABCDE12345.org.example.phone.voip".into()),
                    };
                    let t = Instant::now();
                    let outcome = sender
                        .send(&push, &target, Instant::now() + Duration::from_secs(30))
                        .await;
                    latency.record(t.elapsed().as_nanos() as u64);
                    match outcome {
                        Outcome::Sent { .. } => sent.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        started.elapsed()
    };
    run(1000); // warm-up: connection, JWT, allocations
    let (warm_sent, warm_failed) = (
        sent.swap(0, Ordering::Relaxed),
        failed.swap(0, Ordering::Relaxed),
    );
    assert!(
        warm_failed == 0 && warm_sent == 1000,
        "warm-up: {warm_sent} sent, {warm_failed} failed"
    );
    let elapsed = run(pushes);
    let s = latency.summary();
    let (ok, bad) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("\n| pushes | in flight | seconds | pushes/s | failed | connections |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {pushes} | {in_flight} | {:.2} | {:.0} | {bad} | {} |",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        mock.connections()
    );
    println!(
        "push round trip (incl. warm-up): p50 {} µs, p99 {} µs, max {} µs",
        s.p50_ns / 1000,
        s.p99_ns / 1000,
        s.max_ns / 1000
    );
    assert_eq!(bad, 0, "some pushes failed");
}

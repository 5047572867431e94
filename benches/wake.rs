//! Wake-up benchmark: how many calls per second to sleeping phones complete without failure, and how
//! long push_suspend keeps a SIP worker.
//!
//! Runs a real Kamailio with push.so and cfg-examples/push-registrar.cfg. N users each have a phone
//! that registered with push parameters and fell asleep (1 s binding). A local push endpoint
//! (tiny_http) plays the push service and the phones' wake-up: on every push it sends the phone's
//! REGISTER (2 s binding) whose Contact is a sipp UAS that answers every INVITE. sipp callers call
//! distinct users at a fixed rate; the rate steps up until a step has a failed call.
//! Usage: cargo bench --bench wake [-- --max-rate 800 --seconds 5]

#[path = "common_bench/mod.rs"]
#[allow(dead_code)]
mod common_bench;

use common_bench::*;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::*;

fn main() {
    // Room for thousands of held transactions and bindings.
    if std::env::var_os("KAMAILIO_SHM_MB").is_none() {
        std::env::set_var("KAMAILIO_SHM_MB", "1024");
    }
    let max_rate = arg("--max-rate", 3200);
    let seconds = arg("--seconds", 5);
    let first_rate = arg("--first-rate", 50);
    let mut steps = Vec::new();
    let mut r = first_rate;
    while r <= max_rate {
        steps.push(r);
        r *= 2;
    }
    let users_needed: u64 = steps.iter().map(|r| r * seconds).max().unwrap_or(0);
    let users = users_needed as usize;

    // The phones' SIP stack: one sipp UAS that answers every INVITE.
    let uas_port = free_port();
    let setup = Setup::new("bench-wake");
    let dir = setup.dir.clone();

    // The push service + the phones waking up.
    let reg_socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    let me = reg_socket.local_addr().unwrap().port();
    {
        let s = reg_socket.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while s.recv(&mut buf).is_ok() {}
        });
    }
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let push_port = server.server_addr().to_ip().unwrap().port();
    let kport_cell = Arc::new(AtomicU64::new(0));
    let pushes = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let (server, s, kport, pushes) = (
            server.clone(),
            reg_socket.clone(),
            kport_cell.clone(),
            pushes.clone(),
        );
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let _ = req.respond(tiny_http::Response::from_string("{}"));
                let n = pushes.fetch_add(1, Ordering::Relaxed);
                let v: serde_json::Value = match serde_json::from_str(&body) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                let user = v["callee_aor"].as_str().unwrap_or("").to_string();
                let i: usize = user.trim_start_matches('u').parse().unwrap_or(0);
                let text = register_text(
                    kport.load(Ordering::Relaxed) as u16,
                    me,
                    uas_port,
                    &user,
                    i,
                    1_000_000 + n,
                    2,
                    true,
                );
                let _ = s.send_to(
                    text.as_bytes(),
                    ("127.0.0.1", kport.load(Ordering::Relaxed) as u16),
                );
            }
        });
    }

    let db = setup.db_define();
    let app =
        format!("\"id=org.example.phone;provider=webhook;url=http://127.0.0.1:{push_port}/push\"");
    let k = Kamailio::start_example(
        setup,
        "push-registrar.cfg",
        &[
            ("PUSH_DB", db.as_str()),
            ("PUSH_APP", app.as_str()),
            ("MIN_EXPIRES", "1"),
            ("PUSH_TIMEOUT", "20"),
            ("DEBUG_LEVEL", "1"),
        ],
    );
    let kport = k.sip_port();
    kport_cell.store(kport as u64, Ordering::Relaxed);

    // Every phone registers once (1 s binding) and falls asleep.
    eprintln!("bench: registering {users} phones");
    let stored = |k: &Kamailio| -> u64 {
        field(
            &k.kamcmd(&["push.stats"]).unwrap_or_default(),
            "devices_stored",
        )
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
    };
    register_all(
        users,
        |i, round| {
            let text = register_text(
                kport,
                me,
                uas_port,
                &format!("u{i}"),
                i,
                round * users as u64 + i as u64,
                1,
                true,
            );
            reg_socket
                .send_to(text.as_bytes(), ("127.0.0.1", kport))
                .unwrap();
        },
        || stored(&k),
    );
    std::thread::sleep(Duration::from_millis(2500));

    let scenario = caller_scenario(&dir);

    let mut results = Vec::new();
    for rate in steps {
        let calls = (rate * seconds) as usize;
        let uas_port_text = uas_port.to_string();
        let calls_text = calls.to_string();
        let answering = Sipp::spawn(
            "device_answer.xml",
            kport,
            &["-p", uas_port_text.as_str(), "-m", calls_text.as_str()],
            &dir,
        );
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let caller = spawn_callers(&k, &scenario, rate, calls, Duration::from_secs(40));
        let (ok, out) = caller.wait(Duration::from_secs(seconds * 4 + 60));
        let elapsed = started.elapsed();
        let (uas_ok, _) = answering.wait(Duration::from_secs(5));
        let failed = out
            .lines()
            .find(|l| l.trim_start().starts_with("Failed call"))
            .and_then(|l| l.split('|').nth(2))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into());
        eprintln!(
            "bench: {rate} calls/s x {calls}: caller {} (failed calls: {failed}), phones {}, {:.1} s",
            if ok { "ok" } else { "FAILED" },
            if uas_ok { "ok" } else { "FAILED" },
            elapsed.as_secs_f64()
        );
        results.push((rate, calls, ok && uas_ok, failed));
        if !(ok && uas_ok) {
            break;
        }
        // Let the woken phones' 2 s bindings expire: they sleep again.
        std::thread::sleep(Duration::from_millis(3000));
    }
    let stats = k.kamcmd(&["push.stats"]).unwrap_or_default();
    let get = |name: &str| field(&stats, name).unwrap_or_else(|| "?".into());
    let clean = results
        .iter()
        .filter(|r| r.2)
        .map(|r| r.0)
        .max()
        .unwrap_or(0);
    println!("\n| rate (calls/s) | calls | all delivered |");
    println!("| --- | --- | --- |");
    for (rate, calls, ok, failed) in &results {
        println!(
            "| {rate} | {calls} | {} |",
            if *ok {
                "yes".to_string()
            } else {
                format!("no ({failed} failed)")
            }
        );
    }
    println!("\nlast clean wake-call rate: {clean} calls/s");
    let section = |name: &str| -> String {
        let s = stats_section(&stats, name);
        format!(
            "p50 {} ns, p99 {} ns, avg {} ns, max {} ns over {} calls",
            s.p50, s.p99, s.avg, s.max, s.count
        )
    };
    println!(
        "push_suspend on the SIP worker, all of it: {}",
        section("push_suspend_ns")
    );
    println!(
        "  of which tm's t_newtran + t_suspend:      {}",
        section("tm_suspend_ns")
    );
    println!(
        "  the module's own part (total minus tm):  {}",
        section("own_suspend_ns")
    );
    println!(
        "held call to its push request leaving:     {}",
        section("suspend_to_push_ns")
    );
    println!(
        "counters: suspended {}, resumed {}, pushes_sent {}, pushes_failed {}, timed_out {}",
        get("suspended"),
        get("resumed"),
        get("pushes_sent"),
        get("pushes_failed"),
        get("timed_out")
    );
}

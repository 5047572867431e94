//! The push module against the way people wake phones today, and against the ceiling, in one run.
//!
//! Three systems, one after the other, each a real Kamailio 5.6.3 on this machine with the same
//! workload (sipp callers calling distinct users at a fixed rate, stepping the rate up until a step
//! is not clean: a failed call, or the proxy falling behind):
//!  (a) MODULE: push.so with cfg-examples/push-registrar.cfg (webhook app);
//!  (b) BASELINE: benches/baseline.cfg, stock modules only: t_newtran + t_suspend, "index:label" in
//!      an htable, a blocking http_client_query() from the SIP worker, t_continue() from the
//!      REGISTER route after save();
//!  (c) CEILING: push-registrar.cfg with every phone awake (a live binding: lookup + t_relay, no
//!      push).
//! (a) and (b) push to the same local endpoint (common_bench::PushEndpoint): each push waits
//! `--push-delay-ms`, then the phone's REGISTER leaves and the push is answered 200. The phones
//! (common_bench::Phones) answer every INVITE and timestamp it, so the time from a REGISTER
//! leaving to its held INVITE arriving is measured from outside either proxy.
//! Then: as many calls held at once as asked (`--hold`, `--baseline-hold`) with an endpoint that
//! wakes nobody, memory before and during, then every phone woken and every call checked; and
//! the APNs push rate (`cargo bench --bench apns_push`, run from here).
//!
//! Usage: cargo bench --bench compare [-- --push-delay-ms 100 --seconds 5 --slack-ms 2000
//!        --rates 25,50,100,... --baseline-rates 5,10,20,... --hold 10000 --baseline-hold 300
//!        --apns-pushes 50000 --skip-apns]

#[path = "common_bench/mod.rs"]
#[allow(dead_code)]
mod common_bench;

use common_bench::*;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use testkit::*;

/// Seconds a held call waits in the rate steps (a step that fails ends soon after).
const STEP_HOLD_TIMEOUT: u32 = 15;
/// Seconds a held call waits in the holding test (longer than holding and waking them all).
const HOLD_TIMEOUT: u32 = 150;

struct Opts {
    push_delay: Duration,
    seconds: u64,
    slack: Duration,
    rates: Vec<u64>,
    baseline_rates: Vec<u64>,
    hold: usize,
    hold_rate: u64,
    baseline_hold: usize,
    baseline_hold_rate: u64,
    wake_rate: u64,
    apns_pushes: u64,
    skip_apns: bool,
}

impl Opts {
    fn parse() -> Opts {
        Opts {
            push_delay: Duration::from_millis(arg("--push-delay-ms", 100)),
            seconds: arg("--seconds", 5),
            slack: Duration::from_millis(arg("--slack-ms", 2000)),
            rates: arg_list(
                "--rates",
                &[25, 50, 100, 200, 400, 800, 1200, 1600, 2400, 3200, 4000],
            ),
            baseline_rates: arg_list("--baseline-rates", &[5, 10, 20, 30, 40, 60, 80]),
            hold: arg("--hold", 10_000) as usize,
            hold_rate: arg("--hold-rate", 1000),
            baseline_hold: arg("--baseline-hold", 300) as usize,
            baseline_hold_rate: arg("--baseline-hold-rate", 30),
            wake_rate: arg("--wake-rate", 500),
            apns_pushes: arg("--apns-pushes", 50_000),
            skip_apns: flag("--skip-apns"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Module,
    Baseline,
    Ceiling,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Module => "(a) push module",
            System::Baseline => "(b) baseline",
            System::Ceiling => "(c) ceiling",
        }
    }
}

struct Step {
    rate: u64,
    calls: usize,
    successful: u64,
    failed: u64,
    clean: bool,
    wake: Vec<Duration>,
    /// REGISTERs the phones had to send again (no answer within 500 ms).
    resent: u64,
    /// Seconds from the first call placed to the last one ended.
    took: f64,
    /// Time a held call kept its SIP worker (p50, p99, count in ns), every call up to this step.
    worker: Option<(u64, u64, u64)>,
    /// `kamcmd push.stats` after this step (the module only).
    push_stats: Option<String>,
}

#[derive(Default)]
struct RateRun {
    steps: Vec<Step>,
    clean_rate: u64,
}

impl RateRun {
    /// The clean steps at or below `max_rate`.
    fn clean_steps(&self, max_rate: u64) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .filter(move |s| s.clean && s.rate <= max_rate)
    }

    /// REGISTER leaving to INVITE arriving, every call of the clean steps up to `max_rate`.
    fn wake(&self, max_rate: u64) -> Vec<Duration> {
        self.clean_steps(max_rate)
            .flat_map(|s| s.wake.iter().copied())
            .collect()
    }

    /// Worker time over every call up to the last clean step at or below `max_rate`.
    fn worker(&self, max_rate: u64) -> Option<(u64, u64, u64)> {
        self.clean_steps(max_rate).last().and_then(|s| s.worker)
    }

    /// `push.stats` after the last clean step at or below `max_rate`.
    fn push_stats(&self, max_rate: u64) -> Option<&str> {
        self.clean_steps(max_rate)
            .last()
            .and_then(|s| s.push_stats.as_deref())
    }

    /// The highest step rate at or below half the clean rate ("with headroom").
    fn headroom_rate(&self) -> u64 {
        self.clean_steps(self.clean_rate / 2)
            .map(|s| s.rate)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct HoldRun {
    asked: usize,
    held: u64,
    delivered: u64,
    none_lost: bool,
    shm_per_call: f64,
    pkg_per_call: f64,
    /// The module's own memory (the dispatcher's private heap) per held call.
    heap_per_call: Option<f64>,
    seconds: f64,
}

fn start(
    system: System,
    name: &str,
    endpoint: &PushEndpoint,
    timeout: u32,
    hold: usize,
) -> Kamailio {
    let setup = Setup::new(name);
    let timeout = timeout.to_string();
    match system {
        System::Module | System::Ceiling => {
            let db = setup.db_define();
            let app = format!(
                "\"id=org.example.phone;provider=webhook;url={}\"",
                endpoint.url()
            );
            let max_pending = (hold + 1000).max(10_000).to_string();
            Kamailio::start_example(
                setup,
                "push-registrar.cfg",
                &[
                    ("PUSH_DB", db.as_str()),
                    ("PUSH_APP", app.as_str()),
                    ("MIN_EXPIRES", "1"),
                    ("PUSH_TIMEOUT", timeout.as_str()),
                    ("PUSH_MAX_PENDING", max_pending.as_str()),
                    ("DEBUG_LEVEL", "1"),
                ],
            )
        }
        System::Baseline => {
            let url = format!("\"{}\"", endpoint.url());
            let cfg = testkit::repo_root().join("benches/baseline.cfg");
            Kamailio::start_file(
                setup,
                &cfg,
                &[
                    ("PUSH_URL", url.as_str()),
                    ("MIN_EXPIRES", "1"),
                    ("PUSH_TIMEOUT", timeout.as_str()),
                    ("DEBUG_LEVEL", "1"),
                ],
            )
        }
    }
}

/// `name: value` or `name = value` of `kamcmd stats.get_statistics all`.
fn kamailio_stat(k: &Kamailio, name: &str) -> u64 {
    let out = k
        .kamcmd(&["stats.get_statistics", "all"])
        .unwrap_or_default();
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Entries of one htable (`kamcmd htable.stats`).
fn htable_items(k: &Kamailio, table: &str) -> u64 {
    let out = k.kamcmd(&["htable.stats"]).unwrap_or_default();
    out.split(&format!("name: {table}\n"))
        .nth(1)
        .and_then(|rest| field(rest, "all"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn push_stat(k: &Kamailio, name: &str) -> u64 {
    field(&k.kamcmd(&["push.stats"]).unwrap_or_default(), name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Calls held right now, as the system itself counts them.
fn held_now(k: &Kamailio, system: System) -> u64 {
    match system {
        System::Module => push_stat(k, "held_now"),
        _ => htable_items(k, "held"),
    }
}

/// Phones `0..users` register: asleep for (a) and (b) (push parameters, a 1 s binding that has
/// expired when this returns), awake for (c) (a one-hour binding, no push parameters).
fn register_phones(k: &Kamailio, phones: &Phones, users: usize, system: System) {
    phones.set_registrar(k.sip_port());
    let (expires, push) = match system {
        System::Ceiling => (3600, false),
        _ => (1, true),
    };
    eprintln!("compare: {}: registering {users} phones", system.label());
    register_all(
        users,
        |i, _| phones.register(i, expires, push, false),
        || match system {
            System::Module => push_stat(k, "devices_stored"),
            System::Baseline => htable_items(k, "tokens"),
            System::Ceiling => kamailio_stat(k, "usrloc:location_contacts"),
        },
    );
    if system != System::Ceiling {
        std::thread::sleep(Duration::from_millis(2500));
    }
}

/// The time a held call keeps its SIP worker so far: the module's push_suspend histogram; the
/// baseline's per-call log lines.
fn worker_time(k: &Kamailio, system: System) -> Option<(u64, u64, u64)> {
    match system {
        System::Module => {
            let s = stats_section(
                &k.kamcmd(&["push.stats"]).unwrap_or_default(),
                "push_suspend_ns",
            );
            Some((s.p50, s.p99, s.count))
        }
        System::Baseline => {
            let mut v: Vec<u64> = k
                .log_text()
                .lines()
                .filter_map(|l| l.split("baseline-worker-us=").nth(1))
                .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .map(|us| us * 1000)
                .collect();
            let n = v.len() as u64;
            let p50 = quantile(&mut v, 0.50);
            let p99 = quantile(&mut v, 0.99);
            Some((p50, p99, n))
        }
        System::Ceiling => None,
    }
}

fn run_rates(
    system: System,
    endpoint: &PushEndpoint,
    phones: &Phones,
    rates: &[u64],
    seconds: u64,
    slack: Duration,
) -> RateRun {
    let users = rates.iter().map(|r| r * seconds).max().unwrap_or(0) as usize;
    let k = start(
        system,
        &format!("compare-{system:?}").to_lowercase(),
        endpoint,
        STEP_HOLD_TIMEOUT,
        0,
    );
    endpoint.wake.store(true, Ordering::Relaxed);
    register_phones(&k, phones, users, system);
    let scenario = caller_scenario(&k.setup.dir);
    let mut run = RateRun::default();
    for &rate in rates {
        phones.reset();
        let resent0 = phones.register_retransmissions.load(Ordering::Relaxed);
        let calls = (rate * seconds) as usize;
        let started = Instant::now();
        let caller = spawn_callers(
            &k,
            &scenario,
            rate,
            calls,
            Duration::from_secs(seconds + 25),
        );
        let (ok, out) = caller.wait(Duration::from_secs(seconds + 60));
        let successful = sipp_count(&out, "Successful call").unwrap_or(0);
        let failed = sipp_count(&out, "Failed call").unwrap_or(0);
        // Clean: every call answered, and the proxy kept up (the step ended within `slack` of
        // its last call being placed: no backlog that a longer step would turn into failures).
        let kept_up = started.elapsed() <= Duration::from_secs(seconds) + slack;
        let clean = ok && successful == calls as u64 && failed == 0 && kept_up;
        let wake = phones.wake_delays();
        let resent = phones.register_retransmissions.load(Ordering::Relaxed) - resent0;
        let mut w = wake.clone();
        eprintln!(
            "compare: {}: {rate} calls/s x {calls}: {successful} answered, {failed} failed, \
             kept up: {kept_up}, \
             REGISTER->INVITE p50 {:?} p99 {:?} ({} woken, {resent} REGISTERs resent), {:.1} s",
            system.label(),
            quantile(&mut w, 0.5),
            quantile(&mut w, 0.99),
            w.len(),
            started.elapsed().as_secs_f64()
        );
        if clean {
            run.clean_rate = rate;
        }
        run.steps.push(Step {
            rate,
            calls,
            successful,
            failed,
            clean,
            wake,
            resent,
            took: started.elapsed().as_secs_f64(),
            worker: worker_time(&k, system),
            push_stats: (system == System::Module)
                .then(|| k.kamcmd(&["push.stats"]).unwrap_or_default()),
        });
        if !clean {
            break;
        }
        // The woken phones' 2 s bindings expire: they sleep again.
        std::thread::sleep(Duration::from_millis(if system == System::Ceiling {
            500
        } else {
            3000
        }));
    }
    run
}

/// shm in use, and pkg in use summed over every process, in bytes.
fn memory(k: &Kamailio) -> (u64, u64) {
    let shm = field(&k.kamcmd(&["core.shmmem"]).unwrap_or_default(), "real_used")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pkg = k
        .kamcmd(&["pkg.stats"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("real_used: "))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum();
    (shm, pkg)
}

/// The private (anonymous, not shared) resident memory of the push dispatcher, in bytes.
fn dispatcher_heap(k: &Kamailio) -> Option<u64> {
    let pid = k.process_pid("push dispatcher")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn run_hold(
    system: System,
    endpoint: &PushEndpoint,
    phones: &Phones,
    n: usize,
    rate: u64,
    wake_rate: u64,
) -> HoldRun {
    let k = start(
        system,
        &format!("compare-hold-{system:?}").to_lowercase(),
        endpoint,
        HOLD_TIMEOUT,
        n,
    );
    register_phones(&k, phones, n, system);
    let scenario = caller_scenario(&k.setup.dir);
    endpoint.wake.store(false, Ordering::Relaxed);
    let (shm0, pkg0) = memory(&k);
    let heap0 = dispatcher_heap(&k);
    let started = Instant::now();
    let hold_secs = n as u64 / rate.max(1);
    let caller = spawn_callers(
        &k,
        &scenario,
        rate,
        n,
        Duration::from_secs(hold_secs + n as u64 / wake_rate.max(1) + 60),
    );
    eprintln!(
        "compare: {}: holding {n} calls ({rate} calls/s, nobody wakes)",
        system.label()
    );
    eventually(Duration::from_secs(hold_secs + 30), || {
        held_now(&k, system) >= n as u64
    });
    // Pushes still being answered settle.
    std::thread::sleep(Duration::from_millis(500));
    let held = held_now(&k, system);
    let (shm1, pkg1) = memory(&k);
    let heap1 = dispatcher_heap(&k);
    eprintln!(
        "compare: {}: {held} held (tm: {:?}); shm {} -> {} bytes, pkg {} -> {} bytes; waking all",
        system.label(),
        field(&k.kamcmd(&["tm.stats"]).unwrap_or_default(), "current"),
        shm0,
        shm1,
        pkg0,
        pkg1
    );
    endpoint.wake.store(true, Ordering::Relaxed);
    phones.reset();
    let pace = Duration::from_secs_f64(100.0 / wake_rate.max(1) as f64);
    for i in 0..n {
        phones.register(i, 30, true, true);
        if i % 100 == 99 {
            std::thread::sleep(pace);
        }
    }
    let (ok, out) = caller.wait(Duration::from_secs(HOLD_TIMEOUT as u64 + 60));
    let delivered = sipp_count(&out, "Successful call").unwrap_or(0);
    let failed = sipp_count(&out, "Failed call").unwrap_or(0);
    let left = eventually(Duration::from_secs(5), || held_now(&k, system) == 0);
    eprintln!(
        "compare: {}: {delivered} of {n} held calls answered, {failed} failed, none left held: {left}",
        system.label()
    );
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / held.max(1) as f64;
    HoldRun {
        asked: n,
        held,
        delivered,
        none_lost: ok && held == n as u64 && delivered == n as u64 && failed == 0 && left,
        shm_per_call: per(shm0, shm1),
        pkg_per_call: per(pkg0, pkg1),
        heap_per_call: match (heap0, heap1) {
            (Some(a), Some(b)) => Some(per(a, b)),
            _ => None,
        },
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Pushes per second of `cargo bench --bench apns_push`.
fn apns_rate(pushes: u64) -> Option<f64> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("compare: running the APNs push benchmark ({pushes} pushes)");
    let out = Command::new(cargo)
        .args([
            "bench",
            "--bench",
            "apns_push",
            "--",
            "--pushes",
            &pushes.to_string(),
        ])
        .current_dir(testkit::repo_root())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    text.lines()
        .find(|l| l.starts_with(&format!("| {pushes} |")))
        .and_then(|l| l.split('|').nth(4))
        .and_then(|v| v.trim().parse().ok())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn ns_text(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.0} µs", ns as f64 / 1e3)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        let r = a / b;
        if r >= 10.0 {
            format!("{r:.0}")
        } else if r >= 0.1 {
            format!("{r:.2}")
        } else {
            format!("{r:.5}")
        }
    } else {
        "-".into()
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn main() {
    // Room for 10,000 held transactions and their bindings.
    if std::env::var_os("KAMAILIO_SHM_MB").is_none() {
        std::env::set_var("KAMAILIO_SHM_MB", "1024");
    }
    let o = Opts::parse();
    let begun = Instant::now();
    let phones = Phones::start();
    let endpoint = PushEndpoint::start(phones.clone(), o.push_delay);

    let ceiling = run_rates(
        System::Ceiling,
        &endpoint,
        &phones,
        &o.rates,
        o.seconds,
        o.slack,
    );
    let module = run_rates(
        System::Module,
        &endpoint,
        &phones,
        &o.rates,
        o.seconds,
        o.slack,
    );
    let baseline = run_rates(
        System::Baseline,
        &endpoint,
        &phones,
        &o.baseline_rates,
        o.seconds,
        o.slack,
    );
    let hold_module = (o.hold > 0).then(|| {
        run_hold(
            System::Module,
            &endpoint,
            &phones,
            o.hold,
            o.hold_rate,
            o.wake_rate,
        )
    });
    let hold_baseline = (o.baseline_hold > 0).then(|| {
        run_hold(
            System::Baseline,
            &endpoint,
            &phones,
            o.baseline_hold,
            o.baseline_hold_rate,
            o.wake_rate,
        )
    });
    let apns = if o.skip_apns {
        None
    } else {
        apns_rate(o.apns_pushes)
    };

    println!(
        "\nPush endpoint: answers {} ms after each push, the woken phone's REGISTER leaving just \
         before the answer. {} s per rate step; a step is clean when every call is answered and \
         it ends within {:.1} s of its last call being placed.",
        o.push_delay.as_millis(),
        o.seconds,
        o.slack.as_secs_f64()
    );
    for (system, run) in [
        (System::Module, &module),
        (System::Baseline, &baseline),
        (System::Ceiling, &ceiling),
    ] {
        println!("\n{}: rate steps", system.label());
        println!(
            "| rate (calls/s) | calls | answered | failed | step took | REGISTER -> INVITE p50 / p99 \
             | REGISTERs resent | SIP worker time p50 / p99, every call so far |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for s in &run.steps {
            let mut w = s.wake.clone();
            let wake = if w.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{} / {}",
                    ms(quantile(&mut w, 0.5)),
                    ms(quantile(&mut w, 0.99))
                )
            };
            let worker = s
                .worker
                .filter(|w| w.2 > 0)
                .map(|w| format!("{} / {}", ns_text(w.0), ns_text(w.1)))
                .unwrap_or_else(|| "-".into());
            println!(
                "| {} | {} | {} | {} | {:.1} s | {wake} | {} | {worker} |",
                s.rate,
                s.calls,
                s.successful,
                if s.clean {
                    "0".to_string()
                } else if s.failed > 0 || s.successful < s.calls as u64 {
                    format!("{} (step failed)", s.failed)
                } else {
                    "0, but it fell behind (step failed)".to_string()
                },
                s.took,
                s.resent
            );
        }
    }

    let rate_ratio = module.clean_rate as f64 / baseline.clean_rate.max(1) as f64;
    println!(
        "\n| figure | (a) push module | (b) baseline (blocking http_client) \
         | (c) ceiling (awake phone) | (a)/(b) | target | met |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| clean wake-call rate (calls/s, zero failed, kept up) | {} | {} | {} | {} \
         | >= 10x (b), towards (c) | {} |",
        module.clean_rate,
        baseline.clean_rate,
        ceiling.clean_rate,
        ratio(module.clean_rate as f64, baseline.clean_rate as f64),
        yes(baseline.clean_rate > 0 && rate_ratio >= 10.0)
    );
    let mut splits = Vec::new();
    // Latencies twice: over every clean step, and over the steps with headroom (at most half
    // the system's clean rate).
    for (view, mr, br) in [
        ("all clean steps", module.clean_rate, baseline.clean_rate),
        (
            "steps <= half the clean rate",
            module.headroom_rate(),
            baseline.headroom_rate(),
        ),
    ] {
        let view = format!("{view}: (a) <= {mr}, (b) <= {br} calls/s");
        let (mw, bw) = (
            module.worker(mr).unwrap_or_default(),
            baseline.worker(br).unwrap_or_default(),
        );
        println!(
            "| SIP worker time per held call p50, {view} ({} / {} calls) | {} | {} | - | {} | | |",
            mw.2,
            bw.2,
            ns_text(mw.0),
            ns_text(bw.0),
            ratio(mw.0 as f64, bw.0 as f64)
        );
        println!(
            "| SIP worker time per held call p99, {view} | {} | {} | - | {} | < 50 µs | {} |",
            ns_text(mw.1),
            ns_text(bw.1),
            ratio(mw.1 as f64, bw.1 as f64),
            yes(mw.2 > 0 && mw.1 < 50_000)
        );
        let (mut wm, mut wb) = (module.wake(mr), baseline.wake(br));
        let (wm50, wm99, wb50, wb99) = (
            quantile(&mut wm, 0.5),
            quantile(&mut wm, 0.99),
            quantile(&mut wb, 0.5),
            quantile(&mut wb, 0.99),
        );
        println!(
            "| REGISTER in -> INVITE out p50, {view} ({} / {} calls) | {} | {} | - | {} | | |",
            wm.len(),
            wb.len(),
            ms(wm50),
            ms(wb50),
            ratio(wm50.as_secs_f64(), wb50.as_secs_f64())
        );
        println!(
            "| REGISTER in -> INVITE out p99, {view} | {} | {} | - | {} | < 2 ms | {} |",
            ms(wm99),
            ms(wb99),
            ratio(wm99.as_secs_f64(), wb99.as_secs_f64()),
            yes(!wm.is_empty() && wm99 < Duration::from_millis(2))
        );
        if let Some(stats) = module.push_stats(mr) {
            let (tm, own) = (
                stats_section(stats, "tm_suspend_ns"),
                stats_section(stats, "own_suspend_ns"),
            );
            splits.push(format!(
                "(a) push_suspend, {view}: tm's t_newtran + t_suspend p50 {} / p99 {}, \
                 the module's own part p50 {} / p99 {}",
                ns_text(tm.p50),
                ns_text(tm.p99),
                ns_text(own.p50),
                ns_text(own.p99)
            ));
        }
    }
    let hold_text = |h: &Option<HoldRun>| match h {
        Some(h) => format!(
            "{} of {} held, {} delivered{} ({:.0} s)",
            h.held,
            h.asked,
            h.delivered,
            if h.none_lost {
                ", none lost"
            } else {
                ", SOME LOST"
            },
            h.seconds
        ),
        None => "not run".into(),
    };
    println!(
        "| calls held at once, then all woken | {} | {} | - | - | 10,000, none lost | {} |",
        hold_text(&hold_module),
        hold_text(&hold_baseline),
        yes(hold_module
            .as_ref()
            .map(|h| h.none_lost && h.asked >= 10_000)
            .unwrap_or(false))
    );
    let mem = |h: &Option<HoldRun>, f: &dyn Fn(&HoldRun) -> Option<f64>| {
        h.as_ref()
            .and_then(f)
            .map(|v| format!("{v:.0} B"))
            .unwrap_or_else(|| "-".into())
    };
    let shm = |h: &HoldRun| Some(h.shm_per_call);
    let pkg = |h: &HoldRun| Some(h.pkg_per_call);
    let heap = |h: &HoldRun| h.heap_per_call;
    println!(
        "| memory per held call: Kamailio shm | {} | {} | - | {} | | |",
        mem(&hold_module, &shm),
        mem(&hold_baseline, &shm),
        ratio(
            hold_module.as_ref().map(|h| h.shm_per_call).unwrap_or(0.0),
            hold_baseline
                .as_ref()
                .map(|h| h.shm_per_call)
                .unwrap_or(0.0)
        )
    );
    println!(
        "| memory per held call: pkg, all processes | {} | {} | - | - | | |",
        mem(&hold_module, &pkg),
        mem(&hold_baseline, &pkg)
    );
    println!(
        "| memory per held call: push dispatcher heap | {} | - (no such process) | - | - | | |",
        mem(&hold_module, &heap)
    );
    println!(
        "| pushes/s to the local APNs server (HTTP/2) | {} | - (http_client: no HTTP/2 APNs with JWT) | - | - | >= 10,000 | {} |",
        apns.map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "not run".into()),
        yes(apns.map(|r| r >= 10_000.0).unwrap_or(false))
    );
    println!();
    for line in splits {
        println!("{line}");
    }
    println!(
        "\nwhole run: {:.0} s; pushes served by the endpoint: {}",
        begun.elapsed().as_secs_f64(),
        endpoint.pushes.load(Ordering::Relaxed)
    );
}

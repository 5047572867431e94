//! Prometheus metrics as an operator scrapes them: a real Kamailio with xhttp_prom
//! (push-registrar.cfg with WITH_PROMETHEUS), a few wake-up calls (one woken, one whose push is
//! rejected, one whose token is dead), then `/metrics` read over HTTP and parsed with a Prometheus
//! text-format parser. Also: `stats.reset_statistics` resets the labelled counters with the
//! statistics, and every query of the Grafana dashboard names a metric the scrape has.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

/// GET /metrics on the SIP TCP listener (xhttp). Kamailio keeps the connection open after its
/// answer, so the body is read by its Content-Length.
fn scrape_text(k: &Kamailio) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", k.sip_port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let text = String::from_utf8_lossy(&response).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(
                head.starts_with("HTTP/1.") && head.contains(" 200 "),
                "{head}"
            );
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no Content-Length: {head}"));
            if body.len() >= length {
                return body[..length].to_string();
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed early: {text}"),
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading /metrics: {e}: {text}"),
        }
    }
}

/// One sample of a scrape as the parser understood it.
struct Series {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

struct Scrape {
    series: Vec<Series>,
    /// Each family's type as the parser saw it ("unknown" without `# TYPE`).
    types: HashMap<String, String>,
}

/// Scrapes `/metrics` and parses it with the Prometheus project's Python client library
/// (Debian's python3-prometheus-client, through tests/prom_parse.py).
fn scrape(k: &Kamailio) -> (String, Scrape) {
    let text = scrape_text(k);
    let mut child = Command::new("/usr/bin/python3")
        .arg(repo_root().join("tests/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut series = Vec::new();
    let mut types = HashMap::new();
    for family in families.as_array().unwrap() {
        let name = family["name"].as_str().unwrap().to_string();
        types.insert(name, family["type"].as_str().unwrap().to_string());
        for sample in family["samples"].as_array().unwrap() {
            series.push(Series {
                name: sample["name"].as_str().unwrap().to_string(),
                labels: sample["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                value: sample["value"].as_f64().unwrap(),
            });
        }
    }
    (text, Scrape { series, types })
}

/// The value of the series `metric` with these labels (among others).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .series
        .iter()
        .find(|s| {
            s.name == metric
                && labels
                    .iter()
                    .all(|(n, v)| s.labels.get(*n).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// How many observations a histogram has for these labels (its `_count`).
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    value(scrape, &format!("{metric}_count"), labels)
}

/// Whether this Kamailio's xhttp_prom prints `# TYPE` (6.1 and later, with the metadata flag
/// push-registrar.cfg sets there).
fn prints_types() -> bool {
    let out = std::process::Command::new(kamailio_bin())
        .arg("-v")
        .output()
        .expect("kamailio -v");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version: kamailio "))
        .unwrap_or("0.0");
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().unwrap_or("0").parse().unwrap_or(0);
    let minor: u32 = parts.next().unwrap_or("0").parse().unwrap_or(0);
    (major, minor) >= (6, 1)
}

const GOOD: &str = "aaaa0001aaaa0001aaaa0001aaaa0001aaaa0001aaaa0001aaaa0001aaaa0001";
const REFUSED: &str = "bbbb0002bbbb0002bbbb0002bbbb0002bbbb0002bbbb0002bbbb0002bbbb0002";
const DEAD: &str = "cccc0003cccc0003cccc0003cccc0003cccc0003cccc0003cccc0003cccc0003";

/// A registrar with Prometheus whose push endpoint accepts the first push, refuses the second
/// with 400 and says 410 (token dead) to the third; alice, carol and dave sleep.
fn three_calls() -> (PushServer, Kamailio) {
    let server = PushServer::start(
        Box::new(|n| match n {
            0 => (200, Duration::ZERO),
            1 => (400, Duration::ZERO),
            2 => (410, Duration::ZERO),
            _ => (200, Duration::ZERO),
        }),
        None,
    );
    let k = registrar_with("metrics", &server.url(), 20, &[("WITH_PROMETHEUS", "1")]);
    let alice = Phone::new("alice", GOOD, "udp");
    alice.register_then_sleep(&k);
    Phone::new("carol", REFUSED, "udp").register_then_sleep(&k);
    Phone::new("dave", DEAD, "udp").register_then_sleep(&k);

    // alice is woken and answers.
    let call = caller(&k, "alice", "udp", "metrics-%u");
    server.wait_for(1, Duration::from_secs(10));
    let device = alice.wake(&k, "metrics-%u");
    assert_call_completed(device, call, Duration::from_secs(30));
    // carol's push is refused, dave's token is dead: both calls fail at once.
    let (ok, out) = caller_expecting(&k, "carol", "udp", 480).wait(Duration::from_secs(30));
    assert!(ok, "carol's caller:\n{out}");
    let (ok, out) = caller_expecting(&k, "dave", "udp", 480).wait(Duration::from_secs(30));
    assert!(ok, "dave's caller:\n{out}");
    (server, k)
}

#[test]
fn metrics_have_labels_histograms_and_the_dashboard_queries_exist() {
    let (_server, k) = three_calls();
    let app = [("app", APP), ("provider", "webhook")];
    // The dispatcher exports at its next tick; the device count every few seconds.
    let mut last = String::new();
    let settled = eventually(Duration::from_secs(15), || {
        let (text, s) = scrape(&k);
        last = text;
        value(&s, "kamailio_push_sent_total", &app) == Some(1.0)
            && value(&s, "kamailio_push_devices", &[]) == Some(2.0)
            && observations(&s, "kamailio_push_held_seconds", &[("outcome", "failed")]) == Some(2.0)
    });
    assert!(settled, "metrics did not settle:\n{last}");
    let (text, s) = scrape(&k);

    // Counters per app and provider, failures per reason.
    let failed = |reason| {
        value(
            &s,
            "kamailio_push_failed_total",
            &[("app", APP), ("provider", "webhook"), ("reason", reason)],
        )
    };
    assert_eq!(failed("rejected"), Some(1.0), "{text}");
    assert_eq!(failed("token_dead"), Some(1.0), "{text}");
    // Every app's label sets exist from the start, at zero until something happens.
    assert_eq!(failed("gave_up"), Some(0.0), "{text}");
    assert_eq!(failed("credentials"), Some(0.0), "{text}");
    assert_eq!(value(&s, "kamailio_push_end_pushes_total", &app), Some(0.0));
    assert_eq!(
        value(&s, "kamailio_push_refresh_pushes_total", &app),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "kamailio_push_dead_tokens_total", &app),
        Some(1.0)
    );
    // Levels: nothing held; carol and alice stored, dave forgotten; the app healthy.
    assert_eq!(value(&s, "kamailio_push_held_calls", &[]), Some(0.0));
    assert_eq!(value(&s, "kamailio_push_app_failing", &app), Some(0.0));
    // Histograms: three round trips to the webhook, one wake-up, and how the three calls ended.
    assert_eq!(
        observations(
            &s,
            "kamailio_push_round_trip_seconds",
            &[("provider", "webhook")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        observations(&s, "kamailio_push_wake_seconds", &[]),
        Some(1.0)
    );
    assert_eq!(
        observations(&s, "kamailio_push_held_seconds", &[("outcome", "resumed")]),
        Some(1.0)
    );
    // Buckets are cumulative: the wake-up is in every bucket from some bound on.
    let wake_buckets: Vec<f64> = s
        .series
        .iter()
        .filter(|x| x.name == "kamailio_push_wake_seconds_bucket")
        .map(|x| x.value)
        .collect();
    assert!(wake_buckets.len() >= 10, "{text}");
    assert!(
        wake_buckets.windows(2).all(|w| w[0] <= w[1]),
        "{wake_buckets:?}"
    );
    // The module's statistics are there too (xhttp_prom_stats "push:").
    assert_eq!(
        value(&s, "kamailio_push_pushes_sent", &[]),
        Some(1.0),
        "{text}"
    );

    if prints_types() {
        // The library names a counter family without its `_total`.
        for (family, kind) in [
            ("kamailio_push_sent", "counter"),
            ("kamailio_push_failed", "counter"),
            ("kamailio_push_held_calls", "gauge"),
            ("kamailio_push_app_failing", "gauge"),
            ("kamailio_push_wake_seconds", "histogram"),
            ("kamailio_push_round_trip_seconds", "histogram"),
        ] {
            assert_eq!(
                s.types.get(family).map(String::as_str),
                Some(kind),
                "{family}:\n{text}"
            );
        }
    }

    // Every metric a dashboard query names is in the scrape.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("cfg-examples/push-grafana.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let present: std::collections::HashSet<&str> =
        s.series.iter().map(|x| x.name.as_str()).collect();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                present.contains(name.as_str()),
                "dashboard query {expr} names {name}, which the module does not export:\n{text}"
            );
        }
    }
}

/// Every `expr` string in the dashboard JSON.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// The metric names in a PromQL expression: identifiers with the exporter's `kamailio_` prefix
/// (label names, functions and `by (...)` lists never have it).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("kamailio_") {
                names.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

#[test]
fn resetting_the_statistics_resets_the_labelled_counters() {
    let (server, k) = three_calls();
    let app = [("app", APP), ("provider", "webhook")];
    assert!(eventually(Duration::from_secs(10), || value(
        &scrape(&k).1,
        "kamailio_push_sent_total",
        &app
    ) == Some(1.0)));
    let stats = k.kamcmd(&["stats.get_statistics", "push:"]).unwrap();
    assert!(stats.contains("push:pushes_sent = 1"), "{stats}");
    assert!(stats.contains("push:pushes_failed = 2"), "{stats}");

    k.kamcmd(&["stats.reset_statistics", "push:"]).unwrap();
    // The statistics read zero at once; levels are not reset.
    let stats = k.kamcmd(&["stats.get_statistics", "push:"]).unwrap();
    for line in [
        "push:pushes_sent = 0",
        "push:pushes_failed = 0",
        "push:resumed = 0",
        "push:dead_tokens = 0",
        "push:held_now = 0",
    ] {
        assert!(
            stats.contains(line),
            "no '{line}' after the reset:\n{stats}"
        );
    }
    // The labelled counters follow within a tick; histograms are cumulative and stay.
    let mut last = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            let (text, s) = scrape(&k);
            last = text;
            value(&s, "kamailio_push_sent_total", &app) == Some(0.0)
                && value(
                    &s,
                    "kamailio_push_failed_total",
                    &[
                        ("app", APP),
                        ("provider", "webhook"),
                        ("reason", "rejected"),
                    ],
                ) == Some(0.0)
        }),
        "labelled counters not reset:\n{last}"
    );
    assert_eq!(
        observations(&scrape(&k).1, "kamailio_push_wake_seconds", &[]),
        Some(1.0)
    );

    // Counting goes on from zero: a test push to alice.
    let answer = k.kamcmd(&["push.send", "alice"]).unwrap();
    assert!(answer.contains("sent"), "{answer}");
    server.wait_for(4, Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(10), || value(
        &scrape(&k).1,
        "kamailio_push_sent_total",
        &app
    ) == Some(1.0)));
    let stats = k.kamcmd(&["stats.get_statistics", "pushes_sent"]).unwrap();
    assert!(stats.contains("push:pushes_sent = 1"), "{stats}");
}

#[test]
fn without_xhttp_prom_the_module_runs_and_says_nothing_of_metrics() {
    let server = PushServer::ok(None);
    let k = registrar("metrics-off", &server.url(), 20);
    let log = k.log_text();
    assert!(!log.contains("Prometheus metrics created"), "{log}");
    assert!(!log.contains("xhttp_prom refused"), "{log}");
    // Statistics still reset.
    let phone = Phone::new("alice", GOOD, "udp");
    phone.register_then_sleep(&k);
    let answer = k.kamcmd(&["push.send", "alice"]).unwrap();
    assert!(answer.contains("sent"), "{answer}");
    let mut last = String::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            last = k.kamcmd(&["stats.get_statistics", "push:"]).unwrap();
            last.contains("push:pushes_sent = 1")
        }),
        "{last}\n{}",
        k.kamcmd(&["push.stats"]).unwrap()
    );
    k.kamcmd(&["stats.reset_statistics", "pushes_sent"])
        .unwrap();
    let stats = k.kamcmd(&["stats.get_statistics", "push:"]).unwrap();
    assert!(stats.contains("push:pushes_sent = 0"), "{stats}");
}

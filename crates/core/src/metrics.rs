//! Prometheus metrics with labels, exported through Kamailio's xhttp_prom module.
//!
//! Kamailio's statistics (group `push`, see [`crate::shared`]) are plain numbers; an operator who
//! graphs a fleet also wants them per app and provider, and timings as histograms that can be
//! summed over nodes and windows. Those are the [`FAMILIES`] here. The dispatcher's engine
//! records events into a [`Metrics`] on its main thread; at each tick it hands the changes
//! ([`Update`]s) to the host, which applies them to xhttp_prom's metrics (created from
//! [`Family::spec`] at startup). Nothing here knows Kamailio.
//!
//! Counters reset as Kamailio's statistics do: a family tied to a statistic (`statistic`) is reset,
//! every label set of it, when that statistic is (`kamcmd stats.reset_statistics push:`).
//! Histograms are never reset (xhttp_prom cannot), as Prometheus expects of cumulative buckets.

use std::collections::BTreeMap;

/// What a metric family is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// With the upper bounds of its buckets, in seconds.
    Histogram(&'static [f64]),
}

/// One metric family: its name (xhttp_prom prints it after its own prefix, `kamailio_` by default),
/// kind, label names (xhttp_prom allows up to three) and the statistic whose reset resets it.
#[derive(Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    pub statistic: Option<&'static str>,
}

impl Family {
    /// The xhttp_prom module parameter that creates this family, and its value:
    /// `("prom_counter", "name=push_sent_total; label=app:provider")`.
    pub fn spec(&self) -> (&'static str, String) {
        let mut spec = format!("name={}", self.name);
        if let MetricKind::Histogram(buckets) = self.kind {
            let bounds: Vec<String> = buckets.iter().map(|b| b.to_string()).collect();
            spec.push_str(&format!("; buckets={}", bounds.join(":")));
        }
        if !self.labels.is_empty() {
            spec.push_str(&format!("; label={}", self.labels.join(":")));
        }
        let param = match self.kind {
            MetricKind::Counter => "prom_counter",
            MetricKind::Gauge => "prom_gauge",
            MetricKind::Histogram(_) => "prom_histogram",
        };
        (param, spec)
    }

    /// The names a scrape shows for this family (a histogram's three series).
    pub fn series_names(&self, prefix: &str) -> Vec<String> {
        match self.kind {
            MetricKind::Histogram(_) => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{prefix}{}{s}", self.name))
                .collect(),
            _ => vec![format!("{prefix}{}", self.name)],
        }
    }
}

/// Buckets for a push's round trip (request to final answer, retries included), in seconds.
const ROUND_TRIP_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets for a wake-up (pushes out to the device registering), in seconds.
const WAKE_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0];
/// Buckets for the time a call was held, in seconds.
const HELD_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0];

/// Pushes a push service accepted.
pub const SENT: usize = 0;
/// Pushes that failed for good, by reason.
pub const FAILED: usize = 1;
/// Devices forgotten because the push service said their token is dead.
pub const DEAD_TOKENS: usize = 2;
/// End-of-call pushes accepted.
pub const END_PUSHES: usize = 3;
/// Binding-refresh pushes accepted.
pub const REFRESH_PUSHES: usize = 4;
/// Calls held now.
pub const HELD_CALLS: usize = 5;
/// Devices stored.
pub const DEVICES: usize = 6;
/// Each app's circuit breaker: 1 open, 0 closed.
pub const APP_FAILING: usize = 7;
/// A push's round trip.
pub const ROUND_TRIP: usize = 8;
/// Wake time.
pub const WAKE: usize = 9;
/// Time a call was held, by how it ended.
pub const HELD: usize = 10;

/// Every family, indexed by the constants above.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "push_sent_total",
        kind: MetricKind::Counter,
        labels: &["app", "provider"],
        help: "Pushes a push service accepted (calls, messages, end-of-call, refresh, tests).",
        statistic: Some("pushes_sent"),
    },
    Family {
        name: "push_failed_total",
        kind: MetricKind::Counter,
        labels: &["app", "provider", "reason"],
        help: "Pushes that failed for good: reason rejected, credentials, token_dead or gave_up.",
        statistic: Some("pushes_failed"),
    },
    Family {
        name: "push_dead_tokens_total",
        kind: MetricKind::Counter,
        labels: &["app", "provider"],
        help: "Devices forgotten because their push service said the token is dead.",
        statistic: Some("dead_tokens"),
    },
    Family {
        name: "push_end_pushes_total",
        kind: MetricKind::Counter,
        labels: &["app", "provider"],
        help: "End-of-call pushes (cancelled, answered elsewhere, timeout) accepted.",
        statistic: Some("end_pushes"),
    },
    Family {
        name: "push_refresh_pushes_total",
        kind: MetricKind::Counter,
        labels: &["app", "provider"],
        help: "Binding-refresh pushes accepted.",
        statistic: Some("refresh_pushes"),
    },
    Family {
        name: "push_held_calls",
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Calls and messages held right now.",
        statistic: None,
    },
    Family {
        name: "push_devices",
        kind: MetricKind::Gauge,
        labels: &[],
        help: "Devices in the device store.",
        statistic: None,
    },
    Family {
        name: "push_app_failing",
        kind: MetricKind::Gauge,
        labels: &["app", "provider"],
        help: "1 while the app's circuit breaker is open (its devices are not pushed), else 0.",
        statistic: None,
    },
    Family {
        name: "push_round_trip_seconds",
        kind: MetricKind::Histogram(ROUND_TRIP_BUCKETS),
        labels: &["provider"],
        help: "A push from its first request to the push service's final answer, retries included.",
        statistic: None,
    },
    Family {
        name: "push_wake_seconds",
        kind: MetricKind::Histogram(WAKE_BUCKETS),
        labels: &[],
        help:
            "A held call's wake-up: from holding it and sending its pushes to a device registering.",
        statistic: None,
    },
    Family {
        name: "push_held_seconds",
        kind: MetricKind::Histogram(HELD_BUCKETS),
        labels: &["outcome"],
        help: "How long a call was held: outcome resumed, timeout, failed or cancelled.",
        statistic: None,
    },
];

/// One change for the host to apply to xhttp_prom.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    CounterInc {
        family: &'static Family,
        labels: Vec<String>,
        by: u64,
    },
    CounterReset {
        family: &'static Family,
        labels: Vec<String>,
    },
    GaugeSet {
        family: &'static Family,
        labels: Vec<String>,
        value: f64,
    },
    Observe {
        family: &'static Family,
        labels: Vec<String>,
        value: f64,
    },
}

/// At most this many observations wait for the next export; more are dropped (and counted), so a
/// host that cannot keep up never makes the engine grow.
pub const MAX_PENDING_OBSERVATIONS: usize = 20_000;

/// The longest label value kept (label values come from app names and fixed words, but an app
/// name is the operator's text).
const MAX_LABEL: usize = 64;

/// The engine's record of its metrics since the last export.
#[derive(Default)]
pub struct Metrics {
    /// Each counter's total since its last reset, and how much of it was exported (None: the
    /// label set is new, and is exported even at zero).
    counters: BTreeMap<(usize, Vec<String>), (u64, Option<u64>)>,
    /// Each gauge's value, and the value last exported.
    gauges: BTreeMap<(usize, Vec<String>), (f64, Option<f64>)>,
    observations: Vec<(usize, Vec<String>, f64)>,
    /// Observations dropped because the host did not take them in time.
    pub dropped: u64,
}

/// A label value as xhttp_prom prints it inside quotes: printable ASCII without quote or
/// backslash, bounded.
fn label_value(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(MAX_LABEL)
        .collect()
}

fn labels_of(family: usize, labels: &[&str]) -> Vec<String> {
    debug_assert_eq!(FAMILIES[family].labels.len(), labels.len());
    labels.iter().map(|l| label_value(l)).collect()
}

impl Metrics {
    /// Adds `by` to counter `family` with these label values.
    pub fn count(&mut self, family: usize, labels: &[&str], by: u64) {
        let entry = self
            .counters
            .entry((family, labels_of(family, labels)))
            .or_insert((0, None));
        entry.0 = entry.0.saturating_add(by);
    }

    /// Sets gauge `family` with these label values.
    pub fn set(&mut self, family: usize, labels: &[&str], value: f64) {
        let entry = self
            .gauges
            .entry((family, labels_of(family, labels)))
            .or_insert((value, None));
        entry.0 = value;
    }

    /// Records one observation (seconds) in histogram `family`.
    pub fn observe(&mut self, family: usize, labels: &[&str], seconds: f64) {
        if self.observations.len() >= MAX_PENDING_OBSERVATIONS {
            self.dropped += 1;
            return;
        }
        self.observations
            .push((family, labels_of(family, labels), seconds));
    }

    /// A counter's total since its last reset (0 if never counted).
    pub fn counter(&self, family: usize, labels: &[&str]) -> u64 {
        self.counters
            .get(&(family, labels_of(family, labels)))
            .map_or(0, |c| c.0)
    }

    /// The statistic `statistic` was reset: every counter family tied to it starts from zero,
    /// here and (through the returned updates) in xhttp_prom.
    pub fn reset_statistic(&mut self, statistic: &str) -> Vec<Update> {
        let mut updates = Vec::new();
        for ((family, labels), value) in self.counters.iter_mut() {
            let f = &FAMILIES[*family];
            if f.statistic == Some(statistic) {
                *value = (0, Some(0));
                updates.push(Update::CounterReset {
                    family: f,
                    labels: labels.clone(),
                });
            }
        }
        updates
    }

    /// What changed since the last call: counter increments, gauges that moved, and every
    /// observation.
    pub fn take_updates(&mut self) -> Vec<Update> {
        let mut updates = Vec::new();
        for ((family, labels), (total, exported)) in self.counters.iter_mut() {
            if exported.is_none() || *total > exported.unwrap_or(0) {
                updates.push(Update::CounterInc {
                    family: &FAMILIES[*family],
                    labels: labels.clone(),
                    by: *total - exported.unwrap_or(0),
                });
                *exported = Some(*total);
            }
        }
        for ((family, labels), (value, exported)) in self.gauges.iter_mut() {
            if *exported != Some(*value) {
                updates.push(Update::GaugeSet {
                    family: &FAMILIES[*family],
                    labels: labels.clone(),
                    value: *value,
                });
                *exported = Some(*value);
            }
        }
        for (family, labels, value) in self.observations.drain(..) {
            updates.push(Update::Observe {
                family: &FAMILIES[family],
                labels,
                value,
            });
        }
        updates
    }

    /// Every counter and gauge again, unchanged or not (xhttp_prom forgets a label set nobody
    /// touched for `xhttp_prom_timeout` minutes; a periodic touch keeps them).
    pub fn touch_all(&mut self) -> Vec<Update> {
        let mut updates: Vec<Update> = self
            .counters
            .keys()
            .map(|(family, labels)| Update::CounterInc {
                family: &FAMILIES[*family],
                labels: labels.clone(),
                by: 0,
            })
            .collect();
        for (family, labels) in self.gauges.keys() {
            let value = self.gauges[&(*family, labels.clone())].0;
            updates.push(Update::GaugeSet {
                family: &FAMILIES[*family],
                labels: labels.clone(),
                value,
            });
        }
        updates
    }
}

/// Every failure reason label [`failure_reason`] gives.
pub const FAILURE_REASONS: &[&str] = &["rejected", "credentials", "token_dead", "gave_up"];

impl Metrics {
    /// Creates every counter label set of an app at zero, so that a dashboard or an alert sees
    /// the series before the first push (Prometheus treats a missing series as no data).
    pub fn declare_app(&mut self, app: &str, provider: &str) {
        for family in [SENT, DEAD_TOKENS, END_PUSHES, REFRESH_PUSHES] {
            self.count(family, &[app, provider], 0);
        }
        for reason in FAILURE_REASONS {
            self.count(FAILED, &[app, provider, reason], 0);
        }
    }
}

/// The failure reason label of a push outcome that is not a success.
pub fn failure_reason(outcome: &crate::providers::Outcome) -> Option<&'static str> {
    use crate::providers::Outcome;
    match outcome {
        Outcome::Sent { .. } => None,
        Outcome::TokenDead { .. } => Some("token_dead"),
        Outcome::Rejected {
            status: 401 | 403, ..
        } => Some("credentials"),
        Outcome::Rejected { .. } => Some("rejected"),
        Outcome::GaveUp { .. } => Some("gave_up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_indexed_by_their_constants_and_fit_xhttp_prom() {
        let at = |i: usize| FAMILIES[i].name;
        assert_eq!(at(SENT), "push_sent_total");
        assert_eq!(at(FAILED), "push_failed_total");
        assert_eq!(at(DEAD_TOKENS), "push_dead_tokens_total");
        assert_eq!(at(END_PUSHES), "push_end_pushes_total");
        assert_eq!(at(REFRESH_PUSHES), "push_refresh_pushes_total");
        assert_eq!(at(HELD_CALLS), "push_held_calls");
        assert_eq!(at(DEVICES), "push_devices");
        assert_eq!(at(APP_FAILING), "push_app_failing");
        assert_eq!(at(ROUND_TRIP), "push_round_trip_seconds");
        assert_eq!(at(WAKE), "push_wake_seconds");
        assert_eq!(at(HELD), "push_held_seconds");
        for f in FAMILIES {
            assert!(
                f.labels.len() <= 3,
                "{}: xhttp_prom takes three labels",
                f.name
            );
            if f.kind == MetricKind::Counter {
                assert!(f.name.ends_with("_total"), "{}", f.name);
                let stat = f.statistic.expect("a counter resets with a statistic");
                assert!(
                    crate::shared::STATISTICS
                        .iter()
                        .any(|s| s.name == stat && s.counter.is_some()),
                    "{} names no counter statistic {stat}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn specs_are_what_xhttp_prom_parses() {
        assert_eq!(
            FAMILIES[FAILED].spec(),
            (
                "prom_counter",
                "name=push_failed_total; label=app:provider:reason".to_string()
            )
        );
        assert_eq!(
            FAMILIES[HELD_CALLS].spec(),
            ("prom_gauge", "name=push_held_calls".to_string())
        );
        let (param, spec) = FAMILIES[ROUND_TRIP].spec();
        assert_eq!(param, "prom_histogram");
        assert_eq!(
            spec,
            "name=push_round_trip_seconds; buckets=0.025:0.05:0.1:0.25:0.5:1:2.5:5:10:30; label=provider"
        );
    }

    #[test]
    fn counters_export_their_increments_once() {
        let mut m = Metrics::default();
        m.count(SENT, &["voip", "apns"], 1);
        m.count(SENT, &["voip", "apns"], 2);
        m.count(SENT, &["chat", "fcm"], 1);
        let updates = m.take_updates();
        assert!(updates.contains(&Update::CounterInc {
            family: &FAMILIES[SENT],
            labels: vec!["voip".into(), "apns".into()],
            by: 3
        }));
        assert_eq!(updates.len(), 2);
        assert!(m.take_updates().is_empty(), "nothing new, nothing sent");
        m.count(SENT, &["voip", "apns"], 1);
        assert_eq!(
            m.take_updates(),
            vec![Update::CounterInc {
                family: &FAMILIES[SENT],
                labels: vec!["voip".into(), "apns".into()],
                by: 1
            }]
        );
        assert_eq!(m.counter(SENT, &["voip", "apns"]), 4);
    }

    #[test]
    fn gauges_export_only_changes_and_touch_all_repeats_them() {
        let mut m = Metrics::default();
        m.set(HELD_CALLS, &[], 3.0);
        assert_eq!(m.take_updates().len(), 1);
        m.set(HELD_CALLS, &[], 3.0);
        assert!(m.take_updates().is_empty());
        m.set(HELD_CALLS, &[], 0.0);
        assert_eq!(
            m.take_updates(),
            vec![Update::GaugeSet {
                family: &FAMILIES[HELD_CALLS],
                labels: vec![],
                value: 0.0
            }]
        );
        m.count(SENT, &["a", "webhook"], 1);
        m.take_updates();
        assert_eq!(m.touch_all().len(), 2);
    }

    #[test]
    fn a_reset_statistic_resets_its_families_only() {
        let mut m = Metrics::default();
        m.count(SENT, &["a", "fcm"], 5);
        m.count(FAILED, &["a", "fcm", "rejected"], 2);
        m.take_updates();
        let updates = m.reset_statistic("pushes_sent");
        assert_eq!(
            updates,
            vec![Update::CounterReset {
                family: &FAMILIES[SENT],
                labels: vec!["a".into(), "fcm".into()]
            }]
        );
        assert_eq!(m.counter(SENT, &["a", "fcm"]), 0);
        assert_eq!(m.counter(FAILED, &["a", "fcm", "rejected"]), 2);
        m.count(SENT, &["a", "fcm"], 1);
        assert_eq!(
            m.take_updates(),
            vec![Update::CounterInc {
                family: &FAMILIES[SENT],
                labels: vec!["a".into(), "fcm".into()],
                by: 1
            }]
        );
    }

    #[test]
    fn observations_are_bounded_and_label_values_cleaned() {
        let mut m = Metrics::default();
        for _ in 0..MAX_PENDING_OBSERVATIONS + 5 {
            m.observe(WAKE, &[], 0.5);
        }
        assert_eq!(m.dropped, 5);
        assert_eq!(m.take_updates().len(), MAX_PENDING_OBSERVATIONS);
        m.count(SENT, &["we\"ird\\ app\n", "webhook"], 1);
        let long = "x".repeat(500);
        m.count(SENT, &[&long, "webhook"], 1);
        let updates = m.take_updates();
        let labels: Vec<&Vec<String>> = updates
            .iter()
            .map(|u| match u {
                Update::CounterInc { labels, .. } => labels,
                _ => unreachable!(),
            })
            .collect();
        assert!(labels.iter().any(|l| l[0] == "weirdapp"));
        assert!(labels.iter().any(|l| l[0].len() == MAX_LABEL));
    }

    #[test]
    fn a_declared_app_exports_its_series_at_zero_once() {
        let mut m = Metrics::default();
        m.declare_app("a", "apns");
        let updates = m.take_updates();
        assert_eq!(updates.len(), 4 + FAILURE_REASONS.len());
        assert!(updates
            .iter()
            .all(|u| matches!(u, Update::CounterInc { by: 0, .. })));
        m.declare_app("a", "apns");
        assert!(m.take_updates().is_empty());
    }

    #[test]
    fn failure_reasons() {
        use crate::providers::Outcome;
        let rejected = |status| Outcome::Rejected {
            status,
            body: String::new(),
        };
        assert_eq!(failure_reason(&rejected(400)), Some("rejected"));
        assert_eq!(failure_reason(&rejected(403)), Some("credentials"));
        assert_eq!(
            failure_reason(&Outcome::Sent {
                status: 200,
                attempts: 1
            }),
            None
        );
        assert_eq!(
            failure_reason(&Outcome::GaveUp {
                attempts: 3,
                last_error: "refused".into()
            }),
            Some("gave_up")
        );
    }
}

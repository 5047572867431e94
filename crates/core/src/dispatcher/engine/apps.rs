//! The apps: each app's push client, built from its credential files at start and again by
//! push.reload; which app (and client) pushes a device; and each app's health as push.apps shows
//! it (ready, what its last push said, or why its credentials cannot be used).

use super::{now, Engine};
use crate::apps_file;
use crate::config::{app_named, App, AppProvider};
use crate::devices::store::Device;
use crate::ipc::message::AppView;
use crate::ipc::message::{Answer, AppReload};
use crate::providers::{AppPusher, Outcome};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// An app's circuit breaker: after `breaker_failures` consecutive pushes that got no answer from
/// the push service (unreachable, retries run out), the app is *failing*: held calls do not wait
/// for pushes that cannot arrive (their devices through this app fail at once), except one probe
/// push every `breaker_probe_interval`; the first push the service answers closes it again.
#[derive(Default)]
pub(super) struct Breaker {
    /// Consecutive pushes that got no answer.
    failures: u32,
    /// Open (the app failing) since, and when the next probe push may go.
    open: Option<(Instant, Instant)>,
    /// The last failure's text.
    last_error: String,
}

/// Why a device cannot be pushed.
pub(super) enum NoPusher<'a> {
    /// No app is configured under the name the device gave (`named`) and there is no default app.
    NoApp { named: Option<&'a str> },
    /// The app's credentials could not be used (`why`).
    Unusable { app: &'a str, why: &'a str },
    /// The app has no client (the HTTP client could not be built).
    NoClient { app: &'a str },
    /// The device names an app that push.reload removed: the device is kept, not pushed.
    Removed { app: &'a str },
}

/// Why a device of a held call gets no push, as the call's state and the log say it.
impl std::fmt::Display for NoPusher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoPusher::NoApp { named } => write!(
                f,
                "no app '{}' is configured and there is no default_app",
                named.unwrap_or("")
            ),
            NoPusher::Unusable { app, why } => write!(f, "app {app} cannot push: {why}"),
            NoPusher::NoClient { app } => write!(f, "app {app} has no push client"),
            NoPusher::Removed { app } => write!(
                f,
                "app {app} was removed from apps_file by push.reload: not pushed (the device is kept until the app comes back)"
            ),
        }
    }
}

impl Engine {
    /// (Re)builds every app's push client from its credential files. An app whose files cannot be
    /// used keeps no client: its pushes fail with the reason, which is logged here.
    pub(super) fn build_senders(&mut self) -> Vec<(String, Result<(), String>)> {
        let mut report = Vec::new();
        let Some(http) = self.http.clone() else {
            return report;
        };
        // Client construction may spawn nothing, but needs the runtime's context for timers.
        let _guard = self.runtime.enter();
        for app in self.config.apps.clone() {
            let built = AppPusher::build(&app, &self.config.fcm_url, &http);
            match &built {
                Ok(_) => {
                    self.health.insert(app.id.clone(), "ready".into());
                    self.credential_alerts.remove(&app.id);
                    report.push((app.id.clone(), Ok(())));
                }
                Err(e) => {
                    error!("app {}: {e}", app.id);
                    report.push((app.id.clone(), Err(e.clone())));
                }
            }
            match (built, self.senders.get(&app.id)) {
                // A reload that fails keeps the client that worked.
                (Err(e), Some(Ok(_))) => {
                    self.health.insert(
                        app.id.clone(),
                        format!("reload failed, old credentials kept: {e}"),
                    );
                }
                (built, _) => {
                    if let Err(e) = &built {
                        self.health
                            .insert(app.id.clone(), format!("unusable credentials: {e}"));
                    }
                    self.senders.insert(app.id.clone(), built);
                }
            }
        }
        report
    }

    /// push.reload: re-reads `apps_file` (when set) and every app's credential files. The file
    /// is taken whole or not at all: a line that is wrong, an id also declared by a modparam, a
    /// `default_app` that would name no app, or an added or changed app whose credentials cannot
    /// be used refuse the reload (an error naming the line or the app; one log line) and the
    /// running apps stay as they were. Accepted, the apps take effect for new pushes: pushes
    /// already on their way keep the client they were started with; a removed app's devices are
    /// kept and not pushed. The SIP workers get the new apps through the apps board.
    pub(super) fn reload(&mut self) -> Answer {
        let mut next = self.config.clone();
        let mut specs = Vec::new();
        if let Some(path) = self.config.apps_file.clone() {
            let parsed = apps_file::read_text(&path).and_then(|text| {
                specs = apps_file::specs(&text);
                apps_file::parse(&text)
            });
            let merged = parsed
                .map_err(|e| e.to_string())
                .and_then(|file_apps| apps_file::merge(&self.config.apps, file_apps));
            next.apps = match merged {
                Ok(apps) => apps,
                Err(e) => return self.refuse_reload(&e),
            };
            if let Some(default) = &next.default_app {
                if !next.apps.iter().any(|a| &a.id == default) {
                    return self
                        .refuse_reload(&format!("default_app '{default}' would name no app"));
                }
            }
        }
        let Some(http) = self.http.clone() else {
            return self.refuse_reload("the HTTP client could not be built at startup");
        };
        let _guard = self.runtime.enter();
        let mut built = Vec::new();
        for app in &next.apps {
            let change = match self.config.apps.iter().find(|a| a.id == app.id) {
                None => "added",
                Some(old) if definition(old) != definition(app) => "changed",
                Some(_) => "reloaded",
            };
            built.push((
                app.id.clone(),
                change,
                AppPusher::build(app, &next.fcm_url, &http),
            ));
        }
        if let Some((id, change, Err(e))) = built
            .iter()
            .find(|(_, change, r)| *change != "reloaded" && r.is_err())
        {
            return self.refuse_reload(&format!("app {id} ({change}) cannot push: {e}"));
        }
        for (id, _, pusher) in &built {
            if let Some(project) = pusher.as_ref().ok().and_then(|p| p.fcm_project()) {
                next.learn_fcm_project(id, project);
            }
        }
        if let (Some(board), Some(_)) = (self.ctx.apps_board, &next.apps_file) {
            if let Err(e) = board.publish(&next.apps, &specs) {
                return self.refuse_reload(&e);
            }
        }

        let mut report = Vec::new();
        let gone: Vec<App> = self
            .config
            .apps
            .iter()
            .filter(|old| !next.apps.iter().any(|a| a.id == old.id))
            .cloned()
            .collect();
        for app in gone {
            self.senders.remove(&app.id);
            self.health.remove(&app.id);
            self.credential_alerts.remove(&app.id);
            self.forget_breaker(&app.id);
            report.push(AppReload {
                id: app.id.clone(),
                change: "removed".into(),
                error: String::new(),
            });
            self.removed_apps.retain(|a| a.id != app.id);
            self.removed_apps.push(app);
        }
        for (id, change, pusher) in built {
            let mut error = String::new();
            match (change, pusher) {
                ("reloaded", Err(e)) => {
                    error!("app {id}: {e}");
                    error = e.clone();
                    if let Some(Ok(_)) = self.senders.get(&id) {
                        // A reload that fails keeps the client that worked.
                        self.health.insert(
                            id.clone(),
                            format!("reload failed, old credentials kept: {e}"),
                        );
                    } else {
                        self.health
                            .insert(id.clone(), format!("unusable credentials: {e}"));
                        self.senders.insert(id.clone(), Err(e));
                    }
                }
                (_, pusher) => {
                    if change != "reloaded" {
                        self.forget_breaker(&id);
                        self.removed_apps.retain(|a| a.id != id);
                    }
                    self.health.insert(id.clone(), "ready".into());
                    self.credential_alerts.remove(&id);
                    self.senders.insert(id.clone(), pusher);
                }
            }
            report.push(AppReload {
                id,
                change: change.into(),
                error,
            });
        }
        self.config = next;
        let count = |what: &str| report.iter().filter(|r| r.change == what).count();
        notice!(
            "push.reload: {} app(s) in use ({} added, {} changed, {} removed){}",
            self.config.apps.len(),
            count("added"),
            count("changed"),
            count("removed"),
            self.config
                .apps_file
                .as_ref()
                .map(|p| format!(", apps_file {}", p.display()))
                .unwrap_or_default()
        );
        Answer::Reloaded(report)
    }

    /// A reload refused: one log line, the running apps untouched, the error for the asker.
    fn refuse_reload(&self, why: &str) -> Answer {
        let file = self
            .config
            .apps_file
            .as_ref()
            .map(|p| format!(" (apps_file {})", p.display()))
            .unwrap_or_default();
        error!("push.reload refused{file}: {why}; the running apps are kept");
        Answer::Error(format!("apps_file {why}; nothing changed"))
    }

    /// Drops an app's circuit breaker (the app was removed or changed).
    fn forget_breaker(&mut self, app_id: &str) {
        if let Some(Breaker { open: Some(_), .. }) = self.breakers.remove(app_id) {
            self.ctx.shared.apps_failing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The app that pushes this device (the one its Contact named, else the default app) and its
    /// client, or why there is none.
    pub(super) fn pusher_for<'a>(
        &'a self,
        device: &'a Device,
    ) -> Result<(&'a App, &'a AppPusher), NoPusher<'a>> {
        let named = device.app_id.as_deref().or(device.param.as_deref());
        // A device of a removed app is not pushed through the default app instead (a token
        // another app's service does not know could be reported dead and the device forgotten).
        if let Some(name) = named {
            if app_named(&self.config.apps, name).is_none() {
                if let Some(gone) = app_named(&self.removed_apps, name) {
                    return Err(NoPusher::Removed { app: &gone.id });
                }
            }
        }
        let Some(app) = self.config().app_for(named) else {
            return Err(NoPusher::NoApp { named });
        };
        match self.senders.get(&app.id) {
            Some(Ok(sender)) => Ok((app, sender)),
            Some(Err(why)) => Err(NoPusher::Unusable { app: &app.id, why }),
            None => Err(NoPusher::NoClient { app: &app.id }),
        }
    }

    /// Whether a call's push may go through `app_id` now: yes unless its breaker is open; while
    /// it is, one probe push per `breaker_probe_interval`. The error says why not.
    pub(super) fn breaker_admits(&mut self, app_id: &str) -> Result<(), String> {
        let interval = Duration::from_secs(u64::from(self.config().breaker_probe_interval));
        let Some(breaker) = self.breakers.get_mut(app_id) else {
            return Ok(());
        };
        let Some((_, next_probe)) = &mut breaker.open else {
            return Ok(());
        };
        let now = now();
        if now >= *next_probe {
            *next_probe = now + interval;
            info!("app {app_id} is failing: this push is a probe");
            return Ok(());
        }
        Err(format!(
            "app {app_id} is failing ({}); next probe push in {} s",
            breaker.last_error,
            next_probe.saturating_duration_since(now).as_secs() + 1
        ))
    }

    /// Counts a push's outcome in its app's breaker: one that got no answer adds a failure (and
    /// opens the breaker at `breaker_failures`), any answer closes it; each change logged once.
    fn note_breaker(&mut self, app_id: &str, outcome: &Outcome) {
        let threshold = self.config().breaker_failures;
        let interval = Duration::from_secs(u64::from(self.config().breaker_probe_interval));
        if threshold == 0 {
            return;
        }
        let breaker = self.breakers.entry(app_id.to_string()).or_default();
        match outcome {
            Outcome::GaveUp { last_error, .. } => {
                breaker.failures = breaker.failures.saturating_add(1);
                breaker.last_error = last_error.clone();
                if breaker.open.is_none() && breaker.failures >= threshold {
                    let now = now();
                    breaker.open = Some((now, now + interval));
                    self.ctx.shared.apps_failing.fetch_add(1, Ordering::Relaxed);
                    error!(
                        "app {app_id}: {} pushes in a row got no answer (last: {last_error}); \
                         marked failing: calls to its devices fail at once, one probe push every {} s",
                        breaker.failures,
                        interval.as_secs()
                    );
                }
            }
            Outcome::Sent { .. } | Outcome::TokenDead { .. } | Outcome::Rejected { .. } => {
                breaker.failures = 0;
                if let Some((since, _)) = breaker.open.take() {
                    self.ctx.shared.apps_failing.fetch_sub(1, Ordering::Relaxed);
                    notice!(
                        "app {app_id}: the push service answers again after {} s; healthy",
                        now().saturating_duration_since(since).as_secs()
                    );
                }
            }
        }
    }

    /// Notes what an app's last push said (push.apps) and counts it in the app's breaker;
    /// credentials the service rejected are logged once per app, until a reload builds the app
    /// again.
    pub(super) fn note_health(&mut self, app_id: &str, outcome: &Outcome) {
        self.note_breaker(app_id, outcome);
        self.health.insert(
            app_id.to_string(),
            match outcome {
                Outcome::Sent { .. } => "ok".to_string(),
                Outcome::TokenDead { status, .. } => format!("ok (last token dead, {status})"),
                Outcome::Rejected { status, body } => {
                    format!("rejected ({status} {})", body.trim())
                }
                Outcome::GaveUp { last_error, .. } => match self.breakers.get(app_id) {
                    Some(Breaker {
                        open: Some(_),
                        failures,
                        ..
                    }) => format!(
                        "failing (circuit open after {failures} pushes with no answer: {last_error})"
                    ),
                    _ => format!("failing ({last_error})"),
                },
            },
        );
        if let Outcome::Rejected {
            status: 401 | 403,
            body,
        } = outcome
        {
            if self.credential_alerts.insert(app_id.to_string()) {
                error!(
                    "app {}: the push service rejected the credentials even after renewing them ({}); \
                     fix the key, certificate or service account and run kamcmd push.reload",
                    app_id,
                    body.trim()
                );
            }
        }
    }

    /// The configured apps and their health (push.apps).
    pub(super) fn app_views(&self) -> Vec<AppView> {
        self.config
            .apps
            .iter()
            .map(|app| AppView {
                id: app.id.clone(),
                provider: app.provider.name().to_string(),
                environment: match &app.provider {
                    AppProvider::Apns { sandbox: true, .. } => "sandbox".to_string(),
                    AppProvider::Apns { .. } => "production".to_string(),
                    _ => String::new(),
                },
                health: self
                    .health
                    .get(&app.id)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
            })
            .collect()
    }
}

impl Engine {
    /// Each configured app, its kind of push service, and whether its breaker is open now.
    pub(super) fn breaker_states(&self) -> Vec<(String, &'static str, bool)> {
        self.config()
            .apps
            .iter()
            .map(|app| {
                let open = self.breakers.get(&app.id).is_some_and(|b| b.open.is_some());
                (app.id.clone(), app.provider.name(), open)
            })
            .collect()
    }
}

/// An app as declared, without what was learned at runtime (an fcm app's project), to tell a
/// changed app from an unchanged one.
fn definition(app: &App) -> App {
    let mut app = app.clone();
    if let AppProvider::Fcm { project_id, .. } = &mut app.provider {
        *project_id = None;
    }
    app
}

//! Push providers: how a push request reaches a phone. Every provider takes the same call fields
//! ([`CallPush`]) and ends in the same [`Outcome`]s, so the engine treats them alike.
//!
//! Layout: `push` the shared vocabulary, `http` the HTTP plumbing of the providers (all on reqwest),
//! one file per provider (`apns`, `fcm`, `webhook`); here, the retry pacing they all use
//! ([`Backoff`]) and a configured app ready to push ([`AppPusher`]).

pub mod apns;
pub mod clean;
pub mod fcm;
pub mod http;
pub mod push;
pub mod webhook;

pub use push::{CallPush, EndReason, Outcome, PushKind, PushTarget};

use crate::config::{App, AppProvider};
use std::time::{Duration, Instant};

tokio::task_local! {
    /// Told of each failed attempt after which the push in this task is tried again (the
    /// attempt's number and its error, raw: the listener cleans it), so push.pending can say a
    /// push is retrying. Set by the engine around a held call's push; absent elsewhere.
    pub static ON_RETRY: Box<dyn Fn(u32, &str) + Send + Sync>;
}

/// Tells this task's [`ON_RETRY`] listener, if any, that attempt `attempts` failed with `error`.
fn note_retry(attempts: u32, error: &str) {
    let _ = ON_RETRY.try_with(|listener| listener(attempts, error));
}

/// Retry pacing every provider shares: exponential backoff from 100 ms doubling to 2 s, a server's
/// Retry-After taken as a minimum, and no wait that would end at or past the call's deadline.
/// A service that cannot be reached at all (connection refused or timed out, a name that does not
/// resolve, a failed TLS handshake) gets [`Backoff::UNREACHABLE_RETRIES`] more attempts, none
/// starting later than [`Backoff::UNREACHABLE_WINDOW`] after the push began: a call to an app
/// whose service is down ends within 5 s instead of waiting its whole timeout.
pub struct Backoff {
    next: Duration,
    started: Instant,
    unreachable: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(100),
            started: Instant::now(),
            unreachable: 0,
        }
    }
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(2);
    /// Attempts after the first that found the service unreachable.
    pub const UNREACHABLE_RETRIES: u32 = 2;
    /// No new attempt after an unreachable service once the push is this old.
    pub const UNREACHABLE_WINDOW: Duration = Duration::from_secs(3);

    /// After an attempt that could not reach the service: another attempt while fewer than
    /// [`Self::UNREACHABLE_RETRIES`] were made for this reason and the push is younger than
    /// [`Self::UNREACHABLE_WINDOW`], else the push ends as given up with `last_error`.
    pub async fn retry_unreachable(
        &mut self,
        deadline: Instant,
        attempts: u32,
        last_error: String,
    ) -> Result<String, Outcome> {
        self.unreachable = self.unreachable.saturating_add(1);
        if self.unreachable > Self::UNREACHABLE_RETRIES
            || self.started.elapsed() >= Self::UNREACHABLE_WINDOW
        {
            return Err(Outcome::GaveUp {
                attempts,
                last_error,
            });
        }
        self.retry(None, deadline, attempts, last_error).await
    }

    /// Waits before the next attempt. Returns false, without waiting, when that attempt could not
    /// start before the deadline: the caller gives up.
    pub async fn wait(&mut self, retry_after: Option<Duration>, deadline: Instant) -> bool {
        let wait = retry_after.map_or(self.next, |asked| asked.max(self.next));
        self.next = self.next.saturating_mul(2).min(Self::MAX);
        match Instant::now().checked_add(wait) {
            Some(resume) if resume < deadline => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(resume)).await;
                true
            }
            _ => false,
        }
    }

    /// After a retryable failure: waits before the next attempt, or, when that attempt could not
    /// start before the deadline, ends the push as given up with the last error.
    pub async fn retry(
        &mut self,
        retry_after: Option<Duration>,
        deadline: Instant,
        attempts: u32,
        last_error: String,
    ) -> Result<String, Outcome> {
        note_retry(attempts, &last_error);
        if self.wait(retry_after, deadline).await {
            Ok(last_error)
        } else {
            Err(Outcome::GaveUp {
                attempts,
                last_error,
            })
        }
    }
}

/// A configured app, ready to push. Cheap to clone into a task.
#[derive(Clone)]
pub enum AppPusher {
    Webhook {
        client: reqwest::Client,
        app: webhook::WebhookApp,
    },
    Apns(apns::ApnsSender),
    Fcm(fcm::FcmSender),
}

impl AppPusher {
    /// The Firebase project an fcm app pushes into (its service account's `project_id`).
    pub fn fcm_project(&self) -> Option<&str> {
        match self {
            AppPusher::Fcm(sender) => Some(sender.project_id()),
            _ => None,
        }
    }

    /// Reads the app's credentials and builds its client. The error names what is wrong (a file,
    /// a key format) and never contains a secret.
    pub fn build(app: &App, fcm_url: &str, http: &reqwest::Client) -> Result<AppPusher, String> {
        match &app.provider {
            AppProvider::Webhook {
                url,
                secret,
                dead_statuses,
            } => Ok(AppPusher::Webhook {
                client: http.clone(),
                app: webhook::WebhookApp {
                    id: app.id.clone(),
                    url: url.clone(),
                    secret: secret.clone(),
                    dead_statuses: dead_statuses.clone(),
                },
            }),
            AppProvider::Apns {
                auth,
                sandbox,
                voip,
            } => apns::ApnsSender::new(&app.id, auth, *sandbox, *voip).map(AppPusher::Apns),
            AppProvider::Fcm {
                service_account, ..
            } => {
                let account = fcm::ServiceAccount::from_file(service_account)?;
                fcm::FcmSender::new(account, fcm_url, http.clone()).map(AppPusher::Fcm)
            }
        }
    }

    /// Sends one push. Any text of the outcome (an answer body, an error) is made safe to log
    /// and show here, once for every provider ([`clean::outside_text`]).
    pub async fn send(&self, push: &CallPush, target: &PushTarget, deadline: Instant) -> Outcome {
        let outcome = self.send_raw(push, target, deadline).await;
        let outcome = outcome.cleaned(&target.token);
        match &target.alert_token {
            Some(remote) => outcome.cleaned(remote),
            None => outcome,
        }
    }

    async fn send_raw(&self, push: &CallPush, target: &PushTarget, deadline: Instant) -> Outcome {
        match self {
            AppPusher::Webhook { client, app } => webhook::send(client, app, push, deadline).await,
            AppPusher::Apns(apns) => {
                let target = apns::ApnsTarget {
                    token: target.token.clone(),
                    alert_token: target.alert_token.clone(),
                    sandbox: target.device_provider == "apns.dev",
                    param: target.param.clone(),
                };
                apns.send(push, &target, deadline).await
            }
            AppPusher::Fcm(fcm) => {
                let mut push = push.clone();
                push.token = target.token.clone();
                fcm.send(&push, deadline).await
            }
        }
    }
}

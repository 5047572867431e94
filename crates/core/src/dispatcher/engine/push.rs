//! One push, whoever sends it (a held call, push.send, a binding refresh): the one place its
//! [`CallPush`] is built ([`Engine::push_for`]), the one place it is sent and its outcome reported
//! to the main thread ([`Push::send`], spawned by [`Engine::spawn_push`]), and what the engine
//! does with that outcome ([`Engine::push_done`]: health, counters, dead tokens, the call).

use super::apps::NoPusher;
use super::{loggable_device, unix_now, Engine, PushDone, PushPurpose};
use crate::config::MESSAGE_PREVIEW_CHARS;
use crate::devices::store::Device;
use crate::dispatcher::{Host, MainJob};
use crate::ipc::message::CallKey;
use crate::metrics as m;
use crate::providers::{
    clean, AppPusher, CallPush, EndReason, Outcome, PushKind, PushTarget, ON_RETRY,
};
use crate::shared::Shared;
use crossbeam_channel::Sender;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::task::AbortHandle;

/// The key of pushes that belong to no call (push.send, refresh pushes).
const NO_CALL: CallKey = (u32::MAX, u32::MAX);

/// What a push says, whichever device it goes to.
pub(super) struct About {
    pub kind: PushKind,
    pub call_id: String,
    pub caller_uri: String,
    pub caller_name: Option<String>,
    /// Unix seconds when the call stops waiting.
    pub expires_at: u64,
    /// An end-of-call push: why the call ended.
    pub reason: Option<EndReason>,
    /// A message push: the message's text (shown only by apps with `message_preview`).
    pub text: Option<String>,
}

/// Whose push it is.
#[derive(Clone, Copy)]
pub(super) enum Purpose {
    /// A held call's: its key, and when push_suspend held it (CLOCK_MONOTONIC ns).
    Call { key: CallKey, held_at_ns: u64 },
    /// push.send's test push.
    Test,
    /// A binding-refresh push.
    Refresh,
    /// An end-of-call push (the call is over: nothing waits for its outcome).
    End,
}

/// One push ready to go to one device.
pub(super) struct Push {
    purpose: Purpose,
    device_id: String,
    /// The app's kind of push service (for the metrics).
    provider: &'static str,
    sender: AppPusher,
    body: CallPush,
    target: PushTarget,
}

impl Push {
    /// The app that sends it.
    pub(super) fn app_id(&self) -> &str {
        &self.body.app_id
    }

    /// Sends the push (retried until `deadline`) and reports how it ended to the main thread as a
    /// [`PushDone`]; returns the outcome too. A held call's push first records how long it took
    /// to leave (dispatch latency); a refresh push that went out is counted before the report.
    pub(super) async fn send(
        self,
        deadline: Instant,
        shared: &'static Shared,
        main: &Sender<MainJob>,
    ) -> Outcome {
        let key = match self.purpose {
            Purpose::Call { key, held_at_ns } => {
                shared
                    .dispatch_latency
                    .record(crate::latency::monotonic_ns().saturating_sub(held_at_ns));
                key
            }
            Purpose::Test | Purpose::Refresh | Purpose::End => NO_CALL,
        };
        let started = Instant::now();
        let outcome = match self.purpose {
            // A held call's push tells the main thread of each retry (push.pending).
            Purpose::Call { key, .. } => {
                let (main, device_id) = (main.clone(), self.device_id.clone());
                let tokens = (self.target.token.clone(), self.target.alert_token.clone());
                let listener: Box<dyn Fn(u32, &str) + Send + Sync> =
                    Box::new(move |attempts, error| {
                        let mut error = clean::outside_text(error, Some(&tokens.0));
                        if let Some(remote) = &tokens.1 {
                            error = clean::outside_text(&error, Some(remote));
                        }
                        let _ = main.send(MainJob::PushRetrying {
                            key,
                            device_id: device_id.clone(),
                            attempts,
                            error,
                        });
                    });
                ON_RETRY
                    .scope(
                        listener,
                        self.sender.send(&self.body, &self.target, deadline),
                    )
                    .await
            }
            _ => self.sender.send(&self.body, &self.target, deadline).await,
        };
        let took = started.elapsed();
        if matches!(outcome, Outcome::Sent { .. }) {
            match self.purpose {
                Purpose::Refresh => shared
                    .counters
                    .refresh_pushes
                    .fetch_add(1, Ordering::Relaxed),
                Purpose::End => shared.counters.end_pushes.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        let _ = main.send(MainJob::PushDone(PushDone {
            key,
            aor: self.body.callee_aor,
            app_id: self.body.app_id,
            device_id: self.device_id,
            outcome: outcome.clone(),
            provider: self.provider,
            purpose: match self.purpose {
                Purpose::Call { .. } => PushPurpose::Call,
                Purpose::Test => PushPurpose::Test,
                Purpose::Refresh => PushPurpose::Refresh,
                Purpose::End => PushPurpose::End,
            },
            took,
        }));
        outcome
    }
}

/// The start of a message's text for a preview: at most [`MESSAGE_PREVIEW_CHARS`] characters,
/// runs of white space made one space, `…` when cut.
pub(super) fn preview(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MESSAGE_PREVIEW_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(MESSAGE_PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
}

impl Engine {
    /// The push `about` something to one stored device, through the app that serves it, or why
    /// the device cannot be pushed.
    pub(super) fn push_for<'a>(
        &'a self,
        device: &'a Device,
        about: &About,
        purpose: Purpose,
    ) -> Result<Push, NoPusher<'a>> {
        let (app, sender) = self.pusher_for(device)?;
        let caller = about
            .caller_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| about.caller_uri.clone());
        // The text of a message only for apps that show it, cut to the preview's length.
        let text = about
            .text
            .as_ref()
            .filter(|_| app.message_preview && about.kind == PushKind::Message)
            .map(|t| preview(t));
        // A visible "missed call" alert, in the same push, for apps that want one.
        let alert = about
            .reason
            .filter(|r| r.missed())
            .and_then(|_| app.missed_call_text(&caller));
        Ok(Push {
            purpose,
            device_id: device.device_id.clone(),
            provider: app.provider.name(),
            sender: sender.clone(),
            body: CallPush {
                kind: about.kind,
                call_id: about.call_id.clone(),
                caller_uri: about.caller_uri.clone(),
                caller_name: about.caller_name.clone(),
                callee_aor: device.aor.clone(),
                token: device.prid.clone(),
                app_id: app.id.clone(),
                provider: device.provider.clone(),
                sent_at: unix_now().as_millis() as u64,
                expires_at: about.expires_at,
                reason: about.reason,
                text,
                alert,
            },
            target: PushTarget::of(device),
        })
    }

    /// Runs one push as a task on the runtime ([`Push::send`]); the handle stops it.
    pub(super) fn spawn_push(&self, push: Push, deadline: Instant) -> AbortHandle {
        let (shared, main) = (self.ctx.shared, self.main.clone());
        self.runtime
            .spawn(async move {
                push.send(deadline, shared, &main).await;
            })
            .abort_handle()
    }

    /// A held call's push failed an attempt and is tried again: push.pending says so.
    pub fn push_retrying(&mut self, key: CallKey, device_id: &str, attempts: u32, error: &str) {
        self.calls.push_retrying(key, device_id, attempts, error);
    }

    /// A push ended: the app's health, the counters and the log say how; a dead token's device
    /// is forgotten; a call whose every push failed is failed now.
    pub fn push_done(&mut self, done: PushDone, host: &dyn Host) {
        self.note_health(&done.app_id, &done.outcome);
        self.measure_push(&done);
        let aor = &done.aor;
        let result = match &done.outcome {
            Outcome::Sent { status, attempts } => {
                let device = loggable_device(&done.device_id);
                info!(
                    "push for {aor} device {device} sent through app {}: accepted ({status}, {attempts} attempt(s))",
                    done.app_id
                );
                Ok(*status)
            }
            Outcome::TokenDead { status, body } => {
                notice!(
                    "push endpoint answered {status} for a device of {aor}: token dead, device forgotten ({})",
                    body.trim()
                );
                self.forget_dead_device(aor, &done.device_id);
                self.count(|c| &c.dead_tokens);
                Err(format!("token dead ({status})"))
            }
            Outcome::Rejected { status, body } => {
                warn!("push for {aor} refused with {status}: {}", body.trim());
                Err(format!("refused ({status})"))
            }
            Outcome::GaveUp {
                attempts,
                last_error,
            } => {
                warn!("push for {aor} failed after {attempts} attempt(s): {last_error}");
                Err(last_error.clone())
            }
        };
        match result {
            Ok(_) => self.count(|c| &c.pushes_sent),
            Err(_) => self.count(|c| &c.pushes_failed),
        }
        self.push_ended(done.key, &done.aor, &done.device_id, result, host);
    }
}

impl Engine {
    /// A finished push in the metrics: its round trip, and what it counts as per app and provider.
    fn measure_push(&mut self, done: &PushDone) {
        let labels = [done.app_id.as_str(), done.provider];
        self.metrics
            .observe(m::ROUND_TRIP, &[done.provider], done.took.as_secs_f64());
        match m::failure_reason(&done.outcome) {
            None => {
                self.metrics.count(m::SENT, &labels, 1);
                match done.purpose {
                    PushPurpose::End => self.metrics.count(m::END_PUSHES, &labels, 1),
                    PushPurpose::Refresh => self.metrics.count(m::REFRESH_PUSHES, &labels, 1),
                    PushPurpose::Call | PushPurpose::Test => {}
                }
            }
            Some(reason) => {
                let failed = [done.app_id.as_str(), done.provider, reason];
                self.metrics.count(m::FAILED, &failed, 1);
                if reason == "token_dead" {
                    self.metrics.count(m::DEAD_TOKENS, &labels, 1);
                }
            }
        }
    }
}

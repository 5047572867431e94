//! The answers to push.* questions (kamcmd, and push_resume from a script): status, pending calls,
//! devices, apps, reload, remove, resume, and push.send, whose test pushes a runtime task waits
//! for before it answers the asker itself.

use super::apps::NoPusher;
use super::devices::device_view;
use super::push::{About, Purpose};
use super::{loggable_device, now, unix_now, Engine};
use crate::calls::{PAGE_BYTES, PAGE_ENTRY_OVERHEAD};
use crate::devices::normalize_aor;
use crate::devices::store::Device;
use crate::dispatcher::Host;
use crate::ipc::message::{Answer, Question};
use crate::ipc::reply;
use crate::providers::{Outcome, PushKind};
use std::time::Duration;

/// How long a push.send test push may take.
const TEST_PUSH_WAIT: Duration = Duration::from_secs(10);
/// How long push.send waits for the pushes' answers before it answers (well inside the RPC's own
/// bound, so Kamailio's ctl process is never held longer).
const TEST_ANSWER_WITHIN: Duration = Duration::from_millis(1500);

/// A provider's answer in words, for push.send.
fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Sent { status, attempts } => format!("sent ({status}, {attempts} attempt(s))"),
        Outcome::TokenDead { status, body } => {
            format!("token dead ({status} {}): device forgotten", body.trim())
        }
        Outcome::Rejected { status, body } => format!("rejected ({status} {})", body.trim()),
        Outcome::GaveUp {
            attempts,
            last_error,
        } => format!("failed after {attempts} attempt(s): {last_error}"),
    }
}

impl Engine {
    /// A question: answered to the asker's socket `reply_to` now, or, for push.send, by the task
    /// that waits for the test pushes.
    pub(super) fn ask(&mut self, reply_to: String, question: Question, host: &dyn Host) {
        if let Question::Send { aor } = question {
            return self.send_test(reply_to, aor);
        }
        if let Question::Resume { aor } = question {
            return self.resume_when_told(reply_to, &aor, host);
        }
        let answer = self.answer(question, host);
        if let Err(e) = reply::answer(&reply_to, &answer) {
            debug!("answer to {reply_to} not delivered (the asker gave up?): {e}");
        }
    }

    /// push_resume(): the count of calls waiting for the AOR goes to the asker first, and the calls
    /// are continued only if the asker took it (a worker that gave up waiting returned -1, and
    /// then nothing is continued: its count stays right).
    fn resume_when_told(&mut self, reply_to: String, aor: &str, host: &dyn Host) {
        let Some(key) = normalize_aor(aor, self.config().use_domain) else {
            let _ = reply::answer(&reply_to, &Answer::Error(format!("'{aor}' is not an AOR")));
            return;
        };
        let waiting = self.calls.waiting_count(&key);
        match reply::answer(&reply_to, &Answer::Resumed(waiting)) {
            Ok(()) if waiting > 0 => {
                if let Err(e) = self.resume_aor(aor, host) {
                    warn!("push_resume: {e}");
                }
            }
            Ok(()) => {}
            Err(e) => {
                if waiting > 0 {
                    warn!(
                        "push_resume for {key} gave up waiting ({e}); its {waiting} call(s) keep waiting"
                    );
                }
            }
        }
    }

    fn answer(&mut self, question: Question, host: &dyn Host) -> Answer {
        let use_domain = self.config().use_domain;
        match question {
            Question::Status => {
                let mut status = self.ctx.status();
                status.store = self.store_status();
                Answer::Status(status)
            }
            Question::Pending { aor, offset, limit } => {
                let aor = aor.and_then(|a| normalize_aor(&a, use_domain));
                let unix_ms = unix_now().as_millis() as i64;
                let (total, calls) =
                    self.calls
                        .pending(aor.as_deref(), now(), unix_ms, offset, limit);
                Answer::Pending {
                    total,
                    offset,
                    calls,
                }
            }
            Question::Devices { aor, offset, limit } => self.device_page(aor, offset, limit),
            Question::DeviceAdd(add) => self.add_device(add),
            Question::Apps => Answer::Apps(self.app_views()),
            Question::Reload => self.reload(),
            Question::Remove { aor, device } => {
                let Some(aor) = normalize_aor(&aor, use_domain) else {
                    return Answer::Error(format!("'{aor}' is not an AOR"));
                };
                self.remove_devices(&aor, device.as_deref())
            }
            Question::Send { .. } => Answer::Error("push.send is answered by its own task".into()),
            Question::Shutdown => Answer::Ended(self.shutdown(host)),
            Question::Resume { aor } => match self.resume_aor(&aor, host) {
                Ok(n) => Answer::Resumed(n),
                Err(e) => Answer::Error(e),
            },
        }
    }

    /// push.devices: the devices of an AOR, or a page of every stored device (by AOR, then
    /// device), cut where its text would pass [`PAGE_BYTES`] (at least one device).
    fn device_page(&self, aor: Option<String>, offset: u32, limit: u32) -> Answer {
        let Some(store) = &self.store else {
            return Answer::Error("the device store is not open".into());
        };
        let found = match aor {
            Some(aor) => {
                let Some(aor) = normalize_aor(&aor, self.config().use_domain) else {
                    return Answer::Error(format!("'{aor}' is not an AOR"));
                };
                store.devices(&aor).map(|all| {
                    let total = all.len() as u64;
                    let page: Vec<Device> = all
                        .into_iter()
                        .skip(offset as usize)
                        .take(limit as usize)
                        .collect();
                    (total, page)
                })
            }
            None => store
                .count()
                .and_then(|total| Ok((total, store.page(u64::from(offset), limit)?))),
        };
        let (total, page) = match found {
            Ok(found) => found,
            Err(e) => return Answer::Error(e.to_string()),
        };
        let mut bytes = 0;
        let mut devices = Vec::new();
        for d in page {
            let view = device_view(d);
            bytes += view.aor.len()
                + view.device_id.len()
                + view.provider.len()
                + view.token.len()
                + view.app.len()
                + view.user_agent.len()
                + PAGE_ENTRY_OVERHEAD;
            if bytes > PAGE_BYTES && !devices.is_empty() {
                break;
            }
            devices.push(view);
        }
        Answer::Devices {
            total,
            offset,
            devices,
        }
    }

    /// push.send: a test push to every device of the AOR; a task waits for the answers and
    /// replies to the asker itself, so the main thread never waits.
    fn send_test(&mut self, reply_to: String, aor: String) {
        let Some(aor) = normalize_aor(&aor, self.config().use_domain) else {
            let _ = reply::answer(&reply_to, &Answer::Error(format!("'{aor}' is not an AOR")));
            return;
        };
        let devices = match &self.store {
            Some(store) => store.devices(&aor).unwrap_or_default(),
            None => Vec::new(),
        };
        if devices.is_empty() {
            let _ = reply::answer(
                &reply_to,
                &Answer::Error(format!("no push device for {aor}")),
            );
            return;
        }
        let unix = unix_now();
        let deadline = now() + TEST_PUSH_WAIT;
        let about = About {
            kind: PushKind::Test,
            reason: None,
            text: None,
            call_id: format!("push.send-{}", unix.as_millis()),
            caller_uri: "sip:push.send@localhost".into(),
            caller_name: Some("push.send".into()),
            expires_at: (unix + TEST_PUSH_WAIT).as_secs(),
        };
        let mut jobs = Vec::new();
        for device in &devices {
            let (app_id, push) = match self.push_for(device, &about, Purpose::Test) {
                Ok(push) => (push.app_id().to_string(), Ok(push)),
                Err(NoPusher::Unusable { app, why }) => {
                    (app.to_string(), Err(format!("not sent: {why}")))
                }
                Err(NoPusher::NoClient { app }) => (
                    app.to_string(),
                    Err("not sent: no app for this device".to_string()),
                ),
                Err(NoPusher::Removed { app }) => (
                    app.to_string(),
                    Err("not sent: its app was removed by push.reload".to_string()),
                ),
                Err(NoPusher::NoApp { .. }) => (
                    String::new(),
                    Err("not sent: no app for this device".to_string()),
                ),
            };
            jobs.push((loggable_device(&device.device_id), app_id, push));
        }
        let (shared, main) = (self.ctx.shared, self.main.clone());
        let answer_by = tokio::time::Instant::now() + TEST_ANSWER_WITHIN;
        self.runtime.spawn(async move {
            // Every push runs on its own; the answer waits for them at most TEST_ANSWER_WITHIN
            // (Kamailio has one ctl process: a hanging push service must not hold it). A push
            // still out then goes on to its deadline and ends like any other (health, log).
            let mut running = Vec::new();
            for (shown, app_id, push) in jobs {
                let outcome = match push {
                    // Dead tokens are forgotten as after any push.
                    Ok(push) => {
                        let main = main.clone();
                        let task = tokio::spawn(async move {
                            outcome_text(&push.send(deadline, shared, &main).await)
                        });
                        Err(task)
                    }
                    Err(not_sent) => Ok(not_sent),
                };
                running.push((shown, app_id, outcome));
            }
            let mut report = Vec::new();
            for (shown, app_id, outcome) in running {
                let answer = match outcome {
                    Ok(not_sent) => not_sent,
                    Err(task) => match tokio::time::timeout_at(answer_by, task).await {
                        Ok(Ok(text)) => text,
                        Ok(Err(_)) => "push task failed".to_string(),
                        Err(_) => format!(
                            "no answer within {} ms: still trying until its {} s deadline (see push.apps and the log)",
                            TEST_ANSWER_WITHIN.as_millis(),
                            TEST_PUSH_WAIT.as_secs()
                        ),
                    },
                };
                report.push((shown, app_id, answer));
            }
            let _ = reply::answer(&reply_to, &Answer::Sent(report));
        });
    }
}

//! The dispatcher's brain, run on its main thread: it owns the held-call table and the device
//! store, reacts to messages from Kamailio's processes and to push results from the runtime, and
//! tells the host (Kamailio) which held transactions to continue. It never waits on the network:
//! pushes run as tasks on the runtime and come back as [`MainJob::PushDone`].

use super::{Context, Host, MainJob};
use crate::calls::{Call, Calls, Phase, PushState, PushedDevice};
use crate::config::{AppProvider, Config};
use crate::devices::contact::shorten_token;
use crate::devices::store::{Device, Store, Upsert};
use crate::devices::{device_id, normalize_aor};
use crate::ipc::message::{
    Answer, AppView, CallKey, ContactChange, ContactEvent, DeviceView, HeldCall, Question,
    TmChange, TmEvent, ToDispatcher,
};
use crate::ipc::reply;
use crate::providers::{self, webhook, CallPush, Outcome, PushKind};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a push.send test push may take.
const TEST_PUSH_WAIT: Duration = Duration::from_secs(10);

/// The key of pushes that belong to no call (push.send).
const NO_CALL: CallKey = (u32::MAX, u32::MAX);

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

/// How often the store is asked for bindings due for a refresh push, and how many per scan.
const REFRESH_SCAN_EVERY: Duration = Duration::from_secs(1);
const REFRESH_BATCH: usize = 1000;

/// How long a transaction tm told us has ended is remembered, to drop a late `Held` for it.
const ENDED_MEMORY: Duration = Duration::from_secs(60);

/// A finished push, on its way back to the main thread.
#[derive(Debug)]
pub struct PushDone {
    pub key: CallKey,
    pub aor: String,
    pub app_id: String,
    pub device_id: String,
    pub outcome: Outcome,
}

pub struct Engine {
    ctx: Arc<Context>,
    store: Option<Store>,
    calls: Calls,
    ended: HashMap<CallKey, Instant>,
    runtime: tokio::runtime::Handle,
    main: Sender<MainJob>,
    http: Option<reqwest::Client>,
    /// Each app's push client, or why it could not be built.
    senders: HashMap<String, Result<providers::AppPusher, String>>,
    /// What the last push of each app said (push.apps).
    health: HashMap<String, String>,
    /// Apps whose credentials were rejected and already logged (logged once per app).
    credential_alerts: HashSet<String>,
    last_refresh_scan: Instant,
    /// The push tasks of each held call, stopped when tm is done with the call.
    push_tasks: HashMap<CallKey, Vec<tokio::task::AbortHandle>>,
}

/// A device id fit for logs: an instance as is, a token-based id shortened.
fn loggable_device(device_id: &str) -> String {
    match device_id.strip_prefix("token:") {
        Some(token) => format!("token:{}", shorten_token(token)),
        None => device_id.to_string(),
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Engine {
    pub fn new(
        ctx: Arc<Context>,
        runtime: tokio::runtime::Handle,
        main: Sender<MainJob>,
    ) -> Engine {
        let store = match Store::open(&ctx.config.db_path) {
            Ok(store) => Some(store),
            Err(e) => {
                crate::error!("cannot open the device store: {e}; devices will not be remembered");
                None
            }
        };
        let http = match webhook::client() {
            Ok(c) => Some(c),
            Err(e) => {
                crate::error!("cannot build the HTTP client: {e}; webhook pushes will fail");
                None
            }
        };
        let mut engine = Engine {
            ctx,
            store,
            calls: Calls::default(),
            ended: HashMap::new(),
            runtime,
            main,
            http,
            senders: HashMap::new(),
            health: HashMap::new(),
            credential_alerts: HashSet::new(),
            last_refresh_scan: Instant::now(),
            push_tasks: HashMap::new(),
        };
        engine.build_senders();
        engine
    }

    /// (Re)builds every app's push client from its credential files. An app whose files cannot be
    /// used keeps no client: its pushes fail with the reason, which is logged here.
    fn build_senders(&mut self) -> Vec<(String, Result<(), String>)> {
        let mut report = Vec::new();
        let Some(http) = self.http.clone() else {
            return report;
        };
        // Client construction may spawn nothing, but needs the runtime's context for timers.
        let _guard = self.runtime.enter();
        for app in self.ctx.config.apps.clone() {
            let built = providers::AppPusher::build(&app, &self.ctx.config.fcm_url, &http);
            match &built {
                Ok(_) => {
                    self.health.insert(app.id.clone(), "ready".into());
                    self.credential_alerts.remove(&app.id);
                    report.push((app.id.clone(), Ok(())));
                }
                Err(e) => {
                    crate::error!("app {}: {e}", app.id);
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

    fn config(&self) -> &Config {
        &self.ctx.config
    }

    fn count(&self, counter: impl Fn(&crate::shared::Counters) -> &std::sync::atomic::AtomicU64) {
        counter(&self.ctx.shared.counters).fetch_add(1, Ordering::Relaxed);
    }

    pub fn handle(&mut self, message: ToDispatcher, host: &dyn Host) {
        match message {
            ToDispatcher::Ask {
                reply_to,
                question: Question::Send { aor },
            } => self.send_test(reply_to, aor),
            ToDispatcher::Ask { reply_to, question } => {
                let answer = self.answer(question, host);
                if let Err(e) = reply::answer(&reply_to, &answer) {
                    crate::debug!("answer to {reply_to} not delivered (the asker gave up?): {e}");
                }
            }
            ToDispatcher::Held(held) => self.on_held(held, host),
            ToDispatcher::Contact(event) => self.on_contact(event, host),
            ToDispatcher::Tm(event) => self.on_tm(event),
            ToDispatcher::Resume { aor } => {
                if let Err(e) = self.resume_aor(&aor, host) {
                    crate::warn!("push_resume: {e}");
                }
            }
        }
    }

    fn answer(&mut self, question: Question, host: &dyn Host) -> Answer {
        let use_domain = self.config().use_domain;
        match question {
            Question::Status => Answer::Status(self.ctx.status()),
            Question::Pending { aor } => {
                let aor = aor.and_then(|a| normalize_aor(&a, use_domain));
                Answer::Pending(self.calls.pending(aor.as_deref(), Instant::now()))
            }
            Question::Devices { aor } => {
                let Some(aor) = normalize_aor(&aor, use_domain) else {
                    return Answer::Error(format!("'{aor}' is not an AOR"));
                };
                let Some(store) = &self.store else {
                    return Answer::Error("the device store is not open".into());
                };
                match store.devices(&aor) {
                    Ok(devices) => Answer::Devices(
                        devices
                            .into_iter()
                            .map(|d| DeviceView {
                                device_id: loggable_device(&d.device_id),
                                provider: d.provider,
                                token: shorten_token(&d.prid),
                                app: d.app_id.or(d.param).unwrap_or_default(),
                                user_agent: d.user_agent.unwrap_or_default(),
                                updated_at: d.updated_at,
                            })
                            .collect(),
                    ),
                    Err(e) => Answer::Error(e.to_string()),
                }
            }
            Question::Apps => Answer::Apps(
                self.ctx
                    .config
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
                    .collect(),
            ),
            Question::Reload => Answer::Reloaded(
                self.build_senders()
                    .into_iter()
                    .map(|(id, r)| (id, r.err().unwrap_or_default()))
                    .collect(),
            ),
            Question::Remove { aor, device } => {
                let Some(aor) = normalize_aor(&aor, use_domain) else {
                    return Answer::Error(format!("'{aor}' is not an AOR"));
                };
                self.remove_devices(&aor, device.as_deref())
            }
            Question::Send { .. } => Answer::Error("push.send is answered by its own task".into()),
            Question::Resume { aor } => match self.resume_aor(&aor, host) {
                Ok(n) => Answer::Resumed(n),
                Err(e) => Answer::Error(e),
            },
        }
    }

    /// push_resume(): continues every call held for the AOR, whichever device registered.
    /// Returns how many tm accepted.
    fn resume_aor(&mut self, aor: &str, host: &dyn Host) -> Result<u32, String> {
        let Some(aor) = normalize_aor(aor, self.config().use_domain) else {
            return Err(format!("'{aor}' is not an AOR"));
        };
        let keys = self.calls.resume_aor(&aor);
        if keys.is_empty() {
            return Ok(0);
        }
        crate::info!(
            "{aor} registered (push_resume): resuming {} call(s)",
            keys.len()
        );
        Ok(self.continue_calls(&keys, false, host))
    }

    fn on_held(&mut self, held: HeldCall, host: &dyn Host) {
        if self.ended.contains_key(&held.key) {
            // tm finished the transaction before its Held message was read.
            self.ctx.shared.held_now.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let devices = match &self.store {
            Some(store) => store.devices(&held.aor).unwrap_or_else(|e| {
                crate::error!("cannot read the devices of {}: {e}", held.aor);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let now = Instant::now();
        let deadline = now + Duration::from_secs(held.timeout as u64);
        let expires_at = (unix_now() + Duration::from_secs(held.timeout as u64)).as_secs();
        let mut call = Call {
            key: held.key,
            aor: held.aor.clone(),
            call_id: held.call_id.clone(),
            caller_uri: held.caller_uri.clone(),
            caller_name: held.caller_name.clone(),
            held_at: now,
            deadline,
            phase: Phase::Waiting,
            targets: Vec::new(),
        };
        let mut launches = Vec::new();
        for device in &devices {
            let binding = crate::devices::contact::PushBinding {
                provider: device.provider.clone(),
                prid: device.prid.clone(),
                param: device.param.clone(),
                silent: false,
                timeout: None,
            };
            let named = device.app_id.as_deref().or(device.param.as_deref());
            let state = match self.config().app_for(named) {
                None => PushState::Failed(format!(
                    "no app '{}' is configured and there is no default_app",
                    named.unwrap_or("")
                )),
                Some(app) => match self.senders.get(&app.id) {
                    Some(Ok(sender)) => {
                        let push = CallPush {
                            kind: PushKind::Call,
                            call_id: held.call_id.clone(),
                            caller_uri: held.caller_uri.clone(),
                            caller_name: held.caller_name.clone(),
                            callee_aor: held.aor.clone(),
                            token: device.prid.clone(),
                            app_id: app.id.clone(),
                            provider: device.provider.clone(),
                            sent_at: unix_now().as_millis() as u64,
                            expires_at,
                        };
                        let target = providers::PushTarget::of(device);
                        launches.push((
                            sender.clone(),
                            app.id.clone(),
                            device.device_id.clone(),
                            push,
                            target,
                        ));
                        PushState::Sending
                    }
                    Some(Err(e)) => PushState::Failed(format!("app {} cannot push: {e}", app.id)),
                    None => PushState::Failed(format!("app {} has no push client", app.id)),
                },
            };
            if let PushState::Failed(why) = &state {
                crate::warn!(
                    "no push for {} device {}: {why}",
                    held.aor,
                    shorten_token(&device.prid)
                );
                self.count(|c| &c.pushes_failed);
            }
            call.targets.push(PushedDevice {
                device_id: device.device_id.clone(),
                binding,
                instance: device.instance.clone(),
                state,
            });
        }
        let hopeless = call
            .targets
            .iter()
            .all(|t| matches!(t.state, PushState::Failed(_)));
        if hopeless {
            call.phase = Phase::Failed;
        }
        self.calls.insert(call);
        if hopeless {
            crate::notice!(
                "call {} to {}: no device can be pushed; failing it now",
                held.call_id,
                held.aor
            );
            self.continue_calls(&[held.key], true, host);
            return;
        }
        crate::info!(
            "call {} to {} held; pushing {} device(s)",
            held.call_id,
            held.aor,
            launches.len()
        );
        for (sender, app_id, device_id, push, target) in launches {
            let main = self.main.clone();
            let (key, aor) = (held.key, held.aor.clone());
            let (shared, held_at_ns) = (self.ctx.shared, held.held_at_ns);
            let task = self.runtime.spawn(async move {
                shared
                    .dispatch_latency
                    .record(crate::latency::monotonic_ns().saturating_sub(held_at_ns));
                let outcome = sender.send(&push, &target, deadline).await;
                let _ = main.send(MainJob::PushDone(PushDone {
                    key,
                    aor,
                    app_id,
                    device_id,
                    outcome,
                }));
            });
            self.push_tasks
                .entry(held.key)
                .or_default()
                .push(task.abort_handle());
        }
    }

    pub fn push_done(&mut self, done: PushDone, host: &dyn Host) {
        self.health.insert(
            done.app_id.clone(),
            match &done.outcome {
                Outcome::Sent { .. } => "ok".to_string(),
                Outcome::TokenDead { status, .. } => format!("ok (last token dead, {status})"),
                Outcome::Rejected { status, body } => {
                    format!("rejected ({status} {})", body.trim())
                }
                Outcome::GaveUp { last_error, .. } => format!("failing ({last_error})"),
            },
        );
        if let Outcome::Rejected {
            status: 401 | 403,
            body,
        } = &done.outcome
        {
            if self.credential_alerts.insert(done.app_id.clone()) {
                crate::error!(
                    "app {}: the push service rejected the credentials even after renewing them ({}); \
                     fix the key, certificate or service account and run kamcmd push.reload",
                    done.app_id,
                    body.trim()
                );
            }
        }
        let result = match &done.outcome {
            Outcome::Sent { .. } => {
                self.count(|c| &c.pushes_sent);
                crate::debug!(
                    "push for {} device {} sent",
                    done.aor,
                    loggable_device(&done.device_id)
                );
                Ok(())
            }
            Outcome::TokenDead { status, body } => {
                self.count(|c| &c.pushes_failed);
                crate::notice!(
                    "push endpoint answered {status} for a device of {}: token dead, device forgotten ({})",
                    done.aor,
                    body.trim()
                );
                if let Some(store) = &self.store {
                    match store.remove(&done.aor, &done.device_id) {
                        Ok(true) => self.count(|c| &c.devices_removed),
                        Ok(false) => {}
                        Err(e) => crate::error!("cannot remove a dead device of {}: {e}", done.aor),
                    }
                }
                self.sync_index(&done.aor);
                Err(format!("token dead ({status})"))
            }
            Outcome::Rejected { status, body } => {
                self.count(|c| &c.pushes_failed);
                crate::warn!(
                    "push for {} refused with {status}: {}",
                    done.aor,
                    body.trim()
                );
                Err(format!("refused ({status})"))
            }
            Outcome::GaveUp {
                attempts,
                last_error,
            } => {
                self.count(|c| &c.pushes_failed);
                crate::warn!(
                    "push for {} failed after {attempts} attempt(s): {last_error}",
                    done.aor
                );
                Err(last_error.clone())
            }
        };
        if self.calls.push_done(done.key, &done.device_id, result) {
            let call_id = self
                .calls
                .get(done.key)
                .map(|c| c.call_id.clone())
                .unwrap_or_default();
            crate::notice!(
                "every push for call {call_id} to {} failed; failing it now",
                done.aor
            );
            self.continue_calls(&[done.key], true, host);
        }
    }

    /// Continues calls into the resume route; returns how many tm accepted.
    fn continue_calls(&mut self, keys: &[CallKey], failed: bool, host: &dyn Host) -> u32 {
        let mut ok = 0;
        for key in keys {
            if !failed {
                if let Some(call) = self.calls.get(*key) {
                    self.ctx
                        .shared
                        .wake_latency
                        .record(call.held_at.elapsed().as_nanos() as u64);
                }
            }
            match host.continue_call(*key, failed) {
                Ok(()) => {
                    ok += 1;
                    if !failed {
                        self.count(|c| &c.resumed);
                    }
                }
                Err(e) => {
                    crate::info!(
                        "held transaction {}:{} could not be continued: {e}",
                        key.0,
                        key.1
                    );
                    self.forget(*key);
                }
            }
        }
        ok
    }

    fn on_contact(&mut self, ev: ContactEvent, host: &dyn Host) {
        match ev.change {
            ContactChange::Registered => {
                // Calls first: the woken device's INVITE must not wait for the store.
                if ev.resume {
                    let joins = self.calls.late_joiners(
                        &ev.aor,
                        ev.binding.as_ref(),
                        ev.instance.as_deref(),
                    );
                    for key in joins {
                        match host.append_branches(key) {
                            Ok(0) => {}
                            Ok(n) => crate::info!(
                                "device of {} woke late: {n} branch(es) added to its ringing call",
                                ev.aor
                            ),
                            Err(e) => {
                                crate::debug!("no branch added to call {}:{}: {e}", key.0, key.1)
                            }
                        }
                    }
                    let keys = self.calls.device_registered(
                        &ev.aor,
                        ev.binding.as_ref(),
                        ev.instance.as_deref(),
                    );
                    if !keys.is_empty() {
                        crate::info!(
                            "device of {} registered: resuming {} call(s)",
                            ev.aor,
                            keys.len()
                        );
                        self.continue_calls(&keys, false, host);
                    }
                }
                let Some(store) = &self.store else {
                    return;
                };
                if let Some(binding) = &ev.binding {
                    let device = Device {
                        aor: ev.aor.clone(),
                        device_id: device_id(ev.instance.as_deref(), &binding.prid),
                        provider: binding.provider.clone(),
                        prid: binding.prid.clone(),
                        param: binding.param.clone(),
                        app_id: None,
                        instance: ev.instance.clone(),
                        contact: ev.contact.clone(),
                        user_agent: ev.user_agent.clone(),
                        updated_at: unix_now().as_secs() as i64,
                    };
                    let stored = store.upsert(&device);
                    if stored.is_ok() {
                        self.ctx.index.insert(&ev.aor);
                        // Expiry is kept only for refresh pushes (one write less per REGISTER).
                        if self.ctx.config.refresh_window > 0 {
                            if let Err(e) =
                                store.set_expiry(&ev.aor, &device.device_id, ev.expires_at)
                            {
                                crate::error!(
                                    "cannot note when a binding of {} expires: {e}",
                                    ev.aor
                                );
                            }
                        }
                    }
                    match stored {
                        Ok(Upsert::Replaced) => crate::debug!("device of {} updated", ev.aor),
                        Ok(Upsert::New) => {
                            self.count(|c| &c.devices_stored);
                            crate::info!(
                                "device of {} stored: {} token {}",
                                ev.aor,
                                binding.provider,
                                shorten_token(&binding.prid)
                            );
                        }
                        Ok(Upsert::Unchanged) => {}
                        Err(e) => crate::error!("cannot store a device of {}: {e}", ev.aor),
                    }
                } else if let Some(instance) = &ev.instance {
                    // Registered without push parameters: this instance no longer wants pushes.
                    match store.remove(&ev.aor, instance) {
                        Ok(true) => self.count(|c| &c.devices_removed),
                        Ok(false) => {}
                        Err(e) => crate::error!("cannot remove a device of {}: {e}", ev.aor),
                    }
                    self.sync_index(&ev.aor);
                }
            }
            ContactChange::Removed => {
                let Some(store) = &self.store else {
                    return;
                };
                let removed = match (&ev.instance, &ev.binding) {
                    (Some(instance), _) => store.remove(&ev.aor, instance).map(|r| r as usize),
                    (None, Some(b)) => store.remove_token(&ev.aor, &b.prid),
                    (None, None) => Ok(0),
                };
                match removed {
                    Ok(n) => {
                        for _ in 0..n {
                            self.count(|c| &c.devices_removed);
                        }
                    }
                    Err(e) => crate::error!("cannot remove a device of {}: {e}", ev.aor),
                }
                self.sync_index(&ev.aor);
            }
            ContactChange::RemovedAll => {
                let Some(store) = &self.store else {
                    return;
                };
                match store.remove_aor(&ev.aor) {
                    Ok(n) => {
                        for _ in 0..n {
                            self.count(|c| &c.devices_removed);
                        }
                    }
                    Err(e) => crate::error!("cannot remove the devices of {}: {e}", ev.aor),
                }
                self.sync_index(&ev.aor);
            }
        }
    }

    fn remove_devices(&mut self, aor: &str, device: Option<&str>) -> Answer {
        let Some(store) = &self.store else {
            return Answer::Error("the device store is not open".into());
        };
        let devices = match store.devices(aor) {
            Ok(d) => d,
            Err(e) => return Answer::Error(e.to_string()),
        };
        let mut removed = 0;
        for d in devices.iter().filter(|d| {
            device.is_none_or(|wanted| {
                wanted == d.device_id || wanted == d.prid || wanted == loggable_device(&d.device_id)
            })
        }) {
            match store.remove(aor, &d.device_id) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => return Answer::Error(e.to_string()),
            }
        }
        for _ in 0..removed {
            self.count(|c| &c.devices_removed);
        }
        self.sync_index(aor);
        if removed == 0 {
            return Answer::Error(format!("no such device for {aor}"));
        }
        crate::notice!("{removed} device(s) of {aor} removed by push.remove");
        Answer::Removed(removed)
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
        let now = unix_now();
        let deadline = Instant::now() + TEST_PUSH_WAIT;
        let mut jobs = Vec::new();
        for device in devices {
            let named = device.app_id.as_deref().or(device.param.as_deref());
            let app = self.config().app_for(named).map(|a| a.id.clone());
            let sender = app.as_ref().and_then(|id| self.senders.get(id)).cloned();
            let push = CallPush {
                kind: PushKind::Call,
                call_id: format!("push.send-{}", now.as_millis()),
                caller_uri: "sip:push.send@localhost".into(),
                caller_name: Some("push.send".into()),
                callee_aor: aor.clone(),
                token: device.prid.clone(),
                app_id: app.clone().unwrap_or_default(),
                provider: device.provider.clone(),
                sent_at: now.as_millis() as u64,
                expires_at: (now + TEST_PUSH_WAIT).as_secs(),
            };
            let target = providers::PushTarget::of(&device);
            jobs.push((
                loggable_device(&device.device_id),
                device.device_id,
                app,
                sender,
                push,
                target,
            ));
        }
        let main = self.main.clone();
        self.runtime.spawn(async move {
            let mut report = Vec::new();
            for (shown, device_id, app, sender, push, target) in jobs {
                let app_id = app.clone().unwrap_or_default();
                let answer = match sender {
                    Some(Ok(sender)) => {
                        let outcome = sender.send(&push, &target, deadline).await;
                        let text = outcome_text(&outcome);
                        // Dead tokens are forgotten as after any push.
                        let _ = main.send(MainJob::PushDone(PushDone {
                            key: NO_CALL,
                            aor: push.callee_aor.clone(),
                            app_id: app_id.clone(),
                            device_id,
                            outcome,
                        }));
                        text
                    }
                    Some(Err(e)) => format!("not sent: {e}"),
                    None => "not sent: no app for this device".to_string(),
                };
                report.push((shown, app_id, answer));
            }
            let _ = reply::answer(&reply_to, &Answer::Sent(report));
        });
    }

    /// Drops the AOR from the shared index once its last device is gone.
    fn sync_index(&self, aor: &str) {
        if let Some(store) = &self.store {
            if let Ok(false) = store.has_devices(aor) {
                self.ctx.index.remove(aor);
            }
        }
    }

    fn on_tm(&mut self, ev: TmEvent) {
        let Some(call) = self.calls.get(ev.key) else {
            self.ended.insert(ev.key, Instant::now());
            return;
        };
        let waiting = call.phase == Phase::Waiting;
        match ev.change {
            TmChange::Cancelled => {
                if waiting {
                    self.count(|c| &c.cancelled);
                }
            }
            TmChange::Replied(code) => {
                if waiting && code == 487 {
                    self.count(|c| &c.cancelled);
                } else if waiting {
                    self.count(|c| &c.timed_out);
                }
            }
            TmChange::Destroyed => {
                if waiting {
                    self.count(|c| &c.timed_out);
                }
            }
        }
        self.forget(ev.key);
    }

    /// Drops a call from the table (tm is done with it) and stops its pushes still running (a
    /// push retrying a slow or failing service for a call the caller gave up).
    fn forget(&mut self, key: CallKey) {
        if let Some(tasks) = self.push_tasks.remove(&key) {
            let running = tasks.iter().filter(|t| !t.is_finished()).count();
            for task in tasks {
                task.abort();
            }
            if running > 0 {
                crate::debug!(
                    "call {}:{} is over: {running} push(es) still running stopped",
                    key.0,
                    key.1
                );
            }
        }
        if self.calls.remove(key).is_some() {
            self.ctx.shared.held_now.fetch_sub(1, Ordering::Relaxed);
        }
        self.ended.insert(key, Instant::now());
    }

    /// Binding-refresh pushes (RFC 8599): every device whose binding expires within
    /// `refresh_window` gets one background push so that it registers again. It is marked before
    /// the push goes out, so a device that does not answer is not pushed again until it registers.
    fn send_refreshes(&mut self) {
        let window = self.config().refresh_window as i64;
        let Some(store) = &self.store else { return };
        let now = unix_now().as_secs() as i64;
        let due = match store.due_refreshes(now, now + window, REFRESH_BATCH) {
            Ok(d) => d,
            Err(e) => {
                crate::error!("cannot read the bindings due for a refresh push: {e}");
                return;
            }
        };
        let mut jobs = Vec::new();
        for (device, expires_at) in due {
            if let Err(e) = store.mark_refreshed(&device.aor, &device.device_id, now) {
                crate::error!("cannot note a refresh push for {}: {e}", device.aor);
                continue;
            }
            let named = device.app_id.as_deref().or(device.param.as_deref());
            let Some(app) = self.config().app_for(named) else {
                crate::debug!("no app for a device of {}: no refresh push", device.aor);
                continue;
            };
            let Some(Ok(sender)) = self.senders.get(&app.id) else {
                continue;
            };
            let push = CallPush {
                kind: PushKind::Refresh,
                call_id: format!("refresh-{}", device.device_id),
                caller_uri: String::new(),
                caller_name: None,
                callee_aor: device.aor.clone(),
                token: device.prid.clone(),
                app_id: app.id.clone(),
                provider: device.provider.clone(),
                sent_at: unix_now().as_millis() as u64,
                expires_at: expires_at.max(0) as u64,
            };
            let target = providers::PushTarget::of(&device);
            // The push is worth trying until the binding expires (at most a minute).
            let left = Duration::from_secs((expires_at - now).clamp(1, 60) as u64);
            crate::info!(
                "binding of {} device {} expires in {} s: refresh push",
                device.aor,
                loggable_device(&device.device_id),
                expires_at - now
            );
            jobs.push((sender.clone(), app.id.clone(), device, push, target, left));
        }
        for (sender, app_id, device, push, target, left) in jobs {
            let main = self.main.clone();
            let shared = self.ctx.shared;
            self.runtime.spawn(async move {
                let outcome = sender.send(&push, &target, Instant::now() + left).await;
                if matches!(outcome, Outcome::Sent { .. }) {
                    shared
                        .counters
                        .refresh_pushes
                        .fetch_add(1, Ordering::Relaxed);
                }
                let _ = main.send(MainJob::PushDone(PushDone {
                    key: NO_CALL,
                    aor: device.aor,
                    app_id,
                    device_id: device.device_id,
                    outcome,
                }));
            });
        }
    }

    /// Periodic housekeeping on the main thread.
    pub fn tick(&mut self) {
        if self.config().refresh_window > 0
            && self.last_refresh_scan.elapsed() >= REFRESH_SCAN_EVERY
        {
            self.last_refresh_scan = Instant::now();
            self.send_refreshes();
        }
        let now = Instant::now();
        for key in self.calls.stale(now) {
            crate::warn!(
                "held transaction {}:{} outlived its deadline without tm telling; dropped",
                key.0,
                key.1
            );
            self.forget(key);
        }
        self.ended
            .retain(|_, at| now.duration_since(*at) < ENDED_MEMORY);
    }
}

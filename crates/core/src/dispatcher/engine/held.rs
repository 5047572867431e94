//! Held calls: a call push_suspend held is pushed to every device of its AOR, resumed once when
//! one of them registers (or push_resume says so), joined by a device that wakes late, failed when
//! no push can reach a device, and forgotten when tm is done with it (CANCEL, final reply,
//! destroy) or long after its deadline; its pushes still running are stopped then.

use super::push::{About, Purpose};
use super::{now, unix_now, Engine};
use crate::calls::{Call, CallEnd, Phase, PushState, PushedDevice};
use crate::devices::contact::{shorten_token, PushBinding};
use crate::devices::normalize_aor;
use crate::dispatcher::Host;
use crate::ipc::message::{CallKey, ContactEvent, HeldCall, HeldKind, TmChange, TmEvent};
use crate::providers::{EndReason, PushKind};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a transaction tm told us has ended is remembered, to drop a late `Held` for it.
const ENDED_MEMORY: Duration = Duration::from_secs(60);

/// How long an end-of-call push is retried; APNs keeps it this long after the call's own push
/// expired (so it never arrives before a late call push it ends).
const END_PUSH_WAIT: Duration = Duration::from_secs(30);

/// How many devices of the call `key` an earlier message's push covers.
fn call_targets_covered(calls: &crate::calls::Calls, key: CallKey) -> usize {
    calls.get(key).map_or(0, |c| {
        c.targets
            .iter()
            .filter(|t| matches!(t.state, PushState::Covered(_)))
            .count()
    })
}

impl Engine {
    /// push_suspend held a call: every device of its AOR is pushed; when none can be, the call is
    /// failed at once.
    pub(super) fn on_held(&mut self, held: HeldCall, host: &dyn Host) {
        if self.ended.contains_key(&held.key) {
            // tm finished the transaction before its Held message was read.
            self.ctx.shared.held_now.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let shutting_down = self.ctx.shared.shutting_down.load(Ordering::Relaxed) != 0;
        let devices = match &self.store {
            Some(store) => store.devices(&held.aor).unwrap_or_else(|e| {
                error!("cannot read the devices of {}: {e}", held.aor);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let now = now();
        let deadline = now + Duration::from_secs(held.timeout as u64);
        self.tell_awaiting(&held.aor, held.timeout);
        let about = About {
            kind: match held.kind {
                HeldKind::Call => PushKind::Call,
                HeldKind::Message => PushKind::Message,
            },
            reason: None,
            text: held.text.clone(),
            call_id: held.call_id.clone(),
            caller_uri: held.caller_uri.clone(),
            caller_name: held.caller_name.clone(),
            expires_at: (unix_now() + Duration::from_secs(held.timeout as u64)).as_secs(),
        };
        let purpose = Purpose::Call {
            key: held.key,
            held_at_ns: held.held_at_ns,
        };
        let mut call = Call {
            key: held.key,
            kind: held.kind,
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
            let binding = PushBinding {
                provider: device.provider.clone(),
                prid: device.prid.clone(),
                param: device.param.clone(),
                silent: false,
                timeout: None,
            };
            // A message for a device whose push for an earlier message is still outstanding:
            // that push covers it (one push per device, not one per message).
            let covering = match held.kind {
                HeldKind::Message => self
                    .calls
                    .outstanding_message_push(&held.aor, &device.device_id),
                HeldKind::Call => None,
            };
            // A device whose app is failing (its breaker open) is not pushed; the breaker said so
            // in the log once, so no line per call.
            let (state, logged) = match covering {
                Some(first) => (PushState::Covered(first), false),
                None => match self.push_for(device, &about, purpose) {
                    Ok(push) => match self.breaker_admits(push.app_id()) {
                        Ok(()) => {
                            launches.push(push);
                            (PushState::Sending, true)
                        }
                        Err(failing) => (PushState::Failed(failing), true),
                    },
                    Err(no) => (PushState::Failed(no.to_string()), false),
                },
            };
            if let PushState::Failed(why) = &state {
                if logged {
                    debug!("no push for {}: {why}", held.aor);
                } else {
                    warn!(
                        "no push for {} device {}: {why}",
                        held.aor,
                        shorten_token(&device.prid)
                    );
                }
                self.count(|c| &c.pushes_failed);
            }
            call.targets.push(PushedDevice {
                device_id: device.device_id.clone(),
                binding,
                instance: device.instance.clone(),
                state,
                joined: false,
            });
        }
        if shutting_down {
            // Held just before the shutdown began: answered 503 like the others.
            call.phase = Phase::Failed;
            self.calls.insert(call);
            self.end_call(held.key, CallEnd::Shutdown, host);
            return;
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
            notice!(
                "call {} to {}: no device can be pushed; failing it now",
                held.call_id,
                held.aor
            );
            self.fail_call(held.key, host);
            return;
        }
        let what = match held.kind {
            HeldKind::Call => "call",
            HeldKind::Message => "message",
        };
        let covered = call_targets_covered(&self.calls, held.key);
        info!(
            "{what} {} to {} held; pushing {} device(s){}",
            held.call_id,
            held.aor,
            launches.len(),
            if covered > 0 {
                format!(", {covered} already pushed for an earlier message")
            } else {
                String::new()
            }
        );
        for push in launches {
            let task = self.spawn_push(push, deadline);
            self.push_tasks.entry(held.key).or_default().push(task);
        }
    }

    /// A device of the AOR registered (usrloc): ringing calls it was pushed for get it as a new
    /// branch (it woke late); calls still waiting for it are resumed.
    pub(super) fn device_woke(&mut self, ev: &ContactEvent, host: &dyn Host) {
        let joins = self
            .calls
            .late_joiners(&ev.aor, ev.binding.as_ref(), ev.instance.as_deref());
        for key in joins {
            let result = host.append_branches(key);
            if result.is_ok() {
                // A branch for it now (or already: tm skips contacts it tried): tm's CANCEL
                // reaches it, no end-of-call push.
                self.calls
                    .mark_joined(key, ev.binding.as_ref(), ev.instance.as_deref());
            }
            match result {
                Ok(0) => {}
                Ok(n) => info!(
                    "device of {} woke late: {n} branch(es) added to its ringing call",
                    ev.aor
                ),
                Err(e) => {
                    debug!("no branch added to call {}:{}: {e}", key.0, key.1)
                }
            }
        }
        let keys =
            self.calls
                .device_registered(&ev.aor, ev.binding.as_ref(), ev.instance.as_deref());
        if !keys.is_empty() {
            info!(
                "device of {} registered: resuming {} call(s)",
                ev.aor,
                keys.len()
            );
            self.continue_calls(&keys, false, None, host);
        }
    }

    /// push_resume(): continues every call held for the AOR, whichever device registered.
    /// Returns how many tm accepted.
    pub(super) fn resume_aor(&mut self, aor: &str, host: &dyn Host) -> Result<u32, String> {
        let Some(aor) = normalize_aor(aor, self.config().use_domain) else {
            return Err(format!("'{aor}' is not an AOR"));
        };
        let keys = self.calls.resume_aor(&aor);
        if keys.is_empty() {
            return Ok(0);
        }
        info!(
            "{aor} registered (push_resume): resuming {} call(s)",
            keys.len()
        );
        Ok(self.continue_calls(&keys, false, None, host))
    }

    /// A push of the call `key` ended with `result`: when it was the call's last hope, the call is
    /// failed now rather than at its timeout.
    pub(super) fn push_ended(
        &mut self,
        key: CallKey,
        aor: &str,
        device_id: &str,
        result: Result<u16, String>,
        host: &dyn Host,
    ) {
        for key in self.calls.push_done(key, device_id, result) {
            let call_id = self
                .calls
                .get(key)
                .map(|c| c.call_id.clone())
                .unwrap_or_default();
            notice!("every push for call {call_id} to {aor} failed; failing it now");
            self.fail_call(key, host);
        }
    }

    /// Every push of the call failed for good: answered 480 through the script's failure route
    /// (RFC 8599), or, with `failed_route_resume`, continued into the resume route with
    /// push_failed() true.
    fn fail_call(&mut self, key: CallKey, host: &dyn Host) {
        if self.config().failed_route_resume {
            self.continue_calls(&[key], true, None, host);
        } else {
            self.end_call(key, CallEnd::Failed, host);
        }
    }

    /// Ends a held call through the module (no resume route); tm's final reply then forgets it.
    fn end_call(&mut self, key: CallKey, why: CallEnd, host: &dyn Host) {
        if let Err(e) = host.end_call(key, why) {
            info!(
                "held transaction {}:{} could not be ended: {e}",
                key.0, key.1
            );
            self.forget(key);
        }
    }

    /// Kamailio shuts down: every call still waiting is answered 503 now, while the SIP workers
    /// and this process still run; returns how many tm accepted.
    pub(super) fn shutdown(&mut self, host: &dyn Host) -> u32 {
        let keys = self.calls.take_waiting();
        let mut ended = 0;
        for key in &keys {
            match host.end_call(*key, CallEnd::Shutdown) {
                Ok(()) => ended += 1,
                Err(e) => {
                    debug!(
                        "held transaction {}:{} not ended at shutdown: {e}",
                        key.0, key.1
                    );
                    self.forget(*key);
                }
            }
        }
        notice!("Kamailio shuts down: {ended} held call(s) answered 503 Service Unavailable");
        ended
    }

    /// Calls whose deadline has come with no device registered: ended now (480, or the script's
    /// failure route), before tm's own timer (set a little later, as a safety net) would answer
    /// 408.
    pub(super) fn end_overdue(&mut self, host: &dyn Host) {
        for key in self.calls.overdue(now()) {
            if let Some(call) = self.calls.get(key) {
                let what = match call.kind {
                    HeldKind::Call => "call",
                    HeldKind::Message => "message",
                };
                info!(
                    "{what} {} to {}: no device registered in time; ending it",
                    call.call_id, call.aor
                );
            }
            self.count(|c| &c.timed_out);
            self.end_call(key, CallEnd::TimedOut, host);
        }
    }

    /// Continues calls into the resume route; returns how many tm accepted. `relay`: the node
    /// the device registered at, when another node said so (push_cluster_relay() names it).
    pub(super) fn continue_calls(
        &mut self,
        keys: &[CallKey],
        failed: bool,
        relay: Option<&str>,
        host: &dyn Host,
    ) -> u32 {
        let mut ok = 0;
        for key in keys {
            if !failed {
                if let Some(call) = self.calls.get(*key) {
                    let waited = now().saturating_duration_since(call.held_at);
                    self.ctx
                        .shared
                        .wake_latency
                        .record(waited.as_nanos() as u64);
                    self.metrics
                        .observe(crate::metrics::WAKE, &[], waited.as_secs_f64());
                }
            }
            match host.continue_call(*key, failed, relay) {
                Ok(()) => {
                    ok += 1;
                    if !failed {
                        self.count(|c| &c.resumed);
                    }
                }
                Err(e) => {
                    info!(
                        "held transaction {}:{} could not be continued: {e}",
                        key.0, key.1
                    );
                    self.forget(*key);
                }
            }
        }
        ok
    }

    /// tm is done with a transaction (CANCEL, final reply, destroyed): a call still waiting is
    /// counted as cancelled or timed out; the pushed devices that did not join it get an
    /// end-of-call push saying why it ended; the call is forgotten.
    pub(super) fn on_tm(&mut self, ev: TmEvent) {
        let Some(call) = self.calls.get(ev.key) else {
            self.ended.insert(ev.key, now());
            return;
        };
        let waiting = call.phase == Phase::Waiting;
        let held_for = now().saturating_duration_since(call.held_at).as_secs_f64();
        let outcome = match (call.phase, &ev.change) {
            (Phase::TimedOut, _) => "timeout",
            (Phase::Failed, _) => "failed",
            (Phase::Waiting, TmChange::Cancelled | TmChange::Replied(487)) => "cancelled",
            (Phase::Waiting, _) => "timeout",
            _ => "resumed",
        };
        self.metrics
            .observe(crate::metrics::HELD, &[outcome], held_for);
        // The module ended it at its deadline (or because no push could reach a device): whatever
        // the script's failure route then did, the pushed phones missed the call.
        let given_up = matches!(call.phase, Phase::TimedOut | Phase::Failed);
        let reason = match ev.change {
            TmChange::Cancelled => {
                if waiting {
                    self.count(|c| &c.cancelled);
                }
                EndReason::Cancelled
            }
            TmChange::Replied(code) => {
                if waiting && code == 487 {
                    self.count(|c| &c.cancelled);
                } else if waiting {
                    self.count(|c| &c.timed_out);
                }
                match code {
                    487 => EndReason::Cancelled,
                    200..=299 if !given_up => EndReason::AnsweredElsewhere,
                    _ => EndReason::Timeout,
                }
            }
            TmChange::Destroyed => {
                if waiting {
                    self.count(|c| &c.timed_out);
                }
                EndReason::Timeout
            }
        };
        self.end_pushes(ev.key, reason);
        self.forget(ev.key);
    }

    /// The call `key` is over for `reason`: each device pushed for it that did not join it (no
    /// branch reached it, so no CANCEL will) gets one end-of-call push, unless its app turned
    /// them off (`cancel_push=0`). The pushes outlive the call (forget does not stop them).
    pub(super) fn end_pushes(&mut self, key: CallKey, reason: EndReason) {
        let Some(call) = self.calls.get(key) else {
            return;
        };
        let targets: Vec<String> = call
            .end_push_targets()
            .iter()
            .map(|t| t.device_id.clone())
            .collect();
        if targets.is_empty() {
            return;
        }
        let devices = match &self.store {
            Some(store) => store.devices(&call.aor).unwrap_or_else(|e| {
                error!("cannot read the devices of {}: {e}", call.aor);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let until = unix_now() + call.deadline.saturating_duration_since(now());
        let about = About {
            kind: PushKind::Cancel,
            reason: Some(reason),
            text: None,
            call_id: call.call_id.clone(),
            caller_uri: call.caller_uri.clone(),
            caller_name: call.caller_name.clone(),
            expires_at: (until + END_PUSH_WAIT).as_secs(),
        };
        let (aor, call_id) = (call.aor.clone(), call.call_id.clone());
        let mut sent = 0;
        for device in devices.iter().filter(|d| targets.contains(&d.device_id)) {
            if matches!(self.pusher_for(device), Ok((app, _)) if !app.cancel_push) {
                continue;
            }
            match self.push_for(device, &about, Purpose::End) {
                Ok(push) => {
                    self.spawn_push(push, now() + END_PUSH_WAIT);
                    sent += 1;
                }
                Err(no) => debug!(
                    "no end-of-call push for {aor} device {}: {no}",
                    super::loggable_device(&device.device_id)
                ),
            }
        }
        if sent > 0 {
            info!(
                "call {call_id} to {aor} ended ({}): {sent} end-of-call push(es)",
                reason.as_str()
            );
        }
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
                debug!(
                    "call {}:{} is over: {running} push(es) still running stopped",
                    key.0, key.1
                );
            }
        }
        if self.calls.remove(key).is_some() {
            self.ctx.shared.held_now.fetch_sub(1, Ordering::Relaxed);
        }
        self.ended.insert(key, now());
    }

    /// The safety net ([`Engine::tick`]): calls long past their deadline that tm never told us
    /// about are dropped, and ended transactions are remembered only for a while.
    pub(super) fn drop_stale(&mut self) {
        let now = now();
        for key in self.calls.stale(now) {
            warn!(
                "held transaction {}:{} outlived its deadline without tm telling; dropped",
                key.0, key.1
            );
            self.end_pushes(key, EndReason::Timeout);
            self.forget(key);
        }
        self.ended
            .retain(|_, at| now.duration_since(*at) < ENDED_MEMORY);
        self.forget_stale_waits(now);
    }
}

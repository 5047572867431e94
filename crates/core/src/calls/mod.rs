//! The table of held calls, owned by the dispatcher's main thread.
//!
//! A call enters when push_suspend held it, is matched against the devices that register while it
//! waits, and leaves when tm is done with the transaction (final reply, CANCEL, destroy) or, as a
//! safety net, some time after its deadline. The table decides; the caller acts (t_continue,
//! counters, pushes).

use crate::devices::contact::PushBinding;
use crate::ipc::limits::bounded_text;
use crate::ipc::message::{CallKey, HeldKind, PendingCall, PendingDevice};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after its deadline an entry tm never told us about is dropped.
pub const GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushState {
    Sending,
    /// Still on its way: the `attempts`-th attempt failed with `error` and it is tried again.
    Retrying {
        attempts: u32,
        error: String,
    },
    /// The push service accepted it with this status.
    Sent(u16),
    Failed(String),
    /// Not pushed for this call: the push of the held MESSAGE with this key, still outstanding,
    /// covers it (several messages for a sleeping device make one push). It takes that push's
    /// outcome.
    Covered(CallKey),
}

impl PushState {
    /// A push is outstanding: accepted by the push service, or still on its way.
    pub fn reached(&self) -> bool {
        matches!(
            self,
            PushState::Sending | PushState::Retrying { .. } | PushState::Sent(_)
        )
    }

    /// Where the push stands, for push.pending: `sending`, `retrying (...)`, `sent (200)`,
    /// `failed (...)`, `covered (...)`; texts from outside bounded and escaped.
    pub fn describe(&self) -> String {
        match self {
            PushState::Sending => "sending".to_string(),
            PushState::Retrying { attempts, error } => format!(
                "retrying (attempt {attempts} failed: {})",
                bounded_text(error, MAX_STATE_TEXT)
            ),
            PushState::Sent(status) => format!("sent ({status})"),
            PushState::Failed(why) => format!("failed ({})", bounded_text(why, MAX_STATE_TEXT)),
            PushState::Covered(_) => "covered (the push for an earlier message)".to_string(),
        }
    }
}

/// The most bytes of a reason push.pending shows in a push state.
const MAX_STATE_TEXT: usize = 160;
/// The most bytes of a caller's URI push.pending shows.
pub const MAX_CALLER_TEXT: usize = 256;

/// One device pushed for a call.
#[derive(Clone, Debug)]
pub struct PushedDevice {
    pub device_id: String,
    pub binding: PushBinding,
    pub instance: Option<String>,
    pub state: PushState,
    /// The device registered while the call was held: it got (or gets) a branch of the call, so
    /// tm's own CANCEL ends it there; it gets no end-of-call push.
    pub joined: bool,
}

impl PushedDevice {
    /// Whether a registration (its push binding, its +sip.instance) is this device's.
    fn is(&self, binding: Option<&PushBinding>, instance: Option<&str>) -> bool {
        binding.is_some_and(|b| b.same_registration(&self.binding))
            || (instance.is_some() && self.instance.as_deref() == instance)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Held, pushes out, waiting for a device to register.
    Waiting,
    /// Continued into the resume route (delivered to a device).
    Resumed,
    /// Continued as failed: every push failed for good.
    Failed,
    /// Ended by the module at its deadline: no device registered in time.
    TimedOut,
}

/// Why the module ends a held call itself (rather than continuing it into the resume route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// No device registered within `timeout`: the failure route sees 408, the caller gets 480.
    TimedOut,
    /// Every push failed for good: the failure route sees 480, the caller gets 480.
    Failed,
    /// Kamailio is shutting down: the caller gets 503 at once (no failure route runs).
    Shutdown,
}

impl CallEnd {
    /// What the script's failure route sees as the branch's status (t_check_status).
    pub fn status(self) -> u16 {
        match self {
            CallEnd::TimedOut => 408,
            CallEnd::Failed => 480,
            CallEnd::Shutdown => 503,
        }
    }
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Resumed => "resumed",
            Phase::Failed => "failed",
            Phase::TimedOut => "timed out",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Call {
    pub key: CallKey,
    pub kind: HeldKind,
    pub aor: String,
    pub call_id: String,
    pub caller_uri: String,
    pub caller_name: Option<String>,
    pub held_at: Instant,
    pub deadline: Instant,
    pub phase: Phase,
    pub targets: Vec<PushedDevice>,
}

impl Call {
    fn matches(&self, binding: Option<&PushBinding>, instance: Option<&str>) -> bool {
        self.targets.iter().any(|t| t.is(binding, instance))
    }

    /// The devices that get an end-of-call push when this call ends: a call's (not a message's)
    /// devices whose push the push service accepted and that did not join it. A push still on
    /// its way (retrying a failing service) is stopped when the call ends, and its device gets
    /// nothing.
    pub fn end_push_targets(&self) -> Vec<&PushedDevice> {
        if self.kind != HeldKind::Call {
            return Vec::new();
        }
        self.targets
            .iter()
            .filter(|t| !t.joined && matches!(t.state, PushState::Sent(_)))
            .collect()
    }
}

#[derive(Default)]
pub struct Calls {
    calls: HashMap<CallKey, Call>,
    by_aor: HashMap<String, Vec<CallKey>>,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn get(&self, key: CallKey) -> Option<&Call> {
        self.calls.get(&key)
    }

    /// Adds a call; a call already held under this key is replaced (tm reuses no key while a
    /// transaction lives, so this only happens after an entry was missed).
    pub fn insert(&mut self, call: Call) {
        if let Some(old) = self.calls.insert(call.key, call.clone()) {
            self.unindex(&old.aor, old.key);
        }
        self.by_aor
            .entry(call.aor.clone())
            .or_default()
            .push(call.key);
    }

    fn unindex(&mut self, aor: &str, key: CallKey) {
        if let Some(keys) = self.by_aor.get_mut(aor) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.by_aor.remove(aor);
            }
        }
    }

    pub fn remove(&mut self, key: CallKey) -> Option<Call> {
        let call = self.calls.remove(&key)?;
        self.unindex(&call.aor, key);
        Some(call)
    }

    /// A device of `aor` registered: the waiting calls that pushed it (same pn-provider, pn-prid and
    /// pn-param, or the same +sip.instance) are resumed. Each call is returned once: it leaves the
    /// waiting phase here, so a second REGISTER (auth retry, second token) finds nothing to resume.
    pub fn device_registered(
        &mut self,
        aor: &str,
        binding: Option<&PushBinding>,
        instance: Option<&str>,
    ) -> Vec<CallKey> {
        let Some(keys) = self.by_aor.get(aor) else {
            return Vec::new();
        };
        let mut resumed = Vec::new();
        for key in keys {
            if let Some(call) = self.calls.get_mut(key) {
                if call.phase == Phase::Waiting && call.matches(binding, instance) {
                    call.phase = Phase::Resumed;
                    resumed.push(*key);
                    // The resume route relays the call to it: it joins.
                    for t in call.targets.iter_mut().filter(|t| t.is(binding, instance)) {
                        t.joined = true;
                    }
                }
            }
        }
        resumed
    }

    /// The device got a branch of the ringing call `key` (it woke late): it joined.
    pub fn mark_joined(
        &mut self,
        key: CallKey,
        binding: Option<&PushBinding>,
        instance: Option<&str>,
    ) {
        if let Some(call) = self.calls.get_mut(&key) {
            for t in call.targets.iter_mut().filter(|t| t.is(binding, instance)) {
                t.joined = true;
            }
        }
    }

    /// Resumed calls of `aor` (still ringing) that pushed this device: it woke late and joins them
    /// (calls only: a MESSAGE already relayed is not forked again).
    pub fn late_joiners(
        &self,
        aor: &str,
        binding: Option<&PushBinding>,
        instance: Option<&str>,
    ) -> Vec<CallKey> {
        self.by_aor
            .get(aor)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| self.calls.get(k))
                    .filter(|c| {
                        c.kind == HeldKind::Call
                            && c.phase == Phase::Resumed
                            && c.matches(binding, instance)
                    })
                    .map(|c| c.key)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// push_resume: every waiting call of the AOR, whoever registered.
    /// How many calls of the AOR are still waiting.
    pub fn waiting_count(&self, aor: &str) -> u32 {
        self.by_aor.get(aor).map_or(0, |keys| {
            keys.iter()
                .filter_map(|k| self.calls.get(k))
                .filter(|c| c.phase == Phase::Waiting)
                .count() as u32
        })
    }

    pub fn resume_aor(&mut self, aor: &str) -> Vec<CallKey> {
        let Some(keys) = self.by_aor.get(aor) else {
            return Vec::new();
        };
        let mut resumed = Vec::new();
        for key in keys {
            if let Some(call) = self.calls.get_mut(key) {
                if call.phase == Phase::Waiting {
                    call.phase = Phase::Resumed;
                    resumed.push(*key);
                }
            }
        }
        resumed
    }

    /// A device of `aor` registered through push_register() (a gateway, whose script resumes the
    /// calls with push_resume()): it joins every call of the AOR held for it (waiting or ringing),
    /// which therefore sends it no end-of-call push.
    pub fn device_joined(
        &mut self,
        aor: &str,
        binding: Option<&PushBinding>,
        instance: Option<&str>,
    ) {
        let Some(keys) = self.by_aor.get(aor) else {
            return;
        };
        for key in keys {
            if let Some(call) = self.calls.get_mut(key) {
                if matches!(call.phase, Phase::Waiting | Phase::Resumed) {
                    for t in call.targets.iter_mut().filter(|t| t.is(binding, instance)) {
                        t.joined = true;
                    }
                }
            }
        }
    }

    /// A held MESSAGE of `aor` still waiting whose push to `device_id` is still outstanding: a
    /// new message for that device needs no push of its own.
    pub fn outstanding_message_push(&self, aor: &str, device_id: &str) -> Option<CallKey> {
        self.by_aor.get(aor)?.iter().find_map(|key| {
            let call = self.calls.get(key)?;
            (call.kind == HeldKind::Message
                && call.phase == Phase::Waiting
                && call
                    .targets
                    .iter()
                    .any(|t| t.device_id == device_id && t.state.reached()))
            .then_some(call.key)
        })
    }

    /// A push of the call `key` to `device_id` failed an attempt and is tried again: its state
    /// says so (push.pending) while it is on its way (messages it covers show they are covered).
    pub fn push_retrying(&mut self, key: CallKey, device_id: &str, attempts: u32, error: &str) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        for t in call.targets.iter_mut().filter(|t| {
            t.device_id == device_id
                && matches!(t.state, PushState::Sending | PushState::Retrying { .. })
        }) {
            t.state = PushState::Retrying {
                attempts,
                error: bounded_text(error, MAX_STATE_TEXT),
            };
        }
    }

    /// Records how a push ended, for its call and for the messages it covers. Returns the calls
    /// for which this was the last hope: every push of a still waiting call has failed, so the
    /// call should be failed now rather than at its timeout.
    pub fn push_done(
        &mut self,
        key: CallKey,
        device_id: &str,
        result: Result<u16, String>,
    ) -> Vec<CallKey> {
        let Some(aor) = self.calls.get(&key).map(|c| c.aor.clone()) else {
            return Vec::new();
        };
        let state = match &result {
            Ok(status) => PushState::Sent(*status),
            Err(e) => PushState::Failed(e.clone()),
        };
        let keys = self.by_aor.get(&aor).cloned().unwrap_or_default();
        let mut failed = Vec::new();
        for k in keys {
            let Some(call) = self.calls.get_mut(&k) else {
                continue;
            };
            let mut touched = false;
            for t in call.targets.iter_mut().filter(|t| t.device_id == device_id) {
                if k == key || t.state == PushState::Covered(key) {
                    t.state = state.clone();
                    touched = true;
                }
            }
            if !touched {
                continue;
            }
            let all_failed = call
                .targets
                .iter()
                .all(|t| matches!(t.state, PushState::Failed(_)));
            if call.phase == Phase::Waiting && all_failed {
                call.phase = Phase::Failed;
                failed.push(k);
            }
        }
        failed
    }

    /// Every call still waiting (Kamailio shuts down): marked failed and returned, once.
    pub fn take_waiting(&mut self) -> Vec<CallKey> {
        let mut out = Vec::new();
        for call in self.calls.values_mut() {
            if call.phase == Phase::Waiting {
                call.phase = Phase::Failed;
                out.push(call.key);
            }
        }
        out
    }

    /// Calls still waiting whose deadline has come: they are marked timed out and returned, once.
    pub fn overdue(&mut self, now: Instant) -> Vec<CallKey> {
        let mut out = Vec::new();
        for call in self.calls.values_mut() {
            if call.phase == Phase::Waiting && now >= call.deadline {
                call.phase = Phase::TimedOut;
                out.push(call.key);
            }
        }
        out
    }

    /// Entries whose deadline passed more than [`GRACE`] ago: tm has ended them without us hearing.
    pub fn stale(&self, now: Instant) -> Vec<CallKey> {
        self.calls
            .values()
            .filter(|c| now > c.deadline + GRACE)
            .map(|c| c.key)
            .collect()
    }

    /// push.pending: the calls held (for `aor`, or all), oldest first (then by transaction, so
    /// pages neither repeat nor skip a call while none comes or goes), at most `limit` from the
    /// `offset`-th on, cut where their text would pass [`PAGE_BYTES`] (at least one call). Returns
    /// how many match in all, and the page.
    pub fn pending(
        &self,
        aor: Option<&str>,
        now: Instant,
        unix_now_ms: i64,
        offset: u32,
        limit: u32,
    ) -> (u32, Vec<PendingCall>) {
        let mut list: Vec<&Call> = match aor {
            Some(aor) => self
                .by_aor
                .get(aor)
                .map(|keys| keys.iter().filter_map(|k| self.calls.get(k)).collect())
                .unwrap_or_default(),
            None => self.calls.values().collect(),
        };
        list.sort_by_key(|c| (c.held_at, c.key));
        let total = list.len().min(u32::MAX as usize) as u32;
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut bytes = 0;
        let mut page = Vec::new();
        for c in list.iter().skip(offset as usize).take(limit as usize) {
            let age = now.saturating_duration_since(c.held_at);
            let left = c.deadline.saturating_duration_since(now);
            let overdue = now.saturating_duration_since(c.deadline);
            let devices: Vec<PendingDevice> = c
                .targets
                .iter()
                .map(|t| PendingDevice {
                    device: loggable_device(&t.device_id),
                    push: t.state.describe(),
                })
                .collect();
            let call = PendingCall {
                aor: c.aor.clone(),
                call_id: c.call_id.clone(),
                caller: bounded_text(&c.caller_uri, MAX_CALLER_TEXT),
                age_ms: ms(age) as u64,
                held_at_ms: unix_now_ms.saturating_sub(ms(age)),
                deadline_ms: unix_now_ms
                    .saturating_add(ms(left))
                    .saturating_sub(ms(overdue)),
                devices_pushed: c.targets.len() as u32,
                state: c.phase.as_str().to_string(),
                devices,
            };
            bytes += call.aor.len()
                + call.call_id.len()
                + call.caller.len()
                + call.state.len()
                + PAGE_ENTRY_OVERHEAD
                + call
                    .devices
                    .iter()
                    .map(|d| d.device.len() + d.push.len() + PAGE_DEVICE_OVERHEAD)
                    .sum::<usize>();
            if bytes > PAGE_BYTES && !page.is_empty() {
                break;
            }
            page.push(call);
        }
        (total, page)
    }
}

/// A device id fit for logs and RPC answers: an instance as is, a token-based id shortened.
pub fn loggable_device(device_id: &str) -> String {
    match device_id.strip_prefix("token:") {
        Some(token) => format!("token:{}", crate::devices::contact::shorten_token(token)),
        None => bounded_text(device_id, crate::ipc::limits::MAX_INSTANCE),
    }
}

/// What one page of push.pending may carry, in bytes of text plus [`PAGE_ENTRY_OVERHEAD`] per
/// call: the answer travels in one Unix datagram to the RPC process (the kernel's default cap is
/// about 212 KB), then through ctl (32 KB of top-level body by default, each call's structure in
/// its own 8 KB) to kamcmd, which reads at most 128 KB.
pub const PAGE_BYTES: usize = 48 * 1024;
/// Field names, numbers, times and structure marks of one call in ctl's encoding, rounded up.
pub const PAGE_ENTRY_OVERHEAD: usize = 160;
/// The same for each device of a call.
pub const PAGE_DEVICE_OVERHEAD: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(token: &str) -> PushBinding {
        PushBinding {
            provider: "apns".into(),
            prid: token.into(),
            param: Some("TEAM.com.example.voip".into()),
            silent: false,
            timeout: None,
        }
    }

    fn call(key: CallKey, aor: &str, tokens: &[&str]) -> Call {
        let now = Instant::now();
        Call {
            key,
            kind: HeldKind::Call,
            aor: aor.into(),
            call_id: format!("call-{}", key.1),
            caller_uri: "sip:bob@example.com".into(),
            caller_name: None,
            held_at: now,
            deadline: now + Duration::from_secs(30),
            phase: Phase::Waiting,
            targets: tokens
                .iter()
                .map(|t| PushedDevice {
                    device_id: format!("token:{t}"),
                    binding: binding(t),
                    instance: Some(format!("<urn:uuid:{t}>")),
                    state: PushState::Sending,
                    joined: false,
                })
                .collect(),
        }
    }

    #[test]
    fn matching_register_resumes_each_call_once() {
        let mut calls = Calls::default();
        calls.insert(call((1, 1), "alice", &["tokA"]));
        calls.insert(call((1, 2), "alice", &["tokA"]));
        calls.insert(call((2, 1), "bob", &["tokA"]));
        let mut got = calls.device_registered("alice", Some(&binding("tokA")), None);
        got.sort();
        assert_eq!(got, vec![(1, 1), (1, 2)]);
        // The auth retry / second REGISTER finds nothing left to resume.
        assert!(calls
            .device_registered("alice", Some(&binding("tokA")), None)
            .is_empty());
        assert_eq!(calls.get((2, 1)).unwrap().phase, Phase::Waiting);
    }

    #[test]
    fn other_token_does_not_resume_but_same_instance_does() {
        let mut calls = Calls::default();
        calls.insert(call((1, 1), "alice", &["tokA"]));
        assert!(calls
            .device_registered("alice", Some(&binding("other")), None)
            .is_empty());
        assert!(calls.device_registered("alice", None, None).is_empty());
        let got = calls.device_registered(
            "alice",
            Some(&binding("new-token")),
            Some("<urn:uuid:tokA>"),
        );
        assert_eq!(got, vec![(1, 1)]);
    }

    #[test]
    fn call_fails_only_when_every_push_failed() {
        let mut calls = Calls::default();
        calls.insert(call((1, 1), "alice", &["a", "b"]));
        assert!(calls
            .push_done((1, 1), "token:a", Err("410 Unregistered".into()))
            .is_empty());
        assert_eq!(
            calls.push_done((1, 1), "token:b", Err("400 BadDeviceToken".into())),
            vec![(1, 1)]
        );
        assert_eq!(calls.get((1, 1)).unwrap().phase, Phase::Failed);
        // Once failed it is not resumed by a late REGISTER.
        assert!(calls
            .device_registered("alice", Some(&binding("a")), None)
            .is_empty());

        calls.insert(call((1, 2), "alice", &["a", "b"]));
        assert!(calls.push_done((1, 2), "token:a", Ok(200)).is_empty());
        assert!(calls
            .push_done((1, 2), "token:b", Err("x".into()))
            .is_empty());
        assert_eq!(calls.get((1, 2)).unwrap().phase, Phase::Waiting);
    }

    /// 10,000 held calls (max_pending's default), listed page by page: every call once, in
    /// the order they were held, each page within what one answer carries.
    #[test]
    fn ten_thousand_held_calls_page_through_completely() {
        let mut calls = Calls::default();
        let start = Instant::now();
        for i in 0..10_000u32 {
            let mut c = call((i % 7, i), &format!("user-{}", i % 500), &["a"]);
            // Some share a hold time, as calls held in the same instant do.
            c.held_at = start + Duration::from_millis((i / 3) as u64);
            c.call_id = format!("{i:05}-{}", "c".repeat(200));
            calls.insert(c);
        }
        let mut seen = Vec::new();
        let mut offset = 0;
        let mut pages = 0;
        loop {
            let (total, page) = calls.pending(None, Instant::now(), 0, offset, 1000);
            assert_eq!(total, 10_000);
            if page.is_empty() {
                break;
            }
            let bytes: usize = page
                .iter()
                .map(|c| {
                    c.aor.len()
                        + c.call_id.len()
                        + c.caller.len()
                        + c.state.len()
                        + PAGE_ENTRY_OVERHEAD
                        + c.devices
                            .iter()
                            .map(|d| d.device.len() + d.push.len() + PAGE_DEVICE_OVERHEAD)
                            .sum::<usize>()
                })
                .sum();
            assert!(bytes <= PAGE_BYTES, "{bytes}");
            let encoded = postcard::to_stdvec(&page).unwrap();
            assert!(encoded.len() < 100 * 1024, "{}", encoded.len());
            offset += page.len() as u32;
            seen.extend(page.into_iter().map(|c| c.call_id));
            pages += 1;
            assert!(pages < 1000);
        }
        assert_eq!(seen.len(), 10_000);
        let held: Vec<u32> = seen
            .iter()
            .map(|id| id[..5].parse::<u32>().unwrap() / 3)
            .collect();
        assert!(held.windows(2).all(|w| w[0] <= w[1]), "not oldest first");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10_000, "a call listed twice");
        // Long call-ids: the byte bound, not the limit, cut these pages.
        assert!(pages > 10, "{pages}");
        // The default page of short entries is the limit's.
        let (_, page) = calls.pending(Some("user-1"), Instant::now(), 0, 0, 5);
        assert_eq!(page.len(), 5);
        assert!(page.iter().all(|c| c.aor == "user-1"));
        let (total, page) = calls.pending(Some("user-1"), Instant::now(), 0, 19, 5);
        assert_eq!((total, page.len()), (20, 1));
    }

    #[test]
    fn remove_and_stale_and_pending() {
        let mut calls = Calls::default();
        calls.insert(call((1, 1), "alice", &["a"]));
        calls.insert(call((1, 2), "bob", &["b"]));
        assert_eq!(calls.pending(None, Instant::now(), 0, 0, 100).1.len(), 2);
        assert_eq!(
            calls.pending(Some("bob"), Instant::now(), 0, 0, 100).1[0].call_id,
            "call-2"
        );
        assert!(calls.stale(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_secs(30) + GRACE + Duration::from_secs(1);
        assert_eq!(calls.stale(later).len(), 2);
        assert!(calls.remove((1, 1)).is_some());
        assert!(calls.remove((1, 1)).is_none());
        assert!(calls.resume_aor("alice").is_empty());
        assert_eq!(calls.resume_aor("bob"), vec![(1, 2)]);
        assert_eq!(calls.len(), 1);
    }

    /// push.pending shows who calls, when the call is held and ended, and where each device's
    /// push stands, in words; outside text escaped and bounded.
    #[test]
    fn pending_shows_caller_times_and_push_states() {
        let mut calls = Calls::default();
        let mut c = call(
            (1, 1),
            "alice",
            &["aaaaaaaaaaaaaaaaaaaa", "bbbb", "cccc", "dddd"],
        );
        c.caller_uri = format!("sip:bob\r\nX-Forged: 1@example.com;{}", "p".repeat(400));
        let held = c.held_at;
        c.deadline = held + Duration::from_secs(30);
        calls.insert(c);
        calls.push_retrying(
            (1, 1),
            "token:aaaaaaaaaaaaaaaaaaaa",
            1,
            "503 from the\nservice",
        );
        calls.push_done((1, 1), "token:bbbb", Ok(200));
        calls.push_done((1, 1), "token:cccc", Err("token dead (410)".into()));
        // A retry note after the push ended changes nothing.
        calls.push_retrying((1, 1), "token:bbbb", 2, "late");
        let now = held + Duration::from_millis(1500);
        let (_, page) = calls.pending(None, now, 1_000_000, 0, 10);
        let p = &page[0];
        assert!(
            p.caller
                .starts_with("sip:bob\\r\\nX-Forged: 1@example.com;"),
            "{}",
            p.caller
        );
        assert!(p.caller.len() <= MAX_CALLER_TEXT && p.caller.ends_with('…'));
        assert_eq!(p.age_ms, 1500);
        assert_eq!(p.held_at_ms, 1_000_000 - 1500);
        assert_eq!(p.deadline_ms, 1_000_000 + 28_500);
        let states: Vec<(&str, &str)> = p
            .devices
            .iter()
            .map(|d| (d.device.as_str(), d.push.as_str()))
            .collect();
        assert_eq!(
            states,
            vec![
                (
                    "token:aaaaaa…aaaa",
                    "retrying (attempt 1 failed: 503 from the\\nservice)"
                ),
                ("token:bb…", "sent (200)"),
                ("token:cc…", "failed (token dead (410))"),
                ("token:dd…", "sending"),
            ]
        );
        // Past its deadline (tm not yet told us), the deadline is in the past.
        let (_, page) = calls.pending(None, held + Duration::from_secs(31), 1_000_000, 0, 10);
        assert_eq!(page[0].deadline_ms, 1_000_000 - 1000);
    }
}

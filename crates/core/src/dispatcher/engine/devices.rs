//! Devices: the store of push devices (the engine is its only writer) and the shared AOR index.
//! A contact event stores, updates or removes devices (after resuming the calls a registration
//! wakes); a dead token's device is forgotten; push.remove forgets devices on request.

use super::{loggable_device, now, unix_now, Engine};
use crate::devices::contact::{parse_contact_uri, push_binding, shorten_token};
use crate::devices::store::{Device, StoreError, Upsert};
use crate::devices::{device_id, normalize_aor};
use crate::dispatcher::Host;
use crate::ipc::args::DeviceAdd;
use crate::ipc::cluster::{ClusterMessage, News};
use crate::ipc::limits::bounded_text;
use crate::ipc::message::{Answer, ContactChange, ContactEvent, DeviceView};
use std::sync::atomic::Ordering;

/// The push bindings made on this node that are alive, per AOR (enable_dmq).
#[derive(Default)]
pub(super) struct LocalBindings {
    by_aor: std::collections::HashMap<String, Vec<LocalBinding>>,
    count: usize,
    last_prune: i64,
}

struct LocalBinding {
    instance: Option<String>,
    binding: crate::devices::contact::PushBinding,
    /// Unix seconds; None: permanent.
    expires_at: Option<i64>,
}

/// How many bindings [`LocalBindings`] keeps at most (beyond, a registration counts as news).
const MAX_LOCAL_BINDINGS: usize = 500_000;

impl LocalBindings {
    /// A phone registered here: returns whether the same device's binding was alive here
    /// before (a refresh), and keeps the new one.
    pub(super) fn note(
        &mut self,
        aor: &str,
        instance: Option<&str>,
        binding: &crate::devices::contact::PushBinding,
        expires_at: Option<i64>,
        now: i64,
    ) -> bool {
        let same = |b: &LocalBinding| match (&b.instance, instance) {
            (Some(a), Some(i)) => a == i,
            (None, None) => b.binding.same_registration(binding),
            _ => false,
        };
        let entry = LocalBinding {
            instance: instance.map(str::to_string),
            binding: binding.clone(),
            expires_at,
        };
        let full = self.count >= MAX_LOCAL_BINDINGS;
        let list = self.by_aor.entry(aor.to_string()).or_default();
        match list.iter_mut().find(|b| same(b)) {
            Some(old) => {
                let was_alive = old.expires_at.is_none_or(|at| at > now)
                    && old.binding.same_registration(binding);
                *old = entry;
                was_alive
            }
            None => {
                if !full {
                    list.push(entry);
                    self.count += 1;
                } else if list.is_empty() {
                    self.by_aor.remove(aor);
                }
                false
            }
        }
    }

    /// The phone unregistered here: its binding (the one with this instance, or else this push
    /// binding; every binding of the AOR when both are None) is no longer alive.
    pub(super) fn forget(
        &mut self,
        aor: &str,
        instance: Option<&str>,
        binding: Option<&crate::devices::contact::PushBinding>,
    ) {
        let Some(list) = self.by_aor.get_mut(aor) else {
            return;
        };
        let before = list.len();
        list.retain(|b| match (instance, binding) {
            (Some(i), _) => b.instance.as_deref() != Some(i),
            (None, Some(p)) => !b.binding.same_registration(p),
            (None, None) => false,
        });
        self.count -= before - list.len();
        if list.is_empty() {
            self.by_aor.remove(aor);
        }
    }

    /// The devices of `aor` whose binding here is alive.
    pub(super) fn alive(
        &self,
        aor: &str,
        now: i64,
    ) -> Vec<(Option<String>, crate::devices::contact::PushBinding)> {
        self.by_aor
            .get(aor)
            .map(|list| {
                list.iter()
                    .filter(|b| b.expires_at.is_none_or(|at| at > now))
                    .map(|b| (b.instance.clone(), b.binding.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops the expired bindings (at most once a second).
    pub(super) fn prune(&mut self, now: i64) {
        if now == self.last_prune {
            return;
        }
        self.last_prune = now;
        let mut count = 0;
        self.by_aor.retain(|_, list| {
            list.retain(|b| b.expires_at.is_none_or(|at| at > now));
            count += list.len();
            !list.is_empty()
        });
        self.count = count;
    }
}

/// Seconds an `awaiting` message adds to the call's timeout.
const AWAIT_SLACK_S: u32 = 5;

/// A value as a SIP URI parameter value or user part: every byte that is not unreserved
/// percent-escaped (the Contact parser undoes it).
fn uri_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A stored device as push.devices and push.device_add show it (token shortened).
pub(super) fn device_view(d: Device) -> DeviceView {
    DeviceView {
        device_id: loggable_device(&d.device_id),
        provider: d.provider,
        token: shorten_token(&d.prid),
        app: d.app_id.or(d.param).unwrap_or_default(),
        user_agent: d.user_agent.unwrap_or_default(),
        updated_at: d.updated_at,
        aor: d.aor,
    }
}

impl Engine {
    pub(super) fn on_contact(&mut self, ev: ContactEvent, host: &dyn Host) {
        match ev.change {
            ContactChange::Registered => {
                // With enable_dmq a replica resumes nothing: the node that received the REGISTER
                // tells this one after its 200 OK (a replica may arrive before it is out).
                let told_later = self.ctx.config.enable_dmq && ev.replica;
                // Calls first: the woken device's INVITE must not wait for the store.
                if told_later {
                    debug!(
                        "a device of {} registered on another node (replica): resumed on that node's DMQ message",
                        ev.aor
                    );
                } else if ev.resume {
                    self.device_woke(&ev, host);
                } else {
                    // push_register(): the script resumes with push_resume(); the device joins.
                    self.calls
                        .device_joined(&ev.aor, ev.binding.as_ref(), ev.instance.as_deref());
                }
                let stored = self.store_device(&ev);
                self.tell_cluster(&ev, stored, host);
            }
            ContactChange::Removed => {
                // The phone unregistered: its binding here is no longer alive.
                self.local_bindings
                    .forget(&ev.aor, ev.instance.as_deref(), ev.binding.as_ref());
                let Some(store) = &self.store else {
                    return;
                };
                let (removed, news) = match (&ev.instance, &ev.binding) {
                    (Some(instance), _) => (
                        store.remove(&ev.aor, instance).map(|r| r as usize),
                        News::Removed {
                            aor: ev.aor.clone(),
                            device_id: instance.clone(),
                        },
                    ),
                    (None, Some(b)) => (
                        store.remove_token(&ev.aor, &b.prid),
                        News::RemovedToken {
                            aor: ev.aor.clone(),
                            prid: b.prid.clone(),
                        },
                    ),
                    (None, None) => return,
                };
                self.removed(&ev.aor, removed, "a device", ev.local.then_some(news));
            }
            ContactChange::RemovedAll => {
                self.local_bindings.forget(&ev.aor, None, None);
                let Some(store) = &self.store else {
                    return;
                };
                let removed = store.remove_aor(&ev.aor);
                let news = News::RemovedAor {
                    aor: ev.aor.clone(),
                };
                self.removed(&ev.aor, removed, "the devices", ev.local.then_some(news));
            }
        }
    }

    /// A registration: a Contact with push parameters stores (or updates) its device and, with
    /// refresh pushes on, when its binding expires; one without them, from an instance, removes
    /// that instance's device (it no longer wants pushes).
    /// Returns how the device was stored (None: not stored, or no push device).
    fn store_device(&mut self, ev: &ContactEvent) -> Option<Upsert> {
        let Some(store) = &self.store else {
            return None;
        };
        let Some(binding) = &ev.binding else {
            if let Some(instance) = &ev.instance {
                let removed = store.remove(&ev.aor, instance).map(|r| r as usize);
                let news = News::Removed {
                    aor: ev.aor.clone(),
                    device_id: instance.clone(),
                };
                self.removed(&ev.aor, removed, "a device", ev.local.then_some(news));
            }
            return None;
        };
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
        // A replica (dmq_usrloc) is stored here but told by the node that received it.
        match self.keep_device(&device, ev.expires_at, ev.local) {
            Ok((stored, _)) => Some(stored),
            Err(e) => {
                error!("cannot store a device of {}: {e}", ev.aor);
                None
            }
        }
    }

    /// With `enable_dmq`: a push device's registration received by this node is news for the
    /// other nodes (they may hold calls for it) when it is a wake-up: a binding usrloc did not
    /// have (a phone whose binding expired while it slept), or a device whose details changed
    /// (new token, new Contact). A refresh of an unchanged binding sends nothing, so cluster
    /// traffic follows device changes, not REGISTER refreshes. Replicated bindings (dmq_usrloc)
    /// are never sent on: only the node that received the REGISTER speaks.
    fn tell_cluster(&mut self, ev: &ContactEvent, stored: Option<Upsert>, host: &dyn Host) {
        if !self.ctx.config.enable_dmq || !ev.local || !ev.resume {
            return;
        }
        let Some(binding) = &ev.binding else {
            return;
        };
        let was_alive = self.local_bindings.note(
            &ev.aor,
            ev.instance.as_deref(),
            binding,
            ev.expires_at,
            unix_now().as_secs() as i64,
        );
        let fresh =
            ev.inserted || !was_alive || matches!(stored, Some(Upsert::New | Upsert::Replaced));
        let awaited = self
            .awaited
            .get(&ev.aor)
            .is_some_and(|until| *until > now());
        if !fresh && !awaited {
            return;
        }
        let message = ClusterMessage::registered(&ev.aor, ev.instance.as_deref(), binding);
        match host.cluster_broadcast(&message) {
            Ok(()) => {
                self.count(|c| &c.cluster_sent);
                debug!("told the cluster: a device of {} registered here", ev.aor)
            }
            Err(e) => warn!(
                "cannot tell the cluster that a device of {} registered here: {e}",
                ev.aor
            ),
        }
    }

    /// A message from another node of the cluster.
    pub(super) fn on_cluster(&mut self, message: ClusterMessage, host: &dyn Host) {
        if !self.retransmissions.first_time(&message, now()) {
            debug!(
                "a DMQ message about {} came again from {} (a retransmission): already acted on",
                message.aor(),
                message.node.as_deref().unwrap_or("an unknown node")
            );
            return;
        }
        self.count(|c| &c.cluster_received);
        let binding = message.binding();
        let ClusterMessage { node, news, .. } = message;
        match news {
            News::Registered { aor, instance, .. } => {
                self.registered_elsewhere(&aor, binding, instance, node.as_deref(), host)
            }
            News::Device(device) => self.learn_device(device),
            News::Removed { aor, device_id } => self.forget_told(&aor, |store| {
                store.remove(&aor, &device_id).map(|r| r as usize)
            }),
            News::RemovedToken { aor, prid } => {
                self.forget_told(&aor, |store| store.remove_token(&aor, &prid))
            }
            News::RemovedAor { aor } => self.forget_told(&aor, |store| store.remove_aor(&aor)),
            News::Awaiting { aor, seconds } => {
                let seconds = seconds.min(crate::ipc::cluster::MAX_AWAIT_S);
                debug!("another node holds calls for {aor} ({seconds} s)");
                // Devices of the AOR alive here (maybe registered a moment before this message
                // came): that node hears of them at once.
                for (instance, binding) in
                    self.local_bindings.alive(&aor, unix_now().as_secs() as i64)
                {
                    self.announce(
                        ClusterMessage::registered(&aor, instance.as_deref(), &binding).news,
                    );
                }
                self.awaited
                    .insert(aor, now() + std::time::Duration::from_secs(seconds as u64));
            }
        }
    }

    /// With `enable_dmq`: this node holds a call for `aor` (for `timeout` s): the other nodes are
    /// told (once per held call), so that any registration of the AOR's devices there is news
    /// for this node, even one that looks like a refresh there, and the devices alive there are
    /// told at once (the call goes to them without waiting for a push to wake them).
    pub(super) fn tell_awaiting(&mut self, aor: &str, timeout: u32) {
        if !self.ctx.config.enable_dmq {
            return;
        }
        self.announce(News::Awaiting {
            aor: aor.to_string(),
            // Room for the reply that ends the call to come back.
            seconds: (timeout + AWAIT_SLACK_S).min(crate::ipc::cluster::MAX_AWAIT_S),
        });
    }

    /// Forgets the waits that are over (this node's and the other nodes').
    pub(super) fn forget_stale_waits(&mut self, now: std::time::Instant) {
        self.local_bindings.prune(unix_now().as_secs() as i64);
        self.awaited.retain(|_, until| *until > now);
    }

    /// Another node says a device registered there: the calls held here for that device are
    /// resumed as if it had registered here (each call once: a call already resumed is not
    /// resumed again), and `push_cluster_relay()` in the resume route names that node. The
    /// device itself comes in the node's `device` message, if it changed.
    fn registered_elsewhere(
        &mut self,
        aor: &str,
        binding: Option<crate::devices::contact::PushBinding>,
        instance: Option<String>,
        node: Option<&str>,
        host: &dyn Host,
    ) {
        let Some(aor) = normalize_aor(aor, self.config().use_domain) else {
            return;
        };
        let keys = self
            .calls
            .device_registered(&aor, binding.as_ref(), instance.as_deref());
        if keys.is_empty() {
            debug!("a device of {aor} registered on another node: no call held for it here");
            return;
        }
        info!(
            "device of {aor} registered on another node (DMQ{}): resuming {} call(s)",
            node.map(|n| format!(" from {n}")).unwrap_or_default(),
            keys.len()
        );
        self.continue_calls(&keys, false, node, host);
    }

    /// Another node stored or changed a device: known here at once (store and AOR index), not
    /// written to the shared database again (that node did) and with no refresh push from here.
    fn learn_device(&mut self, device: Device) {
        let Some(store) = &self.store else { return };
        match store.merge(std::slice::from_ref(&device), &[], false) {
            Ok(aors) => {
                if !aors.is_empty() {
                    self.ctx.index.insert(&device.aor);
                    debug!(
                        "device of {} learned from another node: {} token {}",
                        device.aor,
                        device.provider,
                        shorten_token(&device.prid)
                    );
                }
            }
            Err(e) => error!(
                "cannot store a device of {} another node told: {e}",
                device.aor
            ),
        }
    }

    /// Another node forgot devices of `aor`: forgotten here too (not written to the shared
    /// database again, not told on).
    fn forget_told(
        &mut self,
        aor: &str,
        remove: impl FnOnce(&crate::devices::store::Store) -> Result<usize, StoreError>,
    ) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let removed = store.without_mirror(remove);
        if let Ok(n) = &removed {
            if *n > 0 {
                debug!("{n} device(s) of {aor} removed by another node");
            }
        }
        self.removed(aor, removed, "a device another node removed", None);
    }

    /// A change for the other nodes (enable_dmq), sent at the end of the message or tick.
    fn announce(&self, news: News) {
        if self.ctx.config.enable_dmq {
            self.outbox.borrow_mut().push(news.into());
        }
    }

    /// Sends the changes announced since the last call.
    pub(super) fn send_announcements(&self, host: &dyn Host) {
        let out = std::mem::take(&mut *self.outbox.borrow_mut());
        for message in out {
            match host.cluster_broadcast(&message) {
                Ok(()) => self.count(|c| &c.cluster_sent),
                Err(e) => warn!(
                    "cannot tell the cluster about a device of {}: {e}",
                    message.aor()
                ),
            }
        }
    }

    /// Stores (or updates) a device, REGISTER's way whatever brought it: the AOR index, the
    /// binding's expiry for refresh pushes, the log and the counter, and at most `max_devices`
    /// for the AOR. Returns how it was stored and the devices that gave way to it.
    /// `announce`: the change is this node's news for the cluster (enable_dmq).
    fn keep_device(
        &mut self,
        device: &Device,
        expires_at: Option<i64>,
        announce: bool,
    ) -> Result<(Upsert, Vec<Device>), StoreError> {
        let Some(store) = &self.store else {
            return Err(StoreError::Url("the device store is not open".into()));
        };
        let aor = &device.aor;
        let stored = store.upsert(device)?;
        self.ctx.index.insert(aor);
        // Expiry is kept only for refresh pushes (one write less per REGISTER).
        if self.ctx.config.refresh_window > 0 {
            if let Err(e) = store.set_expiry(aor, &device.device_id, expires_at) {
                error!("cannot note when a binding of {aor} expires: {e}");
            }
        }
        if announce && matches!(stored, Upsert::New | Upsert::Replaced) {
            self.announce(News::Device(device.clone()));
        }
        let mut evicted = Vec::new();
        match stored {
            Upsert::Replaced => debug!("device of {aor} updated"),
            Upsert::New => {
                self.count(|c| &c.devices_stored);
                info!(
                    "device of {aor} stored: {} token {}",
                    device.provider,
                    shorten_token(&device.prid)
                );
                evicted = self.keep_max_devices(aor, &device.device_id);
                if announce {
                    for d in &evicted {
                        self.announce(News::Removed {
                            aor: d.aor.clone(),
                            device_id: d.device_id.clone(),
                        });
                    }
                }
            }
            Upsert::Unchanged => {}
        }
        Ok((stored, evicted))
    }

    /// push.device_add: a device an operator's backend learned (an app that reports its token over
    /// HTTP), checked as a REGISTER's Contact is: its push parameters through the same parser
    /// (provider, token and param bounds and characters, the APNs dual token), the app must exist
    /// and push that provider, and the AOR keeps at most `max_devices`. Stored with its app, so
    /// it is pushed through that app; it replaces the device with the same instance (or token).
    pub(super) fn add_device(&mut self, add: DeviceAdd) -> Answer {
        let Some(aor) = normalize_aor(&add.aor, self.config().use_domain) else {
            return Answer::Error(format!("'{}' is not an AOR", bounded_text(&add.aor, 60)));
        };
        // The push parameters as a Contact URI, read by the parser every REGISTER goes through;
        // kept as the device's Contact (an APNs dual token's `remote` part is read from there).
        let user = aor.split('@').next().unwrap_or("device");
        let mut contact = format!(
            "sip:{}@push.device_add.invalid;pn-provider={};pn-prid={}",
            uri_escape(user),
            uri_escape(&add.provider),
            uri_escape(&add.token)
        );
        if let Some(param) = &add.param {
            contact.push_str(&format!(";pn-param={}", uri_escape(param)));
        }
        let binding = match parse_contact_uri(&contact).and_then(|info| push_binding(&info)) {
            Ok(Some(binding)) => binding,
            Ok(None) => return Answer::Error("push.device_add: no push parameters".into()),
            Err(e) => return Answer::Error(format!("push.device_add: {e}")),
        };
        let Some(app) = self.config().apps.iter().find(|a| a.id == add.app) else {
            let known: Vec<&str> = self.config().apps.iter().map(|a| a.id.as_str()).collect();
            return Answer::Error(format!(
                "push.device_add: no app '{}' (apps: {})",
                bounded_text(&add.app, 40),
                bounded_text(&known.join(", "), 80)
            ));
        };
        if !app.provider.serves(&binding.provider) {
            return Answer::Error(format!(
                "push.device_add: app {} ({}) cannot push provider '{}'",
                app.id,
                app.provider.name(),
                binding.provider
            ));
        }
        let device = Device {
            aor: aor.clone(),
            device_id: device_id(add.instance.as_deref(), &binding.prid),
            provider: binding.provider.clone(),
            prid: binding.prid.clone(),
            param: binding.param.clone(),
            app_id: Some(app.id.clone()),
            instance: add.instance.clone(),
            contact,
            user_agent: add.user_agent.clone(),
            updated_at: unix_now().as_secs() as i64,
        };
        match self.keep_device(&device, None, true) {
            Ok((stored, evicted)) => {
                notice!(
                    "device of {aor} added by push.device_add: app {}, {} token {}",
                    device.app_id.as_deref().unwrap_or_default(),
                    device.provider,
                    shorten_token(&device.prid)
                );
                Answer::DeviceAdded {
                    device: device_view(device),
                    result: match stored {
                        Upsert::New => "stored",
                        Upsert::Replaced => "replaced",
                        Upsert::Unchanged => "unchanged",
                    }
                    .to_string(),
                    evicted: evicted
                        .iter()
                        .map(|d| loggable_device(&d.device_id))
                        .collect(),
                }
            }
            Err(e) => Answer::Error(format!("push.device_add: {e}")),
        }
    }

    /// At most `max_devices` per AOR (one REGISTER, or many, cannot make one call fan out into
    /// unbounded pushes): the least recently registered devices give way to `new_device`.
    fn keep_max_devices(&self, aor: &str, new_device: &str) -> Vec<Device> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let max = self.ctx.config.max_devices;
        match store.trim(aor, max, new_device) {
            Ok(evicted) if evicted.is_empty() => Vec::new(),
            Ok(evicted) => {
                self.count_removed(evicted.len());
                for d in &evicted {
                    notice!(
                        "{aor} has more than {max} devices (max_devices): the least recently registered, {} token {}, removed",
                        d.provider,
                        shorten_token(&d.prid)
                    );
                }
                evicted
            }
            Err(e) => {
                error!("cannot keep {aor} within max_devices: {e}");
                Vec::new()
            }
        }
    }

    /// Counts the devices of `aor` a removal took away (`what` names them in the error line),
    /// tells the cluster `news` when it took any (this node's own removals), and drops the AOR
    /// from the index if it has no device left.
    fn removed(
        &self,
        aor: &str,
        removed: Result<usize, StoreError>,
        what: &str,
        news: Option<News>,
    ) {
        match removed {
            Ok(n) => {
                self.count_removed(n);
                if let Some(news) = news.filter(|_| n > 0) {
                    self.announce(news);
                }
            }
            Err(e) => error!("cannot remove {what} of {aor}: {e}"),
        }
        self.sync_index(aor);
    }

    fn count_removed(&self, n: usize) {
        self.ctx
            .shared
            .counters
            .devices_removed
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The push service said the device's token is dead: the device is forgotten.
    pub(super) fn forget_dead_device(&mut self, aor: &str, device_id: &str) {
        if let Some(store) = &self.store {
            let removed = store.remove(aor, device_id).map(|r| r as usize);
            let news = News::Removed {
                aor: aor.to_string(),
                device_id: device_id.to_string(),
            };
            self.removed(aor, removed, "a dead device", Some(news));
        }
    }

    /// push.remove: forgets the AOR's devices (all, or those whose id, token or shortened id is
    /// `device`).
    pub(super) fn remove_devices(&mut self, aor: &str, device: Option<&str>) -> Answer {
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
                Ok(true) => {
                    removed += 1;
                    self.announce(News::Removed {
                        aor: aor.to_string(),
                        device_id: d.device_id.clone(),
                    });
                }
                Ok(false) => {}
                Err(e) => return Answer::Error(e.to_string()),
            }
        }
        self.count_removed(removed as usize);
        self.sync_index(aor);
        if removed == 0 {
            return Answer::Error(format!("no such device for {aor}"));
        }
        notice!("{removed} device(s) of {aor} removed by push.remove");
        Answer::Removed(removed)
    }

    /// Drops the AOR from the shared index once its last device is gone.
    fn sync_index(&self, aor: &str) {
        if let Some(store) = &self.store {
            if let Ok(false) = store.has_devices(aor) {
                self.ctx.index.remove(aor);
            }
        }
    }
}

/// How old the device count the metrics show may be.
const DEVICE_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Engine {
    /// How many devices the store holds, counted again at most every [`DEVICE_COUNT_EVERY`]
    /// (None without a store).
    pub(super) fn device_count(&mut self) -> Option<u64> {
        let store = self.store.as_ref()?;
        match self.devices_counted {
            Some((at, count)) if at.elapsed() < DEVICE_COUNT_EVERY => Some(count),
            _ => {
                let count = store.count().ok()?;
                self.devices_counted = Some((super::now(), count));
                Some(count)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What push.device_add escapes into its Contact comes back out of the Contact parser as it
    /// went in, whatever the characters.
    #[test]
    fn escaped_values_survive_the_contact_parser() {
        for value in ["plain-token.1", "a;b=c%d&e:voip", "é?<>\"", "x y"] {
            let contact = format!("sip:u@h;pn-param={}", uri_escape(value));
            let info = parse_contact_uri(&contact).unwrap();
            let got = info
                .uri_params
                .iter()
                .find(|(n, _)| n == "pn-param")
                .and_then(|(_, v)| v.clone());
            assert_eq!(got.as_deref(), Some(value), "{contact}");
        }
    }
}

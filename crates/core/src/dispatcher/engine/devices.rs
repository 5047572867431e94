//! Devices: the store of push devices (the engine is its only writer) and the shared AOR index.
//! A contact event stores, updates or removes devices (after resuming the calls a registration
//! wakes); a dead token's device is forgotten; push.remove forgets devices on request.

use super::{loggable_device, unix_now, Engine};
use crate::devices::contact::shorten_token;
use crate::devices::device_id;
use crate::devices::store::{Device, StoreError, Upsert};
use crate::dispatcher::Host;
use crate::ipc::message::{Answer, ContactChange, ContactEvent};
use std::sync::atomic::Ordering;

impl Engine {
    pub(super) fn on_contact(&mut self, ev: ContactEvent, host: &dyn Host) {
        match ev.change {
            ContactChange::Registered => {
                // Calls first: the woken device's INVITE must not wait for the store.
                if ev.resume {
                    self.device_woke(&ev, host);
                } else {
                    // push_register(): the script resumes with push_resume(); the device joins.
                    self.calls
                        .device_joined(&ev.aor, ev.binding.as_ref(), ev.instance.as_deref());
                }
                self.store_device(&ev);
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
                self.removed(&ev.aor, removed, "a device");
            }
            ContactChange::RemovedAll => {
                let Some(store) = &self.store else {
                    return;
                };
                let removed = store.remove_aor(&ev.aor);
                self.removed(&ev.aor, removed, "the devices");
            }
        }
    }

    /// A registration: a Contact with push parameters stores (or updates) its device and, with
    /// refresh pushes on, when its binding expires; one without them, from an instance, removes
    /// that instance's device (it no longer wants pushes).
    fn store_device(&mut self, ev: &ContactEvent) {
        let Some(store) = &self.store else {
            return;
        };
        let Some(binding) = &ev.binding else {
            if let Some(instance) = &ev.instance {
                let removed = store.remove(&ev.aor, instance).map(|r| r as usize);
                self.removed(&ev.aor, removed, "a device");
            }
            return;
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
        let stored = store.upsert(&device);
        if stored.is_ok() {
            self.ctx.index.insert(&ev.aor);
            // Expiry is kept only for refresh pushes (one write less per REGISTER).
            if self.ctx.config.refresh_window > 0 {
                if let Err(e) = store.set_expiry(&ev.aor, &device.device_id, ev.expires_at) {
                    error!("cannot note when a binding of {} expires: {e}", ev.aor);
                }
            }
        }
        match stored {
            Ok(Upsert::Replaced) => debug!("device of {} updated", ev.aor),
            Ok(Upsert::New) => {
                self.count(|c| &c.devices_stored);
                info!(
                    "device of {} stored: {} token {}",
                    ev.aor,
                    binding.provider,
                    shorten_token(&binding.prid)
                );
                self.keep_max_devices(&ev.aor, &device.device_id);
            }
            Ok(Upsert::Unchanged) => {}
            Err(e) => error!("cannot store a device of {}: {e}", ev.aor),
        }
    }

    /// At most `max_devices` per AOR (one REGISTER, or many, cannot make one call fan out into
    /// unbounded pushes): the least recently registered devices give way to `new_device`.
    fn keep_max_devices(&self, aor: &str, new_device: &str) {
        let Some(store) = &self.store else {
            return;
        };
        let max = self.ctx.config.max_devices;
        match store.trim(aor, max, new_device) {
            Ok(evicted) if evicted.is_empty() => {}
            Ok(evicted) => {
                self.count_removed(evicted.len());
                for d in &evicted {
                    notice!(
                        "{aor} has more than {max} devices (max_devices): the least recently registered, {} token {}, removed",
                        d.provider,
                        shorten_token(&d.prid)
                    );
                }
            }
            Err(e) => error!("cannot keep {aor} within max_devices: {e}"),
        }
    }

    /// Counts the devices of `aor` a removal took away (`what` names them in the error line) and
    /// drops the AOR from the index if it has no device left.
    fn removed(&self, aor: &str, removed: Result<usize, StoreError>, what: &str) {
        match removed {
            Ok(n) => self.count_removed(n),
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
            self.removed(aor, removed, "a dead device");
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
                Ok(true) => removed += 1,
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

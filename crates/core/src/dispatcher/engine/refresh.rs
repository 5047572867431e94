//! Binding-refresh pushes (RFC 8599), scheduled from [`Engine::tick`]: with `refresh_window` set,
//! every [`REFRESH_SCAN_EVERY`] the store is asked for the bindings that expire within the window
//! and had no refresh push since they registered; each is marked in the store, then pushed once.

use super::push::{About, Purpose};
use super::{loggable_device, now, unix_now, Engine};
use crate::providers::PushKind;
use std::time::Duration;

/// How often the store is asked for bindings due for a refresh push, and how many per scan.
const REFRESH_SCAN_EVERY: Duration = Duration::from_secs(1);
const REFRESH_BATCH: usize = 1000;

impl Engine {
    /// Sends the refresh pushes due, at most once per [`REFRESH_SCAN_EVERY`].
    pub(super) fn refresh_when_due(&mut self) {
        if self.config().refresh_window > 0
            && now().saturating_duration_since(self.last_refresh_scan) >= REFRESH_SCAN_EVERY
        {
            self.last_refresh_scan = now();
            self.send_refreshes();
        }
    }

    /// Binding-refresh pushes (RFC 8599): every device whose binding expires within
    /// `refresh_window` gets one background push so that it registers again. It is marked before
    /// the push goes out, so a device that does not answer is not pushed again until it registers.
    fn send_refreshes(&mut self) {
        let window = self.config().refresh_window as i64;
        let Some(store) = &self.store else { return };
        let now_s = unix_now().as_secs() as i64;
        let due = match store.due_refreshes(now_s, now_s + window, REFRESH_BATCH) {
            Ok(d) => d,
            Err(e) => {
                error!("cannot read the bindings due for a refresh push: {e}");
                return;
            }
        };
        let mut launches = Vec::new();
        for (device, expires_at) in due {
            if let Err(e) = store.mark_refreshed(&device.aor, &device.device_id, now_s) {
                error!("cannot note a refresh push for {}: {e}", device.aor);
                continue;
            }
            let about = About {
                kind: PushKind::Refresh,
                reason: None,
                text: None,
                call_id: format!("refresh-{}", device.device_id),
                caller_uri: String::new(),
                caller_name: None,
                expires_at: expires_at.max(0) as u64,
            };
            let push = match self.push_for(&device, &about, Purpose::Refresh) {
                Ok(push) => push,
                Err(super::apps::NoPusher::NoApp { .. }) => {
                    debug!("no app for a device of {}: no refresh push", device.aor);
                    continue;
                }
                Err(_) => continue,
            };
            // The push is worth trying until the binding expires (at most a minute).
            let left = Duration::from_secs((expires_at - now_s).clamp(1, 60) as u64);
            info!(
                "binding of {} device {} expires in {} s: refresh push",
                device.aor,
                loggable_device(&device.device_id),
                expires_at - now_s
            );
            launches.push((push, now() + left));
        }
        // The marks are committed before any push leaves (the writes are batched per tick).
        self.flush_store();
        for (push, deadline) in launches {
            self.spawn_push(push, deadline);
        }
    }
}

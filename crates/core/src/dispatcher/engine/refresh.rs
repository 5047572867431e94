//! Binding-refresh pushes (RFC 8599): with `refresh_window` set, every binding that expires
//! within the window gets one push, so that the phone registers again.
//!
//! - With the SQLite store (one node), [`Engine::tick`] asks the store every
//!   [`REFRESH_SCAN_EVERY`] for the bindings due that had no refresh push since they registered;
//!   each is marked in the store, then pushed once.
//! - With the PostgreSQL store (a cluster), the nodes share the bindings, so each node scanning
//!   its own copy would push every device once per node. Instead the store's writer task claims
//!   the due bindings in the database every second (`devices::postgres::CLAIM_REFRESH`: one
//!   atomic statement; a binding is claimed by exactly one node) and hands those this node won to
//!   the main thread ([`Engine::refresh_claimed`]), which pushes them. The main thread never
//!   waits on the database; while it cannot be reached nothing is claimed and no refresh push
//!   goes out (they are best-effort), never one twice.

use super::push::{About, Purpose};
use super::{loggable_device, now, unix_now, Engine};
use crate::devices::store::Device;
use crate::providers::PushKind;
use std::time::Duration;

/// How often the store is asked for bindings due for a refresh push, and how many per scan.
const REFRESH_SCAN_EVERY: Duration = Duration::from_secs(1);
const REFRESH_BATCH: usize = 1000;

impl Engine {
    /// Sends the refresh pushes due, at most once per [`REFRESH_SCAN_EVERY`] (SQLite store; with
    /// PostgreSQL the writer claims them and [`Engine::refresh_claimed`] pushes them).
    pub(super) fn refresh_when_due(&mut self) {
        if self.config().refresh_window > 0
            && self.pg.is_none()
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
        let mut marked = Vec::with_capacity(due.len());
        for (device, expires_at) in due {
            if let Err(e) = store.mark_refreshed(&device.aor, &device.device_id, now_s) {
                error!("cannot note a refresh push for {}: {e}", device.aor);
                continue;
            }
            marked.push((device, expires_at));
        }
        // The marks are committed before any push leaves (the writes are batched per tick).
        self.flush_store();
        for (device, expires_at) in marked {
            self.refresh_push(&device, expires_at, now_s);
        }
    }

    /// Bindings this node claimed in the PostgreSQL store for a refresh push (no other node
    /// pushes them): each is pushed unless it expired while the claim was on its way.
    pub fn refresh_claimed(&mut self, claimed: Vec<(Device, i64)>) {
        let now_s = unix_now().as_secs() as i64;
        for (device, expires_at) in claimed {
            if expires_at <= now_s {
                debug!(
                    "binding of {} device {} expired before its refresh push: none sent",
                    device.aor,
                    loggable_device(&device.device_id)
                );
                continue;
            }
            self.refresh_push(&device, expires_at, now_s);
        }
    }

    /// One refresh push for a binding that expires at `expires_at` (Unix seconds).
    fn refresh_push(&mut self, device: &Device, expires_at: i64, now_s: i64) {
        let about = About {
            kind: PushKind::Refresh,
            reason: None,
            text: None,
            call_id: format!("refresh-{}", device.device_id),
            caller_uri: String::new(),
            caller_name: None,
            expires_at: expires_at.max(0) as u64,
        };
        let push = match self.push_for(device, &about, Purpose::Refresh) {
            Ok(push) => push,
            Err(super::apps::NoPusher::NoApp { .. }) => {
                debug!("no app for a device of {}: no refresh push", device.aor);
                return;
            }
            Err(_) => return,
        };
        // The push is worth trying until the binding expires (at most a minute).
        let left = Duration::from_secs((expires_at - now_s).clamp(1, 60) as u64);
        info!(
            "binding of {} device {} expires in {} s: refresh push",
            device.aor,
            loggable_device(&device.device_id),
            expires_at - now_s
        );
        self.spawn_push(push, now() + left);
    }
}

//! The dispatcher's brain, run on its main thread: it owns the held-call table and the device
//! store, reacts to messages from Kamailio's processes and to push results from the runtime, and
//! tells the host (Kamailio) which held transactions to continue. It never waits on the network:
//! pushes run as tasks on the runtime and come back as [`MainJob::PushDone`].
//!
//! One struct, [`Engine`]; its methods are spread over one file per concern:
//! - this file: the struct, what it is built from, the message switch and the periodic tick;
//! - `held.rs`: held calls: hold and push, resume (a device registered, push_resume), late
//!   devices, fail, and forget (tm ended the call: its pushes are stopped);
//! - `devices.rs`: the device store: contact events, dead tokens, push.remove, the AOR index;
//! - `apps.rs`: each app's push client (built at start, rebuilt by push.reload) and its health;
//! - `push.rs`: one push: the one place a [`CallPush`] is built, the one place a push is sent and
//!   its outcome reported, and what the engine does with that outcome;
//! - `refresh.rs`: binding-refresh pushes (RFC 8599), scheduled from [`Engine::tick`];
//! - `rpc.rs`: the answers to push.* questions, and push.send's test push.
//!
//! [`CallPush`]: crate::providers::CallPush

// Every engine file logs under the target `engine` (Kamailio prints it as `engine()`), as when the
// engine was one file: these shadow the crate's macros of the same names in the files below.
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, "push_core::dispatcher::engine", format_args!($($arg)*)) };
}
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, "push_core::dispatcher::engine", format_args!($($arg)*)) };
}
macro_rules! notice {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Notice, "push_core::dispatcher::engine", format_args!($($arg)*)) };
}
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, "push_core::dispatcher::engine", format_args!($($arg)*)) };
}
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, "push_core::dispatcher::engine", format_args!($($arg)*)) };
}

mod apps;
mod devices;
mod held;
mod push;
mod refresh;
mod rpc;
#[cfg(test)]
mod tests;

use super::{Context, Host, MainJob};
use crate::calls::Calls;
use crate::config::Config;
use crate::devices::contact::shorten_token;
use crate::devices::postgres::{self, PgHandle, Snapshot};
use crate::devices::store::{DbUrl, Store};
use crate::ipc::message::{CallKey, ToDispatcher};
use crate::metrics::{self as m, Metrics};
use crate::providers::{self, webhook, Outcome};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often every metric is exported again, changed or not (xhttp_prom forgets label sets
/// nobody touched for `xhttp_prom_timeout` minutes).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A finished push, on its way back to the main thread.
#[derive(Debug)]
pub struct PushDone {
    pub key: CallKey,
    pub aor: String,
    pub app_id: String,
    pub device_id: String,
    pub outcome: Outcome,
    /// The app's kind of push service: "apns", "fcm" or "webhook".
    pub provider: &'static str,
    /// An end-of-call push, a binding-refresh push, or another.
    pub purpose: PushPurpose,
    /// From the push's first request to its outcome, retries included.
    pub took: Duration,
}

/// What a finished push was for, as far as the metrics care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushPurpose {
    Call,
    Test,
    Refresh,
    End,
}

pub struct Engine {
    ctx: Arc<Context>,
    /// The configuration in force: that of startup, with the apps push.reload last accepted.
    config: Config,
    /// Apps a push.reload removed (until one brings them back): their devices are kept but not
    /// pushed, rather than pushed through the default app.
    removed_apps: Vec<crate::config::App>,
    store: Option<Store>,
    /// With a PostgreSQL store: its writer (the store above is then this node's memory of it).
    pg: Option<PgHandle>,
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
    /// Each app's circuit breaker (apps.rs).
    breakers: HashMap<String, apps::Breaker>,
    last_refresh_scan: Instant,
    /// The push tasks of each held call, stopped when tm is done with the call.
    push_tasks: HashMap<CallKey, Vec<tokio::task::AbortHandle>>,
    /// Prometheus metrics since the last export (metrics.rs).
    metrics: Metrics,
    /// How many resets of each counter statistic the metrics have followed.
    resets_seen: Vec<u64>,
    /// When every metric was last exported again, changed or not.
    last_touch: Instant,
    /// The device store's count and when it was taken (counted at most every few seconds).
    devices_counted: Option<(Instant, u64)>,
    /// Device changes for the other nodes (enable_dmq), sent after each message and tick.
    outbox: std::cell::RefCell<Vec<crate::ipc::cluster::ClusterMessage>>,
    /// AORs other nodes hold calls for, and until when they wait (enable_dmq).
    awaited: HashMap<String, Instant>,
    /// The push bindings phones made on this node, per AOR, until they expire (enable_dmq):
    /// a registration is news for the cluster when its binding was not alive here, and a node
    /// that starts waiting for an AOR hears of the live ones.
    local_bindings: devices::LocalBindings,
    /// The KDMQ requests acted on lately: a retransmission of one is not acted on again.
    retransmissions: crate::ipc::cluster::Retransmissions,
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

/// The engine's monotonic clock: `Instant::now()`, read through tokio so that a unit test can
/// pause and advance it (outside a paused test runtime it is the system's clock).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Engine {
    /// The engine of the dispatcher: opens the device store (`db_url`) and builds every app's
    /// push client. Pushes run on `runtime`; their outcomes come back through `main`.
    pub fn new(
        ctx: Arc<Context>,
        runtime: tokio::runtime::Handle,
        main: Sender<MainJob>,
    ) -> Engine {
        let (store, pg) = match &ctx.config.db {
            DbUrl::Sqlite(path) => match Store::open(path) {
                Ok(mut store) => {
                    // One commit per tick, never one per REGISTER on the resume path.
                    store.batch_writes();
                    (Some(store), None)
                }
                Err(e) => {
                    error!("cannot open the device store: {e}; devices will not be remembered");
                    (None, None)
                }
            },
            // What the node knows is in memory; every write also goes to PostgreSQL through the
            // writer task, which hands back the stored devices whenever it (re)connects.
            DbUrl::Postgres(url) => match Store::open_memory() {
                Ok(mut store) => {
                    let to_main = main.clone();
                    let claims = main.clone();
                    // Refresh pushes are claimed in the database: one node sends each.
                    let refresh =
                        (ctx.config.refresh_window > 0).then(|| postgres::RefreshClaims {
                            window: ctx.config.refresh_window,
                            on_claim: Box::new(move |claimed| {
                                let _ = claims.send(MainJob::RefreshClaimed(claimed));
                            }),
                        });
                    let pg = postgres::start(
                        url.clone(),
                        &runtime,
                        move |snapshot| {
                            let _ = to_main.send(MainJob::StoreLoaded(snapshot));
                        },
                        refresh,
                    );
                    let writer = pg.clone();
                    store.mirror_to(Box::new(move |op| writer.send(op)));
                    (Some(store), Some(pg))
                }
                Err(e) => {
                    error!("cannot open the in-memory device store: {e}; devices will not be remembered");
                    (None, None)
                }
            },
        };
        let http = match webhook::client() {
            Ok(c) => Some(c),
            Err(e) => {
                error!("cannot build the HTTP client: {e}; webhook pushes will fail");
                None
            }
        };
        let mut engine = Engine {
            config: ctx.config.clone(),
            removed_apps: Vec::new(),
            ctx,
            store,
            pg,
            calls: Calls::default(),
            ended: HashMap::new(),
            runtime,
            main,
            http,
            senders: HashMap::new(),
            health: HashMap::new(),
            credential_alerts: HashSet::new(),
            breakers: HashMap::new(),
            last_refresh_scan: now(),
            push_tasks: HashMap::new(),
            metrics: Metrics::default(),
            resets_seen: vec![0; crate::shared::MAX_COUNTERS],
            last_touch: now(),
            devices_counted: None,
            outbox: Default::default(),
            awaited: HashMap::new(),
            local_bindings: Default::default(),
            retransmissions: Default::default(),
        };
        engine.build_senders();
        engine
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn count(&self, counter: impl Fn(&crate::shared::Counters) -> &std::sync::atomic::AtomicU64) {
        counter(&self.ctx.shared.counters).fetch_add(1, Ordering::Relaxed);
    }

    pub fn handle(&mut self, message: ToDispatcher, host: &dyn Host) {
        match message {
            ToDispatcher::Ask { reply_to, question } => self.ask(reply_to, question, host),
            ToDispatcher::Held(held) => self.on_held(held, host),
            ToDispatcher::Contact(event) => self.on_contact(event, host),
            ToDispatcher::Tm(event) => self.on_tm(event),
            ToDispatcher::Resume { aor } => {
                if let Err(e) = self.resume_aor(&aor, host) {
                    warn!("push_resume: {e}");
                }
            }
            ToDispatcher::Cluster(message) => self.on_cluster(message, host),
        }
        self.send_announcements(host);
    }

    /// Periodic housekeeping on the main thread.
    pub fn tick(&mut self, host: &dyn Host) {
        self.end_overdue(host);
        self.refresh_when_due();
        self.drop_stale();
        self.flush_store();
        self.send_announcements(host);
        self.export_metrics(host);
    }

    /// Hands the metrics' changes to the host: counters reset with their statistic first, then the
    /// levels of now, then what changed; every minute all of them again.
    fn export_metrics(&mut self, host: &dyn Host) {
        let shared = self.ctx.shared;
        host.check_statistics_resets();
        let mut updates = Vec::new();
        for statistic in crate::shared::STATISTICS {
            let Some(i) = statistic.counter else { continue };
            let generation = shared.resets.generation(i);
            if self.resets_seen[i] != generation {
                self.resets_seen[i] = generation;
                updates.extend(self.metrics.reset_statistic(statistic.name));
            }
        }
        let held = shared.held_now.load(Ordering::Relaxed).max(0);
        self.metrics.set(m::HELD_CALLS, &[], held as f64);
        if let Some(devices) = self.device_count() {
            self.metrics.set(m::DEVICES, &[], devices as f64);
        }
        for (app, provider, failing) in self.breaker_states() {
            let value = if failing { 1.0 } else { 0.0 };
            self.metrics.set(m::APP_FAILING, &[&app, provider], value);
            self.metrics.declare_app(&app, provider);
        }
        // Every minute each label set is touched first (counters by 0, gauges at their value);
        // what changed since the last tick follows, so nothing of it is lost.
        if now().saturating_duration_since(self.last_touch) >= TOUCH_EVERY {
            self.last_touch = now();
            updates.extend(self.metrics.touch_all());
        }
        updates.extend(self.metrics.take_updates());
        if !updates.is_empty() {
            host.export_metrics(&updates);
        }
    }

    /// Commits the device store's writes of the last tick in one transaction.
    pub fn flush_store(&self) {
        if let Some(store) = &self.store {
            if let Err(e) = store.flush() {
                error!("cannot write the device store: {e}");
            }
        }
    }

    /// The dispatcher stops: the last writes are committed; with PostgreSQL, the writer gets a
    /// moment to write what is queued (only if the database is reachable).
    pub fn close_store(&self) {
        self.flush_store();
        if let Some(pg) = &self.pg {
            pg.drain(Duration::from_secs(1));
        }
    }

    /// The PostgreSQL writer (re)connected and read every stored device: those this node did
    /// not know (or knew in an older version) are added to its memory and to the AOR index.
    pub fn store_loaded(&mut self, snapshot: Snapshot) {
        let Some(store) = &self.store else { return };
        match store.merge(&snapshot.devices, &snapshot.refresh, snapshot.last) {
            Ok(aors) => {
                for aor in &aors {
                    self.ctx.index.insert(aor);
                }
                self.flush_store();
                debug!(
                    "device store loaded: {} devices read, {} AOR(s) updated",
                    snapshot.devices.len(),
                    aors.len()
                );
            }
            Err(e) => error!("cannot add the stored devices: {e}"),
        }
    }

    /// How the device store is doing (push.stats).
    pub(super) fn store_status(&self) -> crate::ipc::message::StoreStatus {
        let url = self.ctx.config.db.to_string();
        match (&self.pg, &self.store) {
            (Some(pg), _) => {
                let st = pg.status();
                crate::ipc::message::StoreStatus {
                    url,
                    state: st.state.as_str().to_string(),
                    queued: st.queued,
                    dropped: st.dropped,
                    written: st.written,
                }
            }
            (None, store) => crate::ipc::message::StoreStatus {
                url,
                state: if store.is_some() { "open" } else { "not open" }.to_string(),
                queued: 0,
                dropped: 0,
                written: 0,
            },
        }
    }
}

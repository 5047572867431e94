//! The shared device store: `db_url` `postgres://user:password@host:port/database`. Every node of
//! a cluster reads and writes the same devices in one PostgreSQL database, so a node started after
//! a phone fell asleep still knows it.
//!
//! The dispatcher's main thread never waits on the database server. It keeps what the node knows
//! in memory (an in-memory SQLite store, [`super::store::Store::open_memory`], with the same
//! queries the file store has) and reads only that: when a call is held, for push.devices.
//! Each write it makes there is also handed, as a [`WriteOp`], to a bounded [`Outbox`]; a writer
//! task on the dispatcher's runtime ([`start`]) writes the queued operations to PostgreSQL in
//! batches (one transaction each), and keeps them queued while the database
//! cannot be reached, retrying with backoff. Nothing is lost when it comes back, unless more than
//! [`OUTBOX_CAPACITY`] writes were waiting: then the newest are dropped and the log says how many.
//!
//! Binding-refresh pushes are the one thing decided in the database: with `refresh_window` set,
//! the writer claims the due bindings every second ([`CLAIM_REFRESH`]), so that exactly one node
//! of the cluster pushes each, and hands this node's to the main thread ([`RefreshClaims`]).
//!
//! On each (re)connection the writer creates or migrates the schema ([`SCHEMA`], version kept in
//! `push_schema`), writes what is queued, then loads every stored device and hands them to the
//! main thread ([`Snapshot`]), which adds those it does not know to its memory and to the shared
//! AOR index. A node that starts while the database is down starts with an empty index and loads
//! when the database is back. One log line says the database became unreachable, one that it is
//! back; nothing in between.
//!
//! The password is a [`Secret`]: [`PgUrl`] shows it as `<redacted>` everywhere, and
//! [`redact_url`] takes it out of any text that quotes a URL.

use super::store::Device;
use crate::config::Secret;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writes waiting for the database at most; beyond that the newest are dropped (and counted).
pub const OUTBOX_CAPACITY: usize = 100_000;

/// Operations written in one transaction at most.
const BATCH: usize = 500;

/// How long the writer gathers writes before it sends them (the file store commits once per
/// 100 ms tick too).
const GATHER: Duration = Duration::from_millis(50);

/// The longest a connection attempt, a batch or the load may take before the database counts as
/// unreachable.
const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnection backoff: from the first to the last, doubling.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Schema version this code writes (table `push_schema`).
pub const SCHEMA_VERSION: i32 = 1;

/// The schema, created by the module when it connects (`IF NOT EXISTS`: every node runs it, under
/// an advisory lock so that nodes starting together do not collide). Tables carry a `push_`
/// prefix: the database may be the one Kamailio's own modules use.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS push_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS push_devices (
    aor        TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    prid       TEXT    NOT NULL,
    param      TEXT,
    app_id     TEXT,
    instance   TEXT,
    contact    TEXT    NOT NULL,
    user_agent TEXT,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (aor, device_id)
);
CREATE INDEX IF NOT EXISTS push_devices_aor_prid ON push_devices (aor, prid);
CREATE TABLE IF NOT EXISTS push_refresh (
    aor        TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    pushed_at  BIGINT,
    PRIMARY KEY (aor, device_id)
);
CREATE INDEX IF NOT EXISTS push_refresh_due ON push_refresh (expires_at) WHERE pushed_at IS NULL;
";

/// Key of the advisory lock the schema is created under (any constant; "push" in ASCII).
const SCHEMA_LOCK: i64 = 0x7075_7368;

/// An upsert keeps the newer record: a node replaying writes queued during an outage never
/// overwrites what another node wrote since.
const UPSERT: &str = "INSERT INTO push_devices (aor, device_id, provider, prid, param, app_id, \
     instance, contact, user_agent, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (aor, device_id) DO UPDATE SET provider = excluded.provider, \
     prid = excluded.prid, param = excluded.param, app_id = excluded.app_id, \
     instance = excluded.instance, contact = excluded.contact, \
     user_agent = excluded.user_agent, updated_at = excluded.updated_at \
     WHERE push_devices.updated_at <= excluded.updated_at";

/// The same phone's record from before it sent an instance (see `Store::upsert`).
const DELETE_TOKEN_RECORD: &str =
    "DELETE FROM push_devices WHERE aor = $1 AND device_id = $2 AND device_id <> $3";
const DELETE_ONE: &str = "DELETE FROM push_devices WHERE aor = $1 AND device_id = $2";
const DELETE_TOKEN: &str = "DELETE FROM push_devices WHERE aor = $1 AND prid = $2";
const DELETE_AOR: &str = "DELETE FROM push_devices WHERE aor = $1";
const PRUNE_REFRESH: &str = "DELETE FROM push_refresh r WHERE r.aor = $1 AND NOT EXISTS \
     (SELECT 1 FROM push_devices d WHERE d.aor = r.aor AND d.device_id = r.device_id)";
const SET_EXPIRY: &str = "INSERT INTO push_refresh (aor, device_id, expires_at, pushed_at) \
     VALUES ($1, $2, $3, NULL) ON CONFLICT (aor, device_id) DO UPDATE SET \
     expires_at = excluded.expires_at, pushed_at = NULL";
const CLEAR_EXPIRY: &str = "DELETE FROM push_refresh WHERE aor = $1 AND device_id = $2";
const MARK_PUSHED: &str =
    "UPDATE push_refresh SET pushed_at = $3 WHERE aor = $1 AND device_id = $2";
/// Claims the bindings due for a refresh push (expiring after $1 and by $2, at most $3, soonest
/// first) for this node, and returns them with their device. One statement, so atomic: a row is
/// claimed by setting `pushed_at`, which only a row still unclaimed (`pushed_at IS NULL`) can get;
/// rows another node is claiming at the same moment are locked and skipped, and once that node
/// commits they no longer match. Every node of a cluster runs it each second; each due binding is
/// returned to exactly one of them. A phone that registers again rewrites its row (new
/// `expires_at`, `pushed_at` cleared), which makes its new binding due once more.
pub const CLAIM_REFRESH: &str = "UPDATE push_refresh r SET pushed_at = $1 \
     FROM (SELECT aor, device_id FROM push_refresh x \
           WHERE x.pushed_at IS NULL AND x.expires_at > $1 AND x.expires_at <= $2 \
           AND EXISTS (SELECT 1 FROM push_devices e WHERE e.aor = x.aor AND e.device_id = x.device_id) \
           ORDER BY x.expires_at LIMIT $3 FOR UPDATE SKIP LOCKED) due, push_devices d \
     WHERE r.aor = due.aor AND r.device_id = due.device_id \
     AND d.aor = r.aor AND d.device_id = r.device_id \
     RETURNING d.aor, d.device_id, d.provider, d.prid, d.param, d.app_id, d.instance, d.contact, \
     d.user_agent, d.updated_at, r.expires_at";
/// Bindings claimed per query at most (the rest wait for the next second).
const CLAIM_BATCH: i64 = 1000;
/// How often the writer claims the bindings due.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
const LOAD_DEVICES: &str = "SELECT aor, device_id, provider, prid, param, app_id, instance, \
     contact, user_agent, updated_at FROM push_devices";
const LOAD_REFRESH: &str = "SELECT aor, device_id, expires_at, pushed_at FROM push_refresh";

/// `db_url` naming a PostgreSQL database. Its `Debug` and `Display` show the password as
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    pub user: String,
    pub password: Option<Secret>,
    pub host: String,
    pub port: u16,
    pub dbname: String,
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let password = if self.password.is_some() {
            ":<redacted>"
        } else {
            ""
        };
        write!(
            f,
            "postgres://{}{password}@{host}:{}/{}",
            self.user, self.port, self.dbname
        )
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

impl PgUrl {
    fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.user(&self.user)
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .application_name("kamailio-push")
            .connect_timeout(DB_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if let Some(pw) = &self.password {
            c.password(pw.expose());
        }
        c
    }
}

/// Whether `url` asks for PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_pg_url(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Parses `postgres://user[:password]@host[:port]/database` (also `postgresql://`; host a name,
/// an IPv4 address or `[IPv6]`; port 5432 by default; user, password and database
/// percent-decoded). No query string: the connection has no TLS (use a local or private network).
/// Errors quote the URL with its password redacted.
pub fn parse_pg_url(url: &str) -> Result<PgUrl, String> {
    let url = url.trim();
    let shown = redact_url(url);
    let bad = |why: &str| {
        Err(format!(
            "'{shown}' {why}: use postgres://user:password@host:port/database"
        ))
    };
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return bad("is not a postgres:// URL");
    };
    if rest.contains('?') || rest.contains('#') {
        return bad("has a query string or fragment, which is not supported (no TLS options)");
    }
    let Some((userinfo, hostpart)) = rest.rsplit_once('@') else {
        return bad("names no user");
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let user = match percent_decode(user) {
        Some(u) if !u.is_empty() => u,
        _ => return bad("names no user (or a badly escaped one)"),
    };
    let password = match password.map(percent_decode) {
        None => None,
        Some(Some(p)) => Some(Secret::new(p)),
        Some(None) => return bad("has a badly escaped password"),
    };
    let Some((hostport, dbname)) = hostpart.split_once('/') else {
        return bad("names no database");
    };
    let dbname = match percent_decode(dbname) {
        Some(d) if !d.is_empty() && !d.contains('/') => d,
        _ => return bad("names no database"),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return bad("has an unclosed [IPv6] host");
        };
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return bad("names no valid host");
    }
    let port = match port {
        None => 5432,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return bad("has an invalid port"),
        },
    };
    Ok(PgUrl {
        user,
        password,
        host,
        port,
        dbname,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.contains('\0')).then_some(s)
}

/// `text` with the password of every `scheme://user:password@` in it replaced by `<redacted>`
/// (for messages that quote a URL: a `db_url`, an app's webhook URL).
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = at + 3;
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        // The authority ends at the first '/', '?', '#', ';' or white space.
        let end = rest
            .find(|c: char| matches!(c, '/' | '?' | '#' | ';') || c.is_whitespace())
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":<redacted>@");
                    out.push_str(host);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One write the main thread made in its memory store, to be made in PostgreSQL too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or update (the newer record wins); with an instance, the same phone's
    /// `token:<prid>` record goes.
    Upsert(Device),
    Remove {
        aor: String,
        device_id: String,
    },
    RemoveToken {
        aor: String,
        prid: String,
    },
    RemoveAor {
        aor: String,
    },
    SetExpiry {
        aor: String,
        device_id: String,
        expires_at: Option<i64>,
    },
    MarkRefreshed {
        aor: String,
        device_id: String,
        at: i64,
    },
}

/// What [`Outbox::push`] did with a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The outbox is full: the write was dropped. `first`: the first one dropped since the
    /// outbox last had room (the one to log).
    Dropped {
        first: bool,
    },
}

/// The writes waiting for the database, oldest first, at most `capacity`. The writer reads a
/// batch from the front with [`Outbox::batch`] and removes it with [`Outbox::written`] only once
/// it is committed: a batch that failed stays at the front and is written again.
#[derive(Debug)]
pub struct Outbox {
    ops: VecDeque<WriteOp>,
    capacity: usize,
    /// Dropped since start.
    dropped: u64,
    /// Dropped since the last report (see [`Outbox::take_dropped`]).
    unreported: u64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            ops: VecDeque::new(),
            capacity,
            dropped: 0,
            unreported: 0,
        }
    }

    /// Queues a write, or drops it when the outbox is full; never waits.
    pub fn push(&mut self, op: WriteOp) -> Pushed {
        if self.ops.len() >= self.capacity {
            self.dropped += 1;
            self.unreported += 1;
            return Pushed::Dropped {
                first: self.unreported == 1,
            };
        }
        self.ops.push_back(op);
        Pushed::Queued
    }

    /// A copy of the oldest writes, at most `max`.
    pub fn batch(&self, max: usize) -> Vec<WriteOp> {
        self.ops.iter().take(max).cloned().collect()
    }

    /// The oldest `n` writes are in the database.
    pub fn written(&mut self, n: usize) {
        let n = n.min(self.ops.len());
        self.ops.drain(..n);
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many were dropped since the last call (for the "back" log line).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.unreported)
    }
}

/// Whether the database can be reached, as far as the writer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet since start.
    Connecting = 0,
    Up = 1,
    Down = 2,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Up,
            2 => LinkState::Down,
            _ => LinkState::Connecting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Up => "connected",
            LinkState::Down => "unreachable",
        }
    }
}

/// What the writer says in the log: exactly one line when the database becomes unreachable
/// (however many attempts fail after it) and one when it is back.
#[derive(Debug)]
pub struct Link {
    state: LinkState,
    /// This node sends binding-refresh pushes (they need the database: the lines say so).
    refresh: bool,
}

/// A line to log, with its level.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkLine {
    Error(String),
    Notice(String),
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

impl Link {
    pub fn new() -> Link {
        Link {
            state: LinkState::Connecting,
            refresh: false,
        }
    }

    /// The lines also say that binding-refresh pushes wait for the database.
    pub fn with_refresh_pushes(mut self) -> Link {
        self.refresh = true;
        self
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// An attempt failed (`why`, without secrets). A line only when this changes the state.
    pub fn failed(&mut self, url: &PgUrl, why: &str) -> Option<LinkLine> {
        let refresh = if self.refresh {
            "; no binding-refresh push is sent until it is back (a node sends one only once it \
             claimed it in the database)"
        } else {
            ""
        };
        let line = match self.state {
            LinkState::Down => return None,
            LinkState::Connecting => format!(
                "device store {url} is unreachable ({why}): this node starts with no stored \
                 devices (calls are held only for devices that register here) and loads them when \
                 the database is back; writes are queued (at most {OUTBOX_CAPACITY}) and retried"
            ),
            LinkState::Up => format!(
                "device store {url} is unreachable ({why}): calls are still held and pushed from \
                 the devices this node knows; writes are queued (at most {OUTBOX_CAPACITY}) and \
                 retried"
            ),
        };
        self.state = LinkState::Down;
        Some(LinkLine::Error(format!("{line}{refresh}")))
    }

    /// Connected, `written` queued writes written and `loaded` devices read; `dropped` writes
    /// were lost to a full queue since the last line.
    pub fn connected(
        &mut self,
        url: &PgUrl,
        written: usize,
        loaded: usize,
        dropped: u64,
    ) -> Option<LinkLine> {
        let lost = if dropped > 0 {
            format!("; {dropped} writes were dropped while the queue was full")
        } else {
            String::new()
        };
        let line = match self.state {
            LinkState::Up => return None,
            LinkState::Connecting => {
                format!("device store {url} connected: {loaded} devices loaded{lost}")
            }
            LinkState::Down => format!(
                "device store {url} is reachable again: {written} queued writes written, \
                 {loaded} devices loaded{lost}"
            ),
        };
        self.state = LinkState::Up;
        Some(LinkLine::Notice(line))
    }
}

/// Every device (and refresh record) the database holds, read when the writer (re)connects, in
/// parts of at most [`SNAPSHOT_PART`] devices, so that the main thread handles other work (calls)
/// between them; the refresh records come with the last part.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub devices: Vec<Device>,
    /// (aor, device_id, expires_at, pushed_at).
    pub refresh: Vec<(String, String, i64, Option<i64>)>,
    /// The last part of this load.
    pub last: bool,
}

/// Devices per [`Snapshot`] part.
pub const SNAPSHOT_PART: usize = 2000;

/// What the main thread and the writer share.
struct Shared {
    outbox: Mutex<Outbox>,
    wake: tokio::sync::Notify,
    state: AtomicU8,
    /// Writes in the database since start.
    written: AtomicU64,
}

/// The main thread's side of the PostgreSQL store.
#[derive(Clone)]
pub struct PgHandle {
    url: PgUrl,
    shared: Arc<Shared>,
}

/// How the store is doing, for push.stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgStatus {
    pub state: LinkState,
    pub queued: u64,
    pub dropped: u64,
    pub written: u64,
}

impl PgHandle {
    /// Queues a write for the database; never waits (the lock is held only for a queue
    /// operation). A full outbox drops it: logged once until the outbox has room again.
    pub fn send(&self, op: WriteOp) {
        let pushed = lock(&self.shared.outbox).push(op);
        match pushed {
            Pushed::Queued => self.shared.wake.notify_one(),
            Pushed::Dropped { first: true } => crate::error!(
                "device store {}: {OUTBOX_CAPACITY} writes are waiting for the database: \
                 further writes are dropped until it catches up (the devices stay known to this node)",
                self.url
            ),
            Pushed::Dropped { first: false } => {}
        }
    }

    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    pub fn status(&self) -> PgStatus {
        let outbox = lock(&self.shared.outbox);
        PgStatus {
            state: LinkState::from_u8(self.shared.state.load(Ordering::Relaxed)),
            queued: outbox.len() as u64,
            dropped: outbox.dropped(),
            written: self.shared.written.load(Ordering::Relaxed),
        }
    }

    /// When the dispatcher stops: waits up to `limit` for the queued writes to be written (only
    /// while the database is reachable).
    pub fn drain(&self, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        self.shared.wake.notify_one();
        while std::time::Instant::now() < until {
            let st = self.status();
            if st.queued == 0 || st.state != LinkState::Up {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = lock(&self.shared.outbox).len();
        if left > 0 {
            crate::warn!(
                "device store {}: {left} writes not written as the dispatcher stops",
                self.url
            );
        }
    }
}

fn lock(m: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Receives the bindings this node claimed for a refresh push: each device, with when its
/// binding expires (Unix seconds).
pub type OnClaim = Box<dyn Fn(Vec<(Device, i64)>) + Send + Sync>;

/// Binding-refresh pushes with a shared store: every [`CLAIM_EVERY`] the writer claims the
/// bindings that expire within `window` seconds ([`CLAIM_REFRESH`]) and hands those this node
/// won to `on_claim` (on a runtime thread): each device with when its binding expires. Only this
/// node pushes them.
pub struct RefreshClaims {
    pub window: u32,
    pub on_claim: OnClaim,
}

/// Starts the writer task on `runtime`; each time it (re)connects it hands `on_load` every
/// stored device (called on a runtime thread). With `refresh`, it also claims the bindings due
/// for a refresh push.
pub fn start(
    url: PgUrl,
    runtime: &tokio::runtime::Handle,
    on_load: impl Fn(Snapshot) + Send + Sync + 'static,
    refresh: Option<RefreshClaims>,
) -> PgHandle {
    let shared = Arc::new(Shared {
        outbox: Mutex::new(Outbox::new(OUTBOX_CAPACITY)),
        wake: tokio::sync::Notify::new(),
        state: AtomicU8::new(LinkState::Connecting as u8),
        written: AtomicU64::new(0),
    });
    let handle = PgHandle {
        url: url.clone(),
        shared: shared.clone(),
    };
    runtime.spawn(writer(url, shared, on_load, refresh));
    handle
}

/// A database error as it may be logged: bounded, escaped, any URL's password redacted.
fn describe(e: &dyn fmt::Display) -> String {
    let text = redact_url(&e.to_string());
    crate::ipc::limits::bounded_text(&text, 300)
}

async fn timed<T, E: fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(DB_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {}", describe(&e))),
        Err(_) => Err(format!(
            "{what}: no answer within {} s",
            DB_TIMEOUT.as_secs()
        )),
    }
}

/// Why a session with the database ended.
enum Ended {
    /// Connection lost, timeout, query failed: reconnect.
    Retry(String),
    /// The database's schema is newer than this module's: stop writing.
    Fatal(String),
}

async fn writer(
    url: PgUrl,
    shared: Arc<Shared>,
    on_load: impl Fn(Snapshot) + Send + Sync + 'static,
    refresh: Option<RefreshClaims>,
) {
    let mut link = Link::new();
    if refresh.is_some() {
        link = link.with_refresh_pushes();
    }
    let mut backoff = RETRY_FIRST;
    loop {
        match session(&url, &shared, &on_load, refresh.as_ref(), &mut link).await {
            Ended::Retry(why) => {
                shared.state.store(LinkState::Down as u8, Ordering::Relaxed);
                if let Some(line) = link.failed(&url, &why) {
                    log_line(line);
                }
            }
            Ended::Fatal(why) => {
                shared.state.store(LinkState::Down as u8, Ordering::Relaxed);
                crate::error!(
                    "device store {url}: {why}; devices are no longer written to the database"
                );
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
        if link.state() == LinkState::Up {
            backoff = RETRY_FIRST;
        }
    }
}

fn log_line(line: LinkLine) {
    match line {
        LinkLine::Error(l) => crate::error!("{l}"),
        LinkLine::Notice(l) => crate::notice!("{l}"),
    }
}

/// One connection: schema, queued writes, load, then writes as they come (and refresh claims
/// every second) until it fails.
async fn session(
    url: &PgUrl,
    shared: &Shared,
    on_load: &(impl Fn(Snapshot) + Send + Sync),
    refresh: Option<&RefreshClaims>,
    link: &mut Link,
) -> Ended {
    let (mut client, connection) = match timed(
        "cannot connect",
        url.pg_config().connect(tokio_postgres::NoTls),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Ended::Retry(e),
    };
    let conn_task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let ended = async {
        migrate(&mut client).await?;
        let written = write_queued(&mut client, shared).await?;
        let snapshot = timed("cannot load the devices", load(&client))
            .await
            .map_err(Ended::Retry)?;
        let loaded = snapshot.devices.len();
        let mut devices = snapshot.devices;
        while devices.len() > SNAPSHOT_PART {
            let rest = devices.split_off(SNAPSHOT_PART);
            on_load(Snapshot {
                devices,
                refresh: Vec::new(),
                last: false,
            });
            devices = rest;
        }
        on_load(Snapshot {
            devices,
            refresh: snapshot.refresh,
            last: true,
        });
        shared.state.store(LinkState::Up as u8, Ordering::Relaxed);
        let dropped = lock(&shared.outbox).take_dropped();
        if let Some(line) = link.connected(url, written, loaded, dropped) {
            log_line(line);
        }
        let mut last_claim: Option<tokio::time::Instant> = None;
        loop {
            let wait = match (refresh, last_claim) {
                (Some(_), Some(at)) => CLAIM_EVERY.saturating_sub(at.elapsed()),
                (Some(_), None) => Duration::ZERO,
                (None, _) => Duration::from_secs(1),
            };
            let _ = tokio::time::timeout(wait, shared.wake.notified()).await;
            if client.is_closed() {
                return Err(Ended::Retry("the connection was closed".into()));
            }
            tokio::time::sleep(GATHER).await;
            // This node's own writes first: a binding it just stored is claimable at once.
            write_queued(&mut client, shared).await?;
            if let Some(refresh) = refresh {
                if last_claim.is_none_or(|at| at.elapsed() >= CLAIM_EVERY) {
                    last_claim = Some(tokio::time::Instant::now());
                    let claimed = timed(
                        "cannot claim refresh pushes",
                        claim(&client, refresh.window),
                    )
                    .await
                    .map_err(Ended::Retry)?;
                    if !claimed.is_empty() {
                        (refresh.on_claim)(claimed);
                    }
                }
            }
            let dropped = lock(&shared.outbox).take_dropped();
            if dropped > 0 {
                crate::warn!(
                    "device store {url}: {dropped} writes were dropped while the queue was full"
                );
            }
        }
    }
    .await;
    conn_task.abort();
    match ended {
        Ok(()) => Ended::Retry("the session ended".into()),
        Err(e) => e,
    }
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), Ended> {
    let run = async {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        let version: Option<i32> = tx
            .query_opt("SELECT max(version) FROM push_schema", &[])
            .await?
            .and_then(|row| row.get(0));
        match version {
            None => {
                tx.execute(
                    "INSERT INTO push_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Ok(Err(format!(
                    "the database has schema version {v}, this module supports versions up to \
                     {SCHEMA_VERSION} (written by a newer module version?)"
                )));
            }
            // Later versions migrate here: Some(1) => { ...; UPDATE push_schema SET version = 2 }.
            Some(_) => {}
        }
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(Ok(()))
    };
    match timed("cannot create the schema", run).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(fatal)) => Err(Ended::Fatal(fatal)),
        Err(e) => Err(Ended::Retry(e)),
    }
}

/// Writes everything queued, a batch per transaction. Returns how many.
async fn write_queued(
    client: &mut tokio_postgres::Client,
    shared: &Shared,
) -> Result<usize, Ended> {
    let mut total = 0;
    loop {
        let batch = lock(&shared.outbox).batch(BATCH);
        if batch.is_empty() {
            return Ok(total);
        }
        timed("cannot write devices", write_batch(client, &batch))
            .await
            .map_err(Ended::Retry)?;
        lock(&shared.outbox).written(batch.len());
        shared
            .written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        total += batch.len();
    }
}

async fn write_batch(
    client: &mut tokio_postgres::Client,
    batch: &[WriteOp],
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    for op in batch {
        match op {
            WriteOp::Upsert(d) => {
                tx.execute(
                    UPSERT,
                    &[
                        &d.aor,
                        &d.device_id,
                        &d.provider,
                        &d.prid,
                        &d.param,
                        &d.app_id,
                        &d.instance,
                        &d.contact,
                        &d.user_agent,
                        &d.updated_at,
                    ],
                )
                .await?;
                if d.instance.is_some() {
                    let token_id = format!("token:{}", d.prid);
                    tx.execute(DELETE_TOKEN_RECORD, &[&d.aor, &token_id, &d.device_id])
                        .await?;
                }
            }
            WriteOp::Remove { aor, device_id } => {
                tx.execute(DELETE_ONE, &[aor, device_id]).await?;
                tx.execute(PRUNE_REFRESH, &[aor]).await?;
            }
            WriteOp::RemoveToken { aor, prid } => {
                tx.execute(DELETE_TOKEN, &[aor, prid]).await?;
                tx.execute(PRUNE_REFRESH, &[aor]).await?;
            }
            WriteOp::RemoveAor { aor } => {
                tx.execute(DELETE_AOR, &[aor]).await?;
                tx.execute(PRUNE_REFRESH, &[aor]).await?;
            }
            WriteOp::SetExpiry {
                aor,
                device_id,
                expires_at,
            } => {
                match expires_at {
                    Some(at) => tx.execute(SET_EXPIRY, &[aor, device_id, at]).await?,
                    None => tx.execute(CLEAR_EXPIRY, &[aor, device_id]).await?,
                };
            }
            WriteOp::MarkRefreshed { aor, device_id, at } => {
                tx.execute(MARK_PUSHED, &[aor, device_id, at]).await?;
            }
        }
    }
    tx.commit().await
}

/// Claims the bindings due for a refresh push ([`CLAIM_REFRESH`]): those this node won.
async fn claim(
    client: &tokio_postgres::Client,
    window: u32,
) -> Result<Vec<(Device, i64)>, tokio_postgres::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let until = now + i64::from(window);
    Ok(client
        .query(CLAIM_REFRESH, &[&now, &until, &CLAIM_BATCH])
        .await?
        .iter()
        .map(|r| (device_of(r), r.get(10)))
        .collect())
}

fn device_of(r: &tokio_postgres::Row) -> Device {
    Device {
        aor: r.get(0),
        device_id: r.get(1),
        provider: r.get(2),
        prid: r.get(3),
        param: r.get(4),
        app_id: r.get(5),
        instance: r.get(6),
        contact: r.get(7),
        user_agent: r.get(8),
        updated_at: r.get(9),
    }
}

async fn load(client: &tokio_postgres::Client) -> Result<Snapshot, tokio_postgres::Error> {
    let devices = client
        .query(LOAD_DEVICES, &[])
        .await?
        .iter()
        .map(device_of)
        .collect();
    let refresh = client
        .query(LOAD_REFRESH, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    Ok(Snapshot {
        devices,
        refresh,
        last: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "s3cr3t-Pässword";

    #[test]
    fn parses_the_documented_form() {
        let u = parse_pg_url("postgres://kamailio:s3cr3t@db.example.com:6432/push").unwrap();
        assert_eq!(u.user, "kamailio");
        assert_eq!(u.password.as_ref().unwrap().expose(), "s3cr3t");
        assert_eq!((u.host.as_str(), u.port), ("db.example.com", 6432));
        assert_eq!(u.dbname, "push");
        // postgresql://, default port, no password, IPv6, percent-escapes, spaces around.
        let u = parse_pg_url(" postgresql://kam@127.0.0.1/push \n").unwrap();
        assert_eq!((u.port, u.password.is_none()), (5432, true));
        let u = parse_pg_url("postgres://k%40m:p%3Aw%2F%40x@[::1]:5433/d%2Db").unwrap();
        assert_eq!(u.user, "k@m");
        assert_eq!(u.password.as_ref().unwrap().expose(), "p:w/@x");
        assert_eq!(
            (u.host.as_str(), u.port, u.dbname.as_str()),
            ("::1", 5433, "d-b")
        );
        // A password with '@' unescaped: the last '@' ends the user info.
        let u = parse_pg_url("postgres://u:a@b@h/db").unwrap();
        assert_eq!(u.password.unwrap().expose(), "a@b");
        assert!(is_pg_url("postgres://x") && is_pg_url(" postgresql://x"));
        assert!(!is_pg_url("sqlite:///x"));
    }

    #[test]
    fn refuses_bad_urls_without_showing_the_password() {
        for url in [
            format!("postgres://u:{PW}@h:0/db"),
            format!("postgres://u:{PW}@h:99999/db"),
            format!("postgres://u:{PW}@h:port/db"),
            format!("postgres://u:{PW}@h"),
            format!("postgres://u:{PW}@h/"),
            format!("postgres://:{PW}@h/db"),
            format!("postgres://u:{PW}@/db"),
            format!("postgres://u:{PW}@h/db?sslmode=require"),
            format!("postgres://u:{PW}@[::1/db"),
            format!("postgres://u:{PW}@h o/db"),
            "postgres://h/db".to_string(),
            "postgres://u:%zz@h/db".to_string(),
            "mysql://u:pw@h/db".to_string(),
        ] {
            let e = parse_pg_url(&url).expect_err(&url);
            assert!(!e.contains(PW), "{e}");
            assert!(
                e.contains("postgres://user:password@host:port/database"),
                "{e}"
            );
        }
    }

    #[test]
    fn display_and_debug_redact_the_password() {
        let u = parse_pg_url(&format!("postgres://kam:{PW}@10.0.0.5:5432/push")).unwrap();
        assert_eq!(
            u.to_string(),
            "postgres://kam:<redacted>@10.0.0.5:5432/push"
        );
        assert!(!format!("{u:?}").contains(PW));
        let u = parse_pg_url("postgres://kam@[::1]/push").unwrap();
        assert_eq!(u.to_string(), "postgres://kam@[::1]:5432/push");
    }

    #[test]
    fn redact_url_takes_passwords_out_of_any_text() {
        assert_eq!(
            redact_url("cannot use postgres://kam:pw@h:1/db now"),
            "cannot use postgres://kam:<redacted>@h:1/db now"
        );
        assert_eq!(
            redact_url("id=a;url=https://user:pass@hook.example/x;secret=s"),
            "id=a;url=https://user:<redacted>@hook.example/x;secret=s"
        );
        assert_eq!(
            redact_url("a postgres://u:p@h/d and http://x:y@z"),
            "a postgres://u:<redacted>@h/d and http://x:<redacted>@z"
        );
        for plain in [
            "sqlite:///var/lib/x",
            "https://h/p?a=b",
            "no url",
            "postgres://u@h/d",
        ] {
            assert_eq!(redact_url(plain), plain);
        }
    }

    /// The claim against a real PostgreSQL (the test's own server): three connections (three
    /// nodes) claim 300 due bindings at the same time, over and over; each binding is returned to
    /// exactly one of them, once. Bindings not due, expired, already pushed, or whose device is
    /// gone are never returned; a binding written again (the phone registered again) is due again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn each_due_binding_is_claimed_by_exactly_one_node() {
        if testkit::postgres::bin_dir().is_none() {
            eprintln!("SKIPPED: PostgreSQL is not installed");
            return;
        }
        let pg = testkit::postgres::Postgres::start("claim-race");
        let url = parse_pg_url(&pg.url()).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let (client, connection) = url
                .pg_config()
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            nodes.push(client);
        }
        migrate(&mut nodes[0]).await.map_err(|_| "migrate").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let window = 60;
        let device = |i: usize| Device {
            aor: format!("user{i}"),
            device_id: format!("token:t{i}"),
            provider: "fcm".into(),
            prid: format!("t{i}"),
            param: None,
            app_id: None,
            instance: None,
            contact: "sip:u@192.0.2.1".into(),
            user_agent: None,
            updated_at: now,
        };
        const DUE: usize = 300;
        let mut ops: Vec<WriteOp> = Vec::new();
        for i in 0..DUE + 4 {
            ops.push(WriteOp::Upsert(device(i)));
            let expires_at = match i {
                // Due: expires within the window.
                i if i < DUE => now + 5 + (i as i64 % 50),
                // Not due yet, expired, pushed already, device gone.
                n if n == DUE => now + window as i64 + 100,
                n if n == DUE + 1 => now - 1,
                _ => now + 10,
            };
            ops.push(WriteOp::SetExpiry {
                aor: format!("user{i}"),
                device_id: format!("token:t{i}"),
                expires_at: Some(expires_at),
            });
        }
        ops.push(WriteOp::MarkRefreshed {
            aor: format!("user{}", DUE + 2),
            device_id: format!("token:t{}", DUE + 2),
            at: now,
        });
        write_batch(&mut nodes[1], &ops).await.unwrap();
        // The device of the last one goes, its refresh row stays (written by hand).
        nodes[1]
            .execute(
                DELETE_ONE,
                &[&format!("user{}", DUE + 3), &format!("token:t{}", DUE + 3)],
            )
            .await
            .unwrap();
        nodes[1]
            .execute(
                "INSERT INTO push_refresh VALUES ($1, $2, $3, NULL) ON CONFLICT DO NOTHING",
                &[
                    &format!("user{}", DUE + 3),
                    &format!("token:t{}", DUE + 3),
                    &(now + 10),
                ],
            )
            .await
            .unwrap();

        // Three nodes claim at once, each several times (small batches, so that they overlap).
        let nodes: Vec<Arc<tokio_postgres::Client>> = nodes.into_iter().map(Arc::new).collect();
        let mut tasks = Vec::new();
        for client in &nodes {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut won = Vec::new();
                for _ in 0..40 {
                    let rows = client
                        .query(CLAIM_REFRESH, &[&now, &(now + window as i64), &25i64])
                        .await
                        .unwrap();
                    won.extend(rows.iter().map(|r| (device_of(r), r.get::<_, i64>(10))));
                }
                won
            }));
        }
        let mut all = Vec::new();
        let mut per_node = Vec::new();
        for task in tasks {
            let won = task.await.unwrap();
            per_node.push(won.len());
            all.extend(won);
        }
        eprintln!("claims per node: {per_node:?}");
        let mut ids: Vec<String> = all.iter().map(|(d, _)| d.device_id.clone()).collect();
        ids.sort();
        let unique: std::collections::BTreeSet<_> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), DUE, "claims: {per_node:?}");
        assert_eq!(unique.len(), DUE, "a binding was claimed twice");
        assert!((0..DUE).all(|i| unique.contains(&format!("token:t{i}"))));
        // The claim returns the stored device and its expiry.
        let (d, at) = all.iter().find(|(d, _)| d.aor == "user7").unwrap();
        assert_eq!((d, *at), (&device(7), now + 12));
        // Nothing more to claim.
        let again = nodes[0]
            .query(CLAIM_REFRESH, &[&now, &(now + window as i64), &1000i64])
            .await
            .unwrap();
        assert!(again.is_empty());
        // The phone registers again: its new binding is due again, once.
        nodes[2]
            .execute(SET_EXPIRY, &[&"user7", &"token:t7", &(now + 30)])
            .await
            .unwrap();
        let rows = nodes[0]
            .query(CLAIM_REFRESH, &[&now, &(now + window as i64), &1000i64])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i64>(10), now + 30);
        let rows = nodes[1]
            .query(CLAIM_REFRESH, &[&now, &(now + window as i64), &1000i64])
            .await
            .unwrap();
        assert!(rows.is_empty());
    }

    fn op(i: usize) -> WriteOp {
        WriteOp::RemoveAor {
            aor: format!("a{i}"),
        }
    }

    #[test]
    fn outbox_keeps_a_failed_batch_at_the_front() {
        let mut o = Outbox::new(10);
        for i in 0..5 {
            assert_eq!(o.push(op(i)), Pushed::Queued);
        }
        let batch = o.batch(3);
        assert_eq!(batch, vec![op(0), op(1), op(2)]);
        // The batch failed: nothing removed, the same batch comes again, later writes behind it.
        assert_eq!(o.push(op(5)), Pushed::Queued);
        assert_eq!(o.batch(3), batch);
        // Committed: removed; the rest in order.
        o.written(3);
        assert_eq!(o.batch(10), vec![op(3), op(4), op(5)]);
        o.written(99);
        assert!(o.is_empty());
        assert!(o.batch(3).is_empty());
    }

    #[test]
    fn outbox_is_bounded_and_counts_what_it_drops() {
        let mut o = Outbox::new(3);
        for i in 0..3 {
            assert_eq!(o.push(op(i)), Pushed::Queued);
        }
        assert_eq!(o.push(op(3)), Pushed::Dropped { first: true });
        assert_eq!(o.push(op(4)), Pushed::Dropped { first: false });
        assert_eq!(o.len(), 3);
        // The oldest are kept, in order.
        assert_eq!(o.batch(10), vec![op(0), op(1), op(2)]);
        assert_eq!((o.dropped(), o.take_dropped(), o.take_dropped()), (2, 2, 0));
        // Room again: queued; a later overflow is a new "first".
        o.written(1);
        assert_eq!(o.push(op(5)), Pushed::Queued);
        assert_eq!(o.push(op(6)), Pushed::Dropped { first: true });
        assert_eq!(o.dropped(), 3);
    }

    #[test]
    fn one_line_when_the_database_goes_and_one_when_it_is_back() {
        let url = parse_pg_url(&format!("postgres://kam:{PW}@h/db")).unwrap();
        let mut link = Link::new();
        assert_eq!(link.state(), LinkState::Connecting);
        // Down at start: one line saying the node starts empty and loads later.
        let Some(LinkLine::Error(first)) = link.failed(&url, "connection refused") else {
            panic!("a line")
        };
        assert!(
            first.contains("no stored devices") && first.contains("loads them"),
            "{first}"
        );
        // However many attempts fail after it: no more lines.
        for _ in 0..100 {
            assert_eq!(link.failed(&url, "connection refused"), None);
        }
        let Some(LinkLine::Notice(back)) = link.connected(&url, 7, 3, 0) else {
            panic!("a line")
        };
        assert!(
            back.contains("reachable again") && back.contains("7 queued writes"),
            "{back}"
        );
        assert_eq!(link.connected(&url, 0, 3, 0), None);
        // Lost while up: one line, then back with the dropped count.
        let Some(LinkLine::Error(lost)) = link.failed(&url, "timeout") else {
            panic!("a line")
        };
        assert!(lost.contains("still held and pushed"), "{lost}");
        assert_eq!(link.failed(&url, "timeout"), None);
        let Some(LinkLine::Notice(back)) = link.connected(&url, 0, 0, 12) else {
            panic!("a line")
        };
        assert!(back.contains("12 writes were dropped"), "{back}");
        for line in [first, lost, back] {
            assert!(!line.contains(PW), "{line}");
            assert!(
                line.contains("postgres://kam:<redacted>@h:5432/db"),
                "{line}"
            );
        }
        // Connected at once at start: one line.
        let mut link = Link::new();
        let Some(LinkLine::Notice(up)) = link.connected(&url, 0, 5, 0) else {
            panic!("a line")
        };
        assert!(up.contains("connected: 5 devices loaded"), "{up}");
        // A node that sends refresh pushes says, in the same one line, that they wait.
        let mut link = Link::new().with_refresh_pushes();
        let Some(LinkLine::Error(down)) = link.failed(&url, "connection refused") else {
            panic!("a line")
        };
        assert!(down.contains("no binding-refresh push is sent"), "{down}");
        assert_eq!(link.failed(&url, "connection refused"), None);
        let Some(LinkLine::Error(plain)) = Link::new().failed(&url, "x") else {
            panic!("a line")
        };
        assert!(!plain.contains("refresh"), "{plain}");
    }
}

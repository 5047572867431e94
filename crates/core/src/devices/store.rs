//! The persistent device store: which push-capable devices each SIP AOR has, kept in an SQLite file
//! so that a phone whose app sleeps (and whose SIP binding therefore expired) can still be woken,
//! also after a Kamailio restart.
//!
//! While Kamailio runs, one process uses it: the push dispatcher, whose main thread opens it with
//! [`Store::open`] and is its only writer (and reader). Before the fork, mod_init (in Kamailio's
//! main process) opens it the same way, which creates or migrates the schema and stops Kamailio
//! on a bad `db_url`, reads every AOR with devices ([`Store::aors`]) into the shared AOR index
//! ([`super::index`]) and closes it again: a connection must never be carried across `fork`.
//! SIP workers never open the file; `push_suspend` asks that index.
//!
//! [`Store::open_reader`] opens a read-only connection that works beside the writer, also from
//! another process; no process of the module opens one today (the tests do).
//!
//! The database is in WAL journal mode (a reader sees the last committed state while the writer
//! appends to the `-wal` file), with `synchronous=NORMAL` (no fsync on each commit; a power loss
//! can forget the last few commits but never corrupts the file). A read-only connection gets a
//! 20 ms busy timeout (in WAL mode it is blocked only in rare moments, such as WAL recovery after
//! a crash); the writer gets 2 s.
//!
//! With a PostgreSQL `db_url` ([`super::postgres`]) the dispatcher uses [`Store::open_memory`]
//! instead: the same schema and queries in memory, every write also handed to the PostgreSQL
//! writer ([`Store::mirror_to`]), the database's devices added with [`Store::merge`].
//!
//! The schema version is kept in `PRAGMA user_version`; [`Store::open`] creates or migrates the
//! schema, and both kinds of opening refuse a file written by a newer version of the module.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::postgres::WriteOp;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
};

/// The `db_url` module parameter's default.
pub const DEFAULT_DB_URL: &str = "sqlite:///var/lib/kamailio/push.sqlite";

/// The URL scheme `db_url` must use.
const SCHEME: &str = "sqlite://";

/// Seconds within which an unchanged device's `updated_at` is not rewritten.
pub const UPDATED_AT_RESOLUTION: i64 = 60;

/// Schema version this code writes and reads (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// How long a read-only connection ([`Store::open_reader`]) waits for a lock before giving up.
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(20);

/// How long the writer (dispatcher) waits for a lock before giving up.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Version 1 of the schema. The primary key (aor, device_id) also serves "does this AOR have
/// devices?"; the second index serves removal by token.
const SCHEMA_V1: &str = "
CREATE TABLE devices (
    aor        TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    prid       TEXT    NOT NULL,
    param      TEXT,
    app_id     TEXT,
    instance   TEXT,
    contact    TEXT    NOT NULL,
    user_agent TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (aor, device_id)
) WITHOUT ROWID;
CREATE INDEX devices_aor_prid ON devices (aor, prid);
";

/// Version 2: when each device's binding expires and whether its binding-refresh push went out
/// (RFC 8599). A row is rewritten, with `pushed_at` cleared, whenever the device registers again.
const SCHEMA_V2: &str = "
CREATE TABLE refresh (
    aor        TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    pushed_at  INTEGER,
    PRIMARY KEY (aor, device_id)
) WITHOUT ROWID;
CREATE INDEX refresh_due ON refresh (expires_at) WHERE pushed_at IS NULL;
";

const SET_EXPIRY: &str = "INSERT INTO refresh (aor, device_id, expires_at, pushed_at) \
     VALUES (?1, ?2, ?3, NULL) ON CONFLICT (aor, device_id) DO UPDATE SET \
     expires_at = excluded.expires_at, pushed_at = NULL";

const CLEAR_EXPIRY: &str = "DELETE FROM refresh WHERE aor = ?1 AND device_id = ?2";

const DUE_REFRESH: &str =
    "SELECT d.aor, d.device_id, d.provider, d.prid, d.param, d.app_id, d.instance, d.contact, \
     d.user_agent, d.updated_at, r.expires_at FROM refresh r JOIN devices d \
     ON d.aor = r.aor AND d.device_id = r.device_id \
     WHERE r.pushed_at IS NULL AND r.expires_at > ?1 AND r.expires_at <= ?2 \
     ORDER BY r.expires_at LIMIT ?3";

/// Drops the refresh rows of an AOR's devices that are gone.
const PRUNE_REFRESH: &str = "DELETE FROM refresh WHERE aor = ?1 AND NOT EXISTS \
     (SELECT 1 FROM devices d WHERE d.aor = refresh.aor AND d.device_id = refresh.device_id)";

const MARK_PUSHED: &str = "UPDATE refresh SET pushed_at = ?3 WHERE aor = ?1 AND device_id = ?2";

const SELECT_ONE: &str =
    "SELECT aor, device_id, provider, prid, param, app_id, instance, contact, \
     user_agent, updated_at FROM devices WHERE aor = ?1 AND device_id = ?2";

const SELECT_AOR: &str =
    "SELECT aor, device_id, provider, prid, param, app_id, instance, contact, \
     user_agent, updated_at FROM devices WHERE aor = ?1 ORDER BY updated_at DESC, device_id ASC";

const UPSERT: &str =
    "INSERT INTO devices (aor, device_id, provider, prid, param, app_id, instance, \
     contact, user_agent, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (aor, device_id) DO UPDATE SET provider = excluded.provider, \
     prid = excluded.prid, param = excluded.param, app_id = excluded.app_id, \
     instance = excluded.instance, contact = excluded.contact, \
     user_agent = excluded.user_agent, updated_at = excluded.updated_at";

const DELETE_ONE: &str = "DELETE FROM devices WHERE aor = ?1 AND device_id = ?2";

const DELETE_TOKEN: &str = "DELETE FROM devices WHERE aor = ?1 AND prid = ?2";

const DELETE_AOR: &str = "DELETE FROM devices WHERE aor = ?1";

const HAS_DEVICES: &str = "SELECT EXISTS (SELECT 1 FROM devices WHERE aor = ?1)";

const COUNT: &str = "SELECT COUNT(*) FROM devices";

const SELECT_PAGE: &str =
    "SELECT aor, device_id, provider, prid, param, app_id, instance, contact, \
     user_agent, updated_at FROM devices ORDER BY aor, device_id LIMIT ?1 OFFSET ?2";

/// One remembered device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    pub aor: String,
    /// Stable identity within the AOR: "+sip.instance" value if the device sent one, else "token:<prid>".
    pub device_id: String,
    /// "apns", "apns.dev", "fcm", "webhook", ...
    pub provider: String,
    /// Push token.
    pub prid: String,
    /// pn-param / app-id.
    pub param: Option<String>,
    /// The configured app this device is pushed through, if resolved.
    pub app_id: Option<String>,
    pub instance: Option<String>,
    /// Contact URI last registered.
    pub contact: String,
    pub user_agent: Option<String>,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Device {
    /// Whether both describe the same device the same way, ignoring `updated_at`.
    fn same_apart_from_time(&self, other: &Device) -> bool {
        self.aor == other.aor
            && self.device_id == other.device_id
            && self.provider == other.provider
            && self.prid == other.prid
            && self.param == other.param
            && self.app_id == other.app_id
            && self.instance == other.instance
            && self.contact == other.contact
            && self.user_agent == other.user_agent
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
        Ok(Device {
            aor: row.get(0)?,
            device_id: row.get(1)?,
            provider: row.get(2)?,
            prid: row.get(3)?,
            param: row.get(4)?,
            app_id: row.get(5)?,
            instance: row.get(6)?,
            contact: row.get(7)?,
            user_agent: row.get(8)?,
            updated_at: row.get(9)?,
        })
    }
}

/// What went wrong with the device store.
#[derive(Debug)]
pub enum StoreError {
    /// The `db_url` parameter is not usable; the message says why and quotes it.
    Url(String),
    /// [`Store::open_reader`]: the database file does not exist yet, or exists but the dispatcher
    /// has not created the schema in it yet. Try again later.
    Missing(PathBuf),
    /// A file-system operation other than SQLite's own failed (creating the parent directory,
    /// checking whether the file exists).
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// SQLite could not open the file or set it up (not writable, not a database, corrupt, ...).
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },
    /// The file was written by a newer version of the module (or its version is not one we know).
    Schema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The file could not be put in WAL journal mode (e.g. a network file system).
    NotWal { path: PathBuf, mode: String },
    /// A query on an open store failed.
    Sql(rusqlite::Error),
}

/// What an operator does when the module may not write its store: the user it runs as (Debian's
/// kamailio.service runs Kamailio as `kamailio`) and the two ways out.
fn permission_hint(dir: &Path) -> String {
    let (uid, name) = process_user();
    format!(
        " (Kamailio runs as user {name}, uid {uid}: make {dir} writable by that user, e.g. \
         `install -d -o {name} -g {name} -m 0750 {dir}` (the kamailio-push package does this for \
         /var/lib/kamailio), or set db_url to a file that user may write)",
        dir = dir.display()
    )
}

/// The effective user of this process, without libc: the owner of /proc/self, named through
/// /etc/passwd (the uid alone where the name is not found).
fn process_user() -> (u32, String) {
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    let name = fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse() == Ok(uid)).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"));
    (uid, name)
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Url(msg) => write!(f, "invalid db_url: {msg}"),
            StoreError::Missing(path) => write!(
                f,
                "push device database {} does not exist yet or is not initialised \
                 (the push dispatcher process creates it)",
                path.display()
            ),
            StoreError::Io {
                path,
                action,
                error,
            } => {
                write!(f, "cannot {action} {}: {error}", path.display())?;
                if error.kind() == std::io::ErrorKind::PermissionDenied {
                    let dir = if action.starts_with("create the directory") {
                        path.as_path()
                    } else {
                        path.parent().unwrap_or(path)
                    };
                    write!(f, "{}", permission_hint(dir))?;
                }
                Ok(())
            }
            StoreError::Open { path, error } => {
                write!(
                    f,
                    "cannot open push device database {}: {error}",
                    path.display()
                )?;
                if matches!(
                    error,
                    rusqlite::Error::SqliteFailure(e, _)
                        if matches!(e.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied)
                ) {
                    write!(f, "{}", permission_hint(path.parent().unwrap_or(path)))?;
                }
                Ok(())
            }
            StoreError::Schema {
                path,
                found,
                supported,
            } => write!(
                f,
                "push device database {} has schema version {found}, this module supports \
                 versions up to {supported}; it was probably written by a newer module version \
                 (use that version, or another db_url)",
                path.display()
            ),
            StoreError::NotWal { path, mode } => write!(
                f,
                "push device database {} cannot use WAL journal mode (SQLite kept '{mode}'); \
                 put it on a local file system",
                path.display()
            ),
            StoreError::Sql(error) => write!(f, "push device database query failed: {error}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Open { error, .. } => Some(error),
            StoreError::Sql(error) => Some(error),
            StoreError::Url(_)
            | StoreError::Missing(_)
            | StoreError::Schema { .. }
            | StoreError::NotWal { .. } => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sql(error)
    }
}

/// Where the devices are kept: `db_url` parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite:///absolute/path`: a file only this node uses (the embedded default).
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/database`: shared by every node (see
    /// [`super::postgres`]).
    Postgres(super::postgres::PgUrl),
}

impl fmt::Display for DbUrl {
    /// The URL as it may be shown: a PostgreSQL password as `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbUrl::Sqlite(path) => write!(f, "{SCHEME}{}", path.display()),
            DbUrl::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl DbUrl {
    /// The SQLite file, if the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DbUrl::Sqlite(path) => Some(path),
            DbUrl::Postgres(_) => None,
        }
    }
}

/// Parses the `db_url` module parameter: `postgres://user:password@host:port/database` (see
/// [`super::postgres::parse_pg_url`]) or `sqlite:///absolute/path` (three slashes: the scheme's
/// two and the path's own). Relative paths are refused: Kamailio's working directory is not
/// predictable. Surrounding white space is ignored; the path is taken literally (no
/// percent-decoding, no query string). Errors never show a password.
pub fn parse_db_url(url: &str) -> Result<DbUrl, StoreError> {
    let url = url.trim();
    if super::postgres::is_pg_url(url) {
        return super::postgres::parse_pg_url(url)
            .map(DbUrl::Postgres)
            .map_err(StoreError::Url);
    }
    let url = super::postgres::redact_url(url);
    let url = url.as_str();
    let Some(rest) = url.strip_prefix(SCHEME) else {
        return Err(StoreError::Url(format!(
            "'{url}' is not supported: use {SCHEME}/absolute/path/push.sqlite (a file for \
             this node) or postgres://user:password@host:port/database (shared by every node)"
        )));
    };
    if rest.is_empty() {
        return Err(StoreError::Url(format!(
            "'{url}' names no file: use {SCHEME}/absolute/path/push.sqlite"
        )));
    }
    if !rest.starts_with('/') {
        return Err(StoreError::Url(format!(
            "'{url}' names the relative path '{rest}'; the path must be absolute because \
             Kamailio's working directory is unpredictable: use {SCHEME}/{rest} if /{rest} is meant \
             (three slashes)"
        )));
    }
    if rest.ends_with('/') {
        return Err(StoreError::Url(format!(
            "'{url}' names a directory, not a database file"
        )));
    }
    if rest.contains('\0') {
        return Err(StoreError::Url(format!("'{url}' contains a NUL byte")));
    }
    let path = PathBuf::from(rest);
    match path.file_name() {
        Some(_) => Ok(DbUrl::Sqlite(path)),
        None => Err(StoreError::Url(format!(
            "'{url}' does not end in a file name"
        ))),
    }
}

/// Outcome of [`Store::upsert`].
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Upsert {
    /// The device was not known.
    New,
    /// The device was known with different details (e.g. a new token), or it replaced the
    /// `token:<prid>` record of the same phone.
    Replaced,
    /// Known with the same details; only `updated_at` was refreshed.
    Unchanged,
}

/// Writes one device row (inserted, or replacing the row of the same AOR and device id).
fn upsert_row(conn: &Connection, d: &Device) -> rusqlite::Result<usize> {
    conn.prepare_cached(UPSERT)?.execute(params![
        d.aor,
        d.device_id,
        d.provider,
        d.prid,
        d.param,
        d.app_id,
        d.instance,
        d.contact,
        d.user_agent,
        d.updated_at,
    ])
}

/// A connection to the device database: the writer's ([`Store::open`]) or a reader's
/// ([`Store::open_reader`]). Not to be shared across `fork`.
pub struct Store {
    conn: Connection,
    /// Writes go into one open transaction that [`Store::flush`] commits (the dispatcher flushes
    /// once per tick, and on drop): see [`Store::batch_writes`].
    batched: bool,
    /// Where each write is handed on (the PostgreSQL writer's outbox), if anywhere: see
    /// [`Store::mirror_to`].
    mirror: Option<Box<dyn Fn(WriteOp) + Send>>,
    /// AORs that lost devices since the last [`Store::merge`], and when (Unix seconds): a
    /// snapshot read before a removal must not bring the removed devices back.
    removals: RefCell<HashMap<String, i64>>,
}

impl Drop for Store {
    /// Nothing written is lost when the store closes (the dispatcher drops it as it stops).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl Store {
    /// Opens the database for writing (the dispatcher; mod_init too, before the fork): creates the
    /// parent directory and the file if missing, puts it in WAL mode, and creates or migrates the
    /// schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                fs::create_dir_all(parent).map_err(|error| StoreError::Io {
                    path: parent.to_path_buf(),
                    action: "create the directory for the push device database",
                    error,
                })?;
            }
        }
        let open_err = |error| StoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(WRITER_BUSY_TIMEOUT).map_err(open_err)?;
        // The first statement that reads the file: a corrupt or foreign file fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        migrate(&conn, path)?;
        Ok(Store::with(conn))
    }

    /// Opens an existing database read-only, beside the writer (no process of the module does so
    /// today; see the module's header). Works while the writer writes; needs the `-wal`/`-shm`
    /// files to exist or their directory to be writable.
    ///
    /// If the file does not exist yet, or the writer has not created the schema in it yet, this
    /// returns [`StoreError::Missing`]: the caller should treat the AOR as having no devices and
    /// try opening again later.
    pub fn open_reader(path: &Path) -> Result<Store, StoreError> {
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => return Err(StoreError::Missing(path.to_path_buf())),
            Err(error) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    action: "check the push device database",
                    error,
                })
            }
        }
        let open_err = |error| StoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(READER_BUSY_TIMEOUT).map_err(open_err)?;
        let version = user_version(&conn).map_err(open_err)?;
        if version == 0 {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        // Prepare the one query readers make now, so that a broken file shows up at open time.
        conn.prepare_cached(HAS_DEVICES).map_err(open_err)?;
        Ok(Store::with(conn))
    }

    fn with(conn: Connection) -> Store {
        Store {
            conn,
            batched: false,
            mirror: None,
            removals: RefCell::new(HashMap::new()),
        }
    }

    /// A store in memory only, with the file store's schema and queries: what a node knows when
    /// the devices are kept in PostgreSQL (the dispatcher reads only this, never the database
    /// server; see [`super::postgres`]).
    pub fn open_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|error| StoreError::Open {
            path: path.to_path_buf(),
            error,
        })?;
        migrate(&conn, path)?;
        Ok(Store::with(conn))
    }

    /// From now on every write (not [`Store::merge`]) is also handed to `sink` once it is done
    /// here, as a [`WriteOp`] that makes the same change elsewhere.
    pub fn mirror_to(&mut self, sink: Box<dyn Fn(WriteOp) + Send>) {
        self.mirror = Some(sink);
    }

    /// Runs `write` without handing its changes to the mirror (what another node told this one:
    /// that node wrote the shared database already).
    pub fn without_mirror<T>(&mut self, write: impl FnOnce(&Store) -> T) -> T {
        let mirror = self.mirror.take();
        let out = write(self);
        self.mirror = mirror;
        out
    }

    fn mirror(&self, op: impl FnOnce() -> WriteOp) {
        if let Some(sink) = &self.mirror {
            sink(op());
        }
    }

    fn note_removal(&self, aor: &str) {
        if self.mirror.is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.removals.borrow_mut().insert(aor.to_string(), now);
        }
    }

    /// Adds what another copy of the store holds (PostgreSQL's devices, read when the writer
    /// connects): a device not known here is added, a known one replaced when the other record is
    /// newer; a device of an AOR that lost devices here since the last merge is skipped unless it
    /// was written after that (`last`: the last part of what the other copy holds ends that
    /// merge). Nothing is handed to the mirror. Returns the AORs of the devices added or replaced.
    pub fn merge(
        &self,
        devices: &[Device],
        refresh: &[(String, String, i64, Option<i64>)],
        last: bool,
    ) -> Result<Vec<String>, StoreError> {
        let removals = if last {
            std::mem::take(&mut *self.removals.borrow_mut())
        } else {
            self.removals.borrow().clone()
        };
        let mut aors = Vec::new();
        self.atomic(|tx| {
            for d in devices {
                if removals.get(&d.aor).is_some_and(|&at| d.updated_at <= at) {
                    continue;
                }
                let known = tx
                    .prepare_cached(SELECT_ONE)?
                    .query_row(params![d.aor, d.device_id], Device::from_row)
                    .optional()?;
                if known.is_some_and(|k| k.updated_at >= d.updated_at) {
                    continue;
                }
                upsert_row(tx, d)?;
                aors.push(d.aor.clone());
            }
            for (aor, device_id, expires_at, pushed_at) in refresh {
                tx.prepare_cached(
                    "INSERT INTO refresh (aor, device_id, expires_at, pushed_at) \
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM devices \
                     WHERE aor = ?1 AND device_id = ?2) ON CONFLICT (aor, device_id) DO NOTHING",
                )?
                .execute(params![aor, device_id, expires_at, pushed_at])?;
            }
            Ok(())
        })?;
        aors.dedup();
        Ok(aors)
    }

    /// From now on, writes are batched: the first write opens one transaction, later writes join
    /// it, and [`Store::flush`] commits them all at once (the dispatcher calls it once per tick,
    /// 100 ms, and the store flushes when dropped). Reads on this connection see the batch at
    /// once; another connection sees it when it is committed. One commit per tick instead of one
    /// or two per REGISTER and one per refresh push keeps SQLite off the path between a REGISTER
    /// and the INVITE it resumes.
    pub fn batch_writes(&mut self) {
        self.batched = true;
    }

    /// Commits the writes batched since the last flush (nothing to do when there are none).
    pub fn flush(&self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// Runs `write` as one unit: on its own in a transaction, or, when writes are batched, inside
    /// the batch's transaction under a savepoint (a failed write leaves nothing behind either way).
    fn atomic<T>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (begin, done, undo) = if self.batched {
            if self.conn.is_autocommit() {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
            }
            (
                "SAVEPOINT write",
                "RELEASE write",
                "ROLLBACK TO write; RELEASE write",
            )
        } else {
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        };
        self.conn.execute_batch(begin)?;
        match write(&self.conn) {
            Ok(value) => {
                self.conn.execute_batch(done)?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch(undo);
                Err(e)
            }
        }
    }

    /// Inserts the device or replaces the record with the same (aor, device_id); see [`Upsert`].
    /// `updated_at` is written unless the record is the same and was written less than
    /// [`UPDATED_AT_RESOLUTION`] seconds before: then nothing is written (a phone that registers
    /// often costs no commit). When the device has an instance, the record of the same AOR with
    /// device_id `token:<its prid>` is removed: that was the same phone before it sent an
    /// instance, and then the result is at least [`Upsert::Replaced`].
    pub fn upsert(&self, device: &Device) -> Result<Upsert, StoreError> {
        // Read first, outside any transaction (this connection is the only writer): a phone that
        // registers again unchanged costs no transaction, batched or not.
        let select = |device_id: &str| {
            self.conn
                .prepare_cached(SELECT_ONE)?
                .query_row(params![device.aor, device_id], Device::from_row)
                .optional()
        };
        let existing = select(&device.device_id)?;
        // The same phone's record from before it sent an instance, if any.
        let token_id = device
            .instance
            .as_ref()
            .map(|_| format!("token:{}", device.prid))
            .filter(|id| *id != device.device_id);
        if let Some(old) = &existing {
            let recent = (device.updated_at - old.updated_at).abs() < UPDATED_AT_RESOLUTION;
            if recent && old.same_apart_from_time(device) {
                let token_record = match &token_id {
                    Some(id) => select(id)?.is_some(),
                    None => false,
                };
                if !token_record {
                    // Nothing to write.
                    return Ok(Upsert::Unchanged);
                }
            }
        }
        self.atomic(|tx| {
            upsert_row(tx, device)?;
            let mut outcome = match existing {
                None => Upsert::New,
                Some(old) if old.same_apart_from_time(device) => Upsert::Unchanged,
                Some(_) => Upsert::Replaced,
            };
            if let Some(token_id) = token_id {
                let dropped = tx
                    .prepare_cached(DELETE_ONE)?
                    .execute(params![device.aor, token_id])?;
                if dropped > 0 {
                    outcome = Upsert::Replaced;
                }
            }
            Ok(outcome)
        })
        .inspect(|_| self.mirror(|| WriteOp::Upsert(device.clone())))
    }

    /// Removes one device; returns whether it existed.
    pub fn remove(&self, aor: &str, device_id: &str) -> Result<bool, StoreError> {
        self.atomic(|conn| {
            let n = conn
                .prepare_cached(DELETE_ONE)?
                .execute(params![aor, device_id])?;
            prune_refresh(conn, aor)?;
            Ok(n > 0)
        })
        .inspect(|&removed| {
            if removed {
                self.note_removal(aor);
                self.mirror(|| WriteOp::Remove {
                    aor: aor.to_string(),
                    device_id: device_id.to_string(),
                });
            }
        })
    }

    /// Removes the device(s) of this AOR whose token is `prid` (the provider said it is dead).
    /// Returns how many.
    pub fn remove_token(&self, aor: &str, prid: &str) -> Result<usize, StoreError> {
        self.atomic(|conn| {
            let n = conn
                .prepare_cached(DELETE_TOKEN)?
                .execute(params![aor, prid])?;
            prune_refresh(conn, aor)?;
            Ok(n)
        })
        .inspect(|&n| {
            if n > 0 {
                self.note_removal(aor);
                self.mirror(|| WriteOp::RemoveToken {
                    aor: aor.to_string(),
                    prid: prid.to_string(),
                });
            }
        })
    }

    /// Removes all devices of an AOR. Returns how many.
    pub fn remove_aor(&self, aor: &str) -> Result<usize, StoreError> {
        self.atomic(|conn| {
            let n = conn.prepare_cached(DELETE_AOR)?.execute(params![aor])?;
            prune_refresh(conn, aor)?;
            Ok(n)
        })
        .inspect(|&n| {
            if n > 0 {
                self.note_removal(aor);
                self.mirror(|| WriteOp::RemoveAor {
                    aor: aor.to_string(),
                });
            }
        })
    }

    /// Keeps at most `max` devices of an AOR: `keep` (the one just registered) and the most
    /// recently registered others; the rest are removed and returned (least recent last).
    pub fn trim(&self, aor: &str, max: usize, keep: &str) -> Result<Vec<Device>, StoreError> {
        let devices = self.devices(aor)?;
        if devices.len() <= max {
            return Ok(Vec::new());
        }
        let (kept, others): (Vec<Device>, Vec<Device>) =
            devices.into_iter().partition(|d| d.device_id == keep);
        let room = max.saturating_sub(kept.len());
        let evicted: Vec<Device> = others.into_iter().skip(room).collect();
        self.atomic(|tx| {
            for d in &evicted {
                tx.prepare_cached(DELETE_ONE)?
                    .execute(params![aor, d.device_id])?;
            }
            prune_refresh(tx, aor)
        })?;
        if !evicted.is_empty() {
            self.note_removal(aor);
        }
        for d in &evicted {
            self.mirror(|| WriteOp::Remove {
                aor: aor.to_string(),
                device_id: d.device_id.clone(),
            });
        }
        Ok(evicted)
    }

    /// The devices of an AOR, most recently updated first (ties by device_id).
    pub fn devices(&self, aor: &str) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self.conn.prepare_cached(SELECT_AOR)?;
        let rows = stmt.query_map(params![aor], Device::from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }

    /// Whether the AOR has at least one device: one lookup in the primary key.
    pub fn has_devices(&self, aor: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(HAS_DEVICES)?
            .query_row(params![aor], |row| row.get(0))?)
    }

    /// Every AOR that has at least one device (to fill the shared AOR index at startup).
    pub fn aors(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT aor FROM devices")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }

    /// push.devices without an AOR: at most `limit` devices from the `offset`-th on, over all
    /// AORs, by AOR then device id (the primary key's order: pages neither repeat nor skip a
    /// device while none comes or goes).
    pub fn page(&self, offset: u64, limit: u32) -> Result<Vec<Device>, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(SELECT_PAGE)?;
        let rows = stmt.query_map(params![i64::from(limit), offset], Device::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many devices the store holds, over all AORs.
    pub fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached(COUNT)?
            .query_row([], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl Store {
    /// Records when the device's binding expires (None: unknown or permanent, no refresh push) and
    /// makes it due for one binding-refresh push again.
    pub fn set_expiry(
        &self,
        aor: &str,
        device_id: &str,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.atomic(|conn| {
            match expires_at {
                Some(at) => conn
                    .prepare_cached(SET_EXPIRY)?
                    .execute(params![aor, device_id, at])?,
                None => conn
                    .prepare_cached(CLEAR_EXPIRY)?
                    .execute(params![aor, device_id])?,
            };
            Ok(())
        })
        .inspect(|_| {
            self.mirror(|| WriteOp::SetExpiry {
                aor: aor.to_string(),
                device_id: device_id.to_string(),
                expires_at,
            })
        })
    }

    /// Devices whose binding expires after `now` and by `until` (Unix seconds) and that had no
    /// refresh push since they last registered, soonest first, at most `limit`; with the expiry.
    pub fn due_refreshes(
        &self,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(Device, i64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(DUE_REFRESH)?;
        let rows = stmt.query_map(params![now, until, limit as i64], |row| {
            Ok((Device::from_row(row)?, row.get::<_, i64>(10)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Notes that the device got its refresh push: no other until it registers again.
    pub fn mark_refreshed(&self, aor: &str, device_id: &str, at: i64) -> Result<(), StoreError> {
        self.atomic(|conn| {
            conn.prepare_cached(MARK_PUSHED)?
                .execute(params![aor, device_id, at])?;
            Ok(())
        })
        .inspect(|_| {
            self.mirror(|| WriteOp::MarkRefreshed {
                aor: aor.to_string(),
                device_id: device_id.to_string(),
                at,
            })
        })
    }
}

fn prune_refresh(conn: &Connection, aor: &str) -> Result<(), StoreError> {
    conn.prepare_cached(PRUNE_REFRESH)?.execute(params![aor])?;
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction so that readers see either no
/// schema (version 0) or a complete one.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |error| StoreError::Open {
        path: path.to_path_buf(),
        error,
    };
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(open_err)?;
    let version = user_version(&tx).map_err(open_err)?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1).map_err(open_err)?;
            tx.execute_batch(SCHEMA_V2).map_err(open_err)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_err)?;
        }
        1 => {
            tx.execute_batch(SCHEMA_V2).map_err(open_err)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_err)?;
        }
        SCHEMA_VERSION => {}
        // Later versions add their steps here: 2 => { ...; user_version = 3 }, and so on.
        found => {
            return Err(StoreError::Schema {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            })
        }
    }
    tx.commit().map_err(open_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "kamailio-push-store-{}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed),
                name
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn db(&self) -> PathBuf {
            self.0.join("push.sqlite")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dev(aor: &str, device_id: &str, prid: &str, updated_at: i64) -> Device {
        let instance = if device_id.starts_with("token:") {
            None
        } else {
            Some(device_id.to_string())
        };
        Device {
            aor: aor.to_string(),
            device_id: device_id.to_string(),
            provider: "apns".to_string(),
            prid: prid.to_string(),
            param: Some("TEAMID.org.example.app.voip".to_string()),
            app_id: Some("example".to_string()),
            instance,
            contact: format!("sip:{prid}@192.0.2.1:5060;transport=tcp"),
            user_agent: Some("Example/1.0".to_string()),
            updated_at,
        }
    }

    /// push.devices without an AOR pages through every device once, in key order.
    #[test]
    fn pages_cover_every_device_once() {
        let tmp = TempDir::new("page");
        let store = Store::open(&tmp.db()).unwrap();
        for i in 0..250 {
            let aor = format!("user-{:03}", i % 37);
            store
                .upsert(&dev(
                    &aor,
                    &format!("token:t{i:03}"),
                    &format!("t{i:03}"),
                    1,
                ))
                .unwrap();
        }
        assert_eq!(store.count().unwrap(), 250);
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let page = store.page(offset, 40).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 40);
            offset += page.len() as u64;
            seen.extend(page.into_iter().map(|d| (d.aor, d.device_id)));
        }
        assert_eq!(seen.len(), 250);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "not in key order");
        sorted.dedup();
        assert_eq!(sorted.len(), 250);
        assert!(store.page(u64::MAX, 10).unwrap().is_empty());
    }

    fn url_error(url: &str) -> String {
        match parse_db_url(url) {
            Err(e @ StoreError::Url(_)) => e.to_string(),
            other => panic!("{url:?}: expected a Url error, got {other:?}"),
        }
    }

    #[test]
    fn parse_db_url_accepts_absolute_paths() {
        assert_eq!(
            parse_db_url("sqlite:///var/lib/kamailio/push.sqlite").unwrap(),
            DbUrl::Sqlite(PathBuf::from("/var/lib/kamailio/push.sqlite"))
        );
        assert_eq!(
            parse_db_url(DEFAULT_DB_URL).unwrap(),
            DbUrl::Sqlite(PathBuf::from("/var/lib/kamailio/push.sqlite"))
        );
        assert_eq!(
            parse_db_url("  sqlite:///tmp/p.db\n").unwrap(),
            DbUrl::Sqlite(PathBuf::from("/tmp/p.db"))
        );
    }

    #[test]
    fn parse_db_url_accepts_postgres_and_never_shows_its_password() {
        let url = parse_db_url("postgres://kam:Hush-42@db.example.com:5433/push").unwrap();
        let DbUrl::Postgres(pg) = &url else {
            panic!("{url:?}")
        };
        assert_eq!(pg.password.as_ref().unwrap().expose(), "Hush-42");
        assert_eq!(
            url.to_string(),
            "postgres://kam:<redacted>@db.example.com:5433/push"
        );
        assert!(!format!("{url:?}").contains("Hush-42"));
        assert_eq!(url.sqlite_path(), None);
        let e = parse_db_url("postgres://kam:Hush-42@db/push?sslmode=require")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kam:<redacted>@db") && !e.contains("Hush-42"),
            "{e}"
        );
        let e = url_error("mysql://kamailio:Hush-42@localhost/kamailio");
        assert!(e.contains("postgres://") && !e.contains("Hush-42"), "{e}");
    }

    #[test]
    fn parse_db_url_refuses_bad_urls() {
        let relative = url_error("sqlite://relative/file");
        assert!(relative.contains("absolute"), "{relative}");
        assert!(relative.contains("sqlite://relative/file"), "{relative}");

        for url in [
            "mysql://kamailio:pw@localhost/kamailio",
            "/var/lib/kamailio/push.sqlite",
            "sqlite:/var/lib/kamailio/push.sqlite",
            "SQLITE:///x",
            "",
        ] {
            let msg = url_error(url);
            assert!(msg.contains("sqlite://"), "{url:?}: {msg}");
        }
        for url in [
            "sqlite://",
            "sqlite:///",
            "sqlite:///var/lib/",
            "sqlite:///var/lib/..",
            "sqlite:///a\0b",
        ] {
            url_error(url);
        }
    }

    #[test]
    fn open_creates_missing_parent_dirs_wal_and_schema() {
        let tmp = TempDir::new("parents");
        let path = tmp.0.join("a").join("b").join("c").join("push.sqlite");
        let store = Store::open(&path).unwrap();
        assert!(path.is_file());
        assert_eq!(store.count().unwrap(), 0);

        let raw = Connection::open(&path).unwrap();
        let mode: String = raw
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(user_version(&raw).unwrap(), SCHEMA_VERSION);
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
    }

    #[test]
    fn upsert_new_unchanged_replaced() {
        let tmp = TempDir::new("upsert");
        let store = Store::open(&tmp.db()).unwrap();
        let aor = "sip:alice@example.com";
        let d = dev(aor, "<urn:uuid:1>", "tok1", 100);

        assert_eq!(store.upsert(&d).unwrap(), Upsert::New);
        assert_eq!(store.devices(aor).unwrap(), vec![d.clone()]);

        // Identical apart from the time: Unchanged, but the time is refreshed...
        let later = Device {
            updated_at: 200,
            ..d.clone()
        };
        assert_eq!(store.upsert(&later).unwrap(), Upsert::Unchanged);
        assert_eq!(store.devices(aor).unwrap(), vec![later.clone()]);
        // ...unless it was written less than a minute before: then nothing is written.
        let soon = Device {
            updated_at: 200 + UPDATED_AT_RESOLUTION - 1,
            ..later.clone()
        };
        assert_eq!(store.upsert(&soon).unwrap(), Upsert::Unchanged);
        assert_eq!(store.devices(aor).unwrap(), vec![later.clone()]);

        // Same instance, new token: Replaced, still one record.
        let new_token = Device {
            prid: "tok2".into(),
            updated_at: 300,
            ..later.clone()
        };
        assert_eq!(store.upsert(&new_token).unwrap(), Upsert::Replaced);
        assert_eq!(store.devices(aor).unwrap(), vec![new_token.clone()]);

        // Any other field counts too, including Some -> None.
        let no_ua = Device {
            user_agent: None,
            ..new_token.clone()
        };
        assert_eq!(store.upsert(&no_ua).unwrap(), Upsert::Replaced);
        let other_contact = Device {
            contact: "sip:x@198.51.100.7".into(),
            ..no_ua.clone()
        };
        assert_eq!(store.upsert(&other_contact).unwrap(), Upsert::Replaced);
        assert_eq!(store.upsert(&other_contact).unwrap(), Upsert::Unchanged);
        assert_eq!(store.devices(aor).unwrap(), vec![other_contact]);

        // The same device_id under another AOR is another device.
        let bob = dev("sip:bob@example.com", "<urn:uuid:1>", "tok2", 300);
        assert_eq!(store.upsert(&bob).unwrap(), Upsert::New);
        assert_eq!(store.count().unwrap(), 2);
    }

    #[test]
    fn instance_record_replaces_token_record_of_same_phone() {
        let tmp = TempDir::new("token-to-instance");
        let store = Store::open(&tmp.db()).unwrap();
        let aor = "sip:alice@example.com";

        let by_token = dev(aor, "token:tokA", "tokA", 100);
        let other_phone = dev(aor, "token:tokB", "tokB", 100);
        let other_aor = dev("sip:carol@example.com", "token:tokA", "tokA", 100);
        for d in [&by_token, &other_phone, &other_aor] {
            assert_eq!(store.upsert(d).unwrap(), Upsert::New);
        }

        let with_instance = dev(aor, "<urn:uuid:A>", "tokA", 200);
        assert_eq!(store.upsert(&with_instance).unwrap(), Upsert::Replaced);
        assert_eq!(
            store.devices(aor).unwrap(),
            vec![with_instance.clone(), other_phone.clone()]
        );
        assert_eq!(
            store.devices("sip:carol@example.com").unwrap(),
            vec![other_aor]
        );

        // Once the token record is gone, the next identical upsert is plain Unchanged.
        assert_eq!(store.upsert(&with_instance).unwrap(), Upsert::Unchanged);
        // A device without instance never removes anything else.
        let again = dev(aor, "token:tokB", "tokB", 300);
        assert_eq!(store.upsert(&again).unwrap(), Upsert::Unchanged);
        assert_eq!(store.count().unwrap(), 3);
    }

    #[test]
    fn remove_counts() {
        let tmp = TempDir::new("remove");
        let store = Store::open(&tmp.db()).unwrap();
        let a = "sip:alice@example.com";
        let b = "sip:bob@example.com";
        store.upsert(&dev(a, "<urn:uuid:1>", "t1", 1)).unwrap();
        store.upsert(&dev(a, "<urn:uuid:2>", "t1", 2)).unwrap(); // same token, two instances
        store.upsert(&dev(a, "<urn:uuid:3>", "t3", 3)).unwrap();
        store.upsert(&dev(a, "token:t4", "t4", 4)).unwrap();
        store.upsert(&dev(b, "<urn:uuid:1>", "t1", 5)).unwrap();
        store.upsert(&dev(b, "<urn:uuid:9>", "t9", 6)).unwrap();
        assert_eq!(store.count().unwrap(), 6);

        assert!(store.remove(a, "<urn:uuid:3>").unwrap());
        assert!(!store.remove(a, "<urn:uuid:3>").unwrap());
        assert!(!store
            .remove("sip:nobody@example.com", "<urn:uuid:1>")
            .unwrap());
        assert_eq!(store.count().unwrap(), 5);

        assert_eq!(store.remove_token(a, "t1").unwrap(), 2);
        assert_eq!(store.remove_token(a, "t1").unwrap(), 0);
        assert_eq!(store.remove_token(a, "t9").unwrap(), 0, "t9 is bob's");
        assert!(store.has_devices(b).unwrap());
        assert_eq!(store.count().unwrap(), 3);

        assert_eq!(store.remove_aor(b).unwrap(), 2);
        assert_eq!(store.remove_aor(b).unwrap(), 0);
        assert!(!store.has_devices(b).unwrap());
        assert_eq!(store.remove_aor(a).unwrap(), 1);
        assert_eq!(store.count().unwrap(), 0);
        assert!(!store.has_devices(a).unwrap());
    }

    #[test]
    fn trim_keeps_the_new_device_and_the_most_recent_others() {
        let tmp = TempDir::new("trim");
        let store = Store::open(&tmp.db()).unwrap();
        let a = "alice";
        for i in 1..=4 {
            store
                .upsert(&dev(a, &format!("<urn:uuid:{i}>"), &format!("t{i}"), i))
                .unwrap();
        }
        store.upsert(&dev("bob", "<urn:uuid:1>", "b1", 1)).unwrap();
        assert!(store.trim(a, 4, "<urn:uuid:1>").unwrap().is_empty());
        // The newest is 4, but 1 (just registered, same second as others) must stay.
        let evicted = store.trim(a, 2, "<urn:uuid:1>").unwrap();
        let ids: Vec<&str> = evicted.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["<urn:uuid:3>", "<urn:uuid:2>"]);
        let left: Vec<String> = store
            .devices(a)
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        assert_eq!(left, ["<urn:uuid:4>", "<urn:uuid:1>"]);
        assert_eq!(
            store.devices("bob").unwrap().len(),
            1,
            "other AORs untouched"
        );
    }

    #[test]
    fn devices_newest_first() {
        let tmp = TempDir::new("order");
        let store = Store::open(&tmp.db()).unwrap();
        let a = "sip:alice@example.com";
        store.upsert(&dev(a, "<urn:uuid:old>", "t1", 10)).unwrap();
        store.upsert(&dev(a, "<urn:uuid:new>", "t2", 30)).unwrap();
        store.upsert(&dev(a, "<urn:uuid:mid>", "t3", 20)).unwrap();
        store
            .upsert(&dev("sip:bob@example.com", "<urn:uuid:x>", "t4", 40))
            .unwrap();
        let ids: Vec<String> = store
            .devices(a)
            .unwrap()
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        assert_eq!(ids, ["<urn:uuid:new>", "<urn:uuid:mid>", "<urn:uuid:old>"]);

        // Refreshing the oldest (a minute or more later) moves it to the front.
        store
            .upsert(&dev(a, "<urn:uuid:old>", "t1", 10 + UPDATED_AT_RESOLUTION))
            .unwrap();
        assert_eq!(store.devices(a).unwrap()[0].device_id, "<urn:uuid:old>");
        assert!(store.devices("sip:nobody@example.com").unwrap().is_empty());
    }

    #[test]
    fn data_survives_reopen() {
        let tmp = TempDir::new("reopen");
        let a = "sip:alice@example.com";
        let d1 = dev(a, "<urn:uuid:1>", "t1", 10);
        let d2 = dev(a, "token:t2", "t2", 20);
        {
            let store = Store::open(&tmp.db()).unwrap();
            store.upsert(&d1).unwrap();
            store.upsert(&d2).unwrap();
        }
        let store = Store::open(&tmp.db()).unwrap();
        assert_eq!(store.devices(a).unwrap(), vec![d2.clone(), d1.clone()]);
        assert_eq!(store.upsert(&d1).unwrap(), Upsert::Unchanged);
        drop(store);
        let reader = Store::open_reader(&tmp.db()).unwrap();
        assert!(reader.has_devices(a).unwrap());
        assert_eq!(reader.count().unwrap(), 2);
    }

    /// Batched writes: one transaction until flush; this connection reads them at once, another
    /// one after the flush; dropping the store flushes (nothing lost when the dispatcher stops).
    #[test]
    fn batched_writes_commit_on_flush_and_on_drop() {
        let dir = TempDir::new("batch");
        let mut store = Store::open(&dir.db()).unwrap();
        store.batch_writes();
        let reader = Store::open_reader(&dir.db()).unwrap();
        assert_eq!(
            store
                .upsert(&dev("sip:a@x", "<urn:uuid:1>", "t1", 100))
                .unwrap(),
            Upsert::New
        );
        store
            .set_expiry("sip:a@x", "<urn:uuid:1>", Some(200))
            .unwrap();
        store
            .upsert(&dev("sip:b@x", "<urn:uuid:2>", "t2", 100))
            .unwrap();
        assert!(store.remove("sip:b@x", "<urn:uuid:2>").unwrap());
        // The writer sees its batch, a reader does not until it is committed.
        assert_eq!(store.devices("sip:a@x").unwrap().len(), 1);
        assert!(!store.has_devices("sip:b@x").unwrap());
        assert!(reader.devices("sip:a@x").unwrap().is_empty());
        store.flush().unwrap();
        assert_eq!(reader.devices("sip:a@x").unwrap()[0].prid, "t1");
        // Flushing with nothing batched is harmless.
        store.flush().unwrap();
        // Writes after a flush, then the store closes: they are committed.
        store
            .upsert(&dev("sip:c@x", "<urn:uuid:3>", "t3", 100))
            .unwrap();
        store
            .mark_refreshed("sip:a@x", "<urn:uuid:1>", 150)
            .unwrap();
        assert!(reader.devices("sip:c@x").unwrap().is_empty());
        drop(store);
        assert_eq!(reader.devices("sip:c@x").unwrap()[0].prid, "t3");
    }

    #[test]
    fn reader_sees_committed_writes_immediately() {
        let tmp = TempDir::new("reader-interleaved");
        let writer = Store::open(&tmp.db()).unwrap();
        let reader = Store::open_reader(&tmp.db()).unwrap();
        for i in 0..2000 {
            let aor = format!("sip:u{}@example.com", i % 100);
            let d = dev(&aor, &format!("<urn:uuid:{i}>"), &format!("t{i}"), i);
            writer.upsert(&d).unwrap();
            assert!(reader.has_devices(&aor).unwrap());
            if i % 3 == 0 {
                assert!(writer.remove_aor(&aor).unwrap() > 0);
                assert!(!reader.has_devices(&aor).unwrap());
            }
        }
        assert_eq!(reader.count().unwrap(), writer.count().unwrap());
        assert!(!reader.has_devices("sip:never@example.com").unwrap());

        // A reader cannot write, and says so instead of panicking.
        assert!(reader
            .upsert(&dev("sip:r@example.com", "token:x", "x", 1))
            .is_err());
        assert!(reader.remove_aor("sip:u1@example.com").is_err());
    }

    #[test]
    fn reader_works_while_writer_writes_in_another_thread() {
        let tmp = TempDir::new("reader-concurrent");
        let writer = Store::open(&tmp.db()).unwrap();
        let anchor = "sip:anchor@example.com";
        writer.upsert(&dev(anchor, "token:a", "a", 0)).unwrap();
        let reader = Store::open_reader(&tmp.db()).unwrap();

        const WRITES: i64 = 2000;
        let done = Arc::new(AtomicBool::new(false));
        let done_w = Arc::clone(&done);
        let handle = std::thread::spawn(move || -> Result<(), StoreError> {
            let busy = "sip:busy@example.com";
            for i in 0..WRITES {
                writer.upsert(&dev(
                    &format!("sip:w{i}@example.com"),
                    "<urn:uuid:w>",
                    "tw",
                    i,
                ))?;
                // Keep rewriting the same record (a token that keeps changing).
                writer.upsert(&dev(busy, "<urn:uuid:b>", &format!("tb{i}"), i))?;
            }
            done_w.store(true, Ordering::SeqCst);
            Ok(())
        });

        let mut reads = 0u64;
        let mut last_count = 0u64;
        while !done.load(Ordering::SeqCst) || reads < 2000 {
            assert!(reader.has_devices(anchor).unwrap());
            assert!(!reader.has_devices("sip:never@example.com").unwrap());
            let n = reader.count().unwrap();
            assert!(n >= last_count, "count went back from {last_count} to {n}");
            assert!(n >= 1 && n <= 2 + WRITES as u64);
            last_count = n;
            reads += 1;
            if handle.is_finished() && !done.load(Ordering::SeqCst) {
                break; // the writer failed; reported below
            }
        }
        handle.join().unwrap().unwrap();
        assert_eq!(reader.count().unwrap(), 2 + WRITES as u64);
        assert!(reader
            .has_devices(&format!("sip:w{}@example.com", WRITES - 1))
            .unwrap());
        let busy = reader.devices("sip:busy@example.com").unwrap();
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].prid, format!("tb{}", WRITES - 1));
    }

    /// Environment variable that makes [`child_reader`] run (it is what the child process runs).
    const CHILD_DB: &str = "KAMAILIO_PUSH_STORE_TEST_CHILD_DB";
    const CHILD_TARGET: u64 = 1000;

    /// A reader may be another process: run one in a child process (this test binary again,
    /// running only [`child_reader`]) while this process writes.
    #[test]
    fn reader_in_another_process_while_writer_writes() {
        let tmp = TempDir::new("reader-process");
        let writer = Store::open(&tmp.db()).unwrap();
        writer
            .upsert(&dev("sip:anchor@example.com", "token:a", "a", 0))
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "devices::store::tests::child_reader",
                "--test-threads=1",
            ])
            .env(CHILD_DB, tmp.db())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Fill the store up to CHILD_TARGET records, then keep rewriting one record until the
        // child is done, so that its reads overlap writes whenever it starts.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut i: i64 = 1;
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            if (i as u64) < CHILD_TARGET - 1 {
                writer
                    .upsert(&dev(&format!("sip:p{i}@example.com"), "token:p", "p", i))
                    .unwrap();
            }
            writer
                .upsert(&dev(
                    "sip:busy@example.com",
                    "<urn:uuid:b>",
                    &format!("b{i}"),
                    i,
                ))
                .unwrap();
            i += 1;
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child reader failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child ran nothing:\n{stdout}");
    }

    /// Run by [`reader_in_another_process_while_writer_writes`] in a child process.
    #[test]
    #[ignore = "helper: run in a child process by reader_in_another_process_while_writer_writes"]
    fn child_reader() {
        let Some(path) = std::env::var_os(CHILD_DB).map(PathBuf::from) else {
            return; // not run by the parent test
        };
        let reader = Store::open_reader(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut reads = 0u64;
        let mut last = 0u64;
        loop {
            assert!(reader.has_devices("sip:anchor@example.com").unwrap());
            assert!(!reader.has_devices("sip:never@example.com").unwrap());
            let n = reader.count().unwrap();
            assert!(n >= last, "count went back from {last} to {n}");
            last = n;
            reads += 1;
            if n == CHILD_TARGET && reads >= 2000 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "saw {n} of {CHILD_TARGET}"
            );
        }
    }

    #[test]
    fn open_reader_on_missing_or_uninitialised_file_is_missing() {
        let tmp = TempDir::new("reader-missing");
        let path = tmp.db();
        match Store::open_reader(&path) {
            Err(StoreError::Missing(p)) => assert_eq!(p, path),
            other => panic!("expected Missing, got {:?}", other.err()),
        }
        assert!(!path.exists(), "a reader must not create the file");
        let deep = tmp.0.join("no").join("such").join("dir.sqlite");
        assert!(matches!(
            Store::open_reader(&deep),
            Err(StoreError::Missing(_))
        ));

        // An empty file (created, schema not written yet) is not ready either.
        fs::write(&path, b"").unwrap();
        let e = Store::open_reader(&path).err().unwrap();
        assert!(matches!(e, StoreError::Missing(_)), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()));

        // Once the writer has opened it, readers work.
        let writer = Store::open(&path).unwrap();
        let reader = Store::open_reader(&path).unwrap();
        assert!(!reader.has_devices("sip:a@example.com").unwrap());
        writer
            .upsert(&dev("sip:a@example.com", "token:t", "t", 1))
            .unwrap();
        assert!(reader.has_devices("sip:a@example.com").unwrap());
    }

    #[test]
    fn unwritable_location_is_an_error_naming_the_path() {
        let path = Path::new("/proc/x/y");
        let e = Store::open(path)
            .err()
            .expect("opening /proc/x/y must fail");
        let msg = e.to_string();
        assert!(msg.contains("/proc/x"), "{msg}");
        assert!(std::error::Error::source(&e).is_some());

        let tmp = TempDir::new("dir-as-file");
        let e = Store::open(&tmp.0)
            .err()
            .expect("a directory is no database");
        assert!(e.to_string().contains(&tmp.0.display().to_string()), "{e}");
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let tmp = TempDir::new("corrupt");
        let path = tmp.db();
        let garbage: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fs::write(&path, &garbage).unwrap();

        let e = Store::open(&path).err().expect("garbage must not open");
        assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        let e = Store::open_reader(&path)
            .err()
            .expect("garbage must not open");
        assert!(matches!(e, StoreError::Open { .. }), "{e:?}");

        // A short text file too.
        fs::write(&path, b"this is not a database\n").unwrap();
        assert!(Store::open(&path).is_err());
        assert!(Store::open_reader(&path).is_err());
        // The garbage was left alone.
        assert_eq!(fs::read(&path).unwrap(), b"this is not a database\n");
    }

    #[test]
    fn newer_schema_is_refused() {
        let tmp = TempDir::new("newer");
        let path = tmp.db();
        drop(Store::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.pragma_update(None, "user_version", 7).unwrap();
        drop(raw);
        for e in [
            Store::open(&path).err().unwrap(),
            Store::open_reader(&path).err().unwrap(),
        ] {
            match &e {
                StoreError::Schema {
                    found, supported, ..
                } => {
                    assert_eq!((*found, *supported), (7, SCHEMA_VERSION));
                }
                other => panic!("expected Schema, got {other:?}"),
            }
            assert!(e.to_string().contains(&path.display().to_string()));
        }
    }

    #[test]
    fn refresh_is_due_once_per_registration_inside_the_window() {
        let tmp = TempDir::new("refresh");
        let store = Store::open(&tmp.db()).unwrap();
        let a = dev("alice", "<urn:uuid:a>", "tok-a", 1);
        let b = dev("bob", "token:tok-b", "tok-b", 1);
        store.upsert(&a).unwrap();
        store.upsert(&b).unwrap();
        store
            .set_expiry("alice", &a.device_id, Some(1_000))
            .unwrap();
        store.set_expiry("bob", &b.device_id, Some(5_000)).unwrap();
        // At 900 with a 120 s window only alice's binding (expiring at 1000) is due.
        let due = store.due_refreshes(900, 1_020, 10).unwrap();
        assert_eq!(due, vec![(a.clone(), 1_000)]);
        store.mark_refreshed("alice", &a.device_id, 900).unwrap();
        assert!(store.due_refreshes(901, 1_021, 10).unwrap().is_empty());
        // An expired binding is never pushed.
        assert!(store.due_refreshes(1_000, 6_000, 10).unwrap() == vec![(b.clone(), 5_000)]);
        // Registering again makes the device due again for its new binding.
        store
            .set_expiry("alice", &a.device_id, Some(2_000))
            .unwrap();
        assert_eq!(
            store.due_refreshes(1_950, 2_070, 10).unwrap(),
            vec![(a.clone(), 2_000)]
        );
        // No expiry known (a permanent binding): nothing to refresh.
        store.set_expiry("alice", &a.device_id, None).unwrap();
        assert!(store
            .due_refreshes(0, i64::MAX, 10)
            .unwrap()
            .iter()
            .all(|(d, _)| d.aor != "alice"));
        // A removed device takes its refresh record with it.
        store.remove_aor("bob").unwrap();
        assert!(store.due_refreshes(0, i64::MAX, 10).unwrap().is_empty());
        let left: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM refresh", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_devices() {
        let tmp = TempDir::new("migrate-v1");
        {
            let raw = Connection::open(tmp.db()).unwrap();
            raw.execute_batch(SCHEMA_V1).unwrap();
            raw.pragma_update(None, "user_version", 1).unwrap();
        }
        {
            // Written by the version-1 code: a device row.
            let raw = Connection::open(tmp.db()).unwrap();
            let d = dev("carol", "token:tok-c", "tok-c", 7);
            upsert_row(&raw, &d).unwrap();
        }
        let store = Store::open(&tmp.db()).unwrap();
        assert_eq!(user_version(&store.conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(store.devices("carol").unwrap().len(), 1);
        store.set_expiry("carol", "token:tok-c", Some(100)).unwrap();
        assert_eq!(store.due_refreshes(50, 200, 10).unwrap().len(), 1);
    }

    fn mirrored() -> (Store, Arc<std::sync::Mutex<Vec<WriteOp>>>) {
        let mut store = Store::open_memory().unwrap();
        let ops = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&ops);
        store.mirror_to(Box::new(move |op| sink.lock().unwrap().push(op)));
        (store, ops)
    }

    /// Every write that changes something is handed on, once, as the operation that makes the
    /// same change elsewhere; a write that changes nothing hands on nothing.
    #[test]
    fn a_mirrored_store_hands_on_each_change_once() {
        let (store, ops) = mirrored();
        let a = dev("alice", "<urn:uuid:a>", "ta", 100);
        store.upsert(&a).unwrap();
        // Unchanged within a minute: nothing written, nothing handed on.
        store
            .upsert(&Device {
                updated_at: 110,
                ..a.clone()
            })
            .unwrap();
        store
            .set_expiry("alice", "<urn:uuid:a>", Some(500))
            .unwrap();
        store.mark_refreshed("alice", "<urn:uuid:a>", 400).unwrap();
        // Removing what is not there hands on nothing (a REGISTER without push parameters).
        assert!(!store.remove("alice", "<urn:uuid:none>").unwrap());
        assert_eq!(store.remove_token("alice", "nope").unwrap(), 0);
        assert_eq!(store.remove_aor("nobody").unwrap(), 0);
        for i in 0..3 {
            store
                .upsert(&dev("bob", &format!("<urn:uuid:{i}>"), &format!("b{i}"), i))
                .unwrap();
        }
        let evicted = store.trim("bob", 2, "<urn:uuid:0>").unwrap();
        assert_eq!(evicted.len(), 1);
        assert_eq!(store.remove_token("bob", "b0").unwrap(), 1);
        assert!(store.remove("alice", "<urn:uuid:a>").unwrap());
        assert_eq!(store.remove_aor("bob").unwrap(), 1);
        let ops = ops.lock().unwrap().clone();
        let del = |aor: &str, id: &str| WriteOp::Remove {
            aor: aor.into(),
            device_id: id.into(),
        };
        assert_eq!(
            ops,
            vec![
                WriteOp::Upsert(a.clone()),
                WriteOp::SetExpiry {
                    aor: "alice".into(),
                    device_id: "<urn:uuid:a>".into(),
                    expires_at: Some(500)
                },
                WriteOp::MarkRefreshed {
                    aor: "alice".into(),
                    device_id: "<urn:uuid:a>".into(),
                    at: 400
                },
                WriteOp::Upsert(dev("bob", "<urn:uuid:0>", "b0", 0)),
                WriteOp::Upsert(dev("bob", "<urn:uuid:1>", "b1", 1)),
                WriteOp::Upsert(dev("bob", "<urn:uuid:2>", "b2", 2)),
                del("bob", "<urn:uuid:1>"),
                WriteOp::RemoveToken {
                    aor: "bob".into(),
                    prid: "b0".into()
                },
                del("alice", "<urn:uuid:a>"),
                WriteOp::RemoveAor { aor: "bob".into() },
            ]
        );
    }

    /// What the database holds is added: unknown devices, newer records; an older record never
    /// replaces a newer one, a device removed here since the last merge does not come back, and
    /// nothing merged is handed on.
    #[test]
    fn merge_adds_what_is_new_and_keeps_what_is_newer_here() {
        let (store, ops) = mirrored();
        let mine = dev("alice", "<urn:uuid:a>", "new-token", 200);
        store.upsert(&mine).unwrap();
        store
            .upsert(&dev("carol", "<urn:uuid:c>", "tc", 100))
            .unwrap();
        assert!(store.remove("carol", "<urn:uuid:c>").unwrap());
        ops.lock().unwrap().clear();
        let older_alice = dev("alice", "<urn:uuid:a>", "old-token", 150);
        let bob = dev("bob", "<urn:uuid:b>", "tb", 100);
        let newer_dave = dev("dave", "<urn:uuid:d>", "td2", 300);
        store
            .upsert(&dev("dave", "<urn:uuid:d>", "td1", 100))
            .unwrap();
        ops.lock().unwrap().clear();
        let stale_carol = dev("carol", "<urn:uuid:c>", "tc", 100);
        // In two parts: the removal guard holds until the last.
        let first = store
            .merge(&[older_alice, bob.clone()], &[], false)
            .unwrap();
        assert_eq!(first, ["bob"]);
        let aors = store
            .merge(
                &[newer_dave.clone(), stale_carol],
                &[
                    ("bob".into(), "<urn:uuid:b>".into(), 1000, None),
                    ("ghost".into(), "x".into(), 1, None),
                ],
                true,
            )
            .unwrap();
        assert_eq!(aors, ["dave"]);
        assert_eq!(store.devices("alice").unwrap(), vec![mine]);
        assert_eq!(store.devices("bob").unwrap(), vec![bob.clone()]);
        assert_eq!(store.devices("dave").unwrap(), vec![newer_dave]);
        assert!(store.devices("carol").unwrap().is_empty());
        assert_eq!(
            store.due_refreshes(900, 1100, 10).unwrap(),
            vec![(bob, 1000)]
        );
        assert!(
            ops.lock().unwrap().is_empty(),
            "merged records are not written back"
        );
        // The removal guard lasts until that merge only.
        let carol_again = dev("carol", "<urn:uuid:c>", "tc", 100);
        assert_eq!(store.merge(&[carol_again], &[], true).unwrap(), ["carol"]);
    }
}

//! A PostgreSQL server of the test's own: Debian's `postgresql` package (its binaries in
//! `/usr/lib/postgresql/<version>/bin`), never its stock cluster or service. [`Postgres::start`]
//! creates a data directory under /tmp (`initdb`), starts `postgres` on a port of
//! the harness's allocator, listening on 127.0.0.1 only (or the address [`Postgres::start_at`]
//! names), with its unix socket in its own directory, and creates a login role with a password and a database it owns. The server runs as
//! the `postgres` user when the tests run as root (PostgreSQL refuses root), through `runuser`.
//! [`Postgres::stop`] and [`Postgres::start_again`] stop and restart the same server (same data,
//! same port); dropping the handle stops it and removes its directory.
//!
//! Connections over TCP (the module's) must give the password (scram-sha-256); the harness's own
//! administration ([`Postgres::psql`]) goes through the unix socket as the superuser.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The user PostgreSQL runs as when the tests run as root.
const OS_USER: &str = "postgres";

/// A running (or stopped) test server.
pub struct Postgres {
    /// Everything of this server: `data/`, `socket/`, `server.log`.
    pub dir: PathBuf,
    pub port: u16,
    /// The role the module logs in as, its password and its database.
    pub user: String,
    pub password: String,
    pub database: String,
    /// The address it listens on for the module's connections.
    pub host: String,
    bin: PathBuf,
    running: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with initdb, pg_ctl and postgres.
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "psql"]
                .iter()
                .all(|b| bin.join(b).is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Creates and starts a server; `name` names its directory. Panics with the server's log
    /// when it cannot start.
    pub fn start(name: &str) -> Postgres {
        Postgres::start_at(name, "127.0.0.1", "127.0.0.1/32")
    }

    /// [`Postgres::start`] listening on `host` (an address of the test's), accepting password
    /// logins from the `clients` network (CIDR, e.g. `10.77.0.0/24`): Kamailio nodes in network
    /// namespaces of their own.
    pub fn start_at(name: &str, host: &str, clients: &str) -> Postgres {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir().expect(
            "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql \
             (scripts/setup.sh does)",
        );
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        // Under /tmp rather than the target dir (or $TMPDIR): the postgres user must reach it
        // whoever owns the checkout, and the socket path must stay short (108 bytes at most).
        let dir =
            PathBuf::from("/tmp").join(format!("kpush-pg-{}-{seq}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("socket")).unwrap();
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let mut pg = Postgres {
            port: crate::free_port(),
            user: "kamailio_push".to_string(),
            password: format!("pgS3cret{unique:08x}x{seq}"),
            database: "push".to_string(),
            host: host.to_string(),
            dir,
            bin,
            running: false,
        };
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", &format!("{OS_USER}:{OS_USER}")])
                .arg(&pg.dir)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cannot hand {} to {OS_USER}",
                pg.dir.display()
            );
        }
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb failed:\n{}", text(&out));
        if clients != "127.0.0.1/32" {
            let hba = pg.data().join("pg_hba.conf");
            let mut rules = fs::read_to_string(&hba).unwrap();
            rules.push_str(&format!("host all all {clients} scram-sha-256\n"));
            fs::write(&hba, rules).unwrap();
        }
        pg.start_again();
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'; CREATE DATABASE {} OWNER {};",
            pg.user, pg.password, pg.database, pg.user
        );
        for statement in sql.split_inclusive(';') {
            pg.psql("postgres", statement.trim())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The `db_url` the module uses: TCP on its address (127.0.0.1), with the password.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.database
        )
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// One of the server's binaries, as the postgres user when running as root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", OS_USER, "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// Starts the server (again, after [`Postgres::stop`]: same data, same port) and waits until
    /// it accepts connections. Up to 120 connections: usrloc with `db_mode` 3 opens one per
    /// Kamailio process (a test node has about 20).
    pub fn start_again(&mut self) {
        let options = format!(
            "-c port={} -c listen_addresses={} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=16MB -c max_connections=120",
            self.port,
            self.host,
            self.socket_dir().display()
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.log_path().display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "PostgreSQL did not start:\n{}\n{}",
            text(&out),
            self.log_text()
        );
        self.running = true;
    }

    /// Stops the server (fast: connections are closed at once), keeping its data.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "PostgreSQL did not stop:\n{}",
            text(&out)
        );
        self.running = false;
    }

    /// Runs `sql` with psql as the superuser on `database` (unix socket); the rows as
    /// `a|b` lines.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!("psql {sql:?} failed: {}", text(&out)))
        }
    }

    /// [`Postgres::psql`] on the module's database.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        self.psql(&self.database, sql)
    }

    /// Waits until `sql` on the module's database returns `want`.
    pub fn wait_for(&self, sql: &str, want: &str, timeout: Duration) -> Result<(), String> {
        let until = Instant::now() + timeout;
        loop {
            let got = self.query(sql);
            if got.as_deref() == Ok(want) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!("{sql:?}: wanted {want:?}, got {got:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "10", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log ({}) ---\n{}",
                self.log_path().display(),
                self.log_text()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Postgres {
    /// cfg-examples/push-registrar.cfg with its `db_url` modparam naming this server, written to
    /// `dir` (the URL in the modparam line itself, as an operator would write it: passed as a
    /// `-A` define, Kamailio's own preprocessor would echo it at debug level 3).
    pub fn registrar_cfg(&self, dir: &std::path::Path) -> PathBuf {
        let example =
            fs::read_to_string(crate::repo_root().join("cfg-examples/push-registrar.cfg")).unwrap();
        let line = "modparam(\"push\", \"db_url\", PUSH_DB)";
        assert!(example.contains(line), "push-registrar.cfg has no '{line}'");
        let cfg = dir.join("push-registrar-pg.cfg");
        let text = example.replace(
            line,
            &format!("modparam(\"push\", \"db_url\", \"{}\")", self.url()),
        );
        fs::write(&cfg, text).unwrap();
        cfg
    }
}

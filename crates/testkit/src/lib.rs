//! The test kit every kamailio-push test and benchmark shares.
//!
//! - This file: the harness. A real Kamailio per test, on its own ports, with its own run
//!   directory, ctl socket and log; stopped (and its whole process group with it) when the handle
//!   drops. When a test fails, the log is printed. sipp and kamcmd drivers.
//! - [`mock_push`]: local APNs (HTTP/2 over TLS), FCM (OAuth + HTTP v1) servers that check requests
//!   as the real services do.
//! - [`push_server`]: the one record-and-answer HTTP server (webhook endpoint).
//! - [`wake`]: the wake-up call flow (registrar config, phones, callers).
//! - [`netns`]: re-running a test inside private mount and network namespaces.
//! - [`postgres`]: a PostgreSQL server of the test's own (the shared device store's tests).
//! - [`cluster`]: several Kamailio nodes, each in its own network namespace with its own address,
//!   linked to the test's namespace (links that can be cut), sharing a PostgreSQL device store.

pub mod cluster;
pub mod mock_push;
pub mod netns;
pub mod postgres;
pub mod push_server;
pub mod wake;

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The repository's root: cfg-examples/, tests/sipp/ and the workspace's Cargo.toml live there.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Scratch space under the target directory (`target/tmp`, cargo's CARGO_TARGET_TMPDIR), found
/// from the running test or benchmark binary (`target/<profile>/deps/<name>`).
pub fn target_tmpdir() -> PathBuf {
    let exe = std::env::current_exe().expect("no current executable");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let dir = target.join("tmp");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Debian's module directory, used when the tests run against the installed package.
pub const DEBIAN_MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// The Kamailio the tests start: `$KAMAILIO_BIN` (the variable build.rs checks the headers against,
/// set by scripts/test-kamailio.sh for a Kamailio built by scripts/build-kamailio.sh), else the
/// installed `kamailio`.
pub fn kamailio_bin() -> PathBuf {
    std::env::var_os("KAMAILIO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kamailio"))
}

/// The prefix of a Kamailio built into its own directory (`<prefix>/sbin/kamailio`), if the tests
/// run against one.
fn built_prefix() -> Option<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("KAMAILIO_BIN")?);
    Some(bin.parent()?.parent()?.to_path_buf())
}

/// Kamailio's own modules: `$KAMAILIO_MODULES`, else `<prefix>/lib/kamailio/modules` of a built
/// Kamailio, else Debian's directory.
pub fn system_modules() -> String {
    if let Some(dir) = std::env::var_os("KAMAILIO_MODULES") {
        return dir.to_string_lossy().into_owned();
    }
    match built_prefix() {
        Some(prefix) => prefix.join("lib/kamailio/modules").display().to_string(),
        None => DEBIAN_MODULES.to_string(),
    }
}

/// The kamcmd matching the Kamailio under test: the built one beside `$KAMAILIO_BIN`, else the
/// installed `kamcmd`.
pub fn kamcmd_bin() -> PathBuf {
    built_prefix()
        .map(|prefix| prefix.join("sbin/kamcmd"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kamcmd"))
}

/// True when the tests run against a Kamailio built by scripts/build-kamailio.sh rather than the
/// installed Debian package.
pub fn testing_built_kamailio() -> bool {
    std::env::var_os("KAMAILIO_BIN").is_some()
}

/// The module built with the tests: target/<profile>/libkamailio_push.so, or $PUSH_MODULE.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PUSH_MODULE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let so = profile_dir.join("libkamailio_push.so");
    assert!(
        so.is_file(),
        "module not built: {} is missing",
        so.display()
    );
    so
}

static NEXT_TMP: AtomicUsize = AtomicUsize::new(0);

/// A directory holding `push.so` (a link to the built module), so configs can say `loadmodule "push.so"`.
pub fn module_dir() -> PathBuf {
    let dir = crate::target_tmpdir().join("modules");
    fs::create_dir_all(&dir).unwrap();
    let link = dir.join("push.so");
    // Other tests (threads, or test binaries running at once) start Kamailio from the same
    // directory: the link is replaced atomically (a new link renamed over the old one), so it is
    // never missing while one of them looks for push.so.
    let target = module_path();
    if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let tmp = dir.join(format!(
            ".push.so.{}.{}",
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).expect("cannot link the module");
        fs::rename(&tmp, &link).expect("cannot place the module link");
    }
    dir
}

/// The `-L` search path: the built module first, then Kamailio's own modules.
pub fn module_search_path() -> String {
    format!("{}:{}", module_dir().display(), system_modules())
}

/// A fresh directory under the target dir for one test run.
pub fn run_dir(name: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = crate::target_tmpdir().join("runs").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The address the tests' Kamailio instances listen on and their clients (sipp) use, unless a
/// setup says otherwise.
pub const LOCALHOST: &str = "127.0.0.1";

/// What a config needs to know about the instance it runs in.
pub struct Setup {
    pub dir: PathBuf,
    pub sip_port: u16,
    /// The address Kamailio listens on (127.0.0.1 unless the test gives it another one): sipp
    /// sends there.
    pub sip_ip: String,
    /// The test's own address as this Kamailio sees it: sipp phones and callers bind there
    /// (127.0.0.1 unless Kamailio runs in a network namespace of its own).
    pub client_ip: String,
    /// Run Kamailio in this network namespace (a `/proc/<pid>/ns/net` path, entered with nsenter,
    /// which execs: the harness still holds Kamailio's own pid).
    pub netns: Option<PathBuf>,
    pub ctl: PathBuf,
    /// Extra environment for Kamailio (e.g. SSL_CERT_FILE to trust a test CA).
    pub env: Vec<(String, String)>,
    /// Load modules from Kamailio's module directory only (an installed package's push.so),
    /// not the module built with the tests.
    pub installed_modules: bool,
    /// Run Kamailio as this user (as Debian's kamailio.service does), through setpriv (which
    /// execs, so the harness still holds Kamailio's own pid); the run directory is handed to
    /// that user.
    pub run_as: Option<String>,
}

impl Setup {
    pub fn new(name: &str) -> Setup {
        Setup::in_dir(run_dir(name))
    }

    /// A setup in an existing run directory (a restart that keeps the device store), on a new port.
    pub fn in_dir(dir: PathBuf) -> Setup {
        // The ctl module's default socket under Kamailio's runtime dir (-Y), as configs without a
        // binrpc parameter get it.
        let ctl = dir.join("kamailio_ctl");
        Setup {
            dir,
            sip_port: free_port(),
            sip_ip: LOCALHOST.to_string(),
            client_ip: LOCALHOST.to_string(),
            netns: None,
            ctl,
            env: Vec::new(),
            installed_modules: false,
            run_as: None,
        }
    }

    /// The `PUSH_DB` define of the example configs: this run's own device store.
    pub fn db_define(&self) -> String {
        format!("\"sqlite://{}/push.sqlite\"", self.dir.display())
    }

    /// The preamble every generated config starts with: listeners, ctl, the push module.
    pub fn preamble(&self, debug: i32) -> String {
        format!(
            "#!KAMAILIO\n\
             debug={debug}\n\
             log_stderror=yes\n\
             children=2\n\
             tcp_children=2\n\
             auto_aliases=no\n\
             listen=udp:{ip}:{port}\n\
             listen=tcp:{ip}:{port}\n\
             loadmodule \"ctl.so\"\n\
             modparam(\"ctl\", \"binrpc\", \"unix:{ctl}\")\n\
             loadmodule \"tm.so\"\n\
             loadmodule \"push.so\"\n\
             modparam(\"push\", \"db_url\", \"sqlite://{db}\")\n",
            ip = self.sip_ip,
            port = self.sip_port,
            ctl = self.ctl.display(),
            db = self.dir.join("push.sqlite").display()
        )
    }
}

/// A running Kamailio.
pub struct Kamailio {
    pub setup: Setup,
    child: Option<Child>,
    pub log: PathBuf,
    pub pid: u32,
}

/// Runs `kamailio -c` on a config file; returns (success, output).
pub fn check_config(cfg: &Path, defines: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(kamailio_bin());
    cmd.arg("-c")
        .arg("-f")
        .arg(cfg)
        .arg("-L")
        .arg(module_search_path());
    for (k, v) in defines {
        cmd.arg("-A").arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("cannot run kamailio");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Kamailio {
    /// Starts Kamailio with this config text and waits until its ctl socket answers.
    pub fn start(setup: Setup, cfg: &str) -> Kamailio {
        let mut k = Kamailio::spawn(setup, cfg, &[]);
        k.wait_ready();
        k
    }

    /// Starts Kamailio with a config file from cfg-examples/ and `-A NAME=value` defines, and waits
    /// until it answers.
    pub fn start_example(setup: Setup, example: &str, defines: &[(&str, &str)]) -> Kamailio {
        let cfg = crate::repo_root().join("cfg-examples").join(example);
        Kamailio::start_file(setup, &cfg, defines)
    }

    /// Starts Kamailio with any config file that takes `-A SIP_PORT=<port>` (set here) and more
    /// defines, and waits until it answers.
    pub fn start_file(setup: Setup, cfg: &Path, defines: &[(&str, &str)]) -> Kamailio {
        let port = setup.sip_port.to_string();
        let mut all: Vec<(&str, &str)> = vec![("SIP_PORT", port.as_str())];
        all.extend_from_slice(defines);
        let mut k = Kamailio::spawn_file(setup, cfg, &all);
        k.wait_ready();
        k
    }

    /// Starts Kamailio without waiting (for tests that expect it to fail).
    pub fn spawn(setup: Setup, cfg: &str, defines: &[(&str, &str)]) -> Kamailio {
        let cfg_path = setup.dir.join("kamailio.cfg");
        fs::write(&cfg_path, cfg).unwrap();
        Kamailio::spawn_file(setup, &cfg_path, defines)
    }

    pub fn spawn_file(setup: Setup, cfg_path: &Path, defines: &[(&str, &str)]) -> Kamailio {
        remember_panics();
        let log = setup.dir.join("kamailio.log");
        let log_file = fs::File::create(&log).unwrap();
        // The program and what comes before Kamailio's own arguments.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = &setup.netns {
            argv.push("nsenter".into());
            argv.push(format!("--net={}", ns.display()).into());
            argv.push("--".into());
        }
        if let Some(user) = &setup.run_as {
            let owned = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&setup.dir)
                .status()
                .expect("cannot run chown");
            assert!(
                owned.success(),
                "cannot hand {} to {user}",
                setup.dir.display()
            );
            argv.push("setpriv".into());
            argv.push(format!("--reuid={user}").into());
            argv.push(format!("--regid={user}").into());
            argv.push("--init-groups".into());
            argv.push("--".into());
        }
        argv.push(kamailio_bin().into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let modules = if setup.installed_modules {
            system_modules()
        } else {
            module_search_path()
        };
        cmd.arg("-DD")
            .arg("-E")
            .arg("-f")
            .arg(cfg_path)
            .arg("-L")
            .arg(modules)
            .arg("-Y")
            .arg(&setup.dir)
            .arg("-w")
            .arg(&setup.dir)
            .arg("-P")
            .arg(setup.dir.join("kamailio.pid"))
            .arg("-m")
            .arg(std::env::var("KAMAILIO_SHM_MB").unwrap_or_else(|_| "64".to_string()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            // Its own process group, so that cleanup can reach every process it forked.
            .process_group(0);
        for (k, v) in defines {
            cmd.arg("-A").arg(format!("{k}={v}"));
        }
        for (k, v) in &setup.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("cannot start kamailio");
        let pid = child.id();
        Kamailio {
            setup,
            child: Some(child),
            log,
            pid,
        }
    }

    pub fn sip_port(&self) -> u16 {
        self.setup.sip_port
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "kamailio exited during startup ({status}):\n{}",
                    self.log_text()
                );
            }
            if self.setup.ctl.exists() && self.kamcmd(&["core.version"]).is_ok() {
                self.wait_settled(deadline);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kamailio not ready after 15 s:\n{}", self.log_text());
    }

    /// Waits until Kamailio has forked all of its processes and each of them has run. ctl answers
    /// before the main process forks the TCP processes, and a child that receives SIGTERM before
    /// its first instruction after fork() takes the signal for the main process's (Kamailio's
    /// fork_process clears `_ksr_is_main` only then): that child never exits and a shutdown waits
    /// for it until ser_kill_timeout. Tests that stop Kamailio right after it starts would then see
    /// a hang that no operator meets, so the harness waits until the process list has stopped
    /// growing and every process in it is waiting (state S in /proc), up to the start deadline.
    fn wait_settled(&self, deadline: Instant) {
        // main.c logs how many processes it will have ("processes (at least): 11").
        let expected: usize = self
            .log_text()
            .lines()
            .find_map(|l| l.split("processes (at least): ").nth(1))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let mut previous: Vec<i32> = Vec::new();
        while Instant::now() < deadline {
            let pids: Vec<i32> = self
                .kamcmd(&["core.psx"])
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().strip_prefix("PID: "))
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            let waiting = pids.iter().all(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        // `pid (comm) S ...`: the state follows the last ')'.
                        let rest = &stat[stat.rfind(')')? + 1..];
                        rest.split_whitespace().next().map(|s| s == "S")
                    })
                    .unwrap_or(false)
            });
            if !pids.is_empty() && pids.len() >= expected && pids == previous && waiting {
                return;
            }
            previous = pids;
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Waits for the process to exit on its own (e.g. a refused config).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kamcmd(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(kamcmd_bin())
            .arg("-s")
            .arg(format!("unix:{}", self.setup.ctl.display()))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() && !stdout.starts_with("error:") {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{stderr}"))
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Pid of the process whose `core.psx` description is `desc`.
    pub fn process_pid(&self, desc: &str) -> Option<i32> {
        let psx = self.kamcmd(&["core.psx"]).ok()?;
        let mut pid = None;
        for line in psx.lines().map(str::trim) {
            if let Some(p) = line.strip_prefix("PID: ") {
                pid = p.trim().parse().ok();
            }
            if line.strip_prefix("DSC: ") == Some(desc) {
                return pid;
            }
        }
        None
    }

    /// Sends SIGTERM to the main process and waits for it (and its children) to exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(Duration::from_secs(10))
    }

    /// [`Kamailio::stop`] with its own limit (SIGKILL to the group after it).
    pub fn stop_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: signals a process this handle started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            eprintln!(
                "kamailio (pid {}) still running {limit:?} after SIGTERM; what is left of it:\n{}",
                child.id(),
                describe_group(child.id() as i32)
            );
            kill_group(child.id() as i32);
            let _ = child.wait();
        }
        status
    }

    /// The address sipp reaches this Kamailio at.
    pub fn sip_ip(&self) -> &str {
        &self.setup.sip_ip
    }

    /// Starts sipp with a scenario from tests/sipp (or a path) against this Kamailio, from the
    /// test's address as this Kamailio sees it, in its run directory.
    pub fn sipp(&self, scenario: &str, extra: &[&str]) -> Sipp {
        Sipp::spawn_to(
            scenario,
            (&self.setup.sip_ip, self.setup.sip_port),
            &self.setup.client_ip,
            extra,
            &self.setup.dir,
        )
    }

    /// `kill -9` of the whole process group (the main process and every child at once, as the
    /// kernel's OOM killer or an operator's `kill -9 -- -<pgid>` would), then reaps the main
    /// process. The handle is then spent: dropping it does nothing more.
    pub fn kill9(&mut self) {
        kill_group(self.pid as i32);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(self.pid as i32) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The raw child, for tests that signal it themselves.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }
}

/// Every process of process group `pgid`: pid, name, state, where it waits in the kernel, and
/// (with gdb installed) each thread's stack, for a test that found Kamailio not stopping.
pub fn describe_group(pgid: i32) -> String {
    let mut out = String::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        out.push_str(&format!(
            "pid {pid} state {} wchan {wchan} {}\n",
            fields.first().unwrap_or(&"?"),
            cmdline.chars().take(80).collect::<String>()
        ));
        if let Ok(bt) = Command::new("gdb")
            .args([
                "-batch",
                "-nx",
                "-p",
                &pid.to_string(),
                "-ex",
                "thread apply all bt 12",
            ])
            .output()
        {
            let text = String::from_utf8_lossy(&bt.stdout);
            for line in text
                .lines()
                .filter(|l| l.starts_with('#') || l.starts_with("Thread"))
            {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Does any process of this process group still exist?
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

pub fn kill_group(pgid: i32) {
    // SAFETY: kills the process group this harness created for one Kamailio.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .map(|rest| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Why each failing test thread panicked (the start of its message), kept by a panic hook so that
/// a Kamailio dropped during the panic can say it again after its log: a long log otherwise
/// pushes the message out of view (CI shows only the end of the output).
static PANICS: std::sync::Mutex<Vec<(std::thread::ThreadId, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Installs (once) a panic hook that records the message and then does what the previous hook did.
fn remember_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.to_string();
            let short: String = text.chars().take(600).collect();
            if let Ok(mut panics) = PANICS.lock() {
                panics.retain(|(id, _)| *id != std::thread::current().id());
                panics.push((std::thread::current().id(), short));
            }
            previous(info);
        }));
    });
}

/// The recorded panic message of the current thread, if any.
fn this_threads_panic() -> Option<String> {
    let id = std::thread::current().id();
    PANICS
        .lock()
        .ok()?
        .iter()
        .find(|(t, _)| *t == id)
        .map(|(_, m)| m.clone())
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pgid = self.pid as i32;
        self.stop();
        // Whatever is left of its process group goes too.
        if group_alive(pgid) {
            kill_group(pgid);
        }
        let log = self.log_text();
        if !std::thread::panicking() && log.contains("exited by a signal") {
            panic!("a Kamailio process crashed:\n{log}");
        }
        if std::thread::panicking() {
            eprintln!(
                "----- kamailio log ({}) -----\n{}\n----- end of log -----",
                self.log.display(),
                self.log_text()
            );
            if let Some(why) = this_threads_panic() {
                eprintln!(
                    "----- the test {} failed: {why} (more above) -----",
                    std::thread::current().name().unwrap_or("?")
                );
            }
        }
    }
}

/// The value of `key: value` at the first line that has it in kamcmd output.
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|l| {
        l.strip_prefix(&format!("{key}: "))
            .map(|v| v.trim().to_string())
    })
}

/// Runs sipp with a scenario from tests/sipp against this Kamailio; returns (success, output).
pub fn sipp(scenario: &str, target_port: u16, extra: &[&str], dir: &Path) -> (bool, String) {
    let scenario = crate::repo_root().join("tests/sipp").join(scenario);
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{target_port}"))
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .args(["-m", "1", "-timeout", "15s", "-timeout_error", "-nostdin"])
        .arg("-trace_err")
        .args(extra)
        .current_dir(dir)
        .output()
        .expect("cannot run sipp");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A sipp run in the background.
pub struct Sipp {
    child: Option<Child>,
    out: PathBuf,
    pub name: String,
}

impl Sipp {
    /// Starts sipp with a scenario from tests/sipp (or a path) against 127.0.0.1:`port`.
    pub fn spawn(scenario: &str, port: u16, extra: &[&str], dir: &Path) -> Sipp {
        Sipp::spawn_to(scenario, (LOCALHOST, port), LOCALHOST, extra, dir)
    }

    /// Starts sipp with a scenario from tests/sipp (or a path) against `target` (address, port),
    /// bound to `local_ip` (on a port of its own unless `extra` has `-p`).
    pub fn spawn_to(
        scenario: &str,
        target: (&str, u16),
        local_ip: &str,
        extra: &[&str],
        dir: &Path,
    ) -> Sipp {
        let path = if scenario.contains('/') {
            PathBuf::from(scenario)
        } else {
            crate::repo_root().join("tests/sipp").join(scenario)
        };
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{}-{}",
            path.file_stem().unwrap().to_string_lossy(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = dir.join(format!("{name}.out"));
        let file = fs::File::create(&out).unwrap();
        let mut cmd = Command::new("sipp");
        cmd.arg(format!("{}:{}", target.0, target.1))
            .arg("-sf")
            .arg(&path)
            .args(["-i", local_ip]);
        if !extra.contains(&"-p") {
            cmd.arg("-p").arg(free_port().to_string());
        }
        if !extra.contains(&"-m") {
            cmd.args(["-m", "1"]);
        }
        let child = cmd
            .args([
                "-timeout",
                "40s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
                "-trace_msg",
            ])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot run sipp");
        Sipp {
            child: Some(child),
            out,
            name,
        }
    }

    /// Waits for sipp to finish; returns (success, its output and message trace).
    pub fn wait(mut self, timeout: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut text = fs::read_to_string(&self.out).unwrap_or_default();
        if let Some(dir) = self.out.parent() {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = entry.path();
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                let stem = Path::new(&self.name)
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let scenario = stem
                    .rsplit_once('-')
                    .map(|(s, _)| s.to_string())
                    .unwrap_or(stem);
                if n.starts_with(&scenario)
                    && (n.ends_with("_errors.log") || n.ends_with("_messages.log"))
                {
                    text.push_str(&format!("\n--- {n} ---\n"));
                    text.push_str(&fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
        (status.map(|s| s.success()).unwrap_or(false), text)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` until it returns true or the timeout passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

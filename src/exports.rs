//! What Kamailio looks up when it loads push.so: `exports`, `module_version`, `module_flags`; and
//! the init hooks those point at.

use super::logger::KamailioLog;
use super::params::PARAMS;
use super::rpc::RPC_METHODS;
use super::script::{CMDS, CONTINUING_FAILED, CONTINUING_RELAY, FAILED_ALL_PUSHES, FAILED_TIMEOUT};
use super::state::{self, Globals, ResumeTarget, PARAM_VALUES};
use super::sys;
use super::{guard, sys::cmd_export_t};
use push_core::calls::CallEnd;
use push_core::config::Config;
use push_core::devices::index::AorIndex;
use push_core::devices::store::{DbUrl, Store};
use push_core::dispatcher::{self, Host};
use push_core::ipc::message::{Answer, CallKey, Question};
use push_core::ipc::queue::Queue;
use push_core::ipc::reply;
use push_core::shared::Shared;
use std::ffi::{c_char, c_int, CString};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A pointer that may live in a static (it points at constant data).
#[repr(transparent)]
pub struct StaticStr(*const c_char);
// SAFETY: points at an immutable, NUL-terminated byte string for the whole life of the library.
unsafe impl Sync for StaticStr {}

/// Compared by Kamailio, byte for byte, with its own SER_FULL_VERSION.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static module_version: StaticStr = StaticStr(sys::MODULE_VERSION.as_ptr() as *const c_char);

/// Compared by Kamailio, byte for byte, with its own SER_COMPILE_FLAGS.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static module_flags: StaticStr = StaticStr(sys::MODULE_FLAGS.as_ptr() as *const c_char);

/// The module's description for Kamailio.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut exports: sys::module_exports = sys::module_exports {
    // Module name: modparam("push", ...).
    name: c"push".as_ptr() as *mut c_char,
    // dlopen flags: Kamailio's default (RTLD_NOW).
    dlflags: 0,
    // Script functions.
    cmds: addr_of_mut!(CMDS) as *mut cmd_export_t,
    // Module parameters.
    params: addr_of_mut!(PARAMS) as *mut sys::param_export_t,
    // RPC commands.
    rpc_methods: addr_of_mut!(RPC_METHODS) as *mut sys::rpc_export_t,
    // Pseudo-variables: none.
    pv_items: null_mut(),
    // Reply hook: none.
    response_f: None,
    init_mod_f: Some(mod_init),
    init_child_f: Some(child_init),
    destroy_mod_f: Some(mod_destroy),
};

/// Called by Kamailio right after loading the library: makes KSR.push.* known to KEMI engines.
#[no_mangle]
pub unsafe extern "C" fn mod_register(
    _path: *mut c_char,
    _dlflags: *mut c_int,
    _reserved1: *mut std::ffi::c_void,
    _reserved2: *mut std::ffi::c_void,
) -> c_int {
    guard::call("mod_register", -1, || {
        // Kamailio's logger from the start: modparam checks log while the config is parsed.
        push_core::log::set_backend(Box::new(KamailioLog));
        // SAFETY: registers a plain function without arguments, run when the process exits.
        unsafe { libc::atexit(check_at_exit) };
        // SAFETY: the export table is static and lives as long as the library.
        if unsafe { sys::push_shim_kemi_register() } < 0 {
            -1
        } else {
            0
        }
    })
}

/// `kamailio -c` parses the config and exits without mod_init, so a check across parameters
/// (`default_app` naming an app declared anywhere in the config, before or after it) has no other
/// place to run: at exit, in `-c` mode only, the whole parameter set is checked as mod_init would,
/// and a bad one makes the exit status 255 with the same line mod_init would log. (Each parameter
/// on its own was checked as the parser met it, params.rs.)
extern "C" fn check_at_exit() {
    // SAFETY: a plain int Kamailio's main() sets while it reads its command line.
    if unsafe { sys::config_check } == 0 {
        return;
    }
    let failed = guard::call("config check", false, || {
        let Ok(params) = PARAM_VALUES.lock() else {
            return false;
        };
        match Config::from_params(&params) {
            Ok(_) => false,
            Err(e) => {
                push_core::error!("{e}");
                true
            }
        }
    });
    if failed {
        // SAFETY: flushes stdio (Kamailio printed its listen addresses to stdout) and ends the
        // process at once with a failing status; no other exit handler needs to run.
        unsafe {
            libc::fflush(null_mut());
            libc::_exit(255);
        }
    }
}

unsafe extern "C" fn mod_init() -> c_int {
    guard::call("mod_init", -1, || match init() {
        Ok(()) => 0,
        Err(message) => {
            push_core::error!("{message}");
            -1
        }
    })
}

/// Checks the parameters and builds what every process will inherit. Runs once, in the main
/// process, before any fork: no thread may be started here.
fn init() -> Result<(), String> {
    push_core::log::refresh_level();
    guard::install_panic_hook();
    let params = std::mem::take(&mut *PARAM_VALUES.lock().map_err(|_| "parameter list poisoned")?);
    let mut config = Config::from_params(&params).map_err(|e| e.to_string())?;
    // SAFETY: called in mod_init, after tm's own mod_init; fills the shim's tm binding.
    if unsafe { sys::push_shim_bind_tm() } < 0 {
        return Err(
            "the push module needs tm: loadmodule \"tm.so\" before \"push.so\"".to_string(),
        );
    }
    push_core::info!(
        "kamailio-push {} built for Kamailio {}",
        sys::PUSH_VERSION,
        sys::built_for()
    );
    let name = CString::new(config.resume_route.clone()).map_err(|_| "bad resume_route")?;
    // SAFETY: the routing script (or the KEMI engine choice) is parsed before mod_init.
    let resume = if unsafe { sys::push_shim_kemi_engine() } != 0 {
        // The KEMI script is loaded per process after fork: its functions cannot be checked here.
        push_core::info!(
            "held calls continue into the KEMI function {}()",
            config.resume_route
        );
        ResumeTarget::Kemi(name)
    } else {
        // SAFETY: the name is NUL-terminated; route_lookup only reads the parsed route table.
        let route = unsafe { sys::push_shim_route_lookup(name.as_ptr()) };
        if route < 0 {
            return Err(format!(
                "invalid value \"{0}\" for modparam(\"push\", \"resume_route\", ...): the script has no route[{0}]",
                config.resume_route
            ));
        }
        ResumeTarget::Route(route)
    };
    if config.auto_resume {
        let mut use_domain: c_int = 0;
        // SAFETY: binds usrloc's API if the module is loaded; the out-parameter is a plain int.
        if unsafe { sys::push_shim_bind_usrloc(&mut use_domain) } == 0 {
            config.use_domain = use_domain != 0;
            // SAFETY: binds registrar's API if loaded (used to add branches for late devices).
            if unsafe { sys::push_shim_bind_registrar() } < 0 {
                push_core::warn!("registrar is not loaded: a device that wakes after another one took the call will not join it");
            }
            // SAFETY: usrloc is bound; registering callbacks in mod_init is what usrloc expects.
            if unsafe { sys::push_shim_register_ulcb() } < 0
                || unsafe { sys::push_shim_register_script_cbs() } < 0
            {
                return Err("cannot register the usrloc and script callbacks".to_string());
            }
        } else {
            push_core::warn!(
                "usrloc is not loaded: devices are learned only through push_register(), calls resumed \
                 only through push_resume() (set auto_resume to 0 to silence this)"
            );
        }
    }
    if config.enable_dmq {
        let peer = CString::new(push_core::ipc::cluster::DMQ_PEER).map_err(|_| "bad peer name")?;
        // SAFETY: mod_init, after dmq's own mod_init (dmq loaded before push); the peer name is
        // copied by dmq into shared memory.
        match unsafe { sys::push_shim_bind_dmq(peer.as_ptr()) } {
            0 => push_core::info!(
                "DMQ peer \"{}\" registered: fresh registrations are told to the other nodes",
                push_core::ipc::cluster::DMQ_PEER
            ),
            -1 => {
                return Err("modparam(\"push\", \"enable_dmq\", 1) needs the dmq module: \
                     loadmodule \"dmq.so\" before \"push.so\""
                    .to_string())
            }
            -2 => return Err("enable_dmq: cannot bind the dmq module's API".to_string()),
            _ => {
                return Err(format!(
                    "enable_dmq: dmq refused the peer \"{}\" (is dmq loaded before push, and the peer not registered twice?)",
                    push_core::ipc::cluster::DMQ_PEER
                ))
            }
        }
    }
    // Open (and create) the store here, so a bad db_url stops Kamailio at startup, and fill the
    // shared AOR index before the workers exist. The connection is closed before fork.
    let index = AorIndex::create(config.aor_index_size).map_err(|e| {
        format!(
            "cannot map the AOR index of {} slots: {e}",
            config.aor_index_size
        )
    })?;
    match &config.db {
        DbUrl::Sqlite(path) => {
            let store = Store::open(path).map_err(|e| {
                format!("invalid db_url for modparam(\"push\", \"db_url\", ...): {e}")
            })?;
            let aors = store
                .aors()
                .map_err(|e| format!("cannot read the device store: {e}"))?;
            for aor in &aors {
                index.insert(aor);
            }
            push_core::info!(
                "device store {}: {} AOR(s) with push devices",
                path.display(),
                aors.len()
            );
        }
        // Never a connection here (a database that is down must not stop Kamailio, and no
        // connection may cross fork): the dispatcher connects, creates the schema and fills the
        // index as soon as it runs, and again whenever the database comes back.
        DbUrl::Postgres(url) => push_core::info!(
            "device store {url} (shared by every node): the push dispatcher connects to it and \
             loads the stored devices into the AOR index"
        ),
    }
    // Every app's credentials must be usable now: a bad key stops Kamailio with the app's name.
    // The clients built here are dropped before fork; the dispatcher builds its own.
    let http = push_core::providers::webhook::client()?;
    let mut projects = Vec::new();
    for app in &config.apps {
        let declared = if app.from_file {
            "modparam(\"push\", \"apps_file\", ...): app"
        } else {
            "modparam(\"push\", \"app\", ...)"
        };
        let pusher = push_core::providers::AppPusher::build(app, &config.fcm_url, &http)
            .map_err(|e| format!("{declared} id={}: {e}", app.id))?;
        if let Some(project) = pusher.fcm_project() {
            projects.push((app.id.clone(), project.to_string()));
        }
    }
    // RFC 8599's FCM pn-param is the Firebase project id: it names the app as its id does.
    for (app, project) in projects {
        config.learn_fcm_project(&app, &project);
    }
    drop(http);
    let shared =
        Shared::create().map_err(|e| format!("cannot map shared memory for the module: {e}"))?;
    let apps_board = push_core::apps_file::AppsBoard::create()
        .map_err(|e| format!("cannot map shared memory for the apps: {e}"))?;
    let queue = Queue::new(config.queue_size).map_err(|e| {
        format!(
            "cannot create the dispatcher's queue of {} bytes: {e}",
            config.queue_size
        )
    })?;
    // SAFETY: mod_init runs in the main process before the fork, where Kamailio expects these.
    unsafe {
        if sys::register_procs(1) < 0 {
            return Err("register_procs failed".to_string());
        }
        sys::cfg_register_child(1);
    }
    push_core::debug!("push module initialised: {config:?}");
    state::set(Globals {
        config,
        queue,
        shared,
        index,
        resume,
        apps_board,
    })?;
    // SAFETY: main process, before any fork; the callback is a plain extern "C" function.
    unsafe { sys::push_shim_on_shutdown(Some(app_shutdown)) };
    super::stats::register()?;
    match super::prom::create()? {
        0 => push_core::debug!("xhttp_prom is not loaded: no labelled Prometheus metrics"),
        n => push_core::info!("{n} labelled Prometheus metrics created in xhttp_prom"),
    }
    Ok(())
}

unsafe extern "C" fn child_init(rank: c_int) -> c_int {
    guard::call("child_init", -1, || {
        if rank != sys::PROC_MAIN as c_int {
            return 0;
        }
        // Kamailio allocated the statistics' rows before child_init(PROC_MAIN).
        super::stats::mark_counters();
        // SAFETY: called from child_init(PROC_MAIN), as fork_process requires; the description is a
        // static string. make_sock=1 gives the dispatcher a socket to send SIP over TCP/TLS.
        let pid = unsafe {
            sys::fork_process(sys::PROC_RPC, c"push dispatcher".as_ptr() as *mut c_char, 1)
        };
        if pid < 0 {
            push_core::error!("cannot fork the push dispatcher process");
            return -1;
        }
        if pid == 0 {
            dispatcher_process();
        }
        0
    })
}

/// The body of the forked dispatcher process. Never returns.
fn dispatcher_process() -> ! {
    // SAFETY: a process forked by fork_process with cfg_register_child must call this first.
    let code = if unsafe { sys::cfg_child_init() } != 0 {
        push_core::error!("cfg_child_init failed in the push dispatcher");
        1
    } else {
        match run_dispatcher() {
            Ok(()) => 0,
            Err(e) => {
                push_core::error!("the push dispatcher stopped: {e}");
                1
            }
        }
    };
    // SAFETY: ends this process without unwinding into Kamailio's fork_process frames or running
    // the parent's atexit handlers from a process that has runtime threads.
    unsafe { libc::_exit(code) }
}

fn run_dispatcher() -> Result<(), String> {
    let globals = state::get().ok_or("the module was not initialised")?;
    let read_end = globals
        .queue
        .clone_read_end()
        .map_err(|e| format!("cannot open the queue: {e}"))?;
    let host = KamailioHost {
        resume: globals.resume.clone(),
        location_table: CString::new(globals.config.location_table.clone())
            .map_err(|_| "bad location_table")?,
        prom: super::prom::bind(),
        prom_refusals: std::sync::atomic::AtomicU64::new(0),
    };
    std::panic::catch_unwind(|| {
        dispatcher::run(
            &globals.config,
            read_end,
            globals.queue.capacity(),
            globals.shared,
            globals.index,
            Some(globals.apps_board),
            &host,
        )
    })
    .map_err(|p| format!("panic: {}", guard::panic_message(&*p)))?
    .map_err(|e| e.to_string())
}

/// How long Kamailio's main process waits, when it begins shutting down, for the dispatcher to
/// answer the held calls (before Kamailio signals its processes to stop).
const SHUTDOWN_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// Kamailio's main process begins shutting down (SIGTERM, SIGINT, or a child process died), before
/// it signals the other processes: push_suspend holds no more calls, and the dispatcher answers
/// every call still held 503 while the SIP workers still run.
extern "C" fn app_shutdown() {
    guard::call("shutdown", (), || {
        let Some(g) = state::get() else { return };
        g.shared.shutting_down.store(1, Ordering::SeqCst);
        let pid = g.shared.dispatcher_pid.load(Ordering::Relaxed);
        // SAFETY: signal 0 only checks that the process exists (a dead dispatcher was reaped).
        if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
            return;
        }
        match reply::ask(&g.sender(), Question::Shutdown, SHUTDOWN_ANSWER_TIMEOUT) {
            Ok(Answer::Ended(_)) => {}
            Ok(other) => push_core::warn!("shutdown: unexpected answer {other:?}"),
            Err(e) => push_core::error!("shutdown: held calls not answered: {e}"),
        }
    })
}

unsafe extern "C" fn mod_destroy() {
    guard::call("mod_destroy", (), || {
        push_core::debug!("push module destroyed")
    })
}

/// Runs a t_continue of a held call with push_failed() answering `push_failed` in the routes it
/// runs, and says what tm answered.
fn continued(
    push_failed: c_int,
    relay: Option<&str>,
    t_continue: impl FnOnce() -> c_int,
) -> Result<(), String> {
    CONTINUING_FAILED.with(|f| f.set(push_failed));
    CONTINUING_RELAY.with(|r| *r.borrow_mut() = relay.map(str::to_string));
    let r = t_continue();
    CONTINUING_FAILED.with(|f| f.set(-1));
    CONTINUING_RELAY.with(|r| *r.borrow_mut() = None);
    match r {
        0 => Ok(()),
        1 => Err("the transaction was cancelled or timed out meanwhile".to_string()),
        r => Err(format!("t_continue returned {r}")),
    }
}

/// The dispatcher's main-thread duties towards Kamailio.
struct KamailioHost {
    resume: ResumeTarget,
    location_table: CString,
    /// xhttp_prom is loaded and its update functions bound in this process.
    prom: bool,
    /// Metric updates xhttp_prom refused (the first one and every 1000th is logged).
    prom_refusals: std::sync::atomic::AtomicU64,
}

impl Host for KamailioHost {
    fn tick(&self) {
        // SAFETY: called on the dispatcher's main thread, which did cfg_child_init.
        unsafe { sys::push_shim_cfg_update() }
    }

    fn continue_call(&self, key: CallKey, failed: bool, relay: Option<&str>) -> Result<(), String> {
        let push_failed = if failed { FAILED_ALL_PUSHES } else { -1 };
        continued(push_failed, relay, || {
            // SAFETY: t_continue may run in any Kamailio process; it looks the transaction up by
            // its identifiers and fails cleanly if tm no longer holds it. Runs on the main thread.
            unsafe {
                match &self.resume {
                    ResumeTarget::Route(route) => sys::push_shim_continue(key.0, key.1, *route),
                    ResumeTarget::Kemi(name) => sys::push_shim_continue_kemi(
                        key.0,
                        key.1,
                        name.as_ptr(),
                        name.as_bytes().len() as c_int,
                    ),
                }
            }
        })
    }

    fn end_call(&self, key: CallKey, why: CallEnd) -> Result<(), String> {
        let push_failed = match why {
            CallEnd::Failed | CallEnd::Shutdown => FAILED_ALL_PUSHES,
            CallEnd::TimedOut => FAILED_TIMEOUT,
        };
        let (code, reason, failure_route) = match why {
            CallEnd::Shutdown => (503, c"Service Unavailable", 0),
            CallEnd::Failed | CallEnd::TimedOut => (480, c"Temporarily Unavailable", 1),
        };
        continued(push_failed, None, || {
            // SAFETY: as continue_call: t_continue looks the transaction up by its identifiers and
            // fails cleanly if tm no longer holds it; the reason is a static C string. Main thread.
            unsafe {
                sys::push_shim_end(
                    key.0,
                    key.1,
                    why.status() as c_int,
                    code,
                    reason.as_ptr(),
                    failure_route,
                )
            }
        })
    }

    fn check_statistics_resets(&self) {
        if let Some(g) = state::get() {
            super::stats::check_resets(g.shared);
        }
    }

    fn export_metrics(&self, updates: &[push_core::metrics::Update]) {
        if !self.prom {
            return;
        }
        if let Err(e) = super::prom::apply(updates) {
            let n = self.prom_refusals.fetch_add(1, Ordering::Relaxed);
            if n % 1000 == 0 {
                push_core::warn!("{e} ({} refusal(s) so far)", n + 1);
            }
        }
    }

    /// DMQ's bcast_message, from the dispatcher's main thread: a Kamailio process (forked by
    /// fork_process, cfg_child_init done) with its own pkg memory, in which tm's t_request may
    /// run (it builds the request in pkg and shm and sends it over the DMQ server socket, a
    /// UDP socket every process inherits; replies and retransmissions are handled by the SIP
    /// workers and tm's timer, as for any local request).
    fn cluster_broadcast(
        &self,
        message: &push_core::ipc::cluster::ClusterMessage,
    ) -> Result<(), String> {
        let Some(body) = message.encode() else {
            return Err(
                "too large for a DMQ message (the other nodes learn it from the shared database)"
                    .to_string(),
            );
        };
        // SAFETY: the body is valid for the call (tm copies it); runs on the main thread.
        let r = unsafe {
            sys::push_shim_dmq_bcast(body.as_ptr() as *const c_char, body.len() as c_int)
        };
        if r < 0 {
            return Err("dmq could not send it (see dmq's log line)".to_string());
        }
        Ok(())
    }

    fn append_branches(&self, key: CallKey) -> Result<u32, String> {
        // SAFETY: looks the transaction up by its identifiers (tm refuses ended ones), adds branches
        // from the location table, then restores this process's current transaction.
        let r =
            unsafe { sys::push_shim_append_branches(key.0, key.1, self.location_table.as_ptr()) };
        match r {
            n if n >= 0 => Ok(n as u32),
            -1 => Err("transaction gone".to_string()),
            -2 => Err("call already answered or cancelled".to_string()),
            -3 => Err("no contact in the location table".to_string()),
            -10 => Err("registrar not loaded".to_string()),
            r => Err(format!("t_append_branches returned {r}")),
        }
    }
}

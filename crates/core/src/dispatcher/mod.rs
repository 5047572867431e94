//! The "push dispatcher" process: everything the module does off the SIP workers' path.
//!
//! Kamailio forks this process from child_init(PROC_MAIN); [`run`] is its whole life. Threads exist
//! only here and only after the fork:
//! - a tokio runtime (`dispatcher_threads` threads) reads the queue and does all network work;
//! - the process's main thread alone calls Kamailio: it runs the [`MainJob`]s the runtime sends it
//!   over a channel (log lines, messages from the queue, finished pushes) and the host's periodic
//!   duties. Messages and finished pushes go to the [`engine`], which decides what the host does.

pub mod engine;
mod reader;

use crate::config::Config;
use crate::devices::index::AorIndex;
use crate::ipc::message::{CallKey, DispatcherStatus, ToDispatcher};
use crate::log::{self, Record};
use crate::shared::Shared;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use engine::{Engine, PushDone};
use std::io;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the dispatcher needs from its host (Kamailio); called on the main thread only.
pub trait Host {
    /// Periodic main-thread duties (in Kamailio: pick up cfg framework changes).
    fn tick(&self);
    /// Continues a held transaction into the resume route; `failed` tells the route (through
    /// push_failed()) that no device can be reached; `relay` is the DMQ address of the node the
    /// device registered at, when that was another node (push_cluster_relay() sets `$du` to
    /// it). An error means tm no longer holds it.
    fn continue_call(&self, key: CallKey, failed: bool, relay: Option<&str>) -> Result<(), String>;
    /// Ends a held transaction without the resume route: the failure route the script armed
    /// before push_suspend() runs (push_failed() tells it why), and if it neither answers nor
    /// relays, the caller gets 480. An error means tm no longer holds it.
    fn end_call(&self, key: CallKey, why: crate::calls::CallEnd) -> Result<(), String>;
    /// Adds branches to a resumed call that still rings, for the AOR's current contacts (a second
    /// device that woke late joins). Returns how many branches were added.
    fn append_branches(&self, key: CallKey) -> Result<u32, String>;
    /// Looks whether Kamailio reset any of the module's counter statistics
    /// (`stats.reset_statistics`) and rebases those in the shared block (see
    /// [`crate::shared::Statistic::reset`]). Kamailio's statistics only: nothing by default.
    fn check_statistics_resets(&self) {}
    /// Applies metric changes to the Prometheus exporter (xhttp_prom), if there is one.
    fn export_metrics(&self, _updates: &[crate::metrics::Update]) {}
    /// Sends a message to every other node of the cluster (Kamailio's DMQ, `enable_dmq`).
    /// Nothing by default (no cluster).
    fn cluster_broadcast(
        &self,
        _message: &crate::ipc::cluster::ClusterMessage,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Work that must run on the dispatcher process's main thread.
pub enum MainJob {
    /// A log line written on a runtime thread.
    Log(Record),
    /// A message read from the queue.
    Message(ToDispatcher),
    /// A push finished.
    PushDone(PushDone),
    /// A held call's push failed an attempt and is tried again (push.pending shows it): the
    /// call, the device, the attempt's number and its error (cleaned).
    PushRetrying {
        key: crate::ipc::message::CallKey,
        device_id: String,
        attempts: u32,
        error: String,
    },
    /// The PostgreSQL device store (re)connected: every stored device.
    StoreLoaded(crate::devices::postgres::Snapshot),
}

/// How often the main thread wakes up when there is nothing to do.
const TICK: Duration = Duration::from_millis(100);

/// State the runtime's tasks share.
pub struct Context {
    pub config: Config,
    pub shared: &'static Shared,
    pub index: AorIndex,
    pub queue_size: usize,
    pub started: Instant,
    pub messages_handled: AtomicU64,
    pub main: Sender<MainJob>,
    /// Where push.reload publishes the apps for the SIP workers (none in unit tests).
    pub apps_board: Option<&'static crate::apps_file::AppsBoard>,
}

impl Context {
    pub fn status(&self) -> DispatcherStatus {
        DispatcherStatus {
            pid: std::process::id() as i32,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            queue_depth: self.shared.queue_depth.load(Ordering::Relaxed),
            queue_size: self.queue_size,
            runtime_threads: self.config.dispatcher_threads,
            messages_handled: self.messages_handled.load(Ordering::Relaxed),
            store: Default::default(),
        }
    }
}

/// Runs the dispatcher until Kamailio goes away. Returns only on a fatal error.
pub fn run(
    config: &Config,
    read_end: OwnedFd,
    queue_size: usize,
    shared: &'static Shared,
    index: AorIndex,
    apps_board: Option<&'static crate::apps_file::AppsBoard>,
    host: &dyn Host,
) -> io::Result<()> {
    die_with_parent()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    shared
        .dispatcher_started_ms
        .store(now_ms, Ordering::Relaxed);
    shared
        .dispatcher_pid
        .store(std::process::id() as i32, Ordering::Relaxed);

    let (main_tx, main_rx) = crossbeam_channel::unbounded::<MainJob>();
    let forward = main_tx.clone();
    log::set_forwarder(Box::new(move |record| {
        let _ = forward.send(MainJob::Log(record));
    }));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.dispatcher_threads)
        .thread_name("push-runtime")
        .on_thread_start(block_signals)
        .enable_all()
        .build()?;
    let ctx = Arc::new(Context {
        config: config.clone(),
        shared,
        index,
        queue_size,
        started: Instant::now(),
        messages_handled: AtomicU64::new(0),
        main: main_tx.clone(),
        apps_board,
    });
    let main_tx_engine = main_tx;
    runtime.spawn(reader::read_queue(read_end, ctx.clone()));
    let mut engine = Engine::new(ctx, runtime.handle().clone(), main_tx_engine);
    crate::info!(
        "push dispatcher running: pid {}, {} runtime threads, queue of {} bytes",
        std::process::id(),
        config.dispatcher_threads,
        queue_size
    );
    stop_on_term();
    main_loop(&main_rx, &mut engine, host);
    // The device store's last batch is committed here, whatever stopped the loop.
    engine.close_store();
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Set by SIGTERM/SIGINT (Kamailio stopping its children, or the parent's death): the main loop
/// ends at its next turn, so the device store's batch is committed before the process exits
/// (Kamailio's own handler would `_exit` at once).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Replaces Kamailio's SIGTERM/SIGINT handler in this process (its main thread takes signals;
/// the runtime threads block them).
fn stop_on_term() {
    // SAFETY: sigaction with a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_term as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in [libc::SIGTERM, libc::SIGINT] {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The main thread: runs jobs, and the host's duties at least every [`TICK`], until the parent dies.
fn main_loop(jobs: &Receiver<MainJob>, engine: &mut Engine, host: &dyn Host) {
    let parent = std::os::unix::process::parent_id();
    let mut last_tick = Instant::now();
    loop {
        if STOP.load(Ordering::Relaxed) {
            crate::notice!("the push dispatcher stops (signal)");
            return;
        }
        match jobs.recv_timeout(TICK) {
            Ok(job) => run_job(job, engine, host),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Drain what else is ready before the periodic duties.
        while let Ok(job) = jobs.try_recv() {
            run_job(job, engine, host);
        }
        if last_tick.elapsed() < TICK {
            continue;
        }
        last_tick = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| {
            host.tick();
            engine.tick(host);
        }))
        .is_err()
        {
            crate::error!("the dispatcher's periodic duties panicked; going on");
        }
        log::refresh_level();
        if std::os::unix::process::parent_id() != parent {
            crate::notice!("Kamailio's main process is gone; the push dispatcher stops");
            return;
        }
    }
}

fn run_job(job: MainJob, engine: &mut Engine, host: &dyn Host) {
    let outcome = catch_unwind(AssertUnwindSafe(|| match job {
        MainJob::Log(record) => log::write_record(&record),
        MainJob::Message(message) => engine.handle(message, host),
        MainJob::PushDone(done) => engine.push_done(done, host),
        MainJob::PushRetrying {
            key,
            device_id,
            attempts,
            error,
        } => engine.push_retrying(key, &device_id, attempts, &error),
        MainJob::StoreLoaded(snapshot) => engine.store_loaded(snapshot),
    }));
    if outcome.is_err() {
        crate::error!("a job on the dispatcher's main thread panicked; going on");
    }
}

/// Asks the kernel to end this process when Kamailio's main process dies, so that nothing of the
/// module outlives Kamailio even if the main process is killed with SIGKILL.
fn die_with_parent() -> io::Result<()> {
    let parent = std::os::unix::process::parent_id();
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if std::os::unix::process::parent_id() != parent {
        // The parent died before the request took effect.
        return Err(io::Error::other(
            "Kamailio's main process exited while the dispatcher started",
        ));
    }
    Ok(())
}

/// Signals (SIGTERM from Kamailio's shutdown, SIGINT...) are for the main thread, whose handler
/// Kamailio installed; runtime threads block them all.
fn block_signals() {
    // SAFETY: sigfillset initialises the set; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

//! Logging that ends in Kamailio's own logger and honours its debug level.
//!
//! Only the main thread of a Kamailio process may call Kamailio. Lines written on that thread go
//! straight to the backend; lines written on other threads (the dispatcher's tokio threads) are
//! forwarded to the main thread, which writes them. The level check happens before anything is
//! formatted: on the main thread by asking Kamailio, elsewhere against a level the main thread
//! refreshes.

use once_cell::sync::OnceCell;
use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};

/// Kamailio's log levels (core/dprint.h), so that per-module debug levels mean what operators expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = -1,
    Warn = 0,
    Notice = 1,
    Info = 2,
    Debug = 3,
}

/// One formatted line on its way from another thread to the main thread.
#[derive(Debug)]
pub struct Record {
    pub level: Level,
    pub target: &'static str,
    pub message: String,
}

/// Where lines end: Kamailio's logger in the module, stderr elsewhere. Called on a main thread only.
pub trait Backend: Send + Sync {
    /// The effective debug level for this module (Kamailio's `debug`, or a per-module override).
    fn level(&self) -> i32;
    fn write(&self, level: Level, target: &str, message: &str);
}

static BACKEND: OnceCell<Box<dyn Backend>> = OnceCell::new();
static FORWARD: OnceCell<Box<dyn Fn(Record) + Send + Sync>> = OnceCell::new();
/// The level as last seen by the main thread, for checks on other threads.
static CACHED_LEVEL: AtomicI32 = AtomicI32::new(Level::Info as i32);

/// Installs the backend once per process image (in Kamailio: when the module is loaded, before
/// the config's modparams and any fork).
pub fn set_backend(backend: Box<dyn Backend>) {
    let _ = BACKEND.set(backend);
    refresh_level();
}

/// Installs how lines written on other threads reach the main thread (the dispatcher does this).
pub fn set_forwarder(forward: Box<dyn Fn(Record) + Send + Sync>) {
    let _ = FORWARD.set(forward);
}

/// Reads the current level from the backend; the main thread calls this regularly.
pub fn refresh_level() {
    if let Some(b) = BACKEND.get() {
        CACHED_LEVEL.store(b.level(), Ordering::Relaxed);
    }
}

/// Is this the main thread of its process? On Linux the main thread's id is the process id.
/// Asked once per thread: a thread never changes role, and a process forked from a main thread
/// continues on its own main thread, so the cached answer stays right across Kamailio's forks.
pub fn on_main_thread() -> bool {
    thread_local! {
        static MAIN: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
    MAIN.with(|main| {
        *main.get().get_or_insert_with(|| {
            // SAFETY: gettid and getpid have no preconditions.
            let is_main = unsafe { libc::gettid() == libc::getpid() };
            main.set(Some(is_main));
            is_main
        })
    })
}

/// Writes a record on the main thread (used by the thread that drains forwarded records).
pub fn write_record(record: &Record) {
    match BACKEND.get() {
        Some(b) => b.write(record.level, record.target, &record.message),
        None => eprintln!(
            "push: {:?}: {}: {}",
            record.level, record.target, record.message
        ),
    }
}

pub fn enabled(level: Level) -> bool {
    let current = match (BACKEND.get(), on_main_thread()) {
        (Some(b), true) => b.level(),
        (Some(_), false) => CACHED_LEVEL.load(Ordering::Relaxed),
        (None, _) => Level::Info as i32,
    };
    level as i32 <= current
}

#[doc(hidden)]
pub fn emit(level: Level, target: &'static str, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut message = fmt::format(args);
    // One line per record, whatever a SIP value or a remote answer in it holds.
    if message.chars().any(char::is_control) {
        message = crate::ipc::limits::escape_controls(&message);
    }
    let record = Record {
        level,
        target,
        message,
    };
    if !on_main_thread() {
        if let Some(forward) = FORWARD.get() {
            forward(record);
            return;
        }
    }
    write_record(&record);
}

/// The last path segment of a module path: `kamailio_push::dispatcher` -> `dispatcher`.
pub fn short_target(target: &str) -> &str {
    target.rsplit("::").next().unwrap_or(target)
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, module_path!(), format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, module_path!(), format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Notice, module_path!(), format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, module_path!(), format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Debug, module_path!(), format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_target_keeps_last_segment() {
        assert_eq!(short_target("kamailio_push::ipc::queue"), "queue");
        assert_eq!(short_target("plain"), "plain");
    }

    #[test]
    fn levels_order_like_kamailio() {
        // Kamailio prints a line when its level is <= the debug level: errors first.
        assert!(Level::Error < Level::Warn && Level::Info < Level::Debug);
        assert_eq!(Level::Debug as i32, 3);
    }

    #[test]
    fn a_record_stays_one_line_whatever_its_values_hold() {
        static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        // Test threads are not main threads: their records go to the forwarder.
        set_forwarder(Box::new(|record| SEEN.lock().unwrap().push(record.message)));
        crate::error!("call to {}", "alice\r\n 0(1) ERROR: forged\x1b[31m\0");
        let seen = SEEN.lock().unwrap();
        assert!(
            seen.iter()
                .any(|m| m == "call to alice\\r\\n 0(1) ERROR: forged\\u{1b}[31m\\u{0}"),
            "{seen:?}"
        );
    }

    #[test]
    fn test_threads_are_not_main_threads() {
        // cargo runs tests on spawned threads; this is what routes their lines to the forwarder.
        assert!(!on_main_thread());
    }
}

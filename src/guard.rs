//! Keeps panics on the Rust side of every `extern "C"` entry point.
//!
//! A panic that reached Kamailio's C frames would abort the process, and Kamailio's main process
//! then stops the whole server. The crate builds with `panic = "unwind"` so that this catch works.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; if it panics, logs which entry point failed and returns `on_panic` instead.
pub fn call<R>(entry: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            push_core::error!(
                "internal error in {entry}: {}; returning an error to Kamailio",
                panic_message(&*payload)
            );
            on_panic
        }
    }
}

pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Sends panic messages to Kamailio's log (stderr may go nowhere when Kamailio runs as a daemon).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        push_core::error!("panic{place}: {}", panic_message(info.payload()));
    }));
}

//! The log backend: Kamailio's logger, through the C shim (LM_* are macros).

use super::sys;
use push_core::log::{short_target, Backend, Level};
use std::ffi::CString;

pub struct KamailioLog;

impl Backend for KamailioLog {
    fn level(&self) -> i32 {
        // SAFETY: reads Kamailio's debug level for this module; called on a process's main thread.
        unsafe { sys::push_shim_debug_level() }
    }

    fn write(&self, level: Level, target: &str, message: &str) {
        let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        let place = CString::new(short_target(target)).unwrap_or_default();
        // SAFETY: both strings are NUL-terminated and live across the call; the crate's log module
        // calls backends on a process's main thread only.
        unsafe { sys::push_shim_log(level as i32, place.as_ptr(), text.as_ptr()) }
    }
}

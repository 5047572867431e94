//! The module's statistics as Kamailio statistics (group `push`): `kamcmd stats.get_statistics
//! push:` and xhttp_prom's Prometheus export read them. One per row of
//! [`push_core::shared::STATISTICS`] (where each statistic is declared once), each a STAT_IS_FUNC
//! statistic whose function reads the shared memory, so every process sees the same values
//! without Kamailio's own per-process counters.

use super::params::{per_index, ROOM};
use super::sys::{self, stat_export_t};
use super::{guard, state};
use push_core::shared::STATISTICS;
use std::ffi::{c_char, c_long, CString};

/// The value of statistic `I`.
extern "C" fn stat_value<const I: usize>() -> c_long {
    guard::call("statistics", 0, || {
        let Some(g) = state::get() else { return 0 };
        STATISTICS.get(I).map_or(0, |s| s.value(g.shared) as c_long)
    })
}

/// One function per statistic (Kamailio's callback is not told which statistic it serves).
const FUNCTIONS: [extern "C" fn() -> c_long; ROOM] = per_index!(stat_value);

const _: () = assert!(
    STATISTICS.len() <= ROOM,
    "more statistics than params::ROOM: raise ROOM and extend per_index!"
);

/// Registers the statistics; called from mod_init. The table lives as long as Kamailio.
pub fn register() -> Result<(), String> {
    let mut table: Vec<stat_export_t> = STATISTICS
        .iter()
        .zip(FUNCTIONS)
        .map(|(statistic, f)| stat_export_t {
            name: CString::new(statistic.name).unwrap_or_default().into_raw(),
            flags: (sys::STAT_IS_FUNC | sys::STAT_NO_RESET) as i32,
            stat_pointer: f as *mut *mut sys::stat_var,
        })
        .collect();
    table.push(stat_export_t {
        name: std::ptr::null_mut(),
        flags: 0,
        stat_pointer: std::ptr::null_mut(),
    });
    let table = Box::leak(table.into_boxed_slice());
    // SAFETY: called in mod_init; the table and its names are leaked, so they live as long as
    // Kamailio, which keeps pointers to them.
    let r =
        unsafe { sys::register_module_stats(c"push".as_ptr() as *mut c_char, table.as_mut_ptr()) };
    if r != 0 {
        return Err("register_module_stats failed".to_string());
    }
    Ok(())
}

//! The module's statistics as Kamailio statistics (group `push`): `kamcmd stats.get_statistics
//! push:` and xhttp_prom's Prometheus export read them. One per row of
//! [`push_core::shared::STATISTICS`] (where each statistic is declared once), each a STAT_IS_FUNC
//! statistic whose function reads the shared memory, so every process sees the same values
//! without Kamailio's own per-process counters.
//!
//! Counters reset as Kamailio's do (`kamcmd stats.reset_statistics push:`): Kamailio zeroes every
//! process's row of a statistic it resets, rows a function statistic does not use otherwise. The
//! module keeps a mark in them ([`mark_counters`]) and takes all-zero rows as a reset
//! ([`check_resets`]): the counter is rebased in the shared block and marked again. Gauges and
//! computed values are registered as not resettable, as Kamailio's own gauges are.

use super::params::{per_index, ROOM};
use super::sys::{self, stat_export_t};
use super::{guard, state};
use push_core::shared::{Shared, StatKind, Statistic, STATISTICS};
use std::ffi::{c_char, c_int, c_long, CString};

/// The value of statistic `I` (a counter reset since it was read last is rebased first).
extern "C" fn stat_value<const I: usize>() -> c_long {
    guard::call("statistics", 0, || {
        let Some(g) = state::get() else { return 0 };
        let Some(statistic) = STATISTICS.get(I) else {
            return 0;
        };
        check_reset(statistic, g.shared);
        statistic.value(g.shared) as c_long
    })
}

/// The statistic's name as a C string (the names are static identifiers).
fn c_name(statistic: &Statistic) -> CString {
    CString::new(statistic.name).unwrap_or_default()
}

/// If Kamailio reset this counter since it was last marked: rebased and marked again.
fn check_reset(statistic: &Statistic, shared: &Shared) {
    let Some(i) = statistic.counter else { return };
    let name = c_name(statistic);
    // SAFETY: the shim looks the counter up by its static group and name and only reads rows
    // (after Kamailio allocated them, which it checks).
    if unsafe { sys::push_shim_counter_was_reset(i as c_int, name.as_ptr()) } == 1 {
        statistic.reset(shared);
        // SAFETY: adds 1 to this process's row of the counter (allocated: checked just above).
        unsafe { sys::push_shim_counter_mark(i as c_int, name.as_ptr()) };
    }
}

/// Looks at every counter for a reset (the dispatcher's tick does, so that the labelled metrics
/// reset with them even if nobody reads the statistic).
pub fn check_resets(shared: &Shared) {
    for statistic in STATISTICS {
        check_reset(statistic, shared);
    }
}

/// Marks every counter's row, in child_init(PROC_MAIN) once Kamailio allocated them: from now on
/// all-zero rows mean a reset.
pub fn mark_counters() {
    for statistic in STATISTICS.iter().filter(|s| s.counter.is_some()) {
        let name = c_name(statistic);
        let i = statistic.counter.unwrap_or_default() as c_int;
        // SAFETY: adds 1 to this process's row of the counter; the shim checks that the rows exist.
        if unsafe { sys::push_shim_counter_mark(i, name.as_ptr()) } != 0 {
            push_core::warn!(
                "statistic push:{}: cannot be marked; stats.reset_statistics will not reset it",
                statistic.name
            );
        }
    }
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
            flags: match statistic.kind {
                StatKind::Counter => sys::STAT_IS_FUNC as i32,
                StatKind::Gauge | StatKind::Derived => {
                    (sys::STAT_IS_FUNC | sys::STAT_NO_RESET) as i32
                }
            },
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

//! The module's counters as Kamailio statistics (group `push`): `kamcmd stats.get_statistics push:`
//! and xhttp_prom's Prometheus export read them. Each is a STAT_IS_FUNC statistic whose function
//! reads the shared counters, so every process sees the same values without Kamailio's own
//! per-process counters.

use super::sys::{self, stat_export_t};
use super::{guard, state};
use std::ffi::{c_char, c_long, CString};
use std::sync::atomic::Ordering;

/// The statistics after the counters: the held gauge and the wake time in milliseconds.
const EXTRA: [&str; 5] = [
    "held_now",
    "wake_ms_p50",
    "wake_ms_p99",
    "wake_ms_avg",
    "wake_ms_max",
];

/// Counter `I` of the shared counters' snapshot, or one of [`EXTRA`] past the last counter.
extern "C" fn stat_value<const I: usize>() -> c_long {
    guard::call("statistics", 0, || {
        let Some(g) = state::get() else { return 0 };
        let counters = g.shared.counters.snapshot();
        if let Some((_, v)) = counters.get(I) {
            return (*v).min(c_long::MAX as u64) as c_long;
        }
        let wake = g.shared.wake_latency.summary();
        let ms = |ns: u64| (ns / 1_000_000) as c_long;
        match I - counters.len() {
            0 => g.shared.held_now.load(Ordering::Relaxed) as c_long,
            1 => ms(wake.p50_ns),
            2 => ms(wake.p99_ns),
            3 => ms(wake.avg_ns),
            _ => ms(wake.max_ns),
        }
    })
}

/// One function per statistic (Kamailio's callback is not told which statistic it serves).
const FUNCTIONS: [extern "C" fn() -> c_long; 15] = [
    stat_value::<0>,
    stat_value::<1>,
    stat_value::<2>,
    stat_value::<3>,
    stat_value::<4>,
    stat_value::<5>,
    stat_value::<6>,
    stat_value::<7>,
    stat_value::<8>,
    stat_value::<9>,
    stat_value::<10>,
    stat_value::<11>,
    stat_value::<12>,
    stat_value::<13>,
    stat_value::<14>,
];

/// Registers the statistics; called from mod_init. The table lives as long as Kamailio.
pub fn register() -> Result<(), String> {
    let g = state::get().ok_or("the module is not initialised")?;
    let mut names: Vec<String> = g
        .shared
        .counters
        .snapshot()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.extend(EXTRA.iter().map(|n| n.to_string()));
    if names.len() != FUNCTIONS.len() {
        return Err(format!(
            "{} statistics but {} statistic functions",
            names.len(),
            FUNCTIONS.len()
        ));
    }
    let mut table: Vec<stat_export_t> = names
        .iter()
        .zip(FUNCTIONS)
        .map(|(name, f)| stat_export_t {
            name: CString::new(name.as_str()).unwrap_or_default().into_raw(),
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

//! The module's labelled Prometheus metrics ([`push_core::metrics`]) in Kamailio's xhttp_prom
//! exporter: created through xhttp_prom's module parameters at mod_init (when xhttp_prom is
//! loaded), updated from the dispatcher's main thread through xhttp_prom's KEMI functions.

use super::sys;
use push_core::metrics::{Update, FAMILIES};
use std::ffi::{c_char, c_int, CString};

/// Creates every metric family in xhttp_prom, if it is loaded. Called from mod_init (before any
/// fork; xhttp_prom keeps its metrics in shared memory). Returns how many were created.
pub fn create() -> Result<usize, String> {
    // SAFETY: looks a module up by name in Kamailio's module list (mod_init, main process).
    if unsafe { sys::push_shim_prom_loaded() } == 0 {
        return Ok(0);
    }
    for family in FAMILIES {
        let (param, spec) = family.spec();
        let param = CString::new(param).map_err(|e| e.to_string())?;
        // xhttp_prom parses the text in place and keeps copies: the text is leaked so that it
        // outlives any pointer xhttp_prom could keep.
        let spec_c = CString::new(spec.clone()).map_err(|e| e.to_string())?;
        let spec_ptr = spec_c.into_raw();
        // SAFETY: both are NUL-terminated strings; the spec is never freed.
        let r = unsafe { sys::push_shim_prom_create(param.as_ptr(), spec_ptr) };
        if r < 0 {
            return Err(format!(
                "xhttp_prom refused the metric \"{spec}\" (modparam {})",
                param.to_string_lossy()
            ));
        }
    }
    Ok(FAMILIES.len())
}

/// Binds xhttp_prom's update functions in this process; false if xhttp_prom is not loaded (or its
/// functions are missing).
pub fn bind() -> bool {
    // SAFETY: both only read Kamailio's module and KEMI tables, which do not change after start.
    unsafe { sys::push_shim_prom_loaded() != 0 && sys::push_shim_prom_bind() == 0 }
}

/// Applies the updates; the first failure is returned (the others still applied).
pub fn apply(updates: &[Update]) -> Result<(), String> {
    let mut first_error = None;
    for update in updates {
        if let Err(e) = apply_one(update) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn apply_one(update: &Update) -> Result<(), String> {
    let (op, family, labels, count, number) = match update {
        Update::CounterInc { family, labels, by } => (
            sys::push_prom_op_PUSH_PROM_COUNTER_INC,
            family,
            labels,
            (*by).min(i32::MAX as u64) as c_int,
            String::new(),
        ),
        Update::CounterReset { family, labels } => (
            sys::push_prom_op_PUSH_PROM_COUNTER_RESET,
            family,
            labels,
            0,
            String::new(),
        ),
        Update::GaugeSet {
            family,
            labels,
            value,
        } => (
            sys::push_prom_op_PUSH_PROM_GAUGE_SET,
            family,
            labels,
            0,
            format!("{value:.6}"),
        ),
        Update::Observe {
            family,
            labels,
            value,
        } => (
            sys::push_prom_op_PUSH_PROM_HISTOGRAM_OBSERVE,
            family,
            labels,
            0,
            format!("{value:.6}"),
        ),
    };
    let c =
        |s: &str| CString::new(s).map_err(|_| format!("metric {}: NUL in a label", family.name));
    let name = c(family.name)?;
    let number = c(&number)?;
    let labels: Vec<CString> = labels.iter().map(|l| c(l)).collect::<Result<_, _>>()?;
    let pointers: Vec<*const c_char> = labels.iter().map(|l| l.as_ptr()).collect();
    // SAFETY: every pointer is a NUL-terminated string alive for the call; the label count is the
    // family's (at most 3, checked by the shim too). xhttp_prom takes its own lock.
    let r = unsafe {
        sys::push_shim_prom_update(
            op as c_int,
            name.as_ptr(),
            count,
            number.as_ptr(),
            pointers.as_ptr() as *mut *const c_char,
            pointers.len() as c_int,
        )
    };
    if r < 0 {
        return Err(format!("xhttp_prom refused an update of {}", family.name));
    }
    Ok(())
}

//! Module parameters as Kamailio sees them: a `param_export_t` per row of [`config::PARAMS`] (the
//! one declaration of every parameter, in crates/core/src/config.rs), each with its own
//! trampoline, because Kamailio's callback is not told the parameter's name. Nothing here names a
//! parameter: adding one to `config.rs` adds it here.

use super::guard;
use super::state::PARAM_VALUES;
use super::sys::{modparam_t, param_export_t, PARAM_INT, PARAM_STRING};
use push_core::config::{self, Kind, RawValue};
use std::ffi::{c_char, c_int, c_void, CStr};

/// How many rows the boundary's tables have room for (parameters here, statistics in stats.rs):
/// one monomorphised callback per row, listed by [`per_index!`]. A const assertion next to each
/// table says when it outgrows this.
pub const ROOM: usize = 32;

/// `[f::<0>, f::<1>, ..., f::<31>]` ([`ROOM`] entries): one function per table row, for Kamailio
/// callbacks that are not told which row they serve. The array's type coerces each to a pointer.
macro_rules! per_index {
    ($f:ident) => {
        [
            $f::<0>, $f::<1>, $f::<2>, $f::<3>, $f::<4>, $f::<5>, $f::<6>, $f::<7>, $f::<8>,
            $f::<9>, $f::<10>, $f::<11>, $f::<12>, $f::<13>, $f::<14>, $f::<15>, $f::<16>,
            $f::<17>, $f::<18>, $f::<19>, $f::<20>, $f::<21>, $f::<22>, $f::<23>, $f::<24>,
            $f::<25>, $f::<26>, $f::<27>, $f::<28>, $f::<29>, $f::<30>, $f::<31>,
        ]
    };
}
pub(crate) use per_index;

/// core/sr_module.h: `(1U<<(8*sizeof(int)-1))`, a macro bindgen cannot evaluate.
const PARAM_USE_FUNC: modparam_t = 1 << (8 * std::mem::size_of::<c_int>() - 1);

/// Records the value of parameter `index` for mod_init to check.
fn record(index: usize, value: *mut c_void) -> c_int {
    let Some(param) = config::PARAMS.get(index) else {
        return -1;
    };
    let value = match param.kind {
        // Kamailio passes an int parameter as the pointer's value.
        Kind::Int => RawValue::Int(value as isize as c_int as i64),
        Kind::Str if value.is_null() => RawValue::Str(String::new()),
        // SAFETY: for a string parameter Kamailio passes a NUL-terminated string it owns for the
        // duration of the call; it is copied here.
        Kind::Str => RawValue::Str(
            unsafe { CStr::from_ptr(value as *const c_char) }
                .to_string_lossy()
                .into_owned(),
        ),
    };
    // Checked at once, so `kamailio -c` refuses a bad value while it parses the config, with the
    // same line mod_init would log.
    if let Err(e) = config::Config::check_param(param.name, &value) {
        push_core::error!("{e}");
        return -1;
    }
    match PARAM_VALUES.lock() {
        Ok(mut values) => {
            values.push((param.name, value));
            0
        }
        Err(_) => -1,
    }
}

unsafe extern "C" fn set_param<const I: usize>(_type: modparam_t, value: *mut c_void) -> c_int {
    guard::call("modparam", -1, || record(I, value))
}

type SetParam = unsafe extern "C" fn(modparam_t, *mut c_void) -> c_int;

/// `set_param::<I>` for every row there is room for.
const TRAMPOLINES: [SetParam; ROOM] = per_index!(set_param);

const _: () = assert!(
    config::PARAMS.len() <= ROOM,
    "more parameters than params::ROOM: raise ROOM and extend per_index!"
);

const NULL_ENTRY: param_export_t = param_export_t {
    name: std::ptr::null_mut(),
    type_: 0,
    param_pointer: std::ptr::null_mut(),
};

/// One `param_export_t` per row of [`config::PARAMS`], then null entries (Kamailio stops at the
/// first).
const fn table() -> [param_export_t; ROOM + 1] {
    let mut table = [NULL_ENTRY; ROOM + 1];
    let mut i = 0;
    while i < config::PARAMS.len() {
        let param = &config::PARAMS[i];
        let kind = match param.kind {
            Kind::Int => PARAM_INT,
            Kind::Str => PARAM_STRING,
        };
        table[i] = param_export_t {
            name: param.c_name.as_ptr() as *mut c_char,
            type_: kind | PARAM_USE_FUNC,
            param_pointer: TRAMPOLINES[i] as *mut c_void,
        };
        i += 1;
    }
    table
}

/// The null-terminated table `exports.params` points at.
pub static mut PARAMS: [param_export_t; ROOM + 1] = table();

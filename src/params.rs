//! Module parameters as Kamailio sees them: a `param_export_t` per entry of [`config::PARAMS`], each
//! with its own trampoline (Kamailio's callback is not told the parameter's name).

use super::guard;
use super::state::PARAM_VALUES;
use super::sys::{modparam_t, param_export_t, PARAM_INT, PARAM_STRING};
use push_core::config::{self, Kind, RawValue};
use std::ffi::{c_char, c_int, c_void, CStr};

/// core/sr_module.h: `(1U<<(8*sizeof(int)-1))`, a macro bindgen cannot evaluate.
const PARAM_USE_FUNC: modparam_t = 1 << (8 * std::mem::size_of::<c_int>() - 1);

/// Records the value of parameter `index` for mod_init to check.
fn record(index: usize, value: *mut c_void) -> c_int {
    let param = &config::PARAMS[index];
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
    let name = param.name.to_str().unwrap_or("?");
    match PARAM_VALUES.lock() {
        Ok(mut values) => {
            values.push((name, value));
            0
        }
        Err(_) => -1,
    }
}

unsafe extern "C" fn set_param<const I: usize>(_type: modparam_t, value: *mut c_void) -> c_int {
    guard::call("modparam", -1, || record(I, value))
}

const fn entry<const I: usize>() -> param_export_t {
    let param = &config::PARAMS[I];
    let kind = match param.kind {
        Kind::Int => PARAM_INT,
        Kind::Str => PARAM_STRING,
    };
    param_export_t {
        name: param.name.as_ptr() as *mut c_char,
        type_: kind | PARAM_USE_FUNC,
        param_pointer: set_param::<I> as *mut c_void,
    }
}

const NULL_ENTRY: param_export_t = param_export_t {
    name: std::ptr::null_mut(),
    type_: 0,
    param_pointer: std::ptr::null_mut(),
};

const COUNT: usize = 15;
const _: () = assert!(
    COUNT == config::PARAMS.len(),
    "params.rs must list every entry of config::PARAMS"
);

/// The null-terminated table `exports.params` points at.
pub static mut PARAMS: [param_export_t; COUNT + 1] = [
    entry::<0>(),
    entry::<1>(),
    entry::<2>(),
    entry::<3>(),
    entry::<4>(),
    entry::<5>(),
    entry::<6>(),
    entry::<7>(),
    entry::<8>(),
    entry::<9>(),
    entry::<10>(),
    entry::<11>(),
    entry::<12>(),
    entry::<13>(),
    entry::<14>(),
    NULL_ENTRY,
];

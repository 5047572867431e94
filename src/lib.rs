//! kamailio-push, the module Kamailio loads (`push.so`): the Kamailio boundary. This crate is the
//! only code that calls Kamailio and the only one that sees raw Kamailio types; everything else
//! is plain Rust in `crates/core` (`push_core`), which this crate drives. Every `extern "C"`
//! function here runs its body through [`guard::call`], so no panic crosses into Kamailio's C code.
//!
//! - [`sys`]: bindgen's view of the Kamailio headers and the version strings, from build.rs.
//! - [`exports`]: the `exports` table Kamailio looks up, `module_version` / `module_flags`, the init hooks.
//! - [`params`]: one trampoline per module parameter, collecting values for mod_init.
//! - [`rpc`]: the `push.*` RPC commands.
//! - [`stats`]: the statistics (group `push`) and their resets; [`prom`]: the labelled metrics in
//!   xhttp_prom.
//! - [`logger`]: the log backend over Kamailio's logger.
//! - [`state`]: what mod_init sets up before fork and every process inherits.

mod callbacks;
mod exports;
mod guard;
mod logger;
mod params;
mod prom;
mod rpc;
mod script;
mod state;
mod stats;
mod sys;

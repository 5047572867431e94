//! kamailio-push: a Kamailio module that holds calls to sleeping mobile apps, wakes them with push
//! notifications and delivers the call once they register again.
//!
//! Layout (see README.md, "Architecture"):
//! - [`kamailio`] is the only place with `unsafe` and raw Kamailio types: the `exports` table, the
//!   init hooks, RPC trampolines, the logger backend and the C shim's functions. It is left out of
//!   unit-test builds, so everything else is plain Rust that tests reach without Kamailio.
//! - [`config`] parses and checks the module parameters.
//! - [`ipc`] carries messages from Kamailio's processes to the dispatcher process and answers back.
//! - [`dispatcher`] is the body of the "push dispatcher" process: a tokio runtime for network work
//!   and a main thread that alone calls Kamailio.
//! - [`shared`] is the memory all Kamailio processes of this module share (state and counters).
//! - [`log`] routes log lines to Kamailio's logger from whichever thread they are written on.

pub mod calls;
pub mod config;
pub mod devices;
pub mod dispatcher;
pub mod ipc;
pub mod latency;
pub mod log;
pub mod providers;
pub mod shared;
pub mod worker;

#[cfg(all(feature = "kamailio", not(test)))]
mod kamailio;

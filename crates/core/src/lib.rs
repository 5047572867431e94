//! push-core: everything kamailio-push does that is plain Rust. It builds and tests without
//! Kamailio's sources, libclang or a Kamailio install; the `kamailio-push` cdylib at the repository
//! root is the only code that touches Kamailio (raw types, `unsafe` FFI, the `exports` table) and
//! drives this crate through [`dispatcher::Host`], [`log::Backend`] and the functions below.
//!
//! - [`config`]: module parameters, parsed and checked.
//! - [`devices`]: push parameters in a Contact, app profiles, the device store, the shared AOR index.
//! - [`calls`]: what a SIP worker records about a held call.
//! - [`ipc`]: the queue from Kamailio's processes to the dispatcher process, and answers back.
//! - [`dispatcher`]: the body of the "push dispatcher" process (the engine and its rooms).
//! - [`providers`]: APNs, FCM and webhook pushes behind one vocabulary.
//! - [`shared`]: memory every Kamailio process of the module shares (state and counters).
//! - [`log`]: log lines that end in Kamailio's logger, from whichever thread writes them.
//! - [`latency`]: the histograms behind the timing statistics.
//! - [`metrics`]: Prometheus metrics with labels and buckets, exported through xhttp_prom.
//! - [`iso_time`]: times in RPC answers (ISO 8601, UTC, milliseconds).
//! - [`fuzzing`]: checks the fuzz targets and the unit tests share.

pub mod apps_file;
pub mod calls;
pub mod config;
pub mod devices;
pub mod dispatcher;
pub mod fuzzing;
pub mod ipc;
pub mod iso_time;
pub mod latency;
pub mod log;
pub mod metrics;
pub mod providers;
pub mod shared;

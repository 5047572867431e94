//! What mod_init builds in Kamailio's main process before it forks; every child inherits a copy
//! (the queue's descriptors and the shared mapping stay shared).

use once_cell::sync::OnceCell;
use push_core::config::{Config, RawValue};
use push_core::ipc::queue::{Queue, QueueWriter};
use push_core::shared::Shared;
use std::sync::Mutex;

/// Parameter values in the order the script set them; taken by mod_init.
pub static PARAM_VALUES: Mutex<Vec<(&'static str, RawValue)>> = Mutex::new(Vec::new());

pub struct Globals {
    pub config: Config,
    pub queue: Queue,
    pub shared: &'static Shared,
    /// Which AORs have devices (shared, filled before fork).
    pub index: push_core::devices::index::AorIndex,
    /// Where a held call continues.
    pub resume: ResumeTarget,
}

/// Where a held call continues: a native route, or a KEMI script function.
#[derive(Clone, Debug)]
pub enum ResumeTarget {
    /// Index of resume_route in Kamailio's main route table.
    Route(std::ffi::c_int),
    /// The function named by resume_route in a KEMI script (app_lua, app_python3, ...).
    Kemi(std::ffi::CString),
}

static GLOBALS: OnceCell<Globals> = OnceCell::new();

pub fn set(globals: Globals) -> Result<(), String> {
    GLOBALS
        .set(globals)
        .map_err(|_| "the module was initialised twice".to_string())
}

/// The module's state; `None` only before mod_init succeeded.
pub fn get() -> Option<&'static Globals> {
    GLOBALS.get()
}

impl Globals {
    pub fn sender(&self) -> QueueWriter<'_> {
        self.queue.sender(&self.shared.queue_depth)
    }
}

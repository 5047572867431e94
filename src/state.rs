//! What mod_init builds in Kamailio's main process before it forks; every child inherits a copy
//! (the queue's descriptors and the shared mapping stay shared).

use once_cell::sync::OnceCell;
use push_core::apps_file::AppsBoard;
use push_core::config::{Config, RawValue};
use push_core::ipc::queue::{Queue, QueueWriter};
use push_core::shared::Shared;
use std::cell::RefCell;
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
    /// The apps push.reload accepted last (shared, written by the dispatcher).
    pub apps_board: &'static AppsBoard,
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

thread_local! {
    /// This process's view of the apps after a push.reload: the board's generation it was read
    /// from, and the configuration with those apps.
    static RELOADED: RefCell<Option<(u64, Config)>> = const { RefCell::new(None) };
}

impl Globals {
    /// Runs `f` with the configuration in force now: that of startup, with the apps push.reload
    /// last published (the modparam apps, then those of `apps_file`). Reads the shared board
    /// only when its generation changed; never waits for the dispatcher.
    pub fn with_config<R>(&self, f: impl FnOnce(&Config) -> R) -> R {
        RELOADED.with(|seen| {
            let mut seen = seen.borrow_mut();
            let generation = seen.as_ref().map_or(0, |(generation, _)| *generation);
            if let Some((generation, file_apps)) = self.apps_board.read_if_newer(generation) {
                let mut config = self.config.clone();
                config.apps.retain(|a| !a.from_file);
                config.apps.extend(file_apps);
                *seen = Some((generation, config));
            }
            match seen.as_ref() {
                Some((_, config)) => f(config),
                None => f(&self.config),
            }
        })
    }
}

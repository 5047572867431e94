//! The messages carried from Kamailio's processes to the dispatcher, and its answers.

use serde::{Deserialize, Serialize};

/// A message for the dispatcher.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToDispatcher {
    /// A question; the answer goes to the abstract socket `reply_to`.
    Ask {
        reply_to: String,
        question: Question,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Question {
    /// The dispatcher's own state, for `push.stats`.
    Status,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Status(DispatcherStatus),
}

/// What the dispatcher says of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatcherStatus {
    pub pid: i32,
    pub uptime_ms: u64,
    /// Messages queued and not yet read, as the dispatcher sees it when answering.
    pub queue_depth: i64,
    /// Capacity of the queue in bytes.
    pub queue_size: usize,
    pub runtime_threads: usize,
    /// Messages the dispatcher has read since it started.
    pub messages_handled: u64,
}

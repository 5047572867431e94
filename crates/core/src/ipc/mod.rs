//! How Kamailio's processes talk to the dispatcher process.
//!
//! - [`queue`]: one pipe, made before fork, that every process writes framed messages into and the
//!   dispatcher reads. A write never waits: a full pipe is an error for the sender to handle.
//! - [`reply`]: a question that needs an answer (RPC) carries the abstract Unix socket address the
//!   asker waits on; the dispatcher answers there.
//! - [`message`]: what travels.
//! - [`args`]: the push.* RPC commands' arguments, checked before they become a question.

pub mod args;
pub mod cluster;
pub mod limits;
pub mod message;
pub mod queue;
pub mod reply;

//! Memory shared by every Kamailio process of the module: the dispatcher's state and the counters.
//!
//! Made in mod_init, before Kamailio forks, as an anonymous shared mapping, so that every child
//! sees the same pages. Everything in it is an atomic: no lock, nothing to wait on.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[doc = $doc:expr])* $name:ident ),* $(,)?) => {
        /// The module's counters, one shared atomic each.
        #[repr(C)]
        #[derive(Default)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
        }

        impl Counters {
            /// Every counter with its name, in a stable order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name.load(Ordering::Relaxed)), )*]
            }
        }
    };
}

counters! {
    /// Calls held with t_suspend.
    suspended,
    /// Held calls continued to a woken device.
    resumed,
    /// Held calls that no device answered in time.
    timed_out,
    /// Held calls the caller cancelled.
    cancelled,
    /// Pushes a provider accepted.
    pushes_sent,
    /// Pushes that failed for good.
    pushes_failed,
    /// New device records stored.
    devices_stored,
    /// Device records removed.
    devices_removed,
    /// Messages a Kamailio process could not hand to the dispatcher (its queue full, or the write
    /// failed): held calls refused, devices or events lost.
    queue_full,
    /// Binding-refresh (background) pushes a provider accepted.
    refresh_pushes,
}

/// The shared block.
#[repr(C)]
#[derive(Default)]
pub struct Shared {
    /// Pid of the dispatcher process, 0 until it runs.
    pub dispatcher_pid: AtomicI32,
    /// When the dispatcher started, in milliseconds since the Unix epoch.
    pub dispatcher_started_ms: AtomicU64,
    /// Messages written to the queue and not yet read by the dispatcher.
    pub queue_depth: AtomicI64,
    /// Calls held right now (push_suspend adds, the dispatcher removes when tm is done with them).
    pub held_now: AtomicI64,
    pub counters: Counters,
    /// Time SIP workers spent inside push_suspend, all of it.
    pub suspend_latency: crate::latency::Histogram,
    /// The part of it spent in tm creating and suspending the transaction.
    pub suspend_tm_latency: crate::latency::Histogram,
    /// push_suspend minus tm's part: the module's own work on the worker.
    pub suspend_own_latency: crate::latency::Histogram,
    /// Wake time: from a call's pushes going out to its device registering (the call resumed).
    pub wake_latency: crate::latency::Histogram,
    /// From push_suspend holding a call to its push request leaving the dispatcher.
    pub dispatch_latency: crate::latency::Histogram,
}

impl Shared {
    /// Maps a zeroed block shared with every process forked after this call. It is never unmapped:
    /// it lives as long as Kamailio.
    pub fn create() -> io::Result<&'static Shared> {
        let ptr = map_shared_zeroed(std::mem::size_of::<Shared>())?;
        let ptr = ptr.cast::<Shared>();
        // SAFETY: the mapping is page-aligned, large enough and writable; all-zero bytes are a valid
        // Shared (atomics of zero), and writing a fresh value first makes that explicit.
        unsafe {
            ptr.as_ptr().write(Shared::default());
            Ok(&*ptr.as_ptr())
        }
    }
}

/// Maps `size` zeroed bytes shared with every process forked afterwards (never unmapped: it
/// lives as long as Kamailio). Page-aligned.
pub fn map_shared_zeroed(size: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous mapping with no address hint; the result is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_seen_across_fork() {
        let shared = Shared::create().unwrap();
        shared.counters.suspended.fetch_add(2, Ordering::Relaxed);
        // SAFETY: the child only touches atomics in the shared mapping and exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            shared.counters.pushes_sent.fetch_add(7, Ordering::Relaxed);
            shared.queue_depth.fetch_add(1, Ordering::Relaxed);
            // SAFETY: leaves the forked test child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let snap = shared.counters.snapshot();
        assert!(snap.contains(&("suspended", 2)));
        assert!(snap.contains(&("pushes_sent", 7)));
        assert_eq!(shared.queue_depth.load(Ordering::Relaxed), 1);
    }
}

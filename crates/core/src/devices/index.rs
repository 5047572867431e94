//! Which AORs have a push device, in memory every Kamailio process shares, so that push_suspend
//! answers "no device" without touching the store: a lock-free open-addressing set of 64-bit
//! fingerprints of AORs. The dispatcher is its only writer (and mod_init, before fork, fills it
//! from the store); SIP workers only read.
//!
//! A lookup hashes the AOR and reads a few adjacent slots. Removal leaves a tombstone. If the
//! table is ever full, it says "maybe" for every AOR: push_suspend then holds the call and the
//! dispatcher, which reads the store, fails it at once when the AOR has no device.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;

#[repr(C)]
struct Header {
    used: AtomicUsize,
    saturated: AtomicBool,
}

#[derive(Clone, Copy)]
pub struct AorIndex {
    header: &'static Header,
    slots: &'static [AtomicU64],
}

/// The AOR's fingerprint: SipHash with fixed keys (the same in every process), never 0 or 1.
fn fingerprint(aor: &str) -> u64 {
    let mut h = DefaultHasher::new();
    aor.hash(&mut h);
    match h.finish() {
        f @ (EMPTY | TOMBSTONE) => f + 2,
        f => f,
    }
}

impl AorIndex {
    /// Maps a zeroed index with room for `capacity` slots (rounded up to a power of two) shared
    /// with every process forked afterwards.
    pub fn create(capacity: usize) -> io::Result<AorIndex> {
        let slots = capacity.next_power_of_two().max(16);
        let size = std::mem::size_of::<Header>().next_multiple_of(8) + slots * 8;
        let base = crate::shared::map_shared_zeroed(size)?;
        // SAFETY: the mapping is zeroed, page-aligned and large enough for the header followed by
        // `slots` u64 slots; all-zero bytes are valid atomics. It is never unmapped.
        unsafe {
            let header = &*base.as_ptr().cast::<Header>();
            let first = base
                .as_ptr()
                .add(std::mem::size_of::<Header>().next_multiple_of(8));
            let slots = std::slice::from_raw_parts(first.cast::<AtomicU64>(), slots);
            Ok(AorIndex { header, slots })
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Might this AOR have a device? false is certain; true is certain unless saturated.
    pub fn contains(&self, aor: &str) -> bool {
        if self.header.saturated.load(Ordering::Relaxed) {
            return true;
        }
        let fp = fingerprint(aor);
        let mut i = fp as usize & self.mask();
        for _ in 0..self.slots.len() {
            match self.slots[i].load(Ordering::Acquire) {
                EMPTY => return false,
                v if v == fp => return true,
                _ => i = (i + 1) & self.mask(),
            }
        }
        false
    }

    /// Adds an AOR (single writer). Keeps three quarters of the table at most in use; beyond that
    /// the index saturates rather than slow every lookup down.
    pub fn insert(&self, aor: &str) {
        let fp = fingerprint(aor);
        let mut i = fp as usize & self.mask();
        let mut free = None;
        for _ in 0..self.slots.len() {
            match self.slots[i].load(Ordering::Acquire) {
                v if v == fp => return,
                EMPTY => {
                    if free.is_none() {
                        if self.header.used.load(Ordering::Relaxed) + 1 > self.slots.len() / 4 * 3 {
                            self.header.saturated.store(true, Ordering::Relaxed);
                            return;
                        }
                        self.header.used.fetch_add(1, Ordering::Relaxed);
                    }
                    self.slots[free.unwrap_or(i)].store(fp, Ordering::Release);
                    return;
                }
                TOMBSTONE if free.is_none() => free = Some(i),
                _ => {}
            }
            i = (i + 1) & self.mask();
        }
        self.header.saturated.store(true, Ordering::Relaxed);
    }

    /// Removes an AOR (single writer).
    pub fn remove(&self, aor: &str) {
        let fp = fingerprint(aor);
        let mut i = fp as usize & self.mask();
        for _ in 0..self.slots.len() {
            match self.slots[i].load(Ordering::Acquire) {
                EMPTY => return,
                v if v == fp => {
                    self.slots[i].store(TOMBSTONE, Ordering::Release);
                    return;
                }
                _ => i = (i + 1) & self.mask(),
            }
        }
    }

    pub fn saturated(&self) -> bool {
        self.header.saturated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_remove() {
        let idx = AorIndex::create(1024).unwrap();
        assert!(!idx.contains("alice"));
        idx.insert("alice");
        idx.insert("alice");
        idx.insert("bob@example.com");
        assert!(idx.contains("alice") && idx.contains("bob@example.com"));
        assert!(!idx.contains("carol"));
        idx.remove("alice");
        assert!(!idx.contains("alice"));
        assert!(
            idx.contains("bob@example.com"),
            "a tombstone must not hide later slots"
        );
        idx.insert("alice");
        assert!(idx.contains("alice"));
    }

    #[test]
    fn many_aors_and_saturation() {
        let idx = AorIndex::create(64).unwrap();
        for i in 0..48 {
            idx.insert(&format!("user{i}"));
        }
        assert!(!idx.saturated());
        for i in 0..48 {
            assert!(idx.contains(&format!("user{i}")));
        }
        assert!(!idx.contains("stranger"));
        idx.insert("one-too-many");
        assert!(idx.saturated());
        // Saturated: every answer is "maybe", never a wrong "no".
        assert!(idx.contains("stranger") && idx.contains("one-too-many"));
    }

    #[test]
    fn writes_are_seen_by_forked_readers() {
        let idx = AorIndex::create(1024).unwrap();
        idx.insert("before-fork");
        // SAFETY: the child only reads atomics and exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = idx.contains("before-fork") && !idx.contains("nobody");
            // Wait (bounded) for the parent's write after the fork.
            let mut seen = false;
            for _ in 0..2000 {
                if idx.contains("after-fork") {
                    seen = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // SAFETY: leaves the forked child without running the parent's destructors.
            unsafe { libc::_exit(if ok && seen { 0 } else { 1 }) };
        }
        idx.insert("after-fork");
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}

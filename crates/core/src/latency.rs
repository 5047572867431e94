//! A lock-free latency histogram in shared memory: every SIP worker records how long push_suspend
//! took, `push.stats` reads percentiles. Buckets are powers of two split in four (about 19%
//! resolution), over nanoseconds, so recording is a few instructions and one atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB: usize = 4;
const BUCKETS: usize = 64 * SUB;

#[repr(C)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

/// Bucket of a value: its power of two and the next two bits below the top one.
fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let top = 63 - ns.leading_zeros() as usize;
    let sub = ((ns >> (top - 2)) & 0b11) as usize;
    top * SUB + sub
}

/// The largest value a bucket holds.
fn upper(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let top = index / SUB;
    let sub = (index % SUB) as u64;
    let base = 1u64 << top;
    let step = base >> 2;
    base.saturating_add(step.saturating_mul(sub + 1))
        .saturating_sub(1)
}

/// What `push.stats` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub avg_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Histogram {
    pub fn record(&self, ns: u64) {
        self.buckets[index(ns).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Percentiles are the upper bound of the bucket they fall in (never under-reported).
    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Summary::default();
        }
        let max = self.max_ns.load(Ordering::Relaxed);
        let quantile = |q: f64| {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper(i).min(max);
                }
            }
            max
        };
        Summary {
            count: total,
            avg_ns: self.sum_ns.load(Ordering::Relaxed) / total.max(1),
            p50_ns: quantile(0.50),
            p99_ns: quantile(0.99),
            max_ns: max,
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes of one machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec passed.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values of every magnitude: a random u64 shifted right by 0 to 64 bits.
    fn any_magnitude() -> impl Strategy<Value = u64> {
        (0u32..=64, any::<u64>()).prop_map(|(shift, x)| x.checked_shr(shift).unwrap_or(0))
    }

    proptest! {
        /// A value's bucket holds it, within about 25% above it (from 4 on), and a larger value
        /// never lands in an earlier bucket.
        #[test]
        fn buckets_cover_values_in_order(a in any_magnitude(), b in any_magnitude()) {
            let (small, large) = (a.min(b), a.max(b));
            prop_assert!(index(small) <= index(large), "{} {}", small, large);
            for ns in [small, large] {
                let i = index(ns);
                prop_assert!(i < BUCKETS, "{}", ns);
                prop_assert!(upper(i) >= ns, "{} above its bucket's upper bound {}", ns, upper(i));
                if ns >= 4 {
                    prop_assert!(upper(i) as f64 <= ns as f64 * 1.26 + 1.0, "{}: {}", ns, upper(i));
                }
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(10_000);
        }
        h.record(40_000);
        h.record(1_000_000);
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!((10_000..=12_600).contains(&s.p50_ns), "{s:?}");
        assert!((40_000..=50_400).contains(&s.p99_ns), "{s:?}");
        assert_eq!(s.max_ns, 1_000_000);
        assert_eq!(s.avg_ns, (98 * 10_000 + 40_000 + 1_000_000) / 100);
        assert_eq!(Histogram::default().summary(), Summary::default());
    }
}

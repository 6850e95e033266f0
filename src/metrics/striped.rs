//! Counters striped over cache-line-aligned slots, one stripe per thread (assigned round robin).
//!
//! Every delivered frame adds to two counters from whichever worker thread writes it; with one
//! shared slot per counter the threads would pass the cache line back and forth on every frame.
//! Reading sums the stripes, which is rare (exposition, logs) and stays monotonic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 8;

/// One thread's slots, on cache lines of their own (128 bytes: adjacent-line prefetch pairs
/// lines).
#[repr(align(128))]
struct Stripe<const N: usize>([AtomicU64; N]);

pub struct StripedCounters<const N: usize> {
    stripes: [Stripe<N>; STRIPES],
}

impl<const N: usize> Default for StripedCounters<N> {
    fn default() -> Self {
        StripedCounters {
            stripes: std::array::from_fn(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

impl<const N: usize> StripedCounters<N> {
    pub fn add(&self, index: usize, n: u64) {
        self.stripes[this_threads_stripe()].0[index].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, index: usize) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0[index].load(Ordering::Relaxed))
            .sum()
    }
}

fn this_threads_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_what_every_thread_added() {
        let counters = StripedCounters::<2>::default();
        std::thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counters.add(1, 2);
                    }
                });
            }
        });
        assert_eq!(counters.get(1), 24_000);
        assert_eq!(counters.get(0), 0);
    }
}

//! A spinning barrier for the threads of one layer's time loop: one wait per step,
//! microseconds apart, where a futex round trip would cost as much as the step itself
//! for small batches.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::plan::BARRIER_SPINS;

/// A reusable barrier for a fixed number of threads.
#[derive(Debug)]
pub(crate) struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    /// A barrier for `threads` threads.
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Blocks until all `threads` threads have called `wait` for this generation.
    /// Everything a thread wrote before its `wait` is visible to every thread after it.
    pub fn wait(&self) {
        if self.threads <= 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
            return;
        }
        // Spin a very little, then yield until the generation turns (see
        // `BARRIER_SPINS` for why so little).
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < BARRIER_SPINS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn no_thread_passes_before_all_arrive() {
        let threads = 4;
        let barrier = SpinBarrier::new(threads);
        let counter = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for round in 1..=200u64 {
                        counter.fetch_add(1, Ordering::AcqRel);
                        barrier.wait();
                        // Every thread of this round has counted.
                        assert!(counter.load(Ordering::Acquire) >= round * threads as u64);
                        barrier.wait();
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 200 * threads as u64);
    }
}

//! A spinning barrier for the threads of one layer's time loop: one wait per step,
//! microseconds apart, where a futex round trip would cost as much as the step itself
//! for small batches.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A reusable barrier for a fixed number of threads.
#[derive(Debug)]
pub(crate) struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
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
        let ticket = self.arrive();
        self.wait_for(ticket);
    }

    /// The first half of [`SpinBarrier::wait`]: says this thread has arrived (everything
    /// it wrote before is published) without waiting for the others, so that it can do
    /// work of its own that nobody waits for before [`SpinBarrier::wait_for`]. A thread
    /// that arrives early spends that time working instead of spinning.
    pub fn arrive(&self) -> Ticket {
        if self.threads <= 1 {
            return Ticket(0);
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ticket(generation)
    }

    /// The second half of [`SpinBarrier::wait`]: blocks until every thread has arrived
    /// in the generation of `ticket`. Everything the threads wrote before arriving is
    /// then visible.
    pub fn wait_for(&self, ticket: Ticket) {
        if self.threads <= 1 {
            return;
        }
        // Spin a little (a step's usual jitter is a few microseconds), then yield: past
        // that, the thread we wait for is likely not running, perhaps on our CPU (more
        // workers than CPUs). 256 `pause`s are 1-12 us by CPU model. Measured on this
        // project's 2-vCPU machine, `infer-b1-h512` at 2 threads (a barrier every 30 us):
        // 4096 spins before yielding took 2-4 ms in runs where the scheduler had put both
        // workers on one CPU, 256 took 0.9-2 ms; a time-based limit of 12 or 50 us
        // (checking a clock every 64 spins) was slower than 256 spins in alternated runs.
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == ticket.0 {
            if spins < 256 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A thread's arrival at a [`SpinBarrier`], to wait on with [`SpinBarrier::wait_for`].
#[derive(Debug, Clone, Copy)]
#[must_use = "a ticket is for waiting on"]
pub(crate) struct Ticket(usize);

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

    #[test]
    fn wait_for_returns_only_after_every_thread_arrived() {
        let threads = 3;
        let barrier = SpinBarrier::new(threads);
        let arrived = AtomicU64::new(0);
        let worked = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for round in 1..=200u64 {
                        arrived.fetch_add(1, Ordering::AcqRel);
                        let ticket = barrier.arrive();
                        // Work between arriving and waiting, as the time loop does.
                        worked.fetch_add(1, Ordering::Relaxed);
                        barrier.wait_for(ticket);
                        assert!(arrived.load(Ordering::Acquire) >= round * threads as u64);
                        barrier.wait();
                    }
                });
            }
        });
        assert_eq!(worked.load(Ordering::Relaxed), 200 * threads as u64);
    }
}

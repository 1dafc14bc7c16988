//! The execution context every engine function runs on: one ISA's kernels, the thread
//! pool (or none: the calling thread alone) and its size; and the raw pointer its threads
//! share.

use std::sync::Arc;

use lstm_kernels_simd::Kernels;
use rayon::ThreadPool;

/// Kernels, threads and the pool that runs them. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub(crate) struct ExecContext {
    /// The kernels of the chosen ISA.
    pub kernels: Kernels,
    /// The workers; `None` runs everything on the calling thread.
    pub pool: Option<Arc<ThreadPool>>,
    /// How many threads share each loop: the pool's size, or 1.
    pub threads: usize,
}

impl ExecContext {
    /// A context running `kernels` on `pool`.
    pub fn new(kernels: Kernels, pool: Option<Arc<ThreadPool>>) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
        ExecContext {
            kernels,
            pool,
            threads,
        }
    }

    /// This context on its first `threads` threads only (at least 1): on 1, the calling
    /// thread alone, with no hand-off to the pool at all; on more, the pool's workers past
    /// `threads` return from each broadcast at once.
    pub fn with_threads(&self, threads: usize) -> ExecContext {
        let threads = threads.clamp(1, self.threads);
        ExecContext {
            kernels: self.kernels,
            pool: if threads == 1 {
                None
            } else {
                self.pool.clone()
            },
            threads,
        }
    }

    /// The pool, if there is one.
    pub fn pool(&self) -> Option<&ThreadPool> {
        self.pool.as_deref()
    }

    /// Runs `body(tid)` once on every thread, `tid` in `0..threads`, and waits for all of
    /// them: one broadcast, so that a loop's threads exist for its whole duration and can
    /// meet at barriers.
    pub fn broadcast(&self, body: impl Fn(usize) + Sync) {
        match self.pool() {
            Some(pool) => {
                let threads = self.threads;
                pool.broadcast(|ctx| {
                    if ctx.index() < threads {
                        body(ctx.index())
                    }
                });
            }
            None => body(0),
        }
    }

    /// Runs `f` inside the pool, so that rayon's parallel iterators and the `gemm` crate
    /// use its threads (the calling thread alone without a pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.pool() {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

/// A pointer the threads of one broadcast share; see the SAFETY notes where it is used.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: only used inside a broadcast whose threads write disjoint tiles of the buffer
// it points into, which outlives the broadcast.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for SendPtr {}

//! The crate's thread pool: `rayon` workers, each bound to a CPU of its own.
//!
//! The time loops hand every worker an equal share of each step, so a step lasts as long
//! as its slowest worker. Left to the Linux scheduler, two workers woken together are
//! sometimes put on the same CPU and stay there for whole calls: measured on this
//! project's 2-vCPU machine, `infer-b1-h512` at 2 threads then took 3.1-4.1 ms instead
//! of 1.0 ms in 5 of 6 runs (each barrier waited for a worker that could not run). Bound
//! to distinct CPUs, 6 runs of 6 took 0.92-1.32 ms. OpenMP runtimes avoid the same trap by
//! spinning between parallel regions (and `OMP_PROC_BIND`); ONNX Runtime binds its
//! workers by default.

use std::sync::Arc;

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::model::error::{Error, Result};

use super::machine::allowed_cpus;
use super::plan::pin_workers;

/// The pool for `threads` threads (`None` meaning every core): `None` for one thread,
/// whose work the caller's thread does. `pin`: bind worker `i` to the `i`-th CPU the
/// calling thread may run on (`None`: when there are at least as many such CPUs as
/// workers; `Some(true)`: always, wrapping around; `Some(false)`: never). Binding is
/// Linux-only and best effort: a CPU that refuses leaves its worker unbound.
///
/// # Errors
/// [`Error::Config`] when `threads` is 0 or the threads cannot start.
pub(crate) fn thread_pool(
    threads: Option<usize>,
    pin: Option<bool>,
) -> Result<Option<Arc<ThreadPool>>> {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(Error::Config("threads must be at least 1, got 0".into()));
    }
    if threads == 1 {
        return Ok(None);
    }
    let cpus = allowed_cpus();
    let cpus = if pin_workers(pin, cpus.len(), threads) {
        cpus
    } else {
        Vec::new()
    };
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lstm-kernels-{i}"))
        .start_handler(move |i| {
            if !cpus.is_empty() {
                bind_current_thread(cpus[i % cpus.len()]);
            }
        })
        .build()
        .map(|p| Some(Arc::new(p)))
        .map_err(|e| Error::Config(format!("cannot start {threads} threads: {e}")))
}

/// Binds the calling thread to `cpu`; a refusal leaves it as it was.
#[cfg(target_os = "linux")]
fn bind_current_thread(cpu: usize) {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `allowed_cpus`, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid mask of `size_of::<cpu_set_t>()` bytes; pid 0 is this
    // thread. The result is ignored on purpose: binding is only a hint for speed.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

#[cfg(not(target_os = "linux"))]
fn bind_current_thread(_cpu: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_bound_to_distinct_allowed_cpus() {
        let cpus = allowed_cpus();
        if cfg!(not(target_os = "linux")) || cpus.len() < 2 {
            return;
        }
        let pool = thread_pool(Some(2), None).unwrap().unwrap();
        let seen = pool.broadcast(|_| allowed_cpus());
        assert_eq!(seen, vec![vec![cpus[0]], vec![cpus[1]]]);
        let free = thread_pool(Some(2), Some(false)).unwrap().unwrap();
        assert!(free
            .broadcast(|_| allowed_cpus())
            .iter()
            .all(|c| *c == cpus));
    }

    #[test]
    fn zero_threads_is_an_error() {
        let err = thread_pool(Some(0), None).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}

//! How an [`Lstm`](super::lstm::Lstm) is built: the ISA, the threads, and the planner's
//! choices a caller may force.

use lstm_kernels_simd::Isa;

/// How an [`Lstm`](crate::Lstm) chooses the plan of a call shape (its threads, how they
/// share each layer, where the input projection runs): every plan gives the same bits, so
/// this is a matter of speed only. A fixed plan is the options that force each choice
/// (`call_threads`, `split_rows`, `step_projection`, `split_directions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Planning {
    /// The planner's rules, from the machine's caches and the call's size (no timing).
    #[default]
    Heuristic,
    /// The first forward call of each (batch, steps) shape times the candidate plans on
    /// its own input (each up to three times, keeping its fastest run; one run when it is
    /// more than twice as slow as the best so far; the choices the options force stay
    /// fixed) and keeps the fastest, as cuDNN's benchmark mode and FFTW's planner do: that
    /// call costs several passes (and a slow candidate's pass: with more threads than
    /// CPUs, a plan that splits every step between them is many times slower), the next
    /// ones none. [`Lstm::plans_json`](crate::Lstm::plans_json) saves what was chosen.
    Measure,
}

/// How to build an [`Lstm`](crate::Lstm).
#[derive(Debug, Clone, Copy, Default)]
pub struct LstmOptions {
    /// Force an instruction set; `None` picks the best one of this CPU (or the one the
    /// `LSTM_KERNELS_ISA` environment variable names: `scalar`, `avx2`, `avx512`, `neon`).
    pub isa: Option<Isa>,
    /// Threads; `None` uses every core. Each call uses as many of them as its work pays
    /// for (a small call runs on the calling thread alone) and no more than the process
    /// has CPUs, unless `call_threads` says.
    pub threads: Option<usize>,
    /// Threads every call uses, at most `threads`: `None` lets the planner choose per call
    /// shape (as many as pay: each extra thread costs a hand-off per call and a barrier
    /// per step); `Some(n)` uses `n` whatever the work (tests use it to run the thread
    /// splits on small problems). A matter of speed only: the same bits either way.
    pub call_threads: Option<usize>,
    /// How each call shape's plan is chosen (see [`Planning`]).
    pub planning: Planning,
    /// Where a layer's input projection runs: `Some(true)` inside the time loop, each
    /// step's own in the same `k` loop as its recurrent product; `Some(false)` as one
    /// product over every step up front; `None` lets the planner decide per layer (in the
    /// time loop when a thread's slices of the layer's weights fit in its L2 and it has
    /// 24 rows or more per step, or they fit with room to spare and the batch has 32
    /// sequences or more or the threads split the hidden units). A matter of speed only:
    /// the results are the same bits either way.
    pub step_projection: Option<bool>,
    /// How the threads share a layer's time loop: `Some(true)` by sequences (each thread
    /// computes every hidden unit of its own rows, with no barrier between steps),
    /// `Some(false)` by hidden units (every row, a barrier each step); `None` decides per
    /// layer (by sequences when the layer's `W_h`, and `W_x` too if each step projects
    /// its own inputs, fit in a core's L2 and every thread gets a full register block of
    /// rows: 6 with AVX-512 or NEON, 3 with AVX2). A matter of speed only: the same bits
    /// either way.
    pub split_rows: Option<bool>,
    /// How a bidirectional layer uses several threads: `Some(true)` runs its two
    /// directions at the same time, each on half the threads (no thread waits for the
    /// other direction's), `Some(false)` one direction after the other on every thread;
    /// `None` runs them at once on an even thread count. A matter of speed only: the same
    /// bits either way.
    pub split_directions: Option<bool>,
    /// Whether each worker thread is bound to a CPU of its own (Linux; ignored
    /// elsewhere): `None` binds worker `i` to the `i`-th CPU of the caller's affinity
    /// mask when there are enough of them, `Some(false)` leaves the workers to the
    /// scheduler, `Some(true)` binds them even when they outnumber the CPUs (wrapping
    /// around). Unbound, two workers sometimes share one CPU for whole calls, and every
    /// step then waits for the one that cannot run.
    pub pin_threads: Option<bool>,
}

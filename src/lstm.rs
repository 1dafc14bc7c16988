//! `Lstm`: weights packed for one set of SIMD kernels and a thread count, and the fast
//! forward pass over the packed-sequence schedule.
//!
//! Per layer and direction: the real tokens are gathered in schedule order (layer 0 is
//! read in place when the sequences keep their order and each step reads its own rows),
//! one product makes every step's input projection (bias folded in, columns already in
//! the kernels' tile order; layers whose weights fit in L2 sum each step's in the step
//! kernel's own `k` loop instead, given enough rows), then the time loop runs the fused
//! step kernel on the active prefix of rows. When the layer's `W_h` fits in a core's L2
//! and each thread gets a full register block of rows, each thread runs its own
//! sequences through every step and the threads never wait for each other; otherwise
//! each thread owns the same tiles of hidden units (and so the same panels of `W_h`) at
//! every step, and the threads meet at one spinning barrier per step (two when the layer
//! projects); see [`Lstm::plan`]. A one-direction stack's last layer writes its outputs
//! to the caller's layout from inside the time loop. Nothing is allocated and no thread
//! is spawned inside the loop.

use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use lstm_kernels_simd::{InputPart, Isa, Kernels, StepRaw};
use rayon::ThreadPool;

use crate::barrier::SpinBarrier;
use crate::error::{Error, Result};
use crate::forward::{prepare, ForwardInput, Workspace};
use crate::packed::{pack_all, repack_into, PackedCell};
use crate::panel_gemm::{gemm_raw, Panels, ROWS_PER_CALL};
use crate::pool::thread_pool;
use crate::reference::row_index;
use crate::schedule::Schedule;
use crate::train::TrainReserve;
use crate::weights::LstmWeights;

/// How to build an [`Lstm`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LstmOptions {
    /// Force an instruction set; `None` picks the best one of this CPU (or the one the
    /// `LSTM_KERNELS_ISA` environment variable names: `scalar`, `avx2`, `avx512`, `neon`).
    pub isa: Option<Isa>,
    /// Threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Where a layer's input projection runs: `Some(true)` inside the time loop, each
    /// step's own in the same `k` loop as its recurrent product; `Some(false)` as one
    /// product over every step up front; `None` decides per layer (in the time loop when
    /// a thread's slices of the layer's weights fit in its L2 and it has 24 rows or more
    /// per step, or they fit with room to spare and the batch has 32 sequences or more
    /// or the threads split the hidden units). A matter of speed only: the results are
    /// the same bits either way.
    pub step_projection: Option<bool>,
    /// How the threads share a layer's time loop: `Some(true)` by sequences (each thread
    /// computes every hidden unit of its own rows, with no barrier between steps),
    /// `Some(false)` by hidden units (every row, a barrier each step); `None` decides per
    /// layer (by sequences when the layer's `W_h`, and `W_x` too if each step projects
    /// its own inputs, fit in a core's L2 and every thread gets a full register block of
    /// rows: 6 with AVX-512 or NEON, 3 with AVX2). A matter of speed only: the same bits
    /// either way.
    pub split_rows: Option<bool>,
    /// Whether each worker thread is bound to a CPU of its own (Linux; ignored
    /// elsewhere): `None` binds worker `i` to the `i`-th CPU of the caller's affinity
    /// mask when there are enough of them, `Some(false)` leaves the workers to the
    /// scheduler, `Some(true)` binds them even when they outnumber the CPUs (wrapping
    /// around). Unbound, two workers sometimes share one CPU for whole calls, and every
    /// step then waits for the one that cannot run.
    pub pin_threads: Option<bool>,
}

/// An LSTM ready to run: its weights, repacked once for the chosen SIMD kernels, and its
/// thread pool (its own, or one it shares with the other parts of a model).
///
/// Results are bitwise identical whatever the thread count.
pub struct Lstm {
    weights: LstmWeights,
    kernels: Kernels,
    cells: Vec<PackedCell>,
    threads: usize,
    pool: Option<Arc<ThreadPool>>,
    step_projection: Option<bool>,
    split_rows: Option<bool>,
}

impl std::fmt::Debug for Lstm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lstm")
            .field("spec", self.weights.spec())
            .field("isa", &self.kernels.isa())
            .field("threads", &self.threads)
            .finish()
    }
}

/// Raw pointers shared by the threads of one time loop. Each thread writes only what the
/// schedule gives it (its tiles' columns, or its rows of the projection).
#[derive(Clone, Copy)]
struct Shared {
    zx: *const f32,
    /// The layer direction's inputs `[total, ld_x]` in schedule order when each step
    /// computes its own input projection (see [`Lstm::plan`]); null when one
    /// product made every step's `zx` up front.
    x: *const f32,
    ld_x: usize,
    /// When set, `x` is the caller's input read in place (layer 0, sequences in their
    /// own order): step `s`, row `j` at `x + s * .0 + j * .1`, instead of the packed
    /// row `offset[s] + j` of stride `ld_x`.
    x_in_place: Option<(usize, usize)>,
    /// The caller's output `[B, T, ow]` (or `[T, B, ow]`), which the last layer's
    /// threads fill step by step (null: the caller's thread does it after the loop).
    final_out: *mut f32,
    /// The layer's inputs `[total, ld_x]` when the time loop's threads compute the
    /// projection up front themselves, each its own tiles for every row, before their
    /// first step (null otherwise).
    project: *const f32,
    /// The caller's layout: time-major, `B`, `T` (for `final_out`).
    time_major: bool,
    batch: usize,
    steps: usize,
    h0: *const f32,
    c: *mut f32,
    m: *mut f32,
    out: *mut f32,
    /// Forward-training only (null otherwise): per-step gates `[total, gw]`, cell states
    /// `[total, hp]`, kernel outputs `m` `[total, hp]` (projecting layers) and unclipped
    /// projections `[total, P]` (with `proj_clip`).
    gates: *mut f32,
    c_hist: *mut f32,
    m_hist: *mut f32,
    h_raw: *mut f32,
}
impl Shared {
    /// Where step `s`'s input rows start, and their stride.
    fn x_rows(&self, sched: &Schedule, s: usize) -> (*const f32, usize) {
        match self.x_in_place {
            Some((step, row)) => (self.x.wrapping_add(s * step), row),
            None => (self.x.wrapping_add(sched.offset[s] * self.ld_x), self.ld_x),
        }
    }
}

// SAFETY: the pointers address workspace buffers that outlive the broadcast in which they
// are used, and the time loop's partition (disjoint tiles, disjoint rows, a barrier between
// phases) keeps concurrent writes disjoint and ordered before dependent reads.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

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

/// Grows `v` to at least `n` elements (allocates only the first time a size is seen).
pub(crate) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// `lo..hi` of `n` items for part `i` of `parts`, balanced and contiguous.
pub(crate) fn split(n: usize, parts: usize, i: usize) -> (usize, usize) {
    (i * n / parts, (i + 1) * n / parts)
}

impl Lstm {
    /// Packs `weights` for the best kernels of this CPU, using every core.
    ///
    /// # Errors
    /// [`Error::Config`] when `LSTM_KERNELS_ISA` names an unknown ISA or one this CPU
    /// lacks, or the thread pool cannot be created.
    pub fn new(weights: LstmWeights) -> Result<Self> {
        Self::with_options(weights, LstmOptions::default())
    }

    /// Packs `weights` for the given ISA and thread count.
    ///
    /// # Errors
    /// [`Error::Config`] when the ISA is not available on this CPU, `threads` is 0, or
    /// the thread pool cannot be created.
    pub fn with_options(weights: LstmWeights, options: LstmOptions) -> Result<Self> {
        let mut lstm = Self::with_pool(
            weights,
            options.isa,
            thread_pool(options.threads, options.pin_threads)?,
        )?;
        lstm.step_projection = options.step_projection;
        lstm.split_rows = options.split_rows;
        Ok(lstm)
    }

    /// Packs `weights` for the given ISA, running on `pool` (one thread when `None`). A
    /// model of several parts shares one pool between them, so that a part's idle
    /// workers never compete for the cores with the next part's.
    ///
    /// # Errors
    /// [`Error::Config`] when the ISA is not available on this CPU.
    pub(crate) fn with_pool(
        weights: LstmWeights,
        isa: Option<Isa>,
        pool: Option<Arc<ThreadPool>>,
    ) -> Result<Self> {
        let kernels = match isa {
            Some(isa) => Kernels::for_isa(isa).ok_or_else(|| {
                Error::Config(format!("ISA `{}` is not available on this CPU", isa.name()))
            })?,
            None => Kernels::try_detect().map_err(|e| Error::Config(e.to_string()))?,
        };
        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
        let cells = pack_all(weights.spec(), &weights, &kernels, pool.as_deref());
        Ok(Lstm {
            weights,
            kernels,
            cells,
            threads,
            pool,
            step_projection: None,
            split_rows: None,
        })
    }

    /// The weights, in the crate's canonical layout.
    pub fn weights(&self) -> &LstmWeights {
        &self.weights
    }

    /// Changes the weights in place (an optimiser step) and repacks them into the
    /// kernels' buffers, which are reused: `f` must keep the spec.
    ///
    /// # Errors
    /// [`Error::Config`] when `f` replaced the weights by ones of another spec (the
    /// weights are then left as `f` made them, and the packed copy as it was).
    pub fn update_weights(&mut self, f: impl FnOnce(&mut LstmWeights) -> Result<()>) -> Result<()> {
        let spec = self.weights.spec().clone();
        f(&mut self.weights)?;
        if *self.weights.spec() != spec {
            return Err(Error::Config("update_weights changed the spec".into()));
        }
        repack_into(
            &mut self.cells,
            &self.weights,
            &self.kernels,
            self.pool.as_deref(),
        );
        Ok(())
    }

    /// One SGD step: `weights -= learning_rate * gradients`, then repack.
    ///
    /// # Errors
    /// [`Error::Config`] when `gradients` has another spec.
    pub fn sgd_step(&mut self, gradients: &LstmWeights, learning_rate: f32) -> Result<()> {
        self.update_weights(|w| w.add_scaled(gradients, -learning_rate))
    }

    /// The instruction set the kernels use.
    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the stack forward for inference.
    ///
    /// On success `ws.output()` holds the output and `ws.final_state()` the final state
    /// of every cell, with TF `dynamic_rnn` semantics.
    ///
    /// # Errors
    /// [`Error::Shape`] when `input.data` is not `[B, T, I]` (or `[T, B, I]`), `B` or `T`
    /// is zero, `sequence_length` is not `[B]`, the initial state does not have the
    /// spec's cells and shapes, or [`InitialState::Carry`](crate::InitialState::Carry)
    /// follows no pass of the same batch size; [`Error::Length`] when a length is outside
    /// `0..=T`; [`Error::Config`] when `ws` was made for another spec.
    pub fn forward_inference(&self, input: &ForwardInput<'_>, ws: &mut Workspace) -> Result<()> {
        prepare(self.weights.spec(), input, ws)?;
        self.run(input, ws, None);
        Ok(())
    }

    /// Runs the stack forward for training: as [`Lstm::forward_inference`], and keeps in
    /// `reserve` what [`Lstm::backward`] needs (the schedule, every step's activated gates
    /// and cell state, the layer outputs; the kernels' outputs and unclipped projections
    /// for projecting layers).
    ///
    /// # Errors
    /// As [`Lstm::forward_inference`].
    pub fn forward_training(
        &self,
        input: &ForwardInput<'_>,
        ws: &mut Workspace,
        reserve: &mut TrainReserve,
    ) -> Result<()> {
        prepare(self.weights.spec(), input, ws)?;
        self.run(input, ws, Some(reserve));
        Ok(())
    }

    /// A reserve for [`Lstm::forward_training`] sized for `batch` sequences of up to
    /// `steps` steps, so that training never allocates.
    pub fn reserve(&self, batch: usize, steps: usize) -> TrainReserve {
        let mut r = TrainReserve::default();
        r.grow(self.weights.spec(), &self.cells, batch, batch * steps);
        r
    }

    pub(crate) fn cells(&self) -> &[PackedCell] {
        &self.cells
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    pub(crate) fn pool(&self) -> Option<&ThreadPool> {
        self.pool.as_deref()
    }

    fn run(
        &self,
        input: &ForwardInput<'_>,
        ws: &mut Workspace,
        mut train: Option<&mut TrainReserve>,
    ) {
        let spec = self.weights.spec();
        let (batch, steps, tm) = (input.batch, input.steps, spec.time_major());
        let Workspace {
            output,
            state,
            lengths,
            fast,
            ..
        } = ws;
        let f = fast;
        f.sched.rebuild(&lengths[..batch]);
        let sched = &f.sched;
        let total = sched.total();
        let max_of = |g: &dyn Fn(&PackedCell) -> usize| self.cells.iter().map(g).max().unwrap_or(0);
        f.xg.grow(total * max_of(&|c| c.input));
        f.zx.grow(total * max_of(&|c| c.gate_width()));
        let widest_out = (0..spec.num_layers())
            .map(|l| spec.layer_output_size(l))
            .max()
            .unwrap_or(0);
        f.pa.grow(total * widest_out);
        f.pb.grow(total * widest_out);
        grow(&mut f.bwd, total * max_of(&|c| c.recurrent));
        grow(&mut f.c, batch * max_of(&|c| c.padded));
        grow(&mut f.m, batch * max_of(&|c| c.padded));
        grow(&mut f.h0, batch * max_of(&|c| c.recurrent));
        if let Some(t) = train.as_deref_mut() {
            t.grow(spec, &self.cells, batch, total);
            t.sched.clone_from(sched);
            t.batch = batch;
            t.steps = steps;
            t.lengths.clear();
            t.lengths.extend_from_slice(&lengths[..batch]);
            t.filled = true;
        }

        let dirs = spec.num_directions();
        let identity = sched.order.iter().enumerate().all(|(j, &b)| j == b);
        // A one-direction stack's last layer puts its outputs where the caller wants them
        // from inside the time loop, each thread its own part, instead of one thread
        // copying them all afterwards.
        let scatter_in_loop = dirs == 1;
        for l in 0..spec.num_layers() {
            let out_w = spec.layer_output_size(l);
            let (src, dst) = if l % 2 == 0 {
                (&f.pb, &mut f.pa)
            } else {
                (&f.pa, &mut f.pb)
            };
            for dir in 0..dirs {
                let k = l * dirs + dir;
                let cell = &self.cells[k];
                let (in_w, gw, r) = (cell.input, cell.gate_width(), cell.recurrent);

                let (by_rows, fuse) = self.plan(cell, sched.active.first().copied().unwrap_or(0));
                // Layer 0 read where it is, when each step reads its own rows and the
                // sequences keep their order (all of the same length, say): no gather.
                let x_in_place = (l == 0 && dir == 0 && fuse && identity).then(|| {
                    if tm {
                        (batch * in_w, in_w)
                    } else {
                        (in_w, steps * in_w)
                    }
                });
                // The inputs of every real token, in this direction's processing order.
                let x: &[f32] = if x_in_place.is_some() {
                    input.data
                } else if l == 0 {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let t = if dir == 0 { s } else { sched.lens[j] - 1 - s };
                            let from = row_index(tm, batch, steps, sched.order[j], t) * in_w;
                            let to = sched.row(j, s) * in_w;
                            f.xg[to..to + in_w].copy_from_slice(&input.data[from..from + in_w]);
                        }
                    }
                    &f.xg[..total * in_w]
                } else if dir == 0 {
                    &src[..total * in_w]
                } else {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let from = sched.reversed_row(j, s) * in_w;
                            let to = sched.row(j, s) * in_w;
                            f.xg[to..to + in_w].copy_from_slice(&src[from..from + in_w]);
                        }
                    }
                    &f.xg[..total * in_w]
                };

                // Every step's input projection at once, bias folded in, in tile order
                // (or step by step in the time loop). Split by units, each thread's tiles
                // of the projection are the ones its steps read: the time loop's threads
                // compute them first, in the same broadcast.
                let project_in_loop = !fuse && !by_rows;
                if !fuse && !project_in_loop {
                    let u4 = 4 * self.kernels.unit_tile();
                    let w_x = Panels::packed(&cell.w_x_panels, in_w, u4);
                    self.panel_gemm(total, x, in_w, w_x, &cell.bias, &mut f.zx, gw);
                }

                // The initial state in schedule order; padding units of c are zero.
                let (h, hp) = (cell.hidden, cell.padded);
                let st = &mut state.cells[k];
                for (j, &b) in sched.order.iter().enumerate() {
                    f.c[j * hp..j * hp + h].copy_from_slice(&st.c[b * h..(b + 1) * h]);
                    f.c[j * hp + h..(j + 1) * hp].fill(0.0);
                    f.h0[j * r..(j + 1) * r].copy_from_slice(&st.h[b * r..(b + 1) * r]);
                }

                // The forward direction writes its outputs straight into the layer's
                // packed output; the backward one into its own buffer, in its order.
                let (target, target_ld): (&mut [f32], usize) = if dir == 0 {
                    (&mut dst[..], out_w)
                } else {
                    (&mut f.bwd[..], r)
                };
                let mut shared = Shared {
                    zx: f.zx.as_ptr(),
                    x: if fuse { x.as_ptr() } else { std::ptr::null() },
                    ld_x: in_w,
                    project: if project_in_loop {
                        x.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    x_in_place,
                    final_out: if scatter_in_loop && l + 1 == spec.num_layers() {
                        output.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    time_major: tm,
                    batch,
                    steps,
                    h0: f.h0.as_ptr(),
                    c: f.c.as_mut_ptr(),
                    m: f.m.as_mut_ptr(),
                    out: target.as_mut_ptr(),
                    gates: std::ptr::null_mut(),
                    c_hist: std::ptr::null_mut(),
                    m_hist: std::ptr::null_mut(),
                    h_raw: std::ptr::null_mut(),
                };
                if let Some(t) = train.as_deref_mut() {
                    let tape = &mut t.cells[k];
                    tape.c0[..batch * hp].copy_from_slice(&f.c[..batch * hp]);
                    tape.h0[..batch * r].copy_from_slice(&f.h0[..batch * r]);
                    shared.gates = tape.gates.as_mut_ptr();
                    shared.c_hist = tape.c.as_mut_ptr();
                    if cell.projection.is_some() {
                        shared.m_hist = tape.m.as_mut_ptr();
                        if spec.proj_clip().is_some() {
                            shared.h_raw = tape.h_raw.as_mut_ptr();
                        }
                    }
                }
                self.time_loop(cell, sched, shared, target_ld, by_rows);
                if let Some(t) = train.as_deref_mut() {
                    if dir == 1 {
                        t.cells[k].h_seq[..total * r].copy_from_slice(&target[..total * r]);
                    }
                }

                for (j, &b) in sched.order.iter().enumerate() {
                    st.c[b * h..(b + 1) * h].copy_from_slice(&f.c[j * hp..j * hp + h]);
                    if sched.lens[j] > 0 {
                        let row = sched.row(j, sched.lens[j] - 1) * target_ld;
                        st.h[b * r..(b + 1) * r].copy_from_slice(&target[row..row + r]);
                    }
                }
                if dir == 1 {
                    for s in 0..sched.steps() {
                        for j in 0..sched.active[s] {
                            let to = sched.reversed_row(j, s) * out_w + r;
                            let from = sched.row(j, s) * r;
                            dst[to..to + r].copy_from_slice(&f.bwd[from..from + r]);
                        }
                    }
                }
            }
            if let Some(t) = train.as_deref_mut() {
                t.outs[l][..total * out_w].copy_from_slice(&dst[..total * out_w]);
            }
        }

        // Back to the caller's order and layout (unless the time loop did it), zeros past
        // each length.
        let last = if spec.num_layers() % 2 == 1 {
            &f.pa
        } else {
            &f.pb
        };
        let ow = spec.output_size();
        if !scatter_in_loop {
            for s in 0..sched.steps() {
                for j in 0..sched.active[s] {
                    let to = row_index(tm, batch, steps, sched.order[j], s) * ow;
                    let from = sched.row(j, s) * ow;
                    output[to..to + ow].copy_from_slice(&last[from..from + ow]);
                }
            }
        }
        for (b, &len) in lengths[..batch].iter().enumerate() {
            for t in len..steps {
                let to = row_index(tm, batch, steps, b, t) * ow;
                output[to..to + ow].fill(0.0);
            }
        }
    }

    /// The recurrence of one layer direction over the schedule. `p.out` receives `h` at
    /// row `offset[s] + j` (row stride `out_ld`), which is also where step `s + 1` reads
    /// its `h_prev`.
    fn time_loop(
        &self,
        cell: &PackedCell,
        sched: &Schedule,
        p: Shared,
        out_ld: usize,
        by_rows: bool,
    ) {
        let threads = self.threads;
        let barrier = SpinBarrier::new(threads);
        let body =
            |tid: usize| self.time_loop_thread(cell, sched, p, out_ld, &barrier, tid, by_rows);
        match self.pool.as_deref() {
            Some(pool) => {
                pool.broadcast(|ctx| body(ctx.index()));
            }
            None => body(0),
        }
    }

    #[allow(clippy::too_many_arguments)] // the loop's shared state and this thread's part
    fn time_loop_thread(
        &self,
        cell: &PackedCell,
        sched: &Schedule,
        p: Shared,
        out_ld: usize,
        barrier: &SpinBarrier,
        tid: usize,
        by_rows: bool,
    ) {
        let threads = self.threads;
        let u = self.kernels.unit_tile();
        let (h, hp, r, gw) = (cell.hidden, cell.padded, cell.recurrent, cell.gate_width());
        // This thread's part: its tiles of every row, or (`by_rows`) every tile of the
        // rows `j0, j0 + rs, j0 + 2 rs, ...` of each step. A sequence only ever needs its
        // own previous row, so split by rows the threads never wait for each other.
        let (t_lo, t_hi, j0, rs) = if by_rows {
            (0, hp / u, tid, threads)
        } else {
            let (t_lo, t_hi) = split(hp / u, threads, tid);
            (t_lo, t_hi, 0, 1)
        };
        let (u_lo, u_hi) = ((t_lo * u).min(h), (t_hi * u).min(h));
        // Without padding or projection the kernel writes h where it belongs.
        let direct = cell.projection.is_none() && h == hp;
        let spec = self.weights.spec();
        if !p.project.is_null() {
            // Split by units: this thread's tiles of every step's projection, as
            // `panel_gemm` would split them, without a broadcast of its own.
            let (total, u4) = (sched.total(), 4 * u);
            let w_x = Panels::packed(&cell.w_x_panels, cell.input, u4);
            let mut r0 = 0;
            while r0 < total {
                let n = ROWS_PER_CALL.min(total - r0);
                let raw = gemm_raw(
                    n,
                    p.project.wrapping_add(r0 * p.ld_x),
                    p.ld_x,
                    &w_x,
                    cell.bias.as_ptr(),
                    p.zx.cast_mut().wrapping_add(r0 * gw),
                    gw,
                    t_lo..t_hi,
                );
                // SAFETY: `project` holds `total` rows of `ld_x >= input` floats, `zx`
                // `total` rows of `gw`, the packed `W_x` and the bias every tile; this
                // thread writes only its tiles' columns of `zx`, which only its own steps
                // read, after this.
                unsafe { self.kernels.gemm_tiles_raw(&raw) };
                r0 += n;
            }
        }
        for s in 0..sched.steps() {
            // Rows j0 + i * rs for i < rows (all of them when split by tiles).
            let rows = sched.active[s].saturating_sub(j0).div_ceil(rs);
            let row_of = |i: usize| j0 + i * rs;
            // Every offset below stays within the workspace buffers, which `run` grew to
            // `total` rows (zx, out, the reserve) and `batch` rows (c, m, h0); pointers
            // are formed with wrapping arithmetic and only dereferenced for real rows.
            let (h_prev, ld_h_prev) = if s == 0 {
                (p.h0, r)
            } else {
                (
                    p.out
                        .wrapping_add(sched.offset[s - 1] * out_ld)
                        .cast_const(),
                    out_ld,
                )
            };
            let out_rows = p.out.wrapping_add(sched.offset[s] * out_ld);
            // Training keeps every step's `m` of a projecting layer for the gradient of
            // the projection.
            let m_rows = if p.m_hist.is_null() {
                p.m
            } else {
                p.m_hist.wrapping_add(sched.offset[s] * hp)
            };
            let (h_out, ld_h_out) = if direct {
                (out_rows, out_ld)
            } else {
                (m_rows, hp)
            };
            let zx_rows = p.zx.wrapping_add(sched.offset[s] * gw);
            // With the projection in the time loop, the kernel sums `bias + x W_x + h W_h`
            // in one k loop (the same chain as projecting first).
            let (x_rows, ld_x) = p.x_rows(sched, s);
            let (input, zx, ld_zx) = if p.x.is_null() {
                (None, zx_rows.wrapping_add(j0 * gw), gw * rs)
            } else {
                let u4 = 4 * u;
                let part = InputPart {
                    kx: cell.input,
                    x: x_rows.wrapping_add(j0 * ld_x),
                    ld_x: ld_x * rs,
                    w: cell.w_x_panels.as_ptr(),
                    ld_w: u4,
                    w_panel: cell.input * u4,
                };
                (Some(part), cell.bias.as_ptr(), 0)
            };
            let raw = StepRaw {
                rows,
                k: r,
                input,
                h_prev: h_prev.wrapping_add(j0 * ld_h_prev),
                ld_h_prev: ld_h_prev * rs,
                w: cell.w_h.as_ptr(),
                ld_w: 4 * u,
                w_panel: r * 4 * u,
                zx,
                ld_zx,
                peep: cell
                    .peepholes
                    .as_ref()
                    .and_then(|v| NonNull::new(v.as_ptr().cast_mut())),
                c: p.c.wrapping_add(j0 * hp),
                ld_c: hp * rs,
                h_out: h_out.wrapping_add(j0 * ld_h_out),
                ld_h_out: ld_h_out * rs,
                gates: (!p.gates.is_null())
                    .then(|| NonNull::new(p.gates.wrapping_add((sched.offset[s] + j0) * gw)))
                    .flatten(),
                ld_gates: gw * rs,
                tiles: t_lo..t_hi,
                forget_bias: spec.forget_bias(),
                cell_clip: spec.cell_clip().unwrap_or(f32::INFINITY),
            };
            if !by_rows && s > 0 {
                // Split by units, the other threads' cores just wrote most of each h_prev
                // row: ask for all of it now, so that its lines cross between the cores
                // while the kernel's first tile runs, not one demand miss at a time. At 2
                // threads (5 alternations): `infer-b8-h256-t100` 2.55 -> 2.46 ms,
                // `infer-b1-h512` 0.898 -> 0.855 ms, `seed-ptb` forward unchanged.
                for row in 0..rows {
                    let at = h_prev.wrapping_add(row * ld_h_prev);
                    for b in (0..r).step_by(16) {
                        prefetch(at.wrapping_add(b));
                    }
                }
            }
            // SAFETY: h_prev (rows x r), zx (rows x gw), c and h_out (rows x hp, or the
            // output rows of this step) lie inside their buffers, and so do the input rows
            // (packed, or the caller's `[B, T, I]` read in place: row j of step s is
            // sequence j < B at time s < T); this thread's part
            // (tiles, or rows) is disjoint from every other thread's; h_prev is the
            // previous step's rows (or h0), which nobody writes during this step (split
            // by rows, only this thread wrote or reads its rows); the clip is +inf or a
            // finite positive value (validated by the spec).
            unsafe { self.step_zigzag(raw, s) };
            if !p.c_hist.is_null() {
                for row in (0..rows).map(row_of) {
                    // SAFETY: this thread's part of row `row`, just written by its kernel
                    // call; the history row `offset[s] + row` is inside the reserve, which
                    // was grown to `total` rows.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            p.c.add(row * hp + t_lo * u),
                            p.c_hist.add((sched.offset[s] + row) * hp + t_lo * u),
                            (t_hi - t_lo) * u,
                        );
                    }
                }
            }
            // This thread's part of the step's outputs, `lo..hi` of row `row`, into the
            // caller's output when the time loop fills it.
            let scatter = |row: usize, lo: usize, hi: usize| {
                if p.final_out.is_null() || lo >= hi {
                    return;
                }
                let to = row_index(p.time_major, p.batch, p.steps, sched.order[row], s) * r;
                // SAFETY: `final_out` is `[B, T, r]` (one direction, so `r` is the
                // output width) and the row of sequence `order[row]` at step `s` is inside
                // it; no other thread writes these columns of that row. The source was
                // written by this thread (its kernel call or projection) in this step.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        out_rows.add(row * out_ld + lo),
                        p.final_out.add(to + lo),
                        hi - lo,
                    );
                }
            };
            if !direct {
                match &cell.projection {
                    None => {
                        for row in (0..rows).map(row_of) {
                            // SAFETY: this thread's units of row `row`: inside both buffers,
                            // written by this thread's kernel call above, and nobody else's.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    m_rows.add(row * hp + u_lo),
                                    out_rows.add(row * out_ld + u_lo),
                                    u_hi - u_lo,
                                );
                            }
                        }
                    }
                    Some(proj) => {
                        // Split by tiles, a row of `m` is complete only when every thread
                        // is done; split by rows, this thread's rows are its own. Rows
                        // `first + i * stride`, `i < count`.
                        let (first, count, stride) = if by_rows {
                            (j0, rows, rs)
                        } else {
                            barrier.wait();
                            let (r_lo, r_hi) = split(rows, threads, tid);
                            (r_lo, r_hi - r_lo, 1)
                        };
                        for row in (0..count).map(|i| first + i * stride) {
                            // SAFETY: every unit of row `row` of `m` is written (after the
                            // barrier, or by this thread) and only read; the output row is
                            // this thread's alone.
                            let (m_row, h_row) = unsafe {
                                (
                                    std::slice::from_raw_parts(m_rows.add(row * hp), h),
                                    std::slice::from_raw_parts_mut(out_rows.add(row * out_ld), r),
                                )
                            };
                            // SAFETY: the unclipped row `offset[s] + row` of the reserve
                            // (grown to `total` rows), this thread's alone.
                            let raw = (!p.h_raw.is_null()).then(|| unsafe {
                                std::slice::from_raw_parts_mut(
                                    p.h_raw.add((sched.offset[s] + row) * r),
                                    r,
                                )
                            });
                            project(m_row, proj, h_row, spec.proj_clip(), raw);
                            scatter(row, 0, r);
                        }
                    }
                }
            }
            if cell.projection.is_none() {
                for row in (0..rows).map(row_of) {
                    let (lo, hi) = if by_rows { (0, r) } else { (u_lo, u_hi) };
                    scatter(row, lo, hi);
                }
            }
            if !by_rows {
                barrier.wait();
            }
        }
    }
}

/// A hint that the 64-byte line at `p` will be read soon (nothing on other targets).
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Bytes of one core's L2 cache (Linux's sysfs; 512 KiB where it cannot be read).
fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| {
        let read = || -> Option<usize> {
            let s =
                std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index2/size").ok()?;
            let s = s.trim();
            let (num, mult) = match s.strip_suffix('K') {
                Some(n) => (n, 1024),
                None => match s.strip_suffix('M') {
                    Some(n) => (n, 1024 * 1024),
                    None => (s, 1),
                },
            };
            num.parse::<usize>().ok().map(|n| n * mult)
        };
        read().unwrap_or(512 * 1024)
    })
}

impl Lstm {
    /// How the time loop of `cell` runs for a batch of `batch` sequences: `(by_rows,
    /// fuse)`.
    ///
    /// `by_rows`: the threads split the sequences (each computes every hidden unit of its
    /// own rows) instead of the hidden units, when the whole `W_h` fits in a core's L2
    /// with room to spare and every thread gets a full register block of rows
    /// ([`Kernels::mr`]). A sequence's step needs only its own previous state, so the
    /// threads then never wait for each other, where split by units they meet at a
    /// barrier every step (7-14% of `seed-ptb` forward spent there at 2 threads); each
    /// thread reads all of `W_h` instead of its half, from its own L2 (and all of `W_x`
    /// too when the projection runs in the k loop: then both must fit with room to
    /// spare, or past L2 they come from L3 at every step; `seed-ptb`'s first layer,
    /// 1.87 MB of them, made the forward 2% faster split by units, 4.85 -> 4.74 ms over
    /// 4 alternations at 2 threads, with training unchanged). With fewer rows each
    /// weight vector read from L2 feeds too few fmas: `infer-b8-h256-t100` at 2 threads
    /// (4 rows each by sequences, 8 rows in split blocks by units) took 3.06 ms by
    /// sequences against 2.66 by units (medians of 10 alternations, before threads were
    /// bound to CPUs, with a variant of the projection since replaced by the k loop's,
    /// which measured 2.82 against its 3.02).
    ///
    /// `fuse`: each step computes its own input projection inside the step kernel's `k`
    /// loop ([`InputPart`]: `bias + x W_x + h W_h` in one pass, each thread for its own
    /// part) instead of one product for every step up front, when a thread's part of
    /// `W_x` and `W_h` fits in its L2 and it has `FUSE_ROWS` rows or more per step, or
    /// when that part fits with room to spare and the batch has `MIN_ROWS` or more. The
    /// `4H`-wide sums then never go through memory (up front, `seed-ptb`'s first layer
    /// writes 4.9 MB of them and reads them back from L3), and each tile's panel serves
    /// 4 or more row blocks per step. With fewer rows, one product over every step's
    /// rows runs the kernel in full row blocks instead; with weights far larger than L2,
    /// fused steps would stream `W_x` from L3 at every step where the product up front
    /// streams it once. Measured, 2 alternations of three binaries at 2 threads:
    /// `seed-ptb` forward 5.61 ms (projection up front for layer 1, a separate per-step
    /// product for layer 2) -> 5.28 (layer 2 in the k loop) -> 4.99 (both layers);
    /// `infer-b8-h256-t100` (8 rows) 10% slower fused at 2 threads split by sequences,
    /// `infer-b1-h512` 2.7 times slower; at 1 thread `infer-b64-h1024` (32 MB of
    /// weights) 5-9% slower fused, `infer-b8-h256-t100` 6%. Split by units on several
    /// threads, the projection runs in the k loop whenever the part fits with room to
    /// spare (each thread's half of `W_x` and `W_h` stays in its L2). Computing the
    /// next step's `bias + x W_x` between arriving at the barrier and waiting there
    /// instead was no faster and, in 3 of 8 runs, 1.5 times slower.
    ///
    /// [`LstmOptions`] can force either; the results are the same bits every way (each
    /// sum is the same chain of fmas whoever computes it).
    pub(crate) fn plan(&self, cell: &PackedCell, batch: usize) -> (bool, bool) {
        const MIN_ROWS: usize = 32;
        const FUSE_ROWS: usize = 24;
        let u = self.kernels.unit_tile();
        let room = l2_bytes() * 3 / 5;
        let panel_bytes = |tiles: usize, k: usize| tiles * k * 4 * u * std::mem::size_of::<f32>();
        let tiles = cell.padded / u;
        // Whether the projection runs in the k loop, for either split.
        let fuse_for = |by_rows: bool| {
            let mine = if by_rows {
                tiles
            } else {
                tiles.div_ceil(self.threads)
            };
            let rows_each = if by_rows { batch / self.threads } else { batch };
            let part = panel_bytes(mine, cell.input + cell.recurrent);
            match self.step_projection {
                Some(forced) => forced,
                None => {
                    (rows_each >= FUSE_ROWS && part <= l2_bytes())
                        || (batch >= MIN_ROWS && part <= room)
                        || (!by_rows && self.threads > 1 && part <= room)
                }
            }
        };
        let by_rows = self.threads > 1
            && match self.split_rows {
                Some(forced) => forced,
                None => {
                    batch / self.threads >= self.kernels.mr()
                        && panel_bytes(tiles, cell.recurrent) <= room
                        && (!fuse_for(true)
                            || panel_bytes(tiles, cell.input + cell.recurrent) <= room)
                }
            };
        let fuse = fuse_for(by_rows);
        (by_rows, fuse)
    }

    /// One step of a thread's tiles `raw.tiles`, walked forwards on even steps and
    /// backwards on odd ones, `ZIGZAG` tiles per kernel call. A thread's slice of `W_h`
    /// is as large as its L2 or larger at small batches (2 MB of 2 MB at
    /// `infer-b1-h512`), and a cache that sees the same cyclic sweep each step keeps
    /// none of it; turning back keeps the most recent part. Each tile is computed as
    /// before, so the order changes no bit.
    ///
    /// # Safety
    /// As [`Kernels::step_tiles_raw`](lstm_kernels_simd::Kernels::step_tiles_raw).
    unsafe fn step_zigzag(&self, mut raw: StepRaw, step: usize) {
        /// The batch-1 kernel streams four panels side by side.
        const ZIGZAG: usize = 4;
        if step.is_multiple_of(2) {
            // SAFETY: the caller's contract.
            unsafe { self.kernels.step_tiles_raw(&raw) };
            return;
        }
        let (lo, mut hi) = (raw.tiles.start, raw.tiles.end);
        while hi > lo {
            let from = hi.saturating_sub(ZIGZAG).max(lo);
            raw.tiles = from..hi;
            // SAFETY: a sub-range of the caller's tiles, under the caller's contract.
            unsafe { self.kernels.step_tiles_raw(&raw) };
            hi = from;
        }
    }
}

/// `h = clip(m · proj)`, in a fixed summation order (so the result does not depend on
/// how rows are split between threads).
fn project(m: &[f32], proj: &[f32], h: &mut [f32], clip: Option<f32>, raw: Option<&mut [f32]>) {
    let p = h.len();
    h.fill(0.0);
    for (&mv, row) in m.iter().zip(proj.chunks_exact(p)) {
        h.iter_mut().zip(row).for_each(|(hv, &w)| *hv += mv * w);
    }
    if let Some(raw) = raw {
        raw.copy_from_slice(h);
    }
    if let Some(clip) = clip {
        h.iter_mut().for_each(|v| *v = v.clamp(-clip, clip));
    }
}

//! The planner: every decision about how the work is shared between threads and blocked
//! for the caches, made in one place, by pure functions of the problem and the machine.
//!
//! [`plan`] maps (spec, batch shape, thread count, the ISA's tile sizes, the machine's
//! caches, the caller's forced choices) to a [`Plan`]: for each cell (layer and
//! direction), how its time loops are shared between the threads and where its input
//! projection runs. The `Lstm` computes it once per (sequences, steps) and keeps it in a
//! [`PlanCache`]. The other rules ([`gemm_by_tiles`], [`pin_workers`]) and every tuning
//! constant live here too, each with the measurement that chose it.
//!
//! Every plan gives the same bits: each sum is the same chain of fmas whoever computes
//! it and in whichever block, so a plan is a matter of speed only.

use std::sync::{Arc, Mutex};

use crate::model::spec::LstmSpec;

use super::machine::Machine;

/// A layer's projection runs in the k loop, whatever its split, from this many sequences
/// on when a thread's part of `W_x` and `W_h` fits in its L2 with room to spare (see
/// [`plan`]).
pub(crate) const MIN_ROWS: usize = 32;

/// A thread with this many rows per step or more sums its input projection in the k loop
/// whenever its part of `W_x` and `W_h` fits in its L2 (see [`plan`]).
pub(crate) const FUSE_ROWS: usize = 24;

/// "Fits with room to spare": at most this share of L2 (`ROOM_NUM / ROOM_DEN`), leaving
/// the rest to the rows, states and gates that stream past the weights.
const ROOM_NUM: usize = 3;
const ROOM_DEN: usize = 5;

/// Tiles per kernel call when a thread walks its tiles backwards on odd steps (the time
/// loop's zigzag): the batch-1 kernel streams four panels side by side. A thread's slice
/// of `W_h` is as large as its L2 or larger at small batches (2 MB of 2 MB at
/// `infer-b1-h512`), and a cache that sees the same cyclic sweep each step keeps none of
/// it; turning back keeps the most recent part. The walk's direction carries on from
/// one call to the next (the workspace counts the steps), so that a stream of one-step
/// calls turns back too.
pub(crate) const ZIGZAG: usize = 4;

/// Rows per kernel call of a panel product. Within a call the kernel takes the panels one
/// by one and runs every row against each, so each call reloads every panel (from L3
/// once they outgrow L2) while `a` streams past it: fewer, longer calls reload less.
/// Measured in-process, alternating chunk sizes call by call, 2 threads: 768 rows against
/// 64 made `infer-b64-h1024` forward 8% faster (186.5 -> 172.1 ms), `train-b32-h512` 15%
/// (89.6 -> 76.2 ms) and `seed-ptb` training 3% (43.7 -> 42.3 ms); a single call for all
/// rows was within 2% of 768, except `seed-ptb` training (7% slower).
pub(crate) const ROWS_PER_CALL: usize = 768;

/// Below this many rows a panel product's threads split its column panels whatever their
/// count (see [`gemm_by_tiles`]).
pub(crate) const FEW_ROWS: usize = 128;

/// Rows of the backward's `A = [X H_prev 1]^T` per parallel chunk of its transpose.
pub(crate) const AT_ROWS: usize = 16;

/// The `gemm` crate's threads split a product's columns, so a narrow one (`n <= NARROW`,
/// like the softmax layer's `dH = dlogits W^T`: 256 x 128, `k` = 10,000) barely runs
/// faster on two threads than on one (measured: 188-215 GFLOP/s at 2 threads against 187
/// at 1). Such a product is cut into row blocks of about [`NARROW_ROWS`] rows, each one
/// single-threaded call, shared between the threads (313-320 GFLOP/s). The blocks depend
/// only on `m`, never on the thread count, so the bits do not either.
#[cfg(not(feature = "openblas"))]
const NARROW: usize = 256;
/// Target rows per block of a narrow product (see [`NARROW`]).
#[cfg(not(feature = "openblas"))]
const NARROW_ROWS: usize = 128;

/// The rows of each single-threaded block of an `m x n` product on the `gemm` crate, or
/// `None` to run it as one call on every thread: a narrow product (`n <= NARROW`, with at
/// least two blocks of [`NARROW_ROWS`]) is cut into blocks of about `NARROW_ROWS` rows
/// (see [`NARROW`] for why).
#[cfg(not(feature = "openblas"))]
pub(crate) fn sgemm_row_block(m: usize, n: usize) -> Option<usize> {
    (n <= NARROW && m >= 2 * NARROW_ROWS).then(|| m.div_ceil(m.div_ceil(NARROW_ROWS)))
}

/// Rows per OpenBLAS call. Threaded OpenBLAS sums in an order that depends on its thread
/// count; the crate promises the same bits for any thread count, so it runs OpenBLAS on
/// one thread per call, over row blocks whose size does not depend on the threads.
#[cfg(feature = "openblas")]
pub(crate) const OPENBLAS_ROWS: usize = 256;

/// Spins of a waiting thread at a time loop's barrier before it yields. Measured on this
/// project's 2-vCPU machine with `infer-b1-h512` at 2 threads (a barrier every 30 us),
/// workers bound to CPUs, 5 alternations: 64 spins (0.5 us here, 8 ns per `pause`)
/// 0.885 ms, 0 spins 0.892, 256 spins 0.928, 1024 or more 1.9-2.1 ms;
/// `infer-b8-h256-t100` 2.46 ms with 64 spins against 2.49 with 256. Spinning takes
/// cycles the other vCPU needs on its host, and yielding costs 0.15 us. With workers
/// left unbound, 4096 spins took 2-4 ms on `infer-b1-h512` whenever the scheduler had
/// put both workers on one CPU.
pub(crate) const BARRIER_SPINS: u32 = 64;

/// Buffers of this many bytes or more start on a 2 MiB boundary and ask Linux for huge
/// pages: the kernels sweep them once per step or product, and with 4 KiB pages every
/// 4 KiB of a sweep was a TLB miss. Measured against 4 KiB pages (interleaved runs,
/// medians of 3 alternations): `train-b32-h512` training 67.4 -> 63.6 ms at 1 thread and
/// 34.9 -> 32.7 ms at 2, the `seed-ptb-lm` step 58.8 -> 55.7 ms, `seed-ptb` training 2-4%
/// faster (noisier); the forward's buffers on top of that: `infer-b64-h1024`
/// 143.0 -> 139.9 ms at 1 thread and 74.0 -> 70.7 ms at 2, `varlen-b64-h512`
/// 42.8 -> 40.7 ms.
pub(crate) const HUGE_PAGES_FROM: usize = 4 << 20;

/// A thread's share of one cell's step below this many FLOPs does not pay for the
/// barrier it adds to every step, nor its share of the whole call for waking it
/// ([`MIN_THREAD_CALL_FLOPS`]), unless the weights stream from beyond L2 (see
/// [`threads_that_pay`]). Measured with `examples/thread_breakeven.rs` on the 2-vCPU
/// Xeon (2 MiB L2), one cell of width H = I over B rows and T steps, medians of 11
/// interleaved timings, time on 1 thread / time on 2: at T = 100, a cell's step of 262K
/// FLOPs (H 32 x B 16, H 64 x B 4, H 128 x B 1) gave 0.90, 0.98 and 1.05; 1M FLOPs
/// (H 32 x B 64, H 64 x B 16, H 128 x B 4, H 256 x B 1) 1.50, 1.26, 1.50 and 1.26.
pub(crate) const MIN_THREAD_STEP_FLOPS: usize = 256 << 10;

/// A thread's share of a whole call below this many FLOPs does not pay for handing the
/// call to the pool and back (the workers sleep between calls: waking one cost 10 to
/// 40 us here). Measured as [`MIN_THREAD_STEP_FLOPS`], two runs: calls of 4.2M FLOPs
/// (H 64 x B 64 and H 128 x B 16 at T = 1) ran 0.50 and 0.58 (0.40, 0.40) as fast on 2
/// threads, 10.5M (H 32 x B 64, H 64 x B 16 at T = 10) 0.98 and 0.69 (0.71, 0.60), 16.8M
/// (H 128 x B 64, H 256 x B 16 at T = 1) 0.95 and 0.95 (0.94, 0.72), 42M (H 64 x B 64,
/// H 128 x B 16 at T = 10) 1.42 and 1.19 (1.46, 1.10).
pub(crate) const MIN_THREAD_CALL_FLOPS: usize = 16 << 20;

/// A cell whose weights do not fit a thread's share of L2 with room to spare streams them
/// from L3 at a fraction of the FMA rate, and splitting them between the threads (each
/// its own slice, from its own L2) pays far sooner than the compute does: from this many
/// FLOPs of the call per thread. Measured as [`MIN_THREAD_STEP_FLOPS`]: H 256 (2 MiB of
/// weights) at B 1 and T 1, 1M FLOPs a call, ran 1.82 (1.03) times as fast on 2 threads;
/// B 4 at T 1, 1.37 (1.16); H 512 (8 MiB) from B 1 to 16 at T 1, 1.50 to 1.61 (1.35 to
/// 1.53). The exception, H 256 at B 16 and T 1 (0.95, 0.72), has its threads split the
/// rows, each streaming every weight.
pub(crate) const MIN_STREAMING_FLOPS: usize = 256 << 10;

/// The ISA's register-tile sizes the plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileSizes {
    /// `U`: hidden units per tile, the packing granule.
    pub unit: usize,
    /// Rows per register block of the step kernel.
    pub mr: usize,
}

/// Choices the caller forced (`LstmOptions`); `None` leaves them to the planner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Forced {
    /// Threads every call uses (at most the pool's).
    pub threads: Option<usize>,
    /// Where the projection runs: in the k loop (`true`) or up front (`false`).
    pub step_projection: Option<bool>,
    /// How a time loop is shared: by sequences (`true`) or hidden units (`false`).
    pub split_rows: Option<bool>,
    /// Whether a bidirectional layer runs its two directions at once, each on half the
    /// threads (`true`), or one after the other on every thread (`false`).
    pub directions_at_once: Option<bool>,
}

/// How one cell's (layer direction's) loops run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellPlan {
    /// The forward time loop is shared by sequences (each thread every hidden unit of its
    /// own rows, no barrier between steps) rather than by hidden units.
    pub by_rows: bool,
    /// Each step sums its own input projection in the step kernel's k loop, rather than
    /// one product over every step up front.
    pub fuse: bool,
    /// The backward time loop is shared by sequences too (only where the cell has
    /// neither peepholes, whose gradients sum over the rows, nor a projection, whose
    /// gradient needs every unit of a row).
    pub backward_by_rows: bool,
}

impl CellPlan {
    /// Cell `k`'s plan with these forward choices; its backward splits the rows with
    /// the forward where the cell allows it.
    fn new(spec: &LstmSpec, k: usize, by_rows: bool, fuse: bool) -> Self {
        CellPlan {
            by_rows,
            fuse,
            backward_by_rows: by_rows && backward_may_split_rows(spec, k),
        }
    }

    /// The up-front projection is computed by the time loop's own threads, each its own
    /// tiles, in the same broadcast (split by units, each thread's tiles of the
    /// projection are the ones its steps read).
    pub fn project_in_loop(&self) -> bool {
        !self.fuse && !self.by_rows
    }
}

/// How a call's loops run: on how many threads, and one [`CellPlan`] per cell,
/// `k = layer * D + direction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Threads the call's loops and products run on (1: the calling thread alone).
    pub threads: usize,
    /// The two directions of each bidirectional layer run at the same time, the first
    /// `threads / 2` threads on the forward one and the others on the backward one; each
    /// cell's plan is then made for its half.
    pub directions_at_once: bool,
    /// Per cell.
    pub cells: Vec<CellPlan>,
}

/// The plan for `spec` on `threads` threads, when `rows` sequences are active at the
/// first step.
///
/// **Split** (`by_rows`): the threads split the sequences (each computes every hidden
/// unit of its own rows) instead of the hidden units, when the whole `W_h` fits in a
/// core's L2 with room to spare and every thread gets a full register block of rows
/// ([`TileSizes::mr`]). A sequence's step needs only its own previous state, so the
/// threads then never wait for each other, where split by units they meet at a barrier
/// every step (7-14% of `seed-ptb` forward spent there at 2 threads); each thread reads
/// all of `W_h` instead of its half, from its own L2 (and all of `W_x` too when the
/// projection runs in the k loop: then both must fit with room to spare, or past L2 they
/// come from L3 at every step; `seed-ptb`'s first layer, 1.87 MB of them, made the
/// forward 2% faster split by units, 4.85 -> 4.74 ms over 4 alternations at 2 threads,
/// with training unchanged). With fewer rows each weight vector read from L2 feeds too
/// few fmas: `infer-b8-h256-t100` at 2 threads (4 rows each by sequences, 8 rows in
/// split blocks by units) took 3.06 ms by sequences against 2.66 by units (medians of 10
/// alternations, before threads were bound to CPUs, with a variant of the projection
/// since replaced by the k loop's, which measured 2.82 against its 3.02).
///
/// **Projection** (`fuse`): each step computes its own input projection inside the step
/// kernel's `k` loop (`bias + x W_x + h W_h` in one pass, each thread for its own part)
/// instead of one product for every step up front, when a thread's part of `W_x` and
/// `W_h` fits in its L2 and it has [`FUSE_ROWS`] rows or more per step, or when that part
/// fits with room to spare and the batch has [`MIN_ROWS`] or more. The `4H`-wide sums
/// then never go through memory (up front, `seed-ptb`'s first layer writes 4.9 MB of them
/// and reads them back from L3), and each tile's panel serves 4 or more row blocks per
/// step. With fewer rows, one product over every step's rows runs the kernel in full row
/// blocks instead; with weights far larger than L2, fused steps would stream `W_x` from
/// L3 at every step where the product up front streams it once. Measured, 2 alternations
/// of three binaries at 2 threads: `seed-ptb` forward 5.61 ms (projection up front for
/// layer 1, a separate per-step product for layer 2) -> 5.28 (layer 2 in the k loop) ->
/// 4.99 (both layers); `infer-b8-h256-t100` (8 rows) 10% slower fused at 2 threads split
/// by sequences, `infer-b1-h512` 2.7 times slower; at 1 thread `infer-b64-h1024` (32 MB
/// of weights) 5-9% slower fused, `infer-b8-h256-t100` 6%. Split by units on several
/// threads, the projection runs in the k loop whenever the part fits with room to spare
/// (each thread's half of `W_x` and `W_h` stays in its L2). Computing the next step's
/// `bias + x W_x` between arriving at the barrier and waiting there instead was no
/// faster and, in 3 of 8 runs, 1.5 times slower. A one-step call (a stream's) always
/// sums in the k loop: it reads `W_x` once either way, and in the k loop each tile's
/// `W_x` and `W_h` panels go by in one walk, which the next call walks back (the zigzag
/// carries on across calls, see [`ZIGZAG`]), finding in L2 what this one read last.
/// Both together, `stream-b1-h512-t1` (5.2 MB of weights a call) on the 2-vCPU Xeon,
/// 3 alternations: 8.43 -> 6.4 ms at 1 thread, 4.9 -> 3.1 ms at 2.
///
/// **Threads** ([`threads_that_pay`]): as many of the `threads` the `Lstm` has as the
/// call's work pays for, down to the calling thread alone.
///
/// **Directions** (`directions_at_once`): on an even thread count, a bidirectional
/// layer's two directions run at the same time, each on half the threads, instead of one
/// after the other on all of them: each thread then reads as many bytes of weights per
/// step as split the other way (half of one direction's against a quarter of each), and
/// the threads of one direction never wait at a barrier for the other's, nor (one
/// thread a direction) at all. Measured with `bench --force split_directions=B` on the
/// 2-vCPU Xeon, 3 alternations: `bidir-b16-h384-t60` 10.0-10.3 ms at once against
/// 10.3-10.7 one after the other (noisy; the first pair 13.1 vs 21.3 under a compile).
///
/// `forced` overrides any choice (the split only with several threads).
pub(crate) fn plan(
    spec: &LstmSpec,
    rows: usize,
    steps: usize,
    threads: usize,
    tiles: TileSizes,
    machine: Machine,
    forced: Forced,
) -> Plan {
    let threads = match forced.threads {
        Some(n) => n.clamp(1, threads.max(1)),
        None => {
            let usable = usable_threads(threads, machine);
            threads_that_pay(spec, rows, steps, usable, tiles, machine)
        }
    };
    let directions_at_once = spec.bidirectional()
        && threads >= 2
        && forced
            .directions_at_once
            .unwrap_or(threads.is_multiple_of(2));
    let cells = (0..spec.num_cells())
        .map(|k| {
            let l = spec.cell_layer(k);
            let layer = spec.layers()[l];
            let shape = CellShape {
                input: spec.layer_input_size(l),
                recurrent: layer.output_size(),
                tiles: layer.hidden_size.div_ceil(tiles.unit),
            };
            let mine = Plan::cell_threads_of(threads, directions_at_once, k % 2);
            let (by_rows, fuse) = cell_split(shape, rows, steps, mine, tiles, machine, forced);
            CellPlan::new(spec, k, by_rows, fuse)
        })
        .collect();
    Plan {
        threads,
        directions_at_once,
        cells,
    }
}

/// Bytes of the kernels' panels of a `[k, 4H]` weight over `unit_tiles` tiles of `unit`
/// hidden units.
fn panel_bytes(unit_tiles: usize, k: usize, unit: usize) -> usize {
    unit_tiles
        .saturating_mul(k)
        .saturating_mul(4 * unit * std::mem::size_of::<f32>())
}

/// Whether cell `k`'s backward may split its rows between threads: not with peepholes,
/// whose gradients sum over the rows, nor a projection, whose gradient needs every unit
/// of a row.
fn backward_may_split_rows(spec: &LstmSpec, k: usize) -> bool {
    !spec.use_peepholes() && spec.layers()[spec.cell_layer(k)].proj_size.is_none()
}

/// The threads a plan may use unless a count is forced: at most one per CPU (more only
/// wait for each other at every barrier).
fn usable_threads(threads: usize, machine: Machine) -> usize {
    threads.clamp(1, machine.cpus.max(1))
}

/// The FLOPs of one step of every cell of `spec` over `rows` sequences (the recurrent
/// and input products and the projection; the gate math is left out, as the suite counts).
fn step_flops(spec: &LstmSpec, rows: usize) -> usize {
    (0..spec.num_cells())
        .map(|k| {
            let l = spec.cell_layer(k);
            let layer = spec.layers()[l];
            let (h, r) = (layer.hidden_size, layer.output_size());
            let proj = layer.proj_size.map_or(0, |p| 2 * h * p);
            (2 * 4 * h * (spec.layer_input_size(l) + r) + proj).saturating_mul(rows)
        })
        .fold(0, usize::saturating_add)
}

/// How many of `threads` a call of `rows` sequences and `steps` steps keeps busy enough
/// to pay for them. Each extra thread costs a hand-off when the call starts (its worker
/// sleeps between calls) and a barrier every step of every cell when the threads split
/// the hidden units, so each thread's share of the whole call must be at least
/// [`MIN_THREAD_CALL_FLOPS`] and of a cell's step at least [`MIN_THREAD_STEP_FLOPS`];
/// or a cell's weights do not fit a thread's share of L2 with room to spare, where a step
/// is bound by streaming the weights and each thread streaming only its own slice pays
/// from [`MIN_STREAMING_FLOPS`] of the call per thread. Below that, the call runs on the
/// calling thread alone. More rows or steps never give fewer threads.
pub(crate) fn threads_that_pay(
    spec: &LstmSpec,
    rows: usize,
    steps: usize,
    threads: usize,
    tiles: TileSizes,
    machine: Machine,
) -> usize {
    let step = step_flops(spec, rows);
    let per_cell_step = step / spec.num_cells().max(1);
    let call = step.saturating_mul(steps);
    let room = machine.l2_per_thread() * ROOM_NUM / ROOM_DEN;
    let streaming = (0..spec.num_cells()).any(|k| {
        let l = spec.cell_layer(k);
        let layer = spec.layers()[l];
        let k_rows = spec.layer_input_size(l) + layer.output_size();
        panel_bytes(layer.hidden_size.div_ceil(tiles.unit), k_rows, tiles.unit) > room
    });
    let pays = |n: usize| {
        (streaming && call / n >= MIN_STREAMING_FLOPS)
            || (call / n >= MIN_THREAD_CALL_FLOPS && per_cell_step / n >= MIN_THREAD_STEP_FLOPS)
    };
    let mut n = threads.max(1);
    while n > 1 && !pays(n) {
        n -= 1;
    }
    n
}

/// The plans worth timing for a call of `rows` sequences and `steps` steps, the
/// heuristic's ([`plan`]) first: on one thread and on every thread there is a CPU for
/// (and the heuristic's count), split by rows and by units, the projection up front and
/// in the k loop, each choice for every cell at once, and a bidirectional layer's
/// directions one after the other and at once. What `forced` fixes stays fixed.
/// Every candidate gives the same bits, so any one may be kept.
pub(crate) fn candidates(
    spec: &LstmSpec,
    rows: usize,
    steps: usize,
    threads: usize,
    tiles: TileSizes,
    machine: Machine,
    forced: Forced,
) -> Vec<Plan> {
    let heuristic = plan(spec, rows, steps, threads, tiles, machine, forced);
    let counts = match forced.threads {
        Some(_) => vec![heuristic.threads],
        None => vec![heuristic.threads, 1, usable_threads(threads, machine)],
    };
    let bools = |f: Option<bool>| f.map_or(vec![false, true], |b| vec![b]);
    let mut out = vec![heuristic];
    let at_once_choices = |n: usize| match forced.directions_at_once {
        _ if !spec.bidirectional() || n < 2 => vec![false],
        Some(b) => vec![b],
        None => vec![false, true],
    };
    for &n in &counts {
        for directions_at_once in at_once_choices(n) {
            for by_rows in bools(forced.split_rows) {
                for fuse in bools(forced.step_projection) {
                    let cells = (0..spec.num_cells())
                        .map(|k| {
                            let mine = Plan::cell_threads_of(n, directions_at_once, k % 2);
                            CellPlan::new(spec, k, by_rows && mine > 1, fuse)
                        })
                        .collect();
                    let p = Plan {
                        threads: n,
                        directions_at_once,
                        cells,
                    };
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }
    }
    out
}

impl Plan {
    /// The threads of direction `dir`'s loops: all of them, or its half when the
    /// directions run at once (the backward direction takes the odd one).
    pub fn cell_threads(&self, dir: usize) -> usize {
        Self::cell_threads_of(self.threads, self.directions_at_once, dir)
    }

    fn cell_threads_of(threads: usize, at_once: bool, dir: usize) -> usize {
        match (at_once, dir) {
            (false, _) => threads,
            (true, 0) => threads / 2,
            (true, _) => threads - threads / 2,
        }
    }

    /// Checks a plan from outside (a wisdom file) against `spec` and the `threads` the
    /// `Lstm` has: one cell plan per cell, `1..=threads` threads, and the backward split
    /// by rows only where the cell allows it (peepholes and projections need every row's
    /// units in one thread).
    pub fn check(&self, spec: &LstmSpec, threads: usize) -> Result<(), String> {
        if self.cells.len() != spec.num_cells() {
            return Err(format!(
                "{} cell plans for a stack of {} cells",
                self.cells.len(),
                spec.num_cells()
            ));
        }
        if !(1..=threads.max(1)).contains(&self.threads) {
            return Err(format!("{} threads, expected 1..={threads}", self.threads));
        }
        if self.directions_at_once && !(spec.bidirectional() && self.threads >= 2) {
            return Err(
                "directions at once needs a bidirectional stack and 2 threads or more".into(),
            );
        }
        for (k, c) in self.cells.iter().enumerate() {
            if c.backward_by_rows && !(c.by_rows && backward_may_split_rows(spec, k)) {
                return Err(format!(
                    "cell {k}: a backward split by rows needs a forward split by rows and no peepholes or projection"
                ));
            }
            if c.by_rows && self.cell_threads(k % spec.num_directions()) == 1 {
                return Err(format!("cell {k}: split by rows on one thread"));
            }
        }
        Ok(())
    }
}

/// A cell's sizes as the plan weighs them.
#[derive(Debug, Clone, Copy)]
struct CellShape {
    /// Input width (the rows of `W_x`).
    input: usize,
    /// Width of the recurrent `h` (the rows of `W_h`): the projection's or the hidden
    /// size.
    recurrent: usize,
    /// Unit tiles of the hidden units.
    tiles: usize,
}

/// `(by_rows, fuse)` of one cell (see [`plan`]).
fn cell_split(
    cell: CellShape,
    batch: usize,
    steps: usize,
    threads: usize,
    t: TileSizes,
    machine: Machine,
    forced: Forced,
) -> (bool, bool) {
    let l2 = machine.l2_per_thread();
    let room = l2 * ROOM_NUM / ROOM_DEN;
    let panel_bytes = |tiles: usize, k: usize| panel_bytes(tiles, k, t.unit);
    // Whether the projection runs in the k loop, for either split.
    let fuse_for = |by_rows: bool| {
        let mine = if by_rows {
            cell.tiles
        } else {
            cell.tiles.div_ceil(threads)
        };
        let rows_each = if by_rows { batch / threads } else { batch };
        let part = panel_bytes(mine, cell.input + cell.recurrent);
        match forced.step_projection {
            Some(forced) => forced,
            None => {
                steps == 1
                    || (rows_each >= FUSE_ROWS && part <= l2)
                    || (batch >= MIN_ROWS && part <= room)
                    || (!by_rows && threads > 1 && part <= room)
            }
        }
    };
    let by_rows = threads > 1
        && match forced.split_rows {
            Some(forced) => forced,
            None => {
                batch / threads >= t.mr
                    && panel_bytes(cell.tiles, cell.recurrent) <= room
                    && (!fuse_for(true)
                        || panel_bytes(cell.tiles, cell.input + cell.recurrent) <= room)
            }
        };
    (by_rows, fuse_for(by_rows))
}

/// Whether a panel product's threads split its `tiles` column panels (each reading only
/// its own) rather than its `rows`: when the panels divide evenly enough, or the rows are
/// too few to share.
pub(crate) fn gemm_by_tiles(rows: usize, tiles: usize, threads: usize) -> bool {
    tiles.is_multiple_of(threads) || tiles >= 4 * threads || rows < FEW_ROWS
}

/// Whether the pool binds its workers to CPUs, `allowed` CPUs being open to the caller:
/// `Some` forces it; by default when there is a CPU for every worker. Unbound, two
/// workers woken together are sometimes put on the same CPU by the Linux scheduler and
/// stay there for whole calls: measured on this project's 2-vCPU machine,
/// `infer-b1-h512` at 2 threads then took 3.1-4.1 ms instead of 1.0 ms in 5 of 6 runs
/// (each barrier waited for a worker that could not run). Bound to distinct CPUs, 6 runs
/// of 6 took 0.92-1.32 ms.
pub(crate) fn pin_workers(pin: Option<bool>, allowed: usize, threads: usize) -> bool {
    match pin {
        Some(forced) => forced && allowed > 0,
        None => allowed >= threads,
    }
}

/// What a plan is made for besides the `Lstm`'s fixed spec, machine and threads.
pub(crate) type PlanKey = (usize, usize);

/// The plans an `Lstm` has made, one per (sequences active at the first step, steps):
/// a call finds its plan here instead of weighing the caches again.
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    entries: Mutex<Vec<(PlanKey, Arc<Plan>)>>,
}

impl PlanCache {
    /// Plans kept; a server cycling through more shapes than this replans the oldest.
    const CAPACITY: usize = 16;

    /// The plan for `key`, made by `make` the first time.
    pub fn get_or_make(&self, key: PlanKey, make: impl FnOnce() -> Plan) -> Arc<Plan> {
        if let Some(p) = self.get(key) {
            return p;
        }
        self.insert(key, make())
    }

    /// The plan kept for `key`, if any.
    pub fn get(&self, key: PlanKey) -> Option<Arc<Plan>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| Arc::clone(p))
    }

    /// Keeps `plan` for `key` (replacing one kept for it; past [`Self::CAPACITY`] the
    /// oldest goes).
    pub fn insert(&self, key: PlanKey, plan: Plan) -> Arc<Plan> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, _)| *k != key);
        if entries.len() == Self::CAPACITY {
            entries.remove(0);
        }
        let p = Arc::new(plan);
        entries.push((key, Arc::clone(&p)));
        p
    }

    /// Every kept plan with its key, oldest first.
    pub fn entries(&self) -> Vec<(PlanKey, Arc<Plan>)> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    /// AVX-512's tiles (16 units, 6-row blocks) and AVX2's (8, 3).
    const AVX512: TileSizes = TileSizes { unit: 16, mr: 6 };
    const AVX2: TileSizes = TileSizes { unit: 8, mr: 3 };

    /// The synthetic machines: 1 and 2 MiB of L2 (Zen 4, the Xeon), 32 and 48 KiB of L1d.
    fn machines() -> Vec<Machine> {
        let mut v = Vec::new();
        for l2_bytes in [MIB, 2 * MIB] {
            for l1d_bytes in [32 * KIB, 48 * KIB] {
                v.push(Machine {
                    l1d_bytes,
                    l2_bytes,
                    ..Machine::FALLBACK
                });
            }
        }
        v
    }

    fn stack(input: usize, hidden: &[usize]) -> LstmSpec {
        LstmSpec::builder(input, hidden).build().unwrap()
    }

    /// The suite's stacks (`BENCH_SHAPES.md`) with their batch sizes.
    fn suite() -> Vec<(&'static str, LstmSpec, usize)> {
        vec![
            ("seed-ptb", stack(200, &[256, 128]), 60),
            ("infer-b1-h512", stack(512, &[512]), 1),
            ("infer-b8-h256-t100", stack(256, &[256]), 8),
            ("infer-b64-h1024", stack(1024, &[1024]), 64),
            ("train-b32-h512", stack(512, &[512]), 32),
            ("varlen-b64-h512", stack(512, &[512]), 64),
        ]
    }

    fn xeon() -> Machine {
        Machine {
            l1d_bytes: 48 * KIB,
            l2_bytes: 2 * MIB,
            ..Machine::FALLBACK
        }
    }

    fn zen4() -> Machine {
        Machine {
            l1d_bytes: 32 * KIB,
            l2_bytes: MIB,
            ..Machine::FALLBACK
        }
    }

    fn cell(by_rows: bool, fuse: bool, backward_by_rows: bool) -> CellPlan {
        CellPlan {
            by_rows,
            fuse,
            backward_by_rows,
        }
    }

    #[test]
    fn the_measured_plans_on_a_2_mib_l2() {
        let none = Forced::default();
        // seed-ptb at 2 threads: layer 1's W_x + W_h (1.87 MB) would not stay in L2 split
        // by sequences, so it splits by units, each thread's half fused; layer 2 fits.
        let p = plan(&stack(200, &[256, 128]), 60, 20, 2, AVX512, xeon(), none);
        assert_eq!(
            p.cells,
            vec![cell(false, true, false), cell(true, true, true)]
        );
        // infer-b8-h256-t100 at 2 threads: 4 rows each is less than a register block.
        let p = plan(&stack(256, &[256]), 8, 100, 2, AVX512, xeon(), none);
        assert_eq!(p.cells, vec![cell(false, true, false)]);
        // infer-b1-h512 at 2 threads: a thread's half of W_x + W_h is 4 MiB, so the
        // projection runs up front, computed by the time loop's threads.
        let p = plan(&stack(512, &[512]), 1, 25, 2, AVX512, xeon(), none);
        assert_eq!(p.cells, vec![cell(false, false, false)]);
        assert!(p.cells[0].project_in_loop());
        // infer-b64-h1024 at 1 thread: 32 MB of weights, the projection up front (by the
        // time loop's one thread, before its first step).
        let p = plan(&stack(1024, &[1024]), 64, 25, 1, AVX512, xeon(), none);
        assert_eq!(p.cells, vec![cell(false, false, false)]);
        assert!(p.cells[0].project_in_loop());
    }

    #[test]
    fn one_step_calls_sum_their_projection_in_the_k_loop_unless_forced() {
        // A one-step call reads `W_x` once either way; in the k loop its panels go by
        // with `W_h`'s, in one walk the next call's zigzag turns back on.
        for machine in machines() {
            for tiles in [AVX512, AVX2] {
                for (name, spec, _) in suite() {
                    for threads in [1, 2, 8] {
                        for rows in [1, 4, 64] {
                            let p =
                                plan(&spec, rows, 1, threads, tiles, machine, Forced::default());
                            assert!(p.cells.iter().all(|c| c.fuse), "{name} B {rows} x{threads}");
                            let up_front = Forced {
                                step_projection: Some(false),
                                ..Forced::default()
                            };
                            let p = plan(&spec, rows, 1, threads, tiles, machine, up_front);
                            assert!(
                                p.cells.iter().all(|c| !c.fuse),
                                "{name} B {rows} x{threads}"
                            );
                        }
                    }
                }
            }
        }
        // More steps keep the rules: infer-b1-h512 at 25 steps projects up front.
        let p = plan(
            &stack(512, &[512]),
            1,
            25,
            2,
            AVX512,
            xeon(),
            Forced::default(),
        );
        assert!(!p.cells[0].fuse);
    }

    #[test]
    fn a_bidirectional_layer_runs_its_directions_at_once_on_an_even_thread_count() {
        let bidir = LstmSpec::builder(160, &[384])
            .bidirectional(true)
            .build()
            .unwrap();
        let none = Forced::default();
        for machine in machines() {
            // bidir-b16-h384-t60 at 2 threads: one thread a direction, each a 1-thread
            // cell plan (nothing to split by rows).
            let p = plan(&bidir, 16, 60, 2, AVX512, machine, none);
            assert!(p.directions_at_once);
            assert_eq!((p.cell_threads(0), p.cell_threads(1)), (1, 1));
            assert!(p.cells.iter().all(|c| !c.by_rows));
            assert_eq!(p.check(&bidir, 2), Ok(()));
            // Each direction's cells are planned for its half: on 8 threads, as the
            // 4-thread plan of a one-direction layer.
            let p = plan(&bidir, 64, 60, 8, AVX512, machine, none);
            let one_way = plan(&stack(160, &[384]), 64, 60, 4, AVX512, machine, none);
            assert!(p.directions_at_once);
            assert_eq!(p.cells, vec![one_way.cells[0]; 2]);
            // An odd count runs them one after the other on every thread, and so does a
            // forced `false`; a forced `true` splits 3 threads 1 + 2.
            assert!(!plan(&bidir, 64, 60, 3, AVX512, machine, none).directions_at_once);
            let off = Forced {
                directions_at_once: Some(false),
                ..none
            };
            assert!(!plan(&bidir, 64, 60, 8, AVX512, machine, off).directions_at_once);
            let on = Forced {
                directions_at_once: Some(true),
                threads: Some(3),
                ..none
            };
            let p = plan(&bidir, 64, 60, 3, AVX512, machine, on);
            assert_eq!((p.cell_threads(0), p.cell_threads(1)), (1, 2));
            // One direction never runs "at once", whatever is forced.
            let p = plan(&stack(160, &[384]), 64, 60, 8, AVX512, machine, on);
            assert!(!p.directions_at_once);
        }
        // A plan from outside that runs a one-direction stack's directions at once, or a
        // bidirectional one's on one thread, is refused.
        let mut p = plan(&stack(160, &[384]), 64, 60, 2, AVX512, xeon(), none);
        p.directions_at_once = true;
        assert!(p.check(&stack(160, &[384]), 2).is_err());
        let mut p = plan(&bidir, 1, 1, 1, AVX512, xeon(), none);
        p.directions_at_once = true;
        assert!(p.check(&bidir, 2).is_err());
    }

    #[test]
    fn a_1_mib_l2_keeps_seed_ptbs_second_layer_split_by_units() {
        // Its W_x + W_h (768 KiB) fits a 1 MiB L2 but not with room to spare.
        let p = plan(
            &stack(200, &[256, 128]),
            60,
            20,
            2,
            AVX512,
            zen4(),
            Forced::default(),
        );
        assert_eq!(
            p.cells,
            vec![cell(false, true, false), cell(false, true, false)]
        );
    }

    #[test]
    fn every_plan_keeps_the_rules_on_every_machine() {
        for machine in machines() {
            for tiles in [AVX512, AVX2] {
                for (name, spec, batch) in suite() {
                    for threads in [1, 2, 3, 8, 64] {
                        for rows in [1, 2, batch, 4 * batch] {
                            let p =
                                plan(&spec, rows, 25, threads, tiles, machine, Forced::default());
                            assert_eq!(p.cells.len(), spec.num_cells(), "{name}");
                            for (k, c) in p.cells.iter().enumerate() {
                                let layer = spec.layers()[spec.cell_layer(k)];
                                let tiles_h = layer.hidden_size.div_ceil(tiles.unit);
                                let w_h = tiles_h * layer.output_size() * 4 * tiles.unit * 4;
                                let at = format!("{name} k={k} rows={rows} threads={threads}");
                                // One thread has nothing to split; by sequences only with
                                // a full register block each and W_h in L2 with room.
                                assert!((1..=threads).contains(&p.threads), "{at}");
                                if c.by_rows {
                                    assert!(p.threads > 1, "{at}");
                                    assert!(rows / p.threads >= tiles.mr, "{at}");
                                    assert!(w_h <= machine.l2_per_thread() * 3 / 5, "{at}");
                                }
                                assert!(!c.backward_by_rows || c.by_rows, "{at}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_l1_size_does_not_change_todays_plans() {
        for (name, spec, batch) in suite() {
            for l2_bytes in [MIB, 2 * MIB] {
                let at = |l1d_bytes| {
                    let m = Machine {
                        l1d_bytes,
                        l2_bytes,
                        ..Machine::FALLBACK
                    };
                    plan(&spec, batch, 25, 2, AVX512, m, Forced::default())
                };
                assert_eq!(at(32 * KIB), at(48 * KIB), "{name}");
            }
        }
    }

    #[test]
    fn forced_choices_win_where_they_can_apply() {
        let spec = stack(200, &[256, 128]);
        for machine in machines() {
            for split_rows in [Some(true), Some(false)] {
                for step_projection in [Some(true), Some(false)] {
                    let forced = Forced {
                        step_projection,
                        split_rows,
                        ..Forced::default()
                    };
                    for threads in [1, 2, 8] {
                        let p = plan(&spec, 60, 20, threads, AVX512, machine, forced);
                        for c in &p.cells {
                            assert_eq!(c.fuse, step_projection.unwrap());
                            assert_eq!(c.by_rows, threads > 1 && split_rows.unwrap());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn peepholes_and_projections_keep_the_backward_split_by_units() {
        let peep = LstmSpec::builder(64, &[64])
            .peepholes(true)
            .build()
            .unwrap();
        let proj = LstmSpec::builder(64, &[64])
            .proj_sizes(&[Some(32)])
            .build()
            .unwrap();
        let forced = Forced {
            split_rows: Some(true),
            ..Forced::default()
        };
        for spec in [peep, proj] {
            let p = plan(&spec, 64, 20, 2, AVX512, xeon(), forced);
            assert!(p.cells[0].by_rows && !p.cells[0].backward_by_rows);
        }
    }

    /// Synthetic machines with 1 and 2 MiB of L2, and an E-core-like one (4 CPUs
    /// sharing 2 MiB).
    fn l2_machines() -> Vec<Machine> {
        vec![
            zen4(),
            xeon(),
            Machine {
                l2_shared: 4,
                ..xeon()
            },
        ]
    }

    #[test]
    fn small_work_runs_on_the_calling_thread_and_large_work_on_every_core() {
        for machine in l2_machines() {
            for tiles in [AVX512, AVX2] {
                let pay = |spec: &LstmSpec, rows, steps, threads| {
                    threads_that_pay(spec, rows, steps, threads, tiles, machine)
                };
                for threads in [2, 8, 64] {
                    // A 32-wide cell, one sequence, one step: 16K FLOPs, a microsecond of
                    // work, against tens of microseconds to wake a worker.
                    assert_eq!(pay(&stack(32, &[32]), 1, 1, threads), 1);
                    // 100 steps of 4 sequences of a 64-wide cell: 262K FLOPs a step.
                    assert_eq!(pay(&stack(64, &[64]), 4, 100, threads), 1);
                    // The seed's stack over 60 x 20 and infer-b64-h1024: every core pays
                    // up to 8; at 64 cores the seed's steps are too small to share.
                    let seed = pay(&stack(200, &[256, 128]), 60, 20, threads);
                    let big = pay(&stack(1024, &[1024]), 64, 25, threads);
                    assert_eq!(big, threads, "{machine:?} {threads}");
                    assert_eq!(seed, threads.min(8).max(seed.min(threads)), "{machine:?}");
                    assert!(seed >= 2.min(threads), "{machine:?} {threads}");
                }
                // One sequence of a 512-wide cell (5.2 MB of weights, far past L2): each
                // thread streaming half the weights pays even for a single step.
                assert_eq!(pay(&stack(128, &[512]), 1, 1, 2), 2, "{machine:?}");
            }
        }
    }

    #[test]
    fn more_work_never_means_fewer_threads() {
        for machine in l2_machines() {
            for (name, spec, batch) in suite() {
                for threads in [1, 2, 3, 8, 64] {
                    // Each (rows, steps) has at least the work of the one before.
                    let mut last = 0;
                    for (rows, steps) in
                        [(1, 1), (1, 25), (batch, 25), (batch, 400), (4 * batch, 400)]
                    {
                        let n = threads_that_pay(&spec, rows, steps, threads, AVX512, machine);
                        assert!((1..=threads).contains(&n), "{name}");
                        assert!(n >= last, "{name} rows={rows} steps={steps}: {n} < {last}");
                        last = n;
                    }
                }
            }
        }
    }

    #[test]
    fn the_plan_carries_its_threads_and_a_forced_count_wins() {
        let tiny = stack(16, &[16]);
        let p = plan(&tiny, 2, 3, 8, AVX512, xeon(), Forced::default());
        assert_eq!(p.threads, 1);
        // One thread splits nothing.
        assert!(p.cells.iter().all(|c| !c.by_rows));
        for (forced, want) in [(1, 1), (3, 3), (100, 8)] {
            let f = Forced {
                threads: Some(forced),
                ..Forced::default()
            };
            assert_eq!(plan(&tiny, 2, 3, 8, AVX512, xeon(), f).threads, want);
        }
        let big = plan(
            &stack(1024, &[1024]),
            64,
            25,
            2,
            AVX512,
            zen4(),
            Forced::default(),
        );
        assert_eq!(big.threads, 2);
        // No more threads than CPUs, unless forced; nor among the candidates.
        let two_cpus = Machine { cpus: 2, ..zen4() };
        let spec = stack(1024, &[1024]);
        let none = Forced::default();
        assert_eq!(plan(&spec, 64, 25, 8, AVX512, two_cpus, none).threads, 2);
        let three = Forced {
            threads: Some(3),
            ..Forced::default()
        };
        assert_eq!(plan(&spec, 64, 25, 8, AVX512, two_cpus, three).threads, 3);
        let all = candidates(&spec, 64, 25, 8, AVX512, two_cpus, none);
        assert!(all.iter().all(|p| p.threads <= 2));
    }

    #[test]
    fn the_candidates_start_with_the_heuristic_and_keep_what_is_forced() {
        let peep = LstmSpec::builder(64, &[64, 32])
            .peepholes(true)
            .build()
            .unwrap();
        let bidir = LstmSpec::builder(64, &[64])
            .bidirectional(true)
            .build()
            .unwrap();
        for threads in [1, 2, 8] {
            let all = candidates(&bidir, 60, 20, threads, AVX512, xeon(), Forced::default());
            // Both ways on several threads; never at once on one.
            for at_once in [false, true] {
                assert_eq!(
                    all.iter().any(|p| p.directions_at_once == at_once),
                    !at_once || threads > 1,
                    "{threads} threads"
                );
            }
            all.iter().for_each(|p| p.check(&bidir, threads).unwrap());
        }
        for spec in [stack(200, &[256, 128]), peep] {
            for threads in [1, 2, 8] {
                let none = Forced::default();
                let all = candidates(&spec, 60, 20, threads, AVX512, xeon(), none);
                assert_eq!(all[0], plan(&spec, 60, 20, threads, AVX512, xeon(), none));
                for (i, p) in all.iter().enumerate() {
                    p.check(&spec, threads).unwrap();
                    assert!(!all[..i].contains(p), "a candidate twice");
                }
                // 1 and `threads` threads, by rows and by units, fused or not.
                assert!(all.iter().any(|p| p.threads == 1));
                assert!(all.iter().any(|p| p.threads == threads));
                assert_eq!(all.iter().any(|p| p.cells[0].by_rows), threads > 1);
                assert!(
                    all.iter().any(|p| p.cells[0].fuse) && all.iter().any(|p| !p.cells[0].fuse)
                );
                let forced = Forced {
                    threads: Some(1),
                    step_projection: Some(true),
                    ..Forced::default()
                };
                for p in candidates(&spec, 60, 20, threads, AVX512, xeon(), forced) {
                    assert_eq!(p.threads, 1);
                    assert!(p.cells.iter().all(|c| c.fuse && !c.by_rows));
                }
            }
        }
    }

    #[test]
    fn gemm_splits_panels_when_they_divide_or_rows_are_few() {
        assert!(gemm_by_tiles(10_000, 8, 2));
        assert!(gemm_by_tiles(10_000, 9, 2)); // 9 >= 4 * 2
        assert!(!gemm_by_tiles(10_000, 3, 2));
        assert!(gemm_by_tiles(FEW_ROWS - 1, 3, 2));
        assert!(gemm_by_tiles(10_000, 5, 1));
    }

    #[test]
    #[cfg(not(feature = "openblas"))]
    fn narrow_products_are_cut_into_row_blocks_that_do_not_depend_on_threads() {
        // The softmax layer's dH: 1200 x 128, cut into 10 blocks of 120 rows.
        assert_eq!(sgemm_row_block(1200, 128), Some(120));
        assert_eq!(sgemm_row_block(1200, NARROW + 1), None);
        assert_eq!(sgemm_row_block(2 * NARROW_ROWS - 1, 128), None);
        assert_eq!(sgemm_row_block(2 * NARROW_ROWS, 128), Some(NARROW_ROWS));
    }

    #[test]
    fn workers_are_pinned_by_default_only_with_a_cpu_each() {
        assert!(pin_workers(None, 2, 2));
        assert!(!pin_workers(None, 1, 2));
        assert!(pin_workers(Some(true), 1, 2));
        assert!(!pin_workers(Some(true), 0, 2));
        assert!(!pin_workers(Some(false), 8, 2));
    }

    #[test]
    fn the_cache_makes_each_plan_once() {
        let cache = PlanCache::default();
        let spec = stack(8, &[8]);
        let mut made = 0;
        {
            let mut make = |rows| {
                cache.get_or_make((rows, 5), || {
                    made += 1;
                    plan(&spec, rows, 5, 2, AVX512, xeon(), Forced::default())
                })
            };
            let a = make(3);
            let b = make(3);
            assert!(Arc::ptr_eq(&a, &b));
            for rows in 0..PlanCache::CAPACITY + 3 {
                make(rows);
            }
        }
        // 3 made once and found again among the next keys; every other key made once.
        assert_eq!(made, 1 + PlanCache::CAPACITY + 2);
    }
}

//! [`Lstm`]: the weights packed for one set of SIMD kernels and a thread count, the plans
//! it has made, and its entry points (inference, training, backward), which validate
//! every input before the engine runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lstm_kernels_simd::{Isa, Kernels};
use rayon::ThreadPool;

use crate::engine::backward::backward;
use crate::engine::context::ExecContext;
use crate::engine::forward::{forward, ForwardBuffers};
use crate::engine::machine::Machine;
use crate::engine::packed_cell::{pack_all, repack_into, PackedCell};
use crate::engine::plan::{candidates, plan, Forced, Plan, PlanCache, PlanKey, TileSizes};
use crate::engine::pool::thread_pool;
use crate::engine::schedule::Schedule;
use crate::engine::tape::Tape;
use crate::model::error::{Error, Result};
use crate::model::layout::SeqLayout;
use crate::model::spec::LstmSpec;
use crate::model::state::LstmState;
use crate::model::weights::LstmWeights;

use super::input::{prepare, ForwardInput};
use super::options::{LstmOptions, Planning};
use super::train::{prepare_backward, Gradients, TrainReserve, Upstream};
use super::wisdom::{from_json, to_json};
use super::workspace::{fits, Workspace};

/// An LSTM ready to run: its weights, repacked once for the chosen SIMD kernels, and its
/// thread pool (its own, or one it shares with the other parts of a model).
///
/// Results are bitwise identical whatever the thread count.
pub struct Lstm {
    weights: LstmWeights,
    ctx: ExecContext,
    cells: Vec<PackedCell>,
    forced: Forced,
    planning: Planning,
    plans: PlanCache,
}

impl std::fmt::Debug for Lstm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lstm")
            .field("spec", self.weights.spec())
            .field("isa", &self.ctx.kernels.isa())
            .field("threads", &self.ctx.threads)
            .finish()
    }
}

impl Lstm {
    /// Packs `weights` for the best kernels of this CPU, using every core.
    ///
    /// # Errors
    /// [`Error::Config`] when `LSTM_KERNELS_ISA` names an unknown ISA or one this CPU
    /// lacks, or the thread pool cannot be created; [`Error::OutOfMemory`] when the packed
    /// copy of the weights cannot be allocated.
    pub fn new(weights: LstmWeights) -> Result<Self> {
        Self::with_options(weights, LstmOptions::default())
    }

    /// Packs `weights` for the given ISA and thread count.
    ///
    /// # Errors
    /// [`Error::Config`] when the ISA is not available (not in this build, not on this
    /// CPU, or it failed its self-check: the message says which), `threads` is 0, or the
    /// thread pool cannot be created; [`Error::OutOfMemory`] when the packed copy of the
    /// weights cannot be allocated.
    pub fn with_options(weights: LstmWeights, options: LstmOptions) -> Result<Self> {
        let mut lstm = Self::with_pool(
            weights,
            options.isa,
            thread_pool(options.threads, options.pin_threads)?,
        )?;
        lstm.forced = Forced {
            threads: options.call_threads,
            step_projection: options.step_projection,
            split_rows: options.split_rows,
            directions_at_once: options.split_directions,
        };
        lstm.planning = options.planning;
        Ok(lstm)
    }

    /// Packs `weights` for the given ISA, running on `pool` (one thread when `None`). A
    /// model of several parts shares one pool between them, so that a part's idle
    /// workers never compete for the cores with the next part's.
    ///
    /// # Errors
    /// [`Error::Config`] when the ISA is not available on this CPU; [`Error::OutOfMemory`]
    /// as [`Lstm::with_options`].
    pub(crate) fn with_pool(
        weights: LstmWeights,
        isa: Option<Isa>,
        pool: Option<Arc<ThreadPool>>,
    ) -> Result<Self> {
        let kernels = match isa {
            Some(isa) => Kernels::for_isa(isa).ok_or_else(|| {
                Error::Config(format!(
                    "ISA `{}` is not available: {}",
                    isa.name(),
                    isa.status()
                ))
            })?,
            None => Kernels::try_detect().map_err(|e| Error::Config(e.to_string()))?,
        };
        let ctx = ExecContext::new(kernels, pool);
        let cells = pack_all(weights.spec(), &weights, &ctx.kernels, ctx.pool())?;
        Ok(Lstm {
            weights,
            ctx,
            cells,
            forced: Forced::default(),
            planning: Planning::Heuristic,
            plans: PlanCache::default(),
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
            &self.ctx.kernels,
            self.ctx.pool(),
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
        self.ctx.kernels.isa()
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.ctx.threads
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
    /// `0..=T`; [`Error::Config`] when `ws` was made for another spec;
    /// [`Error::OutOfMemory`] when the pass's buffers cannot be allocated (then nothing
    /// ran, and the workspace has no state to carry).
    pub fn forward_inference(&self, input: &ForwardInput<'_>, ws: &mut Workspace) -> Result<()> {
        prepare(self.weights.spec(), input, ws)?;
        self.run(input, ws, None)
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
        self.run(input, ws, Some(reserve))
    }

    /// A reserve for [`Lstm::forward_training`] sized for `batch` sequences of up to
    /// `steps` steps, so that training never allocates. The sizes are a hint: sizes whose
    /// buffers could not exist, or that the machine cannot allocate, give an empty
    /// reserve, which a pass grows to its own batch (or refuses with
    /// [`Error::OutOfMemory`]).
    pub fn reserve(&self, batch: usize, steps: usize) -> TrainReserve {
        let mut r = TrainReserve::default();
        if fits(self.weights.spec(), batch, steps)
            && r.tape
                .grow(self.weights.spec(), &self.cells, batch, batch * steps)
                .is_err()
        {
            r = TrainReserve::default();
        }
        r
    }

    /// Backward through time after [`Lstm::forward_training`] on the same `input`:
    /// writes into `grads` the gradients of every weight, of the input and of the initial
    /// state, for the loss whose gradients with respect to the output and the final state
    /// are `upstream` (either may be absent: zeros).
    ///
    /// Padded steps contribute nothing, whatever `upstream.output` holds there.
    ///
    /// # Errors
    /// [`Error::Config`] when `reserve` holds no forward-training pass of this input's
    /// batch and lengths, or `grads`/`ws` belong to another spec; [`Error::Shape`] when
    /// `input` or an upstream gradient is not shaped as the forward pass's;
    /// [`Error::OutOfMemory`] when the gradients or the scratch cannot be allocated.
    pub fn backward(
        &self,
        input: &ForwardInput<'_>,
        reserve: &TrainReserve,
        upstream: &Upstream<'_>,
        ws: &mut Workspace,
        grads: &mut Gradients,
    ) -> Result<()> {
        prepare_backward(self.weights.spec(), input, reserve, upstream, ws, grads)?;
        self.run_backward(input, reserve, upstream, ws, grads)
    }

    /// What a plan is kept under: (sequences active at the first step, steps).
    fn plan_key(&self, sched: &Schedule, steps: usize) -> PlanKey {
        (sched.active.first().copied().unwrap_or(0), steps)
    }

    fn tiles(&self) -> TileSizes {
        TileSizes {
            unit: self.ctx.kernels.unit_tile(),
            mr: self.ctx.kernels.mr(),
        }
    }

    /// `rule` (the planner's [`plan`], or its [`candidates`]) applied to `key` on this
    /// `Lstm`'s spec, threads, tiles, machine and forced choices.
    fn planned<T>(
        &self,
        (rows, steps): PlanKey,
        rule: fn(&LstmSpec, usize, usize, usize, TileSizes, Machine, Forced) -> T,
    ) -> T {
        let spec = self.weights.spec();
        let (threads, machine) = (self.ctx.threads, Machine::detect());
        rule(
            spec,
            rows,
            steps,
            threads,
            self.tiles(),
            machine,
            self.forced,
        )
    }

    /// The plan for a pass over `sched` of `steps` steps: the one kept for its key, or
    /// the heuristic's, kept from then on.
    fn plan(&self, sched: &Schedule, steps: usize) -> Arc<Plan> {
        let key = self.plan_key(sched, steps);
        self.plans.get_or_make(key, || self.planned(key, plan))
    }

    /// The plans this `Lstm` has chosen so far (made by the heuristic or measured), as a
    /// JSON plans file ("wisdom") that [`Lstm::load_plans_json`] reads back, on this
    /// machine or another with as many threads.
    pub fn plans_json(&self) -> String {
        let plans: Vec<(PlanKey, Plan)> = self
            .plans
            .entries()
            .into_iter()
            .map(|(k, p)| (k, (*p).clone()))
            .collect();
        to_json(self.weights.spec(), &plans)
    }

    /// Loads the plans of a plans file written by [`Lstm::plans_json`] for the same stack,
    /// so that a server starts with the plans it measured before; returns how many were
    /// loaded. Plans for more threads than this `Lstm` has are left out.
    ///
    /// # Errors
    /// [`Error::Format`] when `json` is not a plans file or a plan in it is malformed
    /// (cells that do not match the stack, a backward split by rows where the cell forbids
    /// it, zero threads); [`Error::Config`] when it was made for another stack. Nothing is
    /// loaded then.
    pub fn load_plans_json(&self, json: &str) -> Result<usize> {
        let plans = from_json(json, self.weights.spec(), self.ctx.threads)?;
        let n = plans.len();
        for (key, plan) in plans {
            self.plans.insert(key, plan);
        }
        Ok(n)
    }

    /// The forward pass on input `prepare` has accepted; with a reserve, for training. On
    /// error (a scratch buffer the machine cannot allocate) nothing ran: the workspace
    /// holds no state to carry and the reserve no pass to differentiate.
    fn run(
        &self,
        input: &ForwardInput<'_>,
        ws: &mut Workspace,
        mut train: Option<&mut TrainReserve>,
    ) -> Result<()> {
        let spec = self.weights.spec();
        let (batch, steps) = (input.batch, input.steps);
        let layout = SeqLayout {
            time_major: spec.time_major(),
            batch,
            steps,
        };
        let Workspace {
            output,
            state,
            lengths,
            fast,
            state_batch,
            ..
        } = ws;
        let lengths = &lengths[..batch];
        fast.sched.rebuild(lengths);
        let key = self.plan_key(&fast.sched, steps);
        let mut tape = train.as_deref_mut().map(|t| {
            t.filled = false;
            &mut t.tape
        });
        // One pass on `plan`; the rest is this call's.
        let pass = |plan: &Plan,
                    state: &mut LstmState,
                    output: &mut [f32],
                    fast: &mut ForwardBuffers,
                    tape: Option<&mut Tape>| {
            forward(
                &self.ctx,
                spec,
                &self.cells,
                plan,
                input.data,
                layout,
                lengths,
                state,
                output,
                fast,
                tape,
            )
        };
        let done = match (self.planning, self.plans.get(key)) {
            (Planning::Measure, None) => {
                // Every candidate computes the same bits, so the last run's output and
                // final state stand; each run starts from the call's initial state.
                let initial = state.clone();
                let mut best: Option<(Duration, Plan)> = None;
                let mut done = Ok(());
                for candidate in self.planned(key, candidates) {
                    let mut fastest = Duration::MAX;
                    // The fastest of three, so that a shared machine's hiccup in one
                    // run does not decide; a candidate more than twice as slow as the
                    // best so far gets no second run (a bad plan, say more threads than
                    // CPUs, can be many times slower, and every run of it is paid).
                    for _ in 0..3 {
                        state.clone_from(&initial);
                        let t0 = Instant::now();
                        done = pass(&candidate, state, output, fast, tape.as_deref_mut());
                        let took = t0.elapsed();
                        fastest = fastest.min(took);
                        let hopeless = best.as_ref().is_some_and(|(t, _)| took > *t * 2);
                        if done.is_err() || hopeless {
                            break;
                        }
                    }
                    if done.is_err() {
                        break;
                    }
                    if best.as_ref().is_none_or(|(t, _)| fastest < *t) {
                        best = Some((fastest, candidate));
                    }
                }
                if let (Ok(()), Some((_, plan))) = (&done, best) {
                    self.plans.insert(key, plan);
                }
                done
            }
            (_, found) => {
                let plan = found.unwrap_or_else(|| self.plans.insert(key, self.planned(key, plan)));
                pass(&plan, state, output, fast, tape)
            }
        };
        if let Err(e) = done {
            *state_batch = None;
            return Err(e);
        }
        if let Some(t) = train {
            t.batch = batch;
            t.steps = steps;
            t.lengths.clear();
            t.lengths.extend_from_slice(lengths);
            t.filled = true;
            if t.spec.as_ref() != Some(spec) {
                t.spec = Some(spec.clone());
            }
        }
        Ok(())
    }

    /// The backward pass on validated input (see [`Lstm::backward`]).
    fn run_backward(
        &self,
        input: &ForwardInput<'_>,
        reserve: &TrainReserve,
        upstream: &Upstream<'_>,
        ws: &mut Workspace,
        grads: &mut Gradients,
    ) -> Result<()> {
        let spec = self.weights.spec();
        let layout = SeqLayout {
            time_major: spec.time_major(),
            batch: input.batch,
            steps: input.steps,
        };
        let plan = self.plan(&reserve.tape.sched, input.steps);
        backward(
            &self.ctx,
            spec,
            &self.cells,
            &plan,
            input.data,
            layout,
            &reserve.tape,
            upstream.output,
            upstream.final_state,
            &mut ws.backward,
            &mut grads.weights,
            &mut grads.input,
            &mut grads.initial_state,
        )
    }
}

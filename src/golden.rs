//! The golden suite: loads `lstm-golden/1` cases (see the repository's
//! `fixtures/README.md` and the shared `GOLDEN_FORMAT.md`), runs the crate on them and
//! compares with what TensorFlow or PyTorch computed.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::input::ForwardInput;
use crate::api::input::InitialState;
use crate::api::lstm::Lstm;
use crate::api::options::LstmOptions;
use crate::api::train::Upstream;
use crate::api::workspace::Workspace;
use crate::lm::{LanguageModel, LmWorkspace};
use crate::model::error::{Error, Result};
use crate::model::spec::LstmSpec;
use crate::model::state::CellState;
use crate::model::state::LstmState;
use crate::model::tensors::Tensors;
use crate::model::weights::{Convention, LstmWeights};
use crate::reference;

/// `abs(got - want) <= abs + rel * abs(want)` passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

/// The largest tolerance a golden file may declare (`tolerance` and `grad_tolerance`,
/// each part separately); [`GoldenCase::from_tensors`] refuses a file that asks for more.
///
/// Every committed fixture declares `abs` 1e-5, `rel` 1e-4: the format's default and the
/// floor of `fixtures/generate.py`'s ladder, which picks the smallest tolerance covering
/// four times the framework's own float32 error (measured against its float64 run; at
/// most 8.2e-7 absolute over the committed cases). The cap is ten times that, `abs`
/// 1e-4 and `rel` 1e-3: room for a regeneration on a newer framework to climb a few
/// rungs of the ladder, while a file asking for more is refused: at 1e-3 relative a
/// wrong activation approximation or a dropped term would pass, and a file could
/// otherwise declare 1e9 and pass anything.
pub const MAX_TOLERANCE: Tolerance = Tolerance {
    abs: 1e-4,
    rel: 1e-3,
};

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            abs: 1e-5,
            rel: 1e-4,
        }
    }
}

/// The worst element of one tensor comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The tensor compared.
    pub tensor: String,
    /// Largest `|got - want| / (abs + rel * |want|)`; infinite where one side is NaN and
    /// the other not, or where nothing is allowed and the values differ.
    pub max_ratio: f64,
    /// `|got - want|` at the worst element.
    pub max_err: f64,
    /// What the tolerance allowed at the worst element.
    pub allowed: f64,
}

/// Compares `got` with `want` element by element. NaN matches NaN.
///
/// # Errors
/// [`Error::Shape`] when the lengths differ.
pub fn compare(tensor: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Result<Comparison> {
    if got.len() != want.len() {
        return Err(Error::shape(tensor, &[want.len()], &[got.len()]));
    }
    let mut worst = Comparison {
        tensor: tensor.to_string(),
        max_ratio: 0.0,
        max_err: 0.0,
        allowed: tol.abs,
    };
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (f64::from(g), f64::from(w));
        let allowed = tol.abs + tol.rel * w.abs();
        let (err, ratio) = if g.is_nan() && w.is_nan() {
            (0.0, 0.0)
        } else if g == w {
            // Also covers matching infinities, whose difference is NaN.
            (0.0, 0.0)
        } else {
            let err = (g - w).abs();
            let ratio = if err.is_nan() || allowed == 0.0 {
                f64::INFINITY
            } else {
                err / allowed
            };
            (if err.is_nan() { f64::INFINITY } else { err }, ratio)
        };
        if ratio > worst.max_ratio {
            worst.max_ratio = ratio;
            worst.max_err = err;
            worst.allowed = allowed;
        }
    }
    Ok(worst)
}

/// A part of a golden case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Output (or logits) and final states.
    Forward,
    /// Gradients of every weight and input.
    Gradients,
    /// The language model's loss.
    Loss,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Forward => "forward",
            Part::Gradients => "gradients",
            Part::Loss => "loss",
        })
    }
}

/// How a part of a case went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every compared tensor was within tolerance.
    Pass {
        /// The largest error over what the tolerance allows (at most 1).
        max_ratio: f64,
    },
    /// A tensor was out of tolerance.
    Mismatch(Comparison),
    /// The case could not be run (unreadable file, bad shapes, ...).
    Error(String),
    /// The crate cannot compute this part yet; never counted as a pass.
    Skip(String),
}

/// One line of the checker's report.
#[derive(Debug, Clone, PartialEq)]
pub struct PartReport {
    /// Which part.
    pub part: Part,
    /// The case's name (the file name without `.safetensors`).
    pub name: String,
    /// The result.
    pub outcome: Outcome,
}

impl fmt::Display for PartReport {
    /// `PASS forward NAME max_ratio=R`, `FAIL forward NAME: TENSOR max_err=E allowed=A`,
    /// `FAIL forward NAME: MESSAGE`, `SKIP gradients NAME: REASON`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (part, name) = (self.part, &self.name);
        match &self.outcome {
            Outcome::Pass { max_ratio } => write!(f, "PASS {part} {name} max_ratio={max_ratio:.4}"),
            Outcome::Mismatch(c) => write!(
                f,
                "FAIL {part} {name}: {} max_err={:.3e} allowed={:.3e}",
                c.tensor, c.max_err, c.allowed
            ),
            Outcome::Error(msg) => write!(f, "FAIL {part} {name}: {msg}"),
            Outcome::Skip(reason) => write!(f, "SKIP {part} {name}: {reason}"),
        }
    }
}

/// Which implementation a case runs on.
#[derive(Debug, Clone, Copy)]
pub enum Engine {
    /// The scalar reference ([`crate::reference::forward`]).
    Reference,
    /// [`Lstm`] with these options (ISA, threads).
    Fast(LstmOptions),
}

/// The kinds of case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stack of LSTM layers.
    Lstm,
    /// Embedding, LSTM stack, softmax and the seed's loss.
    LanguageModel,
}

/// A loaded golden case.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    /// File name without `.safetensors`.
    pub name: String,
    /// What the case holds.
    pub kind: Kind,
    /// Weight naming convention.
    pub convention: Convention,
    /// The LSTM stack it describes.
    pub spec: LstmSpec,
    /// Tolerance of the forward and loss tensors.
    pub tolerance: Tolerance,
    /// Tolerance of the gradient tensors.
    pub grad_tolerance: Tolerance,
    /// Every tensor of the file.
    pub tensors: Tensors,
    gradient_cache: std::sync::OnceLock<Result<NamedTensors>>,
}

fn config_err(msg: impl fmt::Display) -> Error {
    Error::Format(format!("metadata `config`: {msg}"))
}

fn get_usize(v: &Value, key: &str) -> Result<usize> {
    v.as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| config_err(format!("`{key}` must be a non-negative integer, got {v}")))
}

fn get_f32(v: &Value, key: &str) -> Result<Option<f32>> {
    match v {
        Value::Null => Ok(None),
        v => v
            .as_f64()
            .map(|x| Some(x as f32))
            .ok_or_else(|| config_err(format!("`{key}` must be a number or null, got {v}"))),
    }
}

fn get_bool(config: &Value, key: &str) -> Result<bool> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(config_err(format!(
            "`{key}` must be true or false, got {v}"
        ))),
    }
}

fn get_tolerance(config: &Value, key: &str, default: Tolerance) -> Result<Tolerance> {
    let Some(t) = config.get(key).filter(|t| !t.is_null()) else {
        return Ok(default);
    };
    let part = |name: &str, default: f64, cap: f64| -> Result<f64> {
        let x = match t.get(name) {
            None => default,
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    config_err(format!("`{key}.{name}` must be a number >= 0, got {v}"))
                })?,
        };
        if x > cap {
            return Err(config_err(format!(
                "`{key}.{name}` = {x:e} is above the checker's cap {cap:e} \
                 (golden::MAX_TOLERANCE): a tolerance that large cannot tell right from wrong"
            )));
        }
        Ok(x)
    };
    Ok(Tolerance {
        abs: part("abs", default.abs, MAX_TOLERANCE.abs)?,
        rel: part("rel", default.rel, MAX_TOLERANCE.rel)?,
    })
}

impl GoldenCase {
    /// Loads and validates a case file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Format`] for an unreadable file, missing or malformed
    /// metadata (a `tolerance` or `grad_tolerance` above [`MAX_TOLERANCE`] included), or
    /// a config the crate's spec rejects ([`Error::Config`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = case_name(path);
        Self::from_tensors(name, Tensors::load(path)?)
    }

    /// Builds a case from tensors already in memory (a file's contents).
    ///
    /// # Errors
    /// As [`GoldenCase::load`].
    pub fn from_tensors(name: String, tensors: Tensors) -> Result<Self> {
        let meta = tensors.metadata();
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| Error::Format(format!("metadata has no `{key}`")))
        };
        let format = field("format")?;
        if format != "lstm-golden/1" {
            return Err(Error::Format(format!(
                "metadata `format` is `{format}`, expected `lstm-golden/1`"
            )));
        }
        let kind = match field("kind")?.as_str() {
            "lstm" => Kind::Lstm,
            "language_model" => Kind::LanguageModel,
            other => {
                return Err(Error::Format(format!(
                    "metadata `kind` is `{other}`, expected `lstm` or `language_model`"
                )))
            }
        };
        let convention = match field("convention")?.as_str() {
            "tensorflow" => Convention::TensorFlow,
            "pytorch" => Convention::PyTorch,
            other => {
                return Err(Error::Format(format!(
                    "metadata `convention` is `{other}`, expected `tensorflow` or `pytorch`"
                )))
            }
        };
        let config: Value = serde_json::from_str(field("config")?)
            .map_err(|e| config_err(format!("not JSON: {e}")))?;
        if !config.is_object() {
            return Err(config_err("not a JSON object"));
        }
        let input_size = get_usize(
            config
                .get("input_size")
                .ok_or_else(|| config_err("`input_size` is missing"))?,
            "input_size",
        )?;
        let hidden_sizes = config
            .get("hidden_sizes")
            .and_then(Value::as_array)
            .ok_or_else(|| config_err("`hidden_sizes` must be a list"))?
            .iter()
            .map(|v| get_usize(v, "hidden_sizes"))
            .collect::<Result<Vec<_>>>()?;
        let default_fb = match convention {
            Convention::PyTorch => 0.0,
            _ => 1.0,
        };
        let mut b = LstmSpec::builder(input_size, &hidden_sizes)
            .forget_bias(
                get_f32(
                    config.get("forget_bias").unwrap_or(&Value::Null),
                    "forget_bias",
                )?
                .unwrap_or(default_fb),
            )
            .peepholes(get_bool(&config, "use_peepholes")?)
            .bidirectional(get_bool(&config, "bidirectional")?)
            .time_major(get_bool(&config, "time_major")?);
        if let Some(clip) = get_f32(config.get("cell_clip").unwrap_or(&Value::Null), "cell_clip")? {
            b = b.cell_clip(clip);
        }
        if let Some(clip) = get_f32(config.get("proj_clip").unwrap_or(&Value::Null), "proj_clip")? {
            b = b.proj_clip(clip);
        }
        if let Some(p) = config.get("proj_sizes").filter(|p| !p.is_null()) {
            let sizes = p
                .as_array()
                .ok_or_else(|| config_err("`proj_sizes` must be a list"))?
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    v => get_usize(v, "proj_sizes").map(Some),
                })
                .collect::<Result<Vec<_>>>()?;
            b = b.proj_sizes(&sizes);
        }
        if let Some(cell) = config.get("cell").and_then(Value::as_str) {
            if !matches!(cell, "basic_lstm" | "lstm" | "torch_lstm") {
                return Err(config_err(format!("unknown `cell` `{cell}`")));
            }
        }
        let spec = b.build()?;
        let tolerance = get_tolerance(&config, "tolerance", Tolerance::default())?;
        let grad_tolerance = get_tolerance(&config, "grad_tolerance", tolerance)?;
        Ok(GoldenCase {
            name,
            kind,
            convention,
            spec,
            tolerance,
            grad_tolerance,
            tensors,
            gradient_cache: std::sync::OnceLock::new(),
        })
    }

    /// Runs the crate's fast path (the CPU's best kernels, every core) on the case and
    /// reports each part.
    pub fn check(&self) -> Vec<PartReport> {
        self.check_with(Engine::Fast(LstmOptions::default()))
    }

    /// Runs the case on the given engine and reports each part.
    ///
    /// Each computed tensor is compared with the expected tensor of its name: shape
    /// first (a mismatch is an [`Outcome::Error`] naming both shapes; a scalar may be
    /// `[]` or `[1]`), then element by element within the case's tolerance.
    pub fn check_with(&self, engine: Engine) -> Vec<PartReport> {
        let report = |part, outcome| PartReport {
            part,
            name: self.name.clone(),
            outcome,
        };
        let mut out = Vec::new();
        match self.run_forward(engine) {
            Ok(run) => {
                out.push(report(
                    Part::Forward,
                    self.judge(&run.forward, self.tolerance),
                ));
                match run.gradients {
                    None => {}
                    Some(Ok(pairs)) => out.push(report(
                        Part::Gradients,
                        self.judge(&pairs, self.grad_tolerance),
                    )),
                    Some(Err(e)) => {
                        out.push(report(Part::Gradients, Outcome::Error(e.to_string())))
                    }
                }
                if let Some(loss) = run.loss {
                    out.push(report(Part::Loss, self.judge(&[loss], self.tolerance)));
                }
            }
            Err(e) => {
                out.push(report(Part::Forward, Outcome::Error(e.to_string())));
                if self.has_gradients() {
                    out.push(report(
                        Part::Gradients,
                        Outcome::Skip("the forward pass failed".into()),
                    ));
                }
                if self.kind == Kind::LanguageModel {
                    out.push(report(Part::Loss, Outcome::Error(e.to_string())));
                }
            }
        }
        out
    }

    /// Every tensor the case computes on `engine`, each named as the `expected/...`
    /// tensor [`GoldenCase::check_with`] compares it with: the forward ones (output or
    /// logits, final states), then the loss, then every gradient, as computed, without
    /// comparing them.
    ///
    /// # Errors
    /// Whatever stops the forward pass or the gradients from being computed.
    pub fn outputs(&self, engine: Engine) -> Result<Vec<(String, Vec<f32>)>> {
        let run = self.run_forward(engine)?;
        let mut out = run.forward;
        out.extend(run.loss);
        if let Some(gradients) = run.gradients {
            out.extend(gradients?);
        }
        Ok(out.into_iter().map(|c| (c.name, c.data)).collect())
    }

    fn has_gradients(&self) -> bool {
        self.tensors
            .names()
            .any(|n| n.starts_with("expected/grad/"))
    }

    /// Compares each computed tensor with the expected one of its name: shape first
    /// (a mismatch is an error naming both shapes), then every element.
    fn judge(&self, computed: &[Computed], tol: Tolerance) -> Outcome {
        if computed.is_empty() {
            return Outcome::Error("the case has no expected tensor for this part".into());
        }
        let mut worst: Option<Comparison> = None;
        for c in computed {
            let (want_shape, want) = match self.tensors.f32(&c.name) {
                Ok(w) => w,
                Err(e) => return Outcome::Error(e.to_string()),
            };
            if !same_shape(want_shape, &c.shape) {
                let e = Error::Shape {
                    tensor: c.name.clone(),
                    expected: format!("{:?} (the computed tensor's shape)", c.shape),
                    actual: format!("{want_shape:?}"),
                };
                return Outcome::Error(e.to_string());
            }
            match compare(&c.name, &c.data, want, tol) {
                Ok(c) => {
                    if worst.as_ref().is_none_or(|w| c.max_ratio > w.max_ratio) {
                        worst = Some(c);
                    }
                }
                Err(e) => return Outcome::Error(e.to_string()),
            }
        }
        let worst = worst.expect("pairs is not empty");
        if worst.max_ratio <= 1.0 {
            Outcome::Pass {
                max_ratio: worst.max_ratio,
            }
        } else {
            Outcome::Mismatch(worst)
        }
    }

    /// The shapes of cell `k`'s state for `batch` sequences: `c` `[B, H_k]`, `h`
    /// `[B, P_k or H_k]`.
    fn state_shapes(&self, k: usize, batch: usize) -> ([usize; 2], [usize; 2]) {
        let layer = self.spec.layers()[self.spec.cell_layer(k)];
        ([batch, layer.hidden_size], [batch, layer.output_size()])
    }

    /// The shape of a tensor laid out like the input or the output (`width` features per
    /// token): `[B, T, width]`, or `[T, B, width]` when time-major.
    fn token_shape(&self, batch: usize, steps: usize, width: usize) -> [usize; 3] {
        if self.spec.time_major() {
            [steps, batch, width]
        } else {
            [batch, steps, width]
        }
    }

    fn initial_state(&self, batch: usize) -> Result<Option<LstmState>> {
        let spec = &self.spec;
        if !self
            .tensors
            .names()
            .any(|n| n.starts_with("initial_state/"))
        {
            return Ok(None);
        }
        let mut cells = Vec::new();
        for k in 0..spec.num_cells() {
            let layer = spec.layers()[spec.cell_layer(k)];
            let c = self
                .tensors
                .f32_shaped(&format!("initial_state/{k}/c"), &[batch, layer.hidden_size])?;
            let h = self.tensors.f32_shaped(
                &format!("initial_state/{k}/h"),
                &[batch, layer.output_size()],
            )?;
            cells.push(CellState {
                c: c.to_vec(),
                h: h.to_vec(),
            });
        }
        Ok(Some(LstmState { cells }))
    }

    /// Runs the forward pass and pairs each expected tensor name with what the crate got.
    fn run_forward(&self, engine: Engine) -> Result<ForwardRun> {
        let spec = &self.spec;
        let weights = LstmWeights::from_tensors(spec, &self.tensors, self.convention)?;
        let (input, batch, steps, lm) = match self.kind {
            Kind::Lstm => {
                let (shape, data) = self.tensors.f32("input")?;
                let [d0, d1, i] = shape[..] else {
                    return Err(Error::Shape {
                        tensor: "input".into(),
                        expected: "3 dimensions".into(),
                        actual: format!("{shape:?}"),
                    });
                };
                if i != spec.input_size() {
                    return Err(Error::shape("input", &[d0, d1, spec.input_size()], shape));
                }
                let (b, t) = if spec.time_major() {
                    (d1, d0)
                } else {
                    (d0, d1)
                };
                at_least_one_token("input", b, t, shape)?;
                (data.to_vec(), b, t, None)
            }
            Kind::LanguageModel => {
                let lm = LanguageModelTensors::read(self)?;
                let x = lm.embed(spec)?;
                (x, lm.batch, lm.steps, Some(lm))
            }
        };
        let lengths = match self.tensors.get("sequence_length") {
            None => None,
            Some(_) => {
                let (shape, l) = self.tensors.i32("sequence_length")?;
                if shape != [batch] {
                    return Err(Error::shape("sequence_length", &[batch], shape));
                }
                Some(l.to_vec())
            }
        };
        let init = self.initial_state(batch)?;
        let mut fi = ForwardInput::new(&input, batch, steps);
        if let Some(l) = &lengths {
            fi = fi.sequence_length(l);
        }
        if let Some(s) = &init {
            fi = fi.initial_state(InitialState::Given(s));
        }
        let mut ws = Workspace::new(spec, batch, steps);
        match engine {
            Engine::Reference => crate::reference::forward(&weights, &fi, &mut ws)?,
            Engine::Fast(options) => {
                Lstm::with_options(weights.clone(), options)?.forward_inference(&fi, &mut ws)?
            }
        }
        let gradients = self.has_gradients().then(|| match engine {
            // The f64 reference is slow and the same for every caller: once per case.
            Engine::Reference => self
                .gradient_cache
                .get_or_init(|| self.gradients(engine, &weights, &fi, lm.as_ref()))
                .clone(),
            Engine::Fast(_) => self.gradients(engine, &weights, &fi, lm.as_ref()),
        });

        let mut forward = Vec::new();
        if self.tensors.contains("expected/output") || self.kind == Kind::Lstm {
            let (shape, _) = self.tensors.f32("expected/output")?;
            let out = spec.output_size();
            let want = if spec.time_major() {
                [steps, batch, out]
            } else {
                [batch, steps, out]
            };
            if shape != want {
                return Err(Error::shape("expected/output", &want, shape));
            }
            forward.push(Computed::new(
                "expected/output",
                &want,
                ws.output().to_vec(),
            ));
        }
        // The language model on the fast engine runs through the `lm` module (embedding,
        // one Lstm per layer, the fused softmax layer); the reference engine keeps the
        // f64 oracle below.
        let lm_run = match (&lm, engine, &lengths) {
            (Some(lmt), Engine::Fast(options), None) => {
                Some(lmt.run_lm(&weights, options, init.as_ref())?)
            }
            _ => None,
        };
        let finals: Vec<CellState> = match &lm_run {
            Some((_, _, lws, _)) => (0..spec.num_layers())
                .map(|l| lws.final_state(l).clone())
                .collect(),
            None => ws.final_state().cells.clone(),
        };
        for (k, cell) in finals.iter().enumerate() {
            let (c_shape, h_shape) = self.state_shapes(k, batch);
            for (which, shape, got) in [("c", c_shape, &cell.c), ("h", h_shape, &cell.h)] {
                let name = format!("expected/final_state/{k}/{which}");
                if self.tensors.contains(&name) {
                    forward.push(Computed::new(name, &shape, got.clone()));
                }
            }
        }
        let mut loss = None;
        if let Some(lm) = &lm {
            let (logits, cost) = match lm_run {
                Some((_, logits, _, cost)) => (logits, cost as f32),
                None => lm.logits_and_cost(spec, ws.output())?,
            };
            if self.tensors.contains("expected/logits") {
                forward.push(Computed::new(
                    "expected/logits",
                    &[batch * steps, lm.vocab],
                    logits,
                ));
            }
            if self.tensors.contains("expected/loss") {
                loss = Some(Computed::new("expected/loss", &[], vec![cost]));
            } else {
                return Err(Error::MissingTensor("expected/loss".into()));
            }
        }
        Ok(ForwardRun {
            forward,
            loss,
            gradients,
        })
    }

    fn grad_final_state(&self, batch: usize) -> Result<Option<LstmState>> {
        if !self
            .tensors
            .names()
            .any(|n| n.starts_with("grad_final_state/"))
        {
            return Ok(None);
        }
        let mut state = LstmState::zeros(&self.spec, batch);
        for (k, cell) in state.cells.iter_mut().enumerate() {
            let (c_shape, h_shape) = self.state_shapes(k, batch);
            for (which, shape, dst) in [("c", c_shape, &mut cell.c), ("h", h_shape, &mut cell.h)] {
                let name = format!("grad_final_state/{k}/{which}");
                // A case may give the gradient of only some final states.
                if self.tensors.contains(&name) {
                    dst.copy_from_slice(self.tensors.f32_shaped(&name, &shape)?);
                }
            }
        }
        Ok(Some(state))
    }

    /// The crate's gradients, paired with every `expected/grad/...` tensor of the case.
    ///
    /// The reference engine uses the f64 reference backward
    /// ([`reference::gradients`]); the fast one [`Lstm::forward_training`] and
    /// [`Lstm::backward`].
    fn gradients(
        &self,
        engine: Engine,
        weights: &LstmWeights,
        fi: &ForwardInput<'_>,
        lm: Option<&LanguageModelTensors<'_>>,
    ) -> Result<NamedTensors> {
        let spec = &self.spec;
        if let (Some(lmt), Engine::Fast(options), None) = (lm, engine, fi.sequence_length) {
            if self.grad_final_state(fi.batch)?.is_none() {
                return self.lm_gradients(lmt, weights, options, fi);
            }
        }
        let mut ws = Workspace::new(spec, fi.batch, fi.steps);
        let fast = match engine {
            Engine::Reference => {
                crate::reference::forward(weights, fi, &mut ws)?;
                None
            }
            Engine::Fast(options) => {
                let lstm = Lstm::with_options(weights.clone(), options)?;
                let mut reserve = lstm.reserve(fi.batch, fi.steps);
                lstm.forward_training(fi, &mut ws, &mut reserve)?;
                Some((lstm, reserve))
            }
        };
        let output = ws.output().to_vec();
        let output = &output[..];
        let (grad_output, lm_grads) = match lm {
            None => {
                let want = self.token_shape(fi.batch, fi.steps, spec.output_size());
                let g = self.tensors.f32_shaped("grad_output", &want)?;
                (g.to_vec(), None)
            }
            Some(lm) => {
                let (d_out, g_w, g_b) = lm.softmax_backward(spec, output);
                (d_out, Some((g_w, g_b)))
            }
        };
        let gfs = self.grad_final_state(fi.batch)?;
        let upstream = Upstream {
            output: Some(&grad_output),
            final_state: gfs.as_ref(),
        };
        let g = match &fast {
            None => reference::gradients(weights, fi, &upstream)?,
            Some((lstm, reserve)) => {
                let mut g = crate::api::train::Gradients::zeros(spec, fi.batch, fi.steps);
                lstm.backward(fi, reserve, &upstream, &mut ws, &mut g)?;
                g
            }
        };
        let named = match self.convention {
            Convention::PyTorch => g.to_pytorch()?,
            _ => g.to_tensorflow(),
        };
        let mut pairs = Vec::new();
        for name in self
            .tensors
            .names()
            .filter(|n| n.starts_with("expected/grad/"))
        {
            let key = &name["expected/grad/".len()..];
            let (shape, got): (Vec<usize>, Vec<f32>) = match (key, lm, &lm_grads) {
                ("input", None, _) => (
                    self.token_shape(fi.batch, fi.steps, spec.input_size())
                        .to_vec(),
                    g.input.clone(),
                ),
                ("embedding", Some(lm), _) => (
                    vec![lm.vocab, spec.input_size()],
                    lm.embedding_grad(spec, &g.input),
                ),
                ("softmax_w", Some(lm), Some((w, _))) => {
                    (vec![spec.output_size(), lm.vocab], w.clone())
                }
                ("softmax_b", Some(lm), Some((_, b))) => (vec![lm.vocab], b.clone()),
                _ => {
                    if let Some(rest) = key.strip_prefix("initial_state/") {
                        let cell = rest
                            .split_once('/')
                            .and_then(|(k, w)| Some((k.parse::<usize>().ok()?, w)))
                            .and_then(|(k, w)| g.initial_state.cells.get(k).map(|c| (k, c, w)));
                        match cell {
                            Some((k, c, "c")) => {
                                (self.state_shapes(k, fi.batch).0.to_vec(), c.c.clone())
                            }
                            Some((k, c, "h")) => {
                                (self.state_shapes(k, fi.batch).1.to_vec(), c.h.clone())
                            }
                            _ => {
                                return Err(Error::MissingTensor(format!(
                                    "the crate has no gradient `{key}`"
                                )))
                            }
                        }
                    } else {
                        let (shape, v) = named.f32(key).map_err(|_| {
                            Error::MissingTensor(format!("the crate has no gradient `{key}`"))
                        })?;
                        (shape.to_vec(), v.to_vec())
                    }
                }
            };
            pairs.push(Computed::new(name, &shape, got));
        }
        Ok(pairs)
    }
}

impl GoldenCase {
    /// A language-model case's gradients through the `lm` module: forward, fused softmax
    /// loss and backward as training runs them, paired with every `expected/grad/...`.
    fn lm_gradients(
        &self,
        lmt: &LanguageModelTensors<'_>,
        weights: &LstmWeights,
        options: LstmOptions,
        fi: &ForwardInput<'_>,
    ) -> Result<NamedTensors> {
        let init = match fi.initial_state {
            InitialState::Given(s) => Some(s),
            _ => None,
        };
        let (model, _, mut lws, _) = lmt.run_lm(weights, options, init)?;
        if let Some(s) = init {
            lws.set_state(&s.cells)?;
        } else {
            lws.reset_state();
        }
        model.gradients(&mut lws, lmt.ids, lmt.targets, None)?;
        let g = lws.gradients();
        let mut pairs = Vec::new();
        for name in self
            .tensors
            .names()
            .filter(|n| n.starts_with("expected/grad/"))
        {
            let key = &name["expected/grad/".len()..];
            let spec = &self.spec;
            let (shape, got): (Vec<usize>, Vec<f32>) = match key {
                "embedding" => (
                    vec![lmt.vocab, spec.input_size()],
                    g.embedding_dense(lmt.vocab),
                ),
                "softmax_w" => (
                    vec![spec.output_size(), lmt.vocab],
                    g.softmax_w(lmt.vocab).to_vec(),
                ),
                "softmax_b" => (vec![lmt.vocab], g.softmax_b(lmt.vocab).to_vec()),
                _ => {
                    let layer = key
                        .strip_prefix("layers/")
                        .and_then(|r| r.split_once('/'))
                        .and_then(|(k, w)| Some((k.parse::<usize>().ok()?, w)))
                        .filter(|(k, _)| *k < g.layers.len());
                    let initial = key
                        .strip_prefix("initial_state/")
                        .and_then(|r| r.split_once('/'))
                        .and_then(|(k, w)| Some((k.parse::<usize>().ok()?, w)))
                        .filter(|(k, _)| *k < g.layers.len());
                    match (layer, initial) {
                        (Some((k, w)), _) => {
                            let t = g.layers[k].to_tensorflow();
                            let (shape, v) = t.f32(&format!("layers/0/{w}")).map_err(|_| {
                                Error::MissingTensor(format!("the crate has no gradient `{key}`"))
                            })?;
                            (shape.to_vec(), v.to_vec())
                        }
                        (_, Some((k, "c"))) => (
                            self.state_shapes(k, lmt.batch).0.to_vec(),
                            g.layers[k].initial_state.cells[0].c.clone(),
                        ),
                        (_, Some((k, "h"))) => (
                            self.state_shapes(k, lmt.batch).1.to_vec(),
                            g.layers[k].initial_state.cells[0].h.clone(),
                        ),
                        _ => {
                            return Err(Error::MissingTensor(format!(
                                "the crate has no gradient `{key}`"
                            )))
                        }
                    }
                }
            };
            pairs.push(Computed::new(name, &shape, got));
        }
        Ok(pairs)
    }
}

struct ForwardRun {
    forward: NamedTensors,
    loss: Option<Computed>,
    gradients: Option<Result<NamedTensors>>,
}

/// A tensor the crate computed, with its shape, named as the expected tensor it is
/// compared with.
#[derive(Debug, Clone)]
struct Computed {
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Computed {
    fn new(name: impl Into<String>, shape: &[usize], data: Vec<f32>) -> Self {
        let c = Computed {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        };
        debug_assert_eq!(
            c.shape.iter().product::<usize>(),
            c.data.len(),
            "{}: shape {:?}",
            c.name,
            c.shape
        );
        c
    }
}

/// Computed tensors, each named as the expected tensor it is compared with.
type NamedTensors = Vec<Computed>;

/// Whether an expected tensor of shape `want` may hold a computed one of shape `got`:
/// the same shape, where a scalar may be `[]` or `[1]` (as the format allows for the
/// loss).
fn same_shape(want: &[usize], got: &[usize]) -> bool {
    let scalar = |s: &[usize]| s.len() <= 1 && s.iter().product::<usize>() == 1;
    want == got || (scalar(want) && scalar(got))
}

/// The language model's own tensors, checked.
struct LanguageModelTensors<'a> {
    batch: usize,
    steps: usize,
    vocab: usize,
    ids: &'a [i32],
    targets: &'a [i32],
    embedding: &'a [f32],
    softmax_w: &'a [f32],
    softmax_b: &'a [f32],
}

impl<'a> LanguageModelTensors<'a> {
    /// The case as a [`LanguageModel`] after one forward window from `init` (or zeros):
    /// the model, the logits, its workspace (final states) and the cost.
    fn run_lm(
        &self,
        weights: &LstmWeights,
        options: LstmOptions,
        init: Option<&LstmState>,
    ) -> Result<(LanguageModel, Vec<f32>, LmWorkspace, f64)> {
        let model = LanguageModel::from_parts(
            self.embedding,
            weights,
            self.softmax_w,
            self.softmax_b,
            options,
        )?;
        let mut lws = LmWorkspace::new(&model, self.batch, self.steps);
        if let Some(s) = init {
            lws.set_state(&s.cells)?;
        }
        let (logits, cost) = model.logits(&mut lws, self.ids, self.targets)?;
        Ok((model, logits, lws, cost))
    }

    fn read(case: &'a GoldenCase) -> Result<Self> {
        let t = &case.tensors;
        let spec = &case.spec;
        let (shape, ids) = t.i32("input_ids")?;
        let [batch, steps] = shape[..] else {
            return Err(Error::Shape {
                tensor: "input_ids".into(),
                expected: "[B, T]".into(),
                actual: format!("{shape:?}"),
            });
        };
        at_least_one_token("input_ids", batch, steps, shape)?;
        let targets = {
            let (s, v) = t.i32("targets")?;
            if s != [batch, steps] {
                return Err(Error::shape("targets", &[batch, steps], s));
            }
            v
        };
        let (eshape, embedding) = t.f32("embedding")?;
        let vocab = eshape.first().copied().unwrap_or(0);
        if eshape != [vocab, spec.input_size()] || vocab == 0 {
            return Err(Error::shape(
                "embedding",
                &[vocab.max(1), spec.input_size()],
                eshape,
            ));
        }
        let h = spec.output_size();
        let softmax_w = t.f32_shaped("softmax_w", &[h, vocab])?;
        let softmax_b = t.f32_shaped("softmax_b", &[vocab])?;
        for (name, v) in [("input_ids", ids), ("targets", targets)] {
            if let Some(bad) = v.iter().find(|&&id| id < 0 || id as usize >= vocab) {
                return Err(Error::Format(format!(
                    "tensor `{name}`: id {bad} is outside the vocabulary 0..{vocab}"
                )));
            }
        }
        Ok(LanguageModelTensors {
            batch,
            steps,
            vocab,
            ids,
            targets,
            embedding,
            softmax_w,
            softmax_b,
        })
    }

    /// The embedded input, `[B, T, E]` (or time-major, as the spec says).
    fn embed(&self, spec: &LstmSpec) -> Result<Vec<f32>> {
        let e = spec.input_size();
        let mut x = vec![0.0; self.batch * self.steps * e];
        for b in 0..self.batch {
            for t in 0..self.steps {
                let id = self.ids[b * self.steps + t] as usize;
                let row = crate::model::layout::row_index(
                    spec.time_major(),
                    self.batch,
                    self.steps,
                    b,
                    t,
                );
                x[row * e..(row + 1) * e].copy_from_slice(&self.embedding[id * e..(id + 1) * e]);
            }
        }
        Ok(x)
    }

    /// The softmax layer's backward for the seed's cost, in f64: dL/d(output) (laid out
    /// like the LSTM output), dL/d(softmax_w) and dL/d(softmax_b).
    fn softmax_backward(&self, spec: &LstmSpec, output: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (v, h) = (self.vocab, spec.output_size());
        let mut d_out = vec![0.0f32; output.len()];
        let mut g_w = vec![0.0f64; h * v];
        let mut g_b = vec![0.0f64; v];
        let mut logits = vec![0.0f64; v];
        for b in 0..self.batch {
            for t in 0..self.steps {
                let row = crate::model::layout::row_index(
                    spec.time_major(),
                    self.batch,
                    self.steps,
                    b,
                    t,
                );
                let hrow = &output[row * h..(row + 1) * h];
                logits
                    .iter_mut()
                    .zip(self.softmax_b)
                    .for_each(|(l, &bv)| *l = f64::from(bv));
                for (hv, wrow) in hrow.iter().zip(self.softmax_w.chunks_exact(v)) {
                    logits
                        .iter_mut()
                        .zip(wrow)
                        .for_each(|(l, &w)| *l += f64::from(*hv) * f64::from(w));
                }
                let max = logits.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
                let sum: f64 = logits.iter().map(|&x| (x - max).exp()).sum();
                let target = self.targets[b * self.steps + t] as usize;
                // d(cost)/d(logit) = (softmax - onehot) / B: the cost is a batch mean per step.
                for (j, l) in logits.iter_mut().enumerate() {
                    *l = ((*l - max).exp() / sum - if j == target { 1.0 } else { 0.0 })
                        / self.batch as f64;
                }
                g_b.iter_mut().zip(&logits).for_each(|(g, d)| *g += d);
                for (q, (&hv, wrow)) in hrow.iter().zip(self.softmax_w.chunks_exact(v)).enumerate()
                {
                    let grow = &mut g_w[q * v..(q + 1) * v];
                    grow.iter_mut()
                        .zip(&logits)
                        .for_each(|(g, d)| *g += f64::from(hv) * d);
                    d_out[row * h + q] = wrow
                        .iter()
                        .zip(&logits)
                        .map(|(&w, d)| f64::from(w) * d)
                        .sum::<f64>() as f32;
                }
            }
        }
        let down = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        (d_out, down(g_w), down(g_b))
    }

    /// dL/d(embedding) from dL/d(embedded input): rows added up by id.
    fn embedding_grad(&self, spec: &LstmSpec, d_input: &[f32]) -> Vec<f32> {
        let e = spec.input_size();
        let mut g = vec![0.0f64; self.vocab * e];
        for b in 0..self.batch {
            for t in 0..self.steps {
                let id = self.ids[b * self.steps + t] as usize;
                let row = crate::model::layout::row_index(
                    spec.time_major(),
                    self.batch,
                    self.steps,
                    b,
                    t,
                );
                g[id * e..(id + 1) * e]
                    .iter_mut()
                    .zip(&d_input[row * e..(row + 1) * e])
                    .for_each(|(a, &d)| *a += f64::from(d));
            }
        }
        g.into_iter().map(|x| x as f32).collect()
    }

    /// Logits `[B*T, V]` (rows `b*T + t`) and the seed's cost: the sum over time steps of
    /// the batch-mean cross-entropy.
    fn logits_and_cost(&self, spec: &LstmSpec, output: &[f32]) -> Result<(Vec<f32>, f32)> {
        let (v, h) = (self.vocab, spec.output_size());
        let mut logits = vec![0.0f32; self.batch * self.steps * v];
        let mut cost = 0.0f64;
        for b in 0..self.batch {
            for t in 0..self.steps {
                let row = crate::model::layout::row_index(
                    spec.time_major(),
                    self.batch,
                    self.steps,
                    b,
                    t,
                );
                let hrow = &output[row * h..(row + 1) * h];
                let out = &mut logits[(b * self.steps + t) * v..(b * self.steps + t + 1) * v];
                out.copy_from_slice(self.softmax_b);
                for (hv, wrow) in hrow.iter().zip(self.softmax_w.chunks_exact(v)) {
                    out.iter_mut().zip(wrow).for_each(|(o, &w)| *o += hv * w);
                }
                let max = out.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
                let sum: f64 = out.iter().map(|&x| f64::from(x - max).exp()).sum();
                let target = self.targets[b * self.steps + t] as usize;
                cost += (sum.ln() - f64::from(out[target] - max)) / self.batch as f64;
            }
        }
        Ok((logits, cost as f32))
    }
}

/// The case name of a path: its file name without `.safetensors`.
pub fn case_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    file.strip_suffix(".safetensors")
        .unwrap_or(&file)
        .to_string()
}

/// Loads and checks one file; a file that cannot be loaded gives one failing
/// `forward` report with the reason.
pub fn check_file(path: &Path) -> Vec<PartReport> {
    match GoldenCase::load(path) {
        Ok(case) => case.check(),
        Err(e) => vec![PartReport {
            part: Part::Forward,
            name: case_name(path),
            outcome: Outcome::Error(e.to_string()),
        }],
    }
}

/// Every `.safetensors` file under `paths` (files as given, folders recursively),
/// sorted within each folder.
///
/// # Errors
/// [`Error::Io`] when a path does not exist or a folder cannot be read.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "safetensors") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::Io(format!(
                "{}: no such file or folder",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// Counts of a checker run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Parts that passed.
    pub passed: usize,
    /// Parts that failed (mismatch or error).
    pub failed: usize,
    /// Parts skipped.
    pub skipped: usize,
}

impl Summary {
    /// Adds a report to the counts.
    pub fn add(&mut self, r: &PartReport) {
        match r.outcome {
            Outcome::Pass { .. } => self.passed += 1,
            Outcome::Mismatch(_) | Outcome::Error(_) => self.failed += 1,
            Outcome::Skip(_) => self.skipped += 1,
        }
    }
}

impl fmt::Display for Summary {
    /// `golden: N passed, M failed, K skipped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "golden: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// A case's input has `B >= 1` sequences of `T >= 1` steps, as every pass requires;
/// checked before anything is sized from `B` or `T`, since a tensor with a zero
/// dimension holds no element and so bounds neither (a file could declare `[2^31, 0]`
/// and have the checker size a state for 2^31 sequences).
fn at_least_one_token(tensor: &str, batch: usize, steps: usize, shape: &[usize]) -> Result<()> {
    if batch == 0 || steps == 0 {
        return Err(Error::Shape {
            tensor: tensor.into(),
            expected: "B >= 1 sequences of T >= 1 steps".into(),
            actual: format!("{shape:?}"),
        });
    }
    Ok(())
}

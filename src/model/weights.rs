//! Weights: the crate's own layout, and import/export in the frameworks' conventions.
//!
//! The canonical layout of one cell (one layer, one direction) is TensorFlow's split in
//! two: `input_weights` `[in, 4H]` and `recurrent_weights` `[R, 4H]` (`R` = `P` or `H`),
//! row-major, gate columns in blocks of `H` in the order i, j, f, o (`j` is the candidate
//! that PyTorch calls `g` and Keras `c`); `bias` `[4H]`; peepholes `w_i`, `w_f`, `w_o`
//! `[H]`; `projection` `[H, P]`. Row-major `[K, N]` with `N = 4H` is what a BLAS sgemm
//! and the packed kernels want; the fast paths repack from it once, at load time.

use crate::model::error::{Error, Result};
use crate::model::spec::LstmSpec;
use crate::model::tensors::Tensors;

/// The order of the four gate blocks in an external weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOrder {
    /// TensorFlow `BasicLSTMCell`/`LSTMCell`: i, j, f, o.
    Ijfo,
    /// PyTorch `nn.LSTM` (i, f, g, o) and Keras `LSTM` (i, f, c, o).
    Ifgo,
    /// ONNX `LSTM`: i, o, f, c.
    Iofc,
}

impl GateOrder {
    /// For each canonical gate (i, j, f, o), the index of its block in this order.
    fn blocks(self) -> [usize; 4] {
        match self {
            GateOrder::Ijfo => [0, 1, 2, 3],
            GateOrder::Ifgo => [0, 2, 1, 3],
            GateOrder::Iofc => [0, 3, 2, 1],
        }
    }
}

/// How an external matrix is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[inputs, outputs]`, as TensorFlow and Keras store `kernel` and `projection`.
    InputMajor,
    /// `[outputs, inputs]`, as PyTorch and ONNX store `weight_*` and `W`/`R`.
    OutputMajor,
}

/// A borrowed external matrix.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    /// Row-major elements.
    pub data: &'a [f32],
    /// Which dimension is outermost.
    pub layout: Layout,
}

/// One cell's weights in an external convention, borrowed: the input of
/// [`LstmWeights::from_cells`].
#[derive(Debug, Clone)]
pub struct CellParams<'a> {
    /// Gate order of the `4H` dimension of `input`, `recurrent` and `biases`.
    pub gate_order: GateOrder,
    /// Input weights, `[in, 4H]` or `[4H, in]`.
    pub input: Matrix<'a>,
    /// Recurrent weights, `[R, 4H]` or `[4H, R]`.
    pub recurrent: Matrix<'a>,
    /// Bias vectors of length `4H`, summed (PyTorch's `bias_ih + bias_hh`); empty for a
    /// cell without bias (`nn.LSTM(bias=False)`, `LSTM(use_bias=False)`).
    pub biases: Vec<&'a [f32]>,
    /// Peephole weights `[w_i, w_f, w_o]`, each `[H]`; required iff the spec has peepholes.
    pub peepholes: Option<[&'a [f32]; 3]>,
    /// Projection, `[H, P]` or `[P, H]`; required iff the layer projects.
    pub projection: Option<Matrix<'a>>,
}

/// The weights of one cell (layer and direction) in the crate's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct CellWeights {
    input_weights: Vec<f32>,
    recurrent_weights: Vec<f32>,
    bias: Vec<f32>,
    peepholes: Option<[Vec<f32>; 3]>,
    projection: Option<Vec<f32>>,
}

impl CellWeights {
    /// `[in, 4H]`, gate blocks i, j, f, o.
    pub fn input_weights(&self) -> &[f32] {
        &self.input_weights
    }
    /// `[R, 4H]`, gate blocks i, j, f, o.
    pub fn recurrent_weights(&self) -> &[f32] {
        &self.recurrent_weights
    }
    /// `[4H]`, gate blocks i, j, f, o; `forget_bias` is not folded in.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }
    /// `[w_i, w_f, w_o]`, each `[H]`, when the spec has peepholes.
    pub fn peepholes(&self) -> Option<&[Vec<f32>; 3]> {
        self.peepholes.as_ref()
    }
    /// `[H, P]` when the layer projects.
    pub fn projection(&self) -> Option<&[f32]> {
        self.projection.as_deref()
    }
}

/// Which framework's names and layouts a set of tensors uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `layers/{k}/kernel` `[in + R, 4H]`, `layers/{k}/bias`, `layers/{k}/w_{i,f,o}_diag`,
    /// `layers/{k}/projection` `[H, P]`; gates i, j, f, o.
    TensorFlow,
    /// `torch.nn.LSTM.state_dict()` names: `weight_ih_l{l}`, `weight_hh_l{l}`,
    /// `bias_ih_l{l}`, `bias_hh_l{l}`, `weight_hr_l{l}`, `_reverse` for the backward
    /// direction; gates i, f, g, o.
    PyTorch,
    /// Keras `LSTM` weights under `layers/{k}/`: `kernel` `[in, 4H]`, `recurrent_kernel`
    /// `[H, 4H]`, `bias` `[4H]` (optional); gates i, f, c, o.
    Keras,
    /// ONNX `LSTM` inputs per layer `l`: `layers/{l}/W` `[D, 4H, in]`, `layers/{l}/R`
    /// `[D, 4H, H]`, `layers/{l}/B` `[D, 8H]` (optional), `layers/{l}/P` `[D, 3H]`
    /// (peepholes i, o, f; when the spec has them); gates i, o, f, c.
    Onnx,
}

/// The weights of a whole stack, validated against its [`LstmSpec`].
///
/// Cell `k` is layer `k / D`, direction `k % D` (`D` = 2 when bidirectional).
#[derive(Debug, Clone, PartialEq)]
pub struct LstmWeights {
    spec: LstmSpec,
    cells: Vec<CellWeights>,
}

/// What an import from named tensors ([`LstmWeights::from_tensors_with`]) accepts beyond
/// the strict default.
///
/// The default is strict, as PyTorch's `load_state_dict(strict=True)`: every tensor the
/// spec needs must be in the file, and a misspelt or forgotten one is an error naming it
/// rather than a different model. Set a field to accept what a framework can legitimately
/// leave out:
///
/// ```
/// use lstm_kernels::{Convention, LoadOptions, LstmSpec, LstmWeights, Tensors};
///
/// // A PyTorch `nn.LSTM(3, 2, bias=False)` state dict: no bias_ih_l0, no bias_hh_l0.
/// let mut t = Tensors::new();
/// t.insert_f32("weight_ih_l0", &[8, 3], vec![0.1; 24])?;
/// t.insert_f32("weight_hh_l0", &[8, 2], vec![0.2; 16])?;
/// let spec = LstmSpec::builder(3, &[2]).forget_bias(0.0).build()?;
/// assert!(LstmWeights::from_tensors(&spec, &t, Convention::PyTorch).is_err());
/// let options = LoadOptions { allow_missing_bias: true, ..Default::default() };
/// let w = LstmWeights::from_tensors_with(&spec, &t, Convention::PyTorch, options)?;
/// assert!(w.cell(0).bias().iter().all(|&b| b == 0.0));
/// # Ok::<(), lstm_kernels::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept a cell whose bias tensors are all absent, and give it a zero bias: a model
    /// built without biases (PyTorch `nn.LSTM(bias=False)`, Keras `LSTM(use_bias=False)`,
    /// an ONNX `LSTM` without its optional input `B`, a TensorFlow cell without `bias`).
    /// Decided per cell from that cell's tensors: `layers/{k}/bias` (TensorFlow, Keras),
    /// `bias_ih_*` and `bias_hh_*` (PyTorch), `layers/{l}/B` (ONNX, both directions). A
    /// PyTorch cell with one of its two biases but not the other is an error either way:
    /// no framework writes that.
    ///
    /// Default `false`: an absent bias is [`Error::MissingTensor`] naming it.
    pub allow_missing_bias: bool,
}

/// Shape facts of one cell, each product of them that an import or export takes known to
/// fit `usize`.
#[derive(Debug, Clone, Copy)]
struct CellDims {
    /// Input width.
    inp: usize,
    /// Recurrent width `R` (`P` when the layer projects, else `H`).
    r: usize,
    /// Hidden units `H`.
    h: usize,
    /// Projection width `P`.
    p: Option<usize>,
    /// `4H`, the width of a gate matrix.
    g: usize,
}

/// `value`, or [`Error::Config`] saying that `what` overflows `usize`.
fn fits(value: Option<usize>, what: impl FnOnce() -> String) -> Result<usize> {
    value.ok_or_else(|| Error::Config(format!("{} overflows usize", what())))
}

/// Shape facts of cell `k`, with `4H`, `(in + R) * 4H` (TensorFlow's kernel, which holds
/// both gate matrices) and `H * P` checked.
///
/// # Errors
/// [`Error::Config`] when one of them overflows `usize` (a spec whose weights could not
/// be held in memory anyway).
fn cell_dims(spec: &LstmSpec, k: usize) -> Result<CellDims> {
    let l = spec.cell_layer(k);
    let layer = spec.layers()[l];
    let (inp, r, h, p) = (
        spec.layer_input_size(l),
        layer.output_size(),
        layer.hidden_size,
        layer.proj_size,
    );
    let g = fits(h.checked_mul(4), || {
        format!("cell {k}: 4 * hidden_size (4 * {h})")
    })?;
    fits(
        inp.checked_add(r).and_then(|rows| rows.checked_mul(g)),
        || format!("cell {k}: the weights' size (input {inp} + recurrent {r}) * 4H ({g})"),
    )?;
    if let Some(p) = p {
        fits(h.checked_mul(p), || {
            format!("cell {k}: the projection's size {h} * {p}")
        })?;
    }
    Ok(CellDims { inp, r, h, p, g })
}

/// [`Error::Config`] when `t` holds `name`, a tensor of a model other than `spec`'s
/// (`why` says how it differs): loading the rest would silently drop it.
fn refuse_unused(t: &Tensors, name: &str, why: &str) -> Result<()> {
    if t.contains(name) {
        return Err(Error::Config(format!(
            "tensor `{name}` is in the file but {why}: the file holds another model"
        )));
    }
    Ok(())
}

/// The bias tensors `names` (of shape `shape`) of one cell: every one of them, or none
/// when all are absent and `options` allows it.
fn cell_biases<'t>(
    t: &'t Tensors,
    names: &[String],
    shape: &[usize],
    options: LoadOptions,
) -> Result<Vec<&'t [f32]>> {
    if options.allow_missing_bias && names.iter().all(|n| !t.contains(n)) {
        return Ok(Vec::new());
    }
    names.iter().map(|n| t.f32_shaped(n, shape)).collect()
}

/// Copies an external gate matrix into the canonical `[rows, 4H]` i, j, f, o layout.
fn import_gates(
    name: &str,
    m: Matrix<'_>,
    order: GateOrder,
    rows: usize,
    h: usize,
) -> Result<Vec<f32>> {
    let n = fits(h.checked_mul(4), || format!("{name}: 4 * {h}"))?;
    let len = fits(rows.checked_mul(n), || format!("{name}: {rows} * {n}"))?;
    if m.data.len() != len {
        let expected = match m.layout {
            Layout::InputMajor => [rows, n],
            Layout::OutputMajor => [n, rows],
        };
        return Err(Error::Shape {
            tensor: name.to_string(),
            expected: format!("{expected:?} ({len} elements)"),
            actual: format!("{} elements", m.data.len()),
        });
    }
    let blocks = order.blocks();
    let mut out = vec![0.0; len];
    for r in 0..rows {
        for (g, &src_block) in blocks.iter().enumerate() {
            for u in 0..h {
                let src_col = src_block * h + u;
                out[r * n + g * h + u] = match m.layout {
                    Layout::InputMajor => m.data[r * n + src_col],
                    Layout::OutputMajor => m.data[src_col * rows + r],
                };
            }
        }
    }
    Ok(out)
}

/// The inverse of [`import_gates`].
fn export_gates(w: &[f32], order: GateOrder, layout: Layout, rows: usize, h: usize) -> Vec<f32> {
    let n = 4 * h;
    let blocks = order.blocks();
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        for (g, &dst_block) in blocks.iter().enumerate() {
            for u in 0..h {
                let dst_col = dst_block * h + u;
                let v = w[r * n + g * h + u];
                match layout {
                    Layout::InputMajor => out[r * n + dst_col] = v,
                    Layout::OutputMajor => out[dst_col * rows + r] = v,
                }
            }
        }
    }
    out
}

fn reorder_vector(v: &[f32], from: GateOrder, to: GateOrder, h: usize) -> Vec<f32> {
    let (fb, tb) = (from.blocks(), to.blocks());
    let mut out = vec![0.0; 4 * h];
    for g in 0..4 {
        out[tb[g] * h..tb[g] * h + h].copy_from_slice(&v[fb[g] * h..fb[g] * h + h]);
    }
    out
}

/// The transpose of a row-major `[rows, cols]` matrix.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

fn check_len(name: &str, v: &[f32], n: usize) -> Result<()> {
    if v.len() != n {
        return Err(Error::shape(name, &[n], &[v.len()]));
    }
    Ok(())
}

/// Cheap deterministic uniform numbers (SplitMix64), for tests, benches and
/// initialisation; no dependency needed for that.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
    /// A vector of `n` uniform values in `[lo, hi)`.
    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

impl LstmWeights {
    /// All-zero weights for `spec`.
    ///
    /// # Panics
    /// When a cell of `spec` has more weights than `usize` can count (which no memory
    /// could hold).
    pub fn zeros(spec: &LstmSpec) -> Self {
        Self::filled(spec, |n| vec![0.0; n])
    }

    /// Weights uniform in `[-scale, scale]` from a seed (like TF's
    /// `random_uniform_initializer(-init_scale, init_scale)`), deterministic.
    ///
    /// # Panics
    /// As [`LstmWeights::zeros`].
    pub fn random_uniform(spec: &LstmSpec, scale: f32, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        Self::filled(spec, |n| rng.uniform_vec(n, -scale, scale))
    }

    fn filled(spec: &LstmSpec, mut fill: impl FnMut(usize) -> Vec<f32>) -> Self {
        let cells = (0..spec.num_cells())
            .map(|k| {
                // Checked: wrapping sizes would make weights of the wrong size.
                let d = cell_dims(spec, k).unwrap_or_else(|e| panic!("{e}"));
                CellWeights {
                    input_weights: fill(d.inp * d.g),
                    recurrent_weights: fill(d.r * d.g),
                    bias: fill(d.g),
                    peepholes: spec
                        .use_peepholes()
                        .then(|| [fill(d.h), fill(d.h), fill(d.h)]),
                    projection: d.p.map(|p| fill(d.h * p)),
                }
            })
            .collect();
        LstmWeights {
            spec: spec.clone(),
            cells,
        }
    }

    /// The spec these weights were validated against.
    pub fn spec(&self) -> &LstmSpec {
        &self.spec
    }

    /// The weights of cell `k` (layer `k / D`, direction `k % D`).
    ///
    /// # Panics
    /// If `k >= spec.num_cells()`.
    pub fn cell(&self, k: usize) -> &CellWeights {
        &self.cells[k]
    }

    /// Every tensor of every cell, mutably, in a fixed order (for optimisers).
    fn tensors_mut(&mut self) -> impl Iterator<Item = &mut Vec<f32>> {
        self.cells.iter_mut().flat_map(|c| {
            let mut v = vec![&mut c.input_weights, &mut c.recurrent_weights, &mut c.bias];
            if let Some([a, b, d]) = c.peepholes.as_mut() {
                v.extend([a, b, d]);
            }
            if let Some(p) = c.projection.as_mut() {
                v.push(p);
            }
            v
        })
    }

    /// Every tensor of every cell, in the order of `tensors_mut`.
    fn tensors_ref(&self) -> impl Iterator<Item = &Vec<f32>> {
        self.cells.iter().flat_map(|c| {
            let mut v = vec![&c.input_weights, &c.recurrent_weights, &c.bias];
            if let Some([a, b, d]) = c.peepholes.as_ref() {
                v.extend([a, b, d]);
            }
            if let Some(p) = c.projection.as_ref() {
                v.push(p);
            }
            v
        })
    }

    /// `self += alpha * other` element by element: an SGD step is
    /// `weights.add_scaled(&gradients, -learning_rate)`.
    ///
    /// # Errors
    /// [`Error::Config`] when `other` was made for another spec.
    pub fn add_scaled(&mut self, other: &LstmWeights, alpha: f32) -> Result<()> {
        if self.spec != other.spec {
            return Err(Error::Config(
                "add_scaled: the two weight sets have different specs".into(),
            ));
        }
        for (a, b) in self.tensors_mut().zip(other.tensors_ref()) {
            a.iter_mut().zip(b).for_each(|(x, &y)| *x += alpha * y);
        }
        Ok(())
    }

    /// Multiplies every element by `alpha` (gradient clipping).
    pub fn scale(&mut self, alpha: f32) {
        for a in self.tensors_mut() {
            a.iter_mut().for_each(|x| *x *= alpha);
        }
    }

    /// The sum of the squares of every element, in f64 (for global-norm clipping).
    pub fn sum_of_squares(&self) -> f64 {
        self.tensors_ref()
            .flat_map(|v| v.iter())
            .map(|&x| f64::from(x) * f64::from(x))
            .sum()
    }

    /// Sets every element to zero, keeping the buffers.
    pub fn fill_zero(&mut self) {
        for a in self.tensors_mut() {
            a.fill(0.0);
        }
    }

    /// Cell `k`'s tensors, mutably: (input, recurrent, bias, peepholes, projection).
    #[allow(clippy::type_complexity)]
    pub(crate) fn cell_parts_mut(
        &mut self,
        k: usize,
    ) -> (
        &mut [f32],
        &mut [f32],
        &mut [f32],
        Option<&mut [Vec<f32>; 3]>,
        Option<&mut Vec<f32>>,
    ) {
        let c = &mut self.cells[k];
        (
            &mut c.input_weights,
            &mut c.recurrent_weights,
            &mut c.bias,
            c.peepholes.as_mut(),
            c.projection.as_mut(),
        )
    }

    /// Replaces cell `k`'s tensors (already in the canonical layout and of the right
    /// sizes); for gradients, which share the weights' shapes.
    pub(crate) fn set_cell(
        &mut self,
        k: usize,
        input_weights: Vec<f32>,
        recurrent_weights: Vec<f32>,
        bias: Vec<f32>,
        peepholes: Option<[Vec<f32>; 3]>,
        projection: Option<Vec<f32>>,
    ) {
        let c = &self.cells[k];
        debug_assert_eq!(c.input_weights.len(), input_weights.len());
        debug_assert_eq!(c.recurrent_weights.len(), recurrent_weights.len());
        debug_assert_eq!(c.bias.len(), bias.len());
        self.cells[k] = CellWeights {
            input_weights,
            recurrent_weights,
            bias,
            peepholes,
            projection,
        };
    }

    /// Builds the weights from borrowed slices in any supported gate order and layout,
    /// one [`CellParams`] per cell.
    ///
    /// An empty [`CellParams::biases`] is a cell without bias (the caller said so; no
    /// tensor is looked up here).
    ///
    /// # Errors
    /// [`Error::Shape`] when the number of cells or any matrix or vector does not match
    /// the spec; [`Error::MissingTensor`] when peepholes or a projection the spec asks for
    /// are absent, [`Error::Config`] when ones it does not ask for are given or when the
    /// spec's sizes overflow `usize`.
    pub fn from_cells(spec: &LstmSpec, cells: &[CellParams<'_>]) -> Result<Self> {
        if cells.len() != spec.num_cells() {
            return Err(Error::shape("cells", &[spec.num_cells()], &[cells.len()]));
        }
        let mut out = Vec::with_capacity(cells.len());
        for (k, c) in cells.iter().enumerate() {
            let CellDims { inp, r, h, p, g } = cell_dims(spec, k)?;
            let name = |what: &str| format!("cell {k} {what}");
            let input_weights =
                import_gates(&name("input weights"), c.input, c.gate_order, inp, h)?;
            let recurrent_weights =
                import_gates(&name("recurrent weights"), c.recurrent, c.gate_order, r, h)?;
            let mut bias = vec![0.0; g];
            for (i, b) in c.biases.iter().enumerate() {
                check_len(&name(&format!("bias {i}")), b, g)?;
                let b = reorder_vector(b, c.gate_order, GateOrder::Ijfo, h);
                bias.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            }
            let peepholes = match (spec.use_peepholes(), c.peepholes) {
                (true, Some(pp)) => {
                    for (g, v) in ["w_i", "w_f", "w_o"].iter().zip(pp) {
                        check_len(&name(&format!("peephole {g}")), v, h)?;
                    }
                    Some(pp.map(|v| v.to_vec()))
                }
                (true, None) => return Err(Error::MissingTensor(name("peepholes"))),
                (false, Some(_)) => {
                    return Err(Error::Config(format!(
                        "{} given but the spec has no peepholes",
                        name("peepholes")
                    )))
                }
                (false, None) => None,
            };
            let projection = match (p, c.projection) {
                (Some(p), Some(m)) => {
                    let label = name("projection");
                    // h * p fits: cell_dims checked it.
                    if m.data.len() != h * p {
                        let expected = match m.layout {
                            Layout::InputMajor => [h, p],
                            Layout::OutputMajor => [p, h],
                        };
                        return Err(Error::Shape {
                            tensor: label,
                            expected: format!("{expected:?} ({} elements)", h * p),
                            actual: format!("{} elements", m.data.len()),
                        });
                    }
                    Some(match m.layout {
                        Layout::InputMajor => m.data.to_vec(),
                        Layout::OutputMajor => transpose(m.data, p, h),
                    })
                }
                (Some(_), None) => return Err(Error::MissingTensor(name("projection"))),
                (None, Some(_)) => {
                    return Err(Error::Config(format!(
                        "{} given but the layer has no projection",
                        name("projection")
                    )))
                }
                (None, None) => None,
            };
            out.push(CellWeights {
                input_weights,
                recurrent_weights,
                bias,
                peepholes,
                projection,
            });
        }
        Ok(LstmWeights {
            spec: spec.clone(),
            cells: out,
        })
    }

    /// Imports from named tensors in `convention` (see [`Convention`] for the names),
    /// strictly: [`LstmWeights::from_tensors_with`] with the default [`LoadOptions`], so
    /// every tensor the spec needs, biases included, must be present.
    ///
    /// # Errors
    /// As [`LstmWeights::from_tensors_with`].
    pub fn from_tensors(
        spec: &LstmSpec,
        tensors: &Tensors,
        convention: Convention,
    ) -> Result<Self> {
        Self::from_tensors_with(spec, tensors, convention, LoadOptions::default())
    }

    /// Imports from named tensors in `convention` (see [`Convention`] for the names),
    /// accepting what `options` allows to be absent (a bias-free model).
    ///
    /// Tensors that none of the spec's weights use are left alone (a file may hold inputs
    /// and expected outputs too), except those of a larger model: a layer or cell past the
    /// spec's last, the reverse direction of a unidirectional spec, peepholes or a
    /// projection the spec does not have. Those are an error, since loading the rest
    /// would run a model other than the file's.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] naming a tensor the spec needs that is absent (a bias only
    /// when `options` does not allow it, or when a PyTorch cell has one of its two);
    /// [`Error::Dtype`] or [`Error::Shape`] naming a tensor that is not `F32` of the
    /// shape the spec asks for; [`Error::Config`] when the convention cannot express the
    /// spec (Keras and ONNX have no projection, Keras and PyTorch no peepholes), when the
    /// file holds a tensor of a larger model (see above), or when the spec's sizes
    /// overflow `usize`.
    pub fn from_tensors_with(
        spec: &LstmSpec,
        tensors: &Tensors,
        convention: Convention,
        options: LoadOptions,
    ) -> Result<Self> {
        match convention {
            Convention::TensorFlow => Self::from_tensorflow(spec, tensors, options),
            Convention::PyTorch => Self::from_pytorch(spec, tensors, options),
            Convention::Keras => Self::from_keras(spec, tensors, options),
            Convention::Onnx => Self::from_onnx(spec, tensors, options),
        }
    }

    /// Reads a `.safetensors` file of weights in `convention`, strictly (see
    /// [`LstmWeights::from_tensors`]).
    ///
    /// # Errors
    /// As [`Tensors::load`] and [`LstmWeights::from_tensors`].
    pub fn load_safetensors(
        spec: &LstmSpec,
        path: impl AsRef<std::path::Path>,
        convention: Convention,
    ) -> Result<Self> {
        Self::load_safetensors_with(spec, path, convention, LoadOptions::default())
    }

    /// Reads a `.safetensors` file of weights in `convention`, accepting what `options`
    /// allows to be absent (see [`LstmWeights::from_tensors_with`]).
    ///
    /// # Errors
    /// As [`Tensors::load`] and [`LstmWeights::from_tensors_with`].
    pub fn load_safetensors_with(
        spec: &LstmSpec,
        path: impl AsRef<std::path::Path>,
        convention: Convention,
        options: LoadOptions,
    ) -> Result<Self> {
        Self::from_tensors_with(spec, &Tensors::load(path)?, convention, options)
    }

    /// The TensorFlow and Keras names of cell `k`'s tensors, `layers/{k}/{what}`.
    fn cell_name(k: usize, what: &str) -> String {
        format!("layers/{k}/{what}")
    }

    /// The error for a file with a cell (TensorFlow, Keras) past the spec's last.
    fn refuse_cells_past_the_spec(spec: &LstmSpec, t: &Tensors) -> Result<()> {
        let n = spec.num_cells();
        refuse_unused(
            t,
            &Self::cell_name(n, "kernel"),
            &format!("the spec has {n} cells (layers x directions)"),
        )
    }

    fn from_tensorflow(spec: &LstmSpec, t: &Tensors, options: LoadOptions) -> Result<Self> {
        Self::refuse_cells_past_the_spec(spec, t)?;
        let mut kernels = Vec::new();
        for k in 0..spec.num_cells() {
            let d = cell_dims(spec, k)?;
            let name = |what: &str| Self::cell_name(k, what);
            // inp + r fits: cell_dims checked (inp + r) * 4H.
            let kernel = t.f32_shaped(&name("kernel"), &[d.inp + d.r, d.g])?;
            let biases = cell_biases(t, &[name("bias")], &[d.g], options)?;
            let peepholes = if spec.use_peepholes() {
                let get = |g: &str| t.f32_shaped(&name(&format!("w_{g}_diag")), &[d.h]);
                Some([get("i")?, get("f")?, get("o")?])
            } else {
                for g in ["i", "f", "o"] {
                    refuse_unused(
                        t,
                        &name(&format!("w_{g}_diag")),
                        "the spec has no peepholes",
                    )?;
                }
                None
            };
            let projection = match d.p {
                Some(p) => Some(t.f32_shaped(&name("projection"), &[d.h, p])?),
                None => {
                    refuse_unused(
                        t,
                        &name("projection"),
                        &format!("layer {} of the spec has no projection", spec.cell_layer(k)),
                    )?;
                    None
                }
            };
            kernels.push((kernel, d, biases, peepholes, projection));
        }
        let cells: Vec<CellParams<'_>> = kernels
            .into_iter()
            .map(|(kernel, d, biases, peepholes, projection)| {
                // The kernel is [inp + r, 4H]: its first inp rows are the input weights.
                let split = d.inp * d.g;
                CellParams {
                    gate_order: GateOrder::Ijfo,
                    input: Matrix {
                        data: &kernel[..split],
                        layout: Layout::InputMajor,
                    },
                    recurrent: Matrix {
                        data: &kernel[split..],
                        layout: Layout::InputMajor,
                    },
                    biases,
                    peepholes,
                    projection: projection.map(|data| Matrix {
                        data,
                        layout: Layout::InputMajor,
                    }),
                }
            })
            .collect();
        Self::from_cells(spec, &cells)
    }

    fn pytorch_suffix(spec: &LstmSpec, k: usize) -> String {
        let l = spec.cell_layer(k);
        if k % spec.num_directions() == 1 {
            format!("l{l}_reverse")
        } else {
            format!("l{l}")
        }
    }

    fn from_pytorch(spec: &LstmSpec, t: &Tensors, options: LoadOptions) -> Result<Self> {
        if spec.use_peepholes() {
            return Err(Error::Config(
                "the PyTorch convention has no peepholes".into(),
            ));
        }
        let layers = spec.num_layers();
        refuse_unused(
            t,
            &format!("weight_ih_l{layers}"),
            &format!("the spec has {layers} layers"),
        )?;
        if !spec.bidirectional() {
            for l in 0..layers {
                refuse_unused(
                    t,
                    &format!("weight_ih_l{l}_reverse"),
                    "the spec is unidirectional",
                )?;
            }
        }
        let mut cells = Vec::new();
        for k in 0..spec.num_cells() {
            let d = cell_dims(spec, k)?;
            let s = Self::pytorch_suffix(spec, k);
            let w_ih = t.f32_shaped(&format!("weight_ih_{s}"), &[d.g, d.inp])?;
            let w_hh = t.f32_shaped(&format!("weight_hh_{s}"), &[d.g, d.r])?;
            // nn.LSTM(bias=False) has neither bias; every other nn.LSTM has both.
            let biases = cell_biases(
                t,
                &[format!("bias_ih_{s}"), format!("bias_hh_{s}")],
                &[d.g],
                options,
            )?;
            let projection = match d.p {
                Some(p) => Some(t.f32_shaped(&format!("weight_hr_{s}"), &[p, d.h])?),
                None => {
                    refuse_unused(
                        t,
                        &format!("weight_hr_{s}"),
                        &format!("layer {} of the spec has no projection", spec.cell_layer(k)),
                    )?;
                    None
                }
            };
            cells.push(CellParams {
                gate_order: GateOrder::Ifgo,
                input: Matrix {
                    data: w_ih,
                    layout: Layout::OutputMajor,
                },
                recurrent: Matrix {
                    data: w_hh,
                    layout: Layout::OutputMajor,
                },
                biases,
                peepholes: None,
                projection: projection.map(|data| Matrix {
                    data,
                    layout: Layout::OutputMajor,
                }),
            });
        }
        Self::from_cells(spec, &cells)
    }

    fn from_keras(spec: &LstmSpec, t: &Tensors, options: LoadOptions) -> Result<Self> {
        if spec.use_peepholes() || spec.layers().iter().any(|l| l.proj_size.is_some()) {
            return Err(Error::Config(
                "the Keras convention has no peepholes and no projection".into(),
            ));
        }
        Self::refuse_cells_past_the_spec(spec, t)?;
        let mut cells = Vec::new();
        for k in 0..spec.num_cells() {
            let d = cell_dims(spec, k)?;
            let name = |what: &str| Self::cell_name(k, what);
            let kernel = t.f32_shaped(&name("kernel"), &[d.inp, d.g])?;
            let rec = t.f32_shaped(&name("recurrent_kernel"), &[d.r, d.g])?;
            // LSTM(use_bias=False) has no bias.
            let biases = cell_biases(t, &[name("bias")], &[d.g], options)?;
            cells.push(CellParams {
                gate_order: GateOrder::Ifgo,
                input: Matrix {
                    data: kernel,
                    layout: Layout::InputMajor,
                },
                recurrent: Matrix {
                    data: rec,
                    layout: Layout::InputMajor,
                },
                biases,
                peepholes: None,
                projection: None,
            });
        }
        Self::from_cells(spec, &cells)
    }

    fn from_onnx(spec: &LstmSpec, t: &Tensors, options: LoadOptions) -> Result<Self> {
        if spec.layers().iter().any(|l| l.proj_size.is_some()) {
            return Err(Error::Config("the ONNX LSTM has no projection".into()));
        }
        let layers = spec.num_layers();
        refuse_unused(
            t,
            &format!("layers/{layers}/W"),
            &format!("the spec has {layers} layers"),
        )?;
        let nd = spec.num_directions();
        // Peepholes in ONNX order i, o, f, reordered below to the crate's w_i, w_f, w_o.
        let mut per_cell = Vec::new();
        for l in 0..layers {
            // The cells of a layer have the same sizes: those of its first.
            let d = cell_dims(spec, l * nd)?;
            let (h, inp) = (d.h, d.inp);
            // The per-direction sizes fit (cell_dims checked (inp + h) * 4H); the
            // 8H and 3H of B and P are at most 2 * 4H.
            let (w_len, r_len) = (d.g * inp, d.g * h);
            let b_len = fits(d.g.checked_mul(2), || format!("layer {l}: 8 * {h}"))?;
            let p_len = 3 * h;
            let w = t.f32_shaped(&format!("layers/{l}/W"), &[nd, d.g, inp])?;
            let r = t.f32_shaped(&format!("layers/{l}/R"), &[nd, d.g, h])?;
            let b = cell_biases(t, &[format!("layers/{l}/B")], &[nd, b_len], options)?;
            let p = if spec.use_peepholes() {
                Some(t.f32_shaped(&format!("layers/{l}/P"), &[nd, p_len])?)
            } else {
                refuse_unused(t, &format!("layers/{l}/P"), "the spec has no peepholes")?;
                None
            };
            for dir in 0..nd {
                let biases = b
                    .first()
                    .map(|b| {
                        let b = &b[dir * b_len..(dir + 1) * b_len];
                        vec![&b[..d.g], &b[d.g..]]
                    })
                    .unwrap_or_default();
                let peepholes = p.map(|p| {
                    let p = &p[dir * p_len..(dir + 1) * p_len];
                    [&p[..h], &p[2 * h..], &p[h..2 * h]]
                });
                per_cell.push(CellParams {
                    gate_order: GateOrder::Iofc,
                    input: Matrix {
                        data: &w[dir * w_len..(dir + 1) * w_len],
                        layout: Layout::OutputMajor,
                    },
                    recurrent: Matrix {
                        data: &r[dir * r_len..(dir + 1) * r_len],
                        layout: Layout::OutputMajor,
                    },
                    biases,
                    peepholes,
                    projection: None,
                });
            }
        }
        Self::from_cells(spec, &per_cell)
    }

    /// Exports under the TensorFlow convention's names (see [`Convention::TensorFlow`]).
    pub fn to_tensorflow(&self) -> Tensors {
        let mut t = Tensors::new();
        for (k, c) in self.cells.iter().enumerate() {
            // The weights exist, so their sizes fit: cell_dims cannot fail here.
            let CellDims { inp, r, h, p, .. } =
                cell_dims(&self.spec, k).expect("existing weights' sizes fit usize");
            let mut kernel = c.input_weights.clone();
            kernel.extend_from_slice(&c.recurrent_weights);
            let put = |t: &mut Tensors, name: String, shape: &[usize], v: Vec<f32>| {
                t.insert_f32(&name, shape, v)
                    .expect("shapes follow the spec");
            };
            put(
                &mut t,
                format!("layers/{k}/kernel"),
                &[inp + r, 4 * h],
                kernel,
            );
            put(&mut t, format!("layers/{k}/bias"), &[4 * h], c.bias.clone());
            if let Some([wi, wf, wo]) = &c.peepholes {
                put(&mut t, format!("layers/{k}/w_i_diag"), &[h], wi.clone());
                put(&mut t, format!("layers/{k}/w_f_diag"), &[h], wf.clone());
                put(&mut t, format!("layers/{k}/w_o_diag"), &[h], wo.clone());
            }
            if let (Some(p), Some(proj)) = (p, &c.projection) {
                put(
                    &mut t,
                    format!("layers/{k}/projection"),
                    &[h, p],
                    proj.clone(),
                );
            }
        }
        t
    }

    /// Exports under `torch.nn.LSTM.state_dict()` names.
    ///
    /// PyTorch has one bias where the crate keeps their sum: `bias_ih` gets the whole bias
    /// and `bias_hh` zeros. PyTorch has no `forget_bias`: a non-zero one is folded into
    /// `bias_ih`'s forget block, so the exported module computes the same function (import
    /// it back with `forget_bias` 0).
    ///
    /// # Errors
    /// [`Error::Config`] when the spec has peepholes, `cell_clip` or `proj_clip`, which
    /// PyTorch cannot express.
    pub fn to_pytorch(&self) -> Result<Tensors> {
        self.pytorch_tensors(false)
    }

    /// The PyTorch export of a set of weights, or (`gradients`) of gradients shaped like
    /// weights: then nothing is folded and both biases get the bias gradient, since
    /// `dL/d(bias_ih) = dL/d(bias_hh) = dL/d(bias)`.
    pub(crate) fn pytorch_tensors(&self, gradients: bool) -> Result<Tensors> {
        if self.spec.use_peepholes() || self.spec.cell_clip().is_some() {
            return Err(Error::Config(
                "PyTorch's nn.LSTM has no peepholes and no cell_clip".into(),
            ));
        }
        if self.spec.proj_clip().is_some()
            && self.spec.layers().iter().any(|l| l.proj_size.is_some())
        {
            return Err(Error::Config("PyTorch's nn.LSTM has no proj_clip".into()));
        }
        let mut t = Tensors::new();
        for (k, c) in self.cells.iter().enumerate() {
            let CellDims { inp, r, h, p, .. } = cell_dims(&self.spec, k)?;
            let s = Self::pytorch_suffix(&self.spec, k);
            let put = |t: &mut Tensors, name: String, shape: &[usize], v: Vec<f32>| {
                t.insert_f32(&name, shape, v)
                    .expect("shapes follow the spec");
            };
            let w_ih = export_gates(
                &c.input_weights,
                GateOrder::Ifgo,
                Layout::OutputMajor,
                inp,
                h,
            );
            let w_hh = export_gates(
                &c.recurrent_weights,
                GateOrder::Ifgo,
                Layout::OutputMajor,
                r,
                h,
            );
            let mut bias = c.bias.clone();
            if !gradients {
                bias[2 * h..3 * h]
                    .iter_mut()
                    .for_each(|b| *b += self.spec.forget_bias());
            }
            let bias = reorder_vector(&bias, GateOrder::Ijfo, GateOrder::Ifgo, h);
            let bias_hh = if gradients {
                bias.clone()
            } else {
                vec![0.0; 4 * h]
            };
            put(&mut t, format!("weight_ih_{s}"), &[4 * h, inp], w_ih);
            put(&mut t, format!("weight_hh_{s}"), &[4 * h, r], w_hh);
            put(&mut t, format!("bias_ih_{s}"), &[4 * h], bias);
            put(&mut t, format!("bias_hh_{s}"), &[4 * h], bias_hh);
            if let (Some(p), Some(proj)) = (p, &c.projection) {
                put(
                    &mut t,
                    format!("weight_hr_{s}"),
                    &[p, h],
                    transpose(proj, h, p),
                );
            }
        }
        Ok(t)
    }
}

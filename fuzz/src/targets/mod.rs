//! The targets, and what several of them share: the spec header of the `weights`
//! target, the ISAs a case may force, tensor comparison, and weights written in each
//! framework's convention.

use std::sync::OnceLock;

use lstm_kernels::{Convention, Isa, LstmSpec, LstmWeights, SplitMix64, TensorData, Tensors};

use crate::rng::Rng;
use crate::st::{StFile, StTensor};
use crate::values;

pub mod api;
pub mod checkpoint;
pub mod golden;
pub mod ptb;
pub mod weights;

/// The ISAs a case may force: every ISA of this CPU, or only "whatever
/// `LSTM_KERNELS_ISA` says" (`None`) when that variable is set (under valgrind, which
/// has no AVX-512, the runs set it to `avx2` or `scalar`).
pub fn isa_choices() -> &'static [Option<Isa>] {
    static CHOICES: OnceLock<Vec<Option<Isa>>> = OnceLock::new();
    CHOICES.get_or_init(|| {
        if std::env::var_os("LSTM_KERNELS_ISA").is_some_and(|v| !v.is_empty()) {
            vec![None]
        } else {
            lstm_kernels::available_isas()
                .into_iter()
                .map(Some)
                .collect()
        }
    })
}

/// The ISA of choice `index` (wrapping).
pub fn isa(index: u8) -> Option<Isa> {
    let c = isa_choices();
    c[index as usize % c.len()]
}

/// Whether two floats are the same value for a round trip: equal, both NaN (a NaN's
/// payload and quiet bit may change through arithmetic), or zeros of either sign.
pub fn same_value(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Whether two tensor maps hold the same F32 and I32 tensors (values compared with
/// [`same_value`]) and the same metadata.
pub fn same_tensors(a: &Tensors, b: &Tensors) -> Result<(), String> {
    let keep = |t: &Tensors| -> Vec<String> {
        t.names()
            .filter(|n| !matches!(t.get(n).map(|x| &x.data), Some(TensorData::Other(_))))
            .map(str::to_string)
            .collect()
    };
    let (na, nb) = (keep(a), keep(b));
    if na != nb {
        return Err(format!("names differ: {na:?} vs {nb:?}"));
    }
    for n in &na {
        let (x, y) = (a.get(n).expect("listed"), b.get(n).expect("listed"));
        if x.shape != y.shape {
            return Err(format!("`{n}`: shape {:?} vs {:?}", x.shape, y.shape));
        }
        let same = match (&x.data, &y.data) {
            (TensorData::F32(u), TensorData::F32(v)) => {
                u.len() == v.len() && u.iter().zip(v).all(|(&p, &q)| same_value(p, q))
            }
            (TensorData::I32(u), TensorData::I32(v)) => u == v,
            _ => false,
        };
        if !same {
            return Err(format!("`{n}`: data differs"));
        }
    }
    if a.metadata() != b.metadata() {
        return Err("metadata differs".into());
    }
    Ok(())
}

/// The fixed-size header of a `weights` input: the convention and the spec the file
/// is read against. Bytes past the end of the input read as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecHeader {
    /// Convention, `% 4`: TensorFlow, PyTorch, Keras, ONNX.
    pub convention: u8,
    /// Input size.
    pub input: u8,
    /// Layers, `% 4` (0 makes the builder fail).
    pub layers: u8,
    /// Hidden sizes of the (up to three) layers.
    pub hidden: [u8; 3],
    /// Projections: 0 none, `v` a projection of `v - 1` (so 1 is the invalid 0).
    pub proj: [u8; 3],
    /// Bits: 1 peepholes, 2 bidirectional, 4 time-major, 8 cell clip, 16 projection
    /// clip, 32 forget bias given.
    pub flags: u8,
    /// Cell clip, forget bias and projection clip: indexes into [`values::FLOATS`].
    pub cell_clip: u8,
    /// See `cell_clip`.
    pub proj_clip: u8,
    /// See `cell_clip`.
    pub forget_bias: u8,
}

impl SpecHeader {
    /// Bytes of the header.
    pub const LEN: usize = 13;

    /// Reads the header from the first bytes of `data`.
    pub fn decode(data: &[u8]) -> Self {
        let b = |i: usize| data.get(i).copied().unwrap_or(0);
        SpecHeader {
            convention: b(0),
            input: b(1),
            layers: b(2),
            hidden: [b(3), b(4), b(5)],
            proj: [b(6), b(7), b(8)],
            flags: b(9),
            cell_clip: b(10),
            proj_clip: b(11),
            forget_bias: b(12),
        }
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        [
            self.convention,
            self.input,
            self.layers,
            self.hidden[0],
            self.hidden[1],
            self.hidden[2],
            self.proj[0],
            self.proj[1],
            self.proj[2],
            self.flags,
            self.cell_clip,
            self.proj_clip,
            self.forget_bias,
        ]
    }

    /// The convention.
    pub fn convention(&self) -> Convention {
        CONVENTIONS[self.convention as usize % 4]
    }

    /// The spec (the builder's error when the header's values are invalid).
    pub fn build(&self) -> lstm_kernels::Result<LstmSpec> {
        let n = (self.layers % 4) as usize;
        let hidden: Vec<usize> = self.hidden[..n].iter().map(|&h| h as usize).collect();
        let proj: Vec<Option<usize>> = self.proj[..n]
            .iter()
            .map(|&p| (p > 0).then(|| p as usize - 1))
            .collect();
        let f = self.flags;
        let mut b = LstmSpec::builder(self.input as usize, &hidden)
            .peepholes(f & 1 != 0)
            .bidirectional(f & 2 != 0)
            .time_major(f & 4 != 0);
        if proj.iter().any(Option::is_some) {
            b = b.proj_sizes(&proj);
        }
        if f & 8 != 0 {
            b = b.cell_clip(values::float(self.cell_clip));
        }
        if f & 16 != 0 {
            b = b.proj_clip(values::float(self.proj_clip));
        }
        if f & 32 != 0 {
            b = b.forget_bias(values::float(self.forget_bias));
        }
        b.build()
    }

    /// A header for `spec` read in `convention` (clip values approximated: the loaders
    /// do not look at them).
    pub fn of_spec(spec: &LstmSpec, convention: Convention) -> Self {
        let mut h = SpecHeader {
            convention: CONVENTIONS
                .iter()
                .position(|&c| c == convention)
                .expect("one of the four") as u8,
            input: spec.input_size().min(255) as u8,
            layers: spec.num_layers().min(3) as u8,
            ..Default::default()
        };
        for (l, layer) in spec.layers().iter().take(3).enumerate() {
            h.hidden[l] = layer.hidden_size.min(255) as u8;
            h.proj[l] = layer.proj_size.map_or(0, |p| (p + 1).min(255) as u8);
        }
        h.flags = u8::from(spec.use_peepholes())
            | u8::from(spec.bidirectional()) << 1
            | u8::from(spec.time_major()) << 2
            | u8::from(spec.cell_clip().is_some()) << 3
            | u8::from(spec.proj_clip().is_some()) << 4;
        h.cell_clip = 2; // 1.0
        h.proj_clip = 2;
        h
    }

    /// A random header of small, mostly valid sizes.
    pub fn random_small(rng: &mut Rng) -> Self {
        let small = |rng: &mut Rng| rng.range(1, 8) as u8;
        let mut h = SpecHeader {
            convention: rng.below(4) as u8,
            input: small(rng),
            layers: rng.range(1, 3) as u8,
            hidden: [small(rng), small(rng), small(rng)],
            flags: rng.u64() as u8 & 0x3f,
            cell_clip: 2,
            proj_clip: 2,
            forget_bias: rng.below(values::FLOATS.len()) as u8,
            ..Default::default()
        };
        for p in &mut h.proj {
            if rng.chance(1, 3) {
                *p = rng.range(2, 8) as u8;
            }
        }
        if rng.chance(1, 8) {
            // An invalid value now and then: a zero size, a bad clip.
            match rng.below(3) {
                0 => h.input = 0,
                1 => h.hidden[0] = 0,
                _ => h.cell_clip = rng.u64() as u8,
            }
        }
        h
    }
}

/// The four conventions in header order.
pub const CONVENTIONS: [Convention; 4] = [
    Convention::TensorFlow,
    Convention::PyTorch,
    Convention::Keras,
    Convention::Onnx,
];

/// Every tensor name a convention uses for `spec` (for renames).
pub fn convention_names(spec: &LstmSpec) -> Vec<String> {
    let mut names = Vec::new();
    for k in 0..spec.num_cells() {
        for s in [
            "kernel",
            "bias",
            "recurrent_kernel",
            "projection",
            "w_i_diag",
            "w_f_diag",
            "w_o_diag",
        ] {
            names.push(format!("layers/{k}/{s}"));
        }
        for s in ["W", "R", "B", "P"] {
            names.push(format!("layers/{k}/{s}"));
        }
        let l = spec.cell_layer(k);
        for s in ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"] {
            names.push(format!("{s}_l{l}"));
            names.push(format!("{s}_l{l}_reverse"));
        }
    }
    names
}

/// Random weights for `spec` written in `convention`'s names and shapes (as far as the
/// convention can express the spec: what it cannot is left out, which the loader must
/// then report).
pub fn weights_file(spec: &LstmSpec, convention: Convention, seed: u64) -> StFile {
    let w = LstmWeights::random_uniform(spec, 0.5, seed);
    match convention {
        Convention::TensorFlow => StFile::from_tensors(&w.to_tensorflow()),
        Convention::PyTorch => match w.to_pytorch() {
            Ok(t) => StFile::from_tensors(&t),
            Err(_) => StFile::from_tensors(&w.to_tensorflow()),
        },
        Convention::Keras | Convention::Onnx => {
            // The canonical layout is TF's; Keras and ONNX differ in gate order and
            // layout, which does not matter for the loader's shape checks: random values.
            let mut rng = SplitMix64::new(seed);
            let mut f = StFile::default();
            let d = spec.num_directions();
            for l in 0..spec.num_layers() {
                let h = spec.layers()[l].hidden_size;
                let inp = spec.layer_input_size(l);
                let r = spec.layers()[l].output_size();
                let mut put = |name: String, shape: &[usize]| {
                    let n: usize = shape.iter().product();
                    f.put(StTensor::f32(&name, shape, &rng.uniform_vec(n, -0.5, 0.5)));
                };
                if convention == Convention::Keras {
                    for dir in 0..d {
                        let k = l * d + dir;
                        put(format!("layers/{k}/kernel"), &[inp, 4 * h]);
                        put(format!("layers/{k}/recurrent_kernel"), &[r, 4 * h]);
                        put(format!("layers/{k}/bias"), &[4 * h]);
                    }
                } else {
                    put(format!("layers/{l}/W"), &[d, 4 * h, inp]);
                    put(format!("layers/{l}/R"), &[d, 4 * h, r]);
                    put(format!("layers/{l}/B"), &[d, 8 * h]);
                    if spec.use_peepholes() {
                        put(format!("layers/{l}/P"), &[d, 3 * h]);
                    }
                }
            }
            f
        }
    }
}

/// A fixture parsed once per process: its tensors as a [`StFile`] and, when it is a
/// golden case, its spec and convention.
#[derive(Debug, Clone)]
pub struct ParsedFixture {
    /// The file in parts.
    pub file: StFile,
    /// The golden case's spec and convention.
    pub case: Option<(LstmSpec, Convention)>,
}

/// The corpus's `.safetensors` files, parsed (those that parse), cached for the process.
pub fn parsed_fixtures(corpus: &crate::Corpus) -> &'static [ParsedFixture] {
    static PARSED: OnceLock<Vec<ParsedFixture>> = OnceLock::new();
    PARSED.get_or_init(|| {
        corpus
            .safetensors
            .iter()
            .filter_map(|(name, bytes)| {
                let t = Tensors::from_bytes(bytes).ok()?;
                let case = lstm_kernels::golden::GoldenCase::from_tensors(name.clone(), t.clone())
                    .ok()
                    .map(|c| (c.spec, c.convention));
                Some(ParsedFixture {
                    file: StFile::from_tensors(&t),
                    case,
                })
            })
            .collect()
    })
}

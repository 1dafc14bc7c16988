//! The benchmark suite (the shared `BENCH_SHAPES.md`): names, shapes, inputs and the FLOP
//! count, used by the criterion benches and the `bench` example alike.

use crate::api::input::{ForwardInput, InitialState};
use crate::api::lstm::Lstm;
use crate::api::options::LstmOptions;
use crate::api::workspace::Workspace;
use crate::model::error::Result;
use crate::model::spec::LstmSpec;
use crate::model::weights::{LstmWeights, SplitMix64};

/// What a shape measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Inference forward.
    Forward,
    /// Forward-training plus backward (the language-model shape: one whole SGD step).
    Train,
}

impl Work {
    /// `forward` or `train`.
    pub fn name(self) -> &'static str {
        match self {
            Work::Forward => "forward",
            Work::Train => "train",
        }
    }
}

/// One shape of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchShape {
    /// The suite's name for it.
    pub name: &'static str,
    /// `(input, hidden)` of each layer, bottom first (a layer's input is the width of
    /// the one below's output: `2H` when bidirectional, `P` when projected).
    pub layers: &'static [(usize, usize)],
    /// Batch size `B`.
    pub batch: usize,
    /// Time steps `T` of one call (the longest length for `varlen`).
    pub steps: usize,
    /// The works it is measured for.
    pub works: &'static [Work],
    /// Whether lengths vary (`len[i] = 1 + (i * 37 + 11) % T`).
    pub varlen: bool,
    /// Both directions in every layer.
    pub bidirectional: bool,
    /// Every layer's projection width (`proj_size`), if any.
    pub proj: Option<usize>,
    /// Streaming: one repetition is this many calls of `T` steps, each starting from the
    /// state the previous left (`InitialState::Carry`); 0 is one call.
    pub stream_calls: usize,
}

/// The fields every shape shares unless it says otherwise.
const PLAIN: BenchShape = BenchShape {
    name: "",
    layers: &[],
    batch: 0,
    steps: 0,
    works: &[Work::Forward],
    varlen: false,
    bidirectional: false,
    proj: None,
    stream_calls: 0,
};

/// Every shape of the suite, in its order: the main table, then the serving shapes.
pub const SHAPES: &[BenchShape] = &[
    BenchShape {
        name: "seed-ptb",
        layers: &[(200, 256), (256, 128)],
        batch: 60,
        steps: 20,
        works: &[Work::Forward, Work::Train],
        ..PLAIN
    },
    BenchShape {
        name: "infer-b1-h512",
        layers: &[(512, 512)],
        batch: 1,
        steps: 25,
        ..PLAIN
    },
    BenchShape {
        name: "infer-b8-h256-t100",
        layers: &[(256, 256)],
        batch: 8,
        steps: 100,
        ..PLAIN
    },
    BenchShape {
        name: "infer-b64-h1024",
        layers: &[(1024, 1024)],
        batch: 64,
        steps: 25,
        ..PLAIN
    },
    BenchShape {
        name: "train-b32-h512",
        layers: &[(512, 512)],
        batch: 32,
        steps: 25,
        works: &[Work::Train],
        ..PLAIN
    },
    BenchShape {
        name: "varlen-b64-h512",
        layers: &[(512, 512)],
        batch: 64,
        steps: 100,
        varlen: true,
        ..PLAIN
    },
    BenchShape {
        name: "seed-ptb-lm",
        layers: &[(200, 256), (256, 128)],
        batch: 60,
        steps: 20,
        works: &[Work::Train],
        ..PLAIN
    },
    BenchShape {
        name: "stream-b1-h512-t1",
        layers: &[(128, 512)],
        batch: 1,
        steps: 1,
        stream_calls: 50,
        ..PLAIN
    },
    BenchShape {
        name: "small-b4-h128-t100",
        layers: &[(64, 128), (128, 128)],
        batch: 4,
        steps: 100,
        ..PLAIN
    },
    BenchShape {
        name: "bidir-b16-h384-t60",
        layers: &[(160, 384)],
        batch: 16,
        steps: 60,
        bidirectional: true,
        ..PLAIN
    },
    BenchShape {
        name: "lstmp-b8-h768p192-t80",
        layers: &[(80, 768), (192, 768)],
        batch: 8,
        steps: 80,
        proj: Some(192),
        ..PLAIN
    },
];

/// Shapes outside the suite, so that no change is tuned to the suite's list alone: other
/// batch sizes, widths (some not a multiple of any tile), depths, directions, lengths and
/// streaming patterns. `--shape off-suite` in the runner and in `benches/peers` (whose
/// `shapes.py` lists the same).
pub const OFF_SUITE: &[BenchShape] = &[
    BenchShape {
        name: "x-b2-h64-t50",
        layers: &[(32, 64)],
        batch: 2,
        steps: 50,
        ..PLAIN
    },
    BenchShape {
        name: "x-b32-h256x3-t35",
        layers: &[(128, 256), (256, 256), (256, 256)],
        batch: 32,
        steps: 35,
        works: &[Work::Forward, Work::Train],
        ..PLAIN
    },
    BenchShape {
        name: "x-b128-h128-t20",
        layers: &[(128, 128)],
        batch: 128,
        steps: 20,
        ..PLAIN
    },
    BenchShape {
        name: "x-b4-h1024-t10",
        layers: &[(256, 1024)],
        batch: 4,
        steps: 10,
        ..PLAIN
    },
    BenchShape {
        name: "x-varlen-b24-h200-t64",
        layers: &[(100, 200)],
        batch: 24,
        steps: 64,
        varlen: true,
        ..PLAIN
    },
    BenchShape {
        name: "x-stream-b16-h256x2-t1",
        layers: &[(128, 256), (256, 256)],
        batch: 16,
        steps: 1,
        stream_calls: 20,
        ..PLAIN
    },
    BenchShape {
        name: "x-bidir-b4-h128x2-t100",
        layers: &[(64, 128), (256, 128)],
        batch: 4,
        steps: 100,
        bidirectional: true,
        ..PLAIN
    },
    BenchShape {
        name: "x-lstmp-b1-h512p128-t30",
        layers: &[(64, 512)],
        batch: 1,
        steps: 30,
        proj: Some(128),
        ..PLAIN
    },
    BenchShape {
        name: "x-train-b16-h384-t50",
        layers: &[(192, 384)],
        batch: 16,
        steps: 50,
        works: &[Work::Train],
        ..PLAIN
    },
];

impl BenchShape {
    /// The shape called `name`, in the suite or off it.
    pub fn by_name(name: &str) -> Option<&'static BenchShape> {
        SHAPES.iter().chain(OFF_SUITE).find(|s| s.name == name)
    }

    /// Per-sequence lengths.
    pub fn lengths(&self) -> Vec<i32> {
        (0..self.batch)
            .map(|i| {
                if self.varlen {
                    1 + ((i * 37 + 11) % self.steps) as i32
                } else {
                    self.steps as i32
                }
            })
            .collect()
    }

    /// Sequence steps that do real work in one repetition: `B x T` (times the calls of a
    /// streaming shape), or `sum(len)`.
    pub fn real_steps(&self) -> usize {
        let per_call: usize = self.lengths().iter().map(|&l| l as usize).sum();
        per_call * self.stream_calls.max(1)
    }

    /// FLOPs of one repetition as the suite counts them: a multiply-add is 2; a layer's
    /// forward is `2 * 4H * (I + R)` per real sequence step and direction (`R` the
    /// recurrent width: `P` with a projection, which adds `2 * H * P`); training is 3x
    /// forward (for the language-model shape, only the LSTM stack's training FLOPs).
    pub fn flops(&self, work: Work) -> f64 {
        let dirs = if self.bidirectional { 2 } else { 1 };
        let per_step: usize = self
            .layers
            .iter()
            .map(|&(i, h)| {
                let r = self.proj.unwrap_or(h);
                dirs * (2 * 4 * h * (i + r) + self.proj.map_or(0, |p| 2 * h * p))
            })
            .sum();
        let forward = (per_step * self.real_steps()) as f64;
        match work {
            Work::Forward => forward,
            Work::Train => 3.0 * forward,
        }
    }

    /// The stack's spec (PyTorch-like: forget_bias 0, batch-major).
    ///
    /// # Panics
    /// Never for the suite's shapes.
    pub fn spec(&self) -> LstmSpec {
        let hidden: Vec<usize> = self.layers.iter().map(|&(_, h)| h).collect();
        LstmSpec::builder(self.layers[0].0, &hidden)
            .forget_bias(0.0)
            .bidirectional(self.bidirectional)
            .proj_sizes(&vec![self.proj; hidden.len()])
            .build()
            .expect("the suite's shapes are valid")
    }

    /// Weights uniform in [-0.1, 0.1], packed for `options`.
    ///
    /// # Errors
    /// As [`Lstm::with_options`].
    pub fn lstm(&self, options: LstmOptions) -> Result<Lstm> {
        Lstm::with_options(LstmWeights::random_uniform(&self.spec(), 0.1, 1), options)
    }

    /// Inputs uniform in [-1, 1], `[B, T, I]` (for a streaming shape, one such block per
    /// call, call after call).
    pub fn input(&self) -> Vec<f32> {
        let per_call = self.batch * self.steps * self.layers[0].0;
        SplitMix64::new(2).uniform_vec(per_call * self.stream_calls.max(1), -1.0, 1.0)
    }

    /// The forward input over `data` (lengths only for the `varlen` shape).
    pub fn forward_input<'a>(&self, data: &'a [f32], lengths: &'a [i32]) -> ForwardInput<'a> {
        let input = ForwardInput::new(data, self.batch, self.steps);
        if self.varlen {
            input.sequence_length(lengths)
        } else {
            input
        }
    }
}

/// One shape's forward, ready to repeat: its packed LSTM, input and workspace. The
/// runner, the criterion benches and the checksums all time or hash [`ForwardBench::run`],
/// so that a streaming shape means the same calls everywhere.
pub struct ForwardBench {
    shape: &'static BenchShape,
    lstm: Lstm,
    data: Vec<f32>,
    lengths: Vec<i32>,
    ws: Workspace,
}

impl ForwardBench {
    /// `shape` packed for `options`, with its inputs and a workspace sized for it.
    ///
    /// # Errors
    /// As [`Lstm::with_options`].
    pub fn new(shape: &'static BenchShape, options: LstmOptions) -> Result<Self> {
        let lstm = shape.lstm(options)?;
        let ws = Workspace::new(lstm.weights().spec(), shape.batch, shape.steps);
        Ok(ForwardBench {
            shape,
            lstm,
            data: shape.input(),
            lengths: shape.lengths(),
            ws,
        })
    }

    /// One repetition: one forward call, or a streaming shape's calls, the first from a
    /// zero state and each next one from the state the previous left.
    ///
    /// # Errors
    /// As [`Lstm::forward_inference`].
    pub fn run(&mut self) -> Result<()> {
        let s = self.shape;
        if s.stream_calls == 0 {
            let input = s.forward_input(&self.data, &self.lengths);
            return self.lstm.forward_inference(&input, &mut self.ws);
        }
        let per_call = s.batch * s.steps * s.layers[0].0;
        for (k, x) in self.data.chunks_exact(per_call).enumerate() {
            let start = if k == 0 {
                InitialState::Zeros
            } else {
                InitialState::Carry
            };
            let input = ForwardInput::new(x, s.batch, s.steps).initial_state(start);
            self.lstm.forward_inference(&input, &mut self.ws)?;
        }
        Ok(())
    }

    /// The packed LSTM.
    pub fn lstm(&self) -> &Lstm {
        &self.lstm
    }

    /// The workspace: the last call's output and final state.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }
}

/// The matrix products alone of a forward pass of `shape`, through the crate's sgemm
/// (the `gemm` crate, or OpenBLAS with the `openblas` feature): per layer, direction and
/// call, one `[sum(len), I] x [I, 4H]` input projection, then per step
/// `[active, R] x [R, 4H]` (and `[active, H] x [H, P]` with a projection). What an LSTM
/// built from BLAS calls cannot beat: the "sgemm ceiling" the fast path is measured
/// against. Returns the seconds of one repetition (run inside a pool of `threads`).
pub fn sgemm_ceiling_once(shape: &BenchShape, threads: usize, bufs: &mut SgemmBuffers) -> f64 {
    let lens = shape.lengths();
    let per_call: usize = lens.iter().map(|&l| l as usize).sum();
    let dirs = if shape.bidirectional { 2 } else { 1 };
    let mut product = |slot: usize, (m, n, k): (usize, usize, usize)| {
        let (a, b, c) = bufs.get(slot, m * k, k * n, m * n);
        crate::engine::sgemm::sgemm(threads, (m, n, k), a, k, b, n, c, n, true);
    };
    let t0 = std::time::Instant::now();
    for (l, &(i, h)) in shape.layers.iter().enumerate() {
        let r = shape.proj.unwrap_or(h);
        for d in 0..dirs {
            let slot = (l * 2 + d) * 3;
            for _ in 0..shape.stream_calls.max(1) {
                product(slot, (per_call, 4 * h, i));
                for s in 0..shape.steps {
                    let active = lens.iter().filter(|&&len| len as usize > s).count();
                    product(slot + 1, (active, 4 * h, r));
                    if let Some(p) = shape.proj {
                        product(slot + 2, (active, p, h));
                    }
                }
            }
        }
    }
    t0.elapsed().as_secs_f64()
}

/// Operands for [`sgemm_ceiling_once`], kept between repetitions.
#[derive(Debug, Default)]
pub struct SgemmBuffers {
    slots: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>,
}

impl SgemmBuffers {
    fn get(&mut self, slot: usize, a: usize, b: usize, c: usize) -> (&[f32], &[f32], &mut [f32]) {
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, Default::default);
        }
        let s = &mut self.slots[slot];
        let mut rng = SplitMix64::new(slot as u64);
        if s.0.len() < a {
            s.0 = rng.uniform_vec(a, -1.0, 1.0);
        }
        if s.1.len() < b {
            s.1 = rng.uniform_vec(b, -0.1, 0.1);
        }
        if s.2.len() < c {
            s.2 = vec![0.0; c];
        }
        (&s.0[..a], &s.1[..b], &mut s.2[..c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_counts_as_documented() {
        let v = BenchShape::by_name("varlen-b64-h512").unwrap();
        assert_eq!(v.real_steps(), 3260);
        let seed = BenchShape::by_name("seed-ptb").unwrap();
        // 60 x 20 steps of (2*1024*456 + 2*512*384) FLOPs.
        assert_eq!(
            seed.flops(Work::Forward),
            1200.0 * (2.0 * 1024.0 * 456.0 + 2.0 * 512.0 * 384.0)
        );
        assert_eq!(seed.flops(Work::Train), 3.0 * seed.flops(Work::Forward));
        // The serving shapes, as BENCH_SHAPES.md counts them.
        let stream = BenchShape::by_name("stream-b1-h512-t1").unwrap();
        assert_eq!(stream.real_steps(), 50);
        assert_eq!(stream.flops(Work::Forward), 50.0 * (2.0 * 2048.0 * 640.0));
        let bidir = BenchShape::by_name("bidir-b16-h384-t60").unwrap();
        assert_eq!(
            bidir.flops(Work::Forward),
            960.0 * 2.0 * (2.0 * 1536.0 * 544.0)
        );
        let lstmp = BenchShape::by_name("lstmp-b8-h768p192-t80").unwrap();
        let layer = |i: f64| 2.0 * 3072.0 * (i + 192.0) + 2.0 * 768.0 * 192.0;
        assert_eq!(
            lstmp.flops(Work::Forward),
            640.0 * (layer(80.0) + layer(192.0))
        );
        let all: Vec<&BenchShape> = SHAPES.iter().chain(OFF_SUITE).collect();
        for (i, s) in all.iter().enumerate() {
            assert!(
                all[..i].iter().all(|o| o.name != s.name),
                "{}: twice",
                s.name
            );
            assert!(
                s.lengths()
                    .iter()
                    .all(|&l| (1..=s.steps as i32).contains(&l)),
                "{}: lengths in 1..=T",
                s.name
            );
            let spec = s.spec();
            let widths: Vec<usize> = (0..spec.num_layers())
                .map(|l| spec.layer_input_size(l))
                .collect();
            let listed: Vec<usize> = s.layers.iter().map(|&(i, _)| i).collect();
            assert_eq!(
                widths, listed,
                "{}: a layer's input is the output below",
                s.name
            );
        }
    }

    #[test]
    fn a_streaming_repetition_is_its_calls_with_the_state_carried() {
        // The 50 one-step calls of `stream-b1-h512-t1` compute what one call over the 50
        // steps computes: the same fma chains, so the same bits.
        let shape = BenchShape::by_name("stream-b1-h512-t1").unwrap();
        let options = LstmOptions {
            threads: Some(1),
            ..LstmOptions::default()
        };
        let mut bench = ForwardBench::new(shape, options).unwrap();
        bench.run().unwrap();
        let whole = BenchShape {
            steps: 50,
            stream_calls: 0,
            ..shape.clone()
        };
        let lstm = whole.lstm(options).unwrap();
        let mut ws = Workspace::new(lstm.weights().spec(), 1, 50);
        let data = whole.input();
        lstm.forward_inference(&ForwardInput::new(&data, 1, 50), &mut ws)
            .unwrap();
        assert_eq!(bench.workspace().final_state(), ws.final_state());
        assert_eq!(bench.workspace().output(), &ws.output()[49 * 512..]);
    }
}

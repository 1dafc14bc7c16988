//! The benchmark suite (the shared `BENCH_SHAPES.md`): names, shapes, inputs and the FLOP
//! count, used by the criterion benches and the `bench` example alike.

use crate::api::input::ForwardInput;
use crate::api::lstm::Lstm;
use crate::api::options::LstmOptions;
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
    /// `(input, hidden)` of each layer, bottom first.
    pub layers: &'static [(usize, usize)],
    /// Batch size `B`.
    pub batch: usize,
    /// Time steps `T` (the longest length for `varlen`).
    pub steps: usize,
    /// The works it is measured for.
    pub works: &'static [Work],
    /// Whether lengths vary (`len[i] = 1 + (i * 37 + 11) % 100`).
    pub varlen: bool,
}

/// Every shape of the suite, in its order.
pub const SHAPES: &[BenchShape] = &[
    BenchShape {
        name: "seed-ptb",
        layers: &[(200, 256), (256, 128)],
        batch: 60,
        steps: 20,
        works: &[Work::Forward, Work::Train],
        varlen: false,
    },
    BenchShape {
        name: "infer-b1-h512",
        layers: &[(512, 512)],
        batch: 1,
        steps: 25,
        works: &[Work::Forward],
        varlen: false,
    },
    BenchShape {
        name: "infer-b8-h256-t100",
        layers: &[(256, 256)],
        batch: 8,
        steps: 100,
        works: &[Work::Forward],
        varlen: false,
    },
    BenchShape {
        name: "infer-b64-h1024",
        layers: &[(1024, 1024)],
        batch: 64,
        steps: 25,
        works: &[Work::Forward],
        varlen: false,
    },
    BenchShape {
        name: "train-b32-h512",
        layers: &[(512, 512)],
        batch: 32,
        steps: 25,
        works: &[Work::Train],
        varlen: false,
    },
    BenchShape {
        name: "varlen-b64-h512",
        layers: &[(512, 512)],
        batch: 64,
        steps: 100,
        works: &[Work::Forward],
        varlen: true,
    },
    BenchShape {
        name: "seed-ptb-lm",
        layers: &[(200, 256), (256, 128)],
        batch: 60,
        steps: 20,
        works: &[Work::Train],
        varlen: false,
    },
];

impl BenchShape {
    /// The shape called `name`.
    pub fn by_name(name: &str) -> Option<&'static BenchShape> {
        SHAPES.iter().find(|s| s.name == name)
    }

    /// Per-sequence lengths.
    pub fn lengths(&self) -> Vec<i32> {
        (0..self.batch)
            .map(|i| {
                if self.varlen {
                    1 + ((i * 37 + 11) % 100) as i32
                } else {
                    self.steps as i32
                }
            })
            .collect()
    }

    /// Sequence steps that do real work: `B x T`, or `sum(len)`.
    pub fn real_steps(&self) -> usize {
        self.lengths().iter().map(|&l| l as usize).sum()
    }

    /// FLOPs of one repetition as the suite counts them: a multiply-add is 2; a layer's
    /// forward is `2 * 4H * (I + H)` per real sequence step; training is 3x forward (for
    /// the language-model shape, only the LSTM stack's training FLOPs).
    pub fn flops(&self, work: Work) -> f64 {
        let per_step: usize = self.layers.iter().map(|&(i, h)| 2 * 4 * h * (i + h)).sum();
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

    /// Inputs uniform in [-1, 1], `[B, T, I]`.
    pub fn input(&self) -> Vec<f32> {
        SplitMix64::new(2).uniform_vec(self.batch * self.steps * self.layers[0].0, -1.0, 1.0)
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

/// The matrix products alone of a forward pass of `shape`, through the crate's sgemm
/// (the `gemm` crate, or OpenBLAS with the `openblas` feature): per layer, one
/// `[sum(len), I] x [I, 4H]` input projection, then per step `[active, H] x [H, 4H]`.
/// What an LSTM built from BLAS calls cannot beat: the "sgemm ceiling" the fast path is
/// measured against. Returns the seconds of one pass (run inside a pool of `threads`).
pub fn sgemm_ceiling_once(shape: &BenchShape, threads: usize, bufs: &mut SgemmBuffers) -> f64 {
    let lens = shape.lengths();
    let total = shape.real_steps();
    let t0 = std::time::Instant::now();
    for (l, &(i, h)) in shape.layers.iter().enumerate() {
        let (a, b, c) = bufs.get(l, total * i, i * 4 * h, total * 4 * h);
        crate::engine::sgemm::sgemm(threads, (total, 4 * h, i), a, i, b, 4 * h, c, 4 * h, true);
        for s in 0..shape.steps {
            let active = lens.iter().filter(|&&len| len as usize > s).count();
            let (hs, w, z) = bufs.get(l + 8, active * h, h * 4 * h, active * 4 * h);
            crate::engine::sgemm::sgemm(
                threads,
                (active, 4 * h, h),
                hs,
                h,
                w,
                4 * h,
                z,
                4 * h,
                true,
            );
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
    }
}

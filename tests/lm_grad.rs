//! Gradients of the language model's own layers against small f64 references and central
//! finite differences: the fused softmax layer, the whole model (embedding included), the
//! dense MSE head and padded sentence batches; and the bits do not depend on the threads.

use lstm_kernels::lm::softmax::{softmax_cross_entropy, SoftmaxGrads, SoftmaxWorkspace};
use lstm_kernels::lm::{mse_head, LanguageModel, LmConfig, LmWorkspace, PaddedBatch};
use lstm_kernels::{
    reference, ForwardInput, InitialState, Lstm, LstmOptions, LstmSpec, LstmWeights, SplitMix64,
    Tensors, Upstream, Workspace,
};

/// The seed's cost in f64: `scale * sum of -ln softmax(h W + b)[target]`.
fn softmax_loss64(w: &[f64], h: &[f64], targets: &[i32], hid: usize, v: usize, scale: f64) -> f64 {
    let mut cost = 0.0;
    for (r, &t) in targets.iter().enumerate() {
        let row = &h[r * (hid + 1)..(r + 1) * (hid + 1)];
        let logits: Vec<f64> = (0..v)
            .map(|j| (0..=hid).map(|k| row[k] * w[k * v + j]).sum())
            .collect();
        let m = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        cost += lse - logits[t as usize];
    }
    cost * scale
}

fn up(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// The fused layer against central differences of the f64 loss (step 1e-6: truncation
/// ~1e-12, rounding ~1e-10 on a loss of ~10, far below the f32 results' own error of a few
/// 1e-7 relative), on every element of dW, db and dH, with tiles that split the rows
/// unevenly, on 1 and 2 threads (which must agree bit for bit).
#[test]
fn fused_softmax_matches_finite_differences() {
    let (n, hid, v) = (23, 7, 37);
    let mut rng = SplitMix64::new(11);
    let w = rng.uniform_vec((hid + 1) * v, -0.8, 0.8);
    let mut h = rng.uniform_vec(n * (hid + 1), -1.0, 1.0);
    for r in 0..n {
        h[r * (hid + 1) + hid] = 1.0;
    }
    let targets: Vec<i32> = (0..n).map(|_| (rng.next_u64() % v as u64) as i32).collect();
    let scale = 0.25;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut results = Vec::new();
    for (threads, tile) in [(1, 5), (2, 5), (1, 0), (2, 8)] {
        let mut ws = SoftmaxWorkspace::new(hid, v, tile);
        let mut dh = vec![0.0; n * hid];
        let mut dw = vec![0.0; (hid + 1) * v];
        let cost = pool
            .install(|| {
                softmax_cross_entropy(
                    threads,
                    &mut ws,
                    &w,
                    &h,
                    &targets,
                    scale,
                    Some(SoftmaxGrads {
                        d_hidden: &mut dh,
                        ld_hidden: hid,
                        d_weights: &mut dw,
                    }),
                )
            })
            .unwrap();
        let forward_only = pool
            .install(|| softmax_cross_entropy(threads, &mut ws, &w, &h, &targets, scale, None))
            .unwrap();
        assert_eq!(cost.to_bits(), forward_only.to_bits());
        results.push((tile, cost, dh, dw));
    }
    // Same tiles, 1 or 2 threads: the same bits.
    assert_eq!(results[0].1.to_bits(), results[1].1.to_bits());
    assert!(results[0].2 == results[1].2 && results[0].3 == results[1].3);

    let (w64, h64) = (up(&w), up(&h));
    let want = softmax_loss64(&w64, &h64, &targets, hid, v, f64::from(scale));
    let eps = 1e-6;
    for (tile, cost, dh, dw) in &results {
        assert!(
            (cost - want).abs() < 1e-5 * want,
            "tile {tile}: {cost} vs {want}"
        );
        for i in 0..w.len() {
            let (mut a, mut b) = (w64.clone(), w64.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (softmax_loss64(&a, &h64, &targets, hid, v, 0.25)
                - softmax_loss64(&b, &h64, &targets, hid, v, 0.25))
                / (2.0 * eps);
            // f32 gradients summed over <= 23 rows: 1e-6 absolute is ~50 ulp of 0.02.
            assert!(
                (f64::from(dw[i]) - fd).abs() < 1e-6 + 1e-4 * fd.abs(),
                "dW[{i}] {} vs {fd}",
                dw[i]
            );
        }
        for r in 0..n {
            for k in 0..hid {
                let i = r * (hid + 1) + k;
                let (mut a, mut b) = (h64.clone(), h64.clone());
                a[i] += eps;
                b[i] -= eps;
                let fd = (softmax_loss64(&w64, &a, &targets, hid, v, 0.25)
                    - softmax_loss64(&w64, &b, &targets, hid, v, 0.25))
                    / (2.0 * eps);
                let got = f64::from(dh[r * hid + k]);
                assert!(
                    (got - fd).abs() < 1e-6 + 1e-4 * fd.abs(),
                    "dH[{r},{k}] {got} vs {fd}"
                );
            }
        }
    }
}

#[test]
fn softmax_rejects_bad_shapes_and_targets() {
    let mut ws = SoftmaxWorkspace::new(3, 5, 0);
    let w = vec![0.0; 4 * 5];
    let h = vec![1.0; 2 * 4];
    assert!(softmax_cross_entropy(1, &mut ws, &w[1..], &h, &[0, 1], 1.0, None).is_err());
    assert!(softmax_cross_entropy(1, &mut ws, &w, &h[1..], &[0, 1], 1.0, None).is_err());
    let e = softmax_cross_entropy(1, &mut ws, &w, &h, &[0, 5], 1.0, None).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    // Uniform logits: the cost is ln(5) per row.
    let c = softmax_cross_entropy(1, &mut ws, &w, &h, &[0, 4], 0.5, None).unwrap();
    assert!((c - 5f64.ln()).abs() < 1e-6);
}

fn tiny_config() -> LmConfig {
    LmConfig {
        name: "tiny".into(),
        init_scale: 0.5,
        hidden_sizes: vec![6, 4],
        num_steps: 3,
        batch_size: 2,
        embedding_size: 5,
        vocab_size: 11,
        ..LmConfig::seed()
    }
}

fn model_from(t: &Tensors, config: &LmConfig) -> LanguageModel {
    LanguageModel::from_tensors(
        t,
        config,
        LstmOptions {
            isa: None,
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap()
}

/// The whole model's gradient (embedding, both layers, softmax) along random directions,
/// one tensor at a time, against central differences of its own f32 cost. Step 1e-2 on a
/// cost of ~7: f32 rounding of the cost (~1e-6) makes ~5e-5 of error in the difference
/// quotient, truncation ~1e-4 * |f'''|; measured agreement is ~1e-6, so 0.5% + 2e-4
/// passes a right gradient with a wide margin and fails a 5% error in any tensor whose
/// directional derivative is above 0.005 (a missing factor, a transposed or shifted row).
#[test]
fn whole_model_gradient_matches_finite_differences() {
    check_whole_model(None);
}

/// The same with TF's dropout on the embeddings and on each layer's output: the masks
/// depend only on the seed, so the cost with a fixed seed is a smooth function of the
/// weights and the same finite differences apply.
#[test]
fn whole_model_gradient_with_dropout_matches_finite_differences() {
    check_whole_model(Some((0.6, 99)));
}

fn check_whole_model(dropout: Option<(f32, u64)>) {
    let config = tiny_config();
    let base = LanguageModel::new(&config, 3, Some(1)).unwrap();
    let (b, t) = (config.batch_size, config.num_steps);
    // Repeated ids, so that the embedding's sparse rows add up.
    let ids = [1, 4, 1, 7, 1, 4];
    let targets = [4, 1, 7, 0, 10, 2];
    let mut ws = LmWorkspace::new(&base, b, t);
    let cost = base.gradients(&mut ws, &ids, &targets, dropout).unwrap();
    if dropout.is_some() {
        // Dropout changes the cost (some units are zeroed, the others scaled up).
        let plain = base
            .eval_step(&mut LmWorkspace::new(&base, b, t), &ids, &targets)
            .unwrap();
        assert!((cost - plain).abs() > 1e-4, "{cost} vs {plain}");
    }
    let g = ws.gradients().clone();
    let tensors = base.to_tensors();
    let grads_of = |name: &str| -> Vec<f32> {
        match name {
            "embedding" => g.embedding_dense(config.vocab_size),
            "softmax_w" => g.softmax_w(config.vocab_size).to_vec(),
            "softmax_b" => g.softmax_b(config.vocab_size).to_vec(),
            other => {
                let (k, which) = other["layers/".len()..].split_once('/').unwrap();
                let k: usize = k.parse().unwrap();
                g.layers[k]
                    .to_tensorflow()
                    .f32(&format!("layers/0/{which}"))
                    .unwrap()
                    .1
                    .to_vec()
            }
        }
    };
    let cost_with = |name: &str, delta: &[f32], sign: f32| -> f64 {
        let mut t2 = tensors.clone();
        let (shape, v) = t2.f32(name).unwrap();
        let (shape, v): (Vec<usize>, Vec<f32>) = (
            shape.to_vec(),
            v.iter().zip(delta).map(|(a, d)| a + sign * d).collect(),
        );
        t2.insert_f32(name, &shape, v).unwrap();
        let m = model_from(&t2, &config);
        let mut ws = LmWorkspace::new(&m, b, t);
        m.gradients(&mut ws, &ids, &targets, dropout).unwrap()
    };
    let mut rng = SplitMix64::new(17);
    for name in [
        "embedding",
        "layers/0/kernel",
        "layers/0/bias",
        "layers/1/kernel",
        "layers/1/bias",
        "softmax_w",
        "softmax_b",
    ] {
        let grad = grads_of(name);
        for _ in 0..2 {
            let d = rng.uniform_vec(grad.len(), -1.0, 1.0);
            let eps = 1e-2f32;
            let step: Vec<f32> = d.iter().map(|x| x * eps).collect();
            let fd = (cost_with(name, &step, 1.0) - cost_with(name, &step, -1.0))
                / (2.0 * f64::from(eps));
            let analytic: f64 = grad
                .iter()
                .zip(&d)
                .map(|(g, d)| f64::from(*g) * f64::from(*d))
                .sum();
            assert!(
                (fd - analytic).abs() < 2e-4 + 0.005 * analytic.abs(),
                "{name}: finite difference {fd} vs gradient {analytic}"
            );
        }
    }
}

/// Training is deterministic and does not depend on the thread count: two steps (the
/// second carrying the first's state) give the same bits on 1 and 2 threads, with
/// dropout; another dropout seed gives other weights.
#[test]
fn training_bits_do_not_depend_on_threads() {
    let config = LmConfig {
        keep_prob: 0.7,
        ..tiny_config()
    };
    let run = |threads: usize, dropout_seed: u64| {
        let mut m = LanguageModel::new(&config, 5, Some(threads)).unwrap();
        let mut ws = LmWorkspace::new(&m, 2, 3);
        let mut costs = Vec::new();
        for step in 0..2 {
            let ids = [1 + step, 4, 1, 7, 1, 4];
            let targets = [4, 1, 7, 0, 10, 2 + step];
            costs.push(
                m.train_step(
                    &mut ws,
                    &ids,
                    &targets,
                    0.5,
                    &config,
                    dropout_seed + step as u64,
                )
                .unwrap(),
            );
        }
        (costs, m.to_tensors())
    };
    let (c1, t1) = run(1, 9);
    let (c2, t2) = run(2, 9);
    assert_eq!(c1, c2);
    for name in t1.names() {
        assert!(
            t1.f32(name).unwrap().1 == t2.f32(name).unwrap().1,
            "{name} differs between 1 and 2 threads"
        );
    }
    let (_, t3) = run(1, 10);
    assert!(t1.f32("softmax_w").unwrap().1 != t3.f32("softmax_w").unwrap().1);
}

/// Truncated backpropagation carries the state: two windows of 3 steps cost what one
/// window of 6 steps costs (the seed's cost is additive over steps).
#[test]
fn state_is_carried_from_window_to_window() {
    let config = tiny_config();
    let m = LanguageModel::new(&config, 2, Some(1)).unwrap();
    let seq = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7];
    let (x, y) = (&seq[..12], &seq[1..13]);
    // One row of 6 steps, or two windows of 3 in turn.
    let mut long = LmWorkspace::new(&m, 2, 6);
    let whole = m.eval_step(&mut long, x, y).unwrap();
    let mut short = LmWorkspace::new(&m, 2, 3);
    let window = |ws: &mut LmWorkspace, k: usize| {
        let pick = |v: &[i32]| -> Vec<i32> {
            (0..2)
                .flat_map(|r| v[r * 6 + 3 * k..r * 6 + 3 * k + 3].to_vec())
                .collect()
        };
        m.eval_step(ws, &pick(x), &pick(y)).unwrap()
    };
    let parts = window(&mut short, 0) + window(&mut short, 1);
    assert!((whole - parts).abs() < 1e-5 * whole, "{whole} vs {parts}");
    short.reset_state();
    let again = window(&mut short, 1);
    assert!((again - (parts - window(&mut LmWorkspace::new(&m, 2, 3), 0))).abs() > 1e-6);
}

/// Clipping and SGD: the step is `lr * min(1, clip / norm) * gradient`, the embedding
/// updated row by occurrence; the norm counts each occurrence's row (TF's IndexedSlices).
#[test]
fn clipped_sgd_step() {
    let config = tiny_config();
    let mut m = LanguageModel::new(&config, 4, Some(1)).unwrap();
    let before = m.to_tensors();
    let mut ws = LmWorkspace::new(&m, 2, 3);
    let ids = [1, 4, 1, 7, 1, 4];
    let targets = [4, 1, 7, 0, 10, 2];
    m.gradients(&mut ws, &ids, &targets, None).unwrap();
    let g = ws.gradients().clone();
    let sq = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    let want_norm = (g
        .layers
        .iter()
        .map(|l| l.weights.sum_of_squares())
        .sum::<f64>()
        + sq(&g.softmax)
        + sq(g.d_embedded()))
    .sqrt();
    let clip = (want_norm / 4.0) as f32;
    let norm = m.apply_gradients(&ws, 0.5, clip).unwrap();
    assert!(
        (norm - want_norm).abs() < 1e-12 * want_norm,
        "{norm} vs {want_norm}"
    );
    let alpha = 0.5 * (f64::from(clip) / norm);
    let after = m.to_tensors();
    let dense = g.embedding_dense(config.vocab_size);
    for (name, grad) in [
        ("embedding", dense),
        ("softmax_b", g.softmax_b(config.vocab_size).to_vec()),
    ] {
        let (b0, b1) = (before.f32(name).unwrap().1, after.f32(name).unwrap().1);
        for ((x0, x1), gv) in b0.iter().zip(b1).zip(&grad) {
            let want = f64::from(*x0) - alpha * f64::from(*gv);
            assert!(
                (f64::from(*x1) - want).abs() < 1e-6,
                "{name}: {x1} vs {want}"
            );
        }
    }
    // Rows of ids that did not occur are untouched.
    let (e0, e1) = (
        before.f32("embedding").unwrap().1,
        after.f32("embedding").unwrap().1,
    );
    assert_eq!(e0[0..5], e1[0..5]);
}

/// The dense MSE head against central differences of an f64 reference.
#[test]
fn mse_head_matches_finite_differences() {
    let (n, h) = (6, 4);
    let mut rng = SplitMix64::new(8);
    let out = rng.uniform_vec(n * h, -1.0, 1.0);
    let w = rng.uniform_vec(h, -1.0, 1.0);
    let targets = rng.uniform_vec(n, -1.0, 1.0);
    let b = 0.3f32;
    let r = mse_head(&out, h, &w, b, &targets).unwrap();
    let loss = |o: &[f64], w: &[f64], b: f64| -> f64 {
        (0..n)
            .map(|i| {
                let y: f64 = (0..h).map(|k| o[i * h + k] * w[k]).sum::<f64>() + b;
                (y - f64::from(targets[i])).powi(2)
            })
            .sum::<f64>()
            / n as f64
    };
    let (o64, w64) = (up(&out), up(&w));
    assert!((r.loss - loss(&o64, &w64, f64::from(b))).abs() < 1e-12);
    let eps = 1e-6;
    // The head computes in f64 and rounds the gradients to f32: 1e-6 covers the rounding.
    for i in 0..n * h {
        let (mut a, mut c) = (o64.clone(), o64.clone());
        a[i] += eps;
        c[i] -= eps;
        let fd = (loss(&a, &w64, 0.3) - loss(&c, &w64, 0.3)) / (2.0 * eps);
        assert!(
            (f64::from(r.d_outputs[i]) - fd).abs() < 1e-6,
            "d_outputs[{i}]"
        );
    }
    for k in 0..h {
        let (mut a, mut c) = (w64.clone(), w64.clone());
        a[k] += eps;
        c[k] -= eps;
        let fd = (loss(&o64, &a, 0.3) - loss(&o64, &c, 0.3)) / (2.0 * eps);
        assert!((f64::from(r.d_w[k]) - fd).abs() < 1e-6, "d_w[{k}]");
    }
    let fd = (loss(&o64, &w64, 0.3 + eps) - loss(&o64, &w64, 0.3 - eps)) / (2.0 * eps);
    assert!((f64::from(r.d_b) - fd).abs() < 1e-6);
    assert!(mse_head(&out, h, &w[1..], b, &targets).is_err());
    assert!(mse_head(&out[1..], h, &w, b, &targets).is_err());
}

/// Padded sentences: lengths from the ids; the output past a length is zero and the
/// final state is the one after the last word (as running the sentence alone); the
/// gradients are the reference's with the same lengths, and padding gets none.
#[test]
fn padded_batches_cost_nothing_for_padding() {
    let spec = LstmSpec::builder(3, &[5]).forget_bias(0.0).build().unwrap();
    let lstm = Lstm::with_options(
        LstmWeights::random_uniform(&spec, 0.5, 6),
        LstmOptions {
            isa: None,
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let embedding = SplitMix64::new(2).uniform_vec(6 * 3, -1.0, 1.0);
    let ids = [3, 1, 2, 0, 0, 5, 0, 0, 0, 0, 4, 4, 4, 4, 1];
    let batch = PaddedBatch::new(&ids, 3, 5).unwrap();
    assert_eq!(batch.lengths(), [3, 1, 5]);
    let mut ws = Workspace::new(&spec, 3, 5);
    batch.forward(&lstm, &embedding, &mut ws).unwrap();
    // Sentence 0 alone, 3 steps.
    let x0 = PaddedBatch::new(&ids[..3], 1, 3)
        .unwrap()
        .embed(&embedding, 3)
        .unwrap();
    let mut alone = Workspace::new(&spec, 1, 3);
    lstm.forward_inference(&ForwardInput::new(&x0, 1, 3), &mut alone)
        .unwrap();
    assert_eq!(
        ws.final_state().cells[0].h[..5],
        alone.final_state().cells[0].h[..]
    );
    assert!(ws.output()[3 * 5..5 * 5].iter().all(|&v| v == 0.0));

    let d_out = SplitMix64::new(4).uniform_vec(3 * 5 * 5, -1.0, 1.0);
    let g = batch.backward(&lstm, &embedding, &d_out).unwrap();
    let x = batch.embed(&embedding, 3).unwrap();
    let fi = ForwardInput::new(&x, 3, 5)
        .sequence_length(batch.lengths())
        .initial_state(InitialState::Zeros);
    let want = reference::gradients(
        lstm.weights(),
        &fi,
        &Upstream {
            output: Some(&d_out),
            final_state: None,
        },
    )
    .unwrap();
    let (a, b) = (g.weights.to_tensorflow(), want.weights.to_tensorflow());
    for name in ["layers/0/kernel", "layers/0/bias"] {
        let (got, want) = (a.f32(name).unwrap(), b.f32(name).unwrap());
        assert_eq!(got.0, want.0, "{name}: shapes");
        for (p, q) in got.1.iter().zip(want.1) {
            // f32 against the f64 reference over 9 real steps: 1e-5 + 1e-4 relative, the
            // golden suite's default.
            assert!((p - q).abs() <= 1e-5 + 1e-4 * q.abs(), "{name}: {p} vs {q}");
        }
    }
    // Id 0 appears only as padding: its embedding row gets nothing.
    assert!(g.embedding[..3].iter().all(|&v| v == 0.0));
    assert!(g.embedding[5 * 3..6 * 3].iter().any(|&v| v != 0.0));
    assert!(PaddedBatch::new(&ids[1..], 3, 5).is_err());
    assert!(PaddedBatch::new(&[1, -1], 1, 2).is_err());
}

/// TF's dropout keeps each unit with probability `keep_prob`: over 800 top-layer outputs
/// at keep 0.6 the kept fraction is 0.6 +- 0.07 (5 binomial standard deviations, 0.017
/// each); without dropout no output is exactly zero.
#[test]
fn dropout_keeps_the_right_fraction() {
    let config = tiny_config();
    let m = LanguageModel::new(&config, 3, Some(1)).unwrap();
    let (b, t, h) = (40, 5, 4);
    let ids: Vec<i32> = (0..b * t).map(|i| (i * 7 % 11) as i32).collect();
    let mut ws = LmWorkspace::new(&m, b, t);
    let zeros = |ws: &LmWorkspace| {
        ws.hidden_with_ones()
            .chunks_exact(h + 1)
            .flat_map(|r| &r[..h])
            .filter(|&&v| v == 0.0)
            .count()
    };
    m.gradients(&mut ws, &ids, &ids, None).unwrap();
    assert_eq!(zeros(&ws), 0);
    ws.reset_state();
    m.gradients(&mut ws, &ids, &ids, Some((0.6, 5))).unwrap();
    let kept = 1.0 - zeros(&ws) as f64 / (b * t * h) as f64;
    assert!((kept - 0.6).abs() < 0.07, "kept {kept}");
    assert!(m.gradients(&mut ws, &ids, &ids, Some((0.0, 5))).is_err());
}

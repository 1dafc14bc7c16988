//! sigmoid / tanh against f64, over the whole f32 range, on every ISA.
//!
//! The bounds asserted are the crate's stated ones (`bounds::*`); the
//! ignored `exhaustive_*` tests walk all 2^32 inputs (run them by hand with
//! `cargo test --release -p lstm-kernels-simd -- --ignored`).

mod common;

use common::{all_kernels, bits_eq, scalar, sigmoid64, ulp_err, Rng};
use lstm_kernels_simd::{bounds, Kernels};

#[derive(Default, Debug)]
struct Worst {
    ulp: f64,
    ulp_at: f32,
    abs: f64,
    abs_at: f32,
}

impl Worst {
    fn see(&mut self, x: f32, got: f32, exact: f64) {
        let u = ulp_err(got, exact);
        let a = (got as f64 - exact).abs();
        if u > self.ulp {
            self.ulp = u;
            self.ulp_at = x;
        }
        if a > self.abs {
            self.abs = a;
            self.abs_at = x;
        }
    }
}

/// Checks both functions of `k` on finite, non-NaN `xs`: within the stated
/// bounds of the f64 result, and bitwise equal to the scalar path.
fn check(k: &Kernels, xs: &[f32]) -> (Worst, Worst) {
    let mut s = vec![0.0; xs.len()];
    let mut t = vec![0.0; xs.len()];
    k.sigmoid_slice(xs, &mut s);
    k.tanh_slice(xs, &mut t);
    let (mut ws, mut wt) = (Worst::default(), Worst::default());
    for (i, &x) in xs.iter().enumerate() {
        ws.see(x, s[i], sigmoid64(x as f64));
        wt.see(x, t[i], (x as f64).tanh());
    }
    let ctx = format!("{:?} on {} inputs", k.isa(), xs.len());
    assert!(
        ws.ulp <= bounds::SIGMOID_MAX_ULP,
        "sigmoid ulp {ws:?} {ctx}"
    );
    assert!(
        ws.abs <= bounds::SIGMOID_MAX_ABS,
        "sigmoid abs {ws:?} {ctx}"
    );
    assert!(wt.ulp <= bounds::TANH_MAX_ULP, "tanh ulp {wt:?} {ctx}");
    assert!(wt.abs <= bounds::TANH_MAX_ABS, "tanh abs {wt:?} {ctx}");
    if k.isa() != lstm_kernels_simd::Isa::Scalar {
        let mut s0 = vec![0.0; xs.len()];
        let mut t0 = vec![0.0; xs.len()];
        scalar().sigmoid_slice(xs, &mut s0);
        scalar().tanh_slice(xs, &mut t0);
        assert!(bits_eq(&s, &s0), "sigmoid differs from scalar, {ctx}");
        assert!(bits_eq(&t, &t0), "tanh differs from scalar, {ctx}");
    }
    (ws, wt)
}

#[test]
fn dense_sweep_minus20_to_20() {
    // Uniform steps of 2^-12 (327681 points), plus every 1009th f32 with
    // |x| <= 20 (about 2.2 million, log-spaced down to the subnormals).
    let mut xs: Vec<f32> = (-20 * 4096..=20 * 4096)
        .map(|i| i as f32 / 4096.0)
        .collect();
    let top = 20f32.to_bits();
    for b in (0..=top).step_by(1009) {
        let x = f32::from_bits(b);
        xs.push(x);
        xs.push(-x);
    }
    for k in all_kernels() {
        let (s, t) = check(&k, &xs);
        eprintln!("{:?}: sigmoid {s:?}\n        tanh {t:?}", k.isa());
    }
}

#[test]
fn random_bit_patterns_over_all_finite_floats() {
    let mut rng = Rng::new(0x5eed);
    let xs: Vec<f32> = std::iter::from_fn(|| Some(f32::from_bits(rng.next_u64() as u32)))
        .filter(|x| x.is_finite())
        .take(1 << 21)
        .collect();
    for k in all_kernels() {
        check(&k, &xs);
    }
}

#[test]
fn saturation_infinities_nan_and_signed_zero() {
    let big = [
        20.0f32,
        50.0,
        88.0,
        89.0,
        103.0,
        104.0,
        105.0,
        1e10,
        1e30,
        f32::MAX,
    ];
    for k in all_kernels() {
        let isa = k.isa();
        for &b in &big {
            let xs = [b, -b];
            let mut t = [0.0; 2];
            k.tanh_slice(&xs, &mut t);
            assert_eq!(t, [1.0, -1.0], "{isa:?} tanh(±{b})");
        }
        let huge = [1e3f32, 1e10, 1e30, f32::MAX, f32::INFINITY];
        for &b in &huge {
            let mut s = [0.0; 2];
            k.sigmoid_slice(&[b, -b], &mut s);
            assert_eq!(s[0], 1.0, "{isa:?} sigmoid({b})");
            assert_eq!(s[1].to_bits(), 0, "{isa:?} sigmoid(-{b}) must be +0");
        }
        let mut t = [0.0; 2];
        k.tanh_slice(&[f32::INFINITY, f32::NEG_INFINITY], &mut t);
        assert_eq!(t, [1.0, -1.0], "{isa:?} tanh(±inf)");

        let nans = [
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc0_1234),
        ];
        let mut out = [0.0; 4];
        k.tanh_slice(&nans, &mut out);
        assert!(
            out.iter().all(|v| v.is_nan()),
            "{isa:?} tanh(NaN) = {out:?}"
        );
        k.sigmoid_slice(&nans, &mut out);
        assert!(
            out.iter().all(|v| v.is_nan()),
            "{isa:?} sigmoid(NaN) = {out:?}"
        );

        let mut z = [1.0; 2];
        k.tanh_slice(&[-0.0, 0.0], &mut z);
        assert_eq!(z[0].to_bits(), (-0.0f32).to_bits(), "{isa:?} tanh(-0)");
        assert_eq!(z[1].to_bits(), 0, "{isa:?} tanh(+0)");
        k.sigmoid_slice(&[-0.0, 0.0], &mut z);
        assert_eq!(z, [0.5, 0.5], "{isa:?} sigmoid(±0)");

        // Subnormal inputs: tanh(x) = x exactly, sigmoid = 1/2.
        let sub = [f32::from_bits(1), -f32::from_bits(0x007f_ffff)];
        k.tanh_slice(&sub, &mut z);
        assert_eq!(z, sub, "{isa:?} tanh(subnormal)");
    }
}

#[test]
fn sigmoid_keeps_relative_accuracy_into_the_subnormals() {
    // sigmoid(x) ~ e^x for x << 0: results from 1e-38 down to 1e-45.
    let xs: Vec<f32> = (0..20_000).map(|i| -80.0 - i as f32 * 0.0012).collect();
    for k in all_kernels() {
        let mut s = vec![0.0; xs.len()];
        k.sigmoid_slice(&xs, &mut s);
        for (&x, &y) in xs.iter().zip(&s) {
            let u = ulp_err(y, sigmoid64(x as f64));
            assert!(
                u <= bounds::SIGMOID_MAX_ULP,
                "{:?} sigmoid({x}) = {y:e}: {u} ulp",
                k.isa()
            );
        }
    }
}

#[test]
fn slices_handle_every_tail_and_in_place() {
    let mut rng = Rng::new(7);
    for k in all_kernels() {
        for n in (0..=70).chain([255, 256, 257, 1000, 1023]) {
            let xs = rng.vec(n, -12.0, 12.0);
            // Canary past the end: a kernel writing beyond `n` would show.
            let mut s = vec![f32::NAN; n + 17];
            let mut t = vec![f32::NAN; n + 17];
            k.sigmoid_slice(&xs, &mut s[..n]);
            k.tanh_slice(&xs, &mut t[..n]);
            assert!(
                s[n..].iter().chain(&t[n..]).all(|v| v.is_nan()),
                "wrote past the end"
            );
            let mut s1 = xs.clone();
            let mut t1 = xs.clone();
            k.sigmoid_inplace(&mut s1);
            k.tanh_inplace(&mut t1);
            assert!(
                bits_eq(&s[..n], &s1),
                "{:?} n={n} in-place sigmoid",
                k.isa()
            );
            assert!(bits_eq(&t[..n], &t1), "{:?} n={n} in-place tanh", k.isa());
            for i in 0..n {
                let x = xs[i] as f64;
                assert!(ulp_err(s[i], sigmoid64(x)) <= bounds::SIGMOID_MAX_ULP);
                assert!(ulp_err(t[i], x.tanh()) <= bounds::TANH_MAX_ULP);
            }
        }
    }
}

/// Walks every f32 bit pattern through `k`, returns the worst errors.
fn exhaustive(k: &Kernels) -> (Worst, Worst) {
    const CHUNK: u64 = 1 << 20;
    let (mut ws, mut wt) = (Worst::default(), Worst::default());
    let mut xs = vec![0.0f32; CHUNK as usize];
    let mut s = vec![0.0f32; CHUNK as usize];
    let mut t = vec![0.0f32; CHUNK as usize];
    for c in 0..(1u64 << 32) / CHUNK {
        for (i, x) in xs.iter_mut().enumerate() {
            *x = f32::from_bits((c * CHUNK + i as u64) as u32);
        }
        k.sigmoid_slice(&xs, &mut s);
        k.tanh_slice(&xs, &mut t);
        for i in 0..xs.len() {
            let x = xs[i];
            if x.is_nan() {
                assert!(
                    s[i].is_nan() && t[i].is_nan(),
                    "NaN in, {} / {} out",
                    s[i],
                    t[i]
                );
                continue;
            }
            ws.see(x, s[i], sigmoid64(x as f64));
            wt.see(x, t[i], (x as f64).tanh());
        }
    }
    (ws, wt)
}

#[test]
#[ignore = "walks all 2^32 inputs: minutes; run by hand to (re)state the bounds"]
fn exhaustive_every_f32() {
    let only = std::env::var("EXHAUSTIVE_ISA").ok();
    for k in all_kernels() {
        if only.as_deref().is_some_and(|o| o != k.isa().name()) {
            continue;
        }
        let (s, t) = exhaustive(&k);
        eprintln!("{:?}: sigmoid {s:?}\n        tanh {t:?}", k.isa());
        assert!(s.ulp <= bounds::SIGMOID_MAX_ULP && s.abs <= bounds::SIGMOID_MAX_ABS);
        assert!(t.ulp <= bounds::TANH_MAX_ULP && t.abs <= bounds::TANH_MAX_ABS);
    }
}

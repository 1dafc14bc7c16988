//! A known-answer check each SIMD ISA passes before it is handed out.
//!
//! Every ISA must return the scalar path's bits (see `vector.rs`). The test
//! suite asserts that on the ISAs of the machine it runs on, but a CI
//! machine without, say, AVX-512 never runs that path; this check runs it,
//! once per process, on the machine that is about to use it. It costs a few
//! hundred microseconds.

use crate::dispatch::Kernels;
use crate::pack::{
    pack_gate_columns, pack_gate_panels, pack_peepholes, pad_units, unpack_gate_columns,
    unpad_units,
};
use crate::StepParams;

/// Deterministic inputs in `[-scale, scale)`.
fn data(seed: u32, n: usize, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 23) as f32 * scale - scale
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Activations, forward step and backward of `k` and of `scalar` on the
/// same inputs, compared bit for bit (in the canonical layouts, since the
/// two tile differently).
pub(crate) fn agrees_with_scalar(k: &Kernels, scalar: &Kernels) -> bool {
    let mut xs = data(1, 203, 30.0);
    xs.extend([
        0.0,
        -0.0,
        1e-40,
        -1e-30,
        88.0,
        -90.0,
        -104.5,
        9.4,
        f32::MAX,
        -f32::INFINITY,
        f32::NAN,
    ]);
    for f in [Kernels::sigmoid_slice, Kernels::tanh_slice] {
        let (mut a, mut b) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        f(k, &xs, &mut a);
        f(scalar, &xs, &mut b);
        if !same_bits(&a, &b) {
            return false;
        }
    }

    // rows = 7 and h = 37 leave remainders for every ISA's MR and U.
    let (rows, kk, h) = (7, 19, 37);
    let w = data(2, kk * 4 * h, 0.4);
    let zx = data(3, rows * 4 * h, 1.5);
    let h_prev = data(4, rows * kk, 1.0);
    let c0 = data(5, rows * h, 3.0);
    let pe = [data(6, h, 0.5), data(7, h, 0.5), data(8, h, 0.5)];
    let dh = data(9, rows * h, 1.0);
    let dc0 = data(10, rows * h, 1.0);
    let params = StepParams {
        forget_bias: 1.0,
        cell_clip: Some(1.5),
    };
    let run = |kern: &Kernels| {
        let u = kern.unit_tile();
        let nt = kern.tiles(h);
        let peep = pack_peepholes(&pe[0], &pe[1], &pe[2], h, u);
        let mut c = pad_units(&c0, rows, h, u);
        let c_prev = c.clone();
        let mut m = vec![0.0; rows * nt * u];
        let mut gates = vec![0.0; rows * nt * 4 * u];
        kern.step_tiles(
            rows,
            kk,
            h,
            &h_prev,
            &pack_gate_panels(&w, kk, h, u),
            &pack_gate_columns(&zx, rows, h, u),
            Some(&peep),
            &mut c,
            &mut m,
            0..nt,
            &params,
            Some(&mut gates),
        );
        let mut dc = pad_units(&dc0, rows, h, u);
        let mut dz = vec![0.0; rows * nt * 4 * u];
        let mut dpeep = vec![0.0; nt * 3 * u];
        kern.backward_tiles(
            rows,
            h,
            &gates,
            &c_prev,
            &pad_units(&dh, rows, h, u),
            &mut dc,
            &mut dz,
            Some(&peep),
            Some(&mut dpeep),
            0..nt,
            &params,
        );
        let mut out = unpad_units(&c, rows, h, u);
        out.extend(unpad_units(&m, rows, h, u));
        out.extend(unpack_gate_columns(&gates, rows, h, u));
        out.extend(unpack_gate_columns(&dz, rows, h, u));
        out.extend(unpad_units(&dc, rows, h, u));
        let (a, b, c) = crate::pack::unpack_peepholes(&dpeep, h, u);
        out.extend(a.into_iter().chain(b).chain(c));
        out
    };
    same_bits(&run(k), &run(scalar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

    #[test]
    fn every_isa_of_the_cpu_passes_and_a_broken_one_is_caught() {
        let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
        // Every ISA the CPU has, unchecked: one that fails must fail this test, not
        // drop out of the list.
        for isa in crate::cpu_isas() {
            let k = Kernels::unchecked(isa).expect("on this CPU");
            assert!(
                agrees_with_scalar(&k, &scalar),
                "{isa} disagrees with scalar"
            );
        }
        let broken = scalar.broken_for_test();
        assert!(!agrees_with_scalar(&broken, &scalar));
    }
}

//! `Kernels::transpose` on every ISA: rows into columns, exactly, for every
//! block and edge size, without touching anything else of `dst`.

mod common;

use common::{all_kernels, Rng};

#[test]
fn rows_become_columns_on_every_isa() {
    let mut rng = Rng::new(3);
    for kern in all_kernels() {
        for n in [1, 3, 4, 7, 8, 15, 16, 17, 33, 40] {
            for (lo, hi) in [(0, 1), (0, 16), (3, 20), (5, 37), (16, 48)] {
                let width = hi + 3;
                let src: Vec<Vec<f32>> = (0..n).map(|_| rng.vec(width, -1.0, 1.0)).collect();
                let rows: Vec<&[f32]> = src.iter().map(|r| &r[..]).collect();
                let ld = n + 5;
                let sentinel = f32::from_bits(0x7fc0_1234);
                let mut dst = vec![sentinel; (hi - lo) * ld];
                kern.transpose(&rows, lo..hi, &mut dst, ld);
                for c in lo..hi {
                    for i in 0..ld {
                        let got = dst[(c - lo) * ld + i];
                        if i < n {
                            assert_eq!(
                                got.to_bits(),
                                src[i][c].to_bits(),
                                "{:?} n={n} cols={lo}..{hi} [{c}][{i}]",
                                kern.isa()
                            );
                        } else {
                            assert_eq!(
                                got.to_bits(),
                                sentinel.to_bits(),
                                "{:?} padding",
                                kern.isa()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "shorter than cols.end")]
fn a_short_row_panics() {
    let k = common::scalar();
    let (a, b) = (vec![0.0f32; 8], vec![0.0f32; 5]);
    let mut dst = vec![0.0f32; 16];
    k.transpose(&[&a, &b], 0..8, &mut dst, 2);
}

#[test]
#[should_panic(expected = "dst holds")]
fn a_short_dst_panics() {
    let k = common::scalar();
    let a = vec![0.0f32; 8];
    let mut dst = vec![0.0f32; 7];
    k.transpose(&[&a], 0..8, &mut dst, 1);
}

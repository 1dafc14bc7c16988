//! Packing layouts: explicit positions, zero padding, round trips.

mod common;

use common::Rng;
use lstm_kernels_simd::{
    pack_gate_columns, pack_gate_panels, pack_peepholes, packed_gate_panels_len, pad_units, padded,
    tiles, unpack_gate_columns, unpack_gate_panels, unpack_peepholes, unpad_units,
};

#[test]
fn recurrent_panels_put_each_weight_where_the_kernel_reads_it() {
    let (k, h, u) = (3, 5, 4);
    // w[kk][g*h + unit] = 1000 kk + 100 g + unit: every value names its slot.
    let w: Vec<f32> = (0..k * 4 * h)
        .map(|i| {
            let (kk, col) = (i / (4 * h), i % (4 * h));
            (1000 * kk + 100 * (col / h) + col % h) as f32
        })
        .collect();
    let p = pack_gate_panels(&w, k, h, u);
    assert_eq!(p.len(), packed_gate_panels_len(k, h, u));
    assert_eq!(p.len(), 2 * k * 4 * u);
    for t in 0..2 {
        for kk in 0..k {
            for g in 0..4 {
                for x in 0..u {
                    let unit = t * u + x;
                    let got = p[(t * k + kk) * 4 * u + g * u + x];
                    let want = if unit < h {
                        (1000 * kk + 100 * g + unit) as f32
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "tile {t} row {kk} gate {g} lane {x}");
                }
            }
        }
    }
}

#[test]
fn round_trips_for_many_shapes_and_tiles() {
    let mut rng = Rng::new(11);
    for u in [1, 4, 8, 16] {
        for h in [1, 3, 4, 5, 16, 17, 33] {
            for k in [1, 2, 7] {
                let w = rng.vec(k * 4 * h, -1.0, 1.0);
                assert_eq!(
                    unpack_gate_panels(&pack_gate_panels(&w, k, h, u), k, h, u),
                    w
                );
            }
            for rows in [1, 3] {
                let z = rng.vec(rows * 4 * h, -1.0, 1.0);
                let p = pack_gate_columns(&z, rows, h, u);
                assert_eq!(p.len(), rows * tiles(h, u) * 4 * u);
                assert_eq!(unpack_gate_columns(&p, rows, h, u), z);
                // Padding lanes are zero.
                let nonzero = p.iter().filter(|v| **v != 0.0).count();
                assert_eq!(nonzero, rows * 4 * h);

                let c = rng.vec(rows * h, -1.0, 1.0);
                let pc = pad_units(&c, rows, h, u);
                assert_eq!(pc.len(), rows * padded(h, u));
                assert_eq!(unpad_units(&pc, rows, h, u), c);
            }
            let (wi, wf, wo) = (
                rng.vec(h, -1., 1.),
                rng.vec(h, -1., 1.),
                rng.vec(h, -1., 1.),
            );
            let pp = pack_peepholes(&wi, &wf, &wo, h, u);
            assert_eq!(pp.len(), tiles(h, u) * 3 * u);
            assert_eq!(unpack_peepholes(&pp, h, u), (wi, wf, wo));
        }
    }
}

#[test]
fn gate_columns_layout_matches_the_panels() {
    // zx packed with pack_gate_columns and W packed with pack_gate_panels
    // must agree column for column: row kk of the panel of tile t lines up
    // with columns t*4u.. of a packed gate row.
    let (k, h, u) = (2, 6, 4);
    let w: Vec<f32> = (0..k * 4 * h).map(|i| i as f32).collect();
    let panels = pack_gate_panels(&w, k, h, u);
    let rows_as_gates = pack_gate_columns(&w, k, h, u);
    for t in 0..tiles(h, u) {
        for kk in 0..k {
            let a = &panels[(t * k + kk) * 4 * u..(t * k + kk + 1) * 4 * u];
            let b = &rows_as_gates[kk * tiles(h, u) * 4 * u + t * 4 * u..][..4 * u];
            assert_eq!(a, b);
        }
    }
}

#[test]
#[should_panic(expected = "[k, 4h]")]
fn wrong_weight_length_panics() {
    pack_gate_panels(&[0.0; 10], 1, 3, 4);
}

//! The fused elementwise backward of one step, written once over [`Vector`].
//!
//! It reads only what the forward saved (the activated gates) and the step's
//! input cell: the unclipped cell and `tanh(c)` are recomputed with the
//! forward's exact operations rather than stored.

use crate::activations::{activate, TANH};
use crate::args::BackwardRaw;
use crate::vector::Vector;

/// The fused elementwise backward of one step over `a.tiles`, all rows.
///
/// Recomputes the unclipped cell `c_u = f c_prev + i g` with the forward's
/// exact operations (same bits), so the clip mask and `tanh(c)` need no
/// extra saved state.
///
/// # Safety
/// The [`Vector`] contract and the [`BackwardRaw`] contract.
#[inline(always)]
pub(crate) unsafe fn backward<V: Vector, const W: usize>(a: &BackwardRaw) {
    let l = V::LANES;
    let u4 = W * l;
    let u = u4 / 4;
    let nv = W / 4;
    // SAFETY: offsets stay inside the layouts of the `BackwardRaw`
    // contract: rows < a.rows, tiles within a.tiles, in-tile offsets below
    // 4U, U or 3U as for the forward.
    unsafe {
        let one = V::splat(1.0);
        let zero = V::splat(0.0);
        let clip = V::splat(a.cell_clip);
        let neg_clip = V::splat(-a.cell_clip);
        let do_clip = a.cell_clip != f32::INFINITY;
        for tile in a.tiles.clone() {
            for v in 0..nv {
                let unit = tile * u + v * l;
                let pofs = tile * 3 * u + v * l;
                let (pi, pf, po) = match a.peep {
                    Some(p) => {
                        let p = p.as_ptr().add(pofs);
                        (V::load(p), V::load(p.add(u)), V::load(p.add(2 * u)))
                    }
                    None => (zero, zero, zero),
                };
                let (mut dpi, mut dpf, mut dpo) = match a.dpeep {
                    Some(p) => {
                        let p = p.as_ptr().add(pofs);
                        (V::load(p), V::load(p.add(u)), V::load(p.add(2 * u)))
                    }
                    None => (zero, zero, zero),
                };
                for row in 0..a.rows {
                    let gp = a.gates.add(row * a.ld_gates + tile * u4 + v * l);
                    let i = V::load(gp);
                    let g = V::load(gp.add(u));
                    let f = V::load(gp.add(2 * u));
                    let o = V::load(gp.add(3 * u));
                    let c_prev = V::load(a.c_prev.add(row * a.ld_c_prev + unit));
                    let dm = V::load(a.dh.add(row * a.ld_dh + unit));
                    let dcp = a.dc.add(row * a.ld_dc + unit);
                    let dc_next = V::load(dcp);

                    let cu = V::fma(f, c_prev, i.mul(g));
                    let c = if do_clip {
                        clip.min(neg_clip.max(cu))
                    } else {
                        cu
                    };
                    let mut th = [c];
                    activate(&mut th, &[TANH]);
                    let th = th[0];
                    // d(sigmoid) = s (1 - s), d(tanh) = 1 - t^2.
                    let da_o = dm.mul(th).mul(o.mul(one.sub(o)));
                    let mut dc = V::fma(dm.mul(o), one.sub(th.mul(th)), dc_next);
                    if a.peep.is_some() {
                        dc = V::fma(da_o, po, dc);
                    }
                    if do_clip {
                        // The clamp passes the gradient where it did not
                        // bite, bounds included; NaN compares false.
                        dc = V::select(cu.abs().le(clip), dc, zero);
                    }
                    let da_i = dc.mul(g).mul(i.mul(one.sub(i)));
                    let dz_j = dc.mul(i).mul(one.sub(g.mul(g)));
                    let da_f = dc.mul(c_prev).mul(f.mul(one.sub(f)));
                    let mut dc_prev = dc.mul(f);
                    if a.peep.is_some() {
                        dc_prev = V::fma(da_i, pi, dc_prev);
                        dc_prev = V::fma(da_f, pf, dc_prev);
                    }
                    let dzp = a.dz.add(row * a.ld_dz + tile * u4 + v * l);
                    da_i.store(dzp);
                    dz_j.store(dzp.add(u));
                    da_f.store(dzp.add(2 * u));
                    da_o.store(dzp.add(3 * u));
                    if let Some(p) = a.dz_panels {
                        let q = p.at.as_ptr().add(row * p.ld + tile * p.panel + v * l);
                        da_i.store(q);
                        dz_j.store(q.add(u));
                        da_f.store(q.add(2 * u));
                        da_o.store(q.add(3 * u));
                    }
                    dc_prev.store(dcp);
                    dpi = V::fma(da_i, c_prev, dpi);
                    dpf = V::fma(da_f, c_prev, dpf);
                    dpo = V::fma(da_o, c, dpo);
                }
                if let Some(p) = a.dpeep {
                    let p = p.as_ptr().add(pofs);
                    dpi.store(p);
                    dpf.store(p.add(u));
                    dpo.store(p.add(2 * u));
                }
            }
        }
    }
}

//! Interesting values: sizes that overflow products, floats that break arithmetic,
//! integers at the edges of their types, and the size that makes a product wrap to a
//! chosen small number.

/// Sizes at the edges: small ones, powers of two and their neighbours, and values whose
/// products with small factors wrap around `usize` (`2^62 + 1` times 4 is 4).
pub const SIZES: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    17,
    63,
    64,
    255,
    256,
    4096,
    65_535,
    65_536,
    (1 << 31) - 1,
    1 << 31,
    1 << 32,
    (1 << 32) + 1,
    1 << 61,
    (1 << 61) + 1,
    1 << 62,
    (1 << 62) + 1,
    (1 << 63) - 1,
    1 << 63,
    (1 << 63) + 1,
    u64::MAX / 3 + 1,
    u64::MAX / 5 + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// Floats that break arithmetic: signed zeros, NaN, infinities, subnormals, extremes.
pub const FLOATS: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    3.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MIN_POSITIVE,
    1e-45,
    -1e-45,
    f32::EPSILON,
    f32::MAX,
    f32::MIN,
    1e30,
    -1e30,
    1e-30,
    88.7,
    -88.7,
];

/// Integers at the edges of `i32` and `i64`, for lengths and ids.
pub const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    -2,
    3,
    255,
    256,
    65_536,
    i32::MAX as i64,
    i32::MIN as i64,
    i32::MAX as i64 + 1,
    i32::MIN as i64 - 1,
    u32::MAX as i64,
    i64::MAX,
    i64::MIN,
];

/// A size from [`SIZES`] by index (wrapping).
pub fn size(index: u8) -> usize {
    SIZES[index as usize % SIZES.len()] as usize
}

/// A float from [`FLOATS`] by index (wrapping).
pub fn float(index: u8) -> f32 {
    FLOATS[index as usize % FLOATS.len()]
}

/// An `x` with `x * m == n` in wrapping `usize` arithmetic, as large as such an `x` can
/// be made when several exist; `None` when there is none (`m` is 0, or has more factors
/// of two than `n`).
pub fn wrap_to(m: usize, n: usize) -> Option<usize> {
    if m == 0 {
        return None;
    }
    let s = m.trailing_zeros();
    if n.trailing_zeros() < s && n != 0 {
        return None;
    }
    let odd = m >> s;
    // Newton's iteration for the inverse of an odd number modulo 2^64: each step doubles
    // the number of correct low bits (3 to start with, as odd * odd = 1 mod 8).
    let mut inv = odd;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2usize.wrapping_sub(odd.wrapping_mul(inv)));
    }
    let x = (n >> s).wrapping_mul(inv);
    if s == 0 {
        return Some(x);
    }
    // The solution is only fixed modulo 2^(64 - s): take a high representative.
    let step = 1usize << (usize::BITS - s);
    Some((x & (step - 1)) | step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_to_finds_the_wrapping_factor() {
        assert_eq!(((1usize << 62) + 1).wrapping_mul(4), 4);
        for (m, n) in [(4, 4), (3, 2), (7, 1), (12, 4), (40, 8), (5, 1), (8, 0)] {
            let x = wrap_to(m, n).unwrap_or_else(|| panic!("no x for {m}, {n}"));
            assert_eq!(x.wrapping_mul(m), n, "m {m} n {n} x {x}");
            assert!(x > u32::MAX as usize, "m {m} n {n}: x {x} should be huge");
        }
        assert_eq!(wrap_to(0, 1), None);
        assert_eq!(wrap_to(4, 2), None);
    }

    #[test]
    fn tables_index_wrapping() {
        assert_eq!(size(0), 0);
        assert_eq!(size(SIZES.len() as u8), 0);
        assert!(float(6).is_nan());
    }
}

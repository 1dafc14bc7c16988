//! Byte-level mutations, and the safetensors-aware ones: the 8-byte header length and
//! the numbers of the JSON header (shapes, data offsets, the sizes inside metadata).

use crate::rng::Rng;
use crate::values::{INTS, SIZES};

/// Applies 1 to 4 random byte-level mutations, keeping the length at most `max_len`.
pub fn bytes(data: &mut Vec<u8>, rng: &mut Rng, max_len: usize) {
    for _ in 0..rng.range(1, 4) {
        one_byte_mutation(data, rng);
    }
    data.truncate(max_len);
}

fn one_byte_mutation(data: &mut Vec<u8>, rng: &mut Rng) {
    if data.is_empty() {
        let n = rng.range(1, 16);
        data.extend(rng.bytes(n));
        return;
    }
    let at = rng.below(data.len());
    match rng.below(10) {
        0 => data[at] ^= 1 << rng.below(8),
        1 => data[at] = *rng.pick(&[0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'-', b'"', b'{']),
        2 => {
            let n = rng.range(1, 8);
            let bytes = rng.bytes(n);
            data.splice(at..at, bytes);
        }
        3 => {
            let end = (at + rng.range(1, 16)).min(data.len());
            data.drain(at..end);
        }
        4 => {
            let end = (at + rng.range(1, 32)).min(data.len());
            let copy = data[at..end].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, copy);
        }
        5 => data.truncate(at),
        6 => {
            let n = rng.range(1, 64);
            data.extend(rng.bytes(n));
        }
        7 => {
            // An interesting little-endian integer over whatever was there.
            let v = *rng.pick(SIZES);
            let width = *rng.pick(&[2usize, 4, 8]);
            for (i, b) in v.to_le_bytes().iter().take(width).enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        8 => {
            let v = *rng.pick(&[0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::MAX, 1e-45]);
            for (i, b) in v.to_le_bytes().iter().enumerate() {
                if let Some(slot) = data.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        _ => {
            let other = rng.below(data.len());
            data.swap(at, other);
        }
    }
}

/// The span of the JSON header of safetensors bytes (after the 8-byte length), clamped
/// to the data.
fn header_span(data: &[u8]) -> std::ops::Range<usize> {
    if data.len() < 8 {
        return 0..0;
    }
    let n = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let end = 8usize.saturating_add(n.min(data.len() as u64) as usize);
    8..end.min(data.len())
}

/// One time in `one_in`, a lying safetensors header ([`header`]); one time in `one_in`,
/// flipped, cut or grown bytes ([`bytes`]); otherwise the file as it is.
pub fn sometimes(data: &mut Vec<u8>, rng: &mut Rng, max_len: usize, one_in: usize) {
    match rng.below(one_in) {
        0 => header(data, rng),
        1 => bytes(data, rng, max_len),
        _ => {}
    }
}

/// Mutates safetensors bytes where the parser looks first: the header length or the JSON
/// header's numbers and punctuation.
pub fn header(data: &mut Vec<u8>, rng: &mut Rng) {
    if data.len() < 8 {
        data.resize(8, 0);
    }
    let span = header_span(data);
    let n = span.len() as u64;
    match rng.below(5) {
        0 => {
            let v = match rng.below(6) {
                0 => n.wrapping_add(rng.range(1, 8) as u64),
                1 => n.wrapping_sub(rng.range(1, 8) as u64),
                2 => data.len() as u64,
                3 => (data.len() as u64).wrapping_sub(8),
                4 => rng.u64(),
                _ => *rng.pick(SIZES),
            };
            data[..8].copy_from_slice(&v.to_le_bytes());
        }
        1 | 2 => {
            // Replace a number of the header, then fix the length prefix (most of the
            // time) so that the parser reads the changed JSON.
            let (start, end) = (span.start, span.end);
            let mut head = data[start..end].to_vec();
            if replace_number(&mut head, rng) {
                let tail = data[end..].to_vec();
                data.truncate(start);
                data.extend_from_slice(&head);
                data.extend_from_slice(&tail);
                if rng.chance(7, 8) {
                    data[..8].copy_from_slice(&(head.len() as u64).to_le_bytes());
                }
            }
        }
        3 => {
            if !span.is_empty() {
                let at = span.start + rng.below(span.len());
                data[at] = *rng.pick(b"{}[]\":,0 -\\e.");
            }
        }
        _ => {
            if !span.is_empty() {
                let at = span.start + rng.below(span.len());
                let options: [&[u8]; 9] = [
                    b"\"x\":1,",
                    b"[",
                    b"]",
                    b"\\u0000",
                    b"\\ud800",
                    b"1e999",
                    b"-1",
                    b",,",
                    b"null",
                ];
                let junk = *rng.pick(&options);
                data.splice(at..at, junk.iter().copied());
            }
        }
    }
}

/// Replaces one run of ASCII digits of `text` (with its minus sign) by an interesting
/// number; false when there is no number.
pub fn replace_number(text: &mut Vec<u8>, rng: &mut Rng) -> bool {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() {
            let start = if i > 0 && text[i - 1] == b'-' {
                i - 1
            } else {
                i
            };
            let mut end = i;
            while end < text.len() && text[end].is_ascii_digit() {
                end += 1;
            }
            runs.push(start..end);
            i = end;
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return false;
    }
    let run = rng.pick(&runs).clone();
    let old: i128 = std::str::from_utf8(&text[run.clone()])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let new = match rng.below(6) {
        0 | 1 => rng.pick(SIZES).to_string(),
        2 => rng.pick(INTS).to_string(),
        3 => (old + *rng.pick(&[-2i128, -1, 1, 2, 8])).to_string(),
        4 => (old * 2).to_string(),
        _ => rng
            .pick(&[
                "1e999",
                "-0",
                "0.5",
                "1e-400",
                "18446744073709551616",
                "99999999999999999999999",
                "4.0",
                "-1e30",
            ])
            .to_string(),
    };
    text.splice(run, new.bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_respect_max_len_and_change_something() {
        let mut rng = Rng::new(3);
        let original: Vec<u8> = (0..100).collect();
        let mut changed = 0;
        for _ in 0..200 {
            let mut d = original.clone();
            bytes(&mut d, &mut rng, 120);
            assert!(d.len() <= 120);
            changed += usize::from(d != original);
        }
        assert!(
            changed > 150,
            "only {changed} of 200 mutations changed the data"
        );
    }

    #[test]
    fn numbers_are_replaced_in_place() {
        let mut rng = Rng::new(5);
        let mut saw_change = false;
        for _ in 0..50 {
            let mut t = b"{\"shape\":[3,4]}".to_vec();
            assert!(replace_number(&mut t, &mut rng));
            let s = String::from_utf8(t).unwrap();
            assert!(s.starts_with("{\"shape\":["), "{s}");
            saw_change |= s != "{\"shape\":[3,4]}";
        }
        assert!(saw_change);
        assert!(!replace_number(&mut b"{}".to_vec(), &mut rng));
    }

    #[test]
    fn header_mutations_keep_a_length_prefix() {
        let mut rng = Rng::new(9);
        for _ in 0..100 {
            let mut d = b"\x0b\x00\x00\x00\x00\x00\x00\x00{\"a\":[1,2]}tail".to_vec();
            header(&mut d, &mut rng);
            assert!(d.len() >= 8);
        }
    }
}

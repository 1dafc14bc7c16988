//! A `.safetensors` file as the generators see it: a list of tensors (name, dtype name,
//! shape, raw bytes) and metadata, written by hand so that it can say things the
//! library's writer refuses (shapes whose products wrap, dtypes the crate does not know,
//! duplicate-looking names); and the structure-level mutations on it.

use lstm_kernels::{TensorData, Tensors};

use crate::rng::Rng;
use crate::values::{FLOATS, INTS, SIZES};

/// One tensor of a [`StFile`].
#[derive(Debug, Clone, PartialEq)]
pub struct StTensor {
    /// Name.
    pub name: String,
    /// Dtype as the header spells it (`F32`, `I32`, `I64`, ...).
    pub dtype: String,
    /// Shape; any values, consistent with the data or not.
    pub shape: Vec<u64>,
    /// Raw little-endian bytes.
    pub data: Vec<u8>,
}

impl StTensor {
    /// An `F32` tensor.
    pub fn f32(name: &str, shape: &[usize], values: &[f32]) -> Self {
        StTensor {
            name: name.to_string(),
            dtype: "F32".into(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An `I32` tensor.
    pub fn i32(name: &str, shape: &[usize], values: &[i32]) -> Self {
        StTensor {
            name: name.to_string(),
            dtype: "I32".into(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// A safetensors file in parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StFile {
    /// Tensors in file order.
    pub tensors: Vec<StTensor>,
    /// `__metadata__` entries.
    pub metadata: Vec<(String, String)>,
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl StFile {
    /// The F32 and I32 tensors and the metadata of parsed `Tensors`.
    pub fn from_tensors(t: &Tensors) -> Self {
        let mut out = StFile::default();
        for name in t.names() {
            let tensor = t.get(name).expect("a listed name");
            let (dtype, data): (&str, Vec<u8>) = match &tensor.data {
                TensorData::F32(v) => ("F32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorData::I32(v) => ("I32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorData::Other(_) => continue,
            };
            out.tensors.push(StTensor {
                name: name.to_string(),
                dtype: dtype.into(),
                shape: tensor.shape.iter().map(|&d| d as u64).collect(),
                data,
            });
        }
        out.metadata = t
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out
    }

    /// Sets (or adds) a metadata entry.
    pub fn set_meta(&mut self, key: &str, value: &str) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.metadata.push((key.to_string(), value.to_string())),
        }
    }

    /// Adds a tensor, replacing one of the same name.
    pub fn put(&mut self, t: StTensor) {
        self.tensors.retain(|x| x.name != t.name);
        self.tensors.push(t);
    }

    /// The file's bytes: the 8-byte header length, the JSON header (padded with spaces to
    /// a multiple of 8, as the reference writer does), the data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::from("{");
        let mut first = true;
        if !self.metadata.is_empty() {
            head.push_str("\"__metadata__\":{");
            for (i, (k, v)) in self.metadata.iter().enumerate() {
                if i > 0 {
                    head.push(',');
                }
                head.push_str(&json_string(k));
                head.push(':');
                head.push_str(&json_string(v));
            }
            head.push('}');
            first = false;
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            if !first {
                head.push(',');
            }
            first = false;
            let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
            head.push_str(&format!(
                "{}:{{\"dtype\":{},\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                json_string(&t.name),
                json_string(&t.dtype),
                shape.join(","),
                offset,
                offset + t.data.len()
            ));
            offset += t.data.len();
        }
        head.push('}');
        while head.len() % 8 != 0 {
            head.push(' ');
        }
        let mut out = Vec::with_capacity(8 + head.len() + offset);
        out.extend_from_slice(&(head.len() as u64).to_le_bytes());
        out.extend_from_slice(head.as_bytes());
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
        }
        out
    }

    /// Applies one structure-level mutation; `names` are tensor names the target knows,
    /// for renames and additions; `meta_values` are (key, value) pairs worth trying.
    pub fn mutate(&mut self, rng: &mut Rng, names: &[String], meta_values: &[(&str, &str)]) {
        let which = rng.below(11);
        if self.tensors.is_empty() && which < 7 {
            let name = names.get(rng.below(names.len().max(1))).cloned();
            let n = rng.below(8);
            self.tensors.push(StTensor::f32(
                &name.unwrap_or_else(|| "x".into()),
                &[n],
                &vec![1.0; n],
            ));
            return;
        }
        let k = rng.below(self.tensors.len().max(1));
        match which {
            0 => {
                self.tensors.remove(k);
            }
            1 => {
                let mut t = self.tensors[k].clone();
                t.name = match names.is_empty() || rng.chance(1, 3) {
                    true => bump_digit(&t.name, rng),
                    false => rng.pick(names).clone(),
                };
                if rng.chance(1, 2) {
                    self.tensors[k] = t;
                } else {
                    self.put(t);
                }
            }
            2 => {
                // One dimension changed, the data left as it was (an inconsistent file) or
                // resized to match when that stays small.
                let t = &mut self.tensors[k];
                if t.shape.is_empty() {
                    t.shape.push(*rng.pick(SIZES));
                } else {
                    let d = rng.below(t.shape.len());
                    t.shape[d] = match rng.below(3) {
                        0 => *rng.pick(SIZES),
                        1 => t.shape[d].wrapping_add(1),
                        _ => t.shape[d].wrapping_sub(1),
                    };
                }
                if rng.chance(1, 2) {
                    resize_to_shape(t);
                }
            }
            3 => {
                // Same element count, another shape.
                let t = &mut self.tensors[k];
                let count: u64 = t.shape.iter().product();
                t.shape = match rng.below(4) {
                    0 => vec![count],
                    1 => t.shape.iter().rev().copied().collect(),
                    2 => [vec![1], t.shape.clone()].concat(),
                    _ => [t.shape.clone(), vec![1]].concat(),
                };
            }
            4 => {
                let t = &mut self.tensors[k];
                let dtype = *rng.pick(&["F32", "I32", "I64", "F64", "F16", "BF16", "U8", "BOOL"]);
                t.dtype = dtype.to_string();
                if rng.chance(2, 3) {
                    resize_to_shape(t);
                }
            }
            5 => {
                // Edge values in the data.
                let t = &mut self.tensors[k];
                let width = elem_width(&t.dtype);
                if !t.data.is_empty() {
                    for _ in 0..rng.range(1, 4) {
                        let i = rng.below((t.data.len() / width).max(1));
                        let bytes: Vec<u8> = match t.dtype.as_str() {
                            "F32" => rng.pick(FLOATS).to_le_bytes().to_vec(),
                            "I32" => (*rng.pick(INTS) as i32).to_le_bytes().to_vec(),
                            "I64" => rng.pick(INTS).to_le_bytes().to_vec(),
                            _ => rng.bytes(width),
                        };
                        for (j, b) in bytes.into_iter().enumerate() {
                            if let Some(slot) = t.data.get_mut(i * width + j) {
                                *slot = b;
                            }
                        }
                    }
                }
            }
            6 => {
                // An I32 tensor widened to I64 (PyTorch's default), values kept.
                let t = &mut self.tensors[k];
                if t.dtype == "I32" {
                    t.data = t
                        .data
                        .chunks_exact(4)
                        .flat_map(|c| {
                            i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes")))
                                .to_le_bytes()
                        })
                        .collect();
                    t.dtype = "I64".into();
                }
            }
            7 | 8 => {
                // A number inside a metadata value (the config's sizes and flags).
                if !self.metadata.is_empty() {
                    let m = rng.below(self.metadata.len());
                    let mut v = self.metadata[m].1.clone().into_bytes();
                    if crate::mutate::replace_number(&mut v, rng) {
                        self.metadata[m].1 = String::from_utf8_lossy(&v).into_owned();
                    } else if let Some(&(key, value)) =
                        meta_values.get(rng.below(meta_values.len().max(1)))
                    {
                        self.set_meta(key, value);
                    }
                }
            }
            9 => {
                if let Some(&(key, value)) = meta_values.get(rng.below(meta_values.len().max(1))) {
                    self.set_meta(key, value);
                } else if !self.metadata.is_empty() {
                    let m = rng.below(self.metadata.len());
                    self.metadata.remove(m);
                }
            }
            _ => {
                if !self.metadata.is_empty() && rng.chance(1, 2) {
                    let m = rng.below(self.metadata.len());
                    self.metadata.remove(m);
                } else if !self.tensors.is_empty() {
                    let other = rng.below(self.tensors.len());
                    self.tensors.swap(k, other);
                }
            }
        }
    }
}

/// Bytes per element of a dtype name (1 for unknown names).
fn elem_width(dtype: &str) -> usize {
    match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    }
}

/// Resizes the data to what the shape and dtype say, when that is at most 64 KiB.
fn resize_to_shape(t: &mut StTensor) {
    let count = t
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(elem_width(&t.dtype) as u64));
    if let Some(n) = count.filter(|&n| n <= 1 << 16) {
        t.data.resize(n as usize, 0);
    }
}

/// `name` with one of its digits changed (or a digit appended).
fn bump_digit(name: &str, rng: &mut Rng) -> String {
    let digits: Vec<usize> = name
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    if digits.is_empty() {
        return format!("{name}{}", rng.below(4));
    }
    let at = *rng.pick(&digits);
    let mut s = name.to_string();
    s.replace_range(at..at + 1, &rng.below(10).to_string());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_parse_back() {
        let mut f = StFile::default();
        f.put(StTensor::f32(
            "layers/0/kernel",
            &[2, 3],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        ));
        f.put(StTensor::i32("ids", &[2], &[7, -1]));
        f.set_meta("config", "{\"a\": \"q\\\"\n\"}");
        let t = Tensors::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(t.f32("layers/0/kernel").unwrap().1[5], 6.0);
        assert_eq!(t.i32("ids").unwrap().1, &[7, -1]);
        assert_eq!(t.metadata()["config"], "{\"a\": \"q\\\"\n\"}");
        assert_eq!(
            Tensors::from_bytes(&StFile::from_tensors(&t).to_bytes()).unwrap(),
            t
        );
    }

    #[test]
    fn mutations_keep_files_writable() {
        let mut rng = Rng::new(11);
        let names = vec!["a".to_string(), "b".to_string()];
        let mut parsed = 0;
        for _ in 0..300 {
            let mut f = StFile::default();
            f.put(StTensor::f32("a", &[2, 2], &[1.0; 4]));
            f.set_meta("config", "{\"n\": 4}");
            for _ in 0..3 {
                f.mutate(&mut rng, &names, &[("format", "x")]);
            }
            let bytes = f.to_bytes();
            let head = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!(head % 8, 0, "the header is padded to 8 bytes");
            parsed += usize::from(Tensors::from_bytes(&bytes).is_ok());
        }
        // Some mutations make inconsistent files, most do not.
        assert!(parsed > 100 && parsed < 300, "{parsed} of 300 parsed");
    }
}

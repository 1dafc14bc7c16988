//! Named tensors in memory, and their `.safetensors` form.
//!
//! The weight importers and the golden checker read through [`Tensors`], so that every
//! lookup checks dtype and shape and names the tensor in its error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;

use crate::model::error::{Error, Result};

/// The element data of a [`Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 32-bit signed integers (ids, sequence lengths). `I64` files are narrowed on load.
    I32(Vec<i32>),
    /// Any other dtype, kept only by name so that a lookup can report it.
    Other(String),
}

/// One owned tensor: a shape and row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major elements.
    pub data: TensorData,
}

impl Tensor {
    fn dtype_name(&self) -> &str {
        match &self.data {
            TensorData::F32(_) => "F32",
            TensorData::I32(_) => "I32",
            TensorData::Other(name) => name,
        }
    }
}

/// A map of named tensors plus string metadata, as in a `.safetensors` file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensors {
    map: BTreeMap<String, Tensor>,
    metadata: BTreeMap<String, String>,
}

impl Tensors {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) an `F32` tensor.
    ///
    /// # Errors
    /// [`Error::Shape`] when `data.len()` is not the product of `shape`, or that product
    /// overflows `usize`.
    pub fn insert_f32(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> Result<()> {
        let n = element_count(name, shape)?;
        if n != data.len() {
            return Err(Error::shape(name, shape, &[data.len()]));
        }
        self.map.insert(
            name.to_string(),
            Tensor {
                shape: shape.to_vec(),
                data: TensorData::F32(data),
            },
        );
        Ok(())
    }

    /// Inserts (or replaces) an `I32` tensor.
    ///
    /// # Errors
    /// [`Error::Shape`] when `data.len()` is not the product of `shape`, or that product
    /// overflows `usize`.
    pub fn insert_i32(&mut self, name: &str, shape: &[usize], data: Vec<i32>) -> Result<()> {
        let n = element_count(name, shape)?;
        if n != data.len() {
            return Err(Error::shape(name, shape, &[data.len()]));
        }
        self.map.insert(
            name.to_string(),
            Tensor {
                shape: shape.to_vec(),
                data: TensorData::I32(data),
            },
        );
        Ok(())
    }

    /// Sets a metadata entry.
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        self.metadata.insert(key.to_string(), value.to_string());
    }

    /// The metadata entries.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// Whether a tensor called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// The `F32` tensor `name` with its shape.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] or [`Error::Dtype`].
    pub fn f32(&self, name: &str) -> Result<(&[usize], &[f32])> {
        let t = self
            .map
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        match &t.data {
            TensorData::F32(v) => Ok((&t.shape, v)),
            _ => Err(Error::Dtype {
                tensor: name.to_string(),
                expected: "F32".into(),
                actual: t.dtype_name().into(),
            }),
        }
    }

    /// The `F32` tensor `name`, which must have shape `shape`.
    ///
    /// # Errors
    /// [`Error::MissingTensor`], [`Error::Dtype`] or [`Error::Shape`].
    pub fn f32_shaped(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let (s, v) = self.f32(name)?;
        if s != shape {
            return Err(Error::shape(name, shape, s));
        }
        Ok(v)
    }

    /// The `I32` tensor `name` with its shape.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] or [`Error::Dtype`].
    pub fn i32(&self, name: &str) -> Result<(&[usize], &[i32])> {
        let t = self
            .map
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        match &t.data {
            TensorData::I32(v) => Ok((&t.shape, v)),
            _ => Err(Error::Dtype {
                tensor: name.to_string(),
                expected: "I32".into(),
                actual: t.dtype_name().into(),
            }),
        }
    }

    /// Reads a `.safetensors` file.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path when the file cannot be read; [`Error::Format`]
    /// naming the path (and, for a bad header entry, the tensor) when it is not valid
    /// safetensors (see [`Tensors::from_bytes`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Format(msg) => Error::Format(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Parses the bytes of a `.safetensors` file: an 8-byte little-endian header length,
    /// a JSON header naming each tensor's `dtype`, `shape` and `data_offsets` (plus an
    /// optional `__metadata__` map of strings), then the data.
    ///
    /// The header is checked before any data is read: every size is computed with checked
    /// arithmetic, and the tensors' byte ranges must lie inside the data, match their
    /// dtype and shape, and cover the data exactly, without overlap or gap.
    ///
    /// # Errors
    /// [`Error::Format`] when the bytes are too short, the declared header length runs
    /// past them (or past the format's 100 MB limit), the header is not UTF-8 or not a
    /// JSON object, an entry lacks or mistypes a field or names an unknown dtype, a
    /// shape's size overflows, a byte range disagrees with the dtype and shape or runs
    /// past the data, two ranges overlap or leave a gap, or an `I64` value does not fit
    /// `I32`. The message names the tensor when one entry is at fault.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        check_header(bytes)?;
        // The header is sound; the safetensors crate parses it again and hands out views.
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e}")))?;
        let mut out = Tensors::new();
        if let Some(meta) = header.metadata() {
            out.metadata = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for (name, view) in st.tensors() {
            let data = decode(&name, &view)?;
            out.map.insert(
                name,
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(out)
    }

    /// Serialises to `.safetensors` bytes (tensors of dtype `Other` are left out).
    ///
    /// # Errors
    /// [`Error::Format`] if the safetensors writer refuses the data.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .map
            .iter()
            .filter_map(|(name, t)| {
                let (dtype, bytes) = match &t.data {
                    TensorData::F32(v) => {
                        (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                    }
                    TensorData::I32(v) => {
                        (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                    }
                    TensorData::Other(_) => return None,
                };
                Some((name.clone(), dtype, t.shape.clone(), bytes))
            })
            .collect();
        let views = raw
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.as_str(), v))
                    .map_err(|e| Error::Format(format!("tensor `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta: Option<HashMap<String, String>> = if self.metadata.is_empty() {
            None
        } else {
            Some(self.metadata.clone().into_iter().collect())
        };
        safetensors::serialize(views, meta).map_err(|e| Error::Format(e.to_string()))
    }

    /// Writes a `.safetensors` file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written, or as [`Tensors::to_bytes`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    }
}

/// The number of elements of a tensor of `shape`.
///
/// # Errors
/// [`Error::Shape`] naming `name` when the product overflows `usize`.
fn element_count(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::Shape {
            tensor: name.to_string(),
            expected: format!("at most {} elements", usize::MAX),
            actual: format!("{shape:?} (the element count overflows usize)"),
        })
}

/// The largest header the safetensors format accepts (the `safetensors` crate's limit).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor's entry in a safetensors header, checked against itself.
struct Entry<'h> {
    name: &'h str,
    begin: u64,
    end: u64,
}

/// Checks a safetensors file's framing and header and says, in terms of the tensor at
/// fault, what is wrong with them.
fn check_header(bytes: &[u8]) -> Result<()> {
    let bad = |msg: String| Err(Error::Format(msg));
    let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
        return bad(format!(
            "the file is {} bytes, too short for the 8-byte header length",
            bytes.len()
        ));
    };
    let declared = u64::from_le_bytes(*len_bytes);
    if declared > rest.len() as u64 {
        return bad(format!(
            "the header length is {declared} bytes, but only {} bytes follow it",
            rest.len()
        ));
    }
    if declared > MAX_HEADER_LEN {
        return bad(format!(
            "the header length is {declared} bytes, more than the format's limit of \
             {MAX_HEADER_LEN}"
        ));
    }
    // Fits: at most rest.len().
    let (header, data) = rest.split_at(declared as usize);
    let header = std::str::from_utf8(header).map_err(|e| {
        Error::Format(format!(
            "the header is not UTF-8 (byte {} of the header)",
            e.valid_up_to()
        ))
    })?;
    let header: Value = serde_json::from_str(header)
        .map_err(|e| Error::Format(format!("the header is not valid JSON: {e}")))?;
    let Value::Object(header) = header else {
        return bad("the header is not a JSON object".into());
    };
    let mut entries = Vec::with_capacity(header.len());
    for (name, entry) in &header {
        if name == "__metadata__" {
            // A map of strings, or null as the safetensors crate allows.
            let strings = entry.is_null()
                || entry
                    .as_object()
                    .is_some_and(|m| m.values().all(Value::is_string));
            if !strings {
                return bad(format!(
                    "the header's `__metadata__` is not a map of strings: {entry}"
                ));
            }
            continue;
        }
        entries.push(check_entry(name, entry, data.len() as u64)?);
    }
    // The ranges, in order, must tile the data: each starts where the previous ended.
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut covered = 0u64;
    let mut previous: Option<&Entry<'_>> = None;
    for e in &entries {
        if e.begin < covered {
            let p = previous.expect("covered > 0 only after an entry");
            return bad(format!(
                "tensors `{}` [{}, {}] and `{}` [{}, {}] overlap",
                p.name, p.begin, p.end, e.name, e.begin, e.end
            ));
        }
        if e.begin > covered {
            return bad(format!(
                "bytes {covered}..{} of the data belong to no tensor (the next is `{}`)",
                e.begin, e.name
            ));
        }
        covered = e.end;
        previous = Some(e);
    }
    if covered != data.len() as u64 {
        return bad(format!(
            "the data is {} bytes but the tensors cover {covered}",
            data.len()
        ));
    }
    Ok(())
}

/// Checks one tensor's header entry: its fields, that its size is countable and that
/// its byte range holds exactly that many bytes inside the `data_len` bytes of data.
fn check_entry<'h>(name: &'h str, entry: &Value, data_len: u64) -> Result<Entry<'h>> {
    let bad = |msg: String| Err(Error::Format(format!("tensor `{name}`: {msg}")));
    let Value::Object(entry) = entry else {
        return bad(format!("the header entry is not an object: {entry}"));
    };
    let field = |key: &str| {
        entry.get(key).ok_or_else(|| {
            Error::Format(format!("tensor `{name}`: the header entry has no `{key}`"))
        })
    };
    let dtype_name = field("dtype")?;
    let Some(dtype_str) = dtype_name.as_str() else {
        return bad(format!("`dtype` is not a string: {dtype_name}"));
    };
    let Ok(dtype) = serde_json::from_value::<Dtype>(dtype_name.clone()) else {
        return bad(format!("unknown dtype `{dtype_str}`"));
    };
    let shape_value = field("shape")?;
    let shape: Option<Vec<usize>> = shape_value.as_array().and_then(|dims| {
        dims.iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect()
    });
    let Some(shape) = shape else {
        return bad(format!(
            "`shape` is not a list of non-negative integers: {shape_value}"
        ));
    };
    let offsets_value = field("data_offsets")?;
    let offsets: Option<Vec<u64>> = offsets_value
        .as_array()
        .and_then(|o| o.iter().map(Value::as_u64).collect());
    let Some(&[begin, end]) = offsets.as_deref() else {
        return bad(format!(
            "`data_offsets` is not two non-negative integers [begin, end]: {offsets_value}"
        ));
    };
    let Some(bits) = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.bitsize()))
    else {
        return bad(format!(
            "dtype {dtype:?} and shape {shape:?} take more bytes than usize can count \
             (overflow)"
        ));
    };
    if bits % 8 != 0 {
        return bad(format!(
            "dtype {dtype:?} and shape {shape:?} take {bits} bits, not a whole number of bytes"
        ));
    }
    let size = (bits / 8) as u64;
    if end < begin {
        return bad(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        ));
    }
    if end > data_len {
        return bad(format!(
            "data_offsets [{begin}, {end}] run past the end of the data ({data_len} bytes)"
        ));
    }
    if end - begin != size {
        return bad(format!(
            "dtype {dtype:?} and shape {shape:?} take {size} bytes, but data_offsets \
             [{begin}, {end}] hold {}",
            end - begin
        ));
    }
    Ok(Entry { name, begin, end })
}

fn decode(name: &str, view: &TensorView<'_>) -> Result<TensorData> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => TensorData::F32(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Dtype::I32 => TensorData::I32(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        // PyTorch writes lengths and ids as int64 by default; accept them when they fit.
        Dtype::I64 => TensorData::I32(
            bytes
                .chunks_exact(8)
                .map(|b| {
                    let v = i64::from_le_bytes(b.try_into().expect("chunks_exact(8)"));
                    i32::try_from(v).map_err(|_| {
                        Error::Format(format!("tensor `{name}`: I64 value {v} does not fit I32"))
                    })
                })
                .collect::<Result<_>>()?,
        ),
        other => TensorData::Other(format!("{other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_bytes() {
        let mut t = Tensors::new();
        t.insert_f32("a/b", &[2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-30, -0.0])
            .unwrap();
        t.insert_i32("ids", &[3], vec![1, -7, 9]).unwrap();
        t.set_metadata("format", "lstm-golden/1");
        let back = Tensors::from_bytes(&t.to_bytes().unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn lookups_name_the_problem() {
        let mut t = Tensors::new();
        t.insert_i32("ids", &[3], vec![1, 2, 3]).unwrap();
        assert_eq!(t.f32("x").unwrap_err(), Error::MissingTensor("x".into()));
        assert!(matches!(t.f32("ids"), Err(Error::Dtype { tensor, .. }) if tensor == "ids"));
        assert!(t.insert_f32("bad", &[2, 2], vec![0.0; 3]).is_err());
    }

    #[test]
    fn truncated_bytes_are_an_error() {
        let mut t = Tensors::new();
        t.insert_f32("w", &[4], vec![1.0; 4]).unwrap();
        let bytes = t.to_bytes().unwrap();
        for cut in [0, 4, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(
                Tensors::from_bytes(&bytes[..cut]),
                Err(Error::Format(_))
            ));
        }
    }
}

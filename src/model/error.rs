//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in `lstm-kernels`: bad configuration, a tensor of the
/// wrong shape or type, a missing tensor, an unreadable file.
///
/// Messages name the tensor involved and, for shape errors, the expected and the actual
/// shape, so that a caller can find the mistake without a debugger.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A configuration value is out of range (zero sizes, non-finite floats, ...).
    Config(String),
    /// A tensor has the wrong shape or length.
    Shape {
        /// Name of the tensor (e.g. `input`, `layers/0/kernel`, `sequence_length`).
        tensor: String,
        /// The expected shape, as text (e.g. `[5, 10, 20]`).
        expected: String,
        /// The shape (or length) actually given.
        actual: String,
    },
    /// A sequence length is outside `0..=T`.
    Length {
        /// Row of the batch.
        index: usize,
        /// The offending length.
        value: i64,
        /// Number of time steps `T` of the input.
        steps: usize,
    },
    /// A tensor that the operation needs is not in the file or map.
    MissingTensor(String),
    /// A tensor has the wrong element type.
    Dtype {
        /// Name of the tensor.
        tensor: String,
        /// The expected dtype (e.g. `F32`).
        expected: String,
        /// The dtype found.
        actual: String,
    },
    /// A file could not be read, or is not a valid `.safetensors` / golden file.
    Format(String),
    /// An operating-system I/O error, with the path involved.
    Io(String),
    /// A buffer whose size the call's sizes imply could not be allocated: the machine
    /// (or the process's limit) does not have the memory. Nothing was computed; the
    /// caller's buffers keep their contents.
    OutOfMemory {
        /// The buffer (e.g. `output`, `train_reserve/gates`).
        buffer: String,
        /// Bytes asked for (`usize::MAX` when the count itself overflows).
        bytes: usize,
    },
}

impl Error {
    pub(crate) fn shape(tensor: impl Into<String>, expected: &[usize], actual: &[usize]) -> Self {
        Error::Shape {
            tensor: tensor.into(),
            expected: format!("{expected:?}"),
            actual: format!("{actual:?}"),
        }
    }

    /// A shape error for a buffer of `actual_len` elements that should be `expected`.
    pub(crate) fn shape_of_len(tensor: &str, expected: &[usize], actual_len: usize) -> Self {
        Error::Shape {
            tensor: tensor.to_string(),
            expected: match expected.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
                Some(n) => format!("{expected:?} ({n} elements)"),
                None => format!("{expected:?} (more elements than usize holds)"),
            },
            actual: format!("{actual_len} elements"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "invalid configuration: {msg}"),
            Error::Shape {
                tensor,
                expected,
                actual,
            } => write!(f, "tensor `{tensor}`: expected shape {expected}, got {actual}"),
            Error::Length {
                index,
                value,
                steps,
            } => write!(
                f,
                "tensor `sequence_length`: entry {index} is {value}, expected a length in 0..={steps}"
            ),
            Error::MissingTensor(name) => write!(f, "tensor `{name}` is missing"),
            Error::Dtype {
                tensor,
                expected,
                actual,
            } => write!(f, "tensor `{tensor}`: expected dtype {expected}, got {actual}"),
            Error::Format(msg) => write!(f, "invalid file: {msg}"),
            Error::Io(msg) => write!(f, "I/O error: {msg}"),
            Error::OutOfMemory { buffer, bytes } => write!(
                f,
                "out of memory: buffer `{buffer}` of {bytes} bytes could not be allocated"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

//! Status codes, the thread's last error message, and the guard every entry point runs
//! its body in (so that no panic unwinds into C).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use lstm_kernels::Error;

/// What every fallible entry point returns. On anything but `LSTM_STATUS_OK`,
/// `lstm_last_error()` says what went wrong, naming the argument or tensor and the
/// expected and actual sizes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lstm_status {
    /// Success.
    LSTM_STATUS_OK = 0,
    /// A value is out of range: a bad spec, an unknown convention or flag, a tensor
    /// missing from a weight set, a sequence length outside `0..=T`, a handle made for
    /// another spec, a backward pass without its forward-training pass.
    LSTM_STATUS_INVALID_ARGUMENT = 1,
    /// A pointer that must not be NULL is NULL.
    LSTM_STATUS_NULL_POINTER = 2,
    /// A pointer is not aligned for its type (4 bytes for `float` and `int32_t`).
    LSTM_STATUS_MISALIGNED_POINTER = 3,
    /// A buffer's length or a tensor's shape is not what the spec and sizes need, or
    /// sizes whose buffers could not exist (their byte counts overflow).
    LSTM_STATUS_SHAPE_MISMATCH = 4,
    /// The memory a call needs could not be allocated; nothing ran.
    LSTM_STATUS_OUT_OF_MEMORY = 5,
    /// A file could not be read or is not a valid `.safetensors` file (or holds a
    /// tensor of another dtype).
    LSTM_STATUS_IO_ERROR = 6,
    /// A bug: the library panicked. The panic was caught at the boundary; the handles
    /// the call was given may hold partial results but stay safe to destroy.
    LSTM_STATUS_INTERNAL_ERROR = 7,
}

use lstm_status::*;

/// A failed call: its status and message, turned into the return value and
/// `lstm_last_error()` by [`guard`].
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: lstm_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: lstm_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(LSTM_STATUS_INVALID_ARGUMENT, message)
    }
    pub(crate) fn shape(message: impl Into<String>) -> Self {
        Self::new(LSTM_STATUS_SHAPE_MISMATCH, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        // An exhaustive match: a new kind of error must be given its code here.
        let status = match &e {
            Error::Config(_) | Error::Length { .. } | Error::MissingTensor(_) => {
                LSTM_STATUS_INVALID_ARGUMENT
            }
            Error::Shape { .. } => LSTM_STATUS_SHAPE_MISMATCH,
            Error::Dtype { .. } | Error::Format(_) | Error::Io(_) => LSTM_STATUS_IO_ERROR,
            Error::OutOfMemory { .. } => LSTM_STATUS_OUT_OF_MEMORY,
        };
        Failure::new(status, e.to_string())
    }
}

/// The result of an entry point's body.
pub(crate) type CResult<T = ()> = Result<T, Failure>;

thread_local! {
    /// The message of the last failed call on this thread ("" after a success). A
    /// `CString` so that `lstm_last_error` can hand out its pointer without a copy.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message with a NUL inside would be cut short in C anyway: drop the NULs.
    let c = CString::new(message.replace('\0', "")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an entry point's body: clears the thread's last error, catches a panic
/// (`LSTM_STATUS_INTERNAL_ERROR`, its message kept), and turns a failure into its status
/// and message.
pub(crate) fn guard(body: impl FnOnce() -> CResult) -> lstm_status {
    set_last_error("");
    // AssertUnwindSafe: after a panic, the handles the body touched are left to the
    // caller, who can only destroy them or pass them back to entry points that validate
    // everything again; no broken invariant of ours is observed across the boundary.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LSTM_STATUS_OK,
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            set_last_error(&format!("internal error (a bug in lstm-kernels): {what}"));
            LSTM_STATUS_INTERNAL_ERROR
        }
    }
}

/// The message of the last failed call on this thread: the argument or tensor at fault
/// with the expected and actual sizes; `""` when the last call succeeded.
///
/// Never NULL. The string belongs to the library and stays valid until the next call
/// into the library on this thread (copy it to keep it).
#[no_mangle]
pub extern "C" fn lstm_last_error() -> *const c_char {
    // No panic can happen here (a borrow of a cell that nothing else borrows while this
    // runs), so no guard: and the guard would clear the message.
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A static name for a status code (`"LSTM_STATUS_SHAPE_MISMATCH"`), or
/// `"LSTM_STATUS_UNKNOWN"` for a number that is none. Never NULL; never changes the
/// thread's last error.
#[no_mangle]
pub extern "C" fn lstm_status_name(status: i32) -> *const c_char {
    let name: &'static [u8] = match status {
        0 => b"LSTM_STATUS_OK\0",
        1 => b"LSTM_STATUS_INVALID_ARGUMENT\0",
        2 => b"LSTM_STATUS_NULL_POINTER\0",
        3 => b"LSTM_STATUS_MISALIGNED_POINTER\0",
        4 => b"LSTM_STATUS_SHAPE_MISMATCH\0",
        5 => b"LSTM_STATUS_OUT_OF_MEMORY\0",
        6 => b"LSTM_STATUS_IO_ERROR\0",
        7 => b"LSTM_STATUS_INTERNAL_ERROR\0",
        _ => b"LSTM_STATUS_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: lstm_last_error returns a valid NUL-terminated string, alive until the
        // next call on this thread; it is copied at once.
        unsafe { CStr::from_ptr(lstm_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_is_caught_and_named() {
        let status = guard(|| panic!("boom {}", 7));
        assert_eq!(status, LSTM_STATUS_INTERNAL_ERROR);
        assert!(last().contains("boom 7"), "{}", last());
        let status = guard(|| std::panic::panic_any(42_u32));
        assert_eq!(status, LSTM_STATUS_INTERNAL_ERROR);
        assert!(last().contains("without a message"), "{}", last());
    }

    #[test]
    fn a_success_clears_the_message_and_nuls_are_dropped() {
        assert_eq!(
            guard(|| Err(Failure::shape("a\0b"))),
            LSTM_STATUS_SHAPE_MISMATCH
        );
        assert_eq!(last(), "ab");
        assert_eq!(guard(|| Ok(())), LSTM_STATUS_OK);
        assert_eq!(last(), "");
    }

    #[test]
    fn errors_map_to_their_codes() {
        let cases = [
            (Error::Config("x".into()), LSTM_STATUS_INVALID_ARGUMENT),
            (
                Error::MissingTensor("t".into()),
                LSTM_STATUS_INVALID_ARGUMENT,
            ),
            (Error::Io("p".into()), LSTM_STATUS_IO_ERROR),
            (Error::Format("p".into()), LSTM_STATUS_IO_ERROR),
            (
                Error::OutOfMemory {
                    buffer: "b".into(),
                    bytes: 1,
                },
                LSTM_STATUS_OUT_OF_MEMORY,
            ),
        ];
        for (e, want) in cases {
            let msg = e.to_string();
            let f = Failure::from(e);
            assert_eq!((f.status, f.message), (want, msg));
        }
    }

    #[test]
    fn every_code_has_its_name() {
        for (code, want) in [
            (LSTM_STATUS_OK, "LSTM_STATUS_OK"),
            (LSTM_STATUS_INTERNAL_ERROR, "LSTM_STATUS_INTERNAL_ERROR"),
            (LSTM_STATUS_IO_ERROR, "LSTM_STATUS_IO_ERROR"),
        ] {
            // SAFETY: lstm_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(lstm_status_name(code as i32)) };
            assert_eq!(name.to_str().unwrap(), want);
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(lstm_status_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "LSTM_STATUS_UNKNOWN");
    }
}

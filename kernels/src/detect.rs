//! Choosing the kernels: an ISA is handed out only if the CPU has it and it
//! passes its self-check against the scalar path; the process's choice is made
//! once (honouring `LSTM_KERNELS_ISA`).

use std::fmt;
use std::sync::OnceLock;

use crate::dispatch::Kernels;
use crate::isa::{Isa, ISA_ENV};
use crate::selfcheck::agrees_with_scalar;

/// The ISAs this build can run on this CPU (and that passed their
/// self-check, see [`Kernels::for_isa`]), best first; always ends with
/// [`Isa::Scalar`].
pub fn available_isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&i| Kernels::for_isa(i).is_some())
        .collect()
}

/// Why [`Kernels::try_detect`] could not honour `LSTM_KERNELS_ISA`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectError {
    /// The variable names no ISA.
    UnknownIsa(String),
    /// The named ISA is not supported by this build or CPU.
    Unavailable(Isa),
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectError::UnknownIsa(s) => write!(
                f,
                "{ISA_ENV}={s:?} names no ISA (expected one of scalar, avx2, avx512, neon, or auto)"
            ),
            DetectError::Unavailable(isa) => write!(
                f,
                "{ISA_ENV}={isa} was requested but this CPU or build lacks it (available: {})",
                available_isas()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::error::Error for DetectError {}

/// Resolves a value of `LSTM_KERNELS_ISA` (`None`, empty or `auto`: the
/// best available ISA).
pub fn resolve_isa(forced: Option<&str>) -> Result<Isa, DetectError> {
    match forced.map(str::trim) {
        None | Some("") => Ok(available_isas()[0]),
        Some(s) if s.eq_ignore_ascii_case("auto") => Ok(available_isas()[0]),
        Some(s) => {
            let isa = Isa::from_name(s).ok_or_else(|| DetectError::UnknownIsa(s.to_string()))?;
            if Kernels::for_isa(isa).is_some() {
                Ok(isa)
            } else {
                Err(DetectError::Unavailable(isa))
            }
        }
    }
}

static DETECTED: OnceLock<Result<Kernels, DetectError>> = OnceLock::new();

impl Kernels {
    /// The kernels for `isa`, or `None` when this build or CPU lacks it.
    ///
    /// A SIMD ISA is also refused if it fails its self-check: the first
    /// time it is asked for in a process, it runs the activations, a step
    /// and a backward on fixed inputs and must return the scalar path's
    /// bits (a guard for ISA paths that the CI machine cannot run). A
    /// failure is reported once on stderr.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        static CHECKED: [OnceLock<bool>; 4] = [const { OnceLock::new() }; 4];
        let k = Kernels::unchecked(isa)?;
        if isa == Isa::Scalar {
            return Some(k);
        }
        let slot = Isa::ALL.iter().position(|&i| i == isa).expect("listed");
        let ok = *CHECKED[slot].get_or_init(|| {
            let scalar = Kernels::unchecked(Isa::Scalar).expect("always available");
            let ok = agrees_with_scalar(&k, &scalar);
            if !ok {
                eprintln!(
                    "lstm-kernels-simd: the {isa} kernels disagree with the scalar path on \
                     this CPU; {isa} is disabled (please report this)"
                );
            }
            ok
        });
        ok.then_some(k)
    }

    /// The best ISA of this CPU, or the one `LSTM_KERNELS_ISA` names;
    /// decided once per process.
    ///
    /// # Panics
    /// When `LSTM_KERNELS_ISA` names an unknown ISA or one this CPU lacks:
    /// a forced choice that silently fell back would make benchmarks and CI
    /// matrices lie. Use [`Kernels::try_detect`] to handle it instead.
    pub fn detect() -> Kernels {
        match Kernels::try_detect() {
            Ok(k) => k,
            Err(e) => panic!("lstm-kernels-simd: {e}"),
        }
    }

    /// [`Kernels::detect`] without the panic.
    pub fn try_detect() -> Result<Kernels, DetectError> {
        DETECTED
            .get_or_init(|| {
                let forced = std::env::var(ISA_ENV).ok();
                let isa = resolve_isa(forced.as_deref())?;
                Ok(Kernels::for_isa(isa).expect("resolve_isa returns available ISAs"))
            })
            .clone()
    }
}

//! Choosing the kernels: an ISA is handed out only if this build has it, the CPU
//! has it and it passes its self-check against the scalar path; the process's
//! choice is made once (honouring `LSTM_KERNELS_ISA`).
//!
//! An ISA that fails its self-check is not handed out (users fall back to the
//! next best ISA), but the failure stays visible as a value,
//! [`IsaStatus::FailedSelfCheck`], so that tests iterate over [`cpu_isas`] and
//! fail on it instead of silently testing one ISA fewer.

use std::fmt;
use std::sync::OnceLock;

use crate::dispatch::Kernels;
use crate::isa::{Isa, ISA_ENV};
use crate::selfcheck::agrees_with_scalar;

/// Whether an ISA's kernels are handed out in this process, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IsaStatus {
    /// This build has the ISA, the CPU has it, and its kernels passed their
    /// self-check ([`Isa::Scalar`]: always): [`Kernels::for_isa`] returns them.
    Available,
    /// This build has no kernels for the ISA (they are for another target
    /// architecture).
    NotInBuild,
    /// This build has the kernels but this CPU lacks the instructions.
    NotOnCpu,
    /// This build and this CPU have the ISA, but its kernels did not return the
    /// scalar path's bits in the self-check: they are disabled in this process.
    /// This is a bug in the kernels (or the CPU), never an expected state.
    FailedSelfCheck,
}

impl IsaStatus {
    /// Whether this build and this CPU support the ISA, whether or not its kernels
    /// passed their self-check ([`IsaStatus::Available`] or
    /// [`IsaStatus::FailedSelfCheck`]).
    pub fn on_cpu(self) -> bool {
        matches!(self, IsaStatus::Available | IsaStatus::FailedSelfCheck)
    }
}

impl fmt::Display for IsaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IsaStatus::Available => "available",
            IsaStatus::NotInBuild => "not in this build",
            IsaStatus::NotOnCpu => "not on this CPU",
            IsaStatus::FailedSelfCheck => "failed its self-check against the scalar path",
        })
    }
}

impl Isa {
    /// Whether this ISA's kernels are handed out in this process, and if not, why:
    /// [`isa_status`].
    pub fn status(self) -> IsaStatus {
        isa_status(self)
    }
}

/// Whether this build was compiled with `isa`'s kernels.
fn in_build(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
        Isa::Neon => cfg!(target_arch = "aarch64"),
    }
}

/// The status of `isa` from whether it is in the build, its unchecked kernels
/// (`None`: the CPU lacks it) and the self-check's verdict on them.
fn classify(
    isa: Isa,
    kernels: Option<Kernels>,
    passes: impl FnOnce(&Kernels) -> bool,
) -> IsaStatus {
    if !in_build(isa) {
        return IsaStatus::NotInBuild;
    }
    match kernels {
        None => IsaStatus::NotOnCpu,
        Some(k) if passes(&k) => IsaStatus::Available,
        Some(_) => IsaStatus::FailedSelfCheck,
    }
}

/// Whether `isa`'s kernels are handed out in this process, and if not, why.
///
/// The first call for a SIMD ISA the CPU has runs its self-check (the
/// activations, a step and a backward on fixed inputs, which must return the
/// scalar path's bits: a guard for ISA paths the CI machine cannot run); the
/// verdict is kept for the life of the process. A failure is also reported once
/// on stderr.
pub fn isa_status(isa: Isa) -> IsaStatus {
    static CHECKED: [OnceLock<bool>; Isa::ALL.len()] = [const { OnceLock::new() }; Isa::ALL.len()];
    classify(isa, Kernels::unchecked(isa), |k| {
        if isa == Isa::Scalar {
            // The scalar path is the reference the others are checked against.
            return true;
        }
        let slot = Isa::ALL.iter().position(|&i| i == isa).expect("listed");
        *CHECKED[slot].get_or_init(|| {
            let scalar = Kernels::unchecked(Isa::Scalar).expect("always available");
            let ok = agrees_with_scalar(k, &scalar);
            if !ok {
                eprintln!(
                    "lstm-kernels-simd: the {isa} kernels disagree with the scalar path on \
                     this CPU; {isa} is disabled (please report this)"
                );
            }
            ok
        })
    })
}

/// The ISAs this build and this CPU support, whether or not their kernels passed
/// the self-check, best first; always ends with [`Isa::Scalar`]. Tests that run
/// "on every ISA" iterate over these, so that an ISA which failed its self-check
/// is a failure and not one ISA fewer.
pub fn cpu_isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&i| isa_status(i).on_cpu())
        .collect()
}

/// The ISAs whose kernels are handed out in this process
/// ([`IsaStatus::Available`]: in the build, on the CPU and through the
/// self-check), best first; always ends with [`Isa::Scalar`].
pub fn available_isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&i| isa_status(i) == IsaStatus::Available)
        .collect()
}

/// Why [`Kernels::try_detect`] could not honour `LSTM_KERNELS_ISA`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectError {
    /// The variable names no ISA.
    UnknownIsa(String),
    /// The named ISA is not in this build or not on this CPU
    /// ([`IsaStatus::NotInBuild`] or [`IsaStatus::NotOnCpu`]).
    Unavailable(Isa),
    /// The CPU has the named ISA, but its kernels failed their self-check
    /// against the scalar path ([`IsaStatus::FailedSelfCheck`]).
    FailedSelfCheck(Isa),
}

fn available_list() -> String {
    available_isas()
        .iter()
        .map(|i| i.name())
        .collect::<Vec<_>>()
        .join(", ")
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
                available_list()
            ),
            DetectError::FailedSelfCheck(isa) => write!(
                f,
                "{ISA_ENV}={isa} was requested; this CPU has it, but the {isa} kernels failed \
                 their self-check (they disagree with the scalar path) and are disabled; please \
                 report this (available: {})",
                available_list()
            ),
        }
    }
}

impl std::error::Error for DetectError {}

/// Resolves a value of `LSTM_KERNELS_ISA` (`None`, empty or `auto`: the
/// best available ISA).
///
/// # Errors
/// [`DetectError::UnknownIsa`] for a name that is no ISA,
/// [`DetectError::Unavailable`] for an ISA this build or CPU lacks,
/// [`DetectError::FailedSelfCheck`] for one whose kernels failed their self-check.
pub fn resolve_isa(forced: Option<&str>) -> Result<Isa, DetectError> {
    resolve_with(forced, isa_status)
}

/// [`resolve_isa`] with the status of each ISA given by `status`.
fn resolve_with(
    forced: Option<&str>,
    status: impl Fn(Isa) -> IsaStatus,
) -> Result<Isa, DetectError> {
    let best = || {
        Isa::ALL
            .into_iter()
            .find(|&i| status(i) == IsaStatus::Available)
            .expect("scalar is always available")
    };
    match forced.map(str::trim) {
        None | Some("") => Ok(best()),
        Some(s) if s.eq_ignore_ascii_case("auto") => Ok(best()),
        Some(s) => {
            let isa = Isa::from_name(s).ok_or_else(|| DetectError::UnknownIsa(s.to_string()))?;
            match status(isa) {
                IsaStatus::Available => Ok(isa),
                IsaStatus::FailedSelfCheck => Err(DetectError::FailedSelfCheck(isa)),
                IsaStatus::NotInBuild | IsaStatus::NotOnCpu => Err(DetectError::Unavailable(isa)),
            }
        }
    }
}

static DETECTED: OnceLock<Result<Kernels, DetectError>> = OnceLock::new();

impl Kernels {
    /// The kernels for `isa`, or `None` when it is not [`IsaStatus::Available`]:
    /// this build or CPU lacks it, or its kernels failed their self-check
    /// ([`isa_status`] says which).
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        match isa_status(isa) {
            IsaStatus::Available => Kernels::unchecked(isa),
            _ => None,
        }
    }

    /// The best ISA of this CPU, or the one `LSTM_KERNELS_ISA` names;
    /// decided once per process.
    ///
    /// # Panics
    /// When `LSTM_KERNELS_ISA` names an unknown ISA, one this CPU lacks or one
    /// that failed its self-check: a forced choice that silently fell back would
    /// make benchmarks and CI matrices lie. Use [`Kernels::try_detect`] to handle
    /// it instead.
    pub fn detect() -> Kernels {
        match Kernels::try_detect() {
            Ok(k) => k,
            Err(e) => panic!("lstm-kernels-simd: {e}"),
        }
    }

    /// [`Kernels::detect`] without the panic.
    ///
    /// # Errors
    /// As [`resolve_isa`], for the value of `LSTM_KERNELS_ISA`.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIMD ISA whose kernels disagree with the scalar path is classified
    /// `FailedSelfCheck` (not `NotOnCpu`), stays among the CPU's ISAs, and a forced
    /// choice of it says so; `auto` falls back to the next available ISA.
    #[test]
    fn a_failed_self_check_is_a_status_and_a_detect_error() {
        let scalar = Kernels::unchecked(Isa::Scalar).unwrap();
        let broken = scalar.broken_for_test();
        let check = |k: &Kernels| agrees_with_scalar(k, &scalar);
        assert_eq!(
            classify(Isa::Scalar, Some(scalar), check),
            IsaStatus::Available
        );
        assert_eq!(
            classify(Isa::Scalar, Some(broken), check),
            IsaStatus::FailedSelfCheck
        );
        assert_eq!(classify(Isa::Scalar, None, check), IsaStatus::NotOnCpu);
        let other_arch = if cfg!(target_arch = "aarch64") {
            Isa::Avx2
        } else {
            Isa::Neon
        };
        assert_eq!(
            classify(other_arch, Some(scalar), check),
            IsaStatus::NotInBuild
        );
        assert!(IsaStatus::FailedSelfCheck.on_cpu() && IsaStatus::Available.on_cpu());
        assert!(!IsaStatus::NotOnCpu.on_cpu() && !IsaStatus::NotInBuild.on_cpu());

        // Pretend the best SIMD ISA of a machine that has them all failed.
        let status = |i: Isa| match i {
            Isa::Avx512 => IsaStatus::FailedSelfCheck,
            Isa::Neon => IsaStatus::NotInBuild,
            _ => IsaStatus::Available,
        };
        assert_eq!(
            resolve_with(Some("avx512"), status),
            Err(DetectError::FailedSelfCheck(Isa::Avx512))
        );
        assert_eq!(
            resolve_with(Some("neon"), status),
            Err(DetectError::Unavailable(Isa::Neon))
        );
        assert_eq!(resolve_with(Some("auto"), status), Ok(Isa::Avx2));
        assert_eq!(resolve_with(None, status), Ok(Isa::Avx2));
        let msg = DetectError::FailedSelfCheck(Isa::Avx512).to_string();
        assert!(
            msg.contains("LSTM_KERNELS_ISA=avx512") && msg.contains("failed their self-check"),
            "{msg}"
        );
    }

    /// The live statuses agree with `for_isa`, `available_isas` and `cpu_isas`.
    #[test]
    fn statuses_agree_with_the_lists() {
        for isa in Isa::ALL {
            let s = isa.status();
            assert_eq!(s, isa_status(isa));
            assert_eq!(
                Kernels::for_isa(isa).is_some(),
                s == IsaStatus::Available,
                "{isa}"
            );
            assert_eq!(available_isas().contains(&isa), s == IsaStatus::Available);
            assert_eq!(cpu_isas().contains(&isa), s.on_cpu());
            assert_eq!(s == IsaStatus::NotInBuild, !in_build(isa));
        }
        assert_eq!(isa_status(Isa::Scalar), IsaStatus::Available);
        assert_eq!(cpu_isas().last(), Some(&Isa::Scalar));
    }
}

//! ISA selection.

mod common;

use lstm_kernels_simd::{
    available_isas, cpu_isas, isa_status, resolve_isa, DetectError, Isa, IsaStatus, Kernels,
};

/// The self-check's fallback keeps users running when an ISA's kernels disagree with
/// the scalar path, but on the machine that runs the tests it is a failure: every ISA
/// this CPU supports must be handed out.
#[test]
fn every_isa_the_cpu_supports_passes_its_self_check() {
    let cpu = cpu_isas();
    let failed: Vec<Isa> = cpu
        .iter()
        .copied()
        .filter(|&i| isa_status(i) != IsaStatus::Available)
        .collect();
    assert!(
        failed.is_empty(),
        "ISAs this CPU supports but the crate refuses (failed their self-check): {failed:?}"
    );
    assert_eq!(available_isas(), cpu);
    eprintln!("ISAs of this CPU, all available: {cpu:?}");
}

#[test]
fn statuses_are_consistent() {
    let avail = available_isas();
    let cpu = cpu_isas();
    assert_eq!(
        avail.last(),
        Some(&Isa::Scalar),
        "scalar is always there, last"
    );
    assert_eq!(
        cpu.last(),
        Some(&Isa::Scalar),
        "scalar is always there, last"
    );
    for isa in Isa::ALL {
        let status = isa.status();
        assert_eq!(status, isa_status(isa), "{isa}");
        let k = Kernels::for_isa(isa);
        assert_eq!(
            k.is_some(),
            status == IsaStatus::Available,
            "{isa}: {status}"
        );
        assert_eq!(
            avail.contains(&isa),
            status == IsaStatus::Available,
            "{isa}"
        );
        assert_eq!(cpu.contains(&isa), status.on_cpu(), "{isa}");
        // `Isa::is_available` asks the CPU only (no self-check).
        assert_eq!(isa.is_available(), status.on_cpu(), "{isa}: {status}");
        if let Some(k) = k {
            assert_eq!(k.isa(), isa);
            assert!(k.unit_tile() % 4 == 0 && k.mr() >= 1);
        }
    }
    // An ISA of another architecture is not in the build at all.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(Isa::Neon.status(), IsaStatus::NotInBuild);
    #[cfg(target_arch = "aarch64")]
    {
        assert_eq!(Isa::Avx2.status(), IsaStatus::NotInBuild);
        assert_eq!(Isa::Avx512.status(), IsaStatus::NotInBuild);
    }
}

#[test]
fn the_machines_simd_is_found() {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(Isa::Avx2.is_available(), avx2);
        assert_eq!(
            Isa::Avx512.is_available(),
            is_x86_feature_detected!("avx512f")
        );
        assert!(!Isa::Neon.is_available());
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert!(Isa::Neon.is_available());
        assert!(!Isa::Avx2.is_available() && !Isa::Avx512.is_available());
    }
}

#[test]
fn tile_shapes_per_isa() {
    for k in common::all_kernels() {
        let want = match k.isa() {
            Isa::Scalar => (4, 2),
            Isa::Avx2 => (8, 3),
            Isa::Avx512 => (16, 6),
            Isa::Neon => (4, 6),
        };
        assert_eq!((k.unit_tile(), k.mr()), want, "{}", k.isa());
    }
}

#[test]
fn env_values_resolve_or_explain() {
    let best = available_isas()[0];
    assert_eq!(resolve_isa(None), Ok(best));
    assert_eq!(resolve_isa(Some("")), Ok(best));
    assert_eq!(resolve_isa(Some("auto")), Ok(best));
    assert_eq!(resolve_isa(Some(" Scalar ")), Ok(Isa::Scalar));
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
        let upper = isa.name().to_uppercase();
        let got = resolve_isa(Some(&upper));
        match isa.status() {
            IsaStatus::Available => assert_eq!(got, Ok(isa)),
            IsaStatus::FailedSelfCheck => assert_eq!(got, Err(DetectError::FailedSelfCheck(isa))),
            IsaStatus::NotInBuild | IsaStatus::NotOnCpu => {
                assert_eq!(got, Err(DetectError::Unavailable(isa)))
            }
        }
        if let Err(e) = got {
            let msg = e.to_string();
            assert!(
                msg.contains("LSTM_KERNELS_ISA") && msg.contains(isa.name()),
                "{msg}"
            );
        }
    }
    let e = resolve_isa(Some("sse9")).unwrap_err();
    assert_eq!(e, DetectError::UnknownIsa("sse9".into()));
    assert!(
        e.to_string().contains("avx512"),
        "message lists the choices: {e}"
    );
}

/// The arguments that make this test binary run only `child_reports_detected_isa`.
const CHILD_ARGS: [&str; 4] = [
    "--ignored",
    "--exact",
    "child_reports_detected_isa",
    "--nocapture",
];

/// The cargo runner configured for this architecture's target (for example
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu`), split into words: from a
/// `CARGO_TARGET_<TRIPLE>_RUNNER` variable, else from the workspace's
/// `.cargo/config.toml` (the `runner` of a `[target.<triple>]` table whose triple
/// starts with this architecture).
fn cargo_runner() -> Option<Vec<String>> {
    let arch = std::env::consts::ARCH;
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let prefix = format!("CARGO_TARGET_{}_", arch.to_uppercase());
    if let Some((_, v)) = std::env::vars()
        .find(|(k, v)| k.starts_with(&prefix) && k.ends_with("_RUNNER") && !v.trim().is_empty())
    {
        return Some(words(&v));
    }
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cargo/config.toml");
    let text = std::fs::read_to_string(config).ok()?;
    let mut in_table = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line.starts_with(&format!("[target.{arch}-"));
        } else if in_table {
            if let Some(v) = line.strip_prefix("runner").map(str::trim_start) {
                let v = v.strip_prefix('=')?.trim().trim_matches('"');
                return Some(words(v));
            }
        }
    }
    None
}

/// Runs `cmd` (this test binary, perhaps behind a runner) with `LSTM_KERNELS_ISA` set
/// to `value`; `None` when it did not start the test harness.
fn try_child(mut cmd: std::process::Command, value: &str) -> Option<(bool, String)> {
    let out = cmd
        .args(CHILD_ARGS)
        .env("LSTM_KERNELS_ISA", value)
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.contains("running 1 test")
        .then_some((out.status.success(), text))
}

/// Runs this test binary again with `LSTM_KERNELS_ISA` set, executing only
/// `child_reports_detected_isa`; returns whether it succeeded and what it printed.
///
/// The binary is started directly, and when that does not start it, through the
/// target's cargo runner: under qemu user-mode emulation the test process's `execve`
/// goes to the host kernel, which cannot run an aarch64 binary (`Exec format error`,
/// unless binfmt_misc is set up), and glibc's `posix_spawn` loses that error because
/// qemu emulates its `CLONE_VM | CLONE_VFORK` child as a plain fork, so the child just
/// exits 127 with no output. The runner (`qemu-aarch64`) is a host binary, which the
/// host kernel runs.
///
/// # Panics
/// When neither way starts the child.
fn detect_in_child(value: &str) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    if let Some(r) = try_child(std::process::Command::new(&exe), value) {
        return r;
    }
    let runner = cargo_runner().unwrap_or_else(|| {
        panic!(
            "cannot start {} directly and no cargo runner is configured for {}",
            exe.display(),
            std::env::consts::ARCH
        )
    });
    let mut cmd = std::process::Command::new(&runner[0]);
    cmd.args(&runner[1..]).arg(&exe);
    try_child(cmd, value).unwrap_or_else(|| {
        panic!(
            "cannot start {} directly nor through the runner {runner:?}",
            exe.display()
        )
    })
}

#[test]
#[ignore = "helper run by forced_isa_is_honoured_once_per_process in a child process"]
fn child_reports_detected_isa() {
    println!("DETECTED={}", Kernels::detect().isa());
}

#[test]
fn forced_isa_is_honoured_once_per_process() {
    let (ok, out) = detect_in_child("scalar");
    assert!(ok && out.contains("DETECTED=scalar"), "{out}");
    let best = available_isas()[0];
    let (ok, out) = detect_in_child(best.name());
    assert!(ok && out.contains(&format!("DETECTED={best}")), "{out}");
    let (ok, out) = detect_in_child("no-such-isa");
    assert!(
        !ok && out.contains("names no ISA"),
        "a bad value must fail loudly: {out}"
    );
    let missing = Isa::ALL.into_iter().find(|i| !i.is_available()).unwrap();
    let (ok, out) = detect_in_child(missing.name());
    assert!(!ok && out.contains("lacks it"), "{out}");
}

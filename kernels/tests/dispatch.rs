//! ISA selection.

use lstm_kernels_simd::{available_isas, resolve_isa, DetectError, Isa, Kernels};

#[test]
fn available_isas_are_exactly_those_for_isa_accepts() {
    let avail = available_isas();
    assert_eq!(
        avail.last(),
        Some(&Isa::Scalar),
        "scalar is always there, last"
    );
    for isa in Isa::ALL {
        let k = Kernels::for_isa(isa);
        assert_eq!(k.is_some(), avail.contains(&isa), "{isa}");
        if let Some(k) = k {
            assert_eq!(k.isa(), isa);
            assert!(k.unit_tile() % 4 == 0 && k.mr() >= 1);
        }
    }
    eprintln!("ISAs tested on this machine: {avail:?}");
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
    let expect = |isa: Isa, u: usize, mr: usize| {
        if let Some(k) = Kernels::for_isa(isa) {
            assert_eq!((k.unit_tile(), k.mr()), (u, mr), "{isa}");
        }
    };
    expect(Isa::Scalar, 4, 2);
    expect(Isa::Avx2, 8, 3);
    expect(Isa::Avx512, 16, 6);
    expect(Isa::Neon, 4, 6);
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
        match resolve_isa(Some(&upper)) {
            Ok(i) => assert!(i == isa && isa.is_available()),
            Err(e) => {
                assert_eq!(e, DetectError::Unavailable(isa));
                let msg = e.to_string();
                assert!(
                    msg.contains("LSTM_KERNELS_ISA") && msg.contains(isa.name()),
                    "{msg}"
                );
            }
        }
    }
    let e = resolve_isa(Some("sse9")).unwrap_err();
    assert_eq!(e, DetectError::UnknownIsa("sse9".into()));
    assert!(
        e.to_string().contains("avx512"),
        "message lists the choices: {e}"
    );
}

/// Runs this test binary again with `LSTM_KERNELS_ISA` set, executing only
/// `child_reports_detected_isa`, and returns what it printed (None when
/// the binary cannot be run directly, e.g. under an emulator runner).
fn detect_in_child(value: &str) -> Option<(bool, String)> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_reports_detected_isa",
            "--nocapture",
        ])
        .env("LSTM_KERNELS_ISA", value)
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Under an emulator runner the child may not start at all (seen with
    // qemu-user: no output whatsoever).
    text.contains("running 1 test")
        .then_some((out.status.success(), text))
}

#[test]
#[ignore = "helper run by forced_isa_is_honoured_once_per_process in a child process"]
fn child_reports_detected_isa() {
    println!("DETECTED={}", Kernels::detect().isa());
}

#[test]
fn forced_isa_is_honoured_once_per_process() {
    let Some((ok, out)) = detect_in_child("scalar") else {
        eprintln!("cannot run the test binary directly here (emulated?); skipped");
        #[cfg(target_arch = "x86_64")]
        panic!("natively the child must run");
        #[cfg(not(target_arch = "x86_64"))]
        return;
    };
    assert!(ok && out.contains("DETECTED=scalar"), "{out}");
    let (ok, out) = detect_in_child("no-such-isa").unwrap();
    assert!(
        !ok && out.contains("names no ISA"),
        "a bad value must fail loudly: {out}"
    );
    let missing = Isa::ALL.into_iter().find(|i| !i.is_available()).unwrap();
    let (ok, out) = detect_in_child(missing.name()).unwrap();
    assert!(!ok && out.contains("lacks it"), "{out}");
}

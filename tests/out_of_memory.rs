//! Memory the machine does not have is an `Error::OutOfMemory` naming the buffer, never
//! an abort: a batch and a length can ask for more than exists while every size still
//! fits in `usize`, and a C or Python caller cannot catch an abort.
//!
//! Each case runs in a child process (this test binary, re-run on that one test) whose
//! address space is capped with `RLIMIT_AS`, so that an allocation fails the same way
//! on every machine, whatever its memory and overcommit policy; the parent asserts that
//! the child ran the case and exited cleanly (an abort is a failure there).
//!
//! x86_64 Linux only: CI runs aarch64 under qemu user-mode emulation, which neither
//! starts a child aarch64 binary directly nor applies `RLIMIT_AS` (it would limit the
//! emulator). The code under test (`model/alloc.rs`, `AlignedVec::zeroed`) has no
//! architecture-specific part; the fuzz driver's capped allocator checks it too.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::process::Command;

use lstm_kernels::{
    ForwardInput, Gradients, InitialState, Lstm, LstmOptions, LstmSpec, LstmState, LstmWeights,
    TrainReserve, Upstream, Workspace,
};

/// The variable that tells a child which case to run.
const CHILD: &str = "LSTM_KERNELS_OOM_CHILD";
/// The child's address space: room for the test binary, its threads and the small
/// passes, far below what the large ones ask for (tens of GiB and more).
const ADDRESS_SPACE: u64 = 3 << 30;

/// Runs `body` in a child process with the capped address space.
fn in_capped_child(name: &str, body: fn()) {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        let limit = libc::rlimit {
            rlim_cur: ADDRESS_SPACE,
            rlim_max: ADDRESS_SPACE,
        };
        // SAFETY: `limit` is a valid rlimit that outlives the call; lowering a limit of
        // this process touches no memory of ours.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
        assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `now` is a valid rlimit for the call to fill.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut now) };
        assert!(
            rc == 0 && now.rlim_cur == ADDRESS_SPACE,
            "RLIMIT_AS is not in force"
        );
        body();
        println!("oom-child-done {name}");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("the child runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{name}: the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("oom-child-done {name}")),
        "{name}: the child did not run the case:\n{stdout}"
    );
}

/// One layer of 512 units over inputs of width 1: a token needs tens of KiB of scratch
/// (gate projections, outputs, for training the saved gates) for 4 bytes of input.
fn lstm() -> Lstm {
    let spec = LstmSpec::builder(1, &[512]).build().unwrap();
    let weights = LstmWeights::random_uniform(&spec, 0.1, 7);
    let options = LstmOptions {
        threads: Some(2),
        ..LstmOptions::default()
    };
    Lstm::with_options(weights, options).unwrap()
}

/// `B * T` tokens whose pass needs far more than [`ADDRESS_SPACE`] (a 512-unit layer's
/// gate projections alone are 8 KiB a token: 16 GiB here) for 8 MiB of input.
const BIG: (usize, usize) = (2048, 1024);

/// The [`lstm`], its spec, and an input of [`BIG`] tokens.
fn big_case() -> (Lstm, LstmSpec, Vec<f32>) {
    let lstm = lstm();
    let spec = lstm.weights().spec().clone();
    (lstm, spec, vec![0.25; BIG.0 * BIG.1])
}

fn assert_out_of_memory(r: lstm_kernels::Result<()>, what: &str) {
    match r {
        Err(lstm_kernels::Error::OutOfMemory { buffer, bytes }) => {
            assert!(!buffer.is_empty() && bytes > 0, "{what}: {buffer} {bytes}")
        }
        other => panic!("{what}: expected OutOfMemory, got {other:?}"),
    }
}

/// A small pass that must work (and carry) after the failed ones.
fn small_pass_works(lstm: &Lstm, ws: &mut Workspace) {
    let x = vec![0.5; 3 * 4];
    lstm.forward_inference(&ForwardInput::new(&x, 3, 4), ws)
        .unwrap();
    let carried = ForwardInput::new(&x, 3, 4).initial_state(InitialState::Carry);
    lstm.forward_inference(&carried, ws).unwrap();
}

/// A small training pass (forward and backward) that must work after the failed ones.
fn small_training_works(
    lstm: &Lstm,
    ws: &mut Workspace,
    reserve: &mut TrainReserve,
    grads: &mut Gradients,
) {
    let xs = vec![0.5; 2 * 3];
    let small = ForwardInput::new(&xs, 2, 3);
    lstm.forward_training(&small, ws, reserve).unwrap();
    lstm.backward(&small, reserve, &Upstream::default(), ws, grads)
        .unwrap();
}

#[test]
fn a_forward_pass_larger_than_memory_is_an_error() {
    in_capped_child("a_forward_pass_larger_than_memory_is_an_error", || {
        let (lstm, spec, x) = big_case();
        let mut ws = Workspace::new(&spec, 3, 4);
        small_pass_works(&lstm, &mut ws);
        let input = ForwardInput::new(&x, BIG.0, BIG.1);
        assert_out_of_memory(lstm.forward_inference(&input, &mut ws), "inference");
        // Nothing ran: no state of that batch to carry, and the workspace still works.
        let carry = input.initial_state(InitialState::Carry);
        assert!(lstm.forward_inference(&carry, &mut ws).is_err());
        small_pass_works(&lstm, &mut ws);
        assert_out_of_memory(
            lstm_kernels::reference::forward(lstm.weights(), &input, &mut ws),
            "reference",
        );
    });
}

#[test]
fn a_training_pass_larger_than_memory_is_an_error() {
    in_capped_child("a_training_pass_larger_than_memory_is_an_error", || {
        let (lstm, spec, x) = big_case();
        let mut ws = Workspace::new(&spec, 1, 1);
        let mut reserve = lstm.reserve(1, 1);
        let mut grads = Gradients::zeros(&spec, 1, 1);
        let input = ForwardInput::new(&x, BIG.0, BIG.1);
        assert_out_of_memory(
            lstm.forward_training(&input, &mut ws, &mut reserve),
            "training",
        );
        // The reserve holds no pass: backward refuses it rather than reading a tape that
        // was never written.
        let e = lstm
            .backward(&input, &reserve, &Upstream::default(), &mut ws, &mut grads)
            .unwrap_err();
        assert!(matches!(e, lstm_kernels::Error::Config(_)), "{e:?}");
        // A pass that fits still trains.
        small_training_works(&lstm, &mut ws, &mut reserve, &mut grads);
    });
}

#[test]
fn sizing_hints_larger_than_memory_give_empty_buffers() {
    in_capped_child("sizing_hints_larger_than_memory_give_empty_buffers", || {
        let lstm = lstm();
        let spec = lstm.weights().spec().clone();
        // Representable sizes (2^40 tokens of 512 floats fit in usize) that no machine
        // holds: the hints are dropped, and the first pass sizes the buffers.
        let (b, t) = (1 << 20, 1 << 20);
        let mut ws = Workspace::new(&spec, b, t);
        let mut reserve = lstm.reserve(b, t);
        let mut grads = Gradients::zeros(&spec, b, t);
        assert!(grads.input.is_empty());
        small_training_works(&lstm, &mut ws, &mut reserve, &mut grads);
        assert_eq!(grads.input.len(), 2 * 3);
        small_pass_works(&lstm, &mut ws);
    });
}

#[test]
fn a_state_larger_than_memory_is_an_error() {
    in_capped_child("a_state_larger_than_memory_is_an_error", || {
        let spec = LstmSpec::builder(1, &[512]).build().unwrap();
        match LstmState::try_zeros(&spec, 1 << 40) {
            Err(lstm_kernels::Error::OutOfMemory { buffer, .. }) => {
                assert_eq!(buffer, "state/0/c")
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
        // A batch whose state cannot even be counted is a shape error.
        match LstmState::try_zeros(&spec, usize::MAX) {
            Err(lstm_kernels::Error::Shape { tensor, .. }) => assert_eq!(tensor, "state/0/c"),
            other => panic!("expected Shape, got {other:?}"),
        }
        assert_eq!(
            LstmState::try_zeros(&spec, 2).unwrap().cells[0].h.len(),
            2 * 512
        );
    });
}

// Build script. The BLAS wiring (linking the system OpenBLAS when the `openblas`
// feature is on) lives here; the default build is pure Rust and needs nothing.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}

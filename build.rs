// Build script: the BLAS wiring. With the `openblas` feature the crate's sgemm is the
// system OpenBLAS (Debian: `libopenblas-dev`); link it here, so that the library is
// linked even where `openblas-src` (which only links, and which Rust drops when no symbol
// of it is used) does not say so itself. The default build is pure Rust.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OPENBLAS_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_OPENBLAS").is_some() {
        if let Some(dir) = std::env::var_os("OPENBLAS_LIB_DIR") {
            println!("cargo:rustc-link-search=native={}", dir.to_string_lossy());
        }
        println!("cargo:rustc-link-lib=dylib=openblas");
    }
}

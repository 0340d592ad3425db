//! Generates the ABI types from the uapi header, the same header lcfs.ko's bindgen run reads.

use std::path::PathBuf;

fn main() {
    // Read when the script runs, not when it is compiled: cargo's shared build directory
    // (`CARGO_BUILD_BUILD_DIR`) may reuse one compiled script for several clones.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let header = PathBuf::from(dir).join("../../../include/uapi/linux/lcfs.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_type("lcfs_.*")
        .allowlist_var("LCFS_.*")
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on include/uapi/linux/lcfs.h (is libclang installed? make setup)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("uapi.rs");
    bindings.write_to_file(out).expect("write uapi bindings");
}

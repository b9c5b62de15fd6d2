//! Generates `include/nnx_state.h` from the C layer with cbindgen.
//!
//! The header is committed; `tests/c_programs.rs` fails when the committed copy
//! differs from what this script generates.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    config.after_includes = Some(format!(
        "\n#define NNX_STATE_VERSION_MAJOR {}\n#define NNX_STATE_VERSION_MINOR {}\n#define NNX_STATE_VERSION_PATCH {}\n#define NNX_STATE_VERSION \"{}\"",
        env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo"),
        env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo"),
        env::var("CARGO_PKG_VERSION_PATCH").expect("set by cargo"),
        env::var("CARGO_PKG_VERSION").expect("set by cargo"),
    ));

    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let generated = out_dir.join("nnx_state.h");
    bindings.write_to_file(&generated);

    // Refresh the committed copy when it is stale, so a developer sees the
    // change in `git diff`; the header test catches a copy not committed.
    let committed = crate_dir.join("include").join("nnx_state.h");
    let fresh = fs::read(&generated).expect("generated header is readable");
    if fs::read(&committed).ok().as_deref() != Some(fresh.as_slice()) {
        // A read-only checkout cannot be refreshed; the test reports it.
        let _ = fs::create_dir_all(crate_dir.join("include"));
        let _ = fs::write(&committed, &fresh);
    }
}

//! Generates `include/nnx_state.h` from the C layer with cbindgen.
//!
//! The header is committed; `tests/c_programs.rs` fails when the committed copy
//! differs from what this script generates.
//!
//! On ELF targets it also gives the shared library its soname,
//! `libnnx_state.so.<major>`, which `make install` relies on (see
//! `packaging/install.sh`).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let declarations = config.after_includes.take().unwrap_or_default();
    config.after_includes = Some(format!(
        "\n#define NNX_STATE_VERSION_MAJOR {}\n#define NNX_STATE_VERSION_MINOR {}\n#define NNX_STATE_VERSION_PATCH {}\n#define NNX_STATE_VERSION \"{}\"\n{declarations}",
        env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo"),
        env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo"),
        env::var("CARGO_PKG_VERSION_PATCH").expect("set by cargo"),
        env::var("CARGO_PKG_VERSION").expect("set by cargo"),
    ));

    set_soname();

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

/// The ELF targets, where a shared library carries a soname.
const ELF_TARGET_OS: &[&str] = &[
    "linux",
    "android",
    "freebsd",
    "netbsd",
    "openbsd",
    "dragonfly",
    "illumos",
    "solaris",
];

/// Links the cdylib with the soname `libnnx_state.so.<major>`, so that a
/// program linked against an installed `libnnx_state.so` asks for
/// `libnnx_state.so.<major>` at run time (the symlink `make install` puts
/// beside it).
///
/// Programs linked against the build tree ask for that name too, and cargo
/// makes no such link, so this also leaves `libnnx_state.so.<major>`
/// symlinks where cargo puts the library, dangling until it is linked:
/// `deps/` (-> `libnnx_state.so`) and the profile directory
/// (-> `deps/libnnx_state.so`). Both lead to `deps/`, which every build
/// writes, because `cargo test` does not refresh the profile directory's
/// copy and puts that directory first on the test's library path. A
/// failure here is not fatal: only in-tree programs linked with
/// `-lnnx_state` need the links.
fn set_soname() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !ELF_TARGET_OS.contains(&target_os.as_str()) {
        return;
    }
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    let soname = format!("libnnx_state.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    // OUT_DIR is <profile dir>/build/<package>-<hash>/out.
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let Some(profile_dir) = out_dir.ancestors().nth(3) else {
        return;
    };
    let deps = profile_dir.join("deps");
    let _ = fs::create_dir_all(&deps);
    soname_link(&deps.join(&soname), "libnnx_state.so");
    soname_link(&profile_dir.join(&soname), "deps/libnnx_state.so");
}

/// Makes `link` a symlink to `target` (relative to the link's directory).
#[cfg(unix)]
fn soname_link(link: &std::path::Path, target: &str) {
    let target = std::path::Path::new(target);
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return;
    }
    let _ = fs::remove_file(link);
    let _ = std::os::unix::fs::symlink(target, link);
}

#[cfg(not(unix))]
fn soname_link(_link: &std::path::Path, _target: &str) {}

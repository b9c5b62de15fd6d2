//! Packaging: `make install` into a temporary prefix, then the installed
//! library as its users consume it.
//!
//! - The layout: `bin/nnx-state` (which runs), `lib/libnnx_state.so.X.Y.Z` with soname
//!   `libnnx_state.so.X` and the `libnnx_state.so.X` and `libnnx_state.so`
//!   symlinks, `lib/libnnx_state.a`, both headers, `lib/pkgconfig/nnx_state.pc`
//!   and the CMake package; a staged install (`DESTDIR`) and `make uninstall`.
//! - The shared library and the tool are installed without debug
//!   information; `STRIP=` keeps it, `SPLIT_DEBUG=1` moves it to `.debug`
//!   files beside them, linked by `.gnu_debuglink`.
//! - The shared library exports the C API and nothing else: its dynamic
//!   symbols are exactly the functions `nnx_state.h` declares.
//! - `Cargo.toml`'s version is the header's macros, `nnx_version()`, the
//!   pkg-config version and the CMake package version.
//! - Consumers: `examples-c/seed_example.c` (and the C++ example) built with
//!   `pkg-config --cflags --libs nnx_state` (shared) and
//!   `pkg-config --static` (fully static), and a CMake project using
//!   `find_package(nnx_state)` with `nnx_state::nnx_state` (shared) and
//!   `nnx_state::nnx_state_static`. Where `pkg-config`, `cmake` or a C++
//!   compiler is missing, the test prints that it skipped that part.
//!
//! The install runs `make install NO_BUILD=1 LIBDIR=<dir>`: it installs the
//! library cargo built for this test run instead of running
//! `cargo build --release` inside the test (which `make install` does
//! without `NO_BUILD`; `make_install_builds_first` checks that wiring).

#![cfg(target_os = "linux")]

#[path = "cpp/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::{
    c_compiler, crate_dir, cxx_compiler, have, needed_libraries, run, run_ok, skipped, soname,
    Scratch,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");

/// `make` with the variables given, in the crate directory, without the
/// make variables of any make this test runs under.
fn make(args: &[String]) -> Command {
    let mut command = Command::new("make");
    command
        .arg("-C")
        .arg(crate_dir())
        .arg("--no-print-directory")
        .args(args)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    command
}

/// One directory holding this test run's tool, shared and static library,
/// as `make install NO_BUILD=1 LIBDIR=...` wants them. Cargo puts the tool
/// in `target/<profile>` but, under `cargo test` alone, the libraries only
/// in `target/<profile>/deps`; so they are copied together, once.
fn built_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tool = Path::new(env!("CARGO_BIN_EXE_nnx-state"));
        let profile = tool.parent().expect("the tool is in a directory");
        let find = |name: &str| {
            [profile.join("deps").join(name), profile.join(name)]
                .into_iter()
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{name} is not in {}", profile.display()))
        };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging-built");
        fs::create_dir_all(&dir).unwrap();
        for (from, name) in [
            (tool.to_path_buf(), "nnx-state"),
            (find("libnnx_state.so"), "libnnx_state.so"),
            (find("libnnx_state.a"), "libnnx_state.a"),
        ] {
            fs::copy(&from, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

/// The arguments that make `make install` use this test run's build.
fn prebuilt_args() -> Vec<String> {
    vec![
        "NO_BUILD=1".to_owned(),
        format!("LIBDIR={}", built_dir().display()),
    ]
}

/// The section names of an ELF file, or None without readelf.
fn sections(file: &Path) -> Option<Vec<String>> {
    let out = Command::new("readelf")
        .arg("-S")
        .arg("--wide")
        .arg(file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.split(']').nth(1))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
    )
}

fn has_debug_info(file: &Path) -> bool {
    sections(file)
        .expect("readelf runs")
        .iter()
        .any(|s| s == ".debug_info")
}

/// An installed prefix, shared by the tests of this file.
struct Installed {
    prefix: PathBuf,
}

impl Installed {
    fn lib(&self) -> PathBuf {
        self.prefix.join("lib")
    }
    fn include(&self) -> PathBuf {
        self.prefix.join("include")
    }
    fn pkg_config_dir(&self) -> PathBuf {
        self.lib().join("pkgconfig")
    }
    fn cmake_dir(&self) -> PathBuf {
        self.lib().join("cmake").join("nnx_state")
    }
    fn real_shared(&self) -> PathBuf {
        let numeric: String = VERSION
            .split(['-', '+'])
            .next()
            .expect("a version")
            .to_owned();
        self.lib().join(format!("libnnx_state.so.{numeric}"))
    }
}

/// Runs `make install` once per test process.
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Result<Installed, String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let scratch = Scratch::new("packaging", "install");
        let prefix = scratch.path("prefix");
        let mut args = vec!["install".to_owned(), format!("PREFIX={}", prefix.display())];
        args.extend(prebuilt_args());
        let out = run_ok(make(&args), &scratch, "make-install")?;
        println!("{out}");
        // Kept for the other tests; a later run removes it.
        let _ = scratch;
        Ok(Installed { prefix })
    });
    match result {
        Ok(installed) => installed,
        Err(report) => panic!("make install failed:\n{report}"),
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn install_lays_out_the_prefix() {
    let inst = installed();
    let lib = inst.lib();
    let real = inst.real_shared();
    let real_name = real.file_name().unwrap().to_string_lossy().into_owned();
    let soname_file = format!("libnnx_state.so.{MAJOR}");

    // The real file and its two symlinks.
    let meta = fs::symlink_metadata(&real).expect("the versioned shared library is installed");
    assert!(
        meta.file_type().is_file(),
        "{} is a regular file",
        real.display()
    );
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "the shared library is executable"
    );
    let link = fs::read_link(lib.join(&soname_file)).expect("libnnx_state.so.MAJOR is a symlink");
    assert_eq!(link, Path::new(&real_name));
    let dev = fs::read_link(lib.join("libnnx_state.so")).expect("libnnx_state.so is a symlink");
    assert_eq!(dev, Path::new(&soname_file));
    match soname(&real) {
        Some(name) => assert_eq!(name, soname_file, "the soname of {}", real.display()),
        None => skipped("the soname check", "readelf (binutils) is not installed"),
    }

    // The static library, byte for byte what cargo built.
    let a = fs::read(lib.join("libnnx_state.a")).expect("libnnx_state.a is installed");
    assert_eq!(a, fs::read(built_dir().join("libnnx_state.a")).unwrap());

    // The tool, which runs.
    let tool = inst.prefix.join("bin").join("nnx-state");
    let out = Command::new(&tool)
        .arg("--version")
        .output()
        .expect("the installed tool runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("nnx-state {VERSION}")
    );

    // Stripped of debug information, which the build has.
    if sections(&real).is_some() {
        for (installed, built) in [
            (&real, built_dir().join("libnnx_state.so")),
            (&tool, built_dir().join("nnx-state")),
        ] {
            assert!(
                !has_debug_info(installed),
                "{} keeps its debug information",
                installed.display()
            );
            if has_debug_info(&built) {
                let size = |p: &Path| fs::metadata(p).unwrap().len();
                assert!(size(installed) < size(&built), "{}", installed.display());
            }
        }
    } else {
        skipped("the strip check", "readelf (binutils) is not installed");
    }

    // Both headers, as in the crate.
    for header in ["nnx_state.h", "nnx_state.hpp"] {
        assert_eq!(
            read(&inst.include().join(header)),
            read(&crate_dir().join("include").join(header)),
            "installed {header}"
        );
    }

    // pkg-config file.
    let pc = read(&inst.pkg_config_dir().join("nnx_state.pc"));
    for line in [
        format!("prefix={}", inst.prefix.display()),
        "libdir=${prefix}/lib".to_owned(),
        "includedir=${prefix}/include".to_owned(),
        format!("Version: {VERSION}"),
        "Libs: -L${libdir} -lnnx_state".to_owned(),
        "Libs.private: -lpthread -ldl -lm".to_owned(),
        "Cflags: -I${includedir}".to_owned(),
    ] {
        assert!(
            pc.lines().any(|l| l == line),
            "nnx_state.pc lacks `{line}`:\n{pc}"
        );
    }
    assert!(
        !pc.contains('@'),
        "an unfilled placeholder in nnx_state.pc:\n{pc}"
    );

    // CMake package.
    let config = read(&inst.cmake_dir().join("nnx_stateConfig.cmake"));
    let version = read(&inst.cmake_dir().join("nnx_stateConfigVersion.cmake"));
    assert!(config.contains("nnx_state::nnx_state_static") && config.contains(&real_name));
    assert!(
        config.contains("${CMAKE_CURRENT_LIST_DIR}/../../.."),
        "the CMake package finds its prefix relative to itself:\n{config}"
    );
    assert!(version.contains(&format!("set(PACKAGE_VERSION \"{VERSION}\")")));
    for (name, text) in [("Config", &config), ("ConfigVersion", &version)] {
        assert!(
            !text.contains("@"),
            "an unfilled placeholder in nnx_state{name}.cmake"
        );
    }
}

/// `DESTDIR` stages the files while they name `PREFIX`; `make uninstall`
/// removes them again.
#[test]
fn staged_install_and_uninstall() {
    let scratch = Scratch::new("packaging", "staged");
    let stage = scratch.path("stage");
    let vars = |target: &str| {
        let mut args = vec![
            target.to_owned(),
            "PREFIX=/opt/nnx".to_owned(),
            format!("DESTDIR={}", stage.display()),
        ];
        args.extend(prebuilt_args());
        args
    };
    run_ok(make(&vars("install")), &scratch, "install").unwrap_or_else(|r| panic!("{r}"));
    let lib = stage.join("opt/nnx/lib");
    assert!(lib.join(format!("libnnx_state.so.{MAJOR}")).exists());
    assert!(stage.join("opt/nnx/bin/nnx-state").is_file());
    assert!(stage.join("opt/nnx/include/nnx_state.hpp").is_file());
    let pc = read(&lib.join("pkgconfig/nnx_state.pc"));
    assert!(pc.lines().any(|l| l == "prefix=/opt/nnx"), "{pc}");
    assert!(
        !pc.contains(&stage.display().to_string()),
        "DESTDIR leaked into the .pc file"
    );

    run_ok(make(&vars("uninstall")), &scratch, "uninstall").unwrap_or_else(|r| panic!("{r}"));
    let mut left = Vec::new();
    let mut dirs = vec![stage.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                left.push(path);
            }
        }
    }
    assert!(left.is_empty(), "make uninstall left files: {left:?}");
    scratch.done();
}

/// `STRIP=` installs the shared library and the tool as built;
/// `SPLIT_DEBUG=1` strips them and keeps their debug information in
/// `.debug` files that `.gnu_debuglink` names; `bindir` moves the tool;
/// `make uninstall` removes the `.debug` files too.
#[test]
fn debug_information_on_request() {
    if !have("readelf") || !have("objcopy") {
        return skipped("the debug information checks", "binutils is not installed");
    }
    let scratch = Scratch::new("packaging", "debug");
    let real = |prefix: &Path| {
        let numeric = VERSION.split(['-', '+']).next().unwrap();
        prefix
            .join("lib")
            .join(format!("libnnx_state.so.{numeric}"))
    };
    let install = |target: &str, prefix: &Path, extra: &[&str]| {
        let mut args = vec![target.to_owned(), format!("PREFIX={}", prefix.display())];
        args.extend(prebuilt_args());
        args.extend(extra.iter().map(|a| a.to_string()));
        run_ok(make(&args), &scratch, target).unwrap_or_else(|r| panic!("{r}"));
    };
    let built = built_dir().join("libnnx_state.so");
    if !has_debug_info(&built) {
        return skipped(
            "the debug information checks",
            "the build has no debug information",
        );
    }

    let kept = scratch.path("kept");
    install("install", &kept, &["STRIP="]);
    assert_eq!(fs::read(real(&kept)).unwrap(), fs::read(&built).unwrap());
    assert!(has_debug_info(&kept.join("bin/nnx-state")));

    let split = scratch.path("split");
    let bindir = format!("bindir={}", split.join("tools").display());
    install("install", &split, &["SPLIT_DEBUG=1", &bindir]);
    for file in [real(&split), split.join("tools/nnx-state")] {
        let names = sections(&file).unwrap();
        assert!(
            !names.iter().any(|s| s == ".debug_info"),
            "{}",
            file.display()
        );
        assert!(
            names.iter().any(|s| s == ".gnu_debuglink"),
            "{}",
            file.display()
        );
        let debug = file.with_file_name(format!(
            "{}.debug",
            file.file_name().unwrap().to_string_lossy()
        ));
        assert!(has_debug_info(&debug), "{}", debug.display());
    }
    install("uninstall", &split, &["SPLIT_DEBUG=1", &bindir]);
    let left: Vec<PathBuf> = [split.join("tools"), split.join("lib")]
        .iter()
        .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "make uninstall left {left:?}");
    scratch.done();
}

/// Without NO_BUILD, `make install` runs `cargo build --release` first, then
/// installs from target/release.
#[test]
fn make_install_builds_first() {
    let scratch = Scratch::new("packaging", "dry-run");
    let out = run_ok(
        make(&[
            "-n".to_owned(),
            "install".to_owned(),
            "PREFIX=/x".to_owned(),
        ]),
        &scratch,
        "make-n",
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let build = out
        .find("build --release")
        .expect("make install builds the library");
    let install = out
        .find("packaging/install.sh")
        .expect("then runs packaging/install.sh");
    assert!(build < install, "it builds before it installs:\n{out}");
    assert!(out.contains("--from \"target/release\""), "{out}");
    assert!(out.contains("--bindir \"/x/bin\""), "{out}");
    assert!(out.contains("--strip \"strip\""), "{out}");
    scratch.done();
}

/// The functions `nnx_state.h` declares.
fn header_functions(header: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // Declarations look like `<type> nnx_name(...` at the start of a line.
    for line in header.lines() {
        if line.starts_with(' ') || line.starts_with('*') || line.starts_with('/') {
            continue;
        }
        if let Some(open) = line.find('(') {
            if let Some(name) = line[..open].split_whitespace().last() {
                let name = name.trim_start_matches('*');
                if name.starts_with("nnx_") {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn shared_library_exports_only_the_c_api() {
    if !have("nm") {
        skipped(
            "the exported-symbols check",
            "nm (binutils) is not installed",
        );
        return;
    }
    let inst = installed();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(inst.real_shared())
        .output()
        .expect("nm runs");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap_or(s).to_owned())
        .collect();
    let foreign: Vec<&String> = exported.iter().filter(|s| !s.starts_with("nnx_")).collect();
    assert!(
        foreign.is_empty(),
        "the shared library exports symbols outside the nnx_ API: {foreign:?}"
    );
    let declared = header_functions(&read(&inst.include().join("nnx_state.h")));
    assert!(
        declared.len() > 50,
        "the header declares {} functions?",
        declared.len()
    );
    let missing: Vec<&String> = declared.difference(&exported).collect();
    let undeclared: Vec<&String> = exported.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "declared in nnx_state.h, not exported: {missing:?}"
    );
    assert!(
        undeclared.is_empty(),
        "exported, not declared in nnx_state.h: {undeclared:?}"
    );
    println!(
        "{} symbols exported, all declared in nnx_state.h",
        exported.len()
    );
}

/// A C program printing the header's version macros and `nnx_version()`.
const VERSION_PROGRAM: &str = r#"#include <stdio.h>
#include "nnx_state.h"
int main(void) {
    printf("%d.%d.%d %s %s\n", NNX_STATE_VERSION_MAJOR, NNX_STATE_VERSION_MINOR,
           NNX_STATE_VERSION_PATCH, NNX_STATE_VERSION, nnx_version());
    return 0;
}
"#;

#[test]
fn versions_agree_with_cargo_toml() {
    let inst = installed();
    let scratch = Scratch::new("packaging", "version");
    let source = scratch.path("version.c");
    fs::write(&source, VERSION_PROGRAM).unwrap();
    let binary = scratch.path("version");
    let mut cc = Command::new(c_compiler());
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", inst.include().display()))
        .arg(&source)
        .arg(format!("-L{}", inst.lib().display()))
        .arg(format!("-Wl,-rpath,{}", inst.lib().display()))
        .arg("-lnnx_state")
        .arg("-o")
        .arg(&binary);
    run_ok(cc, &scratch, "cc").unwrap_or_else(|r| panic!("{r}"));
    let out = run_ok(Command::new(&binary), &scratch, "run").unwrap_or_else(|r| panic!("{r}"));
    let numeric = VERSION.split(['-', '+']).next().unwrap();
    assert_eq!(out.trim(), format!("{numeric} {VERSION} {VERSION}"));
    // The Rust side of the same function.
    let rust = unsafe { std::ffi::CStr::from_ptr(nnx_state::ffi::error::nnx_version()) };
    assert_eq!(rust.to_str().unwrap(), VERSION);
    if have("pkg-config") {
        let mut pc = Command::new("pkg-config");
        pc.env("PKG_CONFIG_PATH", inst.pkg_config_dir())
            .args(["--modversion", "nnx_state"]);
        let v = run_ok(pc, &scratch, "modversion").unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(v.trim(), VERSION);
    }
    scratch.done();
}

/// `pkg-config` with the installed prefix on its path.
fn pkg_config(inst: &Installed, args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", inst.pkg_config_dir())
        .args(args)
        .arg("nnx_state")
        .output()
        .expect("pkg-config runs");
    assert!(
        out.status.success(),
        "pkg-config {args:?} nnx_state failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compiles `source` with `compiler`, `flags` and the pkg-config words,
/// runs it (with `env`) and checks it printed `<stem>: OK`; returns the binary.
fn build_and_run(
    scratch: &Scratch,
    compiler: &str,
    flags: &[&str],
    source: &Path,
    pc: &[String],
    name: &str,
    env: &[(&str, &Path)],
) -> PathBuf {
    let binary = scratch.path(name);
    let mut cc = Command::new(compiler);
    cc.args(flags).arg(source).args(pc).arg("-o").arg(&binary);
    run_ok(cc, scratch, &format!("{name}-build")).unwrap_or_else(|r| panic!("{r}"));
    let mut command = Command::new(&binary);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = run_ok(command, scratch, name).unwrap_or_else(|r| panic!("{r}"));
    assert!(out.contains("seed_example: OK"), "{name} printed:\n{out}");
    println!("ok   {name}: {}", out.lines().last().unwrap_or(""));
    binary
}

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];

fn seed_c() -> PathBuf {
    crate_dir().join("examples-c/seed_example.c")
}

fn seed_cpp() -> PathBuf {
    crate_dir().join("examples-cpp/seed_example.cpp")
}

/// `cc app.c $(pkg-config --cflags --libs nnx_state)`: linked against
/// `libnnx_state.so.MAJOR`, found at run time through LD_LIBRARY_PATH.
#[test]
fn pkg_config_shared() {
    if !have("pkg-config") {
        skipped(
            "the pkg-config consumer (shared)",
            "pkg-config is not installed (apt-get install pkg-config)",
        );
        return;
    }
    let inst = installed();
    let scratch = Scratch::new("packaging", "pkg-config-shared");
    let pc = pkg_config(inst, &["--cflags", "--libs"]);
    let lib = inst.lib();
    let env = [("LD_LIBRARY_PATH", lib.as_path())];
    let binary = build_and_run(
        &scratch,
        &c_compiler(),
        C_FLAGS,
        &seed_c(),
        &pc,
        "seed_c",
        &env,
    );
    if let Some(needed) = needed_libraries(&binary) {
        assert!(
            needed.contains(&format!("libnnx_state.so.{MAJOR}")),
            "the program asks for the soname: {needed:?}"
        );
    }
    if have(&cxx_compiler()) {
        build_and_run(
            &scratch,
            &cxx_compiler(),
            CXX_FLAGS,
            &seed_cpp(),
            &pc,
            "seed_cpp",
            &env,
        );
    } else {
        skipped(
            "the C++ pkg-config consumer",
            &format!("no C++ compiler ({} not found; set CXX)", cxx_compiler()),
        );
    }
    scratch.done();
}

/// `cc -static app.c $(pkg-config --static --cflags --libs nnx_state)`: a
/// fully static program (Libs.private brings in what the Rust runtime
/// needs); and the static library with a dynamic libc, named by path.
#[test]
fn pkg_config_static() {
    if !have("pkg-config") {
        skipped(
            "the pkg-config consumer (static)",
            "pkg-config is not installed (apt-get install pkg-config)",
        );
        return;
    }
    let inst = installed();
    let scratch = Scratch::new("packaging", "pkg-config-static");
    let mut pc = pkg_config(inst, &["--static", "--cflags", "--libs"]);
    for flag in ["-lpthread", "-ldl", "-lm"] {
        assert!(pc.iter().any(|w| w == flag), "--static adds {flag}: {pc:?}");
    }
    pc.insert(0, "-static".to_owned());
    let binary = build_and_run(
        &scratch,
        &c_compiler(),
        C_FLAGS,
        &seed_c(),
        &pc,
        "seed_static",
        &[],
    );
    if let Some(needed) = needed_libraries(&binary) {
        assert!(
            needed.is_empty(),
            "a -static program needs no shared library: {needed:?}"
        );
    }

    // Static libnnx_state, dynamic libc: the archive by path.
    let libdir = pkg_config(inst, &["--variable=libdir"]);
    let mut words = pkg_config(inst, &["--cflags"]);
    words.push(format!("{}/libnnx_state.a", libdir[0]));
    words.extend(["-lpthread", "-ldl", "-lm"].map(str::to_owned));
    let binary = build_and_run(
        &scratch,
        &c_compiler(),
        C_FLAGS,
        &seed_c(),
        &words,
        "seed_mixed",
        &[],
    );
    if let Some(needed) = needed_libraries(&binary) {
        assert!(
            !needed.iter().any(|n| n.contains("nnx_state")),
            "linked the archive, not the shared library: {needed:?}"
        );
    }
    scratch.done();
}

/// A CMake project using `find_package(nnx_state)`: the C and C++ seed
/// examples, each linked with `nnx_state::nnx_state` (shared) and
/// `nnx_state::nnx_state_static`; and the version file's answers. The
/// installed tree is moved first: the package finds its files relative to
/// itself.
#[test]
fn cmake_find_package() {
    if !have("cmake") {
        skipped(
            "the CMake consumer (find_package(nnx_state), shared and static)",
            "cmake is not installed (apt-get install cmake)",
        );
        return;
    }
    let inst = installed();
    let scratch = Scratch::new("packaging", "cmake");
    let with_cxx = have(&cxx_compiler());
    if !with_cxx {
        skipped(
            "the C++ targets of the CMake consumer",
            &format!("no C++ compiler ({} not found; set CXX)", cxx_compiler()),
        );
    }
    let moved = scratch.path("moved-prefix");
    let mut copy = Command::new("cp");
    copy.arg("-a").arg(&inst.prefix).arg(&moved);
    run_ok(copy, &scratch, "copy").unwrap_or_else(|r| panic!("{r}"));
    let project = scratch.path("project");
    fs::create_dir_all(&project).unwrap();
    let cmake_path = |p: PathBuf| p.display().to_string().replace('\\', "/");
    let mut lists = format!(
        r#"cmake_minimum_required(VERSION 3.14)
project(nnx_state_consumer LANGUAGES {languages})

find_package(nnx_state {major}.0 REQUIRED COMPONENTS shared static)
if(NOT nnx_state_VERSION VERSION_EQUAL "{version}")
  message(FATAL_ERROR "nnx_state_VERSION is ${{nnx_state_VERSION}}, expected {version}")
endif()
if(NOT TARGET nnx_state::nnx_state OR NOT TARGET nnx_state::nnx_state_static)
  message(FATAL_ERROR "the imported targets are missing")
endif()

add_executable(seed_c_shared "{seed_c}")
target_link_libraries(seed_c_shared PRIVATE nnx_state::nnx_state)
add_executable(seed_c_static "{seed_c}")
target_link_libraries(seed_c_static PRIVATE nnx_state::nnx_state_static)
set_target_properties(seed_c_shared seed_c_static PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
target_compile_options(seed_c_shared PRIVATE -Wall -Wextra -Werror)
target_compile_options(seed_c_static PRIVATE -Wall -Wextra -Werror)
"#,
        languages = if with_cxx { "C CXX" } else { "C" },
        major = MAJOR,
        version = VERSION,
        seed_c = cmake_path(seed_c()),
    );
    if with_cxx {
        lists.push_str(&format!(
            r#"
add_executable(seed_cpp_shared "{seed_cpp}")
target_link_libraries(seed_cpp_shared PRIVATE nnx_state::nnx_state)
add_executable(seed_cpp_static "{seed_cpp}")
target_link_libraries(seed_cpp_static PRIVATE nnx_state::nnx_state_static)
target_compile_features(seed_cpp_shared PRIVATE cxx_std_17)
target_compile_features(seed_cpp_static PRIVATE cxx_std_17)
target_compile_options(seed_cpp_shared PRIVATE -Wall -Wextra -Werror)
target_compile_options(seed_cpp_static PRIVATE -Wall -Wextra -Werror)
"#,
            seed_cpp = cmake_path(seed_cpp()),
        ));
    }
    // The version file: a later major, a range and an unknown component.
    lists.push_str(&format!(
        r#"
find_package(nnx_state {next_major}.0 QUIET)
if(nnx_state_FOUND)
  message(FATAL_ERROR "nnx_state {version} must not satisfy a request for {next_major}.0")
endif()
find_package(nnx_state {major}.0...<{next_major}.0 QUIET)
if(NOT nnx_state_FOUND)
  message(FATAL_ERROR "nnx_state {version} must satisfy {major}.0...<{next_major}.0")
endif()
find_package(nnx_state QUIET COMPONENTS no_such_component)
if(nnx_state_FOUND)
  message(FATAL_ERROR "an unknown required component must fail")
endif()
"#,
        major = MAJOR,
        next_major = MAJOR.parse::<u64>().unwrap() + 1,
        version = VERSION,
    ));
    fs::write(project.join("CMakeLists.txt"), lists).unwrap();

    let build = scratch.path("build");
    let mut configure = Command::new("cmake");
    configure
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", moved.display()))
        .arg(format!("-DCMAKE_C_COMPILER={}", c_compiler()))
        .arg("-DCMAKE_BUILD_TYPE=Debug");
    if with_cxx {
        configure.arg(format!("-DCMAKE_CXX_COMPILER={}", cxx_compiler()));
    }
    run_ok(configure, &scratch, "configure").unwrap_or_else(|r| panic!("{r}"));
    let mut make_all = Command::new("cmake");
    make_all
        .arg("--build")
        .arg(&build)
        .args(["--parallel", "2"]);
    make_all
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    run_ok(make_all, &scratch, "build").unwrap_or_else(|r| panic!("{r}"));

    let mut targets = vec!["seed_c_shared", "seed_c_static"];
    if with_cxx {
        targets.extend(["seed_cpp_shared", "seed_cpp_static"]);
    }
    for target in targets {
        let binary = build.join(target);
        // No LD_LIBRARY_PATH: CMake gives build-tree programs an rpath.
        let out = run(Command::new(&binary), &scratch, target).unwrap_or_else(|r| panic!("{r}"));
        assert!(
            out.status.success() && out.stdout.contains("seed_example: OK"),
            "{target} failed ({}):\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        if let Some(needed) = needed_libraries(&binary) {
            let shared = needed.contains(&format!("libnnx_state.so.{MAJOR}"));
            assert_eq!(
                shared,
                target.ends_with("_shared"),
                "{target} needs {needed:?}"
            );
        }
        if target.ends_with("_shared") {
            if let Ok(elf) = Command::new("readelf").arg("-d").arg(&binary).output() {
                let text = String::from_utf8_lossy(&elf.stdout);
                assert!(
                    text.contains(&moved.join("lib").display().to_string()),
                    "{target} links the moved copy:\n{text}"
                );
            }
        }
        println!("ok   {target}");
    }
    scratch.done();
}

//! The C++17 header `include/nnx_state.hpp`: every `examples-cpp/*.cpp` and
//! `tests/cpp/*.cpp` is compiled with `-std=c++17 -Wall -Wextra -Wpedantic
//! -Werror` (and stricter conversion and shadowing warnings, so that the
//! header stays clean for strict users), linked against the library cargo
//! built for this test run, statically and dynamically, and run; the static
//! builds run again under valgrind. The header must also compile on its own
//! as C++17 and C++20, and refuse C++14 with a clear message.
//!
//! The compiler is `$CXX` (default `g++`); without one, the tests print that
//! they skipped. Build outputs go under `CARGO_TARGET_TMPDIR/cpp/`.

#![cfg(unix)]

#[path = "cpp/support.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::{
    crate_dir, cxx_compiler, have, lib_dir, run, run_ok, skipped, sources, stem, Scratch,
};

/// Flags every C++ program is built with.
const CXX_FLAGS: &[&str] = &[
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-Wconversion",
    "-Wsign-conversion",
    "-Wshadow",
    "-Wold-style-cast",
    "-Wnon-virtual-dtor",
    "-Woverloaded-virtual",
    "-g",
];
/// What a static Rust library needs from the system on Linux.
const SYSTEM_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm"];

fn programs() -> Vec<PathBuf> {
    let mut all = sources("examples-cpp", "cpp");
    all.extend(sources("tests/cpp", "cpp"));
    all
}

/// A program compiled and linked both ways.
struct Built {
    name: String,
    static_binary: PathBuf,
    shared_binary: PathBuf,
}

/// Compiles every program once (shared by the tests of this file); `None`
/// when there is no C++ compiler.
fn built() -> Option<&'static Result<Vec<Built>, String>> {
    static BUILT: OnceLock<Option<Result<Vec<Built>, String>>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if !have(&cxx_compiler()) {
                return None;
            }
            Some(build_all())
        })
        .as_ref()
}

fn build_all() -> Result<Vec<Built>, String> {
    let scratch = Scratch::new("cpp", "build");
    // One thread per program: compiling dominates, and the machine has cores.
    let results: Vec<Result<Built, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = programs()
            .into_iter()
            .map(|source| {
                let scratch = &scratch;
                scope.spawn(move || build_one(&source, scratch))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a build thread panicked"))
            .collect()
    });
    // The directory is kept (no `done()`) for the tests that run the
    // binaries; a later run removes it once this process is gone.
    let _ = scratch;
    let mut built = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(b) => built.push(b),
            Err(report) => failures.push(report),
        }
    }
    if failures.is_empty() {
        Ok(built)
    } else {
        Err(failures.join("\n"))
    }
}

/// Compiles one program to an object, then links it statically and
/// dynamically.
fn build_one(source: &Path, scratch: &Scratch) -> Result<Built, String> {
    let lib = lib_dir();
    let name = stem(source);
    let object = scratch.path(&format!("{name}.o"));
    let mut compile = Command::new(cxx_compiler());
    compile
        .args(CXX_FLAGS)
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(&object);
    run_ok(compile, scratch, &format!("{name}-compile"))
        .map_err(|report| format!("==== {} ====\n{report}", source.display()))?;
    let static_binary = scratch.path(&format!("{name}-static"));
    let mut link = Command::new(cxx_compiler());
    link.arg(&object)
        .arg(lib.join("libnnx_state.a"))
        .args(SYSTEM_LIBS)
        .arg("-o")
        .arg(&static_binary);
    let shared_binary = scratch.path(&format!("{name}-shared"));
    let mut link_shared = Command::new(cxx_compiler());
    link_shared
        .arg(&object)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lnnx_state")
        .arg("-o")
        .arg(&shared_binary);
    for (command, label) in [(link, "link-static"), (link_shared, "link-shared")] {
        run_ok(command, scratch, &format!("{name}-{label}"))
            .map_err(|report| format!("==== {} ({label}) ====\n{report}", source.display()))?;
    }
    Ok(Built {
        name,
        static_binary,
        shared_binary,
    })
}

/// Runs every built binary chosen by `pick`, under `wrapper` if given.
fn run_all(label: &str, pick: fn(&Built) -> &Path, wrapper: &[&str]) {
    let Some(built) = built() else {
        skipped(
            "the C++ programs",
            &format!("no C++ compiler ({} not found; set CXX)", cxx_compiler()),
        );
        return;
    };
    let built = match built {
        Ok(built) => built,
        Err(report) => panic!("C++ programs did not build:\n{report}"),
    };
    assert!(
        built.iter().any(|b| b.name == "seed_example"),
        "examples-cpp/seed_example.cpp is missing"
    );
    assert!(
        built.iter().any(|b| b.name == "header_test"),
        "tests/cpp/header_test.cpp is missing"
    );
    let scratch = Scratch::new("cpp", label);
    let mut failures = Vec::new();
    for b in built {
        let binary = pick(b);
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command.current_dir(&scratch.0);
        match run_ok(command, &scratch, &b.name) {
            Ok(stdout) => {
                assert!(
                    stdout.contains(": OK") || stdout.contains("checks OK"),
                    "{} printed no OK line:\n{stdout}",
                    b.name
                );
                println!(
                    "ok   {} ({label}): {}",
                    b.name,
                    stdout.lines().last().unwrap_or("")
                );
            }
            Err(report) => failures.push(format!("==== {} ({label}) ====\n{report}", b.name)),
        }
    }
    if !failures.is_empty() {
        panic!(
            "C++ programs failed (files kept in {}):\n\n{}",
            scratch.0.display(),
            failures.join("\n")
        );
    }
    scratch.done();
}

#[test]
fn cpp_programs_linked_statically() {
    run_all("static", |b| &b.static_binary, &[]);
}

#[test]
fn cpp_programs_linked_dynamically() {
    run_all("shared", |b| &b.shared_binary, &[]);
}

/// Clean under valgrind's memcheck: no invalid access, no leak of any kind.
/// Skipped where valgrind is not installed, or with `NNX_VALGRIND=0`.
#[test]
fn cpp_programs_under_valgrind() {
    if std::env::var_os("NNX_VALGRIND").is_some_and(|v| v == "0") {
        skipped("the C++ programs under valgrind", "NNX_VALGRIND=0");
        return;
    }
    if !have("valgrind") {
        skipped(
            "the C++ programs under valgrind",
            "valgrind is not installed",
        );
        return;
    }
    run_all(
        "valgrind",
        |b| &b.static_binary,
        &[
            "valgrind",
            "--quiet",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--error-exitcode=1",
        ],
    );
}

/// The header alone: it includes all it needs, compiles cleanly as C++17
/// and C++20, and stops C++14 with its own message.
#[test]
fn cpp_header_compiles_alone() {
    if !have(&cxx_compiler()) {
        skipped(
            "nnx_state.hpp alone",
            &format!("no C++ compiler ({} not found; set CXX)", cxx_compiler()),
        );
        return;
    }
    let scratch = Scratch::new("cpp", "alone");
    let source = scratch.path("alone.cpp");
    fs::write(&source, "#include \"nnx_state.hpp\"\n").expect("write the source");
    let compile = |std: &str, strict: bool| {
        let mut c = Command::new(cxx_compiler());
        c.arg(format!("-std={std}"));
        if strict {
            c.args(&CXX_FLAGS[1..]);
        }
        c.arg("-fsyntax-only")
            .arg("-I")
            .arg(crate_dir().join("include"))
            .arg(&source);
        c
    };
    if let Err(report) = run_ok(compile("c++17", true), &scratch, "cxx17") {
        panic!("nnx_state.hpp alone as C++17:\n{report}");
    }
    let cxx20 = run(compile("c++20", true), &scratch, "cxx20").expect("the compiler runs");
    if cxx20.stderr.contains("unrecognized") || cxx20.stderr.contains("invalid value") {
        skipped(
            "nnx_state.hpp as C++20",
            "the compiler does not know -std=c++20",
        );
    } else {
        assert!(
            cxx20.status.success(),
            "nnx_state.hpp alone as C++20:\n{}",
            cxx20.stderr
        );
    }
    let cxx14 = run(compile("c++14", false), &scratch, "cxx14").expect("the compiler runs");
    assert!(
        !cxx14.status.success() && cxx14.stderr.contains("nnx_state.hpp needs C++17 or later"),
        "C++14 must stop at the header's #error:\n{}",
        cxx14.stderr
    );
    scratch.done();
}

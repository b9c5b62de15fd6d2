//! C programs are tests: every `examples-c/*.c` and `tests/c/*.c` is
//! compiled with the system C compiler (warnings as errors), linked against
//! the library cargo built for this test run (static, and shared with an
//! rpath), and run; it must exit 0. The header must compile on its own as
//! C11 and as C++17, and the committed copy must be what `build.rs`
//! generates.
//!
//! The compiler is `$CC` (default `cc`) and, for C++, `$CXX` (default
//! `g++`). Build outputs go under `CARGO_TARGET_TMPDIR/c_programs/`; a
//! test's directory is removed when it passes and kept when it fails.
//!
//! Where the library is: cargo builds the package's own library, with all
//! its crate types (`cdylib`, `staticlib`, `rlib`), before it builds an
//! integration test, and leaves the artifacts next to the test binary in
//! `target/<profile>/deps/` (`cargo build` copies them one level up, but
//! `cargo test` does not). So the test looks beside its own executable, and
//! then in the directory above it.

#![cfg(unix)]

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Flags every C program is built with.
const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wpedantic",
    "-g",
];
/// What a static Rust library needs from the system on Linux.
const SYSTEM_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm"];
/// A program that runs longer than this is killed and fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn include_dir() -> PathBuf {
    crate_dir().join("include")
}

fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_owned())
}

fn cxx_compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "g++".to_owned())
}

/// The directory holding the library built for this test run.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let deps = exe.parent().expect("the test binary is in a directory");
    let candidates = [
        deps.to_path_buf(),
        deps.parent().unwrap_or(deps).to_path_buf(),
    ];
    for dir in &candidates {
        if dir.join("libnnx_state.a").is_file() && dir.join(shared_lib_name()).is_file() {
            return dir.clone();
        }
    }
    panic!(
        "libnnx_state.a and {} not found in {} or {}: cargo builds them before integration \
         tests, so the crate types in Cargo.toml must have changed",
        shared_lib_name(),
        candidates[0].display(),
        candidates[1].display()
    );
}

fn static_lib() -> PathBuf {
    lib_dir().join("libnnx_state.a")
}

fn shared_lib_name() -> String {
    format!(
        "{}nnx_state{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A scratch directory for one test, unique to this process.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("c_programs")
            .join(format!("{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("the scratch directory can be created");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Removes the directory: called when the test passed, so a failing
    /// test leaves its files to look at.
    fn done(self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `.c` files of a directory of the crate, sorted by name.
fn c_sources(dir: &str) -> Vec<PathBuf> {
    let dir = crate_dir().join(dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("the directory can be listed").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    files.sort();
    files
}

fn all_programs() -> Vec<PathBuf> {
    let mut all = c_sources("examples-c");
    all.extend(c_sources("tests/c"));
    all
}

fn stem(source: &Path) -> String {
    source
        .file_stem()
        .expect("a source file has a name")
        .to_string_lossy()
        .into_owned()
}

fn show(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs a compiler command; `Err` holds a report of what went wrong.
fn compile(mut command: Command) -> Result<(), String> {
    let shown = show(&command);
    match command.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "compiling failed ({}):\n  $ {shown}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run the compiler: {e}\n  $ {shown}")),
    }
}

/// Runs a built program with a timeout; `Err` holds its exit status and
/// output. Output goes to files, so a chatty program cannot block on a pipe.
/// With a `wrapper` (such as valgrind and its options), runs the program
/// under it.
fn run(binary: &Path, wrapper: &[String]) -> Result<String, String> {
    let stdout_path = binary.with_extension("stdout");
    let stderr_path = binary.with_extension("stderr");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", show(&command)))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status: Option<ExitStatus> = loop {
        match child.try_wait().expect("waiting for the program") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(stdout),
        Some(status) => Err(format!(
            "{} failed ({status})\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            binary.display()
        )),
        None => Err(format!(
            "{} timed out after {RUN_TIMEOUT:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            binary.display()
        )),
    }
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Static,
    Shared,
}

/// Compiles and runs one C program; `Err` holds a report.
fn build_and_run(
    source: &Path,
    link: Link,
    wrapper: &[String],
    scratch: &Scratch,
) -> Result<String, String> {
    let binary = scratch.path(&format!("{}-{link:?}", stem(source)).to_lowercase());
    let mut cc = Command::new(c_compiler());
    cc.args(C_FLAGS)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .arg("-o")
        .arg(&binary);
    match link {
        Link::Static => {
            cc.arg(static_lib());
        }
        Link::Shared => {
            let dir = lib_dir();
            cc.arg(format!("-L{}", dir.display()))
                .arg(format!("-Wl,-rpath,{}", dir.display()))
                .arg("-lnnx_state");
        }
    }
    cc.args(SYSTEM_LIBS);
    compile(cc)?;
    run(&binary, wrapper)
}

/// Builds and runs every program with `link` (under `wrapper`, if any);
/// fails with every report.
fn run_all(test: &str, link: Link, wrapper: &[String]) {
    let programs = all_programs();
    assert!(
        programs.iter().any(|p| stem(p) == "seed_example"),
        "examples-c/seed_example.c is missing"
    );
    let scratch = Scratch::new(test);
    let mut failures = Vec::new();
    for source in &programs {
        let name = source.strip_prefix(crate_dir()).unwrap_or(source).display();
        match build_and_run(source, link, wrapper, &scratch) {
            Ok(stdout) => {
                let last = stdout.lines().last().unwrap_or("");
                println!("ok   {name} ({link:?}): {last}");
            }
            Err(report) => {
                println!("FAIL {name} ({link:?})");
                failures.push(format!("==== {name} ({link:?}) ====\n{report}"));
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} C programs failed (files kept in {}):\n\n{}",
            failures.len(),
            programs.len(),
            scratch.0.display(),
            failures.join("\n")
        );
    }
    scratch.done();
}

#[test]
fn c_programs_linked_statically() {
    run_all("static", Link::Static, &[]);
}

#[test]
fn c_programs_linked_dynamically() {
    run_all("shared", Link::Shared, &[]);
}

/// Every program, linked statically, must run clean under valgrind's
/// memcheck: no invalid access, and no leak of any kind (definite, indirect
/// or possible). Skipped, with a note, where valgrind is not installed, or
/// with `NNX_VALGRIND=0`.
#[test]
fn c_programs_under_valgrind() {
    if std::env::var_os("NNX_VALGRIND").is_some_and(|v| v == "0") {
        println!("skipped: NNX_VALGRIND=0");
        return;
    }
    let found = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("skipped: valgrind is not installed");
        return;
    }
    let wrapper = [
        "valgrind".to_owned(),
        "--quiet".to_owned(),
        "--leak-check=full".to_owned(),
        "--errors-for-leak-kinds=definite,indirect,possible".to_owned(),
        "--error-exitcode=1".to_owned(),
    ];
    run_all("valgrind", Link::Static, &wrapper);
}

#[test]
fn header_compiles_alone_as_c11() {
    let scratch = Scratch::new("header_c11");
    let source = scratch.path("header_only.c");
    fs::write(&source, "#include \"nnx_state.h\"\n").expect("write the source");
    let mut cc = Command::new(c_compiler());
    cc.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
        "-Wstrict-prototypes",
        "-fsyntax-only",
    ])
    .arg("-I")
    .arg(include_dir())
    .arg(&source);
    if let Err(report) = compile(cc) {
        panic!("{report}");
    }
    scratch.done();
}

/// A C++ program using the header: compiled, linked and run.
const CXX_PROGRAM: &str = r#"// Generated by tests/c_programs.rs.
#include "nnx_state.h"

#include <cstdio>
#include <cstring>

#define CHECK(call)                                                          \
    do {                                                                     \
        nnx_status status_ = (call);                                         \
        if (status_ != NNX_OK) {                                             \
            std::fprintf(stderr, "%s: %s: %s\n", #call,                      \
                         nnx_status_name(status_), nnx_last_error_message()); \
            return 1;                                                        \
        }                                                                    \
    } while (0)

int main() {
    if (std::strcmp(nnx_version(), NNX_STATE_VERSION) != 0) return 2;
    if (nnx_state_new(nullptr) != NNX_ERR_NULL_ARGUMENT) return 3;
    if (std::strcmp(nnx_status_name(NNX_ERR_NULL_ARGUMENT), "NNX_ERR_NULL_ARGUMENT") != 0) {
        return 4;
    }

    const float values[3] = {1.0f, 2.0f, 3.0f};
    const int64_t shape[1] = {3};
    nnx_array *array = nullptr;
    nnx_variable *variable = nullptr;
    nnx_state *state = nullptr;
    CHECK(nnx_array_new(NNX_DTYPE_F32, shape, 1, values, sizeof values, &array));
    CHECK(nnx_variable_new(NNX_TYPE_PARAM, array, &variable));
    CHECK(nnx_state_new(&state));

    nnx_key path[2];
    path[0].kind = NNX_KEY_STR;
    path[0].str = "linear";
    path[0].str_len = std::strlen("linear");
    path[0].int_value = 0;
    path[1].kind = NNX_KEY_INT;
    path[1].str = nullptr;
    path[1].str_len = 0;
    path[1].int_value = 0;
    CHECK(nnx_state_set_variable(state, path, 2, variable));
    CHECK(nnx_state_set_array_str(state, "embed", array));

    nnx_filter *param = nullptr;
    CHECK(nnx_filter_of_type(NNX_TYPE_PARAM, &param));
    nnx_filter *filters[1] = {param}; // T ** converts to const T *const * in C++
    nnx_state *out[1] = {nullptr};
    CHECK(nnx_state_filter(state, filters, 1, out));
    size_t leaves = 0;
    CHECK(nnx_state_num_leaves(out[0], &leaves));
    if (leaves != 1) return 5;

    char *text = nullptr;
    CHECK(nnx_state_to_string(out[0], &text));
    std::printf("%s\n", text);
    nnx_string_free(text);

    nnx_state_free(out[0]);
    nnx_filter_free(param);
    nnx_state_free(state);
    nnx_variable_release(variable);
    nnx_array_release(array);
    std::printf("c++17: OK\n");
    return 0;
}
"#;

#[test]
fn header_compiles_and_links_as_cxx17() {
    let scratch = Scratch::new("header_cxx17");
    let source = scratch.path("header_use.cpp");
    let binary = scratch.path("header_use");
    fs::write(&source, CXX_PROGRAM).expect("write the source");
    let mut cxx = Command::new(cxx_compiler());
    cxx.args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wpedantic"])
        .arg("-I")
        .arg(include_dir())
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .arg(static_lib())
        .args(SYSTEM_LIBS);
    match cxx.output() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            println!(
                "skipped: no C++ compiler ({} not found; set CXX)",
                cxx_compiler()
            );
            return;
        }
        _ => {}
    }
    if let Err(report) = compile(cxx) {
        panic!("{report}");
    }
    match run(&binary, &[]) {
        Ok(stdout) => assert!(stdout.contains("c++17: OK"), "unexpected output:\n{stdout}"),
        Err(report) => panic!("{report}"),
    }
    scratch.done();
}

/// Runs git in the crate directory; `None` when git cannot run at all.
fn git(args: &[&str]) -> Option<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(crate_dir())
        .args(args)
        .output()
        .ok()
}

#[test]
fn committed_header_is_fresh() {
    // build.rs rewrote include/nnx_state.h before this test was built if it
    // was stale, so a difference from the index means an uncommitted header.
    let Some(inside) = git(&["rev-parse", "--is-inside-work-tree"]) else {
        println!("skipped: git is not available");
        return;
    };
    if !inside.status.success() || String::from_utf8_lossy(&inside.stdout).trim() != "true" {
        println!(
            "skipped: {} is not in a git work tree ({})",
            crate_dir().display(),
            String::from_utf8_lossy(&inside.stderr).trim()
        );
        return;
    }
    let tracked = git(&["ls-files", "--error-unmatch", "--", "include/nnx_state.h"])
        .expect("git ran a moment ago");
    assert!(
        tracked.status.success(),
        "include/nnx_state.h is not tracked by git: commit the generated header"
    );
    let diff = git(&["diff", "--quiet", "--", "include/nnx_state.h"]).expect("git ran");
    match diff.status.code() {
        Some(0) => {}
        Some(1) => panic!(
            "include/nnx_state.h is stale: commit the regenerated header \
             (see `git diff -- include/nnx_state.h`)"
        ),
        _ => println!(
            "skipped: git diff failed ({}): {}",
            diff.status,
            String::from_utf8_lossy(&diff.stderr).trim()
        ),
    }
}

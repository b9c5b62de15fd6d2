//! Helpers shared by `tests/cpp.rs` and `tests/packaging.rs` (included in
//! each with `#[path]`): where the library built for this test run is,
//! scratch directories, and running tools and programs with a timeout.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A program or tool that runs longer than this is killed and fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_owned())
}

pub fn cxx_compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "g++".to_owned())
}

/// Says that (part of) a test was skipped, and why. It writes to the
/// process's stderr directly, past the test harness's capture, so that the
/// note shows in a plain `cargo test` run (and CI logs), not only with
/// `--nocapture`.
pub fn skipped(what: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "note: skipped {what}: {why}");
}

/// Whether `program --version` runs.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The directory holding the library cargo built for this test run: beside
/// the test binary (`target/<profile>/deps/`), or the directory above it.
/// Cargo builds the package's cdylib and staticlib before integration tests.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let deps = exe.parent().expect("the test binary is in a directory");
    let candidates = [
        deps.to_path_buf(),
        deps.parent().unwrap_or(deps).to_path_buf(),
    ];
    for dir in &candidates {
        if dir.join("libnnx_state.a").is_file() && dir.join("libnnx_state.so").is_file() {
            return dir.clone();
        }
    }
    panic!(
        "libnnx_state.a and libnnx_state.so not found in {} or {}: cargo builds them before \
         integration tests, so the crate types in Cargo.toml must have changed",
        candidates[0].display(),
        candidates[1].display()
    );
}

/// A scratch directory for one test, unique to this process. Directories
/// left by earlier runs whose process is gone are removed first.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(group: &str, test: &str) -> Scratch {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(group);
        remove_stale(&base);
        let dir = base.join(format!("{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("the scratch directory can be created");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Removes the directory: called when the test passed, so a failing
    /// test leaves its files to look at.
    pub fn done(self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes `<name>-<pid>` directories of processes that no longer run.
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A command line as text, for reports.
pub fn show(command: &Command) -> String {
    let mut text = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            text.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    text.push_str(&command.get_program().to_string_lossy());
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The output of a finished command.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to its end (or the timeout), with its output in files so
/// that a chatty program cannot block on a pipe. `Err` holds a report.
pub fn run(mut command: Command, scratch: &Scratch, label: &str) -> Result<Output, String> {
    let shown = show(&command);
    let stdout_path = scratch.path(&format!("{label}.stdout"));
    let stderr_path = scratch.path(&format!("{label}.stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("waiting for the command") {
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
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "timed out after {RUN_TIMEOUT:?}:\n  $ {shown}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
        )),
    }
}

/// Runs a command that must succeed; `Err` holds a report.
pub fn run_ok(command: Command, scratch: &Scratch, label: &str) -> Result<String, String> {
    let shown = show(&command);
    let out = run(command, scratch, label)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "failed ({}):\n  $ {shown}\n--- stdout ---\n{}--- stderr ---\n{}",
            out.status, out.stdout, out.stderr
        ))
    }
}

/// The shared libraries a binary asks for (its DT_NEEDED entries), read with
/// readelf; `None` when readelf is not installed.
pub fn needed_libraries(binary: &Path) -> Option<Vec<String>> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1))
            .map(|l| l.trim_end_matches(']').to_owned())
            .collect(),
    )
}

/// The soname of a shared library, read with readelf; `None` when readelf
/// is not installed, `Some("")` when it has none.
pub fn soname(library: &Path) -> Option<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(library)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .find(|l| l.contains("(SONAME)"))
            .and_then(|l| l.split('[').nth(1))
            .map(|l| l.trim_end_matches(']').to_owned())
            .unwrap_or_default(),
    )
}

/// Sorted files of `dir` (relative to the crate) with extension `ext`.
pub fn sources(dir: &str, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(crate_dir().join(dir)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("the directory can be listed").path())
        .filter(|p| p.extension() == Some(OsStr::new(ext)))
        .collect();
    files.sort();
    files
}

pub fn stem(source: &Path) -> String {
    source
        .file_stem()
        .expect("a source file has a name")
        .to_string_lossy()
        .into_owned()
}

//! The Python wheel: `python/build_wheel.sh` (what `make wheel` runs) builds
//! a platform wheel that carries the native library, and that wheel,
//! installed with pip into a clean virtual environment (no system site
//! packages, no `NNX_STATE_LIB`, no source tree on the path, no cargo on
//! `PATH`), imports and runs NNX's seed examples with the library it carries.
//!
//! The wheel is built from the library cargo built for this test run
//! (`--no-build --lib`), so the test runs no cargo. Everything happens in a
//! directory under the system's temporary directory, outside the source
//! tree. pip fetches numpy, and setuptools for the isolated build, from its
//! cache or PyPI; where it cannot (no network), or where Python or its venv
//! module is missing, the test prints that it skipped.

#![cfg(target_os = "linux")]

#[path = "cpp/support.rs"]
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{crate_dir, have, lib_dir, run, run_ok, skipped, Scratch};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// A command with no Python or nnx-state settings of the caller's
/// environment.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for var in [
        "NNX_STATE_LIB",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
    ] {
        command.env_remove(var);
    }
    command
        .env("PYTHONNOUSERSITE", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1");
    command
}

/// `PATH` for the steps after the build: no cargo, no rustup.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What pip prints when it cannot reach an index.
fn offline(report: &str) -> bool {
    [
        "NewConnectionError",
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyError",
        "No matching distribution found",
        "Could not find a version that satisfies the requirement",
    ]
    .iter()
    .any(|needle| report.contains(needle))
}

/// The libraries in the package directory of the source tree.
fn packaged_copies() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(crate_dir().join("python/nnx_state"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("libnnx_state.") || name == "nnx_state.dll"
        })
        .collect();
    found.sort();
    found
}

const SEED: &str = r#"
import importlib.util, pathlib, sys
import numpy as np
import nnx_state as nnx

pkg = pathlib.Path(nnx.__file__).resolve().parent
lib = pathlib.Path(nnx.library_path).resolve()
assert lib == pkg / "libnnx_state.so", (lib, pkg)
assert pathlib.Path(sys.prefix).resolve() in pkg.parents, (sys.prefix, pkg)
# No record of a source tree to fall back on.
assert importlib.util.find_spec("nnx_state._build_config") is None

f32 = np.float32
state = nnx.State({
    "batchnorm": {
        "bias": nnx.Param(np.zeros(2, f32)),
        "mean": nnx.BatchStat(np.zeros(2, f32)),
        "scale": nnx.Param(np.ones(2, f32)),
        "var": nnx.BatchStat(np.ones(2, f32)),
    },
    "linear": {
        "bias": nnx.Param(np.zeros(3, f32)),
        "kernel": nnx.Param(np.full((2, 3), 0.5, f32)),
    },
})
paths = lambda s: list(nnx.to_flat_state(s).paths)
param = nnx.filter_state(state, nnx.Param)
assert paths(param) == [
    ("batchnorm", "bias"), ("batchnorm", "scale"), ("linear", "bias"), ("linear", "kernel"),
]
params, batch_stats = nnx.split_state(state, nnx.Param, nnx.BatchStat)
assert paths(batch_stats) == [("batchnorm", "mean"), ("batchnorm", "var")]
params["linear"]["bias"][...] += 1
assert (state["linear"]["bias"][...] == 1).all()
merged = nnx.merge_state(params, batch_stats)
assert merged == state
assert merged["linear"]["kernel"] is state["linear"]["kernel"]
print("seed examples ok with", nnx.library_path)
"#;

#[test]
fn wheel_installs_and_runs_without_the_source_tree() {
    let python = python();
    if !have(&python) {
        skipped("the wheel test", &format!("{python} is not installed"));
        return;
    }
    let dir = std::env::temp_dir().join(format!("nnx-state-wheel-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir.clone());

    // A clean virtual environment: no system site packages.
    let venv = dir.join("venv");
    let mut command = clean(&python);
    command.args(["-m", "venv"]).arg(&venv);
    if let Err(report) = run_ok(command, &scratch, "venv") {
        skipped("the wheel test", &format!("cannot make a venv:\n{report}"));
        scratch.done();
        return;
    }
    let venv_python = venv.join("bin/python");
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(
        cfg.contains("include-system-site-packages = false"),
        "{cfg}"
    );

    // numpy, the package's one dependency (from pip's cache or PyPI).
    let mut command = clean(&venv_python);
    command.args(["-m", "pip", "install", "--quiet", "numpy"]);
    if let Err(report) = run_ok(command, &scratch, "pip-numpy") {
        if offline(&report) {
            skipped("the wheel test", "pip cannot fetch numpy (no network?)");
            scratch.done();
            return;
        }
        panic!("{report}");
    }

    // The wheel, from this test run's library.
    let before = packaged_copies();
    let dist = dir.join("dist");
    let mut command = clean("bash");
    command
        .arg(crate_dir().join("python/build_wheel.sh"))
        .arg("--no-build")
        .arg("--lib")
        .arg(lib_dir().join("libnnx_state.so"))
        .arg("--out")
        .arg(&dist)
        .env("PYTHON", &venv_python)
        .env("TMPDIR", &dir)
        .current_dir(&dir);
    if let Err(report) = run_ok(command, &scratch, "build-wheel") {
        if offline(&report) {
            skipped(
                "the wheel test",
                "pip cannot fetch setuptools for the build (no network?)",
            );
            scratch.done();
            return;
        }
        panic!("{report}");
    }
    assert_eq!(
        packaged_copies(),
        before,
        "build_wheel.sh put a library into python/nnx_state/ of the source tree"
    );
    let wheels: Vec<PathBuf> = fs::read_dir(&dist)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    let wheel = &wheels[0];
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let arch = std::env::consts::ARCH;
    assert_eq!(
        name,
        format!("nnx_state-{VERSION}-py3-none-linux_{arch}.whl"),
        "a platform wheel, for any Python 3"
    );
    check_contents(&venv_python, wheel, &scratch);

    // Installed without an index: numpy is there, nothing else is needed.
    let mut command = clean(&venv_python);
    command
        .args(["-m", "pip", "install", "--quiet", "--no-index"])
        .arg(wheel)
        .env("PATH", SYSTEM_PATH);
    run_ok(command, &scratch, "pip-install").unwrap_or_else(|r| panic!("{r}"));

    // Imported outside the source tree.
    let script = dir.join("seed.py");
    fs::write(&script, SEED).unwrap();
    let mut command = clean(&venv_python);
    command
        .arg(&script)
        .current_dir(&dir)
        .env("PATH", SYSTEM_PATH);
    let out = run_ok(command, &scratch, "seed").unwrap_or_else(|r| panic!("{r}"));
    assert!(out.contains("seed examples ok with"), "{out}");
    assert!(out.contains(&venv.display().to_string()), "{out}");
    scratch.done();
}

/// The wheel holds the package, the library and no record of the
/// source tree, and says it is not pure.
fn check_contents(python: &Path, wheel: &Path, scratch: &Scratch) {
    let code = "import sys, zipfile\n\
                z = zipfile.ZipFile(sys.argv[1])\n\
                for i in z.infolist(): print(i.filename, i.file_size)\n\
                print(z.read([n for n in z.namelist() if n.endswith('.dist-info/WHEEL')][0]).decode())";
    let mut command = clean(python);
    command.args(["-c", code]).arg(wheel);
    let listing = run_ok(command, scratch, "wheel-list").unwrap_or_else(|r| panic!("{r}"));
    for needle in [
        "nnx_state/__init__.py ",
        "nnx_state/_lib.py ",
        "nnx_state/libnnx_state.so ",
        "Root-Is-Purelib: false",
        "Tag: py3-none-linux_",
    ] {
        assert!(listing.contains(needle), "no {needle:?} in\n{listing}");
    }
    assert!(!listing.contains("_build_config"), "{listing}");
    assert!(!listing.contains(".data/"), "{listing}");
}

/// `make wheel` runs the script (which builds with cargo first).
#[test]
fn make_wheel_runs_the_script() {
    let dir = std::env::temp_dir().join(format!("nnx-state-make-wheel-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir);
    let mut command = Command::new("make");
    command
        .arg("-C")
        .arg(crate_dir())
        .args(["--no-print-directory", "-n", "wheel"])
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    let out = run(command, &scratch, "make-n").unwrap_or_else(|r| panic!("{r}"));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("python/build_wheel.sh"),
        "{}",
        out.stdout
    );
    scratch.done();
}

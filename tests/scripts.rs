//! What `make test` does to the machine (`scripts/test.sh`): the two setup
//! scripts it runs, with fake `python`, `id` and `apt-get` programs that log
//! how they are called.
//!
//! - `scripts/pyvenv.sh` runs pip only when the requirements changed since
//!   the last install that succeeded, so that runs after the first need no
//!   network.
//! - `scripts/system-tools.sh` installs cmake and pkg-config system-wide
//!   only as root, after a line that says so, and never with
//!   `NNX_NO_SYSTEM_INSTALL=1`.

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("nnx-scripts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A fake program at `path`: logs its arguments to `log`, then runs `then`.
fn fake(path: &Path, log: &Path, then: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"${{0##*/}} $*\" >>'{}'\n{then}\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn bash() -> Command {
    // By absolute path: the tests give the scripts a PATH of fakes only.
    let bash = ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("bash is installed");
    Command::new(bash)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn log_lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn pip_runs_only_when_the_requirements_changed() {
    let dir = Dir::new("pyvenv");
    let (venv, log, reqs) = (
        dir.0.join("venv"),
        dir.0.join("log"),
        dir.0.join("reqs.txt"),
    );
    let fails = dir.0.join("pip-fails");
    fake(
        &venv.join("bin/python"),
        &log,
        &format!("[ ! -e '{}' ]", fails.display()),
    );
    fs::write(&reqs, "numpy\n").unwrap();
    let run = || {
        bash()
            .arg(script("pyvenv.sh"))
            .arg(&venv)
            .arg(&reqs)
            .output()
            .unwrap()
    };
    let pip = format!(
        "python -m pip install --quiet --disable-pip-version-check -r {}",
        reqs.display()
    );

    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(log_lines(&log), std::slice::from_ref(&pip));
    // Again: nothing to install, no pip, no network.
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pip skipped"), "{}", text(&out));
    assert_eq!(log_lines(&log).len(), 1);
    // Changed requirements install again; a failed pip leaves no stamp.
    fs::write(&reqs, "numpy\nflax\n").unwrap();
    fs::write(&fails, "").unwrap();
    let out = run();
    assert!(!out.status.success(), "{}", text(&out));
    fs::remove_file(&fails).unwrap();
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let out = run();
    assert!(text(&out).contains("pip skipped"), "{}", text(&out));
    assert_eq!(log_lines(&log), [pip.clone(), pip.clone(), pip]);
}

#[test]
fn system_tools_are_installed_only_as_root_saying_so_and_never_when_told_not_to() {
    let dir = Dir::new("system-tools");
    let (bin, log) = (dir.0.join("bin"), dir.0.join("log"));
    fake(&bin.join("apt-get"), &log, "");
    let run = |uid: &str, no_install: Option<&str>| {
        fake(
            &bin.join("id"),
            &dir.0.join("id-log"),
            &format!("echo {uid}"),
        );
        let _ = fs::remove_file(&log);
        let mut command = bash();
        // No cmake and no pkg-config on this PATH.
        command
            .arg(script("system-tools.sh"))
            .env("PATH", &bin)
            .env_remove("NNX_NO_SYSTEM_INSTALL");
        if let Some(value) = no_install {
            command.env("NNX_NO_SYSTEM_INSTALL", value);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        (text(&out), log_lines(&log))
    };

    let (said, apt) = run("0", None);
    let line = said
        .lines()
        .find(|l| l.contains("SYSTEM-WIDE"))
        .unwrap_or_else(|| panic!("no line says it installs system-wide: {said}"));
    assert!(line.contains("NNX_NO_SYSTEM_INSTALL=1"), "{line}");
    assert_eq!(
        apt,
        [
            "apt-get update -qq",
            "apt-get install -y -qq --no-install-recommends cmake pkg-config"
        ]
    );

    let (said, apt) = run("0", Some("1"));
    assert!(apt.is_empty(), "{apt:?}");
    assert!(said.contains("nothing is installed"), "{said}");

    let (said, apt) = run("1000", None);
    assert!(apt.is_empty(), "{apt:?}");
    assert!(
        said.contains("skips its CMake and pkg-config parts"),
        "{said}"
    );
}

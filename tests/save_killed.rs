//! Nothing lost when a save is killed: a process saving a large checkpoint
//! over an existing file is killed with SIGKILL while it writes. The
//! existing file must be byte-identical afterwards and load; the temporary
//! file the save leaves behind (`.NAME.tmp-PID-N` in the same directory)
//! must not confuse a later load or save.
//!
//! The saving process is the `nnx-state` tool (`split BIG --filter ... -o
//! FILE`). The test watches the directory for the temporary file and kills
//! the tool as soon as it appears, then a little later on each further
//! attempt; it requires that at least one kill landed while the file was
//! being written (the temporary file present, the rename not done).

#![cfg(unix)]

use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nnx_state::io::{self, LoadOptions, SaveOptions};
use nnx_state::{parse_path, Array, Entry, Leaf, State, TypeId, Variable};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("nnx-save-killed-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The files in the directory whose names start with `prefix`.
    fn files_starting(&self, prefix: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// The temporary files of a save to `NAME`: `.NAME.tmp-PID-N`
/// (`write_atomically` in src/io/safetensors.rs).
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

const BIG_TENSORS: usize = 48;
const BIG_TENSOR_BYTES: usize = 4 << 20;

/// A safetensors file of another tool with BIG_TENSORS float32 tensors of
/// BIG_TENSOR_BYTES each (192 MiB of tensors), written sparse so that making
/// it costs nothing; reading it maps zero pages.
fn big_input(path: &Path) {
    let mut header = String::from("{");
    for i in 0..BIG_TENSORS {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""layer.{i}.w":{{"dtype":"F32","shape":[{}],"data_offsets":[{},{}]}}"#,
            BIG_TENSOR_BYTES / 4,
            i * BIG_TENSOR_BYTES,
            (i + 1) * BIG_TENSOR_BYTES
        ));
    }
    header.push('}');
    let mut file = fs::File::create(path).unwrap();
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len((8 + header.len() + BIG_TENSORS * BIG_TENSOR_BYTES) as u64)
        .unwrap();
}

/// The small checkpoint that is there before: two Params.
fn small_state(bias: f32) -> State {
    let state = State::new();
    for (path, values) in [
        ("linear/kernel", vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ("linear/bias", vec![bias; 3]),
    ] {
        let array = Array::from_slice(&[values.len() as i64], &values).unwrap();
        let var = Variable::new(TypeId::PARAM, Some(Arc::new(array))).unwrap();
        state
            .set_variable(&parse_path(path).unwrap(), Arc::new(var))
            .unwrap();
    }
    state
}

/// The float32 values of the variable at `path`.
fn values(state: &State, path: &str) -> Vec<f32> {
    let Entry::Leaf(Leaf::Variable(var)) = state.get(&parse_path(path).unwrap()).unwrap() else {
        panic!("no variable at {path}");
    };
    let array = var.array().expect("a value");
    array
        .bytes()
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Checks that `path` loads as `small_state(bias)`.
fn assert_loads_small(path: &Path, bias: f32) {
    let loaded = io::load(path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    assert!(loaded.written_by_nnx);
    assert_eq!(loaded.state.num_leaves().unwrap(), 2);
    assert_eq!(values(&loaded.state, "linear/bias"), vec![bias; 3]);
    assert_eq!(
        values(&loaded.state, "linear/kernel"),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}

fn tool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nnx-state"))
        .args(args)
        .output()
        .expect("the tool runs")
}

/// SIGKILL's number (9 on every Unix).
const SIGKILL: i32 = 9;

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Killed with the temporary file present and the target untouched.
    KilledMidWrite,
    /// The save finished before the kill (or before the temporary file was
    /// seen).
    Finished,
}

/// Starts `nnx-state split big --filter ... -o target`, waits for its
/// temporary file to appear, waits `delay` more, and kills it.
fn save_and_kill(dir: &Dir, big: &Path, target: &Path, delay: Duration) -> Outcome {
    let name = target.file_name().unwrap().to_str().unwrap();
    let prefix = temp_prefix(name);
    let before = dir.files_starting(&prefix);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnx-state"))
        .args(["split", big.to_str().unwrap(), "--filter", "..."])
        .arg("-o")
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the tool starts");
    let ours = format!("{prefix}{}-", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        if dir
            .files_starting(&ours)
            .iter()
            .any(|p| !before.contains(p))
        {
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(
            Instant::now() < deadline,
            "the save neither wrote nor ended"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    if seen && !delay.is_zero() {
        std::thread::sleep(delay);
    }
    // Child::kill sends SIGKILL on Unix; it fails only if the child was
    // already reaped, which `try_wait` above may have done.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(SIGKILL);
    let temp_left = !dir.files_starting(&ours).is_empty();
    if killed && temp_left {
        Outcome::KilledMidWrite
    } else {
        // Killed after the rename, or not killed at all.
        if !killed {
            assert!(status.success(), "the save failed: {status:?}");
        }
        Outcome::Finished
    }
}

#[test]
fn a_killed_save_leaves_the_existing_file_intact() {
    let started = Instant::now();
    let dir = Dir::new("kill");
    let big = dir.path("big.safetensors");
    big_input(&big);
    // The target is called model.safetensors so that loading the directory
    // (which looks for that name) is checked with the leftovers beside it.
    let target = dir.path("model.safetensors");
    io::save(&small_state(0.5), &target, &SaveOptions::default()).unwrap();
    let old = fs::read(&target).unwrap();
    let prefix = temp_prefix("model.safetensors");

    // The later ones may reach the flush to disk, the rename, or the end.
    let delays_ms = [0u64, 0, 5, 20, 80, 200, 400];
    let mut mid_write = 0;
    let mut finished = 0;
    for &ms in &delays_ms {
        match save_and_kill(&dir, &big, &target, Duration::from_millis(ms)) {
            Outcome::KilledMidWrite => {
                mid_write += 1;
                // Byte for byte what was there.
                assert_eq!(
                    fs::read(&target).unwrap(),
                    old,
                    "the existing file changed after a kill {ms} ms into the write"
                );
                assert_loads_small(&target, 0.5);
            }
            Outcome::Finished => {
                // The save won the race: the file is the complete new one.
                finished += 1;
                let loaded = io::load(&target, &LoadOptions::default()).unwrap();
                assert_eq!(loaded.state.num_leaves().unwrap(), BIG_TENSORS);
                io::save(&small_state(0.5), &target, &SaveOptions::default()).unwrap();
                assert_eq!(fs::read(&target).unwrap(), old);
            }
        }
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    eprintln!(
        "{mid_write} kill(s) during the write, {finished} save(s) finished first, {:.1?}",
        started.elapsed()
    );
    assert!(
        mid_write >= 1,
        "no kill landed during the write ({finished} saves finished first)"
    );

    // The leftovers: one temporary file per killed save, nothing else new.
    let leftovers = dir.files_starting(&prefix);
    assert_eq!(leftovers.len(), mid_write, "{leftovers:?}");
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(&prefix))
        .collect();
    names.sort();
    assert_eq!(names, ["big.safetensors", "model.safetensors"]);

    // Loads are not confused by them: the file, the directory, the tool.
    assert_eq!(fs::read(&target).unwrap(), old);
    assert_loads_small(&target, 0.5);
    assert_loads_small(&dir.0, 0.5);
    let out = tool(&["inspect", dir.0.to_str().unwrap(), "--flat"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("total: 2 leaves, 9 elements, 36 bytes"),
        "{text}"
    );

    // Nor are later saves: in this process, through the tool, and sharded
    // (which lists the directory to remove stale shards).
    io::save(&small_state(1.5), &target, &SaveOptions::default()).unwrap();
    assert_loads_small(&target, 1.5);
    let small = dir.path("small.safetensors");
    io::save(&small_state(2.5), &small, &SaveOptions::default()).unwrap();
    let out = tool(&[
        "split",
        small.to_str().unwrap(),
        "--filter",
        "...",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_loads_small(&target, 2.5);
    assert_loads_small(&dir.0, 2.5);
    let written = io::save_sharded(
        &small_state(3.5),
        &dir.0,
        "model",
        1 << 20,
        &SaveOptions::default(),
    )
    .unwrap();
    assert_eq!(written, vec![target.clone()]);
    assert_loads_small(&dir.0, 3.5);
    // The leftovers are still there (nothing removes them) and untouched.
    assert_eq!(dir.files_starting(&prefix), leftovers);
}

/// A leftover temporary file whose name a later save would pick again (the
/// same process id, as for a service that restarts as the same pid in a
/// container, and the same counter) must not make that save fail.
#[test]
fn a_leftover_with_the_next_temporary_name_does_not_block_a_save() {
    let dir = Dir::new("same-name");
    let target = dir.path("model.safetensors");
    io::save(&small_state(0.5), &target, &SaveOptions::default()).unwrap();
    let prefix = temp_prefix("model.safetensors");
    // The names this process's next saves would use, whatever its counter
    // stands at (each save takes one number).
    for n in 0..256 {
        let name = format!("{prefix}{}-{n}", std::process::id());
        fs::write(dir.path(&name), b"partial").unwrap();
    }
    io::save(&small_state(1.5), &target, &SaveOptions::default())
        .unwrap_or_else(|e| panic!("a save next to leftover temporary files failed: {e}"));
    assert_loads_small(&target, 1.5);
}

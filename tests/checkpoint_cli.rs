//! The `nnx-state` tool: `inspect` prints a checkpoint's tree and totals,
//! `split` writes the parts that filters select; bad command lines exit 2,
//! failed operations 1, each with a message.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use nnx_state::io::{self, LoadOptions, SaveOptions};
use nnx_state::{parse_path, Array, MetaValue, PrngKey, State, TypeId, Variable};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("nnx-ckpt-cli-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnx-state"))
        .args(args)
        .output()
        .expect("the tool runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A small model: two layers of Param kernels and biases, BatchNorm stats,
/// and a dropout RNG key with a tag.
fn model(file: &Path) {
    let state = State::new();
    let put = |path: &str, t: TypeId, values: &[f32]| {
        let array = Array::from_slice(&[values.len() as i64], values).unwrap();
        let var = Arc::new(Variable::new(t, Some(Arc::new(array))).unwrap());
        state
            .set_variable(&parse_path(path).unwrap(), var.clone())
            .unwrap();
        var
    };
    put("layers/0/kernel", TypeId::PARAM, &[1.0, 2.0, 3.0, 4.0]);
    put("layers/0/bias", TypeId::PARAM, &[0.0, 0.0]);
    put("layers/1/kernel", TypeId::PARAM, &[5.0; 6]);
    put("bn/mean", TypeId::BATCH_STAT, &[0.0; 2]);
    put("bn/var", TypeId::BATCH_STAT, &[1.0; 2]);
    let data = Arc::new(Array::from_slice(&[2], &[0u32, 1]).unwrap());
    let key = PrngKey::new(data, "threefry2x32").unwrap();
    let key = Arc::new(Variable::new(TypeId::RNG_KEY, key).unwrap());
    key.set_metadata("tag", MetaValue::Str("dropout".into()))
        .unwrap();
    state
        .set_variable(&parse_path("dropout/key").unwrap(), key)
        .unwrap();
    io::save(&state, file, &SaveOptions::default()).unwrap();
}

#[test]
fn inspect_prints_the_tree_and_totals() {
    let dir = Dir::new("inspect");
    let file = dir.path("m.safetensors");
    model(&file);
    let f = file.to_str().unwrap();
    let out = tool(&["inspect", f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "written by nnx-state",
        "layers",
        "    kernel",
        "Param",
        "BatchStat",
        "RngKey",
        "key<fry>",
        "float32",
        "[6]",
        "24 B",
        "3 leaves, 48 B",
        "total: 6 leaves, 18 elements, 72 bytes",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let out = tool(&["inspect", f, "--filter", "Param & path:0", "--flat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("layers/0/bias"), "{text}");
    assert!(text.contains("layers/0/kernel"), "{text}");
    assert!(!text.contains("layers/1"), "{text}");
    assert!(
        text.contains("total: 2 leaves, 6 elements, 24 bytes"),
        "{text}"
    );
    assert!(
        text.contains("All(OfType(Param), PathContains(0, exact=True))"),
        "{text}"
    );
    let out = tool(&["inspect", f, "--filter", "tag:dropout"]);
    assert!(stdout(&out).contains("total: 1 leaf,"), "{}", stdout(&out));
}

#[test]
fn inspect_reads_files_of_others_and_directories() {
    let dir = Dir::new("foreign");
    let header = r#"{"__metadata__":{"format":"pt"},"enc.layer.0.w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 4]);
    fs::write(dir.path("model.safetensors"), bytes).unwrap();
    let d = dir.0.to_str().unwrap();
    let out = tool(&["inspect", d, "--flat"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("written by another tool"), "{text}");
    assert!(text.contains("format=\"pt\""), "{text}");
    assert!(
        text.contains("enc/layer/0/w  Param  float16  [2]"),
        "{text}"
    );
    let out = tool(&["inspect", d, "--bare", "--flat"]);
    assert!(
        stdout(&out).contains("enc/layer/0/w  array"),
        "{}",
        stdout(&out)
    );
    let out = tool(&["inspect", d, "--type", "BatchStat", "--filter", "BatchStat"]);
    assert!(stdout(&out).contains("total: 1 leaf,"), "{}", stdout(&out));
}

#[test]
fn split_writes_the_parts() {
    let dir = Dir::new("split");
    let file = dir.path("m.safetensors");
    model(&file);
    let (params, rest) = (dir.path("params.safetensors"), dir.path("rest.safetensors"));
    let out = tool(&[
        "split",
        file.to_str().unwrap(),
        "--filter",
        "Param",
        "-o",
        params.to_str().unwrap(),
        "--filter",
        "...",
        "-o",
        rest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 leaves (48 bytes) selected by Param"),
        "{}",
        stdout(&out)
    );
    let p = io::load(&params, &LoadOptions::default()).unwrap().state;
    let r = io::load(&rest, &LoadOptions::default()).unwrap().state;
    assert_eq!(p.num_leaves().unwrap(), 3);
    assert_eq!(r.num_leaves().unwrap(), 3);
    let key = r.get_variable(&parse_path("dropout/key").unwrap()).unwrap();
    assert_eq!(
        (key.type_name(), key.tag().as_deref()),
        ("RngKey", Some("dropout"))
    );
    // Leaves no filter selects fail the split, as nnx.split_state does.
    let out = tool(&[
        "split",
        file.to_str().unwrap(),
        "--filter",
        "Param",
        "-o",
        params.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Non-exhaustive filters"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_command_lines_and_files() {
    let dir = Dir::new("bad");
    let file = dir.path("m.safetensors");
    model(&file);
    let f = file.to_str().unwrap();
    for (args, needle) in [
        (vec![], "no command"),
        (vec!["frobnicate"], "unknown command"),
        (vec!["inspect"], "no FILE"),
        (vec!["inspect", f, "--filter"], "--filter needs a value"),
        (vec!["inspect", f, "--filter", "Param &"], "column 8"),
        (
            vec!["inspect", f, "--filter", "Nope"],
            "no variable type is named \"Nope\"",
        ),
        (vec!["inspect", f, "--bogus"], "unknown option"),
        (vec!["inspect", f, "--type", "Nope"], "no variable type"),
        (
            vec!["inspect", f, "--type", "Param", "--bare"],
            "exclude each other",
        ),
        (vec!["split", f, "--filter", "Param"], "one -o per --filter"),
        (vec!["split", f], "at least one --filter"),
        (vec!["inspect", f, "extra"], "unexpected argument"),
    ] {
        let out = tool(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("usage:"), "{args:?}");
    }
    let truncated = dir.path("t.safetensors");
    let bytes = fs::read(&file).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
    let out = tool(&["inspect", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("t.safetensors"), "{}", stderr(&out));
    assert!(stderr(&out).contains("past the end"), "{}", stderr(&out));
    let out = tool(&["inspect", dir.path("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = tool(&["--help"]);
    assert!(out.status.success() && stdout(&out).contains("nnx-state inspect FILE"));
    let out = tool(&["--version"]);
    assert!(stdout(&out).starts_with("nnx-state "));
}

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
        (vec!["frobnicate"], "unknown command 'frobnicate'"),
        (
            vec!["inspcet", f],
            "unknown command 'inspcet'; did you mean 'inspect'?",
        ),
        (vec!["merg"], "did you mean 'merge'?"),
        (vec!["--flat", "inspect"], "the command comes first"),
        (vec!["inspect"], "inspect needs a FILE"),
        (vec!["inspect", f, "--filter"], "--filter needs a value"),
        (vec!["inspect", f, "--filter", "Param &"], "column 8"),
        (
            vec!["inspect", f, "--filter", "Nope"],
            "no variable type is named \"Nope\"",
        ),
        (
            vec!["inspect", f, "--filter", "Parm | BatchStat"],
            "no variable type is named \"Parm\"; did you mean Param?",
        ),
        (vec!["inspect", f, "--bogus"], "unknown option '--bogus'"),
        (
            vec!["inspect", f, "--filtre", "Param"],
            "unknown option '--filtre'; did you mean '--filter'?",
        ),
        (vec!["inspect", f, "--flat=yes"], "--flat takes no value"),
        (vec!["inspect", f, "--type", "Nope"], "no variable type"),
        (
            vec!["inspect", f, "--type=batchstat"],
            "did you mean BatchStat?",
        ),
        (
            vec!["inspect", f, "--type", "Param", "--bare"],
            "exclude each other",
        ),
        (
            vec!["inspect", f, "--max-shard-size", "1"],
            "inspect takes no --max-shard-size",
        ),
        (vec!["split", f, "--filter", "Param"], "one -o per --filter"),
        (vec!["split", f], "at least one --filter"),
        (vec!["inspect", f, "extra"], "unexpected argument 'extra'"),
        (vec!["merge", "-o", f], "merge needs at least one FILE"),
        (vec!["merge", f, f], "merge needs one -o OUT, not 0"),
        (vec!["merge", f, "--flat", "-o", f], "merge takes no --flat"),
        (
            vec!["merge", f, "-o", f, "--max-shard-size", "5 parsecs"],
            "like 5GB",
        ),
    ] {
        let out = tool(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        // One line of what is wrong, one of what to do: not the whole help.
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(lines[0].starts_with("nnx-state: error: "), "{err}");
        assert_eq!(lines[1], "run 'nnx-state --help' for usage");
    }
    // Help of a command is the help.
    let out = tool(&["merge", "--help"]);
    assert!(out.status.success() && stdout(&out).contains("nnx-state merge FILE..."));
    let truncated = dir.path("t.safetensors");
    let bytes = fs::read(&file).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
    let out = tool(&["inspect", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("t.safetensors"), "{}", stderr(&out));
    assert!(stderr(&out).contains("past the end"), "{}", stderr(&out));
    let out = tool(&["inspect", dir.path("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // Files that are not safetensors say so, and what they look like.
    let zip = {
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend_from_slice(&[0x14, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
        bytes
    };
    let msgpack = [
        0x82, 0xa6, b'p', b'a', b'r', b'a', b'm', b's', 0x80, 0xa1, b'x', 0xc0,
    ];
    for (name, bytes, needle) in [
        (
            "notes.txt",
            &b"a checkpoint? no, a text file with notes\n"[..],
            "text: \"a checkpoint? no, a text\"",
        ),
        ("model.bin", &zip, "a zip archive"),
        ("flax.msgpack", &msgpack, "msgpack"),
        (
            "config.json",
            br#"{"hidden_size": 768, "layers": 12}"#,
            "text (JSON?)",
        ),
    ] {
        let path = dir.path(name);
        fs::write(&path, bytes).unwrap();
        let out = tool(&["inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{name}: not a safetensors file: ")),
            "{err}"
        );
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("header length"), "{err}");
    }
    // A save into a directory that does not exist names the file and it.
    let missing_dir = dir.path("no/such");
    let target = missing_dir.join("x.safetensors");
    let out = tool(&[
        "split",
        f,
        "--filter",
        "...",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot save '{}': the directory '{}' does not exist",
            target.display(),
            missing_dir.display()
        )),
        "{err}"
    );
    assert!(!err.contains(".tmp-"), "{err}");
    let out = tool(&["--help"]);
    assert!(out.status.success() && stdout(&out).contains("nnx-state inspect FILE"));
    let out = tool(&["--version"]);
    assert!(stdout(&out).starts_with("nnx-state "));
}

#[test]
fn merge_joins_parts_and_shards_and_refuses_conflicts() {
    let dir = Dir::new("merge");
    let file = dir.path("m.safetensors");
    model(&file);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (params, rest) = (dir.path("params.safetensors"), dir.path("rest.safetensors"));
    let out = tool(&[
        "split",
        &s(&file),
        "--filter",
        "Param",
        "-o",
        &s(&params),
        "--filter",
        "...",
        "-o",
        &s(&rest),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let original = io::load(&file, &LoadOptions::default()).unwrap().state;

    // The parts merged give the model back: types, tags, keys.
    let merged = dir.path("merged.safetensors");
    let out = tool(&["merge", &s(&rest), &s(&params), "-o", &s(&merged)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("6 leaves (72 bytes) from 2 checkpoints"),
        "{}",
        stdout(&out)
    );
    let back = io::load(&merged, &LoadOptions::default()).unwrap();
    assert!(back.written_by_nnx);
    assert_eq!(format!("{:?}", back.state), format!("{:?}", original));

    // Sharded output, and its shards merged one by one into one file.
    let shards = dir.path("shards");
    let out = tool(&[
        "merge",
        &s(&params),
        &s(&rest),
        "-o",
        &s(&shards),
        "--max-shard-size",
        "16B",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(shards.join("model.safetensors.index.json").is_file());
    let mut shard_files: Vec<String> = fs::read_dir(&shards)
        .unwrap()
        .map(|e| s(&e.unwrap().path()))
        .filter(|p| p.ends_with(".safetensors"))
        .collect();
    shard_files.sort();
    assert!(shard_files.len() > 2, "{shard_files:?}");
    let joined = dir.path("joined.safetensors");
    let mut args = vec!["merge".to_owned()];
    args.extend(shard_files);
    args.extend(["-o".to_owned(), s(&joined)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let joined = io::load(&joined, &LoadOptions::default()).unwrap().state;
    assert_eq!(format!("{:?}", joined), format!("{:?}", original));
    let from_dir = io::load(&shards, &LoadOptions::default()).unwrap().state;
    assert_eq!(format!("{:?}", from_dir), format!("{:?}", original));

    // Another tool's file keeps its __metadata__ through the merge.
    let header = r#"{"__metadata__":{"format":"pt"},"head.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let hf = dir.path("hf.safetensors");
    fs::write(&hf, bytes).unwrap();
    let with_head = dir.path("with-head.safetensors");
    let out = tool(&["merge", &s(&hf), &s(&file), "-o", &s(&with_head)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let loaded = io::load(&with_head, &LoadOptions::default()).unwrap();
    assert_eq!(
        loaded.metadata.get("format").map(String::as_str),
        Some("pt")
    );
    assert_eq!(loaded.state.num_leaves().unwrap(), 7);

    // A path in two inputs, or a leaf where another holds a subtree.
    let out = tool(&["merge", &s(&file), &s(&params), "-o", &s(&merged)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "'layers/0/bias' is in both '{}' and '{}'",
            file.display(),
            params.display()
        )),
        "{err}"
    );
    let header = r#"{"layers":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let leaf = dir.path("leaf.safetensors");
    fs::write(&leaf, bytes).unwrap();
    let out = tool(&["merge", &s(&params), &s(&leaf), "-o", &s(&merged)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("'layers' is a leaf in") && err.contains("holds 'layers/0/bias'"),
        "{err}"
    );
    // Nothing was written by the failed merges.
    let still = io::load(&merged, &LoadOptions::default()).unwrap().state;
    assert_eq!(format!("{:?}", still), format!("{:?}", original));
}

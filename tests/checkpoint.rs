//! safetensors checkpoints through the core: exact round trips of files
//! written here, files written by others (dotted names, int keys), zero-copy
//! loading, atomic saves, sharded checkpoints, and every malformed file the
//! loader must refuse with a `Format` error naming the problem.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use nnx_state::array::DType;
use nnx_state::io::{self, LoadOptions, SaveOptions};
use nnx_state::{
    parse_path, types, Array, ErrorKind, Key, Leaf, MetaValue, Opaque, PrngKey, State, TypeId,
    Value, Variable,
};

/// A fresh directory for one test, removed when the test passes.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("nnx-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in the directory, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn p(text: &str) -> Vec<Key> {
    parse_path(text).unwrap()
}

fn var(type_id: TypeId, array: Array) -> Arc<Variable> {
    Arc::new(Variable::new(type_id, Some(Arc::new(array))).unwrap())
}

fn bytes_of(dtype: DType, n: usize, seed: u8) -> Vec<u8> {
    (0..n * dtype.size())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A state with every feature a file must keep: every dtype, scalars and
/// empty arrays, int keys, str keys that look like ints or hold dots,
/// custom types, every kind of metadata, a variable without a value, bare
/// arrays, typed PRNG keys, and variables held at two paths.
fn rich_state() -> (State, Arc<Variable>) {
    let quant = types::register("CheckpointTestQuant", TypeId::PARAM).unwrap();
    let deep = types::register("CheckpointTestDeep", quant).unwrap();
    let state = State::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let shape = [2i64, 3];
        let array = Array::new(dtype, &shape, Some(&bytes_of(dtype, 6, i as u8))).unwrap();
        let path = vec![Key::str("dtypes"), Key::str(dtype.name())];
        state
            .set_variable(&path, var(TypeId::PARAM, array))
            .unwrap();
    }
    state
        .set_variable(
            &p("layers/0/kernel"),
            var(
                quant,
                Array::from_slice(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap(),
            ),
        )
        .unwrap();
    state
        .set_variable(
            &[Key::str("layers"), Key::str("0"), Key::str("kernel")],
            var(deep, Array::from_slice(&[1], &[7i64]).unwrap()),
        )
        .unwrap();
    state
        .set_variable(
            &[Key::str("a.b"), Key::str("c")],
            var(
                TypeId::BATCH_STAT,
                Array::from_slice(&[], &[0.5f64]).unwrap(),
            ),
        )
        .unwrap();
    state
        .set_variable(
            &[Key::str("a"), Key::str("b"), Key::str("c")],
            var(
                TypeId::CACHE,
                Array::new(DType::F32, &[0, 4], None).unwrap(),
            ),
        )
        .unwrap();
    state
        .set_variable(
            &[Key::int(-3), Key::int(i64::MAX)],
            var(
                TypeId::RNG_KEY,
                Array::from_slice(&[2], &[1u32, 2]).unwrap(),
            ),
        )
        .unwrap();
    // Typed PRNG keys, as nnx.Rngs keeps them: a threefry key with its tag,
    // a batch of rbg keys, a key of a custom implementation, and a key held
    // at two paths. Key data covers all 32 bits of each word.
    for (path, shape, words, impl_name) in [
        (
            "rngs/default/key",
            vec![2i64],
            vec![0u32, 42],
            "threefry2x32",
        ),
        (
            "rngs/dropout/key",
            vec![3, 4],
            (0..12)
                .map(|i| 0x9E37_79B9u32.wrapping_mul(i + 1))
                .collect(),
            "rbg",
        ),
        (
            "rngs/custom/key",
            vec![1, 3],
            vec![u32::MAX, 0, 1],
            "my_prng",
        ),
    ] {
        let data = Arc::new(Array::from_slice(&shape, &words).unwrap());
        let key = Arc::new(
            Variable::new(TypeId::RNG_KEY, PrngKey::new(data, impl_name).unwrap()).unwrap(),
        );
        key.set_metadata(
            "tag",
            MetaValue::Str(path.split('/').nth(1).unwrap().into()),
        )
        .unwrap();
        state.set_variable(&p(path), key.clone()).unwrap();
        if impl_name == "my_prng" {
            state.set_variable(&p("rngs/alias/key"), key).unwrap();
        }
    }
    let meta = Arc::new(Variable::new(TypeId::INTERMEDIATE, None).unwrap());
    meta.set_metadata("tag", MetaValue::Str("dropout".into()))
        .unwrap();
    meta.set_metadata("count", MetaValue::Int(-42)).unwrap();
    meta.set_metadata("scale", MetaValue::Float(0.1)).unwrap();
    meta.set_metadata(
        "nan",
        MetaValue::Float(f64::from_bits(0x7ff8_0000_dead_beef)),
    )
    .unwrap();
    meta.set_metadata("inf", MetaValue::Float(f64::NEG_INFINITY))
        .unwrap();
    meta.set_metadata("flag", MetaValue::Bool(true)).unwrap();
    meta.set_metadata("a", MetaValue::Str("".into())).unwrap();
    for (name, value) in structured_metadata() {
        meta.set_metadata(name, value).unwrap();
    }
    state.set_variable(&p("no_value"), meta).unwrap();
    state
        .set_array(
            &p("bare/table"),
            Arc::new(Array::from_slice(&[3], &[1u8, 2, 3]).unwrap()),
        )
        .unwrap();
    let tied = var(
        TypeId::PARAM,
        Array::from_slice(&[3], &[9.0f32, 8.0, 7.0]).unwrap(),
    );
    tied.set_metadata("tag", MetaValue::Str("tied".into()))
        .unwrap();
    state
        .set_variable(&p("embed/weight"), tied.clone())
        .unwrap();
    state.set_variable(&p("head/weight"), tied.clone()).unwrap();
    state
        .set_variable(
            &[Key::str("__metadata__")],
            var(TypeId::PARAM, Array::from_slice(&[1], &[1i8]).unwrap()),
        )
        .unwrap();
    (state, tied)
}

/// What real models carry, and the corners of each kind: tuples and lists
/// (of one item too), None, maps in an order that is not sorted, 1 beside
/// 1.0, floats JSON cannot write, and a value as deep as the library takes.
fn structured_metadata() -> Vec<(&'static str, MetaValue)> {
    let t = |items: Vec<MetaValue>| MetaValue::tuple(items).unwrap();
    let l = |items: Vec<MetaValue>| MetaValue::list(items).unwrap();
    let mut deepest = MetaValue::Float(f64::from_bits(0xfff8_0000_0000_0042));
    for level in 0..nnx_state::MAX_DEPTH {
        deepest = if level % 2 == 0 {
            t(vec![deepest])
        } else {
            l(vec![deepest])
        };
    }
    vec![
        ("out_sharding", t(vec![MetaValue::Null, "model".into()])),
        ("mesh", MetaValue::Null),
        ("one", t(vec![MetaValue::Int(1)])),
        ("empty", t(vec![])),
        (
            "axes",
            l(vec![MetaValue::Int(1), MetaValue::Float(1.0), l(vec![])]),
        ),
        (
            "optimizer",
            MetaValue::map([
                ("lr", MetaValue::Float(1e-3)),
                ("betas", t(vec![0.9.into(), 0.999.into()])),
                ("clip", MetaValue::Float(f64::INFINITY)),
                ("zero", MetaValue::Float(-0.0)),
                (
                    "steps",
                    l(vec![MetaValue::Int(i64::MIN), MetaValue::Int(i64::MAX)]),
                ),
                (
                    "nested",
                    MetaValue::map([("b", MetaValue::Bool(false)), ("a", MetaValue::Null)])
                        .unwrap(),
                ),
                ("", MetaValue::map::<&str>([]).unwrap()),
            ])
            .unwrap(),
        ),
        ("deepest", deepest),
    ]
}

/// The same entries, in the same order, of the same values: compared in
/// their JSON form, which keeps every kind apart and floats by their bits
/// where they are not finite (and `-0.0` from `0.0`).
fn meta_equal(a: &[(String, MetaValue)], b: &[(String, MetaValue)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((n1, v1), (n2, v2))| n1 == n2 && io::meta_to_text(v1) == io::meta_to_text(v2))
}

fn arrays_equal(a: &Array, b: &Array) -> bool {
    a.dtype() == b.dtype() && a.shape() == b.shape() && a.bytes() == b.bytes()
}

/// Same paths (with key kinds), same leaf kinds, types, metadata and bytes.
fn assert_same_content(a: &State, b: &State) {
    let (fa, fb) = (a.flatten().unwrap(), b.flatten().unwrap());
    assert_eq!(
        fa.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
        fb.iter().map(|x| x.0.clone()).collect::<Vec<_>>()
    );
    for ((path, la), (_, lb)) in fa.iter().zip(&fb) {
        match (la, lb) {
            (Leaf::Array(x), Leaf::Array(y)) => assert!(arrays_equal(x, y), "{path:?}"),
            (Leaf::Variable(x), Leaf::Variable(y)) => {
                assert_eq!(x.type_id(), y.type_id(), "{path:?}");
                assert!(
                    meta_equal(&x.metadata_entries(), &y.metadata_entries()),
                    "{path:?}"
                );
                match (x.value(), y.value()) {
                    (Value::None, Value::None) => {}
                    (Value::Array(x), Value::Array(y)) => {
                        assert!(arrays_equal(&x, &y), "{path:?}")
                    }
                    (Value::Key(x), Value::Key(y)) => {
                        assert_eq!(x.impl_name(), y.impl_name(), "{path:?}");
                        assert!(arrays_equal(x.data(), y.data()), "{path:?}");
                    }
                    (x, y) => panic!("{path:?}: {} against {}", x.describe(), y.describe()),
                }
            }
            _ => panic!("{path:?}: different leaf kinds"),
        }
    }
}

#[test]
fn files_written_here_round_trip_exactly() {
    let dir = Dir::new("roundtrip");
    let (state, _) = rich_state();
    let file = dir.path("rich.safetensors");
    io::save(&state, &file, &SaveOptions::default()).unwrap();
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    assert!(loaded.written_by_nnx);
    assert!(loaded.metadata.is_empty());
    assert_same_content(&state, &loaded.state);
    // The variable held at two paths is one variable again.
    let a = loaded.state.get_variable(&p("embed/weight")).unwrap();
    let b = loaded.state.get_variable(&p("head/weight")).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // Int and str keys stay apart.
    let int_kernel = loaded.state.get_variable(&p("layers/0/kernel")).unwrap();
    assert_eq!(int_kernel.type_name(), "CheckpointTestQuant");
    let str_kernel = loaded
        .state
        .get_variable(&[Key::str("layers"), Key::str("0"), Key::str("kernel")])
        .unwrap();
    assert_eq!(str_kernel.type_name(), "CheckpointTestDeep");
    // Saving what was loaded gives the very same bytes.
    let again = dir.path("again.safetensors");
    io::save(&loaded.state, &again, &SaveOptions::default()).unwrap();
    assert_eq!(fs::read(&file).unwrap(), fs::read(&again).unwrap());
    // Typed keys come back as typed keys, bit for bit, and the key held at
    // two paths is one variable again.
    let key = loaded.state.get_variable(&p("rngs/dropout/key")).unwrap();
    let Value::Key(k) = key.value() else {
        panic!("not a key: {}", key.value().describe())
    };
    assert_eq!(k.impl_name(), "rbg");
    assert_eq!(k.data().shape(), &[3, 4]);
    assert_eq!(k.data().dtype(), DType::U32);
    assert!(Arc::ptr_eq(
        &loaded.state.get_variable(&p("rngs/custom/key")).unwrap(),
        &loaded.state.get_variable(&p("rngs/alias/key")).unwrap()
    ));
    // Leaf-type options do not apply to files written here.
    let bare = io::load(
        &file,
        &LoadOptions {
            leaf_type: None,
            copy: true,
            str_keys: true,
        },
    )
    .unwrap();
    assert_same_content(&state, &bare.state);
}

#[test]
fn structured_metadata_round_trips_exactly() {
    let dir = Dir::new("structured");
    let (state, _) = rich_state();
    let file = dir.path("structured.safetensors");
    io::save(&state, &file, &SaveOptions::default()).unwrap();
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    let var = loaded.state.get_variable(&p("no_value")).unwrap();
    let names: Vec<String> = var.metadata_entries().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "tag",
            "count",
            "scale",
            "nan",
            "inf",
            "flag",
            "a",
            "out_sharding",
            "mesh",
            "one",
            "empty",
            "axes",
            "optimizer",
            "deepest"
        ]
    );
    let repr = |name: &str| var.metadata(name).unwrap().to_string();
    assert_eq!(repr("out_sharding"), "(None, 'model')");
    assert_eq!(repr("mesh"), "None");
    assert_eq!(repr("one"), "(1,)");
    assert_eq!(repr("empty"), "()");
    assert_eq!(repr("axes"), "[1, 1.0, []]");
    assert_eq!(
        repr("optimizer"),
        "{'lr': 0.001, 'betas': (0.9, 0.999), 'clip': inf, 'zero': -0.0, \
         'steps': [-9223372036854775808, 9223372036854775807], \
         'nested': {'b': False, 'a': None}, '': {}}"
    );
    let deepest = var.metadata("deepest").unwrap();
    assert_eq!(deepest.levels(), nnx_state::MAX_DEPTH);
    let mut inner = &deepest;
    while let Some(seq) = inner.as_seq() {
        inner = seq.get(0).unwrap();
    }
    let MetaValue::Float(x) = inner else {
        panic!("{inner:?}")
    };
    assert_eq!(x.to_bits(), 0xfff8_0000_0000_0042);
    // The tag is still what tag filters read.
    assert!(var.has_tag("dropout"));

    // The record holds each entry as [name, kind, value].
    let bytes = fs::read(&file).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let record = &header.metadata().as_ref().unwrap()[io::FORMAT_KEY];
    for entry in [
        r#"["out_sharding","tuple",[null,"model"]]"#,
        r#"["mesh","null",null]"#,
        r#"["axes","list",[1,1.0,["list"]]]"#,
        r#"["optimizer","map",["lr",0.001,"betas",["tuple",0.9,0.999],"clip",["float","0x7ff0000000000000"],"zero",-0.0,"#,
    ] {
        assert!(record.contains(entry), "{entry} not in {record}");
    }
}

#[test]
fn records_of_the_first_metadata_kinds_still_load() {
    // As the first version wrote them: str, int, float (a number, or bits),
    // bool.
    let t = format!(r#""w":{{{T4},"data_offsets":[0,4]}}"#);
    let record = r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["tag","str","x"],["n","int",3],["s","float",0.5],["i","float",1],["nan","float","0x7ff8000000000001"],["b","bool",true]]}]}"#;
    let loaded = io::load_bytes(
        with_record(record, &t, &[0; 4]).into(),
        &LoadOptions::default(),
    )
    .unwrap();
    let var = loaded.state.get_variable(&p("w")).unwrap();
    let entries = var.metadata_entries();
    let shown: Vec<String> = entries.iter().map(|(n, v)| format!("{n}={v}")).collect();
    assert_eq!(
        shown,
        ["tag='x'", "n=3", "s=0.5", "i=1.0", "nan=nan", "b=True"]
    );
    let MetaValue::Float(nan) = &entries[4].1 else {
        panic!()
    };
    assert_eq!(nan.to_bits(), 0x7ff8_0000_0000_0001);
}

#[test]
fn our_files_are_standard_safetensors() {
    let dir = Dir::new("standard");
    let (state, _) = rich_state();
    let file = dir.path("s.safetensors");
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_owned(), "pt".to_owned());
    io::save(&state, &file, &SaveOptions { metadata }).unwrap();
    let bytes = fs::read(&file).unwrap();
    // The header is padded to 8 bytes, so every tensor is aligned.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(n % 8, 0);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = st.names();
    assert!(names.contains(&"layers.0.kernel"));
    assert!(names.contains(&"layers.0.kernel~1"), "{names:?}");
    assert!(names.contains(&"__metadata__~1"), "{names:?}");
    assert!(names.contains(&"embed.weight"));
    assert!(
        !names.contains(&"head.weight"),
        "the tied variable is stored once"
    );
    // A typed key's data is a plain U32 tensor; the record names its
    // implementation.
    let key = st.tensor("rngs.default.key").unwrap();
    assert_eq!(key.dtype(), safetensors::Dtype::U32);
    assert_eq!(key.shape(), &[2]);
    assert_eq!(key.data(), &[0, 0, 0, 0, 42, 0, 0, 0]);
    let view = st.tensor("layers.0.kernel").unwrap();
    assert_eq!(view.shape(), &[2, 2]);
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    // Loaded as a foreign file (ignoring our record), names become paths.
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = meta.metadata().as_ref().unwrap();
    assert_eq!(md.get("format").map(String::as_str), Some("pt"));
    assert!(md.contains_key(io::FORMAT_KEY));
    let record: serde_json::Value = serde_json::from_str(&md[io::FORMAT_KEY]).unwrap();
    let key_record = record["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == serde_json::json!(["rngs", "default", "key"]))
        .unwrap();
    assert_eq!(key_record["key_impl"], "threefry2x32");
    assert_eq!(key_record["tensor"], "rngs.default.key");
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    assert_eq!(
        loaded.metadata.get("format").map(String::as_str),
        Some("pt")
    );
    assert!(!loaded.metadata.contains_key(io::FORMAT_KEY));
    // Every tensor starts at a multiple of its element size in the file.
    for (name, view) in st.tensors() {
        let offset = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(offset % (view.dtype().bitsize() / 8), 0, "{name}");
    }
}

/// A safetensors file from a header's JSON and a data buffer.
fn st_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `header` padded with spaces to a multiple of 8 bytes (counting the
/// length before it), as the reference writer pads it.
fn padded(header: &str) -> String {
    format!("{header:<width$}", width = header.len().next_multiple_of(8))
}

fn foreign_file() -> Vec<u8> {
    let header = r#"{"__metadata__":{"format":"pt"},
        "encoder.layer.0.attention.self.query.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
        "encoder.layer.10.007.bias":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},
        "emb":{"dtype":"I64","shape":[],"data_offsets":[12,20]},
        "empty":{"dtype":"BF16","shape":[0,3],"data_offsets":[20,20]}}"#;
    let mut data = Vec::new();
    data.extend_from_slice(&1.5f32.to_le_bytes());
    data.extend_from_slice(&(-2.0f32).to_le_bytes());
    data.extend_from_slice(&[0x00, 0x3c, 0x00, 0xc0]);
    data.extend_from_slice(&7i64.to_le_bytes());
    st_file(&padded(header), &data)
}

#[test]
fn files_written_by_others_load_with_dotted_names_as_paths() {
    let bytes: Arc<[u8]> = foreign_file().into();
    let loaded = io::load_bytes(bytes.clone(), &LoadOptions::default()).unwrap();
    assert!(!loaded.written_by_nnx);
    assert_eq!(
        loaded.metadata.get("format").map(String::as_str),
        Some("pt")
    );
    let q = loaded
        .state
        .get_variable(&p("encoder/layer/0/attention/self/query/weight"))
        .unwrap();
    assert_eq!(q.type_id(), TypeId::PARAM);
    assert_eq!(q.array().unwrap().to_f64_vec().unwrap(), vec![1.5, -2.0]);
    let bias = loaded
        .state
        .get_variable(&[
            Key::str("encoder"),
            Key::str("layer"),
            Key::int(10),
            Key::str("007"),
            Key::str("bias"),
        ])
        .unwrap();
    assert_eq!(bias.array().unwrap().to_f64_vec().unwrap(), vec![1.0, -2.0]);
    let emb = loaded
        .state
        .get_variable(&p("emb"))
        .unwrap()
        .array()
        .unwrap();
    assert_eq!((emb.ndim(), emb.to_f64_vec().unwrap()), (0, vec![7.0]));
    assert_eq!(
        loaded
            .state
            .get_variable(&p("empty"))
            .unwrap()
            .array()
            .unwrap()
            .shape(),
        &[0, 3]
    );
    // Keys come sorted, at every level.
    assert_eq!(
        loaded.state.keys().unwrap(),
        vec![Key::str("emb"), Key::str("empty"), Key::str("encoder")]
    );
    // Arrays over shared bytes are read-only views of them.
    assert!(!q.array().unwrap().buffer().is_writable());

    let bare = io::load_bytes(
        bytes.clone(),
        &LoadOptions {
            leaf_type: None,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(bare
        .state
        .get_array(&p("encoder/layer/0/attention/self/query/weight"))
        .is_ok());
    let strs = io::load_bytes(
        bytes.clone(),
        &LoadOptions {
            str_keys: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(strs
        .state
        .get_variable(&[
            Key::str("encoder"),
            Key::str("layer"),
            Key::str("0"),
            Key::str("attention"),
            Key::str("self"),
            Key::str("query"),
            Key::str("weight")
        ])
        .is_ok());
    let typed = io::load_bytes(
        bytes.clone(),
        &LoadOptions {
            leaf_type: Some(TypeId::BATCH_STAT),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        typed.state.get_variable(&p("emb")).unwrap().type_id(),
        TypeId::BATCH_STAT
    );
    let unknown = io::load_bytes(
        bytes,
        &LoadOptions {
            leaf_type: Some(TypeId::from_raw(1 << 30)),
            ..LoadOptions::default()
        },
    );
    assert_eq!(unknown.unwrap_err().kind(), ErrorKind::UnknownType);
}

#[test]
fn loading_maps_the_file_without_copying() {
    let dir = Dir::new("zerocopy");
    let file = dir.path("f.safetensors");
    fs::write(&file, foreign_file()).unwrap();
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    let q = loaded
        .state
        .get_variable(&p("encoder/layer/0/attention/self/query/weight"))
        .unwrap()
        .array()
        .unwrap();
    let bias = loaded
        .state
        .get_variable(&[
            Key::str("encoder"),
            Key::str("layer"),
            Key::int(10),
            Key::str("007"),
            Key::str("bias"),
        ])
        .unwrap()
        .array()
        .unwrap();
    // Parts of one mapping: the second tensor follows the first by its offset.
    assert!(!q.buffer().is_owned());
    assert_eq!(
        bias.buffer().as_ptr() as usize - q.buffer().as_ptr() as usize,
        8
    );
    // Writable, but writes go to private pages, not to the file.
    let ptr = q.buffer().as_mut_ptr().expect("mapped arrays are writable");
    // SAFETY: the array holds 8 writable bytes and nothing else reads them now.
    unsafe { ptr.cast::<f32>().write_unaligned(100.0) };
    assert_eq!(q.to_f64_vec().unwrap(), vec![100.0, -2.0]);
    assert_eq!(fs::read(&file).unwrap(), foreign_file());
    // The mapping outlives the state and the file's name.
    drop(loaded);
    fs::remove_file(&file).unwrap();
    assert_eq!(bias.to_f64_vec().unwrap(), vec![1.0, -2.0]);
    // With `copy`, arrays are the library's own.
    fs::write(&file, foreign_file()).unwrap();
    let copied = io::load(
        &file,
        &LoadOptions {
            copy: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let e = copied
        .state
        .get_variable(&p("emb"))
        .unwrap()
        .array()
        .unwrap();
    assert!(e.buffer().is_owned());
}

/// Resident memory of this process, in bytes (Linux).
#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[cfg(target_os = "linux")]
#[test]
fn loading_reads_the_header_only() {
    // A 512 MiB tensor in a sparse file: loading must not touch its pages.
    let dir = Dir::new("lazy");
    let file = dir.path("big.safetensors");
    let size: u64 = 512 << 20;
    let header =
        format!(r#"{{"big":{{"dtype":"U8","shape":[{size}],"data_offsets":[0,{size}]}}}}"#);
    let mut f = fs::File::create(&file).unwrap();
    std::io::Write::write_all(&mut f, &st_file(&header, &[])).unwrap();
    f.set_len(8 + header.len() as u64 + size).unwrap();
    drop(f);
    let before = resident_bytes();
    let start = std::time::Instant::now();
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    let elapsed = start.elapsed();
    let grown = resident_bytes().saturating_sub(before);
    let big = loaded
        .state
        .get_variable(&p("big"))
        .unwrap()
        .array()
        .unwrap();
    assert_eq!(big.nbytes() as u64, size);
    assert!(
        grown < 64 << 20,
        "loading grew resident memory by {grown} bytes"
    );
    assert!(elapsed.as_secs() < 5, "loading took {elapsed:?}");
}

#[test]
fn saves_are_atomic() {
    let dir = Dir::new("atomic");
    let file = dir.path("model.safetensors");
    let (state, _) = rich_state();
    io::save(&state, &file, &SaveOptions::default()).unwrap();
    let before = fs::read(&file).unwrap();

    // An array off the CPU fails the save before anything is written.
    let device_state = State::new();
    // SAFETY: memory of device 2 is never read.
    let buffer = unsafe {
        nnx_state::Buffer::from_foreign(
            0x1000 as *mut u8,
            16,
            true,
            nnx_state::Device { kind: 2, id: 0 },
            None,
        )
    };
    let gpu = Arc::new(Array::from_buffer(DType::F32, &[4], buffer).unwrap());
    device_state
        .set_variable(
            &p("w"),
            Arc::new(Variable::new(TypeId::PARAM, Some(gpu.clone())).unwrap()),
        )
        .unwrap();
    let e = io::save(&device_state, &file, &SaveOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message().contains("'w'") && e.message().contains("device 2:0"),
        "{e}"
    );
    assert!(device_state
        .to_string_tree()
        .unwrap()
        .contains("<device 2:0>"));
    assert_eq!(
        device_state.deep_copy().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    // A failure after the temporary file is written (the target is a
    // directory, so the rename fails) removes the temporary file.
    let blocked = dir.path("blocked.safetensors");
    fs::create_dir(&blocked).unwrap();
    let e = io::save(&state, &blocked, &SaveOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.message().contains("blocked.safetensors"), "{e}");
    assert_eq!(
        dir.files(),
        vec!["blocked.safetensors", "model.safetensors"]
    );
    assert_eq!(fs::read(&file).unwrap(), before);

    // A missing directory is an I/O error naming it.
    let e = io::save(
        &state,
        &dir.path("nope/x.safetensors"),
        &SaveOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("nope"), "{e}");

    // Our own record's key is reserved.
    let mut metadata = BTreeMap::new();
    metadata.insert("nnx_state.v1".to_owned(), "x".to_owned());
    let e = io::save(&state, &file, &SaveOptions { metadata }).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(fs::read(&file).unwrap(), before);

    // Saving over the file a state was loaded from keeps its arrays valid.
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    let small = State::new();
    small
        .set_array(&p("x"), Arc::new(Array::from_slice(&[1], &[1u8]).unwrap()))
        .unwrap();
    io::save(&small, &file, &SaveOptions::default()).unwrap();
    assert_same_content(&state, &loaded.state);
    assert_eq!(
        dir.files(),
        vec!["blocked.safetensors", "model.safetensors"]
    );
}

#[test]
fn loading_errors_name_the_file() {
    let dir = Dir::new("ioerrors");
    let missing = dir.path("missing.safetensors");
    let e = io::load(&missing, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("missing.safetensors"), "{e}");
    let e = io::load(&dir.0, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("neither model.safetensors"), "{e}");
    let bad = dir.path("bad.safetensors");
    fs::write(&bad, b"\x05\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let e = io::load(&bad, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Format);
    assert!(e.message().starts_with(&bad.display().to_string()), "{e}");
}

fn format_error(bytes: Vec<u8>) -> String {
    match io::load_bytes(bytes.into(), &LoadOptions::default()) {
        Ok(_) => panic!("a malformed file loaded"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Format, "{e}");
            e.message().to_owned()
        }
    }
}

#[track_caller]
fn rejects(header: &str, data: &[u8], needle: &str) {
    let message = format_error(st_file(header, data));
    assert!(
        message.contains(needle),
        "{header}: {message:?} does not say {needle:?}"
    );
}

const T4: &str = r#""dtype":"F32","shape":[1]"#;

#[test]
fn malformed_files_are_format_errors() {
    // Truncated files.
    for len in 0..8 {
        assert!(format_error(vec![0; len]).contains("truncated"));
    }
    let good = foreign_file();
    for cut in [9, 40, good.len() - 1] {
        let message = format_error(good[..cut].to_vec());
        assert!(
            message.contains("truncated") || message.contains("past the end"),
            "{cut}: {message}"
        );
    }
    // A header length beyond the file, or beyond the format's limit.
    let mut long = 1000u64.to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    assert!(format_error(long).contains("runs past the end of the file"));
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(format_error(huge).contains("over the format's limit"));
    // Other kinds of files: said as such, with what they look like.
    for (bytes, looks) in [
        (&b"PK\x03\x04\x14\x00\x00\x00\x08\x00"[..], "a zip archive"),
        (b"\x80\x02}q\x00(X\x06\x00\x00\x00", "a Python pickle"),
        (b"\x89HDF\r\n\x1a\n\x00\x00", "an HDF5 file"),
        (b"\x82\xa6params\x80\xa1x\xc0", "msgpack"),
        (b"\x93NUMPY\x01\x00v\x00", "a numpy .npy file"),
        (
            b"hello, world: plain text",
            "text: \"hello, world: plain text\"",
        ),
        ("h\u{e9}llo w\u{f6}rld, t\u{e9}xt".as_bytes(), "text"),
        (
            b"\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8",
            "its first bytes are f0 f1 f2 f3 f4 f5 f6 f7",
        ),
    ] {
        let message = format_error(bytes.to_vec());
        assert!(message.starts_with("not a safetensors file: "), "{message}");
        assert!(message.contains(looks), "{message}");
    }
    // A JSON object right after the length is a safetensors file cut short.
    let mut cut = u64::MAX.to_le_bytes().to_vec();
    cut.extend_from_slice(b"{\"a\"");
    assert!(!format_error(cut).contains("not a safetensors file"));
    // Offsets: overlapping, out of range, a hole, trailing bytes, backwards.
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[0,4]}},"b":{{{T4},"data_offsets":[2,6]}}}}"#),
        &[0; 6],
        "overlap",
    );
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[0,4]}},"b":{{{T4},"data_offsets":[0,4]}}}}"#),
        &[0; 4],
        "overlap",
    );
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[4,8]}}}}"#),
        &[0; 4],
        "past the end of the data buffer",
    );
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[4,8]}}}}"#),
        &[0; 8],
        "belong to no tensor",
    );
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[0,4]}}}}"#),
        &[0; 6],
        "after the last tensor",
    );
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[4,0]}}}}"#),
        &[0; 4],
        "end before they begin",
    );
    rejects(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#,
        &[0; 4],
        "need 4 bytes",
    );
    rejects(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-1,3]}}"#,
        &[0; 4],
        "are not offsets",
    );
    rejects(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
        &[0; 4],
        "two offsets",
    );
    // dtype, shape and byte count disagree.
    rejects(
        r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
        &[0; 20],
        "need 24 bytes, but data_offsets [0, 20] hold 20",
    );
    rejects(
        r#"{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#,
        &[0; 8],
        "too large",
    );
    rejects(
        r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
        &[0; 4],
        "not a dimension",
    );
    rejects(
        r#"{"a":{"dtype":"F9","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
        "unknown dtype \"F9\"",
    );
    rejects(
        r#"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#,
        &[0; 8],
        "cannot hold",
    );
    rejects(
        r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
        "\"dtype\" is missing",
    );
    rejects(
        r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#,
        &[0; 4],
        "\"shape\" is missing",
    );
    rejects(r#"{"a":[1,2]}"#, &[], "not a JSON object");
    // Invalid JSON and UTF-8.
    rejects(r#"{"a":{"dtype":"F32","#, &[], "not valid JSON");
    rejects(r#"[1, 2]"#, &[], "does not start with '{'");
    rejects(r#"{} junk"#, &[], "not valid JSON");
    let mut bad_utf8 = st_file(r#"{"a":{}}"#, &[]);
    bad_utf8[10] = 0xff;
    assert!(format_error(bad_utf8).contains("not valid UTF-8"));
    // A name given twice, even with identical entries (the safetensors
    // crate accepts those).
    let entry = format!(r#"{{{T4},"data_offsets":[0,4]}}"#);
    rejects(
        &format!(r#"{{"a":{entry},"a":{entry}}}"#),
        &[0; 4],
        "duplicate name \"a\"",
    );
    rejects(
        r#"{"__metadata__":{"x":"1"},"__metadata__":{"x":"1"}}"#,
        &[],
        "twice",
    );
    // A name that is a leaf and a prefix of another.
    rejects(
        &format!(
            r#"{{"a.b":{{{T4},"data_offsets":[0,4]}},"a.b.c":{{{T4},"data_offsets":[4,8]}}}}"#
        ),
        &[0; 8],
        "\"a.b\" is a leaf and also a prefix of \"a.b.c\"",
    );
    // __metadata__ of another shape.
    rejects(r#"{"__metadata__":{"x":1}}"#, &[], "\"x\" is a number");
    rejects(
        r#"{"__metadata__":[1]}"#,
        &[],
        "__metadata__ must be an object",
    );
    assert!(io::load_bytes(
        st_file(r#"{"__metadata__":null}"#, &[]).into(),
        &LoadOptions::default()
    )
    .is_ok());
    // Padding with spaces is fine; an empty file of tensors too.
    assert!(io::load_bytes(st_file("{}      ", &[]).into(), &LoadOptions::default()).is_ok());
}

/// A file with our record `record` (the JSON of `{"leaves": [...]}`).
fn with_record(record: &str, tensors: &str, data: &[u8]) -> Vec<u8> {
    let escaped = serde_json::to_string(record).unwrap();
    let sep = if tensors.is_empty() { "" } else { "," };
    st_file(
        &format!(r#"{{"__metadata__":{{"nnx_state.v1":{escaped}}}{sep}{tensors}}}"#),
        data,
    )
}

#[test]
fn malformed_records_are_format_errors() {
    let t = format!(r#""w":{{{T4},"data_offsets":[0,4]}}"#);
    let ok =
        r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[]}]}"#;
    assert!(io::load_bytes(with_record(ok, &t, &[0; 4]).into(), &LoadOptions::default()).is_ok());
    for (record, needle) in [
        ("{", "not valid JSON"),
        ("{}", "no \"leaves\" list"),
        (r#"{"leaves":[1]}"#, "is not an object"),
        (r#"{"leaves":[{"path":[],"tensor":"w"}]}"#, "path is empty"),
        (
            r#"{"leaves":[{"path":[1.5],"tensor":"w"}]}"#,
            "not a 64-bit integer",
        ),
        (
            r#"{"leaves":[{"path":[null],"tensor":"w"}]}"#,
            "not a string or an integer",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"x"}]}"#,
            "tensor \"x\" is not in the file",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["v"],"tensor":"w"}]}"#,
            "used by two records",
        ),
        (
            r#"{"leaves":[]}"#,
            "tensor \"w\" has no nnx_state.v1 record",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param"]}]}"#,
            "not at the root type",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":[]}]}"#,
            "\"type\" is empty",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":"Param"}]}"#,
            "not a list of type names",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["","Variable"]}]}"#,
            "not a type name",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","int",1.5]]}]}"#,
            "not [name, kind, value]",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","str","x"],["a","str","y"]]}]}"#,
            "given twice",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","float","0xzz"]]}]}"#,
            "not [name, kind, value]",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","null",0]]}]}"#,
            "not [name, kind, value]",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","tuple",1]]}]}"#,
            "not [name, kind, value]",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","list",[{"x":1}]]]}]}"#,
            "metadata \"a\": metadata maps are written [\"map\", key, value, ...]",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","map",["k"]]]}]}"#,
            "keys and values in turn",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","map",["k",1,"k",2]]]}]}"#,
            "\"k\" is given twice",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","list",[["set"]]]]}]}"#,
            "unknown metadata tag \"set\"",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"metadata":[["a","list",[9223372036854775808]]]}]}"#,
            "outside the int64 range",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","metadata":[]}]}"#,
            "bare array has no metadata",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","key_impl":"rbg"}]}"#,
            "is no key",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["Param","Variable"],"key_impl":7}]}"#,
            "\"key_impl\" is a number, not a string",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["k"],"tensor":null,"type":["RngKey","RngState","Variable"],"key_impl":"rbg"}]}"#,
            "needs a tensor of key data",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["RngKey","RngState","Variable"],"key_impl":"threefry2x32"}]}"#,
            "key data must be uint32",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w","type":["RngKey","RngState","Variable"],"key_impl":""}]}"#,
            "cannot be empty",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["v"]}]}"#,
            "bare array needs a tensor",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["v"],"same_as":["nope"]}]}"#,
            "no record holds",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["v"],"same_as":["w"],"tensor":"w"}]}"#,
            "holds nothing else",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["w"],"type":["Param","Variable"]}]}"#,
            "recorded twice",
        ),
        (
            r#"{"leaves":[{"path":["w"],"tensor":"w"},{"path":["w","x"],"type":["Param","Variable"]}]}"#,
            "is a leaf and also a prefix",
        ),
    ] {
        let message = format_error(with_record(record, &t, &[0; 4]));
        assert!(
            message.contains(needle),
            "{record}: {message:?} does not say {needle:?}"
        );
    }
    // A later format is refused rather than misread.
    let newer = st_file(r#"{"__metadata__":{"nnx_state.v2":"{}"}}"#, &[]);
    assert!(format_error(newer).contains("newer nnx-state"));
    // A recorded type registered here under another parent.
    types::register("CheckpointTestClash", TypeId::CACHE).unwrap();
    let clash = r#"{"leaves":[{"path":["w"],"tensor":"w","type":["CheckpointTestClash","Param","Variable"]}]}"#;
    let e = io::load_bytes(
        with_record(clash, &t, &[0; 4]).into(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TypeConflict);
}

#[test]
fn key_data_of_the_wrong_shape_is_a_format_error() {
    // uint32[4] is not threefry2x32 key data ([..., 2]); it is rbg's.
    let t = r#""k":{"dtype":"U32","shape":[4],"data_offsets":[0,16]}"#;
    let record = |name: &str| {
        format!(
            r#"{{"leaves":[{{"path":["k"],"tensor":"k","type":["RngKey","RngState","Variable"],"key_impl":"{name}"}}]}}"#
        )
    };
    let message = format_error(with_record(&record("threefry2x32"), t, &[0; 16]));
    assert!(
        message.contains("('k')") && message.contains("[..., 2]"),
        "{message}"
    );
    let loaded = io::load_bytes(
        with_record(&record("rbg"), t, &[7; 16]).into(),
        &LoadOptions::default(),
    )
    .unwrap();
    let Value::Key(key) = loaded.state.get_variable(&p("k")).unwrap().value() else {
        panic!("not a key")
    };
    assert_eq!(key.impl_name(), "rbg");
    assert_eq!(key.data().bytes().unwrap(), &[7; 16]);
}

/// A state holding an opaque value among savable leaves, and how often
/// the opaque value was released.
fn state_with_opaque() -> (State, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (state, _) = rich_state();
    let released = Arc::new(AtomicUsize::new(0));
    let seen = released.clone();
    let opaque = Opaque::new(
        "test:DeviceArray",
        0x1000,
        Some(Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        })),
    )
    .unwrap();
    state
        .set_variable(
            &p("layers/1/kernel"),
            Arc::new(Variable::new(TypeId::PARAM, opaque).unwrap()),
        )
        .unwrap();
    (state, released)
}

#[test]
fn saving_an_opaque_value_fails_and_writes_nothing() {
    use std::sync::atomic::Ordering;
    let dir = Dir::new("opaque");
    let (state, released) = state_with_opaque();
    let check = |e: nnx_state::Error| {
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.message().contains("'layers/1/kernel'")
                && e.message().contains("opaque value (test:DeviceArray)"),
            "{e}"
        );
    };
    // To a new file: no file, no temporary file.
    check(
        io::save(
            &state,
            &dir.path("new.safetensors"),
            &SaveOptions::default(),
        )
        .unwrap_err(),
    );
    assert!(dir.files().is_empty(), "{:?}", dir.files());
    // Over an existing file: it stays as it was.
    let (plain, _) = rich_state();
    let file = dir.path("model.safetensors");
    io::save(&plain, &file, &SaveOptions::default()).unwrap();
    let before = fs::read(&file).unwrap();
    check(io::save(&state, &file, &SaveOptions::default()).unwrap_err());
    assert_eq!(fs::read(&file).unwrap(), before);
    assert_eq!(dir.files(), vec!["model.safetensors"]);
    // Sharded: no shard, no index, and an earlier checkpoint stays whole.
    let shards = Dir::new("opaque-sharded");
    io::save_sharded(&plain, &shards.0, "model", 40, &SaveOptions::default()).unwrap();
    let files = shards.files();
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(shards.path(f)).unwrap())
        .collect();
    for max in [40, u64::MAX] {
        check(
            io::save_sharded(&state, &shards.0, "model", max, &SaveOptions::default()).unwrap_err(),
        );
        assert_eq!(shards.files(), files);
        for (f, c) in files.iter().zip(&contents) {
            assert_eq!(&fs::read(shards.path(f)).unwrap(), c, "{f}");
        }
    }
    check(io::save_sharded(&state, &dir.0, "other", 40, &SaveOptions::default()).unwrap_err());
    assert_eq!(dir.files(), vec!["model.safetensors"]);
    // Without the opaque value, the rest saves.
    let rest = state
        .filter(
            &[
                nnx_state::Filter::negate(nnx_state::Filter::path_in(vec![p("layers/1/kernel")]))
                    .unwrap(),
            ],
        )
        .unwrap()
        .remove(0);
    io::save(
        &rest,
        &dir.path("rest.safetensors"),
        &SaveOptions::default(),
    )
    .unwrap();
    assert_same_content(
        &plain,
        &io::load(&dir.path("rest.safetensors"), &LoadOptions::default())
            .unwrap()
            .state,
    );
    // The failed saves kept no reference: the value goes with the states.
    drop((state, rest));
    assert_eq!(released.load(Ordering::SeqCst), 1);
}

#[test]
fn sharded_checkpoints_round_trip() {
    let dir = Dir::new("sharded");
    let (state, _) = rich_state();
    let written = io::save_sharded(&state, &dir.0, "model", 40, &SaveOptions::default()).unwrap();
    let n = written.len() - 1;
    assert!(n > 3, "{written:?}");
    let index = dir.path("model.safetensors.index.json");
    assert_eq!(written.last().unwrap(), &index);
    for (i, w) in written[..n].iter().enumerate() {
        assert_eq!(
            w.file_name().unwrap().to_string_lossy(),
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        );
    }
    // The index is huggingface_hub's: total_size and a weight_map.
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    let map = json["weight_map"].as_object().unwrap();
    assert!(map["embed.weight"]
        .as_str()
        .unwrap()
        .ends_with(&format!("-of-{n:05}.safetensors")));
    assert!(
        !map.contains_key("head.weight"),
        "a tied variable is stored once"
    );
    let mut total = 0;
    for w in &written[..n] {
        let bytes = fs::read(w).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let shard_bytes: usize = st.tensors().iter().map(|(_, v)| v.data().len()).sum();
        let name = w.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            shard_bytes <= 40 || st.len() == 1,
            "{name}: {shard_bytes} bytes"
        );
        for (tensor, _) in st.tensors() {
            assert_eq!(map[&tensor], name.as_str());
        }
        total += shard_bytes;
    }
    assert_eq!(json["metadata"]["total_size"], total);
    // Load by index and by directory.
    for source in [&index, &dir.0] {
        let loaded = io::load(source, &LoadOptions::default()).unwrap();
        assert!(loaded.written_by_nnx);
        assert_same_content(&state, &loaded.state);
        let a = loaded.state.get_variable(&p("embed/weight")).unwrap();
        assert!(Arc::ptr_eq(
            &a,
            &loaded.state.get_variable(&p("head/weight")).unwrap()
        ));
    }
    // One shard: a single file, and the earlier shards and index are gone.
    let written =
        io::save_sharded(&state, &dir.0, "model", u64::MAX, &SaveOptions::default()).unwrap();
    assert_eq!(written, vec![dir.path("model.safetensors")]);
    assert_eq!(dir.files(), vec!["model.safetensors"]);
    assert_same_content(
        &state,
        &io::load(&dir.0, &LoadOptions::default()).unwrap().state,
    );
    // And back to shards: the single file goes.
    io::save_sharded(&state, &dir.0, "model", 200, &SaveOptions::default()).unwrap();
    assert!(!dir.files().contains(&"model.safetensors".to_owned()));
    assert_same_content(
        &state,
        &io::load(&dir.0, &LoadOptions::default()).unwrap().state,
    );
    // Bad arguments.
    for (name, max) in [("a/b", 10), ("", 10), ("model", 0)] {
        let e = io::save_sharded(&state, &dir.0, name, max, &SaveOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn indexes_that_disagree_with_their_shards_are_format_errors() {
    let dir = Dir::new("badindex");
    let a = format!(r#"{{"a.x":{{{T4},"data_offsets":[0,4]}}}}"#);
    let b =
        format!(r#"{{"b.y":{{{T4},"data_offsets":[0,4]}},"b.z":{{{T4},"data_offsets":[4,8]}}}}"#);
    fs::write(dir.path("s1.safetensors"), st_file(&a, &[0; 4])).unwrap();
    fs::write(dir.path("s2.safetensors"), st_file(&b, &[0; 8])).unwrap();
    let index = dir.path("m.safetensors.index.json");
    let write_index = |map: &str| {
        fs::write(
            &index,
            format!(r#"{{"metadata":{{"total_size":12}},"weight_map":{{{map}}}}}"#),
        )
        .unwrap()
    };
    write_index(r#""a.x":"s1.safetensors","b.y":"s2.safetensors","b.z":"s2.safetensors""#);
    let loaded = io::load(&index, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.state.num_leaves().unwrap(), 3);
    assert!(loaded.state.get_variable(&p("b/z")).is_ok());
    for (map, needle) in [
        (
            r#""a.x":"s1.safetensors","b.y":"s2.safetensors""#,
            "which the index does not list",
        ),
        (
            r#""a.x":"s1.safetensors","b.y":"s2.safetensors","b.z":"s2.safetensors","c":"s2.safetensors""#,
            "which does not hold it",
        ),
        (
            r#""a.x":"s2.safetensors","b.y":"s2.safetensors","b.z":"s2.safetensors""#,
            "which does not hold it",
        ),
        (
            r#""a.x":"s1.safetensors","b.y":"s1.safetensors","b.z":"s2.safetensors""#,
            "index puts it in",
        ),
        (r#""a.x":"../s1.safetensors""#, "not a file name"),
        (r#""a.x":"/etc/passwd""#, "not a file name"),
        (r#""a.x":1"#, "not to a file name"),
        (
            r#""a.x":"s1.safetensors","a.x":"s1.safetensors""#,
            "duplicate name",
        ),
    ] {
        write_index(map);
        let e = io::load(&index, &LoadOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Format, "{map}: {e}");
        assert!(e.message().contains(needle), "{map}: {e}");
    }
    fs::write(&index, "{\"weight_map\": [").unwrap();
    assert!(io::load(&index, &LoadOptions::default())
        .unwrap_err()
        .message()
        .contains("not valid JSON"));
    fs::write(&index, "{}").unwrap();
    assert!(io::load(&index, &LoadOptions::default())
        .unwrap_err()
        .message()
        .contains("no \"weight_map\""));
    // The same tensor in two shards.
    fs::write(dir.path("s3.safetensors"), st_file(&a, &[0; 4])).unwrap();
    write_index(r#""a.x":"s3.safetensors""#);
    assert!(io::load(&index, &LoadOptions::default()).is_ok());
    // A shard that is missing is an I/O error naming it.
    write_index(r#""a.x":"gone.safetensors""#);
    let e = io::load(&index, &LoadOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("gone.safetensors"), "{e}");
}

#[test]
fn misaligned_tensors_are_copied_aligned() {
    // An unpadded header puts the F32 tensor at an odd offset.
    let header = format!(r#"{{"a":{{{T4},"data_offsets":[0,4]}}}}"#);
    assert_ne!((8 + header.len()) % 4, 0);
    let mut data = Vec::new();
    data.extend_from_slice(&2.5f32.to_le_bytes());
    let loaded = io::load_bytes(st_file(&header, &data).into(), &LoadOptions::default()).unwrap();
    let a = loaded.state.get_variable(&p("a")).unwrap().array().unwrap();
    assert!(a.buffer().is_owned());
    assert_eq!(a.buffer().as_ptr() as usize % 4, 0);
    assert_eq!(a.to_f64_vec().unwrap(), vec![2.5]);
}

#[test]
fn dotted_loads_of_paths_with_leaf_prefix_conflicts_fail() {
    // After int conversion "a.0" and "a.00" are different keys: no clash.
    let ok =
        format!(r#"{{"a.0":{{{T4},"data_offsets":[0,4]}},"a.00":{{{T4},"data_offsets":[4,8]}}}}"#);
    let loaded = io::load_bytes(st_file(&ok, &[0; 8]).into(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.state.num_leaves().unwrap(), 2);
    // "a" and "a.0" clash.
    rejects(
        &format!(r#"{{"a":{{{T4},"data_offsets":[0,4]}},"a.0":{{{T4},"data_offsets":[4,8]}}}}"#),
        &[0; 8],
        "prefix",
    );
}

#[test]
fn saved_paths_with_arbitrary_keys_survive() {
    let dir = Dir::new("keys");
    let state = State::new();
    for (i, key) in ["", ".", "..", "0", "-0", "007", "a/b", "ünï", "\u{0}x"]
        .iter()
        .enumerate()
    {
        state
            .set_variable(
                &[Key::str("k"), Key::str(key)],
                var(TypeId::PARAM, Array::from_slice(&[1], &[i as i32]).unwrap()),
            )
            .unwrap();
    }
    state
        .set_variable(
            &[Key::int(i64::MIN)],
            var(TypeId::PARAM, Array::from_slice(&[1], &[1i32]).unwrap()),
        )
        .unwrap();
    let file = dir.path("k.safetensors");
    io::save(&state, &file, &SaveOptions::default()).unwrap();
    assert_same_content(
        &state,
        &io::load(&file, &LoadOptions::default()).unwrap().state,
    );
}

#[test]
fn empty_states_save_and_load() {
    let dir = Dir::new("empty");
    let file = dir.path("e.safetensors");
    io::save(&State::new(), &file, &SaveOptions::default()).unwrap();
    let loaded = io::load(&file, &LoadOptions::default()).unwrap();
    assert!(loaded.written_by_nnx);
    assert_eq!(loaded.state.num_leaves().unwrap(), 0);
    let written =
        io::save_sharded(&State::new(), &dir.0, "m", 10, &SaveOptions::default()).unwrap();
    assert_eq!(written, vec![dir.path("m.safetensors")]);
}

#[test]
fn headers_are_checked_before_any_array_is_made() {
    let header = io::parse_header(&foreign_file()).unwrap();
    let names: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.10.007.bias",
            "emb",
            "empty"
        ]
    );
    assert_eq!(header.tensors[2].dtype, DType::I64);
    assert_eq!(
        header.metadata.get("format").map(String::as_str),
        Some("pt")
    );
}

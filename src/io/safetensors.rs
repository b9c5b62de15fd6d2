//! safetensors checkpoints: load memory-mapped and zero-copy, save
//! atomically, with the variable types, metadata and key kinds of a state
//! recorded so that files written here round-trip exactly.
//!
//! # Reading
//!
//! A file is checked completely before any array is made: the header length,
//! UTF-8 and JSON of the header (a name given twice is an error, which the
//! safetensors crate does not catch), every tensor's dtype, shape and
//! `data_offsets`, that the tensors cover the data buffer exactly (no hole,
//! no overlap, nothing after the last one), and that no name is a leaf and a
//! prefix of another. Then the safetensors crate's own reader checks the file
//! too. Failures are [`ErrorKind::Format`] errors naming the problem.
//!
//! Arrays are parts of a private memory map of the file: loading reads the
//! header only, and tensor bytes are read from disk when first touched.
//! Each array keeps the mapping alive. A tensor whose bytes are not aligned
//! to its element size in the file (neither the reference writer nor this
//! one makes such files) is copied, so every array's data is aligned.
//!
//! # Names and paths
//!
//! A file written by anyone loads with each dotted name split into a path,
//! and components that are canonical decimal integers (`0`, `12`, `-3`, not
//! `007`) as int keys: `encoder.layer.0.weight` is `encoder/layer/0/weight`.
//! Each tensor becomes a variable of the chosen type, or a bare array.
//!
//! A file written here records the exact state in `__metadata__` under
//! [`FORMAT_KEY`] (`"nnx_state.v1"`): a JSON string of the form
//!
//! ```json
//! {"leaves": [
//!   {"path": ["layers", 0, "kernel"], "tensor": "layers.0.kernel",
//!    "type": ["Param", "Variable"], "metadata": [["tag", "str", "x"]]},
//!   {"path": ["counts"], "tensor": null, "type": ["Cache", "Variable"], "metadata": []},
//!   {"path": ["rngs", "key"], "tensor": "rngs.key", "type": ["RngKey", "RngState", "Variable"],
//!    "metadata": [], "key_impl": "threefry2x32"},
//!   {"path": ["table"], "tensor": "table"},
//!   {"path": ["tied"], "same_as": ["layers", 0, "kernel"]}
//! ]}
//! ```
//!
//! one record per leaf in flat order: the path with its key kinds; the
//! tensor holding the value (`null` for a variable without one; for a
//! typed PRNG key, its `U32` key data, with `key_impl` naming the
//! implementation, and the key loads back as a typed key); the
//! variable's type and its ancestors up to `Variable` (absent for a bare
//! array; types not registered yet are registered on load); metadata
//! entries in order as `[name, kind, value]`; and `same_as` for a variable
//! (or array) held at several paths, stored once. Opaque values are never
//! written: saving a state that holds one fails, naming its path, before
//! any file is made. Tensor names are the dotted paths, made unique with a
//! `~N` suffix where two paths would give the same name.
//!
//! A metadata entry's kind is `str`, `int`, `float` (a JSON number, or the
//! IEEE bits as a `"0x..."` string when not finite) or `bool`, as in the
//! first files; or `null` (value `null`), or `list`, `tuple` or `map` with a
//! JSON array of the contents (a map's keys and values in turn), each item
//! in the JSON form that `src/io/json.rs` describes:
//!
//! ```json
//! ["out_sharding", "tuple", [null, "model"]]
//! ["opt", "map", ["lr", 0.001, "betas", ["tuple", 0.9, 0.999], "clip", ["float", "0x7ff0000000000000"]]]
//! ```
//!
//! Files whose metadata has only the first four kinds are what earlier
//! versions wrote and read.
//!
//! A later format gets a new key (`nnx_state.v2`), which this version
//! refuses rather than misread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::json::{self, parse_strict};
use crate::array::{byte_size, Array, DType};
use crate::buffer::{Buffer, MappedFile};
use crate::error::{bail, Error, ErrorKind, Result};
use crate::key::{compare_paths, format_path, parse_component, Key};
use crate::limits::check_depth;
use crate::state::State;
use crate::tree::Leaf;
use crate::types::{self, TypeId};
use crate::value::PrngKey;
use crate::variable::{MetaValue, Variable};

/// The `__metadata__` entry that records a state written by this library.
pub const FORMAT_KEY: &str = "nnx_state.v1";
/// The prefix of format keys of any version.
const FORMAT_KEY_PREFIX: &str = "nnx_state.v";
/// The largest header the format allows.
pub(crate) const MAX_HEADER_LEN: u64 = 100_000_000;
/// The bytes before the header: its length, little-endian.
const LEN_BYTES: usize = 8;

/// How to load a checkpoint.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// For files not written by this library: the variable type of each
    /// tensor's leaf, or `None` for bare arrays. Default `Param`.
    pub leaf_type: Option<TypeId>,
    /// Copy every tensor into memory of the library instead of mapping the
    /// file, so that the file may change or go away afterwards.
    pub copy: bool,
    /// For files not written by this library: keep every name component a
    /// string key (by default, decimal components become int keys).
    pub str_keys: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            leaf_type: Some(TypeId::PARAM),
            copy: false,
            str_keys: false,
        }
    }
}

/// How to save a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// Extra `__metadata__` entries (string to string), such as
    /// `{"format": "pt"}`. [`FORMAT_KEY`] is reserved.
    pub metadata: BTreeMap<String, String>,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    pub state: State,
    /// The file's `__metadata__`, without this library's own entry. For a
    /// sharded checkpoint, the entries of all shards (the first shard that
    /// has a name wins).
    pub metadata: BTreeMap<String, String>,
    /// Whether the file was written by this library (types, metadata and
    /// key kinds came from its record rather than from the names).
    pub written_by_nnx: bool,
}

// ---------------------------------------------------------------------------
// Errors

pub(crate) fn format_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Format, message)
}

pub(crate) fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("cannot {what} '{}': {e}", path.display()),
    )
}

/// The same error with the file it concerns named first.
pub(crate) fn in_file(path: &Path, e: Error) -> Error {
    Error::new(e.kind(), format!("{}: {}", path.display(), e.message()))
}

// ---------------------------------------------------------------------------
// dtypes

/// The safetensors name of a dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "BOOL",
        DType::I8 => "I8",
        DType::I16 => "I16",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::U8 => "U8",
        DType::U16 => "U16",
        DType::U32 => "U32",
        DType::U64 => "U64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F8E4M3FN => "F8_E4M3",
        DType::F8E5M2 => "F8_E5M2",
    }
}

/// safetensors dtypes this library has no array type for.
const UNSUPPORTED_DTYPES: [&str; 7] = [
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E8M0",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "C64",
];

fn dtype_from_name(name: &str) -> std::result::Result<DType, String> {
    if let Some(d) = DType::ALL.into_iter().find(|d| dtype_name(*d) == name) {
        return Ok(d);
    }
    if UNSUPPORTED_DTYPES.contains(&name) {
        Err(format!(
            "dtype {name} is a safetensors dtype that nnx-state arrays cannot hold"
        ))
    } else {
        Err(format!("unknown dtype {name:?}"))
    }
}

fn st_dtype(dtype: DType) -> ::safetensors::Dtype {
    use ::safetensors::Dtype as D;
    match dtype {
        DType::Bool => D::BOOL,
        DType::I8 => D::I8,
        DType::I16 => D::I16,
        DType::I32 => D::I32,
        DType::I64 => D::I64,
        DType::U8 => D::U8,
        DType::U16 => D::U16,
        DType::U32 => D::U32,
        DType::U64 => D::U64,
        DType::F16 => D::F16,
        DType::BF16 => D::BF16,
        DType::F32 => D::F32,
        DType::F64 => D::F64,
        DType::F8E4M3FN => D::F8_E4M3,
        DType::F8E5M2 => D::F8_E5M2,
    }
}

// ---------------------------------------------------------------------------
// The header

/// One tensor of a file, checked.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// Offsets in the data buffer.
    pub begin: usize,
    pub end: usize,
}

/// The checked header of a file.
#[derive(Clone, Debug)]
pub struct Header {
    /// Where the data buffer starts in the file.
    pub data_start: usize,
    /// The tensors, by offset.
    pub tensors: Vec<TensorEntry>,
    /// `__metadata__`, all of it.
    pub metadata: BTreeMap<String, String>,
}

fn parse_entry(name: &str, entry: &Value, data_len: usize) -> Result<TensorEntry> {
    let fail = |what: String| Err(format_error(format!("tensor {name:?}: {what}")));
    let Value::Object(entry) = entry else {
        return fail("its entry is not a JSON object".into());
    };
    let dtype = match entry.get("dtype") {
        Some(Value::String(s)) => match dtype_from_name(s) {
            Ok(d) => d,
            Err(e) => return fail(e),
        },
        Some(_) => return fail("\"dtype\" is not a string".into()),
        None => return fail("\"dtype\" is missing".into()),
    };
    let shape = match entry.get("shape") {
        Some(Value::Array(dims)) => {
            let mut shape = Vec::with_capacity(dims.len());
            for dim in dims {
                match dim.as_u64().and_then(|d| i64::try_from(d).ok()) {
                    Some(d) => shape.push(d),
                    None => {
                        return fail(format!(
                            "\"shape\" holds {dim}, which is not a dimension (an integer from 0 to 2^63-1)"
                        ))
                    }
                }
            }
            shape
        }
        Some(_) => return fail("\"shape\" is not a list".into()),
        None => return fail("\"shape\" is missing".into()),
    };
    let offsets = match entry.get("data_offsets") {
        Some(Value::Array(pair)) if pair.len() == 2 => pair,
        Some(_) => return fail("\"data_offsets\" is not a list of two offsets".into()),
        None => return fail("\"data_offsets\" is missing".into()),
    };
    let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
        return fail(format!(
            "\"data_offsets\" [{}, {}] are not offsets (non-negative integers)",
            offsets[0], offsets[1]
        ));
    };
    if begin > end {
        return fail(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        ));
    }
    let Ok(need) = byte_size(dtype, &shape) else {
        return fail(format!("shape {shape:?} is too large"));
    };
    if end - begin != need as u64 {
        return fail(format!(
            "dtype {} and shape {shape:?} need {need} bytes, but data_offsets [{begin}, {end}] hold {}",
            dtype_name(dtype),
            end - begin
        ));
    }
    if end > data_len as u64 {
        return fail(format!(
            "data_offsets [{begin}, {end}] run past the end of the data buffer ({data_len} bytes)"
        ));
    }
    Ok(TensorEntry {
        name: name.to_owned(),
        dtype,
        shape,
        begin: begin as usize,
        end: end as usize,
    })
}

fn parse_metadata(value: &Value) -> Result<BTreeMap<String, String>> {
    match value {
        // The reference reader takes `null` as no metadata.
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format_error(format!(
                    "__metadata__ must map names to strings, but {k:?} is {}",
                    json_kind(other)
                ))),
            })
            .collect(),
        other => Err(format_error(format!(
            "__metadata__ must be an object of strings, not {}",
            json_kind(other)
        ))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks the whole layout of a safetensors file and returns its header.
/// Reads the header only, never the tensor bytes.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    if cfg!(target_endian = "big") {
        bail!(
            Format,
            "safetensors data is little-endian and this machine is big-endian: not supported"
        );
    }
    let Some(len_bytes) = bytes.get(..LEN_BYTES) else {
        bail!(
            Format,
            "the file is truncated: {} bytes, too short for the 8-byte header length",
            bytes.len()
        );
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_LEN {
        bail!(
            Format,
            "the header length {header_len} is over the format's limit of {MAX_HEADER_LEN} bytes"
        );
    }
    let available = bytes.len() - LEN_BYTES;
    if header_len > available as u64 {
        bail!(
            Format,
            "the file is truncated: the header length {header_len} runs past the end of the file ({} bytes)",
            bytes.len()
        );
    }
    let data_start = LEN_BYTES + header_len as usize;
    let text = match std::str::from_utf8(&bytes[LEN_BYTES..data_start]) {
        Ok(text) => text,
        Err(e) => bail!(
            Format,
            "the header is not valid UTF-8 (at byte {} of the file)",
            LEN_BYTES + e.valid_up_to()
        ),
    };
    if !text.starts_with('{') {
        bail!(Format, "the header does not start with '{{'");
    }
    let value = match parse_strict(text) {
        Ok(v) => v,
        Err(e) if e.to_string().starts_with("duplicate name") => {
            bail!(Format, "the header names something twice: {e}")
        }
        Err(e) => bail!(Format, "the header is not valid JSON: {e}"),
    };
    let Value::Object(map) = value else {
        bail!(Format, "the header is not a JSON object");
    };
    let data_len = bytes.len() - data_start;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(map.len());
    for (name, entry) in &map {
        if name == "__metadata__" {
            metadata = parse_metadata(entry)?;
        } else {
            tensors.push(parse_entry(name, entry, data_len)?);
        }
    }
    tensors.sort_by_key(|a| (a.begin, a.end));
    let mut covered = 0;
    for (i, t) in tensors.iter().enumerate() {
        if t.begin < covered {
            let other = &tensors[i - 1];
            bail!(
                Format,
                "tensors {:?} (bytes {}..{}) and {:?} (bytes {}..{}) overlap",
                other.name,
                other.begin,
                other.end,
                t.name,
                t.begin,
                t.end
            );
        }
        if t.begin > covered {
            bail!(
                Format,
                "bytes {covered}..{} of the data buffer belong to no tensor (a hole before {:?})",
                t.begin,
                t.name
            );
        }
        covered = t.end;
    }
    if covered != data_len {
        bail!(
            Format,
            "the data buffer has {} bytes after the last tensor (the file holds trailing bytes)",
            data_len - covered
        );
    }
    // The reference implementation's reader, as a second opinion.
    if let Err(e) = ::safetensors::SafeTensors::read_metadata(bytes) {
        bail!(Format, "the safetensors reader rejects the file: {e}");
    }
    Ok(Header {
        data_start,
        tensors,
        metadata,
    })
}

// ---------------------------------------------------------------------------
// Arrays over the file

/// Where tensor bytes come from.
#[derive(Clone)]
pub(crate) enum Data {
    Mapped(Arc<MappedFile>),
    Shared(Arc<[u8]>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m.bytes(),
            Data::Shared(s) => s,
        }
    }
}

fn array_for(data: &Data, header: &Header, t: &TensorEntry, copy: bool) -> Result<Arc<Array>> {
    let range = header.data_start + t.begin..header.data_start + t.end;
    let bytes = data.bytes();
    let aligned = (bytes.as_ptr() as usize + range.start) % t.dtype.size() == 0;
    let array = if copy || !aligned {
        Array::new(t.dtype, &t.shape, Some(&bytes[range]))?
    } else {
        let buffer = match data {
            Data::Mapped(m) => Buffer::from_mapped(m, range)?,
            Data::Shared(s) => Buffer::from_shared(s.clone(), range)?,
        };
        Array::from_buffer(t.dtype, &t.shape, buffer)?
    };
    Ok(Arc::new(array))
}

/// The tensors and records of one or more files, before they become a
/// state.
#[derive(Default)]
pub(crate) struct Collected {
    /// Tensor name to array, names unique across files.
    pub tensors: HashMap<String, Arc<Array>>,
    /// Names in the order they were met (by file, then by offset).
    pub order: Vec<String>,
    /// This library's records (`leaves` lists), one per file that has them.
    pub records: Vec<Value>,
    /// How many files had no record.
    pub files_without_records: usize,
    pub metadata: BTreeMap<String, String>,
}

impl Collected {
    /// Adds the tensors of one checked file.
    pub(crate) fn add_file(&mut self, data: &Data, header: &Header, copy: bool) -> Result<()> {
        for t in &header.tensors {
            if self.tensors.contains_key(&t.name) {
                bail!(Format, "tensor {:?} is stored twice", t.name);
            }
            let array = array_for(data, header, t, copy)?;
            self.tensors.insert(t.name.clone(), array);
            self.order.push(t.name.clone());
        }
        let mut record = None;
        for (key, value) in &header.metadata {
            if key == FORMAT_KEY {
                record = Some(value);
            } else if key.starts_with(FORMAT_KEY_PREFIX) {
                bail!(
                    Format,
                    "written by a newer nnx-state (format {key:?}); this version reads {FORMAT_KEY:?}"
                );
            } else {
                self.metadata
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        match record {
            Some(text) => match parse_strict(text) {
                Ok(v) => self.records.push(v),
                Err(e) => bail!(Format, "the {FORMAT_KEY} metadata is not valid JSON: {e}"),
            },
            None => self.files_without_records += 1,
        }
        Ok(())
    }

    /// The state these files hold.
    pub(crate) fn into_loaded(self, options: &LoadOptions) -> Result<Loaded> {
        let written_by_nnx = !self.records.is_empty();
        if written_by_nnx && self.files_without_records > 0 {
            bail!(
                Format,
                "some files carry the {FORMAT_KEY} record and {} do not",
                self.files_without_records
            );
        }
        let named = if written_by_nnx {
            leaves_from_records(&self.records, &self.tensors)?
        } else {
            leaves_from_names(&self.order, &self.tensors, options)?
        };
        let pairs = check_paths(named)?;
        Ok(Loaded {
            state: State::from_flat(pairs)?,
            metadata: self.metadata,
            written_by_nnx,
        })
    }
}

/// A leaf with its path and the name it came from (for messages).
type Named = (Vec<Key>, Leaf, String);

/// Sorts by path and rejects a path given twice, or a leaf whose path is a
/// prefix of another leaf's.
fn check_paths(mut named: Vec<Named>) -> Result<Vec<(Vec<Key>, Leaf)>> {
    named.sort_by(|a, b| compare_paths(&a.0, &b.0));
    for pair in named.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.0 == b.0 {
            bail!(
                Format,
                "{:?} and {:?} both load to the path '{}'",
                a.2,
                b.2,
                format_path(&a.0)
            );
        }
        if b.0.starts_with(&a.0) {
            bail!(
                Format,
                "{:?} is a leaf and also a prefix of {:?} (path '{}' would be a leaf and a nested state)",
                a.2,
                b.2,
                format_path(&a.0)
            );
        }
    }
    Ok(named.into_iter().map(|(p, l, _)| (p, l)).collect())
}

/// The path a tensor name of a file written by anyone loads to: its
/// dot-separated components, canonical decimal integers as int keys. A
/// name with an empty component (`a..b`, `.a`, `a.`, the empty name) is
/// malformed: no `/`-path could name the `""` key it would give, and no
/// writer we know of makes one on purpose. A name of more components than
/// the nesting limit is refused before any key is made.
pub fn path_of_name(name: &str, str_keys: bool) -> Result<Vec<Key>> {
    let components = 1 + name.bytes().filter(|&b| b == b'.').count();
    check_depth(components, || {
        format!(
            "the tensor name {} ({components} components)",
            short_name(name)
        )
    })?;
    if name.split('.').any(str::is_empty) {
        bail!(
            Format,
            "the tensor name {} has an empty component (between two dots, or at \
             either end); rename the tensor",
            short_name(name)
        );
    }
    Ok(name
        .split('.')
        .map(|c| if str_keys { Key::str(c) } else { parse_component(c) })
        .collect())
}

/// A name for a message: quoted, and cut short when long.
fn short_name(name: &str) -> String {
    const SHOWN: usize = 60;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}...", &name[..end]),
        None => format!("{name:?}"),
    }
}

fn leaves_from_names(
    order: &[String],
    tensors: &HashMap<String, Arc<Array>>,
    options: &LoadOptions,
) -> Result<Vec<Named>> {
    if let Some(t) = options.leaf_type {
        types::check(t)?;
    }
    order
        .iter()
        .map(|name| {
            let array = tensors[name].clone();
            let leaf = match options.leaf_type {
                Some(t) => Leaf::Variable(Arc::new(Variable::new(t, Some(array))?)),
                None => Leaf::Array(array),
            };
            Ok((path_of_name(name, options.str_keys)?, leaf, name.clone()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// This library's records

fn path_from_json(value: &Value, at: &str) -> Result<Vec<Key>> {
    let Value::Array(items) = value else {
        bail!(Format, "{at}: the path is not a list");
    };
    if items.is_empty() {
        bail!(Format, "{at}: the path is empty");
    }
    check_depth(items.len(), || format!("{at}: the path"))?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(Key::str(s)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Key::Int(i)),
                None => bail!(Format, "{at}: path component {n} is not a 64-bit integer"),
            },
            other => bail!(
                Format,
                "{at}: a path component is {}, not a string or an integer",
                json_kind(other)
            ),
        })
        .collect()
}

fn path_to_json(path: &[Key]) -> Value {
    Value::Array(
        path.iter()
            .map(|k| match k {
                Key::Int(i) => Value::from(*i),
                Key::Str(s) => Value::from(s.as_str()),
            })
            .collect(),
    )
}

/// Resolves a recorded type chain (`["MyQuant", "Param", "Variable"]`),
/// registering the types the registry does not know yet.
fn type_from_json(
    value: &Value,
    at: &str,
    cache: &mut HashMap<Vec<String>, TypeId>,
) -> Result<TypeId> {
    let Value::Array(items) = value else {
        bail!(Format, "{at}: \"type\" is not a list of type names");
    };
    let mut chain = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() && !s.contains('\0') => chain.push(s.clone()),
            _ => bail!(
                Format,
                "{at}: \"type\" holds {item}, which is not a type name"
            ),
        }
    }
    if let Some(&id) = cache.get(&chain) {
        return Ok(id);
    }
    let Some((root, rest)) = chain.split_last() else {
        bail!(Format, "{at}: \"type\" is empty");
    };
    if root != "Variable" {
        bail!(
            Format,
            "{at}: the type chain ends at {root:?}, not at the root type \"Variable\""
        );
    }
    let mut id = TypeId::VARIABLE;
    for name in rest.iter().rev() {
        id = types::register(name, id)?;
    }
    cache.insert(chain, id);
    Ok(id)
}

fn type_to_json(id: TypeId) -> Result<Value> {
    let registry = types::snapshot();
    let mut chain = Vec::new();
    let mut current = Some(id);
    while let Some(t) = current {
        chain.push(Value::from(registry.name(t)?));
        current = registry.parent(t)?;
    }
    Ok(Value::Array(chain))
}

fn meta_from_json(value: &Value, at: &str) -> Result<Vec<(String, MetaValue)>> {
    let Value::Array(entries) = value else {
        bail!(Format, "{at}: \"metadata\" is not a list");
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let bad = || {
            format_error(format!(
                "{at}: metadata entry {entry} is not [name, kind, value]"
            ))
        };
        let Value::Array(parts) = entry else {
            return Err(bad());
        };
        let [Value::String(name), Value::String(kind), value] = parts.as_slice() else {
            return Err(bad());
        };
        if name.is_empty() || name.contains('\0') {
            bail!(Format, "{at}: metadata name {name:?} is empty or holds NUL");
        }
        if !seen.insert(name.clone()) {
            bail!(Format, "{at}: metadata {name:?} is given twice");
        }
        let meta = match (kind.as_str(), value) {
            ("str", Value::String(s)) => MetaValue::Str(s.clone()),
            ("int", Value::Number(n)) if n.as_i64().is_some() => {
                MetaValue::Int(n.as_i64().expect("checked"))
            }
            ("float", Value::Number(n)) if n.as_f64().is_some() => {
                MetaValue::Float(n.as_f64().expect("checked"))
            }
            ("float", Value::String(bits)) => match json::float_from_bits(bits) {
                Some(x) => MetaValue::Float(x),
                None => return Err(bad()),
            },
            ("bool", Value::Bool(b)) => MetaValue::Bool(*b),
            ("null", Value::Null) => MetaValue::Null,
            ("list" | "tuple" | "map", Value::Array(rest)) => json::tagged_from_json(kind, rest)
                .map_err(|e| Error::new(e.kind(), format!("{at}: metadata {name:?}: {e}")))?,
            _ => return Err(bad()),
        };
        out.push((name.clone(), meta));
    }
    Ok(out)
}

fn meta_to_json(entries: &[(String, MetaValue)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(name, value)| {
                let (kind, v) = match value {
                    MetaValue::Str(s) => ("str", Value::from(s.as_str())),
                    MetaValue::Int(i) => ("int", Value::from(*i)),
                    MetaValue::Float(f) => (
                        "float",
                        match serde_json::Number::from_f64(*f) {
                            Some(n) => Value::Number(n),
                            None => Value::from(json::float_bits(*f)),
                        },
                    ),
                    MetaValue::Bool(b) => ("bool", Value::from(*b)),
                    MetaValue::Null => ("null", Value::Null),
                    MetaValue::List(_) | MetaValue::Tuple(_) | MetaValue::Map(_) => {
                        let mut contents = Vec::new();
                        let tag = json::container_to_json(value, &mut contents);
                        (tag, Value::Array(contents))
                    }
                };
                Value::Array(vec![Value::from(name.as_str()), Value::from(kind), v])
            })
            .collect(),
    )
}

/// The record field naming the PRNG implementation of a variable whose
/// tensor is the data of a typed key.
const KEY_IMPL: &str = "key_impl";

/// The typed key a record with [`KEY_IMPL`] holds.
fn key_from_json(name: &Value, data: Option<Arc<Array>>, at: &str) -> Result<crate::Value> {
    let Value::String(name) = name else {
        bail!(
            Format,
            "{at}: \"{KEY_IMPL}\" is {}, not a string",
            json_kind(name)
        );
    };
    let Some(data) = data else {
        bail!(Format, "{at}: a typed PRNG key needs a tensor of key data");
    };
    match PrngKey::new(data, name) {
        Ok(key) => Ok(key.into()),
        Err(e) => bail!(Format, "{at}: {}", e.message()),
    }
}

fn leaves_from_records(
    records: &[Value],
    tensors: &HashMap<String, Arc<Array>>,
) -> Result<Vec<Named>> {
    let mut out: Vec<Named> = Vec::new();
    let mut by_path: HashMap<Vec<Key>, Leaf> = HashMap::new();
    let mut aliases: Vec<(Vec<Key>, Vec<Key>, String)> = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    let mut types_seen = HashMap::new();
    for list in records {
        let Some(Value::Array(leaves)) = list.get("leaves") else {
            bail!(Format, "the {FORMAT_KEY} metadata has no \"leaves\" list");
        };
        for (i, record) in leaves.iter().enumerate() {
            let at = format!("{FORMAT_KEY} record {i}");
            let Value::Object(fields) = record else {
                bail!(Format, "{at} is not an object");
            };
            let path = path_from_json(fields.get("path").unwrap_or(&Value::Null), &at)?;
            let at = format!("{at} ('{}')", format_path(&path));
            if let Some(target) = fields.get("same_as") {
                if fields.len() != 2 {
                    bail!(Format, "{at}: a \"same_as\" record holds nothing else");
                }
                aliases.push((path_from_json(target, &at)?, path, at));
                continue;
            }
            let array = match fields.get("tensor") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => {
                    let Some(array) = tensors.get(name) else {
                        bail!(Format, "{at}: tensor {name:?} is not in the file");
                    };
                    if !used.insert(name.as_str()) {
                        bail!(Format, "{at}: tensor {name:?} is used by two records");
                    }
                    Some(array.clone())
                }
                Some(other) => bail!(Format, "{at}: \"tensor\" is {}", json_kind(other)),
            };
            let leaf = match fields.get("type") {
                None => {
                    let Some(array) = array else {
                        bail!(Format, "{at}: a bare array needs a tensor");
                    };
                    if fields.contains_key("metadata") || fields.contains_key(KEY_IMPL) {
                        bail!(Format, "{at}: a bare array has no metadata and is no key");
                    }
                    Leaf::Array(array)
                }
                Some(chain) => {
                    let type_id = type_from_json(chain, &at, &mut types_seen)?;
                    let value = match fields.get(KEY_IMPL) {
                        None => crate::Value::from(array),
                        Some(name) => key_from_json(name, array, &at)?,
                    };
                    let variable = Variable::new(type_id, value)?;
                    if let Some(meta) = fields.get("metadata") {
                        for (name, value) in meta_from_json(meta, &at)? {
                            variable.set_metadata(&name, value)?;
                        }
                    }
                    Leaf::Variable(Arc::new(variable))
                }
            };
            if by_path.insert(path.clone(), leaf.clone()).is_some() {
                bail!(Format, "{at}: the path is recorded twice");
            }
            out.push((path, leaf, at));
        }
    }
    for (target, path, at) in aliases {
        let Some(leaf) = by_path.get(&target) else {
            bail!(
                Format,
                "{at}: \"same_as\" names '{}', which no record holds",
                format_path(&target)
            );
        };
        out.push((path, leaf.clone(), at));
    }
    if used.len() != tensors.len() {
        let mut unused: Vec<&String> = tensors
            .keys()
            .filter(|n| !used.contains(n.as_str()))
            .collect();
        unused.sort();
        bail!(
            Format,
            "tensor {:?} has no {FORMAT_KEY} record",
            unused.first().map(|s| s.as_str()).unwrap_or("")
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Loading

fn map_file(path: &Path) -> Result<Arc<MappedFile>> {
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    match file.metadata() {
        Ok(m) if m.is_dir() => bail!(Io, "cannot load '{}': it is a directory", path.display()),
        Ok(_) => {}
        Err(e) => return Err(io_error(path, "read", e)),
    }
    MappedFile::map(&file).map_err(|e| in_file(path, e))
}

/// Adds one file to `collected`.
pub(crate) fn collect_file(path: &Path, collected: &mut Collected, copy: bool) -> Result<()> {
    let map = map_file(path)?;
    let header = parse_header(map.bytes()).map_err(|e| in_file(path, e))?;
    collected
        .add_file(&Data::Mapped(map), &header, copy)
        .map_err(|e| in_file(path, e))
}

/// Loads one safetensors file.
pub fn load_file(path: &Path, options: &LoadOptions) -> Result<Loaded> {
    let mut collected = Collected::default();
    collect_file(path, &mut collected, options.copy)?;
    collected.into_loaded(options).map_err(|e| in_file(path, e))
}

/// Loads a checkpoint: a `.safetensors` file, a sharded checkpoint's
/// `*.index.json`, or a directory holding `model.safetensors` or
/// `model.safetensors.index.json`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded> {
    if path.is_dir() {
        let single = path.join("model.safetensors");
        let index = path.join("model.safetensors.index.json");
        if single.is_file() {
            return load_file(&single, options);
        }
        if index.is_file() {
            return super::sharded::load_index(&index, options);
        }
        bail!(
            Io,
            "cannot load '{}': the directory holds neither model.safetensors nor model.safetensors.index.json",
            path.display()
        );
    }
    if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".index.json"))
    {
        return super::sharded::load_index(path, options);
    }
    load_file(path, options)
}

/// Loads a safetensors file held in memory. The arrays share `bytes`
/// (read-only) unless `options.copy` is set.
pub fn load_bytes(bytes: Arc<[u8]>, options: &LoadOptions) -> Result<Loaded> {
    let header = parse_header(&bytes)?;
    let mut collected = Collected::default();
    collected.add_file(&Data::Shared(bytes), &header, options.copy)?;
    collected.into_loaded(options)
}

// ---------------------------------------------------------------------------
// Saving

/// One tensor to write.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub name: String,
    pub array: Arc<Array>,
}

/// One leaf's record and, if it has one, its tensor.
pub(crate) struct Planned {
    pub record: Value,
    pub tensor: Option<Outgoing>,
    /// For a `same_as` record: the index of the record it points to.
    pub same_as: Option<usize>,
}

/// The records and tensors of a state, in flat order. Fails for arrays
/// whose bytes are not on the CPU and for opaque values, which are never
/// written.
pub(crate) fn plan(state: &State) -> Result<Vec<Planned>> {
    let flat = state.flatten()?;
    let mut planned = Vec::with_capacity(flat.len());
    let mut names: HashSet<String> = HashSet::new();
    let mut seen_variables: HashMap<*const Variable, (usize, Vec<Key>)> = HashMap::new();
    let mut seen_arrays: HashMap<*const Array, (usize, Vec<Key>)> = HashMap::new();
    for (path, leaf) in flat {
        let seen = match &leaf {
            Leaf::Variable(v) => seen_variables.get(&Arc::as_ptr(v)),
            Leaf::Array(a) => seen_arrays.get(&Arc::as_ptr(a)),
        };
        if let Some((index, first)) = seen {
            let record =
                serde_json::json!({"path": path_to_json(&path), "same_as": path_to_json(first)});
            planned.push(Planned {
                record,
                tensor: None,
                same_as: Some(*index),
            });
            continue;
        }
        let index = planned.len();
        let (value, mut record) = match &leaf {
            Leaf::Variable(v) => {
                seen_variables.insert(Arc::as_ptr(v), (index, path.clone()));
                let mut record = serde_json::Map::new();
                record.insert("type".into(), type_to_json(v.type_id())?);
                record.insert("metadata".into(), meta_to_json(&v.metadata_entries()));
                let value = match v.value() {
                    crate::Value::None => None,
                    crate::Value::Array(array) => Some(array),
                    crate::Value::Key(key) => {
                        record.insert(KEY_IMPL.into(), Value::from(key.impl_name()));
                        Some(key.data().clone())
                    }
                    crate::Value::Opaque(opaque) => bail!(
                        InvalidArgument,
                        "cannot save '{}': its value is an opaque value ({}), which is \
                         never written to a checkpoint",
                        format_path(&path),
                        opaque.type_name()
                    ),
                };
                (value, record)
            }
            Leaf::Array(a) => {
                seen_arrays.insert(Arc::as_ptr(a), (index, path.clone()));
                (Some(a.clone()), serde_json::Map::new())
            }
        };
        record.insert("path".into(), path_to_json(&path));
        let tensor = match value {
            None => {
                record.insert("tensor".into(), Value::Null);
                None
            }
            Some(array) => {
                if array.bytes().is_none() {
                    let d = array.device();
                    bail!(
                        InvalidArgument,
                        "cannot save '{}': its array lives on device {}:{}, not in CPU memory",
                        format_path(&path),
                        d.kind,
                        d.id
                    );
                }
                let name = unique_name(&path, &mut names);
                record.insert("tensor".into(), Value::from(name.as_str()));
                Some(Outgoing { name, array })
            }
        };
        planned.push(Planned {
            record: Value::Object(record),
            tensor,
            same_as: None,
        });
    }
    Ok(planned)
}

/// The dotted name of a path, made unique among `names`.
fn unique_name(path: &[Key], names: &mut HashSet<String>) -> String {
    let mut base = String::new();
    for (i, key) in path.iter().enumerate() {
        if i > 0 {
            base.push('.');
        }
        key.write_plain(&mut base);
    }
    let mut name = base.clone();
    let mut n = 1;
    while name == "__metadata__" || names.contains(&name) {
        name = format!("{base}~{n}");
        n += 1;
    }
    names.insert(name.clone());
    name
}

/// The `__metadata__` of a file holding `records`.
pub(crate) fn file_metadata(
    records: Vec<Value>,
    options: &SaveOptions,
) -> Result<HashMap<String, String>> {
    let mut metadata: HashMap<String, String> = HashMap::new();
    for (k, v) in &options.metadata {
        if k.starts_with(FORMAT_KEY_PREFIX) {
            bail!(
                InvalidArgument,
                "metadata name {k:?} is reserved for nnx-state's own record"
            );
        }
        metadata.insert(k.clone(), v.clone());
    }
    let record = serde_json::json!({ "leaves": records });
    metadata.insert(FORMAT_KEY.to_owned(), record.to_string());
    Ok(metadata)
}

/// The header bytes (padded to a multiple of 8 with spaces) and the
/// tensors in the order their bytes follow it: by descending alignment,
/// then name, as the reference writer orders them.
pub(crate) fn encode_header(
    tensors: &[Outgoing],
    metadata: HashMap<String, String>,
) -> Result<(Vec<u8>, Vec<Outgoing>)> {
    use ::safetensors::tensor::{Metadata, TensorInfo};
    let mut sorted: Vec<Outgoing> = tensors.to_vec();
    sorted.sort_by(|a, b| {
        st_dtype(b.array.dtype())
            .cmp(&st_dtype(a.array.dtype()))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut infos = Vec::with_capacity(sorted.len());
    let mut offset = 0usize;
    for t in &sorted {
        let n = t.array.nbytes();
        let shape = t.array.shape().iter().map(|&d| d as usize).collect();
        infos.push((
            t.name.clone(),
            TensorInfo {
                dtype: st_dtype(t.array.dtype()),
                shape,
                data_offsets: (offset, offset + n),
            },
        ));
        offset += n;
    }
    let metadata = Metadata::new(Some(metadata), infos)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot encode: {e}")))?;
    let mut header = serde_json::to_vec(&metadata)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("cannot encode: {e}")))?;
    let padded = header.len().next_multiple_of(LEN_BYTES);
    header.resize(padded, b' ');
    if header.len() as u64 > MAX_HEADER_LEN {
        bail!(
            InvalidArgument,
            "the header would be {} bytes, over the format's limit of {MAX_HEADER_LEN}",
            header.len()
        );
    }
    Ok((header, sorted))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: into a new temporary file in the same
/// directory, flushed to disk, then renamed over `path`. On failure the
/// temporary file is removed and `path` is as it was.
/// Creates a new temporary file beside the target. A name already taken (a
/// save killed mid-write may leave its file behind, and a restarted process
/// can have the same pid) is skipped for the next one.
fn create_temporary(dir: &Path, file_name: &str) -> Result<(PathBuf, File)> {
    const ATTEMPTS: usize = 1000;
    for _ in 0..ATTEMPTS {
        let temp = dir.join(format!(
            ".{file_name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&temp, "create", e)),
        }
    }
    bail!(
        Io,
        "cannot create a temporary file beside '{file_name}' in '{}': {ATTEMPTS} names are taken",
        dir.display()
    )
}

pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> Result<()> {
    let Some(file_name) = path.file_name() else {
        bail!(
            InvalidArgument,
            "cannot save to '{}': it names no file",
            path.display()
        );
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (temp, file) = create_temporary(&dir, &file_name.to_string_lossy())?;
    let result = (|| {
        let mut writer = BufWriter::with_capacity(1 << 20, &file);
        write(&mut writer).map_err(|e| io_error(&temp, "write", e))?;
        writer.flush().map_err(|e| io_error(&temp, "write", e))?;
        drop(writer);
        file.sync_all()
            .map_err(|e| io_error(&temp, "flush to disk", e))?;
        fs::rename(&temp, path).map_err(|e| io_error(path, "replace", e))
    })();
    drop(file);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
        return result;
    }
    // Make the rename itself durable. Some file systems cannot sync a
    // directory; the file is in place all the same.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes one safetensors file of `tensors` with `metadata`, atomically.
pub(crate) fn write_file(
    path: &Path,
    tensors: &[Outgoing],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let (header, sorted) = encode_header(tensors, metadata)?;
    write_atomically(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in &sorted {
            // Checked to be CPU memory by `plan`.
            w.write_all(t.array.bytes().unwrap_or(&[]))?;
        }
        Ok(())
    })
}

/// Saves `state` as one safetensors file at `path`, atomically: the file is
/// written to a temporary file in the same directory, flushed to disk and
/// renamed over `path`, so a failed or interrupted save leaves what was at
/// `path` intact.
///
/// Fails with `InvalidArgument` for an array not in CPU memory or an
/// opaque value (before anything is written) and `Io` when the system
/// fails a file operation.
pub fn save(state: &State, path: &Path, options: &SaveOptions) -> Result<()> {
    let planned = plan(state)?;
    let mut records = Vec::with_capacity(planned.len());
    let mut tensors = Vec::new();
    for p in planned {
        records.push(p.record);
        tensors.extend(p.tensor);
    }
    let metadata = file_metadata(records, options)?;
    write_file(path, &tensors, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_paths() {
        let path = |name: &str, str_keys: bool| path_of_name(name, str_keys).unwrap();
        assert_eq!(
            path("encoder.layer.0.attention.self.query.weight", false),
            crate::parse_path("encoder/layer/0/attention/self/query/weight").unwrap()
        );
        assert_eq!(
            path("a.007.-3.-0.+1", false),
            vec![
                Key::str("a"),
                Key::str("007"),
                Key::int(-3),
                Key::str("-0"),
                Key::str("+1")
            ]
        );
        assert_eq!(path("a.0", true), vec![Key::str("a"), Key::str("0")]);
    }

    #[test]
    fn names_with_empty_components_or_too_many_are_refused() {
        for name in ["", "a..b", ".a", "a.", "."] {
            let e = path_of_name(name, false).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Format, "{name:?}");
            assert!(e.message().contains("empty component"), "{e}");
        }
        let at_limit = vec!["a"; crate::MAX_DEPTH].join(".");
        assert_eq!(
            path_of_name(&at_limit, false).unwrap().len(),
            crate::MAX_DEPTH
        );
        let deep = vec!["a"; 30_000].join(".");
        let e = path_of_name(&deep, false).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::TooDeep);
        assert!(e.message().contains("30000 components"), "{e}");
        assert!(e.message().len() < 300, "the message stays short: {e}");
    }

    #[test]
    fn unique_names_avoid_collisions() {
        let mut names = HashSet::new();
        let a = unique_name(&[Key::str("a.b")], &mut names);
        let b = unique_name(&[Key::str("a"), Key::str("b")], &mut names);
        let m = unique_name(&[Key::str("__metadata__")], &mut names);
        assert_eq!((a.as_str(), b.as_str()), ("a.b", "a.b~1"));
        assert_eq!(m, "__metadata__~1");
    }

    #[test]
    fn metadata_values_round_trip() {
        let entries = vec![
            ("s".to_owned(), MetaValue::Str("x".into())),
            ("i".to_owned(), MetaValue::Int(i64::MIN)),
            ("f".to_owned(), MetaValue::Float(0.1)),
            (
                "n".to_owned(),
                MetaValue::Float(f64::from_bits(0x7ff8_0000_0000_0001)),
            ),
            ("z".to_owned(), MetaValue::Float(-0.0)),
            ("b".to_owned(), MetaValue::Bool(true)),
            ("none".to_owned(), MetaValue::Null),
            (
                "t".to_owned(),
                MetaValue::tuple([MetaValue::Null, "model".into()]).unwrap(),
            ),
            (
                "m".to_owned(),
                MetaValue::map([
                    (
                        "z",
                        MetaValue::list([MetaValue::Int(1), 1.0.into()]).unwrap(),
                    ),
                    ("a", MetaValue::Float(f64::NEG_INFINITY)),
                ])
                .unwrap(),
            ),
        ];
        let json = meta_to_json(&entries);
        let text = json.to_string();
        assert!(
            text.ends_with(
                r#"["none","null",null],["t","tuple",[null,"model"]],["m","map",["z",["list",1,1.0],"a",["float","0xfff0000000000000"]]]]"#
            ),
            "{text}"
        );
        let back = meta_from_json(&parse_strict(&text).unwrap(), "t").unwrap();
        assert_eq!(back.len(), entries.len());
        for ((n1, v1), (n2, v2)) in entries.iter().zip(&back) {
            assert_eq!(n1, n2);
            match (v1, v2) {
                (MetaValue::Float(a), MetaValue::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                _ => assert_eq!(v1, v2),
            }
        }
    }
}

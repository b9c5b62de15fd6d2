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

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, ErrorKind};
use crate::state::State;
use crate::types::TypeId;

/// The `__metadata__` entry that records a state written by this library.
mod header;
mod load;
mod record;
mod write;

pub use header::*;
pub use load::*;
pub(crate) use record::*;
pub use write::*;

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

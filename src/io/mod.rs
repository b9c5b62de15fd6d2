//! Checkpoints and exchange: safetensors files (memory-mapped and zero-copy,
//! saved atomically, sharded) and the safe half of DLPack.

pub mod dlpack;
mod json;
pub mod safetensors;
pub mod sharded;

pub use json::{meta_from_text, meta_to_text};
pub use safetensors::{
    check_metadata_name, load_bytes, load_file, parse_header, save, Header, LoadOptions, Loaded,
    SaveOptions, TensorEntry, FORMAT_KEY,
};
pub use sharded::{load_index, save_sharded};

use std::path::Path;

use crate::error::{bail, Result};

/// Loads a checkpoint: a `.safetensors` file, a sharded checkpoint's
/// `*.index.json`, or a directory holding `model.safetensors` or
/// `model.safetensors.index.json`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded> {
    if path.is_dir() {
        let single = path.join("model.safetensors");
        let index = path.join("model.safetensors.index.json");
        if single.is_file() {
            return safetensors::load_file(&single, options);
        }
        if index.is_file() {
            return sharded::load_index(&index, options);
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
        return sharded::load_index(path, options);
    }
    safetensors::load_file(path, options)
}

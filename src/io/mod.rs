//! Checkpoints and exchange: safetensors files (memory-mapped and zero-copy,
//! saved atomically, sharded) and the safe half of DLPack.

pub mod dlpack;
mod json;
pub mod safetensors;
pub mod sharded;

pub use json::{meta_from_text, meta_to_text};
pub use safetensors::{
    load, load_bytes, load_file, parse_header, save, Header, LoadOptions, Loaded, SaveOptions,
    TensorEntry, FORMAT_KEY,
};
pub use sharded::{load_index, save_sharded};

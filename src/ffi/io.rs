//! Checkpoints: safetensors files, single or sharded.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use super::error::nnx_status;
use super::state::nnx_state;
use super::types::{nnx_type_id, type_from_c, NNX_TYPE_NONE};
use super::{arg, boundary, box_into_raw, c_str, fail, owned_c_string, FfiError, FfiResult, Out};
use crate::io::{self, LoadOptions, SaveOptions};

/// The safetensors `__metadata__` a state handle carries: what the file it
/// was loaded from held (without nnx-state's own record), as changed by
/// `nnx_safetensors_metadata_set` and its siblings, and what the next save
/// writes. Sorted by name.
#[derive(Default, Debug)]
pub(crate) struct FileMetadata(Mutex<BTreeMap<String, String>>);

impl FileMetadata {
    pub(crate) fn new(entries: BTreeMap<String, String>) -> FileMetadata {
        FileMetadata(Mutex::new(entries))
    }

    /// The entries. A panic while the lock was held cannot leave the map
    /// half-changed (every change is one map operation), so a poisoned
    /// lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save_options(&self) -> SaveOptions {
        SaveOptions {
            metadata: self.lock().clone(),
        }
    }
}

impl Clone for FileMetadata {
    fn clone(&self) -> FileMetadata {
        FileMetadata::new(self.lock().clone())
    }
}

/// Flags of `nnx_safetensors_load`: a bitwise OR of `NNX_LOAD_*` values, or 0.
pub type nnx_load_flags = u32;
/// Copy every tensor into memory of the library instead of mapping the
/// file: loading reads the whole file, and the file may then change or go
/// away without affecting the state.
pub const NNX_LOAD_COPY: nnx_load_flags = 1;
/// For files not written by nnx-state: keep every component of a dotted
/// name a string key, instead of turning decimal components into int keys.
pub const NNX_LOAD_STR_KEYS: nnx_load_flags = 2;

const KNOWN_LOAD_FLAGS: nnx_load_flags = NNX_LOAD_COPY | NNX_LOAD_STR_KEYS;

/// Reads a file path argument: on Unix any bytes, elsewhere UTF-8.
///
/// # Safety
/// A non-null `ptr` must point to a NUL-terminated string valid for the call.
unsafe fn path_arg(ptr: *const c_char, name: &str) -> FfiResult<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if ptr.is_null() {
            return Err(FfiError::new(
                nnx_status::NNX_ERR_NULL_ARGUMENT,
                format!("argument `{name}` is NULL"),
            ));
        }
        // SAFETY: non-null and NUL-terminated by the caller's contract.
        let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        // SAFETY: by the caller's contract.
        Ok(PathBuf::from(unsafe { c_str(ptr, name) }?))
    }
}

fn no_flags(flags: u32, what: &str) -> FfiResult {
    if flags != 0 {
        fail!(
            NNX_ERR_INVALID_ARGUMENT,
            "{what} takes no flags yet: `flags` must be 0, not {flags:#x}"
        );
    }
    Ok(())
}

/// Loads a safetensors checkpoint into a new state, memory-mapped and
/// zero-copy: the header is read and checked, the tensor bytes are not;
/// each array is a part of a private mapping of the file, read from disk
/// when first touched, and the mapping lives as long as any of its arrays.
/// Arrays are writable: writes go to private copies of the pages, never to
/// the file.
///
/// `path` is a `.safetensors` file, a sharded checkpoint's index
/// (`*.index.json`, whose shards are loaded from its directory), or a
/// directory holding `model.safetensors` or `model.safetensors.index.json`.
///
/// A file written by `nnx_safetensors_save` loads as the state that was
/// saved: variable types (registering custom types not yet registered,
/// under their recorded parents), metadata, int and str keys, variables
/// without a value, typed PRNG keys (key data bit for bit and the
/// implementation name), and variables held at several paths (one variable
/// again). A file written by anyone else loads with each dotted name split
/// into a path, components that are canonical decimal integers (`0`, `12`,
/// `-3`, not `007`) as int keys (`encoder.layer.0.weight` gives
/// `encoder/layer/0/weight`), each tensor a variable of type `leaf_type`,
/// or a bare array when `leaf_type` is `NNX_TYPE_NONE`. Keys come sorted.
///
/// The new state keeps the file's own `__metadata__` entries (a Hugging
/// Face file's `{"format": "pt"}`; of a sharded checkpoint, those of all
/// shards, the first shard naming an entry winning), without nnx-state's
/// own `"nnx_state.v1"` record: read and change them with
/// `nnx_safetensors_metadata_get` and its siblings; `nnx_safetensors_save`
/// writes them back.
///
/// The mapping follows the file: if another process truncates or rewrites
/// the file while arrays of it live, reading them may fault or show the new
/// bytes. Pass `NNX_LOAD_COPY` where that cannot be ruled out.
///
/// - `path`: borrowed, NUL-terminated (any bytes on Unix, UTF-8 elsewhere).
/// - `leaf_type`: for files not written by nnx-state (`NNX_TYPE_PARAM` is
///   the usual choice); `NNX_TYPE_NONE` for bare arrays.
/// - `flags`: `NNX_LOAD_COPY`, `NNX_LOAD_STR_KEYS`, or 0.
/// - `out_state`: receives a new state owned by the caller (free with
///   `nnx_state_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_INVALID_ARGUMENT` (unknown
/// flags); `NNX_ERR_UNKNOWN_TYPE` (`leaf_type`); `NNX_ERR_IO` (the file
/// cannot be opened, read or mapped); `NNX_ERR_FORMAT` (a malformed file:
/// truncated, a header length beyond the file, overlapping, out-of-range or
/// uncovered offsets, a dtype/shape/byte-count mismatch, invalid JSON or
/// UTF-8, a name given twice, a name that is both a leaf and a prefix of
/// another, a dtype arrays cannot hold, an index that disagrees with its
/// shards; the message names the file and the problem);
/// `NNX_ERR_TYPE_CONFLICT` (a recorded custom type is registered here under
/// another parent); `NNX_ERR_OUT_OF_MEMORY` (with `NNX_LOAD_COPY`);
/// `NNX_ERR_TOO_DEEP` (a name of more than `NNX_MAX_DEPTH` components, or
/// a recorded path of more keys). A name with an empty component (`a..b`,
/// `.a`, `a.`, the empty name) is `NNX_ERR_FORMAT`: no `"/"` path could
/// name the `""` key it would give.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_load(
    path: *const c_char,
    leaf_type: nnx_type_id,
    flags: nnx_load_flags,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: a C string argument.
        let path = unsafe { path_arg(path, "path") }?;
        if flags & !KNOWN_LOAD_FLAGS != 0 {
            fail!(
                NNX_ERR_INVALID_ARGUMENT,
                "unknown load flags {:#x}",
                flags & !KNOWN_LOAD_FLAGS
            );
        }
        let leaf_type = match leaf_type {
            NNX_TYPE_NONE => None,
            t => Some(type_from_c(t)?),
        };
        let options = LoadOptions {
            leaf_type,
            copy: flags & NNX_LOAD_COPY != 0,
            str_keys: flags & NNX_LOAD_STR_KEYS != 0,
        };
        let loaded = io::load(&path, &options)?;
        out.write(box_into_raw(nnx_state::with_file_metadata(
            loaded.state,
            FileMetadata::new(loaded.metadata),
        )));
        Ok(())
    })
}

/// Saves a state as one safetensors file, atomically: it is written to a
/// new temporary file in the same directory, flushed to disk, and renamed
/// over `path`, so a failed or interrupted save leaves what was at `path`
/// intact (an interrupted one may leave a `.NAME.tmp-*` file behind).
///
/// The file is a standard safetensors file that any reader takes: each
/// array under its dotted path (`layers.0.kernel`), in the reference
/// writer's order. Its `__metadata__` holds the entries the state handle
/// carries (those of the file it was loaded from, as changed by
/// `nnx_safetensors_metadata_set` and its siblings). It also records, in
/// `__metadata__` under
/// `"nnx_state.v1"`, what `nnx_safetensors_load` needs to give back the
/// same state: variable types, metadata, key kinds, variables without a
/// value, typed PRNG keys (their data as a `U32` tensor, the implementation
/// name in the record), and variables held at several paths (stored once).
///
/// Opaque values are never written to a checkpoint: a state holding one
/// fails with `NNX_ERR_INVALID_ARGUMENT`, a message naming its path, before
/// anything is written (what was at `path` stays as it was). Filter them
/// out first (`nnx_state_filter`) to save the rest.
///
/// Saving reads the arrays' bytes: the state may be used meanwhile, and
/// bytes written in place during the save may or may not be in the file.
/// Saving over the file a state was loaded from is safe: its arrays keep
/// the old file's mapping.
///
/// - `state`: borrowed for the call.
/// - `path`: borrowed, NUL-terminated (any bytes on Unix, UTF-8 elsewhere).
/// - `flags`: must be 0.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_INVALID_ARGUMENT` (flags, an
/// array not in CPU memory, an opaque value, a header over the format's
/// 100 MB limit);
/// `NNX_ERR_IO` (the message names the file and the cause);
/// `NNX_ERR_KEY_NOT_FOUND` (a view whose nested state is gone).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_save(
    state: *const nnx_state,
    path: *const c_char,
    flags: u32,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and C string arguments.
        let (state, path) = unsafe { (arg(state, "state")?, path_arg(path, "path")?) };
        no_flags(flags, "nnx_safetensors_save")?;
        io::save(state.state(), &path, &state.file_metadata().save_options())?;
        Ok(())
    })
}

/// Saves a state as a sharded checkpoint in `directory`, as
/// huggingface_hub does: tensors fill shards greedily in flat order, none
/// holding more than `max_shard_size` bytes of tensor data unless one
/// tensor alone is larger. With several shards the files are
/// `NAME-00001-of-0000N.safetensors`, ... and the index
/// `NAME.safetensors.index.json`; with one, the checkpoint is a single
/// `NAME.safetensors` and no index is written. Each file is written
/// atomically (see `nnx_safetensors_save`), the index last; then files of
/// an earlier checkpoint of the same NAME in `directory` that this one does
/// not use are removed. The set of files is not replaced atomically as a
/// whole: an interrupted save can leave new shards beside an old index.
/// A state that cannot be saved (an opaque value, an array off the CPU)
/// fails before any file is written or removed.
/// `nnx_safetensors_load` on the index (or on the directory when NAME is
/// `model`) gives back the state.
///
/// - `state`: borrowed for the call.
/// - `directory`: borrowed, NUL-terminated; must exist.
/// - `name`: borrowed, NUL-terminated UTF-8, a plain file name (`"model"`).
/// - `max_shard_size`: in bytes, at least 1 (huggingface_hub's default is
///   5 GB).
/// - `flags`: must be 0.
///
/// Every shard's `__metadata__` holds the entries the state handle carries,
/// as with `nnx_safetensors_save`.
///
/// Errors: as `nnx_safetensors_save`, and `NNX_ERR_INVALID_UTF8` (`name`),
/// `NNX_ERR_INVALID_ARGUMENT` (`name` not a plain file name, a zero
/// `max_shard_size`). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_save_sharded(
    state: *const nnx_state,
    directory: *const c_char,
    name: *const c_char,
    max_shard_size: u64,
    flags: u32,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and C string arguments.
        let (state, directory, name) = unsafe {
            (
                arg(state, "state")?,
                path_arg(directory, "directory")?,
                c_str(name, "name")?,
            )
        };
        no_flags(flags, "nnx_safetensors_save_sharded")?;
        io::save_sharded(
            state.state(),
            &directory,
            name,
            max_shard_size,
            &state.file_metadata().save_options(),
        )?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// The file metadata a state carries

/// The handle's file metadata, for a call.
///
/// # Safety
/// A non-null `state` must be a live handle.
unsafe fn metadata_arg<'a>(state: *const nnx_state) -> FfiResult<&'a FileMetadata> {
    // SAFETY: by the contract above.
    Ok(unsafe { arg(state, "state") }?.file_metadata())
}

/// Writes the number of safetensors `__metadata__` entries the state
/// carries to `*out_len`: those of the file it was loaded from (0 for a
/// state not loaded from a file, and for a view from
/// `nnx_state_get_state`), as changed since.
///
/// - `state`: borrowed for the call.
/// - `out_len`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_metadata_len(
    state: *const nnx_state,
    out_len: *mut usize,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_len, "out_len")?;
        // SAFETY: a handle argument.
        let len = unsafe { metadata_arg(state) }?.lock().len();
        out.write(len);
        Ok(())
    })
}

/// Writes the `index`-th safetensors `__metadata__` entry the state carries
/// (entries are sorted by name, bytewise) to `*out_name` and `*out_value`.
///
/// - `state`: borrowed for the call.
/// - `out_name`, `out_value`: each a new NUL-terminated UTF-8 string owned
///   by the caller (free with `nnx_string_free`); both written on success
///   only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_INDEX_OUT_OF_RANGE` (`index`
/// is not below `nnx_safetensors_metadata_len`); `NNX_ERR_INVALID_ARGUMENT`
/// (the name or value holds a NUL byte, which a C string cannot show).
/// Thread-safe; another thread's `nnx_safetensors_metadata_set` may move
/// entries between calls.
#[no_mangle]
pub extern "C" fn nnx_safetensors_metadata_at(
    state: *const nnx_state,
    index: usize,
    out_name: *mut *mut c_char,
    out_value: *mut *mut c_char,
) -> nnx_status {
    boundary(|| {
        let out_name = Out::new(out_name, "out_name")?;
        let out_value = Out::new(out_value, "out_value")?;
        // SAFETY: a handle argument.
        let entries = unsafe { metadata_arg(state) }?.lock();
        let Some((name, value)) = entries.iter().nth(index) else {
            fail!(
                NNX_ERR_INDEX_OUT_OF_RANGE,
                "index {index} is out of range for {} metadata entries",
                entries.len()
            );
        };
        let c_value = owned_c_string(value)?;
        let c_name = match owned_c_string(name) {
            Ok(p) => p,
            Err(e) => {
                super::error::nnx_string_free(c_value);
                return Err(e);
            }
        };
        out_name.write(c_name);
        out_value.write(c_value);
        Ok(())
    })
}

/// Writes the value of the safetensors `__metadata__` entry `name` that the
/// state carries to `*out_value`.
///
/// - `state`: borrowed for the call.
/// - `name`: borrowed, NUL-terminated UTF-8.
/// - `out_value`: a new NUL-terminated UTF-8 string owned by the caller
///   (free with `nnx_string_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_INVALID_UTF8` (`name`);
/// `NNX_ERR_KEY_NOT_FOUND` (no entry of that name);
/// `NNX_ERR_INVALID_ARGUMENT` (the value holds a NUL byte). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_metadata_get(
    state: *const nnx_state,
    name: *const c_char,
    out_value: *mut *mut c_char,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_value, "out_value")?;
        // SAFETY: handle and C string arguments.
        let (metadata, name) = unsafe { (metadata_arg(state)?, c_str(name, "name")?) };
        let entries = metadata.lock();
        let Some(value) = entries.get(name) else {
            fail!(NNX_ERR_KEY_NOT_FOUND, "no metadata entry is named {name:?}");
        };
        out.write(owned_c_string(value)?);
        Ok(())
    })
}

/// Sets the safetensors `__metadata__` entry `name` to `value` on the
/// state (replacing an entry of that name), for the next
/// `nnx_safetensors_save` or `nnx_safetensors_save_sharded` of this
/// handle. Names starting with `"nnx_state.v"` are nnx-state's own records,
/// which every save writes itself.
///
/// - `state`: borrowed for the call.
/// - `name`, `value`: borrowed, NUL-terminated UTF-8; copied.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_INVALID_UTF8`;
/// `NNX_ERR_INVALID_ARGUMENT` (a reserved name). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_metadata_set(
    state: *mut nnx_state,
    name: *const c_char,
    value: *const c_char,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and C string arguments.
        let (metadata, name, value) = unsafe {
            (
                metadata_arg(state)?,
                c_str(name, "name")?,
                c_str(value, "value")?,
            )
        };
        io::check_metadata_name(name)?;
        metadata.lock().insert(name.to_owned(), value.to_owned());
        Ok(())
    })
}

/// Removes the safetensors `__metadata__` entry `name` from the state.
///
/// - `state`: borrowed for the call.
/// - `name`: borrowed, NUL-terminated UTF-8.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_INVALID_UTF8`;
/// `NNX_ERR_KEY_NOT_FOUND` (no entry of that name; nothing changes).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_metadata_remove(
    state: *mut nnx_state,
    name: *const c_char,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and C string arguments.
        let (metadata, name) = unsafe { (metadata_arg(state)?, c_str(name, "name")?) };
        if metadata.lock().remove(name).is_none() {
            fail!(NNX_ERR_KEY_NOT_FOUND, "no metadata entry is named {name:?}");
        }
        Ok(())
    })
}

/// Removes every safetensors `__metadata__` entry from the state, so that
/// the next save writes only nnx-state's own record.
///
/// - `state`: borrowed for the call.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_safetensors_metadata_clear(state: *mut nnx_state) -> nnx_status {
    boundary(|| {
        // SAFETY: a handle argument.
        unsafe { metadata_arg(state) }?.lock().clear();
        Ok(())
    })
}

//! Keys and paths across the boundary.

use std::collections::HashMap;
use std::ffi::c_char;

use super::error::nnx_status;
use super::{boundary, c_str, fail, slice, FfiError, FfiResult, Out, OutArray};
use crate::key::{parse_path, Key};

/// What an `nnx_key` holds: `NNX_KEY_STR` or `NNX_KEY_INT`.
pub type nnx_key_kind = u32;
/// A UTF-8 string key.
pub const NNX_KEY_STR: nnx_key_kind = 0;
/// A signed 64-bit integer key.
pub const NNX_KEY_INT: nnx_key_kind = 1;

/// One element of a path: a UTF-8 string or a signed 64-bit integer. The
/// string "0" and the integer 0 are different keys.
///
/// Passed in: `str` points to `str_len` bytes of UTF-8 (no terminator needed;
/// NULL allowed when `str_len` is 0), read during the call only.
/// Handed out: `str` is NUL-terminated as well and owned by the library: key
/// texts are interned, so it stays valid for the life of the process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nnx_key {
    /// `NNX_KEY_STR` or `NNX_KEY_INT`.
    pub kind: nnx_key_kind,
    /// For `NNX_KEY_STR`: the bytes of the string.
    pub str: *const c_char,
    /// For `NNX_KEY_STR`: the number of bytes, without any terminator.
    pub str_len: usize,
    /// For `NNX_KEY_INT`: the value.
    pub int_value: i64,
}

/// A path: `len` keys at `keys`. Used where a function takes several paths.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nnx_path {
    /// The keys, root first; NULL allowed when `len` is 0.
    pub keys: *const nnx_key,
    /// The number of keys.
    pub len: usize,
}

/// Converts one C key.
///
/// # Safety
/// `key.str` must be valid for `key.str_len` bytes when it is a string key.
pub(crate) unsafe fn key_from_c(key: &nnx_key) -> FfiResult<Key> {
    match key.kind {
        NNX_KEY_INT => Ok(Key::Int(key.int_value)),
        NNX_KEY_STR => {
            // SAFETY: by this function's contract.
            let bytes = unsafe { slice(key.str.cast::<u8>(), key.str_len, "key.str") }?;
            Ok(Key::from_utf8(bytes)?)
        }
        other => fail!(
            NNX_ERR_INVALID_ARGUMENT,
            "key kind {other} is neither NNX_KEY_STR (0) nor NNX_KEY_INT (1)"
        ),
    }
}

/// Converts a C path (`len` keys at `keys`).
///
/// # Safety
/// A non-null `keys` must point to `len` keys, each valid as for
/// [`key_from_c`].
pub(crate) unsafe fn path_from_c(keys: *const nnx_key, len: usize) -> FfiResult<Vec<Key>> {
    // SAFETY: by this function's contract.
    let keys = unsafe { slice(keys, len, "path") }?;
    keys.iter()
        // SAFETY: each key by this function's contract.
        .map(|k| unsafe { key_from_c(k) })
        .collect()
}

/// Parses a `/`-separated path string argument.
///
/// # Safety
/// A non-null `text` must be a NUL-terminated string valid for the call.
pub(crate) unsafe fn path_from_c_str(text: *const c_char) -> FfiResult<Vec<Key>> {
    // SAFETY: by this function's contract.
    let text = unsafe { c_str(text, "path") }?;
    Ok(parse_path(text)?)
}

/// A C view of a key. A string key's pointer refers to its interned,
/// NUL-terminated text, valid for the life of the process.
pub(crate) fn key_to_c(key: &Key) -> nnx_key {
    match key {
        Key::Int(value) => nnx_key {
            kind: NNX_KEY_INT,
            str: std::ptr::null(),
            str_len: 0,
            int_value: *value,
        },
        Key::Str(text) => nnx_key {
            kind: NNX_KEY_STR,
            str: text.as_bytes_with_nul().as_ptr().cast(),
            str_len: text.as_str().len(),
            int_value: 0,
        },
    }
}

/// Parses a `/`-separated path such as `"layers/0/kernel"` by the rule of
/// every `_str` function: a component that is a canonical decimal integer
/// that fits in 64 bits (`0`, `12`, `-3`; not `007`, `-0` or `+1`) is an int
/// key, any other component a string key. `""` is the empty path.
///
/// - `text`: `text_len` bytes of UTF-8 (no terminator needed; NULL allowed
///   when `text_len` is 0), read during the call only.
/// - `out_keys`: room for `keys_capacity` keys; or NULL to learn the number
///   of keys only. A string key's `str` is the interned, NUL-terminated
///   text, valid for the life of the process.
/// - `out_len`: required; receives the number of keys.
///
/// All outputs are written on success only. Errors: `NNX_ERR_NULL_ARGUMENT`
/// (out_len; text with a nonzero length), `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (an empty component, as in `a//b` or a leading
/// or trailing `/`; `keys_capacity` smaller than the number of keys, the
/// message naming both). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_path_parse(
    text: *const c_char,
    text_len: usize,
    out_keys: *mut nnx_key,
    keys_capacity: usize,
    out_len: *mut usize,
) -> nnx_status {
    boundary(|| {
        let len_out = Out::new(out_len, "out_len")?;
        let keys_out = OutArray::optional(out_keys, keys_capacity, "out_keys")?;
        // SAFETY: the caller's text of `text_len` bytes, read for the call.
        let bytes = unsafe { slice(text.cast::<u8>(), text_len, "text") }?;
        let Ok(text) = std::str::from_utf8(bytes) else {
            fail!(NNX_ERR_INVALID_UTF8, "path text is not valid UTF-8");
        };
        let path = parse_path(text)?;
        if let Some(keys_out) = keys_out {
            if path.len() > keys_capacity {
                fail!(
                    NNX_ERR_INVALID_ARGUMENT,
                    "keys_capacity {keys_capacity} is less than the {} keys of path {text:?}",
                    path.len()
                );
            }
            for (i, key) in path.iter().enumerate() {
                keys_out.write(i, key_to_c(key));
            }
        }
        len_out.write(path.len());
        Ok(())
    })
}

/// The paths of a bulk call, given as one key array cut by offsets: path `i`
/// is `keys[key_offsets[i] .. key_offsets[i + 1]]`. `key_offsets` (`count +
/// 1` of them, non-decreasing) may be NULL when `count` is 0, `keys` when
/// there are none. An error in a key names its entry (`entry i of count`).
///
/// Keys repeat from entry to entry (`layers`, `attn`, ...): each distinct C
/// key is converted (and its text interned) once a call, and a key equal
/// to the previous path's key at the same depth (same kind, same bytes at
/// the same address: the caller's memory does not change during the call)
/// is taken from there.
///
/// # Safety
/// Non-null `key_offsets` and `keys` must hold what the offsets say, valid
/// for the call.
pub(crate) unsafe fn paths_from_offsets(
    count: usize,
    key_offsets: *const usize,
    keys: *const nnx_key,
) -> FfiResult<Vec<Vec<Key>>> {
    let Some(offsets_len) = count.checked_add(1) else {
        fail!(NNX_ERR_INVALID_ARGUMENT, "count {count} is too large");
    };
    let offsets = if count == 0 {
        &[][..]
    } else {
        // SAFETY: `count + 1` offsets by the contract.
        unsafe { slice(key_offsets, offsets_len, "key_offsets") }?
    };
    for i in 0..count {
        if offsets[i] > offsets[i + 1] {
            fail!(
                NNX_ERR_INVALID_ARGUMENT,
                "key_offsets must not decrease: key_offsets[{i}] = {} > key_offsets[{}] = {}",
                offsets[i],
                i + 1,
                offsets[i + 1]
            );
        }
    }
    let total = offsets.last().copied().unwrap_or(0);
    // SAFETY: `keys` holds `key_offsets[count]` keys by the contract.
    let keys = unsafe { slice(keys, total, "keys") }?;

    let mut seen: HashMap<(*const c_char, usize), Key> = HashMap::new();
    let mut previous: Vec<(nnx_key, Key)> = Vec::new();
    let mut convert = |depth: usize, c: &nnx_key| -> FfiResult<Key> {
        if let Some((p, key)) = previous.get(depth) {
            if p.kind == c.kind
                && p.str == c.str
                && p.str_len == c.str_len
                && p.int_value == c.int_value
            {
                return Ok(*key);
            }
        }
        let key = if c.kind != NNX_KEY_STR {
            // SAFETY: not a string key, so no bytes are read.
            unsafe { key_from_c(c) }?
        } else if let Some(key) = seen.get(&(c.str, c.str_len)) {
            *key
        } else {
            // SAFETY: a key of the caller's `keys`, valid for the call.
            let key = unsafe { key_from_c(c) }?;
            seen.insert((c.str, c.str_len), key);
            key
        };
        previous.truncate(depth);
        previous.push((*c, key));
        Ok(key)
    };
    (0..count)
        .map(|i| {
            keys[offsets[i]..offsets[i + 1]]
                .iter()
                .enumerate()
                .map(|(depth, c)| convert(depth, c))
                .collect::<FfiResult<Vec<Key>>>()
                .map_err(|e| {
                    FfiError::new(e.status, format!("entry {i} of {count}: {}", e.message))
                })
        })
        .collect()
}

//! Flat lists of (path, leaf): owned boxes (`nnx_flat_new` / `nnx_flat_free`).
//!
//! Entries are read one at a time (`nnx_flat_path`, `nnx_flat_kind`, ...) or
//! many at once into caller arrays (`nnx_flat_leaves`, `nnx_flat_paths`),
//! and pushed one at a time or many at once (`nnx_flat_push_many`), so that
//! bindings with a costly call (Python's ctypes) make a constant number of
//! calls per list, not a few per entry.

use std::ops::Range;
use std::sync::{OnceLock, RwLock};

use super::array::nnx_array;
use super::error::nnx_status;
use super::key::{key_to_c, nnx_key, path_from_c, paths_from_offsets};
use super::kind::{array_leaf, kind_to_c, nnx_kind, variable_leaf};
use super::state::{nnx_state, state_arg};
use super::types::{nnx_type_id, NNX_TYPE_NONE};
use super::variable::nnx_variable;
use super::{
    arg, boundary, box_free, box_into_raw, fail, slice, ArcHandle, FfiError, FfiResult, Out,
    OutArray,
};
use crate::key::Key;
use crate::ops::{check_flat_path, FlatEntry};
use crate::state::State;
use crate::tree::Leaf;

/// One entry. What it lends out (the key array, key strings, leaves) lives
/// on the heap, so it stays put when the list grows and entries move.
struct Entry {
    path: Vec<Key>,
    /// C views of `path` (their strings are interned, so never dangle),
    /// made the first time `nnx_flat_path` asks for them: the bulk readers
    /// write their own copies, so most lists never need them.
    c_path: OnceLock<Vec<nnx_key>>,
    leaf: Leaf,
}

// SAFETY: `c_path` only points to interned key texts, which live for the
// life of the process and are never written; the rest is `Send + Sync`.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

impl FlatEntry for Entry {
    fn path(&self) -> &[Key] {
        &self.path
    }
    fn leaf(&self) -> &Leaf {
        &self.leaf
    }
}

impl Entry {
    fn new(path: Vec<Key>, leaf: Leaf) -> Entry {
        Entry {
            path,
            c_path: OnceLock::new(),
            leaf,
        }
    }

    fn c_path(&self) -> &[nnx_key] {
        self.c_path
            .get_or_init(|| self.path.iter().map(key_to_c).collect())
    }
}

/// A list of (path, leaf) pairs: what `nnx_state_flatten` gives, and what
/// `nnx_state_from_flat` takes. Owned by the caller (free with
/// `nnx_flat_free`). Entries are never removed or changed, so everything
/// borrowed from a flat stays valid until it is freed. Thread-safe.
pub struct nnx_flat {
    entries: RwLock<Vec<Entry>>,
}

impl nnx_flat {
    fn with(&self, index: usize, f: impl FnOnce(&Entry)) -> FfiResult {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.get(index) {
            Some(entry) => {
                f(entry);
                Ok(())
            }
            None => fail!(
                NNX_ERR_INDEX_OUT_OF_RANGE,
                "index {index} is out of range for a flat list of {} entries",
                entries.len()
            ),
        }
    }
}

fn new_flat(out: Out<*mut nnx_flat>, entries: Vec<Entry>) {
    out.write(box_into_raw(nnx_flat {
        entries: RwLock::new(entries),
    }));
}

/// Flattens a state into (path, leaf) pairs sorted by path, as
/// `nnx.to_flat_state` does: ints before strings, ints numerically, strings
/// by UTF-8 bytes, a shorter prefix first. Empty nested states give nothing.
///
/// - `out_flat`: receives a new list owned by the caller (free with
///   `nnx_flat_free`); written on success only. It holds its own references
///   to the leaves.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND` (a view whose
/// nested state is gone). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_flatten(
    state: *const nnx_state,
    out_flat: *mut *mut nnx_flat,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_flat, "out_flat")?;
        // SAFETY: `state` is a handle argument.
        let pairs = unsafe { state_arg(state, "state") }?.flatten()?;
        new_flat(
            out,
            pairs.into_iter().map(|(p, l)| Entry::new(p, l)).collect(),
        );
        Ok(())
    })
}

/// Creates an empty flat list, to fill with `nnx_flat_push_variable` and
/// `nnx_flat_push_array` and turn into a state with `nnx_state_from_flat`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_new(out_flat: *mut *mut nnx_flat) -> nnx_status {
    boundary(|| {
        new_flat(Out::new(out_flat, "out_flat")?, Vec::new());
        Ok(())
    })
}

fn push(
    flat: *mut nnx_flat,
    path: *const nnx_key,
    path_len: usize,
    leaf: impl FnOnce() -> FfiResult<Leaf>,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and path arguments of the public functions.
        let (flat, path) = unsafe { (arg(flat, "flat")?, path_from_c(path, path_len)?) };
        check_flat_path(&path)?;
        let entry = Entry::new(path, leaf()?);
        flat.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
        Ok(())
    })
}

/// Appends (path, variable). The list takes its own reference to `variable`.
///
/// - `path`: `path_len` >= 1 keys, borrowed for the call; copied.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT`,
/// `NNX_ERR_INVALID_UTF8`, `NNX_ERR_TOO_DEEP` (more than `NNX_MAX_DEPTH`
/// keys). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_push_variable(
    flat: *mut nnx_flat,
    path: *const nnx_key,
    path_len: usize,
    variable: *const nnx_variable,
) -> nnx_status {
    push(flat, path, path_len, || variable_leaf(variable))
}

/// Appends (path, bare array). As `nnx_flat_push_variable`.
#[no_mangle]
pub extern "C" fn nnx_flat_push_array(
    flat: *mut nnx_flat,
    path: *const nnx_key,
    path_len: usize,
    array: *const nnx_array,
) -> nnx_status {
    push(flat, path, path_len, || array_leaf(array))
}

/// Writes the number of entries to `*out_len`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_len(flat: *const nnx_flat, out_len: *mut usize) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_len, "out_len")?;
        // SAFETY: `flat` is a handle argument.
        let flat = unsafe { arg(flat, "flat") }?;
        out.write(flat.entries.read().unwrap_or_else(|p| p.into_inner()).len());
        Ok(())
    })
}

/// Writes the path of entry `index` to `*out_path` and `*out_len`.
///
/// - `out_path`: the key array is borrowed from the list, valid until `flat`
///   is freed; the keys' strings are NUL-terminated and valid for the life of
///   the process.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INDEX_OUT_OF_RANGE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_path(
    flat: *const nnx_flat,
    index: usize,
    out_path: *mut *const nnx_key,
    out_len: *mut usize,
) -> nnx_status {
    boundary(|| {
        let out_path = Out::new(out_path, "out_path")?;
        let out_len = Out::new(out_len, "out_len")?;
        // SAFETY: `flat` is a handle argument.
        unsafe { arg(flat, "flat") }?.with(index, |entry| {
            out_path.write(entry.c_path().as_ptr());
            out_len.write(entry.path.len());
        })
    })
}

/// Writes the kind of entry `index` (`NNX_KIND_VARIABLE` or
/// `NNX_KIND_ARRAY`) to `*out_kind`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INDEX_OUT_OF_RANGE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_kind(
    flat: *const nnx_flat,
    index: usize,
    out_kind: *mut nnx_kind,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_kind, "out_kind")?;
        // SAFETY: `flat` is a handle argument.
        unsafe { arg(flat, "flat") }?.with(index, |entry| out.write(kind_to_c(entry.leaf.kind())))
    })
}

/// Writes the variable of entry `index` to `*out_variable`.
///
/// - `out_variable`: borrowed from the list, valid until `flat` is freed
///   (retain it to keep it longer); do not release it.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INDEX_OUT_OF_RANGE`,
/// `NNX_ERR_WRONG_KIND` (the entry is a bare array). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_variable(
    flat: *const nnx_flat,
    index: usize,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_variable, "out_variable")?;
        let mut found = None;
        // SAFETY: `flat` is a handle argument.
        unsafe { arg(flat, "flat") }?.with(index, |entry| {
            found = entry
                .leaf
                .as_variable()
                .map(|x| nnx_variable::handle(x, false));
        })?;
        match found {
            Some(handle) => out.write(handle),
            None => fail!(
                NNX_ERR_WRONG_KIND,
                "flat entry {index} is a bare array, not a variable"
            ),
        }
        Ok(())
    })
}

/// Writes the bare array of entry `index` to `*out_array`: borrowed, as in
/// `nnx_flat_variable`. `NNX_ERR_WRONG_KIND` when the entry is a variable.
#[no_mangle]
pub extern "C" fn nnx_flat_array(
    flat: *const nnx_flat,
    index: usize,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_array, "out_array")?;
        let mut found = None;
        // SAFETY: `flat` is a handle argument.
        unsafe { arg(flat, "flat") }?.with(index, |entry| {
            found = entry.leaf.as_array().map(|x| nnx_array::handle(x, false));
        })?;
        match found {
            Some(handle) => out.write(handle),
            None => fail!(
                NNX_ERR_WRONG_KIND,
                "flat entry {index} is a variable, not a bare array"
            ),
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Many entries at once

/// Checks that entries `start .. start + count` exist in a list of `len`.
fn entry_range(len: usize, start: usize, count: usize) -> FfiResult<Range<usize>> {
    match start.checked_add(count) {
        Some(end) if end <= len => Ok(start..end),
        _ => fail!(
            NNX_ERR_INDEX_OUT_OF_RANGE,
            "entries {start}..{start}+{count} are out of range for a flat list of {len} entries"
        ),
    }
}

/// Reads the leaves of entries `start .. start + count` into caller arrays,
/// in one call. Every output is optional: pass NULL for what you do not
/// need; a non-NULL one must have room for `count` elements, and element
/// `i` describes entry `start + i`.
///
/// - `retain`: false: the handles written are borrowed from the list, valid
///   until `flat` is freed (do not release them); true: each non-NULL handle
///   written is a new reference owned by the caller (release each with
///   `nnx_variable_release` / `nnx_array_release`). Only handles that are
///   written are retained.
/// - `out_kinds`: `NNX_KIND_VARIABLE` or `NNX_KIND_ARRAY`.
/// - `out_types`: the variable's type id, `NNX_TYPE_NONE` for a bare array.
/// - `out_variables`: the variable, NULL for a bare array.
/// - `out_arrays`: the bare array, NULL for a variable.
///
/// All outputs are written on success only. The read is atomic: entries
/// pushed meanwhile by another thread are either not in the range or fully
/// there.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (flat), `NNX_ERR_INDEX_OUT_OF_RANGE`
/// (`start + count` past the end), `NNX_ERR_INVALID_ARGUMENT` (a `count`
/// too large for an array). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_leaves(
    flat: *const nnx_flat,
    start: usize,
    count: usize,
    retain: bool,
    out_kinds: *mut nnx_kind,
    out_types: *mut nnx_type_id,
    out_variables: *mut *mut nnx_variable,
    out_arrays: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        let kinds = OutArray::optional(out_kinds, count, "out_kinds")?;
        let types = OutArray::optional(out_types, count, "out_types")?;
        let variables = OutArray::optional(out_variables, count, "out_variables")?;
        let arrays = OutArray::optional(out_arrays, count, "out_arrays")?;
        // SAFETY: `flat` is a handle argument.
        let flat = unsafe { arg(flat, "flat") }?;
        let entries = flat.entries.read().unwrap_or_else(|p| p.into_inner());
        let range = entry_range(entries.len(), start, count)?;
        for (i, entry) in entries[range].iter().enumerate() {
            let type_id = match &entry.leaf {
                Leaf::Variable(v) => v.type_id().raw(),
                Leaf::Array(_) => NNX_TYPE_NONE,
            };
            if let Some(kinds) = &kinds {
                kinds.write(i, kind_to_c(entry.leaf.kind()));
            }
            if let Some(types) = &types {
                types.write(i, type_id);
            }
            if let Some(variables) = &variables {
                let handle = entry
                    .leaf
                    .as_variable()
                    .map(|v| nnx_variable::handle(v, retain));
                variables.write(i, handle.unwrap_or(std::ptr::null_mut()));
            }
            if let Some(arrays) = &arrays {
                let handle = entry.leaf.as_array().map(|a| nnx_array::handle(a, retain));
                arrays.write(i, handle.unwrap_or(std::ptr::null_mut()));
            }
        }
        Ok(())
    })
}

/// Reads the paths of entries `start .. start + count` in one call: all
/// their keys, one path after the other, into `out_keys`, and where each
/// path starts into `out_key_offsets`.
///
/// - `out_key_offsets`: required, room for `count + 1` elements. Receives
///   `0` and then the running total of path lengths, so the path of entry
///   `start + i` is `out_keys[out_key_offsets[i] .. out_key_offsets[i + 1]]`
///   and `out_key_offsets[count]` is the number of keys.
/// - `out_keys`: room for `keys_capacity` keys; or NULL to write the offsets
///   only (`keys_capacity` is then ignored), which tells how much room the
///   keys need. The keys written are self-contained: a string key's `str`
///   is the interned, NUL-terminated text, valid for the life of the
///   process (also after `flat` is freed).
///
/// All outputs are written on success only; the read is atomic, as in
/// `nnx_flat_leaves`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (flat, out_key_offsets),
/// `NNX_ERR_INDEX_OUT_OF_RANGE` (`start + count` past the end),
/// `NNX_ERR_INVALID_ARGUMENT` (`keys_capacity` smaller than the number of
/// keys; the message names both). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_paths(
    flat: *const nnx_flat,
    start: usize,
    count: usize,
    out_key_offsets: *mut usize,
    out_keys: *mut nnx_key,
    keys_capacity: usize,
) -> nnx_status {
    boundary(|| {
        let Some(offsets_len) = count.checked_add(1) else {
            fail!(NNX_ERR_INVALID_ARGUMENT, "count {count} is too large");
        };
        let offsets = OutArray::required(out_key_offsets, offsets_len, "out_key_offsets")?;
        let keys = OutArray::optional(out_keys, keys_capacity, "out_keys")?;
        // SAFETY: `flat` is a handle argument.
        let flat = unsafe { arg(flat, "flat") }?;
        let entries = flat.entries.read().unwrap_or_else(|p| p.into_inner());
        let range = entry_range(entries.len(), start, count)?;
        let entries = &entries[range];
        let needed: usize = entries.iter().map(|e| e.path.len()).sum();
        if keys.is_some() && needed > keys_capacity {
            fail!(
                NNX_ERR_INVALID_ARGUMENT,
                "keys_capacity {keys_capacity} is less than the {needed} keys of the paths of \
                 entries {start}..{}",
                start + count
            );
        }
        let mut at = 0;
        offsets.write(0, 0);
        for (i, entry) in entries.iter().enumerate() {
            if let Some(keys) = &keys {
                for (j, key) in entry.path.iter().enumerate() {
                    keys.write(at + j, key_to_c(key));
                }
            }
            at += entry.path.len();
            offsets.write(i + 1, at);
        }
        Ok(())
    })
}

/// Appends `count` entries in one call, all or none. Entry `i` has the path
/// `keys[key_offsets[i] .. key_offsets[i + 1]]` and, as its leaf, either
/// `variables[i]` or `arrays[i]`: exactly one of the two is non-NULL. The
/// list takes its own reference to every leaf.
///
/// - `key_offsets`: `count + 1` non-decreasing offsets into `keys`, borrowed
///   for the call; every path must be non-empty
///   (`key_offsets[i] < key_offsets[i + 1]`). NULL allowed when `count` is 0.
/// - `keys`: at least `key_offsets[count]` keys, borrowed for the call;
///   copied. NULL allowed when there are none.
/// - `variables`, `arrays`: `count` handles each, borrowed for the call; NULL
///   for the whole array when no entry has a leaf of that kind.
///
/// On failure nothing is appended, and the message names the first bad
/// entry by its index.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (flat, key_offsets, keys, a NULL string
/// key with a length, an entry with neither a variable nor an array),
/// `NNX_ERR_INVALID_ARGUMENT` (decreasing offsets, an empty path, an entry
/// with both a variable and an array, a bad key kind),
/// `NNX_ERR_INVALID_UTF8`, `NNX_ERR_TOO_DEEP` (a path of more than
/// `NNX_MAX_DEPTH` keys). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_push_many(
    flat: *mut nnx_flat,
    count: usize,
    key_offsets: *const usize,
    keys: *const nnx_key,
    variables: *const *const nnx_variable,
    arrays: *const *const nnx_array,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and array arguments, each of the length the
        // header states.
        let (flat, paths, variables, arrays) = unsafe {
            (
                arg(flat, "flat")?,
                paths_from_offsets(count, key_offsets, keys),
                optional_slice(variables, count, "variables"),
                optional_slice(arrays, count, "arrays"),
            )
        };
        let (paths, variables, arrays) = (paths?, variables?, arrays?);
        let mut new_entries = Vec::with_capacity(count);
        for (i, path) in paths.into_iter().enumerate() {
            let at = |e: FfiError| {
                FfiError::new(e.status, format!("entry {i} of {count}: {}", e.message))
            };
            check_flat_path(&path).map_err(|e| at(e.into()))?;
            // The list keeps the counts taken.
            let leaf = leaf_of(variables, arrays, i).map_err(at)?;
            new_entries.push(Entry::new(path, leaf));
        }
        flat.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(new_entries);
        Ok(())
    })
}

/// Entry `i`'s leaf in a bulk call's two leaf arrays, with a new
/// reference: exactly one of `variables[i]` and `arrays[i]` is non-NULL.
fn leaf_of(
    variables: Option<&[*const nnx_variable]>,
    arrays: Option<&[*const nnx_array]>,
    i: usize,
) -> FfiResult<Leaf> {
    let variable = variables.map_or(std::ptr::null(), |v| v[i]);
    let array = arrays.map_or(std::ptr::null(), |a| a[i]);
    match (variable.is_null(), array.is_null()) {
        (false, true) => variable_leaf(variable),
        (true, false) => array_leaf(array),
        (true, true) => Err(FfiError::new(
            nnx_status::NNX_ERR_NULL_ARGUMENT,
            "its leaf is NULL both in `variables` and in `arrays`",
        )),
        (false, false) => Err(FfiError::new(
            nnx_status::NNX_ERR_INVALID_ARGUMENT,
            "it has both a variable and an array; give one leaf per entry",
        )),
    }
}

/// Borrows an optional array of `len` handles: NULL gives `None`.
///
/// # Safety
/// A non-null `ptr` must point to `len` elements valid for the call.
unsafe fn optional_slice<'a, T>(
    ptr: *const T,
    len: usize,
    name: &str,
) -> FfiResult<Option<&'a [T]>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: by this function's contract.
    unsafe { slice(ptr, len, name) }.map(Some)
}

/// NNX's `from_flat_state`: a new state from the list's (path, leaf) pairs,
/// in list order. On a repeated path the later leaf wins at the first one's
/// position; a path that runs through an earlier leaf replaces that leaf
/// (NNX fails there).
///
/// - `flat`: borrowed for the call.
/// - `out_state`: receives a new state owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. (Paths are checked as they are
/// pushed.) Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_from_flat(
    flat: *const nnx_flat,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: `flat` is a handle argument.
        let flat = unsafe { arg(flat, "flat") }?;
        let entries = flat.entries.read().unwrap_or_else(|p| p.into_inner());
        let state = State::from_flat_entries(&entries)?;
        drop(entries);
        out.write(box_into_raw(nnx_state::new(state)));
        Ok(())
    })
}

/// An entry of a list with another leaf.
struct NewLeaf<'a> {
    path: &'a [Key],
    leaf: Leaf,
}

impl FlatEntry for NewLeaf<'_> {
    fn path(&self) -> &[Key] {
        self.path
    }
    fn leaf(&self) -> &Leaf {
        &self.leaf
    }
}

/// A new state with the paths of `flat`, in its order, and new leaves:
/// entry `i` takes `variables[i]` or `arrays[i]` (exactly one non-NULL), as
/// `nnx_state_from_flat` would after pushing those pairs, without the
/// caller encoding the paths again (a `map_state` over a flat state).
///
/// - `flat`: borrowed for the call.
/// - `count`: must be the number of entries of `flat`.
/// - `variables`, `arrays`: `count` handles each, borrowed for the call; the
///   state takes its own references. NULL for the whole array when no
///   entry has a leaf of that kind.
/// - `out_state`: receives a new state owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (flat, out_state, an entry with neither
/// leaf), `NNX_ERR_INVALID_ARGUMENT` (a `count` that is not the list's
/// length, an entry with both leaves). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_from_flat_leaves(
    flat: *const nnx_flat,
    count: usize,
    variables: *const *const nnx_variable,
    arrays: *const *const nnx_array,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: handle and array arguments, each of the length the
        // header states.
        let (flat, variables, arrays) = unsafe {
            (
                arg(flat, "flat")?,
                optional_slice(variables, count, "variables"),
                optional_slice(arrays, count, "arrays"),
            )
        };
        let (variables, arrays) = (variables?, arrays?);
        let entries = flat.entries.read().unwrap_or_else(|p| p.into_inner());
        if entries.len() != count {
            fail!(
                NNX_ERR_INVALID_ARGUMENT,
                "count {count} is not the flat list's length, {}",
                entries.len()
            );
        }
        let pairs = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let leaf = leaf_of(variables, arrays, i).map_err(|e| {
                    FfiError::new(e.status, format!("entry {i} of {count}: {}", e.message))
                })?;
                Ok(NewLeaf {
                    path: &entry.path,
                    leaf,
                })
            })
            .collect::<FfiResult<Vec<NewLeaf>>>()?;
        let state = State::from_flat_entries(&pairs)?;
        drop(pairs);
        drop(entries);
        out.write(box_into_raw(nnx_state::new(state)));
        Ok(())
    })
}

/// Frees a flat list and its references to the leaves. NULL is a no-op.
/// Freeing twice is undefined behaviour the library cannot detect.
#[no_mangle]
pub extern "C" fn nnx_flat_free(flat: *mut nnx_flat) {
    boundary(|| {
        // SAFETY: the caller gives up a list it owns.
        unsafe { box_free(flat) };
        Ok(())
    });
}

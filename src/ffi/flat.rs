//! Flat lists of (path, leaf): owned boxes (`nnx_flat_new` / `nnx_flat_free`).

use std::sync::RwLock;

use super::array::nnx_array;
use super::error::nnx_status;
use super::key::{key_to_c, nnx_key, path_from_c};
use super::state::{kind_to_c, nnx_kind, nnx_state, state_arg};
use super::variable::nnx_variable;
use super::{arg, boundary, box_free, box_into_raw, fail, ArcHandle, FfiResult, Out};
use crate::key::Key;
use crate::state::State;
use crate::tree::{Kind, Leaf};

/// One entry. What it lends out (the key array, key strings, leaves) lives
/// on the heap, so it stays put when the list grows and entries move.
struct Entry {
    path: Vec<Key>,
    /// C views of `path` (their strings are interned, so never dangle).
    c_path: Vec<nnx_key>,
    leaf: Leaf,
}

// SAFETY: `c_path` only points to interned key texts, which live for the
// life of the process and are never written; the rest is `Send + Sync`.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

impl Entry {
    fn new(path: Vec<Key>, leaf: Leaf) -> Entry {
        let c_path = path.iter().map(key_to_c).collect();
        Entry { path, c_path, leaf }
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
        if path.is_empty() {
            fail!(
                NNX_ERR_INVALID_ARGUMENT,
                "a flat entry needs a non-empty path"
            );
        }
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
/// `NNX_ERR_INVALID_UTF8`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_flat_push_variable(
    flat: *mut nnx_flat,
    path: *const nnx_key,
    path_len: usize,
    variable: *const nnx_variable,
) -> nnx_status {
    push(flat, path, path_len, || {
        // SAFETY: `variable` is a handle argument; the list keeps the count.
        Ok(Leaf::Variable(unsafe {
            nnx_variable::to_arc(variable, "variable")
        }?))
    })
}

/// Appends (path, bare array). As `nnx_flat_push_variable`.
#[no_mangle]
pub extern "C" fn nnx_flat_push_array(
    flat: *mut nnx_flat,
    path: *const nnx_key,
    path_len: usize,
    array: *const nnx_array,
) -> nnx_status {
    push(flat, path, path_len, || {
        // SAFETY: `array` is a handle argument; the list keeps the count.
        Ok(Leaf::Array(unsafe { nnx_array::to_arc(array, "array") }?))
    })
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
            out_path.write(entry.c_path.as_ptr());
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
        unsafe { arg(flat, "flat") }?.with(index, |entry| {
            out.write(kind_to_c(match entry.leaf {
                Leaf::Variable(_) => Kind::Variable,
                Leaf::Array(_) => Kind::Array,
            }))
        })
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
            found = entry.leaf.as_variable().map(std::sync::Arc::as_ptr);
        })?;
        match found {
            Some(ptr) => out.write(ptr.cast_mut().cast()),
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
            found = entry.leaf.as_array().map(std::sync::Arc::as_ptr);
        })?;
        match found {
            Some(ptr) => out.write(ptr.cast_mut().cast()),
            None => fail!(
                NNX_ERR_WRONG_KIND,
                "flat entry {index} is a variable, not a bare array"
            ),
        }
        Ok(())
    })
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
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_from_flat(
    flat: *const nnx_flat,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: `flat` is a handle argument.
        let flat = unsafe { arg(flat, "flat") }?;
        let pairs: Vec<(Vec<Key>, Leaf)> = flat
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| (e.path.clone(), e.leaf.clone()))
            .collect();
        out.write(box_into_raw(nnx_state::new(State::from_flat(pairs)?)));
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

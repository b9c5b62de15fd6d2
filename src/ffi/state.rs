//! States: owned boxes (`nnx_state_new` / `nnx_state_free`).

use std::ffi::c_char;

use super::array::nnx_array;
use super::error::nnx_status;
use super::filter::{filters_from_c, nnx_filter};
use super::key::{key_to_c, nnx_key, path_from_c, path_from_c_str};
use super::kind::kind_to_c;
// Where Rust users of the C layer have always found them.
use super::io::FileMetadata;
pub use super::kind::{nnx_kind, NNX_KIND_ARRAY, NNX_KIND_STATE, NNX_KIND_VARIABLE};
use super::variable::nnx_variable;
use super::{
    arg, boundary, box_free, box_into_raw, fail, owned_c_string, slice, ArcHandle, FfiResult, Out,
};
use crate::filter::Filter;
use crate::key::Key;
use crate::state::{Entry, State};
use crate::tree::{Child, Kind, Leaf};

/// A nested, ordered mapping from keys to variables, bare arrays and nested
/// states: NNX's `State`. Owned by the caller (free with `nnx_state_free`).
///
/// A handle from `nnx_state_get_state` is a live view of a nested state: it
/// reads and writes its parent's tree. Every handle may be used from several
/// threads at once; each call is atomic to the others.
///
/// A state loaded from a safetensors file also keeps the file's own
/// `__metadata__` entries (`nnx_safetensors_metadata_get` and its
/// siblings), which `nnx_safetensors_save` writes back.
pub struct nnx_state {
    state: State,
    /// The safetensors `__metadata__` this handle carries to the next save
    /// (see `super::io`); empty for states not loaded from a file.
    file_metadata: FileMetadata,
}

impl nnx_state {
    pub(crate) fn new(state: State) -> nnx_state {
        nnx_state::with_file_metadata(state, FileMetadata::default())
    }

    pub(crate) fn with_file_metadata(state: State, file_metadata: FileMetadata) -> nnx_state {
        nnx_state {
            state,
            file_metadata,
        }
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    pub(crate) fn file_metadata(&self) -> &FileMetadata {
        &self.file_metadata
    }
}

/// The deepest nesting the library takes: paths of at most this many keys
/// (so states at most this deep), filters and metadata values nested at
/// most this many levels. Real models nest up to about 20 (an optimizer's
/// state over a model); at this limit every operation needs under 64 KiB
/// of stack in a release build (a quarter of a 256 KiB worker thread),
/// under 160 KiB unoptimized. Whatever would pass it fails with
/// `NNX_ERR_TOO_DEEP` and writes nothing.
pub const NNX_MAX_DEPTH: usize = 64;
const _: () = assert!(NNX_MAX_DEPTH == crate::limits::MAX_DEPTH);

/// A path argument in either of its two forms.
#[derive(Clone, Copy)]
enum PathArg {
    /// `len` keys.
    Keys(*const nnx_key, usize),
    /// `"layers/0/kernel"`.
    Text(*const c_char),
}

impl PathArg {
    /// # Safety
    /// The pointers must be valid as the public functions' contracts say.
    unsafe fn resolve(self) -> FfiResult<Vec<Key>> {
        // SAFETY: by the contract above.
        unsafe {
            match self {
                PathArg::Keys(keys, len) => path_from_c(keys, len),
                PathArg::Text(text) => path_from_c_str(text),
            }
        }
    }
}

/// Borrows a state handle argument.
///
/// # Safety
/// A non-null `state` must be a live handle.
pub(crate) unsafe fn state_arg<'a>(state: *const nnx_state, name: &str) -> FfiResult<&'a State> {
    // SAFETY: by the contract above.
    Ok(unsafe { arg(state, name) }?.state())
}

fn new_state(out: Out<*mut nnx_state>, state: State) {
    out.write(box_into_raw(nnx_state::new(state)));
}

/// Creates an empty state.
///
/// - `out_state`: receives a new state owned by the caller (free with
///   `nnx_state_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_new(out_state: *mut *mut nnx_state) -> nnx_status {
    boundary(|| {
        new_state(Out::new(out_state, "out_state")?, State::new());
        Ok(())
    })
}

/// Frees a state handle. NULL is a no-op. Freeing a view leaves its parent
/// as it is; freeing a parent leaves its views working. Variables and arrays
/// still referenced elsewhere live on. Freeing twice is undefined behaviour
/// the library cannot detect.
#[no_mangle]
pub extern "C" fn nnx_state_free(state: *mut nnx_state) {
    boundary(|| {
        // SAFETY: the caller gives up a handle it owns.
        unsafe { box_free(state) };
        Ok(())
    });
}

/// Copies a state: a new, independent tree with the same structure holding
/// the same variables and arrays (no tensor bytes are copied; the copy takes
/// O(1) time, nodes are copied on write). Of a view, copies the nested state.
/// The copy carries the same safetensors file metadata
/// (`nnx_safetensors_metadata_get`).
///
/// - `out_state`: receives a new state owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND` (a view whose
/// nested state is gone). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_clone(
    state: *const nnx_state,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    copy_handle(state, out_state, State::copy)
}

/// A new handle holding `copy` of the state behind `state`, carrying the
/// same file metadata.
fn copy_handle(
    state: *const nnx_state,
    out_state: *mut *mut nnx_state,
    copy: fn(&State) -> crate::Result<State>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: `state` is a handle argument.
        let handle = unsafe { arg(state, "state") }?;
        let copy = copy(handle.state())?;
        out.write(box_into_raw(nnx_state::with_file_metadata(
            copy,
            handle.file_metadata().clone(),
        )));
        Ok(())
    })
}

/// Copies a state deeply: new variables (same types and metadata) holding
/// copies of every array and of every typed key's data. A variable held at
/// several paths is copied once and stays shared within the copy. An opaque
/// value is not copied (the library cannot): the new variable holds the
/// same object, which is released once when its last holder, original or
/// copy, goes. This is what `nnx.clone` does with the jax arrays of a
/// model (immutable, so shared), and setting a value of the copy still
/// leaves the original alone. The copy carries the same safetensors file
/// metadata (`nnx_safetensors_metadata_get`).
///
/// - `out_state`: receives a new state owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND`,
/// `NNX_ERR_INVALID_ARGUMENT` (an array or key data off the CPU).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_deep_copy(
    state: *const nnx_state,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    copy_handle(state, out_state, State::deep_copy)
}

fn set_child(
    state: *mut nnx_state,
    path: PathArg,
    child: impl FnOnce() -> FfiResult<Child>,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and path arguments of the public setters.
        let (state, path) = unsafe { (state_arg(state, "state")?, path.resolve()?) };
        state.set(&path, child()?)?;
        Ok(())
    })
}

fn variable_child(variable: *const nnx_variable) -> FfiResult<Child> {
    // SAFETY: `variable` is a handle argument; the state keeps the new count.
    let variable = unsafe { nnx_variable::to_arc(variable, "variable") }?;
    Ok(Child::Leaf(Leaf::Variable(variable)))
}

fn array_child(array: *const nnx_array) -> FfiResult<Child> {
    // SAFETY: `array` is a handle argument; the state keeps the new count.
    let array = unsafe { nnx_array::to_arc(array, "array") }?;
    Ok(Child::Leaf(Leaf::Array(array)))
}

fn state_child(value: *const nnx_state) -> FfiResult<Child> {
    // SAFETY: `value` is a handle argument.
    let value = unsafe { state_arg(value, "value") }?;
    Ok(Child::Node(value.node()?))
}

/// Puts `variable` at `path`, creating missing nested states on the way and
/// replacing what was there.
///
/// - `path`: `path_len` keys, borrowed for the call; at least one.
/// - `variable`: the state takes its own reference; the caller keeps theirs.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT` (empty path,
/// bad key kind), `NNX_ERR_INVALID_UTF8`, `NNX_ERR_PATH_THROUGH_LEAF`,
/// `NNX_ERR_KEY_NOT_FOUND` (a view whose nested state is gone),
/// `NNX_ERR_TOO_DEEP` (the leaf would be more than `NNX_MAX_DEPTH` keys
/// below the root, counting a view's own path; for `nnx_state_set_state`,
/// the deepest leaf of `value`). On failure the state is unchanged.
/// Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_state_set_variable(
    state: *mut nnx_state,
    path: *const nnx_key,
    path_len: usize,
    variable: *const nnx_variable,
) -> nnx_status {
    set_child(state, PathArg::Keys(path, path_len), || {
        variable_child(variable)
    })
}

/// `nnx_state_set_variable` with a `/`-separated path such as
/// "layers/0/kernel" (a component that is a decimal integer is an int key).
#[no_mangle]
pub extern "C" fn nnx_state_set_variable_str(
    state: *mut nnx_state,
    path: *const c_char,
    variable: *const nnx_variable,
) -> nnx_status {
    set_child(state, PathArg::Text(path), || variable_child(variable))
}

/// Puts a bare array at `path`. As `nnx_state_set_variable`; the state takes
/// its own reference to `array`.
#[no_mangle]
pub extern "C" fn nnx_state_set_array(
    state: *mut nnx_state,
    path: *const nnx_key,
    path_len: usize,
    array: *const nnx_array,
) -> nnx_status {
    set_child(state, PathArg::Keys(path, path_len), || array_child(array))
}

/// `nnx_state_set_array` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_set_array_str(
    state: *mut nnx_state,
    path: *const c_char,
    array: *const nnx_array,
) -> nnx_status {
    set_child(state, PathArg::Text(path), || array_child(array))
}

/// Puts a copy of `value`'s tree at `path` (its structure is copied, its
/// leaves shared: later changes to `value` are not seen through `state`).
/// As `nnx_state_set_variable` otherwise; `value` is borrowed for the call.
#[no_mangle]
pub extern "C" fn nnx_state_set_state(
    state: *mut nnx_state,
    path: *const nnx_key,
    path_len: usize,
    value: *const nnx_state,
) -> nnx_status {
    set_child(state, PathArg::Keys(path, path_len), || state_child(value))
}

/// `nnx_state_set_state` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_set_state_str(
    state: *mut nnx_state,
    path: *const c_char,
    value: *const nnx_state,
) -> nnx_status {
    set_child(state, PathArg::Text(path), || state_child(value))
}

fn get_entry<T>(
    state: *const nnx_state,
    path: PathArg,
    out: *mut T,
    out_name: &str,
    convert: impl FnOnce(&State, Entry) -> FfiResult<T>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out, out_name)?;
        // SAFETY: handle and path arguments of the public getters.
        let (state, path) = unsafe { (state_arg(state, "state")?, path.resolve()?) };
        let entry = state.get(&path)?;
        out.write(convert(state, entry)?);
        Ok(())
    })
}

fn wrong_kind(path: &[Key], entry: &Entry, wanted: &str) -> FfiResult<()> {
    let found = match entry.kind() {
        Kind::State => "a nested state",
        Kind::Variable => "a variable",
        Kind::Array => "a bare array",
    };
    fail!(
        NNX_ERR_WRONG_KIND,
        "'{}' holds {found}, not {wanted}",
        crate::key::format_path(path)
    )
}

/// Writes what `path` leads to (`NNX_KIND_STATE`, `NNX_KIND_VARIABLE` or
/// `NNX_KIND_ARRAY`) to `*out_kind`. The empty path is the state itself.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND`,
/// `NNX_ERR_PATH_THROUGH_LEAF`, `NNX_ERR_INVALID_ARGUMENT`,
/// `NNX_ERR_INVALID_UTF8`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_get_kind(
    state: *const nnx_state,
    path: *const nnx_key,
    path_len: usize,
    out_kind: *mut nnx_kind,
) -> nnx_status {
    get_entry(
        state,
        PathArg::Keys(path, path_len),
        out_kind,
        "out_kind",
        |_, e| Ok(kind_to_c(e.kind())),
    )
}

/// `nnx_state_get_kind` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_get_kind_str(
    state: *const nnx_state,
    path: *const c_char,
    out_kind: *mut nnx_kind,
) -> nnx_status {
    get_entry(state, PathArg::Text(path), out_kind, "out_kind", |_, e| {
        Ok(kind_to_c(e.kind()))
    })
}

/// Writes to `*out_contains` whether something is at `path`. A path that
/// runs through a leaf gives false.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT`,
/// `NNX_ERR_INVALID_UTF8`, `NNX_ERR_KEY_NOT_FOUND` (a view whose nested state
/// is gone). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_contains(
    state: *const nnx_state,
    path: *const nnx_key,
    path_len: usize,
    out_contains: *mut bool,
) -> nnx_status {
    contains(state, PathArg::Keys(path, path_len), out_contains)
}

/// `nnx_state_contains` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_contains_str(
    state: *const nnx_state,
    path: *const c_char,
    out_contains: *mut bool,
) -> nnx_status {
    contains(state, PathArg::Text(path), out_contains)
}

fn contains(state: *const nnx_state, path: PathArg, out_contains: *mut bool) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_contains, "out_contains")?;
        // SAFETY: handle and path arguments of the public functions.
        let (state, path) = unsafe { (state_arg(state, "state")?, path.resolve()?) };
        out.write(state.contains(&path)?);
        Ok(())
    })
}

fn variable_out(path: &[Key], entry: Entry) -> FfiResult<*mut nnx_variable> {
    match entry {
        Entry::Leaf(Leaf::Variable(v)) => Ok(nnx_variable::into_raw(v)),
        other => wrong_kind(path, &other, "a variable").map(|_| std::ptr::null_mut()),
    }
}

fn array_out(path: &[Key], entry: Entry) -> FfiResult<*mut nnx_array> {
    match entry {
        Entry::Leaf(Leaf::Array(a)) => Ok(nnx_array::into_raw(a)),
        other => wrong_kind(path, &other, "a bare array").map(|_| std::ptr::null_mut()),
    }
}

fn view_out(path: &[Key], entry: Entry) -> FfiResult<*mut nnx_state> {
    match entry {
        Entry::State(view) => Ok(box_into_raw(nnx_state::new(view))),
        other => wrong_kind(path, &other, "a nested state").map(|_| std::ptr::null_mut()),
    }
}

/// Writes the variable at `path` to `*out_variable`: a new reference owned
/// by the caller (release with `nnx_variable_release`).
///
/// Errors: as `nnx_state_get_kind`, and `NNX_ERR_WRONG_KIND` when something
/// else is there. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_get_variable(
    state: *const nnx_state,
    path: *const nnx_key,
    path_len: usize,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    get_path_entry(
        state,
        PathArg::Keys(path, path_len),
        out_variable,
        "out_variable",
        variable_out,
    )
}

/// `nnx_state_get_variable` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_get_variable_str(
    state: *const nnx_state,
    path: *const c_char,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    get_path_entry(
        state,
        PathArg::Text(path),
        out_variable,
        "out_variable",
        variable_out,
    )
}

/// Writes the bare array at `path` to `*out_array`: a new reference owned by
/// the caller (release with `nnx_array_release`). Errors as
/// `nnx_state_get_variable`.
#[no_mangle]
pub extern "C" fn nnx_state_get_array(
    state: *const nnx_state,
    path: *const nnx_key,
    path_len: usize,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    get_path_entry(
        state,
        PathArg::Keys(path, path_len),
        out_array,
        "out_array",
        array_out,
    )
}

/// `nnx_state_get_array` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_get_array_str(
    state: *const nnx_state,
    path: *const c_char,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    get_path_entry(
        state,
        PathArg::Text(path),
        out_array,
        "out_array",
        array_out,
    )
}

/// Writes a live view of the nested state at `path` to `*out_state`: a new
/// handle owned by the caller (free with `nnx_state_free`) that reads and
/// writes this state's tree at that path. If the parent's entry at `path` is
/// later replaced by another nested state, the view follows the path; while
/// nothing is there, calls on the view fail with `NNX_ERR_KEY_NOT_FOUND`, and
/// while a leaf is there, with `NNX_ERR_WRONG_KIND`; once a nested state is
/// put back at the path, the view works again. The empty path gives a view
/// of the whole state. Errors as `nnx_state_get_variable`.
#[no_mangle]
pub extern "C" fn nnx_state_get_state(
    state: *const nnx_state,
    path: *const nnx_key,
    path_len: usize,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    get_path_entry(
        state,
        PathArg::Keys(path, path_len),
        out_state,
        "out_state",
        view_out,
    )
}

/// `nnx_state_get_state` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_get_state_str(
    state: *const nnx_state,
    path: *const c_char,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    get_path_entry(state, PathArg::Text(path), out_state, "out_state", view_out)
}

fn get_path_entry<T>(
    state: *const nnx_state,
    path: PathArg,
    out: *mut T,
    out_name: &str,
    convert: fn(&[Key], Entry) -> FfiResult<T>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out, out_name)?;
        // SAFETY: handle and path arguments of the public getters.
        let (state, path) = unsafe { (state_arg(state, "state")?, path.resolve()?) };
        let entry = state.get(&path)?;
        out.write(convert(&path, entry)?);
        Ok(())
    })
}

/// Removes what is at `path` (a leaf or a whole nested state). The state
/// gives back its references; leaves held elsewhere live on.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT` (empty path),
/// `NNX_ERR_INVALID_UTF8`, `NNX_ERR_KEY_NOT_FOUND`,
/// `NNX_ERR_PATH_THROUGH_LEAF`. On failure the state is unchanged.
/// Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_state_remove(
    state: *mut nnx_state,
    path: *const nnx_key,
    path_len: usize,
) -> nnx_status {
    remove(state, PathArg::Keys(path, path_len))
}

/// `nnx_state_remove` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_remove_str(state: *mut nnx_state, path: *const c_char) -> nnx_status {
    remove(state, PathArg::Text(path))
}

fn remove(state: *mut nnx_state, path: PathArg) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and path arguments of the public functions.
        let (state, path) = unsafe { (state_arg(state, "state")?, path.resolve()?) };
        state.remove(&path)?;
        Ok(())
    })
}

/// Writes the number of keys at the top level of the state to `*out_len`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND` (a view whose
/// nested state is gone). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_len(state: *const nnx_state, out_len: *mut usize) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_len, "out_len")?;
        // SAFETY: `state` is a handle argument.
        out.write(unsafe { state_arg(state, "state") }?.len()?);
        Ok(())
    })
}

/// Writes the top-level key at `index` (in insertion order) to `*out_key`.
/// A string key's `str` is NUL-terminated and owned by the library, valid for
/// the life of the process (key texts are interned): never free it.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INDEX_OUT_OF_RANGE`,
/// `NNX_ERR_KEY_NOT_FOUND` (a view whose nested state is gone). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_key_at(
    state: *const nnx_state,
    index: usize,
    out_key: *mut nnx_key,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_key, "out_key")?;
        // SAFETY: `state` is a handle argument.
        let key = unsafe { state_arg(state, "state") }?.key_at(index)?;
        out.write(key_to_c(&key));
        Ok(())
    })
}

/// Writes the number of leaves (variables and bare arrays) at any depth to
/// `*out_count`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_num_leaves(
    state: *const nnx_state,
    out_count: *mut usize,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_count, "out_count")?;
        // SAFETY: `state` is a handle argument.
        out.write(unsafe { state_arg(state, "state") }?.num_leaves()?);
        Ok(())
    })
}

/// The shared body of filter and split.
fn partition(
    state: *const nnx_state,
    filters: *const *mut nnx_filter,
    count: usize,
    out_states: *mut *mut nnx_state,
    split: bool,
) -> nnx_status {
    boundary(|| {
        if out_states.is_null() {
            fail!(NNX_ERR_NULL_ARGUMENT, "argument `out_states` is NULL");
        }
        // SAFETY: handle arguments as documented.
        let (state, filters) =
            unsafe { (state_arg(state, "state")?, filters_from_c(filters, count)?) };
        let filters: Vec<Filter> = filters.into_iter().cloned().collect();
        let parts = if split {
            state.split(&filters)?
        } else {
            state.filter(&filters)?
        };
        for (i, part) in parts.into_iter().enumerate() {
            // SAFETY: the caller's array has room for `count` handles; `i`
            // is below `count`.
            Out::new(unsafe { out_states.add(i) }, "out_states")?
                .write(box_into_raw(nnx_state::new(part)));
        }
        Ok(())
    })
}

/// NNX's `filter_state`: sorts the leaves into `count` new states, each leaf
/// into the first filter that matches it, or nowhere.
///
/// - `filters`: `count` >= 1 filters, borrowed for the call, none NULL. An
///   Everything filter may only be followed by Everything filters.
/// - `out_states`: the caller's array of `count` slots; on success each
///   receives a new state owned by the caller (free each with
///   `nnx_state_free`); on failure none is written.
///
/// Outputs hold the same variables and arrays as `state`, with keys sorted at
/// every level; empty nested states are left out. Nested states whose leaves
/// all go to one output are shared with it, not rebuilt. The same filters
/// (types and paths only) on an unchanged `state` give the same outputs again
/// without recomputing them while each previous output is alive and
/// unchanged: hold the outputs until the next call to make a repeat free.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT` (no filters),
/// `NNX_ERR_FILTER_ORDER`, `NNX_ERR_UNKNOWN_TYPE`, `NNX_ERR_CALLBACK`,
/// `NNX_ERR_KEY_NOT_FOUND` (a view whose nested state is gone). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_filter(
    state: *const nnx_state,
    filters: *const *mut nnx_filter,
    count: usize,
    out_states: *mut *mut nnx_state,
) -> nnx_status {
    partition(state, filters, count, out_states, false)
}

/// NNX's `split_state`: as `nnx_state_filter`, but every leaf must match
/// some filter; otherwise it fails with `NNX_ERR_NON_EXHAUSTIVE` (the
/// message names the first unmatched path) and writes nothing.
#[no_mangle]
pub extern "C" fn nnx_state_split(
    state: *const nnx_state,
    filters: *const *mut nnx_filter,
    count: usize,
    out_states: *mut *mut nnx_state,
) -> nnx_status {
    partition(state, filters, count, out_states, true)
}

/// NNX's `merge_state`: a new state with the leaves of all `count` states;
/// at the same path the later state wins; keys keep the order of their first
/// appearance. Where a leaf of one state meets a subtree of a later one, the
/// later one replaces it (NNX fails there). One state merges to a copy of
/// itself. Merging the same unchanged states again gives the previous
/// result without recomputing it while that result is alive and unchanged.
///
/// - `states`: `count` >= 1 handles, borrowed for the call, none NULL.
/// - `out_state`: receives a new state owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT` (no states),
/// `NNX_ERR_KEY_NOT_FOUND`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_merge(
    states: *const *mut nnx_state,
    count: usize,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: `states` holds `count` handles.
        let pointers = unsafe { slice(states, count, "states") }?;
        let states = pointers
            .iter()
            .enumerate()
            // SAFETY: each element is NULL or a live handle.
            .map(|(i, s)| unsafe { state_arg(*s, &format!("states[{i}]")) })
            .collect::<FfiResult<Vec<&State>>>()?;
        new_state(out, State::merge(&states)?);
        Ok(())
    })
}

/// NNX's `diff`: a new state with the leaves of `state` whose path is not a
/// leaf path of `other`. If `other` has no keys at all, a copy of `state`.
///
/// - `state`, `other`: borrowed for the call.
/// - `out_state`: receives a new state owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_diff(
    state: *const nnx_state,
    other: *const nnx_state,
    out_state: *mut *mut nnx_state,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_state, "out_state")?;
        // SAFETY: handle arguments.
        let (state, other) = unsafe { (state_arg(state, "state")?, state_arg(other, "other")?) };
        new_state(out, state.diff(other)?);
        Ok(())
    })
}

/// In place: the leaves of `source` overwrite those of `state` at their
/// paths; missing nested states are created, and a leaf of `state` in the
/// way of a nested state of `source` is replaced. Readers on other threads
/// see all of it or none. `source` may be `state` or a view of it.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND`,
/// `NNX_ERR_TOO_DEEP` (a leaf of `source` would land more than
/// `NNX_MAX_DEPTH` keys below the root of `state`; nothing is written).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_update(state: *mut nnx_state, source: *const nnx_state) -> nnx_status {
    boundary(|| {
        // SAFETY: handle arguments.
        let (state, source) = unsafe { (state_arg(state, "state")?, state_arg(source, "source")?) };
        state.update(source)?;
        Ok(())
    })
}

/// Writes an NNX-like listing of the tree to `*out_text`: a new
/// NUL-terminated string owned by the caller (free with `nnx_string_free`).
/// Arrays show as `float32[2,3] [values]`, typed keys as
/// `key<fry>[] overlaying uint32[2] [0, 42]` (jax's `key<fry>` dtype, the key
/// array's shape, then the key data), opaque values as `<opaque TYPE_NAME>`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_KEY_NOT_FOUND`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_to_string(
    state: *const nnx_state,
    out_text: *mut *mut c_char,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_text, "out_text")?;
        // SAFETY: `state` is a handle argument.
        let text = unsafe { state_arg(state, "state") }?.to_string_tree()?;
        out.write(owned_c_string(&text)?);
        Ok(())
    })
}

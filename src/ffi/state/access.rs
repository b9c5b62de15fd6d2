//! Reading and writing a state at a path, and its size.

use std::ffi::c_char;

use super::*;

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
    variable_leaf(variable).map(Child::Leaf)
}

fn array_child(array: *const nnx_array) -> FfiResult<Child> {
    array_leaf(array).map(Child::Leaf)
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

/// Replaces the values of many leaves in one call, as NNX's
/// `replace_by_pure_dict` with its default replace function does: the
/// variable at path `i` is replaced by a new variable of its type with a
/// copy of its metadata holding `values[i]` (Flax's `Variable.replace`;
/// the old variable, held elsewhere, keeps its value), a bare array by
/// `values[i]`. Then each top-level nested state that holds leaves takes
/// the form NNX gives it there (keys sorted at every level, no empty nested
/// states); the top level keeps its order. A path given twice takes its
/// last value.
///
/// - `key_offsets`, `keys`: the paths, as `nnx_flat_push_many` takes them
///   (path `i` is `keys[key_offsets[i] .. key_offsets[i + 1]]`), borrowed
///   for the call. NULL allowed when `count` is 0.
/// - `values`: `count` arrays, borrowed; the state takes its own
///   references. NULL allowed when `count` is 0.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (the message names a NULL element),
/// `NNX_ERR_INVALID_ARGUMENT` (decreasing offsets, a bad key kind, a
/// `count` too large), `NNX_ERR_INVALID_UTF8`, `NNX_ERR_KEY_NOT_FOUND` and
/// `NNX_ERR_PATH_THROUGH_LEAF` (a path that leads to no leaf),
/// `NNX_ERR_WRONG_KIND` (a path that leads to a nested state). On failure
/// the state is unchanged. Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_state_replace_values(
    state: *mut nnx_state,
    count: usize,
    key_offsets: *const usize,
    keys: *const nnx_key,
    values: *const *const nnx_array,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle and array arguments, each of the length the
        // header states.
        let (state, paths, values) = unsafe {
            (
                state_arg(state, "state")?,
                paths_from_offsets(count, key_offsets, keys)?,
                slice(values, count, "values")?,
            )
        };
        let mut replacements = Vec::with_capacity(count);
        for (i, (path, &value)) in paths.into_iter().zip(values).enumerate() {
            if value.is_null() {
                return Err(FfiError::null(&format!("values[{i}]")));
            }
            // SAFETY: a live handle of the caller's, checked non-null.
            replacements.push((path, unsafe { nnx_array::to_arc(value, "values") }?));
        }
        state.replace_values(&replacements)?;
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
        kind_out,
    )
}

/// `nnx_state_get_kind` with a `/`-separated path.
#[no_mangle]
pub extern "C" fn nnx_state_get_kind_str(
    state: *const nnx_state,
    path: *const c_char,
    out_kind: *mut nnx_kind,
) -> nnx_status {
    get_entry(state, PathArg::Text(path), out_kind, "out_kind", kind_out)
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

fn kind_out(_: &[Key], entry: Entry) -> FfiResult<nnx_kind> {
    Ok(kind_to_c(entry.kind()))
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
    get_entry(
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
    get_entry(
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
    get_entry(
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
    get_entry(
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
    get_entry(
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
    get_entry(state, PathArg::Text(path), out_state, "out_state", view_out)
}

/// The one path lookup of the getters: what is at `path`, converted.
fn get_entry<T>(
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

/// Writes a number that stays the same while the tree of `state` does not
/// change (its own tree, or its parent's for a view): which keys, nested
/// states and leaves it has where. Changes to what a variable holds do not
/// count (see `nnx_variable_change_counter`). A binding that reads the
/// number before it reads the state, and finds it unchanged later, may
/// keep what it read.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_state_version(state: *const nnx_state, out_version: *mut u64) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_version, "out_version")?;
        // SAFETY: `state` is a handle argument.
        out.write(unsafe { state_arg(state, "state") }?.version());
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

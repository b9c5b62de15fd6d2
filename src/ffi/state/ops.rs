//! Operations on whole states: filter, split, merge, diff, update, and
//! the text form.

use super::*;

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
        // SAFETY: `states` holds `count` handles, each NULL or live.
        let handles = unsafe { handles(states, count, "states") }?;
        let states: Vec<&State> = handles.into_iter().map(nnx_state::state).collect();
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

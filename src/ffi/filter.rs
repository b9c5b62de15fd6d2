//! Filters: owned boxes (`_new`-style constructors, `nnx_filter_free`).

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::array::{nnx_array, nnx_release_fn};
use super::error::nnx_status;
use super::key::{key_from_c, key_to_c, nnx_key, nnx_path, path_from_c};
use super::kind::{array_leaf, kind_to_c, nnx_kind, variable_leaf};
use super::types::{nnx_type_id, type_from_c};
use super::variable::nnx_variable;
use super::{arg, boundary, box_free, box_into_raw, c_str, fail, handles, slice, FfiResult, Out};
use crate::filter::Filter;
use crate::key::Key;
use crate::tree::Leaf;

/// A filter: which leaves `nnx_state_filter` and `nnx_state_split` select.
/// Owned by the caller (free with `nnx_filter_free`). Composite filters
/// share their parts (building one costs the number of its direct parts,
/// whatever is below), so parts may be freed right after. Immutable, so
/// thread-safe, except that a callback filter runs its callback on every
/// thread that uses it.
pub struct nnx_filter {
    pub(crate) filter: Filter,
}

/// A caller's predicate: returns 1 when the leaf at `path` matches, 0 when it
/// does not, anything else to fail the operation with `NNX_ERR_CALLBACK`.
///
/// - `user_data`: the pointer given to `nnx_filter_callback`.
/// - `path`, `path_len`: the leaf's path, borrowed for the call only.
/// - `kind`: `NNX_KIND_VARIABLE` (then `variable` is set, `array` is NULL)
///   or `NNX_KIND_ARRAY` (the reverse); both borrowed for the call only
///   (retain to keep).
///
/// It runs on the thread that calls the operation, with no library lock
/// held, so it may call the library.
pub type nnx_filter_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        path: *const nnx_key,
        path_len: usize,
        kind: nnx_kind,
        variable: *const nnx_variable,
        array: *const nnx_array,
    ) -> c_int,
>;

fn new_filter(
    out_filter: *mut *mut nnx_filter,
    make: impl FnOnce() -> FfiResult<Filter>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_filter, "out_filter")?;
        let filter = make()?;
        out.write(box_into_raw(nnx_filter { filter }));
        Ok(())
    })
}

/// Borrows an array of `count` filter handles, none of them NULL.
///
/// # Safety
/// A non-null `filters` must point to `count` pointers, each NULL or a live
/// filter handle.
pub(crate) unsafe fn filters_from_c<'a>(
    filters: *const *mut nnx_filter,
    count: usize,
) -> FfiResult<Vec<&'a Filter>> {
    // SAFETY: by the contract above.
    let handles = unsafe { handles(filters, count, "filters") }?;
    Ok(handles.into_iter().map(|h| &h.filter).collect())
}

/// A filter matching variables of type `type_id` or a descendant of it
/// (NNX's `OfType`, or a variable class as a filter).
///
/// - `out_filter`: receives a new filter owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_of_type(
    type_id: nnx_type_id,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || Ok(Filter::OfType(type_from_c(type_id)?)))
}

/// A filter matching variables whose `"tag"` metadata equals `tag` (NNX's
/// `WithTag`, or a `str` as a filter).
///
/// - `tag`: borrowed, NUL-terminated UTF-8; copied.
/// - `out_filter`: as for `nnx_filter_of_type`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_with_tag(
    tag: *const c_char,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || {
        // SAFETY: a C string argument.
        Ok(Filter::with_tag(unsafe { c_str(tag, "tag") }?))
    })
}

/// A filter matching leaves whose path contains `key` (NNX's
/// `PathContains(key, exact)`): with `exact`, some path element equals `key`
/// (an int never equals a str); without, the decimal or string form of `key`
/// is a substring of that of some element.
///
/// - `key`: borrowed for the call; copied.
/// - `out_filter`: as for `nnx_filter_of_type`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (bad key kind). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_path_contains(
    key: *const nnx_key,
    exact: bool,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || {
        // SAFETY: `key` is a key argument.
        let key = unsafe { key_from_c(arg(key, "key")?) }?;
        Ok(Filter::PathContains { key, exact })
    })
}

/// A filter matching leaves whose path equals one of `count` paths (NNX's
/// `PathIn`).
///
/// - `paths`: borrowed for the call (NULL allowed when `count` is 0); copied.
/// - `out_filter`: as for `nnx_filter_of_type`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_path_in(
    paths: *const nnx_path,
    count: usize,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || {
        // SAFETY: `paths` holds `count` paths, each valid for the call.
        let paths = unsafe { slice(paths, count, "paths") }?;
        let converted = paths
            .iter()
            // SAFETY: each path's keys are valid by the contract above.
            .map(|p| unsafe { path_from_c(p.keys, p.len) })
            .collect::<FfiResult<Vec<Vec<Key>>>>()?;
        Ok(Filter::path_in(converted))
    })
}

/// A filter matching leaves that any of `count` filters matches (NNX's
/// `Any`, or a list or tuple as a filter); with no filters it matches
/// nothing.
///
/// - `filters`: borrowed for the call, none NULL (NULL allowed when `count`
///   is 0); the new filter shares them, so they may be freed afterwards.
/// - `out_filter`: as for `nnx_filter_of_type`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_TOO_DEEP` when the new filter
/// would nest more than `NNX_MAX_DEPTH` levels (a filter that is not
/// composite is one level); `NNX_ERR_INVALID_ARGUMENT` when it would have
/// more than 2^20 parts written out (a part used several times counts each
/// time). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_any(
    filters: *const *mut nnx_filter,
    count: usize,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    combine(filters, count, out_filter, Filter::any)
}

/// A filter matching leaves that all of `count` filters match (NNX's `All`);
/// with no filters it matches everything. Arguments as `nnx_filter_any`.
#[no_mangle]
pub extern "C" fn nnx_filter_all(
    filters: *const *mut nnx_filter,
    count: usize,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    combine(filters, count, out_filter, Filter::all)
}

/// The body of `nnx_filter_any` and `nnx_filter_all`: a new composite
/// filter sharing the parts.
fn combine(
    filters: *const *mut nnx_filter,
    count: usize,
    out_filter: *mut *mut nnx_filter,
    make: fn(Vec<Filter>) -> crate::Result<Filter>,
) -> nnx_status {
    new_filter(out_filter, || {
        // SAFETY: `filters` holds `count` handles by the public functions'
        // contracts.
        let parts = unsafe { filters_from_c(filters, count) }?;
        Ok(make(parts.into_iter().cloned().collect())?)
    })
}

/// A filter matching leaves that `filter` does not match (NNX's `Not`).
///
/// - `filter`: borrowed for the call; the new filter shares it, so it may
///   be freed afterwards.
/// - `out_filter`: as for `nnx_filter_of_type`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`; `NNX_ERR_TOO_DEEP` and
/// `NNX_ERR_INVALID_ARGUMENT` as for `nnx_filter_any`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_not(
    filter: *const nnx_filter,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || {
        // SAFETY: `filter` is a handle argument.
        let inner = unsafe { arg(filter, "filter") }?;
        Ok(Filter::negate(inner.filter.clone())?)
    })
}

/// A filter matching every leaf: NNX's `...` and `True`. In the filter list
/// of `nnx_state_filter` and `nnx_state_split` it may only be followed by
/// more Everything filters (else `NNX_ERR_FILTER_ORDER`); wrap it in
/// `nnx_filter_any` to escape that rule, as NNX's `Everything()` instance
/// does.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_everything(out_filter: *mut *mut nnx_filter) -> nnx_status {
    new_filter(out_filter, || Ok(Filter::Everything))
}

/// A filter matching no leaf: NNX's `None`, `False` and `Nothing()`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_nothing(out_filter: *mut *mut nnx_filter) -> nnx_status {
    new_filter(out_filter, || Ok(Filter::Nothing))
}

/// The caller's data of a callback filter, handed back through `release`
/// exactly once, when the last copy of the filter goes.
struct CallbackData {
    callback: unsafe extern "C" fn(
        *mut c_void,
        *const nnx_key,
        usize,
        nnx_kind,
        *const nnx_variable,
        *const nnx_array,
    ) -> c_int,
    user_data: *mut c_void,
    release: nnx_release_fn,
}

// SAFETY: the documentation of `nnx_filter_callback` makes the caller
// responsible for calling `callback` and `release` from any thread.
unsafe impl Send for CallbackData {}
unsafe impl Sync for CallbackData {}

impl Drop for CallbackData {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            // SAFETY: the caller's callback, called once with its data.
            unsafe { release(self.user_data) }
        }
    }
}

impl CallbackData {
    fn call(&self, path: &[&Key], leaf: &Leaf) -> Result<bool, String> {
        let keys: Vec<nnx_key> = path.iter().map(|k| key_to_c(k)).collect();
        let kind = kind_to_c(leaf.kind());
        let (variable, array) = match leaf {
            Leaf::Variable(v) => (Arc::as_ptr(v).cast::<nnx_variable>(), std::ptr::null()),
            Leaf::Array(a) => (std::ptr::null(), Arc::as_ptr(a).cast::<nnx_array>()),
        };
        // SAFETY: the caller's callback with its data; the key array and the
        // leaf are alive for the call.
        let answer = unsafe {
            (self.callback)(
                self.user_data,
                keys.as_ptr(),
                keys.len(),
                kind,
                variable,
                array,
            )
        };
        match answer {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("the callback returned {other}")),
        }
    }
}

/// A filter that asks `callback` about each leaf.
///
/// - `callback`: required; see `nnx_filter_fn`. It may be called from any
///   thread that uses the filter.
/// - `user_data`: passed to `callback` and `release`; may be NULL.
/// - `release`: optional; called exactly once with `user_data` when the last
///   copy of the filter is freed (composite filters hold copies).
/// - `out_filter`: as for `nnx_filter_of_type`.
///
/// On failure `release` is not called. Errors: `NNX_ERR_NULL_ARGUMENT`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_callback(
    callback: nnx_filter_fn,
    user_data: *mut c_void,
    release: nnx_release_fn,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || {
        let Some(callback) = callback else {
            fail!(NNX_ERR_NULL_ARGUMENT, "argument `callback` is NULL");
        };
        let data = CallbackData {
            callback,
            user_data,
            release,
        };
        Ok(Filter::callback(move |path, leaf| data.call(path, leaf)))
    })
}

/// A copy of a filter, owned by the caller (free with `nnx_filter_free`).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_clone(
    filter: *const nnx_filter,
    out_filter: *mut *mut nnx_filter,
) -> nnx_status {
    new_filter(out_filter, || {
        // SAFETY: `filter` is a handle argument.
        Ok(unsafe { arg(filter, "filter") }?.filter.clone())
    })
}

fn leaf_matches(
    filter: *const nnx_filter,
    path: *const nnx_key,
    path_len: usize,
    out_matches: *mut bool,
    leaf: impl FnOnce() -> FfiResult<Leaf>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_matches, "out_matches")?;
        // SAFETY: handle and path arguments of the public functions.
        let (filter, path) = unsafe { (arg(filter, "filter")?, path_from_c(path, path_len)?) };
        out.write(crate::ops::matches(&filter.filter, &path, &leaf()?)?);
        Ok(())
    })
}

/// Whether `filter` selects `variable` at `path`, as `nnx_state_filter`
/// would decide for that leaf in a state; writes 1 or 0 to `*out_matches`.
/// Cheaper than building a one-leaf state to ask.
///
/// - `path`: `path_len` keys, borrowed for the call (the leaf's full path,
///   root first).
/// - `variable`: borrowed for the call.
///
/// A callback filter runs its callback on this thread. Errors:
/// `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT` (a key of unknown
/// kind), `NNX_ERR_INVALID_UTF8`, `NNX_ERR_UNKNOWN_TYPE` (a type filter on a
/// type that was never registered), `NNX_ERR_CALLBACK`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_filter_matches_variable(
    filter: *const nnx_filter,
    path: *const nnx_key,
    path_len: usize,
    variable: *const nnx_variable,
    out_matches: *mut bool,
) -> nnx_status {
    leaf_matches(filter, path, path_len, out_matches, || {
        variable_leaf(variable)
    })
}

/// Whether `filter` selects the bare array `array` at `path`. As
/// `nnx_filter_matches_variable`.
#[no_mangle]
pub extern "C" fn nnx_filter_matches_array(
    filter: *const nnx_filter,
    path: *const nnx_key,
    path_len: usize,
    array: *const nnx_array,
    out_matches: *mut bool,
) -> nnx_status {
    leaf_matches(filter, path, path_len, out_matches, || array_leaf(array))
}

/// Frees a filter. NULL is a no-op. Filters made from it keep their copies.
/// Freeing twice is undefined behaviour the library cannot detect.
#[no_mangle]
pub extern "C" fn nnx_filter_free(filter: *mut nnx_filter) {
    boundary(|| {
        // SAFETY: the caller gives up a filter it owns.
        unsafe { box_free(filter) };
        Ok(())
    });
}

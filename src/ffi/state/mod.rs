//! States: owned boxes (`nnx_state_new` / `nnx_state_free`).

use std::ffi::c_char;

use super::array::nnx_array;
use super::error::nnx_status;
use super::filter::{filters_from_c, nnx_filter};
use super::key::{key_to_c, nnx_key, path_from_c, path_from_c_str, paths_from_offsets};
use super::kind::{array_leaf, kind_to_c, variable_leaf};
// Where Rust users of the C layer have always found them.
use super::io::FileMetadata;
pub use super::kind::{nnx_kind, NNX_KIND_ARRAY, NNX_KIND_STATE, NNX_KIND_VARIABLE};
use super::variable::nnx_variable;
use super::{
    arg, boundary, box_free, box_into_raw, fail, handles, owned_c_string, slice, ArcHandle,
    FfiError, FfiResult, Out,
};
use crate::filter::Filter;
use crate::key::Key;
use crate::state::{Entry, State};
use crate::tree::{Child, Kind, Leaf};

mod access;
mod ops;
// The C functions are all `ffi::state::*` to Rust callers, as before.
pub use access::*;
pub use ops::*;

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

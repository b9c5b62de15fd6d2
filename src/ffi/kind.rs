//! What a path or a flat entry leads to: `nnx_kind` and its values, and
//! leaves made from handle arguments.

use super::array::nnx_array;
use super::variable::nnx_variable;
use super::{ArcHandle, FfiResult};
use crate::tree::{Kind, Leaf};

/// What a path leads to: one of the `NNX_KIND_*` values.
pub type nnx_kind = u32;
/// A nested state.
pub const NNX_KIND_STATE: nnx_kind = 0;
/// A variable.
pub const NNX_KIND_VARIABLE: nnx_kind = 1;
/// A bare array.
pub const NNX_KIND_ARRAY: nnx_kind = 2;

pub(crate) fn kind_to_c(kind: Kind) -> nnx_kind {
    match kind {
        Kind::State => NNX_KIND_STATE,
        Kind::Variable => NNX_KIND_VARIABLE,
        Kind::Array => NNX_KIND_ARRAY,
    }
}

/// A leaf holding a new reference to the handle argument `variable`.
pub(crate) fn variable_leaf(variable: *const nnx_variable) -> FfiResult<Leaf> {
    // SAFETY: a handle argument of the public functions: NULL or live.
    Ok(Leaf::Variable(unsafe {
        nnx_variable::to_arc(variable, "variable")
    }?))
}

/// A leaf holding a new reference to the handle argument `array`.
pub(crate) fn array_leaf(array: *const nnx_array) -> FfiResult<Leaf> {
    // SAFETY: a handle argument of the public functions: NULL or live.
    Ok(Leaf::Array(unsafe { nnx_array::to_arc(array, "array") }?))
}

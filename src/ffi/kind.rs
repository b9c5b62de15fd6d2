//! What a path or a flat entry leads to: `nnx_kind` and its values.

use crate::tree::Kind;

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

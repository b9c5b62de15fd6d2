//! The variable type registry.

use std::ffi::c_char;

use super::error::nnx_status;
use super::{boundary, c_str, fail, FfiResult, Out};
use crate::types::{self, TypeId};

/// A registered variable type. Built-in types have the fixed ids below;
/// `nnx_type_register` hands out more.
pub type nnx_type_id = u32;

/// `Variable`, the root of the type tree.
pub const NNX_TYPE_VARIABLE: nnx_type_id = 0;
/// `Param` (< Variable).
pub const NNX_TYPE_PARAM: nnx_type_id = 1;
/// `BatchStat` (< Variable).
pub const NNX_TYPE_BATCH_STAT: nnx_type_id = 2;
/// `Cache` (< Variable).
pub const NNX_TYPE_CACHE: nnx_type_id = 3;
/// `Intermediate` (< Variable).
pub const NNX_TYPE_INTERMEDIATE: nnx_type_id = 4;
/// `Perturbation` (< Intermediate, as in flax 0.12).
pub const NNX_TYPE_PERTURBATION: nnx_type_id = 5;
/// `RngState` (< Variable).
pub const NNX_TYPE_RNG_STATE: nnx_type_id = 6;
/// `RngKey` (< RngState).
pub const NNX_TYPE_RNG_KEY: nnx_type_id = 7;
/// `RngCount` (< RngState).
pub const NNX_TYPE_RNG_COUNT: nnx_type_id = 8;
/// `OptState` (< Variable).
pub const NNX_TYPE_OPT_STATE: nnx_type_id = 9;
/// `OptArray` (< OptState).
pub const NNX_TYPE_OPT_ARRAY: nnx_type_id = 10;
/// `OptVariable` (< OptState).
pub const NNX_TYPE_OPT_VARIABLE: nnx_type_id = 11;
/// Not a type: what `nnx_type_parent` gives for `Variable`.
pub const NNX_TYPE_NONE: nnx_type_id = 0xFFFF_FFFF;

// The header needs literal values; keep them equal to the core's ids.
const _: () = {
    assert!(NNX_TYPE_VARIABLE == TypeId::VARIABLE.raw());
    assert!(NNX_TYPE_PARAM == TypeId::PARAM.raw());
    assert!(NNX_TYPE_BATCH_STAT == TypeId::BATCH_STAT.raw());
    assert!(NNX_TYPE_CACHE == TypeId::CACHE.raw());
    assert!(NNX_TYPE_INTERMEDIATE == TypeId::INTERMEDIATE.raw());
    assert!(NNX_TYPE_PERTURBATION == TypeId::PERTURBATION.raw());
    assert!(NNX_TYPE_RNG_STATE == TypeId::RNG_STATE.raw());
    assert!(NNX_TYPE_RNG_KEY == TypeId::RNG_KEY.raw());
    assert!(NNX_TYPE_RNG_COUNT == TypeId::RNG_COUNT.raw());
    assert!(NNX_TYPE_OPT_STATE == TypeId::OPT_STATE.raw());
    assert!(NNX_TYPE_OPT_ARRAY == TypeId::OPT_ARRAY.raw());
    assert!(NNX_TYPE_OPT_VARIABLE == TypeId::OPT_VARIABLE.raw());
};

/// Registers a variable type named `name` under `parent`, and writes its id
/// to `*out_type`.
///
/// Registering the same name under the same parent again gives the same id;
/// under another parent it fails with `NNX_ERR_TYPE_CONFLICT`. Registrations
/// last for the life of the process.
///
/// - `name`: borrowed, NUL-terminated UTF-8, not empty; read during the call.
/// - `out_type`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (empty name), `NNX_ERR_UNKNOWN_TYPE` (parent),
/// `NNX_ERR_TYPE_CONFLICT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_type_register(
    name: *const c_char,
    parent: nnx_type_id,
    out_type: *mut nnx_type_id,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_type, "out_type")?;
        // SAFETY: `name` is a C string argument (see the contract above).
        let name = unsafe { c_str(name, "name") }?;
        out.write(types::register(name, TypeId::from_raw(parent))?.raw());
        Ok(())
    })
}

/// Looks a registered type up by name and writes its id to `*out_type`.
///
/// - `name`: borrowed, NUL-terminated UTF-8; read during the call.
/// - `out_type`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_KEY_NOT_FOUND` (no type of that name). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_type_lookup(name: *const c_char, out_type: *mut nnx_type_id) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_type, "out_type")?;
        // SAFETY: `name` is a C string argument.
        let name = unsafe { c_str(name, "name") }?;
        match types::lookup(name) {
            Some(id) => out.write(id.raw()),
            None => fail!(NNX_ERR_KEY_NOT_FOUND, "no variable type is named {name:?}"),
        }
        Ok(())
    })
}

/// Writes the name of a type to `*out_name`.
///
/// - `out_name`: receives a NUL-terminated string owned by the library and
///   valid for the life of the process (types are never unregistered); do not
///   free it. Written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_type_name(type_id: nnx_type_id, out_name: *mut *const c_char) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_name, "out_name")?;
        let name = types::snapshot().name_with_nul(TypeId::from_raw(type_id))?;
        out.write(name.as_ptr().cast());
        Ok(())
    })
}

/// Writes the parent of a type to `*out_parent`: `NNX_TYPE_NONE` for
/// `NNX_TYPE_VARIABLE`, the root.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_type_parent(
    type_id: nnx_type_id,
    out_parent: *mut nnx_type_id,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_parent, "out_parent")?;
        let parent = types::parent(TypeId::from_raw(type_id))?;
        out.write(parent.map_or(NNX_TYPE_NONE, TypeId::raw));
        Ok(())
    })
}

/// Writes to `*out_result` whether `type_id` is `ancestor` or descends from
/// it (what an OfType(ancestor) filter matches).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE` (either id).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_type_is_subtype(
    type_id: nnx_type_id,
    ancestor: nnx_type_id,
    out_result: *mut bool,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_result, "out_result")?;
        let result = types::is_subtype(TypeId::from_raw(type_id), TypeId::from_raw(ancestor))?;
        out.write(result);
        Ok(())
    })
}

/// Writes the number of registered types to `*out_count`; ids run from 0 to
/// count - 1.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_type_count(out_count: *mut usize) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_count, "out_count")?;
        out.write(types::snapshot().len());
        Ok(())
    })
}

/// Checks a C type id.
pub(crate) fn type_from_c(type_id: nnx_type_id) -> FfiResult<TypeId> {
    let id = TypeId::from_raw(type_id);
    types::check(id)?;
    Ok(id)
}

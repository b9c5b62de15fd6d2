//! Variables: shared (`_retain` / `_release`); a type, a value and metadata.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::array::{nnx_array, nnx_release_fn, optional_array, release_callback};
use super::error::nnx_status;
use super::types::{nnx_type_id, type_from_c};
use super::{boundary, c_str, fail, handles, read_into, ArcHandle, FfiResult, Out, OutArray};
use crate::value::{Opaque, PrngKey, Value};
use crate::variable::Variable;

/// A typed slot holding a value (none, an array, a typed PRNG key or an
/// opaque object: `nnx_variable_value_kind`) and metadata. Shared: every
/// `nnx_variable *` the library returns as owned holds one reference, given
/// back with `nnx_variable_release`. States hold variables by reference, so a
/// value set through one holder is seen by all. Thread-safe: each call on a
/// variable is atomic.
pub struct nnx_variable {
    _opaque: [u8; 0],
}

impl ArcHandle for nnx_variable {
    type Inner = Variable;
}

/// Creates a variable of a registered type.
///
/// - `value`: optional (NULL for no value); the variable takes its own
///   reference, the caller keeps theirs.
/// - `out_variable`: receives a new reference, owned by the caller (release
///   with `nnx_variable_release`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_new(
    type_id: nnx_type_id,
    value: *const nnx_array,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_variable, "out_variable")?;
        let type_id = type_from_c(type_id)?;
        // SAFETY: `value` is NULL or a handle argument.
        let value = unsafe { optional_array(value) }?;
        out.write(nnx_variable::into_raw(Arc::new(Variable::new(
            type_id, value,
        )?)));
        Ok(())
    })
}

/// Creates a variable of the same type as `variable`, holding the same value
/// (shared: an array, a key or an opaque object is not copied) and a copy
/// of its metadata, as Flax's `Variable.copy()`. Setting the new one's
/// value or metadata later leaves `variable` as it is.
///
/// - `variable`: borrowed.
/// - `out_variable`: receives a new reference, owned by the caller (release
///   with `nnx_variable_release`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_copy(
    variable: *const nnx_variable,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_variable, "out_variable")?;
        // SAFETY: a handle argument.
        let variable = unsafe { nnx_variable::borrow(variable, "variable") }?;
        out.write(nnx_variable::into_raw(Arc::new(variable.shallow_copy())));
        Ok(())
    })
}

/// Writes the address of a counter that the library increases whenever any
/// variable's value or metadata may have changed, in any thread. A binding
/// that reads the counter before it reads a variable, and finds the same
/// count later, may keep what it read instead of asking again.
///
/// - `out_counter`: receives the address, valid for the life of the
///   process. Read it with an atomic load (in C11, `atomic_load` through a
///   `_Atomic uint64_t *`); never write it.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_change_counter(out_counter: *mut *const u64) -> nnx_status {
    boundary(|| {
        // An `AtomicU64` has the size and alignment of a `u64`.
        let counter: *const u64 = crate::variable::changes().as_ptr().cast_const();
        Out::new(out_counter, "out_counter")?.write(counter);
        Ok(())
    })
}

/// Writes the variable's revision to `*out_revision`: a count of its
/// changes (value or metadata) that wraps at 2^32. A binding that kept what
/// it read of one variable together with its revision, and with the count
/// of `nnx_variable_change_counter` read before, may keep it while the
/// revision stays, even after other variables changed, as long as that
/// count has moved by less than 2^32 (so the revision cannot have wrapped
/// around to the same number).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_revision(
    variable: *const nnx_variable,
    out_revision: *mut u32,
) -> nnx_status {
    read_into(variable, "variable", out_revision, "out_revision", |v| {
        Ok(v.revision())
    })
}

/// Writes the revisions (`nnx_variable_revision`) of `count` variables in
/// one call: `out_revisions[i]` for `variables[i]`.
///
/// - `variables`: `count` handles, borrowed for the call; none may be NULL.
///   NULL allowed when `count` is 0.
/// - `out_revisions`: room for `count` numbers; written on success only.
///   NULL allowed when `count` is 0.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (the message names a NULL element),
/// `NNX_ERR_INVALID_ARGUMENT` (a `count` too large for an array).
/// Thread-safe; each revision is read atomically, not all of them at once.
#[no_mangle]
pub extern "C" fn nnx_variable_revisions(
    variables: *const *const nnx_variable,
    count: usize,
    out_revisions: *mut u32,
) -> nnx_status {
    boundary(|| {
        if count == 0 {
            return Ok(());
        }
        // SAFETY: `variables` holds `count` handles, each NULL or live; a
        // live `nnx_variable *` points at its `Variable` (`ArcHandle`).
        let variables = unsafe { handles(variables.cast::<*mut Variable>(), count, "variables") }?;
        let out = OutArray::required(out_revisions, count, "out_revisions")?;
        let revisions: Vec<u32> = variables.iter().map(|v| v.revision()).collect();
        for (i, revision) in revisions.into_iter().enumerate() {
            out.write(i, revision);
        }
        Ok(())
    })
}

/// Writes the variable's type id to `*out_type`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_type(
    variable: *const nnx_variable,
    out_type: *mut nnx_type_id,
) -> nnx_status {
    read_into(variable, "variable", out_type, "out_type", |v| {
        Ok(v.type_id().raw())
    })
}

/// Writes the variable's array value to `*out_value`: a new reference owned
/// by the caller (release with `nnx_array_release`), or NULL if it has no
/// value.
///
/// A typed PRNG key is not an array (in jax, `np.asarray(key)` fails too):
/// read its data with `nnx_variable_get_key` (and export that array with
/// `nnx_array_to_dlpack` if need be). An opaque value has no array at all.
/// Both give `NNX_ERR_WRONG_KIND` here, so that no caller takes a key for
/// plain `uint32` data or loses its implementation by setting it back.
/// `nnx_variable_value_kind` tells which getter fits.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (a key or an
/// opaque value). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_get_value(
    variable: *const nnx_variable,
    out_value: *mut *mut nnx_array,
) -> nnx_status {
    read_into(variable, "variable", out_value, "out_value", |v| {
        match v.value() {
            Value::None => Ok(std::ptr::null_mut()),
            Value::Array(array) => Ok(nnx_array::into_raw(array)),
            other => fail!(
                NNX_ERR_WRONG_KIND,
                "the variable holds {}, not an array: read it with {}",
                other.describe(),
                if matches!(other, Value::Key(_)) {
                    "nnx_variable_get_key"
                } else {
                    "nnx_variable_get_opaque"
                }
            ),
        }
    })
}

/// Replaces the variable's value with an array (or none); every state
/// holding the variable sees it.
///
/// - `value`: optional (NULL clears the value); the variable takes its own
///   reference, the caller keeps theirs. The old value (an array, a typed
///   key or an opaque value) is given back, after the variable's lock is
///   let go, so its release callback may call into the library.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (variable). Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_variable_set_value(
    variable: *const nnx_variable,
    value: *const nnx_array,
) -> nnx_status {
    boundary(|| {
        // SAFETY: handle arguments.
        let (variable, value) = unsafe {
            (
                nnx_variable::borrow(variable, "variable")?,
                optional_array(value)?,
            )
        };
        variable.set_value(value);
        Ok(())
    })
}

/// What a variable's value is: one of the `NNX_VALUE_*` values.
pub type nnx_value_kind = u32;
/// No value.
pub const NNX_VALUE_NONE: nnx_value_kind = 0;
/// An array (`nnx_variable_get_value`).
pub const NNX_VALUE_ARRAY: nnx_value_kind = 1;
/// A typed PRNG key: key data and an implementation name
/// (`nnx_variable_get_key`).
pub const NNX_VALUE_KEY: nnx_value_kind = 2;
/// A caller's object that the library holds and never looks into
/// (`nnx_variable_get_opaque`).
pub const NNX_VALUE_OPAQUE: nnx_value_kind = 3;

/// Writes what the variable's value is (one of the `NNX_VALUE_*` values) to
/// `*out_kind`, so that a caller can pick the getter that fits.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_value_kind(
    variable: *const nnx_variable,
    out_kind: *mut nnx_value_kind,
) -> nnx_status {
    read_into(variable, "variable", out_kind, "out_kind", |v| {
        Ok(match v.value() {
            Value::None => NNX_VALUE_NONE,
            Value::Array(_) => NNX_VALUE_ARRAY,
            Value::Key(_) => NNX_VALUE_KEY,
            Value::Opaque(_) => NNX_VALUE_OPAQUE,
        })
    })
}

/// A typed key from the C arguments `key_data` and `impl_name`.
///
/// # Safety
/// Pointer arguments as in the key functions' contracts.
unsafe fn key_from_c(key_data: *const nnx_array, impl_name: *const c_char) -> FfiResult<Value> {
    // SAFETY: by the contract above.
    let (data, name) = unsafe {
        (
            nnx_array::to_arc(key_data, "key_data")?,
            c_str(impl_name, "impl_name")?,
        )
    };
    Ok(PrngKey::new(data, name)?.into())
}

/// Creates a variable holding a typed PRNG key, as `jax.random.key` makes
/// and `nnx.Rngs` keeps in each `RngKey`: key data and the name of its
/// implementation.
///
/// - `key_data`: the key data (`jax.random.key_data`): `uint32`, at least
///   one dimension, the key shape last (`[2]` for one `threefry2x32` key,
///   `[n, 4]` for `n` `rbg` or `unsafe_rbg` keys). The variable takes its
///   own reference, the caller keeps theirs.
/// - `impl_name`: borrowed, NUL-terminated UTF-8 (`str(jax.random.key_impl(k))`,
///   such as `"threefry2x32"`); not empty. jax's own implementations
///   (`threefry2x32`, `threefry4x32`, `rbg`, `unsafe_rbg`, `philox2x32`,
///   `philox4x32`) have their key shape checked; other names are taken as
///   custom implementations. The library keeps each distinct name for the
///   life of the process.
/// - `out_variable`: receives a new reference, owned by the caller (release
///   with `nnx_variable_release`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE`,
/// `NNX_ERR_INVALID_UTF8`, `NNX_ERR_INVALID_ARGUMENT` (empty name, data
/// not `uint32`, a scalar, or the wrong key shape). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_new_key(
    type_id: nnx_type_id,
    key_data: *const nnx_array,
    impl_name: *const c_char,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_variable, "out_variable")?;
        let type_id = type_from_c(type_id)?;
        // SAFETY: pointer arguments as documented.
        let value = unsafe { key_from_c(key_data, impl_name) }?;
        out.write(nnx_variable::into_raw(Arc::new(Variable::new(
            type_id, value,
        )?)));
        Ok(())
    })
}

/// Replaces the variable's value with a typed PRNG key; every state holding
/// the variable sees it. Arguments as in `nnx_variable_new_key`; the old
/// value's reference is given back.
///
/// Errors: as `nnx_variable_new_key`, without `NNX_ERR_UNKNOWN_TYPE`; on
/// failure the value is unchanged. Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_variable_set_key(
    variable: *const nnx_variable,
    key_data: *const nnx_array,
    impl_name: *const c_char,
) -> nnx_status {
    boundary(|| {
        // SAFETY: pointer arguments as documented.
        let (variable, value) = unsafe {
            (
                nnx_variable::borrow(variable, "variable")?,
                key_from_c(key_data, impl_name)?,
            )
        };
        variable.set_value(value);
        Ok(())
    })
}

/// Reads the variable's typed PRNG key.
///
/// - `out_key_data`: receives the key data, a new reference owned by the
///   caller (release with `nnx_array_release`).
/// - `out_impl_name`: receives the implementation's name, NUL-terminated,
///   owned by the library and valid for the life of the process (names are
///   interned); do not free.
///
/// Both are written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (the value is not
/// a key). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_get_key(
    variable: *const nnx_variable,
    out_key_data: *mut *mut nnx_array,
    out_impl_name: *mut *const c_char,
) -> nnx_status {
    boundary(|| {
        let out_data = Out::new(out_key_data, "out_key_data")?;
        let out_name = Out::new(out_impl_name, "out_impl_name")?;
        // SAFETY: `variable` is a handle argument.
        let value = unsafe { nnx_variable::borrow(variable, "variable") }?.value();
        let Value::Key(key) = value else {
            fail!(
                NNX_ERR_WRONG_KIND,
                "the variable holds {}, not a typed PRNG key",
                value.describe()
            );
        };
        out_name.write(key.impl_name_with_nul().as_ptr().cast());
        out_data.write(nnx_array::into_raw(key.data().clone()));
        Ok(())
    })
}

/// An opaque value from the C arguments. Checked before `release` is
/// taken, so a failure never calls it.
///
/// # Safety
/// `type_name` as in the opaque functions' contracts.
unsafe fn opaque_from_c(
    type_name: *const c_char,
    object: *mut c_void,
    release: nnx_release_fn,
    user_data: *mut c_void,
) -> FfiResult<Value> {
    // SAFETY: by the contract above.
    let type_name = unsafe { c_str(type_name, "type_name") }?;
    let release = release_callback(release, user_data);
    Ok(Opaque::new(type_name, object as usize, release)?.into())
}

/// Creates a variable holding an opaque value: a caller's object (a jax
/// array on a device, a tracer, a `ShapeDtypeStruct`, a `PartitionSpec`, a
/// GPU buffer) that the library holds by pointer and never looks into.
/// Every operation (filter, split, merge, diff, flatten, clone, update)
/// treats the variable as any other; `nnx_state_deep_copy` shares the
/// object (see there); saving it is an error.
///
/// - `type_name`: borrowed, NUL-terminated UTF-8; not empty. Names what
///   `object` is, so that a reader can tell its own objects from others'
///   before it uses the pointer (say `cuda:buffer`, or `python:jax.Array`
///   for a `PyObject *`), and shown by `nnx_state_to_string`. The library
///   keeps each distinct name for the life of the process.
/// - `object`: any pointer, NULL included; never dereferenced.
/// - `release`: called exactly once, with `user_data`, when the last
///   reference to the value goes (the variable and every deep copy that
///   shares it), on whichever thread drops it, never while the library
///   holds a lock. May be NULL if the object outlives every reference by
///   other means.
/// - `out_variable`: receives a new reference, owned by the caller (release
///   with `nnx_variable_release`); written on success only.
///
/// On failure the library keeps nothing and does not call `release`: the
/// object stays the caller's.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_UNKNOWN_TYPE`,
/// `NNX_ERR_INVALID_UTF8`, `NNX_ERR_INVALID_ARGUMENT` (empty name).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_new_opaque(
    type_id: nnx_type_id,
    type_name: *const c_char,
    object: *mut c_void,
    release: nnx_release_fn,
    user_data: *mut c_void,
    out_variable: *mut *mut nnx_variable,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_variable, "out_variable")?;
        let type_id = type_from_c(type_id)?;
        // SAFETY: pointer arguments as documented.
        let value = unsafe { opaque_from_c(type_name, object, release, user_data) }?;
        out.write(nnx_variable::into_raw(Arc::new(Variable::new(
            type_id, value,
        )?)));
        Ok(())
    })
}

/// Replaces the variable's value with an opaque value; every state holding
/// the variable sees it. Arguments as in `nnx_variable_new_opaque`; the old
/// value's reference is given back (which may run its release callback,
/// after the variable's lock is let go).
///
/// Errors: as `nnx_variable_new_opaque`, without `NNX_ERR_UNKNOWN_TYPE`; on
/// failure the value is unchanged and `release` is not called. Thread-safe
/// and atomic.
#[no_mangle]
pub extern "C" fn nnx_variable_set_opaque(
    variable: *const nnx_variable,
    type_name: *const c_char,
    object: *mut c_void,
    release: nnx_release_fn,
    user_data: *mut c_void,
) -> nnx_status {
    boundary(|| {
        // SAFETY: pointer arguments as documented.
        let (variable, value) = unsafe {
            (
                nnx_variable::borrow(variable, "variable")?,
                opaque_from_c(type_name, object, release, user_data)?,
            )
        };
        variable.set_value(value);
        Ok(())
    })
}

/// Reads the variable's opaque value.
///
/// - `out_object`: receives the caller's pointer as it was given. Borrowed:
///   it stays valid while the variable holds this value, that is until the
///   value is replaced or the variable's last reference goes. A caller that
///   may race with another thread replacing the value must keep the object
///   alive by its own means (take its own reference under a lock that the
///   setter takes too).
/// - `out_type_name`: receives the type name, NUL-terminated, owned by the
///   library and valid for the life of the process; do not free.
///
/// Both are written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (the value is not
/// opaque). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_get_opaque(
    variable: *const nnx_variable,
    out_object: *mut *mut c_void,
    out_type_name: *mut *const c_char,
) -> nnx_status {
    boundary(|| {
        let out_object = Out::new(out_object, "out_object")?;
        let out_name = Out::new(out_type_name, "out_type_name")?;
        // SAFETY: `variable` is a handle argument.
        let value = unsafe { nnx_variable::borrow(variable, "variable") }?.value();
        let Value::Opaque(opaque) = value else {
            fail!(
                NNX_ERR_WRONG_KIND,
                "the variable holds {}, not an opaque value",
                value.describe()
            );
        };
        out_name.write(opaque.type_name_with_nul().as_ptr().cast());
        out_object.write(opaque.address() as *mut c_void);
        Ok(())
    })
}

mod metadata;
pub use metadata::*;

/// Takes one more reference to the variable; give it back with
/// `nnx_variable_release`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_retain(variable: *const nnx_variable) -> nnx_status {
    boundary(|| {
        // SAFETY: `variable` is a handle argument; the new count is the caller's.
        std::mem::forget(unsafe { nnx_variable::to_arc(variable, "variable") }?);
        Ok(())
    })
}

/// Gives back one reference to the variable; the last one frees it. NULL is
/// a no-op. Releasing more references than the caller owns is undefined
/// behaviour the library cannot detect. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_release(variable: *const nnx_variable) {
    boundary(|| {
        // SAFETY: the caller gives back a reference it owns.
        unsafe { nnx_variable::release(variable) };
        Ok(())
    });
}

//! A variable's metadata: scalar entries, structured entries (`nnx_meta`
//! values or their JSON form), the tag, and listing them.

use std::ffi::c_char;

use super::nnx_variable;
use crate::ffi::error::nnx_status;
use crate::ffi::meta::{meta_kind, nnx_meta, nnx_meta_kind, utf8_arg};
use crate::ffi::{boundary, c_str, fail, owned_c_string, read_into, ArcHandle, FfiResult, Out};
use crate::io::{meta_from_text, meta_to_text};
use crate::variable::{MetaValue, Variable};

/// Borrows the variable and reads the `name` argument: the start of every
/// metadata function.
///
/// # Safety
/// Pointer arguments as in the functions' contracts.
unsafe fn variable_and_name<'a>(
    variable: *const nnx_variable,
    name: *const c_char,
) -> FfiResult<(&'a Variable, &'a str)> {
    // SAFETY: by the contract above.
    unsafe {
        Ok((
            nnx_variable::borrow(variable, "variable")?,
            c_str(name, "name")?,
        ))
    }
}

fn set_metadata(
    variable: *const nnx_variable,
    name: *const c_char,
    value: impl FnOnce() -> FfiResult<MetaValue>,
) -> nnx_status {
    boundary(|| {
        // SAFETY: pointer arguments of the public setters.
        let (variable, name) = unsafe { variable_and_name(variable, name) }?;
        variable.set_metadata(name, value()?)?;
        Ok(())
    })
}

fn get_metadata<T>(
    variable: *const nnx_variable,
    name: *const c_char,
    out: *mut T,
    extract: impl FnOnce(MetaValue) -> Result<FfiResult<T>, MetaValue>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out, "out_value")?;
        // SAFETY: pointer arguments of the public getters.
        let (variable, name) = unsafe { variable_and_name(variable, name) }?;
        let Some(value) = variable.metadata(name) else {
            fail!(
                NNX_ERR_KEY_NOT_FOUND,
                "the variable has no metadata {name:?}"
            );
        };
        match extract(value) {
            Ok(converted) => out.write(converted?),
            Err(other) => fail!(
                NNX_ERR_WRONG_KIND,
                "metadata {name:?} is a {} ({other})",
                other.kind_name()
            ),
        }
        Ok(())
    })
}

/// Sets metadata `name` to a string (`"tag"` is what tag filters read).
///
/// - `name`, `value`: borrowed, NUL-terminated UTF-8; copied. `name` not empty.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (empty name). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_set_metadata_str(
    variable: *const nnx_variable,
    name: *const c_char,
    value: *const c_char,
) -> nnx_status {
    set_metadata(variable, name, || {
        // SAFETY: a C string argument.
        let value = unsafe { c_str(value, "value") }?;
        Ok(MetaValue::Str(value.to_owned()))
    })
}

/// Sets metadata `name` to an integer. As `nnx_variable_set_metadata_str`.
#[no_mangle]
pub extern "C" fn nnx_variable_set_metadata_int(
    variable: *const nnx_variable,
    name: *const c_char,
    value: i64,
) -> nnx_status {
    set_metadata(variable, name, || Ok(MetaValue::Int(value)))
}

/// Sets metadata `name` to a float. As `nnx_variable_set_metadata_str`.
#[no_mangle]
pub extern "C" fn nnx_variable_set_metadata_float(
    variable: *const nnx_variable,
    name: *const c_char,
    value: f64,
) -> nnx_status {
    set_metadata(variable, name, || Ok(MetaValue::Float(value)))
}

/// Sets metadata `name` to a boolean. As `nnx_variable_set_metadata_str`.
#[no_mangle]
pub extern "C" fn nnx_variable_set_metadata_bool(
    variable: *const nnx_variable,
    name: *const c_char,
    value: bool,
) -> nnx_status {
    set_metadata(variable, name, || Ok(MetaValue::Bool(value)))
}

/// Sets metadata `name` to a copy of `value`, of any kind (a tuple such as
/// `out_sharding=(None, 'model')`, a map of hyper-parameters, None, ...).
///
/// - `name`: borrowed, NUL-terminated UTF-8; copied. Not empty.
/// - `value`: borrowed for the call (owned or a borrowed part of another
///   value); the variable keeps a copy, the caller keeps `value`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (empty name). Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_variable_set_metadata(
    variable: *const nnx_variable,
    name: *const c_char,
    value: *const nnx_meta,
) -> nnx_status {
    set_metadata(variable, name, || {
        // SAFETY: a handle argument.
        Ok(unsafe { nnx_meta::borrow(value, "value") }?.clone())
    })
}

/// Reads metadata `name`, of any kind, into `*out_value`: a copy owned by the
/// caller (free with `nnx_meta_free`), which later changes to the variable
/// do not touch.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8` (name),
/// `NNX_ERR_KEY_NOT_FOUND` (no such entry). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_get_metadata(
    variable: *const nnx_variable,
    name: *const c_char,
    out_value: *mut *mut nnx_meta,
) -> nnx_status {
    get_metadata(variable, name, out_value, |v| Ok(Ok(nnx_meta::into_raw(v))))
}

/// Sets metadata `name` to the value of a JSON text in the form
/// `nnx_meta_to_json` writes (`["tuple", null, "model"]`), in one call.
///
/// - `name`: borrowed, NUL-terminated UTF-8; copied. Not empty.
/// - `json`: borrowed for the call: `len` bytes of UTF-8 (NULL allowed when
///   `len` is 0, which is not valid JSON).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_INVALID_ARGUMENT` (empty name), and those of
/// `nnx_meta_from_json` (`NNX_ERR_FORMAT`, `NNX_ERR_TOO_DEEP`); on failure
/// the variable is unchanged. Thread-safe and atomic.
#[no_mangle]
pub extern "C" fn nnx_variable_set_metadata_json(
    variable: *const nnx_variable,
    name: *const c_char,
    json: *const c_char,
    len: usize,
) -> nnx_status {
    set_metadata(variable, name, || {
        // SAFETY: a text argument of `len` bytes.
        let text = unsafe { utf8_arg(json, len, "json") }?;
        Ok(meta_from_text(text)?)
    })
}

/// Reads metadata `name`, of any kind, into `*out_value` as JSON text in the
/// form `nnx_meta_to_json` writes, in one call: a new NUL-terminated string
/// owned by the caller (free with `nnx_string_free`).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8` (name),
/// `NNX_ERR_KEY_NOT_FOUND` (no such entry). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_get_metadata_json(
    variable: *const nnx_variable,
    name: *const c_char,
    out_value: *mut *mut c_char,
) -> nnx_status {
    get_metadata(variable, name, out_value, |v| {
        Ok(owned_c_string(&meta_to_text(&v)))
    })
}

/// Reads string metadata `name` into `*out_value`: a new NUL-terminated
/// string owned by the caller (free with `nnx_string_free`).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8` (name),
/// `NNX_ERR_KEY_NOT_FOUND` (no such entry), `NNX_ERR_WRONG_KIND` (not a
/// string), `NNX_ERR_INVALID_ARGUMENT` (the string holds a NUL byte).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_get_metadata_str(
    variable: *const nnx_variable,
    name: *const c_char,
    out_value: *mut *mut c_char,
) -> nnx_status {
    get_metadata(variable, name, out_value, |v| match v {
        MetaValue::Str(s) => Ok(owned_c_string(&s)),
        other => Err(other),
    })
}

/// Reads integer metadata `name` into `*out_value`. Errors as
/// `nnx_variable_get_metadata_str`.
#[no_mangle]
pub extern "C" fn nnx_variable_get_metadata_int(
    variable: *const nnx_variable,
    name: *const c_char,
    out_value: *mut i64,
) -> nnx_status {
    get_metadata(variable, name, out_value, |v| match v {
        MetaValue::Int(i) => Ok(Ok(i)),
        other => Err(other),
    })
}

/// Reads float metadata `name` into `*out_value`. Errors as
/// `nnx_variable_get_metadata_str`.
#[no_mangle]
pub extern "C" fn nnx_variable_get_metadata_float(
    variable: *const nnx_variable,
    name: *const c_char,
    out_value: *mut f64,
) -> nnx_status {
    get_metadata(variable, name, out_value, |v| match v {
        MetaValue::Float(x) => Ok(Ok(x)),
        other => Err(other),
    })
}

/// Reads boolean metadata `name` into `*out_value`. Errors as
/// `nnx_variable_get_metadata_str`.
#[no_mangle]
pub extern "C" fn nnx_variable_get_metadata_bool(
    variable: *const nnx_variable,
    name: *const c_char,
    out_value: *mut bool,
) -> nnx_status {
    get_metadata(variable, name, out_value, |v| match v {
        MetaValue::Bool(b) => Ok(Ok(b)),
        other => Err(other),
    })
}

/// Writes the variable's tag (its `"tag"` metadata, when a string) to
/// `*out_tag`: a new string owned by the caller (free with
/// `nnx_string_free`), or NULL when it has none.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_tag(
    variable: *const nnx_variable,
    out_tag: *mut *mut c_char,
) -> nnx_status {
    read_into(variable, "variable", out_tag, "out_tag", |v| {
        match v.tag() {
            Some(tag) => owned_c_string(&tag),
            None => Ok(std::ptr::null_mut()),
        }
    })
}

/// Writes the number of metadata entries to `*out_count`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_metadata_count(
    variable: *const nnx_variable,
    out_count: *mut usize,
) -> nnx_status {
    read_into(variable, "variable", out_count, "out_count", |v| {
        Ok(v.metadata_entries().len())
    })
}

/// Writes the name and kind of metadata entry `index` (in the order entries
/// were first set) to `*out_name` (a new string owned by the caller, free
/// with `nnx_string_free`) and `*out_kind`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INDEX_OUT_OF_RANGE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_metadata_at(
    variable: *const nnx_variable,
    index: usize,
    out_name: *mut *mut c_char,
    out_kind: *mut nnx_meta_kind,
) -> nnx_status {
    boundary(|| {
        let out_name = Out::new(out_name, "out_name")?;
        let out_kind = Out::new(out_kind, "out_kind")?;
        // SAFETY: `variable` is a handle argument.
        let entries = unsafe { nnx_variable::borrow(variable, "variable") }?.metadata_entries();
        let Some((name, value)) = entries.get(index) else {
            fail!(
                NNX_ERR_INDEX_OUT_OF_RANGE,
                "metadata index {index} is out of range ({} entries)",
                entries.len()
            );
        };
        let name = owned_c_string(name)?;
        out_kind.write(meta_kind(value));
        out_name.write(name);
        Ok(())
    })
}

/// Writes the kind of metadata `name` (one of the `NNX_META_*` values) to
/// `*out_kind`, so that a caller can pick the right
/// `nnx_variable_get_metadata_*` without walking the entries
/// (`nnx_variable_get_metadata` reads any kind, and is the one for
/// `NNX_META_NULL`, `NNX_META_LIST`, `NNX_META_TUPLE` and `NNX_META_MAP`).
///
/// - `name`: borrowed, NUL-terminated UTF-8; read during the call.
/// - `out_kind`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_KEY_NOT_FOUND` (no such entry). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_metadata_kind(
    variable: *const nnx_variable,
    name: *const c_char,
    out_kind: *mut nnx_meta_kind,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_kind, "out_kind")?;
        // SAFETY: pointer arguments as documented.
        let (variable, name) = unsafe { variable_and_name(variable, name) }?;
        let Some(value) = variable.metadata(name) else {
            fail!(
                NNX_ERR_KEY_NOT_FOUND,
                "the variable has no metadata {name:?}"
            );
        };
        out.write(meta_kind(&value));
        Ok(())
    })
}

/// Removes metadata `name`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_KEY_NOT_FOUND`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_variable_remove_metadata(
    variable: *const nnx_variable,
    name: *const c_char,
) -> nnx_status {
    boundary(|| {
        // SAFETY: pointer arguments as documented.
        let (variable, name) = unsafe { variable_and_name(variable, name) }?;
        if variable.remove_metadata(name).is_none() {
            fail!(
                NNX_ERR_KEY_NOT_FOUND,
                "the variable has no metadata {name:?}"
            );
        }
        Ok(())
    })
}

//! Metadata values: owned boxes (`nnx_meta_new_*`, `nnx_meta_clone`,
//! `nnx_meta_free`), read through borrowed views of their parts.

use std::ffi::c_char;

use super::error::nnx_status;
use super::{arg, boundary, box_free, fail, owned_c_string, slice, FfiResult, Out};
use crate::io::{meta_from_text, meta_to_text};
use crate::meta::{MetaMap, MetaSeq, MetaValue};

/// A metadata value: `None`, a bool, an int64, a float64, a UTF-8 string, or
/// a list, a tuple or a map (UTF-8 keys, insertion-ordered) of values,
/// nested at most `NNX_MAX_DEPTH` levels. Lists and tuples are distinct
/// kinds, as in Python.
///
/// Owned by the caller when a function returns it as owned (free with
/// `nnx_meta_free`); the parts of a list, tuple or map are handed out as
/// borrowed `const nnx_meta *`, valid while their container lives and is not
/// changed, and never freed. Containers, and variables, keep their own
/// copies of what is put in them.
///
/// Thread safety: a value may be read from several threads at once; a call
/// that changes it (`nnx_meta_append`, `nnx_meta_map_set`) must not run
/// while another thread uses the same value. (A variable's metadata is not
/// such a value: `nnx_variable_set_metadata` and
/// `nnx_variable_get_metadata` copy, and are thread-safe.)
pub struct nnx_meta {
    _opaque: [u8; 0],
}

/// The kind of a metadata value: one of the `NNX_META_*` values.
pub type nnx_meta_kind = u32;
/// A UTF-8 string.
pub const NNX_META_STR: nnx_meta_kind = 0;
/// A signed 64-bit integer.
pub const NNX_META_INT: nnx_meta_kind = 1;
/// A 64-bit float.
pub const NNX_META_FLOAT: nnx_meta_kind = 2;
/// A boolean.
pub const NNX_META_BOOL: nnx_meta_kind = 3;
/// Python's `None`.
pub const NNX_META_NULL: nnx_meta_kind = 4;
/// A list of values.
pub const NNX_META_LIST: nnx_meta_kind = 5;
/// A tuple of values.
pub const NNX_META_TUPLE: nnx_meta_kind = 6;
/// A map from UTF-8 keys to values, in insertion order.
pub const NNX_META_MAP: nnx_meta_kind = 7;

pub(crate) fn meta_kind(value: &MetaValue) -> nnx_meta_kind {
    match value {
        MetaValue::Str(_) => NNX_META_STR,
        MetaValue::Int(_) => NNX_META_INT,
        MetaValue::Float(_) => NNX_META_FLOAT,
        MetaValue::Bool(_) => NNX_META_BOOL,
        MetaValue::Null => NNX_META_NULL,
        MetaValue::List(_) => NNX_META_LIST,
        MetaValue::Tuple(_) => NNX_META_TUPLE,
        MetaValue::Map(_) => NNX_META_MAP,
    }
}

impl nnx_meta {
    /// An owned handle for the caller.
    pub(crate) fn into_raw(value: MetaValue) -> *mut nnx_meta {
        Box::into_raw(Box::new(value)).cast()
    }

    /// A borrowed handle of a value that lives elsewhere.
    fn view(value: &MetaValue) -> *const nnx_meta {
        (value as *const MetaValue).cast()
    }

    /// Borrows the value behind a handle (owned or borrowed) for the call.
    ///
    /// # Safety
    /// A non-null `ptr` must be a live handle.
    pub(crate) unsafe fn borrow<'a>(ptr: *const nnx_meta, name: &str) -> FfiResult<&'a MetaValue> {
        // SAFETY: a live handle points to a `MetaValue`.
        unsafe { arg(ptr.cast::<MetaValue>(), name) }
    }

    /// Borrows the value behind a handle to change it.
    ///
    /// # Safety
    /// A non-null `ptr` must be a live handle that no other thread uses
    /// during the call (the documented contract of the changing calls).
    unsafe fn borrow_mut<'a>(ptr: *mut nnx_meta, name: &str) -> FfiResult<&'a mut MetaValue> {
        // SAFETY: a live handle, not used elsewhere during the call.
        unsafe { ptr.cast::<MetaValue>().as_mut() }.ok_or_else(|| super::FfiError::null(name))
    }
}

/// Reads `len` bytes of UTF-8 at `text` (NULL allowed when `len` is 0).
///
/// # Safety
/// A non-null `text` must point to `len` bytes valid for the call.
pub(crate) unsafe fn utf8_arg<'a>(
    text: *const c_char,
    len: usize,
    name: &str,
) -> FfiResult<&'a str> {
    // SAFETY: by this function's contract.
    let bytes = unsafe { slice(text.cast::<u8>(), len, name) }?;
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => fail!(
            NNX_ERR_INVALID_UTF8,
            "argument `{name}` is not valid UTF-8: {e}"
        ),
    }
}

/// A C view of a string: its bytes and length, borrowed from `text`. An
/// empty string points to a static empty C string, not to the dangling
/// address Rust uses for no bytes, so that C may pass it on anywhere.
fn str_to_c(text: &str) -> (*const c_char, usize) {
    if text.is_empty() {
        return (c"".as_ptr(), 0);
    }
    (text.as_ptr().cast(), text.len())
}

fn wrong_kind(value: &MetaValue, wanted: &str) -> super::FfiError {
    super::FfiError::new(
        nnx_status::NNX_ERR_WRONG_KIND,
        format!(
            "the metadata value is a {}, not {wanted}",
            value.kind_name()
        ),
    )
}

fn new_meta(
    out_meta: *mut *mut nnx_meta,
    make: impl FnOnce() -> FfiResult<MetaValue>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_meta, "out_meta")?;
        out.write(nnx_meta::into_raw(make()?));
        Ok(())
    })
}

/// The body of a reader: borrows `meta`, writes what `read` gives to `out`
/// (only on success).
fn read_meta<T>(
    meta: *const nnx_meta,
    out: *mut T,
    out_name: &str,
    read: impl FnOnce(&MetaValue) -> FfiResult<T>,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out, out_name)?;
        // SAFETY: `meta` is a handle argument.
        let value = unsafe { nnx_meta::borrow(meta, "meta") }?;
        out.write(read(value)?);
        Ok(())
    })
}

/// Creates `None`.
///
/// - `out_meta`: receives a new value, owned by the caller (free with
///   `nnx_meta_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_new_null(out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::Null))
}

/// Creates a boolean. As `nnx_meta_new_null`.
#[no_mangle]
pub extern "C" fn nnx_meta_new_bool(value: bool, out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::Bool(value)))
}

/// Creates an integer. As `nnx_meta_new_null`.
#[no_mangle]
pub extern "C" fn nnx_meta_new_int(value: i64, out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::Int(value)))
}

/// Creates a float (any bits: NaN and infinities too). As
/// `nnx_meta_new_null`.
#[no_mangle]
pub extern "C" fn nnx_meta_new_float(value: f64, out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::Float(value)))
}

/// Creates a string.
///
/// - `text`: borrowed for the call: `len` bytes of UTF-8, copied (no
///   terminator needed, NUL bytes allowed; NULL allowed when `len` is 0).
/// - `out_meta`: receives a new value, owned by the caller (free with
///   `nnx_meta_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_new_str(
    text: *const c_char,
    len: usize,
    out_meta: *mut *mut nnx_meta,
) -> nnx_status {
    new_meta(out_meta, || {
        // SAFETY: a text argument of `len` bytes.
        let text = unsafe { utf8_arg(text, len, "text") }?;
        Ok(MetaValue::Str(text.to_owned()))
    })
}

/// Creates an empty list; fill it with `nnx_meta_append`. As
/// `nnx_meta_new_null`.
#[no_mangle]
pub extern "C" fn nnx_meta_new_list(out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::List(MetaSeq::new())))
}

/// Creates an empty tuple; fill it with `nnx_meta_append`. As
/// `nnx_meta_new_null`.
#[no_mangle]
pub extern "C" fn nnx_meta_new_tuple(out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::Tuple(MetaSeq::new())))
}

/// Creates an empty map; fill it with `nnx_meta_map_set`. As
/// `nnx_meta_new_null`.
#[no_mangle]
pub extern "C" fn nnx_meta_new_map(out_meta: *mut *mut nnx_meta) -> nnx_status {
    new_meta(out_meta, || Ok(MetaValue::Map(MetaMap::new())))
}

/// Appends a copy of `item` to the list or tuple `seq`.
///
/// - `seq`: changed; no other thread may use it during the call.
/// - `item`: borrowed for the call (owned or borrowed, even a part of `seq`
///   or `seq` itself); the container keeps a copy, the caller keeps `item`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (`seq` is not a
/// list or tuple), `NNX_ERR_TOO_DEEP` (`seq` would nest more than
/// `NNX_MAX_DEPTH` levels). On failure `seq` is unchanged. Not thread-safe
/// for `seq`, as above.
#[no_mangle]
pub extern "C" fn nnx_meta_append(seq: *mut nnx_meta, item: *const nnx_meta) -> nnx_status {
    boundary(|| {
        // SAFETY: a handle argument; the copy is made before `seq` is
        // borrowed to change, so `item` may be a part of it.
        let item = unsafe { nnx_meta::borrow(item, "item") }?.clone();
        // SAFETY: a handle argument, used by this thread only (contract).
        let target = unsafe { nnx_meta::borrow_mut(seq, "seq") }?;
        match target {
            MetaValue::List(items) | MetaValue::Tuple(items) => items.push(item)?,
            other => return Err(wrong_kind(other, "a list or tuple")),
        }
        Ok(())
    })
}

/// Sets entry `key` of the map `map` to a copy of `value`: a new key goes
/// last, an existing one keeps its place and takes the new value (as in a
/// Python dict).
///
/// - `map`: changed; no other thread may use it during the call.
/// - `key`: borrowed for the call: `key_len` bytes of UTF-8, copied (NULL
///   allowed when `key_len` is 0).
/// - `value`: borrowed for the call (owned or borrowed, even a part of
///   `map`); the map keeps a copy, the caller keeps `value`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_WRONG_KIND` (`map` is not a map), `NNX_ERR_TOO_DEEP` (`map`
/// would nest more than `NNX_MAX_DEPTH` levels). On failure `map` is
/// unchanged. Not thread-safe for `map`, as above.
#[no_mangle]
pub extern "C" fn nnx_meta_map_set(
    map: *mut nnx_meta,
    key: *const c_char,
    key_len: usize,
    value: *const nnx_meta,
) -> nnx_status {
    boundary(|| {
        // SAFETY: pointer arguments; the copies are made before `map` is
        // borrowed to change, so `value` may be a part of it.
        let (key, value) = unsafe {
            (
                utf8_arg(key, key_len, "key")?.to_owned(),
                nnx_meta::borrow(value, "value")?.clone(),
            )
        };
        // SAFETY: a handle argument, used by this thread only (contract).
        let target = unsafe { nnx_meta::borrow_mut(map, "map") }?;
        match target {
            MetaValue::Map(entries) => {
                entries.insert(key, value)?;
            }
            other => return Err(wrong_kind(other, "a map")),
        }
        Ok(())
    })
}

/// Writes the kind of the value (one of the `NNX_META_*` values) to
/// `*out_kind`.
///
/// - `meta`: borrowed for the call (owned or borrowed).
/// - `out_kind`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_get_kind(
    meta: *const nnx_meta,
    out_kind: *mut nnx_meta_kind,
) -> nnx_status {
    read_meta(meta, out_kind, "out_kind", |v| Ok(meta_kind(v)))
}

/// Reads a boolean into `*out_value`.
///
/// - `meta`: borrowed for the call.
/// - `out_value`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (another kind).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_get_bool(meta: *const nnx_meta, out_value: *mut bool) -> nnx_status {
    read_meta(meta, out_value, "out_value", |v| match v {
        MetaValue::Bool(b) => Ok(*b),
        other => Err(wrong_kind(other, "a bool")),
    })
}

/// Reads an integer into `*out_value`. As `nnx_meta_get_bool`.
#[no_mangle]
pub extern "C" fn nnx_meta_get_int(meta: *const nnx_meta, out_value: *mut i64) -> nnx_status {
    read_meta(meta, out_value, "out_value", |v| match v {
        MetaValue::Int(i) => Ok(*i),
        other => Err(wrong_kind(other, "an int")),
    })
}

/// Reads a float into `*out_value`. As `nnx_meta_get_bool`.
#[no_mangle]
pub extern "C" fn nnx_meta_get_float(meta: *const nnx_meta, out_value: *mut f64) -> nnx_status {
    read_meta(meta, out_value, "out_value", |v| match v {
        MetaValue::Float(x) => Ok(*x),
        other => Err(wrong_kind(other, "a float")),
    })
}

/// Reads a string: writes its bytes to `*out_text` and their number to
/// `*out_len`.
///
/// - `meta`: borrowed for the call.
/// - `out_text`: borrowed from `meta`: UTF-8, not NUL-terminated (it may
///   hold NUL bytes), valid while `meta` lives and is not changed; not to be
///   freed.
/// - `out_text`, `out_len`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (another kind).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_get_str(
    meta: *const nnx_meta,
    out_text: *mut *const c_char,
    out_len: *mut usize,
) -> nnx_status {
    boundary(|| {
        let out_text = Out::new(out_text, "out_text")?;
        let out_len = Out::new(out_len, "out_len")?;
        // SAFETY: `meta` is a handle argument.
        let (text, len) = match unsafe { nnx_meta::borrow(meta, "meta") }? {
            MetaValue::Str(s) => str_to_c(s),
            other => return Err(wrong_kind(other, "a str")),
        };
        out_text.write(text);
        out_len.write(len);
        Ok(())
    })
}

/// Writes the number of items of a list or tuple, or of entries of a map,
/// to `*out_len`.
///
/// - `meta`: borrowed for the call.
/// - `out_len`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (a scalar or
/// None). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_len(meta: *const nnx_meta, out_len: *mut usize) -> nnx_status {
    read_meta(meta, out_len, "out_len", |v| match v {
        MetaValue::List(seq) | MetaValue::Tuple(seq) => Ok(seq.len()),
        MetaValue::Map(map) => Ok(map.len()),
        other => Err(wrong_kind(other, "a list, tuple or map")),
    })
}

/// Writes item `index` of a list or tuple to `*out_item`.
///
/// - `seq`: borrowed for the call.
/// - `out_item`: borrowed from `seq`: valid while `seq` lives and is not
///   changed; not to be freed (`nnx_meta_clone` makes an owned copy);
///   written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (not a list or
/// tuple), `NNX_ERR_INDEX_OUT_OF_RANGE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_item(
    seq: *const nnx_meta,
    index: usize,
    out_item: *mut *const nnx_meta,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_item, "out_item")?;
        // SAFETY: `seq` is a handle argument.
        let value = unsafe { nnx_meta::borrow(seq, "seq") }?;
        let Some(items) = value.as_seq() else {
            return Err(wrong_kind(value, "a list or tuple"));
        };
        let Some(item) = items.get(index) else {
            fail!(
                NNX_ERR_INDEX_OUT_OF_RANGE,
                "index {index} is out of range for a {} of {} items",
                value.kind_name(),
                items.len()
            );
        };
        out.write(nnx_meta::view(item));
        Ok(())
    })
}

fn as_map(value: &MetaValue) -> FfiResult<&MetaMap> {
    match value {
        MetaValue::Map(map) => Ok(map),
        other => Err(wrong_kind(other, "a map")),
    }
}

/// Writes entry `index` of a map (in insertion order): its key to
/// `*out_key` and `*out_key_len`, its value to `*out_value`.
///
/// - `map`: borrowed for the call.
/// - `out_key`: borrowed from `map`: UTF-8, not NUL-terminated, valid while
///   `map` lives and is not changed; not to be freed.
/// - `out_value`: borrowed from `map`, likewise.
/// - The outs are written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_WRONG_KIND` (not a map),
/// `NNX_ERR_INDEX_OUT_OF_RANGE`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_map_at(
    map: *const nnx_meta,
    index: usize,
    out_key: *mut *const c_char,
    out_key_len: *mut usize,
    out_value: *mut *const nnx_meta,
) -> nnx_status {
    boundary(|| {
        let out_key = Out::new(out_key, "out_key")?;
        let out_key_len = Out::new(out_key_len, "out_key_len")?;
        let out_value = Out::new(out_value, "out_value")?;
        // SAFETY: `map` is a handle argument.
        let map = as_map(unsafe { nnx_meta::borrow(map, "map") }?)?;
        let Some((key, value)) = map.get_index(index) else {
            fail!(
                NNX_ERR_INDEX_OUT_OF_RANGE,
                "index {index} is out of range for a map of {} entries",
                map.len()
            );
        };
        let (text, len) = str_to_c(key);
        out_key.write(text);
        out_key_len.write(len);
        out_value.write(nnx_meta::view(value));
        Ok(())
    })
}

/// Looks `key` up in a map and writes its value to `*out_value`.
///
/// - `map`: borrowed for the call.
/// - `key`: borrowed for the call: `key_len` bytes of UTF-8 (NULL allowed
///   when `key_len` is 0).
/// - `out_value`: borrowed from `map`: valid while `map` lives and is not
///   changed; not to be freed; written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_WRONG_KIND` (not a map), `NNX_ERR_KEY_NOT_FOUND`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_map_get(
    map: *const nnx_meta,
    key: *const c_char,
    key_len: usize,
    out_value: *mut *const nnx_meta,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_value, "out_value")?;
        // SAFETY: pointer arguments.
        let (map, key) = unsafe {
            (
                nnx_meta::borrow(map, "map")?,
                utf8_arg(key, key_len, "key")?,
            )
        };
        let Some(value) = as_map(map)?.get(key) else {
            fail!(NNX_ERR_KEY_NOT_FOUND, "the map has no key {key:?}");
        };
        out.write(nnx_meta::view(value));
        Ok(())
    })
}

/// Writes whether `a` and `b` are the same value to `*out_equal`: the same
/// kinds all the way down (1 and 1.0 differ, a list and a tuple differ),
/// maps with the same entries in the same order, floats compared as
/// numbers (NaN equals nothing).
///
/// - `a`, `b`: borrowed for the call.
/// - `out_equal`: written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_equal(
    a: *const nnx_meta,
    b: *const nnx_meta,
    out_equal: *mut bool,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_equal, "out_equal")?;
        // SAFETY: handle arguments.
        let (a, b) = unsafe { (nnx_meta::borrow(a, "a")?, nnx_meta::borrow(b, "b")?) };
        out.write(a == b);
        Ok(())
    })
}

/// Writes a copy of the value (owned or borrowed) to `*out_meta`.
///
/// - `meta`: borrowed for the call.
/// - `out_meta`: receives a new value, owned by the caller (free with
///   `nnx_meta_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_clone(
    meta: *const nnx_meta,
    out_meta: *mut *mut nnx_meta,
) -> nnx_status {
    read_meta(meta, out_meta, "out_meta", |v| {
        Ok(nnx_meta::into_raw(v.clone()))
    })
}

/// Frees a value the caller owns, with everything in it. NULL is a no-op.
/// Freeing a borrowed part of a value, or a value twice, is undefined
/// behaviour the library cannot detect. Thread-safe for distinct values.
#[no_mangle]
pub extern "C" fn nnx_meta_free(meta: *mut nnx_meta) {
    boundary(|| {
        // SAFETY: the caller gives up a value it owns (from `into_raw`).
        unsafe { box_free(meta.cast::<MetaValue>()) };
        Ok(())
    });
}

/// Writes the value as Python's `repr` shows it (`(None, 'model')`,
/// `{'lr': 0.001}`, `(1,)`, `True`, `nan`) to `*out_text`.
///
/// - `meta`: borrowed for the call.
/// - `out_text`: a new NUL-terminated string owned by the caller (free with
///   `nnx_string_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_to_string(
    meta: *const nnx_meta,
    out_text: *mut *mut c_char,
) -> nnx_status {
    read_meta(meta, out_text, "out_text", |v| {
        owned_c_string(&v.to_string())
    })
}

/// Writes the value's JSON form to `*out_text`, the form checkpoints
/// record: `null`, `true`/`false`, integers, floats with a fraction or an
/// exponent (`1.0`), strings, and tagged arrays for the rest, one JSON level
/// per level: `["tuple", null, "model"]`, `["list", 1, 2]`,
/// `["map", "lr", 0.001, "betas", ["tuple", 0.9, 0.999]]` (keys and values
/// in turn, in order), `["float", "0x7ff8000000000000"]` (a NaN or an
/// infinity, by its IEEE bits). `nnx_meta_from_json` reads it back exactly.
///
/// - `meta`: borrowed for the call.
/// - `out_text`: a new NUL-terminated UTF-8 string owned by the caller (free
///   with `nnx_string_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_to_json(
    meta: *const nnx_meta,
    out_text: *mut *mut c_char,
) -> nnx_status {
    read_meta(meta, out_text, "out_text", |v| {
        owned_c_string(&meta_to_text(v))
    })
}

/// Reads a value from its JSON form (as `nnx_meta_to_json` writes it).
///
/// - `text`: borrowed for the call: `len` bytes of UTF-8 JSON (NULL allowed
///   when `len` is 0, which is not valid JSON).
/// - `out_meta`: receives a new value, owned by the caller (free with
///   `nnx_meta_free`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_UTF8`,
/// `NNX_ERR_FORMAT` (not JSON, or not the form: a JSON object, an unknown
/// tag, an integer outside int64, a repeated map key, ...),
/// `NNX_ERR_TOO_DEEP` (more than `NNX_MAX_DEPTH` levels). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_meta_from_json(
    text: *const c_char,
    len: usize,
    out_meta: *mut *mut nnx_meta,
) -> nnx_status {
    new_meta(out_meta, || {
        // SAFETY: a text argument of `len` bytes.
        let text = unsafe { utf8_arg(text, len, "text") }?;
        Ok(meta_from_text(text)?)
    })
}

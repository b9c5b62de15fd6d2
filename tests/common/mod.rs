//! Helpers shared by the C API tests (`ffi_contract.rs`,
//! `ffi_behaviour.rs` and the other `tests/*.rs` that call the C functions):
//! paths with owned key storage, status assertions, sentinels for
//! out-pointers, RAII guards that free handles, counted release callbacks,
//! and (in `header`) the function list of `include/nnx_state.h`.

#![allow(dead_code)]

pub mod header;

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use ::nnx_state::ffi::array::*;
pub use ::nnx_state::ffi::error::*;
pub use ::nnx_state::ffi::filter::*;
pub use ::nnx_state::ffi::flat::*;
pub use ::nnx_state::ffi::key::*;
pub use ::nnx_state::ffi::meta::*;
pub use ::nnx_state::ffi::state::*;
pub use ::nnx_state::ffi::types::*;
pub use ::nnx_state::ffi::variable::*;

// ---------------------------------------------------------------------------
// Messages and statuses

/// This thread's last error message.
pub fn last_error() -> String {
    let ptr = nnx_last_error_message();
    assert!(!ptr.is_null(), "nnx_last_error_message returned NULL");
    // SAFETY: the library returns a NUL-terminated string valid until the
    // next failing call on this thread.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The library's name for a status.
pub fn status_name(status: nnx_status) -> String {
    name_of(status as i32)
}

/// The library's name for any integer status value.
pub fn name_of(value: i32) -> String {
    let ptr = nnx_status_name(value);
    assert!(!ptr.is_null(), "nnx_status_name returned NULL");
    // SAFETY: a static NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Makes the last error message a known, unrelated one, and returns it, so
/// that a later assertion on the message cannot pass on a stale one.
pub fn prime_error() -> String {
    let name = cstr("__ffi_tests_primed_message__");
    let mut out = SENTINEL_U32;
    let status = nnx_type_lookup(name.as_ptr(), &mut out);
    assert_eq!(status, nnx_status::NNX_ERR_KEY_NOT_FOUND);
    let message = last_error();
    assert!(
        message.contains("__ffi_tests_primed_message__"),
        "{message}"
    );
    message
}

/// Asserts that a call succeeds; shows the status name and message if not.
#[allow(unused_macros)]
macro_rules! ok {
    ($call:expr) => {{
        let status = $call;
        assert_eq!(
            status,
            $crate::common::nnx_status::NNX_OK,
            "`{}` failed with {}: {}",
            stringify!($call),
            $crate::common::status_name(status),
            $crate::common::last_error()
        );
    }};
}

/// Asserts that a call fails with `status` and returns its message. The
/// message is checked to be fresh (not left from an earlier call) and not
/// empty.
#[allow(unused_macros)]
macro_rules! fails {
    ($call:expr, $status:ident) => {{
        let primed = $crate::common::prime_error();
        let status = $call;
        assert_eq!(
            status,
            $crate::common::nnx_status::$status,
            "`{}` gave {} ({:?}), expected {}",
            stringify!($call),
            $crate::common::status_name(status),
            $crate::common::last_error(),
            stringify!($status)
        );
        let message = $crate::common::last_error();
        assert!(
            !message.is_empty() && message != primed,
            "`{}` failed with {} but left no message of its own: {:?}",
            stringify!($call),
            stringify!($status),
            message
        );
        message
    }};
}

/// Asserts that a call fails with `NNX_ERR_NULL_ARGUMENT` and that the
/// message names the argument.
#[allow(unused_macros)]
macro_rules! null_arg {
    ($call:expr, $arg:expr) => {{
        let message = fails!($call, NNX_ERR_NULL_ARGUMENT);
        let arg: &str = $arg;
        assert!(
            message.contains(&format!("`{arg}`")),
            "`{}`: message {:?} does not name argument `{}`",
            stringify!($call),
            message,
            arg
        );
        assert!(
            message.contains("NULL"),
            "`{}`: message {:?} does not say NULL",
            stringify!($call),
            message
        );
    }};
}

/// Asserts that `haystack` contains `needle`.
#[allow(unused_macros)]
macro_rules! assert_contains {
    ($haystack:expr, $needle:expr) => {{
        let haystack: &str = &$haystack;
        let needle: &str = &$needle;
        assert!(
            haystack.contains(needle),
            "{:?} does not contain {:?}",
            haystack,
            needle
        );
    }};
}

// ---------------------------------------------------------------------------
// Sentinels for out-pointers

/// An address no successful call would write: pre-fill pointer outs with it.
pub const SENTINEL: usize = 0x5E57_1E11;

pub fn sentinel<T>() -> *mut T {
    SENTINEL as *mut T
}

pub fn sentinel_const<T>() -> *const T {
    SENTINEL as *const T
}

/// Pre-filled `u32` outs (dtype, kind, type id, metadata kind).
pub const SENTINEL_U32: u32 = 0xDEAD_BEEF;
/// Pre-filled `i64` outs.
pub const SENTINEL_I64: i64 = -0x5E57_1E11;
/// Pre-filled `f64` outs (compared by bits).
pub const SENTINEL_F64: f64 = -12345.678;
/// The byte behind a pre-filled `bool` out (never read as a `bool`).
pub const SENTINEL_BOOL_BYTE: u8 = 0xA5;

/// Storage for a `bool` out-parameter that can hold a value no `bool` has,
/// so "untouched" is observable. Only read as a byte unless written.
pub struct BoolOut(u8);

impl BoolOut {
    pub fn new() -> BoolOut {
        BoolOut(SENTINEL_BOOL_BYTE)
    }

    pub fn ptr(&mut self) -> *mut bool {
        (&mut self.0 as *mut u8).cast()
    }

    pub fn untouched(&self) -> bool {
        self.0 == SENTINEL_BOOL_BYTE
    }

    pub fn get(&self) -> bool {
        bool_of(self.0)
    }
}

/// The `bool` a byte out-parameter holds; panics if it holds no `bool`.
pub fn bool_of(byte: u8) -> bool {
    match byte {
        0 => false,
        1 => true,
        other => panic!("bool out holds {other:#x}: not written"),
    }
}

impl Default for BoolOut {
    fn default() -> Self {
        BoolOut::new()
    }
}

/// An `nnx_key` out pre-filled with sentinel values.
pub fn sentinel_key() -> nnx_key {
    nnx_key {
        kind: SENTINEL_U32,
        str: sentinel_const(),
        str_len: SENTINEL,
        int_value: SENTINEL_I64,
    }
}

pub fn key_untouched(key: &nnx_key) -> bool {
    key.kind == SENTINEL_U32
        && key.str == sentinel_const()
        && key.str_len == SENTINEL
        && key.int_value == SENTINEL_I64
}

// ---------------------------------------------------------------------------
// Paths

/// One key of a test path.
#[derive(Clone, Debug)]
pub enum K<'a> {
    /// A UTF-8 string key.
    S(&'a str),
    /// An integer key.
    I(i64),
    /// A string key with arbitrary bytes (for invalid UTF-8).
    Raw(&'a [u8]),
    /// A string key with a NULL `str` and this `str_len`.
    NullStr(usize),
    /// A key of this (invalid) kind, with the valid text "a" beside it.
    Kind(u32),
    /// An int key whose unused `str` is NULL and `str_len` is not 0.
    IntJunk(i64, usize),
}

impl<'a> From<&'a str> for K<'a> {
    fn from(text: &'a str) -> Self {
        K::S(text)
    }
}

impl From<i64> for K<'_> {
    fn from(value: i64) -> Self {
        K::I(value)
    }
}

impl From<i32> for K<'_> {
    fn from(value: i32) -> Self {
        K::I(value.into())
    }
}

/// A C path whose string keys point into storage the path owns.
pub struct Path {
    _storage: Vec<Box<[u8]>>,
    keys: Vec<nnx_key>,
}

impl Path {
    pub fn new(parts: &[K<'_>]) -> Path {
        let mut storage = Vec::new();
        let mut keys = Vec::new();
        for part in parts {
            let key = match part {
                K::I(value) => nnx_key {
                    kind: NNX_KEY_INT,
                    str: std::ptr::null(),
                    str_len: 0,
                    int_value: *value,
                },
                K::S(text) => string_key(&mut storage, text.as_bytes()),
                K::Raw(bytes) => string_key(&mut storage, bytes),
                K::NullStr(len) => nnx_key {
                    kind: NNX_KEY_STR,
                    str: std::ptr::null(),
                    str_len: *len,
                    int_value: 0,
                },
                K::Kind(kind) => nnx_key {
                    kind: *kind,
                    str: b"a".as_ptr().cast(),
                    str_len: 1,
                    int_value: 0,
                },
                K::IntJunk(value, len) => nnx_key {
                    kind: NNX_KEY_INT,
                    str: std::ptr::null(),
                    str_len: *len,
                    int_value: *value,
                },
            };
            keys.push(key);
        }
        Path {
            _storage: storage,
            keys,
        }
    }

    pub fn ptr(&self) -> *const nnx_key {
        if self.keys.is_empty() {
            std::ptr::null()
        } else {
            self.keys.as_ptr()
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key, for functions that take one `nnx_key`.
    pub fn key(&self) -> *const nnx_key {
        assert!(!self.keys.is_empty());
        &self.keys[0]
    }

    /// An `nnx_path` over this path's keys (borrowing them).
    pub fn as_c(&self) -> nnx_path {
        nnx_path {
            keys: self.ptr(),
            len: self.len(),
        }
    }
}

fn string_key(storage: &mut Vec<Box<[u8]>>, bytes: &[u8]) -> nnx_key {
    let owned: Box<[u8]> = bytes.into();
    let key = nnx_key {
        kind: NNX_KEY_STR,
        // A boxed slice does not move when the vector holding it grows.
        str: owned.as_ptr().cast(),
        str_len: owned.len(),
        int_value: 0,
    };
    storage.push(owned);
    key
}

/// `path!["a", 0, "b"]`: a C path of string and integer keys.
#[allow(unused_macros)]
macro_rules! path {
    ($($part:expr),* $(,)?) => {
        $crate::common::Path::new(&[$($crate::common::K::from($part)),*])
    };
}

/// A NUL-terminated UTF-8 string from the library.
pub fn text_of(ptr: *const c_char) -> String {
    assert!(!ptr.is_null());
    // SAFETY: a NUL-terminated string from the library.
    unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned()
}

pub fn cstr(text: &str) -> CString {
    CString::new(text).expect("no NUL in test strings")
}

/// A C string of any bytes but NUL (for invalid UTF-8).
pub fn raw_cstr(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL in test bytes")
}

/// Byte strings that are not UTF-8: a stray byte, a cut sequence, a
/// surrogate, an overlong form, a bad continuation.
pub const BAD_UTF8: [&[u8]; 5] = [
    b"Bad\xffName",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xc3\x28",
];

// ---------------------------------------------------------------------------
// Handle guards

#[allow(unused_macros)]
/// A guard of a handle: gives its pointer, frees or releases it on drop.
pub trait Guard: 'static {
    type T: 'static;
    fn ptr(&self) -> *mut Self::T;
}

macro_rules! guard {
    ($name:ident, $handle:ty, $free:ident) => {
        /// Frees or releases its handle on drop.
        pub struct $name(pub *mut $handle);

        impl Guard for $name {
            type T = $handle;
            fn ptr(&self) -> *mut $handle {
                self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                $free(self.0);
            }
        }
    };
}

guard!(St, nnx_state, nnx_state_free);
guard!(Arr, nnx_array, nnx_array_release);
guard!(Var, nnx_variable, nnx_variable_release);
guard!(Flt, nnx_filter, nnx_filter_free);
guard!(Flat, nnx_flat, nnx_flat_free);
guard!(LibStr, c_char, nnx_string_free);
guard!(Meta, nnx_meta, nnx_meta_free);

impl LibStr {
    pub fn text(&self) -> String {
        assert!(!self.0.is_null());
        // SAFETY: a NUL-terminated string from the library.
        unsafe { CStr::from_ptr(self.0) }
            .to_string_lossy()
            .into_owned()
    }
}

// ---------------------------------------------------------------------------
// Builders

/// What a constructor hands out through its out-pointer.
pub fn made<T>(make: impl FnOnce(*mut *mut T) -> nnx_status) -> *mut T {
    let mut out = std::ptr::null_mut();
    ok!(make(&mut out));
    assert!(!out.is_null());
    out
}

pub fn new_state() -> St {
    St(made(|out| nnx_state_new(out)))
}

pub fn f32_array(shape: &[i64], values: &[f32]) -> Arr {
    new_array(NNX_DTYPE_F32, shape, values)
}

/// A copy of `values` as an array of `dtype` and `shape`.
fn new_array<T>(dtype: nnx_dtype, shape: &[i64], values: &[T]) -> Arr {
    let (dims, ndim) = (shape.as_ptr(), shape.len());
    let (data, nbytes) = (values.as_ptr().cast(), std::mem::size_of_val(values));
    Arr(made(|out| {
        nnx_array_new(dtype, dims, ndim, data, nbytes, out)
    }))
}

/// An f32 vector over the caller's `data`; the library calls `release(ud)`
/// when it lets go of it.
pub fn wrap_f32(data: &mut [f32], writable: bool, release: nnx_release_fn, ud: *mut c_void) -> Arr {
    let (shape, nbytes) = ([data.len() as i64], std::mem::size_of_val(data));
    let (mut out, ptr) = (std::ptr::null_mut(), data.as_mut_ptr().cast());
    ok!(nnx_array_wrap(
        NNX_DTYPE_F32,
        shape.as_ptr(),
        1,
        ptr,
        nbytes,
        writable,
        release,
        ud,
        &mut out
    ));
    Arr(out)
}

pub fn variable(type_id: nnx_type_id, value: Option<&Arr>) -> Var {
    let mut out = std::ptr::null_mut();
    let value = value.map_or(std::ptr::null(), |a| a.ptr().cast_const());
    ok!(nnx_variable_new(type_id, value, &mut out));
    assert!(!out.is_null());
    Var(out)
}

pub fn u32_array(shape: &[i64], values: &[u32]) -> Arr {
    new_array(NNX_DTYPE_U32, shape, values)
}

/// An `RngKey` variable holding a typed key of `impl_name` over `data`.
pub fn key_var(data: &Arr, impl_name: &str) -> Var {
    let name = cstr(impl_name);
    let mut out = std::ptr::null_mut();
    ok!(nnx_variable_new_key(
        NNX_TYPE_RNG_KEY,
        data.ptr(),
        name.as_ptr(),
        &mut out
    ));
    Var(out)
}

/// A `Param` variable holding an opaque value of `type_name` at `object`
/// whose release increments `counter`.
pub fn opaque_var(type_name: &str, object: *mut c_void, counter: &Counter) -> Var {
    let name = cstr(type_name);
    let mut out = std::ptr::null_mut();
    ok!(nnx_variable_new_opaque(
        NNX_TYPE_PARAM,
        name.as_ptr(),
        object,
        Some(count_release),
        counter.as_user_data(),
        &mut out
    ));
    Var(out)
}

/// What the variable's value is (`NNX_VALUE_*`).
pub fn value_kind(var: *const nnx_variable) -> nnx_value_kind {
    let mut kind = SENTINEL_U32;
    ok!(nnx_variable_value_kind(var, &mut kind));
    kind
}

/// The variable's typed key: its data (owned) and implementation name.
pub fn get_key(var: *const nnx_variable) -> (Arr, String) {
    let mut data = std::ptr::null_mut();
    let mut name = std::ptr::null();
    ok!(nnx_variable_get_key(var, &mut data, &mut name));
    (Arr(data), text_of(name))
}

/// The variable's opaque value: its object and type name.
pub fn get_opaque(var: *const nnx_variable) -> (*mut c_void, String) {
    let mut object = std::ptr::null_mut();
    let mut name = std::ptr::null();
    ok!(nnx_variable_get_opaque(var, &mut object, &mut name));
    (object, text_of(name))
}

/// A variable of `type_id` holding a fresh f32 vector.
pub fn var_with(type_id: nnx_type_id, values: &[f32]) -> Var {
    let array = f32_array(&[values.len() as i64], values);
    variable(type_id, Some(&array))
}

// ---------------------------------------------------------------------------
// Metadata values

/// A value made by one of the `nnx_meta_new_*` constructors.
pub fn meta_made(make: impl FnOnce(*mut *mut nnx_meta) -> nnx_status) -> Meta {
    Meta(made(make))
}

pub fn meta_null() -> Meta {
    meta_made(|out| nnx_meta_new_null(out))
}

pub fn meta_int(value: i64) -> Meta {
    meta_made(|out| nnx_meta_new_int(value, out))
}

pub fn meta_bool(value: bool) -> Meta {
    meta_made(|out| nnx_meta_new_bool(value, out))
}

pub fn meta_float(value: f64) -> Meta {
    meta_made(|out| nnx_meta_new_float(value, out))
}

pub fn meta_str(text: &str) -> Meta {
    meta_made(|out| nnx_meta_new_str(text.as_ptr().cast(), text.len(), out))
}

/// A list (or, with `tuple`, a tuple) of copies of `items`.
pub fn meta_seq(tuple: bool, items: &[&Meta]) -> Meta {
    let seq = if tuple {
        meta_made(|out| nnx_meta_new_tuple(out))
    } else {
        meta_made(|out| nnx_meta_new_list(out))
    };
    for item in items {
        ok!(nnx_meta_append(seq.ptr(), item.ptr()));
    }
    seq
}

/// A map of copies of `entries`, in order.
pub fn meta_map(entries: &[(&str, &Meta)]) -> Meta {
    let map = meta_made(|out| nnx_meta_new_map(out));
    for (key, value) in entries {
        ok!(nnx_meta_map_set(
            map.ptr(),
            key.as_ptr().cast(),
            key.len(),
            value.ptr()
        ));
    }
    map
}

/// The value as Python's `repr` shows it (`nnx_meta_to_string`).
pub fn meta_repr(meta: *const nnx_meta) -> String {
    let mut out = std::ptr::null_mut();
    ok!(nnx_meta_to_string(meta, &mut out));
    LibStr(out).text()
}

/// `levels` nested lists around `None`.
pub fn meta_nested(levels: usize) -> Meta {
    let mut value = meta_null();
    for _ in 0..levels {
        value = meta_seq(false, &[&value]);
    }
    value
}

pub fn of_type(type_id: nnx_type_id) -> Flt {
    Flt(made(|out| nnx_filter_of_type(type_id, out)))
}

pub fn everything() -> Flt {
    Flt(made(|out| nnx_filter_everything(out)))
}

pub fn nothing() -> Flt {
    Flt(made(|out| nnx_filter_nothing(out)))
}

/// A filter asking `callback`, which gets `ud`, released by `release`.
pub fn callback_filter(callback: nnx_filter_fn, ud: *mut c_void, release: nnx_release_fn) -> Flt {
    Flt(made(|out| nnx_filter_callback(callback, ud, release, out)))
}

pub fn any_of(parts: &[&Flt]) -> Flt {
    let ptrs = filter_ptrs(parts);
    Flt(made(|out| nnx_filter_any(ptrs.as_ptr(), ptrs.len(), out)))
}

/// The raw pointers of some filters, for the list arguments.
pub fn filter_ptrs(parts: &[&Flt]) -> Vec<*mut nnx_filter> {
    parts.iter().map(|f| f.ptr()).collect()
}

pub fn set_var(state: &St, path: &str, var: &Var) {
    let (state, path) = (state.ptr(), cstr(path));
    ok!(nnx_state_set_variable_str(state, path.as_ptr(), var.ptr()));
}

/// Sets a copy of `value` at `path` (a snapshot, even of `state` itself).
pub fn set_state(state: &St, path: &str, value: &St) {
    let (state, path) = (state.ptr(), cstr(path));
    ok!(nnx_state_set_state_str(state, path.as_ptr(), value.ptr()));
}

/// The live view of `state`'s nested state at `path`.
pub fn view(state: &St, path: &str) -> St {
    let (state, path) = (state.ptr(), cstr(path));
    St(made(|o| nnx_state_get_state_str(state, path.as_ptr(), o)))
}

pub fn set_arr(state: &St, path: &str, array: &Arr) {
    let (state, path) = (state.ptr(), cstr(path));
    ok!(nnx_state_set_array_str(state, path.as_ptr(), array.ptr()));
}

/// Where an array's bytes are, as `nnx_array_data` gives it.
pub fn data_ptr(array: *const nnx_array) -> *const c_void {
    let mut data = std::ptr::null();
    ok!(nnx_array_data(array, &mut data));
    data
}

/// The state's listing, as `nnx_state_to_string` gives it.
pub fn listing(state: *const nnx_state) -> String {
    let mut out = std::ptr::null_mut();
    ok!(nnx_state_to_string(state, &mut out));
    LibStr(out).text()
}

/// The safetensors `__metadata__` entries a state handle carries, in order.
pub fn file_metadata(state: *const nnx_state) -> Vec<(String, String)> {
    use ::nnx_state::ffi::io::{nnx_safetensors_metadata_at, nnx_safetensors_metadata_len};
    let mut len = usize::MAX;
    ok!(nnx_safetensors_metadata_len(state, &mut len));
    (0..len)
        .map(|i| {
            let (mut name, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
            ok!(nnx_safetensors_metadata_at(state, i, &mut name, &mut value));
            (LibStr(name).text(), LibStr(value).text())
        })
        .collect()
}

pub fn leaves(state: *const nnx_state) -> usize {
    let mut count = usize::MAX;
    ok!(nnx_state_num_leaves(state, &mut count));
    count
}

/// A key as text: an int as `#N`, a string as itself.
pub fn key_text(key: &nnx_key) -> String {
    if key.kind == NNX_KEY_INT {
        return format!("#{}", key.int_value);
    }
    // SAFETY: `str_len` bytes lent by the library with the key.
    let bytes = unsafe { std::slice::from_raw_parts(key.str.cast::<u8>(), key.str_len) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// A flat list's (path, kind, leaf address) entries, in order.
pub fn flat_entries(flat: *const nnx_flat) -> Vec<(String, u32, usize)> {
    let mut len = 0;
    ok!(nnx_flat_len(flat, &mut len));
    (0..len)
        .map(|i| {
            let (mut keys, mut n, mut kind) = (std::ptr::null(), 0, 0);
            ok!(nnx_flat_path(flat, i, &mut keys, &mut n));
            ok!(nnx_flat_kind(flat, i, &mut kind));
            // SAFETY: `n` keys lent by the list while it lives.
            let keys = unsafe { std::slice::from_raw_parts(keys, n) };
            let path: Vec<String> = keys.iter().map(key_text).collect();
            let leaf = if kind == NNX_KIND_VARIABLE {
                let mut v = std::ptr::null_mut();
                ok!(nnx_flat_variable(flat, i, &mut v));
                v as usize
            } else {
                let mut a = std::ptr::null_mut();
                ok!(nnx_flat_array(flat, i, &mut a));
                a as usize
            };
            (path.join("/"), kind, leaf)
        })
        .collect()
}

/// The state's (path, kind, leaf address) entries: what a failed call must
/// leave as it was, down to the identity of every leaf.
pub fn identities(state: *const nnx_state) -> Vec<(String, u32, usize)> {
    let mut flat = std::ptr::null_mut();
    ok!(nnx_state_flatten(state, &mut flat));
    let flat = Flat(flat);
    flat_entries(flat.ptr())
}

pub fn top_len(state: *const nnx_state) -> usize {
    let mut len = usize::MAX;
    ok!(nnx_state_len(state, &mut len));
    len
}

/// A state with every kind of entry, inserted out of sorted order:
///
/// ```text
/// z: Param f32[2]
/// b: { 1: BatchStat f32[1] (tag "stats"), x: bare f32[3] }
/// a: Param f32[1]
/// e: { 0: Cache (no value) }
/// ```
pub fn sample_state() -> St {
    sample_state_of(|values| f32_array(&[values.len() as i64], values))
}

/// The sample state with its arrays made by `array`.
pub fn sample_state_of(mut array: impl FnMut(&[f32]) -> Arr) -> St {
    let state = new_state();
    let z = variable(NNX_TYPE_PARAM, Some(&array(&[1.0, 2.0])));
    set_var(&state, "z", &z);
    let stat = variable(NNX_TYPE_BATCH_STAT, Some(&array(&[3.0])));
    let tag_name = cstr("tag");
    let tag_value = cstr("stats");
    ok!(nnx_variable_set_metadata_str(
        stat.ptr(),
        tag_name.as_ptr(),
        tag_value.as_ptr()
    ));
    set_var(&state, "b/1", &stat);
    set_arr(&state, "b/x", &array(&[4.0, 5.0, 6.0]));
    set_var(&state, "a", &variable(NNX_TYPE_PARAM, Some(&array(&[7.0]))));
    set_var(&state, "e/0", &variable(NNX_TYPE_CACHE, None));
    state
}

pub const SAMPLE_LEAVES: usize = 5;

// ---------------------------------------------------------------------------
// Release callbacks that count their calls

/// A counter that a release callback increments; pass `as_user_data()`.
#[derive(Default)]
pub struct Counter(AtomicUsize);

impl Counter {
    pub fn new() -> Box<Counter> {
        Box::new(Counter(AtomicUsize::new(0)))
    }

    pub fn as_user_data(&self) -> *mut c_void {
        (self as *const Counter).cast_mut().cast()
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A release callback: increments the `Counter` behind `user_data`.
pub unsafe extern "C" fn count_release(user_data: *mut c_void) {
    // SAFETY: tests pass a live `Counter` as user data.
    let counter = unsafe { &*(user_data as *const Counter) };
    counter.0.fetch_add(1, Ordering::SeqCst);
}

/// A filter callback that matches every leaf.
pub unsafe extern "C" fn match_all(
    _user_data: *mut c_void,
    _path: *const nnx_key,
    _path_len: usize,
    _kind: nnx_kind,
    _variable: *const nnx_variable,
    _array: *const nnx_array,
) -> std::ffi::c_int {
    1
}

/// A filter callback that answers 7: neither yes nor no.
pub unsafe extern "C" fn answer_seven(
    _user_data: *mut c_void,
    _path: *const nnx_key,
    _path_len: usize,
    _kind: nnx_kind,
    _variable: *const nnx_variable,
    _array: *const nnx_array,
) -> std::ffi::c_int {
    7
}

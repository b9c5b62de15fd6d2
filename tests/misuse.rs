//! Misuse of the C API gets a status, never a crash, and a failed call
//! loses nothing.
//!
//! Misuse (other than NULL arguments, which `ffi_null.rs` covers function by
//! function): indexes out of range, key kinds that do not exist, empty and
//! invalid UTF-8 strings everywhere a string goes in (type names, tags,
//! metadata names and values, keys, `_str` paths), shapes with negative
//! dimensions or byte sizes that overflow, NULL inside arrays of handles,
//! zero counts, callbacks answering neither 0 nor 1, views whose place is
//! gone. Each failing call must return the documented status, leave its
//! out-pointers alone and leave its inputs as they were.
//!
//! Nothing lost: a split that fails midway (a callback that fails after
//! some leaves were already placed, from C and from Rust, even a Rust
//! callback that panics), a failed update, set, set_state or remove, leave
//! the state exactly as it was (its listing and the identity of every leaf)
//! and keep no stray reference: every array lent to the library is given
//! back exactly once, when the test lets go of it.
//!
//! What the library cannot detect, and so is not tested: use after free,
//! double free, an out-array shorter than the count passed with it, a
//! buffer shorter than the length passed with it.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use ::nnx_state::ffi::array::*;
use ::nnx_state::ffi::error::*;
use ::nnx_state::ffi::filter::*;
use ::nnx_state::ffi::flat::*;
use ::nnx_state::ffi::key::*;
use ::nnx_state::ffi::state::*;
use ::nnx_state::ffi::types::*;
use ::nnx_state::ffi::variable::*;
use ::nnx_state::{
    parse_path, Array, Buffer, DType, Device, ErrorKind, Filter, Key, Leaf, State, TypeId, Variable,
};

use nnx_status::*;

// ---------------------------------------------------------------------------
// Helpers

fn last_error() -> String {
    // SAFETY: the library's message, NUL-terminated, valid until the next
    // failing call on this thread.
    unsafe { CStr::from_ptr(nnx_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[track_caller]
fn expect(status: nnx_status, want: nnx_status) {
    assert_eq!(
        status,
        want,
        "got {status:?}, expected {want:?} (last message: {})",
        last_error()
    );
}

#[track_caller]
fn ok(status: nnx_status) {
    expect(status, NNX_OK);
}

/// A pointer no call may write over a failure.
fn sentinel<T>() -> *mut T {
    0x5eed_0000usize as *mut T
}

/// A key over borrowed bytes.
fn str_key(bytes: &[u8]) -> nnx_key {
    nnx_key {
        kind: NNX_KEY_STR,
        str: bytes.as_ptr().cast(),
        str_len: bytes.len(),
        int_value: 0,
    }
}

fn int_key(value: i64) -> nnx_key {
    nnx_key {
        kind: NNX_KEY_INT,
        str: null(),
        str_len: 0,
        int_value: value,
    }
}

fn kind_key(kind: nnx_key_kind) -> nnx_key {
    nnx_key {
        kind,
        str: b"a".as_ptr().cast(),
        str_len: 1,
        int_value: 0,
    }
}

fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL inside")
}

/// Byte strings that are not UTF-8: a stray byte, a cut sequence, a
/// surrogate, an overlong form.
const BAD_UTF8: [&[u8]; 4] = [b"a\xffb", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"];

/// Counts the times the library hands caller data back.
#[derive(Default)]
struct Released(AtomicU32);

impl Released {
    fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }

    fn user_data(&self) -> *mut c_void {
        (self as *const Released).cast_mut().cast()
    }
}

unsafe extern "C" fn count_release(user_data: *mut c_void) {
    // SAFETY: a `Released` the test keeps alive.
    unsafe { &*(user_data as *const Released) }
        .0
        .fetch_add(1, Ordering::SeqCst);
}

static DATA: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

/// An owned array handle over `DATA` whose release is counted in `released`.
fn wrapped(released: &Released) -> *mut nnx_array {
    let mut array = null_mut();
    let shape = [4i64];
    ok(nnx_array_wrap(
        NNX_DTYPE_F32,
        shape.as_ptr(),
        1,
        DATA.as_ptr().cast_mut().cast(),
        16,
        false,
        Some(count_release),
        released.user_data(),
        &mut array,
    ));
    array
}

/// An owned variable handle whose value is a counted array.
fn variable(type_id: nnx_type_id, released: &Released) -> *mut nnx_variable {
    let value = wrapped(released);
    let mut var = null_mut();
    ok(nnx_variable_new(type_id, value, &mut var));
    nnx_array_release(value);
    var
}

fn new_state() -> *mut nnx_state {
    let mut state = null_mut();
    ok(nnx_state_new(&mut state));
    state
}

fn set_var(state: *mut nnx_state, path: &str, var: *const nnx_variable) {
    let path = cstring(path.as_bytes());
    ok(nnx_state_set_variable_str(state, path.as_ptr(), var));
}

fn set_arr(state: *mut nnx_state, path: &str, array: *const nnx_array) {
    let path = cstring(path.as_bytes());
    ok(nnx_state_set_array_str(state, path.as_ptr(), array));
}

fn listing(state: *const nnx_state) -> String {
    let mut text: *mut c_char = null_mut();
    ok(nnx_state_to_string(state, &mut text));
    // SAFETY: an owned NUL-terminated string from the library.
    let out = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    nnx_string_free(text);
    out
}

/// The state's (path, leaf identity) list, through the C API.
fn identities(state: *const nnx_state) -> Vec<(String, usize)> {
    let mut flat = null_mut();
    ok(nnx_state_flatten(state, &mut flat));
    let mut len = 0;
    ok(nnx_flat_len(flat, &mut len));
    let mut out = Vec::new();
    for i in 0..len {
        let (mut keys, mut n, mut kind) = (null(), 0, 0);
        ok(nnx_flat_path(flat, i, &mut keys, &mut n));
        ok(nnx_flat_kind(flat, i, &mut kind));
        // SAFETY: `n` keys lent by the list.
        let keys = unsafe { std::slice::from_raw_parts(keys, n) };
        let text: Vec<String> = keys
            .iter()
            .map(|k| {
                if k.kind == NNX_KEY_INT {
                    format!("#{}", k.int_value)
                } else {
                    // SAFETY: `str_len` bytes lent by the list.
                    let b = unsafe { std::slice::from_raw_parts(k.str.cast::<u8>(), k.str_len) };
                    String::from_utf8_lossy(b).into_owned()
                }
            })
            .collect();
        let id = if kind == NNX_KIND_VARIABLE {
            let mut v = null_mut();
            ok(nnx_flat_variable(flat, i, &mut v));
            v as usize
        } else {
            let mut a = null_mut();
            ok(nnx_flat_array(flat, i, &mut a));
            a as usize
        };
        out.push((text.join("/"), id));
    }
    nnx_flat_free(flat);
    out
}

/// Runs `f` and asserts that `state`'s listing and leaves are the same
/// afterwards.
#[track_caller]
fn unchanged(state: *const nnx_state, f: impl FnOnce()) {
    let (text, leaves) = (listing(state), identities(state));
    f();
    assert_eq!(listing(state), text, "the state's listing changed");
    assert_eq!(identities(state), leaves, "the state's leaves changed");
}

/// Every state function that takes a path fails on `(p, n)` with `want` and
/// writes none of its outputs.
#[track_caller]
fn every_path_function_fails(
    state: *mut nnx_state,
    p: *const nnx_key,
    n: usize,
    var: *const nnx_variable,
    array: *const nnx_array,
    want: nnx_status,
) {
    expect(nnx_state_set_variable(state, p, n, var), want);
    expect(nnx_state_set_array(state, p, n, array), want);
    expect(nnx_state_set_state(state, p, n, state), want);
    expect(nnx_state_remove(state, p, n), want);
    let mut k = 77;
    expect(nnx_state_get_kind(state, p, n, &mut k), want);
    let mut b = false;
    expect(nnx_state_contains(state, p, n, &mut b), want);
    let mut v = sentinel();
    expect(nnx_state_get_variable(state, p, n, &mut v), want);
    let mut a = sentinel();
    expect(nnx_state_get_array(state, p, n, &mut a), want);
    let mut s = sentinel();
    expect(nnx_state_get_state(state, p, n, &mut s), want);
    assert!(!b, "contains wrote its output");
    assert_eq!((k, v, a, s), (77, sentinel(), sentinel(), sentinel()));
}

/// A model of three layers: `layers/{0,1,2}/{kernel,bias}` Params,
/// `bn/{mean,var}` BatchStats, `embed` a bare array; every value counted in
/// `released`.
fn model(released: &Released) -> *mut nnx_state {
    let state = new_state();
    for layer in 0..3 {
        for name in ["kernel", "bias"] {
            let var = variable(NNX_TYPE_PARAM, released);
            set_var(state, &format!("layers/{layer}/{name}"), var);
            nnx_variable_release(var);
        }
    }
    for name in ["mean", "var"] {
        let var = variable(NNX_TYPE_BATCH_STAT, released);
        set_var(state, &format!("bn/{name}"), var);
        nnx_variable_release(var);
    }
    let array = wrapped(released);
    set_arr(state, "embed", array);
    nnx_array_release(array);
    state
}

const MODEL_ARRAYS: u32 = 9;

fn of_type(type_id: nnx_type_id) -> *mut nnx_filter {
    let mut filter = null_mut();
    ok(nnx_filter_of_type(type_id, &mut filter));
    filter
}

fn everything() -> *mut nnx_filter {
    let mut filter = null_mut();
    ok(nnx_filter_everything(&mut filter));
    filter
}

// ---------------------------------------------------------------------------
// Indexes out of range

#[test]
fn indexes_out_of_range() {
    let released = Released::default();
    let state = model(&released);
    let mut len = 0;
    ok(nnx_state_len(state, &mut len));
    for index in [len, len + 1, usize::MAX] {
        let mut key = nnx_key {
            kind: 77,
            str: null(),
            str_len: 0,
            int_value: 77,
        };
        expect(
            nnx_state_key_at(state, index, &mut key),
            NNX_ERR_INDEX_OUT_OF_RANGE,
        );
        assert_eq!((key.kind, key.int_value), (77, 77), "key written");
    }

    let mut flat = null_mut();
    ok(nnx_state_flatten(state, &mut flat));
    let mut n = 0;
    ok(nnx_flat_len(flat, &mut n));
    assert_eq!(n, 9);
    for index in [n, usize::MAX] {
        let (mut keys, mut klen) = (sentinel::<nnx_key>().cast_const(), 5usize);
        expect(
            nnx_flat_path(flat, index, &mut keys, &mut klen),
            NNX_ERR_INDEX_OUT_OF_RANGE,
        );
        assert_eq!((keys, klen), (sentinel::<nnx_key>().cast_const(), 5));
        let mut kind = 77;
        expect(
            nnx_flat_kind(flat, index, &mut kind),
            NNX_ERR_INDEX_OUT_OF_RANGE,
        );
        assert_eq!(kind, 77);
        let mut v = sentinel();
        expect(
            nnx_flat_variable(flat, index, &mut v),
            NNX_ERR_INDEX_OUT_OF_RANGE,
        );
        assert_eq!(v, sentinel());
        let mut a = sentinel();
        expect(
            nnx_flat_array(flat, index, &mut a),
            NNX_ERR_INDEX_OUT_OF_RANGE,
        );
        assert_eq!(a, sentinel());
    }
    nnx_flat_free(flat);

    let var = variable(NNX_TYPE_PARAM, &released);
    ok(nnx_variable_set_metadata_int(var, c"n".as_ptr(), 3));
    for index in [1, usize::MAX] {
        let (mut name, mut kind) = (sentinel::<c_char>(), 77);
        expect(
            nnx_variable_metadata_at(var, index, &mut name, &mut kind),
            NNX_ERR_INDEX_OUT_OF_RANGE,
        );
        assert_eq!((name, kind), (sentinel(), 77));
    }
    nnx_variable_release(var);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS + 1);
}

// ---------------------------------------------------------------------------
// Key kinds that do not exist

#[test]
fn key_kinds_that_do_not_exist() {
    let released = Released::default();
    let state = model(&released);
    let var = variable(NNX_TYPE_PARAM, &released);
    let array = wrapped(&released);
    for kind in [2, 7, 0xFFFF_FFFF] {
        // Alone, and after a good key: the whole path is checked first.
        let paths = [
            vec![kind_key(kind)],
            vec![str_key(b"layers"), kind_key(kind)],
        ];
        for path in &paths {
            let (p, n) = (path.as_ptr(), path.len());
            unchanged(state, || {
                every_path_function_fails(state, p, n, var, array, NNX_ERR_INVALID_ARGUMENT)
            });
            let mut flat = null_mut();
            ok(nnx_flat_new(&mut flat));
            expect(
                nnx_flat_push_variable(flat, p, n, var),
                NNX_ERR_INVALID_ARGUMENT,
            );
            expect(
                nnx_flat_push_array(flat, p, n, array),
                NNX_ERR_INVALID_ARGUMENT,
            );
            let mut len = 9;
            ok(nnx_flat_len(flat, &mut len));
            assert_eq!(len, 0, "a failed push added an entry");
            nnx_flat_free(flat);
            let good = [str_key(b"a")];
            let c_paths = [
                nnx_path {
                    keys: good.as_ptr(),
                    len: 1,
                },
                nnx_path { keys: p, len: n },
            ];
            let mut filter = sentinel();
            expect(
                nnx_filter_path_in(c_paths.as_ptr(), 2, &mut filter),
                NNX_ERR_INVALID_ARGUMENT,
            );
            assert_eq!(filter, sentinel());
        }
        let key = kind_key(kind);
        let mut filter = sentinel();
        expect(
            nnx_filter_path_contains(&key, true, &mut filter),
            NNX_ERR_INVALID_ARGUMENT,
        );
        assert_eq!(filter, sentinel());
        assert!(
            last_error().contains(&kind.to_string()),
            "the message names the kind: {}",
            last_error()
        );
    }
    nnx_variable_release(var);
    nnx_array_release(array);
    nnx_state_free(state);
    // No failed call kept a reference.
    assert_eq!(released.count(), MODEL_ARRAYS + 2);
}

// ---------------------------------------------------------------------------
// Empty strings

#[test]
fn empty_strings() {
    let released = Released::default();
    let state = new_state();
    let mut id = 77;
    expect(
        nnx_type_register(c"".as_ptr(), NNX_TYPE_PARAM, &mut id),
        NNX_ERR_INVALID_ARGUMENT,
    );
    expect(
        nnx_type_lookup(c"".as_ptr(), &mut id),
        NNX_ERR_KEY_NOT_FOUND,
    );
    assert_eq!(id, 77);

    // The empty string is a key like any other, given with or without a
    // pointer; it is not the int 0 and not "nothing".
    let var = variable(NNX_TYPE_PARAM, &released);
    let empty_null = [nnx_key {
        kind: NNX_KEY_STR,
        str: null(),
        str_len: 0,
        int_value: 0,
    }];
    ok(nnx_state_set_variable(state, empty_null.as_ptr(), 1, var));
    let empty_ptr = [str_key(b"")];
    let mut kind = 77;
    ok(nnx_state_get_kind(state, empty_ptr.as_ptr(), 1, &mut kind));
    assert_eq!(kind, NNX_KIND_VARIABLE);
    let zero = [int_key(0)];
    expect(
        nnx_state_get_kind(state, zero.as_ptr(), 1, &mut kind),
        NNX_ERR_KEY_NOT_FOUND,
    );
    let mut key = nnx_key {
        kind: 77,
        str: null(),
        str_len: 9,
        int_value: 0,
    };
    ok(nnx_state_key_at(state, 0, &mut key));
    assert_eq!((key.kind, key.str_len), (NNX_KEY_STR, 0));
    assert!(
        !key.str.is_null(),
        "a key handed out is NUL-terminated text"
    );

    // An empty `_str` path is the state itself: readable, not writable.
    ok(nnx_state_get_kind_str(state, c"".as_ptr(), &mut kind));
    assert_eq!(kind, NNX_KIND_STATE);
    unchanged(state, || {
        expect(
            nnx_state_set_variable_str(state, c"".as_ptr(), var),
            NNX_ERR_INVALID_ARGUMENT,
        );
        expect(
            nnx_state_remove_str(state, c"".as_ptr()),
            NNX_ERR_INVALID_ARGUMENT,
        );
        expect(
            nnx_state_set_state_str(state, c"".as_ptr(), state),
            NNX_ERR_INVALID_ARGUMENT,
        );
        // And so are the key forms with no keys at all.
        expect(
            nnx_state_set_variable(state, null(), 0, var),
            NNX_ERR_INVALID_ARGUMENT,
        );
        expect(nnx_state_remove(state, null(), 0), NNX_ERR_INVALID_ARGUMENT);
        // Empty components.
        for text in [c"/", c"a//b", c"/a", c"a/", c"//"] {
            expect(
                nnx_state_set_variable_str(state, text.as_ptr(), var),
                NNX_ERR_INVALID_ARGUMENT,
            );
            expect(
                nnx_state_get_kind_str(state, text.as_ptr(), &mut kind),
                NNX_ERR_INVALID_ARGUMENT,
            );
            expect(
                nnx_state_remove_str(state, text.as_ptr()),
                NNX_ERR_INVALID_ARGUMENT,
            );
        }
    });

    // A flat entry needs a path.
    let mut flat = null_mut();
    ok(nnx_flat_new(&mut flat));
    expect(
        nnx_flat_push_variable(flat, null(), 0, var),
        NNX_ERR_INVALID_ARGUMENT,
    );
    let mut n = 9;
    ok(nnx_flat_len(flat, &mut n));
    assert_eq!(n, 0);
    nnx_flat_free(flat);

    // Metadata: an empty name is refused, an empty value is a value.
    expect(
        nnx_variable_set_metadata_str(var, c"".as_ptr(), c"v".as_ptr()),
        NNX_ERR_INVALID_ARGUMENT,
    );
    expect(
        nnx_variable_set_metadata_int(var, c"".as_ptr(), 1),
        NNX_ERR_INVALID_ARGUMENT,
    );
    expect(
        nnx_variable_set_metadata_float(var, c"".as_ptr(), 1.0),
        NNX_ERR_INVALID_ARGUMENT,
    );
    expect(
        nnx_variable_set_metadata_bool(var, c"".as_ptr(), true),
        NNX_ERR_INVALID_ARGUMENT,
    );
    let mut count = 9;
    ok(nnx_variable_metadata_count(var, &mut count));
    assert_eq!(count, 0, "a refused metadata entry was stored");
    let mut value: *mut c_char = sentinel();
    expect(
        nnx_variable_get_metadata_str(var, c"".as_ptr(), &mut value),
        NNX_ERR_KEY_NOT_FOUND,
    );
    assert_eq!(value, sentinel());
    ok(nnx_variable_set_metadata_str(
        var,
        c"tag".as_ptr(),
        c"".as_ptr(),
    ));
    ok(nnx_variable_get_metadata_str(
        var,
        c"tag".as_ptr(),
        &mut value,
    ));
    // SAFETY: an owned NUL-terminated string from the library.
    assert_eq!(unsafe { CStr::from_ptr(value) }.to_bytes(), b"");
    nnx_string_free(value);

    // The empty tag is a tag: it selects the variable tagged "".
    let mut by_tag = null_mut();
    ok(nnx_filter_with_tag(c"".as_ptr(), &mut by_tag));
    let mut out = [null_mut()];
    ok(nnx_state_filter(state, &by_tag, 1, out.as_mut_ptr()));
    let mut leaves = 0;
    ok(nnx_state_num_leaves(out[0], &mut leaves));
    assert_eq!(leaves, 1);
    nnx_state_free(out[0]);
    nnx_filter_free(by_tag);

    nnx_variable_release(var);
    nnx_state_free(state);
    assert_eq!(released.count(), 1);
}

// ---------------------------------------------------------------------------
// Invalid UTF-8

#[test]
fn invalid_utf8_everywhere_a_string_goes_in() {
    let released = Released::default();
    let state = model(&released);
    let var = variable(NNX_TYPE_PARAM, &released);
    let array = wrapped(&released);
    for bad in BAD_UTF8 {
        let text = cstring(bad);
        let t = text.as_ptr();
        let mut id = 77;
        expect(
            nnx_type_register(t, NNX_TYPE_PARAM, &mut id),
            NNX_ERR_INVALID_UTF8,
        );
        expect(nnx_type_lookup(t, &mut id), NNX_ERR_INVALID_UTF8);
        assert_eq!(id, 77);
        let mut filter = sentinel();
        expect(nnx_filter_with_tag(t, &mut filter), NNX_ERR_INVALID_UTF8);
        assert_eq!(filter, sentinel());

        // Metadata names and values.
        expect(
            nnx_variable_set_metadata_str(var, t, c"v".as_ptr()),
            NNX_ERR_INVALID_UTF8,
        );
        expect(
            nnx_variable_set_metadata_str(var, c"tag".as_ptr(), t),
            NNX_ERR_INVALID_UTF8,
        );
        expect(
            nnx_variable_set_metadata_int(var, t, 1),
            NNX_ERR_INVALID_UTF8,
        );
        expect(
            nnx_variable_set_metadata_float(var, t, 1.0),
            NNX_ERR_INVALID_UTF8,
        );
        expect(
            nnx_variable_set_metadata_bool(var, t, true),
            NNX_ERR_INVALID_UTF8,
        );
        let mut s: *mut c_char = sentinel();
        expect(
            nnx_variable_get_metadata_str(var, t, &mut s),
            NNX_ERR_INVALID_UTF8,
        );
        assert_eq!(s, sentinel());
        let mut i = 77i64;
        expect(
            nnx_variable_get_metadata_int(var, t, &mut i),
            NNX_ERR_INVALID_UTF8,
        );
        let mut f = 7.0f64;
        expect(
            nnx_variable_get_metadata_float(var, t, &mut f),
            NNX_ERR_INVALID_UTF8,
        );
        let mut b = false;
        expect(
            nnx_variable_get_metadata_bool(var, t, &mut b),
            NNX_ERR_INVALID_UTF8,
        );
        let mut mk = 77;
        expect(
            nnx_variable_metadata_kind(var, t, &mut mk),
            NNX_ERR_INVALID_UTF8,
        );
        expect(nnx_variable_remove_metadata(var, t), NNX_ERR_INVALID_UTF8);
        assert_eq!((i, f, b, mk), (77, 7.0, false, 77));
        let mut count = 9;
        ok(nnx_variable_metadata_count(var, &mut count));
        assert_eq!(count, 0);

        // Keys (alone and after a good key) and `_str` paths.
        let key_paths = [vec![str_key(bad)], vec![str_key(b"layers"), str_key(bad)]];
        for path in &key_paths {
            let (p, n) = (path.as_ptr(), path.len());
            unchanged(state, || {
                every_path_function_fails(state, p, n, var, array, NNX_ERR_INVALID_UTF8)
            });
            let mut flat = null_mut();
            ok(nnx_flat_new(&mut flat));
            expect(
                nnx_flat_push_variable(flat, p, n, var),
                NNX_ERR_INVALID_UTF8,
            );
            nnx_flat_free(flat);
            let c_paths = [nnx_path { keys: p, len: n }];
            let mut filter = sentinel();
            expect(
                nnx_filter_path_in(c_paths.as_ptr(), 1, &mut filter),
                NNX_ERR_INVALID_UTF8,
            );
            assert_eq!(filter, sentinel());
        }
        let mut filter = sentinel();
        expect(
            nnx_filter_path_contains(&str_key(bad), false, &mut filter),
            NNX_ERR_INVALID_UTF8,
        );
        assert_eq!(filter, sentinel());
        let mut with_prefix = b"layers/".to_vec();
        with_prefix.extend_from_slice(bad);
        for text in [cstring(bad), cstring(&with_prefix)] {
            let t = text.as_ptr();
            unchanged(state, || {
                expect(
                    nnx_state_set_variable_str(state, t, var),
                    NNX_ERR_INVALID_UTF8,
                );
                expect(
                    nnx_state_set_array_str(state, t, array),
                    NNX_ERR_INVALID_UTF8,
                );
                expect(
                    nnx_state_set_state_str(state, t, state),
                    NNX_ERR_INVALID_UTF8,
                );
                expect(nnx_state_remove_str(state, t), NNX_ERR_INVALID_UTF8);
                let mut k = 77;
                expect(
                    nnx_state_get_kind_str(state, t, &mut k),
                    NNX_ERR_INVALID_UTF8,
                );
                let mut c = false;
                expect(
                    nnx_state_contains_str(state, t, &mut c),
                    NNX_ERR_INVALID_UTF8,
                );
                let mut a = sentinel();
                expect(
                    nnx_state_get_array_str(state, t, &mut a),
                    NNX_ERR_INVALID_UTF8,
                );
                let mut s = sentinel();
                expect(
                    nnx_state_get_state_str(state, t, &mut s),
                    NNX_ERR_INVALID_UTF8,
                );
                assert_eq!((k, a, s), (77, sentinel(), sentinel()));
            });
        }
    }
    nnx_variable_release(var);
    nnx_array_release(array);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS + 2);
}

// ---------------------------------------------------------------------------
// Shapes

#[test]
fn shapes_with_negative_dimensions_or_overflowing_sizes() {
    let data = [0u8; 64];
    let bad_shapes: [&[i64]; 7] = [
        &[-1],
        &[2, -3],
        &[i64::MIN],
        &[i64::MAX, 2],
        &[1 << 40, 1 << 40],
        &[3, 1 << 62, 4],
        &[0, -1],
    ];
    for shape in bad_shapes {
        let mut array = sentinel();
        expect(
            nnx_array_new(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                shape.len(),
                data.as_ptr().cast(),
                16,
                &mut array,
            ),
            NNX_ERR_INVALID_ARGUMENT,
        );
        expect(
            nnx_array_zeros(NNX_DTYPE_F32, shape.as_ptr(), shape.len(), &mut array),
            NNX_ERR_INVALID_ARGUMENT,
        );
        let released = Released::default();
        expect(
            nnx_array_wrap(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                shape.len(),
                data.as_ptr().cast_mut().cast(),
                16,
                true,
                Some(count_release),
                released.user_data(),
                &mut array,
            ),
            NNX_ERR_INVALID_ARGUMENT,
        );
        assert_eq!(array, sentinel(), "written on failure for {shape:?}");
        assert_eq!(released.count(), 0, "a failed wrap called release");
    }

    // A size that fits the address space's arithmetic but not the memory:
    // a status, not an abort.
    let huge = [1i64 << 62];
    let mut array = sentinel();
    expect(
        nnx_array_zeros(NNX_DTYPE_U8, huge.as_ptr(), 1, &mut array),
        NNX_ERR_OUT_OF_MEMORY,
    );
    assert_eq!(array, sentinel());

    // A dimension count whose byte size overflows is refused before the
    // shape is read.
    let one = [1i64];
    for ndim in [usize::MAX, usize::MAX / 8 + 1] {
        expect(
            nnx_array_zeros(NNX_DTYPE_U8, one.as_ptr(), ndim, &mut array),
            NNX_ERR_INVALID_ARGUMENT,
        );
    }
    // A byte count that no buffer can have, likewise.
    expect(
        nnx_array_new(
            NNX_DTYPE_U8,
            one.as_ptr(),
            1,
            data.as_ptr().cast(),
            usize::MAX,
            &mut array,
        ),
        NNX_ERR_INVALID_ARGUMENT,
    );
    // Unknown dtypes.
    for dtype in [0, 999, u32::MAX] {
        expect(
            nnx_array_zeros(dtype, one.as_ptr(), 1, &mut array),
            NNX_ERR_INVALID_ARGUMENT,
        );
    }
    // Shape and byte count that disagree.
    let released = Released::default();
    let shape = [2i64, 3];
    for nbytes in [0, 23, 25, 64] {
        expect(
            nnx_array_new(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                2,
                data.as_ptr().cast(),
                nbytes,
                &mut array,
            ),
            NNX_ERR_SHAPE_MISMATCH,
        );
        expect(
            nnx_array_wrap(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                2,
                data.as_ptr().cast_mut().cast(),
                nbytes,
                true,
                Some(count_release),
                released.user_data(),
                &mut array,
            ),
            NNX_ERR_SHAPE_MISMATCH,
        );
    }
    assert_eq!(array, sentinel());
    assert_eq!(released.count(), 0);
    // Zero-size arrays are fine, with or without a data pointer.
    let empty = [0i64, 5];
    ok(nnx_array_new(
        NNX_DTYPE_F64,
        empty.as_ptr(),
        2,
        null(),
        0,
        &mut array,
    ));
    nnx_array_release(array);
}

// ---------------------------------------------------------------------------
// NULL inside arrays of handles, and zero counts

#[test]
fn null_inside_handle_arrays_and_zero_counts() {
    let released = Released::default();
    let state = model(&released);
    let param = of_type(NNX_TYPE_PARAM);
    let rest = everything();
    let partitions: [(&str, PartitionFn); 2] =
        [("filter", nnx_state_filter), ("split", nnx_state_split)];
    for (name, op) in partitions {
        for filters in [[null_mut(), rest], [param, null_mut()]] {
            let mut out = [sentinel(); 2];
            unchanged(state, || {
                expect(
                    op(state, filters.as_ptr(), 2, out.as_mut_ptr()),
                    NNX_ERR_NULL_ARGUMENT,
                );
            });
            assert_eq!(out, [sentinel(); 2], "{name} wrote an out-state");
            assert!(last_error().contains("filters["), "{}", last_error());
        }
        let mut out = [sentinel(); 1];
        expect(
            op(state, [param].as_ptr(), 0, out.as_mut_ptr()),
            NNX_ERR_INVALID_ARGUMENT,
        );
        assert_eq!(out, [sentinel()]);
    }
    for filters in [[null_mut(), rest], [param, null_mut()]] {
        let mut filter = sentinel();
        expect(
            nnx_filter_any(filters.as_ptr(), 2, &mut filter),
            NNX_ERR_NULL_ARGUMENT,
        );
        expect(
            nnx_filter_all(filters.as_ptr(), 2, &mut filter),
            NNX_ERR_NULL_ARGUMENT,
        );
        assert_eq!(filter, sentinel());
    }
    // Any() and All() of nothing are fine: nothing and everything.
    let (mut none, mut all) = (null_mut(), null_mut());
    ok(nnx_filter_any(null(), 0, &mut none));
    ok(nnx_filter_all(null(), 0, &mut all));
    let mut out = [null_mut(); 2];
    ok(nnx_state_filter(
        state,
        [none, all].as_ptr(),
        2,
        out.as_mut_ptr(),
    ));
    let (mut a, mut b) = (9, 9);
    ok(nnx_state_num_leaves(out[0], &mut a));
    ok(nnx_state_num_leaves(out[1], &mut b));
    assert_eq!((a, b), (0, 9));
    for s in out {
        nnx_state_free(s);
    }
    nnx_filter_free(none);
    nnx_filter_free(all);

    // merge: NULL inside, and zero states.
    let mut merged = sentinel();
    expect(
        nnx_state_merge([state, null_mut()].as_ptr(), 2, &mut merged),
        NNX_ERR_NULL_ARGUMENT,
    );
    expect(
        nnx_state_merge([state].as_ptr(), 0, &mut merged),
        NNX_ERR_INVALID_ARGUMENT,
    );
    assert_eq!(merged, sentinel());

    // A path list with a path whose keys are NULL, and a key whose text is.
    let good = [str_key(b"embed")];
    let paths = [
        nnx_path {
            keys: good.as_ptr(),
            len: 1,
        },
        nnx_path {
            keys: null(),
            len: 2,
        },
    ];
    let mut filter = sentinel();
    expect(
        nnx_filter_path_in(paths.as_ptr(), 2, &mut filter),
        NNX_ERR_NULL_ARGUMENT,
    );
    let null_text = [nnx_key {
        kind: NNX_KEY_STR,
        str: null(),
        str_len: 3,
        int_value: 0,
    }];
    let mut kind = 77;
    expect(
        nnx_state_get_kind(state, null_text.as_ptr(), 1, &mut kind),
        NNX_ERR_NULL_ARGUMENT,
    );
    assert_eq!((filter, kind), (sentinel(), 77));

    nnx_filter_free(param);
    nnx_filter_free(rest);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS);
}

type PartitionFn = extern "C" fn(
    *const nnx_state,
    *const *mut nnx_filter,
    usize,
    *mut *mut nnx_state,
) -> nnx_status;

// ---------------------------------------------------------------------------
// Other values out of their domain

#[test]
fn unknown_type_ids_and_conflicts() {
    const UNKNOWN: nnx_type_id = 0x4000_0000;
    let mut var = sentinel();
    expect(
        nnx_variable_new(UNKNOWN, null(), &mut var),
        NNX_ERR_UNKNOWN_TYPE,
    );
    expect(
        nnx_variable_new(NNX_TYPE_NONE, null(), &mut var),
        NNX_ERR_UNKNOWN_TYPE,
    );
    assert_eq!(var, sentinel());
    let mut filter = sentinel();
    expect(
        nnx_filter_of_type(UNKNOWN, &mut filter),
        NNX_ERR_UNKNOWN_TYPE,
    );
    assert_eq!(filter, sentinel());
    let mut id = 77;
    expect(
        nnx_type_register(c"MisuseOrphan".as_ptr(), UNKNOWN, &mut id),
        NNX_ERR_UNKNOWN_TYPE,
    );
    expect(
        nnx_type_lookup(c"MisuseOrphan".as_ptr(), &mut id),
        NNX_ERR_KEY_NOT_FOUND,
    );
    expect(
        nnx_type_register(c"Param".as_ptr(), NNX_TYPE_BATCH_STAT, &mut id),
        NNX_ERR_TYPE_CONFLICT,
    );
    expect(
        nnx_type_register(c"Variable".as_ptr(), NNX_TYPE_PARAM, &mut id),
        NNX_ERR_TYPE_CONFLICT,
    );
    assert_eq!(id, 77);
    let mut name = sentinel::<c_char>().cast_const();
    expect(nnx_type_name(UNKNOWN, &mut name), NNX_ERR_UNKNOWN_TYPE);
    expect(nnx_type_parent(UNKNOWN, &mut id), NNX_ERR_UNKNOWN_TYPE);
    let mut yes = false;
    expect(
        nnx_type_is_subtype(NNX_TYPE_PARAM, UNKNOWN, &mut yes),
        NNX_ERR_UNKNOWN_TYPE,
    );
    expect(
        nnx_type_is_subtype(UNKNOWN, NNX_TYPE_VARIABLE, &mut yes),
        NNX_ERR_UNKNOWN_TYPE,
    );
    assert_eq!(
        (name, id, yes),
        (sentinel::<c_char>().cast_const(), 77, false)
    );
}

#[test]
fn status_names_of_any_integer() {
    for value in [-1, 99, 101, 1000, i32::MIN, i32::MAX] {
        // SAFETY: a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(nnx_status_name(value)) };
        assert_eq!(name.to_bytes(), b"NNX_UNKNOWN_STATUS", "{value}");
    }
    for (status, name) in [
        (NNX_OK, "NNX_OK"),
        (NNX_ERR_CALLBACK, "NNX_ERR_CALLBACK"),
        (NNX_ERR_PANIC, "NNX_ERR_PANIC"),
    ] {
        // SAFETY: a static NUL-terminated string.
        let got = unsafe { CStr::from_ptr(nnx_status_name(status as i32)) };
        assert_eq!(got.to_str().unwrap(), name);
    }
}

#[test]
fn wrong_kinds_and_read_only_memory() {
    let released = Released::default();
    let state = model(&released);
    unchanged(state, || {
        let mut v = sentinel();
        expect(
            nnx_state_get_variable_str(state, c"embed".as_ptr(), &mut v),
            NNX_ERR_WRONG_KIND,
        );
        expect(
            nnx_state_get_variable_str(state, c"layers".as_ptr(), &mut v),
            NNX_ERR_WRONG_KIND,
        );
        let mut a = sentinel();
        expect(
            nnx_state_get_array_str(state, c"bn/mean".as_ptr(), &mut a),
            NNX_ERR_WRONG_KIND,
        );
        let mut s = sentinel();
        expect(
            nnx_state_get_state_str(state, c"embed".as_ptr(), &mut s),
            NNX_ERR_WRONG_KIND,
        );
        assert_eq!((v, a, s), (sentinel(), sentinel(), sentinel()));
        // Paths through leaves.
        let var = variable(NNX_TYPE_PARAM, &released);
        expect(
            nnx_state_set_variable_str(state, c"embed/x".as_ptr(), var),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
        expect(
            nnx_state_set_variable_str(state, c"bn/mean/x/y".as_ptr(), var),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
        expect(
            nnx_state_remove_str(state, c"embed/x".as_ptr()),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
        expect(
            nnx_state_remove_str(state, c"nothing/here".as_ptr()),
            NNX_ERR_KEY_NOT_FOUND,
        );
        let mut k = 77;
        expect(
            nnx_state_get_kind_str(state, c"embed/x".as_ptr(), &mut k),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
        nnx_variable_release(var);
    });
    // Metadata read as the wrong kind.
    let var = variable(NNX_TYPE_PARAM, &released);
    ok(nnx_variable_set_metadata_str(
        var,
        c"tag".as_ptr(),
        c"t".as_ptr(),
    ));
    let mut i = 77i64;
    expect(
        nnx_variable_get_metadata_int(var, c"tag".as_ptr(), &mut i),
        NNX_ERR_WRONG_KIND,
    );
    let mut b = false;
    expect(
        nnx_variable_get_metadata_bool(var, c"tag".as_ptr(), &mut b),
        NNX_ERR_WRONG_KIND,
    );
    assert_eq!((i, b), (77, false));
    // Memory lent read-only is not handed out for writing.
    let mut value = null_mut();
    ok(nnx_variable_get_value(var, &mut value));
    let mut data = sentinel::<c_void>();
    expect(nnx_array_data_mut(value, &mut data), NNX_ERR_READ_ONLY);
    assert_eq!(data, sentinel());
    nnx_array_release(value);
    nnx_variable_release(var);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS + 2);
}

#[test]
fn views_whose_place_is_gone() {
    let released = Released::default();
    let state = model(&released);
    let mut view = null_mut();
    ok(nnx_state_get_state_str(
        state,
        c"layers/1".as_ptr(),
        &mut view,
    ));
    let mut len = 0;
    ok(nnx_state_len(view, &mut len));
    assert_eq!(len, 2);
    let var = variable(NNX_TYPE_PARAM, &released);

    ok(nnx_state_remove_str(state, c"layers/1".as_ptr()));
    let gone = |want: nnx_status| {
        let mut n = 77;
        expect(nnx_state_len(view, &mut n), want);
        expect(nnx_state_num_leaves(view, &mut n), want);
        assert_eq!(n, 77);
        expect(nnx_state_set_variable_str(view, c"k".as_ptr(), var), want);
        expect(nnx_state_remove_str(view, c"kernel".as_ptr()), want);
        let mut out = sentinel();
        expect(nnx_state_clone(view, &mut out), want);
        let mut flat = sentinel();
        expect(nnx_state_flatten(view, &mut flat), want);
        let mut text = sentinel::<c_char>();
        expect(nnx_state_to_string(view, &mut text), want);
        let mut merged = sentinel();
        expect(
            nnx_state_merge([state, view].as_ptr(), 2, &mut merged),
            want,
        );
        let mut d = sentinel();
        expect(nnx_state_diff(state, view, &mut d), want);
        expect(nnx_state_update(state, view), want);
        expect(nnx_state_update(view, state), want);
        expect(nnx_state_set_state_str(state, c"copy".as_ptr(), view), want);
        let filter = everything();
        let mut parts = [sentinel()];
        expect(nnx_state_split(view, &filter, 1, parts.as_mut_ptr()), want);
        nnx_filter_free(filter);
        assert_eq!(
            (out, flat, text, merged, d, parts[0]),
            (
                sentinel(),
                sentinel(),
                sentinel(),
                sentinel(),
                sentinel(),
                sentinel()
            )
        );
    };
    unchanged(state, || gone(NNX_ERR_KEY_NOT_FOUND));
    // A leaf where the view's nested state was.
    set_var(state, "layers/1", var);
    unchanged(state, || gone(NNX_ERR_WRONG_KIND));
    // A nested state back at the path: the view works again.
    ok(nnx_state_remove_str(state, c"layers/1".as_ptr()));
    set_var(state, "layers/1/kernel", var);
    ok(nnx_state_len(view, &mut len));
    assert_eq!(len, 1);
    nnx_state_free(view);
    nnx_variable_release(var);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS + 1);
}

#[test]
fn a_state_given_to_itself() {
    let released = Released::default();
    let state = model(&released);
    let before = identities(state);
    // update from itself, and from a view of itself: nothing changes.
    unchanged(state, || ok(nnx_state_update(state, state)));
    let mut view = null_mut();
    ok(nnx_state_get_state_str(
        state,
        c"layers".as_ptr(),
        &mut view,
    ));
    unchanged(state, || ok(nnx_state_update(view, view)));
    // A copy of itself inside itself: a snapshot, not a cycle.
    ok(nnx_state_set_state_str(state, c"self".as_ptr(), state));
    let mut leaves = 0;
    ok(nnx_state_num_leaves(state, &mut leaves));
    assert_eq!(leaves, 18);
    ok(nnx_state_set_state_str(view, c"again".as_ptr(), view));
    ok(nnx_state_num_leaves(state, &mut leaves));
    assert_eq!(leaves, 24);
    // diff with itself is empty; merge with itself is itself.
    let mut d = null_mut();
    ok(nnx_state_diff(state, state, &mut d));
    ok(nnx_state_num_leaves(d, &mut leaves));
    assert_eq!(leaves, 0);
    nnx_state_free(d);
    ok(nnx_state_remove_str(state, c"self".as_ptr()));
    ok(nnx_state_remove_str(state, c"layers/again".as_ptr()));
    assert_eq!(identities(state), before);
    nnx_state_free(view);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS);
}

// ---------------------------------------------------------------------------
// Callbacks answering neither 0 nor 1

struct Script {
    calls: AtomicUsize,
    /// Calls before the answer turns to `then`; until then the answer is
    /// whether the leaf is a Param.
    fail_after: usize,
    then: c_int,
    released: Released,
}

unsafe extern "C" fn scripted(
    user_data: *mut c_void,
    _path: *const nnx_key,
    _len: usize,
    kind: nnx_kind,
    variable: *const nnx_variable,
    _array: *const nnx_array,
) -> c_int {
    // SAFETY: a `Script` the test keeps alive.
    let script = unsafe { &*(user_data as *const Script) };
    let call = script.calls.fetch_add(1, Ordering::SeqCst);
    if call >= script.fail_after {
        return script.then;
    }
    if kind != NNX_KIND_VARIABLE {
        return 0;
    }
    let mut type_id = NNX_TYPE_NONE;
    if nnx_variable_type(variable, &mut type_id) != NNX_OK {
        return 9;
    }
    c_int::from(type_id == NNX_TYPE_PARAM)
}

unsafe extern "C" fn script_release(user_data: *mut c_void) {
    // SAFETY: a `Script` the test keeps alive.
    let script = unsafe { &*(user_data as *const Script) };
    script.released.0.fetch_add(1, Ordering::SeqCst);
}

fn scripted_filter(script: &Script) -> *mut nnx_filter {
    let mut filter = null_mut();
    ok(nnx_filter_callback(
        Some(scripted),
        (script as *const Script).cast_mut().cast(),
        Some(script_release),
        &mut filter,
    ));
    filter
}

#[test]
fn callbacks_answering_neither_zero_nor_one() {
    let released = Released::default();
    let state = model(&released);
    for answer in [7, -1, 2, c_int::MAX, c_int::MIN] {
        let script = Script {
            calls: AtomicUsize::new(0),
            fail_after: 0,
            then: answer,
            released: Released::default(),
        };
        let filter = scripted_filter(&script);
        let mut out = [sentinel()];
        unchanged(state, || {
            expect(
                nnx_state_filter(state, &filter, 1, out.as_mut_ptr()),
                NNX_ERR_CALLBACK,
            );
        });
        assert_eq!(out, [sentinel()]);
        assert!(
            last_error().contains(&answer.to_string()),
            "the message names the answer: {}",
            last_error()
        );
        // Copies in composite filters keep the data alive; it is handed
        // back once, when the last copy goes.
        let mut any = null_mut();
        ok(nnx_filter_any(&filter, 1, &mut any));
        let mut copy = null_mut();
        ok(nnx_filter_clone(filter, &mut copy));
        nnx_filter_free(filter);
        nnx_filter_free(any);
        assert_eq!(script.released.count(), 0);
        nnx_filter_free(copy);
        assert_eq!(script.released.count(), 1);
    }
    // A failed nnx_filter_callback keeps nothing and calls nothing.
    let script = Script {
        calls: AtomicUsize::new(0),
        fail_after: 0,
        then: 0,
        released: Released::default(),
    };
    let mut filter = sentinel();
    expect(
        nnx_filter_callback(
            None,
            (&script as *const Script).cast_mut().cast(),
            Some(script_release),
            &mut filter,
        ),
        NNX_ERR_NULL_ARGUMENT,
    );
    assert_eq!(filter, sentinel());
    assert_eq!(script.released.count(), 0);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS);
}

// ---------------------------------------------------------------------------
// Nothing lost

#[test]
fn a_split_failing_midway_in_c_loses_nothing() {
    let released = Released::default();
    let state = model(&released);
    let mut view = null_mut();
    ok(nnx_state_get_state_str(
        state,
        c"layers".as_ptr(),
        &mut view,
    ));
    let before = (listing(state), identities(state), identities(view));
    // 9 leaves: the callback answers for some, then fails, through split
    // and filter, as the first filter (asked about all 9 leaves) and behind
    // a type filter (asked about the 7 that are not BatchStats).
    for fail_after in [0, 1, 4, 6] {
        for first in [true, false] {
            let script = Script {
                calls: AtomicUsize::new(0),
                fail_after,
                then: 7,
                released: Released::default(),
            };
            let callback = scripted_filter(&script);
            let batch = of_type(NNX_TYPE_BATCH_STAT);
            let rest = everything();
            let filters = if first {
                [callback, batch, rest]
            } else {
                [batch, callback, rest]
            };
            for op in [nnx_state_split as PartitionFn, nnx_state_filter] {
                script.calls.store(0, Ordering::SeqCst);
                let mut out = [sentinel(); 3];
                expect(
                    op(state, filters.as_ptr(), 3, out.as_mut_ptr()),
                    NNX_ERR_CALLBACK,
                );
                assert_eq!(out, [sentinel(); 3], "an out-state was written");
                assert!(script.calls.load(Ordering::SeqCst) > fail_after);
                assert_eq!(
                    (listing(state), identities(state), identities(view)),
                    before
                );
            }
            for f in filters {
                nnx_filter_free(f);
            }
            assert_eq!(script.released.count(), 1);
        }
    }
    // A non-exhaustive split writes nothing either.
    let param = of_type(NNX_TYPE_PARAM);
    let mut out = [sentinel(); 1];
    unchanged(state, || {
        expect(
            nnx_state_split(state, &param, 1, out.as_mut_ptr()),
            NNX_ERR_NON_EXHAUSTIVE,
        );
    });
    assert_eq!(out, [sentinel()]);
    assert!(last_error().starts_with("Non-exhaustive filters"));
    // The Everything rule: nothing written.
    let rest = everything();
    let mut out = [sentinel(); 2];
    expect(
        nnx_state_split(state, [rest, param].as_ptr(), 2, out.as_mut_ptr()),
        NNX_ERR_FILTER_ORDER,
    );
    assert_eq!(out, [sentinel(); 2]);
    nnx_filter_free(param);
    nnx_filter_free(rest);

    // Every leaf is still held exactly once: freeing the state gives every
    // array back.
    assert_eq!(released.count(), 0);
    nnx_state_free(view);
    nnx_state_free(state);
    assert_eq!(released.count(), MODEL_ARRAYS);
}

fn counted_rust_array(released: &Arc<AtomicU32>) -> Arc<Array> {
    let counter = released.clone();
    // SAFETY: `DATA` is static, and the buffer is read-only.
    let buffer = unsafe {
        Buffer::from_foreign(
            DATA.as_ptr().cast_mut().cast(),
            16,
            false,
            Device::CPU,
            Some(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
        )
    };
    Arc::new(Array::from_buffer(DType::F32, &[4], buffer).unwrap())
}

/// The Rust model: Params and BatchStats whose values are counted arrays,
/// and a counted bare array.
fn rust_model(released: &Arc<AtomicU32>) -> (State, Vec<Arc<Variable>>) {
    let state = State::new();
    let mut vars = Vec::new();
    for (i, path) in [
        "layers/0/kernel",
        "layers/0/bias",
        "layers/1/kernel",
        "bn/mean",
        "bn/var",
    ]
    .iter()
    .enumerate()
    {
        let type_id = if i < 3 {
            TypeId::PARAM
        } else {
            TypeId::BATCH_STAT
        };
        let var = Arc::new(Variable::new(type_id, Some(counted_rust_array(released))).unwrap());
        state
            .set_variable(&parse_path(path).unwrap(), var.clone())
            .unwrap();
        vars.push(var);
    }
    state
        .set_array(&parse_path("embed").unwrap(), counted_rust_array(released))
        .unwrap();
    (state, vars)
}

fn rust_identities(state: &State) -> Vec<(Vec<Key>, usize)> {
    state
        .flatten()
        .unwrap()
        .into_iter()
        .map(|(p, leaf)| {
            let id = match leaf {
                Leaf::Variable(v) => Arc::as_ptr(&v) as usize,
                Leaf::Array(a) => Arc::as_ptr(&a) as usize,
            };
            (p, id)
        })
        .collect()
}

#[test]
fn a_split_failing_midway_in_rust_loses_nothing() {
    let released = Arc::new(AtomicU32::new(0));
    let (state, vars) = rust_model(&released);
    let view = state.view(&parse_path("layers").unwrap()).unwrap();
    let before = (state.to_string_tree().unwrap(), rust_identities(&state));
    let counts: Vec<usize> = vars.iter().map(Arc::strong_count).collect();
    // 6 leaves; the view has 3, of which the callback is asked about all
    // 3 in both filter lists.
    for fail_after in [0, 1, 2] {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let failing = Filter::callback(move |_, leaf| {
            if seen.fetch_add(1, Ordering::SeqCst) >= fail_after {
                return Err("told to fail".into());
            }
            Ok(matches!(leaf, Leaf::Variable(v) if v.type_id() == TypeId::PARAM))
        });
        for filters in [
            vec![failing.clone(), Filter::Everything],
            vec![
                Filter::of_type(TypeId::BATCH_STAT),
                failing.clone(),
                Filter::Everything,
            ],
        ] {
            for split in [true, false] {
                calls.store(0, Ordering::SeqCst);
                let result = if split {
                    state.split(&filters)
                } else {
                    view.filter(&filters)
                };
                let err = result.expect_err("the callback fails");
                assert_eq!(err.kind(), ErrorKind::Callback);
                assert!(err.message().contains("told to fail"), "{err}");
                assert_eq!(
                    (state.to_string_tree().unwrap(), rust_identities(&state)),
                    before
                );
                let now: Vec<usize> = vars.iter().map(Arc::strong_count).collect();
                assert_eq!(now, counts, "a failed split kept references");
            }
        }
    }

    // A callback that panics: the panic reaches the caller, and the state
    // is as it was and still usable (no lock poisoned, nothing held).
    let panicking = Filter::callback(|_, _| {
        panic!("a deliberate panic in a caller's callback (this test expects it)")
    });
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        state.split(&[Filter::of_type(TypeId::BATCH_STAT), panicking])
    }));
    assert!(outcome.is_err(), "the panic was swallowed");
    assert_eq!(
        (state.to_string_tree().unwrap(), rust_identities(&state)),
        before
    );
    let now: Vec<usize> = vars.iter().map(Arc::strong_count).collect();
    assert_eq!(now, counts);
    let parts = state
        .split(&[Filter::of_type(TypeId::PARAM), Filter::Everything])
        .unwrap();
    assert_eq!(parts[0].num_leaves().unwrap(), 3);
    drop(parts);

    // A failed from_flat keeps none of the leaves it was given.
    let extra = counted_rust_array(&released);
    let err = State::from_flat(vec![
        (parse_path("a").unwrap(), Leaf::Array(extra.clone())),
        (Vec::new(), Leaf::Array(extra.clone())),
    ])
    .expect_err("an empty path");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(Arc::strong_count(&extra), 1);
    drop(extra);
    assert_eq!(released.load(Ordering::SeqCst), 1);

    drop((view, vars));
    drop(state);
    assert_eq!(released.load(Ordering::SeqCst), 7);
}

#[test]
fn failed_set_update_and_remove_lose_nothing() {
    let released = Released::default();
    let state = model(&released);
    let mut view = null_mut();
    ok(nnx_state_get_state_str(
        state,
        c"layers/2".as_ptr(),
        &mut view,
    ));
    let var = variable(NNX_TYPE_PARAM, &released);
    let array = wrapped(&released);
    let source = model(&released);
    let source_before = (listing(source), identities(source));

    unchanged(state, || {
        // set: through a leaf, with a bad last key, into a gone view.
        expect(
            nnx_state_set_variable_str(state, c"embed/x".as_ptr(), var),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
        let bad_last = [str_key(b"layers"), str_key(b"0"), kind_key(7)];
        expect(
            nnx_state_set_array(state, bad_last.as_ptr(), 3, array),
            NNX_ERR_INVALID_ARGUMENT,
        );
        expect(
            nnx_state_set_state_str(state, c"bn/mean/deeper".as_ptr(), source),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
        // remove: nothing there, through a leaf.
        expect(
            nnx_state_remove_str(state, c"layers/7".as_ptr()),
            NNX_ERR_KEY_NOT_FOUND,
        );
        expect(
            nnx_state_remove_str(state, c"embed/0".as_ptr()),
            NNX_ERR_PATH_THROUGH_LEAF,
        );
    });

    // A view whose place is gone, as the destination or the source of an
    // update or a set_state: neither side changes.
    let mut gone_parent = null_mut();
    ok(nnx_state_clone(state, &mut gone_parent));
    let mut gone = null_mut();
    ok(nnx_state_get_state_str(
        gone_parent,
        c"bn".as_ptr(),
        &mut gone,
    ));
    ok(nnx_state_remove_str(gone_parent, c"bn".as_ptr()));
    unchanged(gone_parent, || {
        unchanged(state, || {
            expect(nnx_state_update(gone, state), NNX_ERR_KEY_NOT_FOUND);
            expect(nnx_state_update(state, gone), NNX_ERR_KEY_NOT_FOUND);
            expect(
                nnx_state_set_state_str(state, c"x".as_ptr(), gone),
                NNX_ERR_KEY_NOT_FOUND,
            );
            expect(
                nnx_state_set_variable_str(gone, c"x".as_ptr(), var),
                NNX_ERR_KEY_NOT_FOUND,
            );
        });
    });
    assert_eq!((listing(source), identities(source)), source_before);

    // The view still works, and the failures kept no reference: each array
    // is given back once, when its last holder goes.
    let mut leaves = 0;
    ok(nnx_state_num_leaves(view, &mut leaves));
    assert_eq!(leaves, 2);
    nnx_state_free(gone);
    nnx_state_free(gone_parent);
    nnx_state_free(view);
    nnx_state_free(source);
    nnx_state_free(state);
    assert_eq!(released.count(), 2 * MODEL_ARRAYS);
    nnx_variable_release(var);
    nnx_array_release(array);
    assert_eq!(released.count(), 2 * MODEL_ARRAYS + 2);
}

// ---------------------------------------------------------------------------
// Callbacks that call the library back

/// What a release callback does when it runs: read the state it was taken
/// out of (which would deadlock if the library still held the state's
/// lock) and record what it saw.
struct Reentrant {
    state: *mut nnx_state,
    runs: AtomicU32,
    leaves_seen: AtomicUsize,
}

unsafe extern "C" fn reenter_on_release(user_data: *mut c_void) {
    // SAFETY: a `Reentrant` the test keeps alive.
    let r = unsafe { &*(user_data as *const Reentrant) };
    let mut leaves = 0;
    if nnx_state_num_leaves(r.state, &mut leaves) == NNX_OK {
        r.leaves_seen.store(leaves, Ordering::SeqCst);
    }
    let mut text = null_mut();
    if nnx_state_to_string(r.state, &mut text) == NNX_OK {
        nnx_string_free(text);
    }
    r.runs.fetch_add(1, Ordering::SeqCst);
}

/// A filter callback that writes to the state being split.
unsafe extern "C" fn writes_while_asked(
    user_data: *mut c_void,
    _path: *const nnx_key,
    _len: usize,
    _kind: nnx_kind,
    _variable: *const nnx_variable,
    _array: *const nnx_array,
) -> c_int {
    let state = user_data as *mut nnx_state;
    let mut empty = null_mut();
    if nnx_state_new(&mut empty) != NNX_OK {
        return 9;
    }
    let status = nnx_state_set_state_str(state, c"added/by/callback".as_ptr(), empty);
    nnx_state_free(empty);
    c_int::from(status != NNX_OK)
}

/// Runs `f` on another thread and fails if it does not finish in time (a
/// deadlock), rather than hanging the test run.
fn within_seconds(seconds: u64, f: impl FnOnce() + Send + 'static) {
    let (done, wait) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match wait.recv_timeout(std::time::Duration::from_secs(seconds)) {
        Ok(()) => worker.join().expect("the worker panicked"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("no answer in {seconds} s: a callback deadlocked in the library")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("the worker panicked");
        }
    }
}

#[test]
fn callbacks_may_call_the_library_back() {
    within_seconds(30, || {
        let state = new_state();
        let r = Box::new(Reentrant {
            state,
            runs: AtomicU32::new(0),
            leaves_seen: AtomicUsize::new(99),
        });
        let user_data = (&*r as *const Reentrant).cast_mut().cast::<c_void>();
        let lend = || {
            let mut array = null_mut();
            let shape = [4i64];
            ok(nnx_array_wrap(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                1,
                DATA.as_ptr().cast_mut().cast(),
                16,
                false,
                Some(reenter_on_release),
                user_data,
                &mut array,
            ));
            array
        };
        // The last reference goes when a set replaces the leaf...
        let a = lend();
        set_arr(state, "x", a);
        nnx_array_release(a);
        let b = lend();
        set_arr(state, "x", b);
        nnx_array_release(b);
        assert_eq!(r.runs.load(Ordering::SeqCst), 1);
        assert_eq!(r.leaves_seen.load(Ordering::SeqCst), 1);
        // ... when a remove takes it out ...
        ok(nnx_state_remove_str(state, c"x".as_ptr()));
        assert_eq!(r.runs.load(Ordering::SeqCst), 2);
        assert_eq!(r.leaves_seen.load(Ordering::SeqCst), 0);
        // ... when an update overwrites it ...
        let c = lend();
        set_arr(state, "y", c);
        nnx_array_release(c);
        let src = new_state();
        let other = Released::default();
        let d = wrapped(&other);
        set_arr(src, "y", d);
        nnx_array_release(d);
        ok(nnx_state_update(state, src));
        assert_eq!(r.runs.load(Ordering::SeqCst), 3);
        // ... when a variable's value is replaced ...
        let e = lend();
        let mut var = null_mut();
        ok(nnx_variable_new(NNX_TYPE_PARAM, e, &mut var));
        nnx_array_release(e);
        set_var(state, "v", var);
        ok(nnx_variable_set_value(var, null()));
        assert_eq!(r.runs.load(Ordering::SeqCst), 4);
        assert_eq!(r.leaves_seen.load(Ordering::SeqCst), 2);
        nnx_variable_release(var);

        // A filter callback may write to the state being split: the split
        // sees the state as it was when it began.
        let mut writer = null_mut();
        ok(nnx_filter_callback(
            Some(writes_while_asked),
            state.cast(),
            None,
            &mut writer,
        ));
        let rest = everything();
        let mut parts = [null_mut(); 2];
        ok(nnx_state_split(
            state,
            [writer, rest].as_ptr(),
            2,
            parts.as_mut_ptr(),
        ));
        let (mut n0, mut n1) = (9, 9);
        ok(nnx_state_num_leaves(parts[0], &mut n0));
        ok(nnx_state_num_leaves(parts[1], &mut n1));
        assert_eq!((n0, n1), (0, 2));
        let mut kind = 77;
        ok(nnx_state_get_kind_str(
            state,
            c"added/by/callback".as_ptr(),
            &mut kind,
        ));
        assert_eq!(kind, NNX_KIND_STATE);
        for p in parts {
            nnx_state_free(p);
        }
        nnx_filter_free(writer);
        nnx_filter_free(rest);

        nnx_state_free(src);
        nnx_state_free(state);
        assert_eq!(r.runs.load(Ordering::SeqCst), 4);
        assert_eq!(other.count(), 1);
    });
}

// ---------------------------------------------------------------------------
// What fuzz/ found (see fuzz/README.md), kept as tests.

fn rust_var(type_id: TypeId) -> Arc<Variable> {
    Arc::new(Variable::new(type_id, None).unwrap())
}

fn rust_state(entries: &[(&str, &Arc<Variable>)]) -> State {
    let state = State::new();
    for (path, var) in entries {
        state
            .set_variable(&parse_path(path).unwrap(), (*var).clone())
            .unwrap();
    }
    state
}

/// merge follows NNX's flat dictionary: a repeated path keeps its first
/// position and takes the later leaf. In `{a: {x}}, {a: y}, {a: {x: z}}`
/// the path `a/x` comes first, then `a`, so the result is `{a: y}`, as flax
/// gives; where flax fails (a leaf, then a path through it) the later entry
/// replaces the leaf.
#[test]
fn merge_follows_the_flat_dictionary_of_nnx() {
    let (x, y, z) = (
        rust_var(TypeId::PARAM),
        rust_var(TypeId::PARAM),
        rust_var(TypeId::PARAM),
    );
    let merged = State::merge(&[
        &rust_state(&[("a/x", &x)]),
        &rust_state(&[("a", &y)]),
        &rust_state(&[("a/x", &z)]),
    ])
    .unwrap();
    let got = merged.get_variable(&parse_path("a").unwrap());
    assert!(
        got.as_ref().is_ok_and(|v| Arc::ptr_eq(v, &y)),
        "merge gave {merged:?}"
    );
    // {a: x}, {a: {b: y}}, {a: x}: the flat dictionary is {a: x, a/b: y};
    // a/b runs through the leaf a, which it replaces.
    let merged = State::merge(&[
        &rust_state(&[("a", &x)]),
        &rust_state(&[("a/b", &y)]),
        &rust_state(&[("a", &x)]),
    ])
    .unwrap();
    let got = merged.get_variable(&parse_path("a/b").unwrap());
    assert!(
        got.as_ref().is_ok_and(|v| Arc::ptr_eq(v, &y)),
        "merge gave {merged:?}"
    );
}

/// NNX evaluates `Any(f1, f2, ...)` in order (`any(f(path, x) for f in
/// filters)`), and a filter list likewise, so a callback placed before a
/// type filter is called for every leaf it is reached for, and its failure
/// fails the operation. The library places whole subtrees by their
/// variable types where the filters decide by type alone; a callback that
/// comes first keeps that from happening (an earlier version skipped it).
#[test]
fn callbacks_are_asked_in_order_before_a_type_filter() {
    let state = rust_state(&[("ab/a", &rust_var(TypeId::PARAM))]);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let failing = Filter::callback(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        Err("told to fail".into())
    });
    let either = Filter::any(vec![failing, Filter::of_type(TypeId::VARIABLE)]).unwrap();
    let result = state.filter(&[either]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the callback was not asked"
    );
    assert_eq!(
        result.err().map(|e| e.kind()),
        Some(ErrorKind::Callback),
        "the callback's failure was lost"
    );
}

//! Every error path through the C API: the status, a message that says what
//! went wrong, out-pointers left alone and inputs left unchanged; and the
//! status names, the version and the per-thread error message.

#[macro_use]
mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::{Arc, Barrier};

use common::*;

/// An id no test registers (ids are dense from 0).
const UNKNOWN_TYPE: nnx_type_id = 1 << 30;

fn raw_cstr(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL in test bytes")
}

/// Runs `f` on `state` and asserts that its listing and leaf count are the
/// same afterwards.
fn leaves_unchanged(state: &St, f: impl FnOnce()) {
    let before = listing(state.ptr());
    let count = leaves(state.ptr());
    f();
    assert_eq!(listing(state.ptr()), before, "the state changed");
    assert_eq!(leaves(state.ptr()), count, "the leaf count changed");
}

fn partition(op: Partition, state: &St, filters: &[&Flt]) -> (nnx_status, Vec<*mut nnx_state>) {
    let ptrs = filter_ptrs(filters);
    let mut out = vec![sentinel::<nnx_state>(); filters.len()];
    let status = op(state.ptr(), ptrs.as_ptr(), ptrs.len(), out.as_mut_ptr());
    (status, out)
}

type Partition = extern "C" fn(
    *const nnx_state,
    *const *mut nnx_filter,
    usize,
    *mut *mut nnx_state,
) -> nnx_status;

const PARTITIONS: [(&str, Partition); 2] = [
    ("nnx_state_filter", nnx_state_filter),
    ("nnx_state_split", nnx_state_split),
];

/// Frees the states a successful partition wrote.
fn free_all(states: Vec<*mut nnx_state>) {
    for s in states {
        assert_ne!(s, sentinel());
        nnx_state_free(s);
    }
}

fn get_view(state: &St, path: &str) -> St {
    let text = cstr(path);
    let mut out = null_mut();
    ok!(nnx_state_get_state_str(
        state.ptr(),
        text.as_ptr(),
        &mut out
    ));
    St(out)
}

// ---------------------------------------------------------------------------
// Status names, version, the error message

#[test]
fn status_names_cover_every_status() {
    use nnx_status::*;
    let all = [
        (NNX_OK, "NNX_OK", 0),
        (NNX_ERR_NULL_ARGUMENT, "NNX_ERR_NULL_ARGUMENT", 1),
        (NNX_ERR_INVALID_ARGUMENT, "NNX_ERR_INVALID_ARGUMENT", 2),
        (NNX_ERR_INVALID_UTF8, "NNX_ERR_INVALID_UTF8", 3),
        (NNX_ERR_KEY_NOT_FOUND, "NNX_ERR_KEY_NOT_FOUND", 4),
        (NNX_ERR_WRONG_KIND, "NNX_ERR_WRONG_KIND", 5),
        (NNX_ERR_PATH_THROUGH_LEAF, "NNX_ERR_PATH_THROUGH_LEAF", 6),
        (NNX_ERR_SHAPE_MISMATCH, "NNX_ERR_SHAPE_MISMATCH", 7),
        (NNX_ERR_UNKNOWN_TYPE, "NNX_ERR_UNKNOWN_TYPE", 8),
        (NNX_ERR_TYPE_CONFLICT, "NNX_ERR_TYPE_CONFLICT", 9),
        (NNX_ERR_NON_EXHAUSTIVE, "NNX_ERR_NON_EXHAUSTIVE", 10),
        (NNX_ERR_FILTER_ORDER, "NNX_ERR_FILTER_ORDER", 11),
        (NNX_ERR_INDEX_OUT_OF_RANGE, "NNX_ERR_INDEX_OUT_OF_RANGE", 12),
        (NNX_ERR_CALLBACK, "NNX_ERR_CALLBACK", 13),
        (NNX_ERR_READ_ONLY, "NNX_ERR_READ_ONLY", 14),
        (NNX_ERR_OUT_OF_MEMORY, "NNX_ERR_OUT_OF_MEMORY", 15),
        (NNX_ERR_FORMAT, "NNX_ERR_FORMAT", 16),
        (NNX_ERR_IO, "NNX_ERR_IO", 17),
        (NNX_ERR_TOO_DEEP, "NNX_ERR_TOO_DEEP", 18),
        (NNX_ERR_PANIC, "NNX_ERR_PANIC", 100),
    ];
    for (status, name, value) in all {
        assert_eq!(status as i32, value, "{name} changed its value");
        assert_eq!(status_name(status), name);
        let ptr = nnx_status_name(value);
        // The same static string every time.
        assert_eq!(ptr, nnx_status_name(value));
    }
}

#[test]
fn status_name_of_unknown_values() {
    for value in [-1, 19, 42, 99, 101, 1000, i32::MIN, i32::MAX] {
        assert_eq!(name_of(value), "NNX_UNKNOWN_STATUS", "value {value}");
    }
}

#[test]
fn version_matches_the_crate_and_the_header() {
    let ptr = nnx_version();
    assert!(!ptr.is_null());
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(ptr) }.to_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(ptr, nnx_version(), "not a static string");

    let header = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include/nnx_state.h"),
    )
    .expect("include/nnx_state.h is readable");
    assert_contains!(header, format!("#define NNX_STATE_VERSION \"{version}\""));
    let mut parts = version.split('.');
    for macro_name in ["MAJOR", "MINOR", "PATCH"] {
        let part = parts.next().expect("MAJOR.MINOR.PATCH");
        assert_contains!(
            header,
            format!("#define NNX_STATE_VERSION_{macro_name} {part}\n")
        );
    }
}

#[test]
fn last_error_is_empty_on_a_fresh_thread() {
    let message = std::thread::spawn(|| {
        let ptr = nnx_last_error_message();
        assert!(!ptr.is_null());
        // SAFETY: a NUL-terminated string owned by the library.
        unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec()
    })
    .join()
    .unwrap();
    assert_eq!(message, b"");
}

#[test]
fn last_error_pointer_stays_valid_until_the_next_failure() {
    let mut name: *const c_char = sentinel_const();
    assert_eq!(
        nnx_type_name(UNKNOWN_TYPE, &mut name),
        nnx_status::NNX_ERR_UNKNOWN_TYPE
    );
    assert_eq!(name, sentinel_const());
    let ptr = nnx_last_error_message();
    // SAFETY: valid until the next failing call on this thread.
    let before = unsafe { CStr::from_ptr(ptr) }.to_owned();
    assert_contains!(before.to_str().unwrap(), "unknown variable type");
    // Successful calls do not touch it.
    let state = sample_state();
    assert_eq!(leaves(state.ptr()), SAMPLE_LEAVES);
    assert_eq!(nnx_last_error_message(), ptr);
    // SAFETY: no call has failed since.
    assert_eq!(unsafe { CStr::from_ptr(ptr) }, before.as_c_str());
}

#[test]
fn last_error_is_per_thread_and_survives_successful_calls() {
    let barrier = Arc::new(Barrier::new(2));
    let other = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait(); // 1: the main thread has failed
            assert_eq!(last_error(), "", "saw another thread's message");
            let name = cstr("NoSuchTypeOnThisThread");
            let mut out = SENTINEL_U32;
            assert_eq!(
                nnx_type_lookup(name.as_ptr(), &mut out),
                nnx_status::NNX_ERR_KEY_NOT_FOUND
            );
            let mine = last_error();
            assert_contains!(mine, "NoSuchTypeOnThisThread");
            barrier.wait(); // 2: this thread has failed
            barrier.wait(); // 3: the main thread has checked
            assert_eq!(last_error(), mine);
        })
    };
    let mut out = SENTINEL_U32;
    assert_eq!(
        nnx_type_parent(UNKNOWN_TYPE, &mut out),
        nnx_status::NNX_ERR_UNKNOWN_TYPE
    );
    let mine = last_error();
    assert_contains!(mine, &UNKNOWN_TYPE.to_string());
    barrier.wait(); // 1
    barrier.wait(); // 2
    assert_eq!(last_error(), mine, "another thread's failure replaced ours");
    barrier.wait(); // 3
    other.join().unwrap();

    // A successful call leaves the message as it was.
    let state = new_state();
    assert_eq!(top_len(state.ptr()), 0);
    assert_eq!(last_error(), mine);
}

/// Every state function that takes a path fails on `$p` with `$status` and
/// writes none of its outputs; gives the message of the first failure.
macro_rules! every_path_function_fails {
    ($state:expr, $var:expr, $array:expr, $p:expr, $status:ident) => {{
        let (state, p) = ($state, $p);
        let message = fails!(
            nnx_state_set_variable(state.ptr(), p.ptr(), p.len(), $var.ptr()),
            $status
        );
        fails!(
            nnx_state_set_array(state.ptr(), p.ptr(), p.len(), $array.ptr()),
            $status
        );
        fails!(
            nnx_state_set_state(state.ptr(), p.ptr(), p.len(), state.ptr()),
            $status
        );
        fails!(nnx_state_remove(state.ptr(), p.ptr(), p.len()), $status);
        let mut kind = SENTINEL_U32;
        fails!(
            nnx_state_get_kind(state.ptr(), p.ptr(), p.len(), &mut kind),
            $status
        );
        assert_eq!(kind, SENTINEL_U32);
        let mut found = BoolOut::new();
        fails!(
            nnx_state_contains(state.ptr(), p.ptr(), p.len(), found.ptr()),
            $status
        );
        assert!(found.untouched());
        let mut v: *mut nnx_variable = sentinel();
        fails!(
            nnx_state_get_variable(state.ptr(), p.ptr(), p.len(), &mut v),
            $status
        );
        assert_eq!(v, sentinel());
        let mut a: *mut nnx_array = sentinel();
        fails!(
            nnx_state_get_array(state.ptr(), p.ptr(), p.len(), &mut a),
            $status
        );
        assert_eq!(a, sentinel());
        let mut s: *mut nnx_state = sentinel();
        fails!(
            nnx_state_get_state(state.ptr(), p.ptr(), p.len(), &mut s),
            $status
        );
        assert_eq!(s, sentinel());
        message
    }};
}

// ---------------------------------------------------------------------------
// Keys and paths: invalid UTF-8, unknown kinds, empty paths and components

#[test]
fn invalid_utf8_keys_in_paths() {
    let state = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    let bad = Path::new(&[K::S("new"), K::Raw(b"\xc3\x28")]);
    let bad_first = Path::new(&[K::Raw(b"ok\xff")]);
    leaves_unchanged(&state, || {
        for p in [&bad, &bad_first] {
            let m = every_path_function_fails!(&state, &var, &array, p, NNX_ERR_INVALID_UTF8);
            assert_contains!(m, "UTF-8");
        }
    });
    // Nothing was created on the way to the bad key.
    let mut found = BoolOut::new();
    let new = path!["new"];
    ok!(nnx_state_contains(
        state.ptr(),
        new.ptr(),
        new.len(),
        found.ptr()
    ));
    assert!(!found.get());
}

#[test]
fn invalid_utf8_keys_in_flats_and_filters() {
    let bad = Path::new(&[K::S("a"), K::Raw(b"\xff")]);
    let mut flat = null_mut();
    ok!(nnx_flat_new(&mut flat));
    let flat = Flat(flat);
    fails!(
        nnx_flat_push_variable(
            flat.ptr(),
            bad.ptr(),
            bad.len(),
            variable(NNX_TYPE_PARAM, None).ptr()
        ),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_flat_push_array(
            flat.ptr(),
            bad.ptr(),
            bad.len(),
            f32_array(&[1], &[1.0]).ptr()
        ),
        NNX_ERR_INVALID_UTF8
    );
    let mut len = SENTINEL;
    ok!(nnx_flat_len(flat.ptr(), &mut len));
    assert_eq!(len, 0);

    let key = Path::new(&[K::Raw(b"\x80abc")]);
    let mut f: *mut nnx_filter = sentinel();
    fails!(
        nnx_filter_path_contains(key.key(), true, &mut f),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_filter_path_contains(key.key(), false, &mut f),
        NNX_ERR_INVALID_UTF8
    );
    let good = path!["a"];
    let paths = [good.as_c(), bad.as_c()];
    fails!(
        nnx_filter_path_in(paths.as_ptr(), 2, &mut f),
        NNX_ERR_INVALID_UTF8
    );
    assert_eq!(f, sentinel());
}

#[test]
fn invalid_utf8_in_str_paths() {
    let state = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    let bad = raw_cstr(b"b/\xe2\x82");
    let p = bad.as_ptr();
    leaves_unchanged(&state, || {
        let m = fails!(
            nnx_state_set_variable_str(state.ptr(), p, var.ptr()),
            NNX_ERR_INVALID_UTF8
        );
        assert_contains!(m, "UTF-8");
        assert_contains!(m, "path");
        fails!(
            nnx_state_set_array_str(state.ptr(), p, array.ptr()),
            NNX_ERR_INVALID_UTF8
        );
        fails!(
            nnx_state_set_state_str(state.ptr(), p, state.ptr()),
            NNX_ERR_INVALID_UTF8
        );
        fails!(nnx_state_remove_str(state.ptr(), p), NNX_ERR_INVALID_UTF8);
        let mut kind = SENTINEL_U32;
        fails!(
            nnx_state_get_kind_str(state.ptr(), p, &mut kind),
            NNX_ERR_INVALID_UTF8
        );
        assert_eq!(kind, SENTINEL_U32);
        let mut found = BoolOut::new();
        fails!(
            nnx_state_contains_str(state.ptr(), p, found.ptr()),
            NNX_ERR_INVALID_UTF8
        );
        assert!(found.untouched());
        let mut v: *mut nnx_variable = sentinel();
        fails!(
            nnx_state_get_variable_str(state.ptr(), p, &mut v),
            NNX_ERR_INVALID_UTF8
        );
        let mut a: *mut nnx_array = sentinel();
        fails!(
            nnx_state_get_array_str(state.ptr(), p, &mut a),
            NNX_ERR_INVALID_UTF8
        );
        let mut s: *mut nnx_state = sentinel();
        fails!(
            nnx_state_get_state_str(state.ptr(), p, &mut s),
            NNX_ERR_INVALID_UTF8
        );
        assert_eq!((v, a, s), (sentinel(), sentinel(), sentinel()));
    });
}

#[test]
fn invalid_utf8_in_names_tags_and_metadata() {
    let bad = raw_cstr(b"Bad\xffName");
    let mut id = SENTINEL_U32;
    let m = fails!(
        nnx_type_register(bad.as_ptr(), NNX_TYPE_PARAM, &mut id),
        NNX_ERR_INVALID_UTF8
    );
    assert_contains!(m, "name");
    fails!(nnx_type_lookup(bad.as_ptr(), &mut id), NNX_ERR_INVALID_UTF8);
    assert_eq!(id, SENTINEL_U32);

    let mut f: *mut nnx_filter = sentinel();
    let m = fails!(
        nnx_filter_with_tag(bad.as_ptr(), &mut f),
        NNX_ERR_INVALID_UTF8
    );
    assert_contains!(m, "tag");
    assert_eq!(f, sentinel());

    let v = variable(NNX_TYPE_PARAM, None);
    let good = cstr("good");
    fails!(
        nnx_variable_set_metadata_str(v.ptr(), bad.as_ptr(), good.as_ptr()),
        NNX_ERR_INVALID_UTF8
    );
    let m = fails!(
        nnx_variable_set_metadata_str(v.ptr(), good.as_ptr(), bad.as_ptr()),
        NNX_ERR_INVALID_UTF8
    );
    assert_contains!(m, "value");
    fails!(
        nnx_variable_set_metadata_int(v.ptr(), bad.as_ptr(), 1),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_variable_set_metadata_float(v.ptr(), bad.as_ptr(), 1.0),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_variable_set_metadata_bool(v.ptr(), bad.as_ptr(), true),
        NNX_ERR_INVALID_UTF8
    );
    let mut s: *mut c_char = sentinel();
    fails!(
        nnx_variable_get_metadata_str(v.ptr(), bad.as_ptr(), &mut s),
        NNX_ERR_INVALID_UTF8
    );
    assert_eq!(s, sentinel());
    let mut i = SENTINEL_I64;
    fails!(
        nnx_variable_get_metadata_int(v.ptr(), bad.as_ptr(), &mut i),
        NNX_ERR_INVALID_UTF8
    );
    let mut x = SENTINEL_F64;
    fails!(
        nnx_variable_get_metadata_float(v.ptr(), bad.as_ptr(), &mut x),
        NNX_ERR_INVALID_UTF8
    );
    let mut b = BoolOut::new();
    fails!(
        nnx_variable_get_metadata_bool(v.ptr(), bad.as_ptr(), b.ptr()),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_variable_remove_metadata(v.ptr(), bad.as_ptr()),
        NNX_ERR_INVALID_UTF8
    );
    let mut kind = SENTINEL_U32;
    fails!(
        nnx_variable_metadata_kind(v.ptr(), bad.as_ptr(), &mut kind),
        NNX_ERR_INVALID_UTF8
    );
    assert_eq!(kind, SENTINEL_U32);
    let mut count = SENTINEL;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 0, "a failed set stored metadata");
}

#[test]
fn unknown_key_kind() {
    let state = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    for kind in [2u32, 7, u32::MAX] {
        let p = Path::new(&[K::S("b"), K::Kind(kind)]);
        leaves_unchanged(&state, || {
            let m = every_path_function_fails!(&state, &var, &array, &p, NNX_ERR_INVALID_ARGUMENT);
            assert_contains!(m, format!("key kind {kind}"));
        });

        let mut flat = null_mut();
        ok!(nnx_flat_new(&mut flat));
        let flat = Flat(flat);
        fails!(
            nnx_flat_push_variable(flat.ptr(), p.ptr(), p.len(), var.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
        fails!(
            nnx_flat_push_array(flat.ptr(), p.ptr(), p.len(), array.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
        let single = Path::new(&[K::Kind(kind)]);
        let mut f: *mut nnx_filter = sentinel();
        fails!(
            nnx_filter_path_contains(single.key(), true, &mut f),
            NNX_ERR_INVALID_ARGUMENT
        );
        let paths = [p.as_c()];
        fails!(
            nnx_filter_path_in(paths.as_ptr(), 1, &mut f),
            NNX_ERR_INVALID_ARGUMENT
        );
        assert_eq!(f, sentinel());
    }
}

#[test]
fn empty_path_for_set_and_remove() {
    let state = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    let other = sample_state();
    let empty = cstr("");
    let keys = path!["unused"];
    leaves_unchanged(&state, || {
        // Empty as NULL with length 0, and as a real pointer with length 0.
        for ptr in [null(), keys.ptr()] {
            let m = fails!(
                nnx_state_set_variable(state.ptr(), ptr, 0, var.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            assert_contains!(m, "empty path");
            fails!(
                nnx_state_set_array(state.ptr(), ptr, 0, array.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            fails!(
                nnx_state_set_state(state.ptr(), ptr, 0, other.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            let m = fails!(
                nnx_state_remove(state.ptr(), ptr, 0),
                NNX_ERR_INVALID_ARGUMENT
            );
            assert_contains!(m, "empty path");
        }
        fails!(
            nnx_state_set_variable_str(state.ptr(), empty.as_ptr(), var.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
        fails!(
            nnx_state_set_array_str(state.ptr(), empty.as_ptr(), array.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
        fails!(
            nnx_state_set_state_str(state.ptr(), empty.as_ptr(), other.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
        fails!(
            nnx_state_remove_str(state.ptr(), empty.as_ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
    });

    // A flat entry needs a path too.
    let mut flat = null_mut();
    ok!(nnx_flat_new(&mut flat));
    let flat = Flat(flat);
    fails!(
        nnx_flat_push_variable(flat.ptr(), null(), 0, var.ptr()),
        NNX_ERR_INVALID_ARGUMENT
    );
    fails!(
        nnx_flat_push_array(flat.ptr(), null(), 0, array.ptr()),
        NNX_ERR_INVALID_ARGUMENT
    );

    // For reading, the empty `_str` path is the state itself.
    let mut kind = SENTINEL_U32;
    ok!(nnx_state_get_kind_str(
        state.ptr(),
        empty.as_ptr(),
        &mut kind
    ));
    assert_eq!(kind, NNX_KIND_STATE);
}

#[test]
fn empty_components_in_str_paths() {
    let state = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    for text in ["a//b", "/a", "a/", "/", "b//x", "new//x"] {
        let p = cstr(text);
        leaves_unchanged(&state, || {
            let m = fails!(
                nnx_state_set_variable_str(state.ptr(), p.as_ptr(), var.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            assert_contains!(m, "empty component");
            assert_contains!(m, text);
            fails!(
                nnx_state_set_array_str(state.ptr(), p.as_ptr(), array.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            fails!(
                nnx_state_set_state_str(state.ptr(), p.as_ptr(), state.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            fails!(
                nnx_state_remove_str(state.ptr(), p.as_ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            let mut kind = SENTINEL_U32;
            fails!(
                nnx_state_get_kind_str(state.ptr(), p.as_ptr(), &mut kind),
                NNX_ERR_INVALID_ARGUMENT
            );
            let mut found = BoolOut::new();
            fails!(
                nnx_state_contains_str(state.ptr(), p.as_ptr(), found.ptr()),
                NNX_ERR_INVALID_ARGUMENT
            );
            assert!(found.untouched());
            let mut v: *mut nnx_variable = sentinel();
            fails!(
                nnx_state_get_variable_str(state.ptr(), p.as_ptr(), &mut v),
                NNX_ERR_INVALID_ARGUMENT
            );
            let mut a: *mut nnx_array = sentinel();
            fails!(
                nnx_state_get_array_str(state.ptr(), p.as_ptr(), &mut a),
                NNX_ERR_INVALID_ARGUMENT
            );
            let mut s: *mut nnx_state = sentinel();
            fails!(
                nnx_state_get_state_str(state.ptr(), p.as_ptr(), &mut s),
                NNX_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                (kind, v, a, s),
                (SENTINEL_U32, sentinel(), sentinel(), sentinel())
            );
        });
    }
}

// ---------------------------------------------------------------------------
// Arrays

#[test]
fn array_shape_and_bytes_mismatch() {
    let shape = [2i64, 3];
    let data = [0f32; 8];
    let mut out: *mut nnx_array = sentinel();
    for nbytes in [0usize, 4, 20, 23, 25, 32] {
        let m = fails!(
            nnx_array_new(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                2,
                data.as_ptr().cast(),
                nbytes,
                &mut out
            ),
            NNX_ERR_SHAPE_MISMATCH
        );
        assert_contains!(m, "24");
        assert_contains!(m, &nbytes.to_string());
    }
    assert_eq!(out, sentinel());
}

#[test]
fn array_wrap_mismatch_keeps_the_memory_with_the_caller() {
    let counter = Counter::new();
    let mut buf = [0u8; 32];
    let shape = [2i64, 3];
    let mut out: *mut nnx_array = sentinel();
    for nbytes in [0usize, 20, 23, 25, 32] {
        let m = fails!(
            nnx_array_wrap(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                2,
                buf.as_mut_ptr().cast(),
                nbytes,
                true,
                Some(count_release),
                counter.as_user_data(),
                &mut out
            ),
            NNX_ERR_SHAPE_MISMATCH
        );
        assert_contains!(m, "24");
    }
    assert_eq!(out, sentinel());
    assert_eq!(counter.get(), 0, "release was called on a failed wrap");
}

/// `nnx_array_new`, `nnx_array_zeros` and `nnx_array_wrap` with one dtype
/// and shape must each fail with `NNX_ERR_INVALID_ARGUMENT` and a message
/// containing `needle`, write nothing, and leave the wrapped memory with the
/// caller (no release call).
fn invalid_for_every_constructor(dtype: nnx_dtype, shape: &[i64], needle: &str) {
    let counter = Counter::new();
    let mut buf = [0u8; 64];
    let mut out: *mut nnx_array = sentinel();
    let m = fails!(
        nnx_array_new(
            dtype,
            shape.as_ptr(),
            shape.len(),
            buf.as_ptr().cast(),
            buf.len(),
            &mut out
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, needle);
    let m = fails!(
        nnx_array_zeros(dtype, shape.as_ptr(), shape.len(), &mut out),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, needle);
    let m = fails!(
        nnx_array_wrap(
            dtype,
            shape.as_ptr(),
            shape.len(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            false,
            Some(count_release),
            counter.as_user_data(),
            &mut out
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, needle);
    assert_eq!(out, sentinel());
    assert_eq!(counter.get(), 0, "release was called on a failed wrap");
}

#[test]
fn array_negative_dimension() {
    invalid_for_every_constructor(NNX_DTYPE_F32, &[2, -1], "negative");
    invalid_for_every_constructor(NNX_DTYPE_U8, &[i64::MIN], "negative");
    // A zero-sized array with a negative dimension is still invalid.
    invalid_for_every_constructor(NNX_DTYPE_F32, &[0, -3], "negative");
}

#[test]
fn array_byte_size_overflow() {
    invalid_for_every_constructor(NNX_DTYPE_F32, &[i64::MAX, 2], "overflow");
    invalid_for_every_constructor(NNX_DTYPE_U8, &[1 << 32, 1 << 32], "overflow");
    // Past isize::MAX bytes, even without overflowing usize.
    invalid_for_every_constructor(NNX_DTYPE_F64, &[1 << 61], "overflow");
    // An empty array's other dimensions must multiply without overflow too.
    invalid_for_every_constructor(NNX_DTYPE_F32, &[0, i64::MAX, 2], "overflow");
    invalid_for_every_constructor(NNX_DTYPE_F32, &[i64::MAX, 0, 2], "overflow");
}

#[test]
fn array_unknown_dtype() {
    for dtype in [0u32, 16, 99, u32::MAX] {
        invalid_for_every_constructor(dtype, &[2], "unknown dtype");
    }
}

#[test]
fn array_data_mut_on_read_only_memory() {
    let counter = Counter::new();
    let mut buf = [1f32, 2.0];
    let shape = [2i64];
    let mut out = null_mut();
    ok!(nnx_array_wrap(
        NNX_DTYPE_F32,
        shape.as_ptr(),
        1,
        buf.as_mut_ptr().cast(),
        8,
        false,
        Some(count_release),
        counter.as_user_data(),
        &mut out
    ));
    let read_only = Arr(out);
    let mut data: *mut c_void = sentinel();
    let m = fails!(
        nnx_array_data_mut(read_only.ptr(), &mut data),
        NNX_ERR_READ_ONLY
    );
    assert_contains!(m, "read-only");
    assert_eq!(data, sentinel());
    let mut writable = BoolOut::new();
    ok!(nnx_array_is_writable(read_only.ptr(), writable.ptr()));
    assert!(!writable.get());
    // Reading is fine, and gives the caller's memory.
    let mut read = null();
    ok!(nnx_array_data(read_only.ptr(), &mut read));
    assert_eq!(read, buf.as_ptr().cast());

    // Writable wraps and library arrays hand out their bytes.
    let mut out = null_mut();
    ok!(nnx_array_wrap(
        NNX_DTYPE_F32,
        shape.as_ptr(),
        1,
        buf.as_mut_ptr().cast(),
        8,
        true,
        None,
        null_mut(),
        &mut out
    ));
    let lent = Arr(out);
    ok!(nnx_array_data_mut(lent.ptr(), &mut data));
    assert_eq!(data, buf.as_mut_ptr().cast());
    let owned = f32_array(&[2], &[1.0, 2.0]);
    let mut writable = BoolOut::new();
    ok!(nnx_array_is_writable(owned.ptr(), writable.ptr()));
    assert!(writable.get());
    ok!(nnx_array_data_mut(owned.ptr(), &mut data));
    assert!(!data.is_null());

    drop(lent);
    drop(read_only);
    assert_eq!(counter.get(), 1);
}

#[test]
fn absurd_lengths_are_rejected_without_reading() {
    // Lengths whose byte size passes isize::MAX: rejected before any read.
    let one = [0i64];
    let mut out: *mut nnx_array = sentinel();
    fails!(
        nnx_array_new(
            NNX_DTYPE_U8,
            one.as_ptr(),
            usize::MAX / 4,
            null(),
            0,
            &mut out
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    let byte = [0u8];
    let m = fails!(
        nnx_array_new(
            NNX_DTYPE_U8,
            null(),
            0,
            byte.as_ptr().cast(),
            usize::MAX,
            &mut out
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "data");
    assert_eq!(out, sentinel());

    let state = sample_state();
    let p = of_type(NNX_TYPE_PARAM);
    let filters = filter_ptrs(&[&p]);
    let mut outs = [sentinel::<nnx_state>(); 1];
    for (name, op) in PARTITIONS {
        let status = op(
            state.ptr(),
            filters.as_ptr(),
            usize::MAX / 2,
            outs.as_mut_ptr(),
        );
        assert_eq!(
            status,
            nnx_status::NNX_ERR_INVALID_ARGUMENT,
            "{name}: {}",
            last_error()
        );
    }
    assert_eq!(outs, [sentinel(); 1]);
    let states = [state.ptr()];
    let mut merged: *mut nnx_state = sentinel();
    fails!(
        nnx_state_merge(states.as_ptr(), usize::MAX / 2, &mut merged),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_eq!(merged, sentinel());
    let key = path!["a"];
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    leaves_unchanged(&state, || {
        fails!(
            nnx_state_set_variable(state.ptr(), key.ptr(), usize::MAX / 8, var.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
    });
    let mut f: *mut nnx_filter = sentinel();
    fails!(
        nnx_filter_any(filters.as_ptr(), usize::MAX / 2, &mut f),
        NNX_ERR_INVALID_ARGUMENT
    );
    let paths = [key.as_c()];
    fails!(
        nnx_filter_path_in(paths.as_ptr(), usize::MAX / 4, &mut f),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_eq!(f, sentinel());
}

// ---------------------------------------------------------------------------
// Paths through leaves, missing keys, wrong kinds

#[test]
fn path_through_a_leaf() {
    let state = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    // `a` is a variable, `b/x` a bare array.
    for (keys, text, leaf) in [
        (path!["a", "b"], "a/b", "'a'"),
        (path!["a", 0, "c"], "a/0/c", "'a'"),
        (path!["b", "x", "y"], "b/x/y", "'b/x'"),
    ] {
        let t = cstr(text);
        leaves_unchanged(&state, || {
            let m = fails!(
                nnx_state_set_variable(state.ptr(), keys.ptr(), keys.len(), var.ptr()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            assert_contains!(m, leaf);
            fails!(
                nnx_state_set_variable_str(state.ptr(), t.as_ptr(), var.ptr()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            fails!(
                nnx_state_set_array(state.ptr(), keys.ptr(), keys.len(), array.ptr()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            fails!(
                nnx_state_set_state_str(state.ptr(), t.as_ptr(), state.ptr()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            let m = fails!(
                nnx_state_remove(state.ptr(), keys.ptr(), keys.len()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            assert_contains!(m, "runs through");
            fails!(
                nnx_state_remove_str(state.ptr(), t.as_ptr()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            let mut v: *mut nnx_variable = sentinel();
            let m = fails!(
                nnx_state_get_variable(state.ptr(), keys.ptr(), keys.len(), &mut v),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            assert_contains!(m, leaf);
            fails!(
                nnx_state_get_variable_str(state.ptr(), t.as_ptr(), &mut v),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            let mut a: *mut nnx_array = sentinel();
            fails!(
                nnx_state_get_array(state.ptr(), keys.ptr(), keys.len(), &mut a),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            let mut s: *mut nnx_state = sentinel();
            fails!(
                nnx_state_get_state(state.ptr(), keys.ptr(), keys.len(), &mut s),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            let mut kind = SENTINEL_U32;
            fails!(
                nnx_state_get_kind(state.ptr(), keys.ptr(), keys.len(), &mut kind),
                NNX_ERR_PATH_THROUGH_LEAF
            );
            assert_eq!(
                (v, a, s, kind),
                (sentinel(), sentinel(), sentinel(), SENTINEL_U32)
            );
            // `contains` answers false rather than failing.
            let mut found = BoolOut::new();
            ok!(nnx_state_contains(
                state.ptr(),
                keys.ptr(),
                keys.len(),
                found.ptr()
            ));
            assert!(!found.get());
            let mut found = BoolOut::new();
            ok!(nnx_state_contains_str(state.ptr(), t.as_ptr(), found.ptr()));
            assert!(!found.get());
        });
    }
}

#[test]
fn missing_keys() {
    let state = sample_state();
    for (keys, text) in [
        (path!["nope"], "nope"),
        (path!["b", "nope"], "b/nope"),
        (path!["b", 2], "b/2"),
        // The string "1" is not the int 1.
        (path!["b", "1"], "b/\"1\""),
        (path!["nope", "deeper"], "nope/deeper"),
    ] {
        leaves_unchanged(&state, || {
            let mut v: *mut nnx_variable = sentinel();
            let m = fails!(
                nnx_state_get_variable(state.ptr(), keys.ptr(), keys.len(), &mut v),
                NNX_ERR_KEY_NOT_FOUND
            );
            assert_contains!(m, "nothing at");
            let mut a: *mut nnx_array = sentinel();
            fails!(
                nnx_state_get_array(state.ptr(), keys.ptr(), keys.len(), &mut a),
                NNX_ERR_KEY_NOT_FOUND
            );
            let mut s: *mut nnx_state = sentinel();
            fails!(
                nnx_state_get_state(state.ptr(), keys.ptr(), keys.len(), &mut s),
                NNX_ERR_KEY_NOT_FOUND
            );
            let mut kind = SENTINEL_U32;
            fails!(
                nnx_state_get_kind(state.ptr(), keys.ptr(), keys.len(), &mut kind),
                NNX_ERR_KEY_NOT_FOUND
            );
            let m = fails!(
                nnx_state_remove(state.ptr(), keys.ptr(), keys.len()),
                NNX_ERR_KEY_NOT_FOUND
            );
            assert_contains!(m, "nothing at");
            assert_eq!(
                (v, a, s, kind),
                (sentinel(), sentinel(), sentinel(), SENTINEL_U32)
            );
            let mut found = BoolOut::new();
            ok!(nnx_state_contains(
                state.ptr(),
                keys.ptr(),
                keys.len(),
                found.ptr()
            ));
            assert!(!found.get(), "{text}");
        });
    }
    // The `_str` forms (where the text parses to the same path).
    for text in ["nope", "b/nope", "b/2", "nope/deeper"] {
        let t = cstr(text);
        let mut v: *mut nnx_variable = sentinel();
        let m = fails!(
            nnx_state_get_variable_str(state.ptr(), t.as_ptr(), &mut v),
            NNX_ERR_KEY_NOT_FOUND
        );
        assert_contains!(m, text);
        let mut a: *mut nnx_array = sentinel();
        fails!(
            nnx_state_get_array_str(state.ptr(), t.as_ptr(), &mut a),
            NNX_ERR_KEY_NOT_FOUND
        );
        let mut s: *mut nnx_state = sentinel();
        fails!(
            nnx_state_get_state_str(state.ptr(), t.as_ptr(), &mut s),
            NNX_ERR_KEY_NOT_FOUND
        );
        let mut kind = SENTINEL_U32;
        fails!(
            nnx_state_get_kind_str(state.ptr(), t.as_ptr(), &mut kind),
            NNX_ERR_KEY_NOT_FOUND
        );
        fails!(
            nnx_state_remove_str(state.ptr(), t.as_ptr()),
            NNX_ERR_KEY_NOT_FOUND
        );
        assert_eq!(
            (v, a, s, kind),
            (sentinel(), sentinel(), sentinel(), SENTINEL_U32)
        );
    }
}

#[test]
fn missing_metadata_and_type_names() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("absent");
    let n = name.as_ptr();
    let mut s: *mut c_char = sentinel();
    let m = fails!(
        nnx_variable_get_metadata_str(v.ptr(), n, &mut s),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_contains!(m, "absent");
    let mut i = SENTINEL_I64;
    fails!(
        nnx_variable_get_metadata_int(v.ptr(), n, &mut i),
        NNX_ERR_KEY_NOT_FOUND
    );
    let mut x = SENTINEL_F64;
    fails!(
        nnx_variable_get_metadata_float(v.ptr(), n, &mut x),
        NNX_ERR_KEY_NOT_FOUND
    );
    let mut b = BoolOut::new();
    fails!(
        nnx_variable_get_metadata_bool(v.ptr(), n, b.ptr()),
        NNX_ERR_KEY_NOT_FOUND
    );
    let m = fails!(
        nnx_variable_remove_metadata(v.ptr(), n),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_contains!(m, "absent");
    let mut kind = SENTINEL_U32;
    let m = fails!(
        nnx_variable_metadata_kind(v.ptr(), n, &mut kind),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_contains!(m, "absent");
    assert_eq!(kind, SENTINEL_U32);
    assert_eq!(s, sentinel());
    assert_eq!(i, SENTINEL_I64);
    assert_eq!(x.to_bits(), SENTINEL_F64.to_bits());
    assert!(b.untouched());

    let type_name = cstr("FfiErrorsNoSuchType");
    let mut id = SENTINEL_U32;
    let m = fails!(
        nnx_type_lookup(type_name.as_ptr(), &mut id),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_contains!(m, "FfiErrorsNoSuchType");
    assert_eq!(id, SENTINEL_U32);
    // Names are case-sensitive.
    let lower = cstr("param");
    fails!(
        nnx_type_lookup(lower.as_ptr(), &mut id),
        NNX_ERR_KEY_NOT_FOUND
    );
}

#[test]
fn wrong_kinds_at_a_path() {
    let state = sample_state();
    let cases: [(&str, &str, &str); 3] = [
        // (path, what is there, mentioned in messages)
        ("a", "variable", "a"),
        ("b/x", "bare array", "b/x"),
        ("b", "nested state", "b"),
    ];
    for (text, what, shown) in cases {
        let t = cstr(text);
        let mut v: *mut nnx_variable = sentinel();
        let mut a: *mut nnx_array = sentinel();
        let mut s: *mut nnx_state = sentinel();
        if what != "variable" {
            let m = fails!(
                nnx_state_get_variable_str(state.ptr(), t.as_ptr(), &mut v),
                NNX_ERR_WRONG_KIND
            );
            assert_contains!(m, shown);
            assert_contains!(m, what);
        }
        if what != "bare array" {
            let m = fails!(
                nnx_state_get_array_str(state.ptr(), t.as_ptr(), &mut a),
                NNX_ERR_WRONG_KIND
            );
            assert_contains!(m, what);
        }
        if what != "nested state" {
            let m = fails!(
                nnx_state_get_state_str(state.ptr(), t.as_ptr(), &mut s),
                NNX_ERR_WRONG_KIND
            );
            assert_contains!(m, shown);
            assert_contains!(m, "not a nested state");
        }
        assert_eq!((v, a, s), (sentinel(), sentinel(), sentinel()));
    }
    // The key-path forms too.
    let at_array = path!["b", "x"];
    let mut v: *mut nnx_variable = sentinel();
    fails!(
        nnx_state_get_variable(state.ptr(), at_array.ptr(), 2, &mut v),
        NNX_ERR_WRONG_KIND
    );
    let at_var = path!["z"];
    let mut a: *mut nnx_array = sentinel();
    fails!(
        nnx_state_get_array(state.ptr(), at_var.ptr(), 1, &mut a),
        NNX_ERR_WRONG_KIND
    );
    let mut s: *mut nnx_state = sentinel();
    fails!(
        nnx_state_get_state(state.ptr(), at_var.ptr(), 1, &mut s),
        NNX_ERR_WRONG_KIND
    );
    assert_eq!((v, a, s), (sentinel(), sentinel(), sentinel()));
}

#[test]
fn wrong_kinds_in_flats() {
    let state = sample_state();
    let mut flat = null_mut();
    ok!(nnx_state_flatten(state.ptr(), &mut flat));
    let flat = Flat(flat);
    let mut len = 0;
    ok!(nnx_flat_len(flat.ptr(), &mut len));
    assert_eq!(len, SAMPLE_LEAVES);
    let mut seen = (false, false);
    for index in 0..len {
        let mut kind = SENTINEL_U32;
        ok!(nnx_flat_kind(flat.ptr(), index, &mut kind));
        let mut v: *mut nnx_variable = sentinel();
        let mut a: *mut nnx_array = sentinel();
        if kind == NNX_KIND_ARRAY {
            seen.0 = true;
            let m = fails!(
                nnx_flat_variable(flat.ptr(), index, &mut v),
                NNX_ERR_WRONG_KIND
            );
            assert_contains!(m, &index.to_string());
            assert_eq!(v, sentinel());
            ok!(nnx_flat_array(flat.ptr(), index, &mut a));
        } else {
            assert_eq!(kind, NNX_KIND_VARIABLE);
            seen.1 = true;
            fails!(
                nnx_flat_array(flat.ptr(), index, &mut a),
                NNX_ERR_WRONG_KIND
            );
            assert_eq!(a, sentinel());
            ok!(nnx_flat_variable(flat.ptr(), index, &mut v));
        }
    }
    assert_eq!(seen, (true, true));
}

#[test]
fn bulk_flat_reads_out_of_range_or_too_small() {
    let state = sample_state();
    let mut flat = null_mut();
    ok!(nnx_state_flatten(state.ptr(), &mut flat));
    let flat = Flat(flat);
    let n = SAMPLE_LEAVES;
    let mut kinds = vec![SENTINEL_U32; n + 8];
    let mut offsets = vec![SENTINEL; n + 9];
    let mut keys = vec![sentinel_key(); 64];
    for (start, count) in [
        (0, n + 1),
        (n, 1),
        (n + 1, 0),
        (1, usize::MAX),
        (usize::MAX, 2),
    ] {
        let count_here = count.min(n + 8);
        let m = fails!(
            nnx_flat_leaves(
                flat.ptr(),
                start,
                count_here,
                false,
                kinds.as_mut_ptr(),
                null_mut(),
                null_mut(),
                null_mut()
            ),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_contains!(m, &start.to_string());
        assert!(kinds.iter().all(|&k| k == SENTINEL_U32));
        fails!(
            nnx_flat_paths(
                flat.ptr(),
                start,
                count_here,
                offsets.as_mut_ptr(),
                keys.as_mut_ptr(),
                keys.len()
            ),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert!(offsets.iter().all(|&o| o == SENTINEL));
    }
    // A count no array can have.
    fails!(
        nnx_flat_paths(
            flat.ptr(),
            0,
            usize::MAX,
            offsets.as_mut_ptr(),
            null_mut(),
            0
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    // Room for fewer keys than the paths have: nothing is written.
    let mut sizes = vec![0; n + 1];
    ok!(nnx_flat_paths(
        flat.ptr(),
        0,
        n,
        sizes.as_mut_ptr(),
        null_mut(),
        0
    ));
    let needed = sizes[n];
    let m = fails!(
        nnx_flat_paths(
            flat.ptr(),
            0,
            n,
            offsets.as_mut_ptr(),
            keys.as_mut_ptr(),
            needed - 1
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, &format!("keys_capacity {}", needed - 1));
    assert_contains!(m, &needed.to_string());
    assert!(offsets.iter().all(|&o| o == SENTINEL));
    assert!(keys.iter().all(key_untouched));
}

#[test]
fn bulk_flat_push_rejects_bad_entries_and_appends_nothing() {
    let mut flat = null_mut();
    ok!(nnx_flat_new(&mut flat));
    let flat = Flat(flat);
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[2.0]);
    let keys = Path::new(&[K::S("a"), K::S("b"), K::I(3), K::Raw(b"\xff"), K::Kind(7)]);
    let two_v = [var.ptr().cast_const(), var.ptr().cast_const()];
    let len_of = |f: &Flat| {
        let mut n = SENTINEL;
        ok!(nnx_flat_len(f.ptr(), &mut n));
        n
    };
    let push = |offsets: &[usize], v: &[*const nnx_variable], a: *const *const nnx_array| {
        nnx_flat_push_many(
            flat.ptr(),
            offsets.len() - 1,
            offsets.as_ptr(),
            keys.ptr(),
            v.as_ptr(),
            a,
        )
    };
    // Offsets that go back.
    let m = fails!(push(&[0, 2, 1], &two_v, null()), NNX_ERR_INVALID_ARGUMENT);
    assert_contains!(m, "must not decrease");
    // An empty path, at entry 1.
    let m = fails!(push(&[0, 2, 2], &two_v, null()), NNX_ERR_INVALID_ARGUMENT);
    assert_contains!(m, "entry 1 of 2");
    assert_contains!(m, "non-empty path");
    // Entry 1's path holds invalid UTF-8, or a key of no known kind.
    for (second, status) in [
        (K::Raw(b"\xff"), nnx_status::NNX_ERR_INVALID_UTF8),
        (K::Kind(7), nnx_status::NNX_ERR_INVALID_ARGUMENT),
    ] {
        let bad = Path::new(&[K::S("ok"), K::I(1), second]);
        let offsets = [0usize, 1, 3];
        let primed = prime_error();
        let got = nnx_flat_push_many(
            flat.ptr(),
            2,
            offsets.as_ptr(),
            bad.ptr(),
            two_v.as_ptr(),
            null(),
        );
        assert_eq!(got, status);
        let m = last_error();
        assert_ne!(m, primed);
        assert_contains!(m, "entry 1 of 2");
    }
    // Both a variable and an array for entry 0.
    let one_a = [array.ptr().cast_const(), null()];
    let m = fails!(
        push(&[0, 2, 3], &two_v, one_a.as_ptr()),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "entry 0 of 2");
    assert_contains!(m, "both a variable and an array");
    assert_eq!(len_of(&flat), 0, "a failed push appended something");
    // The good part goes in.
    ok!(push(&[0, 2, 3], &two_v, null()));
    assert_eq!(len_of(&flat), 2);
}

#[test]
fn metadata_read_as_the_wrong_type() {
    let v = variable(NNX_TYPE_PARAM, None);
    let (s_name, i_name, f_name, b_name) = (cstr("s"), cstr("i"), cstr("f"), cstr("b"));
    let text = cstr("text");
    ok!(nnx_variable_set_metadata_str(
        v.ptr(),
        s_name.as_ptr(),
        text.as_ptr()
    ));
    ok!(nnx_variable_set_metadata_int(v.ptr(), i_name.as_ptr(), 3));
    ok!(nnx_variable_set_metadata_float(
        v.ptr(),
        f_name.as_ptr(),
        0.5
    ));
    ok!(nnx_variable_set_metadata_bool(
        v.ptr(),
        b_name.as_ptr(),
        true
    ));

    // The kind each entry reports is the one its getter accepts.
    for (name, expected) in [
        (&s_name, NNX_META_STR),
        (&i_name, NNX_META_INT),
        (&f_name, NNX_META_FLOAT),
        (&b_name, NNX_META_BOOL),
    ] {
        let mut kind = SENTINEL_U32;
        ok!(nnx_variable_metadata_kind(
            v.ptr(),
            name.as_ptr(),
            &mut kind
        ));
        assert_eq!(kind, expected);
    }

    let mut s: *mut c_char = sentinel();
    let mut i = SENTINEL_I64;
    let mut x = SENTINEL_F64;
    let mut b = BoolOut::new();
    for (name, kind) in [
        (&s_name, "str"),
        (&i_name, "int"),
        (&f_name, "float"),
        (&b_name, "bool"),
    ] {
        let n = name.as_ptr();
        if kind != "str" {
            let m = fails!(
                nnx_variable_get_metadata_str(v.ptr(), n, &mut s),
                NNX_ERR_WRONG_KIND
            );
            assert_contains!(m, kind);
        }
        if kind != "int" {
            let m = fails!(
                nnx_variable_get_metadata_int(v.ptr(), n, &mut i),
                NNX_ERR_WRONG_KIND
            );
            assert_contains!(m, kind);
        }
        if kind != "float" {
            // An int is not silently widened to a float either.
            fails!(
                nnx_variable_get_metadata_float(v.ptr(), n, &mut x),
                NNX_ERR_WRONG_KIND
            );
        }
        if kind != "bool" {
            fails!(
                nnx_variable_get_metadata_bool(v.ptr(), n, b.ptr()),
                NNX_ERR_WRONG_KIND
            );
        }
    }
    assert_eq!(s, sentinel());
    assert_eq!(i, SENTINEL_I64);
    assert_eq!(x.to_bits(), SENTINEL_F64.to_bits());
    assert!(b.untouched());

    // A non-string "tag" is no tag.
    let tag = cstr("tag");
    ok!(nnx_variable_set_metadata_int(v.ptr(), tag.as_ptr(), 1));
    let mut out: *mut c_char = sentinel();
    ok!(nnx_variable_tag(v.ptr(), &mut out));
    assert!(out.is_null());
}

// ---------------------------------------------------------------------------
// Variable types

#[test]
fn unknown_type_ids() {
    for id in [UNKNOWN_TYPE, NNX_TYPE_NONE, u32::MAX - 1] {
        let array = f32_array(&[1], &[1.0]);
        let mut v: *mut nnx_variable = sentinel();
        let m = fails!(
            nnx_variable_new(id, array.ptr(), &mut v),
            NNX_ERR_UNKNOWN_TYPE
        );
        assert_contains!(m, &id.to_string());
        fails!(nnx_variable_new(id, null(), &mut v), NNX_ERR_UNKNOWN_TYPE);
        assert_eq!(v, sentinel());

        let mut f: *mut nnx_filter = sentinel();
        fails!(nnx_filter_of_type(id, &mut f), NNX_ERR_UNKNOWN_TYPE);
        assert_eq!(f, sentinel());

        let mut name: *const c_char = sentinel_const();
        fails!(nnx_type_name(id, &mut name), NNX_ERR_UNKNOWN_TYPE);
        assert_eq!(name, sentinel_const());

        let mut parent = SENTINEL_U32;
        fails!(nnx_type_parent(id, &mut parent), NNX_ERR_UNKNOWN_TYPE);
        assert_eq!(parent, SENTINEL_U32);

        let mut result = BoolOut::new();
        fails!(
            nnx_type_is_subtype(id, NNX_TYPE_VARIABLE, result.ptr()),
            NNX_ERR_UNKNOWN_TYPE
        );
        fails!(
            nnx_type_is_subtype(NNX_TYPE_PARAM, id, result.ptr()),
            NNX_ERR_UNKNOWN_TYPE
        );
        fails!(
            nnx_type_is_subtype(id, id, result.ptr()),
            NNX_ERR_UNKNOWN_TYPE
        );
        assert!(result.untouched());

        let child = cstr("FfiErrorsOrphan");
        let mut out = SENTINEL_U32;
        fails!(
            nnx_type_register(child.as_ptr(), id, &mut out),
            NNX_ERR_UNKNOWN_TYPE
        );
        assert_eq!(out, SENTINEL_U32);
    }
    // The orphan was not registered.
    let child = cstr("FfiErrorsOrphan");
    let mut out = SENTINEL_U32;
    fails!(
        nnx_type_lookup(child.as_ptr(), &mut out),
        NNX_ERR_KEY_NOT_FOUND
    );
    // The first id past the registry is unknown too.
    let mut count = 0;
    ok!(nnx_type_count(&mut count));
    assert!(count >= 12);
    let mut parent = SENTINEL_U32;
    ok!(nnx_type_parent(NNX_TYPE_VARIABLE, &mut parent));
    assert_eq!(parent, NNX_TYPE_NONE);
}

#[test]
fn conflicting_type_registration() {
    let name = cstr("FfiErrorsQuantParam");
    let mut first = SENTINEL_U32;
    ok!(nnx_type_register(name.as_ptr(), NNX_TYPE_PARAM, &mut first));
    let mut again = SENTINEL_U32;
    ok!(nnx_type_register(name.as_ptr(), NNX_TYPE_PARAM, &mut again));
    assert_eq!(first, again, "same name, same parent: same id");

    let mut out = SENTINEL_U32;
    let m = fails!(
        nnx_type_register(name.as_ptr(), NNX_TYPE_BATCH_STAT, &mut out),
        NNX_ERR_TYPE_CONFLICT
    );
    assert_contains!(m, "FfiErrorsQuantParam");
    assert_contains!(m, "Param");
    assert_contains!(m, "BatchStat");
    assert_eq!(out, SENTINEL_U32);

    // Built-in names keep their parents.
    let param = cstr("Param");
    ok!(nnx_type_register(
        param.as_ptr(),
        NNX_TYPE_VARIABLE,
        &mut out
    ));
    assert_eq!(out, NNX_TYPE_PARAM);
    out = SENTINEL_U32;
    fails!(
        nnx_type_register(param.as_ptr(), NNX_TYPE_CACHE, &mut out),
        NNX_ERR_TYPE_CONFLICT
    );
    let root = cstr("Variable");
    fails!(
        nnx_type_register(root.as_ptr(), NNX_TYPE_PARAM, &mut out),
        NNX_ERR_TYPE_CONFLICT
    );
    assert_eq!(out, SENTINEL_U32);

    // The registry is as before.
    let mut parent = SENTINEL_U32;
    ok!(nnx_type_parent(first, &mut parent));
    assert_eq!(parent, NNX_TYPE_PARAM);
    let mut type_name: *const c_char = null();
    ok!(nnx_type_name(first, &mut type_name));
    // SAFETY: a static NUL-terminated string from the registry.
    assert_eq!(
        unsafe { CStr::from_ptr(type_name) }.to_str().unwrap(),
        "FfiErrorsQuantParam"
    );
    let mut sub = BoolOut::new();
    ok!(nnx_type_is_subtype(first, NNX_TYPE_VARIABLE, sub.ptr()));
    assert!(sub.get());
}

#[test]
fn empty_type_and_metadata_names() {
    let empty = cstr("");
    let mut out = SENTINEL_U32;
    let m = fails!(
        nnx_type_register(empty.as_ptr(), NNX_TYPE_PARAM, &mut out),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "empty");
    assert_eq!(out, SENTINEL_U32);
    fails!(
        nnx_type_lookup(empty.as_ptr(), &mut out),
        NNX_ERR_KEY_NOT_FOUND
    );

    let v = variable(NNX_TYPE_PARAM, None);
    let value = cstr("x");
    let m = fails!(
        nnx_variable_set_metadata_str(v.ptr(), empty.as_ptr(), value.as_ptr()),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "empty");
    fails!(
        nnx_variable_set_metadata_int(v.ptr(), empty.as_ptr(), 1),
        NNX_ERR_INVALID_ARGUMENT
    );
    fails!(
        nnx_variable_set_metadata_float(v.ptr(), empty.as_ptr(), 1.0),
        NNX_ERR_INVALID_ARGUMENT
    );
    fails!(
        nnx_variable_set_metadata_bool(v.ptr(), empty.as_ptr(), false),
        NNX_ERR_INVALID_ARGUMENT
    );
    let mut count = SENTINEL;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 0);
}

// ---------------------------------------------------------------------------
// Filter and split

#[test]
fn split_remainder_is_non_exhaustive() {
    let state = sample_state();
    let params = of_type(NNX_TYPE_PARAM);
    leaves_unchanged(&state, || {
        let (status, out) = partition(nnx_state_split, &state, &[&params]);
        assert_eq!(
            status,
            nnx_status::NNX_ERR_NON_EXHAUSTIVE,
            "{}",
            last_error()
        );
        assert_eq!(out, vec![sentinel(); 1], "a failed split wrote outputs");
        let m = last_error();
        assert!(
            m.starts_with("Non-exhaustive filters"),
            "message {m:?} does not start as NNX's"
        );
        // Unmatched: b/1, b/x, e/0; in sorted order ints come first.
        assert_contains!(m, "('b', 1)");
    });

    // With the BatchStat matched, the first unmatched is the bare array.
    let stats = of_type(NNX_TYPE_BATCH_STAT);
    let (status, out) = partition(nnx_state_split, &state, &[&params, &stats]);
    assert_eq!(status, nnx_status::NNX_ERR_NON_EXHAUSTIVE);
    assert_eq!(out, vec![sentinel(); 2]);
    assert_contains!(last_error(), "('b', 'x')");

    // Filter never minds a remainder.
    let (status, out) = partition(nnx_state_filter, &state, &[&params, &stats]);
    ok!(status);
    free_all(out);

    // Sorted order, not insertion order: `b` was inserted after `z`.
    let late = new_state();
    set_var(&late, "zz/0", &variable(NNX_TYPE_CACHE, None));
    set_var(&late, "aa/10", &variable(NNX_TYPE_CACHE, None));
    set_var(&late, "aa/9", &variable(NNX_TYPE_CACHE, None));
    let (status, _) = partition(nnx_state_split, &late, &[&params]);
    assert_eq!(status, nnx_status::NNX_ERR_NON_EXHAUSTIVE);
    assert_contains!(last_error(), "('aa', 9)");
}

fn filter_order_fails(state: &St, filters: &[&Flt], index: usize) {
    for (name, op) in PARTITIONS {
        leaves_unchanged(state, || {
            let (status, out) = partition(op, state, filters);
            assert_eq!(
                status,
                nnx_status::NNX_ERR_FILTER_ORDER,
                "{name}: {}",
                last_error()
            );
            assert_eq!(out, vec![sentinel(); filters.len()]);
            let m = last_error();
            assert!(
                m.starts_with("`...` or `True` can only be used as the last filters"),
                "{name}: message {m:?} does not start as NNX's"
            );
            assert_contains!(m, format!("index {index}"));
        });
    }
}

fn filter_order_ok(state: &St, filters: &[&Flt]) -> Vec<usize> {
    let mut counts = Vec::new();
    for (name, op) in PARTITIONS {
        let (status, out) = partition(op, state, filters);
        assert_eq!(status, nnx_status::NNX_OK, "{name}: {}", last_error());
        counts = out.iter().map(|s| leaves(*s)).collect();
        free_all(out);
    }
    counts
}

#[test]
fn misplaced_everything_is_a_filter_order_error() {
    let state = sample_state();
    let (all, param, none) = (everything(), of_type(NNX_TYPE_PARAM), nothing());
    filter_order_fails(&state, &[&all, &param], 0);
    filter_order_fails(&state, &[&all, &all, &param], 0);
    filter_order_fails(&state, &[&param, &all, &none], 1);
    filter_order_fails(&state, &[&param, &all, &all, &none, &all], 1);
    // Checked before any leaf is looked at, even on an empty state.
    filter_order_fails(&new_state(), &[&all, &param], 0);
}

#[test]
fn everything_last_is_fine() {
    let state = sample_state();
    let (all, param) = (everything(), of_type(NNX_TYPE_PARAM));
    assert_eq!(filter_order_ok(&state, &[&param, &all]), vec![2, 3]);
    assert_eq!(
        filter_order_ok(&state, &[&param, &all, &all]),
        vec![2, 3, 0]
    );
    assert_eq!(filter_order_ok(&state, &[&all]), vec![SAMPLE_LEAVES]);
    assert_eq!(
        filter_order_ok(&state, &[&all, &all]),
        vec![SAMPLE_LEAVES, 0]
    );
    // `Any(Everything)` is not the literal: it may come first.
    let wrapped = any_of(&[&all]);
    assert_eq!(
        filter_order_ok(&state, &[&wrapped, &param]),
        vec![SAMPLE_LEAVES, 0]
    );
    // Nor is a copy of the literal wrapped in Not(Not(...)).
    let mut not = null_mut();
    ok!(nnx_filter_not(all.ptr(), &mut not));
    let not = Flt(not);
    let mut not_not = null_mut();
    ok!(nnx_filter_not(not.ptr(), &mut not_not));
    let not_not = Flt(not_not);
    assert_eq!(
        filter_order_ok(&state, &[&not_not, &param]),
        vec![SAMPLE_LEAVES, 0]
    );
    // A clone of the literal is still the literal.
    let mut clone = null_mut();
    ok!(nnx_filter_clone(all.ptr(), &mut clone));
    let clone = Flt(clone);
    filter_order_fails(&state, &[&clone, &param], 0);
    assert_eq!(
        filter_order_ok(&state, &[&param, &clone, &all]),
        vec![2, 3, 0]
    );
}

#[test]
fn zero_filters_and_zero_states() {
    let state = sample_state();
    let p = of_type(NNX_TYPE_PARAM);
    let ptrs = filter_ptrs(&[&p]);
    let mut out = [sentinel::<nnx_state>(); 1];
    for (name, op) in PARTITIONS {
        for filters in [null(), ptrs.as_ptr()] {
            prime_error();
            let status = op(state.ptr(), filters, 0, out.as_mut_ptr());
            assert_eq!(
                status,
                nnx_status::NNX_ERR_INVALID_ARGUMENT,
                "{name} with no filters: {}",
                last_error()
            );
            assert_contains!(last_error(), "filter");
        }
    }
    assert_eq!(out, [sentinel(); 1]);

    let mut merged: *mut nnx_state = sentinel();
    let m = fails!(
        nnx_state_merge(null(), 0, &mut merged),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "at least one");
    let states = [state.ptr()];
    fails!(
        nnx_state_merge(states.as_ptr(), 0, &mut merged),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_eq!(merged, sentinel());
}

#[test]
fn callback_filter_answering_seven() {
    let state = sample_state();
    let mut f = null_mut();
    ok!(nnx_filter_callback(
        Some(answer_seven),
        null_mut(),
        None,
        &mut f
    ));
    let seven = Flt(f);
    let param = of_type(NNX_TYPE_PARAM);
    let mut not = null_mut();
    ok!(nnx_filter_not(seven.ptr(), &mut not));
    let not = Flt(not);
    let nested = any_of(&[&param, &not]);
    for (name, op) in PARTITIONS {
        for filters in [
            vec![&seven],
            vec![&param, &seven],
            vec![&nested],
            vec![&param, &seven, &everything()],
        ] {
            leaves_unchanged(&state, || {
                let (status, out) = partition(op, &state, &filters);
                assert_eq!(
                    status,
                    nnx_status::NNX_ERR_CALLBACK,
                    "{name}: {}",
                    last_error()
                );
                assert_eq!(out, vec![sentinel(); filters.len()], "{name} wrote outputs");
                let m = last_error();
                assert_contains!(m, "7");
                assert_contains!(m, "callback");
            });
        }
    }
    // The message names the path of the first leaf asked about (sorted:
    // `a` comes first).
    let (_, _) = partition(nnx_state_filter, &state, &[&seven]);
    assert_contains!(last_error(), "'a'");
}

#[test]
fn indices_out_of_range() {
    let state = sample_state();
    let n = top_len(state.ptr());
    assert_eq!(n, 4);
    for index in [n, n + 1, usize::MAX] {
        let mut key = sentinel_key();
        let m = fails!(
            nnx_state_key_at(state.ptr(), index, &mut key),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_contains!(m, &index.to_string());
        assert!(key_untouched(&key));
    }
    let mut last = sentinel_key();
    ok!(nnx_state_key_at(state.ptr(), n - 1, &mut last));
    assert_eq!(last.kind, NNX_KEY_STR);
    // SAFETY: a NUL-terminated key string, valid while `state` lives.
    assert_eq!(unsafe { CStr::from_ptr(last.str) }.to_str().unwrap(), "e");

    let mut flat = null_mut();
    ok!(nnx_state_flatten(state.ptr(), &mut flat));
    let flat = Flat(flat);
    for index in [SAMPLE_LEAVES, SAMPLE_LEAVES + 7, usize::MAX] {
        let mut path: *const nnx_key = sentinel_const();
        let mut len = SENTINEL;
        let m = fails!(
            nnx_flat_path(flat.ptr(), index, &mut path, &mut len),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_contains!(m, &index.to_string());
        assert_eq!((path, len), (sentinel_const(), SENTINEL));
        let mut kind = SENTINEL_U32;
        fails!(
            nnx_flat_kind(flat.ptr(), index, &mut kind),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_eq!(kind, SENTINEL_U32);
        let mut v: *mut nnx_variable = sentinel();
        fails!(
            nnx_flat_variable(flat.ptr(), index, &mut v),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_eq!(v, sentinel());
        let mut a: *mut nnx_array = sentinel();
        fails!(
            nnx_flat_array(flat.ptr(), index, &mut a),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_eq!(a, sentinel());
    }
    // An empty flat has no index 0.
    let mut empty = null_mut();
    ok!(nnx_flat_new(&mut empty));
    let empty = Flat(empty);
    let mut kind = SENTINEL_U32;
    fails!(
        nnx_flat_kind(empty.ptr(), 0, &mut kind),
        NNX_ERR_INDEX_OUT_OF_RANGE
    );

    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("only");
    ok!(nnx_variable_set_metadata_bool(v.ptr(), name.as_ptr(), true));
    for index in [1usize, 2, usize::MAX] {
        let mut out_name: *mut c_char = sentinel();
        let mut out_kind = SENTINEL_U32;
        let m = fails!(
            nnx_variable_metadata_at(v.ptr(), index, &mut out_name, &mut out_kind),
            NNX_ERR_INDEX_OUT_OF_RANGE
        );
        assert_contains!(m, &index.to_string());
        assert_eq!((out_name, out_kind), (sentinel(), SENTINEL_U32));
    }
    let mut out_name = null_mut();
    let mut out_kind = SENTINEL_U32;
    ok!(nnx_variable_metadata_at(
        v.ptr(),
        0,
        &mut out_name,
        &mut out_kind
    ));
    assert_eq!(LibStr(out_name).text(), "only");
    assert_eq!(out_kind, NNX_META_BOOL);
    // With no metadata, index 0 is out of range.
    let bare = variable(NNX_TYPE_PARAM, None);
    let mut out_name: *mut c_char = sentinel();
    fails!(
        nnx_variable_metadata_at(bare.ptr(), 0, &mut out_name, &mut out_kind),
        NNX_ERR_INDEX_OUT_OF_RANGE
    );
}

// ---------------------------------------------------------------------------
// Failures leave the state as it was

#[test]
fn failed_operations_leave_the_state_unchanged() {
    let state = sample_state();
    let params = of_type(NNX_TYPE_PARAM);
    let mut f = null_mut();
    ok!(nnx_filter_callback(
        Some(answer_seven),
        null_mut(),
        None,
        &mut f
    ));
    let seven = Flt(f);
    let all = everything();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let view = get_view(&state, "b");
    let view_before = listing(view.ptr());
    let (_dead_parent, dead) = dead_view();

    leaves_unchanged(&state, || {
        use nnx_status::*;
        assert_eq!(
            partition(nnx_state_split, &state, &[&params]).0,
            NNX_ERR_NON_EXHAUSTIVE
        );
        assert_eq!(
            partition(nnx_state_split, &state, &[&seven]).0,
            NNX_ERR_CALLBACK
        );
        assert_eq!(
            partition(nnx_state_filter, &state, &[&params, &seven]).0,
            NNX_ERR_CALLBACK
        );
        assert_eq!(
            partition(nnx_state_filter, &state, &[&all, &params]).0,
            NNX_ERR_FILTER_ORDER
        );
        assert_eq!(
            partition(nnx_state_split, &state, &[&all, &params]).0,
            NNX_ERR_FILTER_ORDER
        );
        // Setting through a leaf creates nothing on the way.
        for text in ["b/x/y", "a/new/0", "b/1/deeper/still"] {
            let t = cstr(text);
            fails!(
                nnx_state_set_variable_str(state.ptr(), t.as_ptr(), var.ptr()),
                NNX_ERR_PATH_THROUGH_LEAF
            );
        }
        // A bad last key: the new nested states before it are not made.
        let p = Path::new(&[K::S("b"), K::S("new"), K::Raw(b"\xff")]);
        fails!(
            nnx_state_set_variable(state.ptr(), p.ptr(), p.len(), var.ptr()),
            NNX_ERR_INVALID_UTF8
        );
        let p = Path::new(&[K::S("brand"), K::S("new"), K::Kind(9)]);
        fails!(
            nnx_state_set_variable(state.ptr(), p.ptr(), p.len(), var.ptr()),
            NNX_ERR_INVALID_ARGUMENT
        );
        // Removing what is not there.
        let t = cstr("b/zz");
        fails!(
            nnx_state_remove_str(state.ptr(), t.as_ptr()),
            NNX_ERR_KEY_NOT_FOUND
        );
        // A dead view as the source of an update or a nested state.
        fails!(
            nnx_state_update(state.ptr(), dead.ptr()),
            NNX_ERR_KEY_NOT_FOUND
        );
        let t = cstr("b/copy");
        fails!(
            nnx_state_set_state_str(state.ptr(), t.as_ptr(), dead.ptr()),
            NNX_ERR_KEY_NOT_FOUND
        );
        // Failures through the view.
        let t = cstr("x/y");
        fails!(
            nnx_state_set_variable_str(view.ptr(), t.as_ptr(), var.ptr()),
            NNX_ERR_PATH_THROUGH_LEAF
        );
    });
    assert_eq!(listing(view.ptr()), view_before);
}

// ---------------------------------------------------------------------------
// Views whose nested state is gone

/// A state and a view of its `b`, after `b` was removed.
fn dead_view() -> (St, St) {
    let parent = sample_state();
    let view = get_view(&parent, "b");
    let b = cstr("b");
    ok!(nnx_state_remove_str(parent.ptr(), b.as_ptr()));
    (parent, view)
}

/// Asserts that `call` fails as a dead view does.
macro_rules! gone {
    ($call:expr) => {{
        let m = fails!($call, NNX_ERR_KEY_NOT_FOUND);
        assert_contains!(m, "no longer exists");
    }};
}

#[test]
fn a_view_whose_nested_state_was_removed() {
    let (parent, view) = dead_view();
    let v = view.ptr();
    let other = sample_state();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let array = f32_array(&[1], &[1.0]);
    let (one, x, empty) = (cstr("1"), cstr("x"), cstr(""));
    let key = path!["x"];
    let parent_before = listing(parent.ptr());
    let other_before = listing(other.ptr());

    let mut n = SENTINEL;
    gone!(nnx_state_len(v, &mut n));
    gone!(nnx_state_num_leaves(v, &mut n));
    assert_eq!(n, SENTINEL);
    let mut k = sentinel_key();
    gone!(nnx_state_key_at(v, 0, &mut k));
    assert!(key_untouched(&k));

    let mut kind = SENTINEL_U32;
    gone!(nnx_state_get_kind(v, null(), 0, &mut kind));
    gone!(nnx_state_get_kind(v, key.ptr(), 1, &mut kind));
    gone!(nnx_state_get_kind_str(v, empty.as_ptr(), &mut kind));
    assert_eq!(kind, SENTINEL_U32);
    let mut found = BoolOut::new();
    gone!(nnx_state_contains(v, null(), 0, found.ptr()));
    gone!(nnx_state_contains_str(v, x.as_ptr(), found.ptr()));
    assert!(found.untouched());
    let mut var_out: *mut nnx_variable = sentinel();
    gone!(nnx_state_get_variable_str(v, one.as_ptr(), &mut var_out));
    let mut arr_out: *mut nnx_array = sentinel();
    gone!(nnx_state_get_array(v, key.ptr(), 1, &mut arr_out));
    gone!(nnx_state_get_array_str(v, x.as_ptr(), &mut arr_out));
    let mut st_out: *mut nnx_state = sentinel();
    gone!(nnx_state_get_state(v, null(), 0, &mut st_out));
    gone!(nnx_state_get_state_str(v, empty.as_ptr(), &mut st_out));
    gone!(nnx_state_clone(v, &mut st_out));
    gone!(nnx_state_deep_copy(v, &mut st_out));
    gone!(nnx_state_diff(v, other.ptr(), &mut st_out));
    gone!(nnx_state_diff(other.ptr(), v, &mut st_out));
    let pair = [other.ptr(), v];
    gone!(nnx_state_merge(pair.as_ptr(), 2, &mut st_out));
    gone!(nnx_state_merge(pair[1..].as_ptr(), 1, &mut st_out));
    assert_eq!(
        (var_out, arr_out, st_out),
        (sentinel(), sentinel(), sentinel())
    );
    let mut flat: *mut nnx_flat = sentinel();
    gone!(nnx_state_flatten(v, &mut flat));
    assert_eq!(flat, sentinel());
    let mut text: *mut c_char = sentinel();
    gone!(nnx_state_to_string(v, &mut text));
    assert_eq!(text, sentinel());

    let all = everything();
    for (_, op) in PARTITIONS {
        let (status, out) = partition(op, &view, &[&all]);
        assert_eq!(
            status,
            nnx_status::NNX_ERR_KEY_NOT_FOUND,
            "{}",
            last_error()
        );
        assert_eq!(out, vec![sentinel(); 1]);
    }

    gone!(nnx_state_set_variable(v, key.ptr(), 1, var.ptr()));
    gone!(nnx_state_set_variable_str(v, one.as_ptr(), var.ptr()));
    gone!(nnx_state_set_array(v, key.ptr(), 1, array.ptr()));
    gone!(nnx_state_set_array_str(v, x.as_ptr(), array.ptr()));
    gone!(nnx_state_set_state(v, key.ptr(), 1, other.ptr()));
    gone!(nnx_state_set_state_str(v, x.as_ptr(), other.ptr()));
    gone!(nnx_state_remove(v, key.ptr(), 1));
    gone!(nnx_state_remove_str(v, one.as_ptr()));
    gone!(nnx_state_update(v, other.ptr()));
    gone!(nnx_state_update(other.ptr(), v));
    let name = cstr("copy");
    gone!(nnx_state_set_state_str(other.ptr(), name.as_ptr(), v));

    // Nothing was written anywhere: the dead view did not come back.
    assert_eq!(listing(parent.ptr()), parent_before);
    assert_eq!(listing(other.ptr()), other_before);
    let b = cstr("b");
    let mut found = BoolOut::new();
    ok!(nnx_state_contains_str(
        parent.ptr(),
        b.as_ptr(),
        found.ptr()
    ));
    assert!(!found.get());
}

#[test]
fn a_view_follows_its_path() {
    let parent = sample_state();
    let view = get_view(&parent, "b");
    // `b/1` is a variable, so a view of it cannot be made.
    let b = cstr("b");
    let b1 = cstr("b/1");
    let mut out: *mut nnx_state = sentinel();
    fails!(
        nnx_state_get_state_str(parent.ptr(), b1.as_ptr(), &mut out),
        NNX_ERR_WRONG_KIND
    );
    assert_eq!(out, sentinel());

    // Replaced by a leaf: calls on the view fail with WRONG_KIND, reads and
    // writes alike, and nothing is written through it.
    set_var(&parent, "b", &variable(NNX_TYPE_PARAM, None));
    let before = listing(parent.ptr());
    let mut n = SENTINEL;
    let m = fails!(nnx_state_len(view.ptr(), &mut n), NNX_ERR_WRONG_KIND);
    assert_contains!(m, "'b'");
    assert_contains!(m, "leaf");
    fails!(nnx_state_num_leaves(view.ptr(), &mut n), NNX_ERR_WRONG_KIND);
    let mut text: *mut c_char = sentinel();
    fails!(
        nnx_state_to_string(view.ptr(), &mut text),
        NNX_ERR_WRONG_KIND
    );
    let q = cstr("q");
    fails!(
        nnx_state_set_variable_str(view.ptr(), q.as_ptr(), variable(NNX_TYPE_PARAM, None).ptr()),
        NNX_ERR_WRONG_KIND
    );
    fails!(
        nnx_state_update(view.ptr(), parent.ptr()),
        NNX_ERR_WRONG_KIND
    );
    assert_eq!((n, text), (SENTINEL, sentinel()));
    assert_eq!(listing(parent.ptr()), before);

    // Removed: KEY_NOT_FOUND.
    ok!(nnx_state_remove_str(parent.ptr(), b.as_ptr()));
    gone!(nnx_state_num_leaves(view.ptr(), &mut n));

    // Made again: the view follows the path.
    set_var(&parent, "b/q", &variable(NNX_TYPE_PARAM, None));
    assert_eq!(top_len(view.ptr()), 1);
    assert_eq!(leaves(view.ptr()), 1);

    // A view of a view dies with its grandparent's entry.
    set_var(&parent, "b/c/d", &variable(NNX_TYPE_PARAM, None));
    let inner = get_view(&view, "c");
    assert_eq!(leaves(inner.ptr()), 1);
    ok!(nnx_state_remove_str(parent.ptr(), b.as_ptr()));
    let m = fails!(nnx_state_len(inner.ptr(), &mut n), NNX_ERR_KEY_NOT_FOUND);
    assert_contains!(m, "'b'");
    assert_eq!(n, SENTINEL);
}

// ---------------------------------------------------------------------------
// Regressions: failures that once panicked, aborted or deadlocked.

#[test]
fn impossible_allocations_fail_with_out_of_memory() {
    for shape in [[i64::MAX], [1i64 << 46]] {
        let mut out = sentinel::<nnx_array>();
        let message = fails!(
            nnx_array_zeros(NNX_DTYPE_U8, shape.as_ptr(), 1, &mut out),
            NNX_ERR_OUT_OF_MEMORY
        );
        assert_contains!(message, "cannot allocate");
        assert_eq!(out, sentinel::<nnx_array>());
    }
}

/// A release callback that reads the very state whose update dropped its
/// array: the drop must happen after the state's lock is released.
unsafe extern "C" fn read_state_on_release(user_data: *mut c_void) {
    let state = user_data.cast::<nnx_state>();
    let mut leaves = 0usize;
    assert_eq!(nnx_state_num_leaves(state, &mut leaves), nnx_status::NNX_OK);
}

#[test]
fn update_drops_replaced_leaves_outside_the_lock() {
    let state = new_state();
    let mut byte = [7u8; 1];
    let shape = [1i64];
    let mut wrapped = null_mut();
    ok!(nnx_array_wrap(
        NNX_DTYPE_U8,
        shape.as_ptr(),
        1,
        byte.as_mut_ptr().cast(),
        1,
        false,
        Some(read_state_on_release),
        state.ptr().cast(),
        &mut wrapped
    ));
    let wrapped = Arr(wrapped);
    set_arr(&state, "a", &wrapped);
    drop(wrapped);
    let source = new_state();
    set_arr(&source, "a", &f32_array(&[1], &[1.0]));
    // Before the fix this hung: the release ran under the write lock.
    ok!(nnx_state_update(state.ptr(), source.ptr()));
    assert_eq!(leaves(state.ptr()), 1);
}

#[test]
fn remove_through_a_leaf_names_the_leaf() {
    let state = new_state();
    set_var(&state, "a", &var_with(NNX_TYPE_PARAM, &[1.0]));
    let message = fails!(
        nnx_state_remove_str(state.ptr(), cstr("a/0/c").as_ptr()),
        NNX_ERR_PATH_THROUGH_LEAF
    );
    assert_contains!(message, "path 'a/0/c' runs through the leaf at 'a'");
}

// ---------------------------------------------------------------------------
// Variable values: typed keys and opaque values

/// `nnx_variable_new_key` and `nnx_variable_set_key` with this data and
/// name must both fail with `status` and a message containing `needle`,
/// writing nothing and leaving the variable's value as it was.
fn bad_key(data: &Arr, name: &CStr, status: nnx_status, needle: &str) {
    let mut out: *mut nnx_variable = sentinel();
    let primed = prime_error();
    assert_eq!(
        nnx_variable_new_key(NNX_TYPE_RNG_KEY, data.ptr(), name.as_ptr(), &mut out),
        status,
        "{name:?}"
    );
    let message = last_error();
    assert!(message != primed && message.contains(needle), "{message:?}");
    assert_eq!(out, sentinel());
    let good = u32_array(&[2], &[1, 2]);
    let v = key_var(&good, "threefry2x32");
    assert_eq!(
        nnx_variable_set_key(v.ptr(), data.ptr(), name.as_ptr()),
        status
    );
    assert!(last_error().contains(needle));
    let (kept, impl_name) = get_key(v.ptr());
    assert_eq!(
        (kept.ptr(), impl_name.as_str()),
        (good.ptr(), "threefry2x32")
    );
}

#[test]
fn key_data_that_jax_refuses() {
    use nnx_status::*;
    let threefry = cstr("threefry2x32");
    // Key data is uint32, as jax.random.key_data gives.
    let floats = f32_array(&[2], &[0.0, 1.0]);
    bad_key(&floats, &threefry, NNX_ERR_INVALID_ARGUMENT, "uint32");
    let mut out = null_mut();
    let words = [0u64, 1];
    ok!(nnx_array_new(
        NNX_DTYPE_U64,
        [2i64].as_ptr(),
        1,
        words.as_ptr().cast(),
        16,
        &mut out
    ));
    bad_key(&Arr(out), &threefry, NNX_ERR_INVALID_ARGUMENT, "got uint64");
    // At least one dimension: the key shape.
    bad_key(
        &u32_array(&[], &[7]),
        &cstr("my_prng"),
        NNX_ERR_INVALID_ARGUMENT,
        "scalar",
    );
    // jax's own implementations have their key shape last.
    for (name, shape, want) in [
        ("threefry2x32", vec![4i64], "[..., 2]"),
        ("threefry2x32", vec![2, 1], "[..., 2]"),
        ("rbg", vec![2], "[..., 4]"),
        ("unsafe_rbg", vec![3, 2], "[..., 4]"),
        ("threefry4x32", vec![2], "[..., 4]"),
        ("philox2x32", vec![2], "[..., 1]"),
        ("philox4x32", vec![4], "[..., 2]"),
    ] {
        let n: i64 = shape.iter().product();
        let data = u32_array(&shape, &vec![0; n as usize]);
        bad_key(&data, &cstr(name), NNX_ERR_INVALID_ARGUMENT, want);
    }
    // The name: not empty, UTF-8.
    let data = u32_array(&[2], &[0, 1]);
    bad_key(&data, &cstr(""), NNX_ERR_INVALID_ARGUMENT, "empty");
    bad_key(
        &data,
        &raw_cstr(b"fry\xff"),
        NNX_ERR_INVALID_UTF8,
        "impl_name",
    );
    // An unknown type.
    let mut v: *mut nnx_variable = sentinel();
    fails!(
        nnx_variable_new_key(UNKNOWN_TYPE, data.ptr(), threefry.as_ptr(), &mut v),
        NNX_ERR_UNKNOWN_TYPE
    );
    assert_eq!(v, sentinel());
    // Custom implementations take any uint32 data of at least one dimension,
    // batches of jax's own take their key shape last.
    let custom = key_var(&u32_array(&[5], &[1, 2, 3, 4, 5]), "my_prng");
    assert_eq!(get_key(custom.ptr()).1, "my_prng");
    let batch = key_var(&u32_array(&[2, 3, 4], &[9; 24]), "rbg");
    assert_eq!(get_key(batch.ptr()).1, "rbg");
}

#[test]
fn reading_a_value_of_another_kind() {
    let counter = Counter::new();
    let data = u32_array(&[2], &[0, 42]);
    let key = key_var(&data, "threefry2x32");
    let opaque = opaque_var("test:thing", sentinel(), &counter);
    let array = var_with(NNX_TYPE_PARAM, &[1.0]);
    let none = variable(NNX_TYPE_CACHE, None);

    // nnx_variable_get_value gives arrays only, and says where to look.
    let mut value: *mut nnx_array = sentinel();
    let m = fails!(
        nnx_variable_get_value(key.ptr(), &mut value),
        NNX_ERR_WRONG_KIND
    );
    assert_contains!(m, "typed PRNG key (threefry2x32)");
    assert_contains!(m, "nnx_variable_get_key");
    let m = fails!(
        nnx_variable_get_value(opaque.ptr(), &mut value),
        NNX_ERR_WRONG_KIND
    );
    assert_contains!(m, "opaque value (test:thing)");
    assert_contains!(m, "nnx_variable_get_opaque");
    assert_eq!(value, sentinel());

    for (v, what) in [
        (&array, "an array"),
        (&none, "no value"),
        (&opaque, "an opaque value"),
    ] {
        let mut data: *mut nnx_array = sentinel();
        let mut name: *const c_char = sentinel_const();
        let m = fails!(
            nnx_variable_get_key(v.ptr(), &mut data, &mut name),
            NNX_ERR_WRONG_KIND
        );
        assert_contains!(m, what);
        assert_contains!(m, "not a typed PRNG key");
        assert_eq!((data, name), (sentinel(), sentinel_const()));
    }
    for (v, what) in [
        (&array, "an array"),
        (&none, "no value"),
        (&key, "a typed PRNG key"),
    ] {
        let mut object: *mut c_void = sentinel();
        let mut name: *const c_char = sentinel_const();
        let m = fails!(
            nnx_variable_get_opaque(v.ptr(), &mut object, &mut name),
            NNX_ERR_WRONG_KIND
        );
        assert_contains!(m, what);
        assert_contains!(m, "not an opaque value");
        assert_eq!((object, name), (sentinel(), sentinel_const()));
    }
    // What each holds.
    assert_eq!(value_kind(key.ptr()), NNX_VALUE_KEY);
    assert_eq!(value_kind(opaque.ptr()), NNX_VALUE_OPAQUE);
    assert_eq!(value_kind(array.ptr()), NNX_VALUE_ARRAY);
    assert_eq!(value_kind(none.ptr()), NNX_VALUE_NONE);
    // The key's data is the very array given, and its name is interned.
    let (got, name) = get_key(key.ptr());
    assert_eq!((got.ptr(), name.as_str()), (data.ptr(), "threefry2x32"));
    let mut first = null();
    let mut second = null();
    let mut d = null_mut();
    ok!(nnx_variable_get_key(key.ptr(), &mut d, &mut first));
    nnx_array_release(d);
    let other = key_var(&u32_array(&[2], &[1, 1]), "threefry2x32");
    ok!(nnx_variable_get_key(other.ptr(), &mut d, &mut second));
    nnx_array_release(d);
    assert_eq!(first, second, "implementation names are interned");
    drop(opaque);
    assert_eq!(counter.get(), 1);
}

#[test]
fn bad_opaque_values_stay_with_the_caller() {
    let counter = Counter::new();
    let v = var_with(NNX_TYPE_PARAM, &[1.0]);
    for (name, status, needle) in [
        (cstr(""), nnx_status::NNX_ERR_INVALID_ARGUMENT, "empty"),
        (
            raw_cstr(b"py\xc3"),
            nnx_status::NNX_ERR_INVALID_UTF8,
            "type_name",
        ),
    ] {
        let mut out: *mut nnx_variable = sentinel();
        let primed = prime_error();
        let status_new = nnx_variable_new_opaque(
            NNX_TYPE_PARAM,
            name.as_ptr(),
            sentinel(),
            Some(count_release),
            counter.as_user_data(),
            &mut out,
        );
        assert_eq!(status_new, status);
        assert!(last_error() != primed && last_error().contains(needle));
        assert_eq!(out, sentinel());
        let status_set = nnx_variable_set_opaque(
            v.ptr(),
            name.as_ptr(),
            sentinel(),
            Some(count_release),
            counter.as_user_data(),
        );
        assert_eq!(status_set, status);
        assert!(last_error().contains(needle));
    }
    let name = cstr("test:thing");
    let mut out: *mut nnx_variable = sentinel();
    fails!(
        nnx_variable_new_opaque(
            UNKNOWN_TYPE,
            name.as_ptr(),
            sentinel(),
            Some(count_release),
            counter.as_user_data(),
            &mut out
        ),
        NNX_ERR_UNKNOWN_TYPE
    );
    assert_eq!(out, sentinel());
    assert_eq!(counter.get(), 0, "a failed call released the object");
    assert_eq!(value_kind(v.ptr()), NNX_VALUE_ARRAY);
}

/// What an opaque value's release callback reads to prove that no lock of
/// the library is held while it runs: the variable and the state that held
/// the value.
struct Reentrant {
    variable: *const nnx_variable,
    state: *const nnx_state,
    released: Counter,
}

unsafe extern "C" fn read_holders_on_release(user_data: *mut c_void) {
    // SAFETY: the tests pass a live `Reentrant`.
    let r = unsafe { &*user_data.cast::<Reentrant>() };
    let mut kind = 0;
    if !r.variable.is_null() {
        assert_eq!(
            nnx_variable_value_kind(r.variable, &mut kind),
            nnx_status::NNX_OK
        );
    }
    let mut leaves = 0usize;
    assert_eq!(
        nnx_state_num_leaves(r.state, &mut leaves),
        nnx_status::NNX_OK
    );
    // SAFETY: a live `Counter`.
    unsafe { count_release(r.released.as_user_data()) };
}

#[test]
fn opaque_values_are_released_outside_the_locks() {
    let state = new_state();
    let holder = variable(NNX_TYPE_PARAM, None);
    set_var(&state, "a", &holder);
    let r = Box::new(Reentrant {
        variable: holder.ptr(),
        state: state.ptr(),
        released: *Counter::new(),
    });
    let user_data = (&*r as *const Reentrant).cast_mut().cast();
    let name = cstr("test:reentrant");
    let set = |v: &Var| {
        ok!(nnx_variable_set_opaque(
            v.ptr(),
            name.as_ptr(),
            null_mut(),
            Some(read_holders_on_release),
            user_data
        ))
    };
    // Replacing the value: the old one is released after the variable's
    // lock is let go (the callback reads the variable).
    set(&holder);
    ok!(nnx_variable_set_value(holder.ptr(), null()));
    assert_eq!(r.released.get(), 1);
    set(&holder);
    let data = u32_array(&[2], &[0, 1]);
    ok!(nnx_variable_set_key(
        holder.ptr(),
        data.ptr(),
        cstr("threefry2x32").as_ptr()
    ));
    assert_eq!(r.released.get(), 2);
    // Removing the last holder from the state: released after the state's
    // lock is let go (the callback reads the state).
    let other = variable(NNX_TYPE_PARAM, None);
    set(&other);
    set_var(&state, "b", &other);
    drop(other);
    ok!(nnx_state_remove_str(state.ptr(), cstr("b").as_ptr()));
    assert_eq!(r.released.get(), 3);
    assert_eq!(leaves(state.ptr()), 1);
}

// ---------------------------------------------------------------------------
// Structured metadata

/// A C view of a borrowed string (`nnx_meta_get_str`, `nnx_meta_map_at`).
fn view_text(text: *const c_char, len: usize) -> String {
    // SAFETY: the library lends `len` bytes at `text` while the value lives.
    let bytes = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) };
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn kind_of(meta: *const nnx_meta) -> nnx_meta_kind {
    let mut kind = SENTINEL_U32;
    ok!(nnx_meta_get_kind(meta, &mut kind));
    kind
}

fn json_of(meta: *const nnx_meta) -> String {
    let mut out = null_mut();
    ok!(nnx_meta_to_json(meta, &mut out));
    LibStr(out).text()
}

fn from_json(text: &str) -> (nnx_status, *mut nnx_meta) {
    let mut out: *mut nnx_meta = sentinel();
    let status = nnx_meta_from_json(text.as_ptr().cast(), text.len(), &mut out);
    (status, out)
}

#[test]
fn structured_metadata_builds_reads_and_round_trips() {
    let sharding = meta_seq(true, &[&meta_null(), &meta_str("model")]);
    let betas = meta_seq(
        true,
        &[
            &meta_made(|o| nnx_meta_new_float(0.9, o)),
            &meta_made(|o| nnx_meta_new_float(0.999, o)),
        ],
    );
    let hyper = meta_map(&[
        ("lr", &meta_made(|o| nnx_meta_new_float(1e-3, o))),
        ("betas", &betas),
        ("nesterov", &meta_made(|o| nnx_meta_new_bool(false, o))),
        ("steps", &meta_seq(false, &[&meta_int(1), &meta_int(2)])),
    ]);
    assert_eq!(meta_repr(sharding.ptr()), "(None, 'model')");
    assert_eq!(
        meta_repr(hyper.ptr()),
        "{'lr': 0.001, 'betas': (0.9, 0.999), 'nesterov': False, 'steps': [1, 2]}"
    );
    assert_eq!(meta_repr(meta_seq(true, &[&meta_int(1)]).ptr()), "(1,)");

    // Parts are borrowed views; an empty string's bytes are a valid pointer.
    let (mut text, mut text_len) = (null(), SENTINEL);
    ok!(nnx_meta_get_str(
        meta_str("").ptr(),
        &mut text,
        &mut text_len
    ));
    assert_eq!(text_len, 0);
    // SAFETY: the library points an empty string at a static C string.
    assert_eq!(unsafe { *text }, 0);
    assert_eq!(kind_of(sharding.ptr()), NNX_META_TUPLE);
    let mut len = SENTINEL;
    ok!(nnx_meta_len(sharding.ptr(), &mut len));
    assert_eq!(len, 2);
    let mut item = null();
    ok!(nnx_meta_item(sharding.ptr(), 0, &mut item));
    assert_eq!(kind_of(item), NNX_META_NULL);
    ok!(nnx_meta_item(sharding.ptr(), 1, &mut item));
    ok!(nnx_meta_get_str(item, &mut text, &mut text_len));
    assert_eq!(view_text(text, text_len), "model");

    ok!(nnx_meta_len(hyper.ptr(), &mut len));
    assert_eq!(len, 4);
    let (mut key, mut key_len, mut value) = (null(), 0, null());
    ok!(nnx_meta_map_at(
        hyper.ptr(),
        1,
        &mut key,
        &mut key_len,
        &mut value
    ));
    assert_eq!(view_text(key, key_len), "betas");
    assert_eq!(kind_of(value), NNX_META_TUPLE);
    let mut found = null();
    ok!(nnx_meta_map_get(
        hyper.ptr(),
        "lr".as_ptr().cast(),
        2,
        &mut found
    ));
    let mut x = SENTINEL_F64;
    ok!(nnx_meta_get_float(found, &mut x));
    assert_eq!(x, 1e-3);
    ok!(nnx_meta_map_get(
        hyper.ptr(),
        "nesterov".as_ptr().cast(),
        8,
        &mut found
    ));
    let mut b = BoolOut::new();
    ok!(nnx_meta_get_bool(found, b.ptr()));
    assert!(!b.get());
    ok!(nnx_meta_map_get(
        hyper.ptr(),
        "steps".as_ptr().cast(),
        5,
        &mut found
    ));
    assert_eq!(kind_of(found), NNX_META_LIST);
    ok!(nnx_meta_item(found, 1, &mut item));
    let mut i = SENTINEL_I64;
    ok!(nnx_meta_get_int(item, &mut i));
    assert_eq!(i, 2);

    // Setting an existing key keeps its place; a container copies what it
    // is given, even a part of itself, and so do clones.
    ok!(nnx_meta_map_set(
        hyper.ptr(),
        "lr".as_ptr().cast(),
        2,
        sharding.ptr()
    ));
    ok!(nnx_meta_map_get(
        hyper.ptr(),
        "betas".as_ptr().cast(),
        5,
        &mut found
    ));
    let mut copy = null_mut();
    ok!(nnx_meta_clone(found, &mut copy));
    let copy = Meta(copy);
    ok!(nnx_meta_append(copy.ptr(), copy.ptr()));
    let mut first = null();
    ok!(nnx_meta_item(copy.ptr(), 0, &mut first));
    ok!(nnx_meta_append(copy.ptr(), first));
    assert_eq!(meta_repr(copy.ptr()), "(0.9, 0.999, (0.9, 0.999), 0.9)");
    assert_eq!(meta_repr(found), "(0.9, 0.999)");
    assert!(meta_repr(hyper.ptr()).starts_with("{'lr': (None, 'model'), 'betas'"));

    // Equality keeps kinds; the JSON form gives back the same value.
    let mut equal = BoolOut::new();
    ok!(nnx_meta_equal(
        meta_seq(false, &[&meta_null(), &meta_str("model")]).ptr(),
        sharding.ptr(),
        equal.ptr()
    ));
    assert!(!equal.get(), "a list equals a tuple");
    let one_float = meta_made(|o| nnx_meta_new_float(1.0, o));
    let mut equal = BoolOut::new();
    ok!(nnx_meta_equal(
        meta_int(1).ptr(),
        one_float.ptr(),
        equal.ptr()
    ));
    assert!(!equal.get(), "1 equals 1.0");
    let nan = meta_made(|o| nnx_meta_new_float(f64::NAN, o));
    let with_nan = meta_map(&[("x", &nan), ("h", &hyper), ("one", &one_float)]);
    let json = json_of(with_nan.ptr());
    assert_eq!(
        json,
        r#"["map","x",["float","0x7ff8000000000000"],"h",["map","lr",["tuple",null,"model"],"betas",["tuple",0.9,0.999],"nesterov",false,"steps",["list",1,2]],"one",1.0]"#
    );
    let (status, back) = from_json(&json);
    assert_eq!(status, nnx_status::NNX_OK);
    let back = Meta(back);
    assert_eq!(json_of(back.ptr()), json);
    assert_eq!(meta_repr(back.ptr()), meta_repr(with_nan.ptr()));
    let mut equal = BoolOut::new();
    ok!(nnx_meta_equal(back.ptr(), hyper.ptr(), equal.ptr()));
    assert!(!equal.get());

    // A variable keeps a copy and hands out copies.
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("out_sharding");
    ok!(nnx_variable_set_metadata(
        v.ptr(),
        name.as_ptr(),
        sharding.ptr()
    ));
    ok!(nnx_meta_append(sharding.ptr(), meta_int(3).ptr()));
    let mut got = null_mut();
    ok!(nnx_variable_get_metadata(v.ptr(), name.as_ptr(), &mut got));
    let got = Meta(got);
    assert_eq!(meta_repr(got.ptr()), "(None, 'model')");
    let mut kind = SENTINEL_U32;
    ok!(nnx_variable_metadata_kind(
        v.ptr(),
        name.as_ptr(),
        &mut kind
    ));
    assert_eq!(kind, NNX_META_TUPLE);
    // Scalars set either way read either way.
    let scale = cstr("scale");
    ok!(nnx_variable_set_metadata(
        v.ptr(),
        scale.as_ptr(),
        meta_int(4).ptr()
    ));
    let mut i = SENTINEL_I64;
    ok!(nnx_variable_get_metadata_int(
        v.ptr(),
        scale.as_ptr(),
        &mut i
    ));
    assert_eq!(i, 4);
    let tag = cstr("tag");
    let dropout = cstr("dropout");
    ok!(nnx_variable_set_metadata_str(
        v.ptr(),
        tag.as_ptr(),
        dropout.as_ptr()
    ));
    let mut got = null_mut();
    ok!(nnx_variable_get_metadata(v.ptr(), tag.as_ptr(), &mut got));
    assert_eq!(meta_repr(Meta(got).ptr()), "'dropout'");
}

#[test]
fn structured_metadata_of_the_wrong_kind() {
    let list = meta_seq(false, &[&meta_int(1)]);
    let map = meta_map(&[("a", &meta_int(1))]);
    let scalar = meta_int(5);
    let (mut b, mut i, mut x) = (BoolOut::new(), SENTINEL_I64, SENTINEL_F64);
    let (mut text, mut len) = (sentinel_const::<c_char>(), SENTINEL);
    let m = fails!(nnx_meta_get_bool(list.ptr(), b.ptr()), NNX_ERR_WRONG_KIND);
    assert_contains!(m, "list");
    let m = fails!(nnx_meta_get_int(map.ptr(), &mut i), NNX_ERR_WRONG_KIND);
    assert_contains!(m, "dict");
    fails!(nnx_meta_get_float(scalar.ptr(), &mut x), NNX_ERR_WRONG_KIND);
    fails!(
        nnx_meta_get_str(scalar.ptr(), &mut text, &mut len),
        NNX_ERR_WRONG_KIND
    );
    fails!(
        nnx_meta_get_int(meta_null().ptr(), &mut i),
        NNX_ERR_WRONG_KIND
    );
    fails!(nnx_meta_len(scalar.ptr(), &mut len), NNX_ERR_WRONG_KIND);
    let mut item: *const nnx_meta = sentinel_const();
    fails!(nnx_meta_item(map.ptr(), 0, &mut item), NNX_ERR_WRONG_KIND);
    let mut key_len = SENTINEL;
    fails!(
        nnx_meta_map_at(list.ptr(), 0, &mut text, &mut key_len, &mut item),
        NNX_ERR_WRONG_KIND
    );
    fails!(
        nnx_meta_map_get(list.ptr(), "a".as_ptr().cast(), 1, &mut item),
        NNX_ERR_WRONG_KIND
    );
    assert!(b.untouched());
    assert_eq!((i, x.to_bits()), (SENTINEL_I64, SENTINEL_F64.to_bits()));
    assert_eq!((text, len, key_len), (sentinel_const(), SENTINEL, SENTINEL));
    assert_eq!(item, sentinel_const());

    let m = fails!(nnx_meta_append(map.ptr(), scalar.ptr()), NNX_ERR_WRONG_KIND);
    assert_contains!(m, "not a list or tuple");
    fails!(
        nnx_meta_append(scalar.ptr(), scalar.ptr()),
        NNX_ERR_WRONG_KIND
    );
    fails!(
        nnx_meta_map_set(list.ptr(), "k".as_ptr().cast(), 1, scalar.ptr()),
        NNX_ERR_WRONG_KIND
    );
    assert_eq!(meta_repr(list.ptr()), "[1]");
    assert_eq!(meta_repr(map.ptr()), "{'a': 1}");
    assert_eq!(meta_repr(scalar.ptr()), "5");

    // The scalar getters of a variable refuse a structured entry.
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("axes");
    ok!(nnx_variable_set_metadata(
        v.ptr(),
        name.as_ptr(),
        list.ptr()
    ));
    let mut s: *mut c_char = sentinel();
    let m = fails!(
        nnx_variable_get_metadata_str(v.ptr(), name.as_ptr(), &mut s),
        NNX_ERR_WRONG_KIND
    );
    assert_contains!(m, "list ([1])");
    assert_eq!(s, sentinel());
    fails!(
        nnx_variable_get_metadata_int(v.ptr(), name.as_ptr(), &mut i),
        NNX_ERR_WRONG_KIND
    );
    // A tuple "tag" is no tag.
    let tag = cstr("tag");
    ok!(nnx_variable_set_metadata(
        v.ptr(),
        tag.as_ptr(),
        meta_seq(true, &[&meta_str("t")]).ptr()
    ));
    ok!(nnx_variable_tag(v.ptr(), &mut s));
    assert!(s.is_null());
}

#[test]
fn structured_metadata_indexes_keys_and_names() {
    let tuple = meta_seq(true, &[&meta_int(1)]);
    let map = meta_map(&[("a", &meta_int(1))]);
    let mut item: *const nnx_meta = sentinel_const();
    let m = fails!(
        nnx_meta_item(tuple.ptr(), 1, &mut item),
        NNX_ERR_INDEX_OUT_OF_RANGE
    );
    assert_contains!(m, "tuple of 1 items");
    let (mut key, mut key_len) = (sentinel_const::<c_char>(), SENTINEL);
    fails!(
        nnx_meta_map_at(map.ptr(), 1, &mut key, &mut key_len, &mut item),
        NNX_ERR_INDEX_OUT_OF_RANGE
    );
    let m = fails!(
        nnx_meta_map_get(map.ptr(), "b".as_ptr().cast(), 1, &mut item),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_contains!(m, "\"b\"");
    assert_eq!(
        (key, key_len, item),
        (sentinel_const(), SENTINEL, sentinel_const())
    );

    let bad = b"Bad\xffKey";
    let mut out: *mut nnx_meta = sentinel();
    fails!(
        nnx_meta_new_str(bad.as_ptr().cast(), bad.len(), &mut out),
        NNX_ERR_INVALID_UTF8
    );
    let m = fails!(
        nnx_meta_map_set(map.ptr(), bad.as_ptr().cast(), bad.len(), tuple.ptr()),
        NNX_ERR_INVALID_UTF8
    );
    assert_contains!(m, "key");
    fails!(
        nnx_meta_map_get(map.ptr(), bad.as_ptr().cast(), bad.len(), &mut item),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_meta_from_json(bad.as_ptr().cast(), bad.len(), &mut out),
        NNX_ERR_INVALID_UTF8
    );
    assert_eq!(out, sentinel());
    assert_eq!(meta_repr(map.ptr()), "{'a': 1}");

    let v = variable(NNX_TYPE_PARAM, None);
    let bad_name = raw_cstr(b"Bad\xffName");
    let empty = cstr("");
    let missing = cstr("missing");
    fails!(
        nnx_variable_set_metadata(v.ptr(), bad_name.as_ptr(), tuple.ptr()),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_variable_set_metadata(v.ptr(), empty.as_ptr(), tuple.ptr()),
        NNX_ERR_INVALID_ARGUMENT
    );
    fails!(
        nnx_variable_get_metadata(v.ptr(), bad_name.as_ptr(), &mut out),
        NNX_ERR_INVALID_UTF8
    );
    let m = fails!(
        nnx_variable_get_metadata(v.ptr(), missing.as_ptr(), &mut out),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_contains!(m, "missing");
    assert_eq!(out, sentinel());
    let mut count = SENTINEL;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 0);
}

#[test]
fn structured_metadata_nests_at_most_nnx_max_depth_levels() {
    let deepest = meta_nested(NNX_MAX_DEPTH);
    let m = fails!(
        nnx_meta_append(meta_seq(false, &[]).ptr(), deepest.ptr()),
        NNX_ERR_TOO_DEEP
    );
    assert_contains!(m, &format!("{} levels", NNX_MAX_DEPTH + 1));
    let map = meta_map(&[]);
    fails!(
        nnx_meta_map_set(map.ptr(), "k".as_ptr().cast(), 1, deepest.ptr()),
        NNX_ERR_TOO_DEEP
    );
    assert_eq!(meta_repr(map.ptr()), "{}");
    // At the limit everything works: a variable holds it, JSON carries it.
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("deep");
    ok!(nnx_variable_set_metadata(
        v.ptr(),
        name.as_ptr(),
        deepest.ptr()
    ));
    let json = json_of(deepest.ptr());
    let (status, back) = from_json(&json);
    assert_eq!(status, nnx_status::NNX_OK);
    let back = Meta(back);
    let mut equal = BoolOut::new();
    ok!(nnx_meta_equal(back.ptr(), deepest.ptr(), equal.ptr()));
    assert!(equal.get());
    let (status, out) = from_json(&format!("[\"tuple\", {json}]"));
    assert_eq!(status, nnx_status::NNX_ERR_TOO_DEEP, "{}", last_error());
    assert_eq!(out, sentinel());
}

#[test]
fn metadata_json_that_is_not_the_form() {
    for text in [
        "",
        "{\"a\": 1}",
        "[1]",
        "[\"set\", 1]",
        "[\"map\", \"a\", 1, \"a\", 2]",
        "[\"map\", 1, 2]",
        "[\"float\", \"nan\"]",
        "9223372036854775808",
        "-99999999999999999999",
        "[\"list\", 1",
    ] {
        let (status, out) = from_json(text);
        assert_eq!(
            status,
            nnx_status::NNX_ERR_FORMAT,
            "{text:?}: {}",
            last_error()
        );
        assert_eq!(out, sentinel());
    }
    let m = fails!(
        nnx_meta_from_json(
            "[\"list\", 18446744073709551616]".as_ptr().cast(),
            30,
            &mut null_mut()
        ),
        NNX_ERR_FORMAT
    );
    assert_contains!(m, "int64");
}

#[test]
fn variable_metadata_as_json_text() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("opt");
    let set = |text: &[u8]| {
        nnx_variable_set_metadata_json(v.ptr(), name.as_ptr(), text.as_ptr().cast(), text.len())
    };
    let form =
        br#"["map","lr",0.001,"betas",["tuple",0.9,0.999],"clip",["float","0x7ff0000000000000"]]"#;
    ok!(set(form));
    let mut text = null_mut();
    ok!(nnx_variable_get_metadata_json(
        v.ptr(),
        name.as_ptr(),
        &mut text
    ));
    assert_eq!(LibStr(text).text().as_bytes(), form);
    let mut got = null_mut();
    ok!(nnx_variable_get_metadata(v.ptr(), name.as_ptr(), &mut got));
    assert_eq!(
        meta_repr(Meta(got).ptr()),
        "{'lr': 0.001, 'betas': (0.9, 0.999), 'clip': inf}"
    );
    // Scalars set any way read as JSON too.
    let scale = cstr("scale");
    ok!(nnx_variable_set_metadata_int(v.ptr(), scale.as_ptr(), 3));
    ok!(nnx_variable_get_metadata_json(
        v.ptr(),
        scale.as_ptr(),
        &mut text
    ));
    assert_eq!(LibStr(text).text(), "3");

    // Errors leave the entry as it was.
    let m = fails!(set(b"{\"lr\": 1}"), NNX_ERR_FORMAT);
    assert_contains!(m, "not as JSON objects");
    fails!(set(b"[\"list\""), NNX_ERR_FORMAT);
    fails!(set(b"\"\xff\""), NNX_ERR_INVALID_UTF8);
    let deep = format!(
        "{}null{}",
        "[\"list\",".repeat(NNX_MAX_DEPTH + 1),
        "]".repeat(NNX_MAX_DEPTH + 1)
    );
    fails!(set(deep.as_bytes()), NNX_ERR_TOO_DEEP);
    let empty = cstr("");
    fails!(
        nnx_variable_set_metadata_json(v.ptr(), empty.as_ptr(), form.as_ptr().cast(), form.len()),
        NNX_ERR_INVALID_ARGUMENT
    );
    ok!(nnx_variable_get_metadata_json(
        v.ptr(),
        name.as_ptr(),
        &mut text
    ));
    assert_eq!(LibStr(text).text().as_bytes(), form);
    let missing = cstr("missing");
    let mut untouched: *mut c_char = sentinel();
    fails!(
        nnx_variable_get_metadata_json(v.ptr(), missing.as_ptr(), &mut untouched),
        NNX_ERR_KEY_NOT_FOUND
    );
    let bad = raw_cstr(b"Bad\xffName");
    fails!(
        nnx_variable_get_metadata_json(v.ptr(), bad.as_ptr(), &mut untouched),
        NNX_ERR_INVALID_UTF8
    );
    fails!(
        nnx_variable_set_metadata_json(v.ptr(), bad.as_ptr(), form.as_ptr().cast(), form.len()),
        NNX_ERR_INVALID_UTF8
    );
    assert_eq!(untouched, sentinel());
}

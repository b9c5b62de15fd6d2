//! NULL in every pointer position of every C function.
//!
//! Each required pointer is passed as NULL on its own, the other arguments
//! valid: the call must return `NNX_ERR_NULL_ARGUMENT`, name the argument in
//! `nnx_last_error_message()`, leave the out-pointers as they were, and
//! change nothing. Pointers that the header documents as optional (values,
//! empty arrays, the `_free` / `_release` functions) are shown to be
//! accepted.

#[macro_use]
mod common;

use std::ffi::{c_char, c_void};
use std::ptr::{null, null_mut};

use common::*;

// ---------------------------------------------------------------------------
// Shared checks

/// The NULL cases of a `(path, path_len)` pair: the key array itself, and a
/// string key whose `str` is NULL with a non-zero `str_len`.
fn path_nulls(mut call: impl FnMut(*const nnx_key, usize) -> nnx_status) {
    null_arg!(call(null(), 1), "path");
    null_arg!(call(null(), 3), "path");
    let inner = Path::new(&[K::S("b"), K::NullStr(3)]);
    null_arg!(call(inner.ptr(), inner.len()), "key.str");
    let first = Path::new(&[K::NullStr(1)]);
    null_arg!(call(first.ptr(), first.len()), "key.str");
}

/// Asserts that `state` still lists as `before`.
fn assert_unchanged(state: &St, before: &str, leaves_before: usize) {
    assert_eq!(listing(state.ptr()), before);
    assert_eq!(leaves(state.ptr()), leaves_before);
}

/// Asserts that a void function called on NULL neither failed nor touched
/// the thread's error message.
fn assert_no_op(call: impl FnOnce()) {
    let primed = prime_error();
    call();
    assert_eq!(last_error(), primed);
}

// ---------------------------------------------------------------------------
// Arrays

#[test]
fn array_new_null_arguments() {
    let shape = [2i64, 3];
    let data = [0f32; 6];
    let bytes = data.as_ptr().cast::<c_void>();
    let mut out: *mut nnx_array = sentinel();
    null_arg!(
        nnx_array_new(NNX_DTYPE_F32, null(), 2, bytes, 24, &mut out),
        "shape"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_array_new(NNX_DTYPE_F32, shape.as_ptr(), 2, null(), 24, &mut out),
        "data"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_array_new(NNX_DTYPE_F32, shape.as_ptr(), 2, bytes, 24, null_mut()),
        "out_array"
    );
}

#[test]
fn array_new_accepts_null_shape_for_a_scalar_and_null_data_for_no_bytes() {
    // A scalar: no dimensions, so no shape pointer.
    let value = 2.5f32;
    let mut scalar = null_mut();
    ok!(nnx_array_new(
        NNX_DTYPE_F32,
        null(),
        0,
        (&value as *const f32).cast(),
        4,
        &mut scalar
    ));
    let scalar = Arr(scalar);
    let mut ndim = usize::MAX;
    ok!(nnx_array_ndim(scalar.ptr(), &mut ndim));
    assert_eq!(ndim, 0);
    let mut data = null();
    ok!(nnx_array_data(scalar.ptr(), &mut data));
    // SAFETY: a scalar f32 array holds 4 bytes, read while `scalar` lives.
    assert_eq!(unsafe { data.cast::<f32>().read_unaligned() }, 2.5);

    // No elements: no data pointer.
    let shape = [0i64, 5];
    let mut empty = null_mut();
    ok!(nnx_array_new(
        NNX_DTYPE_F64,
        shape.as_ptr(),
        2,
        null(),
        0,
        &mut empty
    ));
    let empty = Arr(empty);
    let mut nbytes = usize::MAX;
    ok!(nnx_array_nbytes(empty.ptr(), &mut nbytes));
    assert_eq!(nbytes, 0);

    // NULL data with zero bytes where bytes are needed is a size error, not
    // a NULL error.
    let mut out: *mut nnx_array = sentinel();
    fails!(
        nnx_array_new(NNX_DTYPE_F32, null(), 0, null(), 0, &mut out),
        NNX_ERR_SHAPE_MISMATCH
    );
    assert_eq!(out, sentinel());
}

#[test]
fn array_zeros_null_arguments() {
    let shape = [4i64];
    let mut out: *mut nnx_array = sentinel();
    null_arg!(nnx_array_zeros(NNX_DTYPE_I32, null(), 1, &mut out), "shape");
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_array_zeros(NNX_DTYPE_I32, shape.as_ptr(), 1, null_mut()),
        "out_array"
    );
    // A scalar needs no shape pointer.
    let mut scalar = null_mut();
    ok!(nnx_array_zeros(NNX_DTYPE_I64, null(), 0, &mut scalar));
    let scalar = Arr(scalar);
    let mut nbytes = 0;
    ok!(nnx_array_nbytes(scalar.ptr(), &mut nbytes));
    assert_eq!(nbytes, 8);
}

#[test]
fn array_wrap_null_arguments_never_call_release() {
    let counter = Counter::new();
    let mut buf = [1f32; 6];
    let shape = [2i64, 3];
    let data = buf.as_mut_ptr().cast::<c_void>();
    let ud = counter.as_user_data();
    let release = Some(count_release as unsafe extern "C" fn(*mut c_void));
    let mut out: *mut nnx_array = sentinel();
    null_arg!(
        nnx_array_wrap(
            NNX_DTYPE_F32,
            null(),
            2,
            data,
            24,
            true,
            release,
            ud,
            &mut out
        ),
        "shape"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_array_wrap(
            NNX_DTYPE_F32,
            shape.as_ptr(),
            2,
            null_mut(),
            24,
            true,
            release,
            ud,
            &mut out
        ),
        "data"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_array_wrap(
            NNX_DTYPE_F32,
            shape.as_ptr(),
            2,
            data,
            24,
            true,
            release,
            ud,
            null_mut()
        ),
        "out_array"
    );
    assert_eq!(counter.get(), 0, "release was called on a failed wrap");
}

#[test]
fn array_wrap_accepts_null_data_for_no_bytes_and_null_release_and_user_data() {
    // NULL data with no bytes: the release callback still runs, once.
    let counter = Counter::new();
    let shape = [0i64];
    let mut out = null_mut();
    ok!(nnx_array_wrap(
        NNX_DTYPE_U8,
        shape.as_ptr(),
        1,
        null_mut(),
        0,
        false,
        Some(count_release),
        counter.as_user_data(),
        &mut out
    ));
    assert_eq!(counter.get(), 0);
    nnx_array_release(out);
    assert_eq!(counter.get(), 1);

    // No release callback and no user data.
    let mut buf = [1u16, 2, 3];
    let shape = [3i64];
    let mut out = null_mut();
    ok!(nnx_array_wrap(
        NNX_DTYPE_U16,
        shape.as_ptr(),
        1,
        buf.as_mut_ptr().cast(),
        6,
        true,
        None,
        null_mut(),
        &mut out
    ));
    let wrapped = Arr(out);
    let mut data = null();
    ok!(nnx_array_data(wrapped.ptr(), &mut data));
    assert_eq!(data, buf.as_ptr().cast());
    drop(wrapped);
    buf[0] = 9; // still ours
    assert_eq!(buf, [9, 2, 3]);
}

#[test]
fn array_dtype_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out = SENTINEL_U32;
    null_arg!(nnx_array_dtype(null(), &mut out), "array");
    assert_eq!(out, SENTINEL_U32);
    null_arg!(nnx_array_dtype(a.ptr(), null_mut()), "out_dtype");
}

#[test]
fn array_ndim_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out = SENTINEL;
    null_arg!(nnx_array_ndim(null(), &mut out), "array");
    assert_eq!(out, SENTINEL);
    null_arg!(nnx_array_ndim(a.ptr(), null_mut()), "out_ndim");
}

#[test]
fn array_shape_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out: *const i64 = sentinel_const();
    null_arg!(nnx_array_shape(null(), &mut out), "array");
    assert_eq!(out, sentinel_const());
    null_arg!(nnx_array_shape(a.ptr(), null_mut()), "out_shape");
}

#[test]
fn array_nbytes_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out = SENTINEL;
    null_arg!(nnx_array_nbytes(null(), &mut out), "array");
    assert_eq!(out, SENTINEL);
    null_arg!(nnx_array_nbytes(a.ptr(), null_mut()), "out_nbytes");
}

#[test]
fn array_data_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out: *const c_void = sentinel_const();
    null_arg!(nnx_array_data(null(), &mut out), "array");
    assert_eq!(out, sentinel_const());
    null_arg!(nnx_array_data(a.ptr(), null_mut()), "out_data");
}

#[test]
fn array_data_mut_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out: *mut c_void = sentinel();
    null_arg!(nnx_array_data_mut(null(), &mut out), "array");
    assert_eq!(out, sentinel());
    null_arg!(nnx_array_data_mut(a.ptr(), null_mut()), "out_data");
}

#[test]
fn array_is_writable_null_arguments() {
    let a = f32_array(&[1], &[1.0]);
    let mut out = BoolOut::new();
    null_arg!(nnx_array_is_writable(null(), out.ptr()), "array");
    assert!(out.untouched());
    null_arg!(nnx_array_is_writable(a.ptr(), null_mut()), "out_writable");
}

#[test]
fn array_retain_null_and_release_null() {
    null_arg!(nnx_array_retain(null()), "array");
    assert_no_op(|| nnx_array_release(null()));
}

// ---------------------------------------------------------------------------
// Types

#[test]
fn type_register_null_arguments() {
    let name = cstr("FfiNullNeverRegistered");
    let mut out = SENTINEL_U32;
    null_arg!(nnx_type_register(null(), NNX_TYPE_PARAM, &mut out), "name");
    assert_eq!(out, SENTINEL_U32);
    null_arg!(
        nnx_type_register(name.as_ptr(), NNX_TYPE_PARAM, null_mut()),
        "out_type"
    );
    // The failed call registered nothing.
    fails!(
        nnx_type_lookup(name.as_ptr(), &mut out),
        NNX_ERR_KEY_NOT_FOUND
    );
    assert_eq!(out, SENTINEL_U32);
}

#[test]
fn type_lookup_null_arguments() {
    let name = cstr("Param");
    let mut out = SENTINEL_U32;
    null_arg!(nnx_type_lookup(null(), &mut out), "name");
    assert_eq!(out, SENTINEL_U32);
    null_arg!(nnx_type_lookup(name.as_ptr(), null_mut()), "out_type");
}

#[test]
fn type_name_parent_is_subtype_count_null_outs() {
    null_arg!(nnx_type_name(NNX_TYPE_PARAM, null_mut()), "out_name");
    null_arg!(nnx_type_parent(NNX_TYPE_PARAM, null_mut()), "out_parent");
    null_arg!(
        nnx_type_is_subtype(NNX_TYPE_PARAM, NNX_TYPE_VARIABLE, null_mut()),
        "out_result"
    );
    null_arg!(nnx_type_count(null_mut()), "out_count");
}

// ---------------------------------------------------------------------------
// Variables

#[test]
fn variable_new_null_out_and_optional_value() {
    let a = f32_array(&[1], &[1.0]);
    null_arg!(
        nnx_variable_new(NNX_TYPE_PARAM, a.ptr(), null_mut()),
        "out_variable"
    );
    // No value is fine: the variable has none.
    let mut out = null_mut();
    ok!(nnx_variable_new(NNX_TYPE_CACHE, null(), &mut out));
    let var = Var(out);
    let mut value: *mut nnx_array = sentinel();
    ok!(nnx_variable_get_value(var.ptr(), &mut value));
    assert!(value.is_null());
}

#[test]
fn variable_type_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let mut out = SENTINEL_U32;
    null_arg!(nnx_variable_type(null(), &mut out), "variable");
    assert_eq!(out, SENTINEL_U32);
    null_arg!(nnx_variable_type(v.ptr(), null_mut()), "out_type");
}

#[test]
fn variable_get_value_null_arguments() {
    let v = var_with(NNX_TYPE_PARAM, &[1.0]);
    let mut out: *mut nnx_array = sentinel();
    null_arg!(nnx_variable_get_value(null(), &mut out), "variable");
    assert_eq!(out, sentinel());
    null_arg!(nnx_variable_get_value(v.ptr(), null_mut()), "out_value");
}

#[test]
fn variable_set_value_null_variable_and_null_value_clears() {
    let a = f32_array(&[1], &[1.0]);
    null_arg!(nnx_variable_set_value(null(), a.ptr()), "variable");

    let v = var_with(NNX_TYPE_PARAM, &[3.0]);
    ok!(nnx_variable_set_value(v.ptr(), null()));
    let mut value: *mut nnx_array = sentinel();
    ok!(nnx_variable_get_value(v.ptr(), &mut value));
    assert!(value.is_null(), "a NULL value did not clear the variable");
}

#[test]
fn variable_set_metadata_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("tag");
    let value = cstr("x");
    let (n, s) = (name.as_ptr(), value.as_ptr());
    null_arg!(nnx_variable_set_metadata_str(null(), n, s), "variable");
    null_arg!(nnx_variable_set_metadata_str(v.ptr(), null(), s), "name");
    null_arg!(nnx_variable_set_metadata_str(v.ptr(), n, null()), "value");
    null_arg!(nnx_variable_set_metadata_int(null(), n, 1), "variable");
    null_arg!(nnx_variable_set_metadata_int(v.ptr(), null(), 1), "name");
    null_arg!(nnx_variable_set_metadata_float(null(), n, 1.5), "variable");
    null_arg!(
        nnx_variable_set_metadata_float(v.ptr(), null(), 1.5),
        "name"
    );
    null_arg!(nnx_variable_set_metadata_bool(null(), n, true), "variable");
    null_arg!(
        nnx_variable_set_metadata_bool(v.ptr(), null(), true),
        "name"
    );
    // Nothing was set.
    let mut count = SENTINEL;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 0);
}

#[test]
fn variable_get_metadata_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("m");
    let n = name.as_ptr();

    ok!(nnx_variable_set_metadata_str(v.ptr(), n, n));
    let mut s: *mut c_char = sentinel();
    null_arg!(nnx_variable_get_metadata_str(null(), n, &mut s), "variable");
    null_arg!(
        nnx_variable_get_metadata_str(v.ptr(), null(), &mut s),
        "name"
    );
    assert_eq!(s, sentinel());
    null_arg!(
        nnx_variable_get_metadata_str(v.ptr(), n, null_mut()),
        "out_value"
    );

    ok!(nnx_variable_set_metadata_int(v.ptr(), n, 5));
    let mut i = SENTINEL_I64;
    null_arg!(nnx_variable_get_metadata_int(null(), n, &mut i), "variable");
    null_arg!(
        nnx_variable_get_metadata_int(v.ptr(), null(), &mut i),
        "name"
    );
    assert_eq!(i, SENTINEL_I64);
    null_arg!(
        nnx_variable_get_metadata_int(v.ptr(), n, null_mut()),
        "out_value"
    );

    ok!(nnx_variable_set_metadata_float(v.ptr(), n, 0.5));
    let mut f = SENTINEL_F64;
    null_arg!(
        nnx_variable_get_metadata_float(null(), n, &mut f),
        "variable"
    );
    null_arg!(
        nnx_variable_get_metadata_float(v.ptr(), null(), &mut f),
        "name"
    );
    assert_eq!(f.to_bits(), SENTINEL_F64.to_bits());
    null_arg!(
        nnx_variable_get_metadata_float(v.ptr(), n, null_mut()),
        "out_value"
    );

    ok!(nnx_variable_set_metadata_bool(v.ptr(), n, true));
    let mut b = BoolOut::new();
    null_arg!(
        nnx_variable_get_metadata_bool(null(), n, b.ptr()),
        "variable"
    );
    null_arg!(
        nnx_variable_get_metadata_bool(v.ptr(), null(), b.ptr()),
        "name"
    );
    assert!(b.untouched());
    null_arg!(
        nnx_variable_get_metadata_bool(v.ptr(), n, null_mut()),
        "out_value"
    );
}

#[test]
fn variable_tag_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let mut out: *mut c_char = sentinel();
    null_arg!(nnx_variable_tag(null(), &mut out), "variable");
    assert_eq!(out, sentinel());
    null_arg!(nnx_variable_tag(v.ptr(), null_mut()), "out_tag");
    // No tag gives NULL, which nnx_string_free accepts.
    ok!(nnx_variable_tag(v.ptr(), &mut out));
    assert!(out.is_null());
    assert_no_op(|| nnx_string_free(out));
}

#[test]
fn variable_metadata_count_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let mut out = SENTINEL;
    null_arg!(nnx_variable_metadata_count(null(), &mut out), "variable");
    assert_eq!(out, SENTINEL);
    null_arg!(
        nnx_variable_metadata_count(v.ptr(), null_mut()),
        "out_count"
    );
}

#[test]
fn variable_metadata_at_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("k");
    ok!(nnx_variable_set_metadata_int(v.ptr(), name.as_ptr(), 1));
    let mut out_name: *mut c_char = sentinel();
    let mut out_kind = SENTINEL_U32;
    null_arg!(
        nnx_variable_metadata_at(null(), 0, &mut out_name, &mut out_kind),
        "variable"
    );
    assert_eq!(out_name, sentinel());
    assert_eq!(out_kind, SENTINEL_U32);
    null_arg!(
        nnx_variable_metadata_at(v.ptr(), 0, null_mut(), &mut out_kind),
        "out_name"
    );
    assert_eq!(out_kind, SENTINEL_U32);
    null_arg!(
        nnx_variable_metadata_at(v.ptr(), 0, &mut out_name, null_mut()),
        "out_kind"
    );
    assert_eq!(out_name, sentinel());
}

#[test]
fn variable_metadata_kind_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("k");
    ok!(nnx_variable_set_metadata_float(v.ptr(), name.as_ptr(), 1.5));
    let mut out = SENTINEL_U32;
    null_arg!(
        nnx_variable_metadata_kind(null(), name.as_ptr(), &mut out),
        "variable"
    );
    null_arg!(
        nnx_variable_metadata_kind(v.ptr(), null(), &mut out),
        "name"
    );
    assert_eq!(out, SENTINEL_U32);
    null_arg!(
        nnx_variable_metadata_kind(v.ptr(), name.as_ptr(), null_mut()),
        "out_kind"
    );
    ok!(nnx_variable_metadata_kind(v.ptr(), name.as_ptr(), &mut out));
    assert_eq!(out, NNX_META_FLOAT);
}

#[test]
fn variable_remove_metadata_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("k");
    ok!(nnx_variable_set_metadata_int(v.ptr(), name.as_ptr(), 1));
    null_arg!(
        nnx_variable_remove_metadata(null(), name.as_ptr()),
        "variable"
    );
    null_arg!(nnx_variable_remove_metadata(v.ptr(), null()), "name");
    let mut count = 0;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 1, "a failed remove removed the entry");
}

#[test]
fn variable_retain_null_and_release_null() {
    null_arg!(nnx_variable_retain(null()), "variable");
    assert_no_op(|| nnx_variable_release(null()));
}

#[test]
fn variable_structured_metadata_null_arguments() {
    let v = variable(NNX_TYPE_PARAM, None);
    let name = cstr("out_sharding");
    let n = name.as_ptr();
    let value = meta_seq(true, &[&meta_null(), &meta_str("model")]);
    null_arg!(
        nnx_variable_set_metadata(null(), n, value.ptr()),
        "variable"
    );
    null_arg!(
        nnx_variable_set_metadata(v.ptr(), null(), value.ptr()),
        "name"
    );
    null_arg!(nnx_variable_set_metadata(v.ptr(), n, null()), "value");
    let mut count = SENTINEL;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 0, "a failed set stored metadata");

    ok!(nnx_variable_set_metadata(v.ptr(), n, value.ptr()));
    let mut out: *mut nnx_meta = sentinel();
    null_arg!(nnx_variable_get_metadata(null(), n, &mut out), "variable");
    null_arg!(nnx_variable_get_metadata(v.ptr(), null(), &mut out), "name");
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_variable_get_metadata(v.ptr(), n, null_mut()),
        "out_value"
    );
    ok!(nnx_variable_get_metadata(v.ptr(), n, &mut out));
    let out = Meta(out);
    assert_eq!(meta_repr(out.ptr()), "(None, 'model')");

    let json = r#"["list",1]"#;
    let (j, len) = (json.as_ptr().cast::<c_char>(), json.len());
    let axes = cstr("axes");
    let a = axes.as_ptr();
    null_arg!(
        nnx_variable_set_metadata_json(null(), a, j, len),
        "variable"
    );
    null_arg!(
        nnx_variable_set_metadata_json(v.ptr(), null(), j, len),
        "name"
    );
    null_arg!(
        nnx_variable_set_metadata_json(v.ptr(), a, null(), len),
        "json"
    );
    let mut count = SENTINEL;
    ok!(nnx_variable_metadata_count(v.ptr(), &mut count));
    assert_eq!(count, 1, "a failed set stored metadata");
    let mut text: *mut c_char = sentinel();
    null_arg!(
        nnx_variable_get_metadata_json(null(), n, &mut text),
        "variable"
    );
    null_arg!(
        nnx_variable_get_metadata_json(v.ptr(), null(), &mut text),
        "name"
    );
    assert_eq!(text, sentinel());
    null_arg!(
        nnx_variable_get_metadata_json(v.ptr(), n, null_mut()),
        "out_value"
    );
    ok!(nnx_variable_get_metadata_json(v.ptr(), n, &mut text));
    assert_eq!(LibStr(text).text(), r#"["tuple",null,"model"]"#);
}

// ---------------------------------------------------------------------------
// Metadata values

#[test]
fn meta_constructors_null_outs() {
    null_arg!(nnx_meta_new_null(null_mut()), "out_meta");
    null_arg!(nnx_meta_new_bool(true, null_mut()), "out_meta");
    null_arg!(nnx_meta_new_int(1, null_mut()), "out_meta");
    null_arg!(nnx_meta_new_float(1.5, null_mut()), "out_meta");
    null_arg!(nnx_meta_new_list(null_mut()), "out_meta");
    null_arg!(nnx_meta_new_tuple(null_mut()), "out_meta");
    null_arg!(nnx_meta_new_map(null_mut()), "out_meta");
    let text = "model";
    null_arg!(
        nnx_meta_new_str(text.as_ptr().cast(), text.len(), null_mut()),
        "out_meta"
    );
    let mut out: *mut nnx_meta = sentinel();
    null_arg!(nnx_meta_new_str(null(), 3, &mut out), "text");
    assert_eq!(out, sentinel());
    // No bytes need no pointer: the empty string.
    let empty = meta_made(|out| nnx_meta_new_str(null(), 0, out));
    assert_eq!(meta_repr(empty.ptr()), "''");
}

#[test]
fn meta_free_null_is_a_no_op() {
    assert_no_op(|| nnx_meta_free(null_mut()));
}

#[test]
fn meta_append_and_map_set_null_arguments() {
    let list = meta_seq(false, &[]);
    let item = meta_int(1);
    null_arg!(nnx_meta_append(null_mut(), item.ptr()), "seq");
    null_arg!(nnx_meta_append(list.ptr(), null()), "item");
    assert_eq!(meta_repr(list.ptr()), "[]");

    let map = meta_map(&[]);
    let key = "k";
    let k = key.as_ptr().cast::<c_char>();
    null_arg!(nnx_meta_map_set(null_mut(), k, 1, item.ptr()), "map");
    null_arg!(nnx_meta_map_set(map.ptr(), null(), 1, item.ptr()), "key");
    null_arg!(nnx_meta_map_set(map.ptr(), k, 1, null()), "value");
    assert_eq!(meta_repr(map.ptr()), "{}");
    // An empty key needs no pointer.
    ok!(nnx_meta_map_set(map.ptr(), null(), 0, item.ptr()));
    assert_eq!(meta_repr(map.ptr()), "{'': 1}");
}

#[test]
fn meta_scalar_readers_null_arguments() {
    let b = meta_made(|out| nnx_meta_new_bool(true, out));
    let i = meta_int(7);
    let f = meta_made(|out| nnx_meta_new_float(0.5, out));
    let s = meta_str("x");

    let mut kind = SENTINEL_U32;
    null_arg!(nnx_meta_get_kind(null(), &mut kind), "meta");
    assert_eq!(kind, SENTINEL_U32);
    null_arg!(nnx_meta_get_kind(b.ptr(), null_mut()), "out_kind");

    let mut bool_out = BoolOut::new();
    null_arg!(nnx_meta_get_bool(null(), bool_out.ptr()), "meta");
    assert!(bool_out.untouched());
    null_arg!(nnx_meta_get_bool(b.ptr(), null_mut()), "out_value");

    let mut int_out = SENTINEL_I64;
    null_arg!(nnx_meta_get_int(null(), &mut int_out), "meta");
    assert_eq!(int_out, SENTINEL_I64);
    null_arg!(nnx_meta_get_int(i.ptr(), null_mut()), "out_value");

    let mut float_out = SENTINEL_F64;
    null_arg!(nnx_meta_get_float(null(), &mut float_out), "meta");
    assert_eq!(float_out.to_bits(), SENTINEL_F64.to_bits());
    null_arg!(nnx_meta_get_float(f.ptr(), null_mut()), "out_value");

    let mut text: *const c_char = sentinel_const();
    let mut len = SENTINEL;
    null_arg!(nnx_meta_get_str(null(), &mut text, &mut len), "meta");
    null_arg!(nnx_meta_get_str(s.ptr(), null_mut(), &mut len), "out_text");
    assert_eq!(len, SENTINEL);
    null_arg!(nnx_meta_get_str(s.ptr(), &mut text, null_mut()), "out_len");
    assert_eq!(text, sentinel_const());
}

#[test]
fn meta_container_readers_null_arguments() {
    let one = meta_int(1);
    let tuple = meta_seq(true, &[&one]);
    let map = meta_map(&[("a", &one)]);

    let mut len = SENTINEL;
    null_arg!(nnx_meta_len(null(), &mut len), "meta");
    assert_eq!(len, SENTINEL);
    null_arg!(nnx_meta_len(tuple.ptr(), null_mut()), "out_len");

    let mut item: *const nnx_meta = sentinel_const();
    null_arg!(nnx_meta_item(null(), 0, &mut item), "seq");
    assert_eq!(item, sentinel_const());
    null_arg!(nnx_meta_item(tuple.ptr(), 0, null_mut()), "out_item");

    let mut key: *const c_char = sentinel_const();
    let mut key_len = SENTINEL;
    let mut value: *const nnx_meta = sentinel_const();
    null_arg!(
        nnx_meta_map_at(null(), 0, &mut key, &mut key_len, &mut value),
        "map"
    );
    null_arg!(
        nnx_meta_map_at(map.ptr(), 0, null_mut(), &mut key_len, &mut value),
        "out_key"
    );
    null_arg!(
        nnx_meta_map_at(map.ptr(), 0, &mut key, null_mut(), &mut value),
        "out_key_len"
    );
    null_arg!(
        nnx_meta_map_at(map.ptr(), 0, &mut key, &mut key_len, null_mut()),
        "out_value"
    );
    assert_eq!(
        (key, key_len, value),
        (sentinel_const(), SENTINEL, sentinel_const())
    );

    let a = "a".as_ptr().cast::<c_char>();
    null_arg!(nnx_meta_map_get(null(), a, 1, &mut value), "map");
    null_arg!(nnx_meta_map_get(map.ptr(), null(), 1, &mut value), "key");
    null_arg!(nnx_meta_map_get(map.ptr(), a, 1, null_mut()), "out_value");
    assert_eq!(value, sentinel_const());
}

#[test]
fn meta_whole_value_functions_null_arguments() {
    let value = meta_seq(false, &[&meta_int(1)]);
    let mut equal = BoolOut::new();
    null_arg!(nnx_meta_equal(null(), value.ptr(), equal.ptr()), "a");
    null_arg!(nnx_meta_equal(value.ptr(), null(), equal.ptr()), "b");
    assert!(equal.untouched());
    null_arg!(
        nnx_meta_equal(value.ptr(), value.ptr(), null_mut()),
        "out_equal"
    );

    let mut copy: *mut nnx_meta = sentinel();
    null_arg!(nnx_meta_clone(null(), &mut copy), "meta");
    assert_eq!(copy, sentinel());
    null_arg!(nnx_meta_clone(value.ptr(), null_mut()), "out_meta");

    let mut text: *mut c_char = sentinel();
    null_arg!(nnx_meta_to_string(null(), &mut text), "meta");
    null_arg!(nnx_meta_to_string(value.ptr(), null_mut()), "out_text");
    null_arg!(nnx_meta_to_json(null(), &mut text), "meta");
    null_arg!(nnx_meta_to_json(value.ptr(), null_mut()), "out_text");
    assert_eq!(text, sentinel());

    let json = "[\"list\", 1]";
    let mut out: *mut nnx_meta = sentinel();
    null_arg!(nnx_meta_from_json(null(), json.len(), &mut out), "text");
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_meta_from_json(json.as_ptr().cast(), json.len(), null_mut()),
        "out_meta"
    );
}

// ---------------------------------------------------------------------------
// Variable values: kinds, typed keys, opaque values

#[test]
fn variable_value_kind_null_arguments() {
    let v = var_with(NNX_TYPE_PARAM, &[1.0]);
    let mut kind = SENTINEL_U32;
    null_arg!(nnx_variable_value_kind(null(), &mut kind), "variable");
    assert_eq!(kind, SENTINEL_U32);
    null_arg!(nnx_variable_value_kind(v.ptr(), null_mut()), "out_kind");
    assert_eq!(value_kind(v.ptr()), NNX_VALUE_ARRAY);
}

#[test]
fn variable_new_key_null_arguments() {
    let data = u32_array(&[2], &[0, 42]);
    let name = cstr("threefry2x32");
    let mut out: *mut nnx_variable = sentinel();
    null_arg!(
        nnx_variable_new_key(NNX_TYPE_RNG_KEY, null(), name.as_ptr(), &mut out),
        "key_data"
    );
    null_arg!(
        nnx_variable_new_key(NNX_TYPE_RNG_KEY, data.ptr(), null(), &mut out),
        "impl_name"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_variable_new_key(NNX_TYPE_RNG_KEY, data.ptr(), name.as_ptr(), null_mut()),
        "out_variable"
    );
}

#[test]
fn variable_set_key_null_arguments_change_nothing() {
    let data = u32_array(&[2], &[0, 42]);
    let name = cstr("threefry2x32");
    let v = var_with(NNX_TYPE_RNG_KEY, &[1.0]);
    null_arg!(
        nnx_variable_set_key(null(), data.ptr(), name.as_ptr()),
        "variable"
    );
    null_arg!(
        nnx_variable_set_key(v.ptr(), null(), name.as_ptr()),
        "key_data"
    );
    null_arg!(
        nnx_variable_set_key(v.ptr(), data.ptr(), null()),
        "impl_name"
    );
    assert_eq!(value_kind(v.ptr()), NNX_VALUE_ARRAY);
    ok!(nnx_variable_set_key(v.ptr(), data.ptr(), name.as_ptr()));
    assert_eq!(value_kind(v.ptr()), NNX_VALUE_KEY);
}

#[test]
fn variable_get_key_null_arguments() {
    let data = u32_array(&[2], &[0, 42]);
    let v = key_var(&data, "threefry2x32");
    let mut out_data: *mut nnx_array = sentinel();
    let mut out_name: *const c_char = sentinel_const();
    null_arg!(
        nnx_variable_get_key(null(), &mut out_data, &mut out_name),
        "variable"
    );
    null_arg!(
        nnx_variable_get_key(v.ptr(), null_mut(), &mut out_name),
        "out_key_data"
    );
    null_arg!(
        nnx_variable_get_key(v.ptr(), &mut out_data, null_mut()),
        "out_impl_name"
    );
    assert_eq!(out_data, sentinel());
    assert_eq!(out_name, sentinel_const());
}

#[test]
fn variable_new_opaque_null_arguments_never_release() {
    let counter = Counter::new();
    let name = cstr("test:thing");
    let mut out: *mut nnx_variable = sentinel();
    null_arg!(
        nnx_variable_new_opaque(
            NNX_TYPE_PARAM,
            null(),
            sentinel(),
            Some(count_release),
            counter.as_user_data(),
            &mut out
        ),
        "type_name"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_variable_new_opaque(
            NNX_TYPE_PARAM,
            name.as_ptr(),
            sentinel(),
            Some(count_release),
            counter.as_user_data(),
            null_mut()
        ),
        "out_variable"
    );
    assert_eq!(counter.get(), 0, "a failed call released the object");
    // A NULL object and a NULL release are accepted: the library never
    // dereferences the one and has nothing to call for the other.
    ok!(nnx_variable_new_opaque(
        NNX_TYPE_PARAM,
        name.as_ptr(),
        null_mut(),
        None,
        null_mut(),
        &mut out
    ));
    let v = Var(out);
    assert_eq!(get_opaque(v.ptr()), (null_mut(), "test:thing".to_owned()));
}

#[test]
fn variable_set_opaque_null_arguments_never_release() {
    let counter = Counter::new();
    let name = cstr("test:thing");
    let v = var_with(NNX_TYPE_PARAM, &[1.0]);
    null_arg!(
        nnx_variable_set_opaque(
            null(),
            name.as_ptr(),
            sentinel(),
            Some(count_release),
            counter.as_user_data()
        ),
        "variable"
    );
    null_arg!(
        nnx_variable_set_opaque(
            v.ptr(),
            null(),
            sentinel(),
            Some(count_release),
            counter.as_user_data()
        ),
        "type_name"
    );
    assert_eq!(counter.get(), 0, "a failed call released the object");
    assert_eq!(value_kind(v.ptr()), NNX_VALUE_ARRAY);
    ok!(nnx_variable_set_opaque(
        v.ptr(),
        name.as_ptr(),
        null_mut(),
        None,
        null_mut()
    ));
    assert_eq!(value_kind(v.ptr()), NNX_VALUE_OPAQUE);
}

#[test]
fn variable_get_opaque_null_arguments() {
    let counter = Counter::new();
    let v = opaque_var("test:thing", sentinel(), &counter);
    let mut object: *mut c_void = sentinel();
    let mut name: *const c_char = sentinel_const();
    null_arg!(
        nnx_variable_get_opaque(null(), &mut object, &mut name),
        "variable"
    );
    null_arg!(
        nnx_variable_get_opaque(v.ptr(), null_mut(), &mut name),
        "out_object"
    );
    null_arg!(
        nnx_variable_get_opaque(v.ptr(), &mut object, null_mut()),
        "out_type_name"
    );
    assert_eq!(object, sentinel());
    assert_eq!(name, sentinel_const());
    drop(v);
    assert_eq!(counter.get(), 1);
}

// ---------------------------------------------------------------------------
// Filters

#[test]
fn filter_of_type_everything_nothing_null_outs() {
    null_arg!(nnx_filter_of_type(NNX_TYPE_PARAM, null_mut()), "out_filter");
    null_arg!(nnx_filter_everything(null_mut()), "out_filter");
    null_arg!(nnx_filter_nothing(null_mut()), "out_filter");
}

#[test]
fn filter_with_tag_null_arguments() {
    let tag = cstr("t");
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(nnx_filter_with_tag(null(), &mut out), "tag");
    assert_eq!(out, sentinel());
    null_arg!(nnx_filter_with_tag(tag.as_ptr(), null_mut()), "out_filter");
}

#[test]
fn filter_path_contains_null_arguments() {
    let key = path!["b"];
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(nnx_filter_path_contains(null(), true, &mut out), "key");
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_filter_path_contains(key.key(), true, null_mut()),
        "out_filter"
    );
    let null_str = Path::new(&[K::NullStr(2)]);
    null_arg!(
        nnx_filter_path_contains(null_str.key(), false, &mut out),
        "key.str"
    );
    assert_eq!(out, sentinel());
}

#[test]
fn filter_path_contains_accepts_null_str_when_it_is_not_read() {
    let state = new_state();
    set_var(&state, "a/b", &var_with(NNX_TYPE_PARAM, &[1.0]));
    let empty = Path::new(&[K::S("")]);
    ok!(nnx_state_set_variable(
        state.ptr(),
        empty.ptr(),
        1,
        var_with(NNX_TYPE_PARAM, &[2.0]).ptr()
    ));

    // The empty string key, as NULL with length 0.
    let null_empty = Path::new(&[K::NullStr(0)]);
    let mut f = null_mut();
    ok!(nnx_filter_path_contains(null_empty.key(), true, &mut f));
    let f = Flt(f);
    let mut out = [null_mut(); 1];
    ok!(nnx_state_filter(
        state.ptr(),
        filter_ptrs(&[&f]).as_ptr(),
        1,
        out.as_mut_ptr()
    ));
    let only_empty = St(out[0]);
    assert_eq!(leaves(only_empty.ptr()), 1);

    // An int key ignores `str` and `str_len`.
    let int_key = nnx_key {
        kind: NNX_KEY_INT,
        str: null(),
        str_len: 5,
        int_value: 3,
    };
    let mut f = null_mut();
    ok!(nnx_filter_path_contains(&int_key, true, &mut f));
    nnx_filter_free(f);
}

#[test]
fn filter_path_in_null_arguments() {
    let a = path!["a"];
    let paths = [a.as_c()];
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(nnx_filter_path_in(null(), 1, &mut out), "paths");
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_filter_path_in(paths.as_ptr(), 1, null_mut()),
        "out_filter"
    );
    // A path with NULL keys and a length.
    let bad = [
        a.as_c(),
        nnx_path {
            keys: null(),
            len: 2,
        },
    ];
    null_arg!(nnx_filter_path_in(bad.as_ptr(), 2, &mut out), "path");
    // A key with a NULL string and a length.
    let null_str = Path::new(&[K::S("a"), K::NullStr(4)]);
    let bad = [null_str.as_c()];
    null_arg!(nnx_filter_path_in(bad.as_ptr(), 1, &mut out), "key.str");
    assert_eq!(out, sentinel());
}

#[test]
fn filter_path_in_accepts_no_paths_and_empty_paths() {
    let state = sample_state();
    // No paths: NULL with count 0 matches nothing.
    let mut none = null_mut();
    ok!(nnx_filter_path_in(null(), 0, &mut none));
    let none = Flt(none);
    // The empty path, as NULL keys with length 0: no leaf has it.
    let empty = [nnx_path {
        keys: null(),
        len: 0,
    }];
    let mut root = null_mut();
    ok!(nnx_filter_path_in(empty.as_ptr(), 1, &mut root));
    let root = Flt(root);
    let mut out = [null_mut(); 2];
    ok!(nnx_state_filter(
        state.ptr(),
        filter_ptrs(&[&none, &root]).as_ptr(),
        2,
        out.as_mut_ptr()
    ));
    let (a, b) = (St(out[0]), St(out[1]));
    assert_eq!(leaves(a.ptr()), 0);
    assert_eq!(leaves(b.ptr()), 0);
}

/// `nnx_filter_any` and `nnx_filter_all` take the same arguments.
type Combine = extern "C" fn(*const *mut nnx_filter, usize, *mut *mut nnx_filter) -> nnx_status;

fn combine_nulls(combine: Combine) {
    let p = of_type(NNX_TYPE_PARAM);
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(combine(null(), 2, &mut out), "filters");
    assert_eq!(out, sentinel());
    let with_null = [p.ptr(), null_mut()];
    null_arg!(combine(with_null.as_ptr(), 2, &mut out), "filters[1]");
    assert_eq!(out, sentinel());
    let first_null = [null_mut(), p.ptr()];
    null_arg!(combine(first_null.as_ptr(), 2, &mut out), "filters[0]");
    assert_eq!(out, sentinel());
    let good = [p.ptr()];
    null_arg!(combine(good.as_ptr(), 1, null_mut()), "out_filter");
}

#[test]
fn filter_any_null_arguments() {
    combine_nulls(nnx_filter_any);
}

#[test]
fn filter_all_null_arguments() {
    combine_nulls(nnx_filter_all);
}

#[test]
fn filter_any_and_all_accept_null_with_no_filters() {
    let state = sample_state();
    let mut any = null_mut();
    ok!(nnx_filter_any(null(), 0, &mut any));
    let any = Flt(any);
    let mut all = null_mut();
    ok!(nnx_filter_all(null(), 0, &mut all));
    let all = Flt(all);
    let mut out = [null_mut(); 2];
    ok!(nnx_state_filter(
        state.ptr(),
        filter_ptrs(&[&any, &all]).as_ptr(),
        2,
        out.as_mut_ptr()
    ));
    let (from_any, from_all) = (St(out[0]), St(out[1]));
    assert_eq!(leaves(from_any.ptr()), 0, "Any() matched something");
    assert_eq!(leaves(from_all.ptr()), SAMPLE_LEAVES, "All() missed leaves");
}

#[test]
fn filter_not_null_arguments() {
    let p = of_type(NNX_TYPE_PARAM);
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(nnx_filter_not(null(), &mut out), "filter");
    assert_eq!(out, sentinel());
    null_arg!(nnx_filter_not(p.ptr(), null_mut()), "out_filter");
}

#[test]
fn filter_callback_null_arguments_never_call_release() {
    let counter = Counter::new();
    let ud = counter.as_user_data();
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(
        nnx_filter_callback(None, ud, Some(count_release), &mut out),
        "callback"
    );
    assert_eq!(out, sentinel());
    null_arg!(
        nnx_filter_callback(Some(match_all), ud, Some(count_release), null_mut()),
        "out_filter"
    );
    assert_eq!(counter.get(), 0, "release was called on a failed call");
}

#[test]
fn filter_callback_accepts_null_user_data_and_release() {
    let state = sample_state();
    let mut f = null_mut();
    ok!(nnx_filter_callback(
        Some(match_all),
        null_mut(),
        None,
        &mut f
    ));
    let f = Flt(f);
    let mut out = [null_mut(); 1];
    ok!(nnx_state_split(
        state.ptr(),
        filter_ptrs(&[&f]).as_ptr(),
        1,
        out.as_mut_ptr()
    ));
    let all = St(out[0]);
    assert_eq!(leaves(all.ptr()), SAMPLE_LEAVES);

    // With a release callback: called once, when the last copy goes.
    let counter = Counter::new();
    let mut f = null_mut();
    ok!(nnx_filter_callback(
        Some(match_all),
        counter.as_user_data(),
        Some(count_release),
        &mut f
    ));
    let original = Flt(f);
    let mut copy = null_mut();
    ok!(nnx_filter_clone(original.ptr(), &mut copy));
    let copy = Flt(copy);
    let wrapped = any_of(&[&original]);
    drop(original);
    drop(copy);
    assert_eq!(counter.get(), 0, "released while a copy lives");
    drop(wrapped);
    assert_eq!(counter.get(), 1);
}

#[test]
fn filter_clone_null_arguments() {
    let p = of_type(NNX_TYPE_PARAM);
    let mut out: *mut nnx_filter = sentinel();
    null_arg!(nnx_filter_clone(null(), &mut out), "filter");
    assert_eq!(out, sentinel());
    null_arg!(nnx_filter_clone(p.ptr(), null_mut()), "out_filter");
}

#[test]
fn filter_free_null_is_a_no_op() {
    assert_no_op(|| nnx_filter_free(null_mut()));
}

// ---------------------------------------------------------------------------
// Flat lists

fn new_flat() -> Flat {
    let mut out = null_mut();
    ok!(nnx_flat_new(&mut out));
    Flat(out)
}

fn flat_len_of(flat: &Flat) -> usize {
    let mut len = SENTINEL;
    ok!(nnx_flat_len(flat.ptr(), &mut len));
    len
}

/// A flat list with a variable at 0 and a bare array at 1.
fn two_entry_flat() -> Flat {
    let flat = new_flat();
    let p = path!["v"];
    ok!(nnx_flat_push_variable(
        flat.ptr(),
        p.ptr(),
        p.len(),
        var_with(NNX_TYPE_PARAM, &[1.0]).ptr()
    ));
    let p = path!["w"];
    ok!(nnx_flat_push_array(
        flat.ptr(),
        p.ptr(),
        p.len(),
        f32_array(&[1], &[2.0]).ptr()
    ));
    flat
}

#[test]
fn state_flatten_null_arguments() {
    let state = sample_state();
    let mut out: *mut nnx_flat = sentinel();
    null_arg!(nnx_state_flatten(null(), &mut out), "state");
    assert_eq!(out, sentinel());
    null_arg!(nnx_state_flatten(state.ptr(), null_mut()), "out_flat");
}

#[test]
fn flat_new_null_out() {
    null_arg!(nnx_flat_new(null_mut()), "out_flat");
}

#[test]
fn flat_push_variable_null_arguments() {
    let flat = new_flat();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let p = path!["a"];
    null_arg!(
        nnx_flat_push_variable(null_mut(), p.ptr(), p.len(), var.ptr()),
        "flat"
    );
    null_arg!(
        nnx_flat_push_variable(flat.ptr(), p.ptr(), p.len(), null()),
        "variable"
    );
    path_nulls(|path, len| nnx_flat_push_variable(flat.ptr(), path, len, var.ptr()));
    assert_eq!(flat_len_of(&flat), 0, "a failed push added an entry");
}

#[test]
fn flat_push_array_null_arguments() {
    let flat = new_flat();
    let array = f32_array(&[1], &[1.0]);
    let p = path!["a"];
    null_arg!(
        nnx_flat_push_array(null_mut(), p.ptr(), p.len(), array.ptr()),
        "flat"
    );
    null_arg!(
        nnx_flat_push_array(flat.ptr(), p.ptr(), p.len(), null()),
        "array"
    );
    path_nulls(|path, len| nnx_flat_push_array(flat.ptr(), path, len, array.ptr()));
    assert_eq!(flat_len_of(&flat), 0, "a failed push added an entry");
}

#[test]
fn flat_len_null_arguments() {
    let flat = new_flat();
    let mut out = SENTINEL;
    null_arg!(nnx_flat_len(null(), &mut out), "flat");
    assert_eq!(out, SENTINEL);
    null_arg!(nnx_flat_len(flat.ptr(), null_mut()), "out_len");
}

#[test]
fn flat_path_null_arguments() {
    let flat = two_entry_flat();
    let mut out_path: *const nnx_key = sentinel_const();
    let mut out_len = SENTINEL;
    null_arg!(
        nnx_flat_path(null(), 0, &mut out_path, &mut out_len),
        "flat"
    );
    assert_eq!(out_path, sentinel_const());
    assert_eq!(out_len, SENTINEL);
    null_arg!(
        nnx_flat_path(flat.ptr(), 0, null_mut(), &mut out_len),
        "out_path"
    );
    assert_eq!(out_len, SENTINEL);
    null_arg!(
        nnx_flat_path(flat.ptr(), 0, &mut out_path, null_mut()),
        "out_len"
    );
    assert_eq!(out_path, sentinel_const());
}

#[test]
fn flat_kind_null_arguments() {
    let flat = two_entry_flat();
    let mut out = SENTINEL_U32;
    null_arg!(nnx_flat_kind(null(), 0, &mut out), "flat");
    assert_eq!(out, SENTINEL_U32);
    null_arg!(nnx_flat_kind(flat.ptr(), 0, null_mut()), "out_kind");
}

#[test]
fn flat_variable_null_arguments() {
    let flat = two_entry_flat();
    let mut out: *mut nnx_variable = sentinel();
    null_arg!(nnx_flat_variable(null(), 0, &mut out), "flat");
    assert_eq!(out, sentinel());
    null_arg!(nnx_flat_variable(flat.ptr(), 0, null_mut()), "out_variable");
}

#[test]
fn flat_array_null_arguments() {
    let flat = two_entry_flat();
    let mut out: *mut nnx_array = sentinel();
    null_arg!(nnx_flat_array(null(), 1, &mut out), "flat");
    assert_eq!(out, sentinel());
    null_arg!(nnx_flat_array(flat.ptr(), 1, null_mut()), "out_array");
}

#[test]
fn flat_leaves_null_arguments() {
    let flat = two_entry_flat();
    let mut kinds = [SENTINEL_U32; 2];
    null_arg!(
        nnx_flat_leaves(
            null(),
            0,
            2,
            false,
            kinds.as_mut_ptr(),
            null_mut(),
            null_mut(),
            null_mut()
        ),
        "flat"
    );
    assert_eq!(kinds, [SENTINEL_U32; 2]);
    // Every output is optional.
    ok!(nnx_flat_leaves(
        flat.ptr(),
        0,
        2,
        true,
        null_mut(),
        null_mut(),
        null_mut(),
        null_mut()
    ));
}

#[test]
fn flat_paths_null_arguments() {
    let flat = two_entry_flat();
    let mut offsets = [SENTINEL; 3];
    let mut keys = [sentinel_key(); 2];
    null_arg!(
        nnx_flat_paths(null(), 0, 2, offsets.as_mut_ptr(), keys.as_mut_ptr(), 2),
        "flat"
    );
    assert_eq!(offsets, [SENTINEL; 3]);
    assert!(keys.iter().all(key_untouched));
    null_arg!(
        nnx_flat_paths(flat.ptr(), 0, 2, null_mut(), keys.as_mut_ptr(), 2),
        "out_key_offsets"
    );
    assert!(keys.iter().all(key_untouched));
    // NULL keys: the offsets only, whatever the capacity says.
    ok!(nnx_flat_paths(
        flat.ptr(),
        0,
        2,
        offsets.as_mut_ptr(),
        null_mut(),
        99
    ));
    assert_eq!(offsets, [0, 1, 2]);
}

#[test]
fn flat_push_many_null_arguments() {
    let flat = new_flat();
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let p = path!["a", "b"];
    let offsets = [0usize, 2];
    let variables = [var.ptr().cast_const()];
    null_arg!(
        nnx_flat_push_many(
            null_mut(),
            1,
            offsets.as_ptr(),
            p.ptr(),
            variables.as_ptr(),
            null()
        ),
        "flat"
    );
    null_arg!(
        nnx_flat_push_many(flat.ptr(), 1, null(), p.ptr(), variables.as_ptr(), null()),
        "key_offsets"
    );
    null_arg!(
        nnx_flat_push_many(
            flat.ptr(),
            1,
            offsets.as_ptr(),
            null(),
            variables.as_ptr(),
            null()
        ),
        "keys"
    );
    let bad = Path::new(&[K::S("a"), K::NullStr(2)]);
    null_arg!(
        nnx_flat_push_many(
            flat.ptr(),
            1,
            offsets.as_ptr(),
            bad.ptr(),
            variables.as_ptr(),
            null()
        ),
        "key.str"
    );
    // No leaf at all: neither array given, or a NULL in both.
    null_arg!(
        nnx_flat_push_many(flat.ptr(), 1, offsets.as_ptr(), p.ptr(), null(), null()),
        "variables"
    );
    let none_v = [null::<nnx_variable>()];
    let none_a = [null::<nnx_array>()];
    null_arg!(
        nnx_flat_push_many(
            flat.ptr(),
            1,
            offsets.as_ptr(),
            p.ptr(),
            none_v.as_ptr(),
            none_a.as_ptr()
        ),
        "arrays"
    );
    assert_eq!(flat_len_of(&flat), 0, "a failed push added an entry");
    // Zero entries need no arrays at all.
    ok!(nnx_flat_push_many(
        flat.ptr(),
        0,
        null(),
        null(),
        null(),
        null()
    ));
}

#[test]
fn state_from_flat_null_arguments() {
    let flat = two_entry_flat();
    let mut out: *mut nnx_state = sentinel();
    null_arg!(nnx_state_from_flat(null(), &mut out), "flat");
    assert_eq!(out, sentinel());
    null_arg!(nnx_state_from_flat(flat.ptr(), null_mut()), "out_state");
}

#[test]
fn flat_free_null_is_a_no_op() {
    assert_no_op(|| nnx_flat_free(null_mut()));
}

// ---------------------------------------------------------------------------
// States: creation and copies

#[test]
fn state_new_null_out() {
    null_arg!(nnx_state_new(null_mut()), "out_state");
}

#[test]
fn state_free_null_is_a_no_op() {
    assert_no_op(|| nnx_state_free(null_mut()));
}

#[test]
fn state_clone_null_arguments() {
    let state = sample_state();
    let mut out: *mut nnx_state = sentinel();
    null_arg!(nnx_state_clone(null(), &mut out), "state");
    assert_eq!(out, sentinel());
    null_arg!(nnx_state_clone(state.ptr(), null_mut()), "out_state");
}

#[test]
fn state_deep_copy_null_arguments() {
    let state = sample_state();
    let mut out: *mut nnx_state = sentinel();
    null_arg!(nnx_state_deep_copy(null(), &mut out), "state");
    assert_eq!(out, sentinel());
    null_arg!(nnx_state_deep_copy(state.ptr(), null_mut()), "out_state");
}

// ---------------------------------------------------------------------------
// States: setters

#[test]
fn state_set_variable_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let p = path!["new", 0];
    null_arg!(
        nnx_state_set_variable(null_mut(), p.ptr(), p.len(), var.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_set_variable(state.ptr(), p.ptr(), p.len(), null()),
        "variable"
    );
    path_nulls(|path, len| nnx_state_set_variable(state.ptr(), path, len, var.ptr()));
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_set_variable_str_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let var = var_with(NNX_TYPE_PARAM, &[1.0]);
    let p = cstr("new/0");
    null_arg!(
        nnx_state_set_variable_str(null_mut(), p.as_ptr(), var.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_set_variable_str(state.ptr(), null(), var.ptr()),
        "path"
    );
    null_arg!(
        nnx_state_set_variable_str(state.ptr(), p.as_ptr(), null()),
        "variable"
    );
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_set_array_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let array = f32_array(&[1], &[1.0]);
    let p = path!["new"];
    null_arg!(
        nnx_state_set_array(null_mut(), p.ptr(), p.len(), array.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_set_array(state.ptr(), p.ptr(), p.len(), null()),
        "array"
    );
    path_nulls(|path, len| nnx_state_set_array(state.ptr(), path, len, array.ptr()));
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_set_array_str_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let array = f32_array(&[1], &[1.0]);
    let p = cstr("new");
    null_arg!(
        nnx_state_set_array_str(null_mut(), p.as_ptr(), array.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_set_array_str(state.ptr(), null(), array.ptr()),
        "path"
    );
    null_arg!(
        nnx_state_set_array_str(state.ptr(), p.as_ptr(), null()),
        "array"
    );
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_set_state_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let value = sample_state();
    let p = path!["new"];
    null_arg!(
        nnx_state_set_state(null_mut(), p.ptr(), p.len(), value.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_set_state(state.ptr(), p.ptr(), p.len(), null()),
        "value"
    );
    path_nulls(|path, len| nnx_state_set_state(state.ptr(), path, len, value.ptr()));
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_set_state_str_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let value = sample_state();
    let p = cstr("new");
    null_arg!(
        nnx_state_set_state_str(null_mut(), p.as_ptr(), value.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_set_state_str(state.ptr(), null(), value.ptr()),
        "path"
    );
    null_arg!(
        nnx_state_set_state_str(state.ptr(), p.as_ptr(), null()),
        "value"
    );
    assert_unchanged(&state, &before, n);
}

// ---------------------------------------------------------------------------
// States: getters

/// The getters with a key path and a pointer out.
type KeyedGet<T> =
    extern "C" fn(*const nnx_state, *const nnx_key, usize, *mut *mut T) -> nnx_status;
/// The getters with a `/`-separated path and a pointer out.
type TextGet<T> = extern "C" fn(*const nnx_state, *const c_char, *mut *mut T) -> nnx_status;

/// Returns what the final, valid call gave (owned by the caller).
fn keyed_get_nulls<T>(get: KeyedGet<T>, at: &[K<'_>], out_name: &str) -> *mut T {
    let state = sample_state();
    let p = Path::new(at);
    let mut out: *mut T = sentinel();
    null_arg!(get(null(), p.ptr(), p.len(), &mut out), "state");
    assert_eq!(out, sentinel());
    null_arg!(get(state.ptr(), p.ptr(), p.len(), null_mut()), out_name);
    path_nulls(|path, len| {
        let status = get(state.ptr(), path, len, &mut out);
        assert_eq!(out, sentinel());
        status
    });
    // The right arguments work.
    ok!(get(state.ptr(), p.ptr(), p.len(), &mut out));
    assert!(!out.is_null() && out != sentinel());
    out
}

fn text_get_nulls<T>(get: TextGet<T>, at: &str, out_name: &str) -> *mut T {
    let state = sample_state();
    let p = cstr(at);
    let mut out: *mut T = sentinel();
    null_arg!(get(null(), p.as_ptr(), &mut out), "state");
    null_arg!(get(state.ptr(), null(), &mut out), "path");
    assert_eq!(out, sentinel());
    null_arg!(get(state.ptr(), p.as_ptr(), null_mut()), out_name);
    ok!(get(state.ptr(), p.as_ptr(), &mut out));
    assert!(!out.is_null() && out != sentinel());
    out
}

#[test]
fn state_get_variable_null_arguments() {
    let var = keyed_get_nulls(nnx_state_get_variable, &[K::S("a")], "out_variable");
    nnx_variable_release(var);
    let var = text_get_nulls(nnx_state_get_variable_str, "b/1", "out_variable");
    nnx_variable_release(var);
}

#[test]
fn state_get_array_null_arguments() {
    let array = keyed_get_nulls(nnx_state_get_array, &[K::S("b"), K::S("x")], "out_array");
    nnx_array_release(array);
    let array = text_get_nulls(nnx_state_get_array_str, "b/x", "out_array");
    nnx_array_release(array);
}

#[test]
fn state_get_state_null_arguments() {
    let view = keyed_get_nulls(nnx_state_get_state, &[K::S("b")], "out_state");
    nnx_state_free(view);
    let view = text_get_nulls(nnx_state_get_state_str, "e", "out_state");
    nnx_state_free(view);
}

#[test]
fn state_get_with_null_empty_path_is_the_state_itself() {
    let state = sample_state();
    let mut kind = SENTINEL_U32;
    ok!(nnx_state_get_kind(state.ptr(), null(), 0, &mut kind));
    assert_eq!(kind, NNX_KIND_STATE);
    let mut found = BoolOut::new();
    ok!(nnx_state_contains(state.ptr(), null(), 0, found.ptr()));
    assert!(found.get());

    // A view of the whole state, live.
    let mut view = null_mut();
    ok!(nnx_state_get_state(state.ptr(), null(), 0, &mut view));
    let view = St(view);
    set_var(&view, "through_view", &variable(NNX_TYPE_PARAM, None));
    assert_eq!(leaves(state.ptr()), SAMPLE_LEAVES + 1);

    // Leaves need a non-empty path: the state itself is no variable.
    let mut var: *mut nnx_variable = sentinel();
    fails!(
        nnx_state_get_variable(state.ptr(), null(), 0, &mut var),
        NNX_ERR_WRONG_KIND
    );
    assert_eq!(var, sentinel());
}

#[test]
fn state_get_kind_null_arguments() {
    let state = sample_state();
    let p = path!["a"];
    let mut out = SENTINEL_U32;
    null_arg!(
        nnx_state_get_kind(null(), p.ptr(), p.len(), &mut out),
        "state"
    );
    null_arg!(
        nnx_state_get_kind(state.ptr(), p.ptr(), p.len(), null_mut()),
        "out_kind"
    );
    path_nulls(|path, len| nnx_state_get_kind(state.ptr(), path, len, &mut out));
    assert_eq!(out, SENTINEL_U32);
}

#[test]
fn state_get_kind_str_null_arguments() {
    let state = sample_state();
    let p = cstr("a");
    let mut out = SENTINEL_U32;
    null_arg!(
        nnx_state_get_kind_str(null(), p.as_ptr(), &mut out),
        "state"
    );
    null_arg!(
        nnx_state_get_kind_str(state.ptr(), null(), &mut out),
        "path"
    );
    assert_eq!(out, SENTINEL_U32);
    null_arg!(
        nnx_state_get_kind_str(state.ptr(), p.as_ptr(), null_mut()),
        "out_kind"
    );
}

#[test]
fn state_contains_null_arguments() {
    let state = sample_state();
    let p = path!["a"];
    let mut out = BoolOut::new();
    null_arg!(
        nnx_state_contains(null(), p.ptr(), p.len(), out.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_contains(state.ptr(), p.ptr(), p.len(), null_mut()),
        "out_contains"
    );
    let out_ptr = out.ptr();
    path_nulls(|path, len| nnx_state_contains(state.ptr(), path, len, out_ptr));
    assert!(out.untouched());
}

#[test]
fn state_contains_str_null_arguments() {
    let state = sample_state();
    let p = cstr("a");
    let mut out = BoolOut::new();
    null_arg!(
        nnx_state_contains_str(null(), p.as_ptr(), out.ptr()),
        "state"
    );
    null_arg!(
        nnx_state_contains_str(state.ptr(), null(), out.ptr()),
        "path"
    );
    assert!(out.untouched());
    null_arg!(
        nnx_state_contains_str(state.ptr(), p.as_ptr(), null_mut()),
        "out_contains"
    );
}

#[test]
fn state_remove_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let p = path!["a"];
    null_arg!(nnx_state_remove(null_mut(), p.ptr(), p.len()), "state");
    path_nulls(|path, len| nnx_state_remove(state.ptr(), path, len));
    let text = cstr("a");
    null_arg!(nnx_state_remove_str(null_mut(), text.as_ptr()), "state");
    null_arg!(nnx_state_remove_str(state.ptr(), null()), "path");
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_len_null_arguments() {
    let state = sample_state();
    let mut out = SENTINEL;
    null_arg!(nnx_state_len(null(), &mut out), "state");
    assert_eq!(out, SENTINEL);
    null_arg!(nnx_state_len(state.ptr(), null_mut()), "out_len");
}

#[test]
fn state_key_at_null_arguments() {
    let state = sample_state();
    let mut out = sentinel_key();
    null_arg!(nnx_state_key_at(null(), 0, &mut out), "state");
    assert!(key_untouched(&out));
    null_arg!(nnx_state_key_at(state.ptr(), 0, null_mut()), "out_key");
}

#[test]
fn state_num_leaves_null_arguments() {
    let state = sample_state();
    let mut out = SENTINEL;
    null_arg!(nnx_state_num_leaves(null(), &mut out), "state");
    assert_eq!(out, SENTINEL);
    null_arg!(nnx_state_num_leaves(state.ptr(), null_mut()), "out_count");
}

#[test]
fn state_to_string_null_arguments() {
    let state = sample_state();
    let mut out: *mut c_char = sentinel();
    null_arg!(nnx_state_to_string(null(), &mut out), "state");
    assert_eq!(out, sentinel());
    null_arg!(nnx_state_to_string(state.ptr(), null_mut()), "out_text");
}

#[test]
fn string_free_null_is_a_no_op() {
    assert_no_op(|| nnx_string_free(null_mut()));
}

// ---------------------------------------------------------------------------
// States: operations

type Partition = extern "C" fn(
    *const nnx_state,
    *const *mut nnx_filter,
    usize,
    *mut *mut nnx_state,
) -> nnx_status;

fn partition_nulls(op: Partition) {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let p = of_type(NNX_TYPE_PARAM);
    let rest = everything();
    let good = filter_ptrs(&[&p, &rest]);
    let mut out: [*mut nnx_state; 2] = [sentinel(), sentinel()];
    null_arg!(op(null(), good.as_ptr(), 2, out.as_mut_ptr()), "state");
    assert_eq!(out, [sentinel(); 2]);
    null_arg!(op(state.ptr(), null(), 2, out.as_mut_ptr()), "filters");
    assert_eq!(out, [sentinel(); 2]);
    let with_null = [p.ptr(), null_mut()];
    null_arg!(
        op(state.ptr(), with_null.as_ptr(), 2, out.as_mut_ptr()),
        "filters[1]"
    );
    assert_eq!(out, [sentinel(); 2]);
    let first_null = [null_mut(), rest.ptr()];
    null_arg!(
        op(state.ptr(), first_null.as_ptr(), 2, out.as_mut_ptr()),
        "filters[0]"
    );
    assert_eq!(out, [sentinel(); 2]);
    null_arg!(op(state.ptr(), good.as_ptr(), 2, null_mut()), "out_states");
    assert_unchanged(&state, &before, n);
}

#[test]
fn state_filter_null_arguments() {
    partition_nulls(nnx_state_filter);
}

#[test]
fn state_split_null_arguments() {
    partition_nulls(nnx_state_split);
}

#[test]
fn state_merge_null_arguments() {
    let a = sample_state();
    let b = new_state();
    let mut out: *mut nnx_state = sentinel();
    null_arg!(nnx_state_merge(null(), 2, &mut out), "states");
    assert_eq!(out, sentinel());
    let with_null = [a.ptr(), null_mut()];
    null_arg!(
        nnx_state_merge(with_null.as_ptr(), 2, &mut out),
        "states[1]"
    );
    assert_eq!(out, sentinel());
    let only_null = [null_mut::<nnx_state>()];
    null_arg!(
        nnx_state_merge(only_null.as_ptr(), 1, &mut out),
        "states[0]"
    );
    assert_eq!(out, sentinel());
    let good = [a.ptr(), b.ptr()];
    null_arg!(nnx_state_merge(good.as_ptr(), 2, null_mut()), "out_state");
}

#[test]
fn state_diff_null_arguments() {
    let a = sample_state();
    let b = new_state();
    let mut out: *mut nnx_state = sentinel();
    null_arg!(nnx_state_diff(null(), b.ptr(), &mut out), "state");
    null_arg!(nnx_state_diff(a.ptr(), null(), &mut out), "other");
    assert_eq!(out, sentinel());
    null_arg!(nnx_state_diff(a.ptr(), b.ptr(), null_mut()), "out_state");
}

#[test]
fn state_update_null_arguments() {
    let state = sample_state();
    let (before, n) = (listing(state.ptr()), leaves(state.ptr()));
    let source = new_state();
    set_var(&source, "added", &variable(NNX_TYPE_PARAM, None));
    null_arg!(nnx_state_update(null_mut(), source.ptr()), "state");
    null_arg!(nnx_state_update(state.ptr(), null()), "source");
    assert_unchanged(&state, &before, n);
}

//! The bulk flat functions (`nnx_flat_leaves`, `nnx_flat_paths`,
//! `nnx_flat_push_many`) agree with the entry-by-entry ones, in whole and in
//! chunks; NULL and error cases are rows of `ffi_contract.rs`.

#[macro_use]
mod common;

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use common::*;

/// A key as a comparable value.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Owned {
    S(String),
    I(i64),
}

fn owned(key: &nnx_key) -> Owned {
    if key.kind == NNX_KEY_INT {
        return Owned::I(key.int_value);
    }
    assert_eq!(key.kind, NNX_KEY_STR);
    // SAFETY: a key handed out by the library: `str_len` bytes of interned,
    // NUL-terminated text, valid for the life of the process.
    let bytes = unsafe { std::slice::from_raw_parts(key.str.cast::<u8>(), key.str_len) };
    // SAFETY: as above; the text is NUL-terminated.
    let with_nul = unsafe { CStr::from_ptr(key.str) };
    assert_eq!(with_nul.to_bytes(), bytes, "the text is NUL-terminated");
    Owned::S(String::from_utf8(bytes.to_vec()).unwrap())
}

fn flatten(state: &St) -> Flat {
    let mut flat = null_mut();
    ok!(nnx_state_flatten(state.ptr(), &mut flat));
    Flat(flat)
}

fn flat_len(flat: &Flat) -> usize {
    let mut n = 0;
    ok!(nnx_flat_len(flat.ptr(), &mut n));
    n
}

/// Entry `i` read one function at a time.
struct One {
    path: Vec<Owned>,
    kind: nnx_kind,
    type_id: nnx_type_id,
    variable: *mut nnx_variable,
    array: *mut nnx_array,
}

fn read_one(flat: &Flat, i: usize) -> One {
    let mut keys: *const nnx_key = null();
    let mut len = 0;
    ok!(nnx_flat_path(flat.ptr(), i, &mut keys, &mut len));
    // SAFETY: `len` keys borrowed from the list, which is alive.
    let path = unsafe { std::slice::from_raw_parts(keys, len) }
        .iter()
        .map(owned)
        .collect();
    let mut kind = SENTINEL_U32;
    ok!(nnx_flat_kind(flat.ptr(), i, &mut kind));
    let (mut variable, mut array) = (null_mut(), null_mut());
    let mut type_id = NNX_TYPE_NONE;
    if kind == NNX_KIND_VARIABLE {
        ok!(nnx_flat_variable(flat.ptr(), i, &mut variable));
        ok!(nnx_variable_type(variable, &mut type_id));
    } else {
        ok!(nnx_flat_array(flat.ptr(), i, &mut array));
    }
    One {
        path,
        kind,
        type_id,
        variable,
        array,
    }
}

/// Entries `start .. start + count` read with the bulk functions (borrowed).
fn read_bulk(flat: &Flat, start: usize, count: usize) -> Vec<One> {
    let mut offsets = vec![SENTINEL; count + 1];
    ok!(nnx_flat_paths(
        flat.ptr(),
        start,
        count,
        offsets.as_mut_ptr(),
        null_mut(),
        0
    ));
    let total = offsets[count];
    let mut keys = vec![sentinel_key(); total];
    let mut offsets2 = vec![SENTINEL; count + 1];
    ok!(nnx_flat_paths(
        flat.ptr(),
        start,
        count,
        offsets2.as_mut_ptr(),
        keys.as_mut_ptr(),
        keys.len()
    ));
    assert_eq!(offsets, offsets2, "the sizing call gives the same offsets");
    assert_eq!(offsets[0], 0);
    let mut kinds = vec![SENTINEL_U32; count];
    let mut types = vec![SENTINEL_U32; count];
    let mut variables: Vec<*mut nnx_variable> = vec![sentinel(); count];
    let mut arrays: Vec<*mut nnx_array> = vec![sentinel(); count];
    ok!(nnx_flat_leaves(
        flat.ptr(),
        start,
        count,
        false,
        kinds.as_mut_ptr(),
        types.as_mut_ptr(),
        variables.as_mut_ptr(),
        arrays.as_mut_ptr()
    ));
    (0..count)
        .map(|i| One {
            path: keys[offsets[i]..offsets[i + 1]].iter().map(owned).collect(),
            kind: kinds[i],
            type_id: types[i],
            variable: variables[i],
            array: arrays[i],
        })
        .collect()
}

fn assert_same(bulk: &[One], flat: &Flat, start: usize) {
    for (i, got) in bulk.iter().enumerate() {
        let want = read_one(flat, start + i);
        assert_eq!(got.path, want.path, "entry {}", start + i);
        assert_eq!(got.kind, want.kind, "entry {}", start + i);
        assert_eq!(got.type_id, want.type_id, "entry {}", start + i);
        assert_eq!(got.variable, want.variable, "entry {}", start + i);
        assert_eq!(got.array, want.array, "entry {}", start + i);
    }
}

#[test]
fn bulk_reads_agree_with_reads_one_at_a_time() {
    let state = sample_state();
    let flat = flatten(&state);
    let n = flat_len(&flat);
    assert_eq!(n, SAMPLE_LEAVES);
    let all = read_bulk(&flat, 0, n);
    assert_same(&all, &flat, 0);
    let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&NNX_KIND_ARRAY) && kinds.contains(&NNX_KIND_VARIABLE));
    for e in &all {
        match e.kind {
            NNX_KIND_ARRAY => {
                assert!(e.variable.is_null() && !e.array.is_null());
                assert_eq!(e.type_id, NNX_TYPE_NONE);
            }
            _ => assert!(!e.variable.is_null() && e.array.is_null()),
        }
    }
    // In chunks, of every size and at every start.
    for start in 0..=n {
        for count in 0..=n - start {
            assert_same(&read_bulk(&flat, start, count), &flat, start);
        }
    }
}

#[test]
fn outputs_are_optional_and_keys_outlive_the_list() {
    let state = sample_state();
    let flat = flatten(&state);
    let n = flat_len(&flat);
    // Only the types: the rest is not written.
    let mut types = vec![SENTINEL_U32; n];
    ok!(nnx_flat_leaves(
        flat.ptr(),
        0,
        n,
        false,
        null_mut(),
        types.as_mut_ptr(),
        null_mut(),
        null_mut()
    ));
    assert!(types.contains(&NNX_TYPE_PARAM) && types.contains(&NNX_TYPE_NONE));
    // Nothing at all, and nothing to read: fine.
    ok!(nnx_flat_leaves(
        flat.ptr(),
        0,
        n,
        true,
        null_mut(),
        null_mut(),
        null_mut(),
        null_mut()
    ));
    ok!(nnx_flat_leaves(
        flat.ptr(),
        n,
        0,
        false,
        null_mut(),
        null_mut(),
        null_mut(),
        null_mut()
    ));

    let mut offsets = vec![0; n + 1];
    let mut keys = vec![sentinel_key(); 64];
    ok!(nnx_flat_paths(
        flat.ptr(),
        0,
        n,
        offsets.as_mut_ptr(),
        keys.as_mut_ptr(),
        keys.len()
    ));
    let total = offsets[n];
    assert!(
        key_untouched(&keys[total]),
        "nothing past the keys is written"
    );
    let before: Vec<Owned> = keys[..total].iter().map(owned).collect();
    drop(flat);
    drop(state);
    let after: Vec<Owned> = keys[..total].iter().map(owned).collect();
    assert_eq!(
        before, after,
        "key texts are interned, valid after the list"
    );
}

#[test]
fn retained_handles_belong_to_the_caller() {
    let state = sample_state();
    let flat = flatten(&state);
    let n = flat_len(&flat);
    let mut variables: Vec<*mut nnx_variable> = vec![sentinel(); n];
    let mut arrays: Vec<*mut nnx_array> = vec![sentinel(); n];
    ok!(nnx_flat_leaves(
        flat.ptr(),
        0,
        n,
        true,
        null_mut(),
        null_mut(),
        variables.as_mut_ptr(),
        arrays.as_mut_ptr()
    ));
    let borrowed = read_bulk(&flat, 0, n);
    for (i, e) in borrowed.iter().enumerate() {
        assert_eq!(variables[i], e.variable, "the same handles, retained");
        assert_eq!(arrays[i], e.array);
    }
    // The list and the state go: the caller's references keep the leaves.
    drop(flat);
    drop(state);
    for (&v, &a) in variables.iter().zip(&arrays) {
        if !v.is_null() {
            let mut t = SENTINEL_U32;
            ok!(nnx_variable_type(v, &mut t));
            nnx_variable_release(v);
        } else {
            let mut nbytes = SENTINEL;
            ok!(nnx_array_nbytes(a, &mut nbytes));
            assert_eq!(nbytes, 12);
            nnx_array_release(a);
        }
    }
}

#[test]
fn push_many_builds_what_single_pushes_build() {
    // Paths with shared prefixes, an int key, a repeated path (the later
    // leaf wins at the first position) and both kinds of leaves.
    let p = [
        path!["layers", 0, "attn", "q"],
        path!["layers", 0, "attn", "k"],
        path!["layers", 1, "attn", "q"],
        path!["top"],
        path!["layers", 0, "attn", "q"],
    ];
    let leaves_v = [
        Some(var_with(NNX_TYPE_PARAM, &[1.0])),
        Some(var_with(NNX_TYPE_BATCH_STAT, &[2.0])),
        None,
        Some(var_with(NNX_TYPE_CACHE, &[3.0])),
        Some(var_with(NNX_TYPE_PARAM, &[4.0])),
    ];
    let leaves_a = [None, None, Some(f32_array(&[2], &[5.0, 6.0])), None, None];

    let one = Flat({
        let mut f = null_mut();
        ok!(nnx_flat_new(&mut f));
        f
    });
    for i in 0..p.len() {
        match (&leaves_v[i], &leaves_a[i]) {
            (Some(v), None) => ok!(nnx_flat_push_variable(
                one.ptr(),
                p[i].ptr(),
                p[i].len(),
                v.ptr()
            )),
            (None, Some(a)) => ok!(nnx_flat_push_array(
                one.ptr(),
                p[i].ptr(),
                p[i].len(),
                a.ptr()
            )),
            _ => unreachable!(),
        }
    }

    let mut keys = Vec::new();
    let mut offsets = vec![0usize];
    for path in &p {
        // SAFETY: the test path's keys, alive for the test.
        keys.extend_from_slice(unsafe { std::slice::from_raw_parts(path.ptr(), path.len()) });
        offsets.push(keys.len());
    }
    let variables: Vec<*const nnx_variable> = leaves_v
        .iter()
        .map(|v| v.as_ref().map_or(null(), |v| v.ptr().cast_const()))
        .collect();
    let arrays: Vec<*const nnx_array> = leaves_a
        .iter()
        .map(|a| a.as_ref().map_or(null(), |a| a.ptr().cast_const()))
        .collect();
    let many = Flat({
        let mut f = null_mut();
        ok!(nnx_flat_new(&mut f));
        f
    });
    ok!(nnx_flat_push_many(
        many.ptr(),
        p.len(),
        offsets.as_ptr(),
        keys.as_ptr(),
        variables.as_ptr(),
        arrays.as_ptr()
    ));
    // Appending nothing is fine, with or without arrays.
    ok!(nnx_flat_push_many(
        many.ptr(),
        0,
        null(),
        null(),
        null(),
        null()
    ));
    assert_eq!(flat_len(&many), p.len());
    assert_same(&read_bulk(&many, 0, p.len()), &one, 0);

    let (mut a, mut b) = (null_mut(), null_mut());
    ok!(nnx_state_from_flat(one.ptr(), &mut a));
    ok!(nnx_state_from_flat(many.ptr(), &mut b));
    let (a, b) = (St(a), St(b));
    assert_eq!(listing(a.ptr()), listing(b.ptr()));

    // Variables only: `arrays` may be NULL; pushes append after what is there.
    let only = [variables[0], variables[1]];
    ok!(nnx_flat_push_many(
        many.ptr(),
        2,
        offsets.as_ptr(),
        keys.as_ptr(),
        only.as_ptr(),
        null()
    ));
    assert_eq!(flat_len(&many), p.len() + 2);
    assert_eq!(read_one(&many, p.len() + 1).path, read_one(&many, 1).path);
}

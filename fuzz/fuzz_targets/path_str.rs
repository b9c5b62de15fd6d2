//! `parse_path` and the C `_str` functions on arbitrary bytes.
//!
//! The input, NUL-terminated, is given as a `/`-separated path to every
//! `nnx_state_*_str` function, and as a name or tag to the string-taking
//! functions. Each must return a status, never crash, and agree with the
//! Rust parser and with the key-array form of the same function:
//!
//! - a string that is not UTF-8 gives `NNX_ERR_INVALID_UTF8`;
//! - `parse_path` fails (with `InvalidArgument`) exactly when a component is
//!   empty, and otherwise gives back the text when formatted again, with a
//!   component an int key exactly when it is a canonical decimal `i64`;
//! - `nnx_state_X_str(state, text)` gives the same status, and the same
//!   result, as `nnx_state_X(state, parse_path(text))`.

#![no_main]

use std::ffi::{c_char, CStr};
use std::ptr;

use ::nnx_state::ffi::array::*;
use ::nnx_state::ffi::error::*;
use ::nnx_state::ffi::filter::*;
use ::nnx_state::ffi::key::*;
use ::nnx_state::ffi::state::*;
use ::nnx_state::ffi::types::*;
use ::nnx_state::ffi::variable::*;
use ::nnx_state::key::format_path;
use ::nnx_state::{parse_path, ErrorKind, Key};
use libfuzzer_sys::fuzz_target;

use nnx_status::*;

/// Whether a component is a canonical decimal integer that fits an `i64`
/// (`0`, `12`, `-3`; not `007`, `-0`, `+1` or 20 nines), written from the
/// rule, not from the library.
fn canonical_int(component: &str) -> Option<i64> {
    let digits = component.strip_prefix('-').unwrap_or(component);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    if component == "-0" {
        return None;
    }
    component.parse::<i64>().ok()
}

fn check_parse(text: &str) {
    match parse_path(text) {
        Ok(path) => {
            if text.is_empty() {
                assert!(path.is_empty());
                return;
            }
            let components: Vec<&str> = text.split('/').collect();
            assert_eq!(path.len(), components.len(), "{text:?}");
            for (key, component) in path.iter().zip(&components) {
                assert!(
                    !component.is_empty(),
                    "{text:?} parsed with an empty component"
                );
                match canonical_int(component) {
                    Some(value) => assert_eq!(key, &Key::Int(value), "{text:?}"),
                    None => assert_eq!(key.as_str(), Some(*component), "{text:?}"),
                }
            }
            assert_eq!(format_path(&path), text);
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{text:?}: {e}");
            assert!(
                !text.is_empty() && text.split('/').any(str::is_empty),
                "{text:?} was refused without an empty component: {e}"
            );
        }
    }
}

/// C views of a path's keys (pointing into `path`'s storage).
fn c_keys(path: &[Key]) -> Vec<nnx_key> {
    path.iter()
        .map(|k| match k {
            Key::Int(v) => nnx_key {
                kind: NNX_KEY_INT,
                str: ptr::null(),
                str_len: 0,
                int_value: *v,
            },
            Key::Str(s) => nnx_key {
                kind: NNX_KEY_STR,
                str: s.as_str().as_ptr().cast(),
                str_len: s.as_str().len(),
                int_value: 0,
            },
        })
        .collect()
}

struct Fixture {
    state: *mut nnx_state,
    variable: *mut nnx_variable,
    array: *mut nnx_array,
}

impl Fixture {
    /// `{a: {0: {kernel: Param}}, b: array, layers: {1: {x: Param}}, -3: {}}`
    fn new() -> Fixture {
        let mut f = Fixture {
            state: ptr::null_mut(),
            variable: ptr::null_mut(),
            array: ptr::null_mut(),
        };
        let shape = [2i64];
        let data = [1.0f32, 2.0];
        assert_eq!(nnx_state_new(&mut f.state), NNX_OK);
        assert_eq!(
            nnx_array_new(
                NNX_DTYPE_F32,
                shape.as_ptr(),
                1,
                data.as_ptr().cast(),
                8,
                &mut f.array
            ),
            NNX_OK
        );
        assert_eq!(
            nnx_variable_new(NNX_TYPE_PARAM, f.array, &mut f.variable),
            NNX_OK
        );
        for (path, leaf) in [("a/0/kernel\0", 0), ("b\0", 1), ("layers/1/x\0", 0)] {
            let path = path.as_ptr().cast();
            let status = if leaf == 0 {
                nnx_state_set_variable_str(f.state, path, f.variable)
            } else {
                nnx_state_set_array_str(f.state, path, f.array)
            };
            assert_eq!(status, NNX_OK);
        }
        let mut empty = ptr::null_mut();
        assert_eq!(nnx_state_new(&mut empty), NNX_OK);
        assert_eq!(
            nnx_state_set_state_str(f.state, c"-3".as_ptr(), empty),
            NNX_OK
        );
        nnx_state_free(empty);
        f
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        nnx_state_free(self.state);
        nnx_variable_release(self.variable);
        nnx_array_release(self.array);
    }
}

fn listing(state: *const nnx_state) -> String {
    let mut text: *mut c_char = ptr::null_mut();
    assert_eq!(nnx_state_to_string(state, &mut text), NNX_OK);
    // SAFETY: an owned NUL-terminated string from the library.
    let out = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    nnx_string_free(text);
    out
}

/// The status the `_str` functions must give before they look at the
/// state: `Err` for a text that is not UTF-8 or not a path.
fn expected_parse(bytes: &[u8]) -> Result<Vec<Key>, nnx_status> {
    let text = std::str::from_utf8(bytes).map_err(|_| NNX_ERR_INVALID_UTF8)?;
    parse_path(text).map_err(|_| NNX_ERR_INVALID_ARGUMENT)
}

fn same_status(a: nnx_status, b: nnx_status, what: &str, text: &[u8]) {
    assert_eq!(a, b, "{what} on {text:?}: _str and key forms disagree");
    assert_ne!(a, NNX_ERR_PANIC, "{what} on {text:?} panicked");
}

fn check_c(bytes: &[u8]) {
    // The C side sees the bytes up to the first NUL.
    let mut owned = bytes.to_vec();
    owned.push(0);
    let text = CStr::from_bytes_until_nul(&owned).expect("NUL-terminated");
    let seen = text.to_bytes();
    let cpath = text.as_ptr();
    let parsed = expected_parse(seen);
    let keys = parsed.as_ref().map(|p| c_keys(p)).unwrap_or_default();
    let (kptr, klen) = (keys.as_ptr(), keys.len());

    let f = Fixture::new();
    let before = listing(f.state);

    // Readers: kind, contains, get_* agree with the key forms.
    let (mut k1, mut k2) = (99u32, 99u32);
    let s1 = nnx_state_get_kind_str(f.state, cpath, &mut k1);
    if let Err(status) = parsed {
        assert_eq!(s1, status, "get_kind_str on {seen:?}");
        assert_eq!(k1, 99, "out-pointer written on failure");
    } else {
        let s2 = nnx_state_get_kind(f.state, kptr, klen, &mut k2);
        same_status(s1, s2, "get_kind", seen);
        assert_eq!(k1, k2);
    }
    let (mut c1, mut c2) = (false, false);
    let s1 = nnx_state_contains_str(f.state, cpath, &mut c1);
    if parsed.is_ok() {
        let s2 = nnx_state_contains(f.state, kptr, klen, &mut c2);
        same_status(s1, s2, "contains", seen);
        assert_eq!(c1, c2);
    } else {
        assert_ne!(s1, NNX_OK);
    }
    let (mut v1, mut v2) = (ptr::null_mut(), ptr::null_mut());
    let s1 = nnx_state_get_variable_str(f.state, cpath, &mut v1);
    if parsed.is_ok() {
        let s2 = nnx_state_get_variable(f.state, kptr, klen, &mut v2);
        same_status(s1, s2, "get_variable", seen);
        assert_eq!(v1, v2);
        if s1 == NNX_OK {
            assert_eq!(v1, f.variable);
        }
    }
    nnx_variable_release(v1);
    nnx_variable_release(v2);
    let (mut a1, mut a2) = (ptr::null_mut(), ptr::null_mut());
    let s1 = nnx_state_get_array_str(f.state, cpath, &mut a1);
    if parsed.is_ok() {
        let s2 = nnx_state_get_array(f.state, kptr, klen, &mut a2);
        same_status(s1, s2, "get_array", seen);
        assert_eq!(a1, a2);
    }
    nnx_array_release(a1);
    nnx_array_release(a2);
    let (mut w1, mut w2) = (ptr::null_mut(), ptr::null_mut());
    let s1 = nnx_state_get_state_str(f.state, cpath, &mut w1);
    if parsed.is_ok() {
        let s2 = nnx_state_get_state(f.state, kptr, klen, &mut w2);
        same_status(s1, s2, "get_state", seen);
        if s1 == NNX_OK {
            assert_eq!(listing(w1), listing(w2));
        }
    }
    nnx_state_free(w1);
    nnx_state_free(w2);
    assert_eq!(listing(f.state), before, "a reader changed the state");

    // Writers, each on its own copy: the _str and key forms do the same.
    let copies = |f: &Fixture| {
        let (mut x, mut y) = (ptr::null_mut(), ptr::null_mut());
        assert_eq!(nnx_state_clone(f.state, &mut x), NNX_OK);
        assert_eq!(nnx_state_clone(f.state, &mut y), NNX_OK);
        (x, y)
    };
    type Writer = fn(&Fixture, *mut nnx_state, *const c_char) -> nnx_status;
    type KeyWriter = fn(&Fixture, *mut nnx_state, *const nnx_key, usize) -> nnx_status;
    let writers: [(&str, Writer, KeyWriter); 4] = [
        (
            "set_variable",
            |f, s, p| nnx_state_set_variable_str(s, p, f.variable),
            |f, s, k, n| nnx_state_set_variable(s, k, n, f.variable),
        ),
        (
            "set_array",
            |f, s, p| nnx_state_set_array_str(s, p, f.array),
            |f, s, k, n| nnx_state_set_array(s, k, n, f.array),
        ),
        (
            "set_state",
            |f, s, p| nnx_state_set_state_str(s, p, f.state),
            |f, s, k, n| nnx_state_set_state(s, k, n, f.state),
        ),
        (
            "remove",
            |_, s, p| nnx_state_remove_str(s, p),
            |_, s, k, n| nnx_state_remove(s, k, n),
        ),
    ];
    for (name, by_text, by_keys) in writers {
        let (x, y) = copies(&f);
        let s1 = by_text(&f, x, cpath);
        match &parsed {
            Err(status) => assert_eq!(s1, *status, "{name}_str on {seen:?}"),
            Ok(_) => {
                let s2 = by_keys(&f, y, kptr, klen);
                same_status(s1, s2, name, seen);
            }
        }
        if s1 != NNX_OK {
            assert_eq!(listing(x), before, "a failed {name}_str changed the state");
        }
        if parsed.is_ok() {
            assert_eq!(listing(x), listing(y), "{name}: _str and key forms differ");
        }
        nnx_state_free(x);
        nnx_state_free(y);
    }

    // The text as a type name, a tag, and a metadata name and value.
    let utf8 = std::str::from_utf8(seen).is_ok();
    let mut id = NNX_TYPE_NONE;
    let status = nnx_type_lookup(cpath, &mut id);
    assert!(
        matches!(
            (status, utf8),
            (NNX_OK, true) | (NNX_ERR_KEY_NOT_FOUND, true) | (NNX_ERR_INVALID_UTF8, false)
        ),
        "type_lookup on {seen:?}: {status:?}"
    );
    if !utf8 || seen.is_empty() {
        // Only failing registrations: the registry lives as long as the
        // process and must not grow with every input.
        let status = nnx_type_register(cpath, NNX_TYPE_PARAM, &mut id);
        let want = if utf8 {
            NNX_ERR_INVALID_ARGUMENT
        } else {
            NNX_ERR_INVALID_UTF8
        };
        assert_eq!(status, want, "type_register on {seen:?}");
    }
    let mut filter = ptr::null_mut();
    let status = nnx_filter_with_tag(cpath, &mut filter);
    assert_eq!(status == NNX_OK, utf8, "filter_with_tag on {seen:?}");
    if status == NNX_OK {
        let filters = [filter];
        let mut out = [ptr::null_mut(); 1];
        assert_eq!(
            nnx_state_filter(f.state, filters.as_ptr(), 1, out.as_mut_ptr()),
            NNX_OK
        );
        nnx_state_free(out[0]);
    }
    nnx_filter_free(filter);
    let mut var = ptr::null_mut();
    assert_eq!(
        nnx_variable_new(NNX_TYPE_CACHE, ptr::null(), &mut var),
        NNX_OK
    );
    let status = nnx_variable_set_metadata_str(var, cpath, cpath);
    let want = match (utf8, seen.is_empty()) {
        (false, _) => NNX_ERR_INVALID_UTF8,
        (true, true) => NNX_ERR_INVALID_ARGUMENT,
        (true, false) => NNX_OK,
    };
    assert_eq!(status, want, "set_metadata_str on {seen:?}");
    let mut value: *mut c_char = ptr::null_mut();
    let status = nnx_variable_get_metadata_str(var, cpath, &mut value);
    if want == NNX_OK {
        assert_eq!(status, NNX_OK);
        // SAFETY: an owned NUL-terminated string from the library.
        assert_eq!(unsafe { CStr::from_ptr(value) }.to_bytes(), seen);
        nnx_string_free(value);
    } else {
        assert_ne!(status, NNX_OK);
        assert!(value.is_null());
    }
    nnx_variable_release(var);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_parse(text);
    }
    check_c(data);
});

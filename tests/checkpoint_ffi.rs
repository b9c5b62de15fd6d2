//! The C API of checkpoints and DLPack over several calls: round trips,
//! typed keys, foreign files, zero-copy exports and imports, deleters called
//! once, device memory held and never read. (Their NULL arguments and error
//! statuses are rows of `ffi_contract.rs`.)

#[macro_use]
mod common;

use std::ffi::{c_void, CString};
use std::fs;
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use ::nnx_state::ffi::dlpack::*;
use ::nnx_state::ffi::io::*;
use common::*;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("nnx-ckpt-ffi-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn c(&self, name: &str) -> CString {
        cstr(self.0.join(name).to_str().unwrap())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn load(path: &CString, leaf_type: nnx_type_id, flags: u32) -> St {
    let mut out = null_mut();
    ok!(nnx_safetensors_load(
        path.as_ptr(),
        leaf_type,
        flags,
        &mut out
    ));
    St(out)
}

#[test]
fn save_and_load_round_trip() {
    let dir = Dir::new("roundtrip");
    let state = sample_state();
    // Loaded states come with sorted keys, as filter outputs do.
    let sorted = {
        let all = everything();
        let filters = filter_ptrs(&[&all]);
        let mut out = [null_mut()];
        ok!(nnx_state_filter(
            state.ptr(),
            filters.as_ptr(),
            1,
            out.as_mut_ptr()
        ));
        St(out[0])
    };
    let expected = listing(sorted.ptr());
    let file = dir.c("s.safetensors");
    ok!(nnx_safetensors_save(state.ptr(), file.as_ptr(), 0));
    for flags in [
        0,
        NNX_LOAD_COPY,
        NNX_LOAD_STR_KEYS,
        NNX_LOAD_COPY | NNX_LOAD_STR_KEYS,
    ] {
        let loaded = load(&file, NNX_TYPE_PARAM, flags);
        assert_eq!(listing(loaded.ptr()), expected);
    }
    ok!(nnx_safetensors_save_sharded(
        state.ptr(),
        dir.c("").as_ptr(),
        cstr("model").as_ptr(),
        8,
        0
    ));
    let index = dir.c("model.safetensors.index.json");
    let loaded = load(&index, NNX_TYPE_PARAM, 0);
    assert_eq!(listing(loaded.ptr()), expected);
    let by_dir = load(&dir.c(""), NNX_TYPE_PARAM, 0);
    assert_eq!(listing(by_dir.ptr()), expected);
}

#[test]
fn typed_keys_round_trip_and_opaque_values_are_never_saved() {
    let dir = Dir::new("keys");
    let state = new_state();
    let data = u32_array(&[2, 2], &[0, 42, u32::MAX, 0x8000_0001]);
    set_var(&state, "rngs/default/key", &key_var(&data, "threefry2x32"));
    set_var(&state, "w", &var_with(NNX_TYPE_PARAM, &[1.0]));
    let file = dir.c("k.safetensors");
    ok!(nnx_safetensors_save(state.ptr(), file.as_ptr(), 0));
    ok!(nnx_safetensors_save_sharded(
        state.ptr(),
        dir.c("").as_ptr(),
        cstr("model").as_ptr(),
        8,
        0
    ));
    for source in [file, dir.c("model.safetensors.index.json")] {
        let loaded = load(&source, NNX_TYPE_PARAM, 0);
        let mut v = null_mut();
        ok!(nnx_state_get_variable_str(
            loaded.ptr(),
            cstr("rngs/default/key").as_ptr(),
            &mut v
        ));
        let v = Var(v);
        let (got, name) = get_key(v.ptr());
        assert_eq!(name, "threefry2x32");
        let mut bytes = null();
        ok!(nnx_array_data(got.ptr(), &mut bytes));
        // SAFETY: uint32[2, 2] holds 16 bytes.
        let words = unsafe { std::slice::from_raw_parts(bytes.cast::<u32>(), 4) };
        assert_eq!(words, &[0, 42, u32::MAX, 0x8000_0001]);
        assert_eq!(listing(loaded.ptr()), listing(state.ptr()));
    }

    // An opaque value: both saves fail naming its path, and write nothing.
    let counter = Counter::new();
    set_var(
        &state,
        "layers/0/kernel",
        &opaque_var("test:DeviceArray", null_mut(), &counter),
    );
    let before: Vec<_> = {
        let mut names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let fresh = dir.c("fresh.safetensors");
    let m = fails!(
        nnx_safetensors_save(state.ptr(), fresh.as_ptr(), 0),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "'layers/0/kernel'");
    assert_contains!(m, "opaque value (test:DeviceArray)");
    let m = fails!(
        nnx_safetensors_save_sharded(
            state.ptr(),
            dir.c("").as_ptr(),
            cstr("other").as_ptr(),
            8,
            0
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "'layers/0/kernel'");
    let mut after: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    after.sort();
    assert_eq!(before, after, "a failed save left files behind");
    drop(state);
    assert_eq!(counter.get(), 1);
}

#[test]
fn foreign_files_take_the_leaf_type() {
    let dir = Dir::new("foreign");
    let header = r#"{"a.0.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    "#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    fs::write(dir.0.join("f.safetensors"), &bytes).unwrap();
    let file = dir.c("f.safetensors");
    let params = load(&file, NNX_TYPE_BATCH_STAT, 0);
    let path = path!["a", 0, "w"];
    let mut kind = SENTINEL_U32;
    ok!(nnx_state_get_kind(
        params.ptr(),
        path.ptr(),
        path.len(),
        &mut kind
    ));
    assert_eq!(kind, NNX_KIND_VARIABLE);
    let mut var = null_mut();
    ok!(nnx_state_get_variable(
        params.ptr(),
        path.ptr(),
        path.len(),
        &mut var
    ));
    let var = Var(var);
    let mut type_id = SENTINEL_U32;
    ok!(nnx_variable_type(var.ptr(), &mut type_id));
    assert_eq!(type_id, NNX_TYPE_BATCH_STAT);
    let bare = load(&file, NNX_TYPE_NONE, 0);
    ok!(nnx_state_get_kind(
        bare.ptr(),
        path.ptr(),
        path.len(),
        &mut kind
    ));
    assert_eq!(kind, NNX_KIND_ARRAY);
    let strs = load(&file, NNX_TYPE_PARAM, NNX_LOAD_STR_KEYS);
    let str_path = path!["a", "0", "w"];
    ok!(nnx_state_get_kind(
        strs.ptr(),
        str_path.ptr(),
        str_path.len(),
        &mut kind
    ));
}

/// The `__metadata__` of a file, read by the safetensors crate.
fn header_metadata(path: &std::path::Path) -> Vec<(String, String)> {
    let bytes = fs::read(path).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut entries: Vec<(String, String)> = metadata
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    entries.sort();
    entries
}

fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn file_metadata_is_kept_through_load_and_save() {
    let dir = Dir::new("file-metadata");
    // A Hugging Face file: {"format": "pt"} and one tensor.
    let header =
        r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    fs::write(dir.0.join("hf.safetensors"), &bytes).unwrap();
    let loaded = load(&dir.c("hf.safetensors"), NNX_TYPE_PARAM, 0);
    assert_eq!(file_metadata(loaded.ptr()), entries(&[("format", "pt")]));

    // Saved and loaded again: the user's entries once, the record apart.
    let out = dir.c("out.safetensors");
    ok!(nnx_safetensors_save(loaded.ptr(), out.as_ptr(), 0));
    let written = header_metadata(&dir.0.join("out.safetensors"));
    let names: Vec<&str> = written.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["format", "nnx_state.v1"]);
    assert_eq!(written[0].1, "pt");
    let again = load(&out, NNX_TYPE_PARAM, 0);
    assert_eq!(file_metadata(again.ptr()), entries(&[("format", "pt")]));
    ok!(nnx_safetensors_save(again.ptr(), out.as_ptr(), 0));
    assert_eq!(header_metadata(&dir.0.join("out.safetensors")), written);

    // Changed on the handle, and carried by a clone and a deep copy.
    let (name, value) = (cstr("source"), cstr("flax"));
    ok!(nnx_safetensors_metadata_set(
        again.ptr(),
        name.as_ptr(),
        value.as_ptr()
    ));
    let mut copy = null_mut();
    ok!(nnx_state_clone(again.ptr(), &mut copy));
    let copy = St(copy);
    let both = entries(&[("format", "pt"), ("source", "flax")]);
    assert_eq!(file_metadata(copy.ptr()), both);
    let mut deep = null_mut();
    ok!(nnx_state_deep_copy(again.ptr(), &mut deep));
    assert_eq!(file_metadata(St(deep).ptr()), both);
    let mut got = null_mut();
    ok!(nnx_safetensors_metadata_get(
        copy.ptr(),
        name.as_ptr(),
        &mut got
    ));
    assert_eq!(LibStr(got).text(), "flax");

    // Every shard of a sharded save carries them, and loading gives them back.
    let directory = dir.c("");
    let model = cstr("model");
    ok!(nnx_safetensors_save_sharded(
        copy.ptr(),
        directory.as_ptr(),
        model.as_ptr(),
        1,
        0
    ));
    let single = dir.0.join("model.safetensors");
    assert!(single.is_file(), "one tensor makes one shard");
    let sharded = load(&directory, NNX_TYPE_PARAM, 0);
    assert_eq!(file_metadata(sharded.ptr()), both);

    ok!(nnx_safetensors_metadata_remove(copy.ptr(), name.as_ptr()));
    assert_eq!(file_metadata(copy.ptr()), entries(&[("format", "pt")]));
    assert_eq!(file_metadata(again.ptr()), both, "the clone is independent");
    ok!(nnx_safetensors_metadata_clear(copy.ptr()));
    ok!(nnx_safetensors_save(copy.ptr(), out.as_ptr(), 0));
    let names: Vec<String> = header_metadata(&dir.0.join("out.safetensors"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(names, ["nnx_state.v1"]);
}

#[test]
fn dlpack_exports_and_imports_without_copies() {
    let array = f32_array(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let mut tensor = null_mut();
    ok!(nnx_array_to_dlpack(array.ptr(), &mut tensor));
    // SAFETY: a tensor the library just made.
    unsafe {
        let t = &*tensor;
        assert_eq!(t.version, DLPackVersion { major: 1, minor: 1 });
        assert_eq!(t.flags & DLPACK_FLAG_READ_ONLY, 0);
        assert_eq!(t.dl_tensor.data as *const c_void, data_ptr(array.ptr()));
        assert_eq!(t.dl_tensor.ndim, 2);
        assert_eq!(std::slice::from_raw_parts(t.dl_tensor.shape, 2), &[2, 3]);
        assert_eq!(std::slice::from_raw_parts(t.dl_tensor.strides, 2), &[3, 1]);
        assert_eq!(
            t.dl_tensor.dtype,
            DLDataType {
                code: 2,
                bits: 32,
                lanes: 1
            }
        );
        assert_eq!(
            t.dl_tensor.device,
            DLDevice {
                device_type: 1,
                device_id: 0
            }
        );
        assert_eq!(t.manager_ctx, tensor.cast());
    }
    // Importing it gives an array over the same memory.
    let mut back = null_mut();
    ok!(nnx_array_from_dlpack(tensor, &mut back));
    let back = Arr(back);
    assert_eq!(data_ptr(back.ptr()), data_ptr(array.ptr()));
    let mut writable = BoolOut::new();
    ok!(nnx_array_is_writable(back.ptr(), writable.ptr()));
    assert!(writable.get());
    let mut dtype = SENTINEL_U32;
    ok!(nnx_array_dtype(back.ptr(), &mut dtype));
    assert_eq!(dtype, NNX_DTYPE_F32);
    // Legacy both ways; a legacy import is read-only.
    let mut legacy = null_mut();
    ok!(nnx_array_to_dlpack_legacy(array.ptr(), &mut legacy));
    // SAFETY: a tensor the library just made.
    unsafe {
        assert_eq!(
            (*legacy).dl_tensor.data as *const c_void,
            data_ptr(array.ptr())
        )
    };
    let mut from_legacy = null_mut();
    ok!(nnx_array_from_dlpack_legacy(legacy, &mut from_legacy));
    let from_legacy = Arr(from_legacy);
    let mut w = BoolOut::new();
    ok!(nnx_array_is_writable(from_legacy.ptr(), w.ptr()));
    assert!(!w.get());
    // A read-only array exports with the READ_ONLY flag, and stays so.
    let mut ro = null_mut();
    ok!(nnx_array_to_dlpack(from_legacy.ptr(), &mut ro));
    // SAFETY: a tensor the library just made.
    unsafe { assert_eq!((*ro).flags & DLPACK_FLAG_READ_ONLY, DLPACK_FLAG_READ_ONLY) };
    let mut ro_back = null_mut();
    ok!(nnx_array_from_dlpack(ro, &mut ro_back));
    let ro_back = Arr(ro_back);
    let mut w = BoolOut::new();
    ok!(nnx_array_is_writable(ro_back.ptr(), w.ptr()));
    assert!(!w.get());
    // A tensor nobody imports is freed by its deleter.
    let mut unused = null_mut();
    ok!(nnx_array_to_dlpack(array.ptr(), &mut unused));
    // SAFETY: the tensor's own deleter, called once.
    unsafe { ((*unused).deleter.unwrap())(unused) };
}

static DELETED: AtomicUsize = AtomicUsize::new(0);

/// A producer's tensor over `data`, counting its deleter's calls.
struct Produced {
    managed: DLManagedTensorVersioned,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

unsafe extern "C" fn count_delete(tensor: *mut DLManagedTensorVersioned) {
    DELETED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `manager_ctx` is the boxed `Produced` this tensor is part of.
    drop(unsafe { Box::from_raw((*tensor).manager_ctx.cast::<Produced>()) });
}

fn produce(
    data: *mut c_void,
    shape: &[i64],
    strides: Option<&[i64]>,
    dtype: DLDataType,
    major: u32,
) -> *mut DLManagedTensorVersioned {
    let mut produced = Box::new(Produced {
        managed: DLManagedTensorVersioned {
            version: DLPackVersion { major, minor: 0 },
            manager_ctx: null_mut(),
            deleter: Some(count_delete),
            flags: 0,
            dl_tensor: DLTensor {
                data,
                device: DLDevice {
                    device_type: 1,
                    device_id: 0,
                },
                ndim: shape.len() as i32,
                dtype,
                shape: null_mut(),
                strides: null_mut(),
                byte_offset: 0,
            },
        },
        shape: shape.to_vec(),
        strides: strides.map(<[i64]>::to_vec).unwrap_or_default(),
    });
    produced.managed.dl_tensor.shape = produced.shape.as_mut_ptr();
    if strides.is_some() {
        produced.managed.dl_tensor.strides = produced.strides.as_mut_ptr();
    }
    let raw = Box::into_raw(produced);
    // SAFETY: just made.
    unsafe {
        (*raw).managed.manager_ctx = raw.cast();
        &mut (*raw).managed
    }
}

const F32: DLDataType = DLDataType {
    code: 2,
    bits: 32,
    lanes: 1,
};

#[test]
fn dlpack_imports_call_the_deleter_once_in_every_case() {
    let mut data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let ptr: *mut c_void = data.as_mut_ptr().cast();
    let before = DELETED.load(Ordering::SeqCst);
    // Success: the deleter runs when the array goes.
    let tensor = produce(ptr, &[2, 3], Some(&[3, 1]), F32, 1);
    // SAFETY: the tensor just made.
    unsafe { (*tensor).dl_tensor.byte_offset = 4 };
    unsafe { (*tensor).dl_tensor.shape.write(1) };
    let mut array = null_mut();
    ok!(nnx_array_from_dlpack(tensor, &mut array));
    assert_eq!(
        data_ptr(array),
        ptr.cast::<u8>().wrapping_add(4).cast_const().cast()
    );
    assert_eq!(DELETED.load(Ordering::SeqCst), before);
    nnx_array_release(array);
    assert_eq!(DELETED.load(Ordering::SeqCst), before + 1);
    // Failures: the tensor is consumed all the same.
    let cases: [(*mut DLManagedTensorVersioned, &str); 5] = [
        (produce(ptr, &[2, 3], None, F32, 2), "version 2.0"),
        (
            produce(ptr, &[2, 3], Some(&[1, 2]), F32, 1),
            "not compact row-major",
        ),
        (
            produce(
                ptr,
                &[2],
                None,
                DLDataType {
                    code: 2,
                    bits: 32,
                    lanes: 4,
                },
                1,
            ),
            "lanes",
        ),
        (
            produce(
                ptr,
                &[2],
                None,
                DLDataType {
                    code: 5,
                    bits: 64,
                    lanes: 1,
                },
                1,
            ),
            "no nnx-state dtype",
        ),
        (produce(ptr, &[-2], None, F32, 1), "negative dimension"),
    ];
    for (i, (tensor, needle)) in cases.into_iter().enumerate() {
        let mut out = sentinel::<nnx_array>();
        let m = fails!(nnx_array_from_dlpack(tensor, &mut out), NNX_ERR_FORMAT);
        assert_contains!(m, needle);
        assert_eq!(out, sentinel());
        assert_eq!(DELETED.load(Ordering::SeqCst), before + 2 + i);
    }
    let tensor = produce(null_mut(), &[2], None, F32, 1);
    let mut out = sentinel::<nnx_array>();
    let m = fails!(nnx_array_from_dlpack(tensor, &mut out), NNX_ERR_FORMAT);
    assert_contains!(m, "NULL data");
    let tensor = produce(ptr, &[2], None, F32, 1);
    null_arg!(nnx_array_from_dlpack(tensor, null_mut()), "out_array");
    assert_eq!(DELETED.load(Ordering::SeqCst), before + 8);
    // An empty tensor may have NULL data and any strides.
    let tensor = produce(null_mut(), &[0, 3], Some(&[0, 0]), F32, 1);
    let mut empty = null_mut();
    ok!(nnx_array_from_dlpack(tensor, &mut empty));
    let mut nbytes = 99;
    ok!(nnx_array_nbytes(empty, &mut nbytes));
    assert_eq!(nbytes, 0);
    nnx_array_release(empty);
    assert_eq!(DELETED.load(Ordering::SeqCst), before + 9);
    // The `_notify` forms: the caller's callback runs once, after the
    // deleter, when the array goes; on failure the deleter runs, the
    // callback never.
    let notified = Counter::new();
    let tensor = produce(ptr, &[2], None, F32, 1);
    let mut array = null_mut();
    ok!(nnx_array_from_dlpack_notify(
        tensor,
        Some(note_deleted),
        notified.as_user_data(),
        &mut array
    ));
    assert_eq!(data_ptr(array), ptr.cast_const());
    assert_eq!(
        (notified.get(), DELETED.load(Ordering::SeqCst)),
        (0, before + 9)
    );
    nnx_array_release(array);
    assert_eq!(notified.get(), 1);
    assert_eq!(
        DELETED_WHEN_NOTIFIED.load(Ordering::SeqCst),
        before + 10,
        "deleter first"
    );
    let tensor = produce(ptr, &[2], None, F32, 2);
    let mut out = sentinel::<nnx_array>();
    let m = fails!(
        nnx_array_from_dlpack_notify(
            tensor,
            Some(note_deleted),
            notified.as_user_data(),
            &mut out
        ),
        NNX_ERR_FORMAT
    );
    assert_contains!(m, "version 2.0");
    assert_eq!(
        (notified.get(), DELETED.load(Ordering::SeqCst)),
        (1, before + 11)
    );
}

static DELETED_WHEN_NOTIFIED: AtomicUsize = AtomicUsize::new(0);

/// A `_notify` callback: counts, and records how many deleters had run.
unsafe extern "C" fn note_deleted(user_data: *mut c_void) {
    DELETED_WHEN_NOTIFIED.store(DELETED.load(Ordering::SeqCst), Ordering::SeqCst);
    // SAFETY: the test passes a live `Counter`.
    unsafe { count_release(user_data) };
}

#[test]
fn arrays_on_other_devices_are_held_never_read() {
    let releases = Counter::new();
    let shape = [4i64];
    let fake = 0x7000_0000usize as *mut c_void;
    let mut out = null_mut();
    ok!(nnx_array_wrap_device(
        NNX_DTYPE_F32,
        shape.as_ptr(),
        1,
        fake,
        16,
        2,
        1,
        true,
        Some(count_release),
        releases.as_user_data(),
        &mut out
    ));
    let gpu = Arr(out);
    let (mut t, mut i) = (0, 0);
    ok!(nnx_array_device(gpu.ptr(), &mut t, &mut i));
    assert_eq!((t, i), (2, 1));
    assert_eq!(data_ptr(gpu.ptr()), fake.cast_const());
    // Held in states, split, exported: no byte is read.
    let state = new_state();
    let var = variable(NNX_TYPE_PARAM, Some(&gpu));
    set_var(&state, "w", &var);
    assert_contains!(listing(state.ptr()), "<device 2:1>");
    let mut copy = sentinel::<nnx_state>();
    fails!(
        nnx_state_deep_copy(state.ptr(), &mut copy),
        NNX_ERR_INVALID_ARGUMENT
    );
    let mut tensor = null_mut();
    ok!(nnx_array_to_dlpack(gpu.ptr(), &mut tensor));
    // SAFETY: a tensor the library just made.
    unsafe {
        assert_eq!(
            (*tensor).dl_tensor.device,
            DLDevice {
                device_type: 2,
                device_id: 1
            }
        );
        assert_eq!((*tensor).dl_tensor.data, fake);
        ((*tensor).deleter.unwrap())(tensor);
    }
    // CPU arrays say so.
    let cpu = f32_array(&[1], &[1.0]);
    ok!(nnx_array_device(cpu.ptr(), &mut t, &mut i));
    assert_eq!((t, i), (1, 0));
    // Bad arguments keep nothing and call no release.
    let mut bad = sentinel::<nnx_array>();
    fails!(
        nnx_array_wrap_device(
            NNX_DTYPE_F32,
            shape.as_ptr(),
            1,
            fake,
            15,
            2,
            1,
            true,
            Some(count_release),
            releases.as_user_data(),
            &mut bad
        ),
        NNX_ERR_SHAPE_MISMATCH
    );
    fails!(
        nnx_array_wrap_device(
            999,
            shape.as_ptr(),
            1,
            fake,
            16,
            2,
            1,
            true,
            Some(count_release),
            releases.as_user_data(),
            &mut bad
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_eq!(bad, sentinel());
    drop(var);
    drop(state);
    assert_eq!(releases.get(), 0);
    drop(gpu);
    assert_eq!(releases.get(), 1);
}

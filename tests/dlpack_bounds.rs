//! DLPack imports refuse every tensor whose address arithmetic overflows or
//! wraps, before the library keeps anything, and caller memory given as a
//! pointer and a length (`nnx_array_wrap`, `nnx_array_wrap_device`,
//! `nnx_array_new`, array arguments) may not run past the end of the
//! address space either.
//!
//! The tensors are built by hand, field by field, as a producer would, and
//! each bad one goes through both `nnx_array_from_dlpack` and
//! `nnx_array_from_dlpack_legacy`: the status and message are checked, the
//! out-pointer is left alone, and the tensor's deleter has run exactly once
//! when the call returns, as the header says of every failure. Valid edge
//! cases (empty tensors, an offset exactly at the end of the memory, 0-d
//! scalars, device memory that ends at the last address) are imported, put
//! into a state and printed, and their deleter runs once, when the array
//! goes. Addresses that are not memory are only ever numbers here: the
//! library refuses them before it could read them, or holds device memory
//! it never reads.

#[macro_use]
mod common;

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ::nnx_state::ffi::dlpack::*;
use common::*;

const F32: DLDataType = DLDataType {
    code: 2,
    bits: 32,
    lanes: 1,
};
const U8: DLDataType = DLDataType {
    code: 1,
    bits: 8,
    lanes: 1,
};
const F64: DLDataType = DLDataType {
    code: 2,
    bits: 64,
    lanes: 1,
};
const CPU: i32 = 1;
const CUDA: i32 = 2;

/// A tensor's fields, as a producer fills them in.
#[derive(Clone)]
struct Spec {
    data: usize,
    device_type: i32,
    /// `None`: the length of `shape`.
    ndim: Option<i32>,
    dtype: DLDataType,
    shape: Vec<i64>,
    /// A made-up address for `shape` in place of the vector's.
    shape_at: Option<usize>,
    strides: Option<Vec<i64>>,
    /// A made-up address for `strides` in place of the vector's.
    strides_at: Option<usize>,
    byte_offset: u64,
}

impl Spec {
    fn new(data: usize, dtype: DLDataType, shape: &[i64]) -> Spec {
        Spec {
            data,
            device_type: CPU,
            ndim: None,
            dtype,
            shape: shape.to_vec(),
            shape_at: None,
            strides: None,
            strides_at: None,
            byte_offset: 0,
        }
    }

    fn f32(data: &[f32], shape: &[i64]) -> Spec {
        Spec::new(data.as_ptr() as usize, F32, shape)
    }

    fn offset(mut self, byte_offset: u64) -> Spec {
        self.byte_offset = byte_offset;
        self
    }

    fn ndim(mut self, ndim: i32) -> Spec {
        self.ndim = Some(ndim);
        self
    }

    fn strides(mut self, strides: &[i64]) -> Spec {
        self.strides = Some(strides.to_vec());
        self
    }

    fn dtype(mut self, code: u8, bits: u8, lanes: u16) -> Spec {
        self.dtype = DLDataType { code, bits, lanes };
        self
    }

    fn device(mut self, device_type: i32) -> Spec {
        self.device_type = device_type;
        self
    }

    fn shape_at(mut self, address: usize) -> Spec {
        self.shape_at = Some(address);
        self
    }

    fn strides_at(mut self, address: usize) -> Spec {
        self.strides_at = Some(address);
        self
    }
}

/// The two managed-tensor structs, as the tests build and import them.
trait Tensor: Sized + 'static {
    const NAME: &'static str;
    fn make(dl_tensor: DLTensor) -> Self;
    fn dl_tensor(&mut self) -> &mut DLTensor;
    fn set_ctx(&mut self, ctx: *mut c_void);
    fn ctx(&self) -> *mut c_void;
    fn import(tensor: *mut Self, out: *mut *mut nnx_array) -> nnx_status;
}

/// Implements `Tensor` for a struct: the two have the same field names.
macro_rules! tensor {
    ($t:ty, $import:ident, |$dl_tensor:ident| $make:expr) => {
        impl Tensor for $t {
            const NAME: &'static str = stringify!($import);

            fn make($dl_tensor: DLTensor) -> Self {
                $make
            }

            fn dl_tensor(&mut self) -> &mut DLTensor {
                &mut self.dl_tensor
            }

            fn set_ctx(&mut self, ctx: *mut c_void) {
                self.manager_ctx = ctx;
            }

            fn ctx(&self) -> *mut c_void {
                self.manager_ctx
            }

            fn import(tensor: *mut Self, out: *mut *mut nnx_array) -> nnx_status {
                $import(tensor, out)
            }
        }
    };
}

tensor!(
    DLManagedTensorVersioned,
    nnx_array_from_dlpack,
    |dl_tensor| {
        DLManagedTensorVersioned {
            version: DLPackVersion { major: 1, minor: 1 },
            manager_ctx: null_mut(),
            deleter: Some(delete::<Self>),
            flags: 0,
            dl_tensor,
        }
    }
);

tensor!(DLManagedTensor, nnx_array_from_dlpack_legacy, |dl_tensor| {
    DLManagedTensor {
        dl_tensor,
        manager_ctx: null_mut(),
        deleter: Some(delete::<Self>),
    }
});

/// What a producer allocates for one tensor: the struct, its shape and
/// strides, and a count of its deleter's calls.
struct Produced<T> {
    managed: T,
    shape: Vec<i64>,
    strides: Vec<i64>,
    deletes: Arc<AtomicUsize>,
}

/// The deleter of every tensor here: counts, then frees the producer's box.
unsafe extern "C" fn delete<T: Tensor>(tensor: *mut T) {
    // SAFETY: `manager_ctx` is the boxed `Produced` this tensor is part of,
    // and the library calls the deleter once.
    let produced = unsafe { Box::from_raw((*tensor).ctx().cast::<Produced<T>>()) };
    produced.deletes.fetch_add(1, Ordering::SeqCst);
}

/// Builds the tensor `spec` describes; gives it with its deleter count.
fn produce<T: Tensor>(spec: &Spec) -> (*mut T, Arc<AtomicUsize>) {
    let deletes = Arc::new(AtomicUsize::new(0));
    let mut produced = Box::new(Produced {
        managed: T::make(DLTensor {
            data: spec.data as *mut c_void,
            device: DLDevice {
                device_type: spec.device_type,
                device_id: 0,
            },
            ndim: spec.ndim.unwrap_or(spec.shape.len() as i32),
            dtype: spec.dtype,
            shape: null_mut(),
            strides: null_mut(),
            byte_offset: spec.byte_offset,
        }),
        shape: spec.shape.clone(),
        strides: spec.strides.clone().unwrap_or_default(),
        deletes: deletes.clone(),
    });
    let shape = match spec.shape_at {
        Some(address) => address as *mut i64,
        None if spec.shape.is_empty() => null_mut(),
        None => produced.shape.as_mut_ptr(),
    };
    let strides = match (spec.strides_at, &spec.strides) {
        (Some(address), _) => address as *mut i64,
        (None, Some(_)) => produced.strides.as_mut_ptr(),
        (None, None) => null_mut(),
    };
    let raw = Box::into_raw(produced);
    // SAFETY: just made; the box stays where it is until the deleter.
    unsafe {
        let dl = (*raw).managed.dl_tensor();
        dl.shape = shape;
        dl.strides = strides;
        (*raw).managed.set_ctx(raw.cast());
        (&raw mut (*raw).managed, deletes)
    }
}

/// `spec` fails with `status` through both imports, with a message that
/// says `needle`; the out-pointer is left alone and the deleter has run
/// exactly once when the call returns.
fn refused(spec: &Spec, status: nnx_status, needle: &str) {
    refused_by::<DLManagedTensorVersioned>(spec, status, needle);
    refused_by::<DLManagedTensor>(spec, status, needle);
}

fn refused_by<T: Tensor>(spec: &Spec, status: nnx_status, needle: &str) {
    let (tensor, deletes) = produce::<T>(spec);
    let primed = prime_error();
    let mut out = sentinel::<nnx_array>();
    let got = T::import(tensor, &mut out);
    let message = last_error();
    assert_eq!(
        got,
        status,
        "{}: {} ({message:?}), expected {}",
        T::NAME,
        status_name(got),
        status_name(status)
    );
    assert_ne!(message, primed, "{}: no message of its own", T::NAME);
    assert_contains!(message, needle);
    assert_eq!(out, sentinel(), "{}: out-pointer written", T::NAME);
    assert_eq!(deletes.load(Ordering::SeqCst), 1, "{}: deleter", T::NAME);
}

/// Imports `spec` through both imports; checks `check` on each array, that
/// the deleter waits for the array to go, and that the array prints in a
/// state; gives the two listings.
fn accepted(spec: &Spec, check: impl Fn(*mut nnx_array)) -> [String; 2] {
    [
        accepted_by::<DLManagedTensorVersioned>(spec, &check),
        accepted_by::<DLManagedTensor>(spec, &check),
    ]
}

fn accepted_by<T: Tensor>(spec: &Spec, check: &dyn Fn(*mut nnx_array)) -> String {
    let (tensor, deletes) = produce::<T>(spec);
    let mut out = null_mut();
    ok!(T::import(tensor, &mut out));
    let array = Arr(out);
    check(array.ptr());
    let state = new_state();
    set_arr(&state, "x", &array);
    let text = listing(state.ptr());
    drop(array);
    assert_eq!(
        deletes.load(Ordering::SeqCst),
        0,
        "{}: deleted early",
        T::NAME
    );
    drop(state);
    assert_eq!(deletes.load(Ordering::SeqCst), 1, "{}: deleter", T::NAME);
    text
}

fn nbytes(array: *const nnx_array) -> usize {
    let mut n = usize::MAX;
    ok!(nnx_array_nbytes(array, &mut n));
    n
}

/// An address near the top of the address space, from which exactly
/// `room` bytes fit (their one-past-the-end address is `usize::MAX`).
fn top(room: usize) -> usize {
    usize::MAX - room
}

#[test]
fn byte_offsets_that_wrap_are_refused() {
    let data = [1.0f32, 2.0, 3.0, 4.0];
    let address = data.as_ptr() as u64;
    // data + offset wraps round to address 16, just past NULL.
    let to_16 = 0u64.wrapping_sub(address).wrapping_add(16);
    refused(
        &Spec::f32(&data, &[4]).offset(to_16),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "run past the end of the address space",
    );
    // The offset alone is the whole address space.
    refused(
        &Spec::f32(&data, &[4]).offset(u64::MAX),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        &format!("byte_offset {} plus its 16 bytes overflows", u64::MAX),
    );
    refused(
        &Spec::f32(&data, &[]).offset(u64::MAX - 3),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "overflows",
    );
    // The element would be the four bytes before data: offset and size
    // fit a usize, the address does not.
    refused(
        &Spec::f32(&data, &[1]).offset(u64::MAX - 4),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "address space",
    );
    // An empty tensor's offset is checked as well.
    refused(
        &Spec::f32(&data, &[0]).offset(u64::MAX),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "run past the end of the address space",
    );
}

#[test]
fn memory_that_ends_past_the_address_space_is_refused() {
    // data + offset fits; data + offset + nbytes does not.
    refused(
        &Spec::new(top(64), F32, &[8]).offset(48),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        &format!("80 bytes from address {:#x} run past the end", top(64)),
    );
    refused(
        &Spec::new(top(8), F32, &[4]),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "16 bytes from address",
    );
    refused(
        &Spec::new(top(8), U8, &[9]),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "run past the end of the address space",
    );
    refused(
        &Spec::new(top(15), F32, &[4]).device(CUDA),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "16 bytes from address",
    );
    refused(
        &Spec::new(top(23), F32, &[2]).device(CUDA).offset(16),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "24 bytes from address",
    );
    // More than one object can be, though it would not wrap.
    refused(
        &Spec::new(0x1000, U8, &[1]).offset(isize::MAX as u64),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "more than one allocation can hold",
    );
    // Device memory follows the same arithmetic.
    refused(
        &Spec::new(0x7000_0000, F32, &[4])
            .device(CUDA)
            .offset(0u64.wrapping_sub(0x7000_0000)),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "run past the end of the address space",
    );
    refused(
        &Spec::new(top(8), F32, &[4]).device(CUDA),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "run past the end of the address space",
    );
}

#[test]
fn byte_sizes_that_overflow_are_refused() {
    let data = [0.0f32; 4];
    for shape in [
        vec![i64::MAX, 2],
        vec![1 << 32, 1 << 32],
        vec![1 << 62],
        vec![1 << 61, 2, 1],
        vec![i64::MAX],
        vec![2; 70],
        vec![1 << 31; 3],
        vec![i64::MAX, 0, i64::MAX],
        vec![0, 1 << 62, 2],
    ] {
        refused(
            &Spec::f32(&data, &shape),
            nnx_status::NNX_ERR_INVALID_ARGUMENT,
            "byte size overflows",
        );
    }
    // Past isize::MAX without overflowing usize.
    refused(
        &Spec::new(data.as_ptr() as usize, F64, &[1 << 60]),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "byte size overflows",
    );
    refused(
        &Spec::new(data.as_ptr() as usize, U8, &[1 << 62, 2]),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "byte size overflows",
    );
    // Strides are looked at only once the size is known to fit: these would
    // be compact if the products did not overflow.
    refused(
        &Spec::f32(&data, &[1 << 62, 4]).strides(&[4, 1]),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "byte size overflows",
    );
    refused(
        &Spec::f32(&data, &[i64::MAX, i64::MAX, 2]).strides(&[i64::MAX, 2, 1]),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "byte size overflows",
    );
}

#[test]
fn bad_dimensions_and_ndims_are_refused() {
    let data = [0.0f32; 4];
    for shape in [vec![-1], vec![2, -2], vec![i64::MIN], vec![0, -1]] {
        refused(
            &Spec::f32(&data, &shape),
            nnx_status::NNX_ERR_FORMAT,
            "negative dimension",
        );
    }
    for ndim in [-1, i32::MIN] {
        refused(
            &Spec::f32(&data, &[4]).ndim(ndim),
            nnx_status::NNX_ERR_FORMAT,
            &format!("ndim {ndim}"),
        );
    }
    // An ndim whose shape would run past the end of the address space.
    refused(
        &Spec::f32(&data, &[4]).ndim(i32::MAX).shape_at(top(64)),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "argument `dl_tensor.shape`",
    );
    refused(
        &Spec::f32(&data, &[4]).ndim(2).shape_at(top(8)),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "run past the end of the address space",
    );
    // No shape for dimensions.
    refused(
        &Spec::f32(&data, &[]).ndim(3),
        nnx_status::NNX_ERR_NULL_ARGUMENT,
        "`dl_tensor.shape` is NULL",
    );
}

#[test]
fn strides_that_are_not_compact_or_wrap_are_refused() {
    let data = [0.0f32; 6];
    for strides in [
        vec![i64::MAX, 1],
        vec![-3, 1],
        vec![3, -1],
        vec![1, 2],
        vec![i64::MIN, i64::MIN],
        vec![6, 2],
    ] {
        refused(
            &Spec::f32(&data, &[2, 3]).strides(&strides),
            nnx_status::NNX_ERR_FORMAT,
            "not compact row-major",
        );
    }
    refused(
        &Spec::f32(&data, &[2, 3])
            .strides(&[3, 1])
            .strides_at(top(8)),
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        "argument `dl_tensor.strides`",
    );
}

#[test]
fn null_data_and_bad_dtypes_are_refused() {
    refused(
        &Spec::new(0, F32, &[2]),
        nnx_status::NNX_ERR_FORMAT,
        "NULL data and 8 bytes",
    );
    refused(
        &Spec::new(0, F32, &[]).offset(64),
        nnx_status::NNX_ERR_FORMAT,
        "NULL data and 4 bytes",
    );
    let data = [0.0f32; 4];
    refused(
        &Spec::f32(&data, &[2]).dtype(2, 32, 2),
        nnx_status::NNX_ERR_FORMAT,
        "2 lanes",
    );
    refused(
        &Spec::f32(&data, &[2]).dtype(2, 32, 0),
        nnx_status::NNX_ERR_FORMAT,
        "0 lanes",
    );
    for bits in [0, 4, 12, 31, 255] {
        refused(
            &Spec::f32(&data, &[2]).dtype(2, bits, 1),
            nnx_status::NNX_ERR_FORMAT,
            &format!("(code 2, {bits} bits) has no nnx-state dtype"),
        );
    }
}

#[test]
fn edge_cases_that_fit_are_imported() {
    let data = [1.0f32, 2.0, 3.0, 4.0];
    let address = data.as_ptr() as usize;
    let at = |offset: usize| {
        move |array: *mut nnx_array| {
            assert_eq!(data_ptr(array) as usize, address + offset);
        }
    };
    // The last two elements.
    let [v, l] = accepted(&Spec::f32(&data, &[2]).offset(8), at(8));
    assert_contains!(v, "float32[2] [3.0, 4.0]");
    assert_eq!(v, l);
    // A 0-d scalar: no shape, no strides.
    let [v, _] = accepted(&Spec::f32(&data, &[]).offset(4), |array| {
        at(4)(array);
        assert_eq!(nbytes(array), 4);
    });
    assert_contains!(v, "float32[] [2.0]");
    // A 0-d scalar with non-NULL (empty) shape and strides arrays.
    accepted(&Spec::f32(&data, &[]).strides(&[]).offset(12), at(12));
    // An offset exactly at the end of the memory, for no elements.
    let [v, _] = accepted(&Spec::f32(&data, &[0]).offset(16), |array| {
        at(16)(array);
        assert_eq!(nbytes(array), 0);
    });
    assert_contains!(v, "float32[0] []");
    // Empty tensors: NULL data, any strides, large dimensions beside the
    // zero (as long as they multiply without overflow, as in numpy).
    accepted(&Spec::new(0, F32, &[0, 3]).strides(&[7, -7]), |array| {
        assert_eq!(nbytes(array), 0);
    });
    accepted(&Spec::new(0, F32, &[1 << 40, 0, 1 << 20]), |array| {
        assert_eq!(nbytes(array), 0);
    });
    // Strides of axes of length 1 may be anything.
    accepted(
        &Spec::f32(&data, &[1, 4, 1]).strides(&[i64::MIN, 1, i64::MAX]),
        at(0),
    );
    // Many dimensions of length 1.
    accepted(&Spec::f32(&data, &[1; 200]), at(0));
    // Memory that ends where the address space does: held (on a device:
    // never read), one byte more is refused above.
    let [v, _] = accepted(&Spec::new(top(16), F32, &[4]).device(CUDA), |array| {
        assert_eq!(data_ptr(array) as usize, top(16));
        assert_eq!(nbytes(array), 16);
    });
    assert_contains!(v, "<device 2:0>");
    accepted(
        &Spec::new(top(24), F32, &[2]).device(CUDA).offset(16),
        |array| assert_eq!(data_ptr(array) as usize, top(8)),
    );
    accepted(
        &Spec::new(0x7000_0000, F32, &[2]).device(CUDA).offset(8),
        |array| assert_eq!(data_ptr(array) as usize, 0x7000_0008),
    );
}

/// Release callbacks that must never run: a refused wrap keeps nothing.
unsafe extern "C" fn never_released(_user_data: *mut c_void) {
    panic!("a refused wrap called its release callback");
}

#[test]
fn wrapped_memory_that_runs_past_the_address_space_is_refused() {
    let shape = [4i64];
    for device in [CPU, CUDA] {
        for address in [top(8), top(15), usize::MAX, 1usize.wrapping_neg()] {
            let mut out = sentinel::<nnx_array>();
            let m = fails!(
                nnx_array_wrap_device(
                    NNX_DTYPE_F32,
                    shape.as_ptr(),
                    1,
                    address as *mut c_void,
                    16,
                    device,
                    0,
                    true,
                    Some(never_released),
                    null_mut(),
                    &mut out
                ),
                NNX_ERR_INVALID_ARGUMENT
            );
            assert_contains!(m, "argument `data`: 16 bytes from address");
            assert_contains!(m, "run past the end of the address space");
            assert_eq!(out, sentinel());
        }
    }
    let mut out = sentinel::<nnx_array>();
    let m = fails!(
        nnx_array_wrap(
            NNX_DTYPE_F32,
            shape.as_ptr(),
            1,
            top(4) as *mut c_void,
            16,
            false,
            Some(never_released),
            null_mut(),
            &mut out
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "run past the end of the address space");
    assert_eq!(out, sentinel());
    // Memory that ends at the last address fits (on a device: never read).
    let releases = Counter::new();
    let mut out = null_mut();
    ok!(nnx_array_wrap_device(
        NNX_DTYPE_F32,
        shape.as_ptr(),
        1,
        top(16) as *mut c_void,
        16,
        CUDA,
        0,
        true,
        Some(count_release),
        releases.as_user_data(),
        &mut out
    ));
    assert_eq!(data_ptr(out) as usize, top(16));
    nnx_array_release(out);
    assert_eq!(releases.get(), 1);
}

#[test]
fn copied_and_array_arguments_that_run_past_the_address_space_are_refused() {
    let shape = [4i64];
    let mut out = sentinel::<nnx_array>();
    let m = fails!(
        nnx_array_new(
            NNX_DTYPE_F32,
            shape.as_ptr(),
            1,
            top(8) as *const c_void,
            16,
            &mut out
        ),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "argument `data`: 16 bytes from address");
    assert_eq!(out, sentinel());
    let m = fails!(
        nnx_array_zeros(NNX_DTYPE_F32, top(16) as *const i64, 4, &mut out),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "argument `shape`: 32 bytes from address");
    assert_eq!(out, sentinel());
    // A key string given by pointer and length.
    let state = new_state();
    let key = nnx_key {
        kind: NNX_KEY_STR,
        str: top(2) as *const std::ffi::c_char,
        str_len: 3,
        int_value: 0,
    };
    let array = f32_array(&[1], &[1.0]);
    let m = fails!(
        nnx_state_set_array(state.ptr(), &key, 1, array.ptr()),
        NNX_ERR_INVALID_ARGUMENT
    );
    assert_contains!(m, "argument `key.str`");
    assert_eq!(top_len(state.ptr()), 0);
}

//! Arrays: shared (`_retain` / `_release`), immutable in dtype and shape.

use std::ffi::c_void;
use std::sync::Arc;

use super::error::nnx_status;
use super::{boundary, fail, read_into, slice, ArcHandle, FfiError, FfiResult, Out, OutArray};
use crate::array::{byte_size, Array, DType};
use crate::buffer::{check_span, Buffer, Device, Release};

/// An element type: one of the `NNX_DTYPE_*` values.
pub type nnx_dtype = u32;
pub const NNX_DTYPE_BOOL: nnx_dtype = 1;
pub const NNX_DTYPE_I8: nnx_dtype = 2;
pub const NNX_DTYPE_I16: nnx_dtype = 3;
pub const NNX_DTYPE_I32: nnx_dtype = 4;
pub const NNX_DTYPE_I64: nnx_dtype = 5;
pub const NNX_DTYPE_U8: nnx_dtype = 6;
pub const NNX_DTYPE_U16: nnx_dtype = 7;
pub const NNX_DTYPE_U32: nnx_dtype = 8;
pub const NNX_DTYPE_U64: nnx_dtype = 9;
pub const NNX_DTYPE_F16: nnx_dtype = 10;
pub const NNX_DTYPE_BF16: nnx_dtype = 11;
pub const NNX_DTYPE_F32: nnx_dtype = 12;
pub const NNX_DTYPE_F64: nnx_dtype = 13;
pub const NNX_DTYPE_F8_E4M3FN: nnx_dtype = 14;
pub const NNX_DTYPE_F8_E5M2: nnx_dtype = 15;

// The header needs literal values; keep them equal to the core's codes.
const _: () = {
    assert!(NNX_DTYPE_BOOL == DType::Bool as u32);
    assert!(NNX_DTYPE_I8 == DType::I8 as u32);
    assert!(NNX_DTYPE_I16 == DType::I16 as u32);
    assert!(NNX_DTYPE_I32 == DType::I32 as u32);
    assert!(NNX_DTYPE_I64 == DType::I64 as u32);
    assert!(NNX_DTYPE_U8 == DType::U8 as u32);
    assert!(NNX_DTYPE_U16 == DType::U16 as u32);
    assert!(NNX_DTYPE_U32 == DType::U32 as u32);
    assert!(NNX_DTYPE_U64 == DType::U64 as u32);
    assert!(NNX_DTYPE_F16 == DType::F16 as u32);
    assert!(NNX_DTYPE_BF16 == DType::BF16 as u32);
    assert!(NNX_DTYPE_F32 == DType::F32 as u32);
    assert!(NNX_DTYPE_F64 == DType::F64 as u32);
    assert!(NNX_DTYPE_F8_E4M3FN == DType::F8E4M3FN as u32);
    assert!(NNX_DTYPE_F8_E5M2 == DType::F8E5M2 as u32);
};

/// A dense, C-ordered tensor: dtype, shape and bytes. Shared: every
/// `nnx_array *` the library returns as owned holds one reference, given back
/// with `nnx_array_release`. Thread-safe; the library never writes the bytes
/// after creation.
pub struct nnx_array {
    _opaque: [u8; 0],
}

impl ArcHandle for nnx_array {
    type Inner = Array;
}

/// Called exactly once with its `user_data` when the library lets go of
/// caller memory or objects (a borrowed array's buffer, an opaque value, a
/// callback filter's data). It may run on any thread that drops the last
/// reference.
pub type nnx_release_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

pub(crate) fn dtype_from_c(dtype: nnx_dtype) -> FfiResult<DType> {
    match DType::from_code(dtype) {
        Some(d) => Ok(d),
        None => fail!(NNX_ERR_INVALID_ARGUMENT, "unknown dtype {dtype}"),
    }
}

/// Creates an array holding a copy of `nbytes` bytes at `data`.
///
/// - `shape`: borrowed, `ndim` dimensions (NULL allowed when `ndim` is 0, a
///   scalar); each must be >= 0.
/// - `data`: borrowed, read during the call; NULL allowed when `nbytes` is 0.
/// - `nbytes` must equal the dtype's size times the product of the shape.
/// - `out_array`: receives a new reference, owned by the caller (release with
///   `nnx_array_release`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT` (unknown dtype,
/// negative dimension, size overflow, `data` or `shape` running past the end
/// of the address space), `NNX_ERR_SHAPE_MISMATCH`,
/// `NNX_ERR_OUT_OF_MEMORY`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_new(
    dtype: nnx_dtype,
    shape: *const i64,
    ndim: usize,
    data: *const c_void,
    nbytes: usize,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_array, "out_array")?;
        let dtype = dtype_from_c(dtype)?;
        // SAFETY: `shape` holds `ndim` dimensions and `data` `nbytes` bytes by
        // the contract above.
        let (shape, bytes) = unsafe {
            (
                slice(shape, ndim, "shape")?,
                slice(data.cast::<u8>(), nbytes, "data")?,
            )
        };
        let array = Array::new(dtype, shape, Some(bytes))?;
        out.write(nnx_array::into_raw(Arc::new(array)));
        Ok(())
    })
}

/// Creates an array of zeros.
///
/// - `shape`: as for `nnx_array_new`.
/// - `out_array`: receives a new reference, owned by the caller; written on
///   success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_INVALID_ARGUMENT`,
/// `NNX_ERR_OUT_OF_MEMORY`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_zeros(
    dtype: nnx_dtype,
    shape: *const i64,
    ndim: usize,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_array, "out_array")?;
        let dtype = dtype_from_c(dtype)?;
        // SAFETY: `shape` holds `ndim` dimensions by the contract above.
        let shape = unsafe { slice(shape, ndim, "shape") }?;
        out.write(nnx_array::into_raw(Arc::new(Array::new(
            dtype, shape, None,
        )?)));
        Ok(())
    })
}

/// Creates an array over the caller's memory, without copying it.
///
/// - `data`: `nbytes` bytes, lent to the library: they must stay valid (and
///   unchanged, unless you mean to change the array) until `release` is
///   called. NULL allowed when `nbytes` is 0. `data` + `nbytes` past the
///   end of the address space is `NNX_ERR_INVALID_ARGUMENT`.
/// - `writable`: whether `nnx_array_data_mut` may hand out this memory.
/// - `release`: called exactly once, with `user_data`, when the last
///   reference to the array goes; it may run on any thread. May be NULL if
///   the memory outlives every reference by other means.
/// - `out_array`: receives a new reference, owned by the caller; written on
///   success only.
///
/// On failure the library keeps nothing and does not call `release`: the
/// memory stays the caller's.
///
/// Errors: as `nnx_array_new`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_wrap(
    dtype: nnx_dtype,
    shape: *const i64,
    ndim: usize,
    data: *mut c_void,
    nbytes: usize,
    writable: bool,
    release: nnx_release_fn,
    user_data: *mut c_void,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    wrap_memory(
        dtype,
        shape,
        ndim,
        data,
        nbytes,
        Device::CPU,
        writable,
        release,
        user_data,
        out_array,
    )
}

/// The body of `nnx_array_wrap` and `nnx_array_wrap_device`: an array over
/// the caller's memory on `device`, validated before the memory is taken so
/// that a failure never calls `release`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wrap_memory(
    dtype: nnx_dtype,
    shape: *const i64,
    ndim: usize,
    data: *mut c_void,
    nbytes: usize,
    device: Device,
    writable: bool,
    release: nnx_release_fn,
    user_data: *mut c_void,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_array, "out_array")?;
        // SAFETY: `shape` holds `ndim` dimensions by the public functions'
        // contracts.
        let shape = unsafe { slice(shape, ndim, "shape") }?;
        let lent = LentMemory::checked(dtype, shape, data, nbytes)?;
        out.write(nnx_array::into_raw(Arc::new(
            lent.wrap(device, writable, release, user_data),
        )));
        Ok(())
    })
}

/// Caller memory checked to hold an array of `dtype` and `shape`: what
/// `wrap` turns into an array without any further way to fail (so that a
/// failing call has taken no memory and runs no callback).
struct LentMemory<'a> {
    dtype: DType,
    shape: &'a [i64],
    data: *mut c_void,
    nbytes: usize,
}

impl<'a> LentMemory<'a> {
    fn checked(
        dtype: nnx_dtype,
        shape: &'a [i64],
        data: *mut c_void,
        nbytes: usize,
    ) -> FfiResult<LentMemory<'a>> {
        let dtype = dtype_from_c(dtype)?;
        if data.is_null() && nbytes != 0 {
            fail!(NNX_ERR_NULL_ARGUMENT, "argument `data` is NULL");
        }
        let expected = byte_size(dtype, shape)?;
        if expected != nbytes {
            fail!(
                NNX_ERR_SHAPE_MISMATCH,
                "{} array of shape {shape:?} needs {expected} bytes, got {nbytes}",
                dtype.name()
            );
        }
        check_span(data as usize, nbytes, || "argument `data`".to_owned())?;
        Ok(LentMemory {
            dtype,
            shape,
            data,
            nbytes,
        })
    }

    fn wrap(
        self,
        device: Device,
        writable: bool,
        release: nnx_release_fn,
        user_data: *mut c_void,
    ) -> Array {
        let release = release_callback(release, user_data);
        // SAFETY: `data` is valid for `nbytes` bytes (on its device) until
        // `release` runs, by the public functions' contracts.
        let buffer = unsafe {
            Buffer::from_foreign(self.data.cast(), self.nbytes, writable, device, release)
        };
        Array::from_buffer(self.dtype, self.shape, buffer)
            .expect("the size was checked against the shape")
    }
}

/// Creates `count` arrays over the caller's memory in one call: what
/// `count` calls of `nnx_array_wrap` would make, all or none.
///
/// Array `i` has dtype `dtypes[i]`, `ndims[i]` dimensions (taken in turn
/// from `shapes`, which holds every array's dimensions end to end), the
/// `nbytes[i]` bytes at `data[i]` (lent as for `nnx_array_wrap`),
/// writability `writable[i]`, and is released by `release(user_data[i])`.
///
/// - `dtypes`, `ndims`, `data`, `nbytes`, `writable`, `user_data`,
///   `out_arrays`: `count` elements each; NULL allowed when `count` is 0
///   (`user_data` may also be NULL when `release` is: nothing to pass).
/// - `shapes`: the sum of `ndims` elements.
/// - `release`: called exactly once per array, with that array's
///   `user_data[i]`, when its last reference goes; on any thread.
/// - `out_arrays`: receives `count` new references, owned by the caller
///   (release each); written on success only.
///
/// Every array is checked before any memory is taken: on failure the
/// library keeps nothing and calls no `release`, and the message names the
/// array at fault.
///
/// Errors: as `nnx_array_wrap`; `NNX_ERR_INVALID_ARGUMENT` when the sum of
/// `ndims` is too large for an array. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_wrap_many(
    count: usize,
    dtypes: *const nnx_dtype,
    shapes: *const i64,
    ndims: *const usize,
    data: *const *mut c_void,
    nbytes: *const usize,
    writable: *const bool,
    release: nnx_release_fn,
    user_data: *const *mut c_void,
    out_arrays: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        if count == 0 {
            return Ok(()); // every pointer may be NULL
        }
        let out = OutArray::required(out_arrays, count, "out_arrays")?;
        // SAFETY (each): `count` elements by the contract above.
        let dtypes = unsafe { slice(dtypes, count, "dtypes") }?;
        let ndims = unsafe { slice(ndims, count, "ndims") }?;
        let data = unsafe { slice(data, count, "data") }?;
        let nbytes = unsafe { slice(nbytes, count, "nbytes") }?;
        let writable = unsafe { slice(writable, count, "writable") }?;
        let user_data = match (release, user_data.is_null()) {
            (None, true) => None,
            // SAFETY: `count` elements by the contract above.
            _ => Some(unsafe { slice(user_data, count, "user_data") }?),
        };
        let total = ndims.iter().try_fold(0usize, |sum, &n| sum.checked_add(n));
        let Some(total) = total else {
            fail!(NNX_ERR_INVALID_ARGUMENT, "the sum of `ndims` overflows");
        };
        // SAFETY: `shapes` holds the sum of `ndims` elements by the contract.
        let shapes = unsafe { slice(shapes, total, "shapes") }?;
        let mut lent = Vec::with_capacity(count);
        let mut offset = 0;
        for i in 0..count {
            let shape = &shapes[offset..offset + ndims[i]];
            offset += ndims[i];
            let checked = LentMemory::checked(dtypes[i], shape, data[i], nbytes[i]);
            lent.push(checked.map_err(|e| {
                FfiError::new(e.status, format!("array {i} of {count}: {}", e.message))
            })?);
        }
        for (i, memory) in lent.into_iter().enumerate() {
            let token = user_data.map_or(std::ptr::null_mut(), |u| u[i]);
            let array = memory.wrap(Device::CPU, writable[i], release, token);
            out.write(i, nnx_array::into_raw(Arc::new(array)));
        }
        Ok(())
    })
}

/// A caller's release callback and its data as the core's `Release`, which
/// the core runs exactly once (when it lets go) or drops unrun (when the
/// call fails before taking it).
pub(crate) fn release_callback(release: nnx_release_fn, user_data: *mut c_void) -> Option<Release> {
    release.map(|f| {
        let user_data = SendPtr(user_data);
        Box::new(move || {
            let user_data = user_data;
            // SAFETY: the caller's callback, called once with its data.
            unsafe { f(user_data.0) }
        }) as Release
    })
}

/// A caller's pointer carried to the thread that runs a release callback.
struct SendPtr(*mut c_void);
// SAFETY: the pointer is only handed back to the caller's own callback, which
// the documentation says may run on any thread.
unsafe impl Send for SendPtr {}

/// Writes the array's dtype to `*out_dtype`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_dtype(
    array: *const nnx_array,
    out_dtype: *mut nnx_dtype,
) -> nnx_status {
    read_into(array, "array", out_dtype, "out_dtype", |a| {
        Ok(a.dtype().code())
    })
}

/// Writes the number of dimensions to `*out_ndim` (0 for a scalar).
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_ndim(array: *const nnx_array, out_ndim: *mut usize) -> nnx_status {
    read_into(array, "array", out_ndim, "out_ndim", |a| Ok(a.ndim()))
}

/// Writes a pointer to the array's `ndim` dimensions to `*out_shape`.
///
/// - `out_shape`: borrowed from the array, valid while the caller holds a
///   reference to it; do not free. May point to no elements for a scalar.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_shape(
    array: *const nnx_array,
    out_shape: *mut *const i64,
) -> nnx_status {
    read_into(array, "array", out_shape, "out_shape", |a| {
        Ok(a.shape().as_ptr())
    })
}

/// Writes the number of bytes of data to `*out_nbytes`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_nbytes(array: *const nnx_array, out_nbytes: *mut usize) -> nnx_status {
    read_into(array, "array", out_nbytes, "out_nbytes", |a| Ok(a.nbytes()))
}

/// Writes a pointer to the array's bytes to `*out_data` (C order, native
/// byte order).
///
/// - `out_data`: borrowed, valid while the caller holds a reference to the
///   array; read-only. Library-allocated data is 64-byte aligned.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_data(
    array: *const nnx_array,
    out_data: *mut *const c_void,
) -> nnx_status {
    read_into(array, "array", out_data, "out_data", |a| {
        Ok(a.buffer().as_ptr().cast())
    })
}

/// Writes a pointer to the array's bytes, for writing in place, to
/// `*out_data`. Every variable and state holding this array sees the change.
///
/// - `out_data`: borrowed, valid while the caller holds a reference to the
///   array. Concurrent writes and reads of the bytes are the caller's to
///   synchronise, as with any shared buffer.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`, `NNX_ERR_READ_ONLY` (an array made with
/// `nnx_array_wrap` and `writable` false). Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_data_mut(
    array: *const nnx_array,
    out_data: *mut *mut c_void,
) -> nnx_status {
    read_into(array, "array", out_data, "out_data", |a| {
        match a.buffer().as_mut_ptr() {
            Some(ptr) => Ok(ptr.cast()),
            None => fail!(NNX_ERR_READ_ONLY, "this array's memory was lent read-only"),
        }
    })
}

/// Writes to `*out_writable` whether `nnx_array_data_mut` would succeed.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_is_writable(
    array: *const nnx_array,
    out_writable: *mut bool,
) -> nnx_status {
    read_into(array, "array", out_writable, "out_writable", |a| {
        Ok(a.buffer().is_writable())
    })
}

/// Takes one more reference to the array; give it back with
/// `nnx_array_release`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_retain(array: *const nnx_array) -> nnx_status {
    boundary(|| {
        // SAFETY: `array` is a handle argument; the new count is the caller's.
        std::mem::forget(unsafe { nnx_array::to_arc(array, "array") }?);
        Ok(())
    })
}

/// Gives back one reference to the array. The last one frees it (and calls a
/// borrowed buffer's release callback). NULL is a no-op.
///
/// Releasing more references than the caller owns is undefined behaviour the
/// library cannot detect. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_release(array: *const nnx_array) {
    // A release callback could panic only by a bug; keep it inside the boundary.
    boundary(|| {
        // SAFETY: the caller gives back a reference it owns.
        unsafe { nnx_array::release(array) };
        Ok(())
    });
}

/// Borrows an optional array argument (NULL gives `None`).
///
/// # Safety
/// A non-null `array` must be a live handle.
pub(crate) unsafe fn optional_array(array: *const nnx_array) -> FfiResult<Option<Arc<Array>>> {
    if array.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null live handle by the contract above.
    Ok(Some(unsafe { nnx_array::to_arc(array, "array") }?))
}

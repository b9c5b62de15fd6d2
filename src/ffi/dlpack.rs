//! DLPack (version 1.1): arrays out to and in from other frameworks, without
//! copying; and array devices.
//!
//! The header names the DLPack structs only as incomplete types (`struct
//! DLManagedTensorVersioned *`), so callers include the real `dlpack.h`
//! beside it without clashing definitions. The layout is defined here, as
//! `dlpack.h` 1.1 does, for the library's own use.

#![allow(non_snake_case)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::array::{nnx_array, nnx_dtype, nnx_release_fn, release_callback, wrap_memory};
use super::error::nnx_status;
use super::{boundary, fail, slice, ArcHandle, FfiResult, Out};
use crate::array::Array;
use crate::buffer::{Buffer, Device, Release};
use crate::io::dlpack::{c_strides, check_tensor, to_dl, DlDtype, Extent};

/// `DLPackVersion`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

/// `DLDevice`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

/// `DLDataType`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// `DLTensor`.
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

/// `DLManagedTensorVersioned` (DLPack 1.0 and later).
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

/// `DLManagedTensor`, the legacy (unversioned) struct.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// The DLPack version this library produces and reads.
pub const DLPACK_VERSION: DLPackVersion = DLPackVersion { major: 1, minor: 1 };
/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
pub const DLPACK_FLAG_READ_ONLY: u64 = 1;
/// `DLPACK_FLAG_BITMASK_IS_COPIED`.
pub const DLPACK_FLAG_IS_COPIED: u64 = 2;

/// A tensor handed out, with what keeps its memory and shape alive. The
/// DLPack struct comes first, so a pointer to it is a pointer to this.
#[repr(C)]
struct Exported<T> {
    managed: T,
    array: Arc<Array>,
    shape: Box<[i64]>,
    strides: Box<[i64]>,
}

fn dl_tensor_of(array: &Array, shape: &mut [i64], strides: &mut [i64]) -> FfiResult<DLTensor> {
    let Ok(ndim) = i32::try_from(array.ndim()) else {
        fail!(
            NNX_ERR_INVALID_ARGUMENT,
            "{} dimensions are more than DLPack can describe",
            array.ndim()
        );
    };
    let DlDtype { code, bits, lanes } = to_dl(array.dtype());
    let device = array.device();
    Ok(DLTensor {
        data: array.buffer().as_ptr() as *mut c_void,
        device: DLDevice {
            device_type: device.kind,
            device_id: device.id,
        },
        ndim,
        dtype: DLDataType { code, bits, lanes },
        shape: shape.as_mut_ptr(),
        strides: strides.as_mut_ptr(),
        byte_offset: 0,
    })
}

fn export<T>(array: Arc<Array>, make: impl FnOnce(DLTensor) -> T) -> FfiResult<*mut T> {
    let mut shape: Box<[i64]> = array.shape().into();
    let mut strides: Box<[i64]> = c_strides(array.shape()).into();
    let tensor = dl_tensor_of(&array, &mut shape, &mut strides)?;
    let boxed = Box::new(Exported {
        managed: make(tensor),
        array,
        shape,
        strides,
    });
    // The boxed slices did not move with the box: their pointers hold.
    Ok(Box::into_raw(boxed).cast::<T>())
}

/// Frees what `export` made. Never unwinds into the caller.
///
/// # Safety
/// `ptr` is NULL or came from `export::<T>` and was not freed before.
unsafe fn delete_exported<T>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by `Box::into_raw` in `export`, freed once.
        drop(unsafe { Box::from_raw(ptr.cast::<Exported<T>>()) });
    }));
}

unsafe extern "C" fn delete_versioned(tensor: *mut DLManagedTensorVersioned) {
    // SAFETY: the deleter of tensors made by `nnx_array_to_dlpack`.
    unsafe { delete_exported(tensor) }
}

unsafe extern "C" fn delete_legacy(tensor: *mut DLManagedTensor) {
    // SAFETY: the deleter of tensors made by `nnx_array_to_dlpack_legacy`.
    unsafe { delete_exported(tensor) }
}

/// Exports an array as a versioned DLPack tensor (`DLManagedTensorVersioned`,
/// DLPack 1.1), without copying: the tensor's data is the array's memory
/// (on whatever device the array lives), its shape and compact row-major
/// strides are its own, and it holds a reference to the array until its
/// deleter is called. Its flags carry `DLPACK_FLAG_BITMASK_READ_ONLY` when
/// the array is not writable (see `nnx_array_is_writable`).
///
/// - `array`: borrowed for the call.
/// - `out_tensor`: receives a new tensor owned by the caller: hand it to a
///   DLPack consumer, or call `(*out_tensor)->deleter(*out_tensor)` exactly
///   once (from any thread) when done. Written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_to_dlpack(
    array: *const nnx_array,
    out_tensor: *mut *mut DLManagedTensorVersioned,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_tensor, "out_tensor")?;
        // SAFETY: `array` is a handle argument; the tensor keeps the count.
        let array = unsafe { nnx_array::to_arc(array, "array") }?;
        let flags = if array.buffer().is_writable() {
            0
        } else {
            DLPACK_FLAG_READ_ONLY
        };
        let ptr = export(array, |dl_tensor| DLManagedTensorVersioned {
            version: DLPACK_VERSION,
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(delete_versioned),
            flags,
            dl_tensor,
        })?;
        // SAFETY: just made; `manager_ctx` points to the whole export.
        unsafe { (*ptr).manager_ctx = ptr.cast() };
        out.write(ptr);
        Ok(())
    })
}

/// Exports an array as a legacy DLPack tensor (`DLManagedTensor`), for
/// consumers that predate DLPack 1.0. As `nnx_array_to_dlpack`, except that
/// the legacy struct cannot say that memory is read-only: export only
/// arrays you mean to share writable, or use the versioned struct.
///
/// - `array`: borrowed for the call.
/// - `out_tensor`: receives a new tensor owned by the caller (call its
///   deleter exactly once, or hand it to a consumer); written on success
///   only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_to_dlpack_legacy(
    array: *const nnx_array,
    out_tensor: *mut *mut DLManagedTensor,
) -> nnx_status {
    boundary(|| {
        let out = Out::new(out_tensor, "out_tensor")?;
        // SAFETY: `array` is a handle argument; the tensor keeps the count.
        let array = unsafe { nnx_array::to_arc(array, "array") }?;
        let ptr = export(array, |dl_tensor| DLManagedTensor {
            dl_tensor,
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(delete_legacy),
        })?;
        // SAFETY: just made; `manager_ctx` points to the whole export.
        unsafe { (*ptr).manager_ctx = ptr.cast() };
        out.write(ptr);
        Ok(())
    })
}

/// A caller's pointer carried to the thread that runs a deleter.
struct SendPtr<T>(*mut T);
// SAFETY: DLPack deleters may be called from any thread.
unsafe impl<T> Send for SendPtr<T> {}

/// An array over a DLPack tensor's memory. `release` hands the tensor back
/// (calls its deleter) when the array goes, and also when this fails.
///
/// `release` runs on failure too; `then` runs after it only when the array
/// made goes.
///
/// # Safety
/// `tensor` must be a valid `DLTensor` whose memory stays valid until
/// `release` runs.
unsafe fn import(
    tensor: &DLTensor,
    writable: bool,
    release: Release,
    then: Option<Release>,
) -> FfiResult<Array> {
    let checked = (|| -> FfiResult<(Extent, Vec<i64>)> {
        let Ok(ndim) = usize::try_from(tensor.ndim) else {
            fail!(NNX_ERR_FORMAT, "DLPack tensor with ndim {}", tensor.ndim);
        };
        // SAFETY: a valid DLTensor has `ndim` dimensions at `shape`, and
        // `ndim` strides at `strides` unless that is NULL.
        let (shape, strides) = unsafe {
            let shape = slice(tensor.shape, ndim, "dl_tensor.shape")?;
            let strides = if tensor.strides.is_null() {
                None
            } else {
                Some(slice(tensor.strides, ndim, "dl_tensor.strides")?)
            };
            (shape, strides)
        };
        let dtype = DlDtype {
            code: tensor.dtype.code,
            bits: tensor.dtype.bits,
            lanes: tensor.dtype.lanes,
        };
        let extent = check_tensor(
            tensor.data as usize,
            dtype,
            shape,
            strides,
            tensor.byte_offset,
        )?;
        Ok((extent, shape.to_vec()))
    })();
    let (extent, shape) = match checked {
        Ok(parts) => parts,
        Err(e) => {
            release();
            return Err(e);
        }
    };
    let device = Device {
        kind: tensor.device.device_type,
        id: tensor.device.device_id,
    };
    // `check_tensor` saw that `data + offset + nbytes` does not wrap.
    let data = (tensor.data as *mut u8).wrapping_add(extent.offset);
    let release: Release = match then {
        Some(then) => Box::new(move || {
            release();
            then();
        }),
        None => release,
    };
    // SAFETY: the tensor's memory stays valid until `release` runs, by the
    // contract above; memory off the CPU is never read.
    let buffer =
        unsafe { Buffer::from_foreign(data, extent.nbytes, writable, device, Some(release)) };
    Ok(Array::from_buffer(extent.dtype, &shape, buffer)?)
}

/// What the two managed-tensor structs share for an import.
trait Managed {
    fn deleter(&self) -> Option<unsafe extern "C" fn(*mut Self)>;
    fn dl_tensor(&self) -> &DLTensor;
    /// Checks what only this struct carries; gives whether the memory may be
    /// written.
    fn writable(&self) -> FfiResult<bool>;
}

impl Managed for DLManagedTensorVersioned {
    fn deleter(&self) -> Option<unsafe extern "C" fn(*mut Self)> {
        self.deleter
    }

    fn dl_tensor(&self) -> &DLTensor {
        &self.dl_tensor
    }

    fn writable(&self) -> FfiResult<bool> {
        if self.version.major != DLPACK_VERSION.major {
            fail!(
                NNX_ERR_FORMAT,
                "DLPack tensor of version {}.{}: this library reads major version {}",
                self.version.major,
                self.version.minor,
                DLPACK_VERSION.major
            );
        }
        Ok(self.flags & DLPACK_FLAG_READ_ONLY == 0)
    }
}

/// The legacy struct has no read-only flag: its memory is imported
/// read-only, as numpy does.
impl Managed for DLManagedTensor {
    fn deleter(&self) -> Option<unsafe extern "C" fn(*mut Self)> {
        self.deleter
    }

    fn dl_tensor(&self) -> &DLTensor {
        &self.dl_tensor
    }

    fn writable(&self) -> FfiResult<bool> {
        Ok(false)
    }
}

/// The body of `nnx_array_from_dlpack`, its legacy twin and their
/// `_notify` forms: takes ownership of `tensor` in every case, calling its
/// deleter on failure; `then` runs after the deleter when the array goes
/// (never on failure).
fn import_managed<T: Managed + 'static>(
    tensor: *mut T,
    then: (nnx_release_fn, *mut c_void),
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    boundary(|| {
        if tensor.is_null() {
            fail!(NNX_ERR_NULL_ARGUMENT, "argument `tensor` is NULL");
        }
        let owned = SendPtr(tensor);
        let release: Release = Box::new(move || {
            let owned = owned;
            // SAFETY: the producer's deleter, called once, as DLPack says.
            unsafe {
                if let Some(deleter) = (*owned.0).deleter() {
                    deleter(owned.0);
                }
            }
        });
        // SAFETY: a non-null tensor given by the caller, valid until its
        // deleter runs.
        let managed = unsafe { &*tensor };
        let checked =
            Out::new(out_array, "out_array").and_then(|out| Ok((out, managed.writable()?)));
        let (out, writable) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                release();
                return Err(e);
            }
        };
        // SAFETY: the tensor's memory is valid until its deleter runs.
        let then = release_callback(then.0, then.1);
        let array = unsafe { import(managed.dl_tensor(), writable, release, then) }?;
        out.write(nnx_array::into_raw(Arc::new(array)));
        Ok(())
    })
}

/// Imports a versioned DLPack tensor (`DLManagedTensorVersioned`) as an
/// array, without copying: the array's memory is the tensor's (on its
/// device: memory off the CPU is never read by the library, and operations
/// that need the bytes fail), and the tensor's deleter is called when the
/// last reference to the array goes, from whichever thread drops it.
///
/// The tensor must be of DLPack major version 1, of a dtype arrays can hold
/// (bool, int/uint 8-64, float 16/32/64, bfloat16, float8 e4m3fn and e5m2;
/// one lane), and compact row-major (NULL strides, or strides that say so).
/// `byte_offset` is honoured. The array is writable unless the tensor's
/// flags carry `DLPACK_FLAG_BITMASK_READ_ONLY`.
///
/// Every field is checked before the library keeps anything, on any
/// device: a tensor whose memory, from `data` over `byte_offset` to the
/// last byte of its elements, would run past the end of the address space
/// or be larger than `PTRDIFF_MAX` bytes is refused, as is one whose
/// dimensions times its element size overflow, and `shape` or `strides`
/// arrays that would run past the end of the address space. The library
/// cannot check that the memory is really there: that stays the
/// producer's promise.
///
/// - `tensor`: ownership passes to the library in every case: on failure
///   too, its deleter has been called when this returns (as DLPack asks of a
///   consumer that cannot take a tensor). NULL is `NNX_ERR_NULL_ARGUMENT`.
/// - `out_array`: receives a new reference, owned by the caller (release
///   with `nnx_array_release`); written on success only.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT` (if `out_array` is NULL, or `shape` is
/// NULL with `ndim` > 0, the tensor is still consumed); `NNX_ERR_FORMAT`
/// (another major version, a dtype arrays cannot hold, several lanes,
/// strides that are not compact row-major, a negative `ndim` or dimension,
/// NULL data for a non-empty tensor); `NNX_ERR_INVALID_ARGUMENT` (a byte
/// size that overflows, a `byte_offset` that wraps or passes the limits
/// above, `shape` or `strides` past the end of the address space).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_from_dlpack(
    tensor: *mut DLManagedTensorVersioned,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    import_managed(tensor, (None, std::ptr::null_mut()), out_array)
}

/// Imports a legacy DLPack tensor (`DLManagedTensor`) as an array, without
/// copying. As `nnx_array_from_dlpack`, except that the legacy struct has
/// no version and no read-only flag: the array is read-only (as numpy
/// imports legacy tensors), so `nnx_array_data_mut` refuses it.
///
/// - `tensor`: ownership passes to the library in every case (on failure
///   its deleter has been called when this returns).
/// - `out_array`: receives a new reference, owned by the caller; written on
///   success only.
///
/// Errors: as `nnx_array_from_dlpack`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_from_dlpack_legacy(
    tensor: *mut DLManagedTensor,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    import_managed(tensor, (None, std::ptr::null_mut()), out_array)
}

/// As `nnx_array_from_dlpack`, and tells the caller when the library lets
/// go of the tensor: once the last reference to the array goes and the
/// tensor's deleter has returned, `release(user_data)` is called, once,
/// from whichever thread dropped the array. For a caller that must know
/// when a producer's tensor is no longer used but whose deleter is not its
/// own (a language binding tracking the object the tensor came from): one
/// call instead of an import and a wrap with a release callback.
///
/// - `tensor`: ownership passes to the library in every case (on failure
///   its deleter has been called when this returns).
/// - `release`: may be NULL (then this is `nnx_array_from_dlpack`); on
///   failure it is not called: the library keeps nothing of it.
/// - `user_data`: passed to `release`, never read.
/// - `out_array`: receives a new reference, owned by the caller; written on
///   success only.
///
/// Errors: as `nnx_array_from_dlpack`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_from_dlpack_notify(
    tensor: *mut DLManagedTensorVersioned,
    release: nnx_release_fn,
    user_data: *mut c_void,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    import_managed(tensor, (release, user_data), out_array)
}

/// As `nnx_array_from_dlpack_notify`, for a legacy tensor
/// (`DLManagedTensor`); the array is read-only, as with
/// `nnx_array_from_dlpack_legacy`.
///
/// Errors: as `nnx_array_from_dlpack`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_from_dlpack_legacy_notify(
    tensor: *mut DLManagedTensor,
    release: nnx_release_fn,
    user_data: *mut c_void,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    import_managed(tensor, (release, user_data), out_array)
}

/// Writes where the array's bytes live, as a DLPack device: type
/// (`kDLCPU` = 1, `kDLCUDA` = 2, `kDLCUDAHost` = 3, ...) and id. Arrays the
/// library makes are on the CPU (1, 0); others come from
/// `nnx_array_wrap_device` and `nnx_array_from_dlpack`.
///
/// Errors: `NNX_ERR_NULL_ARGUMENT`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_device(
    array: *const nnx_array,
    out_device_type: *mut i32,
    out_device_id: *mut i32,
) -> nnx_status {
    boundary(|| {
        let out_type = Out::new(out_device_type, "out_device_type")?;
        let out_id = Out::new(out_device_id, "out_device_id")?;
        // SAFETY: `array` is a handle argument.
        let device = unsafe { nnx_array::borrow(array, "array") }?.device();
        out_type.write(device.kind);
        out_id.write(device.id);
        Ok(())
    })
}

/// Creates an array over memory of any device (a GPU engine's device
/// pointer, say), without copying, as `nnx_array_wrap` does for CPU memory.
/// The library never reads or writes memory that is not on the CPU
/// (`device_type` other than 1): such arrays can be held in states,
/// filtered, split, merged and exported through DLPack, but operations that
/// need the bytes fail (`nnx_state_deep_copy`, `nnx_safetensors_save`) and
/// `nnx_state_to_string` shows `<device TYPE:ID>` in place of the values.
/// `nnx_array_data` gives back the device pointer.
///
/// - `data`: `nbytes` bytes on the device, lent to the library until
///   `release` is called; NULL allowed when `nbytes` is 0. As for CPU
///   memory, `data` + `nbytes` must not run past the end of the address
///   space (`NNX_ERR_INVALID_ARGUMENT`).
/// - `device_type`, `device_id`: a DLPack device (`kDLCPU` = 1 is CPU
///   memory, then as `nnx_array_wrap`).
/// - `writable`, `release`, `user_data`, `out_array`: as `nnx_array_wrap`.
///
/// On failure the library keeps nothing and does not call `release`.
///
/// Errors: as `nnx_array_wrap`. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_array_wrap_device(
    dtype: nnx_dtype,
    shape: *const i64,
    ndim: usize,
    data: *mut c_void,
    nbytes: usize,
    device_type: i32,
    device_id: i32,
    writable: bool,
    release: nnx_release_fn,
    user_data: *mut c_void,
    out_array: *mut *mut nnx_array,
) -> nnx_status {
    let device = Device {
        kind: device_type,
        id: device_id,
    };
    wrap_memory(
        dtype, shape, ndim, data, nbytes, device, writable, release, user_data, out_array,
    )
}

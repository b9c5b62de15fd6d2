//! The C boundary. Every `extern "C"` function has the same shape:
//! run inside `boundary` (panics become `NNX_ERR_PANIC`), check pointer
//! arguments (NULL becomes `NNX_ERR_NULL_ARGUMENT`), convert arguments, call
//! the core, and write out-pointers only on success. All `unsafe` of the C
//! layer is in the small helpers of this file and the handle conversions,
//! each with the reason it holds.
//!
//! Handles are opaque. States, flats and filters are owned boxes
//! (`_new`/`_free`); variables and arrays are shared `Arc`s
//! (`_retain`/`_release`).

#![allow(non_camel_case_types)]
// The extern functions are the C ABI: C callers cannot see `unsafe`, and
// each function's pointer contract is stated in the header. Rust callers use
// the core modules instead.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod array;
pub mod dlpack;
pub mod error;
pub mod filter;
pub mod filter_parse;
pub mod flat;
pub mod io;
pub mod key;
pub mod kind;
pub mod meta;
pub mod state;
pub mod types;
pub mod variable;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::buffer::check_span;
use crate::error::{Error, ErrorKind};
use error::{nnx_status, set_last_error};

/// A failure at the boundary: a status and a message.
pub(crate) struct FfiError {
    status: nnx_status,
    message: String,
}

impl FfiError {
    pub(crate) fn new(status: nnx_status, message: impl Into<String>) -> FfiError {
        FfiError {
            status,
            message: message.into(),
        }
    }

    fn null(name: &str) -> FfiError {
        FfiError::new(
            nnx_status::NNX_ERR_NULL_ARGUMENT,
            format!("argument `{name}` is NULL"),
        )
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> FfiError {
        let status = match e.kind() {
            ErrorKind::InvalidArgument => nnx_status::NNX_ERR_INVALID_ARGUMENT,
            ErrorKind::InvalidUtf8 => nnx_status::NNX_ERR_INVALID_UTF8,
            ErrorKind::KeyNotFound => nnx_status::NNX_ERR_KEY_NOT_FOUND,
            ErrorKind::WrongKind => nnx_status::NNX_ERR_WRONG_KIND,
            ErrorKind::PathThroughLeaf => nnx_status::NNX_ERR_PATH_THROUGH_LEAF,
            ErrorKind::ShapeMismatch => nnx_status::NNX_ERR_SHAPE_MISMATCH,
            ErrorKind::UnknownType => nnx_status::NNX_ERR_UNKNOWN_TYPE,
            ErrorKind::TypeConflict => nnx_status::NNX_ERR_TYPE_CONFLICT,
            ErrorKind::NonExhaustive => nnx_status::NNX_ERR_NON_EXHAUSTIVE,
            ErrorKind::FilterOrder => nnx_status::NNX_ERR_FILTER_ORDER,
            ErrorKind::IndexOutOfRange => nnx_status::NNX_ERR_INDEX_OUT_OF_RANGE,
            ErrorKind::Callback => nnx_status::NNX_ERR_CALLBACK,
            ErrorKind::ReadOnly => nnx_status::NNX_ERR_READ_ONLY,
            ErrorKind::OutOfMemory => nnx_status::NNX_ERR_OUT_OF_MEMORY,
            ErrorKind::Format => nnx_status::NNX_ERR_FORMAT,
            ErrorKind::Io => nnx_status::NNX_ERR_IO,
            ErrorKind::TooDeep => nnx_status::NNX_ERR_TOO_DEEP,
        };
        FfiError::new(status, e.message())
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, FfiError>;

/// Runs the body of an extern function: catches panics, records the message
/// of a failure for `nnx_last_error_message`, returns the status.
pub(crate) fn boundary(body: impl FnOnce() -> FfiResult) -> nnx_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => nnx_status::NNX_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_owned());
            set_last_error(&format!("internal error (a Rust panic was caught): {what}"));
            nnx_status::NNX_ERR_PANIC
        }
    }
}

/// Builds an `Err` with a status and a formatted message.
macro_rules! fail {
    ($status:ident, $($arg:tt)+) => {
        return Err($crate::ffi::FfiError::new(
            $crate::ffi::error::nnx_status::$status,
            format!($($arg)+),
        ))
    };
}
pub(crate) use fail;

/// Borrows a required pointer argument for the duration of the call.
///
/// # Safety
/// A non-null `ptr` must point to a valid `T` for the call (the C caller's
/// side of every function's contract).
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: non-null and valid by the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::null(name))
}

/// Borrows a caller array of `len` required handles; a NULL element is
/// named `name[i]` (the name is formatted only then).
///
/// # Safety
/// A non-null `ptr` must point to `len` pointers, each NULL or valid for
/// the call.
pub(crate) unsafe fn handles<'a, T>(
    ptr: *const *mut T,
    len: usize,
    name: &str,
) -> FfiResult<Vec<&'a T>> {
    // SAFETY: by the contract above.
    let pointers = unsafe { slice(ptr, len, name) }?;
    pointers
        .iter()
        .enumerate()
        // SAFETY: each element is NULL or valid for the call.
        .map(|(i, p)| unsafe { p.as_ref() }.ok_or_else(|| FfiError::null(&format!("{name}[{i}]"))))
        .collect()
}

/// An out-pointer checked up front and written only once the call succeeds.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    pub(crate) fn new(ptr: *mut T, name: &str) -> FfiResult<Out<T>> {
        if ptr.is_null() {
            return Err(FfiError::null(name));
        }
        Ok(Out(ptr))
    }

    pub(crate) fn write(self, value: T) {
        // SAFETY: checked non-null; the caller's contract makes it writable.
        // `write` does not drop whatever garbage was there.
        unsafe { self.0.write(value) }
    }
}

/// Borrows `len` elements. NULL is accepted only for `len == 0`.
///
/// # Safety
/// A non-null `ptr` must point to `len` valid elements for the call.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> FfiResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_array(ptr, len, name)?;
    // SAFETY: non-null, `len` elements by the caller's contract, size checked.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Checks an array argument of `len` elements: not NULL, not larger than
/// an allocation can be, and not running past the end of the address space.
pub(crate) fn check_array<T>(ptr: *const T, len: usize, name: &str) -> FfiResult<()> {
    if ptr.is_null() {
        return Err(FfiError::null(name));
    }
    let Some(nbytes) = len
        .checked_mul(std::mem::size_of::<T>())
        .filter(|n| *n <= isize::MAX as usize)
    else {
        fail!(
            NNX_ERR_INVALID_ARGUMENT,
            "argument `{name}`: length {len} is too large"
        );
    };
    Ok(check_span(ptr as usize, nbytes, || {
        format!("argument `{name}`")
    })?)
}

/// An optional caller array of `len` elements that a bulk reader fills. It
/// is written through its raw pointer, element by element, so that two
/// output arrays the caller happens to overlap are never two live `&mut`.
pub(crate) struct OutArray<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> OutArray<T> {
    /// NULL gives `None` (the caller does not want this output).
    pub(crate) fn optional(ptr: *mut T, len: usize, name: &str) -> FfiResult<Option<OutArray<T>>> {
        if ptr.is_null() {
            return Ok(None);
        }
        OutArray::required(ptr, len, name).map(Some)
    }

    pub(crate) fn required(ptr: *mut T, len: usize, name: &str) -> FfiResult<OutArray<T>> {
        check_array(ptr.cast_const(), len, name)?;
        Ok(OutArray { ptr, len })
    }

    pub(crate) fn write(&self, index: usize, value: T) {
        assert!(index < self.len, "bulk output index out of its array");
        // SAFETY: in bounds (checked above) of an array of `len` writable
        // elements, by the caller's contract; `write` drops nothing.
        unsafe { self.ptr.add(index).write(value) }
    }
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// A non-null `ptr` must point to a NUL-terminated string valid for the call.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        FfiError::new(
            nnx_status::NNX_ERR_INVALID_UTF8,
            format!("argument `{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// An owned C string for the caller (freed with `nnx_string_free`).
pub(crate) fn owned_c_string(text: &str) -> FfiResult<*mut c_char> {
    match std::ffi::CString::new(text) {
        Ok(s) => Ok(s.into_raw()),
        Err(_) => fail!(
            NNX_ERR_INVALID_ARGUMENT,
            "the text holds a NUL byte and cannot be returned as a C string"
        ),
    }
}

/// Moves a value into a box handle for C.
pub(crate) fn box_into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a box handle; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or came from [`box_into_raw`] and was not freed before.
pub(crate) unsafe fn box_free<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: from `Box::into_raw`, freed once, by the contract above.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// The body of a getter on a shared handle: borrows `handle`, writes what
/// `read` gives to `out` (only on success).
pub(crate) fn read_into<H: ArcHandle, T>(
    handle: *const H,
    handle_name: &str,
    out: *mut T,
    out_name: &str,
    read: impl FnOnce(&H::Inner) -> FfiResult<T>,
) -> error::nnx_status {
    boundary(|| {
        let out = Out::new(out, out_name)?;
        // SAFETY: `handle` is a handle argument of the public getter.
        let inner = unsafe { H::borrow(handle, handle_name) }?;
        out.write(read(inner)?);
        Ok(())
    })
}

/// A C handle that stands for an `Arc<Inner>`: the handle pointer is the
/// `Arc`'s data pointer, so retain and release are the `Arc`'s counts.
pub(crate) trait ArcHandle: Sized {
    type Inner;

    fn into_raw(arc: Arc<Self::Inner>) -> *mut Self {
        Arc::into_raw(arc) as *mut Self
    }

    /// The handle of `arc`'s object: a new reference the caller owns with
    /// `retain`, else one borrowed for as long as `arc` lives.
    fn handle(arc: &Arc<Self::Inner>, retain: bool) -> *mut Self {
        if retain {
            Self::into_raw(Arc::clone(arc))
        } else {
            Arc::as_ptr(arc).cast_mut().cast()
        }
    }

    /// Borrows the object behind a handle for the call.
    ///
    /// # Safety
    /// A non-null `ptr` must be a live handle of this type.
    unsafe fn borrow<'a>(ptr: *const Self, name: &str) -> FfiResult<&'a Self::Inner> {
        if ptr.is_null() {
            return Err(FfiError::null(name));
        }
        // SAFETY: a live handle is an `Arc<Inner>` data pointer.
        Ok(unsafe { &*(ptr as *const Self::Inner) })
    }

    /// A new counted reference to the object behind a handle.
    ///
    /// # Safety
    /// A non-null `ptr` must be a live handle of this type.
    unsafe fn to_arc(ptr: *const Self, name: &str) -> FfiResult<Arc<Self::Inner>> {
        if ptr.is_null() {
            return Err(FfiError::null(name));
        }
        let inner = ptr as *const Self::Inner;
        // SAFETY: a live handle holds one count, so the object is alive while
        // we add ours.
        unsafe {
            Arc::increment_strong_count(inner);
            Ok(Arc::from_raw(inner))
        }
    }

    /// Gives back the count a handle holds; NULL is a no-op.
    ///
    /// # Safety
    /// `ptr` is NULL or a handle whose count the caller owns.
    unsafe fn release(ptr: *const Self) {
        if !ptr.is_null() {
            // SAFETY: the caller gives up one count it owns.
            unsafe { Arc::decrement_strong_count(ptr as *const Self::Inner) }
        }
    }
}

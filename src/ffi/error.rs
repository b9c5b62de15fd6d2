//! Status codes, the thread-local error message, version and strings.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

/// The result of every fallible function. Values are fixed and never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum nnx_status {
    /// Success.
    NNX_OK = 0,
    /// A required pointer argument was NULL.
    NNX_ERR_NULL_ARGUMENT = 1,
    /// An argument is out of its domain: an unknown dtype or key kind, a
    /// negative dimension, a byte size that overflows, an empty path
    /// component, zero filters, an empty type name.
    NNX_ERR_INVALID_ARGUMENT = 2,
    /// A string argument or key is not valid UTF-8.
    NNX_ERR_INVALID_UTF8 = 3,
    /// Nothing at the path, or no such metadata entry or type name.
    NNX_ERR_KEY_NOT_FOUND = 4,
    /// Something is at the path, but of another kind than asked for
    /// (a variable where an array was asked, a str metadata read as int, ...).
    NNX_ERR_WRONG_KIND = 5,
    /// A path runs through a leaf where a nested state was needed.
    NNX_ERR_PATH_THROUGH_LEAF = 6,
    /// An array's dtype, shape and byte count disagree.
    NNX_ERR_SHAPE_MISMATCH = 7,
    /// A variable type id that is not registered.
    NNX_ERR_UNKNOWN_TYPE = 8,
    /// A type name is already registered under another parent.
    NNX_ERR_TYPE_CONFLICT = 9,
    /// `nnx_state_split` left leaves that no filter matched.
    NNX_ERR_NON_EXHAUSTIVE = 10,
    /// An Everything filter stands before a filter that is not Everything.
    NNX_ERR_FILTER_ORDER = 11,
    /// An index past the end.
    NNX_ERR_INDEX_OUT_OF_RANGE = 12,
    /// A filter callback returned a value other than 0 or 1.
    NNX_ERR_CALLBACK = 13,
    /// Mutable access to memory that was lent read-only.
    NNX_ERR_READ_ONLY = 14,
    /// Memory for an array could not be allocated (the process is not
    /// aborted).
    NNX_ERR_OUT_OF_MEMORY = 15,
    /// A malformed file or exchanged tensor: a safetensors file or index
    /// that breaks the format's rules (truncated, overlapping offsets, a
    /// dtype/shape/byte-count mismatch, invalid JSON or UTF-8, duplicate
    /// names, ...), or a DLPack tensor the library cannot take. The message
    /// names the problem.
    NNX_ERR_FORMAT = 16,
    /// The operating system failed a file operation (open, read, write,
    /// fsync, rename); the message names the file and the cause.
    NNX_ERR_IO = 17,
    /// Nesting deeper than `NNX_MAX_DEPTH`: a path longer than that many
    /// keys, a state that would hold one (set at a path, a nested state set
    /// into another, from_flat, a loaded file), or a filter or metadata
    /// value nested deeper. Nothing is written.
    NNX_ERR_TOO_DEEP = 18,
    /// A bug in the library: a Rust panic was caught at the boundary.
    NNX_ERR_PANIC = 100,
}

impl nnx_status {
    const ALL: [nnx_status; 20] = [
        nnx_status::NNX_OK,
        nnx_status::NNX_ERR_NULL_ARGUMENT,
        nnx_status::NNX_ERR_INVALID_ARGUMENT,
        nnx_status::NNX_ERR_INVALID_UTF8,
        nnx_status::NNX_ERR_KEY_NOT_FOUND,
        nnx_status::NNX_ERR_WRONG_KIND,
        nnx_status::NNX_ERR_PATH_THROUGH_LEAF,
        nnx_status::NNX_ERR_SHAPE_MISMATCH,
        nnx_status::NNX_ERR_UNKNOWN_TYPE,
        nnx_status::NNX_ERR_TYPE_CONFLICT,
        nnx_status::NNX_ERR_NON_EXHAUSTIVE,
        nnx_status::NNX_ERR_FILTER_ORDER,
        nnx_status::NNX_ERR_INDEX_OUT_OF_RANGE,
        nnx_status::NNX_ERR_CALLBACK,
        nnx_status::NNX_ERR_READ_ONLY,
        nnx_status::NNX_ERR_OUT_OF_MEMORY,
        nnx_status::NNX_ERR_FORMAT,
        nnx_status::NNX_ERR_IO,
        nnx_status::NNX_ERR_TOO_DEEP,
        nnx_status::NNX_ERR_PANIC,
    ];

    fn name_with_nul(self) -> &'static str {
        match self {
            nnx_status::NNX_OK => "NNX_OK\0",
            nnx_status::NNX_ERR_NULL_ARGUMENT => "NNX_ERR_NULL_ARGUMENT\0",
            nnx_status::NNX_ERR_INVALID_ARGUMENT => "NNX_ERR_INVALID_ARGUMENT\0",
            nnx_status::NNX_ERR_INVALID_UTF8 => "NNX_ERR_INVALID_UTF8\0",
            nnx_status::NNX_ERR_KEY_NOT_FOUND => "NNX_ERR_KEY_NOT_FOUND\0",
            nnx_status::NNX_ERR_WRONG_KIND => "NNX_ERR_WRONG_KIND\0",
            nnx_status::NNX_ERR_PATH_THROUGH_LEAF => "NNX_ERR_PATH_THROUGH_LEAF\0",
            nnx_status::NNX_ERR_SHAPE_MISMATCH => "NNX_ERR_SHAPE_MISMATCH\0",
            nnx_status::NNX_ERR_UNKNOWN_TYPE => "NNX_ERR_UNKNOWN_TYPE\0",
            nnx_status::NNX_ERR_TYPE_CONFLICT => "NNX_ERR_TYPE_CONFLICT\0",
            nnx_status::NNX_ERR_NON_EXHAUSTIVE => "NNX_ERR_NON_EXHAUSTIVE\0",
            nnx_status::NNX_ERR_FILTER_ORDER => "NNX_ERR_FILTER_ORDER\0",
            nnx_status::NNX_ERR_INDEX_OUT_OF_RANGE => "NNX_ERR_INDEX_OUT_OF_RANGE\0",
            nnx_status::NNX_ERR_CALLBACK => "NNX_ERR_CALLBACK\0",
            nnx_status::NNX_ERR_READ_ONLY => "NNX_ERR_READ_ONLY\0",
            nnx_status::NNX_ERR_OUT_OF_MEMORY => "NNX_ERR_OUT_OF_MEMORY\0",
            nnx_status::NNX_ERR_FORMAT => "NNX_ERR_FORMAT\0",
            nnx_status::NNX_ERR_IO => "NNX_ERR_IO\0",
            nnx_status::NNX_ERR_TOO_DEEP => "NNX_ERR_TOO_DEEP\0",
            nnx_status::NNX_ERR_PANIC => "NNX_ERR_PANIC\0",
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    // A message with an interior NUL is cut there rather than lost.
    let bytes: Vec<u8> = message.bytes().take_while(|&b| b != 0).collect();
    let text = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = text);
}

/// The message of the last failing call on this thread, or "" if none has
/// failed yet.
///
/// The returned string is owned by the library and stays valid until the next
/// failing call on the same thread; copy it to keep it. Never NULL. Safe to
/// call from any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn nnx_last_error_message() -> *const c_char {
    LAST_ERROR.with(|cell| cell.borrow().as_ptr())
}

/// The name of a status code, such as "NNX_ERR_NULL_ARGUMENT".
///
/// `status` may be any integer; unknown values give "NNX_UNKNOWN_STATUS".
/// The returned string is static: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_status_name(status: i32) -> *const c_char {
    let name = nnx_status::ALL
        .iter()
        .find(|s| **s as i32 == status)
        .map(|s| s.name_with_nul())
        .unwrap_or("NNX_UNKNOWN_STATUS\0");
    name.as_ptr().cast()
}

/// The library's version, "MAJOR.MINOR.PATCH", equal to the
/// `NNX_STATE_VERSION_*` macros of the header it was built with.
///
/// The returned string is static: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Frees a string the library returned as owned (`nnx_state_to_string`,
/// `nnx_variable_tag`, `nnx_variable_get_metadata_str`, ...).
///
/// `text`: ownership passes to the library; NULL is a no-op. Passing a string
/// that did not come from this library, or freeing one twice, is undefined
/// behaviour the library cannot detect. Thread-safe.
#[no_mangle]
pub extern "C" fn nnx_string_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: strings the library hands out come from `CString::into_raw`
        // (see `owned_c_string`); the caller passes each back once.
        drop(unsafe { CString::from_raw(text) });
    }
}

//! Raw tensor memory: the one place outside the C layer with `unsafe`.
//!
//! The data model needs it: C and Python write tensor bytes in place through
//! pointers (`nnx_array_data_mut`, numpy views), and borrowed buffers are
//! caller memory released by a callback. Everything else in the core sees a
//! [`Buffer`] through a safe interface.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

use crate::error::{bail, Result};

/// Alignment of buffers the library allocates: enough for any dtype and for
/// SIMD loads by consumers.
pub const ALIGNMENT: usize = 64;

/// Where a buffer's bytes live, as a DLPack device: `kind` 1 is the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    pub kind: i32,
    pub id: i32,
}

impl Device {
    pub const CPU: Device = Device { kind: 1, id: 0 };

    pub fn is_cpu(self) -> bool {
        self.kind == Device::CPU.kind
    }
}

/// Called once, when the last reference to a borrowed buffer goes.
pub type Release = Box<dyn FnOnce() + Send>;

enum Owner {
    /// Allocated here with this layout.
    Heap(Layout),
    /// Lent by the caller; handed back through the callback on drop.
    Foreign(Option<Release>),
}

/// A contiguous run of bytes, owned by the library or lent by a caller.
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    device: Device,
    owner: Owner,
}

// SAFETY: a Buffer is plain bytes plus, for lent memory, a `Send` callback.
// Concurrent writes through raw pointers are synchronised by whoever makes
// them, as with any C buffer; the library itself never writes after creation.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// A new heap buffer holding a copy of `bytes`. Fails (`OutOfMemory`)
    /// rather than aborting when the memory cannot be had.
    pub fn copy_from(bytes: &[u8]) -> Result<Buffer> {
        let buffer = Buffer::zeroed(bytes.len())?;
        // SAFETY: the fresh allocation holds `bytes.len()` bytes and cannot
        // overlap the source.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.ptr.as_ptr(), bytes.len());
        }
        Ok(buffer)
    }

    /// A new heap buffer of `len` zero bytes. Fails (`OutOfMemory`) rather
    /// than aborting when the memory cannot be had.
    pub fn zeroed(len: usize) -> Result<Buffer> {
        // A zero-size allocation is not allowed; one spare byte keeps the
        // pointer real and aligned.
        let Ok(layout) = Layout::from_size_align(len.max(1), ALIGNMENT) else {
            bail!(OutOfMemory, "cannot allocate {len} bytes: too large");
        };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            bail!(OutOfMemory, "cannot allocate {len} bytes");
        };
        Ok(Buffer {
            ptr,
            len,
            writable: true,
            device: Device::CPU,
            owner: Owner::Heap(layout),
        })
    }

    /// Wraps memory lent by a caller. `release` runs exactly once, when the
    /// buffer is dropped.
    ///
    /// # Safety
    /// For a CPU device, `ptr` must be valid for reads of `len` bytes (and
    /// writes, if `writable`) until `release` is called. A null `ptr` is
    /// accepted only with `len == 0`. Memory of other devices is never read.
    pub unsafe fn from_foreign(
        ptr: *mut u8,
        len: usize,
        writable: bool,
        device: Device,
        release: Option<Release>,
    ) -> Buffer {
        let ptr = NonNull::new(ptr).unwrap_or(NonNull::dangling());
        Buffer {
            ptr,
            len,
            writable,
            device,
            owner: Owner::Foreign(release),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether the library allocated these bytes (as opposed to borrowing them).
    pub fn is_owned(&self) -> bool {
        matches!(self.owner, Owner::Heap(_))
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The pointer to write through, if the memory is writable.
    pub fn as_mut_ptr(&self) -> Option<*mut u8> {
        self.writable.then_some(self.ptr.as_ptr())
    }

    /// The bytes, if they live on the CPU.
    pub fn bytes(&self) -> Option<&[u8]> {
        if !self.device.is_cpu() {
            return None;
        }
        if self.len == 0 {
            return Some(&[]);
        }
        // SAFETY: CPU memory valid for `len` bytes for as long as the buffer
        // lives (heap: allocated here; foreign: the contract of
        // `from_foreign`).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) })
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        match &mut self.owner {
            // SAFETY: allocated in `zeroed` with exactly this layout.
            Owner::Heap(layout) => unsafe { alloc::dealloc(self.ptr.as_ptr(), *layout) },
            Owner::Foreign(release) => {
                if let Some(release) = release.take() {
                    release();
                }
            }
        }
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len)
            .field("writable", &self.writable)
            .field("device", &self.device)
            .field("owned", &self.is_owned())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn copies_and_aligns() {
        let buffer = Buffer::copy_from(&[1, 2, 3]).unwrap();
        assert_eq!(buffer.bytes().unwrap(), &[1, 2, 3]);
        assert_eq!(buffer.as_ptr() as usize % ALIGNMENT, 0);
        assert!(Buffer::zeroed(0).unwrap().bytes().unwrap().is_empty());
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let err = Buffer::zeroed(isize::MAX as usize).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::OutOfMemory);
        let err = Buffer::zeroed(1 << 60).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::OutOfMemory);
    }

    #[test]
    fn foreign_release_runs_once() {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let mut data = [7u8; 4];
        // SAFETY: `data` outlives the buffer.
        let buffer = unsafe {
            Buffer::from_foreign(
                data.as_mut_ptr(),
                4,
                false,
                Device::CPU,
                Some(Box::new(move || {
                    seen.fetch_add(1, Ordering::SeqCst);
                })),
            )
        };
        assert_eq!(buffer.bytes().unwrap(), &[7; 4]);
        assert!(buffer.as_mut_ptr().is_none());
        drop(buffer);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn other_devices_are_never_read() {
        // SAFETY: a non-CPU buffer is never dereferenced.
        let buffer = unsafe {
            Buffer::from_foreign(0x1000 as *mut u8, 16, true, Device { kind: 2, id: 0 }, None)
        };
        assert!(buffer.bytes().is_none());
    }
}

//! Raw tensor memory: the one place outside the C layer with `unsafe`.
//!
//! The data model needs it: C and Python write tensor bytes in place through
//! pointers (`nnx_array_data_mut`, numpy views), and borrowed buffers are
//! caller memory released by a callback; checkpoints are memory-mapped
//! ([`MappedFile`]) and their arrays are parts of the mapping. Everything else
//! in the core sees a [`Buffer`] through a safe interface.

use std::alloc::{self, Layout};
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;

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

/// Written as DLPack names it, `type:id` (`1:0` is the CPU), for messages.
impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
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
    /// A part of a memory-mapped file, which lives as long as any part.
    Mapped(#[allow(dead_code)] Arc<MappedFile>),
    /// A part of shared immutable bytes, which live as long as any part.
    Shared(#[allow(dead_code)] Arc<[u8]>),
}

/// A whole file mapped into memory, privately: pages are read from the file
/// when first touched, and writes through [`Buffer::as_mut_ptr`] go to
/// private copies of the pages, never to the file.
///
/// The mapping reflects the file as it is on disk: a file truncated by
/// another process while mapped makes reads past its new end fault (SIGBUS),
/// and changes others write may show through pages not yet written here.
/// This is the contract of every memory-mapped loader (the safetensors
/// reference reader, `numpy.memmap`); callers who cannot rule it out copy
/// the tensors instead (`NNX_LOAD_COPY`).
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
    _map: Option<memmap2::MmapMut>,
}

// SAFETY: the mapping is plain memory owned by this value until it drops;
// concurrent writes through raw pointers are synchronised by whoever makes
// them, as for every Buffer.
unsafe impl Send for MappedFile {}
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps all of `file`, which must be open for reading. Fails (`Io`)
    /// when the system refuses.
    pub fn map(file: &File) -> Result<Arc<MappedFile>> {
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => bail!(Io, "cannot read the file's size: {e}"),
        };
        let Ok(len) = usize::try_from(len) else {
            bail!(Io, "the file ({len} bytes) is too large to map");
        };
        if len == 0 {
            // Mapping nothing fails on some systems; nothing needs no map.
            return Ok(Arc::new(MappedFile {
                ptr: NonNull::dangling(),
                len: 0,
                _map: None,
            }));
        }
        // SAFETY: a private (copy-on-write) mapping of a file opened for
        // reading. Its pages stay valid until the map is dropped; the
        // caveat of files changed by others while mapped is stated above
        // and in the documentation of the loaders.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_copy(file) };
        let mut map = match map {
            Ok(map) => map,
            Err(e) => bail!(Io, "cannot map the file ({len} bytes) into memory: {e}"),
        };
        let Some(ptr) = NonNull::new(map.as_mut_ptr()) else {
            bail!(Io, "the system mapped the file at address 0");
        };
        Ok(Arc::new(MappedFile {
            ptr,
            len: map.len(),
            _map: Some(map),
        }))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's bytes. Reading them touches (and so reads) the pages.
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping holds `len` readable bytes while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedFile")
            .field("len", &self.len)
            .finish()
    }
}

/// Checks that `range` lies within `len` bytes.
fn check_range(range: &Range<usize>, len: usize, what: &str) -> Result<()> {
    if range.start > range.end || range.end > len {
        bail!(
            InvalidArgument,
            "bytes {}..{} are not within the {len} bytes of the {what}",
            range.start,
            range.end
        );
    }
    Ok(())
}

/// Checks that `len` bytes from address `start` could be one allocation:
/// at most `isize::MAX` bytes (Rust's and C's bound on an object), ending
/// before the address space does. Caller memory that fails this cannot be
/// what the caller says it is, whatever device it is on; `what` names it,
/// for the message (`InvalidArgument`).
pub fn check_span(start: usize, len: usize, what: impl FnOnce() -> String) -> Result<()> {
    if start.checked_add(len).is_none() {
        bail!(
            InvalidArgument,
            "{}: {len} bytes from address {start:#x} run past the end of the address space",
            what()
        );
    }
    if len > isize::MAX as usize {
        bail!(
            InvalidArgument,
            "{}: {len} bytes are more than one allocation can hold",
            what()
        );
    }
    Ok(())
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
    /// Callers that take `ptr` and `len` from outside check them with
    /// [`check_span`] first: a range that wraps is valid on no device.
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

    /// The bytes `range` of a mapped file, without copying: the buffer keeps
    /// the mapping alive. Writable: writes go to private copies of the
    /// pages, never to the file.
    pub fn from_mapped(map: &Arc<MappedFile>, range: Range<usize>) -> Result<Buffer> {
        check_range(&range, map.len, "mapped file")?;
        let ptr = if range.is_empty() {
            NonNull::dangling()
        } else {
            // SAFETY: `range.start < map.len`, so the offset stays within
            // the mapping.
            unsafe { NonNull::new_unchecked(map.ptr.as_ptr().add(range.start)) }
        };
        Ok(Buffer {
            ptr,
            len: range.len(),
            writable: true,
            device: Device::CPU,
            owner: Owner::Mapped(map.clone()),
        })
    }

    /// The bytes `range` of `owner`, without copying: the buffer keeps
    /// `owner` alive. Read-only.
    pub fn from_shared(owner: Arc<[u8]>, range: Range<usize>) -> Result<Buffer> {
        check_range(&range, owner.len(), "shared bytes")?;
        let ptr = match owner.get(range.clone()) {
            Some(part) if !part.is_empty() => NonNull::from(part).cast::<u8>(),
            _ => NonNull::dangling(),
        };
        Ok(Buffer {
            ptr,
            len: range.len(),
            writable: false,
            device: Device::CPU,
            owner: Owner::Shared(owner),
        })
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
            // Dropping the owner's reference is all there is to do.
            Owner::Mapped(_) | Owner::Shared(_) => {}
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
    fn spans_that_wrap_or_cannot_be_allocated_are_refused() {
        let what = || "the bytes".to_owned();
        assert!(check_span(0x1000, 16, what).is_ok());
        assert!(check_span(0, 0, what).is_ok());
        assert!(check_span(usize::MAX, 0, what).is_ok());
        assert!(check_span(usize::MAX - 16, 16, what).is_ok());
        assert!(check_span(0, isize::MAX as usize, what).is_ok());
        let err = check_span(usize::MAX - 15, 16, what).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err
            .message()
            .starts_with("the bytes: 16 bytes from address 0x"));
        assert!(err
            .message()
            .ends_with("run past the end of the address space"));
        let err = check_span(0, isize::MAX as usize + 1, what).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.message().contains("more than one allocation can hold"));
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
    fn shared_parts_keep_their_owner_alive() {
        let owner: Arc<[u8]> = Arc::from(&[1u8, 2, 3, 4, 5][..]);
        let part = Buffer::from_shared(owner.clone(), 1..4).unwrap();
        assert_eq!(Arc::strong_count(&owner), 2);
        drop(owner);
        assert_eq!(part.bytes().unwrap(), &[2, 3, 4]);
        assert!(part.as_mut_ptr().is_none());
        let empty = Buffer::from_shared(Arc::from(&[][..]), 0..0).unwrap();
        assert!(empty.bytes().unwrap().is_empty());
        let err = Buffer::from_shared(Arc::from(&[1u8][..]), 0..2).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn mapped_parts_are_private_copies() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("nnx-buffer-map-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&[10, 20, 30, 40])
            .unwrap();
        let map = MappedFile::map(&File::open(&path).unwrap()).unwrap();
        let part = Buffer::from_mapped(&map, 2..4).unwrap();
        drop(map);
        assert_eq!(part.bytes().unwrap(), &[30, 40]);
        let ptr = part.as_mut_ptr().unwrap();
        // SAFETY: the part holds two writable bytes.
        unsafe { *ptr = 99 };
        assert_eq!(part.bytes().unwrap(), &[99, 40]);
        drop(part);
        assert_eq!(std::fs::read(&path).unwrap(), vec![10, 20, 30, 40]);
        let empty = File::create(&path).unwrap();
        let map = MappedFile::map(&empty).unwrap();
        assert!(map.bytes().is_empty());
        assert!(Buffer::from_mapped(&map, 0..1).is_err());
        std::fs::remove_file(&path).unwrap();
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

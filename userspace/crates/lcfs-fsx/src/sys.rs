//! The one module with `unsafe` code: buffers with a chosen memory alignment (for `O_DIRECT`),
//! shared file mappings (mmap reads and writes, `msync`) and the `FICLONERANGE` ioctl.
//!
//! Everything here is a small safe wrapper: callers never see a raw pointer.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

use rustix::io;
use rustix::mm::{self, MapFlags, MsyncFlags, ProtFlags};

/// A zeroed heap buffer of `len` bytes that starts `skew` bytes after an address aligned to
/// `align`: `skew` 0 gives an `align`-aligned buffer, a small multiple of the device's memory
/// alignment gives one that is exactly as aligned as `statx` promises is enough.
pub(crate) struct AlignedBuf {
    base: NonNull<u8>,
    layout: Layout,
    skew: usize,
    len: usize,
}

impl AlignedBuf {
    /// Allocates the buffer; `align` must be a power of two.
    pub(crate) fn new(len: usize, align: usize, skew: usize) -> Self {
        let size = skew.checked_add(len).expect("buffer size overflows").max(1);
        let layout = Layout::from_size_align(size, align).expect("alignment is a power of two");
        // SAFETY: the layout's size is at least 1 byte (`max(1)` above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Self {
            base,
            layout,
            skew,
            len,
        }
    }

    /// The buffer's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `skew + len <= layout.size()` (checked in `new`), so the range lies inside the
        // live allocation, which `alloc_zeroed` initialised; the shared borrow of `self` rules out
        // a mutable alias for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.skew), self.len) }
    }

    /// The buffer's bytes, writable.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the exclusive borrow of `self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(self.skew), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed` with exactly this layout and is freed only here.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// A `MAP_SHARED` mapping of part of a file, unmapped on drop. Bytes move in and out only by
/// copies (`read`, `write`), never through references into the mapping, whose contents the
/// kernel may change behind our back.
pub(crate) struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
    writable: bool,
}

impl Mapping {
    /// Maps `len` (> 0) bytes of the file from `offset`, which must be a multiple of the page
    /// size. Callers touch only bytes below the file's size (no `SIGBUS`).
    pub(crate) fn new(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        writable: bool,
    ) -> io::Result<Self> {
        assert!(len > 0, "empty mapping");
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a new mapping at an address the kernel chooses (null hint, no MAP_FIXED), so it
        // cannot overlap any memory Rust owns; it is only accessed by the raw copies below, within
        // `len`, and unmapped exactly once in `drop`.
        let raw = unsafe { mm::mmap(ptr::null_mut(), len, prot, MapFlags::SHARED, fd, offset)? };
        let ptr = NonNull::new(raw).expect("mmap returned a null mapping");
        Ok(Self { ptr, len, writable })
    }

    fn check_range(&self, at: usize, n: usize) {
        assert!(
            at.checked_add(n).is_some_and(|end| end <= self.len),
            "access outside the mapping"
        );
    }

    /// Copies `out.len()` bytes from `at` bytes into the mapping.
    pub(crate) fn read(&self, at: usize, out: &mut [u8]) {
        self.check_range(at, out.len());
        // SAFETY: the source range is inside the live mapping (checked above) and below the
        // file's size (the caller's contract); `out` is a Rust buffer, distinct from the mapping,
        // so the ranges do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(
                self.ptr.as_ptr().cast::<u8>().add(at),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// Copies `data` into the mapping at `at` bytes (a writable mapping only).
    pub(crate) fn write(&mut self, at: usize, data: &[u8]) {
        assert!(self.writable, "write to a read-only mapping");
        self.check_range(at, data.len());
        // SAFETY: the destination range is inside the live, writable mapping (checked above) and
        // below the file's size (the caller's contract); `data` is a Rust buffer, distinct from
        // the mapping, so the ranges do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().cast::<u8>().add(at),
                data.len(),
            )
        }
    }

    /// `msync` of the whole mapping.
    pub(crate) fn sync(&self, flags: MsyncFlags) -> io::Result<()> {
        // SAFETY: `ptr` and `len` describe exactly the live mapping made in `new`.
        unsafe { mm::msync(self.ptr.as_ptr(), self.len, flags) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` describe exactly the mapping made in `new`, unmapped only here;
        // nothing refers into it (all accesses were copies).
        let _ = unsafe { mm::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// `struct file_clone_range` of `<linux/fs.h>`, the argument of `FICLONERANGE`.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// `FICLONERANGE`: `_IOW(0x94, 13, struct file_clone_range)`.
pub(crate) const FICLONERANGE: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::write::<FileCloneRange>(0x94, 13);

/// `ioctl(dst, FICLONERANGE, {src, src_offset, len, dst_offset})`: makes `len` bytes of `dst`
/// from `dst_offset` share `src`'s bytes from `src_offset`.
pub(crate) fn clone_range(
    dst: BorrowedFd<'_>,
    src: BorrowedFd<'_>,
    src_offset: u64,
    len: u64,
    dst_offset: u64,
) -> io::Result<()> {
    let arg = FileCloneRange {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset,
        src_length: len,
        dest_offset: dst_offset,
    };
    // SAFETY: FICLONERANGE is a write-direction ioctl whose argument is a pointer to `struct
    // file_clone_range`, which `FileCloneRange` mirrors field for field (`repr(C)`); the kernel
    // only reads it, and `Setter` keeps it alive for the call.
    unsafe {
        rustix::ioctl::ioctl(
            dst,
            rustix::ioctl::Setter::<FICLONERANGE, FileCloneRange>::new(arg),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ficlonerange_opcode_matches_the_kernel_header() {
        assert_eq!(FICLONERANGE, 0x4020_940d);
    }

    #[test]
    fn aligned_buffer_has_the_requested_alignment_and_skew() {
        let mut b = AlignedBuf::new(8192, 4096, 512);
        assert_eq!(b.as_slice().len(), 8192);
        assert_eq!(b.as_slice().as_ptr() as usize % 4096, 512);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[8191] = 7;
        assert_eq!(b.as_slice()[8191], 7);
    }
}

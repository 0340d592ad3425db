// SPDX-License-Identifier: GPL-2.0

//! Regular files: the [`DataOperations`] behind their page cache (iomap, no buffer heads) and
//! the [`FileOperations`] of open files. Buffered read and write, direct I/O, readahead, mmap
//! with `page_mkwrite`, writeback, truncate, fallocate, SEEK_HOLE and SEEK_DATA, fsync.
//!
//! The filesystem answers two questions: where a file range is ([`DataOperations::map`], for
//! reads, writes (allocating) and zeroing) and where writeback must write it
//! ([`DataOperations::map_writeback`]); it is told when written data reached the disk
//! ([`DataOperations::write_done`]). Writeback submits ioends without waiting; their completions
//! are queued to the mount's writeback workqueue, which reports each done before its folios leave
//! writeback, so `fsync` (which waits for writeback) sees every completed write recorded and can
//! commit.
//!
//! Direct I/O goes through `iomap_dio_rw` with the same mappings. A direct write maps its blocks
//! as a buffered write would (new unwritten blocks for holes, new blocks for shared ones, in
//! place for the file's own), writes them and, on completion, reports them done with
//! [`DataOperations::write_done`]: it never writes into a block another layer or file shares.
//! Writes are whole filesystem blocks under the exclusive `i_rwsem` and wait for their
//! completion even when asynchronous, so completion and size update happen under that lock;
//! reads need device sectors, take `i_rwsem` shared and may complete asynchronously (size
//! changes and `fallocate` wait for them). A request direct I/O cannot serve (a write not in
//! whole blocks, a read not in sectors) goes through the page cache instead, written back and
//! dropped after a write, as btrfs does.
//!
//! Lock order: `i_rwsem` -> `invalidate_lock` -> file folio lock -> the filesystem's own locks.
//! Callers of the filesystem hooks may hold a file folio lock (`page_mkwrite`, writeback), so the
//! filesystem must never wait for a file folio while holding its locks.

use core::marker::PhantomData;
use core::ptr;

use kernel::bindings;
use kernel::error::{from_result, to_result, VTABLE_DEFAULT_ERROR};
use kernel::prelude::*;
use kernel::sync::aref::ARef;

use super::bindings as ext;
use super::inode::{Inode, InodeGuard, InvalidateGuard};
use super::registration::{FileSystem, Operations};
use super::super_block::SbInfo;
use crate::format::BLOCK_SIZE;

/// Where the data of regular files is: the address-space and iomap operations.
///
/// All four are required today (iomap has no default mapping); optional ones added later leave
/// their C operations NULL when not implemented.
#[vtable]
pub(crate) trait DataOperations: FileSystem {
    /// Maps a range of regular file `inode` (bytes) for `purpose`.
    fn map(inode: &Inode<Self>, pos: u64, len: u64, purpose: MapFor) -> Result<FileMap>;

    /// Where writeback writes the range of `inode` starting at `pos` (a `Mapped` range).
    fn map_writeback(inode: &Inode<Self>, pos: u64, len: u64) -> Result<FileMap>;

    /// The data of `[pos, pos + len)` of `inode` reached the disk. A buffered write that grew
    /// the file stored no size: the stored size follows here, up to the end of this range or
    /// the cached size, whichever is smaller, so that a commit never has a size that covers
    /// data still in the page cache (as ext4's on-disk size follows writeback).
    fn write_done(inode: &Inode<Self>, pos: u64, len: u64) -> Result;

    /// A direct write or `fallocate` made `inode` `size` bytes long: store its size and
    /// timestamps.
    fn store_size(inode: &Inode<Self>, size: u64) -> Result;

    /// A change that may dirty folios or move blocks of regular file `inode` starts: a write,
    /// a write fault on a shared mapping, a size change or `fallocate`. The filesystem may make
    /// it wait here, to hold the file's data still (as a freeze does, for one part of the
    /// filesystem). Called holding the file's `i_rwsem` (writes, size changes, `fallocate`) or
    /// the mapping's `mmap_lock` (write faults), never the `invalidate_lock` or a folio lock.
    /// Each success is matched by one [`Self::end_change`] once the change is done, with the
    /// value it returned.
    fn start_change(_inode: &Inode<Self>) -> Result<u64> {
        Ok(0)
    }

    /// The change [`Self::start_change`] let start (returning `token`) is done: its folios are
    /// dirty or clean.
    fn end_change(_inode: &Inode<Self>, _token: u64) {}

    /// Whether a mapping [`Self::map`] gave for a write, with [`FileMap::cookie`], still holds.
    /// iomap asks with the folio it writes into locked (`iomap_valid`): a mapping made before
    /// writeback completed (an unwritten block since written, whose folio was then evicted)
    /// would zero data the block holds, so a stale one is mapped again.
    fn map_valid(_inode: &Inode<Self>, _cookie: u64) -> bool {
        true
    }

    /// The writeback completion lane of `inode`'s written ranges: completions in different
    /// lanes run at once, those in one lane one at a time, oldest first. Called in interrupt
    /// context (a bio's end), so it must not sleep or take a lock; the same inode must always
    /// get the same lane.
    fn completion_lane(_inode: &Inode<Self>) -> usize {
        0
    }

    /// Whether a buffered write into a dirty, uptodate folio of `inode` may copy its bytes
    /// without mapping its block again, as `generic_perform_write` does into a folio whose
    /// buffers are mapped: a folio dirtied by a write that mapped its block ([`Self::map`] for
    /// [`MapFor::Write`], or a write fault's) keeps that mapping until writeback cleans it
    /// (nothing moves or shares the block of a dirty folio without writing the folio back
    /// first), and the filesystem takes writes now (what [`Self::map`] checks for a write
    /// beyond the block: not read-only, not failed). Called with `i_rwsem` held.
    fn dirty_keeps_mapping(_inode: &Inode<Self>) -> bool {
        false
    }
}

/// A change to a file's data in progress, between [`DataOperations::start_change`] and
/// [`DataOperations::end_change`].
pub(super) struct Change<'a, T: Operations>(&'a Inode<T>, u64);

impl<'a, T: Operations> Change<'a, T> {
    /// Starts a change of regular file `inode`, under the locks `start_change` names.
    pub(super) fn start(inode: &'a Inode<T>) -> Result<Self> {
        let token = T::start_change(inode)?;
        Ok(Self(inode, token))
    }
}

impl<T: Operations> Drop for Change<'_, T> {
    fn drop(&mut self) {
        T::end_change(self.0, self.1);
    }
}

/// The operations of open regular files (and `ioctl`, of open directories too).
///
/// An optional method the filesystem does not implement leaves its C operation NULL, and the VFS
/// answers: `fsync` fails with `EINVAL`, `fallocate` with `EOPNOTSUPP`, `ioctl` with `ENOTTY`.
/// `fallocate` is set when either `allocate` or `punch` is implemented; the other then refuses
/// its mode with `EOPNOTSUPP`, as a NULL `fallocate` would.
#[vtable]
pub(crate) trait FileOperations: FileSystem {
    /// Makes everything written to `inode` durable (its data is written back already).
    fn fsync(_inode: &Inode<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Allocates the block-aligned range `[pos, pos + len)` of `inode` (`fallocate`).
    fn allocate(_inode: &Inode<Self>, _pos: u64, _len: u64) -> Result {
        Err(EOPNOTSUPP)
    }

    /// Frees the blocks of the block-aligned range `[pos, pos + len)` of `inode`
    /// (`FALLOC_FL_PUNCH_HOLE`).
    fn punch(_inode: &Inode<Self>, _pos: u64, _len: u64) -> Result {
        Err(EOPNOTSUPP)
    }

    /// Makes the `len` bytes of `dst` from `dst_pos` share the blocks of `src` from `src_pos`
    /// (reflink: `FICLONE`, `FICLONERANGE`, `FIDEDUPERANGE` and `copy_file_range`). Offsets are
    /// block-aligned and `len` whole blocks. Called with both files' `i_rwsem` and
    /// `invalidate_lock` held, their pages in the ranges written back, the destination's
    /// dropped, and a change of `dst` started ([`DataOperations::start_change`]); the caller
    /// sets the size.
    fn clone_range(
        _src: &Inode<Self>,
        _src_pos: u64,
        _dst: &Inode<Self>,
        _dst_pos: u64,
        _len: u64,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// A file of `inode` is being opened for writing (the VFS's checks passed): may refuse it.
    /// Each success is matched by one [`Self::release_writer`] when that file is released.
    fn open_writer(_inode: &Inode<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// A file of `inode` that [`Self::open_writer`] let open for writing was released: its last
    /// reference, a writable mapping's included, is gone.
    fn release_writer(_inode: &Inode<Self>) {}

    /// Handles an ioctl of the filesystem on an open file of `inode`.
    fn ioctl(_inode: &Inode<Self>, _request: super::Request, _out: super::Output) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Page-cache sharing: the content inode (from [`super::SuperBlock::iget_content`]) whose
    /// page cache a file of `inode` opened for reading only reads through, if any. Its contents
    /// must be `inode`'s, and stay so while [`Self::shares`] says yes.
    fn content(_inode: &Inode<Self>) -> Result<Option<ARef<Inode<Self>>>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether reads of `inode` still go through the content inode [`Self::content`] gave. Once
    /// it says no, it never says yes again for this inode: reads, mappings and advice of files
    /// opened before then use `inode`'s own page cache from then on (mappings made before keep
    /// the content inode's pages).
    fn shares(_inode: &Inode<Self>) -> bool {
        false
    }
}

/// What a file range maps to. Addresses are byte offsets on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// No blocks: reads as zeros.
    Hole,
    /// Allocated, reads as zeros until written.
    Unwritten {
        /// Device address of the range's start.
        addr: u64,
    },
    /// Written blocks.
    Mapped {
        /// Device address of the range's start.
        addr: u64,
    },
    /// Written blocks that another layer or file also references (only for
    /// [`MapFor::Report`]).
    Shared {
        /// Device address of the range's start.
        addr: u64,
    },
    /// New blocks for a write that replace shared ones: partial blocks read the old data from
    /// `src`.
    Cow {
        /// Device address of the new blocks.
        addr: u64,
        /// Device address of the old data.
        src: u64,
    },
}

/// A mapped file range, in bytes (block-aligned).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileMap {
    /// File offset of the range's start.
    pub(crate) offset: u64,
    /// Length, at least one block.
    pub(crate) length: u64,
    /// What it maps to.
    pub(crate) kind: MapKind,
    /// For [`DataOperations::map_valid`]: what the filesystem needs to tell whether a write's
    /// mapping still holds.
    pub(crate) cookie: u64,
}

/// Why a range is being mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapFor {
    /// Reading, seeking for holes and data.
    Read,
    /// A write into the page cache: allocate what is missing and unshare what is shared.
    Write,
    /// Zeroing part of a block (truncate, punch): holes and unwritten blocks stay as they are.
    Zero,
    /// A report of the file's layout (FIEMAP): as [`Self::Read`], and written blocks shared
    /// with another layer or file come back as [`MapKind::Shared`].
    Report,
    /// `FALLOC_FL_UNSHARE_RANGE`: shared written blocks get new ones as for a write
    /// ([`MapKind::Cow`]); everything else maps as for [`Self::Read`] and stays as it is.
    Unshare,
}

/// Operation tables of regular files of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: Operations> Tables<T> {
    const READ_OPS: ext::iomap_ops = ext::iomap_ops {
        iomap_begin: Some(iomap_begin_callback::<T, 0>),
        iomap_end: None,
        iomap_next: None,
    };

    const WRITE_OPS: ext::iomap_ops = ext::iomap_ops {
        iomap_begin: Some(iomap_begin_callback::<T, 1>),
        iomap_end: None,
        iomap_next: None,
    };

    const REPORT_OPS: ext::iomap_ops = ext::iomap_ops {
        iomap_begin: Some(iomap_begin_callback::<T, 2>),
        iomap_end: None,
        iomap_next: None,
    };

    const UNSHARE_OPS: ext::iomap_ops = ext::iomap_ops {
        iomap_begin: Some(iomap_begin_callback::<T, 3>),
        iomap_end: None,
        iomap_next: None,
    };

    /// The folio hooks of buffered writes, zeroing and truncation: the validity check only.
    const FOLIO_OPS: ext::iomap_write_ops = ext::iomap_write_ops {
        get_folio: None,
        put_folio: None,
        iomap_valid: Some(iomap_valid_callback::<T>),
        read_folio_range: None,
    };

    const DIO_OPS: ext::iomap_dio_ops = ext::iomap_dio_ops {
        end_io: Some(dio_end_io_callback::<T>),
        submit_io: None,
        bio_set: ptr::null_mut(),
    };

    const WRITEBACK_OPS: ext::iomap_writeback_ops = ext::iomap_writeback_ops {
        writeback_range: Some(writeback_range_callback::<T>),
        writeback_submit: Some(writeback_submit_callback::<T>),
    };

    const AOPS: bindings::address_space_operations = bindings::address_space_operations {
        read_folio: Some(read_folio_callback::<T>),
        readahead: Some(readahead_callback::<T>),
        writepages: Some(writepages_callback::<T>),
        dirty_folio: Some(ext::iomap_dirty_folio),
        release_folio: Some(ext::iomap_release_folio),
        invalidate_folio: Some(ext::iomap_invalidate_folio),
        is_partially_uptodate: Some(ext::iomap_is_partially_uptodate),
        error_remove_folio: Some(bindings::generic_error_remove_folio),
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };

    const VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
        fault: Some(bindings::filemap_fault),
        map_pages: Some(bindings::filemap_map_pages),
        page_mkwrite: Some(page_mkwrite_callback::<T>),
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };

    const FILE_OPS: bindings::file_operations = bindings::file_operations {
        llseek: Some(llseek_callback::<T>),
        read_iter: Some(read_iter_callback::<T>),
        write_iter: Some(write_iter_callback::<T>),
        // `mmap`, not `mmap_prepare`: a mapping of a shared file maps the content file instead
        // (`vma_set_file` and the backing-file LSM hook need the VMA, as in overlayfs and erofs).
        mmap: Some(mmap_callback::<T>),
        open: if T::HAS_OPEN_WRITER || T::HAS_CONTENT {
            Some(open_callback::<T>)
        } else {
            Some(bindings::generic_file_open)
        },
        release: if T::HAS_OPEN_WRITER || T::HAS_CONTENT {
            Some(release_callback::<T>)
        } else {
            None
        },
        fadvise: Some(fadvise_callback::<T>),
        fsync: if T::HAS_FSYNC {
            Some(fsync_callback::<T>)
        } else {
            None
        },
        fallocate: if T::HAS_ALLOCATE || T::HAS_PUNCH {
            Some(fallocate_callback::<T>)
        } else {
            None
        },
        splice_read: Some(splice_read_callback::<T>),
        splice_write: Some(bindings::iter_file_splice_write),
        remap_file_range: if T::HAS_CLONE_RANGE {
            Some(remap_file_range_callback::<T>)
        } else {
            None
        },
        // Leases (Samba, NFS delegations) are kept by the VFS on the inode; the kernel refuses
        // them on files whose operations do not name a `setlease`.
        setlease: Some(ext::generic_setlease),
        unlocked_ioctl: super::ioctl::ioctl_operation::<T>(),
        compat_ioctl: super::ioctl::compat_ioctl_operation::<T>(),
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };
}

impl<T: Operations> Tables<T> {
    /// Content files (page-cache sharing) are only opened as backing files, read with
    /// `filemap_read`, spliced with `filemap_splice_read` and mapped by their layer files'
    /// `mmap`: their own operations only need to let the backing file open.
    const CONTENT_FILE_OPS: bindings::file_operations = bindings::file_operations {
        llseek: Some(bindings::generic_file_llseek),
        read_iter: Some(bindings::generic_file_read_iter),
        splice_read: Some(bindings::filemap_splice_read),
        open: Some(bindings::generic_file_open),
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };
}

pub(super) fn file_operations<T: Operations>() -> &'static bindings::file_operations {
    &Tables::<T>::FILE_OPS
}

pub(super) fn content_file_operations<T: Operations>() -> &'static bindings::file_operations {
    &Tables::<T>::CONTENT_FILE_OPS
}

pub(super) fn address_space_operations<T: Operations>(
) -> &'static bindings::address_space_operations {
    &Tables::<T>::AOPS
}

/// Block size as `u64`.
const BS: u64 = BLOCK_SIZE as u64;

/// Most bytes one writeback mapping covers.
const WRITEBACK_WINDOW: u64 = 4 << 20;

/// `pos` rounded down to a block boundary.
fn block_floor(pos: u64) -> u64 {
    pos / BS * BS
}

/// `pos` rounded up to a block boundary (`pos` at most `i64::MAX`, so this cannot overflow).
fn block_ceil(pos: u64) -> u64 {
    pos.div_ceil(BS) * BS
}

/// The inode of `file`, an open regular file or directory of `T`.
///
/// # Safety
///
/// `file` must be a live open file with our file operations (so its inode is an initialised
/// inode of `T`), open for `'a`.
unsafe fn file_inode<'a, T: FileSystem>(file: *mut bindings::file) -> &'a Inode<T> {
    // SAFETY: `file` is live (contract); `file_inode` reads `f_inode`, fixed while it is open.
    let raw = unsafe { ext::lcfs_file_inode(file.cast()) };
    // SAFETY: the file has our file operations, so its inode is an initialised inode of `T`
    // (contract), which the open file keeps referenced for `'a`.
    unsafe { Inode::<T>::from_raw(raw.cast()) }
}

/// `EIO` once the filesystem of `file` is shut down, as a callback's negative return value.
///
/// # Safety
///
/// As [`file_inode`].
unsafe fn shut_down<T: FileSystem>(file: *mut bindings::file) -> Option<c_int> {
    // SAFETY: the caller's contract is `file_inode`'s.
    let inode = unsafe { file_inode::<T>(file) };
    inode.super_block().live().err().map(|e| e.to_errno())
}

/// Fills iomap's mapping `map` with the range of `m`.
///
/// # Safety
///
/// `map` must be a mapping iomap handed to the current call to fill.
unsafe fn set_iomap(
    map: *mut ext::iomap,
    m: &FileMap,
    kind: u32,
    addr: u64,
    flags: u32,
    bdev: *mut bindings::block_device,
) {
    let offset = i64::try_from(m.offset).unwrap_or(i64::MAX);
    // CAST: the IOMAP_* type and flag constants fit in 16 bits.
    let (kind, flags) = (kind as u16, flags as u16);
    // SAFETY: iomap hands `map` to this call to fill (contract): live, and read or written by
    // nothing else until the call returns; plain stores of integer and pointer fields.
    unsafe {
        (*map).offset = offset;
        (*map).length = m.length;
        (*map).validity_cookie = m.cookie;
        (*map).type_ = kind;
        (*map).flags = flags;
        (*map).addr = addr;
        (*map).bdev = bdev.cast();
    }
}

/// `WRITE` picks the purpose: 0 reads (and seeks), 1 writes, 2 reports (FIEMAP), 3 unshares.
///
/// # Safety
///
/// Called only by iomap, with arguments that satisfy the C contract of `iomap_begin`.
unsafe extern "C" fn iomap_begin_callback<T: DataOperations, const WRITE: u8>(
    inode: *mut bindings::inode,
    pos: bindings::loff_t,
    length: bindings::loff_t,
    flags: c_uint,
    iomap: *mut ext::iomap,
    srcmap: *mut ext::iomap,
) -> c_int {
    from_result(|| {
        let purpose = if WRITE == 3 {
            MapFor::Unshare
        } else if WRITE == 2 {
            MapFor::Report
        } else if WRITE == 0 || flags & ext::IOMAP_REPORT != 0 {
            MapFor::Read
        } else if flags & ext::IOMAP_ZERO != 0 {
            MapFor::Zero
        } else {
            MapFor::Write
        };
        // Mapping may wait for the volume lock and read the device.
        if flags & ext::IOMAP_NOWAIT != 0 {
            return Err(EAGAIN);
        }
        let direct_write = purpose == MapFor::Write && flags & ext::IOMAP_DIRECT != 0;
        let pos = u64::try_from(pos).map_err(|_| EINVAL)?;
        let length = u64::try_from(length).map_err(|_| EINVAL)?;
        // SAFETY: `iomap_begin`'s contract: `inode` is the live inode iomap is iterating over,
        // one of our regular files (only their operations use these iomap tables), so an
        // initialised inode of `T`, referenced by the caller for the call.
        let file = unsafe { Inode::<T>::from_raw(inode) };
        // Reads of uncached pages, buffered writes, write faults, SEEK_DATA and SEEK_HOLE.
        file.super_block().live()?;
        let m = T::map(file, pos, length.max(1), purpose)?;
        if m.length == 0 || m.offset > pos || m.offset.saturating_add(m.length) <= pos {
            return Err(EIO);
        }
        let bdev = file.super_block().bdev();
        // CAST: IOMAP_NULL_ADDR is `-1ULL`; bindgen types it as a signed -1.
        let (kind, addr, mut flags) = match m.kind {
            MapKind::Hole => (ext::IOMAP_HOLE, ext::IOMAP_NULL_ADDR as u64, 0),
            MapKind::Unwritten { addr } => (ext::IOMAP_UNWRITTEN, addr, 0),
            MapKind::Mapped { addr } => (ext::IOMAP_MAPPED, addr, 0),
            MapKind::Shared { addr } => (ext::IOMAP_MAPPED, addr, ext::IOMAP_F_SHARED),
            MapKind::Cow { addr, .. } => (ext::IOMAP_UNWRITTEN, addr, ext::IOMAP_F_SHARED),
        };
        if direct_write {
            // Even an overwrite in place may be of blocks whose mapping is not committed yet:
            // no FUA shortcut for O_DSYNC (which then commits).
            flags |= ext::IOMAP_F_DIRTY;
        }
        // SAFETY: `iomap_begin`'s contract: `iomap` is the live mapping iomap hands this call to
        // fill.
        unsafe { set_iomap(iomap, &m, kind, addr, flags, bdev) };
        // Direct writes are of whole blocks: nothing of the old data is read.
        if let (MapKind::Cow { src, .. }, false) = (m.kind, direct_write) {
            if !srcmap.is_null() {
                // SAFETY: `iomap_begin`'s contract: a non-null `srcmap` is the live source
                // mapping iomap hands this call to fill for a write.
                unsafe { set_iomap(srcmap, &m, ext::IOMAP_MAPPED, src, 0, bdev) };
            }
        }
        Ok(0)
    })
}

/// # Safety
///
/// Called only by iomap, with arguments that satisfy the C contract of `iomap_valid`.
unsafe extern "C" fn iomap_valid_callback<T: DataOperations>(
    inode: *mut bindings::inode,
    iomap: *const ext::iomap,
) -> bool {
    // SAFETY: `iomap_valid`'s contract: `iomap` is the live mapping of the write in progress,
    // which our `iomap_begin` filled; a plain read.
    let cookie = unsafe { (*iomap).validity_cookie };
    // SAFETY: `iomap_valid`'s contract: `inode` is the live inode written to, one of our
    // regular files (only their write operations carry this hook), referenced by the caller.
    let file = unsafe { Inode::<T>::from_raw(inode) };
    T::map_valid(file, cookie)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `read_folio`.
unsafe extern "C" fn read_folio_callback<T: Operations>(
    _file: *mut bindings::file,
    folio: *mut bindings::folio,
) -> c_int {
    // SAFETY: `read_folio`'s contract: `folio` is a live, locked folio of one of our regular
    // files (this callback is in their address-space operations only); iomap reads it with our
    // static read operations and unlocks it when the read completes (also on error), as the
    // contract requires of us.
    unsafe { ext::lcfs_iomap_read_folio(folio.cast(), &Tables::<T>::READ_OPS) };
    0
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `readahead`.
unsafe extern "C" fn readahead_callback<T: Operations>(rac: *mut bindings::readahead_control) {
    // SAFETY: `readahead`'s contract: `rac` is a live readahead request on one of our regular
    // files, its folios locked and in the page cache; the operations are static.
    unsafe { ext::lcfs_iomap_readahead(rac.cast(), &Tables::<T>::READ_OPS) };
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `writepages`.
unsafe extern "C" fn writepages_callback<T: Operations>(
    mapping: *mut bindings::address_space,
    wbc: *mut bindings::writeback_control,
) -> c_int {
    // SAFETY: `writepages`'s contract: `mapping` is the live mapping of one of our regular
    // files and `wbc` the live writeback request; the operations are static, and their callbacks
    // only use the context iomap passes them.
    unsafe { ext::lcfs_iomap_writepages(mapping.cast(), wbc.cast(), &Tables::<T>::WRITEBACK_OPS) }
}

/// # Safety
///
/// Called only by iomap, with arguments that satisfy the C contract of `writeback_range`.
unsafe extern "C" fn writeback_range_callback<T: Operations>(
    wpc: *mut ext::iomap_writepage_ctx,
    folio: *mut bindings::folio,
    pos: u64,
    len: c_uint,
    end_pos: u64,
) -> isize {
    let r = (|| -> Result<isize> {
        // SAFETY: `writeback_range`'s contract: `wpc` is iomap's live writeback context, whose
        // inode and cached mapping only this writeback (this task) reads or changes until it
        // ends; plain field reads.
        let (raw, offset, length) =
            unsafe { ((*wpc).inode, (*wpc).iomap.offset, (*wpc).iomap.length) };
        // SAFETY: the context's inode is one of our regular files (its mapping has our
        // `writepages`), so an initialised inode of `T`, kept alive by the writeback of its
        // mapping for the call. Shut down, nothing more is written, even to blocks already
        // mapped: iomap ends the folio's writeback with the error.
        unsafe { Inode::<T>::from_raw(raw.cast()) }
            .super_block()
            .live()?;
        let start = u64::try_from(offset).unwrap_or(u64::MAX);
        let cached = length != 0 && pos >= start && pos - start < length;
        if !cached {
            // SAFETY: the context's inode is one of our regular files (its mapping has our
            // `writepages`), so an initialised inode of `T`, kept alive by the writeback of its
            // mapping for the call.
            let file = unsafe { Inode::<T>::from_raw(raw.cast()) };
            // Ask for up to the end of the file (at most 4 MiB) rather than this folio: one
            // mapping then serves the following folios too.
            let size = u64::try_from(file.size()).unwrap_or(0);
            // Not `clamp`: it panics if a range longer than the window ever comes.
            let want = size
                .saturating_sub(pos)
                .min(WRITEBACK_WINDOW)
                .max(u64::from(len).max(1));
            let m = T::map_writeback(file, pos, want)?;
            let MapKind::Mapped { addr } = m.kind else {
                return Err(EIO);
            };
            if m.offset > pos || m.offset.saturating_add(m.length) <= pos {
                return Err(EIO);
            }
            i64::try_from(m.offset).map_err(|_| EINVAL)?;
            let bdev = file.super_block().bdev();
            // SAFETY: `wpc` is live (contract) and its cached mapping is this callback's to
            // replace between folios (iomap reads it only after the callback returns); only the
            // field's address is taken.
            unsafe {
                set_iomap(
                    ptr::addr_of_mut!((*wpc).iomap),
                    &m,
                    ext::IOMAP_MAPPED,
                    addr,
                    0,
                    bdev,
                )
            };
        }
        let (pos, end_pos) = (i64::try_from(pos)?, i64::try_from(end_pos)?);
        // SAFETY: `wpc` and the locked `folio` are the live arguments of this callback, and the
        // range `[pos, pos + len)` lies inside the context's mapping (cached: checked above; new:
        // `m` covers `pos`), as `iomap_add_to_ioend` requires.
        Ok(unsafe { ext::iomap_add_to_ioend(wpc, folio, pos, end_pos, len) })
    })();
    r.unwrap_or_else(|e| e.to_errno() as isize)
}

/// # Safety
///
/// Called only by iomap, with arguments that satisfy the C contract of `writeback_submit`.
unsafe extern "C" fn writeback_submit_callback<T: Operations>(
    wpc: *mut ext::iomap_writepage_ctx,
    error: c_int,
) -> c_int {
    // SAFETY: `writeback_submit`'s contract: `wpc` is iomap's live context; `wb_ctx` holds
    // the pending ioend or null.
    let ioend = unsafe { (*wpc).wb_ctx.cast::<ext::iomap_ioend>() };
    if error == 0 && !ioend.is_null() {
        // SAFETY: the pending ioend is live and not submitted yet, so nothing else reads its bio;
        // its completion becomes ours (`writeback_end_io::<T>`, which expects exactly such an
        // ioend).
        unsafe { (*ioend).io_bio.bi_end_io = Some(writeback_end_io::<T>) };
        // SAFETY: the same live, unsubmitted ioend; only the bio's address is taken.
        let bio = unsafe { ptr::addr_of_mut!((*ioend).io_bio) };
        // SAFETY: `bio` is the live, unsubmitted bio of the ioend. Its completion already
        // defers to a task (the workqueue), so the block layer need not (dropbehind folios).
        unsafe { ext::lcfs_bio_clear_complete_in_task(bio.cast()) };
    }
    // SAFETY: `wpc` is iomap's live context for this submission (the callback's contract), and
    // this is the one call that hands its pending ioend (if any) on: submitted, or with
    // `error`, completed through the bio's end handler. Nothing here touches the ioend after.
    unsafe { ext::iomap_ioend_writeback_submit(wpc, error) }
}

/// Bio completion of a written ioend: may run in interrupt context, so it only queues the ioend
/// for [`WrittenIoend::finish`].
///
/// # Safety
///
/// Called only by the block layer, for the bio of an ioend submitted by
/// `writeback_submit_callback::<T>`.
unsafe extern "C" fn writeback_end_io<T: DataOperations>(bio: *mut bindings::bio) {
    // Once `queue_written` publishes the ioend, a running worker may end its writeback and the
    // filesystem may unmount before this function returns; `put_super` waits for an RCU grace
    // period, so the per-mount state outlives this read-side section.
    let _rcu = kernel::sync::rcu::read_lock();
    // SAFETY: the bio is the `io_bio` of an ioend (see the contract), which its completion owns
    // now.
    let ioend = unsafe { kernel::container_of!(bio, ext::iomap_ioend, io_bio) };
    // SAFETY: `bio` is the completed bio the block layer passes its end handler, live for the
    // call.
    let status = unsafe { (*bio).bi_status };
    // SAFETY: `blk_status_to_errno` maps a status code to an errno; it dereferences nothing.
    let errno = unsafe { bindings::blk_status_to_errno(status) };
    // SAFETY: the ioend is owned by its completion (see the contract), so nothing else writes
    // `io_error` now.
    unsafe { (*ioend).io_error = errno };
    // SAFETY: the ioend is live (owned here); `io_inode` is fixed for its life.
    let inode = unsafe { (*ioend).io_inode };
    // SAFETY: the inode is referenced by the ioend's folios under writeback; `i_sb` is fixed.
    let sb = unsafe { (*inode).i_sb };
    // SAFETY: until the ioend is queued, its folios under writeback pin the inode and so the
    // mounted superblock, whose `s_fs_info` (a `SbInfo<T>`: the ioend is of a file of `T`) stays
    // until `put_super`; after that, the RCU section does. Only a shared reference is made.
    let info = unsafe { &*(*sb).s_fs_info.cast::<SbInfo<T>>() };
    // SAFETY: the ioend's inode is an initialised regular file of `T` (its writeback was
    // submitted by `writeback_submit_callback::<T>`), pinned by the folios under writeback.
    let lane = T::completion_lane(unsafe { Inode::<T>::from_raw(inode.cast()) });
    // SAFETY: a completed ioend of a file of this superblock, submitted by
    // `writeback_submit_callback::<T>` (the only place this handler is installed) and no longer
    // used by the block layer; the RCU read lock is held: `queue_written`'s contract.
    unsafe { info.queue_written(ioend, lane) };
}

/// A completed writeback ioend of a file of `T`, to be recorded and finished.
///
/// # Invariants
///
/// `ioend` is a completed ioend of a regular file of `T`, submitted by
/// `writeback_submit_callback::<T>` and owned by this value; its folios under writeback pin
/// its inode until it is finished.
pub(super) struct WrittenIoend<T: DataOperations> {
    ioend: *mut ext::iomap_ioend,
    _fs: PhantomData<T>,
}

impl<T: DataOperations> WrittenIoend<T> {
    /// # Safety
    ///
    /// `ioend` is a completed ioend of a file of `T`, submitted by
    /// `writeback_submit_callback::<T>` and owned by the caller, who hands it over.
    pub(super) unsafe fn new(ioend: *mut ext::iomap_ioend) -> Self {
        // INVARIANT: per the contract.
        Self {
            ioend,
            _fs: PhantomData,
        }
    }

    /// Records the completed write with [`DataOperations::write_done`], then ends writeback of
    /// its folios (and frees the ioend): `fsync`, which waits for writeback, then sees every
    /// completed write recorded.
    pub(super) fn finish(self) {
        let ioend = self.ioend;
        // SAFETY: the ioend is live and owned by `self` until finished below (type invariant);
        // plain field reads.
        let (mut result, inode, offset, size) = unsafe {
            (
                (*ioend).io_error,
                (*ioend).io_inode,
                (*ioend).io_offset,
                (*ioend).io_size,
            )
        };
        if result == 0 {
            // SAFETY: the ioend's inode is an initialised regular file of `T`, pinned by its
            // folios under writeback (type invariant).
            let file = unsafe { Inode::<T>::from_raw(inode.cast()) };
            let offset = u64::try_from(offset).unwrap_or(0);
            let size = u64::try_from(size).unwrap_or(0);
            if let Err(e) = T::write_done(file, offset, size) {
                result = e.to_errno();
            }
        }
        // SAFETY: the ioend is ours (type invariant) and nothing uses it after this call, which
        // ends writeback of its folios (recording `result` in the mapping on failure) and frees
        // it with its bio. `file` above is not used past `write_done`, and the folios'
        // writeback pinned the inode until here.
        unsafe { ext::iomap_finish_ioends(ioend, result) };
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `page_mkwrite`.
unsafe extern "C" fn page_mkwrite_callback<T: Operations>(
    vmf: *mut bindings::vm_fault,
) -> bindings::vm_fault_t {
    // SAFETY: `page_mkwrite`'s contract: `vmf` is the live write fault on a shared mapping of
    // one of our files, whose VMA holds a reference to the file for the fault.
    let file = unsafe { ext::lcfs_vmf_file(vmf.cast()) };
    // SAFETY: `file` is live for the fault; `file_inode` reads `f_inode`, fixed while it is
    // open.
    let inode = unsafe { ext::lcfs_file_inode(file) };
    // SAFETY: `inode` is live (the open file references it); `i_sb` is fixed, and the
    // superblock is mounted while the file is open.
    let sb = unsafe { (*inode).i_sb };
    // SAFETY: `sb` is live for the fault; the matching `sb_end_pagefault` below runs on every
    // path, on this task.
    unsafe { ext::lcfs_sb_start_pagefault(sb.cast()) };
    // SAFETY: `inode` has our file operations (its file is one of our regular files), so it is
    // an initialised inode of `T`, live while the mapping's file is.
    let typed = unsafe { Inode::<T>::from_raw(inode) };
    // A page of an immutable or append-only file is not written through a mapping (`chattr`
    // wrote the file back, so its pages fault here again): SIGBUS, as ext4 answers. A shared
    // writable mapping of such a file cannot be made; this is one made before.
    let ret = match typed
        .super_block()
        .live()
        .and_then(|()| typed.check_data_change(false))
        .and_then(|()| Change::start(typed))
    {
        // SAFETY: the live fault, with the freeze protection held (above), as `mkwrite` needs.
        Ok(_change) => unsafe { mkwrite::<T>(vmf, file, inode) },
        // What `vmf_error` answers.
        Err(e) if e == ENOMEM => bindings::vm_fault_reason_VM_FAULT_OOM,
        Err(_) => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
    };
    // SAFETY: `sb_start_pagefault` was called above on this task; this ends it once.
    unsafe { ext::lcfs_sb_end_pagefault(sb.cast()) };
    ret
}

/// The write fault of `page_mkwrite` once the change started: the file's times and iomap's
/// fault handling.
///
/// # Safety
///
/// `vmf` is a live write fault on a shared mapping of `file`, one of our regular files, whose
/// inode is `inode`; the superblock's page-fault freeze protection is held.
unsafe fn mkwrite<T: Operations>(
    vmf: *mut bindings::vm_fault,
    file: *mut bindings::file,
    inode: *mut bindings::inode,
) -> bindings::vm_fault_t {
    // SAFETY: `file` is live for the fault, and its superblock's write protection is held
    // (contract), as changing its times needs.
    unsafe { bindings::file_update_time(file.cast()) };
    // SAFETY: `inode` is live; `i_mapping` is fixed for an inode of ours.
    let mapping = unsafe { (*inode).i_mapping };
    // SAFETY: `mapping` is live for the fault; the shared `invalidate_lock` is released below on
    // this task, and serialises against truncate and hole punching (which take it exclusively).
    unsafe { ext::lcfs_invalidate_lock_shared(mapping.cast()) };
    // SAFETY: the live fault, with the freeze protection and the shared `invalidate_lock` held
    // as `iomap_page_mkwrite` expects; the operations are static.
    let ret =
        unsafe { ext::iomap_page_mkwrite(vmf.cast(), &Tables::<T>::WRITE_OPS, ptr::null_mut()) };
    // SAFETY: the shared `invalidate_lock` of `mapping` was taken above on this task, once.
    unsafe { ext::lcfs_invalidate_unlock_shared(mapping.cast()) };
    ret
}

/// The content file reads of open regular file `file` go through (page-cache sharing), if it
/// has one and its inode still shares.
///
/// # Safety
///
/// `file` must be a live open regular file with our file operations, open for the call.
unsafe fn content_file<T: Operations>(file: *mut bindings::file) -> Option<*mut bindings::file> {
    // SAFETY: `file` is live (contract); `private_data` of our regular files is set only by
    // `open_callback`, before the file is installed, and cleared by nobody until `release`.
    let sf = unsafe { ext::lcfs_file_private(file.cast()) }.cast::<bindings::file>();
    if sf.is_null() {
        return None;
    }
    // SAFETY: `file` is a live open regular file of ours (contract).
    let inode = unsafe { file_inode::<T>(file) };
    T::shares(inode).then_some(sf)
}

/// The `fiemap` entry of regular files' `inode_operations`.
pub(super) const fn fiemap_operation<T: Operations>() -> Option<
    unsafe extern "C" fn(
        *mut bindings::inode,
        *mut bindings::fiemap_extent_info,
        u64,
        u64,
    ) -> c_int,
> {
    Some(fiemap_callback::<T>)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fiemap`.
unsafe extern "C" fn fiemap_callback<T: Operations>(
    inode: *mut bindings::inode,
    fieinfo: *mut bindings::fiemap_extent_info,
    start: u64,
    len: u64,
) -> c_int {
    // SAFETY: `fiemap`'s contract: `inode` is a live regular file with our inode operations
    // (only regular files have this entry), so an initialised inode of `T`, referenced by the
    // caller's open file for the call.
    let typed = unsafe { Inode::<T>::from_raw(inode) };
    if let Err(e) = typed.super_block().live() {
        return e.to_errno();
    }
    // iomap walks the mapping under `i_rwsem`, as for SEEK_DATA; `fiemap_prep` inside writes
    // dirty pages back first when the caller asks (`FIEMAP_FLAG_SYNC`).
    let _lock = typed.lock();
    // SAFETY: `inode` is live and its `i_rwsem` held (`_lock`); `fieinfo` is the caller's live
    // request, which iomap fills through `fiemap_fill_next_extent`; the operations are static.
    unsafe {
        ext::iomap_fiemap(
            inode.cast(),
            fieinfo.cast(),
            start,
            len,
            &Tables::<T>::REPORT_OPS,
        )
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `read_iter`.
unsafe extern "C" fn read_iter_callback<T: Operations>(
    iocb: *mut bindings::kiocb,
    to: *mut bindings::iov_iter,
) -> isize {
    // SAFETY: `read_iter`'s contract: `iocb` is live for the call and `ki_filp` is the open
    // file read from, one of our regular files.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: `file` is a live open regular file of ours, pinned for the call. Cached pages
    // too are refused once shut down.
    if let Some(e) = unsafe { shut_down::<T>(file) } {
        // CAST: an errno, in `ssize_t`'s range.
        return e as isize;
    }
    // SAFETY: `iocb` is live for the call (contract); a flag read.
    if unsafe { ext::lcfs_iocb_direct(iocb.cast()) } {
        // SAFETY: the live arguments of the call, an O_DIRECT read of our regular file `file`.
        if let Some(ret) = unsafe { direct_read::<T>(iocb, to, file) } {
            return ret;
        }
    }
    // SAFETY: `file` is a live open regular file of ours, pinned for the call.
    match unsafe { content_file::<T>(file) } {
        // SAFETY: the live arguments of the call; `sf` is the backing file `file` holds until
        // `release`, open for reading.
        Some(sf) => unsafe { ext::lcfs_content_read_iter(iocb.cast(), to.cast(), sf) },
        // SAFETY: the live arguments of the call. An O_DIRECT read that gets here is one direct
        // I/O cannot serve: it reads through the page cache (`generic_file_read_iter` would
        // call the `direct_IO` operation, which iomap filesystems do not have).
        None if unsafe { ext::lcfs_iocb_direct(iocb.cast()) } => unsafe {
            ext::lcfs_buffered_read_iter(iocb.cast(), to.cast())
        },
        // SAFETY: the live arguments of the call, forwarded unchanged to the generic read.
        None => unsafe { bindings::generic_file_read_iter(iocb, to) },
    }
}

/// A direct read of `file`, or `None` when direct I/O cannot serve it (not in whole device
/// sectors): the caller then reads through the page cache.
///
/// # Safety
///
/// `iocb` and `to` are the live arguments of a `read_iter` call on `file`, a live open regular
/// file of ours opened with `O_DIRECT`.
unsafe fn direct_read<T: Operations>(
    iocb: *mut bindings::kiocb,
    to: *mut bindings::iov_iter,
    file: *mut bindings::file,
) -> Option<isize> {
    // SAFETY: `file` is a live open regular file of ours (contract).
    let inode = unsafe { file_inode::<T>(file) };
    // SAFETY: `iocb` and `to` are live (contract); plain reads.
    let (pos, count) = unsafe { ((*iocb).ki_pos, ext::lcfs_iov_iter_count(to.cast())) };
    // SAFETY: the superblock of an open file is live and has its device.
    let sector = u64::from(unsafe { ext::lcfs_dio_read_align(inode.super_block().bdev()) });
    let (pos, count) = (u64::try_from(pos).ok()?, u64::try_from(count).ok()?);
    if count == 0 || sector == 0 || (pos | count) % sector != 0 {
        return None;
    }
    let ret = {
        // Writes, truncates and hole punches wait; an asynchronous read that outlives the call
        // is waited for by them (`Inode::dio_wait`).
        let _lock = inode.lock_shared();
        // SAFETY: the live arguments of the call, with `i_rwsem` held shared (`_lock`) as iomap's
        // direct reads need; the operations are static; reads have no completion hook.
        unsafe {
            ext::lcfs_dio_rw(
                iocb.cast(),
                to.cast(),
                &Tables::<T>::READ_OPS,
                ptr::null(),
                0,
            )
        }
    };
    // SAFETY: `file` is live for the call; the access time update takes its own locks.
    unsafe { ext::lcfs_file_accessed(file.cast()) };
    Some(ret)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `splice_read`.
unsafe extern "C" fn splice_read_callback<T: Operations>(
    file: *mut bindings::file,
    ppos: *mut bindings::loff_t,
    pipe: *mut bindings::pipe_inode_info,
    len: usize,
    flags: c_uint,
) -> isize {
    // SAFETY: `splice_read`'s contract: `file` is a live open regular file of ours.
    if let Some(e) = unsafe { shut_down::<T>(file) } {
        // CAST: an errno, in `ssize_t`'s range.
        return e as isize;
    }
    // SAFETY: `splice_read`'s contract: `file` is a live open regular file of ours.
    match unsafe { content_file::<T>(file) } {
        // SAFETY: the live arguments of the call; `sf` is the backing file `file` holds until
        // `release`, open for reading.
        Some(sf) => unsafe {
            ext::lcfs_content_splice_read(file.cast(), sf, ppos, pipe.cast(), len, flags)
        },
        // SAFETY: the live arguments of the call, forwarded unchanged to the generic splice.
        None => unsafe { bindings::filemap_splice_read(file, ppos, pipe, len, flags) },
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `mmap`.
unsafe extern "C" fn mmap_callback<T: Operations>(
    file: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: `mmap`'s contract: `file` is a live open regular file of ours.
    if let Some(e) = unsafe { shut_down::<T>(file) } {
        return e;
    }
    // SAFETY: `mmap`'s contract: `file` is a live open regular file of ours.
    match unsafe { content_file::<T>(file) } {
        // SAFETY: `vma` is the mapping being set up for `file`, ours to fill for the call; `sf`
        // is the backing file `file` holds, open for reading: the helper makes the mapping hold
        // its own reference to `sf` instead of `file`.
        Some(sf) => unsafe { ext::lcfs_content_mmap(file.cast(), vma.cast(), sf) },
        // SAFETY: `vma` is the mapping being set up for `file`, ours to fill for the call; the
        // operations are static, so they outlive the mapping.
        None => unsafe {
            ext::lcfs_file_mmap(
                file.cast(),
                vma.cast(),
                ptr::from_ref(&Tables::<T>::VM_OPS).cast(),
            )
        },
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fadvise`.
unsafe extern "C" fn fadvise_callback<T: Operations>(
    file: *mut bindings::file,
    offset: bindings::loff_t,
    len: bindings::loff_t,
    advice: c_int,
) -> c_int {
    // SAFETY: `fadvise`'s contract: `file` is a live open file of ours (regular: only their
    // operations have this callback).
    match unsafe { content_file::<T>(file) } {
        // SAFETY: `sf` is the backing file `file` holds, live for the call.
        Some(sf) => unsafe { ext::lcfs_content_fadvise(sf, offset, len, advice) },
        // SAFETY: the live arguments of the call, forwarded unchanged to the generic advice.
        None => unsafe { bindings::generic_fadvise(file, offset, len, advice) },
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `open`.
unsafe extern "C" fn open_callback<T: Operations>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `open`'s contract: `inode` and `file` are the live inode and file being opened,
    // forwarded unchanged to the generic `open` this one extends.
    let r = unsafe { bindings::generic_file_open(inode, file) };
    if r != 0 {
        return r;
    }
    // SAFETY: the inode of a file being opened with our file operations: a live, initialised
    // inode of `T`, referenced by the opening path for the call.
    let typed = unsafe { Inode::<T>::from_raw(inode) };
    if let Err(e) = typed.super_block().live() {
        return e.to_errno();
    }
    // SAFETY: `file` is the live file being opened, not yet installed: its mode is ours to
    // change. The VFS checks the flag for O_DIRECT after `open` and in `fcntl(F_SETFL)`.
    unsafe { ext::lcfs_file_set_can_odirect(file.cast()) };
    // SAFETY: `file` is the live file being opened; its `f_mode` was set before `open`.
    if unsafe { ext::lcfs_file_writable(file.cast()) } {
        return if T::HAS_OPEN_WRITER {
            from_result(|| T::open_writer(typed).map(|()| 0))
        } else {
            0
        };
    }
    // A truncating open changes the contents right after: it reads them through its own cache.
    // SAFETY: `file` is the live file being opened; its flags were set before `open`.
    if !T::HAS_CONTENT || unsafe { ext::lcfs_file_truncating(file.cast()) } {
        return 0;
    }
    from_result(|| {
        let Some(content) = T::content(typed)? else {
            return Ok(0);
        };
        // SAFETY: `file` is the live file being opened, on a mount of the superblock that
        // `content` (a live, initialised content inode, referenced by `content`) belongs to;
        // the helper takes its own references and returns a backing file or an error pointer.
        let sf = unsafe { ext::lcfs_content_open(file.cast(), content.as_ptr().cast()) };
        // SAFETY: `lcfs_err_ptr` only decodes the pointer value.
        to_result(unsafe { ext::lcfs_err_ptr(sf.cast()) } as c_int)?;
        // SAFETY: `file` is being opened, not yet installed anywhere: nobody else reads its
        // `private_data`, which `release_callback` puts back to a reference drop.
        unsafe { ext::lcfs_file_set_private(file.cast(), sf.cast()) };
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `release`.
unsafe extern "C" fn release_callback<T: Operations>(
    inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `release`'s contract: `file` is the live file being released; its mode does not
    // change after open.
    if unsafe { ext::lcfs_file_writable(file.cast()) } {
        if T::HAS_OPEN_WRITER {
            // SAFETY: `inode` is the file's inode, which has our file operations, so an
            // initialised inode of `T`, referenced by the file until `release` returns.
            let inode = unsafe { Inode::<T>::from_raw(inode) };
            T::release_writer(inode);
        }
        return 0;
    }
    // SAFETY: `file` is live and being released: nothing else uses its `private_data`.
    let sf = unsafe { ext::lcfs_file_private(file.cast()) };
    if !sf.is_null() {
        // SAFETY: a non-null `private_data` of our regular file is the backing file
        // `open_callback` opened for it; this drops the file's one reference to it, once.
        // Mappings hold references of their own.
        unsafe { ext::lcfs_fput(sf.cast()) };
    }
    0
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `llseek`.
unsafe extern "C" fn llseek_callback<T: Operations>(
    file: *mut bindings::file,
    offset: bindings::loff_t,
    whence: c_int,
) -> bindings::loff_t {
    // CAST: SEEK_* constants are small.
    let (hole, data) = (bindings::SEEK_HOLE as c_int, bindings::SEEK_DATA as c_int);
    if whence != hole && whence != data {
        // SAFETY: `llseek`'s contract: the live arguments of the call, forwarded unchanged to the
        // generic `llseek` this one extends.
        return unsafe { bindings::generic_file_llseek(file, offset, whence) };
    }
    // SAFETY: `llseek`'s contract: `file` is a live open file with our regular-file operations,
    // pinned for the call.
    let inode = unsafe { file_inode::<T>(file) };
    let raw = inode.as_ptr().cast();
    let ops = &Tables::<T>::READ_OPS;
    let pos = {
        // iomap walks the mapping under `i_rwsem`, as XFS does.
        let _lock = inode.lock();
        if whence == hole {
            // SAFETY: `raw` is a live regular file (pinned by `file`) whose `i_rwsem` `_lock`
            // holds, as iomap's walk of the mapping needs; the operations are static.
            unsafe { ext::iomap_seek_hole(raw, offset, ops) }
        } else {
            // SAFETY: `raw` is a live regular file (pinned by `file`) whose `i_rwsem` `_lock`
            // holds, as iomap's walk of the mapping needs; the operations are static.
            unsafe { ext::iomap_seek_data(raw, offset, ops) }
        }
    };
    if pos < 0 {
        return pos;
    }
    let sb = inode.super_block().as_ptr();
    // SAFETY: `sb` is the live, mounted superblock of the open file; `s_maxbytes` is fixed at
    // mount.
    let max = unsafe { (*sb).s_maxbytes };
    // SAFETY: `file` is the live file of the call, whose position `llseek` may set
    // (`f_pos_lock` is the VFS's business; `vfs_setpos` takes `f_lock` itself).
    unsafe { bindings::vfs_setpos(file, pos, max) }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `write_iter`.
unsafe extern "C" fn write_iter_callback<T: Operations>(
    iocb: *mut bindings::kiocb,
    from: *mut bindings::iov_iter,
) -> isize {
    // SAFETY: `write_iter`'s contract: `iocb` is live for the call, and `ki_filp` is the open
    // file written to.
    let file = unsafe { (*iocb).ki_filp };
    // SAFETY: `file` is a live open file with our regular-file operations, pinned for the call.
    let inode = unsafe { file_inode::<T>(file) };
    if let Err(e) = inode.super_block().live() {
        // CAST: an errno, in `ssize_t`'s range.
        return e.to_errno() as isize;
    }
    // SAFETY: `iocb` is live (contract); its flags are set by the caller before the call and
    // read whole.
    let iocb_flags = unsafe { (*iocb).ki_flags };
    // CAST: the flags are non-negative bit masks of an `int` field.
    let (appending, direct) = (
        iocb_flags & ext::LCFS_IOCB_APPEND as c_int != 0,
        iocb_flags & ext::LCFS_IOCB_DIRECT as c_int != 0,
    );
    let mut ret = {
        // `i_rwsem` is taken here, as for any buffered write, and covers the size update.
        let _lock = inode.lock();
        // As ext4: no write to an immutable file; an append-only one takes appends only (the VFS
        // opens it for writing only with O_APPEND, but a descriptor opened before `chattr +a`
        // has none). Under `i_rwsem`, which a `chattr` takes too.
        if let Err(e) = inode.check_data_change(appending) {
            // CAST: an errno, in `ssize_t`'s range.
            return e.to_errno() as isize;
        }
        let _change = match Change::start(inode) {
            Ok(c) => c,
            // CAST: an errno, in `ssize_t`'s range.
            Err(e) => return e.to_errno() as isize,
        };
        // SAFETY: `iocb` and `from` are the live arguments of the call, and `i_rwsem` is held
        // (`_lock`), as `generic_write_checks` requires (it may shorten `from`).
        let mut ret = unsafe { bindings::generic_write_checks(iocb, from) };
        if ret > 0 {
            // SAFETY: `file` is the live file of the call, with `i_rwsem` held (`_lock`), as
            // `file_modified` (which may update times and drop privileges) requires.
            let r = unsafe { bindings::file_modified(file) };
            // CAST: an errno or zero, in `ssize_t`'s range.
            ret = r as isize;
            if ret == 0 {
                // Only a direct write stores the size here (below).
                let old = if direct { inode.size() } else { 0 };
                let mut written = 0;
                if direct {
                    // SAFETY: the live arguments of the call, checked, with `i_rwsem` held.
                    written = unsafe { direct_write::<T>(iocb, from, inode) };
                }
                // SAFETY: `from` is live (contract); a plain read.
                let done = direct && unsafe { ext::lcfs_iov_iter_count(from.cast()) } == 0;
                ret = if written < 0 || done {
                    written
                } else {
                    // Under `i_rwsem`: a shutdown since the check on entry is seen here.
                    let quick = !direct
                        && iocb_flags & (ext::LCFS_IOCB_NOWAIT | ext::LCFS_IOCB_DONTCACHE) as c_int
                            == 0
                        && inode.super_block().live().is_ok()
                        && T::dirty_keeps_mapping(inode);
                    let copied = if quick {
                        // SAFETY: `iocb` and `from` are the live arguments of a buffered write,
                        // checked above, with `i_rwsem` held (`_lock`) and the change started
                        // (`_change`); `T` keeps this file's dirty folios' mappings (`quick`).
                        unsafe { write_dirty_folio(iocb, from, inode) }
                    } else {
                        0
                    };
                    // SAFETY: `from` is live (contract); a plain read.
                    let left = unsafe { ext::lcfs_iov_iter_count(from.cast()) };
                    let buffered = if left == 0 {
                        copied
                    } else {
                        // SAFETY: `iocb` and `from` are the live arguments, checked above, with
                        // `i_rwsem` held (`_lock`) as buffered writes need; the operations are
                        // static. `ki_pos` and `from` are past what was copied already.
                        let more = unsafe {
                            ext::iomap_file_buffered_write(
                                iocb.cast(),
                                from.cast(),
                                &Tables::<T>::WRITE_OPS,
                                &Tables::<T>::FOLIO_OPS,
                                ptr::null_mut(),
                            )
                        };
                        match (copied, more) {
                            (0, m) => m,
                            (c, m) if m < 0 => c,
                            (c, m) => c.saturating_add(m),
                        }
                    };
                    if direct {
                        // What direct I/O left to the page cache is written back and dropped
                        // there, as O_DIRECT promises.
                        // SAFETY: the live arguments, after a buffered write of `buffered`
                        // bytes (or its error) following `written` direct bytes.
                        unsafe {
                            ext::lcfs_direct_write_fallback(
                                iocb.cast(),
                                from.cast(),
                                written,
                                buffered,
                            )
                        }
                    } else {
                        buffered
                    }
                };
                // A buffered write's size reaches the record with its data (`write_done`);
                // a direct one's data is on the disk already.
                let new = if direct { inode.size() } else { 0 };
                if new > old {
                    if let Err(e) = T::store_size(inode, u64::try_from(new).unwrap_or(0)) {
                        if ret >= 0 {
                            ret = e.to_errno() as isize;
                        }
                    }
                }
            }
        }
        ret
    };
    if ret > 0 {
        // SAFETY: `iocb` is the live `iocb` of the call; `i_rwsem` was released (`_lock`
        // dropped), as `generic_write_sync` (which may fsync) needs.
        ret = unsafe { ext::lcfs_generic_write_sync(iocb.cast(), ret) };
    }
    ret
}

/// A buffered write that falls within one cached folio which an earlier write of the file
/// dirtied: copied there without mapping its block again (see
/// [`DataOperations::dirty_keeps_mapping`]). Small appends and rewrites of a log are mostly
/// such writes. Returns the bytes copied, with `ki_pos` and `from` advanced past them: 0 when the
/// write does not qualify (the folio absent, clean, under writeback or not uptodate, the write
/// across a folio's end or starting past the end of the file), less than asked when the copy
/// faulted. The caller writes the rest through iomap.
///
/// # Safety
///
/// `iocb` and `from` are the live arguments of a buffered `write_iter` call on a regular file of
/// ours whose inode is `inode`, checked by `generic_write_checks`, with `i_rwsem` held by this
/// task and the change started; `T::dirty_keeps_mapping` said yes for `inode`.
unsafe fn write_dirty_folio<T: Operations>(
    iocb: *mut bindings::kiocb,
    from: *mut bindings::iov_iter,
    inode: &Inode<T>,
) -> isize {
    // Folio offsets below are block offsets: one block per small folio.
    if BS != kernel::page::PAGE_SIZE as u64 {
        return 0;
    }
    // SAFETY: `iocb` and `from` are live (contract); plain reads.
    let (pos, count) = unsafe { ((*iocb).ki_pos, ext::lcfs_iov_iter_count(from.cast())) };
    let (Ok(pos_u), Ok(count_u)) = (u64::try_from(pos), u64::try_from(count)) else {
        return 0;
    };
    let offset = pos_u % BS;
    // Not past the end: the gap would have to read as zeros, and a shared mapping may have
    // written past the end in that folio (left to iomap's path).
    if count_u == 0 || offset.saturating_add(count_u) > BS || pos > inode.size() {
        return 0;
    }
    let (Ok(index), Ok(offset)) = (c_ulong::try_from(pos_u / BS), usize::try_from(offset)) else {
        return 0;
    };
    let mapping = inode.mapping();
    // SAFETY: `mapping` is the live inode's own mapping; no lock is held that writeback needs
    // (`i_rwsem` is not one), as for iomap, which calls it before each folio too.
    unsafe { bindings::balance_dirty_pages_ratelimited(mapping) };
    // SAFETY: `mapping` is live; the folio returned, if any, is locked and referenced for us.
    let folio = unsafe { ext::lcfs_lock_dirty_folio(mapping.cast(), index) };
    if folio.is_null() {
        return 0;
    }
    // Dirty, so a write mapped its block since its last writeback, and that mapping stays
    // (`dirty_keeps_mapping`): nothing to map. Uptodate: nothing to read. Locked: writeback
    // cannot clean it before the copy is in, and it stays dirty without being marked again.
    // SAFETY: `folio` is locked and referenced; `offset + count` is within its one page
    // (checked above); `from` is live and copies out of user memory with faults disabled.
    let copied = unsafe { ext::lcfs_copy_to_folio(folio, offset, count, from.cast()) };
    // CAST: at most `count`, which is at most a block.
    let end = pos.saturating_add(copied as bindings::loff_t);
    if end > inode.size() {
        // SAFETY: `i_rwsem` is held (contract), which serialises `i_size_write`rs as it
        // requires; the folio with the new bytes is still locked, as iomap has it.
        unsafe { ext::lcfs_i_size_write(inode.as_ptr().cast(), end) };
    }
    // SAFETY: `folio` is ours, locked and referenced (above); released once each.
    unsafe {
        bindings::folio_unlock(folio.cast());
        ext::lcfs_folio_put(folio);
    }
    // SAFETY: `iocb` is live (contract); its position is ours to move, under `i_rwsem`.
    unsafe { (*iocb).ki_pos = end };
    // CAST: at most a block.
    copied as isize
}

/// The direct part of an O_DIRECT write: the bytes written (the iterator advanced past them),
/// 0 when direct I/O cannot serve the request (not in whole blocks, or cached pages that cannot
/// be dropped), or a negative errno. The rest is the caller's to write through the page cache.
///
/// # Safety
///
/// `iocb` and `from` are the live arguments of a `write_iter` call on a regular file of ours
/// whose inode is `inode`, checked by `generic_write_checks`, with `i_rwsem` held by this task
/// and the change started.
unsafe fn direct_write<T: Operations>(
    iocb: *mut bindings::kiocb,
    from: *mut bindings::iov_iter,
    inode: &Inode<T>,
) -> isize {
    // SAFETY: `iocb` and `from` are live (contract); plain reads.
    let (pos, count) = unsafe { ((*iocb).ki_pos, ext::lcfs_iov_iter_count(from.cast())) };
    let (Ok(pos_u), Ok(count)) = (u64::try_from(pos), u64::try_from(count)) else {
        return 0;
    };
    if count == 0 || (pos_u | count) % BS != 0 {
        return 0;
    }
    let size = u64::try_from(inode.size()).unwrap_or(0);
    if pos_u > size && size % BS != 0 {
        // The cached last block past the old end may hold bytes a shared mapping wrote there;
        // the write makes them part of the file: zero them first, as XFS does.
        let _inval = inode.invalidate_lock();
        // SAFETY: `i_rwsem` (contract) and `invalidate_lock` (`_inval`) are held.
        if let Err(e) = unsafe { zero_range(inode, size, block_ceil(size).min(pos_u)) } {
            // CAST: an errno, in `ssize_t`'s range.
            return e.to_errno() as isize;
        }
    }
    // SAFETY: the live arguments of the call, with `i_rwsem` held (contract) as iomap's direct
    // writes need; the operations are static. Completion is waited for (so `dio_end_io_callback`
    // runs on this task, under `i_rwsem`), even for an asynchronous iocb.
    let ret = unsafe {
        ext::lcfs_dio_rw(
            iocb.cast(),
            from.cast(),
            &Tables::<T>::WRITE_OPS,
            &Tables::<T>::DIO_OPS,
            ext::IOMAP_DIO_FORCE_WAIT | ext::IOMAP_DIO_FSBLOCK_ALIGNED,
        )
    };
    // CAST: `ENOTBLK` is a small positive constant.
    if ret == -(bindings::ENOTBLK as isize) {
        return 0;
    }
    ret
}

/// Completion of a direct write: the blocks written become the file's data
/// ([`DataOperations::write_done`], for new, unwritten and copied blocks) and the size grows
/// to cover them.
///
/// # Safety
///
/// Called only by iomap, with arguments that satisfy the C contract of `end_io`, for a direct
/// write started by [`direct_write`] (so on its task, with the file's `i_rwsem` held).
unsafe extern "C" fn dio_end_io_callback<T: Operations>(
    iocb: *mut bindings::kiocb,
    size: isize,
    error: c_int,
    flags: c_uint,
) -> c_int {
    if error != 0 {
        return error;
    }
    from_result(|| {
        let (Ok(len), true) = (u64::try_from(size), size > 0) else {
            return Ok(0);
        };
        // SAFETY: `end_io`'s contract: `iocb` is the live iocb of the write; `ki_filp` is our
        // regular file and `ki_pos` still the write's start.
        let (file, pos) = unsafe { ((*iocb).ki_filp, (*iocb).ki_pos) };
        // SAFETY: `file` is a live open regular file of ours, pinned by the iocb.
        let inode = unsafe { file_inode::<T>(file) };
        let start = u64::try_from(pos).map_err(|_| EINVAL)?;
        if flags & (ext::IOMAP_DIO_UNWRITTEN | ext::IOMAP_DIO_COW) != 0 {
            T::write_done(inode, start, len)?;
        }
        let end = pos.checked_add(i64::try_from(len)?).ok_or(EFBIG)?;
        if end > inode.size() {
            // SAFETY: a live inode whose `i_rwsem` the writing task holds (contract), which
            // serialises `i_size_write`rs as it requires.
            unsafe { ext::lcfs_i_size_write(inode.as_ptr().cast(), end) };
        }
        Ok(0)
    })
}

/// Both regular files of a remap locked, in the VFS's order for two non-directories: their
/// `i_rwsem` (by address), once when they are one file; with [`RemapLock::invalidate`], their
/// mappings' `invalidate_lock` too.
///
/// # Invariants
///
/// The current task holds `src`'s and `dst`'s `i_rwsem`, taken in [`RemapLock::new`], and their
/// `invalidate_lock` when `invalidate` says so; all are released on drop.
struct RemapLock<'a, T: Operations> {
    src: &'a Inode<T>,
    dst: &'a Inode<T>,
    invalidate: bool,
    // rw_semaphores are released by the task that took them.
    _not_send: kernel::types::NotThreadSafe,
}

impl<'a, T: Operations> RemapLock<'a, T> {
    fn new(src: &'a Inode<T>, dst: &'a Inode<T>) -> Self {
        // SAFETY: two live inodes (or one twice) for `'a`; the helper takes both `i_rwsem`s in
        // the VFS's order, once for one inode.
        unsafe { ext::lcfs_lock_two(src.as_ptr().cast(), dst.as_ptr().cast()) };
        // INVARIANT: locked above.
        Self {
            src,
            dst,
            invalidate: false,
            _not_send: kernel::types::NotThreadSafe,
        }
    }

    /// Takes both mappings' `invalidate_lock` too (after `i_rwsem` and a change's start, in
    /// the lock order): page faults stay out until the remap is done.
    fn invalidate(&mut self) {
        if !self.invalidate {
            // SAFETY: the two live inodes of the guard, whose `i_rwsem` this task holds (type
            // invariant); the helper takes both mappings' locks in the VFS's order.
            unsafe {
                ext::lcfs_invalidate_lock_two(self.src.as_ptr().cast(), self.dst.as_ptr().cast())
            };
            // INVARIANT: locked above.
            self.invalidate = true;
        }
    }
}

impl<T: Operations> Drop for RemapLock<'_, T> {
    fn drop(&mut self) {
        let (src, dst) = (self.src.as_ptr().cast(), self.dst.as_ptr().cast());
        if self.invalidate {
            // SAFETY: taken by this task in `RemapLock::invalidate` (type invariant).
            unsafe { ext::lcfs_invalidate_unlock_two(src, dst) };
        }
        // SAFETY: taken by this task in `RemapLock::new` (type invariant).
        unsafe { ext::lcfs_unlock_two(src, dst) };
    }
}

/// `remap_file_range`: `FICLONE`, `FICLONERANGE`, `FIDEDUPERANGE` and `copy_file_range` between
/// our regular files (the VFS checks both are on this superblock). The generic preparation
/// checks the request (block-aligned offsets, limits, immutable files), waits for direct I/O,
/// writes both ranges back, compares them for a dedupe and updates the destination's times;
/// then the destination's cached pages in the range go and the filesystem shares the blocks.
///
/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `remap_file_range`.
unsafe extern "C" fn remap_file_range_callback<T: Operations>(
    file_in: *mut bindings::file,
    pos_in: bindings::loff_t,
    file_out: *mut bindings::file,
    pos_out: bindings::loff_t,
    len: bindings::loff_t,
    flags: c_uint,
) -> bindings::loff_t {
    // SAFETY: `remap_file_range`'s contract: both are live open regular files with our
    // operations (the VFS calls `file_in`'s and checked that `file_out` is on the same
    // superblock, whose regular files all have these operations).
    let (src, dst) = unsafe { (file_inode::<T>(file_in), file_inode::<T>(file_out)) };
    let r = (|| -> Result<i64> {
        if flags & !(bindings::REMAP_FILE_DEDUP | bindings::REMAP_FILE_ADVISORY) != 0 {
            return Err(EINVAL);
        }
        dst.super_block().live()?;
        let mut lock = RemapLock::new(src, dst);
        // The preparation refuses an immutable destination; an append-only one takes no clone
        // either (it would replace a range, not append), whatever its descriptor's O_APPEND.
        dst.check_data_change(false)?;
        // After `i_rwsem` and before the `invalidate_lock` (`start_change`'s order).
        let _change = Change::start(dst)?;
        lock.invalidate();
        let mut len = len;
        // SAFETY: the live files of the call, with both inodes' `i_rwsem` and `invalidate_lock`
        // held (`lock`) as the preparation expects; `len` is a local it may shorten.
        to_result(unsafe {
            bindings::generic_remap_file_range_prep(
                file_in, pos_in, file_out, pos_out, &mut len, flags,
            )
        })?;
        if len == 0 {
            return Ok(0);
        }
        let (src_pos, dst_pos) = (u64::try_from(pos_in)?, u64::try_from(pos_out)?);
        let count = u64::try_from(len)?;
        // The preparation checked the offsets are block-aligned; a length short of a block
        // ends at the source's end, whose last block is shared whole.
        if src_pos % BS != 0 || dst_pos % BS != 0 {
            return Err(EINVAL);
        }
        let blocks = block_ceil(count);
        let end = pos_out.checked_add(len).ok_or(EFBIG)?;
        let last = i64::try_from(dst_pos.checked_add(blocks).ok_or(EFBIG)?)? - 1;
        // SAFETY: a live inode with its `i_rwsem` and `invalidate_lock` held (`lock`), as
        // dropping pages needs; the range is block-aligned.
        unsafe { bindings::truncate_pagecache_range(dst.as_ptr(), pos_out, last) };
        T::clone_range(src, src_pos, dst, dst_pos, blocks)?;
        let size = if end > dst.size() {
            // SAFETY: a live inode whose `i_rwsem` this task holds (`lock`), which
            // serialises `i_size_write`rs as it requires.
            unsafe { ext::lcfs_i_size_write(dst.as_ptr().cast(), end) };
            end
        } else {
            dst.size()
        };
        // The size and the times the preparation set.
        T::store_size(dst, u64::try_from(size)?)?;
        Ok(len)
    })();
    r.unwrap_or_else(|e| e.to_errno().into())
}

/// `fsync` of regular files and directories: waits for the file's writeback, then lets the
/// filesystem make the rest durable (for a directory, the names added, removed or moved in it).
///
/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fsync`.
pub(super) unsafe extern "C" fn fsync_callback<T: Operations>(
    file: *mut bindings::file,
    start: bindings::loff_t,
    end: bindings::loff_t,
    _datasync: c_int,
) -> c_int {
    from_result(|| {
        // SAFETY: `fsync`'s contract: `file` is a live open file of ours (this callback is only
        // in our tables).
        unsafe { file_inode::<T>(file) }.super_block().live()?;
        // SAFETY: `fsync`'s contract: `file` is the live file of the call, open with its mapping
        // live; no lock is held, as waiting for writeback needs. Writeback records each
        // completed write before the folios leave writeback, so after the wait the commit covers
        // all of them. A directory's mapping holds no folios, so for it the call only checks the
        // mapping's error state.
        to_result(unsafe { bindings::file_write_and_wait_range(file, start, end) })?;
        // SAFETY: this callback is installed only in the `file_operations` of our regular files
        // and directories, and `file` is live and open for the call (`fsync`'s contract).
        let inode = unsafe { file_inode::<T>(file) };
        T::fsync(inode)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fallocate`.
unsafe extern "C" fn fallocate_callback<T: Operations>(
    file: *mut bindings::file,
    mode: c_int,
    offset: bindings::loff_t,
    len: bindings::loff_t,
) -> c_long {
    // SAFETY: `fallocate`'s contract: `file` is a live open file with our regular-file
    // operations, pinned for the call.
    let inode = unsafe { file_inode::<T>(file) };
    if let Err(e) = inode.super_block().live() {
        // CAST: errno values fit any integer type.
        return e.to_errno() as c_long;
    }
    let r = {
        // SAFETY: `file` is the live file of the call, open for the whole block, and `inode` its
        // inode.
        let locked = unsafe { LockedFile::new(file, inode) };
        // CAST: `FALLOC_FL_KEEP_SIZE` is a small positive constant.
        let allocate_only = mode & !(ext::FALLOC_FL_KEEP_SIZE as c_int) == 0;
        // As the VFS checks before the lock (a `chattr` may have run since): nothing on an
        // immutable file, only allocation on an append-only one.
        inode
            .check_data_change(allocate_only)
            // After `i_rwsem` and before the `invalidate_lock` (`start_change`'s order).
            .and_then(|()| Change::start(inode))
            .and_then(|_change| locked.fallocate(mode, offset, len))
    };
    match r {
        Ok(()) => 0,
        // CAST: errno values fit any integer type.
        Err(e) => e.to_errno() as c_long,
    }
}

/// Zeroes bytes `[from, to)` of `inode` through the page cache.
///
/// # Safety
///
/// The current task holds `inode`'s `i_rwsem` and its mapping's `invalidate_lock`.
unsafe fn zero_range<T: Operations>(inode: &Inode<T>, from: u64, to: u64) -> Result {
    if to <= from {
        return Ok(());
    }
    let (f, l) = (i64::try_from(from)?, i64::try_from(to - from)?);
    // SAFETY: a live inode (`&Inode`), with `i_rwsem` and `invalidate_lock` held by the current
    // task (contract), as `iomap_zero_range` needs; the operations are static.
    to_result(unsafe {
        ext::iomap_zero_range(
            inode.as_ptr().cast(),
            f,
            l,
            ptr::null_mut(),
            &Tables::<T>::WRITE_OPS,
            &Tables::<T>::FOLIO_OPS,
            ptr::null_mut(),
        )
    })
}

/// An open regular file of `T` with its inode's `i_rwsem` held (writes and truncate wait).
///
/// # Invariants
///
/// `file` is a live open file whose inode is `inode`, live for `'a`; `_lock` holds that inode's
/// `i_rwsem`.
struct LockedFile<'a, T: Operations> {
    file: *mut bindings::file,
    inode: &'a Inode<T>,
    _lock: InodeGuard<'a, T>,
}

impl<'a, T: Operations> LockedFile<'a, T> {
    /// Takes `inode`'s `i_rwsem`.
    ///
    /// # Safety
    ///
    /// `file` is a live open file of `inode` for `'a`.
    unsafe fn new(file: *mut bindings::file, inode: &'a Inode<T>) -> Self {
        // INVARIANT: `file` and `inode` per the contract; the lock is taken here.
        Self {
            file,
            inode,
            _lock: inode.lock(),
        }
    }

    /// `fallocate`: allocate (mode 0 or `FALLOC_FL_KEEP_SIZE`), punch a hole, zero a range
    /// (`FALLOC_FL_ZERO_RANGE`: a punch, then unwritten blocks), or give the file its own copy
    /// of blocks it shares (`FALLOC_FL_UNSHARE_RANGE`). Collapsing and inserting ranges are
    /// `EOPNOTSUPP` (see `Documentation/features.md`).
    fn fallocate(&self, mode: c_int, offset: bindings::loff_t, len: bindings::loff_t) -> Result {
        let inode = self.inode;
        // CAST: the FALLOC_FL_* flags are small positive constants.
        let (keep, punch, zero, unshare) = (
            ext::FALLOC_FL_KEEP_SIZE as c_int,
            ext::FALLOC_FL_PUNCH_HOLE as c_int,
            ext::FALLOC_FL_ZERO_RANGE as c_int,
            ext::FALLOC_FL_UNSHARE_RANGE as c_int,
        );
        if offset < 0 || len <= 0 {
            return Err(EINVAL);
        }
        let end = offset.checked_add(len).ok_or(EFBIG)?;
        let (start_u, end_u) = (offset.unsigned_abs(), end.unsigned_abs());
        let size = inode.size();
        let how = mode & !keep;
        // A mode the filesystem does not implement changes nothing (the punch path zeroes and
        // drops cached pages before the filesystem's call).
        let supported = match how {
            0 => T::HAS_ALLOCATE,
            m if m == punch => mode & keep != 0 && T::HAS_PUNCH,
            m if m == zero => T::HAS_PUNCH && T::HAS_ALLOCATE,
            m if m == unshare => true,
            _ => false,
        };
        if !supported {
            return Err(EOPNOTSUPP);
        }
        let grows = mode & keep == 0 && end > size && (how == 0 || how == zero);
        if grows {
            // RLIMIT_FSIZE and the size limit: EFBIG (and SIGXFSZ for the rlimit), as writes
            // and truncates get them from the VFS; before anything changes.
            // SAFETY: a live inode (`&Inode`); the check only reads it and the task's limits.
            to_result(unsafe { bindings::inode_newsize_ok(inode.as_ptr(), end) })?;
        }
        // SAFETY: the live file of the call, with its inode's `i_rwsem` held (type invariant),
        // as `file_modified` requires.
        to_result(unsafe { bindings::file_modified(self.file) })?;
        // No direct read still in flight reads blocks this frees or moves.
        inode.dio_wait();
        if how == unshare {
            // Keeps page faults out while the range's pages are rewritten.
            let _inval = inode.invalidate_lock();
            // SAFETY: a live regular file with `i_rwsem` (type invariant) and `invalidate_lock`
            // held, as xfs holds both for an unshare; iomap reads each shared block's data into
            // the page cache through the source mapping and dirties it, so writeback gives the
            // file new blocks (the copy-on-write of a buffered write); the operations are static.
            return to_result(unsafe {
                ext::iomap_file_unshare(
                    inode.as_ptr().cast(),
                    offset,
                    len,
                    &Tables::<T>::UNSHARE_OPS,
                    &Tables::<T>::FOLIO_OPS,
                )
            });
        }
        if how == punch || how == zero {
            self.punch(offset, end)?;
        }
        if how == 0 || how == zero {
            let first = block_floor(start_u);
            T::allocate(inode, first, block_ceil(end_u) - first)?;
            if grows {
                // SAFETY: a live inode whose `i_rwsem` is held (type invariant), which serialises
                // `i_size_write`rs as it requires.
                unsafe { ext::lcfs_i_size_write(inode.as_ptr().cast(), end) };
                T::store_size(inode, end_u)?;
            }
        }
        Ok(())
    }

    /// Punches `[offset, end)`: the partial blocks at both ends zeroed through the page cache,
    /// the whole blocks in between dropped from the cache and then from the file.
    fn punch(&self, offset: bindings::loff_t, end: bindings::loff_t) -> Result {
        let inode = self.inode;
        let (start_u, end_u) = (offset.unsigned_abs(), end.unsigned_abs());
        // Keeps page faults out while blocks go.
        let _inval = inode.invalidate_lock();
        // SAFETY: the live mapping of `inode` (kept alive by `self`); no folio lock is held, as
        // waiting for writeback needs.
        to_result(unsafe {
            bindings::filemap_write_and_wait_range(inode.mapping(), offset, end - 1)
        })?;
        let first_full = block_ceil(start_u);
        let last_full = block_floor(end_u);
        if first_full >= last_full {
            // SAFETY: `i_rwsem` (type invariant) and `invalidate_lock` (above) are held.
            return unsafe { zero_range(inode, start_u, end_u) };
        }
        // SAFETY: `i_rwsem` (type invariant) and `invalidate_lock` (above) are held.
        unsafe { zero_range(inode, start_u, first_full) }?;
        // SAFETY: `i_rwsem` (type invariant) and `invalidate_lock` (above) are held.
        unsafe { zero_range(inode, last_full, end_u) }?;
        let (first, last) = (i64::try_from(first_full)?, i64::try_from(last_full)? - 1);
        // SAFETY: a live inode with `i_rwsem` (type invariant) and `invalidate_lock` (`_inval`)
        // held, as dropping its pages needs; `first..=last` is block-aligned.
        unsafe { bindings::truncate_pagecache_range(inode.as_ptr(), first, last) };
        T::punch(inode, first_full, last_full - first_full)
    }
}

/// A size change of a regular file: truncates or extends its page cache and data around the
/// filesystem's own size change, in the order that never exposes stale data (shrinking zeroes
/// the tail of the new last block and drops the cached pages past it before the blocks go;
/// growing records the size first).
///
/// # Invariants
///
/// `inode` is a regular file of `T` whose `i_rwsem` the current task holds for `'a`, and
/// `_inval` holds its mapping's `invalidate_lock` (page faults stay out while the size and
/// blocks change).
pub(super) struct Resize<'a, T: Operations> {
    inode: &'a Inode<T>,
    new: i64,
    _inval: InvalidateGuard<'a, T>,
}

impl<'a, T: Operations> Resize<'a, T> {
    /// Starts changing the size of `raw` to `size`.
    ///
    /// # Safety
    ///
    /// `raw` is a regular file of `T` whose `i_rwsem` the current task holds for `'a`.
    pub(super) unsafe fn new(raw: *mut bindings::inode, size: u64) -> Result<Self> {
        let new = i64::try_from(size).map_err(|_| EFBIG)?;
        // SAFETY: a live, initialised regular file of `T` for `'a` (contract).
        let inode = unsafe { Inode::<T>::from_raw(raw) };
        // No direct read still in flight reads blocks the size change frees.
        inode.dio_wait();
        // INVARIANT: regular file with `i_rwsem` held (contract); the lock is taken here.
        Ok(Self {
            inode,
            new,
            _inval: inode.invalidate_lock(),
        })
    }

    /// Changes the cached size and pages, and runs `store`, the filesystem's own change.
    pub(super) fn apply(self, store: impl FnOnce() -> Result) -> Result {
        let raw = self.inode.as_ptr();
        if self.new < self.inode.size() {
            // SAFETY: a live regular file with `i_rwsem` and `invalidate_lock` held by this task
            // (type invariant), as `iomap_truncate_page` needs; the operations are static.
            to_result(unsafe {
                ext::iomap_truncate_page(
                    raw.cast(),
                    self.new,
                    ptr::null_mut(),
                    &Tables::<T>::WRITE_OPS,
                    &Tables::<T>::FOLIO_OPS,
                    ptr::null_mut(),
                )
            })?;
            // SAFETY: a live regular file with `i_rwsem` and `invalidate_lock` held by this task
            // (type invariant), as `truncate_setsize` (size update and page truncation) needs.
            unsafe { bindings::truncate_setsize(raw, self.new) };
            store()
        } else {
            store()?;
            // SAFETY: a live regular file with `i_rwsem` and `invalidate_lock` held by this task
            // (type invariant), as `truncate_setsize` (size update) needs.
            unsafe { bindings::truncate_setsize(raw, self.new) };
            Ok(())
        }
    }
}

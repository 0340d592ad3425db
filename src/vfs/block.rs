// SPDX-License-Identifier: GPL-2.0

//! Metadata block access through the block device's page cache.
//!
//! Blocks are read with `read_mapping_folio` on the device's mapping, as erofs does, so metadata
//! shares the page cache and its reclaim with the rest of the system and needs no buffer heads.

use core::ptr::NonNull;

use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::prelude::*;

use super::bindings as ext;
use crate::format::BLOCK_SIZE;

/// Bytes per block as `usize`.
const BLOCK_BYTES: usize = BLOCK_SIZE as usize;

/// The byte offset of block `block` on the device, and the page-cache index of the page holding
/// it (a block is never larger than a page).
fn block_pos(block: u64) -> Result<(i64, usize)> {
    let pos = block
        .checked_mul(u64::from(BLOCK_SIZE))
        .and_then(|p| i64::try_from(p).ok())
        .ok_or(EINVAL)?;
    let index = usize::try_from(pos).map_err(|_| EINVAL)? >> kernel::page::PAGE_SHIFT;
    Ok((pos, index))
}

/// Reads block `block` of the device behind `mapping` and calls `f` with its bytes.
///
/// The folio stays referenced and mapped only for the duration of `f`, which keeps `kmap_local`
/// mappings strictly nested.
///
/// # Safety
///
/// `mapping` must be the `bd_mapping` of a block device that stays open for the call.
pub(super) unsafe fn with_block<R>(
    mapping: *mut bindings::address_space,
    block: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let (pos, index) = block_pos(block)?;
    // SAFETY: `mapping` is the mapping of a block device that stays open for the call (function
    // contract), so it is live; the helper returns a referenced, uptodate folio or an error
    // pointer, and may sleep (this is process context).
    let folio = from_err_ptr(unsafe { ext::lcfs_read_mapping_folio(mapping.cast(), index) })?;
    let folio = NonNull::new(folio).ok_or(EIO)?;
    let _put = FolioRef(folio);
    // SAFETY: the folio is live: `_put` holds the reference `read_mapping_folio` returned for
    // the rest of this function; `folio_pos` reads its index, fixed while it is in the mapping.
    let fpos = unsafe { ext::lcfs_folio_pos(folio.as_ptr().cast()) };
    // SAFETY: the folio is live (referenced by `_put`); `folio_size` reads its order, fixed
    // while it is referenced.
    let fsize = unsafe { ext::lcfs_folio_size(folio.as_ptr().cast()) };
    // A folio may be larger than a block; find the block inside it.
    let offset = pos
        .checked_sub(fpos)
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| o.checked_add(BLOCK_BYTES).is_some_and(|end| end <= fsize))
        .ok_or(EIO)?;
    // SAFETY: the folio is live (referenced by `_put`); `offset + BLOCK_BYTES` lies within it
    // (checked above) and the block is page-aligned and no larger than a page, so the mapping
    // covers exactly one whole page of it.
    let addr = unsafe { ext::lcfs_kmap_local_folio(folio.as_ptr().cast(), offset) };
    // The filesystem never reads a block while it may be written: the volume's own reads and
    // writes are under its metadata lock (`BdevStore` lives inside the locked volume); the reads
    // without it (`fs/frozen.rs`) are of frozen layers' tree blocks, which nothing writes while
    // the layer lives; the one write without it, a commit's superblock copy, goes to a block
    // that is read only while mounting.
    // SAFETY: `addr` maps `BLOCK_BYTES` initialised bytes of an uptodate folio, referenced for
    // the whole function; the slice does not outlive the mapping, which is released right after
    // `f` returns. Writers of the block (`write_block`) hold the folio lock, which this read does
    // not take; none runs meanwhile (above).
    let data = unsafe { core::slice::from_raw_parts(addr.cast::<u8>(), BLOCK_BYTES) };
    let result = f(data);
    // SAFETY: `addr` came from `lcfs_kmap_local_folio` above on this task and is its most
    // recent local mapping (`f` cannot leave one open: mappings are released in reverse
    // order), and `data`, the only use of it, ended with `f`.
    unsafe { ext::lcfs_kunmap_local(addr) };
    Ok(result)
}

/// Writes `data` (one block) as block `block` of the device behind `mapping`: the page-cache copy
/// is replaced and marked dirty; it reaches the disk at the next [`flush`] (or earlier writeback).
///
/// # Safety
///
/// `mapping` must be the `bd_mapping` of a block device that stays open for the call.
pub(super) unsafe fn write_block(
    mapping: *mut bindings::address_space,
    block: u64,
    data: &[u8],
) -> Result {
    if data.len() != BLOCK_BYTES {
        return Err(EINVAL);
    }
    let (pos, index) = block_pos(block)?;
    // SAFETY: `mapping` is the mapping of a block device that stays open for the call (function
    // contract), so it is live; the helper returns a referenced, locked folio that is not under
    // writeback, or an error pointer.
    let folio = from_err_ptr(unsafe { ext::lcfs_grab_block_folio(mapping.cast(), index) })?;
    let mut folio = NonNull::new(folio).ok_or(EIO)?;
    // SAFETY: the folio is referenced and locked by the helper above (until the unlock below);
    // `folio_pos` reads its index, fixed while it is locked in the mapping.
    let mut fpos = unsafe { ext::lcfs_folio_pos(folio.as_ptr().cast()) };
    // SAFETY: the same referenced, locked folio; `folio_size` reads its order.
    let mut fsize = unsafe { ext::lcfs_folio_size(folio.as_ptr().cast()) };
    // SAFETY: the same referenced, locked folio; the uptodate flag cannot be cleared while we
    // hold the lock.
    let uptodate = unsafe { ext::lcfs_folio_test_uptodate(folio.as_ptr().cast()) };
    if !uptodate && fsize != BLOCK_BYTES {
        // A large folio that is not uptodate: the block is only part of it, so read the rest
        // first rather than marking unread bytes uptodate.
        // SAFETY: the folio was locked by `lcfs_grab_block_folio` on this task and is not
        // used past the put below without being looked up again.
        unsafe { bindings::folio_unlock(folio.as_ptr()) };
        // SAFETY: drops the reference `lcfs_grab_block_folio` returned, once; `folio` is
        // replaced right after.
        unsafe { ext::lcfs_folio_put(folio.as_ptr().cast()) };
        // SAFETY: `mapping` is the live mapping of a device open for the call (function
        // contract); no folio lock is held here. The helper returns a referenced, uptodate folio
        // or an error pointer.
        let f = from_err_ptr(unsafe { ext::lcfs_read_mapping_folio(mapping.cast(), index) })?;
        folio = NonNull::new(f).ok_or(EIO)?;
        // SAFETY: the folio is referenced (by the read above); no other folio lock is held
        // here, so sleeping for this one cannot deadlock against us.
        unsafe { ext::lcfs_folio_lock(folio.as_ptr().cast()) };
        // SAFETY: the folio is referenced and locked (just above), as `folio_wait_stable`
        // requires; it waits until any writeback of the folio ends before we change it.
        unsafe { bindings::folio_wait_stable(folio.as_ptr()) };
        // SAFETY: the referenced, locked folio; `folio_pos` reads its index.
        fpos = unsafe { ext::lcfs_folio_pos(folio.as_ptr().cast()) };
        // SAFETY: the referenced, locked folio; `folio_size` reads its order.
        fsize = unsafe { ext::lcfs_folio_size(folio.as_ptr().cast()) };
    }
    let _put = FolioRef(folio);
    let offset = pos
        .checked_sub(fpos)
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| o.checked_add(BLOCK_BYTES).is_some_and(|end| end <= fsize));
    if let Some(offset) = offset {
        // SAFETY: the folio is locked and referenced (until the unlock below and `_put`);
        // `offset + BLOCK_BYTES` lies within it (checked above) and the block is page-aligned and
        // no larger than a page, so the mapping covers exactly one whole page of it.
        let addr = unsafe { ext::lcfs_kmap_local_folio(folio.as_ptr().cast(), offset) };
        // SAFETY: `addr` maps `BLOCK_BYTES` writable bytes of the locked folio, which `data`
        // (checked to be `BLOCK_BYTES` long, in other memory) cannot overlap; nothing else
        // writes them while we hold the folio lock and writeback is not running (waited for).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr.cast::<u8>(), BLOCK_BYTES) };
        // SAFETY: `addr` is this task's most recent local mapping (kmap_local mappings are
        // undone in reverse order), not used after this.
        unsafe { ext::lcfs_kunmap_local(addr) };
        if !uptodate && fsize == BLOCK_BYTES {
            // SAFETY: the folio is locked and referenced, and is exactly one block, which was just
            // written whole: every byte of it is valid, as marking it uptodate claims.
            unsafe { ext::lcfs_folio_mark_uptodate(folio.as_ptr().cast()) };
        }
        // SAFETY: the folio is locked and referenced and belongs to the device's mapping, live
        // while the device is open (function contract); dirtying it schedules writeback.
        unsafe { bindings::folio_mark_dirty(folio.as_ptr()) };
    }
    // SAFETY: the folio was locked on this task above (by `lcfs_grab_block_folio` or
    // `lcfs_folio_lock`) and is still referenced by `_put`; unlocked once.
    unsafe { bindings::folio_unlock(folio.as_ptr()) };
    offset.map(|_| ()).ok_or(EIO)
}

/// Writes all dirty blocks of `bdev` and flushes its volatile write cache: everything written
/// before the call is durable when it returns `Ok`.
///
/// # Safety
///
/// `bdev` must be a block device that stays open for the call.
pub(super) unsafe fn flush(bdev: *mut bindings::block_device) -> Result {
    // SAFETY: `bdev` is open for the call (function contract), so its mapping is live for
    // `sync_blockdev` to write back and wait on.
    kernel::error::to_result(unsafe { bindings::sync_blockdev(bdev) })?;
    // SAFETY: `bdev` is open for the call (function contract), so its queue is live for the
    // flush request.
    kernel::error::to_result(unsafe { bindings::blkdev_issue_flush(bdev) })
}

/// Drops a folio reference.
struct FolioRef(NonNull<bindings::folio>);

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: `FolioRef` is built only from a folio reference its creator owns
        // (`read_mapping_folio` or `lcfs_grab_block_folio`) and hands over; it is dropped exactly
        // once, here.
        unsafe { ext::lcfs_folio_put(self.0.as_ptr().cast()) };
    }
}

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
    // SAFETY: `mapping` is a live block device mapping (function contract). The helper returns a
    // referenced, uptodate folio or an error pointer.
    let folio = from_err_ptr(unsafe { ext::lcfs_read_mapping_folio(mapping.cast(), index) })?;
    let folio = NonNull::new(folio).ok_or(EIO)?;
    let _put = FolioRef(folio);
    // SAFETY: the folio is referenced by `_put` for the rest of this function.
    let (fpos, fsize) = unsafe {
        (
            ext::lcfs_folio_pos(folio.as_ptr().cast()),
            ext::lcfs_folio_size(folio.as_ptr().cast()),
        )
    };
    // A folio may be larger than a block; find the block inside it.
    let offset = pos
        .checked_sub(fpos)
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| o.checked_add(BLOCK_BYTES).is_some_and(|end| end <= fsize))
        .ok_or(EIO)?;
    // SAFETY: the folio is referenced; `offset + BLOCK_SIZE` lies within it and the block is
    // page-aligned, so the mapping covers exactly one whole page.
    let addr = unsafe { ext::lcfs_kmap_local_folio(folio.as_ptr().cast(), offset) };
    // SAFETY: `addr` maps `BLOCK_BYTES` readable bytes of an uptodate folio; the slice does not
    // outlive the mapping, which is released right after `f` returns.
    let data = unsafe { core::slice::from_raw_parts(addr.cast::<u8>(), BLOCK_BYTES) };
    let result = f(data);
    // SAFETY: `addr` came from `lcfs_kmap_local_folio` above and is the most recent local mapping.
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
    // SAFETY: `mapping` is a live block device mapping (function contract). The helper returns a
    // referenced, locked folio that is not under writeback, or an error pointer.
    let folio = from_err_ptr(unsafe { ext::lcfs_grab_block_folio(mapping.cast(), index) })?;
    let mut folio = NonNull::new(folio).ok_or(EIO)?;
    // SAFETY: the folio is referenced and locked (until the explicit unlock at the end).
    let (mut fpos, mut fsize, uptodate) = unsafe {
        (
            ext::lcfs_folio_pos(folio.as_ptr().cast()),
            ext::lcfs_folio_size(folio.as_ptr().cast()),
            ext::lcfs_folio_test_uptodate(folio.as_ptr().cast()),
        )
    };
    if !uptodate && fsize != BLOCK_BYTES {
        // A large folio that is not uptodate: the block is only part of it, so read the rest
        // first rather than marking unread bytes uptodate.
        // SAFETY: the folio is locked and referenced; after this it is neither.
        unsafe {
            bindings::folio_unlock(folio.as_ptr());
            ext::lcfs_folio_put(folio.as_ptr().cast());
        }
        // SAFETY: `mapping` is a live block device mapping (function contract). The helper
        // returns a referenced, uptodate folio or an error pointer.
        let f = from_err_ptr(unsafe { ext::lcfs_read_mapping_folio(mapping.cast(), index) })?;
        folio = NonNull::new(f).ok_or(EIO)?;
        // SAFETY: referenced folio; lock it and wait for any writeback before changing it.
        unsafe {
            ext::lcfs_folio_lock(folio.as_ptr().cast());
            bindings::folio_wait_stable(folio.as_ptr());
            fpos = ext::lcfs_folio_pos(folio.as_ptr().cast());
            fsize = ext::lcfs_folio_size(folio.as_ptr().cast());
        }
    }
    let _put = FolioRef(folio);
    let offset = pos
        .checked_sub(fpos)
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| o.checked_add(BLOCK_BYTES).is_some_and(|end| end <= fsize));
    if let Some(offset) = offset {
        // SAFETY: locked, referenced folio; `offset + BLOCK_BYTES` lies within it.
        let addr = unsafe { ext::lcfs_kmap_local_folio(folio.as_ptr().cast(), offset) };
        // SAFETY: `addr` maps `BLOCK_BYTES` writable bytes of the locked folio; nothing else
        // writes them while we hold the lock.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr.cast::<u8>(), BLOCK_BYTES) };
        // SAFETY: `addr` is this task's most recent local mapping (kmap_local mappings are
        // undone in reverse order), not used after this.
        unsafe { ext::lcfs_kunmap_local(addr) };
        if !uptodate && fsize == BLOCK_BYTES {
            // SAFETY: a locked, referenced folio whose one block was just written whole.
            unsafe { ext::lcfs_folio_mark_uptodate(folio.as_ptr().cast()) };
        }
        // SAFETY: a locked, referenced folio of the device's mapping.
        unsafe { bindings::folio_mark_dirty(folio.as_ptr()) };
    }
    // SAFETY: locked by us above.
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
    // SAFETY: `bdev` is open (function contract).
    kernel::error::to_result(unsafe { bindings::sync_blockdev(bdev) })?;
    // SAFETY: `bdev` is open (function contract).
    kernel::error::to_result(unsafe { bindings::blkdev_issue_flush(bdev) })
}

/// Drops a folio reference.
struct FolioRef(NonNull<bindings::folio>);

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: the reference was taken by `read_mapping_folio` and is dropped exactly once.
        unsafe { ext::lcfs_folio_put(self.0.as_ptr().cast()) };
    }
}

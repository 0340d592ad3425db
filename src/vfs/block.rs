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
    let pos = block
        .checked_mul(u64::from(BLOCK_SIZE))
        .and_then(|p| i64::try_from(p).ok())
        .ok_or(EINVAL)?;
    // Page-cache index of the page holding the block (a block is never larger than a page).
    let index = usize::try_from(pos).map_err(|_| EINVAL)? >> kernel::page::PAGE_SHIFT;
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

/// Drops a folio reference.
struct FolioRef(NonNull<bindings::folio>);

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: the reference was taken by `read_mapping_folio` and is dropped exactly once.
        unsafe { ext::lcfs_folio_put(self.0.as_ptr().cast()) };
    }
}

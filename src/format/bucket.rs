// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Hash buckets of named items: directory entries, extended attributes and layer names.
//!
//! Each is keyed `(owner, kind, offset)` with `offset` = [`dirent_offset`] of the name's hash and a
//! collision index: the hash picks a bucket of [`DIRENT_COLLISIONS`] offsets, and a new name takes
//! the lowest free index of its bucket. Removals leave gaps, so a lookup reads the whole bucket
//! (its items only, in one pass) rather than stopping at the first gap.

use super::node::Key;
use super::records::{dirent_offset, DIRENT_COLLISIONS};
use super::tree::Error;

/// What [`probe`] found in a bucket.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot<T> {
    /// The item holding the name: its key offset and what the matcher took from it.
    pub(super) found: Option<(u64, T)>,
    /// The first free offset of the bucket (where a new name goes), `None` if it is full.
    pub(super) free: Option<u64>,
}

/// Looks for a name in the bucket of `hash` among the items `(id, item_kind, offset)`.
///
/// `next(from)` returns the first item at or after `from` with the matcher's verdict on its
/// value: `Ok(Some(_))` for the name sought, `Ok(None)` for another name, `Err` for a value that
/// does not decode. The verdict of an item past the bucket is never looked at: it ends the probe.
pub(super) fn probe<T>(
    id: u64,
    item_kind: u8,
    hash: u64,
    mut next: impl FnMut(&Key) -> Result<Option<(Key, Result<Option<T>, Error>)>, Error>,
) -> Result<Slot<T>, Error> {
    let lo = dirent_offset(hash, 0).ok_or(Error::Invalid)?;
    let hi = dirent_offset(hash, DIRENT_COLLISIONS - 1).ok_or(Error::Invalid)?;
    let mut free = None;
    // The offset after the last item seen: a later item leaves a gap there.
    let mut expect = lo;
    loop {
        let Some((k, verdict)) = next(&Key::new(id, item_kind, expect))? else {
            break;
        };
        if k.id != id || k.kind != item_kind || k.offset > hi {
            break;
        }
        if free.is_none() && k.offset > expect {
            free = Some(expect);
        }
        if let Some(t) = verdict? {
            return Ok(Slot {
                found: Some((k.offset, t)),
                free,
            });
        }
        // `k.offset <= hi`, far below `u64::MAX` (see `dirent_offset`): never fails.
        expect = k.offset.checked_add(1).ok_or(Error::Invalid)?;
    }
    if free.is_none() && expect <= hi {
        free = Some(expect);
    }
    Ok(Slot { found: None, free })
}

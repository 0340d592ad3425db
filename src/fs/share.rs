// SPDX-License-Identifier: GPL-2.0

//! Page-cache sharing between layers: one page-cache copy of contents many layers hold.
//!
//! Every layer's file is its own inode (its own locks, leases, notify marks, link count and
//! attributes). A file opened for reading only, whose contents (`data_id`) are also those of
//! the file in a frozen layer it descends from, reads through a *content inode*: a hidden inode
//! keyed by that frozen layer and the `data_id`, whose page cache every such file of every
//! layer shares. Frozen layers never change, and a layer cannot be removed while it has
//! children or open files, so the content inode's blocks stay what they were while anything
//! reads them.
//!
//! A layer file's state only moves one way: unknown (nothing opened it for reading yet),
//! shared (its reads go through a content inode), private (its own page cache). Opening it
//! for writing, any change of its data (write, truncate, `fallocate`, a write fault) and an
//! extended-attribute change make it private; files opened before then read its own cache from
//! then on, while mappings made before keep the content inode's pages. Before its first data
//! change in a flush epoch, a file also gets a new `data_id` on disk (see
//! [`super::layers::start_change`]): the epoch moves on whenever a layer is cloned,
//! snapshotted, frozen or removed, so an id can never stand for two different contents.

use core::sync::atomic::Ordering;

use kernel::prelude::*;
use kernel::sync::aref::ARef;

use crate::vfs::{Iget, Inode};

use super::errno::errno;
use super::namespace::{params, InodeInfo};
use super::Lcfs;

/// [`InodeInfo::share`]: no read-only open looked yet.
pub(super) const UNKNOWN: u64 = 0;
/// [`InodeInfo::share`]: reads use the file's own page cache, for good.
pub(super) const PRIVATE: u64 = 1;
// Any other value: reads go through the content inode of frozen layer `value - 1`.

/// The content inode reads of regular file `inode` go through, if it shares its contents with
/// a frozen layer.
pub(super) fn content(inode: &Inode<Lcfs>) -> Result<Option<ARef<Inode<Lcfs>>>> {
    let info = inode.info();
    if info.layer == 0 {
        return Ok(None);
    }
    let sb = inode.super_block();
    let mut state = info.share.load(Ordering::Acquire);
    if state == UNKNOWN {
        let (source, data_id) = {
            let mut vol = sb.info().lock_read();
            let rec = vol.inode(info.layer, info.ino).map_err(errno)?;
            let source = vol
                .share_source(info.layer, info.ino, rec.data_id)
                .map_err(errno)?;
            (source, rec.data_id)
        };
        // Written before the state that publishes it; read after that state is seen.
        info.share_data.store(data_id, Ordering::Relaxed);
        let new = match source {
            // Layer ids are below 2^24: no overflow.
            Some(layer) => layer.checked_add(1).ok_or(EUCLEAN)?,
            None => PRIVATE,
        };
        // A change that made the file private meanwhile wins.
        state = match info
            .share
            .compare_exchange(UNKNOWN, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => new,
            Err(now) => now,
        };
    }
    if state == PRIVATE {
        return Ok(None);
    }
    let source = state - 1;
    let data_id = info.share_data.load(Ordering::Relaxed);
    let key = data_id.checked_add(1).ok_or(EUCLEAN)?;
    match sb.iget_content(key, source)? {
        Iget::Cached(content) => Ok(Some(content)),
        Iget::New(new) => {
            let (rec, frozen) = {
                let mut vol = sb.info().lock_read();
                let rec = vol.inode(source, info.ino).map_err(errno)?;
                (rec, super::frozen::frozen_ref(sb, &mut vol, source)?)
            };
            // Frozen: the record cannot have changed since `share_source` read it.
            if rec.data_id != data_id || !rec.is_regular() {
                return Err(EUCLEAN);
            }
            let mut p = params(&rec)?;
            // Never seen by users: no permission to grant, one link so eviction deletes nothing.
            p.perm = 0o444;
            p.nlink = 1;
            (p.uid, p.gid) = (0, 0);
            new.init_content(&p, InodeInfo::new(source, info.ino).with_frozen(frozen))
                .map(Some)
        }
    }
}

/// Whether reads of `inode` still go through its content inode.
pub(super) fn shares(inode: &Inode<Lcfs>) -> bool {
    inode.info().share.load(Ordering::Acquire) > PRIVATE
}

/// Makes reads of `inode` use its own page cache from now on, before a change.
pub(super) fn unshare(inode: &Inode<Lcfs>) {
    inode.info().share.store(PRIVATE, Ordering::Release);
}

// SPDX-License-Identifier: GPL-2.0

//! The running transaction: committing it (periodically, on `sync` and `fsync`, at unmount),
//! and retrying an operation that found its space pinned by the transaction. The volume and its
//! locks are in [`super::shared`].

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::format::tree::Error as CoreError;
use crate::format::volume::PendingCommit;
use crate::format::BLOCK_SIZE;
use crate::vfs::{BlockDevice, NoFsScope, SuperBlock};

use super::errno::errno;
use super::mount::MountInfo;
use super::time::timestamp;
use super::Lcfs;

pub(crate) use super::shared::{Vol, VolGuard};

impl MountInfo {
    /// Locks the whole volume to change it: see [`super::shared::Shared::lock`].
    pub(crate) fn lock(&self) -> VolGuard<'_> {
        self.vol.lock()
    }

    /// Locks the whole volume to read it, also while a commit's device part runs: lookups,
    /// listings, inode reads and block maps then see the state being committed. A change tried
    /// through this guard meanwhile fails (`Busy`).
    pub(crate) fn lock_read(&self) -> VolGuard<'_> {
        self.vol.lock_read()
    }

    /// Locks read-write layer `layer` to change it, beside other layers' changes.
    pub(crate) fn lock_layer(&self, layer: u64) -> VolGuard<'_> {
        self.vol.lock_layer(layer)
    }

    /// Locks read-write layer `layer` to read it, beside other layers' changes.
    pub(crate) fn read_layer(&self, layer: u64) -> VolGuard<'_> {
        self.vol.read_layer(layer)
    }

    /// Locks the whole volume with no commit under way or starting: for a change that must be
    /// committed under the same hold ([`commit_locked`]).
    pub(crate) fn lock_for_commit(&self) -> VolGuard<'_> {
        self.vol.lock_for_commit()
    }
}

/// Runs `op` on the locked volume; if it fails for space while blocks freed in the running
/// transaction are pinned (they become free only when it commits), or kept reserved for
/// unlinked inodes' orphan-index items (which the commit adds), commits and runs it once
/// more. Every operation admits its space before its first change, so the refused run changed
/// nothing, or (a multi-step data operation) left a consistent state the second run continues.
/// The commit runs with the guard's locks let go, and the second run starts from the state as
/// it is then.
pub(crate) fn retry_for_space<R>(
    sb: &SuperBlock<Lcfs>,
    vol: &mut VolGuard<'_>,
    mut op: impl FnMut(&mut Vol<'_>) -> core::result::Result<R, CoreError>,
) -> core::result::Result<R, CoreError> {
    match op(vol) {
        Err(CoreError::NoSpace) if vol.pinned() > 0 || vol.unindexed_reserved() => {
            let committed = if vol.holds_commit() {
                vol.commit(timestamp())
            } else {
                vol.release_while(|| {
                    let mut whole = sb.info().lock_for_commit();
                    whole.commit(timestamp())
                })
            };
            committed.inspect_err(|e| {
                pr_err!(
                    "{}: commit to free space failed ({:?}); the last committed state stays on disk\n",
                    sb.id(),
                    e
                );
            })?;
            op(vol)
        }
        r => r,
    }
}

/// Commits the running transaction of `sb`'s volume if it has changes, logging a failure once
/// (the transaction is then aborted and the filesystem answers EIO until it is remounted).
///
/// The device part (two flushes and the superblock write between them) runs without the
/// volume's locks: readers and changes of every layer go on meanwhile, changes in the next
/// transaction, which keeps the blocks this one freed until the new superblock is durable (the
/// last commit still uses them). Only a commit that found too little free space for that makes
/// changes wait for its end. Commits run one at a time.
pub(crate) fn commit(sb: &SuperBlock<Lcfs>) -> Result {
    commit_upto(sb, u64::MAX)
}

/// Makes inode `ino` of `layer` durable after an `fsync` wrote its data back: commits only if
/// a transaction not yet durable changed it (its data written in place then only needs the
/// device's cache flushed), and only until that transaction is durable, so that an `fsync`
/// does not commit other layers' changes on its behalf when its own are on the medium, and
/// waits for a commit under way that holds them rather than starting another. A transaction
/// still commits every layer's changes made in it (as jbd2's do).
pub(crate) fn fsync(sb: &SuperBlock<Lcfs>, layer: u64, ino: u64) -> Result {
    let info = sb.info();
    // The layer list (layer 0) changes only through whole-volume operations: commit.
    let need = if layer == 0 {
        u64::MAX
    } else {
        info.vol.last_change(layer, ino)
    };
    if need <= info.vol.durable() {
        if sb.read_only() {
            return Ok(());
        }
        return info.io.flush();
    }
    commit_upto(sb, need)
}

/// [`commit`], unless the commit of generation `need` is durable once no other commit runs.
fn commit_upto(sb: &SuperBlock<Lcfs>, need: u64) -> Result {
    if sb.read_only() || sb.frozen() {
        return Ok(());
    }
    let info = sb.info();
    let mut vol = info.lock_for_commit();
    if need <= info.vol.durable() {
        // The commit that held it ended while this one waited for the lock.
        return Ok(());
    }
    if !committable(sb, &mut vol)? {
        return Ok(());
    }
    let pending = match vol.commit_begin(timestamp()) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(e) => return Err(failed(sb, e)),
    };
    // From here every path must reach `commit_end`: until it runs, every other commit waits
    // (and every change, if the commit was not split).
    let ended = vol.release_while(|| {
        // As under the locks: an allocation here must not recurse into this filesystem, whose
        // commits (and changes, if this commit was not split) wait for this one.
        let nofs = NoFsScope::enter();
        let written = write_commit(&info.io, &pending);
        drop(nofs);
        written
    });
    let ended = vol.commit_end(pending, ended);
    ended.map_err(|e| failed(sb, e))
}

/// The device part of a commit: the nodes the transaction wrote back made durable, then the new
/// superblock.
fn write_commit(
    bdev: &BlockDevice,
    pending: &PendingCommit,
) -> core::result::Result<(), CoreError> {
    bdev.flush().map_err(|_| CoreError::Io)?;
    let mut block =
        KVec::from_elem(0u8, BLOCK_SIZE as usize, GFP_KERNEL).map_err(|_| CoreError::NoMemory)?;
    pending.encode(&mut block)?;
    bdev.write(pending.slot(), &block)
        .map_err(|_| CoreError::Io)?;
    bdev.flush().map_err(|_| CoreError::Io)
}

/// Whether a commit of `vol` may write: not for a filesystem frozen (the freeze committed
/// everything; what changed since, such as an unlinked inode's last close deleting it, waits
/// for the thaw) or being remounted read-only (the VFS synced everything before); `EIO` for an
/// aborted transaction.
fn committable(sb: &SuperBlock<Lcfs>, vol: &mut VolGuard<'_>) -> Result<bool> {
    if sb.read_only() || sb.frozen() {
        return Ok(false);
    }
    if vol.is_aborted() {
        return Err(EIO);
    }
    Ok(!sb.info().vol.read_only())
}

fn failed(sb: &SuperBlock<Lcfs>, e: CoreError) -> Error {
    pr_err!(
        "{}: commit failed ({:?}); the last committed state stays on disk, remount to use it\n",
        sb.id(),
        e
    );
    errno(e)
}

/// [`commit`] whole under the hold of `vol` (from [`MountInfo::lock_for_commit`]), for a change
/// that must be on the medium before anyone else sees it (a layer's freeze: see `frozen`).
pub(crate) fn commit_locked(sb: &SuperBlock<Lcfs>, vol: &mut VolGuard<'_>) -> Result {
    if !vol.holds_commit() {
        // A caller's mistake, not the filesystem's: nothing is changed.
        pr_err!("{}: commit_locked without the commit lock\n", sb.id());
        return Err(EINVAL);
    }
    if !committable(sb, vol)? {
        return Ok(());
    }
    vol.commit(timestamp()).map_err(|e| failed(sb, e))
}

/// Schedules the next periodic commit of a writable mount.
pub(crate) fn schedule_commit(sb: &SuperBlock<Lcfs>) {
    if sb.read_only() {
        return;
    }
    let secs = sb.info().commit_secs.load(Ordering::Relaxed);
    sb.schedule_periodic(secs.saturating_mul(1000));
}

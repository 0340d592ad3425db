// SPDX-License-Identifier: GPL-2.0

//! The running transaction: the volume behind the mount's one metadata lock, committing it
//! (periodically, on `sync` and `fsync`, at unmount), and retrying an operation that found its
//! space pinned by the transaction.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::prelude::*;

use crate::format::tree::Error as CoreError;
use crate::format::volume::{PendingCommit, Volume};
use crate::format::BLOCK_SIZE;
use crate::vfs::{BlockDevice, NoFsScope, SuperBlock};

use super::errno::errno;
use super::mount::MountInfo;
use super::store::BdevStore;
use super::time::timestamp;
use super::Lcfs;

/// The mounted volume: the format core over the device, behind the mount's one metadata lock.
pub(crate) type Vol = Volume<BdevStore>;

/// The volume locked, with allocations kept out of filesystem reclaim while it is.
pub(crate) struct VolGuard<'a> {
    // Declared first: dropped (unlocked) before the allocation scope ends.
    guard: kernel::sync::MutexGuard<'a, Vol>,
    _nofs: NoFsScope,
    /// `MountInfo::map_epoch`, published as the lock is released.
    map_epoch: &'a AtomicU64,
}

impl Drop for VolGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock (the guard field drops after this). Release: whoever sees the
        // new epoch sees the changes that moved it; every change that could make a kept write
        // mapping wrong moved it (`Volume::mutate`) before any folio it maps could be evicted
        // or shared.
        let epoch = self.guard.map_epoch().unwrap_or(u64::MAX);
        self.map_epoch.store(epoch, Ordering::Release);
    }
}

impl core::ops::Deref for VolGuard<'_> {
    type Target = Vol;
    fn deref(&self) -> &Vol {
        &self.guard
    }
}

impl core::ops::DerefMut for VolGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vol {
        &mut self.guard
    }
}

impl MountInfo {
    /// Locks the volume to change it. Changes go on while a commit's device part runs (they
    /// belong to the next transaction), except during a commit that could not be split for
    /// want of space: then this waits for its end.
    pub(crate) fn lock(&self) -> VolGuard<'_> {
        let nofs = NoFsScope::enter();
        let mut guard = self.vol.lock();
        while guard.changes_wait() {
            self.committed.wait(&mut guard);
        }
        VolGuard {
            guard,
            _nofs: nofs,
            map_epoch: &self.map_epoch,
        }
    }

    /// Waits, with the volume locked, until no commit's device part runs: one commit at a time.
    pub(crate) fn wait_commit(&self, vol: &mut VolGuard<'_>) {
        while vol.guard.is_committing() {
            self.committed.wait(&mut vol.guard);
        }
    }

    /// Locks the volume to read it, also while a commit that was not split runs its device
    /// part: lookups, listings, inode reads and block maps then see the state being committed,
    /// which nothing changes meanwhile. A change tried through this guard then fails (`Busy`).
    pub(crate) fn lock_read(&self) -> VolGuard<'_> {
        let nofs = NoFsScope::enter();
        VolGuard {
            guard: self.vol.lock(),
            _nofs: nofs,
            map_epoch: &self.map_epoch,
        }
    }
}

/// Runs `op` on the locked volume; if it fails for space while blocks freed in the running
/// transaction are pinned (they become free only when it commits), commits and runs it once
/// more. Every operation admits its space before its first change, so the refused run changed
/// nothing, or (a multi-step data operation) left a consistent state the second run continues.
pub(crate) fn retry_for_space<R>(
    sb: &SuperBlock<Lcfs>,
    vol: &mut VolGuard<'_>,
    mut op: impl FnMut(&mut Vol) -> core::result::Result<R, CoreError>,
) -> core::result::Result<R, CoreError> {
    match op(vol) {
        Err(CoreError::NoSpace) if vol.map().pinned > 0 => {
            // Pins of a commit under way become free at its end.
            sb.info().wait_commit(vol);
            vol.commit(timestamp()).inspect_err(|e| {
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
/// The device part (two flushes and the superblock write between them) runs without the volume
/// lock: readers and changes of every layer go on meanwhile, changes in the next transaction,
/// which keeps the blocks this one freed until the new superblock is durable (the last commit
/// still uses them). Only a commit that found too little free space for that makes changes wait
/// for its end ([`MountInfo::lock`]). Commits run one at a time.
pub(crate) fn commit(sb: &SuperBlock<Lcfs>) -> Result {
    if sb.read_only() || sb.frozen() {
        return Ok(());
    }
    let info = sb.info();
    let mut vol = info.lock();
    info.wait_commit(&mut vol);
    if !committable(sb, &mut vol)? {
        return Ok(());
    }
    let pending = match vol.commit_begin(timestamp()) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(e) => return Err(failed(sb, e)),
    };
    drop(vol);
    // From here every path must reach `commit_end`: until it runs, every other commit waits
    // (and every change, if the commit was not split).
    // As under the lock: an allocation here must not recurse into this filesystem, whose
    // commits (and changes, if this commit was not split) wait for this one.
    let nofs = NoFsScope::enter();
    let written = write_commit(&info.io, &pending);
    drop(nofs);
    let ended = info.lock_read().commit_end(pending, written);
    info.committed.notify_all();
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
    Ok(!vol.store().read_only)
}

fn failed(sb: &SuperBlock<Lcfs>, e: CoreError) -> Error {
    pr_err!(
        "{}: commit failed ({:?}); the last committed state stays on disk, remount to use it\n",
        sb.id(),
        e
    );
    errno(e)
}

/// [`commit`] with the volume already locked, whole under the lock, for a change that must be on
/// the medium before anyone else sees it (a layer's freeze: see `frozen`).
pub(crate) fn commit_locked(sb: &SuperBlock<Lcfs>, vol: &mut VolGuard<'_>) -> Result {
    sb.info().wait_commit(vol);
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

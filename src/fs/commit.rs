// SPDX-License-Identifier: GPL-2.0

//! The running transaction: the volume behind the mount's one metadata lock, committing it
//! (periodically, on `sync` and `fsync`, at unmount), and retrying an operation that found its
//! space pinned by the transaction.

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::format::tree::Error as CoreError;
use crate::format::volume::Volume;
use crate::vfs::{NoFsScope, SuperBlock};

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
    /// Locks the volume.
    pub(crate) fn lock(&self) -> VolGuard<'_> {
        let nofs = NoFsScope::enter();
        VolGuard {
            guard: self.vol.lock(),
            _nofs: nofs,
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
pub(crate) fn commit(sb: &SuperBlock<Lcfs>) -> Result {
    if sb.read_only() || sb.frozen() {
        return Ok(());
    }
    commit_locked(sb, &mut sb.info().lock())
}

/// [`commit`] with the volume already locked, for a change that must be on the medium before
/// anyone else sees it (a layer's freeze: see `frozen`).
pub(crate) fn commit_locked(sb: &SuperBlock<Lcfs>, vol: &mut VolGuard<'_>) -> Result {
    if sb.read_only() {
        return Ok(());
    }
    if sb.frozen() {
        // The freeze committed everything. What changed since (an unlinked inode's last close
        // deletes it) waits for the thaw: a frozen filesystem writes nothing.
        return Ok(());
    }
    if vol.is_aborted() {
        return Err(EIO);
    }
    if vol.store().read_only {
        // Being remounted read-only: the VFS synced everything before.
        return Ok(());
    }
    vol.commit(timestamp()).map_err(|e| {
        pr_err!(
            "{}: commit failed ({:?}); the last committed state stays on disk, remount to use it\n",
            sb.id(),
            e
        );
        errno(e)
    })
}

/// Schedules the next periodic commit of a writable mount.
pub(crate) fn schedule_commit(sb: &SuperBlock<Lcfs>) {
    if sb.read_only() {
        return;
    }
    let secs = sb.info().commit_secs.load(Ordering::Relaxed);
    sb.schedule_periodic(secs.saturating_mul(1000));
}

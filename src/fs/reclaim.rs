// SPDX-License-Identifier: GPL-2.0

//! Reclaim of removed layers in the background.
//!
//! Removing a layer only queues its tree (see the format core's `reclaim`); the mount's
//! background work empties the queue in chunks of [`CHUNK`] steps, each under the volume lock
//! and followed by a commit, so the space comes back while other layers go on working: an
//! operation waits at most one chunk for the lock. The work is kicked when a layer is removed,
//! at mount when the last commit left a queue (a crash or unmount mid-reclaim), on a remount
//! read-write, and by the periodic commit.

use kernel::prelude::*;

use crate::vfs::SuperBlock;

use super::commit::{commit, retry_for_space};
use super::Lcfs;

/// Steps (tree nodes dropped) per chunk: one chunk reads at most this many nodes and holds the
/// volume lock for them.
const CHUNK: u32 = 64;

/// At mount: resumes the reclaim a crash or an unmount cut, saying so.
pub(super) fn resume(sb: &SuperBlock<Lcfs>) {
    let n = kick_if_queued(sb);
    if n > 0 {
        let entries = if n == 1 { "entry" } else { "entries" };
        pr_info!(
            "{}: resuming the reclaim of removed layers ({} queue {})\n",
            sb.id(),
            n,
            entries
        );
    }
}

/// Starts the background work if removed layers wait for reclaim; returns how many queue
/// entries wait (0 also when none can be reclaimed now: read-only, aborted, unreadable).
pub(super) fn kick_if_queued(sb: &SuperBlock<Lcfs>) -> u64 {
    if sb.read_only() {
        return 0;
    }
    let queued = {
        let mut vol = sb.info().lock();
        if vol.is_aborted() {
            return 0;
        }
        vol.reclaim_queued()
    };
    match queued {
        Ok(0) => 0,
        Ok(n) => {
            sb.kick_background();
            n
        }
        Err(e) => {
            pr_err!("{}: cannot read the reclaim queue ({:?})\n", sb.id(), e);
            0
        }
    }
}

/// One chunk of reclaim and its commit; whether more remains.
pub(super) fn chunk(sb: &SuperBlock<Lcfs>) -> bool {
    let left = {
        let mut vol = sb.info().lock();
        if vol.is_aborted() || sb.info().vol.read_only() {
            return false;
        }
        retry_for_space(sb, &mut vol, |v| v.reclaim(CHUNK))
    };
    let left = match left {
        Ok(n) => n,
        Err(e) => {
            // A failure after a step's first change aborted the transaction: the mount answers
            // EIO from now on and the last commit keeps the queue for the next mount.
            pr_err!("{}: reclaim of removed layers failed ({:?})\n", sb.id(), e);
            return false;
        }
    };
    // Freed blocks are free once committed: commit every chunk, so the space shows in statfs
    // as it comes back and a crash loses at most one chunk of progress.
    if commit(sb).is_err() {
        return false;
    }
    left > 0
}

// SPDX-License-Identifier: GPL-2.0

//! The files of each mount's directory `/sys/fs/lcfs/<device>/` (the VFS layer makes the
//! directories; `FS_IOC_GETFSSYSFSPATH` answers `lcfs/<device>`). Each file holds one number
//! and a newline, read from the live state as `LCFS_IOC_FS_INFO` (`lcfs info`) reports it; see
//! `Documentation/ioctl.md`, "sysfs".

use core::fmt::Write;
use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::format::BLOCK_SIZE;
use crate::vfs::{SuperBlock, SysfsOutput};

use super::errno::errno;
use super::Lcfs;

/// The file names, in the order of [`Attr`].
pub(super) const NAMES: &[&CStr] = &[
    c"block_size",
    c"total_blocks",
    c"free_blocks",
    c"generation",
    c"layers",
    c"reclaim_queued",
    c"cached_nodes",
    c"commit_interval",
];

/// What each file shows.
#[derive(Clone, Copy)]
enum Attr {
    /// Bytes per block.
    BlockSize,
    /// Blocks of the device the filesystem uses.
    TotalBlocks,
    /// Blocks not in use, with the running transaction's changes.
    FreeBlocks,
    /// Number of the last committed transaction.
    Generation,
    /// Layers.
    Layers,
    /// Tree nodes of removed layers still to be reclaimed.
    ReclaimQueued,
    /// Metadata blocks the mount's node cache holds.
    CachedNodes,
    /// Seconds between periodic commits (`commit=`).
    CommitInterval,
}

const ATTRS: [Attr; 8] = [
    Attr::BlockSize,
    Attr::TotalBlocks,
    Attr::FreeBlocks,
    Attr::Generation,
    Attr::Layers,
    Attr::ReclaimQueued,
    Attr::CachedNodes,
    Attr::CommitInterval,
];
const _: () = assert!(ATTRS.len() == NAMES.len());

/// Writes file `index`'s value for `sb`.
pub(super) fn show(sb: &SuperBlock<Lcfs>, index: usize, out: &mut SysfsOutput<'_>) -> Result {
    let attr = *ATTRS.get(index).ok_or(EINVAL)?;
    let value = match attr {
        Attr::BlockSize => u64::from(BLOCK_SIZE),
        Attr::CommitInterval => u64::from(sb.info().commit_secs.load(Ordering::Relaxed)),
        _ => {
            // Read even while a commit's device part runs (the state being committed).
            let mut vol = sb.info().lock_read();
            let disk = vol.superblock();
            match attr {
                Attr::TotalBlocks => disk.total_blocks,
                Attr::FreeBlocks => disk.free_blocks,
                Attr::Generation => disk.generation,
                Attr::Layers => disk.layer_count,
                Attr::ReclaimQueued => vol.reclaim_queued().map_err(errno)?,
                Attr::CachedNodes => {
                    u64::try_from(sb.info().vol.cached_nodes()).unwrap_or(u64::MAX)
                }
                Attr::BlockSize | Attr::CommitInterval => 0,
            }
        }
    };
    writeln!(out, "{value}").map_err(|_| EINVAL)
}

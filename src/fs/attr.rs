// SPDX-License-Identifier: GPL-2.0

//! File attributes (`chattr`, `lsattr`): immutable, append-only, nodump and noatime, kept in
//! the inode record's flags ([`inode_flags`]), behind the VFS layer's `fileattr_get` and
//! `fileattr_set`.
//!
//! The VFS enforces immutable, append-only and noatime through the cached inode's `i_flags`,
//! which every load and refresh of an inode sets from its record (`namespace::params`); the VFS
//! layer checks them again, under `i_rwsem`, on the paths of LCFS's own that change a file
//! (writes, write faults, `fallocate`, reflink, `setattr`). The layer ioctls that rename or
//! remove a read-write layer refuse one whose root directory is immutable or append-only, as
//! btrfs refuses to delete such a subvolume (`check_layer_root`).

use kernel::prelude::*;

use crate::format::records::{inode_flags, mode};
use crate::format::ROOT_INO;
use crate::vfs::{FileAttrs, Inode, Locked};

use super::commit::{retry_for_space, VolGuard};
use super::errno::errno;
use super::namespace::params;
use super::time::timestamp;
use super::Lcfs;

/// The attributes of an inode record's flags.
pub(super) fn attrs_of(flags: u32) -> FileAttrs {
    FileAttrs {
        immutable: flags & inode_flags::IMMUTABLE != 0,
        append: flags & inode_flags::APPEND != 0,
        nodump: flags & inode_flags::NODUMP != 0,
        noatime: flags & inode_flags::NOATIME != 0,
    }
}

/// The inode record flags of `attrs`.
fn flags_of(attrs: FileAttrs) -> u32 {
    [
        (attrs.immutable, inode_flags::IMMUTABLE),
        (attrs.append, inode_flags::APPEND),
        (attrs.nodump, inode_flags::NODUMP),
        (attrs.noatime, inode_flags::NOATIME),
    ]
    .into_iter()
    .filter(|&(set, _)| set)
    .fold(0, |f, (_, bit)| f | bit)
}

/// `fileattr_get`: the attributes stored in the inode's record. The mount root that lists the
/// layers has no record, and none.
pub(super) fn get(inode: &Inode<Lcfs>) -> Result<FileAttrs> {
    let info = inode.info();
    if info.layer == 0 {
        return Ok(FileAttrs::default());
    }
    let rec = inode
        .super_block()
        .info()
        .read_layer(info.layer)
        .inode(info.layer, info.ino)
        .map_err(errno)?;
    Ok(attrs_of(rec.flags))
}

/// `fileattr_set`: stores `attrs` with a new change time, in one hold of the volume lock, and
/// refreshes the cached inode (its `i_flags` with it). The rules are ext4's: immutable and
/// append-only only on regular files and directories (`EOPNOTSUPP` for other kinds, which take
/// nodump and noatime), and an immutable inode that stays immutable takes no other change
/// (`EPERM`). `EROFS` on a read-only mount or a frozen layer, `EPERM` on the mount root that
/// lists the layers.
pub(super) fn set(inode: Locked<'_, Lcfs>, attrs: FileAttrs) -> Result {
    let info = inode.info();
    if info.layer == 0 {
        return Err(EPERM);
    }
    let sb = inode.super_block();
    if sb.read_only() {
        return Err(EROFS);
    }
    let flags = flags_of(attrs);
    let rec = {
        // The whole volume: the first flag stored sets a feature bit in the superblock.
        let mut vol = sb.info().lock();
        if vol.layer(info.layer).map_err(errno)?.is_read_only() {
            return Err(EROFS);
        }
        let old = vol.inode(info.layer, info.ino).map_err(errno)?;
        let kind = old.mode & mode::S_IFMT;
        let protect = inode_flags::IMMUTABLE | inode_flags::APPEND;
        if kind != mode::S_IFREG && kind != mode::S_IFDIR && flags & protect != 0 {
            return Err(EOPNOTSUPP);
        }
        let stays_immutable = old.flags & flags & inode_flags::IMMUTABLE != 0;
        if stays_immutable && old.flags != flags {
            return Err(EPERM);
        }
        retry_for_space(sb, &mut vol, |v| {
            v.set_flags(info.layer, info.ino, flags, timestamp())
        })
        .map_err(errno)?
    };
    inode.refresh(&params(&rec)?);
    Ok(())
}

/// `EPERM` if the root directory of read-write layer `id` is immutable or append-only: its name
/// under the mount root cannot go or change (a rename or a removal of the layer), as the VFS
/// refuses to delete or rename such a directory and btrfs to delete such a subvolume. A frozen
/// layer is not refused: its attributes can no longer be changed, so it could never be removed
/// (btrfs lets a read-only snapshot be made writable first; a frozen layer stays frozen).
pub(super) fn check_layer_root(vol: &mut VolGuard<'_>, id: u64) -> Result {
    if vol.layer(id).map_err(errno)?.is_read_only() {
        return Ok(());
    }
    // A root that cannot be read does not stand in the way: the operation meets the damage
    // itself (and a damaged layer must stay removable).
    match vol.inode(id, ROOT_INO) {
        Ok(root) if root.flags & (inode_flags::IMMUTABLE | inode_flags::APPEND) != 0 => Err(EPERM),
        _ => Ok(()),
    }
}

#[kunit_tests(lcfs_attr)]
mod tests {
    use super::*;

    #[test]
    fn record_flags_and_attributes_map_both_ways() {
        for flags in 0..=inode_flags::KNOWN {
            assert_eq!(flags_of(attrs_of(flags)), flags);
        }
        let one = |flags| attrs_of(flags);
        assert!(one(inode_flags::IMMUTABLE).immutable);
        assert!(one(inode_flags::APPEND).append);
        assert!(one(inode_flags::NODUMP).nodump);
        assert!(one(inode_flags::NOATIME).noatime);
        assert_eq!(attrs_of(0), FileAttrs::default());
    }
}

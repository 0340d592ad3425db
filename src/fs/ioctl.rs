// SPDX-License-Identifier: GPL-2.0

//! The ioctls of LCFS (`include/uapi/linux/lcfs.h`).

use kernel::prelude::*;

use crate::format::superblock::{self, Superblock};
use crate::format::BLOCK_SIZE;
use crate::vfs::{FsInfo, Inode, Output, Request};

use super::Lcfs;

/// `LCFS_IOC_FS_INFO` output for superblock `disk`.
fn fs_info(disk: &Superblock) -> FsInfo {
    let mut info = FsInfo {
        format_version: superblock::VERSION,
        block_size: BLOCK_SIZE,
        generation: disk.generation,
        total_blocks: disk.total_blocks,
        free_blocks: disk.free_blocks,
        uuid: disk.uuid,
        ..FsInfo::default()
    };
    // The on-disk label is NUL-padded and at most 63 bytes, so the copy stays NUL-terminated.
    for (dst, src) in info.label.iter_mut().zip(disk.label.iter()) {
        *dst = c_char::from_ne_bytes([*src]);
    }
    info
}

/// Handles `request` on an open file of `inode`.
pub(crate) fn ioctl(inode: &Inode<Lcfs>, request: Request, out: Output) -> Result {
    match request {
        Request::FsInfo => {
            let disk = inode.super_block().info().lock().superblock();
            out.write_fs_info(&fs_info(&disk))
        }
    }
}

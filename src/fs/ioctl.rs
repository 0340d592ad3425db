// SPDX-License-Identifier: GPL-2.0

//! The ioctls of LCFS (`include/uapi/linux/lcfs.h`): checking each request's input (reserved
//! fields zero, known flags, valid names: `EINVAL` otherwise) and handing it to `layers`; and the
//! generic label requests (`FS_IOC_GETFSLABEL`, `FS_IOC_SETFSLABEL`).

use kernel::prelude::*;

use crate::format::superblock::{self, Superblock};
use crate::format::BLOCK_SIZE;
use crate::vfs::{
    capable_sys_admin, FsInfo, Inode, Label, LayerCreate, LayerDiff, LayerList, Output, Request,
    UserArray, CREATE_READ_ONLY, DIFF_BUF_MAX, DIFF_BUF_MIN, LIST_MAX,
};

use super::commit::commit;
use super::errno::errno;
use super::layers::{self, name_of, Source};
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

/// `EINVAL` unless every reserved value is zero.
fn reserved_zero(values: &[u64]) -> Result {
    if values.iter().any(|&v| v != 0) {
        return Err(EINVAL);
    }
    Ok(())
}

/// Which request made a new layer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    Empty,
    Clone,
    Snapshot,
}

/// The new layer's name and source of a create, clone or snapshot request.
fn create_args(c: &LayerCreate, kind: Create) -> Result<(&[u8], Source)> {
    reserved_zero(&c.reserved)?;
    if c.reserved0 != 0 || c.id != 0 {
        return Err(EINVAL);
    }
    let source = match kind {
        Create::Empty if c.flags == 0 && c.source == 0 => Source::Empty,
        Create::Clone if c.flags & !CREATE_READ_ONLY == 0 && c.source != 0 => Source::Clone {
            parent: c.source,
            read_only: c.flags & CREATE_READ_ONLY != 0,
        },
        Create::Snapshot if c.flags == 0 && c.source != 0 => Source::Snapshot(c.source),
        _ => return Err(EINVAL),
    };
    Ok((name_of(&c.name)?, source))
}

/// A create, clone or snapshot request: makes the layer and reports its id in `c`.
fn create(inode: &Inode<Lcfs>, mut c: LayerCreate, kind: Create, out: Output) -> Result {
    let (name, source) = create_args(&c, kind)?;
    c.id = layers::create(inode.super_block(), name, source)?;
    out.write(&c)
}

/// Handles `request` on an open file of `inode`.
pub(crate) fn ioctl(inode: &Inode<Lcfs>, request: Request, out: Output) -> Result {
    let sb = inode.super_block();
    match request {
        Request::FsInfo => {
            let (disk, queued, cached) = {
                let mut vol = sb.info().lock();
                let cached = sb.info().vol.cached_nodes();
                (
                    vol.superblock(),
                    vol.reclaim_queued().map_err(errno)?,
                    cached,
                )
            };
            let mut info = fs_info(&disk);
            info.reclaim_queued = queued;
            info.cached_nodes = u64::try_from(cached).unwrap_or(u64::MAX);
            out.write(&info)
        }
        Request::LayerCreate(c) => create(inode, c, Create::Empty, out),
        Request::LayerClone(c) => create(inode, c, Create::Clone, out),
        Request::LayerSnapshot(c) => create(inode, c, Create::Snapshot, out),
        Request::LayerFreeze(r) => {
            reserved_zero(&r.reserved)?;
            layers::freeze(sb, r.id)
        }
        Request::LayerRename(r) => {
            reserved_zero(&r.reserved)?;
            layers::rename(sb, r.id, name_of(&r.name)?)
        }
        Request::LayerRemove(r) => {
            reserved_zero(&r.reserved)?;
            layers::remove(sb, r.id)
        }
        Request::LayerInfo(i) => {
            reserved_zero(&i.reserved)?;
            // Every field but the id and the name is output only.
            let outputs = [i.parent, i.inodes, i.bytes, i.own_bytes];
            let small = [i.flags, i.children, i.create_nsec, i.valid];
            if outputs.iter().any(|&v| v != 0) || small.iter().any(|&v| v != 0) || i.create_sec != 0
            {
                return Err(EINVAL);
            }
            let named = i.name.first().is_some_and(|&b| b != 0);
            let name = match (i.id, named) {
                (0, true) => Some(name_of(&i.name)?),
                (_, false) => None,
                // Both an id and a name.
                (_, true) => return Err(EINVAL),
            };
            out.write(&layers::info(inode, i.id, name)?)
        }
        Request::LayerDiff(d) => {
            reserved_zero(&d.reserved)?;
            if d.count != 0 || d.buf_size < DIFF_BUF_MIN {
                return Err(EINVAL);
            }
            let limit = usize::try_from(d.buf_size.min(DIFF_BUF_MAX)).map_err(|_| EINVAL)?;
            let size = usize::try_from(d.buf_size).map_err(|_| EINVAL)?;
            let buf = UserArray::new(d.buf, size)?;
            let batch = layers::diff(sb, d.id, d.base, d.cursor, buf, limit)?;
            out.write(&LayerDiff {
                cursor: batch.cursor,
                buf_size: batch.filled,
                count: batch.count,
                ..d
            })
        }
        Request::LayerList(l) => {
            reserved_zero(&l.reserved)?;
            if l.reserved0 != 0 || l.count == 0 || l.count > LIST_MAX {
                return Err(EINVAL);
            }
            let count = usize::try_from(l.count).map_err(|_| EINVAL)?;
            let entries = UserArray::new(l.entries, count)?;
            let (filled, next) = layers::list(sb, l.cursor, entries, count)?;
            out.write(&LayerList {
                cursor: next,
                count: filled,
                ..l
            })
        }
        Request::GetLabel => {
            let disk = sb.info().lock_read().superblock();
            let mut label: Label = [0; _];
            // The on-disk label is NUL-padded and at most 63 bytes: the copy stays
            // NUL-terminated.
            for (dst, src) in label.iter_mut().zip(disk.label.iter()) {
                *dst = *src;
            }
            out.write(&label)
        }
        Request::SetLabel(new) => {
            if !capable_sys_admin() {
                return Err(EPERM);
            }
            // NUL-terminated within the buffer, UTF-8 and short enough for the superblock
            // (63 bytes), or `EINVAL`, as ext4 answers a label longer than its field.
            let len = new.iter().position(|&b| b == 0).ok_or(EINVAL)?;
            let label = new.get(..len).ok_or(EINVAL)?;
            let label = core::str::from_utf8(label).map_err(|_| EINVAL)?;
            sb.info().lock().set_label(label).map_err(errno)?;
            // On the medium before the call returns, as btrfs commits a label change.
            commit(sb)
        }
    }
}

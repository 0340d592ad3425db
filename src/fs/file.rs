// SPDX-License-Identifier: GPL-2.0

//! Regular files: the format core's block map behind the VFS layer's [`DataOperations`] (iomap),
//! and the [`FileOperations`] of open files (fsync, fallocate, ioctl).
//!
//! Blocks are allocated when a write enters the page cache (so `write(2)` reports ENOSPC),
//! as unwritten extents for holes and as staging blocks for blocks shared with another layer;
//! writeback completion turns them into data (see `crate::format::data`). A crash in between
//! leaves zeros or the old contents, never stale blocks.

use core::sync::atomic::{fence, AtomicU64, Ordering};

use kernel::prelude::*;
use kernel::sync::aref::ARef;

use crate::format::data::{MapKind as CoreMap, WriteKind};
use crate::format::namespace::SetAttr;
use crate::format::tree::Error as CoreError;
use crate::format::BLOCK_SHIFT;
use crate::vfs::{
    DataOperations, FileMap, FileOperations, Inode, MapFor, MapKind, Output, Request,
};

use super::commit::{retry_for_space, VolGuard};
use super::errno::errno;
use super::layers::Started;
use super::namespace::sectors;
use super::time::to_core;
use super::Lcfs;

#[vtable]
impl DataOperations for Lcfs {
    fn map(inode: &Inode<Self>, pos: u64, len: u64, purpose: MapFor) -> Result<FileMap> {
        map(inode, pos, len, purpose)
    }

    fn map_writeback(inode: &Inode<Self>, pos: u64, len: u64) -> Result<FileMap> {
        map_writeback(inode, pos, len)
    }

    fn write_done(inode: &Inode<Self>, pos: u64, len: u64) -> Result {
        write_done(inode, pos, len)
    }

    fn store_size(inode: &Inode<Self>, size: u64) -> Result {
        store_attrs(inode, Some(size))
    }

    fn start_change(inode: &Inode<Self>) -> Result<u64> {
        let started = super::layers::start_change(inode)?;
        super::share::unshare(inode);
        if let Started::Locked(Some(epoch)) = started {
            if let Err(e) = renew_data_id(inode, epoch) {
                super::layers::end_change(inode, started);
                return Err(e);
            }
        }
        Ok(match started {
            Started::Quick => CHANGE_QUICK,
            Started::Locked(_) => CHANGE_LOCKED,
        })
    }

    fn end_change(inode: &Inode<Self>, token: u64) {
        let started = if token == CHANGE_QUICK {
            Started::Quick
        } else {
            Started::Locked(None)
        };
        super::layers::end_change(inode, started)
    }

    fn map_valid(inode: &Inode<Self>, cookie: u64) -> bool {
        cookie == published_epoch(inode)
    }

    /// By layer: completions of one layer hold its slot one at a time anyway, and those of
    /// different layers then record their writes at once.
    fn completion_lane(inode: &Inode<Self>) -> usize {
        // Truncating the id only chooses among the lanes.
        inode.info().layer as usize
    }

    /// A dirty folio's block is the file's own (an exclusive run or a staging run, which
    /// writeback finds again), and everything that would share or move it writes the folio
    /// back first, under the file's `i_rwsem` or a layer hold that waits for changes:
    /// snapshots and clones (their flush), reflinks (the source range written back),
    /// truncation and hole punches (whole blocks' folios dropped). Not on a read-only mount,
    /// nor after the transaction aborted (the published epoch is then `u64::MAX`), where
    /// `map` refuses writes.
    fn dirty_keeps_mapping(inode: &Inode<Self>) -> bool {
        !inode.super_block().read_only() && published_epoch(inode) != u64::MAX
    }
}

#[vtable]
impl FileOperations for Lcfs {
    fn fsync(inode: &Inode<Self>) -> Result {
        let info = inode.info();
        super::commit::fsync(inode.super_block(), info.layer, info.ino)
    }

    fn allocate(inode: &Inode<Self>, pos: u64, len: u64) -> Result {
        allocate(inode, pos, len)
    }

    fn punch(inode: &Inode<Self>, pos: u64, len: u64) -> Result {
        punch(inode, pos, len)
    }

    fn open_writer(inode: &Inode<Self>) -> Result {
        super::layers::open_writer(inode)?;
        super::share::unshare(inode);
        Ok(())
    }

    fn release_writer(inode: &Inode<Self>) {
        super::layers::release_writer(inode)
    }

    fn ioctl(inode: &Inode<Self>, request: Request, out: Output) -> Result {
        super::ioctl::ioctl(inode, request, out)
    }

    fn clone_range(
        src: &Inode<Self>,
        src_pos: u64,
        dst: &Inode<Self>,
        dst_pos: u64,
        len: u64,
    ) -> Result {
        clone_range(src, src_pos, dst, dst_pos, len)
    }

    fn content(inode: &Inode<Self>) -> Result<Option<ARef<Inode<Self>>>> {
        super::share::content(inode)
    }

    fn shares(inode: &Inode<Self>) -> bool {
        super::share::shares(inode)
    }
}

/// Gives `inode` a `data_id` of its own before a change of its contents in flush epoch
/// `epoch` (see [`super::layers::start_change`]).
fn renew_data_id(inode: &Inode<Lcfs>, epoch: u64) -> Result {
    let info = inode.info();
    let sb = inode.super_block();
    let mut vol = sb.info().lock_layer(info.layer);
    retry_for_space(sb, &mut vol, |v| v.renew_data_id(info.layer, info.ino)).map_err(errno)?;
    info.renewed
        .store(epoch, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Blocks covering bytes `[pos, pos + len)`: the first block and the count.
fn blocks(pos: u64, len: u64) -> Result<(u64, u64)> {
    let end = pos.checked_add(len).ok_or(EFBIG)?;
    let first = pos >> BLOCK_SHIFT;
    let last = end.checked_add((1 << BLOCK_SHIFT) - 1).ok_or(EFBIG)? >> BLOCK_SHIFT;
    Ok((first, last.saturating_sub(first).max(1)))
}

fn bytes(block: u64) -> Result<u64> {
    block.checked_mul(1 << BLOCK_SHIFT).ok_or(EFBIG)
}

fn file_map(fblock: u64, len: u64, kind: MapKind) -> Result<FileMap> {
    Ok(FileMap {
        offset: bytes(fblock)?,
        length: bytes(len)?,
        kind,
        cookie: 0,
    })
}

/// [`DataOperations::start_change`]'s tokens: how the change started.
const CHANGE_LOCKED: u64 = 0;
const CHANGE_QUICK: u64 = 1;

/// The volume's map epoch as of the last release of its lock (`MountInfo::map_epoch`).
fn published_epoch(inode: &Inode<Lcfs>) -> u64 {
    inode
        .super_block()
        .info()
        .vol
        .map_epoch
        .load(Ordering::Acquire)
}

/// The last write mapping [`Volume::map_write`] gave for a file, kept with the map epoch it
/// was given in: a small append or overwrite then finds its block without the volume lock, as
/// long as nothing in the volume changed since (the in-place cache's own rule: any
/// `Volume::mutate` moves the epoch, so nothing that moves, shares, stages or converts blocks
/// leaves a kept mapping standing). Only runs the file alone references are kept (unwritten
/// blocks of its own and written blocks overwritten in place), never new or staging blocks.
///
/// A sequence lock in atomics: writers (a buffered write under `i_rwsem`, a write fault under
/// the mapping's lock) may race each other, so a writer claims the odd count first and skips
/// if another holds it; a reader retries never, it takes the locked way instead.
///
/// [`Volume::map_write`]: crate::format::volume::Volume
pub(crate) struct WriteHint {
    seq: AtomicU64,
    epoch: AtomicU64,
    fblock: AtomicU64,
    /// Blocks in the run, with [`HINT_UNWRITTEN`] for an unwritten one.
    len: AtomicU64,
    disk_block: AtomicU64,
}

/// Set in [`WriteHint::len`] for an unwritten run.
const HINT_UNWRITTEN: u64 = 1 << 63;

impl WriteHint {
    pub(crate) const fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            epoch: AtomicU64::new(u64::MAX),
            fblock: AtomicU64::new(0),
            len: AtomicU64::new(0),
            disk_block: AtomicU64::new(0),
        }
    }

    /// The kept run from `fblock` if it was given in `epoch`: (disk block, blocks left in the
    /// run, unwritten).
    fn get(&self, epoch: u64, fblock: u64) -> Option<(u64, u64, bool)> {
        if epoch == u64::MAX {
            return None;
        }
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let (e, start, len, disk) = (
            self.epoch.load(Ordering::Relaxed),
            self.fblock.load(Ordering::Relaxed),
            self.len.load(Ordering::Relaxed),
            self.disk_block.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != s1 || e != epoch {
            return None;
        }
        let into = fblock.checked_sub(start)?;
        let left = (len & !HINT_UNWRITTEN)
            .checked_sub(into)
            .filter(|&l| l > 0)?;
        Some((disk.checked_add(into)?, left, len & HINT_UNWRITTEN != 0))
    }

    /// Keeps the run `w` given in `epoch`, unless another writer is keeping one now.
    fn set(&self, epoch: u64, w: &crate::format::data::WriteMap) {
        let unwritten = match w.kind {
            WriteKind::Unwritten => HINT_UNWRITTEN,
            WriteKind::InPlace => 0,
            _ => return,
        };
        if epoch == u64::MAX || w.len == 0 || w.len & HINT_UNWRITTEN != 0 {
            return;
        }
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 != 0
            || self
                .seq
                .compare_exchange(s, s.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        self.epoch.store(epoch, Ordering::Relaxed);
        self.fblock.store(w.fblock, Ordering::Relaxed);
        self.len.store(w.len | unwritten, Ordering::Relaxed);
        self.disk_block.store(w.disk_block, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

fn read_map(inode: &Inode<Lcfs>, first: u64, count: u64) -> Result<FileMap> {
    let info = inode.info();
    let sb = inode.super_block();
    let frozen = info
        .frozen
        .as_ref()
        .and_then(|f| super::frozen::map_read(sb, f, info.ino, first, count));
    let m = match frozen {
        Some(m) => m?,
        None => sb
            .info()
            .read_layer(info.layer)
            .map_read(info.layer, info.ino, first, count)
            .map_err(errno)?,
    };
    file_map(m.fblock, m.len, map_kind(m.kind, false)?)
}

/// The VFS form of a core mapping; `shared` marks written blocks others reference too.
fn map_kind(kind: CoreMap, shared: bool) -> Result<MapKind> {
    Ok(match kind {
        CoreMap::Hole => MapKind::Hole,
        CoreMap::Unwritten { disk_block } => MapKind::Unwritten {
            addr: bytes(disk_block)?,
        },
        CoreMap::Written { disk_block } if shared => MapKind::Shared {
            addr: bytes(disk_block)?,
        },
        CoreMap::Written { disk_block } => MapKind::Mapped {
            addr: bytes(disk_block)?,
        },
    })
}

/// A run of the file's layout for FIEMAP, with the blocks other layers share marked. Read
/// through the volume in every layer (frozen ones too): it is not on any data path.
fn report_map(inode: &Inode<Lcfs>, first: u64, count: u64) -> Result<FileMap> {
    let info = inode.info();
    let (m, shared) = inode
        .super_block()
        .info()
        .read_layer(info.layer)
        .map_report(info.layer, info.ino, first, count)
        .map_err(errno)?;
    file_map(m.fblock, m.len, map_kind(m.kind, shared)?)
}

fn map(inode: &Inode<Lcfs>, pos: u64, len: u64, purpose: MapFor) -> Result<FileMap> {
    // Read before anything is mapped: a mapping made from what is seen after it holds while
    // the epoch stays (`map_valid`), and iomap finds it stale if the epoch moved. A mapping
    // from the volume carries the epoch it was made in instead.
    let seen = published_epoch(inode);
    let with_seen = |m: FileMap| FileMap { cookie: seen, ..m };
    let (first, count) = blocks(pos, len)?;
    if purpose == MapFor::Read {
        return read_map(inode, first, count).map(with_seen);
    }
    if purpose == MapFor::Report {
        return report_map(inode, first, count).map(with_seen);
    }
    let mut count = count;
    if purpose == MapFor::Unshare {
        // Only a shared written run gets new blocks (as a write would); holes, unwritten and
        // own blocks are left as they are.
        let m = report_map(inode, first, count)?;
        let MapKind::Shared { .. } = m.kind else {
            return Ok(with_seen(m));
        };
        count = m.length >> BLOCK_SHIFT;
    }
    if purpose == MapFor::Zero {
        // Zeroing leaves holes and unwritten blocks alone; only data needs a writable block.
        let m = read_map(inode, first, count)?;
        if !matches!(m.kind, MapKind::Mapped { .. }) {
            return Ok(with_seen(m));
        }
    }
    if inode.super_block().read_only() {
        return Err(EROFS);
    }
    let info = inode.info();
    let sb = inode.super_block();
    if purpose == MapFor::Write {
        if let Some((disk, left, unwritten)) = info.write_hint.get(seen, first) {
            let addr = bytes(disk)?;
            let kind = if unwritten {
                MapKind::Unwritten { addr }
            } else {
                MapKind::Mapped { addr }
            };
            return file_map(first, left.min(count), kind).map(with_seen);
        }
    }
    let (w, epoch) = {
        let mut vol = sb.info().lock_layer(info.layer);
        let w = retry_for_space(sb, &mut vol, |v| {
            v.map_write(info.layer, info.ino, first, count)
        })
        .map_err(errno)?;
        if w.kind == WriteKind::New {
            update_blocks(inode, &mut vol)?;
        }
        // What the lock's release publishes: nothing changes the volume before then.
        let epoch = vol.map_epoch().unwrap_or(u64::MAX);
        if purpose == MapFor::Write {
            info.write_hint.set(epoch, &w);
        }
        (w, epoch)
    };
    let addr = bytes(w.disk_block)?;
    let kind = match w.kind {
        WriteKind::New | WriteKind::Unwritten => MapKind::Unwritten { addr },
        WriteKind::InPlace => MapKind::Mapped { addr },
        WriteKind::Cow { src_disk_block } => MapKind::Cow {
            addr,
            src: bytes(src_disk_block)?,
        },
    };
    let mut m = file_map(w.fblock, w.len, kind)?;
    m.cookie = epoch;
    Ok(m)
}

fn map_writeback(inode: &Inode<Lcfs>, pos: u64, len: u64) -> Result<FileMap> {
    let (first, count) = blocks(pos, len)?;
    let info = inode.info();
    let (disk, n) = inode
        .super_block()
        .info()
        .lock_layer(info.layer)
        .map_writeback(info.layer, info.ino, first, count)
        .map_err(|e| {
            // An aborted (or shut down) filesystem writes nothing more: no news.
            if matches!(e, CoreError::Aborted) {
                return EIO;
            }
            pr_err!(
                "{}: no block to write back for inode {} of layer {}, block {}: {:?}\n",
                inode.super_block().id(),
                info.ino,
                info.layer,
                first,
                e
            );
            EIO
        })?;
    file_map(first, n, MapKind::Mapped { addr: bytes(disk)? })
}

fn write_done(inode: &Inode<Lcfs>, pos: u64, len: u64) -> Result {
    let (first, count) = blocks(pos, len)?;
    let info = inode.info();
    let mut vol = inode.super_block().info().lock_layer(info.layer);
    vol.complete_write(info.layer, info.ino, first, count)
        .map_err(errno)?;
    // The size a buffered write grew the file to, as far as this range carries the data.
    let cached = u64::try_from(inode.size()).unwrap_or(0);
    let want = pos.checked_add(len).ok_or(EFBIG)?.min(cached);
    vol.grow_size(info.layer, info.ino, want).map_err(errno)?;
    Ok(())
}

/// Stores the cached inode's timestamps (and its size, when given) on disk.
pub(crate) fn store_attrs(inode: &Inode<Lcfs>, size: Option<u64>) -> Result {
    let info = inode.info();
    let sb = inode.super_block();
    // A frozen layer's records never change (an atime update of one of its files would only be
    // refused, after waiting for the volume lock on a path that is otherwise lock-free).
    if info.layer == 0 || sb.read_only() || info.frozen.is_some() {
        return Ok(());
    }
    let [atime, mtime, ctime] = inode.times();
    let attr = SetAttr {
        size,
        atime: Some(to_core(atime)),
        mtime: Some(to_core(mtime)),
        ctime: Some(to_core(ctime)),
        ..SetAttr::default()
    };
    retry_for_space(sb, &mut sb.info().lock_layer(info.layer), |v| {
        v.set_attr(info.layer, info.ino, &attr)
    })
    .map(|_| ())
    .map_err(errno)
}

/// Copies the allocated-space count of `inode`'s record into the cached inode.
fn update_blocks(inode: &Inode<Lcfs>, vol: &mut VolGuard<'_>) -> Result {
    let info = inode.info();
    let rec = vol.inode(info.layer, info.ino).map_err(errno)?;
    inode.set_blocks(sectors(rec.blocks));
    Ok(())
}

fn allocate(inode: &Inode<Lcfs>, pos: u64, len: u64) -> Result {
    let (first, count) = blocks(pos, len)?;
    let info = inode.info();
    let sb = inode.super_block();
    let mut vol = sb.info().lock_layer(info.layer);
    let r = retry_for_space(sb, &mut vol, |v| {
        v.allocate(info.layer, info.ino, first, count)
    })
    .map_err(errno);
    // Part of the range may be allocated even when the rest did not fit.
    update_blocks(inode, &mut vol)?;
    r
}

fn punch(inode: &Inode<Lcfs>, pos: u64, len: u64) -> Result {
    let (first, count) = blocks(pos, len)?;
    let info = inode.info();
    let mut vol = inode.super_block().info().lock_layer(info.layer);
    let r = vol
        .punch_hole(info.layer, info.ino, first, count)
        .map_err(errno);
    update_blocks(inode, &mut vol)?;
    r
}

/// Reflink: the destination's blocks in the range share the source's (`Volume::clone_range`),
/// in as many calls as the core needs; a full device commits and retries as writes do.
fn clone_range(
    src: &Inode<Lcfs>,
    src_pos: u64,
    dst: &Inode<Lcfs>,
    dst_pos: u64,
    len: u64,
) -> Result {
    let sb = dst.super_block();
    if sb.read_only() {
        return Err(EROFS);
    }
    let (s, d) = (src.info(), dst.info());
    let (src_first, count) = blocks(src_pos, len)?;
    let (dst_first, _) = blocks(dst_pos, len)?;
    // Within a layer beside other layers' changes; across layers on the whole volume.
    let mut vol = if s.layer == d.layer {
        sb.info().lock_layer(d.layer)
    } else {
        sb.info().lock()
    };
    let mut done = 0;
    let r = loop {
        if done >= count {
            break Ok(());
        }
        let (Some(from), Some(to)) = (src_first.checked_add(done), dst_first.checked_add(done))
        else {
            break Err(EFBIG);
        };
        match retry_for_space(sb, &mut vol, |v| {
            v.clone_range(s.layer, s.ino, from, d.layer, d.ino, to, count - done)
        }) {
            Ok(0) => break Err(EIO),
            Ok(n) => done = done.saturating_add(n),
            Err(e) => break Err(errno(e)),
        }
    };
    // Part of the range may be shared even when the rest failed.
    update_blocks(dst, &mut vol)?;
    r
}

#[kunit_tests(lcfs_write_hint)]
mod tests {
    use super::*;
    use crate::format::data::WriteMap;

    fn run(kind: WriteKind) -> WriteMap {
        WriteMap {
            fblock: 10,
            len: 4,
            disk_block: 100,
            kind,
        }
    }

    #[test]
    fn a_kept_run_answers_inside_it_in_its_epoch_only() {
        let h = WriteHint::new();
        assert_eq!(h.get(7, 10), None);
        h.set(7, &run(WriteKind::InPlace));
        assert_eq!(h.get(7, 10), Some((100, 4, false)));
        assert_eq!(h.get(7, 13), Some((103, 1, false)));
        assert_eq!(h.get(7, 14), None);
        assert_eq!(h.get(7, 9), None);
        assert_eq!(h.get(8, 10), None);
        assert_eq!(h.get(6, 10), None);
    }

    #[test]
    fn unwritten_runs_are_kept_as_unwritten() {
        let h = WriteHint::new();
        h.set(3, &run(WriteKind::Unwritten));
        assert_eq!(h.get(3, 11), Some((101, 3, true)));
        // A newer run replaces it.
        h.set(4, &run(WriteKind::InPlace));
        assert_eq!(h.get(3, 11), None);
        assert_eq!(h.get(4, 11), Some((101, 3, false)));
    }

    #[test]
    fn new_and_staging_blocks_and_dead_volumes_are_not_kept() {
        let h = WriteHint::new();
        h.set(5, &run(WriteKind::New));
        assert_eq!(h.get(5, 10), None);
        h.set(5, &run(WriteKind::Cow { src_disk_block: 50 }));
        assert_eq!(h.get(5, 10), None);
        // `u64::MAX` is the epoch of a volume that takes no changes.
        h.set(u64::MAX, &run(WriteKind::InPlace));
        assert_eq!(h.get(u64::MAX, 10), None);
    }
}

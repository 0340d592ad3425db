// SPDX-License-Identifier: GPL-2.0

//! Layers as live operations: the layer ioctls (create, clone, snapshot, freeze, rename,
//! remove, info, list) and the bookkeeping they need: which layers have files open for writing.
//!
//! Every change commits before it returns, so a layer the caller was told about survives a
//! crash. Changes that must see a layer's data in its tree (snapshot of a read-write layer,
//! freeze, remove) hold that layer still ([`hold`]): they wait for its data changes in progress
//! (writes, write faults, truncates, `fallocate`) to end, make new ones wait, and write back the
//! layer's dirty page cache, then change the tree. Other layers' I/O goes on meanwhile.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel::prelude::*;
use kernel::sync::{CondVar, Mutex};
use kernel::{new_condvar, new_mutex};

use crate::format::namespace::{PathChange, PathCursor};
use crate::format::node::Key;
use crate::format::records::{layer_flags, LAYER_NAME_MAX};
use crate::format::tree::Error as CoreError;
use crate::format::volume::LayerInfo as CoreLayer;
use crate::vfs::{capable_sys_admin, Inode, LayerInfo, SuperBlock, UserArray};

use super::commit::{commit, commit_locked};
use super::errno::errno;
use super::time::timestamp;
use super::Lcfs;

/// What a new layer starts from.
pub(super) enum Source {
    /// An empty root directory.
    Empty,
    /// A clone of this frozen layer.
    Clone {
        /// The parent.
        parent: u64,
        /// The clone starts frozen.
        read_only: bool,
    },
    /// A frozen copy of this layer as it is now.
    Snapshot(u64),
}

/// A layer name from an ioctl structure: the bytes before the first NUL, which must come within
/// the field, and a valid name (`EINVAL` otherwise).
pub(super) fn name_of(field: &[c_char]) -> Result<&[u8]> {
    let bytes = kernel::transmute::AsBytes::as_bytes(field);
    let len = bytes.iter().position(|&b| b == 0).ok_or(EINVAL)?;
    let name = bytes.get(..len).ok_or(EINVAL)?;
    crate::format::records::check_layer_name(name).map_err(|_| EINVAL)?;
    Ok(name)
}

/// Fails with `EPERM` unless the caller may change layers: `CAP_SYS_ADMIN` in the initial user
/// namespace (the root of a container's own user namespace does not count), and `EROFS` on a
/// read-only mount.
pub(super) fn may_change(sb: &SuperBlock<Lcfs>) -> Result {
    if !capable_sys_admin() {
        return Err(EPERM);
    }
    if sb.read_only() {
        return Err(EROFS);
    }
    Ok(())
}

/// The mount root lists the layers (no `layer=`): its cached names must follow the changes.
fn root_lists_layers(sb: &SuperBlock<Lcfs>) -> bool {
    sb.info().layer.is_none()
}

/// Creates a layer named `name` from `source`; returns its id.
pub(super) fn create(sb: &SuperBlock<Lcfs>, name: &[u8], source: Source) -> Result<u64> {
    may_change(sb)?;
    let make = || -> Result<u64> {
        let mut vol = sb.info().lock_for_commit();
        let now = timestamp();
        let id = match source {
            Source::Empty => vol.create_layer(name, None, now),
            Source::Clone { parent, read_only } => {
                vol.create_layer(name, Some(parent), now).and_then(|id| {
                    if read_only {
                        vol.freeze_layer(id)?;
                    }
                    Ok(id)
                })
            }
            Source::Snapshot(of) => vol.snapshot_layer(name, of, now),
        }
        .map_err(errno)?;
        // Under the same hold: a layer is never seen frozen before its tree is committed.
        commit_locked(sb, &mut vol)?;
        Ok(id)
    };
    let id = match source {
        // The copy must hold the data written so far, and none written while it is made.
        Source::Snapshot(of) if !is_frozen(sb, of)? => {
            let _hold = hold(sb, of, false)?;
            flush(sb, of)?;
            make()?
        }
        _ => make()?,
    };
    if root_lists_layers(sb) {
        sb.forget_root_name(name)?;
    }
    Ok(id)
}

/// Whether layer `id` is frozen.
fn is_frozen(sb: &SuperBlock<Lcfs>, id: u64) -> Result<bool> {
    Ok(sb.info().lock().layer(id).map_err(errno)?.is_read_only())
}

/// Freezes layer `id`: `EBUSY` while a file of it is open for writing.
pub(super) fn freeze(sb: &SuperBlock<Lcfs>, id: u64) -> Result {
    may_change(sb)?;
    let _hold = hold(sb, id, true)?;
    flush(sb, id)?;
    let mut vol = sb.info().lock_for_commit();
    vol.freeze_layer(id).map_err(errno)?;
    // Under the same hold: a layer is never seen frozen before its tree is committed.
    commit_locked(sb, &mut vol)
}

/// Renames layer `id` to `name`: `EPERM` if it is read-write and its root directory immutable
/// or append-only.
pub(super) fn rename(sb: &SuperBlock<Lcfs>, id: u64, name: &[u8]) -> Result {
    may_change(sb)?;
    let mut old = [0u8; LAYER_NAME_MAX];
    let old_len = {
        let mut vol = sb.info().lock();
        let l = vol.layer(id).map_err(errno)?;
        let n = l.name().len();
        old.get_mut(..n).ok_or(EUCLEAN)?.copy_from_slice(l.name());
        super::attr::check_layer_root(&mut vol, id)?;
        vol.rename_layer(id, name).map_err(errno)?;
        n
    };
    commit(sb)?;
    if root_lists_layers(sb) {
        sb.forget_root_name(old.get(..old_len).ok_or(EUCLEAN)?)?;
        sb.forget_root_name(name)?;
    }
    Ok(())
}

/// Removes layer `id`: `ENOTEMPTY` while it has children, `EBUSY` while anything uses it,
/// `EPERM` if it is read-write and its root directory immutable or append-only.
pub(super) fn remove(sb: &SuperBlock<Lcfs>, id: u64) -> Result {
    may_change(sb)?;
    if sb.info().layer == Some(id) {
        // Mounted as the root (`layer=`).
        return Err(EBUSY);
    }
    let mut name = [0u8; LAYER_NAME_MAX];
    let name_len = {
        let mut vol = sb.info().lock();
        let l = vol.layer(id).map_err(errno)?;
        if l.children > 0 {
            return Err(ENOTEMPTY);
        }
        // A read-write layer whose root directory is immutable or append-only: not removed
        // (`chattr -i` first).
        super::attr::check_layer_root(&mut vol, id)?;
        let n = l.name().len();
        name.get_mut(..n).ok_or(EUCLEAN)?.copy_from_slice(l.name());
        n
    };
    let name = name.get(..name_len).ok_or(EUCLEAN)?;
    // Held: no data of the layer is dirty or under writeback, and none can become so, when its
    // tree leaves the layer tree for the reclaim queue. The space comes back in the background.
    let hold = hold(sb, id, true)?;
    let drop_layer = || -> Result {
        flush(sb, id)?;
        // No lock-free reader may be in the tree when it goes to the reclaim queue.
        let retired = super::frozen::retire(sb, id)?;
        sb.info().lock().remove_layer(id).map_err(|e| match e {
            CoreError::Busy => ENOTEMPTY,
            e => errno(e),
        })?;
        retired.done();
        commit(sb)
    };
    let r = if root_lists_layers(sb) {
        sb.detach_root_name(name, drop_layer)
    } else {
        drop_layer()
    };
    drop(hold);
    super::reclaim::kick_if_queued(sb);
    r
}

/// The ABI form of a layer.
pub(super) fn info_of(l: &CoreLayer) -> LayerInfo {
    let mut info = LayerInfo {
        id: l.id,
        parent: l.parent,
        flags: if l.flags & layer_flags::READ_ONLY != 0 {
            crate::vfs::LAYER_READ_ONLY
        } else {
            0
        },
        children: l.children,
        create_sec: l.create_time.sec,
        create_nsec: l.create_time.nsec,
        valid: crate::vfs::INFO_OWN_BYTES,
        inodes: l.inodes_used,
        bytes: l.bytes_used,
        own_bytes: l.own_bytes,
        ..LayerInfo::default()
    };
    // A name is at most 255 bytes: the field's last byte stays NUL.
    for (dst, src) in info.name.iter_mut().zip(l.name()) {
        *dst = c_char::from_ne_bytes([*src]);
    }
    info
}

/// `LCFS_IOC_LAYER_INFO`: layer `id`, or the layer named `name` (`id` 0), or with neither the
/// layer of `inode`. Anyone may read the layer of a file they opened; other layers need
/// `CAP_SYS_ADMIN`, as their names do.
pub(super) fn info(inode: &Inode<Lcfs>, id: u64, name: Option<&[u8]>) -> Result<LayerInfo> {
    let own = inode.info().layer;
    let own_layer = own != 0 && (id == own || (id == 0 && name.is_none()));
    // Checked before the lookup: whether another layer exists is not told either.
    if !own_layer && !capable_sys_admin() {
        return Err(EPERM);
    }
    let sb = inode.super_block();
    let mut vol = sb.info().lock();
    let l = match (id, name) {
        (0, None) if own != 0 => vol.layer(own).map_err(errno)?,
        // The mount root that lists the layers is no layer.
        (0, None) => return Err(EINVAL),
        (0, Some(name)) => vol.find_layer(name).map_err(errno)?.ok_or(ENOENT)?,
        (id, _) => vol.layer(id).map_err(errno)?,
    };
    drop(vol);
    Ok(info_of(&l))
}

/// `LCFS_IOC_LAYER_LIST`: up to `count` layers with ids of `cursor` or more into the caller's
/// array; returns how many and where the next call starts (0: no layer is left).
pub(super) fn list(
    sb: &SuperBlock<Lcfs>,
    cursor: u64,
    mut out: UserArray<LayerInfo>,
    count: usize,
) -> Result<(u32, u64)> {
    if !capable_sys_admin() {
        return Err(EPERM);
    }
    // Collected under the volume lock, copied out after it (a copy may fault on this mount).
    let mut got: KVec<CoreLayer> = KVec::with_capacity(count, GFP_KERNEL)?;
    let mut next = 0;
    let mut failed = Ok(());
    sb.info()
        .lock()
        .for_each_layer_from(cursor, &mut |l| {
            if got.len() == count {
                next = l.id;
                return false;
            }
            failed = got.push(*l, GFP_KERNEL).map_err(Error::from);
            failed.is_ok()
        })
        .map_err(errno)?;
    failed?;
    for l in &got {
        out.push(&info_of(l))?;
    }
    let filled = u32::try_from(got.len()).map_err(|_| EINVAL)?;
    Ok((filled, next))
}

/// The result of one `LCFS_IOC_LAYER_DIFF` call.
pub(super) struct DiffBatch {
    /// Where the next call continues (all zero: done).
    pub(super) cursor: [u64; 4],
    /// Bytes filled.
    pub(super) filled: u32,
    /// Entries filled.
    pub(super) count: u32,
}

/// The ABI form of a diff cursor: key id, kind, offset, and the inode last reported.
fn cursor_abi(c: Option<PathCursor>) -> [u64; 4] {
    match c {
        Some(c) => [c.key.id, u64::from(c.key.kind), c.key.offset, c.reported],
        None => [0; 4],
    }
}

/// `LCFS_IOC_LAYER_DIFF`: the paths layer `id` changed against `base` (0: its parent) from
/// `cursor` on, as `struct lcfs_diff_entry` records in the caller's buffer (`limit` bytes
/// filled at most).
pub(super) fn diff(
    sb: &SuperBlock<Lcfs>,
    id: u64,
    base: u64,
    cursor: [u64; 4],
    mut out: UserArray<u8>,
    limit: usize,
) -> Result<DiffBatch> {
    if !capable_sys_admin() {
        return Err(EPERM);
    }
    let [kid, kkind, koffset, reported] = cursor;
    let from = PathCursor {
        key: Key::new(kid, u8::try_from(kkind).map_err(|_| EINVAL)?, koffset),
        reported,
    };
    // Filled under the volume lock, copied out after it (a copy may fault on this mount).
    let mut buf: KVec<u8> = KVec::with_capacity(limit, GFP_KERNEL)?;
    let mut count = 0u32;
    let mut failed = Ok(());
    let next = sb
        .info()
        .lock()
        .diff_paths_from(id, (base != 0).then_some(base), from, &mut |d| {
            let Ok(len) = u16::try_from(d.path.len()) else {
                failed = Err(EUCLEAN);
                return false;
            };
            // Header, path, padding to 8 bytes.
            let size = (8 + d.path.len()).next_multiple_of(8);
            if buf.len() + size > limit {
                return false;
            }
            let change = match d.change {
                PathChange::Added => crate::vfs::DIFF_ADDED,
                PathChange::Modified => crate::vfs::DIFF_MODIFIED,
                PathChange::Deleted => crate::vfs::DIFF_DELETED,
            };
            let pad = size - 8 - d.path.len();
            let mut header = [0u8; 8];
            header[0] = change;
            header[1] = d.dtype;
            header[2..4].copy_from_slice(&len.to_ne_bytes());
            failed = buf
                .extend_from_slice(&header, GFP_KERNEL)
                .and_then(|()| buf.extend_from_slice(d.path, GFP_KERNEL))
                .and_then(|()| buf.extend_from_slice(&[0u8; 8][..pad], GFP_KERNEL))
                .map_err(Error::from);
            count += 1;
            failed.is_ok()
        })
        .map_err(errno)?;
    failed?;
    out.write_bytes(&buf)?;
    Ok(DiffBatch {
        cursor: cursor_abi(next),
        filled: u32::try_from(buf.len()).map_err(|_| EINVAL)?,
        count,
    })
}

/// Which layers are in use for changes (see [`MountInfo::uses`]).
///
/// [`MountInfo::uses`]: super::mount::MountInfo
#[pin_data]
pub(crate) struct LayerUses {
    #[pin]
    uses: Mutex<Uses>,
    /// Signalled when a hold ends and when the last change of a held layer ends.
    #[pin]
    changed: CondVar,
    /// Data changes in progress that started the quick way, without the lock (see
    /// [`start_change`]), of every layer.
    quick: AtomicU64,
    /// Whether a hold is set (`Uses::held`): no change starts the quick way meanwhile.
    holding: AtomicBool,
    /// `Uses::epoch`, for changes that start the quick way. Set under the lock, before
    /// `holding` is cleared.
    epoch: AtomicU64,
}

/// How a data change started (see [`start_change`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    /// Counted in its layer's `Uses::changes`; the flush epoch to renew the file's `data_id` in,
    /// if it needs one.
    Locked(Option<u64>),
    /// Counted in `LayerUses::quick`: nothing to list or renew.
    Quick,
}

/// The counts behind [`LayerUses`].
struct Uses {
    /// Files open for writing, per layer: (layer id, count).
    writers: Counts,
    /// Data changes in progress (between `start_change` and `end_change`), per layer.
    changes: Counts,
    /// The layer held still, if any.
    held: Option<Held>,
    /// (layer, inode) of the files data changes touched since their layer's last flush: what
    /// a flush writes back. At most [`TOUCHED_MAX`] entries.
    touched: KVec<(u64, u64)>,
    /// Layers with touched files the list had no room for: their flush walks every cached
    /// inode instead.
    overflowed: KVec<u64>,
    /// Flushes so far. An inode listed in an earlier epoch may have been drained by its layer's
    /// flush since, so its next change lists it again (a duplicate at worst).
    epoch: u64,
}

/// Entries of the touched list: bounds its memory (16 bytes each) and the scan a flush makes.
const TOUCHED_MAX: usize = 4096;

#[derive(Clone, Copy)]
struct Held {
    layer: u64,
    /// For a freeze or a removal: opens for writing wait too, and then see the outcome.
    exclusive: bool,
}

/// (layer id, count) for each layer with a non-zero count.
struct Counts(KVec<(u64, u32)>);

impl Counts {
    fn get(&self, layer: u64) -> u32 {
        self.0
            .iter()
            .find(|(l, _)| *l == layer)
            .map_or(0, |&(_, n)| n)
    }

    fn add(&mut self, layer: u64) -> Result {
        if let Some(entry) = self.0.iter_mut().find(|(l, _)| *l == layer) {
            entry.1 = entry.1.checked_add(1).ok_or(EMFILE)?;
            return Ok(());
        }
        self.0.push((layer, 1), GFP_KERNEL)?;
        Ok(())
    }

    /// Takes one off `layer`'s count; returns what is left.
    fn sub(&mut self, layer: u64) -> u32 {
        let mut left = 0;
        for entry in self.0.iter_mut().filter(|(l, _)| *l == layer) {
            entry.1 = entry.1.saturating_sub(1);
            left = entry.1;
        }
        self.0.retain(|&mut (_, n)| n > 0);
        left
    }
}

impl LayerUses {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            uses <- new_mutex!(Uses {
                writers: Counts(KVec::new()),
                changes: Counts(KVec::new()),
                held: None,
                touched: KVec::new(),
                overflowed: KVec::new(),
                epoch: 0,
            }),
            changed <- new_condvar!(),
            quick: AtomicU64::new(0),
            holding: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
        })
    }

    /// A change counted in `quick` is done; wakes a hold waiting for the last one.
    fn quick_end(&self) {
        if self.quick.fetch_sub(1, Ordering::SeqCst) == 1 && self.holding.load(Ordering::SeqCst) {
            // Under the lock: the hold checks `quick` under it before it waits.
            let _u = self.uses.lock();
            self.changed.notify_all();
        }
    }
}

impl Uses {
    /// Moves the flush epoch on, and its copy for the quick way.
    fn next_epoch(&mut self, uses: &LayerUses) {
        self.epoch = self.epoch.wrapping_add(1);
        uses.epoch.store(self.epoch, Ordering::SeqCst);
    }
}

/// Layer `id` held still by [`hold`] until this is dropped.
struct Hold<'a> {
    uses: &'a LayerUses,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut u = self.uses.uses.lock();
        u.held = None;
        // Again at the end: a file created while the hold cloned or snapshotted its layer read
        // the epoch after the flush moved it on, and its `data_id` may be in the copy now.
        u.next_epoch(self.uses);
        // After the epoch: a change that sees no hold sees the epoch it ended with.
        self.uses.holding.store(false, Ordering::SeqCst);
        drop(u);
        self.uses.changed.notify_all();
    }
}

/// Holds layer `id` still: waits for another hold to end, then for the layer's data changes in
/// progress; new ones wait until the hold ends. `exclusive` (a freeze, a removal): `EBUSY`
/// while a file of the layer is open for writing, and opens for writing wait too.
fn hold(sb: &SuperBlock<Lcfs>, id: u64, exclusive: bool) -> Result<Hold<'_>> {
    let uses = &*sb.info().uses;
    let mut u = uses.uses.lock();
    while u.held.is_some() {
        uses.changed.wait(&mut u);
    }
    if exclusive && u.writers.get(id) > 0 {
        return Err(EBUSY);
    }
    u.held = Some(Held {
        layer: id,
        exclusive,
    });
    // Sequentially consistent with the quick way's count and look: either a change sees the
    // hold (and takes the locked way, which waits), or the hold sees it counted and waits for
    // it. Quick changes of other layers are waited for too: each is one call, and no new one
    // starts while the hold is set.
    uses.holding.store(true, Ordering::SeqCst);
    // From here on the guard ends the hold on every path.
    let hold = Hold { uses };
    while u.changes.get(id) > 0 || uses.quick.load(Ordering::SeqCst) > 0 {
        uses.changed.wait(&mut u);
    }
    Ok(hold)
}

/// Writes back the dirty page cache of layer `id` and waits for it. Under a [`hold`], nothing
/// dirties more of it meanwhile. Only the files its changes touched can have dirty folios:
/// those are written back, unless the list overflowed, when every cached inode is looked at.
fn flush(sb: &SuperBlock<Lcfs>, id: u64) -> Result {
    let mut inos = KVec::new();
    let uses = &*sb.info().uses;
    let overflowed = {
        let mut u = uses.uses.lock();
        // Room to mark the layer overflowed again if the writeback fails (below).
        u.overflowed.reserve(1, GFP_KERNEL)?;
        u.next_epoch(uses);
        let mut failed = Ok(());
        u.touched.retain(|&mut (l, ino)| {
            if l != id {
                return true;
            }
            if failed.is_ok() {
                failed = inos.push(ino, GFP_KERNEL);
            }
            false
        });
        let overflowed = u.overflowed.contains(&id);
        u.overflowed.retain(|&mut l| l != id);
        // Out of memory for the copy: the walk finds them all the same.
        overflowed || failed.is_err()
    };
    let written = (|| {
        for &ino in &inos {
            // Not cached any more: evicted, its folios written back then.
            if let Some(inode) = sb.ilookup(super::namespace::vfs_ino(id, ino)?) {
                inode.write_back()?;
            }
        }
        if overflowed {
            sb.write_back_inodes(|inode| inode.info().layer == id)?;
        }
        Ok(())
    })();
    if written.is_err() {
        // The files not written back are listed no more: the layer's next flush walks every
        // cached inode instead. (Their dirty folios keep their blocks' mappings, which must
        // not be shared before they are written back.)
        let mut u = uses.uses.lock();
        // Room was reserved above, unless other layers' marks took it since.
        if !u.overflowed.contains(&id) && u.overflowed.push_within_capacity(id).is_err() {
            let _ = u.overflowed.push(id, GFP_KERNEL);
        }
    }
    written
}

/// Counts a file of `inode`'s layer opened for writing; `EROFS` if the layer is frozen.
pub(super) fn open_writer(inode: &Inode<Lcfs>) -> Result {
    let layer = inode.info().layer;
    let sb = inode.super_block();
    let uses = &*sb.info().uses;
    let mut u = uses.uses.lock();
    // A freeze or removal in progress decides whether the layer stays writable.
    while u.held.is_some_and(|h| h.exclusive && h.layer == layer) {
        uses.changed.wait(&mut u);
    }
    // Lock order: the uses lock, then the volume lock.
    if sb
        .info()
        .read_layer(layer)
        .layer(layer)
        .map_err(errno)?
        .is_read_only()
    {
        return Err(EROFS);
    }
    u.writers.add(layer)
}

/// A file counted by [`open_writer`] was released.
pub(super) fn release_writer(inode: &Inode<Lcfs>) {
    let layer = inode.info().layer;
    let uses = &*inode.super_block().info().uses;
    uses.uses.lock().writers.sub(layer);
}

/// The current flush epoch: it moves on at every hold's flush.
pub(super) fn epoch(sb: &SuperBlock<Lcfs>) -> u64 {
    sb.info().uses.uses.lock().epoch
}

/// A data change of `inode` starts: waits while its layer is held still. Returns how it
/// started, with the flush epoch if the file has not had a `data_id` of its own since the epoch
/// began: a clone or snapshot may share its current one, which must be renewed before the
/// contents change.
///
/// The quick way takes no lock: when no hold is set and the file was listed and renewed in this
/// epoch already (every write after the first of an epoch), there is nothing to list or renew,
/// and the change is counted in `LayerUses::quick`, which a hold waits for as for its layer's.
pub(super) fn start_change(inode: &Inode<Lcfs>) -> Result<Started> {
    let layer = inode.info().layer;
    let uses = &*inode.super_block().info().uses;
    let info = inode.info();
    uses.quick.fetch_add(1, Ordering::SeqCst);
    if !uses.holding.load(Ordering::SeqCst) {
        // No flush moves it before this change ends: a hold that starts now waits for it.
        let epoch = uses.epoch.load(Ordering::SeqCst);
        if info.listed.load(Ordering::Relaxed) == epoch
            && info.renewed.load(Ordering::Relaxed) == epoch
        {
            return Ok(Started::Quick);
        }
    }
    uses.quick_end();
    let mut u = uses.uses.lock();
    while u.held.is_some_and(|h| h.layer == layer) {
        uses.changed.wait(&mut u);
    }
    u.changes.add(layer)?;
    // Listed, so that a hold's flush finds the folios this change may dirty. Under the uses
    // lock, as the flush drains the list and moves the epoch on.
    if info.listed.load(Ordering::Relaxed) != u.epoch {
        let listed =
            u.touched.len() < TOUCHED_MAX && u.touched.push((layer, info.ino), GFP_KERNEL).is_ok();
        if !listed
            && !u.overflowed.contains(&layer)
            && u.overflowed.push(layer, GFP_KERNEL).is_err()
        {
            // Neither listed nor marked: a hold would miss its dirty folios.
            u.changes.sub(layer);
            return Err(ENOMEM);
        }
        info.listed.store(u.epoch, Ordering::Relaxed);
    }
    // No hold (so no flush, which moves the epoch) starts before this change ends.
    Ok(Started::Locked(
        (info.renewed.load(Ordering::Relaxed) != u.epoch).then_some(u.epoch),
    ))
}

/// The data change [`start_change`] let start (as `started`) is done.
pub(super) fn end_change(inode: &Inode<Lcfs>, started: Started) {
    let layer = inode.info().layer;
    let uses = &*inode.super_block().info().uses;
    if started == Started::Quick {
        uses.quick_end();
        return;
    }
    let mut u = uses.uses.lock();
    let left = u.changes.sub(layer);
    let waited_for = left == 0 && u.held.is_some_and(|h| h.layer == layer);
    drop(u);
    if waited_for {
        uses.changed.notify_all();
    }
}

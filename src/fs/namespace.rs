// SPDX-License-Identifier: GPL-2.0

//! The namespace as the VFS sees it: layers under the mount root, and each layer's tree of
//! directories, files, symlinks, device nodes, FIFOs and sockets. Implements the VFS layer's
//! [`DirOperations`] and [`InodeOperations`] (`setattr`), inode lookup and creation in the inode
//! cache, eviction of unlinked inodes and the orphan recovery of a read-write mount.
//!
//! Inode identity: the VFS inode number of inode `ino` of layer `layer` is `layer << 40 | ino`,
//! unique per mount and stable across remounts. Layer 0 is not a layer: inode 1 of it is the
//! mount root that lists the layers (see Documentation/design.md).
//!
//! Every operation takes the volume lock only around calls into the format core; inode-cache
//! lookups (`iget`, which may wait for another thread's half-initialised inode) and copies to
//! user memory happen without it.

use kernel::prelude::*;

use crate::format::namespace::{DirEntry, NewInode, OrphanItem, RenameMode as CoreRename, SetAttr};
use crate::format::records::{InodeRecord, Timespec};
use crate::format::tree::Error as CoreError;
use crate::format::volume::LayerInfo;
use crate::format::{BLOCK_SIZE, INO_LIMIT, LAYER_ID_LIMIT, NAME_MAX, ROOT_INO};
use crate::vfs::{
    ARef, AclKind, AttrChange, DirContext, DirEntryType, DirOperations, Iget, Inode, InodeKind,
    InodeOperations, InodeParams, Locked, NewNode, NewVfsInode, Rename, RenameMode, SuperBlock,
};

use super::commit::{retry_for_space, Vol};
use super::errno::errno;
use super::frozen::FrozenRef;
use super::time::{from_core, timestamp, to_core};
use super::Lcfs;

#[vtable]
impl DirOperations for Lcfs {
    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<ARef<Inode<Self>>>> {
        lookup(dir, name)
    }

    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result {
        readdir(dir, ctx)
    }

    fn create(dir: Locked<'_, Self>, name: &[u8], node: &NewNode<'_>) -> Result<ARef<Inode<Self>>> {
        create(dir, name, node)
    }

    fn tmpfile(dir: &Inode<Self>, node: &NewNode<'_>) -> Result<ARef<Inode<Self>>> {
        tmpfile(dir, node)
    }

    fn link(dir: Locked<'_, Self>, inode: Locked<'_, Self>, name: &[u8]) -> Result {
        link(dir, inode, name)
    }

    fn unlink(dir: Locked<'_, Self>, name: &[u8], inode: Locked<'_, Self>) -> Result {
        unlink(dir, name, inode)
    }

    fn rename(request: &Rename<'_, Self>) -> Result {
        rename(request)
    }
}

#[vtable]
impl InodeOperations for Lcfs {
    fn setattr(inode: Locked<'_, Self>, change: &AttrChange) -> Result {
        setattr(inode, change)
    }

    fn fileattr_get(inode: &Inode<Self>) -> Result<crate::vfs::FileAttrs> {
        super::attr::get(inode)
    }

    fn fileattr_set(inode: Locked<'_, Self>, attrs: crate::vfs::FileAttrs) -> Result {
        super::attr::set(inode, attrs)
    }
}

/// Per-inode state: which inode of which layer this is.
pub(crate) struct InodeInfo {
    /// Layer id (0 for the mount root that lists the layers).
    pub(crate) layer: u64,
    /// Inode number inside the layer.
    pub(crate) ino: u64,
    /// The flush epoch in which the inode was last listed among the files data changes touched
    /// (see `layers::start_change`); `u64::MAX` if never.
    pub(crate) listed: core::sync::atomic::AtomicU64,
    /// The flush epoch in which the file last got a `data_id` of its own (see
    /// `layers::start_change`); `u64::MAX` if never since it was read.
    pub(crate) renewed: core::sync::atomic::AtomicU64,
    /// Page-cache sharing state (`share::UNKNOWN`, `share::PRIVATE`, or the frozen layer whose
    /// content inode reads go through, plus 1).
    pub(crate) share: core::sync::atomic::AtomicU64,
    /// The `data_id` of the contents reads go through while `share` says shared.
    pub(crate) share_data: core::sync::atomic::AtomicU64,
    /// For a regular file of a frozen layer: its layer's tree, read without the volume lock.
    pub(crate) frozen: Option<super::frozen::FrozenRef>,
    /// For a regular file: the last write mapping the volume gave, while it holds.
    pub(crate) write_hint: super::file::WriteHint,
}

impl InodeInfo {
    pub(super) fn new(layer: u64, ino: u64) -> Self {
        use core::sync::atomic::AtomicU64;
        Self {
            layer,
            ino,
            listed: AtomicU64::new(u64::MAX),
            renewed: AtomicU64::new(u64::MAX),
            share: AtomicU64::new(super::share::UNKNOWN),
            share_data: AtomicU64::new(0),
            frozen: None,
            write_hint: super::file::WriteHint::new(),
        }
    }

    /// The inode of a regular file of a frozen layer, read through `frozen`.
    pub(super) fn with_frozen(mut self, frozen: Option<super::frozen::FrozenRef>) -> Self {
        self.frozen = frozen;
        self
    }
}

/// Bits of the VFS inode number that hold the inode number inside a layer.
const INO_BITS: u32 = 40;
const _: () = assert!(INO_LIMIT == 1 << INO_BITS && LAYER_ID_LIMIT == 1 << (64 - INO_BITS));

/// The VFS inode number of `ino` in `layer`. Both come from disk (directory entries, layer
/// records); the format keeps them below its limits, so a larger one is damage.
pub(super) fn vfs_ino(layer: u64, ino: u64) -> Result<u64> {
    if ino >= INO_LIMIT || layer >= LAYER_ID_LIMIT {
        return Err(EUCLEAN);
    }
    Ok(layer << INO_BITS | ino)
}

/// The allocated space of `blocks` filesystem blocks in the 512-byte units of `st_blocks`.
pub(super) fn sectors(blocks: u64) -> u64 {
    blocks.saturating_mul(u64::from(BLOCK_SIZE / 512))
}

/// VFS attributes of an inode record.
pub(super) fn params(rec: &InodeRecord) -> Result<InodeParams> {
    let kind = InodeKind::from_mode(rec.mode).ok_or(EUCLEAN)?;
    Ok(InodeParams {
        kind,
        // CAST: masked to the permission bits.
        perm: (rec.mode & 0o7777) as u16,
        nlink: rec.nlink,
        uid: rec.uid,
        gid: rec.gid,
        size: rec.size,
        blocks: sectors(rec.blocks),
        rdev: rec.rdev,
        generation: rec.generation,
        atime: from_core(rec.atime),
        mtime: from_core(rec.mtime),
        ctime: from_core(rec.ctime),
        btime: from_core(rec.btime),
        attrs: super::attr::attrs_of(rec.flags),
    })
}

/// Rejects a change through the mount root's layer list: layers are not made or removed by
/// creating or removing names there (the layer ioctls do that).
fn writable(dir: &Inode<Lcfs>) -> Result {
    if dir.info().layer == 0 {
        return Err(EPERM);
    }
    if dir.super_block().read_only() {
        return Err(EROFS);
    }
    Ok(())
}

/// The inode `ino` of `layer`, from the inode cache or read from disk.
pub(crate) fn iget(sb: &SuperBlock<Lcfs>, layer: u64, ino: u64) -> Result<ARef<Inode<Lcfs>>> {
    iget_known(sb, layer, ino, None)
}

/// [`iget`], with the inode's record if the caller has just written it (not a symlink's: its
/// target is read with the record).
fn iget_known(
    sb: &SuperBlock<Lcfs>,
    layer: u64,
    ino: u64,
    known: Option<&InodeRecord>,
) -> Result<ARef<Inode<Lcfs>>> {
    let new = match sb.iget(vfs_ino(layer, ino)?)? {
        Iget::Cached(inode) => return Ok(inode),
        Iget::New(new) => new,
    };
    if let Some(rec) = known {
        let p = params(rec)?;
        if p.kind != InodeKind::Symlink {
            return new.init(&p, InodeInfo::new(layer, ino), None);
        }
    }
    read_in(sb, new, layer, ino)
}

/// Initialises `new`, inode `ino` of `layer`, from its record read under the volume lock.
fn read_in(
    sb: &SuperBlock<Lcfs>,
    new: NewVfsInode<Lcfs>,
    layer: u64,
    ino: u64,
) -> Result<ARef<Inode<Lcfs>>> {
    // Dropping `new` on an error path marks the inode bad and unlocks it.
    let mut vol = sb.info().read_layer(layer);
    let rec = vol.inode(layer, ino).map_err(errno)?;
    let p = params(&rec)?;
    let mut target = None;
    // Every inode of a frozen layer reads through its tree without the lock: file data,
    // and lookups and listings of directories (whose inodes hand the way on to theirs).
    let frozen = super::frozen::frozen_ref(sb, &mut vol, layer)?;
    if p.kind == InodeKind::Symlink {
        let mut buf = KVec::from_elem(0u8, crate::format::records::SYMLINK_MAX, GFP_KERNEL)?;
        let n = vol.read_inline(layer, ino, &mut buf).map_err(errno)?;
        buf.truncate(n);
        target = Some(buf);
    }
    drop(vol);
    let info = InodeInfo::new(layer, ino).with_frozen(frozen);
    new.init(&p, info, target.as_deref())
}

/// [`iget`] of inode `ino` found in a frozen layer through `r`: read in without the volume lock
/// unless the layer is being removed.
fn iget_frozen(
    sb: &SuperBlock<Lcfs>,
    r: &FrozenRef,
    layer: u64,
    ino: u64,
) -> Result<ARef<Inode<Lcfs>>> {
    let new = match sb.iget(vfs_ino(layer, ino)?)? {
        Iget::Cached(inode) => return Ok(inode),
        Iget::New(new) => new,
    };
    match super::frozen::inode(sb, r, ino) {
        Some(got) => {
            let (rec, target) = got?;
            let p = params(&rec)?;
            let info = InodeInfo::new(layer, ino).with_frozen(Some(r.clone()));
            new.init(&p, info, target.as_deref())
        }
        None => read_in(sb, new, layer, ino),
    }
}

/// The root of the mount: a layer's root directory (`layer=`), or the list of layers.
pub(crate) fn root(sb: &SuperBlock<Lcfs>) -> Result<ARef<Inode<Lcfs>>> {
    if let Some(layer) = sb.info().layer {
        return iget(sb, layer, ROOT_INO);
    }
    match sb.iget(vfs_ino(0, ROOT_INO)?)? {
        Iget::Cached(inode) => Ok(inode),
        Iget::New(new) => {
            let disk = sb.info().lock_read().superblock();
            let time = (i64::try_from(disk.create_time).unwrap_or(i64::MAX), 0);
            let p = InodeParams {
                kind: InodeKind::Directory,
                // CAST: masked to the permission bits.
                perm: (disk.root_mode & 0o7777) as u16,
                nlink: 2,
                uid: disk.root_uid,
                gid: disk.root_gid,
                size: 0,
                blocks: 0,
                rdev: 0,
                generation: 0,
                atime: time,
                mtime: time,
                ctime: time,
                btime: time,
                attrs: crate::vfs::FileAttrs::default(),
            };
            new.init(&p, InodeInfo::new(0, ROOT_INO), None)
        }
    }
}

/// Re-reads the attributes of a cached inode after a change.
pub(crate) fn refresh(inode: Locked<'_, Lcfs>) -> Result {
    let info = inode.info();
    if info.layer == 0 {
        return Ok(());
    }
    let rec = inode
        .super_block()
        .info()
        .read_layer(info.layer)
        .inode(info.layer, info.ino);
    inode.refresh(&params(&rec.map_err(errno)?)?);
    Ok(())
}

fn lookup(dir: &Inode<Lcfs>, name: &[u8]) -> Result<Option<ARef<Inode<Lcfs>>>> {
    if name.len() > NAME_MAX {
        return Err(ENAMETOOLONG);
    }
    let sb = dir.super_block();
    let info = dir.info();
    if let Some(r) = &info.frozen {
        if let Some(found) = super::frozen::lookup_name(sb, r, info.ino, name) {
            return match found? {
                Some(e) => Ok(Some(iget_frozen(sb, r, info.layer, e.ino)?)),
                None => Ok(None),
            };
        }
    }
    let found = {
        if info.layer == 0 {
            let mut vol = sb.info().lock_read();
            vol.find_layer(name)
                .map_err(errno)?
                .map(|l: LayerInfo| (l.id, ROOT_INO))
        } else {
            sb.info()
                .read_layer(info.layer)
                .lookup_name(info.layer, info.ino, name)
                .map_err(errno)?
                .map(|e| (info.layer, e.ino))
        }
    };
    match found {
        Some((layer, ino)) => Ok(Some(iget(sb, layer, ino)?)),
        None => Ok(None),
    }
}

fn dtype(t: u8) -> DirEntryType {
    match t {
        1 => DirEntryType::Fifo,
        2 => DirEntryType::Chr,
        4 => DirEntryType::Dir,
        6 => DirEntryType::Blk,
        8 => DirEntryType::Reg,
        10 => DirEntryType::Lnk,
        12 => DirEntryType::Sock,
        _ => DirEntryType::Unknown,
    }
}

/// Entries collected under the volume lock and emitted after it is dropped (emitting copies to
/// user memory, which may fault on a file of this filesystem).
struct Batch {
    /// Per entry: cookie u64, VFS inode u64, type u8, name length u8, name.
    buf: KVec<u8>,
    count: usize,
}

/// Entries per batch.
const BATCH: usize = 64;

impl Batch {
    fn new() -> Result<Self> {
        Ok(Self {
            buf: KVec::with_capacity(BATCH * 32, GFP_KERNEL)?,
            count: 0,
        })
    }

    fn push(&mut self, cookie: u64, ino: u64, t: u8, name: &[u8]) -> Result {
        let len = u8::try_from(name.len()).map_err(|_| EUCLEAN)?;
        self.buf
            .extend_from_slice(&cookie.to_le_bytes(), GFP_KERNEL)?;
        self.buf.extend_from_slice(&ino.to_le_bytes(), GFP_KERNEL)?;
        self.buf.extend_from_slice(&[t, len], GFP_KERNEL)?;
        self.buf.extend_from_slice(name, GFP_KERNEL)?;
        self.count += 1;
        Ok(())
    }

    /// Emits the entries; returns the cookie to continue from, or `None` when the caller's
    /// buffer filled up.
    fn emit(&self, ctx: &mut DirContext<'_>) -> Option<()> {
        let mut rest = &self.buf[..];
        while rest.len() >= 18 {
            let cookie = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
            let ino = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
            let t = *rest.get(16)?;
            let len = usize::from(*rest.get(17)?);
            let name = rest.get(18..18 + len)?;
            rest = rest.get(18 + len..)?;
            // The previous entry's `d_off` is this entry's cookie: a reader resumes here.
            ctx.set_pos(i64::try_from(cookie).ok()?);
            if !ctx.emit(name, ino, dtype(t)) {
                return None;
            }
            ctx.set_pos(i64::try_from(cookie.checked_add(1)?).ok()?);
        }
        Some(())
    }
}

fn readdir(dir: &Inode<Lcfs>, ctx: &mut DirContext<'_>) -> Result {
    if !ctx.emit_dots() {
        return Ok(());
    }
    let info = dir.info();
    let sb = dir.super_block();
    loop {
        let from = u64::try_from(ctx.pos()).map_err(|_| EINVAL)?.max(2);
        let mut batch = Batch::new()?;
        let mut failed = Ok(());
        let mut push = |e: &DirEntry<'_>| {
            failed = vfs_ino(info.layer, e.ino)
                .and_then(|ino| batch.push(e.offset, ino, e.dtype, e.name));
            failed.is_ok() && batch.count < BATCH
        };
        let unlocked = info
            .frozen
            .as_ref()
            .and_then(|r| super::frozen::readdir(sb, r, info.ino, from, &mut push));
        if let Some(r) = unlocked {
            r?;
        } else {
            let mut vol = if info.layer == 0 {
                sb.info().lock_read()
            } else {
                sb.info().read_layer(info.layer)
            };
            if info.layer == 0 {
                // Layer ids are the cookies (offset by the two dot entries).
                vol.for_each_layer(&mut |l| {
                    let Some(cookie) = l.id.checked_add(2) else {
                        return false;
                    };
                    if cookie < from {
                        return true;
                    }
                    failed = vfs_ino(l.id, ROOT_INO)
                        .and_then(|ino| batch.push(cookie, ino, 4, l.name()));
                    failed.is_ok() && batch.count < BATCH
                })
                .map_err(errno)?;
            } else {
                vol.readdir(info.layer, info.ino, from, &mut push)
                    .map_err(errno)?;
            }
        }
        failed?;
        if batch.emit(ctx).is_none() || batch.count < BATCH {
            return Ok(());
        }
    }
}

fn create(dir: Locked<'_, Lcfs>, name: &[u8], node: &NewNode<'_>) -> Result<ARef<Inode<Lcfs>>> {
    writable(&dir)?;
    let sb = dir.super_block();
    let info = dir.info();
    let now = timestamp();
    let attrs = NewInode {
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        rdev: node.rdev,
    };
    if let Some(target) = node.link {
        if target.len() > crate::format::records::SYMLINK_MAX {
            return Err(ENAMETOOLONG);
        }
    }
    // Read before the record exists: a hold that moves the epoch on after this may share the new
    // file's `data_id` (a snapshot), and the file must then renew it before its first change.
    let epoch = super::layers::epoch(sb);
    let acls = [node.access_acl, node.default_acl];
    let (ino, touched) = retry_for_space(sb, &mut sb.info().lock_layer(info.layer), |vol| {
        if acls.iter().any(Option::is_some) {
            // Room for the inode and its ACLs at once: none fails half-way.
            vol.admit_with_xattrs(1, &acls)?;
        }
        let (ino, touched) = vol.create_touched(info.layer, info.ino, name, &attrs, now)?;
        let rest = match node.link {
            Some(target) => vol.write_inline(info.layer, ino, target, now),
            None => store_acls(vol, info.layer, ino, node, now),
        };
        if let Err(e) = rest {
            // Refused (space): take the new name, and with it the inode, back out.
            let _ = vol.unlink(info.layer, info.ino, name, now);
            return Err(e);
        }
        Ok((ino, touched))
    })
    .map_err(errno)?;
    // The records as just written: no need to read them back.
    dir.refresh(&params(&touched.dir)?);
    // A symlink's record changed with its target, and an inode's with inherited ACLs:
    // `iget_known` reads that one.
    let changed = node.link.is_some() || node.access_acl.is_some() || node.default_acl.is_some();
    let inode = iget_known(sb, info.layer, ino, (!changed).then_some(&touched.inode))?;
    // A new file's `data_id` is its own: no renewal before its first write in this epoch.
    inode
        .info()
        .renewed
        .store(epoch, core::sync::atomic::Ordering::Relaxed);
    Ok(inode)
}

/// Stores the ACLs a new inode inherited (see `crate::vfs::NewNode`).
fn store_acls(
    vol: &mut Vol<'_>,
    layer: u64,
    ino: u64,
    node: &NewNode<'_>,
    now: Timespec,
) -> core::result::Result<(), CoreError> {
    for (kind, value) in [
        (AclKind::Access, node.access_acl),
        (AclKind::Default, node.default_acl),
    ] {
        if let Some(v) = value {
            vol.set_xattr(layer, ino, kind.xattr_name(), v, now)?;
        }
    }
    Ok(())
}

/// `O_TMPFILE`: a file without a name, an orphan from the start (see
/// `Volume::create_unnamed`), which `evict` deletes at its last close unless it was linked.
fn tmpfile(dir: &Inode<Lcfs>, node: &NewNode<'_>) -> Result<ARef<Inode<Lcfs>>> {
    writable(dir)?;
    let sb = dir.super_block();
    let info = dir.info();
    let attrs = NewInode {
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        rdev: 0,
    };
    // As for `create`: read before the record exists.
    let epoch = super::layers::epoch(sb);
    let (ino, rec) = retry_for_space(sb, &mut sb.info().lock_layer(info.layer), |vol| {
        let now = timestamp();
        if node.access_acl.is_some() {
            vol.admit_with_xattrs(1, &[node.access_acl])?;
        }
        let (ino, rec) = vol.create_unnamed(info.layer, info.ino, &attrs, now)?;
        if let Err(e) = store_acls(vol, info.layer, ino, node, now) {
            // Refused (space): an orphan from the start, so deleting it is all there is.
            let _ = vol.delete_orphan(info.layer, ino);
            return Err(e);
        }
        Ok((ino, rec))
    })
    .map_err(errno)?;
    let acls = node.access_acl.is_some();
    let inode = iget_known(sb, info.layer, ino, (!acls).then_some(&rec))?;
    inode
        .info()
        .renewed
        .store(epoch, core::sync::atomic::Ordering::Relaxed);
    Ok(inode)
}

fn link(dir: Locked<'_, Lcfs>, inode: Locked<'_, Lcfs>, name: &[u8]) -> Result {
    writable(&dir)?;
    let (d, i) = (dir.info(), inode.info());
    if d.layer != i.layer {
        return Err(EXDEV);
    }
    let sb = dir.super_block();
    // The VFS links an inode without links only if it is an `O_TMPFILE` file made without
    // `O_EXCL` (`I_LINKABLE`).
    let unnamed = inode.nlink() == 0;
    retry_for_space(sb, &mut sb.info().lock_layer(d.layer), |v| {
        if unnamed {
            v.name_unnamed(d.layer, i.ino, d.ino, name, timestamp())
        } else {
            v.link(d.layer, i.ino, d.ino, name, timestamp())
        }
    })
    .map_err(errno)?;
    refresh(dir)?;
    refresh(inode)
}

fn unlink(dir: Locked<'_, Lcfs>, name: &[u8], inode: Locked<'_, Lcfs>) -> Result {
    writable(&dir)?;
    let d = dir.info();
    let sb = dir.super_block();
    let mut vol = sb.info().lock_layer(d.layer);
    // An inode losing its last name gets no orphan-index item while its layer's slot can keep
    // it: its eviction, nearly always right after, then deletes it without adding the item and
    // looking it up and removing it again (see `shared::Unindexed`).
    let quick = if vol.unindexed_room() {
        match vol.unlink_touched(d.layer, d.ino, name, timestamp(), OrphanItem::Leave) {
            // Refused for space (at admission, before any change; a refusal inside aborted
            // the transaction, which the way below then reports): that way may commit first.
            Err(CoreError::NoSpace) => None,
            r => Some(r.map_err(errno)?),
        }
    } else {
        None
    };
    let touched = match quick {
        Some((orphan, touched)) => {
            if let Some(ino) = orphan {
                // The room was seen under the same slot lock; without it, the item now.
                if !vol.keep_unindexed(ino) {
                    vol.index_orphan(d.layer, ino).map_err(errno)?;
                }
            }
            touched
        }
        None => {
            retry_for_space(sb, &mut vol, |v| {
                v.unlink_touched(d.layer, d.ino, name, timestamp(), OrphanItem::Add)
            })
            .map_err(errno)?
            .1
        }
    };
    drop(vol);
    dir.refresh(&params(&touched.dir)?);
    inode.refresh(&params(&touched.inode)?);
    Ok(())
}

fn rename(r: &Rename<'_, Lcfs>) -> Result {
    writable(&r.old_dir)?;
    writable(&r.new_dir)?;
    let layer = r.old_dir.info().layer;
    if r.new_dir.info().layer != layer {
        return Err(EXDEV);
    }
    let how = match r.mode {
        RenameMode::Replace => CoreRename::Replace,
        RenameMode::NoReplace => CoreRename::NoReplace,
        RenameMode::Exchange => CoreRename::Exchange,
        RenameMode::Whiteout => CoreRename::Whiteout,
    };
    let sb = r.old_dir.super_block();
    retry_for_space(sb, &mut sb.info().lock_layer(layer), |v| {
        v.rename(
            layer,
            r.old_dir.info().ino,
            r.old_name,
            r.new_dir.info().ino,
            r.new_name,
            how,
            timestamp(),
        )
    })
    .map_err(errno)?;
    refresh(r.old_dir)?;
    refresh(r.new_dir)?;
    refresh(r.old_inode)?;
    if let Some(n) = r.new_inode {
        refresh(n)?;
    }
    Ok(())
}

fn setattr(inode: Locked<'_, Lcfs>, c: &AttrChange) -> Result {
    let info = inode.info();
    if info.layer == 0 {
        return Err(EPERM);
    }
    let attr = SetAttr {
        mode: c.perm.map(u32::from),
        uid: c.uid,
        gid: c.gid,
        size: c.size,
        atime: c.atime.map(to_core),
        mtime: c.mtime.map(to_core),
        ctime: c.ctime.map(to_core),
    };
    let sb = inode.super_block();
    let result = retry_for_space(sb, &mut sb.info().lock_layer(info.layer), |v| {
        if c.truncates {
            v.truncate_attr(info.layer, info.ino, &attr)
        } else {
            v.set_attr(info.layer, info.ino, &attr)
        }
    });
    match result {
        Ok(rec) => {
            inode.refresh(&params(&rec)?);
            Ok(())
        }
        Err(e) => {
            // The VFS already changed the cached inode: put the stored attributes back.
            let _ = refresh(inode);
            Err(errno(e))
        }
    }
}

pub(crate) fn evict(inode: &Inode<Lcfs>) {
    let info = inode.info();
    let sb = inode.super_block();
    if info.layer == 0 || sb.read_only() {
        // A read-only mount leaves the orphan for the next read-write mount to delete.
        return;
    }
    let mut vol = sb.info().lock_layer(info.layer);
    let deleted = if vol.take_unindexed(info.ino) {
        let r = vol.delete_unlinked(info.layer, info.ino);
        // Not deleted (for space, say): kept again (the entry it had is free), to be listed
        // before the next commit, since an inode without links must be deleted or listed. Not
        // an inode that is gone or has links (damage), nor after an abort.
        if let Err(e) = &r {
            if !matches!(
                e,
                CoreError::Corrupt(_) | CoreError::NotFound | CoreError::Aborted
            ) && !vol.keep_unindexed(info.ino)
            {
                let _ = vol.index_orphan(info.layer, info.ino);
            }
        }
        r
    } else {
        vol.delete_orphan(info.layer, info.ino)
    };
    drop(vol);
    if let Err(e) = deleted {
        if !matches!(e, CoreError::Aborted) {
            pr_err!(
                "{}: cannot delete unlinked inode {} of layer {}: {:?}\n",
                sb.id(),
                info.ino,
                info.layer,
                e
            );
        }
    }
}

/// Deletes the orphans (unlinked while open) and unfinished writes a crash left in every
/// read-write layer; called at a read-write mount. Returns how many orphans were deleted.
#[inline(never)] // Called by `fill_super`, whose frame must stay small (see `mount.rs`).
pub(crate) fn recover(vol: &mut Vol<'_>) -> core::result::Result<u64, CoreError> {
    let mut ids = KVec::new();
    let mut failed = false;
    vol.for_each_layer(&mut |l| {
        if !l.is_read_only() && ids.push(l.id, GFP_KERNEL).is_err() {
            failed = true;
        }
        !failed
    })?;
    if failed {
        return Err(CoreError::NoMemory);
    }
    let mut count = 0u64;
    for id in ids {
        count = count.saturating_add(vol.reap_orphans(id)?);
        // Staging blocks of writes a crash interrupted: their data never became visible.
        vol.recover(id)?;
    }
    Ok(count)
}

// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Inodes and directories of a layer's tree: lookup, readdir, create, link, unlink, rename,
//! attribute changes, orphans, and path-level diffs.
//!
//! A name lives in a directory-entry item keyed by its hash ([`dirent_offset`]); the inode it names
//! has a back reference ([`LinkRecord`]) per directory linking it, which turns a changed inode into
//! a path without scanning directories. Each operation checks everything and reserves its space
//! before the first change, so a refused operation changes nothing; a failure after that aborts
//! the transaction (see [`super::volume`]). An inode whose last name goes while it may still be
//! open is kept as an *orphan*: link count 0 and an item `(0, ORPHAN, ino)` in the layer's orphan
//! index, until [`Volume::delete_orphan`] (or [`Volume::reap_orphans`] after a crash) deletes it.

use super::bucket::probe;
use super::node::Key;
use super::records::{
    dirent_offset, file_type, inline_data, inode_flags, kind, mode, put_inline_data, DirentRecord,
    InodeRecord, LinkRecord, Timespec, INODE_RECORD_SIZE, NAME_MAX,
};
use super::refmap::MapAccess;
use super::superblock::INCOMPAT_INODE_FLAGS;
use super::tree::Error;
use super::volume::{inode_key, Device, LayerItems, Volume};
use super::{FormatError, BLOCK_SIZE, ROOT_INO};

/// Longest path a diff reports, in bytes (Linux `PATH_MAX`, including the terminating NUL).
pub const PATH_MAX: usize = 4096;

/// Attributes of a new inode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewInode {
    /// Type and permissions.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u64,
}

/// A directory entry found by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Inode the name points to.
    pub ino: u64,
    /// `DT_*` type.
    pub dtype: u8,
    /// Key offset of the entry (its readdir cookie).
    pub offset: u64,
}

/// An entry returned by [`Volume::readdir`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Stable position (readdir cookie).
    pub offset: u64,
    /// Inode number.
    pub ino: u64,
    /// `DT_*` type.
    pub dtype: u8,
    /// Name.
    pub name: &'a [u8],
}

/// How a path differs between a layer and its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathChange {
    /// The path exists only in the layer.
    Added,
    /// The path exists in both, but its inode or contents changed (or it names another inode).
    Modified,
    /// The path exists only in the parent.
    Deleted,
}

/// One changed item of a path diff: its key, whether the base and the layer have it, and for a
/// directory entry its name and type.
type ItemChange = (Key, bool, bool, Option<(Name, u8)>);

/// Where a path diff resumes ([`Volume::diff_paths_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathCursor {
    /// The first item key not yet compared.
    pub key: Key,
    /// The inode last reported as modified (0: none), whose further items are not reported.
    pub reported: u64,
}

impl PathCursor {
    /// The start of a diff.
    pub const START: Self = Self {
        key: Key::MIN,
        reported: 0,
    };
}

/// One path of a diff ([`Volume::diff_paths_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathDiff<'a> {
    /// How it changed.
    pub change: PathChange,
    /// `DT_*` type of what the path names (in the layer; in the base for a deleted path).
    pub dtype: u8,
    /// The path from the layer's root, starting with `/`.
    pub path: &'a [u8],
}

/// Attribute changes for [`Volume::set_attr`]; `None` leaves an attribute as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`0o7777` at most); the type bits are kept.
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Size in bytes (regular files only): shrinking drops the data past the new end.
    pub size: Option<u64>,
    /// Last access.
    pub atime: Option<Timespec>,
    /// Last data modification.
    pub mtime: Option<Timespec>,
    /// Last status change.
    pub ctime: Option<Timespec>,
}

/// What [`Volume::rename`] does with an existing target name (the `renameat2` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace the target, if any.
    Replace,
    /// Fail with `Exists` if the target exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap the two names, which must both exist (`RENAME_EXCHANGE`).
    Exchange,
    /// Like `Replace`, and the old name becomes a whiteout: a new character device inode with
    /// device number 0 and permissions 0 (`RENAME_WHITEOUT`).
    Whiteout,
}

/// What a rename did besides moving the name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameResult {
    /// The inode whose name was replaced: its link count dropped, and if that was its last name
    /// it is now an orphan (link count 0, see [`Volume::delete_orphan`]).
    pub replaced: Option<u64>,
    /// The new whiteout inode ([`RenameMode::Whiteout`]).
    pub whiteout: Option<u64>,
}

/// Records a namespace change wrote, returned by the `*_touched` operations.
#[derive(Clone, Copy, Debug)]
pub struct Touched {
    /// The directory's record.
    pub dir: InodeRecord,
    /// The record of the inode named or unnamed.
    pub inode: InodeRecord,
}

/// Whether [`Volume::unlink_touched`] adds the orphan-index item of an inode whose last name
/// goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrphanItem {
    /// Adds it, as [`Volume::unlink_keep`] does.
    Add,
    /// Leaves it to the caller.
    Leave,
}

/// What a removal does with an inode whose last name goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Deletes it with its items.
    Delete,
    /// Keeps it as an orphan, in the orphan index.
    Index,
    /// Keeps it with link count 0, for the caller to delete or index.
    Unindexed,
}

/// Key of the orphan-index item of inode `ino`: `(0, ORPHAN, ino)`, empty value.
pub fn orphan_key(ino: u64) -> Key {
    Key::new(0, kind::ORPHAN, ino)
}

/// A name copied out of a tree value.
#[derive(Clone, Copy)]
pub(super) struct Name {
    bytes: [u8; NAME_MAX],
    len: usize,
}

impl Name {
    pub(super) fn new(src: &[u8]) -> Self {
        let mut bytes = [0u8; NAME_MAX];
        let len = src.len().min(NAME_MAX);
        if let (Some(d), Some(s)) = (bytes.get_mut(..len), src.get(..len)) {
            d.copy_from_slice(s);
        }
        Self { bytes, len }
    }

    pub(super) fn get(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(FormatError::BadField(what))
}

use super::node::key_after;

/// Tree updates one namespace operation may make, for the up-front space check: inode, entry,
/// back reference, parent inode, and the layer record with each.
const OP_TREES: u64 = 10;

/// Tree updates of a rename: two entries, up to five back references, five inode records (the
/// moved and replaced inodes, two parents, a whiteout), an orphan item, a new inode number, and
/// the layer record with each.
const RENAME_TREES: u64 = 30;

/// A name given by the caller: a bad one is `Invalid` (not damage).
fn check_name(name: &[u8]) -> Result<(), Error> {
    super::records::check_name(name).map_err(|_| Error::Invalid)
}

/// Timestamps must be valid on disk (nanoseconds below one second).
pub(super) fn check_time(t: &Timespec) -> Result<(), Error> {
    if t.nsec >= 1_000_000_000 {
        return Err(Error::Invalid);
    }
    Ok(())
}

/// Whether `m` is a directory mode.
fn is_dir(m: u32) -> bool {
    m & mode::S_IFMT == mode::S_IFDIR
}

/// Link-count changes of the old and the new parent of a rename: a directory moving to another
/// parent takes its `..` along (a directory exchanged for it brings one back); a replaced
/// directory goes.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "each delta is a sum of at most three terms of 1 or -1"
)]
fn parent_link_deltas(
    same_dir: bool,
    moved_dir: bool,
    exchange: bool,
    target_dir: bool,
) -> (i64, i64) {
    let mut old_delta = 0i64;
    let mut new_delta = 0i64;
    if !same_dir {
        if moved_dir {
            old_delta -= 1;
            new_delta += 1;
        }
        if exchange && target_dir {
            old_delta += 1;
            new_delta -= 1;
        }
    }
    if !exchange && target_dir {
        new_delta -= 1;
    }
    (old_delta, new_delta)
}

/// The record of a new inode; `data_id` is 0 but for a regular file.
fn new_inode(ino: u64, data_id: u64, attrs: &NewInode, nlink: u32, now: Timespec) -> InodeRecord {
    InodeRecord {
        mode: attrs.mode,
        uid: attrs.uid,
        gid: attrs.gid,
        nlink,
        rdev: attrs.rdev,
        atime: now,
        mtime: now,
        ctime: now,
        btime: now,
        generation: ino,
        data_id,
        ..InodeRecord::default()
    }
}

/// The inode record of `ino` in `items`.
pub(super) fn read_inode(items: &mut impl LayerItems, ino: u64) -> Result<InodeRecord, Error> {
    match items.lookup(&inode_key(ino), InodeRecord::decode)? {
        Some(r) => Ok(r?),
        None => Err(Error::NotFound),
    }
}

/// Looks `name` up in directory `dir`. Also returns the first free entry offset of the name's
/// hash bucket (for an insert), if any. Reads the bucket's entries only.
fn find_entry(
    items: &mut impl LayerItems,
    dir: u64,
    name: &[u8],
) -> Result<(Option<Entry>, Option<u64>), Error> {
    let hash = items.hash_key().hash(name);
    let slot = probe(dir, kind::DIRENT, hash, |from| {
        items.next(from, |k, v| {
            let d = DirentRecord::decode(v).map_err(Error::from);
            (*k, d.map(|d| (d.name == name).then_some((d.ino, d.dtype))))
        })
    })?;
    let entry = slot
        .found
        .map(|(offset, (ino, dtype))| Entry { ino, dtype, offset });
    Ok((entry, slot.free))
}

/// Looks `name` up in directory `dir`.
pub(super) fn lookup_name_in(
    items: &mut impl LayerItems,
    dir: u64,
    name: &[u8],
) -> Result<Option<Entry>, Error> {
    check_name(name)?;
    Ok(find_entry(items, dir, name)?.0)
}

/// See [`Volume::readdir`].
pub(super) fn readdir_in(
    items: &mut impl LayerItems,
    dir: u64,
    from: u64,
    f: &mut dyn FnMut(&DirEntry<'_>) -> bool,
) -> Result<(), Error> {
    let hash_key = items.hash_key();
    let mut key = Some(Key::new(dir, kind::DIRENT, from));
    // A leaf's worth of entries per descent.
    while let Some(from) = key {
        key = items.scan_leaf(&from, &mut |k, v| {
            if k.id != dir || k.kind != kind::DIRENT {
                return Ok(false);
            }
            let d = DirentRecord::decode(v)?;
            // A name that does not hash to its key cannot be looked up: damage, not an entry.
            if dirent_offset(hash_key.hash(d.name), k.offset & 0xff) != Some(k.offset) {
                return Err(corrupt("directory entry hash"));
            }
            Ok(f(&DirEntry {
                offset: k.offset,
                ino: d.ino,
                dtype: d.dtype,
                name: d.name,
            }))
        })?;
    }
    Ok(())
}

impl<S: Device, M: MapAccess<S>> Volume<S, M> {
    /// The inode record of `ino` in `layer`.
    pub fn inode(&mut self, layer: u64, ino: u64) -> Result<InodeRecord, Error> {
        read_inode(&mut self.items(layer), ino)
    }

    pub(super) fn put_inode(&mut self, layer: u64, ino: u64, r: &InodeRecord) -> Result<(), Error> {
        let mut buf = [0u8; INODE_RECORD_SIZE];
        r.encode(&mut buf)?;
        self.insert(layer, &inode_key(ino), &buf)
    }

    /// [`find_entry`] in `layer`.
    fn find_entry(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
    ) -> Result<(Option<Entry>, Option<u64>), Error> {
        find_entry(&mut self.items(layer), dir, name)
    }

    /// Looks `name` up in directory `dir` of `layer`.
    pub fn lookup_name(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
    ) -> Result<Option<Entry>, Error> {
        lookup_name_in(&mut self.items(layer), dir, name)
    }

    /// Calls `f` for each entry of directory `dir` whose offset is at
    /// least `from`, in offset order; `f` returns `false` to stop. Offsets are stable cookies: an
    /// entry keeps its offset while others come and go, so a readdir resumed at `last + 1` never
    /// repeats or skips a surviving entry.
    pub fn readdir(
        &mut self,
        layer: u64,
        dir: u64,
        from: u64,
        f: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), Error> {
        readdir_in(&mut self.items(layer), dir, from, f)
    }

    /// The record of directory `dir`: `NotDir` if it is something else, `NotFound` if it was
    /// removed (an orphan, still open) and so takes no new names.
    fn check_dir(&mut self, layer: u64, dir: u64) -> Result<InodeRecord, Error> {
        let d = self.inode(layer, dir)?;
        if !is_dir(d.mode) {
            return Err(Error::NotDir);
        }
        if d.nlink == 0 {
            return Err(Error::NotFound);
        }
        Ok(d)
    }

    pub(super) fn check_writable(&mut self, layer: u64) -> Result<(), Error> {
        if self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Whether directory `dir` has entries.
    fn has_entries(&mut self, layer: u64, dir: u64) -> Result<bool, Error> {
        let first = Key::new(dir, kind::DIRENT, 0);
        let got = self.next(layer, &first, |k, _| k.id == dir && k.kind == kind::DIRENT)?;
        Ok(got == Some(true))
    }

    /// Whether directory `start` is `ancestor` or lies below it (walking the back references up
    /// to the root).
    fn is_under(&mut self, layer: u64, start: u64, ancestor: u64) -> Result<bool, Error> {
        // A walk longer than the layer's inode count is a cycle of a damaged image.
        let limit = self.layer(layer)?.inodes_used;
        let mut cur = start;
        let mut steps = 0u64;
        loop {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            if steps > limit {
                return Err(corrupt("link cycle"));
            }
            steps = steps.saturating_add(1);
            let from = Key::new(cur, kind::LINK, 0);
            match self.next(layer, &from, |k, _| *k)? {
                Some(k) if k.id == cur && k.kind == kind::LINK => cur = k.offset,
                _ => return Err(corrupt("directory without a name")),
            }
        }
    }

    fn add_link(&mut self, layer: u64, ino: u64, dir: u64, name: &[u8]) -> Result<(), Error> {
        let key = Key::new(ino, kind::LINK, dir);
        let count = self
            .lookup(layer, &key, |v| {
                LinkRecord::decode(v).map(|l| (l.count, Name::new(l.name)))
            })?
            .transpose()?;
        match count {
            Some((c, n)) => self.put_link(
                layer,
                ino,
                dir,
                c.checked_add(1).ok_or(Error::Invalid)?,
                n.get(),
            ),
            None => self.put_link(layer, ino, dir, 1, name),
        }
    }

    /// Writes the back reference of `ino` from `dir`: `count` names there, one of them `name`.
    /// A new inode's first name needs no [`Self::add_link`] lookup.
    fn put_link(
        &mut self,
        layer: u64,
        ino: u64,
        dir: u64,
        count: u32,
        name: &[u8],
    ) -> Result<(), Error> {
        let mut buf = [0u8; 5 + NAME_MAX];
        let n = LinkRecord { count, name }.encode(&mut buf)?;
        self.insert(
            layer,
            &Key::new(ino, kind::LINK, dir),
            buf.get(..n).ok_or(Error::Invalid)?,
        )
    }

    fn drop_link(&mut self, layer: u64, ino: u64, dir: u64, name: &[u8]) -> Result<(), Error> {
        let key = Key::new(ino, kind::LINK, dir);
        let (count, kept) = self
            .lookup(layer, &key, |v| {
                LinkRecord::decode(v).map(|l| (l.count, Name::new(l.name)))
            })?
            .ok_or(corrupt("link record"))??;
        if count <= 1 {
            return self.remove_found(layer, &key);
        }
        // Keep a name that still exists: if the recorded one goes, find another in `dir`.
        let mut other = kept;
        if kept.get() == name {
            let mut from = Key::new(dir, kind::DIRENT, 0);
            other = loop {
                let got = self.next(layer, &from, |k, v| {
                    (
                        *k,
                        DirentRecord::decode(v).map(|d| (d.ino, Name::new(d.name))),
                    )
                })?;
                let Some((k, d)) = got else {
                    return Err(corrupt("link count"));
                };
                if k.id != dir || k.kind != kind::DIRENT {
                    return Err(corrupt("link count"));
                }
                let (target, n) = d?;
                if target == ino && n.get() != name {
                    break n;
                }
                from = key_after(&k).ok_or(corrupt("link count"))?;
            };
        }
        let count = count.checked_sub(1).ok_or(corrupt("link count"))?;
        self.put_link(layer, ino, dir, count, other.get())
    }

    fn put_entry(
        &mut self,
        layer: u64,
        dir: u64,
        offset: u64,
        ino: u64,
        dtype: u8,
        name: &[u8],
    ) -> Result<(), Error> {
        let mut buf = [0u8; 10 + NAME_MAX];
        let n = DirentRecord { ino, dtype, name }.encode(&mut buf)?;
        self.insert(
            layer,
            &Key::new(dir, kind::DIRENT, offset),
            buf.get(..n).ok_or(Error::Invalid)?,
        )
    }

    /// Creates an inode named `name` in directory `dir` of a read-write layer: a file, a
    /// directory, a symlink (give its target to [`Self::write_inline`]), or a device, FIFO or
    /// socket node. Returns the new inode number.
    pub fn create(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        attrs: &NewInode,
        now: Timespec,
    ) -> Result<u64, Error> {
        self.create_touched(layer, dir, name, attrs, now)
            .map(|(ino, _)| ino)
    }

    /// [`Self::create`], also returning the records it wrote: the new inode's and the
    /// directory's (for a caller that caches attributes and need not read them back).
    pub fn create_touched(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        attrs: &NewInode,
        now: Timespec,
    ) -> Result<(u64, Touched), Error> {
        check_name(name)?;
        check_time(&now)?;
        let dtype = file_type(attrs.mode).ok_or(Error::Invalid)?;
        if attrs.mode & !(mode::S_IFMT | 0o7777) != 0 {
            return Err(Error::Invalid);
        }
        self.check_writable(layer)?;
        let mut parent = self.check_dir(layer, dir)?;
        let (found, free) = self.find_entry(layer, dir, name)?;
        if found.is_some() {
            return Err(Error::Exists);
        }
        let offset = free.ok_or(Error::NoSpace)?;
        let is_dir = dtype == 4;
        if is_dir && parent.nlink == u32::MAX {
            return Err(Error::Invalid);
        }
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            let ino = v.alloc_ino(layer)?;
            let data_id = if attrs.mode & mode::S_IFMT == mode::S_IFREG {
                v.alloc_data_id()?
            } else {
                0
            };
            let rec = new_inode(ino, data_id, attrs, if is_dir { 2 } else { 1 }, now);
            v.put_inode(layer, ino, &rec)?;
            v.put_entry(layer, dir, offset, ino, dtype, name)?;
            v.put_link(layer, ino, dir, 1, name)?;
            if is_dir {
                parent.nlink = parent.nlink.checked_add(1).ok_or(Error::Invalid)?;
            }
            parent.mtime = now;
            parent.ctime = now;
            v.put_inode(layer, dir, &parent)?;
            Ok((
                ino,
                Touched {
                    dir: parent,
                    inode: rec,
                },
            ))
        })
    }

    /// Creates a regular file without a name in read-write layer `layer` (`O_TMPFILE` in
    /// directory `dir`): link count 0 and in the orphan index from the start, as an unlinked
    /// open file is, so [`Self::delete_orphan`] deletes it at its last close, or
    /// [`Self::reap_orphans`] after a crash, unless [`Self::link`] gives it a name first.
    /// Returns the new inode number.
    pub fn create_unnamed(
        &mut self,
        layer: u64,
        dir: u64,
        attrs: &NewInode,
        now: Timespec,
    ) -> Result<(u64, InodeRecord), Error> {
        check_time(&now)?;
        if attrs.mode & mode::S_IFMT != mode::S_IFREG || attrs.mode & !(mode::S_IFMT | 0o7777) != 0
        {
            return Err(Error::Invalid);
        }
        self.check_writable(layer)?;
        self.check_dir(layer, dir)?;
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            let ino = v.alloc_ino(layer)?;
            let data_id = v.alloc_data_id()?;
            let rec = new_inode(ino, data_id, attrs, 0, now);
            v.put_inode(layer, ino, &rec)?;
            v.insert(layer, &orphan_key(ino), &[])?;
            Ok((ino, rec))
        })
    }

    /// Adds the name `name` in `dir` for the existing non-directory inode `ino`. An orphan
    /// (link count 0) cannot get a name back: `NotFound` (see [`Self::name_unnamed`]).
    pub fn link(
        &mut self,
        layer: u64,
        ino: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        self.add_name(layer, ino, dir, name, now, false)
    }

    /// Gives the unnamed file `ino` (from [`Self::create_unnamed`]) its first name, `name` in
    /// `dir`, and takes it out of the orphan index: `linkat` of an `O_TMPFILE` file, which the
    /// kernel allows only for a file made without `O_EXCL`. `NotFound` for an inode without
    /// links that is not an orphan; an inode with links gets one more, as with [`Self::link`].
    pub fn name_unnamed(
        &mut self,
        layer: u64,
        ino: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        self.add_name(layer, ino, dir, name, now, true)
    }

    fn add_name(
        &mut self,
        layer: u64,
        ino: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
        unnamed: bool,
    ) -> Result<(), Error> {
        check_name(name)?;
        check_time(&now)?;
        self.check_writable(layer)?;
        let mut target = self.inode(layer, ino)?;
        let dtype = file_type(target.mode).ok_or(corrupt("inode mode"))?;
        if dtype == 4 || target.nlink == u32::MAX {
            return Err(Error::Invalid);
        }
        let orphan = target.nlink == 0;
        if orphan && !(unnamed && self.is_orphan(layer, ino)?) {
            return Err(Error::NotFound);
        }
        let mut parent = self.check_dir(layer, dir)?;
        let (found, free) = self.find_entry(layer, dir, name)?;
        if found.is_some() {
            return Err(Error::Exists);
        }
        let offset = free.ok_or(Error::NoSpace)?;
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            if orphan {
                v.remove_found(layer, &orphan_key(ino))?;
            }
            v.put_entry(layer, dir, offset, ino, dtype, name)?;
            v.add_link(layer, ino, dir, name)?;
            target.nlink = target.nlink.checked_add(1).ok_or(Error::Invalid)?;
            target.ctime = now;
            v.put_inode(layer, ino, &target)?;
            parent.mtime = now;
            parent.ctime = now;
            v.put_inode(layer, dir, &parent)
        })
    }

    /// Removes the name `name` from `dir`. An empty directory goes with its name; a directory
    /// with entries is refused. An inode whose last name goes is deleted with all its items
    /// (which drops its data blocks). See [`Self::unlink_keep`] for an inode that may still be
    /// open.
    pub fn unlink(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        self.remove_name(layer, dir, name, now, Last::Delete)
            .map(|_| ())
    }

    /// Like [`Self::unlink`] (files and empty directories alike), but an inode whose last name
    /// goes is kept as an orphan: link count 0, registered in the orphan index, deleted by
    /// [`Self::delete_orphan`] when its last user is gone (or by [`Self::reap_orphans`] after a
    /// crash). Returns the orphan's inode number if the name was the last one.
    pub fn unlink_keep(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<Option<u64>, Error> {
        self.remove_name(layer, dir, name, now, Last::Index)
            .map(|(orphan, _)| orphan)
    }

    /// [`Self::unlink_keep`], also returning the records it wrote: the directory's and the
    /// inode's that lost the name (link count 0 if it is now an orphan). With
    /// [`OrphanItem::Leave`], an inode whose last name goes keeps link count 0 without its
    /// orphan-index item: the caller deletes it with [`Self::delete_unlinked`], or adds the item
    /// with [`Self::index_orphan`], before the layer's tree is committed or shared (a tree with
    /// an unlisted orphan would leak it at the next crash). Most unlinked inodes are deleted
    /// right after (their last user was the name), and then neither adding the item nor looking
    /// it up and removing it again is needed.
    pub fn unlink_touched(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
        item: OrphanItem,
    ) -> Result<(Option<u64>, Touched), Error> {
        let last = match item {
            OrphanItem::Add => Last::Index,
            OrphanItem::Leave => Last::Unindexed,
        };
        self.remove_name(layer, dir, name, now, last)
    }

    fn remove_name(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
        last_name: Last,
    ) -> Result<(Option<u64>, Touched), Error> {
        check_name(name)?;
        check_time(&now)?;
        self.check_writable(layer)?;
        let mut parent = self.check_dir(layer, dir)?;
        let entry = self
            .find_entry(layer, dir, name)?
            .0
            .ok_or(Error::NotFound)?;
        let mut target = self.inode(layer, entry.ino)?;
        let is_dir = is_dir(target.mode);
        if is_dir && self.has_entries(layer, entry.ino)? {
            return Err(Error::NotEmpty);
        }
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            v.remove_found(layer, &Key::new(dir, kind::DIRENT, entry.offset))?;
            if is_dir || target.nlink == 1 {
                // Its only name (a directory has one): the back reference counts just this
                // name, and goes without a look at it.
                v.remove_found(layer, &Key::new(entry.ino, kind::LINK, dir))?;
            } else {
                v.drop_link(layer, entry.ino, dir, name)?;
            }
            if is_dir {
                parent.nlink = parent.nlink.saturating_sub(1);
            }
            parent.mtime = now;
            parent.ctime = now;
            v.put_inode(layer, dir, &parent)?;
            let last = is_dir || target.nlink <= 1;
            let orphan = if !last {
                target.nlink = target.nlink.checked_sub(1).ok_or(corrupt("link count"))?;
                target.ctime = now;
                v.put_inode(layer, entry.ino, &target)?;
                None
            } else {
                match last_name {
                    Last::Index => {
                        v.make_orphan(layer, entry.ino, &mut target, now)?;
                        Some(entry.ino)
                    }
                    Last::Unindexed => {
                        target.nlink = 0;
                        target.ctime = now;
                        v.put_inode(layer, entry.ino, &target)?;
                        Some(entry.ino)
                    }
                    Last::Delete => {
                        v.delete_items(layer, entry.ino)?;
                        target.nlink = 0;
                        None
                    }
                }
            };
            Ok((
                orphan,
                Touched {
                    dir: parent,
                    inode: target,
                },
            ))
        })
    }

    /// Keeps an inode that lost its last name: link count 0 and an orphan-index item.
    fn make_orphan(
        &mut self,
        layer: u64,
        ino: u64,
        rec: &mut InodeRecord,
        now: Timespec,
    ) -> Result<(), Error> {
        rec.nlink = 0;
        rec.ctime = now;
        self.put_inode(layer, ino, rec)?;
        self.insert(layer, &orphan_key(ino), &[])
    }

    /// Deletes every item of `ino` (which drops its data blocks). Part of an operation: call it
    /// inside [`Volume::mutate`].
    fn delete_items(&mut self, layer: u64, ino: u64) -> Result<(), Error> {
        self.remove_all_of(layer, ino)
    }

    /// Adds the orphan-index item of `ino`, which [`Self::unlink_touched`] with
    /// [`OrphanItem::Leave`] left out (link count 0, still in use). Admits nothing: the caller holds what the unlink that left
    /// it out admitted for it, [`super::volume::INSERT_TREES`] tree updates' worth, which a
    /// commit must not be refused for. Any failure aborts the transaction, which must not
    /// commit without the item.
    pub fn index_orphan(&mut self, layer: u64, ino: u64) -> Result<(), Error> {
        self.mutate(|v| {
            v.check_writable(layer)?;
            if ino == 0 {
                return Err(Error::NotFound);
            }
            v.insert_admitted(layer, &orphan_key(ino), &[])
        })
    }

    /// Deletes `ino`, which [`Self::unlink_touched`] with [`OrphanItem::Leave`] left with link
    /// count 0 and no orphan-index item, with all its items and its data: [`Self::delete_orphan`]
    /// for it.
    pub fn delete_unlinked(&mut self, layer: u64, ino: u64) -> Result<(), Error> {
        self.check_writable(layer)?;
        let rec = self.inode(layer, ino)?;
        if rec.nlink != 0 {
            return Err(corrupt("unlinked inode with links"));
        }
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| v.delete_items(layer, ino))
    }

    /// Deletes orphan `ino` (link count 0, in the orphan index) with all its items and its data:
    /// the kernel calls it when the last user of an unlinked inode is gone. `NotFound` if `ino`
    /// is not an orphan.
    pub fn delete_orphan(&mut self, layer: u64, ino: u64) -> Result<(), Error> {
        self.check_writable(layer)?;
        if ino == 0 || self.lookup(layer, &orphan_key(ino), |_| ())?.is_none() {
            return Err(Error::NotFound);
        }
        let rec = match self.inode(layer, ino) {
            Err(Error::NotFound) => return Err(corrupt("orphan without an inode")),
            r => r?,
        };
        if rec.nlink != 0 {
            return Err(corrupt("orphan with links"));
        }
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            v.delete_items(layer, ino)?;
            v.remove_found(layer, &orphan_key(ino))
        })
    }

    /// Deletes every orphan of a read-write layer (at mount, after a crash left some behind).
    /// Returns how many there were.
    pub fn reap_orphans(&mut self, layer: u64) -> Result<u64, Error> {
        self.check_writable(layer)?;
        let mut count = 0u64;
        loop {
            let first = orphan_key(0);
            let Some(k) = self.next(layer, &first, |k, _| *k)? else {
                return Ok(count);
            };
            if k.id != 0 || k.kind != kind::ORPHAN {
                return Ok(count);
            }
            self.delete_orphan(layer, k.offset)?;
            count = count.saturating_add(1);
        }
    }

    /// Whether `ino` is in the orphan index of `layer`.
    pub fn is_orphan(&mut self, layer: u64, ino: u64) -> Result<bool, Error> {
        Ok(self.lookup(layer, &orphan_key(ino), |_| ())?.is_some())
    }

    /// Writes the path of `ino` in `layer` (found through back references) at the end of `buf`
    /// and returns where it starts. The root is `/`.
    pub fn path_of(&mut self, layer: u64, ino: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let mut start = buf.len();
        let mut cur = ino;
        // A damaged image may hold a cycle of back references: bound the walk.
        for _ in 0..PATH_MAX {
            if cur == ROOT_INO {
                if start == buf.len() {
                    start = start.checked_sub(1).ok_or(Error::Invalid)?;
                    *buf.get_mut(start).ok_or(Error::Invalid)? = b'/';
                }
                return Ok(start);
            }
            let from = Key::new(cur, kind::LINK, 0);
            let got = self.next(layer, &from, |k, v| {
                (*k, LinkRecord::decode(v).map(|l| Name::new(l.name)))
            })?;
            let Some((k, name)) = got else {
                return Err(corrupt("inode without a link"));
            };
            if k.id != cur || k.kind != kind::LINK {
                return Err(corrupt("inode without a link"));
            }
            let name = name?;
            // A slash and the name (at most `NAME_MAX` bytes).
            let n = name.get().len().saturating_add(1);
            start = start.checked_sub(n).ok_or(Error::Invalid)?;
            let dst = buf.get_mut(start..).and_then(|d| d.get_mut(..n));
            let dst = dst.ok_or(Error::Invalid)?;
            if let Some((slash, rest)) = dst.split_first_mut() {
                *slash = b'/';
                rest.copy_from_slice(name.get());
            }
            cur = k.offset;
        }
        Err(corrupt("link cycle"))
    }

    /// Calls `f` for each path that differs between `layer` and its parent, in key order: names
    /// added or removed in a directory, and inodes whose attributes, data or attributes changed
    /// (reported once, under one of their names). Like [`Self::diff`], the cost follows the
    /// number of changes. `f` returns `false` to stop.
    pub fn diff_paths(
        &mut self,
        layer: u64,
        f: &mut dyn FnMut(PathChange, &[u8]) -> bool,
    ) -> Result<(), Error> {
        self.diff_paths_from(layer, None, PathCursor::START, &mut |c| f(c.change, c.path))?;
        Ok(())
    }

    /// [`Self::diff_paths`] against `base` (an ancestor of `layer`, `None` for its parent) from
    /// `cursor` on: returns where to resume after `f` returned `false` (at the change `f` did
    /// not take), or `None` when every change was reported. A walk resumed from the returned
    /// cursor reports every change once, as one uninterrupted walk does.
    pub fn diff_paths_from(
        &mut self,
        layer: u64,
        base: Option<u64>,
        cursor: PathCursor,
        f: &mut dyn FnMut(&PathDiff<'_>) -> bool,
    ) -> Result<Option<PathCursor>, Error> {
        let mut from = cursor.key;
        let l = self.layer(layer)?;
        let base = match base {
            None => l.parent,
            Some(b) => {
                self.check_ancestor(layer, b)?;
                b
            }
        };
        let base_root = match base {
            0 => 0,
            b => self.layer(b)?.root,
        };
        let mut pathbuf = self.store().alloc_buf()?;
        // The inode last reported as modified: its later items are the same change.
        let mut reported = cursor.reported;
        loop {
            let before = reported;
            // One change at a time: the path lookups below need the trees too.
            let mut got: Option<ItemChange> = None;
            self.with_tree(|t| {
                t.diff(base_root, l.root, from, &mut |c| {
                    let name = if c.key.kind == kind::DIRENT {
                        let v = c.new.or(c.old).unwrap_or(&[]);
                        let d = DirentRecord::decode(v)?;
                        Some((Name::new(d.name), d.dtype))
                    } else {
                        None
                    };
                    got = Some((c.key, c.old.is_some(), c.new.is_some(), name));
                    Ok(false)
                })
            })?;
            let Some((key, had, has, name)) = got else {
                return Ok(None);
            };
            let next = key_after(&key);
            let buf = pathbuf.as_mut();
            let (change, dtype, start) = match (key.kind, name) {
                (kind::DIRENT, Some((name, dtype))) => {
                    let change = match (had, has) {
                        (false, _) => PathChange::Added,
                        (_, false) => PathChange::Deleted,
                        _ => PathChange::Modified,
                    };
                    let in_layer = if has { layer } else { base };
                    let end = buf.len();
                    let n = name.get().len().saturating_add(1);
                    let nstart = end.checked_sub(n).ok_or(Error::Invalid)?;
                    if let Some((slash, rest)) =
                        buf.get_mut(nstart..end).and_then(|d| d.split_first_mut())
                    {
                        *slash = b'/';
                        rest.copy_from_slice(name.get());
                    }
                    let dir_start = if key.id == ROOT_INO {
                        nstart
                    } else {
                        self.path_of(
                            in_layer,
                            key.id,
                            buf.get_mut(..nstart).ok_or(Error::Invalid)?,
                        )?
                    };
                    (Some(change), dtype, dir_start)
                }
                (kind::LINK | kind::ORPHAN, _) => (None, 0, 0),
                _ if key.id == reported => (None, 0, 0),
                _ => {
                    // An inode that exists on both sides changed; new or deleted inodes are
                    // reported through their names.
                    let in_base =
                        base != 0 && self.lookup(base, &inode_key(key.id), |_| ())?.is_some();
                    let mode = self
                        .lookup(layer, &inode_key(key.id), |v| {
                            InodeRecord::decode(v).map(|r| r.mode)
                        })?
                        .transpose()?;
                    match mode {
                        // An orphan has no path; its name's removal is reported as such.
                        Some(_) if in_base && self.is_orphan(layer, key.id)? => {
                            reported = key.id;
                            (None, 0, 0)
                        }
                        Some(m) if in_base => {
                            reported = key.id;
                            // The `DT_*` type is the mode's type bits.
                            let dtype = u8::try_from((m & mode::S_IFMT) >> 12).unwrap_or(0);
                            (
                                Some(PathChange::Modified),
                                dtype,
                                self.path_of(layer, key.id, buf)?,
                            )
                        }
                        _ => (None, 0, 0),
                    }
                }
            };
            if let Some(change) = change {
                let path = pathbuf.as_ref().get(start..).ok_or(Error::Invalid)?;
                if !f(&PathDiff {
                    change,
                    dtype,
                    path,
                }) {
                    // Resume at this change: it was not taken.
                    return Ok(Some(PathCursor {
                        key,
                        reported: before,
                    }));
                }
            }
            match next {
                Some(k) => from = k,
                None => return Ok(None),
            }
        }
    }

    /// `Invalid` unless `base` is a proper ancestor of `layer` (the walk up is bounded by the
    /// number of layers, so a damaged parent cycle ends).
    fn check_ancestor(&mut self, layer: u64, base: u64) -> Result<(), Error> {
        let mut cur = self.layer(layer)?.parent;
        for _ in 0..self.superblock().layer_count {
            if cur == 0 {
                break;
            }
            if cur == base {
                return Ok(());
            }
            cur = self.layer(cur)?.parent;
        }
        Err(Error::Invalid)
    }

    /// Changes the attributes of `ino` and returns its new record. Only the given attributes
    /// change (the caller passes the `ctime` it wants). A new size applies to regular files only
    /// (`IsDir` for a directory, `Invalid` for anything else); a size at or below the current one
    /// drops every data block wholly past the new end ([`Self::drop_blocks_from`], `blocks`
    /// follows) and cuts inline data to the new size. The tail of a partial last block is not
    /// zeroed here: that is the data path's job.
    pub fn set_attr(&mut self, layer: u64, ino: u64, attr: &SetAttr) -> Result<InodeRecord, Error> {
        self.set_attr_as(layer, ino, attr, false, false)
    }

    /// Stores `size` as the size of regular file `ino` if it is larger than the stored one (the
    /// kernel's writeback completion: the data up to it reached the disk), and returns the
    /// record. Like completing a write it adds no data, so it may use the metadata reserve: a
    /// completed write never fails to record its size for want of space.
    pub fn grow_size(&mut self, layer: u64, ino: u64, size: u64) -> Result<InodeRecord, Error> {
        let rec = self.inode(layer, ino)?;
        if size <= rec.size {
            return Ok(rec);
        }
        let attr = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.set_attr_as(layer, ino, &attr, false, true)
    }

    /// Checks up front that there is room for `ops` namespace or attribute operations and the
    /// extended attributes of these values (`None`: not set), as each would check it before its
    /// first change: a caller that makes them all in one volume-lock hold then sees none fail
    /// for space half-way (a new inode and the ACLs it inherits, a mode and an ACL).
    pub fn admit_with_xattrs(&mut self, ops: u64, xattrs: &[Option<&[u8]>]) -> Result<(), Error> {
        let mut trees = ops.checked_mul(OP_TREES).ok_or(Error::Invalid)?;
        for value in xattrs.iter().flatten() {
            let blocks = u64::try_from(value.len().div_ceil(BLOCK_SIZE as usize))
                .map_err(|_| Error::Invalid)?;
            trees = trees
                .checked_add(4)
                .and_then(|t| t.checked_add(blocks))
                .ok_or(Error::Invalid)?;
        }
        self.admit_trees(trees)
    }

    /// [`Self::set_attr`] for a truncation: the blocks (and inline data) past `attr.size` go
    /// even when the record's size is below it already. The kernel stores a buffered write's
    /// size only when its data reaches the disk, so a file may hold blocks past its record's
    /// size; truncating it below the size it has in memory drops them.
    pub fn truncate_attr(
        &mut self,
        layer: u64,
        ino: u64,
        attr: &SetAttr,
    ) -> Result<InodeRecord, Error> {
        self.set_attr_as(layer, ino, attr, true, false)
    }

    fn set_attr_as(
        &mut self,
        layer: u64,
        ino: u64,
        attr: &SetAttr,
        truncate: bool,
        in_reserve: bool,
    ) -> Result<InodeRecord, Error> {
        if attr.mode.is_some_and(|m| m & !0o7777 != 0) {
            return Err(Error::Invalid);
        }
        for t in [attr.atime, attr.mtime, attr.ctime].iter().flatten() {
            check_time(t)?;
        }
        self.check_writable(layer)?;
        let mut rec = self.inode(layer, ino)?;
        // With a size at or below the current one: the first block to drop, and the inline data
        // cut to the new size (encoded in `buf`, `inline_len` bytes) if it is longer.
        let mut drop_from = None;
        let mut inline_len = None;
        let mut buf = self.store().alloc_buf()?;
        if let Some(size) = attr.size {
            match rec.mode & mode::S_IFMT {
                mode::S_IFREG => {}
                mode::S_IFDIR => return Err(Error::IsDir),
                _ => return Err(Error::Invalid),
            }
            if size > i64::MAX.unsigned_abs() {
                return Err(Error::Invalid);
            }
            if size <= rec.size || truncate {
                drop_from = Some(size.div_ceil(u64::from(BLOCK_SIZE)));
                let out = buf.as_mut();
                let got = self.lookup(layer, &Key::new(ino, kind::INLINE, 0), |v| {
                    let data = inline_data(v)?;
                    match usize::try_from(size) {
                        Ok(keep) if keep < data.len() => {
                            let cut = data.get(..keep).ok_or(Error::Invalid)?;
                            Ok::<_, Error>(Some(put_inline_data(out, cut)?))
                        }
                        _ => Ok(None),
                    }
                })?;
                inline_len = got.transpose()?.flatten();
            }
        }
        if in_reserve {
            self.admit_trees_in_reserve(OP_TREES)?;
        } else {
            self.admit_trees(OP_TREES)?;
        }
        let change = |v: &mut Self| {
            if let Some(first) = drop_from {
                let dropped = v.drop_blocks_from(layer, ino, first)?;
                rec.blocks = rec.blocks.saturating_sub(dropped);
            }
            if let Some(n) = inline_len {
                let value = buf.as_ref().get(..n).ok_or(Error::Invalid)?;
                v.insert(layer, &Key::new(ino, kind::INLINE, 0), value)?;
            }
            if let Some(m) = attr.mode {
                rec.mode = (rec.mode & mode::S_IFMT) | m;
            }
            if let Some(uid) = attr.uid {
                rec.uid = uid;
            }
            if let Some(gid) = attr.gid {
                rec.gid = gid;
            }
            if let Some(size) = attr.size {
                rec.size = size;
            }
            if let Some(t) = attr.atime {
                rec.atime = t;
            }
            if let Some(t) = attr.mtime {
                rec.mtime = t;
            }
            if let Some(t) = attr.ctime {
                rec.ctime = t;
            }
            v.put_inode(layer, ino, &rec)?;
            Ok(rec)
        };
        if drop_from.is_none() && inline_len.is_none() {
            self.mutate_keeping_epoch(change)
        } else {
            self.mutate(change)
        }
    }

    /// Sets the inode flags of `ino` ([`inode_flags`]: the file attributes of `chattr`) to
    /// `flags` and its `ctime` to `ctime`, and returns its new record. Unknown bits are
    /// `Invalid`; a frozen layer is `ReadOnly`. Any kind of inode may carry any flag here:
    /// which kinds take which flags is the caller's policy. The first flag stored on a
    /// filesystem without [`INCOMPAT_INODE_FLAGS`] sets it in the superblock, which the commit
    /// of this change writes: no committed state has flags without the feature bit.
    pub fn set_flags(
        &mut self,
        layer: u64,
        ino: u64,
        flags: u32,
        ctime: Timespec,
    ) -> Result<InodeRecord, Error> {
        if flags & !inode_flags::KNOWN != 0 {
            return Err(Error::Invalid);
        }
        check_time(&ctime)?;
        self.check_writable(layer)?;
        if flags != 0 && self.sb.incompat & INCOMPAT_INODE_FLAGS == 0 {
            // The feature bit goes into the superblock, which only a whole volume changes.
            self.whole()?;
        }
        let mut rec = self.inode(layer, ino)?;
        self.admit_trees(OP_TREES)?;
        // Only the record changes, as for `set_attr` without a size: the epoch stays.
        self.mutate_keeping_epoch(|v| {
            rec.flags = flags;
            rec.ctime = ctime;
            v.put_inode(layer, ino, &rec)?;
            if flags != 0 {
                v.sb.incompat |= INCOMPAT_INODE_FLAGS;
            }
            Ok(rec)
        })
    }

    /// Renames `old_name` in `old_dir` to `new_name` in `new_dir` (see [`RenameMode`]), with the
    /// POSIX rules: renaming a name onto another name of the same inode does nothing; a
    /// directory replaces only an empty directory (`NotDir`, `IsDir`, `NotEmpty` otherwise); a
    /// directory cannot move below itself (`Invalid`). A replaced inode that loses its last name
    /// becomes an orphan (see [`Self::unlink_keep`]). Parents get `mtime` and `ctime` `now`, the
    /// moved (and exchanged) inodes `ctime`; link counts and back references follow.
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &mut self,
        layer: u64,
        old_dir: u64,
        old_name: &[u8],
        new_dir: u64,
        new_name: &[u8],
        how: RenameMode,
        now: Timespec,
    ) -> Result<RenameResult, Error> {
        check_name(old_name)?;
        check_name(new_name)?;
        check_time(&now)?;
        self.check_writable(layer)?;
        let mut old_parent = self.check_dir(layer, old_dir)?;
        let same_dir = old_dir == new_dir;
        let mut new_parent = if same_dir {
            None
        } else {
            Some(self.check_dir(layer, new_dir)?)
        };
        let src = self
            .find_entry(layer, old_dir, old_name)?
            .0
            .ok_or(Error::NotFound)?;
        let (dst, free) = self.find_entry(layer, new_dir, new_name)?;
        match (how, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(Error::Exists),
            (RenameMode::Exchange, None) => return Err(Error::NotFound),
            _ => {}
        }
        if dst.is_some_and(|d| d.ino == src.ino) {
            return Ok(RenameResult::default());
        }
        let exchange = how == RenameMode::Exchange;
        let mut moved = self.inode(layer, src.ino)?;
        let moved_dir = is_dir(moved.mode);
        let mut target = match dst {
            Some(d) => Some((d, self.inode(layer, d.ino)?)),
            None => None,
        };
        let target_dir = target.is_some_and(|(_, r)| is_dir(r.mode));
        if let (false, Some((d, _))) = (exchange, target) {
            if moved_dir && !target_dir {
                return Err(Error::NotDir);
            }
            if !moved_dir && target_dir {
                return Err(Error::IsDir);
            }
            if target_dir && self.has_entries(layer, d.ino)? {
                return Err(Error::NotEmpty);
            }
        }
        if !same_dir {
            if moved_dir && self.is_under(layer, new_dir, src.ino)? {
                return Err(Error::Invalid);
            }
            if let (true, true, Some((d, _))) = (exchange, target_dir, target) {
                if self.is_under(layer, old_dir, d.ino)? {
                    return Err(Error::Invalid);
                }
            }
        }
        // An entry naming one of the directories involved is damage (or a loop caught above).
        let inos = [Some(src.ino), dst.map(|d| d.ino)];
        if inos.iter().flatten().any(|&i| i == old_dir || i == new_dir) {
            return Err(Error::Invalid);
        }
        let (old_delta, new_delta) = parent_link_deltas(same_dir, moved_dir, exchange, target_dir);
        let adjust = |n: u32, delta: i64| -> Result<u32, Error> {
            let n = i64::from(n).checked_add(delta).ok_or(Error::Invalid)?;
            if n < 0 {
                return Err(corrupt("link count"));
            }
            u32::try_from(n).map_err(|_| Error::Invalid)
        };
        match new_parent.as_mut() {
            Some(np) => {
                old_parent.nlink = adjust(old_parent.nlink, old_delta)?;
                np.nlink = adjust(np.nlink, new_delta)?;
            }
            None => {
                let delta = old_delta.checked_add(new_delta).ok_or(Error::Invalid)?;
                old_parent.nlink = adjust(old_parent.nlink, delta)?;
            }
        }
        let new_offset = match dst {
            Some(d) => d.offset,
            None => free.ok_or(Error::NoSpace)?,
        };
        self.admit_trees(RENAME_TREES)?;
        self.mutate(|v| {
            let mut result = RenameResult::default();
            if let (true, Some((d, rec))) = (exchange, target.as_mut()) {
                v.put_entry(layer, old_dir, src.offset, d.ino, d.dtype, old_name)?;
                v.put_entry(layer, new_dir, d.offset, src.ino, src.dtype, new_name)?;
                v.drop_link(layer, src.ino, old_dir, old_name)?;
                v.add_link(layer, src.ino, new_dir, new_name)?;
                v.drop_link(layer, d.ino, new_dir, new_name)?;
                v.add_link(layer, d.ino, old_dir, old_name)?;
                rec.ctime = now;
                v.put_inode(layer, d.ino, rec)?;
            } else {
                if how == RenameMode::Whiteout {
                    let w = v.alloc_ino(layer)?;
                    let attrs = NewInode {
                        mode: mode::S_IFCHR,
                        ..NewInode::default()
                    };
                    v.put_inode(layer, w, &new_inode(w, 0, &attrs, 1, now))?;
                    v.put_entry(layer, old_dir, src.offset, w, 2, old_name)?;
                    v.add_link(layer, w, old_dir, old_name)?;
                    result.whiteout = Some(w);
                } else {
                    v.remove(layer, &Key::new(old_dir, kind::DIRENT, src.offset))?;
                }
                v.put_entry(layer, new_dir, new_offset, src.ino, src.dtype, new_name)?;
                v.drop_link(layer, src.ino, old_dir, old_name)?;
                v.add_link(layer, src.ino, new_dir, new_name)?;
                if let Some((d, rec)) = target.as_mut() {
                    v.drop_link(layer, d.ino, new_dir, new_name)?;
                    if target_dir || rec.nlink <= 1 {
                        v.make_orphan(layer, d.ino, rec, now)?;
                    } else {
                        rec.nlink = rec.nlink.checked_sub(1).ok_or(corrupt("link count"))?;
                        rec.ctime = now;
                        v.put_inode(layer, d.ino, rec)?;
                    }
                    result.replaced = Some(d.ino);
                }
            }
            moved.ctime = now;
            v.put_inode(layer, src.ino, &moved)?;
            old_parent.mtime = now;
            old_parent.ctime = now;
            v.put_inode(layer, old_dir, &old_parent)?;
            if let Some(np) = new_parent.as_mut() {
                np.mtime = now;
                np.ctime = now;
                v.put_inode(layer, new_dir, np)?;
            }
            Ok(result)
        })
    }
}

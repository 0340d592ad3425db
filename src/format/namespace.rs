// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Directory and inode operations over a layer's tree, and path-level diffs.
//!
//! A name lives in a directory-entry item keyed by its hash ([`dirent_offset`]); the inode it names
//! has a back reference ([`LinkRecord`]) per directory linking it, which turns a changed inode into
//! a path without scanning directories. Each operation checks everything and reserves its space
//! before the first change, so a refused operation changes nothing; a failure after that aborts
//! the transaction (see [`super::volume`]).

use super::node::Key;
use super::records::{
    check_xattr_name, dirent_offset, file_type, kind, mode, put_inline_data, DirentRecord,
    ExtentRecord, HashKey, InodeRecord, LinkRecord, Timespec, XattrRecord, XattrValue,
    DIRENT_COLLISIONS, INLINE_MAX, INODE_RECORD_SIZE, NAME_MAX, XATTR_VALUE_MAX,
};
use super::tree::Error;
use super::volume::{inode_key, Device, Volume};
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

/// A name copied out of a tree value.
#[derive(Clone, Copy)]
struct Name {
    bytes: [u8; NAME_MAX],
    len: usize,
}

impl Name {
    fn new(src: &[u8]) -> Self {
        let mut bytes = [0u8; NAME_MAX];
        let len = src.len().min(NAME_MAX);
        if let (Some(d), Some(s)) = (bytes.get_mut(..len), src.get(..len)) {
            d.copy_from_slice(s);
        }
        Self { bytes, len }
    }

    fn get(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(FormatError::BadField(what))
}

/// The key right after `k`.
fn key_after(k: &Key) -> Option<Key> {
    if let Some(o) = k.offset.checked_add(1) {
        return Some(Key::new(k.id, k.kind, o));
    }
    if let Some(kd) = k.kind.checked_add(1) {
        return Some(Key::new(k.id, kd, 0));
    }
    k.id.checked_add(1).map(|id| Key::new(id, 0, 0))
}

/// Tree updates one namespace operation may make, for the up-front space check: inode, entry,
/// back reference, parent inode, and the layer record with each.
const OP_TREES: u64 = 10;

impl<S: Device> Volume<S> {
    fn hash_key(&self) -> HashKey {
        let k = self.superblock().hash_key;
        HashKey(k[0], k[1])
    }

    /// The inode record of `ino` in `layer`.
    pub fn inode(&mut self, layer: u64, ino: u64) -> Result<InodeRecord, Error> {
        match self.lookup(layer, &inode_key(ino), InodeRecord::decode)? {
            Some(r) => Ok(r?),
            None => Err(Error::NotFound),
        }
    }

    fn put_inode(&mut self, layer: u64, ino: u64, r: &InodeRecord) -> Result<(), Error> {
        let mut buf = [0u8; INODE_RECORD_SIZE];
        r.encode(&mut buf)?;
        self.insert(layer, &inode_key(ino), &buf)
    }

    /// Looks `name` up in directory `dir`. Also returns the first free entry offset of the
    /// name's hash bucket (for an insert), if any. Reads the bucket's entries only.
    fn find_entry(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
    ) -> Result<(Option<Entry>, Option<u64>), Error> {
        let hash = self.hash_key().hash(name);
        let lo = dirent_offset(hash, 0).ok_or(Error::Invalid)?;
        let hi = dirent_offset(hash, DIRENT_COLLISIONS - 1).ok_or(Error::Invalid)?;
        let mut free = None;
        let mut expect = lo;
        let mut from = Key::new(dir, kind::DIRENT, lo);
        loop {
            let got = self.next(layer, &from, |k, v| {
                (
                    *k,
                    DirentRecord::decode(v).map(|d| (d.name == name, d.ino, d.dtype)),
                )
            })?;
            let Some((k, d)) = got else { break };
            if k.id != dir || k.kind != kind::DIRENT || k.offset > hi {
                break;
            }
            if free.is_none() && k.offset > expect {
                free = Some(expect);
            }
            let (same, ino, dtype) = d?;
            if same {
                return Ok((
                    Some(Entry {
                        ino,
                        dtype,
                        offset: k.offset,
                    }),
                    free,
                ));
            }
            expect = k.offset + 1;
            from = key_after(&k).ok_or(Error::Invalid)?;
        }
        if free.is_none() && expect <= hi {
            free = Some(expect);
        }
        Ok((None, free))
    }

    /// Looks `name` up in directory `dir` of `layer`.
    pub fn lookup_name(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
    ) -> Result<Option<Entry>, Error> {
        super::records::check_name(name)?;
        Ok(self.find_entry(layer, dir, name)?.0)
    }

    fn check_dir(&mut self, layer: u64, dir: u64) -> Result<InodeRecord, Error> {
        let d = self.inode(layer, dir)?;
        if d.mode & mode::S_IFMT != mode::S_IFDIR {
            return Err(Error::Invalid);
        }
        Ok(d)
    }

    fn add_link(&mut self, layer: u64, ino: u64, dir: u64, name: &[u8]) -> Result<(), Error> {
        let key = Key::new(ino, kind::LINK, dir);
        let count = self
            .lookup(layer, &key, |v| {
                LinkRecord::decode(v).map(|l| (l.count, Name::new(l.name)))
            })?
            .transpose()?;
        let (count, keep) = match count {
            Some((c, n)) => (c.checked_add(1).ok_or(Error::Invalid)?, n),
            None => (1, Name::new(name)),
        };
        let mut buf = [0u8; 5 + NAME_MAX];
        let n = LinkRecord {
            count,
            name: keep.get(),
        }
        .encode(&mut buf)?;
        self.insert(layer, &key, buf.get(..n).ok_or(Error::Invalid)?)
    }

    fn drop_link(&mut self, layer: u64, ino: u64, dir: u64, name: &[u8]) -> Result<(), Error> {
        let key = Key::new(ino, kind::LINK, dir);
        let (count, kept) = self
            .lookup(layer, &key, |v| {
                LinkRecord::decode(v).map(|l| (l.count, Name::new(l.name)))
            })?
            .ok_or(corrupt("link record"))??;
        if count <= 1 {
            self.remove(layer, &key)?;
            return Ok(());
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
        let mut buf = [0u8; 5 + NAME_MAX];
        let n = LinkRecord {
            count: count - 1,
            name: other.get(),
        }
        .encode(&mut buf)?;
        self.insert(layer, &key, buf.get(..n).ok_or(Error::Invalid)?)
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
        super::records::check_name(name)?;
        let dtype = file_type(attrs.mode).ok_or(Error::Invalid)?;
        if attrs.mode & !(mode::S_IFMT | 0o7777) != 0 {
            return Err(Error::Invalid);
        }
        if self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
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
            let rec = InodeRecord {
                mode: attrs.mode,
                uid: attrs.uid,
                gid: attrs.gid,
                nlink: if is_dir { 2 } else { 1 },
                rdev: attrs.rdev,
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                generation: ino,
                data_id: ino,
                ..InodeRecord::default()
            };
            v.put_inode(layer, ino, &rec)?;
            v.put_entry(layer, dir, offset, ino, dtype, name)?;
            v.add_link(layer, ino, dir, name)?;
            if is_dir {
                parent.nlink += 1;
            }
            parent.mtime = now;
            parent.ctime = now;
            v.put_inode(layer, dir, &parent)?;
            Ok(ino)
        })
    }

    /// Adds the name `name` in `dir` for the existing non-directory inode `ino`.
    pub fn link(
        &mut self,
        layer: u64,
        ino: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        super::records::check_name(name)?;
        if self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let mut target = self.inode(layer, ino)?;
        let dtype = file_type(target.mode).ok_or(corrupt("inode mode"))?;
        if dtype == 4 || target.nlink == u32::MAX {
            return Err(Error::Invalid);
        }
        let mut parent = self.check_dir(layer, dir)?;
        let (found, free) = self.find_entry(layer, dir, name)?;
        if found.is_some() {
            return Err(Error::Exists);
        }
        let offset = free.ok_or(Error::NoSpace)?;
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            v.put_entry(layer, dir, offset, ino, dtype, name)?;
            v.add_link(layer, ino, dir, name)?;
            target.nlink += 1;
            target.ctime = now;
            v.put_inode(layer, ino, &target)?;
            parent.mtime = now;
            parent.ctime = now;
            v.put_inode(layer, dir, &parent)
        })
    }

    /// Removes the name `name` from `dir`. An empty directory goes with its name; a directory
    /// with entries is refused. An inode whose last name goes is deleted with all its items
    /// (which drops its data blocks).
    pub fn unlink(
        &mut self,
        layer: u64,
        dir: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        super::records::check_name(name)?;
        if self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let mut parent = self.check_dir(layer, dir)?;
        let entry = self
            .find_entry(layer, dir, name)?
            .0
            .ok_or(Error::NotFound)?;
        let mut target = self.inode(layer, entry.ino)?;
        let is_dir = target.mode & mode::S_IFMT == mode::S_IFDIR;
        if is_dir {
            let first = Key::new(entry.ino, kind::DIRENT, 0);
            let has_entries = self.next(layer, &first, |k, _| {
                k.id == entry.ino && k.kind == kind::DIRENT
            })?;
            if has_entries == Some(true) {
                return Err(Error::NotEmpty);
            }
        }
        self.admit_trees(OP_TREES)?;
        self.mutate(|v| {
            v.remove(layer, &Key::new(dir, kind::DIRENT, entry.offset))?;
            v.drop_link(layer, entry.ino, dir, name)?;
            if is_dir {
                parent.nlink = parent.nlink.saturating_sub(1);
            }
            parent.mtime = now;
            parent.ctime = now;
            v.put_inode(layer, dir, &parent)?;
            let last = is_dir || target.nlink <= 1;
            if !last {
                target.nlink -= 1;
                target.ctime = now;
                return v.put_inode(layer, entry.ino, &target);
            }
            // The last name: delete every item of the inode.
            let mut from = Key::new(entry.ino, 0, 0);
            while let Some(k) = v.next(layer, &from, |k, _| *k)? {
                if k.id != entry.ino {
                    break;
                }
                if !v.remove(layer, &k)? {
                    // A scan found it but a lookup does not: the tree is damaged.
                    return Err(corrupt("key order"));
                }
                match key_after(&k) {
                    Some(next) => from = next,
                    None => break,
                }
            }
            Ok(())
        })
    }

    /// Replaces the inline data of `ino` (a small file's bytes or a symlink's target).
    pub fn write_inline(
        &mut self,
        layer: u64,
        ino: u64,
        data: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        if data.len() > INLINE_MAX - 2 {
            return Err(Error::Invalid);
        }
        let mut rec = self.inode(layer, ino)?;
        // A block buffer from the store: kernel stacks have no room for a kilobyte.
        let mut buf = self.store().alloc_buf()?;
        let n = put_inline_data(buf.as_mut(), data)?;
        self.admit_trees(4)?;
        self.mutate(|v| {
            let value = buf.as_ref().get(..n).ok_or(Error::Invalid)?;
            v.insert(layer, &Key::new(ino, kind::INLINE, 0), value)?;
            rec.size = data.len() as u64;
            rec.mtime = now;
            rec.ctime = now;
            v.put_inode(layer, ino, &rec)
        })
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
            let n = name.get().len() + 1;
            start = start.checked_sub(n).ok_or(Error::Invalid)?;
            let dst = buf.get_mut(start..start + n).ok_or(Error::Invalid)?;
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
        let parent = self.layer(layer)?.parent;
        let mut pathbuf = self.store().alloc_buf()?;
        let mut from = Key::MIN;
        let mut reported = 0u64;
        loop {
            // One change at a time: the path lookups below need the trees too.
            let mut got: Option<(Key, bool, bool, Option<Name>)> = None;
            self.diff(layer, from, &mut |c| {
                let name = if c.key.kind == kind::DIRENT {
                    let v = c.new.or(c.old).unwrap_or(&[]);
                    Some(Name::new(DirentRecord::decode(v)?.name))
                } else {
                    None
                };
                got = Some((c.key, c.old.is_some(), c.new.is_some(), name));
                Ok(false)
            })?;
            let Some((key, had, has, name)) = got else {
                return Ok(());
            };
            let next = key_after(&key);
            let buf = pathbuf.as_mut();
            let (change, start) = match (key.kind, name) {
                (kind::DIRENT, Some(name)) => {
                    let change = match (had, has) {
                        (false, _) => PathChange::Added,
                        (_, false) => PathChange::Deleted,
                        _ => PathChange::Modified,
                    };
                    let in_layer = if has { layer } else { parent };
                    let end = buf.len();
                    let n = name.get().len() + 1;
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
                    (Some(change), dir_start)
                }
                (kind::LINK, _) => (None, 0),
                _ if key.id == reported => (None, 0),
                _ => {
                    // An inode that exists on both sides changed; new or deleted inodes are
                    // reported through their names.
                    let in_parent =
                        parent != 0 && self.lookup(parent, &inode_key(key.id), |_| ())?.is_some();
                    let in_layer = self.lookup(layer, &inode_key(key.id), |_| ())?.is_some();
                    if in_parent && in_layer {
                        reported = key.id;
                        (
                            Some(PathChange::Modified),
                            self.path_of(layer, key.id, buf)?,
                        )
                    } else {
                        (None, 0)
                    }
                }
            };
            if let Some(change) = change {
                let path = pathbuf.as_ref().get(start..).ok_or(Error::Invalid)?;
                if !f(change, path) {
                    return Ok(());
                }
            }
            match next {
                Some(k) => from = k,
                None => return Ok(()),
            }
        }
    }
}

/// Largest xattr value kept inline with a name of `name_len` bytes.
fn inline_xattr_fits(name: &[u8], len: usize) -> bool {
    XattrRecord::fits_inline(name, len)
}

impl<S: Device> Volume<S> {
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
        let mut key = Key::new(dir, kind::DIRENT, from);
        loop {
            let got = self.next(layer, &key, |k, v| {
                (
                    *k,
                    DirentRecord::decode(v).map(|d| (d.ino, d.dtype, Name::new(d.name))),
                )
            })?;
            let Some((k, d)) = got else { return Ok(()) };
            if k.id != dir || k.kind != kind::DIRENT {
                return Ok(());
            }
            let (ino, dtype, name) = d?;
            let entry = DirEntry {
                offset: k.offset,
                ino,
                dtype,
                name: name.get(),
            };
            if !f(&entry) {
                return Ok(());
            }
            key = key_after(&k).ok_or(Error::Invalid)?;
        }
    }

    /// Finds xattr `name` of `ino`: its key and whether it exists, or the first free key of the
    /// name's hash bucket.
    fn find_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
    ) -> Result<(Option<Key>, Option<Key>), Error> {
        let hash = self.hash_key().hash(name);
        let lo = dirent_offset(hash, 0).ok_or(Error::Invalid)?;
        let hi = dirent_offset(hash, DIRENT_COLLISIONS - 1).ok_or(Error::Invalid)?;
        let total = self.superblock().total_blocks;
        let (mut free, mut expect) = (None, lo);
        let mut from = Key::new(ino, kind::XATTR, lo);
        loop {
            let got = self.next(layer, &from, |k, v| {
                (*k, XattrRecord::decode(v, total).map(|x| x.name == name))
            })?;
            let Some((k, same)) = got else { break };
            if k.id != ino || k.kind != kind::XATTR || k.offset > hi {
                break;
            }
            if free.is_none() && k.offset > expect {
                free = Some(Key::new(ino, kind::XATTR, expect));
            }
            if same? {
                return Ok((Some(k), free));
            }
            expect = k.offset + 1;
            from = Key::new(ino, kind::XATTR, expect);
        }
        if free.is_none() && expect <= hi {
            free = Some(Key::new(ino, kind::XATTR, expect));
        }
        Ok((None, free))
    }

    /// Sets extended attribute `name` of `ino` to `value` (up to 64 KiB). Values that do not fit
    /// in a leaf item go to data blocks of their own.
    pub fn set_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
        value: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        check_xattr_name(name)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::Invalid);
        }
        if self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let mut rec = self.inode(layer, ino)?;
        let (found, free) = self.find_xattr(layer, ino, name)?;
        let key = found.or(free).ok_or(Error::NoSpace)?;
        let blocks =
            u32::try_from(value.len().div_ceil(BLOCK_SIZE as usize)).map_err(|_| Error::Invalid)?;
        self.admit_trees(4 + u64::from(blocks))?;
        let mut buf = self.store().alloc_buf()?;
        let n = if inline_xattr_fits(name, value.len()) {
            XattrRecord {
                name,
                value: XattrValue::Inline(value),
            }
            .encode(buf.as_mut())?
        } else {
            // One run of blocks for the value (allocated in pieces if the free space is split).
            let (start, got) = self.alloc_data(blocks)?;
            if got < blocks {
                self.release(start, u64::from(got))?;
                return Err(Error::NoSpace);
            }
            let mut block = self.store().alloc_buf()?;
            // From here on a failure would leave allocated blocks behind: abort.
            self.mutate(|v| {
                for (i, chunk) in value.chunks(BLOCK_SIZE as usize).enumerate() {
                    block.as_mut().fill(0);
                    block
                        .as_mut()
                        .get_mut(..chunk.len())
                        .ok_or(Error::Invalid)?
                        .copy_from_slice(chunk);
                    v.store().write(start + i as u64, &block)?;
                }
                Ok(())
            })?;
            let len = u32::try_from(value.len()).map_err(|_| Error::Invalid)?;
            let extent = ExtentRecord {
                disk_block: start,
                len: blocks,
                flags: 0,
            };
            XattrRecord {
                name,
                value: XattrValue::External { extent, len },
            }
            .encode(buf.as_mut())?
        };
        self.mutate(|v| {
            v.insert(layer, &key, buf.as_ref().get(..n).ok_or(Error::Invalid)?)?;
            rec.ctime = now;
            v.put_inode(layer, ino, &rec)
        })
    }

    /// Reads extended attribute `name` of `ino` into `out`; returns its length (`out` may be
    /// shorter: then only the length is meaningful, as for `getxattr` with a small buffer).
    pub fn get_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        check_xattr_name(name)?;
        let key = self
            .find_xattr(layer, ino, name)?
            .0
            .ok_or(Error::NotFound)?;
        let total = self.superblock().total_blocks;
        let mut inline_len = None;
        let ext = self.lookup(layer, &key, |v| {
            XattrRecord::decode(v, total).map(|x| match x.value {
                XattrValue::Inline(d) => {
                    if let Some(dst) = out.get_mut(..d.len()) {
                        dst.copy_from_slice(d);
                    }
                    inline_len = Some(d.len());
                    None
                }
                XattrValue::External { extent, len } => Some((extent, len)),
            })
        })?;
        let ext = ext.ok_or(Error::NotFound)??;
        if let Some(n) = inline_len {
            return Ok(n);
        }
        let (extent, len) = ext.ok_or(Error::Invalid)?;
        let len = usize::try_from(len).map_err(|_| Error::Invalid)?;
        if out.len() >= len {
            let mut block = self.store().alloc_buf()?;
            for (i, chunk) in out
                .get_mut(..len)
                .ok_or(Error::Invalid)?
                .chunks_mut(BLOCK_SIZE as usize)
                .enumerate()
            {
                self.store()
                    .read(extent.disk_block + i as u64, &mut block)?;
                chunk.copy_from_slice(block.as_ref().get(..chunk.len()).ok_or(Error::Invalid)?);
            }
        }
        Ok(len)
    }

    /// Removes extended attribute `name` of `ino` (its value blocks are dropped).
    pub fn remove_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        check_xattr_name(name)?;
        let mut rec = self.inode(layer, ino)?;
        let key = self
            .find_xattr(layer, ino, name)?
            .0
            .ok_or(Error::NotFound)?;
        self.admit_trees(4)?;
        self.mutate(|v| {
            v.remove(layer, &key)?;
            rec.ctime = now;
            v.put_inode(layer, ino, &rec)
        })
    }
}

// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Layers: their records in the layer tree, the name index, and creating, cloning, freezing and
//! removing them.
//!
//! The layer tree holds one [`LayerRecord`] per layer, keyed `(id, LAYER, 0)`, and after them the
//! name index: `(LAYER_NAME_INDEX, LAYER_NAME, offset)` → [`LayerNameRecord`], in hash buckets
//! like directory entries (see [`super::bucket`]). The record of the layer last used is kept in
//! the volume until the transaction commits or another layer's record is needed (see
//! `Volume::layer_cache`): nearly every change updates its layer's counters.

use super::bucket::probe;
use super::node::Key;
use super::records::{
    kind, layer_flags, InodeRecord, LayerNameRecord, LayerRecord, Timespec, INODE_RECORD_SIZE,
    LAYER_NAME_INDEX, LAYER_NAME_MAX, LAYER_RECORD_MAX,
};
use super::refmap::MapAccess;
use super::tree::{Error, Txn};
use super::volume::{inode_key, tree_kind, Device, Scope, Volume};
use super::{FormatError, ROOT_INO};

/// A decoded layer record, owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Layer id.
    pub id: u64,
    /// Parent layer, 0 for none.
    pub parent: u64,
    /// [`layer_flags`].
    pub flags: u32,
    /// Layers cloned from this one.
    pub children: u32,
    /// Creation time.
    pub create_time: Timespec,
    /// Root of the layer's tree.
    pub root: u64,
    /// Bytes of file data referenced.
    pub bytes_used: u64,
    /// Inodes held.
    pub inodes_used: u64,
    /// Next inode number.
    pub next_ino: u64,
    /// Bytes of file data the layer's own writes hold (extents born in `own_birth`).
    pub own_bytes: u64,
    /// The layer whose writes' extents count as this layer's own: itself, or for a snapshot
    /// its source's.
    pub own_birth: u64,
    name: [u8; LAYER_NAME_MAX],
    name_len: u8,
}

impl LayerInfo {
    fn from_record(id: u64, r: &LayerRecord<'_>) -> Result<Self, FormatError> {
        let mut name = [0u8; LAYER_NAME_MAX];
        name.get_mut(..r.name.len())
            .ok_or(FormatError::BadField("layer name"))?
            .copy_from_slice(r.name);
        Ok(Self {
            id,
            parent: r.parent,
            flags: r.flags,
            children: r.children,
            create_time: r.create_time,
            root: r.root,
            bytes_used: r.bytes_used,
            inodes_used: r.inodes_used,
            next_ino: r.next_ino,
            own_bytes: r.own_bytes,
            own_birth: if r.own_birth == 0 {
                id
            } else {
                u64::from(r.own_birth)
            },
            name,
            name_len: u8::try_from(r.name.len())
                .map_err(|_| FormatError::BadField("layer name"))?,
        })
    }

    fn record(&self) -> LayerRecord<'_> {
        LayerRecord {
            parent: self.parent,
            flags: self.flags,
            children: self.children,
            create_time: self.create_time,
            root: self.root,
            bytes_used: self.bytes_used,
            inodes_used: self.inodes_used,
            next_ino: self.next_ino,
            own_bytes: self.own_bytes,
            // 0 for itself; layer ids are below `LAYER_ID_LIMIT` (2^24), checked on decode and
            // creation, so another layer's fits.
            own_birth: if self.own_birth == self.id {
                0
            } else {
                u32::try_from(self.own_birth).unwrap_or(0)
            },
            name: self.name(),
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &[u8] {
        self.name.get(..usize::from(self.name_len)).unwrap_or(&[])
    }

    /// Whether the layer is frozen.
    pub fn is_read_only(&self) -> bool {
        self.flags & layer_flags::READ_ONLY != 0
    }
}

/// Key of a layer's record in the layer tree.
pub fn layer_key(id: u64) -> Key {
    Key::new(id, kind::LAYER, 0)
}

/// Result of a name-index lookup: the layer id and entry offset if the name exists, and the first
/// free offset of its hash bucket.
type NameSlot = (Option<(u64, u64)>, Option<u64>);

/// What a new layer starts from.
#[derive(Clone, Copy)]
enum Source {
    /// An empty root directory.
    Empty,
    /// A clone of this frozen layer, its parent.
    Clone(LayerInfo),
    /// A frozen copy of this layer, a sibling of it.
    Snapshot(LayerInfo),
}

impl<S: Device, M: MapAccess<S>> Volume<S, M> {
    /// The layer with id `id`. A volume limited to one layer ([`Scope::Layer`]) reads only
    /// that layer and read-only ones (`Busy` for another read-write layer).
    pub fn layer(&mut self, id: u64) -> Result<LayerInfo, Error> {
        self.live()?;
        if let Some((l, _)) = self.layer_cache {
            if l.id == id {
                return Ok(l);
            }
        }
        let own = match self.scope() {
            Scope::Whole => {
                self.flush_layer()?;
                true
            }
            // Its own record is in the layer tree as its last holder left it: the caller keeps
            // a changed one in the cache until a whole volume writes it.
            Scope::Layer(own) => own == id,
        };
        let root = self.sb.layer_root;
        let total = self.sb.total_blocks;
        let got = self
            .txn(tree_kind::LAYERS)
            .lookup(root, &layer_key(id), |v| {
                LayerRecord::decode(v, id, total).and_then(|r| LayerInfo::from_record(id, &r))
            })?;
        let info = got.ok_or(Error::NotFound)??;
        if own {
            self.layer_cache = Some((info, false));
        } else if !info.is_read_only() {
            return Err(Error::Busy);
        }
        Ok(info)
    }

    /// Changes a layer record (in the cache; see `layer_cache`). A volume limited to one layer
    /// changes only that one's.
    pub(super) fn put_layer(&mut self, info: &LayerInfo) -> Result<(), Error> {
        if let Scope::Layer(own) = self.scope() {
            if own != info.id {
                return Err(Error::Busy);
            }
        }
        if matches!(self.layer_cache, Some((l, _)) if l.id != info.id) {
            self.flush_layer()?;
        }
        self.layer_cache = Some((*info, true));
        Ok(())
    }

    /// Takes `info`, a changed record a volume limited to its layer kept (see [`Scope::Layer`]),
    /// to write into the layer tree. Whole volumes only.
    pub fn keep_layer_record(&mut self, info: &LayerInfo) -> Result<(), Error> {
        self.whole()?;
        self.put_layer(info)
    }

    /// Writes a changed cached layer record into the layer tree: before anything else reads
    /// the layer tree, and before a commit. Only a whole volume writes the layer tree.
    pub(super) fn flush_layer(&mut self) -> Result<(), Error> {
        let Some((info, true)) = self.layer_cache else {
            return Ok(());
        };
        self.changeable()?;
        self.whole()?;
        self.layer_cache = Some((info, false));
        let r = self.write_layer(&info);
        self.abort_on_error(r)
    }

    fn write_layer(&mut self, info: &LayerInfo) -> Result<(), Error> {
        self.whole()?;
        let mut buf = [0u8; LAYER_RECORD_MAX];
        let n = info.record().encode(&mut buf)?;
        let root = self.sb.layer_root;
        let value = buf.get(..n).ok_or(Error::Invalid)?;
        self.sb.layer_root =
            self.txn(tree_kind::LAYERS)
                .insert(root, &layer_key(info.id), value)?;
        Ok(())
    }

    /// Calls `f` for every layer in id order; `f` returns `false` to stop.
    pub fn for_each_layer(&mut self, f: &mut dyn FnMut(&LayerInfo) -> bool) -> Result<(), Error> {
        self.for_each_layer_from(0, f)
    }

    /// Calls `f` for every layer with an id of `first` or more, in id order (O(log layers) to
    /// the first); `f` returns `false` to stop.
    pub fn for_each_layer_from(
        &mut self,
        first: u64,
        f: &mut dyn FnMut(&LayerInfo) -> bool,
    ) -> Result<(), Error> {
        self.live()?;
        self.whole()?;
        self.flush_layer()?;
        let root = self.sb.layer_root;
        let total = self.sb.total_blocks;
        let mut from = layer_key(first);
        loop {
            let got = self.txn(tree_kind::LAYERS).next(root, &from, |k, v| {
                if k.id == LAYER_NAME_INDEX {
                    // The name index follows the last layer.
                    return Ok(None);
                }
                if k.kind != kind::LAYER || k.offset != 0 {
                    return Err(FormatError::BadField("layer tree key"));
                }
                LayerRecord::decode(v, k.id, total)
                    .and_then(|r| LayerInfo::from_record(k.id, &r))
                    .map(Some)
            })?;
            let Some(Some(info)) = got.transpose()? else {
                return Ok(());
            };
            if !f(&info) {
                return Ok(());
            }
            from = layer_key(info.id.checked_add(1).ok_or(Error::Invalid)?);
        }
    }

    /// Looks `name` up in the layer-name index: the layer id and the entry's key offset, and the
    /// first free offset of the name's hash bucket.
    fn find_layer_name(&mut self, name: &[u8]) -> Result<NameSlot, Error> {
        self.whole()?;
        self.flush_layer()?;
        let hash = self.hash_key().hash(name);
        let root = self.sb.layer_root;
        let slot = probe(LAYER_NAME_INDEX, kind::LAYER_NAME, hash, |from| {
            self.txn(tree_kind::LAYERS).next(root, from, |k, v| {
                let r = LayerNameRecord::decode(v).map_err(Error::from);
                (*k, r.map(|r| (r.name == name).then_some(r.id)))
            })
        })?;
        Ok((slot.found.map(|(offset, id)| (id, offset)), slot.free))
    }

    /// The layer named `name`, if any (O(log layers), through the name index).
    pub fn find_layer(&mut self, name: &[u8]) -> Result<Option<LayerInfo>, Error> {
        self.live()?;
        match self.find_layer_name(name)?.0 {
            Some((id, _)) => self.layer(id).map(Some),
            None => Ok(None),
        }
    }

    /// Creates a read-write layer named `name`: empty (with a root directory owned as the
    /// superblock's root) when `parent` is `None`, else an O(1) clone of the read-only layer
    /// `parent`. Returns its id.
    pub fn create_layer(
        &mut self,
        name: &[u8],
        parent: Option<u64>,
        now: Timespec,
    ) -> Result<u64, Error> {
        let source = match parent {
            Some(p) => {
                let p = self.layer(p)?;
                if !p.is_read_only() {
                    return Err(Error::Invalid);
                }
                Source::Clone(p)
            }
            None => Source::Empty,
        };
        self.new_layer(name, source, now)
    }

    /// Creates a frozen layer named `name` that holds what layer `source` (read-write or not)
    /// holds now, in O(1): its tree is shared, and either side's later changes copy what they
    /// change. The new layer's parent is `source`'s parent. Returns its id.
    ///
    /// The caller writes `source`'s cached file data back first: data not yet in its tree is
    /// not in the copy.
    pub fn snapshot_layer(
        &mut self,
        name: &[u8],
        source: u64,
        now: Timespec,
    ) -> Result<u64, Error> {
        let s = self.layer(source)?;
        self.new_layer(name, Source::Snapshot(s), now)
    }

    fn new_layer(&mut self, name: &[u8], source: Source, now: Timespec) -> Result<u64, Error> {
        self.whole()?;
        self.live()?;
        super::records::check_layer_name(name)?;
        self.admit(4, true)?;
        let (found, free) = self.find_layer_name(name)?;
        if found.is_some() {
            return Err(Error::Exists);
        }
        let name_offset = free.ok_or(Error::NoSpace)?;
        // The layer whose child count grows, and the layer whose tree is shared.
        let (parent, shared) = match source {
            Source::Empty => (None, None),
            Source::Clone(p) => (Some(p), Some(p)),
            Source::Snapshot(s) => match s.parent {
                0 => (None, Some(s)),
                p => (Some(self.layer(p)?), Some(s)),
            },
        };
        if parent.is_some_and(|p| p.children == u32::MAX) {
            return Err(Error::Busy);
        }
        let id = self.sb.next_layer_id;
        if id >= super::LAYER_ID_LIMIT {
            return Err(Error::NoSpace);
        }
        let next_id = id.checked_add(1).ok_or(Error::NoSpace)?;
        let mut info = LayerInfo::from_record(
            id,
            &LayerRecord {
                parent: 0,
                flags: 0,
                children: 0,
                create_time: now,
                root: 0,
                bytes_used: 0,
                inodes_used: 0,
                next_ino: ROOT_INO + 1,
                own_bytes: 0,
                own_birth: 0,
                name,
            },
        )?;
        self.mutate(|v| {
            if let Some(mut p) = parent {
                info.parent = p.id;
                p.children = p.children.checked_add(1).ok_or(Error::Busy)?;
                v.put_layer(&p)?;
            }
            if let Source::Snapshot(_) = source {
                info.flags |= layer_flags::READ_ONLY;
            }
            match shared {
                Some(s) => {
                    info.root = v.txn(tree_kind::FS).clone_tree(s.root)?;
                    info.bytes_used = s.bytes_used;
                    info.inodes_used = s.inodes_used;
                    info.next_ino = s.next_ino;
                }
                None => {
                    let root = InodeRecord {
                        mode: v.sb.root_mode,
                        uid: v.sb.root_uid,
                        gid: v.sb.root_gid,
                        nlink: 2,
                        atime: now,
                        mtime: now,
                        ctime: now,
                        btime: now,
                        generation: 1,
                        data_id: 0,
                        ..InodeRecord::default()
                    };
                    let mut buf = [0u8; INODE_RECORD_SIZE];
                    root.encode(&mut buf)?;
                    info.root = v.txn(tree_kind::FS).insert(0, &inode_key(ROOT_INO), &buf)?;
                    info.inodes_used = 1;
                }
            }
            // A snapshot holds what its source's writes hold: it counts the extents born in the
            // source's writes as its own, as the source does. A new or cloned layer has
            // written nothing yet.
            if let Source::Snapshot(s) = source {
                info.own_bytes = s.own_bytes;
                info.own_birth = s.own_birth;
            }
            v.put_layer(&info)?;
            let mut buf = [0u8; 8 + LAYER_NAME_MAX];
            let n = LayerNameRecord { id, name }.encode(&mut buf)?;
            let root = v.sb.layer_root;
            let key = Key::new(LAYER_NAME_INDEX, kind::LAYER_NAME, name_offset);
            let value = buf.get(..n).ok_or(Error::Invalid)?;
            v.sb.layer_root = v.txn(tree_kind::LAYERS).insert(root, &key, value)?;
            v.sb.next_layer_id = next_id;
            v.sb.layer_count = v.sb.layer_count.checked_add(1).ok_or(Error::NoSpace)?;
            Ok(id)
        })
    }

    /// Renames layer `id` to `name`.
    pub fn rename_layer(&mut self, id: u64, name: &[u8]) -> Result<(), Error> {
        self.whole()?;
        self.live()?;
        super::records::check_layer_name(name)?;
        let mut l = self.layer(id)?;
        if l.name() == name {
            return Ok(());
        }
        let old_offset = match self.find_layer_name(l.name())?.0 {
            Some((owner, offset)) if owner == id => offset,
            _ => return Err(Error::Corrupt(FormatError::BadField("layer name index"))),
        };
        let (found, free) = self.find_layer_name(name)?;
        if found.is_some() {
            return Err(Error::Exists);
        }
        let new_offset = free.ok_or(Error::NoSpace)?;
        self.admit(3, true)?;
        let renamed = LayerInfo::from_record(id, &LayerRecord { name, ..l.record() })?;
        self.mutate(|v| {
            let mut root = v.sb.layer_root;
            let old = Key::new(LAYER_NAME_INDEX, kind::LAYER_NAME, old_offset);
            let (r, found) = v.txn(tree_kind::LAYERS).remove(root, &old)?;
            if !found {
                return Err(Error::Corrupt(FormatError::BadField("layer name index")));
            }
            root = r;
            let mut buf = [0u8; 8 + LAYER_NAME_MAX];
            let n = LayerNameRecord { id, name }.encode(&mut buf)?;
            let key = Key::new(LAYER_NAME_INDEX, kind::LAYER_NAME, new_offset);
            let value = buf.get(..n).ok_or(Error::Invalid)?;
            v.sb.layer_root = v.txn(tree_kind::LAYERS).insert(root, &key, value)?;
            l = renamed;
            v.put_layer(&l)
        })
    }

    /// Replaces layer `info.id`'s counters (`bytes_used`, `inodes_used`, `own_bytes`,
    /// `next_ino`), child count and flags with those of `info`; its name, parent and tree stay
    /// as they are. For fsck's repair, which recounts them from the trees (and lifts a frozen
    /// layer's flag for the time of its own changes). `NotFound` for a layer that does not
    /// exist.
    pub fn set_layer_record(&mut self, info: &LayerInfo) -> Result<(), Error> {
        self.whole()?;
        let mut l = self.layer(info.id)?;
        self.admit(1, false)?;
        l.bytes_used = info.bytes_used;
        l.inodes_used = info.inodes_used;
        l.own_bytes = info.own_bytes;
        l.next_ino = info.next_ino;
        l.children = info.children;
        l.flags = info.flags;
        self.mutate(|v| v.put_layer(&l))
    }

    /// Freezes a layer: read-only from now on, and cloneable.
    pub fn freeze_layer(&mut self, id: u64) -> Result<(), Error> {
        self.whole()?;
        let mut l = self.layer(id)?;
        if l.is_read_only() {
            return Ok(());
        }
        self.admit(1, false)?;
        self.mutate(|v| {
            l.flags |= layer_flags::READ_ONLY;
            v.put_layer(&l)
        })
    }

    /// Removes a layer that has no children, in O(1): its record and name go, and its tree
    /// goes onto the reclaim queue, whose steps ([`Self::reclaim`]) free every block only it
    /// referenced. Uses the metadata reserve: a removal never fails for the space it frees.
    pub fn remove_layer(&mut self, id: u64) -> Result<(), Error> {
        self.whole()?;
        let l = self.layer(id)?;
        if l.children > 0 {
            return Err(Error::Busy);
        }
        let parent = match l.parent {
            0 => None,
            p => Some(self.layer(p)?),
        };
        let name_offset = match self.find_layer_name(l.name())?.0 {
            Some((owner, offset)) if owner == id => offset,
            _ => return Err(Error::Corrupt(FormatError::BadField("layer name index"))),
        };
        self.admit(4, false)?;
        self.mutate(|v| {
            v.reclaim_push_tree(l.root)?;
            let mut root = v.sb.layer_root;
            for key in [
                layer_key(id),
                Key::new(LAYER_NAME_INDEX, kind::LAYER_NAME, name_offset),
            ] {
                let (r, found) = v.txn(tree_kind::LAYERS).remove(root, &key)?;
                if !found {
                    return Err(Error::Corrupt(FormatError::BadField("layer tree")));
                }
                root = r;
            }
            v.sb.layer_root = root;
            // The record is gone from the tree: forget it here too.
            v.layer_cache = None;
            v.sb.layer_count =
                v.sb.layer_count
                    .checked_sub(1)
                    .ok_or(Error::Corrupt(FormatError::BadField("layer_count")))?;
            if let Some(mut p) = parent {
                p.children = p
                    .children
                    .checked_sub(1)
                    .ok_or(Error::Corrupt(FormatError::BadField("layer children")))?;
                v.put_layer(&p)?;
            }
            Ok(())
        })
    }

    /// Runs `f` on a transaction over the layer tree, for read-only walks.
    pub fn with_layer_tree<R>(
        &mut self,
        f: impl FnOnce(&mut Txn<'_, S, M>, u64) -> R,
    ) -> Result<R, Error> {
        self.flush_layer()?;
        let root = self.sb.layer_root;
        Ok(f(&mut self.txn(tree_kind::LAYERS), root))
    }
}

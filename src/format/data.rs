// SPDX-License-Identifier: GPL-2.0 OR MIT

//! File data: the block map of regular files, the write protocol the kernel's page-cache I/O
//! (iomap) follows, truncation, and inline data (a symlink's target, a small file's bytes, in
//! items `(ino, INLINE, index)`).
//!
//! A regular file's data is a set of extent items `(ino, EXTENT, first file block)` →
//! [`ExtentRecord`]; blocks are 4 KiB, the page size. Holes are ranges without an extent; an
//! extent flagged [`extent_flags::UNWRITTEN`] has its blocks but reads as zeros.
//!
//! Blocks are allocated when a write enters the page cache ([`Volume::map_write`]), so running
//! out of space is reported by `write(2)`, never at writeback. What a crash leaves behind:
//!
//! * a write into a hole allocates blocks as an *unwritten* extent: until
//!   [`Volume::complete_write`] marks it written (after the data reached the disk), a crash
//!   reads zeros, never stale blocks;
//! * a write into written blocks this layer's file alone references overwrites them in place;
//! * a write into written blocks another layer (or clone) still references allocates new
//!   blocks, recorded as a *staging* item `(ino, COW, first file block)` → [`ExtentRecord`] while
//!   the extent keeps pointing at the old blocks; writeback goes to the staging blocks
//!   ([`Volume::map_writeback`]), and [`Volume::complete_write`] then moves them into the extent
//!   (dropping this file's reference to the old blocks). A crash before that keeps the old
//!   contents; [`Volume::recover`] frees the staging items left by a crash at mount.
//!
//! Sharing is decided with the lazy reference-count push-down in mind: a leaf shared between
//! trees counts its extents' blocks once. A block belongs to this file alone only when no node on
//! the path from the layer's root to the extent's leaf is shared ([`super::tree::Txn::path_shared`])
//! and the block's own count is 1.
//!
//! Accounting: extent items count in the layer's `bytes_used` and in the inode's `blocks`
//! (4 KiB blocks; `st_blocks` is 8 times it); staging items count in neither (their blocks are
//! in use, so in the free count, until they replace or leave the old ones).
//!
//! Every operation checks its arguments and admits the space it may need before its first
//! change. Operations over a range ([`Volume::complete_write`], [`Volume::punch_hole`],
//! [`Volume::allocate`], [`Volume::clone_range`], [`Volume::recover`]) change it piece by piece (an item or a run of
//! blocks), each piece admitted and applied as one [`Volume::mutate`]: every state between two
//! pieces is consistent, so a piece refused for space returns `NoSpace` with the pieces before
//! it done and the transaction intact, and a large range never needs its whole worst-case space
//! at once. Nothing here panics on any input or image, and nothing block-sized is on the stack.

use super::namespace::{check_time, lookup_name_in, read_inode, readdir_in, DirEntry, Entry};
use super::node::{key_after, Key};
use super::records::{
    extent_flags, inline_data, kind, mode, put_inline_data, ExtentRecord, HashKey, InodeRecord,
    Timespec, EXTENT_RECORD_SIZE, INLINE_CHUNK, INODE_RECORD_SIZE, SYMLINK_CHUNKS, SYMLINK_MAX,
};
use super::refmap::MapAccess;
use super::tree::{Allocator, BlockStore, Change, Error, ItemVisitor, Txn};
use super::volume::{inode_key, tree_kind, Device, LayerItems, Volume};
use super::{FormatError, BLOCK_SHIFT};

/// File blocks a file can have: sizes are at most `2^63 - 1` bytes, so every file block number
/// is below `2^51`.
pub const MAX_FILE_BLOCKS: u64 = 1 << (63 - BLOCK_SHIFT);

/// Most blocks whose reference counts one mapping reads to find a run it may overwrite in place
/// (the kernel asks again for the rest).
pub const SCAN_MAX: u64 = 1024;

/// Runs of file blocks that writes overwrite in place ([`WriteKind::InPlace`]): blocks of a
/// written extent that only that extent item references (no shared node on the path to its leaf,
/// count 1 in the map), in a file without staging items. Random overwrites of a file ask
/// [`Volume::map_write`], [`Volume::map_writeback`] and [`Volume::complete_write`] the same
/// question for every block, and each answer costs extent, staging and reference-count lookups;
/// ext4 keeps the same facts in memory in its extent status tree. Unwritten blocks only the file
/// references are kept for writes the same way ([`WriteKind::Unwritten`]): small appends write
/// into one block many times before writeback. [`Volume::map_read`] keeps the
/// extents it finds here too, for reads only, and answers from any entry. An entry holds only
/// while the epoch it was found in lasts: every [`Volume::mutate`] moves it on, so nothing that
/// moves, cuts, shares or stages blocks can leave a stale one (only inode-record rewrites keep
/// it, [`Volume::mutate_keeping_epoch`]). The entries live in memory the
/// store lends ([`BlockStore::in_place_table`]), not in the volume, which a mount keeps on the
/// kernel stack while it opens it.
pub struct InPlaceCache;

/// One entry: the volume's epoch when it was found (0: empty), layer, inode, first file block,
/// blocks, disk block of the first file block, and what the run is (`RUN_*`).
#[derive(Clone, Copy, Debug, Default)]
struct InPlace {
    epoch: u64,
    layer: u64,
    ino: u64,
    off: u64,
    len: u64,
    disk: u64,
    kind: u64,
}

impl InPlace {
    /// Disk block of file block `fblock` (in the run: [`InPlaceCache::find`] checked it) and
    /// the blocks of the run from it on.
    fn map(&self, fblock: u64) -> Result<(u64, u64), Error> {
        let at = sub(fblock, self.off)?;
        Ok((add(self.disk, at)?, sub(self.len, at)?))
    }
}

/// Written blocks only this file references, no staging items: writes overwrite them in place.
const RUN_IN_PLACE: u64 = 1;

/// A written extent, for reads only ([`Volume::map_read`] keeps these too: random reads ask for
/// one block at a time, and ext4 answers them from its extent status tree).
const RUN_WRITTEN: u64 = 2;

/// An unwritten extent, for reads only.
const RUN_UNWRITTEN: u64 = 3;

/// Unwritten blocks only this file references, no staging items: writes go into them (until
/// writeback completes them, which moves the epoch on). Small appends write into the same
/// block many times before it is written back.
const RUN_UNWRITTEN_OWN: u64 = 4;

/// Words of an entry in the table.
const IN_PLACE_WORDS: usize = 7;

/// Entries. Any entry may hold any run (a lookup compares them all): a file written at random
/// needs one entry per extent of each window it touches, and a hash of file and window put all
/// of a window's extents in one slot, where they evicted one another on every other write.
const IN_PLACE_SLOTS: usize = 32;

/// `u64`s of the table behind [`BlockStore::in_place_table`]: the entries, then the next entry
/// to replace.
pub const IN_PLACE_TABLE: usize = IN_PLACE_SLOTS * IN_PLACE_WORDS + 1;

/// File blocks per window: an entry never crosses a window boundary (16 MiB), which bounds the
/// reference-count scan that finds it.
const IN_PLACE_WINDOW: u64 = 4096;
const _: () = assert!(IN_PLACE_WINDOW.is_power_of_two());

impl InPlaceCache {
    /// The entries of `t` (none if the store lent too little).
    fn entries(t: &mut [u64]) -> core::slice::ChunksExactMut<'_, u64> {
        t.get_mut(..IN_PLACE_SLOTS * IN_PLACE_WORDS)
            .unwrap_or_default()
            .chunks_exact_mut(IN_PLACE_WORDS)
    }

    /// The in-place run covering `fblock` of `ino`, found in epoch `epoch`.
    fn get<S: BlockStore>(
        store: &mut S,
        epoch: u64,
        layer: u64,
        ino: u64,
        fblock: u64,
    ) -> Option<InPlace> {
        Self::find(store, epoch, layer, ino, fblock, &[RUN_IN_PLACE])
    }

    /// The run a write may use as it is (in place, or unwritten blocks of the file's own)
    /// covering `fblock` of `ino`, found in epoch `epoch`.
    fn get_write<S: BlockStore>(
        store: &mut S,
        epoch: u64,
        layer: u64,
        ino: u64,
        fblock: u64,
    ) -> Option<InPlace> {
        Self::find(
            store,
            epoch,
            layer,
            ino,
            fblock,
            &[RUN_IN_PLACE, RUN_UNWRITTEN_OWN],
        )
    }

    /// The run covering `fblock` of `ino` of one of `kinds`, found in epoch `epoch`.
    fn find<S: BlockStore>(
        store: &mut S,
        epoch: u64,
        layer: u64,
        ino: u64,
        fblock: u64,
        kinds: &[u64],
    ) -> Option<InPlace> {
        let t = store.in_place_table()?;
        Self::entries(t).find_map(|s| {
            let &mut [e_epoch, e_layer, e_ino, off, len, disk, kind] = s else {
                return None;
            };
            let hit = e_epoch == epoch
                && e_layer == layer
                && e_ino == ino
                && fblock.checked_sub(off).is_some_and(|at| at < len)
                && kinds.contains(&kind);
            hit.then_some(InPlace {
                epoch,
                layer,
                ino,
                off,
                len,
                disk,
                kind,
            })
        })
    }

    /// Keeps `e` in place of an entry of an earlier epoch, or else of the entry replaced
    /// longest ago.
    fn put<S: BlockStore>(store: &mut S, e: &InPlace) {
        let Some(t) = store.in_place_table() else {
            return;
        };
        let hand_at = IN_PLACE_SLOTS * IN_PLACE_WORDS;
        let hand = t.get(hand_at).map_or(0, |&h| h);
        let stale = Self::entries(t).position(|s| s.first() != Some(&e.epoch));
        let i = match stale {
            Some(i) => i,
            None => {
                let i = usize::try_from(hand).unwrap_or(0) % IN_PLACE_SLOTS;
                if let Some(h) = t.get_mut(hand_at) {
                    // CAST: fewer than 2^64 slots.
                    *h = (i.saturating_add(1) % IN_PLACE_SLOTS) as u64;
                }
                i
            }
        };
        if let Some(s) = Self::entries(t).nth(i) {
            for (d, v) in s
                .iter_mut()
                .zip([e.epoch, e.layer, e.ino, e.off, e.len, e.disk, e.kind])
            {
                *d = v;
            }
        }
    }
}

/// Tree updates one step may make: up to seven item changes (an extent cut in three, a
/// neighbour merged, a staging item cut in two) and the inode record, each item change also
/// rewriting the layer record. Steps that allocate data keep this much free above the metadata
/// reserve, so the steps that complete or drop data (which may use the reserve) still fit on a
/// filesystem whose data space is used up.
pub const STEP_TREES: u64 = 16;

/// What a file block range holds, for reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// No blocks: reads as zeros.
    Hole,
    /// Allocated but not written yet: reads as zeros.
    Unwritten {
        /// Disk block of the first file block.
        disk_block: u64,
    },
    /// Data.
    Written {
        /// Disk block of the first file block.
        disk_block: u64,
    },
}

/// A run of file blocks that map the same way ([`Volume::map_read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Map {
    /// First file block.
    pub fblock: u64,
    /// Blocks, at least 1.
    pub len: u64,
    /// How they map; a disk block applies to `fblock`, the next ones follow it.
    pub kind: MapKind,
}

/// What the page cache must do with the blocks of a [`WriteMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Fresh blocks (an unwritten extent): the parts of each block the write does not cover
    /// must be zeroed in the page cache.
    New,
    /// Written blocks of this file alone: overwritten in place.
    InPlace,
    /// New staging blocks replacing shared written ones: the old data, for the parts of a block
    /// the write does not cover, is read from `src_disk_block` on.
    Cow {
        /// Disk block of the old data of the first file block.
        src_disk_block: u64,
    },
    /// An existing unwritten extent of this file alone: reads as zeros until completed, like
    /// [`WriteKind::New`].
    Unwritten,
}

/// Where a write of file blocks `[fblock, fblock + len)` goes ([`Volume::map_write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteMap {
    /// First file block.
    pub fblock: u64,
    /// Blocks, at least 1; one contiguous disk run.
    pub len: u64,
    /// Disk block of `fblock`.
    pub disk_block: u64,
    /// What the blocks are.
    pub kind: WriteKind,
}

/// An extent or staging item with its file offset, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ext {
    off: u64,
    disk: u64,
    len: u64,
    flags: u32,
}

impl Ext {
    fn decode(key: &Key, value: &[u8], total_blocks: u64) -> Result<Self, Error> {
        let e = ExtentRecord::decode(value, total_blocks)?;
        let len = u64::from(e.len);
        if key
            .offset
            .checked_add(len)
            .is_none_or(|end| end > MAX_FILE_BLOCKS)
        {
            return Err(corrupt("extent offset"));
        }
        if key.kind == kind::COW && e.flags != 0 {
            return Err(corrupt("staging extent flags"));
        }
        Ok(Self {
            off: key.offset,
            disk: e.disk_block,
            len,
            flags: e.flags,
        })
    }

    /// File block after the last (no overflow: checked on decode, and pieces are sub-ranges).
    fn end(&self) -> u64 {
        self.off.saturating_add(self.len)
    }

    /// Blocks of the extent from file block `fblock` (within it) on.
    fn left(&self, fblock: u64) -> Result<u64, Error> {
        sub(self.end(), fblock)
    }

    /// Disk block of file block `fblock` (within the extent).
    fn disk_at(&self, fblock: u64) -> u64 {
        self.disk.saturating_add(fblock.saturating_sub(self.off))
    }

    fn is_unwritten(&self) -> bool {
        self.flags & extent_flags::UNWRITTEN != 0
    }
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(FormatError::BadField(what))
}

/// `n` blocks from `fblock`, clipped to the largest file; `Invalid` for none.
fn clip(fblock: u64, n: u64) -> Result<u64, Error> {
    if n == 0 || fblock >= MAX_FILE_BLOCKS {
        return Err(Error::Invalid);
    }
    Ok(n.min(MAX_FILE_BLOCKS.saturating_sub(fblock)))
}

/// `a - b` for blocks whose order the data path has established (an item found covering a
/// block starts at or before it, ...): an inconsistent tree is damage, not a panic.
fn sub(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_sub(b).ok_or(corrupt("extent range"))
}

/// `a + b` for a block number or count and an offset into its run: both validated against
/// the device or the largest file, so damage at worst.
fn add(a: u64, b: u64) -> Result<u64, Error> {
    a.checked_add(b).ok_or(corrupt("extent range"))
}

/// Blocks from `from` to a later item at `to`; an item at or before `from` here means the tree
/// gave inconsistent answers (damage).
fn gap(to: u64, from: u64) -> Result<u64, Error> {
    match to.checked_sub(from) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(corrupt("overlapping extents")),
    }
}

/// The run of file blocks from `fblock` (at most `max`) of `ino` in the file-system tree at
/// `root`, and the extent it comes from (`None` for a hole, which runs to the next extent).
fn read_run<S: BlockStore, A: Allocator<S>>(
    t: &mut Txn<'_, S, A>,
    root: u64,
    ino: u64,
    fblock: u64,
    max: u64,
    total: u64,
) -> Result<(Map, Option<Ext>), Error> {
    let at = Key::new(ino, kind::EXTENT, fblock);
    let floor = t.prev(root, &at, |key, v| (*key, Ext::decode(key, v, total)))?;
    if let Some((key, e)) = floor {
        if key.id == ino && key.kind == kind::EXTENT {
            let e = e?;
            if e.end() > fblock {
                let disk_block = e.disk_at(fblock);
                let map = Map {
                    fblock,
                    len: e.left(fblock)?.min(max),
                    kind: if e.is_unwritten() {
                        MapKind::Unwritten { disk_block }
                    } else {
                        MapKind::Written { disk_block }
                    },
                };
                return Ok((map, Some(e)));
            }
        }
    }
    let next = t.next(root, &at, |key, v| (*key, Ext::decode(key, v, total)))?;
    let len = match next {
        Some((key, e)) if key.id == ino && key.kind == kind::EXTENT => {
            gap(e?.off, fblock)?.min(max)
        }
        _ => max,
    };
    let map = Map {
        fblock,
        len,
        kind: MapKind::Hole,
    };
    Ok((map, None))
}

/// See [`Volume::read_inline`].
fn read_inline_in(items: &mut impl LayerItems, ino: u64, buf: &mut [u8]) -> Result<usize, Error> {
    let mut total = 0usize;
    // A long symlink target continues in the next item after every full one.
    for i in 0..SYMLINK_CHUNKS {
        let got = items.lookup(&Key::new(ino, kind::INLINE, i), |v| {
            let data = inline_data(v)?;
            let end = total.checked_add(data.len()).ok_or(Error::Invalid)?;
            let dst = buf.get_mut(total..end).ok_or(Error::Invalid)?;
            dst.copy_from_slice(data);
            Ok::<usize, Error>(data.len())
        })?;
        match got {
            None if i == 0 => return Err(Error::NotFound),
            None => break,
            Some(n) => {
                let n = n?;
                // At most `buf.len()`: the copy above fitted.
                total = total.saturating_add(n);
                if n < INLINE_CHUNK {
                    break;
                }
            }
        }
    }
    Ok(total)
}

/// A frozen layer's file-system tree, read without the volume: its nodes were committed and
/// nothing changes or frees them while the layer exists, so any number of readers may walk it
/// at once through a read-only store (the kernel reads image files of frozen layers this way,
/// without the mount's lock). The caller keeps the layer from being removed meanwhile.
#[derive(Clone, Copy, Debug)]
pub struct FrozenTree {
    root: u64,
    fsid: u64,
    generation: u64,
    total_blocks: u64,
    hash_key: HashKey,
}

/// The allocator of a tree that is only read: asked for anything, it refuses.
struct NoAlloc;

impl<S: BlockStore> Allocator<S> for NoAlloc {
    fn alloc(&mut self, _: &mut S) -> Result<u64, Error> {
        Err(Error::ReadOnly)
    }
    fn refcount(&mut self, _: &mut S, _: u64) -> Result<u32, Error> {
        Err(Error::ReadOnly)
    }
    fn inc_ref(&mut self, _: &mut S, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::ReadOnly)
    }
    fn dec_ref(&mut self, _: &mut S, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::ReadOnly)
    }
}

impl FrozenTree {
    /// A read-only transaction over this tree in `store`, which must be this filesystem's.
    fn txn<'a, S: BlockStore>(
        &self,
        store: &'a mut S,
        alloc: &'a mut NoAlloc,
    ) -> Result<Txn<'a, S, NoAlloc>, Error> {
        if store.total_blocks() != self.total_blocks {
            return Err(Error::Invalid);
        }
        Ok(Txn {
            store,
            alloc,
            generation: self.generation,
            fsid: self.fsid,
            tree: tree_kind::FS,
            leaf_refs: None,
        })
    }

    /// [`Volume::map_read`] of the regular file `ino` of this layer, reading nodes from `store`
    /// (which validates every node it returns as the volume's does).
    pub fn map_read<S: BlockStore>(
        &self,
        store: &mut S,
        ino: u64,
        fblock: u64,
        max: u64,
    ) -> Result<Map, Error> {
        let max = clip(fblock, max)?;
        let mut no = NoAlloc;
        let mut t = self.txn(store, &mut no)?;
        Ok(read_run(&mut t, self.root, ino, fblock, max, self.total_blocks)?.0)
    }

    /// The layer's items, read from `store`.
    fn items<'a, S: BlockStore>(&'a self, store: &'a mut S) -> FrozenItems<'a, S> {
        FrozenItems { tree: self, store }
    }

    /// [`Volume::inode`] in this layer.
    pub fn inode<S: BlockStore>(&self, store: &mut S, ino: u64) -> Result<InodeRecord, Error> {
        read_inode(&mut self.items(store), ino)
    }

    /// [`Volume::lookup_name`] in this layer.
    pub fn lookup_name<S: BlockStore>(
        &self,
        store: &mut S,
        dir: u64,
        name: &[u8],
    ) -> Result<Option<Entry>, Error> {
        lookup_name_in(&mut self.items(store), dir, name)
    }

    /// [`Volume::readdir`] in this layer.
    pub fn readdir<S: BlockStore>(
        &self,
        store: &mut S,
        dir: u64,
        from: u64,
        f: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<(), Error> {
        readdir_in(&mut self.items(store), dir, from, f)
    }

    /// [`Volume::read_inline`] in this layer.
    pub fn read_inline<S: BlockStore>(
        &self,
        store: &mut S,
        ino: u64,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        read_inline_in(&mut self.items(store), ino, buf)
    }
}

/// [`LayerItems`] of a frozen layer, read from a store without the volume.
struct FrozenItems<'a, S> {
    tree: &'a FrozenTree,
    store: &'a mut S,
}

impl<S: BlockStore> LayerItems for FrozenItems<'_, S> {
    fn lookup<R>(&mut self, key: &Key, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, Error> {
        let root = self.tree.root;
        self.tree
            .txn(self.store, &mut NoAlloc)?
            .lookup(root, key, f)
    }

    fn next<R>(
        &mut self,
        from: &Key,
        f: impl FnOnce(&Key, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let root = self.tree.root;
        self.tree.txn(self.store, &mut NoAlloc)?.next(root, from, f)
    }

    fn scan_leaf(&mut self, from: &Key, f: &mut ItemVisitor<'_>) -> Result<Option<Key>, Error> {
        let root = self.tree.root;
        self.tree
            .txn(self.store, &mut NoAlloc)?
            .scan_leaf(root, from, f)
    }

    fn hash_key(&self) -> HashKey {
        self.tree.hash_key
    }
}

impl<S: Device, M: MapAccess<S>> Volume<S, M> {
    // ---- lookups ----

    /// The item of kind `k` of `ino` with the largest offset at most `fblock`.
    fn floor_item(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        fblock: u64,
    ) -> Result<Option<Ext>, Error> {
        let root = self.layer(layer)?.root;
        let total = self.superblock().total_blocks;
        let at = Key::new(ino, k, fblock);
        let got =
            self.with_tree(|t| t.prev(root, &at, |key, v| (*key, Ext::decode(key, v, total))))?;
        match got {
            Some((key, e)) if key.id == ino && key.kind == k => Ok(Some(e?)),
            _ => Ok(None),
        }
    }

    /// The item of kind `k` of `ino` covering file block `fblock`.
    fn item_at(&mut self, layer: u64, ino: u64, k: u8, fblock: u64) -> Result<Option<Ext>, Error> {
        Ok(self
            .floor_item(layer, ino, k, fblock)?
            .filter(|e| e.end() > fblock))
    }

    /// The first item of kind `k` of `ino` at offset `fblock` or after.
    fn item_from(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        fblock: u64,
    ) -> Result<Option<Ext>, Error> {
        let total = self.superblock().total_blocks;
        let from = Key::new(ino, k, fblock);
        let got = self.next(layer, &from, |key, v| (*key, Ext::decode(key, v, total)))?;
        match got {
            Some((key, e)) if key.id == ino && key.kind == k => Ok(Some(e?)),
            _ => Ok(None),
        }
    }

    /// The first item of kind `k` of `ino` overlapping `[from, end)`.
    fn item_overlapping(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        from: u64,
        end: u64,
    ) -> Result<Option<Ext>, Error> {
        if let Some(x) = self.item_at(layer, ino, k, from)? {
            return Ok(Some(x));
        }
        Ok(self.item_from(layer, ino, k, from)?.filter(|x| x.off < end))
    }

    /// The regular file `ino` of `layer` (`IsDir` for a directory, `Invalid` for anything
    /// else); with `write`, the layer must be read-write.
    fn data_inode(&mut self, layer: u64, ino: u64, write: bool) -> Result<InodeRecord, Error> {
        if write && self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let r = self.inode(layer, ino)?;
        match r.mode & mode::S_IFMT {
            mode::S_IFREG => Ok(r),
            mode::S_IFDIR => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    /// Leading blocks of `[disk, disk + lim)` only item `key` of `layer` references: none if any
    /// node on the path to its leaf is shared (the counts below it are not pushed down yet),
    /// else those with count 1.
    fn exclusive_run(&mut self, layer: u64, key: &Key, disk: u64, lim: u64) -> Result<u64, Error> {
        let root = self.layer(layer)?.root;
        if self.with_tree(|t| t.path_shared(root, key))? {
            return Ok(0);
        }
        self.refcount_run(disk, lim, true)
    }

    /// For `map_write` of `fblock` over extent `e` (written or unwritten) in a file without
    /// staging items: finds the exclusive run of `e` from the start of `fblock`'s window, and if
    /// it covers `fblock`, keeps it in the in-place cache (found in `epoch`) and returns the
    /// mapping.
    fn cache_in_place(
        &mut self,
        layer: u64,
        ino: u64,
        e: &Ext,
        fblock: u64,
        max: u64,
        epoch: u64,
    ) -> Result<Option<WriteMap>, Error> {
        let window = fblock & !(IN_PLACE_WINDOW - 1);
        let start = e.off.max(window);
        let end = e.end().min(window.saturating_add(IN_PLACE_WINDOW));
        let key = Key::new(ino, kind::EXTENT, e.off);
        let run = self.exclusive_run(layer, &key, e.disk_at(start), gap(end, start)?)?;
        if start.saturating_add(run) <= fblock {
            return Ok(None);
        }
        let unwritten = e.is_unwritten();
        let entry = InPlace {
            epoch,
            layer,
            ino,
            off: start,
            len: run,
            disk: e.disk_at(start),
            kind: if unwritten {
                RUN_UNWRITTEN_OWN
            } else {
                RUN_IN_PLACE
            },
        };
        InPlaceCache::put(self.store(), &entry);
        let at = sub(fblock, start)?;
        Ok(Some(WriteMap {
            fblock,
            len: sub(run, at)?.min(max).min(SCAN_MAX),
            disk_block: e.disk_at(fblock),
            kind: if unwritten {
                WriteKind::Unwritten
            } else {
                WriteKind::InPlace
            },
        }))
    }

    /// Leading blocks of `[disk, disk + lim)` that some other item or tree also references.
    fn shared_run(&mut self, layer: u64, key: &Key, disk: u64, lim: u64) -> Result<u64, Error> {
        let root = self.layer(layer)?.root;
        if self.with_tree(|t| t.path_shared(root, key))? {
            return Ok(lim);
        }
        self.refcount_run(disk, lim, false)
    }

    // ---- item changes (steps of an operation, inside its `mutate`) ----

    fn put_ext(&mut self, layer: u64, ino: u64, k: u8, e: &Ext, grows: bool) -> Result<(), Error> {
        let mut v = [0u8; EXTENT_RECORD_SIZE];
        ExtentRecord {
            disk_block: e.disk,
            len: u32::try_from(e.len).map_err(|_| Error::Invalid)?,
            flags: e.flags,
        }
        .encode(&mut v)?;
        let key = Key::new(ino, k, e.off);
        if grows {
            self.insert(layer, &key, &v)
        } else {
            self.insert_in_reserve(layer, &key, &v)
        }
    }

    fn put_inode_record(
        &mut self,
        layer: u64,
        ino: u64,
        r: &InodeRecord,
        grows: bool,
    ) -> Result<(), Error> {
        let mut buf = [0u8; INODE_RECORD_SIZE];
        r.encode(&mut buf)?;
        if grows {
            self.insert(layer, &inode_key(ino), &buf)
        } else {
            self.insert_in_reserve(layer, &inode_key(ino), &buf)
        }
    }

    /// Makes file blocks `[start, end)` of the kind-`k` items of `ino` map to `new` (first disk
    /// block and flags; the caller hands over one reference to each of its blocks) or to
    /// nothing. Items overlapping the range are cut, their parts outside it kept; `new` merges
    /// with an item before or after it that continues it on disk with the same flags. Returns
    /// the blocks the cut parts held.
    ///
    /// Reference counts: a kept part of an item takes a reference of its own before the item
    /// is replaced or removed (which drops the item's references to all its blocks), so no
    /// count passes through 0 (a block whose count reaches 0 is pinned for good in this
    /// transaction).
    #[allow(clippy::too_many_arguments)]
    fn put_range(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        start: u64,
        end: u64,
        new: Option<(u64, u32)>,
        grows: bool,
    ) -> Result<u64, Error> {
        // New data of a file is born in the layer that writes it (its own bytes).
        let new = match new {
            Some((disk, flags)) if k == kind::EXTENT => {
                Some((disk, ExtentRecord::flags_born_in(flags, layer)?))
            }
            other => other,
        };
        self.put_range_as(layer, ino, k, start, end, new, grows)
    }

    /// [`Self::put_range`] with `new`'s flags taken as they are, birth layer included (a clone
    /// of existing data keeps the birth of the extent it shares).
    #[allow(clippy::too_many_arguments)]
    fn put_range_as(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        start: u64,
        end: u64,
        new: Option<(u64, u32)>,
        grows: bool,
    ) -> Result<u64, Error> {
        let mut removed = 0u64;
        let mut p = start;
        while p < end {
            let Some(x) = self.item_overlapping(layer, ino, k, p, end)? else {
                break;
            };
            let (a, b) = (x.off.max(p), x.end().min(end));
            if b <= p {
                return Err(corrupt("overlapping extents"));
            }
            let head = match start.checked_sub(x.off) {
                Some(len) if len > 0 => Some(Ext { len, ..x }),
                _ => None,
            };
            let tail = match x.end().checked_sub(end) {
                Some(len) if len > 0 => Some(Ext {
                    off: end,
                    disk: x.disk_at(end),
                    len,
                    flags: x.flags,
                }),
                _ => None,
            };
            for part in [head, tail].iter().flatten() {
                self.add_block_refs(part.disk, part.len)?;
            }
            match head {
                Some(h) => self.put_ext(layer, ino, k, &h, grows)?,
                None => {
                    if !self.remove(layer, &Key::new(ino, k, x.off))? {
                        return Err(corrupt("key order"));
                    }
                }
            }
            if let Some(t) = tail {
                self.put_ext(layer, ino, k, &t, grows)?;
            }
            removed = removed.saturating_add(sub(b, a)?);
            p = b;
        }
        let Some((disk, flags)) = new else {
            return Ok(removed);
        };
        let span = end.checked_sub(start).ok_or(Error::Invalid)?;
        let mut m = Ext {
            off: start,
            disk,
            len: span,
            flags,
        };
        let limit = u64::from(u32::MAX);
        let prev = match start.checked_sub(1) {
            Some(b) => self.item_at(layer, ino, k, b)?,
            None => None,
        }
        .filter(|pv| {
            pv.end() == start
                && pv.flags == flags
                && pv.disk.checked_add(pv.len) == Some(disk)
                && pv.len.saturating_add(m.len) <= limit
        });
        if let Some(pv) = prev {
            self.add_block_refs(pv.disk, pv.len)?;
            m = Ext {
                off: pv.off,
                disk: pv.disk,
                // At most `limit`: checked above.
                len: pv.len.saturating_add(m.len),
                flags,
            };
        }
        let next = self.item_from(layer, ino, k, end)?.filter(|nx| {
            nx.off == end
                && nx.flags == flags
                && disk.checked_add(span) == Some(nx.disk)
                && m.len.saturating_add(nx.len) <= limit
        });
        if let Some(nx) = next {
            self.add_block_refs(nx.disk, nx.len)?;
            if !self.remove(layer, &Key::new(ino, k, nx.off))? {
                return Err(corrupt("key order"));
            }
            m.len = m.len.saturating_add(nx.len);
        }
        self.put_ext(layer, ino, k, &m, grows)?;
        Ok(removed)
    }

    /// Allocates up to `n` blocks (fewer if the free space is split or nearly used up) and
    /// maps `[fblock, fblock + got)` of the kind-`k` items of `ino` to them with `flags`,
    /// replacing what was there. For extents, `inode`'s `blocks` follows. One admitted step:
    /// `NoSpace` changes nothing.
    #[allow(clippy::too_many_arguments)]
    fn alloc_into(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        fblock: u64,
        n: u64,
        flags: u32,
        inode: Option<InodeRecord>,
    ) -> Result<(u64, u64), Error> {
        self.admit_trees(STEP_TREES)?;
        let want = self.admit_data(STEP_TREES, n.min(u64::from(u32::MAX)))?;
        let want = u32::try_from(want).map_err(|_| Error::Invalid)?;
        self.mutate(|v| {
            let (disk, got) = v.alloc_data(want)?;
            let got = u64::from(got);
            let end = fblock.checked_add(got).ok_or(Error::Invalid)?;
            let removed = v.put_range(layer, ino, k, fblock, end, Some((disk, flags)), true)?;
            if let Some(mut r) = inode {
                r.blocks = r
                    .blocks
                    .checked_add(got)
                    .and_then(|b| b.checked_sub(removed))
                    .ok_or(corrupt("inode blocks"))?;
                v.put_inode_record(layer, ino, &r, true)?;
            }
            Ok((disk, got))
        })
    }

    // ---- the API ----

    /// How file blocks `fblock..` of `ino` map, for reads: the run at `fblock` (at most `max`
    /// blocks; a hole runs to the next extent). Staging items do not matter to reads: the
    /// extent holds the file's contents until a write completes.
    pub fn map_read(&mut self, layer: u64, ino: u64, fblock: u64, max: u64) -> Result<Map, Error> {
        let max = clip(fblock, max)?;
        // An aborted transaction still answers reads, from the trees.
        let epoch = self.epoch().ok();
        if let Some(epoch) = epoch {
            let kinds = [RUN_IN_PLACE, RUN_WRITTEN, RUN_UNWRITTEN, RUN_UNWRITTEN_OWN];
            if let Some(c) = InPlaceCache::find(self.store(), epoch, layer, ino, fblock, &kinds) {
                let (disk_block, left) = c.map(fblock)?;
                return Ok(Map {
                    fblock,
                    len: left.min(max),
                    kind: if c.kind == RUN_UNWRITTEN || c.kind == RUN_UNWRITTEN_OWN {
                        MapKind::Unwritten { disk_block }
                    } else {
                        MapKind::Written { disk_block }
                    },
                });
            }
        }
        self.data_inode(layer, ino, false)?;
        let root = self.layer(layer)?.root;
        let total = self.superblock().total_blocks;
        let (map, found) = self.with_tree(|t| read_run(t, root, ino, fblock, max, total))?;
        if let (Some(e), Some(epoch)) = (found, epoch) {
            let run = InPlace {
                epoch,
                layer,
                ino,
                off: e.off,
                len: e.len,
                disk: e.disk,
                kind: if e.is_unwritten() {
                    RUN_UNWRITTEN
                } else {
                    RUN_WRITTEN
                },
            };
            InPlaceCache::put(self.store(), &run);
        }
        Ok(map)
    }

    /// [`Self::map_read`] for a report of the file's layout (FIEMAP), and whether the run's
    /// blocks are shared: also referenced by another layer's tree or another item (a clone's
    /// blocks until either side rewrites them). The run ends where sharing changes. A written
    /// run of a write in progress (staging blocks) and unwritten runs are reported unshared.
    pub fn map_report(
        &mut self,
        layer: u64,
        ino: u64,
        fblock: u64,
        max: u64,
    ) -> Result<(Map, bool), Error> {
        let mut m = self.map_read(layer, ino, fblock, max)?;
        let MapKind::Written { disk_block } = m.kind else {
            return Ok((m, false));
        };
        let Some(e) = self.item_at(layer, ino, kind::EXTENT, fblock)? else {
            return Ok((m, false));
        };
        if e.is_unwritten() || e.disk_at(fblock) != disk_block {
            return Ok((m, false));
        }
        let key = Key::new(ino, kind::EXTENT, e.off);
        let lim = m.len.min(e.left(fblock)?).min(SCAN_MAX);
        let shared = self.shared_run(layer, &key, disk_block, lim)?;
        if shared > 0 {
            m.len = shared;
            return Ok((m, true));
        }
        m.len = self.exclusive_run(layer, &key, disk_block, lim)?.max(1);
        Ok((m, false))
    }

    /// Layer `layer`'s tree for [`FrozenTree::map_read`], if the layer is frozen; `None` for a
    /// read-write layer or an aborted transaction. The caller must know the freeze committed
    /// (the tree's nodes are then on the medium and never change while the layer exists).
    pub fn frozen_tree(&mut self, layer: u64) -> Result<Option<FrozenTree>, Error> {
        if self.is_aborted() {
            return Ok(None);
        }
        let l = self.layer(layer)?;
        if !l.is_read_only() {
            return Ok(None);
        }
        Ok(Some(FrozenTree {
            root: l.root,
            fsid: self.superblock().fsid(),
            generation: self.superblock().generation.saturating_add(1),
            total_blocks: self.superblock().total_blocks,
            hash_key: self.hash_key(),
        }))
    }

    /// Makes file blocks from `fblock` (at most `max`) of the regular file `ino` writable and
    /// says where the data goes (see the module documentation for the protocol): an existing
    /// staging run or unwritten extent of this file alone is reused, written blocks of this
    /// file alone are overwritten in place, shared written blocks get new staging blocks, and a
    /// hole (or a shared unwritten extent) gets new unwritten blocks, merged with the extent
    /// before it when they continue it on disk. The run returned is one contiguous disk run.
    ///
    /// Errors: `Invalid` (`max` 0, a block past the largest file, not a regular file), `IsDir`,
    /// `NotFound` (no such inode or layer), `ReadOnly` (frozen layer), `NoSpace` when no data
    /// block is left above the metadata reserve (nothing changed).
    pub fn map_write(
        &mut self,
        layer: u64,
        ino: u64,
        fblock: u64,
        max: u64,
    ) -> Result<WriteMap, Error> {
        let max = clip(fblock, max)?;
        let epoch = self.epoch()?;
        if let Some(c) = InPlaceCache::get_write(self.store(), epoch, layer, ino, fblock) {
            let (disk_block, left) = c.map(fblock)?;
            return Ok(WriteMap {
                fblock,
                len: left.min(max).min(SCAN_MAX),
                disk_block,
                kind: if c.kind == RUN_UNWRITTEN_OWN {
                    WriteKind::Unwritten
                } else {
                    WriteKind::InPlace
                },
            });
        }
        let inode = self.data_inode(layer, ino, true)?;
        let ext = self.item_at(layer, ino, kind::EXTENT, fblock)?;
        // Most files have no staging items: one look for any spares the two below.
        let staging = self.item_from(layer, ino, kind::COW, 0)?.is_some();
        let cow = if staging {
            self.item_at(layer, ino, kind::COW, fblock)?
        } else {
            None
        };
        if let Some(c) = cow {
            // Staging blocks are reused if they still stand for written data and belong to
            // this file alone. Anything else is stale (inherited from a layer frozen with a
            // write in progress, or left over a range truncated since): cut it where it is.
            let cow_key = Key::new(ino, kind::COW, c.off);
            let over = match ext {
                Some(e) if !e.is_unwritten() => Some(e),
                _ => None,
            };
            let lim = c.left(fblock)?.min(max).min(SCAN_MAX);
            if let Some(e) = over {
                let lim = lim.min(e.left(fblock)?);
                let run = self.exclusive_run(layer, &cow_key, c.disk_at(fblock), lim)?;
                if run > 0 {
                    return Ok(WriteMap {
                        fblock,
                        len: run,
                        disk_block: c.disk_at(fblock),
                        kind: WriteKind::Cow {
                            src_disk_block: e.disk_at(fblock),
                        },
                    });
                }
            }
            let stale = match over {
                Some(_) => self.shared_run(layer, &cow_key, c.disk_at(fblock), lim)?,
                None => {
                    let bound = match ext {
                        Some(e) => e.end(),
                        None => match self.item_from(layer, ino, kind::EXTENT, fblock)? {
                            Some(n) => n.off,
                            None => c.end(),
                        },
                    };
                    gap(bound.min(c.end()), fblock)?
                }
            };
            let end = fblock.checked_add(stale.max(1)).ok_or(Error::Invalid)?;
            self.admit_trees_in_reserve(STEP_TREES)?;
            self.mutate(|v| v.put_range(layer, ino, kind::COW, fblock, end, None, false))?;
        }
        match ext {
            Some(e) => {
                let key = Key::new(ino, kind::EXTENT, e.off);
                let src = e.disk_at(fblock);
                let mut lim = e.left(fblock)?.min(max).min(SCAN_MAX);
                if !e.is_unwritten() && staging {
                    // A new staging run stops before staging items further on.
                    if let Some(c) = self.item_from(layer, ino, kind::COW, fblock)? {
                        if c.off < fblock.saturating_add(lim) {
                            lim = gap(c.off, fblock)?;
                        }
                    }
                }
                if !staging {
                    if let Some(w) = self.cache_in_place(layer, ino, &e, fblock, max, epoch)? {
                        return Ok(w);
                    }
                }
                let run = self.exclusive_run(layer, &key, src, lim)?;
                if run > 0 {
                    return Ok(WriteMap {
                        fblock,
                        len: run,
                        disk_block: src,
                        kind: if e.is_unwritten() {
                            WriteKind::Unwritten
                        } else {
                            WriteKind::InPlace
                        },
                    });
                }
                let n = self.shared_run(layer, &key, src, lim)?.max(1);
                if e.is_unwritten() {
                    // Zeros shared with another layer: this file gets unwritten blocks of its own.
                    let inode = self.inode(layer, ino)?;
                    let (disk, got) = self.alloc_into(
                        layer,
                        ino,
                        kind::EXTENT,
                        fblock,
                        n,
                        extent_flags::UNWRITTEN,
                        Some(inode),
                    )?;
                    return Ok(WriteMap {
                        fblock,
                        len: got,
                        disk_block: disk,
                        kind: WriteKind::New,
                    });
                }
                let (disk, got) = self.alloc_into(layer, ino, kind::COW, fblock, n, 0, None)?;
                Ok(WriteMap {
                    fblock,
                    len: got,
                    disk_block: disk,
                    kind: WriteKind::Cow {
                        src_disk_block: src,
                    },
                })
            }
            None => {
                let lim = match self.item_from(layer, ino, kind::EXTENT, fblock)? {
                    Some(n) => gap(n.off, fblock)?.min(max),
                    None => max,
                };
                let (disk, got) = self.alloc_into(
                    layer,
                    ino,
                    kind::EXTENT,
                    fblock,
                    lim,
                    extent_flags::UNWRITTEN,
                    Some(inode),
                )?;
                Ok(WriteMap {
                    fblock,
                    len: got,
                    disk_block: disk,
                    kind: WriteKind::New,
                })
            }
        }
    }

    /// Where writeback writes file blocks from `fblock` (at most `max`): the staging run if
    /// there is one, else the extent's blocks (stopping before a staging run). Returns the
    /// first disk block and the number of blocks. `NotFound` if the block has none, `Invalid`
    /// if they are not this file's alone (a write that did not go through
    /// [`Self::map_write`]): writeback never writes into blocks another layer uses.
    pub fn map_writeback(
        &mut self,
        layer: u64,
        ino: u64,
        fblock: u64,
        max: u64,
    ) -> Result<(u64, u64), Error> {
        let max = clip(fblock, max)?.min(SCAN_MAX);
        let epoch = self.epoch()?;
        if let Some(c) = InPlaceCache::get(self.store(), epoch, layer, ino, fblock) {
            let (disk_block, left) = c.map(fblock)?;
            return Ok((disk_block, left.min(max)));
        }
        self.data_inode(layer, ino, true)?;
        // As in `map_write`: one look for any staging item spares the two below.
        let staging = self.item_from(layer, ino, kind::COW, 0)?.is_some();
        let cow = if staging {
            self.item_at(layer, ino, kind::COW, fblock)?
        } else {
            None
        };
        let (key, disk, mut lim) = match cow {
            Some(c) => (
                Key::new(ino, kind::COW, c.off),
                c.disk_at(fblock),
                c.left(fblock)?.min(max),
            ),
            None => {
                let e = self
                    .item_at(layer, ino, kind::EXTENT, fblock)?
                    .ok_or(Error::NotFound)?;
                let mut lim = e.left(fblock)?.min(max);
                if staging {
                    if let Some(c) = self.item_from(layer, ino, kind::COW, fblock)? {
                        if c.off < fblock.saturating_add(lim) {
                            lim = gap(c.off, fblock)?;
                        }
                    }
                }
                (Key::new(ino, kind::EXTENT, e.off), e.disk_at(fblock), lim)
            }
        };
        lim = self.exclusive_run(layer, &key, disk, lim)?;
        if lim == 0 {
            return Err(Error::Invalid);
        }
        Ok((disk, lim))
    }

    /// Records that the data of file blocks `[fblock, fblock + len)` reached the disk: unwritten
    /// extents there become written, staging runs replace the extent blocks they stand for
    /// (dropping this file's references to the old blocks), merging with neighbouring extents
    /// that continue them on disk. Staging over no written data (truncated or punched since) is
    /// dropped. Holes and written extents are left alone. Changes go piece by piece (see the
    /// module documentation); a piece may use the metadata reserve, since it adds no data.
    ///
    /// The caller completes only ranges it mapped with [`Self::map_write`] and wrote where
    /// [`Self::map_writeback`] said: completion does not look at reference counts again, so an
    /// unwritten extent completed without a write would show whatever its blocks held.
    pub fn complete_write(
        &mut self,
        layer: u64,
        ino: u64,
        fblock: u64,
        len: u64,
    ) -> Result<(), Error> {
        let len = clip(fblock, len)?;
        let end = fblock.checked_add(len).ok_or(Error::Invalid)?;
        let epoch = self.epoch()?;
        if let Some(c) = InPlaceCache::get(self.store(), epoch, layer, ino, fblock) {
            // Written blocks of a file without staging: nothing to complete.
            if sub(end, c.off)? <= c.len {
                return Ok(());
            }
        }
        self.data_inode(layer, ino, true)?;
        let mut p = fblock;
        while p < end {
            // As in `map_write`: a file without staging items needs no look for them.
            let staging = self.item_from(layer, ino, kind::COW, 0)?.is_some();
            let cow = if staging {
                self.item_at(layer, ino, kind::COW, p)?
            } else {
                None
            };
            let ext = self.item_at(layer, ino, kind::EXTENT, p)?;
            // The piece: up to the next boundary of either kind of item.
            let mut q = end;
            for (k, cur) in [(kind::COW, cow), (kind::EXTENT, ext)] {
                if k == kind::COW && !staging {
                    continue;
                }
                q = match cur {
                    Some(x) => q.min(x.end()),
                    None => match self.item_from(layer, ino, k, p)? {
                        Some(x) => q.min(x.off),
                        None => q,
                    },
                };
            }
            let n = gap(q, p)?;
            match (cow, ext) {
                (Some(c), Some(e)) if !e.is_unwritten() => {
                    let staged = c.disk_at(p);
                    self.admit_trees_in_reserve(STEP_TREES)?;
                    self.mutate(|v| {
                        // The extent's share of the staged blocks, then the staging item's goes.
                        v.add_block_refs(staged, n)?;
                        let new = Some((staged, 0));
                        let removed = v.put_range(layer, ino, kind::EXTENT, p, q, new, false)?;
                        if removed != n {
                            return Err(corrupt("staging extent over a hole"));
                        }
                        v.put_range(layer, ino, kind::COW, p, q, None, false)?;
                        Ok(())
                    })?;
                }
                (Some(_), _) => {
                    self.admit_trees_in_reserve(STEP_TREES)?;
                    self.mutate(|v| v.put_range(layer, ino, kind::COW, p, q, None, false))?;
                }
                (None, Some(e)) if e.is_unwritten() => {
                    let d = e.disk_at(p);
                    self.admit_trees_in_reserve(STEP_TREES)?;
                    self.mutate(|v| {
                        v.add_block_refs(d, n)?;
                        v.put_range(layer, ino, kind::EXTENT, p, q, Some((d, 0)), false)?;
                        Ok(())
                    })?;
                }
                _ => {}
            }
            p = q;
        }
        Ok(())
    }

    /// Deallocates file blocks `[fblock, fblock + len)` of `ino` (clipped to the largest file):
    /// staging items, then extents, are cut there; the inode's `blocks` follows. Its size does
    /// not change. Piece by piece (see the module documentation); may use the metadata
    /// reserve.
    pub fn punch_hole(&mut self, layer: u64, ino: u64, fblock: u64, len: u64) -> Result<(), Error> {
        let len = clip(fblock, len)?;
        let end = fblock.checked_add(len).ok_or(Error::Invalid)?;
        self.data_inode(layer, ino, true)?;
        // Staging first: staging items only ever stand over written extents.
        for k in [kind::COW, kind::EXTENT] {
            let mut p = fblock;
            while p < end {
                let Some(x) = self.item_overlapping(layer, ino, k, p, end)? else {
                    break;
                };
                let (a, b) = (x.off.max(p), x.end().min(end));
                if b <= p {
                    return Err(corrupt("overlapping extents"));
                }
                let inode = if k == kind::EXTENT {
                    let mut r = self.inode(layer, ino)?;
                    let n = sub(b, a)?;
                    r.blocks = r.blocks.checked_sub(n).ok_or(corrupt("inode blocks"))?;
                    Some(r)
                } else {
                    None
                };
                self.admit_trees_in_reserve(STEP_TREES)?;
                self.mutate(|v| {
                    v.put_range(layer, ino, k, a, b, None, false)?;
                    if let Some(r) = inode {
                        v.put_inode_record(layer, ino, &r, false)?;
                    }
                    Ok(())
                })?;
                p = b;
            }
        }
        Ok(())
    }

    /// Allocates unwritten extents for the holes of file blocks `[fblock, fblock + len)` of
    /// `ino` (`fallocate`; the size does not change). `NoSpace`, with nothing changed, unless
    /// the holes fit in the data space up front; each run is then its own step (see the module
    /// documentation), so a range whose free space is split into many runs may still stop with
    /// `NoSpace` part way, every allocated run in place. `Invalid` for a range past the largest
    /// file.
    pub fn allocate(&mut self, layer: u64, ino: u64, fblock: u64, len: u64) -> Result<(), Error> {
        let end = fblock.checked_add(len).ok_or(Error::Invalid)?;
        if len == 0 || end > MAX_FILE_BLOCKS {
            return Err(Error::Invalid);
        }
        self.data_inode(layer, ino, true)?;
        let mut holes = 0u64;
        let mut p = fblock;
        while let Some((a, b)) = self.next_hole(layer, ino, p, end)? {
            holes = holes.saturating_add(sub(b, a)?);
            p = b;
        }
        if holes == 0 {
            return Ok(());
        }
        if holes > self.data_room(STEP_TREES) {
            return Err(Error::NoSpace);
        }
        p = fblock;
        while let Some((a, b)) = self.next_hole(layer, ino, p, end)? {
            let inode = self.inode(layer, ino)?;
            let flags = extent_flags::UNWRITTEN;
            let n = sub(b, a)?;
            let (_, got) = self.alloc_into(layer, ino, kind::EXTENT, a, n, flags, Some(inode))?;
            p = a.checked_add(got).ok_or(Error::Invalid)?;
        }
        Ok(())
    }

    /// The first hole of `ino` in `[from, end)`.
    fn next_hole(
        &mut self,
        layer: u64,
        ino: u64,
        mut from: u64,
        end: u64,
    ) -> Result<Option<(u64, u64)>, Error> {
        while from < end {
            if let Some(e) = self.item_at(layer, ino, kind::EXTENT, from)? {
                from = e.end();
                continue;
            }
            let to = match self.item_from(layer, ino, kind::EXTENT, from)? {
                Some(n) => n.off.min(end),
                None => end,
            };
            gap(to, from)?;
            return Ok(Some((from, to)));
        }
        Ok(None)
    }

    /// Makes file blocks `[dst_fblock, dst_fblock + len)` of the regular file `dst_ino` of the
    /// read-write layer `dst_layer` share the blocks of `[src_fblock, src_fblock + len)` of the
    /// regular file `src_ino` of `src_layer` (any layer of the volume, frozen ones included):
    /// reflink (`FICLONE`, `FICLONERANGE`, `copy_file_range`). Returns the blocks done.
    ///
    /// * Written source extents: the destination gets extents pointing at the same disk blocks,
    ///   and each block gains one reference ([`Self::add_block_refs`]), as when a layer clone
    ///   shares them; later writes to either file copy on write ([`Self::map_write`] finds the
    ///   blocks shared). The new extents keep the source extent's birth layer: a clone allocates
    ///   nothing, so they count in the destination layer's `own_bytes` only if the data was born
    ///   there (cloned within a layer from that layer's own writes), never when it comes from
    ///   the parent or another layer.
    /// * Unwritten source extents and holes become holes (reads give zeros either way).
    /// * Staging items of the source are not looked at: the extent holds what the file reads
    ///   until a write completes, so the caller writes back and completes the source's writes
    ///   first; any staging left is stale and its data is not cloned.
    /// * Whatever the destination held in the range is released first, as by
    ///   [`Self::punch_hole`]: its extents are cut (their blocks lose a reference) and its
    ///   staging items there dropped (writes in progress there are lost: the caller writes back
    ///   and drops the destination's page cache over the range). Inline data is not looked at.
    ///
    /// The destination inode's `blocks` follows, and the layer's `bytes_used` and `own_bytes`
    /// follow the items as for every item change; its size, times and `data_id` are not changed
    /// (the caller renews the `data_id` with [`Self::renew_data_id`] before and sets the size
    /// and times after).
    ///
    /// Every change moves the epoch on ([`Self::mutate`]), so no in-place run the cache holds
    /// for the source (whose blocks are now shared) or for the destination is used again.
    ///
    /// Piece by piece (see the module documentation): a piece is a run where neither the
    /// source's extent nor the destination's extent or staging item changes; a piece that
    /// clones data is admitted like an insert (it adds items, so it keeps out of the metadata
    /// reserve), one that only releases like a punch. The whole range is done in one call.
    ///
    /// Errors, before any change: `Invalid` (`len` 0, a range past the largest file, ranges of
    /// the same file that overlap, a file that is not a regular file), `IsDir`, `NotFound` (no
    /// such layer or inode), `ReadOnly` (frozen destination layer), `NoSpace`. A piece refused
    /// for space after others were done ends the call with `Ok` and the blocks done so far
    /// (every piece before it complete, the rest of the destination range unchanged); asked
    /// again for the rest, it then fails with `NoSpace`. Any other error is returned as it is,
    /// even after progress (pieces done stay done; an error inside a change aborts the
    /// transaction).
    #[allow(clippy::too_many_arguments)]
    pub fn clone_range(
        &mut self,
        src_layer: u64,
        src_ino: u64,
        src_fblock: u64,
        dst_layer: u64,
        dst_ino: u64,
        dst_fblock: u64,
        len: u64,
    ) -> Result<u64, Error> {
        let src_end = src_fblock.checked_add(len).ok_or(Error::Invalid)?;
        let dst_end = dst_fblock.checked_add(len).ok_or(Error::Invalid)?;
        if len == 0 || src_end > MAX_FILE_BLOCKS || dst_end > MAX_FILE_BLOCKS {
            return Err(Error::Invalid);
        }
        let same = src_layer == dst_layer && src_ino == dst_ino;
        if same && src_fblock < dst_end && dst_fblock < src_end {
            return Err(Error::Invalid);
        }
        self.data_inode(dst_layer, dst_ino, true)?;
        self.data_inode(src_layer, src_ino, false)?;
        let mut done = 0u64;
        while done < len {
            let rest = sub(len, done)?;
            let src = add(src_fblock, done)?;
            let dst = add(dst_fblock, done)?;
            match self.clone_piece(src_layer, src_ino, src, dst_layer, dst_ino, dst, rest) {
                // At least 1 and at most `rest`: `done` stays at most `len`.
                Ok(n) => done = done.saturating_add(n),
                Err(Error::NoSpace) if done > 0 && !self.is_aborted() => return Ok(done),
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// One piece of [`Self::clone_range`] from source block `p` and destination block `q`, at
    /// most `rest` blocks: returns the blocks done (at least 1).
    #[allow(clippy::too_many_arguments)]
    fn clone_piece(
        &mut self,
        src_layer: u64,
        src_ino: u64,
        p: u64,
        dst_layer: u64,
        dst_ino: u64,
        q: u64,
        rest: u64,
    ) -> Result<u64, Error> {
        // The source first: reading another layer writes the destination's cached record back.
        let (from, n) = match self.item_at(src_layer, src_ino, kind::EXTENT, p)? {
            Some(e) => ((!e.is_unwritten()).then_some(e), e.left(p)?.min(rest)),
            None => match self.item_from(src_layer, src_ino, kind::EXTENT, p)? {
                Some(x) if x.off < p.saturating_add(rest) => (None, gap(x.off, p)?),
                _ => (None, rest),
            },
        };
        // The piece cuts at most one destination item of each kind, the whole piece in it.
        let (ext, n) = self.piece_in(dst_layer, dst_ino, kind::EXTENT, q, n)?;
        let staging = self.item_from(dst_layer, dst_ino, kind::COW, 0)?.is_some();
        let (cow, n) = if staging {
            self.piece_in(dst_layer, dst_ino, kind::COW, q, n)?
        } else {
            (false, n)
        };
        if from.is_none() && !ext && !cow {
            // A hole over a hole.
            return Ok(n);
        }
        let end = add(q, n)?;
        let mut r = self.inode(dst_layer, dst_ino)?;
        let grows = from.is_some();
        if grows {
            self.admit_trees(STEP_TREES)?;
        } else {
            self.admit_trees_in_reserve(STEP_TREES)?;
        }
        self.mutate(|v| {
            if cow {
                v.put_range(dst_layer, dst_ino, kind::COW, q, end, None, false)?;
            }
            let (added, removed) = match from {
                Some(e) => {
                    // The destination's share of the blocks, handed to its new extent.
                    let disk = e.disk_at(p);
                    v.add_block_refs(disk, n)?;
                    let new = Some((disk, e.flags));
                    let k = kind::EXTENT;
                    (n, v.put_range_as(dst_layer, dst_ino, k, q, end, new, true)?)
                }
                None if ext => (
                    0,
                    v.put_range(dst_layer, dst_ino, kind::EXTENT, q, end, None, false)?,
                ),
                None => (0, 0),
            };
            if added != removed {
                r.blocks = r
                    .blocks
                    .checked_add(added)
                    .and_then(|b| b.checked_sub(removed))
                    .ok_or(corrupt("inode blocks"))?;
                v.put_inode_record(dst_layer, dst_ino, &r, grows)?;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// For a piece of `n` blocks from `q`: whether an item of kind `k` of `ino` covers `q`, and
    /// `n` shortened to end where that item ends or where the next one starts.
    fn piece_in(
        &mut self,
        layer: u64,
        ino: u64,
        k: u8,
        q: u64,
        n: u64,
    ) -> Result<(bool, u64), Error> {
        if let Some(x) = self.item_at(layer, ino, k, q)? {
            return Ok((true, x.left(q)?.min(n)));
        }
        match self.item_from(layer, ino, k, q)? {
            Some(x) if x.off < q.saturating_add(n) => Ok((false, gap(x.off, q)?)),
            _ => Ok((false, n)),
        }
    }

    /// Crash recovery at mount: frees every staging item of the read-write layer `layer` (their
    /// data never became visible; the extents still hold the old contents). Returns the blocks
    /// freed. Finds them through the diff against the parent, so the cost follows the layer's
    /// changes (staging items never reach a frozen layer: it is synced before it is frozen).
    pub fn recover(&mut self, layer: u64) -> Result<u64, Error> {
        if self.layer(layer)?.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let total = self.superblock().total_blocks;
        let mut freed = 0u64;
        let mut from = Key::MIN;
        loop {
            let mut found = None;
            self.diff(layer, from, &mut |c: Change<'_>| {
                if c.key.kind != kind::COW {
                    return Ok(true);
                }
                match c.new {
                    Some(v) => {
                        found = Some((c.key, Ext::decode(&c.key, v, total)));
                        Ok(false)
                    }
                    None => Ok(true),
                }
            })?;
            let Some((key, e)) = found else {
                return Ok(freed);
            };
            let e = e?;
            self.admit_trees_in_reserve(2)?;
            if !self.remove(layer, &key)? {
                return Err(corrupt("key order"));
            }
            freed = freed.saturating_add(e.len);
            match key_after(&key) {
                Some(k) => from = k,
                None => return Ok(freed),
            }
        }
    }

    // ---- truncation ----

    /// Drops every data block of `ino` from file block `first_block` on, in extent items and
    /// in staging (`COW`) items alike: items wholly past it go, an item straddling it is
    /// shortened (its tail blocks lose this reference). Returns the number of extent blocks
    /// dropped, for the caller to subtract from the inode's `blocks` (this does not touch the
    /// inode record; staging blocks are not in `blocks`). Runs as one change: inside an
    /// operation's [`Volume::mutate`], or on its own (a failure midway aborts the transaction).
    pub fn drop_blocks_from(
        &mut self,
        layer: u64,
        ino: u64,
        first_block: u64,
    ) -> Result<u64, Error> {
        self.check_writable(layer)?;
        self.mutate(|v| {
            v.drop_extents_from(layer, ino, kind::COW, first_block)?;
            v.drop_extents_from(layer, ino, kind::EXTENT, first_block)
        })
    }

    /// [`Self::drop_blocks_from`] for any item kind keyed `(ino, item_kind, file block)` whose
    /// value is an [`ExtentRecord`].
    pub(super) fn drop_extents_from(
        &mut self,
        layer: u64,
        ino: u64,
        item_kind: u8,
        first_block: u64,
    ) -> Result<u64, Error> {
        self.check_writable(layer)?;
        let total = self.superblock().total_blocks;
        self.mutate(|v| {
            let mut dropped = 0u64;
            if let Some((at, e)) = v.last_extent_before(layer, ino, item_kind, first_block)? {
                let len = u64::from(e.len);
                let end = at.checked_add(len).ok_or(corrupt("extent range"))?;
                if end > first_block {
                    // The extent straddles the new end: keep its head. The tree drops the old
                    // value's references to all its blocks and takes over the new value's, so
                    // the head gets one more first.
                    let keep = sub(first_block, at)?;
                    let head = ExtentRecord {
                        len: u32::try_from(keep).map_err(|_| corrupt("extent range"))?,
                        ..e
                    };
                    let mut value = [0u8; EXTENT_RECORD_SIZE];
                    head.encode(&mut value)?;
                    v.add_block_refs(e.disk_block, keep)?;
                    v.insert(layer, &Key::new(ino, item_kind, at), &value)?;
                    dropped = sub(len, keep)?;
                }
            }
            let mut from = Key::new(ino, item_kind, first_block);
            loop {
                let got = v.next(layer, &from, |k, val| {
                    (*k, ExtentRecord::decode(val, total).map(|e| e.len))
                })?;
                let Some((k, len)) = got else { break };
                if k.id != ino || k.kind != item_kind {
                    break;
                }
                let len = len?;
                if !v.remove(layer, &k)? {
                    return Err(corrupt("key order"));
                }
                dropped = dropped.saturating_add(u64::from(len));
                match key_after(&k) {
                    Some(next) => from = next,
                    None => break,
                }
            }
            Ok(dropped)
        })
    }

    /// The item `(ino, item_kind, offset)` with the largest offset below `end`, and its extent.
    /// A binary search over `next` probes: O(log² n) node reads whatever the file's size.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "end > 0 is checked, and lo < hi < end where lo + 1, the midpoint (in \
                  lo + 1..=hi) and mid - 1 are computed"
    )]
    fn last_extent_before(
        &mut self,
        layer: u64,
        ino: u64,
        item_kind: u8,
        end: u64,
    ) -> Result<Option<(u64, ExtentRecord)>, Error> {
        // The first item offset in `from..end`, if any.
        let probe = |v: &mut Self, from: u64| -> Result<Option<u64>, Error> {
            let got = v.next(layer, &Key::new(ino, item_kind, from), |k, _| *k)?;
            Ok(got.and_then(|k| {
                (k.id == ino && k.kind == item_kind && k.offset < end).then_some(k.offset)
            }))
        };
        if end == 0 {
            return Ok(None);
        }
        let Some(mut lo) = probe(self, 0)? else {
            return Ok(None);
        };
        // `lo` is an item below `end`; the last one is in `lo..=hi`.
        let mut hi = end - 1;
        if lo < hi {
            match probe(self, lo + 1)? {
                None => hi = lo,
                Some(o) => lo = o,
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match probe(self, mid)? {
                Some(o) => lo = o,
                None => hi = mid - 1,
            }
        }
        let total = self.superblock().total_blocks;
        let e = self
            .lookup(layer, &Key::new(ino, item_kind, lo), |v| {
                ExtentRecord::decode(v, total)
            })?
            .ok_or(corrupt("key order"))??;
        Ok(Some((lo, e)))
    }

    // ---- inline data (small files, symlink targets) ----

    /// Copies the inline data of `ino` (a symlink's target, a small file's bytes) into `buf` and
    /// returns its length: `NotFound` if it has none, `Invalid` if `buf` is too small.
    pub fn read_inline(&mut self, layer: u64, ino: u64, buf: &mut [u8]) -> Result<usize, Error> {
        read_inline_in(&mut self.items(layer), ino, buf)
    }

    /// Sets the inline data of `ino`: a small file's bytes (one item, at most [`INLINE_CHUNK`]
    /// bytes) or a symlink's target (at most [`SYMLINK_MAX`] bytes, in items of
    /// [`INLINE_CHUNK`] bytes).
    pub fn write_inline(
        &mut self,
        layer: u64,
        ino: u64,
        data: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        check_time(&now)?;
        self.check_writable(layer)?;
        let mut rec = self.inode(layer, ino)?;
        let max = if rec.mode & mode::S_IFMT == mode::S_IFLNK {
            SYMLINK_MAX
        } else {
            INLINE_CHUNK
        };
        if data.len() > max {
            return Err(Error::Invalid);
        }
        let chunks = data.len().div_ceil(INLINE_CHUNK).max(1);
        // A block buffer from the store: kernel stacks have no room for a kilobyte.
        let mut buf = self.store().alloc_buf()?;
        self.admit_trees(3 + SYMLINK_CHUNKS)?;
        self.mutate(|v| {
            for i in 0..chunks {
                // `i` is below `SYMLINK_CHUNKS`: no saturation.
                let from = i.saturating_mul(INLINE_CHUNK);
                let chunk = data
                    .get(from..data.len().min(from.saturating_add(INLINE_CHUNK)))
                    .ok_or(Error::Invalid)?;
                let n = put_inline_data(buf.as_mut(), chunk)?;
                let value = buf.as_ref().get(..n).ok_or(Error::Invalid)?;
                v.insert(layer, &Key::new(ino, kind::INLINE, i as u64), value)?;
            }
            // What is left of a longer target written before (its length is the old size).
            let old = if max == SYMLINK_MAX {
                rec.size.div_ceil(INLINE_CHUNK as u64).min(SYMLINK_CHUNKS)
            } else {
                0
            };
            for i in chunks as u64..old {
                v.remove(layer, &Key::new(ino, kind::INLINE, i))?;
            }
            rec.size = data.len() as u64;
            rec.mtime = now;
            rec.ctime = now;
            v.put_inode(layer, ino, &rec)
        })
    }
}

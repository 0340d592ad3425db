// SPDX-License-Identifier: GPL-2.0 OR MIT

//! An open filesystem ([`Volume`]) and its running transaction: opening and formatting, changes
//! and the space they may take, the commit, the reference-count map, and the items of a layer's
//! tree every operation is made of (insert and remove, with the layer's usage accounting).
//!
//! The operations built on these are in the modules beside this one: [`super::layers`] (layers
//! and the layer tree), [`super::namespace`] (inodes, directories, names, orphans, path diffs),
//! [`super::xattr`] (extended attributes), [`super::data`] (file data, inline data, truncation).
//!
//! # Commit protocol
//!
//! Everything a transaction changes is written to blocks the committed state does not use
//! (copy-on-write trees and map; freed blocks are pinned until commit). [`Volume::commit`]
//! turns pins into free blocks, flushes the device, writes the superblock copy of the new
//! generation (`generation % 2`), and flushes again. A crash before the superblock write reopens
//! at the previous commit; after it, at the new one. The other copy always holds the previous
//! commit, so a torn superblock write falls back one generation.
//!
//! # Errors
//!
//! Operations check their arguments and the free space they may need before changing anything,
//! so `NotFound`, `Exists`, `Busy`, `ReadOnly`, `Invalid` and most `NoSpace` errors leave the
//! transaction intact. Any failure after the first change (an I/O error, corruption found on the
//! way, space running out anyway) *aborts* the transaction: every later operation fails with
//! [`Error::Aborted`] and the filesystem must be reopened, which finds the last commit intact.

use super::node::{key_after, Key};
use super::records::{fs_leaf_refs, kind, ExtentRecord, HashKey, Timespec};
use super::refmap::{MapAccess, MapCommit, MapParams, RefMap};
use super::superblock::{self, Superblock, SUPERBLOCK_SIZE};
use super::tree::{BlockStore, Change, Error, ItemVisitor, Txn};
use super::{FormatError, BLOCK_SIZE};

pub use super::layers::LayerInfo;

/// Tree kinds stored in node headers.
pub mod tree_kind {
    /// The layer tree (one item per layer).
    pub const LAYERS: u8 = 1;
    /// A layer's filesystem tree.
    pub const FS: u8 = 2;
}

/// A block store that can make its writes durable.
pub trait Device: BlockStore {
    /// Returns once every write so far is on stable storage.
    fn flush(&mut self) -> Result<(), Error>;

    /// Hands every write the store still holds back (a cache of dirty nodes) to the device,
    /// without waiting for stable storage: after it, a flush of the device alone (which need not
    /// go through this store) makes them durable.
    fn write_back(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A commit whose changes are written back but not yet durable: see [`Volume::commit_begin`].
/// Until [`Volume::commit_end`] takes it, no other commit starts; changes go on in the next
/// transaction (split), or the volume refuses them (`Busy`) and answers reads from the state
/// being committed.
#[must_use]
#[derive(Debug)]
pub struct PendingCommit {
    sb: Superblock,
    split: bool,
}

impl PendingCommit {
    /// The block the new superblock goes to (after a flush of the device, before another).
    pub fn slot(&self) -> u64 {
        self.sb.slot()
    }

    /// Whether the next transaction already takes changes (see [`Volume::commit_begin`]).
    pub fn is_split(&self) -> bool {
        self.split
    }

    /// Encodes the new superblock's block (zeros after the superblock) into `block`.
    pub fn encode(&self, block: &mut [u8]) -> Result<(), Error> {
        block.fill(0);
        self.sb
            .encode(block.get_mut(..SUPERBLOCK_SIZE).ok_or(Error::Invalid)?)?;
        Ok(())
    }
}

/// Items of one layer's tree, to read: through the volume, or from a frozen layer's committed
/// tree without it ([`super::data::FrozenTree`]). The namespace reads (inodes, names, directory
/// listings, symlink targets) are written once against this, so a lock-free reader of a frozen
/// layer answers exactly as the volume does.
pub trait LayerItems {
    /// Calls `f` with the value of `key`.
    fn lookup<R>(&mut self, key: &Key, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, Error>;
    /// Calls `f` with the first item with a key of at least `from`.
    fn next<R>(&mut self, from: &Key, f: impl FnOnce(&Key, &[u8]) -> R)
        -> Result<Option<R>, Error>;
    /// See [`Txn::scan_leaf`].
    fn scan_leaf(&mut self, from: &Key, f: &mut ItemVisitor<'_>) -> Result<Option<Key>, Error>;
    /// The filesystem's directory hash key.
    fn hash_key(&self) -> HashKey;
}

/// [`LayerItems`] of a layer, read through the volume (see [`Volume::items`]).
pub struct InLayer<'a, S: Device, M: MapAccess<S>> {
    vol: &'a mut Volume<S, M>,
    layer: u64,
}

impl<S: Device, M: MapAccess<S>> LayerItems for InLayer<'_, S, M> {
    fn lookup<R>(&mut self, key: &Key, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, Error> {
        self.vol.lookup(self.layer, key, f)
    }

    fn next<R>(
        &mut self,
        from: &Key,
        f: impl FnOnce(&Key, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        self.vol.next(self.layer, from, f)
    }

    fn scan_leaf(&mut self, from: &Key, f: &mut ItemVisitor<'_>) -> Result<Option<Key>, Error> {
        self.vol.scan_leaf(self.layer, from, f)
    }

    fn hash_key(&self) -> HashKey {
        self.vol.hash_key()
    }
}

/// Key of an inode record.
pub fn inode_key(ino: u64) -> Key {
    Key::new(ino, kind::INODE, 0)
}

/// Bytes of file data an item accounts for in its layer's `bytes_used`.
fn item_bytes(key: &Key, value: &[u8], total_blocks: u64) -> Result<u64, FormatError> {
    if key.kind == kind::EXTENT {
        let e = ExtentRecord::decode(value, total_blocks)?;
        return u64::from(e.len)
            .checked_mul(u64::from(BLOCK_SIZE))
            .ok_or(FormatError::BadField("extent length"));
    }
    Ok(0)
}

/// Usage an item of a layer whose own extents are born in `own_birth` accounts for, and the
/// blocks it references.
fn item_usage(
    key: &Key,
    value: &[u8],
    total: u64,
    own_birth: u64,
) -> Result<(Usage, Option<(u64, u64)>), Error> {
    let bytes = i64::try_from(item_bytes(key, value, total)?).map_err(|_| Error::Invalid)?;
    let own = key.kind == kind::EXTENT && ExtentRecord::decode(value, total)?.birth() == own_birth;
    let usage = Usage {
        inodes: i64::from(key.kind == kind::INODE),
        bytes,
        own: if own { bytes } else { 0 },
    };
    Ok((usage, fs_leaf_refs(key, value, total)?))
}

/// How much a layer's counters change.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    inodes: i64,
    bytes: i64,
    own: i64,
}

/// What a [`Volume`] may do: everything, or only what concerns one layer, so that volumes of
/// different layers can run at once over a shared store and map (the kernel's concurrent
/// layers; see `Documentation/design.md`, Locking).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole filesystem: the only volume at the time.
    Whole,
    /// Changes and reads of read-write layer `id` (none if 0) and reads of read-only layers.
    /// Other volumes may change other read-write layers meanwhile, so this one neither changes
    /// the layer tree nor the superblock (a changed record of layer `id` stays in the layer
    /// cache for the caller to keep), nor reads another read-write layer (`Busy`): its record
    /// may be out of date and its tree changing.
    Layer(u64),
}

/// A volume's state besides its store and map, for a caller that keeps the parts apart between
/// operations (see [`Volume::from_parts`]).
#[derive(Clone, Debug)]
pub struct VolumeState {
    /// See [`Volume::superblock`]: the committed superblock, changed by the running transaction.
    pub sb: Superblock,
    /// Whether the running transaction has changes.
    pub dirty: bool,
    /// Whether the running transaction was aborted.
    pub aborted: bool,
    /// The cached layer record, and whether the layer tree holds an older version of it.
    pub layer_cache: Option<(LayerInfo, bool)>,
    /// See [`Volume::map_epoch`].
    pub epoch: u64,
    /// Entries of the reclaim queue, once counted.
    pub reclaim_queued: Option<u64>,
    /// Whether a commit's device part is under way.
    pub committing: bool,
    /// Whether changes wait for it (a commit that was not split).
    pub changes_wait: bool,
}

/// The inodes whose items a volume changed since its state was last set (see
/// [`Volume::touched`]): a few, or many.
#[derive(Clone, Copy, Debug, Default)]
pub struct Touched {
    ids: [u64; TOUCHED_IDS],
    n: usize,
    many: bool,
}

/// Inode numbers a [`Touched`] lists before it only says "many".
const TOUCHED_IDS: usize = 8;

/// Tree updates one item insert may make: the layer's tree and its record in the layer tree.
pub const INSERT_TREES: u64 = 2;

impl Touched {
    fn note(&mut self, id: u64) {
        if self.many || self.ids.iter().take(self.n).any(|&i| i == id) {
            return;
        }
        match self.ids.get_mut(self.n) {
            Some(slot) => {
                *slot = id;
                self.n = self.n.saturating_add(1);
            }
            None => self.many = true,
        }
    }

    /// The inode numbers, unless there were too many to list (`None`).
    pub fn ids(&self) -> Option<&[u64]> {
        (!self.many).then(|| self.ids.get(..self.n).unwrap_or(&[]))
    }

    /// Whether any inode was changed.
    pub fn any(&self) -> bool {
        self.many || self.n > 0
    }
}

/// An open filesystem and its running transaction.
pub struct Volume<S: Device, M: MapAccess<S> = RefMap> {
    store: S,
    /// The committed superblock, updated in memory by the running transaction.
    pub(super) sb: Superblock,
    map: M,
    scope: Scope,
    dirty: bool,
    aborted: bool,
    /// The layer record last read or changed, and whether the layer tree still holds an older
    /// version of it. Nearly every change updates its layer's counters; keeping the record here
    /// until the transaction commits (or another layer's record is needed) saves a layer-tree
    /// update per change.
    pub(super) layer_cache: Option<(LayerInfo, bool)>,
    /// Moves on at every [`Self::mutate`]: facts read from the trees and kept in memory stay
    /// true while it does not change.
    epoch: u64,
    /// Set while [`Self::mutate_keeping_epoch`] runs: the steps inside keep the epoch too.
    epoch_kept: bool,
    /// Entries in the reclaim queue (see [`super::reclaim`]), once counted: a volume is
    /// opened without reading the layer tree, so that fsck can open a damaged one.
    pub(super) reclaim_queued: Option<u64>,
    /// Between [`Self::commit_begin`] and [`Self::commit_end`]: no other commit may start.
    committing: bool,
    /// Also no change may be made (a commit that was not split).
    changes_wait: bool,
    /// Inodes whose items changed since the state was last set.
    touched: Touched,
}

/// Empties the in-place cache a store keeps for its volume: a new volume starts its epochs again,
/// so what an earlier one on the same store knew must go.
fn forget_in_place<S: BlockStore>(store: &mut S) {
    if let Some(t) = store.in_place_table() {
        t.fill(0);
    }
}

impl<S: Device> Volume<S> {
    /// Writes a fresh filesystem on `store` and commits it: the map, an empty layer tree, and,
    /// if `first_layer` is given, one empty read-write layer with that name. `sb` comes from
    /// [`Superblock::new`] (with label and root attributes set as wanted).
    pub fn format(
        mut store: S,
        mut sb: Superblock,
        first_layer: Option<&[u8]>,
        now: Timespec,
    ) -> Result<Self, Error> {
        if sb.total_blocks > store.total_blocks() || sb.total_blocks < superblock::MIN_BLOCKS {
            return Err(Error::Invalid);
        }
        sb.generation = 0;
        sb.layer_root = 0;
        sb.layer_count = 0;
        sb.next_layer_id = 1;
        let map = RefMap::format(
            &mut store,
            &MapParams {
                root: 0,
                level: 0,
                free: 0,
                reserve: sb.reserve_blocks,
                fsid: sb.fsid(),
                total_blocks: sb.total_blocks,
                generation: 1,
            },
            Superblock::FIXED_BLOCKS,
        )?;
        forget_in_place(&mut store);
        let mut vol = Self {
            store,
            sb,
            map,
            dirty: true,
            aborted: false,
            layer_cache: None,
            epoch: 1,
            epoch_kept: false,
            reclaim_queued: Some(0),
            committing: false,
            changes_wait: false,
            scope: Scope::Whole,
            touched: Touched::default(),
        };
        if let Some(name) = first_layer {
            vol.create_layer(name, None, now)?;
        }
        // Generation 1 goes to copy 1; the same state is then committed again as generation 2
        // into copy 0, so both copies are valid from the start.
        vol.commit(now)?;
        vol.dirty = true;
        vol.commit(now)?;
        Ok(vol)
    }

    /// Opens the filesystem on `store` at its last commit. Also returns the error of the other
    /// superblock copy if it is damaged (redundancy is lost; worth a warning).
    // Not inlined: the kernel opens a volume deep in a mount, on a 16 KiB stack, and the
    // caller's frame should not carry this one's locals.
    #[inline(never)]
    pub fn open(mut store: S) -> Result<(Self, Option<(u64, FormatError)>), Error> {
        let mut buf = store.alloc_buf()?;
        let device = store.total_blocks();
        store.read(0, &mut buf)?;
        let c0 = Superblock::decode(buf.as_ref(), device);
        store.read(1, &mut buf)?;
        let c1 = Superblock::decode(buf.as_ref(), device);
        let sel = superblock::select(c0, c1)?;
        let sb = sel.sb;
        let map = RefMap::open(
            &mut store,
            &MapParams {
                root: sb.map_root,
                level: sb.map_level,
                free: sb.free_blocks,
                reserve: sb.reserve_blocks,
                fsid: sb.fsid(),
                total_blocks: sb.total_blocks,
                generation: sb.generation.saturating_add(1),
            },
        )?;
        forget_in_place(&mut store);
        let vol = Self {
            store,
            sb,
            map,
            dirty: false,
            aborted: false,
            layer_cache: None,
            epoch: 1,
            epoch_kept: false,
            reclaim_queued: None,
            committing: false,
            changes_wait: false,
            scope: Scope::Whole,
            touched: Touched::default(),
        };
        Ok((vol, sel.other_error))
    }

    /// The reference-count map.
    pub fn map(&self) -> &RefMap {
        &self.map
    }
}

impl<S: Device, M: MapAccess<S>> Volume<S, M> {
    /// A volume made of parts kept apart since [`Self::into_parts`], limited to `scope`.
    pub fn from_parts(store: S, map: M, state: VolumeState, scope: Scope) -> Self {
        Self {
            store,
            sb: state.sb,
            map,
            scope,
            dirty: state.dirty,
            aborted: state.aborted,
            layer_cache: state.layer_cache,
            epoch: state.epoch,
            epoch_kept: false,
            reclaim_queued: state.reclaim_queued,
            committing: state.committing,
            changes_wait: state.changes_wait,
            touched: Touched::default(),
        }
    }

    /// Takes the volume apart: its store, its map and the rest.
    pub fn into_parts(self) -> (S, M, VolumeState) {
        let state = VolumeState {
            sb: self.sb,
            dirty: self.dirty,
            aborted: self.aborted,
            layer_cache: self.layer_cache,
            epoch: self.epoch,
            reclaim_queued: self.reclaim_queued,
            committing: self.committing,
            changes_wait: self.changes_wait,
        };
        (self.store, self.map, state)
    }

    /// Takes the volume's state out (for a caller that keeps it apart between operations,
    /// see [`Self::set_state`]); the volume refuses everything until it gets one again.
    pub fn take_state(&mut self) -> VolumeState {
        let state = VolumeState {
            sb: self.sb.clone(),
            dirty: self.dirty,
            aborted: self.aborted,
            layer_cache: self.layer_cache.take(),
            epoch: self.epoch,
            reclaim_queued: self.reclaim_queued,
            committing: self.committing,
            changes_wait: self.changes_wait,
        };
        self.aborted = true;
        state
    }

    /// Makes this volume one of `scope` with `state`, over the same store and map.
    pub fn set_state(&mut self, state: VolumeState, scope: Scope) {
        self.sb = state.sb;
        self.dirty = state.dirty;
        self.aborted = state.aborted;
        self.layer_cache = state.layer_cache;
        self.epoch = state.epoch;
        self.epoch_kept = false;
        self.reclaim_queued = state.reclaim_queued;
        self.committing = state.committing;
        self.changes_wait = state.changes_wait;
        self.scope = scope;
        self.touched = Touched::default();
    }

    /// The inodes (of the layers this volume changed) whose items changed since the volume was
    /// made or its state last set: what an `fsync` of one of them must see committed.
    pub fn touched(&self) -> Touched {
        self.touched
    }

    /// The generation the running transaction will commit as.
    pub fn running_generation(&self) -> u64 {
        self.txn_generation()
    }

    /// The map, as this volume reaches it.
    pub fn map_mut(&mut self) -> &mut M {
        &mut self.map
    }

    /// What this volume may do.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Fails with `Busy` unless this volume is the whole filesystem's: for a step that changes
    /// the layer tree or the superblock, or reads every layer.
    pub(super) fn whole(&self) -> Result<(), Error> {
        match self.scope {
            Scope::Whole => Ok(()),
            Scope::Layer(_) => Err(Error::Busy),
        }
    }

    /// The superblock as the next commit will write it (free count of the running transaction).
    pub fn superblock(&self) -> Superblock {
        let mut sb = self.sb.clone();
        let (free, root) = self.map.free_and_root();
        sb.free_blocks = free;
        sb.map_root = root;
        sb
    }

    /// Blocks freed in the running transaction (free once it commits).
    pub fn pinned(&mut self) -> u64 {
        self.map.with(&mut self.store, |m, _| m.pinned)
    }

    /// The device.
    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the device back (to reopen it after an abort, for example).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Whether the running transaction has changes.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether the running transaction was aborted.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// See `epoch`; also refuses an aborted transaction, for whoever trusts facts kept from it.
    pub(super) fn epoch(&self) -> Result<u64, Error> {
        self.live()?;
        Ok(self.epoch)
    }

    /// The epoch of the in-place cache's answers (see [`super::data::InPlaceCache`]), for a
    /// caller that keeps a write mapping of its own: it holds while this stays the same. `None`
    /// when the volume takes no changes (aborted): no mapping kept then holds.
    pub fn map_epoch(&self) -> Option<u64> {
        self.epoch().ok()
    }

    fn txn_generation(&self) -> u64 {
        self.sb.generation.saturating_add(1)
    }

    pub(super) fn txn(&mut self, tree: u8) -> Txn<'_, S, M> {
        let generation = self.sb.generation.saturating_add(1);
        let fsid = self.sb.fsid();
        Txn {
            store: &mut self.store,
            alloc: &mut self.map,
            generation,
            fsid,
            tree,
            leaf_refs: if tree == tree_kind::FS {
                Some(fs_leaf_refs)
            } else {
                None
            },
        }
    }

    pub(super) fn live(&self) -> Result<(), Error> {
        if self.aborted {
            return Err(Error::Aborted);
        }
        Ok(())
    }

    /// Runs the changing part of an operation: any error aborts the transaction, so an operation
    /// made of several changes (a namespace operation, for example) never commits half done.
    pub(super) fn mutate<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if !self.epoch_kept {
            self.epoch = self.epoch.wrapping_add(1);
        }
        self.run_change(f)
    }

    /// [`Self::mutate`] for a change that only rewrites inode records (timestamps, owner,
    /// mode, a larger size), which every buffered write makes: it keeps the epoch, so the
    /// in-place cache survives it. Copying tree nodes on the way copies every item unchanged
    /// (so extents kept for reads stay true), and can only make items exclusive to this layer
    /// or share data that a shared node already shared, while in-place runs are never behind a
    /// shared node: no block the cache names changes place, owner or count.
    pub(super) fn mutate_keeping_epoch<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let kept = core::mem::replace(&mut self.epoch_kept, true);
        let r = self.run_change(f);
        self.epoch_kept = kept;
        r
    }

    fn run_change<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, Error>) -> Result<R, Error> {
        self.changeable()?;
        self.dirty = true;
        let r = f(self);
        self.abort_on_error(r)
    }

    /// Passes `r` on, aborting the transaction if it is an error: for a change that failed
    /// half done.
    pub(super) fn abort_on_error<R>(&mut self, r: Result<R, Error>) -> Result<R, Error> {
        if r.is_err() {
            self.aborted = true;
        }
        r
    }

    /// The key of the name hash (directory entries, xattrs, layer names).
    pub(super) fn hash_key(&self) -> HashKey {
        HashKey(self.sb.hash_key[0], self.sb.hash_key[1])
    }

    /// Fails with `NoSpace` unless the blocks `trees` tree updates may need are free.
    /// Operations that add data keep out of the metadata reserve; removals may use it.
    pub(super) fn admit(&mut self, trees: u64, grows: bool) -> Result<(), Error> {
        self.map.admit(trees, grows)
    }

    /// Fails with `NoSpace` unless `trees` tree updates that add data fit: operations made of
    /// several updates check their total before the first, so a refused one changes nothing.
    pub(super) fn admit_trees(&mut self, trees: u64) -> Result<(), Error> {
        self.live()?;
        self.admit(trees, true)
    }

    /// [`Self::admit_trees`] for an operation that adds no data (converting written data into
    /// place, dropping data): like a removal, it may use the metadata reserve.
    pub(super) fn admit_trees_in_reserve(&mut self, trees: u64) -> Result<(), Error> {
        self.live()?;
        self.admit(trees, false)
    }

    /// Admits up to `max` data blocks for an operation that makes `trees` (admitted) tree
    /// updates after allocating them ([`MapAccess::admit_data`]); `NoSpace` if none fit.
    pub(super) fn admit_data(&mut self, trees: u64, max: u64) -> Result<u64, Error> {
        self.live()?;
        self.map.admit_data(trees, max)
    }

    /// Data blocks an operation that makes `trees` tree updates after allocating may take: the
    /// free blocks above the metadata reserve and the space [`Self::admit_trees`] keeps for the
    /// updates.
    pub fn data_room(&mut self, trees: u64) -> u64 {
        self.map.room(trees)
    }

    /// Commits the running transaction (nothing happens if it has no changes). Nothing else runs
    /// meanwhile, so the commit is never split (see [`Self::commit_begin`]): every pin is free
    /// when it returns.
    pub fn commit(&mut self, now: Timespec) -> Result<(), Error> {
        let Some(pending) = self.begin(now, false)? else {
            return Ok(());
        };
        let r = self.commit_write(&pending);
        self.commit_end(pending, r)
    }

    /// Commits even without changes: the committed state again, as the next generation, into
    /// the other superblock copy, so that both copies describe it. fsck's repair of a damaged
    /// copy uses it: a mount then starts from the state the damaged copy fell back to, through
    /// the same commit path as every other commit.
    pub fn recommit(&mut self, now: Timespec) -> Result<(), Error> {
        self.live()?;
        self.dirty = true;
        self.commit(now)
    }

    /// The device part of a commit, as [`Self::commit`] runs it through the store.
    fn commit_write(&mut self, pending: &PendingCommit) -> Result<(), Error> {
        self.store.flush()?;
        let mut buf = self.store.alloc_buf()?;
        pending.encode(buf.as_mut())?;
        self.store.write(pending.slot(), &buf)?;
        self.store.flush()
    }

    /// The first part of a commit, split so that a caller can run the device part without
    /// holding whatever serialises the volume: ends the running transaction's changes (the
    /// cached layer record written, pins freed, every node written back to the device) and
    /// returns the superblock to write; `None` without changes. The caller then flushes the
    /// device, writes [`PendingCommit::encode`] to [`PendingCommit::slot`], flushes again, and
    /// passes the outcome to [`Self::commit_end`]. A second commit meanwhile is `Busy`.
    ///
    /// Normally the next transaction starts right here and takes changes while the device part
    /// runs ([`PendingCommit::is_split`]): the blocks this transaction freed stay pinned in it
    /// until [`Self::commit_end`], since the last commit still uses them until the new
    /// superblock is durable ([`RefMap::split_commit`]). With too little free space for that
    /// the commit is not split: pins become free blocks at once, and every change fails with
    /// `Busy` until `commit_end`, while reads see the state being committed.
    pub fn commit_begin(&mut self, now: Timespec) -> Result<Option<PendingCommit>, Error> {
        self.begin(now, true)
    }

    /// [`Self::commit_begin`], split only if `split` allows.
    fn begin(&mut self, now: Timespec, split: bool) -> Result<Option<PendingCommit>, Error> {
        self.changeable()?;
        self.whole()?;
        if self.committing {
            return Err(Error::Busy);
        }
        if !self.dirty {
            return Ok(None);
        }
        let r = (|| {
            self.flush_layer()?;
            let kept = if split {
                self.map.with(&mut self.store, |m, s| m.split_commit(s))?
            } else {
                None
            };
            let (map, split) = match kept {
                Some(m) => (m, true),
                None => {
                    let m = self.map.with(&mut self.store, |m, s| {
                        m.unpin_all(s).map(|()| MapCommit {
                            root: m.root,
                            free: m.free,
                        })
                    })?;
                    (m, false)
                }
            };
            self.store.write_back()?;
            let mut sb = self.sb.clone();
            sb.free_blocks = map.free;
            sb.map_root = map.root;
            sb.generation = self.txn_generation();
            sb.commit_time = u64::try_from(now.sec).unwrap_or(0);
            Ok((sb, split))
        })();
        let (sb, split) = self.abort_on_error(r)?;
        self.committing = true;
        self.changes_wait = !split;
        if split {
            // The next transaction, from the state being committed.
            self.sb = sb.clone();
            self.dirty = false;
        }
        Ok(Some(PendingCommit { sb, split }))
    }

    /// Ends a commit [`Self::commit_begin`] started, with the outcome of its device part: the new
    /// superblock is the committed one (the blocks its transaction freed are free now), or (the
    /// device failed) the transaction is aborted and the last commit stays on the medium.
    pub fn commit_end(
        &mut self,
        pending: PendingCommit,
        written: Result<(), Error>,
    ) -> Result<(), Error> {
        self.committing = false;
        self.changes_wait = false;
        self.abort_on_error(written)?;
        if pending.split {
            let r = self.map.with(&mut self.store, |m, s| m.commit_done(s));
            return self.abort_on_error(r);
        }
        self.sb = pending.sb;
        let generation = self.sb.generation.saturating_add(1);
        self.map
            .with(&mut self.store, |m, _| m.generation = generation);
        self.dirty = false;
        Ok(())
    }

    /// Sets the volume label (UTF-8, at most `LABEL_SIZE - 1` bytes, no NUL: `Invalid`
    /// otherwise), written with the running transaction's commit.
    pub fn set_label(&mut self, label: &str) -> Result<(), Error> {
        self.changeable()?;
        self.whole()?;
        let mut sb = self.sb.clone();
        sb.set_label(label).map_err(|_| Error::Invalid)?;
        self.sb.label = sb.label;
        self.dirty = true;
        Ok(())
    }

    /// Ends the running transaction without committing it (the filesystem is shut down): every
    /// later operation fails with [`Error::Aborted`], so nothing more is written, and the device
    /// keeps the last commit for the next open.
    pub fn shut_down(&mut self) {
        self.aborted = true;
    }

    /// Whether a commit's device part is under way ([`Self::commit_begin`]).
    pub fn is_committing(&self) -> bool {
        self.committing
    }

    /// Whether changes wait for the commit under way (it was not split).
    pub fn changes_wait(&self) -> bool {
        self.changes_wait
    }

    /// Refuses a change while a commit's device part is under way.
    pub(super) fn changeable(&self) -> Result<(), Error> {
        self.live()?;
        if self.changes_wait {
            return Err(Error::Busy);
        }
        Ok(())
    }

    // ---- items of a layer's tree ----

    /// Calls `f` with the value of `key` in layer `layer`.
    pub fn lookup<R>(
        &mut self,
        layer: u64,
        key: &Key,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let l = self.layer(layer)?;
        self.txn(tree_kind::FS).lookup(l.root, key, f)
    }

    /// The first item of layer `layer` with a key of at least `from`.
    pub fn next<R>(
        &mut self,
        layer: u64,
        from: &Key,
        f: impl FnOnce(&Key, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let l = self.layer(layer)?;
        self.txn(tree_kind::FS).next(l.root, from, f)
    }

    /// Calls `f` with the items of layer `layer` from the first key of at least `from` to the
    /// end of its leaf, while `f` returns `true`; see [`Txn::scan_leaf`]. Returns the key to go
    /// on from, `None` when done.
    pub(super) fn scan_leaf(
        &mut self,
        layer: u64,
        from: &Key,
        f: &mut ItemVisitor<'_>,
    ) -> Result<Option<Key>, Error> {
        let l = self.layer(layer)?;
        self.txn(tree_kind::FS).scan_leaf(l.root, from, f)
    }

    /// The items of layer `layer`, read through the volume.
    pub(super) fn items(&mut self, layer: u64) -> InLayer<'_, S, M> {
        InLayer { vol: self, layer }
    }

    fn writable_layer(&mut self, layer: u64) -> Result<LayerInfo, Error> {
        let l = self.layer(layer)?;
        if l.is_read_only() {
            return Err(Error::ReadOnly);
        }
        Ok(l)
    }

    fn apply_usage(l: &mut LayerInfo, add: Usage, sub: Usage) -> Result<(), Error> {
        let bad = Error::Corrupt(FormatError::BadField("layer usage"));
        l.inodes_used = l
            .inodes_used
            .checked_add_signed(add.inodes.checked_sub(sub.inodes).ok_or(bad)?)
            .ok_or(bad)?;
        l.bytes_used = l
            .bytes_used
            .checked_add_signed(add.bytes.checked_sub(sub.bytes).ok_or(bad)?)
            .ok_or(bad)?;
        l.own_bytes = l
            .own_bytes
            .checked_add_signed(add.own.checked_sub(sub.own).ok_or(bad)?)
            .ok_or(bad)?;
        Ok(())
    }

    /// Inserts or replaces an item of a read-write layer. An item that references blocks (a file
    /// extent) hands the caller's reference to the tree; a replaced item's references are
    /// dropped. `next_ino` moves past the key's inode number.
    pub fn insert(&mut self, layer: u64, key: &Key, value: &[u8]) -> Result<(), Error> {
        self.insert_item(layer, key, value, Some(true))
    }

    /// [`Self::insert`] of an item whose space the caller admitted beforehand, and holds:
    /// [`INSERT_TREES`] tree updates. It admits nothing itself.
    pub(super) fn insert_admitted(
        &mut self,
        layer: u64,
        key: &Key,
        value: &[u8],
    ) -> Result<(), Error> {
        self.insert_item(layer, key, value, None)
    }

    /// [`Self::insert`] as a step of an operation that adds no data (converting or dropping file
    /// data), admitted with [`Self::admit_trees_in_reserve`]: it may use the metadata reserve.
    pub(super) fn insert_in_reserve(
        &mut self,
        layer: u64,
        key: &Key,
        value: &[u8],
    ) -> Result<(), Error> {
        self.insert_item(layer, key, value, Some(false))
    }

    /// `admit`: `Some(grows)` admits [`INSERT_TREES`] tree updates (`grows`: keeping the
    /// metadata reserve), `None` leaves them to the caller.
    fn insert_item(
        &mut self,
        layer: u64,
        key: &Key,
        value: &[u8],
        admit: Option<bool>,
    ) -> Result<(), Error> {
        let mut l = self.writable_layer(layer)?;
        let total = self.sb.total_blocks;
        let (add, _) = item_usage(key, value, total, l.own_birth)?;
        if let Some(grows) = admit {
            self.admit(INSERT_TREES, grows)?;
        }
        if !matches!(key.kind, kind::EXTENT | kind::COW | kind::XATTR) {
            // What such an item accounts for depends on its key alone: whether the insert
            // replaced one is all the accounting needs, and the tree walk tells that.
            return self.mutate(|v| {
                v.touched.note(key.id);
                let (root, replaced) = v.txn(tree_kind::FS).insert_replacing(l.root, key, value)?;
                l.root = root;
                let sub = if replaced { add } else { Usage::default() };
                Self::account_item(&mut l, key, add, sub)?;
                v.put_layer(&l)
            });
        }
        let birth = l.own_birth;
        let old = self
            .txn(tree_kind::FS)
            .lookup(l.root, key, |v| item_usage(key, v, total, birth))?;
        let (sub, old_refs) = old.transpose()?.unwrap_or_default();
        self.mutate(|v| {
            v.touched.note(key.id);
            l.root = v.txn(tree_kind::FS).insert(l.root, key, value)?;
            if let Some((b, n)) = old_refs {
                v.map.with(&mut v.store, |m, s| m.dec_range(s, b, n))?;
            }
            Self::account_item(&mut l, key, add, sub)?;
            v.put_layer(&l)
        })
    }

    /// Counts an inserted item (`add`) in place of the one it replaced (`sub`).
    fn account_item(l: &mut LayerInfo, key: &Key, add: Usage, sub: Usage) -> Result<(), Error> {
        Self::apply_usage(l, add, sub)?;
        // Every key of a layer tree belongs to an inode: keep `next_ino` past all of them.
        if key.id >= l.next_ino {
            l.next_ino = key.id.checked_add(1).ok_or(Error::Invalid)?;
        }
        Ok(())
    }

    /// Removes an item of a read-write layer, dropping the blocks it references. Returns whether
    /// it was there.
    pub fn remove(&mut self, layer: u64, key: &Key) -> Result<bool, Error> {
        let l = self.writable_layer(layer)?;
        self.admit(2, false)?;
        let total = self.sb.total_blocks;
        let birth = l.own_birth;
        let old = self
            .txn(tree_kind::FS)
            .lookup(l.root, key, |v| item_usage(key, v, total, birth))?;
        let Some(old) = old else { return Ok(false) };
        let (sub, refs) = old?;
        self.remove_seen(layer, key, sub, refs).map(|()| true)
    }

    /// [`Self::remove`] for an item this operation has just found, without looking it up again.
    /// A key that is not there is damage (`Corrupt`), which aborts the operation's
    /// [`Self::mutate`].
    pub(super) fn remove_found(&mut self, layer: u64, key: &Key) -> Result<(), Error> {
        if matches!(key.kind, kind::EXTENT | kind::COW | kind::XATTR) {
            // What these account for is in their values.
            if !self.remove(layer, key)? {
                return Err(Error::Corrupt(FormatError::BadField("key vanished")));
            }
            return Ok(());
        }
        // Neither inodes' nor names' items hold data: no layer's birth matters.
        let (sub, refs) = item_usage(key, &[], self.sb.total_blocks, 0)?;
        self.remove_seen(layer, key, sub, refs)
    }

    /// Removes the item `key`, which is in layer `layer` and accounts for `sub` and references
    /// the blocks `refs`.
    fn remove_seen(
        &mut self,
        layer: u64,
        key: &Key,
        sub: Usage,
        refs: Option<(u64, u64)>,
    ) -> Result<(), Error> {
        let mut l = self.writable_layer(layer)?;
        self.admit(2, false)?;
        self.mutate(|v| {
            v.touched.note(key.id);
            l.root = v.txn(tree_kind::FS).remove_present(l.root, key)?;
            if let Some((b, n)) = refs {
                v.map.with(&mut v.store, |m, s| m.dec_range(s, b, n))?;
            }
            Self::apply_usage(&mut l, Usage::default(), sub)?;
            v.put_layer(&l)
        })
    }

    /// Removes every item of object `id` (an inode number) from a read-write layer, dropping
    /// the blocks they reference: one descent finds a leaf's worth of them.
    pub(super) fn remove_all_of(&mut self, layer: u64, id: u64) -> Result<(), Error> {
        /// Items taken from a leaf per descent (about half a KiB of stack).
        const BATCH: usize = 8;
        let total = self.sb.total_blocks;
        let birth = self.layer(layer)?.own_birth;
        let mut from = Key::new(id, 0, 0);
        loop {
            let mut batch = [(Key::MIN, Usage::default(), None); BATCH];
            let mut n = 0;
            let mut full = false;
            let rest = self.scan_leaf(layer, &from, &mut |k, v| {
                if k.id != id {
                    return Ok(false);
                }
                let Some(slot) = batch.get_mut(n) else {
                    full = true;
                    return Ok(false);
                };
                let (usage, refs) = item_usage(k, v, total, birth)?;
                *slot = (*k, usage, refs);
                n = n.saturating_add(1);
                Ok(true)
            })?;
            let mut last = None;
            for (key, sub, refs) in batch.iter().take(n) {
                self.remove_seen(layer, key, *sub, *refs)?;
                last = Some(*key);
            }
            from = match (full, last, rest) {
                (true, Some(k), _) => match key_after(&k) {
                    Some(next) => next,
                    // The largest key: nothing can follow it.
                    None => return Ok(()),
                },
                (false, _, Some(k)) => k,
                _ => return Ok(()),
            };
        }
    }

    /// Takes a new inode number in a read-write layer.
    pub(super) fn alloc_ino(&mut self, layer: u64) -> Result<u64, Error> {
        let mut l = self.writable_layer(layer)?;
        self.admit(1, true)?;
        let ino = l.next_ino;
        if ino >= super::INO_LIMIT {
            return Err(Error::NoSpace);
        }
        l.next_ino = ino.checked_add(1).ok_or(Error::NoSpace)?;
        self.mutate(|v| v.put_layer(&l))?;
        Ok(ino)
    }

    /// Takes a new `data_id` for new or changed file contents.
    pub(super) fn alloc_data_id(&mut self) -> Result<u64, Error> {
        self.changeable()?;
        let id = self.map.alloc_data_id(&mut self.sb.next_data_id)?;
        self.dirty = true;
        Ok(id)
    }

    /// Gives regular file `ino` of read-write layer `layer` a `data_id` of its own, before a
    /// change of its data: no other inode record holds the new one, so no other layer's file
    /// is taken to have the same contents any more. Returns the new id.
    pub fn renew_data_id(&mut self, layer: u64, ino: u64) -> Result<u64, Error> {
        self.writable_layer(layer)?;
        let mut rec = self.inode(layer, ino)?;
        if !rec.is_regular() {
            return Err(Error::Invalid);
        }
        self.mutate_keeping_epoch(|v| {
            rec.data_id = v.alloc_data_id()?;
            v.put_inode(layer, ino, &rec)?;
            Ok(rec.data_id)
        })
    }

    /// The oldest frozen layer, among `layer` and its ancestors up to the first one where
    /// regular file `ino` is missing or has another `data_id`, in which `ino` has `data_id`:
    /// the layer whose copy of the contents never changes and outlives every clone of it.
    /// `None` when no such layer is frozen (the contents belong to read-write layers only), or
    /// `data_id` is 0 (contents without an identity).
    pub fn share_source(
        &mut self,
        layer: u64,
        ino: u64,
        data_id: u64,
    ) -> Result<Option<u64>, Error> {
        if data_id == 0 {
            return Ok(None);
        }
        let mut source = None;
        let mut at = layer;
        // Layer depth is bounded by the layer count; so is this walk.
        for _ in 0..=self.sb.layer_count {
            let l = self.layer(at)?;
            match self.inode(at, ino) {
                Ok(rec) if rec.data_id == data_id && rec.is_regular() => {}
                Ok(_) | Err(Error::NotFound) => break,
                Err(e) => return Err(e),
            }
            if l.is_read_only() {
                source = Some(at);
            }
            if l.parent == 0 {
                break;
            }
            at = l.parent;
        }
        Ok(source)
    }

    /// Allocates up to `max` consecutive data blocks (at least one). They must end up in an
    /// extent item of this transaction, or be released with [`Self::release`]. Fails cleanly
    /// with `NoSpace` when only the metadata reserve is left.
    pub fn alloc_data(&mut self, max: u32) -> Result<(u64, u32), Error> {
        self.live()?;
        // Admitted data has its blocks kept for it; room beside other operations' reservations
        // may be gone meanwhile without that mattering.
        if !self.map.data_admitted() && self.map.room(0) == 0 {
            return Err(Error::NoSpace);
        }
        self.mutate(|v| v.map.alloc_data(&mut v.store, max))
    }

    /// Drops one reference from each of `len` blocks.
    pub fn release(&mut self, blocknr: u64, len: u64) -> Result<(), Error> {
        self.mutate(|v| {
            v.map
                .with(&mut v.store, |m, s| m.dec_range(s, blocknr, len))
        })
    }

    /// Adds one reference to each of `len` blocks in use: a tree item about to take a share of
    /// blocks another item holds (an extent shortened in place keeps its head this way).
    pub fn add_block_refs(&mut self, blocknr: u64, len: u64) -> Result<(), Error> {
        self.mutate(|v| {
            v.map
                .with(&mut v.store, |m, s| m.inc_range(s, blocknr, len))
        })
    }

    /// Reference count of a block.
    pub fn refcount(&mut self, blocknr: u64) -> Result<u32, Error> {
        self.live()?;
        self.map
            .with(&mut self.store, |m, s| m.refcount(s, blocknr))
    }

    /// Leading blocks of `[start, start + lim)` whose reference count is 1 (`one`) or is not.
    pub(super) fn refcount_run(&mut self, start: u64, lim: u64, one: bool) -> Result<u64, Error> {
        self.live()?;
        self.map
            .with(&mut self.store, |m, s| m.count_run(s, start, lim, one))
    }

    /// Calls `f` for each item that differs between layer `layer` and its parent (or an empty
    /// tree if it has none), from key `from` on; `f` returns `Ok(false)` to stop. Shared subtrees
    /// are skipped: the cost follows the changes, not the layer size.
    pub fn diff(
        &mut self,
        layer: u64,
        from: Key,
        f: &mut dyn FnMut(Change<'_>) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let l = self.layer(layer)?;
        let parent_root = match l.parent {
            0 => 0,
            p => self.layer(p)?.root,
        };
        self.txn(tree_kind::FS).diff(parent_root, l.root, from, f)
    }

    /// Runs `f` on a transaction over layer `layer`'s tree, for read-only walks (fsck, dump).
    pub fn with_tree<R>(&mut self, f: impl FnOnce(&mut Txn<'_, S, M>) -> R) -> R {
        f(&mut self.txn(tree_kind::FS))
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The mounted volume, shared by operations of different layers at once.
//!
//! The format core's [`Volume`] is one thread's view of the filesystem. The mount keeps its
//! parts apart ([`Shared`]) and gives each operation a volume made of them for as long as it
//! holds a [`VolGuard`]: limited to one read-write layer ([`Scope::Layer`]), or the whole
//! filesystem ([`Scope::Whole`]). Locks, outermost first (after the VFS's and the layer uses'):
//!
//! 1. `commit`: one commit at a time, held across its device part; a change waiting for a
//!    commit that could not be split waits on it. Never taken while holding a lock below.
//! 2. `core`, a reader-writer semaphore around the superblock and the commit state: read-held
//!    by layer-scoped volumes (any number at once), write-held by a whole volume (alone).
//! 3. The layer slot of a layer-scoped volume: one of [`LAYER_SLOTS`] mutexes, chosen by layer
//!    id, so operations of one layer run one at a time and two layers whose ids fall in
//!    different slots run at once. A slot keeps the changed layer records of its layers (only
//!    a whole volume writes the layer tree) and their in-place cache.
//! 4. `map`: the reference-count map, for each allocation and count change (admission takes
//!    no lock: see [`Space`]).
//! 5. `shards`: the node cache and verified table, in [`STORE_SHARDS`] mutexes by block, one
//!    taken for each block read or written; never across a device read (see [`read_through`]).
//!    A write copies into the device's page cache under it.
//!
//! Why layers can change at once: a layer-scoped volume changes only its own layer's tree
//! (every other read-write layer is refused, `Busy`, by the format core) and never the layer
//! tree or the superblock. Its tree's nodes are its own once copied; a node it shares with
//! another tree (a frozen parent's, say) has a count above one and is copied before any change,
//! and only a whole volume makes a tree share nodes (clone, snapshot). Counts change under the
//! map lock, each block's bytes under the store lock, and admission reserves the space an
//! operation may take in the map (see [`MapHandle`]), so two operations cannot both be admitted
//! against the same free blocks.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, MutexGuard};

use crate::format::data::IN_PLACE_TABLE;
use crate::format::layers::LayerInfo;
use crate::format::refmap::{take_data_id, MapAccess, MapStore, Purpose, RefMap};
use crate::format::superblock::Superblock;
use crate::format::tree::{Allocator, BlockStore, Error as CoreError};
use crate::format::volume::{Device, Scope, Volume, VolumeState, INSERT_TREES};
use crate::vfs::{new_rwsem, BlockDevice, NoFsScope, ReadGuard, RwSem, WriteGuard};

use super::store::{
    copy_block, read_device, read_through, shard_of, shard_reads, BdevStore, BufPool, KBlock,
    Shards, StoreShard, STORE_SHARDS,
};

/// A thread's volume over the mount's shared parts.
pub(crate) type Vol<'a> = Volume<StoreHandle<'a>, MapHandle<'a>>;

/// Layer slots per mount: layers whose ids differ modulo this change at once.
pub(crate) const LAYER_SLOTS: usize = 64;

/// The superblock and commit state: what a whole volume changes and a layer-scoped one reads.
pub(crate) struct Core {
    sb: Superblock,
    reclaim_queued: Option<u64>,
    committing: bool,
    changes_wait: bool,
}

/// The reference-count map and what goes with it.
pub(crate) struct MapState {
    map: RefMap,
    /// The map's table of blocks with count 1 ([`BlockStore::single_table`]).
    single: KVec<u64>,
    /// The next `data_id` (the superblock's `next_data_id`).
    next_data_id: u64,
}

/// What a layer slot keeps between operations.
#[derive(Default)]
pub(crate) struct SlotState {
    /// Changed (`true`) or clean records of the slot's layers not yet in the layer tree.
    records: KVec<(LayerInfo, bool)>,
    /// The slot's in-place cache ([`BlockStore::in_place_table`]), allocated at first use.
    in_place: Option<KVec<u64>>,
    /// The slot's tree nodes known to have count 1 (see [`CountMemo`]), allocated at first use.
    memo: Option<KVec<u64>>,
    /// The transactions that last changed its layers' inodes (see [`Changed`]).
    changed: Changed,
    /// Inodes of its layers unlinked without an orphan-index item (see [`Unindexed`]).
    unindexed: [Option<Unindexed>; UNINDEXED_MAX],
}

/// An inode whose last name an unlink removed without adding its orphan-index item
/// (`Volume::unlink_touched` with `OrphanItem::Leave`), with the blocks that unlink admitted
/// for the item and kept reserved. Its eviction, which usually follows at once, deletes it without the item
/// ([`VolGuard::take_unindexed`]); the next whole volume adds the item first
/// ([`take_slot_records`]), since only a whole volume commits or shares a layer's tree, and a
/// committed tree must list every inode without links for the next mount to delete it.
#[derive(Clone, Copy)]
struct Unindexed {
    layer: u64,
    ino: u64,
    reserved: u64,
}

/// Unindexed inodes a slot keeps; an unlink finding them all taken adds the item at once. An
/// inode is only kept while still open after its unlink, or until its eviction a moment later.
const UNINDEXED_MAX: usize = 8;

/// The transaction (generation) that last changed each inode of a slot's layers, as far as an
/// `fsync` needs to know: direct-mapped entries of (layer, inode, generation), and for every
/// inode without an entry (never changed, pushed out by another, or one of too many changed at
/// once) the latest generation such an inode may have changed in.
#[derive(Default)]
struct Changed {
    entries: KVec<[u64; 3]>,
    others: u64,
}

/// Entries of a [`Changed`] table (3 KiB per slot once allocated).
const CHANGED_ENTRIES: usize = 128;

impl Changed {
    fn index(layer: u64, ino: u64) -> usize {
        let h = ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ layer;
        // The remainder is below `CHANGED_ENTRIES`, which fits `usize`.
        usize::try_from(h % CHANGED_ENTRIES as u64).unwrap_or(0)
    }

    /// Records that `ino` of `layer` changed in transaction `generation`.
    fn note(&mut self, layer: u64, ino: u64, generation: u64) {
        if self.entries.is_empty()
            && self
                .entries
                .extend_from_slice(&[[0u64; 3]; CHANGED_ENTRIES], GFP_KERNEL)
                .is_err()
        {
            // Without memory every inode of the slot counts as changed now.
            self.others = self.others.max(generation);
            return;
        }
        if let Some(e) = self.entries.get_mut(Self::index(layer, ino)) {
            if e[0] != layer || e[1] != ino {
                // The entry it replaces joins the inodes without one.
                self.others = self.others.max(e[2]);
            }
            *e = [layer, ino, generation];
        }
    }

    /// Records that inodes too many to list changed in transaction `generation`.
    fn note_all(&mut self, generation: u64) {
        self.others = self.others.max(generation);
    }

    /// The latest transaction `ino` of `layer` may have changed in.
    fn last(&self, layer: u64, ino: u64) -> u64 {
        match self.entries.get(Self::index(layer, ino)) {
            Some(&[l, i, g]) if l == layer && i == ino => g.max(self.others),
            _ => self.others,
        }
    }
}

/// Tree nodes of a slot's layers known to have reference count 1, so that copy-on-write's
/// question for every node on a changed path (may it change this node in place?) needs no map
/// lock: word 0 holds the [`Shared::whole_holds`] count the entries belong to, the others
/// `blocknr + 1`, direct-mapped.
///
/// Why the entries stay true: a node with count 1 is reached by one tree only, and only that
/// tree's layer changes it, through volumes that hold the slot and keep the memo up to date
/// (their count changes go through [`MapHandle`], which forgets the blocks they touch). Other
/// layers cannot reach the node, so they cannot change its count; only a whole volume can (a
/// clone or snapshot shares trees, a commit starts a new transaction), and every whole hold
/// moves `whole_holds` on, which empties the memo at the slot's next hold.
struct CountMemo;

/// Entries of a [`CountMemo`] (about 2 KiB per slot).
const MEMO_SLOTS: usize = 255;

impl CountMemo {
    fn slot(blocknr: u64) -> usize {
        // `MEMO_SLOTS` fits in u64 and the remainder below it fits in usize.
        usize::try_from(blocknr % MEMO_SLOTS as u64)
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Whether the memo `t` knows `blocknr` to have count 1.
    fn knows(t: &[u64], blocknr: u64) -> bool {
        t.get(Self::slot(blocknr)) == Some(&blocknr.wrapping_add(1))
    }

    fn note(t: &mut [u64], blocknr: u64) {
        if let Some(e) = t.get_mut(Self::slot(blocknr)) {
            *e = blocknr.wrapping_add(1);
        }
    }

    /// Forgets `[blocknr, blocknr + len)`: their counts change.
    fn forget(t: &mut [u64], blocknr: u64, len: u64) {
        if len >= MEMO_SLOTS as u64 {
            if let Some((_, rest)) = t.split_first_mut() {
                rest.fill(0);
            }
            return;
        }
        for b in blocknr..blocknr.saturating_add(len) {
            if let Some(e) = t.get_mut(Self::slot(b)) {
                if *e == b.wrapping_add(1) {
                    *e = 0;
                }
            }
        }
    }
}

/// The map's space as admission sees it without the map lock ([`MapAccess::admit`]).
///
/// Admissions and give-backs are two counters that only grow (wrapping), so that the blocks
/// reserved now are their difference, and an admission's compare-and-swap on `admitted` fails
/// whenever another admission came in between, even one already given back (a single counter
/// of what is reserved now could come back to the value an admission loaded, and let it
/// reserve against a free count from before the blocks were taken).
pub(crate) struct Space {
    /// Blocks admitted so far.
    admitted: AtomicU64,
    /// Blocks given back so far (each admission's, once its volume is released).
    released: AtomicU64,
    /// The map's free blocks, published by every map change before its lock is let go.
    free: AtomicU64,
    /// The map's reserve for metadata ([`RefMap::reserve`]), published likewise.
    floor: AtomicU64,
    /// [`RefMap::blocks_per_tree`], published likewise.
    per_tree: AtomicU64,
}

impl Space {
    fn new(map: &RefMap) -> Self {
        let space = Self {
            admitted: AtomicU64::new(0),
            released: AtomicU64::new(0),
            free: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            per_tree: AtomicU64::new(0),
        };
        space.publish(map);
        space
    }

    /// Publishes what `map` has now; called under the map lock.
    fn publish(&self, map: &RefMap) {
        self.floor.store(map.reserve, Ordering::Release);
        self.per_tree
            .store(map.blocks_per_tree(), Ordering::Release);
        self.free.store(map.free, Ordering::Release);
    }

    /// What an admission decides on, loaded in this order: `released` first, so every
    /// admission it counts given back is in `admitted` too, and their difference is never
    /// below what is reserved (a give-back loaded late only overstates it); the free count
    /// last, which a map change publishes before its volume gives its reservation back: a
    /// give-back seen comes with the blocks it took, and one not seen is still counted, while
    /// the blocks its volume took since are at most what it reserved.
    fn snapshot(&self, keep_reserve: bool) -> Snapshot {
        let released = self.released.load(Ordering::Acquire);
        let admitted = self.admitted.load(Ordering::Acquire);
        let free = self.free.load(Ordering::Acquire);
        // Published before `free`: as new as the free count.
        let floor = if keep_reserve {
            self.floor.load(Ordering::Acquire)
        } else {
            0
        };
        let per_tree = self.per_tree.load(Ordering::Acquire);
        Snapshot {
            reserved: admitted.wrapping_sub(released),
            admitted,
            free,
            floor,
            per_tree,
        }
    }

    /// Reserves `need` blocks on what `snap` saw; `false` if any other admission came since it
    /// was loaded (even one already given back): the caller loads everything again.
    fn reserve(&self, snap: &Snapshot, need: u64) -> bool {
        self.admitted
            .compare_exchange(
                snap.admitted,
                snap.admitted.wrapping_add(need),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Reserves what `trees` tree updates may take for a volume that holds `mine` already
    /// ([`MapAccess::admit`]): the blocks reserved, or `None` if they are not free beside
    /// what other volumes reserved.
    fn admit(&self, mine: u64, trees: u64, keep_reserve: bool) -> Option<u64> {
        loop {
            let snap = self.snapshot(keep_reserve);
            let need = trees.saturating_mul(snap.per_tree);
            if snap.unreserved(mine) < need {
                return None;
            }
            if self.reserve(&snap, need) {
                return Some(need);
            }
        }
    }

    /// Reserves up to `max` data blocks for a volume that holds `mine` already, of which what
    /// its `trees` tree updates may take stays free ([`MapAccess::admit_data`]): the blocks
    /// reserved, or `None` if there are none.
    fn admit_data(&self, mine: u64, trees: u64, max: u64) -> Option<u64> {
        loop {
            let snap = self.snapshot(true);
            let keep = trees.saturating_mul(snap.per_tree);
            let want = snap.unreserved(mine).saturating_sub(keep).min(max);
            if want == 0 {
                return None;
            }
            if self.reserve(&snap, want) {
                return Some(want);
            }
        }
    }

    /// The blocks one tree update may take, as last published.
    fn per_tree(&self) -> u64 {
        self.per_tree.load(Ordering::Acquire)
    }

    /// Gives back `n` reserved blocks, after every map change of the volume that reserved them
    /// published its free count.
    fn give_back(&self, n: u64) {
        self.released.fetch_add(n, Ordering::AcqRel);
    }
}

/// What [`Space::snapshot`] loaded.
struct Snapshot {
    reserved: u64,
    admitted: u64,
    free: u64,
    floor: u64,
    per_tree: u64,
}

impl Snapshot {
    /// Blocks free beyond the floor and what volumes other than one holding `mine` reserved.
    fn unreserved(&self, mine: u64) -> u64 {
        self.free
            .saturating_sub(self.floor)
            .saturating_sub(self.reserved.saturating_sub(mine))
    }
}

/// The mounted volume's parts.
#[pin_data]
pub(crate) struct Shared {
    #[pin]
    commit: Mutex<()>,
    #[pin]
    core: RwSem<Core>,
    slots: KVec<Pin<KBox<Mutex<SlotState>>>>,
    #[pin]
    map: Mutex<MapState>,
    /// The map's space, for admission.
    space: Space,
    /// The store's shards, by [`shard_of`].
    shards: KVec<Pin<KBox<Mutex<StoreShard>>>>,
    /// The device, through its page cache.
    io: BlockDevice,
    /// The store refuses writes (a read-only mount).
    read_only: AtomicBool,
    /// The store's buffer pool.
    pool: Arc<BufPool>,
    total_blocks: u64,
    dirty: AtomicBool,
    aborted: AtomicBool,
    epoch: AtomicU64,
    /// Whole holds so far (see [`CountMemo`]).
    whole_holds: AtomicU64,
    /// Blocks kept reserved for unindexed inodes' items (see [`Unindexed`]), which the next
    /// whole volume gives back.
    unindexed_reserved: AtomicU64,
    /// The generation of the last commit known durable.
    durable: AtomicU64,
    /// The last transaction a whole volume changed inodes in (any inode: see [`Changed`]).
    whole_changed: AtomicU64,
    /// The largest map epoch a volume ended with ([`Volume::map_epoch`]), `u64::MAX` once the
    /// transaction is aborted, 0 before the first: write mappings kept outside the locks
    /// (`file::WriteHint`) and iomap's validity checks compare theirs with it. It only grows,
    /// and every change of a layer ends above every value published before the change began
    /// (a volume starts from `epoch`, which is never below it), so a mapping made before a
    /// change never matches after it.
    pub(crate) map_epoch: AtomicU64,
}

impl Shared {
    /// The parts of `vol`, just opened, on the heap. Not inlined: the parts pass through this
    /// frame (a few KiB), which must not be under the caller's deeper calls.
    #[inline(never)]
    pub(crate) fn new(vol: KBox<Volume<BdevStore>>, io: BlockDevice) -> Result<Pin<KBox<Self>>> {
        let (mut store, map, state) = KBox::into_inner(vol).into_parts();
        let single = store.take_single_table();
        let pool = store.pool();
        let total_blocks = store.total_blocks();
        let read_only = store.read_only;
        let mut shards = KVec::with_capacity(STORE_SHARDS, GFP_KERNEL)?;
        for shard in store.take_shards() {
            shards.push(
                KBox::pin_init(new_mutex!(shard, "lcfs_store_shard"), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        // The shards are taken from every operation by index: a store without all of them
        // would fail every access to some blocks.
        if shards.len() != STORE_SHARDS {
            return Err(EINVAL);
        }
        let mut slots = KVec::with_capacity(LAYER_SLOTS, GFP_KERNEL)?;
        for _ in 0..LAYER_SLOTS {
            slots.push(
                KBox::pin_init(
                    new_mutex!(SlotState::default(), "lcfs_layer_slot"),
                    GFP_KERNEL,
                )?,
                GFP_KERNEL,
            )?;
        }
        let next_data_id = state.sb.next_data_id;
        let space = Space::new(&map);
        let generation = state.sb.generation;
        KBox::pin_init(
            try_pin_init!(Self {
            commit <- new_mutex!((), "lcfs_commit"),
            core <- new_rwsem!(
                Core {
                    sb: state.sb,
                    reclaim_queued: state.reclaim_queued,
                    committing: false,
                    changes_wait: false,
                },
                "lcfs_core"
            ),
            slots,
            space,
            map <- new_mutex!(
                MapState {
                    map,
                    single,
                    next_data_id,
                },
                "lcfs_map"
            ),
            shards,
            io,
            read_only: AtomicBool::new(read_only),
            pool,
            total_blocks,
            dirty: AtomicBool::new(state.dirty),
            aborted: AtomicBool::new(state.aborted),
            epoch: AtomicU64::new(state.epoch),
            whole_holds: AtomicU64::new(1),
            unindexed_reserved: AtomicU64::new(0),
            durable: AtomicU64::new(generation),
            whole_changed: AtomicU64::new(0),
            map_epoch: AtomicU64::new(0),
        }? Error),
            GFP_KERNEL,
        )
    }

    /// Locks the whole volume to change it, waiting for a commit that could not be split.
    pub(crate) fn lock(&self) -> VolGuard<'_> {
        VolGuard::new(self, Scope::Whole, true, None)
    }

    /// Locks the whole volume to read it, also while a commit's device part runs.
    pub(crate) fn lock_read(&self) -> VolGuard<'_> {
        VolGuard::new(self, Scope::Whole, false, None)
    }

    /// Locks read-write layer `layer` to change it, beside other layers' operations.
    pub(crate) fn lock_layer(&self, layer: u64) -> VolGuard<'_> {
        VolGuard::new(self, Scope::Layer(layer), true, None)
    }

    /// Locks read-write layer `layer` to read it, beside other layers' operations.
    pub(crate) fn read_layer(&self, layer: u64) -> VolGuard<'_> {
        VolGuard::new(self, Scope::Layer(layer), false, None)
    }

    /// Locks the whole volume with no commit under way and none starting until the guard is
    /// dropped: for a commit, or a change that must be committed under the same hold.
    pub(crate) fn lock_for_commit(&self) -> VolGuard<'_> {
        let one = self.commit.lock();
        VolGuard::new(self, Scope::Whole, false, Some(one))
    }

    /// Waits for the end of the commit under way, if any (one that could not be split makes
    /// changes wait for it). Takes no other lock of the volume.
    fn wait_commit(&self) {
        drop(self.commit.lock());
    }

    /// Clean node copies held.
    pub(crate) fn cached_nodes(&self) -> usize {
        self.shards
            .iter()
            .fold(0, |n, s| n.saturating_add(s.lock().cached_nodes()))
    }

    /// Clean node copies the shrinker may free, in the shards not busy (reclaim never waits
    /// for one).
    pub(crate) fn try_cached_nodes(&self) -> usize {
        self.shards.iter().fold(0, |n, s| {
            n.saturating_add(s.try_lock().map_or(0, |s| s.cached_nodes()))
        })
    }

    /// Frees up to `nr` clean node copies in the shards not busy (reclaim never waits for
    /// one), taking from each in turn; returns how many were freed.
    pub(crate) fn shrink_nodes(&self, nr: usize) -> usize {
        let per_shard = nr.div_ceil(STORE_SHARDS);
        let mut freed = 0usize;
        for s in self.shards.iter() {
            if freed >= nr {
                break;
            }
            let want = per_shard.min(nr.saturating_sub(freed));
            freed = freed.saturating_add(s.try_lock().map_or(0, |mut s| s.shrink_nodes(want)));
        }
        freed
    }

    /// The latest transaction inode `ino` of `layer` may have changed in: what an `fsync` of it
    /// waits for (every change of the whole volume counts for every inode).
    pub(crate) fn last_change(&self, layer: u64, ino: u64) -> u64 {
        let index = usize::try_from(layer % LAYER_SLOTS as u64).unwrap_or(0);
        let own = self
            .slots
            .get(index)
            .map_or(u64::MAX, |s| s.lock().changed.last(layer, ino));
        own.max(self.whole_changed.load(Ordering::Acquire))
    }

    /// The generation of the last commit known durable.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether the store refuses writes (a read-only mount).
    pub(crate) fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Makes the store refuse writes, or take them again.
    pub(crate) fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Release);
    }
}

/// The store as a thread's volume reaches it: each block under its shard's lock, except a
/// cache miss's device read ([`read_through`]).
pub(crate) struct StoreHandle<'a> {
    shared: &'a Shared,
    /// The in-place cache of the layer slot the volume holds (none for a whole volume).
    in_place: Option<KVec<u64>>,
}

impl StoreHandle<'_> {
    /// The locked shard of `blocknr`, a block of the device.
    fn shard(&self, blocknr: u64) -> Result<MutexGuard<'_, StoreShard>, CoreError> {
        if blocknr >= self.shared.total_blocks {
            return Err(CoreError::Io);
        }
        let shard = self
            .shared
            .shards
            .get(shard_of(blocknr))
            .ok_or(CoreError::Io)?;
        Ok(shard.lock())
    }

    /// The locked shard of `blocknr`, to write it.
    fn shard_to_write(&self, blocknr: u64) -> Result<MutexGuard<'_, StoreShard>, CoreError> {
        if self.shared.read_only() {
            return Err(CoreError::ReadOnly);
        }
        self.shard(blocknr)
    }
}

impl Shards for StoreHandle<'_> {
    fn with_shard<R>(
        &mut self,
        blocknr: u64,
        f: impl FnOnce(&mut StoreShard) -> R,
    ) -> Result<R, CoreError> {
        let mut shard = self.shard(blocknr)?;
        Ok(f(&mut shard))
    }

    fn read_device(&mut self, blocknr: u64, out: &mut [u8]) -> Result<(), CoreError> {
        read_device(&self.shared.io, blocknr, out)
    }

    fn buffer(&mut self) -> Result<KBlock, CoreError> {
        self.shared.pool.get_dirty()
    }
}

impl BlockStore for StoreHandle<'_> {
    type Buf = KBlock;

    shard_reads!();

    fn alloc_buf(&mut self) -> Result<KBlock, CoreError> {
        self.shared.pool.get()
    }

    fn write(&mut self, blocknr: u64, buf: &KBlock) -> Result<(), CoreError> {
        self.shard_to_write(blocknr)?
            .write(&self.shared.io, blocknr, buf.as_ref())
    }

    fn write_node(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
        self.shard_to_write(blocknr)?
            .write_node(&self.shared.io, blocknr, buf)
    }

    fn update_node<R>(&mut self, blocknr: u64, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        self.shard(blocknr).ok()?.update_node(blocknr, f)
    }

    fn total_blocks(&self) -> u64 {
        self.shared.total_blocks
    }

    fn is_verified(&mut self, blocknr: u64) -> bool {
        self.shard(blocknr)
            .is_ok_and(|mut s| s.is_verified(blocknr))
    }

    fn set_verified(&mut self, blocknr: u64) {
        if let Ok(mut s) = self.shard(blocknr) {
            s.set_verified(blocknr);
        }
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.in_place.as_deref_mut()
    }
}

impl Device for StoreHandle<'_> {
    /// Writes back every shard's dirty nodes, then flushes the device with no lock held.
    fn flush(&mut self) -> Result<(), CoreError> {
        if self.shared.read_only() {
            return Ok(());
        }
        self.write_back()?;
        self.shared.io.flush().map_err(|_| CoreError::Io)
    }

    fn write_back(&mut self) -> Result<(), CoreError> {
        if self.shared.read_only() {
            return Ok(());
        }
        for s in self.shared.shards.iter() {
            s.lock().write_back_all(&self.shared.io)?;
        }
        Ok(())
    }
}

/// The map as a thread's volume reaches it: each change under the map lock. Admission
/// ([`MapAccess::admit`], without the lock: see [`Space`]) reserves blocks for the volume until
/// its guard is dropped (admitted data until its run is taken), so that operations running at
/// once are admitted against different free blocks: an admitted operation never runs out of
/// space half-way, which would abort the transaction.
pub(crate) struct MapHandle<'a> {
    state: &'a Mutex<MapState>,
    /// What admission reads without the map lock.
    space: &'a Space,
    /// Blocks this volume reserved.
    mine: u64,
    /// Of those, data blocks admitted ([`MapAccess::admit_data`]) and not yet taken.
    data: u64,
    /// The count memo of the layer slot the volume holds (none for a whole volume).
    memo: Option<KVec<u64>>,
}

impl MapHandle<'_> {
    /// Forgets what the memo knows of `[blocknr, blocknr + len)`: their counts change.
    fn forget(&mut self, blocknr: u64, len: u64) {
        if let Some(t) = self.memo.as_deref_mut() {
            CountMemo::forget(t, blocknr, len);
        }
    }

    /// Takes up to `trees` tree updates' worth of this volume's reservation out of it, to stay
    /// reserved after the volume is released: the blocks taken.
    fn keep_trees(&mut self, trees: u64) -> u64 {
        // Admitted data is the run's to take, not the tree updates'.
        let n = trees
            .saturating_mul(self.space.per_tree())
            .min(self.mine.wrapping_sub(self.data));
        self.mine = self.mine.wrapping_sub(n);
        n
    }

    /// Makes `n` blocks kept reserved by [`Self::keep_trees`] this volume's again.
    fn adopt(&mut self, n: u64) {
        self.mine = self.mine.wrapping_add(n);
    }

    /// Gives back what this volume reserved.
    fn release(&mut self) {
        if self.mine > 0 {
            // After every map change of this volume published its free count (each under the
            // map lock, which this volume no longer holds).
            self.space.give_back(self.mine);
            self.mine = 0;
            self.data = 0;
        }
    }
}

impl<'a> Allocator<StoreHandle<'a>> for MapHandle<'a> {
    fn alloc(&mut self, store: &mut StoreHandle<'a>) -> Result<u64, CoreError> {
        let b = self.with(store, |m, s| m.alloc_node(s))?;
        if let Some(t) = self.memo.as_deref_mut() {
            CountMemo::note(t, b);
        }
        Ok(b)
    }

    fn refcount(&mut self, store: &mut StoreHandle<'a>, blocknr: u64) -> Result<u32, CoreError> {
        if self
            .memo
            .as_deref()
            .is_some_and(|t| CountMemo::knows(t, blocknr))
        {
            return Ok(1);
        }
        let n = self.with(store, |m, s| m.node_refcount(s, blocknr))?;
        if n == 1 {
            if let Some(t) = self.memo.as_deref_mut() {
                CountMemo::note(t, blocknr);
            }
        }
        Ok(n)
    }

    fn inc_ref(
        &mut self,
        store: &mut StoreHandle<'a>,
        blocknr: u64,
        len: u64,
    ) -> Result<(), CoreError> {
        self.forget(blocknr, len);
        self.with(store, |m, s| m.inc_range(s, blocknr, len))
    }

    fn dec_ref(
        &mut self,
        store: &mut StoreHandle<'a>,
        blocknr: u64,
        len: u64,
    ) -> Result<(), CoreError> {
        self.forget(blocknr, len);
        self.with(store, |m, s| m.dec_range(s, blocknr, len))
    }
}

impl<'a> MapAccess<StoreHandle<'a>> for MapHandle<'a> {
    fn with<R>(
        &mut self,
        store: &mut StoreHandle<'a>,
        f: impl for<'x> FnOnce(&mut RefMap, &mut MapStore<'x, StoreHandle<'a>>) -> R,
    ) -> R {
        let mut st = self.state.lock();
        let MapState { map, single, .. } = &mut *st;
        let r = f(map, &mut MapStore::new(store, Some(single)));
        self.space.publish(map);
        r
    }

    /// Without the map lock, which other layers' map changes hold: the reservations are
    /// atomic counters, and the free count the one the last map change published (see
    /// [`Space`]).
    fn admit(&mut self, trees: u64, keep_reserve: bool) -> Result<(), CoreError> {
        let need = self
            .space
            .admit(self.mine, trees, keep_reserve)
            .ok_or(CoreError::NoSpace)?;
        // `need` is below the free count, so the sum of a volume's admissions stays far from
        // wrapping, and `released` gets back exactly what `admitted` got.
        self.mine = self.mine.wrapping_add(need);
        Ok(())
    }

    /// Reserved like an admission, before the change that takes the data, until the
    /// allocation ([`Self::alloc_data`]): an admission that runs in between counts these
    /// blocks.
    fn admit_data(&mut self, trees: u64, max: u64) -> Result<u64, CoreError> {
        // Data admitted before and not taken yet is not this step's to count on.
        let want = self
            .space
            .admit_data(self.mine.wrapping_sub(self.data), trees, max)
            .ok_or(CoreError::NoSpace)?;
        self.mine = self.mine.wrapping_add(want);
        self.data = self.data.wrapping_add(want);
        Ok(want)
    }

    fn data_admitted(&self) -> bool {
        self.data > 0
    }

    /// Gives the data reservation back as soon as the run is taken (the map published the
    /// smaller free count), with what the run did not use: kept until the guard drops, blocks
    /// both taken and reserved would count twice against other layers' room.
    fn alloc_data(
        &mut self,
        store: &mut StoreHandle<'a>,
        max: u32,
    ) -> Result<(u64, u32), CoreError> {
        let r = if self.data > 0 {
            // Every admission since counted these blocks, those that may use the metadata
            // reserve too (removals): what they took may be reserve blocks the data was
            // counting on, so the admitted run may take reserve blocks, up to its size.
            let n = max.min(u32::try_from(self.data).unwrap_or(u32::MAX));
            self.with(store, |m, s| m.alloc_run(s, Purpose::Metadata, n))
        } else {
            self.with(store, |m, s| m.alloc_run(s, Purpose::Data, max))
        };
        if self.data > 0 {
            self.space.give_back(self.data);
            self.mine = self.mine.wrapping_sub(self.data);
            self.data = 0;
        }
        r
    }

    fn room(&mut self, trees: u64) -> u64 {
        let snap = self.space.snapshot(true);
        snap.unreserved(self.mine)
            .saturating_sub(trees.saturating_mul(snap.per_tree))
    }

    fn free_and_root(&self) -> (u64, u64) {
        let st = self.state.lock();
        (st.map.free, st.map.root)
    }

    fn alloc_data_id(&mut self, next: &mut u64) -> Result<u64, CoreError> {
        let mut st = self.state.lock();
        let id = take_data_id(&mut st.next_data_id)?;
        // The volume's superblock follows, for a commit in this volume.
        *next = st.next_data_id;
        Ok(id)
    }
}

/// What a [`VolGuard`] holds.
enum Held<'a> {
    /// A layer-scoped volume: `core` read-held and the layer's slot, with the index of the
    /// layer's record in the slot (`None`: room for it is reserved).
    Layer(
        ReadGuard<'a, Core>,
        MutexGuard<'a, SlotState>,
        Option<usize>,
    ),
    /// A whole volume: `core` write-held.
    Whole(WriteGuard<'a, Core>),
    /// Nothing (between a release and the next hold).
    Nothing,
}

/// A thread's volume over the mount's shared parts, and the locks that make it safe: see the
/// module comment. Dropping it gives the volume's state back to the shared parts.
pub(crate) struct VolGuard<'a> {
    vol: Vol<'a>,
    held: Held<'a>,
    shared: &'a Shared,
    scope: Scope,
    change: bool,
    /// The commit lock, for a guard that commits under its own hold.
    commit: Option<MutexGuard<'a, ()>>,
    // Last: allocations stay out of filesystem reclaim until every lock above is released.
    _nofs: NoFsScope,
}

impl<'a> VolGuard<'a> {
    fn new(
        shared: &'a Shared,
        scope: Scope,
        change: bool,
        commit: Option<MutexGuard<'a, ()>>,
    ) -> Self {
        let nofs = NoFsScope::enter();
        let Hold {
            held,
            state,
            scope,
            in_place,
            memo,
        } = hold(shared, scope, change, commit.is_some());
        let mut vol = Volume::from_parts(
            StoreHandle { shared, in_place },
            MapHandle {
                state: &shared.map,
                space: &shared.space,
                data: 0,
                mine: 0,
                memo,
            },
            state,
            scope,
        );
        take_slot_records(shared, &mut vol);
        Self {
            vol,
            held,
            shared,
            scope,
            change,
            commit,
            _nofs: nofs,
        }
    }

    /// Whether this guard holds the commit lock ([`Shared::lock_for_commit`]).
    pub(crate) fn holds_commit(&self) -> bool {
        self.commit.is_some()
    }

    /// The slot and layer of a layer-scoped guard.
    fn slot(&mut self) -> Option<(&mut SlotState, u64)> {
        match (&mut self.held, self.scope) {
            (Held::Layer(_, slot, _), Scope::Layer(layer)) => Some((&mut **slot, layer)),
            _ => None,
        }
    }

    /// Whether an unlink in this guard may leave its inode's orphan-index item out: a layer's
    /// guard whose slot has room to keep the inode (see [`Unindexed`]).
    pub(crate) fn unindexed_room(&mut self) -> bool {
        self.slot()
            .is_some_and(|(s, _)| s.unindexed.iter().any(Option::is_none))
    }

    /// Keeps `ino`, which an unlink in this guard left with no links and no orphan-index item,
    /// with what the item's insert may take of the unlink's reservation. `false` if the slot
    /// has no room (the caller then adds the item).
    pub(crate) fn keep_unindexed(&mut self, ino: u64) -> bool {
        let Some((slot, layer)) = self.slot() else {
            return false;
        };
        let Some(at) = slot.unindexed.iter().position(Option::is_none) else {
            return false;
        };
        // What the item's insert takes (`Volume::index_orphan` admits nothing): the unlink
        // admitted more than that.
        let reserved = self.vol.map_mut().keep_trees(INSERT_TREES);
        // The same slot, still held, with the entry found free above.
        match self.slot().and_then(|(s, _)| s.unindexed.get_mut(at)) {
            Some(e) => {
                *e = Some(Unindexed {
                    layer,
                    ino,
                    reserved,
                });
                self.shared
                    .unindexed_reserved
                    .fetch_add(reserved, Ordering::Relaxed);
                true
            }
            None => {
                self.vol.map_mut().adopt(reserved);
                false
            }
        }
    }

    /// Takes `ino` of this guard's layer out of the kept unindexed inodes, with its
    /// reservation: `true` if it was kept (it has no orphan-index item then).
    pub(crate) fn take_unindexed(&mut self, ino: u64) -> bool {
        let Some((slot, layer)) = self.slot() else {
            return false;
        };
        let Some(e) = slot
            .unindexed
            .iter_mut()
            .find(|e| e.is_some_and(|u| u.layer == layer && u.ino == ino))
        else {
            return false;
        };
        let reserved = e.take().map_or(0, |u| u.reserved);
        self.vol.map_mut().adopt(reserved);
        self.shared
            .unindexed_reserved
            .fetch_sub(reserved, Ordering::Relaxed);
        true
    }

    /// Whether unindexed inodes keep blocks reserved: the next whole volume gives them back
    /// (a retry for space commits for them).
    pub(crate) fn unindexed_reserved(&self) -> bool {
        self.shared.unindexed_reserved.load(Ordering::Relaxed) > 0
    }

    /// Lets go of every lock, runs `f` (a commit, which takes them itself), and takes the same
    /// hold again: the volume then starts from the shared state as it is.
    pub(crate) fn release_while<R>(&mut self, f: impl FnOnce() -> R) -> R {
        release(self.shared, &mut self.vol, &mut self.held);
        let r = f();
        let locked = self.commit.is_some();
        let h = hold(self.shared, self.scope, self.change, locked);
        self.vol.store().in_place = h.in_place;
        self.vol.map_mut().memo = h.memo;
        self.vol.set_state(h.state, h.scope);
        self.held = h.held;
        take_slot_records(self.shared, &mut self.vol);
        r
    }
}

impl Drop for VolGuard<'_> {
    fn drop(&mut self) {
        release(self.shared, &mut self.vol, &mut self.held);
    }
}

impl<'a> core::ops::Deref for VolGuard<'a> {
    type Target = Vol<'a>;
    fn deref(&self) -> &Vol<'a> {
        &self.vol
    }
}

impl<'a> core::ops::DerefMut for VolGuard<'a> {
    fn deref_mut(&mut self) -> &mut Vol<'a> {
        &mut self.vol
    }
}

/// What [`hold`] took: the locks, the volume state, its scope (a layer whose slot had no room
/// gets a whole volume) and the slot's in-place cache.
struct Hold<'a> {
    held: Held<'a>,
    state: VolumeState,
    scope: Scope,
    in_place: Option<KVec<u64>>,
    memo: Option<KVec<u64>>,
}

/// Takes the locks of `scope` and the state of a volume of that scope. A change waits for a
/// commit that could not be split (unless `committing`: the caller holds the commit lock, so
/// none runs). A layer whose slot has no room for its record gets a whole volume instead
/// (which writes every slot's records into the layer tree: see [`flush_slots`]).
fn hold(shared: &Shared, scope: Scope, change: bool, committing: bool) -> Hold<'_> {
    loop {
        let h = match scope {
            Scope::Layer(id) => hold_layer(shared, id),
            Scope::Whole => None,
        };
        let h = match h {
            Some(h) => h,
            None => hold_whole(shared),
        };
        if change && !committing && h.state.changes_wait {
            drop(h);
            shared.wait_commit();
            continue;
        }
        return h;
    }
}

/// [`hold`] of layer `id`; `None` if its slot has no room for the layer's record.
fn hold_layer(shared: &Shared, id: u64) -> Option<Hold<'_>> {
    let core = shared.core.read();
    let index = usize::try_from(id % LAYER_SLOTS as u64).unwrap_or(0);
    let mut slot = shared.slots.get(index)?.lock();
    let at = slot.records.iter().position(|(l, _)| l.id == id);
    if at.is_none() && slot.records.reserve(1, GFP_KERNEL).is_err() {
        return None;
    }
    let layer_cache = at.and_then(|i| slot.records.get(i).copied());
    if slot.in_place.is_none() {
        // Without memory the layer only goes without its in-place cache.
        slot.in_place = KVec::from_elem(0u64, IN_PLACE_TABLE, GFP_KERNEL).ok();
    }
    let in_place = slot.in_place.take();
    if slot.memo.is_none() {
        slot.memo = KVec::from_elem(0u64, MEMO_SLOTS.saturating_add(1), GFP_KERNEL).ok();
    }
    let mut memo = slot.memo.take();
    let whole = shared.whole_holds.load(Ordering::Acquire);
    if let Some((tag, rest)) = memo.as_deref_mut().and_then(|t| t.split_first_mut()) {
        if *tag != whole {
            rest.fill(0);
            *tag = whole;
        }
    }
    let state = VolumeState {
        // Its `next_data_id` is not used: a layer's volume takes ids from the map's counter.
        sb: core.sb.clone(),
        dirty: false,
        aborted: shared.aborted.load(Ordering::Acquire),
        layer_cache,
        epoch: shared.epoch.load(Ordering::Acquire),
        reclaim_queued: None,
        committing: core.committing,
        changes_wait: core.changes_wait,
    };
    Some(Hold {
        held: Held::Layer(core, slot, at),
        state,
        scope: Scope::Layer(id),
        in_place,
        memo,
    })
}

/// [`hold`] of the whole volume.
fn hold_whole(shared: &Shared) -> Hold<'_> {
    let core = shared.core.write();
    // Under the write hold, before any count changes: no layer volume runs meanwhile.
    shared.whole_holds.fetch_add(1, Ordering::AcqRel);
    let mut sb = core.sb.clone();
    // A commit in this volume writes the map's counter.
    sb.next_data_id = shared.map.lock().next_data_id;
    let state = VolumeState {
        sb,
        dirty: shared.dirty.load(Ordering::Acquire),
        aborted: shared.aborted.load(Ordering::Acquire),
        layer_cache: None,
        epoch: shared.epoch.load(Ordering::Acquire),
        reclaim_queued: core.reclaim_queued,
        committing: core.committing,
        changes_wait: core.changes_wait,
    };
    Hold {
        held: Held::Whole(core),
        state,
        scope: Scope::Whole,
        in_place: None,
        memo: None,
    }
}

/// Makes a whole volume take the layer records the slots keep, to write into the layer tree
/// (unless a commit's device part runs, during which nothing changed them).
fn take_slot_records<'a>(shared: &'a Shared, vol: &mut Vol<'a>) {
    if vol.scope() == Scope::Whole && !vol.changes_wait() {
        for slot in shared.slots.iter() {
            let mut slot = slot.lock();
            for (l, changed) in slot.records.iter() {
                if *changed {
                    // A failure aborts the transaction: later operations fail with EIO.
                    let _ = vol.keep_layer_record(l);
                }
            }
            slot.records.clear();
            // Every unindexed inode gets its orphan-index item before this volume can commit
            // or share its layer's tree, on the blocks its unlink kept reserved for it.
            for u in slot.unindexed.iter_mut().filter_map(Option::take) {
                vol.map_mut().adopt(u.reserved);
                shared
                    .unindexed_reserved
                    .fetch_sub(u.reserved, Ordering::Relaxed);
                if let Err(e) = vol.index_orphan(u.layer, u.ino) {
                    // The change failed, which aborted the transaction: nothing commits.
                    if !matches!(e, CoreError::Aborted) {
                        pr_err!(
                            "lcfs: cannot list unlinked inode {} of layer {}: {:?}\n",
                            u.ino,
                            u.layer,
                            e
                        );
                    }
                }
            }
        }
    }
}

/// Gives `vol`'s state back to the shared parts and lets go of `held`.
fn release<'a>(shared: &'a Shared, vol: &mut Vol<'a>, held: &mut Held<'a>) {
    let touched = vol.touched();
    let running = vol.running_generation();
    let scope = vol.scope();
    let state = vol.take_state();
    vol.map_mut().release();
    let in_place = vol.store().in_place.take();
    let memo = vol.map_mut().memo.take();
    if state.dirty {
        shared.dirty.store(true, Ordering::Release);
    }
    if state.aborted {
        shared.aborted.store(true, Ordering::Release);
    }
    shared.epoch.fetch_max(state.epoch, Ordering::AcqRel);
    match core::mem::replace(held, Held::Nothing) {
        Held::Layer(core, mut slot, at) => {
            let sb = &core.sb;
            if (state.sb.incompat, state.sb.ro_compat, state.sb.compat)
                != (sb.incompat, sb.ro_compat, sb.compat)
            {
                // A layer's volume changed the superblock, which it does not give back: the
                // transaction would commit without that change, so it must not commit.
                pr_err!("lcfs: a layer's operation changed the superblock's features; aborting\n");
                shared.aborted.store(true, Ordering::Release);
            }
            slot.in_place = in_place;
            slot.memo = memo;
            if let Scope::Layer(layer) = scope {
                match touched.ids() {
                    Some(ids) => {
                        for &ino in ids {
                            slot.changed.note(layer, ino, running);
                        }
                    }
                    None => slot.changed.note_all(running),
                }
            } else if touched.any() {
                slot.changed.note_all(running);
            }
            if let Some(rec) = state.layer_cache {
                match at.and_then(|i| slot.records.get_mut(i)) {
                    Some(r) => *r = rec,
                    // Room was reserved when the slot was taken.
                    None => {
                        let _ = slot.records.push_within_capacity(rec);
                    }
                }
            }
            drop(slot);
            drop(core);
        }
        Held::Whole(mut core) => {
            if !state.aborted {
                // Only this volume ran: its view of these is the truth.
                shared.dirty.store(state.dirty, Ordering::Release);
            }
            if touched.any() {
                shared.whole_changed.fetch_max(running, Ordering::AcqRel);
            }
            if !state.committing && !state.aborted {
                // Not committing: the superblock is the last commit's, on the medium.
                shared
                    .durable
                    .fetch_max(state.sb.generation, Ordering::AcqRel);
            }
            core.sb = state.sb;
            core.reclaim_queued = state.reclaim_queued;
            core.committing = state.committing;
            core.changes_wait = state.changes_wait;
            if let Some((l, true)) = state.layer_cache {
                let index = usize::try_from(l.id % LAYER_SLOTS as u64).unwrap_or(0);
                if let Some(slot) = shared.slots.get(index) {
                    let mut slot = slot.lock();
                    if let Some(r) = slot.records.iter_mut().find(|(r, _)| r.id == l.id) {
                        *r = (l, true);
                    } else if slot.records.push((l, true), GFP_KERNEL).is_err() {
                        // No memory to keep the changed record: the transaction cannot commit
                        // it, so it must not commit at all.
                        shared.aborted.store(true, Ordering::Release);
                    }
                }
            }
            drop(core);
        }
        Held::Nothing => {}
    }
    let published = if shared.aborted.load(Ordering::Acquire) {
        u64::MAX
    } else {
        shared.epoch.load(Ordering::Acquire)
    };
    shared.map_epoch.fetch_max(published, Ordering::AcqRel);
}

#[kunit_tests(lcfs_admission)]
mod tests {
    use super::*;

    fn space(free: u64) -> Space {
        Space {
            admitted: AtomicU64::new(0),
            released: AtomicU64::new(0),
            free: AtomicU64::new(free),
            floor: AtomicU64::new(10),
            per_tree: AtomicU64::new(36),
        }
    }

    #[test]
    fn an_admission_that_came_and_went_in_between_makes_the_reservation_fail() {
        let s = space(200);
        // A loads what it decides on and passes the check...
        let a = s.snapshot(false);
        assert!(a.unreserved(0) >= 144);
        // ...then C is admitted for as much, takes 100 blocks and gives its reservation back:
        // what is reserved is back at the value A loaded.
        let c = s.snapshot(false);
        assert!(s.reserve(&c, 144));
        s.free.store(100, Ordering::Release);
        s.give_back(144);
        // A must not reserve on the free count it loaded: it loads again, and finds too little.
        assert!(!s.reserve(&a, 144));
        assert!(s.snapshot(false).unreserved(0) < 144);
    }

    #[test]
    fn other_volumes_reservations_count_and_the_own_does_not() {
        let s = space(200);
        let x = s.snapshot(false);
        assert!(s.reserve(&x, 100));
        assert_eq!(s.snapshot(false).unreserved(0), 100);
        assert_eq!(s.snapshot(false).unreserved(100), 200);
        // The floor counts only where asked for.
        assert_eq!(s.snapshot(true).unreserved(100), 190);
        s.give_back(100);
        assert_eq!(s.snapshot(false).unreserved(0), 200);
    }

    #[test]
    fn data_admitted_by_one_volume_counts_for_the_next_admission() {
        // 190 blocks above the floor; a tree update may take 36.
        let s = space(200);
        let a = s.admit(0, 1, true).unwrap();
        assert_eq!(a, 36);
        // A's data: everything but what its own tree update keeps.
        let data = s.admit_data(a, 1, 1000).unwrap();
        assert_eq!(data, 154);
        // B finds nothing left, before A even takes its blocks.
        assert_eq!(s.admit(0, 1, true), None);
        assert_eq!(s.admit_data(0, 0, 1), None);
        s.give_back(a + data);
        assert_eq!(s.admit(0, 1, true), Some(36));
    }

    #[test]
    fn counters_that_wrap_still_give_what_is_reserved() {
        let s = space(200);
        s.admitted.store(u64::MAX - 5, Ordering::Release);
        s.released.store(u64::MAX - 5, Ordering::Release);
        let x = s.snapshot(false);
        assert!(s.reserve(&x, 50));
        assert_eq!(s.snapshot(false).unreserved(0), 150);
        s.give_back(50);
        assert_eq!(s.snapshot(false).unreserved(0), 200);
    }
}

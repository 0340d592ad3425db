// SPDX-License-Identifier: GPL-2.0

//! The format core's block-store interface over the mounted device.

use kernel::prelude::*;
use kernel::sync::{new_spinlock, Arc, SpinLock};

use crate::format::data::IN_PLACE_TABLE;
use crate::format::tree::{BlockStore, Error as CoreError};
use crate::format::volume::Device;
use crate::format::BLOCK_SIZE;
use crate::vfs::BlockDevice;

/// A block buffer from kmalloc: the core never keeps blocks on the (16 KiB) kernel stack. A
/// buffer from a [`BufPool`] goes back to it when dropped.
pub(crate) struct KBlock {
    data: KVec<u8>,
    pool: Option<Arc<BufPool>>,
}

impl KBlock {
    /// A zeroed block outside any pool; allocation failure is an error, not a panic.
    pub(crate) fn new() -> Result<Self, CoreError> {
        Ok(Self {
            data: zeroed_block()?,
            pool: None,
        })
    }
}

fn zeroed_block() -> Result<KVec<u8>, CoreError> {
    KVec::from_elem(0u8, BLOCK_SIZE as usize, GFP_KERNEL).map_err(|_| CoreError::NoMemory)
}

impl Drop for KBlock {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let data = core::mem::take(&mut self.data);
            // A full pool (more buffers live at once than it keeps) frees the buffer.
            let _ = pool.free.lock().push_within_capacity(data);
        }
    }
}

impl AsRef<[u8]> for KBlock {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for KBlock {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// Block buffers kept for reuse. Every metadata lookup reads a few nodes into buffers, and a
/// kmalloc and kfree per buffer would cost more than the lookup itself where allocations are
/// tracked (KASAN, kmemleak).
#[pin_data]
pub(crate) struct BufPool {
    #[pin]
    free: SpinLock<KVec<KVec<u8>>>,
}

/// Buffers a pool keeps (more than the deepest operation holds at once).
const POOL_BUFFERS: usize = 32;

impl BufPool {
    pub(crate) fn new() -> Result<Arc<Self>> {
        let free = KVec::with_capacity(POOL_BUFFERS, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                free <- new_spinlock!(free, "lcfs_buf_pool"),
            }),
            GFP_KERNEL,
        )
    }

    /// A zeroed block, reused if one is free.
    pub(super) fn get(self: &Arc<Self>) -> Result<KBlock, CoreError> {
        let mut b = self.get_dirty()?;
        b.data.fill(0);
        Ok(b)
    }

    /// A block with the contents a previous user left in it (zeros if newly allocated), for a
    /// caller that overwrites all of it.
    pub(super) fn get_dirty(self: &Arc<Self>) -> Result<KBlock, CoreError> {
        let reused = self.free.lock().pop();
        let data = match reused {
            Some(d) => d,
            None => zeroed_block()?,
        };
        Ok(KBlock {
            data,
            pool: Some(self.clone()),
        })
    }
}

/// The mounted device, through its page cache. Writes land in the page cache and reach the disk
/// at the next flush, which is what the commit protocol orders.
///
/// Its node cache and verified table are split into [`STORE_SHARDS`] shards by block: a
/// mounted volume locks only the shard of the block it reads or writes (see `super::shared`),
/// so two layers walking their own trees rarely wait for each other.
pub(crate) struct BdevStore {
    pub(crate) bdev: BlockDevice,
    pub(crate) total_blocks: u64,
    /// Refuses writes (a read-only mount).
    pub(crate) read_only: bool,
    shards: KVec<StoreShard>,
    /// The map's table of node blocks with count 1 ([`BlockStore::single_table`]).
    single: KVec<u64>,
    /// The volume's in-place cache ([`BlockStore::in_place_table`]).
    in_place: KVec<u64>,
    pool: Arc<BufPool>,
}

/// Entries of the table behind [`BlockStore::single_table`] (1 KiB).
const SINGLE_SLOTS: usize = 129;

/// Shards of a store (a power of two).
pub(crate) const STORE_SHARDS: usize = 1 << SHARD_BITS;

/// Bits of a shard index.
const SHARD_BITS: u32 = 6;

/// The shard of block `blocknr`: the top bits of the hash that places it in the node cache and
/// the verified table, so each shard holds whole parts of both.
pub(crate) fn shard_of(blocknr: u64) -> usize {
    slot_index(blocknr, SHARD_BITS)
}

impl BdevStore {
    pub(crate) fn new(bdev: BlockDevice, total_blocks: u64, read_only: bool) -> Result<Self> {
        let mut shards = KVec::with_capacity(STORE_SHARDS, GFP_KERNEL)?;
        for _ in 0..STORE_SHARDS {
            shards.push(StoreShard::new()?, GFP_KERNEL)?;
        }
        Ok(Self {
            bdev,
            total_blocks,
            read_only,
            shards,
            single: KVec::from_elem(0u64, SINGLE_SLOTS, GFP_KERNEL)?,
            in_place: KVec::from_elem(0u64, IN_PLACE_TABLE, GFP_KERNEL)?,
            pool: BufPool::new()?,
        })
    }

    /// Takes the map's table of blocks with count 1 away from the store: a map shared between
    /// volumes keeps it beside itself (see `super::shared`).
    pub(crate) fn take_single_table(&mut self) -> KVec<u64> {
        core::mem::take(&mut self.single)
    }

    /// The store's buffer pool, for buffers taken without the store's locks.
    pub(crate) fn pool(&self) -> Arc<BufPool> {
        self.pool.clone()
    }

    /// Takes the shards away from the store, for a mount that locks each on its own.
    pub(crate) fn take_shards(&mut self) -> KVec<StoreShard> {
        core::mem::take(&mut self.shards)
    }

    /// The shard of `blocknr`, which must be a block of the device.
    fn shard(&mut self, blocknr: u64) -> Result<&mut StoreShard, CoreError> {
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        self.shards.get_mut(shard_of(blocknr)).ok_or(CoreError::Io)
    }
}

/// The block reads of a [`BlockStore`] made of [`Shards`], every one through [`read_through`]:
/// expanded inside both stores' `impl BlockStore` blocks (the mount-time store and a mounted
/// volume's handle), which need `read_through`, `copy_block` and `Shards` in scope.
macro_rules! shard_reads {
    () => {
        fn read(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
            read_through(self, blocknr, |b, _| (false, copy_block(buf.as_mut(), b)))?
        }

        fn read_new(&mut self, blocknr: u64) -> Result<KBlock, CoreError> {
            // The copy overwrites the whole block (or the buffer goes back on an error).
            let mut buf = Shards::buffer(self)?;
            self.read(blocknr, &mut buf)?;
            Ok(buf)
        }

        fn with_block<R>(
            &mut self,
            blocknr: u64,
            f: impl FnOnce(&[u8]) -> R,
        ) -> Result<R, CoreError> {
            read_through(self, blocknr, |b, _| (false, f(b)))
        }

        fn with_verified_block<R>(
            &mut self,
            blocknr: u64,
            f: impl FnOnce(&[u8], bool) -> (bool, R),
        ) -> Result<R, CoreError> {
            read_through(self, blocknr, f)
        }
    };
}
pub(crate) use shard_reads;

/// A store whose shards are reached one at a time ([`BdevStore`] itself, or a mount's locked
/// shards): what [`read_through`] needs.
pub(crate) trait Shards {
    /// Calls `f` with the shard of `blocknr`, a block of the device.
    fn with_shard<R>(
        &mut self,
        blocknr: u64,
        f: impl FnOnce(&mut StoreShard) -> R,
    ) -> Result<R, CoreError>;

    /// Copies block `blocknr` from the device (its page cache, or the disk) into `out`.
    fn read_device(&mut self, blocknr: u64, out: &mut [u8]) -> Result<(), CoreError>;

    /// A buffer for a block read from the device (contents undefined).
    fn buffer(&mut self) -> Result<KBlock, CoreError>;
}

/// [`BlockStore::with_verified_block`] over shards: `f` gets the cached copy of block `blocknr`
/// under its shard's lock, or else a copy read from the device and checked with no lock held,
/// so that a miss holds nobody up for a device read or a checksum. The copy is cached (and
/// marked verified if `f` says so) only if no write to a block of its slot came in between.
pub(crate) fn read_through<S: Shards, R>(
    store: &mut S,
    blocknr: u64,
    f: impl FnOnce(&[u8], bool) -> (bool, R),
) -> Result<R, CoreError> {
    let (f, seq) = match store.with_shard(blocknr, |s| s.try_cached(blocknr, f))? {
        Ok(r) => return Ok(r),
        Err(missed) => missed,
    };
    let mut buf = store.buffer()?;
    store.read_device(blocknr, buf.as_mut())?;
    let verified = store.with_shard(blocknr, |s| {
        s.fill_read(blocknr, buf.as_ref(), seq) && s.verified_at(blocknr, seq)
    })?;
    let (checked, r) = f(buf.as_ref(), verified);
    if checked && !verified {
        store.with_shard(blocknr, |s| s.set_verified_at(blocknr, seq))?;
    }
    Ok(r)
}

impl Shards for BdevStore {
    fn with_shard<R>(
        &mut self,
        blocknr: u64,
        f: impl FnOnce(&mut StoreShard) -> R,
    ) -> Result<R, CoreError> {
        Ok(f(self.shard(blocknr)?))
    }

    fn read_device(&mut self, blocknr: u64, out: &mut [u8]) -> Result<(), CoreError> {
        read_device(&self.bdev, blocknr, out)
    }

    fn buffer(&mut self) -> Result<KBlock, CoreError> {
        self.pool.get_dirty()
    }
}

/// Copies block `b` into `out`, which must be as long.
pub(crate) fn copy_block(out: &mut [u8], b: &[u8]) -> Result<(), CoreError> {
    if out.len() != b.len() {
        return Err(CoreError::Io);
    }
    out.copy_from_slice(b);
    Ok(())
}

/// Copies block `blocknr` of `bdev` into `out` (a block's size).
pub(crate) fn read_device(
    bdev: &BlockDevice,
    blocknr: u64,
    out: &mut [u8],
) -> Result<(), CoreError> {
    bdev.read(blocknr, |b| copy_block(out, b))
        .map_err(|_| CoreError::Io)?
}

/// One shard of a store's node cache and verified table: the blocks whose [`shard_of`] is its
/// index.
pub(crate) struct StoreShard {
    verified: VerifiedBlocks,
    nodes: NodeCache,
    /// Where [`Self::shrink_nodes`] goes on from.
    shrink_at: usize,
}

impl StoreShard {
    fn new() -> Result<Self> {
        Ok(Self {
            verified: VerifiedBlocks::new()?,
            nodes: NodeCache::new()?,
            shrink_at: 0,
        })
    }

    /// Whether `blocknr` passed full validation since it last came from the medium
    /// ([`BlockStore::is_verified`]).
    pub(crate) fn is_verified(&mut self, blocknr: u64) -> bool {
        let tag = blocknr.wrapping_add(1);
        // A dirty node was written by the format code, which writes only valid nodes; its
        // checksum is not computed yet.
        self.verified.slot(blocknr).is_some_and(|s| *s == tag) || self.nodes.is_dirty(blocknr)
    }

    pub(crate) fn set_verified(&mut self, blocknr: u64) {
        if let Some(s) = self.verified.slot(blocknr) {
            *s = blocknr.wrapping_add(1);
        }
    }

    /// Calls `f` with the cached copy of block `blocknr` and whether it is verified, then marks
    /// it verified if `f` says so ([`BlockStore::with_verified_block`]). Without a cached copy
    /// `f` comes back, with what [`Self::fill_read`] needs to know about the slot: the caller
    /// reads the block without the shard's lock.
    fn try_cached<R, F: FnOnce(&[u8], bool) -> (bool, R)>(
        &mut self,
        blocknr: u64,
        f: F,
    ) -> Result<R, (F, u64)> {
        let verified = self.is_verified(blocknr);
        let (checked, r) = match self.nodes.slot(blocknr) {
            Some(s) if s.tag == blocknr.wrapping_add(1) => f(&s.data, verified),
            Some(s) => return Err((f, s.seq)),
            None => return Err((f, 0)),
        };
        if checked {
            self.set_verified(blocknr);
        }
        Ok(r)
    }

    /// Block `blocknr`, read from the device without the shard's lock into `data`, where
    /// [`Self::try_cached`] left its slot at `seq`: cached clean if no write to a block of the
    /// slot came in between (and the slot holds no dirty node). Returns whether none came, and
    /// so whether `data` is the block as the store has it; otherwise the caller's higher locks
    /// must have made the block its own to read (a block is never read and written by two
    /// volumes at once), and only the cache would be wrong.
    fn fill_read(&mut self, blocknr: u64, data: &[u8], seq: u64) -> bool {
        match self.nodes.slot(blocknr) {
            Some(s) if s.seq == seq => {
                // Reading never writes: a dirty node stays.
                if !s.dirty {
                    s.hold(blocknr, data, false);
                }
                true
            }
            _ => false,
        }
    }

    /// Whether block `blocknr` is still verified, if its slot is still at `seq`.
    fn verified_at(&mut self, blocknr: u64, seq: u64) -> bool {
        self.nodes.slot(blocknr).is_some_and(|s| s.seq == seq) && self.is_verified(blocknr)
    }

    /// Marks block `blocknr` verified, if its slot is still at `seq` (no write came since the
    /// copy that was checked was read).
    fn set_verified_at(&mut self, blocknr: u64, seq: u64) {
        if self.nodes.slot(blocknr).is_some_and(|s| s.seq == seq) {
            self.set_verified(blocknr);
        }
    }

    /// Writes `data` as block `blocknr` of `bdev` (through its page cache), keeping the cached
    /// copy in step.
    pub(crate) fn write(
        &mut self,
        bdev: &BlockDevice,
        blocknr: u64,
        data: &[u8],
    ) -> Result<(), CoreError> {
        let r = bdev.write(blocknr, data).map_err(|_| CoreError::Io);
        self.note_write(blocknr, r.is_ok().then_some(data));
        r
    }

    /// Block `blocknr` was written with `data` (`None`: the write failed, and what the device
    /// holds is not known): its verified mark goes, its cached copy follows, and so does the
    /// write count of its slot, which keeps a copy being read without the shard's lock out of
    /// the cache.
    fn note_write(&mut self, blocknr: u64, data: Option<&[u8]>) {
        let tag = blocknr.wrapping_add(1);
        if let Some(s) = self.verified.slot(blocknr) {
            if *s == tag {
                *s = 0;
            }
        }
        if let Some(s) = self.nodes.slot(blocknr) {
            s.seq = s.seq.wrapping_add(1);
            if s.tag == tag {
                s.dirty = false;
                match data {
                    Some(d) if s.data.len() == d.len() => s.data.copy_from_slice(d),
                    _ => s.tag = 0,
                }
            }
        }
    }

    /// [`BlockStore::write_node`]: kept dirty in the cache, or else sealed and written.
    pub(crate) fn write_node(
        &mut self,
        bdev: &BlockDevice,
        blocknr: u64,
        buf: &mut KBlock,
    ) -> Result<(), CoreError> {
        if self.cache_dirty(bdev, blocknr, &buf.data)? {
            return Ok(());
        }
        crate::format::node::seal(&mut buf.data)?;
        self.write(bdev, blocknr, &buf.data)
    }

    /// [`BlockStore::update_node`].
    pub(crate) fn update_node<R>(
        &mut self,
        blocknr: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Option<R> {
        // Only a dirty slot: its node is unsealed and reaches the page cache (sealed) from
        // here, so changing it here is changing that write.
        match self.nodes.slot(blocknr) {
            Some(s) if s.dirty && s.tag == blocknr.wrapping_add(1) => Some(f(&mut s.data)),
            _ => None,
        }
    }

    /// Makes the slot of `blocknr` hold the node write `data`, dirty, first writing back the
    /// dirty node the slot holds for another block. `false` if the block was not cached.
    fn cache_dirty(
        &mut self,
        bdev: &BlockDevice,
        blocknr: u64,
        data: &[u8],
    ) -> Result<bool, CoreError> {
        let Some(s) = self.nodes.slot(blocknr) else {
            return Ok(false);
        };
        if s.tag != blocknr.wrapping_add(1) {
            write_back(bdev, s)?;
        }
        Ok(s.hold(blocknr, data, true))
    }

    /// Clean node copies held: memory the superblock shrinker may take back.
    pub(crate) fn cached_nodes(&self) -> usize {
        self.nodes
            .0
            .iter()
            .filter(|s| !s.dirty && s.data.capacity() > 0)
            .count()
    }

    /// Frees up to `nr` clean node copies (dirty ones wait for the commit), going round the
    /// slots from where the last call stopped; returns how many were freed.
    pub(crate) fn shrink_nodes(&mut self, nr: usize) -> usize {
        let n = self.nodes.0.len();
        let (mut freed, mut seen) = (0usize, 0usize);
        while freed < nr && seen < n {
            let i = self.shrink_at;
            self.shrink_at = i.wrapping_add(1).checked_rem(n).unwrap_or(0);
            seen = seen.saturating_add(1);
            if let Some(s) = self.nodes.0.get_mut(i) {
                if !s.dirty && s.data.capacity() > 0 {
                    s.tag = 0;
                    s.data = KVec::new();
                    freed = freed.saturating_add(1);
                }
            }
        }
        freed
    }

    /// Seals every dirty node and copies it to the page cache.
    pub(crate) fn write_back_all(&mut self, bdev: &BlockDevice) -> Result<(), CoreError> {
        for s in self.nodes.0.iter_mut() {
            write_back(bdev, s)?;
        }
        Ok(())
    }
}

/// Blocks recently validated in full (checksum and structure), as ext4's `buffer_verified`: a
/// direct-mapped table, so a hot metadata block is checksummed once rather than on every visit
/// (placement is still checked on every visit). A slot holds `blocknr + 1`; 0 is empty. This is
/// one shard's part of the table.
struct VerifiedBlocks(KVec<u64>);

/// Bits of a slot index.
pub(super) const VERIFIED_SLOT_BITS: u32 = 15;

/// Slots in the table (256 KiB per mount): more than the metadata blocks of 100,000 files.
pub(super) const VERIFIED_SLOTS: usize = 1 << VERIFIED_SLOT_BITS;

/// Slots of the table in each shard.
const SHARD_VERIFIED_SLOTS: usize = VERIFIED_SLOTS / STORE_SHARDS;

impl VerifiedBlocks {
    fn new() -> Result<Self> {
        Ok(Self(KVec::from_elem(
            0u64,
            SHARD_VERIFIED_SLOTS,
            GFP_KERNEL,
        )?))
    }

    fn slot(&mut self, blocknr: u64) -> Option<&mut u64> {
        // The shard is the index's top bits; the rest places the block in the shard.
        self.0
            .get_mut(slot_index(blocknr, VERIFIED_SLOT_BITS) & (SHARD_VERIFIED_SLOTS - 1))
    }
}

/// The slot of `blocknr` in a direct-mapped table of `1 << bits` slots (`bits` in 1..=32).
/// Fibonacci hashing spreads neighbouring block numbers over the table.
pub(super) fn slot_index(blocknr: u64, bits: u32) -> usize {
    let h = blocknr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits);
    // The shift leaves `bits` bits, so the value fits `usize` and indexes the table.
    usize::try_from(h).unwrap_or(0)
}

/// Copies of recently read and written metadata blocks, write-back for nodes.
///
/// Every tree operation walks from the roots down, so a few blocks (roots, upper levels, the
/// leaves being changed) are read many times per operation; taking them from here skips the
/// page-cache lookup. Nodes written with [`BlockStore::write_node`] stay here unsealed (dirty)
/// until the slot is needed for another block or the next [`Device::flush`]: a node changed many
/// times in a transaction is checksummed and copied to the page cache once (a CRC-32C of a block
/// costs several block copies). Direct-mapped by block
/// number; a slot's buffer is allocated on first use, and a failed allocation only means no
/// caching (the node is then sealed and written at once).
///
/// Coherence: every metadata write goes through the store, and a block is always written as
/// metadata before it is read as metadata again after any other use (the rule the page-cache
/// copy itself relies on, since data bios bypass it). A dirty slot always holds a node of the
/// running transaction: a commit flushes them all before its superblock is written. (An aborted
/// transaction's dirty nodes stay until the unmount; a volume is never reopened on this store.)
struct NodeCache(KVec<NodeSlot>);

struct NodeSlot {
    /// `blocknr + 1`; 0 is empty.
    tag: u64,
    /// Counts the writes to blocks of this slot (node writes kept here included): a copy read
    /// without the shard's lock fills the slot only if this did not move meanwhile
    /// ([`StoreShard::fill_read`]). Filling it with a clean copy does not move it.
    seq: u64,
    /// Written by `write_node` and not yet sealed and copied to the page cache.
    dirty: bool,
    data: KVec<u8>,
}

impl NodeSlot {
    /// Makes the slot hold `data` as block `blocknr`, dropping what it held (the caller wrote
    /// back a dirty node first). `false` if there was no memory for the copy: the slot is empty.
    fn hold(&mut self, blocknr: u64, data: &[u8], dirty: bool) -> bool {
        if dirty {
            // A node write: a copy of a block of the slot being read without the shard's lock
            // is older than it (or of another block, which only costs the fill).
            self.seq = self.seq.wrapping_add(1);
        }
        self.tag = 0;
        self.dirty = false;
        if self.data.len() != data.len() {
            self.data.clear();
            if self.data.extend_from_slice(data, GFP_KERNEL).is_err() {
                return false;
            }
        } else {
            self.data.copy_from_slice(data);
        }
        self.tag = blocknr.wrapping_add(1);
        self.dirty = dirty;
        true
    }
}

/// Bits of a slot index.
const NODE_SLOT_BITS: u32 = 13;

/// Slots in the cache, over all shards (up to 32 MiB per mount once all are used): enough for
/// the nodes busy transactions keep changing (directory, inode and orphan leaves of about a
/// hundred thousand files, in one layer or several), which would otherwise be sealed, written
/// back and read again at every slot collision (the measurements behind the size are in
/// `Documentation/benchmarks.md`).
const NODE_SLOTS: usize = 1 << NODE_SLOT_BITS;

/// Slots of the cache in each shard.
const SHARD_NODE_SLOTS: usize = NODE_SLOTS / STORE_SHARDS;

impl NodeCache {
    fn new() -> Result<Self> {
        let mut slots = KVec::with_capacity(SHARD_NODE_SLOTS, GFP_KERNEL)?;
        for _ in 0..SHARD_NODE_SLOTS {
            slots.push(
                NodeSlot {
                    tag: 0,
                    seq: 0,
                    dirty: false,
                    data: KVec::new(),
                },
                GFP_KERNEL,
            )?;
        }
        Ok(Self(slots))
    }

    fn slot(&mut self, blocknr: u64) -> Option<&mut NodeSlot> {
        // The shard is the index's top bits; the rest places the block in the shard.
        self.0
            .get_mut(slot_index(blocknr, NODE_SLOT_BITS) & (SHARD_NODE_SLOTS - 1))
    }

    /// Whether `blocknr` is cached dirty.
    fn is_dirty(&mut self, blocknr: u64) -> bool {
        self.slot(blocknr)
            .is_some_and(|s| s.dirty && s.tag == blocknr.wrapping_add(1))
    }
}

/// Seals the dirty node in `slot` and copies it to the page cache; the slot stays, clean.
fn write_back(bdev: &BlockDevice, slot: &mut NodeSlot) -> Result<(), CoreError> {
    if !slot.dirty {
        return Ok(());
    }
    let blocknr = slot.tag.checked_sub(1).ok_or(CoreError::Io)?;
    crate::format::node::seal(&mut slot.data)?;
    bdev.write(blocknr, &slot.data).map_err(|_| CoreError::Io)?;
    slot.dirty = false;
    Ok(())
}

impl BlockStore for BdevStore {
    type Buf = KBlock;

    shard_reads!();

    fn is_verified(&mut self, blocknr: u64) -> bool {
        self.shard(blocknr).is_ok_and(|s| s.is_verified(blocknr))
    }

    fn set_verified(&mut self, blocknr: u64) {
        if let Ok(s) = self.shard(blocknr) {
            s.set_verified(blocknr);
        }
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        Some(&mut self.single)
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        Some(&mut self.in_place)
    }

    fn alloc_buf(&mut self) -> Result<KBlock, CoreError> {
        self.pool.get()
    }

    fn write(&mut self, blocknr: u64, buf: &KBlock) -> Result<(), CoreError> {
        if self.read_only {
            return Err(CoreError::ReadOnly);
        }
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        let shard = self
            .shards
            .get_mut(shard_of(blocknr))
            .ok_or(CoreError::Io)?;
        shard.write(&self.bdev, blocknr, &buf.data)
    }

    fn update_node<R>(&mut self, blocknr: u64, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        self.shard(blocknr).ok()?.update_node(blocknr, f)
    }

    fn write_node(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
        if self.read_only {
            return Err(CoreError::ReadOnly);
        }
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        let shard = self
            .shards
            .get_mut(shard_of(blocknr))
            .ok_or(CoreError::Io)?;
        shard.write_node(&self.bdev, blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.total_blocks
    }
}

impl Device for BdevStore {
    fn flush(&mut self) -> Result<(), CoreError> {
        if self.read_only {
            return Ok(());
        }
        self.write_back()?;
        self.bdev.flush().map_err(|_| CoreError::Io)
    }

    fn write_back(&mut self) -> Result<(), CoreError> {
        if self.read_only {
            return Ok(());
        }
        for s in self.shards.iter_mut() {
            s.write_back_all(&self.bdev)?;
        }
        Ok(())
    }
}

#[kunit_tests(lcfs_store_shard)]
mod tests {
    use super::*;

    /// A block's worth of `byte`.
    fn block(byte: u8) -> KVec<u8> {
        KVec::from_elem(byte, BLOCK_SIZE as usize, GFP_KERNEL).unwrap()
    }

    /// The first byte of the cached copy of `blocknr`, or `None` on a miss (with its slot's
    /// write count).
    fn cached(shard: &mut StoreShard, blocknr: u64) -> Result<u8, u64> {
        shard
            .try_cached(blocknr, |b, _| (false, b.first().copied().unwrap_or(0)))
            .map_err(|(_, seq)| seq)
    }

    #[test]
    fn a_block_and_its_slots_share_a_shard() {
        for b in Iterator::chain(0..200_000u64, [u64::MAX - 1]) {
            let shard = shard_of(b);
            assert!(shard < STORE_SHARDS);
            assert_eq!(
                shard,
                slot_index(b, NODE_SLOT_BITS) >> (NODE_SLOT_BITS - SHARD_BITS)
            );
            assert_eq!(
                shard,
                slot_index(b, VERIFIED_SLOT_BITS) >> (VERIFIED_SLOT_BITS - SHARD_BITS)
            );
        }
    }

    #[test]
    fn a_read_outside_the_lock_is_cached_when_no_write_came_between() {
        let mut shard = StoreShard::new().unwrap();
        let seq = cached(&mut shard, 7).unwrap_err();
        assert!(shard.fill_read(7, &block(0xaa), seq));
        assert_eq!(cached(&mut shard, 7), Ok(0xaa));
        // Checked while unlocked: marked, as the slot did not change.
        assert!(!shard.is_verified(7));
        shard.set_verified_at(7, seq);
        assert!(shard.is_verified(7));
    }

    #[test]
    fn a_write_between_keeps_the_old_copy_out() {
        let mut shard = StoreShard::new().unwrap();
        let seq = cached(&mut shard, 7).unwrap_err();
        // Another volume writes the block (or one of its slot) while the copy is read.
        shard.note_write(7, Some(&block(0xbb)));
        assert!(!shard.fill_read(7, &block(0xaa), seq));
        assert!(!shard.verified_at(7, seq));
        shard.set_verified_at(7, seq);
        assert!(!shard.is_verified(7));
        assert!(cached(&mut shard, 7).is_err());
    }

    #[test]
    fn a_node_write_between_keeps_the_old_copy_out() {
        let mut shard = StoreShard::new().unwrap();
        let seq = cached(&mut shard, 7).unwrap_err();
        // A node write kept dirty in the slot (`cache_dirty`), of another block of the slot.
        let other = (8..u64::MAX)
            .find(|&b| slot_index(b, NODE_SLOT_BITS) == slot_index(7, NODE_SLOT_BITS))
            .unwrap();
        assert!(shard
            .nodes
            .slot(other)
            .unwrap()
            .hold(other, &block(3), true));
        assert!(!shard.fill_read(7, &block(0xaa), seq));
        assert_eq!(cached(&mut shard, other), Ok(3));
        assert!(shard.is_verified(other));
    }

    #[test]
    fn a_write_updates_or_drops_the_cached_copy() {
        let mut shard = StoreShard::new().unwrap();
        let seq = cached(&mut shard, 9).unwrap_err();
        assert!(shard.fill_read(9, &block(1), seq));
        shard.set_verified(9);
        shard.note_write(9, Some(&block(2)));
        assert_eq!(cached(&mut shard, 9), Ok(2));
        assert!(!shard.is_verified(9));
        shard.note_write(9, None);
        assert!(cached(&mut shard, 9).is_err());
    }
}

// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The reference-count map: the reference count of every block, and the free-space index.
//!
//! Every block of the filesystem has a 32-bit count: 0 is free, `n` is referenced `n` times (by
//! tree parents, layer roots, file extents, or the superblock for fixed blocks). The map is a
//! fixed-shape radix tree of 4 KiB nodes stored in the blocks it describes:
//!
//! * a leaf holds the counts of [`LEAF_ENTRIES`] consecutive blocks;
//! * an interior node holds [`NODE_ENTRIES`] entries `(child, free, pinned)`, each a `u64`: the child's block
//!   (0: the whole child range is free and not materialised), and how many blocks under it are
//!   free or pinned. The summaries make finding free space O(height) whatever the device size,
//!   and a fresh filesystem only materialises the nodes it uses.
//!
//! The map is copy-on-write like everything else: a node written by an earlier transaction is
//! copied before it changes, so the committed map stays intact until the superblock switches. A
//! count that drops to 0 is *pinned* ([`PINNED`]) rather than freed: the committed trees may
//! still use the block, so it is not handed out again before the transaction commits. Commit
//! turns pins into free blocks (no allocation is needed for that: every node holding a pin was
//! already copied in this transaction). A committed map never holds a pin.
//!
//! A commit may also be *split* ([`RefMap::split_commit`]) so that the next transaction takes
//! changes while the device part of the commit runs: the committed map frees its pins, while the
//! next transaction keeps them (in copies of the pinned paths) until that commit is durable
//! ([`RefMap::commit_done`]), since until then the commit before it still uses those blocks.
//! A pin records the parity of the generation that made it, so the two kinds are told apart.
//!
//! Changing the map may itself need new blocks (to copy a node). The recursion is broken in two
//! phases: first every node on the path to the leaf is made writable, each copy being a complete
//! map operation of its own; then the change is applied along a path that no longer allocates.
//!
//! Node layout: 64-byte header, then the body.
//!
//! | offset | size | field        |
//! |-------:|-----:|--------------|
//! |      0 |    4 | magic `LCFR` |
//! |      4 |    4 | CRC-32C of the block with this field zero |
//! |      8 |    8 | block number of the node itself |
//! |     16 |    8 | generation that wrote it |
//! |     24 |    8 | filesystem id |
//! |     32 |    1 | level (0: leaf) |
//! |     33 |    7 | reserved, zero |
//! |     40 |    8 | first block number the node covers |
//! |     48 |   16 | reserved, zero |
//!
//! Leaf body: [`LEAF_ENTRIES`] little-endian `u32` counts. Interior body: [`NODE_ENTRIES`] entries
//! of `child` u64, `free` u64, `pinned` u64 (24 bytes each).

use core::num::NonZeroU64;

use super::bytes::{get_array, get_u32, get_u64, put_array, put_u32, put_u64};
use super::tree::{BlockStore, Error};
use super::{FormatError, BLOCK_SIZE};

/// Magic number of a map node.
pub const MAGIC: [u8; 4] = *b"LCFR";

/// Size of a map node header.
pub const HEADER_SIZE: usize = 64;

/// Counts per leaf.
pub const LEAF_ENTRIES: u64 = LEAF_LEN as u64;
const LEAF_LEN: usize = 1008;

/// Entries per interior node.
pub const NODE_ENTRIES: u64 = NODE_LEN as u64;
const NODE_LEN: usize = 168;

/// Deepest map: a level-5 root covers about 1.3 * 10^14 blocks (500 PiB).
pub const MAX_LEVEL: u8 = 5;

/// Count value of a block freed in a running transaction: `PINNED`, plus 1 if that
/// transaction's generation is odd (see [`RefMap::split_commit`]). Only in memory: a committed
/// map never holds a pin.
pub const PINNED: u32 = 1 << 31;

/// The pin a transaction of `generation` makes.
fn pin_of(generation: u64) -> u32 {
    PINNED | u32::from(generation % 2 == 1)
}

/// Whether count value `v` is a pin.
pub fn is_pin(v: u32) -> bool {
    v & PINNED != 0
}

/// Largest reference count.
pub const MAX_REFS: u32 = PINNED - 1;

const NODE_SIZE: usize = BLOCK_SIZE as usize;
const ENTRY_SIZE: usize = 24;
const _: () = assert!(HEADER_SIZE + LEAF_LEN * 4 <= NODE_SIZE);
const _: () = assert!(HEADER_SIZE + NODE_LEN * ENTRY_SIZE <= NODE_SIZE);
// Both bodies fill the block: a map node has no unused bytes, every byte past the header is a
// count or an entry that [`check`] validates (a tree node's unused space is checked by fsck,
// see `node::unused`).
const _: () = assert!(HEADER_SIZE + LEAF_LEN * 4 == NODE_SIZE);
const _: () = assert!(HEADER_SIZE + NODE_LEN * ENTRY_SIZE == NODE_SIZE);

/// Blocks taken or released by map-node copies whose counts are not yet recorded (see
/// [`RefMap::make_writable`]). Each node copy adds two (the block taken, the block released), a
/// path copy at most `2 * (MAX_LEVEL + 1)`; each is recorded and taken out as soon as its own path
/// is copied, so the list holds a few path copies' worth however far the copies chain.
const MAX_PENDING: usize = 64;

mod off {
    pub(super) const MAGIC: usize = 0;
    pub(super) const CHECKSUM: usize = 4;
    pub(super) const BLOCKNR: usize = 8;
    pub(super) const GENERATION: usize = 16;
    pub(super) const FSID: usize = 24;
    pub(super) const LEVEL: usize = 32;
    pub(super) const RESERVED1: usize = 33;
    pub(super) const FIRST: usize = 40;
    pub(super) const RESERVED2: usize = 48;
}

/// Blocks covered by a node of `level`. Never zero, so dividing by it has no panic path.
pub fn coverage(level: u8) -> NonZeroU64 {
    const LEAF: NonZeroU64 = NonZeroU64::new(LEAF_ENTRIES).unwrap();
    const NODE: NonZeroU64 = NonZeroU64::new(NODE_ENTRIES).unwrap();
    let mut c = LEAF;
    for _ in 0..level.min(MAX_LEVEL) {
        c = c.saturating_mul(NODE);
    }
    c
}

/// Level of the root of a map for `total_blocks`.
pub fn levels_for(total_blocks: u64) -> Result<u8, FormatError> {
    (0..=MAX_LEVEL)
        .find(|&l| coverage(l).get() >= total_blocks)
        .ok_or(FormatError::BadField("total_blocks"))
}

/// Header of a map node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapHeader {
    /// Generation that wrote the node.
    pub generation: u64,
    /// Level, 0 for a leaf.
    pub level: u8,
    /// First block covered.
    pub first: u64,
}

/// What a reader expects of a map node.
#[derive(Clone, Copy, Debug)]
pub struct MapExpect {
    /// Where it was read from.
    pub blocknr: u64,
    /// Filesystem id.
    pub fsid: u64,
    /// Level.
    pub level: u8,
    /// First block covered.
    pub first: u64,
    /// The running transaction: newer nodes cannot exist.
    pub txn_generation: u64,
    /// The oldest generation whose nodes may hold pins: older nodes are committed. The
    /// running transaction's, or the one before it while a split commit copies its pins.
    pub pins_from: u64,
    /// Blocks of the filesystem.
    pub total_blocks: u64,
}

fn checksum(buf: &[u8]) -> Result<u32, FormatError> {
    super::crc32c::checksum_with_field(buf, off::CHECKSUM, NODE_SIZE)
}

/// Count `i` of a leaf.
pub fn leaf_get(buf: &[u8], i: u64) -> Result<u32, FormatError> {
    let i = usize::try_from(i).map_err(|_| FormatError::Truncated)?;
    if i >= LEAF_LEN {
        return Err(FormatError::Truncated);
    }
    get_u32(buf, leaf_offset(i))
}

/// Byte offset of count `i < LEAF_LEN` in a leaf.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "i < LEAF_LEN: inside the node (see the assertion on the layout)"
)]
fn leaf_offset(i: usize) -> usize {
    HEADER_SIZE + i * 4
}

/// Byte offset of entry `i < NODE_LEN` in an interior node.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "i < NODE_LEN: inside the node (see the assertion on the layout)"
)]
fn entry_offset(i: usize) -> usize {
    HEADER_SIZE + i * ENTRY_SIZE
}

fn leaf_set(buf: &mut [u8], i: u64, v: u32) -> Result<(), FormatError> {
    let i = usize::try_from(i).map_err(|_| FormatError::Truncated)?;
    if i >= LEAF_LEN {
        return Err(FormatError::Truncated);
    }
    put_u32(buf, leaf_offset(i), v)
}

/// An interior entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Child block, 0 when the range is free and not materialised.
    pub child: u64,
    /// Free blocks under the child.
    pub free: u64,
    /// Pinned blocks under the child.
    pub pinned: u64,
}

/// Entry `i` of an interior node.
pub fn entry_get(buf: &[u8], i: u64) -> Result<Entry, FormatError> {
    let i = usize::try_from(i).map_err(|_| FormatError::Truncated)?;
    if i >= NODE_LEN {
        return Err(FormatError::Truncated);
    }
    let at = entry_offset(i);
    Ok(Entry {
        child: get_u64(buf, at)?,
        free: get_u64(buf, at.saturating_add(8))?,
        pinned: get_u64(buf, at.saturating_add(16))?,
    })
}

fn entry_set(buf: &mut [u8], i: u64, e: Entry) -> Result<(), FormatError> {
    let i = usize::try_from(i).map_err(|_| FormatError::Truncated)?;
    if i >= NODE_LEN {
        return Err(FormatError::Truncated);
    }
    let at = entry_offset(i);
    put_u64(buf, at, e.child)?;
    put_u64(buf, at.saturating_add(8), e.free)?;
    put_u64(buf, at.saturating_add(16), e.pinned)
}

/// Blocks of the filesystem inside `[first, first + coverage(level))`.
fn span(first: u64, level: u8, total_blocks: u64) -> u64 {
    total_blocks
        .saturating_sub(first)
        .min(coverage(level).get())
}

fn bad(what: &'static str) -> Error {
    Error::Corrupt(FormatError::BadField(what))
}

/// Level of an interior node's children (an interior node's level is at least 1), and the
/// blocks each child covers.
fn children_of(level: u8) -> Result<(u8, NonZeroU64), Error> {
    let below = level.checked_sub(1).ok_or(bad("map level"))?;
    Ok((below, coverage(below)))
}

/// First block of child `i` of a node covering from `first`, whose children cover `cov` blocks
/// each: within the map's coverage for a valid node, damage otherwise.
fn child_first(first: u64, i: u64, cov: NonZeroU64) -> Result<u64, Error> {
    i.checked_mul(cov.get())
        .and_then(|o| first.checked_add(o))
        .ok_or(bad("map node range"))
}

/// Index of the child of a node covering from `first` (children of `cov` blocks) that holds
/// `blocknr`; the descent only comes here for a block at or after `first`.
fn child_index(blocknr: u64, first: u64, cov: NonZeroU64) -> Result<u64, Error> {
    Ok(blocknr.checked_sub(first).ok_or(bad("map node range"))? / cov)
}

/// Writes an empty node: a leaf with every count 0, or an interior node whose children are all
/// unmaterialised and free.
pub fn init(
    buf: &mut [u8],
    blocknr: u64,
    generation: u64,
    fsid: u64,
    level: u8,
    first: u64,
    total_blocks: u64,
) -> Result<(), FormatError> {
    let b = buf.get_mut(..NODE_SIZE).ok_or(FormatError::Truncated)?;
    b.fill(0);
    put_array(b, off::MAGIC, MAGIC)?;
    put_u64(b, off::BLOCKNR, blocknr)?;
    put_u64(b, off::GENERATION, generation)?;
    put_u64(b, off::FSID, fsid)?;
    put_array(b, off::LEVEL, [level])?;
    put_u64(b, off::FIRST, first)?;
    if let Some(below) = level.checked_sub(1) {
        let child_cov = coverage(below);
        for i in 0..NODE_ENTRIES {
            let start = first.saturating_add(i.saturating_mul(child_cov.get()));
            let free = span(start, below, total_blocks);
            entry_set(
                b,
                i,
                Entry {
                    child: 0,
                    free,
                    pinned: 0,
                },
            )?;
        }
    }
    Ok(())
}

/// Moves a node to `blocknr` in `generation` (copy-on-write).
fn relocate(buf: &mut [u8], blocknr: u64, generation: u64) -> Result<(), FormatError> {
    put_u64(buf, off::BLOCKNR, blocknr)?;
    put_u64(buf, off::GENERATION, generation)
}

/// Stores the checksum.
pub fn seal(buf: &mut [u8]) -> Result<(), FormatError> {
    let sum = checksum(buf)?;
    put_u32(buf, off::CHECKSUM, sum)
}

// A store seals every node the same way, tree or map (`BlockStore::write_node`).
const _: () = assert!(off::CHECKSUM == 4 && NODE_SIZE == super::node::NODE_SIZE);

/// Checks only that a map node already fully validated is the one expected here (see
/// [`super::tree::BlockStore::is_verified`]): magic, location, filesystem, level, first block and
/// generation.
pub fn check_placement(buf: &[u8], e: &MapExpect) -> Result<MapHeader, FormatError> {
    let b = buf.get(..NODE_SIZE).ok_or(FormatError::Truncated)?;
    if get_array::<4>(b, off::MAGIC)? != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let hdr = MapHeader {
        generation: get_u64(b, off::GENERATION)?,
        level: get_array::<1>(b, off::LEVEL)?[0],
        first: get_u64(b, off::FIRST)?,
    };
    if get_u64(b, off::BLOCKNR)? != e.blocknr
        || get_u64(b, off::FSID)? != e.fsid
        || hdr.level != e.level
        || hdr.first != e.first
        || hdr.generation > e.txn_generation
    {
        return Err(FormatError::BadField("map node placement"));
    }
    Ok(hdr)
}

/// Validates a map node read from disk: header, checksum, and every entry's range.
pub fn check(buf: &[u8], e: &MapExpect) -> Result<MapHeader, FormatError> {
    let b = buf.get(..NODE_SIZE).ok_or(FormatError::Truncated)?;
    if get_array::<4>(b, off::MAGIC)? != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let stored = get_u32(b, off::CHECKSUM)?;
    let computed = checksum(b)?;
    if stored != computed {
        return Err(FormatError::BadChecksum { stored, computed });
    }
    let hdr = MapHeader {
        generation: get_u64(b, off::GENERATION)?,
        level: get_array::<1>(b, off::LEVEL)?[0],
        first: get_u64(b, off::FIRST)?,
    };
    if get_u64(b, off::BLOCKNR)? != e.blocknr {
        return Err(FormatError::BadField("map node block number"));
    }
    if get_u64(b, off::FSID)? != e.fsid {
        return Err(FormatError::BadField("map node fsid"));
    }
    if hdr.level != e.level || hdr.first != e.first {
        return Err(FormatError::BadField("map node position"));
    }
    if hdr.generation > e.txn_generation {
        return Err(FormatError::BadField("map node generation"));
    }
    let reserved = b
        .get(off::RESERVED1..off::FIRST)
        .into_iter()
        .chain(b.get(off::RESERVED2..HEADER_SIZE))
        .flatten()
        .all(|&x| x == 0);
    if !reserved {
        return Err(FormatError::BadField("map node reserved"));
    }
    let pins_allowed = hdr.generation >= e.pins_from;
    if hdr.level == 0 {
        for i in 0..LEAF_ENTRIES {
            let v = leaf_get(b, i)?;
            let block = hdr.first.saturating_add(i);
            if block >= e.total_blocks && v != 0 {
                return Err(FormatError::BadField("map count past the end"));
            }
            if is_pin(v) && (v > pin_of(1) || !pins_allowed) {
                return Err(FormatError::BadField("map count"));
            }
        }
    } else {
        let below = hdr.level.saturating_sub(1);
        let child_cov = coverage(below);
        for i in 0..NODE_ENTRIES {
            let en = entry_get(b, i)?;
            let start = hdr.first.saturating_add(i.saturating_mul(child_cov.get()));
            let span = span(start, below, e.total_blocks);
            let used = en.free.checked_add(en.pinned);
            if en.child >= e.total_blocks
                || used.is_none_or(|u| u > span)
                || (span == 0 && en.child != 0)
            {
                return Err(FormatError::BadField("map entry"));
            }
            if en.child == 0 && (en.free != span || en.pinned != 0) {
                return Err(FormatError::BadField("map entry"));
            }
            if en.pinned != 0 && !pins_allowed {
                return Err(FormatError::BadField("map entry"));
            }
        }
    }
    Ok(hdr)
}

/// Callback receiving each map leaf: its first block number and its bytes.
pub type LeafVisitor<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), Error>;

/// Whom a block is being allocated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Tree nodes and map nodes: may use the reserve.
    Metadata,
    /// File data: fails with `NoSpace` once only the reserve is left.
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Set up to `max` consecutive free counts to 1.
    Alloc { max: u32 },
    /// Add one reference to each count.
    Inc,
    /// Drop one reference from each count; those reaching 0 are pinned.
    Dec,
}

/// Where a path from the root to a block first needs a copy.
struct Unwritable {
    /// Parent node and entry index, `None` for the root.
    parent: Option<(u64, u64)>,
    /// The node (0: an unmaterialised range).
    block: u64,
    level: u8,
    first: u64,
}

/// The map of a filesystem, with the running transaction's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefMap {
    /// Root node.
    pub root: u64,
    /// Level of the root.
    pub level: u8,
    /// Free blocks (not counting pinned ones).
    pub free: u64,
    /// Blocks freed in the running transaction.
    pub pinned: u64,
    /// Blocks kept back for metadata: data allocation fails when only these are left, so that
    /// deleting files and layers still works on a full filesystem.
    pub reserve: u64,
    /// Filesystem id.
    pub fsid: u64,
    /// Blocks of the filesystem.
    pub total_blocks: u64,
    /// The running transaction.
    pub generation: u64,
    /// Where the next allocation starts looking (next fit).
    pub cursor: u64,
    /// Pins (counted in `pinned`) of the transaction before, whose commit's device part is
    /// under way: freed by [`Self::commit_done`].
    pub held: u64,
    /// See [`MapExpect::pins_from`].
    pins_from: u64,
    /// Blocks taken for map-node copies (`true`) or released by them (`false`) whose counts are
    /// not recorded yet.
    pending: [(u64, bool); MAX_PENDING],
    npending: usize,
    /// Leaves (`blocknr / LEAF_ENTRIES + 1`) whose whole path this transaction has copied
    /// already: a path stays writable until commit, so this saves re-reading it.
    writable: [u64; WRITABLE_CACHE],
    writable_generation: u64,
}

/// Entries of [`RefMap`]'s cache of writable paths.
const WRITABLE_CACHE: usize = 8;
const WRITABLE_LEN: u64 = WRITABLE_CACHE as u64;

/// Map state passed to [`RefMap::open`].
#[derive(Clone, Copy, Debug)]
pub struct MapParams {
    /// Root node.
    pub root: u64,
    /// Level of the root.
    pub level: u8,
    /// Free blocks recorded by the superblock.
    pub free: u64,
    /// Metadata reserve.
    pub reserve: u64,
    /// Filesystem id.
    pub fsid: u64,
    /// Blocks of the filesystem.
    pub total_blocks: u64,
    /// Generation of the transaction that opens.
    pub generation: u64,
}

/// Free blocks a split commit leaves beyond its copies' worst case and the reserve (4 MiB): a
/// filesystem fuller than that commits the whole way, changes waiting (see
/// [`RefMap::split_commit`]).
const SPLIT_MARGIN: u64 = 1024;

/// The map a split commit writes (see [`RefMap::split_commit`]).
#[derive(Clone, Copy, Debug)]
pub struct MapCommit {
    /// Its root.
    pub root: u64,
    /// Its free blocks.
    pub free: u64,
}

impl RefMap {
    /// Builds the map of a fresh filesystem in `generation`, with blocks `0..fixed` in use.
    /// The map's own nodes are placed right after them. Returns the map; its nodes are written.
    pub fn format<S: BlockStore>(store: &mut S, p: &MapParams, fixed: u64) -> Result<Self, Error> {
        Self::clear_single(store);
        let level = levels_for(p.total_blocks)?;
        let nodes = u64::from(level) + 1;
        let used = fixed.checked_add(nodes).ok_or(Error::Invalid)?;
        if used > LEAF_ENTRIES || used >= p.total_blocks {
            return Err(Error::Invalid);
        }
        // The path to leaf 0: the root at block `fixed`, the leaf at `fixed + level`.
        let mut buf = store.alloc_buf()?;
        // Below `used`, checked above.
        let leaf_block = fixed.saturating_add(u64::from(level));
        init(
            buf.as_mut(),
            leaf_block,
            p.generation,
            p.fsid,
            0,
            0,
            p.total_blocks,
        )?;
        for b in 0..used {
            leaf_set(buf.as_mut(), b, 1)?;
        }
        seal(buf.as_mut())?;
        store.write(leaf_block, &buf)?;
        // `used < total_blocks` and `l <= level`: checked above.
        let free_total = p.total_blocks.saturating_sub(used);
        for l in 1..=level {
            let blocknr = leaf_block.saturating_sub(u64::from(l));
            init(
                buf.as_mut(),
                blocknr,
                p.generation,
                p.fsid,
                l,
                0,
                p.total_blocks,
            )?;
            let mut e = entry_get(buf.as_ref(), 0)?;
            e.child = blocknr.saturating_add(1);
            // Entry 0 covers the leaf-0 path: its free count is the child's total (which
            // holds `used`: the fixed blocks and the path are in leaf 0).
            let child_free = span(0, l.saturating_sub(1), p.total_blocks).saturating_sub(used);
            e.free = child_free;
            entry_set(buf.as_mut(), 0, e)?;
            seal(buf.as_mut())?;
            store.write(blocknr, &buf)?;
        }
        Ok(Self {
            root: fixed,
            level,
            free: free_total,
            pinned: 0,
            reserve: p.reserve,
            fsid: p.fsid,
            total_blocks: p.total_blocks,
            generation: p.generation,
            cursor: used,
            held: 0,
            pins_from: p.generation,
            pending: [(0, false); MAX_PENDING],
            npending: 0,
            writable: [0; WRITABLE_CACHE],
            writable_generation: 0,
        })
    }

    /// Opens the map of a committed filesystem for a new transaction, checking the root's
    /// summary against the superblock's free count.
    pub fn open<S: BlockStore>(store: &mut S, p: &MapParams) -> Result<Self, Error> {
        Self::clear_single(store);
        let level = levels_for(p.total_blocks)?;
        if level != p.level || p.root == 0 || p.root >= p.total_blocks {
            return Err(Error::Corrupt(FormatError::BadField("map root")));
        }
        let mut map = Self {
            root: p.root,
            level,
            free: 0,
            pinned: 0,
            reserve: p.reserve,
            fsid: p.fsid,
            total_blocks: p.total_blocks,
            generation: p.generation,
            cursor: 0,
            held: 0,
            pins_from: p.generation,
            pending: [(0, false); MAX_PENDING],
            npending: 0,
            writable: [0; WRITABLE_CACHE],
            writable_generation: 0,
        };
        let (buf, _) = map.read_node(store, p.root, level, 0)?;
        let (free, pinned) = if level == 0 {
            let mut free = 0u64;
            for i in 0..span(0, 0, p.total_blocks) {
                if leaf_get(buf.as_ref(), i)? == 0 {
                    free = free.saturating_add(1);
                }
            }
            (free, 0)
        } else {
            let mut free = 0u64;
            let mut pinned = 0u64;
            for i in 0..NODE_ENTRIES {
                let e = entry_get(buf.as_ref(), i)?;
                free = free.saturating_add(e.free);
                pinned = pinned.saturating_add(e.pinned);
            }
            (free, pinned)
        };
        if free != p.free || pinned != 0 {
            return Err(Error::Corrupt(FormatError::BadField("free_blocks")));
        }
        map.free = free;
        Ok(map)
    }

    /// What map node `blocknr` (at `level`, covering blocks from `first`) must look like; an
    /// error for a block number no node can have.
    fn expect(&self, blocknr: u64, level: u8, first: u64) -> Result<MapExpect, Error> {
        if blocknr == 0 || blocknr >= self.total_blocks {
            return Err(Error::Corrupt(FormatError::BadField("map block number")));
        }
        Ok(MapExpect {
            blocknr,
            fsid: self.fsid,
            level,
            first,
            txn_generation: self.generation,
            pins_from: self.pins_from,
            total_blocks: self.total_blocks,
        })
    }

    fn read_node<S: BlockStore>(
        &self,
        store: &mut S,
        blocknr: u64,
        level: u8,
        first: u64,
    ) -> Result<(S::Buf, MapHeader), Error> {
        let expect = self.expect(blocknr, level, first)?;
        let buf = store.read_new(blocknr)?;
        let hdr = if store.is_verified(blocknr) {
            check_placement(buf.as_ref(), &expect)?
        } else {
            let hdr = check(buf.as_ref(), &expect)?;
            store.set_verified(blocknr);
            hdr
        };
        Ok((buf, hdr))
    }

    /// Validates map node `blocknr` as [`Self::read_node`] does and calls `f` with it, without
    /// copying it out of the store.
    fn visit_node<S: BlockStore, R>(
        &self,
        store: &mut S,
        blocknr: u64,
        level: u8,
        first: u64,
        f: impl FnOnce(&[u8]) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let expect = self.expect(blocknr, level, first)?;
        store.with_verified_block(blocknr, |buf, verified| {
            let checked = if verified {
                check_placement(buf, &expect)
            } else {
                check(buf, &expect)
            };
            match checked {
                Ok(_) => (!verified, f(buf)),
                Err(e) => (false, Err(e.into())),
            }
        })?
    }

    fn write_node<S: BlockStore>(
        &self,
        store: &mut S,
        blocknr: u64,
        buf: &mut S::Buf,
    ) -> Result<(), Error> {
        store.write_node(blocknr, buf)?;
        store.set_verified(blocknr);
        Ok(())
    }

    /// Reference count of `blocknr` (0 for free or pinned blocks).
    pub fn refcount<S: BlockStore>(&self, store: &mut S, blocknr: u64) -> Result<u32, Error> {
        if blocknr >= self.total_blocks {
            return Err(Error::Corrupt(FormatError::BadField("block number")));
        }
        if self.is_single(store, blocknr) {
            return Ok(1);
        }
        let (mut block, mut level, mut first) = (self.root, self.level, 0u64);
        loop {
            // `Ok`: the count; `Err`: the child to go down to.
            let step = self.visit_node(store, block, level, first, |buf| {
                if level == 0 {
                    let v = leaf_get(
                        buf,
                        blocknr.checked_sub(first).ok_or(bad("map node range"))?,
                    )?;
                    return Ok(Ok(if is_pin(v) { 0 } else { v }));
                }
                let (below, cov) = children_of(level)?;
                let i = child_index(blocknr, first, cov)?;
                let e = entry_get(buf, i)?;
                if e.child == 0 {
                    return Ok(Ok(0));
                }
                Ok(Err((e.child, below, child_first(first, i, cov)?)))
            })?;
            match step {
                Ok(v) => return Ok(v),
                Err(down) => (block, level, first) = down,
            }
        }
    }

    /// Leading blocks of `[start, start + lim)` whose reference count is 1 (`one`) or is not
    /// (free and pinned blocks count 0): one leaf read per leaf covered, where
    /// [`Self::refcount`] reads a whole path per block.
    pub fn count_run<S: BlockStore>(
        &self,
        store: &mut S,
        start: u64,
        lim: u64,
        one: bool,
    ) -> Result<u64, Error> {
        let mut n = 0u64;
        while n < lim {
            let b = start
                .checked_add(n)
                .ok_or(Error::Corrupt(FormatError::BadField("block number")))?;
            if b >= self.total_blocks {
                return Err(Error::Corrupt(FormatError::BadField("block number")));
            }
            let (mut block, mut level, mut first) = (self.root, self.level, 0u64);
            // Down to the leaf covering `b` (`Ok`), or the end of the unmaterialised (free)
            // range holding it (`Err`).
            let leaf = loop {
                if level == 0 {
                    break Ok(());
                }
                let total = self.total_blocks;
                let step = self.visit_node(store, block, level, first, |buf| {
                    let (below, cov) = children_of(level)?;
                    let i = child_index(b, first, cov)?;
                    let e = entry_get(buf, i)?;
                    let child_first = child_first(first, i, cov)?;
                    if e.child == 0 {
                        return Ok(Err(child_first.saturating_add(cov.get()).min(total)));
                    }
                    Ok(Ok((e.child, below, child_first)))
                })?;
                match step {
                    Ok(down) => (block, level, first) = down,
                    Err(range_end) => break Err(range_end),
                }
            };
            match leaf {
                Ok(()) => {}
                // Free blocks count 0.
                Err(_) if one => return Ok(n),
                Err(range_end) => {
                    n = n
                        .saturating_add(range_end.saturating_sub(b).max(1))
                        .min(lim);
                    continue;
                }
            }
            let leaf_end = first.saturating_add(LEAF_ENTRIES).min(self.total_blocks);
            let (counted, stop) = self.visit_node(store, block, 0, first, |buf| {
                // `c` starts at or after `first` (the descent's leaf holds `b`) and stops below
                // `leaf_end`, `n` below `lim`: neither overflows.
                let (mut c, mut n) = (b, n);
                let mut i = c.checked_sub(first).ok_or(bad("map node range"))?;
                while c < leaf_end && n < lim {
                    let v = leaf_get(buf, i)?;
                    let v = if is_pin(v) { 0 } else { v };
                    if (v == 1) != one {
                        return Ok((n, true));
                    }
                    c = c.saturating_add(1);
                    i = i.saturating_add(1);
                    n = n.saturating_add(1);
                }
                Ok((n, false))
            })?;
            n = counted;
            if stop {
                return Ok(n);
            }
        }
        Ok(n)
    }

    /// Finds the top-most node on the path to `blocknr` that this transaction has not copied yet.
    fn find_unwritable<S: BlockStore>(
        &self,
        store: &mut S,
        blocknr: u64,
    ) -> Result<Option<Unwritable>, Error> {
        let (mut block, mut level, mut first) = (self.root, self.level, 0u64);
        let mut parent = None;
        loop {
            if block == 0 {
                return Ok(Some(Unwritable {
                    parent,
                    block,
                    level,
                    first,
                }));
            }
            let (buf, hdr) = self.read_node(store, block, level, first)?;
            if hdr.generation != self.generation {
                return Ok(Some(Unwritable {
                    parent,
                    block,
                    level,
                    first,
                }));
            }
            if level == 0 {
                return Ok(None);
            }
            let (below, cov) = children_of(level)?;
            let i = child_index(blocknr, first, cov)?;
            parent = Some((block, i));
            (block, level, first) = (
                entry_get(buf.as_ref(), i)?.child,
                below,
                child_first(first, i, cov)?,
            );
        }
    }

    fn push_pending(&mut self, blocknr: u64, taken: bool) -> Result<(), Error> {
        let slot = self.pending.get_mut(self.npending).ok_or(Error::NoMemory)?;
        *slot = (blocknr, taken);
        // Below `MAX_PENDING`: the slot exists.
        self.npending = self.npending.saturating_add(1);
        Ok(())
    }

    fn is_pending(&self, blocknr: u64) -> bool {
        self.pending
            .iter()
            .take(self.npending)
            .any(|&(b, taken)| taken && b == blocknr)
    }

    fn pending_taken(&self) -> u64 {
        // CAST: at most MAX_PENDING.
        self.pending
            .iter()
            .take(self.npending)
            .filter(|&&(_, taken)| taken)
            .count() as u64
    }

    /// A free block not already taken by a pending copy.
    fn find_unpending<S: BlockStore>(&self, store: &mut S) -> Result<u64, Error> {
        let mut from = self.cursor;
        let mut wrapped = false;
        loop {
            let to = if wrapped { self.cursor } else { u64::MAX };
            match self.find_free(store, self.root, self.level, 0, from, to)? {
                // A block number, below `total_blocks`.
                Some(b) if self.is_pending(b) => from = b.saturating_add(1),
                Some(b) => return Ok(b),
                None if wrapped => return Err(Error::NoSpace),
                None => {
                    wrapped = true;
                    from = 0;
                }
            }
        }
    }

    /// Copies every node on the path to `blocknr` into this transaction, remembering the blocks
    /// taken and released in `pending`.
    fn copy_path<S: BlockStore>(&mut self, store: &mut S, blocknr: u64) -> Result<(), Error> {
        // Leaf numbers from 1: 0 marks an empty slot.
        let leaf = (blocknr / LEAF_ENTRIES).saturating_add(1);
        if self.writable_generation != self.generation {
            self.writable = [0; WRITABLE_CACHE];
            self.writable_generation = self.generation;
        }
        if self.writable.contains(&leaf) {
            return Ok(());
        }
        self.copy_path_uncached(store, blocknr)?;
        let slot = usize::try_from(leaf % WRITABLE_LEN).unwrap_or(0);
        if let Some(s) = self.writable.get_mut(slot) {
            *s = leaf;
        }
        Ok(())
    }

    fn copy_path_uncached<S: BlockStore>(
        &mut self,
        store: &mut S,
        blocknr: u64,
    ) -> Result<(), Error> {
        while let Some(u) = self.find_unwritable(store, blocknr)? {
            if self.free <= self.pending_taken() {
                return Err(Error::NoSpace);
            }
            let new = self.find_unpending(store)?;
            self.push_pending(new, true)?;
            let mut buf = if u.block == 0 {
                let mut buf = store.alloc_buf()?;
                init(
                    buf.as_mut(),
                    new,
                    self.generation,
                    self.fsid,
                    u.level,
                    u.first,
                    self.total_blocks,
                )?;
                buf
            } else {
                let (mut buf, _) = self.read_node(store, u.block, u.level, u.first)?;
                relocate(buf.as_mut(), new, self.generation)?;
                buf
            };
            self.write_node(store, new, &mut buf)?;
            match u.parent {
                None => self.root = new,
                Some((pblock, i)) => {
                    // The parent's first block: `u.first` rounded down to its coverage.
                    // Below the root's level: the node has a parent.
                    let plevel = u.level.saturating_add(1);
                    let pfirst = u.first.saturating_sub(u.first % coverage(plevel));
                    let (mut pbuf, _) = self.read_node(store, pblock, plevel, pfirst)?;
                    let mut e = entry_get(pbuf.as_ref(), i)?;
                    e.child = new;
                    entry_set(pbuf.as_mut(), i, e)?;
                    self.write_node(store, pblock, &mut pbuf)?;
                }
            }
            if u.block != 0 {
                self.push_pending(u.block, false)?;
            }
        }
        Ok(())
    }

    /// Makes the path to `blocknr` writable and records every pending count, so that a change
    /// to `blocknr` can be applied without allocating.
    ///
    /// A pending count is recorded right after its own path is copied: copying it may take and
    /// release more blocks (added to the list), but a copied path stays writable until commit.
    /// Recording those first instead would keep every entry of a chain listed at once, and a
    /// chain is long on an aged map: a released node's count lives in a leaf to copy, whose old
    /// block's count lives in another leaf to copy, and so on, as scattered as the map's nodes.
    /// Taken blocks go first: they lie after the cursor, mostly in a leaf already copied.
    fn make_writable<S: BlockStore>(&mut self, store: &mut S, blocknr: u64) -> Result<(), Error> {
        self.copy_path(store, blocknr)?;
        while let Some(i) = self.next_pending() {
            let (b, taken) = self.pending.get(i).copied().ok_or(Error::NoMemory)?;
            self.copy_path(store, b)?;
            let op = if taken { Op::Alloc { max: 1 } } else { Op::Dec };
            self.forget_single(store, b, 1);
            let (n, dfree, dpinned) = self.apply_rec(store, self.root, self.level, 0, b, 1, op)?;
            if n != 1 {
                return Err(Error::Corrupt(FormatError::BadField("map count")));
            }
            self.account(dfree, dpinned)?;
            self.remove_pending(i);
        }
        Ok(())
    }

    /// The pending entry to record next: the newest taken block, else the newest released one.
    fn next_pending(&self) -> Option<usize> {
        let listed = self.pending.get(..self.npending)?;
        listed
            .iter()
            .rposition(|&(_, taken)| taken)
            .or(self.npending.checked_sub(1))
    }

    fn remove_pending(&mut self, i: usize) {
        if let Some(rest) = self.pending.get_mut(i..self.npending) {
            if !rest.is_empty() {
                rest.rotate_left(1);
                self.npending = self.npending.saturating_sub(1);
            }
        }
    }

    fn account(&mut self, dfree: i64, dpinned: i64) -> Result<(), Error> {
        let bad = Error::Corrupt(FormatError::BadField("map summary"));
        self.free = self.free.checked_add_signed(dfree).ok_or(bad)?;
        self.pinned = self.pinned.checked_add_signed(dpinned).ok_or(bad)?;
        Ok(())
    }

    /// Phase two: applies `op` to `len` counts from `blocknr` (all in one leaf) along a path this
    /// transaction owns. Returns how many counts changed and the change in free and pinned
    /// blocks.
    #[allow(clippy::too_many_arguments)]
    fn apply_rec<S: BlockStore>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        first: u64,
        blocknr: u64,
        len: u64,
        op: Op,
    ) -> Result<(u64, i64, i64), Error> {
        let (mut buf, hdr) = self.read_node(store, block, level, first)?;
        if hdr.generation != self.generation {
            return Err(Error::Corrupt(FormatError::BadField("map path not copied")));
        }
        if level == 0 {
            let start = blocknr.checked_sub(first).ok_or(bad("map node range"))?;
            let end = start.checked_add(len).ok_or(bad("block range"))?;
            // Counts of one leaf: `n`, `dfree`, `dpinned` and `i` stay within `LEAF_ENTRIES`.
            let (mut n, mut dfree, mut dpinned) = (0u64, 0i64, 0i64);
            match op {
                Op::Alloc { max } => {
                    let mut i = start;
                    while n < u64::from(max)
                        && i < LEAF_ENTRIES
                        && first.saturating_add(i) < self.total_blocks
                    {
                        if leaf_get(buf.as_ref(), i)? != 0 {
                            break;
                        }
                        leaf_set(buf.as_mut(), i, 1)?;
                        n = n.saturating_add(1);
                        dfree = dfree.saturating_sub(1);
                        i = i.saturating_add(1);
                    }
                }
                Op::Inc | Op::Dec => {
                    for i in start..end {
                        let v = leaf_get(buf.as_ref(), i)?;
                        if v == 0 || is_pin(v) {
                            return Err(Error::Corrupt(FormatError::BadField(
                                "reference to a free block",
                            )));
                        }
                        let nv = if op == Op::Inc {
                            if v >= MAX_REFS {
                                return Err(Error::Invalid);
                            }
                            v.saturating_add(1)
                        } else if v == 1 {
                            dpinned = dpinned.saturating_add(1);
                            pin_of(self.generation)
                        } else {
                            // Neither 0 nor 1 (checked above).
                            v.saturating_sub(1)
                        };
                        leaf_set(buf.as_mut(), i, nv)?;
                        n = n.saturating_add(1);
                    }
                }
            }
            if n > 0 {
                self.write_node(store, block, &mut buf)?;
            }
            return Ok((n, dfree, dpinned));
        }
        let (below, cov) = children_of(level)?;
        let i = child_index(blocknr, first, cov)?;
        let mut e = entry_get(buf.as_ref(), i)?;
        let (n, dfree, dpinned) = self.apply_rec(
            store,
            e.child,
            below,
            child_first(first, i, cov)?,
            blocknr,
            len,
            op,
        )?;
        let bad = Error::Corrupt(FormatError::BadField("map summary"));
        e.free = e.free.checked_add_signed(dfree).ok_or(bad)?;
        e.pinned = e.pinned.checked_add_signed(dpinned).ok_or(bad)?;
        // An unchanged summary (a reference added to a block in use) leaves the node as it is.
        if n > 0 && (dfree != 0 || dpinned != 0) {
            entry_set(buf.as_mut(), i, e)?;
            self.write_node(store, block, &mut buf)?;
        }
        Ok((n, dfree, dpinned))
    }

    /// Applies `op` to counts `blocknr..blocknr + len` (within one leaf).
    fn apply<S: BlockStore>(
        &mut self,
        store: &mut S,
        blocknr: u64,
        len: u64,
        op: Op,
    ) -> Result<u64, Error> {
        self.forget_single(store, blocknr, len);
        if let Err(e) = self.make_writable(store, blocknr) {
            self.npending = 0;
            return Err(e);
        }
        let (n, dfree, dpinned) =
            self.apply_rec(store, self.root, self.level, 0, blocknr, len, op)?;
        self.account(dfree, dpinned)?;
        Ok(n)
    }

    /// Splits `blocknr..blocknr + len` into per-leaf pieces and applies `op` to each.
    fn apply_range<S: BlockStore>(
        &mut self,
        store: &mut S,
        blocknr: u64,
        len: u64,
        op: Op,
    ) -> Result<(), Error> {
        let end = blocknr
            .checked_add(len)
            .filter(|&e| e <= self.total_blocks && blocknr > 0)
            .ok_or(Error::Corrupt(FormatError::BadField("block range")))?;
        let mut b = blocknr;
        while b < end {
            // `b % LEAF_ENTRIES < LEAF_ENTRIES` and `b < end`: no underflow; `b` stays at most
            // `end`.
            let piece = LEAF_ENTRIES
                .saturating_sub(b % LEAF_ENTRIES)
                .min(end.saturating_sub(b));
            self.apply(store, b, piece, op)?;
            b = b.saturating_add(piece);
        }
        Ok(())
    }

    /// Adds a reference to each block of a range.
    pub fn inc_range<S: BlockStore>(
        &mut self,
        store: &mut S,
        blocknr: u64,
        len: u64,
    ) -> Result<(), Error> {
        self.apply_range(store, blocknr, len, Op::Inc)
    }

    /// Drops a reference from each block of a range; blocks reaching 0 are pinned until commit.
    pub fn dec_range<S: BlockStore>(
        &mut self,
        store: &mut S,
        blocknr: u64,
        len: u64,
    ) -> Result<(), Error> {
        self.apply_range(store, blocknr, len, Op::Dec)
    }

    /// First free block at or after `from` and before `to`.
    fn find_free<S: BlockStore>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        first: u64,
        from: u64,
        to: u64,
    ) -> Result<Option<u64>, Error> {
        let end = first
            .saturating_add(coverage(level).get())
            .min(self.total_blocks)
            .min(to);
        let from = from.max(first);
        if from >= end {
            return Ok(None);
        }
        if block == 0 {
            return Ok(Some(from));
        }
        let (buf, _) = self.read_node(store, block, level, first)?;
        // `first <= from < end`.
        let start = from.saturating_sub(first);
        if level == 0 {
            for (b, i) in (from..end).zip(start..) {
                if leaf_get(buf.as_ref(), i)? == 0 {
                    return Ok(Some(b));
                }
            }
            return Ok(None);
        }
        let (below, cov) = children_of(level)?;
        let mut i = start / cov;
        while i < NODE_ENTRIES {
            let child = child_first(first, i, cov)?;
            if child >= end {
                break;
            }
            let e = entry_get(buf.as_ref(), i)?;
            if e.free > 0 {
                if let Some(b) = self.find_free(store, e.child, below, child, from, to)? {
                    return Ok(Some(b));
                }
            }
            // Below `NODE_ENTRIES`.
            i = i.saturating_add(1);
        }
        Ok(None)
    }

    fn check_space(&self, purpose: Purpose, want: u64) -> Result<(), Error> {
        let floor = match purpose {
            Purpose::Metadata => 0,
            Purpose::Data => self.reserve,
        };
        if self.free < floor.saturating_add(want) {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// Allocates up to `max` consecutive blocks (at least one), each with count 1.
    pub fn alloc_run<S: BlockStore>(
        &mut self,
        store: &mut S,
        purpose: Purpose,
        max: u32,
    ) -> Result<(u64, u32), Error> {
        self.check_space(purpose, 1)?;
        let max = match purpose {
            Purpose::Metadata => max,
            // Never eat into the reserve with a long run.
            // Above the reserve: `check_space` passed.
            Purpose::Data => {
                let room = self.free.saturating_sub(self.reserve);
                max.min(u32::try_from(room).unwrap_or(u32::MAX))
            }
        };
        for _ in 0..64 {
            // Copying map nodes on the previous round may have used the last blocks.
            self.check_space(purpose, 1)?;
            let b = match self.find_unpending(store) {
                Err(Error::NoSpace) => {
                    return Err(Error::Corrupt(FormatError::BadField("free count")))
                }
                r => r?,
            };
            // Copying the path to `b` (inside `apply`) may itself take `b`: then look again.
            let n = self.apply(store, b, 1, Op::Alloc { max: max.max(1) })?;
            if n > 0 {
                // The run lies inside the device.
                self.cursor = b.saturating_add(n);
                let n = u32::try_from(n).map_err(|_| Error::Invalid)?;
                return Ok((b, n));
            }
        }
        Err(Error::Corrupt(FormatError::BadField("free count")))
    }

    fn alloc_one<S: BlockStore>(&mut self, store: &mut S, purpose: Purpose) -> Result<u64, Error> {
        Ok(self.alloc_run(store, purpose, 1)?.0)
    }

    /// Blocks one tree update may take: it copies and splits at most two nodes per level (up
    /// to 6 levels in practice), and each new or freed block may copy a map path.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "the map level is a u8: (255 + 2) * 12 is small"
    )]
    pub fn blocks_per_tree(&self) -> u64 {
        2 * 6 * (u64::from(self.level) + 2)
    }

    /// Allocates a block for a tree node (count 1) and remembers its count (see
    /// [`BlockStore::single_table`]).
    pub fn alloc_node<S: BlockStore>(&mut self, store: &mut S) -> Result<u64, Error> {
        let b = self.alloc_one(store, Purpose::Metadata)?;
        self.note_single(store, b);
        Ok(b)
    }

    /// Reference count of the tree node `blocknr`, remembering a count of 1 (see
    /// [`BlockStore::single_table`]): copy-on-write asks for the count of every node on every
    /// path it changes, and the nodes near a root are on every path.
    pub fn node_refcount<S: BlockStore>(
        &mut self,
        store: &mut S,
        blocknr: u64,
    ) -> Result<u32, Error> {
        let n = self.refcount(store, blocknr)?;
        if n == 1 {
            self.note_single(store, blocknr);
        }
        Ok(n)
    }

    /// The store's table of blocks with count 1 for this transaction: slot 0 holds the
    /// generation the entries belong to, the others `blocknr + 1` (direct-mapped). A table of
    /// another generation is emptied first.
    fn single_table<'a, S: BlockStore>(&self, store: &'a mut S) -> Option<&'a mut [u64]> {
        let t = store.single_table()?;
        let (first, _) = t.split_first_mut()?;
        if *first != self.generation {
            t.fill(0);
            *t.first_mut()? = self.generation;
        }
        Some(t)
    }

    fn single_slot(t: &[u64], blocknr: u64) -> Option<usize> {
        let n = u64::try_from(t.len())
            .ok()?
            .checked_sub(1)
            .filter(|&n| n > 0)?;
        usize::try_from(blocknr.checked_rem(n)?)
            .ok()?
            .checked_add(1)
    }

    fn note_single<S: BlockStore>(&self, store: &mut S, blocknr: u64) {
        if let Some(t) = self.single_table(store) {
            if let Some(slot) = Self::single_slot(t, blocknr).and_then(|i| t.get_mut(i)) {
                *slot = blocknr.wrapping_add(1);
            }
        }
    }

    /// Whether the count of `blocknr` is known to be 1.
    fn is_single<S: BlockStore>(&self, store: &mut S, blocknr: u64) -> bool {
        let Some(t) = self.single_table(store) else {
            return false;
        };
        Self::single_slot(t, blocknr).and_then(|i| t.get(i)) == Some(&blocknr.wrapping_add(1))
    }

    /// Forgets the blocks of `[blocknr, blocknr + len)`: their counts change.
    fn forget_single<S: BlockStore>(&self, store: &mut S, blocknr: u64, len: u64) {
        let Some(t) = self.single_table(store) else {
            return;
        };
        let slots = u64::try_from(t.len()).unwrap_or(u64::MAX);
        if len >= slots {
            t.fill(0);
            return;
        }
        for b in blocknr..blocknr.saturating_add(len) {
            if let Some(slot) = Self::single_slot(t, b).and_then(|i| t.get_mut(i)) {
                if *slot == b.wrapping_add(1) {
                    *slot = 0;
                }
            }
        }
    }

    /// Empties the store's table (a map opened or formatted anew may reuse a generation).
    fn clear_single<S: BlockStore>(store: &mut S) {
        if let Some(t) = store.single_table() {
            t.fill(0);
        }
    }

    /// Turns every pin into a free block: the last step of a commit, before the superblock is
    /// written. Every node holding a pin belongs to this transaction, so nothing is allocated.
    pub fn unpin_all<S: BlockStore>(&mut self, store: &mut S) -> Result<(), Error> {
        if self.held != 0 {
            // The pins of a commit still under way: not free yet.
            return Err(Error::Busy);
        }
        if self.pinned == 0 {
            return Ok(());
        }
        let n = self.unpin_rec(store, self.root, self.level, 0, self.generation, None)?;
        if n != self.pinned {
            return Err(Error::Corrupt(FormatError::BadField("map summary")));
        }
        self.free = self
            .free
            .checked_add(n)
            .ok_or(Error::Corrupt(FormatError::BadField("map summary")))?;
        self.pinned = 0;
        Ok(())
    }

    /// Ends this transaction's map for a commit whose device part runs while the next
    /// transaction takes changes. Returns the map to commit: its root and free count, with
    /// every pin of this transaction freed in it. The map goes on as the next transaction's
    /// (one generation later), which keeps those pins ([`Self::held`]) until
    /// [`Self::commit_done`]: the commit before still uses those blocks until this one is
    /// durable. To keep them apart from the committed nodes it copies every path that holds
    /// one (a few blocks each, freed at the next commit), so it needs free space: `None`, and
    /// nothing done, when less is free than the copies could take with a wide margin; the
    /// caller then commits the whole way ([`Self::unpin_all`]) with changes waiting.
    pub fn split_commit<S: BlockStore>(
        &mut self,
        store: &mut S,
    ) -> Result<Option<MapCommit>, Error> {
        if self.held != 0 {
            return Err(Error::Busy);
        }
        let (root, level, generation, pinned) =
            (self.root, self.level, self.generation, self.pinned);
        let committed = MapCommit {
            root,
            free: self.free.checked_add(pinned).ok_or(bad("map summary"))?,
        };
        if pinned > 0 {
            // Every pinned leaf's path is copied, and each copy releases a node whose count
            // may sit in another leaf to copy: at most every leaf of the map, in chains.
            let leaves = (self.total_blocks / LEAF_ENTRIES).saturating_add(1);
            let paths = pinned.min(leaves).saturating_mul(u64::from(level) + 1);
            let need = paths
                .saturating_add(leaves.min(4096))
                .saturating_mul(2)
                .saturating_add(SPLIT_MARGIN);
            if self.free < self.reserve.saturating_add(need) {
                return Ok(None);
            }
        }
        self.generation = generation.checked_add(1).ok_or(Error::Invalid)?;
        if pinned == 0 {
            self.pins_from = self.generation;
            return Ok(Some(committed));
        }
        // The committed nodes hold pins until they are freed below.
        self.pins_from = generation;
        let r = self.copy_pinned(store, root, level, 0).and_then(|()| {
            // Only the committed map's own nodes (of `generation`) hold its pins: the paths
            // to them were all copied, so the next transaction no longer reaches them.
            match self.unpin_rec(store, root, level, 0, generation, None)? {
                n if n == pinned => Ok(()),
                _ => Err(bad("map summary")),
            }
        });
        self.pins_from = self.generation;
        r?;
        self.held = pinned;
        Ok(Some(committed))
    }

    /// Copies into the running transaction the path to every leaf of the map at `block` that
    /// holds a pin.
    fn copy_pinned<S: BlockStore>(
        &mut self,
        store: &mut S,
        block: u64,
        level: u8,
        first: u64,
    ) -> Result<(), Error> {
        if level == 0 {
            return self.make_writable(store, first);
        }
        let (buf, _) = self.read_node(store, block, level, first)?;
        let (below, cov) = children_of(level)?;
        for i in 0..NODE_ENTRIES {
            let e = entry_get(buf.as_ref(), i)?;
            if e.pinned > 0 {
                self.copy_pinned(store, e.child, below, child_first(first, i, cov)?)?;
            }
        }
        Ok(())
    }

    /// Frees the pins [`Self::split_commit`] kept, once that commit is durable. The split copied
    /// every node holding one into this transaction, so nothing is allocated.
    pub fn commit_done<S: BlockStore>(&mut self, store: &mut S) -> Result<(), Error> {
        if self.held == 0 {
            return Ok(());
        }
        let before = pin_of(self.generation.wrapping_sub(1));
        let n = self.unpin_rec(
            store,
            self.root,
            self.level,
            0,
            self.generation,
            Some(before),
        )?;
        if n != self.held {
            return Err(bad("map summary"));
        }
        self.free = self.free.checked_add(n).ok_or(bad("map summary"))?;
        self.pinned = self.pinned.checked_sub(n).ok_or(bad("map summary"))?;
        self.held = 0;
        Ok(())
    }

    /// Frees the pins (those equal to `only`, or all) under the map node `block`, which with
    /// every node below holding a pin must be of `generation`; returns how many.
    fn unpin_rec<S: BlockStore>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        first: u64,
        generation: u64,
        only: Option<u32>,
    ) -> Result<u64, Error> {
        let (mut buf, hdr) = self.read_node(store, block, level, first)?;
        if hdr.generation != generation {
            return Err(Error::Corrupt(FormatError::BadField(
                "pinned block in old node",
            )));
        }
        let mut n = 0u64;
        if level == 0 {
            for i in 0..LEAF_ENTRIES {
                let v = leaf_get(buf.as_ref(), i)?;
                if is_pin(v) && only.is_none_or(|o| o == v) {
                    leaf_set(buf.as_mut(), i, 0)?;
                    n = n.saturating_add(1);
                }
            }
        } else {
            let (below, cov) = children_of(level)?;
            for i in 0..NODE_ENTRIES {
                let mut e = entry_get(buf.as_ref(), i)?;
                if e.pinned == 0 {
                    continue;
                }
                let got = self.unpin_rec(
                    store,
                    e.child,
                    below,
                    child_first(first, i, cov)?,
                    generation,
                    only,
                )?;
                if got > e.pinned || (only.is_none() && got != e.pinned) {
                    return Err(Error::Corrupt(FormatError::BadField("map summary")));
                }
                if got == 0 {
                    continue;
                }
                e.free = e.free.checked_add(got).ok_or(bad("map summary"))?;
                // At most `e.pinned`, checked above.
                e.pinned = e.pinned.saturating_sub(got);
                entry_set(buf.as_mut(), i, e)?;
                n = n.saturating_add(got);
            }
        }
        if n > 0 {
            self.write_node(store, block, &mut buf)?;
        }
        Ok(n)
    }

    /// Checks the whole map (every node valid, every summary equal to what is below it) and calls
    /// `node(block)` for each map node and `leaf(first_block, leaf_buf)` for each leaf, in block
    /// order. Used by fsck.
    pub fn walk<S: BlockStore>(
        &self,
        store: &mut S,
        node: &mut dyn FnMut(u64),
        leaf: LeafVisitor<'_>,
    ) -> Result<(), Error> {
        let (free, pinned) = self.walk_rec(store, self.root, self.level, 0, node, leaf)?;
        if free != self.free || pinned != self.pinned {
            return Err(Error::Corrupt(FormatError::BadField("free_blocks")));
        }
        Ok(())
    }

    fn walk_rec<S: BlockStore>(
        &self,
        store: &mut S,
        block: u64,
        level: u8,
        first: u64,
        node: &mut dyn FnMut(u64),
        leaf: LeafVisitor<'_>,
    ) -> Result<(u64, u64), Error> {
        let (buf, _) = self.read_node(store, block, level, first)?;
        node(block);
        if level == 0 {
            leaf(first, buf.as_ref())?;
            let (mut free, mut pinned) = (0u64, 0u64);
            for i in 0..span(first, 0, self.total_blocks) {
                match leaf_get(buf.as_ref(), i)? {
                    0 => free = free.saturating_add(1),
                    v if is_pin(v) => pinned = pinned.saturating_add(1),
                    _ => {}
                }
            }
            return Ok((free, pinned));
        }
        let (below, cov) = children_of(level)?;
        let (mut free, mut pinned) = (0u64, 0u64);
        for i in 0..NODE_ENTRIES {
            let e = entry_get(buf.as_ref(), i)?;
            let start = child_first(first, i, cov)?;
            if e.child != 0 {
                let (f, p) = self.walk_rec(store, e.child, below, start, node, leaf)?;
                if f != e.free || p != e.pinned {
                    return Err(Error::Corrupt(FormatError::BadField("map summary")));
                }
            }
            free = free.saturating_add(e.free);
            pinned = pinned.saturating_add(e.pinned);
        }
        Ok((free, pinned))
    }
}

/// The reference-count map as a [`super::volume::Volume`] reaches it: owned by the volume (the
/// tools, one volume alone), or shared by the volumes of several layers changed at once (the
/// kernel), which take a lock of the map's own around each call. Space for an operation is
/// admitted here too, so that operations running at once cannot all be admitted against the same
/// free blocks.
pub trait MapAccess<S: BlockStore>: super::tree::Allocator<S> {
    /// Runs `f` on the map, with `store` as the map reaches it.
    fn with<R>(
        &mut self,
        store: &mut S,
        f: impl for<'x> FnOnce(&mut RefMap, &mut MapStore<'x, S>) -> R,
    ) -> R;

    /// Admits an operation of `trees` tree updates ([`RefMap::blocks_per_tree`] each),
    /// leaving the metadata reserve free if `keep_reserve`: `NoSpace` unless the free blocks
    /// cover that beside what the other operations running at once were admitted for. A shared
    /// map keeps the blocks for this volume until the kernel's view of it ends.
    fn admit(&mut self, trees: u64, keep_reserve: bool) -> Result<(), Error>;

    /// Free blocks beyond the metadata reserve, what `trees` tree updates may take, and what
    /// other operations running at once were admitted for.
    fn room(&mut self, trees: u64) -> u64;

    /// Admits up to `max` data blocks for an operation that then makes `trees` tree updates
    /// (already admitted): as many as [`Self::room`] leaves, `NoSpace` if none. A shared map
    /// reserves them for this volume like [`Self::admit`], so that an operation admitted
    /// meanwhile is never left short by this one's data.
    fn admit_data(&mut self, trees: u64, max: u64) -> Result<u64, Error> {
        match max.min(self.room(trees)) {
            0 => Err(Error::NoSpace),
            n => Ok(n),
        }
    }

    /// Whether data blocks are admitted ([`Self::admit_data`]) and not taken yet: a shared map
    /// keeps them for this volume. An owned map keeps nothing (its room is all its own).
    fn data_admitted(&self) -> bool {
        false
    }

    /// Allocates a run of up to `max` data blocks ([`RefMap::alloc_run`]): the data
    /// [`Self::admit_data`] admitted, whose reservation a shared map gives back once the
    /// blocks are taken.
    fn alloc_data(&mut self, store: &mut S, max: u32) -> Result<(u64, u32), Error> {
        self.with(store, |m, s| m.alloc_run(s, Purpose::Data, max))
    }

    /// Free blocks and the root node: what the next commit's superblock records of the map.
    fn free_and_root(&self) -> (u64, u64);

    /// Takes the next `data_id`. `next` is the superblock's counter, which an owned map
    /// advances; a shared map keeps the counter of its own, under its lock.
    fn alloc_data_id(&mut self, next: &mut u64) -> Result<u64, Error>;
}

/// Takes `data_id` `*next` and moves the counter on: ids stay below the inode number limit.
pub fn take_data_id(next: &mut u64) -> Result<u64, Error> {
    let id = *next;
    if id >= super::INO_LIMIT {
        return Err(Error::NoSpace);
    }
    *next = id.checked_add(1).ok_or(Error::NoSpace)?;
    Ok(id)
}

impl<S: BlockStore> MapAccess<S> for RefMap {
    fn with<R>(
        &mut self,
        store: &mut S,
        f: impl for<'x> FnOnce(&mut RefMap, &mut MapStore<'x, S>) -> R,
    ) -> R {
        f(self, &mut MapStore::new(store, None))
    }

    fn admit(&mut self, trees: u64, keep_reserve: bool) -> Result<(), Error> {
        let need = trees.saturating_mul(self.blocks_per_tree());
        let floor = if keep_reserve { self.reserve } else { 0 };
        if self.free < floor.saturating_add(need) {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    fn room(&mut self, trees: u64) -> u64 {
        let keep = trees.saturating_mul(self.blocks_per_tree());
        self.free.saturating_sub(self.reserve).saturating_sub(keep)
    }

    fn free_and_root(&self) -> (u64, u64) {
        (self.free, self.root)
    }

    fn alloc_data_id(&mut self, next: &mut u64) -> Result<u64, Error> {
        take_data_id(next)
    }
}

/// A block store as the map reaches it: `store`, with the map's table of blocks with count 1
/// ([`BlockStore::single_table`]) kept beside it by a map shared between volumes.
pub struct MapStore<'x, S> {
    store: &'x mut S,
    single: Option<&'x mut [u64]>,
}

impl<'x, S: BlockStore> MapStore<'x, S> {
    /// `store`, with `single` as its table of blocks with count 1 if given (otherwise the
    /// store's own).
    pub fn new(store: &'x mut S, single: Option<&'x mut [u64]>) -> Self {
        Self { store, single }
    }
}

impl<S: BlockStore> BlockStore for MapStore<'_, S> {
    type Buf = S::Buf;

    fn alloc_buf(&mut self) -> Result<Self::Buf, Error> {
        self.store.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut Self::Buf) -> Result<(), Error> {
        self.store.read(blocknr, buf)
    }

    fn write(&mut self, blocknr: u64, buf: &Self::Buf) -> Result<(), Error> {
        self.store.write(blocknr, buf)
    }

    fn write_node(&mut self, blocknr: u64, buf: &mut Self::Buf) -> Result<(), Error> {
        self.store.write_node(blocknr, buf)
    }

    fn read_new(&mut self, blocknr: u64) -> Result<Self::Buf, Error> {
        self.store.read_new(blocknr)
    }

    fn with_block<R>(&mut self, blocknr: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        self.store.with_block(blocknr, f)
    }

    fn with_verified_block<R>(
        &mut self,
        blocknr: u64,
        f: impl FnOnce(&[u8], bool) -> (bool, R),
    ) -> Result<R, Error> {
        self.store.with_verified_block(blocknr, f)
    }

    fn update_node<R>(&mut self, blocknr: u64, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        self.store.update_node(blocknr, f)
    }

    fn total_blocks(&self) -> u64 {
        self.store.total_blocks()
    }

    fn is_verified(&mut self, blocknr: u64) -> bool {
        self.store.is_verified(blocknr)
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        match &mut self.single {
            Some(t) => Some(&mut **t),
            None => self.store.single_table(),
        }
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.store.in_place_table()
    }

    fn set_verified(&mut self, blocknr: u64) {
        self.store.set_verified(blocknr)
    }
}

#[cfg(test)]
#[path = "refmap_tests.rs"]
mod tests;

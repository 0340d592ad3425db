// SPDX-License-Identifier: GPL-2.0 OR MIT

//! B+tree nodes: the 4 KiB blocks of every LCFS metadata tree.
//!
//! A node is a header followed by items. Internal nodes hold `(key, child block)` pairs; leaves
//! hold `(key, value)` pairs whose values are packed from the end of the block downwards, in item
//! order, so that a valid leaf has exactly one byte layout for its contents (which makes validation
//! complete and cheap).
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field         | meaning                                                 |
//! |-------:|-----:|---------------|---------------------------------------------------------|
//! |      0 |    4 | `magic`       | [`NODE_MAGIC`]                                          |
//! |      4 |    4 | `checksum`    | CRC-32C of the block with this field zero               |
//! |      8 |    8 | `blocknr`     | the block's own number (catches misdirected I/O)        |
//! |     16 |    8 | `generation`  | transaction that wrote the node                         |
//! |     24 |    8 | `fsid`        | `Superblock::fsid()`: the UUID's two halves XORed       |
//! |     32 |    1 | `tree`        | kind of tree the node belongs to                        |
//! |     33 |    1 | `level`       | 0 for leaves, parent level = child level + 1            |
//! |     34 |    2 | `nitems`      | number of items                                         |
//! |     36 |    2 | `value_start` | leaves: offset of the lowest value byte; internal: 0    |
//! |     38 |   26 | reserved      | zero                                                    |
//! |     64 |      | items         | internal: 25-byte `key, child u64`;                     |
//! |        |      |               | leaf: 21-byte `key, value offset u16, value length u16` |
//!
//! A key is 17 bytes: `id u64, kind u8, offset u64`, compared in that order.
//!
//! All functions take the node's bytes and check every offset they use: a damaged node gives an
//! error, never a panic. Callers run [`check`] on every block they read before using it.

use super::bytes::{
    get_array, get_u16, get_u64, move_within, put_array, put_bytes, put_u16, put_u32, put_u64,
};
use super::{FormatError, BLOCK_SIZE};

/// Magic number of every tree node.
pub const NODE_MAGIC: [u8; 4] = *b"LCFN";

/// Bytes in a node (one block).
pub const NODE_SIZE: usize = BLOCK_SIZE as usize;

/// Bytes of the node header.
pub const HEADER_SIZE: usize = 64;

/// Bytes of an encoded [`Key`].
pub const KEY_SIZE: usize = 17;

/// Bytes of one internal item (key and child block number).
pub const INTERNAL_ITEM_SIZE: usize = KEY_SIZE + 8;

/// Bytes of one leaf item header (key, value offset, value length).
pub const LEAF_ITEM_SIZE: usize = KEY_SIZE + 4;

/// Most items an internal node holds.
pub const MAX_INTERNAL_ITEMS: usize = (NODE_SIZE - HEADER_SIZE) / INTERNAL_ITEM_SIZE;

/// Largest value a leaf item may hold; bigger objects are split into several items. Chosen so a
/// leaf always holds at least three items, which splitting relies on.
pub const MAX_VALUE_SIZE: usize = 1024;

/// Deepest tree: level of the highest possible root. With at least two children per internal
/// node and at least one item per leaf, eight levels address far more items than any device has
/// blocks.
pub const MAX_LEVEL: u8 = 8;

mod off {
    pub(super) const MAGIC: usize = 0;
    /// Also where a map node keeps its checksum: [`super::seal`] seals both kinds.
    pub(super) const CHECKSUM: usize = 4;
    pub(super) const BLOCKNR: usize = 8;
    pub(super) const GENERATION: usize = 16;
    pub(super) const FSID: usize = 24;
    pub(super) const TREE: usize = 32;
    pub(super) const LEVEL: usize = 33;
    pub(super) const NITEMS: usize = 34;
    pub(super) const VALUE_START: usize = 36;
    pub(super) const RESERVED: usize = 38;
}

/// The key right after `k` (in the order of the tree), `None` after the largest key.
pub fn key_after(k: &Key) -> Option<Key> {
    if let Some(o) = k.offset.checked_add(1) {
        return Some(Key::new(k.id, k.kind, o));
    }
    if let Some(kd) = k.kind.checked_add(1) {
        return Some(Key::new(k.id, kd, 0));
    }
    k.id.checked_add(1).map(|id| Key::new(id, 0, 0))
}

/// The key of a tree item, ordered by `id`, then `kind`, then `offset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Object the item belongs to (inode number, layer id, block number, ...).
    pub id: u64,
    /// Item type.
    pub kind: u8,
    /// Type-specific offset (file offset, name hash, ...).
    pub offset: u64,
}

impl Key {
    /// The smallest key.
    pub const MIN: Key = Key {
        id: 0,
        kind: 0,
        offset: 0,
    };

    /// A key.
    pub const fn new(id: u64, kind: u8, offset: u64) -> Self {
        Self { id, kind, offset }
    }

    fn decode(buf: &[u8], at: usize) -> Result<Self, FormatError> {
        Ok(Self::from_bytes(&get_array::<KEY_SIZE>(buf, at)?))
    }

    /// The key encoded in `b`: id (little endian), kind, offset (little endian).
    fn from_bytes(b: &[u8; KEY_SIZE]) -> Self {
        let [i0, i1, i2, i3, i4, i5, i6, i7, kind, o0, o1, o2, o3, o4, o5, o6, o7] = *b;
        Self {
            id: u64::from_le_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
            kind,
            offset: u64::from_le_bytes([o0, o1, o2, o3, o4, o5, o6, o7]),
        }
    }

    fn encode(&self, buf: &mut [u8], at: usize) -> Result<(), FormatError> {
        put_u64(buf, at, self.id)?;
        put_array(
            buf,
            at.checked_add(8).ok_or(FormatError::Truncated)?,
            [self.kind],
        )?;
        put_u64(
            buf,
            at.checked_add(9).ok_or(FormatError::Truncated)?,
            self.offset,
        )
    }
}

/// The header fields of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The block's own number.
    pub blocknr: u64,
    /// Transaction that wrote the node.
    pub generation: u64,
    /// Filesystem id ([`super::superblock::Superblock::fsid`]).
    pub fsid: u64,
    /// Tree kind.
    pub tree: u8,
    /// Level, 0 for leaves.
    pub level: u8,
    /// Number of items.
    pub nitems: u16,
}

impl Header {
    /// Whether the node is a leaf.
    pub fn is_leaf(&self) -> bool {
        self.level == 0
    }

    /// Level of the node's children: an internal node's level is at least 1, so this fails
    /// only for a leaf.
    pub fn child_level(&self) -> Result<u8, FormatError> {
        self.level
            .checked_sub(1)
            .ok_or(FormatError::BadField("node level"))
    }
}

/// What the reader of a node expects of it.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Block number the node was read from.
    pub blocknr: u64,
    /// Filesystem id.
    pub fsid: u64,
    /// Tree kind.
    pub tree: u8,
    /// Level, if known (it is, except for a root).
    pub level: Option<u8>,
    /// First block past the filesystem: child pointers must be below it.
    pub total_blocks: u64,
}

/// `a + b` for an offset or count within a node. The operands are item indexes, offsets and
/// lengths of a 4 KiB node, so this never fails in practice; an absurd index fails here or at the
/// bounds check that follows.
fn add(a: usize, b: usize) -> Result<usize, FormatError> {
    a.checked_add(b).ok_or(FormatError::Truncated)
}

fn node(buf: &[u8]) -> Result<&[u8], FormatError> {
    buf.get(..NODE_SIZE).ok_or(FormatError::Truncated)
}

fn node_mut(buf: &mut [u8]) -> Result<&mut [u8], FormatError> {
    buf.get_mut(..NODE_SIZE).ok_or(FormatError::Truncated)
}

/// Reads the header without validating the node (use [`check`] for blocks read from disk).
pub fn header(buf: &[u8]) -> Result<Header, FormatError> {
    let buf = node(buf)?;
    Ok(Header {
        blocknr: get_u64(buf, off::BLOCKNR)?,
        generation: get_u64(buf, off::GENERATION)?,
        fsid: get_u64(buf, off::FSID)?,
        tree: get_array::<1>(buf, off::TREE)?[0],
        level: get_array::<1>(buf, off::LEVEL)?[0],
        nitems: get_u16(buf, off::NITEMS)?,
    })
}

fn nitems(buf: &[u8]) -> Result<usize, FormatError> {
    Ok(usize::from(get_u16(buf, off::NITEMS)?))
}

fn set_nitems(buf: &mut [u8], n: usize) -> Result<(), FormatError> {
    put_u16(
        buf,
        off::NITEMS,
        u16::try_from(n).map_err(|_| FormatError::BadField("nitems"))?,
    )
}

fn value_start(buf: &[u8]) -> Result<usize, FormatError> {
    Ok(usize::from(get_u16(buf, off::VALUE_START)?))
}

fn set_value_start(buf: &mut [u8], v: usize) -> Result<(), FormatError> {
    // NODE_SIZE (4096) fits in u16; an empty leaf stores it as is.
    put_u16(
        buf,
        off::VALUE_START,
        u16::try_from(v).map_err(|_| FormatError::BadField("value_start"))?,
    )
}

/// CRC-32C of a node with its checksum field taken as zero.
fn node_checksum(buf: &[u8]) -> Result<u32, FormatError> {
    super::crc32c::checksum_with_field(buf, off::CHECKSUM, NODE_SIZE)
}

/// Starts an empty node in `buf` (which is zeroed first).
pub fn init(buf: &mut [u8], hdr: &Header) -> Result<(), FormatError> {
    let buf = node_mut(buf)?;
    buf.fill(0);
    put_array(buf, off::MAGIC, NODE_MAGIC)?;
    set_header(buf, hdr)?;
    set_nitems(buf, 0)?;
    set_value_start(buf, if hdr.is_leaf() { NODE_SIZE } else { 0 })
}

/// Rewrites the location fields of a node (for a copy-on-write copy): block number, generation.
pub fn relocate(buf: &mut [u8], blocknr: u64, generation: u64) -> Result<(), FormatError> {
    let buf = node_mut(buf)?;
    put_u64(buf, off::BLOCKNR, blocknr)?;
    put_u64(buf, off::GENERATION, generation)
}

fn set_header(buf: &mut [u8], hdr: &Header) -> Result<(), FormatError> {
    put_u64(buf, off::BLOCKNR, hdr.blocknr)?;
    put_u64(buf, off::GENERATION, hdr.generation)?;
    put_u64(buf, off::FSID, hdr.fsid)?;
    put_array(buf, off::TREE, [hdr.tree])?;
    put_array(buf, off::LEVEL, [hdr.level])
}

/// Computes and stores the checksum; call before writing the node out.
pub fn seal(buf: &mut [u8]) -> Result<(), FormatError> {
    let sum = node_checksum(node(buf)?)?;
    put_u32(node_mut(buf)?, off::CHECKSUM, sum)
}

/// Checks only that a node already fully validated is the one the reader expects here: magic,
/// location, filesystem, tree and level (see [`super::tree::BlockStore::is_verified`]).
pub fn check_placement(buf: &[u8], expect: &Expect) -> Result<Header, FormatError> {
    let buf = node(buf)?;
    if get_array::<4>(buf, off::MAGIC)? != NODE_MAGIC {
        return Err(FormatError::BadMagic);
    }
    placement(buf, expect)
}

fn placement(buf: &[u8], expect: &Expect) -> Result<Header, FormatError> {
    let hdr = header(buf)?;
    if hdr.blocknr != expect.blocknr {
        return Err(FormatError::BadField("node blocknr"));
    }
    if hdr.fsid != expect.fsid {
        return Err(FormatError::BadField("node fsid"));
    }
    if hdr.tree != expect.tree {
        return Err(FormatError::BadField("node tree"));
    }
    if hdr.level > MAX_LEVEL || expect.level.is_some_and(|l| l != hdr.level) {
        return Err(FormatError::BadField("node level"));
    }
    Ok(hdr)
}

/// Validates a node read from disk: magic, checksum, location, tree, level, item count, key
/// order, value layout and child pointers. Returns its header.
pub fn check(buf: &[u8], expect: &Expect) -> Result<Header, FormatError> {
    let buf = node(buf)?;
    if get_array::<4>(buf, off::MAGIC)? != NODE_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let stored = super::bytes::get_u32(buf, off::CHECKSUM)?;
    let computed = node_checksum(buf)?;
    if stored != computed {
        return Err(FormatError::BadChecksum { stored, computed });
    }
    let hdr = placement(buf, expect)?;
    if buf
        .get(off::RESERVED..HEADER_SIZE)
        .is_none_or(|r| r.iter().any(|&b| b != 0))
    {
        return Err(FormatError::BadField("node reserved"));
    }
    let n = usize::from(hdr.nitems);
    let mut prev: Option<Key> = None;
    if hdr.is_leaf() {
        let items_end = leaf_item_at(n)?;
        let mut expected_end = NODE_SIZE;
        for i in 0..n {
            let (vo, vl) = leaf_value_range(buf, i)?;
            if vl > MAX_VALUE_SIZE || vo.checked_add(vl) != Some(expected_end) || vo < items_end {
                return Err(FormatError::BadField("leaf value layout"));
            }
            expected_end = vo;
            let key = leaf_key(buf, i)?;
            if prev.is_some_and(|p| p >= key) {
                return Err(FormatError::BadField("key order"));
            }
            prev = Some(key);
        }
        if value_start(buf)? != expected_end || items_end > expected_end {
            return Err(FormatError::BadField("leaf value_start"));
        }
    } else {
        if n == 0 || n > MAX_INTERNAL_ITEMS {
            return Err(FormatError::BadField("internal nitems"));
        }
        if value_start(buf)? != 0 {
            return Err(FormatError::BadField("internal value_start"));
        }
        for i in 0..n {
            let key = internal_key(buf, i)?;
            if prev.is_some_and(|p| p >= key) {
                return Err(FormatError::BadField("key order"));
            }
            prev = Some(key);
            let child = internal_child(buf, i)?;
            if child == 0 || child >= expect.total_blocks || child == hdr.blocknr {
                return Err(FormatError::BadField("child pointer"));
            }
        }
    }
    Ok(hdr)
}

/// The bytes of a node that hold nothing: a leaf's gap between its item headers and its values,
/// or what follows an internal node's items. Writers keep them zero ([`init`] zeroes the whole
/// node, [`leaf_remove`] and [`internal_remove`] zero what they free, inserts only write inside
/// the items), so a node's bytes are a function of its header and items, and no stale bytes of
/// removed items reach the disk. [`check`] does not read them (a reader has no use for them);
/// `fsck.lcfs` reports a node where they are not zero. Fails if the header's counts do not fit
/// the node.
pub fn unused(buf: &[u8]) -> Result<core::ops::Range<usize>, FormatError> {
    let buf = node(buf)?;
    let hdr = header(buf)?;
    let n = usize::from(hdr.nitems);
    let (start, end) = if hdr.is_leaf() {
        (leaf_item_at(n)?, value_start(buf)?)
    } else {
        (internal_item_at(n)?, NODE_SIZE)
    };
    if start > end || end > NODE_SIZE {
        return Err(FormatError::BadField("node unused space"));
    }
    Ok(start..end)
}

// ---- item access ------------------------------------------------------------------------------

fn leaf_item_at(i: usize) -> Result<usize, FormatError> {
    i.checked_mul(LEAF_ITEM_SIZE)
        .and_then(|o| o.checked_add(HEADER_SIZE))
        .ok_or(FormatError::Truncated)
}

fn internal_item_at(i: usize) -> Result<usize, FormatError> {
    i.checked_mul(INTERNAL_ITEM_SIZE)
        .and_then(|o| o.checked_add(HEADER_SIZE))
        .ok_or(FormatError::Truncated)
}

fn check_index(buf: &[u8], i: usize) -> Result<(), FormatError> {
    if i < nitems(buf)? {
        Ok(())
    } else {
        Err(FormatError::BadField("item index"))
    }
}

/// Key of leaf item `i`.
pub fn leaf_key(buf: &[u8], i: usize) -> Result<Key, FormatError> {
    check_index(buf, i)?;
    Key::decode(node(buf)?, leaf_item_at(i)?)
}

fn leaf_value_range(buf: &[u8], i: usize) -> Result<(usize, usize), FormatError> {
    check_index(buf, i)?;
    let at = leaf_item_at(i)?;
    let vo = usize::from(get_u16(buf, add(at, KEY_SIZE)?)?);
    let vl = usize::from(get_u16(buf, add(at, KEY_SIZE + 2)?)?);
    Ok((vo, vl))
}

/// Value of leaf item `i`.
pub fn leaf_value(buf: &[u8], i: usize) -> Result<&[u8], FormatError> {
    let (vo, vl) = leaf_value_range(buf, i)?;
    let end = vo.checked_add(vl).ok_or(FormatError::Truncated)?;
    node(buf)?.get(vo..end).ok_or(FormatError::Truncated)
}

/// Key of internal item `i`: the smallest key in child `i`'s subtree (a lower bound).
pub fn internal_key(buf: &[u8], i: usize) -> Result<Key, FormatError> {
    check_index(buf, i)?;
    Key::decode(node(buf)?, internal_item_at(i)?)
}

/// Child block of internal item `i`.
pub fn internal_child(buf: &[u8], i: usize) -> Result<u64, FormatError> {
    check_index(buf, i)?;
    get_u64(node(buf)?, add(internal_item_at(i)?, KEY_SIZE)?)
}

/// Number of items.
pub fn len(buf: &[u8]) -> Result<usize, FormatError> {
    nitems(node(buf)?)
}

/// First key of the node (leaf or internal); `None` if it is empty.
pub fn first_key(buf: &[u8]) -> Result<Option<Key>, FormatError> {
    if len(buf)? == 0 {
        return Ok(None);
    }
    if header(buf)?.is_leaf() {
        leaf_key(buf, 0).map(Some)
    } else {
        internal_key(buf, 0).map(Some)
    }
}

/// Binary search: `Ok(i)` if item `i` has `key`, else `Err(i)` where it would be inserted.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "lo <= mid < hi <= nitems, a u16: the midpoint and mid + 1 cannot overflow"
)]
pub fn search(buf: &[u8], key: &Key) -> Result<Result<usize, usize>, FormatError> {
    // The hottest loop of every tree walk: the header is read once, and each probe is one
    // bounds-checked slice of the item array.
    let buf = node(buf)?;
    let stride = if get_array::<1>(buf, off::LEVEL)?[0] == 0 {
        LEAF_ITEM_SIZE
    } else {
        INTERNAL_ITEM_SIZE
    };
    let items = buf.get(HEADER_SIZE..).ok_or(FormatError::Truncated)?;
    let (mut lo, mut hi) = (0usize, nitems(buf)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let k = mid
            .checked_mul(stride)
            .and_then(|at| items.get(at..at.checked_add(KEY_SIZE)?))
            .and_then(|b| <&[u8; KEY_SIZE]>::try_from(b).ok())
            .map(Key::from_bytes)
            .ok_or(FormatError::BadField("item index"))?;
        match k.cmp(key) {
            core::cmp::Ordering::Less => lo = mid + 1,
            core::cmp::Ordering::Greater => hi = mid,
            core::cmp::Ordering::Equal => return Ok(Ok(mid)),
        }
    }
    Ok(Err(lo))
}

/// Index of the child of an internal node whose subtree may hold `key`.
pub fn child_index(buf: &[u8], key: &Key) -> Result<usize, FormatError> {
    Ok(match search(buf, key)? {
        Ok(i) => i,
        // Keys below the first separator still go to child 0 (its key is a lower bound only).
        Err(i) => i.saturating_sub(1),
    })
}

// ---- leaf mutation ----------------------------------------------------------------------------

/// Free bytes in a leaf.
pub fn leaf_free(buf: &[u8]) -> Result<usize, FormatError> {
    let used_items = leaf_item_at(len(buf)?)?;
    value_start(buf)?
        .checked_sub(used_items)
        .ok_or(FormatError::BadField("leaf value_start"))
}

/// Whether a leaf has room for one more item with a `value_len`-byte value.
pub fn leaf_fits(buf: &[u8], value_len: usize) -> Result<bool, FormatError> {
    Ok(leaf_free(buf)? >= LEAF_ITEM_SIZE.saturating_add(value_len))
}

/// Inserts `(key, value)` as item `i` of a leaf. Fails without change if it does not fit.
///
/// The caller keeps keys ordered (use [`search`]).
pub fn leaf_insert(buf: &mut [u8], i: usize, key: &Key, value: &[u8]) -> Result<(), FormatError> {
    let n = len(buf)?;
    if i > n || value.len() > MAX_VALUE_SIZE {
        return Err(FormatError::BadField("leaf insert"));
    }
    if !leaf_fits(buf, value.len())? {
        return Err(FormatError::BadField("leaf full"));
    }
    let vl = value.len();
    let vs = value_start(buf)?;
    let below = |x: usize| x.checked_sub(vl).ok_or(FormatError::Truncated);
    // Values of items i.. sit below the new one: move them down by `vl`.
    let split = match i.checked_sub(1) {
        None => NODE_SIZE,
        Some(prev) => leaf_value_range(buf, prev)?.0,
    };
    let buf = node_mut(buf)?;
    move_within(buf, vs, split, below(vs)?)?;
    for j in i..n {
        let at = add(leaf_item_at(j)?, KEY_SIZE)?;
        let vo = usize::from(get_u16(buf, at)?);
        put_u16(
            buf,
            at,
            u16::try_from(below(vo)?).map_err(|_| FormatError::Truncated)?,
        )?;
    }
    // Item headers i.. move up one slot.
    let hs = leaf_item_at(i)?;
    let he = leaf_item_at(n)?;
    move_within(buf, hs, he, add(hs, LEAF_ITEM_SIZE)?)?;
    let vo = below(split)?;
    key.encode(buf, hs)?;
    put_u16(
        buf,
        add(hs, KEY_SIZE)?,
        u16::try_from(vo).map_err(|_| FormatError::Truncated)?,
    )?;
    put_u16(
        buf,
        add(hs, KEY_SIZE + 2)?,
        u16::try_from(vl).map_err(|_| FormatError::Truncated)?,
    )?;
    put_bytes(buf, vo, value)?;
    set_nitems(buf, add(n, 1)?)?;
    set_value_start(buf, below(vs)?)
}

/// Replaces the value of leaf item `i` with `value`, which has the same length.
pub fn leaf_set_value(buf: &mut [u8], i: usize, value: &[u8]) -> Result<(), FormatError> {
    let (vo, vl) = leaf_value_range(buf, i)?;
    if vl != value.len() {
        return Err(FormatError::BadField("value length"));
    }
    put_bytes(node_mut(buf)?, vo, value)
}

/// Removes leaf item `i`.
pub fn leaf_remove(buf: &mut [u8], i: usize) -> Result<(), FormatError> {
    let n = len(buf)?;
    let (vo, vl) = leaf_value_range(buf, i)?;
    let vs = value_start(buf)?;
    let buf = node_mut(buf)?;
    // Values below item i's move up by `vl`, closing the gap.
    let vs_after = add(vs, vl)?;
    move_within(buf, vs, vo, vs_after)?;
    for j in add(i, 1)?..n {
        let at = add(leaf_item_at(j)?, KEY_SIZE)?;
        let o = usize::from(get_u16(buf, at)?);
        put_u16(
            buf,
            at,
            u16::try_from(add(o, vl)?).map_err(|_| FormatError::Truncated)?,
        )?;
    }
    let hs = leaf_item_at(i)?;
    let he = leaf_item_at(n)?;
    move_within(buf, add(hs, LEAF_ITEM_SIZE)?, he, hs)?;
    let last = he
        .checked_sub(LEAF_ITEM_SIZE)
        .ok_or(FormatError::Truncated)?;
    buf.get_mut(last..he).ok_or(FormatError::Truncated)?.fill(0);
    buf.get_mut(vs..vs_after)
        .ok_or(FormatError::Truncated)?
        .fill(0);
    set_nitems(buf, n.saturating_sub(1))?;
    set_value_start(buf, vs_after)
}

/// Bytes a leaf's items use (headers and values).
pub fn leaf_used(buf: &[u8]) -> Result<usize, FormatError> {
    (NODE_SIZE - HEADER_SIZE)
        .checked_sub(leaf_free(buf)?)
        .ok_or(FormatError::BadField("leaf value_start"))
}

/// Moves items `from..` of leaf `src` to the front of leaf `dst` (whose keys are all larger).
pub fn leaf_move_tail(src: &mut [u8], from: usize, dst: &mut [u8]) -> Result<(), FormatError> {
    let mut at = 0;
    while len(src)? > from {
        let key = leaf_key(src, from)?;
        leaf_insert(dst, at, &key, leaf_value(src, from)?)?;
        leaf_remove(src, from)?;
        at = add(at, 1)?;
    }
    Ok(())
}

/// Moves items `..count` of leaf `src` to the end of leaf `dst` (dst's keys are all smaller).
pub fn leaf_move_head(src: &mut [u8], count: usize, dst: &mut [u8]) -> Result<(), FormatError> {
    for _ in 0..count {
        let key = leaf_key(src, 0)?;
        let at = len(dst)?;
        leaf_insert(dst, at, &key, leaf_value(src, 0)?)?;
        leaf_remove(src, 0)?;
    }
    Ok(())
}

// ---- internal mutation ------------------------------------------------------------------------

/// Inserts `(key, child)` as item `i` of an internal node.
pub fn internal_insert(buf: &mut [u8], i: usize, key: &Key, child: u64) -> Result<(), FormatError> {
    let n = len(buf)?;
    if i > n || n >= MAX_INTERNAL_ITEMS {
        return Err(FormatError::BadField("internal insert"));
    }
    let buf = node_mut(buf)?;
    let hs = internal_item_at(i)?;
    let he = internal_item_at(n)?;
    move_within(buf, hs, he, add(hs, INTERNAL_ITEM_SIZE)?)?;
    key.encode(buf, hs)?;
    put_u64(buf, add(hs, KEY_SIZE)?, child)?;
    set_nitems(buf, add(n, 1)?)
}

/// Removes internal item `i`.
pub fn internal_remove(buf: &mut [u8], i: usize) -> Result<(), FormatError> {
    let n = len(buf)?;
    check_index(buf, i)?;
    let buf = node_mut(buf)?;
    let hs = internal_item_at(i)?;
    let he = internal_item_at(n)?;
    move_within(buf, add(hs, INTERNAL_ITEM_SIZE)?, he, hs)?;
    let last = he
        .checked_sub(INTERNAL_ITEM_SIZE)
        .ok_or(FormatError::Truncated)?;
    buf.get_mut(last..he).ok_or(FormatError::Truncated)?.fill(0);
    set_nitems(buf, n.saturating_sub(1))
}

/// Replaces the key of internal item `i`.
pub fn internal_set_key(buf: &mut [u8], i: usize, key: &Key) -> Result<(), FormatError> {
    check_index(buf, i)?;
    key.encode(node_mut(buf)?, internal_item_at(i)?)
}

/// Replaces the child of internal item `i`.
pub fn internal_set_child(buf: &mut [u8], i: usize, child: u64) -> Result<(), FormatError> {
    check_index(buf, i)?;
    put_u64(node_mut(buf)?, add(internal_item_at(i)?, KEY_SIZE)?, child)
}

/// Moves items `from..` of internal node `src` to the front of `dst` (whose keys are all larger).
pub fn internal_move_tail(src: &mut [u8], from: usize, dst: &mut [u8]) -> Result<(), FormatError> {
    let mut at = 0;
    while len(src)? > from {
        let (k, c) = (internal_key(src, from)?, internal_child(src, from)?);
        internal_insert(dst, at, &k, c)?;
        internal_remove(src, from)?;
        at = add(at, 1)?;
    }
    Ok(())
}

/// Moves items `..count` of internal node `src` to the end of `dst`.
pub fn internal_move_head(src: &mut [u8], count: usize, dst: &mut [u8]) -> Result<(), FormatError> {
    for _ in 0..count {
        let (k, c) = (internal_key(src, 0)?, internal_child(src, 0)?);
        let at = len(dst)?;
        internal_insert(dst, at, &k, c)?;
        internal_remove(src, 0)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)] // Small test indices.
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const FSID: u64 = 0x1234;

    fn leaf(blocknr: u64) -> Vec<u8> {
        let mut b = vec![0u8; NODE_SIZE];
        init(
            &mut b,
            &Header {
                blocknr,
                generation: 1,
                fsid: FSID,
                tree: 1,
                level: 0,
                nitems: 0,
            },
        )
        .unwrap();
        b
    }

    fn expect(blocknr: u64, level: Option<u8>) -> Expect {
        Expect {
            blocknr,
            fsid: FSID,
            tree: 1,
            level,
            total_blocks: 1000,
        }
    }

    fn k(i: u64) -> Key {
        Key::new(i, 1, i * 10)
    }

    #[test]
    fn key_order_is_id_kind_offset() {
        assert!(Key::new(1, 9, 9) < Key::new(2, 0, 0));
        assert!(Key::new(1, 1, 9) < Key::new(1, 2, 0));
        assert!(Key::new(1, 1, 1) < Key::new(1, 1, 2));
    }

    #[test]
    fn leaf_insert_remove_keeps_layout_valid() {
        let mut b = leaf(5);
        for (n, i) in [5u64, 1, 9, 3, 7].into_iter().enumerate() {
            let pos = search(&b, &k(i)).unwrap().unwrap_err();
            leaf_insert(&mut b, pos, &k(i), &vec![i as u8; i as usize * 3]).unwrap();
            seal(&mut b).unwrap();
            check(&b, &expect(5, Some(0))).unwrap();
            assert_eq!(len(&b).unwrap(), n + 1);
        }
        let keys: Vec<u64> = (0..5).map(|i| leaf_key(&b, i).unwrap().id).collect();
        assert_eq!(keys, [1, 3, 5, 7, 9]);
        for i in [1u64, 3, 5, 7, 9] {
            let pos = search(&b, &k(i)).unwrap().unwrap();
            assert_eq!(
                leaf_value(&b, pos).unwrap(),
                &vec![i as u8; i as usize * 3][..]
            );
        }
        leaf_remove(&mut b, 2).unwrap();
        seal(&mut b).unwrap();
        check(&b, &expect(5, Some(0))).unwrap();
        assert_eq!(search(&b, &k(5)).unwrap(), Err(2));
        while len(&b).unwrap() > 0 {
            leaf_remove(&mut b, 0).unwrap();
        }
        seal(&mut b).unwrap();
        check(&b, &expect(5, Some(0))).unwrap();
        // An emptied leaf is byte-identical to a fresh one.
        let mut fresh = leaf(5);
        seal(&mut fresh).unwrap();
        assert_eq!(b, fresh);
    }

    #[test]
    fn leaf_fills_up_and_refuses() {
        let mut b = leaf(5);
        let mut n = 0u64;
        while leaf_fits(&b, 100).unwrap() {
            leaf_insert(&mut b, n as usize, &k(n), &[7; 100]).unwrap();
            n += 1;
        }
        assert_eq!(
            n as usize,
            (NODE_SIZE - HEADER_SIZE) / (LEAF_ITEM_SIZE + 100)
        );
        assert!(leaf_insert(&mut b, 0, &k(1000), &[1; 100]).is_err());
        seal(&mut b).unwrap();
        check(&b, &expect(5, Some(0))).unwrap();
        assert!(leaf_insert(&mut b, 0, &k(1000), &[0; MAX_VALUE_SIZE + 1]).is_err());
    }

    #[test]
    fn check_rejects_damage() {
        let mut b = leaf(5);
        leaf_insert(&mut b, 0, &k(1), b"abc").unwrap();
        leaf_insert(&mut b, 1, &k(2), b"defg").unwrap();
        seal(&mut b).unwrap();
        assert!(check(&b, &expect(6, None)).is_err(), "wrong location");
        assert!(check(&b, &expect(5, Some(1))).is_err(), "wrong level");
        // Every single-bit flip is caught (checksum or field checks).
        for byte in 0..NODE_SIZE {
            let mut bad = b.clone();
            bad[byte] ^= 0x10;
            assert!(check(&bad, &expect(5, None)).is_err(), "flip at {byte}");
        }
        // Structural damage with a valid checksum: keys out of order.
        let mut bad = b.clone();
        k(9).encode(&mut bad, HEADER_SIZE).unwrap();
        seal(&mut bad).unwrap();
        assert_eq!(
            check(&bad, &expect(5, None)),
            Err(FormatError::BadField("key order"))
        );
        // A value pointing outside the packed area.
        let mut bad = b.clone();
        put_u16(&mut bad, HEADER_SIZE + KEY_SIZE, 10).unwrap();
        seal(&mut bad).unwrap();
        assert!(check(&bad, &expect(5, None)).is_err());
        assert!(check(&b[..100], &expect(5, None)).is_err());
    }

    #[test]
    fn internal_nodes() {
        let mut b = vec![0u8; NODE_SIZE];
        init(
            &mut b,
            &Header {
                blocknr: 9,
                generation: 1,
                fsid: FSID,
                tree: 1,
                level: 1,
                nitems: 0,
            },
        )
        .unwrap();
        for i in 0..MAX_INTERNAL_ITEMS as u64 {
            internal_insert(&mut b, i as usize, &k(i), 100 + i).unwrap();
        }
        assert!(internal_insert(&mut b, 0, &k(999), 5).is_err());
        seal(&mut b).unwrap();
        check(&b, &expect(9, Some(1))).unwrap();
        assert_eq!(child_index(&b, &Key::MIN).unwrap(), 0);
        assert_eq!(child_index(&b, &k(3)).unwrap(), 3);
        assert_eq!(child_index(&b, &Key::new(3, 200, 0)).unwrap(), 3);
        assert_eq!(internal_child(&b, 3).unwrap(), 103);
        let mut other = vec![0u8; NODE_SIZE];
        init(
            &mut other,
            &Header {
                blocknr: 10,
                generation: 1,
                fsid: FSID,
                tree: 1,
                level: 1,
                nitems: 0,
            },
        )
        .unwrap();
        internal_move_tail(&mut b, 100, &mut other).unwrap();
        assert_eq!(len(&b).unwrap(), 100);
        assert_eq!(internal_key(&other, 0).unwrap(), k(100));
        internal_set_child(&mut b, 0, 0).unwrap();
        seal(&mut b).unwrap();
        assert_eq!(
            check(&b, &expect(9, Some(1))),
            Err(FormatError::BadField("child pointer"))
        );
    }

    /// Non-zero bytes in the unused space of node `b`.
    fn stale(b: &[u8]) -> usize {
        let r = unused(b).unwrap();
        b[r].iter().filter(|&&x| x != 0).count()
    }

    /// SplitMix64, for a fixed random sequence of changes.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    /// Inserts, removals, value changes and moves between two sibling leaves (every key of `a`
    /// below every key of `b`), with values of bytes that are never zero: after each change the
    /// space between the item headers and the values is all zero, so nothing of a removed or
    /// moved item stays in a node, and both leaves hold exactly what a model says.
    #[test]
    fn leaf_unused_space_stays_zero_through_every_change() {
        let mut rng = Rng(0x5eed);
        let (mut a, mut b) = (leaf(1), leaf(2));
        let mut model = std::collections::BTreeMap::new();
        let value = |id: u64, len: usize, salt: u8| -> Vec<u8> {
            (0..len).map(|i| (id as u8 ^ i as u8 ^ salt) | 1).collect()
        };
        for step in 0..20_000u32 {
            let boundary = leaf_key(&b, 0).map_or(u64::MAX, |k| k.id);
            match rng.below(8) {
                0..=2 => {
                    let id = rng.below(2000);
                    let len = rng.below(300) as usize;
                    let buf = if id < boundary { &mut a } else { &mut b };
                    if let Err(pos) = search(buf, &k(id)).unwrap() {
                        if leaf_fits(buf, len).unwrap() {
                            let v = value(id, len, 0);
                            leaf_insert(buf, pos, &k(id), &v).unwrap();
                            model.insert(id, v);
                        }
                    }
                }
                3 | 4 => {
                    let buf = if rng.below(2) == 0 { &mut a } else { &mut b };
                    let n = len(buf).unwrap() as u64;
                    if n > 0 {
                        let i = rng.below(n) as usize;
                        model.remove(&leaf_key(buf, i).unwrap().id);
                        leaf_remove(buf, i).unwrap();
                    }
                }
                5 => {
                    let buf = if rng.below(2) == 0 { &mut a } else { &mut b };
                    let n = len(buf).unwrap() as u64;
                    if n > 0 {
                        let i = rng.below(n) as usize;
                        let id = leaf_key(buf, i).unwrap().id;
                        let v = value(id, leaf_value(buf, i).unwrap().len(), step as u8);
                        leaf_set_value(buf, i, &v).unwrap();
                        model.insert(id, v);
                    }
                }
                6 => {
                    // The largest items of `a` to the front of `b`, while they fit.
                    let n = len(&a).unwrap();
                    let from = n.saturating_sub(rng.below(4) as usize);
                    let need: usize = (from..n)
                        .map(|i| LEAF_ITEM_SIZE + leaf_value(&a, i).unwrap().len())
                        .sum();
                    if need <= leaf_free(&b).unwrap() {
                        leaf_move_tail(&mut a, from, &mut b).unwrap();
                    }
                }
                _ => {
                    let count = (rng.below(4) as usize).min(len(&b).unwrap());
                    let need: usize = (0..count)
                        .map(|i| LEAF_ITEM_SIZE + leaf_value(&b, i).unwrap().len())
                        .sum();
                    if need <= leaf_free(&a).unwrap() {
                        leaf_move_head(&mut b, count, &mut a).unwrap();
                    }
                }
            }
            assert_eq!((stale(&a), stale(&b)), (0, 0), "step {step}");
        }
        let mut held = Vec::new();
        for (buf, nr) in [(&mut a, 1), (&mut b, 2)] {
            seal(buf).unwrap();
            check(buf, &expect(nr, Some(0))).unwrap();
            for i in 0..len(buf).unwrap() {
                held.push((
                    leaf_key(buf, i).unwrap().id,
                    leaf_value(buf, i).unwrap().to_vec(),
                ));
            }
        }
        assert_eq!(held, model.into_iter().collect::<Vec<_>>());
    }

    /// The same for internal nodes: what follows the items stays zero.
    #[test]
    fn internal_unused_space_stays_zero_through_every_change() {
        let mut rng = Rng(0xfeed);
        let node = |blocknr| {
            let mut b = vec![0u8; NODE_SIZE];
            let hdr = Header {
                blocknr,
                generation: 1,
                fsid: FSID,
                tree: 1,
                level: 1,
                nitems: 0,
            };
            init(&mut b, &hdr).unwrap();
            b
        };
        let (mut a, mut b) = (node(1), node(2));
        for step in 0..20_000u32 {
            let boundary = internal_key(&b, 0).map_or(u64::MAX, |k| k.id);
            match rng.below(6) {
                0..=2 => {
                    let id = rng.below(2000);
                    let buf = if id < boundary { &mut a } else { &mut b };
                    if let Err(pos) = search(buf, &k(id)).unwrap() {
                        if len(buf).unwrap() < MAX_INTERNAL_ITEMS {
                            internal_insert(buf, pos, &k(id), u64::MAX - id).unwrap();
                        }
                    }
                }
                3 => {
                    let buf = if rng.below(2) == 0 { &mut a } else { &mut b };
                    let n = len(buf).unwrap() as u64;
                    if n > 0 {
                        internal_remove(buf, rng.below(n) as usize).unwrap();
                    }
                }
                4 => {
                    let n = len(&a).unwrap();
                    let from = n.saturating_sub(rng.below(8) as usize);
                    if len(&b).unwrap() + (n - from) <= MAX_INTERNAL_ITEMS {
                        internal_move_tail(&mut a, from, &mut b).unwrap();
                    }
                }
                _ => {
                    let count = (rng.below(8) as usize).min(len(&b).unwrap());
                    if len(&a).unwrap() + count <= MAX_INTERNAL_ITEMS {
                        internal_move_head(&mut b, count, &mut a).unwrap();
                    }
                }
            }
            assert_eq!((stale(&a), stale(&b)), (0, 0), "step {step}");
        }
    }

    #[test]
    fn unused_space_of_a_leaf_and_an_internal_node() {
        let mut b = leaf(5);
        assert_eq!(unused(&b).unwrap(), HEADER_SIZE..NODE_SIZE);
        leaf_insert(&mut b, 0, &k(1), b"abc").unwrap();
        assert_eq!(
            unused(&b).unwrap(),
            HEADER_SIZE + LEAF_ITEM_SIZE..NODE_SIZE - 3
        );
        // A header whose counts do not fit gives an error, not a panic.
        put_u16(&mut b, off::VALUE_START, 10).unwrap();
        assert!(unused(&b).is_err());
        put_u16(&mut b, off::NITEMS, u16::MAX).unwrap();
        assert!(unused(&b).is_err());
        assert!(unused(&b[..100]).is_err());
        let mut i = vec![0u8; NODE_SIZE];
        let hdr = Header {
            blocknr: 9,
            generation: 1,
            fsid: FSID,
            tree: 1,
            level: 2,
            nitems: 0,
        };
        init(&mut i, &hdr).unwrap();
        internal_insert(&mut i, 0, &k(1), 7).unwrap();
        assert_eq!(
            unused(&i).unwrap(),
            HEADER_SIZE + INTERNAL_ITEM_SIZE..NODE_SIZE
        );
    }

    #[test]
    fn moving_items_between_leaves() {
        let mut a = leaf(1);
        let mut b = leaf(2);
        for i in 0..10u64 {
            leaf_insert(&mut a, i as usize, &k(i), &[i as u8; 50]).unwrap();
        }
        leaf_move_tail(&mut a, 6, &mut b).unwrap();
        assert_eq!((len(&a).unwrap(), len(&b).unwrap()), (6, 4));
        assert_eq!(leaf_key(&b, 0).unwrap(), k(6));
        leaf_move_head(&mut b, 2, &mut a).unwrap();
        assert_eq!(leaf_key(&a, 7).unwrap(), k(7));
        assert_eq!(leaf_value(&a, 7).unwrap(), &[7u8; 50][..]);
        for (buf, nr) in [(&mut a, 1), (&mut b, 2)] {
            seal(buf).unwrap();
            check(buf, &expect(nr, Some(0))).unwrap();
        }
    }
}

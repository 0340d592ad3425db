//! Corrupted LCFS images for the guest corruption suite (`tests/guest/corrupt.sh`).
//!
//! [`base_image`] builds a small populated filesystem through the format core: a frozen layer
//! `default` with a two-level directory, files with data extents, holes, unwritten extents,
//! hard links, symlinks, device nodes and xattrs (inline and in blocks); a read-write clone
//! `work` that changed some of it (copy-on-write data, renames, unlinks, an orphan and a
//! write left staged, as a crash would leave them); an independent layer `scratch`; and a
//! frozen chain `chain1` <- `chain2` <- `chain3` (two frozen layers, then a read-write one, each
//! changing what the one before holds: copied and punched data, an unlink, xattrs, a staged
//! write, a POSIX ACL kept in blocks of its own). Small enough that the guest walks a mounted
//! mutant in seconds, big enough for two-level trees.
//!
//! [`mutants`] derives mutants from it: each replaces 1 to 3 *live* metadata blocks (superblock
//! copies, tree nodes and map nodes the committed state references, found by their reference
//! count and magic) with a damaged copy, or swaps two of them (the kinds: [`KINDS`]): random
//! bytes, bit flips, interesting values in a field or a named superblock field, zeroed ranges,
//! bytes where a block holds nothing, a whole block zeroed or replaced by another metadata
//! block (a lost or misdirected write). Most damage is re-sealed with a valid checksum, so it
//! reaches the structural and record checks behind the checksum. Everything is a function of
//! the seed and the mutant's number, so mutant `n` is the same whatever the count.
//! [`truncations`] lists the lengths to cut the image to, for the host tests (the guest's
//! images are patched in place, never cut).
//!
//! [`exercise`] is the guest side: what a mounted mutant is put through.

#![allow(clippy::cast_possible_truncation)] // Offsets and small counts within one 4 KiB block.

pub mod exercise;

use anyhow::{anyhow, bail, Result};
use lcfs_format::crc32c;
use lcfs_format::namespace::{NewInode, RenameMode, SetAttr};
use lcfs_format::node::{self, NODE_MAGIC};
use lcfs_format::records::{mode, Timespec};
use lcfs_format::refmap;
use lcfs_format::superblock::{Superblock, SUPERBLOCK_SIZE};
use lcfs_format::tree::{BlockStore, Error as TreeError};
use lcfs_format::volume::Volume;
use lcfs_format::{BLOCK_SIZE, ROOT_INO};
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;

/// Bytes per block.
pub const BLOCK: usize = BLOCK_SIZE as usize;

/// Default image size in blocks (8 MiB: a rename must see 30 tree updates' worth of free
/// blocks, about 1,100).
pub const DEFAULT_BLOCKS: u64 = 2048;

/// Timestamp of everything in the base image.
const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

/// SplitMix64: small, fast and fully determined by its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

trait At<T> {
    fn at(self, what: &str) -> Result<T>;
}

impl<T> At<T> for Result<T, TreeError> {
    fn at(self, what: &str) -> Result<T> {
        self.map_err(|e| anyhow!("{what}: {e:?}"))
    }
}

fn attrs(m: u32) -> NewInode {
    NewInode {
        mode: m,
        uid: 1000,
        gid: 1000,
        rdev: 0,
    }
}

/// The contents of a data block: readable text naming the tag (never a metadata magic).
fn pattern(tag: u64) -> Vec<u8> {
    let line = format!("lcfs-corrupt data block {tag:08}\n");
    line.bytes().cycle().take(BLOCK).collect()
}

/// Writes `tags.len()` blocks of file `ino` from file block `at` as the kernel would: a
/// `map_write` for each run, the data where `map_writeback` says, the size grown to cover the
/// write, then `complete_write` unless `complete` is false (a write still staged, as after a
/// crash).
fn write_blocks(
    vol: &mut Volume<MemDevice>,
    layer: u64,
    ino: u64,
    at: u64,
    tags: &[u64],
    complete: bool,
) -> Result<()> {
    let end = at + tags.len() as u64;
    let mut f = at;
    while f < end {
        let wm = vol.map_write(layer, ino, f, end - f).at("map_write")?;
        let mut g = f;
        while g < f + wm.len {
            let (d, n) = vol
                .map_writeback(layer, ino, g, f + wm.len - g)
                .at("map_writeback")?;
            for i in 0..n {
                let tag = tags[(g + i - at) as usize];
                vol.store().write(d + i, &pattern(tag)).at("data write")?;
            }
            g += n;
        }
        f += wm.len;
    }
    let size = end * u64::from(BLOCK_SIZE);
    if vol.inode(layer, ino).at("inode")?.size < size {
        set_size(vol, layer, ino, size)?;
    }
    if complete {
        vol.complete_write(layer, ino, at, end - at)
            .at("complete_write")?;
    }
    Ok(())
}

fn set_size(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, size: u64) -> Result<()> {
    let attr = SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    vol.set_attr(layer, ino, &attr).at("set_attr size")?;
    Ok(())
}

/// The populated base image of `total_blocks` blocks (at least 2048), as raw bytes.
pub fn base_image(total_blocks: u64) -> Result<Vec<u8>> {
    if total_blocks < 2048 {
        bail!("the base image needs at least 2048 blocks");
    }
    let mut sb = Superblock::new(total_blocks, *b"lcfs-corrupt-img", 1_700_000_000);
    sb.hash_key = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
    sb.set_label("corrupt").map_err(|e| anyhow!("label: {e}"))?;
    let mut vol =
        Volume::format(MemDevice::new(total_blocks), sb, Some(b"default"), NOW).at("format")?;
    populate(&mut vol)?;
    Ok(flatten(&vol.into_store()))
}

fn populate(vol: &mut Volume<MemDevice>) -> Result<()> {
    let dir = attrs(mode::S_IFDIR | 0o755);
    let reg = attrs(mode::S_IFREG | 0o644);
    let lnk = attrs(mode::S_IFLNK | 0o777);
    let base = 1;
    let mut tag = 1u64;
    let mut next_tag = |n: u64| -> Vec<u64> {
        let v = (tag..tag + n).collect();
        tag += n;
        v
    };

    // Layer 1: a directory big enough for a two-level tree, some files with data and xattrs.
    let etc = vol.create(base, ROOT_INO, b"etc", &dir, NOW).at("etc")?;
    let mut files = Vec::new();
    for i in 0..24u64 {
        let ino = vol
            .create(base, etc, format!("file{i:03}").as_bytes(), &reg, NOW)
            .at("file")?;
        if i % 4 == 0 {
            write_blocks(vol, base, ino, 0, &next_tag(1), true)?;
        }
        if i % 10 == 0 {
            vol.set_xattr(base, ino, b"user.index", format!("{i}").as_bytes(), NOW)
                .at("xattr")?;
        }
        files.push(ino);
    }
    let mut d = vol.create(base, etc, b"sub", &dir, NOW).at("sub")?;
    for name in [&b"a"[..], b"b", b"c", b"d"] {
        d = vol.create(base, d, name, &dir, NOW).at("deep dir")?;
    }
    let leaf = vol.create(base, d, b"leaf", &reg, NOW).at("leaf")?;
    write_blocks(vol, base, leaf, 0, &next_tag(2), true)?;

    let data = vol.create(base, ROOT_INO, b"data", &dir, NOW).at("data")?;
    let big = vol.create(base, data, b"big", &reg, NOW).at("big")?;
    write_blocks(vol, base, big, 0, &next_tag(24), true)?;
    write_blocks(vol, base, big, 40, &next_tag(8), true)?;
    vol.link(base, big, data, b"big.link", NOW).at("link")?;
    vol.set_xattr(base, big, b"user.small", b"inline value", NOW)
        .at("xattr")?;
    let value: Vec<u8> = (0..6000u32).map(|i| b'a' + (i % 26) as u8).collect();
    vol.set_xattr(base, big, b"user.big", &value, NOW)
        .at("xattr in blocks")?;
    vol.set_xattr(base, ROOT_INO, b"trusted.root", b"1", NOW)
        .at("xattr")?;
    let sparse = vol.create(base, data, b"sparse", &reg, NOW).at("sparse")?;
    write_blocks(vol, base, sparse, 40, &next_tag(1), true)?;
    let unwritten = vol.create(base, data, b"unwritten", &reg, NOW).at("unw")?;
    vol.allocate(base, unwritten, 0, 4).at("allocate")?;
    set_size(vol, base, unwritten, 4 * u64::from(BLOCK_SIZE))?;
    let empty = vol.create(base, data, b"empty", &reg, NOW).at("empty")?;
    vol.set_xattr(base, empty, b"security.label", b"system_u:object_r", NOW)
        .at("xattr")?;
    let dlink = vol.create(base, data, b"link", &lnk, NOW).at("symlink")?;
    vol.write_inline(base, dlink, b"big", NOW).at("target")?;

    let l = vol.create(base, etc, b"link", &lnk, NOW).at("symlink")?;
    vol.write_inline(base, l, b"file001", NOW).at("target")?;
    let long: Vec<u8> = (0..900u32).map(|i| b"abc/"[(i % 4) as usize]).collect();
    let l = vol
        .create(base, ROOT_INO, b"longlink", &lnk, NOW)
        .at("symlink")?;
    vol.write_inline(base, l, &long, NOW).at("target")?;
    let devs = vol.create(base, ROOT_INO, b"dev", &dir, NOW).at("dev")?;
    let chr = NewInode {
        rdev: (1 << 8) | 3,
        ..attrs(mode::S_IFCHR | 0o666)
    };
    vol.create(base, devs, b"null", &chr, NOW).at("chr")?;
    vol.create(base, devs, b"fifo", &attrs(mode::S_IFIFO | 0o600), NOW)
        .at("fifo")?;
    vol.create(base, devs, b"sock", &attrs(mode::S_IFSOCK | 0o600), NOW)
        .at("sock")?;
    vol.commit(NOW).at("commit")?;
    vol.freeze_layer(base).at("freeze")?;
    vol.commit(NOW).at("commit")?;

    // Layer 2: a clone that changed some of it.
    let later = Timespec {
        sec: NOW.sec + 100,
        nsec: 5,
    };
    // Its changes stay under data/ (the newest inodes, so the last leaves): most of the tree
    // stays shared, and the read-write mount's recovery, which diffs the clone against its
    // parent, reads few leaves (so damage elsewhere is met by lookups and writes instead).
    let work = vol.create_layer(b"work", Some(base), later).at("clone")?;
    write_blocks(vol, work, big, 2, &next_tag(3), true)?;
    write_blocks(vol, work, big, 48, &next_tag(1), true)?;
    vol.set_xattr(work, big, b"user.small", b"changed in the clone", later)
        .at("xattr")?;
    vol.remove_xattr(work, big, b"user.big", later)
        .at("remove xattr")?;
    let new = vol.create(work, data, b"new", &dir, later).at("new")?;
    let f = vol.create(work, new, b"file", &reg, later).at("file")?;
    write_blocks(vol, work, f, 0, &next_tag(3), true)?;
    vol.unlink(work, data, b"big.link", later).at("unlink")?;
    vol.rename(
        work,
        data,
        b"sparse",
        new,
        b"moved",
        RenameMode::Replace,
        later,
    )
    .at("rename")?;
    vol.write_inline(work, dlink, b"new/moved", later)
        .at("retarget")?;
    let chmod = SetAttr {
        mode: Some(0o600),
        uid: Some(0),
        ..SetAttr::default()
    };
    vol.set_attr(work, empty, &chmod).at("chmod")?;
    // A copy-on-write write left staged and an orphan: what a crash leaves for mount recovery.
    write_blocks(vol, work, big, 10, &next_tag(1), false)?;
    let o = vol
        .create(work, data, b"orphan", &reg, later)
        .at("orphan")?;
    write_blocks(vol, work, o, 0, &next_tag(2), true)?;
    vol.unlink_keep(work, data, b"orphan", later)
        .at("unlink_keep")?;
    vol.commit(later).at("commit")?;

    // An independent layer.
    let scratch = vol.create_layer(b"scratch", None, later).at("layer")?;
    let s = vol
        .create(scratch, ROOT_INO, b"s", &reg, later)
        .at("file")?;
    write_blocks(vol, scratch, s, 0, &next_tag(2), true)?;
    vol.commit(later).at("commit")?;

    // A frozen chain: `chain1` (independent), its clone `chain2`, both frozen, and `chain3`, a
    // read-write clone of `chain2`; each changes what the one before it holds (data shared
    // down the chain, copied where changed; a hole punched; an ACL kept in blocks of its own).
    let c1 = vol.create_layer(b"chain1", None, later).at("chain1")?;
    let cdir = vol.create(c1, ROOT_INO, b"c", &dir, later).at("dir")?;
    let acl = posix_acl(130);
    vol.set_xattr(c1, cdir, b"system.posix_acl_default", &acl, later)
        .at("acl in blocks")?;
    let mut chain_files = Vec::new();
    for i in 0..6u64 {
        let f = vol
            .create(c1, cdir, format!("f{i}").as_bytes(), &reg, later)
            .at("file")?;
        write_blocks(vol, c1, f, 0, &next_tag(3), true)?;
        chain_files.push(f);
    }
    vol.commit(later).at("commit")?;
    vol.freeze_layer(c1).at("freeze")?;
    let c2 = vol.create_layer(b"chain2", Some(c1), later).at("chain2")?;
    write_blocks(vol, c2, chain_files[0], 1, &next_tag(1), true)?;
    vol.punch_hole(c2, chain_files[1], 1, 1).at("punch")?;
    vol.unlink(c2, cdir, b"f2", later).at("unlink")?;
    vol.set_xattr(c2, chain_files[3], b"user.chain", b"2", later)
        .at("xattr")?;
    vol.commit(later).at("commit")?;
    vol.freeze_layer(c2).at("freeze")?;
    let c3 = vol.create_layer(b"chain3", Some(c2), later).at("chain3")?;
    write_blocks(vol, c3, chain_files[0], 2, &next_tag(1), true)?;
    write_blocks(vol, c3, chain_files[4], 0, &next_tag(1), false)?;
    vol.create(c3, cdir, b"new", &reg, later).at("file")?;
    vol.commit(later).at("commit")?;
    Ok(())
}

/// A POSIX ACL (the VFS's xattr encoding) with `named` named users: over about 120, it is kept
/// in blocks of its own.
fn posix_acl(named: u32) -> Vec<u8> {
    let mut acl = 2u32.to_le_bytes().to_vec();
    let mut entry = |tag: u16, perm: u16, id: u32| {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    };
    entry(1, 7, u32::MAX);
    for i in 0..named {
        entry(2, 5, 2000 + i);
    }
    entry(4, 5, u32::MAX);
    entry(0x10, 7, u32::MAX);
    entry(0x20, 0, u32::MAX);
    acl
}

fn flatten(dev: &MemDevice) -> Vec<u8> {
    let mut img = vec![0u8; dev.total as usize * BLOCK];
    for (&b, data) in &dev.blocks {
        let at = b as usize * BLOCK;
        img[at..at + BLOCK].copy_from_slice(data);
    }
    img
}

/// An in-memory device holding `image`.
pub fn device(image: &[u8]) -> MemDevice {
    let mut dev = MemDevice::new((image.len() / BLOCK) as u64);
    for (b, chunk) in image.chunks_exact(BLOCK).enumerate() {
        if chunk.iter().any(|&x| x != 0) {
            dev.blocks.insert(b as u64, chunk.to_vec());
        }
    }
    dev
}

/// What a metadata block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Superblock copy (block 0 or 1).
    Superblock,
    /// A node of the layer tree (`tree` 1) or of a layer's tree (2).
    Tree {
        /// Tree kind from the node header.
        tree: u8,
        /// Level, 0 for leaves.
        level: u8,
    },
    /// A reference-count map node.
    Map {
        /// Level, 0 for leaves.
        level: u8,
    },
}

impl Kind {
    fn name(self) -> String {
        match self {
            Kind::Superblock => "super".into(),
            Kind::Tree { tree: 1, level } => format!("layertree-L{level}"),
            Kind::Tree { level, .. } => format!("fstree-L{level}"),
            Kind::Map { level } => format!("map-L{level}"),
        }
    }
}

/// A live metadata block of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaBlock {
    /// Its block number.
    pub blocknr: u64,
    /// What it is.
    pub kind: Kind,
}

/// The metadata blocks the committed state of `image` references: both superblock copies, and
/// every block with a non-zero reference count that carries a tree or map node magic.
pub fn metadata_blocks(image: &[u8]) -> Result<Vec<MetaBlock>> {
    let (mut vol, _) = Volume::open(device(image)).at("open")?;
    let total = vol.superblock().total_blocks;
    let mut out = vec![
        MetaBlock {
            blocknr: 0,
            kind: Kind::Superblock,
        },
        MetaBlock {
            blocknr: 1,
            kind: Kind::Superblock,
        },
    ];
    for b in Superblock::FIXED_BLOCKS..total {
        let buf = &image[b as usize * BLOCK..(b as usize + 1) * BLOCK];
        let kind = if buf[..4] == NODE_MAGIC {
            Kind::Tree {
                tree: buf[32],
                level: buf[33],
            }
        } else if buf[..4] == refmap::MAGIC {
            Kind::Map { level: buf[32] }
        } else {
            continue;
        };
        if vol.refcount(b).at("refcount")? > 0 {
            out.push(MetaBlock { blocknr: b, kind });
        }
    }
    Ok(out)
}

/// One replaced block of a mutant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// Block number.
    pub blocknr: u64,
    /// The new contents, one block.
    pub data: Vec<u8>,
}

/// A damaged variant of the base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutant {
    /// Its number.
    pub id: u32,
    /// The blocks it replaces (1 to 3, distinct).
    pub patches: Vec<Patch>,
    /// What was done, for logs.
    pub desc: String,
}

impl Mutant {
    /// The base image with this mutant's patches applied.
    pub fn apply(&self, base: &[u8]) -> Vec<u8> {
        let mut img = base.to_vec();
        for p in &self.patches {
            let at = p.blocknr as usize * BLOCK;
            img[at..at + BLOCK].copy_from_slice(&p.data);
        }
        img
    }
}

/// Byte ranges of a block that the format reads: damage elsewhere (a leaf's free space, the
/// tail of a superblock block) would only be caught by the checksum.
fn live_ranges(buf: &[u8], kind: Kind) -> Vec<(usize, usize)> {
    match kind {
        Kind::Superblock => vec![(0, SUPERBLOCK_SIZE)],
        Kind::Map { .. } => vec![(0, BLOCK)],
        Kind::Tree { level, .. } => {
            let n = usize::from(u16::from_le_bytes([buf[34], buf[35]]));
            let item = if level == 0 {
                node::LEAF_ITEM_SIZE
            } else {
                node::INTERNAL_ITEM_SIZE
            };
            let items_end = (node::HEADER_SIZE + n * item).min(BLOCK);
            let mut v = vec![(0, items_end)];
            if level == 0 {
                let vs = usize::from(u16::from_le_bytes([buf[36], buf[37]])).min(BLOCK);
                if vs > items_end && vs < BLOCK {
                    v.push((vs, BLOCK));
                }
            }
            v
        }
    }
}

fn pick(rng: &mut Rng, ranges: &[(usize, usize)]) -> usize {
    let total: usize = ranges.iter().map(|(a, b)| b - a).sum();
    let mut k = rng.below(total as u64) as usize;
    for &(a, b) in ranges {
        if k < b - a {
            return a + k;
        }
        k -= b - a;
    }
    0
}

/// Recomputes the checksum of a damaged block whose magic survived.
fn seal(buf: &mut [u8], kind: Kind) -> bool {
    match kind {
        Kind::Superblock if buf[..8] == lcfs_format::superblock::MAGIC => {
            match crc32c::checksum_with_field(buf, 8, SUPERBLOCK_SIZE) {
                Ok(sum) => {
                    buf[8..12].copy_from_slice(&sum.to_le_bytes());
                    true
                }
                Err(_) => false,
            }
        }
        Kind::Tree { .. } if buf[..4] == NODE_MAGIC => node::seal(buf).is_ok(),
        Kind::Map { .. } if buf[..4] == refmap::MAGIC => refmap::seal(buf).is_ok(),
        _ => false,
    }
}

/// A value worth writing into a field: boundaries, block numbers of this image, noise.
fn interesting(rng: &mut Rng, total: u64, own: u64, meta: &[MetaBlock]) -> u64 {
    match rng.below(14) {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 0x7f,
        4 => 0xff,
        5 => 0xffff,
        6 => 0xffff_ffff,
        7 => u64::MAX,
        8 => 1 << 63,
        9 => total - 1 + rng.below(3),
        10 => own,
        11 => meta[rng.below(meta.len() as u64) as usize].blocknr,
        12 => rng.below(64),
        _ => rng.next_u64(),
    }
}

/// The kinds of damage, as the descriptions of mutants name them (`BLOCK:WHAT:KIND(...)`).
///
/// - `bytes`, `bits`: 1 to 4 bytes XORed with random values, 1 to 3 bits flipped;
/// - `field`: 1, 2, 4 or 8 bytes at a random place set to an interesting value (0, 1, all ones,
///   a block number of the image, ...);
/// - `sbfield`: a superblock field by name set to an interesting value or one next to its own;
/// - `zero`: a range of up to 256 bytes zeroed;
/// - `gap`: bytes that are not zero where the block holds nothing (a tree node's unused space,
///   the bytes after a superblock record), as a writer leaking stale contents would leave them;
/// - `copy-of`: another live metadata block's contents (a misdirected write);
/// - `zero-block`: the block zeroed (a lost write to a discarded block);
/// - `swap`: two live metadata blocks exchanged (the mutant's only damage).
///
/// Every kind but the last three is resealed (its checksum recomputed) three times in five
/// (`sealed`), so that it reaches the checks behind the checksum, and otherwise left `raw`; `sbfield`
/// nine times in ten. The image cut short is not a mutant (the guest's images are patched in
/// place): see [`truncations`].
pub const KINDS: [&str; 9] = [
    "bytes",
    "bits",
    "field",
    "sbfield",
    "zero",
    "gap",
    "copy-of",
    "zero-block",
    "swap",
];

/// The superblock's fields: name, offset, width (see `lcfs_format::superblock`).
const SB_FIELDS: [(&str, usize, usize); 22] = [
    ("magic", 0, 8),
    ("version", 12, 4),
    ("sb_size", 16, 4),
    ("block_size", 20, 4),
    ("incompat", 24, 8),
    ("ro_compat", 32, 8),
    ("compat", 40, 8),
    ("uuid", 48, 8),
    ("generation", 64, 8),
    ("total_blocks", 72, 8),
    ("free_blocks", 80, 8),
    ("commit_time", 96, 8),
    ("root_mode", 104, 4),
    ("root_uid", 108, 4),
    ("label", 128, 8),
    ("map_root", 192, 8),
    ("map_level", 200, 4),
    ("layer_root", 208, 8),
    ("next_layer_id", 216, 8),
    ("layer_count", 224, 8),
    ("reserve_blocks", 232, 8),
    ("next_data_id", 256, 8),
];

/// Where block `buf` of kind `kind` holds nothing: a tree node's unused space, the bytes after a
/// superblock record (map nodes have none).
fn unused_range(buf: &[u8], kind: Kind) -> Option<(usize, usize)> {
    match kind {
        Kind::Superblock => Some((SUPERBLOCK_SIZE, BLOCK)),
        Kind::Tree { .. } => node::unused(buf)
            .ok()
            .filter(|r| !r.is_empty())
            .map(|r| (r.start, r.end)),
        Kind::Map { .. } => None,
    }
}

/// Damages one block. Returns the new contents and a description.
fn damage(
    rng: &mut Rng,
    orig: &[u8],
    target: MetaBlock,
    meta: &[MetaBlock],
    base: &[u8],
    total: u64,
) -> (Vec<u8>, String) {
    let mut buf = orig.to_vec();
    let ranges = live_ranges(orig, target.kind);
    let mut r = rng.below(100);
    let unused = unused_range(orig, target.kind);
    if r >= 90 && unused.is_none() {
        r = rng.below(90);
    }
    let mut sealable = true;
    let mut sealed_odds = (3, 5);
    let mut what = match r {
        _ if target.kind == Kind::Superblock && rng.chance(1, 4) => {
            let (name, at, width) = SB_FIELDS[rng.below(SB_FIELDS.len() as u64) as usize];
            let mut old = [0u8; 8];
            old[..width].copy_from_slice(&orig[at..at + width]);
            let old = u64::from_le_bytes(old);
            let v = if rng.chance(1, 2) {
                interesting(rng, total, target.blocknr, meta)
            } else if rng.chance(1, 2) {
                old.wrapping_add(rng.range(1, 3))
            } else {
                old.wrapping_sub(rng.range(1, 3))
            };
            let v = if width == 8 {
                v
            } else {
                v & ((1 << (8 * width)) - 1)
            };
            buf[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            sealed_odds = (9, 10);
            format!("sbfield({name}={v:#x})")
        }
        0..=21 => {
            let n = rng.range(1, 4);
            for _ in 0..n {
                let at = pick(rng, &ranges);
                buf[at] ^= rng.range(1, 255) as u8;
            }
            format!("bytes({n})")
        }
        22..=35 => {
            let n = rng.range(1, 3);
            for _ in 0..n {
                let at = pick(rng, &ranges);
                buf[at] ^= 1 << rng.below(8);
            }
            format!("bits({n})")
        }
        36..=61 => {
            let width = [1usize, 2, 4, 8][rng.below(4) as usize];
            let at = pick(rng, &ranges).min(BLOCK - width);
            let v = interesting(rng, total, target.blocknr, meta);
            let v = if width == 8 {
                v
            } else {
                v & ((1 << (8 * width)) - 1)
            };
            buf[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            format!("field(@{at},{width}B={v:#x})")
        }
        62..=75 => {
            let at = pick(rng, &ranges);
            let len = (rng.range(1, 256) as usize).min(BLOCK - at);
            buf[at..at + len].fill(0);
            format!("zero(@{at}+{len})")
        }
        76..=84 => {
            sealable = false;
            let others: Vec<u64> = meta
                .iter()
                .map(|m| m.blocknr)
                .filter(|&b| b != target.blocknr)
                .collect();
            let other = others[rng.below(others.len() as u64) as usize];
            let at = other as usize * BLOCK;
            buf.copy_from_slice(&base[at..at + BLOCK]);
            format!("copy-of({other})")
        }
        85..=89 => {
            sealable = false;
            buf.fill(0);
            "zero-block".to_string()
        }
        _ => {
            // A few bytes, or a run of stale data (another block's bytes), where nothing is.
            let (lo, hi) = unused.unwrap_or((0, BLOCK));
            let at = rng.range(lo as u64, hi as u64 - 1) as usize;
            let len = if rng.chance(1, 2) {
                rng.range(1, 4) as usize
            } else {
                rng.range(16, 512) as usize
            }
            .min(hi - at);
            let other = meta[rng.below(meta.len() as u64) as usize].blocknr as usize * BLOCK;
            for i in 0..len {
                let b = base[other + at + i];
                buf[at + i] = if b == 0 { 0xa5 } else { b };
            }
            format!("gap(@{at}+{len})")
        }
    };
    let sealed =
        sealable && rng.chance(sealed_odds.0, sealed_odds.1) && seal(&mut buf, target.kind);
    // Make sure the block changed (a field may already hold the value, a copy may be of itself).
    let mut tries = 0;
    while buf == orig && tries < 16 {
        let at = pick(rng, &ranges);
        buf[at] ^= 1 << rng.below(8);
        if sealed {
            seal(&mut buf, target.kind);
        }
        what.push_str("+bit");
        tries += 1;
    }
    if buf == orig {
        buf[BLOCK - 1] ^= 0xff;
    }
    let desc = format!(
        "{}:{}:{}:{}",
        target.blocknr,
        target.kind.name(),
        what,
        if sealed { "sealed" } else { "raw" }
    );
    (buf, desc)
}

/// Mutant `id` of `base` for `seed`: 1 to 3 distinct blocks of `meta` damaged, or (one in
/// twelve) two of them swapped.
pub fn mutant(base: &[u8], meta: &[MetaBlock], seed: u64, id: u32) -> Mutant {
    let mut rng = Rng::new(seed ^ u64::from(id).wrapping_mul(0xd6e8_feb8_6659_fd93));
    let total = (base.len() / BLOCK) as u64;
    let block = |b: u64| &base[b as usize * BLOCK..(b as usize + 1) * BLOCK];
    if rng.chance(1, 12) {
        // Two blocks whose contents differ (every live metadata block names itself, but a
        // superblock copy may equal the other one).
        let a = meta[rng.below(meta.len() as u64) as usize];
        let others: Vec<MetaBlock> = meta
            .iter()
            .copied()
            .filter(|m| block(m.blocknr) != block(a.blocknr))
            .collect();
        if let Some(&b) = others.get(rng.below(others.len() as u64) as usize) {
            return Mutant {
                id,
                patches: vec![
                    Patch {
                        blocknr: a.blocknr,
                        data: block(b.blocknr).to_vec(),
                    },
                    Patch {
                        blocknr: b.blocknr,
                        data: block(a.blocknr).to_vec(),
                    },
                ],
                desc: format!(
                    "{}:{}<->{}:{}:swap:raw",
                    a.blocknr,
                    a.kind.name(),
                    b.blocknr,
                    b.kind.name()
                ),
            };
        }
    }
    let n = rng.range(1, 3.min(meta.len() as u64));
    let mut chosen: Vec<MetaBlock> = Vec::new();
    while (chosen.len() as u64) < n {
        let m = meta[rng.below(meta.len() as u64) as usize];
        if !chosen.contains(&m) {
            chosen.push(m);
        }
    }
    let mut patches = Vec::new();
    let mut descs = Vec::new();
    for target in chosen {
        let (data, desc) = damage(&mut rng, block(target.blocknr), target, meta, base, total);
        patches.push(Patch {
            blocknr: target.blocknr,
            data,
        });
        descs.push(desc);
    }
    Mutant {
        id,
        patches,
        desc: descs.join(" "),
    }
}

/// The kinds of damage a mutant's description names (see [`KINDS`]).
pub fn kinds_of(desc: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for part in desc.split(' ') {
        for k in KINDS {
            let named = part.split(':').any(|f| {
                f.strip_prefix(k)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('('))
            });
            if named && !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

/// Lengths to cut `base` to, with what each leaves: nothing, part of the first superblock
/// copy, one copy, both copies and nothing else, part of the metadata, all but the last block
/// of data, all but the last block, and all but one byte. A tool given the image cut short must
/// say so and not panic; a repair must refuse (nothing can be rebuilt past the end).
pub fn truncations(base: &[u8]) -> Vec<(usize, &'static str)> {
    let used = base
        .chunks(BLOCK)
        .rposition(|b| b.iter().any(|&x| x != 0))
        .map_or(0, |last| last + 1);
    vec![
        (0, "empty"),
        (100, "part of superblock copy 0"),
        (SUPERBLOCK_SIZE, "superblock record 0 alone"),
        (BLOCK, "superblock copy 0"),
        (BLOCK + 700, "copy 0 and part of copy 1"),
        (2 * BLOCK, "both superblock copies"),
        (used / 2 * BLOCK, "half the blocks in use"),
        ((used - 1) * BLOCK, "all but the last block in use"),
        (base.len() - BLOCK, "all but the last block"),
        (base.len() - 1, "all but the last byte"),
    ]
}

/// Mutants `0..count` of `base` for `seed`.
pub fn mutants(base: &[u8], seed: u64, count: u32) -> Result<Vec<Mutant>> {
    let meta = metadata_blocks(base)?;
    if meta.len() < 3 {
        bail!("too few metadata blocks ({})", meta.len());
    }
    Ok((0..count).map(|id| mutant(base, &meta, seed, id)).collect())
}

/// What `fsck.lcfs` says about an image: `clean`, `damaged` (errors found) or `unreadable`
/// (no LCFS superblock, or the check could not run).
pub fn fsck_verdict(image: &[u8]) -> &'static str {
    match fsck::check(device(image), &mut |_, _, _| {}) {
        Ok(r) if r.is_clean() => "clean",
        Ok(_) => "damaged",
        Err(_) => "unreadable",
    }
}

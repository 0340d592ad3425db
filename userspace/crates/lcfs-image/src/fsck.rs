//! The filesystem checker behind `fsck.lcfs`.
//!
//! It checks every invariant the format promises, reading each block once (a map leaf whose
//! counts are not all equal twice, see below): both superblock copies (a damaged copy of a
//! commit newer than the one in use is an error, [`Fallback`]; a valid copy's block holds zeros
//! after the record); the reference-count map (node checksums and positions, every summary
//! equal to what is below it, the free count); the layer tree and every layer tree (node
//! checksums, levels, key order and bounds, zeros where a node holds nothing, every item
//! decoding, POSIX ACLs inline or in blocks of their own); the layer graph (parents exist and
//! are older and frozen, child counts, names unique, counts in the superblock); each layer's
//! usage counters; each layer's namespace (entries point at existing inodes of their type, back
//! references match the entries, link counts match the names, no unnamed inodes but indexed
//! orphans, no items without an inode; a layer without parent is
//! checked whole, a clone only where its diff against the parent shows changes, so the cost
//! follows the changes); and finally that every block's reference count equals the references
//! found (superblock, map nodes, tree roots, parent nodes, file extents and external xattr
//! values) — so the allocation map is exactly the set of reachable blocks.
//!
//! Its memory follows the metadata, not the device's size: the references found are kept as
//! runs of blocks (see [`crate::refcounts`]), and each map leaf is kept as its location and, when
//! its counts are all equal (a full or an empty leaf), that count; the counts are then compared in
//! block order, reading the other leaves again one at a time. Ranges of the map that are not
//! materialised (an interior entry without a child: all free, which the entry's summary must say)
//! are not read at all, so an empty device costs next to nothing whatever its size.
//!
//! Shared subtrees are walked once (a visited set), so the cost is one read per block however
//! many layers share it, and a damaged image whose nodes point many parents at one subtree
//! cannot make it exponential.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use lcfs_format::data::MAX_FILE_BLOCKS;
use lcfs_format::namespace;
use lcfs_format::node::{self, Expect, Key};
use lcfs_format::records::{
    self, kind, layer_flags, DirentRecord, ExtentRecord, InodeRecord, LayerRecord, LinkRecord,
    ReclaimRecord, XattrRecord,
};
use lcfs_format::refmap::{self, LEAF_ENTRIES};
use lcfs_format::superblock::{self, Superblock};
use lcfs_format::tree::Error as TreeError;
use lcfs_format::volume::{self, tree_kind, Volume};
use lcfs_format::{FormatError, BLOCK_SIZE};

use crate::refcounts::{Counts, Cursor, Refs};
use crate::store::SbView;
use lcfs_format::tree::BlockStore;

/// Most error messages kept; the rest are only counted.
const MAX_MESSAGES: usize = 200;

/// Counters gathered by a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Committed generation.
    pub generation: u64,
    /// Blocks of the filesystem.
    pub total_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Layers.
    pub layers: u64,
    /// Distinct tree nodes (layer tree and layer trees).
    pub tree_nodes: u64,
    /// Map nodes.
    pub map_nodes: u64,
    /// Distinct data blocks referenced by extents.
    pub data_blocks: u64,
    /// Items in distinct leaves.
    pub items: u64,
    /// Entries in the reclaim queue: tree nodes of removed layers still to be dropped.
    pub reclaim_queued: u64,
}

/// The newest superblock copy is damaged (or may have been: nothing can be read from it), so the
/// filesystem falls back to the commit in the other copy, and what the commits after it changed
/// is gone. Mount falls back the same way, and its first commit overwrites the damaged copy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fallback {
    /// The damaged copy (0 or 1).
    pub damaged_copy: u64,
    /// Why it is not valid.
    pub reason: String,
    /// The generation the damaged copy reads as, unverified (its damage may be in this field);
    /// `None` if nothing can be read from it.
    pub damaged_generation: Option<u64>,
    /// The layer count the damaged copy reads as, unverified.
    pub damaged_layer_count: Option<u64>,
    /// The generation the filesystem falls back to.
    pub generation: u64,
    /// Layers of that state (its superblock's count).
    pub layer_count: u64,
}

/// A repair an error calls for (see [`crate::repair`]); errors without one are left.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fix {
    /// The newest superblock copy is damaged: commit the state in use again.
    Fallback,
    /// Reference counts, map summaries or the free count are wrong: rebuild the map from the
    /// references found.
    Map,
    /// A layer's usage counters: the values the tree holds.
    LayerUsage {
        /// Layer id.
        layer: u64,
        /// Inodes.
        inodes: u64,
        /// Bytes of file data.
        bytes: u64,
    },
    /// A layer's own bytes.
    LayerOwn {
        /// Layer id.
        layer: u64,
        /// Bytes of its own.
        own: u64,
    },
    /// A layer's child count.
    LayerChildren {
        /// Layer id.
        layer: u64,
        /// Layers whose parent it is.
        children: u32,
    },
    /// An inode's link count.
    LinkCount {
        /// Layer id.
        layer: u64,
        /// Inode.
        ino: u64,
        /// The count its names (or subdirectories) make.
        nlink: u32,
    },
    /// A directory entry that names an inode that does not exist: remove it.
    DanglingEntry {
        /// Layer id.
        layer: u64,
        /// Directory.
        dir: u64,
        /// The entry's key offset.
        offset: u64,
    },
    /// An inode with links but no name: give it one in the layer's `lost+found`.
    Unnamed {
        /// Layer id.
        layer: u64,
        /// Inode.
        ino: u64,
    },
    /// An inode without links or names that the orphan index does not hold: add it there.
    OrphanIndex {
        /// Layer id.
        layer: u64,
        /// Inode.
        ino: u64,
    },
    /// Bytes after the superblock record of a valid copy are not zero: the repair's commits
    /// rewrite both copies, as every commit writes its copy (zeros after the record).
    SuperblockTail {
        /// The copy (0 or 1).
        slot: u64,
    },
}

impl Fix {
    /// Whether preening (`-p`) may make it without asking: counters, the map and the
    /// superblock copy change no name and drop no data.
    pub fn is_safe(&self) -> bool {
        matches!(
            self,
            Fix::Fallback
                | Fix::Map
                | Fix::SuperblockTail { .. }
                | Fix::LayerUsage { .. }
                | Fix::LayerOwn { .. }
                | Fix::LayerChildren { .. }
                | Fix::LinkCount { .. }
        )
    }

    /// The layer it changes, if any.
    pub fn layer(&self) -> Option<u64> {
        match *self {
            Fix::Fallback | Fix::Map | Fix::SuperblockTail { .. } => None,
            Fix::LayerUsage { layer, .. }
            | Fix::LayerOwn { layer, .. }
            | Fix::LayerChildren { layer, .. }
            | Fix::LinkCount { layer, .. }
            | Fix::DanglingEntry { layer, .. }
            | Fix::Unnamed { layer, .. }
            | Fix::OrphanIndex { layer, .. } => Some(layer),
        }
    }
}

/// What a map rebuild needs, gathered by a check whose map and tree walks were complete.
#[derive(Clone, Debug, Default)]
pub struct MapFacts {
    /// References found to each block (fixed blocks, map nodes, tree nodes, data).
    pub expected: Counts,
    /// The map leaves read, in block order.
    pub leaves: Vec<MapLeaf>,
    /// The map's nodes.
    pub map_nodes: Vec<u64>,
}

/// A leaf of the map as a check read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLeaf {
    /// First block it counts.
    pub first: u64,
    /// Where it is.
    pub block: u64,
    /// The count of each block it holds (of the filesystem's), when they are all equal: a full
    /// or an empty leaf, most of them, need not be read again. `None`: see [`read_leaf`].
    pub uniform: Option<u32>,
}

/// Reads map leaf `leaf` of the filesystem of `sb` again, validated as the check's walk
/// validated it.
pub fn read_leaf<S: BlockStore<Buf = Vec<u8>>>(
    store: &mut S,
    sb: &Superblock,
    leaf: &MapLeaf,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let what = |e: String| format!("map leaf {}: {e}", leaf.block);
    store
        .read(leaf.block, &mut buf)
        .map_err(|e| what(tree_err(e)))?;
    let expect = refmap::MapExpect {
        blocknr: leaf.block,
        fsid: sb.fsid(),
        level: 0,
        first: leaf.first,
        txn_generation: sb.generation.saturating_add(1),
        pins_from: sb.generation.saturating_add(1),
        total_blocks: sb.total_blocks,
    };
    refmap::check(&buf, &expect).map_err(|e| what(e.to_string()))?;
    Ok(buf)
}

/// What a check found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Inconsistencies (the filesystem is damaged).
    pub errors: Vec<String>,
    /// Errors beyond the first [`MAX_MESSAGES`], counted only.
    pub more_errors: u64,
    /// Oddities that are not damage (a damaged copy of an older commit than the current one).
    pub warnings: Vec<String>,
    /// Set when the newest commit's superblock copy is damaged; its error is in `errors` too.
    pub fallback: Option<Fallback>,
    /// Counters.
    pub stats: Stats,
    /// The repairs the errors call for, one per error that has one (a run of blocks' errors
    /// past the listed ones adds its one fix once).
    #[serde(skip)]
    pub fixes: Vec<Fix>,
    /// Errors no repair handles.
    #[serde(skip)]
    pub unrepairable: u64,
    /// For a map rebuild: the references found, when the walks were complete.
    #[serde(skip)]
    pub map_facts: Option<MapFacts>,
}

impl Report {
    /// Whether no error was found.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether the fallback to an older commit is the only error: then the surviving state is
    /// sound, and [`make_fallback_current`] may repair it.
    pub fn only_fallback(&self) -> bool {
        self.fallback.is_some() && self.errors.len() == 1 && self.more_errors == 0
    }

    /// Whether every error found has a repair.
    pub fn repairable(&self) -> bool {
        !self.is_clean() && self.unrepairable == 0
    }

    fn error(&mut self, msg: String) {
        self.unrepairable += 1;
        self.message(msg);
    }

    fn fixable(&mut self, fix: Fix, msg: String) {
        self.fixes.push(fix);
        self.message(msg);
    }

    /// One error per block of `blocks`, `msg(block)`, repaired by `fix` if any. The errors
    /// past the listed ones are only counted, at once: a long run of damaged blocks costs
    /// neither time nor memory per block.
    fn block_errors(&mut self, blocks: Range<u64>, fix: Option<Fix>, msg: impl Fn(u64) -> String) {
        let mut b = blocks.start;
        while b < blocks.end && self.errors.len() < MAX_MESSAGES {
            match &fix {
                Some(f) => self.fixable(f.clone(), msg(b)),
                None => self.error(msg(b)),
            }
            b = b.saturating_add(1);
        }
        let rest = blocks.end.saturating_sub(b);
        if rest == 0 {
            return;
        }
        self.more_errors = self.more_errors.saturating_add(rest);
        match fix {
            Some(f) => self.fixes.push(f),
            None => self.unrepairable = self.unrepairable.saturating_add(rest),
        }
    }

    fn message(&mut self, msg: String) {
        if self.errors.len() < MAX_MESSAGES {
            self.errors.push(msg);
        } else {
            self.more_errors += 1;
        }
    }
}

/// Why a check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Reading the device failed.
    #[error("I/O error reading the device")]
    Io,
    /// Neither superblock copy is LCFS.
    #[error("not an LCFS filesystem (no LCFS superblock found)")]
    NotLcfs,
    /// The device is too small to hold both superblock copies (an image file cut short).
    #[error(
        "not an LCFS filesystem: the device holds {0} whole 4 KiB blocks, fewer than the two \
         superblock copies take"
    )]
    TooSmall(u64),
    /// Out of memory or similar.
    #[error("{}", tree_err(*.0))]
    Other(TreeError),
}

/// Why [`make_fallback_current`] did not repair.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The superblock copies are no longer as the check found them; nothing was written.
    #[error("the superblock copies changed since the check; nothing was written")]
    Changed,
    /// The generation cannot move on (the next one would be the last possible).
    #[error("generation {0} is the last one a commit can follow; nothing was written")]
    LastGeneration(u64),
    /// Opening, writing or reading back failed.
    #[error("{0}")]
    Failed(String),
}

/// Phases reported to the progress callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Walking the reference-count map.
    Map,
    /// Walking layer trees.
    Trees,
    /// Comparing reference counts.
    Counts,
}

/// Checks one leaf item (with the checker, to reference blocks) and returns what it adds up to.
type ItemCheck<'a, C> = &'a mut dyn FnMut(&mut C, &Key, &[u8]) -> Result<Sums, String>;

/// Sums of a subtree, memoised per node.
#[derive(Clone, Debug, Default)]
struct Sums {
    inodes: u64,
    bytes: u64,
    /// Bytes of extents by birth layer, sorted by layer (a layer's own bytes are its birth's).
    born: Vec<(u64, u64)>,
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.inodes += other.inodes;
        self.bytes += other.bytes;
        for &(layer, bytes) in &other.born {
            match self.born.binary_search_by_key(&layer, |&(l, _)| l) {
                Ok(i) => self.born[i].1 += bytes,
                Err(i) => self.born.insert(i, (layer, bytes)),
            }
        }
    }

    /// Bytes of extents born in `layer`.
    fn born_in(&self, layer: u64) -> u64 {
        self.born
            .binary_search_by_key(&layer, |&(l, _)| l)
            .map_or(0, |i| self.born[i].1)
    }
}

struct Checker<'a, S: volume::Device<Buf = Vec<u8>>> {
    vol: Volume<S>,
    sb: Superblock,
    report: Report,
    /// References found.
    refs: Refs,
    visited: HashMap<u64, Sums>,
    /// The map leaves read.
    leaves: Vec<MapLeaf>,
    /// The map's nodes.
    map_nodes: Vec<u64>,
    progress: &'a mut dyn FnMut(Phase, u64, u64),
}

/// Checks the filesystem on `store`. `progress(phase, done, total)` is called now and then.
pub fn check<S: volume::Device<Buf = Vec<u8>>>(
    store: S,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Report, OpError> {
    check_view(SbView::new(store), progress)
}

/// Checks the previous commit of the filesystem on `store`: the state in the older superblock
/// copy, as if the newest were lost (it is reported as a [`Fallback`]). `None` if there is no
/// older valid copy.
pub fn check_previous<S: volume::Device<Buf = Vec<u8>>>(
    mut store: S,
) -> Result<Option<(u64, Report)>, OpError> {
    let Some(newest) = newest_slot_with_previous(&mut store)? else {
        return Ok(None);
    };
    let r = check_view(SbView::hiding(store, newest), &mut |_, _, _| {})?;
    Ok(Some((newest, r)))
}

/// The slot of the newest superblock copy, when the other copy is valid too (an older commit
/// to go back to).
pub fn newest_slot_with_previous<S: volume::Device<Buf = Vec<u8>>>(
    store: &mut S,
) -> Result<Option<u64>, OpError> {
    let device = store.total_blocks();
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut copies = Vec::new();
    for slot in 0..superblock::SUPERBLOCK_COPIES {
        store.read(slot, &mut buf).map_err(|_| OpError::Io)?;
        copies.push(Superblock::decode(&buf, device));
    }
    match (
        &copies[..],
        superblock::select(copies[0].clone(), copies[1].clone()),
    ) {
        ([Ok(_), Ok(_)], Ok(sel)) => Ok(Some(sel.sb.slot())),
        _ => Ok(None),
    }
}

/// The free count the map's root records, if the root reads as a valid map node.
fn root_free<S: volume::Device<Buf = Vec<u8>>>(store: &mut S, sb: &Superblock) -> Option<u64> {
    if sb.map_root < Superblock::FIXED_BLOCKS || sb.map_root >= sb.total_blocks {
        return None;
    }
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    store.read(sb.map_root, &mut buf).ok()?;
    let expect = refmap::MapExpect {
        blocknr: sb.map_root,
        fsid: sb.fsid(),
        level: sb.map_level,
        first: 0,
        txn_generation: sb.generation.checked_add(1)?,
        pins_from: sb.generation.checked_add(1)?,
        total_blocks: sb.total_blocks,
    };
    refmap::check(&buf, &expect).ok()?;
    if sb.map_level == 0 {
        let n = sb.total_blocks.min(LEAF_ENTRIES);
        let mut free = 0;
        for i in 0..n {
            if refmap::leaf_get(&buf, i).ok()? == 0 {
                free += 1;
            }
        }
        return Some(free);
    }
    let mut free = 0u64;
    for i in 0..refmap::NODE_ENTRIES {
        let e = refmap::entry_get(&buf, i).ok()?;
        free = free.checked_add(e.free)?.checked_add(e.pinned)?;
    }
    Some(free)
}

/// [`check`] through a view of the superblock copies.
pub fn check_view<S: volume::Device<Buf = Vec<u8>>>(
    mut store: SbView<S>,
    progress: &mut dyn FnMut(Phase, u64, u64),
) -> Result<Report, OpError> {
    let mut report = Report::default();
    let device = store.total_blocks();
    if device < superblock::SUPERBLOCK_COPIES {
        return Err(OpError::TooSmall(device));
    }
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut copies = Vec::new();
    let mut tails = Vec::new();
    for slot in 0..superblock::SUPERBLOCK_COPIES {
        store.read(slot, &mut buf).map_err(|_| OpError::Io)?;
        copies.push(Superblock::decode(&buf, device));
        tails.push(nonzero(
            buf.get(superblock::SUPERBLOCK_SIZE..).unwrap_or(&[]),
        ));
    }
    let (c1, c0) = (copies.pop(), copies.pop());
    let (Some(c0), Some(c1)) = (c0, c1) else {
        return Err(OpError::Io);
    };
    if c0 == Err(FormatError::BadMagic) && c1 == Err(FormatError::BadMagic) {
        return Err(OpError::NotLcfs);
    }
    let selected = match superblock::select(c0.clone(), c1.clone()) {
        Ok(s) => s,
        Err(e) => {
            report.error(format!(
                "no valid superblock ({e}): copy 0: {}; copy 1: {}",
                err(&c0),
                err(&c1)
            ));
            return Ok(report);
        }
    };
    if let Some((slot, e)) = selected.other_error {
        store.read(slot, &mut buf).map_err(|_| OpError::Io)?;
        superblock_damage(&mut report, &selected.sb, slot, &e, &buf);
    }
    // A commit writes its copy's whole block, zeros after the record; the checksum covers the
    // record only, so damage there is seen by this alone. (A copy that is not valid is reported
    // above, its tail with it.)
    for (slot, tail) in (0..).zip(&tails) {
        let valid = selected
            .other_error
            .as_ref()
            .is_none_or(|(s, _)| *s != slot);
        if let (true, Some((n, first))) = (valid, tail) {
            report.fixable(
                Fix::SuperblockTail { slot },
                format!(
                    "superblock copy {slot}: {} after the superblock record (bytes {}..{} of \
                     the block should be zero; the first is at {})",
                    crate::output::count(*n as u64, "non-zero byte"),
                    superblock::SUPERBLOCK_SIZE,
                    BLOCK_SIZE,
                    superblock::SUPERBLOCK_SIZE + first
                ),
            );
        }
    }
    // Features this code does not know: read-only-compatible ones may change what a check would
    // take for damage (the kernel mounts them read-only only); compatible ones need no care.
    let unknown = selected.sb.ro_compat & !superblock::RO_COMPAT_SUPPORTED;
    if unknown != 0 {
        report.error(format!(
            "unknown read-only-compatible features {unknown:#x}: a newer fsck.lcfs is needed to \
             check or repair this filesystem"
        ));
    }
    if selected.sb.compat != 0 {
        report.warnings.push(format!(
            "unknown compatible features {:#x} (ignored)",
            selected.sb.compat
        ));
    }
    // A free count that differs from the map root's summary stops the open: check on, with the
    // count the root records, and rebuild the map in repair.
    if let Some(free) = root_free(&mut store, &selected.sb) {
        if free != selected.sb.free_blocks {
            let slot = selected.sb.slot();
            let mut fixed = selected.sb.clone();
            fixed.free_blocks = free;
            let mut block = vec![0u8; BLOCK_SIZE as usize];
            store.read(slot, &mut block).map_err(|_| OpError::Io)?;
            if fixed
                .encode(&mut block[..superblock::SUPERBLOCK_SIZE])
                .is_ok()
            {
                report.fixable(
                    Fix::Map,
                    format!(
                        "free blocks: the superblock says {}, the map's root counts {free}",
                        selected.sb.free_blocks
                    ),
                );
                store.patch = Some((slot, block));
            }
        }
    }
    let (vol, _) = match Volume::open(store) {
        Ok(v) => v,
        Err(e) => {
            report.error(format!("cannot open the filesystem: {}", tree_err(e)));
            return Ok(report);
        }
    };
    let sb = vol.superblock();
    report.stats.generation = sb.generation;
    report.stats.total_blocks = sb.total_blocks;
    report.stats.free_blocks = sb.free_blocks;
    let mut c = Checker {
        vol,
        sb,
        report,
        refs: Refs::default(),
        visited: HashMap::new(),
        leaves: Vec::new(),
        map_nodes: Vec::new(),
        progress,
    };
    for b in 0..Superblock::FIXED_BLOCKS {
        c.reference(b, "superblock");
    }
    let map_ok = c.check_map();
    c.check_layers();
    let (counts, data_blocks) = std::mem::take(&mut c.refs).into_counts();
    c.report.stats.data_blocks = data_blocks;
    if map_ok {
        c.compare_counts(&counts);
    } else {
        c.report.fixable(
            Fix::Map,
            "reference counts not compared: the map could not be read".into(),
        );
    }
    c.report.map_facts = Some(MapFacts {
        expected: counts,
        leaves: std::mem::take(&mut c.leaves),
        map_nodes: std::mem::take(&mut c.map_nodes),
    });
    Ok(c.report)
}

/// A superblock copy's error in words that fit a copy (the core's text for a bad magic number
/// speaks of the whole filesystem, which the other copy shows to be LCFS).
fn copy_err(e: &FormatError) -> String {
    match e {
        FormatError::BadMagic => "no superblock there (bad magic number)".into(),
        e => e.to_string(),
    }
}

/// Reports the damaged copy in `slot` (block contents `raw`) beside the valid `current`: a copy
/// of an older commit only costs redundancy; one of a newer commit (or one that cannot tell)
/// means the filesystem fell back and lost that commit.
fn superblock_damage(
    report: &mut Report,
    current: &Superblock,
    slot: u64,
    e: &FormatError,
    raw: &[u8],
) {
    let seen = superblock::peek(raw);
    let (g, layers) = (current.generation, current.layer_count);
    let kept = format!(
        "generation {g} ({}, superblock copy {})",
        crate::output::count(layers, "layer"),
        current.slot()
    );
    if let Some(u) = seen.filter(|u| u.generation <= g) {
        report.warnings.push(format!(
            "superblock copy {slot} is not valid ({e}); it reads as generation {}, not newer \
             than the current {g}, so only redundancy is lost until the next commit rewrites it",
            u.generation
        ));
        return;
    }
    let msg = match seen {
        Some(u) => {
            // A one-commit step is what the protocol leaves; anything else means the field is
            // part of the damage.
            let doubt = if g.checked_add(1) == Some(u.generation) {
                ""
            } else {
                ", although a generation other than the next is itself suspect"
            };
            format!(
                "superblock copy {slot} is damaged ({e}): the filesystem falls back to {kept}, and \
                 what the commit after it changed is lost; the damaged copy reads as generation \
                 {} with {} (unverified{doubt})",
                u.generation,
                crate::output::count(u.layer_count, "layer")
            )
        }
        None => format!(
            "superblock copy {slot} is damaged ({}) and its generation cannot be read: the \
             filesystem uses {kept}; if the damaged copy held a newer commit, what that commit \
             changed is lost",
            copy_err(e)
        ),
    };
    report.fixable(Fix::Fallback, msg);
    report.fallback = Some(Fallback {
        damaged_copy: slot,
        reason: copy_err(e),
        damaged_generation: seen.map(|u| u.generation),
        damaged_layer_count: seen.map(|u| u.layer_count),
        generation: g,
        layer_count: layers,
    });
}

/// Repairs a [`Fallback`]: commits the state the filesystem fell back to again, as the next
/// generation, into the damaged copy's slot (as every commit does), so that both copies are valid
/// and a mount starts from that state. The caller checks first that nothing else is damaged
/// ([`Report::only_fallback`]): otherwise the damaged copy may be the better way back, by hand.
/// Returns the filesystem reopened as a mount opens it, at the new generation.
pub fn make_fallback_current<S: volume::Device>(
    store: S,
    fallback: &Fallback,
    now: lcfs_format::records::Timespec,
) -> Result<Volume<S>, RepairError> {
    let failed = |e: TreeError| RepairError::Failed(tree_err(e));
    // Generation u64::MAX is invalid, and the commit after this one needs a generation too.
    if fallback.generation.checked_add(2).is_none() {
        return Err(RepairError::LastGeneration(fallback.generation));
    }
    let (mut vol, other) = Volume::open(store).map_err(failed)?;
    if vol.superblock().generation != fallback.generation
        || other.map(|(slot, _)| slot) != Some(fallback.damaged_copy)
    {
        return Err(RepairError::Changed);
    }
    vol.recommit(now).map_err(failed)?;
    let generation = vol.superblock().generation;
    // Read back as a mount reads: both copies valid, the new one current.
    let (vol, other) = Volume::open(vol.into_store()).map_err(failed)?;
    if other.is_some() || vol.superblock().generation != generation {
        return Err(RepairError::Failed(
            "the rewritten superblock copy does not read back".into(),
        ));
    }
    Ok(vol)
}

/// How many bytes of `bytes` are not zero, and where the first is; `None` if all are zero.
fn nonzero(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = bytes.iter().position(|&b| b != 0)?;
    Some((bytes.iter().filter(|&&b| b != 0).count(), first))
}

fn err(r: &Result<Superblock, FormatError>) -> String {
    match r {
        Ok(_) => "valid".into(),
        Err(e) => e.to_string(),
    }
}

/// Human text of a core error.
pub fn tree_err(e: TreeError) -> String {
    match e {
        TreeError::Corrupt(f) => f.to_string(),
        other => other.to_string(),
    }
}

impl<S: volume::Device<Buf = Vec<u8>>> Checker<'_, S> {
    fn reference(&mut self, block: u64, what: &str) {
        self.reference_run(block, 1, what, false);
    }

    /// One reference to each of the `len` blocks from `start`; `data` for file data.
    fn reference_run(&mut self, start: u64, len: u64, what: &str, data: bool) {
        let total = self.sb.total_blocks;
        let end = start.saturating_add(len);
        self.refs.add(start.min(total)..end.min(total), data);
        self.report.block_errors(start.max(total)..end, None, |b| {
            format!("{what} references block {b} past the end")
        });
    }

    fn check_map(&mut self) -> bool {
        let map = *self.vol.map();
        let mut nodes = Vec::new();
        let total = self.sb.total_blocks;
        let progress = &mut *self.progress;
        let leaves = &mut self.leaves;
        // The walk visits a node before it hands over its contents: a leaf's block is the last
        // node visited (and a read of it again checks that it is, see `read_leaf`).
        let last = Cell::new(0u64);
        // Blocks the leaves count as used.
        let mut used = 0u64;
        let r = map.walk(
            self.vol.store(),
            &mut |b| {
                nodes.push(b);
                last.set(b);
            },
            &mut |first, leaf| {
                progress(Phase::Map, first, total);
                let span = total.saturating_sub(first).min(LEAF_ENTRIES);
                let mut uniform = Some(refmap::leaf_get(leaf, 0)?);
                for i in 0..span {
                    let v = refmap::leaf_get(leaf, i)?;
                    used = used.saturating_add(u64::from(v != 0));
                    if uniform != Some(v) {
                        uniform = None;
                    }
                }
                leaves.push(MapLeaf {
                    first,
                    block: last.get(),
                    uniform,
                });
                Ok(())
            },
        );
        self.report.stats.map_nodes = nodes.len() as u64;
        for &b in &nodes {
            self.reference(b, "the map");
        }
        self.map_nodes = nodes;
        if let Err(e) = r {
            self.report
                .fixable(Fix::Map, format!("reference-count map: {}", tree_err(e)));
            return false;
        }
        let free = total.saturating_sub(used);
        if free != self.sb.free_blocks {
            self.report.fixable(
                Fix::Map,
                format!(
                    "free blocks: superblock says {}, map has {free}",
                    self.sb.free_blocks
                ),
            );
        }
        true
    }

    fn read_node(&mut self, block: u64, tree: u8, level: Option<u8>) -> Result<Vec<u8>, String> {
        if block < Superblock::FIXED_BLOCKS || block >= self.sb.total_blocks {
            return Err(format!("block number {block} out of range"));
        }
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        self.vol
            .store()
            .read(block, &mut buf)
            .map_err(|e| format!("block {block}: {}", tree_err(e)))?;
        let hdr = node::check(
            &buf,
            &Expect {
                blocknr: block,
                fsid: self.sb.fsid(),
                tree,
                level,
                total_blocks: self.sb.total_blocks,
            },
        )
        .map_err(|e| format!("node {block}: {e}"))?;
        if hdr.generation > self.sb.generation {
            return Err(format!(
                "node {block}: generation {} is newer than the filesystem's {}",
                hdr.generation, self.sb.generation
            ));
        }
        Ok(buf)
    }

    /// Walks the tree under `root` (a reference from `what` already counted), returning the sums
    /// of its items. `items(key, value)` checks each item of a leaf seen the first time.
    fn walk_tree(
        &mut self,
        root: u64,
        tree: u8,
        what: &str,
        items: ItemCheck<'_, Self>,
    ) -> Option<Sums> {
        if root == 0 {
            return Some(Sums::default());
        }
        self.walk_node(root, tree, None, None, None, true, 0, what, items)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_node(
        &mut self,
        block: u64,
        tree: u8,
        level: Option<u8>,
        lo: Option<Key>,
        hi: Option<Key>,
        is_root: bool,
        first_child: usize,
        what: &str,
        items: ItemCheck<'_, Self>,
    ) -> Option<Sums> {
        let buf = match self.read_node(block, tree, level) {
            Ok(b) => b,
            Err(e) => {
                self.report.error(format!("{what}: {e}"));
                return None;
            }
        };
        // Bounds and shape hold for every reference, so check them before the visited test.
        let n = node::len(&buf).unwrap_or(0);
        if n == 0 && !is_root {
            self.report.error(format!("{what}: node {block} is empty"));
        }
        let keys = |i: usize| -> Option<Key> {
            if node::header(&buf).ok()?.level == 0 {
                node::leaf_key(&buf, i).ok()
            } else {
                node::internal_key(&buf, i).ok()
            }
        };
        if n > 0 {
            let (first, last) = (keys(0), keys(n - 1));
            if lo.is_some_and(|l| first.is_none_or(|f| f < l))
                || hi.is_some_and(|h| last.is_none_or(|k| k >= h))
            {
                self.report.error(format!(
                    "{what}: node {block} has keys outside its parent's range"
                ));
            }
        }
        if let Some(s) = self.visited.get(&block) {
            return Some(s.clone());
        }
        self.report.stats.tree_nodes += 1;
        // No writer leaves bytes where a node holds nothing (`node::unused`): bytes there are
        // under a valid checksum, so a writer put them there (a bug leaking stale contents, or a
        // forged block). Damage of the node, as non-zero reserved header bytes are; not repaired,
        // as no damaged node is.
        if let Ok(r) = node::unused(&buf) {
            if let Some((n, first)) = nonzero(buf.get(r.clone()).unwrap_or(&[])) {
                self.report.error(format!(
                    "{what}: node {block}: {} in its unused space (bytes {}..{} should be zero; the \
                     first is at {})",
                    crate::output::count(n as u64, "non-zero byte"),
                    r.start,
                    r.end,
                    r.start + first
                ));
            }
        }
        let hdr = node::header(&buf).ok()?;
        let mut sums = Sums::default();
        let mut ok = true;
        if hdr.level == 0 && first_child > 0 {
            self.report
                .error(format!("{what}: leaf {block} has a child position"));
            return None;
        }
        if hdr.level == 0 {
            self.report.stats.items += n as u64;
            for i in 0..n {
                let (Ok(k), Ok(v)) = (node::leaf_key(&buf, i), node::leaf_value(&buf, i)) else {
                    ok = false;
                    continue;
                };
                match items(self, &k, v) {
                    Ok(s) => sums.add(&s),
                    Err(e) => {
                        self.report.error(format!(
                            "{what}: node {block}, item {}: {e}",
                            crate::key_text(&k)
                        ));
                    }
                }
            }
        } else {
            if first_child > n {
                self.report
                    .error(format!("{what}: node {block} has no child {first_child}"));
                ok = false;
            }
            for i in first_child..n {
                let (Ok(child), Ok(lo)) =
                    (node::internal_child(&buf, i), node::internal_key(&buf, i))
                else {
                    ok = false;
                    continue;
                };
                let hi = if i + 1 < n {
                    node::internal_key(&buf, i + 1).ok()
                } else {
                    hi
                };
                self.reference(child, what);
                match self.walk_node(
                    child,
                    tree,
                    Some(hdr.level - 1),
                    Some(lo),
                    hi,
                    false,
                    0,
                    what,
                    items,
                ) {
                    Some(s) => sums.add(&s),
                    None => ok = false,
                }
            }
        }
        self.visited.insert(block, sums.clone());
        ok.then_some(sums)
    }

    fn check_layers(&mut self) {
        let root = self.sb.layer_root;
        if root != 0 {
            self.reference(root, "the superblock's layer tree root");
        }
        let total = self.sb.total_blocks;
        let mut layers: Vec<(u64, LayerRecordOwned)> = Vec::new();
        let mut index: Vec<(u64, Vec<u8>, u64)> = Vec::new();
        let mut queue: Vec<(u64, ReclaimRecord)> = Vec::new();
        let hash = records::HashKey(self.sb.hash_key[0], self.sb.hash_key[1]);
        self.walk_tree(root, tree_kind::LAYERS, "layer tree", &mut |_, k, v| {
            if k.id == records::RECLAIM_QUEUE && k.kind == kind::RECLAIM {
                queue.push((
                    k.offset,
                    ReclaimRecord::decode(v, total).map_err(|e| e.to_string())?,
                ));
                return Ok(Sums::default());
            }
            if k.id == records::LAYER_NAME_INDEX && k.kind == kind::LAYER_NAME {
                let r = records::LayerNameRecord::decode(v).map_err(|e| e.to_string())?;
                let h = hash.hash(r.name);
                if !(0..records::DIRENT_COLLISIONS)
                    .any(|i| records::dirent_offset(h, i) == Some(k.offset))
                {
                    return Err("layer name under the wrong hash".into());
                }
                index.push((r.id, r.name.to_vec(), k.offset));
                return Ok(Sums::default());
            }
            if k.kind != kind::LAYER || k.offset != 0 {
                return Err("not a layer key".into());
            }
            let r = LayerRecord::decode(v, k.id, total).map_err(|e| e.to_string())?;
            layers.push((k.id, LayerRecordOwned::from(&r)));
            Ok(Sums::default())
        });
        // The name index names every layer exactly once, and nothing else.
        let mut by_id: HashMap<u64, Vec<u8>> = HashMap::new();
        for (id, name, offset) in &index {
            if by_id.insert(*id, name.clone()).is_some() {
                self.report.error(format!(
                    "layer name index: layer {id} listed twice (offset {offset})"
                ));
            }
        }
        for (id, l) in &layers {
            match by_id.remove(id) {
                Some(n) if n == l.name => {}
                Some(n) => self.report.error(format!(
                    "layer {id}: named {:?}, the name index says {:?}",
                    String::from_utf8_lossy(&l.name),
                    String::from_utf8_lossy(&n)
                )),
                None => self
                    .report
                    .error(format!("layer {id}: missing from the name index")),
            }
        }
        for id in by_id.keys() {
            self.report
                .error(format!("layer name index: entry for missing layer {id}"));
        }
        self.report.stats.layers = layers.len() as u64;
        if layers.len() as u64 != self.sb.layer_count {
            self.report.error(format!(
                "superblock counts {} layers, the layer tree holds {}",
                self.sb.layer_count,
                layers.len()
            ));
        }
        let ids: HashMap<u64, usize> = layers
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        let mut names = HashSet::new();
        let mut children: HashMap<u64, u32> = HashMap::new();
        for (id, l) in &layers {
            if *id == 0 || *id >= self.sb.next_layer_id {
                self.report.error(format!(
                    "layer {id}: id not below next_layer_id {}",
                    self.sb.next_layer_id
                ));
            }
            if !names.insert(l.name.clone()) {
                self.report.error(format!(
                    "layer {id}: name {:?} used twice",
                    String::from_utf8_lossy(&l.name)
                ));
            }
            if l.parent != 0 {
                match ids.get(&l.parent) {
                    None => self
                        .report
                        .error(format!("layer {id}: parent {} does not exist", l.parent)),
                    Some(&p) => {
                        if l.parent >= *id {
                            self.report
                                .error(format!("layer {id}: parent {} is not older", l.parent));
                        }
                        if layers[p].1.flags & layer_flags::READ_ONLY == 0 {
                            self.report
                                .error(format!("layer {id}: parent {} is not frozen", l.parent));
                        }
                    }
                }
                *children.entry(l.parent).or_default() += 1;
            }
        }
        let nlayers = layers.len() as u64;
        for (n, (id, l)) in layers.iter().enumerate() {
            (self.progress)(Phase::Trees, n as u64, nlayers);
            let want = children.get(id).copied().unwrap_or(0);
            if l.children != want {
                self.report.fixable(
                    Fix::LayerChildren {
                        layer: *id,
                        children: want,
                    },
                    format!("layer {id}: records {} children, found {want}", l.children),
                );
            }
            if l.root != 0 {
                self.reference(l.root, "a layer record");
            }
            let what = format!("layer {id}");
            let mut max_ino = 0u64;
            let sums = self.walk_tree(l.root, tree_kind::FS, &what, &mut |c, k, v| {
                max_ino = max_ino.max(k.id);
                c.check_item(k, v)
            });
            // Items in shared leaves were seen through the first layer that reached them; the
            // highest inode number is only checked against leaves this layer reached first.
            if max_ino >= l.next_ino {
                self.report.error(format!(
                    "layer {id}: inode {max_ino} at or above next_ino {}",
                    l.next_ino
                ));
            }
            if let Some(s) = sums {
                if s.inodes != l.inodes_used || s.bytes != l.bytes_used {
                    self.report.fixable(
                        Fix::LayerUsage {
                            layer: *id,
                            inodes: s.inodes,
                            bytes: s.bytes,
                        },
                        format!(
                            "layer {id}: usage records {} inodes and {} bytes, the tree holds {} and {}",
                            l.inodes_used, l.bytes_used, s.inodes, s.bytes
                        ),
                    );
                }
                let birth = l.own_birth.unwrap_or(*id);
                if s.born_in(birth) != l.own_bytes {
                    self.report.fixable(
                        Fix::LayerOwn {
                            layer: *id,
                            own: s.born_in(birth),
                        },
                        format!(
                            "layer {id}: records {} bytes of its own (born in layer {birth}), the tree holds {}",
                            l.own_bytes,
                            s.born_in(birth)
                        ),
                    );
                }
                // The namespace of a layer without a parent is checked whole; a clone only where
                // it differs from its parent (the parent was checked before it: ids grow), so the
                // cost follows the changes.
                let whole = l.parent == 0 || !ids.contains_key(&l.parent);
                let set = if whole {
                    self.all_inodes(*id)
                } else {
                    self.touched_inodes(*id)
                };
                match set {
                    Ok(set) => {
                        self.check_file_data(*id, &set, l.flags & layer_flags::READ_ONLY != 0);
                        self.check_namespace(*id, set, whole);
                    }
                    Err(e) => self.report.error(format!("layer {id}: {e}")),
                }
            }
        }
        self.check_reclaim_queue(&queue);
    }

    /// The reclaim queue holds one reference to each node it names, and that node holds its
    /// children from the entry's progress on (those before it are dropped or queued above it).
    fn check_reclaim_queue(&mut self, queue: &[(u64, ReclaimRecord)]) {
        self.report.stats.reclaim_queued = queue.len() as u64;
        for (place, r) in queue {
            let what = format!("reclaim queue entry {place}");
            self.reference(r.block, &what);
            let Ok(next) = usize::try_from(r.next) else {
                self.report
                    .error(format!("{what}: progress {} out of range", r.next));
                continue;
            };
            self.walk_node(
                r.block,
                tree_kind::FS,
                r.level,
                None,
                None,
                true,
                next,
                &what,
                &mut |c, k, v| c.check_item(k, v),
            );
        }
    }

    /// Validates one item of a layer tree and references the blocks it points at.
    fn check_item(&mut self, k: &Key, v: &[u8]) -> Result<Sums, String> {
        let total = self.sb.total_blocks;
        let hash = records::HashKey(self.sb.hash_key[0], self.sb.hash_key[1]);
        let bucket = |name: &[u8]| -> bool {
            let h = hash.hash(name);
            (0..records::DIRENT_COLLISIONS).any(|i| records::dirent_offset(h, i) == Some(k.offset))
        };
        let e = |e: FormatError| e.to_string();
        if k.kind == kind::ORPHAN {
            // The orphan index: `(0, ORPHAN, ino)`, empty value.
            if k.id != 0 || k.offset == 0 || !v.is_empty() {
                return Err("bad orphan index item".into());
            }
            return Ok(Sums::default());
        }
        if k.id == 0 {
            return Err("inode number 0".into());
        }
        match k.kind {
            kind::INODE => {
                if k.offset != 0 {
                    return Err("inode key offset".into());
                }
                let rec = InodeRecord::decode(v).map_err(e)?;
                // Flags are an incompatible feature: a kernel that does not know them would
                // mount this filesystem and ignore them (an unknown bit fails the decoding).
                // The record still counts (its layer's usage is not what is wrong).
                if rec.flags != 0 && self.sb.incompat & superblock::INCOMPAT_INODE_FLAGS == 0 {
                    self.report.error(format!(
                        "inode {}: flags {:#x} ({}) on a filesystem without the inode_flags \
                         feature",
                        k.id,
                        rec.flags,
                        records::inode_flags::names(rec.flags)
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                }
                Ok(Sums {
                    inodes: 1,
                    ..Sums::default()
                })
            }
            kind::DIRENT => {
                let d = DirentRecord::decode(v).map_err(e)?;
                if !bucket(d.name) {
                    return Err("directory entry under the wrong hash".into());
                }
                Ok(Sums::default())
            }
            kind::LINK => {
                LinkRecord::decode(v).map_err(e)?;
                if k.offset == 0 {
                    return Err("link to directory 0".into());
                }
                Ok(Sums::default())
            }
            kind::EXTENT | kind::COW => {
                let x = ExtentRecord::decode(v, total).map_err(e)?;
                if k.offset
                    .checked_add(u64::from(x.len))
                    .is_none_or(|end| end > MAX_FILE_BLOCKS)
                {
                    return Err("extent past the largest file".into());
                }
                if k.kind == kind::COW && x.flags != 0 {
                    return Err("staging extent with flags".into());
                }
                self.data(x.disk_block, u64::from(x.len));
                // Staging extents hold blocks but are not in the usage counters.
                if k.kind != kind::EXTENT {
                    return Ok(Sums::default());
                }
                let bytes = u64::from(x.len) * u64::from(BLOCK_SIZE);
                Ok(Sums {
                    inodes: 0,
                    bytes,
                    born: vec![(x.birth(), bytes)],
                })
            }
            kind::INLINE => {
                records::inline_data(v).map_err(e)?;
                Ok(Sums::default())
            }
            kind::XATTR => {
                let x = XattrRecord::decode(v, total).map_err(e)?;
                if !bucket(x.name) {
                    return Err("xattr under the wrong hash".into());
                }
                // A POSIX ACL the kernel cannot decode fails every permission check of its
                // inode: inline, or in blocks of its own (over about 120 entries).
                let acl = records::POSIX_ACL_NAMES.contains(&x.name);
                match x.value {
                    records::XattrValue::Inline(v) => {
                        if acl {
                            records::check_posix_acl(v).map_err(e)?;
                        }
                    }
                    records::XattrValue::External { extent, len } => {
                        // The blocks are referenced whatever the value holds.
                        self.data(extent.disk_block, u64::from(extent.len));
                        if acl {
                            let value = self.external_value(&extent, len)?;
                            records::check_posix_acl(&value).map_err(e)?;
                        }
                    }
                }
                Ok(Sums::default())
            }
            other => Err(format!("unknown item kind {other}")),
        }
    }

    /// The value of an xattr kept in blocks of its own (`len` bytes, at most 64 KiB).
    fn external_value(&mut self, extent: &ExtentRecord, len: u32) -> Result<Vec<u8>, String> {
        let len = usize::try_from(len).map_err(|_| "xattr value length".to_string())?;
        let mut value = Vec::with_capacity(len);
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        for b in extent.disk_block..extent.disk_block.saturating_add(u64::from(extent.len)) {
            if value.len() >= len {
                break;
            }
            self.vol
                .store()
                .read(b, &mut buf)
                .map_err(|e| format!("value block {b}: {}", tree_err(e)))?;
            let n = (len - value.len()).min(buf.len());
            value.extend_from_slice(&buf[..n]);
        }
        if value.len() != len {
            return Err(format!("value of {len} bytes in {} blocks", extent.len));
        }
        Ok(value)
    }

    fn data(&mut self, start: u64, len: u64) {
        self.reference_run(start, len, "a file extent", true);
    }

    /// Compares every block's count in the map with the references found, in block order:
    /// the leaves read, and the blocks between them (which no materialised leaf holds: free).
    fn compare_counts(&mut self, counts: &Counts) {
        let total = self.sb.total_blocks;
        let mut cur = counts.cursor(0);
        let leaves = std::mem::take(&mut self.leaves);
        let mut pos = 0u64;
        (self.progress)(Phase::Counts, 0, total);
        for leaf in &leaves {
            (self.progress)(Phase::Counts, leaf.first, total);
            self.compare_uniform(&mut cur, pos..leaf.first, 0);
            let blocks = leaf.first.max(pos)..leaf.first.saturating_add(LEAF_ENTRIES).min(total);
            pos = pos.max(blocks.end);
            match leaf.uniform {
                Some(v) => self.compare_uniform(&mut cur, blocks, v),
                None => match read_leaf(self.vol.store(), &self.sb, leaf) {
                    Ok(buf) => self.compare_leaf(&mut cur, blocks, leaf.first, &buf),
                    Err(e) => self
                        .report
                        .fixable(Fix::Map, format!("reference-count map: {e}")),
                },
            }
        }
        self.compare_uniform(&mut cur, pos..total, 0);
        self.leaves = leaves;
    }

    /// Compares `blocks`, each of count `got` in the map.
    fn compare_uniform(&mut self, cur: &mut Cursor<'_>, blocks: Range<u64>, got: u32) {
        for (run, want) in cur.pieces(blocks) {
            if want != got {
                self.count_errors(run, got, want);
            }
        }
    }

    /// Compares `blocks` with their counts in `leaf`, the map leaf counting from `first`.
    fn compare_leaf(&mut self, cur: &mut Cursor<'_>, blocks: Range<u64>, first: u64, leaf: &[u8]) {
        for (run, want) in cur.pieces(blocks) {
            for b in run {
                let got = b
                    .checked_sub(first)
                    .and_then(|i| refmap::leaf_get(leaf, i).ok());
                // Validated: every block of the leaf's range has its count.
                let Some(got) = got else { continue };
                if want != got {
                    self.count_errors(b..b.saturating_add(1), got, want);
                }
            }
        }
    }

    /// Blocks whose count in the map is `got` where `want` references were found.
    fn count_errors(&mut self, blocks: Range<u64>, got: u32, want: u32) {
        self.report
            .block_errors(blocks, Some(Fix::Map), |b| match (got, want) {
                (0, w) => format!("block {b}: referenced {w} times but marked free"),
                (g, 0) => {
                    format!("block {b}: reference count {g} but nothing references it (leaked)")
                }
                (g, w) => format!("block {b}: reference count {g}, references found {w}"),
            });
    }
}

/// A layer record with its name owned.
struct LayerRecordOwned {
    parent: u64,
    flags: u32,
    children: u32,
    root: u64,
    bytes_used: u64,
    inodes_used: u64,
    next_ino: u64,
    own_bytes: u64,
    /// The birth layer of the extents counted as its own (itself unless a snapshot).
    own_birth: Option<u64>,
    name: Vec<u8>,
}

impl From<&LayerRecord<'_>> for LayerRecordOwned {
    fn from(r: &LayerRecord<'_>) -> Self {
        Self {
            parent: r.parent,
            flags: r.flags,
            children: r.children,
            root: r.root,
            bytes_used: r.bytes_used,
            inodes_used: r.inodes_used,
            next_ino: r.next_ino,
            own_bytes: r.own_bytes,
            own_birth: (r.own_birth != 0).then_some(u64::from(r.own_birth)),
            name: r.name.to_vec(),
        }
    }
}

/// What the namespace check gathers about one inode of a layer.
#[derive(Default)]
struct NsInode {
    /// Mode and link count, if the inode record exists.
    attrs: Option<(u32, u32)>,
    /// Back references: parent directory, count, recorded name.
    links: Vec<(u64, u32, Vec<u8>)>,
    /// Entries, if a directory: name, target inode, type, key offset.
    entries: Vec<(Vec<u8>, u64, u8, u64)>,
    /// Whether any item other than the inode record exists (orphan items need the record).
    has_items: bool,
}

impl<S: volume::Device<Buf = Vec<u8>>> Checker<'_, S> {
    /// Reads every item of inode `ino` in `layer`.
    fn gather(&mut self, layer: u64, ino: u64) -> Result<NsInode, String> {
        let mut out = NsInode::default();
        let mut from = Key::new(ino, 0, 0);
        loop {
            let got = self
                .vol
                .next(layer, &from, |k, v| (*k, v.to_vec()))
                .map_err(tree_err)?;
            let Some((k, v)) = got else { break };
            if k.id != ino {
                break;
            }
            match k.kind {
                kind::INODE => {
                    let r = InodeRecord::decode(&v).map_err(|e| e.to_string())?;
                    out.attrs = Some((r.mode, r.nlink));
                }
                kind::LINK => {
                    let l = LinkRecord::decode(&v).map_err(|e| e.to_string())?;
                    out.links.push((k.offset, l.count, l.name.to_vec()));
                    out.has_items = true;
                }
                kind::DIRENT => {
                    let d = DirentRecord::decode(&v).map_err(|e| e.to_string())?;
                    out.entries
                        .push((d.name.to_vec(), d.ino, d.dtype, k.offset));
                    out.has_items = true;
                }
                _ => out.has_items = true,
            }
            from = match (k.offset.checked_add(1), k.kind.checked_add(1)) {
                (Some(o), _) => Key::new(k.id, k.kind, o),
                (None, Some(kd)) => Key::new(k.id, kd, 0),
                (None, None) => break,
            };
        }
        Ok(out)
    }

    /// Namespace invariants of layer `id` for the inodes in `set` (every inode of the layer, or
    /// those a diff against the parent touched, plus the directories that link them):
    /// entries point at existing inodes of their type, back references match the entries,
    /// link counts match the names (and subdirectories), every inode but the root is linked,
    /// and no items outlive their inode.
    ///
    /// Orphans (inodes kept with link count 0 after their last name went, see
    /// `Volume::unlink_keep`) have no names, no entries, and an orphan-index item; every
    /// orphan-index item names such an inode.
    fn check_namespace(&mut self, id: u64, mut set: std::collections::BTreeSet<u64>, whole: bool) {
        // Key id 0 holds the orphan index, not an inode.
        set.remove(&0);
        let orphans = match self.orphan_items(id, &set, whole) {
            Ok(o) => o,
            Err(e) => {
                self.report.error(format!("layer {id}: orphan index: {e}"));
                return;
            }
        };
        let mut inodes: HashMap<u64, NsInode> = HashMap::new();
        let mut todo: Vec<u64> = set.iter().chain(&orphans).copied().collect();
        // The directories that link a gathered inode are gathered too, to count its names.
        while let Some(ino) = todo.pop() {
            if inodes.contains_key(&ino) {
                continue;
            }
            match self.gather(id, ino) {
                Ok(n) => {
                    for (p, _, _) in &n.links {
                        if !inodes.contains_key(p) {
                            todo.push(*p);
                        }
                    }
                    inodes.insert(ino, n);
                }
                Err(e) => {
                    self.report.error(format!("layer {id}: inode {ino}: {e}"));
                    return;
                }
            }
        }
        let is_dir = |m: u32| m & records::mode::S_IFMT == records::mode::S_IFDIR;
        let mut names_from: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
        for (&dir, n) in &inodes {
            for (name, target, _, _) in &n.entries {
                names_from
                    .entry((*target, dir))
                    .or_default()
                    .push(name.clone());
            }
        }
        // Each error with the repair it calls for, if any.
        let mut errors: Vec<(String, Option<Fix>)> = Vec::new();
        let push = |errors: &mut Vec<(String, Option<Fix>)>, msg: String| errors.push((msg, None));
        for &ino in &orphans {
            if inodes.get(&ino).is_none_or(|n| n.attrs.is_none()) {
                push(&mut errors, format!("orphan item for missing inode {ino}"));
            }
        }
        for (&ino, n) in &inodes {
            let Some((mode, nlink)) = n.attrs else {
                if n.has_items {
                    push(
                        &mut errors,
                        format!("items of inode {ino}, which has no inode record"),
                    );
                }
                continue;
            };
            // Whether the orphan index holds the inode: known for a whole layer and for the
            // inodes a clone's diff touched; looked up for another orphan (the other inodes of a
            // clone are as in its parent, which was checked).
            let indexed = if whole || set.contains(&ino) || nlink != 0 {
                orphans.contains(&ino)
            } else {
                match self.vol.lookup(id, &namespace::orphan_key(ino), |_| ()) {
                    Ok(found) => found.is_some(),
                    Err(e) => {
                        push(
                            &mut errors,
                            format!("inode {ino}: orphan index: {}", tree_err(e)),
                        );
                        continue;
                    }
                }
            };
            if nlink == 0 {
                if ino == lcfs_format::ROOT_INO {
                    push(&mut errors, "the root has link count 0".into());
                }
                if !indexed {
                    let msg = format!("inode {ino}: link count 0 but no orphan item");
                    // Without names or entries it is what an orphan is: index it.
                    let fix = (ino != lcfs_format::ROOT_INO
                        && n.links.is_empty()
                        && n.entries.is_empty())
                    .then_some(Fix::OrphanIndex { layer: id, ino });
                    errors.push((msg, fix));
                }
                if !n.links.is_empty() {
                    push(&mut errors, format!("orphan inode {ino} has names"));
                }
                if !n.entries.is_empty() {
                    push(&mut errors, format!("orphan directory {ino} has entries"));
                }
                continue;
            }
            if indexed {
                push(
                    &mut errors,
                    format!("orphan item for inode {ino}, which has links"),
                );
            }
            if ino == lcfs_format::ROOT_INO {
                if !is_dir(mode) {
                    push(&mut errors, "the root is not a directory".into());
                }
            } else if n.links.is_empty() {
                errors.push((
                    format!("inode {ino} has no name (orphan)"),
                    Some(Fix::Unnamed { layer: id, ino }),
                ));
            }
            for (name, target, dtype, offset) in &n.entries {
                let shown = String::from_utf8_lossy(name);
                let t = inodes.get(target).and_then(|t| t.attrs.map(|a| a.0));
                let t = match t {
                    Some(m) => Some(m),
                    None => self
                        .vol
                        .lookup(id, &Key::new(*target, kind::INODE, 0), |v| {
                            InodeRecord::decode(v).map(|r| r.mode)
                        })
                        .ok()
                        .flatten()
                        .and_then(Result::ok),
                };
                match t {
                    None => errors.push((
                        format!(
                            "entry {shown:?} of directory {ino} points to missing inode {target}"
                        ),
                        Some(Fix::DanglingEntry {
                            layer: id,
                            dir: ino,
                            offset: *offset,
                        }),
                    )),
                    Some(m) if records::file_type(m) != Some(*dtype) => push(&mut errors, format!(
                        "entry {shown:?} of directory {ino}: type {dtype} but inode {target} has mode {m:o}"
                    )),
                    Some(_) => {}
                }
            }
            let mut link_sum = 0u64;
            for (parent, count, name) in &n.links {
                link_sum += u64::from(*count);
                let names = names_from
                    .get(&(ino, *parent))
                    .map_or(&[][..], Vec::as_slice);
                if names.len() as u64 != u64::from(*count) {
                    push(&mut errors, format!(
                        "inode {ino}: back reference counts {count} names in directory {parent}, found {}",
                        names.len()
                    ));
                } else if !names.contains(name) {
                    push(
                        &mut errors,
                        format!(
                            "inode {ino}: back reference name {:?} is not in directory {parent}",
                            String::from_utf8_lossy(name)
                        ),
                    );
                }
            }
            let want = if is_dir(mode) {
                2 + n.entries.iter().filter(|e| e.2 == 4).count() as u64
            } else {
                link_sum
            };
            if u64::from(nlink) != want {
                let fix = match u32::try_from(want) {
                    // No names at all: it goes to lost+found (and is counted again then).
                    Ok(0) if n.links.is_empty() && ino != lcfs_format::ROOT_INO => {
                        Some(Fix::Unnamed { layer: id, ino })
                    }
                    Ok(nlink) if nlink > 0 => Some(Fix::LinkCount {
                        layer: id,
                        ino,
                        nlink,
                    }),
                    _ => None,
                };
                errors.push((
                    format!("inode {ino}: link count {nlink}, expected {want}"),
                    fix,
                ));
            }
        }
        // Every entry of a gathered directory needs the back reference of its target.
        for (&dir, n) in &inodes {
            for (name, target, _, offset) in &n.entries {
                if let Some(t) = inodes.get(target) {
                    if !t.links.iter().any(|l| l.0 == dir) {
                        // A missing target has none: the entry goes with its other error.
                        let fix =
                            (t.attrs.is_none() && !t.has_items).then_some(Fix::DanglingEntry {
                                layer: id,
                                dir,
                                offset: *offset,
                            });
                        errors.push((
                            format!(
                                "entry {:?} of directory {dir}: inode {target} has no back reference",
                                String::from_utf8_lossy(name)
                            ),
                            fix,
                        ));
                    }
                }
            }
        }
        errors.sort();
        for (e, fix) in errors {
            let msg = format!("layer {id}: {e}");
            match fix {
                Some(f) => self.report.fixable(f, msg),
                None => self.report.error(msg),
            }
        }
    }

    /// The inodes whose namespace facts may differ between layer `id` and its parent.
    fn touched_inodes(&mut self, id: u64) -> Result<std::collections::BTreeSet<u64>, String> {
        let mut set = std::collections::BTreeSet::new();
        self.vol
            .diff(id, Key::MIN, &mut |c| {
                set.insert(c.key.id);
                match c.key.kind {
                    kind::DIRENT => {
                        for v in [c.old, c.new].into_iter().flatten() {
                            if let Ok(d) = DirentRecord::decode(v) {
                                set.insert(d.ino);
                            }
                        }
                    }
                    kind::LINK | kind::ORPHAN => {
                        set.insert(c.key.offset);
                    }
                    _ => {}
                }
                Ok(true)
            })
            .map_err(tree_err)?;
        Ok(set)
    }

    /// The orphan-index entries to check: every one of a layer checked whole, else those of the
    /// inodes in `set` (which holds every entry the diff against the parent touched).
    fn orphan_items(
        &mut self,
        id: u64,
        set: &std::collections::BTreeSet<u64>,
        whole: bool,
    ) -> Result<std::collections::BTreeSet<u64>, String> {
        let mut out = std::collections::BTreeSet::new();
        if !whole {
            for &ino in set {
                let key = namespace::orphan_key(ino);
                if self
                    .vol
                    .lookup(id, &key, |_| ())
                    .map_err(tree_err)?
                    .is_some()
                {
                    out.insert(ino);
                }
            }
            return Ok(out);
        }
        let mut from = namespace::orphan_key(0);
        while let Some(k) = self.vol.next(id, &from, |k, _| *k).map_err(tree_err)? {
            if k.id != 0 || k.kind != kind::ORPHAN {
                break;
            }
            out.insert(k.offset);
            match k.offset.checked_add(1) {
                Some(o) => from = namespace::orphan_key(o),
                None => break,
            }
        }
        Ok(out)
    }

    /// The items `(ino, k, offset)` of layer `id` as `(offset, extent)`, in order.
    fn extent_items(
        &mut self,
        id: u64,
        ino: u64,
        k: u8,
    ) -> Result<Vec<(u64, ExtentRecord)>, String> {
        let total = self.sb.total_blocks;
        let mut out = Vec::new();
        let mut from = Key::new(ino, k, 0);
        while let Some((key, x)) = self
            .vol
            .next(id, &from, |key, v| (*key, ExtentRecord::decode(v, total)))
            .map_err(tree_err)?
        {
            if key.id != ino || key.kind != k {
                break;
            }
            out.push((key.offset, x.map_err(|e| e.to_string())?));
            match key.offset.checked_add(1) {
                Some(o) => from = Key::new(ino, k, o),
                None => break,
            }
        }
        Ok(out)
    }

    /// File data of the inodes in `set` of layer `id`: only regular files have extents; extents
    /// do not overlap and add up to the inode's `blocks`; staging extents (copy-on-write writes
    /// in progress) do not overlap, stand over written extents within the file's size, and
    /// never reach a frozen layer.
    fn check_file_data(&mut self, id: u64, set: &std::collections::BTreeSet<u64>, frozen: bool) {
        for &ino in set {
            let mut errors = Vec::new();
            if let Err(e) = self.check_inode_data(id, ino, frozen, &mut errors) {
                errors.push(e);
            }
            for e in errors {
                self.report.error(format!("layer {id}: inode {ino}: {e}"));
            }
        }
    }

    fn check_inode_data(
        &mut self,
        id: u64,
        ino: u64,
        frozen: bool,
        errors: &mut Vec<String>,
    ) -> Result<(), String> {
        let rec = self
            .vol
            .lookup(id, &Key::new(ino, kind::INODE, 0), InodeRecord::decode)
            .map_err(tree_err)?;
        // No record: the namespace check reports items without an inode.
        let Some(Ok(rec)) = rec else { return Ok(()) };
        let extents = self.extent_items(id, ino, kind::EXTENT)?;
        let staged = self.extent_items(id, ino, kind::COW)?;
        // File data is counted in `blocks` of regular files (other inodes have no data path;
        // tests use their extents as opaque items).
        let regular = rec.mode & records::mode::S_IFMT == records::mode::S_IFREG;
        // Ids are taken from the superblock's counter: one at or past it was never handed out,
        // and could be handed out again to other contents.
        if regular && rec.data_id >= self.sb.next_data_id {
            errors.push(format!(
                "data_id {} not below next_data_id {}",
                rec.data_id, self.sb.next_data_id
            ));
        } else if !regular && rec.data_id != 0 {
            errors.push(format!(
                "data_id {} on an inode that is not a regular file",
                rec.data_id
            ));
        }
        let mut sum = 0u64;
        let mut end = 0u64;
        // Written runs, merged, for the staging check.
        let mut written: Vec<(u64, u64)> = Vec::new();
        for (off, x) in &extents {
            let len = u64::from(x.len);
            if *off < end {
                errors.push(format!("extents overlap at file block {off}"));
            }
            let stop = off.saturating_add(len);
            end = end.max(stop);
            sum = sum.saturating_add(len);
            if x.flags & records::extent_flags::UNWRITTEN == 0 {
                match written.last_mut() {
                    Some(w) if w.1 >= *off => w.1 = w.1.max(stop),
                    _ => written.push((*off, stop)),
                }
            }
        }
        if regular && sum != rec.blocks {
            errors.push(format!("blocks {}, extents hold {sum}", rec.blocks));
        }
        self.check_inline_items(id, ino, &rec, errors)?;
        let size_blocks = rec.size.div_ceil(u64::from(BLOCK_SIZE));
        let mut end = 0u64;
        for (off, x) in &staged {
            let stop = off.saturating_add(u64::from(x.len));
            if frozen {
                errors.push(format!(
                    "staging extent at file block {off} in a frozen layer"
                ));
            }
            if *off < end {
                errors.push(format!("staging extents overlap at file block {off}"));
            }
            end = end.max(stop);
            if stop > size_blocks {
                errors.push(format!(
                    "staging extent at file block {off} past the end of the file ({size_blocks} blocks)"
                ));
            }
            if !written.iter().any(|w| w.0 <= *off && stop <= w.1) {
                errors.push(format!(
                    "staging extent at file block {off} does not stand over written data"
                ));
            }
        }
        Ok(())
    }

    /// A symlink's target: inline items 0, 1, ..., each full but the last, adding up to the
    /// inode's size. (Other inodes' inline items are not checked here: the host tests use them
    /// as opaque items.)
    fn check_inline_items(
        &mut self,
        id: u64,
        ino: u64,
        rec: &InodeRecord,
        errors: &mut Vec<String>,
    ) -> Result<(), String> {
        if rec.mode & records::mode::S_IFMT != records::mode::S_IFLNK {
            return Ok(());
        }
        let mut from = Key::new(ino, kind::INLINE, 0);
        let mut total = 0u64;
        let mut expect = 0u64;
        let mut short = false;
        while let Some((key, n)) = self
            .vol
            .next(id, &from, |key, v| {
                (*key, records::inline_data(v).map(<[u8]>::len))
            })
            .map_err(tree_err)?
        {
            if key.id != ino || key.kind != kind::INLINE {
                break;
            }
            let Ok(n) = n else { break };
            if key.offset != expect || short {
                errors.push(format!("stray inline item {}", key.offset));
            }
            short = n < records::INLINE_CHUNK;
            total = total.saturating_add(n as u64);
            expect = key.offset.saturating_add(1);
            match key.offset.checked_add(1) {
                Some(o) => from = Key::new(ino, kind::INLINE, o),
                None => break,
            }
        }
        if total != rec.size {
            errors.push(format!("symlink size {}, target holds {total}", rec.size));
        }
        Ok(())
    }

    /// Every inode number of layer `id`.
    fn all_inodes(&mut self, id: u64) -> Result<std::collections::BTreeSet<u64>, String> {
        let mut set = std::collections::BTreeSet::new();
        let mut from = Key::MIN;
        while let Some(k) = self.vol.next(id, &from, |k, _| *k).map_err(tree_err)? {
            set.insert(k.id);
            match k.id.checked_add(1) {
                Some(n) => from = Key::new(n, 0, 0),
                None => break,
            }
        }
        Ok(set)
    }
}

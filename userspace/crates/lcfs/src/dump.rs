//! `lcfs debug dump`: every on-disk structure, for humans (or JSON for tools).
//!
//! Damage does not stop the dump: a node that cannot be read is shown as UNREADABLE with the
//! reason and what it covers (a key range of its tree, a range of the map's counts), everything
//! else is shown, and the command then fails (exit status 1).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use lcfs_format::namespace::PathChange;
use lcfs_format::node::{self, Key};
use lcfs_format::records::{
    self, kind, layer_flags, DirentRecord, ExtentRecord, InodeRecord, LayerRecord, LinkRecord,
    Timespec, XattrRecord, XattrValue,
};
use lcfs_format::refmap::{self, LEAF_ENTRIES, NODE_ENTRIES};
use lcfs_format::superblock::{self, Superblock};
use lcfs_format::tree::Error as TreeError;
use lcfs_format::volume::{tree_kind, Volume};
use lcfs_format::{FormatError, BLOCK_SIZE};
use lcfs_image::output::count;
use lcfs_image::{key_text, os_text, outln, Access, Device};
use serde::Serialize;

/// The whole dump.
#[derive(Debug, Serialize)]
struct Dump {
    superblock: SuperSummary,
    map: Vec<MapEntry>,
    layers: Vec<Layer>,
    trees: Vec<TreeDump>,
    /// Everything that could not be read, one line each (also marked in place).
    unreadable: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SuperSummary {
    generation: u64,
    /// Incompatible features (`incompat`): `INCOMPAT_INODE_FLAGS` is 1.
    incompat: u64,
    total_blocks: u64,
    free_blocks: u64,
    reserve_blocks: u64,
    map_root: u64,
    map_level: u8,
    layer_root: u64,
    layer_count: u64,
    next_layer_id: u64,
    next_data_id: u64,
}

/// A block that could not be read or failed its checks, where a node was expected.
#[derive(Debug, Serialize)]
struct Unreadable {
    block: u64,
    /// Level the parent expects of it, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<u8>,
    /// Why.
    unreadable: String,
    /// What is not shown because of it.
    covers: String,
    /// Whether this block was already shown under another tree (shared, not counted again).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    shared_with_earlier: bool,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum MapEntry {
    Node(MapNode),
    Unreadable(Unreadable),
}

#[derive(Debug, Serialize)]
struct MapNode {
    block: u64,
    level: u8,
    first: u64,
    generation: u64,
    /// Interior nodes: the materialised children.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<MapChild>,
    /// Interior nodes: free blocks under unmaterialised children.
    #[serde(skip_serializing_if = "Option::is_none")]
    unmaterialised_free: Option<u64>,
    /// Leaves: runs of blocks in use, as `[first, last, count]` (count 0: mixed counts > 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    used: Vec<[u64; 3]>,
}

#[derive(Debug, Serialize)]
struct MapChild {
    index: u64,
    block: u64,
    free: u64,
}

#[derive(Debug, Serialize)]
struct Layer {
    id: u64,
    name: String,
    parent: u64,
    read_only: bool,
    children: u32,
    root: u64,
    inodes_used: u64,
    bytes_used: u64,
    next_ino: u64,
    /// Seconds and nanoseconds since the epoch, `SECONDS.NANOSECONDS`.
    create_time: String,
    /// The same in UTC, `YYYY-MM-DD HH:MM:SS.NANOSECONDS UTC`.
    create_time_utc: String,
}

/// How decoded items show times: as text for people, or raw seconds in JSON (as it always has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeForm {
    /// Seconds and nanoseconds since the epoch: `1700000000.000000000`.
    Raw,
    /// UTC: `2023-11-14 22:13:20.000000000 UTC`.
    Human,
}

/// `t` in UTC to the nanosecond: `2026-12-06 17:52:04.123456789 UTC`.
pub(crate) fn utc_time(t: Timespec) -> String {
    format!("{}.{:09} UTC", crate::layer::utc(t.sec), t.nsec)
}

/// `t` in `form`.
fn time_str(t: Timespec, form: TimeForm) -> String {
    match form {
        TimeForm::Raw => format!("{}.{:09}", t.sec, t.nsec),
        TimeForm::Human => utc_time(t),
    }
}

#[derive(Debug, Serialize)]
struct TreeDump {
    /// "layers" or "layer N".
    tree: String,
    root: u64,
    nodes: Vec<TreeEntry>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum TreeEntry {
    Node(TreeNode),
    Unreadable(Unreadable),
}

#[derive(Debug, Serialize)]
struct TreeNode {
    block: u64,
    level: u8,
    generation: u64,
    /// `None` when the reference-count map could not say.
    refcount: Option<u32>,
    items: usize,
    first_key: Option<String>,
    last_key: Option<String>,
    /// Whether this node was already shown under another tree (shared, not repeated).
    shared_with_earlier: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    item_list: Vec<String>,
}

/// One item decoded for humans.
fn item_str(k: &Key, v: &[u8], total: u64, times: TimeForm) -> String {
    let body = match k.kind {
        kind::INODE => InodeRecord::decode(v).map(|i| {
            // Inode flags (`chattr`) only where there are some: `flags immutable,nodump`.
            let flags = if i.flags == 0 {
                String::new()
            } else {
                let names: Vec<&str> = records::inode_flags::names(i.flags).collect();
                format!(" flags {}", names.join(","))
            };
            format!(
                "mode {:o} uid {} gid {} nlink {} size {} blocks {} mtime {} gen {}{flags}",
                i.mode,
                i.uid,
                i.gid,
                i.nlink,
                i.size,
                i.blocks,
                time_str(i.mtime, times),
                i.generation
            )
        }),
        kind::DIRENT => DirentRecord::decode(v).map(|d| {
            format!(
                "{:?} -> inode {} type {}",
                String::from_utf8_lossy(d.name),
                d.ino,
                d.dtype
            )
        }),
        kind::LINK => LinkRecord::decode(v).map(|l| {
            format!(
                "{} links, one named {:?}",
                l.count,
                String::from_utf8_lossy(l.name)
            )
        }),
        kind::EXTENT | kind::COW => ExtentRecord::decode(v, total).map(|e| {
            format!(
                "blocks {}..{} flags {}",
                e.disk_block,
                e.disk_block.saturating_add(u64::from(e.len)),
                e.flags
            )
        }),
        kind::INLINE => records::inline_data(v).map(|d| format!("{} bytes inline", d.len())),
        kind::XATTR => XattrRecord::decode(v, total).map(|x| match x.value {
            XattrValue::Inline(d) => format!(
                "{:?}: {} bytes inline",
                String::from_utf8_lossy(x.name),
                d.len()
            ),
            XattrValue::External { extent, len } => format!(
                "{:?}: {len} bytes in blocks {}..{}",
                String::from_utf8_lossy(x.name),
                extent.disk_block,
                extent.disk_block.saturating_add(u64::from(extent.len))
            ),
        }),
        kind::LAYER => LayerRecord::decode(v, k.id, total)
            .map(|l| format!("layer {:?}", String::from_utf8_lossy(l.name))),
        _ => Ok(format!("{} bytes", v.len())),
    };
    match body {
        Ok(b) => format!("{} {b}", key_text(k)),
        Err(e) => format!("{} INVALID: {e}", key_text(k)),
    }
}

/// A node's validation error in words that fit a node (the core's text for a bad magic number
/// speaks of whole filesystems).
fn node_err(e: FormatError) -> String {
    match e {
        FormatError::BadMagic => "no node there (bad magic number)".into(),
        e => e.to_string(),
    }
}

/// Where blocks come from: the opened volume, whose map gives reference counts, or the device
/// alone when the volume does not open (its map root is damaged).
enum Source {
    Volume(Box<Volume<Device>>),
    Device(Device),
}

impl Source {
    fn device(&mut self) -> &mut Device {
        match self {
            Self::Volume(v) => v.store(),
            Self::Device(d) => d,
        }
    }

    /// Reads block `block` into a new buffer; the error says why not.
    fn read(&mut self, block: u64, total_blocks: u64) -> Result<Vec<u8>, String> {
        if block < Superblock::FIXED_BLOCKS || block >= total_blocks {
            return Err(format!("block number out of range (0..{total_blocks})"));
        }
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        let pos = block
            .checked_mul(u64::from(BLOCK_SIZE))
            .ok_or_else(|| "block number out of range".to_owned())?;
        self.device().read_at(pos, &mut buf).map_err(|e| match e {
            lcfs_image::Error::Io { error, .. } => format!("read error: {}", os_text(&error)),
            other => other.to_string(),
        })?;
        Ok(buf)
    }

    fn refcount(&mut self, block: u64) -> Option<u32> {
        match self {
            Self::Volume(v) => v.refcount(block).ok(),
            Self::Device(_) => None,
        }
    }
}

/// What the walks could not read.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, what: &str, u: &Unreadable) {
        self.0.push(format!(
            "{what}: node {}: {}; not shown: {}",
            u.block, u.unreadable, u.covers
        ));
    }
}

fn dump_map(src: &mut Source, sb: &Superblock, problems: &mut Problems) -> Vec<MapEntry> {
    let total = sb.total_blocks;
    let mut out = Vec::new();
    let mut stack = vec![(sb.map_root, sb.map_level, 0u64)];
    while let Some((block, level, first)) = stack.pop() {
        let last = first
            .saturating_add(refmap::coverage(level).get())
            .min(total);
        let unreadable = |why: String| Unreadable {
            block,
            level: Some(level),
            unreadable: why,
            covers: format!("the reference counts of blocks {first}..{last}"),
            shared_with_earlier: false,
        };
        let node = src.read(block, total).and_then(|buf| {
            let hdr = refmap::check(
                &buf,
                &refmap::MapExpect {
                    blocknr: block,
                    fsid: sb.fsid(),
                    level,
                    first,
                    // As the volume opens it: the committed state is older than the running
                    // transaction.
                    txn_generation: sb.generation.saturating_add(1),
                    pins_from: sb.generation.saturating_add(1),
                    total_blocks: total,
                },
            )
            .map_err(node_err)?;
            map_node(&buf, block, level, first, hdr.generation, &mut stack).map_err(node_err)
        });
        match node {
            Ok(n) => out.push(MapEntry::Node(n)),
            Err(why) => {
                let u = unreadable(why);
                problems.add("reference-count map", &u);
                out.push(MapEntry::Unreadable(u));
            }
        }
    }
    out
}

/// Decodes a map node that passed its checks; pushes its children on `stack`.
fn map_node(
    buf: &[u8],
    block: u64,
    level: u8,
    first: u64,
    generation: u64,
    stack: &mut Vec<(u64, u8, u64)>,
) -> Result<MapNode, FormatError> {
    let mut node = MapNode {
        block,
        level,
        first,
        generation,
        children: Vec::new(),
        unmaterialised_free: None,
        used: Vec::new(),
    };
    let Some(below) = level.checked_sub(1) else {
        let mut run: Option<[u64; 3]> = None;
        for i in 0..LEAF_ENTRIES {
            let v = u64::from(refmap::leaf_get(buf, i)?);
            let b = first.saturating_add(i);
            match (&mut run, v) {
                (Some(r), v) if v != 0 && r[1].saturating_add(1) == b => {
                    r[1] = b;
                    if r[2] != v {
                        r[2] = 0;
                    }
                }
                (_, 0) => {
                    if let Some(r) = run.take() {
                        node.used.push(r);
                    }
                }
                (_, v) => {
                    if let Some(r) = run.replace([b, b, v]) {
                        node.used.push(r);
                    }
                }
            }
        }
        node.used.extend(run);
        return Ok(node);
    };
    let cov = refmap::coverage(below).get();
    let mut unmat = 0u64;
    let mut children = Vec::new();
    for i in 0..NODE_ENTRIES {
        let e = refmap::entry_get(buf, i)?;
        if e.child == 0 {
            unmat = unmat.saturating_add(e.free);
        } else {
            node.children.push(MapChild {
                index: i,
                block: e.child,
                free: e.free,
            });
            children.push((e.child, below, first.saturating_add(i.saturating_mul(cov))));
        }
    }
    // Only a node that decoded whole hands out its children.
    stack.extend(children);
    node.unmaterialised_free = Some(unmat);
    Ok(node)
}

/// What an unreadable child covers: keys from `lo` up to `hi`.
fn key_range(lo: Option<Key>, hi: Option<Key>) -> String {
    match (lo, hi) {
        (None, None) => "the whole tree".into(),
        (Some(l), None) => format!("keys from {} on", key_text(&l)),
        (None, Some(h)) => format!("keys before {}", key_text(&h)),
        (Some(l), Some(h)) => format!("keys from {} up to {}", key_text(&l), key_text(&h)),
    }
}

/// A node of a tree walk: block, expected level, and the key range its parent gives it.
type Pending = (u64, Option<u8>, Option<Key>, Option<Key>);

#[allow(clippy::too_many_arguments)]
fn dump_tree(
    src: &mut Source,
    sb: &Superblock,
    name: String,
    root: u64,
    tree: u8,
    items: Option<TimeForm>,
    seen: &mut HashSet<u64>,
    problems: &mut Problems,
    leaf_items: &mut dyn FnMut(&Key, &[u8]),
) -> TreeDump {
    let mut out = TreeDump {
        tree: name,
        root,
        nodes: Vec::new(),
    };
    let mut stack: Vec<Pending> = if root == 0 {
        vec![]
    } else {
        vec![(root, None, None, None)]
    };
    while let Some((block, level, lo, hi)) = stack.pop() {
        let node = src.read(block, sb.total_blocks).and_then(|buf| {
            tree_node(
                src, sb, &buf, block, level, tree, items, seen, hi, &mut stack, leaf_items,
            )
            .map_err(node_err)
        });
        match node {
            Ok(n) => out.nodes.push(TreeEntry::Node(n)),
            Err(why) => {
                let u = Unreadable {
                    block,
                    level,
                    unreadable: why,
                    covers: key_range(lo, hi),
                    shared_with_earlier: !seen.insert(block),
                };
                if !u.shared_with_earlier {
                    problems.add(&out.tree, &u);
                }
                out.nodes.push(TreeEntry::Unreadable(u));
            }
        }
    }
    out
}

/// Decodes a tree node; pushes the children of an interior node seen the first time (`hi`: the
/// end of its own key range).
#[allow(clippy::too_many_arguments)]
fn tree_node(
    src: &mut Source,
    sb: &Superblock,
    buf: &[u8],
    block: u64,
    level: Option<u8>,
    tree: u8,
    items: Option<TimeForm>,
    seen: &mut HashSet<u64>,
    hi: Option<Key>,
    stack: &mut Vec<Pending>,
    leaf_items: &mut dyn FnMut(&Key, &[u8]),
) -> Result<TreeNode, FormatError> {
    let hdr = node::check(
        buf,
        &node::Expect {
            blocknr: block,
            fsid: sb.fsid(),
            tree,
            level,
            total_blocks: sb.total_blocks,
        },
    )?;
    let n = node::len(buf)?;
    let key = |i: usize| {
        if hdr.is_leaf() {
            node::leaf_key(buf, i)
        } else {
            node::internal_key(buf, i)
        }
    };
    let (first_key, last_key) = match n.checked_sub(1) {
        Some(last) => (Some(key_text(&key(0)?)), Some(key_text(&key(last)?))),
        None => (None, None),
    };
    let shared = !seen.insert(block);
    let mut tn = TreeNode {
        block,
        level: hdr.level,
        generation: hdr.generation,
        refcount: src.refcount(block),
        items: n,
        first_key,
        last_key,
        shared_with_earlier: shared,
        item_list: Vec::new(),
    };
    if shared {
        return Ok(tn);
    }
    if hdr.is_leaf() {
        for i in 0..n {
            match (node::leaf_key(buf, i), node::leaf_value(buf, i)) {
                (Ok(k), Ok(v)) => {
                    leaf_items(&k, v);
                    if let Some(times) = items {
                        tn.item_list.push(item_str(&k, v, sb.total_blocks, times));
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tn.item_list.push(format!("item {i} INVALID: {e}"));
                }
            }
        }
        return Ok(tn);
    }
    let below = hdr.child_level()?;
    let mut children = Vec::new();
    for i in 0..n {
        let child_hi = match i.checked_add(1).filter(|&j| j < n) {
            Some(j) => Some(node::internal_key(buf, j)?),
            None => hi,
        };
        children.push((
            node::internal_child(buf, i)?,
            Some(below),
            Some(node::internal_key(buf, i)?),
            child_hi,
        ));
    }
    // Popped in key order.
    stack.extend(children.into_iter().rev());
    Ok(tn)
}

/// The layer `arg` names: a layer of that name, or else of that id.
fn resolve_layer(vol: &mut Volume<Device>, arg: &str) -> Result<u64> {
    let by_name = vol
        .find_layer(arg.as_bytes())
        .map_err(|e| anyhow::anyhow!("layer name index: {e}"))?;
    if let Some(l) = by_name {
        return Ok(l.id);
    }
    if let Ok(id) = arg.parse::<u64>() {
        match vol.layer(id) {
            Ok(l) => return Ok(l.id),
            Err(TreeError::NotFound) => {}
            Err(e) => bail!("layer {id}: {e}"),
        }
    }
    bail!("no layer named or numbered '{arg}'")
}

/// A layer of `layers` by name, or else by id, as [`resolve_layer`] finds one.
fn find_layer(layers: &[Layer], arg: &str) -> Option<u64> {
    layers
        .iter()
        .find(|l| l.name.as_bytes() == arg.as_bytes())
        .or_else(|| {
            let id = arg.parse::<u64>().ok()?;
            layers.iter().find(|l| l.id == id)
        })
        .map(|l| l.id)
}

/// Prints the dump of `device`; `layer` restricts the trees shown, `items` decodes every item.
/// Fails after printing if anything could not be read.
pub(crate) fn dump(device: &Path, layer: Option<&str>, items: bool, json: bool) -> Result<bool> {
    let mut dev = Device::open(device, Access::ReadOnly)?;
    let sel = match dev.read_superblock() {
        Ok(s) => s,
        Err(e) => bail!("{e} (run fsck.lcfs for details)"),
    };
    if let Some((slot, e)) = &sel.other_error {
        eprintln!("lcfs: warning: superblock copy {slot} is invalid: {e}");
    }
    let sb = sel.sb;
    let mut problems = Problems::default();
    // Without its map root the volume does not open; the trees can still be read.
    let (mut src, open_error) = match Volume::open(dev) {
        Ok((vol, _)) => (Source::Volume(Box::new(vol)), None),
        Err(e) => (
            Source::Device(Device::open(device, Access::ReadOnly)?),
            Some(e),
        ),
    };
    let total = sb.total_blocks;
    // Items show times in UTC for people, raw in JSON.
    let items = items.then_some(if json { TimeForm::Raw } else { TimeForm::Human });
    let mut seen = HashSet::new();
    let mut layers = Vec::new();
    let mut bad_records = Vec::new();
    let layer_tree = dump_tree(
        &mut src,
        &sb,
        "layers".into(),
        sb.layer_root,
        tree_kind::LAYERS,
        items,
        &mut seen,
        &mut problems,
        &mut |k, v| {
            if k.kind != kind::LAYER || k.offset != 0 {
                return;
            }
            match LayerRecord::decode(v, k.id, total) {
                Ok(l) => layers.push(Layer {
                    id: k.id,
                    name: String::from_utf8_lossy(l.name).into_owned(),
                    parent: l.parent,
                    read_only: l.flags & layer_flags::READ_ONLY != 0,
                    children: l.children,
                    root: l.root,
                    inodes_used: l.inodes_used,
                    bytes_used: l.bytes_used,
                    next_ino: l.next_ino,
                    create_time: time_str(l.create_time, TimeForm::Raw),
                    create_time_utc: utc_time(l.create_time),
                }),
                Err(e) => bad_records.push(format!("layer tree: record of layer {}: {e}", k.id)),
            }
        },
    );
    problems.0.extend(bad_records);
    let layer_tree_whole = problems.0.is_empty();
    let only = match layer {
        None => None,
        Some(arg) => match find_layer(&layers, arg) {
            Some(id) => Some(id),
            None if layer_tree_whole => bail!("no layer named or numbered '{arg}'"),
            None => bail!(
                "no layer named or numbered '{arg}' among those that could be read: {}",
                problems.0.join("; ")
            ),
        },
    };
    let mut trees = vec![layer_tree];
    for l in &layers {
        if only.is_none_or(|id| id == l.id) {
            trees.push(dump_tree(
                &mut src,
                &sb,
                format!("layer {}", l.id),
                l.root,
                tree_kind::FS,
                items,
                &mut seen,
                &mut problems,
                &mut |_, _| {},
            ));
        }
    }
    let map = dump_map(&mut src, &sb, &mut problems);
    // A map root that reads but disagrees with the superblock also keeps the volume shut.
    if let (Some(e), Some(MapEntry::Node(_))) = (open_error, map.first()) {
        problems.0.push(format!(
            "reference counts (refs ?): the volume does not open: {}",
            match e {
                TreeError::Corrupt(f) => node_err(f),
                e => e.to_string(),
            }
        ));
    }
    let d = Dump {
        superblock: SuperSummary {
            generation: sb.generation,
            incompat: sb.incompat,
            total_blocks: sb.total_blocks,
            free_blocks: sb.free_blocks,
            reserve_blocks: sb.reserve_blocks,
            map_root: sb.map_root,
            map_level: sb.map_level,
            layer_root: sb.layer_root,
            layer_count: sb.layer_count,
            next_layer_id: sb.next_layer_id,
            next_data_id: sb.next_data_id,
        },
        map,
        layers,
        trees,
        unreadable: problems.0,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&d)?)?;
    } else {
        print_text(&d)?;
    }
    if !d.unreadable.is_empty() {
        bail!(
            "{}: {} not be read (marked UNREADABLE); fsck.lcfs -n {} checks everything",
            device.display(),
            match d.unreadable.len() {
                1 => "1 structure could".to_owned(),
                n => format!("{n} structures could"),
            },
            device.display()
        );
    }
    Ok(true)
}

/// The names of the `incompat` features in `incompat` (`inode_flags`), unknown bits in hex;
/// `none` without any.
fn features(incompat: u64) -> String {
    let mut names = Vec::new();
    if incompat & superblock::INCOMPAT_INODE_FLAGS != 0 {
        names.push("inode_flags".to_owned());
    }
    let unknown = incompat & !superblock::INCOMPAT_SUPPORTED;
    if unknown != 0 {
        names.push(format!("unknown {unknown:#x}"));
    }
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn print_unreadable(indent: &str, u: &Unreadable) -> std::io::Result<()> {
    outln!(
        "{indent}node {} UNREADABLE: {}; not shown: {}{}",
        u.block,
        u.unreadable,
        u.covers,
        if u.shared_with_earlier {
            " (shared, shown above)"
        } else {
            ""
        }
    )
}

fn print_text(d: &Dump) -> std::io::Result<()> {
    let s = &d.superblock;
    outln!(
        "superblock: generation {}, {} blocks, {} free ({} reserved for metadata)",
        s.generation,
        s.total_blocks,
        s.free_blocks,
        s.reserve_blocks
    )?;
    outln!(
        "  map root {} (level {}), layer tree root {}, {}, next layer id {}, next data id {}",
        s.map_root,
        s.map_level,
        s.layer_root,
        count(s.layer_count, "layer"),
        s.next_layer_id,
        s.next_data_id
    )?;
    outln!("  features: {}", features(s.incompat))?;
    outln!("reference-count map:")?;
    for m in &d.map {
        let m = match m {
            MapEntry::Node(m) => m,
            MapEntry::Unreadable(u) => {
                print_unreadable("  ", u)?;
                continue;
            }
        };
        if m.level == 0 {
            let runs: Vec<String> = m
                .used
                .iter()
                .map(|[a, b, c]| match (a == b, c) {
                    (true, c) => format!("{a}({c})"),
                    (false, 1) => format!("{a}-{b}"),
                    (false, 0) => format!("{a}-{b}(mixed)"),
                    (false, c) => format!("{a}-{b}({c})"),
                })
                .collect();
            outln!(
                "  leaf {} (blocks {}.., gen {}): in use {}",
                m.block,
                m.first,
                m.generation,
                if runs.is_empty() {
                    "none".into()
                } else {
                    runs.join(" ")
                }
            )?;
        } else {
            let kids: Vec<String> = m
                .children
                .iter()
                .map(|c| format!("[{}]->{} free {}", c.index, c.block, c.free))
                .collect();
            outln!(
                "  node {} level {} (blocks {}.., gen {}): {}; unmaterialised free {}",
                m.block,
                m.level,
                m.first,
                m.generation,
                kids.join(", "),
                m.unmaterialised_free.unwrap_or(0)
            )?;
        }
    }
    outln!("layers:")?;
    for l in &d.layers {
        outln!(
            "  {} {:?} parent {} {} children {} root {} inodes {} bytes {} next_ino {} created {}",
            l.id,
            l.name,
            l.parent,
            if l.read_only { "ro" } else { "rw" },
            l.children,
            l.root,
            l.inodes_used,
            l.bytes_used,
            l.next_ino,
            l.create_time_utc
        )?;
    }
    for t in &d.trees {
        outln!("tree {} (root {}):", t.tree, t.root)?;
        for n in &t.nodes {
            let (level, n) = match n {
                TreeEntry::Node(n) => (n.level, n),
                TreeEntry::Unreadable(u) => {
                    let depth = 3u8.saturating_sub(u.level.unwrap_or(3));
                    print_unreadable(&format!("  {}", "  ".repeat(usize::from(depth))), u)?;
                    continue;
                }
            };
            outln!(
                "  {}node {} level {} gen {} refs {} items {} {}..{}{}",
                "  ".repeat(usize::from(3u8.saturating_sub(level))),
                n.block,
                n.level,
                n.generation,
                n.refcount.map_or_else(|| "?".into(), |r| r.to_string()),
                n.items,
                n.first_key.as_deref().unwrap_or("-"),
                n.last_key.as_deref().unwrap_or("-"),
                if n.shared_with_earlier {
                    " (shared, shown above)"
                } else {
                    ""
                }
            )?;
            for i in &n.item_list {
                outln!("      {i}")?;
            }
        }
    }
    if !d.unreadable.is_empty() {
        outln!("unreadable:")?;
        for u in &d.unreadable {
            outln!("  {u}")?;
        }
    }
    Ok(())
}

/// How `diff` prints its changes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DiffFormat {
    /// `A path` lines.
    Lines,
    /// `A path` records, each ending in NUL (paths may hold newlines).
    Null,
    /// A JSON array of `{"change": "A", "path": "..."}`.
    Json,
}

impl DiffFormat {
    pub(crate) fn new(json: bool, null: bool) -> Self {
        match (json, null) {
            (true, _) => Self::Json,
            (false, true) => Self::Null,
            (false, false) => Self::Lines,
        }
    }
}

/// One change as `diff --json` prints it.
#[derive(Serialize)]
struct Change {
    change: char,
    path: String,
}

/// Prints `A path`, `M path` or `D path` for each change of `layer` against its parent.
pub(crate) fn diff(device: &Path, layer: &str, format: DiffFormat) -> Result<bool> {
    let dev = Device::open(device, Access::ReadOnly)?;
    let (mut vol, _) = match Volume::open(dev) {
        Ok(v) => v,
        Err(e) => bail!(
            "{}: cannot open: {e} (run fsck.lcfs for details)",
            device.display()
        ),
    };
    let layer = resolve_layer(&mut vol, layer)?;
    let mut out = std::io::stdout().lock();
    if let DiffFormat::Json = format {
        write!(out, "[")?;
    }
    let mut werr = None;
    let mut first = true;
    vol.diff_paths(layer, &mut |c, path| {
        let tag = match c {
            PathChange::Added => 'A',
            PathChange::Modified => 'M',
            PathChange::Deleted => 'D',
        };
        let path = String::from_utf8_lossy(path);
        let r = match format {
            DiffFormat::Lines => writeln!(out, "{tag} {path}"),
            DiffFormat::Null => write!(out, "{tag} {path}\0"),
            DiffFormat::Json => {
                let sep = if first { "\n  " } else { ",\n  " };
                let change = Change {
                    change: tag,
                    path: path.into_owned(),
                };
                serde_json::to_string(&change)
                    .map_err(std::io::Error::other)
                    .and_then(|j| write!(out, "{sep}{j}"))
            }
        };
        first = false;
        werr = r.err();
        werr.is_none()
    })
    .map_err(|e| anyhow::anyhow!("diff of layer {layer}: {e}"))?;
    if let Some(e) = werr {
        return Err(e.into());
    }
    if let DiffFormat::Json = format {
        writeln!(out, "{}]", if first { "" } else { "\n" })?;
    }
    Ok(true)
}

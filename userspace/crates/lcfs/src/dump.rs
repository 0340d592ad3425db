//! `lcfs debug dump`: every on-disk structure, for humans (or JSON for tools).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use lcfs_format::namespace::PathChange;
use lcfs_format::node::{self, Key};
use lcfs_format::records::{
    self, kind, DirentRecord, ExtentRecord, InodeRecord, LayerRecord, LinkRecord, XattrRecord,
    XattrValue,
};
use lcfs_format::refmap::{self, LEAF_ENTRIES, NODE_ENTRIES};
use lcfs_format::tree::{BlockStore, Error as TreeError};
use lcfs_format::volume::Volume;
use lcfs_format::BLOCK_SIZE;
use lcfs_image::{outln, Access, Device};
use serde::Serialize;

/// The whole dump.
#[derive(Debug, Serialize)]
struct Dump {
    superblock: SuperSummary,
    map: Vec<MapNode>,
    layers: Vec<Layer>,
    trees: Vec<TreeDump>,
}

#[derive(Debug, Serialize)]
struct SuperSummary {
    generation: u64,
    total_blocks: u64,
    free_blocks: u64,
    reserve_blocks: u64,
    map_root: u64,
    map_level: u8,
    layer_root: u64,
    layer_count: u64,
    next_layer_id: u64,
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
    create_time: String,
}

#[derive(Debug, Serialize)]
struct TreeDump {
    /// "layers" or "layer N".
    tree: String,
    root: u64,
    nodes: Vec<TreeNode>,
}

#[derive(Debug, Serialize)]
struct TreeNode {
    block: u64,
    level: u8,
    generation: u64,
    refcount: u32,
    items: usize,
    first_key: Option<String>,
    last_key: Option<String>,
    /// Whether this node was already shown under another tree (shared, not repeated).
    shared_with_earlier: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    item_list: Vec<String>,
}

fn key_str(k: &Key) -> String {
    let kind = match k.kind {
        kind::INODE => "INODE",
        kind::DIRENT => "DIRENT",
        kind::LINK => "LINK",
        kind::EXTENT => "EXTENT",
        kind::INLINE => "INLINE",
        kind::XATTR => "XATTR",
        kind::LAYER => "LAYER",
        kind::LAYER_NAME => "LAYER_NAME",
        _ => "?",
    };
    if k.id == records::LAYER_NAME_INDEX {
        return format!("(NAME_INDEX {} {})", kind, k.offset);
    }
    format!("({} {} {})", k.id, kind, k.offset)
}

/// One item decoded for humans.
fn item_str(k: &Key, v: &[u8], total: u64) -> String {
    let body = match k.kind {
        kind::INODE => InodeRecord::decode(v).map(|i| {
            format!(
                "mode {:o} uid {} gid {} nlink {} size {} blocks {} mtime {}.{:09} gen {}",
                i.mode,
                i.uid,
                i.gid,
                i.nlink,
                i.size,
                i.blocks,
                i.mtime.sec,
                i.mtime.nsec,
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
        kind::EXTENT => ExtentRecord::decode(v, total).map(|e| {
            format!(
                "blocks {}..{} flags {}",
                e.disk_block,
                e.disk_block + u64::from(e.len),
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
                extent.disk_block + u64::from(extent.len)
            ),
        }),
        kind::LAYER => LayerRecord::decode(v, k.id, total)
            .map(|l| format!("layer {:?}", String::from_utf8_lossy(l.name))),
        _ => Ok(format!("{} bytes", v.len())),
    };
    match body {
        Ok(b) => format!("{} {b}", key_str(k)),
        Err(e) => format!("{} INVALID: {e}", key_str(k)),
    }
}

fn dump_map(vol: &mut Volume<Device>) -> Result<Vec<MapNode>> {
    let map = *vol.map();
    let mut out = Vec::new();
    let mut stack = vec![(map.root, map.level, 0u64)];
    let total = map.total_blocks;
    while let Some((block, level, first)) = stack.pop() {
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        vol.store()
            .read(block, &mut buf)
            .map_err(|e| anyhow::anyhow!("map node {block}: {e}"))?;
        let hdr = refmap::check(
            &buf,
            &refmap::MapExpect {
                blocknr: block,
                fsid: map.fsid,
                level,
                first,
                txn_generation: map.generation,
                total_blocks: total,
            },
        )
        .with_context(|| format!("map node {block}"))?;
        let mut node = MapNode {
            block,
            level,
            first,
            generation: hdr.generation,
            children: Vec::new(),
            unmaterialised_free: None,
            used: Vec::new(),
        };
        if level == 0 {
            let mut run: Option<[u64; 3]> = None;
            for i in 0..LEAF_ENTRIES {
                let v = u64::from(refmap::leaf_get(&buf, i)?);
                let b = first + i;
                match (&mut run, v) {
                    (Some(r), v) if v != 0 && r[1] + 1 == b => {
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
        } else {
            let cov = refmap::coverage(level - 1).get();
            let mut unmat = 0;
            for i in 0..NODE_ENTRIES {
                let e = refmap::entry_get(&buf, i)?;
                if e.child == 0 {
                    unmat += e.free;
                } else {
                    node.children.push(MapChild {
                        index: i,
                        block: e.child,
                        free: e.free,
                    });
                    stack.push((e.child, level - 1, first + i * cov));
                }
            }
            node.unmaterialised_free = Some(unmat);
        }
        out.push(node);
    }
    Ok(out)
}

fn dump_tree(
    vol: &mut Volume<Device>,
    name: String,
    root: u64,
    tree: u8,
    items: bool,
    seen: &mut HashSet<u64>,
) -> Result<TreeDump> {
    let sb = vol.superblock();
    let mut out = TreeDump {
        tree: name,
        root,
        nodes: Vec::new(),
    };
    let mut stack = if root == 0 {
        vec![]
    } else {
        vec![(root, None)]
    };
    while let Some((block, level)) = stack.pop() {
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        vol.store()
            .read(block, &mut buf)
            .map_err(|e| anyhow::anyhow!("node {block}: {e}"))?;
        let hdr = node::check(
            &buf,
            &node::Expect {
                blocknr: block,
                fsid: sb.fsid(),
                tree,
                level,
                total_blocks: sb.total_blocks,
            },
        )
        .with_context(|| format!("node {block}"))?;
        let n = node::len(&buf)?;
        let key = |i: usize| {
            if hdr.is_leaf() {
                node::leaf_key(&buf, i)
            } else {
                node::internal_key(&buf, i)
            }
        };
        let shared = !seen.insert(block);
        let mut tn = TreeNode {
            block,
            level: hdr.level,
            generation: hdr.generation,
            refcount: vol.refcount(block).map_err(|e| anyhow::anyhow!("{e}"))?,
            items: n,
            first_key: (n > 0).then(|| key(0).map(|k| key_str(&k))).transpose()?,
            last_key: (n > 0)
                .then(|| key(n - 1).map(|k| key_str(&k)))
                .transpose()?,
            shared_with_earlier: shared,
            item_list: Vec::new(),
        };
        if !shared {
            if hdr.is_leaf() {
                if items {
                    for i in 0..n {
                        let (k, v) = (node::leaf_key(&buf, i)?, node::leaf_value(&buf, i)?);
                        tn.item_list.push(item_str(&k, v, sb.total_blocks));
                    }
                }
            } else {
                for i in (0..n).rev() {
                    stack.push((node::internal_child(&buf, i)?, Some(hdr.level - 1)));
                }
            }
        }
        out.nodes.push(tn);
    }
    Ok(out)
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

/// Prints the dump of `device`; `layer` restricts the trees shown, `items` decodes every item.
pub(crate) fn dump(device: &Path, layer: Option<&str>, items: bool, json: bool) -> Result<bool> {
    let dev = Device::open(device, Access::ReadOnly)?;
    let (mut vol, other) = match Volume::open(dev) {
        Ok(v) => v,
        Err(e) => bail!(
            "{}: cannot open: {e} (run fsck.lcfs for details)",
            device.display()
        ),
    };
    if let Some((slot, e)) = other {
        eprintln!("lcfs: warning: superblock copy {slot} is invalid: {e}");
    }
    let layer = layer.map(|l| resolve_layer(&mut vol, l)).transpose()?;
    let sb = vol.superblock();
    let mut layers = Vec::new();
    vol.for_each_layer(&mut |l| {
        layers.push(*l);
        true
    })
    .map_err(|e| anyhow::anyhow!("layer tree: {e}"))?;
    let mut seen = HashSet::new();
    let mut trees = vec![dump_tree(
        &mut vol,
        "layers".into(),
        sb.layer_root,
        1,
        items,
        &mut seen,
    )?];
    for l in &layers {
        if layer.is_none_or(|id| id == l.id) {
            trees.push(dump_tree(
                &mut vol,
                format!("layer {}", l.id),
                l.root,
                2,
                items,
                &mut seen,
            )?);
        }
    }
    let d = Dump {
        superblock: SuperSummary {
            generation: sb.generation,
            total_blocks: sb.total_blocks,
            free_blocks: sb.free_blocks,
            reserve_blocks: sb.reserve_blocks,
            map_root: sb.map_root,
            map_level: sb.map_level,
            layer_root: sb.layer_root,
            layer_count: sb.layer_count,
            next_layer_id: sb.next_layer_id,
        },
        map: dump_map(&mut vol)?,
        layers: layers
            .iter()
            .map(|l| Layer {
                id: l.id,
                name: String::from_utf8_lossy(l.name()).into_owned(),
                parent: l.parent,
                read_only: l.is_read_only(),
                children: l.children,
                root: l.root,
                inodes_used: l.inodes_used,
                bytes_used: l.bytes_used,
                next_ino: l.next_ino,
                create_time: format!("{}.{:09}", l.create_time.sec, l.create_time.nsec),
            })
            .collect(),
        trees,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&d)?)?;
        return Ok(true);
    }
    let s = &d.superblock;
    outln!(
        "superblock: generation {}, {} blocks, {} free ({} reserved for metadata)",
        s.generation,
        s.total_blocks,
        s.free_blocks,
        s.reserve_blocks
    )?;
    outln!(
        "  map root {} (level {}), layer tree root {}, {} layers, next layer id {}",
        s.map_root,
        s.map_level,
        s.layer_root,
        s.layer_count,
        s.next_layer_id
    )?;
    outln!("reference-count map:")?;
    for m in &d.map {
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
            l.create_time
        )?;
    }
    for t in &d.trees {
        outln!("tree {} (root {}):", t.tree, t.root)?;
        for n in &t.nodes {
            outln!(
                "  {}node {} level {} gen {} refs {} items {} {}..{}{}",
                "  ".repeat(usize::from(3u8.saturating_sub(n.level))),
                n.block,
                n.level,
                n.generation,
                n.refcount,
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
    Ok(true)
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

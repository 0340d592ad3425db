//! The repair behind `fsck.lcfs -y` and `-p`.
//!
//! A repair is tried first on an [`Overlay`] (writes kept in memory over the device) and checked
//! there; only a repair whose result checks clean is played onto the device, write for write and
//! flush for flush as the format core made it, so the device goes from the old state to the new
//! one by the core's own commits (everything new goes to blocks the committed state does not
//! use, then the superblock copy): a crash leaves the old state or the new. Any other outcome
//! leaves the device as it was.
//!
//! What is repaired ([`Fix`]):
//!
//! * the map ([`Fix::Map`]: reference counts, summaries, the free count): rebuilt whole from the
//!   references the check found, in blocks that neither the old map nor the trees use, and
//!   adopted by the transaction that makes the other repairs; the old map's nodes are released
//!   by it, so they are free after its commit;
//! * layer counters (usage, own bytes, children), link counts: set to what the trees hold;
//! * directory entries naming a missing inode: removed;
//! * inodes with links but no name: named `#INO` in the layer's `lost+found` (made, mode 0700,
//!   when missing); inodes without links or names missing from the orphan index: indexed, as
//!   the orphans they are (the next read-write mount deletes them);
//! * a damaged newest superblock copy ([`Fix::Fallback`]): the state in use committed again;
//! * bytes after a superblock record ([`Fix::SuperblockTail`]): zeroed by the repair's two
//!   commits, which rewrite both copies' blocks (as every commit writes its copy's block whole);
//! * with `-y`, damage none of these covers, when the commit before the newest checks clean
//!   (or has only such damage): the filesystem goes back to that commit, and what the newest
//!   changed is lost (reported).
//!
//! A repair's result may show more to repair (a removed entry changes its directory's link
//! count, `lost+found` adds an inode): the new fixes join the plan, which is tried again from
//! the start, up to [`ATTEMPTS`] times, so the device still sees one repair.

use std::collections::BTreeSet;

use lcfs_format::bytes::{put_u32, put_u64};
use lcfs_format::namespace::{orphan_key, NewInode};
use lcfs_format::node::Key;
use lcfs_format::records::{
    self, kind, layer_flags, DirentRecord, HashKey, LinkRecord, Timespec, INODE_RECORD_SIZE,
};
use lcfs_format::refmap::{self, coverage, MapExpect, HEADER_SIZE, LEAF_ENTRIES, NODE_ENTRIES};
use lcfs_format::superblock::{self, Superblock, SUPERBLOCK_SIZE};
use lcfs_format::tree::{BlockStore, Error as TreeError};
use lcfs_format::volume::{self, inode_key, Volume};
use lcfs_format::{BLOCK_SIZE, NAME_MAX, ROOT_INO};

use crate::fsck::{self, tree_err, Fix, MapFacts, Report};
use crate::refcounts::Counts;
use crate::store::{ByRef, Event, Overlay, SbView};

/// Tries of a growing plan before giving up.
pub const ATTEMPTS: usize = 4;

/// How much may be repaired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-p`: only what [`Fix::is_safe`] says, and never going back to an earlier commit.
    Preen,
    /// `-y`: everything this module can.
    Yes,
}

/// What [`repair`] did.
#[derive(Debug)]
pub enum Outcome {
    /// The check found nothing to repair.
    Clean,
    /// The device holds the repaired filesystem.
    Repaired {
        /// What was done, one line each.
        actions: Vec<String>,
        /// The check of the result: clean.
        after: Box<Report>,
    },
    /// Nothing was written.
    Refused(Refusal),
}

/// Why [`repair`] left the device as it was.
#[derive(Debug)]
pub enum Refusal {
    /// Preening found damage whose repair changes names, drops data or goes back to an earlier
    /// commit: the repairs that need `-y`, in words.
    NeedsYes(Vec<String>),
    /// Damage that no repair covers, and no earlier commit to go back to: why not.
    Unrepairable(String),
}

/// The state a repair starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    /// The state in use.
    Current,
    /// The commit before the newest, whose superblock copy is in the other slot; the newest
    /// copy (this slot) is overwritten by the repair's commit.
    Previous(u64),
}

/// Repairs what `report` (a check of `dev` as it is) found, as far as `mode` allows.
pub fn repair<S: volume::Device<Buf = Vec<u8>>>(
    dev: &mut S,
    report: &Report,
    mode: Mode,
    now: Timespec,
) -> Result<Outcome, String> {
    if report.is_clean() {
        return Ok(Outcome::Clean);
    }
    let mut why = String::new();
    if report.repairable() {
        if mode == Mode::Preen {
            let unsafe_fixes: Vec<String> = report
                .fixes
                .iter()
                .filter(|f| !f.is_safe())
                .map(describe)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !unsafe_fixes.is_empty() {
                return Ok(Outcome::Refused(Refusal::NeedsYes(unsafe_fixes)));
            }
        }
        match attempt(dev, Base::Current, report, mode, now)? {
            Ok(done) => return Ok(done),
            Err(e) => why = e,
        }
    } else if mode == Mode::Preen {
        return Ok(Outcome::Refused(Refusal::NeedsYes(vec![
            "damage that only going back to an earlier commit may repair".into(),
        ])));
    }
    if mode == Mode::Preen {
        return Ok(Outcome::Refused(Refusal::Unrepairable(why)));
    }
    // Back to the commit before the newest, if it is sound (or repairable).
    let previous = fsck::check_previous(ByRef(dev)).map_err(|e| e.to_string())?;
    let Some((slot, prev)) = previous else {
        if why.is_empty() {
            why = "no repair covers this damage, and there is no earlier commit to go back to \
                   (the other superblock copy does not hold one)"
                .into();
        }
        return Ok(Outcome::Refused(Refusal::Unrepairable(why)));
    };
    // The hidden copy is reported as a fallback: the one error the repair's commit answers.
    if !prev.repairable() {
        let n = prev.errors.len() as u64 + prev.more_errors;
        if why.is_empty() {
            why = "no repair covers this damage".into();
        }
        why.push_str(&format!(
            "; the commit before the newest (generation {}) is damaged too ({} besides the \
             newest copy)",
            prev.stats.generation,
            crate::output::count(n.saturating_sub(1), "error")
        ));
        return Ok(Outcome::Refused(Refusal::Unrepairable(why)));
    }
    let lost = lost_commit(dev, report, &prev);
    match attempt(dev, Base::Previous(slot), &prev, mode, now)? {
        Ok(Outcome::Repaired { mut actions, after }) => {
            actions.insert(0, lost);
            Ok(Outcome::Repaired { actions, after })
        }
        Ok(other) => Ok(other),
        Err(e) => Ok(Outcome::Refused(Refusal::Unrepairable(format!(
            "going back to generation {} did not give a sound filesystem: {e}",
            prev.stats.generation
        )))),
    }
}

/// What going back from the newest commit to the previous one loses, in words.
fn lost_commit<S: volume::Device<Buf = Vec<u8>>>(
    dev: &mut S,
    newest: &Report,
    prev: &Report,
) -> String {
    let now_layers = layer_names(&mut *dev, None);
    let newest_slot = fsck::newest_slot_with_previous(&mut *dev).ok().flatten();
    let prev_layers = newest_slot.and_then(|s| layer_names(&mut *dev, Some(s)));
    let (gone, back) = match (&now_layers, &prev_layers) {
        (Some(now), Some(prev)) => {
            let diff = |a: &Vec<Vec<u8>>, b: &Vec<Vec<u8>>| -> Vec<String> {
                a.iter()
                    .filter(|n| !b.contains(n))
                    .map(|n| format!("{:?}", String::from_utf8_lossy(n)))
                    .collect()
            };
            (diff(now, prev), diff(prev, now))
        }
        _ => (Vec::new(), Vec::new()),
    };
    let layers = current_sb(&mut ByRef(&mut *dev)).map_or(newest.stats.layers, |sb| sb.layer_count);
    let mut s = format!(
        "repaired: went back from generation {} ({}), which is damaged, to generation {} ({}), \
         the commit before it: what generation {} changed is lost",
        newest.stats.generation,
        crate::output::count(layers, "layer"),
        prev.stats.generation,
        crate::output::count(prev.stats.layers, "layer"),
        newest.stats.generation
    );
    if !gone.is_empty() {
        s.push_str(&format!("; layers lost: {}", gone.join(", ")));
    }
    if !back.is_empty() {
        s.push_str(&format!("; layers back: {}", back.join(", ")));
    }
    s
}

/// The layer names of the state in use (`hide`: with that superblock copy hidden), if its layer
/// tree reads.
fn layer_names<S: volume::Device<Buf = Vec<u8>>>(
    dev: &mut S,
    hide: Option<u64>,
) -> Option<Vec<Vec<u8>>> {
    let view = match hide {
        Some(slot) => SbView::hiding(ByRef(dev), slot),
        None => SbView::new(ByRef(dev)),
    };
    let (mut vol, _) = Volume::open(view).ok()?;
    let mut out = Vec::new();
    vol.for_each_layer(&mut |l| {
        out.push(l.name().to_vec());
        true
    })
    .ok()?;
    Some(out)
}

/// The repair of `report`'s fixes from `base`, tried on an overlay and played onto `dev` when
/// its result checks clean: `Ok(Err(why))` when it does not (nothing written).
fn attempt<S: volume::Device<Buf = Vec<u8>>>(
    dev: &mut S,
    base: Base,
    report: &Report,
    mode: Mode,
    now: Timespec,
) -> Result<Result<Outcome, String>, String> {
    let mut fixes: Vec<Fix> = Vec::new();
    for f in &report.fixes {
        if !fixes.contains(f) {
            fixes.push(f.clone());
        }
    }
    let facts = report.map_facts.as_ref();
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let mut ov = Overlay::new(ByRef(&mut *dev));
        let actions = match apply(&mut ov, base, &fixes, facts, now) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let after = fsck::check(ByRef(&mut ov), &mut |_, _, _| {}).map_err(|e| e.to_string())?;
        if after.is_clean() {
            let events: Vec<Event> = std::mem::take(&mut ov.events);
            drop(ov);
            // The same writes and flushes, in the same order, onto the device.
            for e in &events {
                match e {
                    Event::Write(b, data) => dev.write(*b, data).map_err(tree_err)?,
                    Event::Flush => dev.flush().map_err(tree_err)?,
                }
            }
            dev.flush().map_err(tree_err)?;
            return Ok(Ok(Outcome::Repaired {
                actions,
                after: Box::new(after),
            }));
        }
        last = after.errors.first().cloned().unwrap_or_default();
        // Only what the repair's own changes call for may join the plan.
        let more: Vec<&Fix> = after
            .fixes
            .iter()
            .filter(|f| !matches!(f, Fix::Map | Fix::Fallback))
            .collect();
        if !after.repairable()
            || more.len() != after.fixes.len()
            || (mode == Mode::Preen && more.iter().any(|f| !f.is_safe()))
        {
            return Ok(Err(format!(
                "the repair would leave {} ({last})",
                crate::output::count(after.errors.len() as u64 + after.more_errors, "error")
            )));
        }
        let mut grew = false;
        for f in more {
            let same = target(f);
            fixes.retain(|g| same.is_none() || target(g) != same);
            if !fixes.contains(f) {
                fixes.push(f.clone());
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    Ok(Err(format!("the repair does not converge ({last})")))
}

/// What a fix sets, for fixes that set a value: a later value for the same thing replaces it.
fn target(f: &Fix) -> Option<(u8, u64, u64)> {
    match *f {
        Fix::LayerUsage { layer, .. } => Some((1, layer, 0)),
        Fix::LayerOwn { layer, .. } => Some((2, layer, 0)),
        Fix::LayerChildren { layer, .. } => Some((3, layer, 0)),
        Fix::LinkCount { layer, ino, .. } => Some((4, layer, ino)),
        _ => None,
    }
}

/// A fix in words.
pub fn describe(f: &Fix) -> String {
    match f {
        Fix::Fallback => "commit the state in use again over the damaged superblock copy".into(),
        Fix::Map => "rebuild the reference-count map and the free count".into(),
        Fix::LayerUsage {
            layer,
            inodes,
            bytes,
        } => format!("layer {layer}: usage set to {inodes} inodes and {bytes} bytes"),
        Fix::LayerOwn { layer, own } => format!("layer {layer}: own bytes set to {own}"),
        Fix::LayerChildren { layer, children } => {
            format!("layer {layer}: child count set to {children}")
        }
        Fix::LinkCount { layer, ino, nlink } => {
            format!("layer {layer}: inode {ino}: link count set to {nlink}")
        }
        Fix::DanglingEntry { layer, dir, offset } => format!(
            "layer {layer}: remove the entry at offset {offset} of directory {dir}, which names a \
             missing inode"
        ),
        Fix::Unnamed { layer, ino } => {
            format!("layer {layer}: inode {ino}, which has no name, goes to /lost+found")
        }
        Fix::OrphanIndex { layer, ino } => format!(
            "layer {layer}: inode {ino}, without links, goes into the orphan index (deleted at \
             the next read-write mount)"
        ),
        Fix::SuperblockTail { slot } => format!(
            "superblock copy {slot}: zero the bytes after the superblock record (the repair's \
             commits rewrite both copies)"
        ),
    }
}

/// The superblock in use through `view`.
fn current_sb<S: BlockStore<Buf = Vec<u8>>>(view: &mut S) -> Result<Superblock, String> {
    let device = view.total_blocks();
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let mut copies = Vec::new();
    for slot in 0..superblock::SUPERBLOCK_COPIES {
        view.read(slot, &mut buf).map_err(tree_err)?;
        copies.push(Superblock::decode(&buf, device));
    }
    let c1 = copies.pop().ok_or("superblock")?;
    let c0 = copies.pop().ok_or("superblock")?;
    Ok(superblock::select(c0, c1).map_err(|e| e.to_string())?.sb)
}

/// Runs the fixes from `base` in one transaction on `ov` and commits it.
fn apply<S: volume::Device<Buf = Vec<u8>>>(
    ov: &mut Overlay<S>,
    base: Base,
    fixes: &[Fix],
    facts: Option<&MapFacts>,
    now: Timespec,
) -> Result<Vec<String>, String> {
    let mut view = match base {
        Base::Current => SbView::new(ByRef(ov)),
        Base::Previous(slot) => SbView::hiding(ByRef(ov), slot),
    };
    let mut actions = Vec::new();
    let sb = current_sb(&mut view)?;
    let rebuild = fixes.contains(&Fix::Map);
    let mut old_nodes = Vec::new();
    if rebuild {
        let facts = facts.ok_or("the check gathered no references to rebuild the map from")?;
        let (root, free) = rebuild_map(&mut view, &sb, facts)?;
        let mut block = vec![0u8; BLOCK_SIZE as usize];
        view.read(sb.slot(), &mut block).map_err(tree_err)?;
        let mut fixed = sb.clone();
        fixed.map_root = root;
        fixed.free_blocks = free;
        fixed
            .encode(&mut block[..SUPERBLOCK_SIZE])
            .map_err(|e| e.to_string())?;
        view.patch = Some((sb.slot(), block));
        old_nodes = facts.map_nodes.clone();
        actions.push(format!(
            "repaired: reference-count map rebuilt from the references found ({free} free blocks, \
             the superblock said {})",
            sb.free_blocks
        ));
    }
    let (mut vol, _) = Volume::open(view).map_err(|e| format!("open: {}", tree_err(e)))?;
    let t = |what: &str| {
        let what = what.to_string();
        move |e: TreeError| format!("{what}: {}", tree_err(e))
    };
    for b in old_nodes {
        vol.release(b, 1).map_err(t("releasing the old map"))?;
    }
    // Layers whose trees change: a frozen one is thawed for the time of the repair.
    let mut thawed = Vec::new();
    let tree_layers: BTreeSet<u64> = fixes
        .iter()
        .filter(|f| {
            matches!(
                f,
                Fix::LinkCount { .. }
                    | Fix::DanglingEntry { .. }
                    | Fix::Unnamed { .. }
                    | Fix::OrphanIndex { .. }
            )
        })
        .filter_map(Fix::layer)
        .collect();
    for &l in &tree_layers {
        let mut info = vol.layer(l).map_err(t("layer"))?;
        if info.is_read_only() {
            info.flags &= !layer_flags::READ_ONLY;
            vol.set_layer_record(&info).map_err(t("thaw"))?;
            thawed.push(l);
        }
    }
    for f in fixes {
        if let Fix::DanglingEntry { layer, dir, offset } = *f {
            let key = Key::new(dir, kind::DIRENT, offset);
            let entry = vol
                .lookup(layer, &key, |v| {
                    DirentRecord::decode(v).map(|d| (d.name.to_vec(), d.ino))
                })
                .map_err(t("entry"))?;
            let Some(Ok((name, ino))) = entry else {
                continue;
            };
            vol.remove(layer, &key).map_err(t("removing an entry"))?;
            actions.push(format!(
                "repaired: layer {layer}: entry {:?} of directory {dir} removed (inode {ino} \
                 does not exist)",
                String::from_utf8_lossy(&name)
            ));
        }
    }
    for f in fixes {
        if let Fix::OrphanIndex { layer, ino } = *f {
            vol.insert(layer, &orphan_key(ino), &[])
                .map_err(t("orphan index"))?;
            actions.push(format!(
                "repaired: layer {layer}: inode {ino} (no links, no name) put in the orphan \
                 index; the next read-write mount deletes it"
            ));
        }
    }
    let hash = HashKey(sb.hash_key[0], sb.hash_key[1]);
    for f in fixes {
        if let Fix::Unnamed { layer, ino } = *f {
            let lf = lost_and_found(&mut vol, layer, now)?;
            let rec = vol.inode(layer, ino).map_err(t("inode"))?;
            let dtype = records::file_type(rec.mode).ok_or("inode mode")?;
            let name = free_name(&mut vol, layer, lf, ino)?;
            let offset = free_offset(&mut vol, layer, lf, hash.hash(&name))?;
            let mut buf = [0u8; 10 + NAME_MAX];
            let n = DirentRecord {
                ino,
                dtype,
                name: &name,
            }
            .encode(&mut buf)
            .map_err(|e| e.to_string())?;
            vol.insert(layer, &Key::new(lf, kind::DIRENT, offset), &buf[..n])
                .map_err(t("lost+found entry"))?;
            let mut buf = [0u8; 5 + NAME_MAX];
            let n = LinkRecord {
                count: 1,
                name: &name,
            }
            .encode(&mut buf)
            .map_err(|e| e.to_string())?;
            vol.insert(layer, &Key::new(ino, kind::LINK, lf), &buf[..n])
                .map_err(t("back reference"))?;
            actions.push(format!(
                "repaired: layer {layer}: inode {ino}, which had no name, is /lost+found/{}",
                String::from_utf8_lossy(&name)
            ));
        }
    }
    for f in fixes {
        if let Fix::LinkCount { layer, ino, nlink } = *f {
            let mut rec = vol.inode(layer, ino).map_err(t("inode"))?;
            let old = rec.nlink;
            rec.nlink = nlink;
            let mut buf = [0u8; INODE_RECORD_SIZE];
            rec.encode(&mut buf).map_err(|e| e.to_string())?;
            vol.insert(layer, &inode_key(ino), &buf)
                .map_err(t("inode record"))?;
            actions.push(format!(
                "repaired: layer {layer}: inode {ino}: link count {old} set to {nlink}"
            ));
        }
    }
    let mut record_layers: BTreeSet<u64> = BTreeSet::new();
    for f in fixes {
        if matches!(
            f,
            Fix::LayerUsage { .. } | Fix::LayerOwn { .. } | Fix::LayerChildren { .. }
        ) {
            record_layers.extend(f.layer());
        }
    }
    for l in record_layers {
        let mut info = vol.layer(l).map_err(t("layer"))?;
        for f in fixes {
            match *f {
                Fix::LayerUsage {
                    layer,
                    inodes,
                    bytes,
                } if layer == l => {
                    actions.push(format!(
                        "repaired: layer {l}: usage {} inodes and {} bytes set to {inodes} and \
                         {bytes}",
                        info.inodes_used, info.bytes_used
                    ));
                    info.inodes_used = inodes;
                    info.bytes_used = bytes;
                }
                Fix::LayerOwn { layer, own } if layer == l => {
                    actions.push(format!(
                        "repaired: layer {l}: own bytes {} set to {own}",
                        info.own_bytes
                    ));
                    info.own_bytes = own;
                }
                Fix::LayerChildren { layer, children } if layer == l => {
                    actions.push(format!(
                        "repaired: layer {l}: child count {} set to {children}",
                        info.children
                    ));
                    info.children = children;
                }
                _ => {}
            }
        }
        vol.set_layer_record(&info).map_err(t("layer record"))?;
    }
    for l in thawed {
        vol.freeze_layer(l).map_err(t("freeze"))?;
    }
    // A commit writes its superblock copy's whole block (zeros after the record), so the two
    // commits below clear both tails.
    let tails = fixes
        .iter()
        .filter(|f| matches!(f, Fix::SuperblockTail { .. }))
        .count();
    for f in fixes {
        if let Fix::SuperblockTail { slot } = *f {
            actions.push(format!(
                "repaired: superblock copy {slot}: the bytes after the superblock record are \
                 zeros again"
            ));
        }
    }
    vol.recommit(now).map_err(t("commit"))?;
    let generation = vol.superblock().generation;
    let only_copy = fixes.iter().all(|f| *f == Fix::Fallback);
    if (base == Base::Current && !only_copy) || tails > 0 {
        // Both copies hold the repaired state, so a torn write of the next commit falls back
        // to it rather than to the damage.
        vol.recommit(now).map_err(t("second commit"))?;
    }
    match base {
        Base::Previous(slot) => actions.push(format!(
            "repaired: generation {} committed again as generation {generation} in superblock \
             copy {slot}; both copies now hold it",
            sb.generation
        )),
        Base::Current if fixes.contains(&Fix::Fallback) => actions.push(format!(
            "repaired: generation {} committed again as generation {generation} in superblock \
             copy {}; both copies now hold it",
            sb.generation,
            generation % 2
        )),
        Base::Current => actions.push(format!(
            "repaired: committed as generation {}, in both superblock copies",
            vol.superblock().generation
        )),
    }
    Ok(actions)
}

/// The layer's `/lost+found`, made (mode 0700, owned by root) when missing.
fn lost_and_found<S: volume::Device>(
    vol: &mut Volume<S>,
    layer: u64,
    now: Timespec,
) -> Result<u64, String> {
    let name = b"lost+found";
    match vol
        .lookup_name(layer, ROOT_INO, name)
        .map_err(|e| format!("lost+found: {}", tree_err(e)))?
    {
        Some(e) if e.dtype == 4 => Ok(e.ino),
        Some(_) => Err(format!(
            "layer {layer}: /lost+found is not a directory: nowhere to put unnamed inodes"
        )),
        None => vol
            .create(
                layer,
                ROOT_INO,
                name,
                &NewInode {
                    mode: records::mode::S_IFDIR | 0o700,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                },
                now,
            )
            .map_err(|e| format!("creating lost+found: {}", tree_err(e))),
    }
}

/// `#INO`, or `#INO.N` if that is taken, in directory `dir`.
fn free_name<S: volume::Device>(
    vol: &mut Volume<S>,
    layer: u64,
    dir: u64,
    ino: u64,
) -> Result<Vec<u8>, String> {
    for n in 0..1000u32 {
        let name = if n == 0 {
            format!("#{ino}")
        } else {
            format!("#{ino}.{n}")
        };
        if vol
            .lookup_name(layer, dir, name.as_bytes())
            .map_err(tree_err)?
            .is_none()
        {
            return Ok(name.into_bytes());
        }
    }
    Err(format!("no free name for inode {ino} in lost+found"))
}

/// The lowest free offset of the hash bucket of `hash` in directory `dir`.
fn free_offset<S: volume::Device>(
    vol: &mut Volume<S>,
    layer: u64,
    dir: u64,
    hash: u64,
) -> Result<u64, String> {
    for i in 0..records::DIRENT_COLLISIONS {
        let off = records::dirent_offset(hash, i).ok_or("entry offset")?;
        let taken = vol
            .lookup(layer, &Key::new(dir, kind::DIRENT, off), |_| ())
            .map_err(tree_err)?;
        if taken.is_none() {
            return Ok(off);
        }
    }
    Err("the name's hash bucket in lost+found is full".into())
}

/// The nodes of a map: for each level from the leaves up, the first blocks of the nodes it
/// materialises, in order.
struct Shape {
    levels: Vec<Vec<u64>>,
}

impl Shape {
    /// The nodes a map of `counts` materialises: the root, and the path to each block in use.
    fn of(counts: &Counts, level: u8) -> Self {
        let mut levels: Vec<Vec<u64>> = (0..=level).map(|_| Vec::new()).collect();
        for (l, firsts) in (0u8..).zip(levels.iter_mut()) {
            if l == level {
                firsts.push(0);
            }
            let cov = coverage(l);
            // The runs are in block order, so each level's nodes come in order too.
            for r in counts.runs() {
                let mut first = r.start - r.start % cov;
                while first < r.end {
                    if firsts.last().is_none_or(|&f| f < first) {
                        firsts.push(first);
                    }
                    match first.checked_add(cov.get()) {
                        Some(f) => first = f,
                        None => break,
                    }
                }
            }
        }
        Self { levels }
    }

    /// Nodes.
    fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// Whether the node of `level` from `first` is materialised.
    fn contains(&self, level: u8, first: u64) -> bool {
        self.position(level, first).is_some()
    }

    /// The node's place among those of its level.
    fn position(&self, level: u8, first: u64) -> Option<usize> {
        self.levels
            .get(usize::from(level))?
            .binary_search(&first)
            .ok()
    }

    /// Materialises the path to block `b`.
    fn add_path(&mut self, b: u64) {
        for (l, firsts) in (0u8..).zip(self.levels.iter_mut()) {
            let first = b - b % coverage(l);
            if let Err(i) = firsts.binary_search(&first) {
                firsts.insert(i, first);
            }
        }
    }
}

/// Blocks of the filesystem of `total` blocks from `first` on, at most `cov`.
fn span(first: u64, cov: u64, total: u64) -> u64 {
    total.saturating_sub(first).min(cov)
}

/// Blocks for the `shape.len()` nodes of the new map (`shape` grows with the paths to them):
/// blocks the check read as free in a leaf, that nothing references and that are not old map
/// nodes. First those in leaves the new map has anyway, where a node adds no other; then, leaf
/// after leaf, in others, each of which joins the new map with its path.
fn place_nodes<S: BlockStore<Buf = Vec<u8>>>(
    store: &mut S,
    sb: &Superblock,
    facts: &MapFacts,
    shape: &mut Shape,
) -> Result<Vec<u64>, String> {
    let total = sb.total_blocks;
    let mut old = facts.map_nodes.clone();
    old.sort_unstable();
    let mut picks = Vec::new();
    for in_map in [true, false] {
        for leaf in &facts.leaves {
            if picks.len() >= shape.len() {
                return Ok(picks);
            }
            // A leaf the first pass did not take from is not in the new map yet (a pick only
            // adds its own leaf, and the second pass finishes with a leaf before the next).
            if shape.contains(0, leaf.first) != in_map || leaf.uniform.is_some_and(|v| v != 0) {
                continue;
            }
            let counted = match leaf.uniform {
                Some(_) => None,
                None => Some(fsck::read_leaf(store, sb, leaf)?),
            };
            let end = leaf.first.saturating_add(LEAF_ENTRIES).min(total);
            let from = leaf.first.max(Superblock::FIXED_BLOCKS);
            let mut cur = facts.expected.cursor(from);
            for (run, want) in cur.pieces(from..end) {
                if want != 0 {
                    continue;
                }
                for b in run {
                    let free = match &counted {
                        None => true,
                        Some(buf) => {
                            b.checked_sub(leaf.first)
                                .and_then(|i| refmap::leaf_get(buf, i).ok())
                                == Some(0)
                        }
                    };
                    if !free || old.binary_search(&b).is_ok() {
                        continue;
                    }
                    picks.push(b);
                    shape.add_path(b);
                    if picks.len() >= shape.len() {
                        return Ok(picks);
                    }
                }
            }
        }
    }
    if picks.len() >= shape.len() {
        return Ok(picks);
    }
    Err("no free block known to be unused for the new map".into())
}

/// Writes a map holding `facts.expected` (the references found; the old map's nodes keep their
/// one, for the repair's transaction to release) plus its own nodes, in blocks that neither the
/// old map nor anything else uses, as nodes of the transaction after `sb`, leaf by leaf. Returns
/// its root and free count.
fn rebuild_map<S: BlockStore<Buf = Vec<u8>>>(
    store: &mut S,
    sb: &Superblock,
    facts: &MapFacts,
) -> Result<(u64, u64), String> {
    let total = sb.total_blocks;
    if facts.expected.runs().last().is_some_and(|r| r.end > total) {
        return Err("the references found do not cover the filesystem".into());
    }
    let level = sb.map_level;
    let generation = sb.generation.checked_add(1).ok_or("last generation")?;
    let mut shape = Shape::of(&facts.expected, level);
    let picks = place_nodes(store, sb, facts, &mut shape)?;
    let mut sorted = picks.clone();
    sorted.sort_unstable();
    // The new nodes have their one reference each.
    let counts = facts
        .expected
        .with_blocks(&sorted)
        .ok_or("a block for the new map is in use")?;
    // The nodes in order of level then position take the blocks in the order picked.
    let mut picked = picks.iter();
    let mut place: Vec<Vec<u64>> = Vec::new();
    for firsts in &shape.levels {
        place.push(picked.by_ref().take(firsts.len()).copied().collect());
    }
    let placed = |l: u8, first: u64| -> Option<u64> {
        let i = shape.position(l, first)?;
        place.get(usize::from(l))?.get(i).copied()
    };
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let e = |e: lcfs_format::FormatError| e.to_string();
    for (l, firsts) in (0u8..).zip(&shape.levels) {
        // Leaves are written in block order, so one cursor reads their counts.
        let mut cur = counts.cursor(0);
        for &first in firsts {
            let block = placed(l, first).ok_or("no block for a node of the new map")?;
            refmap::init(&mut buf, block, generation, sb.fsid(), l, first, total).map_err(e)?;
            if let Some(below) = l.checked_sub(1) {
                let cov = coverage(below).get();
                for i in 0..NODE_ENTRIES {
                    let Some(cf) = i.checked_mul(cov).and_then(|o| first.checked_add(o)) else {
                        break;
                    };
                    if cf >= total {
                        break;
                    }
                    if let Some(child) = placed(below, cf) {
                        let free = span(cf, cov, total)
                            .saturating_sub(counts.used(cf..cf.saturating_add(cov).min(total)));
                        let at = usize::try_from(i)
                            .ok()
                            .and_then(|i| i.checked_mul(24))
                            .and_then(|i| i.checked_add(HEADER_SIZE))
                            .ok_or("map entry")?;
                        put_u64(&mut buf, at, child).map_err(e)?;
                        put_u64(&mut buf, at.saturating_add(8), free).map_err(e)?;
                        put_u64(&mut buf, at.saturating_add(16), 0).map_err(e)?;
                    }
                }
            } else {
                let end = first.saturating_add(LEAF_ENTRIES).min(total);
                for (run, c) in cur.pieces(first..end) {
                    if c == 0 {
                        continue;
                    }
                    for b in run {
                        let at = b
                            .checked_sub(first)
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| i.checked_mul(4))
                            .and_then(|i| i.checked_add(HEADER_SIZE))
                            .ok_or("leaf entry")?;
                        put_u32(&mut buf, at, c).map_err(e)?;
                    }
                }
            }
            refmap::seal(&mut buf).map_err(e)?;
            refmap::check(
                &buf,
                &MapExpect {
                    blocknr: block,
                    fsid: sb.fsid(),
                    level: l,
                    first,
                    txn_generation: generation,
                    pins_from: generation,
                    total_blocks: total,
                },
            )
            .map_err(|e| format!("new map node {block}: {e}"))?;
            store.write(block, &buf).map_err(tree_err)?;
        }
    }
    let root = placed(level, 0).ok_or("map root")?;
    Ok((root, total.saturating_sub(counts.used(0..total))))
}

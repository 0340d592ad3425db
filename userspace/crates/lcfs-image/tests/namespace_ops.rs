//! Namespace operations for a read-write POSIX filesystem: rename (all modes), attribute changes
//! and truncation, orphans (unlinked but open inodes), inline reads; their refusals, fsck's view
//! of orphans, and a model-based test of random operation sequences.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

use std::collections::{BTreeMap, BTreeSet};

use lcfs_format::namespace::{NewInode, OrphanItem, PathChange, RenameMode, RenameResult, SetAttr};
use lcfs_format::node::Key;
use lcfs_format::records::{kind, mode, ExtentRecord, InodeRecord, Timespec};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::Error;
use lcfs_format::volume::Volume;
use lcfs_format::{BLOCK_SIZE, ROOT_INO};
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;
use proptest::prelude::*;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};
const LATER: Timespec = Timespec {
    sec: 1_700_000_100,
    nsec: 7,
};
const BS: u64 = BLOCK_SIZE as u64;

fn dir() -> NewInode {
    NewInode {
        mode: mode::S_IFDIR | 0o755,
        ..NewInode::default()
    }
}

fn file() -> NewInode {
    NewInode {
        mode: mode::S_IFREG | 0o644,
        uid: 1000,
        ..NewInode::default()
    }
}

fn fresh(blocks: u64, seed: u8) -> Volume<MemDevice> {
    let sb = Superblock::new(blocks, [seed; 16], 1_700_000_000);
    Volume::format(MemDevice::new(blocks), sb, Some(b"base"), NOW).unwrap()
}

fn fsck_errors(vol: &mut Volume<MemDevice>) -> Vec<String> {
    vol.commit(LATER).unwrap();
    fsck::check(vol.store().clone(), &mut |_, _, _| {})
        .unwrap()
        .errors
}

fn assert_clean(vol: &mut Volume<MemDevice>) {
    let e = fsck_errors(vol);
    assert!(e.is_empty(), "fsck: {e:#?}");
}

/// Every item of a layer, with the free count and the abort flag: equal before and after a
/// refused operation.
fn snapshot(vol: &mut Volume<MemDevice>, layer: u64) -> (Vec<(Key, Vec<u8>)>, u64, bool) {
    let mut items = Vec::new();
    let mut from = Key::MIN;
    while let Some((k, v)) = vol.next(layer, &from, |k, v| (*k, v.to_vec())).unwrap() {
        items.push((k, v));
        from = match k.offset.checked_add(1) {
            Some(o) => Key::new(k.id, k.kind, o),
            None => Key::new(k.id, k.kind + 1, 0),
        };
    }
    (items, vol.superblock().free_blocks, vol.is_aborted())
}

/// Gives `ino` an extent of up to `len` new blocks at file block `at`, as the data path would:
/// the item, and the inode's size and `blocks`. Returns the blocks allocated.
fn add_extent(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, at: u64, len: u32) -> u32 {
    let (disk_block, got) = vol.alloc_data(len).unwrap();
    let mut v = [0u8; 16];
    ExtentRecord {
        disk_block,
        len: got,
        flags: 0,
    }
    .encode(&mut v)
    .unwrap();
    vol.insert(layer, &Key::new(ino, kind::EXTENT, at), &v)
        .unwrap();
    let mut r = vol.inode(layer, ino).unwrap();
    r.size = r.size.max((at + u64::from(got)) * BS);
    r.blocks += u64::from(got);
    put_inode(vol, layer, ino, &r);
    got
}

fn put_inode(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, r: &InodeRecord) {
    let mut buf = [0u8; 128];
    r.encode(&mut buf).unwrap();
    vol.insert(layer, &Key::new(ino, kind::INODE, 0), &buf)
        .unwrap();
}

/// The extents of `ino`: file block to (disk block, length).
fn extents(vol: &mut Volume<MemDevice>, layer: u64, ino: u64) -> BTreeMap<u64, (u64, u32)> {
    let total = vol.superblock().total_blocks;
    let mut out = BTreeMap::new();
    let mut from = Key::new(ino, kind::EXTENT, 0);
    while let Some((k, e)) = vol
        .next(layer, &from, |k, v| (*k, ExtentRecord::decode(v, total)))
        .unwrap()
    {
        if k.id != ino || k.kind != kind::EXTENT {
            break;
        }
        let e = e.unwrap();
        out.insert(k.offset, (e.disk_block, e.len));
        from = Key::new(ino, kind::EXTENT, k.offset + 1);
    }
    out
}

fn path(vol: &mut Volume<MemDevice>, layer: u64, ino: u64) -> String {
    let mut buf = [0u8; 4096];
    let start = vol.path_of(layer, ino, &mut buf).unwrap();
    String::from_utf8(buf[start..].to_vec()).unwrap()
}

fn names(vol: &mut Volume<MemDevice>, layer: u64, d: u64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    vol.readdir(layer, d, 0, &mut |e| {
        out.insert(String::from_utf8(e.name.to_vec()).unwrap(), e.ino);
        true
    })
    .unwrap();
    out
}

#[test]
fn rename_moves_names_and_back_references() {
    let mut vol = fresh(4096, 1);
    let a = vol.create(1, ROOT_INO, b"a", &dir(), NOW).unwrap();
    let b = vol.create(1, ROOT_INO, b"b", &dir(), NOW).unwrap();
    let sub = vol.create(1, a, b"sub", &dir(), NOW).unwrap();
    let f = vol.create(1, a, b"f", &file(), NOW).unwrap();
    vol.link(1, f, a, b"f2", NOW).unwrap();
    // Within a directory.
    let r = vol
        .rename(1, a, b"f", a, b"g", RenameMode::Replace, LATER)
        .unwrap();
    assert_eq!(r, RenameResult::default());
    assert_eq!(
        names(&mut vol, 1, a).keys().collect::<Vec<_>>(),
        ["f2", "g", "sub"]
    );
    assert_eq!(vol.inode(1, f).unwrap().ctime, LATER);
    assert_eq!(vol.inode(1, f).unwrap().nlink, 2);
    assert_eq!(vol.inode(1, a).unwrap().mtime, LATER);
    // Across directories: a file, then a directory (the parents' link counts move).
    vol.rename(1, a, b"g", b, b"g", RenameMode::NoReplace, LATER)
        .unwrap();
    assert_eq!(path(&mut vol, 1, f), "/a/f2");
    vol.unlink(1, a, b"f2", LATER).unwrap();
    assert_eq!(path(&mut vol, 1, f), "/b/g");
    assert_eq!(vol.inode(1, f).unwrap().nlink, 1);
    assert_eq!(
        (
            vol.inode(1, a).unwrap().nlink,
            vol.inode(1, b).unwrap().nlink
        ),
        (3, 2)
    );
    vol.rename(1, a, b"sub", b, b"moved", RenameMode::Replace, LATER)
        .unwrap();
    assert_eq!(
        (
            vol.inode(1, a).unwrap().nlink,
            vol.inode(1, b).unwrap().nlink
        ),
        (2, 3)
    );
    assert_eq!(path(&mut vol, 1, sub), "/b/moved");
    let inner = vol.create(1, sub, b"inner", &file(), LATER).unwrap();
    assert_eq!(path(&mut vol, 1, inner), "/b/moved/inner");
    // Onto another name of the same inode, or onto itself: nothing happens.
    vol.link(1, f, b, b"h", LATER).unwrap();
    let before = snapshot(&mut vol, 1);
    for how in [
        RenameMode::Replace,
        RenameMode::Exchange,
        RenameMode::Whiteout,
    ] {
        let r = vol.rename(1, b, b"g", b, b"h", how, NOW).unwrap();
        assert_eq!(r, RenameResult::default());
        vol.rename(1, b, b"g", b, b"g", how, NOW).unwrap();
    }
    assert_eq!(snapshot(&mut vol, 1), before);
    assert_clean(&mut vol);
}

#[test]
fn rename_refusals_change_nothing() {
    let mut vol = fresh(4096, 2);
    let a = vol.create(1, ROOT_INO, b"a", &dir(), NOW).unwrap();
    let sub = vol.create(1, a, b"sub", &dir(), NOW).unwrap();
    let deep = vol.create(1, sub, b"deep", &dir(), NOW).unwrap();
    let f = vol.create(1, a, b"f", &file(), NOW).unwrap();
    vol.create(1, ROOT_INO, b"empty", &dir(), NOW).unwrap();
    vol.create(1, ROOT_INO, b"g", &file(), NOW).unwrap();
    let before = snapshot(&mut vol, 1);
    let r = ROOT_INO;
    let cases: Vec<(&str, Result<RenameResult, Error>)> = vec![
        (
            "missing source",
            vol.rename(1, a, b"none", r, b"x", RenameMode::Replace, NOW),
        ),
        (
            "noreplace",
            vol.rename(1, a, b"f", r, b"g", RenameMode::NoReplace, NOW),
        ),
        (
            "exchange without target",
            vol.rename(1, a, b"f", r, b"x", RenameMode::Exchange, NOW),
        ),
        (
            "dir over file",
            vol.rename(1, a, b"sub", r, b"g", RenameMode::Replace, NOW),
        ),
        (
            "file over dir",
            vol.rename(1, r, b"g", r, b"empty", RenameMode::Whiteout, NOW),
        ),
        (
            "dir over non-empty dir",
            vol.rename(1, r, b"empty", r, b"a", RenameMode::Replace, NOW),
        ),
        (
            "dir into itself",
            vol.rename(1, a, b"sub", sub, b"x", RenameMode::Replace, NOW),
        ),
        (
            "dir below itself",
            vol.rename(1, r, b"a", deep, b"x", RenameMode::Replace, NOW),
        ),
        (
            "exchange with an ancestor",
            vol.rename(1, sub, b"deep", r, b"a", RenameMode::Exchange, NOW),
        ),
        (
            "parent not a directory",
            vol.rename(1, a, b"sub", f, b"x", RenameMode::Replace, NOW),
        ),
        (
            "bad name",
            vol.rename(1, a, b"f", r, b"x/y", RenameMode::Replace, NOW),
        ),
        (
            "bad time",
            vol.rename(
                1,
                a,
                b"f",
                r,
                b"x",
                RenameMode::Replace,
                Timespec {
                    sec: 0,
                    nsec: 1_000_000_000,
                },
            ),
        ),
    ];
    let want = [
        Error::NotFound,
        Error::Exists,
        Error::NotFound,
        Error::NotDir,
        Error::IsDir,
        Error::NotEmpty,
        Error::Invalid,
        Error::Invalid,
        Error::Invalid,
        Error::NotDir,
        Error::Invalid,
        Error::Invalid,
    ];
    for ((what, got), want) in cases.into_iter().zip(want) {
        assert_eq!(got, Err(want), "{what}");
    }
    assert_eq!(snapshot(&mut vol, 1), before);
    vol.freeze_layer(1).unwrap();
    assert_eq!(
        vol.rename(1, a, b"f", r, b"x", RenameMode::Replace, NOW),
        Err(Error::ReadOnly)
    );
    assert!(!vol.is_aborted());
    assert_clean(&mut vol);
}

#[test]
fn rename_replace_leaves_an_orphan() {
    let mut vol = fresh(4096, 3);
    let a = vol.create(1, ROOT_INO, b"a", &dir(), NOW).unwrap();
    let f = vol.create(1, a, b"f", &file(), NOW).unwrap();
    let g = vol.create(1, ROOT_INO, b"g", &file(), NOW).unwrap();
    add_extent(&mut vol, 1, g, 0, 3);
    vol.set_xattr(1, g, b"user.big", &[5; 6000], NOW).unwrap();
    let h = vol.create(1, ROOT_INO, b"h", &file(), NOW).unwrap();
    vol.link(1, h, a, b"h2", NOW).unwrap();
    let used = vol.layer(1).unwrap();
    // The last name of g: an orphan with its data.
    let r = vol
        .rename(1, a, b"f", ROOT_INO, b"g", RenameMode::Replace, LATER)
        .unwrap();
    assert_eq!(r.replaced, Some(g));
    let rec = vol.inode(1, g).unwrap();
    assert_eq!((rec.nlink, rec.ctime), (0, LATER));
    assert!(vol.is_orphan(1, g).unwrap());
    assert_eq!(extents(&mut vol, 1, g).len(), 1);
    assert_eq!(vol.lookup_name(1, ROOT_INO, b"g").unwrap().unwrap().ino, f);
    assert_clean(&mut vol);
    // One of two names of h: just a link fewer.
    let r = vol
        .rename(1, ROOT_INO, b"g", a, b"h2", RenameMode::Replace, LATER)
        .unwrap();
    assert_eq!(r.replaced, Some(h));
    assert_eq!(vol.inode(1, h).unwrap().nlink, 1);
    assert!(!vol.is_orphan(1, h).unwrap());
    // An empty directory replaced by a directory becomes an orphan too.
    let d1 = vol.create(1, ROOT_INO, b"d1", &dir(), NOW).unwrap();
    let d2 = vol.create(1, a, b"d2", &dir(), NOW).unwrap();
    let root_links = vol.inode(1, ROOT_INO).unwrap().nlink;
    let r = vol
        .rename(1, ROOT_INO, b"d1", a, b"d2", RenameMode::Replace, LATER)
        .unwrap();
    assert_eq!(r.replaced, Some(d2));
    assert_eq!(vol.inode(1, d2).unwrap().nlink, 0);
    assert_eq!(vol.inode(1, ROOT_INO).unwrap().nlink, root_links - 1);
    assert_eq!(path(&mut vol, 1, d1), "/a/d2");
    // An orphan directory takes no new names.
    assert_eq!(
        vol.create(1, d2, b"x", &file(), LATER),
        Err(Error::NotFound)
    );
    assert_clean(&mut vol);
    // Deleting the orphans frees their data and inodes.
    let before = vol.superblock().free_blocks;
    vol.delete_orphan(1, g).unwrap();
    assert_eq!(vol.delete_orphan(1, g), Err(Error::NotFound));
    assert_eq!(vol.delete_orphan(1, f), Err(Error::NotFound));
    assert_eq!(vol.reap_orphans(1).unwrap(), 1);
    assert_eq!(vol.reap_orphans(1).unwrap(), 0);
    assert_eq!(vol.inode(1, g), Err(Error::NotFound));
    assert_eq!(vol.inode(1, d2), Err(Error::NotFound));
    assert_eq!(vol.layer(1).unwrap().bytes_used, used.bytes_used - 3 * BS);
    assert_clean(&mut vol);
    assert!(vol.superblock().free_blocks >= before + 3 + 2);
}

#[test]
fn rename_exchange_and_whiteout() {
    let mut vol = fresh(4096, 4);
    let a = vol.create(1, ROOT_INO, b"a", &dir(), NOW).unwrap();
    let b = vol.create(1, ROOT_INO, b"b", &dir(), NOW).unwrap();
    let d = vol.create(1, a, b"x", &dir(), NOW).unwrap();
    let f = vol.create(1, b, b"y", &file(), NOW).unwrap();
    vol.link(1, f, b, b"y2", NOW).unwrap();
    // A directory and a file swap places across directories.
    let r = vol
        .rename(1, a, b"x", b, b"y", RenameMode::Exchange, LATER)
        .unwrap();
    assert_eq!(r, RenameResult::default());
    assert_eq!(names(&mut vol, 1, a)["x"], f);
    assert_eq!(names(&mut vol, 1, b)["y"], d);
    assert_eq!(
        (
            vol.inode(1, a).unwrap().nlink,
            vol.inode(1, b).unwrap().nlink
        ),
        (2, 3)
    );
    assert_eq!(path(&mut vol, 1, d), "/b/y");
    assert_eq!(vol.inode(1, f).unwrap().ctime, LATER);
    assert_eq!(vol.inode(1, d).unwrap().ctime, LATER);
    assert_eq!(vol.inode(1, f).unwrap().nlink, 2);
    assert_clean(&mut vol);
    // In one directory.
    vol.rename(1, b, b"y", b, b"y2", RenameMode::Exchange, LATER)
        .unwrap();
    assert_eq!(names(&mut vol, 1, b)["y2"], d);
    assert_eq!(names(&mut vol, 1, b)["y"], f);
    assert_clean(&mut vol);
    // A whiteout takes the old name.
    let r = vol
        .rename(1, b, b"y2", a, b"w", RenameMode::Whiteout, LATER)
        .unwrap();
    let w = r.whiteout.unwrap();
    assert_eq!(r.replaced, None);
    let rec = vol.inode(1, w).unwrap();
    assert_eq!((rec.mode, rec.rdev, rec.nlink), (mode::S_IFCHR, 0, 1));
    let e = vol.lookup_name(1, b, b"y2").unwrap().unwrap();
    assert_eq!((e.ino, e.dtype), (w, 2));
    assert_eq!(path(&mut vol, 1, d), "/a/w");
    assert_eq!(
        (
            vol.inode(1, a).unwrap().nlink,
            vol.inode(1, b).unwrap().nlink
        ),
        (3, 2)
    );
    // Whiteout over an existing file: it is replaced as well.
    let z = vol.create(1, a, b"z", &file(), LATER).unwrap();
    let r = vol
        .rename(1, b, b"y", a, b"z", RenameMode::Whiteout, LATER)
        .unwrap();
    assert_eq!(r.replaced, Some(z));
    assert_eq!(vol.inode(1, z).unwrap().nlink, 0);
    assert_eq!(vol.inode(1, f).unwrap().nlink, 2);
    assert!(r.whiteout.is_some());
    assert_eq!(names(&mut vol, 1, a)["z"], f);
    assert_clean(&mut vol);
}

#[test]
fn orphans_keep_data_until_deleted() {
    let mut vol = fresh(4096, 5);
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    let f = vol.create(1, d, b"f", &file(), NOW).unwrap();
    add_extent(&mut vol, 1, f, 0, 4);
    let e = vol.create(1, d, b"e", &dir(), NOW).unwrap();
    let s = vol.create(1, ROOT_INO, b"stay", &file(), NOW).unwrap();
    vol.link(1, s, d, b"s2", NOW).unwrap();
    assert_eq!(vol.unlink_keep(1, d, b"s2", LATER).unwrap(), None);
    assert_eq!(vol.unlink_keep(1, d, b"f", LATER).unwrap(), Some(f));
    assert_eq!(vol.unlink_keep(1, d, b"e", LATER).unwrap(), Some(e));
    assert_eq!(vol.inode(1, f).unwrap().nlink, 0);
    assert_eq!(vol.inode(1, e).unwrap().nlink, 0);
    assert_eq!(vol.inode(1, d).unwrap().nlink, 2);
    assert_eq!(extents(&mut vol, 1, f).len(), 1);
    // Orphans still take attribute changes but no names.
    vol.set_attr(
        1,
        f,
        &SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(vol.link(1, f, d, b"back", LATER), Err(Error::NotFound));
    assert_eq!(vol.create(1, e, b"x", &file(), LATER), Err(Error::NotFound));
    assert_eq!(vol.delete_orphan(1, s), Err(Error::NotFound));
    assert_eq!(vol.delete_orphan(1, 0), Err(Error::NotFound));
    assert_clean(&mut vol);
    // A frozen layer keeps its orphans (fsck accepts them); a clone reaps its copies.
    vol.freeze_layer(1).unwrap();
    assert_eq!(vol.reap_orphans(1), Err(Error::ReadOnly));
    assert_eq!(vol.delete_orphan(1, f), Err(Error::ReadOnly));
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    assert_clean(&mut vol);
    assert_eq!(vol.reap_orphans(c).unwrap(), 2);
    assert_eq!(vol.inode(c, f), Err(Error::NotFound));
    assert_eq!(vol.inode(1, f).unwrap().nlink, 0);
    assert_clean(&mut vol);
    // A clone's own orphan over a file of the parent: the diff reports only the name.
    let c2 = vol.create_layer(b"c2", Some(1), NOW).unwrap();
    assert_eq!(
        vol.unlink_keep(c2, ROOT_INO, b"stay", LATER).unwrap(),
        Some(s)
    );
    let mut seen = BTreeSet::new();
    vol.diff_paths(c2, &mut |ch, p| {
        seen.insert((ch, String::from_utf8(p.to_vec()).unwrap()));
        true
    })
    .unwrap();
    assert!(
        seen.contains(&(PathChange::Deleted, "/stay".to_string())),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|(_, p)| p.contains("s2")), "{seen:?}");
    assert_clean(&mut vol);
    // The old behaviour: unlink deletes at once.
    let t = vol.create(c2, d, b"t", &file(), LATER).unwrap();
    vol.unlink(c2, d, b"t", LATER).unwrap();
    assert_eq!(vol.inode(c2, t), Err(Error::NotFound));
    assert!(!vol.is_orphan(c2, t).unwrap());
    assert!(vol.is_orphan(c2, s).unwrap());
    vol.delete_orphan(c2, s).unwrap();
    assert!(!vol.is_orphan(c2, s).unwrap());
    assert_eq!(vol.inode(c2, s), Err(Error::NotFound));
    assert_clean(&mut vol);
}

/// An unlink that leaves the orphan-index item out: the inode keeps link count 0 and its data,
/// and fsck finds the unlisted orphan until the item is added or the inode deleted.
#[test]
fn unindexed_orphans_are_deleted_or_indexed() {
    let mut vol = fresh(4096, 6);
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    let f = vol.create(1, d, b"f", &file(), NOW).unwrap();
    add_extent(&mut vol, 1, f, 0, 4);
    let g = vol.create(1, d, b"g", &file(), NOW).unwrap();
    let e = vol.create(1, d, b"e", &dir(), NOW).unwrap();
    let (orphan, touched) = vol
        .unlink_touched(1, d, b"f", LATER, OrphanItem::Leave)
        .unwrap();
    assert_eq!(orphan, Some(f));
    assert_eq!(touched.inode, vol.inode(1, f).unwrap());
    assert_eq!(touched.inode.nlink, 0);
    assert_eq!(touched.inode.ctime, LATER);
    assert_eq!(extents(&mut vol, 1, f).len(), 1);
    assert!(!vol.is_orphan(1, f).unwrap());
    assert!(fsck_errors(&mut vol)
        .iter()
        .any(|e| e.contains(&format!("inode {f}: link count 0 but no orphan item"))));
    // Deleted: its items and blocks go, and it is not an orphan to delete any more.
    vol.delete_unlinked(1, f).unwrap();
    assert_eq!(vol.inode(1, f), Err(Error::NotFound));
    assert_eq!(vol.delete_orphan(1, f), Err(Error::NotFound));
    assert_clean(&mut vol);
    // Indexed: an orphan like any other (an empty directory too), deleted as one.
    assert_eq!(
        vol.unlink_touched(1, d, b"g", LATER, OrphanItem::Leave)
            .unwrap()
            .0,
        Some(g)
    );
    assert_eq!(
        vol.unlink_touched(1, d, b"e", LATER, OrphanItem::Leave)
            .unwrap()
            .0,
        Some(e)
    );
    assert_eq!(vol.inode(1, d).unwrap().nlink, 2);
    vol.index_orphan(1, g).unwrap();
    vol.index_orphan(1, e).unwrap();
    assert!(vol.is_orphan(1, g).unwrap());
    assert_clean(&mut vol);
    vol.delete_orphan(1, g).unwrap();
    assert_eq!(vol.reap_orphans(1).unwrap(), 1);
    assert_eq!(vol.inode(1, e), Err(Error::NotFound));
    assert_clean(&mut vol);
    // Only an inode without links is deleted so.
    let h = vol.create(1, d, b"h", &file(), NOW).unwrap();
    assert!(matches!(vol.delete_unlinked(1, h), Err(Error::Corrupt(_))));
    assert_eq!(vol.inode(1, h).unwrap().nlink, 1);
    assert_eq!(vol.delete_unlinked(1, 12345), Err(Error::NotFound));
    assert_clean(&mut vol);
    // An item that cannot be added leaves nothing to commit without it.
    assert_eq!(vol.index_orphan(1, 0), Err(Error::NotFound));
    assert_eq!(vol.commit(LATER), Err(Error::Aborted));
}

#[test]
fn deleting_an_inode_removes_items_over_several_leaves() {
    let mut vol = fresh(8192, 9);
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    let keep = vol.create(1, d, b"keep", &file(), NOW).unwrap();
    let f = vol.create(1, d, b"f", &file(), NOW).unwrap();
    add_extent(&mut vol, 1, keep, 0, 2);
    // More items than one leaf holds and than one batch of `remove_all_of` takes: extents
    // (which hold blocks) and xattrs, between the neighbours' items.
    for i in 0..60u64 {
        add_extent(&mut vol, 1, f, i * 2, 1);
    }
    for i in 0..40 {
        let name = format!("user.x{i:02}");
        vol.set_xattr(1, f, name.as_bytes(), &[7u8; 200], NOW)
            .unwrap();
    }
    vol.commit(NOW).unwrap();
    let free = vol.superblock().free_blocks;
    let used = vol.layer(1).unwrap();
    let (orphan, touched) = vol
        .unlink_touched(1, d, b"f", LATER, OrphanItem::Add)
        .unwrap();
    assert_eq!(orphan, Some(f));
    // The records handed back are the ones stored.
    assert_eq!(touched.dir, vol.inode(1, d).unwrap());
    assert_eq!(touched.inode, vol.inode(1, f).unwrap());
    assert_eq!(touched.inode.nlink, 0);
    vol.delete_orphan(1, f).unwrap();
    let (items, _, aborted) = snapshot(&mut vol, 1);
    assert!(!aborted);
    assert!(!items.iter().any(|(k, _)| k.id == f), "items of {f} left");
    assert!(items
        .iter()
        .any(|(k, _)| k.id == keep && k.kind == kind::EXTENT));
    let after = vol.layer(1).unwrap();
    assert_eq!(after.inodes_used, used.inodes_used - 1);
    assert_eq!(after.bytes_used, used.bytes_used - 60 * BS);
    assert_clean(&mut vol);
    // The 60 data blocks are free again once committed (tree nodes may differ).
    assert!(vol.superblock().free_blocks >= free + 60 - 8);
    // A new inode's records as created.
    let (g, t) = vol.create_touched(1, d, b"g", &file(), LATER).unwrap();
    assert_eq!(t.inode, vol.inode(1, g).unwrap());
    assert_eq!(t.dir, vol.inode(1, d).unwrap());
    assert_eq!(t.dir.mtime, LATER);
    assert_clean(&mut vol);
}

#[test]
fn set_attr_and_truncate() {
    let mut vol = fresh(4096, 6);
    let f = vol.create(1, ROOT_INO, b"f", &file(), NOW).unwrap();
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    let l = vol
        .create(
            1,
            ROOT_INO,
            b"l",
            &NewInode {
                mode: mode::S_IFLNK | 0o777,
                ..NewInode::default()
            },
            NOW,
        )
        .unwrap();
    vol.write_inline(1, l, b"target/path", NOW).unwrap();
    let t = Timespec {
        sec: -5,
        nsec: 999_999_999,
    };
    let r = vol
        .set_attr(
            1,
            f,
            &SetAttr {
                mode: Some(0o4750),
                uid: Some(7),
                gid: Some(8),
                atime: Some(t),
                mtime: Some(LATER),
                ctime: Some(LATER),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(r.mode, mode::S_IFREG | 0o4750);
    assert_eq!(
        (r.uid, r.gid, r.atime, r.mtime, r.ctime),
        (7, 8, t, LATER, LATER)
    );
    assert_eq!(vol.inode(1, f).unwrap(), r);
    // Refusals.
    let before = snapshot(&mut vol, 1);
    let size = |n| SetAttr {
        size: Some(n),
        ..SetAttr::default()
    };
    assert_eq!(vol.set_attr(1, d, &size(0)), Err(Error::IsDir));
    assert_eq!(vol.set_attr(1, l, &size(0)), Err(Error::Invalid));
    assert_eq!(vol.set_attr(1, f, &size(1 << 63)), Err(Error::Invalid));
    let bad_mode = SetAttr {
        mode: Some(mode::S_IFDIR | 0o755),
        ..SetAttr::default()
    };
    assert_eq!(vol.set_attr(1, f, &bad_mode), Err(Error::Invalid));
    let bad_time = SetAttr {
        mtime: Some(Timespec {
            sec: 0,
            nsec: 1_000_000_000,
        }),
        ..SetAttr::default()
    };
    assert_eq!(vol.set_attr(1, f, &bad_time), Err(Error::Invalid));
    assert_eq!(vol.set_attr(1, 999, &size(0)), Err(Error::NotFound));
    assert_eq!(snapshot(&mut vol, 1), before);
    // Inline data.
    let mut buf = [0u8; 64];
    assert_eq!(vol.read_inline(1, l, &mut buf).unwrap(), 11);
    assert_eq!(&buf[..11], b"target/path");
    assert_eq!(vol.read_inline(1, l, &mut buf[..5]), Err(Error::Invalid));
    assert_eq!(vol.read_inline(1, f, &mut buf), Err(Error::NotFound));
    let small = vol.create(1, ROOT_INO, b"small", &file(), NOW).unwrap();
    vol.write_inline(1, small, b"hello world", NOW).unwrap();
    vol.set_attr(1, small, &size(5)).unwrap();
    assert_eq!(vol.read_inline(1, small, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    vol.set_attr(1, small, &size(100)).unwrap();
    assert_eq!(vol.read_inline(1, small, &mut buf).unwrap(), 5);
    assert_eq!(vol.inode(1, small).unwrap().size, 100);
    // Extents: 0..4, 6..9, 12..13, 20..28.
    for (at, len) in [(0, 4), (6, 3), (12, 1), (20, 8)] {
        assert_eq!(add_extent(&mut vol, 1, f, at, len), len);
    }
    assert_eq!(vol.inode(1, f).unwrap().blocks, 16);
    assert_clean(&mut vol);
    vol.freeze_layer(1).unwrap();
    assert_eq!(vol.set_attr(1, f, &size(0)), Err(Error::ReadOnly));
    assert_eq!(vol.drop_blocks_from(1, f, 0), Err(Error::ReadOnly));
    assert!(!vol.is_aborted());
    // In a clone the leaves are shared: shortening must keep the parent's references.
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    let base = extents(&mut vol, 1, f);
    let used = vol.layer(c).unwrap().bytes_used;
    // A write in progress over 20..26 has staging blocks (a `COW` item): cut with the extents.
    let (staging, got) = vol.alloc_data(6).unwrap();
    assert_eq!(got, 6);
    let mut v = [0u8; 16];
    ExtentRecord {
        disk_block: staging,
        len: 6,
        flags: 0,
    }
    .encode(&mut v)
    .unwrap();
    let cow = Key::new(f, kind::COW, 20);
    vol.insert(c, &cow, &v).unwrap();
    assert_clean(&mut vol);
    let cow_len = |vol: &mut Volume<MemDevice>| {
        vol.lookup(c, &cow, |v| ExtentRecord::decode(v, 4096).unwrap().len)
            .unwrap()
    };
    // Cut inside 20..28 (keep 20..23), drop nothing else.
    let r = vol.set_attr(c, f, &size(23 * BS - 100)).unwrap();
    assert_eq!((r.size, r.blocks), (23 * BS - 100, 11));
    let e = extents(&mut vol, c, f);
    assert_eq!(e[&20].1, 3);
    assert_eq!(e[&20].0, base[&20].0);
    assert_eq!(cow_len(&mut vol), Some(3));
    assert_eq!(vol.layer(c).unwrap().bytes_used, used - 5 * BS);
    assert_clean(&mut vol);
    // Exactly at an extent boundary (nothing straddles), then inside 6..9, then from a hole.
    vol.set_attr(c, f, &size(12 * BS)).unwrap();
    assert_eq!(extents(&mut vol, c, f).keys().collect::<Vec<_>>(), [&0, &6]);
    assert_eq!(cow_len(&mut vol), None);
    vol.set_attr(c, f, &size(7 * BS + 1)).unwrap();
    assert_eq!(extents(&mut vol, c, f)[&6].1, 2);
    assert_eq!(vol.inode(c, f).unwrap().blocks, 6);
    vol.set_attr(c, f, &size(5 * BS)).unwrap();
    assert_eq!(extents(&mut vol, c, f).keys().collect::<Vec<_>>(), [&0]);
    assert_eq!(vol.inode(c, f).unwrap().blocks, 4);
    assert_clean(&mut vol);
    // Growing keeps the blocks; shrinking to 0 drops them all.
    vol.set_attr(c, f, &size(100 * BS)).unwrap();
    assert_eq!(vol.inode(c, f).unwrap().blocks, 4);
    vol.set_attr(c, f, &size(0)).unwrap();
    assert!(extents(&mut vol, c, f).is_empty());
    assert_eq!(vol.inode(c, f).unwrap().blocks, 0);
    assert_eq!(extents(&mut vol, 1, f), base);
    assert_clean(&mut vol);
    // Removing the clone, then the parent, frees everything.
    vol.remove_layer(c).unwrap();
    vol.remove_layer(1).unwrap();
    assert_clean(&mut vol);
}

/// Orphan damage written with valid checksums: fsck names it, in a layer checked whole and in a
/// clone checked through its diff.
#[test]
fn fsck_finds_orphan_damage() {
    // Layer `l` (1 whole, or a clone) with a file `f` linked once and an orphan `o`.
    let build = |clone: bool| {
        let mut vol = fresh(4096, 9);
        let f = vol.create(1, ROOT_INO, b"f", &file(), NOW).unwrap();
        let o = vol.create(1, ROOT_INO, b"o", &file(), NOW).unwrap();
        let mut l = 1;
        if clone {
            vol.freeze_layer(1).unwrap();
            l = vol.create_layer(b"c", Some(1), NOW).unwrap();
        }
        vol.unlink_keep(l, ROOT_INO, b"o", NOW).unwrap();
        (vol, l, f, o)
    };
    for clone in [false, true] {
        let (mut vol, ..) = build(clone);
        assert_clean(&mut vol);

        // Link count 0 without an orphan item.
        let (mut vol, l, _, o) = build(clone);
        assert!(vol
            .remove(l, &lcfs_format::namespace::orphan_key(o))
            .unwrap());
        let e = fsck_errors(&mut vol);
        assert!(
            e.iter()
                .any(|m| m.contains(&format!("inode {o}: link count 0 but no orphan item"))),
            "clone {clone}: {e:?}"
        );

        // An orphan item for a missing inode.
        let (mut vol, l, ..) = build(clone);
        vol.insert(l, &lcfs_format::namespace::orphan_key(77), &[])
            .unwrap();
        let e = fsck_errors(&mut vol);
        assert!(
            e.iter()
                .any(|m| m.contains("orphan item for missing inode 77")),
            "clone {clone}: {e:?}"
        );

        // An orphan item for a linked inode.
        let (mut vol, l, f, _) = build(clone);
        vol.insert(l, &lcfs_format::namespace::orphan_key(f), &[])
            .unwrap();
        let e = fsck_errors(&mut vol);
        assert!(
            e.iter()
                .any(|m| m.contains(&format!("orphan item for inode {f}, which has links"))),
            "clone {clone}: {e:?}"
        );

        // An orphan that still has a name.
        let (mut vol, l, f, _) = build(clone);
        let mut r = vol.inode(l, f).unwrap();
        r.nlink = 0;
        put_inode(&mut vol, l, f, &r);
        vol.insert(l, &lcfs_format::namespace::orphan_key(f), &[])
            .unwrap();
        let e = fsck_errors(&mut vol);
        assert!(
            e.iter()
                .any(|m| m.contains(&format!("orphan inode {f} has names"))),
            "clone {clone}: {e:?}"
        );

        // Malformed orphan index items.
        let (mut vol, l, _, o) = build(clone);
        vol.insert(l, &lcfs_format::namespace::orphan_key(o), b"x")
            .unwrap();
        vol.insert(l, &Key::new(3, kind::ORPHAN, 3), &[]).unwrap();
        let e = fsck_errors(&mut vol);
        assert_eq!(
            e.iter()
                .filter(|m| m.contains("bad orphan index item"))
                .count(),
            2,
            "clone {clone}: {e:?}"
        );
    }
}

// ---- model-based test ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MKind {
    Dir,
    File,
    Chr,
}

#[derive(Clone, Debug)]
struct MInode {
    kind: MKind,
    nlink: u32,
    size: u64,
    blocks: u64,
    /// File block to length.
    extents: BTreeMap<u64, u32>,
    /// Directories: name to inode.
    entries: BTreeMap<Vec<u8>, u64>,
    /// Directories: the parent (the root is its own).
    parent: u64,
}

impl MInode {
    fn new(kind: MKind, parent: u64) -> Self {
        Self {
            kind,
            nlink: if kind == MKind::Dir { 2 } else { 1 },
            size: 0,
            blocks: 0,
            extents: BTreeMap::new(),
            entries: BTreeMap::new(),
            parent,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    inodes: BTreeMap<u64, MInode>,
    orphans: BTreeSet<u64>,
}

impl Model {
    /// `check_dir`: the directory's record, refusing non-directories and removed ones.
    fn dir(&self, d: u64) -> Result<&MInode, Error> {
        let i = self.inodes.get(&d).ok_or(Error::NotFound)?;
        if i.kind != MKind::Dir {
            return Err(Error::NotDir);
        }
        if i.nlink == 0 {
            return Err(Error::NotFound);
        }
        Ok(i)
    }

    fn is_under(&self, mut cur: u64, ancestor: u64) -> bool {
        loop {
            if cur == ancestor {
                return true;
            }
            if cur == ROOT_INO {
                return false;
            }
            cur = self.inodes[&cur].parent;
        }
    }

    fn lose_name(&mut self, ino: u64) {
        let i = self.inodes.get_mut(&ino).unwrap();
        if i.kind == MKind::Dir || i.nlink <= 1 {
            i.nlink = 0;
            self.orphans.insert(ino);
        } else {
            i.nlink -= 1;
        }
    }

    fn nlink_add(&mut self, ino: u64, d: i64) {
        let i = self.inodes.get_mut(&ino).unwrap();
        i.nlink = u32::try_from(i64::from(i.nlink) + d).unwrap();
    }

    /// What truncation to `size` leaves: extents cut, blocks dropped.
    fn truncate(&mut self, ino: u64, size: u64) {
        let i = self.inodes.get_mut(&ino).unwrap();
        if size <= i.size {
            let first = size.div_ceil(BS);
            let mut kept = BTreeMap::new();
            for (&at, &len) in &i.extents {
                if at >= first {
                    i.blocks -= u64::from(len);
                } else if at + u64::from(len) > first {
                    let keep = (first - at) as u32;
                    i.blocks -= u64::from(len - keep);
                    kept.insert(at, keep);
                } else {
                    kept.insert(at, len);
                }
            }
            i.extents = kept;
        }
        i.size = size;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: usize,
        name: u8,
        is_dir: bool,
    },
    Link {
        ino: usize,
        dir: usize,
        name: u8,
    },
    Unlink {
        dir: usize,
        name: u8,
        keep: bool,
    },
    Rename {
        od: usize,
        on: u8,
        nd: usize,
        nn: u8,
        how: u8,
    },
    Truncate {
        ino: usize,
        size: u64,
    },
    Extent {
        ino: usize,
        at: u64,
        len: u32,
    },
    DeleteOrphan {
        ino: usize,
    },
    Reap,
    Commit,
    FreezeAndClone,
}

const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<usize>(), 0u8..4, any::<bool>())
            .prop_map(|(dir, name, is_dir)| Op::Create { dir, name, is_dir }),
        2 => (any::<usize>(), any::<usize>(), 0u8..4)
            .prop_map(|(ino, dir, name)| Op::Link { ino, dir, name }),
        3 => (any::<usize>(), 0u8..4, any::<bool>())
            .prop_map(|(dir, name, keep)| Op::Unlink { dir, name, keep }),
        8 => (any::<usize>(), 0u8..4, any::<usize>(), 0u8..4, 0u8..4)
            .prop_map(|(od, on, nd, nn, how)| Op::Rename { od, on, nd, nn, how }),
        3 => (any::<usize>(), 0u64..(12 * BS))
            .prop_map(|(ino, size)| Op::Truncate { ino, size }),
        3 => (any::<usize>(), 0u64..12, 1u32..5)
            .prop_map(|(ino, at, len)| Op::Extent { ino, at, len }),
        2 => any::<usize>().prop_map(|ino| Op::DeleteOrphan { ino }),
        1 => Just(Op::Reap),
        2 => Just(Op::Commit),
        1 => Just(Op::FreezeAndClone),
    ]
}

/// An inode number: one of the model's, or one that does not exist.
fn pick(model: &Model, i: usize) -> u64 {
    let n = model.inodes.len() + 1;
    model.inodes.keys().nth(i % n).copied().unwrap_or(9999)
}

/// Mostly an inode of kind `k` (one in eight picks is any inode, or none).
fn pick_kind(model: &Model, i: usize, k: MKind) -> u64 {
    let of: Vec<u64> = model
        .inodes
        .iter()
        .filter(|(_, m)| m.kind == k)
        .map(|(&ino, _)| ino)
        .collect();
    if i & 7 == 0 || of.is_empty() {
        return pick(model, i / 8);
    }
    of[(i / 8) % of.len()]
}

/// Mostly an existing name (directory and name); else any directory and any name.
fn pick_entry(model: &Model, i: usize, name: u8) -> (u64, &'static [u8]) {
    let all: Vec<(u64, &'static [u8])> = model
        .inodes
        .iter()
        .flat_map(|(&d, m)| {
            m.entries.keys().map(move |n| {
                let n = NAMES.iter().find(|x| **x == n.as_slice()).unwrap();
                (d, *n)
            })
        })
        .collect();
    if i & 7 == 0 || all.is_empty() {
        return (
            pick_kind(model, i / 8, MKind::Dir),
            NAMES[usize::from(name)],
        );
    }
    all[(i / 8) % all.len()]
}

/// The image agrees with the model: entries, link counts, sizes, blocks, extents, orphans.
fn compare(vol: &mut Volume<MemDevice>, layer: u64, model: &Model) {
    for (&ino, m) in &model.inodes {
        let r = vol.inode(layer, ino).unwrap();
        assert_eq!(r.nlink, m.nlink, "inode {ino} nlink");
        assert_eq!((r.size, r.blocks), (m.size, m.blocks), "inode {ino} size");
        assert_eq!(
            vol.is_orphan(layer, ino).unwrap(),
            model.orphans.contains(&ino)
        );
        let got: BTreeMap<u64, u32> = extents(vol, layer, ino)
            .into_iter()
            .map(|(k, (_, len))| (k, len))
            .collect();
        assert_eq!(got, m.extents, "inode {ino} extents");
        if m.kind == MKind::Dir {
            let mut names = BTreeMap::new();
            vol.readdir(layer, ino, 0, &mut |e| {
                names.insert(e.name.to_vec(), e.ino);
                true
            })
            .unwrap();
            assert_eq!(names, m.entries, "directory {ino}");
        }
    }
    let layer_inodes = vol.layer(layer).unwrap().inodes_used;
    assert_eq!(layer_inodes, model.inodes.len() as u64);
}

/// Applies `op` to the model, given what the image did; returns the error the model expects.
#[allow(clippy::too_many_lines)]
fn step(vol: &mut Volume<MemDevice>, layer: &mut u64, model: &mut Model, op: &Op) {
    let l = *layer;
    let before = snapshot(vol, l);
    let (got, want): (Result<(), Error>, Result<(), Error>) = match *op {
        Op::Create { dir, name, is_dir } => {
            let d = pick_kind(model, dir, MKind::Dir);
            let name = NAMES[usize::from(name)];
            let attrs = if is_dir { self::dir() } else { file() };
            let want = model.dir(d).and_then(|m| {
                if m.entries.contains_key(name) {
                    Err(Error::Exists)
                } else {
                    Ok(())
                }
            });
            let got = vol.create(l, d, name, &attrs, LATER);
            if let Ok(ino) = got {
                let k = if is_dir { MKind::Dir } else { MKind::File };
                model.inodes.insert(ino, MInode::new(k, d));
                model
                    .inodes
                    .get_mut(&d)
                    .unwrap()
                    .entries
                    .insert(name.to_vec(), ino);
                if is_dir {
                    model.nlink_add(d, 1);
                }
            }
            (got.map(|_| ()), want)
        }
        Op::Link { ino, dir, name } => {
            let i = pick_kind(model, ino, MKind::File);
            let d = pick_kind(model, dir, MKind::Dir);
            let name = NAMES[usize::from(name)];
            let want = match model.inodes.get(&i) {
                None => Err(Error::NotFound),
                Some(m) if m.kind == MKind::Dir => Err(Error::Invalid),
                Some(m) if m.nlink == 0 => Err(Error::NotFound),
                Some(_) => model.dir(d).and_then(|m| {
                    if m.entries.contains_key(name) {
                        Err(Error::Exists)
                    } else {
                        Ok(())
                    }
                }),
            };
            let got = vol.link(l, i, d, name, LATER);
            if got.is_ok() {
                model
                    .inodes
                    .get_mut(&d)
                    .unwrap()
                    .entries
                    .insert(name.to_vec(), i);
                model.nlink_add(i, 1);
            }
            (got, want)
        }
        Op::Unlink { dir, name, keep } => {
            let (d, name) = pick_entry(model, dir, name);
            let want = model.dir(d).and_then(|m| {
                let t = *m.entries.get(name).ok_or(Error::NotFound)?;
                let tm = &model.inodes[&t];
                if tm.kind == MKind::Dir && !tm.entries.is_empty() {
                    return Err(Error::NotEmpty);
                }
                Ok(t)
            });
            let got = if keep {
                vol.unlink_keep(l, d, name, LATER)
            } else {
                vol.unlink(l, d, name, LATER).map(|()| None)
            };
            if let (Ok(orphan), Ok(t)) = (&got, &want) {
                let t = *t;
                model.inodes.get_mut(&d).unwrap().entries.remove(name);
                let is_dir = model.inodes[&t].kind == MKind::Dir;
                if is_dir {
                    model.nlink_add(d, -1);
                }
                model.lose_name(t);
                if model.orphans.contains(&t) {
                    assert_eq!(*orphan, keep.then_some(t));
                    if !keep {
                        model.orphans.remove(&t);
                        model.inodes.remove(&t);
                    }
                } else {
                    assert_eq!(*orphan, None);
                }
            }
            (got.map(|_| ()), want.map(|_| ()))
        }
        Op::Rename {
            od,
            on,
            nd,
            nn,
            how,
        } => {
            let (od, on) = pick_entry(model, od, on);
            let nd = pick_kind(model, nd, MKind::Dir);
            let nn = NAMES[usize::from(nn)];
            let how = [
                RenameMode::Replace,
                RenameMode::NoReplace,
                RenameMode::Exchange,
                RenameMode::Whiteout,
            ][usize::from(how)];
            let exchange = how == RenameMode::Exchange;
            // What the model expects: Ok(Some((src, dst))) for a change, Ok(None) for a no-op.
            let want = (|| -> Result<Option<(u64, Option<u64>)>, Error> {
                model.dir(od)?;
                if od != nd {
                    model.dir(nd)?;
                }
                let src = *model.inodes[&od].entries.get(on).ok_or(Error::NotFound)?;
                let dst = model.inodes[&nd].entries.get(nn).copied();
                match (how, dst) {
                    (RenameMode::NoReplace, Some(_)) => return Err(Error::Exists),
                    (RenameMode::Exchange, None) => return Err(Error::NotFound),
                    _ => {}
                }
                if dst == Some(src) {
                    return Ok(None);
                }
                let sdir = model.inodes[&src].kind == MKind::Dir;
                let tdir = dst.is_some_and(|t| model.inodes[&t].kind == MKind::Dir);
                if let (false, Some(t)) = (exchange, dst) {
                    if sdir && !tdir {
                        return Err(Error::NotDir);
                    }
                    if !sdir && tdir {
                        return Err(Error::IsDir);
                    }
                    if tdir && !model.inodes[&t].entries.is_empty() {
                        return Err(Error::NotEmpty);
                    }
                }
                if od != nd {
                    if sdir && model.is_under(nd, src) {
                        return Err(Error::Invalid);
                    }
                    if exchange && tdir && model.is_under(od, dst.unwrap()) {
                        return Err(Error::Invalid);
                    }
                }
                Ok(Some((src, dst)))
            })();
            let got = vol.rename(l, od, on, nd, nn, how, LATER);
            if let (Ok(r), Ok(w)) = (&got, &want) {
                match *w {
                    None => assert_eq!(*r, RenameResult::default()),
                    Some((src, dst)) => {
                        let sdir = model.inodes[&src].kind == MKind::Dir;
                        let tdir = dst.is_some_and(|t| model.inodes[&t].kind == MKind::Dir);
                        if exchange {
                            let t = dst.unwrap();
                            model
                                .inodes
                                .get_mut(&od)
                                .unwrap()
                                .entries
                                .insert(on.to_vec(), t);
                            model
                                .inodes
                                .get_mut(&nd)
                                .unwrap()
                                .entries
                                .insert(nn.to_vec(), src);
                            if tdir {
                                model.inodes.get_mut(&t).unwrap().parent = od;
                            }
                            if od != nd {
                                if sdir {
                                    model.nlink_add(od, -1);
                                    model.nlink_add(nd, 1);
                                }
                                if tdir {
                                    model.nlink_add(od, 1);
                                    model.nlink_add(nd, -1);
                                }
                            }
                            assert_eq!(*r, RenameResult::default());
                        } else {
                            model.inodes.get_mut(&od).unwrap().entries.remove(on);
                            model
                                .inodes
                                .get_mut(&nd)
                                .unwrap()
                                .entries
                                .insert(nn.to_vec(), src);
                            if sdir && od != nd {
                                model.nlink_add(od, -1);
                                model.nlink_add(nd, 1);
                            }
                            if let Some(t) = dst {
                                if tdir {
                                    model.nlink_add(nd, -1);
                                }
                                model.lose_name(t);
                            }
                            assert_eq!(r.replaced, dst);
                            if how == RenameMode::Whiteout {
                                let w = r.whiteout.unwrap();
                                model.inodes.insert(w, MInode::new(MKind::Chr, od));
                                model
                                    .inodes
                                    .get_mut(&od)
                                    .unwrap()
                                    .entries
                                    .insert(on.to_vec(), w);
                            } else {
                                assert_eq!(r.whiteout, None);
                            }
                        }
                        if sdir {
                            model.inodes.get_mut(&src).unwrap().parent = nd;
                        }
                    }
                }
            }
            (got.map(|_| ()), want.map(|_| ()))
        }
        Op::Truncate { ino, size } => {
            let i = pick_kind(model, ino, MKind::File);
            let want = match model.inodes.get(&i).map(|m| m.kind) {
                None => Err(Error::NotFound),
                Some(MKind::Dir) => Err(Error::IsDir),
                Some(MKind::Chr) => Err(Error::Invalid),
                Some(MKind::File) => Ok(()),
            };
            let attr = SetAttr {
                size: Some(size),
                mtime: Some(LATER),
                ..SetAttr::default()
            };
            let got = vol.set_attr(l, i, &attr);
            if let Ok(r) = got {
                model.truncate(i, size);
                assert_eq!((r.size, r.blocks), (size, model.inodes[&i].blocks));
            }
            (got.map(|_| ()), want)
        }
        Op::Extent { ino, at, len } => {
            // Test set-up, not an operation under test: a new extent where the file has none.
            let i = pick_kind(model, ino, MKind::File);
            match model.inodes.get(&i) {
                Some(m)
                    if m.kind == MKind::File
                        && !m
                            .extents
                            .iter()
                            .any(|(&a, &n)| a < at + u64::from(len) && at < a + u64::from(n)) =>
                {
                    let got = add_extent(vol, l, i, at, len);
                    let m = model.inodes.get_mut(&i).unwrap();
                    m.extents.insert(at, got);
                    m.blocks += u64::from(got);
                    m.size = m.size.max((at + u64::from(got)) * BS);
                }
                _ => {}
            }
            return;
        }
        Op::DeleteOrphan { ino } => {
            let orphans: Vec<u64> = model.orphans.iter().copied().collect();
            let i = if ino & 3 == 0 || orphans.is_empty() {
                pick(model, ino / 4)
            } else {
                orphans[(ino / 4) % orphans.len()]
            };
            let want = if model.orphans.contains(&i) {
                Ok(())
            } else {
                Err(Error::NotFound)
            };
            let got = vol.delete_orphan(l, i);
            if got.is_ok() {
                model.orphans.remove(&i);
                model.inodes.remove(&i);
            }
            (got, want)
        }
        Op::Reap => {
            let n = vol.reap_orphans(l).unwrap();
            assert_eq!(n, model.orphans.len() as u64);
            for o in std::mem::take(&mut model.orphans) {
                model.inodes.remove(&o);
            }
            return;
        }
        Op::Commit => {
            assert_clean(vol);
            return;
        }
        Op::FreezeAndClone => {
            if l < 3 {
                vol.freeze_layer(l).unwrap();
                *layer = vol
                    .create_layer(format!("c{l}").as_bytes(), Some(l), NOW)
                    .unwrap();
            }
            return;
        }
    };
    assert_eq!(got, want, "{op:?}");
    assert!(!vol.is_aborted(), "{op:?}");
    if got.is_err() {
        assert_eq!(snapshot(vol, l), before, "refused {op:?} changed something");
    }
}

fn run(ops: &[Op]) {
    let mut vol = fresh(4096, 11);
    let mut model = Model::default();
    model
        .inodes
        .insert(ROOT_INO, MInode::new(MKind::Dir, ROOT_INO));
    let mut layer = 1;
    for op in ops {
        step(&mut vol, &mut layer, &mut model, op);
        compare(&mut vol, layer, &model);
    }
    assert_clean(&mut vol);
    let reaped = vol.reap_orphans(layer).unwrap();
    assert_eq!(reaped, model.orphans.len() as u64);
    assert_clean(&mut vol);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_namespace_operations_match_the_model(ops in proptest::collection::vec(op(), 1..150)) {
        run(&ops);
    }
}

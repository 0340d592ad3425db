//! Namespace operations in layers, and path-level diffs of a clone against its parent.

use std::collections::BTreeSet;

use lcfs_format::namespace::{NewInode, PathChange, RenameMode, SetAttr};
use lcfs_format::node::Key;
use lcfs_format::records::{self, dirent_offset, kind, mode, DirentRecord, Timespec};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::Error;
use lcfs_format::volume::Volume;
use lcfs_format::ROOT_INO;
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};
const LATER: Timespec = Timespec {
    sec: 1_700_000_100,
    nsec: 0,
};

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

fn clean(vol: Volume<MemDevice>) -> Volume<MemDevice> {
    let dev = vol.into_store();
    let r = fsck::check(dev.clone(), &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "{:?}", r.errors);
    Volume::open(dev).unwrap().0
}

fn diff(vol: &mut Volume<MemDevice>, layer: u64) -> BTreeSet<(PathChange, String)> {
    let mut out = BTreeSet::new();
    vol.diff_paths(layer, &mut |c, p| {
        out.insert((c, String::from_utf8(p.to_vec()).unwrap()));
        true
    })
    .unwrap();
    out
}

#[test]
fn names_links_and_path_diff() {
    let sb = Superblock::new(4096, [2; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let etc = vol.create(1, ROOT_INO, b"etc", &dir(), NOW).unwrap();
    let usr = vol.create(1, ROOT_INO, b"usr", &dir(), NOW).unwrap();
    let bin = vol.create(1, usr, b"bin", &dir(), NOW).unwrap();
    let passwd = vol.create(1, etc, b"passwd", &file(), NOW).unwrap();
    vol.write_inline(1, passwd, b"root:x:0:0::/root:/bin/sh\n", NOW)
        .unwrap();
    let sh = vol.create(1, bin, b"sh", &file(), NOW).unwrap();
    vol.link(1, sh, bin, b"dash", NOW).unwrap();
    let old = vol.create(1, etc, b"old", &dir(), NOW).unwrap();
    assert_eq!(
        vol.lookup_name(1, etc, b"old").unwrap().map(|e| e.ino),
        Some(old)
    );
    let link = NewInode {
        mode: mode::S_IFLNK | 0o777,
        ..NewInode::default()
    };
    let l = vol.create(1, ROOT_INO, b"bin", &link, NOW).unwrap();
    vol.write_inline(1, l, b"usr/bin", NOW).unwrap();
    // Attributes and errors.
    assert_eq!(vol.inode(1, sh).unwrap().nlink, 2);
    assert_eq!(vol.inode(1, usr).unwrap().nlink, 3);
    assert_eq!(vol.inode(1, ROOT_INO).unwrap().nlink, 4);
    assert_eq!(
        vol.create(1, etc, b"passwd", &file(), NOW),
        Err(Error::Exists)
    );
    assert_eq!(vol.unlink(1, usr, b"bin", NOW), Err(Error::NotEmpty));
    assert_eq!(
        vol.lookup_name(1, bin, b"dash").unwrap().map(|e| e.ino),
        Some(sh)
    );
    assert_eq!(vol.lookup_name(1, bin, b"ksh").unwrap(), None);
    assert!(!vol.is_aborted());
    let mut buf = [0u8; 4096];
    let start = vol.path_of(1, sh, &mut buf).unwrap();
    assert_eq!(&buf[start..], b"/usr/bin/sh");
    vol.freeze_layer(1).unwrap();
    assert_eq!(vol.create(1, etc, b"x", &file(), NOW), Err(Error::ReadOnly));
    vol.commit(NOW).unwrap();
    let mut vol = clean(vol);
    assert_eq!(vol.layer(1).unwrap().inodes_used, 8);

    // A clone, changed.
    let c = vol.create_layer(b"container", Some(1), NOW).unwrap();
    assert!(diff(&mut vol, c).is_empty());
    let hosts = vol.create(c, etc, b"hosts", &file(), LATER).unwrap();
    vol.write_inline(c, hosts, b"127.0.0.1 localhost\n", LATER)
        .unwrap();
    vol.write_inline(c, passwd, b"root:x:0:0::/root:/bin/bash\n", LATER)
        .unwrap();
    vol.unlink(c, bin, b"dash", LATER).unwrap();
    vol.unlink(c, etc, b"old", LATER).unwrap();
    let var = vol.create(c, ROOT_INO, b"var", &dir(), LATER).unwrap();
    let log = vol.create(c, var, b"log", &dir(), LATER).unwrap();
    vol.create(c, log, b"messages", &file(), LATER).unwrap();
    let got = diff(&mut vol, c);
    let want: BTreeSet<(PathChange, String)> = [
        (PathChange::Modified, "/"),
        (PathChange::Modified, "/etc"),
        (PathChange::Added, "/etc/hosts"),
        (PathChange::Modified, "/etc/passwd"),
        (PathChange::Deleted, "/etc/old"),
        (PathChange::Modified, "/usr/bin"),
        (PathChange::Deleted, "/usr/bin/dash"),
        (PathChange::Modified, "/usr/bin/sh"),
        (PathChange::Added, "/var"),
        (PathChange::Added, "/var/log"),
        (PathChange::Added, "/var/log/messages"),
    ]
    .into_iter()
    .map(|(c, p)| (c, p.to_string()))
    .collect();
    assert_eq!(got, want);
    // The parent is untouched.
    assert_eq!(vol.inode(1, sh).unwrap().nlink, 2);
    assert_eq!(vol.inode(c, sh).unwrap().nlink, 1);
    assert!(vol.lookup_name(1, etc, b"old").unwrap().is_some());
    // Deleting the last name deletes the inode and its data.
    vol.unlink(c, etc, b"passwd", LATER).unwrap();
    assert_eq!(vol.inode(c, passwd), Err(Error::NotFound));
    assert!(vol.next(c, &Key::new(passwd, 0, 0), |k, _| k.id).unwrap() != Some(passwd));
    vol.commit(LATER).unwrap();
    let mut vol = clean(vol);
    assert!(diff(&mut vol, c).contains(&(PathChange::Deleted, "/etc/passwd".to_string())));
}

#[test]
fn symlink_targets_up_to_path_max() {
    let sb = Superblock::new(4096, [1; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let link = NewInode {
        mode: mode::S_IFLNK | 0o777,
        ..NewInode::default()
    };
    let target = |n: usize| -> Vec<u8> { (0..n).map(|i| b"abcdefg/"[i % 8]).collect() };
    let chunk = records::INLINE_CHUNK;
    let lens = [
        1,
        chunk - 1,
        chunk,
        chunk + 1,
        2 * chunk,
        3 * chunk + 7,
        records::SYMLINK_MAX,
    ];
    let mut links = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        let name = format!("l{i}");
        let l = vol
            .create(1, ROOT_INO, name.as_bytes(), &link, NOW)
            .unwrap();
        vol.write_inline(1, l, &target(n), NOW).unwrap();
        links.push((l, n));
    }
    let l = vol.create(1, ROOT_INO, b"too-long", &link, NOW).unwrap();
    assert_eq!(
        vol.write_inline(1, l, &target(records::SYMLINK_MAX + 1), NOW),
        Err(Error::Invalid)
    );
    // Regular files keep one inline item.
    let f = vol.create(1, ROOT_INO, b"f", &file(), NOW).unwrap();
    assert_eq!(
        vol.write_inline(1, f, &target(chunk + 1), NOW),
        Err(Error::Invalid)
    );
    // A shorter target in place of a long one leaves none of the long one behind.
    let (shrunk, _) = links[links.len() - 1];
    vol.write_inline(1, shrunk, b"short", NOW).unwrap();
    vol.commit(NOW).unwrap();
    let mut vol = clean(vol);
    let mut buf = vec![0u8; records::SYMLINK_MAX];
    for &(l, n) in &links[..links.len() - 1] {
        let got = vol.read_inline(1, l, &mut buf).unwrap();
        assert_eq!(&buf[..got], &target(n)[..], "target of {n} bytes");
        assert_eq!(vol.inode(1, l).unwrap().size, n as u64);
    }
    assert_eq!(vol.read_inline(1, shrunk, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"short");
    for i in 1..records::SYMLINK_CHUNKS {
        let k = Key::new(shrunk, kind::INLINE, i);
        assert_eq!(vol.lookup(1, &k, |_| ()).unwrap(), None, "item {i}");
    }
    // A buffer too small for the target is an error, not a cut target.
    let (l, n) = links[links.len() - 2];
    assert_eq!(
        vol.read_inline(1, l, &mut vec![0u8; n - 1]),
        Err(Error::Invalid)
    );
    // Deleting a long link removes all its items.
    vol.unlink(1, ROOT_INO, b"l5", NOW).unwrap();
    for i in 0..records::SYMLINK_CHUNKS {
        let k = Key::new(l, kind::INLINE, i);
        assert_eq!(vol.lookup(1, &k, |_| ()).unwrap(), None, "item {i}");
    }
    vol.commit(NOW).unwrap();
    let mut vol = clean(vol);
    // fsck sees a target with an item missing.
    let (l, _) = links[4];
    assert!(vol.remove(1, &Key::new(l, kind::INLINE, 1)).unwrap());
    vol.commit(NOW).unwrap();
    let r = fsck::check(vol.into_store(), &mut |_, _, _| {}).unwrap();
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(&format!("inode {l}: symlink size"))),
        "{:?}",
        r.errors
    );
}

#[test]
fn hash_bucket_neighbours_do_not_clash() {
    let sb = Superblock::new(2048, [6; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(2048), sb, Some(b"base"), NOW).unwrap();
    let key = vol.superblock().hash_key;
    let h = records::HashKey(key[0], key[1]).hash(b"target");
    // Pretend two other names already sit in the bucket of "target", at indexes 0 and 2
    // (a hole at 1, as after a removal).
    let other = vol.create(1, ROOT_INO, b"other", &file(), NOW).unwrap();
    for (i, name) in [(0u64, &b"collide0"[..]), (2, b"collide2")] {
        let mut buf = [0u8; 64];
        let n = DirentRecord {
            ino: other,
            dtype: 8,
            name,
        }
        .encode(&mut buf)
        .unwrap();
        let k = Key::new(ROOT_INO, kind::DIRENT, dirent_offset(h, i).unwrap());
        vol.insert(1, &k, &buf[..n]).unwrap();
    }
    assert_eq!(vol.lookup_name(1, ROOT_INO, b"target").unwrap(), None);
    let t = vol.create(1, ROOT_INO, b"target", &file(), NOW).unwrap();
    let e = vol.lookup_name(1, ROOT_INO, b"target").unwrap().unwrap();
    assert_eq!(e.ino, t);
    assert_eq!(e.offset, dirent_offset(h, 1).unwrap(), "takes the hole");
    let t2 = vol.create(1, ROOT_INO, b"t2", &file(), NOW).unwrap();
    assert_eq!(
        vol.lookup_name(1, ROOT_INO, b"t2").unwrap().unwrap().ino,
        t2
    );
    // Removing one name of the bucket leaves the others reachable.
    let k0 = Key::new(ROOT_INO, kind::DIRENT, dirent_offset(h, 0).unwrap());
    assert!(vol.remove(1, &k0).unwrap());
    assert_eq!(
        vol.lookup_name(1, ROOT_INO, b"target")
            .unwrap()
            .unwrap()
            .ino,
        t
    );
    let k2 = Key::new(ROOT_INO, kind::DIRENT, dirent_offset(h, 2).unwrap());
    assert_eq!(vol.lookup(1, &k2, |v| v.len()).unwrap(), Some(18));
    // The next name in this bucket would take the new hole at index 0.
    let again = vol.create(1, ROOT_INO, b"again", &file(), NOW).unwrap();
    assert_eq!(
        vol.lookup_name(1, ROOT_INO, b"again").unwrap().unwrap().ino,
        again
    );
}

#[test]
fn big_directory_lookups_stay_logarithmic() {
    let sb = Superblock::new(16384, [8; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(16384), sb, Some(b"base"), NOW).unwrap();
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    for i in 0..5000 {
        vol.create(1, d, format!("file{i}").as_bytes(), &file(), NOW)
            .unwrap();
    }
    for i in (0..5000).step_by(97) {
        assert!(vol
            .lookup_name(1, d, format!("file{i}").as_bytes())
            .unwrap()
            .is_some());
    }
    assert!(vol.lookup_name(1, d, b"file5000").unwrap().is_none());
    vol.commit(NOW).unwrap();
    clean(vol);
}

#[test]
fn readdir_cookies_survive_changes() {
    let sb = Superblock::new(4096, [3; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    for i in 0..200 {
        vol.create(1, d, format!("f{i}").as_bytes(), &file(), NOW)
            .unwrap();
    }
    let mut all = Vec::new();
    vol.readdir(1, d, 0, &mut |e| {
        all.push((e.offset, e.name.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    // Read the first half, change the directory, resume after the last cookie.
    let cut = all[99].0;
    for (_, name) in all.iter().step_by(3) {
        vol.unlink(1, d, name, NOW).unwrap();
    }
    for i in 200..260 {
        vol.create(1, d, format!("f{i}").as_bytes(), &file(), NOW)
            .unwrap();
    }
    let mut rest = Vec::new();
    vol.readdir(1, d, cut + 1, &mut |e| {
        rest.push((e.offset, e.name.to_vec()));
        true
    })
    .unwrap();
    // Every surviving entry of the second half is seen exactly once, none of the first half.
    for (i, e) in all.iter().enumerate().skip(100) {
        assert_eq!(rest.contains(e), i % 3 != 0, "entry {i}");
    }
    assert!(rest.iter().all(|(off, _)| *off > cut));
    vol.commit(NOW).unwrap();
    clean(vol);
}

#[test]
fn xattrs_inline_and_external_shared_by_clones() {
    let sb = Superblock::new(4096, [4; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let f = vol.create(1, ROOT_INO, b"f", &file(), NOW).unwrap();
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    vol.set_xattr(1, f, b"user.small", b"hello", NOW).unwrap();
    vol.set_xattr(1, f, b"security.big", &big, NOW).unwrap();
    let mut out = vec![0u8; 65536];
    assert_eq!(vol.get_xattr(1, f, b"user.small", &mut out).unwrap(), 5);
    assert_eq!(&out[..5], b"hello");
    assert_eq!(
        vol.get_xattr(1, f, b"security.big", &mut out).unwrap(),
        10_000
    );
    assert_eq!(&out[..10_000], &big[..]);
    assert_eq!(
        vol.get_xattr(1, f, b"user.none", &mut out),
        Err(Error::NotFound)
    );
    assert_eq!(
        vol.set_xattr(1, f, b"user.huge", &vec![0; 65537], NOW),
        Err(Error::Invalid)
    );
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    vol.commit(NOW).unwrap();
    // Changing the clone's copy of the leaf shares the external value blocks.
    vol.set_xattr(c, f, b"user.small", b"changed", LATER)
        .unwrap();
    vol.commit(LATER).unwrap();
    let mut vol = clean(vol);
    assert_eq!(
        vol.get_xattr(c, f, b"security.big", &mut out).unwrap(),
        10_000
    );
    assert_eq!(&out[..10_000], &big[..]);
    assert_eq!(vol.get_xattr(1, f, b"user.small", &mut out).unwrap(), 5);
    vol.remove_xattr(c, f, b"security.big", LATER).unwrap();
    assert_eq!(
        vol.get_xattr(c, f, b"security.big", &mut out),
        Err(Error::NotFound)
    );
    assert_eq!(
        vol.get_xattr(1, f, b"security.big", &mut out).unwrap(),
        10_000
    );
    vol.commit(LATER).unwrap();
    let mut vol = clean(vol);
    // Dropping the parent frees the value blocks.
    let before = vol.superblock().free_blocks;
    vol.remove_layer(c).unwrap();
    vol.remove_layer(1).unwrap();
    assert_eq!(vol.reclaim(u32::MAX).unwrap(), 0);
    vol.commit(LATER).unwrap();
    assert!(vol.superblock().free_blocks >= before + 3);
    clean(vol);
}

/// Namespace damage written with valid checksums (through the item API): fsck must name it, in a
/// layer checked whole and in a clone checked through its diff.
#[test]
fn fsck_finds_namespace_damage() {
    let build = || {
        let sb = Superblock::new(4096, [5; 16], 1_700_000_000);
        let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
        let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
        let f = vol.create(1, d, b"f", &file(), NOW).unwrap();
        vol.link(1, f, d, b"g", NOW).unwrap();
        vol.freeze_layer(1).unwrap();
        let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
        vol.create(c, d, b"h", &file(), LATER).unwrap();
        (vol, d, f, c)
    };
    let errors = |vol: Volume<MemDevice>| {
        let mut v = vol;
        v.commit(LATER).unwrap();
        fsck::check(v.into_store(), &mut |_, _, _| {})
            .unwrap()
            .errors
    };
    let (vol, ..) = build();
    assert!(errors(vol).is_empty());

    for layer_is_clone in [false, true] {
        // An entry to a missing inode.
        let (mut vol, d, _, c) = build();
        let layer = if layer_is_clone { c } else { 1 };
        if !layer_is_clone {
            // Damage the base while it is writable: rebuild without freezing.
            vol = {
                let sb = Superblock::new(4096, [5; 16], 1_700_000_000);
                let mut v = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
                v.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
                v
            };
        }
        let h = records::HashKey(vol.superblock().hash_key[0], vol.superblock().hash_key[1])
            .hash(b"ghost");
        let mut buf = [0u8; 64];
        let n = DirentRecord {
            ino: 999,
            dtype: 8,
            name: b"ghost",
        }
        .encode(&mut buf)
        .unwrap();
        let dir_ino = if layer_is_clone { d } else { ROOT_INO };
        vol.insert(
            layer,
            &Key::new(dir_ino, kind::DIRENT, dirent_offset(h, 0).unwrap()),
            &buf[..n],
        )
        .unwrap();
        let e = errors(vol);
        assert!(
            e.iter()
                .any(|m| m.contains("\"ghost\"") && m.contains("missing inode 999")),
            "clone {layer_is_clone}: {e:?}"
        );
    }

    // A wrong link count, in the clone.
    let (mut vol, _, f, c) = build();
    let mut r = vol.inode(c, f).unwrap();
    r.nlink = 5;
    let mut buf = [0u8; 128];
    r.encode(&mut buf).unwrap();
    vol.insert(c, &Key::new(f, kind::INODE, 0), &buf).unwrap();
    let e = errors(vol);
    assert!(
        e.iter()
            .any(|m| m.contains(&format!("inode {f}: link count 5, expected 2"))),
        "{e:?}"
    );

    // A missing back reference, in the clone: the inode loses its names.
    let (mut vol, d, f, c) = build();
    assert!(vol.remove(c, &Key::new(f, kind::LINK, d)).unwrap());
    let e = errors(vol);
    assert!(
        e.iter()
            .any(|m| m.contains(&format!("inode {f} has no name"))),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("has no back reference")),
        "{e:?}"
    );

    // Items of an inode whose record is gone.
    let (mut vol, _, f, c) = build();
    assert!(vol.remove(c, &Key::new(f, kind::INODE, 0)).unwrap());
    let e = errors(vol);
    assert!(
        e.iter().any(|m| m.contains(&format!("items of inode {f}"))),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains(&format!("missing inode {f}"))),
        "{e:?}"
    );
}

/// A store whose `fail_at`-th read from now fails with an I/O error.
struct Flaky {
    dev: MemDevice,
    reads: u64,
    fail_at: u64,
}

impl lcfs_format::tree::BlockStore for Flaky {
    type Buf = Vec<u8>;
    fn alloc_buf(&mut self) -> Result<Vec<u8>, Error> {
        self.dev.alloc_buf()
    }
    fn read(&mut self, b: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.reads += 1;
        if self.reads == self.fail_at {
            return Err(Error::Io);
        }
        self.dev.read(b, buf)
    }
    fn write(&mut self, b: u64, buf: &Vec<u8>) -> Result<(), Error> {
        self.dev.write(b, buf)
    }
    fn total_blocks(&self) -> u64 {
        self.dev.total_blocks()
    }
}

impl lcfs_format::volume::Device for Flaky {
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// An I/O error at any read inside a namespace operation either refuses it before any change or
/// aborts the transaction: a commit can never write half an operation.
#[test]
fn io_error_mid_operation_never_commits_half_of_it() {
    let sb = Superblock::new(2048, [7; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(2048), sb, Some(b"base"), NOW).unwrap();
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    let f = vol.create(1, d, b"f", &file(), NOW).unwrap();
    // A second directory with a subdirectory and a file to replace, and data to truncate.
    let e = vol.create(1, ROOT_INO, b"e", &dir(), NOW).unwrap();
    vol.create(1, e, b"sub", &dir(), NOW).unwrap();
    let g = vol.create(1, e, b"g", &file(), NOW).unwrap();
    vol.link(1, g, d, b"g2", NOW).unwrap();
    for (at, len) in [(0u64, 3u32), (5, 4), (12, 2)] {
        let (b, got) = vol.alloc_data(len).unwrap();
        let mut v = [0u8; 16];
        records::ExtentRecord {
            disk_block: b,
            len: got,
            flags: 0,
        }
        .encode(&mut v)
        .unwrap();
        vol.insert(1, &Key::new(f, kind::EXTENT, at), &v).unwrap();
    }
    let mut r = vol.inode(1, f).unwrap();
    (r.size, r.blocks) = (14 * 4096, 9);
    let mut buf = [0u8; 128];
    r.encode(&mut buf).unwrap();
    vol.insert(1, &Key::new(f, kind::INODE, 0), &buf).unwrap();
    let o = vol.create(1, ROOT_INO, b"o", &file(), NOW).unwrap();
    vol.set_xattr(1, o, b"user.x", &[7; 9000], NOW).unwrap();
    vol.unlink_keep(1, ROOT_INO, b"o", NOW).unwrap();
    vol.commit(NOW).unwrap();
    let base = vol.into_store();
    type Op = Box<dyn Fn(&mut Volume<Flaky>) -> Result<(), Error>>;
    let rename = move |from: u64, old: &'static [u8], to: u64, new: &'static [u8], how| -> Op {
        Box::new(move |v| v.rename(1, from, old, to, new, how, LATER).map(|_| ()))
    };
    let size = |n: u64| SetAttr {
        size: Some(n),
        mtime: Some(LATER),
        ..SetAttr::default()
    };
    let ops: Vec<(&str, Op)> = vec![
        (
            "create",
            Box::new(move |v| v.create(1, d, b"g", &file(), LATER).map(|_| ())),
        ),
        ("link", Box::new(move |v| v.link(1, f, d, b"h", LATER))),
        ("unlink", Box::new(move |v| v.unlink(1, d, b"f", LATER))),
        (
            "unlink_keep",
            Box::new(move |v| v.unlink_keep(1, d, b"f", LATER).map(|_| ())),
        ),
        (
            "inline",
            Box::new(move |v| v.write_inline(1, f, b"data", LATER)),
        ),
        (
            "xattr",
            Box::new(move |v| v.set_xattr(1, f, b"user.x", &[7; 9000], LATER)),
        ),
        (
            "rename",
            rename(d, b"f", ROOT_INO, b"moved", RenameMode::Replace),
        ),
        (
            "rename dir",
            rename(e, b"sub", d, b"sub", RenameMode::NoReplace),
        ),
        ("rename over", rename(d, b"f", e, b"g", RenameMode::Replace)),
        (
            "rename over last name",
            rename(e, b"sub", ROOT_INO, b"o2", RenameMode::Whiteout),
        ),
        ("exchange", rename(d, b"f", e, b"sub", RenameMode::Exchange)),
        ("whiteout", rename(d, b"g2", e, b"g", RenameMode::Whiteout)),
        (
            "set_attr",
            Box::new(move |v| {
                let a = SetAttr {
                    mode: Some(0o600),
                    uid: Some(5),
                    ctime: Some(LATER),
                    ..SetAttr::default()
                };
                v.set_attr(1, f, &a).map(|_| ())
            }),
        ),
        (
            "truncate",
            Box::new(move |v| v.set_attr(1, f, &size(6 * 4096 + 1)).map(|_| ())),
        ),
        (
            "truncate to 0",
            Box::new(move |v| v.set_attr(1, f, &size(0)).map(|_| ())),
        ),
        ("delete_orphan", Box::new(move |v| v.delete_orphan(1, o))),
        (
            "reap_orphans",
            Box::new(move |v| v.reap_orphans(1).map(|_| ())),
        ),
    ];
    for (what, op) in ops {
        let mut failures = 0;
        for fail_at in 1..400 {
            let store = Flaky {
                dev: base.clone(),
                reads: 0,
                fail_at: u64::MAX,
            };
            let mut vol = Volume::open(store).unwrap().0;
            vol.store().reads = 0;
            vol.store().fail_at = fail_at;
            let r = op(&mut vol);
            if r.is_ok() {
                break;
            }
            failures += 1;
            vol.store().fail_at = u64::MAX;
            match vol.commit(LATER) {
                Err(Error::Aborted) => assert!(vol.is_aborted()),
                Ok(()) => {
                    let r = fsck::check(vol.into_store().dev, &mut |_, _, _| {}).unwrap();
                    assert!(
                        r.is_clean(),
                        "{what}, read {fail_at} failed: {:?}",
                        r.errors
                    );
                }
                Err(e) => panic!("{what}: commit: {e:?}"),
            }
        }
        assert!(failures > 2, "{what}: only {failures} failure points");
    }
}

/// Every change of a path diff, each walk resumed from the cursor after every change, as
/// (change, type, path), in the walk's order.
fn diff_resumed(
    vol: &mut Volume<MemDevice>,
    layer: u64,
    base: Option<u64>,
) -> Vec<(PathChange, u8, String)> {
    use lcfs_format::namespace::PathCursor;
    let mut out = Vec::new();
    let mut cursor = PathCursor::START;
    loop {
        let mut took = false;
        let next = vol
            .diff_paths_from(layer, base, cursor, &mut |d| {
                if took {
                    return false;
                }
                took = true;
                out.push((
                    d.change,
                    d.dtype,
                    String::from_utf8(d.path.to_vec()).unwrap(),
                ));
                true
            })
            .unwrap();
        match next {
            Some(c) => cursor = c,
            None => return out,
        }
        assert!(out.len() < 1000, "the diff does not end");
    }
}

#[test]
fn path_diffs_resume_and_reach_ancestors() {
    let sb = Superblock::new(4096, [2; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let etc = vol.create(1, ROOT_INO, b"etc", &dir(), NOW).unwrap();
    let mut files = Vec::new();
    for i in 0..20 {
        files.push(
            vol.create(1, etc, format!("f{i}").as_bytes(), &file(), NOW)
                .unwrap(),
        );
    }
    vol.freeze_layer(1).unwrap();
    let c1 = vol.create_layer(b"c1", Some(1), NOW).unwrap();
    vol.create(c1, ROOT_INO, b"new1", &file(), NOW).unwrap();
    vol.unlink(c1, etc, b"f3", NOW).unwrap();
    // Several items of one inode change: it is one modification.
    let attr = SetAttr {
        uid: Some(7),
        mtime: Some(LATER),
        ..SetAttr::default()
    };
    vol.set_attr(c1, files[5], &attr).unwrap();
    vol.set_xattr(c1, files[5], b"user.a", b"1", NOW).unwrap();
    vol.write_inline(c1, files[5], b"contents", LATER).unwrap();
    vol.freeze_layer(c1).unwrap();
    let c2 = vol.create_layer(b"c2", Some(c1), NOW).unwrap();
    vol.create(c2, etc, b"sub", &dir(), NOW).unwrap();
    vol.unlink(c2, etc, b"f7", NOW).unwrap();
    // A directory whose record, entries and xattrs change: the walk meets its record, then
    // entries (reported as names), then its xattr, which must not report it a second time
    // after a resumption at an entry.
    vol.set_xattr(c2, etc, b"user.d", b"x", NOW).unwrap();
    let reg = 8u8; // DT_REG
    let d = 4u8; // DT_DIR
    let c1_diff = diff_resumed(&mut vol, c1, None);
    let mut sorted: Vec<_> = c1_diff.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            (PathChange::Added, reg, "/new1".into()),
            (PathChange::Modified, reg, "/etc/f5".into()),
            (PathChange::Deleted, reg, "/etc/f3".into()),
        ]
    );
    // Resumed one change at a time, the same changes as one walk.
    let whole: BTreeSet<_> = diff(&mut vol, c1);
    assert_eq!(whole.len(), c1_diff.len());
    // Against the parent and against the grandparent.
    let mut to_parent = diff_resumed(&mut vol, c2, None);
    to_parent.sort();
    assert_eq!(
        to_parent,
        vec![
            (PathChange::Added, d, "/etc/sub".into()),
            // A new subdirectory: another link.
            (PathChange::Modified, d, "/etc".into()),
            (PathChange::Deleted, reg, "/etc/f7".into()),
        ]
    );
    assert_eq!(to_parent, {
        let mut v = diff_resumed(&mut vol, c2, Some(c1));
        v.sort();
        v
    });
    let mut to_base = diff_resumed(&mut vol, c2, Some(1));
    to_base.sort();
    let mut want: Vec<(PathChange, u8, String)> = vec![
        (PathChange::Added, reg, "/new1".into()),
        (PathChange::Added, d, "/etc/sub".into()),
        (PathChange::Modified, d, "/etc".into()),
        (PathChange::Modified, reg, "/etc/f5".into()),
        (PathChange::Deleted, reg, "/etc/f3".into()),
        (PathChange::Deleted, reg, "/etc/f7".into()),
    ];
    want.sort();
    assert_eq!(to_base, want);
    // Only ancestors can be a base.
    let other = vol.create_layer(b"other", Some(1), NOW).unwrap();
    for bad in [other, c2, 999] {
        let r = vol.diff_paths_from(
            c2,
            Some(bad),
            lcfs_format::namespace::PathCursor::START,
            &mut |_| true,
        );
        assert!(r.is_err(), "base {bad} accepted");
    }
    clean(vol);
}

/// An unnamed file (`O_TMPFILE`) is an orphan from the start: a crash leaves nothing of it
/// (`reap_orphans`), a link gives it a name and takes it out of the orphan index, and only
/// regular files can be made so.
#[test]
fn unnamed_files_are_orphans_until_linked() {
    let sb = Superblock::new(4096, [3; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    let (kept, rec) = vol.create_unnamed(1, d, &file(), NOW).unwrap();
    assert_eq!(rec.nlink, 0);
    assert!(vol.is_orphan(1, kept).unwrap());
    vol.write_inline(1, kept, b"kept", NOW).unwrap();
    let (lost, _) = vol.create_unnamed(1, d, &file(), NOW).unwrap();
    vol.write_inline(1, lost, b"lost", NOW).unwrap();
    assert_eq!(
        vol.create_unnamed(1, d, &dir(), NOW),
        Err(Error::Invalid),
        "an unnamed directory"
    );
    assert_eq!(
        vol.create_unnamed(1, kept, &file(), NOW),
        Err(Error::NotDir),
        "in a file"
    );
    // `link` names no orphan.
    assert_eq!(vol.link(1, kept, d, b"named", LATER), Err(Error::NotFound));
    vol.name_unnamed(1, kept, d, b"named", LATER).unwrap();
    assert!(!vol.is_orphan(1, kept).unwrap());
    assert_eq!(vol.inode(1, kept).unwrap().nlink, 1);
    assert_eq!(
        vol.lookup_name(1, d, b"named").unwrap().map(|e| e.ino),
        Some(kept)
    );
    // A second name is an ordinary link.
    vol.link(1, kept, ROOT_INO, b"again", LATER).unwrap();
    assert_eq!(vol.inode(1, kept).unwrap().nlink, 2);
    vol.commit(NOW).unwrap();
    // As after a crash: the unnamed file still open is reaped at the next mount.
    let mut vol = clean(vol);
    assert_eq!(vol.reap_orphans(1).unwrap(), 1);
    assert_eq!(vol.inode(1, lost), Err(Error::NotFound));
    let mut got = [0u8; 16];
    let n = vol.read_inline(1, kept, &mut got).unwrap();
    assert_eq!(&got[..n], b"kept");
    vol.commit(NOW).unwrap();
    clean(vol);
}

#[test]
fn inode_flags_set_the_feature_bit_in_their_commit_and_follow_clones() {
    use lcfs_format::records::inode_flags;
    use lcfs_format::superblock::INCOMPAT_INODE_FLAGS;
    // A filesystem without the feature (as one made before it existed).
    let sb = Superblock::new(4096, [9; 16], 1_700_000_000);
    assert_eq!(sb.incompat, 0);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    let f = vol.create(1, ROOT_INO, b"f", &file(), NOW).unwrap();
    let d = vol.create(1, ROOT_INO, b"d", &dir(), NOW).unwrap();
    // Clearing flags nobody set needs no feature.
    let rec = vol.set_flags(1, f, 0, LATER).unwrap();
    assert_eq!((rec.flags, rec.ctime), (0, LATER));
    assert_eq!(vol.superblock().incompat, 0);
    vol.commit(LATER).unwrap();
    let mut vol = clean(vol);
    assert_eq!(vol.superblock().incompat, 0);
    // Unknown bits and bad times are refused before any change.
    assert_eq!(vol.set_flags(1, f, 1 << 4, LATER), Err(Error::Invalid));
    let bad = Timespec {
        sec: 1,
        nsec: 1_000_000_000,
    };
    assert_eq!(vol.set_flags(1, f, 1, bad), Err(Error::Invalid));
    assert_eq!(vol.set_flags(1, 999, 1, LATER), Err(Error::NotFound));
    assert!(!vol.is_aborted());
    assert_eq!(vol.superblock().incompat, 0);
    // The first flag sets the feature, and the commit writes both.
    let both = inode_flags::IMMUTABLE | inode_flags::NODUMP;
    let rec = vol.set_flags(1, f, both, LATER).unwrap();
    assert_eq!(rec.flags, both);
    assert_eq!(vol.inode(1, f).unwrap(), rec);
    assert_eq!(vol.superblock().incompat, INCOMPAT_INODE_FLAGS);
    vol.set_flags(1, d, inode_flags::APPEND | inode_flags::NOATIME, LATER)
        .unwrap();
    vol.commit(LATER).unwrap();
    let mut vol = clean(vol);
    assert_eq!(vol.superblock().incompat, INCOMPAT_INODE_FLAGS);
    assert_eq!(vol.inode(1, f).unwrap().flags, both);
    // A flag change is a change of the inode for diffs; a clone keeps the flags, and changing
    // them in the clone leaves the parent's.
    vol.freeze_layer(1).unwrap();
    assert_eq!(vol.set_flags(1, f, 0, LATER), Err(Error::ReadOnly));
    let c = vol.create_layer(b"clone", Some(1), LATER).unwrap();
    assert_eq!(vol.inode(c, f).unwrap().flags, both);
    assert_eq!(
        vol.inode(c, d).unwrap().flags,
        inode_flags::APPEND | inode_flags::NOATIME
    );
    vol.set_flags(c, f, inode_flags::NODUMP, LATER).unwrap();
    assert_eq!(vol.inode(1, f).unwrap().flags, both);
    assert!(diff(&mut vol, c).contains(&(PathChange::Modified, "/f".to_string())));
    // Clearing every flag keeps the feature: older records may still carry some.
    vol.set_flags(c, f, 0, LATER).unwrap();
    vol.commit(LATER).unwrap();
    let vol = clean(vol);
    assert_eq!(vol.superblock().incompat, INCOMPAT_INODE_FLAGS);
}

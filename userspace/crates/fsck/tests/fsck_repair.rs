//! `fsck.lcfs` repairs: each kind of damage made on purpose in a populated image (the one the
//! corruption suite starts from), then `-n`, `-p` and `-y` run on it. A repair exits 1 and leaves
//! an image `-n` finds clean with every file as it was; `-p` repairs only the safe kinds and
//! exits 4 without writing for the others; `-n` never writes.

#![allow(clippy::cast_possible_truncation)] // Small block numbers and sizes.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use lcfs_format::data::MapKind;
use lcfs_format::namespace::orphan_key;
use lcfs_format::node::Key;
use lcfs_format::records::{self, kind, mode, DirentRecord, HashKey, InodeRecord, Timespec};
use lcfs_format::superblock::{Superblock, SUPERBLOCK_SIZE};
use lcfs_format::tree::BlockStore;
use lcfs_format::volume::{inode_key, Volume};
use lcfs_format::{BLOCK_SIZE, ROOT_INO};
use lcfs_image::store::MemDevice;

const BLOCK: usize = BLOCK_SIZE as usize;
const NOW: Timespec = Timespec {
    sec: 1_700_001_000,
    nsec: 0,
};

/// The populated image: layers `default` (1, frozen), `work` (2, its clone), `scratch` (3), and
/// the chain `chain1` (4) <- `chain2` (5), both frozen, <- `chain3` (6).
fn base() -> &'static [u8] {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| lcfs_corrupt::base_image(2048).unwrap())
}

fn flatten(dev: &MemDevice) -> Vec<u8> {
    let mut img = vec![0u8; dev.total as usize * BLOCK];
    for (&b, data) in &dev.blocks {
        img[b as usize * BLOCK..(b as usize + 1) * BLOCK].copy_from_slice(data);
    }
    img
}

/// `base()` with damage made through the core (which does not check what it is given) and
/// committed.
fn damaged(f: impl FnOnce(&mut Volume<MemDevice>)) -> Vec<u8> {
    let (mut vol, _) = Volume::open(lcfs_corrupt::device(base())).unwrap();
    f(&mut vol);
    vol.commit(NOW).unwrap();
    flatten(&vol.into_store())
}

/// Runs fsck.lcfs with `opt` on a file holding `img`: exit code, output, the file after.
fn fsck(opt: &str, img: &[u8]) -> (i32, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    std::fs::write(&path, img).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-lcfs"))
        .arg(opt)
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap(),
        text,
        std::fs::read(&path).unwrap(),
    )
}

/// Every name of every layer with its mode, owner, size and contents (read through the core),
/// `/lost+found` left out.
fn digest(img: &[u8]) -> BTreeMap<String, String> {
    let (mut vol, _) = Volume::open(lcfs_corrupt::device(img)).unwrap();
    let mut layers = Vec::new();
    vol.for_each_layer(&mut |l| {
        layers.push((l.id, String::from_utf8_lossy(l.name()).into_owned()));
        true
    })
    .unwrap();
    let mut out = BTreeMap::new();
    for (id, lname) in layers {
        let mut stack = vec![(ROOT_INO, String::new())];
        while let Some((dir, path)) = stack.pop() {
            let mut ents = Vec::new();
            vol.readdir(id, dir, 0, &mut |e| {
                ents.push((e.name.to_vec(), e.ino, e.dtype));
                true
            })
            .unwrap();
            for (name, ino, dtype) in ents {
                let p = format!("{path}/{}", String::from_utf8_lossy(&name));
                if p == "/lost+found" {
                    continue;
                }
                let rec = vol.inode(id, ino).unwrap();
                let mut d = format!("{:o} {}:{} {}", rec.mode, rec.uid, rec.gid, rec.size);
                if rec.is_regular() {
                    let blocks = rec.size.div_ceil(u64::from(BLOCK_SIZE));
                    let mut fb = 0;
                    while fb < blocks {
                        let m = vol.map_read(id, ino, fb, blocks - fb).unwrap();
                        if let MapKind::Written { disk_block } = m.kind {
                            for i in 0..m.len {
                                let mut buf = vec![0u8; BLOCK];
                                vol.store().read(disk_block + i, &mut buf).unwrap();
                                let sum: u64 = buf.iter().map(|&b| u64::from(b)).sum();
                                d.push_str(&format!(" {}:{sum}", fb + i));
                            }
                        }
                        fb += m.len;
                    }
                }
                if dtype == 4 {
                    stack.push((ino, p.clone()));
                }
                out.insert(format!("{lname}:{p}"), d);
            }
        }
    }
    out
}

/// Inode number of `path` in `layer`.
fn ino_of(vol: &mut Volume<MemDevice>, layer: u64, path: &str) -> u64 {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = vol
            .lookup_name(layer, ino, part.as_bytes())
            .unwrap()
            .unwrap()
            .ino;
    }
    ino
}

fn put_inode(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, rec: &InodeRecord) {
    let mut buf = [0u8; records::INODE_RECORD_SIZE];
    rec.encode(&mut buf).unwrap();
    vol.insert(layer, &inode_key(ino), &buf).unwrap();
}

/// Whether the kind of damage is one `-p` repairs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Preen {
    Repairs,
    Refuses,
}

/// The whole protocol for one damaged image; `expect` is the digest the repair must give back.
fn repairs(name: &str, img: &[u8], preen: Preen, expect: &BTreeMap<String, String>, says: &str) {
    let (code, out, after) = fsck("-n", img);
    assert_eq!(code, 4, "{name}: -n: {out}");
    assert_eq!(after, img, "{name}: -n wrote");
    let (code, out, after) = fsck("-p", img);
    match preen {
        Preen::Repairs => {
            assert_eq!(code, 1, "{name}: -p: {out}");
            let (code, out2, _) = fsck("-n", &after);
            assert_eq!(code, 0, "{name}: -n after -p: {out2}\n-p said: {out}");
        }
        Preen::Refuses => {
            assert_eq!(code, 4, "{name}: -p: {out}");
            assert!(
                out.contains("UNEXPECTED INCONSISTENCY"),
                "{name}: -p: {out}"
            );
            assert_eq!(after, img, "{name}: -p wrote");
        }
    }
    let (code, out, after) = fsck("-y", img);
    assert_eq!(code, 1, "{name}: -y: {out}");
    assert!(out.contains(says), "{name}: -y: {out}");
    assert!(
        out.contains("found and corrected; clean"),
        "{name}: -y: {out}"
    );
    let (code, out2, again) = fsck("-n", &after);
    assert_eq!(code, 0, "{name}: -n after -y: {out2}\n-y said: {out}");
    assert_eq!(again, after);
    assert_eq!(&digest(&after), expect, "{name}: files differ after -y");
    // Nothing more to repair.
    assert_eq!(fsck("-y", &after).0, 0, "{name}: second -y");
}

#[test]
fn base_is_clean() {
    let (code, out, _) = fsck("-n", base());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn reference_counts_and_free_count_are_rebuilt() {
    let want = digest(base());
    // A tree node with one reference too many, and a block allocated and never used (leaked).
    let img = damaged(|vol| {
        let root = vol.layer(3).unwrap().root;
        vol.add_block_refs(root, 1).unwrap();
        vol.alloc_data(2).unwrap();
    });
    repairs(
        "refcounts",
        &img,
        Preen::Repairs,
        &want,
        "reference-count map rebuilt",
    );
    // The superblock's free count alone (the map is right).
    let mut img = base().to_vec();
    let total = (img.len() / BLOCK) as u64;
    let (vol, _) = Volume::open(lcfs_corrupt::device(&img)).unwrap();
    let slot = vol.superblock().slot() as usize;
    let mut sb = Superblock::decode(&img[slot * BLOCK..(slot + 1) * BLOCK], total).unwrap();
    sb.free_blocks -= 3;
    sb.encode(&mut img[slot * BLOCK..slot * BLOCK + SUPERBLOCK_SIZE])
        .unwrap();
    let (_, out, _) = fsck("-n", &img);
    assert!(out.contains("free blocks: the superblock says"), "{out}");
    repairs(
        "free count",
        &img,
        Preen::Repairs,
        &want,
        "reference-count map rebuilt",
    );
}

#[test]
fn layer_counters_are_recounted() {
    let want = digest(base());
    let img = damaged(|vol| {
        let mut l = vol.layer(2).unwrap();
        l.inodes_used += 5;
        l.bytes_used -= 4096;
        l.own_bytes += 8192;
        vol.set_layer_record(&l).unwrap();
        let mut l = vol.layer(1).unwrap();
        l.children = 3;
        vol.set_layer_record(&l).unwrap();
    });
    let (_, out, _) = fsck("-n", &img);
    assert!(out.contains("layer 2: usage records"), "{out}");
    assert!(out.contains("layer 1: records 3 children"), "{out}");
    repairs(
        "counters",
        &img,
        Preen::Repairs,
        &want,
        "layer 1: child count 3 set to 1",
    );
}

#[test]
fn link_counts_are_recounted() {
    let want = digest(base());
    let img = damaged(|vol| {
        let s = ino_of(vol, 3, "/s");
        let mut rec = vol.inode(3, s).unwrap();
        rec.nlink = 5;
        put_inode(vol, 3, s, &rec);
        // A directory's count (2 and one per subdirectory).
        let data = ino_of(vol, 2, "/data");
        let mut rec = vol.inode(2, data).unwrap();
        rec.nlink += 1;
        put_inode(vol, 2, data, &rec);
    });
    let (_, out, _) = fsck("-n", &img);
    assert!(out.contains("link count 5, expected 1"), "{out}");
    repairs(
        "link counts",
        &img,
        Preen::Repairs,
        &want,
        "link count 5 set to 1",
    );
}

#[test]
fn entries_to_missing_inodes_are_removed() {
    let want = digest(base());
    let img = damaged(|vol| {
        let data = ino_of(vol, 2, "/data");
        let hash = HashKey(vol.superblock().hash_key[0], vol.superblock().hash_key[1]);
        let off = records::dirent_offset(hash.hash(b"ghost"), 0).unwrap();
        let mut buf = [0u8; 64];
        let n = DirentRecord {
            ino: 999,
            dtype: 4,
            name: b"ghost",
        }
        .encode(&mut buf)
        .unwrap();
        vol.insert(2, &Key::new(data, kind::DIRENT, off), &buf[..n])
            .unwrap();
    });
    let (_, out, _) = fsck("-n", &img);
    assert!(out.contains("points to missing inode 999"), "{out}");
    repairs(
        "dangling entry",
        &img,
        Preen::Refuses,
        &want,
        "entry \"ghost\" of directory",
    );
}

#[test]
fn unnamed_inodes_go_to_lost_and_found_or_the_orphan_index() {
    let want = digest(base());
    let mut inos = (0, 0);
    let img = damaged(|vol| {
        let next = vol.layer(3).unwrap().next_ino;
        let rec = InodeRecord {
            mode: mode::S_IFREG | 0o640,
            nlink: 1,
            uid: 7,
            generation: next,
            ..InodeRecord::default()
        };
        put_inode(vol, 3, next, &rec);
        let rec = InodeRecord {
            nlink: 0,
            generation: next + 1,
            ..rec
        };
        put_inode(vol, 3, next + 1, &rec);
        inos = (next, next + 1);
    });
    let (_, out, _) = fsck("-n", &img);
    assert!(
        out.contains(&format!("inode {} has no name", inos.0)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "inode {}: link count 0 but no orphan item",
            inos.1
        )),
        "{out}"
    );
    repairs(
        "unnamed",
        &img,
        Preen::Refuses,
        &want,
        &format!("is /lost+found/#{}", inos.0),
    );
    let (_, _, after) = fsck("-y", &img);
    let (mut vol, _) = Volume::open(lcfs_corrupt::device(&after)).unwrap();
    let lf = vol
        .lookup_name(3, ROOT_INO, b"lost+found")
        .unwrap()
        .unwrap();
    assert_eq!(vol.inode(3, lf.ino).unwrap().mode, mode::S_IFDIR | 0o700);
    let e = vol
        .lookup_name(3, lf.ino, format!("#{}", inos.0).as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(e.ino, inos.0);
    assert_eq!(vol.inode(3, inos.0).unwrap().uid, 7);
    assert!(vol.is_orphan(3, inos.1).unwrap());
    assert!(vol
        .lookup(3, &orphan_key(inos.1), |_| ())
        .unwrap()
        .is_some());
}

#[test]
fn damaged_newest_commit_goes_back_to_the_one_before() {
    let want = digest(base());
    // A last commit adds a layer; then its new layer-tree root (a block only it uses) is lost.
    let (mut vol, _) = Volume::open(lcfs_corrupt::device(base())).unwrap();
    let before = vol.superblock().generation;
    let old_root = vol.superblock().layer_root;
    let id = vol.create_layer(b"extra", None, NOW).unwrap();
    vol.create(
        id,
        ROOT_INO,
        b"f",
        &lcfs_format::namespace::NewInode {
            mode: mode::S_IFREG | 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
        },
        NOW,
    )
    .unwrap();
    vol.commit(NOW).unwrap();
    let root = vol.superblock().layer_root;
    let extra_root = vol.layer(id).unwrap().root;
    assert_ne!(root, old_root);
    let newest = flatten(&vol.into_store());
    // The layer tree lost, then only the new layer's tree.
    for (what, block) in [("layer tree", root), ("new layer", extra_root)] {
        let mut img = newest.clone();
        img[block as usize * BLOCK..(block as usize + 1) * BLOCK].fill(0);
        repairs(
            what,
            &img,
            Preen::Refuses,
            &want,
            &format!("went back from generation {} (7 layers)", before + 1),
        );
        let (_, out, after) = fsck("-y", &img);
        if what == "new layer" {
            assert!(out.contains("layers lost: \"extra\""), "{out}");
        }
        let (vol, _) = Volume::open(lcfs_corrupt::device(&after)).unwrap();
        assert_eq!(vol.superblock().layer_count, 6);
        assert_eq!(vol.superblock().generation, before + 1);
    }
}

#[test]
fn damage_no_repair_covers_is_left_as_it_is() {
    // A node both commits use: no earlier commit is sound.
    let (mut vol, _) = Volume::open(lcfs_corrupt::device(base())).unwrap();
    let root = vol.layer(1).unwrap().root;
    let mut img = base().to_vec();
    img[root as usize * BLOCK + 100] ^= 0xff;
    for opt in ["-y", "-p"] {
        let (code, out, after) = fsck(opt, &img);
        assert_eq!(code, 4, "{opt}: {out}");
        assert_eq!(after, img, "{opt} wrote");
    }
    // Bytes in its unused space, under a valid checksum: damage of the node, which no repair
    // rewrites.
    let mut img = base().to_vec();
    let at = root as usize * BLOCK;
    let unused = lcfs_format::node::unused(&img[at..at + BLOCK]).unwrap();
    img[at + unused.start + 3] = 0x5a;
    lcfs_format::node::seal(&mut img[at..at + BLOCK]).unwrap();
    for opt in ["-n", "-y", "-p"] {
        let (code, out, after) = fsck(opt, &img);
        assert_eq!(code, 4, "{opt}: {out}");
        assert!(
            out.contains(&format!("node {root}: 1 non-zero byte in its unused space")),
            "{opt}: {out}"
        );
        assert_eq!(after, img, "{opt} wrote");
    }
}

#[test]
fn bytes_after_a_superblock_record_are_zeroed() {
    let want = digest(base());
    let mut img = base().to_vec();
    img[SUPERBLOCK_SIZE + 7] = 1;
    img[2 * BLOCK - 1] = 0xff;
    img[2 * BLOCK - 2] = 0xff;
    let (code, out, _) = fsck("-n", &img);
    assert_eq!(code, 4, "{out}");
    for want in [
        "superblock copy 0: 1 non-zero byte after the superblock record",
        "superblock copy 1: 2 non-zero bytes after the superblock record",
        "fsck.lcfs -y repairs it (so does -p)",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
    repairs(
        "superblock tails",
        &img,
        Preen::Repairs,
        &want,
        "superblock copy 1: the bytes after the superblock record are zeros again",
    );
}

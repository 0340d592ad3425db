//! fsck finds damage: random corruption of any metadata block, and targeted damage that keeps
//! every checksum valid (wrong reference counts, usage counters, layer links, leaked blocks).

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

use lcfs_format::node::{self, Key};
use lcfs_format::records::{kind, put_inline_data, ExtentRecord, Timespec};
use lcfs_format::refmap;
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::BlockStore;
use lcfs_format::volume::Volume;
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;
use proptest::prelude::*;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

/// A filesystem with a frozen base of 3000 items and extents, and two clones that changed a bit.
fn sample() -> MemDevice {
    let total = 4000;
    let sb = Superblock::new(total, [5; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
    for i in 0..3000u64 {
        let mut v = vec![0u8; 42];
        put_inline_data(&mut v, &[i as u8; 40]).unwrap();
        vol.insert(1, &Key::new(1, kind::INLINE, i), &v).unwrap();
        if i % 100 == 0 {
            let (b, n) = vol.alloc_data(2).unwrap();
            let mut e = [0u8; 16];
            ExtentRecord {
                disk_block: b,
                len: n,
                flags: 0,
            }
            .encode(&mut e)
            .unwrap();
            vol.insert(1, &Key::new(1, kind::EXTENT, i), &e).unwrap();
        }
    }
    vol.freeze_layer(1).unwrap();
    for name in [&b"a"[..], b"b"] {
        let id = vol.create_layer(name, Some(1), NOW).unwrap();
        vol.remove(id, &Key::new(1, kind::EXTENT, 500)).unwrap();
        let mut v = vec![0u8; 12];
        put_inline_data(&mut v, &[9; 10]).unwrap();
        vol.insert(id, &Key::new(1, kind::INLINE, 77), &v).unwrap();
    }
    vol.commit(NOW).unwrap();
    vol.into_store()
}

fn errors(dev: MemDevice) -> Vec<String> {
    match fsck::check(dev, &mut |_, _, _| {}) {
        Ok(r) => r.errors,
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn sample_is_clean() {
    let dev = sample();
    let r = fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "{:?}", r.errors);
    assert_eq!(r.stats.layers, 3);
    assert!(r.stats.tree_nodes > 30);
    assert_eq!(r.stats.data_blocks, 60);
}

/// Modifies a block and re-seals it, so only fsck's cross-checks can notice.
fn edit(dev: &mut MemDevice, block: u64, f: impl FnOnce(&mut Vec<u8>)) {
    let buf = dev.blocks.get_mut(&block).expect("block written");
    f(buf);
    if &buf[..4] == b"LCFR" {
        refmap::seal(buf).unwrap();
    } else {
        node::seal(buf).unwrap();
    }
}

/// The map leaf holding block `b`'s count, and the root entry pointing at it (a level-1 map).
fn map_leaf(dev: &MemDevice, root: u64, b: u64) -> (u64, u64) {
    let i = b / refmap::LEAF_ENTRIES;
    let e = refmap::entry_get(&dev.blocks[&root], i).unwrap();
    (e.child, i)
}

/// Sets block `b`'s count in the map; `dfree` fixes the root summary so only the count is off.
fn set_count(dev: &mut MemDevice, root: u64, b: u64, f: impl FnOnce(u32) -> u32, dfree: i64) {
    let (leaf, i) = map_leaf(dev, root, b);
    let at = refmap::HEADER_SIZE + (b % refmap::LEAF_ENTRIES) as usize * 4;
    edit(dev, leaf, |buf| {
        let v = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
        buf[at..at + 4].copy_from_slice(&f(v).to_le_bytes());
    });
    // Entry layout: child u64, free u64, pinned u64.
    let eat = refmap::HEADER_SIZE + i as usize * 24 + 8;
    edit(dev, root, |buf| {
        let v = u64::from_le_bytes(buf[eat..eat + 8].try_into().unwrap());
        buf[eat..eat + 8].copy_from_slice(&(v.wrapping_add_signed(dfree)).to_le_bytes());
    });
}

fn open(dev: &MemDevice) -> Volume<MemDevice> {
    Volume::open(dev.clone()).unwrap().0
}

#[test]
fn wrong_reference_count_is_found() {
    let mut dev = sample();
    let mut vol = open(&dev);
    let root = vol.layer(1).unwrap().root;
    let sb = vol.superblock();
    assert_eq!(sb.map_level, 1);
    set_count(&mut dev, sb.map_root, root, |v| v + 1, 0);
    let e = errors(dev);
    assert!(
        e.iter()
            .any(|m| m.contains(&format!("block {root}: reference count"))),
        "{e:?}"
    );
}

#[test]
fn leaked_and_double_used_blocks_are_found() {
    let mut dev = sample();
    let vol = open(&dev);
    let sb = vol.superblock();
    let free_block = (2..sb.total_blocks)
        .find(|&b| {
            let mut v = open(&dev);
            v.refcount(b).unwrap() == 0
        })
        .unwrap();
    // Mark a free block used and fix the free counts so only the leak remains.
    set_count(&mut dev, sb.map_root, free_block, |_| 1, -1);
    let mut sbuf = vec![0u8; 4096];
    dev.read(sb.slot(), &mut sbuf).unwrap();
    let mut s2 = Superblock::decode(&sbuf, sb.total_blocks).unwrap();
    s2.free_blocks -= 1;
    s2.encode(&mut sbuf).unwrap();
    dev.write(s2.slot(), &sbuf).unwrap();
    let e = errors(dev);
    assert!(
        e.iter()
            .any(|m| m.contains(&format!("block {free_block}:")) && m.contains("leaked")),
        "{e:?}"
    );
}

#[test]
fn wrong_usage_counter_and_layer_links_are_found() {
    // Damage layer 2's record in its leaf and re-seal: checksums stay valid.
    let mut dev2 = sample();
    let vol = open(&dev2);
    let lroot = vol.superblock().layer_root;
    edit(&mut dev2, lroot, |b| {
        let n = node::len(b).unwrap();
        for i in 0..n {
            if node::leaf_key(b, i).unwrap() == Key::new(2, kind::LAYER, 0) {
                let v = node::leaf_value(b, i).unwrap();
                let off = v.as_ptr() as usize - b.as_ptr() as usize;
                // inodes_used at offset 48 of the record.
                b[off + 48] ^= 4;
                // children at offset 12.
                b[off + 12] = 3;
            }
        }
    });
    let e = errors(dev2);
    assert!(e.iter().any(|m| m.contains("layer 2: usage")), "{e:?}");
    assert!(
        e.iter().any(|m| m.contains("layer 2: records 3 children")),
        "{e:?}"
    );
}

#[test]
fn every_metadata_block_bit_flip_is_found() {
    let dev = sample();
    let blocks: Vec<u64> = dev.blocks.keys().copied().collect();
    let mut checked = 0;
    for (n, &b) in blocks.iter().enumerate() {
        let data = &dev.blocks[&b];
        let is_meta = &data[..4] == b"LCFN" || &data[..4] == b"LCFR";
        if !is_meta || n % 3 != 0 {
            continue;
        }
        let mut bad = dev.clone();
        bad.blocks.get_mut(&b).unwrap()[100 + n % 3000] ^= 0x20;
        let e = errors(bad);
        // A flip in an unreferenced old copy is harmless; every referenced block is checked.
        let mut v = open(&dev);
        if v.refcount(b).unwrap() > 0 {
            assert!(!e.is_empty(), "flip in block {b} not found");
            checked += 1;
        }
    }
    assert!(checked > 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random byte damage anywhere never panics fsck or open, and damage to a live superblock
    /// copy or metadata block is reported.
    #[test]
    fn random_damage_never_panics(block in 0u64..200, off in 0usize..4096, val in any::<u8>()) {
        let mut dev = sample();
        let entry = dev.blocks.entry(block).or_insert_with(|| vec![0; 4096]);
        entry[off] = val;
        let _ = errors(dev.clone());
        let _ = Volume::open(dev);
    }
}

/// `sample()` plus a last commit that creates three layers: the newest superblock copy holds
/// that commit, the other copy the one before it. Returns the image and both generations.
fn with_last_commit() -> (MemDevice, u64, u64) {
    let mut vol = Volume::open(sample()).unwrap().0;
    let before = vol.superblock().generation;
    for name in [&b"x"[..], b"y", b"z"] {
        vol.create_layer(name, Some(1), NOW).unwrap();
    }
    vol.commit(NOW).unwrap();
    let after = vol.superblock().generation;
    assert_eq!(after, before + 1);
    (vol.into_store(), before, after)
}

/// Changes one byte of superblock copy `slot` (outside the checksum's own field).
fn damage_copy(dev: &mut MemDevice, slot: u64, at: usize) {
    dev.blocks.get_mut(&slot).expect("copy written")[at] ^= 0x10;
}

#[test]
fn damaged_newest_superblock_copy_is_a_lost_commit() {
    let (mut dev, before, after) = with_last_commit();
    damage_copy(&mut dev, after % 2, 300);
    let r = fsck::check(dev.clone(), &mut |_, _, _| {}).unwrap();
    assert!(!r.is_clean(), "a fallback that loses a commit is an error");
    assert!(r.only_fallback(), "{:?}", r.errors);
    assert_eq!(
        r.fallback,
        Some(fsck::Fallback {
            damaged_copy: after % 2,
            reason: r.fallback.as_ref().unwrap().reason.clone(),
            damaged_generation: Some(after),
            damaged_layer_count: Some(6),
            generation: before,
            layer_count: 3,
        })
    );
    let msg = &r.errors[0];
    for want in [
        &format!(
            "superblock copy {} is damaged (checksum mismatch",
            after % 2
        ),
        &format!("falls back to generation {before} (3 layers"),
        &format!("reads as generation {after} with 6 layers (unverified)"),
    ] {
        assert!(msg.contains(want.as_str()), "{want:?} not in {msg:?}");
    }
    assert_eq!((r.stats.generation, r.stats.layers), (before, 3));

    // The repair commits the surviving state again into the damaged copy's slot.
    let vol = fsck::make_fallback_current(dev, &r.fallback.unwrap(), NOW).unwrap();
    assert_eq!(vol.superblock().generation, before + 1);
    let fixed = vol.into_store();
    let r = fsck::check(fixed.clone(), &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!((r.stats.generation, r.stats.layers), (before + 1, 3));
    let (vol, other) = Volume::open(fixed).unwrap();
    assert_eq!(other, None, "both copies valid");
    assert_eq!(vol.superblock().generation, before + 1);
}

#[test]
fn damaged_copy_without_a_readable_generation_may_be_a_lost_commit() {
    let (mut dev, before, after) = with_last_commit();
    // The magic number gone: nothing of the copy can be read.
    damage_copy(&mut dev, after % 2, 0);
    let r = fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(r.only_fallback(), "{:?}", r.errors);
    let f = r.fallback.unwrap();
    assert_eq!((f.damaged_generation, f.damaged_layer_count), (None, None));
    assert_eq!(f.generation, before);
    assert!(
        r.errors[0].contains("its generation cannot be read"),
        "{:?}",
        r.errors
    );
}

#[test]
fn damaged_older_superblock_copy_only_warns() {
    let (mut dev, before, _) = with_last_commit();
    damage_copy(&mut dev, before % 2, 300);
    let r = fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "{:?}", r.errors);
    assert_eq!(r.fallback, None);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains(&format!("generation {before}, not newer")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn fallback_with_other_damage_is_not_for_repair() {
    let (mut dev, _, after) = with_last_commit();
    damage_copy(&mut dev, after % 2, 300);
    // And the surviving state's layer tree root: the damaged copy may be the better way back.
    let root = Volume::open(dev.clone()).unwrap().0.superblock().layer_root;
    dev.blocks.get_mut(&root).unwrap()[200] ^= 1;
    let r = fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(r.fallback.is_some());
    assert!(!r.only_fallback(), "{:?}", r.errors);
}

/// Sets `incompat` in both superblock copies, with their checksums.
fn set_incompat(dev: &mut MemDevice, incompat: u64) {
    for slot in 0..2 {
        let buf = dev.blocks.get_mut(&slot).expect("copy written");
        let mut sb = Superblock::decode(buf, u64::MAX).unwrap();
        sb.incompat = incompat;
        sb.encode(buf).unwrap();
    }
}

#[test]
fn inode_flags_without_the_feature_and_unknown_flag_bits_are_found() {
    use lcfs_format::namespace::NewInode;
    use lcfs_format::records::{inode_flags, mode, InodeRecord, INODE_RECORD_SIZE};
    use lcfs_format::superblock::INCOMPAT_INODE_FLAGS;
    use lcfs_format::volume::inode_key;
    use lcfs_format::ROOT_INO;
    let total = 2000;
    let sb = Superblock::new(total, [6; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
    let file = NewInode {
        mode: mode::S_IFREG | 0o644,
        ..NewInode::default()
    };
    let f = vol.create(1, ROOT_INO, b"f", &file, NOW).unwrap();
    vol.create(1, ROOT_INO, b"g", &file, NOW).unwrap();
    vol.set_flags(1, f, inode_flags::IMMUTABLE | inode_flags::NODUMP, NOW)
        .unwrap();
    vol.commit(NOW).unwrap();
    let mut dev = vol.into_store();
    assert_eq!(errors(dev.clone()), Vec::<String>::new());
    // The feature bit gone from both copies: the flagged record is an error, the other is not.
    set_incompat(&mut dev, 0);
    let e = errors(dev.clone());
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(
            "inode 2: flags 0x5 (immutable,nodump) on a filesystem without the inode_flags \
             feature"
        ),
        "{e:?}"
    );
    // With the bit back, a record with an unknown flag bit (written past the core's checks).
    set_incompat(&mut dev, INCOMPAT_INODE_FLAGS);
    let mut vol = open(&dev);
    let mut rec = vol.inode(1, f).unwrap();
    rec.flags |= 1 << 9;
    let mut buf = [0u8; INODE_RECORD_SIZE];
    rec.encode(&mut buf).unwrap();
    vol.insert(1, &inode_key(f), &buf).unwrap();
    vol.commit(NOW).unwrap();
    let e = errors(vol.into_store());
    assert!(
        e.iter().any(|m| m.contains("inode flags")),
        "no error for an unknown flag bit: {e:?}"
    );
    assert_eq!(
        InodeRecord::decode(&buf),
        Err(lcfs_format::FormatError::BadField("inode flags"))
    );
}

#[test]
fn posix_acl_the_kernel_cannot_decode_is_found() {
    use lcfs_format::namespace::NewInode;
    use lcfs_format::records::mode;
    use lcfs_format::ROOT_INO;
    let total = 2000;
    let sb = Superblock::new(total, [7; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
    let file = NewInode {
        mode: mode::S_IFREG | 0o640,
        ..NewInode::default()
    };
    let f = vol.create(1, ROOT_INO, b"f", &file, NOW).unwrap();
    // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    vol.set_xattr(1, f, b"system.posix_acl_access", &acl, NOW)
        .unwrap();
    vol.commit(NOW).unwrap();
    let mut vol = open(&vol.into_store());
    assert_eq!(errors(vol.store().clone()), Vec::<String>::new());
    // A named user without an id: the kernel's decoding refuses it.
    acl[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    vol.set_xattr(1, f, b"system.posix_acl_access", &acl, NOW)
        .unwrap();
    vol.commit(NOW).unwrap();
    let e = errors(vol.into_store());
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("POSIX ACL"), "{e:?}");
}

// Reference counts are compared as runs against the map leaf by leaf (memory that follows the
// metadata): the tests below pin what the per-block comparison found, at the edges of runs,
// leaves and the device.

/// A filesystem of `total` blocks whose first layer holds data from the start of the data space
/// up to about block `upto`, in runs as long as the allocator gives (up to a leaf's worth), each
/// an extent item of the root; returns the image and the runs.
fn with_data(total: u64, upto: u64) -> (MemDevice, Vec<(u64, u32)>) {
    let sb = Superblock::new(total, [8; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
    let mut runs = Vec::new();
    let mut off = 0u64;
    let mut end = 0;
    while end < upto {
        let (b, n) = vol.alloc_data((upto - end).min(4096) as u32).unwrap();
        end = b + u64::from(n);
        insert_extent(&mut vol, off, b, n);
        off += u64::from(n);
        runs.push((b, n));
    }
    vol.commit(NOW).unwrap();
    (vol.into_store(), runs)
}

/// An extent item of the root at file block `off`: `len` blocks from `disk_block`.
fn insert_extent(vol: &mut Volume<MemDevice>, off: u64, disk_block: u64, len: u32) {
    let mut e = [0u8; 16];
    ExtentRecord {
        disk_block,
        len,
        flags: 0,
    }
    .encode(&mut e)
    .unwrap();
    vol.insert(1, &Key::new(1, kind::EXTENT, off), &e).unwrap();
}

/// Sets the counts of blocks in a level-1 map (`(block, count)`), with the root's summaries
/// and the superblock's free count to match: only the counts are wrong.
fn set_counts(dev: &mut MemDevice, changes: &[(u64, u32)]) {
    let sb = open(dev).superblock();
    assert_eq!(sb.map_level, 1);
    let mut dfree = 0i64;
    for &(b, v) in changes {
        let old = u32::from_le_bytes({
            let (leaf, _) = map_leaf(dev, sb.map_root, b);
            let at = refmap::HEADER_SIZE + (b % refmap::LEAF_ENTRIES) as usize * 4;
            dev.blocks[&leaf][at..at + 4].try_into().unwrap()
        });
        let d = i64::from(old == 0) - i64::from(v == 0);
        set_count(dev, sb.map_root, b, |_| v, -d);
        dfree -= d;
    }
    let mut buf = vec![0u8; 4096];
    dev.read(sb.slot(), &mut buf).unwrap();
    let mut s2 = Superblock::decode(&buf, sb.total_blocks).unwrap();
    s2.free_blocks = s2.free_blocks.checked_add_signed(dfree).unwrap();
    s2.encode(&mut buf).unwrap();
    dev.write(s2.slot(), &buf).unwrap();
}

fn check(dev: &MemDevice) -> fsck::Report {
    fsck::check(dev.clone(), &mut |_, _, _| {}).unwrap()
}

#[test]
fn wrong_counts_at_the_first_and_last_blocks_are_found() {
    // Data up to near the end: the last leaf (of 976 blocks) is materialised, its last
    // block free.
    let (mut dev, _) = with_data(4000, 3800);
    let r = check(&dev);
    assert!(r.is_clean(), "{:?}", r.errors);
    let last = r.stats.total_blocks - 1;
    assert_eq!(open(&dev).refcount(last).unwrap(), 0);
    set_counts(&mut dev, &[(0, 2), (last, 1)]);
    let r = check(&dev);
    assert_eq!(
        r.errors,
        [
            "block 0: reference count 2, references found 1".to_string(),
            format!("block {last}: reference count 1 but nothing references it (leaked)"),
        ]
    );
    assert!(r.repairable());
}

#[test]
fn wrong_counts_inside_a_long_extent_and_across_a_leaf_boundary_are_found() {
    let (mut dev, runs) = with_data(4000, 3000);
    let l = refmap::LEAF_ENTRIES;
    let in_extent = |x: u64| runs.iter().any(|&(b, n)| b < x && x + 1 < b + u64::from(n));
    assert!(in_extent(1500) && in_extent(l - 2), "{runs:?}");
    assert!(check(&dev).is_clean());
    set_counts(&mut dev, &[(l - 1, 0), (l, 0), (1500, 2)]);
    let r = check(&dev);
    assert_eq!(
        r.errors,
        [
            format!("block {}: referenced 1 times but marked free", l - 1),
            format!("block {l}: referenced 1 times but marked free"),
            "block 1500: reference count 2, references found 1".to_string(),
        ]
    );
}

#[test]
fn a_whole_leaf_of_wrong_counts_is_listed_up_to_the_limit_and_rebuilt() {
    let (mut dev, _) = with_data(4000, 3000);
    // Every count of the second leaf one too high: the leaf reads as one value.
    let l = refmap::LEAF_ENTRIES;
    let changes: Vec<(u64, u32)> = (l..2 * l).map(|b| (b, 2)).collect();
    set_counts(&mut dev, &changes);
    let r = check(&dev);
    assert_eq!(r.errors.len(), 200, "{:?}", r.errors);
    assert_eq!(
        r.errors[0],
        format!("block {l}: reference count 2, references found 1")
    );
    assert_eq!(
        r.errors[199],
        format!("block {}: reference count 2, references found 1", l + 199)
    );
    assert_eq!(r.more_errors, l - 200);
    assert!(r.repairable());
    assert!(r.fixes.iter().all(|f| *f == fsck::Fix::Map));
    // The map rebuilt from the runs found is right again.
    let out =
        lcfs_image::repair::repair(&mut dev, &r, lcfs_image::repair::Mode::Preen, NOW).unwrap();
    assert!(
        matches!(out, lcfs_image::repair::Outcome::Repaired { .. }),
        "{out:?}"
    );
    let r = check(&dev);
    assert!(r.is_clean(), "{:?}", r.errors);
    let mut vol = open(&dev);
    for b in [l - 1, 1500, 2 * l - 1] {
        assert_eq!(vol.refcount(b).unwrap(), 1, "block {b}");
    }
}

#[test]
fn references_to_blocks_no_leaf_holds_are_found_block_by_block() {
    // A level-1 map of 20 leaves, most of them not materialised (free).
    let (dev, runs) = with_data(20_000, 100);
    let data: u64 = runs.iter().map(|r| u64::from(r.1)).sum();
    let mut vol = open(&dev);
    // Overlapping runs of references, one starting a block before the other ends: counts 1,
    // 2, 1 whose edges a sweep off by one would move; and the device's last block.
    insert_extent(&mut vol, 1000, 10_000, 4);
    insert_extent(&mut vol, 2000, 10_003, 3);
    insert_extent(&mut vol, 3000, 19_999, 1);
    vol.commit(NOW).unwrap();
    let r = check(vol.store());
    let want: Vec<String> = [
        (10_000, 1),
        (10_001, 1),
        (10_002, 1),
        (10_003, 2),
        (10_004, 1),
        (10_005, 1),
        (19_999, 1),
    ]
    .iter()
    .map(|(b, w)| format!("block {b}: referenced {w} times but marked free"))
    .collect();
    assert_eq!(r.errors, want);
    assert_eq!(r.stats.data_blocks, data + 6 + 1);
}

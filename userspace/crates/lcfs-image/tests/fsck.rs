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

/// Bytes where a node holds nothing (between a leaf's item headers and its values, after an
/// internal node's items), under a valid checksum: no writer leaves any, so they are damage of
/// the node, reported as such (no repair rewrites a damaged node). Every byte of the space is
/// looked at.
#[test]
fn nonzero_bytes_in_the_unused_space_of_a_node_are_found() {
    let dev = sample();
    let root = open(&dev).layer(1).unwrap().root;
    let mut leaf = root;
    while node::header(&dev.blocks[&leaf]).unwrap().level > 0 {
        leaf = node::internal_child(&dev.blocks[&leaf], 0).unwrap();
    }
    for block in [root, leaf] {
        let r = node::unused(&dev.blocks[&block]).unwrap();
        assert!(r.len() > 100, "node {block}: {r:?}");
        for at in [r.start, r.start + r.len() / 2, r.end - 1] {
            let mut bad = dev.clone();
            edit(&mut bad, block, |b| b[at] = 0x42);
            let r = fsck::check(bad, &mut |_, _, _| {}).unwrap();
            assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
            let e = &r.errors[0];
            assert!(
                e.contains(&format!(
                    "node {block}: 1 non-zero byte in its unused space"
                )) && e.contains(&format!("the first is at {at}")),
                "{e}"
            );
            assert!(!r.repairable(), "{e}");
        }
    }
    // The bytes right beside it are the items' own: no such error for them.
    let r = node::unused(&dev.blocks[&leaf]).unwrap();
    let mut bad = dev.clone();
    edit(&mut bad, leaf, |b| b[r.end] ^= 0x42);
    assert!(errors(bad).iter().all(|e| !e.contains("unused space")));
}

/// Bytes after the superblock record, which its checksum does not cover: every commit writes
/// zeros there, so anything else is damage; the repair's commits (two, so both copies) clear it,
/// and preening may (nothing changes but the copies).
#[test]
fn nonzero_bytes_after_a_superblock_record_are_found_and_repaired() {
    use lcfs_format::superblock::SUPERBLOCK_SIZE;
    use lcfs_image::repair::{self, Mode, Outcome};
    for (mode, slots) in [
        (Mode::Preen, &[0u64][..]),
        (Mode::Yes, &[1][..]),
        (Mode::Yes, &[0, 1][..]),
    ] {
        let mut dev = sample();
        for &slot in slots {
            let b = dev.blocks.get_mut(&slot).unwrap();
            b[SUPERBLOCK_SIZE + slot as usize * 1000] = 7;
            b[4095] = 1;
        }
        let r = fsck::check(dev.clone(), &mut |_, _, _| {}).unwrap();
        assert_eq!(r.errors.len(), slots.len(), "{:?}", r.errors);
        for (&slot, e) in slots.iter().zip(&r.errors) {
            assert!(
                e.contains(&format!(
                    "superblock copy {slot}: 2 non-zero bytes after the superblock record"
                )),
                "{e}"
            );
        }
        assert!(r.repairable() && r.fixes.iter().all(|f| f.is_safe()));
        let out = repair::repair(&mut dev, &r, mode, NOW).unwrap();
        let Outcome::Repaired { actions, after } = out else {
            panic!("{slots:?}: {out:?}");
        };
        assert!(after.is_clean(), "{:?}", after.errors);
        assert!(
            actions
                .iter()
                .any(|a| a.contains("bytes after the superblock record are zeros again")),
            "{actions:?}"
        );
        for slot in 0..2 {
            assert!(dev.blocks[&slot][SUPERBLOCK_SIZE..].iter().all(|&b| b == 0));
        }
        let again = fsck::check(dev.clone(), &mut |_, _, _| {}).unwrap();
        assert!(again.is_clean(), "{:?}", again.errors);
        assert!(matches!(
            repair::repair(&mut dev, &again, Mode::Yes, NOW).unwrap(),
            Outcome::Clean
        ));
    }
    // A copy that is not valid anyway: its damage is the one error, its tail not reported apart.
    let mut dev = sample();
    let b = dev.blocks.get_mut(&0).unwrap();
    b[100] ^= 1;
    b[SUPERBLOCK_SIZE] = 1;
    let e = errors(dev);
    assert!(
        e.iter().all(|e| !e.contains("after the superblock record")),
        "{e:?}"
    );
}

/// Going back to the commit before a damaged newest one also clears the tail of the copy it
/// goes back to: that copy is rewritten too (a second commit).
#[test]
fn going_back_a_commit_clears_the_tail_of_the_copy_it_goes_back_to() {
    use lcfs_format::superblock::SUPERBLOCK_SIZE;
    use lcfs_image::repair::{self, Mode, Outcome};
    let (mut dev, before, after) = with_last_commit();
    // The newest layer tree root (only the newest commit uses it) damaged: no repair but going
    // back covers it.
    let root = open(&dev).superblock().layer_root;
    dev.blocks.get_mut(&root).unwrap()[200] ^= 1;
    dev.blocks.get_mut(&(before % 2)).unwrap()[SUPERBLOCK_SIZE + 10] = 9;
    let r = fsck::check(dev.clone(), &mut |_, _, _| {}).unwrap();
    assert!(!r.repairable(), "{:?}", r.errors);
    let out = repair::repair(&mut dev, &r, Mode::Yes, NOW).unwrap();
    let Outcome::Repaired { actions, after: a } = out else {
        panic!("{out:?}");
    };
    assert!(a.is_clean(), "{:?}", a.errors);
    assert!(
        actions[0].contains(&format!("went back from generation {after}")),
        "{actions:?}"
    );
    for slot in 0..2 {
        assert!(
            dev.blocks[&slot][SUPERBLOCK_SIZE..].iter().all(|&b| b == 0),
            "copy {slot}: {actions:?}"
        );
    }
    assert!(fsck::check(dev, &mut |_, _, _| {}).unwrap().is_clean());
}

/// A POSIX ACL too big for a leaf item (over about 120 entries) lives in blocks of its own: it is
/// read and checked as an inline one is.
#[test]
fn posix_acl_in_blocks_of_its_own_is_checked_too() {
    use lcfs_format::namespace::NewInode;
    use lcfs_format::records::{mode, XattrRecord, XattrValue};
    use lcfs_format::ROOT_INO;
    let total = 2000;
    let sb = Superblock::new(total, [8; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
    let dir = NewInode {
        mode: mode::S_IFDIR | 0o750,
        ..NewInode::default()
    };
    let d = vol.create(1, ROOT_INO, b"d", &dir, NOW).unwrap();
    // user::rwx, 600 named users (some 4.8 KB: two blocks), group::r-x, mask::rwx, other::---
    let entry = |tag: u16, perm: u16, id: u32| {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend_from_slice(&perm.to_le_bytes());
        e.extend_from_slice(&id.to_le_bytes());
        e
    };
    let mut acl = 2u32.to_le_bytes().to_vec();
    acl.extend(entry(1, 7, u32::MAX));
    for id in 0..600 {
        acl.extend(entry(2, 5, 1000 + id));
    }
    acl.extend(entry(4, 5, u32::MAX));
    acl.extend(entry(0x10, 7, u32::MAX));
    acl.extend(entry(0x20, 0, u32::MAX));
    let name = b"system.posix_acl_default";
    vol.set_xattr(1, d, name, &acl, NOW).unwrap();
    vol.commit(NOW).unwrap();
    // Stored in blocks indeed.
    let mut external = None;
    let mut from = Key::new(d, kind::XATTR, 0);
    while let Some((k, x)) = vol
        .next(1, &from, |k, v| {
            let x = XattrRecord::decode(v, total)
                .ok()
                .and_then(|x| match x.value {
                    XattrValue::External { extent, len } if x.name == name => Some((extent, len)),
                    _ => None,
                });
            (*k, x)
        })
        .unwrap()
    {
        if k.id != d {
            break;
        }
        external = external.or(x);
        from = Key::new(k.id, k.kind, k.offset + 1);
    }
    let (extent, len) = external.expect("the ACL is kept in blocks of its own");
    assert_eq!((extent.len, len as usize), (2, acl.len()));
    let dev = vol.into_store();
    assert_eq!(errors(dev.clone()), Vec::<String>::new());
    // A named user without an id, in the second block: the kernel's decoding refuses it.
    for at in [4 + 8 + 8 * 550 + 4, 4 + 8 + 4] {
        let mut bad = dev.clone();
        let (b, o) = (extent.disk_block + at as u64 / 4096, at % 4096);
        bad.blocks.get_mut(&b).unwrap()[o..o + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = errors(bad);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(&format!("item ({d} XATTR ")) && e[0].contains("POSIX ACL"),
            "{e:?}"
        );
    }
    // Another attribute's value in blocks is not an ACL: anything goes.
    let mut vol = open(&dev);
    vol.set_xattr(1, d, b"user.big", &vec![0xff; 5000], NOW)
        .unwrap();
    vol.commit(NOW).unwrap();
    assert_eq!(errors(vol.into_store()), Vec::<String>::new());
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

//! The corruption generator: a clean, deterministic base image and deterministic mutants that
//! each change 1 to 3 live metadata blocks, and that the format core survives.

#![allow(clippy::cast_possible_truncation)] // Block numbers of an 8 MiB image.

use lcfs_corrupt::{
    base_image, device, fsck_verdict, kinds_of, metadata_blocks, mutant, mutants, truncations,
    BLOCK, KINDS,
};
use lcfs_format::node;
use lcfs_format::superblock::SUPERBLOCK_SIZE;
use lcfs_format::volume::Volume;

const BLOCKS: u64 = 2048;

#[test]
fn base_image_is_clean_and_deterministic() {
    let a = base_image(BLOCKS).unwrap();
    assert_eq!(a.len(), BLOCKS as usize * BLOCK);
    assert_eq!(fsck_verdict(&a), "clean");
    assert_eq!(a, base_image(BLOCKS).unwrap());
    let meta = metadata_blocks(&a).unwrap();
    // Both superblocks, a multi-level layer tree, the map.
    assert!(meta.len() > 15, "{} metadata blocks", meta.len());
}

#[test]
fn mutants_are_deterministic_and_differ_from_the_base() {
    let base = base_image(BLOCKS).unwrap();
    let meta = metadata_blocks(&base).unwrap();
    let all = mutants(&base, 7, 120).unwrap();
    assert_eq!(all, mutants(&base, 7, 120).unwrap());
    // Mutant n does not depend on the count.
    assert_eq!(all[..40], mutants(&base, 7, 40).unwrap()[..]);
    assert_eq!(all[99], mutant(&base, &meta, 7, 99));
    // Another seed, other mutants.
    let other = mutants(&base, 8, 120).unwrap();
    assert!(all.iter().zip(&other).filter(|(a, b)| a == b).count() < 3);
    for m in &all {
        assert!((1..=3).contains(&m.patches.len()), "mutant {}", m.id);
        let mut seen = Vec::new();
        for p in &m.patches {
            assert!(!seen.contains(&p.blocknr), "mutant {}: block twice", m.id);
            seen.push(p.blocknr);
            assert!(meta.iter().any(|b| b.blocknr == p.blocknr), "not metadata");
            assert_eq!(p.data.len(), BLOCK);
            let at = p.blocknr as usize * BLOCK;
            assert_ne!(
                p.data[..],
                base[at..at + BLOCK],
                "mutant {}: unchanged",
                m.id
            );
        }
        assert_ne!(m.apply(&base), base, "mutant {}", m.id);
    }
}

#[test]
fn mutants_never_panic_fsck_or_open() {
    let base = base_image(BLOCKS).unwrap();
    let all = mutants(&base, 1, 120).unwrap();
    let mut damaged = 0;
    for m in &all {
        let img = m.apply(&base);
        if fsck_verdict(&img) != "clean" {
            damaged += 1;
        }
        let _ = Volume::open(device(&img));
    }
    // Nearly every mutant is damage fsck can see (a few hit an older superblock copy or bytes
    // that do not matter).
    assert!(damaged > all.len() * 3 / 4, "only {damaged} damaged");
}

#[test]
fn base_image_has_a_frozen_chain_and_an_acl_in_blocks() {
    let base = base_image(BLOCKS).unwrap();
    let (mut vol, _) = Volume::open(device(&base)).unwrap();
    let mut layers = Vec::new();
    vol.for_each_layer(&mut |l| {
        layers.push((
            String::from_utf8_lossy(l.name()).into_owned(),
            l.parent,
            l.is_read_only(),
        ));
        true
    })
    .unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        ["default", "work", "scratch", "chain1", "chain2", "chain3"]
    );
    assert_eq!((layers[4].1, layers[4].2), (4, true), "{layers:?}");
    assert_eq!((layers[5].1, layers[5].2), (5, false), "{layers:?}");
    let dir = vol
        .lookup_name(4, lcfs_format::ROOT_INO, b"c")
        .unwrap()
        .unwrap()
        .ino;
    let n = vol
        .get_xattr(4, dir, b"system.posix_acl_default", &mut [0u8; 8192])
        .unwrap();
    assert!(n > 1024, "an ACL of {n} bytes fits in a leaf item");
}

#[test]
fn every_kind_of_damage_is_made_as_described() {
    let base = base_image(BLOCKS).unwrap();
    let all = mutants(&base, 1, 300).unwrap();
    let block = |b: u64| &base[b as usize * BLOCK..(b as usize + 1) * BLOCK];
    for k in KINDS {
        let n = all
            .iter()
            .filter(|m| kinds_of(&m.desc).contains(&k))
            .count();
        assert!(n >= 3, "{k}: {n} of 300 mutants");
    }
    for m in &all {
        let kinds = kinds_of(&m.desc);
        assert!(!kinds.is_empty(), "mutant {}: {}", m.id, m.desc);
        if kinds.contains(&"swap") {
            assert_eq!(kinds, ["swap"], "{}", m.desc);
            let [a, b] = &m.patches[..] else {
                panic!("{}", m.desc)
            };
            assert_eq!(
                (&a.data[..], &b.data[..]),
                (block(b.blocknr), block(a.blocknr))
            );
        }
        if kinds.contains(&"swap") {
            continue;
        }
        // Bytes where a block holds nothing: only there (and in the checksum, if resealed), in
        // a tree node's unused space or after a superblock record.
        for (p, part) in m.patches.iter().zip(m.desc.split(' ')) {
            let Some(g) = part.split(':').find_map(|f| f.strip_prefix("gap(@")) else {
                continue;
            };
            let (at, len) = g.trim_end_matches(')').split_once('+').unwrap();
            let (at, len): (usize, usize) = (at.parse().unwrap(), len.parse().unwrap());
            let orig = block(p.blocknr);
            let free = if p.blocknr < 2 {
                SUPERBLOCK_SIZE..BLOCK
            } else {
                node::unused(orig).unwrap()
            };
            assert!(
                free.contains(&at) && at + len <= free.end,
                "{part}: outside {free:?}"
            );
            let checksum = if p.blocknr < 2 { 8..12 } else { 4..8 };
            let changed: Vec<usize> = (0..BLOCK).filter(|&i| p.data[i] != orig[i]).collect();
            assert!(
                changed
                    .iter()
                    .all(|&i| (at..at + len).contains(&i) || checksum.contains(&i)),
                "{part}: changed {changed:?}"
            );
            assert!(!changed.is_empty() || part.contains("+bit"), "{part}");
        }
    }
}

#[test]
fn truncations_cut_short_at_growing_lengths() {
    let base = base_image(BLOCKS).unwrap();
    let t = truncations(&base);
    assert!(t.len() >= 8);
    assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "{t:?}");
    assert!(t.last().unwrap().0 < base.len());
}

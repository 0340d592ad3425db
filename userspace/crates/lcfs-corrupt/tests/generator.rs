//! The corruption generator: a clean, deterministic base image and deterministic mutants that
//! each change 1 to 3 live metadata blocks, and that the format core survives.

#![allow(clippy::cast_possible_truncation)] // Block numbers of an 8 MiB image.

use lcfs_corrupt::{base_image, device, fsck_verdict, metadata_blocks, mutant, mutants, BLOCK};
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

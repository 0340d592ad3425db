//! The corruption suite's mutants (`lcfs-corrupt`: every kind of damage, [`KINDS`]) and its base
//! image cut short at several points, each through what an administrator runs on a damaged
//! image: the check (`fsck.lcfs -n`), `lcfs debug dump --items`, the repair (`fsck.lcfs -y`)
//! and the check again, on an image file through the same device code as the tools. No panic
//! (a panic names the mutant), no hang (the dump is killed after 60 s); the repair either
//! refuses and leaves the file as it was, or repairs into an image that checks clean, dumps
//! without error, and that a second repair leaves byte for byte as it is (the repair
//! converges). An image cut short is never clean, never repaired, and each tool says what is
//! wrong.
//!
//! `LCFS_CORPUS_MUTANTS` sets the number of mutants (default 120; mutant `n` is the same
//! whatever the count), `LCFS_CORPUS_SEED` their seed.

#![allow(clippy::cast_possible_truncation)] // Block numbers and counts of an 8 MiB image.

use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lcfs_corrupt::{base_image, kinds_of, mutants, truncations, BLOCK, KINDS};
use lcfs_format::records::Timespec;
use lcfs_image::fsck::{self, Report};
use lcfs_image::repair::{self, Mode, Outcome};
use lcfs_image::{Access, Device};

const NOW: Timespec = Timespec {
    sec: 1_700_002_000,
    nsec: 0,
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `lcfs debug dump --items PATH`: exit code and standard error. Fails on a hang (60 s), a
/// signal or a panic.
fn dump(path: &Path, what: &str) -> (i32, String) {
    let dir = path.parent().unwrap();
    let err_path = dir.join("dump.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lcfs"))
        .args(["debug", "dump", "--items"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: lcfs debug dump hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(!err.contains("panicked"), "{what}: dump panicked: {err}");
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{what}: dump killed by a signal: {status:?}"));
    assert!(code == 0 || code == 1, "{what}: dump exit {code}: {err}");
    (code, err)
}

fn check(path: &Path) -> Result<Report, fsck::OpError> {
    fsck::check(
        Device::open(path, Access::ReadOnly).unwrap(),
        &mut |_, _, _| {},
    )
}

/// What the protocol found for one image.
#[derive(Debug, Default)]
struct Counts {
    clean: u32,
    repaired: u32,
    refused: u32,
    not_lcfs: u32,
}

/// The whole protocol for one image in the file at `path` (already written).
fn protocol(path: &Path, img: &[u8], what: &str, counts: &mut Counts) {
    let report = match check(path) {
        Ok(r) => r,
        Err(e) => {
            // Neither superblock copy is LCFS: nothing to repair, and the dump says so too.
            let msg = e.to_string();
            assert!(msg.contains("not an LCFS filesystem"), "{what}: {msg}");
            let (code, err) = dump(path, what);
            assert!(
                code == 1 && !err.is_empty(),
                "{what}: dump of no LCFS: {err}"
            );
            counts.not_lcfs += 1;
            return;
        }
    };
    let (code, err) = dump(path, what);
    if report.is_clean() {
        assert_eq!(code, 0, "{what}: fsck clean, dump failed: {err}");
        counts.clean += 1;
        return;
    }
    let mut writer = Device::open(path, Access::ReadWrite).unwrap();
    let outcome = repair::repair(&mut writer, &report, Mode::Yes, NOW)
        .unwrap_or_else(|e| panic!("{what}: repair failed: {e}; errors {:?}", report.errors));
    drop(writer);
    let after = std::fs::read(path).unwrap();
    match outcome {
        Outcome::Clean => panic!("{what}: repair found nothing of {:?}", report.errors),
        Outcome::Refused(_) => {
            assert!(after == img, "{what}: refused but written");
            counts.refused += 1;
        }
        Outcome::Repaired { actions, after: a } => {
            assert!(a.is_clean(), "{what}: {:?}", a.errors);
            let again = check(path).unwrap();
            assert!(
                again.is_clean(),
                "{what}: repaired ({actions:?}) but the check finds {:?}",
                again.errors
            );
            let (code, err) = dump(path, what);
            assert_eq!(code, 0, "{what}: repaired, dump failed: {err}");
            let mut writer = Device::open(path, Access::ReadWrite).unwrap();
            let second = repair::repair(&mut writer, &again, Mode::Yes, NOW).unwrap();
            drop(writer);
            assert!(matches!(second, Outcome::Clean), "{what}: {second:?}");
            assert!(
                std::fs::read(path).unwrap() == after,
                "{what}: a second repair wrote"
            );
            counts.repaired += 1;
        }
    }
}

#[test]
fn every_mutant_kind_through_check_dump_and_repair() {
    let start = Instant::now();
    let count = env_or("LCFS_CORPUS_MUTANTS", 120) as u32;
    let seed = env_or("LCFS_CORPUS_SEED", 0xc0_4905);
    let base = base_image(2048).unwrap();
    let all = mutants(&base, seed, count).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let mut counts = Counts::default();
    let mut per_kind = vec![0u32; KINDS.len()];
    // The file holds the base image between mutants: a mutant writes its blocks, and they are
    // put back after it (the whole image after a repair), so the disk sees little of it.
    std::fs::write(&path, &base).unwrap();
    let put = |blocks: &mut dyn Iterator<Item = (u64, &[u8])>| {
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (b, data) in blocks {
            f.write_all_at(data, b * BLOCK as u64).unwrap();
        }
    };
    for m in &all {
        let img = m.apply(&base);
        put(&mut m.patches.iter().map(|p| (p.blocknr, &p.data[..])));
        let what = format!("mutant {} ({})", m.id, m.desc);
        let repaired = counts.repaired;
        for k in kinds_of(&m.desc) {
            per_kind[KINDS.iter().position(|&x| x == k).unwrap()] += 1;
        }
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
            protocol(&path, &img, &what, &mut counts)
        })) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            if msg.starts_with(&what) {
                panic!("{msg}");
            }
            panic!("{what}: {msg}");
        }
        if counts.repaired > repaired {
            std::fs::write(&path, &base).unwrap();
        } else {
            let at = |b: u64| &base[b as usize * BLOCK..(b as usize + 1) * BLOCK];
            put(&mut m.patches.iter().map(|p| (p.blocknr, at(p.blocknr))));
        }
    }
    println!(
        "{count} mutants (seed {seed:#x}) in {:.1} s: {counts:?}",
        start.elapsed().as_secs_f64()
    );
    let kinds: Vec<String> = KINDS
        .iter()
        .zip(&per_kind)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("kinds: {}", kinds.join(", "));
    if count >= 120 {
        for (k, n) in KINDS.iter().zip(&per_kind) {
            assert!(*n > 0, "no mutant of kind {k}");
        }
        assert!(counts.repaired > 0 && counts.refused > 0, "{counts:?}");
    }
}

#[test]
fn image_cut_short_is_refused_with_a_reason() {
    let base = base_image(2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    for (len, what) in truncations(&base) {
        let img = &base[..len];
        std::fs::write(&path, img).unwrap();
        let what = format!("cut to {len} bytes ({what})");
        match check(&path) {
            Err(e) => assert!(
                e.to_string().contains("not an LCFS filesystem"),
                "{what}: {e}"
            ),
            Ok(r) => {
                assert!(!r.is_clean(), "{what}: clean");
                assert!(
                    r.errors[0].contains("device too small") || r.errors[0].contains("blocks"),
                    "{what}: {:?}",
                    r.errors
                );
                let mut writer = Device::open(&path, Access::ReadWrite).unwrap();
                let out = repair::repair(&mut writer, &r, Mode::Yes, NOW).unwrap();
                assert!(matches!(out, Outcome::Refused(_)), "{what}: {out:?}");
                assert!(std::fs::read(&path).unwrap() == img, "{what}: written");
            }
        }
        let (code, err) = dump(&path, &what);
        assert_eq!(code, 1, "{what}: dump succeeded");
        assert!(!err.trim().is_empty(), "{what}: dump failed without a word");
        println!("{what}: dump: {}", err.lines().next().unwrap_or(""));
    }
}

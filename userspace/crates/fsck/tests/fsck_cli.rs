//! The `fsck.lcfs` command line: exit codes and output on real image files.

use std::path::Path;
use std::process::Command;

use lcfs_format::records::Timespec;
use lcfs_format::superblock::Superblock;
use lcfs_format::volume::Volume;
use lcfs_image::output::run_with_closed_stdout;
use lcfs_image::{Access, Device};

fn fsck(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-lcfs"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Formats a 16 MiB image file the way mkfs.lcfs does.
fn mkfs(path: &str) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let dev = Device::open(Path::new(path), Access::ReadWrite).unwrap();
    let sb = Superblock::new(dev.blocks(), [4; 16], 1_700_000_000);
    let now = Timespec {
        sec: 1_700_000_000,
        nsec: 0,
    };
    Volume::format(dev, sb, Some(b"default"), now).unwrap();
}

#[test]
fn clean_image_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let img = img.to_str().unwrap();
    mkfs(img);
    let (code, out) = fsck(&["-n", img]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean, 1 layer,"), "{out}");
    let (code, out) = fsck(&["-n", "--json", img]);
    assert_eq!(code, 0);
    assert!(out.contains("\"errors\": []"), "{out}");
}

#[test]
fn damaged_image_exits_4_and_is_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let img = img.to_str().unwrap();
    mkfs(img);
    let mut data = std::fs::read(img).unwrap();
    // Damage the map root (block 2): its checksum no longer matches.
    data[2 * 4096 + 100] ^= 0xff;
    std::fs::write(img, &data).unwrap();
    let (code, out) = fsck(&["-n", img]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("error found") || out.contains("errors found"),
        "{out}"
    );
    assert_eq!(std::fs::read(img).unwrap(), data);
}

#[test]
fn not_lcfs_or_missing_exits_8_and_bad_usage_16() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("zero");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let (code, out) = fsck(&["-n", img.to_str().unwrap()]);
    assert_eq!(code, 8, "{out}");
    assert!(out.contains("not an LCFS filesystem"), "{out}");
    let (code, _) = fsck(&["-n", "/nonexistent/device"]);
    assert_eq!(code, 8);
    let (code, _) = fsck(&["--bogus"]);
    assert_eq!(code, 16);
}

#[test]
fn closed_pipe_keeps_the_exit_code_and_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let img = img.to_str().unwrap();
    mkfs(img);
    for args in [&["-n", "-v", img][..], &["-n", "--json", img][..]] {
        let out = run_with_closed_stdout(Command::new(env!("CARGO_BIN_EXE_fsck-lcfs")).args(args))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            (out.status.code(), &*stderr),
            (Some(0), ""),
            "fsck.lcfs {args:?}"
        );
    }
}

#[test]
fn progress_as_e2fsck_gives_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let img = img.to_str().unwrap();
    mkfs(img);
    // -C 0: a completion bar only on a terminal; this output is a pipe, so none.
    let (code, out) = fsck(&["-n", "-C", "0", img]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\r'), "{out:?}");
    // Without -C, nothing but the report either.
    let (code, out) = fsck(&["-n", img]);
    assert_eq!((code, out.contains('\r')), (0, false), "{out:?}");
    // -C 1: "PASS DONE TOTAL DEVICE" lines, each pass ending at its total.
    let (code, out) = fsck(&["-n", "-C", "1", img]);
    assert_eq!(code, 0, "{out}");
    for pass in 1..=3 {
        let last = out
            .lines()
            .rfind(|l| l.starts_with(&format!("{pass} ")) && l.ends_with(img))
            .unwrap_or_else(|| panic!("no progress line of pass {pass}: {out}"));
        let f: Vec<&str> = last.split(' ').collect();
        assert_eq!(f[1], f[2], "pass {pass} ends at its total: {last}");
    }
    // A descriptor that is not open is an operational error.
    assert_eq!(fsck(&["-n", "-C", "9", img]).0, 8);
}

#[test]
fn only_one_of_p_n_y() {
    for args in [["-p", "-y"], ["-p", "-n"], ["-n", "-y"]] {
        assert_eq!(fsck(&[args[0], args[1], "img"]).0, 16, "{args:?}");
    }
}

/// `mkfs` plus a last commit that creates three layers; then one byte of the superblock copy
/// holding that commit is changed, so the filesystem falls back to the commit before (1 layer).
/// Returns the generation it falls back to.
fn lose_last_commit(path: &str) -> u64 {
    mkfs(path);
    let dev = Device::open(Path::new(path), Access::ReadWrite).unwrap();
    let mut vol = Volume::open(dev).unwrap().0;
    let now = Timespec {
        sec: 1_700_000_100,
        nsec: 0,
    };
    let before = vol.superblock().generation;
    for name in [&b"a"[..], b"b", b"c"] {
        vol.create_layer(name, None, now).unwrap();
    }
    vol.commit(now).unwrap();
    let newest = vol.superblock().slot();
    drop(vol);
    let mut data = std::fs::read(path).unwrap();
    data[usize::try_from(newest).unwrap() * 4096 + 300] ^= 0x10;
    std::fs::write(path, &data).unwrap();
    before
}

#[test]
fn lost_last_commit_is_an_error_and_y_or_p_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let img = img.to_str().unwrap();
    let before = lose_last_commit(img);
    let damaged = std::fs::read(img).unwrap();
    let (code, out) = fsck(&["-n", img]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains(&format!("falls back to generation {before} (1 layer,")),
        "{out}"
    );
    assert!(out.contains("reads as generation"), "{out}");
    assert!(out.contains("with 4 layers (unverified)"), "{out}");
    assert!(out.contains("fsck.lcfs -y makes generation"), "{out}");
    assert_eq!(std::fs::read(img).unwrap(), damaged, "-n wrote");
    let (code, out) = fsck(&["-n", "--json", img]);
    assert_eq!(code, 4, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fallback"]["generation"], before);
    assert_eq!(v["fallback"]["damaged_generation"], before + 1);
    assert_eq!(v["fallback"]["layer_count"], 1);
    // Without -n, -y or -p nothing is written either.
    assert_eq!(fsck(&[img]).0, 4);
    assert_eq!(std::fs::read(img).unwrap(), damaged);

    for opt in ["-y", "-p"] {
        std::fs::write(img, &damaged).unwrap();
        let (code, out) = fsck(&[opt, img]);
        assert_eq!(code, 1, "{opt}: {out}");
        assert!(out.contains("repaired: generation"), "{opt}: {out}");
        assert!(
            out.contains("found and corrected; clean, 1 layer"),
            "{opt}: {out}"
        );
        let (code, out) = fsck(&["-n", img]);
        assert_eq!(code, 0, "after {opt}: {out}");
        assert!(
            out.contains("clean, 1 layer, ")
                && out.contains(&format!("(generation {})", before + 1)),
            "after {opt}: {out}"
        );
        assert!(!out.contains("warning"), "after {opt}: {out}");
        // A mount selects the copies the same way: the surviving state, both copies valid.
        let mut dev = Device::open(Path::new(img), Access::ReadOnly).unwrap();
        let sel = dev.read_superblock().unwrap();
        assert_eq!(sel.other_error, None);
        assert_eq!((sel.sb.generation, sel.sb.layer_count), (before + 1, 1));
        // Nothing left to repair.
        assert_eq!(fsck(&[opt, img]).0, 0);
    }
}

#[test]
fn lost_last_commit_with_other_damage_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let img = img.to_str().unwrap();
    let before = lose_last_commit(img);
    let mut dev = Device::open(Path::new(img), Access::ReadOnly).unwrap();
    let map_root = dev
        .read_superblock_copy(before % 2)
        .unwrap()
        .unwrap()
        .map_root;
    drop(dev);
    // The surviving state's map root too: it is damaged as well.
    let mut data = std::fs::read(img).unwrap();
    data[usize::try_from(map_root).unwrap() * 4096 + 100] ^= 0xff;
    std::fs::write(img, &data).unwrap();
    let (code, out) = fsck(&["-y", img]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("left as it is"), "{out}");
    assert_eq!(std::fs::read(img).unwrap(), data, "-y wrote");
}

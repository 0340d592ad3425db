//! End-to-end tests of the `mkfs.lcfs` binary on image files.

use std::process::Command;

use lcfs_format::superblock::Superblock;
use lcfs_format::volume::Volume;
use lcfs_image::output::run_with_closed_stdout;
use lcfs_image::{Access, Device};

fn mkfs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mkfs-lcfs"))
        .args(args)
        .output()
        .expect("run mkfs.lcfs")
}

#[test]
fn formats_an_image_file_with_both_superblock_copies() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let img_s = img.to_str().unwrap();
    let out = mkfs(&[
        "-q",
        "-s",
        "64M",
        "-L",
        "data",
        "-U",
        "01234567-89ab-cdef-0123-456789abcdef",
        img_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 64 << 20);

    let mut dev = Device::open(&img, Access::ReadOnly).unwrap();
    let sel = dev.read_superblock().unwrap();
    assert_eq!(sel.other_error, None, "both copies valid");
    assert_eq!(sel.sb.generation, 2);
    assert_eq!(sel.sb.total_blocks, 16384);
    assert_eq!(sel.sb.label(), Some("data"));
    assert_eq!(sel.sb.uuid[0], 0x01);
    assert_eq!(sel.sb.layer_count, 1);
    // Inode flags (`chattr`) are a feature of every new filesystem.
    assert_eq!(
        sel.sb.incompat,
        lcfs_format::superblock::INCOMPAT_INODE_FLAGS
    );
    let copy1 = dev.read_superblock_copy(1).unwrap().unwrap();
    assert_eq!(copy1.generation, 1);
    assert_eq!(copy1.incompat, sel.sb.incompat);
    // The first layer exists and fsck finds the image clean.
    let (mut vol, other) = Volume::open(dev).unwrap();
    assert_eq!(other, None);
    let layer = vol.layer(1).unwrap();
    assert_eq!(layer.name(), b"default");
    assert!(!layer.is_read_only());
    // Superblocks, map (level 1 for 16384 blocks: 2 nodes), layer tree, layer 1 tree.
    assert_eq!(
        vol.superblock().free_blocks,
        16384 - Superblock::FIXED_BLOCKS - 4
    );
    let dev = Device::open(&img, Access::ReadOnly).unwrap();
    let report = lcfs_image::fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn refuses_existing_filesystem_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let img_s = img.to_str().unwrap();
    assert!(mkfs(&["-q", "-s", "8M", img_s]).status.success());

    let out = mkfs(&["-q", img_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("existing signature (lcfs)"));

    // An ext4 signature is refused too, and -f overwrites it.
    let mut head = vec![0u8; 4096];
    head[1080] = 0x53;
    head[1081] = 0xef;
    std::fs::write(&img, [head, vec![0u8; 8 << 20]].concat()).unwrap();
    let out = mkfs(&["-q", img_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ext2/ext3/ext4"));
    assert!(mkfs(&["-q", "-f", img_s]).status.success());
    let mut dev = Device::open(&img, Access::ReadOnly).unwrap();
    assert!(dev.read_superblock().is_ok());
    assert!(lcfs_image::probe::signatures(&mut dev).unwrap() == vec!["lcfs"]);
}

#[test]
fn clear_errors_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.img");
    std::fs::write(&small, vec![0u8; 512 * 1024]).unwrap();
    let out = mkfs(&[small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too small"));

    let out = mkfs(&[dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));

    let out = mkfs(&["--bogus"]);
    assert_eq!(out.status.code(), Some(1));
    let out = mkfs(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--force"));

    let long = "x".repeat(64);
    let img = dir.path().join("l.img");
    let out = mkfs(&["-s", "4M", "-L", &long, img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("label"));
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let out = mkfs(&["-n", img.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn closed_pipe_still_formats() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let img_s = img.to_str().unwrap();
    let out = run_with_closed_stdout(
        Command::new(env!("CARGO_BIN_EXE_mkfs-lcfs")).args(["-s", "16M", img_s]),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), &*stderr), (Some(0), ""));
    let dev = Device::open(&img, Access::ReadOnly).unwrap();
    let report = lcfs_image::fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn sizes_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // Too small, or too large for the host's filesystem: no file is left behind.
    for size in ["0", "512K", "100000T"] {
        let img = dir.path().join(format!("{size}.img"));
        let out = mkfs(&["-q", "-s", size, img.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "-s {size}");
        assert!(!img.exists(), "-s {size} left {}", img.display());
    }
    // A file larger than the size is cut only with -f.
    let data = dir.path().join("data");
    std::fs::write(&data, vec![7u8; 3 << 20]).unwrap();
    let out = mkfs(&["-q", "-s", "2M", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use -f"));
    assert_eq!(std::fs::read(&data).unwrap(), vec![7u8; 3 << 20]);
    let out = mkfs(&["-q", "-f", "-s", "2M", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 2 << 20);
    // A dry run previews an image that does not exist yet, and creates nothing.
    let new = dir.path().join("new.img");
    let out = mkfs(&["-n", "-s", "8M", new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2048 blocks"));
    assert!(!new.exists());
    // "MB" is not guessed at.
    let out = mkfs(&["-n", "-s", "8MB", new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K, M, G or T"));
}

#[test]
fn trailing_size_argument_as_mke2fs_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("t.img");
    // A bare number counts KiB, as mke2fs's fs-size.
    let out = mkfs(&["-q", img.to_str().unwrap(), "8192"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 << 20);
    let out = mkfs(&["-n", "-f", img.to_str().unwrap(), "4M"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1024 blocks"));
    // Both ways at once must agree.
    let out = mkfs(&["-q", "-f", "-s", "8M", img.to_str().unwrap(), "4M"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("disagree"));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 << 20);
}

//! `mkfs.lcfs --rootdir` and `--tar`: a source tree is written into an image, which is then read
//! back through the format core and compared with the source in every attribute mkfs copies;
//! fsck must find the image clean. Also the refusals: a missing source, a tree larger than the
//! filesystem, both sources at once.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lcfs_format::data::MapKind;
use lcfs_format::records::{mode, InodeRecord};
use lcfs_format::volume::Volume;
use lcfs_format::ROOT_INO;
use lcfs_image::{Access, Device};
use rustix::fs::{AtFlags, Mode, Timestamps, CWD};

const BS: u64 = 4096;

fn mkfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkfs-lcfs"))
        .args(args)
        .output()
        .expect("run mkfs.lcfs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `fsck.lcfs -n` on `img` must find it clean, and so must the check of the library it runs
/// (the library is this build's; the binary is the workspace's, built by `cargo test
/// --workspace` next to mkfs.lcfs).
fn fsck_clean(img: &Path) {
    let dev = Device::open(img, Access::ReadOnly).unwrap();
    let report = lcfs_image::fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.errors);
    let bin = Path::new(env!("CARGO_BIN_EXE_mkfs-lcfs")).with_file_name("fsck-lcfs");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        bin.display()
    );
    let out = Command::new(&bin).arg("-n").arg(img).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "fsck.lcfs -n: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("clean"), "{}", text(&out.stdout));
}

/// One inode of the image as read back.
#[derive(Debug)]
struct Got {
    ino: u64,
    rec: InodeRecord,
    /// File contents (regular files), symlink target (symlinks).
    data: Vec<u8>,
    /// File blocks with blocks on disk.
    allocated: BTreeSet<u64>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every path of the first layer of `img` ("" is the root), read through the format core.
fn read_image(img: &Path) -> BTreeMap<Vec<u8>, Got> {
    let dev = Device::open(img, Access::ReadOnly).unwrap();
    let (mut vol, other) = Volume::open(dev).unwrap();
    assert_eq!(other, None);
    let layer = vol.find_layer(b"default").unwrap().expect("first layer").id;
    let mut out = BTreeMap::new();
    let mut todo = vec![(Vec::new(), ROOT_INO)];
    while let Some((path, ino)) = todo.pop() {
        let rec = vol.inode(layer, ino).unwrap();
        let mut data = Vec::new();
        let mut allocated = BTreeSet::new();
        match rec.mode & mode::S_IFMT {
            mode::S_IFDIR => {
                let mut entries = Vec::new();
                vol.readdir(layer, ino, 0, &mut |e| {
                    entries.push((e.name.to_vec(), e.ino));
                    true
                })
                .unwrap();
                for (name, child) in entries {
                    let mut p = path.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&name);
                    todo.push((p, child));
                }
            }
            mode::S_IFREG => {
                let blocks = rec.size.div_ceil(BS);
                // The contents of small files only (a huge sparse one has its blocks listed).
                let contents = rec.size <= 64 << 20;
                let mut f = 0;
                while f < blocks {
                    let m = vol.map_read(layer, ino, f, blocks - f).unwrap();
                    assert!(
                        !matches!(m.kind, MapKind::Unwritten { .. }),
                        "{}: unwritten extent left",
                        text(&path)
                    );
                    if let MapKind::Written { disk_block } = m.kind {
                        allocated.extend(f..f + m.len);
                        if contents {
                            let mut b = vec![0u8; (m.len * BS) as usize];
                            vol.store().read_at(disk_block * BS, &mut b).unwrap();
                            data.extend_from_slice(&b);
                        }
                    } else if contents {
                        data.resize(data.len() + (m.len * BS) as usize, 0);
                    }
                    f += m.len;
                }
                data.truncate(rec.size as usize);
                assert_eq!(rec.blocks, allocated.len() as u64, "{}", text(&path));
            }
            mode::S_IFLNK => {
                let mut b = vec![0u8; 8192];
                let n = vol.read_inline(layer, ino, &mut b).unwrap();
                data = b[..n].to_vec();
            }
            _ => {}
        }
        let mut names = Vec::new();
        vol.list_xattrs(layer, ino, &mut |n| {
            names.push(n.to_vec());
            true
        })
        .unwrap();
        let mut xattrs = BTreeMap::new();
        for n in names {
            let mut v = vec![0u8; 70000];
            let len = vol.get_xattr(layer, ino, &n, &mut v).unwrap();
            xattrs.insert(n, v[..len].to_vec());
        }
        out.insert(
            path,
            Got {
                ino,
                rec,
                data,
                allocated,
                xattrs,
            },
        );
    }
    out
}

/// Deterministic, never all-zero block contents.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let ts = |(s, n)| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: n,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: ts(atime),
            last_modification: ts(mtime),
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, m: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
}

/// Sets a user xattr; false if the filesystem does not take them.
fn try_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

/// POSIX ACLs are xattrs in the VFS's encoding; mkfs copies them as they are.
const ACL_NAMES: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];

/// An ACL in the VFS's xattr encoding (version 2; entries of tag, permissions and id, sorted
/// by tag and id as the kernel wants them).
fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// The xattrs of `path` that mkfs copies.
fn source_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return out,
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if ![&b"user."[..], b"trusted.", b"security."]
            .iter()
            .any(|p| name.starts_with(p))
            && !ACL_NAMES.contains(&name)
        {
            continue;
        }
        let mut v = vec![0u8; 65536];
        let len =
            rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut v[..]).unwrap();
        out.insert(name.to_vec(), v[..len].to_vec());
    }
    out
}

/// The source tree of the --rootdir test; returns whether xattrs were set.
fn build_tree(src: &Path) -> (bool, bool) {
    let root = rustix::process::getuid().is_root();
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::create_dir(src.join("sticky")).unwrap();
    fs::create_dir(src.join("setgid")).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("small"), pattern(100, 1)).unwrap();
    fs::write(src.join("one_block"), pattern(4096, 2)).unwrap();
    fs::write(src.join("a/multi"), pattern(3 * 4096 + 123, 3)).unwrap();
    fs::write(src.join("a/b/c/deep"), pattern(5000, 4)).unwrap();
    // Zeros written out (not a hole) in the middle block, and a short last block.
    let mut z = pattern(4096, 5);
    z.extend_from_slice(&[0u8; 4096]);
    z.extend_from_slice(&pattern(10, 6));
    fs::write(src.join("zeros_inside"), &z).unwrap();
    // A hole in the middle (blocks 1-9) and at the end (11-19).
    let mut f = File::create(src.join("sparse")).unwrap();
    f.write_all(&pattern(4096, 7)).unwrap();
    f.seek(SeekFrom::Start(10 * BS + 100)).unwrap();
    f.write_all(&pattern(200, 8)).unwrap();
    f.set_len(20 * BS).unwrap();
    drop(f);
    // A hard-linked pair in two directories.
    fs::write(src.join("a/hard1"), pattern(6000, 9)).unwrap();
    fs::hard_link(src.join("a/hard1"), src.join("a/b/hard2")).unwrap();
    std::os::unix::fs::symlink("small", src.join("rel_link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("a/abs_link")).unwrap();
    let long_target = "x/".repeat(600);
    std::os::unix::fs::symlink(&long_target, src.join("long_link")).unwrap();
    rustix::fs::mknodat(
        CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let devices = rustix::fs::mknodat(
        CWD,
        src.join("chr"),
        rustix::fs::FileType::CharacterDevice,
        Mode::from_raw_mode(0o620),
        rustix::fs::makedev(1, 3),
    )
    .is_ok()
        && rustix::fs::mknodat(
            CWD,
            src.join("blk"),
            rustix::fs::FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            rustix::fs::makedev(259, 0x12345),
        )
        .is_ok();
    if !devices {
        eprintln!("no device nodes in the source tree: mknod needs privileges");
    }
    // Odd modes.
    chmod(&src.join("a/multi"), 0o4755);
    chmod(&src.join("small"), 0o2604);
    chmod(&src.join("empty"), 0o1400);
    chmod(&src.join("sticky"), 0o1777);
    chmod(&src.join("setgid"), 0o2750);
    // Extended attributes, where the filesystem takes user ones.
    let xattrs = try_xattr(&src.join("small"), "user.color", b"blue")
        && try_xattr(&src.join("a"), "user.dir", b"")
        && try_xattr(&src.join("a/hard1"), "user.big", &pattern(3000, 10))
        && try_xattr(src, "user.root", b"r");
    if !xattrs {
        eprintln!("no user xattrs in the source tree: the filesystem does not take them");
    }
    // POSIX ACLs: user 1000 may read `small`; `a` hands user 1000 rwx to what it gets.
    const UNDEF: u32 = u32::MAX;
    let access = acl_xattr(&[
        (0x01, 6, UNDEF),
        (0x02, 4, 1000),
        (0x04, 0, UNDEF),
        (0x10, 0, UNDEF),
        (0x20, 4, UNDEF),
    ]);
    let default = acl_xattr(&[
        (0x01, 7, UNDEF),
        (0x02, 7, 1000),
        (0x04, 5, UNDEF),
        (0x10, 7, UNDEF),
        (0x20, 5, UNDEF),
    ]);
    let acls = try_xattr(&src.join("small"), "system.posix_acl_access", &access)
        && try_xattr(&src.join("a"), "system.posix_acl_default", &default);
    if !acls {
        eprintln!("no POSIX ACLs in the source tree: the filesystem does not take them");
    }
    if root {
        assert!(try_xattr(&src.join("one_block"), "trusted.t", b"secret"));
        // Owners other than ours, where we may give them.
        for (p, uid, gid) in [("one_block", 1234, 5678), ("a/b", 4321, 8765)] {
            rustix::fs::chownat(
                CWD,
                src.join(p),
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    }
    // Times with nanoseconds, directories last (their entries change them).
    for (i, p) in [
        "empty",
        "small",
        "one_block",
        "a/multi",
        "a/b/c/deep",
        "zeros_inside",
        "sparse",
        "a/hard1",
        "rel_link",
        "a/abs_link",
        "long_link",
        "fifo",
        "sock",
    ]
    .iter()
    .enumerate()
    {
        let i = i as i64;
        set_times(
            &src.join(p),
            (1_500_000_000 + i, 111_111_111 * (i % 9)),
            (1_400_000_000 + 1000 * i, 123_456_789 + i),
        );
    }
    for (i, p) in ["a/b/c", "a/b", "a", "sticky", "setgid", ""]
        .iter()
        .enumerate()
    {
        let i = i as i64;
        set_times(
            &src.join(p),
            (1_600_000_000 + i, 5),
            (1_300_000_000 + i, 999_999_999 - i),
        );
    }
    (xattrs, devices)
}

/// The source tree's paths ("" the root) and their metadata as mkfs sees them: files are not
/// read (mkfs reads them after it took their metadata, which may move their atime), and
/// directories are taken after they were listed, which moved theirs as listing them again in
/// mkfs will not (relatime).
fn source_meta(src: &Path) -> BTreeMap<Vec<u8>, (PathBuf, fs::Metadata)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(Vec::new(), src.to_path_buf())];
    while let Some((rel, path)) = todo.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                todo.push((r, e.path()));
            }
        }
        out.insert(rel, (path, m));
    }
    for (path, m) in out.values_mut() {
        *m = fs::symlink_metadata(path).unwrap();
    }
    out
}

#[test]
fn rootdir_tree_is_copied_with_every_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let (xattrs, devices) = build_tree(&src);
    let before = source_meta(&src);
    let img = dir.path().join("disk.img");
    let out = mkfs(&[
        "-s",
        "64M",
        "--rootdir",
        src.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // 8 files (one of them with two names), 5 directories below the root, 3 symlinks.
    assert!(
        stdout.contains("written:     8 files, 5 directories, 3 symbolic links"),
        "{stdout}"
    );
    assert!(stdout.contains("1 extra hard link"), "{stdout}");
    fsck_clean(&img);

    let got = read_image(&img);
    let paths: BTreeSet<_> = before.keys().cloned().collect();
    let got_paths: BTreeSet<_> = got.keys().cloned().collect();
    assert_eq!(
        got_paths, paths,
        "the image holds exactly the source's paths"
    );
    for (rel, (path, m)) in &before {
        let g = &got[rel];
        let name = path.display();
        assert_eq!(g.rec.mode, m.mode(), "{name}: mode");
        assert_eq!((g.rec.uid, g.rec.gid), (m.uid(), m.gid()), "{name}: owner");
        assert_eq!(g.rec.nlink as u64, m.nlink(), "{name}: nlink");
        assert_eq!(
            (g.rec.mtime.sec, i64::from(g.rec.mtime.nsec)),
            (m.mtime(), m.mtime_nsec()),
            "{name}: mtime"
        );
        assert_eq!(
            (g.rec.atime.sec, i64::from(g.rec.atime.nsec)),
            (m.atime(), m.atime_nsec()),
            "{name}: atime"
        );
        assert_eq!(
            (g.rec.ctime.sec, i64::from(g.rec.ctime.nsec)),
            (m.ctime(), m.ctime_nsec()),
            "{name}: ctime"
        );
        let ft = m.file_type();
        if ft.is_file() {
            assert_eq!(g.rec.size, m.len(), "{name}: size");
            assert!(g.data == fs::read(path).unwrap(), "{name}: contents differ");
        } else if ft.is_symlink() {
            let target = fs::read_link(path).unwrap();
            assert_eq!(g.data, target.as_os_str().as_bytes(), "{name}: target");
            assert_eq!(g.rec.size, g.data.len() as u64);
        }
        if std::os::unix::fs::FileTypeExt::is_char_device(&ft)
            || std::os::unix::fs::FileTypeExt::is_block_device(&ft)
        {
            let (maj, min) = (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev()));
            let want = (min as u64 & 0xff) | ((maj as u64) << 8) | ((min as u64 & !0xff) << 12);
            assert_eq!(g.rec.rdev, want, "{name}: rdev");
        } else {
            assert_eq!(g.rec.rdev, 0, "{name}: rdev");
        }
        assert_eq!(g.xattrs, source_xattrs(path), "{name}: xattrs");
    }
    // Hard links: one inode, two names.
    assert_eq!(got[&b"a/hard1"[..]].ino, got[&b"a/b/hard2"[..]].ino);
    assert_eq!(got[&b"a/hard1"[..]].rec.nlink, 2);
    // Holes stay holes: neither the sparse file's holes nor written zero blocks take blocks.
    let blocks = |p: &[u8]| got[p].allocated.iter().copied().collect::<Vec<_>>();
    assert_eq!(blocks(b"sparse"), [0, 10]);
    assert_eq!(blocks(b"zeros_inside"), [0, 2]);
    assert_eq!(blocks(b"empty"), Vec::<u64>::new());
    assert_eq!(blocks(b"a/multi"), [0, 1, 2, 3]);
    // The kinds that have no data.
    let kind = |p: &[u8]| got[p].rec.mode & mode::S_IFMT;
    assert_eq!(kind(b"fifo"), mode::S_IFIFO);
    assert_eq!(kind(b"sock"), mode::S_IFSOCK);
    if devices {
        assert_eq!(kind(b"chr"), mode::S_IFCHR);
        assert_eq!(kind(b"blk"), mode::S_IFBLK);
        assert_eq!(
            got[&b"blk"[..]].rec.rdev,
            0x45 | (259 << 8) | (0x12300 << 12)
        );
    }
    // Odd modes, spelled out.
    assert_eq!(got[&b"a/multi"[..]].rec.mode, mode::S_IFREG | 0o4755);
    assert_eq!(got[&b"small"[..]].rec.mode, mode::S_IFREG | 0o2604);
    assert_eq!(got[&b"sticky"[..]].rec.mode, mode::S_IFDIR | 0o1777);
    if xattrs {
        assert_eq!(got[&b"small"[..]].xattrs[&b"user.color"[..]], b"blue");
        assert_eq!(
            got[&b"a/hard1"[..]].xattrs[&b"user.big"[..]],
            pattern(3000, 10)
        );
        assert_eq!(got[&b""[..]].xattrs[&b"user.root"[..]], b"r");
        assert!(got[&b"a"[..]].xattrs.contains_key(&b"user.dir"[..]));
    }
    if rustix::process::getuid().is_root() {
        assert_eq!(got[&b"one_block"[..]].xattrs[&b"trusted.t"[..]], b"secret");
        assert_eq!(got[&b"a/b"[..]].rec.uid, 4321);
        assert_eq!(got[&b"one_block"[..]].rec.gid, 5678);
    }
}

#[test]
fn rootdir_dry_run_counts_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let img = dir.path().join("new.img");
    let out = mkfs(&[
        "-n",
        "-s",
        "64M",
        "--rootdir",
        src.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("would write: 8 files, 5 directories"),
        "{stdout}"
    );
    // 1 + 1 + 4 + 2 + 2 + 2 (sparse) + 2 (hard1) data blocks; zeros and holes not counted.
    assert!(stdout.contains("in 14 blocks"), "{stdout}");
    assert!(!img.exists());
    // On an existing image, nothing is written either.
    fs::write(&img, vec![0u8; 8 << 20]).unwrap();
    let out = mkfs(&[
        "-n",
        "--rootdir",
        src.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(fs::read(&img).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn refusals_name_the_problem_and_leave_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let img_s = img.to_str().unwrap();
    // A source that does not exist: refused before the image is made.
    let missing = dir.path().join("missing");
    let out = mkfs(&["-s", "16M", "--rootdir", missing.to_str().unwrap(), img_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    assert!(!img.exists());
    let out = mkfs(&["-s", "16M", "--tar", missing.to_str().unwrap(), img_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    assert!(!img.exists());
    // Both sources at once.
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let out = mkfs(&[
        "-s",
        "16M",
        "--rootdir",
        src.to_str().unwrap(),
        "--tar",
        "-",
        img_s,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
    assert!(!img.exists());
    // A tree larger than the filesystem: a clear error naming the file, and no image left.
    fs::write(src.join("small"), b"fits").unwrap();
    fs::write(src.join("huge"), pattern(12 << 20, 1)).unwrap();
    let out = mkfs(&["-s", "8M", "--rootdir", src.to_str().unwrap(), img_s]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("huge") && err.contains("no space left"),
        "{err}"
    );
    assert!(!img.exists());
    // On an image that existed, no filesystem is left to pass for a complete one.
    fs::write(&img, vec![0u8; 8 << 20]).unwrap();
    let out = mkfs(&["--rootdir", src.to_str().unwrap(), img_s]);
    assert_eq!(out.status.code(), Some(1));
    let mut dev = Device::open(&img, Access::ReadOnly).unwrap();
    assert!(lcfs_image::probe::signatures(&mut dev).unwrap().is_empty());
    // A sparse file larger than the filesystem fits: only its data takes blocks.
    fs::remove_file(src.join("huge")).unwrap();
    let f = File::create(src.join("huge_sparse")).unwrap();
    f.set_len(1 << 40).unwrap();
    drop(f);
    let img2 = dir.path().join("sparse.img");
    let out = mkfs(&[
        "-q",
        "-s",
        "8M",
        "--rootdir",
        src.to_str().unwrap(),
        img2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"");
    let got = read_image(&img2);
    assert_eq!(got[&b"huge_sparse"[..]].rec.size, 1 << 40);
    assert_eq!(got[&b"huge_sparse"[..]].rec.blocks, 0);
}

/// A tar header for `path` of type `ty`, owned by 1234:5678.
fn header(ty: tar::EntryType, m: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(m);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

/// The archive of the --tar test.
fn build_tar() -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    // The root's own attributes.
    let mut h = header(T::Directory, 0o750, 0, 1_000_000_001);
    b.append_data(&mut h, "./", std::io::empty()).unwrap();
    let mut h = header(T::Directory, 0o2775, 0, 1_000_000_002);
    b.append_data(&mut h, "dir", std::io::empty()).unwrap();
    // A file with PAX times to the nanosecond and xattrs.
    b.append_pax_extensions([
        ("mtime", &b"1600000000.123456789"[..]),
        ("atime", b"1600000001.5"),
        ("ctime", b"1600000002.000000001"),
        ("SCHILY.xattr.user.tar", b"value"),
        ("SCHILY.xattr.security.x", &[0u8, 1, 2, 255][..]),
    ])
    .unwrap();
    let data = pattern(3 * 4096 + 17, 3);
    let mut h = header(T::Regular, 0o4751, data.len() as u64, 1);
    b.append_data(&mut h, "dir/file", &data[..]).unwrap();
    // A hard link to it, and a symlink.
    let mut h = header(T::Link, 0o644, 0, 2);
    b.append_link(&mut h, "dir/hard", "dir/file").unwrap();
    let mut h = header(T::Symlink, 0o777, 0, 3);
    b.append_link(&mut h, "dir/sym", "file").unwrap();
    // A long name (GNU long name entry) and a long symlink target.
    let long = format!("dir/{}", "n".repeat(150));
    let mut h = header(T::Regular, 0o600, 5, 4);
    b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
    let mut h = header(T::Symlink, 0o777, 0, 5);
    b.append_link(&mut h, "dir/longsym", "t/".repeat(100))
        .unwrap();
    // Device nodes and a FIFO.
    for (name, ty, maj, min) in [
        ("dev/null", T::Char, 1, 3),
        ("dev/nvme", T::Block, 259, 0x12345),
    ] {
        let mut h = header(ty, 0o660, 0, 6);
        h.set_device_major(maj).unwrap();
        h.set_device_minor(min).unwrap();
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    let mut h = header(T::Fifo, 0o640, 0, 7);
    b.append_data(&mut h, "dev/fifo", std::io::empty()).unwrap();
    // Zeros in the middle stay a hole; an empty file; parents the archive never lists.
    let mut z = pattern(4096, 5);
    z.extend_from_slice(&[0u8; 8192]);
    z.extend_from_slice(&pattern(1, 6));
    let mut h = header(T::Regular, 0o644, z.len() as u64, 8);
    b.append_data(&mut h, "implicit/sub/zeros", &z[..]).unwrap();
    let mut h = header(T::Regular, 0o644, 0, 9);
    b.append_data(&mut h, "dir/empty", std::io::empty())
        .unwrap();
    // A path given twice: the later entry wins.
    let mut h = header(T::Regular, 0o644, 3, 10);
    b.append_data(&mut h, "dir/dup", &b"old"[..]).unwrap();
    let mut h = header(T::Regular, 0o640, 3, 11);
    b.append_data(&mut h, "dir/dup", &b"new"[..]).unwrap();
    b.into_inner().unwrap()
}

/// Runs mkfs.lcfs with `stdin` on its standard input.
fn mkfs_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkfs-lcfs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // mkfs may stop reading early on an error: a broken pipe is fine then.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn tar_archive_is_copied_with_every_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let out = mkfs_stdin(
        &["-s", "32M", "--tar", "-", img.to_str().unwrap()],
        &build_tar(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("written:     6 files, 4 directories, 2 symbolic links, 3 special files, 1 extra hard link"),
        "{stdout}"
    );
    assert!(stdout.contains("1 entry by later entries"), "{stdout}");
    fsck_clean(&img);
    let got = read_image(&img);
    let long = format!("dir/{}", "n".repeat(150)).into_bytes();
    let paths: BTreeSet<Vec<u8>> = [
        "",
        "dir",
        "dir/file",
        "dir/hard",
        "dir/sym",
        "dir/longsym",
        "dev",
        "dev/null",
        "dev/nvme",
        "dev/fifo",
        "implicit",
        "implicit/sub",
        "implicit/sub/zeros",
        "dir/empty",
        "dir/dup",
    ]
    .iter()
    .map(|p| p.as_bytes().to_vec())
    .chain([long.clone()])
    .collect();
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), paths);
    let g = |p: &[u8]| &got[p];
    // Owners from the archive, for every entry it lists.
    for p in &paths {
        let r = &g(p).rec;
        if [&b"implicit"[..], b"implicit/sub", b"dev"].contains(&&p[..]) {
            assert_eq!(
                (r.uid, r.gid, r.mode & 0o7777),
                (0, 0, 0o755),
                "{}",
                text(p)
            );
        } else {
            assert_eq!((r.uid, r.gid), (1234, 5678), "{}", text(p));
        }
    }
    assert_eq!(g(b"").rec.mode, mode::S_IFDIR | 0o750);
    assert_eq!(g(b"").rec.mtime.sec, 1_000_000_001);
    assert_eq!(g(b"dir").rec.mode, mode::S_IFDIR | 0o2775);
    assert_eq!(g(b"dir").rec.mtime.sec, 1_000_000_002);
    let f = g(b"dir/file");
    assert_eq!(f.rec.mode, mode::S_IFREG | 0o4751);
    assert_eq!(f.data, pattern(3 * 4096 + 17, 3));
    assert_eq!(
        (f.rec.mtime.sec, f.rec.mtime.nsec),
        (1_600_000_000, 123_456_789)
    );
    assert_eq!(
        (f.rec.atime.sec, f.rec.atime.nsec),
        (1_600_000_001, 500_000_000)
    );
    assert_eq!((f.rec.ctime.sec, f.rec.ctime.nsec), (1_600_000_002, 1));
    assert_eq!(f.xattrs[&b"user.tar"[..]], b"value");
    assert_eq!(f.xattrs[&b"security.x"[..]], [0, 1, 2, 255]);
    assert_eq!(f.rec.nlink, 2);
    assert_eq!(g(b"dir/hard").ino, f.ino);
    assert_eq!(g(b"dir/sym").data, b"file");
    assert_eq!(g(b"dir/sym").rec.mode & mode::S_IFMT, mode::S_IFLNK);
    assert_eq!(g(b"dir/longsym").data, "t/".repeat(100).as_bytes());
    assert_eq!(g(&long).data, b"hello");
    assert_eq!(g(&long).rec.mtime.sec, 4);
    assert_eq!(g(b"dev/null").rec.mode, mode::S_IFCHR | 0o660);
    assert_eq!(g(b"dev/null").rec.rdev, (1 << 8) | 3);
    assert_eq!(g(b"dev/nvme").rec.mode, mode::S_IFBLK | 0o660);
    assert_eq!(g(b"dev/nvme").rec.rdev, 0x45 | (259 << 8) | (0x12300 << 12));
    assert_eq!(g(b"dev/fifo").rec.mode, mode::S_IFIFO | 0o640);
    let z = g(b"implicit/sub/zeros");
    assert_eq!(z.rec.size, 3 * 4096 + 1);
    assert_eq!(z.allocated.iter().copied().collect::<Vec<_>>(), [0, 3]);
    assert_eq!(z.data[4096..3 * 4096], [0u8; 8192]);
    assert_eq!(g(b"dir/empty").rec.size, 0);
    assert_eq!(g(b"dir/dup").data, b"new");
    assert_eq!(g(b"dir/dup").rec.mode, mode::S_IFREG | 0o640);
}

#[test]
fn tar_gnu_sparse_file_keeps_its_holes() {
    // GNU sparse entries come from GNU tar, which the tar crate cannot write.
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("no tar program: GNU sparse entries not tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut f = File::create(src.join("sparse")).unwrap();
    f.seek(SeekFrom::Start(5 * BS)).unwrap();
    f.write_all(&pattern(5000, 1)).unwrap();
    f.set_len(64 * BS).unwrap();
    drop(f);
    let archive = dir.path().join("a.tar");
    let out = Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("sparse")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let img = dir.path().join("disk.img");
    let out = mkfs(&[
        "-q",
        "-s",
        "16M",
        "--tar",
        archive.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    fsck_clean(&img);
    let got = read_image(&img);
    let s = &got[&b"sparse"[..]];
    assert_eq!(s.rec.size, 64 * BS);
    assert!(s.data == fs::read(src.join("sparse")).unwrap());
    assert_eq!(s.allocated.iter().copied().collect::<Vec<_>>(), [5, 6]);
}

#[test]
fn tar_errors_name_the_entry() {
    use tar::EntryType as T;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(T::Regular, 0o644, 2, 1);
    b.append_data(&mut h, "ok", &b"ok"[..]).unwrap();
    let mut h = header(T::Link, 0o644, 0, 1);
    b.append_link(&mut h, "bad/link", "nowhere").unwrap();
    let archive = dir.path().join("bad.tar");
    fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let out = mkfs(&[
        "-s",
        "16M",
        "--tar",
        archive.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad/link") && err.contains("nowhere"), "{err}");
    assert!(!img.exists());
    // A file larger than the filesystem.
    let mut b = tar::Builder::new(Vec::new());
    let data = pattern(10 << 20, 2);
    let mut h = header(T::Regular, 0o644, data.len() as u64, 1);
    b.append_data(&mut h, "big", &data[..]).unwrap();
    let out = mkfs_stdin(
        &["-s", "8M", "--tar", "-", img.to_str().unwrap()],
        &b.into_inner().unwrap(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("-: big") && err.contains("no space left"),
        "{err}"
    );
    assert!(!img.exists());
    // A truncated archive.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(T::Regular, 0o644, 10000, 1);
    b.append_data(&mut h, "cut", &pattern(10000, 1)[..])
        .unwrap();
    let mut bytes = b.into_inner().unwrap();
    bytes.truncate(512 + 4096);
    let out = mkfs_stdin(&["-s", "8M", "--tar", "-", img.to_str().unwrap()], &bytes);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cut"), "{}", text(&out.stderr));
    assert!(!img.exists());
}

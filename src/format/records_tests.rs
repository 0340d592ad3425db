// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Round trips and validation of the tree records.

#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // Test data.
#![allow(clippy::arithmetic_side_effects)] // Test data from small integers.

extern crate std;

use proptest::prelude::*;

use super::*;

fn ts(sec: i64, nsec: u32) -> Timespec {
    Timespec { sec, nsec }
}

fn inode() -> InodeRecord {
    InodeRecord {
        mode: mode::S_IFREG | 0o644,
        uid: 1000,
        gid: 100,
        nlink: 1,
        flags: 0,
        rdev: 0,
        size: 5 << 30,
        blocks: 1 << 18,
        atime: ts(1, 2),
        mtime: ts(-3, 999_999_999),
        ctime: ts(5, 6),
        btime: ts(7, 8),
        generation: 9,
        data_id: 10,
    }
}

#[test]
fn inode_layout_and_round_trip() {
    let r = inode();
    let mut buf = [0u8; INODE_RECORD_SIZE];
    r.encode(&mut buf).unwrap();
    assert_eq!(&buf[0..4], &(0o100_644u32).to_le_bytes());
    assert_eq!(&buf[60..68], &(-3i64).to_le_bytes());
    assert_eq!(&buf[104..112], &10u64.to_le_bytes());
    assert_eq!(InodeRecord::decode(&buf), Ok(r));
}

#[test]
fn inode_flags_are_fixed_bits_at_offset_16() {
    assert_eq!(
        [
            inode_flags::IMMUTABLE,
            inode_flags::APPEND,
            inode_flags::NODUMP,
            inode_flags::NOATIME
        ],
        [1, 2, 4, 8]
    );
    assert_eq!(INODE_FLAGS_KNOWN, 0xf);
    let mut r = inode();
    r.flags = inode_flags::IMMUTABLE | inode_flags::NOATIME;
    let mut buf = [0u8; INODE_RECORD_SIZE];
    r.encode(&mut buf).unwrap();
    assert_eq!(&buf[16..20], &9u32.to_le_bytes());
    assert_eq!(InodeRecord::decode(&buf), Ok(r));
    let names: std::vec::Vec<_> = inode_flags::names(r.flags).collect();
    assert_eq!(names, ["immutable", "noatime"]);
    assert_eq!(inode_flags::names(0).count(), 0);
    assert_eq!(inode_flags::names(u32::MAX).count(), 4);
}

#[test]
fn inode_validation() {
    let mut buf = [0u8; INODE_RECORD_SIZE];
    let mut bad = inode();
    bad.mode = 0o644; // no type
    bad.encode(&mut buf).unwrap();
    assert!(InodeRecord::decode(&buf).is_err());
    let mut bad = inode();
    bad.atime.nsec = 1_000_000_000;
    bad.encode(&mut buf).unwrap();
    assert!(InodeRecord::decode(&buf).is_err());
    for unknown in [1 << 4, 1 << 31] {
        let mut bad = inode();
        bad.flags = inode_flags::KNOWN | unknown;
        bad.encode(&mut buf).unwrap();
        assert_eq!(
            InodeRecord::decode(&buf),
            Err(FormatError::BadField("inode flags"))
        );
    }
    inode().encode(&mut buf).unwrap();
    buf[120] = 1;
    assert!(InodeRecord::decode(&buf).is_err());
    assert!(InodeRecord::decode(&buf[..100]).is_err());
}

#[test]
fn names() {
    assert!(check_name(b"a").is_ok());
    assert!(check_name(&[b'x'; 255]).is_ok());
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_layer_name("layer-1".as_bytes()).is_ok());
    assert!(check_layer_name(&[0xff, 0xfe]).is_err());
}

#[test]
fn dirent_round_trip_and_offsets() {
    let d = DirentRecord {
        ino: 42,
        dtype: 8,
        name: b"hello.txt",
    };
    let mut buf = [0u8; 300];
    let n = d.encode(&mut buf).unwrap();
    assert_eq!(DirentRecord::decode(&buf[..n]), Ok(d));
    assert!(DirentRecord::decode(&buf[..n - 1]).is_err());
    for h in [0u64, 1, u64::MAX, 0x8000_0000_0000_0000] {
        for i in [0, 1, 255] {
            let off = dirent_offset(h, i).unwrap();
            assert!((256..1 << 63).contains(&off));
            assert_eq!(off & 0xff, i);
        }
        assert_eq!(dirent_offset(h, 256), None);
    }
    let key = HashKey(1, 2);
    assert_ne!(key.hash(b"a"), key.hash(b"b"));
    assert_ne!(
        key.hash(b"a"),
        HashKey(1, 3).hash(b"a"),
        "the key changes the hash"
    );
}

#[test]
fn extent_validation() {
    let e = ExtentRecord {
        disk_block: 10,
        len: 5,
        flags: extent_flags::UNWRITTEN,
    };
    let mut buf = [0u8; EXTENT_RECORD_SIZE];
    e.encode(&mut buf).unwrap();
    assert_eq!(ExtentRecord::decode(&buf, 15), Ok(e));
    assert!(
        ExtentRecord::decode(&buf, 14).is_err(),
        "past the end of the device"
    );
    let mut bad = buf;
    bad[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert!(ExtentRecord::decode(&bad, 100).is_err(), "empty extent");
    let mut bad = buf;
    bad[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(ExtentRecord::decode(&bad, u64::MAX).is_err(), "overflow");
}

#[test]
fn layer_round_trip() {
    let l = LayerRecord {
        parent: 3,
        flags: layer_flags::READ_ONLY,
        children: 2,
        create_time: ts(100, 5),
        root: 77,
        bytes_used: 1 << 40,
        inodes_used: 12,
        next_ino: 13,
        own_bytes: 1 << 30,
        own_birth: 2,
        name: b"sha256:abc",
    };
    let mut buf = [0u8; 400];
    let n = l.encode(&mut buf).unwrap();
    assert_eq!(n, 73 + 10);
    assert_eq!(&buf[12..16], &2u32.to_le_bytes());
    assert_eq!(&buf[28..32], &2u32.to_le_bytes());
    assert_eq!(&buf[56..64], &13u64.to_le_bytes());
    assert_eq!(&buf[64..72], &(1u64 << 30).to_le_bytes());
    assert_eq!(&buf[73..83], b"sha256:abc");
    assert_eq!(LayerRecord::decode(&buf[..n], 4, 1000), Ok(l));
    // Only a frozen layer counts an older layer's writes as its own.
    let mut rw = buf;
    rw[8..12].fill(0);
    assert!(
        LayerRecord::decode(&rw[..n], 4, 1000).is_err(),
        "own_birth of a read-write layer"
    );
    assert!(
        LayerRecord::decode(&buf[..n], 2, 1000).is_err(),
        "own_birth not older"
    );
    let mut big = buf;
    big[64..72].copy_from_slice(&(1u64 << 41).to_le_bytes());
    assert!(
        LayerRecord::decode(&big[..n], 4, 1000).is_err(),
        "own above used"
    );
    assert!(
        LayerRecord::decode(&buf[..n], 3, 1000).is_err(),
        "own parent"
    );
    assert!(
        LayerRecord::decode(&buf[..n], 4, 50).is_err(),
        "root past the end"
    );
}

#[test]
fn link_round_trip() {
    let l = LinkRecord {
        count: 2,
        name: b"hello",
    };
    let mut buf = [0u8; 300];
    let n = l.encode(&mut buf).unwrap();
    assert_eq!(LinkRecord::decode(&buf[..n]), Ok(l));
    buf[0..4].fill(0);
    assert!(LinkRecord::decode(&buf[..n]).is_err(), "zero count");
}

#[test]
fn xattr_round_trip_inline_and_external() {
    let mut buf = [0u8; 1100];
    let small = XattrRecord {
        name: b"user.comment",
        value: XattrValue::Inline(b"hi there"),
    };
    let n = small.encode(&mut buf).unwrap();
    assert_eq!(XattrRecord::decode(&buf[..n], 100), Ok(small));
    let big = XattrRecord {
        name: b"security.big",
        value: XattrValue::External {
            extent: ExtentRecord {
                disk_block: 10,
                len: 3,
                flags: 0,
            },
            len: 9000,
        },
    };
    let n = big.encode(&mut buf).unwrap();
    assert_eq!(XattrRecord::decode(&buf[..n], 100), Ok(big));
    assert!(
        XattrRecord::decode(&buf[..n], 12).is_err(),
        "extent past the end"
    );
    let key = super::super::node::Key::new(5, kind::XATTR, 256);
    assert_eq!(fs_leaf_refs(&key, &buf[..n], 100), Ok(Some((10, 3))));
    // A value that fits inline must not be stored outside.
    let wrong = XattrRecord {
        name: b"user.x",
        value: XattrValue::External {
            extent: ExtentRecord {
                disk_block: 10,
                len: 1,
                flags: 0,
            },
            len: 10,
        },
    };
    let n = wrong.encode(&mut buf).unwrap();
    assert!(XattrRecord::decode(&buf[..n], 100).is_err());
    let too_big = XattrRecord {
        name: b"user.x",
        value: XattrValue::Inline(&[1; 1020]),
    };
    assert!(too_big.encode(&mut buf).is_err());
}

#[test]
fn inline_data_round_trip() {
    let mut buf = [0u8; INLINE_MAX];
    let n = put_inline_data(&mut buf, b"/target/of/link").unwrap();
    assert_eq!(inline_data(&buf[..n]), Ok(&b"/target/of/link"[..]));
    assert!(put_inline_data(&mut buf, &[0; INLINE_MAX]).is_err());
}

proptest! {
    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400), id in any::<u64>()) {
        let _ = InodeRecord::decode(&data);
        let _ = DirentRecord::decode(&data);
        let _ = ExtentRecord::decode(&data, 1 << 40);
        let _ = LayerRecord::decode(&data, id, 1 << 40);
        let _ = inline_data(&data);
        let _ = LinkRecord::decode(&data);
        let _ = XattrRecord::decode(&data, 1 << 40);
    }

    #[test]
    fn inode_round_trips(mode_type in 0usize..7, perm in 0u32..0o7777, vals in any::<[u64; 6]>(), nsec in 0u32..1_000_000_000) {
        let types = [mode::S_IFREG, mode::S_IFDIR, mode::S_IFLNK, mode::S_IFCHR, mode::S_IFBLK, mode::S_IFIFO, mode::S_IFSOCK];
        let r = InodeRecord {
            mode: types[mode_type] | perm,
            uid: vals[0] as u32,
            gid: (vals[0] >> 32) as u32,
            nlink: vals[1] as u32,
            flags: 0,
            rdev: vals[2],
            size: vals[3] >> 1,
            blocks: vals[4],
            atime: ts(vals[5] as i64, nsec),
            mtime: ts(-(vals[5] as i64 >> 1), nsec),
            ctime: ts(0, nsec),
            btime: ts(1, 0),
            generation: vals[1],
            data_id: vals[2],
        };
        let mut buf = [0u8; INODE_RECORD_SIZE];
        r.encode(&mut buf).unwrap();
        prop_assert_eq!(InodeRecord::decode(&buf), Ok(r));
    }
}

#[test]
fn posix_acls_are_checked_as_the_kernel_decodes_them() {
    let acl = |entries: &[(u16, u16, u32)]| {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(t, p, i) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&i.to_le_bytes());
        }
        v
    };
    let undef = u32::MAX;
    let good = acl(&[
        (1, 6, undef),
        (2, 4, 1000),
        (4, 4, undef),
        (0x10, 4, undef),
        (0x20, 0, undef),
    ]);
    assert!(check_posix_acl(&good).is_ok());
    assert!(check_posix_acl(&acl(&[])).is_ok());
    let bad = [
        good[..good.len() - 1].to_vec(),                // a cut entry
        [&3u32.to_le_bytes()[..], &good[4..]].concat(), // version 3
        acl(&[(0x40, 4, undef)]),                       // unknown tag
        acl(&[(1, 8, undef)]),                          // permissions past rwx
        acl(&[(2, 4, undef)]),                          // a named user without an id
        std::vec![2, 0],                                // shorter than the header
    ];
    for b in &bad {
        assert!(check_posix_acl(b).is_err(), "{b:?}");
    }
}

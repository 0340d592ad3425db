//! File contents identity (`data_id`): unique across layers, kept by clones and snapshots,
//! renewed before a change, and the frozen layer page-cache sharing reads shared contents from.

use lcfs_format::namespace::NewInode;
use lcfs_format::records::{mode, Timespec};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::Error;
use lcfs_format::volume::Volume;
use lcfs_format::ROOT_INO;
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

fn fresh() -> Volume<MemDevice> {
    let sb = Superblock::new(4096, [7; 16], 1_700_000_000);
    Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap()
}

fn node(m: u32) -> NewInode {
    NewInode {
        mode: m,
        ..NewInode::default()
    }
}

fn data_id(vol: &mut Volume<MemDevice>, layer: u64, ino: u64) -> u64 {
    vol.inode(layer, ino).unwrap().data_id
}

#[test]
fn new_files_in_sibling_clones_get_different_ids() {
    let mut vol = fresh();
    vol.freeze_layer(1).unwrap();
    let a = vol.create_layer(b"a", Some(1), NOW).unwrap();
    let b = vol.create_layer(b"b", Some(1), NOW).unwrap();
    let fa = vol
        .create(a, ROOT_INO, b"f", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    let fb = vol
        .create(b, ROOT_INO, b"f", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    // Inode numbers are per layer: the two new files have the same one.
    assert_eq!(fa, fb);
    let (ia, ib) = (data_id(&mut vol, a, fa), data_id(&mut vol, b, fb));
    assert_ne!(ia, 0);
    assert_ne!(ia, ib, "different contents, same data_id");
    // Only regular files have contents with an identity.
    let d = vol
        .create(a, ROOT_INO, b"d", &node(mode::S_IFDIR | 0o755), NOW)
        .unwrap();
    assert_eq!(data_id(&mut vol, a, d), 0);
    // The counter is committed: after a remount, new ids are new still.
    vol.commit(NOW).unwrap();
    let mut vol = Volume::open(vol.into_store()).unwrap().0;
    let g = vol
        .create(a, ROOT_INO, b"g", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    let ig = data_id(&mut vol, a, g);
    assert!(ig > ia && ig > ib, "{ig} after {ia} and {ib}");
    vol.commit(NOW).unwrap();
    assert!(fsck::check(vol.into_store(), &mut |_, _, _| {})
        .unwrap()
        .is_clean());
}

#[test]
fn share_source_is_the_oldest_frozen_layer_with_the_same_contents() {
    let mut vol = fresh();
    let f = vol
        .create(1, ROOT_INO, b"f", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    let x = data_id(&mut vol, 1, f);
    // Read-write with no frozen ancestor: nothing to share from.
    assert_eq!(vol.share_source(1, f, x), Ok(None));
    vol.freeze_layer(1).unwrap();
    assert_eq!(vol.share_source(1, f, x), Ok(Some(1)));
    let mid = vol.create_layer(b"mid", Some(1), NOW).unwrap();
    vol.freeze_layer(mid).unwrap();
    let c = vol.create_layer(b"c", Some(mid), NOW).unwrap();
    let d = vol.create_layer(b"d", Some(mid), NOW).unwrap();
    assert_eq!(data_id(&mut vol, c, f), x, "a clone keeps the contents' id");
    assert_eq!(vol.share_source(c, f, x), Ok(Some(1)));
    assert_eq!(vol.share_source(d, f, x), Ok(Some(1)));
    // A change in c renews its id: c's contents are its own, d still shares layer 1's.
    let y = vol.renew_data_id(c, f).unwrap();
    assert_ne!(y, x);
    assert_eq!(data_id(&mut vol, c, f), y);
    assert_eq!(data_id(&mut vol, d, f), x);
    assert_eq!(vol.share_source(c, f, y), Ok(None));
    assert_eq!(vol.share_source(d, f, x), Ok(Some(1)));
    // A snapshot of c holds c's contents: frozen, it is their source.
    let s = vol.snapshot_layer(b"s", c, NOW).unwrap();
    assert_eq!(vol.share_source(s, f, y), Ok(Some(s)));
    // A stale id (asked for contents the layer no longer has) finds nothing.
    assert_eq!(vol.share_source(c, f, x), Ok(None));
    // Frozen layers keep their contents: no renewal there, nor of a directory.
    assert_eq!(vol.renew_data_id(1, f), Err(Error::ReadOnly));
    assert_eq!(vol.renew_data_id(c, ROOT_INO), Err(Error::Invalid));
    assert_eq!(vol.share_source(c, ROOT_INO, 0), Ok(None));
    vol.commit(NOW).unwrap();
    assert!(fsck::check(vol.into_store(), &mut |_, _, _| {})
        .unwrap()
        .is_clean());
}

#[test]
fn fsck_reports_an_id_never_handed_out() {
    use lcfs_format::node::Key;
    use lcfs_format::records::{kind, INODE_RECORD_SIZE};
    let mut vol = fresh();
    let f = vol
        .create(1, ROOT_INO, b"f", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    let d = vol
        .create(1, ROOT_INO, b"d", &node(mode::S_IFDIR | 0o755), NOW)
        .unwrap();
    let put = |vol: &mut Volume<MemDevice>, ino: u64, id: u64| {
        let mut rec = vol.inode(1, ino).unwrap();
        rec.data_id = id;
        let mut buf = [0u8; INODE_RECORD_SIZE];
        rec.encode(&mut buf).unwrap();
        vol.insert(1, &Key::new(ino, kind::INODE, 0), &buf).unwrap();
    };
    put(&mut vol, f, 1 << 30);
    put(&mut vol, d, 5);
    vol.commit(NOW).unwrap();
    let errors = fsck::check(vol.into_store(), &mut |_, _, _| {})
        .unwrap()
        .errors;
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&format!("inode {f}: data_id 1073741824 not below"))),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&format!("inode {d}: data_id 5 on an inode that is not"))),
        "{errors:#?}"
    );
}

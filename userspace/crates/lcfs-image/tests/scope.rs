//! Volumes limited to one layer (`Scope::Layer`), as the kernel runs operations of different
//! layers at once: what such a volume may change and read, the layer record it keeps for a
//! whole volume to write, and the space it reserves when the map is shared.

use lcfs_format::namespace::NewInode;
use lcfs_format::records::{mode, Timespec};
use lcfs_format::refmap::{MapAccess, RefMap};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::Error;
use lcfs_format::volume::{Scope, Volume};
use lcfs_format::ROOT_INO;
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

fn node(m: u32) -> NewInode {
    NewInode {
        mode: m,
        ..NewInode::default()
    }
}

/// A volume with a frozen base layer and two read-write clones of it, `a` and `b`, committed.
fn fresh() -> (Volume<MemDevice>, u64, u64) {
    let sb = Superblock::new(4096, [7; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(4096), sb, Some(b"base"), NOW).unwrap();
    vol.create(1, ROOT_INO, b"img", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    vol.freeze_layer(1).unwrap();
    let a = vol.create_layer(b"a", Some(1), NOW).unwrap();
    let b = vol.create_layer(b"b", Some(1), NOW).unwrap();
    vol.commit(NOW).unwrap();
    (vol, a, b)
}

/// `vol`, limited to `scope`.
fn limit(vol: Volume<MemDevice>, scope: Scope) -> Volume<MemDevice> {
    let (store, map, state) = vol.into_parts();
    Volume::from_parts(store, map, state, scope)
}

#[test]
fn a_layer_volume_changes_its_layer_and_keeps_the_record_for_a_whole_one() {
    let (vol, a, b) = fresh();
    let layer_root = vol.superblock().layer_root;
    let mut vol = limit(vol, Scope::Layer(a));
    let f = vol
        .create(a, ROOT_INO, b"f", &node(mode::S_IFREG | 0o644), NOW)
        .unwrap();
    // Reads of its own layer and of the frozen one; another read-write layer is refused.
    assert_eq!(vol.lookup_name(a, ROOT_INO, b"f").unwrap().unwrap().ino, f);
    assert!(vol.lookup_name(1, ROOT_INO, b"img").unwrap().is_some());
    assert_eq!(
        vol.lookup_name(b, ROOT_INO, b"img").unwrap_err(),
        Error::Busy
    );
    assert_eq!(
        vol.create(b, ROOT_INO, b"g", &node(mode::S_IFREG | 0o644), NOW)
            .unwrap_err(),
        Error::Busy
    );
    // The layer tree is untouched: the changed record stays with the caller.
    assert_eq!(vol.superblock().layer_root, layer_root);
    assert!(!vol.is_aborted());
    let (store, map, mut state) = vol.into_parts();
    let (record, changed) = state.layer_cache.take().unwrap();
    assert!(changed);
    assert_eq!(record.id, a);
    // The root and `img`, shared with the frozen parent, and `f`.
    assert_eq!(record.inodes_used, 3);

    // A whole volume takes it and commits it.
    let mut vol = Volume::from_parts(store, map, state, Scope::Whole);
    vol.keep_layer_record(&record).unwrap();
    vol.commit(NOW).unwrap();
    let (mut vol, _) = Volume::open(vol.into_store()).unwrap();
    assert_eq!(vol.lookup_name(a, ROOT_INO, b"f").unwrap().unwrap().ino, f);
    assert_eq!(vol.layer(a).unwrap().inodes_used, 3);
    let report = fsck::check(vol.into_store(), &mut |_, _, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}

#[test]
fn a_layer_volume_changes_neither_layers_nor_the_superblock() {
    let (vol, a, b) = fresh();
    let mut vol = limit(vol, Scope::Layer(a));
    assert_eq!(
        vol.create_layer(b"c", Some(1), NOW).unwrap_err(),
        Error::Busy
    );
    assert_eq!(vol.freeze_layer(a).unwrap_err(), Error::Busy);
    assert_eq!(vol.remove_layer(b).unwrap_err(), Error::Busy);
    assert_eq!(vol.set_label("x").unwrap_err(), Error::Busy);
    assert_eq!(vol.find_layer(b"a").unwrap_err(), Error::Busy);
    assert_eq!(vol.reclaim(1).unwrap_err(), Error::Busy);
    assert!(vol.commit_begin(NOW).unwrap_err() == Error::Busy);
    // None of these changed anything: the volume is still sound and clean.
    assert!(!vol.is_aborted());
    assert!(!vol.is_dirty());
    // A layer volume of no layer (0) reads frozen layers only.
    let (store, map, state) = vol.into_parts();
    let mut vol = Volume::from_parts(store, map, state, Scope::Layer(0));
    assert!(vol.lookup_name(1, ROOT_INO, b"img").unwrap().is_some());
    assert_eq!(vol.lookup_name(a, ROOT_INO, b"f").unwrap_err(), Error::Busy);
}

#[test]
fn an_owned_map_admits_against_the_free_blocks() {
    let (vol, _, _) = fresh();
    let (store, map, _) = vol.into_parts();
    let per_tree = map.blocks_per_tree();
    let free = map.free;
    let reserve = map.reserve;
    let trees = (free - reserve) / per_tree;
    let mut map: RefMap = map;
    assert!(MapAccess::<MemDevice>::admit(&mut map, trees, true).is_ok());
    assert_eq!(
        MapAccess::<MemDevice>::admit(&mut map, trees + 1, true),
        Err(Error::NoSpace)
    );
    // Removals may use the reserve.
    assert!(MapAccess::<MemDevice>::admit(&mut map, trees + 1, false).is_ok());
    assert_eq!(MapAccess::<MemDevice>::room(&mut map, 0), free - reserve);
    drop(store);
}

#[test]
fn a_layer_volume_leaves_the_first_flag_and_its_feature_bit_to_a_whole_one() {
    use lcfs_format::records::inode_flags;
    use lcfs_format::superblock::INCOMPAT_INODE_FLAGS;
    let (vol, a, _) = fresh();
    // A filesystem from before the feature bit: the first flag stored sets it.
    let (store, map, mut state) = vol.into_parts();
    state.sb.incompat &= !INCOMPAT_INODE_FLAGS;
    let mut vol = Volume::from_parts(store, map, state, Scope::Layer(a));
    assert_eq!(
        vol.set_flags(a, ROOT_INO, inode_flags::NODUMP, NOW)
            .unwrap_err(),
        Error::Busy
    );
    assert!(!vol.is_aborted());
    // Clearing flags needs no bit; a whole volume sets the first one, and the bit with it.
    vol.set_flags(a, ROOT_INO, 0, NOW).unwrap();
    let (store, map, state) = vol.into_parts();
    let mut vol = Volume::from_parts(store, map, state, Scope::Whole);
    vol.set_flags(a, ROOT_INO, inode_flags::NODUMP, NOW)
        .unwrap();
    assert_ne!(vol.superblock().incompat & INCOMPAT_INODE_FLAGS, 0);
    // With the bit set, a layer's volume stores flags too.
    let (store, map, state) = vol.into_parts();
    let mut vol = Volume::from_parts(store, map, state, Scope::Layer(a));
    vol.set_flags(a, ROOT_INO, inode_flags::NOATIME, NOW)
        .unwrap();
}

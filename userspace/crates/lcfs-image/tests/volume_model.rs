//! Model-based tests of whole filesystems: random layer operations (create, clone, freeze,
//! remove, item changes, data extents, commits, reopen) against an in-memory model of per-layer
//! trees, with diff checked against the model and fsck run on the image after every commit.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

use std::collections::BTreeMap;

use lcfs_format::node::Key;
use lcfs_format::records::{kind, ExtentRecord, Timespec};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::Error;
use lcfs_format::volume::Volume;
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;
use proptest::prelude::*;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 5,
};

fn fresh(total: u64) -> Volume<MemDevice> {
    let sb = Superblock::new(total, [3; 16], 1_700_000_000);
    Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap()
}

fn fsck_clean(dev: MemDevice) -> fsck::Report {
    let r = fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "fsck errors: {:#?}", r.errors);
    r
}

#[derive(Clone, Debug, Default)]
struct ModelLayer {
    parent: u64,
    frozen: bool,
    items: BTreeMap<Key, Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    layers: BTreeMap<u64, ModelLayer>,
}

impl Model {
    fn children(&self, id: u64) -> usize {
        self.layers.values().filter(|l| l.parent == id).count()
    }
}

/// Every layer's items equal the model's, and every layer's diff against its parent equals the
/// model's difference.
fn compare(vol: &mut Volume<MemDevice>, model: &Model) {
    let mut ids = Vec::new();
    vol.for_each_layer(&mut |l| {
        ids.push(l.id);
        true
    })
    .unwrap();
    assert_eq!(ids, model.layers.keys().copied().collect::<Vec<_>>());
    for (&id, ml) in &model.layers {
        let l = vol.layer(id).unwrap();
        assert_eq!(l.parent, ml.parent);
        assert_eq!(l.is_read_only(), ml.frozen);
        assert_eq!(l.children as usize, model.children(id));
        let mut got = BTreeMap::new();
        let mut from = Key::MIN;
        while let Some((k, v)) = vol.next(id, &from, |k, v| (*k, v.to_vec())).unwrap() {
            got.insert(k, v);
            from = Key::new(k.id, k.kind, k.offset + 1);
        }
        assert_eq!(&got, &ml.items, "layer {id}");
        let parent_items = model
            .layers
            .get(&ml.parent)
            .map(|p| p.items.clone())
            .unwrap_or_default();
        let mut diff = Vec::new();
        vol.diff(id, Key::MIN, &mut |c| {
            diff.push((c.key, c.old.map(<[u8]>::to_vec), c.new.map(<[u8]>::to_vec)));
            Ok(true)
        })
        .unwrap();
        let keys: std::collections::BTreeSet<&Key> =
            parent_items.keys().chain(ml.items.keys()).collect();
        let want: Vec<_> = keys
            .into_iter()
            .filter(|k| parent_items.get(k) != ml.items.get(k))
            .map(|k| (*k, parent_items.get(k).cloned(), ml.items.get(k).cloned()))
            .collect();
        assert_eq!(diff, want, "diff of layer {id}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create,
    Clone(usize),
    Freeze(usize),
    Remove(usize),
    Insert(usize, u64, usize),
    Extent(usize, u64, u32),
    RemoveItem(usize, u64),
    Reclaim(u32),
    Commit,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Create),
        2 => any::<usize>().prop_map(Op::Clone),
        2 => any::<usize>().prop_map(Op::Freeze),
        1 => any::<usize>().prop_map(Op::Remove),
        10 => (any::<usize>(), 2u64..400, 0usize..300).prop_map(|(l, k, n)| Op::Insert(l, k, n)),
        4 => (any::<usize>(), 2u64..400, 1u32..6).prop_map(|(l, k, n)| Op::Extent(l, k, n)),
        5 => (any::<usize>(), 2u64..400).prop_map(|(l, k)| Op::RemoveItem(l, k)),
        2 => (1u32..20).prop_map(Op::Reclaim),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

fn pick(model: &Model, i: usize) -> Option<u64> {
    if model.layers.is_empty() {
        return None;
    }
    model.layers.keys().nth(i % model.layers.len()).copied()
}

/// Keys of opaque items: inline data (fsck checks its encoding, not its contents).
fn item_key(k: u64) -> Key {
    Key::new(1, kind::INLINE, k)
}

fn inline_value(k: u64, n: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n).map(|x| (x as u64 ^ k) as u8).collect();
    let mut v = vec![0u8; n + 2];
    lcfs_format::records::put_inline_data(&mut v, &data).unwrap();
    v
}

fn run(ops: &[Op]) {
    let mut vol = fresh(4096);
    let mut model = Model::default();
    // Layer 1 ("base") with its root directory inode.
    let mut base = ModelLayer::default();
    vol.next(1, &Key::MIN, |k, v| base.items.insert(*k, v.to_vec()))
        .unwrap();
    model.layers.insert(1, base);
    let mut committed = model.clone();
    let mut names = 1u64;
    for op in ops {
        let r: Result<(), Error> = match *op {
            Op::Create => {
                names += 1;
                let id = vol.create_layer(format!("l{names}").as_bytes(), None, NOW);
                id.map(|id| {
                    let mut l = ModelLayer::default();
                    vol.next(id, &Key::MIN, |k, v| l.items.insert(*k, v.to_vec()))
                        .unwrap();
                    model.layers.insert(id, l);
                })
            }
            Op::Clone(i) => match pick(&model, i) {
                Some(p) => {
                    names += 1;
                    let r = vol.create_layer(format!("l{names}").as_bytes(), Some(p), NOW);
                    match r {
                        Ok(id) => {
                            let items = model.layers[&p].items.clone();
                            model.layers.insert(
                                id,
                                ModelLayer {
                                    parent: p,
                                    frozen: false,
                                    items,
                                },
                            );
                            Ok(())
                        }
                        Err(Error::Invalid) => {
                            assert!(!model.layers[&p].frozen, "clone of a frozen layer refused");
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => Ok(()),
            },
            Op::Freeze(i) => match pick(&model, i) {
                Some(id) => vol.freeze_layer(id).map(|()| {
                    model.layers.get_mut(&id).unwrap().frozen = true;
                }),
                None => Ok(()),
            },
            Op::Remove(i) => match pick(&model, i) {
                Some(id) => match vol.remove_layer(id) {
                    Ok(()) => {
                        assert_eq!(model.children(id), 0);
                        model.layers.remove(&id);
                        Ok(())
                    }
                    Err(Error::Busy) => {
                        assert!(model.children(id) > 0);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                None => Ok(()),
            },
            Op::Insert(i, k, n) => match pick(&model, i) {
                Some(id) => {
                    let key = item_key(k);
                    let value = inline_value(k, n);
                    match vol.insert(id, &key, &value) {
                        Ok(()) => {
                            model.layers.get_mut(&id).unwrap().items.insert(key, value);
                            Ok(())
                        }
                        Err(Error::ReadOnly) => {
                            assert!(model.layers[&id].frozen);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => Ok(()),
            },
            Op::Extent(i, k, n) => match pick(&model, i) {
                Some(id) if !model.layers[&id].frozen => {
                    // Offsets 8 apart: extents of up to 5 blocks never overlap (fsck checks).
                    let key = Key::new(1, kind::EXTENT, k * 8);
                    match vol.alloc_data(n) {
                        Ok((b, len)) => {
                            let e = ExtentRecord {
                                disk_block: b,
                                len,
                                flags: 0,
                            };
                            let mut v = [0u8; 16];
                            e.encode(&mut v).unwrap();
                            vol.insert(id, &key, &v).unwrap();
                            model
                                .layers
                                .get_mut(&id)
                                .unwrap()
                                .items
                                .insert(key, v.to_vec());
                            Ok(())
                        }
                        Err(Error::NoSpace) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            },
            Op::RemoveItem(i, k) => match pick(&model, i) {
                Some(id) => {
                    let key = if k % 3 == 0 {
                        Key::new(1, kind::EXTENT, k * 8)
                    } else {
                        item_key(k)
                    };
                    match vol.remove(id, &key) {
                        Ok(found) => {
                            let was = model.layers.get_mut(&id).unwrap().items.remove(&key);
                            assert_eq!(found, was.is_some());
                            Ok(())
                        }
                        Err(Error::ReadOnly) => {
                            assert!(model.layers[&id].frozen);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => Ok(()),
            },
            Op::Commit => {
                vol.commit(NOW).unwrap();
                committed = model.clone();
                let dev = vol.store().clone();
                fsck_clean(dev);
                Ok(())
            }
            Op::Reclaim(steps) => vol.reclaim(steps).map(|_| ()),
            Op::Reopen => {
                // Drops the running transaction: the image opens at the last commit.
                let dev = vol.into_store();
                vol = Volume::open(dev).unwrap().0;
                model = committed.clone();
                Ok(())
            }
        };
        match r {
            Ok(()) | Err(Error::NotFound | Error::Exists) => {}
            Err(Error::NoSpace) => {
                // Refused before any change: the transaction must still be usable.
                assert!(!vol.is_aborted());
            }
            Err(e) => panic!("{op:?}: {e:?}"),
        }
    }
    compare(&mut vol, &model);
    vol.commit(NOW).unwrap();
    let dev = vol.into_store();
    let mut vol = Volume::open(dev).unwrap().0;
    compare(&mut vol, &model);
    assert_eq!(vol.reclaim(u32::MAX).unwrap(), 0);
    vol.commit(NOW).unwrap();
    let r = fsck_clean(vol.into_store());
    assert_eq!(r.stats.reclaim_queued, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn layers_match_the_model(ops in proptest::collection::vec(op(), 1..250)) {
        run(&ops);
    }
}

#[test]
fn fresh_filesystem_is_clean_and_has_one_layer() {
    let vol = fresh(1024);
    let sb = vol.superblock();
    assert_eq!(sb.generation, 2);
    assert_eq!(sb.layer_count, 1);
    let dev = vol.into_store();
    let r = fsck_clean(dev.clone());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.stats.layers, 1);
    // Both copies are valid and describe the same state.
    let (mut vol, other) = Volume::open(dev).unwrap();
    assert_eq!(other, None);
    let l = vol.layer(1).unwrap();
    assert_eq!(l.name(), b"base");
    assert!(!l.is_read_only());
    assert_eq!(l.inodes_used, 1);
}

#[test]
fn removing_a_layer_with_children_is_refused_and_frees_everything_after() {
    let mut vol = fresh(8192);
    let free0 = vol.superblock().free_blocks;
    for i in 0..2000u64 {
        vol.insert(1, &Key::new(1, kind::INLINE, i), &inline_value(i, 100))
            .unwrap();
    }
    let (b, n) = vol.alloc_data(8).unwrap();
    let mut v = [0u8; 16];
    ExtentRecord {
        disk_block: b,
        len: n,
        flags: 0,
    }
    .encode(&mut v)
    .unwrap();
    vol.insert(1, &Key::new(1, kind::EXTENT, 5), &v).unwrap();
    vol.freeze_layer(1).unwrap();
    let child = vol.create_layer(b"child", Some(1), NOW).unwrap();
    // Changing the child copies one path, not the layer.
    vol.commit(NOW).unwrap();
    let before = vol.superblock().free_blocks;
    vol.insert(child, &Key::new(1, kind::INLINE, 900), &inline_value(1, 10))
        .unwrap();
    vol.commit(NOW).unwrap();
    assert!(before - vol.superblock().free_blocks < 12);
    assert_eq!(
        vol.insert(1, &Key::new(1, kind::INLINE, 3), &inline_value(1, 1)),
        Err(Error::ReadOnly)
    );
    assert_eq!(vol.remove_layer(1), Err(Error::Busy));
    assert!(!vol.is_aborted());
    // The extent is shared: the child's leaf copy took a reference.
    vol.remove(child, &Key::new(1, kind::EXTENT, 5)).unwrap();
    vol.commit(NOW).unwrap();
    assert_eq!(vol.refcount(b).unwrap(), 1);
    vol.remove_layer(child).unwrap();
    vol.remove_layer(1).unwrap();
    // Removal only queues the trees: nothing is free until reclaim drops them.
    vol.commit(NOW).unwrap();
    assert!(vol.superblock().free_blocks < free0 - 4);
    fsck_clean(vol.store().clone());
    assert_eq!(vol.reclaim(u32::MAX).unwrap(), 0);
    vol.commit(NOW).unwrap();
    let sb = vol.superblock();
    assert_eq!(sb.layer_count, 0);
    // Only the map's own nodes and the superblocks remain.
    assert!(sb.free_blocks >= free0 - 1, "{} vs {free0}", sb.free_blocks);
    fsck_clean(vol.into_store());
}

#[test]
fn full_filesystem_gives_clean_enospc_and_recovers() {
    let mut vol = fresh(600);
    let mut inserted = 0u64;
    let err = loop {
        match vol.alloc_data(4) {
            Ok((b, n)) => {
                let mut v = [0u8; 16];
                ExtentRecord {
                    disk_block: b,
                    len: n,
                    flags: 0,
                }
                .encode(&mut v)
                .unwrap();
                match vol.insert(1, &Key::new(1, kind::EXTENT, inserted * 4), &v) {
                    Ok(()) => inserted += 1,
                    Err(e) => {
                        vol.release(b, u64::from(n)).unwrap();
                        break e;
                    }
                }
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::NoSpace);
    assert!(!vol.is_aborted());
    assert!(inserted > 50);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    // Deleting works on the full filesystem (the reserve is for this) and gives space back.
    for i in 0..inserted {
        vol.remove(1, &Key::new(1, kind::EXTENT, i * 4)).unwrap();
    }
    vol.commit(NOW).unwrap();
    let (b, n) = vol.alloc_data(4).unwrap();
    let mut v = [0u8; 16];
    ExtentRecord {
        disk_block: b,
        len: n,
        flags: 0,
    }
    .encode(&mut v)
    .unwrap();
    vol.insert(1, &Key::new(1, kind::EXTENT, 0), &v).unwrap();
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn layer_names_are_unique_and_reusable_after_removal() {
    let mut vol = fresh(4096);
    assert_eq!(vol.create_layer(b"base", None, NOW), Err(Error::Exists));
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            vol.create_layer(format!("layer-{i}").as_bytes(), None, NOW)
                .unwrap(),
        );
    }
    assert_eq!(
        vol.find_layer(b"layer-123").unwrap().map(|l| l.id),
        Some(ids[123])
    );
    assert_eq!(vol.find_layer(b"nope").unwrap(), None);
    vol.remove_layer(ids[123]).unwrap();
    assert_eq!(vol.find_layer(b"layer-123").unwrap(), None);
    let again = vol.create_layer(b"layer-123", None, NOW).unwrap();
    assert!(again > ids[299], "ids are never reused");
    // The longest name fits the record, through the cache and the layer tree.
    let long = vec![b'n'; 255];
    let l = vol.create_layer(&long, None, NOW).unwrap();
    vol.insert(l, &Key::new(1, kind::INLINE, 3), &inline_value(1, 1))
        .unwrap();
    vol.commit(NOW).unwrap();
    assert_eq!(vol.layer(l).unwrap().name(), &long[..]);
    let r = fsck_clean(vol.into_store());
    assert_eq!(r.stats.layers, 302);
}

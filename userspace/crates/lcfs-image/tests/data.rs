//! File data: the extent API the kernel's page-cache I/O calls (`map_read`, `map_write`,
//! `map_writeback`, `complete_write`, `punch_hole`, `allocate`, `recover`): each call and its
//! errors, a model of file contents under random writes, punches, fallocates, truncates, layer
//! clones and reflinks (`clone_range`) with fsck after every commit, and crash simulation of the
//! write protocol.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

use std::collections::BTreeMap;

use lcfs_format::data::{MapKind, WriteKind, WriteMap, MAX_FILE_BLOCKS, STEP_TREES};
use lcfs_format::namespace::{DirEntry, NewInode, SetAttr};
use lcfs_format::node::Key;
use lcfs_format::records::{extent_flags, kind, mode, ExtentRecord, InodeRecord, Timespec};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::{BlockStore, Error};
use lcfs_format::volume::{Device, Volume};
use lcfs_format::ROOT_INO;
use lcfs_image::fsck;
use lcfs_image::store::{Event, MemDevice, Recorder};
use proptest::prelude::*;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

const BS: u64 = 4096;

fn fresh(total: u64) -> Volume<MemDevice> {
    let sb = Superblock::new(total, [7; 16], 1_700_000_000);
    Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap()
}

fn regular() -> NewInode {
    NewInode {
        mode: mode::S_IFREG | 0o644,
        ..NewInode::default()
    }
}

fn directory() -> NewInode {
    NewInode {
        mode: mode::S_IFDIR | 0o755,
        ..NewInode::default()
    }
}

/// A fresh filesystem with one empty regular file `f` in layer 1.
fn with_file(total: u64) -> (Volume<MemDevice>, u64) {
    let mut vol = fresh(total);
    let ino = vol.create(1, ROOT_INO, b"f", &regular(), NOW).unwrap();
    (vol, ino)
}

fn fsck_errors(dev: MemDevice) -> Vec<String> {
    fsck::check(dev, &mut |_, _, _| {}).unwrap().errors
}

fn fsck_clean(dev: MemDevice) -> fsck::Report {
    let r = fsck::check(dev, &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "fsck errors: {:#?}", r.errors);
    r
}

/// The contents of a block written with `tag` (0: zeros). Distinct tags give distinct blocks.
fn pattern(tag: u64) -> Vec<u8> {
    let mut v = vec![0u8; BS as usize];
    if tag != 0 {
        for (i, c) in v.chunks_mut(8).enumerate() {
            let x = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64) << 48 ^ tag;
            c.copy_from_slice(&x.to_le_bytes());
        }
    }
    v
}

/// One run handed out by `map_write` while writing.
type Run = (u64, u64, WriteKind);

/// Writes `tags[i]` to file block `at + i` as the kernel would: `map_write` for each run, the
/// data where `map_writeback` says (which must agree), the size grown to cover the write, and
/// `complete_write` if `complete`. Returns the runs.
fn write<S: Device<Buf = Vec<u8>>>(
    vol: &mut Volume<S>,
    layer: u64,
    ino: u64,
    at: u64,
    tags: &[u64],
    complete: bool,
) -> Result<Vec<Run>, Error> {
    let end = at + tags.len() as u64;
    let mut runs = Vec::new();
    let mut f = at;
    while f < end {
        let wm = vol.map_write(layer, ino, f, end - f)?;
        assert_eq!(wm.fblock, f);
        assert!(wm.len >= 1 && wm.len <= end - f, "{wm:?}");
        let mut g = f;
        while g < f + wm.len {
            let (d, n) = vol.map_writeback(layer, ino, g, f + wm.len - g).unwrap();
            assert_eq!(
                d,
                wm.disk_block + (g - f),
                "writeback goes where map_write said"
            );
            assert!(n >= 1 && n <= f + wm.len - g);
            for i in 0..n {
                let tag = tags[(g + i - at) as usize];
                vol.store().write(d + i, &pattern(tag)).unwrap();
            }
            g += n;
        }
        runs.push((f, wm.len, wm.kind));
        f += wm.len;
    }
    let size = end * BS;
    if vol.inode(layer, ino)?.size < size {
        set_size(vol, layer, ino, size)?;
    }
    if complete {
        vol.complete_write(layer, ino, at, end - at)?;
    }
    Ok(runs)
}

fn set_size<S: Device<Buf = Vec<u8>>>(
    vol: &mut Volume<S>,
    layer: u64,
    ino: u64,
    size: u64,
) -> Result<(), Error> {
    vol.set_attr(
        layer,
        ino,
        &SetAttr {
            size: Some(size),
            ..SetAttr::default()
        },
    )
    .map(|_| ())
}

/// Reads file blocks `0..n` through `map_read`.
fn read<S: Device<Buf = Vec<u8>>>(
    vol: &mut Volume<S>,
    layer: u64,
    ino: u64,
    n: u64,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut f = 0;
    let mut buf = vec![0u8; BS as usize];
    while f < n {
        let m = vol.map_read(layer, ino, f, n - f).unwrap();
        assert_eq!(m.fblock, f);
        assert!(m.len >= 1 && m.len <= n - f, "{m:?}");
        for i in 0..m.len {
            match m.kind {
                MapKind::Hole | MapKind::Unwritten { .. } => out.push(vec![0u8; BS as usize]),
                MapKind::Written { disk_block } => {
                    vol.store().read(disk_block + i, &mut buf).unwrap();
                    out.push(buf.clone());
                }
            }
        }
        f += m.len;
    }
    out
}

/// Asserts that file blocks `0..tags.len()` hold `tags`.
fn check_contents<S: Device<Buf = Vec<u8>>>(
    vol: &mut Volume<S>,
    layer: u64,
    ino: u64,
    tags: &[u64],
    what: &str,
) {
    let got = read(vol, layer, ino, tags.len() as u64);
    for (b, (data, &tag)) in got.iter().zip(tags).enumerate() {
        assert!(
            *data == pattern(tag),
            "{what}: layer {layer} inode {ino} block {b}: expected tag {tag}"
        );
    }
}

/// The items of kind `k` of `ino`: file block to (disk block, length, flags).
fn items<S: Device>(
    vol: &mut Volume<S>,
    layer: u64,
    ino: u64,
    k: u8,
) -> BTreeMap<u64, (u64, u32, u32)> {
    let total = vol.superblock().total_blocks;
    let mut out = BTreeMap::new();
    let mut from = Key::new(ino, k, 0);
    while let Some((key, e)) = vol
        .next(layer, &from, |key, v| {
            (*key, ExtentRecord::decode(v, total))
        })
        .unwrap()
    {
        if key.id != ino || key.kind != k {
            break;
        }
        let e = e.unwrap();
        // The flags proper; the birth layer is checked where it matters.
        out.insert(
            key.offset,
            (e.disk_block, e.len, e.flags & extent_flags::MASK),
        );
        from = Key::new(ino, k, key.offset + 1);
    }
    out
}

fn put_raw(vol: &mut Volume<MemDevice>, layer: u64, key: Key, e: ExtentRecord) {
    let mut v = [0u8; 16];
    e.encode(&mut v).unwrap();
    vol.insert(layer, &key, &v).unwrap();
}

fn put_inode(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, r: &InodeRecord) {
    let mut buf = [0u8; 128];
    r.encode(&mut buf).unwrap();
    vol.insert(layer, &Key::new(ino, kind::INODE, 0), &buf)
        .unwrap();
}

// ---- each call ----

#[test]
fn hole_write_goes_unwritten_then_written_then_in_place() {
    let (mut vol, f) = with_file(4096);
    let m = vol.map_read(1, f, 0, 100).unwrap();
    assert_eq!(m.kind, MapKind::Hole);
    assert_eq!(m.len, 100);
    let before = vol.layer(1).unwrap().bytes_used;
    let wm = vol.map_write(1, f, 10, 4).unwrap();
    assert_eq!(wm.kind, WriteKind::New);
    assert_eq!((wm.fblock, wm.len), (10, 4));
    // The hole before the new extent, then the extent, unwritten: reads are zeros.
    assert_eq!(
        vol.map_read(1, f, 0, 100).unwrap().len,
        10,
        "a hole runs to the next extent"
    );
    assert_eq!(
        vol.map_read(1, f, 11, 100).unwrap(),
        lcfs_format::data::Map {
            fblock: 11,
            len: 3,
            kind: MapKind::Unwritten {
                disk_block: wm.disk_block + 1
            }
        }
    );
    assert_eq!(vol.inode(1, f).unwrap().blocks, 4);
    assert_eq!(vol.layer(1).unwrap().bytes_used, before + 4 * BS);
    // Mapping it again reuses the unwritten blocks.
    let again = vol.map_write(1, f, 11, 10).unwrap();
    assert_eq!(
        again,
        WriteMap {
            fblock: 11,
            len: 3,
            disk_block: wm.disk_block + 1,
            kind: WriteKind::Unwritten
        }
    );
    assert_eq!(vol.map_writeback(1, f, 10, 10).unwrap(), (wm.disk_block, 4));
    // Completing part of it splits the extent.
    vol.complete_write(1, f, 11, 2).unwrap();
    let ext = items(&mut vol, 1, f, kind::EXTENT);
    let u = extent_flags::UNWRITTEN;
    assert_eq!(
        ext.into_iter().collect::<Vec<_>>(),
        vec![
            (10, (wm.disk_block, 1, u)),
            (11, (wm.disk_block + 1, 2, 0)),
            (13, (wm.disk_block + 3, 1, u)),
        ]
    );
    // Completing the rest merges everything back into one written extent.
    vol.complete_write(1, f, 0, 100).unwrap();
    let ext = items(&mut vol, 1, f, kind::EXTENT);
    assert_eq!(
        ext.into_iter().collect::<Vec<_>>(),
        vec![(10, (wm.disk_block, 4, 0))]
    );
    assert_eq!(
        vol.map_read(1, f, 12, 1).unwrap().kind,
        MapKind::Written {
            disk_block: wm.disk_block + 2
        }
    );
    // Written blocks of this file alone: in place.
    let ip = vol.map_write(1, f, 12, 10).unwrap();
    assert_eq!(
        ip,
        WriteMap {
            fblock: 12,
            len: 2,
            disk_block: wm.disk_block + 2,
            kind: WriteKind::InPlace
        }
    );
    assert_eq!(vol.inode(1, f).unwrap().blocks, 4);
    set_size(&mut vol, 1, f, 14 * BS).unwrap();
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn in_place_answers_follow_every_change() {
    let (mut vol, f) = with_file(8192);
    let wm = vol.map_write(1, f, 0, 64).unwrap();
    assert_eq!(wm.kind, WriteKind::New);
    vol.complete_write(1, f, 0, 64).unwrap();
    let d = wm.disk_block;
    // Repeated answers for written blocks of this file alone (the second from memory).
    for _ in 0..2 {
        assert_eq!(
            vol.map_write(1, f, 40, 1).unwrap(),
            WriteMap {
                fblock: 40,
                len: 1,
                disk_block: d + 40,
                kind: WriteKind::InPlace
            }
        );
        assert_eq!(vol.map_writeback(1, f, 40, 8).unwrap(), (d + 40, 8));
        vol.complete_write(1, f, 40, 8).unwrap();
    }
    // Another reference to block 41 (as a clone sharing it would add): no longer in place.
    vol.add_block_refs(d + 41, 1).unwrap();
    assert_eq!(vol.map_write(1, f, 40, 1).unwrap().len, 1);
    let w = vol.map_write(1, f, 41, 1).unwrap();
    assert!(
        matches!(w.kind, WriteKind::Cow { src_disk_block } if src_disk_block == d + 41),
        "{w:?}"
    );
    assert_eq!(vol.map_writeback(1, f, 41, 1).unwrap().0, w.disk_block);
    vol.complete_write(1, f, 41, 1).unwrap();
    vol.release(d + 41, 1).unwrap();
    // A punched block is no longer there to overwrite.
    assert_eq!(vol.map_write(1, f, 50, 1).unwrap().kind, WriteKind::InPlace);
    vol.punch_hole(1, f, 50, 1).unwrap();
    assert_eq!(vol.map_write(1, f, 50, 1).unwrap().kind, WriteKind::New);
    vol.complete_write(1, f, 50, 1).unwrap();
    // A frozen layer takes no writes, whatever was known about it.
    assert_eq!(vol.map_write(1, f, 10, 1).unwrap().kind, WriteKind::InPlace);
    vol.commit(NOW).unwrap();
    vol.freeze_layer(1).unwrap();
    assert_eq!(vol.map_write(1, f, 10, 1), Err(Error::ReadOnly));
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

/// A [`MemDevice`] that counts block reads, to tell answers from memory from tree walks.
struct CountingDevice {
    inner: MemDevice,
    reads: u64,
}

impl lcfs_format::tree::BlockStore for CountingDevice {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, Error> {
        self.inner.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.reads += 1;
        self.inner.read(blocknr, buf)
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), Error> {
        self.inner.write(blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.inner.total_blocks()
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        self.inner.single_table()
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.inner.in_place_table()
    }
}

impl Device for CountingDevice {
    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush()
    }
}

#[test]
fn in_place_cache_holds_every_extent_of_a_window_answers_reads_and_survives_timestamps() {
    let total = 8192;
    let sb = Superblock::new(total, [7; 16], 1_700_000_000);
    let dev = CountingDevice {
        inner: MemDevice::new(total),
        reads: 0,
    };
    let mut vol = Volume::format(dev, sb, Some(b"base"), NOW).unwrap();
    let f = vol.create(1, ROOT_INO, b"f", &regular(), NOW).unwrap();
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    // Two files written in turns, 8 blocks at a time: f gets 12 extents, all in one window.
    for i in 0..12u64 {
        for ino in [f, g] {
            let tags: Vec<u64> = (1..=8).map(|t| i * 8 + t).collect();
            write(&mut vol, 1, ino, i * 8, &tags, true).unwrap();
        }
    }
    vol.commit(NOW).unwrap();
    assert_eq!(items(&mut vol, 1, f, kind::EXTENT).len(), 12);
    let in_place = |vol: &mut Volume<CountingDevice>| {
        for b in 0..96u64 {
            let w = vol.map_write(1, f, b, 1).unwrap();
            assert_eq!(w.kind, WriteKind::InPlace, "block {b}");
        }
        let reads = vol.store().reads;
        for b in (0..96u64).rev() {
            assert_eq!(vol.map_write(1, f, b, 1).unwrap().kind, WriteKind::InPlace);
            assert_eq!(vol.map_writeback(1, f, b, 1).unwrap().1, 1);
            vol.complete_write(1, f, b, 1).unwrap();
        }
        vol.store().reads - reads
    };
    assert_eq!(
        in_place(&mut vol),
        0,
        "block reads for answers already found"
    );
    // A buffered write's timestamp update keeps what the cache knows: no read after it.
    let t = Timespec {
        sec: NOW.sec + 1,
        nsec: 5,
    };
    let times = SetAttr {
        atime: Some(t),
        mtime: Some(t),
        ctime: Some(t),
        ..SetAttr::default()
    };
    vol.set_attr(1, f, &times).unwrap();
    let reads = vol.store().reads;
    for b in 0..96u64 {
        assert_eq!(vol.map_write(1, f, b, 1).unwrap().kind, WriteKind::InPlace);
    }
    assert_eq!(
        vol.store().reads,
        reads,
        "block reads after a timestamp update"
    );
    // Reads: the first look at each extent walks the trees, later ones are answered from memory,
    // in-place runs included.
    let g_first = vol.map_read(1, g, 3, 1).unwrap();
    let reads = vol.store().reads;
    assert_eq!(vol.map_read(1, g, 3, 1).unwrap(), g_first);
    for b in 0..96u64 {
        let m = vol.map_read(1, f, b, 1).unwrap();
        assert!(matches!(m.kind, MapKind::Written { .. }), "{m:?}");
    }
    assert_eq!(
        vol.store().reads,
        reads,
        "block reads for mappings already found"
    );
    // A punched block reads as a hole at once.
    vol.punch_hole(1, g, 3, 1).unwrap();
    assert_eq!(vol.map_read(1, g, 3, 1).unwrap().kind, MapKind::Hole);
    // A truncate drops blocks: the cache must not answer for them.
    vol.set_attr(
        1,
        f,
        &SetAttr {
            size: Some(40 * BS),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(vol.map_write(1, f, 39, 1).unwrap().kind, WriteKind::InPlace);
    assert_eq!(vol.map_read(1, f, 40, 1).unwrap().kind, MapKind::Hole);
    assert_eq!(vol.map_write(1, f, 40, 1).unwrap().kind, WriteKind::New);
    vol.complete_write(1, f, 40, 1).unwrap();
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store().inner);
}

#[test]
fn sequential_writes_make_few_extents() {
    let (mut vol, f) = with_file(4096);
    // One block at a time, completed each time: the blocks come out contiguous and merge.
    for b in 0..64u64 {
        write(&mut vol, 1, f, b, &[b + 1], true).unwrap();
    }
    let n = items(&mut vol, 1, f, kind::EXTENT).len();
    assert!(n <= 3, "{n} extents for 64 sequential blocks");
    // One big write: one run, one extent.
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let tags: Vec<u64> = (1..=200).collect();
    let runs = write(&mut vol, 1, g, 0, &tags, true).unwrap();
    assert_eq!(runs, vec![(0, 200, WriteKind::New)]);
    assert_eq!(items(&mut vol, 1, g, kind::EXTENT).len(), 1);
    check_contents(&mut vol, 1, f, &(1..=64).collect::<Vec<_>>(), "f");
    check_contents(&mut vol, 1, g, &tags, "g");
    assert_eq!(vol.inode(1, g).unwrap().blocks, 200);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn writing_one_block_of_a_shared_file_copies_one_block() {
    let (mut vol, f) = with_file(8192);
    let tags: Vec<u64> = (1..=100).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    vol.freeze_layer(1).unwrap();
    let child = vol.create_layer(b"child", Some(1), NOW).unwrap();
    vol.commit(NOW).unwrap();
    let r = fsck_clean(vol.store().clone());
    assert_eq!(r.stats.data_blocks, 100);
    let old = match vol.map_read(child, f, 50, 1).unwrap().kind {
        MapKind::Written { disk_block } => disk_block,
        k => panic!("{k:?}"),
    };
    let runs = write(&mut vol, child, f, 50, &[1000], false).unwrap();
    let [(50, 1, WriteKind::Cow { src_disk_block })] = runs[..] else {
        panic!("{runs:?}");
    };
    assert_eq!(src_disk_block, old);
    assert_eq!(items(&mut vol, child, f, kind::COW).len(), 1);
    // Until the write completes, reads see the old data.
    check_contents(&mut vol, child, f, &tags, "before completion");
    // A second write to the block reuses the staging block.
    let again = vol.map_write(child, f, 50, 1).unwrap();
    assert_eq!(again.disk_block, runs_disk(&mut vol, child, f, 50));
    vol.complete_write(child, f, 50, 1).unwrap();
    assert!(items(&mut vol, child, f, kind::COW).is_empty());
    vol.commit(NOW).unwrap();
    let r = fsck_clean(vol.store().clone());
    assert_eq!(r.stats.data_blocks, 101, "exactly one new data block");
    let mut want = tags.clone();
    want[50] = 1000;
    check_contents(&mut vol, child, f, &want, "child");
    check_contents(&mut vol, 1, f, &tags, "parent unchanged");
    assert_eq!(vol.inode(child, f).unwrap().blocks, 100);
    assert_eq!(vol.layer(child).unwrap().bytes_used, 100 * BS);
    // Now the block is the child's alone: the next write goes in place.
    assert_eq!(
        vol.map_write(child, f, 50, 10).unwrap().kind,
        WriteKind::InPlace
    );
    // Its neighbours are still shared.
    assert!(matches!(
        vol.map_write(child, f, 51, 10).unwrap().kind,
        WriteKind::Cow { .. }
    ));
}

/// A layer's own bytes are those its writes allocated: a clone starts with none, copy-on-write
/// and new blocks add to them, dropping an inherited extent does not take from them, dropping
/// its own does; a snapshot counts its source's; fsck recomputes them from the births.
#[test]
fn own_bytes_follow_the_layers_writes() {
    let (mut vol, f) = with_file(8192);
    let tags: Vec<u64> = (1..=8).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    assert_eq!(vol.layer(1).unwrap().own_bytes, 8 * BS);
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    assert_eq!(vol.layer(c).unwrap().own_bytes, 0);
    // One block copied on write, two new ones past the end.
    write(&mut vol, c, f, 3, &[100], true).unwrap();
    write(&mut vol, c, f, 20, &[101, 102], true).unwrap();
    let l = vol.layer(c).unwrap();
    assert_eq!((l.own_bytes, l.bytes_used), (3 * BS, 10 * BS));
    let births: Vec<u64> = {
        let total = vol.superblock().total_blocks;
        let mut out = Vec::new();
        let mut from = Key::new(f, kind::EXTENT, 0);
        while let Some((k, b)) = vol
            .next(c, &from, |k, v| {
                (*k, ExtentRecord::decode(v, total).unwrap().birth())
            })
            .unwrap()
        {
            if k.id != f || k.kind != kind::EXTENT {
                break;
            }
            out.push(b);
            from = Key::new(f, kind::EXTENT, k.offset + 1);
        }
        out
    };
    assert_eq!(
        births,
        vec![1, c, 1, c],
        "inherited, copied, inherited, new"
    );
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    // A snapshot of the clone counts the clone's writes as its own.
    let s = vol.snapshot_layer(b"s", c, NOW).unwrap();
    assert_eq!(vol.layer(s).unwrap().own_bytes, 3 * BS);
    // Cutting the file to 2 blocks drops inherited blocks (own unchanged) and the clone's.
    set_size(&mut vol, c, f, 2 * BS).unwrap();
    let l = vol.layer(c).unwrap();
    assert_eq!((l.own_bytes, l.bytes_used), (0, 2 * BS));
    assert_eq!(vol.layer(s).unwrap().own_bytes, 3 * BS);
    assert_eq!(vol.layer(1).unwrap().own_bytes, 8 * BS);
    vol.commit(NOW).unwrap();
    let r = fsck_clean(vol.into_store());
    assert_eq!(r.stats.layers, 3);
}

/// The disk block writeback uses for `fblock`.
fn runs_disk(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, fblock: u64) -> u64 {
    vol.map_writeback(layer, ino, fblock, 1).unwrap().0
}

#[test]
fn clone_keeps_its_own_copy_of_unwritten_extents() {
    let (mut vol, f) = with_file(4096);
    vol.allocate(1, f, 0, 8).unwrap();
    set_size(&mut vol, 1, f, 8 * BS).unwrap();
    vol.freeze_layer(1).unwrap();
    let a = vol.create_layer(b"a", Some(1), NOW).unwrap();
    let b = vol.create_layer(b"b", Some(1), NOW).unwrap();
    vol.commit(NOW).unwrap();
    // The unwritten blocks are shared: both clones get blocks of their own.
    let ra = write(&mut vol, a, f, 2, &[7, 8], true).unwrap();
    assert_eq!(ra, vec![(2, 2, WriteKind::New)]);
    let rb = write(&mut vol, b, f, 3, &[9], true).unwrap();
    assert_eq!(rb, vec![(3, 1, WriteKind::New)]);
    check_contents(&mut vol, a, f, &[0, 0, 7, 8, 0, 0, 0, 0], "a");
    check_contents(&mut vol, b, f, &[0, 0, 0, 9, 0, 0, 0, 0], "b");
    check_contents(&mut vol, 1, f, &[0; 8], "parent");
    assert_eq!(vol.inode(a, f).unwrap().blocks, 8);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn errors_change_nothing() {
    let (mut vol, f) = with_file(4096);
    let d = vol.create(1, ROOT_INO, b"d", &directory(), NOW).unwrap();
    let l = vol
        .create(
            1,
            ROOT_INO,
            b"l",
            &NewInode {
                mode: mode::S_IFLNK | 0o777,
                ..NewInode::default()
            },
            NOW,
        )
        .unwrap();
    write(&mut vol, 1, f, 0, &[1, 2, 3], true).unwrap();
    vol.commit(NOW).unwrap();
    let sb = vol.superblock();
    let big = MAX_FILE_BLOCKS;
    assert_eq!(vol.map_read(1, f, 0, 0), Err(Error::Invalid));
    assert_eq!(vol.map_read(1, f, big, 1), Err(Error::Invalid));
    assert_eq!(vol.map_read(1, 999, 0, 1), Err(Error::NotFound));
    assert_eq!(vol.map_read(9, f, 0, 1), Err(Error::NotFound));
    assert_eq!(vol.map_read(1, d, 0, 1), Err(Error::IsDir));
    assert_eq!(vol.map_read(1, l, 0, 1), Err(Error::Invalid));
    // The last file block is usable, the length is clipped there.
    assert_eq!(vol.map_read(1, f, big - 1, u64::MAX).unwrap().len, 1);
    assert_eq!(vol.map_write(1, f, 0, 0), Err(Error::Invalid));
    assert_eq!(vol.map_write(1, f, big, 1), Err(Error::Invalid));
    assert_eq!(vol.map_write(1, d, 0, 1), Err(Error::IsDir));
    assert_eq!(vol.map_write(1, l, 0, 1), Err(Error::Invalid));
    assert_eq!(vol.map_write(1, 999, 0, 1), Err(Error::NotFound));
    assert_eq!(vol.map_writeback(1, f, 5, 1), Err(Error::NotFound));
    assert_eq!(vol.map_writeback(1, f, 0, 0), Err(Error::Invalid));
    assert_eq!(vol.complete_write(1, f, 0, 0), Err(Error::Invalid));
    assert_eq!(vol.complete_write(1, d, 0, 1), Err(Error::IsDir));
    assert_eq!(vol.punch_hole(1, f, 0, 0), Err(Error::Invalid));
    assert_eq!(vol.punch_hole(1, f, big, 1), Err(Error::Invalid));
    assert_eq!(vol.allocate(1, f, 0, 0), Err(Error::Invalid));
    assert_eq!(vol.allocate(1, f, big - 1, 2), Err(Error::Invalid));
    assert_eq!(vol.allocate(1, f, u64::MAX, 2), Err(Error::Invalid));
    assert_eq!(vol.allocate(1, l, 0, 2), Err(Error::Invalid));
    assert_eq!(vol.recover(9), Err(Error::NotFound));
    // A huge punch or completion is fine (clipped), a completion of written data does nothing.
    vol.complete_write(1, f, 0, u64::MAX).unwrap();
    vol.punch_hole(1, f, 100, u64::MAX).unwrap();
    assert!(!vol.is_aborted());
    // Frozen layers refuse every change.
    vol.freeze_layer(1).unwrap();
    vol.commit(NOW).unwrap();
    let sb2 = vol.superblock();
    assert_eq!(vol.map_write(1, f, 0, 1), Err(Error::ReadOnly));
    assert_eq!(vol.map_writeback(1, f, 0, 1), Err(Error::ReadOnly));
    assert_eq!(vol.complete_write(1, f, 0, 1), Err(Error::ReadOnly));
    assert_eq!(vol.punch_hole(1, f, 0, 1), Err(Error::ReadOnly));
    assert_eq!(vol.allocate(1, f, 5, 1), Err(Error::ReadOnly));
    assert_eq!(vol.recover(1), Err(Error::ReadOnly));
    // Reads still work.
    check_contents(&mut vol, 1, f, &[1, 2, 3], "frozen");
    assert!(!vol.is_dirty());
    assert_eq!(vol.superblock().free_blocks, sb2.free_blocks);
    assert!(sb2.generation > sb.generation);
    // Writeback into shared blocks (a write that did not go through map_write) is refused.
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    assert_eq!(vol.map_writeback(c, f, 0, 1), Err(Error::Invalid));
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn punch_hole_splits_extents_and_drops_staging() {
    let (mut vol, f) = with_file(4096);
    let tags: Vec<u64> = (1..=10).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    let free = vol.superblock().free_blocks;
    vol.punch_hole(1, f, 3, 4).unwrap();
    let ext = items(&mut vol, 1, f, kind::EXTENT);
    assert_eq!(ext.keys().copied().collect::<Vec<_>>(), vec![0, 7]);
    assert_eq!(vol.inode(1, f).unwrap().blocks, 6);
    assert_eq!(vol.layer(1).unwrap().bytes_used, 6 * BS);
    check_contents(&mut vol, 1, f, &[1, 2, 3, 0, 0, 0, 0, 8, 9, 10], "punched");
    vol.commit(NOW).unwrap();
    assert!(vol.superblock().free_blocks >= free + 4 - 8);
    fsck_clean(vol.store().clone());
    // Punch over a write in progress in a clone: staging and extent both go.
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    write(&mut vol, c, f, 7, &[70, 80], false).unwrap();
    assert_eq!(items(&mut vol, c, f, kind::COW).len(), 1);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    vol.punch_hole(c, f, 8, 1).unwrap();
    assert_eq!(
        items(&mut vol, c, f, kind::COW)
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![7]
    );
    // Completing the whole range afterwards moves only what is left.
    vol.complete_write(c, f, 7, 2).unwrap();
    check_contents(&mut vol, c, f, &[1, 2, 3, 0, 0, 0, 0, 70, 0, 10], "clone");
    check_contents(&mut vol, 1, f, &[1, 2, 3, 0, 0, 0, 0, 8, 9, 10], "parent");
    assert_eq!(vol.inode(c, f).unwrap().blocks, 5);
    // Punching everything empties the file.
    vol.punch_hole(c, f, 0, u64::MAX).unwrap();
    assert!(items(&mut vol, c, f, kind::EXTENT).is_empty());
    assert_eq!(vol.inode(c, f).unwrap().blocks, 0);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn allocate_fills_holes_only() {
    let (mut vol, f) = with_file(4096);
    write(&mut vol, 1, f, 2, &[5, 6], true).unwrap();
    vol.allocate(1, f, 0, 8).unwrap();
    let ext = items(&mut vol, 1, f, kind::EXTENT);
    let u = extent_flags::UNWRITTEN;
    let flags: Vec<(u64, u32, u32)> = ext.iter().map(|(o, e)| (*o, e.1, e.2)).collect();
    assert_eq!(flags, vec![(0, 2, u), (2, 2, 0), (4, 4, u)]);
    assert_eq!(vol.inode(1, f).unwrap().blocks, 8);
    // The size does not change; data is as before.
    assert_eq!(vol.inode(1, f).unwrap().size, 4 * BS);
    check_contents(&mut vol, 1, f, &[0, 0, 5, 6, 0, 0, 0, 0], "fallocated");
    // Allocating again changes nothing.
    let free = vol.superblock().free_blocks;
    vol.allocate(1, f, 0, 8).unwrap();
    assert_eq!(vol.superblock().free_blocks, free);
    // Writing into the allocated blocks reuses them.
    let runs = write(&mut vol, 1, f, 5, &[9], true).unwrap();
    assert_eq!(runs, vec![(5, 1, WriteKind::Unwritten)]);
    check_contents(&mut vol, 1, f, &[0, 0, 5, 6, 0, 9, 0, 0], "written");
    // More than the free space: refused up front.
    let total = vol.superblock().total_blocks;
    assert_eq!(vol.allocate(1, f, 100, total), Err(Error::NoSpace));
    assert_eq!(vol.superblock().free_blocks, free);
    assert!(!vol.is_aborted());
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn full_filesystem_refuses_writes_cleanly_and_recovers() {
    let (mut vol, f) = with_file(2048);
    write(&mut vol, 1, f, 0, &[1, 2, 3, 4], true).unwrap();
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    // The clone's own block, written in place later.
    write(&mut vol, c, f, 3, &[40], true).unwrap();
    vol.commit(NOW).unwrap();
    let g = vol.create(c, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let mut at = 0;
    let err = loop {
        let before = (
            vol.superblock().free_blocks,
            items(&mut vol, c, g, kind::EXTENT),
        );
        match vol.map_write(c, g, at, 16) {
            Ok(wm) => at += wm.len,
            Err(e) => {
                // Nothing changed.
                assert_eq!(
                    (
                        vol.superblock().free_blocks,
                        items(&mut vol, c, g, kind::EXTENT)
                    ),
                    before
                );
                break e;
            }
        }
    };
    assert_eq!(err, Error::NoSpace);
    assert!(!vol.is_aborted());
    assert!(at > 500, "{at} blocks written");
    // Shared blocks need new ones: refused too; the clone's own block is written in place.
    assert_eq!(vol.map_write(c, f, 0, 1), Err(Error::NoSpace));
    assert_eq!(vol.map_write(c, f, 3, 1).unwrap().kind, WriteKind::InPlace);
    // Completing and punching work on the full filesystem.
    vol.complete_write(c, g, 0, at).unwrap();
    // The size as the kernel stores it when writeback completes; it never shrinks the file.
    vol.grow_size(c, g, at * BS).unwrap();
    assert_eq!(vol.grow_size(c, g, BS).unwrap().size, at * BS);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    vol.punch_hole(c, g, 0, at / 2).unwrap();
    vol.commit(NOW).unwrap();
    write(&mut vol, c, f, 0, &[100], true).unwrap();
    vol.commit(NOW).unwrap();
    check_contents(&mut vol, c, f, &[100, 2, 3, 40], "after");
    fsck_clean(vol.into_store());
}

#[test]
fn recover_frees_staging_and_keeps_old_contents() {
    let (mut vol, f) = with_file(4096);
    let tags: Vec<u64> = (1..=20).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    vol.commit(NOW).unwrap();
    let free = vol.superblock().free_blocks;
    write(&mut vol, c, f, 2, &[50, 51, 52], false).unwrap();
    write(&mut vol, c, f, 10, &[60], false).unwrap();
    write(&mut vol, c, f, 25, &[70], false).unwrap();
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    // A crash now: reopen at this commit.
    let dev = vol.into_store();
    let mut vol = Volume::open(dev).unwrap().0;
    let mut want = tags.clone();
    want.extend([0; 6]);
    check_contents(&mut vol, c, f, &want, "after the crash");
    assert_eq!(vol.recover(c).unwrap(), 4);
    assert!(items(&mut vol, c, f, kind::COW).is_empty());
    assert_eq!(vol.recover(c).unwrap(), 0);
    check_contents(&mut vol, c, f, &want, "after recovery");
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    // The staging blocks are free again (the new unwritten block stays, and metadata moved).
    assert!(vol.superblock().free_blocks + 12 >= free);
    // The unwritten block reads zeros and is reused by the next write.
    let runs = write(&mut vol, c, f, 25, &[71], true).unwrap();
    assert_eq!(runs, vec![(25, 1, WriteKind::Unwritten)]);
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn truncate_drops_writes_in_progress_past_the_end() {
    let (mut vol, f) = with_file(4096);
    let tags: Vec<u64> = (1..=8).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    // Staging over blocks 2..6, an unwritten extent over 8..10.
    write(&mut vol, c, f, 2, &[20, 30, 40, 50], false).unwrap();
    write(&mut vol, c, f, 8, &[80, 90], false).unwrap();
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone());
    set_size(&mut vol, c, f, 4 * BS).unwrap();
    assert_eq!(
        items(&mut vol, c, f, kind::COW)
            .iter()
            .map(|(o, e)| (*o, e.1))
            .collect::<Vec<_>>(),
        vec![(2, 2)]
    );
    assert_eq!(vol.inode(c, f).unwrap().blocks, 4);
    vol.complete_write(c, f, 2, 2).unwrap();
    check_contents(&mut vol, c, f, &[1, 2, 20, 30, 0, 0], "clone");
    check_contents(&mut vol, 1, f, &tags, "parent");
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn staging_inherited_from_a_layer_frozen_mid_write_is_never_written() {
    let (mut vol, f) = with_file(4096);
    write(&mut vol, 1, f, 0, &[1, 2, 3, 4], true).unwrap();
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    write(&mut vol, c, f, 1, &[20, 30], false).unwrap();
    let staged = vol.map_writeback(c, f, 1, 2).unwrap();
    // Frozen with the write in progress (the kernel syncs first; this one did not).
    vol.freeze_layer(c).unwrap();
    let d = vol.create_layer(b"d", Some(c), NOW).unwrap();
    let e = vol.create_layer(b"e", Some(c), NOW).unwrap();
    // The inherited staging blocks are shared: writeback refuses them, a write gets its own.
    assert_eq!(vol.map_writeback(d, f, 1, 1), Err(Error::Invalid));
    let runs = write(&mut vol, d, f, 1, &[200], true).unwrap();
    assert!(
        matches!(runs[..], [(1, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    assert_ne!(vol.map_writeback(d, f, 1, 1).unwrap().0, staged.0);
    let runs = write(&mut vol, e, f, 1, &[300, 301], true).unwrap();
    assert!(runs.iter().all(|r| matches!(r.2, WriteKind::Cow { .. })));
    check_contents(&mut vol, d, f, &[1, 200, 3, 4], "d");
    check_contents(&mut vol, e, f, &[1, 300, 301, 4], "e");
    check_contents(&mut vol, c, f, &[1, 2, 3, 4], "c");
    check_contents(&mut vol, 1, f, &[1, 2, 3, 4], "base");
    vol.commit(NOW).unwrap();
    let errors = fsck_errors(vol.into_store());
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("layer 2: ") && e.contains("in a frozen layer")),
        "{errors:?}"
    );
}

// ---- reflink (clone_range) ----

/// Commits and checks the whole volume.
fn commit_clean(vol: &mut Volume<MemDevice>) -> fsck::Report {
    vol.commit(NOW).unwrap();
    fsck_clean(vol.store().clone())
}

/// The disk block file block `fblock` of `ino` reads from (`None`: a hole or unwritten).
fn disk_of(vol: &mut Volume<MemDevice>, layer: u64, ino: u64, fblock: u64) -> Option<u64> {
    match vol.map_read(layer, ino, fblock, 1).unwrap().kind {
        MapKind::Written { disk_block } => Some(disk_block),
        _ => None,
    }
}

/// The birth layers of the extents of `ino`, in file order.
fn births(vol: &mut Volume<MemDevice>, layer: u64, ino: u64) -> Vec<u64> {
    let total = vol.superblock().total_blocks;
    let mut out = Vec::new();
    let mut from = Key::new(ino, kind::EXTENT, 0);
    while let Some((k, b)) = vol
        .next(layer, &from, |k, v| {
            (*k, ExtentRecord::decode(v, total).unwrap().birth())
        })
        .unwrap()
    {
        if k.id != ino || k.kind != kind::EXTENT {
            break;
        }
        out.push(b);
        from = Key::new(ino, kind::EXTENT, k.offset + 1);
    }
    out
}

/// A partial range from the middle of an extent: the destination shares the very blocks, each
/// counted twice; writes to either side copy on write and leave the other alone; punching and
/// truncating either side drops its references, and the blocks come back when both are gone.
#[test]
fn clone_range_shares_blocks_until_either_side_writes() {
    let (mut vol, f) = with_file(8192);
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let tags: Vec<u64> = (1..=16).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 16);
    let d0 = disk_of(&mut vol, 1, f, 0).unwrap();
    assert_eq!(vol.clone_range(1, f, 4, 1, g, 2, 8).unwrap(), 8);
    set_size(&mut vol, 1, g, 10 * BS).unwrap();
    let mut want_g = vec![0, 0];
    want_g.extend(&tags[4..12]);
    check_contents(&mut vol, 1, g, &want_g, "clone");
    check_contents(&mut vol, 1, f, &tags, "source");
    assert_eq!(
        items(&mut vol, 1, g, kind::EXTENT)
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(2, (d0 + 4, 8, 0))],
        "one extent on the source's blocks"
    );
    for b in 0..16 {
        let want = if (4..12).contains(&b) { 2 } else { 1 };
        assert_eq!(vol.refcount(d0 + b).unwrap(), want, "block {b}");
    }
    assert_eq!(vol.inode(1, g).unwrap().blocks, 8);
    let l = vol.layer(1).unwrap();
    assert_eq!((l.bytes_used, l.own_bytes), (24 * BS, 24 * BS));
    assert_eq!(births(&mut vol, 1, g), vec![1], "the source's birth");
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 16, "no data block allocated");
    // A write to the source copies the shared block; the clone keeps the old data.
    let runs = write(&mut vol, 1, f, 6, &[600], true).unwrap();
    assert!(
        matches!(runs[..], [(6, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    // Blocks the clone does not share are still written in place.
    let runs = write(&mut vol, 1, f, 13, &[1300], true).unwrap();
    assert_eq!(runs, vec![(13, 1, WriteKind::InPlace)]);
    // A write to the clone copies too; the source keeps its data.
    let runs = write(&mut vol, 1, g, 3, &[300], true).unwrap();
    assert!(
        matches!(runs[..], [(3, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    let mut want_f = tags.clone();
    want_f[6] = 600;
    want_f[13] = 1300;
    want_g[3] = 300;
    check_contents(&mut vol, 1, f, &want_f, "source after writes");
    check_contents(&mut vol, 1, g, &want_g, "clone after writes");
    // Block 6 of f and block 3 of g (f's 5) now have copies of their own: back to one owner.
    assert_eq!(vol.refcount(d0 + 5).unwrap(), 1);
    assert_eq!(vol.refcount(d0 + 6).unwrap(), 1);
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 18);
    // Punching the source's shared part: the clone holds the blocks alone, writes in place.
    vol.punch_hole(1, f, 0, 10).unwrap();
    for b in [4, 7, 9] {
        assert_eq!(vol.refcount(d0 + b).unwrap(), 1, "block {b}");
    }
    assert_eq!(
        write(&mut vol, 1, g, 5, &[500], true).unwrap(),
        vec![(5, 1, WriteKind::InPlace)]
    );
    want_g[5] = 500;
    check_contents(&mut vol, 1, g, &want_g, "clone after the punch");
    let r = commit_clean(&mut vol);
    // f keeps 10..16 (its own 13 included), g 8 blocks (its copy of block 3 included), two of
    // them (10 and 11) shared.
    assert_eq!(r.stats.data_blocks, 12);
    // Truncating both: every data block comes back.
    set_size(&mut vol, 1, g, 0).unwrap();
    set_size(&mut vol, 1, f, 0).unwrap();
    assert_eq!(vol.inode(1, g).unwrap().blocks, 0);
    let l = vol.layer(1).unwrap();
    assert_eq!((l.bytes_used, l.own_bytes), (0, 0));
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 0);
}

/// The in-place cache: answers found for either file before a clone (an in-place run of the
/// source, runs of the destination kept for reads and writes) are not used after it.
#[test]
fn clone_range_ends_in_place_runs_of_both_files() {
    let (mut vol, f) = with_file(8192);
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let tags: Vec<u64> = (1..=8).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    let old_g: Vec<u64> = (101..=108).collect();
    write(&mut vol, 1, g, 0, &old_g, true).unwrap();
    // Known in place (and for reads), as right before a clone.
    for ino in [f, g] {
        assert_eq!(
            vol.map_write(1, ino, 2, 1).unwrap().kind,
            WriteKind::InPlace
        );
        vol.map_read(1, ino, 4, 1).unwrap();
    }
    assert_eq!(vol.clone_range(1, f, 0, 1, g, 0, 8).unwrap(), 8);
    check_contents(&mut vol, 1, g, &tags, "clone");
    // The next writes to the source's block 2 and the clone's block 4 must copy.
    let runs = write(&mut vol, 1, f, 2, &[222], true).unwrap();
    assert!(
        matches!(runs[..], [(2, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    let runs = write(&mut vol, 1, g, 4, &[444], true).unwrap();
    assert!(
        matches!(runs[..], [(4, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    let mut want_f = tags.clone();
    want_f[2] = 222;
    let mut want_g = tags.clone();
    want_g[4] = 444;
    check_contents(&mut vol, 1, f, &want_f, "source");
    check_contents(&mut vol, 1, g, &want_g, "clone");
    commit_clean(&mut vol);
}

/// Sources in a frozen layer and in another read-write layer: blocks shared across trees, the
/// extents keep their birth (a clone's data is not the destination layer's own), and removing
/// the source's layer leaves the clone's data readable.
#[test]
fn clone_range_from_a_frozen_layer_and_across_read_write_layers() {
    let (mut vol, f) = with_file(8192);
    let tags: Vec<u64> = (1..=12).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    let d = vol.create_layer(b"d", Some(1), NOW).unwrap();
    let g = vol.create(c, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let h = vol.create(d, ROOT_INO, b"h", &regular(), NOW).unwrap();
    let h_tags: Vec<u64> = (201..=206).collect();
    write(&mut vol, d, h, 0, &h_tags, true).unwrap();
    commit_clean(&mut vol);
    // From the frozen layer into a new file of the clone.
    assert_eq!(vol.clone_range(1, f, 2, c, g, 0, 8).unwrap(), 8);
    // From the other read-write layer, after it.
    assert_eq!(vol.clone_range(d, h, 1, c, g, 8, 4).unwrap(), 4);
    set_size(&mut vol, c, g, 12 * BS).unwrap();
    let mut want: Vec<u64> = tags[2..10].to_vec();
    want.extend(&h_tags[1..5]);
    check_contents(&mut vol, c, g, &want, "clone");
    assert_eq!(births(&mut vol, c, g), vec![1, d]);
    let l = vol.layer(c).unwrap();
    assert_eq!((l.bytes_used, l.own_bytes), (24 * BS, 0));
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 18);
    // The frozen layer's blocks are shared: a write to the clone copies, the parent keeps them.
    let runs = write(&mut vol, c, g, 0, &[900], true).unwrap();
    assert!(
        matches!(runs[..], [(0, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    want[0] = 900;
    check_contents(&mut vol, c, g, &want, "clone after a write");
    check_contents(&mut vol, 1, f, &tags, "frozen source");
    check_contents(&mut vol, d, h, &h_tags, "read-write source");
    assert_eq!(vol.layer(c).unwrap().own_bytes, BS);
    // The other layer goes: its blocks the clone shares stay.
    vol.remove_layer(d).unwrap();
    while vol.reclaim(64).unwrap() > 0 {}
    check_contents(&mut vol, c, g, &want, "after the source's layer went");
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 12 + 1 + 4);
    // A frozen destination refuses.
    vol.freeze_layer(c).unwrap();
    assert_eq!(vol.clone_range(1, f, 0, c, g, 0, 1), Err(Error::ReadOnly));
    assert!(!vol.is_aborted());
    commit_clean(&mut vol);
}

/// What the destination held is released: extents cut (their blocks freed when no one else
/// holds them), staging items dropped, `blocks` following; source holes and unwritten extents
/// become holes; the destination outside the range is untouched.
#[test]
fn clone_range_releases_the_destination_and_clones_holes_as_holes() {
    let (mut vol, f) = with_file(8192);
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    // f: written 0..4, hole 4..8, unwritten 8..12, written 12..16.
    write(&mut vol, 1, f, 0, &[1, 2, 3, 4], true).unwrap();
    vol.allocate(1, f, 8, 4).unwrap();
    write(&mut vol, 1, f, 12, &[13, 14, 15, 16], true).unwrap();
    let g_tags: Vec<u64> = (101..=120).collect();
    write(&mut vol, 1, g, 0, &g_tags, true).unwrap();
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    // A write to g in progress in the clone (staging over 2..4), as a write not flushed.
    write(&mut vol, c, g, 2, &[777, 778], false).unwrap();
    // g's own blocks in the clone (copied on write) that the clone range releases.
    write(&mut vol, c, g, 9, &[909], true).unwrap();
    assert_eq!(items(&mut vol, c, g, kind::COW).len(), 1);
    let r = commit_clean(&mut vol);
    let before = r.stats.data_blocks;
    assert_eq!(vol.clone_range(c, f, 0, c, g, 0, 16).unwrap(), 16);
    assert!(items(&mut vol, c, g, kind::COW).is_empty());
    let mut want = vec![1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 13, 14, 15, 16];
    want.extend(&g_tags[16..]);
    check_contents(&mut vol, c, g, &want, "clone");
    assert_eq!(vol.inode(c, g).unwrap().blocks, 8 + 4);
    assert_eq!(vol.inode(c, f).unwrap().blocks, 12);
    check_contents(&mut vol, 1, g, &g_tags, "parent's g");
    let r = commit_clean(&mut vol);
    // The staging blocks and g's copy of block 9 are free again.
    assert_eq!(r.stats.data_blocks, before - 3);
    // Cloning the same data again changes nothing but its references.
    assert_eq!(vol.clone_range(c, f, 0, c, g, 0, 16).unwrap(), 16);
    check_contents(&mut vol, c, g, &want, "again");
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, before - 3);
}

/// Ranges of one file (not overlapping), and every refusal, none changing anything.
#[test]
fn clone_range_within_a_file_and_its_errors() {
    let (mut vol, f) = with_file(8192);
    let d = vol.create(1, ROOT_INO, b"d", &directory(), NOW).unwrap();
    let tags: Vec<u64> = (1..=8).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    assert_eq!(vol.clone_range(1, f, 2, 1, f, 10, 4).unwrap(), 4);
    // Adjacent ranges are not overlapping ones.
    assert_eq!(vol.clone_range(1, f, 0, 1, f, 8, 2).unwrap(), 2);
    set_size(&mut vol, 1, f, 14 * BS).unwrap();
    let mut want = tags.clone();
    want.extend([1, 2, 3, 4, 5, 6]);
    check_contents(&mut vol, 1, f, &want, "one file");
    assert_eq!(vol.inode(1, f).unwrap().blocks, 14);
    let r = commit_clean(&mut vol);
    assert_eq!(r.stats.data_blocks, 8);
    let free = vol.superblock().free_blocks;
    let big = MAX_FILE_BLOCKS;
    let c = vol.clone_range(1, f, 0, 1, f, 3, 4);
    assert_eq!(c, Err(Error::Invalid), "overlapping ranges of one file");
    assert_eq!(vol.clone_range(1, f, 4, 1, f, 2, 4), Err(Error::Invalid));
    assert_eq!(vol.clone_range(1, f, 0, 1, f, 20, 0), Err(Error::Invalid));
    assert_eq!(
        vol.clone_range(1, f, big - 1, 1, f, 20, 2),
        Err(Error::Invalid)
    );
    assert_eq!(
        vol.clone_range(1, f, 0, 1, f, big - 1, 2),
        Err(Error::Invalid)
    );
    assert_eq!(
        vol.clone_range(1, f, u64::MAX, 1, f, 0, 2),
        Err(Error::Invalid)
    );
    assert_eq!(vol.clone_range(1, d, 0, 1, f, 20, 1), Err(Error::IsDir));
    assert_eq!(vol.clone_range(1, f, 0, 1, d, 20, 1), Err(Error::IsDir));
    assert_eq!(
        vol.clone_range(1, 999, 0, 1, f, 20, 1),
        Err(Error::NotFound)
    );
    assert_eq!(
        vol.clone_range(1, f, 0, 1, 999, 20, 1),
        Err(Error::NotFound)
    );
    assert_eq!(vol.clone_range(9, f, 0, 1, f, 20, 1), Err(Error::NotFound));
    assert_eq!(vol.clone_range(1, f, 0, 9, f, 20, 1), Err(Error::NotFound));
    assert!(!vol.is_aborted());
    assert!(!vol.is_dirty());
    assert_eq!(vol.superblock().free_blocks, free);
    // Holes over holes change nothing at all.
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    vol.commit(NOW).unwrap();
    assert_eq!(
        vol.clone_range(1, f, 100, 1, g, 0, 1 << 40).unwrap(),
        1 << 40
    );
    assert!(!vol.is_dirty());
    commit_clean(&mut vol);
}

/// On a full filesystem a clone stops cleanly: refused before any change, or short with every
/// piece before the refusal done and the rest of the destination unchanged; the next call for
/// the rest is refused; freeing space lets it finish.
#[test]
fn clone_range_on_a_full_filesystem_stops_between_pieces() {
    let (mut vol, f) = with_file(2048);
    let other = vol.create(1, ROOT_INO, b"o", &regular(), NOW).unwrap();
    // 150 one-block extents (interleaved with another file's, so none merge).
    for b in 0..150u64 {
        write(&mut vol, 1, f, b, &[b + 1], true).unwrap();
        write(&mut vol, 1, other, b, &[0], true).unwrap();
    }
    let tags: Vec<u64> = (1..=150).collect();
    assert_eq!(items(&mut vol, 1, f, kind::EXTENT).len(), 150);
    commit_clean(&mut vol);
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    // Fill the data space.
    let fill = vol.create(1, ROOT_INO, b"fill", &regular(), NOW).unwrap();
    let mut at = 0;
    while let Ok(wm) = vol.map_write(1, fill, at, 64) {
        at += wm.len;
    }
    vol.complete_write(1, fill, 0, at).unwrap();
    set_size(&mut vol, 1, fill, at * BS).unwrap();
    commit_clean(&mut vol);
    // A few blocks above what a clone's piece is admitted with.
    let mut punched = 0;
    while vol.data_room(STEP_TREES) < 4 {
        vol.punch_hole(1, fill, punched, 1).unwrap();
        vol.commit(NOW).unwrap();
        punched += 1;
    }
    // Clone the 150 extents again and again into one file until space runs out.
    let mut next = 0u64;
    let mut short = None;
    let err = loop {
        let free = vol.superblock().free_blocks;
        match vol.clone_range(1, f, 0, 1, g, next, 150) {
            Ok(150) => next += 150,
            Ok(n) => {
                assert!(n > 0 && n < 150);
                assert!(short.is_none(), "two short clones");
                short = Some(n);
                next += n;
                // The rest is refused up front.
                let again = vol.clone_range(1, f, n, 1, g, next, 150 - n);
                assert_eq!(again, Err(Error::NoSpace));
            }
            Err(e) => {
                assert_eq!(
                    vol.superblock().free_blocks,
                    free,
                    "a refusal changed nothing"
                );
                break e;
            }
        }
        assert!(next < 100 * 150, "never full");
    };
    assert_eq!(err, Error::NoSpace);
    assert!(!vol.is_aborted());
    assert!(short.is_some(), "{next} blocks cloned, never short");
    set_size(&mut vol, 1, g, (next + 150) * BS).unwrap();
    let mut want: Vec<u64> = (0..next).map(|b| tags[(b % 150) as usize]).collect();
    want.extend([0; 150]);
    check_contents(&mut vol, 1, g, &want, "cloned");
    assert_eq!(vol.inode(1, g).unwrap().blocks, next);
    commit_clean(&mut vol);
    // Space freed: the rest goes through.
    vol.punch_hole(1, fill, 0, at).unwrap();
    commit_clean(&mut vol);
    let from = next % 150;
    let n = 150 - from;
    assert_eq!(vol.clone_range(1, f, from, 1, g, next, n).unwrap(), n);
    for b in next..next + n {
        want[b as usize] = tags[(b % 150) as usize];
    }
    check_contents(&mut vol, 1, g, &want, "finished");
    commit_clean(&mut vol);
    eprintln!("clone on a full filesystem: {next} blocks, short {short:?}");
}

// ---- fsck ----

#[test]
fn fsck_finds_overlapping_and_misplaced_extents() {
    let (mut vol, f) = with_file(4096);
    write(&mut vol, 1, f, 0, &[1, 2, 3, 4], true).unwrap();
    vol.commit(NOW).unwrap();
    let base = vol.store().clone();
    let errs = |vol: Volume<MemDevice>| fsck_errors(vol.into_store());
    let (b, _) = vol.alloc_data(2).unwrap();
    let ext = |disk_block, len, flags| ExtentRecord {
        disk_block,
        len,
        flags,
    };

    // An extent overlapping another (blocks kept right).
    put_raw(&mut vol, 1, Key::new(f, kind::EXTENT, 3), ext(b, 2, 0));
    let mut r = vol.inode(1, f).unwrap();
    r.blocks += 2;
    put_inode(&mut vol, 1, f, &r);
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(e.iter().any(|e| e.contains("extents overlap")), "{e:?}");

    // Blocks not matching the extents.
    let mut vol = Volume::open(base.clone()).unwrap().0;
    let mut r = vol.inode(1, f).unwrap();
    r.blocks = 5;
    put_inode(&mut vol, 1, f, &r);
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(
        e.iter().any(|e| e.contains("blocks 5, extents hold 4")),
        "{e:?}"
    );

    // Overlapping staging extents.
    let mut vol = Volume::open(base.clone()).unwrap().0;
    let (b, _) = vol.alloc_data(2).unwrap();
    let (b2, _) = vol.alloc_data(2).unwrap();
    put_raw(&mut vol, 1, Key::new(f, kind::COW, 0), ext(b, 2, 0));
    put_raw(&mut vol, 1, Key::new(f, kind::COW, 1), ext(b2, 2, 0));
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(
        e.iter().any(|e| e.contains("staging extents overlap")),
        "{e:?}"
    );

    // Staging past the end of the file, and over a hole.
    let mut vol = Volume::open(base.clone()).unwrap().0;
    let (b, _) = vol.alloc_data(1).unwrap();
    put_raw(&mut vol, 1, Key::new(f, kind::COW, 6), ext(b, 1, 0));
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(e.iter().any(|e| e.contains("past the end")), "{e:?}");
    assert!(
        e.iter()
            .any(|e| e.contains("does not stand over written data")),
        "{e:?}"
    );

    // Staging with flags.
    let mut vol = Volume::open(base.clone()).unwrap().0;
    let (b, _) = vol.alloc_data(1).unwrap();
    put_raw(
        &mut vol,
        1,
        Key::new(f, kind::COW, 1),
        ext(b, 1, extent_flags::UNWRITTEN),
    );
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(
        e.iter().any(|e| e.contains("staging extent with flags")),
        "{e:?}"
    );

    // Staging blocks also in an extent: counted as references, so the count is off.
    let mut vol = Volume::open(base.clone()).unwrap().0;
    let disk = match vol.map_read(1, f, 1, 1).unwrap().kind {
        MapKind::Written { disk_block } => disk_block,
        k => panic!("{k:?}"),
    };
    put_raw(&mut vol, 1, Key::new(f, kind::COW, 1), ext(disk, 1, 0));
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(e.iter().any(|e| e.contains("reference count")), "{e:?}");

    // A layer frozen with a write in progress.
    let mut vol = Volume::open(base.clone()).unwrap().0;
    vol.freeze_layer(1).unwrap();
    let c = vol.create_layer(b"c", Some(1), NOW).unwrap();
    write(&mut vol, c, f, 1, &[9], false).unwrap();
    vol.freeze_layer(c).unwrap();
    vol.commit(NOW).unwrap();
    let e = errs(vol);
    assert!(e.iter().any(|e| e.contains("in a frozen layer")), "{e:?}");

    // The untouched image is clean.
    fsck_clean(base);
}

// ---- crash simulation ----

/// Visible contents of file `ino` in every layer: layer id to blocks (size in blocks from the
/// inode).
type State = BTreeMap<u64, Vec<Vec<u8>>>;

fn state<S: Device<Buf = Vec<u8>>>(vol: &mut Volume<S>, ino: u64) -> State {
    let mut layers = Vec::new();
    vol.for_each_layer(&mut |l| {
        layers.push(l.id);
        true
    })
    .unwrap();
    let mut out = State::new();
    for id in layers {
        let size = vol.inode(id, ino).unwrap().size.div_ceil(BS);
        out.insert(id, read(vol, id, ino, size));
    }
    out
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Rounds of copy-on-write and hole writes, each committed once with the writes in progress
/// (staging and unwritten extents on disk) and once completed, each round in a fresh clone so
/// every old block is shared (no in-place overwrite: those change committed blocks, as in every
/// filesystem without data journaling). Returns the image before, the events, the file and the
/// state after each commit.
fn record_writes(seed: u64) -> (MemDevice, Vec<Event>, u64, Vec<State>) {
    let (mut vol, f) = with_file(2048);
    let base_tags: Vec<u64> = (1..=16).collect();
    write(&mut vol, 1, f, 0, &base_tags, true).unwrap();
    vol.commit(NOW).unwrap();
    let base = vol.into_store();
    let mut vol = Volume::open(Recorder::new(base.clone())).unwrap().0;
    let mut states = vec![state(&mut vol, f)];
    let mut rng = Rng(seed | 1);
    let mut layer = 1;
    let mut tag = 1000;
    for round in 0..3 {
        vol.freeze_layer(layer).unwrap();
        layer = vol
            .create_layer(format!("r{round}").as_bytes(), Some(layer), NOW)
            .unwrap();
        vol.commit(NOW).unwrap();
        states.push(state(&mut vol, f));
        let mut ranges = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let at = rng.next() % 24;
            let len = 1 + rng.next() % 3;
            if (at..at + len).any(|b| used.contains(&b)) {
                continue;
            }
            used.extend(at..at + len);
            let tags: Vec<u64> = (0..len).map(|i| tag + i).collect();
            tag += 100;
            write(&mut vol, layer, f, at, &tags, false).unwrap();
            ranges.push((at, len));
        }
        vol.commit(NOW).unwrap();
        states.push(state(&mut vol, f));
        for (at, len) in ranges {
            vol.complete_write(layer, f, at, len).unwrap();
        }
        vol.commit(NOW).unwrap();
        states.push(state(&mut vol, f));
    }
    let rec = vol.into_store();
    (base, rec.events, f, states)
}

/// Rebuilds the image after the first `cut` events (all writes kept); returns it and the number
/// of superblock writes on disk.
fn crash_image(base: &MemDevice, events: &[Event], cut: usize) -> (MemDevice, usize) {
    let mut img = base.clone();
    let mut commits = 0;
    for e in &events[..cut] {
        if let Event::Write(b, data) = e {
            img.blocks.insert(*b, data.clone());
            if *b < Superblock::FIXED_BLOCKS {
                commits += 1;
            }
        }
    }
    (img, commits)
}

#[test]
fn crash_during_writes_keeps_old_contents_or_zeros() {
    let (base, events, f, states) = record_writes(3);
    assert_eq!(states.len(), 10);
    // The state in the middle of each round: the old contents where a copy-on-write was in
    // progress, zeros where a hole was being written.
    for round in 0..3 {
        let (before, mid) = (&states[1 + 3 * round], &states[2 + 3 * round]);
        let layer = *mid.keys().last().unwrap();
        let old = &before[&layer];
        for (b, data) in mid[&layer].iter().enumerate() {
            assert!(
                old.get(b).is_some_and(|o| o == data) || data.iter().all(|&x| x == 0),
                "round {round} block {b}"
            );
        }
        assert_ne!(
            mid,
            &states[3 + 3 * round],
            "round {round} changed something"
        );
    }
    for cut in 0..=events.len() {
        let (img, commits) = crash_image(&base, &events, cut);
        let r = fsck::check(img.clone(), &mut |_, _, _| {}).unwrap();
        assert!(r.is_clean(), "cut {cut}: fsck: {:?}", r.errors);
        let mut vol = Volume::open(img).unwrap().0;
        let mut layers = Vec::new();
        vol.for_each_layer(&mut |l| {
            if !l.is_read_only() {
                layers.push(l.id);
            }
            true
        })
        .unwrap();
        for l in layers {
            vol.recover(l).unwrap();
            assert!(items(&mut vol, l, f, kind::COW).is_empty());
        }
        assert_eq!(state(&mut vol, f), states[commits], "cut {cut}");
        vol.commit(NOW).unwrap();
        let r = fsck::check(vol.into_store(), &mut |_, _, _| {}).unwrap();
        assert!(r.is_clean(), "cut {cut} after recovery: {:?}", r.errors);
    }
}

// ---- model ----

/// Blocks a model file spans.
const MAXB: u64 = 48;

#[derive(Clone, Debug)]
enum Op {
    Write {
        file: usize,
        at: u64,
        len: u64,
        complete: bool,
    },
    CompleteAll,
    Punch {
        file: usize,
        at: u64,
        len: u64,
    },
    Allocate {
        file: usize,
        at: u64,
        len: u64,
    },
    Truncate {
        file: usize,
        blocks: u64,
    },
    CloneLayer,
    /// `clone_range` of `len` blocks from file `src` at `src_at` (of the frozen layer
    /// `frozen % frozen layers`, or of the current layer if `None` or none is frozen) into file
    /// `dst` at `dst_at` of the current layer.
    CloneRange {
        src: usize,
        frozen: Option<usize>,
        src_at: u64,
        dst: usize,
        dst_at: u64,
        len: u64,
    },
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..2, 0..MAXB, 1u64..10, any::<bool>())
            .prop_map(|(file, at, len, complete)| Op::Write { file, at, len, complete }),
        2 => Just(Op::CompleteAll),
        3 => (0usize..2, 0..MAXB, 1u64..16).prop_map(|(file, at, len)| Op::Punch { file, at, len }),
        2 => (0usize..2, 0..MAXB, 1u64..16)
            .prop_map(|(file, at, len)| Op::Allocate { file, at, len }),
        2 => (0usize..2, 0..MAXB).prop_map(|(file, blocks)| Op::Truncate { file, blocks }),
        1 => Just(Op::CloneLayer),
        3 => (0usize..2, proptest::option::weighted(0.3, 0usize..4), 0..MAXB, 0usize..2, 0..MAXB, 1u64..16)
            .prop_map(|(src, frozen, src_at, dst, dst_at, len)| Op::CloneRange {
                src,
                frozen,
                src_at,
                dst,
                dst_at,
                // Sizes stay within `MAXB + 8` blocks, as writes leave them.
                len: len.min(MAXB + 8 - dst_at),
            }),
        3 => Just(Op::Commit),
    ]
}

#[derive(Clone, Debug)]
struct FileModel {
    ino: u64,
    /// Size in blocks.
    size: u64,
    /// Tag of each visible block (0: zeros), `MAXB + 16` of them.
    tags: Vec<u64>,
}

struct World {
    vol: Volume<MemDevice>,
    layer: u64,
    files: Vec<FileModel>,
    /// Writes not completed yet: file and block to tag.
    pending: BTreeMap<(usize, u64), u64>,
    /// Frozen layers and their files' contents.
    frozen: Vec<(u64, Vec<FileModel>)>,
    next_tag: u64,
}

impl World {
    fn new() -> Self {
        let mut vol = fresh(8192);
        let mut files = Vec::new();
        for name in [&b"a"[..], b"b"] {
            let ino = vol.create(1, ROOT_INO, name, &regular(), NOW).unwrap();
            files.push(FileModel {
                ino,
                size: 0,
                tags: vec![0; (MAXB + 16) as usize],
            });
        }
        Self {
            vol,
            layer: 1,
            files,
            pending: BTreeMap::new(),
            frozen: Vec::new(),
            next_tag: 1,
        }
    }

    fn complete_all(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut run: Option<(usize, u64, u64)> = None;
        let mut runs = Vec::new();
        for &(file, b) in pending.keys() {
            run = match run {
                Some((f, at, len)) if f == file && at + len == b => Some((f, at, len + 1)),
                Some(r) => {
                    runs.push(r);
                    Some((file, b, 1))
                }
                None => Some((file, b, 1)),
            };
        }
        runs.extend(run);
        for (file, at, len) in runs {
            let ino = self.files[file].ino;
            self.vol.complete_write(self.layer, ino, at, len).unwrap();
        }
        for ((file, b), tag) in pending {
            self.files[file].tags[b as usize] = tag;
        }
    }

    fn apply(&mut self, op: &Op) {
        let layer = self.layer;
        match *op {
            Op::Write {
                file,
                at,
                len,
                complete,
            } => {
                let tags: Vec<u64> = (0..len).map(|i| self.next_tag + i).collect();
                self.next_tag += len;
                let ino = self.files[file].ino;
                let runs = write(&mut self.vol, layer, ino, at, &tags, false).unwrap();
                for (f, n, k) in runs {
                    for b in f..f + n {
                        let tag = tags[(b - at) as usize];
                        if k == WriteKind::InPlace {
                            assert!(!self.pending.contains_key(&(file, b)));
                            self.files[file].tags[b as usize] = tag;
                        } else {
                            self.pending.insert((file, b), tag);
                        }
                    }
                }
                let m = &mut self.files[file];
                m.size = m.size.max(at + len);
                if complete {
                    self.complete_all();
                }
            }
            Op::CompleteAll => self.complete_all(),
            Op::Punch { file, at, len } => {
                // The page cache drops what the hole covers: those writes never complete.
                self.pending
                    .retain(|&(f, b), _| f != file || b < at || b >= at + len);
                let ino = self.files[file].ino;
                self.vol.punch_hole(layer, ino, at, len).unwrap();
                for b in at..(at + len).min(MAXB + 16) {
                    self.files[file].tags[b as usize] = 0;
                }
            }
            Op::Allocate { file, at, len } => {
                let ino = self.files[file].ino;
                self.vol.allocate(layer, ino, at, len).unwrap();
            }
            Op::Truncate { file, blocks } => {
                // The page cache past the new end goes: those writes never complete (their
                // staging and unwritten blocks go with the truncation).
                self.pending.retain(|&(f, b), _| f != file || b < blocks);
                let ino = self.files[file].ino;
                set_size(&mut self.vol, layer, ino, blocks * BS).unwrap();
                let m = &mut self.files[file];
                for t in m.tags.iter_mut().skip(blocks as usize) {
                    *t = 0;
                }
                m.size = blocks;
            }
            Op::CloneLayer => {
                if self.frozen.len() >= 4 {
                    return;
                }
                // A layer is synced before it is frozen.
                self.complete_all();
                self.vol.freeze_layer(layer).unwrap();
                self.frozen.push((layer, self.files.clone()));
                let name = format!("l{}", self.frozen.len());
                self.layer = self
                    .vol
                    .create_layer(name.as_bytes(), Some(layer), NOW)
                    .unwrap();
            }
            Op::CloneRange {
                src,
                frozen,
                src_at,
                dst,
                dst_at,
                len,
            } => {
                // The kernel writes both files back and waits first.
                self.complete_all();
                let (src_layer, src_tags) = match frozen {
                    Some(i) if !self.frozen.is_empty() => {
                        let (l, files) = &self.frozen[i % self.frozen.len()];
                        (*l, files[src].tags.clone())
                    }
                    _ => (layer, self.files[src].tags.clone()),
                };
                let (src_ino, dst_ino) = (self.files[src].ino, self.files[dst].ino);
                let got = self
                    .vol
                    .clone_range(src_layer, src_ino, src_at, layer, dst_ino, dst_at, len);
                let overlap = src_layer == layer
                    && src == dst
                    && src_at < dst_at + len
                    && dst_at < src_at + len;
                if overlap {
                    assert_eq!(got, Err(Error::Invalid));
                    return;
                }
                assert_eq!(got, Ok(len));
                let m = &mut self.files[dst];
                for i in 0..len {
                    m.tags[(dst_at + i) as usize] = src_tags[(src_at + i) as usize];
                }
                // The kernel grows the destination to the end of a range cloned past it.
                if m.size < dst_at + len {
                    m.size = dst_at + len;
                    set_size(&mut self.vol, layer, dst_ino, m.size * BS).unwrap();
                }
            }
            Op::Commit => {
                self.vol.commit(NOW).unwrap();
                fsck_clean(self.vol.store().clone());
                for (l, files) in self.frozen.clone() {
                    self.check_layer(l, &files, "frozen layer");
                }
            }
        }
    }

    fn check_layer(&mut self, layer: u64, files: &[FileModel], what: &str) {
        for m in files {
            let r = self.vol.inode(layer, m.ino).unwrap();
            assert_eq!(r.size, m.size * BS, "{what}: size");
            // Past the size the file reads as a hole too.
            check_contents(
                &mut self.vol,
                layer,
                m.ino,
                &m.tags[..(m.size + 8) as usize],
                what,
            );
        }
    }

    fn check(&mut self, what: &str) {
        let files = self.files.clone();
        self.check_layer(self.layer, &files, what);
    }
}

fn run(ops: &[Op]) {
    let mut w = World::new();
    for (i, op) in ops.iter().enumerate() {
        w.apply(op);
        w.check(&format!("after op {i} {op:?}"));
    }
    w.complete_all();
    w.check("at the end");
    w.vol.commit(NOW).unwrap();
    fsck_clean(w.vol.store().clone());
    for (l, files) in w.frozen.clone() {
        w.check_layer(l, &files, "frozen layer at the end");
    }
    // Punching every file in every read-write layer leaves no data block behind but the frozen
    // layers' ones.
    let files: Vec<u64> = w.files.iter().map(|m| m.ino).collect();
    for ino in files {
        w.vol.punch_hole(w.layer, ino, 0, u64::MAX).unwrap();
        assert_eq!(w.vol.inode(w.layer, ino).unwrap().blocks, 0);
    }
    w.vol.commit(NOW).unwrap();
    fsck_clean(w.vol.into_store());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn file_contents_match_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(&ops);
    }
}

#[test]
fn snapshot_of_a_live_layer_is_a_point_in_time() {
    let (mut vol, f) = with_file(8192);
    let tags: Vec<u64> = (1..=20).collect();
    write(&mut vol, 1, f, 0, &tags, true).unwrap();
    vol.commit(NOW).unwrap();
    // The file's blocks are layer 1's alone: overwrites go in place.
    assert_eq!(vol.map_write(1, f, 5, 1).unwrap().kind, WriteKind::InPlace);
    vol.complete_write(1, f, 5, 1).unwrap();
    let snap = vol.snapshot_layer(b"snap", 1, NOW).unwrap();
    let s = vol.layer(snap).unwrap();
    assert!(s.is_read_only());
    assert_eq!((s.parent, s.name()), (0, &b"snap"[..]));
    assert!(
        !vol.layer(1).unwrap().is_read_only(),
        "the source stays writable"
    );
    assert_eq!(vol.layer(snap).unwrap().bytes_used, 20 * BS);
    // Now shared with the snapshot: the source's next write to the block copies it.
    let runs = write(&mut vol, 1, f, 5, &[500], false).unwrap();
    assert!(
        matches!(runs[..], [(5, 1, WriteKind::Cow { .. })]),
        "{runs:?}"
    );
    vol.complete_write(1, f, 5, 1).unwrap();
    let mut want = tags.clone();
    want[5] = 500;
    check_contents(&mut vol, 1, f, &want, "source");
    check_contents(&mut vol, snap, f, &tags, "snapshot");
    // The snapshot refuses changes, and can be cloned like any frozen layer.
    assert!(matches!(vol.map_write(snap, f, 0, 1), Err(Error::ReadOnly)));
    let c = vol.create_layer(b"from-snap", Some(snap), NOW).unwrap();
    check_contents(&mut vol, c, f, &tags, "clone of the snapshot");
    vol.commit(NOW).unwrap();
    let r = fsck_clean(vol.store().clone());
    assert_eq!(r.stats.data_blocks, 21, "one block copied");
    // A snapshot of a clone is its sibling: a child of the same parent.
    let s2 = vol.snapshot_layer(b"snap2", c, NOW).unwrap();
    assert_eq!(vol.layer(s2).unwrap().parent, snap);
    assert_eq!(vol.layer(snap).unwrap().children, 2);
    assert!(matches!(
        vol.snapshot_layer(b"snap2", c, NOW),
        Err(Error::Exists)
    ));
    assert!(matches!(
        vol.snapshot_layer(b"x", 999, NOW),
        Err(Error::NotFound)
    ));
    vol.commit(NOW).unwrap();
    fsck_clean(vol.into_store());
}

#[test]
fn layers_are_renamed_and_listed_from_a_cursor() {
    let mut vol = fresh(4096);
    vol.freeze_layer(1).unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            vol.create_layer(format!("l{i}").as_bytes(), Some(1), NOW)
                .unwrap()
        })
        .collect();
    vol.rename_layer(ids[2], b"renamed").unwrap();
    assert!(vol.find_layer(b"l2").unwrap().is_none());
    assert_eq!(vol.find_layer(b"renamed").unwrap().unwrap().id, ids[2]);
    assert_eq!(vol.layer(ids[2]).unwrap().name(), b"renamed");
    assert!(matches!(
        vol.rename_layer(ids[3], b"l4"),
        Err(Error::Exists)
    ));
    assert!(matches!(vol.rename_layer(99, b"x"), Err(Error::NotFound)));
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert!(vol.rename_layer(ids[0], bad).is_err(), "{bad:?} accepted");
        assert!(
            vol.create_layer(bad, Some(1), NOW).is_err(),
            "{bad:?} accepted"
        );
    }
    // Renaming to its own name changes nothing.
    vol.rename_layer(ids[0], b"l0").unwrap();
    let mut from_third = Vec::new();
    vol.for_each_layer_from(ids[2], &mut |l| {
        from_third.push(l.id);
        true
    })
    .unwrap();
    assert_eq!(from_third, ids[2..]);
    vol.commit(NOW).unwrap();
    let (mut vol, damage) = Volume::open(vol.into_store()).unwrap();
    assert!(damage.is_none());
    assert_eq!(vol.find_layer(b"renamed").unwrap().unwrap().id, ids[2]);
    fsck_clean(vol.into_store());
}

/// A frozen layer's tree read without the volume (as the kernel reads image files) maps every
/// block as the volume does: written, unwritten and hole runs, across a tree of many leaves.
#[test]
fn frozen_tree_maps_as_the_volume_does() {
    let mut vol = fresh(16384);
    let mut files = Vec::new();
    for i in 0..150u64 {
        let name = format!("f{i}");
        let ino = vol
            .create(1, ROOT_INO, name.as_bytes(), &regular(), NOW)
            .unwrap();
        write(&mut vol, 1, ino, i % 3, &[i + 1, i + 2], true).unwrap();
        write(&mut vol, 1, ino, 6 + i % 5, &[i + 3], true).unwrap();
        if i % 4 == 0 {
            vol.allocate(1, ino, 12, 2).unwrap();
        }
        files.push(ino);
    }
    // Read-write: no frozen tree.
    assert!(vol.frozen_tree(1).unwrap().is_none());
    vol.freeze_layer(1).unwrap();
    vol.commit(NOW).unwrap();
    let frozen = vol.frozen_tree(1).unwrap().expect("layer 1 is frozen");
    let mut dev = vol.store().clone();
    let mut kinds = [0u32; 3];
    for &ino in &files {
        for fb in 0..16 {
            let want = vol.map_read(1, ino, fb, 64).unwrap();
            let got = frozen.map_read(&mut dev, ino, fb, 64).unwrap();
            assert_eq!(got, want, "file {ino} block {fb}");
            kinds[match want.kind {
                MapKind::Hole => 0,
                MapKind::Unwritten { .. } => 1,
                MapKind::Written { .. } => 2,
            }] += 1;
        }
    }
    assert!(
        kinds.iter().all(|&n| n > 0),
        "every kind of run seen: {kinds:?}"
    );
    // A clone of the frozen layer is read-write: no frozen tree for it.
    let clone = vol.create_layer(b"c", Some(1), NOW).unwrap();
    assert!(vol.frozen_tree(clone).unwrap().is_none());
    // Bad arguments are errors, as from the volume.
    assert_eq!(
        frozen.map_read(&mut dev, files[0], 0, 0),
        Err(Error::Invalid)
    );
    assert_eq!(
        frozen.map_read(&mut dev, files[0], MAX_FILE_BLOCKS, 1),
        Err(Error::Invalid)
    );
    // A damaged node is refused, not followed: zero every block the tree may use.
    let total = vol.superblock().total_blocks;
    let mut wiped = MemDevice::new(total);
    assert!(matches!(
        frozen.map_read(&mut wiped, files[0], 0, 1),
        Err(Error::Corrupt(_))
    ));
}

/// A frozen layer's tree read without the volume answers lookups, listings, inode records and
/// symlink targets exactly as the volume does, across directories of many leaves.
#[test]
fn frozen_tree_reads_names_as_the_volume_does() {
    let mut vol = fresh(16384);
    let dir = vol.create(1, ROOT_INO, b"d", &directory(), NOW).unwrap();
    let mut names = Vec::new();
    for i in 0..600u64 {
        let name = format!("entry-with-a-longer-name-{i:04}");
        let attrs = match i % 3 {
            0 => regular(),
            1 => NewInode {
                mode: mode::S_IFLNK | 0o777,
                ..NewInode::default()
            },
            _ => NewInode {
                mode: mode::S_IFCHR | 0o600,
                uid: i as u32,
                rdev: i,
                ..NewInode::default()
            },
        };
        let ino = vol.create(1, dir, name.as_bytes(), &attrs, NOW).unwrap();
        if i % 3 == 1 {
            // Targets of one to four inline items.
            let target = vec![b'a' + (i % 26) as u8; 200 + (i as usize * 7) % 3000];
            vol.write_inline(1, ino, &target, NOW).unwrap();
        }
        names.push((name, ino));
    }
    vol.freeze_layer(1).unwrap();
    vol.commit(NOW).unwrap();
    let frozen = vol.frozen_tree(1).unwrap().expect("layer 1 is frozen");
    let mut dev = vol.store().clone();
    for (name, ino) in &names {
        let want = vol.lookup_name(1, dir, name.as_bytes()).unwrap();
        assert_eq!(want.map(|e| e.ino), Some(*ino));
        assert_eq!(
            frozen.lookup_name(&mut dev, dir, name.as_bytes()).unwrap(),
            want
        );
        assert_eq!(
            frozen.inode(&mut dev, *ino).unwrap(),
            vol.inode(1, *ino).unwrap()
        );
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        let got = frozen.read_inline(&mut dev, *ino, &mut a);
        assert_eq!(got, vol.read_inline(1, *ino, &mut b), "{name}");
        if let Ok(n) = got {
            assert!(n >= 200);
            assert_eq!(a[..n], b[..n]);
        }
    }
    for missing in [&b"nope"[..], b"entry-with-a-longer-name-9999"] {
        assert_eq!(frozen.lookup_name(&mut dev, dir, missing).unwrap(), None);
    }
    assert!(frozen.lookup_name(&mut dev, dir, b"a/b").is_err());
    assert_eq!(frozen.inode(&mut dev, 999_999), Err(Error::NotFound));
    // Listings, whole and resumed from every 50th cookie, as the volume gives them.
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let entry = |e: &DirEntry<'_>| (e.offset, e.ino, e.dtype, e.name.to_vec());
    vol.readdir(1, dir, 0, &mut |e| {
        want.push(entry(e));
        true
    })
    .unwrap();
    frozen
        .readdir(&mut dev, dir, 0, &mut |e| {
            got.push(entry(e));
            true
        })
        .unwrap();
    assert_eq!(want.len(), names.len());
    assert_eq!(got, want);
    for (offset, ..) in want.iter().step_by(50) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        vol.readdir(1, dir, *offset, &mut |e| {
            a.push(e.ino);
            a.len() < 20
        })
        .unwrap();
        frozen
            .readdir(&mut dev, dir, *offset, &mut |e| {
                b.push(e.ino);
                b.len() < 20
            })
            .unwrap();
        assert_eq!(a, b);
    }
    // Another filesystem's device is refused, a damaged one is not followed.
    let total = vol.superblock().total_blocks;
    assert_eq!(
        frozen.inode(&mut MemDevice::new(total + 1), ROOT_INO),
        Err(Error::Invalid)
    );
    assert!(matches!(
        frozen.lookup_name(&mut MemDevice::new(total), dir, b"x"),
        Err(Error::Corrupt(_))
    ));
}

/// A commit in two parts, as the kernel runs it with its device part outside the volume lock,
/// split: the next transaction takes changes while the device part runs. Blocks the committing
/// transaction freed stay out of reach until `commit_end`, because the commit before still uses
/// them: here a file removed in that transaction keeps its data on the medium while the next
/// transaction writes over all the free space, so a crash before the new superblock is durable
/// finds the commit before whole (and fsck clean), one after it finds the new commit, and the
/// commit after that holds what was changed meanwhile.
#[test]
fn split_commit_takes_changes_while_the_device_part_runs() {
    let (mut vol, ino) = with_file(4096);
    let tags: Vec<u64> = (1..=40).collect();
    write(&mut vol, 1, ino, 0, &tags, true).unwrap();
    vol.commit(NOW).unwrap();
    let gen = vol.superblock().generation;
    vol.unlink(1, ROOT_INO, b"f", NOW).unwrap();
    let pending = vol.commit_begin(NOW).unwrap().expect("changes to commit");
    assert!(pending.is_split() && vol.is_committing());
    assert_eq!(vol.commit_begin(NOW).unwrap_err(), Error::Busy);
    let free_next = vol.map().free;
    // The next transaction: a file written over all the free space, one block at a time.
    let g = vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let mut n = 0u64;
    while write(&mut vol, 1, g, n, &[1000 + n], true).is_ok() {
        n += 1;
    }
    assert!(!vol.is_aborted());
    assert!(n > 3000, "{n} blocks written");
    // A crash before the superblock write: the commit before, whole.
    let dev = vol.store().clone();
    let (mut before, _) = Volume::open(dev.clone()).unwrap();
    assert_eq!(before.superblock().generation, gen);
    let f = before.lookup_name(1, ROOT_INO, b"f").unwrap().unwrap().ino;
    let want: Vec<Vec<u8>> = tags.iter().map(|&t| pattern(t)).collect();
    assert_eq!(
        read(&mut before, 1, f, 40),
        want,
        "data of the commit before overwritten"
    );
    fsck_clean(dev);
    // The device part (the nodes are on the medium already) and a crash right after it.
    let mut block = vec![0u8; BS as usize];
    pending.encode(&mut block).unwrap();
    vol.store().write(pending.slot(), &block).unwrap();
    let dev = vol.store().clone();
    let free = vol.map().free;
    vol.commit_end(pending, Ok(())).unwrap();
    assert!(!vol.is_committing());
    assert!(
        vol.map().free >= free + 40,
        "the removed file's blocks are free now"
    );
    let (mut after, _) = Volume::open(dev.clone()).unwrap();
    assert_eq!(after.superblock().generation, gen + 1);
    assert!(
        after.superblock().free_blocks >= free_next + 40,
        "the next transaction was given the blocks the commit freed"
    );
    assert_eq!(after.lookup_name(1, ROOT_INO, b"f").unwrap(), None);
    assert_eq!(after.lookup_name(1, ROOT_INO, b"g").unwrap(), None);
    fsck_clean(dev);
    // They take new data, and the next commit holds everything written meanwhile.
    write(&mut vol, 1, g, n, &[1000 + n], true).unwrap();
    vol.commit(NOW).unwrap();
    let dev = vol.into_store();
    let (mut next, _) = Volume::open(dev.clone()).unwrap();
    assert_eq!(next.superblock().generation, gen + 2);
    let g = next.lookup_name(1, ROOT_INO, b"g").unwrap().unwrap().ino;
    let want: Vec<Vec<u8>> = (0..=n).map(|i| pattern(1000 + i)).collect();
    assert_eq!(read(&mut next, 1, g, n + 1), want);
    fsck_clean(dev);
}

/// A commit that cannot be split (too little free space to keep the freed blocks apart): between
/// `commit_begin` and `commit_end` every read answers from the state being committed and every
/// change is refused (`Busy`) without changing anything; the state is committed once the
/// caller has flushed, written the new superblock and flushed again, and a failed device part
/// aborts the transaction, leaving the last commit on the medium.
#[test]
fn commit_in_two_parts_without_room_reads_and_refuses_changes() {
    let (mut vol, ino) = with_file(4096);
    write(&mut vol, 1, ino, 0, &[5, 6, 7], true).unwrap();
    // Full: a second file takes every block data may take.
    let h = vol.create(1, ROOT_INO, b"h", &regular(), NOW).unwrap();
    let mut n = 0u64;
    while write(&mut vol, 1, h, n, &[100 + n], true).is_ok() {
        n += 1;
    }
    vol.commit(NOW).unwrap();
    // Blocks freed: the commit must keep them from the next transaction, and has no room to.
    vol.punch_hole(1, h, 0, 10).unwrap();
    let gen = vol.superblock().generation;
    let pending = vol.commit_begin(NOW).unwrap().expect("changes to commit");
    assert!(!pending.is_split());
    assert!(vol.is_committing());
    // Reads.
    assert_eq!(
        vol.lookup_name(1, ROOT_INO, b"f").unwrap().unwrap().ino,
        ino
    );
    assert_eq!(vol.inode(1, ino).unwrap().size, 3 * BS);
    let mut names = Vec::new();
    vol.readdir(1, ROOT_INO, 0, &mut |e| {
        names.push(e.name.to_vec());
        true
    })
    .unwrap();
    assert_eq!(names, [b"f".to_vec(), b"h".to_vec()]);
    assert!(matches!(
        vol.map_read(1, ino, 0, 3).unwrap().kind,
        MapKind::Written { .. }
    ));
    // Changes, each refused and none made.
    assert_eq!(
        vol.create(1, ROOT_INO, b"g", &regular(), NOW),
        Err(Error::Busy)
    );
    assert_eq!(vol.unlink(1, ROOT_INO, b"f", NOW), Err(Error::Busy));
    assert_eq!(vol.alloc_data(1), Err(Error::Busy));
    assert_eq!(vol.create_layer(b"x", None, NOW), Err(Error::Busy));
    assert!(vol.commit_begin(NOW).is_err(), "a second commit began");
    assert!(!vol.is_aborted());
    assert_eq!(vol.lookup_name(1, ROOT_INO, b"g").unwrap(), None);
    // The device part, as the kernel does it: flush, superblock, flush.
    let mut dev = vol.store().clone();
    let written = (|| {
        dev.flush()?;
        let mut block = vec![0u8; BS as usize];
        pending.encode(&mut block)?;
        dev.write(pending.slot(), &block)?;
        dev.flush()
    })();
    // The volume's own store saw the node writes: give it the superblock too.
    let mut block = vec![0u8; BS as usize];
    pending.encode(&mut block).unwrap();
    vol.store().write(pending.slot(), &block).unwrap();
    vol.commit_end(pending, written).unwrap();
    assert!(!vol.is_committing());
    assert_eq!(vol.superblock().generation, gen + 1);
    // Changes go on, and the committed state is the one the device part wrote.
    vol.create(1, ROOT_INO, b"g", &regular(), NOW).unwrap();
    let (mut reopened, _) = Volume::open(dev).unwrap();
    assert_eq!(reopened.superblock().generation, gen + 1);
    assert_eq!(reopened.inode(1, ino).unwrap().size, 3 * BS);
    assert_eq!(reopened.lookup_name(1, ROOT_INO, b"g").unwrap(), None);
    fsck_clean(reopened.into_store());
    // A device part that failed aborts the transaction; the last commit stays.
    let pending = vol.commit_begin(NOW).unwrap().expect("changes to commit");
    assert_eq!(vol.commit_end(pending, Err(Error::Io)), Err(Error::Io));
    assert!(vol.is_aborted());
    assert!(!vol.is_committing());
    let (mut reopened, _) = Volume::open(vol.into_store()).unwrap();
    assert_eq!(reopened.superblock().generation, gen + 1);
    assert_eq!(reopened.lookup_name(1, ROOT_INO, b"g").unwrap(), None);
}

/// The label (`FS_IOC_SETFSLABEL`) changes with the running transaction and is committed with
/// it; a label that does not fit is refused and changes nothing. A shutdown
/// (`FS_IOC_SHUTDOWN`) ends the running transaction uncommitted: every later call fails and
/// the device keeps the last commit.
#[test]
fn label_and_shutdown() {
    let (mut vol, _) = with_file(4096);
    vol.commit(NOW).unwrap();
    vol.set_label("containers").unwrap();
    assert_eq!(vol.superblock().label(), Some("containers"));
    let long = "l".repeat(64);
    assert_eq!(vol.set_label(&long), Err(Error::Invalid));
    assert_eq!(vol.set_label("a\0b"), Err(Error::Invalid));
    assert_eq!(vol.superblock().label(), Some("containers"));
    vol.set_label(&"m".repeat(63)).unwrap();
    vol.set_label("containers").unwrap();
    vol.commit(NOW).unwrap();
    let gen = vol.superblock().generation;
    vol.create(1, ROOT_INO, b"lost", &regular(), NOW).unwrap();
    vol.set_label("lost").unwrap();
    vol.shut_down();
    assert_eq!(
        vol.create(1, ROOT_INO, b"later", &regular(), NOW),
        Err(Error::Aborted)
    );
    assert!(vol.commit(NOW).is_err(), "a shut-down volume committed");
    let (mut reopened, _) = Volume::open(vol.into_store()).unwrap();
    assert_eq!(reopened.superblock().generation, gen);
    assert_eq!(reopened.superblock().label(), Some("containers"));
    assert_eq!(reopened.lookup_name(1, ROOT_INO, b"lost").unwrap(), None);
    fsck_clean(reopened.into_store());
}

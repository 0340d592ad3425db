//! Crash simulation: record every block write and flush of a workload, then rebuild the image as
//! a crash at each point would leave it (and, between two flushes, with any subset of the
//! in-flight writes, since a disk may reorder them), reopen it, and require exactly the state of
//! the last commit whose superblock reached the disk, with fsck clean.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

use std::collections::BTreeMap;

use lcfs_format::node::Key;
use lcfs_format::records::{kind, put_inline_data, ExtentRecord, Timespec};
use lcfs_format::superblock::Superblock;
use lcfs_format::volume::Volume;
use lcfs_image::fsck;
use lcfs_image::store::{Event, MemDevice, Recorder};
use proptest::prelude::*;

/// A small deterministic generator (xorshift64*), enough for picking workloads and cut points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

type State = BTreeMap<u64, (Vec<u8>, u32, u64, BTreeMap<Key, Vec<u8>>)>;

/// Everything visible: each layer's name, flags, parent and items.
fn state<S: lcfs_format::volume::Device>(vol: &mut Volume<S>) -> State {
    let mut layers = Vec::new();
    vol.for_each_layer(&mut |l| {
        layers.push(*l);
        true
    })
    .unwrap();
    let mut out = State::new();
    for l in layers {
        let mut items = BTreeMap::new();
        let mut from = Key::MIN;
        while let Some((k, v)) = vol.next(l.id, &from, |k, v| (*k, v.to_vec())).unwrap() {
            items.insert(k, v);
            from = Key::new(k.id, k.kind, k.offset + 1);
        }
        out.insert(l.id, (l.name().to_vec(), l.flags, l.parent, items));
    }
    out
}

fn inline(n: usize, seed: u64) -> Vec<u8> {
    let data: Vec<u8> = (0..n).map(|i| (i as u64 * 31 + seed) as u8).collect();
    let mut v = vec![0u8; n + 2];
    put_inline_data(&mut v, &data).unwrap();
    v
}

/// Runs a workload of `steps` operations with a commit every `commit_every`, recording writes.
/// Returns the image before it, the events, and the state after each commit (index 0: before).
fn record(steps: u64, commit_every: u64, seed: u64) -> (MemDevice, Vec<Event>, Vec<State>) {
    let total = 3000;
    let sb = Superblock::new(total, [9; 16], 1_700_000_000);
    let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
    let base = vol.store().clone();
    let mut vol = Volume::open(Recorder::new(base.clone())).unwrap().0;
    let mut states = vec![state(&mut vol)];
    let mut rng = Rng::new(seed);
    let mut layer = 1u64;
    for step in 0..steps {
        let k = rng.range(2, 600);
        match rng.range(0, 10) {
            0..=4 => vol
                .insert(
                    layer,
                    &Key::new(1, kind::INLINE, k),
                    &inline(rng.range(0, 200) as usize, k),
                )
                .unwrap(),
            5 => {
                let _ = vol.remove(layer, &Key::new(1, kind::INLINE, k)).unwrap();
            }
            6 => {
                // Offsets 4 apart: extents of up to 3 blocks never overlap (fsck checks).
                let (b, n) = vol.alloc_data(rng.range(1, 4) as u32).unwrap();
                let mut v = [0u8; 16];
                ExtentRecord {
                    disk_block: b,
                    len: n,
                    flags: 0,
                }
                .encode(&mut v)
                .unwrap();
                vol.insert(layer, &Key::new(1, kind::EXTENT, k * 4), &v)
                    .unwrap();
            }
            7 => {
                let _ = vol
                    .remove(layer, &Key::new(1, kind::EXTENT, k * 4))
                    .unwrap();
            }
            8 if step % 7 == 0 => {
                // Freeze the current layer and continue in a clone of it.
                vol.freeze_layer(layer).unwrap();
                layer = vol
                    .create_layer(format!("c{step}").as_bytes(), Some(layer), NOW)
                    .unwrap();
            }
            9 if step % 11 == 0 => {
                // Remove an older leaf layer if there is one.
                let mut victim = None;
                let mut layers = Vec::new();
                vol.for_each_layer(&mut |l| {
                    layers.push(*l);
                    true
                })
                .unwrap();
                for l in &layers {
                    if l.children == 0 && l.id != layer {
                        victim = Some(l.id);
                    }
                }
                if let Some(v) = victim {
                    vol.remove_layer(v).unwrap();
                }
            }
            _ => {}
        }
        // Removed layers are reclaimed a few nodes at a time, across commits.
        if step % 3 == 0 {
            vol.reclaim(2).unwrap();
        }
        if step % commit_every == commit_every - 1 {
            vol.commit(NOW).unwrap();
            states.push(state(&mut vol));
        }
    }
    vol.commit(NOW).unwrap();
    states.push(state(&mut vol));
    let rec = vol.into_store();
    (base, rec.events, states)
}

/// Rebuilds the image after the first `cut` events, keeping only the writes of the last
/// unflushed window that `keep` selects. Returns it and the number of superblock writes that
/// are on disk.
fn crash_image(
    base: &MemDevice,
    events: &[Event],
    cut: usize,
    keep: &mut dyn FnMut() -> bool,
) -> (MemDevice, usize) {
    let mut img = base.clone();
    let last_flush = events[..cut]
        .iter()
        .rposition(|e| *e == Event::Flush)
        .map_or(0, |i| i + 1);
    let mut commits = 0;
    for (i, e) in events[..cut].iter().enumerate() {
        if let Event::Write(b, data) = e {
            if i >= last_flush && !keep() {
                continue;
            }
            img.blocks.insert(*b, data.clone());
            if *b < Superblock::FIXED_BLOCKS {
                commits += 1;
            }
        }
    }
    (img, commits)
}

fn check_crash(img: MemDevice, commits: usize, states: &[State], what: &str) {
    let r = fsck::check(img.clone(), &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "{what}: fsck: {:?}", r.errors);
    let mut vol = Volume::open(img)
        .unwrap_or_else(|e| panic!("{what}: open: {e:?}"))
        .0;
    assert_eq!(
        state(&mut vol),
        states[commits],
        "{what}: state of commit {commits}"
    );
    // Reclaim interrupted by the crash resumes from the committed queue and ends clean.
    assert_eq!(vol.reclaim(u32::MAX).unwrap(), 0, "{what}: reclaim");
    vol.commit(NOW).unwrap();
    let r = fsck::check(vol.into_store(), &mut |_, _, _| {}).unwrap();
    assert!(r.is_clean(), "{what}: fsck after reclaim: {:?}", r.errors);
    assert_eq!(r.stats.reclaim_queued, 0, "{what}: queue after reclaim");
}

#[test]
fn crash_at_every_write_of_a_small_workload() {
    let (base, events, states) = record(60, 15, 1);
    assert!(states.len() >= 5);
    let writes = events
        .iter()
        .filter(|e| matches!(e, Event::Write(..)))
        .count();
    assert!(writes > 100, "{writes} writes");
    for cut in 0..=events.len() {
        let (img, commits) = crash_image(&base, &events, cut, &mut || true);
        check_crash(img, commits, &states, &format!("cut {cut}"));
    }
}

#[test]
fn torn_superblock_write_falls_back_one_commit() {
    let (base, events, states) = record(40, 10, 2);
    let sb_writes: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Write(b, _) if *b < Superblock::FIXED_BLOCKS))
        .map(|(i, _)| i)
        .collect();
    for &i in &sb_writes {
        let (mut img, commits) = crash_image(&base, &events, i + 1, &mut || true);
        // Only the first 200 bytes of the new copy made it.
        let Event::Write(b, new) = &events[i] else {
            unreachable!()
        };
        let old = base_or_previous(&base, &events[..i], *b);
        let mut torn = old.clone();
        torn[..200].copy_from_slice(&new[..200]);
        img.blocks.insert(*b, torn);
        let what = format!("torn superblock at event {i}");
        // fsck names the lost commit (the torn copy's generation is in its first 200 bytes) and
        // nothing else; its repair leaves the state the mount falls back to, both copies valid.
        let r = fsck::check(img.clone(), &mut |_, _, _| {}).unwrap();
        let f = r
            .fallback
            .clone()
            .unwrap_or_else(|| panic!("{what}: no fallback"));
        assert!(r.only_fallback(), "{what}: {:?}", r.errors);
        assert_eq!(f.damaged_generation, Some(f.generation + 1), "{what}");
        let fixed = fsck::make_fallback_current(img, &f, NOW)
            .unwrap_or_else(|e| panic!("{what}: repair: {e}"))
            .into_store();
        check_crash(fixed, commits - 1, &states, &what);
    }
}

fn base_or_previous(base: &MemDevice, events: &[Event], block: u64) -> Vec<u8> {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Write(b, d) if *b == block => Some(d.clone()),
            _ => None,
        })
        .or_else(|| base.blocks.get(&block).cloned())
        .unwrap_or_else(|| vec![0; 4096])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// A bigger workload cut at random points, with random subsets of the in-flight writes.
    #[test]
    fn crash_at_random_points_with_reordering(seed in any::<u64>()) {
        let (base, events, states) = record(600, 40, seed);
        let mut rng = Rng::new(seed ^ 0x5eed);
        for _ in 0..40 {
            let cut = rng.range(0, events.len() as u64 + 1) as usize;
            let mut r2 = Rng::new(rng.next());
            let (img, commits) = crash_image(&base, &events, cut, &mut || r2.next().is_multiple_of(2));
            check_crash(img, commits, &states, &format!("seed {seed} cut {cut}"));
        }
    }
}

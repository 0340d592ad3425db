// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Model-based tests of the reference-count map.

#![allow(clippy::arithmetic_side_effects)] // Test data and model arithmetic on small integers.

extern crate std;

use std::collections::{BTreeMap, BTreeSet};
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// Sparse in-memory device.
pub(crate) struct MemStore {
    pub(crate) total: u64,
    pub(crate) blocks: BTreeMap<u64, Vec<u8>>,
}

impl BlockStore for MemStore {
    type Buf = Vec<u8>;
    fn alloc_buf(&mut self) -> Result<Vec<u8>, Error> {
        Ok(vec![0; NODE_SIZE])
    }
    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        match self.blocks.get(&blocknr) {
            Some(b) => buf.copy_from_slice(b),
            None => buf.fill(0),
        }
        Ok(())
    }
    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), Error> {
        assert!(blocknr < self.total);
        self.blocks.insert(blocknr, buf.clone());
        Ok(())
    }
    fn total_blocks(&self) -> u64 {
        self.total
    }
}

fn params(total: u64, generation: u64) -> MapParams {
    MapParams {
        root: 0,
        level: 0,
        free: 0,
        reserve: 0,
        fsid: 42,
        total_blocks: total,
        generation,
    }
}

/// A map plus the model: counts of the blocks handed out by the test (map nodes are the map's
/// own business and are found by walking it).
struct World {
    store: MemStore,
    map: RefMap,
    model: BTreeMap<u64, u32>,
    pinned: BTreeSet<u64>,
    /// Blocks freed by the transaction before, whose split commit is not done.
    held: BTreeSet<u64>,
}

impl World {
    fn new(total: u64) -> Self {
        let mut store = MemStore {
            total,
            blocks: BTreeMap::new(),
        };
        let map = RefMap::format(&mut store, &params(total, 1), 2).unwrap();
        Self {
            store,
            map,
            model: BTreeMap::new(),
            pinned: BTreeSet::new(),
            held: BTreeSet::new(),
        }
    }

    /// Commits and reopens from the recorded state, as mount would.
    fn commit(&mut self) {
        if self.map.held > 0 {
            assert_eq!(self.map.unpin_all(&mut self.store), Err(Error::Busy));
            self.done();
        }
        self.map.unpin_all(&mut self.store).unwrap();
        self.pinned.clear();
        let mut p = params(self.map.total_blocks, self.map.generation + 1);
        p.root = self.map.root;
        p.level = self.map.level;
        p.free = self.map.free;
        self.map = RefMap::open(&mut self.store, &p).unwrap();
    }

    /// Checks every count against the model and the map's own structure.
    fn check(&mut self) {
        let mut nodes = BTreeSet::new();
        let mut counts = BTreeMap::new();
        self.map
            .walk(
                &mut self.store,
                &mut |b| {
                    nodes.insert(b);
                },
                &mut |first, leaf| {
                    for i in 0..LEAF_ENTRIES {
                        let v = leaf_get(leaf, i).unwrap();
                        if v != 0 {
                            counts.insert(first + i, v);
                        }
                    }
                    Ok(())
                },
            )
            .unwrap();
        let mut expected: BTreeMap<u64, u32> = self.model.clone();
        expected.insert(0, 1);
        expected.insert(1, 1);
        for &n in &nodes {
            assert!(
                expected.insert(n, 1).is_none(),
                "map node {n} also handed out"
            );
        }
        let pin = pin_of(self.map.generation);
        for &p in &self.pinned {
            expected.insert(p, pin);
        }
        for &p in &self.held {
            expected.insert(p, pin_of(self.map.generation - 1));
        }
        assert!(self.map.held >= self.held.len() as u64);
        // Map nodes replaced in this transaction are pinned too, and those replaced in the one
        // before while its split commit is not done.
        let held = if self.map.held > 0 {
            Some(pin_of(self.map.generation - 1))
        } else {
            None
        };
        for (b, v) in &counts {
            if (*v == pin || Some(*v) == held) && !expected.contains_key(b) {
                expected.insert(*b, *v);
            }
        }
        assert_eq!(counts, expected);
        let used = counts.len() as u64;
        assert_eq!(self.map.free + used, self.map.total_blocks);
        for (&b, &v) in &self.model {
            assert_eq!(self.map.refcount(&mut self.store, b).unwrap(), v);
        }
    }

    /// Runs agree with per-block counts, across leaves and unmaterialised ranges.
    fn check_runs(&mut self) {
        let total = self.map.total_blocks;
        let mut starts: Vec<u64> = self.model.keys().copied().take(8).collect();
        starts.extend([0, 1, total / 2, total - 1]);
        for start in starts {
            for lim in [1, 7, LEAF_ENTRIES + 3, total] {
                let lim = lim.min(total - start);
                for one in [true, false] {
                    let mut naive = 0;
                    while naive < lim
                        && (self.map.refcount(&mut self.store, start + naive).unwrap() == 1) == one
                    {
                        naive += 1;
                    }
                    let got = self
                        .map
                        .count_run(&mut self.store, start, lim, one)
                        .unwrap();
                    assert_eq!(got, naive, "count_run({start}, {lim}, {one})");
                }
            }
        }
    }

    fn alloc(&mut self, purpose: Purpose, max: u32) -> Result<(u64, u32), Error> {
        let (b, n) = self.map.alloc_run(&mut self.store, purpose, max)?;
        assert!(n >= 1 && n <= max.max(1));
        for x in b..b + u64::from(n) {
            assert!(
                !self.pinned.contains(&x),
                "pinned block {x} reused before commit"
            );
            assert!(
                !self.held.contains(&x),
                "block {x} reused before the commit that freed it is done"
            );
            assert!(
                self.model.insert(x, 1).is_none(),
                "block {x} handed out twice"
            );
        }
        Ok((b, n))
    }

    /// A split commit: the map it commits must hold exactly the model's counts, with the
    /// transaction's pins free; the next transaction keeps them until [`Self::done`].
    fn split(&mut self) {
        if self.map.held > 0 {
            assert_eq!(
                self.map.split_commit(&mut self.store).unwrap_err(),
                Error::Busy
            );
            return;
        }
        let generation = self.map.generation;
        let Some(c) = self.map.split_commit(&mut self.store).unwrap() else {
            assert_eq!(
                self.map.generation, generation,
                "a refused split changes nothing"
            );
            return;
        };
        assert_eq!(self.map.generation, generation + 1);
        // The committed map, as a mount after that commit opens it.
        let mut p = params(self.map.total_blocks, generation + 1);
        p.root = c.root;
        p.level = self.map.level;
        p.free = c.free;
        let mut store = MemStore {
            total: self.map.total_blocks,
            blocks: self.store.blocks.clone(),
        };
        let map = RefMap::open(&mut store, &p).unwrap();
        let mut committed = World {
            store,
            map,
            model: self.model.clone(),
            pinned: BTreeSet::new(),
            held: BTreeSet::new(),
        };
        committed.check();
        self.held = core::mem::take(&mut self.pinned);
    }

    /// The split commit is durable: its pins become free.
    fn done(&mut self) {
        self.map.commit_done(&mut self.store).unwrap();
        self.held.clear();
    }

    fn inc(&mut self, b: u64) {
        self.map.inc_range(&mut self.store, b, 1).unwrap();
        *self.model.get_mut(&b).unwrap() += 1;
    }

    fn dec(&mut self, b: u64) {
        self.map.dec_range(&mut self.store, b, 1).unwrap();
        let r = self.model.get_mut(&b).unwrap();
        *r -= 1;
        if *r == 0 {
            self.model.remove(&b);
            self.pinned.insert(b);
        }
    }
}

#[derive(Clone, Debug)]
enum MapOp {
    Alloc(u32),
    Inc(usize),
    Dec(usize),
    Commit,
    Split,
    Done,
}

fn map_op() -> impl Strategy<Value = MapOp> {
    prop_oneof![
        4 => (1u32..20).prop_map(MapOp::Alloc),
        2 => any::<usize>().prop_map(MapOp::Inc),
        3 => any::<usize>().prop_map(MapOp::Dec),
        1 => Just(MapOp::Commit),
        1 => Just(MapOp::Split),
        1 => Just(MapOp::Done),
    ]
}

fn run(total: u64, ops: &[MapOp]) {
    let mut w = World::new(total);
    w.check();
    for op in ops {
        match *op {
            MapOp::Alloc(n) => match w.alloc(Purpose::Data, n) {
                Ok(_) | Err(Error::NoSpace) => {}
                Err(e) => panic!("alloc: {e:?}"),
            },
            MapOp::Inc(i) if !w.model.is_empty() => {
                let b = *w.model.keys().nth(i % w.model.len()).unwrap();
                w.inc(b);
            }
            MapOp::Dec(i) if !w.model.is_empty() => {
                let b = *w.model.keys().nth(i % w.model.len()).unwrap();
                w.dec(b);
            }
            MapOp::Commit => w.commit(),
            MapOp::Split => w.split(),
            MapOp::Done => w.done(),
            _ => {}
        }
        w.check();
    }
    w.commit();
    w.check();
    w.check_runs();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn small_map_matches_model(ops in proptest::collection::vec(map_op(), 1..200)) {
        run(300, &ops);
    }

    #[test]
    fn two_level_map_matches_model(ops in proptest::collection::vec(map_op(), 1..200)) {
        run(5000, &ops);
    }
}

#[test]
fn fills_up_and_frees_again() {
    let total = 2100;
    let mut w = World::new(total);
    let mut got = Vec::new();
    loop {
        match w.alloc(Purpose::Metadata, 7) {
            Ok((b, n)) => got.push((b, n)),
            Err(Error::NoSpace) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(w.map.free, 0);
    w.check();
    // Freeing needs no new space in this transaction (the map nodes were copied already)...
    for &(b, n) in &got {
        for x in b..b + u64::from(n) {
            w.dec(x);
        }
    }
    assert_eq!(w.map.free, 0, "freed blocks are pinned until commit");
    assert_eq!(w.alloc(Purpose::Metadata, 1), Err(Error::NoSpace));
    w.commit();
    w.check();
    assert!(w.map.free > total - 20);
}

#[test]
fn data_stops_at_the_reserve() {
    let mut w = World::new(1000);
    w.map.reserve = 100;
    let mut data = 0u64;
    while let Ok((_, n)) = w.alloc(Purpose::Data, 50) {
        data += u64::from(n);
    }
    assert_eq!(w.map.free, 100);
    assert!(data > 800);
    // Metadata may still use the reserve.
    w.alloc(Purpose::Metadata, 1).unwrap();
    w.check();
}

#[test]
fn huge_device_materialises_only_what_it_uses() {
    // 1 PiB of 4 KiB blocks: a level-4 map.
    let total = 1u64 << 38;
    let mut w = World::new(total);
    assert_eq!(w.map.level, 4);
    for _ in 0..100 {
        w.alloc(Purpose::Data, 1000).unwrap();
    }
    w.commit();
    assert!(
        w.store.blocks.len() < 400,
        "{} blocks written",
        w.store.blocks.len()
    );
    // Allocation near the end of the device materialises a new path there.
    w.map.cursor = total - 5000;
    let (b, n) = w.alloc(Purpose::Data, 100).unwrap();
    assert!(b >= total - 5000 && n >= 1, "{b} {n}");
    w.commit();
    assert_eq!(w.map.refcount(&mut w.store, b).unwrap(), 1);
    w.check();
    assert!(
        w.store.blocks.len() < 420,
        "{} blocks written",
        w.store.blocks.len()
    );
}

#[test]
fn corrupt_nodes_are_errors() {
    let mut w = World::new(5000);
    w.alloc(Purpose::Data, 10).unwrap();
    w.commit();
    let root = w.map.root;
    for byte in [0usize, 5, 9, 17, 25, 32, 41, 64, 70, 4000] {
        let mut s = MemStore {
            total: 5000,
            blocks: w.store.blocks.clone(),
        };
        s.blocks.get_mut(&root).unwrap()[byte] ^= 0x10;
        assert!(matches!(w.map.refcount(&mut s, 2), Err(Error::Corrupt(_))));
    }
}

/// Where each leaf of the map lives: leaf number (`first block covered / LEAF_ENTRIES`) to the
/// leaf's block.
fn leaf_blocks(w: &mut World) -> BTreeMap<u64, u64> {
    // `walk` visits a node, then (for a leaf) its counts: a leaf's block is the node seen last.
    let last = core::cell::Cell::new(0u64);
    let mut at = BTreeMap::new();
    w.map
        .walk(&mut w.store, &mut |b| last.set(b), &mut |first, _| {
            at.insert(first / LEAF_ENTRIES, last.get());
            Ok(())
        })
        .unwrap();
    at
}

/// On an aged map the leaves' own blocks are scattered, so recording one count can mean copying
/// a chain of leaves: the leaf of the block released by one copy, then the leaf of the block
/// released by that copy, and so on. Here leaf `i`'s block lies in leaf `i + 1`, so a change in
/// leaf 0 copies every leaf up to the last. The pending list once held the whole chain (two
/// entries a leaf) and failed with `NoMemory` past 32 leaves; seen on a 256 GiB image filled to
/// 90%, where it would have aborted a mount's transaction.
#[test]
fn a_long_chain_of_leaf_copies_is_recorded() {
    let leaves = 80u64;
    // A level-1 map with a few leaves to spare.
    let total = (leaves + 4) * LEAF_ENTRIES;
    let mut w = World::new(total);
    assert_eq!(w.map.level, 1);
    // A block of our own in every leaf: each leaf made, in its own range.
    let mut mine = Vec::new();
    for i in 0..=leaves + 1 {
        w.map.cursor = i * LEAF_ENTRIES + 10;
        let (b, _) = w.alloc(Purpose::Data, 1).unwrap();
        assert_eq!(b / LEAF_ENTRIES, i);
        mine.push(b);
    }
    w.commit();
    // Leaf `i` moved into leaf `i + 1`'s range: a change in leaf `i` while the cursor is there.
    for (i, &b) in (0..=leaves).zip(&mine) {
        w.map.cursor = (i + 1) * LEAF_ENTRIES + 20;
        w.inc(b);
        w.commit();
    }
    let at = leaf_blocks(&mut w);
    for i in 0..=leaves {
        assert_eq!(at[&i] / LEAF_ENTRIES, i + 1, "leaf {i}: {at:?}");
    }
    // The chain: one change in leaf 0 copies leaves 0 to `leaves + 1`.
    w.map.cursor = (leaves + 2) * LEAF_ENTRIES;
    w.dec(mine[0]);
    w.check();
    w.commit();
    w.check();
    let at = leaf_blocks(&mut w);
    for i in 0..=leaves + 1 {
        assert_eq!(
            at[&i] / LEAF_ENTRIES,
            leaves + 2,
            "leaf {i} not copied: {at:?}"
        );
    }
}

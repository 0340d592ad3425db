// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Model-based tests of the copy-on-write B+tree against `BTreeMap`.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.

extern crate std;

use std::collections::{BTreeMap, BTreeSet};
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

const TOTAL: u64 = 1 << 16;

/// Blocks in memory.
struct MemStore {
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl BlockStore for MemStore {
    type Buf = Vec<u8>;
    fn alloc_buf(&mut self) -> Result<Vec<u8>, Error> {
        Ok(vec![0; NODE_SIZE])
    }
    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.copy_from_slice(self.blocks.get(&blocknr).ok_or(Error::Io)?);
        Ok(())
    }
    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), Error> {
        self.blocks.insert(blocknr, buf.clone());
        Ok(())
    }
    fn total_blocks(&self) -> u64 {
        TOTAL
    }
}

/// Allocator that tracks live blocks and refuses to reuse a block freed in the same transaction.
#[derive(Default)]
struct MemAlloc {
    next: u64,
    live: BTreeSet<u64>,
    freed_this_txn: BTreeSet<u64>,
    reusable: Vec<u64>,
}

impl MemAlloc {
    fn commit(&mut self) {
        self.reusable
            .extend(core::mem::take(&mut self.freed_this_txn));
    }
}

impl Allocator for MemAlloc {
    fn alloc(&mut self) -> Result<u64, Error> {
        let b = match self.reusable.pop() {
            Some(b) => b,
            None => {
                self.next += 1;
                self.next
            }
        };
        assert!(!self.freed_this_txn.contains(&b));
        assert!(self.live.insert(b), "block {b} handed out twice");
        Ok(b)
    }
    fn free(&mut self, blocknr: u64) -> Result<(), Error> {
        assert!(
            self.live.remove(&blocknr),
            "block {blocknr} freed but not live"
        );
        self.freed_this_txn.insert(blocknr);
        Ok(())
    }
}

fn key(id: u64) -> Key {
    Key::new(id / 3, (id % 3) as u8, id.wrapping_mul(0x9e37_79b9))
}

fn value(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as usize + i) as u8).collect()
}

struct World {
    store: MemStore,
    alloc: MemAlloc,
    root: u64,
    generation: u64,
    model: BTreeMap<Key, Vec<u8>>,
}

impl World {
    fn new() -> Self {
        Self {
            store: MemStore {
                blocks: BTreeMap::new(),
            },
            alloc: MemAlloc::default(),
            root: 0,
            generation: 1,
            model: BTreeMap::new(),
        }
    }

    fn txn(&mut self) -> Txn<'_, MemStore, MemAlloc> {
        Txn {
            store: &mut self.store,
            alloc: &mut self.alloc,
            generation: self.generation,
            fsid: 7,
            tree: 3,
        }
    }

    fn commit(&mut self) {
        self.alloc.commit();
        self.generation += 1;
    }

    fn insert(&mut self, id: u64, len: usize) {
        let (k, v) = (key(id), value(id, len));
        let root = self.root;
        self.root = self.txn().insert(root, &k, &v).unwrap();
        self.model.insert(k, v);
    }

    fn remove(&mut self, id: u64) {
        let k = key(id);
        let root = self.root;
        let (new_root, found) = self.txn().remove(root, &k).unwrap();
        self.root = new_root;
        assert_eq!(found, self.model.remove(&k).is_some());
    }

    /// Full comparison with the model plus structural and allocation checks.
    fn check(&mut self) {
        let root = self.root;
        let mut reachable = BTreeSet::new();
        let items = self
            .txn()
            .verify(root, &mut |b, _| assert!(reachable.insert(b)))
            .unwrap();
        assert_eq!(items, self.model.len() as u64);
        assert_eq!(reachable, self.alloc.live, "leaked or dangling blocks");
        // In-order iteration through `next` equals the model.
        let mut got = Vec::new();
        let mut from = Key::MIN;
        while let Some((k, v)) = self
            .txn()
            .next(root, &from, |k, v| (*k, v.to_vec()))
            .unwrap()
        {
            got.push((k, v));
            from = Key::new(k.id, k.kind, k.offset.wrapping_add(1));
            if k.offset == u64::MAX {
                break;
            }
        }
        let want: Vec<_> = self.model.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want);
        let model = core::mem::take(&mut self.model);
        for (k, v) in &model {
            let found = self.txn().lookup(root, k, |x| x.to_vec()).unwrap();
            assert_eq!(found.as_ref(), Some(v));
        }
        self.model = model;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, usize),
    Remove(u64),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..2000, 0usize..=MAX_VALUE_SIZE).prop_map(|(k, l)| Op::Insert(k, l)),
        4 => (0u64..2000).prop_map(Op::Remove),
        1 => Just(Op::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_btreemap(ops in proptest::collection::vec(op(), 1..400)) {
        let mut w = World::new();
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert(k, l) => w.insert(k, l % 300),
                Op::Remove(k) => w.remove(k),
                Op::Commit => w.commit(),
            }
            if n % 50 == 0 {
                w.check();
            }
        }
        w.check();
    }
}

#[test]
fn grows_to_several_levels_and_shrinks_back() {
    let mut w = World::new();
    for i in 0..20_000 {
        w.insert(i * 7919 % 20_000, 40);
        if i % 1000 == 0 {
            w.commit();
        }
    }
    w.check();
    let root = w.root;
    let (_, hdr) = w.txn().read(root, None).unwrap();
    assert!(hdr.level >= 2, "20k items should need three levels");
    for i in 0..20_000 {
        w.remove(i);
        if i % 1000 == 0 {
            w.commit();
        }
    }
    w.check();
    assert_eq!(w.root, 0);
    assert!(w.alloc.live.is_empty());
}

#[test]
fn committed_tree_is_never_modified() {
    let mut w = World::new();
    for i in 0..3000 {
        w.insert(i, 30);
    }
    w.commit();
    let old_root = w.root;
    let old_blocks = w.store.blocks.clone();
    let old_model = w.model.clone();
    for i in 0..1500 {
        w.insert(i * 2 + 10_000, 30);
        w.remove(i);
    }
    // Every block reachable from the old root is unchanged: the old tree still reads back whole.
    let mut old_reachable = Vec::new();
    w.txn()
        .verify(old_root, &mut |b, _| old_reachable.push(b))
        .unwrap();
    for b in &old_reachable {
        assert_eq!(
            w.store.blocks.get(b),
            old_blocks.get(b),
            "block {b} of the committed tree changed"
        );
    }
    for (k, v) in &old_model {
        assert_eq!(
            w.txn()
                .lookup(old_root, k, |x| x.to_vec())
                .unwrap()
                .as_ref(),
            Some(v)
        );
    }
}

#[test]
fn damaged_nodes_are_errors_not_panics() {
    let mut w = World::new();
    for i in 0..2000 {
        w.insert(i, 20);
    }
    let blocks: Vec<u64> = w.store.blocks.keys().copied().collect();
    for (n, b) in blocks.iter().enumerate() {
        let saved = w.store.blocks[b].clone();
        let mut bad = saved.clone();
        bad[100 + n % 3000] ^= 0xff;
        w.store.blocks.insert(*b, bad);
        let root = w.root;
        assert!(w.txn().verify(root, &mut |_, _| {}).is_err());
        w.store.blocks.insert(*b, saved);
    }
    let root = w.root;
    assert!(w
        .txn()
        .insert(root, &key(1), &[0; MAX_VALUE_SIZE + 1])
        .is_err());
}

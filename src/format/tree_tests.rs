// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Model-based tests of the copy-on-write B+tree against `BTreeMap`.

#![allow(clippy::cast_possible_truncation)] // Test data from small integers.
#![allow(clippy::arithmetic_side_effects)] // Test data and model arithmetic on small integers.

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
    fn update_node<R>(&mut self, blocknr: u64, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        // Every block may be changed in place here (the tree checks that its transaction owns
        // the node), so the model tests run the in-place paths too.
        let b = self.blocks.get_mut(&blocknr)?;
        let r = f(b);
        node::seal(b).expect("seal");
        Some(r)
    }
    fn total_blocks(&self) -> u64 {
        TOTAL
    }
}

/// Allocator that keeps reference counts and refuses to reuse a block freed in the same
/// transaction.
#[derive(Default)]
struct MemAlloc {
    next: u64,
    refs: BTreeMap<u64, u32>,
    freed_this_txn: BTreeSet<u64>,
    reusable: Vec<u64>,
}

impl MemAlloc {
    fn commit(&mut self) {
        self.reusable
            .extend(core::mem::take(&mut self.freed_this_txn));
    }
}

impl<S: BlockStore> Allocator<S> for MemAlloc {
    fn alloc(&mut self, _: &mut S) -> Result<u64, Error> {
        let b = match self.reusable.pop() {
            Some(b) => b,
            None => {
                self.next += 1;
                self.next
            }
        };
        assert!(!self.freed_this_txn.contains(&b));
        assert!(
            self.refs.insert(b, 1).is_none(),
            "block {b} handed out twice"
        );
        Ok(b)
    }
    fn refcount(&mut self, _: &mut S, blocknr: u64) -> Result<u32, Error> {
        Ok(*self.refs.get(&blocknr).expect("refcount of a free block"))
    }
    fn inc_ref(&mut self, _: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
        for b in blocknr..blocknr + len {
            *self.refs.get_mut(&b).expect("inc_ref of a free block") += 1;
        }
        Ok(())
    }
    fn dec_ref(&mut self, _: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
        for b in blocknr..blocknr + len {
            let r = self.refs.get_mut(&b).expect("dec_ref of a free block");
            *r -= 1;
            if *r == 0 {
                self.refs.remove(&b);
                self.freed_this_txn.insert(b);
            }
        }
        Ok(())
    }
}

fn key(id: u64) -> Key {
    Key::new(id / 3, (id % 3) as u8, id.wrapping_mul(0x9e37_79b9))
}

fn value(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as usize + i) as u8).collect()
}

/// Several trees, possibly clones of each other, with one model map each.
struct World {
    store: MemStore,
    alloc: MemAlloc,
    trees: Vec<(u64, BTreeMap<Key, Vec<u8>>)>,
    generation: u64,
}

impl World {
    fn new() -> Self {
        Self {
            store: MemStore {
                blocks: BTreeMap::new(),
            },
            alloc: MemAlloc::default(),
            trees: vec![(0, BTreeMap::new())],
            generation: 1,
        }
    }

    fn txn(&mut self) -> Txn<'_, MemStore, MemAlloc> {
        Txn {
            store: &mut self.store,
            alloc: &mut self.alloc,
            generation: self.generation,
            fsid: 7,
            tree: 3,
            leaf_refs: None,
        }
    }

    fn root(&self) -> u64 {
        self.trees[0].0
    }

    fn commit(&mut self) {
        self.alloc.commit();
        self.generation += 1;
    }

    fn insert_in(&mut self, t: usize, id: u64, len: usize) {
        let (k, v) = (key(id), value(id, len));
        let root = self.trees[t].0;
        self.trees[t].0 = self.txn().insert(root, &k, &v).unwrap();
        self.trees[t].1.insert(k, v);
    }

    fn remove_in(&mut self, t: usize, id: u64) {
        let k = key(id);
        let root = self.trees[t].0;
        let (new_root, found) = self.txn().remove(root, &k).unwrap();
        self.trees[t].0 = new_root;
        assert_eq!(found, self.trees[t].1.remove(&k).is_some());
    }

    fn clone_tree(&mut self, t: usize) {
        let root = self.trees[t].0;
        let new = self.txn().clone_tree(root).unwrap();
        let model = self.trees[t].1.clone();
        self.trees.push((new, model));
    }

    fn drop_tree(&mut self, t: usize) {
        let (root, _) = self.trees.remove(t);
        self.txn().drop_tree(root).unwrap();
    }

    fn insert(&mut self, id: u64, len: usize) {
        self.insert_in(0, id, len);
    }

    fn remove(&mut self, id: u64) {
        self.remove_in(0, id);
    }

    /// Full comparison of every tree with its model, plus the reference-count invariant: each
    /// block's count equals the number of tree roots and distinct parent nodes pointing at it, and
    /// no other block is in use.
    fn check(&mut self) {
        for t in 0..self.trees.len() {
            self.check_tree(t);
        }
        let mut expected: BTreeMap<u64, u32> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<u64> = Vec::new();
        for (root, _) in &self.trees {
            if *root != 0 {
                *expected.entry(*root).or_default() += 1;
                stack.push(*root);
            }
        }
        while let Some(b) = stack.pop() {
            if !seen.insert(b) {
                continue;
            }
            let buf = &self.store.blocks[&b];
            if !node::header(buf).unwrap().is_leaf() {
                for i in 0..node::len(buf).unwrap() {
                    let c = node::internal_child(buf, i).unwrap();
                    *expected.entry(c).or_default() += 1;
                    stack.push(c);
                }
            }
        }
        assert_eq!(
            expected, self.alloc.refs,
            "reference counts differ from the references found"
        );
    }

    /// Diffs every pair of trees against their models.
    fn check_diffs(&mut self) {
        for a in 0..self.trees.len() {
            for b in 0..self.trees.len() {
                let (ra, rb) = (self.trees[a].0, self.trees[b].0);
                let mut got = Vec::new();
                self.txn()
                    .diff(ra, rb, Key::MIN, &mut |c| {
                        got.push((c.key, c.old.map(<[u8]>::to_vec), c.new.map(<[u8]>::to_vec)));
                        Ok(true)
                    })
                    .unwrap();
                let (ma, mb) = (&self.trees[a].1, &self.trees[b].1);
                let keys: BTreeSet<&Key> = ma.keys().chain(mb.keys()).collect();
                let want: Vec<_> = keys
                    .into_iter()
                    .filter(|k| ma.get(k) != mb.get(k))
                    .map(|k| (*k, ma.get(k).cloned(), mb.get(k).cloned()))
                    .collect();
                assert_eq!(got, want, "diff of trees {a} and {b}");
                // Resumed one change at a time from the key after the last one, as the path
                // diff and mount recovery walk it: the same changes, never a key below the
                // cursor (a resumed diff that went backwards made such walks loop).
                let mut walked = Vec::new();
                let mut from = Key::MIN;
                loop {
                    let mut first = None;
                    self.txn()
                        .diff(ra, rb, from, &mut |c| {
                            first =
                                Some((c.key, c.old.map(<[u8]>::to_vec), c.new.map(<[u8]>::to_vec)));
                            Ok(false)
                        })
                        .unwrap();
                    let Some(change) = first else { break };
                    assert!(
                        change.0 >= from,
                        "diff of trees {a} and {b} from {from:?} went back to {:?}",
                        change.0
                    );
                    assert!(
                        walked.len() < want.len(),
                        "diff of trees {a} and {b}: resumed walk does not end"
                    );
                    from = match change.0.offset.checked_add(1) {
                        Some(o) => Key::new(change.0.id, change.0.kind, o),
                        None => break,
                    };
                    walked.push(change);
                }
                assert_eq!(walked, want, "resumed diff of trees {a} and {b}");
            }
        }
    }

    fn check_tree(&mut self, t: usize) {
        let root = self.trees[t].0;
        let items = self.txn().verify(root, &mut |_, _| {}).unwrap();
        assert_eq!(items, self.trees[t].1.len() as u64);
        // In-order iteration through `next` equals the model.
        let mut got = Vec::new();
        let mut from = Key::MIN;
        while let Some((k, v)) = self
            .txn()
            .next(root, &from, |k, v| (*k, v.to_vec()))
            .unwrap()
        {
            got.push((k, v));
            if k.offset == u64::MAX {
                break;
            }
            from = Key::new(k.id, k.kind, k.offset + 1);
        }
        let model = core::mem::take(&mut self.trees[t].1);
        let want: Vec<_> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(got, want);
        // The same a leaf at a time through `scan_leaf`.
        let mut scanned = Vec::new();
        let mut from = Some(Key::MIN);
        while let Some(f) = from {
            from = self
                .txn()
                .scan_leaf(root, &f, &mut |k, v| {
                    scanned.push((*k, v.to_vec()));
                    Ok(true)
                })
                .unwrap();
        }
        assert_eq!(scanned, want);
        for (k, v) in &model {
            let found = self.txn().lookup(root, k, |x| x.to_vec()).unwrap();
            assert_eq!(found.as_ref(), Some(v));
        }
        // `prev` (floor) at every key, just before and just after it, and at the extremes.
        let mut probes = vec![Key::MIN, Key::new(u64::MAX, u8::MAX, u64::MAX)];
        for k in model.keys() {
            probes.push(*k);
            probes.push(Key::new(k.id, k.kind, k.offset.wrapping_sub(1)));
            probes.push(Key::new(k.id, k.kind, k.offset.wrapping_add(1)));
        }
        for p in probes {
            let got = self.txn().prev(root, &p, |k, v| (*k, v.to_vec())).unwrap();
            let want = model.range(..=p).next_back().map(|(k, v)| (*k, v.clone()));
            assert_eq!(got, want, "prev({p:?})");
        }
        self.trees[t].1 = model;
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

/// Operations on a forest of clones; tree indexes are taken modulo the number of trees.
#[derive(Clone, Debug)]
enum ForestOp {
    Insert(usize, u64, usize),
    Remove(usize, u64),
    Clone(usize),
    Drop(usize),
    Commit,
}

fn forest_op() -> impl Strategy<Value = ForestOp> {
    prop_oneof![
        8 => (0usize..8, 0u64..1500, 0usize..200).prop_map(|(t, k, l)| ForestOp::Insert(t, k, l)),
        5 => (0usize..8, 0u64..1500).prop_map(|(t, k)| ForestOp::Remove(t, k)),
        1 => (0usize..8).prop_map(ForestOp::Clone),
        1 => (0usize..8).prop_map(ForestOp::Drop),
        1 => Just(ForestOp::Commit),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn clones_are_independent_and_refcounts_exact(
        seed in proptest::collection::vec(0u64..1500, 200..800),
        ops in proptest::collection::vec(forest_op(), 1..300),
    ) {
        let mut w = World::new();
        // A base big enough to have internal nodes, so clones share whole subtrees.
        for id in seed {
            w.insert(id, 120);
        }
        w.commit();
        for (n, op) in ops.iter().enumerate() {
            let nt = w.trees.len();
            match *op {
                ForestOp::Insert(t, k, l) if nt > 0 => w.insert_in(t % nt, k, l),
                ForestOp::Remove(t, k) if nt > 0 => w.remove_in(t % nt, k),
                ForestOp::Clone(t) if nt > 0 && nt < 12 => w.clone_tree(t % nt),
                ForestOp::Drop(t) if nt > 1 => w.drop_tree(t % nt),
                ForestOp::Commit => w.commit(),
                _ => {}
            }
            if n % 40 == 0 {
                w.check();
            }
        }
        w.check();
        w.check_diffs();
        // Dropping every tree frees every block.
        while !w.trees.is_empty() {
            w.drop_tree(0);
        }
        prop_assert!(w.alloc.refs.is_empty());
    }
}

#[test]
fn clone_is_constant_time_and_writes_copy_only_the_path() {
    let mut w = World::new();
    for i in 0..20_000 {
        w.insert(i, 40);
    }
    w.commit();
    let before = w.alloc.refs.len();
    w.clone_tree(0);
    assert_eq!(w.alloc.refs.len(), before, "clone allocated blocks");
    assert_eq!(w.trees[1].0, w.root());
    w.commit();
    // One insert into the clone copies one root-to-leaf path only.
    w.insert_in(1, 1_000_000, 40);
    let (_, hdr) = {
        let r = w.root();
        w.txn().read(r, None).unwrap()
    };
    let path = usize::from(hdr.level) + 1;
    assert_eq!(w.alloc.refs.len(), before + path);
    w.check();
    // The original never saw the change.
    let r0 = w.root();
    assert_eq!(w.txn().lookup(r0, &key(1_000_000), |_| ()).unwrap(), None);
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
    let root = w.root();
    let (_, hdr) = w.txn().read(root, None).unwrap();
    assert!(hdr.level >= 2, "20k items should need three levels");
    for i in 0..20_000 {
        w.remove(i);
        if i % 1000 == 0 {
            w.commit();
        }
    }
    w.check();
    assert_eq!(w.root(), 0);
    assert!(w.alloc.refs.is_empty());
}

#[test]
fn committed_tree_is_never_modified() {
    let mut w = World::new();
    for i in 0..3000 {
        w.insert(i, 30);
    }
    w.commit();
    let old_root = w.root();
    let old_blocks = w.store.blocks.clone();
    let old_model = w.trees[0].1.clone();
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
        let root = w.root();
        assert!(w.txn().verify(root, &mut |_, _| {}).is_err());
        w.store.blocks.insert(*b, saved);
    }
    let root = w.root();
    assert!(w
        .txn()
        .insert(root, &key(1), &[0; MAX_VALUE_SIZE + 1])
        .is_err());
}

/// Counts node reads, to show that a diff reads only what changed.
struct CountingStore {
    inner: MemStore,
    reads: u64,
}

impl BlockStore for CountingStore {
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
        TOTAL
    }
}

#[test]
fn diff_reads_only_changed_paths() {
    let mut w = World::new();
    for id in 0..20_000 {
        w.insert(id, 40);
    }
    w.commit();
    w.clone_tree(0);
    for id in [5u64, 9_000, 19_999] {
        w.insert_in(1, id, 41);
    }
    w.remove_in(1, 12_345);
    let (a, b) = (w.trees[0].0, w.trees[1].0);
    let mut store = CountingStore {
        inner: MemStore {
            blocks: core::mem::take(&mut w.store.blocks),
        },
        reads: 0,
    };
    let mut changes = 0;
    Txn {
        store: &mut store,
        alloc: &mut w.alloc,
        generation: w.generation,
        fsid: 7,
        tree: 3,
        leaf_refs: None,
    }
    .diff(a, b, Key::MIN, &mut |_| {
        changes += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!(changes, 4);
    // Four changed root-to-leaf paths in a tree of three levels, on both sides.
    assert!(store.reads <= 4 * 3 * 2 + 2, "{} node reads", store.reads);
}

#[test]
fn prev_finds_the_floor_across_leaves() {
    let mut w = World::new();
    // Sequential keys of one inode-like id, so neighbours straddle leaf boundaries.
    let k = |o: u64| Key::new(9, 4, o * 10);
    let mut model = BTreeMap::new();
    for o in 0..3000 {
        let root = w.root();
        let v = value(o, 60);
        w.trees[0].0 = w.txn().insert(root, &k(o), &v).unwrap();
        model.insert(k(o), v);
    }
    let root = w.root();
    let (_, hdr) = w.txn().read(root, None).unwrap();
    assert!(hdr.level >= 1);
    for o in 0..3000 {
        for p in [k(o), Key::new(9, 4, o * 10 + 5), Key::new(9, 4, o * 10 + 9)] {
            let got = w.txn().prev(root, &p, |k, _| *k).unwrap();
            assert_eq!(got, Some(k(o)), "prev({p:?})");
        }
    }
    assert_eq!(
        w.txn()
            .prev(root, &Key::new(9, 3, u64::MAX), |k, _| *k)
            .unwrap(),
        None
    );
    assert_eq!(w.txn().prev(0, &k(5), |k, _| *k).unwrap(), None);
    assert_eq!(
        w.txn().prev(root, &Key::new(10, 0, 0), |k, _| *k).unwrap(),
        Some(k(2999))
    );
}

#[test]
fn path_shared_follows_clones_and_copies() {
    let mut w = World::new();
    for i in 0..3000 {
        w.insert(i, 60);
    }
    w.commit();
    let r0 = w.root();
    assert!(!w.txn().path_shared(r0, &key(7)).unwrap());
    assert!(!w.txn().path_shared(0, &key(7)).unwrap());
    w.clone_tree(0);
    // Both trees share the root: every path is shared.
    assert!(w.txn().path_shared(r0, &key(7)).unwrap());
    w.commit();
    // A write in the clone copies its path to key 7: that path is its own now, the rest of
    // the clone (reached through copied parents) is still shared below them.
    w.insert_in(1, 7, 61);
    let r1 = w.trees[1].0;
    assert!(!w.txn().path_shared(r1, &key(7)).unwrap());
    let far = (0..3000u64).map(key).max().unwrap();
    assert!(w.txn().path_shared(r1, &far).unwrap());
    // The original's path to key 7 now has a single owner (the clone copied away from it).
    let r0 = w.root();
    assert!(!w.txn().path_shared(r0, &key(7)).unwrap());
    w.check();
}

/// A two-level tree whose root points its third child at the first one (checksum fixed up):
/// after the second child's last key, a scan steps into keys below the one asked for.
fn damaged_separator_world() -> (World, u64) {
    let mut w = World::new();
    for i in 0..400 {
        w.insert(i, 100);
    }
    let root = w.root();
    let buf = w.store.blocks[&root].clone();
    assert!(!node::header(&buf).unwrap().is_leaf());
    assert!(node::len(&buf).unwrap() >= 3);
    let mut bad = buf.clone();
    let c0 = node::internal_child(&buf, 0).unwrap();
    node::internal_set_child(&mut bad, 2, c0).unwrap();
    node::seal(&mut bad).unwrap();
    w.store.blocks.insert(root, bad);
    (w, root)
}

/// A damaged separator (checksum fixed up) can route `next` into a subtree whose keys are below
/// the one asked for; `next` must report it rather than hand back a smaller key, which would make
/// callers that step from key to key loop for ever.
#[test]
fn next_never_goes_backwards_on_damaged_separators() {
    let (mut w, root) = damaged_separator_world();
    let mut from = Key::MIN;
    let mut steps = 0;
    while let Ok(Some(k)) = w.txn().next(root, &from, |k, _| *k) {
        assert!(k >= from, "next went backwards: {k:?} < {from:?}");
        from = Key::new(k.id, k.kind, k.offset + 1);
        steps += 1;
        assert!(steps < 1000, "scan does not end");
    }
}

#[test]
fn scan_leaf_resumes_and_stops() {
    let mut w = World::new();
    for i in 0..1000 {
        w.insert(i, 80);
    }
    let root = w.root();
    let (_, hdr) = w.txn().read(root, None).unwrap();
    assert!(hdr.level >= 1);
    // From every key: the first item seen is `next`'s, and stopping at once ends the scan.
    for i in 0..1000 {
        let from = key(i);
        let want = w.txn().next(root, &from, |k, _| *k).unwrap();
        let mut seen = None;
        let rest = w
            .txn()
            .scan_leaf(root, &from, &mut |k, _| {
                seen = Some(*k);
                Ok(false)
            })
            .unwrap();
        assert_eq!(seen, want);
        assert_eq!(rest, None);
    }
    // A scan that wants everything visits more than one item per descent and resumes after
    // the last key of each leaf.
    let (mut descents, mut items, mut from) = (0, 0u64, Some(Key::MIN));
    while let Some(f) = from {
        descents += 1;
        from = w
            .txn()
            .scan_leaf(root, &f, &mut |k, _| {
                assert!(*k >= f);
                items += 1;
                Ok(true)
            })
            .unwrap();
    }
    assert_eq!(items, 1000);
    assert!(
        descents * 10 < items,
        "{descents} descents for {items} items"
    );
    // An error from the callback comes back unchanged.
    let err = w
        .txn()
        .scan_leaf(root, &Key::MIN, &mut |_, _| Err(Error::Invalid))
        .unwrap_err();
    assert!(matches!(err, Error::Invalid));
}

#[test]
fn scan_leaf_never_goes_backwards_on_damaged_separators() {
    let (mut w, root) = damaged_separator_world();
    let (mut from, mut steps) = (Some(Key::MIN), 0);
    while let Some(f) = from {
        let Ok(next) = w.txn().scan_leaf(root, &f, &mut |k, _| {
            assert!(*k >= f, "scan went backwards: {k:?} < {f:?}");
            Ok(true)
        }) else {
            break;
        };
        from = next;
        steps += 1;
        assert!(steps < 1000, "scan does not end");
    }
}

/// The floor lookup must not hand back a key above the one asked for on damaged separators.
#[test]
fn prev_never_goes_forwards_on_damaged_separators() {
    let mut w = World::new();
    for i in 0..400 {
        w.insert(i, 100);
    }
    let root = w.root();
    let buf = w.store.blocks[&root].clone();
    assert!(node::len(&buf).unwrap() >= 3);
    let mut bad = buf.clone();
    let last = node::len(&buf).unwrap() - 1;
    let cl = node::internal_child(&buf, last).unwrap();
    node::internal_set_child(&mut bad, 1, cl).unwrap();
    node::seal(&mut bad).unwrap();
    w.store.blocks.insert(root, bad);
    let mut at = Key::new(u64::MAX, u8::MAX, u64::MAX);
    let mut steps = 0;
    while let Ok(Some(k)) = w.txn().prev(root, &at, |k, _| *k) {
        assert!(k <= at, "prev went forwards: {k:?} > {at:?}");
        let Some(o) = k.offset.checked_sub(1) else {
            break;
        };
        at = Key::new(k.id, k.kind, o);
        steps += 1;
        assert!(steps < 1000, "scan does not end");
    }
}

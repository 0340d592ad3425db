//! Tree operations on damaged trees: the input builds a valid tree, damages some of its bytes
//! (optionally fixing up checksums), then drives lookups, scans, inserts, removes, clones, drops
//! and verification. Errors are fine; panics, hangs and unbounded recursion are bugs.
#![no_main]

use std::collections::BTreeMap;

use lcfs_format::node::{Key, NODE_SIZE};
use lcfs_format::tree::{Allocator, BlockStore, Error, Txn};
use libfuzzer_sys::fuzz_target;

const TOTAL: u64 = 4096;

struct Store(BTreeMap<u64, Vec<u8>>);

impl BlockStore for Store {
    type Buf = Vec<u8>;
    fn alloc_buf(&mut self) -> Result<Vec<u8>, Error> {
        Ok(vec![0; NODE_SIZE])
    }
    fn read(&mut self, b: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.copy_from_slice(self.0.get(&b).ok_or(Error::Io)?);
        Ok(())
    }
    fn write(&mut self, b: u64, buf: &Vec<u8>) -> Result<(), Error> {
        self.0.insert(b, buf.clone());
        Ok(())
    }
    fn total_blocks(&self) -> u64 {
        TOTAL
    }
}

/// Reference counts that never panic on damaged trees; hands out blocks up to the store's end and
/// fails cleanly when out.
struct Alloc {
    next: u64,
    refs: BTreeMap<u64, u32>,
}

impl<S: BlockStore> Allocator<S> for Alloc {
    fn alloc(&mut self, _: &mut S) -> Result<u64, Error> {
        if self.next + 1 >= TOTAL {
            return Err(Error::NoSpace);
        }
        self.next += 1;
        self.refs.insert(self.next, 1);
        Ok(self.next)
    }
    fn refcount(&mut self, _: &mut S, b: u64) -> Result<u32, Error> {
        Ok(*self.refs.entry(b).or_insert(1))
    }
    fn inc_ref(&mut self, _: &mut S, b: u64, len: u64) -> Result<(), Error> {
        for x in b..b.saturating_add(len.min(64)) {
            *self.refs.entry(x).or_insert(1) += 1;
        }
        Ok(())
    }
    fn dec_ref(&mut self, _: &mut S, b: u64, len: u64) -> Result<(), Error> {
        for x in b..b.saturating_add(len.min(64)) {
            let r = self.refs.entry(x).or_insert(1);
            *r = r.saturating_sub(1);
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data.iter().copied();
    let mut byte = move || input.next().unwrap_or(0);
    let mut store = Store(BTreeMap::new());
    let mut alloc = Alloc {
        next: 0,
        refs: BTreeMap::new(),
    };
    let mut txn = Txn {
        store: &mut store,
        alloc: &mut alloc,
        generation: 1,
        fsid: 9,
        tree: 2,
        // Items of kinds 0..4 include extents (kind 4): shared leaves push their references.
        leaf_refs: Some(lcfs_format::records::fs_leaf_refs),
    };

    // 1. A valid tree built from the input (up to a few hundred items, several leaves), and a
    //    clone of it that then diverges, so diff and drop see shared subtrees.
    let mut root = 0u64;
    let items = usize::from(byte()) * 2;
    for i in 0..items {
        let key = Key::new(u64::from(byte()), byte() % 4, i as u64);
        let len = usize::from(byte()) % 200;
        match txn.insert(root, &key, &vec![0x5a; len]) {
            Ok(r) => root = r,
            Err(_) => break,
        }
    }
    txn.generation = 2;
    let mut other = txn.clone_tree(root).unwrap_or(0);
    for _ in 0..usize::from(byte() % 16) {
        let key = Key::new(u64::from(byte()), byte() % 4, u64::from(byte()));
        if let Ok(r) = txn.insert(other, &key, &[1; 30]) {
            other = r;
        }
    }
    txn.generation = 3;

    // 2. Damage: up to 8 byte changes in the tree's blocks; with `reseal`, checksums are fixed up
    //    afterwards so the damage reaches the structural checks and the algorithms.
    let reseal = byte() & 1 == 1;
    let blocks: Vec<u64> = txn.store.0.keys().copied().collect();
    for _ in 0..usize::from(byte() % 9) {
        let (b, hi, lo, x) = (byte(), byte(), byte(), byte());
        if blocks.is_empty() {
            break;
        }
        let blk = blocks[usize::from(b) % blocks.len()];
        let off = (usize::from(hi) << 8 | usize::from(lo)) % NODE_SIZE;
        if let Some(block) = txn.store.0.get_mut(&blk) {
            block[off] ^= x;
            if reseal {
                let _ = lcfs_format::node::seal(block);
            }
        }
    }

    // 3. Operations on the damaged tree: errors are expected, panics are not.
    for _ in 0..32 {
        let (op, k, v) = (byte(), byte(), byte());
        let key = Key::new(u64::from(k), v % 4, u64::from(v));
        match op % 7 {
            6 => {
                let mut n = 0u32;
                let _ = txn.diff(root, other, key, &mut |_| {
                    n += 1;
                    Ok(n < 10_000)
                });
            }
            0 => {
                let _ = txn.lookup(root, &key, |v| v.len());
            }
            1 => {
                let _ = txn.next(root, &key, |k, _| *k);
            }
            2 => {
                if let Ok(r) = txn.insert(root, &key, &[v; 40]) {
                    root = r;
                }
            }
            3 => {
                if let Ok((r, _)) = txn.remove(root, &key) {
                    root = r;
                }
            }
            4 => {
                let _ = txn.verify(root, &mut |_, _| {});
            }
            _ => {
                if let Ok(r) = txn.clone_tree(root) {
                    let _ = txn.drop_tree(r);
                }
            }
        }
    }
});

//! `lcfs-bench`: measures the copy-on-write tree of the format core in userspace and prints a
//! table. Every ratio compares numbers measured in the same run; nothing here is a pass/fail test.
//!
//! - clone: cost of cloning a tree of 1k, 100k and 1M items (and of the first write to the clone,
//!   which copies one root-to-leaf path); the goal is a flat cost.
//! - depth: lookup time in a tree cloned once versus one at the end of a chain of 128 clones, each
//!   with its own changes; the goal is a ratio within 1.2.
//! - throughput: inserts and lookups per second against `std::collections::BTreeMap`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use lcfs_format::node::{Key, NODE_SIZE};
use lcfs_format::tree::{Allocator, BlockStore, Error, Txn};

/// Benchmarks of the LCFS format core.
#[derive(Debug, Parser)]
#[command(name = "lcfs-bench", version, about)]
struct Args {
    /// Small sizes, for a quick check that everything runs.
    #[arg(long)]
    quick: bool,
}

/// Blocks in memory, indexed by block number.
struct MemStore {
    blocks: Vec<Option<Box<[u8]>>>,
}

impl BlockStore for MemStore {
    type Buf = Box<[u8]>;
    fn alloc_buf(&mut self) -> Result<Box<[u8]>, Error> {
        Ok(vec![0u8; NODE_SIZE].into_boxed_slice())
    }
    fn read(&mut self, blocknr: u64, buf: &mut Box<[u8]>) -> Result<(), Error> {
        let idx = usize::try_from(blocknr).map_err(|_| Error::Io)?;
        let block = self
            .blocks
            .get(idx)
            .and_then(Option::as_ref)
            .ok_or(Error::Io)?;
        buf.copy_from_slice(block);
        Ok(())
    }
    fn write(&mut self, blocknr: u64, buf: &Box<[u8]>) -> Result<(), Error> {
        let idx = usize::try_from(blocknr).map_err(|_| Error::Io)?;
        if self.blocks.len() <= idx {
            self.blocks.resize(idx + 1, None);
        }
        self.blocks[idx] = Some(buf.clone());
        Ok(())
    }
    fn total_blocks(&self) -> u64 {
        u64::MAX
    }
}

/// Reference counts in a vector; freed blocks are reused after `commit`.
#[derive(Default)]
struct MemAlloc {
    refs: Vec<u32>,
    free: Vec<u64>,
    freed_now: Vec<u64>,
}

impl MemAlloc {
    fn commit(&mut self) {
        self.free.append(&mut self.freed_now);
    }
    fn slot(&mut self, b: u64) -> Result<&mut u32, Error> {
        let idx = usize::try_from(b).map_err(|_| Error::Invalid)?;
        self.refs.get_mut(idx).ok_or(Error::Invalid)
    }
}

impl<S: BlockStore> Allocator<S> for MemAlloc {
    fn alloc(&mut self, _: &mut S) -> Result<u64, Error> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                if self.refs.is_empty() {
                    self.refs.push(0); // block 0 means "empty tree"
                }
                self.refs.push(0);
                (self.refs.len() - 1) as u64
            }
        };
        *self.slot(b)? = 1;
        Ok(b)
    }
    fn refcount(&mut self, _: &mut S, b: u64) -> Result<u32, Error> {
        Ok(*self.slot(b)?)
    }
    fn inc_ref(&mut self, _: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
        for b in blocknr..blocknr + len {
            *self.slot(b)? += 1;
        }
        Ok(())
    }
    fn dec_ref(&mut self, _: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
        for b in blocknr..blocknr + len {
            let r = self.slot(b)?;
            *r -= 1;
            if *r == 0 {
                self.freed_now.push(b);
            }
        }
        Ok(())
    }
}

struct Bench {
    store: MemStore,
    alloc: MemAlloc,
    generation: u64,
}

impl Bench {
    fn new() -> Self {
        Self {
            store: MemStore { blocks: Vec::new() },
            alloc: MemAlloc::default(),
            generation: 1,
        }
    }
    fn txn(&mut self) -> Txn<'_, MemStore, MemAlloc> {
        Txn {
            store: &mut self.store,
            alloc: &mut self.alloc,
            generation: self.generation,
            fsid: 1,
            tree: 1,
            leaf_refs: None,
        }
    }
    fn commit(&mut self) {
        self.alloc.commit();
        self.generation += 1;
    }
    fn fill(&mut self, n: u64) -> u64 {
        let mut root = 0;
        for i in 0..n {
            root = self.txn().insert(root, &key(i), &value(i)).expect("insert");
        }
        self.commit();
        root
    }
}

/// Spread keys like inode numbers hashed into a tree: (id, kind, offset).
fn key(i: u64) -> Key {
    Key::new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20, 1, i)
}

/// A value the size of an inode record.
fn value(i: u64) -> [u8; 128] {
    let mut v = [0u8; 128];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn per_op(total: Duration, ops: u64) -> f64 {
    total.as_secs_f64() * 1e9 / ops as f64
}

fn time<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn main() {
    let args = Args::parse();
    let sizes: &[u64] = if args.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };

    println!("## Clone cost (tree of inode-sized items)\n");
    println!("| items | tree height | clone | clone + first write |");
    println!("|------:|------------:|------:|--------------------:|");
    for &n in sizes {
        let mut b = Bench::new();
        let root = b.fill(n);
        let height = {
            let mut h = 0;
            b.txn()
                .verify(root, &mut |_, hdr| h = h.max(hdr.level + 1))
                .expect("verify");
            h
        };
        // Average over many clones: each is one reference-count increment.
        let reps = 1000u64;
        let (_, clone_t) = time(|| {
            for _ in 0..reps {
                black_box(b.txn().clone_tree(root).expect("clone"));
            }
        });
        b.commit();
        let (_, first_write_t) = time(|| {
            let c = b.txn().clone_tree(root).expect("clone");
            black_box(
                b.txn()
                    .insert(c, &key(u64::MAX), &value(0))
                    .expect("insert"),
            )
        });
        println!(
            "| {n} | {height} | {:.0} ns | {:.1} µs |",
            per_op(clone_t, reps),
            first_write_t.as_secs_f64() * 1e6
        );
    }

    let base_n = if args.quick { 10_000 } else { 100_000 };
    let depth = 128;
    let lookups = if args.quick { 20_000 } else { 200_000 };
    println!("\n## Lookup at clone depth ({base_n} items, {depth} clones, 64 changes per clone)\n");
    let mut b = Bench::new();
    let base = b.fill(base_n);
    let mut layers = vec![base];
    for d in 1..=depth {
        let mut root = b
            .txn()
            .clone_tree(*layers.last().expect("layer"))
            .expect("clone");
        for j in 0..64u64 {
            let i = (d * 7919 + j * 104_729) % base_n;
            root = b
                .txn()
                .insert(root, &key(i), &value(i + d))
                .expect("insert");
        }
        b.commit();
        layers.push(root);
    }
    let mut measure = |root: u64| {
        let (_, t) = time(|| {
            for i in 0..lookups {
                let k = key(i * 2_654_435_761 % base_n);
                black_box(b.txn().lookup(root, &k, |v| v[0]).expect("lookup"));
            }
        });
        per_op(t, lookups)
    };
    // Warm both once, then measure.
    measure(layers[1]);
    measure(layers[layers.len() - 1]);
    let d1 = measure(layers[1]);
    let d128 = measure(layers[layers.len() - 1]);
    println!("| layer depth | lookup |");
    println!("|------------:|-------:|");
    println!("| 1 | {d1:.0} ns |");
    println!("| {depth} | {d128:.0} ns |");
    println!("\nratio depth {depth} / depth 1: {:.2}", d128 / d1);

    let n = if args.quick { 20_000 } else { 200_000 };
    println!("\n## Throughput against BTreeMap ({n} random inode-sized items, in memory)\n");
    let mut b = Bench::new();
    let (root, tree_ins) = time(|| {
        let mut root = 0;
        for i in 0..n {
            root = b.txn().insert(root, &key(i), &value(i)).expect("insert");
        }
        root
    });
    let (_, tree_look) = time(|| {
        for i in 0..n {
            black_box(b.txn().lookup(root, &key(i), |v| v[0]).expect("lookup"));
        }
    });
    let mut map = BTreeMap::new();
    let (_, map_ins) = time(|| {
        for i in 0..n {
            map.insert(key(i), value(i).to_vec());
        }
    });
    let (_, map_look) = time(|| {
        for i in 0..n {
            black_box(map.get(&key(i)).map(|v| v[0]));
        }
    });
    println!("| operation | LCFS tree | BTreeMap | ratio (tree / BTreeMap) |");
    println!("|-----------|----------:|---------:|------------------------:|");
    println!(
        "| insert | {:.0} ns | {:.0} ns | {:.1} |",
        per_op(tree_ins, n),
        per_op(map_ins, n),
        tree_ins.as_secs_f64() / map_ins.as_secs_f64()
    );
    println!(
        "| lookup | {:.0} ns | {:.0} ns | {:.1} |",
        per_op(tree_look, n),
        per_op(map_look, n),
        tree_look.as_secs_f64() / map_look.as_secs_f64()
    );
    println!(
        "\nThe LCFS tree copies each 4 KiB node out of its store and checks its CRC-32C on every \
         visit (as the kernel does through the page cache); BTreeMap works on native memory."
    );
}

//! `lcfs-bench`: measures the on-disk format through [`Volume`], the API the kernel and the tools
//! use, on an in-memory image ([`MemDevice`]), and prints one Markdown table per measurement.
//! Every ratio compares numbers measured in the same run; nothing here is a pass/fail test.
//!
//! - clone: cost of `create_layer(name, Some(parent))` on frozen layers of 1k, 100k and 1M
//!   inodes, the blocks it consumes once committed, and the first write to the clone; the goal is
//!   a flat cost under 50 µs.
//! - depth: lookup time in a layer cloned once versus one at the end of a chain of 128 clones,
//!   each with its own change; the goal is a ratio within 1.2.
//! - diff: `Volume::diff` of a clone with `k` changed inodes against its parent; the goal is a
//!   cost that follows `k`, not the layer size.
//! - throughput: inserts and lookups of inode records per second against
//!   `std::collections::BTreeMap`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use lcfs_format::node::Key;
use lcfs_format::records::{kind, mode, InodeRecord, Timespec, INODE_RECORD_SIZE};
use lcfs_format::superblock::Superblock;
use lcfs_format::tree::{BlockStore, Error};
use lcfs_format::volume::{Device, Volume};
use lcfs_format::ROOT_INO;
use lcfs_image::store::{MemDevice, VerifyCache};

/// Benchmarks of the LCFS format core.
#[derive(Debug, Parser)]
#[command(name = "lcfs-bench", version, about)]
struct Args {
    /// Small sizes, for a quick check that everything runs.
    #[arg(long)]
    quick: bool,
}

/// The time every record and commit carries (fixed: the benchmark does not depend on it).
const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

/// The in-memory image, counting block reads and writes. Blocks are fully validated once after
/// they enter memory (or are written), then only their placement is checked, as the kernel does
/// with the page cache.
struct Counted {
    dev: VerifyCache<MemDevice>,
    reads: u64,
    writes: u64,
}

impl BlockStore for Counted {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, Error> {
        self.dev.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.reads += 1;
        self.dev.read(blocknr, buf)
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), Error> {
        self.writes += 1;
        self.dev.write(blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.dev.total_blocks()
    }

    fn is_verified(&mut self, blocknr: u64) -> bool {
        self.dev.is_verified(blocknr)
    }

    fn set_verified(&mut self, blocknr: u64) {
        self.dev.set_verified(blocknr);
    }
}

impl Device for Counted {
    fn flush(&mut self) -> Result<(), Error> {
        self.dev.flush()
    }
}

/// A filesystem on the counted in-memory image.
type Vol = Volume<Counted>;

/// A small deterministic generator (SplitMix64), so every run does the same work.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// An inode number of a layer holding `n` inodes (`ROOT_INO..ROOT_INO + n`).
    fn ino(&mut self, n: u64) -> u64 {
        ROOT_INO + self.next() % n
    }
}

/// Key of inode `ino`.
fn ikey(ino: u64) -> Key {
    Key::new(ino, kind::INODE, 0)
}

/// The encoded inode record of a regular file; `version` changes its size and times.
fn inode(ino: u64, version: u64) -> [u8; INODE_RECORD_SIZE] {
    let t = Timespec {
        sec: NOW.sec + i64::try_from(version).unwrap_or(0),
        nsec: 0,
    };
    let rec = InodeRecord {
        mode: mode::S_IFREG | 0o644,
        uid: 1000,
        gid: 1000,
        nlink: 1,
        size: ino * 100 + version,
        atime: t,
        mtime: t,
        ctime: t,
        btime: NOW,
        generation: 1,
        data_id: ino,
        ..InodeRecord::default()
    };
    let mut buf = [0u8; INODE_RECORD_SIZE];
    rec.encode(&mut buf).expect("encode inode");
    buf
}

/// A fresh filesystem of `total` blocks with one read-write layer; returns it and the layer id.
fn fresh(total: u64) -> (Vol, u64) {
    let sb = Superblock::new(total, [7; 16], 1_700_000_000);
    let dev = Counted {
        dev: VerifyCache::new(MemDevice::new(total)),
        reads: 0,
        writes: 0,
    };
    let mut vol = Volume::format(dev, sb, Some(b"base"), NOW).expect("format");
    let base = vol.find_layer(b"base").expect("find").expect("base").id;
    (vol, base)
}

/// Device size for a layer of `n` inodes and the clones and changes made on top of it: an
/// inode-record leaf holds 27 items and inserts in inode order leave leaves half full, so the
/// tree takes about `n / 14` blocks (72,402 for a million inodes; the clone table prints it).
/// `n / 3` plus a margin leaves room for the copies made by clones and changes (up to 10,000
/// changed inodes copy about as many leaves) and for the map. The image is sparse in memory:
/// only written blocks take memory.
fn device_blocks(n: u64) -> u64 {
    n / 3 + 20_000
}

/// Fills `layer` (which holds the root directory) up to `n` inodes, in inode-number order as an
/// image import would, and commits.
fn fill(vol: &mut Vol, layer: u64, n: u64) {
    for ino in ROOT_INO + 1..ROOT_INO + n {
        vol.insert(layer, &ikey(ino), &inode(ino, 0))
            .expect("insert");
    }
    vol.commit(NOW).expect("commit");
}

/// Height of a layer's tree.
fn height(vol: &mut Vol, layer: u64) -> u8 {
    let root = vol.layer(layer).expect("layer").root;
    let mut h = 0;
    vol.with_tree(|t| {
        t.verify(root, &mut |_, hdr| h = h.max(hdr.level + 1))
            .expect("verify")
    });
    h
}

fn free_blocks(vol: &Vol) -> u64 {
    vol.superblock().free_blocks
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn mean_us(ds: &[Duration]) -> f64 {
    let total: Duration = ds.iter().sum();
    us(total) / ds.len().max(1) as f64
}

fn per_op_ns(total: Duration, ops: u64) -> f64 {
    total.as_secs_f64() * 1e9 / ops.max(1) as f64
}

fn time<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// Mean time of `f`, repeated until `budget` has passed (at least `min_reps` times).
fn repeat(min_reps: u32, budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut reps = 0u32;
    while reps < min_reps || start.elapsed() < budget {
        f();
        reps += 1;
    }
    start.elapsed() / reps
}

/// One row of the clone table.
struct CloneRow {
    n: u64,
    tree_blocks: u64,
    height: u8,
    clones: usize,
    create: Vec<Duration>,
    commit: Vec<Duration>,
    blocks: Vec<u64>,
    /// Block reads and writes of `create_layer`, summed.
    io: (u64, u64),
    first_write: Vec<Duration>,
    /// Block reads and writes of the first writes, summed.
    first_write_io: (u64, u64),
    /// Time to build the layer.
    build: Duration,
    /// Layers present and clone time, when every clone is kept (the layer count grows).
    kept: Vec<(u64, Duration)>,
    /// Clones made inside a running transaction that already copied the paths they touch.
    batched: Vec<Duration>,
}

/// One cell of the diff table.
struct DiffCell {
    k: u64,
    /// Changes the diff reported.
    changes: u64,
    /// Mean time of one diff.
    time: Duration,
    /// Blocks one diff read.
    reads: u64,
}

/// One row of the diff table.
struct DiffRow {
    n: u64,
    cells: Vec<DiffCell>,
}

/// Block reads and writes so far.
fn io(vol: &mut Vol) -> (u64, u64) {
    let s = vol.store();
    (s.reads, s.writes)
}

/// Block reads and writes since `before`.
fn io_since(vol: &mut Vol, before: (u64, u64)) -> (u64, u64) {
    let now = io(vol);
    (now.0 - before.0, now.1 - before.1)
}

/// Builds a frozen layer of `n` inodes, clones it `clones` times (one commit each, timed apart),
/// writes to some of the clones, then diffs fresh clones with `ks` changed inodes each.
fn clone_and_diff(
    n: u64,
    total: u64,
    clones: usize,
    ks: &[u64],
    keep: bool,
) -> (CloneRow, DiffRow) {
    let (mut vol, base) = fresh(total);
    let before = free_blocks(&vol);
    let ((), build) = time(|| fill(&mut vol, base, n));
    vol.freeze_layer(base).expect("freeze");
    vol.commit(NOW).expect("commit");
    let tree_blocks = before - free_blocks(&vol);
    let height = height(&mut vol, base);
    assert_eq!(vol.layer(base).expect("layer").inodes_used, n);

    let mut row = CloneRow {
        n,
        tree_blocks,
        height,
        clones,
        create: Vec::with_capacity(clones),
        commit: Vec::with_capacity(clones),
        blocks: Vec::with_capacity(clones),
        io: (0, 0),
        first_write: Vec::new(),
        first_write_io: (0, 0),
        build,
        kept: Vec::new(),
        batched: Vec::new(),
    };
    // Each clone in its own transaction, then removed again, so every clone sees the same volume
    // (the base layer and nothing else). Every tenth one first gets a write.
    let mut rng = Rng(n);
    for r in 0..clones {
        let name = format!("clone-{r}");
        let free0 = free_blocks(&vol);
        let io0 = io(&mut vol);
        let (id, t_create) = time(|| {
            vol.create_layer(black_box(name.as_bytes()), Some(base), NOW)
                .expect("clone")
        });
        let (r_io, w_io) = io_since(&mut vol, io0);
        row.io.0 += r_io;
        row.io.1 += w_io;
        let ((), t_commit) = time(|| vol.commit(NOW).expect("commit"));
        row.create.push(t_create);
        row.commit.push(t_commit);
        row.blocks.push(free0 - free_blocks(&vol));
        if r % 10 == 0 {
            // First write to a clone: copies one root-to-leaf path of the shared tree.
            let ino = rng.ino(n);
            let io0 = io(&mut vol);
            let ((), t) = time(|| vol.insert(id, &ikey(ino), &inode(ino, 1)).expect("insert"));
            let (r_io, w_io) = io_since(&mut vol, io0);
            row.first_write_io.0 += r_io;
            row.first_write_io.1 += w_io;
            vol.commit(NOW).expect("commit");
            row.first_write.push(t);
        }
        vol.remove_layer(id).expect("remove");
        vol.commit(NOW).expect("commit");
    }
    // Clones inside one running transaction, as a filesystem that commits every few seconds
    // makes them: the first copies the tree and map paths clones touch, the others are timed.
    let mut ids = Vec::new();
    for r in 0..clones.min(200) {
        let name = format!("batch-{r}");
        let (id, t) = time(|| {
            vol.create_layer(black_box(name.as_bytes()), Some(base), NOW)
                .expect("clone")
        });
        if r > 0 {
            row.batched.push(t);
        }
        ids.push(id);
    }
    vol.commit(NOW).expect("commit");
    for id in ids {
        vol.remove_layer(id).expect("remove");
    }
    vol.commit(NOW).expect("commit");

    let mut diff = DiffRow {
        n,
        cells: Vec::new(),
    };
    // The changed inodes of each diff: the first k of one random order, spread over the layer.
    let changed = shuffled(n, n + 1);
    for &k in ks.iter().filter(|&&k| k <= n) {
        let id = vol
            .create_layer(format!("diff-{k}").as_bytes(), Some(base), NOW)
            .expect("clone");
        for &ino in changed.iter().take(usize::try_from(k).expect("k")) {
            vol.insert(id, &ikey(ino), &inode(ino, 2)).expect("insert");
        }
        vol.commit(NOW).expect("commit");
        let mut changes = 0u64;
        let io0 = io(&mut vol);
        vol.diff(id, Key::MIN, &mut |_| Ok(true)).expect("diff");
        let (reads, _) = io_since(&mut vol, io0);
        let time = repeat(3, Duration::from_millis(300), || {
            changes = 0;
            vol.diff(id, Key::MIN, &mut |c| {
                black_box(c);
                changes += 1;
                Ok(true)
            })
            .expect("diff");
        });
        diff.cells.push(DiffCell {
            k,
            changes,
            time,
            reads,
        });
    }

    // The same clones again, kept this time: the volume gains a layer per clone.
    if keep {
        for r in 0..clones {
            let name = format!("kept-{r}");
            let layers = vol.superblock().layer_count;
            let ((), t) = time(|| {
                vol.create_layer(black_box(name.as_bytes()), Some(base), NOW)
                    .map(drop)
                    .expect("clone");
            });
            vol.commit(NOW).expect("commit");
            row.kept.push((layers, t));
        }
    }
    (row, diff)
}

/// The inode numbers of a layer of `n` inodes (`ROOT_INO..ROOT_INO + n`) in a random order.
fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (ROOT_INO..ROOT_INO + n).collect();
    let mut rng = Rng(seed);
    for i in (1..v.len()).rev() {
        let j = usize::try_from(rng.next() % (i as u64 + 1)).expect("index");
        v.swap(i, j);
    }
    v
}

/// Lookups of `lookups` random existing inodes in the layer cloned once from a base of `base_n`
/// inodes and in the one at the end of a chain of `depth` clones; returns ns per lookup of each.
fn depth_lookup(base_n: u64, depth: u64, lookups: u64) -> (f64, f64, u64) {
    let (mut vol, base) = fresh(device_blocks(base_n) + depth * 64);
    fill(&mut vol, base, base_n);
    vol.freeze_layer(base).expect("freeze");
    let mut rng = Rng(42);
    let mut layers = Vec::new();
    let mut parent = base;
    for d in 1..=depth {
        let id = vol
            .create_layer(format!("depth-{d}").as_bytes(), Some(parent), NOW)
            .expect("clone");
        let ino = rng.ino(base_n);
        vol.insert(id, &ikey(ino), &inode(ino, d)).expect("insert");
        vol.freeze_layer(id).expect("freeze");
        vol.commit(NOW).expect("commit");
        layers.push(id);
        parent = id;
    }
    let first = layers.first().copied().expect("layers");
    let last = layers.last().copied().expect("layers");
    let mut found = 0u64;
    let mut measure = |vol: &mut Vol, layer: u64, seed: u64| {
        let mut rng = Rng(seed);
        let (_, t) = time(|| {
            for _ in 0..lookups {
                let ino = rng.ino(base_n);
                let got = vol
                    .lookup(layer, &ikey(ino), |v| v.first().copied())
                    .expect("lookup");
                found += u64::from(black_box(got).is_some());
            }
        });
        per_op_ns(t, lookups)
    };
    // Alternate the two layers, same keys for both, and keep the best round of each.
    let (mut d1, mut dn) = (f64::MAX, f64::MAX);
    for round in 0..4 {
        d1 = d1.min(measure(&mut vol, first, round));
        dn = dn.min(measure(&mut vol, last, round));
    }
    (d1, dn, found)
}

/// Nanoseconds per operation of the layer and of `BTreeMap`.
struct Throughput {
    tree_insert: f64,
    tree_lookup: f64,
    map_insert: f64,
    map_lookup: f64,
    /// The commit after the layer's inserts.
    commit: Duration,
}

/// Inserts and lookups of `n` inode records in random order in a layer and in a `BTreeMap`.
/// Layer inserts run once (they take seconds); layer lookups take the best of four quarters of
/// the keys; the `BTreeMap` runs (a fraction of a second each) take the best of five rounds.
fn throughput(n: u64) -> Throughput {
    let (mut vol, layer) = fresh(device_blocks(n));
    // Two random orders of the inode numbers ROOT_INO + 1..=n (the root inode is there).
    let ins: Vec<u64> = shuffled(n + 1, 1)
        .into_iter()
        .filter(|&i| i != ROOT_INO)
        .collect();
    let look: Vec<u64> = shuffled(n + 1, 2)
        .into_iter()
        .filter(|&i| i != ROOT_INO)
        .collect();
    let values: Vec<[u8; INODE_RECORD_SIZE]> = ins.iter().map(|&i| inode(i, 0)).collect();

    let ((), tree_ins) = time(|| {
        for (&ino, v) in ins.iter().zip(&values) {
            vol.insert(layer, &ikey(ino), v).expect("insert");
        }
    });
    let ((), commit) = time(|| vol.commit(NOW).expect("commit"));
    let mut tree_lookup = f64::MAX;
    for quarter in look.chunks(look.len().div_ceil(4).max(1)) {
        let ((), t) = time(|| {
            for &ino in quarter {
                let got = vol
                    .lookup(layer, &ikey(ino), |v| v.first().copied())
                    .expect("lookup");
                black_box(got.expect("present"));
            }
        });
        tree_lookup = tree_lookup.min(per_op_ns(t, quarter.len() as u64));
    }
    let (mut map_insert, mut map_lookup) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let mut map = BTreeMap::<Key, [u8; INODE_RECORD_SIZE]>::new();
        let ((), t) = time(|| {
            for (&ino, v) in ins.iter().zip(&values) {
                map.insert(ikey(ino), *v);
            }
        });
        map_insert = map_insert.min(per_op_ns(t, n));
        let ((), t) = time(|| {
            for &ino in &look {
                let got = map.get(&ikey(ino)).map(|v| v.first().copied());
                black_box(got.expect("present"));
            }
        });
        map_lookup = map_lookup.min(per_op_ns(t, n));
        black_box(map);
    }
    Throughput {
        tree_insert: per_op_ns(tree_ins, n),
        tree_lookup,
        map_insert,
        map_lookup,
        commit,
    }
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let (sizes, clones): (&[u64], usize) = if args.quick {
        (&[1_000, 10_000], 100)
    } else {
        (&[1_000, 100_000, 1_000_000], 1000)
    };
    let ks: &[u64] = &[1, 100, 10_000];

    let mut clone_rows = Vec::new();
    let mut diff_rows = Vec::new();
    // One device size for every layer size, so that only the size of the layer cloned changes
    // (a bigger device has a deeper reference-count map, which every allocation walks).
    let total = sizes.iter().copied().map(device_blocks).max().unwrap_or(0);
    for (i, &n) in sizes.iter().enumerate() {
        let (c, d) = clone_and_diff(n, total, clones, ks, i + 1 == sizes.len());
        clone_rows.push(c);
        diff_rows.push(d);
    }

    println!("## Clone cost (`Volume::create_layer` of a frozen layer)\n");
    println!(
        "| inodes | tree blocks | height | build per inode | clone mean | clone max \
         | clone reads / writes | commit | blocks used per clone | clone in a running \
         transaction | first write | first write reads / writes |"
    );
    println!(
        "|-------:|------------:|-------:|----------------:|-----------:|----------:\
         |---------------------:|-------:|----------------------:|---------:\
         |------------:|---------------------------:|"
    );
    for r in &clone_rows {
        let bmin = r.blocks.iter().min().copied().unwrap_or(0);
        let bmax = r.blocks.iter().max().copied().unwrap_or(0);
        let clones = r.create.len().max(1) as f64;
        let writes = r.first_write.len().max(1) as f64;
        println!(
            "| {} | {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} / {:.1} | {:.1} µs | {} \
             | {:.1} µs | {:.1} µs | {:.1} / {:.1} |",
            r.n,
            r.tree_blocks,
            r.height,
            us(r.build) / r.n as f64,
            mean_us(&r.create),
            us(r.create.iter().max().copied().unwrap_or_default()),
            r.io.0 as f64 / clones,
            r.io.1 as f64 / clones,
            mean_us(&r.commit),
            if bmin == bmax {
                format!("{bmin}")
            } else {
                format!("{bmin}–{bmax}")
            },
            mean_us(&r.batched),
            mean_us(&r.first_write),
            r.first_write_io.0 as f64 / writes,
            r.first_write_io.1 as f64 / writes,
        );
    }
    let clones_n = clone_rows.first().map_or(0, |r| r.clones);
    let total = sizes.iter().copied().map(device_blocks).max().unwrap_or(0);
    println!(
        "\nGoal: flat, under 50 µs. Every layer lives on an image of the same size ({total} \
         blocks), so only the layer size changes. Each layer of N inodes is built with \
         `Volume::insert` in inode order in one transaction (build per inode: that time over N), committed and \
         frozen, then cloned {clones_n} times, each clone in its own transaction and removed \
         again afterwards, so every clone is made on the same volume (the base layer alone). \
         Clone = `create_layer(name, Some(base), now)` alone, timed one call at a time, with the \
         blocks it reads and writes (tree nodes and map nodes, mean); commit = the `commit` \
         that follows. Blocks used per clone = free blocks before `create_layer` minus after \
         its commit. Clone in a running transaction = the mean of 199 clones made one after \
         the other in one transaction, after a first clone that copied the tree and map paths \
         every clone touches (a mounted filesystem commits every few seconds, so most clones \
         land in a running transaction). First write = one `Volume::insert` of an inode record into a fresh clone \
         (copies one root-to-leaf path and adds a reference to each child of every copied \
         node), mean over every tenth clone."
    );
    // Clone time against the number of layers already on the volume.
    if let Some(r) = clone_rows.iter().find(|r| !r.kept.is_empty()) {
        let chunk = (r.kept.len() / 5).max(1);
        println!(
            "\n### Clone cost against the number of layers ({} clones of the {}-inode layer, \
             all kept)\n",
            r.kept.len(),
            r.n
        );
        println!("| clones | layers before the clone | clone mean | clone max |");
        println!("|-------:|------------------------:|-----------:|----------:|");
        for (i, c) in r.kept.chunks(chunk).enumerate() {
            let times: Vec<Duration> = c.iter().map(|&(_, t)| t).collect();
            let layers_lo = c.first().map_or(0, |&(l, _)| l);
            let layers_hi = c.last().map_or(0, |&(l, _)| l);
            println!(
                "| {}–{} | {layers_lo}–{layers_hi} | {:.1} µs | {:.1} µs |",
                i * chunk + 1,
                i * chunk + c.len(),
                mean_us(&times),
                us(times.iter().max().copied().unwrap_or_default())
            );
        }
        println!(
            "\nThe same clone as above, each in its own transaction, but every clone is kept: \
             shows how `create_layer` (which also checks that the name is unused) depends on the \
             number of layers already on the volume, as opposed to the size of the layer cloned."
        );
    }

    let (base_n, depth, lookups) = if args.quick {
        (10_000, 128, 10_000)
    } else {
        (100_000, 128, 50_000)
    };
    let (d1, dn, found) = depth_lookup(base_n, depth, lookups);
    println!(
        "\n## Lookup at layer depth ({base_n} inodes, chain of {depth} clones, one changed \
         inode per clone)\n"
    );
    println!("| layer depth | lookup |");
    println!("|------------:|-------:|");
    println!("| 1 | {d1:.0} ns |");
    println!("| {depth} | {dn:.0} ns |");
    println!(
        "\nratio depth {depth} / depth 1: {:.2} (goal: ≤ 1.2)",
        dn / d1
    );
    println!(
        "\nEach layer of the chain is a clone of the one before, with one inode rewritten, \
         then frozen. `Volume::lookup` of {lookups} random existing inodes (the same ones in \
         both layers; {found} found of {} looked up over all rounds), best of 4 alternating \
         rounds; each lookup also reads the layer's record from the layer tree.",
        lookups * 8
    );

    println!(
        "\n## Diff cost (`Volume::diff` of a clone with k changed inodes against its parent)\n"
    );
    print!("| inodes |");
    for k in ks {
        print!(" k = {k} |");
    }
    println!();
    print!("|-------:|");
    for _ in ks {
        print!("------:|");
    }
    println!();
    for r in &diff_rows {
        print!("| {} |", r.n);
        for k in ks {
            match r.cells.iter().find(|c| c.k == *k) {
                Some(c) => {
                    assert_eq!(
                        c.changes, *k,
                        "diff found {} changes, expected {k}",
                        c.changes
                    );
                    print!(" {:.1} µs ({} blocks) |", us(c.time), c.reads);
                }
                None => print!(" — |"),
            }
        }
        println!();
    }
    println!(
        "\nGoal: grows with k, not with the layer size. The k inodes are spread over the whole \
         layer (the first k of a random order of its inodes), the clone is committed, then the diff is \
         run repeatedly (mean); it reports exactly k changes. Shared subtrees are skipped \
         without being read."
    );

    let n = if args.quick { 20_000 } else { 200_000 };
    let t = throughput(n);
    println!("\n## Throughput against BTreeMap ({n} inode records in random order, in memory)\n");
    println!("| operation | LCFS layer | BTreeMap | ratio (layer / BTreeMap) |");
    println!("|-----------|-----------:|---------:|-------------------------:|");
    println!(
        "| insert | {:.0} ns | {:.0} ns | {:.1} |",
        t.tree_insert,
        t.map_insert,
        t.tree_insert / t.map_insert
    );
    println!(
        "| lookup | {:.0} ns | {:.0} ns | {:.1} |",
        t.tree_lookup,
        t.map_lookup,
        t.tree_lookup / t.map_lookup
    );
    println!(
        "\n`Volume::insert` / `Volume::lookup` of `Key::new(ino, INODE, 0)` with 128-byte \
         `InodeRecord` values into one layer, against `BTreeMap<Key, [u8; 128]>`, same keys in \
         the same order. The layer's inserts run once, in one transaction (its commit took \
         {:.0} µs, not counted); its lookups run on the committed layer, best of four quarters \
         of the keys; BTreeMap: best of five rounds. Every Volume call also reads the layer \
         record from the layer tree, and every node visit copies the 4 KiB block out of the \
         store; a block is validated completely (CRC-32C included) the first time it is read \
         after being written, later visits check only its placement (as the kernel does with \
         page-cache blocks, like ext4's `buffer_verified`); an insert also looks up the old value and rewrites the layer record. BTreeMap \
         works on native memory.",
        us(t.commit)
    );
    eprintln!(
        "\n(total run time {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Copy-on-write B+trees over a block store.
//!
//! A tree is named by its root block (0 for an empty tree). Every change runs inside a transaction
//! ([`Txn`]) with a generation number: a node written by an earlier transaction is never modified in
//! place but *shadowed*, copied to a newly allocated block whose parent is then updated, up to a new
//! root. A node already written by the current transaction is modified in place. The committed
//! trees therefore stay intact until the superblock switches to the new roots.
//!
//! Trees are cloned in O(1) by sharing the root (Rodeh, "B-trees, Shadowing, and Clones", ACM TOS
//! 2008): the root's reference count goes up and nothing is copied. A shared node is copied on its
//! first write; the copy's children gain a reference each (the count is pushed down lazily), and
//! the original loses one. Dropping a tree frees exactly the nodes no other tree references.
//!
//! Insertion splits full nodes bottom-up; removal merges or rebalances a node that falls below a
//! quarter full with a sibling, and collapses a root left with one child. Separator keys in internal
//! nodes are lower bounds of their child's subtree.
//!
//! Memory: nodes are held in buffers from [`BlockStore::alloc_buf`], at most two per tree level
//! (eight levels at most), so the kernel can allocate them fallibly and never on the stack.

use super::node::{
    self, Expect, Header, Key, MAX_INTERNAL_ITEMS, MAX_LEVEL, MAX_VALUE_SIZE, NODE_SIZE,
};
use super::FormatError;

/// Errors of tree operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A block failed validation.
    Corrupt(FormatError),
    /// The block store failed to read or write.
    Io,
    /// No free block is left.
    NoSpace,
    /// A buffer could not be allocated.
    NoMemory,
    /// The caller passed something invalid (for example an oversized value).
    Invalid,
    /// The object does not exist.
    NotFound,
    /// The name is taken.
    Exists,
    /// The object is in use (a layer with children).
    Busy,
    /// The object is read-only (a frozen layer).
    ReadOnly,
    /// The directory has entries.
    NotEmpty,
    /// The object is a directory where a non-directory is needed (`EISDIR`).
    IsDir,
    /// The object is not a directory where one is needed (`ENOTDIR`).
    NotDir,
    /// An earlier failure aborted the transaction: the filesystem must be reopened at its last
    /// committed state.
    Aborted,
}

/// A visitor of tree items for [`Txn::scan_leaf`]: `Ok(true)` for more.
pub type ItemVisitor<'a> = dyn FnMut(&Key, &[u8]) -> Result<bool, Error> + 'a;

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Corrupt(e) => write!(f, "damaged filesystem: {e}"),
            Self::Io => f.write_str("I/O error"),
            Self::NoSpace => f.write_str("no space left"),
            Self::NoMemory => f.write_str("out of memory"),
            Self::Invalid => f.write_str("invalid argument"),
            Self::NotFound => f.write_str("not found"),
            Self::Exists => f.write_str("already exists"),
            Self::Busy => f.write_str("in use"),
            Self::ReadOnly => f.write_str("read-only"),
            Self::NotEmpty => f.write_str("not empty"),
            Self::IsDir => f.write_str("is a directory"),
            Self::NotDir => f.write_str("not a directory"),
            Self::Aborted => f.write_str("an earlier failure aborted the transaction"),
        }
    }
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Self::Corrupt(e)
    }
}

/// Where tree nodes live: a block device's page cache in the kernel, a file or memory in userspace.
pub trait BlockStore {
    /// A block-sized buffer.
    type Buf: AsRef<[u8]> + AsMut<[u8]>;

    /// Allocates a zeroed buffer of one block.
    fn alloc_buf(&mut self) -> Result<Self::Buf, Error>;

    /// Reads block `blocknr` into `buf`.
    fn read(&mut self, blocknr: u64, buf: &mut Self::Buf) -> Result<(), Error>;

    /// Writes `buf` to block `blocknr`.
    fn write(&mut self, blocknr: u64, buf: &Self::Buf) -> Result<(), Error>;

    /// Writes the metadata node `buf` (a tree or map node: both keep the CRC-32C of the block
    /// at bytes 4..8, computed by [`node::seal`]) without its checksum computed yet. A store that keeps written nodes in
    /// memory may seal a node only when it passes it on towards the medium (before
    /// [`super::volume::Device::flush`] returns at the latest), so that a node changed many times
    /// in a transaction is checksummed once; reading it back meanwhile gives the unsealed bytes,
    /// and [`Self::is_verified`] must say yes for it. The default seals and writes at once.
    fn write_node(&mut self, blocknr: u64, buf: &mut Self::Buf) -> Result<(), Error> {
        node::seal(buf.as_mut())?;
        self.write(blocknr, buf)
    }

    /// Reads block `blocknr` into a new buffer. A store may skip zeroing the buffer first, since
    /// the block overwrites all of it.
    fn read_new(&mut self, blocknr: u64) -> Result<Self::Buf, Error> {
        let mut buf = self.alloc_buf()?;
        self.read(blocknr, &mut buf)?;
        Ok(buf)
    }

    /// Calls `f` with the contents of block `blocknr`. A store that keeps blocks in memory
    /// lends its copy, so a tree walk that only looks at a node does not copy it (a descent
    /// visits a node per level). The default reads into a new buffer.
    fn with_block<R>(&mut self, blocknr: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let buf = self.read_new(blocknr)?;
        Ok(f(buf.as_ref()))
    }

    /// Calls `f` with the contents of block `blocknr` and whether it passed full validation
    /// already ([`Self::is_verified`]); if `f` returns `true` with its result, the block passed
    /// it now ([`Self::set_verified`]). One call for what a tree walk asks of every node it
    /// visits, so that a store behind a lock takes it once.
    fn with_verified_block<R>(
        &mut self,
        blocknr: u64,
        f: impl FnOnce(&[u8], bool) -> (bool, R),
    ) -> Result<R, Error> {
        let verified = self.is_verified(blocknr);
        let (checked, r) = self.with_block(blocknr, |b| f(b, verified))?;
        if checked {
            self.set_verified(blocknr);
        }
        Ok(r)
    }

    /// Calls `f` to change node `blocknr` in place, if the store still holds it unsealed as
    /// this transaction wrote it with [`Self::write_node`]; the change then goes with that write.
    /// `None` if it holds no such node: the caller reads, changes and writes the node instead.
    /// The default holds none.
    fn update_node<R>(&mut self, _blocknr: u64, _f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        None
    }

    /// Number of blocks of the filesystem.
    fn total_blocks(&self) -> u64;

    /// Whether block `blocknr` passed full validation since it last came from the medium. A store
    /// that keeps blocks in memory (the kernel's page cache) may remember this, as ext4 does with
    /// its `buffer_verified` bit, so a block is checked once per read from disk rather than on
    /// every visit; placement (block number, tree, level) is still checked on every visit.
    fn is_verified(&mut self, _blocknr: u64) -> bool {
        false
    }

    /// Memory (a few hundred `u64`s) where the reference-count map keeps, for the running
    /// transaction, node blocks known to have count 1, so that copy-on-write needs no map walk
    /// for them; the map owns the contents (see `RefMap::single_table`). The store only keeps
    /// it, off the kernel stack. `None`: no table.
    fn single_table(&mut self) -> Option<&mut [u64]> {
        None
    }

    /// Memory ([`super::data::IN_PLACE_TABLE`] `u64`s) where a volume keeps the runs of file
    /// blocks it knows are overwritten in place (see [`super::data::InPlaceCache`]); the volume
    /// owns the contents, the store only keeps them off the kernel stack. `None`: no such cache.
    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        None
    }

    /// Records that `blocknr` holds a fully validated block (read and checked, or just written
    /// by the format code, which only writes valid blocks). A later `write` of other contents
    /// must forget it.
    fn set_verified(&mut self, _blocknr: u64) {}
}

/// Hands out blocks and keeps their reference counts.
///
/// A node referenced by one parent (or one tree root) has count 1; cloning a tree and sharing a
/// node raise it. A block whose count drops to 0 is free, but must not be handed out again before
/// the transaction commits: the committed trees may still reference it. The allocator may keep
/// its own state in blocks of `store` (the on-disk [`super::refmap::RefMap`] does).
pub trait Allocator<S: BlockStore> {
    /// A free block for a tree node, with reference count 1.
    fn alloc(&mut self, store: &mut S) -> Result<u64, Error>;
    /// Reference count of a block in use.
    fn refcount(&mut self, store: &mut S, blocknr: u64) -> Result<u32, Error>;
    /// Adds a reference to each of `len` blocks from `blocknr`.
    fn inc_ref(&mut self, store: &mut S, blocknr: u64, len: u64) -> Result<(), Error>;
    /// Drops a reference from each of `len` blocks from `blocknr`; at 0 a block is free.
    fn dec_ref(&mut self, store: &mut S, blocknr: u64, len: u64) -> Result<(), Error>;
}

impl<S: BlockStore> Allocator<S> for super::refmap::RefMap {
    fn alloc(&mut self, store: &mut S) -> Result<u64, Error> {
        self.alloc_node(store)
    }
    fn refcount(&mut self, store: &mut S, blocknr: u64) -> Result<u32, Error> {
        self.node_refcount(store, blocknr)
    }
    fn inc_ref(&mut self, store: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
        self.inc_range(store, blocknr, len)
    }
    fn dec_ref(&mut self, store: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
        self.dec_range(store, blocknr, len)
    }
}

/// Tells which blocks a leaf item's value references (a file extent, for example), so that
/// sharing and dropping a leaf keeps those blocks' counts right. `total_blocks` bounds them.
pub type LeafRefs =
    fn(key: &Key, value: &[u8], total_blocks: u64) -> Result<Option<(u64, u64)>, FormatError>;

/// One transaction's view of a tree kind.
pub struct Txn<'a, S: BlockStore, A: Allocator<S>> {
    /// Where nodes are read and written.
    pub store: &'a mut S,
    /// Where new blocks come from.
    pub alloc: &'a mut A,
    /// Generation of this transaction; nodes with it may be modified in place.
    pub generation: u64,
    /// Filesystem id stored in every node.
    pub fsid: u64,
    /// Tree kind stored in every node.
    pub tree: u8,
    /// Block references held by leaf values, if this tree kind has any.
    pub leaf_refs: Option<LeafRefs>,
}

/// Outcome of inserting into a subtree.
enum Grown {
    /// The subtree now has root `0`.
    One(u64),
    /// The subtree split: left root, first key of the right part, right root.
    Two(u64, Key, u64),
}

/// Outcome of removing from a subtree.
struct Shrunk {
    /// New root of the subtree.
    block: u64,
    /// Whether it fell below the fill threshold and wants a merge.
    underfull: bool,
    /// Items (leaf) or children (interior node) left in it.
    len: usize,
    /// Whether it is a leaf.
    leaf: bool,
}

/// What [`Txn::drop_step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropStep {
    /// The node's reference is gone (and the node with it, if it was the last).
    Done,
    /// The node is exclusive and has this child to drop next (its reference moves to the
    /// caller); the node's progress is now `next`.
    Descend {
        /// The child's block.
        child: u64,
        /// The child's level.
        level: u8,
        /// Children of the node dealt with once this one is handed out.
        next: u32,
    },
}

impl<S: BlockStore, A: Allocator<S>> Txn<'_, S, A> {
    /// Calls `f` for every block range the items of leaf `buf` reference.
    fn leaf_ranges(&mut self, buf: &S::Buf, inc: bool) -> Result<(), Error> {
        let Some(refs) = self.leaf_refs else {
            return Ok(());
        };
        let total = self.store.total_blocks();
        for i in 0..node::len(buf.as_ref())? {
            let key = node::leaf_key(buf.as_ref(), i)?;
            if let Some((b, len)) = refs(&key, node::leaf_value(buf.as_ref(), i)?, total)? {
                if inc {
                    self.alloc.inc_ref(self.store, b, len)?;
                } else {
                    self.alloc.dec_ref(self.store, b, len)?;
                }
            }
        }
        Ok(())
    }

    fn expect(&self, blocknr: u64, level: Option<u8>) -> Expect {
        Expect {
            blocknr,
            fsid: self.fsid,
            tree: self.tree,
            level,
            total_blocks: self.store.total_blocks(),
        }
    }

    /// Reads and validates a node.
    fn read(&mut self, blocknr: u64, level: Option<u8>) -> Result<(S::Buf, Header), Error> {
        if blocknr == 0 || blocknr >= self.store.total_blocks() {
            return Err(Error::Corrupt(FormatError::BadField("block number")));
        }
        let buf = self.store.read_new(blocknr)?;
        let expect = self.expect(blocknr, level);
        let hdr = if self.store.is_verified(blocknr) {
            node::check_placement(buf.as_ref(), &expect)?
        } else {
            let hdr = node::check(buf.as_ref(), &expect)?;
            self.store.set_verified(blocknr);
            hdr
        };
        if hdr.generation > self.generation {
            return Err(Error::Corrupt(FormatError::BadField("node generation")));
        }
        Ok((buf, hdr))
    }

    /// Validates node `blocknr` as [`Self::read`] does and calls `f` with it, without copying
    /// it out of the store.
    fn visit<R>(
        &mut self,
        blocknr: u64,
        level: Option<u8>,
        f: impl FnOnce(&[u8], &Header) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if blocknr == 0 || blocknr >= self.store.total_blocks() {
            return Err(Error::Corrupt(FormatError::BadField("block number")));
        }
        let expect = self.expect(blocknr, level);
        let generation = self.generation;
        self.store.with_verified_block(blocknr, |buf, verified| {
            let hdr = if verified {
                node::check_placement(buf, &expect)
            } else {
                node::check(buf, &expect)
            };
            match hdr {
                Ok(hdr) if hdr.generation > generation => (
                    false,
                    Err(Error::Corrupt(FormatError::BadField("node generation"))),
                ),
                Ok(hdr) => (!verified, f(buf, &hdr)),
                Err(e) => (false, Err(e.into())),
            }
        })?
    }

    /// From the root down to the leaf that holds (or would hold) `key`, without copying nodes:
    /// `f` gets the leaf. `right` and `left`, if given, receive the nearest subtree to the right
    /// or left of the path at the lowest level that has one (with that subtree's level), for a
    /// walk that continues past the leaf.
    fn descend<R>(
        &mut self,
        root: u64,
        key: &Key,
        mut right: Option<&mut Option<(u64, u8)>>,
        mut left: Option<&mut Option<(u64, u8)>>,
        f: impl FnOnce(&[u8]) -> Result<R, Error>,
    ) -> Result<R, Error> {
        enum Step<R> {
            Down(u64, u8),
            Leaf(R),
        }
        let mut f = Some(f);
        let mut block = root;
        let mut level = None;
        loop {
            let step = self.visit(block, level, |buf, hdr| {
                if hdr.is_leaf() {
                    let f = f.take().ok_or(Error::Invalid)?;
                    return f(buf).map(Step::Leaf);
                }
                let i = node::child_index(buf, key)?;
                let n = node::len(buf)?;
                if let Some(r) = right.as_deref_mut() {
                    if let Some(j) = i.checked_add(1).filter(|&j| j < n) {
                        *r = Some((node::internal_child(buf, j)?, hdr.child_level()?));
                    }
                }
                if let Some(l) = left.as_deref_mut() {
                    if let Some(j) = i.checked_sub(1) {
                        *l = Some((node::internal_child(buf, j)?, hdr.child_level()?));
                    }
                }
                Ok(Step::Down(
                    node::internal_child(buf, i)?,
                    hdr.child_level()?,
                ))
            })?;
            match step {
                Step::Leaf(r) => return Ok(r),
                Step::Down(child, l) => {
                    block = child;
                    level = Some(l);
                }
            }
        }
    }

    /// Down the leftmost (`first`) or rightmost path of the subtree at `block` to its first or
    /// last leaf, without copying nodes; `f` gets the leaf.
    fn descend_edge<R>(
        &mut self,
        block: u64,
        level: u8,
        first: bool,
        f: impl FnOnce(&[u8]) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut f = Some(f);
        let mut block = block;
        let mut level = level;
        loop {
            let step = self.visit(block, Some(level), |buf, hdr| {
                if hdr.is_leaf() {
                    let f = f.take().ok_or(Error::Invalid)?;
                    return f(buf).map(Err);
                }
                let i = if first {
                    0
                } else {
                    node::len(buf)?
                        .checked_sub(1)
                        .ok_or(Error::Corrupt(FormatError::BadField("empty node")))?
                };
                Ok(Ok(node::internal_child(buf, i)?))
            })?;
            match step {
                Err(r) => return Ok(r),
                Ok(child) => {
                    block = child;
                    level = level
                        .checked_sub(1)
                        .ok_or(Error::Corrupt(FormatError::BadField("node level")))?;
                }
            }
        }
    }

    fn write(&mut self, blocknr: u64, buf: &mut S::Buf) -> Result<(), Error> {
        self.store.write_node(blocknr, buf)?;
        self.store.set_verified(blocknr);
        Ok(())
    }

    /// Makes the node writable in this transaction: shadows it to a new block unless this
    /// transaction wrote it and no other tree shares it. Returns the block it now lives in.
    fn cow(&mut self, blocknr: u64, hdr: &Header, buf: &mut S::Buf) -> Result<u64, Error> {
        let refs = self.alloc.refcount(self.store, blocknr)?;
        if refs == 1 && hdr.generation == self.generation {
            return Ok(blocknr);
        }
        let new = self.alloc.alloc(self.store)?;
        if refs > 1 {
            // The copy is a new parent of everything the node references: push the sharing
            // down one level.
            if hdr.is_leaf() {
                self.leaf_ranges(buf, true)?;
            } else {
                for i in 0..node::len(buf.as_ref())? {
                    let child = node::internal_child(buf.as_ref(), i)?;
                    self.alloc.inc_ref(self.store, child, 1)?;
                }
            }
        }
        node::relocate(buf.as_mut(), new, self.generation)?;
        self.alloc.dec_ref(self.store, blocknr, 1)?;
        Ok(new)
    }

    /// Clones the tree under `root` in O(1): both trees share every node until one changes it.
    /// Returns the clone's root.
    pub fn clone_tree(&mut self, root: u64) -> Result<u64, Error> {
        if root != 0 {
            self.alloc.inc_ref(self.store, root, 1)?;
        }
        Ok(root)
    }

    /// Drops the tree under `root`: frees the nodes only it references and releases its share
    /// of the others.
    pub fn drop_tree(&mut self, root: u64) -> Result<(), Error> {
        if root == 0 {
            return Ok(());
        }
        self.drop_rec(root, None)
    }

    /// One bounded step of dropping a tree, for reclaim that must stop and resume (across
    /// commits and crashes): node `block` (at `level`, `None` for a tree's root) was reached
    /// through one reference, and its children before `next` are dealt with already.
    ///
    /// With `next == 0` the node was not visited yet: if other trees share it, only its
    /// reference is released; a leaf releases what its items reference and is freed. An
    /// exclusive internal node hands out its children one per step (`Descend`, whose caller
    /// drops the child and records `next` as the node's new progress) and is freed after the
    /// last. A step reads one node and changes at most one leaf's worth of counts.
    pub fn drop_step(
        &mut self,
        block: u64,
        level: Option<u8>,
        next: u32,
    ) -> Result<DropStep, Error> {
        // Progress past the first child means the node was found exclusive, and nothing can
        // share it since: it is in no tree.
        if next == 0 && self.alloc.refcount(self.store, block)? > 1 {
            self.alloc.dec_ref(self.store, block, 1)?;
            return Ok(DropStep::Done);
        }
        let (buf, hdr) = self.read(block, level)?;
        if hdr.is_leaf() {
            self.leaf_ranges(&buf, false)?;
        } else {
            let n = node::len(buf.as_ref())?;
            let i = usize::try_from(next).map_err(|_| Error::Invalid)?;
            if i < n {
                return Ok(DropStep::Descend {
                    child: node::internal_child(buf.as_ref(), i)?,
                    level: hdr.child_level()?,
                    next: next.checked_add(1).ok_or(Error::Invalid)?,
                });
            }
        }
        self.alloc.dec_ref(self.store, block, 1)?;
        Ok(DropStep::Done)
    }

    fn drop_rec(&mut self, block: u64, level: Option<u8>) -> Result<(), Error> {
        if self.alloc.refcount(self.store, block)? > 1 {
            self.alloc.dec_ref(self.store, block, 1)?;
            return Ok(());
        }
        let (buf, hdr) = self.read(block, level)?;
        if hdr.is_leaf() {
            self.leaf_ranges(&buf, false)?;
        } else {
            for i in 0..node::len(buf.as_ref())? {
                let child = node::internal_child(buf.as_ref(), i)?;
                self.drop_rec(child, Some(hdr.child_level()?))?;
            }
        }
        self.alloc.dec_ref(self.store, block, 1)?;
        Ok(())
    }

    fn new_node(&mut self, level: u8) -> Result<(u64, S::Buf), Error> {
        let blocknr = self.alloc.alloc(self.store)?;
        let mut buf = self.store.alloc_buf()?;
        node::init(
            buf.as_mut(),
            &Header {
                blocknr,
                generation: self.generation,
                fsid: self.fsid,
                tree: self.tree,
                level,
                nitems: 0,
            },
        )?;
        Ok((blocknr, buf))
    }

    /// Calls `f` with the value of `key`; `Ok(None)` if the key is absent.
    pub fn lookup<R>(
        &mut self,
        root: u64,
        key: &Key,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        if root == 0 {
            return Ok(None);
        }
        self.descend(root, key, None, None, |buf| match node::search(buf, key)? {
            Ok(i) => Ok(Some(f(node::leaf_value(buf, i)?))),
            Err(_) => Ok(None),
        })
    }

    /// The first item with a key of at least `from`, passed to `f` with its key.
    pub fn next<R>(
        &mut self,
        root: u64,
        from: &Key,
        f: impl FnOnce(&Key, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        self.at_leaf(root, from, |buf, i| {
            let k = node::leaf_key(buf, i)?;
            Ok(f(&k, node::leaf_value(buf, i)?))
        })
    }

    /// Calls `f` with the items from the first key of at least `from` to the end of the leaf
    /// that holds it, in key order, while `f` returns `true`: one descent for a leaf's worth of
    /// items, where [`Self::next`] takes one per item. Returns the key to go on from if the leaf
    /// ended with `f` still wanting more, `None` if `f` stopped or no item is left.
    pub fn scan_leaf(
        &mut self,
        root: u64,
        from: &Key,
        f: &mut ItemVisitor<'_>,
    ) -> Result<Option<Key>, Error> {
        let resume = self.at_leaf(root, from, |buf, first| {
            let mut last = *from;
            for i in first..node::len(buf)? {
                let k = node::leaf_key(buf, i)?;
                // Validation keeps a leaf's keys strictly increasing; checked again here because
                // a caller resumes after the last key, and a key that went backwards would loop
                // it.
                if k < last || (i > first && k == last) {
                    return Err(Error::Corrupt(FormatError::BadField("key order")));
                }
                if !f(&k, node::leaf_value(buf, i)?)? {
                    return Ok(None);
                }
                last = k;
            }
            Ok(node::key_after(&last))
        })?;
        Ok(resume.flatten())
    }

    /// Calls `f` with the leaf holding the first item with a key of at least `from` and that
    /// item's index; `None` if there is no such item.
    fn at_leaf<R>(
        &mut self,
        root: u64,
        from: &Key,
        f: impl FnOnce(&[u8], usize) -> Result<R, Error>,
    ) -> Result<Option<R>, Error> {
        if root == 0 {
            return Ok(None);
        }
        let mut f = Some(f);
        let mut right = None;
        let got = self.descend(root, from, Some(&mut right), None, |buf| {
            let i = match node::search(buf, from)? {
                Ok(i) | Err(i) => i,
            };
            if i < node::len(buf)? {
                let f = f.take().ok_or(Error::Invalid)?;
                return f(buf, i).map(Some);
            }
            Ok(None)
        })?;
        if got.is_some() {
            return Ok(got);
        }
        // Past this leaf: the leftmost item of the next subtree, if any.
        let Some((block, level)) = right else {
            return Ok(None);
        };
        let f = f.take().ok_or(Error::Invalid)?;
        self.descend_edge(block, level, true, |buf| {
            if node::len(buf)? == 0 {
                return Err(Error::Corrupt(FormatError::BadField("empty leaf")));
            }
            // Separators of a damaged tree can lead to a subtree whose keys are not above
            // `from`; returning them would make callers that step from key to key loop.
            if node::leaf_key(buf, 0)? < *from {
                return Err(Error::Corrupt(FormatError::BadField("key order")));
            }
            f(buf, 0)
        })
        .map(Some)
    }

    /// The last item with a key of at most `at` (a floor lookup), passed to `f` with its key.
    pub fn prev<R>(
        &mut self,
        root: u64,
        at: &Key,
        f: impl FnOnce(&Key, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        if root == 0 {
            return Ok(None);
        }
        let mut f = Some(f);
        let mut left = None;
        let got = self.descend(root, at, None, Some(&mut left), |buf| {
            let i = match node::search(buf, at)? {
                Ok(i) => Some(i),
                Err(i) => i.checked_sub(1),
            };
            let Some(i) = i else { return Ok(None) };
            let f = f.take().ok_or(Error::Invalid)?;
            let k = node::leaf_key(buf, i)?;
            Ok(Some(f(&k, node::leaf_value(buf, i)?)))
        })?;
        if got.is_some() {
            return Ok(got);
        }
        // Before this leaf: the rightmost item of the previous subtree, if any.
        let Some((block, level)) = left else {
            return Ok(None);
        };
        let f = f.take().ok_or(Error::Invalid)?;
        self.descend_edge(block, level, false, |buf| {
            let last = node::len(buf)?
                .checked_sub(1)
                .ok_or(Error::Corrupt(FormatError::BadField("empty leaf")))?;
            let k = node::leaf_key(buf, last)?;
            // As in `next`: damaged separators must not hand back a key past `at`, which
            // would make callers that step backwards loop.
            if k > *at {
                return Err(Error::Corrupt(FormatError::BadField("key order")));
            }
            Ok(f(&k, node::leaf_value(buf, last)?))
        })
        .map(Some)
    }

    /// Whether the leaf that holds (or would hold) `key` is shared with another tree: whether
    /// any node on the path from the root to it has a reference count above 1. When it is not,
    /// the counts of the blocks its items reference are exact for this tree (no count is
    /// waiting to be pushed down), so a block with count 1 belongs to this tree alone.
    pub fn path_shared(&mut self, root: u64, key: &Key) -> Result<bool, Error> {
        if root == 0 {
            return Ok(false);
        }
        let mut block = root;
        let mut level = None;
        loop {
            if self.alloc.refcount(self.store, block)? > 1 {
                return Ok(true);
            }
            let down = self.visit(block, level, |buf, hdr| {
                if hdr.is_leaf() {
                    return Ok(None);
                }
                let i = node::child_index(buf, key)?;
                Ok(Some((node::internal_child(buf, i)?, hdr.child_level()?)))
            })?;
            let Some((child, l)) = down else {
                return Ok(false);
            };
            block = child;
            level = Some(l);
        }
    }

    /// Inserts or replaces `key`. Returns the new root.
    pub fn insert(&mut self, root: u64, key: &Key, value: &[u8]) -> Result<u64, Error> {
        self.insert_replacing(root, key, value)
            .map(|(root, _)| root)
    }

    /// [`Self::insert`], also telling whether an item with the key was there (and replaced):
    /// for a caller that needs only that, it saves a lookup.
    pub fn insert_replacing(
        &mut self,
        root: u64,
        key: &Key,
        value: &[u8],
    ) -> Result<(u64, bool), Error> {
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::Invalid);
        }
        if root == 0 {
            let (blocknr, mut buf) = self.new_node(0)?;
            node::leaf_insert(buf.as_mut(), 0, key, value)?;
            self.write(blocknr, &mut buf)?;
            return Ok((blocknr, false));
        }
        let mut replaced = false;
        let root = self.insert_grown(root, key, value, &mut replaced)?;
        Ok((root, replaced))
    }

    fn insert_grown(
        &mut self,
        root: u64,
        key: &Key,
        value: &[u8],
        replaced: &mut bool,
    ) -> Result<u64, Error> {
        match self.insert_rec(root, None, key, value, replaced)? {
            Grown::One(block) => Ok(block),
            Grown::Two(left, right_key, right) => {
                let level = self.visit(left, None, |_, hdr| Ok(hdr.level))?;
                if level >= MAX_LEVEL {
                    return Err(Error::NoSpace);
                }
                // Below `MAX_LEVEL`: checked above.
                let (blocknr, mut buf) = self.new_node(level.saturating_add(1))?;
                let left_key = self.first_key(left)?;
                node::internal_insert(buf.as_mut(), 0, &left_key, left)?;
                node::internal_insert(buf.as_mut(), 1, &right_key, right)?;
                self.write(blocknr, &mut buf)?;
                Ok(blocknr)
            }
        }
    }

    fn first_key(&mut self, block: u64) -> Result<Key, Error> {
        self.visit(block, None, |buf, _| {
            node::first_key(buf)?.ok_or(Error::Corrupt(FormatError::BadField("empty node")))
        })
    }

    fn insert_rec(
        &mut self,
        block: u64,
        level: Option<u8>,
        key: &Key,
        value: &[u8],
        replaced: &mut bool,
    ) -> Result<Grown, Error> {
        if let Some((hdr, i, child)) = self.owned_interior(block, level, key)? {
            // Most inserts of a running transaction change only a leaf: this node is copied
            // out and rewritten only if its child moved or split.
            let grown = self.insert_rec(child, Some(hdr.child_level()?), key, value, replaced)?;
            if matches!(grown, Grown::One(nb) if nb == child) {
                return Ok(Grown::One(block));
            }
            let (buf, _) = self.read(block, level)?;
            return self.insert_into_interior(block, buf, &hdr, i, grown);
        }
        if self.owned_unsealed_leaf(block, level)? {
            if let Some(r) = self.insert_in_place(block, key, value)? {
                *replaced |= r;
                return Ok(Grown::One(block));
            }
        }
        let (mut buf, hdr) = self.read(block, level)?;
        if hdr.is_leaf() {
            let me = self.cow(block, &hdr, &mut buf)?;
            let pos = match node::search(buf.as_ref(), key)? {
                Ok(i) => {
                    *replaced = true;
                    if node::leaf_value(buf.as_ref(), i)?.len() == value.len() {
                        node::leaf_set_value(buf.as_mut(), i, value)?;
                        self.write(me, &mut buf)?;
                        return Ok(Grown::One(me));
                    }
                    node::leaf_remove(buf.as_mut(), i)?;
                    i
                }
                Err(i) => i,
            };
            if node::leaf_fits(buf.as_ref(), value.len())? {
                node::leaf_insert(buf.as_mut(), pos, key, value)?;
                self.write(me, &mut buf)?;
                return Ok(Grown::One(me));
            }
            // Split: move the upper half (by bytes) to a new right leaf, then insert.
            let (right, mut rbuf) = self.new_node(0)?;
            let n = node::len(buf.as_ref())?;
            let half = split_point_leaf(buf.as_ref(), n)?;
            node::leaf_move_tail(buf.as_mut(), half, rbuf.as_mut())?;
            if pos <= half && (pos < half || node::leaf_fits(buf.as_ref(), value.len())?) {
                node::leaf_insert(buf.as_mut(), pos, key, value)?;
            } else {
                // `pos >= half` on this side of the split.
                node::leaf_insert(rbuf.as_mut(), pos.saturating_sub(half), key, value)?;
            }
            let right_key = node::leaf_key(rbuf.as_ref(), 0)?;
            self.write(me, &mut buf)?;
            self.write(right, &mut rbuf)?;
            return Ok(Grown::Two(me, right_key, right));
        }

        // Copy the parent first: if it is shared, that pushes the sharing down to its children,
        // so the child's own copy-on-write sees the right reference count.
        let me = self.cow(block, &hdr, &mut buf)?;
        let i = node::child_index(buf.as_ref(), key)?;
        let child = node::internal_child(buf.as_ref(), i)?;
        let grown = self.insert_rec(child, Some(hdr.child_level()?), key, value, replaced)?;
        if node::internal_key(buf.as_ref(), i)? > *key {
            // Only possible for child 0: keep the separator a lower bound.
            node::internal_set_key(buf.as_mut(), i, key)?;
        }
        self.insert_into_interior(me, buf, &hdr, i, grown)
    }

    /// Whether `block` (at `level`) is a leaf this transaction may change in place (it wrote it,
    /// and no other tree shares it) and the store holds unsealed ([`BlockStore::update_node`]).
    fn owned_unsealed_leaf(&mut self, block: u64, level: Option<u8>) -> Result<bool, Error> {
        if level.is_some_and(|l| l != 0) {
            return Ok(false);
        }
        let Some(hdr) = self.store.update_node(block, |buf| node::header(buf)) else {
            return Ok(false);
        };
        let hdr = hdr?;
        if !hdr.is_leaf()
            || hdr.blocknr != block
            || hdr.generation != self.generation
            || hdr.fsid != self.fsid
            || hdr.tree != self.tree
        {
            return Ok(false);
        }
        Ok(self.alloc.refcount(self.store, block)? == 1)
    }

    /// Inserts or replaces `key` in leaf `block` in place (see [`Self::owned_unsealed_leaf`])
    /// if the item fits: `Some(replaced)`. `None` if it needs a split, or the store no longer
    /// holds the node: nothing changed.
    fn insert_in_place(
        &mut self,
        block: u64,
        key: &Key,
        value: &[u8],
    ) -> Result<Option<bool>, Error> {
        let r = self
            .store
            .update_node(block, |buf| match node::search(buf, key)? {
                Ok(i) => {
                    let old = node::leaf_value(buf, i)?.len();
                    if old == value.len() {
                        node::leaf_set_value(buf, i, value)?;
                        return Ok(Some(true));
                    }
                    // Without item `i`, the leaf has `free + header + old` bytes free.
                    if node::leaf_free(buf)?.saturating_add(old) < value.len() {
                        return Ok(None);
                    }
                    node::leaf_remove(buf, i)?;
                    node::leaf_insert(buf, i, key, value)?;
                    Ok(Some(true))
                }
                Err(i) => {
                    if !node::leaf_fits(buf, value.len())? {
                        return Ok(None);
                    }
                    node::leaf_insert(buf, i, key, value)?;
                    Ok(Some(false))
                }
            });
        r.unwrap_or(Ok(None))
    }

    /// Interior node `block`, if this transaction may change it in place (it wrote it, and no
    /// other tree shares it) and its separator for `key` needs no change: its header, and the
    /// index and block of the child towards `key`. Looks without copying the node.
    fn owned_interior(
        &mut self,
        block: u64,
        level: Option<u8>,
        key: &Key,
    ) -> Result<Option<(Header, usize, u64)>, Error> {
        if level == Some(0) {
            return Ok(None);
        }
        let generation = self.generation;
        let probe = self.visit(block, level, |buf, hdr| {
            if hdr.is_leaf() || hdr.generation != generation {
                return Ok(None);
            }
            let i = node::child_index(buf, key)?;
            if node::internal_key(buf, i)? > *key {
                return Ok(None);
            }
            Ok(Some((*hdr, i, node::internal_child(buf, i)?)))
        })?;
        match probe {
            Some(p) if self.alloc.refcount(self.store, block)? == 1 => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    /// Puts the outcome `grown` of an insert into child `i` of interior node `buf`, which
    /// this transaction may write as block `me`.
    fn insert_into_interior(
        &mut self,
        me: u64,
        mut buf: S::Buf,
        hdr: &Header,
        i: usize,
        grown: Grown,
    ) -> Result<Grown, Error> {
        match grown {
            Grown::One(nb) => {
                node::internal_set_child(buf.as_mut(), i, nb)?;
                self.write(me, &mut buf)?;
                Ok(Grown::One(me))
            }
            Grown::Two(l, rk, r) => {
                node::internal_set_child(buf.as_mut(), i, l)?;
                // Child `i` exists: `i + 1` is at most the item count.
                let next = i.saturating_add(1);
                if node::len(buf.as_ref())? < MAX_INTERNAL_ITEMS {
                    node::internal_insert(buf.as_mut(), next, &rk, r)?;
                    self.write(me, &mut buf)?;
                    return Ok(Grown::One(me));
                }
                let (right, mut rbuf) = self.new_node(hdr.level)?;
                let half = MAX_INTERNAL_ITEMS / 2;
                node::internal_move_tail(buf.as_mut(), half, rbuf.as_mut())?;
                if i < half {
                    node::internal_insert(buf.as_mut(), next, &rk, r)?;
                } else {
                    node::internal_insert(rbuf.as_mut(), next.saturating_sub(half), &rk, r)?;
                }
                let right_key = node::internal_key(rbuf.as_ref(), 0)?;
                self.write(me, &mut buf)?;
                self.write(right, &mut rbuf)?;
                Ok(Grown::Two(me, right_key, right))
            }
        }
    }

    /// Removes `key`. Returns the new root (0 when the tree became empty) and whether the key
    /// was present. An absent key changes nothing.
    pub fn remove(&mut self, root: u64, key: &Key) -> Result<(u64, bool), Error> {
        if root == 0 {
            return Ok((0, false));
        }
        // An absent key must change nothing, and the removal copies parents before children.
        if self.lookup(root, key, |_| ())?.is_none() {
            return Ok((root, false));
        }
        self.remove_present(root, key).map(|r| (r, true))
    }

    /// Removes `key`, which the caller has just found under `root` (a key that is not there
    /// is reported as corruption, after the path to it was copied). Returns the new root.
    pub fn remove_present(&mut self, root: u64, key: &Key) -> Result<u64, Error> {
        if root == 0 {
            return Err(Error::Corrupt(FormatError::BadField("key vanished")));
        }
        let shrunk = self.remove_rec(root, None, key)?;
        // Collapse a root that has become trivial.
        if shrunk.leaf && shrunk.len == 0 {
            self.alloc.dec_ref(self.store, shrunk.block, 1)?;
            return Ok(0);
        }
        if !shrunk.leaf && shrunk.len == 1 {
            let child = self.visit(shrunk.block, None, |buf, _| {
                Ok(node::internal_child(buf, 0)?)
            })?;
            self.alloc.dec_ref(self.store, shrunk.block, 1)?;
            return Ok(child);
        }
        Ok(shrunk.block)
    }

    fn remove_rec(&mut self, block: u64, level: Option<u8>, key: &Key) -> Result<Shrunk, Error> {
        if let Some((hdr, i, child)) = self.owned_interior(block, level, key)? {
            // As in `insert_rec`: copied out and rewritten only if the child changed.
            let shrunk = self.remove_rec(child, Some(hdr.child_level()?), key)?;
            let len = usize::from(hdr.nitems);
            if shrunk.block == child && !(shrunk.underfull && len > 1) {
                return Ok(Shrunk {
                    block,
                    underfull: len < MAX_INTERNAL_ITEMS / 4,
                    len,
                    leaf: false,
                });
            }
            let (buf, _) = self.read(block, level)?;
            return self.remove_from_interior(block, buf, i, shrunk, hdr.child_level()?);
        }
        if self.owned_unsealed_leaf(block, level)? {
            let r = self.store.update_node(block, |buf| {
                let Ok(i) = node::search(buf, key)? else {
                    return Err(Error::Corrupt(FormatError::BadField("key vanished")));
                };
                node::leaf_remove(buf, i)?;
                Ok((node::leaf_used(buf)? < NODE_SIZE / 4, node::len(buf)?))
            });
            if let Some(r) = r {
                let (underfull, len) = r?;
                return Ok(Shrunk {
                    block,
                    underfull,
                    len,
                    leaf: true,
                });
            }
        }
        let (mut buf, hdr) = self.read(block, level)?;
        let me = self.cow(block, &hdr, &mut buf)?;
        if hdr.is_leaf() {
            let Ok(i) = node::search(buf.as_ref(), key)? else {
                // `remove` looked the key up first: the tree changed under us.
                return Err(Error::Corrupt(FormatError::BadField("key vanished")));
            };
            node::leaf_remove(buf.as_mut(), i)?;
            self.write(me, &mut buf)?;
            let underfull = node::leaf_used(buf.as_ref())? < NODE_SIZE / 4;
            return Ok(Shrunk {
                block: me,
                underfull,
                len: node::len(buf.as_ref())?,
                leaf: true,
            });
        }
        let i = node::child_index(buf.as_ref(), key)?;
        let child = node::internal_child(buf.as_ref(), i)?;
        let child_level = hdr.child_level()?;
        let shrunk = self.remove_rec(child, Some(child_level), key)?;
        self.remove_from_interior(me, buf, i, shrunk, child_level)
    }

    /// Puts the outcome `shrunk` of a removal from child `i` (at `child_level`) into interior
    /// node `buf`, which this transaction may write as block `me`, merging or evening out an
    /// underfull child with a sibling.
    fn remove_from_interior(
        &mut self,
        me: u64,
        mut buf: S::Buf,
        i: usize,
        shrunk: Shrunk,
        child_level: u8,
    ) -> Result<Shrunk, Error> {
        let rebalance = shrunk.underfull && node::len(buf.as_ref())? > 1;
        node::internal_set_child(buf.as_mut(), i, shrunk.block)?;
        if rebalance {
            // Rebalance with the right sibling, or the left one for the last child (which is
            // not child 0: the node has two children at least).
            let left = if i.saturating_add(1) < node::len(buf.as_ref())? {
                i
            } else {
                i.checked_sub(1).ok_or(Error::Invalid)?
            };
            self.rebalance(&mut buf, left, child_level)?;
        }
        self.write(me, &mut buf)?;
        let len = node::len(buf.as_ref())?;
        Ok(Shrunk {
            block: me,
            underfull: len < MAX_INTERNAL_ITEMS / 4,
            len,
            leaf: false,
        })
    }

    /// Merges children `left` and `left + 1` of `parent`, or evens them out if both do not fit
    /// in one node, updating the parent's entries.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "item counts and byte sizes of two 4 KiB nodes; left + 1 is a child index of \
                  the parent; each difference is taken on the side where it is positive"
    )]
    fn rebalance(&mut self, parent: &mut S::Buf, left: usize, level: u8) -> Result<(), Error> {
        let lblock = node::internal_child(parent.as_ref(), left)?;
        let rblock = node::internal_child(parent.as_ref(), left + 1)?;
        let (mut lbuf, lhdr) = self.read(lblock, Some(level))?;
        let (mut rbuf, rhdr) = self.read(rblock, Some(level))?;
        let lb = self.cow(lblock, &lhdr, &mut lbuf)?;
        let rb = self.cow(rblock, &rhdr, &mut rbuf)?;
        let ln = node::len(lbuf.as_ref())?;
        let rn = node::len(rbuf.as_ref())?;
        let merge = if level == 0 {
            node::leaf_used(lbuf.as_ref())? + node::leaf_used(rbuf.as_ref())?
                <= NODE_SIZE - node::HEADER_SIZE
        } else {
            ln + rn <= MAX_INTERNAL_ITEMS
        };
        if merge {
            if level == 0 {
                node::leaf_move_head(rbuf.as_mut(), rn, lbuf.as_mut())?;
            } else {
                node::internal_move_head(rbuf.as_mut(), rn, lbuf.as_mut())?;
            }
            self.write(lb, &mut lbuf)?;
            self.alloc.dec_ref(self.store, rb, 1)?;
            node::internal_set_child(parent.as_mut(), left, lb)?;
            node::internal_remove(parent.as_mut(), left + 1)?;
            return Ok(());
        }
        // Even out: move items from the fuller side until the sizes are balanced.
        if level == 0 {
            let (lu, ru) = (
                node::leaf_used(lbuf.as_ref())?,
                node::leaf_used(rbuf.as_ref())?,
            );
            if lu < ru {
                let count = leaf_prefix_for(rbuf.as_ref(), (ru - lu) / 2)?;
                node::leaf_move_head(rbuf.as_mut(), count, lbuf.as_mut())?;
            } else {
                let from = split_point_leaf(lbuf.as_ref(), ln)?;
                node::leaf_move_tail(lbuf.as_mut(), from, rbuf.as_mut())?;
            }
        } else if ln < rn {
            node::internal_move_head(rbuf.as_mut(), (rn - ln) / 2, lbuf.as_mut())?;
        } else {
            node::internal_move_tail(lbuf.as_mut(), ln - (ln - rn) / 2, rbuf.as_mut())?;
        }
        self.write(lb, &mut lbuf)?;
        self.write(rb, &mut rbuf)?;
        let rkey = node::first_key(rbuf.as_ref())?
            .ok_or(Error::Corrupt(FormatError::BadField("empty node")))?;
        node::internal_set_child(parent.as_mut(), left, lb)?;
        node::internal_set_child(parent.as_mut(), left + 1, rb)?;
        node::internal_set_key(parent.as_mut(), left + 1, &rkey)?;
        Ok(())
    }
}

/// One difference between two trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change<'a> {
    /// The item's key.
    pub key: Key,
    /// Its value in the old tree, if there.
    pub old: Option<&'a [u8]>,
    /// Its value in the new tree, if there.
    pub new: Option<&'a [u8]>,
}

/// Calls `f` for each item whose value differs between two leaves, within `[lo, hi)`.
fn diff_leaves(
    a: Option<&[u8]>,
    b: Option<&[u8]>,
    lo: &Key,
    hi: Option<&Key>,
    f: &mut dyn FnMut(Change<'_>) -> Result<bool, Error>,
) -> Result<bool, Error> {
    let na = a.map_or(Ok(0), node::len)?;
    let nb = b.map_or(Ok(0), node::len)?;
    let in_range = |k: &Key| k >= lo && hi.is_none_or(|h| k < h);
    // Item indexes: each moves on only past an item it found, so adding 1 never saturates.
    let (mut i, mut j) = (0usize, 0usize);
    loop {
        let ka = match a {
            Some(a) if i < na => Some(node::leaf_key(a, i)?),
            _ => None,
        };
        let kb = match b {
            Some(b) if j < nb => Some(node::leaf_key(b, j)?),
            _ => None,
        };
        match (ka, kb) {
            (None, None) => return Ok(true),
            (Some(x), Some(y)) if x == y => {
                let (va, vb) = (
                    a.map(|a| node::leaf_value(a, i)).transpose()?,
                    b.map(|b| node::leaf_value(b, j)).transpose()?,
                );
                if va != vb
                    && in_range(&x)
                    && !f(Change {
                        key: x,
                        old: va,
                        new: vb,
                    })?
                {
                    return Ok(false);
                }
                i = i.saturating_add(1);
                j = j.saturating_add(1);
            }
            (Some(x), y) if y.is_none_or(|y| x < y) => {
                if in_range(&x) {
                    let old = a.map(|a| node::leaf_value(a, i)).transpose()?;
                    if !f(Change {
                        key: x,
                        old,
                        new: None,
                    })? {
                        return Ok(false);
                    }
                }
                i = i.saturating_add(1);
            }
            (_, Some(y)) => {
                if in_range(&y) {
                    let new = b.map(|b| node::leaf_value(b, j)).transpose()?;
                    if !f(Change {
                        key: y,
                        old: None,
                        new,
                    })? {
                        return Ok(false);
                    }
                }
                j = j.saturating_add(1);
            }
            (Some(_), None) => return unreachable_none(),
        }
    }
}

/// Never reached: the guard above takes every `(Some, None)` pair. An error rather than a panic.
fn unreachable_none() -> Result<bool, Error> {
    Err(Error::Invalid)
}

/// Range `[lo, hi)` of child `i` of internal node `buf`, clipped to `[lo, hi)`.
fn child_range(
    buf: &[u8],
    i: usize,
    lo: &Key,
    hi: Option<Key>,
) -> Result<(Key, Option<Key>), Error> {
    let n = node::len(buf)?;
    let start = if i == 0 {
        *lo
    } else {
        node::internal_key(buf, i)?.max(*lo)
    };
    let end = if let Some(j) = i.checked_add(1).filter(|&j| j < n) {
        let k = node::internal_key(buf, j)?;
        Some(hi.map_or(k, |h| h.min(k)))
    } else {
        hi
    };
    Ok((start, end))
}

impl<S: BlockStore, A: Allocator<S>> Txn<'_, S, A> {
    /// Calls `f` for every item that differs between the trees under `old` and `new`: added,
    /// removed, or with a different value, in key order. Subtrees the two trees share (the same
    /// block) are skipped without being read, so after cloning a tree and changing it, the cost
    /// follows the number of changed items, not the size of the tree. Only keys from `from` on
    /// are compared; `f` returns `Ok(false)` to stop early (then `diff` returns `Ok(false)`).
    pub fn diff(
        &mut self,
        old: u64,
        new: u64,
        from: Key,
        f: &mut dyn FnMut(Change<'_>) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        self.diff_rec(old, None, new, None, from, None, f)
    }

    #[allow(clippy::too_many_arguments)]
    fn diff_rec(
        &mut self,
        a: u64,
        alevel: Option<u8>,
        b: u64,
        blevel: Option<u8>,
        lo: Key,
        hi: Option<Key>,
        f: &mut dyn FnMut(Change<'_>) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        if a == b {
            return Ok(true);
        }
        let abuf = if a == 0 {
            None
        } else {
            Some(self.read(a, alevel)?)
        };
        let bbuf = if b == 0 {
            None
        } else {
            Some(self.read(b, blevel)?)
        };
        let la = abuf.as_ref().map_or(0, |(_, h)| h.level);
        let lb = bbuf.as_ref().map_or(0, |(_, h)| h.level);
        match (&abuf, &bbuf) {
            (Some((abuf, _)), _) if la > lb => {
                // Descend the taller side until the levels meet.
                for i in 0..node::len(abuf.as_ref())? {
                    let (s, e) = child_range(abuf.as_ref(), i, &lo, hi)?;
                    if e.is_some_and(|e| e <= s) {
                        continue;
                    }
                    let child = node::internal_child(abuf.as_ref(), i)?;
                    // `la > lb >= 0`: no underflow.
                    if !self.diff_rec(child, Some(la.saturating_sub(1)), b, blevel, s, e, f)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            (_, Some((bbuf, _))) if lb > la => {
                for j in 0..node::len(bbuf.as_ref())? {
                    let (s, e) = child_range(bbuf.as_ref(), j, &lo, hi)?;
                    if e.is_some_and(|e| e <= s) {
                        continue;
                    }
                    let child = node::internal_child(bbuf.as_ref(), j)?;
                    if !self.diff_rec(a, alevel, child, Some(lb.saturating_sub(1)), s, e, f)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            (Some((abuf, _)), Some((bbuf, _))) if la > 0 => {
                // Same level: walk the union of both nodes' child boundaries; each segment lies
                // in exactly one child on each side.
                let (na, nb) = (node::len(abuf.as_ref())?, node::len(bbuf.as_ref())?);
                let (mut i, mut j) = (0usize, 0usize);
                let mut start = lo;
                while i < na && j < nb {
                    let (_, ea) = child_range(abuf.as_ref(), i, &lo, hi)?;
                    let (_, eb) = child_range(bbuf.as_ref(), j, &lo, hi)?;
                    let end = match (ea, eb) {
                        (Some(x), Some(y)) => Some(x.min(y)),
                        (x, None) => x,
                        (None, y) => y,
                    };
                    if end.is_none_or(|e| e > start) {
                        let ca = node::internal_child(abuf.as_ref(), i)?;
                        let cb = node::internal_child(bbuf.as_ref(), j)?;
                        // Both at level `la > 0`.
                        let l = Some(la.saturating_sub(1));
                        if !self.diff_rec(ca, l, cb, l, start, end, f)? {
                            return Ok(false);
                        }
                    }
                    let Some(end) = end else { break };
                    // A child that ends below `lo` (a diff resumed from a cursor) leaves `start`
                    // where it is: the next segment must not begin below the cursor.
                    start = start.max(end);
                    // Both below their node's item count.
                    if ea == Some(end) {
                        i = i.saturating_add(1);
                    }
                    if eb == Some(end) {
                        j = j.saturating_add(1);
                    }
                }
                Ok(true)
            }
            _ => diff_leaves(
                abuf.as_ref().map(|(x, _)| x.as_ref()),
                bbuf.as_ref().map(|(x, _)| x.as_ref()),
                &lo,
                hi.as_ref(),
                f,
            ),
        }
    }

    /// Checks the whole tree under `root`: every node valid, levels decreasing by one, keys
    /// within the bounds their parents give, no empty non-root node. Calls `visit` for every node.
    /// Returns the number of items.
    pub fn verify(&mut self, root: u64, visit: &mut dyn FnMut(u64, &Header)) -> Result<u64, Error> {
        if root == 0 {
            return Ok(0);
        }
        self.verify_rec(root, None, None, None, true, visit)
    }

    fn verify_rec(
        &mut self,
        block: u64,
        level: Option<u8>,
        low: Option<Key>,
        high: Option<Key>,
        is_root: bool,
        visit: &mut dyn FnMut(u64, &Header),
    ) -> Result<u64, Error> {
        let (buf, hdr) = self.read(block, level)?;
        visit(block, &hdr);
        let n = node::len(buf.as_ref())?;
        if n == 0 && !is_root {
            return Err(Error::Corrupt(FormatError::BadField("empty node")));
        }
        let bad = Error::Corrupt(FormatError::BadField("key outside parent bounds"));
        if let Some(first) = node::first_key(buf.as_ref())? {
            if low.is_some_and(|l| first < l) {
                return Err(bad);
            }
        }
        if hdr.is_leaf() {
            if n > 0
                && high.is_some_and(|h| {
                    node::leaf_key(buf.as_ref(), n.saturating_sub(1)).is_ok_and(|k| k >= h)
                })
            {
                return Err(bad);
            }
            // CAST: item counts are at most a few hundred.
            return Ok(n as u64);
        }
        let mut total = 0u64;
        for i in 0..n {
            let lo = node::internal_key(buf.as_ref(), i)?;
            let hi = match i.checked_add(1).filter(|&j| j < n) {
                Some(j) => Some(node::internal_key(buf.as_ref(), j)?),
                None => high,
            };
            let child = node::internal_child(buf.as_ref(), i)?;
            let sub =
                self.verify_rec(child, Some(hdr.child_level()?), Some(lo), hi, false, visit)?;
            // A damaged image can point many parents at one subtree: never overflow on it.
            total = total
                .checked_add(sub)
                .ok_or(Error::Corrupt(FormatError::BadField("item count")))?;
        }
        Ok(total)
    }
}

/// Index from which the upper half of a leaf's bytes starts (at least one item stays on each side).
#[expect(
    clippy::arithmetic_side_effects,
    reason = "sums of item sizes of one 4 KiB leaf, and i + 1 with i below its item count"
)]
fn split_point_leaf(buf: &[u8], n: usize) -> Result<usize, Error> {
    let total = node::leaf_used(buf)?;
    let mut acc = 0;
    for i in 0..n {
        acc += node::LEAF_ITEM_SIZE + node::leaf_value(buf, i)?.len();
        if acc >= total / 2 {
            return Ok((i + 1).clamp(1, n.saturating_sub(1).max(1)));
        }
    }
    Ok(n / 2)
}

/// Number of leading items of a leaf whose bytes add up to at least `bytes` (at least one).
#[expect(
    clippy::arithmetic_side_effects,
    reason = "sums of item sizes of one 4 KiB leaf, and i + 1 with i below its item count"
)]
fn leaf_prefix_for(buf: &[u8], bytes: usize) -> Result<usize, Error> {
    let n = node::len(buf)?;
    let mut acc = 0;
    for i in 0..n {
        acc += node::LEAF_ITEM_SIZE + node::leaf_value(buf, i)?.len();
        if acc >= bytes {
            return Ok((i + 1).min(n.saturating_sub(1)).max(1));
        }
    }
    Ok(1)
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;

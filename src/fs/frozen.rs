// SPDX-License-Identifier: GPL-2.0

//! Reads of frozen layers without the volume lock.
//!
//! A frozen layer's tree never changes: its freeze committed it (the layer ioctls freeze and
//! commit under one hold of the volume lock, so whoever sees a layer frozen sees it on the
//! medium), and copy-on-write never writes a committed node in place. Its blocks are freed only
//! after the layer is removed. So the block map of a regular file in a frozen layer (the image
//! files every container reads, directly or through a content inode) is read straight from the
//! device's page cache, every node validated as the volume validates it, by any number of
//! readers at once and beside the volume lock's holders.
//!
//! What keeps the blocks alive is [`LayerLife`]: a reader counts itself in before it reads the
//! tree, and removing a layer marks it dead and waits for the readers in it to finish before
//! the tree goes to the reclaim queue. A reader that finds its layer dead goes the locked way,
//! which then answers for a layer that is gone.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::time::{delay::fsleep, Delta};

use crate::format::data::{FrozenTree, Map};
use crate::format::namespace::{DirEntry, Entry};
use crate::format::records::{mode, InodeRecord, SYMLINK_MAX};
use crate::format::tree::{BlockStore, Error as CoreError};
use crate::vfs::{BlockDevice, NoFsScope, SuperBlock};

use super::commit::VolGuard;
use super::errno::errno;
use super::store::{slot_index, BufPool, KBlock, VERIFIED_SLOTS, VERIFIED_SLOT_BITS};
use super::Lcfs;

/// Whether a frozen layer's tree may be read without the lock, and how many read it now.
pub(crate) struct LayerLife {
    layer: u64,
    readers: AtomicUsize,
    /// Being removed: no new reader may start.
    dead: AtomicBool,
}

impl LayerLife {
    fn new(layer: u64) -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self {
                layer,
                readers: AtomicUsize::new(0),
                dead: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?)
    }

    /// Counts a reader in, unless the layer is being removed.
    ///
    /// The reader adds itself before it looks at `dead` and the remover sets `dead` before it
    /// looks at the count (both sequentially consistent), so either the reader sees `dead` or
    /// the remover sees the reader and waits for it.
    fn enter(&self) -> Option<Reading<'_>> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        if self.dead.load(Ordering::SeqCst) {
            self.readers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Reading(self))
    }
}

/// A reader counted in a [`LayerLife`]: while it lives the layer's blocks stay allocated.
struct Reading<'a>(&'a LayerLife);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An inode's way into its frozen layer's tree, taken when the inode was read in (and handed on
/// to the inodes found through it).
#[derive(Clone)]
pub(crate) struct FrozenRef {
    tree: FrozenTree,
    life: Arc<LayerLife>,
}

/// The mount's lock-free readers: buffers, and the frozen layers that have readers (one
/// [`LayerLife`] each, shared by their inodes). They read the device through `MountInfo::io`.
#[pin_data]
pub(crate) struct FrozenLayers {
    total_blocks: u64,
    pool: Arc<BufPool>,
    verified: Verified,
    /// Lock order: after the volume lock (inodes are read in under it); never held across I/O.
    #[pin]
    lives: Mutex<KVec<Arc<LayerLife>>>,
}

impl FrozenLayers {
    pub(crate) fn new(total_blocks: u64) -> Result<impl PinInit<Self, Error>> {
        let pool = BufPool::new()?;
        let verified = Verified::new()?;
        Ok(try_pin_init!(Self {
            total_blocks,
            pool,
            verified,
            lives <- new_mutex!(KVec::new(), "lcfs_frozen_lives"),
        }? Error))
    }

    /// The life of `layer`, made on first use; `None` while the layer is being removed.
    fn life(&self, layer: u64) -> Result<Option<Arc<LayerLife>>> {
        let mut lives = self.lives.lock();
        if let Some(l) = lives.iter().find(|l| l.layer == layer) {
            return Ok((!l.dead.load(Ordering::SeqCst)).then(|| l.clone()));
        }
        let l = LayerLife::new(layer)?;
        lives.push(l.clone(), GFP_KERNEL)?;
        Ok(Some(l))
    }
}

/// The way into `layer`'s tree for an inode being read in, if the layer is frozen and not being
/// removed. The caller holds the volume lock, which orders this after any freeze's commit.
pub(super) fn frozen_ref(
    sb: &SuperBlock<Lcfs>,
    vol: &mut VolGuard<'_>,
    layer: u64,
) -> Result<Option<FrozenRef>> {
    let Some(tree) = vol.frozen_tree(layer).map_err(errno)? else {
        return Ok(None);
    };
    Ok(sb
        .info()
        .frozen
        .life(layer)?
        .map(|life| FrozenRef { tree, life }))
}

/// Runs `f` on `r`'s tree without the volume lock; `None` if the layer is being removed (the
/// caller takes the locked way). `what` names the read in the report of a damaged tree.
fn read<R>(
    sb: &SuperBlock<Lcfs>,
    r: &FrozenRef,
    what: &str,
    id: u64,
    f: impl FnOnce(&FrozenTree, &mut FrozenStore<'_>) -> core::result::Result<R, CoreError>,
) -> Option<Result<R>> {
    let _reading = r.life.enter()?;
    // As under the volume lock: no allocation here may recurse into this filesystem.
    let _nofs = NoFsScope::enter();
    let frozen = &sb.info().frozen;
    let mut store = FrozenStore {
        bdev: &sb.info().io,
        total_blocks: frozen.total_blocks,
        pool: &frozen.pool,
        verified: &frozen.verified,
    };
    Some(f(&r.tree, &mut store).map_err(|e| {
        if matches!(e, CoreError::Corrupt(_)) {
            pr_err!(
                "{}: damaged {} {} of frozen layer {}: {:?}\n",
                sb.id(),
                what,
                id,
                r.life.layer,
                e
            );
        }
        errno(e)
    }))
}

/// [`crate::format::volume::Volume::map_read`] of file `ino` through `r`, without the volume
/// lock; `None` if the layer is being removed (the caller takes the locked way).
pub(super) fn map_read(
    sb: &SuperBlock<Lcfs>,
    r: &FrozenRef,
    ino: u64,
    first: u64,
    count: u64,
) -> Option<Result<Map>> {
    read(sb, r, "block map of inode", ino, |t, s| {
        t.map_read(s, ino, first, count)
    })
}

/// [`crate::format::volume::Volume::lookup_name`] in directory `dir` through `r`, without the
/// volume lock; `None` as for [`map_read`].
pub(super) fn lookup_name(
    sb: &SuperBlock<Lcfs>,
    r: &FrozenRef,
    dir: u64,
    name: &[u8],
) -> Option<Result<Option<Entry>>> {
    read(sb, r, "directory", dir, |t, s| t.lookup_name(s, dir, name))
}

/// [`crate::format::volume::Volume::readdir`] of directory `dir` through `r`, without the
/// volume lock; `None` as for [`map_read`] (then `f` was not called).
pub(super) fn readdir(
    sb: &SuperBlock<Lcfs>,
    r: &FrozenRef,
    dir: u64,
    from: u64,
    f: &mut dyn FnMut(&DirEntry<'_>) -> bool,
) -> Option<Result> {
    read(sb, r, "directory", dir, |t, s| t.readdir(s, dir, from, f))
}

/// The record of inode `ino` through `r` and, for a symlink, its target, without the volume
/// lock; `None` as for [`map_read`].
pub(super) fn inode(
    sb: &SuperBlock<Lcfs>,
    r: &FrozenRef,
    ino: u64,
) -> Option<Result<(InodeRecord, Option<KVec<u8>>)>> {
    read(sb, r, "inode", ino, |t, s| {
        let rec = t.inode(s, ino)?;
        if rec.mode & mode::S_IFMT != mode::S_IFLNK {
            return Ok((rec, None));
        }
        let mut buf =
            KVec::from_elem(0u8, SYMLINK_MAX, GFP_KERNEL).map_err(|_| CoreError::NoMemory)?;
        let n = t.read_inline(s, ino, &mut buf)?;
        buf.truncate(n);
        Ok((rec, Some(buf)))
    })
}

/// Marks `layer` dead for lock-free readers and waits until none reads it; dropped without
/// [`Retired::done`] (the removal failed), the layer is live again.
pub(super) fn retire(sb: &SuperBlock<Lcfs>, layer: u64) -> Result<Retired<'_>> {
    let f = &sb.info().frozen;
    let life = {
        let mut lives = f.lives.lock();
        match lives.iter().find(|l| l.layer == layer) {
            Some(l) => l.clone(),
            None => {
                // A dead entry keeps inodes read in from now on off the lock-free way.
                let l = LayerLife::new(layer)?;
                lives.push(l.clone(), GFP_KERNEL)?;
                l
            }
        }
    };
    life.dead.store(true, Ordering::SeqCst);
    // A reader holds its count for one lookup (a few node reads) or one batch of a listing.
    while life.readers.load(Ordering::SeqCst) != 0 {
        fsleep(Delta::from_millis(1));
    }
    Ok(Retired {
        frozen: f,
        life,
        done: false,
    })
}

/// A layer no lock-free reader reads; see [`retire`].
pub(super) struct Retired<'a> {
    frozen: &'a FrozenLayers,
    life: Arc<LayerLife>,
    done: bool,
}

impl Retired<'_> {
    /// The layer is gone: forget its entry (inodes that still hold it see it dead).
    pub(super) fn done(mut self) {
        self.done = true;
        let mut lives = self.frozen.lives.lock();
        if let Some(i) = lives.iter().position(|l| l.layer == self.life.layer) {
            // In range: just found.
            let _ = lives.remove(i);
        }
    }
}

impl Drop for Retired<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.life.dead.store(false, Ordering::SeqCst);
        }
    }
}

/// Blocks of frozen trees whose copy passed full validation, as the volume's own table (see
/// `store`): a direct-mapped table of `blocknr + 1`, shared by the lock-free readers, so a hot
/// node is checksummed once rather than at every visit (placement is still checked at every
/// visit). A block in it belongs to a frozen tree, which nobody rewrites while the layer lives;
/// a block freed and written again later holds a node the filesystem wrote, valid as well.
struct Verified(KVec<AtomicU64>);

impl Verified {
    fn new() -> Result<Self> {
        let mut slots = KVec::with_capacity(VERIFIED_SLOTS, GFP_KERNEL)?;
        for _ in 0..VERIFIED_SLOTS {
            slots.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        Ok(Self(slots))
    }

    fn slot(&self, blocknr: u64) -> Option<&AtomicU64> {
        self.0.get(slot_index(blocknr, VERIFIED_SLOT_BITS))
    }
}

/// Reads of committed blocks from the device's page cache, for [`FrozenTree::map_read`]: the
/// tree code validates every node it gets (in full unless [`Verified`] has it), and nothing is
/// ever written.
struct FrozenStore<'a> {
    bdev: &'a BlockDevice,
    total_blocks: u64,
    pool: &'a Arc<BufPool>,
    verified: &'a Verified,
}

impl BlockStore for FrozenStore<'_> {
    type Buf = KBlock;

    fn alloc_buf(&mut self) -> Result<KBlock, CoreError> {
        self.pool.get()
    }

    fn read(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        let d = buf.as_mut();
        let copied = self
            .bdev
            .read(blocknr, |b| {
                let same = d.len() == b.len();
                if same {
                    d.copy_from_slice(b);
                }
                same
            })
            .map_err(|_| CoreError::Io)?;
        copied.then_some(()).ok_or(CoreError::Io)
    }

    fn read_new(&mut self, blocknr: u64) -> Result<KBlock, CoreError> {
        let mut buf = self.pool.get_dirty()?;
        self.read(blocknr, &mut buf)?;
        Ok(buf)
    }

    fn write(&mut self, _blocknr: u64, _buf: &KBlock) -> Result<(), CoreError> {
        Err(CoreError::ReadOnly)
    }

    fn is_verified(&mut self, blocknr: u64) -> bool {
        // Relaxed: the tag only says the block's contents passed the checks once; the contents
        // themselves come from the page cache, not from whoever set the tag.
        self.verified
            .slot(blocknr)
            .is_some_and(|s| s.load(Ordering::Relaxed) == blocknr.wrapping_add(1))
    }

    fn set_verified(&mut self, blocknr: u64) {
        if let Some(s) = self.verified.slot(blocknr) {
            s.store(blocknr.wrapping_add(1), Ordering::Relaxed);
        }
    }

    fn total_blocks(&self) -> u64 {
        self.total_blocks
    }
}

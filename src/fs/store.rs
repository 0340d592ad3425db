// SPDX-License-Identifier: GPL-2.0

//! The format core's block-store interface over the mounted device.

use kernel::prelude::*;
use kernel::sync::{new_spinlock, Arc, SpinLock};

use crate::format::tree::{BlockStore, Error as CoreError};
use crate::format::volume::Device;
use crate::format::BLOCK_SIZE;
use crate::vfs::BlockDevice;

/// A block buffer from kmalloc: the core never keeps blocks on the (16 KiB) kernel stack. A
/// buffer from a [`BufPool`] goes back to it when dropped.
pub(crate) struct KBlock {
    data: KVec<u8>,
    pool: Option<Arc<BufPool>>,
}

impl KBlock {
    /// A zeroed block outside any pool; allocation failure is an error, not a panic.
    pub(crate) fn new() -> Result<Self, CoreError> {
        Ok(Self {
            data: zeroed_block()?,
            pool: None,
        })
    }
}

fn zeroed_block() -> Result<KVec<u8>, CoreError> {
    KVec::from_elem(0u8, BLOCK_SIZE as usize, GFP_KERNEL).map_err(|_| CoreError::NoMemory)
}

impl Drop for KBlock {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let data = core::mem::take(&mut self.data);
            // A full pool (more buffers live at once than it keeps) frees the buffer.
            let _ = pool.free.lock().push_within_capacity(data);
        }
    }
}

impl AsRef<[u8]> for KBlock {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for KBlock {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// Block buffers kept for reuse. Every metadata lookup reads a few nodes into buffers; on the
/// debug kernels the tests run, each kmalloc and kfree also records a stack trace (KASAN,
/// kmemleak), which made allocation the largest cost of a lookup.
#[pin_data]
pub(crate) struct BufPool {
    #[pin]
    free: SpinLock<KVec<KVec<u8>>>,
}

/// Buffers a pool keeps (more than the deepest operation holds at once).
const POOL_BUFFERS: usize = 32;

impl BufPool {
    pub(crate) fn new() -> Result<Arc<Self>> {
        let free = KVec::with_capacity(POOL_BUFFERS, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                free <- new_spinlock!(free, "lcfs_buf_pool"),
            }),
            GFP_KERNEL,
        )
    }

    /// A zeroed block, reused if one is free.
    fn get(self: &Arc<Self>) -> Result<KBlock, CoreError> {
        let mut b = self.get_dirty()?;
        b.data.fill(0);
        Ok(b)
    }

    /// A block with the contents a previous user left in it (zeros if newly allocated), for a
    /// caller that overwrites all of it.
    fn get_dirty(self: &Arc<Self>) -> Result<KBlock, CoreError> {
        let reused = self.free.lock().pop();
        let data = match reused {
            Some(d) => d,
            None => zeroed_block()?,
        };
        Ok(KBlock {
            data,
            pool: Some(self.clone()),
        })
    }
}

/// The mounted device, through its page cache. Writes land in the page cache and reach the disk
/// at the next flush, which is what the commit protocol orders.
pub(crate) struct BdevStore {
    pub(crate) bdev: BlockDevice,
    pub(crate) total_blocks: u64,
    /// Refuses writes (a read-only mount).
    pub(crate) read_only: bool,
    verified: VerifiedBlocks,
    pool: Arc<BufPool>,
}

impl BdevStore {
    pub(crate) fn new(bdev: BlockDevice, total_blocks: u64, read_only: bool) -> Result<Self> {
        Ok(Self {
            bdev,
            total_blocks,
            read_only,
            verified: VerifiedBlocks::new()?,
            pool: BufPool::new()?,
        })
    }
}

/// Blocks recently validated in full (checksum and structure), as ext4's `buffer_verified`: a
/// direct-mapped table, so a hot metadata block is checksummed once rather than on every visit
/// (placement is still checked on every visit). A slot holds `blocknr + 1`; 0 is empty.
struct VerifiedBlocks(KVec<u64>);

/// Slots in the table (64 KiB per mount).
const VERIFIED_SLOTS: usize = 8192;

impl VerifiedBlocks {
    fn new() -> Result<Self> {
        Ok(Self(KVec::from_elem(0u64, VERIFIED_SLOTS, GFP_KERNEL)?))
    }

    fn slot(&mut self, blocknr: u64) -> Option<&mut u64> {
        // Fibonacci hashing spreads neighbouring block numbers over the table.
        let h = blocknr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 51;
        self.0.get_mut(usize::try_from(h).ok()? % VERIFIED_SLOTS)
    }
}

impl BlockStore for BdevStore {
    type Buf = KBlock;

    fn is_verified(&mut self, blocknr: u64) -> bool {
        let tag = blocknr.wrapping_add(1);
        self.verified.slot(blocknr).is_some_and(|s| *s == tag)
    }

    fn set_verified(&mut self, blocknr: u64) {
        if let Some(s) = self.verified.slot(blocknr) {
            *s = blocknr.wrapping_add(1);
        }
    }

    fn alloc_buf(&mut self) -> Result<KBlock, CoreError> {
        self.pool.get()
    }

    fn read(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        self.bdev
            .read(blocknr, |b| buf.data.copy_from_slice(b))
            .map_err(|_| CoreError::Io)
    }

    fn read_new(&mut self, blocknr: u64) -> Result<KBlock, CoreError> {
        // The copy below overwrites the whole block (or the buffer goes back on an error).
        let mut buf = self.pool.get_dirty()?;
        self.read(blocknr, &mut buf)?;
        Ok(buf)
    }

    fn write(&mut self, blocknr: u64, buf: &KBlock) -> Result<(), CoreError> {
        if self.read_only {
            return Err(CoreError::ReadOnly);
        }
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        let tag = blocknr.wrapping_add(1);
        if let Some(s) = self.verified.slot(blocknr) {
            if *s == tag {
                *s = 0;
            }
        }
        self.bdev
            .write(blocknr, &buf.data)
            .map_err(|_| CoreError::Io)
    }

    fn total_blocks(&self) -> u64 {
        self.total_blocks
    }
}

impl Device for BdevStore {
    fn flush(&mut self) -> Result<(), CoreError> {
        if self.read_only {
            return Ok(());
        }
        self.bdev.flush().map_err(|_| CoreError::Io)
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The format core's block-store interface over the mounted device.

use kernel::prelude::*;

use crate::format::tree::{BlockStore, Error as CoreError};
use crate::format::volume::Device;
use crate::format::BLOCK_SIZE;
use crate::vfs::BlockDevice;

/// A block buffer from kmalloc: the core never keeps blocks on the (16 KiB) kernel stack.
pub(crate) struct KBlock(KVec<u8>);

impl KBlock {
    /// A zeroed block; allocation failure is an error, not a panic.
    pub(crate) fn new() -> Result<Self, CoreError> {
        KVec::from_elem(0u8, BLOCK_SIZE as usize, GFP_KERNEL)
            .map(Self)
            .map_err(|_| CoreError::NoMemory)
    }
}

impl AsRef<[u8]> for KBlock {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for KBlock {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
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
}

impl BdevStore {
    pub(crate) fn new(bdev: BlockDevice, total_blocks: u64, read_only: bool) -> Result<Self> {
        Ok(Self {
            bdev,
            total_blocks,
            read_only,
            verified: VerifiedBlocks::new()?,
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
        KBlock::new()
    }

    fn read(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        self.bdev
            .read(blocknr, |b| buf.0.copy_from_slice(b))
            .map_err(|_| CoreError::Io)
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
        self.bdev.write(blocknr, &buf.0).map_err(|_| CoreError::Io)
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

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
}

impl BlockStore for BdevStore {
    type Buf = KBlock;

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

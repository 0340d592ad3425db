// SPDX-License-Identifier: GPL-2.0

//! The format core's block-store interface over the mounted device.

use kernel::prelude::*;

use crate::format::tree::{BlockStore, Error as CoreError};
use crate::format::volume::Device;
use crate::format::BLOCK_SIZE;
use crate::vfs::NewSuperBlock;

use super::super_::Lcfs;

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

/// Read-only access to the device being mounted, through its page cache.
pub(crate) struct MountStore<'a, 'b> {
    pub(crate) sb: &'a NewSuperBlock<'b, Lcfs>,
    pub(crate) total_blocks: u64,
}

impl BlockStore for MountStore<'_, '_> {
    type Buf = KBlock;

    fn alloc_buf(&mut self) -> Result<KBlock, CoreError> {
        KBlock::new()
    }

    fn read(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), CoreError> {
        if blocknr >= self.total_blocks {
            return Err(CoreError::Io);
        }
        self.sb
            .read_block(blocknr, |b| buf.0.copy_from_slice(b))
            .map_err(|_| CoreError::Io)
    }

    fn write(&mut self, _blocknr: u64, _buf: &KBlock) -> Result<(), CoreError> {
        // Writing arrives with the read-write filesystem.
        Err(CoreError::ReadOnly)
    }

    fn total_blocks(&self) -> u64 {
        self.total_blocks
    }
}

impl Device for MountStore<'_, '_> {
    fn flush(&mut self) -> Result<(), CoreError> {
        Ok(())
    }
}

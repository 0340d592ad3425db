//! Block stores for the format core: a real device or image file, an in-memory image, and a
//! recorder of block writes for crash simulation.

use std::collections::BTreeMap;

use lcfs_format::tree::{BlockStore, Error as TreeError};
use lcfs_format::volume;
use lcfs_format::BLOCK_SIZE;

use crate::Device;

const BLOCK: usize = BLOCK_SIZE as usize;

impl BlockStore for Device {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, TreeError> {
        Ok(vec![0; BLOCK])
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), TreeError> {
        let pos = blocknr
            .checked_mul(u64::from(BLOCK_SIZE))
            .ok_or(TreeError::Invalid)?;
        self.read_at(pos, buf).map_err(|e| self.remember(e))
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), TreeError> {
        if self.read_only {
            return Err(TreeError::ReadOnly);
        }
        let pos = blocknr
            .checked_mul(u64::from(BLOCK_SIZE))
            .ok_or(TreeError::Invalid)?;
        self.write_at(pos, buf).map_err(|e| self.remember(e))
    }

    fn total_blocks(&self) -> u64 {
        self.blocks()
    }
}

impl volume::Device for Device {
    fn flush(&mut self) -> Result<(), TreeError> {
        if self.read_only {
            return Ok(());
        }
        self.sync().map_err(|e| self.remember(e))
    }
}

/// An image in memory; unwritten blocks read as zeros.
#[derive(Clone, Debug, Default)]
pub struct MemDevice {
    /// Size in blocks.
    pub total: u64,
    /// Written blocks.
    pub blocks: BTreeMap<u64, Vec<u8>>,
    /// The map's table of blocks with count 1 (as the kernel keeps one; see
    /// `BlockStore::single_table`), so that the host tests exercise it.
    single: Vec<u64>,
    /// The volume's in-place cache (`BlockStore::in_place_table`), so the host tests exercise it.
    in_place: Vec<u64>,
}

impl MemDevice {
    /// An empty image of `total` blocks.
    pub fn new(total: u64) -> Self {
        Self {
            total,
            blocks: BTreeMap::new(),
            single: vec![0; 129],
            in_place: vec![0; lcfs_format::data::IN_PLACE_TABLE],
        }
    }
}

impl BlockStore for MemDevice {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, TreeError> {
        Ok(vec![0; BLOCK])
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), TreeError> {
        if blocknr >= self.total {
            return Err(TreeError::Io);
        }
        match self.blocks.get(&blocknr) {
            Some(b) => buf.copy_from_slice(b),
            None => buf.fill(0),
        }
        Ok(())
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        Some(&mut self.single)
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        Some(&mut self.in_place)
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), TreeError> {
        if blocknr >= self.total || buf.len() != BLOCK {
            return Err(TreeError::Io);
        }
        self.blocks.insert(blocknr, buf.clone());
        Ok(())
    }

    fn total_blocks(&self) -> u64 {
        self.total
    }
}

impl volume::Device for MemDevice {
    fn flush(&mut self) -> Result<(), TreeError> {
        Ok(())
    }
}

/// One event seen by a [`Recorder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A block write.
    Write(u64, Vec<u8>),
    /// A flush: every earlier write is durable.
    Flush,
}

/// Passes everything to an inner store and records each write and flush, so a test can replay
/// any prefix of them (a crash at that point) onto the image as it was before.
#[derive(Debug)]
pub struct Recorder<S> {
    /// The store written through.
    pub inner: S,
    /// What happened, in order.
    pub events: Vec<Event>,
}

impl<S> Recorder<S> {
    /// Starts recording over `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            events: Vec::new(),
        }
    }
}

impl<S: BlockStore<Buf = Vec<u8>>> BlockStore for Recorder<S> {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, TreeError> {
        self.inner.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), TreeError> {
        self.inner.read(blocknr, buf)
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        self.inner.single_table()
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.inner.in_place_table()
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), TreeError> {
        self.events.push(Event::Write(blocknr, buf.clone()));
        self.inner.write(blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.inner.total_blocks()
    }
}

impl<S: volume::Device<Buf = Vec<u8>>> volume::Device for Recorder<S> {
    fn flush(&mut self) -> Result<(), TreeError> {
        self.events.push(Event::Flush);
        self.inner.flush()
    }

    fn write_back(&mut self) -> Result<(), TreeError> {
        self.inner.write_back()
    }
}

/// Remembers which blocks passed full validation since they were last written, as the kernel
/// does for page-cache folios (ext4's `buffer_verified`): each block is checked once, and later
/// visits check only its placement. For in-memory images whose blocks change only through this
/// store; the tests use stores without it, so every read is validated in full.
#[derive(Debug)]
pub struct VerifyCache<S> {
    /// The store cached over.
    pub inner: S,
    verified: std::collections::HashSet<u64>,
}

impl<S> VerifyCache<S> {
    /// Starts with nothing verified.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            verified: std::collections::HashSet::new(),
        }
    }
}

impl<S: BlockStore> BlockStore for VerifyCache<S> {
    type Buf = S::Buf;

    fn alloc_buf(&mut self) -> Result<S::Buf, TreeError> {
        self.inner.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut S::Buf) -> Result<(), TreeError> {
        self.inner.read(blocknr, buf)
    }

    fn write(&mut self, blocknr: u64, buf: &S::Buf) -> Result<(), TreeError> {
        self.verified.remove(&blocknr);
        self.inner.write(blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.inner.total_blocks()
    }

    fn is_verified(&mut self, blocknr: u64) -> bool {
        self.verified.contains(&blocknr)
    }

    fn set_verified(&mut self, blocknr: u64) {
        self.verified.insert(blocknr);
    }

    fn with_block<R>(&mut self, blocknr: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, TreeError> {
        self.inner.with_block(blocknr, f)
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.inner.in_place_table()
    }
}

impl<S: volume::Device> volume::Device for VerifyCache<S> {
    fn flush(&mut self) -> Result<(), TreeError> {
        self.inner.flush()
    }

    fn write_back(&mut self) -> Result<(), TreeError> {
        self.inner.write_back()
    }
}

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

/// A store borrowed: lets a caller keep its store while the format core takes one by value.
#[derive(Debug)]
pub struct ByRef<'a, S>(pub &'a mut S);

impl<S: BlockStore<Buf = Vec<u8>>> BlockStore for ByRef<'_, S> {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, TreeError> {
        self.0.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), TreeError> {
        self.0.read(blocknr, buf)
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), TreeError> {
        self.0.write(blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.0.total_blocks()
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        self.0.single_table()
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.0.in_place_table()
    }
}

impl<S: volume::Device<Buf = Vec<u8>>> volume::Device for ByRef<'_, S> {
    fn flush(&mut self) -> Result<(), TreeError> {
        self.0.flush()
    }

    fn write_back(&mut self) -> Result<(), TreeError> {
        self.0.write_back()
    }
}

/// Writes kept in memory over a store that is only read: what a repair would write, tried out
/// first. The events can then be played onto the store in the same order ([`Overlay::replay`]),
/// flushes included, which is the very sequence the format core would have written.
#[derive(Debug)]
pub struct Overlay<S> {
    /// The store read through.
    pub inner: S,
    blocks: std::collections::HashMap<u64, Vec<u8>>,
    /// Writes and flushes, in order.
    pub events: Vec<Event>,
}

impl<S> Overlay<S> {
    /// An overlay with no writes yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            blocks: std::collections::HashMap::new(),
            events: Vec::new(),
        }
    }

    /// Whether anything was written.
    pub fn is_written(&self) -> bool {
        !self.blocks.is_empty()
    }
}

impl<S: volume::Device<Buf = Vec<u8>>> Overlay<S> {
    /// Plays the writes and flushes onto `dev`, in order, and flushes at the end.
    pub fn replay<D: volume::Device<Buf = Vec<u8>>>(&self, dev: &mut D) -> Result<(), TreeError> {
        for e in &self.events {
            match e {
                Event::Write(b, data) => dev.write(*b, data)?,
                Event::Flush => dev.flush()?,
            }
        }
        dev.flush()
    }
}

impl<S: BlockStore<Buf = Vec<u8>>> BlockStore for Overlay<S> {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, TreeError> {
        Ok(vec![0; BLOCK])
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), TreeError> {
        match self.blocks.get(&blocknr) {
            Some(b) => {
                buf.clear();
                buf.extend_from_slice(b);
                Ok(())
            }
            None => self.inner.read(blocknr, buf),
        }
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), TreeError> {
        if blocknr >= self.inner.total_blocks() {
            return Err(TreeError::Invalid);
        }
        self.events.push(Event::Write(blocknr, buf.clone()));
        self.blocks.insert(blocknr, buf.clone());
        Ok(())
    }

    fn total_blocks(&self) -> u64 {
        self.inner.total_blocks()
    }
}

impl<S: volume::Device<Buf = Vec<u8>>> volume::Device for Overlay<S> {
    fn flush(&mut self) -> Result<(), TreeError> {
        self.events.push(Event::Flush);
        Ok(())
    }
}

/// A store whose superblock copies can be seen otherwise than they are: one copy hidden
/// (reading as zeros, so the other, the previous commit, is the one in use) or replaced by a
/// corrected copy. A write to such a copy ends the pretence for it.
#[derive(Debug)]
pub struct SbView<S> {
    /// The store seen through.
    pub inner: S,
    /// The copy shown instead of block 0 or 1, and its contents.
    pub patch: Option<(u64, Vec<u8>)>,
    /// The copy that reads as zeros.
    pub hidden: Option<u64>,
}

impl<S> SbView<S> {
    /// A view that shows everything as it is.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            patch: None,
            hidden: None,
        }
    }

    /// A view in which superblock copy `slot` reads as zeros.
    pub fn hiding(inner: S, slot: u64) -> Self {
        Self {
            inner,
            patch: None,
            hidden: Some(slot),
        }
    }
}

impl<S: BlockStore<Buf = Vec<u8>>> BlockStore for SbView<S> {
    type Buf = Vec<u8>;

    fn alloc_buf(&mut self) -> Result<Vec<u8>, TreeError> {
        self.inner.alloc_buf()
    }

    fn read(&mut self, blocknr: u64, buf: &mut Vec<u8>) -> Result<(), TreeError> {
        if self.hidden == Some(blocknr) {
            buf.clear();
            buf.resize(BLOCK, 0);
            return Ok(());
        }
        match &self.patch {
            Some((slot, data)) if *slot == blocknr => {
                buf.clear();
                buf.extend_from_slice(data);
                Ok(())
            }
            _ => self.inner.read(blocknr, buf),
        }
    }

    fn write(&mut self, blocknr: u64, buf: &Vec<u8>) -> Result<(), TreeError> {
        if self
            .patch
            .as_ref()
            .is_some_and(|(slot, _)| *slot == blocknr)
        {
            self.patch = None;
        }
        if self.hidden == Some(blocknr) {
            self.hidden = None;
        }
        self.inner.write(blocknr, buf)
    }

    fn total_blocks(&self) -> u64 {
        self.inner.total_blocks()
    }

    fn single_table(&mut self) -> Option<&mut [u64]> {
        self.inner.single_table()
    }

    fn in_place_table(&mut self) -> Option<&mut [u64]> {
        self.inner.in_place_table()
    }
}

impl<S: volume::Device<Buf = Vec<u8>>> volume::Device for SbView<S> {
    fn flush(&mut self) -> Result<(), TreeError> {
        self.inner.flush()
    }

    fn write_back(&mut self) -> Result<(), TreeError> {
        self.inner.write_back()
    }
}

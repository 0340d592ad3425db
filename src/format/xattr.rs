// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Extended attributes of an inode: items `(ino, XATTR, offset)` → [`XattrRecord`], in hash
//! buckets of the attribute name like directory entries (see [`super::bucket`]). A value that
//! fits goes in the item; a larger one (up to [`XATTR_VALUE_MAX`]) in a run of data blocks of its
//! own, which the item references.

use super::bucket::probe;
use super::namespace::{check_time, Name};
use super::node::{key_after, Key};
use super::records::{
    check_xattr_name, kind, ExtentRecord, Timespec, XattrRecord, XattrValue, XATTR_VALUE_MAX,
};
use super::refmap::MapAccess;
use super::tree::Error;
use super::volume::{Device, Volume};
use super::{FormatError, BLOCK_SIZE};

/// Largest xattr value kept inline with a name of `name_len` bytes.
fn inline_xattr_fits(name: &[u8], len: usize) -> bool {
    XattrRecord::fits_inline(name, len)
}

impl<S: Device, M: MapAccess<S>> Volume<S, M> {
    /// Finds xattr `name` of `ino`: its key and whether it exists, or the first free key of the
    /// name's hash bucket.
    fn find_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
    ) -> Result<(Option<Key>, Option<Key>), Error> {
        let hash = self.hash_key().hash(name);
        let total = self.superblock().total_blocks;
        let slot = probe(ino, kind::XATTR, hash, |from| {
            self.next(layer, from, |k, v| {
                let x = XattrRecord::decode(v, total).map_err(Error::from);
                (*k, x.map(|x| (x.name == name).then_some(())))
            })
        })?;
        let key = |offset| Key::new(ino, kind::XATTR, offset);
        Ok((slot.found.map(|(o, ())| key(o)), slot.free.map(key)))
    }

    /// Sets extended attribute `name` of `ino` to `value` (up to 64 KiB). Values that do not fit
    /// in a leaf item go to data blocks of their own.
    pub fn set_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
        value: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        check_xattr_name(name)?;
        check_time(&now)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::Invalid);
        }
        self.check_writable(layer)?;
        let mut rec = self.inode(layer, ino)?;
        let (found, free) = self.find_xattr(layer, ino, name)?;
        let key = found.or(free).ok_or(Error::NoSpace)?;
        let blocks =
            u32::try_from(value.len().div_ceil(BLOCK_SIZE as usize)).map_err(|_| Error::Invalid)?;
        self.admit_trees(4 + u64::from(blocks))?;
        let mut buf = self.store().alloc_buf()?;
        let n = if inline_xattr_fits(name, value.len()) {
            XattrRecord {
                name,
                value: XattrValue::Inline(value),
            }
            .encode(buf.as_mut())?
        } else {
            // One run of blocks for the value (allocated in pieces if the free space is split).
            let (start, got) = self.alloc_data(blocks)?;
            if got < blocks {
                self.release(start, u64::from(got))?;
                return Err(Error::NoSpace);
            }
            let mut block = self.store().alloc_buf()?;
            // From here on a failure would leave allocated blocks behind: abort.
            self.mutate(|v| {
                for (i, chunk) in value.chunks(BLOCK_SIZE as usize).enumerate() {
                    block.as_mut().fill(0);
                    block
                        .as_mut()
                        .get_mut(..chunk.len())
                        .ok_or(Error::Invalid)?
                        .copy_from_slice(chunk);
                    let at = start.checked_add(i as u64).ok_or(Error::Invalid)?;
                    v.store().write(at, &block)?;
                }
                Ok(())
            })?;
            let len = u32::try_from(value.len()).map_err(|_| Error::Invalid)?;
            let extent = ExtentRecord {
                disk_block: start,
                len: blocks,
                flags: 0,
            };
            XattrRecord {
                name,
                value: XattrValue::External { extent, len },
            }
            .encode(buf.as_mut())?
        };
        self.mutate(|v| {
            v.insert(layer, &key, buf.as_ref().get(..n).ok_or(Error::Invalid)?)?;
            rec.ctime = now;
            v.put_inode(layer, ino, &rec)
        })
    }

    /// Calls `f` with the name of each extended attribute of `ino` (in hash order) until it
    /// returns `false`.
    pub fn list_xattrs(
        &mut self,
        layer: u64,
        ino: u64,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), Error> {
        let total = self.superblock().total_blocks;
        let mut key = Key::new(ino, kind::XATTR, 0);
        loop {
            let got = self.next(layer, &key, |k, v| {
                (*k, XattrRecord::decode(v, total).map(|x| Name::new(x.name)))
            })?;
            let Some((k, name)) = got else { return Ok(()) };
            if k.id != ino || k.kind != kind::XATTR {
                return Ok(());
            }
            if !f(name?.get()) {
                return Ok(());
            }
            match key_after(&k) {
                Some(next) => key = next,
                None => return Ok(()),
            }
        }
    }

    /// Reads extended attribute `name` of `ino` into `out`; returns its length (`out` may be
    /// shorter: then only the length is meaningful, as for `getxattr` with a small buffer).
    pub fn get_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        check_xattr_name(name)?;
        let key = self
            .find_xattr(layer, ino, name)?
            .0
            .ok_or(Error::NotFound)?;
        let total = self.superblock().total_blocks;
        let mut inline_len = None;
        let ext = self.lookup(layer, &key, |v| {
            XattrRecord::decode(v, total).map(|x| match x.value {
                XattrValue::Inline(d) => {
                    if let Some(dst) = out.get_mut(..d.len()) {
                        dst.copy_from_slice(d);
                    }
                    inline_len = Some(d.len());
                    None
                }
                XattrValue::External { extent, len } => Some((extent, len)),
            })
        })?;
        let ext = ext.ok_or(Error::NotFound)??;
        if let Some(n) = inline_len {
            return Ok(n);
        }
        let (extent, len) = ext.ok_or(Error::Invalid)?;
        let len = usize::try_from(len).map_err(|_| Error::Invalid)?;
        if out.len() >= len {
            let mut block = self.store().alloc_buf()?;
            for (i, chunk) in out
                .get_mut(..len)
                .ok_or(Error::Invalid)?
                .chunks_mut(BLOCK_SIZE as usize)
                .enumerate()
            {
                let at = extent.disk_block.checked_add(i as u64);
                let at = at.ok_or(Error::Corrupt(FormatError::BadField("xattr extent")))?;
                self.store().read(at, &mut block)?;
                chunk.copy_from_slice(block.as_ref().get(..chunk.len()).ok_or(Error::Invalid)?);
            }
        }
        Ok(len)
    }

    /// Removes extended attribute `name` of `ino` (its value blocks are dropped).
    pub fn remove_xattr(
        &mut self,
        layer: u64,
        ino: u64,
        name: &[u8],
        now: Timespec,
    ) -> Result<(), Error> {
        check_xattr_name(name)?;
        check_time(&now)?;
        self.check_writable(layer)?;
        let mut rec = self.inode(layer, ino)?;
        let key = self
            .find_xattr(layer, ino, name)?
            .0
            .ok_or(Error::NotFound)?;
        self.admit_trees(4)?;
        self.mutate(|v| {
            v.remove(layer, &key)?;
            rec.ctime = now;
            v.put_inode(layer, ino, &rec)
        })
    }
}

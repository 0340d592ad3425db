//! Device and image access shared by the LCFS userspace tools.
//!
//! A [`Device`] is a block device or a regular file holding an LCFS image. This crate knows how to
//! size it, recognise filesystem signatures already on it, and read and write the superblock copies
//! through the shared format core ([`lcfs_format`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lcfs_format::node::Key;
use lcfs_format::records::{kind, LAYER_NAME_INDEX};
use lcfs_format::superblock::{self, Selected, Superblock, SUPERBLOCK_COPIES};
use lcfs_format::{FormatError, BLOCK_SIZE};

pub mod fsck;
pub mod output;
pub mod probe;
pub mod refcounts;
pub mod repair;
pub mod store;

/// Errors of device access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device could not be opened, read or written. Printed as `PATH: TEXT` with the
    /// system's text for the error once (not a source: a report of the chain would repeat it).
    #[error("{path}: {}", os_text(.error))]
    Io {
        /// Device path.
        path: PathBuf,
        /// Underlying error.
        error: io::Error,
    },
    /// The device holds no valid LCFS superblock.
    #[error("{path}: {source}")]
    Format {
        /// Device path.
        path: PathBuf,
        /// What was wrong.
        source: FormatError,
    },
}

/// The text of an I/O error without Rust's " (os error N)" suffix.
pub fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open block device or image file.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
    size: u64,
    is_block_device: bool,
    read_only: bool,
    last_error: Option<io::Error>,
}

/// How to open a [`Device`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    ReadOnly,
    /// Read and write; block devices are opened with `O_EXCL`, so a mounted device is refused.
    ReadWrite,
}

impl Device {
    /// Opens `path`.
    pub fn open(path: &Path, access: Access) -> Result<Self> {
        let io_err = |error| Error::Io {
            path: path.to_owned(),
            error,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let is_block_device = meta.file_type().is_block_device();
        if !is_block_device && !meta.is_file() {
            return Err(io_err(io::Error::other(
                "not a block device or regular file",
            )));
        }
        let mut opts = OpenOptions::new();
        opts.read(true);
        if access == Access::ReadWrite {
            opts.write(true);
            if is_block_device {
                // The kernel refuses O_EXCL opens of a block device that is mounted or otherwise
                // claimed, which keeps mkfs off a live filesystem.
                opts.custom_flags(rustix::fs::OFlags::EXCL.bits() as i32);
            }
        }
        let mut file = opts.open(path).map_err(io_err)?;
        // SEEK_END gives the size of regular files and block devices alike.
        let size = file.seek(SeekFrom::End(0)).map_err(io_err)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            size,
            is_block_device,
            read_only: access == Access::ReadOnly,
            last_error: None,
        })
    }

    /// Path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size in whole LCFS blocks.
    pub fn blocks(&self) -> u64 {
        self.size / u64::from(BLOCK_SIZE)
    }

    /// Whether this is a block device (as opposed to an image file).
    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    fn io_err(&self, source: io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            error: source,
        }
    }

    /// Keeps the details of an I/O error the format core only sees as `Io`.
    fn remember(&mut self, e: Error) -> lcfs_format::tree::Error {
        if let Error::Io { error: source, .. } = e {
            self.last_error = Some(source);
        }
        lcfs_format::tree::Error::Io
    }

    /// The last I/O error seen through the block-store interface.
    pub fn take_last_error(&mut self) -> Option<io::Error> {
        self.last_error.take()
    }

    /// Reads `buf.len()` bytes at byte offset `pos`; bytes past the end of the device read as zero.
    pub fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        if pos >= self.size {
            return Ok(());
        }
        let avail = usize::try_from(self.size - pos).unwrap_or(usize::MAX);
        let len = buf.len().min(avail);
        self.file
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.file.read_exact(&mut buf[..len]))
            .map_err(|e| self.io_err(e))
    }

    /// Writes `buf` at byte offset `pos`.
    pub fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.file.write_all(buf))
            .map_err(|e| self.io_err(e))
    }

    /// Flushes written data to stable storage.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| self.io_err(e))
    }

    /// Reads one superblock copy (`slot` 0 or 1).
    pub fn read_superblock_copy(&mut self, slot: u64) -> Result<Result<Superblock, FormatError>> {
        let mut buf = vec![0u8; superblock::SUPERBLOCK_SIZE];
        self.read_at(slot * u64::from(BLOCK_SIZE), &mut buf)?;
        Ok(Superblock::decode(&buf, self.blocks()))
    }

    /// Reads both copies and selects the current superblock, as mount does.
    pub fn read_superblock(&mut self) -> Result<Selected> {
        let copy0 = self.read_superblock_copy(0)?;
        let copy1 = self.read_superblock_copy(1)?;
        superblock::select(copy0, copy1).map_err(|source| Error::Format {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes a superblock into the block of its slot (the rest of the block is zeroed).
    pub fn write_superblock(&mut self, sb: &Superblock) -> Result<()> {
        let mut block = vec![0u8; BLOCK_SIZE as usize];
        sb.encode(&mut block).map_err(|source| Error::Format {
            path: self.path.clone(),
            source,
        })?;
        debug_assert!(sb.slot() < SUPERBLOCK_COPIES);
        self.write_at(sb.slot() * u64::from(BLOCK_SIZE), &block)
    }
}

/// A key as `lcfs debug dump` prints it, "(12 EXTENT 4096)": what fsck reports and dump shows
/// read the same.
pub fn key_text(k: &Key) -> String {
    let kind = match k.kind {
        kind::INODE => "INODE",
        kind::DIRENT => "DIRENT",
        kind::LINK => "LINK",
        kind::EXTENT => "EXTENT",
        kind::INLINE => "INLINE",
        kind::XATTR => "XATTR",
        kind::COW => "COW",
        kind::ORPHAN => "ORPHAN",
        kind::LAYER => "LAYER",
        kind::LAYER_NAME => "LAYER_NAME",
        kind::RECLAIM => "RECLAIM",
        _ => "?",
    };
    if k.id == LAYER_NAME_INDEX {
        return format!("(NAME_INDEX {} {})", kind, k.offset);
    }
    format!("({} {} {})", k.id, kind, k.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_dump_prints_them_not_as_debug_output() {
        let k = Key::new(12, kind::EXTENT, 4096);
        assert_eq!(key_text(&k), "(12 EXTENT 4096)");
        assert_eq!(key_text(&Key::new(1, 99, 0)), "(1 ? 0)");
    }

    #[test]
    fn superblock_round_trip_through_a_file() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(4 << 20).unwrap();
        let mut dev = Device::open(tmp.path(), Access::ReadWrite).unwrap();
        assert_eq!(dev.blocks(), 1024);
        let mut sb = Superblock::new(dev.blocks(), [1; 16], 42);
        dev.write_superblock(&sb).unwrap();
        let sel = dev.read_superblock().unwrap();
        assert_eq!(sel.sb.generation, 1);
        assert_eq!(sel.other_error, Some((0, FormatError::BadMagic)));
        sb.generation = 0;
        dev.write_superblock(&sb).unwrap();
        let sel = dev.read_superblock().unwrap();
        assert_eq!(sel.sb.generation, 1);
        assert_eq!(sel.other_error, None);
    }

    #[test]
    fn reads_past_end_are_zero() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(10).unwrap();
        let mut dev = Device::open(tmp.path(), Access::ReadOnly).unwrap();
        let mut buf = [0xffu8; 32];
        dev.read_at(4, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Device::open(dir.path(), Access::ReadOnly).is_err());
    }
}

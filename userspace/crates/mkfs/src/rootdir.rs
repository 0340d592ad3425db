//! `--rootdir DIR`: copies a directory tree into the first layer.
//!
//! Entries are read without following symbolic links, in name order. Inodes with several names in
//! the tree (the same device and inode number) become one inode with as many names. File data is
//! read by its data segments (`SEEK_DATA`/`SEEK_HOLE`), so holes are not even read, and all-zero
//! blocks are not written either.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::SeekFrom;
use rustix::io::Errno;

use crate::populate::{encode_dev, timespec, Kind, Meta, Sink, BLOCK};

/// Bytes read at a time.
const READ_CHUNK: usize = 1 << 20;

/// Copies the tree at `root` into `sink`. `skip` is the (device, inode) of the image being
/// written, left out if the tree holds it.
pub(crate) fn copy(sink: &mut Sink<'_>, root: &Path, skip: Option<(u64, u64)>) -> Result<()> {
    // The root as given may be a symbolic link to the directory: its target is copied.
    let root = &std::fs::canonicalize(root).with_context(|| root.display().to_string())?;
    let m = std::fs::symlink_metadata(root).with_context(|| root.display().to_string())?;
    if !m.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let meta = meta(root, &m).with_context(|| root.display().to_string())?;
    sink.root(&meta)
        .with_context(|| root.display().to_string())?;
    let mut walk = Walk {
        links: HashMap::new(),
        skip,
        buf: vec![0; READ_CHUNK],
    };
    walk.dir(sink, root, lcfs_format::ROOT_INO)?;
    Ok(())
}

struct Walk {
    /// Inodes with more than one name seen so far: (device, inode) to the new inode.
    links: HashMap<(u64, u64), u64>,
    skip: Option<(u64, u64)>,
    buf: Vec<u8>,
}

impl Walk {
    fn dir(&mut self, sink: &mut Sink<'_>, path: &Path, ino: u64) -> Result<()> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path).with_context(|| path.display().to_string())? {
            names.push(e.with_context(|| path.display().to_string())?.file_name());
        }
        names.sort();
        for name in names {
            let child = path.join(&name);
            self.entry(sink, &child, &name, ino)
                .with_context(|| child.display().to_string())?;
        }
        Ok(())
    }

    fn entry(&mut self, sink: &mut Sink<'_>, path: &Path, name: &OsStr, dir: u64) -> Result<()> {
        let m = std::fs::symlink_metadata(path)?;
        let id = (m.dev(), m.ino());
        if Some(id) == self.skip {
            eprintln!(
                "mkfs.lcfs: {}: the image being written, left out",
                path.display()
            );
            return Ok(());
        }
        let name = name.as_bytes();
        if !m.is_dir() && m.nlink() > 1 {
            if let Some(&ino) = self.links.get(&id) {
                return sink.link(ino, dir, name);
            }
        }
        let meta = meta(path, &m)?;
        let ino = sink.create(dir, name, &meta)?;
        if !m.is_dir() && m.nlink() > 1 {
            self.links.insert(id, ino);
        }
        match meta.kind {
            Kind::Dir => self.dir(sink, path, ino)?,
            Kind::File => self.data(sink, path, ino, m.len())?,
            _ => {}
        }
        Ok(())
    }

    /// Copies the data of the regular file at `path` into `ino`: its data segments, block by
    /// block.
    fn data(&mut self, sink: &mut Sink<'_>, path: &Path, ino: u64, size: u64) -> Result<()> {
        let file = File::open(path)?;
        sink.begin_data(ino, size)?;
        let bs = BLOCK as u64;
        let mut pos = 0u64;
        while pos < size {
            // The next data segment, widened to whole blocks; a filesystem without SEEK_DATA
            // has one, the whole file.
            let start = match rustix::fs::seek(&file, SeekFrom::Data(pos)) {
                Ok(p) => p,
                Err(Errno::NXIO) => break,
                Err(Errno::INVAL | Errno::NOTSUP) => pos,
                Err(e) => return Err(std::io::Error::from(e)).context("SEEK_DATA"),
            };
            let end = match rustix::fs::seek(&file, SeekFrom::Hole(start)) {
                Ok(p) => p,
                Err(Errno::INVAL | Errno::NOTSUP) => size,
                Err(e) => return Err(std::io::Error::from(e)).context("SEEK_HOLE"),
            };
            let start = (start / bs * bs).max(pos);
            let end = end.div_ceil(bs).saturating_mul(bs).min(size);
            if end <= start {
                break;
            }
            let mut at = start;
            while at < end {
                let want = usize::try_from(end - at)
                    .unwrap_or(READ_CHUNK)
                    .min(READ_CHUNK);
                let got = read_full(&file, &mut self.buf[..want], at)?;
                if got == 0 {
                    // The file shrank while it was read: the rest reads as zeros.
                    at = end;
                    break;
                }
                for (i, block) in self.buf[..got].chunks(BLOCK).enumerate() {
                    sink.put_block(at / bs + i as u64, block)?;
                }
                at += got as u64;
            }
            pos = at;
        }
        sink.end_data()
    }
}

/// Reads into `buf` from `at` until it is full or the file ends; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], at: u64) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

/// The attributes of the inode at `path`, with its xattrs.
fn meta(path: &Path, m: &Metadata) -> Result<Meta> {
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink(std::fs::read_link(path)?.into_os_string().into_vec())
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        bail!("unknown file type {:o}", m.mode());
    };
    let rdev = if matches!(kind, Kind::Char | Kind::Block) {
        let (major, minor) = (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev()));
        encode_dev(u64::from(major), u64::from(minor))
            .ok_or_else(|| anyhow!("device number {major}:{minor} beyond the kernel's"))?
    } else {
        0
    };
    Ok(Meta {
        kind,
        perm: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        rdev,
        atime: timespec(m.atime(), m.atime_nsec()),
        mtime: timespec(m.mtime(), m.mtime_nsec()),
        ctime: timespec(m.ctime(), m.ctime_nsec()),
        xattrs: xattrs(path).context("reading extended attributes")?,
    })
}

/// The extended attributes of `path` (not following a symlink); none where the filesystem has
/// no xattr support.
fn xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = Vec::new();
    loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        names.resize(size, 0);
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            // Grew meanwhile: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let mut value = Vec::new();
        loop {
            let size = match rustix::fs::lgetxattr_query(path, name) {
                Ok(n) => n,
                // Removed meanwhile.
                Err(Errno::NODATA) => break,
                Err(e) => return Err(e).with_context(|| name.to_string_lossy().into_owned()),
            };
            value.resize(size, 0);
            match rustix::fs::lgetxattr(path, name, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    out.push((name.as_bytes().to_vec(), std::mem::take(&mut value)));
                    break;
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break,
                Err(e) => return Err(e).with_context(|| name.to_string_lossy().into_owned()),
            }
        }
    }
    out.sort();
    Ok(out)
}

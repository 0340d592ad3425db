//! Writing a tree of files into the first layer through the format core, the way the kernel
//! writes them: namespace operations for the inodes and names, `write_inline` for symlink
//! targets, `set_xattr`, and for file data the kernel's write path (`map_write` allocates the
//! blocks of a run as an unwritten extent, the data goes where `map_writeback` says, then
//! `complete_write` marks the run written). All-zero blocks are never written: holes stay holes.
//!
//! A [`Sink`] without a volume is a dry run: everything is walked, read and counted the same
//! way, and nothing is written.

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use lcfs_format::namespace::{NewInode, SetAttr};
use lcfs_format::records::{mode, Timespec};
use lcfs_format::tree::Error as CoreError;
use lcfs_format::volume::Volume;
use lcfs_format::{BLOCK_SIZE, ROOT_INO};
use lcfs_image::Device;

/// The volume the tree goes to.
pub(crate) type Vol = Volume<Device>;

/// Bytes in a block.
pub(crate) const BLOCK: usize = BLOCK_SIZE as usize;

/// Most blocks gathered into one run before it is written (1 MiB).
const RUN_BLOCKS: usize = 256;

/// The kind of a source inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file (its data is written after it is created, see [`Sink::begin_data`]).
    File,
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A FIFO.
    Fifo,
    /// A Unix domain socket.
    Socket,
}

impl Kind {
    /// The `S_IFMT` bits of this kind.
    fn type_bits(&self) -> u32 {
        match self {
            Kind::Dir => mode::S_IFDIR,
            Kind::File => mode::S_IFREG,
            Kind::Symlink(_) => mode::S_IFLNK,
            Kind::Char => mode::S_IFCHR,
            Kind::Block => mode::S_IFBLK,
            Kind::Fifo => mode::S_IFIFO,
            Kind::Socket => mode::S_IFSOCK,
        }
    }
}

/// The attributes of a source inode.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    /// What it is.
    pub(crate) kind: Kind,
    /// Permission bits, setuid, setgid and sticky included (`0o7777` at most).
    pub(crate) perm: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Device number of a device node, in the kernel's `new_encode_dev` form ([`encode_dev`]).
    pub(crate) rdev: u64,
    /// Last access.
    pub(crate) atime: Timespec,
    /// Last data modification.
    pub(crate) mtime: Timespec,
    /// Last status change.
    pub(crate) ctime: Timespec,
    /// Extended attributes to copy (full names).
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The device number `major:minor` in the kernel's `new_encode_dev` form, which inode records
/// keep: `None` if the kernel cannot represent it (a major of 12 bits, a minor of 20).
pub(crate) fn encode_dev(major: u64, minor: u64) -> Option<u64> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// Whether the kernel serves extended attributes named `name` (`user.`, `trusted.` and
/// `security.`, and POSIX ACLs, which are stored in the VFS's xattr encoding as the source's
/// kernel hands them out): other `system.` ones are not copied.
pub(crate) fn xattr_supported(name: &[u8]) -> bool {
    [&b"user."[..], b"trusted.", b"security."]
        .iter()
        .any(|p| name.starts_with(p) && name.len() > p.len())
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// What was written (or, in a dry run, would be).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    /// Regular files.
    pub(crate) files: u64,
    /// Directories, the root not counted.
    pub(crate) dirs: u64,
    /// Symbolic links.
    pub(crate) symlinks: u64,
    /// Device nodes, FIFOs and sockets.
    pub(crate) specials: u64,
    /// Extra names of inodes with more than one (hard links).
    pub(crate) hard_links: u64,
    /// Sizes of the regular files, added up.
    pub(crate) bytes: u64,
    /// Data blocks written (all-zero blocks and holes are not).
    pub(crate) data_blocks: u64,
    /// Extended attributes copied.
    pub(crate) xattrs: u64,
    /// Extended attributes left out (namespaces the filesystem does not serve).
    pub(crate) xattrs_skipped: u64,
    /// Entries that replaced an earlier one of the same name (a tar archive that holds a path
    /// twice: the later one wins, as when extracting it).
    pub(crate) replaced: u64,
}

/// The timestamps an inode gets once everything under it is written (creating names in a
/// directory, linking and setting xattrs all change times on the way).
type Times = (Timespec, Timespec, Timespec);

/// Where the tree goes: layer `layer` of a volume, or nowhere in a dry run.
pub(crate) struct Sink<'v> {
    vol: Option<&'v mut Vol>,
    layer: u64,
    now: Timespec,
    /// Inode numbers handed out in a dry run.
    dry_ino: u64,
    times: HashMap<u64, Times>,
    /// The file whose data is being written, and its run of blocks not written yet: the first
    /// file block, and the data of consecutive blocks from it.
    data_ino: u64,
    run_start: u64,
    run: Vec<u8>,
    /// What was written so far.
    pub(crate) stats: Stats,
}

impl<'v> Sink<'v> {
    /// A sink writing into the layer named `layer` of `vol` (`None`: a dry run), with `now` for
    /// the operations that need a time (each inode's own times are set at the end).
    pub(crate) fn new(vol: Option<&'v mut Vol>, layer: &[u8], now: Timespec) -> Result<Self> {
        let mut sink = Self {
            vol: None,
            layer: 0,
            now,
            dry_ino: ROOT_INO,
            times: HashMap::new(),
            data_ino: 0,
            run_start: 0,
            run: Vec::with_capacity(RUN_BLOCKS * BLOCK),
            stats: Stats::default(),
        };
        if let Some(vol) = vol {
            sink.layer = match vol.find_layer(layer) {
                Ok(Some(l)) => l.id,
                Ok(None) => return Err(anyhow!("the first layer is missing")),
                Err(e) => return Err(anyhow!("cannot find the first layer: {e}")),
            };
            sink.vol = Some(vol);
        }
        Ok(sink)
    }

    /// Runs `f` on the volume (nothing in a dry run: `None`), as the kernel does: a `NoSpace`
    /// while the transaction holds blocks it freed commits, which frees them, and tries again.
    fn op<R>(&mut self, mut f: impl FnMut(&mut Vol) -> Result<R, CoreError>) -> Result<Option<R>> {
        let now = self.now;
        let Some(vol) = self.vol.as_deref_mut() else {
            return Ok(None);
        };
        let r = match f(vol) {
            Err(CoreError::NoSpace) if vol.map().pinned > 0 => {
                vol.commit(now).and_then(|()| f(vol))
            }
            r => r,
        };
        r.map(Some).map_err(|e| describe(vol, e))
    }

    /// Sets the attributes of the root directory (owner, permissions, xattrs; its times at the
    /// end).
    pub(crate) fn root(&mut self, meta: &Meta) -> Result<()> {
        if meta.kind != Kind::Dir {
            return Err(anyhow!("the root is not a directory"));
        }
        self.set_owner(ROOT_INO, meta)?;
        self.set_xattrs(ROOT_INO, meta)?;
        self.times
            .insert(ROOT_INO, (meta.atime, meta.mtime, meta.ctime));
        Ok(())
    }

    /// Creates `name` in directory `dir` as `meta` describes it and returns its inode number.
    /// A regular file is empty: its data follows with [`Self::begin_data`].
    pub(crate) fn create(&mut self, dir: u64, name: &[u8], meta: &Meta) -> Result<u64> {
        let attrs = NewInode {
            mode: meta.kind.type_bits() | (meta.perm & 0o7777),
            uid: meta.uid,
            gid: meta.gid,
            rdev: meta.rdev,
        };
        if let Kind::Symlink(target) = &meta.kind {
            if target.is_empty() {
                return Err(anyhow!("empty symbolic link target"));
            }
            if target.len() > lcfs_format::records::SYMLINK_MAX {
                return Err(anyhow!(
                    "symbolic link target of {} bytes: LCFS takes at most {}",
                    target.len(),
                    lcfs_format::records::SYMLINK_MAX
                ));
            }
        }
        let (layer, now) = (self.layer, self.now);
        let ino = match self.op(|v| v.create(layer, dir, name, &attrs, now))? {
            Some(ino) => ino,
            None => {
                self.dry_ino += 1;
                self.dry_ino
            }
        };
        match &meta.kind {
            Kind::Dir => self.stats.dirs += 1,
            Kind::File => self.stats.files += 1,
            Kind::Symlink(target) => {
                self.op(|v| v.write_inline(layer, ino, target, now))?;
                self.stats.symlinks += 1;
            }
            Kind::Char | Kind::Block | Kind::Fifo | Kind::Socket => self.stats.specials += 1,
        }
        self.set_xattrs(ino, meta)?;
        self.times.insert(ino, (meta.atime, meta.mtime, meta.ctime));
        Ok(ino)
    }

    /// Gives directory `ino`, which exists already, the attributes of `meta` (a tar archive
    /// names a directory after what it holds, or twice).
    pub(crate) fn update_dir(&mut self, ino: u64, meta: &Meta) -> Result<()> {
        self.set_owner(ino, meta)?;
        self.set_xattrs(ino, meta)?;
        self.times.insert(ino, (meta.atime, meta.mtime, meta.ctime));
        Ok(())
    }

    fn set_owner(&mut self, ino: u64, meta: &Meta) -> Result<()> {
        let attr = SetAttr {
            mode: Some(meta.perm & 0o7777),
            uid: Some(meta.uid),
            gid: Some(meta.gid),
            ..SetAttr::default()
        };
        let layer = self.layer;
        self.op(|v| v.set_attr(layer, ino, &attr))?;
        Ok(())
    }

    fn set_xattrs(&mut self, ino: u64, meta: &Meta) -> Result<()> {
        let (layer, now) = (self.layer, self.now);
        for (name, value) in &meta.xattrs {
            if !xattr_supported(name) {
                self.stats.xattrs_skipped += 1;
                continue;
            }
            self.op(|v| v.set_xattr(layer, ino, name, value, now))
                .map_err(|e| e.context(format!("xattr {}", String::from_utf8_lossy(name))))?;
            self.stats.xattrs += 1;
        }
        Ok(())
    }

    /// Adds the name `name` in `dir` for the existing non-directory `ino` (a hard link).
    pub(crate) fn link(&mut self, ino: u64, dir: u64, name: &[u8]) -> Result<()> {
        let (layer, now) = (self.layer, self.now);
        self.op(|v| v.link(layer, ino, dir, name, now))?;
        self.stats.hard_links += 1;
        Ok(())
    }

    /// Removes the name `name` from `dir`, to be replaced by a later entry of the same name.
    pub(crate) fn replace(&mut self, ino: u64, dir: u64, name: &[u8]) -> Result<()> {
        let (layer, now) = (self.layer, self.now);
        self.op(|v| v.unlink(layer, dir, name, now))?;
        // An inode deleted with its last name gets no times; one with other names keeps its own.
        if self.op(|v| v.inode(layer, ino)).is_err() {
            self.times.remove(&ino);
        }
        self.stats.replaced += 1;
        Ok(())
    }

    /// Starts the data of regular file `ino`, `size` bytes long: its blocks follow with
    /// [`Self::put_block`], then [`Self::end_data`]. Blocks not given are holes.
    pub(crate) fn begin_data(&mut self, ino: u64, size: u64) -> Result<()> {
        if size > i64::MAX.unsigned_abs() {
            return Err(anyhow!("file size {size} too large"));
        }
        // The size first, as a write(2) grows it before writeback maps the blocks.
        let attr = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        let layer = self.layer;
        self.op(|v| v.set_attr(layer, ino, &attr))?;
        self.data_ino = ino;
        self.run.clear();
        self.stats.bytes = self.stats.bytes.saturating_add(size);
        Ok(())
    }

    /// File block `fblock` of the current file holds `data` (at most a block; a short last
    /// block is padded with zeros). An all-zero block is left a hole.
    pub(crate) fn put_block(&mut self, fblock: u64, data: &[u8]) -> Result<()> {
        if data.iter().all(|&b| b == 0) {
            return self.flush_run();
        }
        let blocks = (self.run.len() / BLOCK) as u64;
        if !self.run.is_empty()
            && (fblock != self.run_start + blocks || self.run.len() >= RUN_BLOCKS * BLOCK)
        {
            self.flush_run()?;
        }
        if self.run.is_empty() {
            self.run_start = fblock;
        }
        let len = data.len().min(BLOCK);
        self.run.extend_from_slice(&data[..len]);
        self.run.resize(self.run.len() + (BLOCK - len), 0);
        self.stats.data_blocks += 1;
        Ok(())
    }

    /// Writes the blocks of the current file still held.
    pub(crate) fn end_data(&mut self) -> Result<()> {
        self.flush_run()
    }

    /// Writes the run of blocks held: `map_write` gives each piece its blocks (unwritten), the
    /// data goes where `map_writeback` says, and `complete_write` marks the run written.
    fn flush_run(&mut self) -> Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        let (layer, ino, start) = (self.layer, self.data_ino, self.run_start);
        let end = start + (self.run.len() / BLOCK) as u64;
        let run = std::mem::take(&mut self.run);
        let r = (|| {
            let mut f = start;
            while f < end {
                let Some(w) = self.op(|v| v.map_write(layer, ino, f, end - f))? else {
                    return Ok(());
                };
                let mut g = f;
                while g < f + w.len {
                    let left = f + w.len - g;
                    let (disk, n) = self
                        .op(|v| v.map_writeback(layer, ino, g, left))?
                        .unwrap_or_default();
                    let from = usize::try_from(g - start)? * BLOCK;
                    let to = from + usize::try_from(n)? * BLOCK;
                    if let Some(vol) = self.vol.as_deref_mut() {
                        vol.store()
                            .write_at(disk * u64::from(BLOCK_SIZE), &run[from..to])?;
                    }
                    g += n;
                }
                f += w.len;
            }
            self.op(|v| v.complete_write(layer, ino, start, end - start))?;
            Ok(())
        })();
        self.run = run;
        self.run.clear();
        r
    }

    /// Gives every inode its own times, now that nothing else changes them. Dry run: nothing.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let mut times: Vec<_> = self.times.drain().collect();
        times.sort_unstable_by_key(|&(ino, _)| ino);
        let layer = self.layer;
        for (ino, (atime, mtime, ctime)) in times {
            let attr = SetAttr {
                atime: Some(atime),
                mtime: Some(mtime),
                ctime: Some(ctime),
                ..SetAttr::default()
            };
            self.op(|v| v.set_attr(layer, ino, &attr))
                .map_err(|e| e.context(format!("inode {ino}: setting its times")))?;
        }
        Ok(())
    }
}

/// A core error as a message: the details of an I/O error from the device, and what to do
/// about a full filesystem.
fn describe(vol: &mut Vol, e: CoreError) -> anyhow::Error {
    match e {
        CoreError::NoSpace => {
            let sb = vol.superblock();
            anyhow!(
                "no space left on the filesystem ({} MiB, {} blocks free): the tree does not fit; \
                 give a larger --size",
                (sb.total_blocks * u64::from(BLOCK_SIZE)) >> 20,
                sb.free_blocks
            )
        }
        CoreError::Io => match vol.store().take_last_error() {
            Some(io) => anyhow!("I/O error on the device: {}", lcfs_image::os_text(&io)),
            None => anyhow!("I/O error on the device"),
        },
        e => anyhow!("{e}"),
    }
}

/// A timestamp from seconds and nanoseconds (out-of-range nanoseconds are clamped).
pub(crate) fn timespec(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        sec,
        nsec: u32::try_from(nsec.clamp(0, 999_999_999)).unwrap_or(0),
    }
}

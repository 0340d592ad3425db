// SPDX-License-Identifier: GPL-2.0

//! Mount and remount, commits (periodic, on sync and to free space), statfs, the errno mapping
//! of the format core's errors, and the `FileSystem` implementation, which hands the VFS layer's
//! calls to `namespace` and `file`.

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;

use crate::format::bytes::get_u32;
use crate::format::data::STEP_TREES;
use crate::format::records::Timespec;
use crate::format::records::LAYER_NAME_MAX;
use crate::format::superblock::{self, Superblock, SUPERBLOCK_COPIES};
use crate::format::tree::Error as CoreError;
use crate::format::volume::Volume;
use crate::format::{FormatError, BLOCK_SIZE, NAME_MAX};
use crate::vfs::{
    now, ARef, AttrChange, DirContext, FileMap, FileSystem, FsInfo, Inode, MapFor, NewNode,
    NewSuperBlock, NoFsScope, Output, Param, ParamValue, Rename, Request, StatFs, SuperBlock,
    XattrSet,
};

use super::file;
use super::namespace::{self, InodeInfo};

use super::store::BdevStore;

/// The mounted volume: the format core over the device, behind the mount's one metadata lock.
pub(crate) type Vol = Volume<BdevStore>;

/// The LCFS filesystem type.
pub(crate) struct Lcfs;

/// Per-mount state.
pub(crate) struct MountInfo {
    /// The volume and its running transaction. Lock order: VFS locks (`i_rwsem`) before this;
    /// never take a file folio lock while holding it.
    pub(crate) vol: Pin<KBox<Mutex<Vol>>>,
    /// Seconds between periodic commits (`commit=`).
    commit_secs: AtomicU32,
    /// The layer mounted as the root (`layer=`), or `None` for the list of layers.
    pub(crate) layer: Option<u64>,
}

/// The volume locked, with allocations kept out of filesystem reclaim while it is.
pub(crate) struct VolGuard<'a> {
    // Declared first: dropped (unlocked) before the allocation scope ends.
    guard: kernel::sync::MutexGuard<'a, Vol>,
    _nofs: NoFsScope,
}

impl core::ops::Deref for VolGuard<'_> {
    type Target = Vol;
    fn deref(&self) -> &Vol {
        &self.guard
    }
}

impl core::ops::DerefMut for VolGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vol {
        &mut self.guard
    }
}

impl MountInfo {
    /// Locks the volume.
    pub(crate) fn lock(&self) -> VolGuard<'_> {
        let nofs = NoFsScope::enter();
        VolGuard {
            guard: self.vol.lock(),
            _nofs: nofs,
        }
    }
}

/// Runs `op` on the locked volume; if it fails for space while blocks freed in the running
/// transaction are pinned (they become free only when it commits), commits and runs it once
/// more. Every operation admits its space before its first change, so the refused run changed
/// nothing, or (a multi-step data operation) left a consistent state the second run continues.
pub(crate) fn retry_for_space<R>(
    sb: &SuperBlock<Lcfs>,
    vol: &mut VolGuard<'_>,
    mut op: impl FnMut(&mut Vol) -> core::result::Result<R, CoreError>,
) -> core::result::Result<R, CoreError> {
    match op(vol) {
        Err(CoreError::NoSpace) if vol.map().pinned > 0 => {
            vol.commit(timestamp()).inspect_err(|e| {
                pr_err!(
                    "{}: commit to free space failed ({:?}); the last committed state stays on disk\n",
                    sb.id(),
                    e
                );
            })?;
            op(vol)
        }
        r => r,
    }
}

/// Mount options.
#[derive(Default)]
pub(crate) struct Options {
    /// `commit=SECONDS`: periodic commit interval (`None`: the default).
    commit_secs: Option<u32>,
    /// `layer=NAME`: mount this layer as the root.
    layer: Option<KVec<u8>>,
}

/// Default periodic commit interval, as ext4's and btrfs's.
const DEFAULT_COMMIT_SECS: u32 = 5;
/// Longest accepted commit interval: a day.
const MAX_COMMIT_SECS: u32 = 86_400;

const OPT_COMMIT: u8 = 0;
const OPT_LAYER: u8 = 1;

/// The time as the format core stores it.
pub(crate) fn timestamp() -> Timespec {
    let (sec, nsec) = now();
    Timespec { sec, nsec }
}

/// The errno for a format-core error of a running filesystem.
pub(crate) fn errno(e: CoreError) -> Error {
    match e {
        CoreError::Corrupt(_) => EUCLEAN,
        CoreError::Io | CoreError::Aborted => EIO,
        CoreError::NoSpace => ENOSPC,
        CoreError::NoMemory => ENOMEM,
        CoreError::Invalid => EINVAL,
        CoreError::NotFound => ENOENT,
        CoreError::Exists => EEXIST,
        CoreError::Busy => EBUSY,
        CoreError::ReadOnly => EROFS,
        CoreError::NotEmpty => ENOTEMPTY,
        CoreError::IsDir => EISDIR,
        CoreError::NotDir => ENOTDIR,
    }
}

/// Commits the running transaction of `sb`'s volume if it has changes, logging a failure once
/// (the transaction is then aborted and the filesystem answers EIO until it is remounted).
pub(crate) fn commit(sb: &SuperBlock<Lcfs>) -> Result {
    if sb.read_only() {
        return Ok(());
    }
    let mut vol = sb.info().lock();
    if vol.is_aborted() {
        return Err(EIO);
    }
    if vol.store().read_only {
        // Being remounted read-only: the VFS synced everything before.
        return Ok(());
    }
    vol.commit(timestamp()).map_err(|e| {
        pr_err!(
            "{}: commit failed ({:?}); the last committed state stays on disk, remount to use it\n",
            sb.id(),
            e
        );
        errno(e)
    })
}

/// `statfs.f_type` of LCFS: "LCFS" in ASCII.
const LCFS_MAGIC: u32 = 0x4c43_4653;

// The kernel formats through its own `Display` trait; forward to the format core's impl.
impl kernel::fmt::Display for FormatError {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// Maps a format error to the errno mount returns: damaged LCFS structures are `EUCLEAN`
/// (the kernel's `EFSCORRUPTED`), anything that is not (this version of) LCFS is `EINVAL`.
fn format_errno(e: &FormatError) -> Error {
    if e.is_corruption() {
        EUCLEAN
    } else {
        EINVAL
    }
}

/// Reads both superblock copies and picks the current one.
// Not inlined, here and in the other steps of `fill_super`: inlined, their locals added up to an
// 8 KiB `fill_super` frame, on top of which opening the volume reads blocks through the block
// layer; with 16 KiB kernel stacks that left a few hundred bytes.
#[inline(never)]
fn read_superblock(sb: &NewSuperBlock<'_, Lcfs>) -> Result<Superblock> {
    let device_bytes = sb.device_bytes();
    let device_blocks = device_bytes / u64::from(BLOCK_SIZE);
    if device_blocks < SUPERBLOCK_COPIES {
        pr_err!(
            "{}: device too small ({} bytes) to hold an LCFS filesystem\n",
            sb.id(),
            device_bytes
        );
        return Err(EINVAL);
    }
    let copy0 = sb.read_block(0, |b| Superblock::decode(b, device_blocks))?;
    let copy1 = sb.read_block(1, |b| Superblock::decode(b, device_blocks))?;
    match superblock::select(copy0, copy1) {
        Ok(sel) => {
            if let Some((slot, e)) = sel.other_error {
                pr_warn!(
                    "{}: superblock copy {} is invalid ({}); using copy {}\n",
                    sb.id(),
                    slot,
                    e,
                    sel.sb.slot()
                );
            }
            Ok(sel.sb)
        }
        Err(e) => {
            pr_err!("{}: cannot mount: {}\n", sb.id(), e);
            Err(format_errno(&e))
        }
    }
}

/// Maps a core error at mount to an errno, logging what was wrong.
fn core_errno(sb: &NewSuperBlock<'_, Lcfs>, what: &str, e: CoreError) -> Error {
    match e {
        CoreError::Corrupt(f) => {
            pr_err!(
                "{}: cannot mount: {}: {}
",
                sb.id(),
                what,
                f
            );
            format_errno(&f)
        }
        CoreError::NoMemory => ENOMEM,
        _ => {
            pr_err!(
                "{}: cannot mount: {}: I/O error
",
                sb.id(),
                what
            );
            EIO
        }
    }
}

/// Opens the filesystem through the format core: the reference-count map's root must agree with
/// the superblock, and the layer tree must be readable. Returns the volume, already on the heap
/// (a `Volume` is about 2 KiB: every copy on the stack counts), and its number of layers.
#[inline(never)]
fn open_volume(
    sb: &NewSuperBlock<'_, Lcfs>,
    disk: &Superblock,
) -> Result<(Pin<KBox<Mutex<Vol>>>, u64)> {
    let store = BdevStore::new(
        sb.block_device()?,
        sb.device_bytes() / u64::from(BLOCK_SIZE),
        sb.read_only(),
    )?;
    let (vol, _) = Volume::open(store).map_err(|e| core_errno(sb, "reference-count map", e))?;
    let vol = KBox::pin_init(new_mutex!(vol), GFP_KERNEL)?;
    let mut layers = 0u64;
    vol.lock()
        .for_each_layer(&mut |_| {
            layers += 1;
            true
        })
        .map_err(|e| core_errno(sb, "layer tree", e))?;
    if layers != disk.layer_count {
        pr_err!(
            "{}: cannot mount: superblock counts {} layers, the layer tree holds {}
",
            sb.id(),
            disk.layer_count,
            layers
        );
        return Err(EUCLEAN);
    }
    Ok((vol, layers))
}

/// Schedules the next periodic commit of a writable mount.
fn schedule_commit(sb: &SuperBlock<Lcfs>) {
    if sb.read_only() {
        return;
    }
    let secs = sb.info().commit_secs.load(Ordering::Relaxed);
    sb.schedule_periodic(secs.saturating_mul(1000));
}

/// `LCFS_IOC_FS_INFO` output for superblock `disk`.
fn fs_info(disk: &Superblock) -> FsInfo {
    let mut info = FsInfo {
        format_version: superblock::VERSION,
        block_size: BLOCK_SIZE,
        generation: disk.generation,
        total_blocks: disk.total_blocks,
        free_blocks: disk.free_blocks,
        uuid: disk.uuid,
        ..FsInfo::default()
    };
    // The on-disk label is NUL-padded and at most 63 bytes, so the copy stays NUL-terminated.
    for (dst, src) in info.label.iter_mut().zip(disk.label.iter()) {
        *dst = c_char::from_ne_bytes([*src]);
    }
    info
}

impl FileSystem for Lcfs {
    const NAME: &'static CStr = c"lcfs";
    const MAGIC: u32 = LCFS_MAGIC;
    type Info = MountInfo;
    type InodeInfo = InodeInfo;
    type Options = Options;
    const PARAMS: &'static [Param] = &[
        Param::u32(c"commit", OPT_COMMIT),
        Param::string(c"layer", OPT_LAYER),
        Param::END,
    ];

    fn parse_param(opts: &mut Options, opt: u8, value: &ParamValue<'_>) -> Result {
        match opt {
            OPT_COMMIT => {
                if value.number == 0 || value.number > MAX_COMMIT_SECS {
                    pr_err!("commit= must be 1..={} seconds\n", MAX_COMMIT_SECS);
                    return Err(EINVAL);
                }
                opts.commit_secs = Some(value.number);
            }
            OPT_LAYER => {
                if value.string.is_empty() || value.string.len() > LAYER_NAME_MAX {
                    pr_err!(
                        "layer= needs a layer name of 1..={} bytes\n",
                        LAYER_NAME_MAX
                    );
                    return Err(EINVAL);
                }
                let mut name = KVec::new();
                name.extend_from_slice(value.string, GFP_KERNEL)?;
                opts.layer = Some(name);
            }
            _ => return Err(EINVAL),
        }
        Ok(())
    }

    fn fill_super(sb: &NewSuperBlock<'_, Self>, opts: &Options) -> Result<MountInfo> {
        let disk = read_superblock(sb)?;
        let (vol, layers) = open_volume(sb, &disk)?;
        let mut v = vol.lock();
        let layer = match &opts.layer {
            None => None,
            Some(name) => match v.find_layer(name) {
                Ok(Some(l)) => Some(l.id),
                Ok(None) => {
                    pr_err!(
                        "{}: no layer named \"{}\"\n",
                        sb.id(),
                        kernel::str::BStr::from_bytes(name)
                    );
                    return Err(ENOENT);
                }
                Err(e) => return Err(core_errno(sb, "layer tree", e)),
            },
        };
        if !sb.read_only() {
            let orphans =
                super::namespace::recover(&mut v).map_err(|e| core_errno(sb, "recovery", e))?;
            if orphans > 0 {
                pr_info!(
                    "{}: deleted {} inodes unlinked while open before a crash\n",
                    sb.id(),
                    orphans
                );
                v.commit(timestamp())
                    .map_err(|e| core_errno(sb, "recovery commit", e))?;
            }
        }
        drop(v);
        sb.set_uuid(&disk.uuid);
        pr_info!(
            "{}: mounted generation {}, {} layers, {} of {} blocks free\n",
            sb.id(),
            disk.generation,
            layers,
            disk.free_blocks,
            disk.total_blocks
        );
        Ok(MountInfo {
            vol,
            commit_secs: AtomicU32::new(opts.commit_secs.unwrap_or(DEFAULT_COMMIT_SECS)),
            layer,
        })
    }

    fn activate(sb: &SuperBlock<Self>) {
        schedule_commit(sb);
    }

    fn reconfigure(sb: &SuperBlock<Self>, opts: &Options, read_only: bool) -> Result {
        if let Some(name) = &opts.layer {
            let same = sb
                .info()
                .lock()
                .find_layer(name)
                .ok()
                .flatten()
                .map(|l| l.id);
            if same.is_none() || same != sb.info().layer {
                pr_err!("{}: layer= cannot change on remount\n", sb.id());
                return Err(EINVAL);
            }
        }
        if let Some(secs) = opts.commit_secs {
            sb.info().commit_secs.store(secs, Ordering::Relaxed);
        }
        let mut vol = sb.info().lock();
        if vol.is_aborted() && !read_only {
            pr_err!(
                "{}: an aborted transaction cannot be made writable; unmount and mount again\n",
                sb.id()
            );
            return Err(EIO);
        }
        vol.store().read_only = read_only;
        drop(vol);
        if !read_only {
            schedule_commit(sb);
        }
        Ok(())
    }

    fn sync_fs(sb: &SuperBlock<Self>, wait: bool) -> Result {
        if !wait {
            return Ok(());
        }
        commit(sb)
    }

    fn periodic(sb: &SuperBlock<Self>) {
        // A failure is logged by `commit` and then answered by every later operation.
        let _ = commit(sb);
        schedule_commit(sb);
    }

    fn put_super(sb: &SuperBlock<Self>) {
        let _ = commit(sb);
    }

    fn root(sb: &SuperBlock<Self>) -> Result<ARef<Inode<Self>>> {
        namespace::root(sb)
    }

    fn statfs(sb: &SuperBlock<Self>) -> Result<StatFs> {
        let (disk, room) = {
            let vol = sb.info().lock();
            (vol.superblock(), vol.data_room(STEP_TREES))
        };
        let disk = &disk;
        let word = |i: usize| get_u32(&disk.uuid, i).unwrap_or(0);
        Ok(StatFs {
            blocks: disk.total_blocks,
            free_blocks: disk.free_blocks,
            // What a write can still get: data cannot use the metadata reserve (it keeps
            // deletion working on a full disk), and each write step keeps the metadata blocks
            // it may need in hand.
            avail_blocks: room,
            // Inodes are allocated dynamically: one per free block at most, plus the root.
            files: disk.free_blocks.saturating_add(1),
            free_files: disk.free_blocks,
            fsid: [word(0) ^ word(8), word(4) ^ word(12)],
            // CAST: NAME_MAX is 255.
            name_len: NAME_MAX as u32,
        })
    }

    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<ARef<Inode<Self>>>> {
        namespace::lookup(dir, name)
    }

    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result {
        namespace::readdir(dir, ctx)
    }

    fn create(dir: &Inode<Self>, name: &[u8], node: &NewNode<'_>) -> Result<ARef<Inode<Self>>> {
        namespace::create(dir, name, node)
    }

    fn link(dir: &Inode<Self>, inode: &Inode<Self>, name: &[u8]) -> Result {
        namespace::link(dir, inode, name)
    }

    fn unlink(dir: &Inode<Self>, name: &[u8], inode: &Inode<Self>) -> Result {
        namespace::unlink(dir, name, inode)
    }

    fn rename(request: &Rename<'_, Self>) -> Result {
        namespace::rename(request)
    }

    fn setattr(inode: &Inode<Self>, change: &AttrChange) -> Result {
        namespace::setattr(inode, change)
    }

    fn get_xattr(inode: &Inode<Self>, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        namespace::get_xattr(inode, name, buf)
    }

    fn set_xattr(inode: &Inode<Self>, name: &[u8], value: Option<&[u8]>, how: XattrSet) -> Result {
        namespace::set_xattr(inode, name, value, how)
    }

    fn list_xattrs(inode: &Inode<Self>, f: &mut dyn FnMut(&[u8]) -> bool) -> Result {
        namespace::list_xattrs(inode, f)
    }

    fn evict(inode: &Inode<Self>) {
        namespace::evict(inode)
    }

    fn map(inode: &Inode<Self>, pos: u64, len: u64, purpose: MapFor) -> Result<FileMap> {
        file::map(inode, pos, len, purpose)
    }

    fn map_writeback(inode: &Inode<Self>, pos: u64, len: u64) -> Result<FileMap> {
        file::map_writeback(inode, pos, len)
    }

    fn write_done(inode: &Inode<Self>, pos: u64, len: u64) -> Result {
        file::write_done(inode, pos, len)
    }

    fn store_attrs(inode: &Inode<Self>, size: Option<u64>) -> Result {
        file::store_attrs(inode, size)
    }

    fn fsync(inode: &Inode<Self>) -> Result {
        file::fsync(inode)
    }

    fn allocate(inode: &Inode<Self>, pos: u64, len: u64) -> Result {
        file::allocate(inode, pos, len)
    }

    fn punch(inode: &Inode<Self>, pos: u64, len: u64) -> Result {
        file::punch(inode, pos, len)
    }

    fn ioctl(inode: &Inode<Self>, request: Request, out: Output) -> Result {
        match request {
            Request::FsInfo => {
                let disk = inode.super_block().info().lock().superblock();
                out.write_fs_info(&fs_info(&disk))
            }
        }
    }
}

#[kunit_tests(lcfs_superblock)]
mod tests {
    use super::*;
    use crate::format::crc32c::crc32c;
    use crate::format::superblock::SUPERBLOCK_SIZE;

    fn sample() -> Superblock {
        Superblock::new(1024, [9; 16], 1_700_000_000)
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn round_trip() -> Result {
        let sb = sample();
        let mut buf = [0u8; SUPERBLOCK_SIZE];
        sb.encode(&mut buf).map_err(|_| EINVAL)?;
        assert_eq!(Superblock::decode(&buf, 1024), Ok(sb));
        Ok(())
    }

    #[test]
    fn bit_flips_are_rejected() -> Result {
        let mut buf = [0u8; SUPERBLOCK_SIZE];
        sample().encode(&mut buf).map_err(|_| EINVAL)?;
        let mut accepted = 0;
        for byte in 0..SUPERBLOCK_SIZE {
            for bit in 0..8 {
                buf[byte] ^= 1 << bit;
                if Superblock::decode(&buf, 1024).is_ok() {
                    accepted += 1;
                }
                buf[byte] ^= 1 << bit;
            }
        }
        assert_eq!(accepted, 0);
        Ok(())
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(format_errno(&FormatError::BadMagic), EINVAL);
        assert_eq!(format_errno(&FormatError::UnknownVersion(9)), EINVAL);
        assert_eq!(
            format_errno(&FormatError::BadChecksum {
                stored: 0,
                computed: 1
            }),
            EUCLEAN
        );
        assert_eq!(
            format_errno(&FormatError::DeviceTooSmall {
                needed: 2,
                available: 1
            }),
            EUCLEAN
        );
    }

    #[test]
    fn newest_valid_copy_wins() {
        let mut a = sample();
        a.generation = 6;
        let mut b = sample();
        b.generation = 7;
        let sel = superblock::select(Ok(a), Ok(b));
        assert_eq!(sel.map(|s| s.sb.generation), Ok(7));
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Mount, root directory, statfs.

use kernel::prelude::*;

use crate::format::bytes::get_u32;
use crate::format::superblock::{self, Superblock, SUPERBLOCK_COPIES};
use crate::format::tree::Error as CoreError;
use crate::format::volume::Volume;
use crate::format::{FormatError, BLOCK_SIZE, NAME_MAX, ROOT_INO};
use crate::vfs::{
    ARef, DirContext, FsInfo, Output, Request, FileSystem, Iget, Inode, InodeKind, InodeParams, NewSuperBlock, StatFs,
    SuperBlock,
};

/// The LCFS filesystem type.
pub(crate) struct Lcfs;

/// Per-mount state.
pub(crate) struct MountInfo {
    /// The current superblock.
    sb: Superblock,
}

/// Per-inode state.
pub(crate) struct InodeInfo;

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
            pr_err!("{}: cannot mount: {}: {}
", sb.id(), what, f);
            format_errno(&f)
        }
        CoreError::NoMemory => ENOMEM,
        _ => {
            pr_err!("{}: cannot mount: {}: I/O error
", sb.id(), what);
            EIO
        }
    }
}

/// Opens the filesystem through the format core: the reference-count map's root must agree with
/// the superblock, and the layer tree must be readable. Returns the number of layers.
fn open_volume(sb: &NewSuperBlock<'_, Lcfs>, disk: &Superblock) -> Result<u64> {
    let store = super::store::MountStore {
        sb,
        total_blocks: sb.device_bytes() / u64::from(BLOCK_SIZE),
    };
    let (mut vol, _) = Volume::open(store).map_err(|e| core_errno(sb, "reference-count map", e))?;
    let mut layers = 0u64;
    vol.for_each_layer(&mut |_| {
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
    Ok(layers)
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

    fn fill_super(sb: &NewSuperBlock<'_, Self>) -> Result<MountInfo> {
        let disk = read_superblock(sb)?;
        let layers = open_volume(sb, &disk)?;
        sb.set_uuid(&disk.uuid);
        pr_info!(
            "{}: mounted generation {}, {} layers, {} of {} blocks free\n",
            sb.id(),
            disk.generation,
            layers,
            disk.free_blocks,
            disk.total_blocks
        );
        Ok(MountInfo { sb: disk })
    }

    fn root(sb: &SuperBlock<Self>) -> Result<ARef<Inode<Self>>> {
        match sb.iget(ROOT_INO)? {
            Iget::Cached(inode) => Ok(inode),
            Iget::New(new) => {
                let disk = &sb.info().sb;
                let time = (i64::try_from(disk.create_time).unwrap_or(i64::MAX), 0);
                let params = InodeParams {
                    kind: InodeKind::Directory,
                    // CAST: masked to the permission bits, which fit in 16 bits.
                    perm: (disk.root_mode & 0o7777) as u16,
                    nlink: 2,
                    uid: disk.root_uid,
                    gid: disk.root_gid,
                    size: 0,
                    atime: time,
                    mtime: time,
                    ctime: time,
                };
                Ok(new.init(&params, InodeInfo))
            }
        }
    }

    fn statfs(sb: &SuperBlock<Self>) -> Result<StatFs> {
        let disk = &sb.info().sb;
        let word = |i: usize| get_u32(&disk.uuid, i).unwrap_or(0);
        Ok(StatFs {
            blocks: disk.total_blocks,
            free_blocks: disk.free_blocks,
            // Data cannot use the metadata reserve (it keeps deletion working on a full disk).
            avail_blocks: disk.free_blocks.saturating_sub(disk.reserve_blocks),
            // Inodes are allocated dynamically: one per free block at most, plus the root.
            files: disk.free_blocks.saturating_add(1),
            free_files: disk.free_blocks,
            fsid: [word(0) ^ word(8), word(4) ^ word(12)],
            // CAST: NAME_MAX is 255.
            name_len: NAME_MAX as u32,
        })
    }

    fn lookup(_dir: &Inode<Self>, name: &[u8]) -> Result<Option<ARef<Inode<Self>>>> {
        if name.len() > NAME_MAX {
            return Err(ENAMETOOLONG);
        }
        // The root directory is empty until the namespace arrives.
        Ok(None)
    }

    fn readdir(_dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result {
        // Positions 0 and 1 are "." and ".."; the root has nothing after them yet.
        if ctx.pos() < 2 {
            ctx.emit_dots();
        }
        Ok(())
    }

    fn ioctl(inode: &Inode<Self>, request: Request, out: Output) -> Result {
        match request {
            Request::FsInfo => out.write_fs_info(&fs_info(&inode.super_block().info().sb)),
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
            format_errno(&FormatError::BadChecksum { stored: 0, computed: 1 }),
            EUCLEAN
        );
        assert_eq!(
            format_errno(&FormatError::DeviceTooSmall { needed: 2, available: 1 }),
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

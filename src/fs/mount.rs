// SPDX-License-Identifier: GPL-2.0

//! Mounting: the mount options, reading and checking the superblock pair, opening the volume,
//! recovery after a crash, and the [`FileSystem`] operations of the superblock (remount, sync,
//! statfs, unmount).

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::prelude::*;

use crate::format::bytes::get_u32;
use crate::format::data::STEP_TREES;
use crate::format::records::LAYER_NAME_MAX;
use crate::format::superblock::{self, Superblock, RO_COMPAT_SUPPORTED, SUPERBLOCK_COPIES};
use crate::format::tree::Error as CoreError;
use crate::format::volume::Volume;
use crate::format::{BLOCK_SIZE, NAME_MAX};
use crate::vfs::{
    ARef, BlockDevice, FileSystem, Inode, NewSuperBlock, Param, ParamValue, StatFs, SuperBlock,
    SysfsOutput,
};

use super::commit::{commit, schedule_commit};
use super::errno::{format_errno, mount_errno};
use super::frozen::FrozenLayers;
use super::layers::LayerUses;
use super::namespace::{self, InodeInfo};
use super::shared::Shared;
use super::store::BdevStore;
use super::time::timestamp;
use super::{file, reclaim, sysfs, Lcfs};

/// Per-mount state.
pub(crate) struct MountInfo {
    /// The volume and its running transaction, with its locks (see `shared`). Lock order: VFS
    /// locks (`i_rwsem`) before these; never take a file folio lock while holding one.
    pub(super) vol: Pin<KBox<Shared>>,
    /// Seconds between periodic commits (`commit=`).
    pub(super) commit_secs: AtomicU32,
    /// The layer mounted as the root (`layer=`), or `None` for the list of layers.
    pub(crate) layer: Option<u64>,
    /// Which layers have files open for writing or data changes in progress, and the layer a
    /// snapshot, freeze or removal holds still (see `layers`). Lock order: before the volume
    /// lock.
    pub(super) uses: Pin<KBox<LayerUses>>,
    /// Reads of frozen layers' block maps without the volume lock (see `frozen`).
    pub(super) frozen: Pin<KBox<FrozenLayers>>,
    /// A handle to the device for I/O without the volume lock: frozen layers' reads, a commit's
    /// flushes and superblock write.
    pub(super) io: BlockDevice,
}

/// Mount options.
#[derive(Default)]
pub(crate) struct Options {
    /// `commit=SECONDS`: periodic commit interval (`None`: the default).
    commit_secs: Option<u32>,
    /// `layer=NAME`: mount this layer as the root.
    layer: Option<KVec<u8>>,
    /// `acl` or `noacl`: POSIX ACLs on (the default, as on ext4) or off.
    acl: Option<bool>,
}

/// Default periodic commit interval, as ext4's and btrfs's.
const DEFAULT_COMMIT_SECS: u32 = 5;
/// Longest accepted commit interval: a day.
const MAX_COMMIT_SECS: u32 = 86_400;

const OPT_COMMIT: u8 = 0;
const OPT_LAYER: u8 = 1;
const OPT_ACL: u8 = 2;

/// `statfs.f_type` of LCFS: "LCFS" in ASCII.
const LCFS_MAGIC: u32 = 0x4c43_4653;

/// Reads both superblock copies and picks the current one.
// Not inlined, here and in the other steps of `fill_super`: inlined, their locals would add up
// in one `fill_super` frame, under which opening the volume still reads blocks through the block
// layer, on a 16 KiB kernel stack.
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

/// The volume opened at its last commit, its parts on the heap. Not inlined: the volume passes
/// through this frame (a few KiB) on its way there, and the layer walk that follows must not
/// have that frame under it.
#[inline(never)]
fn open_shared(sb: &NewSuperBlock<'_, Lcfs>) -> Result<Pin<KBox<Shared>>> {
    let store = BdevStore::new(
        sb.block_device()?,
        sb.device_bytes() / u64::from(BLOCK_SIZE),
        sb.read_only(),
    )?;
    let vol = open_boxed(store).map_err(|e| mount_errno(sb, "reference-count map", e))?;
    Shared::new(vol, sb.block_device()?)
}

/// [`Volume::open`] into a box, in a frame of its own (see [`open_shared`]).
#[inline(never)]
fn open_boxed(store: BdevStore) -> core::result::Result<KBox<Volume<BdevStore>>, CoreError> {
    let slot =
        KBox::<Volume<BdevStore>>::new_uninit(GFP_KERNEL).map_err(|_| CoreError::NoMemory)?;
    Ok(KBox::write(slot, Volume::open(store)?.0))
}

/// Opens the filesystem through the format core: the reference-count map's root must agree with
/// the superblock, and the layer tree must be readable. Returns the volume, already on the heap
/// (a `Volume` is about 2 KiB: every copy on the stack counts), and its number of layers.
#[inline(never)]
fn open_volume(
    sb: &NewSuperBlock<'_, Lcfs>,
    disk: &Superblock,
) -> Result<(Pin<KBox<Shared>>, u64)> {
    let vol = open_shared(sb)?;
    let mut layers = 0u64;
    vol.lock()
        .for_each_layer(&mut |_| {
            layers += 1;
            true
        })
        .map_err(|e| mount_errno(sb, "layer tree", e))?;
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

#[vtable]
impl FileSystem for Lcfs {
    const NAME: &'static CStr = c"lcfs";
    const MAGIC: u32 = LCFS_MAGIC;
    type Info = MountInfo;
    type InodeInfo = InodeInfo;
    type Options = Options;
    const PARAMS: &'static [Param] = &[
        Param::u32(c"commit", OPT_COMMIT),
        Param::string(c"layer", OPT_LAYER),
        Param::flag_no(c"acl", OPT_ACL),
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
            OPT_ACL => opts.acl = Some(!value.negated),
            _ => return Err(EINVAL),
        }
        Ok(())
    }

    fn fill_super(sb: &NewSuperBlock<'_, Self>, opts: &Options) -> Result<MountInfo> {
        let disk = read_superblock(sb)?;
        let unknown = disk.ro_compat & !RO_COMPAT_SUPPORTED;
        if unknown != 0 && !sb.read_only() {
            // As ext4: features a writer must know, so no writable mount.
            pr_err!(
                "{}: couldn't mount read-write: unknown read-only-compatible features {:#x}\n",
                sb.id(),
                unknown
            );
            return Err(EINVAL);
        }
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
                Err(e) => return Err(mount_errno(sb, "layer tree", e)),
            },
        };
        if !sb.read_only() {
            let orphans = namespace::recover(&mut v).map_err(|e| mount_errno(sb, "recovery", e))?;
            if orphans > 0 {
                pr_info!(
                    "{}: deleted {} inodes unlinked while open before a crash\n",
                    sb.id(),
                    orphans
                );
                v.commit(timestamp())
                    .map_err(|e| mount_errno(sb, "recovery commit", e))?;
            }
        }
        drop(v);
        sb.set_uuid(&disk.uuid);
        sb.set_posix_acl(opts.acl.unwrap_or(true));
        let plural = if layers == 1 { "" } else { "s" };
        pr_info!(
            "{}: mounted generation {}, {} layer{}, {} of {} blocks free\n",
            sb.id(),
            disk.generation,
            layers,
            plural,
            disk.free_blocks,
            disk.total_blocks
        );
        Ok(MountInfo {
            vol,
            commit_secs: AtomicU32::new(opts.commit_secs.unwrap_or(DEFAULT_COMMIT_SECS)),
            layer,
            uses: KBox::pin_init(LayerUses::new(), GFP_KERNEL)?,
            frozen: KBox::pin_init(FrozenLayers::new(disk.total_blocks)?, GFP_KERNEL)?,
            io: sb.block_device()?,
        })
    }

    fn root(sb: &SuperBlock<Self>) -> Result<ARef<Inode<Self>>> {
        namespace::root(sb)
    }

    fn activate(sb: &SuperBlock<Self>) {
        schedule_commit(sb);
        // A crash or unmount mid-reclaim left removed layers' trees queued: go on with them.
        reclaim::resume(sb);
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
        let vol = sb.info().lock();
        let unknown = vol.superblock().ro_compat & !RO_COMPAT_SUPPORTED;
        if unknown != 0 && !read_only {
            pr_err!(
                "{}: couldn't remount read-write: unknown read-only-compatible features {:#x}\n",
                sb.id(),
                unknown
            );
            return Err(EROFS);
        }
        if vol.is_aborted() && !read_only {
            pr_err!(
                "{}: an aborted transaction cannot be made writable; unmount and mount again\n",
                sb.id()
            );
            return Err(EIO);
        }
        drop(vol);
        sb.info().vol.set_read_only(read_only);
        if let Some(on) = opts.acl {
            sb.set_posix_acl(on);
        }
        if !read_only {
            schedule_commit(sb);
            reclaim::kick_if_queued(sb);
        }
        Ok(())
    }

    fn sync_fs(sb: &SuperBlock<Self>, wait: bool) -> Result {
        if !wait {
            return Ok(());
        }
        commit(sb)
    }

    fn freeze(sb: &SuperBlock<Self>) -> Result {
        // Writers, page faults and writeback are done and the VFS synced; a change made since
        // (an unlinked inode deleted at its last close) is committed here. From now on `commit`
        // writes nothing until the thaw.
        commit(sb)
    }

    fn unfreeze(sb: &SuperBlock<Self>) -> Result {
        // Reclaim paused while frozen; the periodic commit picks up anything made meanwhile.
        reclaim::kick_if_queued(sb);
        Ok(())
    }

    fn periodic(sb: &SuperBlock<Self>) {
        // A failure is logged by `commit` and then answered by every later operation.
        let _ = commit(sb);
        schedule_commit(sb);
        // Reclaim stops while the filesystem is frozen; this resumes it after a thaw.
        reclaim::kick_if_queued(sb);
    }

    fn background(sb: &SuperBlock<Self>) -> bool {
        reclaim::chunk(sb)
    }

    fn cached_objects(sb: &SuperBlock<Self>) -> u64 {
        // Never waits: reclaim must not stall behind a commit. A busy volume reports none.
        sb.info()
            .vol
            .try_cached_nodes()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    fn free_cached_objects(sb: &SuperBlock<Self>, nr: u64) -> u64 {
        let nr = usize::try_from(nr).unwrap_or(usize::MAX);
        sb.info()
            .vol
            .shrink_nodes(nr)
            .try_into()
            .unwrap_or(u64::MAX)
    }

    fn shut_down(sb: &SuperBlock<Self>, flush: bool) {
        if flush {
            // A failure is logged by `commit`; the shutdown goes on.
            let _ = commit(sb);
        }
        let generation = {
            let mut vol = sb.info().lock();
            vol.shut_down();
            vol.superblock().generation
        };
        pr_warn!(
            "{}: shut down; generation {} stays on the device, every call fails with EIO until \
             it is unmounted\n",
            sb.id(),
            generation
        );
    }

    fn put_super(sb: &SuperBlock<Self>) {
        let _ = commit(sb);
    }

    fn statfs(sb: &SuperBlock<Self>) -> Result<StatFs> {
        let (disk, room) = {
            let mut vol = sb.info().lock_read();
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

    fn evict(inode: &Inode<Self>) {
        namespace::evict(inode)
    }

    fn dirty_inode(inode: &Inode<Self>) {
        // Timestamps are advisory: a failure (a frozen layer, for example) keeps the cached
        // value until the next change.
        let _ = file::store_attrs(inode, None);
    }

    const SYSFS_ATTRS: &'static [&'static CStr] = sysfs::NAMES;

    fn sysfs_show(sb: &SuperBlock<Self>, index: usize, out: &mut SysfsOutput<'_>) -> Result {
        sysfs::show(sb, index, out)
    }
}

#[kunit_tests(lcfs_superblock)]
mod tests {
    use super::*;
    use crate::format::crc32c::crc32c;
    use crate::format::superblock::SUPERBLOCK_SIZE;
    use crate::format::FormatError;

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

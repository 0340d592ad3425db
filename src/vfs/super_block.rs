// SPDX-License-Identifier: GPL-2.0

//! Superblock handles, the per-mount state this layer keeps, and the block device under a
//! mount.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use kernel::bindings;
use kernel::error::to_result;
use kernel::fs::File;
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;
use super::inode::{Iget, Inode, NewInode};
use super::iomap::DataOperations;
use super::registration::{ARef, FileSystem};
use super::sysfs::{self, SysfsDir, SysfsRoot};

/// The device name of `sb` (`s_id`), for log messages.
///
/// # Safety
///
/// `sb` must be live for `'a`.
unsafe fn id<'a>(sb: *mut bindings::super_block) -> &'a str {
    // SAFETY: `s_id` is a NUL-terminated `char[32]` set before `fill_super` and never changed.
    let raw = unsafe { &(*sb).s_id };
    // SAFETY: `raw` is a live array of `raw.len()` initialised `c_char`s for `'a` (above), and
    // `c_char` and `u8` have the same size, alignment and valid values.
    let bytes = unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len()) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes
        .get(..len)
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("?")
}

/// Writeback completion lanes per mount: completions of files in different lanes (see
/// [`DataOperations::completion_lane`]) are handled by different workers at once.
pub(crate) const WB_LANES: usize = 8;

/// One writeback completion lane: a list of completed ioends and the work item that handles
/// them, oldest first.
///
/// # Invariants
///
/// `work` was initialised with `writeback_done_callback::<T>` for the `T` of the [`SbInfo`]
/// holding the lane; `done` is null or the first of a list of submitted, completed ioends of
/// files of that mount, linked through `io_private`.
struct WbLane {
    work: Opaque<bindings::work_struct>,
    done: AtomicPtr<ext::iomap_ioend>,
}

/// The per-mount state the VFS layer keeps in `s_fs_info`: the filesystem's state, the
/// periodic and background work items, the writeback completion queue and its lanes, and the
/// mount's directory under `/sys/fs`.
///
/// # Invariants
///
/// `work` was initialised with `periodic_callback::<T>` and `bg_work` with
/// `background_callback::<T>`; the `wb_lanes` are lanes of `T`; `wb_queue` is a live workqueue
/// owned by this object; `sb` is the superblock whose `s_fs_info` points here. The object is
/// boxed and never moves.
pub(super) struct SbInfo<T: FileSystem> {
    work: Opaque<bindings::delayed_work>,
    bg_work: Opaque<bindings::work_struct>,
    wb_lanes: [WbLane; WB_LANES],
    wb_queue: NonNull<bindings::workqueue_struct>,
    /// Set once by [`SuperBlock::shut_down`], never cleared.
    shut_down: AtomicBool,
    /// `/sys/fs/<NAME>/<device>/`, registered by [`SuperBlock::register_sysfs`].
    sysfs: SysfsDir,
    sb: *mut bindings::super_block,
    info: T::Info,
}

impl<T: FileSystem> SbInfo<T> {
    pub(super) fn new(sb: *mut bindings::super_block, info: T::Info) -> Result<KBox<Self>>
    where
        T: DataOperations,
    {
        // Before the queue: nothing to undo if it fails.
        let sysfs = SysfsDir::new(T::SYSFS_ATTRS)?;
        // SAFETY: `sb` is live (being mounted by our `fill_super`); its `s_id` is a NUL-terminated
        // `char[32]` set before `fill_super`, which the helper only formats into the queue's
        // name.
        let wq = unsafe { ext::lcfs_alloc_writeback_workqueue((*sb).s_id.as_ptr()) };
        let wb_queue = NonNull::new(wq.cast::<bindings::workqueue_struct>()).ok_or(ENOMEM)?;
        let this = KBox::new(
            Self {
                work: Opaque::uninit(),
                bg_work: Opaque::uninit(),
                wb_lanes: core::array::from_fn(|_| WbLane {
                    work: Opaque::uninit(),
                    done: AtomicPtr::new(ptr::null_mut()),
                }),
                wb_queue,
                shut_down: AtomicBool::new(false),
                sysfs,
                sb,
                info,
            },
            // On failure the value is dropped, and its `Drop` destroys the queue.
            GFP_KERNEL,
        )?;
        // SAFETY: `work` lives in the box, at an address that never changes, and nobody can
        // queue it before `SbInfo::new` returns, so initialising it in place is valid.
        unsafe {
            ext::lcfs_init_delayed_work(this.work.get().cast(), Some(periodic_callback::<T>))
        };
        // SAFETY: `bg_work` lives in the box, at an address that never changes, and nobody can
        // queue it before `SbInfo::new` returns.
        unsafe { ext::lcfs_init_work(this.bg_work.get().cast(), Some(background_callback::<T>)) };
        for lane in &this.wb_lanes {
            // SAFETY: the lane's `work` lives in the box, at an address that never changes, and
            // nobody can queue it before `SbInfo::new` returns.
            unsafe {
                ext::lcfs_init_work(lane.work.get().cast(), Some(writeback_done_callback::<T>))
            };
        }
        // INVARIANT: initialised with our callbacks; `sb` is the caller's superblock.
        Ok(this)
    }

    /// Queues `ioend`, whose bio completed, on completion lane `lane` (any number: taken modulo
    /// [`WB_LANES`]) for [`FileSystem::write_done`] and the end of writeback in process context.
    /// Safe to call from interrupt context: a lock-free push.
    ///
    /// # Safety
    ///
    /// `ioend` is a completed ioend of a file of this superblock, submitted by
    /// `writeback_submit_callback::<T>`, and no longer used by anyone else. The caller holds the
    /// RCU read lock: once the ioend is published, only `put_super`'s grace period keeps `self`
    /// alive.
    pub(super) unsafe fn queue_written(&self, ioend: *mut ext::iomap_ioend, lane: usize) {
        // `WB_LANES` is not 0, so the remainder indexes the array.
        let lane = &self.wb_lanes[lane % WB_LANES];
        let mut head = lane.done.load(Ordering::Relaxed);
        loop {
            // SAFETY: the ioend is completed and no longer used by anyone else (function
            // contract), so it is ours until the exchange below publishes it; `io_private` is
            // the field iomap leaves to the filesystem.
            unsafe { (*ioend).io_private = head.cast() };
            match lane
                .done
                .compare_exchange_weak(head, ioend, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // SAFETY: the lane's `work` was initialised in `new` and `wb_queue` is live (type
        // invariants), and both stay so until `put_super` has waited for the caller's RCU
        // section (function contract); queueing an already queued item does nothing, and a
        // running one is queued again. `queue_work` may be called from interrupt context.
        unsafe { ext::lcfs_queue_work(self.wb_queue.as_ptr().cast(), lane.work.get().cast()) };
    }

    /// Waits until every queued writeback completion has been handled.
    pub(super) fn flush_writeback(&self) {
        // SAFETY: `wb_queue` is live while `self` is (type invariant); `flush_workqueue` may
        // sleep, and its callers (`put_super`) run in process context, not on this queue.
        unsafe { ext::lcfs_flush_workqueue(self.wb_queue.as_ptr().cast()) };
    }

    /// Takes the per-mount state out of `sb`'s `s_fs_info`, if set, and drops it.
    ///
    /// # Safety
    ///
    /// `sb` is a live superblock of `T` whose `s_fs_info` is null or was set by `fill_super` to
    /// a boxed `SbInfo<T>`, and nothing uses that state any more (no inode, no queued work).
    pub(super) unsafe fn release(sb: *mut bindings::super_block) {
        // SAFETY: `sb` is live (contract), and nothing else writes `s_fs_info` now.
        let info = unsafe { (*sb).s_fs_info.cast::<Self>() };
        if info.is_null() {
            return;
        }
        // SAFETY: `sb` is live and nothing reads `s_fs_info` any more (contract); clearing it
        // first means the superblock never points to freed state.
        unsafe { (*sb).s_fs_info = ptr::null_mut() };
        // SAFETY: a non-null `s_fs_info` is the `KBox<SbInfo<T>>` `fill_super` leaked into it
        // (contract), now owned here alone: the field was cleared above and nothing else holds
        // a reference (contract).
        drop(unsafe { KBox::from_raw(info) });
    }
}

impl<T: FileSystem> Drop for SbInfo<T> {
    fn drop(&mut self) {
        // SAFETY: the queue is live and owned by `self` (type invariant), and nothing queues to it
        // any more (the state is being dropped); destroying it runs what is still queued, while
        // the rest of `self` is alive, and may sleep (process context: unmount or failed mount).
        unsafe { bindings::destroy_workqueue(self.wb_queue.as_ptr()) };
    }
}

/// # Safety
///
/// Called only by the workqueue, for the `work` of a live `SbInfo<T>`.
unsafe extern "C" fn periodic_callback<T: FileSystem>(work: *mut bindings::work_struct) {
    // SAFETY: the workqueue passes the `work_struct` of a live delayed work item (our `work`
    // fields are the only delayed work with this callback); `to_delayed_work` computes the
    // address of the item containing it.
    let dwork = unsafe { ext::lcfs_to_delayed_work(work) }.cast::<bindings::delayed_work>();
    // SAFETY: the delayed work is the `work` field of an `SbInfo<T>` (the callback is installed
    // only there), which `put_super` keeps alive until the work is cancelled and finished.
    let info = unsafe { &*kernel::container_of!(Opaque::cast_from(dwork), SbInfo<T>, work) };
    // SAFETY: `info.sb` is mounted and its `s_fs_info` is `info` (type invariant), until
    // `put_super`, which waits for this work first.
    let sb = unsafe { SuperBlock::<T>::from_raw(info.sb) };
    T::periodic(sb);
}

/// Runs one chunk of [`FileSystem::background`], and queues itself again while more remains.
///
/// # Safety
///
/// Called only by the workqueue, for the `bg_work` of a live `SbInfo<T>`.
unsafe extern "C" fn background_callback<T: FileSystem>(work: *mut bindings::work_struct) {
    // SAFETY: the work item is the `bg_work` field of an `SbInfo<T>`, and `put_super` cancels
    // it (waiting for a running instance, even one that queues itself again) before the state
    // goes away.
    let info = unsafe {
        &*kernel::container_of!(
            Opaque::cast_from(work.cast::<bindings::work_struct>()),
            SbInfo<T>,
            bg_work
        )
    };
    // SAFETY: `info.sb` is mounted and its `s_fs_info` is `info` (type invariant), until
    // `put_super`, which cancels this work (and waits for it) first.
    let sb = unsafe { SuperBlock::<T>::from_raw(info.sb) };
    if sb.read_only() {
        return;
    }
    // SAFETY: a mounted superblock; the internal-write level of freeze protection is taken
    // only if the filesystem is not frozen or being frozen, and released below. A frozen
    // filesystem is kicked again after it thaws (or by the filesystem's periodic work).
    if !unsafe { ext::lcfs_sb_start_intwrite_trylock(info.sb.cast()) } {
        return;
    }
    let more = T::background(sb);
    // SAFETY: releases the protection this task took above, once; the superblock is still
    // mounted (the work runs before `put_super` cancels it).
    unsafe { ext::lcfs_sb_end_intwrite(info.sb.cast()) };
    if more {
        sb.kick_background();
    }
}

/// The kobject type of a mount's directory under `/sys/fs`.
struct SysfsTables<T>(PhantomData<T>);

impl<T: FileSystem> SysfsTables<T> {
    const OPS: bindings::sysfs_ops = bindings::sysfs_ops {
        show: Some(sysfs_show_callback::<T>),
        store: None,
    };

    const KTYPE: bindings::kobj_type = bindings::kobj_type {
        release: Some(sysfs::release_callback),
        sysfs_ops: &Self::OPS,
        default_groups: ptr::null_mut(),
        child_ns_type: None,
        namespace: None,
        get_ownership: None,
    };
}

/// `show` of a file of a mount's directory under `/sys/fs`: [`FileSystem::sysfs_show`].
///
/// # Safety
///
/// Called only by sysfs, with arguments that satisfy the C contract of `sysfs_ops.show`, for a
/// kobject of [`SysfsTables::KTYPE`].
unsafe extern "C" fn sysfs_show_callback<T: FileSystem>(
    kobj: *mut bindings::kobject,
    attr: *mut bindings::attribute,
    buf: *mut c_char,
) -> isize {
    // SAFETY: only the `sysfs` of an `SbInfo<T>` registers a kobject of this type, and its
    // unregistration (`kobject_del`, at `put_super` or when a failed mount's state drops)
    // waits for `show` calls in progress before anything of the state goes: the directory and
    // the state around it are live for the call.
    let dir = unsafe { SysfsDir::from_kobj(kobj) };
    // SAFETY: `dir` is the `sysfs` field of a live `SbInfo<T>` (above); only shared references
    // are made.
    let info = unsafe { &*kernel::container_of!(ptr::from_ref(dir), SbInfo<T>, sysfs) };
    // SAFETY: `info.sb` is mounted and its `s_fs_info` is `info` (type invariant of `SbInfo`)
    // until `put_super`, which unregisters the directory (waiting for this call) first.
    let sb = unsafe { SuperBlock::<T>::from_raw(info.sb) };
    // SAFETY: `attr` is one of the directory's attribute files and `buf` sysfs's page for the
    // call (`show`'s contract).
    let (index, mut out) = unsafe { sysfs::show_args(attr, buf) };
    let r = T::sysfs_show(sb, index, &mut out);
    sysfs::show_result(r, &out)
}

/// Handles completed writeback ioends, oldest first.
///
/// # Safety
///
/// Called only by the workqueue, for the `work` of a lane of a live `SbInfo<T>`.
unsafe extern "C" fn writeback_done_callback<T: DataOperations>(work: *mut bindings::work_struct) {
    // SAFETY: the work item is the `work` field of a `WbLane` of an `SbInfo<T>`, which destroys
    // its queue (waiting for this) before it goes away.
    let lane = unsafe {
        &*kernel::container_of!(
            Opaque::cast_from(work.cast::<bindings::work_struct>()),
            WbLane,
            work
        )
    };
    loop {
        let mut list = lane.done.swap(ptr::null_mut(), Ordering::Acquire);
        if list.is_null() {
            return;
        }
        // The stack holds the newest first; reverse it.
        let mut oldest = ptr::null_mut::<ext::iomap_ioend>();
        while !list.is_null() {
            // SAFETY: a queued ioend (type invariant), now owned by this function.
            let next = unsafe { (*list).io_private.cast::<ext::iomap_ioend>() };
            // SAFETY: the same ioend, owned by this function; `io_private` is the filesystem's.
            unsafe { (*list).io_private = oldest.cast() };
            oldest = list;
            list = next;
        }
        while !oldest.is_null() {
            let ioend = oldest;
            // SAFETY: an ioend taken off the queue above, owned by this function until it is
            // finished (and freed) below.
            oldest = unsafe { (*ioend).io_private.cast() };
            // SAFETY: a completed ioend of a file of ours, submitted by our writeback and now
            // owned by this function (type invariant), handed over.
            let written = unsafe { super::iomap::WrittenIoend::<T>::new(ioend) };
            written.finish();
            // SAFETY: `cond_resched` may sleep: a work item runs in process context, and no
            // lock or RCU read-side section is held here.
            unsafe { ext::lcfs_cond_resched() };
        }
    }
}

/// A handle to the block device under a mounted filesystem.
///
/// # Invariants
///
/// `_file` is a reference to the file through which the VFS opened the device for the mount
/// (`s_bdev_file`) and `bdev` is that file's device: the reference keeps the device open for as
/// long as the handle exists, wherever the handle is kept.
pub(crate) struct BlockDevice {
    // Never read: holding the reference is its purpose.
    _file: ARef<File>,
    bdev: NonNull<bindings::block_device>,
}

// SAFETY: the device is open while the handle exists (type invariant), and block-device I/O
// (page-cache reads and writes of its mapping, `sync_blockdev`, cache flushes) may be issued from
// any thread; `ARef<File>` is `Send`.
unsafe impl Send for BlockDevice {}
// SAFETY: the handle has no state of its own that changes; concurrent I/O on one device is
// serialised by the block layer and the page cache as for any other user.
unsafe impl Sync for BlockDevice {}

impl BlockDevice {
    fn mapping(&self) -> *mut bindings::address_space {
        // SAFETY: `_file` keeps the device open while `&self` lives (type invariant), so `bdev`
        // is live; `bd_mapping` is fixed while it is open.
        unsafe { (*self.bdev.as_ptr()).bd_mapping }
    }

    /// Reads block `block` and calls `f` with its bytes.
    pub(crate) fn read<R>(&self, block: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        // SAFETY: `self.mapping()` is the `bd_mapping` of the device, which `_file` keeps open
        // (type invariant) for as long as `&self` lives, which covers the call.
        unsafe { super::block::with_block(self.mapping(), block, f) }
    }

    /// Replaces block `block` in the page cache; durable after [`Self::flush`].
    pub(crate) fn write(&self, block: u64, data: &[u8]) -> Result {
        // SAFETY: `self.mapping()` is the `bd_mapping` of the device, which `_file` keeps open
        // (type invariant) for as long as `&self` lives, which covers the call.
        unsafe { super::block::write_block(self.mapping(), block, data) }
    }

    /// Writes back everything written so far and flushes the device's write cache.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: `bdev` is the device `_file` keeps open (type invariant) for as long as `&self`
        // lives, which covers the call.
        unsafe { super::block::flush(self.bdev.as_ptr()) }
    }
}

/// The current wall-clock time (seconds, nanoseconds).
pub(crate) fn now() -> (i64, u32) {
    let mut sec = 0i64;
    let mut nsec: c_long = 0;
    // SAFETY: the helper reads the wall clock (`ktime_get_real_ts64`, callable in any context)
    // and writes through its two pointers only, which point to the locals above, live and
    // exclusive for the call.
    unsafe { ext::lcfs_now(&mut sec, &mut nsec) };
    (sec, u32::try_from(nsec).unwrap_or(0))
}

/// A superblock being filled: not yet visible, and without its per-mount state.
///
/// # Invariants
///
/// `sb` is a live, locked block-device superblock inside `fill_super`.
pub(crate) struct NewSuperBlock<'a, T: FileSystem> {
    sb: NonNull<bindings::super_block>,
    _p: PhantomData<(&'a (), T)>,
}

impl<'a, T: FileSystem> NewSuperBlock<'a, T> {
    /// # Safety
    ///
    /// `sb` must be a new block-device superblock in `fill_super`, live for `'a`.
    pub(super) unsafe fn from_raw(sb: *mut bindings::super_block) -> Self {
        // INVARIANT: per the contract.
        Self {
            // SAFETY: `sb` is a live superblock (contract), so not null.
            sb: unsafe { NonNull::new_unchecked(sb) },
            _p: PhantomData,
        }
    }

    /// Device name, for log messages.
    pub(crate) fn id(&self) -> &str {
        // SAFETY: a live superblock (type invariant) for `'a`, which outlives `&self`, the
        // lifetime of the returned name.
        unsafe { id(self.sb.as_ptr()) }
    }

    /// Size of the device in bytes.
    pub(crate) fn device_bytes(&self) -> u64 {
        // SAFETY: a live block-device superblock inside `fill_super` (type invariant): `s_bdev`
        // was set before `fill_super` and stays while the superblock lives.
        let bdev = unsafe { (*self.sb.as_ptr()).s_bdev };
        // SAFETY: `bdev` is open for the mount (through `s_bdev_file`) during `fill_super`;
        // `bdev_nr_bytes` reads its size.
        let bytes = unsafe { ext::lcfs_bdev_nr_bytes(bdev.cast()) };
        u64::try_from(bytes).unwrap_or(0)
    }

    /// Reads block `block` and calls `f` with its bytes.
    pub(crate) fn read_block<R>(&self, block: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        // SAFETY: a live block-device superblock inside `fill_super` (type invariant): `s_bdev`
        // was set before `fill_super` and stays while the superblock lives.
        let bdev = unsafe { (*self.sb.as_ptr()).s_bdev };
        // SAFETY: `bdev` is open for the mount (through `s_bdev_file`) during `fill_super`, and
        // `bd_mapping` is fixed while it is open.
        let mapping = unsafe { (*bdev).bd_mapping };
        // SAFETY: `mapping` is the `bd_mapping` of `s_bdev`, which stays open for the call (the
        // superblock holds it through `s_bdev_file` at least until `&self`'s `fill_super` ends).
        unsafe { super::block::with_block(mapping, block, f) }
    }

    /// A handle to the device, to read it and to keep in the per-mount state.
    pub(crate) fn block_device(&self) -> Result<BlockDevice> {
        let sb = self.sb.as_ptr();
        // SAFETY: a live block-device superblock inside `fill_super` (type invariant): the VFS
        // opened the device through `s_bdev_file` and set `s_bdev` to its device, and neither
        // changes while the superblock lives; plain field reads.
        let (file, bdev) = unsafe { ((*sb).s_bdev_file, (*sb).s_bdev) };
        let bdev = NonNull::new(bdev).ok_or(EINVAL)?;
        if file.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `s_bdev_file` is referenced by the superblock for its whole life, which covers
        // this call; it is not in any file table, so nobody calls `fdget_pos` on it.
        let file = ARef::from(unsafe { File::from_raw_file(file) });
        // INVARIANT: `file` is a new reference to the file that opened `bdev`.
        Ok(BlockDevice { _file: file, bdev })
    }

    /// Whether the mount was requested read-only.
    pub(crate) fn read_only(&self) -> bool {
        // SAFETY: a live superblock (type invariant, kept alive by `&self`); `sb_rdonly` reads
        // `s_flags` once.
        unsafe { ext::lcfs_sb_rdonly(self.sb.as_ptr().cast()) }
    }

    /// Turns POSIX ACLs on or off (`SB_POSIXACL`; see [`super::XattrOperations::set_acl`]).
    pub(crate) fn set_posix_acl(&self, on: bool) {
        // SAFETY: a live superblock inside `fill_super` (type invariant), not visible to any
        // other task until it returns, so the store to `s_flags` races with no reader.
        unsafe { ext::lcfs_sb_set_posixacl(self.sb.as_ptr().cast(), on) };
    }

    /// Sets the UUID reported to userspace (`FS_IOC_GETFSUUID`, `/proc/self/mountinfo` tools).
    pub(crate) fn set_uuid(&self, uuid: &[u8; 16]) {
        let sb = self.sb.as_ptr();
        // SAFETY: a live superblock inside `fill_super` (type invariant), not visible to any
        // other task until it returns (`SB_BORN` is set after), so these stores race with no
        // reader.
        unsafe {
            (*sb).s_uuid.b = *uuid;
            (*sb).s_uuid_len = 16;
        }
    }
}

/// How [`SuperBlock::shut_down`] ends the filesystem: the flags of `FS_IOC_SHUTDOWN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shutdown {
    /// `FS_SHUTDOWN_FLAGS_DEFAULT`: dirty data and metadata made durable first.
    Sync,
    /// `FS_SHUTDOWN_FLAGS_LOGFLUSH`: what the filesystem holds committed first, dirty pages not
    /// written back.
    Commit,
    /// `FS_SHUTDOWN_FLAGS_NOLOGFLUSH`, or the device gone: nothing more written.
    Now,
}

/// A mounted superblock of filesystem `T`.
///
/// # Invariants
///
/// The superblock is live and its `s_fs_info` points to a `T::Info`.
#[repr(transparent)]
pub(crate) struct SuperBlock<T: FileSystem>(Opaque<bindings::super_block>, PhantomData<T>);

impl<T: FileSystem> SuperBlock<T> {
    /// # Safety
    ///
    /// `sb` must be a superblock of `T` whose `s_fs_info` holds a `T::Info`, live for `'a`.
    pub(super) unsafe fn from_raw<'a>(sb: *mut bindings::super_block) -> &'a Self {
        // SAFETY: `Self` is a transparent wrapper of `Opaque<super_block>`, so the cast keeps
        // layout; the superblock is live for `'a` and its `s_fs_info` set (contract), as the
        // type invariant requires.
        unsafe { &*sb.cast::<Self>() }
    }

    pub(super) fn as_ptr(&self) -> *mut bindings::super_block {
        self.0.get()
    }

    /// The block device under the mount, for the mappings iomap submits I/O to.
    pub(super) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: a live, mounted block-device superblock (type invariant): `s_bdev` is set
        // before `fill_super` and stays until the superblock is killed.
        unsafe { (*self.as_ptr()).s_bdev }
    }

    /// The per-mount state.
    pub(crate) fn info(&self) -> &T::Info {
        &self.sb_info().info
    }

    fn sb_info(&self) -> &SbInfo<T> {
        // SAFETY: a live superblock (type invariant, kept alive by `&self`); `s_fs_info` is set
        // by `fill_super` before any `SuperBlock<T>` exists and cleared only by `put_super`.
        let info = unsafe { (*self.as_ptr()).s_fs_info };
        // SAFETY: `info` is the boxed `SbInfo<T>` that `fill_super` stored (type invariant),
        // freed only by `put_super` after every user of a `SuperBlock<T>` is gone; only shared
        // references to it are made.
        unsafe { &*info.cast::<SbInfo<T>>() }
    }

    /// Device name, for log messages.
    pub(crate) fn id(&self) -> &str {
        // SAFETY: a live superblock (type invariant) for as long as `&self`, the lifetime of the
        // returned name.
        unsafe { id(self.as_ptr()) }
    }

    /// Whether the filesystem is mounted read-only now.
    pub(crate) fn read_only(&self) -> bool {
        // SAFETY: a live superblock (type invariant, kept alive by `&self`); `sb_rdonly` reads
        // `s_flags` once.
        unsafe { ext::lcfs_sb_rdonly(self.as_ptr().cast()) }
    }

    /// Turns POSIX ACLs on or off (`SB_POSIXACL`) on a mounted filesystem: for `reconfigure`,
    /// which the VFS runs under `s_umount`. Permission checks already under way may still see
    /// the old setting, as on ext4.
    pub(crate) fn set_posix_acl(&self, on: bool) {
        // SAFETY: a live superblock (type invariant); the helper changes the one flag with a
        // single store (`WRITE_ONCE`), which lockless readers of `s_flags` see whole, and the
        // VFS's other writers of `s_flags` run under the `s_umount` the caller holds.
        unsafe { ext::lcfs_sb_set_posixacl(self.as_ptr().cast(), on) };
    }

    /// Whether the filesystem is frozen (`fsfreeze`, or a kernel freeze) and its
    /// [`FileSystem::freeze`] done: it must write nothing until it thaws.
    pub(crate) fn frozen(&self) -> bool {
        // SAFETY: a live superblock (type invariant, kept alive by `&self`); the helper reads
        // `s_writers.frozen` once (a racy read: a freeze or thaw in progress may be seen either
        // way, and callers that must not race one hold the freeze protection).
        unsafe { ext::lcfs_sb_frozen(self.as_ptr().cast()) }
    }

    /// Whether the filesystem is shut down ([`Self::shut_down`]).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.sb_info().shut_down.load(Ordering::Acquire)
    }

    /// `EIO` once the filesystem is shut down: the first check of every entry point of the
    /// operation tables, as ext4's and xfs's are.
    pub(super) fn live(&self) -> Result {
        if self.is_shut_down() {
            return Err(EIO);
        }
        Ok(())
    }

    /// Shuts the filesystem down (`FS_IOC_SHUTDOWN`, or its device gone): after `how`'s flush,
    /// every later call fails with `EIO` and [`FileSystem::shut_down`] makes sure nothing more
    /// reaches the device, so the next mount finds the last commit. A second shutdown does
    /// nothing.
    pub(super) fn shut_down(&self, how: Shutdown) -> Result
    where
        T: FileSystem,
    {
        if self.is_shut_down() {
            return Ok(());
        }
        if how == Shutdown::Sync {
            // Everything written so far made durable first, as `FS_SHUTDOWN_FLAGS_DEFAULT`
            // asks; on failure the filesystem stays up, as ext4's does when its freeze fails.
            self.sync()?;
        }
        // Set before the filesystem's part: calls entering from now on fail at once, and the
        // ones already inside find the filesystem's own state shut.
        if self.sb_info().shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if T::HAS_SHUT_DOWN {
            T::shut_down(self, how != Shutdown::Now);
        }
        Ok(())
    }

    /// Writes back every dirty page and inode and has the filesystem make them durable, as
    /// `syncfs(2)` does.
    fn sync(&self) -> Result {
        let sb = self.as_ptr();
        // SAFETY: a live superblock (type invariant, kept alive by `&self`: our callers run in
        // an ioctl on an open file of it); `s_umount` is its rwsem, which `syncfs(2)` takes for
        // reading around `sync_filesystem` just as here, with no other lock held (we hold none).
        unsafe { bindings::down_read(&raw mut (*sb).s_umount) };
        // SAFETY: `s_umount` is held for reading, as `sync_filesystem` requires; the superblock
        // is live and mounted.
        let r = to_result(unsafe { bindings::sync_filesystem(sb) });
        // SAFETY: taken above by this task.
        unsafe { bindings::up_read(&raw mut (*sb).s_umount) };
        r
    }

    /// Forgets the mount root's cached dentry of `name` (the mount root must be a directory whose
    /// names the filesystem changes behind the VFS's back, as LCFS's list of layers): the next
    /// lookup of `name` asks the filesystem.
    pub(crate) fn forget_root_name(&self, name: &[u8]) -> Result {
        let len = u32::try_from(name.len()).map_err(|_| EINVAL)?;
        // SAFETY: a live, mounted superblock (type invariant, kept alive by `&self`), so its
        // `s_root` is set (by `fill_super`); `name` is valid for `len` bytes during the call,
        // which only looks it up.
        unsafe { ext::lcfs_forget_root_name(self.as_ptr().cast(), name.as_ptr().cast(), len) };
        Ok(())
    }

    /// Runs `remove`, which removes the mount root's entry `name`, with that entry out of use:
    /// fails with `EBUSY` and does not call `remove` if anything uses it (an open file or a
    /// working directory below it, a mount on or below it). Meanwhile no lookup in the mount root
    /// runs, and the entry's dentry is out of the hash, so no path walk enters it; if `remove`
    /// fails, the entry is put back.
    ///
    /// Lock order: the root directory's `i_rwsem`, then whatever `remove` takes.
    pub(crate) fn detach_root_name<R>(
        &self,
        name: &[u8],
        remove: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let len = u32::try_from(name.len()).map_err(|_| EINVAL)?;
        let mut dentry = ptr::null_mut();
        // SAFETY: a live, mounted superblock (type invariant, kept alive by `&self`), so its
        // `s_root` is set; `name` is valid for `len` bytes during the call; `dentry` is a local,
        // exclusively borrowed for the call, where the helper stores its result.
        to_result(unsafe {
            ext::lcfs_detach_begin(self.as_ptr().cast(), name.as_ptr().cast(), len, &mut dentry)
        })?;
        let r = remove();
        // SAFETY: `lcfs_detach_begin` succeeded on this task: the root's `i_rwsem` is held and
        // `dentry` is the detached entry it returned; this ends that detach exactly once.
        unsafe { ext::lcfs_detach_end(self.as_ptr().cast(), dentry, r.is_ok()) };
        r
    }

    /// Writes back the data of every cached inode that `select` picks and waits for it: the
    /// data written through the page cache before the call is on disk (and recorded by
    /// [`DataOperations::write_done`]) when it returns. Only inodes with dirty folios or folios
    /// under writeback are offered to `select`, which must not sleep (it runs under spinlocks).
    /// Returns the first writeback error; the other inodes are written back all the same.
    ///
    /// [`DataOperations::write_done`]: super::DataOperations::write_done
    pub(crate) fn write_back_inodes<F: Fn(&Inode<T>) -> bool>(&self, select: F) -> Result {
        /// # Safety
        ///
        /// `inode` is a live inode of a superblock of `T`, neither `I_NEW` nor being freed,
        /// whose page cache holds folios, and `arg` points to an `F`, both live for the call.
        unsafe extern "C" fn trampoline<T: FileSystem, F: Fn(&Inode<T>) -> bool>(
            inode: *mut bindings::inode,
            arg: *mut core::ffi::c_void,
        ) -> bool {
            // SAFETY: per the contract, `inode` is an inode of `T` that is not `I_NEW` and has
            // folios. Every inode of ours comes from `iget_locked` and leaves `I_NEW` either
            // initialised (`NewInode::init`) or failed (`iget_failed`), and a failed one never
            // had address-space operations to get folios with: so this one is initialised. Its
            // `i_lock`, held for the call, keeps it from being freed.
            let inode = unsafe { Inode::<T>::from_raw(inode.cast()) };
            // SAFETY: per the contract, `arg` is the `F` `write_back_inodes` borrowed.
            let select = unsafe { &*arg.cast::<F>() };
            select(inode)
        }
        let arg: *mut core::ffi::c_void = ptr::from_ref(&select).cast_mut().cast();
        // SAFETY: a live superblock (type invariant); the helper offers `trampoline` only our
        // superblock's inodes that are neither new nor being freed, under their `i_lock`, with
        // `arg`, which points to `select`, borrowed for the whole call.
        to_result(unsafe {
            ext::lcfs_write_back_inodes(self.as_ptr().cast(), Some(trampoline::<T, F>), arg)
        })
    }

    /// Runs [`FileSystem::periodic`] once after `ms` milliseconds (replacing an earlier request).
    pub(crate) fn schedule_periodic(&self, ms: u32) {
        let work = self.sb_info().work.get();
        // SAFETY: `msecs_to_jiffies` is arithmetic on its integer argument (and `HZ`); it
        // dereferences nothing.
        let delay = unsafe { ext::lcfs_msecs_to_jiffies(ms) };
        // SAFETY: the work item was initialised in `SbInfo::new` (type invariant of `SbInfo`)
        // and is cancelled in `put_super` before the state goes away; rescheduling a pending
        // item only moves its timer.
        unsafe { ext::lcfs_schedule_delayed_work(work.cast(), delay) };
    }

    /// Runs [`FileSystem::background`] soon, in a worker (nothing if it is queued already).
    pub(crate) fn kick_background(&self) {
        let work = self.sb_info().bg_work.get();
        // SAFETY: the work item was initialised in `SbInfo::new` (type invariant of `SbInfo`)
        // and is cancelled in `put_super` before the state goes away; queueing an item that is
        // already queued does nothing.
        unsafe { ext::lcfs_queue_background(work.cast()) };
    }

    /// Cancels the background work and waits for a running instance to finish.
    pub(super) fn cancel_background(&self) {
        let work = self.sb_info().bg_work.get();
        // SAFETY: the work item was initialised in `SbInfo::new` (type invariant of `SbInfo`)
        // and lives as long as `&self`; `cancel_work_sync` may sleep (called from `put_super`, in
        // process context) and also stops a work that queues itself again.
        unsafe { ext::lcfs_cancel_work_sync(work.cast()) };
    }

    /// Waits until every completed writeback ioend has been handled.
    pub(super) fn flush_writeback(&self) {
        self.sb_info().flush_writeback();
    }

    /// Gives the mount its directory under `/sys/fs/<NAME>/` (in `root`), named after its
    /// block device, as `super_set_sysfs_name_bdev` names it for `FS_IOC_GETFSSYSFSPATH`.
    /// Called once, by `fill_super`, before the mount is visible.
    pub(super) fn register_sysfs(&self, root: &SysfsRoot) -> Result {
        let sb = self.as_ptr();
        // SAFETY: a live block-device superblock inside `fill_super`, not visible to any other
        // task yet: the helper writes its `s_sysfs_name` from `s_bdev`.
        unsafe { ext::lcfs_super_set_sysfs_name_bdev(sb.cast()) };
        // SAFETY: `s_sysfs_name` is a NUL-terminated array of the live superblock, set above and
        // not changed while it lives.
        let name = unsafe { (*sb).s_sysfs_name.as_ptr() };
        // SAFETY: the directory lives in the boxed per-mount state, which does not move and is
        // dropped only after `put_super` (which unregisters it first) or by a failed mount
        // (whose drop unregisters it); `name` is live for the call; the ktype is static, with
        // `sysfs::release_callback` and a `show` that finds this state through the kobject.
        // `fill_super` calls this once.
        unsafe {
            self.sb_info()
                .sysfs
                .register(root, name, &SysfsTables::<T>::KTYPE)
        }
    }

    /// Removes the mount's directory under `/sys/fs` (waiting for reads in progress and for
    /// its release); nothing if it has none.
    pub(super) fn unregister_sysfs(&self) {
        self.sb_info().sysfs.unregister();
    }

    /// Cancels the periodic work and waits for a running instance to finish.
    pub(super) fn cancel_periodic(&self) {
        let work = self.sb_info().work.get();
        // SAFETY: the delayed work item was initialised in `SbInfo::new` (type invariant of
        // `SbInfo`) and lives as long as `&self`; `cancel_delayed_work_sync` may sleep (called
        // from `put_super`, in process context) and also stops a work that requeues itself.
        unsafe { bindings::cancel_delayed_work_sync(work) };
    }

    /// Inode `ino` if it is in the inode cache (initialised), without reading anything.
    pub(crate) fn ilookup(&self, ino: u64) -> Option<ARef<Inode<T>>> {
        // SAFETY: the superblock is live and mounted (type invariant, kept alive by `&self`);
        // `ilookup` may sleep (callers run in process context) and returns a referenced inode or
        // null.
        let inode = NonNull::new(unsafe { bindings::ilookup(self.as_ptr(), ino) })?;
        // SAFETY: `ilookup` waited for `I_NEW` to clear and retries when a failed
        // initialisation unhashed the inode, so it returned a reference to an initialised inode
        // of this superblock, ours (our `alloc_inode`); the reference moves into the `ARef`.
        Some(unsafe { ARef::from_raw(inode.cast::<Inode<T>>()) })
    }

    /// Finds inode `ino` in the inode cache, or allocates a new one to be initialised.
    pub(crate) fn iget(&self, ino: u64) -> Result<Iget<T>> {
        // SAFETY: the superblock is live and mounted (type invariant, kept alive by `&self`);
        // `iget_locked` may sleep (callers run in process context) and returns a referenced
        // inode or null.
        let inode = unsafe { bindings::iget_locked(self.as_ptr(), ino) };
        // SAFETY: what `iget_locked` returned on this superblock.
        unsafe { Self::got(inode) }
    }

    /// Finds the content inode of `key` read from `layer` (page-cache sharing) in the inode
    /// cache, or allocates a new one to be initialised with [`NewInode::init_content`].
    ///
    /// Content inodes share the inode hash with the ones [`Self::iget`] finds but never match
    /// them: `key` must be at least 2 and below 2^40, where `iget`'s inode numbers are only 1,
    /// and `layer` must not be 0.
    pub(crate) fn iget_content(&self, key: u64, layer: u64) -> Result<Iget<T>> {
        if !(2..1 << 40).contains(&key) || layer == 0 {
            return Err(EINVAL);
        }
        let (key, layer) = (
            usize::try_from(key).map_err(|_| EINVAL)?,
            usize::try_from(layer).map_err(|_| EINVAL)?,
        );
        // SAFETY: the superblock is live and mounted (type invariant, kept alive by `&self`);
        // `iget5_locked` may sleep (callers run in process context) and returns a referenced
        // inode or null. Its test and set callbacks only read and write `i_ino` and
        // `i_private` of inodes of this superblock.
        let inode = unsafe { ext::lcfs_iget_content(self.as_ptr().cast(), key, layer) };
        // SAFETY: what `iget5_locked` returned on this superblock.
        unsafe { Self::got(inode.cast()) }
    }

    /// The result of `iget_locked` or `iget5_locked`.
    ///
    /// # Safety
    ///
    /// `inode` is what `iget_locked` or `iget5_locked` returned on this superblock: null, or a
    /// referenced inode of it whose reference moves into the result.
    unsafe fn got(inode: *mut bindings::inode) -> Result<Iget<T>> {
        let inode = NonNull::new(inode).ok_or(ENOMEM)?;
        // SAFETY: `inode` is referenced (contract), so it is live; the helper reads its
        // `I_NEW` state bit.
        if unsafe { ext::lcfs_inode_is_new(inode.as_ptr().cast()) } {
            // SAFETY: a new inode from `iget_locked` or `iget5_locked` (contract) is referenced,
            // locked (`I_NEW`) and ours to initialise; it lives in an `InodeSlot<T>` (our
            // `alloc_inode`).
            Ok(Iget::New(unsafe { NewInode::from_raw(inode) }))
        } else {
            // SAFETY: `iget_locked` (or `iget5_locked`) returned a reference to an inode of this
            // superblock that is not new: it waited for `I_NEW` to clear, and a failed
            // initialisation (`iget_failed`) unhashes the inode, so it is initialised; the
            // reference moves into the `ARef`.
            Ok(Iget::Cached(unsafe {
                ARef::from_raw(inode.cast::<Inode<T>>())
            }))
        }
    }
}

/// A scope in which memory allocations do not recurse into filesystem reclaim (`GFP_NOFS`):
/// held with the filesystem's metadata lock, so reclaim never waits on that lock (through inode
/// eviction) while the lock holder waits on reclaim.
///
/// Scopes may nest, also with the kernel's own `memalloc_nofs_save` scopes, and the task leaves
/// `GFP_NOFS` when its outermost scope ends. The order in which scopes end never matters for
/// memory safety, and for that rule only the outermost scope's end matters: in 7.3
/// `memalloc_nofs_save` returns the `PF_MEMALLOC_NOFS` bit only if it set it (the task was in no
/// scope) and `0` otherwise, and `memalloc_nofs_restore` only clears the bits it is given. So the
/// end of an inner scope changes nothing, in any order, and no order of ends leaves the bit set
/// once every scope has ended. The one thing order can change: the outermost scope ending while
/// an inner one is still held ends `GFP_NOFS` early for the inner one (its purpose, not memory
/// safety). The type rules that out as far as Rust allows without a closure-shaped API: a scope
/// cannot leave its task (not `Send`), locals drop in reverse order of creation, and the one
/// holder, `VolGuard`, pairs it with a non-recursive mutex, so two never exist at once on a task;
/// C scopes begin and end inside the calls that use them.
///
/// # Invariants
///
/// `flags` are what `memalloc_nofs_save` returned on the task that holds the value: the value is
/// not `Send`, so it drops (and restores them) on that task.
#[must_use = "the scope ends when the value drops"]
pub(crate) struct NoFsScope {
    flags: c_uint,
    _not_send: kernel::types::NotThreadSafe,
}

impl NoFsScope {
    /// Enters the scope; it ends when the value drops.
    pub(crate) fn enter() -> Self {
        // SAFETY: `memalloc_nofs_save` may be called in any context; it sets the current task's
        // `PF_MEMALLOC_NOFS` bit and touches nothing else. The matching restore in `drop` runs
        // on this task (the value is not `Send`).
        let flags = unsafe { ext::lcfs_memalloc_nofs_save() };
        // INVARIANT: saved on the current task, which the value cannot leave.
        Self {
            flags,
            _not_send: kernel::types::NotThreadSafe,
        }
    }
}

impl Drop for NoFsScope {
    fn drop(&mut self) {
        // SAFETY: the flags are those `enter` saved on this same task (type invariant), as
        // `memalloc_nofs_restore` requires; it only clears the bits it is given in the current
        // task's flags: `PF_MEMALLOC_NOFS` if this scope set it (the outermost), nothing for a
        // nested one. That is sound in any order (see the type's documentation).
        unsafe { ext::lcfs_memalloc_nofs_restore(self.flags) };
    }
}

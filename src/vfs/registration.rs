// SPDX-License-Identifier: GPL-2.0

//! Filesystem type registration and the superblock-level callbacks.

use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::AtomicIsize;

use kernel::bindings;
use kernel::error::{from_result, to_result};
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;
use super::dir::{NewNode, Rename};
use super::file::AttrChange;
use super::inode::{self, Inode, InodeCache, InodeSlot};
use super::ioctl::{Output, Request};
use super::iomap::{FileMap, MapFor};
use super::params::{Param, ParamValue};
use super::super_block::SbInfo;
use super::super_block::{NewSuperBlock, SuperBlock};
use super::xattr::XattrSet;
use super::DirContext;
use crate::format::BLOCK_SIZE;

/// Numbers reported by `statfs(2)`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StatFs {
    /// Total data blocks.
    pub(crate) blocks: u64,
    /// Free blocks.
    pub(crate) free_blocks: u64,
    /// Free blocks available to unprivileged users.
    pub(crate) avail_blocks: u64,
    /// Total inodes (0 if unlimited).
    pub(crate) files: u64,
    /// Free inodes.
    pub(crate) free_files: u64,
    /// Filesystem id.
    pub(crate) fsid: [u32; 2],
    /// Longest file name in bytes.
    pub(crate) name_len: u32,
}

/// A filesystem implemented in safe Rust on top of this layer.
pub(crate) trait FileSystem: Sized + Send + Sync + 'static {
    /// Name of the filesystem type (`mount -t NAME`).
    const NAME: &'static CStr;
    /// Value of `statfs.f_type`.
    const MAGIC: u32;
    /// Per-mount state, available through [`SuperBlock::info`] once `fill_super` succeeded.
    type Info: Send + Sync;
    /// Per-inode state. Dropped when the inode is freed, possibly in softirq context (after an RCU
    /// grace period): its `Drop` must not sleep.
    type InodeInfo: Send + Sync;
    /// Mount options, filled by [`Self::parse_param`] before [`Self::fill_super`].
    type Options: Default + Send;
    /// Mount-option table, ending with [`Param::END`]. Options not in it are rejected.
    const PARAMS: &'static [Param];

    /// Applies option number `opt` of [`Self::PARAMS`] with its parsed value.
    fn parse_param(opts: &mut Self::Options, opt: u8, value: &ParamValue<'_>) -> Result;

    /// Reads and validates the on-disk superblock and returns the per-mount state.
    fn fill_super(sb: &NewSuperBlock<'_, Self>, opts: &Self::Options) -> Result<Self::Info>;

    /// Called once the mount is complete (root set), for example to start periodic work.
    fn activate(_sb: &SuperBlock<Self>) {}

    /// Remount with new options; `read_only` is the requested state. The VFS has synced the
    /// filesystem before.
    fn reconfigure(sb: &SuperBlock<Self>, opts: &Self::Options, read_only: bool) -> Result;

    /// Makes everything written so far durable when `wait` is set (`sync`, `syncfs`, unmount).
    fn sync_fs(sb: &SuperBlock<Self>, wait: bool) -> Result;

    /// The periodic work scheduled with [`SuperBlock::schedule_periodic`] is due.
    fn periodic(sb: &SuperBlock<Self>);

    /// Unmount: all inodes are gone, the device is still open; the last chance to write.
    fn put_super(sb: &SuperBlock<Self>);

    /// Returns the root directory inode; called after `fill_super` succeeded.
    fn root(sb: &SuperBlock<Self>) -> Result<ARef<Inode<Self>>>;

    /// Reports filesystem usage.
    fn statfs(sb: &SuperBlock<Self>) -> Result<StatFs>;

    /// Looks `name` up in directory `dir`; `Ok(None)` when it does not exist.
    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<ARef<Inode<Self>>>>;

    /// Emits the entries of `dir` from `ctx.pos()` on.
    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result;

    /// Creates `name` in `dir` (any kind of inode) and returns it.
    fn create(dir: &Inode<Self>, name: &[u8], node: &NewNode<'_>) -> Result<ARef<Inode<Self>>>;

    /// Adds the name `name` in `dir` for `inode`.
    fn link(dir: &Inode<Self>, inode: &Inode<Self>, name: &[u8]) -> Result;

    /// Removes the name `name` of `inode` from `dir` (`unlink` and `rmdir`).
    fn unlink(dir: &Inode<Self>, name: &[u8], inode: &Inode<Self>) -> Result;

    /// Renames.
    fn rename(request: &Rename<'_, Self>) -> Result;

    /// Changes attributes; the cached inode holds the VFS's computed values and must be
    /// refreshed from disk (success or not).
    fn setattr(inode: &Inode<Self>, change: &AttrChange) -> Result;

    /// Maps a range of regular file `inode` (bytes) for `purpose`.
    fn map(inode: &Inode<Self>, pos: u64, len: u64, purpose: MapFor) -> Result<FileMap>;

    /// Where writeback writes the range of `inode` starting at `pos` (a `Mapped` range).
    fn map_writeback(inode: &Inode<Self>, pos: u64, len: u64) -> Result<FileMap>;

    /// The data of `[pos, pos + len)` of `inode` reached the disk.
    fn write_done(inode: &Inode<Self>, pos: u64, len: u64) -> Result;

    /// Stores the cached inode's timestamps (and its size, when given) on disk.
    fn store_attrs(inode: &Inode<Self>, size: Option<u64>) -> Result;

    /// Makes everything written to `inode` durable (its data is written back already).
    fn fsync(inode: &Inode<Self>) -> Result;

    /// Allocates the block-aligned range `[pos, pos + len)` of `inode` (`fallocate`).
    fn allocate(inode: &Inode<Self>, pos: u64, len: u64) -> Result;

    /// Frees the blocks of the block-aligned range `[pos, pos + len)` of `inode`.
    fn punch(inode: &Inode<Self>, pos: u64, len: u64) -> Result;

    /// Reads extended attribute `name` (full name) of `inode` into `buf` (which may be empty to
    /// ask for the size); returns its length. `ENODATA` if it does not exist.
    fn get_xattr(inode: &Inode<Self>, name: &[u8], buf: &mut [u8]) -> Result<usize>;

    /// Sets (`Some`) or removes (`None`) extended attribute `name` of `inode`.
    fn set_xattr(inode: &Inode<Self>, name: &[u8], value: Option<&[u8]>, how: XattrSet) -> Result;

    /// Calls `f` with each extended attribute name of `inode` until it returns `false`.
    fn list_xattrs(inode: &Inode<Self>, f: &mut dyn FnMut(&[u8]) -> bool) -> Result;

    /// The last reference to an inode without links is gone: delete it.
    fn evict(inode: &Inode<Self>);

    /// Handles an LCFS ioctl on an open file of `inode`.
    fn ioctl(inode: &Inode<Self>, request: Request, out: Output) -> Result;
}

pub(crate) use kernel::sync::aref::ARef;

/// Inodes allocated from the inode caches of all registered LCFS types and not yet freed.
///
/// Checked at module unload: anything but zero is a leak.
pub(crate) static LIVE_INODES: AtomicIsize = AtomicIsize::new(0);

/// A registered filesystem type with its inode cache.
///
/// # Invariants
///
/// While this object exists, `fst` is registered with the VFS and `inode_cache` holds objects of
/// type `InodeSlot<T>`. Fields drop after `PinnedDrop` ran, so the cache outlives the registration.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: FileSystem> {
    inode_cache: InodeCache,
    #[pin]
    fst: Opaque<bindings::file_system_type>,
    _p: PhantomData<T>,
}

// SAFETY: the object owns a kmem cache and a registered `file_system_type`; neither is tied to
// the thread that made it: `unregister_filesystem` and `kmem_cache_destroy` may run on any
// thread (module exit usually runs on another one than init).
unsafe impl<T: FileSystem> Send for Registration<T> {}
// SAFETY: shared references reach every CPU at once: mounts and inode allocations get `&Self`
// through `from_fst` while they run. They only read `inode_cache`, which is set in `new` and never
// changes, and hand `fst` to the VFS, which serialises changes to it under its own locks
// (`file_systems_lock`, the superblock list lock); no method of `Self` writes through `&self`.
unsafe impl<T: FileSystem> Sync for Registration<T> {}

impl<T: FileSystem> Registration<T> {
    /// Creates the inode cache and registers the filesystem type.
    ///
    /// If registration fails, the cache is destroyed again when the partly built object drops.
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inode_cache: inode::create_cache::<T>()?,
            fst <- Opaque::try_ffi_init(move |slot: *mut bindings::file_system_type| {
                // SAFETY: `slot` is valid for writes (pin-init contract) and all-zero is a valid
                // `file_system_type`.
                unsafe {
                    slot.write(pin_init::zeroed());
                    (*slot).name = T::NAME.as_char_ptr();
                    (*slot).owner = module.as_ptr();
                    (*slot).fs_flags = bindings::FS_REQUIRES_DEV as c_int;
                    (*slot).init_fs_context = Some(init_fs_context_callback::<T>);
                    (*slot).kill_sb = Some(kill_sb_callback::<T>);
                }
                // SAFETY: `slot` is initialised and pinned inside the registration, which
                // unregisters it before it is dropped.
                to_result(unsafe { bindings::register_filesystem(slot) })
            }),
            _p: PhantomData,
        })
    }

    /// The registration owning filesystem type `fst`.
    ///
    /// # Safety
    ///
    /// `fst` must be the `fst` field of a live `Registration<T>`.
    pub(super) unsafe fn from_fst<'a>(fst: *const bindings::file_system_type) -> &'a Self {
        // SAFETY: per the contract, `fst` lies inside a live `Registration<T>`.
        unsafe { &*kernel::container_of!(Opaque::cast_from(fst), Self, fst) }
    }

    /// The inode cache.
    pub(super) fn inode_cache(&self) -> *mut bindings::kmem_cache {
        self.inode_cache.as_ptr()
    }
}

#[pinned_drop]
impl<T: FileSystem> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `fst` was registered in `new` (type invariant). After this no new mounts can
        // start, and the module cannot be unloaded while a mount exists.
        unsafe { bindings::unregister_filesystem(self.fst.get()) };
        // `inode_cache` drops with the fields, after this: it waits for the inodes still being
        // freed through call_rcu() and reports any left.
    }
}

/// The `super_operations` of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: FileSystem> Tables<T> {
    const SUPER_OPS: bindings::super_operations = bindings::super_operations {
        alloc_inode: Some(inode::alloc_inode_callback::<T>),
        free_inode: Some(inode::free_inode_callback::<T>),
        statfs: Some(statfs_callback::<T>),
        sync_fs: Some(sync_fs_callback::<T>),
        evict_inode: Some(evict_inode_callback::<T>),
        dirty_inode: Some(dirty_inode_callback::<T>),
        put_super: Some(put_super_callback::<T>),
        // SAFETY: all-zero (all `None`) is a valid operations table.
        ..unsafe { core::mem::zeroed() }
    };

    const CONTEXT_OPS: ext::fs_context_operations = ext::fs_context_operations {
        free: Some(free_fs_context_callback::<T>),
        parse_param: Some(parse_param_callback::<T>),
        get_tree: Some(get_tree_callback::<T>),
        reconfigure: Some(reconfigure_callback::<T>),
        // SAFETY: all-zero (all `None`) is a valid operations table.
        ..unsafe { core::mem::zeroed() }
    };
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `init_fs_context`.
unsafe extern "C" fn init_fs_context_callback<T: FileSystem>(
    fc: *mut bindings::fs_context,
) -> c_int {
    let fc = fc.cast::<ext::fs_context>();
    let Ok(opts) = KBox::new(T::Options::default(), GFP_KERNEL) else {
        return ENOMEM.to_errno();
    };
    // SAFETY: the VFS passes a valid context it is setting up; `ops` points to a static table.
    // `fs_private` owns the options until `free_fs_context_callback`.
    unsafe {
        (*fc).fs_private = KBox::into_raw(opts).cast();
        (*fc).ops = &Tables::<T>::CONTEXT_OPS;
    }
    0
}

/// The options of context `fc`.
///
/// # Safety
///
/// `fc` must be a live context set up by `init_fs_context_callback::<T>`, and no other reference
/// to its options may exist for `'a`.
unsafe fn options<'a, T: FileSystem>(fc: *mut ext::fs_context) -> &'a mut T::Options {
    // SAFETY: `fs_private` holds the `KBox<T::Options>` stored at init (contract).
    unsafe { &mut *(*fc).fs_private.cast::<T::Options>() }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `free`.
unsafe extern "C" fn free_fs_context_callback<T: FileSystem>(fc: *mut ext::fs_context) {
    // SAFETY: `fs_private` is null or the box stored at init; the context is going away.
    unsafe {
        let opts = (*fc).fs_private.cast::<T::Options>();
        if !opts.is_null() {
            (*fc).fs_private = ptr::null_mut();
            drop(KBox::from_raw(opts));
        }
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `parse_param`.
unsafe extern "C" fn parse_param_callback<T: FileSystem>(
    fc: *mut ext::fs_context,
    param: *mut ext::fs_parameter,
) -> c_int {
    // SAFETY: all-zero is a valid parse result.
    let mut result: ext::fs_parse_result = unsafe { core::mem::zeroed() };
    // SAFETY: live context and parameter from the VFS; the table is static and terminated.
    // Unknown names return -ENOPARAM, which makes the VFS fail with "Unknown parameter".
    let opt = unsafe { ext::lcfs_fs_parse(fc, Param::table_ptr(T::PARAMS), param, &mut result) };
    let Ok(opt) = u8::try_from(opt) else {
        return opt;
    };
    // SAFETY: `param` is live; a string value is NUL-terminated (`fs_value_is_string`).
    let string = unsafe {
        if (*param).type_() == ext::fs_value_type_fs_value_is_string
            && !(*param).__bindgen_anon_1.string.is_null()
        {
            CStr::from_char_ptr((*param).__bindgen_anon_1.string).to_bytes()
        } else {
            &[]
        }
    };
    // SAFETY: `uint_32` is what `fs_param_is_u32` fills; for other types it is zero or unused.
    let number = unsafe { *result.__bindgen_anon_1.uint_32.as_ref() };
    let value = ParamValue { number, string };
    // SAFETY: the context was set up by our init; the VFS serialises parameter parsing.
    let opts = unsafe { options::<T>(fc) };
    from_result(|| T::parse_param(opts, opt, &value).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `reconfigure`.
unsafe extern "C" fn reconfigure_callback<T: FileSystem>(fc: *mut ext::fs_context) -> c_int {
    from_result(|| {
        // SAFETY: a remount context has the mount's root dentry, whose superblock is ours and
        // active for the call.
        let sb = unsafe { (*(*fc).root).d_sb };
        // SAFETY: the VFS holds `s_umount` for writing during reconfigure.
        kernel::error::to_result(unsafe { bindings::sync_filesystem(sb) })?;
        // SAFETY: a mounted superblock of `T` (it has our context operations).
        let sb_ref = unsafe { SuperBlock::<T>::from_raw(sb) };
        // SAFETY: as in `parse_param_callback`.
        let opts = unsafe { options::<T>(fc) };
        // SAFETY: `fc` is live.
        let read_only = unsafe { ext::lcfs_fc_rdonly(fc) };
        T::reconfigure(sb_ref, opts, read_only)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `get_tree`.
unsafe extern "C" fn get_tree_callback<T: FileSystem>(fc: *mut ext::fs_context) -> c_int {
    // SAFETY: `fc` is the context the VFS is mounting; `get_tree_bdev` opens the source device and
    // calls our `fill_super` for a new superblock.
    unsafe { ext::get_tree_bdev(fc, Some(fill_super_callback::<T>)) }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fill_super`.
unsafe extern "C" fn fill_super_callback<T: FileSystem>(
    sb: *mut bindings::super_block,
    fc: *mut ext::fs_context,
) -> c_int {
    from_result(|| {
        // SAFETY: the VFS passes a new superblock of a block device, locked, not yet visible to
        // anyone else; it stays alive for the call.
        let new = unsafe { NewSuperBlock::<T>::from_raw(sb) };
        // SAFETY: as above.
        if unsafe { ext::sb_set_blocksize(sb.cast(), BLOCK_SIZE as c_int) } == 0 {
            pr_err!(
                "{}: device does not support {}-byte blocks\n",
                new.id(),
                BLOCK_SIZE
            );
            return Err(EINVAL);
        }
        // SAFETY: `fc` is the context being mounted, set up by our init.
        let opts = unsafe { options::<T>(fc) };
        let info = T::fill_super(&new, opts)?;
        let info = SbInfo::<T>::new(sb, info)?;
        // SAFETY: the superblock is not yet live; `s_fs_info` is freed in `put_super_callback`
        // (or `kill_sb_callback` if the mount fails) after all inodes are gone.
        unsafe {
            (*sb).s_fs_info = KBox::into_raw(info).cast();
            (*sb).s_op = &Tables::<T>::SUPER_OPS;
            // CAST: u32 to the 64-bit `unsigned long`, lossless.
            (*sb).s_magic = T::MAGIC as c_ulong;
            (*sb).s_time_gran = 1;
            (*sb).s_time_min = i64::MIN;
            (*sb).s_time_max = i64::MAX;
            (*sb).s_xattr = super::xattr::handlers::<T>();
            (*sb).s_maxbytes = i64::MAX;
        }
        // SAFETY: `s_fs_info` now holds `T::Info`, which makes the superblock a `SuperBlock<T>`.
        let sb_ref = unsafe { SuperBlock::<T>::from_raw(sb) };
        let root = T::root(sb_ref)?;
        // SAFETY: `d_make_root` consumes the inode reference, also on failure.
        let dentry = unsafe { bindings::d_make_root(ARef::into_raw(root).as_ptr().cast()) };
        if dentry.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: the superblock is still private to this mount.
        unsafe { (*sb).s_root = dentry };
        T::activate(sb_ref);
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `sync_fs`.
unsafe extern "C" fn sync_fs_callback<T: FileSystem>(
    sb: *mut bindings::super_block,
    wait: c_int,
) -> c_int {
    // SAFETY: a mounted superblock of `T` (it has our operations); `s_fs_info` is set until
    // `put_super`, which runs after the last `sync_fs`.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    from_result(|| T::sync_fs(sb, wait != 0).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `dirty_inode`.
unsafe extern "C" fn dirty_inode_callback<T: FileSystem>(
    inode: *mut bindings::inode,
    _flags: c_int,
) {
    // SAFETY: the VFS marks a live inode of ours dirty (timestamps changed); an inode still
    // being set up has no state to store yet.
    unsafe {
        if inode::is_initialised::<T>(inode) && !bindings::is_bad_inode(inode) {
            // Timestamps are advisory: a failure (a frozen layer, for example) keeps the
            // cached value until the next change.
            let _ = T::store_attrs(Inode::<T>::from_raw(inode), None);
        }
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `evict_inode`.
unsafe extern "C" fn evict_inode_callback<T: FileSystem>(inode: *mut bindings::inode) {
    // SAFETY: the VFS evicts an unreferenced inode of ours: nobody else uses it any more.
    unsafe {
        bindings::truncate_inode_pages_final(&mut (*inode).i_data);
        if inode::is_initialised::<T>(inode)
            && !bindings::is_bad_inode(inode)
            && (*inode).__bindgen_anon_1.i_nlink == 0
        {
            T::evict(Inode::<T>::from_raw(inode));
        }
        bindings::clear_inode(inode);
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `put_super`.
unsafe extern "C" fn put_super_callback<T: FileSystem>(sb: *mut bindings::super_block) {
    // SAFETY: a mounted superblock of `T` being shut down: all inodes are evicted and its
    // device is still open.
    let sb_ref = unsafe { SuperBlock::<T>::from_raw(sb) };
    sb_ref.cancel_periodic();
    // Writeback has ended (the VFS synced and evicted everything), but a bio completion may
    // still be queueing its (finished) ioend's work item under the RCU read lock, and the work
    // may still be returning: wait for both before the per-mount state goes.
    kernel::sync::rcu::synchronize_rcu();
    sb_ref.flush_writeback();
    T::put_super(sb_ref);
    // SAFETY: nothing uses the per-mount state after `put_super`; dropping it here, before the
    // device is closed, means no device handle it holds can outlive the device.
    unsafe {
        let info = (*sb).s_fs_info.cast::<SbInfo<T>>();
        (*sb).s_fs_info = ptr::null_mut();
        drop(KBox::from_raw(info));
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `kill_sb`.
unsafe extern "C" fn kill_sb_callback<T: FileSystem>(sb: *mut bindings::super_block) {
    // SAFETY: the VFS tears the superblock down; this evicts all inodes and closes the device.
    unsafe { bindings::kill_block_super(sb) };
    // SAFETY: `s_fs_info` is null (after `put_super`) or, when the mount failed half-way, the
    // box stored by `fill_super_callback`, whose periodic work never started; no inode can use
    // it any more.
    unsafe {
        let info = (*sb).s_fs_info.cast::<SbInfo<T>>();
        if !info.is_null() {
            (*sb).s_fs_info = ptr::null_mut();
            drop(KBox::from_raw(info));
        }
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `statfs`.
unsafe extern "C" fn statfs_callback<T: FileSystem>(
    dentry: *mut bindings::dentry,
    buf: *mut bindings::kstatfs,
) -> c_int {
    from_result(|| {
        // SAFETY: the VFS passes a live dentry of a mounted LCFS superblock.
        let sb = unsafe { SuperBlock::<T>::from_raw((*dentry).d_sb) };
        let st = T::statfs(sb)?;
        let buf = buf.cast::<ext::kstatfs>();
        // SAFETY: `buf` points to a `kstatfs` the caller owns for this call.
        unsafe {
            // CAST (these four): u32 to the 64-bit `long`, lossless.
            (*buf).f_type = T::MAGIC as c_long;
            (*buf).f_bsize = BLOCK_SIZE as c_long;
            (*buf).f_frsize = BLOCK_SIZE as c_long;
            (*buf).f_blocks = st.blocks;
            (*buf).f_bfree = st.free_blocks;
            (*buf).f_bavail = st.avail_blocks;
            (*buf).f_files = st.files;
            (*buf).f_ffree = st.free_files;
            (*buf).f_fsid.val = st.fsid.map(|w| c_int::from_ne_bytes(w.to_ne_bytes()));
            (*buf).f_namelen = st.name_len as c_long;
        }
        Ok(0)
    })
}

/// Size of one inode slot of `T`, for the cache.
pub(super) const fn slot_size<T: FileSystem>() -> usize {
    size_of::<InodeSlot<T>>()
}

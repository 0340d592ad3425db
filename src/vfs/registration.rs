// SPDX-License-Identifier: GPL-2.0

//! The filesystem type: the [`FileSystem`] trait, its registration with the VFS, and mounting
//! through the fs_context machinery (`fs_context_operations`, `fill_super`, `kill_sb`).

use core::marker::PhantomData;
use core::ptr;

use kernel::bindings;
use kernel::error::{from_result, to_result, VTABLE_DEFAULT_ERROR};
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;
use super::dir::DirOperations;
use super::file::InodeOperations;
use super::inode::{self, Inode, InodeCache};
use super::iomap::{DataOperations, FileOperations};
use super::params::{Param, ParamValue};
use super::super_block::{NewSuperBlock, SbInfo, SuperBlock};
use super::super_ops::StatFs;
use super::sysfs::{SysfsOutput, SysfsRoot};
use super::xattr::XattrOperations;
use crate::format::BLOCK_SIZE;

/// A filesystem implemented in safe Rust on top of this layer: its type, mount context and
/// superblock operations (`file_system_type`, `fs_context_operations`, `super_operations`).
///
/// An optional method the filesystem does not implement leaves its C operation NULL, and the
/// VFS's default applies. The operations of inodes are in the per-table traits that
/// [`Operations`] gathers.
#[vtable]
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

    /// Returns the root directory inode; called after `fill_super` succeeded.
    fn root(sb: &SuperBlock<Self>) -> Result<ARef<Inode<Self>>>;

    /// Called once the mount is complete (root set), for example to start periodic work. Not a
    /// C operation: without it, nothing happens.
    fn activate(_sb: &SuperBlock<Self>) {}

    /// The periodic work scheduled with [`SuperBlock::schedule_periodic`] is due. Not a C
    /// operation: a filesystem that never schedules it need not implement it.
    fn periodic(_sb: &SuperBlock<Self>) {}

    /// Background work requested with [`SuperBlock::kick_background`]: does one bounded chunk
    /// and returns whether more remains (the work then runs again). It runs in process context
    /// with the filesystem held against freezing, and never while it is frozen or read-only.
    /// Not a C operation: a filesystem that never kicks it need not implement it.
    fn background(_sb: &SuperBlock<Self>) -> bool {
        false
    }

    /// Remount with new options; `read_only` is the requested state. The VFS has synced the
    /// filesystem before. Without it, a remount only changes the VFS's flags.
    fn reconfigure(_sb: &SuperBlock<Self>, _opts: &Self::Options, _read_only: bool) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Makes everything written so far durable when `wait` is set (`sync`, `syncfs`, unmount).
    fn sync_fs(_sb: &SuperBlock<Self>, _wait: bool) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `fsfreeze` (`FIFREEZE`): the VFS has stopped writes and page faults and synced the
    /// filesystem; make the rest durable. Until [`Self::unfreeze`] the filesystem must not
    /// commit. Without it, freezing fails with `EOPNOTSUPP`.
    fn freeze(_sb: &SuperBlock<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `FITHAW` after [`Self::freeze`]: the filesystem may write again once this returns (the
    /// VFS lets writers in after it).
    fn unfreeze(_sb: &SuperBlock<Self>) -> Result {
        Ok(())
    }

    /// Objects the filesystem caches for the superblock and could free under memory pressure
    /// (`nr_cached_objects`, asked by the superblock shrinker beside its dentries and inodes).
    /// Must not wait for the filesystem's locks: a busy filesystem may answer 0.
    fn cached_objects(_sb: &SuperBlock<Self>) -> u64 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Frees up to `nr` of [`Self::cached_objects`] (`free_cached_objects`); returns how many.
    /// Must not wait for the filesystem's locks either.
    fn free_cached_objects(_sb: &SuperBlock<Self>, _nr: u64) -> u64 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Unmount: all inodes are gone, the device is still open; the last chance to write.
    fn put_super(_sb: &SuperBlock<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The filesystem is being shut down (`FS_IOC_SHUTDOWN`, or its device gone): its entry
    /// points already fail with `EIO`. Commit what it holds if `commit` is set, then make sure
    /// nothing more is written to the device. Without it, `FS_IOC_SHUTDOWN` fails with `ENOTTY`.
    fn shut_down(_sb: &SuperBlock<Self>, _commit: bool) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports filesystem usage. Without it, `statfs(2)` fails with `ENOSYS`.
    fn statfs(_sb: &SuperBlock<Self>) -> Result<StatFs> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The last reference to an inode without links is gone: delete it.
    fn evict(_inode: &Inode<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The VFS changed the cached timestamps of `inode` (`dirty_inode`): store them.
    fn dirty_inode(_inode: &Inode<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The read-only files of each mount's directory `/sys/fs/<NAME>/<device>/`, in the order
    /// [`Self::sysfs_show`] numbers them. Empty (the default): no `/sys/fs/<NAME>/` at all, and
    /// `FS_IOC_GETFSSYSFSPATH` is not answered.
    const SYSFS_ATTRS: &'static [&'static CStr] = &[];

    /// Writes the value of file `index` of [`Self::SYSFS_ATTRS`] of mount `sb` into `out` (a
    /// line, at most a page), when someone reads it. Process context; the mount is live for the
    /// call (unmount removes the directory, waiting for reads in progress, before `put_super`).
    fn sysfs_show(_sb: &SuperBlock<Self>, _index: usize, _out: &mut SysfsOutput<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// Every operation table of a filesystem: what mounting it and setting up its inodes need.
///
/// Implemented for every type that implements the per-table traits.
pub(crate) trait Operations:
    FileSystem + InodeOperations + DirOperations + FileOperations + DataOperations + XattrOperations
{
}

impl<T> Operations for T where
    T: FileSystem
        + InodeOperations
        + DirOperations
        + FileOperations
        + DataOperations
        + XattrOperations
{
}

pub(crate) use kernel::sync::aref::ARef;

/// A registered filesystem type with its inode cache.
///
/// # Invariants
///
/// While this object exists, `fst` is registered with the VFS and `inode_cache` holds objects of
/// type `InodeSlot<T>`. Fields drop after `PinnedDrop` ran, so the cache and the type's
/// directory under `/sys/fs` (`sysfs`, when the filesystem has attributes) outlive the
/// registration.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: FileSystem> {
    inode_cache: InodeCache,
    sysfs: Option<SysfsRoot>,
    #[pin]
    fst: Opaque<bindings::file_system_type>,
    _p: PhantomData<T>,
}

// SAFETY: the registration owns a `file_system_type` and a `kmem_cache`; registering,
// unregistering and destroying them may happen on any thread (the module loader's and unloader's
// tasks differ).
unsafe impl<T: FileSystem> Send for Registration<T> {}
// SAFETY: a shared reference reads only `inode_cache`, a pointer fixed at creation, on whichever
// thread allocates an inode; `fst` is changed only by the VFS, under its own lock, through the
// pointer it was given at registration.
unsafe impl<T: FileSystem> Sync for Registration<T> {}

impl<T: Operations> Registration<T> {
    /// Creates the inode cache and registers the filesystem type.
    ///
    /// If registration fails, the cache is destroyed again when the partly built object drops.
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inode_cache: inode::create_cache::<T>()?,
            // `/sys/fs/<NAME>/` before the type can be mounted.
            sysfs: if T::SYSFS_ATTRS.is_empty() {
                None
            } else {
                Some(SysfsRoot::new(T::NAME)?)
            },
            fst <- Opaque::try_ffi_init(move |slot: *mut bindings::file_system_type| {
                let name = T::NAME.as_char_ptr();
                let owner = module.as_ptr();
                // CAST: the FS_* flags are small positive constants. Idmapped mounts: every
                // path that sets or checks an owner maps it through the mount's idmapping
                // (creations here; permissions, attributes and `statx` through the VFS helpers).
                let fs_flags = (bindings::FS_REQUIRES_DEV | bindings::FS_ALLOW_IDMAP) as c_int;
                // SAFETY: `slot` is valid for writes and not yet initialised (pin-init contract),
                // so it is written whole, without dropping old contents: all-zero is a valid
                // `file_system_type` (pointers null, function pointers `None`, integers zero),
                // then the fields that matter are stored. `name` is a static string and the
                // callbacks are functions, so all outlive the registration.
                unsafe {
                    slot.write(pin_init::zeroed());
                    (*slot).name = name;
                    (*slot).owner = owner;
                    (*slot).fs_flags = fs_flags;
                    (*slot).init_fs_context = Some(init_fs_context_callback::<T>);
                    (*slot).kill_sb = Some(kill_sb_callback::<T>);
                }
                // SAFETY: `slot` is initialised (above) and pinned inside the registration, which
                // unregisters it before it is dropped (`PinnedDrop`), so the VFS's pointer to it
                // stays valid while registered.
                to_result(unsafe { bindings::register_filesystem(slot) })
            }),
            _p: PhantomData,
        })
    }
}

impl<T: FileSystem> Registration<T> {
    /// The registration owning filesystem type `fst`.
    ///
    /// # Safety
    ///
    /// `fst` must be the `fst` field of a live `Registration<T>`.
    pub(super) unsafe fn from_fst<'a>(fst: *const bindings::file_system_type) -> &'a Self {
        // SAFETY: per the contract, `fst` is the `fst` field of a live `Registration<T>`, so the
        // containing object is live for `'a`; only shared references to it are made.
        unsafe { &*kernel::container_of!(Opaque::cast_from(fst), Self, fst) }
    }

    /// The inode cache.
    pub(super) fn inode_cache(&self) -> *mut bindings::kmem_cache {
        self.inode_cache.as_ptr()
    }

    /// `/sys/fs/<NAME>/`, if the filesystem has attributes.
    pub(super) fn sysfs(&self) -> Option<&SysfsRoot> {
        self.sysfs.as_ref()
    }
}

#[pinned_drop]
impl<T: FileSystem> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `fst` was registered in `new` (type invariant). After this no new mounts can
        // start, and the module cannot be unloaded while a mount exists.
        unsafe { bindings::unregister_filesystem(self.fst.get()) };
        // `inode_cache` drops after this: it waits for inodes still being freed through
        // call_rcu() and reports leaks before it is destroyed.
    }
}

/// The `fs_context_operations` of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: Operations> Tables<T> {
    const CONTEXT_OPS: ext::fs_context_operations = ext::fs_context_operations {
        free: Some(free_fs_context_callback::<T>),
        parse_param: Some(parse_param_callback::<T>),
        get_tree: Some(get_tree_callback::<T>),
        reconfigure: if T::HAS_RECONFIGURE {
            Some(reconfigure_callback::<T>)
        } else {
            None
        },
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `init_fs_context`.
unsafe extern "C" fn init_fs_context_callback<T: Operations>(
    fc: *mut bindings::fs_context,
) -> c_int {
    let fc = fc.cast::<ext::fs_context>();
    let Ok(opts) = KBox::new(T::Options::default(), GFP_KERNEL) else {
        return ENOMEM.to_errno();
    };
    let opts = KBox::into_raw(opts).cast::<c_void>();
    // SAFETY: `init_fs_context`'s contract: `fc` is a live context the VFS is setting up on
    // this task, not yet used by anyone else, whose `fs_private` and `ops` are ours to set.
    // `fs_private` owns the options from here until `free_fs_context_callback`; `ops` points to
    // a static table, which the complete `ext::fs_context` definition places where the C
    // struct has it (checked by the KUnit layout test).
    unsafe {
        (*fc).fs_private = opts;
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
    // SAFETY: `fc` is live (contract).
    let opts = unsafe { (*fc).fs_private };
    // SAFETY: `fs_private` holds the `KBox<T::Options>` stored at init (contract), live until
    // `free`, and no other reference to it exists for `'a` (contract).
    unsafe { &mut *opts.cast::<T::Options>() }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `free`.
unsafe extern "C" fn free_fs_context_callback<T: FileSystem>(fc: *mut ext::fs_context) {
    // SAFETY: `free`'s contract: `fc` is the live context being freed, used by no one else
    // during the call. Its `fs_private` is null (if `init_fs_context` failed before setting
    // it) or the box our init stored.
    let opts = unsafe { (*fc).fs_private.cast::<T::Options>() };
    if opts.is_null() {
        return;
    }
    // SAFETY: the same live context, ours alone during `free`: clearing `fs_private` before
    // the box is dropped means the context never points to freed options.
    unsafe { (*fc).fs_private = ptr::null_mut() };
    // SAFETY: a non-null `fs_private` of our context is the box `init_fs_context_callback::<T>`
    // stored, owned by the context until now.
    drop(unsafe { KBox::from_raw(opts) });
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `parse_param`.
unsafe extern "C" fn parse_param_callback<T: FileSystem>(
    fc: *mut ext::fs_context,
    param: *mut ext::fs_parameter,
) -> c_int {
    // All-zero, as bindgen's `Default` builds it.
    let mut result = ext::fs_parse_result::default();
    let table = Param::table_ptr(T::PARAMS);
    // SAFETY: `fc` and `param` are the live arguments of this `parse_param` call; the table is
    // static and ends with `Param::END`, as `fs_parse` requires; `result` is a local,
    // exclusively borrowed for the call. Unknown names return -ENOPARAM, which makes the VFS
    // fail with "Unknown parameter".
    let opt = unsafe { ext::lcfs_fs_parse(fc, table, param, &mut result) };
    let Ok(opt) = u8::try_from(opt) else {
        return opt;
    };
    // SAFETY: `param` is the live parameter of the call; `type` is a bitfield the VFS set
    // before the call, read whole.
    let is_string = unsafe { (*param).type_() } == ext::fs_value_type_fs_value_is_string;
    let string = if is_string {
        // SAFETY: `param` is live, and its type is `fs_value_is_string` (checked above), for
        // which `string` is the union member the VFS set.
        let ptr = unsafe { (*param).__bindgen_anon_1.string };
        if ptr.is_null() {
            &[]
        } else {
            // SAFETY: a string value is NUL-terminated (`fs_value_is_string`) and lives for the
            // call.
            unsafe { CStr::from_char_ptr(ptr) }.to_bytes()
        }
    } else {
        &[]
    };
    // SAFETY: `result` was all-zero before `fs_parse`, and every union member is an integer or
    // an integer wrapper, so any member's bytes are a valid `u32`: `uint_32` is what
    // `fs_param_is_u32` fills, and for other types it is zero or unused.
    let number = unsafe { *result.__bindgen_anon_1.uint_32.as_ref() };
    let value = ParamValue {
        number,
        string,
        negated: result.negated,
    };
    // SAFETY: `fc` has our context operations, so `init_fs_context_callback::<T>` set it up;
    // the VFS parses a context's parameters one at a time, on the task that owns the context,
    // so no other reference to its options exists while `opts` (which ends with this call)
    // lives.
    let opts = unsafe { options::<T>(fc) };
    from_result(|| T::parse_param(opts, opt, &value).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `reconfigure`.
unsafe extern "C" fn reconfigure_callback<T: FileSystem>(fc: *mut ext::fs_context) -> c_int {
    from_result(|| {
        // SAFETY: `reconfigure`'s contract: `fc` is a live remount context, whose `root` is the
        // mount's root dentry, referenced by the context.
        let root = unsafe { (*fc).root };
        // SAFETY: `root` is live (referenced by `fc`); `d_sb` is fixed for its life, and that
        // superblock is ours and active for the call.
        let sb = unsafe { (*root).d_sb };
        // SAFETY: `sb` is live and active, and the VFS holds its `s_umount` for writing during
        // reconfigure, as `sync_filesystem` requires.
        kernel::error::to_result(unsafe { bindings::sync_filesystem(sb) })?;
        // SAFETY: a mounted superblock of `T` (the context has our operations), live and with
        // `s_fs_info` set for the call (an active superblock is past `fill_super` and before
        // `put_super`).
        let sb_ref = unsafe { SuperBlock::<T>::from_raw(sb) };
        // SAFETY: the context was set up by our init (it has our operations); the VFS holds
        // `s_umount` and uses the context from this task only, so no other reference exists.
        let opts = unsafe { options::<T>(fc) };
        // SAFETY: `fc` is live for the call; the helper reads the `sb_flags` it requests.
        let read_only = unsafe { ext::lcfs_fc_rdonly(fc) };
        T::reconfigure(sb_ref, opts, read_only)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `get_tree`.
unsafe extern "C" fn get_tree_callback<T: Operations>(fc: *mut ext::fs_context) -> c_int {
    // SAFETY: `fc` is the context the VFS is mounting; `get_tree_bdev` opens the source device and
    // calls our `fill_super` for a new superblock.
    unsafe { ext::get_tree_bdev(fc, Some(fill_super_callback::<T>)) }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fill_super`.
unsafe extern "C" fn fill_super_callback<T: Operations>(
    sb: *mut bindings::super_block,
    fc: *mut ext::fs_context,
) -> c_int {
    from_result(|| {
        // SAFETY: the VFS passes a new superblock of a block device, locked, not yet visible to
        // anyone else; it stays alive for the call.
        let new = unsafe { NewSuperBlock::<T>::from_raw(sb) };
        // CAST: the block size is a small power of two.
        let block_size = BLOCK_SIZE as c_int;
        // SAFETY: the new superblock, private to this call, has an open block device
        // (`get_tree_bdev` opened it; the type has `FS_REQUIRES_DEV`), whose block size
        // `sb_set_blocksize` sets.
        if unsafe { ext::sb_set_blocksize(sb.cast(), block_size) } == 0 {
            pr_err!(
                "{}: device does not support {}-byte blocks\n",
                new.id(),
                BLOCK_SIZE
            );
            return Err(EINVAL);
        }
        // SAFETY: `fc` is the context being mounted, set up by our init; `get_tree` runs on
        // this task alone, so no other reference to its options exists.
        let opts = unsafe { options::<T>(fc) };
        let info = T::fill_super(&new, opts)?;
        let info = SbInfo::<T>::new(sb, info)?;
        let info = KBox::into_raw(info).cast::<c_void>();
        let s_op = super::super_ops::super_operations::<T>();
        let s_xattr = super::xattr::handlers::<T>();
        // CAST: u32 to the 64-bit `unsigned long`, lossless.
        let magic = T::MAGIC as c_ulong;
        // SAFETY: the superblock is live and private to this call until the mount completes
        // (`SB_BORN` is set after `fill_super` returns), so these stores race with no reader.
        // `s_fs_info` takes over the box, released by `SbInfo::release` in `put_super_callback`
        // (or `kill_sb_callback` if the mount fails), after all inodes are gone; the tables are
        // static.
        unsafe {
            (*sb).s_fs_info = info;
            (*sb).s_op = s_op;
            (*sb).s_magic = magic;
            (*sb).s_time_gran = 1;
            (*sb).s_time_min = i64::MIN;
            (*sb).s_time_max = i64::MAX;
            (*sb).s_xattr = s_xattr;
            (*sb).s_maxbytes = i64::MAX;
        }
        // SAFETY: the superblock is live for the call and its `s_fs_info` now holds the
        // `SbInfo<T>` with `T::Info`, which makes it a `SuperBlock<T>`.
        let sb_ref = unsafe { SuperBlock::<T>::from_raw(sb) };
        let root = T::root(sb_ref)?;
        let root = ARef::into_raw(root).as_ptr().cast::<bindings::inode>();
        // SAFETY: `root` is a live inode of this superblock carrying the reference `into_raw`
        // released, which `d_make_root` consumes, also on failure (it `iput`s it).
        let dentry = unsafe { bindings::d_make_root(root) };
        if dentry.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `fill_super` runs with the new superblock not yet visible to any other task
        // (`SB_BORN` is set after it returns, under `s_umount` held by the mount), so writing
        // `s_root` races with nothing; the dentry's reference moves to the superblock.
        unsafe { (*sb).s_root = dentry };
        // SAFETY: a superblock of `T` has the `fst` of our `Registration<T>` as its type, and
        // the registration outlives every superblock of the type.
        let reg = unsafe { Registration::<T>::from_fst((*sb).s_type) };
        if let Some(root) = reg.sysfs() {
            // A failure fails the mount: `put_super` (the root is set) frees the state.
            sb_ref.register_sysfs(root)?;
        }
        T::activate(sb_ref);
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `kill_sb`.
unsafe extern "C" fn kill_sb_callback<T: FileSystem>(sb: *mut bindings::super_block) {
    // SAFETY: `kill_sb`'s contract: called once per superblock, by the VFS, after its last active
    // reference went; `kill_block_super` is the teardown a block-device filesystem owes it
    // (it calls our `put_super`, evicts all inodes and releases the device).
    unsafe { bindings::kill_block_super(sb) };
    // SAFETY: `s_fs_info` is null (after `put_super`) or, when the mount failed half-way, the
    // state stored by `fill_super_callback`, whose periodic work never started; the inodes are
    // gone, so nothing uses it any more.
    unsafe { SbInfo::<T>::release(sb) };
}

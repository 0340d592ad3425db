// SPDX-License-Identifier: GPL-2.0

//! Inode handles, the inode cache, and the tokens for the locks the VFS holds around inode
//! operations.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicIsize, Ordering};

use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;
use super::file::FileAttrs;
use super::registration::{ARef, FileSystem, Operations, Registration};
use super::super_block::SuperBlock;

/// Inodes allocated from the inode caches of all registered LCFS types and not yet freed.
///
/// Checked when a cache is destroyed (module unload): anything but zero is a leak.
static LIVE_INODES: AtomicIsize = AtomicIsize::new(0);

/// One object of the inode cache: the VFS inode and the filesystem's data next to it.
///
/// # Invariants
///
/// `info` is `Some` once the inode was initialised through [`NewInode::init`]; `cache` is the
/// cache the slot was allocated from.
#[repr(C)]
pub(super) struct InodeSlot<T: FileSystem> {
    cache: *mut bindings::kmem_cache,
    info: Option<T::InodeInfo>,
    /// Birth time, reported by `statx`.
    btime: (i64, u32),
    /// A symlink's NUL-terminated target; `i_link` points into it.
    link: Option<KVec<u8>>,
    vfs_inode: Opaque<bindings::inode>,
}

/// The slot holding `inode`.
///
/// # Safety
///
/// `inode` must come from [`alloc_inode_callback`] of the same `T`.
unsafe fn slot_of<T: FileSystem>(inode: *const bindings::inode) -> *mut InodeSlot<T> {
    // SAFETY: every inode of `T` is the `vfs_inode` field of an `InodeSlot<T>` (contract).
    unsafe { kernel::container_of!(Opaque::cast_from(inode), InodeSlot<T>, vfs_inode).cast_mut() }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `inode_ctor`.
unsafe extern "C" fn inode_ctor<T: FileSystem>(obj: *mut c_void) {
    let slot = obj.cast::<InodeSlot<T>>();
    // SAFETY: the slab calls the constructor once per object of our cache, before the object is
    // first handed out; the cache was created with the size and alignment of `InodeSlot<T>`, so
    // `obj` is valid for one and `vfs_inode` lies inside it. Only the field's address is taken.
    unsafe { bindings::inode_init_once(Opaque::cast_into(ptr::addr_of!((*slot).vfs_inode))) };
}

/// The inode cache of a filesystem type; destroyed on drop.
///
/// # Invariants
///
/// `0` is a live `kmem_cache` owned by this object.
pub(super) struct InodeCache(NonNull<bindings::kmem_cache>);

impl InodeCache {
    pub(super) fn as_ptr(&self) -> *mut bindings::kmem_cache {
        self.0.as_ptr()
    }
}

impl Drop for InodeCache {
    fn drop(&mut self) {
        // SAFETY: `rcu_barrier` may sleep: this runs in process context (module exit or failed
        // init) with no locks held. Freed inodes go back to the cache through call_rcu(): wait
        // for all of them before destroying it.
        unsafe { bindings::rcu_barrier() };
        let live = LIVE_INODES.load(Ordering::Relaxed);
        if live != 0 {
            pr_err!("{} inodes leaked at unload\n", live);
        } else {
            pr_info!("unloaded, no inodes left\n");
        }
        // SAFETY: the cache is live and owned (type invariant), and after the barrier no object
        // of it is pending release (a leaked one would be reported by the slab allocator).
        unsafe { bindings::kmem_cache_destroy(self.as_ptr()) };
    }
}

/// Creates the inode cache of `T`.
pub(super) fn create_cache<T: FileSystem>() -> Result<InodeCache> {
    let size = u32::try_from(size_of::<InodeSlot<T>>()).map_err(|_| EINVAL)?;
    let align = u32::try_from(align_of::<InodeSlot<T>>()).map_err(|_| EINVAL)?;
    // SAFETY: the name is a static NUL-terminated string, as `kmem_cache_create` keeps it; the
    // size and alignment are those of `InodeSlot<T>`, which `inode_ctor::<T>` initialises.
    let cache = unsafe {
        ext::lcfs_inode_cache_create(
            c"lcfs_inode".as_char_ptr(),
            size,
            align,
            Some(inode_ctor::<T>),
        )
    };
    let cache = NonNull::new(cache.cast()).ok_or(ENOMEM)?;
    // INVARIANT: a live cache, owned from here on.
    Ok(InodeCache(cache))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `alloc_inode`.
pub(super) unsafe extern "C" fn alloc_inode_callback<T: FileSystem>(
    sb: *mut bindings::super_block,
) -> *mut bindings::inode {
    // SAFETY: `alloc_inode`'s contract: `sb` is a live superblock, ours (it has our superblock
    // operations).
    let fst = unsafe { (*sb).s_type };
    // SAFETY: a superblock of `T` has the `fst` of our `Registration<T>` as its type, and the
    // registration outlives every superblock of the type (the module cannot be unloaded while a
    // mount exists, and unregistering comes first).
    let reg = unsafe { Registration::<T>::from_fst(fst) };
    let cache = reg.inode_cache();
    // SAFETY: `cache` is the live inode cache of the registration (type invariant of
    // `Registration`), whose objects are `InodeSlot<T>`s; `sb` is live for the call.
    let obj = unsafe { ext::lcfs_alloc_inode_sb(sb.cast(), cache.cast()) };
    if obj.is_null() {
        return ptr::null_mut();
    }
    // `alloc_inode_sb` returns the start of the cache object, which is the slot.
    let slot = obj.cast::<InodeSlot<T>>();
    // SAFETY: `slot` is a fresh object of our cache, sized and aligned for `InodeSlot<T>` and
    // not yet visible to anyone else; `vfs_inode` was set up by the constructor, and the other
    // fields are written here, in place without reading or dropping old contents, before
    // anything reads them.
    unsafe {
        ptr::addr_of_mut!((*slot).cache).write(cache);
        ptr::addr_of_mut!((*slot).info).write(None);
        ptr::addr_of_mut!((*slot).btime).write((0, 0));
        ptr::addr_of_mut!((*slot).link).write(None);
    }
    LIVE_INODES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `slot` points to the live object just allocated; only the field's address is
    // taken.
    Opaque::cast_into(unsafe { ptr::addr_of!((*slot).vfs_inode) })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `free_inode`.
pub(super) unsafe extern "C" fn free_inode_callback<T: FileSystem>(inode: *mut bindings::inode) {
    // SAFETY: the VFS frees only inodes of our superblocks, which it got from
    // `alloc_inode_callback::<T>`.
    let slot = unsafe { slot_of::<T>(inode) };
    // SAFETY: `free_inode` is called once per inode, after an RCU grace period: nothing else
    // references the inode or its slot any more, so an exclusive reference to the slot is
    // valid until the slot is freed below. Its Rust fields are initialised
    // (`alloc_inode_callback` wrote them before the VFS saw the inode).
    let slot_ref = unsafe { &mut *slot };
    let cache = slot_ref.cache;
    // Taking them leaves `None`, which owns nothing, so freeing the memory below leaks nothing.
    // The filesystem's per-inode state drops here, in safe code (its drop must not sleep: this
    // runs from an RCU callback; documented on `FileSystem::InodeInfo`).
    drop(slot_ref.info.take());
    drop(slot_ref.link.take());
    // SAFETY: the slot came from `cache` (`alloc_inode_callback`), no field of it owns anything
    // now (the `Option`s are `None`, the other fields are plain data and the C inode's own
    // teardown is done), and nothing uses it after this (`slot_ref` ends above).
    unsafe { bindings::kmem_cache_free(cache, slot.cast()) };
    LIVE_INODES.fetch_sub(1, Ordering::Relaxed);
}

/// What kind of object an inode is; decides its operation tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InodeKind {
    /// A directory.
    Directory,
    /// A regular file.
    Regular,
    /// A symbolic link.
    Symlink,
    /// A character device node (`rdev` in Linux `new_encode_dev` form).
    CharDevice,
    /// A block device node.
    BlockDevice,
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
}

impl InodeKind {
    fn type_bits(self) -> u32 {
        match self {
            Self::Directory => bindings::S_IFDIR,
            Self::Regular => bindings::S_IFREG,
            Self::Symlink => bindings::S_IFLNK,
            Self::CharDevice => bindings::S_IFCHR,
            Self::BlockDevice => bindings::S_IFBLK,
            Self::Fifo => bindings::S_IFIFO,
            Self::Socket => bindings::S_IFSOCK,
        }
    }

    /// The kind of a full mode (`S_IFMT` bits), if it is one.
    pub(crate) fn from_mode(mode: u32) -> Option<Self> {
        [
            Self::Directory,
            Self::Regular,
            Self::Symlink,
            Self::CharDevice,
            Self::BlockDevice,
            Self::Fifo,
            Self::Socket,
        ]
        .into_iter()
        .find(|k| k.type_bits() == mode & bindings::S_IFMT)
    }
}

/// Attributes of an inode being initialised or refreshed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InodeParams {
    /// Kind of inode (fixed for its life).
    pub(crate) kind: InodeKind,
    /// Permission bits (`0o7777` at most; the type bits come from `kind`).
    pub(crate) perm: u16,
    /// Link count.
    pub(crate) nlink: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Allocated space in 512-byte units.
    pub(crate) blocks: u64,
    /// Device number of a device node (`new_encode_dev` form).
    pub(crate) rdev: u64,
    /// Generation (NFS file handles).
    pub(crate) generation: u64,
    /// Access time (seconds, nanoseconds).
    pub(crate) atime: (i64, u32),
    /// Modification time.
    pub(crate) mtime: (i64, u32),
    /// Change time.
    pub(crate) ctime: (i64, u32),
    /// Birth time.
    pub(crate) btime: (i64, u32),
    /// File attributes (`chattr`): immutable, append-only and noatime become the VFS inode's
    /// `S_IMMUTABLE`, `S_APPEND` and `S_NOATIME`, which the VFS enforces.
    pub(crate) attrs: FileAttrs,
}

/// Writes the attributes every refresh sets.
///
/// # Safety
///
/// `inode` must be a live inode whose attributes the caller may change (new and locked, or
/// protected by the locks the VFS holds around the operation).
unsafe fn set_attributes(inode: *mut bindings::inode, params: &InodeParams) {
    // CAST: `mode` fits in 16 bits (type bits | 0o7777).
    let mode = (params.kind.type_bits() | (u32::from(params.perm) & 0o7777)) as u16;
    let size = i64::try_from(params.size).unwrap_or(i64::MAX);
    let (atime, mtime, ctime) = (params.atime, params.mtime, params.ctime);
    let (atime_ns, mtime_ns, ctime_ns) = (nsec(atime.1), nsec(mtime.1), nsec(ctime.1));
    // CAST: NFS generations are 32-bit; the low bits are what file handles carry.
    let generation = params.generation as u32;
    // Each block below relies on the function contract: `inode` is live and its attributes are
    // the caller's to change, either because the inode is new (`I_NEW`, invisible to anyone
    // else until `unlock_new_inode`) or because the VFS holds the lock that serialises attribute
    // changes around the operation (`i_rwsem`).
    // SAFETY: `inode` is live and `i_mode` the caller's to change (contract); a plain store.
    unsafe { (*inode).i_mode = mode };
    // SAFETY: `inode` is live and its link count the caller's to change (contract);
    // `set_nlink` also keeps the superblock's count of unlinked inodes right.
    unsafe { bindings::set_nlink(inode, params.nlink) };
    // SAFETY: `inode` is live and its owner the caller's to change (contract); the helper
    // stores the id mapped from the initial user namespace.
    unsafe { ext::lcfs_i_uid_write(inode.cast(), params.uid) };
    // SAFETY: `inode` is live and its group the caller's to change (contract); the helper
    // stores the id mapped from the initial user namespace.
    unsafe { ext::lcfs_i_gid_write(inode.cast(), params.gid) };
    // SAFETY: `inode` is live and its size the caller's to change (contract): `i_size_write`
    // needs writers serialised, which the new state or `i_rwsem` does, and keeps lockless
    // `i_size_read`ers seeing a whole value.
    unsafe { ext::lcfs_i_size_write(inode.cast(), size) };
    // SAFETY: `inode` is live and its block count the caller's to change (contract); a plain
    // store, as the VFS's own attribute refreshes do under the same locks.
    unsafe { (*inode).i_blocks = params.blocks };
    // SAFETY: `inode` is live and its times the caller's to change (contract); the setter
    // writes only the access time.
    unsafe { ext::lcfs_inode_set_atime(inode.cast(), atime.0, atime_ns) };
    // SAFETY: `inode` is live and its times the caller's to change (contract); the setter
    // writes only the modification time.
    unsafe { ext::lcfs_inode_set_mtime(inode.cast(), mtime.0, mtime_ns) };
    // SAFETY: `inode` is live and its times the caller's to change (contract); the setter
    // writes only the change time.
    unsafe { ext::lcfs_inode_set_ctime(inode.cast(), ctime.0, ctime_ns) };
    // SAFETY: `inode` is live and `i_generation` the caller's to change (contract); a plain
    // store.
    unsafe { (*inode).i_generation = generation };
    // SAFETY: `inode` is live and its attribute flags the caller's to change (contract);
    // `inode_set_flags` changes only the bits in the mask, with a compare-and-exchange, so the
    // VFS's own flags in `i_flags` (set by others without this lock) are kept.
    unsafe { bindings::inode_set_flags(inode, params.attrs.inode_flags(), ATTR_I_FLAGS) };
}

/// The `i_flags` bits [`FileAttrs`] decide.
const ATTR_I_FLAGS: u32 = bindings::S_IMMUTABLE | bindings::S_APPEND | bindings::S_NOATIME;

/// Nanoseconds as the C `long` the time setters take; values over a second are clamped.
fn nsec(ns: u32) -> c_long {
    c_long::try_from(ns.min(999_999_999)).unwrap_or(0)
}

/// A referenced, fully initialised inode of `T`.
///
/// # Invariants
///
/// The inode belongs to a superblock of `T`, came from [`alloc_inode_callback`] and was
/// initialised by [`NewInode::init`].
#[repr(transparent)]
pub(crate) struct Inode<T: FileSystem>(Opaque<bindings::inode>, PhantomData<T>);

// SAFETY: `ihold` and `iput` may be called from any thread on a referenced inode.
unsafe impl<T: FileSystem> kernel::sync::aref::AlwaysRefCounted for Inode<T> {
    fn inc_ref(&self) {
        // SAFETY: `&self` proves a reference is held (the inode is live and `i_count` nonzero),
        // which is what `ihold` requires.
        unsafe { bindings::ihold(self.0.get()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: the caller owns the reference being dropped (`dec_ref`'s contract) and does not
        // use `obj` after; `iput` may evict and free the inode if it was the last.
        unsafe { bindings::iput(obj.cast().as_ptr()) };
    }
}

impl<T: FileSystem> Inode<T> {
    /// # Safety
    ///
    /// `inode` must be an initialised inode of `T`, live for `'a`.
    pub(super) unsafe fn from_raw<'a>(inode: *mut bindings::inode) -> &'a Self {
        // SAFETY: `Self` is a `repr(transparent)` wrapper of `Opaque<inode>`, so the cast keeps
        // layout; the inode is initialised, of `T` and live for `'a` (contract), which is the
        // type invariant.
        unsafe { &*inode.cast::<Self>() }
    }

    pub(super) fn as_ptr(&self) -> *mut bindings::inode {
        self.0.get()
    }

    /// The slot holding the inode.
    fn slot(&self) -> &InodeSlot<T> {
        // SAFETY: the inode came from `alloc_inode_callback::<T>` (type invariant).
        let slot = unsafe { slot_of::<T>(self.as_ptr()) };
        // SAFETY: the slot is live while `&self` keeps the inode alive, and its Rust fields are
        // changed only while no `Inode<T>` reference to it exists (by `NewInode::init`, before
        // the inode is handed out, and by `free_inode_callback`, after the last reference);
        // `vfs_inode` is `Opaque`, so a shared reference allows the C side to change it.
        unsafe { &*slot }
    }

    /// The filesystem's per-inode state.
    pub(crate) fn info(&self) -> &T::InodeInfo {
        let info = self.slot().info.as_ref();
        // SAFETY: an initialised inode's slot holds `Some(info)` from `NewInode::init` until it
        // is freed (type invariant), and `&self` keeps it from being freed.
        unsafe { info.unwrap_unchecked() }
    }

    /// Sets the allocated space (512-byte units) after the filesystem allocated or freed data.
    pub(crate) fn set_blocks(&self, blocks: u64) {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); the helper takes `i_lock`,
        // as `inode_add_bytes` does, so concurrent updates and `stat` readers see a whole value.
        unsafe { ext::lcfs_inode_set_blocks(self.as_ptr().cast(), blocks) };
    }

    /// Cached access, modification and change times.
    pub(crate) fn times(&self) -> [(i64, u32); 3] {
        let mut sec = [0i64; 3];
        let mut ns: [c_long; 3] = [0; 3];
        // SAFETY: a live inode (type invariant, kept alive by `&self`); the helper reads the
        // three timestamps and writes three elements to each of the two local arrays, which hold
        // three and are exclusively borrowed for the call.
        unsafe {
            ext::lcfs_inode_get_times(self.as_ptr().cast(), sec.as_mut_ptr(), ns.as_mut_ptr())
        };
        [0, 1, 2].map(|i| (sec[i], u32::try_from(ns[i]).unwrap_or(0)))
    }

    /// The cached mode (type and permission bits).
    pub(super) fn mode(&self) -> u32 {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_mode` is a plain
        // integer field, read whole.
        u32::from(unsafe { (*self.as_ptr()).i_mode })
    }

    /// `EPERM` if the inode's attributes forbid changing its data as asked: it is immutable, or
    /// append-only and the change does not only append (`appending`), as ext4 refuses. Callers
    /// on the write paths hold `i_rwsem`, under which [`FileAttrs`] change, so the answer holds
    /// for their change; a write fault (no `i_rwsem`) reads the flags as ext4's does, and a
    /// `chattr` writes the file back first, so a fault after it comes here again.
    pub(super) fn check_data_change(&self, appending: bool) -> Result {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_flags` is a plain
        // integer field, read whole, as `IS_IMMUTABLE` and `IS_APPEND` read it.
        let flags = unsafe { (*self.as_ptr()).i_flags };
        if flags & bindings::S_IMMUTABLE != 0 || (flags & bindings::S_APPEND != 0 && !appending) {
            return Err(EPERM);
        }
        Ok(())
    }

    /// Whether the inode is immutable or append-only now (`S_IMMUTABLE`, `S_APPEND`).
    pub(super) fn is_immutable_or_append(&self) -> (bool, bool) {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_flags` is a plain
        // integer field, read whole.
        let flags = unsafe { (*self.as_ptr()).i_flags };
        (
            flags & bindings::S_IMMUTABLE != 0,
            flags & bindings::S_APPEND != 0,
        )
    }

    /// The link count.
    pub(crate) fn nlink(&self) -> u32 {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_nlink` is a plain
        // integer field, read whole (the union member the VFS keeps it in).
        unsafe { (*self.as_ptr()).__bindgen_anon_1.i_nlink }
    }

    /// The cached owner and group, in the initial user namespace.
    pub(super) fn owner(&self) -> (u32, u32) {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_uid_read` reads
        // `i_uid`, a word-sized field, and maps it to the initial user namespace.
        let uid = unsafe { ext::lcfs_i_uid_read(self.as_ptr().cast()) };
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_gid_read` reads
        // `i_gid`, a word-sized field, and maps it to the initial user namespace.
        let gid = unsafe { ext::lcfs_i_gid_read(self.as_ptr().cast()) };
        (uid, gid)
    }

    /// The cached size in bytes (`i_size_read`: a whole value even without `i_rwsem`).
    pub(crate) fn size(&self) -> i64 {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_size_read` needs no
        // lock (it retries on the size's seqcount where a 64-bit load is not atomic).
        unsafe { ext::lcfs_i_size_read(self.as_ptr().cast()) }
    }

    /// The birth time, reported by `statx`.
    pub(super) fn btime(&self) -> (i64, u32) {
        // `btime` is set before the inode is unlocked in `NewInode::init` and never changes
        // after.
        self.slot().btime
    }

    /// The superblock the inode belongs to.
    pub(crate) fn super_block(&self) -> &SuperBlock<T> {
        // SAFETY: a live inode (type invariant, kept alive by `&self`); `i_sb` is set at
        // allocation and never changes.
        let sb = unsafe { (*self.as_ptr()).i_sb };
        // SAFETY: an initialised inode of `T` belongs to a mounted superblock of `T` whose
        // `s_fs_info` is set (`fill_super` sets it before any inode is initialised, `put_super`
        // clears it after all are evicted), live while the inode is.
        unsafe { SuperBlock::from_raw(sb) }
    }

    /// Takes `i_rwsem` exclusively, as the VFS does around writes; released when the guard drops.
    ///
    /// Lock order: `i_rwsem` comes before `invalidate_lock`, file folio locks and every lock of
    /// the filesystem.
    pub(super) fn lock(&self) -> InodeGuard<'_, T> {
        // SAFETY: a live inode (type invariant) for the guard's lifetime `'_`; the guard is not
        // `Send`, so it releases the lock on the task that took it.
        unsafe { ext::lcfs_inode_lock(self.as_ptr().cast()) };
        // INVARIANT: locked above.
        InodeGuard {
            inode: self,
            _not_send: kernel::types::NotThreadSafe,
        }
    }

    /// Takes `i_rwsem` shared, as direct reads do (writes, truncates and hole punches wait);
    /// released when the guard drops. Same lock order as [`Self::lock`].
    pub(super) fn lock_shared(&self) -> SharedInodeGuard<'_, T> {
        // SAFETY: a live inode (type invariant) for the guard's lifetime `'_`; the guard is not
        // `Send`, so it releases the lock on the task that took it.
        unsafe { ext::lcfs_inode_lock_shared(self.as_ptr().cast()) };
        // INVARIANT: locked above.
        SharedInodeGuard {
            inode: self,
            _not_send: kernel::types::NotThreadSafe,
        }
    }

    /// Waits until no direct I/O of the inode is in flight (an asynchronous direct read keeps
    /// going after its call returns). The caller holds `i_rwsem` exclusively, so none starts.
    pub(super) fn dio_wait(&self) {
        // SAFETY: a live inode (type invariant); waiting for its direct I/O count needs no lock
        // and the caller holds none that a completion takes.
        unsafe { bindings::inode_dio_wait(self.as_ptr()) };
    }

    /// Takes the mapping's `invalidate_lock` exclusively (keeps page faults from mapping blocks
    /// that truncate or hole punching are removing); released when the guard drops.
    pub(super) fn invalidate_lock(&self) -> InvalidateGuard<'_, T> {
        // SAFETY: a live inode (type invariant) has a live mapping for the guard's lifetime `'_`;
        // the guard is not `Send`, so it releases the lock on the task that took it.
        unsafe { ext::lcfs_invalidate_lock(self.mapping().cast()) };
        // INVARIANT: locked above.
        InvalidateGuard {
            inode: self,
            _not_send: kernel::types::NotThreadSafe,
        }
    }

    /// Writes back the dirty folios of the inode's page cache and waits for all its writeback.
    /// The caller holds no lock of the inode or its folios.
    pub(crate) fn write_back(&self) -> Result {
        let mapping = self.mapping();
        // SAFETY: the mapping of a live inode (kept alive by `&self`); the caller holds no lock
        // that writeback or waiting for it needs.
        let r = unsafe { bindings::filemap_write_and_wait_range(mapping, 0, i64::MAX) };
        kernel::error::to_result(r)
    }

    /// The inode's page-cache mapping.
    pub(super) fn mapping(&self) -> *mut bindings::address_space {
        // SAFETY: a live inode (type invariant); `i_mapping` is set at allocation and never changes
        // for an inode of ours.
        unsafe { (*self.as_ptr()).i_mapping }
    }
}

/// `i_rwsem` of an inode, held exclusively by the current task.
///
/// # Invariants
///
/// The current task took `inode`'s `i_rwsem` in [`Inode::lock`] and releases it on drop.
pub(super) struct InodeGuard<'a, T: FileSystem> {
    inode: &'a Inode<T>,
    // A rw_semaphore is released by the task that took it.
    _not_send: kernel::types::NotThreadSafe,
}

impl<T: FileSystem> Drop for InodeGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: taken by this task in `Inode::lock` (type invariant).
        unsafe { ext::lcfs_inode_unlock(self.inode.as_ptr().cast()) };
    }
}

/// `i_rwsem` of an inode, held shared by the current task.
///
/// # Invariants
///
/// The current task took `inode`'s `i_rwsem` in [`Inode::lock_shared`] and releases it on drop.
pub(super) struct SharedInodeGuard<'a, T: FileSystem> {
    inode: &'a Inode<T>,
    // A rw_semaphore is released by the task that took it.
    _not_send: kernel::types::NotThreadSafe,
}

impl<T: FileSystem> Drop for SharedInodeGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: taken shared by this task in `Inode::lock_shared` (type invariant).
        unsafe { ext::lcfs_inode_unlock_shared(self.inode.as_ptr().cast()) };
    }
}

/// The `invalidate_lock` of an inode's mapping, held exclusively by the current task.
///
/// # Invariants
///
/// The current task took the lock in [`Inode::invalidate_lock`] and releases it on drop.
pub(super) struct InvalidateGuard<'a, T: FileSystem> {
    inode: &'a Inode<T>,
    // A rw_semaphore is released by the task that took it.
    _not_send: kernel::types::NotThreadSafe,
}

impl<T: FileSystem> Drop for InvalidateGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: taken by this task in `Inode::invalidate_lock` (type invariant).
        unsafe { ext::lcfs_invalidate_unlock(self.inode.mapping().cast()) };
    }
}

/// An inode whose cached attributes the current VFS operation may replace: the token
/// [`Locked::refresh`] needs.
///
/// # Invariants
///
/// For `'a`, the VFS holds the inode's `i_rwsem`, or, for the object of a rename (which the VFS
/// leaves unlocked when a directory moves inside its parent), the `i_rwsem` of the directory
/// whose entry for it the operation changes. In-tree filesystems update such an inode's
/// attributes (its change time) under the same locks.
pub(crate) struct Locked<'a, T: FileSystem>(&'a Inode<T>);

impl<T: FileSystem> Clone for Locked<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: FileSystem> Copy for Locked<'_, T> {}

impl<'a, T: FileSystem> Locked<'a, T> {
    /// # Safety
    ///
    /// The VFS must hold the lock the type invariant names for `'a`.
    pub(super) unsafe fn new(inode: &'a Inode<T>) -> Self {
        // INVARIANT: per the contract.
        Self(inode)
    }

    /// Replaces the cached attributes with `params` (after a change on disk). The kind must not
    /// change.
    ///
    /// A regular file's cached size never shrinks here: buffered writes grow it before its
    /// record does (the record follows when the data reaches the disk, see
    /// [`super::DataOperations::write_done`]), and a truncation sets it before it changes the
    /// record.
    pub(crate) fn refresh(&self, params: &InodeParams) {
        let mut params = *params;
        if params.kind == InodeKind::Regular {
            params.size = params.size.max(u64::try_from(self.0.size()).unwrap_or(0));
        }
        // SAFETY: a live inode whose attributes the current operation may change (type
        // invariant).
        unsafe { set_attributes(self.0.as_ptr(), &params) };
    }
}

impl<T: FileSystem> Deref for Locked<'_, T> {
    type Target = Inode<T>;

    fn deref(&self) -> &Inode<T> {
        self.0
    }
}

/// A new, locked (`I_NEW`) inode to be initialised; dropping it fails the inode.
///
/// # Invariants
///
/// `inode` is referenced, locked with `I_NEW` and lives in an `InodeSlot<T>`.
pub(crate) struct NewInode<T: FileSystem> {
    inode: NonNull<bindings::inode>,
    _p: PhantomData<T>,
}

/// `inode` as an initialised inode of `T`, or `None` for one that never was (a failed `iget`
/// being evicted) or was marked bad.
///
/// # Safety
///
/// `inode` must come from [`alloc_inode_callback`] of `T` and be live for `'a`.
pub(super) unsafe fn initialised<'a, T: FileSystem>(
    inode: *mut bindings::inode,
) -> Option<&'a Inode<T>> {
    // SAFETY: `inode` comes from `alloc_inode_callback::<T>` (contract).
    let slot = unsafe { slot_of::<T>(inode) };
    // SAFETY: the slot is live for `'a` (contract) and its fields are initialised
    // (`alloc_inode_callback` writes them before the VFS sees the inode); `info` changes only
    // while the inode is new and locked, when the VFS calls none of our operations on it.
    let init = unsafe { (*slot).info.is_some() };
    // SAFETY: `inode` is live (contract); `is_bad_inode` compares its `i_op` with the bad-inode
    // table.
    if !init || unsafe { bindings::is_bad_inode(inode) } {
        return None;
    }
    // SAFETY: an initialised inode of `T`, live for `'a` (contract).
    Some(unsafe { Inode::from_raw(inode) })
}

/// Result of [`SuperBlock::iget`].
pub(crate) enum Iget<T: FileSystem> {
    /// The inode was in the cache.
    Cached(ARef<Inode<T>>),
    /// The inode is new and must be initialised.
    New(NewInode<T>),
}

impl<T: FileSystem> NewInode<T> {
    /// # Safety
    ///
    /// `inode` must be a new, referenced, `I_NEW` inode of `T` from `iget_locked`.
    pub(super) unsafe fn from_raw(inode: NonNull<bindings::inode>) -> Self {
        // INVARIANT: per the contract.
        Self {
            inode,
            _p: PhantomData,
        }
    }

    /// Sets the attributes and the operation tables of its kind, unlocks the inode and returns
    /// it. `link` is a symlink's target.
    pub(crate) fn init(
        self,
        params: &InodeParams,
        info: T::InodeInfo,
        link: Option<&[u8]>,
    ) -> Result<ARef<Inode<T>>>
    where
        T: Operations,
    {
        self.init_as(params, info, link, false)
    }

    /// [`Self::init`] for a content inode from [`super::SuperBlock::iget_content`]: a regular
    /// file that is only ever opened as the backing file of layer inodes' reads, so its file
    /// operations only read.
    pub(crate) fn init_content(
        self,
        params: &InodeParams,
        info: T::InodeInfo,
    ) -> Result<ARef<Inode<T>>>
    where
        T: Operations,
    {
        if params.kind != InodeKind::Regular {
            return Err(EINVAL);
        }
        self.init_as(params, info, None, true)
    }

    fn init_as(
        self,
        params: &InodeParams,
        info: T::InodeInfo,
        link: Option<&[u8]>,
        content: bool,
    ) -> Result<ARef<Inode<T>>>
    where
        T: Operations,
    {
        let target = match link {
            Some(l) => {
                let mut v = KVec::with_capacity(l.len().checked_add(1).ok_or(EINVAL)?, GFP_KERNEL)?;
                v.extend_from_slice(l, GFP_KERNEL)?;
                v.push(0, GFP_KERNEL)?;
                Some(v)
            }
            None => None,
        };
        let (i_op, i_fop) = match params.kind {
            InodeKind::Directory => (
                super::dir::inode_operations::<T>(),
                Some(super::dir::file_operations::<T>()),
            ),
            InodeKind::Regular if content => (
                super::file::inode_operations::<T>(),
                Some(super::iomap::content_file_operations::<T>()),
            ),
            InodeKind::Regular => (
                super::file::inode_operations::<T>(),
                Some(super::iomap::file_operations::<T>()),
            ),
            InodeKind::Symlink => (super::file::symlink_operations::<T>(), None),
            // Device nodes, FIFOs and sockets: `init_special_inode` sets their file operations.
            _ => (super::file::special_operations::<T>(), None),
        };
        let this = ManuallyDrop::new(self);
        let inode = this.inode.as_ptr();
        // SAFETY: the inode comes from our cache (type invariant).
        let slot = unsafe { slot_of::<T>(inode) };
        // SAFETY: the inode is new and locked (type invariant), so nobody else looks at its
        // slot's Rust fields, which are initialised (`alloc_inode_callback`), and no `Inode<T>`
        // reference to it exists yet: an exclusive reference to the `info` field (which does
        // not overlap the C inode written below) is valid for the next statement.
        let info_field = unsafe { &mut (*slot).info };
        // The old value (`None` for a fresh slot) drops outside any unsafe block.
        drop(info_field.replace(info));
        // SAFETY: the inode is new and locked (type invariant), so nobody reads the slot's
        // `btime` (only initialised inodes report it); a plain store of a `Copy` value.
        unsafe { (*slot).btime = params.btime };
        // SAFETY: the inode is live, new and locked (type invariant): invisible to others until
        // `unlock_new_inode`, so its attributes are ours to set.
        unsafe { set_attributes(inode, params) };
        // SAFETY: the inode is live, new and locked (type invariant): nobody else reads `i_op`
        // until `unlock_new_inode`; the table is static, so it outlives the inode.
        unsafe { (*inode).i_op = i_op };
        if let Some(fop) = i_fop {
            // SAFETY: the inode is live, new and locked (type invariant): nobody opens it before
            // `unlock_new_inode`; the table is static. `i_fop` is the union member the VFS reads
            // for regular files and directories.
            unsafe { (*inode).__bindgen_anon_3.i_fop = fop };
        }
        match params.kind {
            InodeKind::Regular => {
                let aops = ptr::from_ref(super::iomap::address_space_operations::<T>());
                // SAFETY: the inode is live, new and locked (type invariant), so its mapping has no
                // folios yet and nobody uses its operations before `unlock_new_inode`; the table
                // is static.
                unsafe { ext::lcfs_set_aops(inode.cast(), aops.cast()) };
            }
            InodeKind::Symlink => {
                if let Some(t) = target {
                    let len = c_int::try_from(t.len().saturating_sub(1)).unwrap_or(0);
                    let link = t.as_ptr();
                    // SAFETY: the inode is new and locked (type invariant), so nobody else looks
                    // at its slot's `link`, an initialised field, and no `Inode<T>` reference to
                    // it exists yet: an exclusive reference to the field is valid for the next
                    // statement.
                    let link_field = unsafe { &mut (*slot).link };
                    // The buffer moves with its `KVec`, not its contents, so `link` stays valid;
                    // the old value (`None` for a fresh slot) drops here, outside unsafe code.
                    drop(link_field.replace(t));
                    // SAFETY: the inode is live, new and locked (type invariant), so nobody
                    // follows the link before `unlock_new_inode`. The NUL-terminated target of
                    // `len` bytes lives in the slot until `free_inode`, after RCU path walkers are
                    // done with it.
                    unsafe { ext::lcfs_inode_set_cached_link(inode.cast(), link.cast(), len) };
                }
            }
            InodeKind::Directory => {}
            _ => {
                let rdev = u32::try_from(params.rdev).unwrap_or(0);
                // SAFETY: `new_decode_dev` only shifts and masks its integer argument: it
                // dereferences nothing and has no other effect.
                let dev = unsafe { ext::lcfs_new_decode_dev(rdev) };
                // SAFETY: the inode is live (type invariant); `i_mode` was set by
                // `set_attributes` above and nobody else changes it while the inode is new.
                let mode = unsafe { (*inode).i_mode };
                // SAFETY: the inode is live, new and locked (type invariant): its file
                // operations and device number are ours to set before `unlock_new_inode`.
                unsafe { bindings::init_special_inode(inode, mode, dev) };
            }
        }
        // SAFETY: the inode is referenced and locked with `I_NEW` (type invariant), and now
        // fully set up (attributes, operations, slot); `this` is never dropped, so `iget_failed`
        // does not run after this.
        unsafe { bindings::unlock_new_inode(inode) };
        // SAFETY: the reference from `iget_locked` moves into the `ARef`; the inode is now an
        // initialised inode of `T`.
        Ok(unsafe { ARef::from_raw(this.inode.cast()) })
    }
}

impl<T: FileSystem> Drop for NewInode<T> {
    fn drop(&mut self) {
        // SAFETY: the inode is new, locked and referenced (type invariant) and this value owns
        // that reference; `iget_failed` marks it bad, unlocks it and drops the reference, and
        // nothing uses the pointer after.
        unsafe { bindings::iget_failed(self.inode.as_ptr()) };
    }
}

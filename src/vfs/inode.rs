// SPDX-License-Identifier: GPL-2.0

//! Inode handles and the inode cache.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;
use super::registration::{self, ARef, FileSystem, Registration, LIVE_INODES};
use super::super_block::SuperBlock;

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
    // SAFETY: the slab calls the constructor once per object of our cache, sized for the slot.
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
        // SAFETY: plain call. Freed inodes go through call_rcu(): wait for them before destroying
        // the cache they belong to.
        unsafe { bindings::rcu_barrier() };
        // SAFETY: the cache is live and owned (type invariant); its objects are all freed now (a
        // leak would be reported by the slab allocator).
        unsafe { bindings::kmem_cache_destroy(self.as_ptr()) };
    }
}

/// Creates the inode cache of `T`.
pub(super) fn create_cache<T: FileSystem>() -> Result<InodeCache> {
    let size = u32::try_from(registration::slot_size::<T>()).map_err(|_| EINVAL)?;
    let align = u32::try_from(align_of::<InodeSlot<T>>()).map_err(|_| EINVAL)?;
    // SAFETY: the name is a static string; the constructor matches the object size.
    let cache = unsafe {
        ext::lcfs_inode_cache_create(c"lcfs_inode".as_char_ptr(), size, align, Some(inode_ctor::<T>))
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
    // SAFETY: `sb` is a superblock of `T`, whose `s_type` is the `fst` of our registration.
    let reg = unsafe { Registration::<T>::from_fst((*sb).s_type) };
    let cache = reg.inode_cache();
    // SAFETY: `cache` is live while the filesystem type is registered.
    let obj = unsafe { ext::lcfs_alloc_inode_sb(sb.cast(), cache.cast()) };
    if obj.is_null() {
        return ptr::null_mut();
    }
    // `alloc_inode_sb` returns the start of the cache object, which is the slot.
    let slot = obj.cast::<InodeSlot<T>>();
    // SAFETY: a fresh object of our cache; `vfs_inode` was set up by the constructor and the
    // other fields are written here before anything reads them.
    unsafe {
        ptr::addr_of_mut!((*slot).cache).write(cache);
        ptr::addr_of_mut!((*slot).info).write(None);
    }
    LIVE_INODES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `slot` is valid.
    Opaque::cast_into(unsafe { ptr::addr_of!((*slot).vfs_inode) })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `free_inode`.
pub(super) unsafe extern "C" fn free_inode_callback<T: FileSystem>(inode: *mut bindings::inode) {
    // SAFETY: the VFS frees only inodes it got from `alloc_inode_callback`.
    let slot = unsafe { slot_of::<T>(inode) };
    // SAFETY: called once, after an RCU grace period; nothing references the inode any more.
    // `info` is always initialised (to `None` at least), and its drop must not sleep (documented
    // on `FileSystem::InodeInfo`).
    unsafe {
        let cache = (*slot).cache;
        ptr::drop_in_place(ptr::addr_of_mut!((*slot).info));
        bindings::kmem_cache_free(cache, slot.cast());
    }
    LIVE_INODES.fetch_sub(1, Ordering::Relaxed);
}

/// What kind of object an inode is; decides its operation tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InodeKind {
    /// A directory.
    Directory,
}

/// Attributes of an inode being initialised.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InodeParams {
    /// Kind of inode.
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
    /// Access time (seconds, nanoseconds).
    pub(crate) atime: (i64, u32),
    /// Modification time.
    pub(crate) mtime: (i64, u32),
    /// Change time.
    pub(crate) ctime: (i64, u32),
}

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
        // SAFETY: `self` is referenced, so taking another reference is valid.
        unsafe { bindings::ihold(self.0.get()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: the caller owns the reference being dropped.
        unsafe { bindings::iput(obj.cast().as_ptr()) };
    }
}

impl<T: FileSystem> Inode<T> {
    /// # Safety
    ///
    /// `inode` must be an initialised inode of `T`, live for `'a`.
    pub(super) unsafe fn from_raw<'a>(inode: *mut bindings::inode) -> &'a Self {
        // SAFETY: transparent wrapper; validity per the contract.
        unsafe { &*inode.cast::<Self>() }
    }

    /// The superblock the inode belongs to.
    pub(crate) fn super_block(&self) -> &SuperBlock<T> {
        // SAFETY: an initialised inode of `T` belongs to a live superblock of `T` whose info is
        // set (type invariant).
        unsafe { SuperBlock::from_raw((*self.0.get()).i_sb) }
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

    /// Sets the attributes and operations, unlocks the inode and returns it.
    pub(crate) fn init(self, params: &InodeParams, info: T::InodeInfo) -> ARef<Inode<T>> {
        let this = ManuallyDrop::new(self);
        let inode = this.inode.as_ptr();
        let type_bits = match params.kind {
            InodeKind::Directory => bindings::S_IFDIR,
        };
        let mode = type_bits | (u32::from(params.perm) & 0o7777);
        // SAFETY: the inode is new and locked, so nobody else looks at these fields; the slot
        // holds an initialised `Option` that is replaced here.
        unsafe {
            (*slot_of::<T>(inode)).info = Some(info);
            // CAST: `mode` fits in 16 bits (type bits | 0o7777).
            (*inode).i_mode = mode as u16;
            bindings::set_nlink(inode, params.nlink);
            ext::lcfs_i_uid_write(inode.cast(), params.uid);
            ext::lcfs_i_gid_write(inode.cast(), params.gid);
            ext::lcfs_i_size_write(inode.cast(), i64::try_from(params.size).unwrap_or(i64::MAX));
            ext::lcfs_inode_set_atime(inode.cast(), params.atime.0, nsec(params.atime.1));
            ext::lcfs_inode_set_mtime(inode.cast(), params.mtime.0, nsec(params.mtime.1));
            ext::lcfs_inode_set_ctime(inode.cast(), params.ctime.0, nsec(params.ctime.1));
            match params.kind {
                InodeKind::Directory => {
                    (*inode).i_op = super::dir::inode_operations::<T>();
                    (*inode).__bindgen_anon_3.i_fop = super::dir::file_operations::<T>();
                }
            }
            bindings::unlock_new_inode(inode);
        }
        // SAFETY: the reference from `iget_locked` moves into the `ARef`; the inode is now an
        // initialised inode of `T`.
        unsafe { ARef::from_raw(this.inode.cast()) }
    }
}

impl<T: FileSystem> Drop for NewInode<T> {
    fn drop(&mut self) {
        // SAFETY: the inode is new, locked and referenced (type invariant); `iget_failed` marks
        // it bad, unlocks it and drops the reference.
        unsafe { bindings::iget_failed(self.inode.as_ptr()) };
    }
}

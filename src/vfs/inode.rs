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
        // SAFETY: plain call. Freed inodes go through call_rcu(): wait for them before counting
        // what is left and destroying the cache they belong to.
        unsafe { bindings::rcu_barrier() };
        let live = LIVE_INODES.load(Ordering::Relaxed);
        if live != 0 {
            pr_err!("{} inodes leaked at unload\n", live);
        } else {
            pr_info!("unloaded, no inodes left\n");
        }
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
        ptr::addr_of_mut!((*slot).btime).write((0, 0));
        ptr::addr_of_mut!((*slot).link).write(None);
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
        ptr::drop_in_place(ptr::addr_of_mut!((*slot).link));
        bindings::kmem_cache_free(cache, slot.cast());
    }
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
}

/// Writes the attributes every refresh sets.
///
/// # Safety
///
/// `inode` must be a live inode whose attributes the caller may change (new and locked, or
/// protected by the locks the VFS holds around the operation).
unsafe fn set_attributes(inode: *mut bindings::inode, params: &InodeParams) {
    let mode = params.kind.type_bits() | (u32::from(params.perm) & 0o7777);
    // SAFETY: per the function contract.
    unsafe {
        // CAST: `mode` fits in 16 bits (type bits | 0o7777).
        (*inode).i_mode = mode as u16;
        bindings::set_nlink(inode, params.nlink);
        ext::lcfs_i_uid_write(inode.cast(), params.uid);
        ext::lcfs_i_gid_write(inode.cast(), params.gid);
        ext::lcfs_i_size_write(inode.cast(), i64::try_from(params.size).unwrap_or(i64::MAX));
        (*inode).i_blocks = params.blocks;
        ext::lcfs_inode_set_atime(inode.cast(), params.atime.0, nsec(params.atime.1));
        ext::lcfs_inode_set_mtime(inode.cast(), params.mtime.0, nsec(params.mtime.1));
        ext::lcfs_inode_set_ctime(inode.cast(), params.ctime.0, nsec(params.ctime.1));
        // CAST: NFS generations are 32-bit; the low bits are what file handles carry.
        (*inode).i_generation = params.generation as u32;
    }
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

    pub(super) fn as_ptr(&self) -> *mut bindings::inode {
        self.0.get()
    }

    /// The filesystem's per-inode state.
    pub(crate) fn info(&self) -> &T::InodeInfo {
        // SAFETY: an initialised inode's slot holds `Some(info)` until it is freed (type
        // invariant); the reference is tied to `&self`, which keeps the inode alive.
        unsafe {
            (*slot_of::<T>(self.as_ptr()))
                .info
                .as_ref()
                .unwrap_unchecked()
        }
    }

    /// Sets the allocated space (512-byte units) after the filesystem allocated or freed data.
    pub(crate) fn set_blocks(&self, blocks: u64) {
        // SAFETY: a live inode; the helper takes `i_lock`, as `inode_add_bytes` does.
        unsafe { ext::lcfs_inode_set_blocks(self.as_ptr().cast(), blocks) };
    }

    /// Cached access, modification and change times.
    pub(crate) fn times(&self) -> [(i64, u32); 3] {
        let mut sec = [0i64; 3];
        let mut ns: [c_long; 3] = [0; 3];
        // SAFETY: reads the three timestamps of a live inode into local arrays of three.
        unsafe {
            ext::lcfs_inode_get_times(self.as_ptr().cast(), sec.as_mut_ptr(), ns.as_mut_ptr())
        };
        [0, 1, 2].map(|i| (sec[i], u32::try_from(ns[i]).unwrap_or(0)))
    }

    /// Replaces the cached attributes with `params` (after a change on disk). The kind must not
    /// change.
    pub(crate) fn refresh(&self, params: &InodeParams) {
        // SAFETY: filesystem operations refresh inodes under the VFS locks of the operation
        // (`i_rwsem` of the inode or its directory), as in-tree filesystems update attributes.
        unsafe { set_attributes(self.as_ptr(), params) };
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

/// Whether `inode` was initialised (it may be a failed `iget` being evicted).
///
/// # Safety
///
/// `inode` must come from [`alloc_inode_callback`] of `T`.
pub(super) unsafe fn is_initialised<T: FileSystem>(inode: *mut bindings::inode) -> bool {
    // SAFETY: per the contract the slot's fields are initialised.
    unsafe { (*slot_of::<T>(inode)).info.is_some() }
}

/// The birth time of `inode`.
///
/// # Safety
///
/// `inode` must be an initialised inode of `T`.
pub(super) unsafe fn btime<T: FileSystem>(inode: *mut bindings::inode) -> (i64, u32) {
    // SAFETY: per the contract the slot is initialised; `btime` never changes after init.
    unsafe { (*slot_of::<T>(inode)).btime }
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

    /// Sets the attributes and operations, unlocks the inode and returns it. `dir_ops` selects
    /// the operations of a directory that can change; `link` is a symlink's target.
    pub(crate) fn init(
        self,
        params: &InodeParams,
        info: T::InodeInfo,
        link: Option<&[u8]>,
    ) -> Result<ARef<Inode<T>>> {
        let target = match link {
            Some(l) => {
                let mut v = KVec::with_capacity(l.len().checked_add(1).ok_or(EINVAL)?, GFP_KERNEL)?;
                v.extend_from_slice(l, GFP_KERNEL)?;
                v.push(0, GFP_KERNEL)?;
                Some(v)
            }
            None => None,
        };
        let this = ManuallyDrop::new(self);
        let inode = this.inode.as_ptr();
        // SAFETY: the inode is new and locked, so nobody else looks at these fields; the slot
        // holds initialised fields that are replaced here.
        unsafe {
            let slot = slot_of::<T>(inode);
            (*slot).info = Some(info);
            (*slot).btime = params.btime;
            set_attributes(inode, params);
            match params.kind {
                InodeKind::Directory => {
                    (*inode).i_op = super::dir::inode_operations::<T>();
                    (*inode).__bindgen_anon_3.i_fop = super::dir::file_operations::<T>();
                }
                InodeKind::Regular => {
                    (*inode).i_op = super::file::inode_operations::<T>();
                    (*inode).__bindgen_anon_3.i_fop = super::file::file_operations::<T>();
                    let aops = ptr::from_ref(super::iomap::address_space_operations::<T>());
                    ext::lcfs_set_aops(inode.cast(), aops.cast());
                }
                InodeKind::Symlink => {
                    (*slot).link = target;
                    if let Some(t) = &(*slot).link {
                        // The target lives in the slot until `free_inode`, after RCU walkers.
                        let len = c_int::try_from(t.len().saturating_sub(1)).unwrap_or(0);
                        ext::lcfs_inode_set_cached_link(inode.cast(), t.as_ptr().cast(), len);
                    }
                    (*inode).i_op = super::file::symlink_operations::<T>();
                }
                _ => {
                    (*inode).i_op = super::file::special_operations::<T>();
                    let dev = ext::lcfs_new_decode_dev(u32::try_from(params.rdev).unwrap_or(0));
                    bindings::init_special_inode(inode, (*inode).i_mode, dev);
                }
            }
            bindings::unlock_new_inode(inode);
        }
        // SAFETY: the reference from `iget_locked` moves into the `ARef`; the inode is now an
        // initialised inode of `T`.
        Ok(unsafe { ARef::from_raw(this.inode.cast()) })
    }
}

impl<T: FileSystem> Drop for NewInode<T> {
    fn drop(&mut self) {
        // SAFETY: the inode is new, locked and referenced (type invariant); `iget_failed` marks
        // it bad, unlocks it and drops the reference.
        unsafe { bindings::iget_failed(self.inode.as_ptr()) };
    }
}

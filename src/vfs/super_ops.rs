// SPDX-License-Identifier: GPL-2.0

//! The superblock operations (`super_operations`) of a [`FileSystem`].
//!
//! `alloc_inode`, `free_inode` and `put_super` are always set: they manage this layer's own
//! state (the inode slots, the per-mount state). The others are set only when the filesystem
//! implements the matching [`FileSystem`] method.

use core::marker::PhantomData;

use kernel::bindings;
use kernel::error::from_result;
use kernel::prelude::*;

use super::bindings as ext;
use super::inode;
use super::registration::FileSystem;
use super::super_block::{SbInfo, Shutdown, SuperBlock};
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

/// The `super_operations` of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: FileSystem> Tables<T> {
    const SUPER_OPS: bindings::super_operations = bindings::super_operations {
        alloc_inode: Some(inode::alloc_inode_callback::<T>),
        free_inode: Some(inode::free_inode_callback::<T>),
        statfs: if T::HAS_STATFS {
            Some(statfs_callback::<T>)
        } else {
            None
        },
        sync_fs: if T::HAS_SYNC_FS {
            Some(sync_fs_callback::<T>)
        } else {
            None
        },
        // NULL: the VFS drops the page cache and clears the inode itself.
        evict_inode: if T::HAS_EVICT {
            Some(evict_inode_callback::<T>)
        } else {
            None
        },
        dirty_inode: if T::HAS_DIRTY_INODE {
            Some(dirty_inode_callback::<T>)
        } else {
            None
        },
        freeze_fs: if T::HAS_FREEZE {
            Some(freeze_fs_callback::<T>)
        } else {
            None
        },
        unfreeze_fs: if T::HAS_FREEZE {
            Some(unfreeze_fs_callback::<T>)
        } else {
            None
        },
        nr_cached_objects: if T::HAS_CACHED_OBJECTS {
            Some(nr_cached_objects_callback::<T>)
        } else {
            None
        },
        free_cached_objects: if T::HAS_FREE_CACHED_OBJECTS {
            Some(free_cached_objects_callback::<T>)
        } else {
            None
        },
        put_super: Some(put_super_callback::<T>),
        shutdown: if T::HAS_SHUT_DOWN {
            Some(shutdown_callback::<T>)
        } else {
            None
        },
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };
}

pub(super) fn super_operations<T: FileSystem>() -> &'static bindings::super_operations {
    &Tables::<T>::SUPER_OPS
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `sync_fs`.
unsafe extern "C" fn sync_fs_callback<T: FileSystem>(
    sb: *mut bindings::super_block,
    wait: c_int,
) -> c_int {
    // SAFETY: `sync_fs`'s contract: a live superblock with our operations, so of `T`, mounted
    // (`s_umount` held); `s_fs_info` is set until `put_super`, which runs after the last
    // `sync_fs`.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    from_result(|| {
        sb.live()?;
        T::sync_fs(sb, wait != 0).map(|()| 0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of
/// `nr_cached_objects`.
unsafe extern "C" fn nr_cached_objects_callback<T: FileSystem>(
    sb: *mut bindings::super_block,
    _sc: *mut bindings::shrink_control,
) -> c_long {
    // SAFETY: the superblock shrinker asks only a superblock with our operations, so of `T`,
    // that is `SB_BORN` (its `fill_super` succeeded, so `s_fs_info` is set), and it is freed
    // (`shrinker_free`, which waits for calls in progress) at the start of unmount, before
    // `put_super` drops the per-mount state.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    c_long::try_from(T::cached_objects(sb)).unwrap_or(c_long::MAX)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of
/// `free_cached_objects`.
unsafe extern "C" fn free_cached_objects_callback<T: FileSystem>(
    sb: *mut bindings::super_block,
    sc: *mut bindings::shrink_control,
) -> c_long {
    // SAFETY: as in `nr_cached_objects_callback` (and `s_umount` is held for reading);
    // `sc` is the caller's live shrink request for the call, read once.
    let (sb, nr) = unsafe { (SuperBlock::<T>::from_raw(sb), (*sc).nr_to_scan) };
    c_long::try_from(T::free_cached_objects(
        sb,
        u64::try_from(nr).unwrap_or(u64::MAX),
    ))
    .unwrap_or(c_long::MAX)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `freeze_fs`.
unsafe extern "C" fn freeze_fs_callback<T: FileSystem>(sb: *mut bindings::super_block) -> c_int {
    // SAFETY: `freeze_fs`'s contract: a live, mounted superblock with our operations, so of
    // `T`, with `s_umount` held; `s_fs_info` is set until `put_super`.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    from_result(|| T::freeze(sb).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `unfreeze_fs`.
unsafe extern "C" fn unfreeze_fs_callback<T: FileSystem>(sb: *mut bindings::super_block) -> c_int {
    // SAFETY: `unfreeze_fs`'s contract: a live, mounted superblock with our operations, so of
    // `T`, with `s_umount` held; `s_fs_info` is set until `put_super`.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    from_result(|| T::unfreeze(sb).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `dirty_inode`.
unsafe extern "C" fn dirty_inode_callback<T: FileSystem>(
    inode: *mut bindings::inode,
    _flags: c_int,
) {
    // SAFETY: the VFS marks a live inode of our superblock dirty, so it comes from
    // `alloc_inode_callback::<T>`. One still being set up has nothing to store yet.
    if let Some(inode) = unsafe { inode::initialised::<T>(inode) } {
        T::dirty_inode(inode);
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `evict_inode`.
unsafe extern "C" fn evict_inode_callback<T: FileSystem>(raw: *mut bindings::inode) {
    // SAFETY: `evict_inode`'s contract: `raw` is a live inode of ours with no references left
    // (`I_FREEING`), so nobody else uses its pages any more; only the embedded mapping's
    // address is taken.
    let data = unsafe { core::ptr::addr_of_mut!((*raw).i_data) };
    // SAFETY: `data` is the live mapping of the inode being evicted, which nobody else uses:
    // `truncate_inode_pages_final` is what an `evict_inode` must call on it.
    unsafe { bindings::truncate_inode_pages_final(data) };
    // SAFETY: an inode of our superblock comes from `alloc_inode_callback::<T>`, and it stays
    // live until `free_inode`.
    if let Some(inode) = unsafe { inode::initialised::<T>(raw) } {
        if inode.nlink() == 0 {
            T::evict(inode);
        }
    }
    // SAFETY: the inode is being evicted and its page cache was emptied above, as
    // `clear_inode` requires; the filesystem is done with it (this ends its use).
    unsafe { bindings::clear_inode(raw) };
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `put_super`.
unsafe extern "C" fn put_super_callback<T: FileSystem>(sb: *mut bindings::super_block) {
    {
        // SAFETY: a mounted superblock of `T` being shut down: all inodes are evicted and its
        // device is still open. The reference ends with this block, before the state goes.
        let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
        // `/sys/fs/<NAME>/<device>/` goes first: no read of it runs while the state goes.
        sb.unregister_sysfs();
        // The periodic work may kick the background work: cancel it first.
        sb.cancel_periodic();
        sb.cancel_background();
        // Writeback has ended (the VFS synced and evicted everything), but a bio completion may
        // still be queueing its (finished) ioend's work item under the RCU read lock, and the
        // work may still be returning: wait for both before the per-mount state goes.
        kernel::sync::rcu::synchronize_rcu();
        sb.flush_writeback();
        if T::HAS_PUT_SUPER {
            T::put_super(sb);
        }
    }
    // SAFETY: nothing uses the per-mount state after `put_super`; dropping it here, before the
    // device is closed, releases the device handles it holds while the device is still open.
    unsafe { SbInfo::<T>::release(sb) };
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `shutdown` (the
/// device under a mounted filesystem went away).
unsafe extern "C" fn shutdown_callback<T: FileSystem>(sb: *mut bindings::super_block) {
    // SAFETY: `shutdown`'s contract: a live, mounted superblock with our operations, so of `T`
    // with `s_fs_info` set, and `s_umount` held for the call, so `put_super` cannot run.
    let sb = unsafe { SuperBlock::<T>::from_raw(sb) };
    // With the device gone there is nothing to flush to: `Now` never fails.
    let _ = sb.shut_down(Shutdown::Now);
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `statfs`.
unsafe extern "C" fn statfs_callback<T: FileSystem>(
    dentry: *mut bindings::dentry,
    buf: *mut bindings::kstatfs,
) -> c_int {
    from_result(|| {
        // SAFETY: `statfs`'s contract: `dentry` is live (the caller holds a path to it) and
        // `d_sb` is fixed for its life.
        let raw = unsafe { (*dentry).d_sb };
        // SAFETY: the superblock has our operations, so it is of `T`, and it stays mounted
        // (with `s_fs_info` set) while the caller's path pins it, which covers the call.
        let sb = unsafe { SuperBlock::<T>::from_raw(raw) };
        let st = T::statfs(sb)?;
        // CAST (these four): u32 to the 64-bit `long`, lossless.
        let out = ext::kstatfs {
            f_type: T::MAGIC as c_long,
            f_bsize: BLOCK_SIZE as c_long,
            f_frsize: BLOCK_SIZE as c_long,
            f_blocks: st.blocks,
            f_bfree: st.free_blocks,
            f_bavail: st.avail_blocks,
            f_files: st.files,
            f_ffree: st.free_files,
            f_fsid: bindings::__kernel_fsid_t {
                val: st.fsid.map(|w| c_int::from_ne_bytes(w.to_ne_bytes())),
            },
            f_namelen: st.name_len as c_long,
            ..Default::default()
        };
        // SAFETY: `buf` points to a `kstatfs` the caller owns for this call (the module's
        // complete definition of the struct the kernel crate leaves opaque; KUnit checks the
        // layout); every field, the spare ones zero, is written in one store.
        unsafe { buf.cast::<ext::kstatfs>().write(out) };
        Ok(0)
    })
}

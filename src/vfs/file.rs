// SPDX-License-Identifier: GPL-2.0

//! Operations of non-directory inodes (regular files, symlinks, device nodes, FIFOs, sockets)
//! and the attribute operations every inode shares.

use core::marker::PhantomData;

use kernel::bindings;
use kernel::error::from_result;
use kernel::prelude::*;

use super::bindings as ext;
use super::inode::{self, Inode};
use super::registration::FileSystem;

/// Attribute changes requested by `setattr`, after the VFS checked permissions and computed
/// the new values (including `S_ISGID` clearing and "now" timestamps).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AttrChange {
    /// New permission bits (`0o7777`).
    pub(crate) perm: Option<u16>,
    /// New owner.
    pub(crate) uid: Option<u32>,
    /// New group.
    pub(crate) gid: Option<u32>,
    /// New size (regular files).
    pub(crate) size: Option<u64>,
    /// New access time.
    pub(crate) atime: Option<(i64, u32)>,
    /// New modification time.
    pub(crate) mtime: Option<(i64, u32)>,
    /// New change time.
    pub(crate) ctime: Option<(i64, u32)>,
}

/// Operation tables of non-directory inodes of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: FileSystem> Tables<T> {
    const FILE_INODE_OPS: bindings::inode_operations = bindings::inode_operations {
        setattr: Some(setattr_callback::<T>),
        getattr: Some(getattr_callback::<T>),
        listxattr: Some(super::xattr::listxattr_callback::<T>),
        // SAFETY: all-zero (all `None`) is a valid operations table.
        ..unsafe { core::mem::zeroed() }
    };

    const SYMLINK_OPS: bindings::inode_operations = bindings::inode_operations {
        get_link: Some(bindings::simple_get_link),
        setattr: Some(setattr_callback::<T>),
        getattr: Some(getattr_callback::<T>),
        listxattr: Some(super::xattr::listxattr_callback::<T>),
        // SAFETY: all-zero (all `None`) is a valid operations table.
        ..unsafe { core::mem::zeroed() }
    };
}

pub(super) fn inode_operations<T: FileSystem>() -> &'static bindings::inode_operations {
    &Tables::<T>::FILE_INODE_OPS
}

pub(super) fn file_operations<T: FileSystem>() -> &'static bindings::file_operations {
    super::iomap::file_operations::<T>()
}

pub(super) fn symlink_operations<T: FileSystem>() -> &'static bindings::inode_operations {
    &Tables::<T>::SYMLINK_OPS
}

pub(super) fn special_operations<T: FileSystem>() -> &'static bindings::inode_operations {
    // Device nodes, FIFOs and sockets only need attributes; `init_special_inode` sets their
    // file operations.
    &Tables::<T>::FILE_INODE_OPS
}

fn time(sec: i64, nsec: c_long) -> (i64, u32) {
    (sec, u32::try_from(nsec).unwrap_or(0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `setattr`.
pub(super) unsafe extern "C" fn setattr_callback<T: FileSystem>(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    attr: *mut bindings::iattr,
) -> c_int {
    from_result(|| {
        // SAFETY: the VFS passes a positive dentry of ours and holds its inode's `i_rwsem`.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: permission and limit checks (`-EPERM`, `-EFBIG`, ...) on live arguments.
        kernel::error::to_result(unsafe { bindings::setattr_prepare(idmap, dentry, attr) })?;
        // truncate(2) passes no time flags: a size change updates mtime and ctime all the
        // same (POSIX), as every filesystem does in its own setattr.
        // SAFETY: `attr` is live for the call; `raw` is locked (`i_rwsem`).
        unsafe {
            let v = (*attr).ia_valid;
            if v & bindings::ATTR_SIZE != 0
                && v & bindings::ATTR_CTIME == 0
                && (*attr).ia_size != (*raw).i_size
            {
                let now = bindings::current_time(raw);
                (*attr).ia_mtime = now;
                (*attr).ia_ctime = now;
                (*attr).ia_valid |= bindings::ATTR_MTIME | bindings::ATTR_CTIME;
            }
        }
        // SAFETY: `attr` is live for the call.
        let valid = unsafe { (*attr).ia_valid };
        // Let the VFS compute the new values on the cached inode (S_ISGID clearing, times),
        // then store what it computed; the filesystem refreshes the inode from disk after,
        // which also undoes the cached change if storing fails.
        // SAFETY: as above; `i_rwsem` is held.
        unsafe { bindings::setattr_copy(idmap, raw, attr) };
        let mut change = AttrChange::default();
        // SAFETY: reading attributes of the locked, live inode.
        unsafe {
            if valid & bindings::ATTR_MODE != 0 {
                // CAST: masked to the permission bits.
                change.perm = Some((u32::from((*raw).i_mode) & 0o7777) as u16);
            }
            if valid & bindings::ATTR_UID != 0 {
                change.uid = Some(ext::lcfs_i_uid_read(raw.cast()));
            }
            if valid & bindings::ATTR_GID != 0 {
                change.gid = Some(ext::lcfs_i_gid_read(raw.cast()));
            }
            if valid & bindings::ATTR_SIZE != 0 {
                change.size = Some(u64::try_from((*attr).ia_size).map_err(|_| EINVAL)?);
            }
            let mut sec = [0i64; 3];
            let mut nsec: [c_long; 3] = [0; 3];
            ext::lcfs_inode_get_times(raw.cast(), sec.as_mut_ptr(), nsec.as_mut_ptr());
            if valid & bindings::ATTR_ATIME != 0 {
                change.atime = Some(time(sec[0], nsec[0]));
            }
            if valid & bindings::ATTR_MTIME != 0 {
                change.mtime = Some(time(sec[1], nsec[1]));
            }
            if valid & bindings::ATTR_CTIME != 0 {
                change.ctime = Some(time(sec[2], nsec[2]));
            }
        }
        // SAFETY: an inode of ours with our operations is an initialised inode of `T`.
        let inode = unsafe { Inode::<T>::from_raw(raw) };
        // SAFETY: reading the mode of the locked inode.
        let regular = u32::from(unsafe { (*raw).i_mode }) & bindings::S_IFMT == bindings::S_IFREG;
        match change.size {
            // SAFETY: a regular file of ours with `i_rwsem` held.
            Some(size) if regular => unsafe {
                super::iomap::set_size::<T>(raw, size, || T::setattr(inode, &change))?
            },
            _ => T::setattr(inode, &change)?,
        }
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `getattr`.
pub(super) unsafe extern "C" fn getattr_callback<T: FileSystem>(
    idmap: *mut bindings::mnt_idmap,
    path: *const bindings::path,
    stat: *mut bindings::kstat,
    request_mask: u32,
    _flags: c_uint,
) -> c_int {
    // SAFETY: the VFS passes a live path to a positive dentry of ours and a `kstat` to fill.
    unsafe {
        let raw = (*(*path).dentry).d_inode;
        bindings::generic_fillattr(idmap, request_mask, raw, stat);
        let (sec, nsec) = inode::btime::<T>(raw);
        (*stat).btime.tv_sec = sec;
        (*stat).btime.tv_nsec = c_long::try_from(nsec).unwrap_or(0);
        (*stat).result_mask |= bindings::STATX_BTIME;
    }
    0
}

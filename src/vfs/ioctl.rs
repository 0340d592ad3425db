// SPDX-License-Identifier: GPL-2.0

//! The ioctl entry point ([`FileOperations::ioctl`]) and the ABI types of `include/uapi/linux/lcfs.h`.
//!
//! The structures come from the uapi header through the module's bindgen run; request codes are
//! built from the header's `*_NR` numbers and the structure sizes, as `_IOR()` does in C (the KUnit
//! suite checks them against the C macro).

use kernel::bindings;
use kernel::error::from_result;
use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use super::bindings as ext;
use super::inode::Inode;
use super::iomap::FileOperations;

/// `struct lcfs_fs_info`.
pub(crate) type FsInfo = ext::lcfs_fs_info;

/// `LCFS_IOC_FS_INFO`.
pub(crate) const IOC_FS_INFO: u32 =
    kernel::ioctl::_IOR::<FsInfo>(ext::LCFS_IOCTL_MAGIC, ext::LCFS_IOC_FS_INFO_NR);

/// A decoded ioctl request.
pub(crate) enum Request {
    /// `LCFS_IOC_FS_INFO`: fill in the filesystem information.
    FsInfo,
}

/// Where an ioctl's output goes.
pub(crate) struct Output(UserSlice);

impl Output {
    /// Copies `value` to the caller's buffer (`EFAULT` on a bad address).
    pub(crate) fn write_fs_info(self, value: &FsInfo) -> Result {
        // SAFETY: `lcfs_fs_info` is plain old data with no padding (all fields are integers and
        // byte arrays laid out without holes, 176 bytes checked by KUnit), so viewing it as
        // bytes exposes no uninitialised memory.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                core::ptr::from_ref(value).cast::<u8>(),
                size_of::<FsInfo>(),
            )
        };
        self.0.writer().write_slice(bytes)
    }
}

/// The `unlocked_ioctl` entry of `T`'s file operations (regular files and directories): NULL,
/// which the VFS answers with `ENOTTY`, unless `T` implements [`FileOperations::ioctl`].
pub(super) const fn ioctl_operation<T: FileOperations>(
) -> Option<unsafe extern "C" fn(*mut bindings::file, c_uint, c_ulong) -> c_long> {
    if T::HAS_IOCTL {
        Some(ioctl_callback::<T>)
    } else {
        None
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `unlocked_ioctl`.
unsafe extern "C" fn ioctl_callback<T: FileOperations>(
    file: *mut bindings::file,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    from_result(|| {
        let request = match cmd {
            IOC_FS_INFO => Request::FsInfo,
            _ => return Err(ENOTTY),
        };
        // For ioctls with output, `arg` is a user address (`c_ulong` is `usize` in the kernel).
        let user = UserSlice::new(UserPtr::from_addr(arg), size_of::<FsInfo>());
        // SAFETY: an open file of `T` (it has our file operations) has a live, initialised inode
        // of `T`.
        let inode = unsafe { Inode::<T>::from_raw((*file).f_inode) };
        T::ioctl(inode, request, Output(user))?;
        Ok(0)
    })
}

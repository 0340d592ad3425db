// SPDX-License-Identifier: GPL-2.0

//! The ioctl entry point ([`FileOperations::ioctl`]) and the ABI types of `include/uapi/linux/lcfs.h`.
//!
//! The structures come from the uapi header through the module's bindgen run; request codes are
//! built from the header's `*_NR` numbers and the structure sizes, as `_IOR()` and `_IOWR()` do
//! in C (the KUnit suite checks them against the C macros). A request's input is copied in
//! before the filesystem sees it, so the filesystem works on a private copy and a bad address is
//! `EFAULT` before anything happens.

use core::marker::PhantomData;

use kernel::bindings;
use kernel::error::{from_result, to_result};
use kernel::prelude::*;
use kernel::transmute::{AsBytes, FromBytes};
use kernel::uaccess::{UserPtr, UserSlice, UserSliceWriter};

use super::bindings as ext;
use super::inode::Inode;
use super::iomap::FileOperations;
use super::registration::FileSystem;
use super::super_block::{Shutdown, SuperBlock};

/// `struct lcfs_fs_info`.
pub(crate) type FsInfo = ext::lcfs_fs_info;
/// `struct lcfs_layer_create`.
pub(crate) type LayerCreate = ext::lcfs_layer_create;
/// `struct lcfs_layer_ref`.
pub(crate) type LayerRef = ext::lcfs_layer_ref;
/// `struct lcfs_layer_rename`.
pub(crate) type LayerRename = ext::lcfs_layer_rename;
/// `struct lcfs_layer_info`.
pub(crate) type LayerInfo = ext::lcfs_layer_info;
/// `struct lcfs_layer_list`.
pub(crate) type LayerList = ext::lcfs_layer_list;
/// `struct lcfs_layer_diff`.
pub(crate) type LayerDiff = ext::lcfs_layer_diff;

/// Declares an ABI structure plain old data after checking it has no padding: its size is the
/// sum of its fields' sizes (each listed), so every byte belongs to an integer or byte array.
macro_rules! abi_struct {
    ($t:ty, $size:expr, $($field:ident),+) => {
        const _: () = {
            let v = core::mem::MaybeUninit::<$t>::uninit();
            let p = v.as_ptr();
            // SAFETY: `addr_of!` on a field of an uninitialised value reads nothing.
            let fields = 0 $(+ size_of_raw(unsafe { core::ptr::addr_of!((*p).$field) }))+;
            assert!(size_of::<$t>() == $size && fields == $size);
        };
        // SAFETY: every field is an integer or an array of integers and there is no padding
        // (checked above), so any bytes are a valid value.
        unsafe impl FromBytes for $t {}
        // SAFETY: no padding (checked above): every byte of a value is initialised.
        unsafe impl AsBytes for $t {}
    };
}

/// The size of the value `_p` points to, for [`abi_struct!`].
const fn size_of_raw<T>(_p: *const T) -> usize {
    size_of::<T>()
}

abi_struct!(FsInfo, 176, format_version, block_size, generation, total_blocks, free_blocks, uuid, label, reclaim_queued, cached_nodes, reserved);
abi_struct!(LayerCreate, 320, source, flags, reserved0, id, reserved, name);
abi_struct!(LayerRef, 32, id, reserved);
abi_struct!(LayerRename, 288, id, reserved, name);
abi_struct!(LayerInfo, 352, id, parent, flags, children, create_sec, create_nsec, valid, inodes, bytes, own_bytes, reserved, name);
abi_struct!(LayerList, 56, cursor, entries, count, reserved0, reserved);
abi_struct!(LayerDiff, 96, id, base, cursor, buf, buf_size, count, reserved);

const fn ior<T>(nr: u32) -> u32 {
    kernel::ioctl::_IOR::<T>(ext::LCFS_IOCTL_MAGIC, nr)
}
const fn iow<T>(nr: u32) -> u32 {
    kernel::ioctl::_IOW::<T>(ext::LCFS_IOCTL_MAGIC, nr)
}
const fn iowr<T>(nr: u32) -> u32 {
    kernel::ioctl::_IOWR::<T>(ext::LCFS_IOCTL_MAGIC, nr)
}

/// `LCFS_LAYER_READ_ONLY`.
pub(crate) const LAYER_READ_ONLY: u32 = ext::LCFS_LAYER_READ_ONLY;
/// `LCFS_INFO_OWN_BYTES`.
pub(crate) const INFO_OWN_BYTES: u32 = ext::LCFS_INFO_OWN_BYTES;
/// `LCFS_CREATE_READ_ONLY`.
pub(crate) const CREATE_READ_ONLY: u32 = ext::LCFS_CREATE_READ_ONLY;
/// `LCFS_DIFF_ADDED`, `_MODIFIED`, `_DELETED`.
pub(crate) const DIFF_ADDED: u8 = ext::LCFS_DIFF_ADDED as u8;
/// `LCFS_DIFF_MODIFIED`.
pub(crate) const DIFF_MODIFIED: u8 = ext::LCFS_DIFF_MODIFIED as u8;
/// `LCFS_DIFF_DELETED`.
pub(crate) const DIFF_DELETED: u8 = ext::LCFS_DIFF_DELETED as u8;
/// `LCFS_LIST_MAX`.
pub(crate) const LIST_MAX: u32 = ext::LCFS_LIST_MAX;

/// `LCFS_IOC_FS_INFO`.
pub(crate) const IOC_FS_INFO: u32 = ior::<FsInfo>(ext::LCFS_IOC_FS_INFO_NR);
/// `LCFS_IOC_LAYER_CREATE`.
pub(crate) const IOC_LAYER_CREATE: u32 = iowr::<LayerCreate>(ext::LCFS_IOC_LAYER_CREATE_NR);
/// `LCFS_IOC_LAYER_CLONE`.
pub(crate) const IOC_LAYER_CLONE: u32 = iowr::<LayerCreate>(ext::LCFS_IOC_LAYER_CLONE_NR);
/// `LCFS_IOC_LAYER_SNAPSHOT`.
pub(crate) const IOC_LAYER_SNAPSHOT: u32 = iowr::<LayerCreate>(ext::LCFS_IOC_LAYER_SNAPSHOT_NR);
/// `LCFS_IOC_LAYER_FREEZE`.
pub(crate) const IOC_LAYER_FREEZE: u32 = iow::<LayerRef>(ext::LCFS_IOC_LAYER_FREEZE_NR);
/// `LCFS_IOC_LAYER_RENAME`.
pub(crate) const IOC_LAYER_RENAME: u32 = iow::<LayerRename>(ext::LCFS_IOC_LAYER_RENAME_NR);
/// `LCFS_IOC_LAYER_REMOVE`.
pub(crate) const IOC_LAYER_REMOVE: u32 = iow::<LayerRef>(ext::LCFS_IOC_LAYER_REMOVE_NR);
/// `LCFS_IOC_LAYER_INFO`.
pub(crate) const IOC_LAYER_INFO: u32 = iowr::<LayerInfo>(ext::LCFS_IOC_LAYER_INFO_NR);
/// `LCFS_IOC_LAYER_LIST`.
pub(crate) const IOC_LAYER_LIST: u32 = iowr::<LayerList>(ext::LCFS_IOC_LAYER_LIST_NR);
/// `LCFS_IOC_LAYER_DIFF`.
pub(crate) const IOC_LAYER_DIFF: u32 = iowr::<LayerDiff>(ext::LCFS_IOC_LAYER_DIFF_NR);
/// `FS_IOC_GETFSLABEL`, `FS_IOC_SETFSLABEL`: the label in a `char[FSLABEL_MAX]`.
pub(crate) type Label = [u8; bindings::FSLABEL_MAX as usize];
/// `FS_IOC_GETFSLABEL`.
pub(crate) const IOC_GET_LABEL: u32 = kernel::ioctl::_IOR::<Label>(0x94, 49);
/// `FS_IOC_SETFSLABEL`.
pub(crate) const IOC_SET_LABEL: u32 = kernel::ioctl::_IOW::<Label>(0x94, 50);
/// `FS_IOC_SHUTDOWN` (ext4's, xfs's and btrfs's request code too).
pub(crate) const IOC_SHUTDOWN: u32 = kernel::ioctl::_IOR::<u32>(b'X' as u32, 125);
/// `LCFS_DIFF_BUF_MIN`.
pub(crate) const DIFF_BUF_MIN: u32 = ext::LCFS_DIFF_BUF_MIN;
/// `LCFS_DIFF_BUF_MAX`.
pub(crate) const DIFF_BUF_MAX: u32 = ext::LCFS_DIFF_BUF_MAX;

/// A decoded ioctl request, with its input copied in.
pub(crate) enum Request {
    /// `LCFS_IOC_FS_INFO`: fill in the filesystem information.
    FsInfo,
    /// `LCFS_IOC_LAYER_CREATE`.
    LayerCreate(LayerCreate),
    /// `LCFS_IOC_LAYER_CLONE`.
    LayerClone(LayerCreate),
    /// `LCFS_IOC_LAYER_SNAPSHOT`.
    LayerSnapshot(LayerCreate),
    /// `LCFS_IOC_LAYER_FREEZE`.
    LayerFreeze(LayerRef),
    /// `LCFS_IOC_LAYER_RENAME`.
    LayerRename(LayerRename),
    /// `LCFS_IOC_LAYER_REMOVE`.
    LayerRemove(LayerRef),
    /// `LCFS_IOC_LAYER_INFO`.
    LayerInfo(LayerInfo),
    /// `LCFS_IOC_LAYER_LIST`.
    LayerList(LayerList),
    /// `LCFS_IOC_LAYER_DIFF`.
    LayerDiff(LayerDiff),
    /// `FS_IOC_GETFSLABEL`.
    GetLabel,
    /// `FS_IOC_SETFSLABEL`, with the new label (NUL-terminated).
    SetLabel(Label),
}

impl Request {
    /// Whether the request changes the filesystem: it then runs with write access to the mount
    /// (`EROFS` on a read-only mount, waiting while the filesystem is frozen), as `write` does.
    fn changes(&self) -> bool {
        matches!(
            self,
            Self::LayerCreate(_)
                | Self::LayerClone(_)
                | Self::LayerSnapshot(_)
                | Self::LayerFreeze(_)
                | Self::LayerRename(_)
                | Self::LayerRemove(_)
                | Self::SetLabel(_)
        )
    }
}

/// Write access to the mount of an open file, from `mnt_want_write_file` until dropped.
///
/// # Invariants
///
/// `mnt_want_write_file` succeeded on `file`, which the caller keeps open while this lives.
struct WriteAccess(*mut bindings::file);

impl WriteAccess {
    /// # Safety
    ///
    /// `file` is a live open file that stays open while the result lives.
    unsafe fn new(file: *mut bindings::file) -> Result<Self> {
        // SAFETY: `file` is live (contract); `mnt_want_write_file` takes the superblock's write
        // freeze protection and the mount's write count, or fails (`EROFS`) and takes nothing.
        to_result(unsafe { bindings::mnt_want_write_file(file) })?;
        // INVARIANT: it succeeded, on a file the caller keeps open.
        Ok(Self(file))
    }
}

impl Drop for WriteAccess {
    fn drop(&mut self) {
        // SAFETY: `mnt_want_write_file` succeeded on this still open file (type invariant); this
        // releases what it took, once.
        unsafe { bindings::mnt_drop_write_file(self.0) };
    }
}

/// Where an ioctl's output goes: the caller's structure.
pub(crate) struct Output(UserSliceWriter);

impl Output {
    /// Copies `value` to the caller's structure (`EFAULT` on a bad address).
    pub(crate) fn write<T: AsBytes>(mut self, value: &T) -> Result {
        self.0.write(value)
    }
}

/// The caller's array of `count` values of `T` at user address `addr` (the `entries` of
/// `LCFS_IOC_LAYER_LIST`), written in order.
pub(crate) struct UserArray<T> {
    writer: UserSliceWriter,
    _p: PhantomData<T>,
}

impl<T: AsBytes> UserArray<T> {
    /// The array at `addr`; nothing is accessed until [`Self::push`].
    pub(crate) fn new(addr: u64, count: usize) -> Result<Self> {
        let addr = usize::try_from(addr).map_err(|_| EFAULT)?;
        let len = count.checked_mul(size_of::<T>()).ok_or(EINVAL)?;
        Ok(Self {
            writer: UserSlice::new(UserPtr::from_addr(addr), len).writer(),
            _p: PhantomData,
        })
    }

    /// Writes the next element (`EFAULT` on a bad address or past the array's end).
    pub(crate) fn push(&mut self, value: &T) -> Result {
        self.writer.write(value)
    }
}

impl UserArray<u8> {
    /// Writes the next bytes (`EFAULT` on a bad address or past the array's end).
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) -> Result {
        self.writer.write_slice(bytes)
    }
}

/// Whether the calling task has `CAP_SYS_ADMIN` in the initial user namespace (audited, as
/// `capable()` is).
pub(crate) fn capable_sys_admin() -> bool {
    // CAST: capability numbers are small (CAP_SYS_ADMIN is 21).
    let cap = bindings::CAP_SYS_ADMIN as c_int;
    // SAFETY: `capable` reads the current task's own credentials, which a task may always read
    // (only the task itself replaces them, with RCU), and may record an audit event; it takes no
    // pointer arguments.
    unsafe { bindings::capable(cap) }
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

/// The `compat_ioctl` entry: the same as `unlocked_ioctl`. Every structure has the same layout
/// for 32-bit callers (fixed-size fields at naturally aligned offsets, sizes multiples of 8),
/// and on x86 a 32-bit user address is the same number in a 64-bit one.
pub(super) const fn compat_ioctl_operation<T: FileOperations>(
) -> Option<unsafe extern "C" fn(*mut bindings::file, c_uint, c_ulong) -> c_long> {
    ioctl_operation::<T>()
}

/// Reads the request's input structure.
fn read<T: FromBytes>(arg: c_ulong) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), size_of::<T>())
        .reader()
        .read::<T>()
}

/// Decodes `cmd`, copying its input in; also returns the size of its output structure.
fn decode(cmd: c_uint, arg: c_ulong) -> Result<(Request, usize)> {
    Ok(match cmd {
        IOC_FS_INFO => (Request::FsInfo, size_of::<FsInfo>()),
        IOC_LAYER_CREATE => (Request::LayerCreate(read(arg)?), size_of::<LayerCreate>()),
        IOC_LAYER_CLONE => (Request::LayerClone(read(arg)?), size_of::<LayerCreate>()),
        IOC_LAYER_SNAPSHOT => (Request::LayerSnapshot(read(arg)?), size_of::<LayerCreate>()),
        IOC_LAYER_FREEZE => (Request::LayerFreeze(read(arg)?), 0),
        IOC_LAYER_RENAME => (Request::LayerRename(read(arg)?), 0),
        IOC_LAYER_REMOVE => (Request::LayerRemove(read(arg)?), 0),
        IOC_LAYER_INFO => (Request::LayerInfo(read(arg)?), size_of::<LayerInfo>()),
        IOC_LAYER_LIST => (Request::LayerList(read(arg)?), size_of::<LayerList>()),
        IOC_LAYER_DIFF => (Request::LayerDiff(read(arg)?), size_of::<LayerDiff>()),
        IOC_GET_LABEL => (Request::GetLabel, size_of::<Label>()),
        IOC_SET_LABEL => (Request::SetLabel(read(arg)?), 0),
        _ => return Err(ENOTTY),
    })
}

/// `FS_IOC_SHUTDOWN`: `CAP_SYS_ADMIN` (`EPERM`), then the flags at `arg` (`EFAULT`), one of the
/// three (`EINVAL`), in the order ext4 checks them. Allowed on a read-only mount, as there.
fn shutdown<T: FileSystem>(sb: &SuperBlock<T>, arg: c_ulong) -> Result {
    if !capable_sys_admin() {
        return Err(EPERM);
    }
    let how = match read::<u32>(arg)? {
        bindings::FS_SHUTDOWN_FLAGS_DEFAULT => Shutdown::Sync,
        bindings::FS_SHUTDOWN_FLAGS_LOGFLUSH => Shutdown::Commit,
        bindings::FS_SHUTDOWN_FLAGS_NOLOGFLUSH => Shutdown::Now,
        _ => return Err(EINVAL),
    };
    sb.shut_down(how)
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
        // SAFETY: `unlocked_ioctl`'s contract: `file` is a live open file, pinned for the call;
        // `f_inode` is fixed while it is open.
        let raw = unsafe { (*file).f_inode };
        // SAFETY: the file has our file operations, so its inode is an initialised inode of
        // `T`, which the open file keeps alive for the call.
        let inode = unsafe { Inode::<T>::from_raw(raw) };
        if cmd == IOC_SHUTDOWN && T::HAS_SHUT_DOWN {
            shutdown(inode.super_block(), arg)?;
            return Ok(0);
        }
        inode.super_block().live()?;
        // For our requests `arg` is a user address (`c_ulong` is `usize` in the kernel).
        let (request, out_len) = decode(cmd, arg)?;
        let out = Output(UserSlice::new(UserPtr::from_addr(arg), out_len).writer());
        let _write = if request.changes() {
            // SAFETY: `file` is open for the whole call, which the guard does not outlive.
            Some(unsafe { WriteAccess::new(file) }?)
        } else {
            None
        };
        T::ioctl(inode, request, out)?;
        Ok(0)
    })
}

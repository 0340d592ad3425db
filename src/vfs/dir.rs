// SPDX-License-Identifier: GPL-2.0

//! Directory operations: lookup and readdir.

use core::marker::PhantomData;
use core::ptr;

use kernel::bindings;
use kernel::error::from_result;
use kernel::prelude::*;

use super::bindings as ext;
use super::inode::Inode;
use super::registration::{ARef, FileSystem};

/// File type of a directory entry, as reported by `readdir` (`DT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(dead_code, reason = "the other types arrive with the namespace operations")]
pub(crate) enum DirEntryType {
    /// Unknown type.
    Unknown = 0,
    /// FIFO.
    Fifo = 1,
    /// Character device.
    Chr = 2,
    /// Directory.
    Dir = 4,
    /// Block device.
    Blk = 6,
    /// Regular file.
    Reg = 8,
    /// Symbolic link.
    Lnk = 10,
    /// Socket.
    Sock = 12,
}

/// A `readdir` in progress.
///
/// # Invariants
///
/// `file` and `ctx` are the live arguments of the current `iterate_shared` call.
pub(crate) struct DirContext<'a> {
    file: *mut bindings::file,
    ctx: *mut bindings::dir_context,
    _p: PhantomData<&'a ()>,
}

impl DirContext<'_> {
    /// Current position (the cookie of the next entry to emit).
    pub(crate) fn pos(&self) -> i64 {
        // SAFETY: `ctx` is live (type invariant).
        unsafe { (*self.ctx).pos }
    }

    /// Emits "." and ".." if the position is before them (positions 0 and 1).
    ///
    /// Returns `false` when the caller's buffer is full.
    pub(crate) fn emit_dots(&mut self) -> bool {
        // SAFETY: live arguments of the current readdir (type invariant).
        unsafe { ext::lcfs_dir_emit_dots(self.file.cast(), self.ctx.cast()) }
    }

    /// Emits one entry; returns `false` when the caller's buffer is full.
    #[expect(dead_code, reason = "used once directories have entries")]
    pub(crate) fn emit(&mut self, name: &[u8], ino: u64, kind: DirEntryType) -> bool {
        let Ok(len) = c_int::try_from(name.len()) else {
            return false;
        };
        // SAFETY: live arguments (type invariant); `name` is valid for `len` bytes.
        unsafe {
            ext::lcfs_dir_emit(
                self.ctx.cast(),
                name.as_ptr().cast(),
                len,
                ino,
                kind as c_uint,
            )
        }
    }
}

/// Operation tables of directories of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: FileSystem> Tables<T> {
    const INODE_OPS: bindings::inode_operations = bindings::inode_operations {
        lookup: Some(lookup_callback::<T>),
        // SAFETY: all-zero (all `None`) is a valid operations table.
        ..unsafe { core::mem::zeroed() }
    };

    const FILE_OPS: bindings::file_operations = bindings::file_operations {
        llseek: Some(bindings::generic_file_llseek),
        read: Some(bindings::generic_read_dir),
        iterate_shared: Some(readdir_callback::<T>),
        fsync: Some(bindings::noop_fsync),
        unlocked_ioctl: Some(super::ioctl::ioctl_callback::<T>),
        // SAFETY: all-zero (all `None`) is a valid operations table.
        ..unsafe { core::mem::zeroed() }
    };
}

pub(super) fn inode_operations<T: FileSystem>() -> &'static bindings::inode_operations {
    &Tables::<T>::INODE_OPS
}

pub(super) fn file_operations<T: FileSystem>() -> &'static bindings::file_operations {
    &Tables::<T>::FILE_OPS
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `lookup`.
unsafe extern "C" fn lookup_callback<T: FileSystem>(
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    _flags: c_uint,
) -> *mut bindings::dentry {
    let mut len: u32 = 0;
    // SAFETY: the VFS passes a live dentry whose name is stable during lookup.
    let name = unsafe { ext::lcfs_dentry_name(dentry.cast(), &mut len) };
    let len = usize::try_from(len).unwrap_or(0);
    // SAFETY: `name` points to `len` bytes that live as long as the dentry.
    let name = unsafe { core::slice::from_raw_parts(name, len) };
    // SAFETY: `dir` is a live, initialised directory of `T` (it has our inode operations).
    let dir = unsafe { Inode::<T>::from_raw(dir) };
    let inode = match T::lookup(dir, name) {
        Ok(Some(inode)) => ARef::into_raw(inode).as_ptr().cast::<bindings::inode>(),
        Ok(None) => ptr::null_mut(),
        Err(e) => return e.to_ptr(),
    };
    // SAFETY: `d_splice_alias` takes over the inode reference (or a null inode for a negative
    // entry) and the dentry is the unhashed one the VFS passed in.
    unsafe { bindings::d_splice_alias(inode, dentry) }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `readdir`.
unsafe extern "C" fn readdir_callback<T: FileSystem>(
    file: *mut bindings::file,
    ctx: *mut bindings::dir_context,
) -> c_int {
    from_result(|| {
        // SAFETY: an open directory of `T` has a live, initialised inode.
        let dir = unsafe { Inode::<T>::from_raw((*file).f_inode) };
        // INVARIANT: the live arguments of this call.
        let mut dctx = DirContext {
            file,
            ctx,
            _p: PhantomData,
        };
        T::readdir(dir, &mut dctx)?;
        Ok(0)
    })
}

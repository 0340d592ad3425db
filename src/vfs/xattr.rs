// SPDX-License-Identifier: GPL-2.0

//! Extended attributes in the `user.`, `trusted.` and `security.` namespaces: the
//! [`XattrOperations`] behind the superblock's `xattr_handler`s and the inodes' `listxattr`.
//!
//! The VFS checks permissions (`user.` needs access to the inode, `trusted.` needs
//! `CAP_SYS_ADMIN`) before it calls a handler; `listxattr` hides `trusted.` names from callers
//! without that capability, as every filesystem does. Buffers handed to these callbacks are
//! kernel memory (the syscalls copy to and from user space around them).

use core::marker::PhantomData;
use core::ptr;

use kernel::bindings;
use kernel::error::VTABLE_DEFAULT_ERROR;
use kernel::prelude::*;

use super::acl::AclKind;
use super::inode::{Inode, Locked};
use super::registration::FileSystem;

/// The extended-attribute operations of a filesystem.
///
/// Without `get_xattr` and `set_xattr` the superblock has no handlers, and the VFS refuses
/// extended attributes (`EOPNOTSUPP`); without one of them only that direction is refused.
/// Without `list_xattrs`, `listxattr` lists only what security modules add.
#[vtable]
pub(crate) trait XattrOperations: FileSystem {
    /// Reads extended attribute `name` (full name) of `inode` into `buf` (which may be empty to
    /// ask for the size); returns its length. `ENODATA` if it does not exist.
    fn get_xattr(_inode: &Inode<Self>, _name: &[u8], _buf: &mut [u8]) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Sets (`Some`) or removes (`None`) extended attribute `name` of `inode`.
    fn set_xattr(
        _inode: Locked<'_, Self>,
        _name: &[u8],
        _value: Option<&[u8]>,
        _how: XattrSet,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Calls `f` with each extended attribute name of `inode` until it returns `false`.
    fn list_xattrs(_inode: &Inode<Self>, _f: &mut dyn FnMut(&[u8]) -> bool) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Stores ACL `kind` of `inode` as the extended attribute [`AclKind::xattr_name`] (`value`,
    /// the VFS's encoding of it; `None` removes it, and removing a missing one succeeds), and
    /// for an access ACL the permission bits `perm` the VFS derived from it, all at once, with a
    /// new change time. [`Self::get_xattr`] must read the attribute back.
    ///
    /// With it, the filesystem has POSIX ACLs (`SB_POSIXACL`, see
    /// [`super::NewSuperBlock::set_posix_acl`]): the VFS checks permissions with them and
    /// new inodes inherit their directory's default ACL.
    fn set_acl(
        _inode: Locked<'_, Self>,
        _kind: AclKind,
        _value: Option<&[u8]>,
        _perm: Option<u16>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// How `setxattr` treats an existing attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XattrSet {
    /// Create or replace.
    Any,
    /// Fail with `EEXIST` if it exists (`XATTR_CREATE`).
    Create,
    /// Fail with `ENODATA` if it does not exist (`XATTR_REPLACE`).
    Replace,
}

struct Handlers<T>(PhantomData<T>);

impl<T: XattrOperations> Handlers<T> {
    const USER: bindings::xattr_handler = handler::<T>(c"user.");
    const TRUSTED: bindings::xattr_handler = handler::<T>(c"trusted.");
    const SECURITY: bindings::xattr_handler = handler::<T>(c"security.");
    const LIST: [*const bindings::xattr_handler; 4] =
        [&Self::USER, &Self::TRUSTED, &Self::SECURITY, ptr::null()];
}

const fn handler<T: XattrOperations>(prefix: &'static CStr) -> bindings::xattr_handler {
    bindings::xattr_handler {
        name: ptr::null(),
        prefix: kernel::str::as_char_ptr_in_const_context(prefix),
        flags: 0,
        list: None,
        get: if T::HAS_GET_XATTR {
            Some(get_callback::<T>)
        } else {
            None
        },
        set: if T::HAS_SET_XATTR {
            Some(set_callback::<T>)
        } else {
            None
        },
    }
}

/// The `s_xattr` table of `T`: a static, NULL-terminated array, or NULL when `T` has neither
/// `get_xattr` nor `set_xattr`.
pub(super) fn handlers<T: XattrOperations>() -> *const *const bindings::xattr_handler {
    if !T::HAS_GET_XATTR && !T::HAS_SET_XATTR {
        return ptr::null();
    }
    let table: &'static [*const bindings::xattr_handler; 4] = &Handlers::<T>::LIST;
    table.as_ptr()
}

/// The `listxattr` entry of `T`'s inode operations.
pub(super) const fn listxattr_operation<T: XattrOperations>(
) -> Option<unsafe extern "C" fn(*mut bindings::dentry, *mut c_char, usize) -> isize> {
    if T::HAS_LIST_XATTRS {
        Some(listxattr_callback::<T>)
    } else {
        None
    }
}

/// The full attribute name (`prefix` + `name`).
///
/// # Safety
///
/// `handler` and `name` must be the live arguments of a handler call.
unsafe fn full_name(
    handler: *const bindings::xattr_handler,
    name: *const c_char,
) -> Result<KVec<u8>> {
    // SAFETY: `handler` is one of our static handlers (contract), live forever.
    let prefix = unsafe { (*handler).prefix };
    // SAFETY: our handlers' `prefix` is a static NUL-terminated string (`handler()` takes a
    // `&'static CStr`), never changed.
    let prefix = unsafe { CStr::from_char_ptr(prefix) }.to_bytes();
    // SAFETY: `name` is NUL-terminated and live for the call (contract); the `CStr` is only
    // read before this function returns.
    let name = unsafe { CStr::from_char_ptr(name) }.to_bytes();
    let mut full = KVec::with_capacity(prefix.len() + name.len(), GFP_KERNEL)?;
    full.extend_from_slice(prefix, GFP_KERNEL)?;
    full.extend_from_slice(name, GFP_KERNEL)?;
    Ok(full)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `xattr_handler.get`.
unsafe extern "C" fn get_callback<T: XattrOperations>(
    handler: *const bindings::xattr_handler,
    _dentry: *mut bindings::dentry,
    inode: *mut bindings::inode,
    name: *const c_char,
    buffer: *mut c_void,
    size: usize,
) -> c_int {
    let r = (|| -> Result<c_int> {
        // SAFETY: the VFS calls `get` with the handler it found for the name (one of ours,
        // static) and the name's suffix after the prefix, NUL-terminated and live for the call:
        // `full_name`'s contract.
        let full = unsafe { full_name(handler, name) }?;
        let buf: &mut [u8] = if size == 0 || buffer.is_null() {
            &mut []
        } else {
            // SAFETY: a non-NULL `buffer` from the VFS is a kernel buffer of `size` bytes
            // (`vfs_getxattr` allocates it, or it is the xattr cache's), writable and not
            // aliased by anything else for the call.
            unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), size) }
        };
        // SAFETY: the VFS passes a live, referenced inode of the superblock whose handler this is
        // (ours), so an initialised inode of `T`, for the call.
        let inode = unsafe { Inode::<T>::from_raw(inode) };
        inode.super_block().live()?;
        let n = T::get_xattr(inode, &full, buf)?;
        if size != 0 && n > size {
            return Err(ERANGE);
        }
        c_int::try_from(n).map_err(|_| E2BIG)
    })();
    r.unwrap_or_else(|e| e.to_errno())
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `xattr_handler.set`.
unsafe extern "C" fn set_callback<T: XattrOperations>(
    handler: *const bindings::xattr_handler,
    _idmap: *mut bindings::mnt_idmap,
    _dentry: *mut bindings::dentry,
    inode: *mut bindings::inode,
    name: *const c_char,
    buffer: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    let r = (|| -> Result {
        // SAFETY: the VFS calls `set` with the handler it found for the name (one of ours,
        // static) and the name's suffix after the prefix, NUL-terminated and live for the call:
        // `full_name`'s contract.
        let full = unsafe { full_name(handler, name) }?;
        // A NULL buffer removes the attribute; an empty value is a value.
        let value: Option<&[u8]> = if buffer.is_null() {
            None
        } else if size == 0 {
            Some(&[])
        } else {
            // SAFETY: a non-NULL `buffer` is the value `setxattr` copied into a kernel buffer of
            // `size` bytes, live and unchanged for the call.
            Some(unsafe { core::slice::from_raw_parts(buffer.cast::<u8>(), size) })
        };
        // CAST: flag constants are small.
        let how = match flags {
            0 => XattrSet::Any,
            f if f == bindings::XATTR_CREATE as c_int => XattrSet::Create,
            f if f == bindings::XATTR_REPLACE as c_int => XattrSet::Replace,
            _ => return Err(EINVAL),
        };
        // SAFETY: the VFS passes a live, referenced inode of the superblock whose handler this is
        // (ours), so an initialised inode of `T`, and `__vfs_setxattr_locked` holds its
        // `i_rwsem` for the call.
        let inode = unsafe { Locked::new(Inode::<T>::from_raw(inode)) };
        inode.super_block().live()?;
        T::set_xattr(inode, &full, value, how)
    })();
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `listxattr`.
unsafe extern "C" fn listxattr_callback<T: XattrOperations>(
    dentry: *mut bindings::dentry,
    buffer: *mut c_char,
    size: usize,
) -> isize {
    let r = (|| -> Result<isize> {
        // SAFETY: `listxattr`'s contract: `dentry` is a live, positive dentry, pinned by the
        // caller's path for the call.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: `raw` has our inode operations (this callback is in them), so it is an
        // initialised inode of `T`, pinned by `dentry` for the call.
        let inode = unsafe { Inode::<T>::from_raw(raw) };
        inode.super_block().live()?;
        let out: &mut [u8] = if size == 0 || buffer.is_null() {
            &mut []
        } else {
            // SAFETY: a non-NULL `buffer` from `listxattr` is a kernel buffer of `size` bytes
            // the VFS allocated for this call, writable and not aliased.
            unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), size) }
        };
        // CAST: CAP_SYS_ADMIN is a small constant.
        let cap = bindings::CAP_SYS_ADMIN as c_int;
        // SAFETY: `capable` reads the current task's credentials (always valid for the task
        // itself in process context, where the VFS calls `listxattr`) and may record an audit
        // event; it takes no pointer arguments.
        let admin = unsafe { bindings::capable(cap) };
        let acls = super::acl::enabled(inode);
        let mut total = 0usize;
        let mut overflow = false;
        T::list_xattrs(inode, &mut |name| {
            if name.starts_with(b"trusted.") && !admin {
                return true;
            }
            // Stored ACLs are not there while the mount has them off (`noacl`), as on ext4.
            if super::acl::is_acl_name(name) && !acls {
                return true;
            }
            let end = total + name.len() + 1;
            if !out.is_empty() {
                match out.get_mut(total..end) {
                    Some(dst) => {
                        if let Some((last, head)) = dst.split_last_mut() {
                            head.copy_from_slice(name);
                            *last = 0;
                        }
                    }
                    None => {
                        overflow = true;
                        return false;
                    }
                }
            }
            total = end;
            true
        })?;
        if overflow {
            return Err(ERANGE);
        }
        isize::try_from(total).map_err(|_| E2BIG)
    })();
    r.unwrap_or_else(|e| e.to_errno() as isize)
}

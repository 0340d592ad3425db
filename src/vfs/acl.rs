// SPDX-License-Identifier: GPL-2.0

//! POSIX ACLs: the `get_inode_acl` and `set_acl` inode operations, the ACLs a new inode inherits
//! from its directory, and the access ACL's update on `chmod`.
//!
//! The filesystem stores each ACL as an extended attribute (`system.posix_acl_access`,
//! `system.posix_acl_default`) whose value is the VFS's own xattr encoding of it, with ids in the
//! filesystem's namespace (`init_user_ns`), as btrfs stores them; [`XattrOperations::get_xattr`]
//! reads them back. The VFS caches the decoded ACLs on the inode, checks permissions with them
//! (`generic_permission`) and routes the `system.posix_acl_*` xattr calls here; the
//! superblock's `SB_POSIXACL` (the `acl` mount option, the default) turns all of it on.

use core::ptr::{self, NonNull};

use kernel::bindings;
use kernel::error::to_result;
use kernel::prelude::*;

use super::bindings as ext;
use super::inode::{Inode, Locked};
use super::xattr::XattrOperations;

/// One of the two ACLs of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AclKind {
    /// `system.posix_acl_access`: who may do what with the inode itself.
    Access,
    /// `system.posix_acl_default`: what new inodes in a directory inherit.
    Default,
}

impl AclKind {
    /// The name of the extended attribute that holds it.
    pub(crate) fn xattr_name(self) -> &'static [u8] {
        match self {
            Self::Access => b"system.posix_acl_access",
            Self::Default => b"system.posix_acl_default",
        }
    }

    fn c_type(self) -> c_int {
        // CAST: both constants are small positive numbers.
        match self {
            Self::Access => ext::LCFS_ACL_TYPE_ACCESS as c_int,
            Self::Default => ext::LCFS_ACL_TYPE_DEFAULT as c_int,
        }
    }

    fn from_c(t: c_int) -> Option<Self> {
        [Self::Access, Self::Default]
            .into_iter()
            .find(|k| k.c_type() == t)
    }
}

/// Whether `name` is the name of an ACL's extended attribute.
pub(super) fn is_acl_name(name: &[u8]) -> bool {
    name == AclKind::Access.xattr_name() || name == AclKind::Default.xattr_name()
}

/// One reference to a `struct posix_acl`.
///
/// # Invariants
///
/// `ptr` points to a live ACL on which this value owns one reference.
struct Acl {
    ptr: NonNull<bindings::posix_acl>,
}

impl Acl {
    /// Takes over the reference a kernel function returned in `ptr` (`None` for NULL).
    ///
    /// # Safety
    ///
    /// `ptr` is NULL or a live ACL carrying a reference the caller gives up.
    unsafe fn from_raw(ptr: *mut bindings::posix_acl) -> Option<Self> {
        // INVARIANT: a live ACL and its reference (contract).
        NonNull::new(ptr).map(|ptr| Self { ptr })
    }

    /// The ACL in the VFS's xattr encoding.
    fn encode(&self) -> Result<Encoded> {
        // SAFETY: a live ACL (type invariant), referenced by `self` for the call.
        unsafe { encode(self.ptr.as_ptr()) }
    }
}

/// `acl` in the VFS's xattr encoding.
///
/// # Safety
///
/// `acl` points to a live ACL that stays referenced for the call.
unsafe fn encode(acl: *mut bindings::posix_acl) -> Result<Encoded> {
    let mut len = 0usize;
    // SAFETY: `acl` is live (contract); `len` is a local, exclusively borrowed for the call.
    // The result is a `kmalloc`ed buffer of `len` bytes, or NULL.
    let buf = unsafe { ext::lcfs_acl_to_xattr(acl.cast(), &mut len) };
    let buf = NonNull::new(buf.cast::<u8>()).ok_or(ENOMEM)?;
    // INVARIANT: `posix_acl_to_xattr` returned a `kmalloc`ed buffer of `len` initialised bytes,
    // now ours.
    Ok(Encoded { buf, len })
}

impl Drop for Acl {
    fn drop(&mut self) {
        // SAFETY: this value owns one reference to the live ACL (type invariant), given back
        // here once.
        unsafe { ext::lcfs_acl_release(self.ptr.as_ptr().cast()) };
    }
}

/// An ACL in the VFS's xattr encoding.
///
/// # Invariants
///
/// `buf` is a `kmalloc`ed buffer of `len` initialised bytes owned by this value.
struct Encoded {
    buf: NonNull<u8>,
    len: usize,
}

impl Encoded {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` initialised bytes owned by `self` (type invariant), unchanged while
        // borrowed.
        unsafe { core::slice::from_raw_parts(self.buf.as_ptr(), self.len) }
    }
}

impl Drop for Encoded {
    fn drop(&mut self) {
        // SAFETY: a `kmalloc`ed buffer owned by this value (type invariant), freed once.
        unsafe { bindings::kfree(self.buf.as_ptr().cast()) };
    }
}

/// The ACLs a new inode inherits from its directory (`posix_acl_create`), encoded for the
/// filesystem to store with the inode.
pub(super) struct Inherited {
    default: Option<(Acl, Encoded)>,
    access: Option<(Acl, Encoded)>,
}

impl Inherited {
    /// Computes what a new inode of type and permissions `mode` in `dir` inherits, and applies
    /// it to `mode`: the directory's default ACL masks the permissions, or, without one, the
    /// caller's umask does (with `SB_POSIXACL` the VFS leaves the umask to the filesystem). A
    /// filesystem without ACLs (`noacl`) inherits nothing and leaves `mode` alone.
    pub(super) fn new<T: XattrOperations>(dir: &Inode<T>, mode: &mut u32) -> Result<Self> {
        let none = Self {
            default: None,
            access: None,
        };
        if !T::HAS_SET_ACL {
            return Ok(none);
        }
        // CAST: the type and permission bits fit `umode_t` (16 bits); the VFS passed them so.
        let mut m = *mode as u16;
        let mut default = ptr::null_mut();
        let mut access = ptr::null_mut();
        // SAFETY: `dir` is a live directory inode; the pointers are locals, exclusively
        // borrowed for the call. `posix_acl_create` reads the directory's default ACL (through
        // our `get_inode_acl`), returns a new reference in each pointer it sets, and sets none
        // when it fails. It does nothing for a symlink or without `SB_POSIXACL`.
        to_result(unsafe {
            ext::lcfs_acl_create(dir.as_ptr().cast(), &mut m, &mut default, &mut access)
        })?;
        // SAFETY: NULL or new references `posix_acl_create` returned for us to release.
        let (default, access) = unsafe { (Acl::from_raw(default), Acl::from_raw(access)) };
        *mode = (*mode & !0o7777) | u32::from(m & 0o7777);
        let encode = |acl: Option<Acl>| -> Result<Option<(Acl, Encoded)>> {
            match acl {
                None => Ok(None),
                Some(acl) => {
                    let e = acl.encode()?;
                    Ok(Some((acl, e)))
                }
            }
        };
        Ok(Self {
            default: encode(default)?,
            access: encode(access)?,
        })
    }

    /// The encoded default ACL, if the new inode has one (directories only).
    pub(super) fn default_acl(&self) -> Option<&[u8]> {
        self.default.as_ref().map(|(_, e)| e.bytes())
    }

    /// The encoded access ACL, if the new inode has one.
    pub(super) fn access_acl(&self) -> Option<&[u8]> {
        self.access.as_ref().map(|(_, e)| e.bytes())
    }

    /// Caches both ACLs (or their absence) on the new `inode`, which stores them, so the first
    /// permission check needs no read.
    pub(super) fn cache<T: XattrOperations>(&self, inode: &Inode<T>) {
        if !T::HAS_SET_ACL {
            return;
        }
        for (kind, acl) in [
            (AclKind::Default, &self.default),
            (AclKind::Access, &self.access),
        ] {
            let ptr = acl
                .as_ref()
                .map_or(ptr::null_mut(), |(a, _)| a.ptr.as_ptr());
            // SAFETY: `inode` is live; `ptr` is NULL or a live ACL we hold a reference to, on
            // which `set_cached_acl` takes a reference of its own.
            unsafe { ext::lcfs_set_cached_acl(inode.as_ptr().cast(), kind.c_type(), ptr.cast()) };
        }
    }
}

/// The `get_inode_acl` and `set_acl` entries of `T`'s inode operations.
pub(super) struct AclOps {
    pub(super) get:
        Option<unsafe extern "C" fn(*mut bindings::inode, c_int, bool) -> *mut bindings::posix_acl>,
    pub(super) set: Option<
        unsafe extern "C" fn(
            *mut bindings::mnt_idmap,
            *mut bindings::dentry,
            *mut bindings::posix_acl,
            c_int,
        ) -> c_int,
    >,
}

pub(super) const fn operations<T: XattrOperations>() -> AclOps {
    if T::HAS_SET_ACL {
        AclOps {
            get: Some(get_inode_acl_callback::<T>),
            set: Some(set_acl_callback::<T>),
        }
    } else {
        AclOps {
            get: None,
            set: None,
        }
    }
}

/// Updates the access ACL of `dentry`'s inode after its permission bits changed (`chmod`), as
/// POSIX.1e wants: the ACL's owner, group (or mask) and other entries follow the new bits.
///
/// # Safety
///
/// `idmap` and `dentry` are the live arguments of the `setattr` that changed the mode, whose
/// inode's `i_rwsem` the caller holds.
pub(super) unsafe fn chmod<T: XattrOperations>(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    mode: u32,
) -> Result {
    if !T::HAS_SET_ACL {
        return Ok(());
    }
    // CAST: the type and permission bits fit `umode_t`.
    let mode = mode as u16;
    // SAFETY: the live arguments of the `setattr` (contract), `i_rwsem` held as
    // `posix_acl_chmod` requires; it reads the access ACL (our `get_inode_acl`) and stores the
    // changed one through our `set_acl`, and does nothing without `SB_POSIXACL`.
    to_result(unsafe { ext::lcfs_acl_chmod(idmap.cast(), dentry.cast(), mode) })
}

/// Whether `inode`'s filesystem has ACLs turned on (`SB_POSIXACL`).
pub(super) fn enabled<T: XattrOperations>(inode: &Inode<T>) -> bool {
    // SAFETY: a live inode; the helper reads its superblock's `s_flags` once.
    T::HAS_SET_ACL && unsafe { ext::lcfs_inode_posixacl(inode.as_ptr().cast()) }
}

fn err_acl(e: Error) -> *mut bindings::posix_acl {
    // SAFETY: `ERR_PTR` of a negative errno: a pointer value only, never dereferenced as one.
    unsafe { ext::lcfs_acl_err(e.to_errno()) }.cast()
}

/// Reads and decodes ACL `kind` of `inode`: NULL when it has none, else a new reference or an
/// error pointer, as `get_inode_acl` returns them.
fn read_acl<T: XattrOperations>(inode: &Inode<T>, kind: AclKind) -> *mut bindings::posix_acl {
    let name = kind.xattr_name();
    // The value may be replaced between asking its size and reading it: a few tries.
    for _ in 0..4 {
        let len = match T::get_xattr(inode, name, &mut []) {
            Ok(len) => len,
            Err(e) if e == ENODATA => return ptr::null_mut(),
            Err(e) => return err_acl(e),
        };
        let mut buf = match KVec::from_elem(0u8, len, GFP_KERNEL) {
            Ok(b) => b,
            Err(e) => return err_acl(e.into()),
        };
        match T::get_xattr(inode, name, &mut buf) {
            Ok(n) => {
                let n = n.min(buf.len());
                // SAFETY: `buf` holds `n` initialised bytes for the call;
                // `posix_acl_from_xattr` only reads them, and returns NULL, a new ACL, or an
                // error pointer (`EINVAL` for a malformed value).
                return unsafe { ext::lcfs_acl_from_xattr(buf.as_ptr().cast(), n) }.cast();
            }
            Err(e) if e == ERANGE => continue,
            Err(e) if e == ENODATA => return ptr::null_mut(),
            Err(e) => return err_acl(e),
        }
    }
    err_acl(EAGAIN)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `get_inode_acl`.
unsafe extern "C" fn get_inode_acl_callback<T: XattrOperations>(
    inode: *mut bindings::inode,
    type_: c_int,
    rcu: bool,
) -> *mut bindings::posix_acl {
    // Reading may sleep (the volume lock, device I/O): the VFS retries outside RCU.
    if rcu {
        return err_acl(ECHILD);
    }
    let Some(kind) = AclKind::from_c(type_) else {
        return err_acl(EINVAL);
    };
    // SAFETY: `get_inode_acl`'s contract: `inode` has our inode operations, so it is an
    // initialised inode of `T`, referenced by the caller for the call.
    let inode = unsafe { Inode::<T>::from_raw(inode) };
    if let Err(e) = inode.super_block().live() {
        return err_acl(e);
    }
    read_acl(inode, kind)
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `set_acl`.
unsafe extern "C" fn set_acl_callback<T: XattrOperations>(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    acl: *mut bindings::posix_acl,
    type_: c_int,
) -> c_int {
    kernel::error::from_result(|| {
        let kind = AclKind::from_c(type_).ok_or(EINVAL)?;
        // SAFETY: `set_acl`'s contract: `dentry` is live and positive, referenced for the call.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: `raw` has our inode operations, so it is an initialised inode of `T`, pinned
        // by `dentry`; the VFS (`vfs_set_acl`, `posix_acl_chmod` under `setattr`) holds its
        // `i_rwsem` for the call.
        let inode = unsafe { Locked::new(Inode::<T>::from_raw(raw)) };
        inode.super_block().live()?;
        let mode = inode.mode();
        let mut acl = acl;
        let mut perm = None;
        match kind {
            AclKind::Access if !acl.is_null() => {
                // CAST: the type and permission bits fit `umode_t`.
                let mut m = mode as u16;
                // SAFETY: the live arguments of the call; `m` and `acl` are locals, exclusively
                // borrowed. It derives the permission bits from the ACL (clearing `S_ISGID`
                // when the caller may not keep it) and sets `acl` to NULL when the bits say
                // all the ACL says; the caller's reference to the ACL is not touched.
                to_result(unsafe {
                    ext::lcfs_acl_update_mode(idmap.cast(), raw.cast(), &mut m, &mut acl)
                })?;
                perm = Some(m & 0o7777);
            }
            AclKind::Default if mode & bindings::S_IFMT != bindings::S_IFDIR => {
                // Only directories have one, as on ext4.
                return if acl.is_null() { Ok(0) } else { Err(EACCES) };
            }
            _ => {}
        }
        let encoded = if acl.is_null() {
            None
        } else {
            // SAFETY: the caller's ACL, referenced by it for the call.
            Some(unsafe { encode(acl.cast()) }?)
        };
        if let Err(e) = T::set_acl(inode, kind, encoded.as_ref().map(Encoded::bytes), perm) {
            // What is stored may be either ACL now: the next check reads it back.
            // SAFETY: `raw` is live (pinned by `dentry`); a cache slot of its own.
            unsafe { ext::lcfs_forget_cached_acl(raw.cast(), type_) };
            return Err(e);
        }
        // SAFETY: `raw` is live (pinned by `dentry`); `acl` is NULL or the caller's live ACL, on
        // which `set_cached_acl` takes a reference of its own.
        unsafe { ext::lcfs_set_cached_acl(raw.cast(), type_, acl.cast()) };
        Ok(0)
    })
}

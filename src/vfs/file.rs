// SPDX-License-Identifier: GPL-2.0

//! The [`InodeOperations`] every inode shares (attributes, the file attributes of `chattr`), and
//! the `inode_operations` of non-directory inodes (regular files, symlinks, device nodes, FIFOs,
//! sockets).

use core::marker::PhantomData;

use kernel::bindings;
use kernel::error::{from_result, to_result, VTABLE_DEFAULT_ERROR};
use kernel::prelude::*;

use super::bindings as ext;
use super::inode::{Inode, InodeKind, Locked};
use super::registration::{FileSystem, Operations};
use crate::format::BLOCK_SIZE;

/// The inode operations every kind of inode shares.
///
/// Without `setattr` the VFS changes only the cached inode (`simple_setattr`).
#[vtable]
pub(crate) trait InodeOperations: FileSystem {
    /// Changes attributes; the cached inode holds the VFS's computed values and must be
    /// refreshed from disk (success or not).
    fn setattr(_inode: Locked<'_, Self>, _change: &AttrChange) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The file attributes of `inode` (`fileattr_get`: `FS_IOC_GETFLAGS`, `FS_IOC_FSGETXATTR`,
    /// `file_getattr`). Without it those fail (`ENOTTY`, `EOPNOTSUPP`).
    fn fileattr_get(_inode: &Inode<Self>) -> Result<FileAttrs> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Sets the file attributes of `inode` to `attrs` (`fileattr_set`: `FS_IOC_SETFLAGS`,
    /// `FS_IOC_FSSETXATTR`, `file_setattr`), with a new change time, and refreshes the cached
    /// inode, whose `S_IMMUTABLE`, `S_APPEND` and `S_NOATIME` the VFS enforces. The VFS checked
    /// that the caller owns the inode (or may act for its owner) and has `CAP_LINUX_IMMUTABLE`
    /// if immutable or append-only change; flags other than [`FileAttrs`]' were refused with
    /// `EOPNOTSUPP`. A regular file about to become immutable or append-only has no direct I/O
    /// in flight and its dirty pages written back.
    fn fileattr_set(_inode: Locked<'_, Self>, _attrs: FileAttrs) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The file attributes of `chattr`/`lsattr` this layer carries between the VFS and a
/// filesystem: the `FS_*_FL` flags of `FS_IOC_GETFLAGS` (and the matching `FS_XFLAG_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileAttrs {
    /// `FS_IMMUTABLE_FL` (`chattr +i`): no change of data, attributes, names or links.
    pub(crate) immutable: bool,
    /// `FS_APPEND_FL` (`chattr +a`): data only appended; a directory's names only added.
    pub(crate) append: bool,
    /// `FS_NODUMP_FL` (`chattr +d`): not to be backed up by `dump(8)`.
    pub(crate) nodump: bool,
    /// `FS_NOATIME_FL` (`chattr +A`): no access-time updates.
    pub(crate) noatime: bool,
}

impl FileAttrs {
    /// Every `FS_*_FL` flag [`FileAttrs`] carries.
    const FS_FLAGS: u32 = bindings::FS_IMMUTABLE_FL
        | bindings::FS_APPEND_FL
        | bindings::FS_NODUMP_FL
        | bindings::FS_NOATIME_FL;

    /// The attributes of `FS_*_FL` flags, or `None` if a flag outside [`Self::FS_FLAGS`] is set.
    fn from_fs_flags(flags: u32) -> Option<Self> {
        if flags & !Self::FS_FLAGS != 0 {
            return None;
        }
        Some(Self {
            immutable: flags & bindings::FS_IMMUTABLE_FL != 0,
            append: flags & bindings::FS_APPEND_FL != 0,
            nodump: flags & bindings::FS_NODUMP_FL != 0,
            noatime: flags & bindings::FS_NOATIME_FL != 0,
        })
    }

    /// The `FS_*_FL` flags of the attributes.
    fn fs_flags(self) -> u32 {
        [
            (self.immutable, bindings::FS_IMMUTABLE_FL),
            (self.append, bindings::FS_APPEND_FL),
            (self.nodump, bindings::FS_NODUMP_FL),
            (self.noatime, bindings::FS_NOATIME_FL),
        ]
        .into_iter()
        .filter(|&(set, _)| set)
        .fold(0, |f, (_, bit)| f | bit)
    }

    /// The VFS inode flags (`i_flags`) the attributes give: `S_IMMUTABLE`, `S_APPEND`,
    /// `S_NOATIME`.
    pub(super) fn inode_flags(self) -> u32 {
        [
            (self.immutable, bindings::S_IMMUTABLE),
            (self.append, bindings::S_APPEND),
            (self.noatime, bindings::S_NOATIME),
        ]
        .into_iter()
        .filter(|&(set, _)| set)
        .fold(0, |f, (_, bit)| f | bit)
    }
}

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
    /// The new size is below the cached one: a truncation, whose blocks past the new size go
    /// even where the stored size lags the cached one (see [`super::DataOperations::write_done`]).
    pub(crate) truncates: bool,
    /// New access time.
    pub(crate) atime: Option<(i64, u32)>,
    /// New modification time.
    pub(crate) mtime: Option<(i64, u32)>,
    /// New change time.
    pub(crate) ctime: Option<(i64, u32)>,
}

/// The entries of every kind's `inode_operations`: attributes and the list of extended
/// attributes.
pub(super) const fn common_inode_operations<T: Operations>() -> bindings::inode_operations {
    bindings::inode_operations {
        setattr: if T::HAS_SETATTR {
            Some(setattr_callback::<T>)
        } else {
            None
        },
        getattr: Some(getattr_callback::<T>),
        listxattr: super::xattr::listxattr_operation::<T>(),
        get_inode_acl: super::acl::operations::<T>().get,
        set_acl: super::acl::operations::<T>().set,
        fileattr_get: if T::HAS_FILEATTR_GET {
            Some(fileattr_get_callback::<T>)
        } else {
            None
        },
        fileattr_set: if T::HAS_FILEATTR_SET {
            Some(fileattr_set_callback::<T>)
        } else {
            None
        },
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    }
}

/// Operation tables of non-directory inodes of `T`.
struct Tables<T>(PhantomData<T>);

impl<T: Operations> Tables<T> {
    const FILE_INODE_OPS: bindings::inode_operations = common_inode_operations::<T>();

    const REGULAR_INODE_OPS: bindings::inode_operations = bindings::inode_operations {
        fiemap: super::iomap::fiemap_operation::<T>(),
        ..common_inode_operations::<T>()
    };

    // Symlinks have no ACLs (their permissions are never checked), as on ext4.
    const SYMLINK_OPS: bindings::inode_operations = bindings::inode_operations {
        get_link: Some(bindings::simple_get_link),
        get_inode_acl: None,
        set_acl: None,
        ..common_inode_operations::<T>()
    };
}

/// The `inode_operations` of regular files.
pub(super) fn inode_operations<T: Operations>() -> &'static bindings::inode_operations {
    &Tables::<T>::REGULAR_INODE_OPS
}

/// The `inode_operations` of symlinks.
pub(super) fn symlink_operations<T: Operations>() -> &'static bindings::inode_operations {
    &Tables::<T>::SYMLINK_OPS
}

/// The `inode_operations` of device nodes, FIFOs and sockets: attributes only
/// (`init_special_inode` sets their file operations).
pub(super) fn special_operations<T: Operations>() -> &'static bindings::inode_operations {
    &Tables::<T>::FILE_INODE_OPS
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `setattr`.
unsafe extern "C" fn setattr_callback<T: Operations>(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    attr: *mut bindings::iattr,
) -> c_int {
    from_result(|| {
        // SAFETY: `setattr`'s contract: `dentry` is a live, positive dentry, referenced by the
        // caller for the call.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: `raw` has our inode operations, so it is an initialised inode of `T`, pinned
        // by `dentry`; `notify_change` holds its `i_rwsem` for the call.
        let inode = unsafe { Locked::new(Inode::<T>::from_raw(raw)) };
        inode.super_block().live()?;
        // SAFETY: `attr` is the caller's request, live for the call and written by nobody else
        // while the VFS holds the inode's `i_rwsem`.
        let (asked, asked_size) = unsafe { ((*attr).ia_valid, (*attr).ia_size) };
        // As ext4: an immutable inode takes no attribute change at all, an append-only one no
        // change of mode, owner or explicit times, and (ours) no shrinking; the VFS checked most
        // of it before taking the lock, and `chattr` may have run since.
        let (immutable, append) = inode.is_immutable_or_append();
        let shrinks = asked & bindings::ATTR_SIZE != 0 && asked_size < inode.size();
        let owner_or_times = bindings::ATTR_MODE
            | bindings::ATTR_UID
            | bindings::ATTR_GID
            | bindings::ATTR_TIMES_SET;
        if immutable || (append && (asked & owner_or_times != 0 || shrinks)) {
            return Err(EPERM);
        }
        // SAFETY: the arguments are the ones the VFS passed to this `setattr`: live for the call,
        // with the inode's `i_rwsem` held as `setattr_prepare` requires. It reads the inode and
        // may clear flags in `*attr` (`ATTR_KILL_PRIV`), the caller's request, which is ours to
        // change for the call; it returns `-EPERM`, `-EFBIG` and the like for changes the caller
        // may not make.
        to_result(unsafe { bindings::setattr_prepare(idmap, dentry, attr) })?;
        // SAFETY: `attr` is the caller's request, live for the call and written by nobody else
        // while the VFS holds the inode's `i_rwsem`.
        let (valid, new_size) = unsafe { ((*attr).ia_valid, (*attr).ia_size) };
        // truncate(2) passes no time flags: a size change updates mtime and ctime all the
        // same (POSIX), as every filesystem does in its own setattr.
        if valid & bindings::ATTR_SIZE != 0
            && valid & bindings::ATTR_CTIME == 0
            && new_size != inode.size()
        {
            // SAFETY: `raw` is the live inode of the call (pinned by `dentry`), whose superblock
            // is mounted for the call; `current_time` reads the clock and the superblock's time
            // granularity and changes nothing.
            let now = unsafe { bindings::current_time(raw) };
            // SAFETY: `attr` is the caller's request, live for the call and ours to complete
            // (nobody else writes it while the VFS holds the inode's `i_rwsem`).
            unsafe {
                (*attr).ia_mtime = now;
                (*attr).ia_ctime = now;
                (*attr).ia_valid |= bindings::ATTR_MTIME | bindings::ATTR_CTIME;
            }
        }
        // Let the VFS compute the new values on the cached inode (S_ISGID clearing, times),
        // then store what it computed; the filesystem refreshes the inode from disk after,
        // which also undoes the cached change if storing fails.
        // SAFETY: `raw` and `attr` are the live inode and request of the call, which
        // `setattr_prepare` accepted; `setattr_copy` writes the inode's cached attributes, which
        // the `i_rwsem` the VFS holds lets this call change.
        unsafe { bindings::setattr_copy(idmap, raw, attr) };
        // SAFETY: `attr` is the caller's request, live for the call.
        let valid = unsafe { (*attr).ia_valid };
        let has = |flag: u32| valid & flag != 0;
        let (uid, gid) = inode.owner();
        let [atime, mtime, ctime] = inode.times();
        let change = AttrChange {
            // CAST: masked to the permission bits.
            perm: has(bindings::ATTR_MODE).then(|| (inode.mode() & 0o7777) as u16),
            uid: has(bindings::ATTR_UID).then_some(uid),
            gid: has(bindings::ATTR_GID).then_some(gid),
            size: if has(bindings::ATTR_SIZE) {
                Some(u64::try_from(new_size).map_err(|_| EINVAL)?)
            } else {
                None
            },
            truncates: has(bindings::ATTR_SIZE) && new_size < inode.size(),
            atime: has(bindings::ATTR_ATIME).then_some(atime),
            mtime: has(bindings::ATTR_MTIME).then_some(mtime),
            ctime: has(bindings::ATTR_CTIME).then_some(ctime),
        };
        let regular = InodeKind::from_mode(inode.mode()) == Some(InodeKind::Regular);
        match change.size {
            Some(size) if regular => {
                // Under `i_rwsem` and before the `invalidate_lock` (`start_change`'s order).
                let _change = super::iomap::Change::start(&inode)?;
                // SAFETY: `raw` is a regular file (checked above) of `T` (it has our inode
                // operations), and `notify_change` holds its `i_rwsem` for the call, which
                // outlives `resize`.
                let resize = unsafe { super::iomap::Resize::<T>::new(raw, size) }?;
                resize.apply(|| T::setattr(inode, &change))?
            }
            _ => T::setattr(inode, &change)?,
        }
        if change.perm.is_some() {
            // SAFETY: `raw` is still the initialised inode of `T` pinned by `dentry`.
            let mode = unsafe { Inode::<T>::from_raw(raw) }.mode();
            // SAFETY: the live arguments of this `setattr`, whose inode's `i_rwsem` the VFS
            // holds; `mode` is the one just stored.
            unsafe { super::acl::chmod::<T>(idmap, dentry, mode) }?;
        }
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fileattr_get`.
unsafe extern "C" fn fileattr_get_callback<T: Operations>(
    dentry: *mut bindings::dentry,
    fa: *mut bindings::file_kattr,
) -> c_int {
    from_result(|| {
        // SAFETY: `fileattr_get`'s contract: `dentry` is a live, positive dentry, referenced by
        // the caller for the call.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: `raw` has our inode operations, so it is an initialised inode of `T`, pinned
        // by `dentry` for the call.
        let inode = unsafe { Inode::<T>::from_raw(raw) };
        inode.super_block().live()?;
        let attrs = T::fileattr_get(inode)?;
        // SAFETY: `fa` is the caller's `file_kattr`, live and ours to fill for the call (the
        // module's complete definition of the struct the kernel crate leaves opaque, from the
        // same header); `fileattr_fill_flags` sets `flags`, the matching `fsx_xflags` and
        // `flags_valid`.
        unsafe { ext::fileattr_fill_flags(fa.cast(), attrs.fs_flags()) };
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `fileattr_set`.
unsafe extern "C" fn fileattr_set_callback<T: Operations>(
    _idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    fa: *mut bindings::file_kattr,
) -> c_int {
    from_result(|| {
        // SAFETY: `fileattr_set`'s contract: `dentry` is a live, positive dentry, referenced by
        // the caller for the call.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: `raw` has our inode operations, so it is an initialised inode of `T`, pinned
        // by `dentry`; `vfs_fileattr_set` holds its `i_rwsem` for the call.
        let inode = unsafe { Locked::new(Inode::<T>::from_raw(raw)) };
        inode.super_block().live()?;
        let fa = fa.cast::<ext::file_kattr>();
        // SAFETY: `fa` is the caller's request, live for the call and not written by anyone
        // else meanwhile; the helper reads its `fsx_*` fields. Project ids, extent size hints
        // and `FS_XFLAG_*` flags beyond the common ones are not kept: refused, as btrfs does.
        if unsafe { ext::lcfs_fileattr_has_fsx(fa) } {
            return Err(EOPNOTSUPP);
        }
        // SAFETY: as above; `flags` is a plain integer field, which the VFS filled from the
        // request (`FS_XFLAG_*` translated) and the current attributes.
        let flags = unsafe { (*fa).flags };
        // Any flag but the four (compression, `FS_SYNC_FL`, `FS_DAX_FL`, ...): `EOPNOTSUPP`, as
        // ext4 and btrfs answer flags they do not support.
        let attrs = FileAttrs::from_fs_flags(flags).ok_or(EOPNOTSUPP)?;
        let (immutable, append) = inode.is_immutable_or_append();
        if InodeKind::from_mode(inode.mode()) == Some(InodeKind::Regular)
            && ((attrs.immutable && !immutable) || (attrs.append && !append))
        {
            // As ext4: no direct write still in flight, and every dirty page written back,
            // which write-protects the file's shared mappings: a later write through one
            // faults, and `page_mkwrite` refuses it. Writeback takes no `i_rwsem`.
            inode.dio_wait();
            inode.write_back()?;
        }
        T::fileattr_set(inode, attrs)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `getattr`.
unsafe extern "C" fn getattr_callback<T: FileSystem>(
    idmap: *mut bindings::mnt_idmap,
    path: *const bindings::path,
    stat: *mut bindings::kstat,
    request_mask: u32,
    _flags: c_uint,
) -> c_int {
    // SAFETY: `getattr`'s contract: `path` is live and holds a reference to its dentry for the
    // call.
    let dentry = unsafe { (*path).dentry };
    // SAFETY: `dentry` is live (pinned by `path`) and positive.
    let raw = unsafe { (*dentry).d_inode };
    // SAFETY: `raw` has our inode operations, so it is an initialised inode of `T`, pinned by
    // `dentry` for the call.
    let inode = unsafe { Inode::<T>::from_raw(raw) };
    if let Err(e) = inode.super_block().live() {
        return e.to_errno();
    }
    // SAFETY: `raw` is live (pinned by `dentry`) and `stat` is the caller's buffer, live and
    // ours to fill for the call; `generic_fillattr` only reads the inode.
    unsafe { bindings::generic_fillattr(idmap, request_mask, raw, stat) };
    let (sec, nsec) = inode.btime();
    let nsec = c_long::try_from(nsec).unwrap_or(0);
    // SAFETY: `stat` is the caller's buffer, live and ours to fill for the call.
    unsafe {
        (*stat).btime.tv_sec = sec;
        (*stat).btime.tv_nsec = nsec;
        (*stat).result_mask |= bindings::STATX_BTIME;
    }
    // SAFETY: `raw` is live (pinned by `dentry`), on a mounted superblock with its device;
    // `stat` is the caller's buffer, ours to fill. Direct writes are in whole blocks.
    unsafe { ext::lcfs_fill_dio_align(stat.cast(), raw.cast(), request_mask, BLOCK_SIZE) };
    0
}

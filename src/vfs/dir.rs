// SPDX-License-Identifier: GPL-2.0

//! Directories: the [`DirOperations`] trait and the `inode_operations` and `file_operations` of
//! directories (lookup, readdir, and the operations that add, remove and move names).

use core::marker::PhantomData;
use core::ptr;

use kernel::bindings;
use kernel::error::{from_result, to_result, VTABLE_DEFAULT_ERROR};
use kernel::prelude::*;

use super::acl::Inherited;
use super::bindings as ext;
use super::inode::{Inode, Locked};
use super::registration::{ARef, FileSystem, Operations};

/// The directory operations of a filesystem.
///
/// `lookup` and `readdir` are required. An optional method the filesystem does not implement
/// leaves its C operations NULL, and the VFS refuses them (`EPERM`): a directory without
/// `create` cannot gain names, for example.
#[vtable]
pub(crate) trait DirOperations: FileSystem {
    /// Looks `name` up in directory `dir`; `Ok(None)` when it does not exist.
    fn lookup(dir: &Inode<Self>, name: &[u8]) -> Result<Option<ARef<Inode<Self>>>>;

    /// Emits the entries of `dir` from `ctx.pos()` on.
    fn readdir(dir: &Inode<Self>, ctx: &mut DirContext<'_>) -> Result;

    /// Creates `name` in `dir` (any kind of inode: `create`, `mkdir`, `mknod`, `symlink`) and
    /// returns it.
    fn create(
        _dir: Locked<'_, Self>,
        _name: &[u8],
        _node: &NewNode<'_>,
    ) -> Result<ARef<Inode<Self>>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Creates a regular file without a name (`O_TMPFILE` in `dir`), with no links, and
    /// returns it: deleted at its last close unless [`Self::link`] names it first. The VFS does
    /// not hold `dir`'s `i_rwsem`: `dir` does not change.
    fn tmpfile(_dir: &Inode<Self>, _node: &NewNode<'_>) -> Result<ARef<Inode<Self>>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Adds the name `name` in `dir` for `inode` (also a file from [`Self::tmpfile`], whose
    /// link count is 0 until then).
    fn link(_dir: Locked<'_, Self>, _inode: Locked<'_, Self>, _name: &[u8]) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Removes the name `name` of `inode` from `dir` (`unlink` and `rmdir`).
    fn unlink(_dir: Locked<'_, Self>, _name: &[u8], _inode: Locked<'_, Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Renames.
    fn rename(_request: &Rename<'_, Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// File type of a directory entry, as reported by `readdir` (`DT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        // SAFETY: `file` and `ctx` are the live arguments of the `iterate_shared` call in progress
        // (type invariant), which `dir_emit_dots` expects; it writes only through `ctx`, which the
        // readdir owns for the call (the VFS holds `f_pos_lock` and the directory's `i_rwsem`).
        unsafe { ext::lcfs_dir_emit_dots(self.file.cast(), self.ctx.cast()) }
    }

    /// Moves the position to `pos` (the cookie of the next entry).
    pub(crate) fn set_pos(&mut self, pos: i64) {
        // SAFETY: `ctx` is the live context of the `iterate_shared` call in progress (type
        // invariant); its `pos` is the filesystem's to advance during the call (`&mut self`
        // rules out a concurrent reader on our side, and the VFS reads it back only after).
        unsafe { (*self.ctx).pos = pos };
    }

    /// Emits one entry; returns `false` when the caller's buffer is full.
    pub(crate) fn emit(&mut self, name: &[u8], ino: u64, kind: DirEntryType) -> bool {
        let Ok(len) = c_int::try_from(name.len()) else {
            return false;
        };
        // SAFETY: `ctx` is the live context of the `iterate_shared` call in progress (type
        // invariant); `name` is a slice valid for `len` bytes, which `dir_emit` copies into the
        // caller's buffer before it returns.
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

impl<T: Operations> Tables<T> {
    const INODE_OPS: bindings::inode_operations = {
        let create = T::HAS_CREATE;
        bindings::inode_operations {
            lookup: Some(lookup_callback::<T>),
            create: if create {
                Some(create_callback::<T>)
            } else {
                None
            },
            mkdir: if create {
                Some(mkdir_callback::<T>)
            } else {
                None
            },
            mknod: if create {
                Some(mknod_callback::<T>)
            } else {
                None
            },
            symlink: if create {
                Some(symlink_callback::<T>)
            } else {
                None
            },
            link: if T::HAS_LINK {
                Some(link_callback::<T>)
            } else {
                None
            },
            tmpfile: if T::HAS_TMPFILE {
                Some(tmpfile_callback::<T>)
            } else {
                None
            },
            unlink: if T::HAS_UNLINK {
                Some(unlink_callback::<T>)
            } else {
                None
            },
            rmdir: if T::HAS_UNLINK {
                Some(unlink_callback::<T>)
            } else {
                None
            },
            rename: if T::HAS_RENAME {
                Some(rename_callback::<T>)
            } else {
                None
            },
            ..super::file::common_inode_operations::<T>()
        }
    };

    const FILE_OPS: bindings::file_operations = bindings::file_operations {
        llseek: Some(bindings::generic_file_llseek),
        read: Some(bindings::generic_read_dir),
        iterate_shared: Some(readdir_callback::<T>),
        // A directory's fsync must make its entries durable (POSIX: after a create or rename, an
        // fsync of the directory persists the name), so it commits like a file's.
        fsync: if T::HAS_FSYNC {
            Some(super::iomap::fsync_callback::<T>)
        } else {
            Some(bindings::noop_fsync)
        },
        // Directory leases (NFS directory delegations), kept by the VFS as for files.
        setlease: Some(ext::generic_setlease),
        unlocked_ioctl: super::ioctl::ioctl_operation::<T>(),
        compat_ioctl: super::ioctl::compat_ioctl_operation::<T>(),
        // SAFETY: the table's fields are `Option`s of function pointers (all-zero is `None`, by
        // the guaranteed null-pointer niche), raw pointers or integers, so all-zero is a valid
        // value: every entry not set above is NULL to the kernel.
        ..unsafe { core::mem::zeroed() }
    };
}

pub(super) fn inode_operations<T: Operations>() -> &'static bindings::inode_operations {
    &Tables::<T>::INODE_OPS
}

pub(super) fn file_operations<T: Operations>() -> &'static bindings::file_operations {
    &Tables::<T>::FILE_OPS
}

/// What a new inode will be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewNode<'a> {
    /// Type and permission bits (after the umask or the directory's default ACL, with `S_ISGID`
    /// inherited as POSIX wants).
    pub(crate) mode: u32,
    /// Device number of a device node (`new_encode_dev` form).
    pub(crate) rdev: u64,
    /// Owner (the caller's filesystem uid).
    pub(crate) uid: u32,
    /// Group (the caller's, or the directory's if it is set-group-ID).
    pub(crate) gid: u32,
    /// A symlink's target.
    pub(crate) link: Option<&'a [u8]>,
    /// The access ACL inherited from the directory's default ACL, in the VFS's xattr encoding,
    /// to store as [`super::AclKind::Access`] with the inode (`mode` already reflects it).
    pub(crate) access_acl: Option<&'a [u8]>,
    /// A new directory's default ACL (its parent's), to store as [`super::AclKind::Default`].
    pub(crate) default_acl: Option<&'a [u8]>,
}

/// How `rename` treats an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenameMode {
    /// Replace the target (POSIX `rename`).
    Replace,
    /// Fail with `EEXIST` if the target exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and target (`RENAME_EXCHANGE`).
    Exchange,
    /// Leave a whiteout at the source (`RENAME_WHITEOUT`).
    Whiteout,
}

/// A rename request.
pub(crate) struct Rename<'a, T: FileSystem> {
    /// Source directory.
    pub(crate) old_dir: Locked<'a, T>,
    /// Source name.
    pub(crate) old_name: &'a [u8],
    /// The inode being moved.
    pub(crate) old_inode: Locked<'a, T>,
    /// Target directory.
    pub(crate) new_dir: Locked<'a, T>,
    /// Target name.
    pub(crate) new_name: &'a [u8],
    /// The inode the target name points to, if any.
    pub(crate) new_inode: Option<Locked<'a, T>>,
    /// Mode.
    pub(crate) mode: RenameMode,
}

/// The name of `dentry`.
///
/// # Safety
///
/// `dentry` must be live, with a name that is stable for `'a` (the VFS holds the parent's
/// `i_rwsem` or the dentry is being looked up).
unsafe fn dentry_name<'a>(dentry: *mut bindings::dentry) -> &'a [u8] {
    let mut len: u32 = 0;
    // SAFETY: `dentry` is live (function contract), so its `d_name` may be read; the helper
    // reads `d_name.name` and `d_name.len` and writes the length through `&mut len`, a local
    // that is live and exclusively borrowed for the call.
    let name = unsafe { ext::lcfs_dentry_name(dentry.cast(), &mut len) };
    let len = usize::try_from(len).unwrap_or(0);
    // SAFETY: `d_name.name` points to `d_name.len` initialised bytes, which are not freed or
    // changed while the name is stable (contract: for `'a`, as a rename, the only thing that
    // replaces a dentry's name, needs the parent's `i_rwsem` the caller's VFS operation holds).
    unsafe { core::slice::from_raw_parts(name, len) }
}

/// Owner and mode of a new inode in `dir` created through a mount with idmapping `idmap`, as
/// `inode_init_owner` computes them: the caller's fsuid and fsgid mapped through the mount's
/// idmapping into the filesystem's (an idmapped mount stores the ids the mount maps them to).
/// `EOVERFLOW` if they have no mapping there (the VFS refuses such creations before).
///
/// # Safety
///
/// `idmap` is the live idmapping of the mount the current VFS operation goes through.
unsafe fn new_owner<T: FileSystem>(
    idmap: *mut bindings::mnt_idmap,
    dir: &Inode<T>,
    mode: u32,
) -> Result<(u32, u32, u32)> {
    // SAFETY: `idmap` is live (contract) and `dir` a live inode; the helper reads the task's own
    // credentials (`current_fsuid()`, which only the task itself replaces, with RCU) and maps
    // them, with no other effect.
    let uid = unsafe { ext::lcfs_mapped_fsuid(idmap.cast(), dir.as_ptr().cast()) };
    if uid == u32::MAX {
        return Err(EOVERFLOW);
    }
    if dir.mode() & bindings::S_ISGID != 0 {
        let mode = if mode & bindings::S_IFMT == bindings::S_IFDIR {
            mode | bindings::S_ISGID
        } else {
            mode
        };
        Ok((uid, dir.owner().1, mode))
    } else {
        // SAFETY: as for the uid above, with the task's fsgid.
        let gid = unsafe { ext::lcfs_mapped_fsgid(idmap.cast(), dir.as_ptr().cast()) };
        if gid == u32::MAX {
            return Err(EOVERFLOW);
        }
        Ok((uid, gid, mode))
    }
}

/// The arguments of a create-type operation (`create`, `mkdir`, `mknod`, `symlink`).
///
/// # Invariants
///
/// `dentry` is the operation's negative, hashed dentry, live for `'a`, whose name `name` is
/// stable for `'a`; `dir` is its parent, whose `i_rwsem` the VFS holds for `'a`.
struct NewEntry<'a, T: FileSystem> {
    dir: Locked<'a, T>,
    name: &'a [u8],
    dentry: *mut bindings::dentry,
    idmap: *mut bindings::mnt_idmap,
}

impl<'a, T: Operations> NewEntry<'a, T> {
    /// # Safety
    ///
    /// `idmap`, `dir` and `dentry` must be the live arguments of a create-type operation on a
    /// directory of `T` (the VFS holds `dir`'s `i_rwsem` for `'a`; `dentry` is negative and
    /// hashed; `idmap` is the idmapping of the mount it goes through).
    unsafe fn new(
        idmap: *mut bindings::mnt_idmap,
        dir: *mut bindings::inode,
        dentry: *mut bindings::dentry,
    ) -> Self {
        // SAFETY: `dir` is a live, initialised directory of `T` (it has our inode operations),
        // whose `i_rwsem` the VFS holds for the call (contract).
        let dir = unsafe { Locked::new(Inode::<T>::from_raw(dir)) };
        // SAFETY: `dentry` is live and its name stable while the VFS holds the parent's
        // `i_rwsem` (contract).
        let name = unsafe { dentry_name(dentry) };
        // INVARIANT: from the contract.
        Self {
            dir,
            name,
            dentry,
            idmap,
        }
    }

    /// Creates the inode (owner and group as `inode_init_owner` computes them) and
    /// instantiates the dentry with it.
    fn make(self, mode: u32, rdev: u64, link: Option<&[u8]>) -> Result {
        self.dir.super_block().live()?;
        // SAFETY: `idmap` is the live idmapping of the operation's mount (type invariant).
        let (uid, gid, mut mode) = unsafe { new_owner(self.idmap, &self.dir, mode) }?;
        let acls = Inherited::new(&self.dir, &mut mode)?;
        let node = NewNode {
            mode,
            rdev,
            uid,
            gid,
            link,
            access_acl: acls.access_acl(),
            default_acl: acls.default_acl(),
        };
        let inode = T::create(self.dir, self.name, &node)?;
        acls.cache(&inode);
        let inode = ARef::into_raw(inode).as_ptr().cast::<bindings::inode>();
        // SAFETY: `dentry` is the operation's live, negative dentry and the VFS holds its
        // parent's `i_rwsem` (type invariant), as `d_instantiate` requires; `inode` carries the
        // reference `into_raw` released, which `d_instantiate` takes over.
        unsafe { bindings::d_instantiate(self.dentry, inode) };
        Ok(())
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `create`.
unsafe extern "C" fn create_callback<T: Operations>(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
) -> c_int {
    // SAFETY: `create`'s contract meets `NewEntry::new`'s: `dir` has our directory inode
    // operations (a directory of `T`) and the VFS holds its `i_rwsem` for the call
    // (`filename_create`); `dentry` is the negative, hashed dentry of the new name; `idmap` is
    // the idmapping of the mount the operation goes through.
    let entry = unsafe { NewEntry::<T>::new(idmap, dir, dentry) };
    from_result(|| entry.make(u32::from(mode), 0, None).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `mkdir`.
unsafe extern "C" fn mkdir_callback<T: Operations>(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
) -> *mut bindings::dentry {
    let mode = u32::from(mode) | bindings::S_IFDIR;
    // SAFETY: `mkdir`'s contract meets `NewEntry::new`'s: `dir` has our directory inode
    // operations (a directory of `T`) and the VFS holds its `i_rwsem` for the call
    // (`filename_create`); `dentry` is the negative, hashed dentry of the new name; `idmap` is
    // the idmapping of the mount the operation goes through.
    let entry = unsafe { NewEntry::<T>::new(idmap, dir, dentry) };
    match entry.make(mode, 0, None) {
        // NULL: the dentry passed in was instantiated.
        Ok(()) => ptr::null_mut(),
        Err(e) => e.to_ptr(),
    }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `mknod`.
unsafe extern "C" fn mknod_callback<T: Operations>(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
    dev: bindings::dev_t,
) -> c_int {
    // SAFETY: `new_encode_dev` only shifts and masks its integer argument: it dereferences
    // nothing and has no other effect.
    let rdev = u64::from(unsafe { ext::lcfs_new_encode_dev(dev) });
    // SAFETY: `mknod`'s contract meets `NewEntry::new`'s: `dir` has our directory inode
    // operations (a directory of `T`) and the VFS holds its `i_rwsem` for the call
    // (`filename_create`); `dentry` is the negative, hashed dentry of the new name; `idmap` is
    // the idmapping of the mount the operation goes through.
    let entry = unsafe { NewEntry::<T>::new(idmap, dir, dentry) };
    from_result(|| entry.make(u32::from(mode), rdev, None).map(|()| 0))
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `symlink`.
unsafe extern "C" fn symlink_callback<T: Operations>(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    target: *const c_char,
) -> c_int {
    from_result(|| {
        // SAFETY: `symlink`'s contract: `target` is the NUL-terminated path the VFS copied in
        // from user space (`getname`), live and unchanged until the call returns.
        let target = unsafe { CStr::from_char_ptr(target) }.to_bytes();
        let mode = bindings::S_IFLNK | 0o777;
        // SAFETY: `symlink`'s contract meets `NewEntry::new`'s: `dir` has our directory inode
        // operations (a directory of `T`) and the VFS holds its `i_rwsem` for the call
        // (`filename_create`); `dentry` is the negative, hashed dentry of the new name; `idmap`
        // is the idmapping of the mount the operation goes through.
        let entry = unsafe { NewEntry::<T>::new(idmap, dir, dentry) };
        entry.make(mode, 0, Some(target))?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `link`.
unsafe extern "C" fn link_callback<T: DirOperations>(
    old_dentry: *mut bindings::dentry,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
) -> c_int {
    from_result(|| {
        // SAFETY: `link`'s contract: `dir` is a live directory with our inode operations, so an
        // initialised inode of `T`, whose `i_rwsem` the VFS holds for the call (`filename_linkat`
        // locks the parent of the new name).
        let dir_ref = unsafe { Locked::new(Inode::<T>::from_raw(dir)) };
        // SAFETY: `old_dentry` is the live, positive dentry of the existing name, pinned by the
        // caller's path reference for the call.
        let raw = unsafe { (*old_dentry).d_inode };
        // SAFETY: `raw` is a live inode of the same superblock (`vfs_link` refuses a cross-device
        // link), so an initialised inode of `T`; `vfs_link` holds its `i_rwsem` for the call.
        let inode = unsafe { Locked::new(Inode::<T>::from_raw(raw)) };
        // SAFETY: `dentry` is the live, negative dentry of the new name; its name is stable
        // while the VFS holds `dir`'s `i_rwsem`, that is for the call.
        let name = unsafe { dentry_name(dentry) };
        dir_ref.super_block().live()?;
        T::link(dir_ref, inode, name)?;
        // SAFETY: `inode` is referenced (the VFS's reference through `old_dentry`, live for the
        // call), so taking another one is valid; `d_instantiate` below consumes it.
        unsafe { bindings::ihold(inode.as_ptr()) };
        // SAFETY: `dentry` is the call's live, negative dentry, whose parent's `i_rwsem` the VFS
        // holds; it takes over the reference just taken.
        unsafe { bindings::d_instantiate(dentry, inode.as_ptr()) };
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `tmpfile`.
unsafe extern "C" fn tmpfile_callback<T: Operations>(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    file: *mut bindings::file,
    mode: bindings::umode_t,
) -> c_int {
    from_result(|| {
        // SAFETY: `tmpfile`'s contract: `dir` is a live directory with our inode operations, so
        // an initialised inode of `T`, referenced through the opening path for the call.
        let dir = unsafe { Inode::<T>::from_raw(dir) };
        dir.super_block().live()?;
        // SAFETY: `tmpfile`'s contract: `idmap` is the live idmapping of the opening's mount.
        let (uid, gid, mut mode) = unsafe { new_owner(idmap, dir, u32::from(mode)) }?;
        let acls = Inherited::new(dir, &mut mode)?;
        let node = NewNode {
            mode,
            rdev: 0,
            uid,
            gid,
            link: None,
            access_acl: acls.access_acl(),
            default_acl: None,
        };
        let inode = T::tmpfile(dir, &node)?;
        acls.cache(&inode);
        let inode = ARef::into_raw(inode).as_ptr().cast::<bindings::inode>();
        // SAFETY: `inode` is the new, live inode whose reference `into_raw` released. Its
        // record has no links; `d_tmpfile` drops one, so it needs one first.
        unsafe { bindings::set_nlink(inode, 1) };
        // SAFETY: `file` is the file being opened by `vfs_tmpfile`, whose `f_path.dentry` is the
        // new unhashed dentry it allocated for this call; `d_tmpfile` instantiates it with
        // `inode`, taking over the reference released above.
        unsafe { bindings::d_tmpfile(file, inode) };
        // SAFETY: `file` now has its dentry instantiated; this opens it with our file
        // operations (`open_callback` runs), as `finish_open_simple` does for any `tmpfile`.
        to_result(unsafe { ext::lcfs_finish_open_simple(file.cast()) })?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `unlink` and
/// `rmdir`.
unsafe extern "C" fn unlink_callback<T: DirOperations>(
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
) -> c_int {
    from_result(|| {
        // SAFETY: `unlink`/`rmdir`'s contract: `dir` is a live directory with our inode
        // operations, so an initialised inode of `T`, whose `i_rwsem` the VFS holds for the call.
        let dir = unsafe { Locked::new(Inode::<T>::from_raw(dir)) };
        // SAFETY: `dentry` is the live, positive dentry being removed, referenced by the caller
        // for the call.
        let raw = unsafe { (*dentry).d_inode };
        // SAFETY: `raw` is a live inode of our superblock (a child of `dir`), so an initialised
        // inode of `T`; `vfs_unlink` and `vfs_rmdir` hold its `i_rwsem` for the call.
        let inode = unsafe { Locked::new(Inode::<T>::from_raw(raw)) };
        // SAFETY: `dentry` is live, and its name is stable while the VFS holds `dir`'s
        // `i_rwsem`, that is for the call.
        let name = unsafe { dentry_name(dentry) };
        dir.super_block().live()?;
        T::unlink(dir, name, inode)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `rename`.
unsafe extern "C" fn rename_callback<T: DirOperations>(
    _idmap: *mut bindings::mnt_idmap,
    old_dir: *mut bindings::inode,
    old_dentry: *mut bindings::dentry,
    new_dir: *mut bindings::inode,
    new_dentry: *mut bindings::dentry,
    flags: c_uint,
) -> c_int {
    from_result(|| {
        let mode = match flags {
            0 => RenameMode::Replace,
            bindings::RENAME_NOREPLACE => RenameMode::NoReplace,
            bindings::RENAME_EXCHANGE => RenameMode::Exchange,
            bindings::RENAME_WHITEOUT => RenameMode::Whiteout,
            _ => return Err(EINVAL),
        };
        // SAFETY: `rename`'s contract: `old_dir` is a live directory with our inode operations,
        // so an initialised inode of `T`; `lock_rename` holds its `i_rwsem` for the call.
        let old_dir = unsafe { Locked::new(Inode::<T>::from_raw(old_dir)) };
        // SAFETY: `old_dentry` is live (referenced by the caller) and its name is stable while
        // the VFS holds `old_dir`'s `i_rwsem`, that is for the call.
        let old_name = unsafe { dentry_name(old_dentry) };
        // SAFETY: `old_dentry` is the live, positive dentry being moved.
        let old_raw = unsafe { (*old_dentry).d_inode };
        // SAFETY: `old_raw` is a live inode of our superblock, so an initialised inode of `T`.
        // `vfs_rename` holds its `i_rwsem`, except for a directory moving inside its parent,
        // where `old_dir`'s lock covers the entry that changes (the `Locked` invariant).
        let old_inode = unsafe { Locked::new(Inode::<T>::from_raw(old_raw)) };
        // SAFETY: `new_dir` is a live directory of our superblock (the VFS refuses a rename
        // across mounts with `EXDEV`), so an initialised inode of `T`; `lock_rename` holds its
        // `i_rwsem` for the call.
        let new_dir = unsafe { Locked::new(Inode::<T>::from_raw(new_dir)) };
        // SAFETY: `new_dentry` is live (referenced by the caller) and its name is stable while
        // the VFS holds `new_dir`'s `i_rwsem`, that is for the call.
        let new_name = unsafe { dentry_name(new_dentry) };
        // SAFETY: `new_dentry` is live; it may be negative (null `d_inode`).
        let new_raw = unsafe { (*new_dentry).d_inode };
        let new_inode = if new_raw.is_null() {
            None
        } else {
            // SAFETY: a positive `new_dentry`'s inode is a live inode of our superblock (a child
            // of `new_dir`), so an initialised inode of `T`, whose `i_rwsem` `vfs_rename` holds
            // for the call.
            Some(unsafe { Locked::new(Inode::<T>::from_raw(new_raw)) })
        };
        old_dir.super_block().live()?;
        let request = Rename {
            old_dir,
            old_name,
            old_inode,
            new_dir,
            new_name,
            new_inode,
            mode,
        };
        T::rename(&request)?;
        Ok(0)
    })
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `lookup`.
unsafe extern "C" fn lookup_callback<T: DirOperations>(
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    _flags: c_uint,
) -> *mut bindings::dentry {
    // SAFETY: `lookup`'s contract: `dentry` is a live dentry being looked up (in-lookup or
    // unhashed, with the parent's `i_rwsem` held at least shared), so nothing renames it and
    // its name is stable for the call.
    let name = unsafe { dentry_name(dentry) };
    // SAFETY: `dir` is a live directory with our inode operations, so an initialised inode of
    // `T`, and the VFS holds a reference to it (through the parent dentry) for the call.
    let dir = unsafe { Inode::<T>::from_raw(dir) };
    if let Err(e) = dir.super_block().live() {
        return e.to_ptr();
    }
    let inode = match T::lookup(dir, name) {
        Ok(Some(inode)) => ARef::into_raw(inode).as_ptr().cast::<bindings::inode>(),
        Ok(None) => ptr::null_mut(),
        Err(e) => return e.to_ptr(),
    };
    // SAFETY: `dentry` is the live dentry the VFS passed to `lookup`, not yet instantiated, as
    // `d_splice_alias` requires; `inode` is null (a negative entry) or carries the reference
    // `into_raw` released, which `d_splice_alias` takes over (and drops on failure).
    unsafe { bindings::d_splice_alias(inode, dentry) }
}

/// # Safety
///
/// Called only by the kernel, with arguments that satisfy the C contract of `readdir`.
unsafe extern "C" fn readdir_callback<T: DirOperations>(
    file: *mut bindings::file,
    ctx: *mut bindings::dir_context,
) -> c_int {
    from_result(|| {
        // SAFETY: `iterate_shared`'s contract: `file` is a live, open file, pinned for the call.
        let raw = unsafe { (*file).f_inode };
        // SAFETY: the file has our directory file operations, so its inode is an initialised
        // directory of `T`, which the open file keeps referenced for the call.
        let dir = unsafe { Inode::<T>::from_raw(raw) };
        dir.super_block().live()?;
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

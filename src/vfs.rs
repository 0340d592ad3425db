// SPDX-License-Identifier: GPL-2.0

//! The thin layer between LCFS and the kernel's VFS and block layer.
//!
//! All `unsafe` code of lcfs.ko lives under this module, each block with a `// SAFETY:` comment
//! naming the invariant it relies on. It turns C objects into typed Rust handles
//! ([`SuperBlock`], [`Inode`], [`DirContext`]) and C callbacks into calls of safe traits, one per
//! family of C operation tables, which the filesystem logic in `crate::fs` implements:
//!
//! - [`FileSystem`]: the filesystem type, mount context and superblock operations;
//! - [`InodeOperations`]: what every kind of inode's `inode_operations` shares (`setattr`, the
//!   file attributes of `chattr`);
//! - [`DirOperations`]: the `inode_operations` and `file_operations` of directories;
//! - [`FileOperations`]: the `file_operations` of regular files (and `ioctl` of directories);
//! - [`DataOperations`]: the address-space and iomap operations of regular files;
//! - [`XattrOperations`]: the extended-attribute handlers and `listxattr`.
//!
//! The traits are `#[vtable]`s: an optional method the filesystem does not implement leaves its
//! C operation NULL, and the VFS's default for NULL applies.
//!
//! Lock order (outermost first): `s_umount` (VFS) -> `i_rwsem` -> `invalidate_lock` -> folio lock.

pub(crate) mod acl;
pub(crate) mod bindings;
pub(crate) mod block;
pub(crate) mod dir;
pub(crate) mod file;
pub(crate) mod inode;
pub(crate) mod ioctl;
pub(crate) mod iomap;
pub(crate) mod params;
pub(crate) mod registration;
pub(crate) mod rwsem;
pub(crate) mod super_block;
pub(crate) mod super_ops;
pub(crate) mod sysfs;
pub(crate) mod xattr;

pub(crate) use acl::AclKind;
pub(crate) use dir::{DirContext, DirEntryType, DirOperations, NewNode, Rename, RenameMode};
pub(crate) use file::{AttrChange, FileAttrs, InodeOperations};
pub(crate) use inode::{Iget, Inode, InodeKind, InodeParams, Locked, NewInode as NewVfsInode};
pub(crate) use ioctl::{
    capable_sys_admin, FsInfo, Label, LayerCreate, LayerDiff, LayerInfo, LayerList, Output, Request,
    UserArray, CREATE_READ_ONLY, DIFF_ADDED, DIFF_BUF_MAX, DIFF_BUF_MIN, DIFF_DELETED,
    DIFF_MODIFIED, INFO_OWN_BYTES, LAYER_READ_ONLY, LIST_MAX,
};
pub(crate) use iomap::{DataOperations, FileMap, FileOperations, MapFor, MapKind};
pub(crate) use params::{Param, ParamValue};
pub(crate) use registration::{ARef, FileSystem, Registration};
pub(crate) use rwsem::{new_rwsem, ReadGuard, RwSem, WriteGuard};
pub(crate) use super_block::{now, BlockDevice, NewSuperBlock, NoFsScope, SuperBlock};
pub(crate) use super_ops::StatFs;
pub(crate) use sysfs::SysfsOutput;
pub(crate) use xattr::{XattrOperations, XattrSet};

// SPDX-License-Identifier: GPL-2.0

//! The thin layer between LCFS and the kernel's VFS and block layer.
//!
//! All `unsafe` code of lcfs.ko lives under this module, each block with a `// SAFETY:` comment
//! naming the invariant it relies on. It turns C objects into typed Rust handles
//! ([`SuperBlock`], [`Inode`], [`DirContext`]) and C callbacks into calls of the safe
//! [`FileSystem`] trait, which the filesystem logic in `crate::fs` implements.
//!
//! Lock order (outermost first): `s_umount` (VFS) -> `i_rwsem` -> `invalidate_lock` -> folio lock.

pub(crate) mod bindings;
pub(crate) mod block;
pub(crate) mod dir;
pub(crate) mod file;
pub(crate) mod inode;
pub(crate) mod ioctl;
pub(crate) mod iomap;
pub(crate) mod params;
pub(crate) mod registration;
pub(crate) mod super_block;
pub(crate) mod xattr;

pub(crate) use dir::{DirContext, DirEntryType, NewNode, Rename, RenameMode};
pub(crate) use file::AttrChange;
pub(crate) use inode::{Iget, Inode, InodeKind, InodeParams};
pub(crate) use ioctl::{FsInfo, Output, Request};
pub(crate) use iomap::{FileMap, MapFor, MapKind};
pub(crate) use params::{Param, ParamValue};
pub(crate) use registration::{ARef, FileSystem, Registration, StatFs};
pub(crate) use super_block::{now, BlockDevice, NewSuperBlock, NoFsScope, SuperBlock};
pub(crate) use xattr::XattrSet;

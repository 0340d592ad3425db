// SPDX-License-Identifier: GPL-2.0

//! The LCFS filesystem logic, in safe Rust on top of [`crate::vfs`].
//!
//! A mount opens the volume through the shared format core and serves it read-write (or
//! read-only on request): the mount root lists the layers, or is one layer's root directory
//! (`layer=`); each layer's tree holds directories, regular files, symlinks, device nodes, FIFOs
//! and sockets with extended attributes. Changes go into one running transaction, committed
//! periodically, on `sync`/`fsync` and at unmount. Layers are created, cloned, snapshotted,
//! frozen, renamed and removed through ioctls on any file of the mount.
//!
//! [`Lcfs`] implements the VFS layer's traits, each in the file that owns the concept:
//! - `mount`: [`FileSystem`](crate::vfs::FileSystem) (mount options, `fill_super`, remount,
//!   statfs) and the per-mount state;
//! - `commit`: the volume lock, committing the running transaction, retrying for pinned space;
//! - `namespace`: [`DirOperations`](crate::vfs::DirOperations) and
//!   [`InodeOperations`](crate::vfs::InodeOperations) (lookup, readdir, create, link, unlink,
//!   rename, setattr, eviction);
//! - `file`: [`DataOperations`](crate::vfs::DataOperations) and
//!   [`FileOperations`](crate::vfs::FileOperations) (block mapping, writeback, fsync, fallocate);
//! - `xattr`: [`XattrOperations`](crate::vfs::XattrOperations);
//! - `attr`: the file attributes of `chattr` (`fileattr_get`, `fileattr_set`);
//! - `sysfs`: the attributes of each mount's `/sys/fs/lcfs/<device>/` directory;
//! - `ioctl`: the filesystem's ioctls, checked and handed to `layers`;
//! - `layers`: the layer operations and the per-layer count of files open for writing;
//! - `reclaim`: freeing the space of removed layers in background chunks;
//! - `share`: page-cache sharing, one cached copy of contents many layers hold;
//! - `errno`: format-core errors as errno values; `time`: timestamps;
//! - `store`: the format core's block store over the mounted device.

#![deny(unsafe_code)]

mod attr;
mod commit;
mod core_kunit;
mod errno;
mod file;
mod frozen;
mod ioctl;
mod layers;
mod mount;
mod namespace;
mod reclaim;
mod share;
mod store;
mod shared;
mod sysfs;
mod time;
mod xattr;

/// The LCFS filesystem type.
pub(crate) struct Lcfs;

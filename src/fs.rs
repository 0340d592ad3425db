// SPDX-License-Identifier: GPL-2.0

//! The LCFS filesystem logic, in safe Rust on top of [`crate::vfs`].
//!
//! A mount opens the filesystem through the shared format core (superblock pair, reference-count
//! map, layer tree), read-write unless asked otherwise; its root lists the layers, each a
//! directory over the layer's tree (or, with `layer=NAME`, one layer is the root). `super_`
//! mounts, commits and maps errors; `namespace` has lookups, readdir, the changes of names and
//! attributes, and xattrs; `file` the data path (block mapping for iomap, fsync, fallocate);
//! `store` the block store the format core runs on (node cache, device I/O).

#![deny(unsafe_code)]

mod core_kunit;
mod file;
mod namespace;
mod store;
mod super_;

pub(crate) use super_::Lcfs;

// SPDX-License-Identifier: GPL-2.0

//! The LCFS filesystem logic, in safe Rust on top of [`crate::vfs`].
//!
//! Today: mount opens the filesystem read-only through the shared format core (superblock pair,
//! reference-count map, layer tree) and shows an empty root directory. The namespace over the
//! layer trees plugs in here.

#![deny(unsafe_code)]

mod core_kunit;
mod file;
mod namespace;
mod store;
mod super_;

pub(crate) use super_::Lcfs;

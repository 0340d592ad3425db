// SPDX-License-Identifier: GPL-2.0

//! The LCFS filesystem logic, in safe Rust on top of [`crate::vfs`].
//!
//! Today: mount validation of the superblock pair and an empty root directory. The layer trees,
//! inode tables and extent maps of later work plug in here.

#![deny(unsafe_code)]

mod core_kunit;
mod super_;

pub(crate) use super_::Lcfs;

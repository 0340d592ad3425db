// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Cargo entry point of the LCFS on-disk format core.
//!
//! The format lives in `mod.rs` and its submodules so that `lcfs.ko` can include the very same files
//! as `#[path = "format/mod.rs"] pub mod format;`. Nothing here may depend on `std`, `alloc` or the
//! kernel crate.

#![no_std]
#![forbid(unsafe_code)]

#[path = "mod.rs"]
mod format;

pub use format::*;

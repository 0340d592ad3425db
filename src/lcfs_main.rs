// SPDX-License-Identifier: GPL-2.0

//! LCFS, the Layer Cloning Filesystem.
//!
//! A block-device filesystem for container layers: each layer is a copy-on-write clone of its
//! parent. The crate is split in three:
//! - [`format`]: the on-disk format, shared with the userspace tools (no `unsafe`, no kernel
//!   dependencies);
//! - [`vfs`]: the thin abstraction layer over the kernel's VFS and block APIs, the only place
//!   with `unsafe` code;
//! - [`fs`]: the filesystem logic, safe Rust on top of both.

#[path = "format/mod.rs"]
pub mod format;

mod fs;
mod vfs;

use kernel::prelude::*;

module! {
    type: LcfsModule,
    name: "lcfs",
    authors: ["LCFS developers"],
    description: "LCFS: Layer Cloning Filesystem for container layers",
    license: "GPL",
    alias: ["fs-lcfs"],
}

#[pin_data]
struct LcfsModule {
    #[pin]
    fs: vfs::Registration<fs::Lcfs>,
}

impl kernel::InPlaceModule for LcfsModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!(
            "format version {}, block size {}\n",
            format::superblock::VERSION,
            format::BLOCK_SIZE
        );
        try_pin_init!(Self {
            fs <- vfs::Registration::new(module),
        })
    }
}

//! Fills an LCFS image with preallocated (unwritten) file data, cheaply: only the map and the
//! trees are written, the data blocks stay holes of the image file. For measuring fsck on a full
//! large device (Documentation/benchmarks.md, "fsck memory").
//!
//! `cargo run --release -p lcfs-image --example fill -- IMAGE PERCENT [FILES]`: allocates about
//! PERCENT of the free blocks, in FILES files (default 16) of the first layer's root directory.

use std::path::Path;

use lcfs_format::namespace::NewInode;
use lcfs_format::records::{mode, Timespec};
use lcfs_format::volume::Volume;
use lcfs_format::ROOT_INO;
use lcfs_image::{Access, Device};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, image, percent, rest @ ..] = &args[..] else {
        return Err("usage: fill IMAGE PERCENT [FILES]".into());
    };
    let percent: u64 = percent.parse().map_err(|e| format!("PERCENT: {e}"))?;
    let files: u64 = match rest.first() {
        Some(f) => f.parse().map_err(|e| format!("FILES: {e}"))?,
        None => 16,
    };
    let dev = Device::open(Path::new(image), Access::ReadWrite).map_err(|e| e.to_string())?;
    let (mut vol, _) = Volume::open(dev).map_err(|e| format!("open: {e}"))?;
    let now = Timespec {
        sec: 1_700_000_000,
        nsec: 0,
    };
    let layer = 1;
    let free = vol.superblock().free_blocks;
    // Leave room for the trees and the map's own copies.
    let want = free / 100 * percent.min(99);
    let per_file = want / files.max(1);
    // Steps small enough for one transaction each.
    let step = 1u64 << 24;
    let file = NewInode {
        mode: mode::S_IFREG | 0o644,
        ..NewInode::default()
    };
    let mut inodes = Vec::new();
    for f in 0..files {
        let ino = vol
            .create(layer, ROOT_INO, format!("fill{f}").as_bytes(), &file, now)
            .map_err(|e| format!("create: {e}"))?;
        inodes.push(ino);
    }
    vol.commit(now).map_err(|e| format!("commit: {e}"))?;
    for (f, ino) in inodes.into_iter().enumerate() {
        let mut done = 0;
        while done < per_file {
            let len = step.min(per_file - done);
            vol.allocate(layer, ino, done, len)
                .map_err(|e| format!("fill{f}: allocate: {e}"))?;
            done += len;
            vol.commit(now).map_err(|e| format!("commit: {e}"))?;
        }
        eprintln!("fill{f}: {per_file} blocks");
    }
    vol.commit(now).map_err(|e| format!("commit: {e}"))?;
    Ok(())
}

//! The filesystem the daemon serves from: an LCFS mount it makes from `--device` (running
//! mkfs.lcfs first when asked to), or one made by someone else (`--mounted`).
//!
//! The daemon leaves its mount in place when it exits: containers keep bind mounts of its
//! layers, and the next start finds the mount (the mount root answers `LCFS_IOC_FS_INFO` and
//! has inode number 1) and uses it again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tracing::info;

use crate::config::Source;
use crate::names;

/// Whether `dir` is the root of an LCFS mount.
pub fn is_lcfs_root(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir) else {
        return false;
    };
    lcfs_uapi::fs_info(&f).is_ok() && f.metadata().is_ok_and(|m| m.ino() == 1)
}

/// Whether `device` holds an LCFS signature.
fn holds_lcfs(device: &Path) -> anyhow::Result<bool> {
    let mut dev = lcfs_image::Device::open(device, lcfs_image::Access::ReadOnly)
        .with_context(|| format!("cannot open {}", device.display()))?;
    let found = lcfs_image::probe::signatures(&mut dev)
        .with_context(|| format!("cannot read {}", device.display()))?;
    Ok(found.contains(&"lcfs"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    info!(command = ?cmd, "running");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The mount root to serve from, mounting (and formatting) as `source` says. Blocks.
pub fn prepare(source: &Source) -> anyhow::Result<PathBuf> {
    let (device, mountpoint, format, size) = match source {
        Source::Mounted(dir) => {
            if !is_lcfs_root(dir) {
                bail!("{} is not the root of an LCFS mount", dir.display());
            }
            return Ok(dir.clone());
        }
        Source::Device {
            device,
            mountpoint,
            format,
            size,
        } => (device, mountpoint, *format, size),
    };
    std::fs::create_dir_all(mountpoint)
        .with_context(|| format!("cannot create {}", mountpoint.display()))?;
    if is_lcfs_root(mountpoint) {
        info!(mountpoint = %mountpoint.display(), "using the LCFS mount already there");
        return Ok(mountpoint.clone());
    }
    let exists = device.exists();
    if !exists || !holds_lcfs(device)? {
        if !format {
            bail!(
                "{} does not hold LCFS: give --format (or --size for an image file)",
                device.display()
            );
        }
        if !exists && size.is_none() {
            bail!("{} does not exist: give --size", device.display());
        }
        // The first layer mkfs makes is the metadata layer; mkfs refuses a device holding
        // another filesystem's signature (no -f).
        let mut cmd = Command::new("mkfs.lcfs");
        cmd.arg("-q").arg("--layer").arg(names::META_LAYER);
        if let Some(size) = size {
            cmd.arg("-s").arg(size);
        }
        run(cmd.arg(device))?;
    }
    let regular = std::fs::metadata(device)?.is_file();
    let mut cmd = Command::new("mount");
    cmd.arg("-t").arg("lcfs");
    if regular {
        // mount sets up (and on unmount releases) a loop device for the file.
        cmd.arg("-o").arg("loop");
    }
    run(cmd.arg(device).arg(mountpoint))?;
    if !is_lcfs_root(mountpoint) {
        bail!(
            "{} is not an LCFS mount root after mounting",
            mountpoint.display()
        );
    }
    info!(device = %device.display(), mountpoint = %mountpoint.display(), "mounted");
    Ok(mountpoint.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_lcfs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_lcfs_root(dir.path()));
        let err = prepare(&Source::Mounted(dir.path().into())).unwrap_err();
        assert!(err.to_string().contains("not the root of an LCFS mount"));
        // An image file without LCFS and without --format is refused before anything runs.
        let img = dir.path().join("img");
        std::fs::write(&img, vec![0u8; 128 * 1024]).unwrap();
        let source = Source::Device {
            device: img.clone(),
            mountpoint: dir.path().join("mnt"),
            format: false,
            size: None,
        };
        let err = prepare(&source).unwrap_err();
        assert!(err.to_string().contains("does not hold LCFS"), "{err}");
        assert!(!holds_lcfs(&img).unwrap());
        let source = Source::Device {
            device: dir.path().join("missing"),
            mountpoint: dir.path().join("mnt"),
            format: true,
            size: None,
        };
        assert!(prepare(&source).unwrap_err().to_string().contains("--size"));
    }

    #[test]
    fn an_lcfs_signature_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        let mut bytes = vec![0u8; 128 * 1024];
        bytes[..8].copy_from_slice(&lcfs_format::superblock::MAGIC);
        std::fs::write(&img, &bytes).unwrap();
        assert!(holds_lcfs(&img).unwrap());
        // Another filesystem's signature is not LCFS: mkfs.lcfs would refuse it without -f,
        // which the daemon never passes.
        let mut ext4 = vec![0u8; 128 * 1024];
        ext4[1080..1082].copy_from_slice(&[0x53, 0xef]);
        std::fs::write(&img, &ext4).unwrap();
        assert!(!holds_lcfs(&img).unwrap());
    }
}

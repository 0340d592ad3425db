//! The LCFS ioctl ABI for userspace.
//!
//! Types and constants are generated at build time from `include/uapi/linux/lcfs.h`, the one
//! definition that lcfs.ko uses too. Request codes are built from the header's `*_NR` numbers and
//! the structure sizes, as `_IOR()` does in C.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;

use rustix::ioctl::{self, Getter, Opcode};

/// Generated bindings of `include/uapi/linux/lcfs.h`.
#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
pub mod sys {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

pub use sys::lcfs_fs_info as FsInfo;

/// An ioctl type or number byte from the header; a value over 255 fails the build.
#[allow(clippy::cast_possible_truncation)]
const fn byte(value: u32) -> u8 {
    assert!(value <= 0xff);
    value as u8
}

/// Request code of `LCFS_IOC_FS_INFO`.
pub const IOC_FS_INFO: Opcode =
    ioctl::opcode::read::<FsInfo>(byte(sys::LCFS_IOCTL_MAGIC), byte(sys::LCFS_IOC_FS_INFO_NR));

/// Whether an ioctl error means "not an LCFS file" (the filesystem does not know the request).
pub fn is_not_lcfs(err: &io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::NOTTY.raw_os_error())
}

/// Reads the filesystem information of the LCFS filesystem holding the open file `fd`.
pub fn fs_info(fd: impl AsFd) -> io::Result<FsInfo> {
    // SAFETY: `IOC_FS_INFO` is a read ioctl whose output is exactly one `lcfs_fs_info`, which is
    // plain data valid for any bit pattern.
    let info = unsafe { ioctl::ioctl(fd, Getter::<{ IOC_FS_INFO }, FsInfo>::new()) }?;
    Ok(info)
}

impl FsInfo {
    /// The label up to its terminating NUL (lossy UTF-8).
    pub fn label_string(&self) -> String {
        let bytes: Vec<u8> = self
            .label
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c.to_ne_bytes()[0])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes_and_codes() {
        assert_eq!(std::mem::size_of::<FsInfo>(), 176);
        // _IOR(0xE5, 1, 176 bytes): direction read (2) << 30 | size << 16 | type << 8 | nr.
        assert_eq!(IOC_FS_INFO, (2 << 30) | (176 << 16) | (0xE5 << 8) | 1);
    }

    #[test]
    fn fs_info_on_a_non_lcfs_file_fails_cleanly() {
        let f = tempfile::tempfile().unwrap();
        let err = fs_info(&f).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOTTY.raw_os_error())
        );
    }
}

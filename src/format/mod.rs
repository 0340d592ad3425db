// SPDX-License-Identifier: GPL-2.0 OR MIT

//! LCFS on-disk format.
//!
//! This is the single definition of every on-disk structure, shared by the kernel module (which
//! includes these files as a module of its crate) and the userspace tools (through the
//! `lcfs-format` cargo crate). All integers are little-endian with explicit sizes; structures are
//! encoded and decoded field by field at documented offsets (see
//! `Documentation/filesystems/lcfs-format.md`), so no layout depends on the compiler.
//!
//! Decoding never panics: every read is bounds-checked and every on-disk value is validated before
//! it is used. Submodules refer to each other through `super::`, never `crate::`, because the crate
//! root differs between the kernel and userspace builds.

#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]

mod bucket;
pub mod bytes;
pub mod crc32c;
pub mod data;
pub mod hash;
pub mod layers;
pub mod namespace;
pub mod node;
pub mod reclaim;
pub mod records;
pub mod refmap;
pub mod superblock;
pub mod tree;
pub mod volume;
pub mod xattr;

/// Size in bytes of every LCFS block. Fixed by the format: the kernel page size on the supported
/// architectures, so one metadata block is one page-cache folio of the block device.
pub const BLOCK_SIZE: u32 = 4096;

/// `log2(BLOCK_SIZE)`.
pub const BLOCK_SHIFT: u32 = 12;

/// Inode number of the root directory.
pub const ROOT_INO: u64 = 1;

/// Inode numbers of a layer are below this. The kernel makes one 64-bit VFS inode number of a
/// layer id and an inode number (`layer << 40 | ino`), so both have limits; a larger number on
/// disk is damage.
pub const INO_LIMIT: u64 = 1 << 40;

/// Layer ids are below this (the other 24 bits of a VFS inode number).
pub const LAYER_ID_LIMIT: u64 = 1 << 24;

/// Longest file name, in bytes.
pub const NAME_MAX: usize = 255;

/// Why an on-disk structure was rejected.
///
/// The kernel maps [`FormatError::Io`] to `EIO` and everything else to `EUCLEAN` (corruption) or
/// `EINVAL` (not an LCFS image at all), see [`FormatError::is_corruption`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The buffer is shorter than the structure being decoded.
    Truncated,
    /// The magic number does not match: this is not an LCFS structure.
    BadMagic,
    /// The stored checksum does not match the contents.
    BadChecksum {
        /// Checksum stored on disk.
        stored: u32,
        /// Checksum computed over the contents.
        computed: u32,
    },
    /// The format version is one this code does not know.
    UnknownVersion(u32),
    /// Incompatible feature bits this code does not know are set.
    UnknownIncompat(u64),
    /// A field holds a value outside its valid range.
    BadField(&'static str),
    /// The device is smaller than the filesystem or than the minimum size.
    DeviceTooSmall {
        /// Blocks the filesystem needs.
        needed: u64,
        /// Blocks the device has.
        available: u64,
    },
}

impl FormatError {
    /// Whether the error means "damaged LCFS structure" (`EUCLEAN`) rather than "not LCFS / not
    /// supported" (`EINVAL`).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::BadChecksum { .. } | Self::BadField(_) | Self::DeviceTooSmall { .. }
        )
    }
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => write!(f, "structure truncated"),
            Self::BadMagic => write!(f, "bad magic number (not an LCFS filesystem)"),
            Self::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            Self::UnknownIncompat(bits) => write!(
                f,
                "unknown incompatible features {bits:#x}: a newer LCFS is needed"
            ),
            Self::BadField(name) => write!(f, "invalid value in field {name}"),
            Self::DeviceTooSmall { needed, available } => write!(
                f,
                "device too small ({available} blocks, filesystem needs {needed})"
            ),
        }
    }
}

impl core::error::Error for FormatError {}

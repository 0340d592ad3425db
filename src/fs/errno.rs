// SPDX-License-Identifier: GPL-2.0

//! Errors of the format core as errno values: of a running filesystem ([`errno`]), of
//! extended-attribute calls ([`xattr_errno`]) and at mount ([`format_errno`], [`mount_errno`],
//! which also log what was wrong).

use kernel::prelude::*;

use crate::format::tree::Error as CoreError;
use crate::format::FormatError;
use crate::vfs::NewSuperBlock;

use super::Lcfs;

/// The errno for a format-core error of a running filesystem.
pub(crate) fn errno(e: CoreError) -> Error {
    match e {
        CoreError::Corrupt(_) => EUCLEAN,
        CoreError::Io | CoreError::Aborted => EIO,
        CoreError::NoSpace => ENOSPC,
        CoreError::NoMemory => ENOMEM,
        CoreError::Invalid => EINVAL,
        CoreError::NotFound => ENOENT,
        CoreError::Exists => EEXIST,
        CoreError::Busy => EBUSY,
        CoreError::ReadOnly => EROFS,
        CoreError::NotEmpty => ENOTEMPTY,
        CoreError::IsDir => EISDIR,
        CoreError::NotDir => ENOTDIR,
    }
}

/// The errno for a format-core error of an extended-attribute call: a missing attribute is
/// `ENODATA`, not `ENOENT`.
pub(crate) fn xattr_errno(e: CoreError) -> Error {
    match e {
        CoreError::NotFound => ENODATA,
        CoreError::Invalid => EINVAL,
        e => errno(e),
    }
}

// The kernel formats through its own `Display` trait; forward to the format core's impl.
impl kernel::fmt::Display for FormatError {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// Maps a format error to the errno mount returns: damaged LCFS structures are `EUCLEAN`
/// (the kernel's `EFSCORRUPTED`), anything that is not (this version of) LCFS is `EINVAL`.
pub(crate) fn format_errno(e: &FormatError) -> Error {
    if e.is_corruption() {
        EUCLEAN
    } else {
        EINVAL
    }
}

/// Maps a core error at mount to an errno, logging what was wrong (`what`: the structure being
/// opened).
pub(crate) fn mount_errno(sb: &NewSuperBlock<'_, Lcfs>, what: &str, e: CoreError) -> Error {
    match e {
        CoreError::Corrupt(f) => {
            pr_err!("{}: cannot mount: {}: {}\n", sb.id(), what, f);
            format_errno(&f)
        }
        CoreError::NoMemory => ENOMEM,
        _ => {
            pr_err!("{}: cannot mount: {}: I/O error\n", sb.id(), what);
            EIO
        }
    }
}

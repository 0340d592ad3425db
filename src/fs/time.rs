// SPDX-License-Identifier: GPL-2.0

//! Timestamps: the VFS layer's `(seconds, nanoseconds)` pairs and the format core's `Timespec`.

use crate::format::records::Timespec;
use crate::vfs::now;

/// The current time as the format core stores it.
pub(crate) fn timestamp() -> Timespec {
    let (sec, nsec) = now();
    Timespec { sec, nsec }
}

/// A VFS timestamp as the format core stores it; nanoseconds past a second are clamped.
pub(crate) fn to_core(t: (i64, u32)) -> Timespec {
    Timespec {
        sec: t.0,
        nsec: t.1.min(999_999_999),
    }
}

/// A stored timestamp as the VFS layer takes it.
pub(crate) fn from_core(t: Timespec) -> (i64, u32) {
    (t.sec, t.nsec)
}

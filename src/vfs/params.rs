// SPDX-License-Identifier: GPL-2.0

//! Mount options through the fs_context machinery (`fs_parse` with a parameter table).

use kernel::prelude::*;

use super::bindings as ext;

/// One entry of a filesystem's mount-option table.
///
/// # Invariants
///
/// `name` points to a static NUL-terminated string and `type_` is one of the kernel's parsers.
#[repr(transparent)]
pub(crate) struct Param(ext::fs_parameter_spec);

// SAFETY: a `Param` is never changed after construction, and its pointers point to static,
// immutable data (NUL-terminated names, kernel parser functions) or are null, so sharing it
// between threads only ever reads immutable memory.
unsafe impl Sync for Param {}

impl Param {
    /// Option `name=<unsigned 32-bit number>`, reported to the filesystem as `opt`.
    pub(crate) const fn u32(name: &'static CStr, opt: u8) -> Self {
        Self::new(name, opt, {
            let f: ext::fs_param_type = Some(ext::fs_param_is_u32);
            f
        })
    }

    /// Option `name=<string>`, reported to the filesystem as `opt`.
    pub(crate) const fn string(name: &'static CStr, opt: u8) -> Self {
        Self::new(name, opt, {
            let f: ext::fs_param_type = Some(ext::fs_param_is_string);
            f
        })
    }

    /// Flag option `name`, also accepted as `noname` ([`ParamValue::negated`]), reported to the
    /// filesystem as `opt`.
    pub(crate) const fn flag_no(name: &'static CStr, opt: u8) -> Self {
        let mut p = Self::new(name, opt, None);
        // CAST: a small flag constant into the table's 16-bit field.
        p.0.flags = ext::LCFS_FS_PARAM_NEG_WITH_NO as u16;
        p
    }

    /// The terminating entry every table ends with.
    pub(crate) const END: Self = Self(ext::fs_parameter_spec {
        name: core::ptr::null(),
        type_: None,
        opt: 0,
        flags: 0,
        data: core::ptr::null(),
    });

    const fn new(name: &'static CStr, opt: u8, type_: ext::fs_param_type) -> Self {
        // INVARIANT: a static string and a kernel parser.
        Self(ext::fs_parameter_spec {
            name: kernel::str::as_char_ptr_in_const_context(name),
            type_,
            opt,
            flags: 0,
            data: core::ptr::null(),
        })
    }

    pub(super) fn table_ptr(table: &'static [Self]) -> *const ext::fs_parameter_spec {
        table.as_ptr().cast()
    }
}

/// The value of a parsed option.
pub(crate) struct ParamValue<'a> {
    /// The number, for options declared with [`Param::u32`].
    pub(crate) number: u32,
    /// The string, for options declared with [`Param::string`] (without its NUL).
    pub(crate) string: &'a [u8],
    /// For options declared with [`Param::flag_no`]: given as `noname`.
    pub(crate) negated: bool,
}

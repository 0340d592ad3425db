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
pub use sys::lcfs_layer_create as LayerCreate;
pub use sys::lcfs_layer_diff as LayerDiff;
pub use sys::lcfs_layer_info as LayerInfo;
pub use sys::lcfs_layer_list as LayerList;
pub use sys::lcfs_layer_ref as LayerRef;
pub use sys::lcfs_layer_rename as LayerRename;

/// An ioctl type or number byte from the header; a value over 255 fails the build.
#[allow(clippy::cast_possible_truncation)]
const fn byte(value: u32) -> u8 {
    assert!(value <= 0xff);
    value as u8
}

/// Request code of `LCFS_IOC_FS_INFO`.
pub const IOC_FS_INFO: Opcode =
    ioctl::opcode::read::<FsInfo>(byte(sys::LCFS_IOCTL_MAGIC), byte(sys::LCFS_IOC_FS_INFO_NR));

const MAGIC: u8 = byte(sys::LCFS_IOCTL_MAGIC);

/// Request code of `LCFS_IOC_LAYER_CREATE`.
pub const IOC_LAYER_CREATE: Opcode =
    ioctl::opcode::read_write::<LayerCreate>(MAGIC, byte(sys::LCFS_IOC_LAYER_CREATE_NR));
/// Request code of `LCFS_IOC_LAYER_CLONE`.
pub const IOC_LAYER_CLONE: Opcode =
    ioctl::opcode::read_write::<LayerCreate>(MAGIC, byte(sys::LCFS_IOC_LAYER_CLONE_NR));
/// Request code of `LCFS_IOC_LAYER_SNAPSHOT`.
pub const IOC_LAYER_SNAPSHOT: Opcode =
    ioctl::opcode::read_write::<LayerCreate>(MAGIC, byte(sys::LCFS_IOC_LAYER_SNAPSHOT_NR));
/// Request code of `LCFS_IOC_LAYER_FREEZE`.
pub const IOC_LAYER_FREEZE: Opcode =
    ioctl::opcode::write::<LayerRef>(MAGIC, byte(sys::LCFS_IOC_LAYER_FREEZE_NR));
/// Request code of `LCFS_IOC_LAYER_RENAME`.
pub const IOC_LAYER_RENAME: Opcode =
    ioctl::opcode::write::<LayerRename>(MAGIC, byte(sys::LCFS_IOC_LAYER_RENAME_NR));
/// Request code of `LCFS_IOC_LAYER_REMOVE`.
pub const IOC_LAYER_REMOVE: Opcode =
    ioctl::opcode::write::<LayerRef>(MAGIC, byte(sys::LCFS_IOC_LAYER_REMOVE_NR));
/// Request code of `LCFS_IOC_LAYER_INFO`.
pub const IOC_LAYER_INFO: Opcode =
    ioctl::opcode::read_write::<LayerInfo>(MAGIC, byte(sys::LCFS_IOC_LAYER_INFO_NR));
/// Request code of `LCFS_IOC_LAYER_LIST`.
pub const IOC_LAYER_LIST: Opcode =
    ioctl::opcode::read_write::<LayerList>(MAGIC, byte(sys::LCFS_IOC_LAYER_LIST_NR));

/// Request code of `LCFS_IOC_LAYER_DIFF`.
pub const IOC_LAYER_DIFF: Opcode =
    ioctl::opcode::read_write::<LayerDiff>(MAGIC, byte(sys::LCFS_IOC_LAYER_DIFF_NR));

/// How a path differs (`LCFS_DIFF_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the layer.
    Added,
    /// In both, changed.
    Modified,
    /// Only in the base.
    Deleted,
}

/// One path of a layer diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathDiff {
    /// How it changed.
    pub change: Change,
    /// `DT_*` type of what it names.
    pub dtype: u8,
    /// The path from the layer's root, starting with `/` (bytes: not necessarily UTF-8).
    pub path: Vec<u8>,
}

/// Calls `f` for each path layer `id` changed against `base` (`None`: its parent), reading
/// `LCFS_DIFF_BUF_MAX` bytes of entries per request; `f` returns `false` to stop.
pub fn layer_diff(
    fd: impl AsFd,
    id: u64,
    base: Option<u64>,
    f: &mut dyn FnMut(PathDiff) -> bool,
) -> io::Result<()> {
    let mut buf = vec![0u8; sys::LCFS_DIFF_BUF_MAX as usize];
    let mut cursor = [0u64; 4];
    loop {
        let mut arg = LayerDiff {
            id,
            base: base.unwrap_or(0),
            cursor,
            buf: buf.as_mut_ptr() as u64,
            buf_size: sys::LCFS_DIFF_BUF_MAX,
            ..LayerDiff::default()
        };
        // SAFETY: a read-write ioctl of one `lcfs_layer_diff`, whose `buf` points to `buf_size`
        // writable bytes (`buf`, alive and not otherwise borrowed until the call returns).
        unsafe { ioctl::ioctl(&fd, ioctl::Updater::<{ IOC_LAYER_DIFF }, _>::new(&mut arg)) }?;
        let filled = (arg.buf_size as usize).min(buf.len());
        for entry in parse_diff(&buf[..filled])? {
            if !f(entry) {
                return Ok(());
            }
        }
        if arg.cursor == [0; 4] {
            return Ok(());
        }
        cursor = arg.cursor;
    }
}

/// The entries of a `LCFS_IOC_LAYER_DIFF` buffer (`EIO` if the kernel's records do not parse).
pub fn parse_diff(mut bytes: &[u8]) -> io::Result<Vec<PathDiff>> {
    let bad = || io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error());
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = bytes.get(..8).ok_or_else(bad)?;
        let change = match u32::from(header[0]) {
            sys::LCFS_DIFF_ADDED => Change::Added,
            sys::LCFS_DIFF_MODIFIED => Change::Modified,
            sys::LCFS_DIFF_DELETED => Change::Deleted,
            _ => return Err(bad()),
        };
        let len = usize::from(u16::from_ne_bytes([header[2], header[3]]));
        let path = bytes.get(8..8 + len).ok_or_else(bad)?.to_vec();
        out.push(PathDiff {
            change,
            dtype: header[1],
            path,
        });
        let size = (8 + len).next_multiple_of(8);
        bytes = bytes.get(size..).ok_or_else(bad)?;
    }
    Ok(out)
}

/// How a new layer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewLayer {
    /// Empty (`LCFS_IOC_LAYER_CREATE`).
    Empty,
    /// A clone of frozen layer `parent`, frozen itself with `read_only` (`LCFS_IOC_LAYER_CLONE`).
    Clone {
        /// The parent layer's id.
        parent: u64,
        /// The clone starts frozen.
        read_only: bool,
    },
    /// A frozen copy of layer `source` as it is now (`LCFS_IOC_LAYER_SNAPSHOT`).
    Snapshot {
        /// The copied layer's id.
        source: u64,
    },
}

/// A layer name in an ABI field: `EINVAL` if it cannot be one (empty, too long, holding `/` or
/// NUL, `.` or `..`); the kernel checks again.
fn name_field(name: &str) -> io::Result<[std::ffi::c_char; sys::LCFS_LAYER_NAME_SIZE as usize]> {
    let bytes = name.as_bytes();
    let bad = bytes.is_empty()
        || bytes.len() > sys::LCFS_LAYER_NAME_MAX as usize
        || bytes.contains(&b'/')
        || bytes.contains(&0)
        || name == "."
        || name == "..";
    if bad {
        return Err(io::Error::from_raw_os_error(
            rustix::io::Errno::INVAL.raw_os_error(),
        ));
    }
    let mut field = [0; sys::LCFS_LAYER_NAME_SIZE as usize];
    for (dst, src) in field.iter_mut().zip(bytes) {
        *dst = std::ffi::c_char::from_ne_bytes([*src]);
    }
    Ok(field)
}

/// A name field's bytes up to the NUL, as a string (lossy UTF-8).
fn field_string(field: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Creates a layer named `name` on the LCFS filesystem holding `fd`; returns its id.
pub fn layer_create(fd: impl AsFd, how: NewLayer, name: &str) -> io::Result<u64> {
    let mut arg = LayerCreate {
        name: name_field(name)?,
        ..LayerCreate::default()
    };
    match how {
        NewLayer::Empty => create_call::<{ IOC_LAYER_CREATE }>(&fd, &mut arg)?,
        NewLayer::Clone { parent, read_only } => {
            arg.source = parent;
            if read_only {
                arg.flags = sys::LCFS_CREATE_READ_ONLY;
            }
            create_call::<{ IOC_LAYER_CLONE }>(&fd, &mut arg)?;
        }
        NewLayer::Snapshot { source } => {
            arg.source = source;
            create_call::<{ IOC_LAYER_SNAPSHOT }>(&fd, &mut arg)?;
        }
    }
    Ok(arg.id)
}

/// One of the requests that take a `lcfs_layer_create` (`OPCODE` is `IOC_LAYER_CREATE`,
/// `IOC_LAYER_CLONE` or `IOC_LAYER_SNAPSHOT`).
fn create_call<const OPCODE: Opcode>(fd: impl AsFd, arg: &mut LayerCreate) -> io::Result<()> {
    // SAFETY: the three requests read and write exactly one `lcfs_layer_create`, plain data
    // valid for any bit pattern.
    unsafe { ioctl::ioctl(fd, ioctl::Updater::<OPCODE, LayerCreate>::new(arg)) }?;
    Ok(())
}

/// Freezes layer `id`.
pub fn layer_freeze(fd: impl AsFd, id: u64) -> io::Result<()> {
    let arg = LayerRef {
        id,
        ..LayerRef::default()
    };
    // SAFETY: a write ioctl of exactly one `lcfs_layer_ref`.
    unsafe { ioctl::ioctl(fd, ioctl::Setter::<{ IOC_LAYER_FREEZE }, _>::new(arg)) }?;
    Ok(())
}

/// Removes layer `id`.
pub fn layer_remove(fd: impl AsFd, id: u64) -> io::Result<()> {
    let arg = LayerRef {
        id,
        ..LayerRef::default()
    };
    // SAFETY: a write ioctl of exactly one `lcfs_layer_ref`.
    unsafe { ioctl::ioctl(fd, ioctl::Setter::<{ IOC_LAYER_REMOVE }, _>::new(arg)) }?;
    Ok(())
}

/// Renames layer `id` to `name`.
pub fn layer_rename(fd: impl AsFd, id: u64, name: &str) -> io::Result<()> {
    let arg = LayerRename {
        id,
        name: name_field(name)?,
        ..LayerRename::default()
    };
    // SAFETY: a write ioctl of exactly one `lcfs_layer_rename`.
    unsafe { ioctl::ioctl(fd, ioctl::Setter::<{ IOC_LAYER_RENAME }, _>::new(arg)) }?;
    Ok(())
}

/// Which layer `layer_info` asks for.
#[derive(Clone, Copy, Debug)]
pub enum Which<'a> {
    /// The layer with this id.
    Id(u64),
    /// The layer with this name.
    Name(&'a str),
    /// The layer of the open file the request is made on.
    Own,
}

/// The figures of a layer.
pub fn layer_info(fd: impl AsFd, which: Which<'_>) -> io::Result<LayerInfo> {
    let mut arg = LayerInfo::default();
    match which {
        Which::Id(id) => arg.id = id,
        Which::Name(name) => arg.name = name_field(name)?,
        Which::Own => {}
    }
    // SAFETY: a read-write ioctl of exactly one `lcfs_layer_info`, plain data.
    unsafe { ioctl::ioctl(fd, ioctl::Updater::<{ IOC_LAYER_INFO }, _>::new(&mut arg)) }?;
    Ok(arg)
}

/// Every layer, in id order, `LCFS_LIST_MAX` per request.
pub fn layer_list(fd: impl AsFd) -> io::Result<Vec<LayerInfo>> {
    let batch = sys::LCFS_LIST_MAX as usize;
    let mut all = Vec::new();
    let mut buf = vec![LayerInfo::default(); batch];
    let mut cursor = 0;
    loop {
        let mut arg = LayerList {
            cursor,
            entries: buf.as_mut_ptr() as u64,
            count: sys::LCFS_LIST_MAX,
            ..LayerList::default()
        };
        // SAFETY: a read-write ioctl of one `lcfs_layer_list`, whose `entries` points to
        // `count` writable `lcfs_layer_info` values (`buf`, alive and not otherwise borrowed
        // until the call returns).
        unsafe { ioctl::ioctl(&fd, ioctl::Updater::<{ IOC_LAYER_LIST }, _>::new(&mut arg)) }?;
        let filled = (arg.count as usize).min(batch);
        all.extend_from_slice(&buf[..filled]);
        if arg.cursor == 0 {
            return Ok(all);
        }
        cursor = arg.cursor;
    }
}

impl LayerInfo {
    /// The layer's name (lossy UTF-8).
    pub fn name_string(&self) -> String {
        field_string(&self.name)
    }

    /// Whether the layer is frozen.
    pub fn is_read_only(&self) -> bool {
        self.flags & sys::LCFS_LAYER_READ_ONLY != 0
    }

    /// Bytes the layer holds that its parent does not, when the kernel reports them.
    pub fn own_bytes(&self) -> Option<u64> {
        (self.valid & sys::LCFS_INFO_OWN_BYTES != 0).then_some(self.own_bytes)
    }
}

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
        use std::mem::size_of;
        assert_eq!(size_of::<FsInfo>(), 176);
        assert_eq!(size_of::<LayerCreate>(), 320);
        assert_eq!(size_of::<LayerRef>(), 32);
        assert_eq!(size_of::<LayerRename>(), 288);
        assert_eq!(size_of::<LayerInfo>(), 352);
        assert_eq!(size_of::<LayerList>(), 56);
        // _IOC(dir, 0xE5, nr, size): direction (write 1, read 2) << 30 | size << 16 | type << 8
        // | nr, written out by hand.
        assert_eq!(IOC_FS_INFO, 0x80b0_e501);
        assert_eq!(IOC_LAYER_CREATE, 0xc140_e502);
        assert_eq!(IOC_LAYER_CLONE, 0xc140_e503);
        assert_eq!(IOC_LAYER_SNAPSHOT, 0xc140_e504);
        assert_eq!(IOC_LAYER_FREEZE, 0x4020_e505);
        assert_eq!(IOC_LAYER_RENAME, 0x4120_e506);
        assert_eq!(IOC_LAYER_REMOVE, 0x4020_e507);
        assert_eq!(IOC_LAYER_INFO, 0xc160_e508);
        assert_eq!(IOC_LAYER_LIST, 0xc038_e509);
        assert_eq!(size_of::<LayerDiff>(), 96);
        assert_eq!(size_of::<sys::lcfs_diff_entry>(), 8);
        assert_eq!(IOC_LAYER_DIFF, 0xc060_e50a);
    }

    #[test]
    fn diff_records_parse() {
        let mut buf = vec![1u8, 8, 3, 0, 0, 0, 0, 0];
        buf.extend_from_slice(b"/ab\0\0\0\0\0");
        buf.extend_from_slice(&[3, 4, 8, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(b"/etc/dir");
        let got = parse_diff(&buf).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].change, got[0].dtype, &got[0].path[..]),
            (Change::Added, 8, &b"/ab"[..])
        );
        assert_eq!(
            (got[1].change, &got[1].path[..]),
            (Change::Deleted, &b"/etc/dir"[..])
        );
        // A truncated record or an unknown change is an error, not a panic.
        assert!(parse_diff(&buf[..12]).is_err());
        assert!(parse_diff(&[9, 8, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(parse_diff(&[1, 8, 255, 255, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn names_are_checked_before_the_call() {
        let f = tempfile::tempfile().unwrap();
        for bad in ["", ".", "..", "a/b", "a\0b", &"n".repeat(256)] {
            let err = layer_create(&f, NewLayer::Empty, bad).unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(rustix::io::Errno::INVAL.raw_os_error()),
                "{bad:?}"
            );
        }
        // A good name reaches the kernel, which does not know the request on a tmpfs file.
        let err = layer_create(&f, NewLayer::Empty, &"n".repeat(255)).unwrap_err();
        assert!(is_not_lcfs(&err));
        assert!(is_not_lcfs(&layer_list(&f).unwrap_err()));
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

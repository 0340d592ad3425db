// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Tree item records: what the keys of a layer's tree name and how their values are encoded.
//!
//! Every record is encoded field by field (little-endian) into a leaf value and validated on decode:
//! unknown flag bits, non-zero reserved bytes, impossible modes, out-of-range nanoseconds and bad
//! names are errors. Key layout (`id`, `kind`, `offset`):
//!
//! | kind | id | offset | value |
//! |------|----|--------|-------|
//! | [`kind::INODE`] | inode number | 0 | [`InodeRecord`], 128 bytes |
//! | [`kind::DIRENT`] | directory inode | [`dirent_offset`] of the name hash and a collision index | [`DirentRecord`] |
//! | [`kind::LINK`] | inode | parent directory inode | [`LinkRecord`]: links from that directory, one name |
//! | [`kind::EXTENT`] | inode | file offset in blocks | [`ExtentRecord`], 16 bytes |
//! | [`kind::COW`] | inode | file offset in blocks | [`ExtentRecord`] (flags 0): staging blocks of a write in progress |
//! | [`kind::INLINE`] | inode | 0, 1, ... | inline data of a small file (item 0) or symlink target (items 0..5, each full but the last) |
//! | [`kind::XATTR`] | inode | [`dirent_offset`] of the attribute name's hash | [`XattrRecord`] |
//! | [`kind::ORPHAN`] | 0 | orphan inode number | empty |
//! | [`kind::LAYER`] | layer id | 0 | [`LayerRecord`] |
//! | [`kind::LAYER_NAME`] | [`LAYER_NAME_INDEX`] | [`dirent_offset`] of the name's hash | [`LayerNameRecord`] |

use super::bytes::{
    get_array, get_u16, get_u32, get_u64, put_array, put_bytes, put_u16, put_u32, put_u64,
};
use super::hash::siphash24;
use super::node::MAX_VALUE_SIZE;
use super::FormatError;

/// Item kinds (the `kind` byte of a key).
pub mod kind {
    /// An inode's attributes.
    pub const INODE: u8 = 1;
    /// A directory entry.
    pub const DIRENT: u8 = 2;
    /// A back reference from an inode to a directory that links it (for paths in diffs).
    pub const LINK: u8 = 3;
    /// A data extent of a regular file.
    pub const EXTENT: u8 = 4;
    /// Inline data: the target of a symlink or the bytes of a small file.
    pub const INLINE: u8 = 5;
    /// An extended attribute.
    pub const XATTR: u8 = 6;
    /// A copy-on-write staging extent of a regular file: new blocks a write in progress goes
    /// to while the extent item at the same file blocks still points at the old data (see
    /// `Documentation/filesystems/lcfs-format.md`, "File data").
    pub const COW: u8 = 7;
    /// An entry of the orphan index (key id 0, offset the inode number, empty value): an inode
    /// whose last name went while it may still be open, kept with `nlink` 0 until it is deleted.
    pub const ORPHAN: u8 = 8;
    /// A layer.
    pub const LAYER: u8 = 16;
    /// An entry of the layer-name index (key id [`super::LAYER_NAME_INDEX`]).
    pub const LAYER_NAME: u8 = 17;
    /// An entry of the reclaim queue (key id [`super::RECLAIM_QUEUE`], offset its place in
    /// the queue): a tree node of a removed layer still to be dropped.
    pub const RECLAIM: u8 = 18;
}

/// Longest name in a directory, in bytes.
pub const NAME_MAX: usize = 255;

/// Most inline data kept in a leaf item (a symlink target up to this length is stored inline).
pub const INLINE_MAX: usize = MAX_VALUE_SIZE;

/// Bytes one inline item holds (its value is a 2-byte length and the bytes).
pub const INLINE_CHUNK: usize = INLINE_MAX - 2;

/// Longest symlink target (`PATH_MAX` less its NUL). A target longer than [`INLINE_CHUNK`]
/// takes several inline items, at offsets 0, 1, ..., each full but the last.
pub const SYMLINK_MAX: usize = 4095;

/// Inline items a symlink target may take.
pub const SYMLINK_CHUNKS: u64 = SYMLINK_MAX.div_ceil(INLINE_CHUNK) as u64;

/// A timestamp: seconds since the Unix epoch and nanoseconds (below one second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    /// Seconds (may be negative).
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

impl Timespec {
    fn put(&self, buf: &mut [u8], at: usize) -> Result<(), FormatError> {
        put_array(buf, at, self.sec.to_le_bytes())?;
        put_u32(
            buf,
            at.checked_add(8).ok_or(FormatError::Truncated)?,
            self.nsec,
        )
    }

    fn get(buf: &[u8], at: usize) -> Result<Self, FormatError> {
        let t = Self {
            sec: i64::from_le_bytes(get_array(buf, at)?),
            nsec: get_u32(buf, at.checked_add(8).ok_or(FormatError::Truncated)?)?,
        };
        if t.nsec >= 1_000_000_000 {
            return Err(FormatError::BadField("nanoseconds"));
        }
        Ok(t)
    }
}

/// File type bits of a mode (the Linux values, fixed by the format).
pub mod mode {
    /// Mask of the type bits.
    pub const S_IFMT: u32 = 0o170_000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140_000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120_000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100_000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060_000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040_000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020_000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010_000;
}

/// Inode flags: the file attributes `chattr(1)` sets, in the `flags` of an [`InodeRecord`].
///
/// The bits are LCFS's own (not the `FS_*_FL` values of `FS_IOC_GETFLAGS`, which the kernel
/// translates). A filesystem whose inodes may carry any of them has
/// [`INCOMPAT_INODE_FLAGS`](super::superblock::INCOMPAT_INODE_FLAGS) set: code that does not know
/// them must not mount it (it would ignore an immutable or append-only file's protection).
pub mod inode_flags {
    /// Immutable: the file's data, attributes and names cannot change (`chattr +i`).
    pub const IMMUTABLE: u32 = 1 << 0;
    /// Append-only: data can only be added at the end (`chattr +a`).
    pub const APPEND: u32 = 1 << 1;
    /// Not to be backed up by `dump(8)` (`chattr +d`); advisory, for backup tools.
    pub const NODUMP: u32 = 1 << 2;
    /// Access times are not updated (`chattr +A`).
    pub const NOATIME: u32 = 1 << 3;
    /// All known flags.
    pub const KNOWN: u32 = IMMUTABLE | APPEND | NODUMP | NOATIME;

    /// The names of the flags set in `flags`, in bit order (as `lcfs debug dump` shows them).
    pub fn names(flags: u32) -> impl Iterator<Item = &'static str> {
        [
            (IMMUTABLE, "immutable"),
            (APPEND, "append"),
            (NODUMP, "nodump"),
            (NOATIME, "noatime"),
        ]
        .into_iter()
        .filter(move |&(bit, _)| flags & bit != 0)
        .map(|(_, name)| name)
    }
}

/// Inode flags this version knows ([`inode_flags`]).
pub const INODE_FLAGS_KNOWN: u32 = inode_flags::KNOWN;

/// Size of an encoded [`InodeRecord`].
pub const INODE_RECORD_SIZE: usize = 128;

/// The attributes of an inode.
///
/// Layout: `mode` u32 @0, `uid` u32 @4, `gid` u32 @8, `nlink` u32 @12, `flags` u32 @16, reserved
/// u32 @20, `rdev` u64 @24, `size` u64 @32, `blocks` u64 @40, `atime` @48, `mtime` @60, `ctime`
/// @72, `btime` @84 (each i64 seconds + u32 nanoseconds), `generation` u64 @96, `data_id` u64
/// @104, reserved @112..128.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeRecord {
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count (0 only for an orphan awaiting deletion).
    pub nlink: u32,
    /// Inode flags ([`inode_flags`]).
    pub flags: u32,
    /// Device number of a device node (Linux `new_encode_dev` encoding).
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Blocks allocated to the file.
    pub blocks: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last data modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
    /// Creation (birth).
    pub btime: Timespec,
    /// Generation number, for NFS file handles.
    pub generation: u64,
    /// Identity of a regular file's contents (0 for other kinds): taken from the superblock's
    /// `next_data_id` at creation, copied by clones, replaced before the first change of the
    /// contents in a layer. Two records with the same non-zero `data_id` hold the same bytes,
    /// so their layers may share one page-cache copy of them.
    pub data_id: u64,
}

impl InodeRecord {
    /// Whether this is a regular file.
    pub fn is_regular(&self) -> bool {
        self.mode & mode::S_IFMT == mode::S_IFREG
    }

    /// Encodes into `INODE_RECORD_SIZE` bytes at the start of `buf`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), FormatError> {
        let b = buf
            .get_mut(..INODE_RECORD_SIZE)
            .ok_or(FormatError::Truncated)?;
        b.fill(0);
        put_u32(b, 0, self.mode)?;
        put_u32(b, 4, self.uid)?;
        put_u32(b, 8, self.gid)?;
        put_u32(b, 12, self.nlink)?;
        put_u32(b, 16, self.flags)?;
        put_u64(b, 24, self.rdev)?;
        put_u64(b, 32, self.size)?;
        put_u64(b, 40, self.blocks)?;
        self.atime.put(b, 48)?;
        self.mtime.put(b, 60)?;
        self.ctime.put(b, 72)?;
        self.btime.put(b, 84)?;
        put_u64(b, 96, self.generation)?;
        put_u64(b, 104, self.data_id)
    }

    /// Decodes and validates a record.
    pub fn decode(buf: &[u8]) -> Result<Self, FormatError> {
        if buf.len() != INODE_RECORD_SIZE {
            return Err(FormatError::BadField("inode record size"));
        }
        let r = Self {
            mode: get_u32(buf, 0)?,
            uid: get_u32(buf, 4)?,
            gid: get_u32(buf, 8)?,
            nlink: get_u32(buf, 12)?,
            flags: get_u32(buf, 16)?,
            rdev: get_u64(buf, 24)?,
            size: get_u64(buf, 32)?,
            blocks: get_u64(buf, 40)?,
            atime: Timespec::get(buf, 48)?,
            mtime: Timespec::get(buf, 60)?,
            ctime: Timespec::get(buf, 72)?,
            btime: Timespec::get(buf, 84)?,
            generation: get_u64(buf, 96)?,
            data_id: get_u64(buf, 104)?,
        };
        if get_u32(buf, 20)? != 0 || buf.get(112..).is_none_or(|r| r.iter().any(|&b| b != 0)) {
            return Err(FormatError::BadField("inode reserved"));
        }
        if file_type(r.mode).is_none() || r.mode & !(mode::S_IFMT | 0o7777) != 0 {
            return Err(FormatError::BadField("inode mode"));
        }
        if r.flags & !INODE_FLAGS_KNOWN != 0 {
            return Err(FormatError::BadField("inode flags"));
        }
        if r.size > i64::MAX.unsigned_abs() {
            return Err(FormatError::BadField("inode size"));
        }
        Ok(r)
    }
}

/// The `DT_*` type of a mode, or `None` if the type bits are not a valid file type.
pub fn file_type(m: u32) -> Option<u8> {
    Some(match m & mode::S_IFMT {
        mode::S_IFIFO => 1,
        mode::S_IFCHR => 2,
        mode::S_IFDIR => 4,
        mode::S_IFBLK => 6,
        mode::S_IFREG => 8,
        mode::S_IFLNK => 10,
        mode::S_IFSOCK => 12,
        _ => return None,
    })
}

/// Checks a directory entry name: 1 to 255 bytes, no `/` or NUL, not `.` or `..`.
pub fn check_name(name: &[u8]) -> Result<(), FormatError> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains(&b'/') || name.contains(&0) {
        return Err(FormatError::BadField("name"));
    }
    if name == b"." || name == b".." {
        return Err(FormatError::BadField("name"));
    }
    Ok(())
}

/// The per-filesystem key of the name hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey(pub u64, pub u64);

impl HashKey {
    /// The 64-bit hash of a name.
    pub fn hash(&self, name: &[u8]) -> u64 {
        siphash24(self.0, self.1, name)
    }
}

/// Number of names with the same hash bucket a directory can hold.
pub const DIRENT_COLLISIONS: u64 = 256;

/// Key offset of a directory entry: the name's hash bucket and a collision index (0..256).
///
/// The result is in `256..2^62 + 256`, so it can serve as a readdir cookie (`d_off`, a positive
/// `loff_t`) that stays valid while the directory changes, and never collides with the positions
/// 0 and 1 of "." and "..". Names whose hashes share a bucket take successive indexes; a lookup
/// scans the bucket's (at most 256) items.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "hash >> 10 is below 2^54: plus 1, shifted by 8, it stays below 2^62"
)]
pub fn dirent_offset(hash: u64, index: u64) -> Option<u64> {
    if index >= DIRENT_COLLISIONS {
        return None;
    }
    Some((((hash >> 10) + 1) << 8) | index)
}

/// A directory entry.
///
/// Layout: `ino` u64 @0, `dtype` u8 @8, `name_len` u8 @9, name @10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirentRecord<'a> {
    /// Inode number the name points to.
    pub ino: u64,
    /// `DT_*` file type.
    pub dtype: u8,
    /// The name.
    pub name: &'a [u8],
}

impl<'a> DirentRecord<'a> {
    /// Encoded size.
    pub fn size(&self) -> usize {
        self.name.len().saturating_add(10)
    }

    /// Encodes at the start of `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        check_name(self.name)?;
        let len = u8::try_from(self.name.len()).map_err(|_| FormatError::BadField("name"))?;
        put_u64(buf, 0, self.ino)?;
        put_array(buf, 8, [self.dtype, len])?;
        put_bytes(buf, 10, self.name)?;
        Ok(self.size())
    }

    /// Decodes and validates an entry.
    pub fn decode(buf: &'a [u8]) -> Result<Self, FormatError> {
        let [dtype, len] = get_array::<2>(buf, 8)?;
        let name = buf.get(10..).ok_or(FormatError::Truncated)?;
        if name.len() != usize::from(len) {
            return Err(FormatError::BadField("dirent length"));
        }
        check_name(name)?;
        if ![1, 2, 4, 6, 8, 10, 12].contains(&dtype) {
            return Err(FormatError::BadField("dirent type"));
        }
        let ino = get_u64(buf, 0)?;
        if ino == 0 {
            return Err(FormatError::BadField("dirent inode"));
        }
        Ok(Self { ino, dtype, name })
    }
}

/// Extent flags this version knows, in the low byte of `flags`; the three bytes above hold the
/// extent's birth layer.
pub mod extent_flags {
    /// Allocated but not written: reads return zeros (fallocate).
    pub const UNWRITTEN: u32 = 1;
    /// All known flags.
    pub const KNOWN: u32 = UNWRITTEN;
    /// The flags proper; `flags >> BIRTH_SHIFT` is the id of the layer whose writes allocated
    /// the extent's blocks (0: none, for staging extents and xattr values). Layer ids are below
    /// `2^24` (`LAYER_ID_LIMIT`), so the id fits.
    pub const MASK: u32 = 0xff;
    /// Shift of the birth layer id in `flags`.
    pub const BIRTH_SHIFT: u32 = 8;
}

/// Size of an encoded [`ExtentRecord`].
pub const EXTENT_RECORD_SIZE: usize = 16;

/// A run of file blocks stored in consecutive disk blocks. Holes are the absence of extents.
///
/// Layout: `disk_block` u64 @0, `len` u32 @8 (blocks), `flags` u32 @12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentRecord {
    /// First disk block.
    pub disk_block: u64,
    /// Length in blocks (at least 1).
    pub len: u32,
    /// [`extent_flags`].
    pub flags: u32,
}

impl ExtentRecord {
    /// Encodes into `EXTENT_RECORD_SIZE` bytes at the start of `buf`.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), FormatError> {
        put_u64(buf, 0, self.disk_block)?;
        put_u32(buf, 8, self.len)?;
        put_u32(buf, 12, self.flags)
    }

    /// Decodes and validates an extent; `total_blocks` bounds its disk range.
    pub fn decode(buf: &[u8], total_blocks: u64) -> Result<Self, FormatError> {
        if buf.len() != EXTENT_RECORD_SIZE {
            return Err(FormatError::BadField("extent size"));
        }
        let e = Self {
            disk_block: get_u64(buf, 0)?,
            len: get_u32(buf, 8)?,
            flags: get_u32(buf, 12)?,
        };
        let end = e.disk_block.checked_add(u64::from(e.len));
        if e.len == 0 || e.disk_block == 0 || end.is_none_or(|end| end > total_blocks) {
            return Err(FormatError::BadField("extent range"));
        }
        if e.flags & extent_flags::MASK & !extent_flags::KNOWN != 0 {
            return Err(FormatError::BadField("extent flags"));
        }
        Ok(e)
    }

    /// The layer whose writes allocated the extent's blocks (0: none recorded).
    pub fn birth(&self) -> u64 {
        u64::from(self.flags >> extent_flags::BIRTH_SHIFT)
    }

    /// `flags` (their low byte) with birth layer `layer`.
    pub fn flags_born_in(flags: u32, layer: u64) -> Result<u32, FormatError> {
        let id = u32::try_from(layer)
            .ok()
            .filter(|&id| id < 1 << (32 - extent_flags::BIRTH_SHIFT))
            .ok_or(FormatError::BadField("extent birth layer"))?;
        Ok((flags & extent_flags::MASK) | (id << extent_flags::BIRTH_SHIFT))
    }
}

/// Layer flags this version knows.
pub mod layer_flags {
    /// Frozen: read-only from now on, may be cloned.
    pub const READ_ONLY: u32 = 1;
    /// All known flags.
    pub const KNOWN: u32 = READ_ONLY;
}

/// Longest layer name, in bytes.
pub const LAYER_NAME_MAX: usize = 255;

/// Bytes of a layer record before the name.
const LAYER_HEADER: usize = 73;

/// Largest encoded layer record.
pub const LAYER_RECORD_MAX: usize = LAYER_HEADER + LAYER_NAME_MAX;

/// A layer: one complete tree of inodes, directory entries and extents, possibly sharing nodes
/// with its parent.
///
/// Layout: `parent` u64 @0 (0: none), `flags` u32 @8, `children` u32 @12, `create_time` @16
/// (i64 + u32), `own_birth` u32 @28, `root` u64 @32 (tree root block), `bytes_used` u64 @40,
/// `inodes_used` u64 @48, `next_ino` u64 @56, `own_bytes` u64 @64, `name_len` u8 @72, name @73.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRecord<'a> {
    /// Parent layer id, 0 for none.
    pub parent: u64,
    /// [`layer_flags`].
    pub flags: u32,
    /// Number of layers cloned from this one (a layer with children cannot be removed).
    pub children: u32,
    /// Creation time.
    pub create_time: Timespec,
    /// Root block of the layer's tree (0 when empty).
    pub root: u64,
    /// Bytes of file data the layer references, kept incrementally.
    pub bytes_used: u64,
    /// Inodes the layer holds, kept incrementally.
    pub inodes_used: u64,
    /// Inode number the next new inode gets.
    pub next_ino: u64,
    /// Bytes of file data in extents born in `own_birth` (see [`ExtentRecord::birth`]), kept
    /// incrementally: what the layer's own writes hold that its parent does not.
    pub own_bytes: u64,
    /// The layer whose extents count in `own_bytes`: 0 for this layer itself (every read-write
    /// layer), a snapshot's source's for a snapshot.
    pub own_birth: u32,
    /// Name, 1 to 255 bytes of UTF-8 without `/` or NUL.
    pub name: &'a [u8],
}

impl<'a> LayerRecord<'a> {
    /// Encoded size.
    pub fn size(&self) -> usize {
        self.name.len().saturating_add(LAYER_HEADER)
    }

    /// Encodes at the start of `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        check_layer_name(self.name)?;
        let b = buf.get_mut(..self.size()).ok_or(FormatError::Truncated)?;
        b.fill(0);
        put_u64(b, 0, self.parent)?;
        put_u32(b, 8, self.flags)?;
        put_u32(b, 12, self.children)?;
        self.create_time.put(b, 16)?;
        put_u32(b, 28, self.own_birth)?;
        put_u64(b, 32, self.root)?;
        put_u64(b, 40, self.bytes_used)?;
        put_u64(b, 48, self.inodes_used)?;
        put_u64(b, 56, self.next_ino)?;
        put_u64(b, 64, self.own_bytes)?;
        let len = u8::try_from(self.name.len()).map_err(|_| FormatError::BadField("layer name"))?;
        put_array(b, 72, [len])?;
        put_bytes(b, LAYER_HEADER, self.name)?;
        Ok(self.size())
    }

    /// Decodes and validates a layer record of layer `id`.
    pub fn decode(buf: &'a [u8], id: u64, total_blocks: u64) -> Result<Self, FormatError> {
        let len = usize::from(get_array::<1>(buf, 72)?[0]);
        let name = buf.get(LAYER_HEADER..).ok_or(FormatError::Truncated)?;
        if name.len() != len {
            return Err(FormatError::BadField("layer record length"));
        }
        check_layer_name(name)?;
        let r = Self {
            parent: get_u64(buf, 0)?,
            flags: get_u32(buf, 8)?,
            children: get_u32(buf, 12)?,
            create_time: Timespec::get(buf, 16)?,
            root: get_u64(buf, 32)?,
            bytes_used: get_u64(buf, 40)?,
            inodes_used: get_u64(buf, 48)?,
            next_ino: get_u64(buf, 56)?,
            own_bytes: get_u64(buf, 64)?,
            own_birth: get_u32(buf, 28)?,
            name,
        };
        // Only a frozen layer (a snapshot) counts another layer's writes as its own.
        if r.own_birth != 0
            && (r.flags & layer_flags::READ_ONLY == 0 || u64::from(r.own_birth) >= id)
        {
            return Err(FormatError::BadField("layer own_birth"));
        }
        if r.flags & !layer_flags::KNOWN != 0 {
            return Err(FormatError::BadField("layer flags"));
        }
        if r.parent == id
            || r.root >= total_blocks
            || r.next_ino <= super::ROOT_INO
            || r.next_ino > super::INO_LIMIT
            || id >= super::LAYER_ID_LIMIT
        {
            return Err(FormatError::BadField("layer links"));
        }
        if r.own_bytes > r.bytes_used {
            return Err(FormatError::BadField("layer own bytes"));
        }
        Ok(r)
    }
}

/// Key id under which the layer tree keeps its name index (after every layer id).
pub const LAYER_NAME_INDEX: u64 = u64::MAX;

/// An entry of the layer-name index: which layer has this name.
///
/// Layout: `id` u64 @0, name @8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNameRecord<'a> {
    /// Layer id.
    pub id: u64,
    /// Its name.
    pub name: &'a [u8],
}

impl<'a> LayerNameRecord<'a> {
    /// Encoded size.
    pub fn size(&self) -> usize {
        self.name.len().saturating_add(8)
    }

    /// Encodes at the start of `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        check_layer_name(self.name)?;
        put_u64(buf, 0, self.id)?;
        put_bytes(buf, 8, self.name)?;
        Ok(self.size())
    }

    /// Decodes and validates.
    pub fn decode(buf: &'a [u8]) -> Result<Self, FormatError> {
        let id = get_u64(buf, 0)?;
        let name = buf.get(8..).ok_or(FormatError::Truncated)?;
        check_layer_name(name)?;
        if id == 0 || id == LAYER_NAME_INDEX {
            return Err(FormatError::BadField("layer name index"));
        }
        Ok(Self { id, name })
    }
}

/// Key id under which the layer tree keeps the reclaim queue (after the name index: same id,
/// higher kind).
pub const RECLAIM_QUEUE: u64 = u64::MAX;

/// Encoded size of a [`ReclaimRecord`].
pub const RECLAIM_RECORD_SIZE: usize = 16;

/// `level` of a [`ReclaimRecord`] for a tree's root, whose level is read from the node.
const RECLAIM_ANY_LEVEL: u8 = 0xff;

/// An entry of the reclaim queue: a node of a removed layer's tree, reached through one
/// reference that the entry now holds, and how far dropping its children got.
///
/// Layout: `block` u64 @0, `next` u32 @8, `level` u8 @12 (255: a tree's root, any level),
/// reserved (zero) @13..16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReclaimRecord {
    /// The node.
    pub block: u64,
    /// Its level, `None` for a tree's root.
    pub level: Option<u8>,
    /// Children already dropped (0: the node itself not visited yet).
    pub next: u32,
}

impl ReclaimRecord {
    /// Encodes into `buf`.
    pub fn encode(&self, buf: &mut [u8; RECLAIM_RECORD_SIZE]) -> Result<(), FormatError> {
        buf.fill(0);
        put_u64(buf, 0, self.block)?;
        put_u32(buf, 8, self.next)?;
        let level = match self.level {
            Some(l) if l <= super::node::MAX_LEVEL => l,
            Some(_) => return Err(FormatError::BadField("reclaim level")),
            None => RECLAIM_ANY_LEVEL,
        };
        put_bytes(buf, 12, &[level])
    }

    /// Decodes and validates against a device of `total_blocks`.
    pub fn decode(buf: &[u8], total_blocks: u64) -> Result<Self, FormatError> {
        if buf.len() != RECLAIM_RECORD_SIZE {
            return Err(FormatError::BadField("reclaim record size"));
        }
        let block = get_u64(buf, 0)?;
        let next = get_u32(buf, 8)?;
        let [level, r0, r1, r2] = get_array::<4>(buf, 12)?;
        if r0 | r1 | r2 != 0 {
            return Err(FormatError::BadField("reclaim reserved"));
        }
        if block < super::superblock::Superblock::FIXED_BLOCKS || block >= total_blocks {
            return Err(FormatError::BadField("reclaim block"));
        }
        let level = match level {
            RECLAIM_ANY_LEVEL => None,
            l if l <= super::node::MAX_LEVEL => Some(l),
            _ => return Err(FormatError::BadField("reclaim level")),
        };
        // A root is not entered before it is known exclusive, which gives it a level.
        if level.is_none() && next != 0 {
            return Err(FormatError::BadField("reclaim progress"));
        }
        Ok(Self { block, level, next })
    }
}

/// Checks a layer name: 1 to 255 bytes of UTF-8, no `/` or NUL, not `.` or `..`.
pub fn check_layer_name(name: &[u8]) -> Result<(), FormatError> {
    if name.is_empty()
        || name.len() > LAYER_NAME_MAX
        || name.contains(&b'/')
        || name.contains(&0)
        || name == b"."
        || name == b".."
    {
        return Err(FormatError::BadField("layer name"));
    }
    core::str::from_utf8(name).map_err(|_| FormatError::BadField("layer name"))?;
    Ok(())
}

/// A back reference: inode `key.id` is linked `count` times from directory `key.offset`, one of
/// them under `name`. Lets a diff turn a changed inode into a path without scanning directories.
///
/// Layout: `count` u32 @0, `name_len` u8 @4, name @5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkRecord<'a> {
    /// Links from the directory.
    pub count: u32,
    /// One of the names.
    pub name: &'a [u8],
}

impl<'a> LinkRecord<'a> {
    /// Encoded size.
    pub fn size(&self) -> usize {
        self.name.len().saturating_add(5)
    }

    /// Encodes at the start of `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        check_name(self.name)?;
        let len = u8::try_from(self.name.len()).map_err(|_| FormatError::BadField("name"))?;
        put_u32(buf, 0, self.count)?;
        put_array(buf, 4, [len])?;
        put_bytes(buf, 5, self.name)?;
        Ok(self.size())
    }

    /// Decodes and validates.
    pub fn decode(buf: &'a [u8]) -> Result<Self, FormatError> {
        let count = get_u32(buf, 0)?;
        let len = usize::from(get_array::<1>(buf, 4)?[0]);
        let name = buf.get(5..).ok_or(FormatError::Truncated)?;
        if name.len() != len || count == 0 {
            return Err(FormatError::BadField("link record"));
        }
        check_name(name)?;
        Ok(Self { count, name })
    }
}

/// Longest extended attribute name (with its namespace prefix), in bytes.
pub const XATTR_NAME_MAX: usize = 255;

/// Largest extended attribute value, in bytes.
pub const XATTR_VALUE_MAX: usize = 65536;

/// Where an extended attribute's value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrValue<'a> {
    /// In the record itself.
    Inline(&'a [u8]),
    /// In `extent`'s blocks (values too big for a leaf item); `len` bytes.
    External {
        /// The blocks.
        extent: ExtentRecord,
        /// Value length.
        len: u32,
    },
}

/// An extended attribute.
///
/// Layout: `flags` u8 @0 (1: value external), `name_len` u8 @1, `value_len` u32 @2, name @6, then
/// the value bytes (inline) or an [`ExtentRecord`] of `ceil(value_len / 4096)` blocks (external).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XattrRecord<'a> {
    /// Full name, for example `user.comment`.
    pub name: &'a [u8],
    /// The value.
    pub value: XattrValue<'a>,
}

const XATTR_EXTERNAL: u8 = 1;
const XATTR_HEADER: usize = 6;

impl<'a> XattrRecord<'a> {
    /// Whether a value of `len` bytes with this name is stored inline.
    pub fn fits_inline(name: &[u8], len: usize) -> bool {
        XATTR_HEADER.saturating_add(name.len()).saturating_add(len) <= MAX_VALUE_SIZE
    }

    /// Encoded size.
    pub fn size(&self) -> usize {
        let value = match self.value {
            XattrValue::Inline(v) => v.len(),
            XattrValue::External { .. } => EXTENT_RECORD_SIZE,
        };
        XATTR_HEADER
            .saturating_add(self.name.len())
            .saturating_add(value)
    }

    /// Encodes at the start of `buf`; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        check_xattr_name(self.name)?;
        let name_len =
            u8::try_from(self.name.len()).map_err(|_| FormatError::BadField("xattr name"))?;
        // The name was checked above: at most 255 bytes.
        let at = XATTR_HEADER.saturating_add(self.name.len());
        match self.value {
            XattrValue::Inline(v) => {
                if !Self::fits_inline(self.name, v.len()) {
                    return Err(FormatError::BadField("xattr value"));
                }
                let len =
                    u32::try_from(v.len()).map_err(|_| FormatError::BadField("xattr value"))?;
                put_u32(buf, 2, len)?;
                put_array(buf, 0, [0, name_len])?;
                put_bytes(buf, at, v)?;
            }
            XattrValue::External { extent, len } => {
                put_array(buf, 0, [XATTR_EXTERNAL, name_len])?;
                put_u32(buf, 2, len)?;
                extent.encode(buf.get_mut(at..).ok_or(FormatError::Truncated)?)?;
            }
        }
        put_bytes(buf, XATTR_HEADER, self.name)?;
        Ok(self.size())
    }

    /// Decodes and validates; `total_blocks` bounds an external value's blocks.
    pub fn decode(buf: &'a [u8], total_blocks: u64) -> Result<Self, FormatError> {
        let [flags, name_len] = get_array::<2>(buf, 0)?;
        let len = get_u32(buf, 2)?;
        let at = XATTR_HEADER + usize::from(name_len);
        let name = buf.get(XATTR_HEADER..at).ok_or(FormatError::Truncated)?;
        check_xattr_name(name)?;
        let rest = buf.get(at..).ok_or(FormatError::Truncated)?;
        let ulen = usize::try_from(len).map_err(|_| FormatError::BadField("xattr value"))?;
        let value = match flags {
            0 if rest.len() == ulen => XattrValue::Inline(rest),
            XATTR_EXTERNAL if ulen <= XATTR_VALUE_MAX && !Self::fits_inline(name, ulen) => {
                let extent = ExtentRecord::decode(rest, total_blocks)?;
                if u64::from(extent.len) != u64::from(len).div_ceil(u64::from(super::BLOCK_SIZE))
                    || extent.flags != 0
                {
                    return Err(FormatError::BadField("xattr extent"));
                }
                XattrValue::External { extent, len }
            }
            _ => return Err(FormatError::BadField("xattr value")),
        };
        Ok(Self { name, value })
    }
}

/// Names of the extended attributes that hold POSIX ACLs.
pub const POSIX_ACL_NAMES: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];

/// Checks a POSIX ACL in the VFS's xattr encoding, as the kernel decodes it
/// (`posix_acl_from_xattr`): a version-2 header, then 8-byte entries of tag, permissions and
/// id; known tags, permissions within `rwx`, and an id on named entries only. A value that
/// fails here makes every permission check of its inode fail.
pub fn check_posix_acl(value: &[u8]) -> Result<(), FormatError> {
    const VERSION: u32 = 2;
    const UNDEFINED_ID: u32 = u32::MAX;
    let bad = FormatError::BadField("POSIX ACL");
    let (head, entries) = value.split_at_checked(4).ok_or(bad)?;
    if head != VERSION.to_le_bytes() || entries.len() % 8 != 0 {
        return Err(bad);
    }
    for e in entries.chunks_exact(8) {
        let [t0, t1, p0, p1, i0, i1, i2, i3] = *e else {
            return Err(bad);
        };
        let (tag, perm) = (u16::from_le_bytes([t0, t1]), u16::from_le_bytes([p0, p1]));
        let id = u32::from_le_bytes([i0, i1, i2, i3]);
        let named = match tag {
            // USER_OBJ, GROUP_OBJ, MASK, OTHER.
            0x01 | 0x04 | 0x10 | 0x20 => false,
            // USER, GROUP.
            0x02 | 0x08 => true,
            _ => return Err(bad),
        };
        if perm & !0o7 != 0 || (named && id == UNDEFINED_ID) {
            return Err(bad);
        }
    }
    Ok(())
}

/// Checks an extended attribute name: 1 to 255 bytes, no NUL.
pub fn check_xattr_name(name: &[u8]) -> Result<(), FormatError> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
        return Err(FormatError::BadField("xattr name"));
    }
    Ok(())
}

/// The blocks a filesystem-tree item references: a file extent, a copy-on-write staging extent
/// or an external xattr value.
/// This is the [`super::tree::LeafRefs`] of layer trees.
pub fn fs_leaf_refs(
    key: &super::node::Key,
    value: &[u8],
    total_blocks: u64,
) -> Result<Option<(u64, u64)>, FormatError> {
    match key.kind {
        kind::EXTENT | kind::COW => {
            let e = ExtentRecord::decode(value, total_blocks)?;
            Ok(Some((e.disk_block, u64::from(e.len))))
        }
        kind::XATTR => match XattrRecord::decode(value, total_blocks)?.value {
            XattrValue::External { extent, .. } => {
                Ok(Some((extent.disk_block, u64::from(extent.len))))
            }
            XattrValue::Inline(_) => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Reads a u16 length-prefixed byte string (used by inline data items).
pub fn inline_data(buf: &[u8]) -> Result<&[u8], FormatError> {
    let len = usize::from(get_u16(buf, 0)?);
    let data = buf.get(2..).ok_or(FormatError::Truncated)?;
    if data.len() != len || len > INLINE_MAX - 2 {
        return Err(FormatError::BadField("inline length"));
    }
    Ok(data)
}

/// Writes a u16 length-prefixed byte string; returns the bytes written.
pub fn put_inline_data(buf: &mut [u8], data: &[u8]) -> Result<usize, FormatError> {
    if data.len() > INLINE_MAX - 2 {
        return Err(FormatError::BadField("inline length"));
    }
    let len = u16::try_from(data.len()).map_err(|_| FormatError::BadField("inline length"))?;
    put_u16(buf, 0, len)?;
    put_bytes(buf, 2, data)?;
    Ok(data.len().saturating_add(2))
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;

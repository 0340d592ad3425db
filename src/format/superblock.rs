// SPDX-License-Identifier: GPL-2.0 OR MIT

//! The LCFS superblock.
//!
//! Two copies live at the start of the device, one in block 0 and one in block 1. A commit writes
//! the copy whose slot is `generation % 2`, so the other copy always holds the previous committed
//! state; mount uses the valid copy with the highest generation. Each copy is a [`SUPERBLOCK_SIZE`]
//! byte record at the start of its block; the rest of the block is zero.
//!
//! Layout of one copy (all integers little-endian):
//!
//! | offset | size | field              | meaning                                               |
//! |-------:|-----:|--------------------|-------------------------------------------------------|
//! |      0 |    8 | `magic`            | [`MAGIC`]                                             |
//! |      8 |    4 | `checksum`         | CRC-32C of bytes 0..512 with this field zero          |
//! |     12 |    4 | `version`          | format version, [`VERSION`]                           |
//! |     16 |    4 | `sb_size`          | bytes covered by the checksum, [`SUPERBLOCK_SIZE`]    |
//! |     20 |    4 | `block_size`       | bytes per block, [`super::BLOCK_SIZE`]                |
//! |     24 |    8 | `incompat`         | features a reader must know to mount at all           |
//! |     32 |    8 | `ro_compat`        | features a writer must know (else mount read-only)    |
//! |     40 |    8 | `compat`           | features that older code may ignore                   |
//! |     48 |   16 | `uuid`             | filesystem UUID                                       |
//! |     64 |    8 | `generation`       | commit number; copy slot is `generation % 2`          |
//! |     72 |    8 | `total_blocks`     | blocks of the device the filesystem uses              |
//! |     80 |    8 | `free_blocks`      | blocks not in use                                     |
//! |     88 |    8 | `create_time`      | mkfs time, seconds since the Unix epoch               |
//! |     96 |    8 | `commit_time`      | time of this commit, seconds since the Unix epoch     |
//! |    104 |    4 | `root_mode`        | mode of the root directory (`S_IFDIR` + permissions)  |
//! |    108 |    4 | `root_uid`         | owner of the root directory                           |
//! |    112 |    4 | `root_gid`         | group of the root directory                           |
//! |    116 |   12 | reserved           | zero                                                  |
//! |    128 |   64 | `label`            | volume label, UTF-8, NUL-padded                       |
//! |    192 |    8 | `map_root`         | root node of the reference-count map                  |
//! |    200 |    4 | `map_level`        | level of that root, fixed by `total_blocks`           |
//! |    204 |    4 | reserved           | zero                                                  |
//! |    208 |    8 | `layer_root`       | root of the layer tree (0: empty)                     |
//! |    216 |    8 | `next_layer_id`    | id the next new layer gets                            |
//! |    224 |    8 | `layer_count`      | layers in the layer tree                              |
//! |    232 |    8 | `reserve_blocks`   | blocks only metadata may use (deletes work when full) |
//! |    240 |   16 | `hash_key`         | SipHash key of directory-entry name hashes            |
//! |    256 |    8 | `next_data_id`     | `data_id` the next new file contents get              |
//! |    264 |  248 | reserved           | zero                                                  |

use super::bytes::{get_array, get_u32, get_u64, put_bytes, put_u32, put_u64};
use super::crc32c::crc32c;
use super::{FormatError, BLOCK_SIZE};

/// Magic number at offset 0 of both superblock copies.
pub const MAGIC: [u8; 8] = *b"LCFSsupr";

/// The format version this code reads and writes.
///
/// Until the first release the format may change; each change bumps this number and mount refuses
/// any version it does not know.
pub const VERSION: u32 = 4;

/// Bytes of one superblock copy covered by its checksum.
pub const SUPERBLOCK_SIZE: usize = 512;

/// [`SUPERBLOCK_SIZE`] as stored in the `sb_size` field.
const SUPERBLOCK_SIZE_FIELD: u32 = 512;
const _: () = assert!(SUPERBLOCK_SIZE_FIELD as usize == SUPERBLOCK_SIZE);

/// Number of superblock copies (blocks 0 and 1).
pub const SUPERBLOCK_COPIES: u64 = 2;

/// Smallest filesystem mkfs creates and mount accepts, in blocks (1 MiB).
pub const MIN_BLOCKS: u64 = 256;

/// Incompatible feature: inode records may carry flags
/// ([`inode_flags`](super::records::inode_flags): immutable, append-only, nodump, noatime).
/// `mkfs.lcfs` sets it; the kernel sets it, in the same commit, when it first stores a flag on a
/// filesystem without it. Code that does not know it must not mount the filesystem: it would
/// ignore the protection of immutable and append-only files.
pub const INCOMPAT_INODE_FLAGS: u64 = 1 << 0;

/// Incompatible features this code knows.
pub const INCOMPAT_SUPPORTED: u64 = INCOMPAT_INODE_FLAGS;

/// Read-only-compatible features this code knows (none yet).
pub const RO_COMPAT_SUPPORTED: u64 = 0;

/// Length of the label field; a label holds at most `LABEL_SIZE - 1` bytes.
pub const LABEL_SIZE: usize = 64;

/// `S_IFMT` and `S_IFDIR` as stored in mode fields (the Linux values, fixed by the format).
pub const S_IFMT: u32 = 0o170_000;
/// Directory file type in a mode field.
pub const S_IFDIR: u32 = 0o040_000;

mod off {
    pub(super) const MAGIC: usize = 0;
    pub(super) const CHECKSUM: usize = 8;
    pub(super) const VERSION: usize = 12;
    pub(super) const SB_SIZE: usize = 16;
    pub(super) const BLOCK_SIZE: usize = 20;
    pub(super) const INCOMPAT: usize = 24;
    pub(super) const RO_COMPAT: usize = 32;
    pub(super) const COMPAT: usize = 40;
    pub(super) const UUID: usize = 48;
    pub(super) const GENERATION: usize = 64;
    pub(super) const TOTAL_BLOCKS: usize = 72;
    pub(super) const FREE_BLOCKS: usize = 80;
    pub(super) const CREATE_TIME: usize = 88;
    pub(super) const COMMIT_TIME: usize = 96;
    pub(super) const ROOT_MODE: usize = 104;
    pub(super) const ROOT_UID: usize = 108;
    pub(super) const ROOT_GID: usize = 112;
    pub(super) const RESERVED1: usize = 116;
    pub(super) const LABEL: usize = 128;
    pub(super) const MAP_ROOT: usize = 192;
    pub(super) const MAP_LEVEL: usize = 200;
    pub(super) const RESERVED2: usize = 204;
    pub(super) const LAYER_ROOT: usize = 208;
    pub(super) const NEXT_LAYER_ID: usize = 216;
    pub(super) const LAYER_COUNT: usize = 224;
    pub(super) const RESERVE_BLOCKS: usize = 232;
    pub(super) const HASH_KEY: usize = 240;
    pub(super) const NEXT_DATA_ID: usize = 256;
    pub(super) const RESERVED3: usize = 264;
}

/// A decoded, validated superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Features a reader must know.
    pub incompat: u64,
    /// Features a writer must know.
    pub ro_compat: u64,
    /// Features older code may ignore.
    pub compat: u64,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Commit number.
    pub generation: u64,
    /// Blocks of the device the filesystem uses.
    pub total_blocks: u64,
    /// Blocks not in use.
    pub free_blocks: u64,
    /// mkfs time, seconds since the epoch.
    pub create_time: u64,
    /// Time of the commit that wrote this copy, seconds since the epoch.
    pub commit_time: u64,
    /// Mode of the root directory.
    pub root_mode: u32,
    /// Owner of the root directory.
    pub root_uid: u32,
    /// Group of the root directory.
    pub root_gid: u32,
    /// Volume label, NUL-padded.
    pub label: [u8; LABEL_SIZE],
    /// Root of the reference-count map.
    pub map_root: u64,
    /// Level of the map root.
    pub map_level: u8,
    /// Root of the layer tree, 0 when there are no layers.
    pub layer_root: u64,
    /// Id of the next layer created.
    pub next_layer_id: u64,
    /// Number of layers.
    pub layer_count: u64,
    /// Blocks only metadata may use.
    pub reserve_blocks: u64,
    /// Key of directory-entry name hashes.
    pub hash_key: [u64; 2],
    /// The `data_id` the next new file contents get: ids are never reused, so two inode
    /// records (of any layers) with the same `data_id` hold the same bytes.
    pub next_data_id: u64,
}

impl Superblock {
    /// Blocks used by the fixed metadata of a fresh filesystem (the two superblock copies).
    pub const FIXED_BLOCKS: u64 = SUPERBLOCK_COPIES;

    /// A fresh filesystem of `total_blocks` blocks before any layer exists: the map right after
    /// the superblocks, everything else free. The hash key defaults to one derived from the UUID;
    /// mkfs replaces it with random bits, since the UUID is public.
    /// [`super::volume::Volume::format`] fills in the rest.
    pub fn new(total_blocks: u64, uuid: [u8; 16], now: u64) -> Self {
        let map_level = super::refmap::levels_for(total_blocks).unwrap_or(0);
        let map_blocks = u64::from(map_level) + 1;
        Self {
            incompat: 0,
            ro_compat: 0,
            compat: 0,
            uuid,
            generation: 1,
            total_blocks,
            free_blocks: total_blocks
                .saturating_sub(Self::FIXED_BLOCKS)
                .saturating_sub(map_blocks),
            create_time: now,
            commit_time: now,
            root_mode: S_IFDIR | 0o755,
            root_uid: 0,
            root_gid: 0,
            label: [0; LABEL_SIZE],
            map_root: Self::FIXED_BLOCKS,
            map_level,
            layer_root: 0,
            next_layer_id: 1,
            layer_count: 0,
            reserve_blocks: default_reserve(total_blocks),
            hash_key: [
                u64::from_le_bytes(uuid_half(&uuid, 0)) ^ 0x6c63_6673_6861_7368,
                u64::from_le_bytes(uuid_half(&uuid, 8)) ^ 0x6469_7265_6e74_6b79,
            ],
            next_data_id: 1,
        }
    }

    /// Filesystem id stored in every metadata block: both halves of the UUID folded together.
    pub fn fsid(&self) -> u64 {
        u64::from_le_bytes(uuid_half(&self.uuid, 0)) ^ u64::from_le_bytes(uuid_half(&self.uuid, 8))
    }

    /// Sets the label. Fails if it does not fit (at most `LABEL_SIZE - 1` bytes) or contains NUL.
    pub fn set_label(&mut self, label: &str) -> Result<(), FormatError> {
        let bytes = label.as_bytes();
        if bytes.len() >= LABEL_SIZE || bytes.contains(&0) {
            return Err(FormatError::BadField("label"));
        }
        self.label = [0; LABEL_SIZE];
        put_bytes(&mut self.label, 0, bytes)
    }

    /// The label up to its first NUL, if it is valid UTF-8.
    pub fn label(&self) -> Option<&str> {
        let len = self
            .label
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LABEL_SIZE);
        core::str::from_utf8(self.label.get(..len)?).ok()
    }

    /// Block number holding the copy with this superblock's generation.
    pub fn slot(&self) -> u64 {
        self.generation % SUPERBLOCK_COPIES
    }

    /// Encodes into `buf`, which must hold at least [`SUPERBLOCK_SIZE`] bytes; the record is
    /// written to its first [`SUPERBLOCK_SIZE`] bytes (reserved fields zeroed), checksum included.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), FormatError> {
        let rec = buf
            .get_mut(..SUPERBLOCK_SIZE)
            .ok_or(FormatError::Truncated)?;
        rec.fill(0);
        put_bytes(rec, off::MAGIC, &MAGIC)?;
        put_u32(rec, off::VERSION, VERSION)?;
        put_u32(rec, off::SB_SIZE, SUPERBLOCK_SIZE_FIELD)?;
        put_u32(rec, off::BLOCK_SIZE, BLOCK_SIZE)?;
        put_u64(rec, off::INCOMPAT, self.incompat)?;
        put_u64(rec, off::RO_COMPAT, self.ro_compat)?;
        put_u64(rec, off::COMPAT, self.compat)?;
        put_bytes(rec, off::UUID, &self.uuid)?;
        put_u64(rec, off::GENERATION, self.generation)?;
        put_u64(rec, off::TOTAL_BLOCKS, self.total_blocks)?;
        put_u64(rec, off::FREE_BLOCKS, self.free_blocks)?;
        put_u64(rec, off::CREATE_TIME, self.create_time)?;
        put_u64(rec, off::COMMIT_TIME, self.commit_time)?;
        put_u32(rec, off::ROOT_MODE, self.root_mode)?;
        put_u32(rec, off::ROOT_UID, self.root_uid)?;
        put_u32(rec, off::ROOT_GID, self.root_gid)?;
        put_bytes(rec, off::LABEL, &self.label)?;
        put_u64(rec, off::MAP_ROOT, self.map_root)?;
        put_u32(rec, off::MAP_LEVEL, u32::from(self.map_level))?;
        put_u64(rec, off::LAYER_ROOT, self.layer_root)?;
        put_u64(rec, off::NEXT_LAYER_ID, self.next_layer_id)?;
        put_u64(rec, off::LAYER_COUNT, self.layer_count)?;
        put_u64(rec, off::RESERVE_BLOCKS, self.reserve_blocks)?;
        put_u64(rec, off::HASH_KEY, self.hash_key[0])?;
        put_u64(rec, off::HASH_KEY + 8, self.hash_key[1])?;
        put_u64(rec, off::NEXT_DATA_ID, self.next_data_id)?;
        let sum = crc32c(rec);
        put_u32(rec, off::CHECKSUM, sum)
    }

    /// Decodes and validates one superblock copy from the start of `buf`.
    ///
    /// `device_blocks` is the size of the device in blocks; a filesystem larger than its device is
    /// rejected. The checks run in an order that gives the most useful error: magic first (is this
    /// LCFS at all?), then version and checksum, then field ranges.
    pub fn decode(buf: &[u8], device_blocks: u64) -> Result<Self, FormatError> {
        let rec = buf.get(..SUPERBLOCK_SIZE).ok_or(FormatError::Truncated)?;
        if get_array::<8>(rec, off::MAGIC)? != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = get_u32(rec, off::VERSION)?;
        if version != VERSION {
            return Err(FormatError::UnknownVersion(version));
        }
        let stored = get_u32(rec, off::CHECKSUM)?;
        let computed = checksum(rec)?;
        if stored != computed {
            return Err(FormatError::BadChecksum { stored, computed });
        }
        if get_u32(rec, off::SB_SIZE)? != SUPERBLOCK_SIZE_FIELD {
            return Err(FormatError::BadField("sb_size"));
        }
        if get_u32(rec, off::BLOCK_SIZE)? != BLOCK_SIZE {
            return Err(FormatError::BadField("block_size"));
        }
        let incompat = get_u64(rec, off::INCOMPAT)?;
        if incompat & !INCOMPAT_SUPPORTED != 0 {
            return Err(FormatError::UnknownIncompat(incompat & !INCOMPAT_SUPPORTED));
        }
        let sb = Self {
            incompat,
            ro_compat: get_u64(rec, off::RO_COMPAT)?,
            compat: get_u64(rec, off::COMPAT)?,
            uuid: get_array(rec, off::UUID)?,
            generation: get_u64(rec, off::GENERATION)?,
            total_blocks: get_u64(rec, off::TOTAL_BLOCKS)?,
            free_blocks: get_u64(rec, off::FREE_BLOCKS)?,
            create_time: get_u64(rec, off::CREATE_TIME)?,
            commit_time: get_u64(rec, off::COMMIT_TIME)?,
            root_mode: get_u32(rec, off::ROOT_MODE)?,
            root_uid: get_u32(rec, off::ROOT_UID)?,
            root_gid: get_u32(rec, off::ROOT_GID)?,
            label: get_array(rec, off::LABEL)?,
            map_root: get_u64(rec, off::MAP_ROOT)?,
            map_level: u8::try_from(get_u32(rec, off::MAP_LEVEL)?)
                .map_err(|_| FormatError::BadField("map_level"))?,
            layer_root: get_u64(rec, off::LAYER_ROOT)?,
            next_layer_id: get_u64(rec, off::NEXT_LAYER_ID)?,
            layer_count: get_u64(rec, off::LAYER_COUNT)?,
            reserve_blocks: get_u64(rec, off::RESERVE_BLOCKS)?,
            hash_key: [
                get_u64(rec, off::HASH_KEY)?,
                get_u64(rec, off::HASH_KEY + 8)?,
            ],
            next_data_id: get_u64(rec, off::NEXT_DATA_ID)?,
        };
        let reserved_zero = rec
            .get(off::RESERVED1..off::LABEL)
            .into_iter()
            .chain(rec.get(off::RESERVED2..off::LAYER_ROOT))
            .chain(rec.get(off::RESERVED3..))
            .flatten()
            .all(|&b| b == 0);
        if !reserved_zero {
            return Err(FormatError::BadField("reserved"));
        }
        if sb.total_blocks < MIN_BLOCKS {
            return Err(FormatError::BadField("total_blocks"));
        }
        if sb.total_blocks > device_blocks {
            return Err(FormatError::DeviceTooSmall {
                needed: sb.total_blocks,
                available: device_blocks,
            });
        }
        if sb.free_blocks > sb.total_blocks.saturating_sub(Self::FIXED_BLOCKS) {
            return Err(FormatError::BadField("free_blocks"));
        }
        // The next transaction's generation must exist.
        if sb.generation == u64::MAX {
            return Err(FormatError::BadField("generation"));
        }
        if super::refmap::levels_for(sb.total_blocks) != Ok(sb.map_level) {
            return Err(FormatError::BadField("map_level"));
        }
        if sb.map_root < Self::FIXED_BLOCKS || sb.map_root >= sb.total_blocks {
            return Err(FormatError::BadField("map_root"));
        }
        if sb.layer_root != 0
            && (sb.layer_root < Self::FIXED_BLOCKS || sb.layer_root >= sb.total_blocks)
        {
            return Err(FormatError::BadField("layer_root"));
        }
        // The layer tree may outlive the last layer: it also holds the reclaim queue.
        if (sb.layer_root == 0 && sb.layer_count != 0) || sb.next_layer_id <= sb.layer_count {
            return Err(FormatError::BadField("layer_count"));
        }
        if sb.next_data_id == 0 || sb.next_data_id > super::INO_LIMIT {
            return Err(FormatError::BadField("next_data_id"));
        }
        if sb.reserve_blocks > sb.total_blocks / 2 {
            return Err(FormatError::BadField("reserve_blocks"));
        }
        if sb.root_mode & S_IFMT != S_IFDIR || sb.root_mode & !(S_IFMT | 0o7777) != 0 {
            return Err(FormatError::BadField("root_mode"));
        }
        Ok(sb)
    }
}

/// What a superblock copy that failed [`Superblock::decode`] says of itself, read without any
/// check: a checker's best guess at the commit a damaged copy held. Any field may be the damaged
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unverified {
    /// The `generation` field as stored.
    pub generation: u64,
    /// The `layer_count` field as stored.
    pub layer_count: u64,
    /// The `commit_time` field as stored.
    pub commit_time: u64,
}

/// Reads the fields of [`Unverified`] from a copy whatever its checksum and field checks say, if
/// its magic number and version are this format's (otherwise its layout is unknown).
pub fn peek(buf: &[u8]) -> Option<Unverified> {
    let rec = buf.get(..SUPERBLOCK_SIZE)?;
    if get_array::<8>(rec, off::MAGIC).ok()? != MAGIC || get_u32(rec, off::VERSION).ok()? != VERSION
    {
        return None;
    }
    Some(Unverified {
        generation: get_u64(rec, off::GENERATION).ok()?,
        layer_count: get_u64(rec, off::LAYER_COUNT).ok()?,
        commit_time: get_u64(rec, off::COMMIT_TIME).ok()?,
    })
}

/// Default metadata reserve: 2% of the device, at least 16 blocks, at most 64 MiB.
pub fn default_reserve(total_blocks: u64) -> u64 {
    (total_blocks / 50).clamp(16, 16384).min(total_blocks / 4)
}

fn uuid_half(uuid: &[u8; 16], at: usize) -> [u8; 8] {
    let mut h = [0u8; 8];
    if let Some(src) = uuid.get(at..).and_then(|s| s.get(..8)) {
        h.copy_from_slice(src);
    }
    h
}

/// CRC-32C of a superblock record with its checksum field taken as zero.
fn checksum(rec: &[u8]) -> Result<u32, FormatError> {
    super::crc32c::checksum_with_field(rec, off::CHECKSUM, SUPERBLOCK_SIZE)
}

/// Outcome of reading both superblock copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The newest valid copy.
    pub sb: Superblock,
    /// The error of the other copy, if it was not valid (worth a warning: redundancy is lost).
    pub other_error: Option<(u64, FormatError)>,
}

/// Picks the current superblock from the decode results of copy 0 and copy 1.
///
/// A copy must sit in the slot its generation names; the valid copy with the highest generation
/// wins. If neither is valid, the error of copy 0 is returned unless copy 0 is not LCFS at all
/// and copy 1 says more (for example a checksum error).
pub fn select(
    copy0: Result<Superblock, FormatError>,
    copy1: Result<Superblock, FormatError>,
) -> Result<Selected, FormatError> {
    let check_slot = |r: Result<Superblock, FormatError>, slot: u64| {
        r.and_then(|sb| {
            if sb.slot() == slot {
                Ok(sb)
            } else {
                Err(FormatError::BadField("generation"))
            }
        })
    };
    match (check_slot(copy0, 0), check_slot(copy1, 1)) {
        (Ok(a), Ok(b)) => Ok(Selected {
            sb: if b.generation > a.generation { b } else { a },
            other_error: None,
        }),
        (Ok(a), Err(e)) => Ok(Selected {
            sb: a,
            other_error: Some((1, e)),
        }),
        (Err(e), Ok(b)) => Ok(Selected {
            sb: b,
            other_error: Some((0, e)),
        }),
        (Err(FormatError::BadMagic), Err(e)) if e != FormatError::BadMagic => Err(e),
        (Err(e), Err(_)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        let mut sb = Superblock::new(1024, [7; 16], 1_700_000_000);
        sb.set_label("test").unwrap();
        sb
    }

    fn encoded(sb: &Superblock) -> [u8; SUPERBLOCK_SIZE] {
        let mut buf = [0u8; SUPERBLOCK_SIZE];
        sb.encode(&mut buf).unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        let buf = encoded(&sb);
        assert_eq!(Superblock::decode(&buf, 1024), Ok(sb.clone()));
        assert_eq!(sb.label(), Some("test"));
    }

    #[test]
    fn layout_is_fixed() {
        let buf = encoded(&sample());
        assert_eq!(&buf[0..8], b"LCFSsupr");
        assert_eq!(&buf[12..16], &4u32.to_le_bytes());
        assert_eq!(&buf[16..20], &512u32.to_le_bytes());
        assert_eq!(&buf[20..24], &4096u32.to_le_bytes());
        assert_eq!(&buf[72..80], &1024u64.to_le_bytes());
        assert_eq!(&buf[104..108], &0o40755u32.to_le_bytes());
        assert_eq!(&buf[128..132], b"test");
        assert_eq!(&buf[192..200], &2u64.to_le_bytes());
        assert_eq!(&buf[200..204], &1u32.to_le_bytes());
        assert_eq!(&buf[216..224], &1u64.to_le_bytes());
        assert_eq!(&buf[232..240], &20u64.to_le_bytes());
        assert_eq!(&buf[256..264], &1u64.to_le_bytes());
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let buf = encoded(&sample());
        for byte in 0..SUPERBLOCK_SIZE {
            for bit in 0..8 {
                let mut bad = buf;
                bad[byte] ^= 1 << bit;
                assert!(Superblock::decode(&bad, 1024).is_err(), "flip {byte}:{bit}");
            }
        }
    }

    #[test]
    fn errors_are_specific() {
        let sb = sample();
        let buf = encoded(&sb);
        assert_eq!(
            Superblock::decode(&[0u8; 512], 1024),
            Err(FormatError::BadMagic)
        );
        assert_eq!(
            Superblock::decode(&buf[..100], 1024),
            Err(FormatError::Truncated)
        );
        assert_eq!(
            Superblock::decode(&buf, 1000),
            Err(FormatError::DeviceTooSmall {
                needed: 1024,
                available: 1000
            })
        );
        let mut bad = buf;
        bad[300] = 1;
        assert!(matches!(
            Superblock::decode(&bad, 1024),
            Err(FormatError::BadChecksum { .. })
        ));
        let mut v5 = buf;
        v5[12] = 5;
        assert_eq!(
            Superblock::decode(&v5, 1024),
            Err(FormatError::UnknownVersion(5))
        );
        let mut no_data_id = sb.clone();
        no_data_id.next_data_id = 0;
        assert_eq!(
            Superblock::decode(&encoded(&no_data_id), 1024),
            Err(FormatError::BadField("next_data_id"))
        );
        let mut flags = sb.clone();
        flags.incompat = INCOMPAT_INODE_FLAGS;
        assert_eq!(
            Superblock::decode(&encoded(&flags), 1024),
            Ok(flags.clone())
        );
        assert_eq!(&encoded(&flags)[24..32], &1u64.to_le_bytes());
        let mut feat = sb.clone();
        feat.incompat = 1 << 40;
        assert_eq!(
            Superblock::decode(&encoded(&feat), 1024),
            Err(FormatError::UnknownIncompat(1 << 40))
        );
        let mut small = sb.clone();
        small.total_blocks = 10;
        small.free_blocks = 0;
        assert_eq!(
            Superblock::decode(&encoded(&small), 1024),
            Err(FormatError::BadField("total_blocks"))
        );
        let mut file = sb;
        file.root_mode = 0o100644;
        assert_eq!(
            Superblock::decode(&encoded(&file), 1024),
            Err(FormatError::BadField("root_mode"))
        );
    }

    #[test]
    fn peek_reads_a_damaged_copy_but_not_a_foreign_one() {
        let mut sb = sample();
        sb.generation = 5;
        sb.layer_count = 3;
        sb.next_layer_id = 4;
        sb.layer_root = 9;
        let mut bad = encoded(&sb);
        bad[300] ^= 1;
        assert!(Superblock::decode(&bad, 1024).is_err());
        assert_eq!(
            peek(&bad),
            Some(Unverified {
                generation: 5,
                layer_count: 3,
                commit_time: sb.commit_time
            })
        );
        assert_eq!(peek(&[0u8; SUPERBLOCK_SIZE]), None);
        assert_eq!(peek(&bad[..100]), None);
        let mut v5 = bad;
        v5[12] = 5;
        assert_eq!(peek(&v5), None);
    }

    #[test]
    fn label_limits() {
        let mut sb = sample();
        assert!(sb.set_label(&"x".repeat(63)).is_ok());
        assert_eq!(
            sb.set_label(&"x".repeat(64)),
            Err(FormatError::BadField("label"))
        );
        assert_eq!(sb.set_label("a\0b"), Err(FormatError::BadField("label")));
    }

    #[test]
    fn selection_prefers_newest_valid_copy() {
        let mut old = sample();
        old.generation = 4;
        let mut new = sample();
        new.generation = 5;
        let sel = select(Ok(old.clone()), Ok(new.clone())).unwrap();
        assert_eq!(sel.sb.generation, 5);
        assert_eq!(sel.other_error, None);
        let sel = select(Ok(old.clone()), Err(FormatError::BadMagic)).unwrap();
        assert_eq!(sel.sb.generation, 4);
        assert_eq!(sel.other_error, Some((1, FormatError::BadMagic)));
        // A copy in the wrong slot is not trusted.
        let sel = select(Ok(new.clone()), Ok(new)).unwrap();
        assert_eq!(
            sel.other_error,
            Some((0, FormatError::BadField("generation")))
        );
        let bad = FormatError::BadChecksum {
            stored: 1,
            computed: 2,
        };
        assert_eq!(select(Err(FormatError::BadMagic), Err(bad)), Err(bad));
        assert_eq!(
            select(Err(FormatError::BadMagic), Err(FormatError::BadMagic)),
            Err(FormatError::BadMagic)
        );
    }
}

//! Recognises filesystem, partition-table and volume signatures, so mkfs does not overwrite data
//! by accident.
//!
//! This covers the signatures one is likely to meet on a container host's disks; it is not a
//! replacement for libblkid. All of them sit in the first 68 KiB of the device.

use crate::{Device, Result};

/// Bytes read from the start of the device for probing.
pub const PROBE_BYTES: usize = 68 * 1024;

struct Signature {
    name: &'static str,
    offset: usize,
    magic: &'static [u8],
}

const SIGNATURES: &[Signature] = &[
    Signature {
        name: "lcfs",
        offset: 0,
        magic: &lcfs_format::superblock::MAGIC,
    },
    Signature {
        name: "lcfs",
        offset: 4096,
        magic: &lcfs_format::superblock::MAGIC,
    },
    Signature {
        name: "ext2/ext3/ext4",
        offset: 1080,
        magic: &[0x53, 0xef],
    },
    Signature {
        name: "xfs",
        offset: 0,
        magic: b"XFSB",
    },
    Signature {
        name: "btrfs",
        offset: 65536 + 64,
        magic: b"_BHRfS_M",
    },
    Signature {
        name: "swap",
        offset: 4086,
        magic: b"SWAPSPACE2",
    },
    Signature {
        name: "swap",
        offset: 4086,
        magic: b"SWAP-SPACE",
    },
    Signature {
        name: "squashfs",
        offset: 0,
        magic: b"hsqs",
    },
    Signature {
        name: "erofs",
        offset: 1024,
        magic: &[0xe2, 0xe1, 0xf5, 0xe0],
    },
    Signature {
        name: "f2fs",
        offset: 1024,
        magic: &[0x10, 0x20, 0xf5, 0xf2],
    },
    Signature {
        name: "crypto_LUKS",
        offset: 0,
        magic: b"LUKS\xba\xbe",
    },
    Signature {
        name: "LVM2_member",
        offset: 512,
        magic: b"LABELONE",
    },
    Signature {
        name: "iso9660",
        offset: 32769,
        magic: b"CD001",
    },
    Signature {
        name: "gpt partition table",
        offset: 512,
        magic: b"EFI PART",
    },
    Signature {
        name: "dos partition table or FAT",
        offset: 510,
        magic: &[0x55, 0xaa],
    },
];

/// Names of the signatures found in `head` (the first bytes of a device), without repeats.
pub fn signatures_in(head: &[u8]) -> Vec<&'static str> {
    let mut found: Vec<&'static str> = Vec::new();
    for sig in SIGNATURES {
        let hit = sig
            .offset
            .checked_add(sig.magic.len())
            .and_then(|end| head.get(sig.offset..end))
            .is_some_and(|bytes| bytes == sig.magic);
        if hit && !found.contains(&sig.name) {
            found.push(sig.name);
        }
    }
    found
}

/// Names of the signatures found on `dev`.
pub fn signatures(dev: &mut Device) -> Result<Vec<&'static str>> {
    let mut head = vec![0u8; PROBE_BYTES];
    dev.read_at(0, &mut head)?;
    Ok(signatures_in(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_known_signatures() {
        let mut head = vec![0u8; PROBE_BYTES];
        assert!(signatures_in(&head).is_empty());
        head[1080] = 0x53;
        head[1081] = 0xef;
        assert_eq!(signatures_in(&head), vec!["ext2/ext3/ext4"]);
        head[65536 + 64..65536 + 72].copy_from_slice(b"_BHRfS_M");
        assert_eq!(signatures_in(&head), vec!["ext2/ext3/ext4", "btrfs"]);
    }

    #[test]
    fn short_input_is_fine() {
        assert!(signatures_in(&[0x55; 100]).is_empty());
        assert_eq!(signatures_in(b"XFSB"), vec!["xfs"]);
    }
}

//! Superblock decoding and copy selection on arbitrary bytes. Errors are fine; panics are bugs.
#![no_main]

use lcfs_format::superblock::{select, Superblock, SUPERBLOCK_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut owned = data.to_vec();
    // With the first byte odd, copy 0 gets the magic, version and a valid checksum, so inputs
    // reach the field checks.
    if data.first().is_some_and(|b| b & 1 == 1) && owned.len() >= SUPERBLOCK_SIZE {
        owned[0..8].copy_from_slice(&lcfs_format::superblock::MAGIC);
        owned[12..16].copy_from_slice(&lcfs_format::superblock::VERSION.to_le_bytes());
        owned[8..12].fill(0);
        let sum = lcfs_format::crc32c::crc32c(&owned[..SUPERBLOCK_SIZE]);
        owned[8..12].copy_from_slice(&sum.to_le_bytes());
    }
    let data = &owned[..];
    let (a, b) = data.split_at(data.len().min(SUPERBLOCK_SIZE));
    let blocks = data.len() as u64;
    let r0 = Superblock::decode(a, blocks);
    let r1 = Superblock::decode(b, blocks);
    if let Ok(sb) = &r0 {
        // Whatever decodes must encode back to the same record.
        let mut buf = [0u8; SUPERBLOCK_SIZE];
        sb.encode(&mut buf).unwrap();
        assert_eq!(Superblock::decode(&buf, blocks).as_ref(), Ok(sb));
        let _ = sb.label();
    }
    let _ = select(r0, r1);
});

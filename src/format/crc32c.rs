// SPDX-License-Identifier: GPL-2.0 OR MIT

//! CRC-32C (Castagnoli), the checksum of every LCFS metadata structure.
//!
//! Implemented here rather than taken from the platform so that the kernel and the tools compute
//! the same value on every CPU (the original LCFS chose its checksum by CPU feature). Parameters:
//! reflected polynomial `0x82f63b78`, initial value and final XOR `0xffffffff`, as in iSCSI, ext4
//! and btrfs; `crc32c(b"123456789") == 0xe3069283`.

const POLY: u32 = 0x82f6_3b78;

/// Lookup table for one byte at a time, built at compile time.
static TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut crc = i;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i as usize] = crc;
        i += 1;
    }
    table
}

/// Continues a CRC-32C over `data`, starting from a previous [`crc32c`] result (`0` to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in data {
        // CAST: the index is masked to 0..=255, within the table.
        let index = ((crc ^ u32::from(byte)) & 0xff) as u8;
        crc = TABLE[usize::from(index)] ^ (crc >> 8);
    }
    !crc
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn append_equals_whole() {
        let data = b"layer cloning filesystem";
        let (a, b) = data.split_at(7);
        assert_eq!(crc32c_append(crc32c(a), b), crc32c(data));
    }

    #[test]
    fn rfc3720_vectors() {
        // iSCSI (RFC 3720, B.4) test patterns.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        assert_eq!(crc32c(&inc), 0x46dd_794e);
    }
}

// SPDX-License-Identifier: GPL-2.0 OR MIT

//! CRC-32C (Castagnoli), the checksum of every LCFS metadata structure.
//!
//! Implemented here so that the kernel and the tools compute the same function on every CPU (the
//! original LCFS chose a different checksum by CPU feature). Userspace builds with the
//! `hw-crc32c` feature compute the very same function with the CPU's CRC-32C instruction (the
//! `crc32c` crate, which falls back to software where the CPU lacks it); a test checks both
//! against each other. Parameters:
//! reflected polynomial `0x82f63b78`, initial value and final XOR `0xffffffff`, as in iSCSI, ext4
//! and btrfs; `crc32c(b"123456789") == 0xe3069283`.

const POLY: u32 = 0x82f6_3b78;

/// Slice-by-8 lookup tables, built at compile time: `TABLES[0]` is the classic byte-at-a-time
/// table, `TABLES[k][b]` the CRC of byte `b` followed by `k` zero bytes. Eight bytes are folded per
/// step, several times faster than one byte at a time, with identical results.
static TABLES: [[u32; 256]; 8] = build_tables();

#[expect(
    clippy::arithmetic_side_effects,
    reason = "loop counters below 256 and 8, and k - 1 with k at least 1, at compile time"
)]
const fn build_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
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
        t[0][i as usize] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Table lookup with the index masked to one byte.
fn tab(k: usize, v: u32) -> u32 {
    // CAST: masked to 0..=255; `k` is below 8 at every call site.
    TABLES[k & 7][(v & 0xff) as usize]
}

/// Continues a CRC-32C over `data`, starting from a previous [`crc32c`] result (`0` to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(feature = "hw-crc32c")]
    {
        ::crc32c::crc32c_append(crc, data)
    }
    #[cfg(not(feature = "hw-crc32c"))]
    {
        crc32c_append_sw(crc, data)
    }
}

/// The portable slice-by-8 implementation (the kernel's, and the reference for the others).
pub fn crc32c_append_sw(crc: u32, data: &[u8]) -> u32 {
    let mut crc = !crc;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = tab(7, lo)
            ^ tab(6, lo >> 8)
            ^ tab(5, lo >> 16)
            ^ tab(4, lo >> 24)
            ^ tab(3, hi)
            ^ tab(2, hi >> 8)
            ^ tab(1, hi >> 16)
            ^ tab(0, hi >> 24);
    }
    for &byte in chunks.remainder() {
        crc = tab(0, crc ^ u32::from(byte)) ^ (crc >> 8);
    }
    !crc
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// CRC-32C of the first `len` bytes of `buf` with the 4-byte checksum field at `field` taken as
/// zero: the checksum every LCFS structure stores inside itself.
pub fn checksum_with_field(
    buf: &[u8],
    field: usize,
    len: usize,
) -> Result<u32, super::FormatError> {
    let truncated = super::FormatError::Truncated;
    let head = buf.get(..field).ok_or(truncated)?;
    let tail = buf
        .get(field.checked_add(4).ok_or(truncated)?..len)
        .ok_or(truncated)?;
    let crc = crc32c_append(0, head);
    let crc = crc32c_append(crc, &[0u8; 4]);
    Ok(crc32c_append(crc, tail))
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
    fn slice_by_8_equals_bitwise() {
        fn bitwise(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ POLY
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let data: [u8; 100] = core::array::from_fn(|i| u8::try_from(i * 37 % 251).unwrap());
        for len in 0..data.len() {
            for start in 0..3.min(len + 1) {
                assert_eq!(crc32c(&data[start..len]), bitwise(&data[start..len]));
            }
        }
    }

    #[test]
    fn dispatch_equals_software() {
        extern crate std;
        let data: std::vec::Vec<u8> = (0..10_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[1])
            .collect();
        for start in [0usize, 1, 3, 7, 64, 4000] {
            for len in [0usize, 1, 5, 8, 63, 4096, 5000] {
                let d = &data[start..(start + len).min(data.len())];
                assert_eq!(
                    crc32c_append(0x1234_5678, d),
                    crc32c_append_sw(0x1234_5678, d)
                );
            }
        }
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

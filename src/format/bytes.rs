// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Bounds-checked little-endian field access.
//!
//! Every on-disk field is read and written through these helpers: an offset past the end of the
//! buffer is an error ([`FormatError::Truncated`]), never a panic.

use super::FormatError;

/// Returns `buf[off..off + N]` as an array.
pub fn get_array<const N: usize>(buf: &[u8], off: usize) -> Result<[u8; N], FormatError> {
    let end = off.checked_add(N).ok_or(FormatError::Truncated)?;
    let slice = buf.get(off..end).ok_or(FormatError::Truncated)?;
    // A fixed-size conversion compiles to plain loads; `copy_from_slice` became a call.
    <[u8; N]>::try_from(slice).map_err(|_| FormatError::Truncated)
}

/// Reads a little-endian `u16` at `off`.
pub fn get_u16(buf: &[u8], off: usize) -> Result<u16, FormatError> {
    get_array(buf, off).map(u16::from_le_bytes)
}

/// Reads a little-endian `u32` at `off`.
pub fn get_u32(buf: &[u8], off: usize) -> Result<u32, FormatError> {
    get_array(buf, off).map(u32::from_le_bytes)
}

/// Reads a little-endian `u64` at `off`.
pub fn get_u64(buf: &[u8], off: usize) -> Result<u64, FormatError> {
    get_array(buf, off).map(u64::from_le_bytes)
}

/// Moves `buf[from..to]` to start at `dest` (the ranges may overlap), or fails if either
/// range is not inside `buf`.
pub fn move_within(buf: &mut [u8], from: usize, to: usize, dest: usize) -> Result<(), FormatError> {
    let n = to.checked_sub(from).ok_or(FormatError::Truncated)?;
    let dest_end = dest.checked_add(n).ok_or(FormatError::Truncated)?;
    if to > buf.len() || dest_end > buf.len() {
        return Err(FormatError::Truncated);
    }
    buf.copy_within(from..to, dest);
    Ok(())
}

/// Copies `bytes` into `buf` at `off`.
pub fn put_bytes(buf: &mut [u8], off: usize, bytes: &[u8]) -> Result<(), FormatError> {
    let end = off.checked_add(bytes.len()).ok_or(FormatError::Truncated)?;
    buf.get_mut(off..end)
        .ok_or(FormatError::Truncated)?
        .copy_from_slice(bytes);
    Ok(())
}

/// Writes the array `bytes` at `off` (plain stores, where [`put_bytes`] calls a copy).
pub fn put_array<const N: usize>(
    buf: &mut [u8],
    off: usize,
    bytes: [u8; N],
) -> Result<(), FormatError> {
    let end = off.checked_add(N).ok_or(FormatError::Truncated)?;
    let dst = buf.get_mut(off..end).ok_or(FormatError::Truncated)?;
    *<&mut [u8; N]>::try_from(dst).map_err(|_| FormatError::Truncated)? = bytes;
    Ok(())
}

/// Writes a little-endian `u16` at `off`.
pub fn put_u16(buf: &mut [u8], off: usize, v: u16) -> Result<(), FormatError> {
    put_array(buf, off, v.to_le_bytes())
}

/// Writes a little-endian `u32` at `off`.
pub fn put_u32(buf: &mut [u8], off: usize, v: u32) -> Result<(), FormatError> {
    put_array(buf, off, v.to_le_bytes())
}

/// Writes a little-endian `u64` at `off`.
pub fn put_u64(buf: &mut [u8], off: usize, v: u64) -> Result<(), FormatError> {
    put_array(buf, off, v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_within_checks_both_ranges() {
        let mut buf = [1u8, 2, 3, 4, 5];
        assert_eq!(move_within(&mut buf, 0, 3, 2), Ok(()));
        assert_eq!(buf, [1, 2, 1, 2, 3]);
        assert_eq!(move_within(&mut buf, 0, 3, 3), Err(FormatError::Truncated));
        assert_eq!(move_within(&mut buf, 3, 6, 0), Err(FormatError::Truncated));
        assert_eq!(move_within(&mut buf, 3, 2, 0), Err(FormatError::Truncated));
        assert_eq!(
            move_within(&mut buf, 0, 1, usize::MAX),
            Err(FormatError::Truncated)
        );
        assert_eq!(buf, [1, 2, 1, 2, 3]);
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let buf = [1u8, 2, 3];
        assert_eq!(get_u32(&buf, 0), Err(FormatError::Truncated));
        assert_eq!(get_u16(&buf, 2), Err(FormatError::Truncated));
        assert_eq!(get_u16(&buf, usize::MAX), Err(FormatError::Truncated));
        assert_eq!(get_u16(&buf, 1), Ok(0x0302));
        let mut out = [0u8; 4];
        assert_eq!(put_u64(&mut out, 0, 1), Err(FormatError::Truncated));
        assert_eq!(put_u32(&mut out, 0, 0x0403_0201), Ok(()));
        assert_eq!(out, [1, 2, 3, 4]);
    }
}

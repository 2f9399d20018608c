//! Constants and checksum of the `.wandb` framing; the format is documented in
//! [`crate::export`].

/// The 7-byte file header: `:W&B`, the magic `0xBEE1` (u16 little-endian), version 0.
pub const HEADER: [u8; 7] = [b':', b'W', b'&', b'B', 0xE1, 0xBE, 0];

/// Size of a block; chunks never cross a block boundary.
pub const BLOCK_SIZE: usize = 32 * 1024;

/// Size of a chunk header: checksum (u32 LE), length (u16 LE), type (u8).
pub const CHUNK_HEADER_LEN: usize = 7;

/// The type byte of a chunk: which part of a record it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkType {
    /// A whole record.
    Full = 1,
    /// The first part of a record that continues in the next block.
    First = 2,
    /// A middle part: the record started before and goes on after.
    Middle = 3,
    /// The last part of a record.
    Last = 4,
}

impl ChunkType {
    /// The chunk type for a type byte, if it is one.
    pub fn from_byte(b: u8) -> Option<ChunkType> {
        match b {
            1 => Some(ChunkType::Full),
            2 => Some(ChunkType::First),
            3 => Some(ChunkType::Middle),
            4 => Some(ChunkType::Last),
            _ => None,
        }
    }

    /// The type of the chunk that holds `payload[..]` given whether it holds the
    /// record's first and last bytes.
    pub(crate) fn of(first: bool, last: bool) -> ChunkType {
        match (first, last) {
            (true, true) => ChunkType::Full,
            (true, false) => ChunkType::First,
            (false, false) => ChunkType::Middle,
            (false, true) => ChunkType::Last,
        }
    }
}

/// The checksum of a chunk: plain CRC-32/IEEE (not CRC-32C, not masked) over
/// the type byte followed by the payload.
///
/// # Examples
///
/// ```
/// use ranklog::export::wandb::{checksum, ChunkType};
/// assert_eq!(checksum(ChunkType::Full, b"abc"), 0x539d20a9);
/// ```
pub fn checksum(kind: ChunkType, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind as u8]);
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_plain_crc32_ieee_of_type_then_payload() {
        // The check value from the issue: crc32(01 61 62 63).
        assert_eq!(checksum(ChunkType::Full, b"abc"), 0x539d20a9);
        // The standard CRC-32 check value, to pin the polynomial.
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf43926);
    }

    #[test]
    fn header_spells_wandb_magic_and_version() {
        assert_eq!(&HEADER[..4], b":W&B");
        assert_eq!(u16::from_le_bytes([HEADER[4], HEADER[5]]), 0xBEE1);
        assert_eq!(HEADER[6], 0);
    }
}

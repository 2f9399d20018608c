//! Constants and framing of `run.rlog`; the format itself is documented in [`super`].

/// First bytes of every run log.
pub const MAGIC: [u8; 8] = *b"RANKLOG\0";

/// Version of the run-log format; bumped whenever the bytes change meaning.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the file header: magic and version.
pub const HEADER_LEN: usize = MAGIC.len() + 4;

/// Size of a frame header: payload length and checksum.
pub const FRAME_HEADER_LEN: usize = 8;

/// Largest payload a frame may carry; a larger length marks the frame corrupt.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// The writer closes a frame once its payload reaches this size.
pub(crate) const TARGET_FRAME_LEN: usize = 256 << 10;

/// The file header.
pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..MAGIC.len()].copy_from_slice(&MAGIC);
    h[MAGIC.len()..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// The checksum of a frame: CRC32C over the length bytes, then the payload.
pub(crate) fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// Appends one complete frame holding `payload` to `out`.
pub(crate) fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len_bytes = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&checksum(len_bytes, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

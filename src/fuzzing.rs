//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Not part of the API: thin calls into the real decoders, which are private
//! to their modules, plus the encoders the seed generator uses to write real
//! messages. Normal builds do not contain this module.

use crate::export::wandb::{self, ChunkType, BLOCK_SIZE, CHUNK_HEADER_LEN};
use crate::store::{DamageKind, Reader, FRAME_HEADER_LEN, HEADER_LEN, MAX_FRAME_LEN};

pub use crate::queue::fuzz as queue;
pub use crate::sync::fuzz as mlflow;

/// Reads a run log from `data` to its end, as every reader of `run.rlog`
/// does, and checks what the reader promises whatever the bytes are:
/// records stop at the first damaged frame, which is reported inside the
/// file, and a log without damage is read to its last byte.
pub fn rlog_reader(data: &[u8]) -> usize {
    let Ok(mut reader) = Reader::new(data) else {
        return 0;
    };
    let mut records = 0usize;
    let mut last_offset = reader.offset();
    assert_eq!(last_offset, HEADER_LEN as u64);
    while let Some(record) = reader.next() {
        records += 1;
        // Every record came out of at least one payload byte.
        assert!(records <= data.len());
        let _ = format!("{record:?}");
        let offset = reader.offset();
        assert!(offset >= last_offset, "offset went back");
        assert!(offset <= data.len() as u64);
        last_offset = offset;
    }
    let end = reader.offset();
    assert!(end >= last_offset);
    assert!(end <= data.len() as u64);
    match reader.damage() {
        None => assert_eq!(end, data.len() as u64, "undamaged log not read to its end"),
        Some(d) => {
            assert!(d.offset >= HEADER_LEN as u64 && d.offset < data.len() as u64);
            if d.kind != DamageKind::BadRecord {
                assert_eq!(d.offset, end, "damage not where reading stopped");
            }
            let _ = d.to_string();
        }
    }
    // Once ended, the reader stays ended.
    assert!(reader.next().is_none());
    records
}

/// Reads a `.wandb` stream from `data` with ranklog's strict reader and
/// decodes every record as a `wandb_internal.Record`.
pub fn wandb_reader(data: &[u8]) {
    let mut reader = wandb::Reader::new(data);
    let mut total = 0usize;
    loop {
        match reader.next_record() {
            Ok(Some(payload)) => {
                total += payload.len();
                assert!(total <= data.len());
                assert!(reader.record_offset() < data.len() as u64);
                if let Ok(rec) = wandb::decode(&payload) {
                    let _ = format!("{rec:?}");
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = e.to_string();
                // After an error the reader has nothing more.
                assert!(matches!(reader.next_record(), Ok(None)));
                break;
            }
        }
    }
}

/// Writes `payloads` with the `.wandb` writer and reads them back: exactly
/// the same payloads must come out, and cutting the file anywhere (`cut`)
/// yields a prefix of them.
pub fn wandb_roundtrip(payloads: &[Vec<u8>], cut: usize) {
    let Ok(mut w) = wandb::Writer::new(Vec::new()) else {
        return;
    };
    for p in payloads {
        assert!(w.append(p).is_ok());
    }
    let n = w.bytes_written();
    let Ok(bytes) = w.into_inner() else {
        return;
    };
    assert_eq!(n, bytes.len() as u64);
    let mut reader = wandb::Reader::new(&bytes[..]);
    let mut got = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(p)) => got.push(p),
            Ok(None) => break,
            Err(e) => panic!("the reader refused what the writer wrote: {e}"),
        }
    }
    assert!(got == payloads, "round trip changed the payloads");
    let c = reader.chunk_counts();
    assert_eq!(c.full + c.first, payloads.len() as u64);
    assert_eq!(c.first, c.last);

    let cut = cut % (bytes.len() + 1);
    let mut reader = wandb::Reader::new(&bytes[..cut]);
    let mut i = 0;
    while let Ok(Some(p)) = reader.next_record() {
        assert!(
            i < payloads.len() && p == payloads[i],
            "a cut file gave a record that was not written"
        );
        i += 1;
    }
}

/// Rewrites the checksum of every complete frame of a run log so that a
/// mutated file reaches the record decoder: random bytes almost never carry a
/// valid CRC-32C. Stops at the first frame that is not complete.
pub fn fix_rlog_checksums(data: &mut [u8]) {
    let mut at = HEADER_LEN;
    while at + FRAME_HEADER_LEN <= data.len() {
        let len_bytes = [data[at], data[at + 1], data[at + 2], data[at + 3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let start = at + FRAME_HEADER_LEN;
        if len > MAX_FRAME_LEN || start + len > data.len() {
            return;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &data[start..start + len]);
        data[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = start + len;
    }
}

/// Rewrites the checksum of every chunk of a `.wandb` stream that fits its
/// block, walking the blocks as the reader does, so that mutated files get
/// past the checksums.
pub fn fix_wandb_checksums(data: &mut [u8]) {
    let mut pos = wandb::HEADER.len();
    while pos < data.len() {
        let left = BLOCK_SIZE - pos % BLOCK_SIZE;
        if left < CHUNK_HEADER_LEN {
            pos += left;
            continue;
        }
        if pos + CHUNK_HEADER_LEN > data.len() {
            return;
        }
        let len = usize::from(u16::from_le_bytes([data[pos + 4], data[pos + 5]]));
        let start = pos + CHUNK_HEADER_LEN;
        if start + len > data.len() || CHUNK_HEADER_LEN + len > left {
            return;
        }
        let Some(kind) = ChunkType::from_byte(data[pos + 6]) else {
            return;
        };
        let crc = wandb::checksum(kind, &data[start..start + len]);
        data[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = start + len;
    }
}

/// The `wandb_roundtrip` target: `data` read raw and with its checksums
/// fixed; the records read, plus one payload sized by the last bytes of
/// `data` (up to three blocks, so records cross block boundaries), written
/// and read back.
pub fn wandb_target(data: &[u8]) {
    wandb_reader(data);
    let mut fixed = data.to_vec();
    fix_wandb_checksums(&mut fixed);
    wandb_reader(&fixed);
    let mut payloads = Vec::new();
    let mut reader = wandb::Reader::new(&fixed[..]);
    while let Ok(Some(p)) = reader.next_record() {
        payloads.push(p);
    }
    let tail = |i: usize| {
        data.len()
            .checked_sub(i)
            .map_or(0, |j| usize::from(data[j]))
    };
    let len = (tail(1) | tail(2) << 8 | tail(3) << 16) % (3 * BLOCK_SIZE + 1);
    let seed = tail(4) as u8;
    payloads.push(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect(),
    );
    let cut = tail(5) | tail(6) << 8 | tail(7) << 16;
    wandb_roundtrip(&payloads, cut);
}

/// The `rlog_reader` target: `data` read raw, then with its checksums fixed.
pub fn rlog_target(data: &[u8]) {
    rlog_reader(data);
    let mut fixed = data.to_vec();
    fix_rlog_checksums(&mut fixed);
    rlog_reader(&fixed);
}

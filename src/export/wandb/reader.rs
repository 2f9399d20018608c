//! Reads the `.wandb` framing back, strictly: ranklog's own check of what its
//! writer produced, used by tests and fuzzing.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use prost::Message;

use super::framing::{checksum, ChunkType, BLOCK_SIZE, CHUNK_HEADER_LEN, HEADER};
use super::proto;
use crate::error::{Error, Result};

/// How many chunks of each type a [`Reader`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Whole records.
    pub full: u64,
    /// First parts of records that span blocks.
    pub first: u64,
    /// Middle parts.
    pub middle: u64,
    /// Last parts.
    pub last: u64,
    /// `FIRST` chunks with no payload (a record that met exactly 7 free bytes).
    pub empty_first: u64,
}

/// Reads the records of a `.wandb` stream: the payload bytes of each, in order.
///
/// Stricter than W&B's reader, which skips damage: any departure from the
/// framing ([`crate::export`] describes it) is an error, and iteration ends
/// after the first one. No input makes it panic.
///
/// # Examples
///
/// ```
/// use ranklog::export::wandb::{Reader, Writer};
/// let mut w = Writer::new(Vec::new())?;
/// w.append(b"one")?;
/// let bytes = w.into_inner()?;
/// let mut r = Reader::new(&bytes[..]);
/// assert_eq!(r.next_record()?, Some(b"one".to_vec()));
/// assert_eq!(r.next_record()?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Reader<R> {
    src: R,
    path: Option<PathBuf>,
    buf: Vec<u8>,
    /// Valid bytes in `buf`.
    n: usize,
    /// Offset in `buf` of the next chunk.
    pos: usize,
    /// File offset of `buf[0]`.
    block_start: u64,
    started: bool,
    failed: bool,
    /// File offset of the first chunk of the last record returned.
    record_offset: u64,
    counts: ChunkCounts,
}

impl Reader<BufReader<File>> {
    /// Opens a `.wandb` file.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] if the file cannot be opened.
    pub fn open(path: &Path) -> Result<Reader<BufReader<File>>> {
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut r = Reader::new(BufReader::new(file));
        r.path = Some(path.to_path_buf());
        Ok(r)
    }
}

impl<R: Read> Reader<R> {
    /// Reads a `.wandb` stream from `src`, which must start with the header.
    pub fn new(src: R) -> Reader<R> {
        Reader {
            src,
            path: None,
            buf: vec![0; BLOCK_SIZE],
            n: 0,
            pos: 0,
            block_start: 0,
            started: false,
            failed: false,
            record_offset: 0,
            counts: ChunkCounts::default(),
        }
    }

    /// File offset of the first chunk of the record last returned.
    pub fn record_offset(&self) -> u64 {
        self.record_offset
    }

    /// The chunks seen so far, by type.
    pub fn chunk_counts(&self) -> ChunkCounts {
        self.counts
    }

    /// The next record's payload; `None` at the end of the stream.
    ///
    /// # Errors
    ///
    /// [`Error::BadWandbLog`] where the bytes break the framing (header,
    /// checksum, chunk type or order, padding, a truncated chunk),
    /// [`Error::Read`] if reading fails.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>> {
        if self.failed {
            return Ok(None);
        }
        let out = self.read_record();
        if out.is_err() {
            self.failed = true;
        }
        out
    }

    fn read_record(&mut self) -> Result<Option<Vec<u8>>> {
        if !self.started {
            self.started = true;
            self.fill()?;
            if self.n < HEADER.len() || self.buf[..HEADER.len()] != HEADER {
                return Err(self.bad(
                    0,
                    "the file does not start with the W&B header (:W&B, 0xBEE1, version 0)",
                ));
            }
            self.pos = HEADER.len();
        }
        let mut record: Option<Vec<u8>> = None;
        loop {
            if self.n == BLOCK_SIZE && BLOCK_SIZE - self.pos < CHUNK_HEADER_LEN {
                if self.buf[self.pos..].iter().any(|&b| b != 0) {
                    return Err(self.bad(self.pos, "the tail of a block is not zero padding"));
                }
                self.block_start += BLOCK_SIZE as u64;
                self.fill()?;
                self.pos = 0;
                continue;
            }
            if self.pos == self.n {
                return match record {
                    None => Ok(None),
                    Some(_) => Err(self.bad(self.pos, "the file ends inside a record")),
                };
            }
            if self.n - self.pos < CHUNK_HEADER_LEN {
                return Err(self.bad(self.pos, "the file ends inside a chunk header"));
            }
            let at = self.pos;
            let h = &self.buf[at..at + CHUNK_HEADER_LEN];
            let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let len = usize::from(u16::from_le_bytes([h[4], h[5]]));
            let kind_byte = h[6];
            let start = at + CHUNK_HEADER_LEN;
            if start + len > self.n {
                let reason = if self.n == BLOCK_SIZE {
                    "a chunk crosses the block boundary"
                } else {
                    "the file ends inside a chunk"
                };
                return Err(self.bad(at, reason));
            }
            let Some(kind) = ChunkType::from_byte(kind_byte) else {
                return Err(self.bad(at, &format!("unknown chunk type {kind_byte}")));
            };
            let payload = &self.buf[start..start + len];
            if checksum(kind, payload) != crc {
                return Err(self.bad(at, "checksum mismatch"));
            }
            self.pos = start + len;
            if matches!(kind, ChunkType::Full | ChunkType::First) && record.is_none() {
                self.record_offset = self.block_start + at as u64;
            }
            match (kind, record.as_mut()) {
                (ChunkType::Full, None) => {
                    self.counts.full += 1;
                    return Ok(Some(payload.to_vec()));
                }
                (ChunkType::First, None) => {
                    self.counts.first += 1;
                    if len == 0 {
                        self.counts.empty_first += 1;
                    }
                    record = Some(payload.to_vec());
                }
                (ChunkType::Middle, Some(r)) => {
                    self.counts.middle += 1;
                    r.extend_from_slice(payload);
                }
                (ChunkType::Last, Some(r)) => {
                    self.counts.last += 1;
                    r.extend_from_slice(payload);
                    return Ok(record);
                }
                (ChunkType::Full | ChunkType::First, Some(_)) => {
                    return Err(self.bad(at, "a record starts before the previous one ended"));
                }
                (ChunkType::Middle | ChunkType::Last, None) => {
                    return Err(self.bad(at, "a continuation chunk without a first chunk"));
                }
            }
        }
    }

    /// Reads the next block into `buf`.
    fn fill(&mut self) -> Result<()> {
        let mut n = 0;
        while n < BLOCK_SIZE {
            match self.src.read(&mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Read {
                        path: self.path.clone().unwrap_or_default(),
                        source,
                    })
                }
            }
        }
        self.n = n;
        Ok(())
    }

    fn bad(&self, pos: usize, reason: &str) -> Error {
        Error::BadWandbLog {
            path: self.path.clone(),
            offset: self.block_start + pos as u64,
            reason: reason.to_string(),
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        self.next_record().transpose()
    }
}

/// Decodes one record payload as a `wandb_internal.Record`.
///
/// # Errors
///
/// [`Error::BadWandbLog`] if the bytes are not a valid protobuf message.
pub fn decode(payload: &[u8]) -> Result<proto::Record> {
    proto::Record::decode(payload).map_err(|e| Error::BadWandbLog {
        path: None,
        offset: 0,
        reason: format!("a record is not a wandb_internal.Record: {e}"),
    })
}

/// Reads and decodes every record of a `.wandb` file.
///
/// # Errors
///
/// As [`Reader::next_record`] and [`decode`].
pub fn read_file(path: &Path) -> Result<Vec<proto::Record>> {
    let mut reader = Reader::open(path)?;
    let mut out = Vec::new();
    while let Some(payload) = reader.next_record()? {
        out.push(decode(&payload).map_err(|e| match e {
            Error::BadWandbLog { reason, .. } => Error::BadWandbLog {
                path: Some(path.to_path_buf()),
                offset: reader.record_offset(),
                reason,
            },
            other => other,
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::writer::Writer;
    use super::*;
    use proptest::prelude::*;

    fn write(records: &[Vec<u8>]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        for r in records {
            w.append(r).unwrap();
        }
        w.into_inner().unwrap()
    }

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<Error>, ChunkCounts) {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(p)) => out.push(p),
                Ok(None) => return (out, None, r.chunk_counts()),
                Err(e) => return (out, Some(e), r.chunk_counts()),
            }
        }
    }

    #[test]
    fn reads_back_records_across_blocks_with_chunk_counts() {
        let records = vec![b"a".to_vec(), vec![5u8; 70_000], Vec::new(), b"z".to_vec()];
        let (got, err, counts) = read_all(&write(&records));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, records);
        assert_eq!(counts.first, 1);
        assert_eq!(counts.middle, 1);
        assert_eq!(counts.last, 1);
        assert_eq!(counts.full, 3);
    }

    #[test]
    fn reads_the_empty_first_chunk_of_the_seven_byte_rule() {
        let fill = BLOCK_SIZE - 7 - 7 - 7;
        let records = vec![vec![1u8; fill], b"next".to_vec()];
        let bytes = write(&records);
        let (got, err, counts) = read_all(&bytes);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, records);
        assert_eq!(counts.empty_first, 1);
        let mut r = Reader::new(&bytes[..]);
        r.next_record().unwrap();
        assert_eq!(r.record_offset(), 7);
        r.next_record().unwrap();
        assert_eq!(r.record_offset(), (BLOCK_SIZE - 7) as u64);
    }

    #[test]
    fn rejects_bad_header_checksum_and_truncation() {
        let bytes = write(&[b"hello".to_vec(), vec![3u8; 40_000]]);
        let mut bad = bytes.clone();
        bad[1] = b'X';
        assert!(matches!(
            read_all(&bad).1,
            Some(Error::BadWandbLog { offset: 0, .. })
        ));
        let mut bad = bytes.clone();
        bad[15] ^= 1; // inside the first payload
        let (got, err, _) = read_all(&bad);
        assert!(got.is_empty());
        assert!(
            matches!(err, Some(Error::BadWandbLog { offset: 7, .. })),
            "{err:?}"
        );
        let cut = &bytes[..bytes.len() - 1];
        let (got, err, _) = read_all(cut);
        assert_eq!(got, vec![b"hello".to_vec()]);
        assert!(err.is_some());
        let (got, err, _) = read_all(&bytes[..BLOCK_SIZE]);
        assert_eq!(got.len(), 1);
        assert!(
            err.is_some(),
            "a record cut at a block boundary is incomplete"
        );
    }

    #[test]
    fn rejects_non_zero_padding_and_trailing_bytes() {
        let fill = BLOCK_SIZE - 7 - 7 - 3; // leaves 3 bytes of padding
        let mut bytes = write(&[vec![1u8; fill], b"x".to_vec()]);
        bytes[BLOCK_SIZE - 2] = 9;
        assert!(read_all(&bytes).1.is_some());
        let mut bytes = write(&[b"x".to_vec()]);
        bytes.extend_from_slice(&[0, 0, 0]);
        let (got, err, _) = read_all(&bytes);
        assert_eq!(got.len(), 1);
        assert!(err.is_some());
    }

    #[test]
    fn decodes_records_written_with_prost() {
        let rec = proto::Record {
            num: 1,
            record_type: Some(proto::RecordType::Exit(proto::RunExitRecord {
                exit_code: 3,
                runtime: 9,
            })),
        };
        let bytes = write(&[rec.encode_to_vec()]);
        let (got, _, _) = read_all(&bytes);
        assert_eq!(decode(&got[0]).unwrap(), rec);
        assert!(decode(&[0xff, 0xff]).is_err());
    }

    /// `len` bytes of a cheap pseudo-random sequence.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn records_strategy(max_len: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec((0..max_len, any::<u64>()), 0..8).prop_map(|specs| {
            specs
                .into_iter()
                .map(|(len, seed)| bytes(len, seed))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_records_round_trip(records in records_strategy(3 * BLOCK_SIZE)) {
            let bytes = write(&records);
            let (got, err, _) = read_all(&bytes);
            prop_assert!(err.is_none());
            prop_assert_eq!(got, records);
        }

        #[test]
        fn lengths_near_block_ends_round_trip(
            first in (BLOCK_SIZE - 40)..BLOCK_SIZE,
            second in 0usize..2 * BLOCK_SIZE,
        ) {
            let records = vec![vec![0xAB; first - 14], vec![0xCD; second], b"end".to_vec()];
            let (got, err, _) = read_all(&write(&records));
            prop_assert!(err.is_none());
            prop_assert_eq!(got, records);
        }

        #[test]
        fn damaged_input_never_panics_and_yields_a_prefix(
            records in records_strategy(50_000),
            cut in any::<proptest::sample::Index>(),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let bytes = write(&records);
            let cut_at = cut.index(bytes.len() + 1);
            let (got, _, _) = read_all(&bytes[..cut_at]);
            prop_assert!(got.len() <= records.len());
            prop_assert_eq!(&got[..], &records[..got.len()]);
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            let (got, _, _) = read_all(&flipped);
            // A flip in a payload or a header is caught by the checksum or the
            // framing rules, so whatever is returned is what was written.
            prop_assert!(got.len() <= records.len());
            for (g, r) in got.iter().zip(&records) {
                prop_assert_eq!(g, r);
            }
        }
    }
}

//! Writes the `.wandb` framing: records cut into chunks inside 32 KiB blocks.

use std::io::{self, Write};

use super::framing::{checksum, ChunkType, BLOCK_SIZE, CHUNK_HEADER_LEN, HEADER};

/// Writes records (already encoded payloads) in W&B's LevelDB-log framing.
///
/// The bytes are those W&B's own Go writer produces for the same payloads:
/// the 7-byte header, then each record as one `FULL` chunk or as `FIRST`,
/// `MIDDLE`…, `LAST` chunks, a block tail shorter than a chunk header padded
/// with zeros, and a record that meets exactly 7 free bytes starting with an
/// empty `FIRST` chunk. Nothing is padded after the last record.
///
/// # Examples
///
/// ```
/// use ranklog::export::wandb::{Reader, Writer};
/// let mut w = Writer::new(Vec::new())?;
/// w.append(b"hello")?;
/// w.append(&vec![7u8; 100_000])?; // spans four blocks
/// let bytes = w.into_inner()?;
/// let records: Vec<Vec<u8>> = Reader::new(&bytes[..]).collect::<Result<_, _>>()?;
/// assert_eq!(records.len(), 2);
/// assert_eq!(records[1].len(), 100_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    /// Offset in the current block of the next byte.
    in_block: usize,
    /// Bytes written so far, header included.
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Starts a `.wandb` stream on `out` by writing its header.
    ///
    /// # Errors
    ///
    /// The error of `out`.
    pub fn new(mut out: W) -> io::Result<Writer<W>> {
        out.write_all(&HEADER)?;
        Ok(Writer {
            out,
            in_block: HEADER.len(),
            written: HEADER.len() as u64,
        })
    }

    /// Appends one record.
    ///
    /// # Errors
    ///
    /// The error of the underlying writer; the stream is then unusable.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut rest = payload;
        let mut first = true;
        loop {
            let left = BLOCK_SIZE - self.in_block;
            if left < CHUNK_HEADER_LEN {
                const ZEROS: [u8; CHUNK_HEADER_LEN] = [0; CHUNK_HEADER_LEN];
                self.out.write_all(&ZEROS[..left])?;
                self.written += left as u64;
                self.in_block = 0;
                continue;
            }
            let n = rest.len().min(left - CHUNK_HEADER_LEN);
            let last = n == rest.len();
            let kind = ChunkType::of(first, last);
            let (chunk, tail) = rest.split_at(n);
            let mut head = [0u8; CHUNK_HEADER_LEN];
            head[..4].copy_from_slice(&checksum(kind, chunk).to_le_bytes());
            // n < BLOCK_SIZE, so it fits in a u16.
            head[4..6].copy_from_slice(&(n as u16).to_le_bytes());
            head[6] = kind as u8;
            self.out.write_all(&head)?;
            self.out.write_all(chunk)?;
            self.in_block += CHUNK_HEADER_LEN + n;
            self.written += (CHUNK_HEADER_LEN + n) as u64;
            rest = tail;
            first = false;
            if last {
                return Ok(());
            }
        }
    }

    /// Bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    ///
    /// The error of the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    ///
    /// The error of the final flush.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(bytes: &[u8]) -> Vec<(usize, u8, usize)> {
        // (offset, type, length) of every chunk, walking blocks like a reader.
        let mut out = Vec::new();
        let mut pos = HEADER.len();
        while pos < bytes.len() {
            let in_block = pos % BLOCK_SIZE;
            if BLOCK_SIZE - in_block < CHUNK_HEADER_LEN {
                assert!(bytes[pos..pos + BLOCK_SIZE - in_block]
                    .iter()
                    .all(|&b| b == 0));
                pos += BLOCK_SIZE - in_block;
                continue;
            }
            let len = u16::from_le_bytes([bytes[pos + 4], bytes[pos + 5]]) as usize;
            out.push((pos, bytes[pos + 6], len));
            pos += CHUNK_HEADER_LEN + len;
        }
        assert_eq!(pos, bytes.len());
        out
    }

    fn write(records: &[Vec<u8>]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        for r in records {
            w.append(r).unwrap();
        }
        let n = w.bytes_written();
        let bytes = w.into_inner().unwrap();
        assert_eq!(n, bytes.len() as u64);
        bytes
    }

    #[test]
    fn small_record_is_one_full_chunk_after_the_header() {
        let bytes = write(&[b"abc".to_vec()]);
        assert_eq!(&bytes[..7], &HEADER);
        assert_eq!(&bytes[7..11], &0x539d20a9u32.to_le_bytes());
        assert_eq!(&bytes[11..14], &[3, 0, 1]);
        assert_eq!(&bytes[14..], b"abc");
    }

    #[test]
    fn large_record_is_first_middle_last() {
        let bytes = write(&[vec![9u8; 3 * BLOCK_SIZE]]);
        let c = chunks(&bytes);
        let kinds: Vec<u8> = c.iter().map(|x| x.1).collect();
        assert_eq!(kinds, vec![2, 3, 3, 4]);
        // The first chunk fills the first block, which is 7 bytes short.
        assert_eq!(c[0].2, BLOCK_SIZE - 7 - 7);
        assert!(c[1..].iter().all(|x| x.0 % BLOCK_SIZE == 0));
        assert_eq!(c.iter().map(|x| x.2).sum::<usize>(), 3 * BLOCK_SIZE);
    }

    #[test]
    fn exactly_seven_bytes_left_starts_with_an_empty_first_chunk() {
        // Header 7 + chunk header 7 + payload leaves exactly 7 bytes.
        let fill = BLOCK_SIZE - 7 - 7 - 7;
        let bytes = write(&[vec![1u8; fill], b"next".to_vec()]);
        let c = chunks(&bytes);
        assert_eq!(
            c,
            vec![(7, 1, fill), (BLOCK_SIZE - 7, 2, 0), (BLOCK_SIZE, 4, 4)]
        );
        // The empty chunk has the checksum of its type byte alone.
        let at = BLOCK_SIZE - 7;
        assert_eq!(
            &bytes[at..at + 4],
            &checksum(ChunkType::First, &[]).to_le_bytes()
        );
    }

    #[test]
    fn fewer_than_seven_bytes_left_are_zero_padding() {
        for left in 0..7 {
            let fill = BLOCK_SIZE - 7 - 7 - left;
            let bytes = write(&[vec![1u8; fill], b"next".to_vec()]);
            let c = chunks(&bytes);
            assert_eq!(c, vec![(7, 1, fill), (BLOCK_SIZE, 1, 4)], "left {left}");
            assert!(bytes[BLOCK_SIZE - left..BLOCK_SIZE].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn record_ending_at_a_block_boundary_is_not_followed_by_padding() {
        let fill = BLOCK_SIZE - 7 - 7;
        let bytes = write(&[vec![1u8; fill]]);
        assert_eq!(bytes.len(), BLOCK_SIZE);
        assert_eq!(chunks(&bytes), vec![(7, 1, fill)]);
    }

    #[test]
    fn empty_record_is_an_empty_full_chunk() {
        let bytes = write(&[Vec::new()]);
        assert_eq!(bytes.len(), 14);
        assert_eq!(chunks(&bytes), vec![(7, 1, 0)]);
    }
}

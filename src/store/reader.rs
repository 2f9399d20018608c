//! Reads a run log back, stopping cleanly at a torn or corrupt tail.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::format::{self, FRAME_HEADER_LEN, HEADER_LEN, MAGIC, MAX_FRAME_LEN};
use crate::error::{Error, Result};
use crate::record::Record;

/// Where and how a run log stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first frame that could not be read.
    pub offset: u64,
    /// What is wrong with it.
    pub kind: DamageKind,
}

/// What is wrong with the first unreadable frame of a run log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageKind {
    /// The file ends inside a frame: a write was cut short (normal while a
    /// run is being written, or after a crash).
    TornTail,
    /// The frame's checksum does not match its bytes.
    Checksum,
    /// The frame claims a length larger than any frame ranklog writes.
    Oversized,
    /// The checksum matches but a record inside cannot be decoded.
    BadRecord,
    /// Reading the file failed.
    Io,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DamageKind::TornTail => "torn tail (incomplete frame)",
            DamageKind::Checksum => "corrupt frame (checksum mismatch)",
            DamageKind::Oversized => "corrupt frame (impossible length)",
            DamageKind::BadRecord => "undecodable record",
            DamageKind::Io => "read error",
        };
        write!(f, "{what} at byte {}", self.offset)
    }
}

/// Reads the [`Record`]s of a run log in order.
///
/// Iteration ends at the end of the file or at the first frame that cannot be
/// read; [`Reader::damage`] then says where and why. Every record before that
/// point is returned, and no byte string makes the reader panic.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ranklog::{Mode, Settings, store::Reader};
/// let run = ranklog::init(Settings::new().dir(dir.path()).mode(Mode::Offline).silent(true))?;
/// run.log([("loss", 0.5)])?;
/// let run_dir = run.dir().map(|d| d.to_path_buf()).ok_or("offline runs have a directory")?;
/// run.finish()?;
/// let mut reader = Reader::open(&run_dir.join("run.rlog"))?;
/// let records: Vec<_> = reader.by_ref().collect();
/// assert!(reader.damage().is_none());
/// assert!(records.len() >= 3); // start, key, row, ..., exit
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Reader<R = BufReader<File>> {
    src: R,
    /// Offset of the next frame in the file.
    offset: u64,
    /// Records of the current frame not yet returned.
    payload: Vec<u8>,
    pos: usize,
    /// Offset of the frame `payload` came from.
    frame_offset: u64,
    damage: Option<Damage>,
    done: bool,
}

impl Reader {
    /// Opens a run log file.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] if the file cannot be opened, [`Error::NotARunLog`] if
    /// its header is not a ranklog header of a supported version.
    pub fn open(path: &Path) -> Result<Reader> {
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Reader::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| e.at(path))
    }

    /// Opens a run log and positions it at `offset`, which must be the end of
    /// a frame as reported by [`Reader::offset`] (or the end of the header).
    ///
    /// # Errors
    ///
    /// As [`Reader::open`], or [`Error::Read`] if the offset is past the header
    /// but cannot be reached.
    pub fn open_at(path: &Path, offset: u64) -> Result<Reader> {
        let mut reader = Reader::open(path)?;
        if offset > HEADER_LEN as u64 {
            reader
                .src
                .seek(SeekFrom::Start(offset))
                .map_err(|source| Error::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
            reader.offset = offset;
        }
        Ok(reader)
    }
}

/// Why a header was rejected, before the path is known.
#[derive(Debug)]
pub struct HeaderError(String);

impl HeaderError {
    fn at(self, path: &Path) -> Error {
        Error::NotARunLog {
            path: path.to_path_buf(),
            reason: self.0,
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HeaderError {}

impl<R: Read> Reader<R> {
    /// Reads the header from `src` and returns a reader of its records.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] if the header is missing, not ranklog's, or of an
    /// unsupported version.
    pub fn new(mut src: R) -> std::result::Result<Reader<R>, HeaderError> {
        let mut header = [0u8; HEADER_LEN];
        read_full(&mut src, &mut header)
            .map_err(|e| HeaderError(format!("cannot read the header: {e}")))
            .and_then(|n| {
                if n < HEADER_LEN && header[..n] == format::header()[..n] {
                    Err(HeaderError(format!(
                        "the file ends inside its {HEADER_LEN}-byte header ({n} bytes)"
                    )))
                } else {
                    Ok(())
                }
            })?;
        if header[..MAGIC.len()] != MAGIC {
            return Err(HeaderError(
                "the file does not start with ranklog's magic bytes".into(),
            ));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&header[MAGIC.len()..]);
        let version = u32::from_le_bytes(v);
        if version != format::FORMAT_VERSION {
            return Err(HeaderError(format!(
                "format version {version}, this ranklog reads version {}; use a matching ranklog",
                format::FORMAT_VERSION
            )));
        }
        Ok(Reader {
            src,
            offset: HEADER_LEN as u64,
            payload: Vec::new(),
            pos: 0,
            frame_offset: 0,
            damage: None,
            done: false,
        })
    }

    /// Where the log stopped being readable, if it did.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// Offset just past the last frame whose records were all returned.
    pub fn offset(&self) -> u64 {
        if self.pos < self.payload.len() {
            self.frame_offset
        } else {
            self.offset
        }
    }

    /// Reads the next frame into `payload`; false at the end or on damage.
    fn next_frame(&mut self) -> bool {
        let start = self.offset;
        let mut head = [0u8; FRAME_HEADER_LEN];
        match read_full(&mut self.src, &mut head) {
            Ok(0) => return false,
            Ok(n) if n < FRAME_HEADER_LEN => return self.damaged(start, DamageKind::TornTail),
            Ok(_) => {}
            Err(_) => return self.damaged(start, DamageKind::Io),
        }
        let len_bytes = [head[0], head[1], head[2], head[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME_LEN {
            return self.damaged(start, DamageKind::Oversized);
        }
        self.payload.clear();
        self.payload.reserve(len);
        // read_to_end fills the spare capacity without zeroing it first.
        match (&mut self.src)
            .take(len as u64)
            .read_to_end(&mut self.payload)
        {
            Ok(n) if n < len => return self.damaged(start, DamageKind::TornTail),
            Ok(_) => {}
            Err(_) => return self.damaged(start, DamageKind::Io),
        }
        if format::checksum(len_bytes, &self.payload) != crc {
            return self.damaged(start, DamageKind::Checksum);
        }
        self.frame_offset = start;
        self.offset = start + (FRAME_HEADER_LEN + len) as u64;
        self.pos = 0;
        true
    }

    fn damaged(&mut self, offset: u64, kind: DamageKind) -> bool {
        self.damage = Some(Damage { offset, kind });
        self.payload.clear();
        self.pos = 0;
        false
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        while !self.done {
            if self.pos < self.payload.len() {
                match postcard::take_from_bytes::<Record>(&self.payload[self.pos..]) {
                    Ok((record, rest)) => {
                        self.pos = self.payload.len() - rest.len();
                        return Some(record);
                    }
                    Err(_) => {
                        let at = self.frame_offset;
                        self.damaged(at, DamageKind::BadRecord);
                        self.done = true;
                    }
                }
            } else if !self.next_frame() {
                self.done = true;
            }
        }
        None
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

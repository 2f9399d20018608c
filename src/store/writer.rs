//! Appends records to a run log.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, TARGET_FRAME_LEN};
use crate::error::{Error, Result};
use crate::record::Record;

/// Appends [`Record`]s to a run log, in frames.
///
/// `append` only encodes into memory; `flush` hands whole frames to the OS and
/// `sync` also waits for the disk. A failed flush leaves the file exactly as it
/// was before it (a partial write is cut off again) and keeps the frames, so a
/// later flush can retry them: a full disk costs nothing already on disk.
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    /// End of the last frame known to be in the file.
    offset: u64,
    /// Sealed frames not yet written.
    out: Vec<u8>,
    /// Records of the frame being filled.
    payload: Vec<u8>,
    /// Records in `out` and `payload`.
    unwritten: u64,
    /// Encoding space for one record.
    scratch: Vec<u8>,
}

impl Writer {
    /// Creates a new run log at `path`; fails if the file exists.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] if the file exists or cannot be created.
    pub fn create(path: &Path) -> Result<Writer> {
        let write_err = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(write_err)?;
        let header = format::header();
        file.write_all_at(&header, 0).map_err(write_err)?;
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            offset: header.len() as u64,
            out: Vec::new(),
            payload: Vec::with_capacity(TARGET_FRAME_LEN),
            unwritten: 0,
            scratch: Vec::with_capacity(256),
        })
    }

    /// Encodes a record into the frame being filled; does no I/O.
    pub fn append(&mut self, record: &Record) {
        // Encode into scratch space first, so a failure cannot touch the
        // records already in the frame. It cannot fail for our types
        // (postcard fails only on full fixed buffers); the record is skipped
        // if it ever does.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        match postcard::to_extend(record, scratch) {
            Ok(bytes) => {
                self.payload.extend_from_slice(&bytes);
                self.scratch = bytes;
            }
            Err(e) => {
                tracing::error!(error = %e, "ranklog: could not encode a record; it is skipped");
                return;
            }
        }
        self.unwritten += 1;
        if self.payload.len() >= TARGET_FRAME_LEN {
            self.seal();
        }
    }

    /// Writes every complete record to the file (not necessarily to the disk).
    ///
    /// # Errors
    ///
    /// The I/O error; the file is left as it was and the data is kept for the
    /// next call.
    pub fn flush(&mut self) -> io::Result<()> {
        self.seal();
        if self.out.is_empty() {
            return Ok(());
        }
        match self.file.write_all_at(&self.out, self.offset) {
            Ok(()) => {
                self.offset += self.out.len() as u64;
                self.out.clear();
                self.unwritten = 0;
                Ok(())
            }
            Err(e) => {
                // Cut off a partial write so the log never holds a torn frame
                // in its middle; retrying appends the whole frames again.
                let _ = self.file.set_len(self.offset);
                Err(e)
            }
        }
    }

    /// Flushes, then waits until the file's data is on the disk.
    ///
    /// # Errors
    ///
    /// The I/O error of the flush or of `fsync`.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    /// Byte offset of the end of the data written to the file so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes encoded but not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.out.len() + self.payload.len()
    }

    /// Records appended but not yet written.
    pub fn pending_records(&self) -> u64 {
        self.unwritten
    }

    /// Forgets every record not yet written; returns how many there were.
    pub fn discard_pending(&mut self) -> u64 {
        self.out.clear();
        self.payload.clear();
        std::mem::take(&mut self.unwritten)
    }

    /// The path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn seal(&mut self) {
        if !self.payload.is_empty() {
            format::push_frame(&mut self.out, &self.payload);
            self.payload.clear();
        }
    }
}

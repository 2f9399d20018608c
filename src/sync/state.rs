//! `sync.json`: what the tracking server has acknowledged of a run, and the
//! lock that keeps two uploaders off one run.
//!
//! # Format
//!
//! ```json
//! {"server": "http://127.0.0.1:5000", "experiment_id": "1", "remote_run_id": "4f…",
//!  "acked_offset": 123456, "status": "FINISHED"}
//! ```
//!
//! `acked_offset` is the end of a frame of `run.rlog`: every record before it
//! is on the server. `status` is set once the remote run's end was recorded
//! (`FINISHED`, `FAILED` or `KILLED`). The file is replaced atomically
//! (written to a temporary file, then renamed) and only after the server
//! answered, so a crash at any point leaves the previous, still true state.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the upload state file in a run directory.
pub const SYNC_FILE: &str = "sync.json";
/// Name of the lock file an uploader holds in a run directory.
pub const LOCK_FILE: &str = "sync.lock";

/// The content of `sync.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The tracking server these ids belong to.
    pub server: String,
    /// The experiment of the remote run.
    pub experiment_id: Option<String>,
    /// The remote run.
    pub remote_run_id: Option<String>,
    /// Bytes of `run.rlog` the server has acknowledged (a frame boundary).
    pub acked_offset: u64,
    /// The status the remote run was ended with, once it was.
    pub status: Option<String>,
}

impl SyncState {
    /// Reads `<dir>/sync.json`; `None` if the run was never uploaded.
    ///
    /// # Errors
    ///
    /// [`Error::Read`]/[`Error::BadJson`] if the file exists but cannot be read.
    pub fn load(dir: &Path) -> Result<Option<SyncState>> {
        let path = dir.join(SYNC_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::BadJson { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Replaces `<dir>/sync.json` atomically.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SYNC_FILE);
        let tmp = dir.join(format!(".{SYNC_FILE}.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        fs::write(&tmp, &text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| Error::Write { path, source })
    }
}

/// An exclusive lock on a run's upload, released when dropped.
#[derive(Debug)]
pub(crate) struct UploadLock {
    _file: File,
}

impl UploadLock {
    /// Takes the lock without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::SyncInProgress`] if another uploader holds it, [`Error::Write`]
    /// if the lock file cannot be created.
    pub(crate) fn try_acquire(dir: &Path) -> Result<UploadLock> {
        let path: PathBuf = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::SyncInProgress {
                    dir: dir.to_path_buf(),
                });
            }
            return Err(Error::Write { path, source: err });
        }
        Ok(UploadLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_absent_is_none() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })?;
        assert_eq!(SyncState::load(dir.path())?, None);
        let s = SyncState {
            server: "http://h".into(),
            experiment_id: Some("1".into()),
            remote_run_id: Some("r".into()),
            acked_offset: 42,
            status: None,
        };
        s.save(dir.path())?;
        assert_eq!(SyncState::load(dir.path())?, Some(s));
        Ok(())
    }

    #[test]
    fn lock_is_exclusive() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })?;
        let first = UploadLock::try_acquire(dir.path())?;
        assert!(matches!(
            UploadLock::try_acquire(dir.path()),
            Err(Error::SyncInProgress { .. })
        ));
        drop(first);
        UploadLock::try_acquire(dir.path())?;
        Ok(())
    }
}

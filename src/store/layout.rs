//! Where runs live under a root directory, and how to find them again.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::meta::{self, Meta, LOG_FILE, META_FILE};
use crate::error::{Error, Result};

/// Name of the symbolic link to the newest run in a root.
pub const LATEST_LINK: &str = "latest-run";

/// Folder of a root that holds ranklog's own bookkeeping.
const STATE_DIR: &str = ".ranklog";

/// The directory name of a run: `run-YYYYMMDD_HHMMSS-<id>` (UTC).
pub fn run_dir_name(start: time::OffsetDateTime, id: &str) -> String {
    let f = time::macros::format_description!("[year][month][day]_[hour][minute][second]");
    let stamp = start
        .format(&f)
        .unwrap_or_else(|_| "00000000_000000".to_string());
    format!("run-{stamp}-{id}")
}

/// The run id encoded in a run directory name, if it is one.
pub fn id_from_dir_name(name: &str) -> Option<&str> {
    // `run-YYYYMMDD_HHMMSS-<id>`: the stamp has a fixed width, and ids may
    // themselves contain '-'.
    let rest = name.strip_prefix("run-")?;
    let (stamp, id) = (rest.get(..15)?, rest.get(16..)?);
    let ok = rest.as_bytes().get(15) == Some(&b'-')
        && stamp.bytes().enumerate().all(|(i, b)| {
            if i == 8 {
                b == b'_'
            } else {
                b.is_ascii_digit()
            }
        });
    (ok && !id.is_empty()).then_some(id)
}

/// Creates `root` (if needed) and the directory of a new run in it.
///
/// # Errors
///
/// [`Error::RunIdExists`] if a run with `id` is already in `root`,
/// [`Error::Write`] if a directory cannot be created.
pub(crate) fn create_run_dir(
    root: &Path,
    start: time::OffsetDateTime,
    id: &str,
) -> Result<PathBuf> {
    fs::create_dir_all(root).map_err(|source| Error::Write {
        path: root.to_path_buf(),
        source,
    })?;
    if let Some(existing) = find_by_id(root, id)? {
        return Err(Error::RunIdExists {
            id: id.to_string(),
            dir: existing,
        });
    }
    let dir = root.join(run_dir_name(start, id));
    fs::create_dir(&dir).map_err(|source| Error::Write {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Points `<root>/latest-run` at `dir`, replacing the previous link atomically.
pub(crate) fn update_latest(root: &Path, dir: &Path) {
    let Some(name) = dir.file_name() else { return };
    let tmp = root.join(format!(".{LATEST_LINK}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let linked = std::os::unix::fs::symlink(name, &tmp)
        .and_then(|()| fs::rename(&tmp, root.join(LATEST_LINK)));
    if let Err(e) = linked {
        let _ = fs::remove_file(&tmp);
        tracing::debug!(error = %e, "ranklog: could not update {LATEST_LINK}");
    }
}

/// Takes the next number of a project's run names in `root`: 1, 2, 3, …
///
/// The count is kept in `<root>/.ranklog/counters/<project>` under an
/// exclusive lock, so concurrent runs get distinct numbers.
pub(crate) fn next_name_number(root: &Path, project: &str) -> Result<u64> {
    let dir = root.join(STATE_DIR).join("counters");
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let path = dir.join(project);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(write_err(&path))?;
    // SAFETY: flock on a valid open descriptor; released when `file` closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(write_err(&path)(std::io::Error::last_os_error()));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(write_err(&path))?;
    let next = text.trim().parse::<u64>().unwrap_or(0) + 1;
    file.seek(SeekFrom::Start(0)).map_err(write_err(&path))?;
    file.set_len(0).map_err(write_err(&path))?;
    file.write_all(next.to_string().as_bytes())
        .map_err(write_err(&path))?;
    Ok(next)
}

/// The directories of every run under `root`, in name order (oldest first).
///
/// # Errors
///
/// [`Error::Read`] if `root` exists but cannot be listed. A missing root has no runs.
pub fn run_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: root.to_path_buf(),
                source,
            })
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter(|e| e.file_name().to_str().and_then(id_from_dir_name).is_some())
        .map(|e| e.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn find_by_id(root: &Path, id: &str) -> Result<Option<PathBuf>> {
    Ok(run_dirs(root)?.into_iter().find(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .and_then(id_from_dir_name)
            == Some(id)
    }))
}

/// Finds a run by path, id or name (in that order); names must be unique.
///
/// # Errors
///
/// [`Error::RunNotFound`] when nothing matches, [`Error::AmbiguousRun`] when a
/// name matches several runs.
pub fn resolve_run(root: &Path, query: &str) -> Result<PathBuf> {
    let as_path = Path::new(query);
    if as_path.join(LOG_FILE).is_file() {
        return Ok(as_path.to_path_buf());
    }
    if query == LATEST_LINK {
        let link = root.join(LATEST_LINK);
        if link.join(LOG_FILE).is_file() {
            return Ok(fs::canonicalize(&link).unwrap_or(link));
        }
    }
    if let Some(dir) = find_by_id(root, query)? {
        return Ok(dir);
    }
    let named: Vec<PathBuf> = run_dirs(root)?
        .into_iter()
        .filter(|d| {
            meta::read_json::<Meta>(&d.join(META_FILE))
                .map(|m| m.name == query)
                .unwrap_or(false)
        })
        .collect();
    match named.len() {
        1 => Ok(named.into_iter().next().unwrap_or_default()),
        0 => Err(Error::RunNotFound {
            query: query.to_string(),
            root: root.to_path_buf(),
        }),
        count => Err(Error::AmbiguousRun {
            query: query.to_string(),
            count,
            root: root.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_name_round_trips_the_id() {
        let t = time::macros::datetime!(2026-11-26 11:12:13 UTC);
        let name = run_dir_name(t, "ab12cd34");
        assert_eq!(name, "run-20261126_111213-ab12cd34");
        assert_eq!(id_from_dir_name(&name), Some("ab12cd34"));
        assert_eq!(id_from_dir_name("latest-run"), None);
        // Ids may contain '-' (found by the W&B export's grouped runs, #7).
        let name = run_dir_name(t, "job42-rank0");
        assert_eq!(id_from_dir_name(&name), Some("job42-rank0"));
        assert_eq!(id_from_dir_name("run-2026_1126-x"), None);
    }

    #[test]
    fn name_numbers_count_per_project() -> Result<()> {
        let root = tempfile::tempdir().map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })?;
        assert_eq!(next_name_number(root.path(), "a")?, 1);
        assert_eq!(next_name_number(root.path(), "a")?, 2);
        assert_eq!(next_name_number(root.path(), "b")?, 1);
        Ok(())
    }

    #[test]
    fn create_refuses_existing_id() -> Result<()> {
        let root = tempfile::tempdir().map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })?;
        let t = time::OffsetDateTime::now_utc();
        create_run_dir(root.path(), t, "sameid00")?;
        let again = create_run_dir(root.path(), t + time::Duration::seconds(5), "sameid00");
        assert!(matches!(again, Err(Error::RunIdExists { .. })));
        Ok(())
    }
}

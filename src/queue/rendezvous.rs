//! The private folder where rank 0 publishes one ipc server name per worker.
//!
//! Ranks started by torchrun or `ranklog launch` are siblings, so rank 0
//! cannot hand a channel to a child. Instead it creates, for each worker r, a
//! one-shot ipc server and writes its name to `<folder>/rank-<r>` (written to
//! a temporary file, then renamed, so a reader never sees half a name). The
//! folder is created with mode 0700 and refused if another user owns it or
//! others can enter it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Creates (or checks) the rendezvous folder.
pub(crate) fn prepare(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to this user ({me})",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn name_file(dir: &Path, rank: u32) -> PathBuf {
    dir.join(format!("rank-{rank}"))
}

/// Removes names left by an earlier job of the same group.
pub(crate) fn clear(dir: &Path, rank: u32) {
    let _ = fs::remove_file(name_file(dir, rank));
}

/// Publishes the server name for worker `rank`.
pub(crate) fn publish(dir: &Path, rank: u32, name: &str) -> io::Result<()> {
    let tmp = dir.join(format!(".rank-{rank}.{}", std::process::id()));
    fs::write(&tmp, name)?;
    fs::rename(&tmp, name_file(dir, rank))
}

/// Reads the server name published for `rank`, waiting until `deadline`.
/// Names already tried (and found dead) are skipped.
pub(crate) fn wait_for_name(
    dir: &Path,
    rank: u32,
    deadline: Instant,
    tried: &[String],
) -> Option<String> {
    loop {
        if let Ok(name) = fs::read_to_string(name_file(dir, rank)) {
            let name = name.trim().to_string();
            if !name.is_empty() && !tried.contains(&name) {
                return Some(name);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_private_and_names_are_published_whole() -> io::Result<()> {
        let base = tempfile::tempdir()?;
        let dir = base.path().join("g");
        prepare(&dir)?;
        assert_eq!(fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        publish(&dir, 3, "/tmp/socket-name")?;
        let got = wait_for_name(&dir, 3, Instant::now(), &[]);
        assert_eq!(got.as_deref(), Some("/tmp/socket-name"));
        assert_eq!(
            wait_for_name(&dir, 3, Instant::now(), &["/tmp/socket-name".into()]),
            None
        );
        Ok(())
    }
}

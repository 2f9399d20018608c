//! Helpers shared by the behaviour tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ranklog` binary built for these tests.
pub fn ranklog_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ranklog"))
}

/// Runs `ranklog ARGS` with `RANKLOG_DIR` unset, returning its output.
pub fn ranklog(args: &[&str]) -> Output {
    let out = Command::new(ranklog_bin())
        .args(args)
        .env_remove("RANKLOG_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run ranklog {args:?}: {e}"));
    out
}

/// Panics with the command's stdout and stderr unless it succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh temporary root for runs.
pub fn temp_root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"))
}

/// The only run directory under `root`.
pub fn only_run(root: &Path) -> PathBuf {
    let dirs = ranklog::store::run_dirs(root).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dirs.len(), 1, "expected one run under {}", root.display());
    dirs[0].clone()
}

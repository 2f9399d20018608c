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

/// Offline settings for a test: its own root, silent, no git, new runs beside others.
pub fn offline(root: &Path) -> ranklog::Settings {
    ranklog::Settings::new()
        .dir(root)
        .mode(ranklog::Mode::Offline)
        .silent(true)
        .capture_git(false)
        .reinit(ranklog::Reinit::CreateNew)
}

/// The variable that tells a child test it was started by a parent test.
pub const CHILD_VAR: &str = "RANKLOG_TEST_CHILD";

/// Whether this process is a child started by [`child`]; child tests return
/// at once otherwise.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// Starts this test binary again, running only the test `name` (a full path
/// such as `runs::child_reinit`), with extra environment and working directory.
pub fn child(name: &str, env: &[(&str, &str)], cwd: Option<&Path>) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_VAR, "1")
    .env_remove("RANKLOG_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd
}

/// Runs a child test to completion and checks that it ran and passed.
pub fn run_child(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert_success(&out, what);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 passed"), "{what} did not run:\n{stdout}");
}

/// All records of a run directory's log.
pub fn records(dir: &Path) -> Vec<ranklog::Record> {
    let mut reader =
        ranklog::store::Reader::open(&dir.join("run.rlog")).unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<_> = reader.by_ref().collect();
    assert!(
        reader.damage().is_none(),
        "damaged log: {:?}",
        reader.damage()
    );
    records
}

/// The history rows of a run as (step, [(key, value)]), keys resolved.
pub fn rows(dir: &Path) -> Vec<(u64, Vec<(String, f64)>)> {
    let mut keys = std::collections::HashMap::new();
    let mut out = Vec::new();
    for r in records(dir) {
        match r {
            ranklog::Record::Key { id, name } => {
                keys.insert(id, name);
            }
            ranklog::Record::History(row) => out.push((
                row.step,
                row.values
                    .iter()
                    .map(|(id, v)| (keys[id].clone(), *v))
                    .collect(),
            )),
            _ => {}
        }
    }
    out
}

/// Reads one HTTP/1.1 request from `stream`: its path and its body.
pub fn read_http_request(stream: &std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream);
    let mut request = String::new();
    // Not HTTP (a TLS hello is not text): answer at once, never wait for more.
    if reader.read_line(&mut request).is_err() {
        return (String::new(), Vec::new());
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    (path, body)
}

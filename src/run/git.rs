//! Captures the git state of the working directory, with a time bound.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::record::GitInfo;

/// Longest one `git` command may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `git diff` saved to `diff.patch`.
const MAX_DIFF: usize = 16 << 20;

/// The git state of `cwd`, or `None` when it is not inside a git work tree
/// (or git is missing, or too slow). A dirty tree's diff against `HEAD` is
/// written to `diff_path`.
pub(crate) fn capture(cwd: &Path, diff_path: Option<&Path>) -> Option<GitInfo> {
    let inside = git(cwd, &["rev-parse", "--is-inside-work-tree"])?;
    if inside.trim() != "true" {
        return None;
    }
    let commit = git(cwd, &["rev-parse", "--verify", "-q", "HEAD"]).map(|s| s.trim().to_string());
    let branch = git(cwd, &["symbolic-ref", "-q", "--short", "HEAD"]).map(|s| s.trim().to_string());
    let remote = git(cwd, &["remote", "get-url", "origin"]).map(|s| strip_password(s.trim()));
    let status = git(cwd, &["status", "--porcelain", "--untracked-files=no"]).unwrap_or_default();
    let dirty = !status.trim().is_empty();
    if let (true, Some(path), Some(_)) = (dirty, diff_path, &commit) {
        if let Some(diff) = git(cwd, &["diff", "HEAD"]) {
            let bytes = diff.as_bytes();
            if let Err(e) = std::fs::write(path, &bytes[..bytes.len().min(MAX_DIFF)]) {
                tracing::warn!(path = %path.display(), error = %e, "ranklog: could not save the git diff");
            }
        }
    }
    Some(GitInfo {
        commit: commit.filter(|s| !s.is_empty()),
        branch: branch.filter(|s| !s.is_empty()),
        remote: remote.filter(|s| !s.is_empty()),
        dirty,
    })
}

/// Runs one git command; its stdout when it succeeds in time.
fn git(cwd: &Path, args: &[&str]) -> Option<String> {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(cwd)
        // Reading the state must not take the index lock from a git the user runs.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::debug!(?args, "ranklog: git took too long; git fields skipped");
                return None;
            }
        }
    };
    let out = reader.join().ok()?.ok()?;
    status
        .success()
        .then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Removes the password from a URL's user info: `https://u:p@h/x` → `https://u@h/x`.
pub(crate) fn strip_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{}{}{}", &url[..scheme_end + 3], user, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_removed_from_remotes() {
        assert_eq!(
            strip_password("https://alice:s3cret@example.com/org/repo.git"),
            "https://alice@example.com/org/repo.git"
        );
        assert_eq!(
            strip_password("https://example.com/org/repo.git"),
            "https://example.com/org/repo.git"
        );
        assert_eq!(
            strip_password("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(
            strip_password("https://u:p@ss@h.io/x?y=a@b"),
            "https://u@h.io/x?y=a@b"
        );
    }

    #[test]
    fn a_plain_directory_has_no_git_fields() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("x"), "")?;
        assert!(capture(dir.path(), None).is_none());
        Ok(())
    }
}

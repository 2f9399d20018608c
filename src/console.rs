//! What ranklog prints for people on stderr: a line at init, one at finish,
//! and warnings about the data (a lost rank, a full disk).
//!
//! These are output for the person at the terminal, like wandb's banner.
//! `RANKLOG_SILENT=1` turns off the init and finish lines; warnings always
//! print, since each means data was not recorded as asked. Every warning is
//! also emitted through `tracing` for applications that collect diagnostics.

use std::io::Write;
use std::path::Path;

/// `ranklog: run snowy-owl-10 (id 3k9x0c2a) writing to ./ranklog/run-…`
pub(crate) fn started(name: &str, id: &str, dir: &Path) {
    line(&format!(
        "ranklog: run {name} (id {id}) writing to {}",
        dir.display()
    ));
}

/// `ranklog: finished snowy-owl-10: 1000 steps, 10000 points, 98.1 KiB in 1.2 s`,
/// then where the upload stands (online) or how to upload (offline).
#[allow(clippy::too_many_arguments)]
pub(crate) fn finished(
    name: &str,
    state: &str,
    steps: u64,
    points: u64,
    bytes: u64,
    secs: f64,
    dir: &Path,
    upload: Option<&crate::sync::UploadStatus>,
) {
    let next = match upload {
        Some(u) if u.complete => format!(
            "ranklog: uploaded to {}/#/experiments/{}/runs/{}",
            u.server,
            u.experiment_id.as_deref().unwrap_or("?"),
            u.remote_run_id.as_deref().unwrap_or("?")
        ),
        Some(u) => format!(
            "ranklog: upload to {} incomplete ({} of {} acknowledged{}); finish it with `ranklog sync {}`",
            u.server,
            crate::human::bytes(u.acked_bytes),
            crate::human::bytes(u.log_bytes),
            u.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default(),
            dir.display()
        ),
        None => format!(
            "ranklog: see it with `ranklog show {}`; upload it with `ranklog sync {}`",
            dir.display(),
            dir.display()
        ),
    };
    line(&format!(
        "ranklog: {state} {name}: {steps} steps, {points} points, {} in {secs:.2} s\n{next}",
        crate::human::bytes(bytes),
    ));
}

/// `ranklog: warning: …` on stderr, and the same through `tracing`.
pub(crate) fn warn(text: &str) {
    tracing::warn!("{text}");
    line(&format!("ranklog: warning: {text}"));
}

/// `ranklog: W&B offline run in …; upload it with `wandb sync …``
pub(crate) fn exported(file: &Path, offline_dir: &Path) {
    line(&format!(
        "ranklog: W&B offline run written to {}; upload it with `wandb sync {}`",
        file.display(),
        offline_dir.display()
    ));
}

fn line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

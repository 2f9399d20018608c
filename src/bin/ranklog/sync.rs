//! `ranklog sync`: upload offline, crashed or partly uploaded runs to a tracking server.
//!
//! Each run is uploaded from where its last upload stopped (`sync.json`);
//! runs already uploaded to that server are skipped. A crashed run is
//! uploaded whole and ended as `KILLED`, a failed one as `FAILED`, a finished
//! one as `FINISHED`; a run still being written is uploaded so far and left
//! `RUNNING`. One line per run goes to stdout; a progress bar is drawn on
//! stderr when it is a terminal. Exit code 0 when every run was uploaded or
//! skipped, 1 when some failed, 2 when all failed or nothing could be tried.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ranklog::store::{self, RunState};
use ranklog::sync::{self, Target, Uploader};

/// Arguments of `ranklog sync`.
#[derive(clap::Args)]
pub struct Args {
    /// Runs to upload: run directories, ids or names.
    runs: Vec<String>,
    /// Upload every run under the root directory.
    #[arg(long)]
    all: bool,
    /// Root directory of the runs [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The tracking server [default: $RANKLOG_TRACKING_URI or $MLFLOW_TRACKING_URI]
    #[arg(long)]
    tracking_uri: Option<String>,
    /// Say what would be uploaded, without contacting the server.
    #[arg(long)]
    dry_run: bool,
    /// Seconds to keep retrying a server that is down before giving up on a run.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    retry_for: u64,
}

struct Job {
    dir: PathBuf,
    name: String,
    id: String,
    state: RunState,
    pending: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = crate::root(&args.dir);
    let target = Target::resolve(args.tracking_uri.as_deref())?;
    let dirs = if args.all {
        store::run_dirs(&root)?
    } else if args.runs.is_empty() {
        bail!("name the runs to upload (directories, ids or names), or pass --all");
    } else {
        args.runs
            .iter()
            .map(|r| store::resolve_run(&root, r))
            .collect::<ranklog::Result<Vec<_>>>()?
    };
    let mut out = std::io::stdout().lock();
    let mut jobs = Vec::new();
    let mut failed = 0usize;
    let mut skipped = 0usize;
    for dir in dirs {
        let info = match store::info(&dir) {
            Ok(i) => i,
            Err(e) => {
                writeln!(out, "failed   {}: {e}", dir.display())?;
                failed += 1;
                continue;
            }
        };
        if sync::is_synced(&dir, &target.server) {
            writeln!(
                out,
                "skipped  {} ({}): already uploaded to {}",
                info.meta.name, info.meta.id, target.server
            )?;
            skipped += 1;
            continue;
        }
        let log_len = std::fs::metadata(dir.join(store::LOG_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        let acked = sync::acked_bytes(&dir, &target.server);
        jobs.push(Job {
            dir,
            name: info.meta.name,
            id: info.meta.id,
            state: info.state,
            pending: log_len.saturating_sub(acked),
        });
    }
    if args.dry_run {
        for j in &jobs {
            writeln!(
                out,
                "would upload {} ({}): {}, {} to send, then {} on {}",
                j.name,
                j.id,
                j.state,
                ranklog::human::bytes(j.pending),
                end_status(j.state),
                target.server
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let total: u64 = jobs.iter().map(|j| j.pending).sum();
    let bar = progress_bar(total);
    let started = Instant::now();
    let mut synced = 0usize;
    let mut points = 0u64;
    for job in &jobs {
        let base = bar.position();
        let result = Uploader::open(&job.dir, &target).and_then(|up| {
            let up = up.retry_for(Duration::from_secs(args.retry_for));
            let first = up.state().acked_offset;
            up.run(job.state == RunState::Crashed, &mut |acked| {
                bar.set_position(base + acked.saturating_sub(first).min(job.pending));
            })
        });
        bar.set_position(base + job.pending);
        let line = match result {
            Ok(r) => {
                synced += 1;
                points += r.points;
                let status = r.status.unwrap_or_else(|| "RUNNING".into());
                format!(
                    "synced   {} ({}): {} -> {status}, {} points, {}/#/experiments/{}/runs/{}",
                    job.name,
                    job.id,
                    job.state,
                    r.points,
                    r.server,
                    r.experiment_id.unwrap_or_default(),
                    r.remote_run_id.unwrap_or_default()
                )
            }
            Err(e) => {
                failed += 1;
                format!("failed   {} ({}): {e}", job.name, job.id)
            }
        };
        bar.suspend(|| writeln!(out, "{line}"))?;
    }
    bar.finish_and_clear();
    eprintln!(
        "ranklog: {synced} synced, {skipped} skipped, {failed} failed; {points} points in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(match (failed, synced + skipped) {
        (0, _) => ExitCode::SUCCESS,
        (_, 0) => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

fn end_status(state: RunState) -> &'static str {
    match state {
        RunState::Finished => "FINISHED",
        RunState::Failed => "FAILED",
        RunState::Crashed => "KILLED",
        RunState::Running => "RUNNING",
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "ranklog: {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

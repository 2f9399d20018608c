//! `ranklog runs`: one line per run, newest first.
//!
//! # JSON
//!
//! `--json` prints one array; each element is an object with the fields
//! `id`, `name`, `project`, `group` (string or null), `job_type` (string or
//! null), `rank` (number or null), `state` (`running`, `finished`, `failed`
//! or `crashed`), `steps` (number), `started` (RFC 3339), `duration_s`
//! (number), `host`, `dir` and `damaged` (boolean: the log has a torn or
//! corrupt tail). Fields are added in later versions, never renamed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::table::Table;

/// Arguments of `ranklog runs`.
#[derive(clap::Args)]
pub struct Args {
    /// Root directory of the runs [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only runs of this project.
    #[arg(long)]
    project: Option<String>,
    /// Only runs of this group.
    #[arg(long)]
    group: Option<String>,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = crate::root(&args.dir);
    let runs: Vec<_> = ranklog::store::list(&root)?
        .into_iter()
        .filter(|r| args.project.as_ref().is_none_or(|p| &r.meta.project == p))
        .filter(|r| args.group.is_none() || r.meta.group == args.group)
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let items: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.meta.id,
                    "name": r.meta.name,
                    "project": r.meta.project,
                    "group": r.meta.group,
                    "job_type": r.meta.job_type,
                    "rank": r.meta.rank.map(|k| k.rank),
                    "state": r.state.as_str(),
                    "steps": r.steps,
                    "started": r.meta.started,
                    "duration_s": r.duration_s,
                    "host": r.meta.host,
                    "dir": r.dir.display().to_string(),
                    "damaged": r.damage.is_some(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        eprintln!("ranklog: no runs under {}", root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(
        &[
            "NAME", "ID", "PROJECT", "GROUP", "STATE", "STEPS", "STARTED", "DURATION",
        ],
        &[false, false, false, false, false, true, false, true],
    );
    for r in &runs {
        let state = match r.damage {
            Some(_) => format!("{} (damaged)", r.state),
            None => r.state.to_string(),
        };
        t.row(vec![
            r.meta.name.clone(),
            r.meta.id.clone(),
            r.meta.project.clone(),
            r.meta.group.clone().unwrap_or_else(|| "-".into()),
            state,
            r.steps.to_string(),
            r.meta
                .started
                .get(..19)
                .unwrap_or(&r.meta.started)
                .replace('T', " "),
            ranklog::human::duration(r.duration_s),
        ]);
    }
    out.write_all(t.render().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

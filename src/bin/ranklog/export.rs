//! `ranklog export wandb RUN... [--out DIR]`: W&B offline runs.
//!
//! # Output
//!
//! A table, one line per run: `RUN`, `STATE`, `EXIT`, `ROWS`, `POINTS`,
//! `SIZE`, `FILE`; failures go to stderr. Then the `wandb sync` command that
//! uploads the result.
//!
//! # JSON
//!
//! `--json` prints one array with an object per run, in the order given:
//! `run` (the argument), `ok`, and when `ok` is true `id`, `run_dir`,
//! `offline_dir`, `file`, `state`, `exit_code`, `records`, `rows`, `points`,
//! `bytes`, `damage` (null or a message); when `ok` is false, `error`.
//!
//! # Exit code
//!
//! 0 when every run was exported, 1 when some were, 2 when none was.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ranklog::export::wandb::{self, ExportReport};
use ranklog::store;

use crate::table::Table;

/// Arguments of `ranklog export`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum Target {
    /// Write W&B offline runs (OUT/wandb/offline-run-…/run-ID.wandb) that `wandb sync` uploads.
    Wandb(WandbArgs),
}

#[derive(clap::Args)]
struct WandbArgs {
    /// The runs: ids, names, `latest-run`, or run directories.
    #[arg(required = true)]
    runs: Vec<String>,
    /// Directory that receives `wandb/offline-run-…/`.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Root directory of the runs [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.target {
        Target::Wandb(a) => export_wandb(a),
    }
}

fn export_wandb(args: WandbArgs) -> Result<ExitCode> {
    let root = crate::root(&args.dir);
    let results: Vec<(String, Result<ExportReport, ranklog::Error>)> = args
        .runs
        .iter()
        .map(|query| {
            let done =
                store::resolve_run(&root, query).and_then(|dir| wandb::export_run(&dir, &args.out));
            (query.clone(), done)
        })
        .collect();
    let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
    let mut out = std::io::stdout().lock();
    if args.json {
        let docs: Vec<serde_json::Value> = results.iter().map(|(q, r)| to_json(q, r)).collect();
        serde_json::to_writer_pretty(&mut out, &docs)?;
        writeln!(out)?;
    } else {
        let mut t = Table::new(
            &["RUN", "STATE", "EXIT", "ROWS", "POINTS", "SIZE", "FILE"],
            &[false, false, true, true, true, true, false],
        );
        for (_, r) in &results {
            if let Ok(r) = r {
                t.row(vec![
                    r.id.clone(),
                    r.state.to_string(),
                    r.exit_code.to_string(),
                    r.rows.to_string(),
                    r.points.to_string(),
                    ranklog::human::bytes(r.bytes),
                    r.file.display().to_string(),
                ]);
            }
        }
        if ok > 0 {
            out.write_all(t.render().as_bytes())?;
        }
    }
    out.flush()?;
    drop(out);
    for (query, r) in &results {
        match r {
            Ok(r) => {
                if let Some(d) = &r.damage {
                    eprintln!(
                        "ranklog: {}: the run log has a {d}; the export holds everything before it",
                        r.id
                    );
                }
            }
            Err(e) => eprintln!("ranklog: cannot export {query}: {}", error_chain(e)),
        }
    }
    if !args.json && ok > 0 {
        let exported: Vec<&ExportReport> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        let target = match exported.as_slice() {
            [one] => one.offline_dir.display().to_string(),
            _ => args
                .out
                .join("wandb")
                .join("offline-run-*")
                .display()
                .to_string(),
        };
        eprintln!("ranklog: upload with `wandb sync {target}`");
    }
    Ok(match ok {
        n if n == results.len() => ExitCode::SUCCESS,
        0 => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

fn to_json(query: &str, r: &Result<ExportReport, ranklog::Error>) -> serde_json::Value {
    match r {
        Ok(r) => serde_json::json!({
            "run": query,
            "ok": true,
            "id": r.id,
            "run_dir": r.run_dir.display().to_string(),
            "offline_dir": r.offline_dir.display().to_string(),
            "file": r.file.display().to_string(),
            "state": r.state.as_str(),
            "exit_code": r.exit_code,
            "records": r.records,
            "rows": r.rows,
            "points": r.points,
            "bytes": r.bytes,
            "damage": r.damage.as_ref().map(|d| d.to_string()),
        }),
        Err(e) => serde_json::json!({
            "run": query,
            "ok": false,
            "error": error_chain(e),
        }),
    }
}

/// The error and its causes, `: `-separated.
fn error_chain(e: &ranklog::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

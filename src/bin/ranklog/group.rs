//! `ranklog group G`: the runs of one group side by side.
//!
//! # JSON
//!
//! `--json` prints one object: `group`, `root`, `world_size` (number or
//! null), `ranks` (array of `{rank, id, name, state, exit_code, steps,
//! last_step, duration_s, host, pid, dir, damaged, straggler, metrics}`,
//! `metrics` being an array of `{key, count, last, min, max}`), `missing`
//! (array of ranks), `conflicts` (array of `{rank, kept, superseded}`, each
//! run an object `{id, name, dir, started}`), `median_step`, `straggler_lag`,
//! `stragglers` (array of `{rank, last_step, behind}`) and `metrics` (array
//! of `{key, last, series}`; `last` is `{step, span, count, mean, min, max,
//! std}` or null, `series` an array of such objects, down-sampled). Non-finite
//! values are the strings `NaN`, `Infinity` and `-Infinity`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use ranklog::group::{GroupView, StepStats};
use ranklog::store::RunState;

use crate::table::{json_number, number, sparkline, Table};

/// Arguments of `ranklog group`.
#[derive(clap::Args)]
pub struct Args {
    /// The group key.
    group: String,
    /// Root directory of the runs [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Also draw one chart per metric into this file (.svg or .png).
    #[arg(long, value_name = "OUT")]
    plot: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = crate::root(&args.dir);
    let view = GroupView::load(&root, &args.group)?;
    if let Some(out) = &args.plot {
        crate::plot::draw(&view, out)?;
        if !args.json {
            eprintln!("ranklog: wrote {}", out.display());
        }
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &to_json(&view))?;
        writeln!(stdout)?;
    } else {
        stdout.write_all(text(&view).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the text view of a group (used by `ranklog launch` at the end).
pub fn print_view(root: &Path, group: &str) -> Result<()> {
    let view = GroupView::load(root, group)?;
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    out.write_all(text(&view).as_bytes())?;
    out.flush()?;
    Ok(())
}

fn stats_json(s: &StepStats) -> serde_json::Value {
    serde_json::json!({
        "step": s.step,
        "span": s.span,
        "count": s.count,
        "mean": json_number(s.mean),
        "min": json_number(s.min),
        "max": json_number(s.max),
        "std": json_number(s.std),
    })
}

fn to_json(v: &GroupView) -> serde_json::Value {
    let run_ref = |r: &ranklog::group::RunRef| serde_json::json!({"id": r.id, "name": r.name, "dir": r.dir.display().to_string(), "started": r.started});
    serde_json::json!({
        "group": v.group,
        "root": v.root.display().to_string(),
        "world_size": v.world_size,
        "ranks": v.ranks.iter().map(|r| serde_json::json!({
            "rank": r.rank,
            "id": r.meta.id,
            "name": r.meta.name,
            "state": r.state.as_str(),
            "exit_code": r.exit_code,
            "steps": r.steps,
            "last_step": r.last_step,
            "duration_s": r.duration_s,
            "host": r.meta.host,
            "pid": r.meta.pid,
            "dir": r.dir.display().to_string(),
            "damaged": r.damage.is_some(),
            "straggler": v.stragglers.iter().any(|s| s.rank == r.rank && r.rank.is_some()),
            "metrics": r.metrics.iter().map(|m| serde_json::json!({
                "key": m.key,
                "count": m.count,
                "last": json_number(m.last),
                "min": json_number(m.min),
                "max": json_number(m.max),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "missing": v.missing,
        "conflicts": v.conflicts.iter().map(|c| serde_json::json!({
            "rank": c.rank,
            "kept": run_ref(&c.kept),
            "superseded": c.superseded.iter().map(run_ref).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "median_step": v.median_step,
        "straggler_lag": v.straggler_lag,
        "stragglers": v.stragglers.iter().map(|s| serde_json::json!({
            "rank": s.rank, "last_step": s.last_step, "behind": s.behind,
        })).collect::<Vec<_>>(),
        "metrics": v.metrics.iter().map(|m| serde_json::json!({
            "key": m.key,
            "last": m.last.as_ref().map(stats_json),
            "series": m.series.iter().map(stats_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn rank_label(rank: Option<u32>) -> String {
    rank.map_or_else(|| "-".into(), |r| r.to_string())
}

fn text(v: &GroupView) -> String {
    let mut o = String::new();
    let ranked = v.ranks.iter().filter(|r| r.rank.is_some()).count();
    let world = match v.world_size {
        Some(w) => format!("{ranked} of {w} ranks"),
        None => format!("{} runs", v.ranks.len()),
    };
    o.push_str(&format!(
        "group {}  ({world}, {})\n\n",
        v.group,
        v.root.display()
    ));
    let mut t = Table::new(
        &[
            "RANK",
            "NAME",
            "STATE",
            "STEPS",
            "LAST STEP",
            "DURATION",
            "HOST",
            "PID",
            "NOTE",
        ],
        &[true, false, false, true, true, true, false, true, false],
    );
    for r in &v.ranks {
        let notes = v.rank_notes(r);
        let state = match r.exit_code {
            Some(c) if c != 0 => format!("{} ({c})", r.state),
            _ => r.state.to_string(),
        };
        t.row(vec![
            rank_label(r.rank),
            r.meta.name.clone(),
            state,
            r.steps.to_string(),
            r.last_step.map_or("-".into(), |s| s.to_string()),
            ranklog::human::duration(r.duration_s),
            r.meta.host.clone(),
            r.meta.pid.to_string(),
            notes.join("; "),
        ]);
    }
    o.push_str(&t.render());
    if !v.metrics.is_empty() {
        o.push('\n');
        let mut t = Table::new(
            &[
                "METRIC",
                "STEP",
                "RANKS",
                "MEAN",
                "MIN",
                "MAX",
                "STD",
                "MEAN OVER STEPS",
            ],
            &[false, true, true, true, true, true, true, false],
        );
        for m in &v.metrics {
            let spark: Vec<f64> = m.series.iter().map(|s| s.mean).collect();
            let cells = match &m.last {
                Some(s) => vec![
                    s.step.to_string(),
                    s.count.to_string(),
                    number(s.mean),
                    number(s.min),
                    number(s.max),
                    number(s.std),
                ],
                None => vec!["-".into(); 6],
            };
            let mut row = vec![m.key.clone()];
            row.extend(cells);
            row.push(sparkline(&thin(&spark, 40)));
            t.row(row);
        }
        o.push_str(&t.render());
    }
    let mut flags = Vec::new();
    if !v.missing.is_empty() {
        flags.push(format!(
            "missing: rank{} {} (world size {})",
            if v.missing.len() == 1 { "" } else { "s" },
            join(&v.missing),
            v.world_size.unwrap_or(0)
        ));
    }
    for r in v.ranks.iter().filter(|r| r.state == RunState::Crashed) {
        flags.push(format!(
            "crashed: rank {} ({}) stopped at step {} without finishing",
            rank_label(r.rank),
            r.meta.name,
            r.last_step.map_or("-".into(), |s| s.to_string())
        ));
    }
    for r in v.ranks.iter().filter(|r| r.state == RunState::Failed) {
        flags.push(format!(
            "failed: rank {} ({})",
            rank_label(r.rank),
            r.meta.name
        ));
    }
    for s in &v.stragglers {
        flags.push(format!(
            "straggler: rank {} at step {}, {} steps behind the median step {} (threshold {})",
            rank_label(s.rank),
            s.last_step.map_or("-".into(), |x| x.to_string()),
            s.behind,
            v.median_step.unwrap_or(0),
            v.straggler_lag
        ));
    }
    for c in &v.conflicts {
        flags.push(format!(
            "conflict: rank {} is claimed by {} runs; showing {} ({}), not merged with {}",
            c.rank,
            c.superseded.len() + 1,
            c.kept.name,
            c.kept.id,
            c.superseded
                .iter()
                .map(|r| format!("{} ({})", r.name, r.id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !flags.is_empty() {
        o.push('\n');
        for f in flags {
            o.push_str(&f);
            o.push('\n');
        }
    }
    o
}

fn join(xs: &[u32]) -> String {
    xs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// At most `n` values, averaging neighbours.
fn thin(values: &[f64], n: usize) -> Vec<f64> {
    if values.len() <= n || n == 0 {
        return values.to_vec();
    }
    let per = values.len().div_ceil(n);
    values
        .chunks(per)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect()
}

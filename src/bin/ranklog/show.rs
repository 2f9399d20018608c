//! `ranklog show RUN`: everything about one run.
//!
//! # JSON
//!
//! `--json` prints one object: `id`, `name`, `project`, `group`, `job_type`,
//! `rank` (object or null), `state`, `exit_code` (number or null),
//! `message` (string or null), `steps`, `points`, `last_step`, `started`,
//! `duration_s`, `host`, `pid`, `program`, `args`, `dir`, `git` (object with
//! `commit`, `branch`, `remote`, `dirty`, or null), `config` (object),
//! `summary` (object), `metrics` (array of objects with `key`, `count`,
//! `last_step`, `last`, `min`, `max`), `lost_ranks` (array of `{rank,
//! reason}`), `dropped` (object: rank → rows), `damage` (null, or
//! `{offset, kind, message}`). Non-finite metric values are the strings
//! `NaN`, `Infinity` and `-Infinity`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ranklog::store::{self, DamageKind, RunScan};

use crate::table::{json_number, number, sparkline, Table};

/// Arguments of `ranklog show`.
#[derive(clap::Args)]
pub struct Args {
    /// The run: an id, a name, `latest-run`, or a run directory.
    run: String,
    /// Root directory of the runs [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = crate::root(&args.dir);
    let dir = store::resolve_run(&root, &args.run)?;
    let s = store::scan(&dir)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &to_json(&s))?;
        writeln!(out)?;
    } else {
        out.write_all(text(&s).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn damage_kind(k: DamageKind) -> &'static str {
    match k {
        DamageKind::TornTail => "torn_tail",
        DamageKind::Checksum => "checksum",
        DamageKind::Oversized => "oversized",
        DamageKind::BadRecord => "bad_record",
        _ => "io",
    }
}

fn to_json(s: &RunScan) -> serde_json::Value {
    let m = &s.meta;
    serde_json::json!({
        "id": m.id,
        "name": m.name,
        "project": m.project,
        "group": m.group,
        "job_type": m.job_type,
        "rank": m.rank,
        "state": s.state.as_str(),
        "exit_code": s.exit.as_ref().map(|e| e.code),
        "message": s.exit.as_ref().and_then(|e| e.message.clone()),
        "steps": s.steps,
        "points": s.points,
        "last_step": s.last_step,
        "started": m.started,
        "duration_s": s.last_t_us as f64 / 1e6,
        "host": m.host,
        "pid": m.pid,
        "program": m.program,
        "args": m.args,
        "dir": s.dir.display().to_string(),
        "git": s.git,
        "config": s.config,
        "summary": s.summary,
        "metrics": s.metrics.iter().map(|x| serde_json::json!({
            "key": x.key,
            "count": x.count,
            "last_step": x.last_step,
            "last": json_number(x.last),
            "min": json_number(x.min),
            "max": json_number(x.max),
        })).collect::<Vec<_>>(),
        "lost_ranks": s.lost_ranks.iter().map(|(rank, reason)| serde_json::json!({"rank": rank, "reason": reason})).collect::<Vec<_>>(),
        "dropped": s.dropped,
        "damage": s.damage.as_ref().map(|d| serde_json::json!({
            "offset": d.offset,
            "kind": damage_kind(d.kind),
            "message": d.to_string(),
        })),
    })
}

fn text(s: &RunScan) -> String {
    let m = &s.meta;
    let mut o = String::new();
    let mut kv = Table::new(&["", ""], &[false, false]);
    let mut add = |k: &str, v: String| kv.row(vec![k.to_string(), v]);
    add("name", m.name.clone());
    add("id", m.id.clone());
    add("project", m.project.clone());
    if let Some(g) = &m.group {
        add("group", g.clone());
    }
    if let Some(j) = &m.job_type {
        add("job type", j.clone());
    }
    if let Some(r) = &m.rank {
        add(
            "rank",
            format!(
                "{} of {} (local {}, node {})",
                r.rank, r.world_size, r.local_rank, r.node_rank
            ),
        );
    }
    let state = match &s.exit {
        Some(e) if e.code != 0 => format!("{} (exit code {})", s.state, e.code),
        _ => s.state.to_string(),
    };
    add("state", state);
    if let Some(msg) = s.exit.as_ref().and_then(|e| e.message.as_ref()) {
        add("message", msg.clone());
    }
    add("started", m.started.clone());
    add(
        "duration",
        ranklog::human::duration(s.last_t_us as f64 / 1e6),
    );
    add(
        "steps",
        format!(
            "{} (last step {})",
            s.steps,
            s.last_step.map_or("-".into(), |x| x.to_string())
        ),
    );
    add("points", s.points.to_string());
    add("host", format!("{} (pid {})", m.host, m.pid));
    add(
        "command",
        std::iter::once(m.program.as_str())
            .chain(m.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if let Some(g) = &s.git {
        add(
            "git commit",
            format!(
                "{}{}",
                g.commit.clone().unwrap_or_else(|| "-".into()),
                if g.dirty {
                    " (dirty, see diff.patch)"
                } else {
                    ""
                }
            ),
        );
        if let Some(b) = &g.branch {
            add("git branch", b.clone());
        }
        if let Some(r) = &g.remote {
            add("git remote", r.clone());
        }
    }
    add("dir", s.dir.display().to_string());
    for line in kv.render().lines().skip(1) {
        o.push_str(line);
        o.push('\n');
    }
    if let Some(d) = &s.damage {
        o.push_str(&format!(
            "\nwarning: the log has a {d}; everything before it is shown\n"
        ));
    }
    for (rank, reason) in &s.lost_ranks {
        o.push_str(&format!("\nrank {rank} lost: {reason}\n"));
    }
    for (rank, count) in &s.dropped {
        o.push_str(&format!(
            "\nrank {rank} dropped {count} rows (drop policy)\n"
        ));
    }
    if !s.config.is_empty() {
        o.push_str("\nconfig\n");
        let mut t = Table::new(&["", ""], &[false, false]);
        for (k, v) in &s.config {
            t.row(vec![format!("  {k}"), v.to_string()]);
        }
        o.extend(t.render().lines().skip(1).map(|l| format!("{l}\n")));
    }
    if !s.summary.is_empty() {
        o.push_str("\nsummary\n");
        let mut t = Table::new(&["", ""], &[false, false]);
        for (k, v) in &s.summary {
            t.row(vec![format!("  {k}"), v.to_string()]);
        }
        o.extend(t.render().lines().skip(1).map(|l| format!("{l}\n")));
    }
    if !s.metrics.is_empty() {
        o.push('\n');
        let mut t = Table::new(
            &["METRIC", "COUNT", "LAST", "MIN", "MAX", "TREND"],
            &[false, true, true, true, true, false],
        );
        for x in &s.metrics {
            t.row(vec![
                x.key.clone(),
                x.count.to_string(),
                number(x.last),
                number(x.min),
                number(x.max),
                sparkline(&x.spark),
            ]);
        }
        o.push_str(&t.render());
    }
    o
}

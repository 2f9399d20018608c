//! The JSON documents of `/api/…`: the same data as the pages, for scripts.
//!
//! Non-finite numbers are the strings `NaN`, `Infinity` and `-Infinity`.
//! Series are down-sampled on the server to at most
//! [`RESOLUTION`](super::data::RESOLUTION) points, whatever the number of
//! steps. Fields are added, never renamed.

use serde_json::{json, Value};

use super::cache::RunRow;
use super::data::RunPage;
use crate::group::{GroupView, StepStats};

fn num(v: f64) -> Value {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        v.into()
    }
}

/// `/api/runs`: an array, newest first, of `{id, name, project, group,
/// job_type, rank, world_size, state, steps, started, start_unix_ms,
/// duration_s, damaged, problem}`; `problem` is null unless the run could not
/// be read (then `state` is `unreadable` and most fields are null).
pub(crate) fn runs<'a>(rows: impl Iterator<Item = &'a RunRow>) -> Value {
    Value::Array(
        rows.map(|r| match &r.info {
            Some(i) => json!({
                "id": i.meta.id,
                "name": i.meta.name,
                "project": i.meta.project,
                "group": i.meta.group,
                "job_type": i.meta.job_type,
                "rank": i.meta.rank.map(|k| k.rank),
                "world_size": i.meta.rank.map(|k| k.world_size),
                "state": i.state.as_str(),
                "steps": i.steps,
                "started": i.meta.started,
                "start_unix_ms": i.meta.start_unix_ms,
                "duration_s": num(i.duration_s),
                "damaged": i.damage.is_some(),
                "problem": Value::Null,
            }),
            None => json!({
                "id": r.id,
                "name": Value::Null,
                "project": Value::Null,
                "group": Value::Null,
                "job_type": Value::Null,
                "rank": Value::Null,
                "world_size": Value::Null,
                "state": "unreadable",
                "steps": Value::Null,
                "started": Value::Null,
                "start_unix_ms": Value::Null,
                "duration_s": Value::Null,
                "damaged": true,
                "problem": r.problem,
            }),
        })
        .collect(),
    )
}

/// `/api/run/ID`: `{id, name, project, group, job_type, rank, state,
/// exit_code, message, steps, points, last_step, started, duration_s, host,
/// pid, program, args, git, config, summary, notices, metrics}`; `metrics` is
/// an array of `{key, count, last, min, max, steps_per_point, series}` and
/// `series` an array of `{step, t_s, n, mean, min, max}`.
pub(crate) fn run(p: &RunPage) -> Value {
    let m = p.meta.as_ref();
    let s = p.scan.as_ref();
    json!({
        "id": p.id,
        "name": m.map(|m| &m.name),
        "project": m.map(|m| &m.project),
        "group": m.and_then(|m| m.group.as_ref()),
        "job_type": m.and_then(|m| m.job_type.as_ref()),
        "rank": m.and_then(|m| m.rank),
        "state": s.map_or("unreadable", |s| s.state.as_str()),
        "exit_code": s.and_then(|s| s.exit.as_ref()).map(|e| e.code),
        "message": s.and_then(|s| s.exit.as_ref()).and_then(|e| e.message.clone()),
        "steps": s.map(|s| s.steps),
        "points": s.map(|s| s.points),
        "last_step": s.and_then(|s| s.last_step),
        "started": m.map(|m| &m.started),
        "duration_s": s.map(|s| num(s.last_t_us as f64 / 1e6)),
        "host": m.map(|m| &m.host),
        "pid": m.map(|m| m.pid),
        "program": m.map(|m| &m.program),
        "args": m.map(|m| &m.args),
        "git": s.and_then(|s| s.git.as_ref()),
        "config": s.map(|s| &s.config),
        "summary": s.map(|s| &s.summary),
        "notices": p.notices,
        "metrics": p.series.iter().map(|x| {
            let stats = s.and_then(|s| s.metrics.iter().find(|m| m.key == x.key));
            json!({
                "key": x.key,
                "count": stats.map(|m| m.count),
                "last": stats.map(|m| num(m.last)),
                "min": stats.map(|m| num(m.min)),
                "max": stats.map(|m| num(m.max)),
                "steps_per_point": x.width(),
                "series": x.buckets().iter().map(|b| json!({
                    "step": b.step, "t_s": num(b.t_s), "n": b.n,
                    "mean": num(b.mean), "min": num(b.min), "max": num(b.max),
                })).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
    })
}

fn stats(s: &StepStats) -> Value {
    json!({
        "step": s.step, "span": s.span, "count": s.count,
        "mean": num(s.mean), "min": num(s.min), "max": num(s.max), "std": num(s.std),
    })
}

/// `/api/group/G`: `{group, world_size, ranks, missing, crashed, stragglers,
/// conflicts, median_step, straggler_lag, metrics}`. `ranks` is an array of
/// `{rank, id, name, state, exit_code, steps, last_step, duration_s, host,
/// pid, damaged, straggler}`; `metrics` an array of `{key, last, series,
/// ranks}` where `last` and each `series` item are `{step, span, count, mean,
/// min, max, std}` and `ranks` is an array of `{rank, series: [[step,
/// mean], …]}` on the same down-sampled steps.
pub(crate) fn group(v: &GroupView) -> Value {
    json!({
        "group": v.group,
        "world_size": v.world_size,
        "ranks": v.ranks.iter().map(|r| json!({
            "rank": r.rank,
            "id": r.meta.id,
            "name": r.meta.name,
            "state": r.state.as_str(),
            "exit_code": r.exit_code,
            "steps": r.steps,
            "last_step": r.last_step,
            "duration_s": num(r.duration_s),
            "host": r.meta.host,
            "pid": r.meta.pid,
            "damaged": r.damage.is_some(),
            "straggler": r.rank.is_some() && v.stragglers.iter().any(|s| s.rank == r.rank),
        })).collect::<Vec<_>>(),
        "missing": v.missing,
        "crashed": v.ranks.iter()
            .filter(|r| r.state == crate::store::RunState::Crashed)
            .map(|r| r.rank).collect::<Vec<_>>(),
        "stragglers": v.stragglers.iter().map(|s| json!({
            "rank": s.rank, "last_step": s.last_step, "behind": s.behind,
        })).collect::<Vec<_>>(),
        "conflicts": v.conflicts.iter().map(|c| json!({
            "rank": c.rank, "kept": c.kept.id,
            "superseded": c.superseded.iter().map(|r| &r.id).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "median_step": v.median_step,
        "straggler_lag": v.straggler_lag,
        "metrics": v.metrics.iter().map(|m| json!({
            "key": m.key,
            "last": m.last.as_ref().map(stats),
            "series": m.series.iter().map(stats).collect::<Vec<_>>(),
            "ranks": v.ranks.iter().filter_map(|r| {
                let rm = r.metrics.iter().find(|x| x.key == m.key)?;
                Some(json!({
                    "rank": r.rank,
                    "series": rm.series.iter().map(|&(s, y)| json!([s, num(y)])).collect::<Vec<_>>(),
                }))
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

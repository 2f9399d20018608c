//! The three pages: runs, one run, one group. Each renders to the part of
//! the page that live updates replace, plus what stays put (the filters).

use std::collections::BTreeSet;
use std::fmt::Write;

use super::cache::RunRow;
use super::chart::{Chart, Line, PALETTE};
use super::data::{damage_notice, RunPage};
use super::html::{attr, esc, number, url_part};
use crate::group::GroupView;
use crate::store::RunState;

/// Filters of the runs page (`?project=&group=&state=`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct RunFilter {
    /// Only runs of this project.
    pub project: Option<String>,
    /// Only runs of this group.
    pub group: Option<String>,
    /// Only runs in this state (`running`, `finished`, `failed`, `crashed`, `unreadable`).
    pub state: Option<String>,
}

impl RunFilter {
    fn wanted(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }

    /// Whether `row` passes every filter that is set.
    pub fn keeps(&self, row: &RunRow) -> bool {
        let meta = row.info.as_ref().map(|i| &i.meta).or(row.meta.as_ref());
        Self::wanted(&self.project).is_none_or(|p| meta.is_some_and(|m| m.project == p))
            && Self::wanted(&self.group)
                .is_none_or(|g| meta.is_some_and(|m| m.group.as_deref() == Some(g)))
            && Self::wanted(&self.state).is_none_or(|s| row.state() == s)
    }
}

/// A start time for people: `2026-11-26 12:06:17` (UTC).
fn when(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .take(19)
        .collect::<String>()
        .replace('T', " ")
}

fn state_badge(state: &str) -> String {
    format!(
        "<span class=\"state {}\">{}</span>",
        attr(state),
        esc(state)
    )
}

fn run_link(id: &str, text: &str) -> String {
    format!("<a href=\"/run/{}\">{}</a>", attr(&url_part(id)), esc(text))
}

fn group_link(group: &str) -> String {
    format!(
        "<a href=\"/group/{}\">{}</a>",
        attr(&url_part(group)),
        esc(group)
    )
}

fn poll_marker(on: bool) -> String {
    format!("<div hidden data-poll=\"{}\"></div>", u8::from(on))
}

/// The filter form of the runs page, built from every run's values.
pub(crate) fn runs_filters(rows: &[RunRow], f: &RunFilter) -> String {
    let mut projects = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for r in rows {
        if let Some(i) = &r.info {
            projects.insert(i.meta.project.clone());
            if let Some(g) = &i.meta.group {
                groups.insert(g.clone());
            }
        }
    }
    let states = ["running", "finished", "failed", "crashed", "unreadable"]
        .map(String::from)
        .into_iter()
        .collect();
    let select = |name: &str, values: &BTreeSet<String>, current: &Option<String>| {
        let mut o = format!(
            "<label>{} <select name=\"{}\"><option value=\"\">all</option>",
            esc(name),
            attr(name)
        );
        for v in values {
            let sel = if current.as_deref() == Some(v.as_str()) {
                " selected"
            } else {
                ""
            };
            let _ = write!(o, "<option value=\"{}\"{sel}>{}</option>", attr(v), esc(v));
        }
        o.push_str("</select></label>");
        o
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/\">{}{}{}<noscript><button>filter</button></noscript> <a href=\"/\">clear</a></form>",
        select("project", &projects, &f.project),
        select("group", &groups, &f.group),
        select("state", &states, &f.state),
    )
}

/// The runs table.
pub(crate) fn runs(rows: &[RunRow], f: &RunFilter) -> String {
    let kept: Vec<&RunRow> = rows.iter().filter(|r| f.keeps(r)).collect();
    let mut o = poll_marker(true);
    let _ = write!(
        o,
        "<h1>Runs</h1><p class=\"muted\">{} of {} runs, newest first</p>",
        kept.len(),
        rows.len()
    );
    if kept.is_empty() {
        o.push_str("<p class=\"empty\">no runs match</p>");
        return o;
    }
    o.push_str("<table id=\"runs\"><thead><tr><th>name</th><th>id</th><th>project</th><th>group</th><th>job type</th><th class=\"num\">rank</th><th>state</th><th class=\"num\">steps</th><th>started (UTC)</th><th class=\"num\">duration</th></tr></thead><tbody>");
    for r in kept {
        match &r.info {
            Some(i) => {
                let m = &i.meta;
                let bad =
                    matches!(i.state, RunState::Crashed | RunState::Failed) || i.damage.is_some();
                let _ = write!(
                    o,
                    "<tr class=\"run{}\" data-id=\"{}\"><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                    if bad { " bad" } else { "" },
                    attr(&m.id),
                    run_link(&m.id, &m.name),
                    if i.damage.is_some() { " <span class=\"muted\">(damaged log)</span>" } else { "" },
                    esc(&m.id),
                    esc(&m.project),
                    m.group.as_deref().map_or_else(String::new, group_link),
                    esc(m.job_type.as_deref().unwrap_or("")),
                    m.rank.map_or_else(String::new, |k| k.rank.to_string()),
                    state_badge(i.state.as_str()),
                    i.steps,
                    esc(&when(&m.started)),
                    esc(&crate::human::duration(i.duration_s)),
                );
            }
            None => {
                let name = r.meta.as_ref().map_or(r.id.as_str(), |m| m.name.as_str());
                let _ = write!(
                    o,
                    "<tr class=\"run bad\" data-id=\"{}\"><td>{}</td><td>{}</td><td colspan=\"4\" class=\"notice error\">{}</td><td>{}</td><td></td><td></td><td></td></tr>",
                    attr(&r.id),
                    run_link(&r.id, name),
                    esc(&r.id),
                    esc(r.problem.as_deref().unwrap_or("unreadable")),
                    state_badge("unreadable"),
                );
            }
        }
    }
    o.push_str("</tbody></table>");
    o
}

fn kv_row(o: &mut String, k: &str, v_html: &str) {
    let _ = write!(o, "<tr><th>{}</th><td>{v_html}</td></tr>", esc(k));
}

fn json_table(title: &str, entries: Vec<(&String, &serde_json::Value)>) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut o = format!("<h2>{}</h2><table class=\"kv\">", esc(title));
    for (k, v) in entries {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(
            o,
            "<tr><th>{}</th><td class=\"val\">{}</td></tr>",
            esc(k),
            esc(&text)
        );
    }
    o.push_str("</table>");
    o
}

/// The title of the run page.
pub(crate) fn run_title(p: &RunPage) -> String {
    p.meta
        .as_ref()
        .map_or_else(|| p.id.clone(), |m| m.name.clone())
}

/// The x-axis toggle of the run page (outside the live part, so it stays).
pub(crate) fn run_controls() -> String {
    "<section><label><input type=\"checkbox\" id=\"walltime\"> x axis: wall time instead of step</label></section>".into()
}

/// The run page.
pub(crate) fn run(p: &RunPage) -> String {
    let running = p
        .scan
        .as_ref()
        .is_some_and(|s| s.state == RunState::Running);
    let mut o = poll_marker(running);
    let _ = write!(o, "<h1>{}</h1>", esc(&run_title(p)));
    for n in &p.notices {
        let _ = write!(o, "<div class=\"notice\">{}</div>", esc(n));
    }
    o.push_str("<table class=\"kv\" id=\"meta\">");
    let state = p.scan.as_ref().map_or("unreadable", |s| s.state.as_str());
    kv_row(&mut o, "id", &esc(&p.id));
    kv_row(&mut o, "state", &state_badge(state));
    if let Some(m) = &p.meta {
        kv_row(&mut o, "project", &esc(&m.project));
        if let Some(g) = &m.group {
            kv_row(&mut o, "group", &group_link(g));
        }
        if let Some(j) = &m.job_type {
            kv_row(&mut o, "job type", &esc(j));
        }
        if let Some(r) = &m.rank {
            kv_row(
                &mut o,
                "rank",
                &format!(
                    "{} of {} (local {}, node {})",
                    r.rank, r.world_size, r.local_rank, r.node_rank
                ),
            );
        }
        kv_row(&mut o, "started (UTC)", &esc(&when(&m.started)));
        kv_row(&mut o, "host", &format!("{} (pid {})", esc(&m.host), m.pid));
        let command = std::iter::once(m.program.as_str())
            .chain(m.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        kv_row(
            &mut o,
            "command",
            &format!("<code>{}</code>", esc(&command)),
        );
        if let Some(cwd) = &m.cwd {
            kv_row(&mut o, "directory", &esc(cwd));
        }
    }
    if let Some(s) = &p.scan {
        if let Some(e) = &s.exit {
            kv_row(&mut o, "exit code", &e.code.to_string());
            if let Some(msg) = &e.message {
                kv_row(&mut o, "message", &esc(msg));
            }
        }
        kv_row(
            &mut o,
            "duration",
            &esc(&crate::human::duration(s.last_t_us as f64 / 1e6)),
        );
        kv_row(
            &mut o,
            "steps",
            &format!(
                "{} (last step {}), {} values",
                s.steps,
                s.last_step.map_or("-".into(), |x| x.to_string()),
                s.points
            ),
        );
        if let Some(g) = &s.git {
            let commit = g.commit.as_deref().unwrap_or("-");
            kv_row(
                &mut o,
                "git commit",
                &format!(
                    "<code>{}</code>{}",
                    esc(commit),
                    if g.dirty {
                        " (dirty: see diff.patch)"
                    } else {
                        ""
                    }
                ),
            );
            if let Some(b) = &g.branch {
                kv_row(&mut o, "git branch", &esc(b));
            }
            if let Some(r) = &g.remote {
                kv_row(&mut o, "git remote", &esc(r));
            }
        }
    }
    kv_row(&mut o, "run directory", &esc(&p.dir.display().to_string()));
    o.push_str("</table>");
    if let Some(s) = &p.scan {
        o.push_str(&json_table("Config", s.config.iter().collect()));
        o.push_str(&json_table("Summary", s.summary.iter().collect()));
    }
    if !p.series.is_empty() {
        let _ = write!(o, "<h2>Metrics</h2>");
        for (axis, class) in [("step", "x-step"), ("wall time (s)", "x-time")] {
            let _ = write!(o, "<div class=\"charts {class}\">");
            for s in &p.series {
                let b = s.buckets();
                let x = |bk: &super::data::Bucket| {
                    if class == "x-step" {
                        bk.step as f64
                    } else {
                        bk.t_s
                    }
                };
                let chart = Chart {
                    x_label: axis,
                    lines: vec![Line {
                        rank: None,
                        color: 0,
                        points: b.iter().map(|bk| (x(bk), bk.mean)).collect(),
                    }],
                    mean: Vec::new(),
                    band: if s.width() > 1 {
                        b.iter().map(|bk| (x(bk), bk.min, bk.max)).collect()
                    } else {
                        Vec::new()
                    },
                };
                let last = b.last().map_or("-".into(), |bk| number(bk.mean));
                let _ = write!(
                    o,
                    "<figure class=\"chart\" data-metric=\"{}\"><figcaption>{} <span class=\"muted\">last {}{}</span></figcaption>{}</figure>",
                    attr(&s.key),
                    esc(&s.key),
                    esc(&last),
                    if s.width() > 1 {
                        format!(", {} steps per point, band = min–max", s.width())
                    } else {
                        String::new()
                    },
                    chart.svg(&s.key)
                );
            }
            o.push_str("</div>");
        }
    }
    o
}

fn rank_label(rank: Option<u32>) -> String {
    rank.map_or_else(|| "-".into(), |r| r.to_string())
}

/// The group page.
pub(crate) fn group(v: &GroupView) -> String {
    let running = v.ranks.iter().any(|r| r.state == RunState::Running);
    let mut o = poll_marker(running);
    let ranked = v.ranks.iter().filter(|r| r.rank.is_some()).count();
    let _ = write!(
        o,
        "<h1>group {}</h1><p class=\"muted\">{}{} · median step {}</p>",
        esc(&v.group),
        match v.world_size {
            Some(w) => format!("{ranked} of {w} ranks"),
            None => format!("{} runs", v.ranks.len()),
        },
        if running { " · running" } else { "" },
        v.median_step.map_or("-".into(), |s| s.to_string())
    );
    let mut flags = Vec::new();
    if !v.missing.is_empty() {
        flags.push(format!(
            "missing: rank{} {} (world size {})",
            if v.missing.len() == 1 { "" } else { "s" },
            v.missing
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            v.world_size.unwrap_or(0)
        ));
    }
    for r in &v.ranks {
        let who = format!("rank {} ({})", rank_label(r.rank), r.meta.name);
        match r.state {
            RunState::Crashed => flags.push(format!(
                "crashed: {who} stopped at step {} without finishing",
                r.last_step.map_or("-".into(), |s| s.to_string())
            )),
            RunState::Failed => flags.push(format!(
                "failed: {who}{}",
                r.exit_code
                    .map_or(String::new(), |c| format!(", exit code {c}"))
            )),
            _ => {}
        }
        if let Some(d) = &r.damage {
            flags.push(format!("{who}: {}", damage_notice(d, Some(r.state))));
        }
    }
    for s in &v.stragglers {
        flags.push(format!(
            "straggler: rank {} at step {}, {} steps behind the median (threshold {})",
            rank_label(s.rank),
            s.last_step.map_or("-".into(), |x| x.to_string()),
            s.behind,
            v.straggler_lag
        ));
    }
    for c in &v.conflicts {
        flags.push(format!(
            "conflict: rank {} is claimed by {} runs; showing {} ({})",
            c.rank,
            c.superseded.len() + 1,
            c.kept.name,
            c.kept.id
        ));
    }
    if !flags.is_empty() {
        o.push_str("<ul class=\"flags\" id=\"flags\">");
        for f in flags {
            let _ = write!(o, "<li>{}</li>", esc(&f));
        }
        o.push_str("</ul>");
    }
    o.push_str("<table id=\"ranks\"><thead><tr><th class=\"num\">rank</th><th>name</th><th>state</th><th class=\"num\">steps</th><th class=\"num\">last step</th><th class=\"num\">duration</th><th>host</th><th class=\"num\">pid</th><th>note</th></tr></thead><tbody>");
    for r in &v.ranks {
        let mut notes = v.rank_notes(r);
        if r.state == RunState::Crashed {
            notes.push("crashed".to_string());
        }
        let state = match r.exit_code {
            Some(c) if c != 0 => format!("{} ({c})", r.state),
            _ => r.state.to_string(),
        };
        let bad = matches!(r.state, RunState::Crashed | RunState::Failed) || !notes.is_empty();
        let _ = write!(
            o,
            "<tr class=\"rank{}\"{} data-state=\"{}\"><td class=\"num\">{}</td><td>{}</td><td><span class=\"state {}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if bad { " bad" } else { "" },
            r.rank.map_or(String::new(), |k| format!(" data-rank=\"{k}\"")),
            r.state.as_str(),
            rank_label(r.rank),
            run_link(&r.meta.id, &r.meta.name),
            r.state.as_str(),
            esc(&state),
            r.steps,
            r.last_step.map_or("-".into(), |s| s.to_string()),
            esc(&crate::human::duration(r.duration_s)),
            esc(&r.meta.host),
            r.meta.pid,
            esc(&notes.join("; ")),
        );
    }
    o.push_str("</tbody></table>");
    if v.metrics.is_empty() {
        o.push_str("<p class=\"empty\">no metrics logged yet</p>");
        return o;
    }
    o.push_str("<h2>Metrics</h2><div class=\"legend\">click a rank to highlight it: ");
    for (i, r) in v.ranks.iter().enumerate() {
        if let Some(k) = r.rank {
            let _ = write!(
                o,
                "<span data-rank=\"{k}\" style=\"border-left:4px solid {}\">rank {k}</span>",
                palette(i)
            );
        }
    }
    o.push_str("</div><div class=\"charts\">");
    for m in &v.metrics {
        let lines = v
            .ranks
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let rm = r.metrics.iter().find(|x| x.key == m.key)?;
                Some(Line {
                    rank: r.rank,
                    color: i,
                    points: rm.series.iter().map(|&(s, y)| (s as f64, y)).collect(),
                })
            })
            .collect::<Vec<_>>();
        let chart = Chart {
            x_label: "step",
            mean: m.series.iter().map(|s| (s.step as f64, s.mean)).collect(),
            band: m
                .series
                .iter()
                .map(|s| (s.step as f64, s.min, s.max))
                .collect(),
            lines,
        };
        let caption = match &m.last {
            Some(s) => format!(
                "step {}: mean {}, min {}, max {}, std {} over {} rank{}",
                s.step,
                number(s.mean),
                number(s.min),
                number(s.max),
                number(s.std),
                s.count,
                if s.count == 1 { "" } else { "s" }
            ),
            None => "no values".into(),
        };
        let _ = write!(
            o,
            "<figure class=\"chart\" data-metric=\"{}\"><figcaption>{} <span class=\"muted\">{}</span></figcaption>{}</figure>",
            attr(&m.key),
            esc(&m.key),
            esc(&caption),
            chart.svg(&m.key)
        );
    }
    o.push_str("</div>");
    o
}

fn palette(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// The group page while the first read of its logs goes on.
pub(crate) fn group_reading(group: &str, logs: &[std::path::PathBuf]) -> String {
    let bytes: u64 = logs
        .iter()
        .filter_map(|l| std::fs::metadata(l).ok())
        .map(|m| m.len())
        .sum();
    format!(
        "{}<h1>group {}</h1><div class=\"notice\" id=\"reading\">reading the logs of {} runs ({:.1} MB) for the first time; this page fills in by itself</div>",
        poll_marker(true),
        esc(group),
        logs.len(),
        bytes as f64 / 1e6
    )
}

/// A page that says what went wrong.
pub(crate) fn problem(title: &str, message: &str) -> String {
    format!(
        "<h1>{}</h1><div class=\"notice error\">{}</div><p><a href=\"/\">all runs</a></p>",
        esc(title),
        esc(message)
    )
}

//! How ranklog's records become MLflow metrics, params and tags.
//!
//! | ranklog | MLflow |
//! |---|---|
//! | project | experiment (by name) |
//! | run name, renames | `run_name`, tag `mlflow.runName` |
//! | run id, group, job type, rank, world size, host | tags `ranklog.run_id`, `ranklog.group`, `ranklog.job_type`, `ranklog.rank`, … |
//! | config | params, nested keys joined with `.`; a later different value of a param goes to tag `ranklog.param.<key>` (MLflow params cannot change) |
//! | history rows | metrics `(key, value, step, timestamp in ms since the epoch)` |
//! | summary | tags `ranklog.summary.<key>` (JSON text) |
//! | git | tags `mlflow.source.git.commit`, `mlflow.source.git.branch`, `mlflow.source.git.repoURL`, `ranklog.git.dirty` |
//! | exit | `runs/update` status `FINISHED`/`FAILED` and end time; tags `ranklog.exit_code`, `ranklog.exit_message` |
//! | lost ranks, dropped rows | tags `ranklog.lost.rank<r>`, `ranklog.dropped.rank<r>` |
//!
//! MLflow accepts keys of at most 250 characters made of ASCII letters,
//! digits, `_ - . : /` and space, that stay the same under path
//! normalization. Any other key is mapped deterministically: each other
//! character becomes `_`, empty, `.` and `..` path segments are removed, and
//! `_` plus 8 hex digits of a hash of the original key is appended, so two
//! keys never map to one. Each mapping is recorded in a tag
//! `ranklog.renamed.<hash>` holding `{"key": original, "mlflow_key": mapped}`.
//! Param values longer than 6000 characters and tag values longer than 8000
//! are cut, and the cut is recorded in tag `ranklog.truncated.<hash>`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::record::{ExitState, Record, Start};

/// Longest key MLflow accepts.
pub(crate) const MAX_KEY_LEN: usize = 250;
/// Longest param value MLflow accepts.
pub(crate) const MAX_PARAM_VALUE_LEN: usize = 6000;
/// Longest tag value MLflow accepts.
pub(crate) const MAX_TAG_VALUE_LEN: usize = 8000;

/// One thing to send in a `log-batch`, or a point in the log up to which
/// everything before has been turned into items.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Metric {
        key: Arc<str>,
        value: f64,
        timestamp_ms: i64,
        step: i64,
    },
    Param {
        key: String,
        value: String,
    },
    Tag {
        key: String,
        value: String,
    },
    /// Every record before this log offset has been mapped.
    Checkpoint(u64),
}

/// The status of a run that ended on purpose, as MLflow names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteStatus {
    Finished,
    Failed,
    Killed,
}

impl RemoteStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RemoteStatus::Finished => "FINISHED",
            RemoteStatus::Failed => "FAILED",
            RemoteStatus::Killed => "KILLED",
        }
    }
}

/// Turns records into items; keeps what later records need (key ids, params
/// already sent, the start time).
#[derive(Default)]
pub(crate) struct Mapper {
    start_unix_us: i64,
    keys: HashMap<u32, Arc<str>>,
    params: HashMap<String, String>,
    dropped: HashMap<u32, u64>,
    /// Latest time seen in the log, microseconds since the start.
    pub last_t_us: i64,
    /// The run's name as last set.
    pub name: Option<String>,
    /// How the run ended, if the log says so, with the end time (ms since the epoch).
    pub exit: Option<(RemoteStatus, i64)>,
    /// Keys already recorded as renamed.
    renamed: HashSet<String>,
}

impl Mapper {
    /// A mapper for a run that started at `start` (the log's first record).
    pub(crate) fn new(start: &Start) -> Mapper {
        Mapper {
            start_unix_us: start.start_unix_us,
            name: Some(start.name.clone()),
            ..Mapper::default()
        }
    }

    /// Milliseconds since the epoch of a time in microseconds since the start.
    ///
    /// Times are sent as the log has them, even when the clock went
    /// backwards during the run (earlier times after later ones); only a
    /// time before 1970, which MLflow refuses ("timestamp must be a
    /// nonnegative long"), is sent as 0.
    pub(crate) fn epoch_ms(&self, t_us: i64) -> i64 {
        (self.start_unix_us.saturating_add(t_us))
            .div_euclid(1000)
            .max(0)
    }

    /// Maps one record, passing its items to `out`.
    pub(crate) fn apply(&mut self, record: Record, out: &mut impl FnMut(Item)) {
        match record {
            Record::Start(_) => {}
            Record::Key { id, name } => {
                let mapped = self.key(&name, out);
                self.keys.insert(id, mapped);
            }
            Record::History(row) => {
                self.last_t_us = self.last_t_us.max(row.t_us);
                let timestamp_ms = self.epoch_ms(row.t_us);
                let step = i64::try_from(row.step).unwrap_or(i64::MAX);
                for (id, value) in row.values {
                    if let Some(key) = self.keys.get(&id) {
                        out(Item::Metric {
                            key: key.clone(),
                            value,
                            timestamp_ms,
                            step,
                        });
                    }
                }
            }
            Record::Config { json } => {
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&json) {
                    let mut flat = Vec::new();
                    flatten("", &serde_json::Value::Object(map), &mut flat);
                    for (key, value) in flat {
                        self.param(key, value, out);
                    }
                }
            }
            Record::Summary { key, json } => {
                let tag = self.tag_key(&format!("ranklog.summary.{key}"), out);
                self.tag(tag, json, out);
            }
            Record::Name { name } => {
                self.name = Some(name.clone());
                out(Item::Tag {
                    key: "mlflow.runName".into(),
                    value: name,
                });
            }
            Record::Git(git) => {
                if let Some(c) = git.commit {
                    self.tag("mlflow.source.git.commit".into(), c, out);
                }
                if let Some(b) = git.branch {
                    self.tag("mlflow.source.git.branch".into(), b, out);
                }
                if let Some(r) = git.remote {
                    self.tag("mlflow.source.git.repoURL".into(), r, out);
                }
                self.tag("ranklog.git.dirty".into(), git.dirty.to_string(), out);
            }
            Record::Heartbeat { t_us } => self.last_t_us = self.last_t_us.max(t_us),
            Record::RankLost { rank, reason } => {
                self.tag(format!("ranklog.lost.rank{rank}"), reason, out);
            }
            Record::Dropped { rank, count } => {
                let total = self.dropped.entry(rank).or_default();
                *total += count;
                let total = total.to_string();
                self.tag(format!("ranklog.dropped.rank{rank}"), total, out);
            }
            Record::Exit(exit) => {
                self.last_t_us = self.last_t_us.max(exit.t_us);
                self.tag("ranklog.exit_code".into(), exit.code.to_string(), out);
                if let Some(m) = exit.message {
                    self.tag("ranklog.exit_message".into(), m, out);
                }
                let status = match exit.state {
                    ExitState::Finished => RemoteStatus::Finished,
                    ExitState::Failed => RemoteStatus::Failed,
                };
                // The end is the latest time seen, so it is never before
                // the start or a metric even when the clock went backwards.
                self.exit = Some((status, self.epoch_ms(self.last_t_us)));
            }
        }
    }

    /// A valid MLflow key for `key`, recording a rename the first time.
    fn key(&mut self, key: &str, out: &mut impl FnMut(Item)) -> Arc<str> {
        match map_key(key) {
            None => Arc::from(key),
            Some(mapped) => {
                if self.renamed.insert(key.to_string()) {
                    out(Item::Tag {
                        key: format!("ranklog.renamed.{:08x}", hash32(key)),
                        value: serde_json::json!({"key": key, "mlflow_key": mapped}).to_string(),
                    });
                }
                Arc::from(mapped)
            }
        }
    }

    fn tag_key(&mut self, key: &str, out: &mut impl FnMut(Item)) -> String {
        self.key(key, out).to_string()
    }

    fn param(&mut self, key: String, value: String, out: &mut impl FnMut(Item)) {
        let key = self.key(&key, out).to_string();
        let value = self.cut(&key, value, MAX_PARAM_VALUE_LEN, out);
        match self.params.get(&key) {
            Some(old) if *old == value => {}
            Some(_) => {
                let tag = self.tag_key(&format!("ranklog.param.{key}"), out);
                self.tag(tag, value, out);
            }
            None => {
                self.params.insert(key.clone(), value.clone());
                out(Item::Param { key, value });
            }
        }
    }

    fn tag(&mut self, key: String, value: String, out: &mut impl FnMut(Item)) {
        let value = self.cut(&key, value, MAX_TAG_VALUE_LEN, out);
        out(Item::Tag { key, value });
    }

    /// Cuts a value to `max` characters, recording the cut.
    fn cut(&mut self, key: &str, value: String, max: usize, out: &mut impl FnMut(Item)) -> String {
        if value.chars().count() <= max {
            return value;
        }
        let total = value.chars().count();
        out(Item::Tag {
            key: format!("ranklog.truncated.{:08x}", hash32(key)),
            value: serde_json::json!({"key": key, "chars": total, "kept": max}).to_string(),
        });
        value.chars().take(max).collect()
    }
}

/// The tags a remote run is created with.
pub(crate) fn start_tags(
    start: &Start,
    meta_rank: Option<crate::RankInfo>,
) -> Vec<(String, String)> {
    let mut tags = vec![
        ("ranklog.run_id".to_string(), start.id.clone()),
        ("ranklog.project".to_string(), start.project.clone()),
        ("ranklog.host".to_string(), start.host.clone()),
        ("ranklog.pid".to_string(), start.pid.to_string()),
        ("mlflow.runName".to_string(), start.name.clone()),
    ];
    if let Some(g) = &start.group {
        tags.push(("ranklog.group".into(), g.clone()));
    }
    if let Some(j) = &start.job_type {
        tags.push(("ranklog.job_type".into(), j.clone()));
    }
    if let Some(r) = start.rank.or(meta_rank) {
        tags.push(("ranklog.rank".into(), r.rank.to_string()));
        tags.push(("ranklog.local_rank".into(), r.local_rank.to_string()));
        tags.push(("ranklog.world_size".into(), r.world_size.to_string()));
        tags.push((
            "ranklog.local_world_size".into(),
            r.local_world_size.to_string(),
        ));
        tags.push(("ranklog.node_rank".into(), r.node_rank.to_string()));
    }
    for (k, v) in &mut tags {
        if let Some(m) = map_key(k) {
            *k = m;
        }
        if v.chars().count() > MAX_TAG_VALUE_LEN {
            *v = v.chars().take(MAX_TAG_VALUE_LEN).collect();
        }
    }
    tags
}

/// `None` if MLflow accepts `key` as it is, else the key to use instead.
pub(crate) fn map_key(key: &str) -> Option<String> {
    if is_valid_key(key) {
        return None;
    }
    let cleaned: String = key
        .chars()
        .map(|c| if allowed_char(c) { c } else { '_' })
        .collect();
    let segments: Vec<&str> = cleaned
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect();
    let mut base = segments.join("/");
    let suffix = format!("_{:08x}", hash32(key));
    let room = MAX_KEY_LEN - suffix.len();
    if base.len() > room {
        base.truncate(room);
    }
    let mut mapped = format!("{}{suffix}", base.trim_end_matches('/'));
    if mapped.starts_with('_') && base.is_empty() {
        mapped = format!("key{suffix}");
    }
    Some(mapped)
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/')
}

/// Whether MLflow takes `key` unchanged: allowed characters, at most 250 of
/// them, and unchanged by POSIX path normalization.
pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.chars().all(allowed_char)
        && !key.starts_with('/')
        && !key.ends_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// FNV-1a, 32 bits: stable across versions and platforms.
pub(crate) fn hash32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Flattens a config object into `(a.b.c, value)` pairs: strings as they
/// are, anything else as JSON text; empty objects stay as `{}`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_at(start_unix_us: i64) -> Start {
        Start {
            id: "abc".into(),
            name: "n".into(),
            project: "p".into(),
            group: None,
            job_type: None,
            rank: None,
            start_unix_us,
            host: "h".into(),
            pid: 1,
        }
    }

    #[test]
    fn valid_keys_are_kept() {
        for k in ["loss", "train/loss", "a.b-c_d:e f", "x/y/z"] {
            assert_eq!(map_key(k), None, "{k}");
        }
    }

    #[test]
    fn invalid_keys_map_deterministically_and_distinctly() {
        let cases = ["λoss", "a//b", "/abs", "a/./b", "../x", "trail/", "", "a@b"];
        let mut seen = std::collections::HashSet::new();
        for k in cases {
            let m = map_key(k).unwrap();
            assert!(is_valid_key(&m), "{k:?} -> {m:?}");
            assert_eq!(map_key(k).unwrap(), m);
            assert!(seen.insert(m));
        }
        let long = "k".repeat(400);
        let m = map_key(&long).unwrap();
        assert!(m.len() <= MAX_KEY_LEN && is_valid_key(&m));
        assert_ne!(map_key("a@b"), map_key("a#b"));
    }

    #[test]
    fn times_from_a_clock_that_went_backwards_stay_valid_for_mlflow() {
        let start = start_at(1_800_000_000_000_000);
        let mut m = Mapper::new(&start);
        let mut items = Vec::new();
        let key = Record::Key {
            id: 0,
            name: "loss".into(),
        };
        m.apply(key, &mut |i| items.push(i));
        // 5 s in, then the clock steps back 2 h (before the start), then
        // back before 1970.
        for (step, t_us) in [
            (0u64, 5_000_000i64),
            (1, -7_200_000_000),
            (2, -1_900_000_000_000_000),
        ] {
            let row = crate::record::Row {
                step,
                t_us,
                values: vec![(0, step as f64)],
            };
            m.apply(Record::History(row), &mut |i| items.push(i));
        }
        m.apply(
            Record::Exit(crate::record::Exit {
                state: ExitState::Finished,
                code: 0,
                message: None,
                t_us: -7_100_000_000,
            }),
            &mut |i| items.push(i),
        );
        let stamps: Vec<(i64, i64)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Metric {
                    step, timestamp_ms, ..
                } => Some((*step, *timestamp_ms)),
                _ => None,
            })
            .collect();
        // As given (earlier after later), except before 1970.
        assert_eq!(
            stamps,
            vec![
                (0, 1_800_000_005_000),
                (1, 1_800_000_000_000 - 7_200_000),
                (2, 0)
            ]
        );
        // The end is not before the start nor before any metric.
        assert_eq!(m.exit, Some((RemoteStatus::Finished, 1_800_000_005_000)));
    }

    #[test]
    fn config_flattens_and_changed_params_become_tags() {
        let start = start_at(1_000_000);
        let mut m = Mapper::new(&start);
        let mut items = Vec::new();
        m.apply(
            Record::Config {
                json: r#"{"opt":{"lr":0.1,"name":"adam"},"layers":[1,2]}"#.into(),
            },
            &mut |i| items.push(i),
        );
        m.apply(
            Record::Config {
                json: r#"{"opt":{"lr":0.2}}"#.into(),
            },
            &mut |i| items.push(i),
        );
        assert!(items.contains(&Item::Param {
            key: "opt.lr".into(),
            value: "0.1".into()
        }));
        assert!(items.contains(&Item::Param {
            key: "opt.name".into(),
            value: "adam".into()
        }));
        assert!(items.contains(&Item::Param {
            key: "layers".into(),
            value: "[1,2]".into()
        }));
        assert!(items.contains(&Item::Tag {
            key: "ranklog.param.opt.lr".into(),
            value: "0.2".into()
        }));
        assert_eq!(m.epoch_ms(2500), 1002);
    }
}

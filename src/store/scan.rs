//! Reads a whole run directory into what tables and pages show.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::meta::{self, FinalSummary, Meta, LOG_FILE, META_FILE, SUMMARY_FILE};
use super::reader::{Damage, Reader};
use super::state::{self, RunState};
use crate::error::Result;
use crate::record::{Exit, GitInfo, Record};

/// Everything a run's files say about it, read in one pass over its log.
#[derive(Debug, Clone)]
pub struct RunScan {
    /// The run directory.
    pub dir: PathBuf,
    /// `meta.json`.
    pub meta: Meta,
    /// Running, finished, failed or crashed.
    pub state: RunState,
    /// The exit record, if the run ended on purpose.
    pub exit: Option<Exit>,
    /// Distinct steps logged.
    pub steps: u64,
    /// The highest step logged.
    pub last_step: Option<u64>,
    /// Metric values logged.
    pub points: u64,
    /// Microseconds from start to the last record.
    pub last_t_us: i64,
    /// The merged config.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The summary values (last write wins).
    pub summary: BTreeMap<String, serde_json::Value>,
    /// Per-metric statistics, in the order the keys first appeared.
    pub metrics: Vec<MetricStats>,
    /// Git state, if captured.
    pub git: Option<GitInfo>,
    /// Ranks a single-writer owner lost, with the reason.
    pub lost_ranks: Vec<(u32, String)>,
    /// Rows dropped under a drop policy, per rank.
    pub dropped: BTreeMap<u32, u64>,
    /// Where the log stopped being readable, if it did.
    pub damage: Option<Damage>,
    /// Size of the log in bytes.
    pub log_bytes: u64,
}

/// Statistics of one metric over a run.
#[derive(Debug, Clone)]
pub struct MetricStats {
    /// The key.
    pub key: String,
    /// Values logged.
    pub count: u64,
    /// Step of the last value.
    pub last_step: u64,
    /// The last value.
    pub last: f64,
    /// Smallest value (NaN ignored; NaN if every value was NaN).
    pub min: f64,
    /// Largest value (NaN ignored; NaN if every value was NaN).
    pub max: f64,
    /// Bucket means over the whole run, for a sparkline (at most [`SPARK_BUCKETS`]).
    pub spark: Vec<f64>,
    spark_acc: Downsample,
}

/// Most buckets kept for a metric's sparkline.
pub const SPARK_BUCKETS: usize = 48;

impl MetricStats {
    fn new(key: String) -> MetricStats {
        MetricStats {
            key,
            count: 0,
            last_step: 0,
            last: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            spark: Vec::new(),
            spark_acc: Downsample::default(),
        }
    }

    fn push(&mut self, step: u64, v: f64) {
        self.count += 1;
        self.last_step = step;
        self.last = v;
        if !v.is_nan() {
            self.min = if self.min.is_nan() {
                v
            } else {
                self.min.min(v)
            };
            self.max = if self.max.is_nan() {
                v
            } else {
                self.max.max(v)
            };
        }
        self.spark_acc.push(v);
    }
}

/// Means of consecutive values in at most `SPARK_BUCKETS` buckets, whatever
/// the number of values: when the buckets are full, neighbours merge and each
/// bucket then covers twice as many values.
#[derive(Debug, Clone, Default)]
struct Downsample {
    buckets: Vec<(f64, u64)>,
    width: u64,
}

impl Downsample {
    fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.width == 0 {
            self.width = 1;
        }
        match self.buckets.last_mut() {
            Some((sum, n)) if *n < self.width => {
                *sum += v;
                *n += 1;
            }
            _ => {
                if self.buckets.len() == SPARK_BUCKETS {
                    self.buckets = self
                        .buckets
                        .chunks(2)
                        .map(|c| c.iter().fold((0.0, 0), |(s, n), (s2, n2)| (s + s2, n + n2)))
                        .collect();
                    self.width *= 2;
                    return self.push(v);
                }
                self.buckets.push((v, 1));
            }
        }
    }

    fn means(&self) -> Vec<f64> {
        self.buckets.iter().map(|(s, n)| s / *n as f64).collect()
    }
}

/// Reads a run directory: `meta.json`, the whole log, and its state.
///
/// # Errors
///
/// [`Error::Read`](crate::Error::Read)/[`Error::BadJson`](crate::Error::BadJson) if `meta.json` is missing or invalid,
/// [`Error::Read`](crate::Error::Read)/[`Error::NotARunLog`](crate::Error::NotARunLog) if the log cannot be opened. A log
/// that is damaged part-way is not an error: the readable prefix is returned
/// with [`RunScan::damage`] set.
pub fn scan(dir: &Path) -> Result<RunScan> {
    let meta: Meta = meta::read_json(&dir.join(META_FILE))?;
    let log = dir.join(LOG_FILE);
    let mut reader = Reader::open(&log)?;
    let mut s = RunScan {
        dir: dir.to_path_buf(),
        state: RunState::Running,
        exit: None,
        steps: 0,
        last_step: None,
        points: 0,
        last_t_us: 0,
        config: serde_json::Map::new(),
        summary: BTreeMap::new(),
        metrics: Vec::new(),
        git: meta.git.clone(),
        lost_ranks: Vec::new(),
        dropped: BTreeMap::new(),
        damage: None,
        log_bytes: std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0),
        meta,
    };
    // Key id -> index in `metrics`.
    let mut index: HashMap<u32, usize> = HashMap::new();
    for record in reader.by_ref() {
        match record {
            Record::Key { id, name } => {
                let at = s
                    .metrics
                    .iter()
                    .position(|m| m.key == name)
                    .unwrap_or_else(|| {
                        s.metrics.push(MetricStats::new(name));
                        s.metrics.len() - 1
                    });
                index.insert(id, at);
            }
            Record::History(row) => {
                if s.last_step != Some(row.step) {
                    s.steps += 1;
                    s.last_step = Some(row.step);
                }
                s.last_t_us = s.last_t_us.max(row.t_us);
                for (id, v) in row.values {
                    if let Some(m) = index.get(&id).and_then(|&i| s.metrics.get_mut(i)) {
                        m.push(row.step, v);
                        s.points += 1;
                    }
                }
            }
            Record::Config { json } => {
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&json) {
                    s.config.extend(map);
                }
            }
            Record::Summary { key, json } => {
                s.summary.insert(key, crate::run::summary::parse(&json));
            }
            Record::Name { name } => s.meta.name = name,
            Record::Git(git) => s.git = Some(git),
            Record::Heartbeat { t_us } => s.last_t_us = s.last_t_us.max(t_us),
            Record::RankLost { rank, reason } => s.lost_ranks.push((rank, reason)),
            Record::Dropped { rank, count } => *s.dropped.entry(rank).or_default() += count,
            Record::Exit(exit) => {
                s.last_t_us = s.last_t_us.max(exit.t_us);
                s.exit = Some(exit);
            }
            Record::Start(_) => {}
        }
    }
    s.damage = reader.damage().cloned();
    for m in &mut s.metrics {
        m.spark = m.spark_acc.means();
    }
    s.state = state::detect(&s.meta, s.exit.as_ref(), &log);
    Ok(s)
}

/// A line of a run listing: cheap to get for finished runs.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run directory.
    pub dir: PathBuf,
    /// `meta.json`.
    pub meta: Meta,
    /// Running, finished, failed or crashed.
    pub state: RunState,
    /// Distinct steps logged.
    pub steps: u64,
    /// Seconds from start to end (or to the last record).
    pub duration_s: f64,
    /// Where the log stopped being readable, if it did.
    pub damage: Option<Damage>,
}

/// Reads the listing line of a run: from `summary.json` when the run has
/// ended, else from a scan of its log.
///
/// # Errors
///
/// As [`scan`].
pub fn info(dir: &Path) -> Result<RunInfo> {
    if let Ok(fin) = meta::read_json::<FinalSummary>(&dir.join(SUMMARY_FILE)) {
        let meta: Meta = meta::read_json(&dir.join(META_FILE))?;
        let state = if fin.state == "failed" {
            RunState::Failed
        } else {
            RunState::Finished
        };
        return Ok(RunInfo {
            dir: dir.to_path_buf(),
            meta,
            state,
            steps: fin.steps,
            duration_s: fin.duration_s,
            damage: None,
        });
    }
    let s = scan(dir)?;
    Ok(RunInfo {
        dir: s.dir,
        state: s.state,
        steps: s.steps,
        duration_s: s.last_t_us as f64 / 1e6,
        damage: s.damage,
        meta: s.meta,
    })
}

/// Lists the runs under `root`, newest first; unreadable run directories are
/// skipped with a warning.
///
/// # Errors
///
/// [`Error::Read`](crate::Error::Read) if `root` cannot be listed.
pub fn list(root: &Path) -> Result<Vec<RunInfo>> {
    let mut runs: Vec<RunInfo> = super::layout::run_dirs(root)?
        .iter()
        .filter_map(|d| match info(d) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "ranklog: skipping unreadable run");
                None
            }
        })
        .collect();
    runs.sort_by(|a, b| {
        b.meta
            .start_unix_ms
            .cmp(&a.meta.start_unix_ms)
            .then_with(|| b.dir.cmp(&a.dir))
    });
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsample_keeps_bucket_count_bounded() {
        let mut d = Downsample::default();
        for i in 0..10_000 {
            d.push(i as f64);
        }
        let means = d.means();
        assert!(means.len() <= SPARK_BUCKETS && means.len() >= SPARK_BUCKETS / 2);
        assert!(means.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn stats_ignore_nan_for_min_max() {
        let mut m = MetricStats::new("x".into());
        m.push(0, f64::NAN);
        m.push(1, 2.0);
        m.push(2, f64::INFINITY);
        assert_eq!(m.min, 2.0);
        assert_eq!(m.max, f64::INFINITY);
        assert_eq!(m.last, f64::INFINITY);
        assert_eq!(m.count, 3);
    }
}

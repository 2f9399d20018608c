//! The Grouped strategy's read side: a [`GroupView`] puts the runs of one
//! group side by side, aligned by step.
//!
//! Under [`Strategy::Grouped`](crate::Strategy::Grouped) every rank of a job
//! writes its own run, and the runs share a group key (see
//! [`Settings::group`](crate::Settings::group) for how the key is found). A
//! `GroupView` reads every run of a group under a root and tells:
//!
//! - each rank's state (running, finished, failed, crashed), steps and the
//!   last, smallest and largest value of each metric ([`RankView`]);
//! - per metric and step, the mean, min, max, population standard deviation
//!   and count across ranks ([`StepStats`]): the last step exactly
//!   ([`MetricView::last`]), the whole run down-sampled to at most
//!   [`GroupOptions::resolution`] buckets ([`MetricView::series`]), and every
//!   step exactly through [`GroupView::stream`];
//! - ranks that lag ([`Straggler`]), ranks that are missing (the world size
//!   recorded by the ranks says 8 and only 7 runs exist), and ranks claimed by
//!   more than one run ([`Conflict`]).
//!
//! # Memory
//!
//! The view is built by merging the per-rank logs by step as they are read
//! (they are written in step order). It holds one frame per rank while
//! reading and, per rank and metric, a few numbers and a series of at most
//! `resolution` buckets: memory grows with ranks × metrics, not with points.
//!
//! # Rules
//!
//! - A rank contributes its last value of a metric at a step (logging twice
//!   at one step overwrites). NaN values are counted as logged for the rank
//!   but left out of the statistics across ranks.
//! - Two runs claiming the same rank are never merged: the newest one (by
//!   start time) is used and the others are listed in [`GroupView::conflicts`].
//! - Runs of the group without rank information (single processes that set
//!   the group) are members too, listed after the ranked runs.

pub(crate) mod key;
mod merge;
mod series;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{self, Damage, Meta, RunState};

pub use series::StepStats;

/// How a [`GroupView`] is built.
#[derive(Debug, Clone)]
#[must_use]
pub struct GroupOptions {
    /// Most buckets in each down-sampled series (default 240).
    pub resolution: usize,
    /// A rank whose last step is more than this many steps behind the group's
    /// median last step is a straggler; `None` (the default) means 10% of the
    /// median, at least 10 steps.
    pub straggler_lag: Option<u64>,
    /// Only runs of this project (default: any project).
    pub project: Option<String>,
}

impl Default for GroupOptions {
    fn default() -> GroupOptions {
        GroupOptions {
            resolution: 240,
            straggler_lag: None,
            project: None,
        }
    }
}

/// The runs of one group, side by side.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ranklog::{GroupView, Mode, Settings};
/// for rank in 0..2 {
///     // What every rank of a `ranklog launch` job does, here in one process.
///     let run = ranklog::init(
///         Settings::new().dir(dir.path()).mode(Mode::Offline).silent(true)
///             .group("demo").name(format!("demo-rank{rank}")),
///     )?;
///     run.log([("loss", 1.0 + rank as f64)])?;
///     run.finish()?;
/// }
/// let view = GroupView::load(dir.path(), "demo")?;
/// assert_eq!(view.ranks.len(), 2);
/// let loss = view.metric("loss").and_then(|m| m.last).ok_or("no loss")?;
/// assert_eq!((loss.count, loss.mean, loss.min, loss.max), (2, 1.5, 1.0, 2.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct GroupView {
    /// The group key.
    pub group: String,
    /// The root directory searched.
    pub root: PathBuf,
    /// The job's world size, as recorded by its ranks (the largest one seen).
    pub world_size: Option<u32>,
    /// The member runs: ranked runs by rank, then runs without a rank.
    pub ranks: Vec<RankView>,
    /// Ranks below the world size that no run claims.
    pub missing: Vec<u32>,
    /// Ranks claimed by several runs.
    pub conflicts: Vec<Conflict>,
    /// The median of the members' last steps.
    pub median_step: Option<u64>,
    /// The lag beyond which a rank counts as a straggler.
    pub straggler_lag: u64,
    /// Members that lag the median.
    pub stragglers: Vec<Straggler>,
    /// The metrics, in the order they were first seen.
    pub metrics: Vec<MetricView>,
}

/// One run of a group.
#[derive(Debug, Clone)]
pub struct RankView {
    /// The rank, if the run recorded one.
    pub rank: Option<u32>,
    /// The run's `meta.json` (id, name, host, pid, rank, ...).
    pub meta: Meta,
    /// The run directory.
    pub dir: PathBuf,
    /// Running, finished, failed or crashed.
    pub state: RunState,
    /// The exit code, if the run ended on purpose.
    pub exit_code: Option<i32>,
    /// Distinct steps logged.
    pub steps: u64,
    /// The highest step logged.
    pub last_step: Option<u64>,
    /// Seconds from start to the last record.
    pub duration_s: f64,
    /// Where the log stopped being readable, if it did.
    pub damage: Option<Damage>,
    /// Per-metric statistics of this rank, in the group's metric order.
    pub metrics: Vec<RankMetric>,
}

/// One rank's statistics of one metric.
#[derive(Debug, Clone)]
pub struct RankMetric {
    /// The key.
    pub key: String,
    /// Values logged.
    pub count: u64,
    /// The last value.
    pub last: f64,
    /// Smallest value (NaN ignored).
    pub min: f64,
    /// Largest value (NaN ignored).
    pub max: f64,
    /// `(first step of bucket, mean of the rank's values in it)`, on the
    /// same grid as [`MetricView::series`].
    pub series: Vec<(u64, f64)>,
}

/// One metric across the ranks of a group.
#[derive(Debug, Clone)]
pub struct MetricView {
    /// The key.
    pub key: String,
    /// Statistics at the highest step any rank logged this metric.
    pub last: Option<StepStats>,
    /// Statistics per bucket of steps, down-sampled to at most
    /// [`GroupOptions::resolution`] buckets (one step per bucket while the
    /// run is short enough).
    pub series: Vec<StepStats>,
}

/// A rank that lags the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Straggler {
    /// The rank (`None` for a member without rank).
    pub rank: Option<u32>,
    /// Its last step (`None` if it logged none).
    pub last_step: Option<u64>,
    /// How many steps it is behind the median.
    pub behind: u64,
}

/// A rank claimed by more than one run.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The rank.
    pub rank: u32,
    /// The run used in the view (the newest).
    pub kept: RunRef,
    /// The other runs, left out of the view.
    pub superseded: Vec<RunRef>,
}

/// Names a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    /// Run id.
    pub id: String,
    /// Run name.
    pub name: String,
    /// Run directory.
    pub dir: PathBuf,
    /// Start, RFC 3339.
    pub started: String,
}

impl GroupView {
    /// What is wrong with one rank, for people: straggling, a damaged log,
    /// other runs claiming the same rank. Tables and pages show these.
    pub fn rank_notes(&self, r: &RankView) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(s) = self
            .stragglers
            .iter()
            .find(|s| s.rank == r.rank && r.rank.is_some())
        {
            notes.push(format!("straggler ({} steps behind)", s.behind));
        }
        if r.damage.is_some() {
            notes.push("damaged log".to_string());
        }
        if let Some(c) = self.conflicts.iter().find(|c| Some(c.rank) == r.rank) {
            notes.push(format!(
                "conflict: {} other run(s) claim this rank",
                c.superseded.len()
            ));
        }
        notes
    }

    /// Reads every run of `group` under `root` with the default options.
    ///
    /// # Errors
    ///
    /// [`Error::GroupNotFound`] (listing the groups that exist) when no run
    /// belongs to the group, [`Error::Read`] when the root cannot be listed.
    /// A member whose log cannot be read is not an error: it is shown with
    /// no steps and [`RankView::damage`] at byte 0.
    pub fn load(root: &Path, group: &str) -> Result<GroupView> {
        GroupView::stream(root, group, GroupOptions::default(), |_, _, _| {})
    }

    /// Reads every run of `group` under `root`.
    ///
    /// # Errors
    ///
    /// As [`GroupView::load`].
    pub fn load_with(root: &Path, group: &str, options: GroupOptions) -> Result<GroupView> {
        GroupView::stream(root, group, options, |_, _, _| {})
    }

    /// Reads every run of `group` under `root`, handing `on_step` the exact
    /// statistics of every metric at every step, in step order, as the merge
    /// produces them (nothing of them is kept unless `on_step` keeps it).
    ///
    /// # Errors
    ///
    /// As [`GroupView::load`].
    pub fn stream(
        root: &Path,
        group: &str,
        options: GroupOptions,
        mut on_step: impl FnMut(u64, &str, &StepStats),
    ) -> Result<GroupView> {
        let (members, conflicts, all_groups) =
            find_members(root, group, options.project.as_deref())?;
        if members.is_empty() {
            return Err(Error::GroupNotFound {
                group: group.to_string(),
                root: root.to_path_buf(),
                groups: all_groups,
            });
        }
        let logs: Vec<PathBuf> = members
            .iter()
            .map(|(d, _)| d.join(store::LOG_FILE))
            .collect();
        let log_refs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
        let merged = merge::merge(&log_refs, options.resolution, &mut on_step)?;
        let grid = merged.grid;
        let mut ranks: Vec<RankView> = members
            .into_iter()
            .zip(merged.members)
            .zip(&logs)
            .map(|(((dir, mut meta), stats), log)| {
                if let Some(name) = stats.name {
                    meta.name = name;
                }
                let state = store::detect_state(&meta, stats.exit.as_ref(), log);
                let metrics = stats
                    .metrics
                    .iter()
                    .enumerate()
                    .filter_map(|(g, m)| {
                        let m = m.as_ref()?;
                        Some(RankMetric {
                            key: merged.keys[g].clone(),
                            count: m.count,
                            last: m.last,
                            min: m.min,
                            max: m.max,
                            series: m.series.points(&grid),
                        })
                    })
                    .collect();
                RankView {
                    rank: meta.rank.map(|r| r.rank),
                    exit_code: stats.exit.as_ref().map(|e| e.code),
                    state,
                    steps: stats.steps,
                    last_step: stats.last_step,
                    duration_s: stats.last_t_us as f64 / 1e6,
                    damage: stats.damage,
                    metrics,
                    dir,
                    meta,
                }
            })
            .collect();
        ranks.sort_by_key(|r| (r.rank.is_none(), r.rank, r.meta.start_unix_ms));
        let world_size = ranks
            .iter()
            .filter_map(|r| r.meta.rank.map(|k| k.world_size))
            .max();
        let present: BTreeSet<u32> = ranks.iter().filter_map(|r| r.rank).collect();
        let missing = (0..world_size.unwrap_or(0))
            .filter(|r| !present.contains(r))
            .collect();
        let (median_step, straggler_lag, stragglers) = stragglers(&ranks, options.straggler_lag);
        let metrics = merged
            .keys
            .into_iter()
            .zip(merged.series)
            .zip(merged.last)
            .map(|((key, series), last)| MetricView {
                key,
                last,
                series: series.stats(&grid),
            })
            .collect();
        Ok(GroupView {
            group: group.to_string(),
            root: root.to_path_buf(),
            world_size,
            ranks,
            missing,
            conflicts,
            median_step,
            straggler_lag,
            stragglers,
            metrics,
        })
    }

    /// The metric named `key`, if any rank logged it.
    pub fn metric(&self, key: &str) -> Option<&MetricView> {
        self.metrics.iter().find(|m| m.key == key)
    }

    /// The member run of rank `rank`.
    pub fn rank(&self, rank: u32) -> Option<&RankView> {
        self.ranks.iter().find(|r| r.rank == Some(rank))
    }
}

/// The group's members (directory and meta), its conflicts, and every group
/// under the root (for the error when the group is not there).
#[allow(clippy::type_complexity)]
fn find_members(
    root: &Path,
    group: &str,
    project: Option<&str>,
) -> Result<(Vec<(PathBuf, Meta)>, Vec<Conflict>, Vec<String>)> {
    let mut groups = BTreeSet::new();
    let mut unranked = Vec::new();
    let mut by_rank: BTreeMap<u32, Vec<(PathBuf, Meta)>> = BTreeMap::new();
    for dir in store::run_dirs(root)? {
        let meta: Meta = match store::read_meta(&dir) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "ranklog: skipping unreadable run");
                continue;
            }
        };
        if project.is_some_and(|p| p != meta.project) {
            continue;
        }
        let Some(g) = &meta.group else { continue };
        if g != group {
            groups.insert(g.clone());
            continue;
        }
        if !dir.join(store::LOG_FILE).is_file() {
            tracing::warn!(dir = %dir.display(), "ranklog: skipping a run without a log");
            continue;
        }
        match meta.rank {
            Some(r) => by_rank.entry(r.rank).or_default().push((dir, meta)),
            None => unranked.push((dir, meta)),
        }
    }
    let mut members = Vec::new();
    let mut conflicts = Vec::new();
    let run_ref = |(dir, m): &(PathBuf, Meta)| RunRef {
        id: m.id.clone(),
        name: m.name.clone(),
        dir: dir.clone(),
        started: m.started.clone(),
    };
    for (rank, mut runs) in by_rank {
        runs.sort_by(|a, b| {
            b.1.start_unix_ms
                .cmp(&a.1.start_unix_ms)
                .then_with(|| b.0.cmp(&a.0))
        });
        let mut runs = runs.into_iter();
        let Some(kept) = runs.next() else { continue };
        let superseded: Vec<RunRef> = runs.map(|r| run_ref(&r)).collect();
        if !superseded.is_empty() {
            conflicts.push(Conflict {
                rank,
                kept: run_ref(&kept),
                superseded,
            });
        }
        members.push(kept);
    }
    members.extend(unranked);
    Ok((members, conflicts, groups.into_iter().collect()))
}

fn stragglers(ranks: &[RankView], lag: Option<u64>) -> (Option<u64>, u64, Vec<Straggler>) {
    let mut lasts: Vec<u64> = ranks.iter().filter_map(|r| r.last_step).collect();
    lasts.sort_unstable();
    let median = match lasts.len() {
        0 => None,
        n if n % 2 == 1 => Some(lasts[n / 2]),
        n => Some(lasts[n / 2 - 1] + (lasts[n / 2] - lasts[n / 2 - 1]) / 2),
    };
    let lag = lag.unwrap_or_else(|| (median.unwrap_or(0) / 10).max(10));
    let Some(median) = median else {
        return (None, lag, Vec::new());
    };
    let list = ranks
        .iter()
        .filter_map(|r| {
            let behind = match r.last_step {
                Some(s) => median.saturating_sub(s),
                None => median + 1,
            };
            (behind > lag).then_some(Straggler {
                rank: r.rank,
                last_step: r.last_step,
                behind,
            })
        })
        .collect();
    (Some(median), lag, list)
}

//! What the run page shows, read from the root: runs looked up without ever
//! leaving the root, and per-run series down-sampled while the log is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{self, Damage, Meta, Reader, RunScan, RunState};

/// Most buckets of a down-sampled series: about one per two pixels of a chart.
pub(crate) const RESOLUTION: usize = 240;

/// The error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Finds the run directory with id `key` (or, failing that, the one run named
/// `key`) among the run directories of `root`.
///
/// Unlike [`store::resolve_run`], `key` is never used as a path: only names
/// of directories listed under `root` can match, so no request reaches
/// outside it.
pub(crate) fn find_run(root: &Path, key: &str) -> Result<PathBuf> {
    let dirs = store::run_dirs(root)?;
    if let Some(d) = dirs.iter().find(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .and_then(store::id_from_dir_name)
            == Some(key)
    }) {
        return Ok(d.clone());
    }
    let named: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| store::read_meta(d).is_ok_and(|m| m.name == key))
        .collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::RunNotFound {
            query: key.to_string(),
            root: root.to_path_buf(),
        }),
        many => Err(Error::AmbiguousRun {
            query: key.to_string(),
            count: many.len(),
            root: root.to_path_buf(),
        }),
    }
}

/// One bucket of a run's down-sampled series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    /// First step of the bucket.
    pub step: u64,
    /// Mean wall time of its values, seconds since the run's start.
    pub t_s: f64,
    /// Finite values in it.
    pub n: u32,
    /// Their mean.
    pub mean: f64,
    /// Their minimum.
    pub min: f64,
    /// Their maximum.
    pub max: f64,
}

/// One metric of a run, down-sampled to at most [`RESOLUTION`] buckets of
/// steps whose width doubles as the run grows.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub key: String,
    origin: Option<u64>,
    width: u64,
    acc: Vec<Acc>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    n: u32,
    sum: f64,
    sum_t: f64,
    min: f64,
    max: f64,
}

impl Acc {
    fn merge(mut self, o: &Acc) -> Acc {
        if o.n == 0 {
            return self;
        }
        if self.n == 0 {
            return *o;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.sum_t += o.sum_t;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self
    }
}

impl Series {
    fn new(key: String) -> Series {
        Series {
            key,
            origin: None,
            width: 1,
            acc: Vec::new(),
        }
    }

    fn push(&mut self, step: u64, t_s: f64, v: f64) {
        if !v.is_finite() {
            return;
        }
        let origin = *self.origin.get_or_insert(step);
        let mut index = step.saturating_sub(origin) / self.width;
        while index >= RESOLUTION as u64 {
            self.acc = self
                .acc
                .chunks(2)
                .map(|c| c.iter().fold(Acc::default(), |a, b| a.merge(b)))
                .collect();
            self.width = self.width.saturating_mul(2);
            index = step.saturating_sub(origin) / self.width;
        }
        let i = index as usize;
        if self.acc.len() <= i {
            self.acc.resize(i + 1, Acc::default());
        }
        self.acc[i] = self.acc[i].merge(&Acc {
            n: 1,
            sum: v,
            sum_t: t_s,
            min: v,
            max: v,
        });
    }

    /// The non-empty buckets.
    pub fn buckets(&self) -> Vec<Bucket> {
        let origin = self.origin.unwrap_or(0);
        self.acc
            .iter()
            .enumerate()
            .filter(|(_, a)| a.n > 0)
            .map(|(i, a)| Bucket {
                step: origin + i as u64 * self.width,
                t_s: a.sum_t / f64::from(a.n),
                n: a.n,
                mean: a.sum / f64::from(a.n),
                min: a.min,
                max: a.max,
            })
            .collect()
    }

    /// Steps per bucket.
    pub fn width(&self) -> u64 {
        self.width
    }
}

/// What the run page shows: the scan (when readable), the series, and the
/// problems found.
pub(crate) struct RunPage {
    pub dir: PathBuf,
    pub id: String,
    pub scan: Option<RunScan>,
    /// `meta.json` alone, when the log could not be read.
    pub meta: Option<Meta>,
    pub series: Vec<Series>,
    pub notices: Vec<String>,
}

/// Reads everything the run page shows; a run that is only partly readable
/// gives what can be read and a notice saying what could not.
pub(crate) fn run_page(dir: &Path) -> RunPage {
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(store::id_from_dir_name)
        .unwrap_or("?")
        .to_string();
    let mut notices = Vec::new();
    let scan = match store::scan(dir) {
        Ok(s) => Some(s),
        Err(e) => {
            notices.push(format!(
                "this run cannot be read fully: {}",
                error_chain(&e)
            ));
            None
        }
    };
    let meta = match &scan {
        Some(s) => Some(s.meta.clone()),
        None => store::read_meta(dir).ok(),
    };
    let (series, damage) = read_series(&dir.join(store::LOG_FILE));
    if let Some(d) = scan.as_ref().and_then(|s| s.damage.clone()).or(damage) {
        notices.push(damage_notice(&d, scan.as_ref().map(|s| s.state)));
    }
    if let Some(s) = &scan {
        for (rank, reason) in &s.lost_ranks {
            notices.push(format!("rank {rank} was lost: {reason}"));
        }
        for (rank, count) in &s.dropped {
            notices.push(format!(
                "rank {rank} dropped {count} rows under its drop policy"
            ));
        }
    }
    RunPage {
        dir: dir.to_path_buf(),
        id,
        scan,
        meta,
        series,
        notices,
    }
}

/// What a damaged log means for the person reading the page.
pub(crate) fn damage_notice(d: &Damage, state: Option<RunState>) -> String {
    if state == Some(RunState::Running) && d.kind == store::DamageKind::TornTail {
        format!("the log is being written ({d}); everything before it is shown")
    } else {
        format!("the log is damaged: {d}; everything before it is shown")
    }
}

/// Reads the metric series of a run log; an unreadable log gives no series.
fn read_series(log: &Path) -> (Vec<Series>, Option<Damage>) {
    let mut reader = match Reader::open(log) {
        Ok(r) => r,
        Err(_) => return (Vec::new(), None),
    };
    let mut series: Vec<Series> = Vec::new();
    let mut ids: HashMap<u32, usize> = HashMap::new();
    for record in reader.by_ref() {
        match record {
            Record::Key { id, name } => {
                let at = series
                    .iter()
                    .position(|s| s.key == name)
                    .unwrap_or_else(|| {
                        series.push(Series::new(name));
                        series.len() - 1
                    });
                ids.insert(id, at);
            }
            Record::History(row) => {
                let t = row.t_us as f64 / 1e6;
                for (id, v) in row.values {
                    if let Some(s) = ids.get(&id).and_then(|&i| series.get_mut(i)) {
                        s.push(row.step, t, v);
                    }
                }
            }
            _ => {}
        }
    }
    (series, reader.damage().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_stay_bounded_and_keep_extremes() {
        let mut s = Series::new("x".into());
        for step in 0..100_000u64 {
            let v = if step == 77_777 { 1e9 } else { step as f64 };
            s.push(step, step as f64 / 10.0, v);
        }
        s.push(100_000, 0.0, f64::NAN);
        let b = s.buckets();
        assert!(
            b.len() <= RESOLUTION && b.len() > RESOLUTION / 2,
            "{}",
            b.len()
        );
        assert_eq!(b.iter().map(|b| u64::from(b.n)).sum::<u64>(), 100_000);
        assert!(b.iter().any(|b| b.max == 1e9));
        assert_eq!(b[0].min, 0.0);
        assert!(b.windows(2).all(|w| w[0].step + s.width() == w[1].step));
    }
}

//! How the owner turns every rank's rows into the one run's rows.
//!
//! Rows are held per step until every live rank has moved past that step
//! (reported a later step, said goodbye, or been lost), so the run's rows
//! come out in step order with every rank's values together. A step waits at
//! most the straggler timeout; it is then written with the ranks that came,
//! and values that arrive later for it are written as a late row of that
//! step, never dropped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::record::{Record, Row};

/// A reduction across ranks, per key and step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reduce {
    /// Arithmetic mean, written as `<key>/mean`.
    Mean,
    /// Smallest value, written as `<key>/min`.
    Min,
    /// Largest value, written as `<key>/max`.
    Max,
    /// Sum, written as `<key>/sum`.
    Sum,
}

impl Reduce {
    fn suffix(self) -> &'static str {
        match self {
            Reduce::Mean => "mean",
            Reduce::Min => "min",
            Reduce::Max => "max",
            Reduce::Sum => "sum",
        }
    }
}

/// What the owner writes for the rows of every rank.
///
/// `loss` logged by rank 3 becomes `rank3/loss` with `per_rank`; with
/// reductions it also feeds `loss/mean`, `loss/min`, … and `loss/count` (the
/// number of ranks that contributed). NaN values are counted and propagate
/// into the mean and the sum, as they would in an all-reduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// Keep every rank's own values under `rank<r>/<key>`.
    pub per_rank: bool,
    /// Reductions across ranks written per key and step.
    pub reduce: Vec<Reduce>,
}

impl Default for Merge {
    /// Per-rank keys plus mean, min and max.
    fn default() -> Merge {
        Merge {
            per_rank: true,
            reduce: vec![Reduce::Mean, Reduce::Min, Reduce::Max],
        }
    }
}

impl std::str::FromStr for Merge {
    type Err = String;

    /// Parses `per_rank,mean,min,max,sum` (any subset, at least one).
    fn from_str(s: &str) -> Result<Merge, String> {
        let mut m = Merge {
            per_rank: false,
            reduce: Vec::new(),
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "per_rank" => m.per_rank = true,
                "mean" => m.reduce.push(Reduce::Mean),
                "min" => m.reduce.push(Reduce::Min),
                "max" => m.reduce.push(Reduce::Max),
                "sum" => m.reduce.push(Reduce::Sum),
                other => {
                    return Err(format!(
                        "unknown merge part {other:?}; use per_rank, mean, min, max, sum"
                    ))
                }
            }
        }
        if !m.per_rank && m.reduce.is_empty() {
            return Err("name at least one of per_rank, mean, min, max, sum".into());
        }
        Ok(m)
    }
}

/// Values of one step, not yet written.
struct Pending {
    since: Instant,
    t_us: i64,
    /// (rank, name id, value); the last value of a rank for a key wins.
    values: Vec<(u32, u32, f64)>,
}

/// The owner's merge state.
pub(crate) struct Merger {
    policy: Merge,
    /// Per rank: the rank's key id → name id.
    rank_keys: Vec<FxHashMap<u32, u32>>,
    names: Vec<String>,
    name_ids: FxHashMap<String, u32>,
    /// Per rank: the highest step seen.
    progress: Vec<Option<u64>>,
    live: Vec<bool>,
    pending: BTreeMap<u64, Pending>,
    /// Highest step written.
    written: Option<u64>,
    /// Values held in `pending`.
    pending_values: usize,
    out_keys: FxHashMap<String, u32>,
    per_rank_ids: FxHashMap<(u32, u32), u32>,
    reduce_ids: FxHashMap<(u32, u8), u32>,
}

/// Values held at most (16 bytes each, so about 64 MiB) before the oldest
/// step is written regardless; memory stays bounded when a rank is slow to
/// connect or stalls, without writing early in ordinary jobs.
const MAX_PENDING_VALUES: usize = 4 << 20;

impl Merger {
    pub(crate) fn new(policy: Merge, world_size: u32) -> Merger {
        let n = world_size.max(1) as usize;
        Merger {
            policy,
            rank_keys: vec![FxHashMap::default(); n],
            names: Vec::new(),
            name_ids: FxHashMap::default(),
            progress: vec![None; n],
            live: vec![true; n],
            pending: BTreeMap::new(),
            written: None,
            pending_values: 0,
            out_keys: FxHashMap::default(),
            per_rank_ids: FxHashMap::default(),
            reduce_ids: FxHashMap::default(),
        }
    }

    /// Takes one record of `rank`'s run.
    pub(crate) fn record(
        &mut self,
        rank: u32,
        record: Record,
        now: Instant,
        out: &mut impl FnMut(Record),
    ) {
        let r = rank as usize;
        if r >= self.live.len() {
            return;
        }
        match record {
            Record::Key { id, name } => {
                let name_id = match self.name_ids.get(&name) {
                    Some(&n) => n,
                    None => {
                        let n = self.names.len() as u32;
                        self.names.push(name.clone());
                        self.name_ids.insert(name, n);
                        n
                    }
                };
                self.rank_keys[r].insert(id, name_id);
            }
            Record::History(row) => self.row(rank, row, now, out),
            Record::Summary { key, json } => {
                let key = if rank == 0 {
                    key
                } else {
                    format!("rank{rank}/{key}")
                };
                out(Record::Summary { key, json });
            }
            // The run's config, name and git state are rank 0's.
            Record::Config { .. } | Record::Name { .. } | Record::Git(_) if rank == 0 => {
                out(record)
            }
            Record::Dropped { count, .. } => out(Record::Dropped { rank, count }),
            _ => {}
        }
    }

    fn row(&mut self, rank: u32, row: Row, now: Instant, out: &mut impl FnMut(Record)) {
        let r = rank as usize;
        let keys = &self.rank_keys[r];
        let values: Vec<(u32, u32, f64)> = row
            .values
            .iter()
            .filter_map(|(id, v)| keys.get(id).map(|&n| (rank, n, *v)))
            .collect();
        self.progress[r] = Some(self.progress[r].map_or(row.step, |p| p.max(row.step)));
        if self.written.is_some_and(|w| row.step <= w) {
            // The step was written already (a straggler past its timeout):
            // write these values as a late row of the same step.
            let late = Pending {
                since: now,
                t_us: row.t_us,
                values,
            };
            self.write(row.step, late, true, out);
            return;
        }
        self.pending_values += values.len();
        let p = self.pending.entry(row.step).or_insert_with(|| Pending {
            since: now,
            t_us: row.t_us,
            values: Vec::new(),
        });
        p.t_us = p.t_us.max(row.t_us);
        p.values.extend(values);
    }

    /// A rank said goodbye: it will send no more rows.
    pub(crate) fn done(&mut self, rank: u32) {
        if let Some(l) = self.live.get_mut(rank as usize) {
            *l = false;
        }
    }

    /// A rank went away without a goodbye.
    pub(crate) fn lost(&mut self, rank: u32, reason: String, out: &mut impl FnMut(Record)) {
        if let Some(l) = self.live.get_mut(rank as usize) {
            if *l {
                *l = false;
                out(Record::RankLost { rank, reason });
            }
        }
    }

    /// Whether `rank` is still expected to send rows.
    pub(crate) fn is_live(&self, rank: u32) -> bool {
        self.live.get(rank as usize).copied().unwrap_or(false)
    }

    /// Writes every step that is complete, or older than `straggler_timeout`.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        straggler_timeout: Duration,
        out: &mut impl FnMut(Record),
    ) {
        while let Some((&step, p)) = self.pending.first_key_value() {
            let complete = self
                .live
                .iter()
                .zip(&self.progress)
                .all(|(&live, &seen)| !live || seen.is_some_and(|s| s > step));
            let overdue = now.duration_since(p.since) >= straggler_timeout;
            if !(complete || overdue || self.pending_values > MAX_PENDING_VALUES) {
                break;
            }
            if let Some(p) = self.pending.remove(&step) {
                self.pending_values -= p.values.len();
                self.write(step, p, false, out);
            }
        }
    }

    /// Writes every step still held up to the highest step `rank` reported
    /// (rank 0's rows at a `Run::flush`); values other ranks send later for
    /// those steps are written as late rows.
    pub(crate) fn write_through(&mut self, rank: u32, out: &mut impl FnMut(Record)) {
        let Some(last) = self.progress.get(rank as usize).copied().flatten() else {
            return;
        };
        while let Some((&step, _)) = self.pending.first_key_value() {
            if step > last {
                break;
            }
            if let Some(p) = self.pending.remove(&step) {
                self.pending_values -= p.values.len();
                self.write(step, p, false, out);
            }
        }
    }

    /// Writes every step still held.
    pub(crate) fn flush(&mut self, out: &mut impl FnMut(Record)) {
        while let Some((step, p)) = self.pending.pop_first() {
            self.write(step, p, false, out);
        }
        self.pending_values = 0;
    }

    /// Writes one step. A `late` row (values for a step already written)
    /// keeps every value under its per-rank key; its reductions are written
    /// only when there are no per-rank keys, so no value is lost, and the
    /// step's reductions written before are not contradicted.
    fn write(&mut self, step: u64, mut p: Pending, late: bool, out: &mut impl FnMut(Record)) {
        // Last value of a rank for a key wins: sort by (name, rank), keep the
        // last of equal pairs (a stable sort keeps arrival order).
        p.values.sort_by_key(|&(rank, name, _)| (name, rank));
        p.values.dedup_by(|later, earlier| {
            if later.0 == earlier.0 && later.1 == earlier.1 {
                earlier.2 = later.2;
                true
            } else {
                false
            }
        });
        let mut values = Vec::with_capacity(p.values.len() * 2);
        let mut i = 0;
        while i < p.values.len() {
            let name = p.values[i].1;
            let end = p.values[i..]
                .iter()
                .position(|v| v.1 != name)
                .map_or(p.values.len(), |k| i + k);
            let group = &p.values[i..end];
            if self.policy.per_rank {
                for &(rank, name, v) in group {
                    let id = self.per_rank_id(rank, name, out);
                    values.push((id, v));
                }
            }
            if !(self.policy.reduce.is_empty() || (late && self.policy.per_rank)) {
                let n = group.len() as f64;
                let sum: f64 = group.iter().map(|v| v.2).sum();
                let min = group.iter().map(|v| v.2).fold(f64::NAN, f64::min);
                let max = group.iter().map(|v| v.2).fold(f64::NAN, f64::max);
                for (k, op) in self.policy.reduce.clone().into_iter().enumerate() {
                    let v = match op {
                        Reduce::Mean => sum / n,
                        Reduce::Min => min,
                        Reduce::Max => max,
                        Reduce::Sum => sum,
                    };
                    let id = self.reduce_id(name, k as u8, op.suffix(), out);
                    values.push((id, v));
                }
                let id = self.reduce_id(name, u8::MAX, "count", out);
                values.push((id, n));
            }
            i = end;
        }
        out(Record::History(Row {
            step,
            t_us: p.t_us,
            values,
        }));
        self.written = Some(self.written.map_or(step, |w| w.max(step)));
    }

    fn out_key(&mut self, name: String, out: &mut impl FnMut(Record)) -> u32 {
        if let Some(&id) = self.out_keys.get(&name) {
            return id;
        }
        let id = self.out_keys.len() as u32;
        out(Record::Key {
            id,
            name: name.clone(),
        });
        self.out_keys.insert(name, id);
        id
    }

    fn per_rank_id(&mut self, rank: u32, name: u32, out: &mut impl FnMut(Record)) -> u32 {
        if let Some(&id) = self.per_rank_ids.get(&(rank, name)) {
            return id;
        }
        let key = format!("rank{rank}/{}", self.names[name as usize]);
        let id = self.out_key(key, out);
        self.per_rank_ids.insert((rank, name), id);
        id
    }

    fn reduce_id(&mut self, name: u32, op: u8, suffix: &str, out: &mut impl FnMut(Record)) -> u32 {
        if let Some(&id) = self.reduce_ids.get(&(name, op)) {
            return id;
        }
        let key = format!("{}/{suffix}", self.names[name as usize]);
        let id = self.out_key(key, out);
        self.reduce_ids.insert((name, op), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(out: &[Record]) -> Vec<(u64, Vec<(String, f64)>)> {
        let mut keys = std::collections::HashMap::new();
        let mut rows = Vec::new();
        for r in out {
            match r {
                Record::Key { id, name } => {
                    keys.insert(*id, name.clone());
                }
                Record::History(row) => rows.push((
                    row.step,
                    row.values
                        .iter()
                        .map(|(i, v)| (keys[i].clone(), *v))
                        .collect(),
                )),
                _ => {}
            }
        }
        rows
    }

    fn feed(m: &mut Merger, rank: u32, step: u64, v: f64, out: &mut Vec<Record>) {
        let now = Instant::now();
        m.record(
            rank,
            Record::Key {
                id: 0,
                name: "loss".into(),
            },
            now,
            &mut |r| out.push(r),
        );
        m.record(
            rank,
            Record::History(Row {
                step,
                t_us: 0,
                values: vec![(0, v)],
            }),
            now,
            &mut |r| out.push(r),
        );
    }

    #[test]
    fn a_step_is_written_once_every_rank_moved_past_it() {
        let mut m = Merger::new(Merge::default(), 2);
        let mut out = Vec::new();
        let t = Duration::from_secs(60);
        feed(&mut m, 0, 0, 1.0, &mut out);
        feed(&mut m, 0, 1, 5.0, &mut out);
        m.poll(Instant::now(), t, &mut |r| out.push(r));
        assert!(rows(&out).is_empty(), "rank 1 has not reported step 0");
        feed(&mut m, 1, 0, 3.0, &mut out);
        feed(&mut m, 1, 1, 7.0, &mut out);
        m.poll(Instant::now(), t, &mut |r| out.push(r));
        let r = rows(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0],
            (
                0,
                vec![
                    ("rank0/loss".into(), 1.0),
                    ("rank1/loss".into(), 3.0),
                    ("loss/mean".into(), 2.0),
                    ("loss/min".into(), 1.0),
                    ("loss/max".into(), 3.0),
                    ("loss/count".into(), 2.0),
                ]
            )
        );
        m.done(0);
        m.done(1);
        m.poll(Instant::now(), t, &mut |r| out.push(r));
        assert_eq!(rows(&out).len(), 2);
        assert_eq!(rows(&out)[1].1[2], ("loss/mean".into(), 6.0));
    }

    #[test]
    fn a_lost_rank_no_longer_holds_steps_back() {
        let mut m = Merger::new(
            Merge {
                per_rank: false,
                reduce: vec![Reduce::Sum],
            },
            3,
        );
        let mut out = Vec::new();
        for rank in 0..3 {
            feed(&mut m, rank, 0, 1.0, &mut out);
        }
        feed(&mut m, 0, 1, 1.0, &mut out);
        feed(&mut m, 1, 1, 1.0, &mut out);
        m.lost(2, "killed".into(), &mut |r| out.push(r));
        m.done(0);
        m.done(1);
        m.poll(Instant::now(), Duration::from_secs(60), &mut |r| {
            out.push(r)
        });
        let r = rows(&out);
        assert_eq!(
            r[0].1,
            vec![("loss/sum".into(), 3.0), ("loss/count".into(), 3.0)]
        );
        assert_eq!(
            r[1].1,
            vec![("loss/sum".into(), 2.0), ("loss/count".into(), 2.0)]
        );
        assert!(out
            .iter()
            .any(|r| matches!(r, Record::RankLost { rank: 2, .. })));
    }

    #[test]
    fn stragglers_are_written_late_not_dropped() {
        let mut m = Merger::new(
            Merge {
                per_rank: true,
                reduce: vec![],
            },
            2,
        );
        let mut out = Vec::new();
        feed(&mut m, 0, 0, 1.0, &mut out);
        m.poll(
            Instant::now() + Duration::from_secs(2),
            Duration::from_secs(1),
            &mut |r| out.push(r),
        );
        assert_eq!(rows(&out), vec![(0, vec![("rank0/loss".into(), 1.0)])]);
        feed(&mut m, 1, 0, 2.0, &mut out);
        assert_eq!(rows(&out)[1], (0, vec![("rank1/loss".into(), 2.0)]));
    }

    #[test]
    fn late_rows_keep_per_rank_values_without_second_reductions() {
        let mut m = Merger::new(Merge::default(), 2);
        let mut out = Vec::new();
        feed(&mut m, 0, 0, 1.0, &mut out);
        m.poll(
            Instant::now() + Duration::from_secs(2),
            Duration::from_secs(1),
            &mut |r| out.push(r),
        );
        feed(&mut m, 1, 0, 2.0, &mut out);
        let r = rows(&out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], (0, vec![("rank1/loss".into(), 2.0)]));
    }

    #[test]
    fn merge_policies_parse() {
        assert_eq!(
            "per_rank,sum".parse::<Merge>(),
            Ok(Merge {
                per_rank: true,
                reduce: vec![Reduce::Sum]
            })
        );
        assert!("".parse::<Merge>().is_err());
        assert!("median".parse::<Merge>().is_err());
    }
}

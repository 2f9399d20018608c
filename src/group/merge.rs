//! The k-way merge of a group's run logs by step.
//!
//! Each member's log is read by its own [`Reader`] (run logs are ordered by
//! step); a heap keyed by each member's next step yields the steps of the
//! whole group in order. Per step, each rank contributes its last value of a
//! metric at that step, and [`StepAcc`] reduces them. Memory holds one row
//! and one frame per member plus per-(member, metric) statistics: it grows
//! with ranks × metrics, never with the number of points.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use super::series::{AggSeries, Grid, RankSeries, StepAcc, StepStats};
use crate::error::Result;
use crate::record::{Exit, Record, Row};
use crate::store::{Damage, Reader};

/// What the merge learns about one member.
#[derive(Debug, Default)]
pub(crate) struct MemberStats {
    pub name: Option<String>,
    pub exit: Option<Exit>,
    pub steps: u64,
    pub last_step: Option<u64>,
    pub last_t_us: i64,
    pub damage: Option<Damage>,
    /// Indexed by global metric index; `None` where the rank never logged it.
    pub metrics: Vec<Option<MemberMetric>>,
}

/// One member's statistics of one metric.
#[derive(Debug, Clone)]
pub(crate) struct MemberMetric {
    pub count: u64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub series: RankSeries,
    /// The value at the step being merged, not yet reduced.
    pending: Option<f64>,
}

impl MemberMetric {
    fn new() -> MemberMetric {
        MemberMetric {
            count: 0,
            last: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            series: RankSeries::default(),
            pending: None,
        }
    }
}

struct Cursor {
    reader: Reader,
    /// Log key id → global metric index.
    keys: Vec<Option<usize>>,
    next: Option<Row>,
    stats: MemberStats,
    /// Metrics with a pending value at the current step.
    touched: Vec<usize>,
}

/// Everything the merge produced.
pub(crate) struct Merged {
    pub keys: Vec<String>,
    pub members: Vec<MemberStats>,
    pub grid: Grid,
    pub series: Vec<AggSeries>,
    pub last: Vec<Option<StepStats>>,
}

impl Cursor {
    /// Reads records up to the next history row.
    fn advance(&mut self, index: &mut HashMap<String, usize>, keys: &mut Vec<String>) {
        self.next = None;
        for record in self.reader.by_ref() {
            match record {
                Record::History(row) => {
                    self.next = Some(row);
                    return;
                }
                Record::Key { id, name } => {
                    let g = *index.entry(name).or_insert_with_key(|k| {
                        keys.push(k.clone());
                        keys.len() - 1
                    });
                    let id = id as usize;
                    if self.keys.len() <= id {
                        self.keys.resize(id + 1, None);
                    }
                    self.keys[id] = Some(g);
                }
                Record::Name { name } => self.stats.name = Some(name),
                Record::Heartbeat { t_us } => {
                    self.stats.last_t_us = self.stats.last_t_us.max(t_us);
                }
                Record::Exit(exit) => {
                    self.stats.last_t_us = self.stats.last_t_us.max(exit.t_us);
                    self.stats.exit = Some(exit);
                }
                _ => {}
            }
        }
        self.stats.damage = self.reader.damage().cloned();
    }

    /// Takes the values of one row as this member's values at its step.
    fn take_row(&mut self, row: Row, grid: &Grid) {
        let s = &mut self.stats;
        if s.last_step != Some(row.step) {
            s.steps += 1;
            s.last_step = Some(row.step);
        }
        s.last_t_us = s.last_t_us.max(row.t_us);
        let bucket = grid.index(row.step);
        for (id, v) in row.values {
            let Some(g) = self.keys.get(id as usize).copied().flatten() else {
                continue;
            };
            if s.metrics.len() <= g {
                s.metrics.resize(g + 1, None);
            }
            let m = s.metrics[g].get_or_insert_with(MemberMetric::new);
            m.count += 1;
            m.last = v;
            if !v.is_nan() {
                m.min = if m.min.is_nan() { v } else { m.min.min(v) };
                m.max = if m.max.is_nan() { v } else { m.max.max(v) };
            }
            m.series.push(bucket, v);
            if m.pending.replace(v).is_none() {
                self.touched.push(g);
            }
        }
    }
}

/// Merges the logs at `logs` by step.
///
/// `on_step` sees the exact statistics of every metric at every step, in
/// step order (a log whose steps go backwards, which ranklog never writes,
/// yields its late steps again).
pub(crate) fn merge(
    logs: &[&Path],
    resolution: usize,
    on_step: &mut dyn FnMut(u64, &str, &StepStats),
) -> Result<Merged> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut keys: Vec<String> = Vec::new();
    let mut cursors = Vec::with_capacity(logs.len());
    for log in logs {
        let mut c = Cursor {
            reader: Reader::open(log)?,
            keys: Vec::new(),
            next: None,
            stats: MemberStats::default(),
            touched: Vec::new(),
        };
        c.advance(&mut index, &mut keys);
        cursors.push(c);
    }
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.next.as_ref().map(|r| Reverse((r.step, i))))
        .collect();
    let origin = heap.peek().map_or(0, |Reverse((s, _))| *s);
    let mut grid = Grid::new(origin, resolution);
    let mut series: Vec<AggSeries> = Vec::new();
    let mut last: Vec<Option<StepStats>> = Vec::new();
    let mut accs: Vec<StepAcc> = Vec::new();
    let mut step_touched: Vec<usize> = Vec::new();
    let mut at_step: Vec<usize> = Vec::new();
    while let Some(Reverse((step, first))) = heap.pop() {
        let doublings = grid.widen_for(step);
        if doublings > 0 {
            for _ in 0..doublings {
                grid.width = grid.width.saturating_mul(2);
                for s in &mut series {
                    s.halve();
                }
                for c in &mut cursors {
                    for m in c.stats.metrics.iter_mut().flatten() {
                        m.series.halve();
                    }
                }
            }
        }
        at_step.clear();
        at_step.push(first);
        while let Some(Reverse((s, i))) = heap.peek().copied() {
            if s != step {
                break;
            }
            heap.pop();
            at_step.push(i);
        }
        for &i in &at_step {
            let c = &mut cursors[i];
            while c.next.as_ref().is_some_and(|r| r.step == step) {
                if let Some(row) = c.next.take() {
                    c.take_row(row, &grid);
                }
                c.advance(&mut index, &mut keys);
            }
            if accs.len() < keys.len() {
                accs.resize(keys.len(), StepAcc::default());
            }
            for g in c.touched.drain(..) {
                let Some(m) = c.stats.metrics.get_mut(g).and_then(Option::as_mut) else {
                    continue;
                };
                if let Some(v) = m.pending.take() {
                    if accs[g].is_empty() {
                        step_touched.push(g);
                    }
                    accs[g].add(v);
                }
            }
            if let Some(r) = &c.next {
                heap.push(Reverse((r.step, i)));
            }
        }
        if series.len() < keys.len() {
            series.resize(keys.len(), AggSeries::default());
            last.resize(keys.len(), None);
        }
        let bucket = grid.index(step);
        step_touched.sort_unstable();
        for g in step_touched.drain(..) {
            if let Some(stats) = accs[g].take(step) {
                series[g].push(bucket, &stats);
                on_step(step, &keys[g], &stats);
                last[g] = Some(stats);
            }
        }
    }
    Ok(Merged {
        keys,
        members: cursors.into_iter().map(|c| c.stats).collect(),
        grid,
        series,
        last,
    })
}

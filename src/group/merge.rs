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
use std::fs::File;
use std::path::Path;

use super::series::{AggSeries, Grid, RankSeries, StepAcc, StepStats};
use crate::error::{Error, Result};
use crate::record::{Exit, Record, Row};
use crate::store::{Damage, DamageKind, Reader, HEADER_LEN};

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
    /// `None` when the log could not be opened (see `open_member`).
    reader: Option<Reader<File>>,
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
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        for record in reader.by_ref() {
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
        self.stats.damage = reader.damage().cloned();
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
            // f64::min/max return the other operand when one is NaN: NaN
            // values are ignored, and the start value NaN is replaced.
            m.min = m.min.min(v);
            m.max = m.max.max(v);
            m.series.push(bucket, v);
            if m.pending.replace(v).is_none() {
                self.touched.push(g);
            }
        }
    }
}

/// A member's cursor. A log that cannot be opened (a rank killed between
/// creating its log and writing the header leaves an empty file) is a member
/// without records whose log is damaged at byte 0, not an error for the
/// whole group.
fn open_member(log: &Path) -> Cursor {
    let (reader, damage) = match open_unbuffered(log) {
        Ok(r) => (Some(r), None),
        Err(e) => {
            tracing::warn!(log = %log.display(), error = %e, "ranklog: a group member's log cannot be read");
            let kind = match e {
                Error::Read { .. } => DamageKind::Io,
                _ if std::fs::metadata(log).is_ok_and(|m| m.len() < HEADER_LEN as u64) => {
                    DamageKind::TornTail
                }
                _ => DamageKind::BadRecord,
            };
            (None, Some(Damage { offset: 0, kind }))
        }
    };
    Cursor {
        reader,
        keys: Vec::new(),
        next: None,
        stats: MemberStats {
            damage,
            ..MemberStats::default()
        },
        touched: Vec::new(),
    }
}

/// Opens a log without a `BufReader`: frames are read whole into the
/// reader's own buffer, so a second buffer per member would only add a copy
/// and memory.
fn open_unbuffered(log: &Path) -> Result<Reader<File>> {
    let file = File::open(log).map_err(|source| Error::Read {
        path: log.to_path_buf(),
        source,
    })?;
    Reader::new(file).map_err(|e| Error::NotARunLog {
        path: log.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Partials per message from a worker to the combiner.
const BATCH: usize = 4096;

/// What a worker sends: keys it met since its last batch (its local key
/// ids continue from the previous batch), then per-(step, key) partial
/// statistics in step order.
struct Batch {
    new_keys: Vec<String>,
    items: Vec<(u64, u32, StepAcc)>,
}

/// What a worker hands back at the end.
struct Part {
    keys: Vec<String>,
    members: Vec<MemberStats>,
    width: u64,
}

/// Merges the logs at `logs` by step.
///
/// The members are split into contiguous parts, one per available core
/// (at most one per 8 members); each part is merged on its own thread into
/// per-step partial statistics, and this thread combines the parts by step.
/// `on_step` sees the exact statistics of every metric at every step, in
/// step order (a log whose steps go backwards, which ranklog never writes,
/// yields its late steps again).
pub(crate) fn merge(
    logs: &[&Path],
    resolution: usize,
    on_step: &mut dyn FnMut(u64, &str, &StepStats),
) -> Result<Merged> {
    let mut cursors: Vec<Cursor> = logs.iter().map(|log| open_member(log)).collect();
    // One grid origin for every part, so that bucket i means the same steps
    // in every series: the lowest first step of any member.
    let mut origin: Option<u64> = None;
    for log in logs {
        let first = Reader::open(log).ok().and_then(|mut r| {
            r.find_map(|r| match r {
                Record::History(row) => Some(row.step),
                _ => None,
            })
        });
        origin = match (origin, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let origin = origin.unwrap_or(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(cursors.len().div_ceil(8))
        .max(1);
    let per = cursors.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let mut streams = Vec::new();
        let mut handles = Vec::new();
        for (i, chunk) in cursors.chunks_mut(per).enumerate() {
            let (tx, rx) = crossbeam_channel::bounded::<Batch>(4);
            let spawned = std::thread::Builder::new()
                .name(format!("ranklog-group-{i}"))
                .spawn_scoped(scope, move || worker(chunk, origin, resolution, &tx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    return Err(Error::Read {
                        path: logs[i * per].to_path_buf(),
                        source,
                    })
                }
            }
            streams.push(Stream {
                rx,
                batch: Vec::new(),
                pos: 0,
                map: Vec::new(),
                done: false,
            });
        }
        let mut c = combine(&mut streams, origin, resolution, on_step);
        let mut members = Vec::with_capacity(logs.len());
        for (h, stream) in handles.into_iter().zip(&streams) {
            let part = match h.join() {
                Ok(p) => p,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            let doublings = (c.grid.width / part.width.max(1)).max(1).trailing_zeros();
            let mut map = stream.map.clone();
            for k in &part.keys[map.len()..] {
                map.push(c.key_index(k));
            }
            for mut m in part.members {
                let mut metrics: Vec<Option<MemberMetric>> = vec![None; c.keys.len()];
                for (local, metric) in m.metrics.drain(..).enumerate() {
                    if let (Some(mut metric), Some(&g)) = (metric, map.get(local)) {
                        for _ in 0..doublings {
                            metric.series.halve();
                        }
                        metrics[g] = Some(metric);
                    }
                }
                m.metrics = metrics;
                members.push(m);
            }
        }
        c.series.resize(c.keys.len(), AggSeries::default());
        c.last.resize(c.keys.len(), None);
        Ok(Merged {
            keys: c.keys,
            members,
            grid: c.grid,
            series: c.series,
            last: c.last,
        })
    })
}

/// One worker's output, as the combiner reads it.
struct Stream {
    rx: crossbeam_channel::Receiver<Batch>,
    batch: Vec<(u64, u32, StepAcc)>,
    pos: usize,
    /// Worker key id → global key index.
    map: Vec<usize>,
    done: bool,
}

struct Combined {
    keys: Vec<String>,
    index: HashMap<String, usize>,
    grid: Grid,
    series: Vec<AggSeries>,
    last: Vec<Option<StepStats>>,
}

impl Combined {
    fn key_index(&mut self, name: &str) -> usize {
        if let Some(&g) = self.index.get(name) {
            return g;
        }
        self.keys.push(name.to_string());
        self.index.insert(name.to_string(), self.keys.len() - 1);
        self.keys.len() - 1
    }
}

/// Combines the workers' partials by step.
fn combine(
    streams: &mut [Stream],
    origin: u64,
    resolution: usize,
    on_step: &mut dyn FnMut(u64, &str, &StepStats),
) -> Combined {
    let mut c = Combined {
        keys: Vec::new(),
        index: HashMap::new(),
        grid: Grid::new(origin, resolution),
        series: Vec::new(),
        last: Vec::new(),
    };
    let mut accs: Vec<StepAcc> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    loop {
        // Make sure every live stream has a head.
        for s in streams.iter_mut() {
            while !s.done && s.pos >= s.batch.len() {
                match s.rx.recv() {
                    Ok(b) => {
                        for k in &b.new_keys {
                            let g = c.key_index(k);
                            s.map.push(g);
                        }
                        s.batch = b.items;
                        s.pos = 0;
                    }
                    Err(_) => s.done = true,
                }
            }
        }
        let Some(step) = streams
            .iter()
            .filter(|s| s.pos < s.batch.len())
            .map(|s| s.batch[s.pos].0)
            .min()
        else {
            break;
        };
        for _ in 0..c.grid.widen_for(step) {
            c.grid.width = c.grid.width.saturating_mul(2);
            for s in &mut c.series {
                s.halve();
            }
        }
        if accs.len() < c.keys.len() {
            accs.resize(c.keys.len(), StepAcc::default());
        }
        for s in streams.iter_mut() {
            while let Some(&(st, local, ref acc)) = s.batch.get(s.pos) {
                if st != step {
                    break;
                }
                s.pos += 1;
                let Some(&g) = s.map.get(local as usize) else {
                    continue;
                };
                if accs[g].is_empty() {
                    touched.push(g);
                }
                accs[g].merge(acc);
            }
        }
        if c.series.len() < c.keys.len() {
            c.series.resize(c.keys.len(), AggSeries::default());
            c.last.resize(c.keys.len(), None);
        }
        let bucket = c.grid.index(step);
        touched.sort_unstable();
        for g in touched.drain(..) {
            if let Some(stats) = accs[g].take(step) {
                c.series[g].push(bucket, &stats);
                on_step(step, &c.keys[g], &stats);
                c.last[g] = Some(stats);
            }
        }
    }
    c
}

/// Merges one part of the members by step, sending partial statistics.
fn worker(
    cursors: &mut [Cursor],
    origin: u64,
    resolution: usize,
    tx: &crossbeam_channel::Sender<Batch>,
) -> Part {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut keys: Vec<String> = Vec::new();
    let mut sent_keys = 0;
    for c in cursors.iter_mut() {
        c.advance(&mut index, &mut keys);
    }
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.next.as_ref().map(|r| Reverse((r.step, i))))
        .collect();
    let mut grid = Grid::new(origin, resolution);
    let mut accs: Vec<StepAcc> = Vec::new();
    let mut step_touched: Vec<usize> = Vec::new();
    let mut at_step: Vec<usize> = Vec::new();
    let mut items: Vec<(u64, u32, StepAcc)> = Vec::with_capacity(BATCH);
    let mut receiver_gone = false;
    while let Some(Reverse((step, first))) = heap.pop() {
        for _ in 0..grid.widen_for(step) {
            grid.width = grid.width.saturating_mul(2);
            for c in cursors.iter_mut() {
                for m in c.stats.metrics.iter_mut().flatten() {
                    m.series.halve();
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
        for g in step_touched.drain(..) {
            let acc = std::mem::take(&mut accs[g]);
            items.push((step, g as u32, acc));
        }
        if items.len() >= BATCH && !receiver_gone {
            let batch = Batch {
                new_keys: keys[sent_keys..].to_vec(),
                items: std::mem::replace(&mut items, Vec::with_capacity(BATCH)),
            };
            sent_keys = keys.len();
            receiver_gone = tx.send(batch).is_err();
        }
    }
    if !receiver_gone && (!items.is_empty() || sent_keys < keys.len()) {
        let _ = tx.send(Batch {
            new_keys: keys[sent_keys..].to_vec(),
            items,
        });
    }
    Part {
        keys,
        members: cursors
            .iter_mut()
            .map(|c| std::mem::take(&mut c.stats))
            .collect(),
        width: grid.width,
    }
}

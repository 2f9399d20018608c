//! Turns a ranklog run log into W&B records, one pass, as it is read.

use std::collections::BTreeMap;
use std::io::{self, Write};

use prost::Message;
use rustc_hash::FxHashMap;

use super::history::{self, RowEncoder};
use super::proto;
use super::writer::Writer;
use crate::record::{GitInfo, Record, Row, Start};

/// Producer written into the header record.
const PRODUCER: &str = concat!("ranklog ", env!("CARGO_PKG_VERSION"));

/// Oldest W&B server the records are meant for; the value W&B's own client writes.
const MIN_CONSUMER: &str = "0.70.0";

/// Exit code written for a run that has no exit record (it crashed).
pub(super) const CRASHED_EXIT_CODE: i32 = 1;

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub records: u64,
    pub rows: u64,
    pub points: u64,
}

/// A metric key of the run.
struct Key {
    name: String,
    /// The encoded `key` field of a history item.
    field: Box<[u8]>,
    /// The last value logged, for the summary.
    last: Option<f64>,
}

/// Converts ranklog records to W&B records and frames them.
pub(super) struct Converter<W: Write> {
    out: Writer<W>,
    num: i64,
    start_unix_us: i64,
    keys: FxHashMap<u32, Key>,
    /// Key ids in the order they were named.
    order: Vec<u32>,
    /// The row being built: consecutive rows at one step become one W&B row.
    pending: Option<Row>,
    /// Step, runtime and timestamp of the last row written.
    last_row: Option<(i64, f64, f64)>,
    /// Summary values set explicitly, as JSON text.
    summary: BTreeMap<String, String>,
    enc: RowEncoder,
    /// Encoded `key` fields of `_step`, `_runtime` and `_timestamp`.
    reserved: [Box<[u8]>; 3],
    scratch: Vec<u8>,
    counts: Counts,
}

impl<W: Write> Converter<W> {
    /// Starts the log: the header record, then the run record.
    pub(super) fn start(
        out: W,
        start: &Start,
        name: &str,
        git: Option<&GitInfo>,
    ) -> io::Result<Converter<W>> {
        let mut c = Converter {
            out: Writer::new(out)?,
            num: 0,
            start_unix_us: start.start_unix_us,
            keys: FxHashMap::default(),
            order: Vec::new(),
            pending: None,
            last_row: None,
            summary: BTreeMap::new(),
            enc: RowEncoder::default(),
            reserved: [
                history::key_field("_step"),
                history::key_field("_runtime"),
                history::key_field("_timestamp"),
            ],
            scratch: Vec::new(),
            counts: Counts::default(),
        };
        c.put(proto::RecordType::Header(proto::HeaderRecord {
            version_info: Some(proto::VersionInfo {
                producer: PRODUCER.to_string(),
                min_consumer: MIN_CONSUMER.to_string(),
            }),
        }))?;
        c.put(proto::RecordType::Run(run_record(start, name, git)))?;
        Ok(c)
    }

    /// Converts one ranklog record.
    pub(super) fn record(&mut self, record: Record) -> io::Result<()> {
        match record {
            Record::Key { id, name } => {
                let key = Key {
                    field: history::key_field(&name),
                    name,
                    last: None,
                };
                if self.keys.insert(id, key).is_none() {
                    self.order.push(id);
                }
            }
            Record::History(row) => self.row(row)?,
            Record::Config { json } => self.config(&json)?,
            Record::Summary { key, json } => {
                self.summary.insert(key, json);
            }
            Record::Start(_)
            | Record::Name { .. }
            | Record::Git(_)
            | Record::Heartbeat { .. }
            | Record::RankLost { .. }
            | Record::Dropped { .. }
            | Record::Exit(_) => {}
        }
        Ok(())
    }

    fn row(&mut self, row: Row) -> io::Result<()> {
        match &mut self.pending {
            Some(p) if p.step == row.step => {
                p.t_us = p.t_us.max(row.t_us);
                merge(&mut p.values, row.values);
                Ok(())
            }
            _ => {
                let previous = self.pending.replace(row);
                match previous {
                    Some(p) => self.write_row(&p),
                    None => Ok(()),
                }
            }
        }
    }

    fn write_row(&mut self, row: &Row) -> io::Result<()> {
        let step = i64::try_from(row.step).unwrap_or(i64::MAX);
        let runtime = row.t_us as f64 / 1e6;
        let timestamp = (self.start_unix_us.saturating_add(row.t_us)) as f64 / 1e6;
        let mut f = ryu::Buffer::new();
        self.enc.start();
        let [step_key, runtime_key, timestamp_key] = &self.reserved;
        self.enc.item(step_key, itoa(step, &mut self.scratch));
        self.enc
            .item(runtime_key, history::float_json(runtime, &mut f));
        self.enc
            .item(timestamp_key, history::float_json(timestamp, &mut f));
        for &(id, v) in &row.values {
            if let Some(key) = self.keys.get_mut(&id) {
                self.enc.item_f64(&key.field, v);
                key.last = Some(v);
                self.counts.points += 1;
            }
        }
        self.num += 1;
        let bytes = self.enc.finish(self.num, step);
        self.out.append(bytes)?;
        self.counts.records += 1;
        self.counts.rows += 1;
        self.last_row = Some((step, runtime, timestamp));
        Ok(())
    }

    fn config(&mut self, json: &str) -> io::Result<()> {
        let map = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(map) => map,
            Err(e) => {
                tracing::warn!(error = %e, "ranklog: skipping a config record that is not a JSON object");
                return Ok(());
            }
        };
        if map.is_empty() {
            return Ok(());
        }
        let update = map
            .into_iter()
            .map(|(key, value)| proto::ConfigItem {
                key,
                nested_key: Vec::new(),
                value_json: value.to_string(),
            })
            .collect();
        self.put(proto::RecordType::Config(proto::ConfigRecord { update }))
    }

    /// Ends the log: the last row, the summary, the exit record.
    pub(super) fn finish(mut self, exit_code: i32, runtime_us: i64) -> io::Result<(W, Counts)> {
        if let Some(p) = self.pending.take() {
            self.write_row(&p)?;
        }
        let mut summary: BTreeMap<String, String> = BTreeMap::new();
        let mut f = ryu::Buffer::new();
        for id in &self.order {
            if let Some(Key {
                name,
                last: Some(v),
                ..
            }) = self.keys.get(id)
            {
                summary.insert(name.clone(), history::float_json(*v, &mut f).to_string());
            }
        }
        if let Some((step, runtime, timestamp)) = self.last_row {
            summary.insert("_step".into(), step.to_string());
            summary.insert(
                "_runtime".into(),
                history::float_json(runtime, &mut f).to_string(),
            );
            summary.insert(
                "_timestamp".into(),
                history::float_json(timestamp, &mut f).to_string(),
            );
        }
        summary.extend(std::mem::take(&mut self.summary));
        if !summary.is_empty() {
            let update = summary
                .into_iter()
                .map(|(key, value_json)| proto::SummaryItem {
                    key,
                    nested_key: Vec::new(),
                    value_json,
                })
                .collect();
            self.put(proto::RecordType::Summary(proto::SummaryRecord { update }))?;
        }
        let runtime = i32::try_from(runtime_us.max(0) / 1_000_000).unwrap_or(i32::MAX);
        self.put(proto::RecordType::Exit(proto::RunExitRecord {
            exit_code,
            runtime,
        }))?;
        let counts = self.counts;
        Ok((self.out.into_inner()?, counts))
    }

    /// Encodes and frames one record.
    fn put(&mut self, kind: proto::RecordType) -> io::Result<()> {
        self.num += 1;
        let record = proto::Record {
            num: self.num,
            record_type: Some(kind),
        };
        self.scratch.clear();
        record
            .encode(&mut self.scratch)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.out.append(&self.scratch)?;
        self.counts.records += 1;
        Ok(())
    }

    /// Bytes framed so far.
    pub(super) fn bytes(&self) -> u64 {
        self.out.bytes_written()
    }
}

/// The run record: who the run is.
fn run_record(start: &Start, name: &str, git: Option<&GitInfo>) -> proto::RunRecord {
    let us = start.start_unix_us;
    proto::RunRecord {
        run_id: start.id.clone(),
        entity: String::new(),
        project: start.project.clone(),
        config: None,
        run_group: start.group.clone().unwrap_or_default(),
        job_type: start.job_type.clone().unwrap_or_default(),
        display_name: name.to_string(),
        tags: start
            .rank
            .map(|r| vec![format!("rank-{}", r.rank)])
            .unwrap_or_default(),
        host: start.host.clone(),
        start_time: Some(proto::Timestamp {
            seconds: us.div_euclid(1_000_000),
            nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
        }),
        git: git
            .filter(|g| g.commit.is_some() || g.remote.is_some())
            .map(|g| proto::GitRepoRecord {
                remote_url: g.remote.clone().unwrap_or_default(),
                commit: g.commit.clone().unwrap_or_default(),
            }),
    }
}

/// Merges `new` into `row`; a key already in the row takes the new value.
fn merge(row: &mut Vec<(u32, f64)>, new: Vec<(u32, f64)>) {
    if row.len() * new.len() <= 1024 {
        for (id, v) in new {
            match row.iter_mut().find(|(i, _)| *i == id) {
                Some(slot) => slot.1 = v,
                None => row.push((id, v)),
            }
        }
        return;
    }
    let mut at: FxHashMap<u32, usize> = row
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    for (id, v) in new {
        match at.get(&id) {
            Some(&i) => row[i].1 = v,
            None => {
                at.insert(id, row.len());
                row.push((id, v));
            }
        }
    }
}

/// An integer as decimal text, in a reused buffer.
fn itoa(v: i64, buf: &mut Vec<u8>) -> &str {
    buf.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "{v}");
    std::str::from_utf8(buf).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_order_and_takes_new_values() {
        let mut row = vec![(0, 1.0), (1, 2.0)];
        merge(&mut row, vec![(1, 5.0), (2, 3.0)]);
        assert_eq!(row, vec![(0, 1.0), (1, 5.0), (2, 3.0)]);
        let mut big: Vec<(u32, f64)> = (0..100).map(|i| (i, 0.0)).collect();
        merge(&mut big, (50..150).map(|i| (i, 1.0)).collect());
        assert_eq!(big.len(), 150);
        assert_eq!(big[49], (49, 0.0));
        assert_eq!(big[50], (50, 1.0));
        assert_eq!(big[149], (149, 1.0));
    }

    #[test]
    fn start_time_splits_into_seconds_and_nanos() {
        let start = Start {
            id: "abc".into(),
            name: "n".into(),
            project: "p".into(),
            group: Some("g".into()),
            job_type: None,
            rank: None,
            start_unix_us: 1_700_000_000_123_456,
            host: "h".into(),
            pid: 1,
        };
        let r = run_record(&start, "renamed", None);
        assert_eq!(
            r.start_time,
            Some(proto::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_000
            })
        );
        assert_eq!(r.display_name, "renamed");
        assert_eq!(r.run_group, "g");
        assert!(r.git.is_none());
        assert!(r.tags.is_empty());
    }
}

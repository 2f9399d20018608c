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
    /// Serial of the last row that wrote this key, to keep one value per row.
    row: u64,
}

/// Converts ranklog records to W&B records and frames them.
pub(super) struct Converter<W: Write> {
    out: Writer<W>,
    num: i64,
    start_unix_us: i64,
    /// Keys in the order they were named.
    keys: Vec<Key>,
    /// Key id -> index in `keys`.
    index: FxHashMap<u32, usize>,
    /// Values of the row being written, as (index in `keys`, value).
    kept: Vec<(usize, f64)>,
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
            keys: Vec::new(),
            index: FxHashMap::default(),
            kept: Vec::new(),
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
                    row: 0,
                };
                match self.index.get(&id) {
                    Some(&i) => self.keys[i] = key,
                    None => {
                        self.index.insert(id, self.keys.len());
                        self.keys.push(key);
                    }
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
                // A later value of a key wins when the row is written.
                p.t_us = p.t_us.max(row.t_us);
                p.values.extend(row.values);
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
        let mut f = zmij::Buffer::new();
        self.enc.start();
        let [step_key, runtime_key, timestamp_key] = &self.reserved;
        self.enc.item(step_key, itoa(step, &mut self.scratch));
        self.enc
            .item(runtime_key, history::float_json(runtime, &mut f));
        self.enc
            .item(timestamp_key, history::float_json(timestamp, &mut f));
        // One value per key, the last one: walk the row backwards.
        self.num += 1;
        let serial = self.num as u64;
        self.kept.clear();
        for &(id, v) in row.values.iter().rev() {
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            let key = &mut self.keys[i];
            if key.row != serial {
                key.row = serial;
                key.last = Some(v);
                self.kept.push((i, v));
            }
        }
        for &(i, v) in self.kept.iter().rev() {
            self.enc.item_f64(&self.keys[i].field, v);
        }
        self.counts.points += self.kept.len() as u64;
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
        let mut f = zmij::Buffer::new();
        for key in &self.keys {
            if let Some(v) = key.last {
                summary.insert(key.name.clone(), history::float_json(v, &mut f).to_string());
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

/// An integer as decimal text, in a reused buffer.
fn itoa(v: i64, buf: &mut Vec<u8>) -> &str {
    buf.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "{v}");
    std::str::from_utf8(buf).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::super::reader::{decode, Reader};
    use super::*;
    use proptest::prelude::*;

    fn start() -> Start {
        Start {
            id: "prop0001".into(),
            name: "n".into(),
            project: "p".into(),
            group: None,
            job_type: None,
            rank: None,
            start_unix_us: 1_800_000_000_000_000,
            host: "h".into(),
            pid: 1,
        }
    }

    fn json_f64(s: &str) -> f64 {
        match s {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => s.parse().unwrap(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of rows comes back with the same steps and values,
        /// rows of one step merged, NaN and infinities included.
        #[test]
        fn rows_round_trip(
            keys in proptest::collection::vec("\\PC{1,12}", 1..6),
            rows in proptest::collection::vec(
                (0u64..3, proptest::collection::vec((0usize..6, any::<f64>()), 0..6)),
                0..40,
            ),
        ) {
            let mut conv = Converter::start(Vec::new(), &start(), "n", None).unwrap();
            let mut keys = keys;
            keys.sort();
            keys.dedup();
            for (id, name) in keys.iter().enumerate() {
                conv.record(Record::Key { id: id as u32, name: name.clone() }).unwrap();
            }
            // Expected rows: step -> key -> value, in step order.
            let mut expected: Vec<(u64, BTreeMap<String, f64>)> = Vec::new();
            let mut step = 0u64;
            for (t, (delta, values)) in rows.iter().enumerate() {
                step += delta;
                let values: Vec<(u32, f64)> = values
                    .iter()
                    .filter(|(k, _)| *k < keys.len())
                    .map(|(k, v)| (*k as u32, *v))
                    .collect();
                match expected.last_mut() {
                    Some((s, row)) if *s == step => {
                        for (k, v) in &values {
                            row.insert(keys[*k as usize].clone(), *v);
                        }
                    }
                    _ => expected.push((
                        step,
                        // collect() keeps the last value of a repeated key.
                        values.iter().map(|(k, v)| (keys[*k as usize].clone(), *v)).collect(),
                    )),
                }
                conv.record(Record::History(Row { step, t_us: t as i64 * 1000, values })).unwrap();
            }
            let (bytes, counts) = conv.finish(0, 5_000_000).unwrap();
            prop_assert_eq!(counts.rows, expected.len() as u64);
            let mut got = Vec::new();
            for payload in Reader::new(&bytes[..]) {
                let record = decode(&payload.unwrap()).unwrap();
                if let Some(proto::RecordType::History(h)) = record.record_type {
                    let step = h.step.map(|s| s.num).unwrap_or(-1);
                    let items: BTreeMap<String, String> =
                        h.item.into_iter().map(|i| (i.key, i.value_json)).collect();
                    prop_assert_eq!(&items["_step"], &step.to_string());
                    got.push((step as u64, items));
                }
            }
            prop_assert_eq!(got.len(), expected.len());
            for ((gs, gi), (es, ei)) in got.iter().zip(&expected) {
                prop_assert_eq!(gs, es);
                prop_assert_eq!(gi.len(), ei.len() + 3);
                for (k, v) in ei {
                    let back = json_f64(&gi[k]);
                    prop_assert!(back.to_bits() == v.to_bits() || (back.is_nan() && v.is_nan()), "{} {} {}", k, gi[k], v);
                }
            }
        }
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

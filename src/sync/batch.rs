//! `runs/log-batch` bodies cut to the server's limits.
//!
//! MLflow takes at most 1000 entities (metrics + params + tags) per batch, of
//! which at most 100 params and 100 tags, in a body of at most 1 MB. A batch
//! carries the log offset up to which every record is inside it or an earlier
//! batch: once the server acknowledges the batch, that offset is safe to save.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;

use super::mapping::Item;

/// Entities in one batch.
pub(crate) const MAX_ENTITIES: usize = 1000;
/// Params in one batch.
pub(crate) const MAX_PARAMS: usize = 100;
/// Tags in one batch.
pub(crate) const MAX_TAGS: usize = 100;
/// Body size MLflow accepts (`MAX_BATCH_LOG_REQUEST_SIZE`), less room for the envelope.
pub(crate) const MAX_BODY: usize = 1_000_000 - 1024;

/// One request's worth of items.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    metrics: String,
    params: String,
    tags: String,
    tag_keys: HashMap<String, usize>,
    tag_list: Vec<(String, String)>,
    n_metrics: usize,
    n_params: usize,
    /// The log offset that is safe to save once this batch is acknowledged.
    pub ack: Option<u64>,
}

impl Batch {
    /// Whether the batch holds nothing to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.n_metrics == 0 && self.n_params == 0 && self.tag_list.is_empty()
    }

    /// Whether the batch holds metrics only (no params, no tags).
    pub(crate) fn only_metrics(&self) -> bool {
        self.n_params == 0 && self.tag_list.is_empty()
    }

    /// Metrics in the batch.
    pub(crate) fn metrics(&self) -> usize {
        self.n_metrics
    }

    fn entities(&self) -> usize {
        self.n_metrics + self.n_params + self.tag_list.len()
    }

    fn size(&self) -> usize {
        self.metrics.len()
            + self.params.len()
            + self
                .tag_list
                .iter()
                .map(|(k, v)| k.len() + v.len() + 32)
                .sum::<usize>()
    }

    /// Adds an item if it fits; gives it back if not.
    fn push(&mut self, item: Item) -> Result<(), Item> {
        if self.entities() >= MAX_ENTITIES {
            return Err(item);
        }
        let size = self.size();
        match item {
            Item::Metric {
                key,
                value,
                timestamp_ms,
                step,
            } => {
                if size + key.len() * 2 + 96 > MAX_BODY {
                    return Err(Item::Metric {
                        key,
                        value,
                        timestamp_ms,
                        step,
                    });
                }
                if self.n_metrics > 0 {
                    self.metrics.push(',');
                }
                self.metrics.push_str("{\"key\":");
                push_json_str(&mut self.metrics, &key);
                self.metrics.push_str(",\"value\":");
                push_f64(&mut self.metrics, value);
                let _ = write!(
                    self.metrics,
                    ",\"timestamp\":{timestamp_ms},\"step\":{step}}}"
                );
                self.n_metrics += 1;
            }
            Item::Param { key, value } => {
                if self.n_params >= MAX_PARAMS
                    || size + (key.len() + value.len()) * 2 + 32 > MAX_BODY
                {
                    return Err(Item::Param { key, value });
                }
                if self.n_params > 0 {
                    self.params.push(',');
                }
                self.params.push_str("{\"key\":");
                push_json_str(&mut self.params, &key);
                self.params.push_str(",\"value\":");
                push_json_str(&mut self.params, &value);
                self.params.push('}');
                self.n_params += 1;
            }
            Item::Tag { key, value } => {
                if let Some(&i) = self.tag_keys.get(&key) {
                    // The last value of a tag wins, as it would on the server.
                    if size + value.len() * 2 > MAX_BODY {
                        return Err(Item::Tag { key, value });
                    }
                    self.tag_list[i].1 = value;
                    return Ok(());
                }
                if self.tag_list.len() >= MAX_TAGS
                    || size + (key.len() + value.len()) * 2 + 32 > MAX_BODY
                {
                    return Err(Item::Tag { key, value });
                }
                self.tag_keys.insert(key.clone(), self.tag_list.len());
                self.tag_list.push((key, value));
            }
            Item::Checkpoint(o) => self.ack = Some(o),
        }
        Ok(())
    }

    /// The JSON body for `runs/log-batch`.
    pub(crate) fn body(&mut self, run_id: &str) -> Vec<u8> {
        self.tags.clear();
        for (i, (k, v)) in self.tag_list.iter().enumerate() {
            if i > 0 {
                self.tags.push(',');
            }
            self.tags.push_str("{\"key\":");
            push_json_str(&mut self.tags, k);
            self.tags.push_str(",\"value\":");
            push_json_str(&mut self.tags, v);
            self.tags.push('}');
        }
        let mut s =
            String::with_capacity(self.metrics.len() + self.params.len() + self.tags.len() + 96);
        s.push_str("{\"run_id\":");
        push_json_str(&mut s, run_id);
        let _ = write!(
            s,
            ",\"metrics\":[{}],\"params\":[{}],\"tags\":[{}]}}",
            self.metrics, self.params, self.tags
        );
        s.into_bytes()
    }
}

/// Takes items from the front of `queue` into one batch, up to the limits.
/// Checkpoints right after the last item taken are taken too.
pub(crate) fn cut(queue: &mut VecDeque<Item>) -> Batch {
    let mut batch = Batch::default();
    while let Some(item) = queue.pop_front() {
        if let Err(back) = batch.push(item) {
            queue.push_front(back);
            break;
        }
    }
    batch
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a double as protobuf's JSON mapping writes it: a number, or the
/// strings `NaN`, `Infinity`, `-Infinity`.
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        let mut buf = ryu::Buffer::new();
        out.push_str(buf.format_finite(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn metric(i: usize) -> Item {
        Item::Metric {
            key: Arc::from("loss"),
            value: i as f64 / 3.0,
            timestamp_ms: 1_700_000_000_000 + i as i64,
            step: i as i64,
        }
    }

    #[test]
    fn batches_respect_entity_param_and_tag_limits() {
        let mut q: VecDeque<Item> = (0..2500).map(metric).collect();
        q.push_back(Item::Checkpoint(99));
        for i in 0..150 {
            q.push_back(Item::Param {
                key: format!("p{i}"),
                value: "v".into(),
            });
        }
        let mut sizes = Vec::new();
        let mut acks = Vec::new();
        while !q.is_empty() {
            let b = cut(&mut q);
            assert!(b.entities() <= MAX_ENTITIES && b.n_params <= MAX_PARAMS);
            sizes.push((b.n_metrics, b.n_params));
            acks.push(b.ack);
        }
        assert_eq!(sizes, vec![(1000, 0), (1000, 0), (500, 100), (0, 50)]);
        assert_eq!(acks, vec![None, None, Some(99), None]);
    }

    #[test]
    fn big_values_keep_the_body_under_one_megabyte() {
        let mut q: VecDeque<Item> = (0..100)
            .map(|i| Item::Tag {
                key: format!("t{i}"),
                value: "x".repeat(8000),
            })
            .chain((0..100).map(|i| Item::Param {
                key: format!("p{i}"),
                value: "y".repeat(6000),
            }))
            .collect();
        while !q.is_empty() {
            let mut b = cut(&mut q);
            assert!(!b.is_empty());
            assert!(b.body("r").len() <= 1_000_000);
        }
    }

    #[test]
    fn body_is_valid_json_with_special_values() {
        let mut q = VecDeque::from(vec![
            Item::Metric {
                key: Arc::from("a\"b"),
                value: f64::NAN,
                timestamp_ms: 5,
                step: 1,
            },
            Item::Metric {
                key: Arc::from("c"),
                value: f64::NEG_INFINITY,
                timestamp_ms: 5,
                step: 1,
            },
            Item::Tag {
                key: "t".into(),
                value: "1".into(),
            },
            Item::Tag {
                key: "t".into(),
                value: "2".into(),
            },
        ]);
        let mut b = cut(&mut q);
        let v: serde_json::Value = serde_json::from_slice(&b.body("run")).unwrap();
        assert_eq!(v["metrics"][0]["key"], "a\"b");
        assert_eq!(v["metrics"][0]["value"], "NaN");
        assert_eq!(v["metrics"][1]["value"], "-Infinity");
        assert_eq!(v["tags"].as_array().unwrap().len(), 1);
        assert_eq!(v["tags"][0]["value"], "2");
    }
}

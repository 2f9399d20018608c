//! Fast encoding of history rows, the bulk of every export.
//!
//! A row becomes a `Record { num, history: HistoryRecord { item*, step } }`.
//! Building [`proto::HistoryRecord`](super::proto::HistoryRecord) values would
//! allocate two strings per metric value; this encoder writes the same bytes
//! straight into a reused buffer, with each key's protobuf field encoded once.
//! A test checks it byte for byte against `prost`.

/// Protobuf wire type for length-delimited fields.
const LEN: u8 = 2;
/// Tag of `Record.num` (field 1, varint).
const RECORD_NUM: u8 = 1 << 3;
/// Tag of `Record.history` (field 2, length-delimited).
const RECORD_HISTORY: u8 = (2 << 3) | LEN;
/// Tag of `HistoryRecord.item` (field 1).
const HISTORY_ITEM: u8 = (1 << 3) | LEN;
/// Tag of `HistoryRecord.step` (field 2).
const HISTORY_STEP: u8 = (2 << 3) | LEN;
/// Tag of `HistoryItem.key` (field 1).
const ITEM_KEY: u8 = (1 << 3) | LEN;
/// Tag of `HistoryItem.value_json` (field 16): `(16 << 3) | 2` as a varint.
const ITEM_VALUE_JSON: [u8; 2] = [0x82, 0x01];
/// Tag of `HistoryStep.num` (field 1, varint).
const STEP_NUM: u8 = 1 << 3;

/// Appends `v` as a protobuf varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The `key` field of a history item, encoded once per key.
pub(super) fn key_field(key: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(key.len() + 6);
    out.push(ITEM_KEY);
    put_varint(&mut out, key.len() as u64);
    out.extend_from_slice(key.as_bytes());
    out.into_boxed_slice()
}

/// A float as W&B's JSON: shortest round-trip digits, and the bare words
/// `NaN`, `Infinity`, `-Infinity` for non-finite values (as W&B's own JSON
/// encoder writes them).
pub(crate) fn float_json(v: f64, buf: &mut zmij::Buffer) -> &str {
    if v.is_finite() {
        buf.format_finite(v)
    } else if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Builds one history record in a reused buffer.
#[derive(Debug, Default)]
pub(super) struct RowEncoder {
    items: Vec<u8>,
    record: Vec<u8>,
}

impl RowEncoder {
    /// Starts a row: forgets the previous one.
    pub(super) fn start(&mut self) {
        self.items.clear();
    }

    /// Adds an item whose `key` field is already encoded.
    pub(super) fn item(&mut self, key_field: &[u8], value_json: &str) {
        let body = key_field.len()
            + ITEM_VALUE_JSON.len()
            + varint_len(value_json.len() as u64)
            + value_json.len();
        self.items.push(HISTORY_ITEM);
        put_varint(&mut self.items, body as u64);
        self.items.extend_from_slice(key_field);
        self.items.extend_from_slice(&ITEM_VALUE_JSON);
        put_varint(&mut self.items, value_json.len() as u64);
        self.items.extend_from_slice(value_json.as_bytes());
    }

    /// Adds a float item.
    pub(super) fn item_f64(&mut self, key_field: &[u8], v: f64) {
        let mut buf = zmij::Buffer::new();
        let text = float_json(v, &mut buf);
        self.item(key_field, text);
    }

    /// Finishes the row as record `num` at `step`; returns the encoded record.
    pub(super) fn finish(&mut self, num: i64, step: i64) -> &[u8] {
        let step_body = if step == 0 {
            0
        } else {
            1 + varint_len(step as u64)
        };
        let history = self.items.len() + 1 + varint_len(step_body as u64) + step_body;
        self.record.clear();
        self.record.push(RECORD_NUM);
        put_varint(&mut self.record, num as u64);
        self.record.push(RECORD_HISTORY);
        put_varint(&mut self.record, history as u64);
        self.record.extend_from_slice(&self.items);
        self.record.push(HISTORY_STEP);
        put_varint(&mut self.record, step_body as u64);
        if step != 0 {
            self.record.push(STEP_NUM);
            put_varint(&mut self.record, step as u64);
        }
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto;
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn with_prost(num: i64, step: i64, items: &[(String, String)]) -> Vec<u8> {
        proto::Record {
            num,
            record_type: Some(proto::RecordType::History(proto::HistoryRecord {
                item: items
                    .iter()
                    .map(|(k, v)| proto::HistoryItem {
                        key: k.clone(),
                        nested_key: Vec::new(),
                        value_json: v.clone(),
                    })
                    .collect(),
                step: Some(proto::HistoryStep { num: step }),
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn floats_use_wandb_words_for_non_finite_values() {
        let mut b = zmij::Buffer::new();
        assert_eq!(float_json(f64::NAN, &mut b), "NaN");
        assert_eq!(float_json(f64::INFINITY, &mut b), "Infinity");
        assert_eq!(float_json(f64::NEG_INFINITY, &mut b), "-Infinity");
        assert_eq!(float_json(0.1, &mut b), "0.1");
        assert_eq!(float_json(-2.0, &mut b), "-2.0");
        assert_eq!(float_json(1e300, &mut b), "1e+300");
    }

    proptest! {
        #[test]
        fn encoder_matches_prost_byte_for_byte(
            num in 1i64..i64::MAX,
            step in 0i64..i64::MAX,
            items in proptest::collection::vec(("\\PC{1,40}", any::<f64>()), 0..40),
            long_key in proptest::option::of("[a-z]{200,300}"),
        ) {
            let mut items: Vec<(String, f64)> = items;
            if let Some(k) = long_key {
                items.push((k, 1.5));
            }
            let mut enc = RowEncoder::default();
            enc.start();
            let mut expected = Vec::new();
            let mut buf = zmij::Buffer::new();
            for (k, v) in &items {
                enc.item_f64(&key_field(k), *v);
                expected.push((k.clone(), float_json(*v, &mut buf).to_string()));
            }
            enc.item(&key_field("_step"), &step.to_string());
            expected.push(("_step".to_string(), step.to_string()));
            prop_assert_eq!(enc.finish(num, step).to_vec(), with_prost(num, step, &expected));
        }
    }
}

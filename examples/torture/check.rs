//! What a writer child logs (a pure function of seed and step) and the check
//! of a run log against it.

use std::collections::BTreeMap;
use std::path::Path;

use ranklog::record::Record;
use ranklog::store::Reader;
use serde_json::json;

/// Metric keys every row holds, in order (key index = position).
pub const KEYS: [&str; 3] = ["loss", "acc", "grad/norm"];
/// The summary key written every [`SUMMARY_EVERY`] steps.
pub const SUMMARY_KEY: &str = "best";
const SUMMARY_EVERY: u64 = 97;
const CONFIG_STEP: u64 = 120;

/// The writer's state a kill is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// Tight logging loop, flushed in bursts.
    Batch,
    /// `Run::flush` after every row.
    Flush,
    /// Kill in a window around `finish()` (exit record, fsync, summary.json).
    Finish,
    /// Online mode: the live upload to MLflow runs while logging.
    Online,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Batch,
        Profile::Flush,
        Profile::Finish,
        Profile::Online,
    ];

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.arg() == s)
    }

    pub fn arg(self) -> &'static str {
        match self {
            Profile::Batch => "batch",
            Profile::Flush => "flush",
            Profile::Finish => "finish",
            Profile::Online => "online",
        }
    }

    /// The name in the report.
    pub fn state(self) -> &'static str {
        match self {
            Profile::Batch => "mid-batch",
            Profile::Flush => "mid-flush",
            Profile::Finish => "at-finish",
            Profile::Online => "online-upload",
        }
    }
}

/// Steps a child of `profile` logs before it finishes.
pub fn steps(profile: Profile) -> u64 {
    match profile {
        Profile::Batch => 2000,
        Profile::Flush => 600,
        Profile::Finish => 300,
        Profile::Online => 300,
    }
}

/// Rows between two `Run::flush` calls.
pub fn flush_every(seed: u64, profile: Profile) -> u64 {
    match profile {
        Profile::Batch => 64 + crate::mix(seed) % 448,
        Profile::Flush => 1,
        Profile::Finish => steps(profile),
        Profile::Online => 10,
    }
}

pub fn initial_config(seed: u64, profile: Profile) -> serde_json::Value {
    json!({"seed": seed, "profile": profile.arg(), "lr": crate::value(seed, 0, 1000)})
}

pub fn summary_at(seed: u64, step: u64) -> Option<f64> {
    (step % SUMMARY_EVERY == 0).then(|| crate::value(seed, step, 99))
}

pub fn config_update_at(step: u64) -> Option<serde_json::Value> {
    (step == CONFIG_STEP).then(|| json!({"phase": "late", "at": step}))
}

/// A record as the checker compares it: exact text of JSON, exact bits of
/// floats, key names instead of ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Config(String),
    Row(u64, Vec<(String, u64)>),
    Summary(String, String),
}

/// Every event a child logs, in order, each with the step after whose
/// acknowledgement it must be in the log (`None`: from the start).
pub fn expected(seed: u64, profile: Profile) -> Vec<(Event, Option<u64>)> {
    let mut out = vec![(
        Event::Config(initial_config(seed, profile).to_string()),
        None,
    )];
    for step in 0..steps(profile) {
        let mut values: Vec<(String, u64)> = KEYS
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), crate::value(seed, step, i as u64).to_bits()))
            .collect();
        values.sort();
        out.push((Event::Row(step, values), Some(step)));
        if let Some(v) = summary_at(seed, step) {
            out.push((
                Event::Summary(SUMMARY_KEY.into(), serde_json::Value::from(v).to_string()),
                Some(step),
            ));
        }
        if let Some(c) = config_update_at(step) {
            out.push((Event::Config(c.to_string()), Some(step)));
        }
    }
    out
}

/// Everything read from one run log with the public reader.
#[derive(Debug, Default)]
pub struct LogRead {
    pub events: Vec<Event>,
    pub exit: bool,
    pub lost_ranks: Vec<u32>,
    pub damage: Option<String>,
    /// Metric key -> (step, value bits), in log order.
    pub history: BTreeMap<String, Vec<(u64, u64)>>,
    pub records: usize,
}

/// Reads a whole log; `Err` if the reader failed or panicked.
pub fn read_log(dir: &Path) -> Result<LogRead, String> {
    let path = dir.join(ranklog::store::LOG_FILE);
    let outcome = std::panic::catch_unwind(|| -> Result<LogRead, String> {
        let mut reader = Reader::open(&path).map_err(|e| format!("reader: {e}"))?;
        let mut keys: BTreeMap<u32, String> = BTreeMap::new();
        let mut out = LogRead::default();
        for record in reader.by_ref() {
            out.records += 1;
            match record {
                Record::Key { id, name } => {
                    keys.insert(id, name);
                }
                Record::History(row) => {
                    let mut values = Vec::with_capacity(row.values.len());
                    for (id, v) in row.values {
                        let name = keys
                            .get(&id)
                            .cloned()
                            .ok_or(format!("row at step {} uses unnamed key id {id}", row.step))?;
                        out.history
                            .entry(name.clone())
                            .or_default()
                            .push((row.step, v.to_bits()));
                        values.push((name, v.to_bits()));
                    }
                    values.sort();
                    out.events.push(Event::Row(row.step, values));
                }
                Record::Config { json } => out.events.push(Event::Config(json)),
                Record::Summary { key, json } => out.events.push(Event::Summary(key, json)),
                Record::RankLost { rank, .. } => out.lost_ranks.push(rank),
                Record::Exit(_) => out.exit = true,
                _ => {}
            }
        }
        out.damage = reader.damage().map(|d| format!("{d:?}"));
        Ok(out)
    });
    match outcome {
        Ok(r) => r,
        Err(_) => Err("the reader panicked".into()),
    }
}

/// The check of a writer child's log against what it acknowledged.
#[derive(Debug, Default)]
pub struct LogCheck {
    /// Acknowledged events found intact.
    pub acked_checked: u64,
    /// Acknowledged events missing or different.
    pub lost_acked: u64,
    pub errors: Vec<String>,
}

/// Compares the log with the expected events: what is there must be a prefix
/// of them, byte for byte; every event acknowledged (`acked` = last step
/// reported flushed) must be there; a finished run must be complete.
pub fn check_writer_log(
    read: &LogRead,
    seed: u64,
    profile: Profile,
    acked: Option<u64>,
) -> LogCheck {
    let want = expected(seed, profile);
    let required = |due: Option<u64>| match (due, acked) {
        (None, _) => true,
        (Some(s), Some(a)) => s <= a,
        (Some(_), None) => false,
    };
    let mut c = LogCheck::default();
    for (i, got) in read.events.iter().enumerate() {
        match want.get(i) {
            None => c
                .errors
                .push(format!("event {i} was never logged: {got:?}")),
            Some((w, due)) if w != got => {
                c.errors
                    .push(format!("event {i} differs: logged {w:?}, read {got:?}"));
                if required(*due) {
                    c.lost_acked += 1;
                }
            }
            Some((_, due)) => {
                if required(*due) {
                    c.acked_checked += 1;
                }
            }
        }
    }
    let missing_acked = want
        .iter()
        .skip(read.events.len())
        .filter(|(_, due)| required(*due))
        .count() as u64;
    if missing_acked > 0 {
        c.lost_acked += missing_acked;
        c.errors.push(format!(
            "{missing_acked} acknowledged event(s) missing (acked up to step {acked:?}, log has {} events)",
            read.events.len()
        ));
    }
    if read.exit && read.events.len() != want.len() {
        c.errors.push(format!(
            "finished run is incomplete: {} of {} events",
            read.events.len(),
            want.len()
        ));
    }
    if read.exit && read.damage.is_some() {
        c.errors
            .push(format!("finished run has damage {:?}", read.damage));
    }
    c
}

//! Makes the runs that `scripts/interop-wandb.sh` exports and checks with
//! W&B's own reader, and writes what each run logged as JSON.
//!
//! ```text
//! export_interop MODE EXPECTED.json
//! ```
//!
//! MODE is `single`, `rank` (rank from `INTEROP_RANK`; group and job type
//! from `RANKLOG_GROUP`/`RANKLOG_JOB_TYPE`), `crash` (writes EXPECTED.json
//! and `EXPECTED.json.ready` after a flush, then waits to be killed),
//! `fail`, `nonfinite` (NaN, infinities, Unicode keys) or `large` (rows,
//! config and summary records larger than a 32 KiB block). The run id comes
//! from `RANKLOG_RUN_ID`, the root from `RANKLOG_DIR`.
//!
//! `export_interop sevenleft FILE.wandb` writes a `.wandb` file directly with
//! ranklog's framing writer, sized so that a record meets exactly 7 free bytes
//! at the end of the first block (the empty `FIRST` chunk rule): two rows,
//! step 0 with `pad` (a string) and step 1 with `x = 1.5`, then exit code 0.
//!
//! EXPECTED.json holds `id`, `project`, `group`, `job_type`, `name`,
//! `config`, `rows` (`[{step, values}]`, rows of one step merged as the
//! export merges them), `summary` (explicit summary values), `exit_code`.
//! Non-finite floats are the strings `NaN`, `Infinity`, `-Infinity`.

use std::collections::BTreeMap;

use ranklog::{Mode, Run, Settings};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

const PROJECT: &str = "interop";

/// What the run logged, as W&B should show it.
struct Expect {
    rows: Vec<(u64, BTreeMap<String, Value>)>,
    next_step: u64,
    summary: BTreeMap<String, Value>,
}

fn num(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

impl Expect {
    fn new() -> Expect {
        Expect {
            rows: Vec::new(),
            next_step: 0,
            summary: BTreeMap::new(),
        }
    }

    fn log(&mut self, run: &Run, values: &[(String, f64)]) -> Result<(), BoxError> {
        run.log(values.iter().map(|(k, v)| (k.as_str(), *v)))?;
        let step = self.next_step;
        self.add(step, values);
        Ok(())
    }

    fn log_at(&mut self, run: &Run, step: u64, values: &[(String, f64)]) -> Result<(), BoxError> {
        run.log_at(step, values.iter().map(|(k, v)| (k.as_str(), *v)))?;
        self.add(step, values);
        Ok(())
    }

    fn add(&mut self, step: u64, values: &[(String, f64)]) {
        let merge_into = match self.rows.last_mut() {
            Some((s, row)) if *s == step => row,
            _ => {
                self.rows.push((step, BTreeMap::new()));
                let last = self.rows.len() - 1;
                &mut self.rows[last].1
            }
        };
        for (k, v) in values {
            merge_into.insert(k.clone(), num(*v));
        }
        self.next_step = step + 1;
    }

    fn summary(&mut self, run: &Run, key: &str, value: f64) -> Result<(), BoxError> {
        run.summary(key, value)?;
        self.summary.insert(key.to_string(), num(value));
        Ok(())
    }

    fn write(&self, run: &Run, config: &Value, exit_code: i32, path: &str) -> Result<(), BoxError> {
        let doc = json!({
            "id": run.id(),
            "name": run.name(),
            "project": PROJECT,
            "group": std::env::var("RANKLOG_GROUP").ok(),
            "job_type": std::env::var("RANKLOG_JOB_TYPE").ok(),
            "config": config,
            "rows": self.rows.iter().map(|(s, v)| json!({"step": s, "values": v})).collect::<Vec<_>>(),
            "summary": self.summary,
            "exit_code": exit_code,
        });
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn pairs(items: &[(&str, f64)]) -> Vec<(String, f64)> {
    items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn start(name: &str, config: &Value) -> Result<Run, BoxError> {
    Ok(ranklog::init(
        Settings::new()
            .project(PROJECT)
            .mode(Mode::Offline)
            .name(name)
            .config(config.clone()),
    )?)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, expected] = args.as_slice() else {
        return Err("usage: export_interop MODE EXPECTED.json".into());
    };
    if mode == "sevenleft" {
        return seven_left(expected);
    }
    let mut e = Expect::new();
    match mode.as_str() {
        "single" => {
            let config = json!({"lr": 0.001, "layers": [128, 64], "optimizer": {"name": "adamw", "betas": [0.9, 0.999]}, "seed": 7});
            let run = start("interop-single", &config)?;
            for step in 0..200u32 {
                let x = f64::from(step);
                e.log(
                    &run,
                    &pairs(&[("train/loss", 2.0 / (1.0 + x)), ("train/acc", x / 200.0)]),
                )?;
                if step % 50 == 49 {
                    // Joins the row of the same step.
                    e.log_at(
                        &run,
                        u64::from(step),
                        &pairs(&[("val/loss", 2.5 / (1.0 + x))]),
                    )?;
                }
            }
            e.log_at(&run, 1000, &pairs(&[("test/acc", 0.93)]))?;
            run.update_config(json!({"epochs": 3}))?;
            e.summary(&run, "best/val_loss", 0.05)?;
            let mut config = config;
            config["epochs"] = json!(3);
            run.finish()?;
            e.write(&run, &config, 0, expected)?;
        }
        "rank" => {
            let rank: u32 = std::env::var("INTEROP_RANK")?.parse()?;
            let config = json!({"world_size": 4, "rank": rank, "lr": 0.01});
            let run = start(&format!("job42-rank-{rank}"), &config)?;
            for step in 0..100u32 {
                let x = f64::from(step);
                e.log(
                    &run,
                    &pairs(&[
                        ("loss", 1.0 / (1.0 + x) + f64::from(rank) * 0.01),
                        ("throughput", 1000.0 + f64::from(rank)),
                    ]),
                )?;
            }
            run.finish()?;
            e.write(&run, &config, 0, expected)?;
        }
        "crash" => {
            let config = json!({"will": "crash"});
            let run = start("interop-crash", &config)?;
            for step in 0..30u32 {
                e.log(&run, &pairs(&[("loss", 1.0 / f64::from(step + 1))]))?;
            }
            e.summary(&run, "seen", 30.0)?;
            run.flush()?;
            e.write(&run, &config, 1, expected)?;
            std::fs::write(format!("{expected}.ready"), b"")?;
            loop {
                std::thread::park();
            }
        }
        "fail" => {
            let config = json!({"will": "fail"});
            let run = start("interop-fail", &config)?;
            e.log(&run, &pairs(&[("loss", 9.0)]))?;
            run.fail("diverged")?;
            e.write(&run, &config, 1, expected)?;
        }
        "nonfinite" => {
            let config = json!({"unicode": "ünïcødé ✓", "emoji": "🔥"});
            let run = start("interop-nonfinite-ünï", &config)?;
            let keys = [
                "損失/検証 ✓",
                "ëlapsed",
                "🔥/temp",
                "key with spaces",
                "a.b/c",
            ];
            let specials = [
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                1e-300,
                1.7976931348623157e308,
            ];
            for step in 0..20usize {
                let values: Vec<(String, f64)> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        (
                            k.to_string(),
                            if (step + i) % 3 == 0 {
                                specials[(step + i) % specials.len()]
                            } else {
                                step as f64 * 0.5 + i as f64
                            },
                        )
                    })
                    .collect();
                e.log(&run, &values)?;
            }
            e.summary(&run, "nan_summary", f64::NAN)?;
            e.summary(&run, "inf_summary", f64::INFINITY)?;
            e.summary(&run, "ëxplicit/✓", -1.5)?;
            run.finish()?;
            e.write(&run, &config, 0, expected)?;
        }
        "large" => {
            let big = "x".repeat(100_000);
            let config = json!({"big_string": big, "size": "large"});
            let run = start("interop-large", &config)?;
            let keys: Vec<String> = (0..2500)
                .map(|i| format!("layers/{i:04}/grad_norm"))
                .collect();
            for step in 0..60u32 {
                let values: Vec<(String, f64)> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k.clone(), (f64::from(step) + i as f64 * 0.001).sin()))
                    .collect();
                e.log(&run, &values)?;
            }
            run.summary("notes", "y".repeat(50_000).as_str())?;
            e.summary.insert("notes".into(), json!("y".repeat(50_000)));
            run.finish()?;
            e.write(&run, &config, 0, expected)?;
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    Ok(())
}

/// Writes a `.wandb` file in which the third history record starts with an
/// empty `FIRST` chunk, 7 bytes before the end of the first block.
fn seven_left(path: &str) -> Result<(), BoxError> {
    use prost::Message;
    use ranklog::export::wandb::{proto, Reader, Writer, BLOCK_SIZE, CHUNK_HEADER_LEN};

    let record = |num: i64, kind: proto::RecordType| {
        proto::Record {
            num,
            record_type: Some(kind),
        }
        .encode_to_vec()
    };
    let row = |num: i64, step: i64, items: &[(&str, String)]| {
        let mut item = vec![
            ("_step", step.to_string()),
            ("_runtime", format!("{}", step as f64)),
            ("_timestamp", format!("{}", 1.8e9 + step as f64)),
        ];
        item.extend(items.iter().cloned());
        record(
            num,
            proto::RecordType::History(proto::HistoryRecord {
                item: item
                    .into_iter()
                    .map(|(k, v)| proto::HistoryItem {
                        key: k.to_string(),
                        nested_key: Vec::new(),
                        value_json: v,
                    })
                    .collect(),
                step: Some(proto::HistoryStep { num: step }),
            }),
        )
    };
    let mut w = Writer::new(std::fs::File::create(path)?)?;
    w.append(&record(
        1,
        proto::RecordType::Header(proto::HeaderRecord {
            version_info: Some(proto::VersionInfo {
                producer: "ranklog export_interop".into(),
                min_consumer: "0.70.0".into(),
            }),
        }),
    ))?;
    w.append(&record(
        2,
        proto::RecordType::Run(proto::RunRecord {
            run_id: "sevenleft".into(),
            project: PROJECT.into(),
            display_name: "seven-left".into(),
            start_time: Some(proto::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }),
    ))?;
    // The row at step 0 must end exactly 7 bytes before the block's end.
    let want = BLOCK_SIZE - CHUNK_HEADER_LEN - CHUNK_HEADER_LEN - w.bytes_written() as usize;
    let pad = (0..want)
        .rev()
        .map(|n| "p".repeat(n))
        .find(|p| row(3, 0, &[("pad", format!("\"{p}\""))]).len() == want)
        .ok_or("no pad length fits")?;
    w.append(&row(3, 0, &[("pad", format!("\"{pad}\""))]))?;
    w.append(&row(4, 1, &[("x", "1.5".to_string())]))?;
    w.append(&record(
        5,
        proto::RecordType::Exit(proto::RunExitRecord {
            exit_code: 0,
            runtime: 1,
        }),
    ))?;
    w.into_inner()?.sync_all()?;
    let mut r = Reader::open(std::path::Path::new(path))?;
    while r.next_record()?.is_some() {}
    if r.chunk_counts().empty_first != 1 {
        return Err(format!("expected one empty FIRST chunk, got {:?}", r.chunk_counts()).into());
    }
    println!("{}", pad.len());
    Ok(())
}

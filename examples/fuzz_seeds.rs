//! Writes the seed corpora of the fuzz targets in `fuzz/` from real files:
//! runs made with the Run API, their W&B exports, and queue messages made
//! with the queue's own wire code from the records of those runs.
//!
//! `cargo run --features fuzzing --example fuzz_seeds -- fuzz/seeds`
//! (`scripts/fuzz-seeds.sh` runs it and adds MLflow answers captured from a
//! real server).

use std::fs;
use std::path::{Path, PathBuf};

use ranklog::fuzzing::queue;
use ranklog::store::Reader;
use ranklog::{Mode, Record, Settings};
use serde_json::json;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let tmp = tempfile::tempdir()?;
    let runs = make_runs(tmp.path())?;
    let rlog_dir = out.join("rlog_reader");
    let wandb_dir = out.join("wandb_roundtrip");
    let queue_dir = out.join("queue_frames");
    for d in [&rlog_dir, &wandb_dir, &queue_dir] {
        fs::create_dir_all(d)?;
    }

    // Run logs as written, plus the shapes a crash or a bad disk leaves.
    for (name, bytes) in &runs {
        fs::write(rlog_dir.join(format!("{name}.rlog")), bytes)?;
    }
    let (_, small) = &runs[0];
    fs::write(rlog_dir.join("torn-tail.rlog"), &small[..small.len() - 5])?;
    let mut flipped = small.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    fs::write(rlog_dir.join("bit-flip.rlog"), &flipped)?;
    fs::write(rlog_dir.join("header-only.rlog"), &small[..12])?;

    // W&B exports of the same runs (what `ranklog export wandb` writes).
    let export_out = tmp.path().join("export");
    for entry in fs::read_dir(tmp.path().join("runs"))? {
        let entry = entry?;
        let dir = entry.path();
        if !entry.file_type()?.is_dir() || !dir.join("run.rlog").exists() {
            continue;
        }
        let report = ranklog::export::wandb::export_run(&dir, &export_out)?;
        let name = match Reader::open(&dir.join("run.rlog"))?.next() {
            Some(Record::Start(start)) => start.name,
            _ => report.id.clone(),
        };
        fs::copy(&report.file, wandb_dir.join(format!("{name}.wandb")))?;
    }

    // Queue traffic: the records of the runs cut into messages as a worker
    // sends them, on each path.
    let records: Vec<Vec<Record>> = runs
        .iter()
        .map(|(_, bytes)| Reader::new(&bytes[..]).map(|r| r.collect()))
        .collect::<Result<_, _>>()?;
    for (i, recs) in records.iter().enumerate() {
        let mut stream = vec![0u8, 255];
        stream.extend_from_slice(&queue::tcp_magic());
        stream.extend(queue::tcp_frame(&queue::encode_to_owner_hello(
            1,
            queue::WORLD_SIZE,
            queue::TOKEN,
        )));
        for batch in recs.chunks(64) {
            stream.extend(queue::tcp_frame(&queue::encode_to_owner_records(
                batch.to_vec(),
            )));
        }
        stream.extend(queue::tcp_frame(&queue::encode_to_owner_bye(2)));
        if stream.len() < 16 << 10 {
            fs::write(queue_dir.join(format!("tcp-owner-{i}")), &stream)?;
        }
        // The same stream read in small pieces.
        if i == 0 {
            stream[1] = 6;
            fs::write(queue_dir.join("tcp-owner-small-reads"), &stream)?;
        }
        let first: Vec<Record> = recs.iter().take(40).cloned().collect();
        let mut ipc = vec![2u8];
        ipc.extend(queue::ipc_frame_bytes(&queue::encode_to_owner_records(
            first,
        )));
        if ipc.len() < 16 << 10 {
            fs::write(queue_dir.join(format!("ipc-frame-{i}")), &ipc)?;
        }
    }
    let mut wrong_token = vec![0u8, 255];
    wrong_token.extend_from_slice(&queue::tcp_magic());
    wrong_token.extend(queue::tcp_frame(&queue::encode_to_owner_hello(
        2,
        queue::WORLD_SIZE,
        "another-job",
    )));
    fs::write(queue_dir.join("tcp-owner-wrong-token"), &wrong_token)?;
    let mut bad_magic = vec![0u8, 255];
    bad_magic.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    fs::write(queue_dir.join("tcp-owner-http-client"), &bad_magic)?;
    for (name, welcome) in [("welcome", true), ("refused", false)] {
        let mut w = vec![1u8];
        w.extend(queue::tcp_frame(&queue::encode_to_worker(welcome)));
        fs::write(queue_dir.join(format!("tcp-worker-{name}")), &w)?;
        let mut ipc = vec![2u8];
        ipc.extend(queue::encode_to_worker(welcome));
        fs::write(queue_dir.join(format!("ipc-answer-{name}")), &ipc)?;
    }
    let mut hello = vec![2u8];
    hello.extend(queue::encode_to_owner_hello(
        3,
        queue::WORLD_SIZE,
        queue::TOKEN,
    ));
    fs::write(queue_dir.join("ipc-hello-payload"), &hello)?;
    let mut bye = vec![2u8];
    bye.extend(queue::ipc_frame_bytes(&queue::encode_to_owner_bye(0)));
    fs::write(queue_dir.join("ipc-frame-bye"), &bye)?;
    println!("seeds written to {}", out.display());
    Ok(())
}

/// Real runs of several shapes; returns each run's log bytes by name.
fn make_runs(root: &Path) -> Res<Vec<(String, Vec<u8>)>> {
    let dir = root.join("runs");
    let settings = |name: &str| {
        Settings::new()
            .dir(&dir)
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .project("fuzz")
            .name(name)
    };
    let mut out = Vec::new();
    let log_of = |run: &ranklog::Run| -> Res<PathBuf> {
        Ok(run
            .dir()
            .ok_or("offline runs have a directory")?
            .join("run.rlog"))
    };

    // A few keys, many steps, finished.
    let run = ranklog::init(settings("small"))?;
    for step in 0..60u32 {
        let s = f64::from(step);
        run.log([("loss", 1.0 / (1.0 + s)), ("acc", s / 60.0), ("lr", 1e-3)])?;
    }
    let path = log_of(&run)?;
    run.finish()?;
    out.push(("small-finished".to_string(), fs::read(&path)?));

    // Many keys, config, summaries, a rename.
    let run = ranklog::init(settings("wide").config(
        json!({"model": {"layers": 12, "width": 768}, "opt": "adam", "tags": ["a", "b"]}),
    ))?;
    for step in 0..4 {
        let row: Vec<(String, f64)> = (0..150)
            .map(|k| (format!("layer{k}/grad_norm"), f64::from(k * step)))
            .collect();
        run.log(row)?;
    }
    run.update_config(json!({"batch_size": 64, "nested": {"x": null, "y": 1.5}}))?;
    run.summary("best/acc", 0.93)?;
    run.summary("epochs", 3i64)?;
    run.summary("note", json!({"text": "ünïcödé", "list": [1, 2, 3]}))?;
    run.set_name("wide-renamed")?;
    let path = log_of(&run)?;
    run.finish()?;
    out.push(("many-keys-config-summary".to_string(), fs::read(&path)?));

    // Accumulate and commit, explicit steps, special values, then failed.
    let run = ranklog::init(settings("accum"))?;
    for step in 0..20u64 {
        run.accumulate([("train/loss", 0.5)])?;
        run.accumulate([("train/tokens", step as f64 * 1024.0)])?;
        run.commit()?;
        if step % 5 == 0 {
            run.log_at(
                step * 10,
                [("eval/loss", f64::NAN), ("eval/inf", f64::INFINITY)],
            )?;
        }
    }
    run.log([("flag", true)])?;
    let path = log_of(&run)?;
    run.fail("CUDA out of memory")?;
    out.push(("accumulate-commit-failed".to_string(), fs::read(&path)?));

    // A run caught while running: what a killed process leaves (crashed).
    let run = ranklog::init(settings("crashed"))?;
    for step in 0..30u32 {
        run.log([("loss", f64::from(step).sqrt())])?;
    }
    run.flush()?;
    let path = log_of(&run)?;
    let snapshot = fs::read(&path)?;
    run.finish()?;
    out.push(("crashed-no-exit".to_string(), snapshot));

    // A big config value: W&B records that cross 32 KiB blocks.
    let big: String = (0..34_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let run = ranklog::init(settings("big"))?;
    run.update_config(json!({ "blob": big }))?;
    run.log([("x", 1.0)])?;
    let path = log_of(&run)?;
    run.finish()?;
    out.push(("big-config".to_string(), fs::read(&path)?));
    Ok(out)
}

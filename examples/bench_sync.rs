//! Benchmark: upload a run of N points (default 1,000,000) to an MLflow server.
//!
//! ```text
//! cargo run --release --example bench_sync -- http://127.0.0.1:5000 [POINTS]
//! ```
//!
//! Writes an offline run of `POINTS / 10` steps × 10 metrics (`m0`…`m9`,
//! value `step * 0.001 + key`) in a temporary directory, then times
//! `sync::Uploader::run` on it. Prints a human line on stderr and
//! `ranklog_points_per_s=<n>` on stdout. `scripts/bench-mlflow-sync.sh`
//! compares it with MLflow's Python client on the same server.

use std::time::Instant;

use ranklog::sync::{Target, Uploader};
use ranklog::{Mode, Settings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let uri = args.next().ok_or("usage: bench_sync URI [POINTS]")?;
    let points: u64 = args
        .next()
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let run = ranklog::init(
        Settings::new()
            .project("bench-ranklog")
            .dir(dir.path())
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false),
    )?;
    let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
    for step in 0..points / 10 {
        let base = step as f64 * 0.001;
        run.log(
            keys.iter()
                .enumerate()
                .map(|(k, key)| (key.as_str(), base + k as f64)),
        )?;
    }
    let done = run.finish()?;
    let run_dir = done.dir.ok_or("offline runs have a directory")?;
    let started = Instant::now();
    let report = Uploader::open(&run_dir, &Target::new(uri))?.run(false, &mut |_| {})?;
    let secs = started.elapsed().as_secs_f64();
    let pps = report.points as f64 / secs;
    eprintln!(
        "ranklog: uploaded {} points ({} log bytes) in {secs:.2} s: {pps:.0} points/s",
        report.points, report.log_bytes
    );
    println!("ranklog_points_per_s={pps:.0}");
    Ok(())
}

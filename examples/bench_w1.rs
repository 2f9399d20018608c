//! Workload W1 of the tracker comparison: one process, 20,000 steps × 10
//! float metrics, one `log` per step, offline, no git capture.
//!
//! `cargo run --release --example bench_w1 [STEPS] [KEYS]` prints one JSON
//! object: loop time, µs per call (mean, p50, p99), init and finish time,
//! bytes on disk and per metric point, and the peak RSS of the process.

use std::time::Instant;

use ranklog::{Mode, Settings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let keys: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let root = tempfile::tempdir()?;
    let names: Vec<String> = (0..keys).map(|k| format!("m{k}")).collect();

    let t0 = Instant::now();
    let run = ranklog::init(
        Settings::new()
            .dir(root.path())
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false),
    )?;
    let init_s = t0.elapsed().as_secs_f64();

    let mut lat = Vec::with_capacity(steps);
    let loop_start = Instant::now();
    for step in 0..steps {
        let base = step as f64 * 1e-3;
        let t = Instant::now();
        run.log(names.iter().enumerate().map(|(k, n)| (n, base + k as f64)))?;
        lat.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    let loop_s = loop_start.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let done = run.finish()?;
    let finish_s = t1.elapsed().as_secs_f64();

    let disk: u64 = std::fs::read_dir(done.dir.as_deref().ok_or("offline runs have a directory")?)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let points = (steps * keys) as f64;
    let report = serde_json::json!({
        "tracker": "ranklog",
        "steps": steps,
        "keys": keys,
        "loop_s": loop_s,
        "mean_us_per_call": loop_s * 1e6 / steps as f64,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "init_s": init_s,
        "finish_s": finish_s,
        "total_s": init_s + loop_s + finish_s,
        "disk_bytes": disk,
        "log_bytes": done.log_bytes,
        "bytes_per_point": done.log_bytes as f64 / points,
        "disk_bytes_per_point": disk as f64 / points,
        "peak_rss_mib": usage.ru_maxrss as f64 / 1024.0,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

//! ranklog's side of the tracker comparison (`bench/compare/run.sh`).
//!
//! ```text
//! bench_compare log  [STEPS] [KEYS]   # W1 alone, or one rank of W2 under `ranklog launch`
//! bench_compare init                  # W3: init + finish, no logging
//! ```
//!
//! Settings come from the environment the driver sets, as a user's would:
//! `RANKLOG_DIR`, `RANKLOG_MODE=offline`, `RANKLOG_SILENT=1`,
//! `RANKLOG_DISABLE_GIT=1`, and under `ranklog launch` the rank, group and
//! strategy. Each process prints one line `RESULT {json}` with its timings
//! (seconds), the latency of its `log` calls (µs: mean, p50, p99, max) and its
//! own peak RSS (`VmHWM`, KiB); the driver adds what only it can see
//! (process wall time, RSS of the process tree, bytes on disk).
//!
//! The loop mirrors the Python scripts: 10 float metrics `m0..m9` per step,
//! one call per step with an explicit step (`run.log(d, step=step)` there,
//! [`ranklog::Run::log_at`] here), each call timed on its own.

use std::time::Instant;

use ranklog::Settings;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> Res<u64> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let report = match args.first().map(String::as_str) {
        Some("log") => log(num(1, 20_000)?, num(2, 10)?)?,
        Some("init") => init_finish()?,
        _ => return Err("usage: bench_compare log [STEPS] [KEYS] | bench_compare init".into()),
    };
    println!("RESULT {report}");
    Ok(())
}

fn settings() -> Settings {
    Settings::new().project("bench-compare")
}

/// W1 (and one rank of W2): STEPS calls of `log_at` with KEYS floats.
fn log(steps: u64, keys: u64) -> Res<serde_json::Value> {
    let names: Vec<String> = (0..keys).map(|k| format!("m{k}")).collect();
    let t0 = Instant::now();
    let run = ranklog::init(settings())?;
    let init_s = t0.elapsed().as_secs_f64();

    let mut lat_ns = Vec::with_capacity(steps as usize);
    let loop_start = Instant::now();
    for step in 0..steps {
        let base = step as f64 * 1e-3;
        let t = Instant::now();
        run.log_at(
            step,
            names.iter().enumerate().map(|(k, n)| (n, base + k as f64)),
        )?;
        lat_ns.push(t.elapsed().as_nanos() as u64);
    }
    let loop_s = loop_start.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let done = run.finish()?;
    let finish_s = t1.elapsed().as_secs_f64();

    let mut report = serde_json::json!({
        "tracker": "ranklog",
        "rank": rank(),
        "steps": steps,
        "keys": keys,
        "init_s": init_s,
        "loop_s": loop_s,
        "finish_s": finish_s,
        "total_s": init_s + loop_s + finish_s,
        "mean_us": loop_s * 1e6 / steps.max(1) as f64,
        "log_bytes": done.log_bytes,
        "dropped": done.dropped,
        "peak_rss_kib": peak_rss_kib(),
    });
    percentiles(&mut lat_ns, &mut report);
    Ok(report)
}

/// W3: init and finish in a fresh process, nothing logged.
fn init_finish() -> Res<serde_json::Value> {
    let t0 = Instant::now();
    let run = ranklog::init(settings())?;
    let init_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    run.finish()?;
    let finish_s = t1.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "tracker": "ranklog",
        "init_s": init_s,
        "finish_s": finish_s,
        "init_finish_s": init_s + finish_s,
        "peak_rss_kib": peak_rss_kib(),
    }))
}

/// p50, p99 and max in µs, with the Python side's rule (`sorted[int(q·n)]`).
fn percentiles(lat_ns: &mut [u64], report: &mut serde_json::Value) {
    if lat_ns.is_empty() {
        return;
    }
    lat_ns.sort_unstable();
    let n = lat_ns.len();
    let pct = |q: f64| lat_ns[((q * n as f64) as usize).min(n - 1)] as f64 / 1e3;
    report["p50_us"] = pct(0.50).into();
    report["p99_us"] = pct(0.99).into();
    report["max_us"] = (lat_ns[n - 1] as f64 / 1e3).into();
}

fn rank() -> Option<u32> {
    std::env::var("RANK").ok()?.parse().ok()
}

/// Peak RSS of this process image (`VmHWM`, KiB). Not `ru_maxrss`: Linux
/// carries that over `exec`, so a child of a big parent would report the
/// parent's size.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

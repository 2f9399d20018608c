//! Single-writer throughput with real processes.
//!
//! `cargo run --release --example bench_queue [WORKERS] [STEPS]` starts
//! WORKERS + 1 copies of itself as the ranks of one single-writer job (rank 0
//! owns the run), every rank logging STEPS rows of 10 metrics as fast as it
//! can, and prints:
//!
//! 1. `block`: end-to-end metric points per second into the owner's run log
//!    under the lossless `Block` policy (from the first rank's start to the
//!    owner's finish), and whether every point arrived;
//! 2. `drop_newest_stalled_owner`: the same with `DropNewest` while rank 0 is
//!    frozen with SIGSTOP, with the p50/p99 latency of the workers' `log`
//!    calls and the rows they dropped.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ranklog::{Mode, Settings};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    if std::env::var_os("RANK").is_some() {
        return rank();
    }
    let mut args = std::env::args().skip(1);
    let workers: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let steps: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let block = job(workers, steps, "block", false)?;
    let stalled = job(workers, steps / 4, "drop_newest", true)?;
    let report = serde_json::json!({
        "workers": workers,
        "metrics_per_row": 10,
        "block": block,
        "drop_newest_stalled_owner": stalled,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn spawn(
    world: u32,
    r: u32,
    group: &str,
    policy: &str,
    root: &std::path::Path,
    steps: u64,
) -> Res<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .env("RANK", r.to_string())
        .env("LOCAL_RANK", r.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_WORLD_SIZE", world.to_string())
        .env("RANKLOG_GROUP", group)
        .env("RANKLOG_STRATEGY", "single-writer")
        .env("RANKLOG_DROP_POLICY", policy)
        .env("RANKLOG_DIR", root)
        .env("RANKLOG_SILENT", "1")
        .env("RANKLOG_DISABLE_GIT", "1")
        .env("BENCH_STEPS", steps.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Reads lines until one starts with `prefix`; returns it.
fn line_starting(r: &mut BufReader<ChildStdout>, prefix: &str) -> Res<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(format!("a rank ended before printing {prefix:?}").into());
        }
        if line.starts_with(prefix) {
            return Ok(line.trim().to_string());
        }
    }
}

fn go(child: &mut Child) -> Res<()> {
    if let Some(stdin) = child.stdin.as_mut() {
        stdin.write_all(b"go\n")?;
    }
    Ok(())
}

/// Runs one job and reports what it measured.
fn job(workers: u32, steps: u64, policy: &str, stall_owner: bool) -> Res<serde_json::Value> {
    let root = tempfile::tempdir()?;
    let world = workers + 1;
    let group = format!("bench-{}-{policy}", std::process::id());
    let start = Instant::now();
    let mut ranks = (0..world)
        .map(|r| spawn(world, r, &group, policy, root.path(), steps))
        .collect::<Res<Vec<Child>>>()?;
    let mut out: Vec<BufReader<ChildStdout>> = ranks
        .iter_mut()
        .map(|c| c.stdout.take().map(BufReader::new).ok_or("no stdout"))
        .collect::<Result<_, _>>()?;
    // Every rank is connected once it printed READY.
    for r in out.iter_mut() {
        line_starting(r, "READY")?;
    }
    if stall_owner {
        // SAFETY: freezing (and later thawing) our own child.
        unsafe { libc::kill(ranks[0].id() as i32, libc::SIGSTOP) };
    } else {
        go(&mut ranks[0])?;
    }
    for c in ranks.iter_mut().skip(1) {
        go(c)?;
    }
    // Workers print their latencies before they finish (a worker's finish
    // waits for the owner, which may be frozen), then their drop count.
    let mut lat = Vec::new();
    for r in out.iter_mut().skip(1) {
        lat.push(serde_json::from_str::<serde_json::Value>(&line_starting(
            r, "{",
        )?)?);
    }
    if stall_owner {
        // SAFETY: see above.
        unsafe { libc::kill(ranks[0].id() as i32, libc::SIGCONT) };
        go(&mut ranks[0])?;
    }
    let mut dropped = 0u64;
    for r in out.iter_mut().skip(1) {
        dropped += line_starting(r, "DROPPED ")?["DROPPED ".len()..].parse::<u64>()?;
    }
    for c in ranks.iter_mut() {
        c.wait()?;
    }
    let wall = start.elapsed().as_secs_f64();
    let dir = ranklog::store::run_dirs(root.path())?
        .pop()
        .ok_or("no run written")?;
    let scan = ranklog::store::scan(&dir)?;
    let in_run: u64 = scan
        .metrics
        .iter()
        .filter(|m| m.key.starts_with("rank"))
        .map(|m| m.count)
        .sum();
    let logged = u64::from(world) * steps * 10;
    let mut p50: Vec<f64> = lat.iter().filter_map(|l| l["p50_us"].as_f64()).collect();
    let mut p99: Vec<f64> = lat.iter().filter_map(|l| l["p99_us"].as_f64()).collect();
    p50.sort_by(f64::total_cmp);
    p99.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "ranks": world,
        "steps_per_rank": steps,
        "points_logged": logged,
        "points_in_run": in_run,
        "lossless": in_run == logged,
        "dropped_rows": dropped,
        "wall_s": wall,
        "points_per_s": in_run as f64 / wall,
        "worker_log_p50_us_median": p50.get(p50.len() / 2),
        "worker_log_p99_us_worst": p99.last(),
    }))
}

/// The body of one rank.
fn rank() -> Res<()> {
    let steps: u64 = std::env::var("BENCH_STEPS")?.parse()?;
    let rank: u64 = std::env::var("RANK")?.parse()?;
    let run = ranklog::init(Settings::new().project("bench").mode(Mode::Offline))?;
    println!("READY");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
    let mut lat = Vec::with_capacity(steps as usize);
    for step in 0..steps {
        let base = (step + rank) as f64;
        let t = Instant::now();
        run.log(
            keys.iter()
                .enumerate()
                .map(|(k, key)| (key, base + k as f64)),
        )?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let stats = serde_json::json!({
        "rank": rank,
        "p50_us": us(lat[lat.len() / 2]),
        "p99_us": us(lat[lat.len() * 99 / 100]),
    });
    println!("{stats}");
    let done = run.finish()?;
    println!("DROPPED {}", done.dropped);
    Ok(())
}

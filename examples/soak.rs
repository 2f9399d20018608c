//! Soak test: a 4-rank job logging for a long time while every rank's
//! resident memory, open file descriptors and threads are sampled.
//!
//! ```text
//! cargo build --release --bin ranklog --example soak
//! target/release/examples/soak drive --strategy single-writer --seconds 600
//! ```
//!
//! `drive` starts `ranklog launch --nproc-per-node N -- soak rank ...`, reads
//! `/proc/<pid>/{status,fd}` of every rank each `--interval` seconds, prints
//! the curves, and judges them after the warm-up (the first fifth of the
//! run): memory may not grow by more than 10 % or 2 MiB between the second
//! fifth and the last fifth of the run, descriptors and threads may not grow
//! at all. The samples go to `<out>/soak-<strategy>.json`; it exits non-zero
//! when a rank failed or a curve grew.
//!
//! `rank` is what each rank runs: `--metrics` values per step as fast as it
//! can, but no faster than `--rate` steps per second (0: no cap), a summary
//! every 1000 steps and a config update every 100 000.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ranklog::{Mode, Settings, Strategy};
use serde_json::json;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = args
        .split_first()
        .ok_or("usage: soak drive [options] | soak rank [options]")?;
    let opts = Opts::parse(rest)?;
    match mode.as_str() {
        "rank" => rank(&opts),
        "drive" => drive(&opts),
        other => Err(format!("unknown mode {other:?}; use drive or rank").into()),
    }
}

struct Opts {
    strategy: String,
    ranks: u32,
    seconds: u64,
    rate: u64,
    metrics: usize,
    interval: u64,
    out: PathBuf,
    ranklog: Option<PathBuf>,
    dir: Option<PathBuf>,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut o = Opts {
            strategy: "grouped".into(),
            ranks: 4,
            seconds: 600,
            rate: 10_000,
            metrics: 10,
            interval: 10,
            out: PathBuf::from("target/reliability"),
            ranklog: None,
            dir: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone();
            match flag.as_str() {
                "--strategy" => o.strategy = value,
                "--ranks" => o.ranks = value.parse()?,
                "--seconds" => o.seconds = value.parse()?,
                "--rate" => o.rate = value.parse()?,
                "--metrics" => o.metrics = value.parse()?,
                "--interval" => o.interval = value.parse::<u64>()?.max(1),
                "--out" => o.out = value.into(),
                "--ranklog" => o.ranklog = Some(value.into()),
                "--dir" => o.dir = Some(value.into()),
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(o)
    }
}

/// One rank: log steps until the time is up, then finish.
fn rank(o: &Opts) -> Res<()> {
    let strategy: Strategy = o.strategy.parse()?;
    let run = ranklog::init(
        Settings::new()
            .project("soak")
            .strategy(strategy)
            .mode(Mode::Offline)
            .silent(true)
            .config(json!({"rate": o.rate, "metrics": o.metrics})),
    )?;
    let keys: Vec<String> = (0..o.metrics).map(|i| format!("m{i:02}")).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(o.seconds);
    let mut step: u64 = 0;
    let mut dropped_errors = 0u64;
    while Instant::now() < end {
        // Log a burst, then pace it to the rate.
        for _ in 0..100 {
            let x = step as f64;
            let row = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), (x * 1e-4 + i as f64).sin()));
            if run.log(row).is_err() {
                dropped_errors += 1;
            }
            if step % 1000 == 0 {
                run.summary("last_step", step as f64)?;
            }
            if step % 100_000 == 0 {
                run.update_config(json!({ "checkpoint": step }))?;
            }
            step += 1;
        }
        if o.rate > 0 {
            let due = start + Duration::from_secs_f64(step as f64 / o.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let done = run.finish()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "steps {step} in {secs:.1} s ({:.0}/s), {dropped_errors} failed log calls, dir {}",
        step as f64 / secs,
        done.dir
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    if dropped_errors > 0 {
        return Err(format!("{dropped_errors} log calls failed").into());
    }
    Ok(())
}

/// What one look at a process found.
#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn drive(o: &Opts) -> Res<()> {
    let me = std::env::current_exe()?;
    let ranklog = match &o.ranklog {
        Some(p) => p.clone(),
        None => me
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("ranklog"))
            .ok_or("cannot find the ranklog binary; pass --ranklog PATH")?,
    };
    let dir = o
        .dir
        .clone()
        .unwrap_or_else(|| o.out.join(format!("soak-runs-{}", o.strategy)));
    std::fs::create_dir_all(&o.out)?;
    let mut launch = Command::new(&ranklog)
        .args(["launch", "--no-view", "--nproc-per-node"])
        .arg(o.ranks.to_string())
        .arg("--strategy")
        .arg(&o.strategy)
        .arg("--dir")
        .arg(&dir)
        .arg("--")
        .arg(&me)
        .arg("rank")
        .args(["--strategy", &o.strategy])
        .args(["--seconds", &o.seconds.to_string()])
        .args(["--rate", &o.rate.to_string()])
        .args(["--metrics", &o.metrics.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ranklog.display()))?;
    let lines = launch
        .stdout
        .take()
        .ok_or("no stdout from ranklog launch")?;
    let printer = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for line in BufReader::new(lines).lines().map_while(Result::ok) {
            println!("{line}");
            kept.push(line);
        }
        kept
    });
    eprintln!(
        "soak: {} ranks, {}, {} s, rate {} steps/s per rank, sampling every {} s",
        o.ranks, o.strategy, o.seconds, o.rate, o.interval
    );
    let start = Instant::now();
    let mut curves: BTreeMap<u32, Vec<Sample>> = BTreeMap::new();
    let status = loop {
        if let Some(status) = launch.try_wait()? {
            break status;
        }
        let t = start.elapsed().as_secs_f64();
        for (rank, pid) in ranks_of(launch.id()) {
            if let Some(s) = sample(pid, t) {
                curves.entry(rank).or_default().push(s);
            }
        }
        let next = Duration::from_secs(o.interval);
        let deadline = Instant::now() + next;
        while Instant::now() < deadline {
            if launch.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let output = printer.join().unwrap_or_default();
    let mut failures = Vec::new();
    if !status.success() {
        failures.push(format!("ranklog launch ended with {status}"));
    }
    let mut report = Vec::new();
    for (rank, samples) in &curves {
        print_curve(*rank, samples);
        let verdict = judge(samples);
        match &verdict {
            Ok(v) => println!("rank {rank}: {v}"),
            Err(why) => println!("rank {rank}: GREW: {why}"),
        }
        if let Err(why) = &verdict {
            failures.push(format!("rank {rank}: {why}"));
        }
        report.push(json!({
            "rank": rank,
            "verdict": verdict.as_ref().map_or_else(|e| e.clone(), |v| v.clone()),
            "samples": samples.iter().map(|s| json!({
                "t_s": (s.t * 10.0).round() / 10.0,
                "rss_kib": s.rss_kib,
                "threads": s.threads,
                "fds": s.fds,
            })).collect::<Vec<_>>(),
        }));
    }
    if curves.len() != o.ranks as usize {
        failures.push(format!("sampled {} of {} ranks", curves.len(), o.ranks));
    }
    let file = o.out.join(format!("soak-{}.json", o.strategy));
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&json!({
            "strategy": o.strategy,
            "ranks": o.ranks,
            "seconds": o.seconds,
            "rate_steps_per_s": o.rate,
            "metrics_per_step": o.metrics,
            "rank_output": output,
            "ranks_sampled": report,
            "failures": failures,
        }))?,
    )?;
    eprintln!("soak: samples in {}", file.display());
    if failures.is_empty() {
        eprintln!("soak: flat: no growth of memory, descriptors or threads after warm-up");
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

/// The rank processes the launcher started, by their `RANK`.
fn ranks_of(launcher: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the command in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(launcher) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let rank = env
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("RANK="))
            .and_then(|r| r.parse().ok());
        if let Some(rank) = rank {
            out.push((rank, pid));
        }
    }
    out
}

fn sample(pid: u32, t: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        t,
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds,
    })
}

fn print_curve(rank: u32, samples: &[Sample]) {
    println!("rank {rank}:   t(s)   RSS(MiB)  threads  fds");
    for s in samples {
        println!(
            "         {:6.0}   {:8.1}  {:7}  {:3}",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.threads,
            s.fds
        );
    }
}

/// Flat after warm-up: compares the second fifth of the samples with the last fifth.
fn judge(samples: &[Sample]) -> Result<String, String> {
    if samples.len() < 10 {
        return Err(format!(
            "only {} samples; run longer or sample more often",
            samples.len()
        ));
    }
    let fifth = samples.len() / 5;
    let early = &samples[fifth..2 * fifth];
    let late = &samples[samples.len() - fifth..];
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
    let early_rss = max(early, |s| s.rss_kib);
    let late_rss = max(late, |s| s.rss_kib);
    let allowed = (early_rss / 10).max(2048);
    let mut why = Vec::new();
    if late_rss > early_rss + allowed {
        why.push(format!(
            "memory grew from {early_rss} KiB to {late_rss} KiB (more than {allowed} KiB)"
        ));
    }
    let settled = &samples[fifth..];
    for (name, f) in [
        ("threads", (|s: &Sample| s.threads) as fn(&Sample) -> u64),
        ("file descriptors", |s: &Sample| s.fds),
    ] {
        let first = f(&settled[0]);
        let most = max(settled, f);
        if most > first {
            why.push(format!("{name} grew from {first} to {most}"));
        }
    }
    if why.is_empty() {
        Ok(format!(
            "flat: RSS {early_rss} KiB -> {late_rss} KiB (trend {:+.1} KiB/min), threads {}, fds {}",
            slope_kib_per_min(settled),
            settled[0].threads,
            settled[0].fds
        ))
    } else {
        Err(why.join("; "))
    }
}

/// Least-squares trend of the resident memory, in KiB per minute.
fn slope_kib_per_min(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.t).sum::<f64>() / n;
    let mean_m = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        num += (s.t - mean_t) * (s.rss_kib as f64 - mean_m);
        den += (s.t - mean_t) * (s.t - mean_t);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den * 60.0
    }
}

//! The single-writer path with real processes: how long a worker's `log`
//! takes, and how many metric points per second a whole job gets into rank
//! 0's run.
//!
//! The ranks are copies of this bench binary (re-run with
//! `RANKLOG_BENCH_ROLE` set), started with the variables `ranklog launch`
//! gives them, each job with its own group, run folder and rendezvous folder.
//!
//! - `single_writer/worker_log/10`: a 2-rank job stays up for the whole
//!   measurement; rank 1 logs rows of 10 metrics on command and times them
//!   (the lossless `Block` policy, owner keeping up). Compare with
//!   `run_log/offline/10` in `benches/log.rs`, the same call writing locally.
//! - `single_writer/end_to_end/4x5000x10`: each iteration starts a fresh
//!   4-rank job (spawn, connect, 5,000 rows of 10 metrics per rank, finish)
//!   and checks that every point reached the run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use ranklog::Settings;

const ROLE: &str = "RANKLOG_BENCH_ROLE";
const WIDTH: usize = 10;
const E2E_RANKS: u32 = 4;
const E2E_STEPS: u64 = 5_000;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        if let Err(e) = rank(&role) {
            eprintln!("bench rank: {e}");
            std::process::exit(1);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

fn keys() -> Vec<String> {
    (0..WIDTH).map(|k| format!("metric/{k}")).collect()
}

/// The body of one rank. `serve`: log the number of rows read from stdin and
/// print the nanoseconds it took, until `end`. `job`: log `BENCH_STEPS` rows.
fn rank(role: &str) -> Res<()> {
    let run = ranklog::init(Settings::new().project("bench"))?;
    let keys = keys();
    let mut step = 0u64;
    let mut log_rows = |n: u64| -> Res<()> {
        for _ in 0..n {
            let v = step as f64;
            run.log(keys.iter().map(|k| (k, v)))?;
            step += 1;
        }
        Ok(())
    };
    match role {
        "job" => log_rows(std::env::var("BENCH_STEPS")?.parse()?)?,
        "serve" => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "READY")?;
            out.flush()?;
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if line == "end" {
                    break;
                }
                let t = Instant::now();
                log_rows(line.parse()?)?;
                writeln!(out, "{}", t.elapsed().as_nanos())?;
                out.flush()?;
            }
        }
        other => return Err(format!("unknown role {other:?}").into()),
    }
    run.finish()?;
    Ok(())
}

/// One single-writer job of real processes; killed if dropped early.
struct Job {
    ranks: Vec<Child>,
    root: tempfile::TempDir,
}

impl Job {
    fn start(world: u32, role: &str, steps: u64, tag: &str) -> Res<Job> {
        let root = tempfile::tempdir()?;
        let group = format!("bench-{tag}-{}", std::process::id());
        let ranks = (0..world)
            .map(|r| spawn(root.path(), &group, world, r, role, steps))
            .collect::<Res<Vec<Child>>>()?;
        Ok(Job { ranks, root })
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn wait(&mut self) -> Res<()> {
        for (r, c) in self.ranks.iter_mut().enumerate() {
            let status = c.wait()?;
            if !status.success() {
                return Err(format!("rank {r} ended with {status}").into());
            }
        }
        self.ranks.clear();
        Ok(())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for c in &mut self.ranks {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(root: &Path, group: &str, world: u32, r: u32, role: &str, steps: u64) -> Res<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .env(ROLE, role)
        .env("BENCH_STEPS", steps.to_string())
        .env("RANK", r.to_string())
        .env("LOCAL_RANK", r.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_WORLD_SIZE", world.to_string())
        .env("RANKLOG_GROUP", group)
        .env("RANKLOG_STRATEGY", "single-writer")
        .env("RANKLOG_DIR", root.join("runs"))
        .env("RANKLOG_RENDEZVOUS_DIR", root.join("rendezvous"))
        .env("RANKLOG_MODE", "offline")
        .env("RANKLOG_SILENT", "1")
        .env("RANKLOG_DISABLE_GIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Rank 1 of a 2-rank job, driven through its stdin and stdout.
struct Worker {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    owner_stdin: ChildStdin,
    job: Job,
}

impl Worker {
    fn start() -> Res<Worker> {
        let mut job = Job::start(2, "serve", 0, "latency")?;
        let mut pipes = job
            .ranks
            .iter_mut()
            .map(|c| Some((c.stdin.take()?, BufReader::new(c.stdout.take()?))))
            .collect::<Option<Vec<_>>>()
            .ok_or("a rank has no pipes")?;
        for (_, out) in &mut pipes {
            if read_line(out)? != "READY" {
                return Err("a rank did not start".into());
            }
        }
        let (stdin, stdout) = pipes.pop().ok_or("no worker")?;
        let (owner_stdin, _) = pipes.pop().ok_or("no owner")?;
        Ok(Worker {
            stdin,
            stdout,
            owner_stdin,
            job,
        })
    }

    /// Has the worker log `rows` rows; the time its `log` calls took.
    fn log(&mut self, rows: u64) -> Res<Duration> {
        writeln!(self.stdin, "{rows}")?;
        self.stdin.flush()?;
        Ok(Duration::from_nanos(read_line(&mut self.stdout)?.parse()?))
    }

    fn end(mut self) -> Res<()> {
        writeln!(self.stdin, "end")?;
        self.stdin.flush()?;
        writeln!(self.owner_stdin, "end")?;
        self.owner_stdin.flush()?;
        drop((self.stdin, self.owner_stdin));
        self.job.wait()
    }
}

fn read_line(r: &mut impl BufRead) -> Res<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err("a rank closed its output".into());
    }
    Ok(line.trim_end().to_string())
}

fn points_in_run(root: &Path) -> Res<u64> {
    let dir = ranklog::store::run_dirs(&root.join("runs"))?
        .pop()
        .ok_or("no run written")?;
    Ok(ranklog::store::scan(&dir)?
        .metrics
        .iter()
        .filter(|m| m.key.starts_with("rank"))
        .map(|m| m.count)
        .sum())
}

fn single_writer(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_writer");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(WIDTH as u64));
    let mut worker = Worker::start().unwrap_or_else(|e| panic!("starting the job: {e}"));
    g.bench_function(BenchmarkId::new("worker_log", WIDTH), |b| {
        b.iter_custom(|iters| worker.log(iters).unwrap_or_else(|e| panic!("{e}")))
    });
    worker
        .end()
        .unwrap_or_else(|e| panic!("ending the job: {e}"));

    let points = u64::from(E2E_RANKS) * E2E_STEPS * WIDTH as u64;
    g.throughput(Throughput::Elements(points));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(6));
    let id = format!("{E2E_RANKS}x{E2E_STEPS}x{WIDTH}");
    g.bench_function(BenchmarkId::new("end_to_end", id), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut job = Job::start(E2E_RANKS, "job", E2E_STEPS, "e2e")
                    .unwrap_or_else(|e| panic!("starting the job: {e}"));
                job.wait().unwrap_or_else(|e| panic!("{e}"));
                spent += start.elapsed();
                let got = points_in_run(job.root()).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(got, points, "points lost between the ranks and the run");
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, single_writer);

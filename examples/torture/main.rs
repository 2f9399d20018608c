//! Kill-9 torture of the run-log writer and of the single-writer queue.
//!
//! Run through `scripts/torture-kill9.sh`, which installs MLflow, starts one
//! tracking server and calls
//!
//! ```text
//! torture --tracking-uri http://127.0.0.1:PORT [--seed N] [--kills N] [--queue-kills N]
//! ```
//!
//! The driver starts real logging processes (this same binary in a child
//! mode), SIGKILLs them at random moments and checks, after every kill, what
//! the run log, `ranklog show --json`, `ranklog sync` and the MLflow server
//! hold. See `writer.rs` and `queue.rs` for the two halves and `check.rs`
//! for what is checked. Prints a table and writes
//! `target/reliability/kill9.json`; exits non-zero on any violation.

mod check;
mod child;
mod mlflow;
mod queue;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Options of the driver.
pub struct Opts {
    pub seed: u64,
    pub kills: usize,
    pub queue_kills: usize,
    /// Writer kills run at once (each a child, a sync and checks).
    pub jobs: usize,
    pub tracking_uri: String,
    pub ranklog: PathBuf,
    pub out: PathBuf,
    pub work: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("writer-child") => child::writer_child(&args[1..]),
        Some("rank-child") => child::rank_child(&args[1..]),
        _ => match parse(&args) {
            Ok(opts) => drive(&opts),
            Err(e) => {
                eprintln!("torture: {e}");
                eprintln!(
                    "usage: torture --tracking-uri URI [--seed N] [--kills N] [--queue-kills N] [--jobs N] \
                     [--ranklog PATH] [--out FILE] [--work DIR]"
                );
                ExitCode::from(2)
            }
        },
    }
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut seed = None;
    let mut kills = 120;
    let mut queue_kills = 36;
    let mut jobs = 2;
    let mut uri = None;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/examples/torture -> target/release/ranklog
    let mut ranklog = me
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("ranklog"))
        .unwrap_or_else(|| PathBuf::from("ranklog"));
    let mut out = PathBuf::from("target/reliability/kill9.json");
    let mut work = std::env::temp_dir();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seed" => seed = Some(val()?.parse().map_err(|_| "bad --seed")?),
            "--kills" => kills = val()?.parse().map_err(|_| "bad --kills")?,
            "--queue-kills" => queue_kills = val()?.parse().map_err(|_| "bad --queue-kills")?,
            "--jobs" => jobs = val()?.parse().map_err(|_| "bad --jobs")?,
            "--tracking-uri" => uri = Some(val()?),
            "--ranklog" => ranklog = PathBuf::from(val()?),
            "--out" => out = PathBuf::from(val()?),
            "--work" => work = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b) >> 16
    });
    Ok(Opts {
        seed,
        kills,
        queue_kills,
        jobs,
        tracking_uri: uri.ok_or("--tracking-uri is required")?,
        ranklog,
        out,
        work,
    })
}

fn drive(opts: &Opts) -> ExitCode {
    let started = Instant::now();
    eprintln!(
        "torture: seed {} (replay with --seed {}), {} writer kills, {} queue kills",
        opts.seed, opts.seed, opts.kills, opts.queue_kills
    );
    if !opts.ranklog.exists() {
        eprintln!(
            "torture: {} not found; build the ranklog binary first (or pass --ranklog)",
            opts.ranklog.display()
        );
        return ExitCode::from(2);
    }
    let work = match tempfile::Builder::new()
        .prefix("ranklog-torture-")
        .tempdir_in(&opts.work)
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("torture: cannot create a work dir: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failures: Vec<String> = Vec::new();
    let writer = writer::run(opts, work.path(), &mut failures);
    let queue = queue::run(opts, work.path(), &mut failures);
    let total_s = started.elapsed().as_secs_f64();

    writer::print_table(&writer);
    queue::print_table(&queue);
    let json = serde_json::json!({
        "seed": opts.seed,
        "total_seconds": total_s,
        "writer": writer::to_json(&writer),
        "queue": queue::to_json(&queue),
        "failures": failures,
    });
    if let Some(dir) = opts.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_vec_pretty(&json) {
        Ok(text) => {
            if let Err(e) = std::fs::write(&opts.out, text) {
                failures.push(format!("cannot write {}: {e}", opts.out.display()));
            }
        }
        Err(e) => failures.push(format!("cannot encode the report: {e}")),
    }
    eprintln!(
        "torture: report in {}; total {:.1} s",
        opts.out.display(),
        total_s
    );
    if failures.is_empty() {
        eprintln!("torture: PASSED (seed {})", opts.seed);
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("torture: FAIL: {f}");
        }
        eprintln!(
            "torture: FAILED: {} problem(s) (seed {}); work dir kept at {}",
            failures.len(),
            opts.seed,
            work.keep().display()
        );
        ExitCode::FAILURE
    }
}

/// A small seeded generator (splitmix64): enough for kill delays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// splitmix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value of metric `key` at `step` of a run with `seed`: any finite f64
/// with a full mantissa, so a changed bit anywhere is seen.
pub fn value(seed: u64, step: u64, key: u64) -> f64 {
    let h = mix(seed ^ mix(step.wrapping_mul(31) ^ mix(key.wrapping_add(7))));
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    unit * 10f64.powi((h & 7) as i32 - 3)
}

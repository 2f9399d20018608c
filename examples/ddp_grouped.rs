//! A simulated data-parallel training job: run it under a launcher and every
//! rank logs its own run into the job's group.
//!
//! ```text
//! cargo build --release --example ddp_grouped
//! cargo run --release -- launch --nproc-per-node 4 -- target/release/examples/ddp_grouped
//! ```
//!
//! (`scripts/demo.sh` does both.) The rank, world size and group come from
//! the launcher's environment (`ranklog launch`, torchrun, mpirun or srun);
//! run alone, it is a single process with an ordinary run.
//!
//! Options: `--steps N` (default 300), `--step-ms MS` (default 5), and
//! `--crash-rank R --crash-step S` to make rank R abort at step S.

use std::time::Duration;

use ranklog::{Mode, Settings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut steps: u64 = 300;
    let mut step_ms: u64 = 5;
    let mut crash: (Option<u32>, u64) = (None, 0);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> Result<u64, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or(format!("{a} needs a value"))?.parse()?)
        };
        match a.as_str() {
            "--steps" => steps = value()?,
            "--step-ms" => step_ms = value()?,
            "--crash-rank" => crash.0 = Some(u32::try_from(value()?)?),
            "--crash-step" => crash.1 = value()?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let run = ranklog::init(
        Settings::new()
            .project("ddp-demo")
            .job_type("train")
            .mode(Mode::Offline)
            .silent(true)
            .config(serde_json::json!({"lr": 3e-4, "batch_per_rank": 32, "steps": steps})),
    )?;
    // The launcher's variables (ranklog read them too; here for the simulation).
    let rank: u32 = std::env::var("RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let world: u32 = std::env::var("WORLD_SIZE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    println!("rank {rank}/{world}: run {} ({})", run.name(), run.id());

    let mut noise =
        Noise(0x9e37_79b9_7f4a_7c15 ^ u64::from(rank).wrapping_mul(0x2545_f491_4f6c_dd1d));
    // The last rank is a bit slower, as a GPU with a hot neighbour would be.
    let slow = if world > 1 && rank == world - 1 {
        1.3
    } else {
        1.0
    };
    for step in 0..steps {
        if crash.0 == Some(rank) && step == crash.1 {
            run.flush()?;
            eprintln!("rank {rank}: simulated crash at step {step}");
            std::process::abort();
        }
        let t = step as f64 / steps.max(1) as f64;
        let lr = 3e-4 * (1.0 - t).max(0.0);
        let loss = 2.3 * (-4.0 * t).exp()
            + 0.15
            + 0.04 * noise.next()
            + 0.02 * f64::from(rank) / f64::from(world);
        let grad_norm = 1.5 * (-2.0 * t).exp() + 0.2 + 0.1 * noise.next().abs();
        let samples_per_s = 32_000.0 / slow * (1.0 + 0.05 * noise.next());
        run.log([
            ("train/loss", loss),
            ("train/lr", lr),
            ("train/grad_norm", grad_norm),
            ("perf/samples_per_s", samples_per_s),
        ])?;
        std::thread::sleep(Duration::from_secs_f64(step_ms as f64 * slow / 1000.0));
    }
    let done = run.finish()?;
    println!("rank {rank}/{world}: finished {} steps", done.steps);
    Ok(())
}

/// A small deterministic noise source in [-1, 1] (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

//! A simulated data-parallel job whose ranks all write into one run that rank
//! 0 owns: the single-writer strategy.
//!
//! ```text
//! cargo build --release --example ddp_single_writer
//! cargo run --release -- launch --nproc-per-node 4 -- target/release/examples/ddp_single_writer
//! ```
//!
//! Every rank runs the same code. Rank 0's run gets `rank<r>/loss` for every
//! rank and `loss/mean`, `loss/min`, `loss/max`, `loss/count` per step; the
//! workers write no files. Options: `--steps N` (default 200).

use ranklog::{Mode, Settings, Strategy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: u64 = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 200,
        [flag, n] if flag == "--steps" => n.parse()?,
        other => return Err(format!("unknown arguments {other:?}; use --steps N").into()),
    };
    let run = ranklog::init(
        Settings::new()
            .project("ddp-demo")
            .job_type("train")
            .strategy(Strategy::SingleWriter)
            .mode(Mode::Offline)
            .silent(true)
            .config(serde_json::json!({"lr": 3e-4, "steps": steps})),
    )?;
    let rank: f64 = std::env::var("RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.0);
    println!("run {} ({}) on rank {rank}", run.name(), run.id());
    for step in 0..steps {
        let t = step as f64 / steps as f64;
        // Each rank sees its own shard, so its loss differs a little.
        let loss = 2.0 * (-4.0 * t).exp() + 0.05 * (1.0 + rank) * (7.0 * t + rank).sin().abs();
        let grad_norm = 1.0 / (1.0 + 5.0 * t) + 0.02 * rank;
        run.log([("loss", loss), ("grad_norm", grad_norm)])?;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    run.summary("final_loss", 2.0 * (-4.0f64).exp())?;
    let done = run.finish()?;
    if let Some(dir) = done.dir {
        println!("rank 0 wrote the job's run to {}", dir.display());
    }
    Ok(())
}

//! Start a run, log metrics, set a summary value and finish.
//!
//! `cargo run --example quickstart`, then `cargo run -- show latest-run`.

use ranklog::{Mode, Settings};

fn main() -> Result<(), ranklog::Error> {
    let run = ranklog::init(
        Settings::new()
            .project("mnist")
            .mode(Mode::Offline)
            .config(serde_json::json!({"lr": 1e-3, "batch": 128})),
    )?;
    let mut best: f64 = 0.0;
    for step in 0..1000u32 {
        let x = f64::from(step) / 1000.0;
        let loss = 2.0 * (-3.0 * x).exp() + 0.05;
        let acc = 1.0 - loss / 2.1;
        best = best.max(acc);
        run.log([("train/loss", loss), ("train/acc", acc)])?;
        if step % 100 == 99 {
            run.log_at(u64::from(step), [("val/loss", loss * 1.1)])?;
        }
    }
    run.summary("best_acc", best)?;
    run.finish()?;
    Ok(())
}

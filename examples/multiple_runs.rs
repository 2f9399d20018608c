//! Several runs from one process: one after another, and side by side.
//!
//! The loop is W&B's FAQ example (10 runs of 100 logs each); dropping the
//! handle at the end of each iteration finishes that run.

use ranklog::{Mode, Reinit, Settings};

fn main() -> Result<(), ranklog::Error> {
    let base = || Settings::new().project("sweep").mode(Mode::Offline);
    for trial in 0..10u32 {
        let lr = 1e-3 * f64::from(trial + 1);
        let run = ranklog::init(base().config(serde_json::json!({"lr": lr, "trial": trial})))?;
        for step in 0..100u32 {
            let loss = (-lr * f64::from(step)).exp();
            run.log([("loss", loss)])?;
        }
    }

    // Two runs at the same time: a training run and an evaluation run.
    let train = ranklog::init(base().job_type("train").reinit(Reinit::CreateNew))?;
    let eval = ranklog::init(base().job_type("eval").reinit(Reinit::CreateNew))?;
    for step in 0..50u32 {
        train.log([("loss", 1.0 / f64::from(step + 1))])?;
        if step % 10 == 9 {
            eval.log([("val/loss", 1.2 / f64::from(step + 1))])?;
        }
    }
    train.finish()?;
    eval.finish()?;
    Ok(())
}

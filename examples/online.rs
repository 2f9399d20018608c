//! Streams a run to an MLflow tracking server while it trains.
//!
//! ```text
//! mlflow server --host 127.0.0.1 --port 5000 &
//! RANKLOG_TRACKING_URI=http://127.0.0.1:5000 cargo run --example online
//! ```
//!
//! Without a tracking server the run is written offline and can be uploaded
//! later with `ranklog sync --all`.

use ranklog::Settings;

fn main() -> Result<(), ranklog::Error> {
    let run = ranklog::init(
        Settings::new()
            .project("online-demo")
            .config(serde_json::json!({"lr": 3e-4, "optimizer": {"name": "adam", "beta1": 0.9}})),
    )?;
    let steps: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for step in 0..steps {
        let loss = 1.0 / (1.0 + step as f64);
        run.log([("train/loss", loss), ("lr", 3e-4)])?;
    }
    run.summary("final_loss", 1.0 / steps as f64)?;
    let done = run.finish()?;
    if let Some(u) = &done.upload {
        eprintln!("acknowledged {} of {} bytes", u.acked_bytes, u.log_bytes);
    }
    Ok(())
}

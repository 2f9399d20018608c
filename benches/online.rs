//! `Run::log` in online mode costs what it costs offline: the uploader only
//! reads the log file on its own thread.
//!
//! `RANKLOG_BENCH_TRACKING_URI=http://127.0.0.1:5000 cargo bench --bench online`
//! streams to that server; without it the online run points at a closed local
//! port, so its uploader keeps retrying in the background while `log` is
//! measured.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ranklog::{Mode, Reinit, Settings};

fn log_offline_vs_online(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let uri = std::env::var("RANKLOG_BENCH_TRACKING_URI").unwrap_or_else(|_| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        format!("http://127.0.0.1:{port}")
    });
    let mut group = c.benchmark_group("log_2_metrics");
    for (label, mode) in [("offline", Mode::Offline), ("online", Mode::Online)] {
        let settings = Settings::new()
            .project("bench")
            .dir(dir.path())
            .mode(mode)
            .silent(true)
            .capture_git(false)
            .reinit(Reinit::CreateNew)
            .tracking_uri(&uri)
            .upload_timeout(Duration::from_secs(2));
        let Ok(run) = ranklog::init(settings) else {
            return;
        };
        group.bench_function(label, |b| b.iter(|| run.log([("loss", 0.5), ("acc", 0.9)])));
        let _ = run.finish();
    }
    group.finish();
}

criterion_group!(benches, log_offline_vs_online);
criterion_main!(benches);

//! Export speed: a 1,000,000-point run to a W&B offline run, against `cp` of
//! the same number of bytes.
//!
//! `cargo bench --bench export`. Prints points/s and bytes; the export should
//! be limited by writing the file, not by encoding it, so its time should be
//! close to `cp`'s.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ranklog::{Mode, Settings};

const STEPS: u64 = 100_000;
const METRICS: usize = 10;
const POINTS: u64 = STEPS * METRICS as u64;

fn make_run(root: &Path) -> std::path::PathBuf {
    let run = ranklog::init(
        Settings::new()
            .project("bench")
            .dir(root)
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .config(serde_json::json!({"lr": 3e-4, "batch": 256})),
    )
    .expect("init");
    let keys: Vec<String> = (0..METRICS).map(|i| format!("train/metric_{i}")).collect();
    for step in 0..STEPS {
        let x = step as f64;
        run.log(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), (x + i as f64).sin())),
        )
        .expect("log");
    }
    run.summary("best", 0.5).expect("summary");
    let dir = run.dir().expect("dir").to_path_buf();
    run.finish().expect("finish");
    dir
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run_dir = make_run(&tmp.path().join("runs"));
    let out = tmp.path().join("out");
    let report = ranklog::export::wandb::export_run(&run_dir, &out).expect("export");
    assert_eq!(report.points, POINTS);
    let rlog_bytes = std::fs::metadata(run_dir.join("run.rlog"))
        .map(|m| m.len())
        .unwrap_or(0);

    // One plain measurement first, for the summary lines.
    let t = Instant::now();
    let report = ranklog::export::wandb::export_run(&run_dir, &out).expect("export");
    let export_time = t.elapsed();
    let copy_to = tmp.path().join("copy.wandb");
    let t = Instant::now();
    cp(&report.file, &copy_to);
    let cp_time = t.elapsed();
    eprintln!(
        "export: {POINTS} points, run.rlog {rlog_bytes} bytes -> .wandb {} bytes, {} records",
        report.bytes, report.records
    );
    eprintln!(
        "export: {:.1} ms = {:.2} M points/s, {:.0} MB/s; cp of the same file: {:.1} ms ({:.0} MB/s)",
        ms(export_time),
        POINTS as f64 / export_time.as_secs_f64() / 1e6,
        report.bytes as f64 / export_time.as_secs_f64() / 1e6,
        ms(cp_time),
        report.bytes as f64 / cp_time.as_secs_f64() / 1e6,
    );

    let mut g = c.benchmark_group("export_1m_points");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(POINTS));
    g.bench_function(BenchmarkId::new("wandb", POINTS), |b| {
        b.iter(|| ranklog::export::wandb::export_run(&run_dir, &out).expect("export"))
    });
    g.throughput(Throughput::Bytes(report.bytes));
    g.bench_function(BenchmarkId::new("cp_same_bytes", report.bytes), |b| {
        b.iter(|| cp(&report.file, &copy_to))
    });
    g.finish();
}

fn cp(from: &Path, to: &Path) {
    let status = Command::new("cp").arg(from).arg(to).status().expect("cp");
    assert!(status.success());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

criterion_group!(benches, bench);
criterion_main!(benches);

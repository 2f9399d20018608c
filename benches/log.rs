//! Cost of `Run::log` on the training thread, and of the run-log writer.
//!
//! Each sample logs into a fresh run and the run's finish is not timed, so
//! disk use stays bounded however long criterion measures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ranklog::record::Row;
use ranklog::store::Writer;
use ranklog::{Mode, Record, Reinit, Settings};

fn settings(root: &std::path::Path, mode: Mode) -> Settings {
    Settings::new()
        .dir(root)
        .mode(mode)
        .silent(true)
        .capture_git(false)
        .reinit(Reinit::CreateNew)
}

fn log(c: &mut Criterion) {
    let mut group = c.benchmark_group("run_log");
    // Online mode is measured apart, in benches/online.rs (from the sync
    // work): `log` offline vs online against a local server.
    for mode in [Mode::Offline, Mode::Disabled] {
        for width in [1usize, 10, 100] {
            let keys: Vec<String> = (0..width).map(|k| format!("metric/{k}")).collect();
            group.throughput(Throughput::Elements(width as u64));
            group.bench_with_input(BenchmarkId::new(mode.as_str(), width), &keys, |b, keys| {
                b.iter_custom(|iters| {
                    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                    let run = ranklog::init(settings(root.path(), mode))
                        .unwrap_or_else(|e| panic!("{e}"));
                    let start = Instant::now();
                    for i in 0..iters {
                        let v = i as f64;
                        // black_box: a disabled run's `log` is an inlined
                        // early return, which the loop would otherwise lose.
                        black_box(black_box(&run).log(keys.iter().map(|k| (k, v))))
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                    let spent = start.elapsed();
                    run.finish().unwrap_or_else(|e| panic!("{e}"));
                    spent
                })
            });
        }
    }
    group.finish();
}

fn writer(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer");
    let rows = 10_000u64;
    group.throughput(Throughput::Elements(rows * 10));
    group.bench_function("append_flush_10k_rows_x10", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
                let mut w =
                    Writer::create(&dir.path().join("run.rlog")).unwrap_or_else(|e| panic!("{e}"));
                let start = Instant::now();
                for step in 0..rows {
                    let values = (0..10u32)
                        .map(|k| (k, step as f64 + f64::from(k)))
                        .collect();
                    w.append(black_box(&Record::History(Row {
                        step,
                        t_us: step as i64 * 100,
                        values,
                    })));
                }
                w.flush().unwrap_or_else(|e| panic!("{e}"));
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, log, writer);
criterion_main!(benches);

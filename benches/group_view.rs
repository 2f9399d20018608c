//! GroupView load-and-reduce speed on a small group (the full-size check,
//! 64 ranks × 100,000 steps × 10 metrics, is `examples/group_scale.rs`).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ranklog::record::{Record, Row, Start};
use ranklog::store::{self, Meta, Writer};
use ranklog::{GroupView, RankInfo};

const RANKS: u32 = 8;
const STEPS: u64 = 2_000;
const METRICS: u32 = 10;

fn write_group(root: &Path) {
    for rank in 0..RANKS {
        let id = format!("bench{rank:03}");
        let dir = root.join(format!("run-20260101_000000-{id}"));
        std::fs::create_dir(&dir).expect("run dir");
        let info = RankInfo {
            rank,
            local_rank: rank,
            world_size: RANKS,
            local_world_size: RANKS,
            node_rank: 0,
        };
        let meta = Meta {
            format: store::FORMAT_VERSION,
            id: id.clone(),
            name: format!("g-rank{rank}"),
            project: "bench".into(),
            group: Some("g".into()),
            job_type: None,
            rank: Some(info),
            host: "bench-host".into(),
            pid: 0,
            pid_start: None,
            program: "bench".into(),
            args: Vec::new(),
            cwd: None,
            started: "2026-01-01T00:00:00Z".into(),
            start_unix_ms: 0,
            ranklog_version: "bench".into(),
            mode: "offline".into(),
            git: None,
        };
        std::fs::write(
            dir.join(store::META_FILE),
            serde_json::to_vec(&meta).expect("meta json"),
        )
        .expect("meta");
        let mut w = Writer::create(&dir.join(store::LOG_FILE)).expect("log");
        w.append(&Record::Start(Box::new(Start {
            id,
            name: meta.name.clone(),
            project: "bench".into(),
            group: Some("g".into()),
            job_type: None,
            rank: Some(info),
            start_unix_us: 0,
            host: meta.host.clone(),
            pid: 0,
        })));
        for k in 0..METRICS {
            w.append(&Record::Key {
                id: k,
                name: format!("m{k}"),
            });
        }
        for step in 0..STEPS {
            let values = (0..METRICS)
                .map(|k| (k, (step as f64 + f64::from(k) + f64::from(rank)).sin()))
                .collect();
            w.append(&Record::History(Row {
                step,
                t_us: step as i64,
                values,
            }));
        }
        w.sync().expect("write");
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_group(dir.path());
    let mut g = c.benchmark_group("group_view");
    g.throughput(Throughput::Elements(
        u64::from(RANKS) * STEPS * u64::from(METRICS),
    ));
    g.sample_size(10);
    g.bench_function("load_8_ranks_2000_steps_10_metrics", |b| {
        b.iter(|| GroupView::load(dir.path(), "g").expect("view"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

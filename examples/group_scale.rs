//! Measures how long a `GroupView` takes to load and reduce a large group,
//! and its peak memory.
//!
//! ```text
//! cargo run --release --example group_scale -- --ranks 64 --steps 100000 --metrics 10
//! ```
//!
//! It writes the group with ranklog's own log writer (`store::Writer`) into a
//! temporary directory (or `--dir D`, kept afterwards), then starts itself
//! again to load the view in a fresh process, so the peak RSS it reports
//! (`VmHWM`) is the view's alone. `--load-only --dir D` loads an existing
//! group `scale`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ranklog::record::{Exit, ExitState, Record, Row, Start};
use ranklog::store::{self, Meta, Writer};
use ranklog::{GroupView, RankInfo};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut ranks: u32 = 64;
    let mut steps: u64 = 100_000;
    let mut metrics: u32 = 10;
    let mut dir: Option<PathBuf> = None;
    let mut load_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--ranks" => ranks = value()?.parse()?,
            "--steps" => steps = value()?.parse()?,
            "--metrics" => metrics = value()?.parse()?,
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--load-only" => load_only = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if load_only {
        let dir = dir.ok_or("--load-only needs --dir")?;
        return load(&dir);
    }
    let tmp;
    let root = match &dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let t = Instant::now();
    let bytes = generate(&root, ranks, steps, metrics)?;
    println!(
        "generated {ranks} ranks x {steps} steps x {metrics} metrics: {:.0} MB of logs in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let status = Command::new(std::env::current_exe()?)
        .args(["--load-only", "--dir"])
        .arg(&root)
        .status()?;
    if !status.success() {
        return Err(format!("the load process failed: {status}").into());
    }
    Ok(())
}

fn load(root: &Path) -> Res<()> {
    let t = Instant::now();
    let view = GroupView::load(root, "scale")?;
    let secs = t.elapsed().as_secs_f64();
    let points: u64 = view
        .ranks
        .iter()
        .flat_map(|r| r.metrics.iter().map(|m| m.count))
        .sum();
    let loss = view
        .metric("m0")
        .and_then(|m| m.last)
        .ok_or("no metric m0")?;
    println!(
        "loaded and reduced {} ranks, {} metrics, {points} points in {secs:.2} s ({:.1} M points/s); last step {} mean {:.4}",
        view.ranks.len(),
        view.metrics.len(),
        points as f64 / secs / 1e6,
        loss.step,
        loss.mean
    );
    println!(
        "peak RSS of the load process: {:.1} MB",
        peak_rss_kb()? as f64 / 1024.0
    );
    Ok(())
}

fn peak_rss_kb() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad VmHWM line")?
        .parse()?)
}

fn generate(root: &Path, ranks: u32, steps: u64, metrics: u32) -> Res<u64> {
    std::fs::create_dir_all(root)?;
    let mut total = 0;
    for rank in 0..ranks {
        let id = format!("scale{rank:04}");
        let dir = root.join(store::run_dir_name(time::OffsetDateTime::now_utc(), &id));
        std::fs::create_dir(&dir)?;
        let info = RankInfo {
            rank,
            local_rank: rank % 8,
            world_size: ranks,
            local_world_size: 8.min(ranks),
            node_rank: rank / 8,
        };
        let meta = Meta {
            format: store::FORMAT_VERSION,
            id: id.clone(),
            name: format!("scale-rank{rank}"),
            project: "bench".into(),
            group: Some("scale".into()),
            job_type: None,
            rank: Some(info),
            host: "bench-host".into(),
            pid: 0,
            pid_start: None,
            program: "group_scale".into(),
            args: Vec::new(),
            cwd: None,
            started: "2026-01-01T00:00:00Z".into(),
            start_unix_ms: 0,
            ranklog_version: env!("CARGO_PKG_VERSION").into(),
            mode: "offline".into(),
            git: None,
        };
        std::fs::write(
            dir.join(store::META_FILE),
            serde_json::to_vec_pretty(&meta)?,
        )?;
        let mut w = Writer::create(&dir.join(store::LOG_FILE))?;
        w.append(&Record::Start(Box::new(Start {
            id,
            name: meta.name.clone(),
            project: meta.project.clone(),
            group: meta.group.clone(),
            job_type: None,
            rank: Some(info),
            start_unix_us: 0,
            host: meta.host.clone(),
            pid: 0,
        })));
        for k in 0..metrics {
            w.append(&Record::Key {
                id: k,
                name: format!("m{k}"),
            });
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(rank);
        let mut values = Vec::with_capacity(metrics as usize);
        for step in 0..steps {
            values.clear();
            for k in 0..metrics {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x >> 11) as f64 / (1u64 << 53) as f64;
                values.push((k, 1.0 / (1.0 + step as f64 * 1e-3) + 0.1 * noise));
            }
            w.append(&Record::History(Row {
                step,
                t_us: step as i64 * 1000,
                values: values.clone(),
            }));
            if step % 4096 == 4095 {
                w.flush()?;
            }
        }
        w.append(&Record::Exit(Exit {
            state: ExitState::Finished,
            code: 0,
            message: None,
            t_us: steps as i64 * 1000,
        }));
        w.sync()?;
        total += w.offset();
    }
    Ok(total)
}

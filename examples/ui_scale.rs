//! Times `ranklog ui`'s group page and JSON on a large group: 64 ranks ×
//! 100,000 steps × 10 metrics by default.
//!
//! ```text
//! cargo build --release --example group_scale --example ui_scale
//! target/release/examples/ui_scale --dir /tmp/ui-scale
//! ```
//!
//! When `--dir` holds no runs, it first runs `group_scale --dir D` (built
//! beside this example) to write the group `scale` with ranklog's own log
//! writer; `--ranks`, `--steps` and `--metrics` are passed on. It then starts
//! the server in this process on a free port and times, over plain HTTP:
//! the first group page after start (while the cold read of every log goes
//! on, a page that says so and updates itself), the time until the full
//! page is there, then `--repeat` more requests
//! of the page and of `/api/group/scale` (the cached view, rendered each
//! time), and the run page of one rank (one log read in full per request).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ranklog::ui::{Options, Server};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut dir: Option<PathBuf> = None;
    let mut repeat = 10;
    let mut generate_args: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--repeat" => repeat = value()?.parse()?,
            "--ranks" | "--steps" | "--metrics" => {
                let v = value()?;
                generate_args.extend([a.clone(), v]);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let root = dir.ok_or("--dir D is needed (the group is written there once and kept)")?;
    if ranklog::store::run_dirs(&root)?.is_empty() {
        let exe = std::env::current_exe()?;
        let generator = exe.with_file_name("group_scale");
        println!("writing the group with {}", generator.display());
        let status = Command::new(&generator)
            .arg("--dir")
            .arg(&root)
            .args(&generate_args)
            .status()
            .map_err(|e| {
                format!(
                    "cannot run {} (build it with --example group_scale): {e}",
                    generator.display()
                )
            })?;
        if !status.success() {
            return Err(format!("group_scale failed: {status}").into());
        }
    }
    let bytes: u64 = ranklog::store::run_dirs(&root)?
        .iter()
        .filter_map(|d| std::fs::metadata(d.join("run.rlog")).ok())
        .map(|m| m.len())
        .sum();
    let mut options = Options::new(&root);
    options.port = 0;
    let server = Server::bind(options)?;
    let addr = server.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = std::thread::spawn(move || {
        server.run_until(async {
            let _ = stop_rx.await;
        })
    });
    println!(
        "serving {} ({:.0} MB of logs) at http://{addr}/",
        root.display(),
        bytes as f64 / 1e6
    );

    let started = Instant::now();
    let (t, size, status, body) = get_body(addr, "/group/scale")?;
    let charts = |b: &str| b.contains("<figure class=\"chart\"");
    println!(
        "first group page after start: {status}, {size} bytes in {t:.3} s ({})",
        if charts(&body) {
            "with charts"
        } else {
            "the \"reading the logs\" page, which polls"
        }
    );
    let mut body = body;
    while !charts(&body) {
        std::thread::sleep(Duration::from_millis(100));
        body = get_body(addr, "/group/scale?partial=1")?.3;
    }
    println!(
        "the cold read of every log was done and the page full {:.3} s after start",
        started.elapsed().as_secs_f64()
    );
    for path in ["/group/scale", "/api/group/scale"] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..repeat {
            let (t, n, status) = get(addr, path)?;
            if status != 200 {
                return Err(format!("{path} answered {status}").into());
            }
            times.push(t);
            size = n;
        }
        report(path, &mut times, size);
    }
    let rank0 = ranklog::store::run_dirs(&root)?
        .into_iter()
        .next()
        .and_then(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .and_then(ranklog::store::id_from_dir_name)
                .map(String::from)
        })
        .ok_or("no run")?;
    let path = format!("/run/{rank0}");
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..repeat.min(5) {
        let (t, n, _) = get(addr, &path)?;
        times.push(t);
        size = n;
    }
    report(&path, &mut times, size);
    let _ = stop_tx.send(());
    serving.join().map_err(|_| "the server thread panicked")??;
    Ok(())
}

fn report(path: &str, times: &mut [f64], size: usize) {
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "{path}: {} requests, p50 {:.1} ms, max {:.1} ms, {:.0} KB",
        times.len(),
        p50 * 1e3,
        max * 1e3,
        size as f64 / 1e3
    );
}

/// One GET over HTTP/1.0: (seconds, body bytes, status).
fn get(addr: SocketAddr, path: &str) -> Res<(f64, usize, u16)> {
    let (t, n, status, _) = get_body(addr, path)?;
    Ok((t, n, status))
}

/// One GET over HTTP/1.0: (seconds, body bytes, status, body).
fn get_body(addr: SocketAddr, path: &str) -> Res<(f64, usize, u16, String)> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let secs = t.elapsed().as_secs_f64();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = String::from_utf8_lossy(&raw[head_end + 4..]).to_string();
    Ok((secs, body.len(), status, body))
}

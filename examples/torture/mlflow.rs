//! `ranklog sync` and what the MLflow server then holds, read through its REST API.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ranklog::sync::SyncState;
use serde_json::Value;

use crate::check::LogRead;

/// What the server holds of one run.
#[derive(Debug, PartialEq)]
pub struct Remote {
    pub status: String,
    /// key -> sorted (step, value bits, timestamp).
    pub history: BTreeMap<String, Vec<(u64, u64, i64)>>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// The outcome of syncing one run twice.
#[derive(Debug, Default)]
pub struct SyncCheck {
    pub points_checked: u64,
    pub duplicates: u64,
    pub missing: u64,
    pub errors: Vec<String>,
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

fn get(
    http: &reqwest::blocking::Client,
    uri: &str,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Value, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match http
            .get(format!("{uri}/api/2.0/mlflow/{path}"))
            .query(query)
            .send()
        {
            Ok(r) => {
                let status = r.status();
                let text = r.text().map_err(|e| format!("{path}: {e}"))?;
                if !status.is_success() {
                    return Err(format!("{path}: HTTP {status}: {text}"));
                }
                return serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"));
            }
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    Err(format!("{path}: {last}"))
}

/// Reads a run from the server: status, every metric's whole history, params, tags.
pub fn remote(uri: &str, run_id: &str) -> Result<Remote, String> {
    let http = client();
    let run = get(&http, uri, "runs/get", &[("run_id", run_id)])?;
    let run = &run["run"];
    let status = run["info"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pairs = |v: &Value| -> BTreeMap<String, String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["key"].as_str().unwrap_or_default().to_string(),
                            p["value"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let params = pairs(&run["data"]["params"]);
    let tags = pairs(&run["data"]["tags"]);
    let keys: Vec<String> = run["data"]["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut history = BTreeMap::new();
    for key in keys {
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("run_id", run_id),
                ("metric_key", key.as_str()),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                q.push(("page_token", t.as_str()));
            }
            let page = get(&http, uri, "metrics/get-history", &q)?;
            for m in page["metrics"].as_array().into_iter().flatten() {
                let step = m["step"]
                    .as_u64()
                    .or_else(|| m["step"].as_str().and_then(|s| s.parse().ok()));
                let ts = m["timestamp"]
                    .as_i64()
                    .or_else(|| m["timestamp"].as_str().and_then(|s| s.parse().ok()));
                let v = m["value"].as_f64();
                match (step, ts, v) {
                    (Some(s), Some(t), Some(v)) => points.push((s, v.to_bits(), t)),
                    _ => return Err(format!("unreadable metric point {m}")),
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        points.sort();
        history.insert(key, points);
    }
    Ok(Remote {
        status,
        history,
        params,
        tags,
    })
}

/// Runs `ranklog sync` on one run directory.
pub fn sync(ranklog: &Path, uri: &str, dir: &Path) -> Result<String, String> {
    let out = Command::new(ranklog)
        .arg("sync")
        .arg(dir)
        .args(["--tracking-uri", uri, "--retry-for", "30"])
        .env_remove("RANKLOG_DIR")
        .output()
        .map_err(|e| format!("cannot run ranklog sync: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("ranklog sync failed ({}): {text}", out.status))
    }
}

/// Syncs `dir`, compares the server's metrics with the log (every point once,
/// none extra), syncs again and checks that nothing changed.
pub fn sync_and_compare(
    ranklog: &Path,
    uri: &str,
    dir: &Path,
    log: &LogRead,
    expect_status: &str,
) -> SyncCheck {
    let mut c = SyncCheck::default();
    if let Err(e) = sync(ranklog, uri, dir) {
        c.errors.push(e);
        return c;
    }
    let state = match SyncState::load(dir) {
        Ok(Some(s)) => s,
        other => {
            c.errors.push(format!("no sync.json after sync: {other:?}"));
            return c;
        }
    };
    let Some(run_id) = state.remote_run_id.clone() else {
        c.errors.push("sync.json names no remote run".into());
        return c;
    };
    let first = match remote(uri, &run_id) {
        Ok(r) => r,
        Err(e) => {
            c.errors.push(e);
            return c;
        }
    };
    if first.status != expect_status {
        c.errors.push(format!(
            "remote run is {}, expected {expect_status}",
            first.status
        ));
    }
    for (key, points) in &log.history {
        let mut want: Vec<(u64, u64)> = points.clone();
        want.sort();
        let got: Vec<(u64, u64)> = first
            .history
            .get(key)
            .map(|p| p.iter().map(|&(s, v, _)| (s, v)).collect())
            .unwrap_or_default();
        // Multiset difference both ways.
        let (missing, extra) = diff(&want, &got);
        c.missing += missing;
        c.duplicates += extra;
        c.points_checked += want.len() as u64;
        if missing > 0 || extra > 0 {
            c.errors.push(format!(
                "metric {key}: log has {} points, server {} ({missing} missing, {extra} extra)",
                want.len(),
                got.len()
            ));
        }
    }
    for key in first.history.keys() {
        if !log.history.contains_key(key) {
            c.errors
                .push(format!("server has metric {key} the log does not"));
        }
    }
    if let Err(e) = sync(ranklog, uri, dir) {
        c.errors.push(format!("second sync: {e}"));
        return c;
    }
    match (remote(uri, &run_id), SyncState::load(dir)) {
        (Ok(second), Ok(Some(state2))) => {
            if second != first {
                c.errors
                    .push("the second sync changed what the server holds".into());
            }
            if state2 != state {
                c.errors.push(format!(
                    "the second sync changed sync.json: {state:?} -> {state2:?}"
                ));
            }
        }
        (Err(e), _) => c.errors.push(e),
        (_, other) => c
            .errors
            .push(format!("sync.json after the second sync: {other:?}")),
    }
    c
}

/// (points of `want` not in `got`, points of `got` beyond `want`), as multisets.
fn diff(want: &[(u64, u64)], got: &[(u64, u64)]) -> (u64, u64) {
    let mut count: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    for p in want {
        *count.entry(*p).or_default() += 1;
    }
    for p in got {
        *count.entry(*p).or_default() -= 1;
    }
    let missing = count.values().filter(|&&n| n > 0).map(|&n| n as u64).sum();
    let extra = count
        .values()
        .filter(|&&n| n < 0)
        .map(|&n| (-n) as u64)
        .sum();
    (missing, extra)
}

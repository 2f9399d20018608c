//! The wall clock going backwards during a run (an NTP step, a VM resumed
//! from a snapshot): steps stay ordered, times are recorded as given, and
//! nothing downstream breaks.
//!
//! The clock of a real child process is moved with libfaketime
//! (`LD_PRELOAD`, `FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE=1`); the
//! monotonic clock is left alone, as it is by a real clock step. The test is
//! `#[ignore]`d because it needs the `faketime` package: `scripts/faults.sh`
//! installs it and runs it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ranklog::store::{self, RunState};
use ranklog::{Mode, Record, Settings};

use crate::util::{
    assert_success, child, is_child, only_run, ranklog, read_http_request, records, temp_root,
};

/// Steps logged in each clock phase.
const PER_PHASE: u64 = 5;
/// Offsets of the wall clock in each phase, seconds: real time, then 2 h
/// back (before the run's start), then 1 h forward again (still before it).
const PHASES: [i64; 3] = [0, -7200, -3600];

/// libfaketime, where Debian's `libfaketime` package puts it.
fn libfaketime() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?.find_map(|d| {
        let p = d.ok()?.path().join("faketime/libfaketime.so.1");
        p.exists().then_some(p)
    });
    lib.or_else(|| {
        let p = PathBuf::from("/usr/lib/faketime/libfaketime.so.1");
        p.exists().then_some(p)
    })
}

fn wall_s() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Not a test: the body of the process whose clock goes backwards.
///
/// Logs `PER_PHASE` steps in each phase of `PHASES`, moving its own clock
/// by rewriting the libfaketime timestamp file between two `log` calls.
#[test]
fn clock_child() {
    let (Some(ts), Some(root)) = (std::env::var_os("CLOCK_TS"), std::env::var_os("CLOCK_ROOT"))
    else {
        return;
    };
    if !is_child() {
        return;
    }
    let set_offset = |s: i64| {
        std::fs::write(&ts, format!("{s:+}\n")).unwrap_or_else(|e| panic!("{e}"));
    };
    set_offset(0);
    let run = ranklog::init(
        Settings::new()
            .dir(PathBuf::from(root))
            .project("clock")
            .group("clockjob")
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut step = 0u64;
    for (i, offset) in PHASES.iter().enumerate() {
        let before = wall_s();
        set_offset(*offset);
        let jump = wall_s() - before - (offset - if i == 0 { 0 } else { PHASES[i - 1] });
        assert!(jump.abs() < 30, "libfaketime is not moving the clock");
        for _ in 0..PER_PHASE {
            run.log([("loss", step as f64)])
                .unwrap_or_else(|e| panic!("{e}"));
            step += 1;
        }
        run.summary("phase", i as f64)
            .unwrap_or_else(|e| panic!("{e}"));
        if i == 1 {
            // Idle past the heartbeat interval, with the clock behind the start.
            println!("SLEEPING");
            std::thread::sleep(ranklog::store::HEARTBEAT_INTERVAL + Duration::from_secs(2));
        }
    }
    run.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// What a fake MLflow server received: (path, JSON body).
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A tracking server that answers the calls `ranklog sync` makes like MLflow
/// and keeps their bodies.
fn fake_mlflow() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let uri = format!("http://{}", listener.local_addr().expect("addr"));
    let got: Received = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (path, body) = read_http_request(&stream);
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let endpoint = path
                .split('?')
                .next()
                .unwrap_or("")
                .trim_start_matches("/api/2.0/mlflow/")
                .to_string();
            let answer = match endpoint.as_str() {
                "experiments/get-by-name" => r#"{"experiment":{"experiment_id":"1"}}"#,
                "experiments/search" => r#"{"experiments":[]}"#,
                "runs/search" => r#"{"runs":[]}"#,
                "runs/create" => r#"{"run":{"info":{"run_id":"remote1"}}}"#,
                _ => "{}",
            };
            keep.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((endpoint, json));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (uri, got)
}

fn json_of(out: &std::process::Output, what: &str) -> serde_json::Value {
    assert_success(out, what);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
#[ignore = "needs libfaketime: run scripts/faults.sh"]
fn the_wall_clock_going_backwards_breaks_nothing() {
    let lib = libfaketime().unwrap_or_else(|| {
        panic!("libfaketime not found: apt-get install faketime (scripts/faults.sh does)")
    });
    let root = temp_root();
    let ts = root.path().join("faketime.ts");
    std::fs::write(&ts, "+0\n").unwrap_or_else(|e| panic!("{e}"));
    let runs = root.path().join("runs");
    let mut cmd = child(
        "clock::clock_child",
        &[
            ("CLOCK_TS", &ts.display().to_string()),
            ("CLOCK_ROOT", &runs.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", &ts.display().to_string()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        None,
    );
    cmd.env("LD_PRELOAD", &lib).stdout(Stdio::piped());
    let mut proc = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the child: {e}"));
    let mut out = BufReader::new(proc.stdout.take().expect("piped"));
    let mut seen = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        seen.push_str(&line);
        if line.contains("SLEEPING") {
            break;
        }
        line.clear();
    }
    assert!(
        seen.contains("SLEEPING"),
        "the child stopped early:\n{seen}"
    );
    // While it idles with its clock 2 h behind the start, the run is running.
    let dir = only_run(&runs);
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Running);
    let listed = json_of(
        &ranklog(&["runs", "--dir", &runs.display().to_string(), "--json"]),
        "ranklog runs --json",
    );
    assert!(listed.to_string().contains("running"), "{listed}");
    let _ = out.read_to_string(&mut seen);
    let status = proc.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success() && seen.contains("1 passed"),
        "child failed:\n{seen}"
    );

    // The log: steps in order, times as the clock gave them.
    let all = records(&dir);
    let rows: Vec<(u64, i64)> = all
        .iter()
        .filter_map(|r| match r {
            Record::History(row) => Some((row.step, row.t_us)),
            _ => None,
        })
        .collect();
    let n = PER_PHASE * PHASES.len() as u64;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    for (step, t_us) in &rows {
        let offset = PHASES[(*step / PER_PHASE) as usize] * 1_000_000;
        // Within a minute of the offset: the run itself takes well under that.
        assert!(
            (*t_us - offset).abs() < 60_000_000,
            "step {step}: t_us {t_us} not near {offset}"
        );
    }
    let exit = all
        .iter()
        .find_map(|r| match r {
            Record::Exit(e) => Some(e.clone()),
            _ => None,
        })
        .expect("an exit record");
    assert!(exit.t_us < 0, "the exit time is as given: {}", exit.t_us);
    let beats: Vec<i64> = all
        .iter()
        .filter_map(|r| match r {
            Record::Heartbeat { t_us } => Some(*t_us),
            _ => None,
        })
        .collect();
    assert!(
        beats
            .iter()
            .any(|t| (*t + 7_200_000_000).abs() < 60_000_000),
        "no heartbeat while the clock was 2 h back: {beats:?}"
    );

    // The run as the tools see it.
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
    let d = dir.display().to_string();
    let r = runs.display().to_string();
    assert_success(&ranklog(&["show", &d]), "ranklog show");
    let show = json_of(&ranklog(&["show", &d, "--json"]), "ranklog show --json");
    assert_eq!(show["state"], "finished", "{show}");
    json_of(
        &ranklog(&["runs", "--dir", &r, "--json"]),
        "ranklog runs --json",
    );
    let group = json_of(
        &ranklog(&["group", "clockjob", "--dir", &r, "--json"]),
        "ranklog group --json",
    );
    assert!(group.to_string().contains("loss"), "{group}");
    let plot = root.path().join("group.svg");
    assert_success(
        &ranklog(&[
            "group",
            "clockjob",
            "--dir",
            &r,
            "--plot",
            &plot.display().to_string(),
        ]),
        "ranklog group --plot",
    );
    let wandb = root.path().join("wandb");
    let export = ranklog(&[
        "export",
        "wandb",
        &d,
        "--out",
        &wandb.display().to_string(),
        "--json",
    ]);
    json_of(&export, "ranklog export wandb");

    // MLflow: every timestamp valid, as given, and the end not before the start.
    let (uri, got) = fake_mlflow();
    assert_success(
        &ranklog(&["sync", &d, "--tracking-uri", &uri]),
        "ranklog sync",
    );
    let got = got.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let start_ms = got
        .iter()
        .find(|(p, _)| p == "runs/create")
        .and_then(|(_, b)| b["start_time"].as_i64())
        .unwrap_or_else(|| panic!("no runs/create: {got:?}"));
    let start_us = all
        .iter()
        .find_map(|r| match r {
            Record::Start(s) => Some(s.start_unix_us),
            _ => None,
        })
        .expect("a start record");
    let mut metrics: HashMap<i64, i64> = HashMap::new();
    for (_, body) in got.iter().filter(|(p, _)| p == "runs/log-batch") {
        for m in body["metrics"].as_array().into_iter().flatten() {
            let ts = m["timestamp"].as_i64().expect("timestamp");
            assert!(ts >= 0, "MLflow refuses negative timestamps: {m}");
            metrics.insert(m["step"].as_i64().expect("step"), ts);
        }
    }
    assert_eq!(metrics.len() as u64, n, "{got:?}");
    for (step, t_us) in &rows {
        assert_eq!(
            metrics[&(*step as i64)],
            (start_us + t_us).div_euclid(1000),
            "step {step}"
        );
    }
    let end = got
        .iter()
        .find(|(p, _)| p == "runs/update")
        .and_then(|(_, b)| b["end_time"].as_i64())
        .unwrap_or_else(|| panic!("no runs/update: {got:?}"));
    assert!(
        end >= start_ms,
        "end_time {end} before start_time {start_ms}"
    );
}

//! Kills of a single run's writer in each of its states.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::json;

use crate::check::{self, Profile};
use crate::{mlflow, Opts, Rng};

/// Counts of one state.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub kills: u64,
    pub crashed: u64,
    pub finished: u64,
    /// Online: kills that landed while the upload was not yet complete.
    pub upload_in_progress: u64,
    pub acked_checked: u64,
    pub lost_acked: u64,
    pub server_points_checked: u64,
    pub server_missing: u64,
    pub server_duplicates: u64,
    pub failures: u64,
    /// Kill delay window used (ms; the widest).
    pub window_ms: f64,
    /// How long finish() took when the child got to report it (µs).
    pub finish_us: Option<u64>,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.kills += o.kills;
        self.crashed += o.crashed;
        self.finished += o.finished;
        self.upload_in_progress += o.upload_in_progress;
        self.acked_checked += o.acked_checked;
        self.lost_acked += o.lost_acked;
        self.server_points_checked += o.server_points_checked;
        self.server_missing += o.server_missing;
        self.server_duplicates += o.server_duplicates;
        self.failures += o.failures;
        self.window_ms = self.window_ms.max(o.window_ms);
    }
}

pub type Report = BTreeMap<Profile, Stats>;

/// A child process and the lines it printed, as they come.
pub struct Talker {
    pub child: Child,
    lines: Receiver<(Instant, String)>,
    pub seen: Vec<String>,
}

impl Talker {
    pub fn spawn(mut cmd: Command) -> Result<Talker, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a child: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Talker {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits for a line starting with `prefix`; returns it and when it came.
    pub fn wait_for(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<(Instant, String), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok((at, line));
                    }
                    if line.starts_with("ERROR") {
                        return Err(format!("child said {line}"));
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "no {prefix} line within {timeout:?}; saw {:?}",
                        self.seen.last()
                    ))
                }
            }
        }
    }

    /// SIGKILLs the child (if still there) and reaps it.
    pub fn kill(&mut self) {
        // Child::kill sends SIGKILL, and never to a child already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every line the child printed (call after it exited).
    pub fn drain(&mut self) -> &[String] {
        while let Ok((_, l)) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        &self.seen
    }

    /// The last acknowledged step.
    pub fn last_ack(&self) -> Option<u64> {
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix("ACK ").and_then(|s| s.trim().parse().ok()))
            .max()
    }
}

fn child_cmd(
    root: &Path,
    seed: u64,
    profile: Profile,
    uri: &str,
    finish_kill: Option<Duration>,
) -> Result<Command, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(me);
    cmd.arg("writer-child")
        .arg(root)
        .arg(seed.to_string())
        .arg(profile.arg())
        .arg(uri)
        .args(finish_kill.map(|d| d.as_micros().to_string()))
        .env_remove("RANKLOG_DIR")
        .env_remove("RANKLOG_MODE")
        .env_remove("RANKLOG_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_URI");
    Ok(cmd)
}

/// One child of `profile` run to its end: (RUN -> FINISHING, finish's own time).
fn calibrate(opts: &Opts, root: &Path, profile: Profile) -> Result<(Duration, Duration), String> {
    let mut t = Talker::spawn(child_cmd(
        root,
        opts.seed,
        profile,
        &opts.tracking_uri,
        None,
    )?)?;
    // The child's own clock: the pipe adds latency of its own.
    let micros = |line: &str, prefix: &str| -> u64 {
        line.trim_start_matches(prefix)
            .trim()
            .parse()
            .unwrap_or(1000)
    };
    t.wait_for("RUN ", Duration::from_secs(60))?;
    let (_, line) = t.wait_for("FINISHING", Duration::from_secs(60))?;
    let run_us = micros(&line, "FINISHING");
    let (_, line) = t.wait_for("FINISHED", Duration::from_secs(60))?;
    let _ = t.child.wait();
    let finish_us = micros(&line, "FINISHED");
    Ok((
        Duration::from_micros(run_us),
        Duration::from_micros(finish_us),
    ))
}

pub fn run(opts: &Opts, work: &Path, failures: &mut Vec<String>) -> Report {
    let report = Report::new();
    if opts.kills == 0 {
        return report;
    }
    let root = work.join("writer");
    let mut windows: BTreeMap<Profile, (Duration, Duration)> = BTreeMap::new();
    for p in Profile::ALL {
        match calibrate(opts, &root.join(format!("calibrate-{}", p.arg())), p) {
            Ok(w) => {
                eprintln!(
                    "torture: {} runs {:?} to finish, finish takes {:?}",
                    p.state(),
                    w.0,
                    w.1
                );
                windows.insert(p, w);
            }
            Err(e) => {
                failures.push(format!("calibration of {}: {e}", p.state()));
                return report;
            }
        }
    }
    // Each state's kill window adapts to the machine's pace so that a set
    // share of its kills lands after finish() completed (`finished_share`)
    // and the rest inside the state.
    let scales = Mutex::new(
        Profile::ALL
            .iter()
            .map(|&p| (p, 1.0))
            .collect::<BTreeMap<Profile, f64>>(),
    );
    // What finish() takes, from the kills that let it complete.
    let finish_est = Mutex::new(windows[&Profile::Finish].1);
    let next = AtomicUsize::new(0);
    let shared = Mutex::new((report, Vec::<String>::new()));
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= opts.kills {
                    break;
                }
                let profile = Profile::ALL[i % Profile::ALL.len()];
                let seed = crate::mix(opts.seed ^ (i as u64).wrapping_mul(0x1000_0001));
                let mut rng = Rng::new(seed);
                let (run_for, finish_for) = windows[&profile];
                let scale = scales.lock().unwrap_or_else(|e| e.into_inner())[&profile];
                let dir = root.join(format!("kill-{i:04}-{}", profile.arg()));
                let mut stats = Stats::default();
                let (run_for, finish_window) = match profile {
                    Profile::Finish => {
                        let est = *finish_est.lock().unwrap_or_else(|e| e.into_inner());
                        (run_for, est.mul_f64(scale))
                    }
                    Profile::Online => (run_for.mul_f64(scale), finish_for.mul_f64(scale)),
                    _ => (run_for.mul_f64(scale), finish_for),
                };
                let mut errors = Vec::new();
                match one_kill(
                    opts,
                    &dir,
                    seed,
                    profile,
                    run_for,
                    finish_window,
                    &mut rng,
                    &mut stats,
                ) {
                    Ok(errs) => errors.extend(errs),
                    Err(e) => errors.push(e),
                }
                if let (Profile::Finish, Some(us)) = (profile, stats.finish_us) {
                    let mut est = finish_est.lock().unwrap_or_else(|e| e.into_inner());
                    *est = est.mul_f64(0.5) + Duration::from_micros(us).mul_f64(0.5);
                }
                {
                    let p = finished_share(profile);
                    let mut scales = scales.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(s) = scales.get_mut(&profile) {
                        let f = if stats.finished > 0 {
                            0.85
                        } else {
                            1.0 + 0.15 * p / (1.0 - p)
                        };
                        *s = (*s * f).clamp(0.2, 6.0);
                    }
                }
                if errors.is_empty() {
                    // Keep the disk small: a passed kill's run is not needed.
                    let _ = std::fs::remove_dir_all(&dir);
                } else {
                    stats.failures += 1;
                }
                let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                let (report, fails) = &mut *guard;
                report.entry(profile).or_default().add(&stats);
                for e in errors {
                    fails.push(format!(
                        "writer kill {i} ({}, seed {seed}, {}): {e}",
                        profile.state(),
                        dir.display()
                    ));
                }
                let done: u64 = report.values().map(|s| s.kills).sum();
                if done % 20 == 0 {
                    eprintln!("torture: {done} writer kills done");
                }
            });
        }
    });
    let (report, fails) = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.extend(fails);
    report
}

/// The share of a state's kills meant to land after finish() completed.
fn finished_share(profile: Profile) -> f64 {
    match profile {
        Profile::Batch | Profile::Flush => 0.2,
        Profile::Finish => 0.5,
        Profile::Online => 0.3,
    }
}

#[allow(clippy::too_many_arguments)]
fn one_kill(
    opts: &Opts,
    root: &Path,
    seed: u64,
    profile: Profile,
    run_for: Duration,
    finish_for: Duration,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<Vec<String>, String> {
    let mut errors = Vec::new();
    // At finish the child kills itself (see child.rs): uniform in the window.
    let finish_kill = (profile == Profile::Finish).then(|| finish_for.mul_f64(rng.unit()));
    if profile == Profile::Finish {
        stats.window_ms = finish_for.as_secs_f64() * 1e3;
    }
    let mut t = Talker::spawn(child_cmd(
        root,
        seed,
        profile,
        &opts.tracking_uri,
        finish_kill,
    )?)?;
    let (_, line) = t
        .wait_for("RUN ", Duration::from_secs(60))
        .inspect_err(|_| t.kill())?;
    let dir = PathBuf::from(line.trim_start_matches("RUN ").trim());
    let delay = match profile {
        Profile::Finish => {
            // The child dies by its own SIGKILL; wait for it (bounded).
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(t.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            Duration::ZERO
        }
        Profile::Online => {
            // Logging, then finish() waiting for the upload to catch up.
            let w = run_for + finish_for;
            stats.window_ms = w.as_secs_f64() * 1e3;
            w.mul_f64(rng.unit())
        }
        _ => {
            let w = run_for;
            stats.window_ms = w.as_secs_f64() * 1e3;
            w.mul_f64(rng.unit())
        }
    };
    spin_sleep(delay);
    t.kill();
    stats.kills += 1;
    t.drain();
    if let Some(l) = t.seen.iter().find(|l| l.starts_with("ERROR")) {
        errors.push(format!("child reported {l}"));
    }
    let said_finished = t.seen.iter().any(|l| l.starts_with("FINISHED"));
    stats.finish_us = t.seen.iter().find_map(|l| {
        l.strip_prefix("FINISHED ")
            .and_then(|us| us.trim().parse().ok())
    });
    let acked = t.last_ack();
    if profile == Profile::Online {
        let complete =
            matches!(ranklog::sync::SyncState::load(&dir), Ok(Some(s)) if s.status.is_some());
        if !complete {
            stats.upload_in_progress += 1;
        }
    }

    // 1. The public reader reads the whole file without panicking.
    let read = check::read_log(&dir)?;
    // 2. So does `ranklog show --json`, and it says crashed or finished.
    let state = show_state(&opts.ranklog, &dir)?;
    let finished = read.exit;
    if finished {
        stats.finished += 1;
    } else {
        stats.crashed += 1;
    }
    let want_state = if finished { "finished" } else { "crashed" };
    if state != want_state {
        errors.push(format!(
            "ranklog show says {state}, the log says {want_state}"
        ));
    }
    if said_finished && !finished {
        errors.push("finish() returned but the log has no exit record".into());
    }
    if finished && !dir.join(ranklog::store::SUMMARY_FILE).exists() {
        // The exit record is written before summary.json: a kill between
        // the two is fine, but `show` must still say finished (checked above).
        if said_finished {
            errors.push("finish() returned but summary.json is missing".into());
        }
    }
    // 3. Everything acknowledged is there, byte for byte.
    let c = check::check_writer_log(&read, seed, profile, acked);
    stats.acked_checked += c.acked_checked;
    stats.lost_acked += c.lost_acked;
    errors.extend(c.errors);
    // 4. `ranklog sync` uploads it exactly once; a second sync changes nothing.
    let s = mlflow::sync_and_compare(
        &opts.ranklog,
        &opts.tracking_uri,
        &dir,
        &read,
        if finished { "FINISHED" } else { "KILLED" },
    );
    stats.server_points_checked += s.points_checked;
    stats.server_missing += s.missing;
    stats.server_duplicates += s.duplicates;
    errors.extend(s.errors);
    Ok(errors)
}

/// Sleeps precisely (the finish window is a few milliseconds).
pub fn spin_sleep(d: Duration) {
    let until = Instant::now() + d;
    if d > Duration::from_millis(2) {
        std::thread::sleep(d - Duration::from_millis(1));
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// `ranklog show --json <dir>`'s state.
pub fn show_state(ranklog: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(ranklog)
        .arg("show")
        .arg(dir)
        .arg("--json")
        .env_remove("RANKLOG_DIR")
        .output()
        .map_err(|e| format!("cannot run ranklog show: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ranklog show --json failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("ranklog show --json printed bad JSON: {e}"))?;
    Ok(v["state"].as_str().unwrap_or("?").to_string())
}

pub fn print_table(r: &Report) {
    if r.is_empty() {
        return;
    }
    println!();
    println!("run-log writer: SIGKILL at random moments");
    println!(
        "{:<14} {:>6} {:>8} {:>9} {:>10} {:>14} {:>10} {:>14} {:>8} {:>11} {:>9}",
        "state",
        "kills",
        "crashed",
        "finished",
        "window ms",
        "acked checked",
        "lost acked",
        "server points",
        "missing",
        "duplicates",
        "failures"
    );
    let mut total = Stats::default();
    for (p, s) in r {
        println!(
            "{:<14} {:>6} {:>8} {:>9} {:>10.1} {:>14} {:>10} {:>14} {:>8} {:>11} {:>9}",
            p.state(),
            s.kills,
            s.crashed,
            s.finished,
            s.window_ms,
            s.acked_checked,
            s.lost_acked,
            s.server_points_checked,
            s.server_missing,
            s.server_duplicates,
            s.failures
        );
        total.kills += s.kills;
        total.crashed += s.crashed;
        total.finished += s.finished;
        total.acked_checked += s.acked_checked;
        total.lost_acked += s.lost_acked;
        total.server_points_checked += s.server_points_checked;
        total.server_missing += s.server_missing;
        total.server_duplicates += s.server_duplicates;
        total.failures += s.failures;
    }
    println!(
        "{:<14} {:>6} {:>8} {:>9} {:>10} {:>14} {:>10} {:>14} {:>8} {:>11} {:>9}",
        "total",
        total.kills,
        total.crashed,
        total.finished,
        "",
        total.acked_checked,
        total.lost_acked,
        total.server_points_checked,
        total.server_missing,
        total.server_duplicates,
        total.failures
    );
    if let Some(s) = r.get(&Profile::Online) {
        println!(
            "online-upload: {} of {} kills landed before the upload was complete",
            s.upload_in_progress, s.kills
        );
    }
}

pub fn to_json(r: &Report) -> serde_json::Value {
    let states: Vec<_> = r
        .iter()
        .map(|(p, s)| {
            json!({
                "state": p.state(),
                "kills": s.kills,
                "crashed": s.crashed,
                "finished": s.finished,
                "kill_window_ms": s.window_ms,
                "upload_in_progress": s.upload_in_progress,
                "acked_records_checked": s.acked_checked,
                "lost_acked": s.lost_acked,
                "server_points_checked": s.server_points_checked,
                "server_missing": s.server_missing,
                "server_duplicates": s.server_duplicates,
                "failures": s.failures,
            })
        })
        .collect();
    json!({ "states": states })
}

//! Kills of the owner (rank 0) or a worker of 4-rank single-writer jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::check;
use crate::writer::{show_state, spin_sleep, Talker};
use crate::{mlflow, Opts, Rng};

/// `Settings::finish_timeout` of every rank: the owner waits at most this
/// long for goodbyes at finish.
pub const FINISH_TIMEOUT_S: u64 = 2;
/// `RANKLOG_QUEUE_CONNECT_TIMEOUT_S`.
const CONNECT_TIMEOUT_S: u64 = 2;
/// `RANKLOG_STRAGGLER_TIMEOUT_S`.
const STRAGGLER_TIMEOUT_S: u64 = 1;
const WORLD: u32 = 4;
/// `RANKLOG_QUEUE_STALL_TIMEOUT_S`: not reached by a kill (the connection
/// closes), set small so a wrong path would show.
const STALL_TIMEOUT_S: u64 = 2;
/// Documented (src/queue/mod.rs, Bounds): a worker's `log` returns
/// `OwnerGone` within about 100 ms of rank 0 being killed, and its `finish`
/// returns within about 200 ms once rank 0 is known gone.
const OWNER_GONE_NOTICE: Duration = Duration::from_millis(100 + 200);
/// Added to every documented bound: process exit and scheduling on a
/// loaded 2-core machine.
pub const SLACK: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Victim {
    Owner,
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Killed at a random moment from the start (connecting or logging).
    Early,
    /// Killed at a random moment once every rank had joined.
    Running,
}

/// Counts of one (transport, victim, phase).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub kills: u64,
    pub owner_crashed: u64,
    pub owner_finished: u64,
    pub lost_recorded: u64,
    pub rows_checked: u64,
    pub acked_checked: u64,
    pub lost_acked: u64,
    pub duplicates: u64,
    pub server_duplicates: u64,
    pub server_missing: u64,
    pub survivors: u64,
    /// Worst survivor time to exit after the kill, and the bound it had.
    pub worst_exit: Duration,
    pub worst_bound: Duration,
    /// Worst survivor exit time relative to its bound.
    pub worst_ratio: f64,
    pub failures: u64,
    /// Owner killed inside `init`, before its log had a header.
    pub killed_in_init: u64,
}

pub type Report = BTreeMap<(&'static str, Victim, Phase), Stats>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(29_600)
}

pub fn run(opts: &Opts, work: &Path, failures: &mut Vec<String>) -> Report {
    let mut report = Report::new();
    let mut rng = Rng::new(opts.seed ^ 0x5155_4555);
    for i in 0..opts.queue_kills {
        let transport = if i % 2 == 0 { "ipc" } else { "tcp" };
        let victim = if (i / 2) % 2 == 0 {
            Victim::Owner
        } else {
            Victim::Worker
        };
        // Jobs 12-15 of every 16: early kills, owner and worker, both transports.
        let phase = if i % 16 >= 12 {
            Phase::Early
        } else {
            Phase::Running
        };
        let seed = crate::mix(opts.seed ^ 0xabcd ^ i as u64);
        let root = work.join("queue").join(format!("kill-{i:03}-{transport}"));
        let stats = report.entry((transport, victim, phase)).or_default();
        let errors = match one_job(
            opts, &root, seed, i, transport, victim, phase, &mut rng, stats,
        ) {
            Ok(e) => e,
            Err(e) => vec![e],
        };
        if errors.is_empty() {
            let _ = std::fs::remove_dir_all(&root);
        } else {
            stats.failures += 1;
            for e in errors {
                failures.push(format!(
                    "queue kill {i} ({transport}, {victim:?}, {phase:?}, seed {seed}, {}): {e}",
                    root.display()
                ));
            }
        }
        if (i + 1) % 10 == 0 {
            eprintln!("torture: {} queue kills done", i + 1);
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn one_job(
    opts: &Opts,
    root: &Path,
    seed: u64,
    i: usize,
    transport: &str,
    victim: Victim,
    phase: Phase,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<Vec<String>, String> {
    let mut errors = Vec::new();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let group = format!("torture-{}-{i}", opts.seed);
    let port = free_port().to_string();
    let rdv = root.join("rendezvous");
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut ranks: Vec<Talker> = Vec::new();
    for r in 0..WORLD {
        let mut cmd = Command::new(&me);
        cmd.arg("rank-child")
            .arg(seed.to_string())
            .env("RANK", r.to_string())
            .env("LOCAL_RANK", r.to_string())
            .env("WORLD_SIZE", WORLD.to_string())
            .env("LOCAL_WORLD_SIZE", WORLD.to_string())
            .env("RANKLOG_GROUP", &group)
            .env("RANKLOG_STRATEGY", "single-writer")
            .env("RANKLOG_JOB_TOKEN", format!("token-{group}"))
            .env("RANKLOG_DIR", root)
            .env("RANKLOG_TRANSPORT", transport)
            .env("RANKLOG_MERGE", "per_rank")
            .env("RANKLOG_QUEUE_PORT", &port)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("RANKLOG_RENDEZVOUS_DIR", &rdv)
            .env(
                "RANKLOG_QUEUE_CONNECT_TIMEOUT_S",
                CONNECT_TIMEOUT_S.to_string(),
            )
            .env(
                "RANKLOG_STRAGGLER_TIMEOUT_S",
                STRAGGLER_TIMEOUT_S.to_string(),
            )
            .env("RANKLOG_QUEUE_STALL_TIMEOUT_S", STALL_TIMEOUT_S.to_string())
            .env_remove("MASTER_PORT")
            .env_remove("RANKLOG_MODE")
            .env_remove("RANKLOG_TRACKING_URI")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("TORCHELASTIC_RUN_ID");
        match Talker::spawn(cmd) {
            Ok(t) => ranks.push(t),
            Err(e) => {
                for t in &mut ranks {
                    t.kill();
                }
                return Err(e);
            }
        }
    }
    let spawned = Instant::now();
    let mut owner_dir: Option<PathBuf> = None;
    if phase == Phase::Running {
        for (r, t) in ranks.iter_mut().enumerate() {
            match t.wait_for("RUN ", Duration::from_secs(30)) {
                Ok((_, line)) if r == 0 => {
                    owner_dir = Some(PathBuf::from(line.trim_start_matches("RUN ").trim()))
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("rank {r} did not start: {e}")),
            }
        }
        if !errors.is_empty() {
            for t in &mut ranks {
                t.kill();
            }
            return Ok(errors);
        }
        spin_sleep(Duration::from_micros(rng.below(400_000)));
    } else {
        let until = spawned + Duration::from_micros(rng.below(300_000));
        spin_sleep(until.saturating_duration_since(Instant::now()));
    }
    let v = match victim {
        Victim::Owner => 0,
        Victim::Worker => 1 + rng.below(u64::from(WORLD) - 1) as usize,
    };
    ranks[v].kill();
    let killed_at = Instant::now();
    stats.kills += 1;
    // A killed worker: tell the others to stop now (close their stdin), as
    // the end of training would. A killed owner: the workers must notice
    // on their own.
    if victim == Victim::Worker {
        for (r, t) in ranks.iter_mut().enumerate() {
            if r != v {
                drop(t.child.stdin.take());
            }
        }
    }
    let connected_before_kill = phase == Phase::Running;
    let bound = |r: usize| -> Duration {
        match victim {
            // Workers notice within ~100 ms and finish within ~200 ms more;
            // before they joined, init gives up after the connect timeout.
            Victim::Owner if connected_before_kill => OWNER_GONE_NOTICE + SLACK,
            Victim::Owner => Duration::from_secs(CONNECT_TIMEOUT_S) + OWNER_GONE_NOTICE + SLACK,
            // Rank 0's finish waits at most the finish timeout for goodbyes
            // (and a rank that never joined is given up after the connect
            // timeout); workers finish at once.
            Victim::Worker if r == 0 && !connected_before_kill => {
                Duration::from_secs(CONNECT_TIMEOUT_S.max(FINISH_TIMEOUT_S)) + SLACK
            }
            Victim::Worker if r == 0 => Duration::from_secs(FINISH_TIMEOUT_S) + SLACK,
            Victim::Worker if !connected_before_kill => {
                Duration::from_secs(CONNECT_TIMEOUT_S) + SLACK
            }
            Victim::Worker => SLACK,
        }
    };
    // Measure every survivor's time to exit; kill it past bound + 5 s.
    let mut exit_times: Vec<Option<Duration>> = vec![None; ranks.len()];
    exit_times[v] = Some(Duration::ZERO);
    let give_up = killed_at + Duration::from_secs(CONNECT_TIMEOUT_S + FINISH_TIMEOUT_S + 5);
    while exit_times.iter().any(Option::is_none) && Instant::now() < give_up {
        for (r, t) in ranks.iter_mut().enumerate() {
            if exit_times[r].is_none() {
                if let Ok(Some(_)) = t.child.try_wait() {
                    exit_times[r] = Some(killed_at.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    for (r, t) in ranks.iter_mut().enumerate() {
        if r == v {
            continue;
        }
        stats.survivors += 1;
        let b = bound(r);
        match exit_times[r] {
            Some(took) => {
                let ratio = took.as_secs_f64() / b.as_secs_f64();
                if ratio > stats.worst_ratio {
                    stats.worst_ratio = ratio;
                    stats.worst_exit = took;
                    stats.worst_bound = b;
                }
                if took > b {
                    errors.push(format!(
                        "rank {r} took {took:?} to exit after the kill, bound {b:?}"
                    ));
                }
            }
            None => {
                t.kill();
                errors.push(format!(
                    "rank {r} hung: still running {:?} after the kill",
                    killed_at.elapsed()
                ));
            }
        }
        t.drain();
        if let Some(l) = t
            .seen
            .iter()
            .find(|l| l.starts_with("ERROR") && !(victim == Victim::Owner && l.contains("init")))
        {
            errors.push(format!("rank {r} reported {l}"));
        }
    }
    ranks[v].drain();

    // The owner's run.
    if owner_dir.is_none() {
        owner_dir = ranks[0]
            .seen
            .iter()
            .find_map(|l| l.strip_prefix("RUN ").map(|d| PathBuf::from(d.trim())));
    }
    if owner_dir.is_none() {
        owner_dir = std::fs::read_dir(root).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.join(ranklog::store::LOG_FILE).exists())
        });
    }
    let Some(dir) = owner_dir else {
        if victim == Victim::Owner {
            // Killed before the run existed: nothing was acknowledged.
            return Ok(errors);
        }
        errors.push("the owner's run directory is missing".into());
        return Ok(errors);
    };
    let init_returned = ranks[0].seen.iter().any(|l| l.starts_with("RUN "));
    let read = match check::read_log(&dir) {
        Ok(r) => r,
        // Killed inside `init` before the log header was written: an
        // error (not a panic), and nothing was acknowledged.
        Err(e) if !init_returned && !e.contains("panicked") => {
            stats.killed_in_init += 1;
            return Ok(errors);
        }
        Err(e) => return Err(e),
    };
    let state = show_state(&opts.ranklog, &dir)?;
    let owner_killed = victim == Victim::Owner;
    let want = if owner_killed { "crashed" } else { "finished" };
    if state != want {
        errors.push(format!("ranklog show says {state}, expected {want}"));
    }
    if read.exit {
        stats.owner_finished += 1;
    } else {
        stats.owner_crashed += 1;
    }
    if owner_killed && read.exit {
        errors.push("the killed owner's run has an exit record".into());
    }
    if !owner_killed {
        if read.lost_ranks.contains(&(v as u32)) {
            stats.lost_recorded += 1;
        } else {
            errors.push(format!(
                "killed rank {v} is not recorded as lost (lost: {:?})",
                read.lost_ranks
            ));
        }
        if let Some(r) = read.lost_ranks.iter().find(|&&r| r as usize != v) {
            errors.push(format!("rank {r} survived but is recorded as lost"));
        }
    }
    // Rows: exact values, no (rank, step) twice, a prefix of what each rank
    // logged; what a finished rank logged is all there; what rank 0
    // acknowledged is there.
    for r in 0..WORLD as usize {
        let key = format!("rank{r}/loss");
        let rows = read.history.get(&key).cloned().unwrap_or_default();
        let mut steps: Vec<u64> = Vec::with_capacity(rows.len());
        for &(step, bits) in &rows {
            stats.rows_checked += 1;
            if bits != crate::value(seed, step, r as u64).to_bits() {
                errors.push(format!("{key} at step {step} differs from what was logged"));
            }
            steps.push(step);
        }
        steps.sort_unstable();
        let before = steps.len();
        steps.dedup();
        if steps.len() != before {
            stats.duplicates += (before - steps.len()) as u64;
            errors.push(format!("{key}: {} duplicated steps", before - steps.len()));
        }
        if let Some(&last) = steps.last() {
            if steps.len() as u64 != last + 1 {
                errors.push(format!("{key}: {} steps up to {last}: a gap", steps.len()));
            }
        }
        let logged: Option<u64> = ranks[r]
            .seen
            .iter()
            .find_map(|l| l.strip_prefix("STEPS ").and_then(|s| s.trim().parse().ok()));
        let finished = ranks[r].seen.iter().any(|l| l == "FINISHED 0");
        if let (Some(n), true, false) = (logged, finished, owner_killed) {
            if steps.len() as u64 != n {
                errors.push(format!(
                    "{key}: rank {r} finished after {n} steps, the run has {}",
                    steps.len()
                ));
            }
        }
        if r == 0 {
            if let Some(a) = ranks[0].last_ack() {
                let have = steps.iter().take_while(|&&s| s <= a).count() as u64;
                stats.acked_checked += have;
                if have < a + 1 {
                    stats.lost_acked += a + 1 - have;
                    errors.push(format!(
                        "rank 0 acknowledged steps 0..={a}, the run has {have} of them"
                    ));
                }
            }
        }
    }
    let s = mlflow::sync_and_compare(
        &opts.ranklog,
        &opts.tracking_uri,
        &dir,
        &read,
        if read.exit { "FINISHED" } else { "KILLED" },
    );
    stats.server_duplicates += s.duplicates;
    stats.server_missing += s.missing;
    errors.extend(s.errors);
    Ok(errors)
}

pub fn print_table(r: &Report) {
    if r.is_empty() {
        return;
    }
    println!();
    println!("single-writer queue, 4 ranks: SIGKILL of the owner or a worker");
    println!(
        "{:<5} {:<7} {:<8} {:>6} {:>14} {:>9} {:>13} {:>13} {:>10} {:>10} {:>9} {:>22} {:>9}",
        "xport",
        "victim",
        "phase",
        "kills",
        "owner cr/fin",
        "lost rec",
        "rows checked",
        "acked checked",
        "lost acked",
        "dup (srv)",
        "survivors",
        "worst exit / bound",
        "failures"
    );
    for ((t, v, p), s) in r {
        println!(
            "{:<5} {:<7} {:<8} {:>6} {:>14} {:>9} {:>13} {:>13} {:>10} {:>10} {:>9} {:>22} {:>9}",
            t,
            format!("{v:?}").to_lowercase(),
            format!("{p:?}").to_lowercase(),
            s.kills,
            format!("{}/{}", s.owner_crashed, s.owner_finished),
            s.lost_recorded,
            s.rows_checked,
            s.acked_checked,
            s.lost_acked,
            format!("{} ({})", s.duplicates, s.server_duplicates),
            s.survivors,
            format!(
                "{:.0} ms / {:.0} ms",
                s.worst_exit.as_secs_f64() * 1e3,
                s.worst_bound.as_secs_f64() * 1e3
            ),
            s.failures
        );
    }
}

pub fn to_json(r: &Report) -> serde_json::Value {
    let rows: Vec<_> = r
        .iter()
        .map(|((t, v, p), s)| {
            json!({
                "transport": t,
                "victim": format!("{v:?}").to_lowercase(),
                "phase": format!("{p:?}").to_lowercase(),
                "kills": s.kills,
                "owner_crashed": s.owner_crashed,
                "owner_finished": s.owner_finished,
                "killed_rank_recorded_lost": s.lost_recorded,
                "rows_checked": s.rows_checked,
                "acked_rows_checked": s.acked_checked,
                "lost_acked": s.lost_acked,
                "duplicate_rows": s.duplicates,
                "server_duplicates": s.server_duplicates,
                "server_missing": s.server_missing,
                "survivors": s.survivors,
                "worst_survivor_exit_ms": s.worst_exit.as_secs_f64() * 1e3,
                "its_bound_ms": s.worst_bound.as_secs_f64() * 1e3,
                "worst_exit_to_bound_ratio": s.worst_ratio,
                "owner_killed_in_init": s.killed_in_init,
                "failures": s.failures,
            })
        })
        .collect();
    json!({
        "finish_timeout_s": FINISH_TIMEOUT_S,
        "connect_timeout_s": CONNECT_TIMEOUT_S,
        "straggler_timeout_s": STRAGGLER_TIMEOUT_S,
        "stall_timeout_s": STALL_TIMEOUT_S,
        "slack_ms": SLACK.as_millis() as u64,
        "jobs": rows,
    })
}

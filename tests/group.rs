//! Grouped strategy: `ranklog launch` with real processes, rank detection in
//! real processes, and group views.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ranklog::group::{GroupOptions, GroupView, StepStats};
use ranklog::record::{Exit, ExitState, Record, Row, Start};
use ranklog::store::{self, Meta, RunState};
use ranklog::{Mode, RankInfo, Settings};

use crate::util::{assert_success, ranklog_bin, temp_root};

/// Marks a child process of this test binary as a rank of a test job.
const HELPER: &str = "RANKLOG_TEST_RANK_HELPER";

/// Not a test: the body of a rank when this binary is started by a launcher
/// with `RANKLOG_TEST_RANK_HELPER=1` (a no-op otherwise).
///
/// Rank r logs `loss = (r + 1) * step` and `rank = r` for `HELPER_STEPS`
/// steps (default 20). With `HELPER_KILL_RANK`/`HELPER_KILL_STEP`, that rank
/// flushes and SIGKILLs itself at that step while the others keep logging
/// slowly until they are stopped. With `HELPER_EXIT_RANK`, that rank marks
/// its run failed and exits with code 3 at step 2; `HELPER_IGNORE_TERM`
/// makes every rank ignore SIGTERM.
#[test]
fn rank_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let steps = num("HELPER_STEPS").unwrap_or(20);
    let kill_rank = num("HELPER_KILL_RANK");
    let kill_step = num("HELPER_KILL_STEP").unwrap_or(0);
    let rank = num("RANK").unwrap_or(0);
    let run = match ranklog::init(
        Settings::new()
            .project("test")
            .mode(Mode::Offline)
            .silent(true),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("helper: ranklog::init failed: {e}");
            std::process::exit(3);
        }
    };
    println!("helper rank {rank} is {}", run.name());
    println!("helper rank {rank} has pid {}", std::process::id());
    if std::env::var_os("HELPER_IGNORE_TERM").is_some() {
        // SAFETY: makes this process ignore SIGTERM, as a stuck rank would.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }
    let exit_rank = num("HELPER_EXIT_RANK");
    for step in 0..steps {
        if exit_rank == Some(rank) && step == 2 {
            run.fail("giving up").expect("fail");
            std::process::exit(3);
        }
        if kill_rank == Some(rank) && step == kill_step {
            run.flush().expect("flush");
            println!("helper rank {rank} kills itself at step {step}");
            // SAFETY: sends SIGKILL to this very process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        run.log([
            ("loss", (rank + 1) as f64 * step as f64),
            ("rank", rank as f64),
        ])
        .expect("log");
        if kill_rank.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    run.finish().expect("finish");
}

/// `ranklog launch` running this binary's `rank_helper` as every rank.
fn launch(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let me = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(ranklog_bin());
    cmd.arg("launch")
        .arg("--dir")
        .arg(root)
        .args(extra)
        .arg("--")
        .arg(me)
        .args(["--exact", "group::rank_helper", "--nocapture", "--quiet"])
        .env(HELPER, "1")
        .env_remove("RANKLOG_GROUP")
        .env_remove("RANKLOG_STRATEGY")
        .env_remove("RANKLOG_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ranklog launch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn launch_runs_four_grouped_ranks_and_shows_the_view() {
    let root = temp_root();
    let out = launch(
        root.path(),
        &["--nproc-per-node", "4", "--group", "job4"],
        &[],
    );
    assert_success(&out, "ranklog launch");
    let stdout = text(&out.stdout);
    for r in 0..4 {
        assert!(
            stdout.contains(&format!("[rank {r}] helper rank {r} is job4-rank{r}")),
            "rank {r}'s output is not prefixed:\n{stdout}"
        );
    }
    assert!(stdout.contains("group job4  (4 of 4 ranks"), "{stdout}");

    let mut by_step: Vec<(u64, String, StepStats)> = Vec::new();
    let view = GroupView::stream(
        root.path(),
        "job4",
        GroupOptions::default(),
        |step, key, s| by_step.push((step, key.to_string(), *s)),
    )
    .expect("group view");
    assert_eq!(view.world_size, Some(4));
    assert!(view.missing.is_empty() && view.conflicts.is_empty() && view.stragglers.is_empty());
    assert_eq!(view.ranks.len(), 4);
    for (r, rank) in view.ranks.iter().enumerate() {
        assert_eq!(rank.rank, Some(r as u32));
        assert_eq!(rank.state, RunState::Finished);
        assert_eq!(rank.steps, 20);
        assert_eq!(rank.meta.name, format!("job4-rank{r}"));
        assert_eq!(rank.meta.group.as_deref(), Some("job4"));
        let info = rank.meta.rank.expect("rank info");
        assert_eq!(
            (info.rank, info.world_size, info.local_world_size),
            (r as u32, 4, 4)
        );
    }
    // Every step of `loss`: ranks log (r + 1) * step for r in 0..4.
    let loss: Vec<_> = by_step.iter().filter(|(_, k, _)| k == "loss").collect();
    assert_eq!(loss.len(), 20);
    for (step, _, s) in loss {
        let v: Vec<f64> = (1..=4).map(|k| f64::from(k) * *step as f64).collect();
        let mean = v.iter().sum::<f64>() / 4.0;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert_eq!(s.count, 4);
        assert!((s.mean - mean).abs() < 1e-9, "step {step}: {s:?}");
        assert_eq!((s.min, s.max), (v[0], v[3]));
        assert!((s.std - std).abs() < 1e-9, "step {step}: {s:?}");
    }
    let last = view.metric("loss").and_then(|m| m.last).expect("loss");
    assert_eq!(
        (last.step, last.mean, last.min, last.max),
        (19, 47.5, 19.0, 76.0)
    );

    let runs = Command::new(ranklog_bin())
        .args(["runs", "--json", "--group", "job4", "--dir"])
        .arg(root.path())
        .output()
        .expect("ranklog runs");
    assert_success(&runs, "ranklog runs --group");
    let listed: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(4));
}

#[test]
fn group_command_prints_json_and_plots() {
    let root = temp_root();
    let out = launch(
        root.path(),
        &["--nproc-per-node", "2", "--group", "g2", "--no-view"],
        &[],
    );
    assert_success(&out, "ranklog launch");
    assert!(
        !text(&out.stdout).contains("group g2"),
        "--no-view printed the view"
    );
    let svg = root.path().join("g2.svg");
    let png = root.path().join("g2.png");
    for plot in [&svg, &png] {
        let out = Command::new(ranklog_bin())
            .args(["group", "g2", "--json", "--dir"])
            .arg(root.path())
            .arg("--plot")
            .arg(plot)
            .output()
            .expect("ranklog group");
        assert_success(&out, "ranklog group --json --plot");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(v["world_size"], 2);
        assert_eq!(v["ranks"][1]["state"], "finished");
        let loss = v["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["key"] == "loss"))
            .expect("loss");
        assert_eq!(loss["last"]["mean"], 28.5); // (19 + 38) / 2
        assert_eq!(loss["series"].as_array().map(Vec::len), Some(20));
    }
    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(svg_text.contains("<svg") && svg_text.contains("loss"));
    let png_bytes = std::fs::read(&png).expect("png written");
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));

    let dir = root.path().to_str().expect("utf-8 temp dir");
    let bad = crate::util::ranklog(&["group", "nope", "--dir", dir]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("no runs of group \"nope\"") && err.contains("g2"),
        "{err}"
    );
}

fn pid_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[test]
fn a_killed_rank_stops_the_job_and_shows_as_crashed() {
    let root = temp_root();
    let out = launch(
        root.path(),
        &[
            "--nproc-per-node",
            "4",
            "--group",
            "boom",
            "--grace-period",
            "5",
        ],
        &[
            ("HELPER_STEPS", "100000"),
            ("HELPER_KILL_RANK", "2"),
            ("HELPER_KILL_STEP", "5"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "exit code says SIGKILL\n{stderr}"
    );
    assert!(
        stderr.contains("rank 2 failed (killed by SIGKILL); stopped the other 3 running ranks"),
        "{stderr}"
    );
    let view = GroupView::load(root.path(), "boom").expect("group view");
    assert_eq!(view.ranks.len(), 4);
    let two = view.rank(2).expect("rank 2");
    assert_eq!(two.state, RunState::Crashed);
    assert_eq!(two.last_step, Some(4));
    for r in &view.ranks {
        assert_ne!(
            r.state,
            RunState::Running,
            "rank {:?} still running",
            r.rank
        );
        assert!(
            pid_gone(r.meta.pid),
            "rank {:?} (pid {}) was left behind",
            r.rank,
            r.meta.pid
        );
    }
    let stdout = text(&out.stdout);
    assert!(stdout.contains("crashed: rank 2"), "{stdout}");
}

#[test]
fn rank_zero_only_leaves_no_files_for_other_ranks() {
    let root = temp_root();
    let out = launch(
        root.path(),
        &[
            "--nproc-per-node",
            "4",
            "--group",
            "r0",
            "--strategy",
            "rank-zero-only",
        ],
        &[],
    );
    assert_success(&out, "ranklog launch --strategy rank-zero-only");
    let dirs = store::run_dirs(root.path()).expect("list");
    assert_eq!(dirs.len(), 1, "only rank 0 writes: {dirs:?}");
    let s = store::scan(&dirs[0]).expect("scan");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("[rank 0] helper rank 0 has pid {}\n", s.meta.pid)),
        "the run is not rank 0's:\n{stdout}"
    );
    assert_eq!(s.meta.rank, None, "the run stands for the whole job");
    assert_eq!(s.meta.group.as_deref(), Some("r0"));
    assert_eq!(s.steps, 20);
    assert!(!stdout.contains("missing"), "{stdout}");
}

#[test]
fn a_command_that_does_not_exist_starts_no_rank() {
    let root = temp_root();
    let out = Command::new(ranklog_bin())
        .args(["launch", "--nproc-per-node", "3", "--dir"])
        .arg(root.path())
        .args(["--", "/nonexistent/ranklog-no-such-command"])
        .output()
        .expect("ranklog launch");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot start `/nonexistent/ranklog-no-such-command`")
            && err.contains("no rank was started"),
        "{err}"
    );
    assert!(store::run_dirs(root.path()).expect("list").is_empty());
}

/// Starts this binary's `rank_helper` once with `env` (no launcher).
fn helper_alone(root: &Path, env: &[(&str, &str)]) -> Output {
    let me = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(me);
    cmd.args(["--exact", "group::rank_helper", "--nocapture", "--quiet"])
        .env(HELPER, "1")
        .env("RANKLOG_DIR", root);
    for k in [
        "RANKLOG_GROUP",
        "RANKLOG_STRATEGY",
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "TORCHELASTIC_RUN_ID",
        "SLURM_JOB_ID",
        "SLURM_STEP_ID",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_LOCALID",
        "SLURM_NODEID",
        "SLURM_TASKS_PER_NODE",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "PMI_RANK",
        "PMI_SIZE",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run the helper")
}

#[test]
fn torchrun_inside_slurm_takes_torchruns_rank_and_slurms_job_as_group() {
    let root = temp_root();
    let out = helper_alone(
        root.path(),
        &[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NODEID", "0"),
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_STEP_ID", "0"),
            ("RANK", "5"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "4"),
            ("GROUP_RANK", "1"),
            ("TORCHELASTIC_RUN_ID", "none"),
        ],
    );
    assert_success(&out, "helper under torchrun inside Slurm");
    let s = store::scan(&crate::util::only_run(root.path())).expect("scan");
    assert_eq!(
        s.meta.rank,
        Some(RankInfo {
            rank: 5,
            local_rank: 1,
            world_size: 8,
            local_world_size: 4,
            node_rank: 1
        })
    );
    assert_eq!(s.meta.group.as_deref(), Some("4242.0"));
    assert_eq!(s.meta.name, "4242.0-rank5");
}

#[test]
fn a_multi_rank_job_without_group_is_refused() {
    let root = temp_root();
    let out = helper_alone(
        root.path(),
        &[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("one of 2 ranks (Open MPI) but no group key was found; set RANKLOG_GROUP"),
        "{err}"
    );
    assert!(store::run_dirs(root.path()).expect("list").is_empty());
    let out = helper_alone(
        root.path(),
        &[
            ("RANK", "x"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "0"),
            ("RANKLOG_GROUP", "g"),
        ],
    );
    assert!(
        text(&out.stderr).contains("RANK=\"x\" is not a whole number"),
        "{}",
        text(&out.stderr)
    );
}

/// Writes a run directly with the store's writer: `rows` of `(step, values)`.
fn fake_run(
    root: &Path,
    group: &str,
    rank: Option<u32>,
    world: u32,
    start_ms: i64,
    rows: &[(u64, &[(&str, f64)])],
    finished: bool,
) -> PathBuf {
    let id = format!(
        "{group}-r{}x{start_ms}",
        rank.map_or("n".into(), |r| r.to_string())
    );
    let dir = root.join(format!("run-20260101_000000-{id}"));
    std::fs::create_dir_all(&dir).expect("run dir");
    let info = rank.map(|r| RankInfo {
        rank: r,
        local_rank: r,
        world_size: world,
        local_world_size: world,
        node_rank: 0,
    });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let meta = Meta {
        format: store::FORMAT_VERSION,
        id: id.clone(),
        name: format!("{group}-{id}"),
        project: "test".into(),
        group: Some(group.into()),
        job_type: None,
        rank: info,
        host: host.clone(),
        pid: u32::MAX - 7, // no such process: without an exit record the run crashed
        pid_start: None,
        program: "fake".into(),
        args: vec![],
        cwd: None,
        started: "2026-01-01T00:00:00Z".into(),
        start_unix_ms: start_ms,
        ranklog_version: "test".into(),
        mode: "offline".into(),
        git: None,
    };
    std::fs::write(
        dir.join(store::META_FILE),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("meta");
    let mut w = store::Writer::create(&dir.join(store::LOG_FILE)).expect("log");
    w.append(&Record::Start(Box::new(Start {
        id,
        name: meta.name.clone(),
        project: "test".into(),
        group: Some(group.into()),
        job_type: None,
        rank: info,
        start_unix_us: start_ms * 1000,
        host,
        pid: meta.pid,
    })));
    let mut keys: Vec<String> = Vec::new();
    for (step, values) in rows {
        let mut row = Row {
            step: *step,
            t_us: *step as i64,
            values: Vec::new(),
        };
        for (k, v) in values.iter() {
            let id = match keys.iter().position(|x| x == k) {
                Some(i) => i,
                None => {
                    keys.push(k.to_string());
                    w.append(&Record::Key {
                        id: (keys.len() - 1) as u32,
                        name: k.to_string(),
                    });
                    keys.len() - 1
                }
            };
            row.values.push((id as u32, *v));
        }
        w.append(&Record::History(row));
    }
    if finished {
        w.append(&Record::Exit(Exit {
            state: ExitState::Finished,
            code: 0,
            message: None,
            t_us: 1,
        }));
    }
    w.sync().expect("write log");
    dir
}

#[test]
fn view_reports_missing_conflicting_and_lagging_ranks() {
    let root = temp_root();
    let r = root.path();
    let long: Vec<(u64, &[(&str, f64)])> = (0..100).map(|s| (s, &[("x", 1.0)][..])).collect();
    fake_run(r, "g", Some(0), 5, 1, &long, true);
    fake_run(r, "g", Some(1), 5, 1, &long, true);
    let old = fake_run(r, "g", Some(1), 5, 0, &long[..50], true); // an older run claiming rank 1
    fake_run(r, "g", Some(3), 5, 1, &long[..10], false); // lags and crashed
    fake_run(r, "g", None, 5, 2, &long, true); // a member without rank
    fake_run(r, "other", Some(0), 1, 1, &long, true);
    // Rank 4 was killed before its log had a header.
    let empty = fake_run(r, "g", Some(4), 5, 1, &[], false);
    std::fs::write(empty.join(store::LOG_FILE), b"").expect("truncate");
    let view = GroupView::load(r, "g").expect("view");
    assert_eq!(view.world_size, Some(5));
    assert_eq!(view.missing, vec![2]);
    let four = view.rank(4).expect("rank 4 is shown");
    assert_eq!((four.steps, four.state), (0, RunState::Crashed));
    assert_eq!(four.damage.as_ref().map(|d| d.offset), Some(0));
    assert_eq!(view.conflicts.len(), 1);
    assert_eq!(view.conflicts[0].rank, 1);
    assert_eq!(view.conflicts[0].superseded[0].dir, old);
    assert_eq!(
        view.ranks.iter().map(|r| r.rank).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(3), Some(4), None]
    );
    assert_eq!(
        view.rank(1).map(|r| r.steps),
        Some(100),
        "the newest run of rank 1 is used"
    );
    assert_eq!(view.rank(3).map(|r| r.state), Some(RunState::Crashed));
    assert_eq!(view.median_step, Some(99));
    assert_eq!(view.stragglers.len(), 2);
    assert_eq!(
        (view.stragglers[0].rank, view.stragglers[0].behind),
        (Some(3), 90)
    );
    assert_eq!(
        (view.stragglers[1].rank, view.stragglers[1].last_step),
        (Some(4), None)
    );
    // Conflicting runs are not merged: at step 0 rank 1 counts once.
    let x = view.metric("x").expect("x");
    assert_eq!(x.series[0].count, 4);
    assert_eq!(x.last.map(|s| (s.step, s.count)), Some((99, 3)));

    let out = Command::new(ranklog_bin())
        .args(["group", "g", "--dir"])
        .arg(r)
        .output()
        .expect("group");
    assert_success(&out, "ranklog group");
    let shown = text(&out.stdout);
    for want in [
        "missing: rank 2 (world size 5)",
        "crashed: rank 3",
        "straggler: rank 3 at step 9",
        "conflict: rank 1 is claimed by 2 runs",
    ] {
        assert!(shown.contains(want), "{want:?} not in\n{shown}");
    }

    match GroupView::load(r, "nope") {
        Err(ranklog::Error::GroupNotFound { groups, .. }) => assert_eq!(groups, vec!["g", "other"]),
        other => panic!("expected GroupNotFound, got {other:?}"),
    }
}

#[test]
fn aggregates_match_hand_computed_values() {
    let root = temp_root();
    let r = root.path();
    // Rank 0 logs a at steps 0, 1, 2; rank 1 at 0 and 2 (twice at 2: last wins); rank 2 a NaN at 1.
    fake_run(
        r,
        "h",
        Some(0),
        3,
        1,
        &[
            (0, &[("a", 1.0)]),
            (1, &[("a", 2.0)]),
            (2, &[("a", 3.0), ("b", 10.0)]),
        ],
        true,
    );
    fake_run(
        r,
        "h",
        Some(1),
        3,
        1,
        &[(0, &[("a", 5.0)]), (2, &[("a", 100.0)]), (2, &[("a", 7.0)])],
        true,
    );
    fake_run(
        r,
        "h",
        Some(2),
        3,
        1,
        &[
            (0, &[("a", 9.0)]),
            (1, &[("a", f64::NAN)]),
            (2, &[("b", 20.0)]),
        ],
        true,
    );
    let mut seen = Vec::new();
    let view = GroupView::stream(r, "h", GroupOptions::default(), |step, key, s| {
        seen.push((step, key.to_string(), *s))
    })
    .expect("view");
    let get = |step: u64, key: &str| {
        seen.iter()
            .find(|(s, k, _)| *s == step && k == key)
            .map(|x| x.2)
            .unwrap_or_else(|| panic!("no {key}@{step}"))
    };
    let a0 = get(0, "a"); // 1, 5, 9
    assert_eq!((a0.count, a0.mean, a0.min, a0.max), (3, 5.0, 1.0, 9.0));
    assert!((a0.std - (32.0f64 / 3.0).sqrt()).abs() < 1e-12);
    let a1 = get(1, "a"); // 2 and a NaN left out
    assert_eq!(
        (a1.count, a1.mean, a1.min, a1.max, a1.std),
        (1, 2.0, 2.0, 2.0, 0.0)
    );
    let a2 = get(2, "a"); // 3 and 7 (the 100 was overwritten at the same step)
    assert_eq!(
        (a2.count, a2.mean, a2.min, a2.max, a2.std),
        (2, 5.0, 3.0, 7.0, 2.0)
    );
    let b2 = get(2, "b");
    assert_eq!((b2.count, b2.mean, b2.min, b2.max), (2, 15.0, 10.0, 20.0));
    assert_eq!(seen.len(), 4);
    let steps: Vec<u64> = seen.iter().map(|x| x.0).collect();
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "steps in order: {steps:?}"
    );
    // Per rank: rank 1 logged a three times, min 5, max 100, last 7.
    let a_of_1 = view
        .rank(1)
        .and_then(|r| r.metrics.iter().find(|m| m.key == "a"))
        .expect("a of rank 1");
    assert_eq!(
        (a_of_1.count, a_of_1.last, a_of_1.min, a_of_1.max),
        (3, 7.0, 5.0, 100.0)
    );
    assert_eq!(view.metric("a").and_then(|m| m.last), Some(a2));
}

#[test]
fn long_runs_are_downsampled_to_the_resolution() {
    let root = temp_root();
    let r = root.path();
    let rows: Vec<(u64, &[(&str, f64)])> = (0..1000).map(|s| (s, &[("x", 2.0)][..])).collect();
    fake_run(r, "d", Some(0), 2, 1, &rows, true);
    fake_run(r, "d", Some(1), 2, 1, &rows[..500], true);
    let view = GroupView::load_with(
        r,
        "d",
        GroupOptions {
            resolution: 64,
            ..GroupOptions::default()
        },
    )
    .expect("view");
    let x = view.metric("x").expect("x");
    assert!(
        x.series.len() <= 64 && x.series.len() >= 32,
        "{}",
        x.series.len()
    );
    assert!(x
        .series
        .iter()
        .all(|s| s.span == x.series[0].span && s.mean == 2.0));
    assert_eq!(x.series[0].count, 2);
    assert_eq!(x.series.last().map(|s| s.count), Some(1));
    let rank1 = &view.rank(1).expect("rank 1").metrics[0].series;
    assert!(rank1.len() < x.series.len() && rank1.iter().all(|(_, v)| *v == 2.0));
}

/// Starts `ranklog launch` with 3 slow ranks and waits until each has a run.
/// The caller waits for the returned launcher.
#[allow(clippy::zombie_processes)]
fn start_slow_job(root: &Path, group: &str) -> (std::process::Child, Vec<u32>) {
    let me = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(ranklog_bin())
        .args([
            "launch",
            "--nproc-per-node",
            "3",
            "--grace-period",
            "5",
            "--no-view",
            "--group",
            group,
            "--dir",
        ])
        .arg(root)
        .arg("--")
        .arg(me)
        .args(["--exact", "group::rank_helper", "--nocapture", "--quiet"])
        .env(HELPER, "1")
        .env("HELPER_STEPS", "100000")
        .env("HELPER_KILL_RANK", "99") // no rank dies; all log slowly
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ranklog launch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pids: Vec<u32> = store::run_dirs(root)
            .expect("list")
            .iter()
            .filter_map(|d| std::fs::read(d.join(store::META_FILE)).ok())
            .filter_map(|b| serde_json::from_slice::<Meta>(&b).ok())
            .map(|m| m.pid)
            .collect();
        if pids.len() == 3 {
            return (child, pids);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the ranks did not start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn wait_gone(pids: &[u32]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !pids.iter().all(|&p| pid_gone(p) || is_zombie(p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "ranks {pids:?} were left behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn sigterm_to_the_launcher_is_forwarded_to_every_rank() {
    let root = temp_root();
    let (mut launcher, pids) = start_slow_job(root.path(), "term");
    // SAFETY: signals the launcher this test started.
    unsafe {
        libc::kill(launcher.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = {
        let status = launcher.wait().expect("wait for the launcher");
        let mut err = String::new();
        if let Some(mut e) = launcher.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
        }
        (status, err)
    };
    assert_eq!(out.0.code(), Some(128 + 15), "{}", out.1);
    assert!(out.1.contains("stopped by SIGTERM"), "{}", out.1);
    wait_gone(&pids);
}

#[test]
fn ranks_die_with_a_killed_launcher() {
    let root = temp_root();
    let (mut launcher, pids) = start_slow_job(root.path(), "orphans");
    launcher.kill().expect("SIGKILL the launcher");
    launcher.wait().expect("reap the launcher");
    wait_gone(&pids);
}

#[test]
fn many_ranks_reduce_like_a_brute_force_pass() {
    // Enough ranks for the view to merge them in parallel parts.
    let root = temp_root();
    let r = root.path();
    let value = |rank: u64, step: u64| ((rank * 7 + step * 13) % 17) as f64 - 8.0;
    let mut expected: std::collections::BTreeMap<(u64, &str), Vec<f64>> = Default::default();
    for rank in 0..20u64 {
        let steps: Vec<u64> = (rank..=(400 - rank * 3)).collect();
        let vals: Vec<[(&str, f64); 2]> = steps
            .iter()
            .map(|&s| [("x", value(rank, s)), ("y", -value(rank, s))])
            .collect();
        let rows: Vec<(u64, &[(&str, f64)])> = steps
            .iter()
            .zip(&vals)
            .map(|(&s, v)| (s, if s % 2 == 0 { &v[..] } else { &v[..1] }))
            .collect();
        for (s, v) in &rows {
            for (k, x) in v.iter() {
                expected.entry((*s, k)).or_default().push(*x);
            }
        }
        fake_run(r, "many", Some(rank as u32), 20, 1, &rows, true);
    }
    let mut got = Vec::new();
    let view = GroupView::stream(r, "many", GroupOptions::default(), |step, key, s| {
        got.push((step, key.to_string(), *s))
    })
    .expect("view");
    assert_eq!(got.len(), expected.len());
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "steps in order");
    for (step, key, s) in &got {
        let v = &expected[&(*step, key.as_str())];
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(s.count as usize, v.len(), "{key}@{step}");
        assert!(
            (s.mean - mean).abs() < 1e-9 && (s.std - std).abs() < 1e-9,
            "{key}@{step}: {s:?}"
        );
        assert_eq!((s.min, s.max), (min, max), "{key}@{step}");
    }
    let x = view.metric("x").expect("x");
    let width = x.series[0].span;
    assert!(width > 1 && x.series.len() <= 240);
    for rank in &view.ranks {
        let rx = rank
            .metrics
            .iter()
            .find(|m| m.key == "x")
            .expect("x of rank");
        assert!(
            rx.series.iter().all(|(s, _)| s % width == 0),
            "rank series on the group's grid"
        );
        let first = rank.rank.map(u64::from).unwrap_or(0);
        assert_eq!(rx.count, 400 - first * 3 - first + 1);
    }
}

#[test]
fn a_failed_rank_sets_the_exit_code_and_stuck_ranks_are_killed() {
    let root = temp_root();
    let out = launch(
        root.path(),
        &[
            "--nproc-per-node",
            "3",
            "--group",
            "stuck",
            "--grace-period",
            "1",
        ],
        &[
            ("HELPER_STEPS", "100000"),
            ("HELPER_KILL_RANK", "99"), // log slowly
            ("HELPER_EXIT_RANK", "0"),
            ("HELPER_IGNORE_TERM", "1"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("rank 0 failed (exit code 3); stopped the other 2 running ranks"),
        "{stderr}"
    );
    let view = GroupView::load(root.path(), "stuck").expect("view");
    assert_eq!(
        view.rank(0).map(|r| (r.state, r.exit_code)),
        Some((RunState::Failed, Some(1)))
    );
    for r in &view.ranks {
        assert!(pid_gone(r.meta.pid), "rank {:?} survived SIGTERM", r.rank);
    }
    assert!(text(&out.stdout).contains("failed: rank 0"));
}

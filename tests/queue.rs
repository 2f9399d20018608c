//! Single-writer strategy: real ranks, one run, merged and reduced rows.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ranklog::queue::{Merge, Policy, Reduce, Transport};
use ranklog::store::{self, RunState};
use ranklog::{Error, Mode, RankInfo, Settings, Strategy};

use crate::util::{assert_success, only_run, ranklog_bin, rows, temp_root};

/// Marks a child process of this test binary as a rank of a test job.
const HELPER: &str = "RANKLOG_TEST_QUEUE_HELPER";

/// Not a test: the body of a rank when started with `RANKLOG_TEST_QUEUE_HELPER=1`.
///
/// Rank r logs `loss = (r + 1) * step` for `HELPER_STEPS` steps and prints
/// the run id it sees. `HELPER_KILL_RANK`/`HELPER_KILL_STEP` make that rank
/// SIGKILL itself at that step; `HELPER_UNTIL_GONE=1` makes workers log
/// slowly until rank 0 is gone, then print `OWNER GONE` and finish.
#[test]
fn rank_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let steps = num("HELPER_STEPS").unwrap_or(20);
    let rank = num("RANK").unwrap_or(0);
    let until_gone = num("HELPER_UNTIL_GONE") == Some(1);
    let run = match ranklog::init(
        Settings::new()
            .project("sw")
            .mode(Mode::Offline)
            .silent(true),
    ) {
        Ok(r) => r,
        Err(e) => {
            println!("INIT FAILED {e}");
            std::process::exit(3);
        }
    };
    println!("RUN ID {}", run.id());
    for step in 0.. {
        if num("HELPER_KILL_RANK") == Some(rank) && num("HELPER_KILL_STEP") == Some(step) {
            println!("KILLING MYSELF");
            // SAFETY: sends SIGKILL to this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        if step >= steps && !until_gone {
            break;
        }
        match run.log([("loss", (rank + 1) as f64 * step as f64)]) {
            Ok(()) => {}
            Err(Error::OwnerGone { .. }) if until_gone => {
                println!("OWNER GONE at step {step}");
                break;
            }
            Err(e) => panic!("log failed: {e}"),
        }
        if until_gone || num("HELPER_KILL_RANK").is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    match run.finish() {
        Ok(done) => println!("FINISHED dropped={}", done.dropped),
        Err(e) => println!("FINISH ERROR {e}"),
    }
}

fn helper_cmd(program: &Path) -> Command {
    let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(program);
    if program == me {
        cmd.args(["--exact", "queue::rank_helper", "--nocapture", "--quiet"]);
    }
    cmd.env(HELPER, "1")
        .env_remove("RANKLOG_GROUP")
        .env_remove("RANKLOG_STRATEGY")
        .env_remove("RANKLOG_DIR");
    cmd
}

/// Starts `ranks` of a job by hand (as torchrun would), with its variables.
fn spawn_ranks(
    root: &Path,
    group: &str,
    world: u32,
    ranks: &[u32],
    env: &[(&str, &str)],
) -> Vec<Child> {
    let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    ranks
        .iter()
        .map(|&r| {
            let mut cmd = helper_cmd(&me);
            cmd.env("RANK", r.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_WORLD_SIZE", world.to_string())
                .env("RANKLOG_GROUP", group)
                .env("RANKLOG_STRATEGY", "single-writer")
                .env("RANKLOG_JOB_TOKEN", format!("token-{group}"))
                .env("RANKLOG_DIR", root)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start rank {r}: {e}"))
        })
        .collect()
}

/// A group key no other test (or earlier run of this test) uses.
fn unique_group(name: &str) -> String {
    let mut nonce = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce))
        .unwrap_or_else(|e| panic!("{e}"));
    format!(
        "{name}-{}-{}",
        std::process::id(),
        u32::from_le_bytes(nonce)
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn launch(root: &Path, n: u32, env: &[(&str, &str)]) -> Output {
    let me = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(ranklog_bin());
    cmd.args([
        "launch",
        "--nproc-per-node",
        &n.to_string(),
        "--strategy",
        "single-writer",
        "--no-view",
        "--dir",
    ])
    .arg(root)
    .arg("--")
    .arg(&me)
    .args(["--exact", "queue::rank_helper", "--nocapture", "--quiet"])
    .env(HELPER, "1")
    .env_remove("RANKLOG_GROUP")
    .env_remove("RANKLOG_STRATEGY")
    .env_remove("RANKLOG_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run ranklog launch: {e}"))
}

/// Per step: key → value, from the owner's run.
fn steps_of(dir: &Path) -> Vec<(u64, HashMap<String, f64>)> {
    let mut merged: Vec<(u64, HashMap<String, f64>)> = Vec::new();
    for (step, values) in rows(dir) {
        match merged.last_mut() {
            Some((s, m)) if *s == step => m.extend(values),
            _ => merged.push((step, values.into_iter().collect())),
        }
    }
    merged
}

fn check_full_job(root: &Path, out: &Output, ranks: u64, steps: u64) {
    assert_success(out, "single-writer job");
    let stdout = text(&out.stdout);
    let ids: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split("RUN ID ").nth(1))
        .collect();
    assert_eq!(ids.len() as u64, ranks, "{stdout}");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "ranks disagree on the run id: {ids:?}"
    );
    let dir = only_run(root);
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
    assert_eq!(s.meta.id, ids[0]);
    assert!(s.lost_ranks.is_empty(), "{:?}", s.lost_ranks);
    let merged = steps_of(&dir);
    assert_eq!(merged.len() as u64, steps);
    for (step, m) in &merged {
        let x = *step as f64;
        for r in 0..ranks {
            assert_eq!(
                m.get(&format!("rank{r}/loss")),
                Some(&((r + 1) as f64 * x)),
                "step {step} rank {r}: {m:?}"
            );
        }
        let n = ranks as f64;
        assert_eq!(m["loss/mean"], x * (n + 1.0) / 2.0);
        assert_eq!(m["loss/min"], x);
        assert_eq!(m["loss/max"], n * x);
        assert_eq!(m["loss/count"], n);
    }
}

#[test]
fn four_launched_ranks_write_one_merged_run_over_ipc() {
    let root = temp_root();
    let out = launch(root.path(), 4, &[("HELPER_STEPS", "50")]);
    check_full_job(root.path(), &out, 4, 50);
}

#[test]
fn four_launched_ranks_write_one_merged_run_over_tcp() {
    let root = temp_root();
    let out = launch(
        root.path(),
        4,
        &[("HELPER_STEPS", "30"), ("RANKLOG_TRANSPORT", "tcp")],
    );
    check_full_job(root.path(), &out, 4, 30);
}

fn wait_all(children: Vec<Child>) -> Vec<(std::process::ExitStatus, String, String)> {
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            (out.status, text(&out.stdout), text(&out.stderr))
        })
        .collect()
}

#[test]
fn a_killed_worker_is_recorded_as_lost_and_the_run_finishes() {
    let root = temp_root();
    let group = unique_group("killworker");
    let kids = spawn_ranks(
        root.path(),
        &group,
        3,
        &[0, 1, 2],
        &[
            ("HELPER_STEPS", "60"),
            ("HELPER_KILL_RANK", "2"),
            ("HELPER_KILL_STEP", "10"),
        ],
    );
    let outs = wait_all(kids);
    assert!(outs[0].0.success(), "owner: {}{}", outs[0].1, outs[0].2);
    assert!(outs[1].0.success(), "rank 1: {}{}", outs[1].1, outs[1].2);
    assert!(outs[2].1.contains("KILLING MYSELF"));
    let dir = only_run(root.path());
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
    assert_eq!(s.lost_ranks.len(), 1, "{:?}", s.lost_ranks);
    assert_eq!(s.lost_ranks[0].0, 2);
    let merged = steps_of(&dir);
    assert_eq!(merged.len(), 60);
    for (step, m) in &merged {
        let x = *step as f64;
        assert_eq!(m["rank0/loss"], x);
        assert_eq!(m["rank1/loss"], 2.0 * x);
        if *step >= 10 {
            assert!(!m.contains_key("rank2/loss"));
            assert_eq!(m["loss/count"], 2.0, "step {step}");
        }
    }
    let show = Command::new(ranklog_bin())
        .args(["show", &dir.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text(&show.stdout).contains("rank 2 lost"),
        "{}",
        text(&show.stdout)
    );
}

#[test]
fn workers_notice_a_killed_owner_and_do_not_hang() {
    let root = temp_root();
    let group = unique_group("killowner");
    let kids = spawn_ranks(
        root.path(),
        &group,
        3,
        &[0, 1, 2],
        &[
            ("HELPER_UNTIL_GONE", "1"),
            ("HELPER_KILL_RANK", "0"),
            ("HELPER_KILL_STEP", "20"),
        ],
    );
    let outs = wait_all(kids);
    for (status, stdout, stderr) in &outs[1..] {
        assert!(status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("OWNER GONE"), "{stdout}{stderr}");
        assert!(
            stdout.contains("FINISH ERROR") || stdout.contains("FINISHED"),
            "{stdout}"
        );
    }
    let s = store::scan(&only_run(root.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Crashed);
}

#[test]
fn a_worker_that_never_connects_is_named_and_the_owner_goes_on() {
    let root = temp_root();
    let group = unique_group("missing");
    let kids = spawn_ranks(
        root.path(),
        &group,
        3,
        &[0, 1],
        &[
            ("HELPER_STEPS", "10"),
            ("RANKLOG_QUEUE_CONNECT_TIMEOUT_S", "2"),
        ],
    );
    let outs = wait_all(kids);
    assert!(
        outs.iter().all(|o| o.0.success()),
        "{:?}",
        outs.iter().map(|o| &o.2).collect::<Vec<_>>()
    );
    assert!(
        outs[0].2.contains("rank 2 did not connect"),
        "{}",
        outs[0].2
    );
    let s = store::scan(&only_run(root.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
    assert!(
        s.lost_ranks
            .iter()
            .any(|(r, why)| *r == 2 && why.contains("never connected")),
        "{:?}",
        s.lost_ranks
    );
    assert_eq!(steps_of(&s.dir).len(), 10);
}

#[test]
fn strangers_are_refused_over_tcp_and_the_job_goes_on() {
    let root = temp_root();
    let group = unique_group("strangers");
    let port = free_port();
    let tcp = [
        ("RANKLOG_TRANSPORT", "tcp"),
        ("RANKLOG_QUEUE_PORT", &port.to_string()),
        ("HELPER_STEPS", "5"),
    ];
    let owner = spawn_ranks(root.path(), &group, 2, &[0], &tcp);
    // Garbage bytes, then a worker of another job (its token differs).
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut garbage = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("owner never listened: {e}"),
        }
    };
    std::io::Write::write_all(&mut garbage, b"\x00\x01garbage that is not ranklog")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stranger_env = tcp.to_vec();
    stranger_env.push(("RANKLOG_JOB_TOKEN", "not-this-job"));
    stranger_env.push(("RANKLOG_QUEUE_CONNECT_TIMEOUT_S", "5"));
    let stranger = wait_all(spawn_ranks(root.path(), &group, 2, &[1], &stranger_env));
    assert!(
        stranger[0].1.contains("INIT FAILED") && stranger[0].1.contains("wrong job token"),
        "{}",
        stranger[0].1
    );
    let worker = spawn_ranks(root.path(), &group, 2, &[1], &tcp);
    let mut outs = wait_all(owner);
    outs.extend(wait_all(worker));
    assert!(outs.iter().all(|o| o.0.success()), "{:?}", outs);
    assert!(
        outs[0].2.contains("bad magic") && outs[0].2.contains("wrong job token"),
        "{}",
        outs[0].2
    );
    let merged = steps_of(&only_run(root.path()));
    assert_eq!(merged.len(), 5);
    assert!(merged.iter().all(|(_, m)| m["loss/count"] == 2.0));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn in_process(
    rank: u32,
    world: u32,
    group: &str,
    root: &Path,
    port: u16,
    transport: Transport,
) -> Settings {
    Settings::new()
        .dir(root)
        .mode(Mode::Offline)
        .silent(true)
        .capture_git(false)
        .strategy(Strategy::SingleWriter)
        .group(group)
        .rank(RankInfo {
            rank,
            local_rank: rank,
            world_size: world,
            local_world_size: world,
            node_rank: 0,
        })
        .transport(transport)
        .queue_port(port)
        .merge(Merge {
            per_rank: false,
            reduce: vec![Reduce::Sum],
        })
        .connect_timeout(Duration::from_secs(20))
}

#[test]
fn ranks_as_threads_reduce_with_the_chosen_merge() {
    let root = temp_root();
    let group = unique_group("threads");
    let port = free_port();
    let handles: Vec<_> = (0..3u32)
        .map(|rank| {
            let settings = in_process(rank, 3, &group, root.path(), port, Transport::Tcp)
                .drop_policy(Policy::Block);
            std::thread::spawn(move || -> ranklog::Result<String> {
                let run = ranklog::init(settings)?;
                for step in 0..100u32 {
                    run.log([("x", f64::from(step)), ("y", f64::from(rank))])?;
                }
                let id = run.id().to_string();
                run.finish()?;
                Ok(id)
            })
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("rank thread panicked"))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    let merged = steps_of(&only_run(root.path()));
    assert_eq!(merged.len(), 100);
    for (step, m) in &merged {
        assert_eq!(m["x/sum"], 3.0 * *step as f64);
        assert_eq!(m["y/sum"], 3.0);
        assert_eq!(m["y/count"], 3.0);
        assert!(!m.contains_key("rank0/x"));
    }
    let s = ranklog::store::scan(&only_run(root.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
    assert!(!s.summary.contains_key("x"));
}

/// Regression (bench finding): a rank that starts late must not turn the
/// steps rank 0 already logged into half-reduced rows plus late rows.
#[test]
fn a_late_worker_still_gets_one_complete_row_per_step() {
    let root = temp_root();
    let group = unique_group("late");
    let port = free_port();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let owner_settings = in_process(0, 2, &group, root.path(), port, Transport::Tcp);
    let worker_settings = in_process(1, 2, &group, root.path(), port, Transport::Tcp);
    let owner = std::thread::spawn(move || -> ranklog::Result<()> {
        let run = ranklog::init(owner_settings)?;
        for step in 0..6000u32 {
            run.log([("x", f64::from(step))])?;
        }
        let _ = go_tx.send(());
        run.finish()?;
        Ok(())
    });
    let worker = std::thread::spawn(move || -> ranklog::Result<()> {
        let _ = go_rx.recv();
        let run = ranklog::init(worker_settings)?;
        for step in 0..6000u32 {
            run.log([("x", f64::from(step))])?;
        }
        run.finish()?;
        Ok(())
    });
    for h in [owner, worker] {
        h.join()
            .unwrap_or_else(|_| panic!("rank thread panicked"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dir = only_run(root.path());
    let history = rows(&dir);
    assert_eq!(history.len(), 6000, "late rows were written");
    assert!(history
        .iter()
        .all(|(_, values)| values.iter().any(|(k, v)| k == "x/count" && *v == 2.0)));
}

/// Regression (kill-9 torture): `Run::flush` on rank 0 returned while rank
/// 0's last rows were still held for a lagging worker, so a SIGKILL of rank 0
/// right after lost rows it had acknowledged.
#[test]
fn a_flush_on_rank_zero_writes_its_rows_while_a_worker_lags() {
    let root = temp_root();
    let group = unique_group("flush");
    let port = free_port();
    let (joined_tx, joined_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let owner_settings = in_process(0, 2, &group, root.path(), port, Transport::Tcp)
        .straggler_timeout(Duration::from_secs(60));
    let worker_settings = in_process(1, 2, &group, root.path(), port, Transport::Tcp);
    let worker = std::thread::spawn(move || -> ranklog::Result<()> {
        let run = ranklog::init(worker_settings)?;
        let _ = joined_tx.send(());
        let _ = go_rx.recv();
        for step in 0..10u32 {
            run.log([("x", f64::from(step))])?;
        }
        run.finish()?;
        Ok(())
    });
    let run = ranklog::init(owner_settings).unwrap_or_else(|e| panic!("{e}"));
    joined_rx
        .recv()
        .unwrap_or_else(|e| panic!("worker did not join: {e}"));
    for step in 0..10u32 {
        run.log([("x", f64::from(step))])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    run.flush().unwrap_or_else(|e| panic!("{e}"));
    let dir = run
        .dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no dir"));
    let flushed: Vec<u64> = rows(&dir).into_iter().map(|(step, _)| step).collect();
    assert_eq!(
        flushed,
        (0..10).collect::<Vec<u64>>(),
        "rank 0's flushed rows are in the file"
    );
    let _ = go_tx.send(());
    worker
        .join()
        .unwrap_or_else(|_| panic!("worker thread panicked"))
        .unwrap_or_else(|e| panic!("{e}"));
    run.finish().unwrap_or_else(|e| panic!("{e}"));
    // The worker's values came after the flush: late rows, nothing lost.
    let mut sum = vec![0.0; 10];
    for (step, values) in rows(&dir) {
        for (k, v) in values {
            if k == "x/sum" {
                sum[step as usize] += v;
            }
        }
    }
    assert_eq!(
        sum,
        (0..10).map(|s| 2.0 * f64::from(s)).collect::<Vec<f64>>()
    );
}

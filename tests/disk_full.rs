//! A full disk mid-run: training goes on, the error is reported once, what
//! was written before is intact, and nothing is lost when space comes back.
//!
//! `RLIMIT_FSIZE` (with SIGXFSZ ignored, writes past it fail with EFBIG)
//! stands in for a full disk in a child process; `scripts/faults.sh` also
//! runs [`a_real_small_file_system_fills_up_and_frees`] on a 2 MiB tmpfs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ranklog::queue::Transport;
use ranklog::store::{self, RunState};
use ranklog::{Mode, RankInfo, Settings, Strategy};

use crate::util::{assert_success, child, is_child, offline, only_run, ranklog, rows, temp_root};

/// Makes writes of this process past `bytes` fail like a full disk.
fn limit_file_size(bytes: u64) {
    // SAFETY: ignoring SIGXFSZ makes writes past the limit fail with EFBIG
    // instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

fn log_size(root: &Path) -> u64 {
    std::fs::metadata(only_run(root).join("run.rlog")).map_or(0, |m| m.len())
}

/// Runs a child test and returns its stderr after checking it passed.
fn run(name: &str, env: &[(&str, &str)]) -> String {
    let out = child(name, env, None)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_success(&out, name);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn assert_reported_once(stderr: &str) {
    assert_eq!(
        stderr.matches("cannot write").count(),
        1,
        "the full disk should be reported once:\n{stderr}"
    );
}

/// Every step `0..n` once, in order, with `x = step` (any damage fails).
fn assert_all_rows(dir: &Path, n: u64) {
    let r = rows(dir);
    assert_eq!(r.len() as u64, n, "rows lost");
    for (i, (step, values)) in r.iter().enumerate() {
        assert_eq!(*step, i as u64);
        assert_eq!(values[0], ("x".to_string(), i as f64));
    }
}

#[test]
fn when_space_comes_back_nothing_is_lost() {
    let root = temp_root();
    let stderr = run(
        "disk_full::child_disk_fills_then_frees",
        &[("RANKLOG_DIR", &root.path().display().to_string())],
    );
    assert_reported_once(&stderr);
    let dir = only_run(root.path());
    assert_all_rows(&dir, 30_000);
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
}

#[test]
#[ignore = "run as a child process by when_space_comes_back_nothing_is_lost"]
fn child_disk_fills_then_frees() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let root = PathBuf::from(std::env::var("RANKLOG_DIR").unwrap_or_default());
    let run = ranklog::init(offline(&root))?;
    for i in 0..100u32 {
        run.log([("x", f64::from(i))])?;
    }
    run.flush()?;
    limit_file_size(log_size(&root) + 4096);
    for i in 100..20_000u32 {
        run.log([("x", f64::from(i))])?;
    }
    assert!(run.flush().is_err(), "a write past the limit succeeded");
    // Space comes back: the kept backlog is written, then the rest.
    limit_file_size(libc::RLIM_INFINITY);
    for i in 20_000..30_000u32 {
        run.log([("x", f64::from(i))])?;
    }
    run.flush()?;
    run.finish()?;
    Ok(())
}

#[test]
fn a_disk_that_fills_before_the_first_flush_is_reported_at_finish() {
    let root = temp_root();
    let stderr = run(
        "disk_full::child_disk_full_only_at_finish",
        &[("RANKLOG_DIR", &root.path().display().to_string())],
    );
    assert_reported_once(&stderr);
}

#[test]
#[ignore = "run as a child process by a_disk_that_fills_before_the_first_flush_is_reported_at_finish"]
fn child_disk_full_only_at_finish() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let root = PathBuf::from(std::env::var("RANKLOG_DIR").unwrap_or_default());
    // No periodic flush: every row is still pending when `finish` writes.
    let run = ranklog::init(offline(&root).flush_interval(Duration::from_secs(3600)))?;
    run.flush()?;
    limit_file_size(log_size(&root));
    for i in 0..100u32 {
        run.log([("x", f64::from(i))])?;
    }
    match run.finish() {
        Err(ranklog::Error::WriteFailed { lost, .. }) => assert!(lost > 0),
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_full_disk_at_the_single_writer_owner_does_not_stop_its_workers() {
    let root = temp_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = run(
        "disk_full::child_owner_fills_the_disk",
        &[
            ("RANKLOG_DIR", &root.path().display().to_string()),
            ("DISK_FULL_PORT", &port.to_string()),
        ],
    );
    assert_reported_once(&stderr);
    let dir = only_run(root.path());
    let r = rows(&dir);
    assert!(
        r.len() >= 100,
        "rows written before the disk filled are gone"
    );
    for (step, values) in r.iter().take(100) {
        let x = *step as f64;
        assert!(values.contains(&("rank0/x".to_string(), x)), "{values:?}");
        assert!(
            values.contains(&("rank1/x".to_string(), 2.0 * x)),
            "{values:?}"
        );
    }
}

#[test]
#[ignore = "run as a child process by a_full_disk_at_the_single_writer_owner_does_not_stop_its_workers"]
fn child_owner_fills_the_disk() {
    if !is_child() {
        return;
    }
    let root = PathBuf::from(std::env::var("RANKLOG_DIR").unwrap_or_default());
    let port: u16 = std::env::var("DISK_FULL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("DISK_FULL_PORT unset"));
    let group = format!("diskfull-{}", std::process::id());
    let settings = |rank: u32| {
        Settings::new()
            .dir(&root)
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .strategy(Strategy::SingleWriter)
            .group(&group)
            .rank(RankInfo {
                rank,
                local_rank: rank,
                world_size: 2,
                local_world_size: 2,
                node_rank: 0,
            })
            .transport(Transport::Tcp)
            .queue_port(port)
            .connect_timeout(Duration::from_secs(30))
            .straggler_timeout(Duration::from_secs(1))
    };
    let (limited_tx, limited) = std::sync::mpsc::channel::<()>();
    let (logged_tx, logged) = std::sync::mpsc::channel::<()>();
    let owner_settings = settings(0);
    let owner = std::thread::spawn(move || -> ranklog::Result<()> {
        let run = ranklog::init(owner_settings)?;
        for i in 0..100u32 {
            run.log([("x", f64::from(i))])?;
        }
        let _ = logged_tx.send(());
        let _ = limited.recv();
        for i in 100..20_000u32 {
            run.log([("x", f64::from(i))])?;
        }
        match run.finish() {
            Err(ranklog::Error::WriteFailed { lost, .. }) => assert!(lost > 0),
            other => panic!("expected WriteFailed, got {other:?}"),
        }
        Ok(())
    });
    let worker_settings = settings(1);
    let worker = std::thread::spawn(move || -> ranklog::Result<()> {
        let run = ranklog::init(worker_settings)?;
        for i in 0..20_000u32 {
            // Goes on whatever rank 0's disk does.
            run.log([("x", 2.0 * f64::from(i))])?;
        }
        run.finish()?;
        Ok(())
    });
    // Both ranks' first 100 steps on disk, then the disk is full.
    let _ = logged.recv();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dirs = store::run_dirs(&root).unwrap_or_default();
        let done = dirs.first().is_some_and(|d| {
            store::Reader::open(&d.join("run.rlog")).is_ok_and(|r| {
                r.filter(|rec| matches!(rec, ranklog::Record::History(row) if row.step == 99))
                    .count()
                    > 0
            })
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first steps never reached the disk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    limit_file_size(log_size(&root) + 4096);
    let _ = limited_tx.send(());
    for h in [worker, owner] {
        h.join()
            .unwrap_or_else(|_| panic!("a rank panicked"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A real file system that fills up: set `RANKLOG_FAULTS_SMALL_FS` to an
/// empty, small mounted file system (scripts/faults.sh mounts a 2 MiB tmpfs).
#[test]
#[ignore = "needs a small mounted file system: run scripts/faults.sh"]
fn a_real_small_file_system_fills_up_and_frees() {
    let fs = PathBuf::from(
        std::env::var("RANKLOG_FAULTS_SMALL_FS").unwrap_or_else(|_| {
            panic!("set RANKLOG_FAULTS_SMALL_FS to a small mounted file system")
        }),
    );
    let root = fs.join(format!("runs-{}", std::process::id()));
    let stderr = run(
        "disk_full::child_fills_a_real_file_system",
        &[("RANKLOG_DIR", &root.display().to_string())],
    );
    assert_reported_once(&stderr);
    let out = stderr
        .lines()
        .find_map(|l| l.strip_prefix("ROWS "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    let dir = only_run(&root);
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Finished);
    let n = out.unwrap_or_else(|| panic!("no ROWS line:\n{stderr}"));
    assert_all_rows(&dir, n);
    assert_success(
        &ranklog(&["show", &dir.display().to_string()]),
        "ranklog show",
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
#[ignore = "run as a child process by a_real_small_file_system_fills_up_and_frees"]
fn child_fills_a_real_file_system() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let root = PathBuf::from(std::env::var("RANKLOG_DIR").unwrap_or_default());
    let run = ranklog::init(offline(&root))?;
    // Ballast: the space given back later.
    let ballast = root.join("ballast");
    std::fs::write(&ballast, vec![0u8; 1 << 20]).unwrap_or_else(|e| panic!("{e}"));
    let mut step = 0u32;
    // Log until the file system is full: flush fails.
    loop {
        for _ in 0..5_000 {
            run.log([("x", f64::from(step))])?;
            step += 1;
        }
        if run.flush().is_err() {
            break;
        }
        assert!(step < 10_000_000, "the file system never filled up");
    }
    // Training goes on while it is full.
    for _ in 0..20_000 {
        run.log([("x", f64::from(step))])?;
        step += 1;
    }
    assert!(run.flush().is_err(), "the file system has room again");
    std::fs::remove_file(&ballast).unwrap_or_else(|e| panic!("{e}"));
    run.finish()?;
    eprintln!("ROWS {step}");
    Ok(())
}

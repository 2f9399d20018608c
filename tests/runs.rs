//! The run lifecycle through the public API.

use std::path::Path;

use ranklog::store::{self, RunState};
use ranklog::{Error, Mode, Reinit, Settings};

use crate::util::{child, is_child, offline, only_run, rows, run_child, temp_root};

fn state(dir: &Path) -> RunState {
    store::scan(dir).unwrap_or_else(|e| panic!("{e}")).state
}

#[test]
fn quickstart_writes_rows_config_and_summary() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(
        offline(root.path())
            .project("mnist")
            .config(serde_json::json!({"lr": 1e-3, "batch": 128})),
    )?;
    run.log([("loss", 0.25), ("acc", 0.91)])?;
    run.log_at(100, [("val/loss", 0.3)])?;
    run.log([("loss", 0.2)])?;
    run.summary("best_acc", 0.97)?;
    let done = run.finish()?;
    assert_eq!(done.steps, 3);
    assert_eq!(done.points, 4);
    let dir = only_run(root.path());
    assert_eq!(
        rows(&dir),
        vec![
            (0, vec![("loss".into(), 0.25), ("acc".into(), 0.91)]),
            (100, vec![("val/loss".into(), 0.3)]),
            (101, vec![("loss".into(), 0.2)]),
        ]
    );
    let s = store::scan(&dir)?;
    assert_eq!(s.state, RunState::Finished);
    assert_eq!(s.config["batch"], 128);
    assert_eq!(s.summary["best_acc"], 0.97);
    assert_eq!(s.meta.project, "mnist");
    Ok(())
}

#[test]
fn ten_runs_of_a_hundred_logs_in_a_loop() -> ranklog::Result<()> {
    let root = temp_root();
    for i in 0..10 {
        let run = ranklog::init(offline(root.path()).project("loop"))?;
        for step in 0..100 {
            run.log([("x", f64::from(step) * f64::from(i))])?;
        }
        run.finish()?;
    }
    let runs = store::list(root.path())?;
    assert_eq!(runs.len(), 10);
    assert!(runs
        .iter()
        .all(|r| r.steps == 100 && r.state == RunState::Finished));
    let mut numbers: Vec<u64> = runs
        .iter()
        .map(|r| {
            r.meta
                .name
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=10).collect::<Vec<u64>>());
    Ok(())
}

#[test]
fn runs_side_by_side_stay_apart() -> ranklog::Result<()> {
    let root = temp_root();
    let a = ranklog::init(offline(root.path()).name("a"))?;
    let b = ranklog::init(offline(root.path()).name("b"))?;
    a.log([("x", 1.0)])?;
    b.log([("x", 2.0)])?;
    a.finish()?;
    b.log([("x", 3.0)])?;
    b.finish()?;
    let by_name = |n: &str| -> ranklog::Result<_> { store::resolve_run(root.path(), n) };
    assert_eq!(rows(&by_name("a")?), vec![(0, vec![("x".into(), 1.0)])]);
    assert_eq!(rows(&by_name("b")?).len(), 2);
    Ok(())
}

#[test]
fn a_clone_logs_from_another_thread() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let run = run.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    run.log([(format!("t{t}"), f64::from(i))])?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .unwrap_or_else(|_| panic!("logging thread panicked"))?;
    }
    let done = run.finish()?;
    assert_eq!(done.steps, 1000);
    let steps: Vec<u64> = rows(&only_run(root.path())).iter().map(|r| r.0).collect();
    assert_eq!(steps, (0..1000).collect::<Vec<u64>>());
    Ok(())
}

#[test]
fn accumulated_values_become_one_row() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    run.accumulate([("a", 1)])?;
    run.accumulate([("b", 2)])?;
    run.log([("c", 3)])?;
    run.accumulate([("a", 4)])?;
    run.commit()?;
    run.accumulate([("z", 9)])?;
    run.finish()?;
    let r = rows(&only_run(root.path()));
    assert_eq!(
        r,
        vec![
            (
                0,
                vec![("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.0)]
            ),
            (1, vec![("a".into(), 4.0)]),
            (2, vec![("z".into(), 9.0)]),
        ]
    );
    Ok(())
}

#[test]
fn step_going_backwards_is_refused_and_writes_nothing() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    run.log_at(10, [("x", 1.0)])?;
    let err = run.log_at(5, [("x", 2.0)]);
    assert!(
        matches!(
            err,
            Err(Error::StepWentBackwards {
                step: 5,
                current: 10
            })
        ),
        "{err:?}"
    );
    run.log_at(10, [("y", 3.0)])?;
    run.finish()?;
    let r = rows(&only_run(root.path()));
    assert_eq!(
        r,
        vec![(10, vec![("x".into(), 1.0)]), (10, vec![("y".into(), 3.0)])]
    );
    Ok(())
}

#[test]
fn invalid_keys_are_refused_with_the_reason() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    for bad in ["", "_step", "a\nb", &"k".repeat(251)] {
        let err = run.log([(bad, 1.0)]);
        assert!(
            matches!(err, Err(Error::InvalidKey { .. })),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(run.step(), 0);
    run.finish()?;
    assert!(rows(&only_run(root.path())).is_empty());
    Ok(())
}

#[test]
fn non_finite_values_are_stored_as_such() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    run.log([
        ("a", f64::NAN),
        ("b", f64::INFINITY),
        ("c", f64::NEG_INFINITY),
    ])?;
    run.summary("worst", f64::NAN)?;
    run.finish()?;
    let dir = only_run(root.path());
    let r = rows(&dir);
    assert!(r[0].1[0].1.is_nan());
    assert_eq!(r[0].1[1].1, f64::INFINITY);
    assert_eq!(r[0].1[2].1, f64::NEG_INFINITY);
    assert_eq!(store::scan(&dir)?.summary["worst"], "NaN");
    Ok(())
}

#[test]
fn bad_names_are_refused_at_init() {
    let root = temp_root();
    let e = ranklog::init(offline(root.path()).project("my project"));
    assert!(
        matches!(
            e,
            Err(Error::InvalidName {
                what: "project",
                ..
            })
        ),
        "{e:?}"
    );
    let e = ranklog::init(offline(root.path()).group("a/b"));
    assert!(
        matches!(e, Err(Error::InvalidName { what: "group", .. })),
        "{e:?}"
    );
    assert!(store::run_dirs(root.path())
        .map(|d| d.is_empty())
        .unwrap_or(false));
}

#[test]
fn an_existing_run_id_is_an_error_not_a_merge() -> ranklog::Result<()> {
    let root = temp_root();
    ranklog::init(offline(root.path()).id("fixedid1"))?.finish()?;
    let again = ranklog::init(offline(root.path()).id("fixedid1"));
    assert!(matches!(again, Err(Error::RunIdExists { .. })), "{again:?}");
    assert_eq!(store::run_dirs(root.path())?.len(), 1);
    Ok(())
}

#[test]
fn an_unwritable_root_fails_at_init() -> std::io::Result<()> {
    let root = temp_root();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, "x")?;
    let e = ranklog::init(offline(&file));
    assert!(matches!(e, Err(Error::Write { .. })), "{e:?}");
    Ok(())
}

#[test]
fn name_can_be_the_id() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    let id = run.id().to_string();
    run.set_name(run.id())?;
    assert_eq!(run.name(), id);
    run.finish()?;
    let dir = only_run(root.path());
    assert_eq!(store::scan(&dir)?.meta.name, id);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(meta["name"], id.as_str());
    Ok(())
}

#[test]
fn generated_names_and_ids_have_their_shape() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()).project("shape"))?;
    assert_eq!(run.id().len(), 8);
    assert!(run
        .id()
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let name = run.name();
    let parts: Vec<&str> = name.split('-').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert_eq!(parts[2], "1");
    run.finish()?;
    Ok(())
}

#[test]
fn logging_after_finish_is_an_error_and_finish_repeats() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    let other = run.clone();
    run.log([("x", 1.0)])?;
    let first = run.finish()?;
    assert!(matches!(
        other.log([("x", 2.0)]),
        Err(Error::RunFinished { .. })
    ));
    assert_eq!(other.finish()?, first);
    Ok(())
}

#[test]
fn dropping_the_last_handle_finishes_the_run() -> ranklog::Result<()> {
    let root = temp_root();
    {
        let run = ranklog::init(offline(root.path()))?;
        let clone = run.clone();
        run.log([("x", 1.0)])?;
        drop(run);
        clone.log([("x", 2.0)])?;
    }
    let dir = only_run(root.path());
    assert_eq!(state(&dir), RunState::Finished);
    assert_eq!(rows(&dir).len(), 2);
    assert!(dir.join("summary.json").is_file());
    Ok(())
}

#[test]
fn a_panic_marks_the_run_failed_with_its_message() {
    let root = temp_root();
    let path = root.path().to_path_buf();
    let joined = std::thread::spawn(move || {
        let run = ranklog::init(offline(&path)).unwrap_or_else(|e| panic!("{e}"));
        run.log([("x", 1.0)]).unwrap_or_else(|e| panic!("{e}"));
        panic!("loss exploded at step 1");
    })
    .join();
    assert!(joined.is_err());
    let s = store::scan(&only_run(root.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Failed);
    let exit = s.exit.unwrap_or_else(|| panic!("no exit record"));
    assert_eq!(exit.code, 1);
    assert!(exit
        .message
        .unwrap_or_default()
        .contains("loss exploded at step 1"));
}

#[test]
fn fail_marks_the_run_failed() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    run.fail("diverged")?;
    let s = store::scan(&only_run(root.path()))?;
    assert_eq!(s.state, RunState::Failed);
    assert_eq!(s.exit.and_then(|e| e.message).as_deref(), Some("diverged"));
    Ok(())
}

#[test]
fn a_forked_child_gets_a_clear_error() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    run.log([("x", 1.0)])?;
    // SAFETY: the child only calls the run's log (an atomic check and an
    // error value) and leaves with _exit, without running destructors.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match run.log([("x", 2.0)]) {
            Err(Error::ForkedProcess {
                parent_pid,
                child_pid,
                ..
            }) if parent_pid != child_pid && child_pid == std::process::id() => 0,
            _ => 1,
        };
        // SAFETY: _exit ends the child without touching the parent's state.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    run.log([("x", 3.0)])?;
    run.finish()?;
    assert_eq!(rows(&only_run(root.path())).len(), 2);
    Ok(())
}

#[test]
fn reinit_policies() {
    let root = temp_root();
    run_child(
        child(
            "runs::child_reinit",
            &[("RANKLOG_DIR", &root.path().display().to_string())],
            None,
        ),
        "child_reinit",
    );
    let runs = store::list(root.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        runs.len(),
        3,
        "finish_previous + return_previous + create_new runs"
    );
    assert!(runs.iter().all(|r| r.state == RunState::Finished));
}

#[test]
#[ignore = "run as a child process by reinit_policies"]
fn child_reinit() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let base = || {
        Settings::new()
            .silent(true)
            .capture_git(false)
            .mode(Mode::Offline)
    };
    let first = ranklog::init(base().name("first"))?;
    first.log([("x", 1.0)])?;
    let second = ranklog::init(base().name("second").reinit(Reinit::FinishPrevious))?;
    assert!(matches!(
        first.log([("x", 2.0)]),
        Err(Error::RunFinished { .. })
    ));
    let same = ranklog::init(base().name("ignored").reinit(Reinit::ReturnPrevious))?;
    assert_eq!(same.id(), second.id());
    let third = ranklog::init(base().name("third").reinit(Reinit::CreateNew))?;
    assert_ne!(third.id(), second.id());
    second.log([("x", 1.0)])?;
    third.log([("x", 1.0)])?;
    Ok(())
}

#[test]
fn disabled_mode_writes_nothing_and_starts_no_thread() {
    let root = temp_root();
    run_child(
        child(
            "runs::child_disabled",
            &[
                ("RANKLOG_DIR", &root.path().display().to_string()),
                ("RANKLOG_MODE", "disabled"),
            ],
            None,
        ),
        "child_disabled",
    );
    assert!(!root.path().join("ranklog").exists());
    assert_eq!(
        std::fs::read_dir(root.path())
            .map(|d| d.count())
            .unwrap_or(99),
        0
    );
}

#[test]
#[ignore = "run as a child process by disabled_mode_writes_nothing_and_starts_no_thread"]
fn child_disabled() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = threads();
    let run = ranklog::init(Settings::new().project("p"))?;
    assert!(run.dir().is_none());
    run.log([("x", 1.0)])?;
    run.log_at(5, [("x", 1.0)])?;
    run.accumulate([("y", 2.0)])?;
    run.commit()?;
    run.summary("s", 1)?;
    run.set_name("renamed")?;
    run.flush()?;
    assert_eq!(threads(), before);
    run.finish()?;
    Ok(())
}

#[test]
fn git_state_is_captured_inside_a_repository() {
    let repo = temp_root();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap_or_else(|e| panic!("git: {e}"));
        crate::util::assert_success(&out, &format!("git {args:?}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("train.py"), "print(1)\n").unwrap_or_else(|e| panic!("{e}"));
    git(&["add", "train.py"]);
    git(&["commit", "-q", "-m", "first"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://alice:hunter2@example.com/org/repo.git",
    ]);
    std::fs::write(repo.path().join("train.py"), "print(2)\n").unwrap_or_else(|e| panic!("{e}"));
    let head = git(&["rev-parse", "HEAD"]);
    let root = repo.path().join("runs");
    run_child(
        child(
            "runs::child_git",
            &[("RANKLOG_DIR", &root.display().to_string())],
            Some(repo.path()),
        ),
        "child_git",
    );
    let dir = only_run(&root);
    let g = store::scan(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .meta
        .git
        .unwrap_or_else(|| panic!("no git in meta.json"));
    assert_eq!(g.commit.as_deref(), Some(head.as_str()));
    assert_eq!(g.branch.as_deref(), Some("main"));
    assert_eq!(
        g.remote.as_deref(),
        Some("https://alice@example.com/org/repo.git")
    );
    assert!(g.dirty);
    let diff = std::fs::read_to_string(dir.join("diff.patch")).unwrap_or_default();
    assert!(diff.contains("+print(2)"), "{diff}");
}

#[test]
#[ignore = "run as a child process by git_state_is_captured_inside_a_repository"]
fn child_git() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let run = ranklog::init(Settings::new().mode(Mode::Offline).silent(true))?;
    run.log([("x", 1.0)])?;
    run.finish()?;
    Ok(())
}

//! The `ranklog` command as people and scripts use it.

use std::path::Path;

use crate::util::{assert_success, offline, only_run, ranklog, temp_root};

fn make_runs(root: &Path) -> ranklog::Result<()> {
    let a = ranklog::init(
        offline(root)
            .project("alpha")
            .name("first-run")
            .group("g1")
            .job_type("train"),
    )?;
    for i in 0..5 {
        a.log([("loss", 1.0 / f64::from(i + 1)), ("weird", f64::NAN)])?;
    }
    a.summary("best", 0.2)?;
    a.finish()?;
    // Start times order the listing; keep the two apart on any clock.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = ranklog::init(
        offline(root)
            .project("beta")
            .name("second-run")
            .config(serde_json::json!({"lr": 0.1})),
    )?;
    b.log([("acc", 0.5)])?;
    b.finish()?;
    Ok(())
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn runs_json_lists_every_run_newest_first() -> ranklog::Result<()> {
    let root = temp_root();
    make_runs(root.path())?;
    let dir = root.path().display().to_string();
    let out = ranklog(&["runs", "--dir", &dir, "--json"]);
    assert_success(&out, "runs --json");
    let v = json(&out);
    let runs = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["name"], "second-run");
    for key in [
        "id", "name", "project", "group", "job_type", "state", "steps", "dir",
    ] {
        assert!(runs[1].get(key).is_some(), "missing {key}");
    }
    assert_eq!(runs[1]["group"], "g1");
    assert_eq!(runs[1]["job_type"], "train");
    assert_eq!(runs[1]["state"], "finished");
    assert_eq!(runs[1]["steps"], 5);
    let out = ranklog(&["runs", "--dir", &dir, "--json", "--project", "alpha"]);
    assert_eq!(json(&out).as_array().map(Vec::len), Some(1));
    Ok(())
}

#[test]
fn runs_table_has_a_header_and_a_line_per_run() -> ranklog::Result<()> {
    let root = temp_root();
    make_runs(root.path())?;
    let out = ranklog(&["runs", "--dir", &root.path().display().to_string()]);
    assert_success(&out, "runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE") && lines[0].contains("STEPS")
    );
    assert!(lines[2].contains("first-run") && lines[2].contains("finished"));
    Ok(())
}

#[test]
fn show_finds_a_run_by_id_name_or_path() -> ranklog::Result<()> {
    let root = temp_root();
    make_runs(root.path())?;
    let dir = root.path().display().to_string();
    let info = ranklog::store::list(root.path())?;
    let first = info
        .iter()
        .find(|r| r.meta.name == "first-run")
        .unwrap_or_else(|| panic!("no run"));
    for query in [
        first.meta.id.clone(),
        "first-run".to_string(),
        first.dir.display().to_string(),
    ] {
        let out = ranklog(&["show", &query, "--dir", &dir, "--json"]);
        assert_success(&out, "show --json");
        let v = json(&out);
        assert_eq!(v["name"], "first-run");
        assert_eq!(v["summary"]["best"], 0.2);
        let metrics = v["metrics"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(metrics[0]["key"], "loss");
        assert_eq!(metrics[0]["min"], 0.2);
        assert_eq!(metrics[0]["max"], 1.0);
        assert_eq!(metrics[1]["last"], "NaN");
    }
    let out = ranklog(&["show", "first-run", "--dir", &dir]);
    assert_success(&out, "show");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("METRIC") && text.contains("loss") && text.contains("nan"),
        "{text}"
    );
    Ok(())
}

#[test]
fn show_of_a_missing_run_says_how_to_list_runs() {
    let root = temp_root();
    let out = ranklog(&["show", "nope", "--dir", &root.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no run \"nope\"") && err.contains("ranklog runs"),
        "{err}"
    );
}

#[test]
fn show_of_a_corrupt_log_shows_the_readable_prefix() -> ranklog::Result<()> {
    let root = temp_root();
    let run = ranklog::init(offline(root.path()))?;
    for i in 0..10 {
        run.log([("x", f64::from(i))])?;
        run.flush()?;
    }
    run.finish()?;
    let dir = only_run(root.path());
    let log = dir.join("run.rlog");
    let mut bytes = std::fs::read(&log).unwrap_or_default();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let out = ranklog(&["show", &dir.display().to_string(), "--json"]);
    assert_success(&out, "show of a corrupt run");
    let v = json(&out);
    assert!(v["damage"]["offset"].as_u64().is_some(), "{v}");
    let steps = v["steps"].as_u64().unwrap_or(0);
    assert!(steps > 0 && steps < 10, "steps {steps}");
    Ok(())
}

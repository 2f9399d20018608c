//! `ranklog export wandb` and `Settings::export_wandb`: W&B offline runs read
//! back through ranklog's own reader of the framing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ranklog::export::wandb::{self, proto, Reader};
use ranklog::{Error, Mode, Reinit, Settings};

use crate::util::{assert_success, ranklog, temp_root};

fn settings(root: &Path) -> Settings {
    Settings::new()
        .dir(root)
        .mode(Mode::Offline)
        .silent(true)
        .capture_git(false)
        // Tests run in parallel in one process: never finish another test's run.
        .reinit(Reinit::CreateNew)
}

/// A value_json back as a float: W&B's words for NaN and the infinities.
fn float(json: &str) -> f64 {
    match json {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|e| panic!("{other:?} is not a number: {e}")),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// The records of an exported file, by kind.
struct Exported {
    all: Vec<proto::Record>,
}

impl Exported {
    fn read(file: &Path) -> Exported {
        let all = wandb::read_file(file).unwrap_or_else(|e| panic!("{e}"));
        let nums: Vec<i64> = all.iter().map(|r| r.num).collect();
        assert_eq!(nums, (1..=all.len() as i64).collect::<Vec<_>>());
        Exported { all }
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.all
            .iter()
            .map(|r| match &r.record_type {
                Some(proto::RecordType::Header(_)) => "header",
                Some(proto::RecordType::Run(_)) => "run",
                Some(proto::RecordType::Config(_)) => "config",
                Some(proto::RecordType::History(_)) => "history",
                Some(proto::RecordType::Summary(_)) => "summary",
                Some(proto::RecordType::Exit(_)) => "exit",
                None => "none",
            })
            .collect()
    }

    fn run(&self) -> &proto::RunRecord {
        match &self.all[1].record_type {
            Some(proto::RecordType::Run(r)) => r,
            other => panic!("record 2 is not the run record: {other:?}"),
        }
    }

    /// Every history row as (step.num, items).
    fn rows(&self) -> Vec<(i64, BTreeMap<String, String>)> {
        self.all
            .iter()
            .filter_map(|r| match &r.record_type {
                Some(proto::RecordType::History(h)) => Some((
                    h.step.map(|s| s.num).unwrap_or(-1),
                    h.item
                        .iter()
                        .map(|i| (i.key.clone(), i.value_json.clone()))
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    fn config(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for r in &self.all {
            if let Some(proto::RecordType::Config(c)) = &r.record_type {
                for i in &c.update {
                    let v = serde_json::from_str::<serde_json::Value>(&i.value_json)
                        .unwrap_or_else(|e| panic!("config {}: {e}", i.key));
                    out.insert(i.key.clone(), v);
                }
            }
        }
        out
    }

    fn summary(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for r in &self.all {
            if let Some(proto::RecordType::Summary(s)) = &r.record_type {
                for i in &s.update {
                    out.insert(i.key.clone(), i.value_json.clone());
                }
            }
        }
        out
    }

    fn exit_code(&self) -> i32 {
        match &self.all.last().and_then(|r| r.record_type.clone()) {
            Some(proto::RecordType::Exit(e)) => e.exit_code,
            other => panic!("the last record is not an exit record: {other:?}"),
        }
    }
}

#[test]
fn finished_run_round_trips_through_the_framing() {
    let root = temp_root();
    let out = temp_root();
    let run = ranklog::init(
        settings(root.path())
            .project("vision")
            .name("first-try")
            .group("job-7")
            .job_type("train")
            .id("exp00001")
            .config(serde_json::json!({"lr": 0.001, "layers": [64, 64], "opt": {"name": "adam"}})),
    )
    .unwrap();
    run.log([("loss", 1.0), ("acc", 0.25)]).unwrap();
    run.log([("loss", f64::NAN), ("acc", f64::INFINITY)])
        .unwrap();
    run.log_at(1, [("損失/検証 ✓", f64::NEG_INFINITY)]).unwrap(); // joins step 1
    run.log_at(10, [("loss", 0.5)]).unwrap();
    run.update_config(serde_json::json!({"epochs": 3})).unwrap();
    run.summary("best/acc", 0.75).unwrap();
    run.summary("acc", f64::NAN).unwrap(); // an explicit value wins over the last logged one
    run.set_name("renamed-run").unwrap();
    let dir = run.dir().unwrap().to_path_buf();
    run.finish().unwrap();

    let report = wandb::export_run(&dir, out.path()).unwrap();
    assert_eq!(report.id, "exp00001");
    assert_eq!(report.exit_code, 0);
    assert_eq!((report.rows, report.points), (3, 6));
    assert!(report.damage.is_none());
    let name = report.offline_dir.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("offline-run-") && name.ends_with("-exp00001"),
        "{name}"
    );
    assert_eq!(
        report.offline_dir.parent().unwrap(),
        out.path().join("wandb")
    );
    assert_eq!(report.file, report.offline_dir.join("run-exp00001.wandb"));
    assert_eq!(std::fs::metadata(&report.file).unwrap().len(), report.bytes);

    let x = Exported::read(&report.file);
    assert_eq!(
        x.kinds(),
        vec![
            "header", "run", "config", "history", "history", "config", "history", "summary", "exit"
        ]
    );
    assert_eq!(report.records, x.all.len() as u64);
    let run = x.run();
    assert_eq!(run.run_id, "exp00001");
    assert_eq!(run.project, "vision");
    assert_eq!(run.run_group, "job-7");
    assert_eq!(run.job_type, "train");
    assert_eq!(run.display_name, "renamed-run");
    assert!(run.start_time.is_some());
    assert_eq!(
        x.config(),
        serde_json::from_value::<BTreeMap<String, serde_json::Value>>(serde_json::json!({
            "lr": 0.001, "layers": [64, 64], "opt": {"name": "adam"}, "epochs": 3
        }))
        .unwrap()
    );

    let rows = x.rows();
    let steps: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(steps, vec![0, 1, 10]);
    let expect: [&[(&str, f64)]; 3] = [
        &[("loss", 1.0), ("acc", 0.25)],
        &[
            ("loss", f64::NAN),
            ("acc", f64::INFINITY),
            ("損失/検証 ✓", f64::NEG_INFINITY),
        ],
        &[("loss", 0.5)],
    ];
    let mut last_runtime = -1.0;
    for ((step, items), want) in rows.iter().zip(expect) {
        assert_eq!(items["_step"], step.to_string());
        let runtime = float(&items["_runtime"]);
        assert!(runtime >= last_runtime);
        last_runtime = runtime;
        let ts = float(&items["_timestamp"]);
        assert!(ts > 1.5e9 && ts < 1e11, "{ts}");
        assert_eq!(items.len(), want.len() + 3, "{items:?}");
        for (k, v) in want {
            assert!(same(float(&items[*k]), *v), "{k}: {} vs {v}", items[*k]);
        }
    }
    assert_eq!(rows[1].1["loss"], "NaN");
    assert_eq!(rows[1].1["acc"], "Infinity");

    let summary = x.summary();
    assert_eq!(summary["loss"], "0.5");
    assert_eq!(summary["acc"], "NaN");
    assert_eq!(summary["best/acc"], "0.75");
    assert_eq!(summary["損失/検証 ✓"], "-Infinity");
    assert_eq!(summary["_step"], "10");
    assert_eq!(summary["_runtime"], rows[2].1["_runtime"]);
    assert_eq!(summary["_timestamp"], rows[2].1["_timestamp"]);
    assert_eq!(x.exit_code(), 0);
}

#[test]
fn failed_run_exports_a_non_zero_exit_code() {
    let root = temp_root();
    let out = temp_root();
    let run = ranklog::init(settings(root.path())).unwrap();
    run.log([("loss", 2.0)]).unwrap();
    let dir = run.dir().unwrap().to_path_buf();
    run.fail("diverged").unwrap();
    let report = wandb::export_run(&dir, out.path()).unwrap();
    assert_eq!(report.state.as_str(), "failed");
    assert_ne!(report.exit_code, 0);
    assert_eq!(Exported::read(&report.file).exit_code(), report.exit_code);
}

/// Run by `crashed_run_exports_a_non_zero_exit_code` in a child process:
/// logs, flushes and aborts without finishing.
#[test]
#[ignore = "helper: runs in a child process of crashed_run_exports_a_non_zero_exit_code"]
fn crash_helper() {
    let Some(root) = std::env::var_os("RANKLOG_TEST_CRASH_ROOT") else {
        return;
    };
    let run = ranklog::init(settings(Path::new(&root)).id("crashed1")).unwrap();
    for i in 0..50 {
        run.log([("loss", 1.0 / f64::from(i + 1))]).unwrap();
    }
    run.flush().unwrap();
    std::process::abort();
}

#[test]
fn crashed_run_exports_a_non_zero_exit_code() {
    let root = temp_root();
    let out = temp_root();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "export::crash_helper",
            "--ignored",
            "--nocapture",
        ])
        .env("RANKLOG_TEST_CRASH_ROOT", root.path())
        .output()
        .unwrap();
    assert!(
        !child.status.success(),
        "the helper should have aborted\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let dir = crate::util::only_run(root.path());
    let report = wandb::export_run(&dir, out.path()).unwrap();
    assert_eq!(report.state.as_str(), "crashed");
    assert_eq!(report.rows, 50);
    let x = Exported::read(&report.file);
    assert_ne!(x.exit_code(), 0);
    assert_eq!(x.rows().last().unwrap().0, 49);
}

#[test]
fn torn_log_exports_its_readable_prefix_as_crashed() {
    let root = temp_root();
    let out = temp_root();
    let run =
        ranklog::init(settings(root.path()).flush_interval(std::time::Duration::from_secs(3600)))
            .unwrap();
    for i in 0..10 {
        run.log([("loss", f64::from(i))]).unwrap();
        run.flush().unwrap(); // one frame per row
    }
    let dir = run.dir().unwrap().to_path_buf();
    run.finish().unwrap();
    // Cut the log inside its last frame (the exit record) and make the
    // writer a process that is gone, as after a crash.
    let log = dir.join("run.rlog");
    let len = std::fs::metadata(&log).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - 3).unwrap();
    let meta_path = dir.join("meta.json");
    let mut meta: ranklog::store::Meta =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    meta.pid = gone.id();
    gone.wait().unwrap();
    meta.pid_start = None;
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let report = wandb::export_run(&dir, out.path()).unwrap();
    assert_eq!(report.state.as_str(), "crashed");
    assert!(report.damage.is_some());
    assert_eq!(report.rows, 10);
    let x = Exported::read(&report.file);
    assert_ne!(x.exit_code(), 0);
    assert_eq!(x.rows().len(), 10);
}

#[test]
fn running_run_is_refused_until_it_finishes() {
    let root = temp_root();
    let out = temp_root();
    let run = ranklog::init(settings(root.path())).unwrap();
    run.log([("loss", 2.0)]).unwrap();
    run.flush().unwrap();
    let dir = run.dir().unwrap().to_path_buf();
    let e = wandb::export_run(&dir, out.path()).unwrap_err();
    assert!(matches!(e, Error::RunStillRunning { .. }), "{e}");
    let leftovers: Vec<PathBuf> = walk(out.path());
    assert!(
        leftovers.iter().all(|p| p.is_dir()),
        "no file is left behind: {leftovers:?}"
    );
    run.finish().unwrap();
    wandb::export_run(&dir, out.path()).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn settings_export_wandb_exports_at_finish() {
    let root = temp_root();
    let out = temp_root();
    let run = ranklog::init(
        settings(root.path())
            .export_wandb(out.path())
            .id("atfinish"),
    )
    .unwrap();
    run.log([("x", 1.0)]).unwrap();
    run.finish().unwrap();
    let files: Vec<PathBuf> = walk(&out.path().join("wandb"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wandb"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("run-atfinish.wandb"));
    let x = Exported::read(&files[0]);
    assert_eq!(x.rows().len(), 1);
    assert_eq!(x.exit_code(), 0);
}

#[test]
fn records_larger_than_a_block_span_first_middle_last_chunks() {
    let root = temp_root();
    let out = temp_root();
    let run = ranklog::init(settings(root.path())).unwrap();
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("layer_{i:04}/grad_norm"))
        .collect();
    for step in 0..5u32 {
        run.log(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), f64::from(step) * 1000.0 + i as f64)),
        )
        .unwrap();
    }
    let dir = run.dir().unwrap().to_path_buf();
    run.finish().unwrap();
    let report = wandb::export_run(&dir, out.path()).unwrap();
    assert_eq!(report.points, 15_000);
    let mut reader = Reader::open(&report.file).unwrap();
    let mut n = 0;
    while reader.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, report.records);
    let c = reader.chunk_counts();
    assert!(c.first >= 5 && c.middle >= 5 && c.last >= 5, "{c:?}");
    let rows = Exported::read(&report.file).rows();
    assert_eq!(rows.len(), 5);
    for (step, items) in &rows {
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(float(&items[k]), *step as f64 * 1000.0 + i as f64);
        }
    }
}

#[test]
fn cli_exports_by_id_and_reports_json() {
    let root = temp_root();
    let out = temp_root();
    for id in ["clirun01", "clirun02"] {
        let run = ranklog::init(settings(root.path()).id(id)).unwrap();
        run.log([("loss", 0.5)]).unwrap();
        run.finish().unwrap();
    }
    let root_arg = root.path().to_str().unwrap();
    let out_arg = out.path().to_str().unwrap();
    let o = ranklog(&[
        "export", "wandb", "clirun01", "clirun02", "--dir", root_arg, "--out", out_arg, "--json",
    ]);
    assert_success(&o, "ranklog export wandb --json");
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(docs.len(), 2);
    for (doc, id) in docs.iter().zip(["clirun01", "clirun02"]) {
        assert_eq!(doc["ok"], true);
        assert_eq!(doc["id"], id);
        assert_eq!(doc["state"], "finished");
        assert_eq!(doc["rows"], 1);
        let file = PathBuf::from(doc["file"].as_str().unwrap());
        assert_eq!(Exported::read(&file).exit_code(), 0);
    }

    let o = ranklog(&[
        "export", "wandb", "clirun01", "--dir", root_arg, "--out", out_arg,
    ]);
    assert_success(&o, "ranklog export wandb");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("RUN") && text.contains("clirun01"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("wandb sync"));

    let o = ranklog(&[
        "export",
        "wandb",
        "clirun01",
        "nosuchrun",
        "--dir",
        root_arg,
        "--out",
        out_arg,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "partial result");
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(docs[1]["ok"], false);
    assert!(docs[1]["error"].as_str().unwrap().contains("nosuchrun"));

    let o = ranklog(&[
        "export",
        "wandb",
        "nosuchrun",
        "--dir",
        root_arg,
        "--out",
        out_arg,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("ranklog: "));
}

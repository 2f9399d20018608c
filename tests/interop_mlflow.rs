//! Interop with a real MLflow tracking server (opt-in, slow).
//!
//! Run through `scripts/interop-mlflow.sh`, which installs MLflow in a venv and
//! runs `cargo test --test tests interop_mlflow -- --ignored` with
//! `RANKLOG_INTEROP_MLFLOW` set to the `mlflow` executable. Each test starts
//! its own server(s) (SQLite backend in a temp dir, 127.0.0.1, a free port),
//! polls until it answers, and checks everything through MLflow's REST API
//! against what the run log holds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ranklog::record::Record;
use ranklog::store::{self, Reader};
use ranklog::{Error, Mode, Settings};
use serde_json::{json, Value};

use crate::util::{assert_success, ranklog_bin, temp_root};

/// Env var naming the `mlflow` executable; set by the interop script.
const MLFLOW_ENV: &str = "RANKLOG_INTEROP_MLFLOW";
/// Env var that makes this test binary act as a child training process.
const CHILD_ENV: &str = "RANKLOG_INTEROP_CHILD";

const ADMIN_PASSWORD: &str = "ranklog-admin-pw-0001";

pub(crate) fn mlflow_exe() -> PathBuf {
    match std::env::var_os(MLFLOW_ENV) {
        Some(p) => PathBuf::from(p),
        None => panic!("{MLFLOW_ENV} is not set: run scripts/interop-mlflow.sh"),
    }
}

/// A real `mlflow server` on 127.0.0.1, killed (with its workers) on drop.
pub(crate) struct Server {
    dir: tempfile::TempDir,
    port: u16,
    auth: bool,
    child: Option<Child>,
}

impl Server {
    pub(crate) fn start(auth: bool) -> Server {
        let dir = temp_root();
        let port = free_port();
        let mut s = Server {
            dir,
            port,
            auth,
            child: None,
        };
        s.launch();
        s
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let mut cmd = Command::new(mlflow_exe());
        cmd.arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", self.dir.path().display()))
            .arg("--default-artifact-root")
            .arg(self.dir.path().join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--workers", "2"])
            // The job executor (scorers, trace archival) is not needed here
            // and spawns processes that compete for the CPU.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0);
        if self.auth {
            cmd.args(["--app-name", "basic-auth"])
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "ranklog-interop-secret")
                .env("MLFLOW_AUTH_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        let child = cmd.spawn().expect("cannot start mlflow server");
        // Let the script kill the server's process group if this test dies.
        if let Some(dir) = std::env::var_os("RANKLOG_INTEROP_PIDS") {
            let _ = std::fs::write(Path::new(&dir).join(child.id().to_string()), b"");
        }
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls `/health` until it answers 200; never a fixed sleep.
    fn wait_ready(&mut self) {
        // Generous: a fresh server migrates its database first, and a loaded
        // 2-core machine has been seen to take 100 s.
        let deadline = Instant::now() + Duration::from_secs(300);
        let http = http_client();
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.uri())).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mlflow server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer within 300 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILLs the server and its workers.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals the process group we created for the server.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
            if let Some(dir) = std::env::var_os("RANKLOG_INTEROP_PIDS") {
                let _ = std::fs::remove_file(Path::new(&dir).join(c.id().to_string()));
            }
        }
    }

    /// A blocking REST client, optionally as a user.
    pub(crate) fn api(&self, user: Option<(&str, &str)>) -> Api {
        Api {
            base: self.uri(),
            http: http_client(),
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client with a timeout and no kept-alive connections, so that a
/// connection the server closed while idle is never reused.
pub(crate) fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The REST API, used to check what the server holds.
pub(crate) struct Api {
    base: String,
    http: reqwest::blocking::Client,
    user: Option<(String, String)>,
}

impl Api {
    fn call(&self, req: reqwest::blocking::RequestBuilder) -> Value {
        let req = match &self.user {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        };
        // Reads are idempotent: retry a dropped connection on a loaded machine.
        let mut tries = 0;
        let resp = loop {
            match req.try_clone().expect("clonable request").send() {
                Ok(r) => break r,
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("retrying {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("request: {e}"),
            }
        };
        let status = resp.status();
        let text = resp.text().expect("body");
        assert!(status.is_success(), "HTTP {status}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    pub(crate) fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.call(self.http.get(url).query(query))
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.call(
            self.http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string()),
        )
    }

    /// The remote runs carrying `ranklog.run_id = id` in experiment `project`.
    pub(crate) fn runs_of(&self, project: &str, id: &str) -> Vec<Value> {
        let exp = self.get("experiments/get-by-name", &[("experiment_name", project)]);
        let exp_id = exp["experiment"]["experiment_id"]
            .as_str()
            .expect("experiment id");
        let found = self.post(
            "runs/search",
            json!({"experiment_ids": [exp_id], "filter": format!("tags.`ranklog.run_id` = '{id}'"), "max_results": 100}),
        );
        found["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Every point of a metric: (step, timestamp, value bits), sorted.
    pub(crate) fn history(&self, run_id: &str, key: &str) -> Vec<(i64, i64, u64)> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v = self.get("metrics/get-history", &q);
            for m in v["metrics"].as_array().cloned().unwrap_or_default() {
                out.push((
                    m["step"].as_i64().unwrap_or(0),
                    m["timestamp"].as_i64().expect("timestamp"),
                    m["value"].as_f64().expect("value").to_bits(),
                ));
            }
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        out.sort_unstable();
        out
    }
}

/// What a run's log says, as the server should show it.
pub(crate) struct Expected {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) project: String,
    pub(crate) group: Option<String>,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) exit: Option<ranklog::ExitState>,
    pub(crate) params: BTreeMap<String, String>,
    pub(crate) metrics: BTreeMap<String, Vec<(i64, i64, u64)>>,
    pub(crate) summary: BTreeMap<String, String>,
}

pub(crate) fn expected(dir: &Path) -> Expected {
    let mut reader = Reader::open(&dir.join(store::LOG_FILE)).expect("log");
    let mut e = Expected {
        id: String::new(),
        name: String::new(),
        project: String::new(),
        group: None,
        start_ms: 0,
        end_ms: 0,
        exit: None,
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
        summary: BTreeMap::new(),
    };
    let mut start_us = 0i64;
    let mut last_t = 0i64;
    let mut keys = BTreeMap::new();
    for r in reader.by_ref() {
        match r {
            Record::Start(s) => {
                e.id = s.id.clone();
                e.name = s.name.clone();
                e.project = s.project.clone();
                e.group = s.group.clone();
                start_us = s.start_unix_us;
                e.start_ms = start_us.div_euclid(1000);
            }
            Record::Key { id, name } => {
                keys.insert(id, name);
            }
            Record::History(row) => {
                last_t = last_t.max(row.t_us);
                let ts = (start_us + row.t_us).div_euclid(1000);
                for (id, v) in row.values {
                    e.metrics.entry(keys[&id].clone()).or_default().push((
                        row.step as i64,
                        ts,
                        v.to_bits(),
                    ));
                }
            }
            Record::Config { json } => {
                let v: Value = serde_json::from_str(&json).expect("config");
                flatten("", &v, &mut e.params);
            }
            Record::Summary { key, json } => {
                e.summary.insert(key, json);
            }
            Record::Name { name } => e.name = name,
            Record::Heartbeat { t_us } => last_t = last_t.max(t_us),
            Record::Exit(x) => {
                last_t = last_t.max(x.t_us);
                e.exit = Some(x.state);
                e.end_ms = (start_us + x.t_us).div_euclid(1000);
            }
            _ => {}
        }
    }
    if e.exit.is_none() {
        e.end_ms = (start_us + last_t).div_euclid(1000);
    }
    for v in e.metrics.values_mut() {
        v.sort_unstable();
    }
    e
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// MLflow's `[{"key": .., "value": ..}]` lists (tags, params) as a map.
fn key_values(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or_default().to_string(),
                t["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Checks one run on the server against its log; returns the remote run.
pub(crate) fn verify(api: &Api, dir: &Path, status: &str) -> Value {
    let started = Instant::now();
    let e = expected(dir);
    let runs = api.runs_of(&e.project, &e.id);
    assert_eq!(runs.len(), 1, "exactly one remote run for {}", e.id);
    let run_id = runs[0]["info"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let run = api.get("runs/get", &[("run_id", &run_id)])["run"].clone();
    let info = &run["info"];
    assert_eq!(info["run_name"], e.name.as_str());
    assert_eq!(info["status"], status, "status of {}", e.id);
    assert_eq!(info["start_time"].as_i64(), Some(e.start_ms));
    assert_eq!(
        info["end_time"].as_i64(),
        Some(e.end_ms),
        "end time of {}",
        e.id
    );
    let tags = key_values(&run["data"]["tags"]);
    assert_eq!(tags.get("ranklog.run_id"), Some(&e.id));
    assert_eq!(tags.get("ranklog.group"), e.group.as_ref());
    for (k, v) in &e.summary {
        assert_eq!(
            tags.get(&format!("ranklog.summary.{k}")),
            Some(v),
            "summary {k}"
        );
    }
    let params = key_values(&run["data"]["params"]);
    assert_eq!(params, e.params, "params of {}", e.id);
    // Keys MLflow rejects are renamed, and the renaming is recorded.
    let renamed: BTreeMap<String, String> = tags
        .iter()
        .filter(|(k, _)| k.starts_with("ranklog.renamed."))
        .map(|(_, v)| {
            let m: Value = serde_json::from_str(v).expect("rename record");
            (
                m["key"].as_str().unwrap_or_default().to_string(),
                m["mlflow_key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let remote_keys: BTreeSet<String> = run["data"]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["key"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut want_keys = BTreeSet::new();
    for (key, points) in &e.metrics {
        let remote = renamed.get(key).unwrap_or(key);
        want_keys.insert(remote.clone());
        let got = api.history(&run_id, remote);
        assert_eq!(got.len(), points.len(), "points of {key} in {}", e.id);
        if let Some((g, w)) = got.iter().zip(points).find(|(g, w)| g != w) {
            panic!(
                "{key} in {}: server has (step {}, ts {}, value {}), log has (step {}, ts {}, value {})",
                e.id,
                g.0,
                g.1,
                f64::from_bits(g.2),
                w.0,
                w.1,
                f64::from_bits(w.2)
            );
        }
    }
    assert_eq!(remote_keys, want_keys);
    eprintln!("verified {} in {:?}", e.id, started.elapsed());
    run
}

/// Entry point of the child training processes this file starts (a no-op
/// when run as a test).
#[test]
#[ignore = "entry point of interop child processes"]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let steps: u64 = spec
        .split(',')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let hang = spec.contains("hang");
    let run = ranklog::init(Settings::new().config(json!({"lr": 0.01, "model": {"depth": 4}})))
        .expect("init");
    let dir = run
        .dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    for step in 0..steps {
        let x = step as f64;
        run.log([("loss", 1.0 / (1.0 + x)), ("acc", x / (x + 7.0))])
            .expect("log");
    }
    run.summary("best", 0.5).expect("summary");
    if hang {
        run.flush().expect("flush");
        println!("READY {dir}");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    run.finish().expect("finish");
    println!("DONE {dir}");
}

fn child(envs: &[(&str, String)], spec: &str) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "interop_mlflow::child_process_entry",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(CHILD_ENV, spec)
    .env("RANKLOG_SILENT", "1")
    .env("RANKLOG_DISABLE_GIT", "1")
    .env_remove("RANKLOG_TRACKING_URI")
    .env_remove("MLFLOW_TRACKING_URI")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

/// Reads the child's stdout until a line starting with `word`; returns the run dir.
fn wait_line(c: &mut Child, word: &str) -> PathBuf {
    let out = c.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    while let Some(Ok(line)) = lines.next() {
        if let Some(dir) = line.strip_prefix(word) {
            // Keep reading, so the child never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return PathBuf::from(dir.trim());
        }
    }
    panic!("child ended without {word}");
}

pub(crate) fn sync_cli(
    root: &Path,
    server: &str,
    extra_env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = Command::new(ranklog_bin());
    cmd.args(["sync", "--all", "--dir"])
        .arg(root)
        .args(["--tracking-uri", server])
        .env_remove("RANKLOG_TRACKING_USERNAME")
        .env_remove("RANKLOG_TRACKING_PASSWORD")
        .env_remove("RANKLOG_TRACKING_TOKEN")
        .env("RANKLOG_CONFIG_DIR", root.join(".config"));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("ranklog sync")
}

/// (a) online, (b) offline then synced (finished and failed), (c) crashed
/// and recovered as KILLED, (d) a grouped job of 4 processes.
#[test]
#[ignore = "needs a real MLflow server: scripts/interop-mlflow.sh"]
fn online_offline_crashed_and_grouped_runs_arrive_exactly() {
    let server = Server::start(false);
    let api = server.api(None);

    // (a) online, in process.
    let root_a = temp_root();
    let run = ranklog::init(
        Settings::new()
            .project("interop")
            .dir(root_a.path())
            .mode(Mode::Online)
            .tracking_uri(server.uri())
            .silent(true)
            .capture_git(false)
            .upload_timeout(Duration::from_secs(180))
            .reinit(ranklog::Reinit::CreateNew)
            .config(json!({"lr": 0.001, "opt": {"name": "adam", "betas": [0.9, 0.99]}})),
    )
    .expect("online init");
    for step in 0..3000u64 {
        let x = step as f64;
        run.log([("train/loss", 1.0 / (1.0 + x)), ("λ-rate", x * 0.5)])
            .expect("log");
        if step % 500 == 0 {
            run.log_at(step, [("val/loss", x.sqrt())]).expect("log_at");
        }
    }
    run.summary("best_loss", 0.25).expect("summary");
    run.set_name("online-renamed").expect("rename");
    let t = Instant::now();
    let done = run.finish().expect("finish");
    eprintln!("online finish took {:?}", t.elapsed());
    let upload = done.upload.expect("online runs report their upload");
    assert!(upload.complete, "{upload:?}");
    assert_eq!(upload.acked_bytes, upload.log_bytes);
    let dir_a = done.dir.expect("dir");
    verify(&api, &dir_a, "FINISHED");

    // (b) offline runs, synced later with the CLI: one finished, one failed.
    let root_b = temp_root();
    let settings = || {
        Settings::new()
            .project("interop")
            .dir(root_b.path())
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .reinit(ranklog::Reinit::CreateNew)
    };
    let ok = ranklog::init(settings().config(json!({"batch": 64}))).expect("init");
    for step in 0..2500u64 {
        ok.log([
            ("loss", 2.0 - step as f64 * 1e-3),
            ("acc", step as f64 * 1e-4),
        ])
        .expect("log");
    }
    let ok_dir = ok.finish().expect("finish").dir.expect("dir");
    let bad = ranklog::init(settings()).expect("init");
    bad.log([("loss", 9.0)]).expect("log");
    let bad_dir = bad.fail("diverged").expect("fail").dir.expect("dir");
    let out = sync_cli(root_b.path(), &server.uri(), &[]);
    assert_success(&out, "ranklog sync (offline runs)");
    verify(&api, &ok_dir, "FINISHED");
    verify(&api, &bad_dir, "FAILED");
    // A second sync skips both.
    let again = sync_cli(root_b.path(), &server.uri(), &[]);
    assert_success(&again, "ranklog sync again");
    let text = String::from_utf8_lossy(&again.stdout);
    assert_eq!(text.matches("skipped").count(), 2, "{text}");
    // Losing sync.json (a crash right after the remote run was created, or
    // after batches were acknowledged but not saved) sends everything again:
    // the run is found by its tag and the repeated batches change nothing.
    std::fs::remove_file(ok_dir.join(ranklog::sync::SYNC_FILE)).expect("remove sync.json");
    let out = sync_cli(root_b.path(), &server.uri(), &[]);
    assert_success(&out, "ranklog sync without sync.json");
    verify(&api, &ok_dir, "FINISHED");

    // (c) a crashed child (SIGKILL), recovered by sync as KILLED.
    let root_c = temp_root();
    let envs = [
        ("RANKLOG_DIR", root_c.path().display().to_string()),
        ("RANKLOG_MODE", "offline".to_string()),
        ("RANKLOG_PROJECT", "interop-crash".to_string()),
    ];
    let mut c = child(&envs, "1500,hang");
    let crash_dir = wait_line(&mut c, "READY");
    // SAFETY: kills the child we started.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    let _ = c.wait();
    let info = store::info(&crash_dir).expect("info");
    assert_eq!(info.state, store::RunState::Crashed);
    let out = sync_cli(root_c.path(), &server.uri(), &[]);
    assert_success(&out, "ranklog sync (crashed run)");
    assert!(String::from_utf8_lossy(&out.stdout).contains("KILLED"));
    verify(&api, &crash_dir, "KILLED");

    // (d) a grouped job: 4 processes, online, one group tag, one experiment
    // created by whichever rank came first.
    let root_d = temp_root();
    let envs = [
        ("RANKLOG_DIR", root_d.path().display().to_string()),
        ("RANKLOG_MODE", "online".to_string()),
        ("RANKLOG_TRACKING_URI", server.uri()),
        ("RANKLOG_PROJECT", "interop-group".to_string()),
        ("RANKLOG_GROUP", "job-42".to_string()),
    ];
    let mut kids: Vec<Child> = (0..4).map(|_| child(&envs, "800")).collect();
    let dirs: Vec<PathBuf> = kids.iter_mut().map(|k| wait_line(k, "DONE")).collect();
    for mut k in kids {
        assert!(k.wait().expect("wait").success());
    }
    for d in &dirs {
        verify(&api, d, "FINISHED");
    }
    let exp = api.get(
        "experiments/get-by-name",
        &[("experiment_name", "interop-group")],
    );
    let exp_id = exp["experiment"]["experiment_id"]
        .as_str()
        .expect("id")
        .to_string();
    let grouped = api.post(
        "runs/search",
        json!({"experiment_ids": [exp_id], "filter": "tags.`ranklog.group` = 'job-42'"}),
    );
    assert_eq!(grouped["runs"].as_array().map(Vec::len), Some(4));
}

/// (e) the server is killed and restarted in the middle of an online run:
/// nothing is lost and nothing is duplicated.
#[test]
#[ignore = "needs a real MLflow server: scripts/interop-mlflow.sh"]
fn server_restart_mid_run_loses_and_duplicates_nothing() {
    let mut server = Server::start(false);
    let root = temp_root();
    let run = ranklog::init(
        Settings::new()
            .project("interop-restart")
            .dir(root.path())
            .mode(Mode::Online)
            .tracking_uri(server.uri())
            .silent(true)
            .capture_git(false)
            .flush_interval(Duration::from_millis(20))
            .upload_timeout(Duration::from_secs(300))
            .reinit(ranklog::Reinit::CreateNew),
    )
    .expect("init");
    let dir = run.dir().expect("dir").to_path_buf();
    let log = |steps: std::ops::Range<u64>| {
        for step in steps {
            let x = step as f64;
            run.log([("loss", 1.0 / (1.0 + x)), ("x", x)]).expect("log");
        }
        run.flush().expect("flush");
    };
    let acked = || {
        ranklog::sync::SyncState::load(&dir)
            .ok()
            .flatten()
            .map(|s| s.acked_offset)
            .unwrap_or(0)
    };
    // Phase 1: the server takes part of the run.
    log(0..3000);
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked() < 8192 {
        assert!(Instant::now() < deadline, "nothing was uploaded in 300 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Phase 2: the server is killed (batches may be in flight) and training
    // goes on while it is down.
    server.kill();
    let before = acked();
    log(3000..6000);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        acked()
            <= std::fs::metadata(dir.join(store::LOG_FILE))
                .map(|m| m.len())
                .unwrap_or(0),
        "acknowledged offsets stay within the log"
    );
    // Phase 3: the server comes back on the same port and database.
    server.launch();
    log(6000..9000);
    let done = run.finish().expect("finish");
    let upload = done.upload.expect("upload status");
    assert!(upload.complete, "{upload:?}");
    assert!(upload.acked_bytes > before);
    verify(&server.api(None), &dir, "FINISHED");
}

/// (f) a basic-auth server: a wrong password and a user without permission
/// are refused with PermissionDenied; the right credentials work.
#[test]
#[ignore = "needs a real MLflow server: scripts/interop-mlflow.sh"]
fn basic_auth_refusals_are_permission_denied() {
    let server = Server::start(true);
    let admin = server.api(Some(("admin", ADMIN_PASSWORD)));
    let root = temp_root();
    let make_run = |project: &str| {
        let run = ranklog::init(
            Settings::new()
                .project(project)
                .dir(root.path())
                .mode(Mode::Offline)
                .silent(true)
                .capture_git(false)
                .reinit(ranklog::Reinit::CreateNew),
        )
        .expect("init");
        for step in 0..50u64 {
            run.log([("loss", step as f64)]).expect("log");
        }
        run.finish().expect("finish").dir.expect("dir")
    };
    let dir = make_run("secret");
    let target = |user: &str, password: &str| ranklog::sync::Target {
        server: server.uri(),
        credentials: Some(ranklog::sync::Credentials::Basic {
            username: user.into(),
            password: password.into(),
        }),
    };
    // Wrong password: 401.
    let wrong = ranklog::sync::Uploader::open(&dir, &target("admin", "not-the-password"))
        .expect("open")
        .run(false, &mut |_| {});
    match wrong {
        Err(e @ Error::PermissionDenied { status: 401, .. }) => {
            assert!(e.to_string().contains("ranklog login"), "{e}");
            assert!(e.to_string().contains("secret"), "{e}");
        }
        other => panic!("expected PermissionDenied 401, got {other:?}"),
    }
    // The CLI says the same, with exit code 2.
    let out = sync_cli(
        root.path(),
        &server.uri(),
        &[
            ("RANKLOG_TRACKING_USERNAME", "admin"),
            ("RANKLOG_TRACKING_PASSWORD", "not-the-password"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ranklog login"), "{stdout}");
    assert!(!stdout.contains("not-the-password"));
    // `ranklog login` stores the right credentials (mode 0600); sync then works.
    let mut login = Command::new(ranklog_bin())
        .args([
            "login",
            "--tracking-uri",
            &server.uri(),
            "--username",
            "admin",
            "--password-stdin",
        ])
        .env("RANKLOG_CONFIG_DIR", root.path().join(".config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("login");
    {
        use std::io::Write;
        let mut stdin = login.stdin.take().expect("stdin");
        writeln!(stdin, "{ADMIN_PASSWORD}").expect("write");
    }
    let out = login.wait_with_output().expect("login output");
    assert_success(&out, "ranklog login");
    let cred_file = root.path().join(".config").join("credentials.json");
    let mode = std::fs::metadata(&cred_file).expect("credentials file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let out = sync_cli(root.path(), &server.uri(), &[]);
    assert_success(&out, "ranklog sync after login");
    verify(&admin, &dir, "FINISHED");
    // A user with the default READ permission cannot write to "secret": 403.
    admin.post(
        "users/create",
        json!({"username": "bob", "password": "bob-password-123"}),
    );
    let bob_dir = make_run("secret");
    let denied = ranklog::sync::Uploader::open(&bob_dir, &target("bob", "bob-password-123"))
        .expect("open")
        .run(false, &mut |_| {});
    match denied {
        Err(e @ Error::PermissionDenied { status: 403, .. }) => {
            assert!(e.to_string().contains("EDIT permission"), "{e}");
        }
        other => panic!("expected PermissionDenied 403, got {other:?}"),
    }
    // Bob may create and fill his own experiment.
    let bob_own = make_run("bobs");
    ranklog::sync::Uploader::open(&bob_own, &target("bob", "bob-password-123"))
        .expect("open")
        .run(false, &mut |_| {})
        .expect("bob uploads to his own experiment");
    verify(&admin, &bob_own, "FINISHED");
}

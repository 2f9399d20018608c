//! `ranklog ui` over plain HTTP: status codes, JSON documents, escaping,
//! path traversal, corrupt runs and live fragments. Each test starts the
//! real binary on a free port over its own root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ranklog::record::{Exit, ExitState, Record, Row, Start};
use ranklog::store::{self, Meta};
use ranklog::RankInfo;

use crate::util::{offline, ranklog_bin, temp_root};

/// A `ranklog ui` process, killed on drop.
struct Ui {
    child: Child,
    port: u16,
}

impl Ui {
    fn start(root: &Path) -> Ui {
        let mut child = Command::new(ranklog_bin())
            .args(["ui", "--port", "0", "--dir"])
            .arg(root)
            .env_remove("RANKLOG_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ranklog ui: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut line = String::new();
        BufReader::new(stderr)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("cannot read ranklog ui's stderr: {e}"));
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Ui { child, port }
    }

    /// GET `path` (sent as is) with a loopback `Host`.
    fn get(&self, path: &str) -> Response {
        self.get_as(path, &format!("127.0.0.1:{}", self.port))
    }

    fn get_as(&self, path: &str, host: &str) -> Response {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("cannot connect: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("{e}"));
        write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
            .unwrap_or_else(|e| panic!("cannot send: {e}"));
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("cannot read the answer to {path}: {e}"));
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {text:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        Response {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A run written with the store's own writer: `rows` steps of `metrics`,
/// finished or (no exit record, another host, an old log) crashed.
struct Fake<'a> {
    id: &'a str,
    name: &'a str,
    project: &'a str,
    group: Option<&'a str>,
    rank: Option<(u32, u32)>,
    start_ms: i64,
    steps: u64,
    metrics: &'a [&'a str],
    finished: bool,
    /// Records appended after the rows.
    extra: &'a [Record],
}

impl Default for Fake<'_> {
    fn default() -> Self {
        Fake {
            id: "fake0000",
            name: "fake",
            project: "p",
            group: None,
            rank: None,
            start_ms: 1_700_000_000_000,
            steps: 10,
            metrics: &["loss"],
            finished: true,
            extra: &[],
        }
    }
}

impl Fake<'_> {
    fn write(&self, root: &Path) -> PathBuf {
        let dir = root.join(format!("run-20260101_000000-{}", self.id));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let info = self.rank.map(|(rank, world)| RankInfo {
            rank,
            local_rank: rank,
            world_size: world,
            local_world_size: world,
            node_rank: 0,
        });
        let meta = Meta {
            format: store::FORMAT_VERSION,
            id: self.id.into(),
            name: self.name.into(),
            project: self.project.into(),
            group: self.group.map(String::from),
            job_type: Some("train".into()),
            rank: info,
            host: "elsewhere-host".into(),
            pid: 1,
            pid_start: None,
            program: "fake".into(),
            args: vec![],
            cwd: None,
            started: "2026-01-01T00:00:00Z".into(),
            start_unix_ms: self.start_ms,
            ranklog_version: "test".into(),
            mode: "offline".into(),
            git: None,
        };
        std::fs::write(
            dir.join(store::META_FILE),
            serde_json::to_vec(&meta).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let log = dir.join(store::LOG_FILE);
        let mut w = store::Writer::create(&log).unwrap_or_else(|e| panic!("{e}"));
        w.append(&Record::Start(Box::new(Start {
            id: self.id.into(),
            name: self.name.into(),
            project: self.project.into(),
            group: meta.group.clone(),
            job_type: None,
            rank: info,
            start_unix_us: self.start_ms * 1000,
            host: meta.host.clone(),
            pid: 1,
        })));
        for (i, k) in self.metrics.iter().enumerate() {
            w.append(&Record::Key {
                id: i as u32,
                name: k.to_string(),
            });
        }
        let r = f64::from(self.rank.map_or(0, |r| r.0));
        for step in 0..self.steps {
            w.append(&Record::History(Row {
                step,
                t_us: step as i64 * 1000,
                values: (0..self.metrics.len())
                    .map(|k| (k as u32, 1.0 / (1.0 + step as f64) + r + k as f64))
                    .collect(),
            }));
            if step % 1000 == 999 {
                w.flush().unwrap_or_else(|e| panic!("{e}"));
            }
        }
        for r in self.extra {
            w.append(r);
        }
        if self.finished {
            w.append(&Record::Exit(Exit {
                state: ExitState::Finished,
                code: 0,
                message: None,
                t_us: self.steps as i64 * 1000,
            }));
        }
        w.sync().unwrap_or_else(|e| panic!("{e}"));
        if !self.finished {
            // Another host's log untouched for long: crashed.
            let old = std::time::SystemTime::now() - Duration::from_secs(3600);
            std::fs::File::options()
                .write(true)
                .open(&log)
                .and_then(|f| f.set_modified(old))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        dir
    }
}

#[test]
fn runs_page_lists_runs_newest_first_and_filters() {
    let root = temp_root();
    Fake {
        id: "older001",
        name: "older-run",
        project: "alpha",
        start_ms: 1_000,
        ..Fake::default()
    }
    .write(root.path());
    Fake {
        id: "newer001",
        name: "newer-run",
        project: "beta",
        group: Some("g1"),
        rank: Some((0, 1)),
        start_ms: 2_000,
        finished: false,
        ..Fake::default()
    }
    .write(root.path());
    let ui = Ui::start(root.path());

    let page = ui.get("/");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.head.contains("content-type: text/html"));
    assert!(page.head.contains("content-security-policy"));
    let (newer, older) = (
        page.body
            .find("newer-run")
            .unwrap_or_else(|| panic!("{}", page.body)),
        page.body
            .find("older-run")
            .unwrap_or_else(|| panic!("{}", page.body)),
    );
    assert!(newer < older, "newest first");
    assert!(page.body.contains("href=\"/group/g1\""));
    assert!(page.body.contains("href=\"/run/older001\""));

    let beta = ui.get("/?project=beta");
    assert!(beta.body.contains("newer-run") && !beta.body.contains("older-run"));
    let crashed = ui.get("/?state=crashed");
    assert!(crashed.body.contains("newer-run") && !crashed.body.contains("older-run"));
    let by_group = ui.get("/?group=g1&project=alpha");
    assert!(!by_group.body.contains("newer-run") && !by_group.body.contains("older-run"));

    let all = ui.get("/api/runs").json();
    let ids: Vec<&str> = all
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {all}"))
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["newer001", "older001"]);
    assert_eq!(all[0]["state"], "crashed");
    assert_eq!(all[0]["group"], "g1");
    assert_eq!(all[1]["steps"], 10);
    let alpha = ui.get("/api/runs?project=alpha").json();
    assert_eq!(alpha.as_array().map(Vec::len), Some(1));
    assert_eq!(alpha[0]["name"], "older-run");
}

#[test]
fn run_page_and_json_show_meta_config_summary_and_charts() {
    let root = temp_root();
    let run = ranklog::init(
        offline(root.path())
            .project("proj")
            .name("chart-run")
            .config(serde_json::json!({"lr": 0.001, "optimizer": "adam"})),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..50 {
        run.log([
            ("loss", 1.0 / (1.0 + f64::from(i))),
            ("acc", f64::from(i) / 50.0),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }
    run.summary("best_acc", 0.98)
        .unwrap_or_else(|e| panic!("{e}"));
    let id = run.id().to_string();
    run.finish().unwrap_or_else(|e| panic!("{e}"));
    let ui = Ui::start(root.path());

    let page = ui.get(&format!("/run/{id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    for needle in [
        "chart-run",
        "optimizer",
        "adam",
        "best_acc",
        "0.98",
        "finished",
    ] {
        assert!(page.body.contains(needle), "{needle} missing");
    }
    // One chart per metric, once with steps and once with wall time on x.
    assert_eq!(page.body.matches("<figure class=\"chart\"").count(), 4);
    assert!(page.body.contains("data-metric=\"loss\""));
    assert!(page.body.contains("id=\"walltime\""));
    // By name too.
    assert_eq!(ui.get("/run/chart-run").status, 200);

    let doc = ui.get(&format!("/api/run/{id}")).json();
    assert_eq!(doc["name"], "chart-run");
    assert_eq!(doc["config"]["optimizer"], "adam");
    assert_eq!(doc["summary"]["best_acc"], 0.98);
    assert_eq!(doc["steps"], 50);
    let loss = &doc["metrics"][0];
    assert_eq!(loss["key"], "loss");
    assert_eq!(loss["count"], 50);
    assert_eq!(loss["series"].as_array().map(Vec::len), Some(50));
    assert_eq!(loss["series"][0]["mean"], 1.0);
}

#[test]
fn strings_from_runs_are_escaped() {
    let root = temp_root();
    let evil = "<script>alert(1)</script>";
    // A config value and a summary key with markup too.
    let extra = [
        Record::Config {
            json: serde_json::json!({"note": "</td><script>alert(4)</script>"}).to_string(),
        },
        Record::Summary {
            key: "<i>sum</i>".into(),
            json: "\"<script>alert(5)</script>\"".into(),
        },
    ];
    Fake {
        id: "evil0001",
        name: evil,
        project: "<b>proj</b>",
        group: Some("g\"><script>alert(2)</script>"),
        rank: Some((0, 1)),
        metrics: &["<img src=x onerror=alert(3)>"],
        extra: &extra,
        ..Fake::default()
    }
    .write(root.path());
    let ui = Ui::start(root.path());

    let group_url = "/group/g%22%3E%3Cscript%3Ealert%282%29%3C%2Fscript%3E";
    for path in ["/", "/run/evil0001", group_url] {
        let page = ui.get(path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        // The page's own script is the only script element.
        assert_eq!(page.body.matches("<script").count(), 1, "{path}");
        assert!(!page.body.contains("<img"), "{path}");
        assert!(!page.body.contains("<b>proj"), "{path}");
    }
    let runs = ui.get("/");
    assert!(runs.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let run = ui.get("/run/evil0001");
    assert!(run.body.contains("&lt;/td&gt;&lt;script&gt;alert(4)"));
    assert!(run.body.contains("&lt;i&gt;sum&lt;/i&gt;"));
    assert!(run.body.contains("&lt;img src=x onerror=alert(3)&gt;"));
    // The link to the group is percent-encoded, and it works.
    assert!(runs.body.contains(group_url));
    // JSON keeps the strings as they are (it is data, not markup).
    let doc = ui.get("/api/run/evil0001").json();
    assert_eq!(doc["name"], evil);
}

#[test]
fn ids_and_names_in_urls_never_reach_outside_the_root() {
    let root = temp_root();
    let elsewhere = temp_root();
    let outside = Fake {
        id: "outside1",
        name: "secret-outside-run",
        ..Fake::default()
    }
    .write(elsewhere.path());
    Fake {
        id: "inside01",
        name: "inside-run",
        ..Fake::default()
    }
    .write(root.path());
    let ui = Ui::start(root.path());

    let outside_abs = outside.display().to_string().replace('/', "%2F");
    let rel = format!(
        "..%2F{}%2F{}",
        elsewhere
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default(),
        outside
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    );
    for path in [
        format!("/run/{outside_abs}"),
        format!("/api/run/{outside_abs}"),
        format!("/run/{rel}"),
        "/run/..%2F..%2F..%2Fetc%2Fpasswd".into(),
        "/api/run/%2Fetc%2Fpasswd".into(),
        "/run/..".into(),
        "/run/latest-run".into(),
        "/group/..%2F..".into(),
        "/api/group/%2Fetc".into(),
        "/../../../../etc/passwd".into(),
        "/run/../../../etc/passwd".into(),
        "/run/outside1".into(),
    ] {
        let r = ui.get(&path);
        assert!(
            r.status == 404 || r.status == 400,
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(!r.body.contains("secret-outside-run"), "{path}");
        assert!(!r.body.contains("root:x:0"), "{path}");
    }
    assert_eq!(ui.get("/run/inside01").status, 200);
    let missing = ui.get("/api/run/nosuchrun");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().is_some());
}

#[test]
fn corrupt_and_half_written_runs_show_what_is_readable() {
    let root = temp_root();
    // A torn tail: the last frame cut in half.
    let torn = Fake {
        id: "torn0001",
        name: "torn-run",
        group: Some("mixed"),
        rank: Some((0, 2)),
        steps: 2000,
        ..Fake::default()
    }
    .write(root.path());
    let log = torn.join(store::LOG_FILE);
    let len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    std::fs::File::options()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(len - 40))
        .unwrap_or_else(|e| panic!("{e}"));
    // A flipped byte in the middle of the log.
    let flipped = Fake {
        id: "flip0001",
        name: "flipped-run",
        group: Some("mixed"),
        rank: Some((1, 2)),
        steps: 3000,
        ..Fake::default()
    }
    .write(root.path());
    let log = flipped.join(store::LOG_FILE);
    let mut bytes = std::fs::read(&log).unwrap_or_else(|e| panic!("{e}"));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&log, bytes).unwrap_or_else(|e| panic!("{e}"));
    // meta.json that is not JSON, and a log that is not a ranklog log.
    let bad_meta = Fake {
        id: "badmeta1",
        name: "bad-meta",
        ..Fake::default()
    }
    .write(root.path());
    std::fs::write(bad_meta.join(store::META_FILE), b"{ not json")
        .unwrap_or_else(|e| panic!("{e}"));
    let bad_log = Fake {
        id: "badlog01",
        name: "bad-log-run",
        ..Fake::default()
    }
    .write(root.path());
    std::fs::write(bad_log.join(store::LOG_FILE), b"GARBAGE GARBAGE")
        .unwrap_or_else(|e| panic!("{e}"));
    // A run directory with nothing in it (a run that is just starting).
    std::fs::create_dir(root.path().join("run-20260101_000000-empty001"))
        .unwrap_or_else(|e| panic!("{e}"));
    let ui = Ui::start(root.path());

    let runs = ui.get("/");
    assert_eq!(runs.status, 200, "{}", runs.body);
    for needle in [
        "torn-run",
        "flipped-run",
        "badmeta1",
        "bad-log-run",
        "empty001",
    ] {
        assert!(runs.body.contains(needle), "{needle} not listed");
    }
    assert!(runs.body.contains("unreadable"));
    let listed = ui.get("/api/runs").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(5));
    let unreadable = ui.get("/api/runs?state=unreadable").json();
    let mut ids: Vec<&str> = unreadable
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, ["badlog01", "badmeta1", "empty001"]);
    // A run whose meta.json is readable keeps its project for the filter.
    let by_project = ui.get("/?project=p&state=unreadable");
    assert!(by_project.body.contains("bad-log-run") && !by_project.body.contains("empty001"));

    let torn_page = ui.get("/run/torn0001");
    assert_eq!(torn_page.status, 200);
    assert!(torn_page.body.contains("torn tail"), "{}", torn_page.body);
    assert!(torn_page.body.contains("data-metric=\"loss\""));
    let flip_page = ui.get("/run/flip0001");
    assert_eq!(flip_page.status, 200);
    assert!(flip_page.body.contains("checksum"), "{}", flip_page.body);
    let doc = ui.get("/api/run/flip0001").json();
    let steps = doc["steps"].as_u64().unwrap_or(0);
    assert!(steps > 0 && steps < 3000, "readable prefix: {steps}");

    for (path, needle) in [
        ("/run/badmeta1", "cannot"),
        ("/run/badlog01", "not a readable ranklog run log"),
        ("/run/empty001", "cannot"),
    ] {
        let r = ui.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.contains("class=\"notice"), "{path}");
        assert!(r.body.contains(needle), "{path}: {}", r.body);
        assert_eq!(ui.get(&format!("/api{path}")).json()["state"], "unreadable");
    }

    let group = ui.get("/group/mixed");
    assert_eq!(group.status, 200, "{}", group.body);
    assert!(group.body.contains("damaged log"));
    assert_eq!(group.body.matches("<tr class=\"rank").count(), 2);
    // The server still answers.
    assert_eq!(ui.get("/api/runs").status, 200);
}

#[test]
fn group_page_shows_ranks_flags_and_one_chart_per_metric() {
    let root = temp_root();
    let metrics: &[&str] = &["loss", "lr", "grad_norm"];
    for rank in 0..4u32 {
        let id = format!("grp{rank:05}");
        let name = format!("job-rank{rank}");
        Fake {
            id: &id,
            name: &name,
            group: Some("job"),
            rank: Some((rank, 5)),
            steps: if rank == 2 { 400 } else { 1000 },
            metrics,
            finished: rank != 2,
            ..Fake::default()
        }
        .write(root.path());
    }
    let ui = Ui::start(root.path());
    let page = ui.get("/group/job");
    assert_eq!(page.status, 200, "{}", page.body);
    for rank in 0..4 {
        assert!(
            page.body
                .contains(&format!("data-rank=\"{rank}\" data-state=")),
            "rank {rank} row"
        );
    }
    assert_eq!(page.body.matches("<tr class=\"rank").count(), 4);
    assert!(page.body.contains("data-rank=\"2\" data-state=\"crashed\""));
    assert!(page.body.contains("crashed: rank 2 (job-rank2)"));
    assert!(page.body.contains("missing: rank 4 (world size 5)"));
    assert!(page.body.contains("straggler: rank 2"));
    assert_eq!(page.body.matches("<figure class=\"chart\"").count(), 3);
    for m in metrics {
        assert!(page.body.contains(&format!("data-metric=\"{m}\"")));
    }
    // Every rank a thin line in every chart, plus the mean and the band.
    assert_eq!(page.body.matches("<path class=\"line").count(), 12);
    assert_eq!(page.body.matches("<path class=\"mean\"").count(), 3);
    assert_eq!(page.body.matches("<path class=\"band\"").count(), 3);

    let doc = ui.get("/api/group/job").json();
    assert_eq!(doc["ranks"].as_array().map(Vec::len), Some(4));
    assert_eq!(doc["crashed"], serde_json::json!([2]));
    assert_eq!(doc["missing"], serde_json::json!([4]));
    assert_eq!(doc["stragglers"][0]["rank"], 2);
    let loss = &doc["metrics"][0];
    assert_eq!(loss["key"], "loss");
    assert_eq!(loss["last"]["step"], 999);
    assert_eq!(loss["last"]["count"], 3);
    let n = loss["series"].as_array().map_or(0, Vec::len);
    assert!(n > 0 && n <= 240, "down-sampled to {n} points");
    assert_eq!(loss["ranks"].as_array().map(Vec::len), Some(4));

    assert_eq!(ui.get("/group/nosuch").status, 404);
    assert_eq!(ui.get("/api/group/nosuch").status, 404);
}

#[test]
fn page_size_does_not_grow_with_steps() {
    let size = |steps: u64| {
        let root = temp_root();
        for rank in 0..2u32 {
            let id = format!("size{rank:04}");
            Fake {
                id: &id,
                group: Some("size"),
                rank: Some((rank, 2)),
                steps,
                metrics: &["a", "b"],
                ..Fake::default()
            }
            .write(root.path());
        }
        let ui = Ui::start(root.path());
        let page = ui.get("/group/size");
        assert_eq!(page.status, 200);
        let run = ui.get("/run/size0000");
        assert_eq!(run.status, 200);
        (page.body.len(), run.body.len())
    };
    // 32 times the steps: the same number of points per line.
    let (group_small, run_small) = size(2_000);
    let (group_big, run_big) = size(64_000);
    assert!(
        group_big * 10 < group_small * 12,
        "group page {group_small} -> {group_big} bytes"
    );
    assert!(
        run_big * 10 < run_small * 12,
        "run page {run_small} -> {run_big} bytes"
    );
}

#[test]
fn live_fragments_follow_a_running_run() {
    let root = temp_root();
    let run =
        ranklog::init(offline(root.path()).name("live-run")).unwrap_or_else(|e| panic!("{e}"));
    run.log([("loss", 1.0)]).unwrap_or_else(|e| panic!("{e}"));
    run.flush().unwrap_or_else(|e| panic!("{e}"));
    let id = run.id().to_string();
    let ui = Ui::start(root.path());

    let part = ui.get(&format!("/run/{id}?partial=1"));
    assert_eq!(part.status, 200);
    assert!(!part.body.contains("<html"), "a fragment, not a page");
    assert!(part.body.contains("data-poll=\"1\""), "running: poll");
    assert!(part.body.contains("running"));
    assert!(part.body.contains("1 (last step 0)"));

    for i in 0..9 {
        run.log([("loss", 1.0 / f64::from(i + 2))])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    run.finish().unwrap_or_else(|e| panic!("{e}"));
    let part = ui.get(&format!("/run/{id}?partial=1"));
    assert!(part.body.contains("10 (last step 9)"), "{}", part.body);
    assert!(
        part.body.contains("data-poll=\"0\""),
        "finished: stop polling"
    );
    let runs = ui.get("/?partial=1");
    assert!(runs.body.contains("finished") && !runs.body.contains("<html"));
}

#[test]
fn requests_for_other_hosts_and_unknown_paths_are_refused() {
    let root = temp_root();
    let ui = Ui::start(root.path());
    let empty = ui.get("/");
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("no runs"));
    assert_eq!(ui.get_as("/", "attacker.example:6007").status, 421);
    assert_eq!(ui.get_as("/", "localhost").status, 200);
    let nf = ui.get("/nope/%3Cscript%3E");
    assert_eq!(nf.status, 404);
    assert_eq!(nf.body.matches("<script").count(), 1);
    // A request line with raw markup is not even HTTP.
    assert_eq!(ui.get("/nope/<script>").status, 400);
    assert_eq!(ui.get("/api/nope").status, 404);
}

#[test]
fn other_addresses_need_allow_remote_and_print_a_warning() {
    let root = temp_root();
    let out = Command::new(ranklog_bin())
        .args(["ui", "--host", "0.0.0.0", "--port", "0", "--dir"])
        .arg(root.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");

    let mut child = Command::new(ranklog_bin())
        .args([
            "ui",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--allow-remote",
            "--dir",
        ])
        .arg(root.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stderr = BufReader::new(child.stderr.take().unwrap_or_else(|| panic!("no stderr")));
    let mut first = String::new();
    let _ = stderr.read_line(&mut first);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("warning") && first.contains("not a loopback address"),
        "{first}"
    );
}

#[test]
fn a_port_in_use_is_reported_with_what_to_do() {
    let root = temp_root();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port()
        .to_string();
    let out = Command::new(ranklog_bin())
        .args(["ui", "--port", &port, "--dir"])
        .arg(root.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ranklog: cannot serve the web page on 127.0.0.1:")
            && err.contains("--port"),
        "{err}"
    );
}

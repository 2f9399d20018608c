//! Server faults around a real MLflow server (opt-in, slow): zero lost, zero
//! duplicated.
//!
//! A fault-injecting HTTP proxy ([`Proxy`]) sits between ranklog and a real
//! `mlflow server` (SQLite, 127.0.0.1) started by the helpers of
//! `interop_mlflow`. It is switched, during a run, between passing requests
//! through and the faults of [`Fault`]: 500 with and without the request
//! applied, 429 with and without `Retry-After`, a response held past the
//! client's timeout (applied, then retried: the duplicate trap), a connection
//! dropped after the request was applied (answer lost), and refused
//! connections (server stopped); the real server is also killed and
//! restarted behind it. The server is then queried directly, not through the
//! proxy, and must hold exactly what the run log holds.
//!
//! Run through `scripts/interop-mlflow.sh` (the `interop_mlflow` filter
//! matches this module).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ranklog::store::{self, RunState};
use ranklog::sync::SyncState;
use ranklog::{Mode, Settings};
use serde_json::json;

use crate::interop_mlflow::{expected, free_port, sync_cli, verify, Server};
use crate::util::{assert_success, ranklog_bin, temp_root};

/// The client timeout the tests give ranklog; [`Fault::Slow`] holds an
/// answer longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Fault::Slow`] holds an answer.
const HOLD: Duration = Duration::from_millis(6500);
/// How long a [`Fault::Refuse`] rule keeps the port closed.
const REFUSE_FOR: Duration = Duration::from_millis(1500);

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    /// Forward it and return the server's answer.
    Pass,
    /// Answer 500 without forwarding it.
    Error500,
    /// Forward it (the server applies it), then answer 500.
    Error500After,
    /// Answer 429 without forwarding it, with `Retry-After: <n>` if given.
    TooMany(Option<u32>),
    /// Forward it, then hold the answer past the client's timeout.
    Slow,
    /// Forward it, then close the connection without an answer.
    DropAfter,
    /// The server is stopped: connections are refused. As a standing mode,
    /// the port is closed; as a rule, this request's connection is closed
    /// unanswered and the port stays closed for [`REFUSE_FOR`].
    Refuse,
}

impl Fault {
    /// Whether the server applied a request that met this fault.
    fn forwards(self) -> bool {
        matches!(
            self,
            Fault::Pass | Fault::Error500After | Fault::Slow | Fault::DropAfter
        )
    }
}

/// A one-shot fault for the next request whose path contains `path`.
struct Rule {
    path: &'static str,
    fault: Fault,
}

#[derive(Default)]
struct ProxyState {
    /// The standing mode for requests no rule matches.
    mode: Option<Fault>,
    /// One-shot rules, taken in order.
    rules: Vec<Rule>,
    /// Requests seen, by API path and what was done to them.
    counts: BTreeMap<(String, Fault), u64>,
    /// Requests the upstream server failed to answer (it was down).
    upstream_down: u64,
    /// Per request (path and body hash): times sent, times forwarded.
    bodies: std::collections::HashMap<(String, u64), (u64, u64)>,
}

/// A fault-injecting HTTP/1.1 proxy in front of a real MLflow server.
pub(crate) struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub(crate) fn start(upstream: String) -> Proxy {
        let port = free_port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = bind(port);
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || accept_loop(listener, port, upstream, st, sp));
        Proxy {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the standing mode.
    pub(crate) fn set(&self, fault: Fault) {
        self.state.lock().unwrap().mode = Some(fault);
    }

    /// Adds one-shot faults for the next requests whose path contains `path`.
    pub(crate) fn rules(&self, path: &'static str, faults: &[Fault]) {
        let mut s = self.state.lock().unwrap();
        for &fault in faults {
            s.rules.push(Rule { path, fault });
        }
    }

    fn rules_left(&self) -> usize {
        self.state.lock().unwrap().rules.len()
    }

    /// Requests that met `fault`, on every path.
    pub(crate) fn count(&self, fault: Fault) -> u64 {
        let s = self.state.lock().unwrap();
        s.counts
            .iter()
            .filter(|((_, f), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    /// Waits until `n` requests met `fault`.
    fn wait_count(&self, fault: Fault, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(240);
        while self.count(fault) < n {
            assert!(
                Instant::now() < deadline,
                "only {} requests met {fault:?} in 240 s",
                self.count(fault)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A table of what the proxy did, for the report.
    pub(crate) fn report(&self, what: &str) -> String {
        let s = self.state.lock().unwrap();
        let mut out = format!("proxy report ({what}):\n");
        for ((path, fault), n) in &s.counts {
            out.push_str(&format!("  {:<20} {path:<28} {n}\n", format!("{fault:?}")));
        }
        let faulted: u64 = s
            .counts
            .iter()
            .filter(|((_, f), _)| *f != Fault::Pass)
            .map(|(_, n)| n)
            .sum();
        // A request sent again is a retry; one forwarded again reached the
        // server a second time after it had applied it (the duplicate trap).
        let resent: u64 = s.bodies.values().map(|(n, _)| n.saturating_sub(1)).sum();
        let reapplied: u64 = s.bodies.values().map(|(_, f)| f.saturating_sub(1)).sum();
        out.push_str(&format!(
            "  faulted requests {faulted}, retries (same request sent again) {resent}, \
             applied again {reapplied}, upstream down {}\n",
            s.upstream_down
        ));
        out
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn bind(port: u16) -> TcpListener {
    // std sets SO_REUSEADDR, so the port can be taken again at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                l.set_nonblocking(true).expect("nonblocking");
                return l;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot bind port {port}: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    port: u16,
    upstream: String,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()
        .expect("upstream client");
    let mut listener = Some(listener);
    while !stop.load(Ordering::SeqCst) {
        let refusing = state.lock().unwrap().mode == Some(Fault::Refuse);
        if refusing {
            // Closing the listener makes connects fail with ECONNREFUSED.
            listener = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let l = listener.get_or_insert_with(|| bind(port));
        match l.accept() {
            Ok((conn, _)) => {
                let (st, sp, http, up) =
                    (state.clone(), stop.clone(), http.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &up, &http, &st, &sp));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// One HTTP request as read from the client.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request; `None` when the client closed, or the port is to be
/// closed (standing [`Fault::Refuse`]): a stopped server drops its idle
/// connections too.
fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    state: &Mutex<ProxyState>,
    stop: &AtomicBool,
) -> Option<Request> {
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .ok()?;
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_string();
            let target = first.next()?.to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some(Request {
                    method,
                    target,
                    headers,
                    body,
                });
            }
        }
        if stop.load(Ordering::SeqCst) || state.lock().unwrap().mode == Some(Fault::Refuse) {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    http: &reqwest::blocking::Client,
    state: &Mutex<ProxyState>,
    stop: &AtomicBool,
) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut conn, &mut buf, state, stop) {
        let path = req
            .target
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_start_matches("/api/2.0/mlflow/")
            .to_string();
        let fault = {
            let mut s = state.lock().unwrap();
            let fault = match s.rules.iter().position(|r| path.contains(r.path)) {
                Some(i) => s.rules.remove(i).fault,
                None => s.mode.unwrap_or(Fault::Pass),
            };
            *s.counts.entry((path.clone(), fault)).or_default() += 1;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&req.target, &mut h);
            std::hash::Hash::hash(&req.body, &mut h);
            let key = (path.clone(), std::hash::Hasher::finish(&h));
            s.bodies.entry(key.clone()).or_default().0 += 1;
            (fault, key)
        };
        let (fault, key) = fault;
        let answer = if fault.forwards() {
            match forward(http, upstream, &req) {
                Some(a) => {
                    if let Some(seen) = state.lock().unwrap().bodies.get_mut(&key) {
                        seen.1 += 1;
                    }
                    Some(a)
                }
                None => {
                    // The server behind is down: so is the connection.
                    state.lock().unwrap().upstream_down += 1;
                    return;
                }
            }
        } else {
            None
        };
        let sent = match fault {
            Fault::Pass => {
                let (status, ctype, body) = answer.unwrap_or_default();
                respond(&mut conn, status, &ctype, &body, None)
            }
            Fault::Error500 | Fault::Error500After => respond(
                &mut conn,
                500,
                "application/json",
                br#"{"error_code":"INTERNAL_ERROR","message":"injected fault"}"#,
                None,
            ),
            Fault::TooMany(after) => respond(
                &mut conn,
                429,
                "text/plain",
                b"Too Many Requests (injected)",
                after,
            ),
            Fault::Slow => {
                std::thread::sleep(HOLD);
                let (status, ctype, body) = answer.unwrap_or_default();
                let _ = respond(&mut conn, status, &ctype, &body, None);
                false
            }
            Fault::DropAfter => false,
            Fault::Refuse => {
                let mut s = state.lock().unwrap();
                if s.mode != Some(Fault::Refuse) {
                    let before = s.mode;
                    s.mode = Some(Fault::Refuse);
                    drop(s);
                    let _ = conn.shutdown(Shutdown::Both);
                    reopen_after(state, before);
                }
                false
            }
        };
        if !sent {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Reopens the port [`REFUSE_FOR`] after a [`Fault::Refuse`] rule closed it.
fn reopen_after(state: &Mutex<ProxyState>, before: Option<Fault>) {
    // Sleeps on this connection's thread, whose connection is closed.
    std::thread::sleep(REFUSE_FOR);
    let mut s = state.lock().unwrap();
    if s.mode == Some(Fault::Refuse) {
        s.mode = before;
    }
}

/// Sends `req` to the real server: status, content type, body; `None` if
/// the server did not answer.
fn forward(
    http: &reqwest::blocking::Client,
    upstream: &str,
    req: &Request,
) -> Option<(u16, String, Vec<u8>)> {
    let url = format!("{upstream}{}", req.target);
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).ok()?;
    let mut r = http.request(method, url).body(req.body.clone());
    for (k, v) in &req.headers {
        if matches!(k.as_str(), "content-type" | "authorization") {
            r = r.header(k.as_str(), v.as_str());
        }
    }
    let resp = r.send().ok()?;
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = resp.bytes().ok()?.to_vec();
    Some((status, ctype, body))
}

fn respond(
    conn: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    retry_after: Option<u32>,
) -> bool {
    let reason = match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).is_ok() && conn.write_all(body).is_ok() && conn.flush().is_ok()
}

/// Settings of an online run through `proxy` with small timeouts.
fn online(root: &Path, project: &str, proxy: &Proxy) -> Settings {
    Settings::new()
        .project(project)
        .dir(root)
        .mode(Mode::Online)
        .tracking_uri(proxy.uri())
        .silent(true)
        .capture_git(false)
        .flush_interval(Duration::from_millis(20))
        .upload_request_timeout(REQUEST_TIMEOUT)
        .upload_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .reinit(ranklog::Reinit::CreateNew)
}

/// Environment of a `ranklog sync` with the same small timeouts.
fn sync_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS", "5000"),
        ("RANKLOG_UPLOAD_BACKOFF_MIN_MS", "50"),
        ("RANKLOG_UPLOAD_BACKOFF_MAX_MS", "500"),
    ]
}

fn acked(dir: &Path) -> u64 {
    SyncState::load(dir)
        .ok()
        .flatten()
        .map(|s| s.acked_offset)
        .unwrap_or(0)
}

fn log_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(store::LOG_FILE))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Waits until the live upload has acknowledged the whole log as it is.
fn wait_caught_up(dir: &Path) {
    let want = log_len(dir);
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked(dir) < want {
        assert!(
            Instant::now() < deadline,
            "the upload did not catch up in 300 s ({} of {want})",
            acked(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Logs steps `range` of the deterministic run: three metrics a step.
fn log_steps(run: &ranklog::Run, range: std::ops::Range<u64>) {
    for step in range {
        let x = step as f64;
        run.log_at(
            step,
            [
                ("loss", 1.0 / (1.0 + x)),
                ("acc", x / (x + 7.0)),
                ("lr", 1e-3 * 0.999f64.powf(x)),
            ],
        )
        .expect("log");
    }
    run.flush().expect("flush");
}

/// Every metric point, param and tag of the run once; no second run.
fn check_points(dir: &Path, steps: u64) {
    let e = expected(dir);
    let points: usize = e.metrics.values().map(Vec::len).sum();
    eprintln!(
        "run {}: {points} points, {} params, {} summary keys in the log",
        e.id,
        e.params.len(),
        e.summary.len()
    );
    for key in ["loss", "acc", "lr"] {
        assert_eq!(
            e.metrics.get(key).map(Vec::len),
            Some(steps as usize),
            "the log holds every {key}"
        );
    }
}

/// An online run while the proxy cycles through every fault, and one-shot
/// faults on the requests that are not plain metric batches (experiment and
/// run creation, the end status). `finish` completes, and the server holds
/// every point, param and tag once, in one run.
#[test]
#[ignore = "needs a real MLflow server: scripts/interop-mlflow.sh"]
fn online_run_through_server_faults_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut server = Server::start(false);
    let proxy = Proxy::start(server.uri());
    // Requests that must not be applied twice, or that are applied and then
    // look failed.
    proxy.rules("experiments/create", &[Fault::Error500After]);
    proxy.rules("experiments/get-by-name", &[Fault::Slow]);
    // The run is created, its answer lost: sending `runs/create` again
    // would make a second run.
    proxy.rules("runs/search", &[Fault::Error500]);
    proxy.rules("runs/create", &[Fault::DropAfter]);
    proxy.rules("runs/update", &[Fault::Slow, Fault::Error500After]);
    let root = temp_root();
    let run = ranklog::init(
        online(root.path(), "faults-online", &proxy)
            .upload_timeout(Duration::from_secs(240))
            .config(json!({"lr": 0.001, "opt": {"name": "adam"}})),
    )
    .expect("init");
    let dir = run.dir().expect("dir").to_path_buf();
    let mut step = 0u64;
    log_steps(&run, step..500);
    step = 500;
    wait_caught_up(&dir);
    let faults = [
        Fault::Error500,
        Fault::Error500After,
        Fault::TooMany(None),
        Fault::TooMany(Some(1)),
        Fault::Slow,
        Fault::DropAfter,
    ];
    for (i, &fault) in faults.iter().enumerate() {
        let t = Instant::now();
        let met = proxy.count(fault);
        proxy.set(fault);
        // Metrics, a param and a tag while the fault stands.
        log_steps(&run, step..step + 700);
        step += 700;
        run.update_config(json!({ format!("phase{i}"): format!("{fault:?}") }))
            .expect("config");
        run.summary(&format!("phase{i}"), i as f64)
            .expect("summary");
        run.summary("best", step as f64).expect("summary");
        run.flush().expect("flush");
        // Batches met the fault, and were retried into it again.
        proxy.wait_count(fault, met + 3);
        let len = log_len(&dir);
        assert!(
            acked(&dir) < len,
            "the phase is not acknowledged under {fault:?}"
        );
        proxy.set(Fault::Pass);
        log_steps(&run, step..step + 100);
        step += 100;
        wait_caught_up(&dir);
        eprintln!("phase {fault:?} done in {:?}", t.elapsed());
    }
    // The server stopped (port closed), then back.
    let t = Instant::now();
    proxy.set(Fault::Refuse);
    log_steps(&run, step..step + 700);
    step += 700;
    run.summary("best", step as f64).expect("summary");
    run.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(1500));
    let len = log_len(&dir);
    assert!(
        acked(&dir) < len,
        "the phase is not acknowledged while refused"
    );
    proxy.set(Fault::Pass);
    log_steps(&run, step..step + 100);
    step += 100;
    wait_caught_up(&dir);
    eprintln!("phase Refuse done in {:?}", t.elapsed());
    // The real server killed (batches may be in flight) and restarted on
    // the same port and database.
    let t = Instant::now();
    log_steps(&run, step..step + 700);
    step += 700;
    server.kill();
    log_steps(&run, step..step + 700);
    step += 700;
    server.launch();
    log_steps(&run, step..step + 100);
    step += 100;
    wait_caught_up(&dir);
    eprintln!("phase restart done in {:?}", t.elapsed());
    run.summary("final", 1.0).expect("summary");
    let t = Instant::now();
    let done = run.finish().expect("finish");
    eprintln!("finish took {:?}", t.elapsed());
    let upload = done.upload.expect("upload status");
    assert!(upload.complete, "{upload:?}");
    assert_eq!(upload.acked_bytes, upload.log_bytes);
    eprintln!("{}", proxy.report("online run"));
    check_points(&dir, step);
    // Queried directly, not through the proxy.
    verify(&server.api(None), &dir, "FINISHED");
    assert_eq!(proxy.rules_left(), 0, "every one-shot fault was met");
    eprintln!("online fault test took {:?}", started.elapsed());
}

/// `ranklog sync` of offline runs through the proxy while one-shot faults
/// meet its requests, batches and the end status included.
#[test]
#[ignore = "needs a real MLflow server: scripts/interop-mlflow.sh"]
fn sync_through_server_faults_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let server = Server::start(false);
    let proxy = Proxy::start(server.uri());
    let root = temp_root();
    let settings = || {
        Settings::new()
            .project("faults-sync")
            .dir(root.path())
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .reinit(ranklog::Reinit::CreateNew)
    };
    let run =
        ranklog::init(settings().config(json!({"batch": 64, "opt": {"beta": 0.9}}))).expect("init");
    let steps = 4000;
    for (i, chunk) in (0..steps).collect::<Vec<_>>().chunks(500).enumerate() {
        log_steps(&run, chunk[0]..chunk[0] + chunk.len() as u64);
        run.update_config(json!({ format!("k{i}"): i }))
            .expect("config");
        run.summary("best", i as f64).expect("summary");
    }
    let dir = run.finish().expect("finish").dir.expect("dir");
    check_points(&dir, steps);
    use Fault::*;
    proxy.rules("experiments/get-by-name", &[Error500, TooMany(Some(1))]);
    proxy.rules("experiments/create", &[DropAfter]);
    proxy.rules("runs/search", &[Slow, Pass, DropAfter]);
    proxy.rules("runs/create", &[Error500After]);
    proxy.rules(
        "runs/log-batch",
        &[
            Error500,
            Pass,
            Error500After,
            TooMany(None),
            Pass,
            TooMany(Some(1)),
            Slow,
            Pass,
            DropAfter,
            Refuse,
            Pass,
            Error500After,
            DropAfter,
            Slow,
        ],
    );
    proxy.rules("runs/update", &[DropAfter, Slow, Error500After]);
    let t = Instant::now();
    let out = sync_cli(root.path(), &proxy.uri(), &sync_env());
    assert_success(&out, "ranklog sync through faults");
    eprintln!("sync through faults took {:?}", t.elapsed());
    eprintln!("{}", proxy.report("ranklog sync"));
    verify(&server.api(None), &dir, "FINISHED");
    assert_eq!(proxy.rules_left(), 0, "every one-shot fault was met");
    eprintln!("sync fault test took {:?}", started.elapsed());
}

/// Faults outlast the retry budget: an online run whose server stops
/// answering (answers held forever) goes on, `finish` returns within its
/// bound with the upload incomplete and its thread gone, the log holds
/// everything; a `ranklog sync` that gives up changes nothing, and a later
/// one completes the upload exactly once.
#[test]
#[ignore = "needs a real MLflow server: scripts/interop-mlflow.sh"]
fn faults_past_the_retry_budget_leave_the_rest_to_sync() {
    let started = Instant::now();
    let server = Server::start(false);
    let proxy = Proxy::start(server.uri());
    let root = temp_root();
    let upload_timeout = Duration::from_secs(3);
    // The default client timeout (60 s): only the deadline bounds finish.
    let run = ranklog::init(
        Settings::new()
            .project("faults-budget")
            .dir(root.path())
            .mode(Mode::Online)
            .tracking_uri(proxy.uri())
            .silent(true)
            .capture_git(false)
            .flush_interval(Duration::from_millis(20))
            .upload_timeout(upload_timeout)
            .upload_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .reinit(ranklog::Reinit::CreateNew)
            .config(json!({"depth": 4})),
    )
    .expect("init");
    let dir = run.dir().expect("dir").to_path_buf();
    log_steps(&run, 0..500);
    wait_caught_up(&dir);
    // From now on every answer is held far past the upload deadline.
    proxy.set(Fault::Slow);
    log_steps(&run, 500..2000);
    run.summary("best", 0.5).expect("summary");
    proxy.wait_count(Fault::Slow, 1);
    let t = Instant::now();
    let done = run.finish().expect("finish");
    let took = t.elapsed();
    eprintln!("finish with the server hanging took {took:?}");
    let upload = done.upload.expect("upload status");
    assert!(!upload.complete, "{upload:?}");
    assert!(upload.error.is_some(), "{upload:?}");
    assert!(upload.acked_bytes < upload.log_bytes, "{upload:?}");
    // finish's bound: the upload timeout and 2 s for a request in flight
    // (plus slack for a loaded machine; a hang would be 60 s or more).
    assert!(
        took < upload_timeout + Duration::from_secs(2) + Duration::from_secs(20),
        "finish took {took:?}"
    );
    // Nothing lost locally: the run is finished and every point is in the log.
    assert_eq!(store::info(&dir).expect("info").state, RunState::Finished);
    check_points(&dir, 2000);
    // The upload thread is gone (it held the upload lock): a sync that gives
    // up on a stopped server can take the lock, and acknowledges nothing.
    proxy.set(Fault::Refuse);
    let before = acked(&dir);
    let out = Command::new(ranklog_bin())
        .args(["sync", "--all", "--retry-for", "2", "--dir"])
        .arg(root.path())
        .args(["--tracking-uri", &proxy.uri()])
        .env("RANKLOG_CONFIG_DIR", root.path().join(".config"))
        .envs(sync_env())
        .output()
        .expect("ranklog sync");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "sync must fail while refused: {text}"
    );
    assert!(!text.contains("already being uploaded"), "{text}");
    assert!(
        text.contains("refused") || text.contains("unavailable"),
        "{text}"
    );
    assert_eq!(acked(&dir), before);
    // The server back: a later sync completes the upload exactly once.
    proxy.set(Fault::Pass);
    let out = sync_cli(root.path(), &proxy.uri(), &sync_env());
    assert_success(&out, "ranklog sync after the faults");
    eprintln!("{}", proxy.report("past the budget"));
    verify(&server.api(None), &dir, "FINISHED");
    eprintln!("budget fault test took {:?}", started.elapsed());
}

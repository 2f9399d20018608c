//! Network faults under the single-writer queue, with real processes: the
//! owner's port closed (FIN), a reset connection (RST), and a half-open
//! connection (rank 0 frozen with SIGSTOP), over TCP and ipc. Workers must
//! follow their policy within their documented bound, and what reached rank 0
//! before the fault must be in the run.
//!
//! A fault-injecting TCP proxy sits between the workers and rank 0 for the
//! FIN and RST cases; the SIGSTOP cases connect directly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ranklog::store::{self, RunState};
use ranklog::{Error, Mode, Settings};

use crate::util::{child, is_child, only_run, ranklog, temp_root};

/// The stall timeout the ranks of these tests run with (seconds).
const STALL_S: u64 = 3;
/// Steps every worker logs, slowly, before the fault.
const BEFORE: u64 = 50;
/// How long a `drop_newest` worker keeps logging at full speed after the fault.
const FAST_S: u64 = 3;
/// Slack on top of every bound: a busy 2-core CI machine, debug builds.
const SLACK: Duration = Duration::from_secs(10);

/// Not a test: the body of a rank when started by the tests below.
///
/// Rank 0 logs `loss = step` every 2 ms until the file `FAULT_END` exists,
/// then finishes. Worker r logs `loss = (r + 1) * step` every 2 ms; once the
/// file `FAULT_GO` exists (the fault is in place) it logs at full speed:
/// under `block` until `log` fails, under `drop_newest` for `FAST_S` s.
/// It prints what happened and how long its `log` and `finish` calls took.
#[test]
fn fault_rank() {
    if !is_child() || std::env::var_os("FAULT_GO").is_none() {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} unset"));
    let rank: u64 = var("RANK").parse().unwrap_or_else(|e| panic!("{e}"));
    let go = PathBuf::from(var("FAULT_GO"));
    let end = PathBuf::from(var("FAULT_END"));
    let drop_newest = std::env::var("RANKLOG_DROP_POLICY").as_deref() == Ok("drop_newest");
    let run = match ranklog::init(
        Settings::new()
            .project("faults")
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false),
    ) {
        Ok(r) => r,
        Err(e) => {
            println!("INIT FAILED {e}");
            std::process::exit(3);
        }
    };
    println!("RUN ID {}", run.id());
    if rank == 0 {
        let mut step = 0u64;
        while !end.exists() {
            if let Err(e) = run.log([("loss", step as f64)]) {
                panic!("rank 0 log failed: {e}");
            }
            step += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        match run.finish() {
            Ok(_) => println!("FINISHED"),
            Err(e) => panic!("rank 0 finish failed: {e}"),
        }
        return;
    }
    let factor = (rank + 1) as f64;
    let mut fault_at: Option<Instant> = None;
    let mut max_log = Duration::ZERO;
    for step in 0u64.. {
        if fault_at.is_none() && go.exists() {
            fault_at = Some(Instant::now());
        }
        let t = Instant::now();
        let result = run.log([("loss", factor * step as f64)]);
        max_log = max_log.max(t.elapsed());
        match result {
            Ok(()) => {}
            Err(Error::OwnerGone { .. }) => {
                println!("OWNER GONE at step {step}");
                break;
            }
            Err(Error::OwnerUnresponsive { .. }) => {
                println!("OWNER UNRESPONSIVE at step {step}");
                break;
            }
            Err(e) => {
                println!("LOG ERROR {e}");
                break;
            }
        }
        if step == BEFORE {
            println!("READY");
        }
        match fault_at {
            None => std::thread::sleep(Duration::from_millis(2)),
            Some(t) if drop_newest && t.elapsed() >= Duration::from_secs(FAST_S) => break,
            Some(t) if t.elapsed() >= Duration::from_secs(120) => {
                println!("NEVER FAILED");
                break;
            }
            Some(_) => {}
        }
    }
    println!("MAX LOG MS {}", max_log.as_millis());
    let t = Instant::now();
    let done = run.finish();
    println!("FINISH MS {}", t.elapsed().as_millis());
    match done {
        Ok(f) => println!("FINISHED dropped={}", f.dropped),
        Err(e) => println!("FINISH ERROR {e}"),
    }
}

/// A rank process whose output is collected as it comes.
struct Proc {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Proc {
    fn spawn(env: &[(&str, String)]) -> Proc {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut cmd = child("queue_faults::fault_rank", &env, None);
        cmd.env_remove("RANKLOG_GROUP")
            .env_remove("RANKLOG_STRATEGY")
            .env_remove("RANKLOG_DROP_POLICY")
            .env_remove("RANKLOG_TRANSPORT");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a rank: {e}"));
        let collect = |pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            text
        };
        let out = collect(Box::new(child.stdout.take().expect("piped stdout")));
        let err = collect(Box::new(child.stderr.take().expect("piped stderr")));
        Proc {
            child,
            out,
            err,
            exited: None,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn wait_for(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stdout().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} within {within:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit, at most `within`; how long it took.
    fn wait_exit(&mut self, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                self.exited = Some(status);
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "still running after {within:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn assert_clean_exit(&self, who: &str) {
        let status = self.exited.expect("waited");
        assert!(
            status.success() && !self.stderr().contains("panicked"),
            "{who} exited with {status}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// A number printed after `label` on stdout.
    fn number(&self, label: &str) -> u64 {
        let out = self.stdout();
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in\n{out}\n{}", self.stderr()))
    }

    /// The count of rows this worker said did not reach rank 0.
    fn undelivered(&self) -> u64 {
        let err = self.stderr();
        err.lines()
            .filter(|l| l.contains("did not reach rank 0"))
            .filter_map(|l| {
                l.split("warning: ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .next()
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // SAFETY: signals a child process this test started.
            unsafe { libc::kill(self.pid(), libc::SIGCONT) };
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const FORWARD: u8 = 0;
const FIN: u8 = 1;
const RST: u8 = 2;

/// A TCP proxy between the workers and rank 0 that can close everything
/// with FIN (rank 0's port closed) or RST (connections reset).
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let m = mode.clone();
        std::thread::spawn(move || {
            // The listener goes away with the first fault.
            while m.load(Ordering::Acquire) == FORWARD {
                match listener.accept() {
                    Ok((worker, _)) => {
                        let Ok(owner) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let m = m.clone();
                        std::thread::spawn(move || pump(worker, owner, &m));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, mode }
    }

    fn inject(&self, fault: u8) {
        self.mode.store(fault, Ordering::Release);
    }
}

/// Forwards both ways until the proxy's mode says otherwise, then closes
/// both connections the way the mode asks.
fn pump(a: TcpStream, b: TcpStream, mode: &AtomicU8) {
    for s in [&a, &b] {
        let _ = s.set_nonblocking(true);
        let _ = s.set_nodelay(true);
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match mode.load(Ordering::Acquire) {
            FIN => {
                let _ = a.shutdown(std::net::Shutdown::Both);
                let _ = b.shutdown(std::net::Shutdown::Both);
                return;
            }
            RST => {
                for s in [&a, &b] {
                    let linger = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    // SAFETY: a valid socket and a correctly sized option.
                    unsafe {
                        libc::setsockopt(
                            s.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&linger as *const libc::linger).cast(),
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        )
                    };
                }
                return; // dropping both sends RST
            }
            _ => {}
        }
        let mut idle = true;
        for (mut from, mut to) in [(&a, &b), (&b, &a)] {
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    idle = false;
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        match to.write(rest) {
                            Ok(k) => rest = &rest[k..],
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                if mode.load(Ordering::Acquire) != FORWARD {
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            Err(_) => return,
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn unique_group(name: &str) -> String {
    let mut nonce = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut nonce))
        .unwrap_or_else(|e| panic!("{e}"));
    format!(
        "{name}-{}-{}",
        std::process::id(),
        u32::from_le_bytes(nonce)
    )
}

/// Steps of `rank<r>/loss` in the run log so far (a torn tail is fine).
fn rank_steps(dir: &Path) -> HashMap<u32, HashMap<u64, f64>> {
    let mut out: HashMap<u32, HashMap<u64, f64>> = HashMap::new();
    let Ok(reader) = store::Reader::open(&dir.join("run.rlog")) else {
        return out;
    };
    let mut keys = HashMap::new();
    for r in reader {
        match r {
            ranklog::Record::Key { id, name } => {
                keys.insert(id, name);
            }
            ranklog::Record::History(row) => {
                for (id, v) in &row.values {
                    let Some(rank) = keys
                        .get(id)
                        .and_then(|k: &String| k.strip_prefix("rank"))
                        .and_then(|k| k.strip_suffix("/loss"))
                        .and_then(|r| r.parse().ok())
                    else {
                        continue;
                    };
                    out.entry(rank).or_default().insert(row.step, *v);
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Rank 0's port and connections close with FIN (through the proxy).
    PortClosed,
    /// The connections are reset (through the proxy).
    Reset,
    /// Rank 0 frozen with SIGSTOP over TCP: a half-open connection.
    FrozenTcp,
    /// Rank 0 frozen with SIGSTOP over ipc.
    FrozenIpc,
}

/// What the test measured, printed for RELIABILITY.md.
struct Measured {
    exit_after_fault: Duration,
    max_log_ms: u64,
    finish_ms: u64,
    undelivered: u64,
}

/// Runs a 3-rank job (rank 1 `block`, rank 2 `drop_newest`), injects
/// `fault` once both workers' first `BEFORE` steps are in the run, and
/// checks every rank against its bound.
fn job_with_fault(fault: Fault) {
    let root = temp_root();
    let group = unique_group(&format!("{fault:?}").to_lowercase());
    let files = temp_root();
    let go = files.path().join("go");
    let end = files.path().join("end");
    let owner_port = free_port();
    let proxy = matches!(fault, Fault::PortClosed | Fault::Reset).then(|| Proxy::start(owner_port));
    let transport = if fault == Fault::FrozenIpc {
        "ipc"
    } else {
        "tcp"
    };
    let env = |rank: u32, port: u16, policy: &str| -> Vec<(&'static str, String)> {
        vec![
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("WORLD_SIZE", "3".into()),
            ("LOCAL_WORLD_SIZE", "3".into()),
            ("RANKLOG_GROUP", group.clone()),
            ("RANKLOG_STRATEGY", "single-writer".into()),
            ("RANKLOG_JOB_TOKEN", format!("token-{group}")),
            ("RANKLOG_DIR", root.path().display().to_string()),
            ("RANKLOG_TRANSPORT", transport.into()),
            ("RANKLOG_QUEUE_PORT", port.to_string()),
            ("RANKLOG_QUEUE_STALL_TIMEOUT_S", STALL_S.to_string()),
            ("RANKLOG_STRAGGLER_TIMEOUT_S", "1".into()),
            ("RANKLOG_DROP_POLICY", policy.into()),
            ("FAULT_GO", go.display().to_string()),
            ("FAULT_END", end.display().to_string()),
        ]
    };
    let worker_port = proxy.as_ref().map_or(owner_port, |p| p.port);
    let mut owner = Proc::spawn(&env(0, owner_port, "block"));
    let mut block = Proc::spawn(&env(1, worker_port, "block"));
    let mut drop = Proc::spawn(&env(2, worker_port, "drop_newest"));
    for p in [&owner, &block, &drop] {
        p.wait_for("RUN ID", Duration::from_secs(60));
    }
    block.wait_for("READY", Duration::from_secs(60));
    drop.wait_for("READY", Duration::from_secs(60));
    // What reached rank 0 before the fault: wait until it is on disk.
    let dir = only_run(root.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let seen = rank_steps(&dir);
        let has = |r: u32| seen.get(&r).is_some_and(|s| s.contains_key(&BEFORE));
        if has(1) && has(2) {
            break seen;
        }
        assert!(Instant::now() < deadline, "rows never reached the run");
        std::thread::sleep(Duration::from_millis(20));
    };

    let fault_at = Instant::now();
    match fault {
        Fault::PortClosed => proxy.as_ref().expect("proxy").inject(FIN),
        Fault::Reset => proxy.as_ref().expect("proxy").inject(RST),
        Fault::FrozenTcp | Fault::FrozenIpc => {
            // SAFETY: signals the child process this test started.
            assert_eq!(unsafe { libc::kill(owner.pid(), libc::SIGSTOP) }, 0);
        }
    }
    std::fs::write(&go, b"").unwrap_or_else(|e| panic!("{e}"));

    // Block: `log` fails within its bound, then `finish` returns.
    // DropNewest: `log` goes on for FAST_S s without waiting, then `finish`.
    let frozen = matches!(fault, Fault::FrozenTcp | Fault::FrozenIpc);
    let stall = Duration::from_secs(STALL_S);
    let block_bound = if frozen { 2 * stall } else { stall };
    let drop_bound = Duration::from_secs(FAST_S) + stall;
    block.wait_exit(block_bound + SLACK);
    let block_exit = fault_at.elapsed();
    drop.wait_exit(drop_bound + SLACK);
    let drop_exit = fault_at.elapsed();
    if frozen {
        // SAFETY: signals the child process this test started.
        assert_eq!(unsafe { libc::kill(owner.pid(), libc::SIGCONT) }, 0);
    }
    std::fs::write(&end, b"").unwrap_or_else(|e| panic!("{e}"));
    owner.wait_exit(Duration::from_secs(60));

    owner.assert_clean_exit("rank 0");
    block.assert_clean_exit("rank 1 (block)");
    drop.assert_clean_exit("rank 2 (drop_newest)");
    let expect = if frozen {
        "OWNER UNRESPONSIVE"
    } else {
        "OWNER GONE"
    };
    assert!(
        block.stdout().contains(expect),
        "rank 1 should see {expect}:\n{}\n{}",
        block.stdout(),
        block.stderr()
    );
    assert!(
        block.stdout().contains("FINISH ERROR"),
        "{}",
        block.stdout()
    );
    assert!(
        !drop.stdout().contains("OWNER") && !drop.stdout().contains("LOG ERROR"),
        "drop_newest's log must not fail:\n{}",
        drop.stdout()
    );
    // Either the worker gave up on rank 0 (one warning, then the count of
    // rows that did not reach it, and rank 0 records it as lost), or, only
    // when frozen over TCP under drop_newest, the socket took everything and
    // its goodbye with the drop count reached rank 0 once it woke up.
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    for (rank, p) in [(1u32, &block), (2, &drop)] {
        let warnings = p.stderr().matches("the owner of this run").count();
        let lost = s.lost_ranks.iter().any(|(r, _)| *r == rank);
        if p.stdout().contains("FINISH ERROR") {
            assert_eq!(
                warnings,
                1,
                "rank {rank} warned {warnings} times:\n{}\n{}",
                p.stdout(),
                p.stderr()
            );
            assert!(
                p.undelivered() > 0,
                "rank {rank} counted no drops:\n{}",
                p.stderr()
            );
            assert!(lost, "rank {rank} not lost: {:?}", s.lost_ranks);
        } else {
            assert!(
                fault == Fault::FrozenTcp && rank == 2,
                "rank {rank} finished normally after {fault:?}:\n{}",
                p.stdout()
            );
            let dropped = p.number("FINISHED dropped=");
            assert!(dropped > 0 && warnings == 0 && !lost, "{}", p.stderr());
            assert_eq!(s.dropped.get(&rank), Some(&dropped), "{:?}", s.dropped);
        }
    }
    // Never waited: the only wait of a worker's log is the stall timeout
    // (3 s); 2 s leaves room for a busy machine descheduling the process.
    let drop_max_log = drop.number("MAX LOG MS");
    assert!(
        drop_max_log < 2000,
        "a drop_newest log took {drop_max_log} ms"
    );
    let block_max_log = block.number("MAX LOG MS");
    assert!(
        Duration::from_millis(block_max_log) <= stall + SLACK,
        "a block log took {block_max_log} ms"
    );

    // The run: finished, everything from before the fault intact.
    assert_eq!(s.state, RunState::Finished);
    let after = rank_steps(&dir);
    for r in [1u32, 2] {
        let steps = &after[&r];
        for step in 0..=BEFORE {
            assert_eq!(
                steps.get(&step),
                Some(&(f64::from(r + 1) * step as f64)),
                "rank {r} step {step} (seen before the fault: {:?})",
                before[&r].get(&step)
            );
        }
    }
    let show = ranklog(&["show", &dir.display().to_string()]);
    crate::util::assert_success(&show, "ranklog show");

    for (policy, p, exit) in [
        ("block", &block, block_exit),
        ("drop_newest", &drop, drop_exit),
    ] {
        let m = Measured {
            exit_after_fault: exit,
            max_log_ms: p.number("MAX LOG MS"),
            finish_ms: p.number("FINISH MS"),
            undelivered: p.undelivered(),
        };
        eprintln!(
            "FAULT {fault:?} {policy}: exit {:.2} s after the fault, longest log {} ms, finish {} ms, {} rows counted as not delivered",
            m.exit_after_fault.as_secs_f64(),
            m.max_log_ms,
            m.finish_ms,
            m.undelivered
        );
    }
}

#[test]
fn workers_follow_their_policy_when_rank_0s_port_closes() {
    job_with_fault(Fault::PortClosed);
}

#[test]
fn workers_follow_their_policy_when_the_connection_is_reset() {
    job_with_fault(Fault::Reset);
}

#[test]
fn workers_follow_their_policy_when_rank_0_freezes_over_tcp() {
    job_with_fault(Fault::FrozenTcp);
}

#[test]
fn workers_follow_their_policy_when_rank_0_freezes_over_ipc() {
    job_with_fault(Fault::FrozenIpc);
}

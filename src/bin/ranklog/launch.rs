//! `ranklog launch`: ranklog's own one-node launcher.
//!
//! Starts `--nproc-per-node` copies of a command with torchrun's variables
//! (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `GROUP_RANK=0`,
//! `MASTER_ADDR=127.0.0.1`, `MASTER_PORT` = a free port) plus `RANKLOG_GROUP`
//! (generated when not given), `RANKLOG_STRATEGY` and a random
//! `RANKLOG_JOB_TOKEN` (single-writer workers show it to rank 0), so `ranklog::init` in
//! every rank finds its rank and group.
//!
//! - Each rank's output lines are prefixed with `[rank N]`.
//! - SIGINT, SIGTERM and SIGHUP are forwarded to every rank; a second one, or
//!   the end of the grace period, kills them.
//! - When a rank fails (non-zero exit or a signal), the others get SIGTERM,
//!   then SIGKILL after the grace period; the launcher exits with the failed
//!   rank's code (128 + N for signal N) and says which rank it was.
//! - No orphans: each rank runs in its own process group, which is killed
//!   when the rank ends, and the kernel kills every rank if the launcher
//!   itself dies (`PR_SET_PDEATHSIG`).
//!
//! At the end it prints the group view (`ranklog group`).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ranklog::Strategy;

/// Arguments of `ranklog launch`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of ranks to start on this host.
    #[arg(long, value_name = "N")]
    nproc_per_node: u32,
    /// Group key shared by the ranks' runs [default: launch-<time>-<pid>]
    #[arg(long)]
    group: Option<String>,
    /// grouped, rank-zero-only or single-writer [default: $RANKLOG_STRATEGY or grouped]
    #[arg(long, value_parser = parse_strategy)]
    strategy: Option<Strategy>,
    /// Root directory of the runs, passed to the ranks as RANKLOG_DIR
    /// [default: $RANKLOG_DIR or ./ranklog]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds the other ranks get to stop after a failure or a signal.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    grace_period: f64,
    /// Do not print the group view at the end.
    #[arg(long)]
    no_view: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse().map_err(|e: ranklog::Error| e.to_string())
}

/// The last signal received and not yet handled (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

fn install_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

struct Rank {
    rank: u32,
    child: Child,
    /// Process group id (= the rank's pid).
    pgid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl Rank {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill with a negative pid signals the rank's process group,
        // which it created with setpgid(0, 0) before exec.
        unsafe {
            libc::kill(-self.pgid, sig);
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let n = args.nproc_per_node;
    if n == 0 {
        bail!("--nproc-per-node must be at least 1");
    }
    if !(args.grace_period.is_finite() && args.grace_period >= 0.0) {
        bail!("--grace-period must be a number of seconds, 0 or more");
    }
    let grace = Duration::from_secs_f64(args.grace_period);
    let group = match &args.group {
        Some(g) => g.clone(),
        None => generated_group(),
    };
    let strategy = match args.strategy {
        Some(s) => s,
        None => match std::env::var("RANKLOG_STRATEGY") {
            Ok(s) if !s.is_empty() => {
                parse_strategy(&s).map_err(|e| anyhow::anyhow!("RANKLOG_STRATEGY: {e}"))?
            }
            _ => Strategy::default(),
        },
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("cannot find a free port for MASTER_PORT")?;
    let root = crate::root(&args.dir);
    // Single-writer workers prove to rank 0 that they belong to this job.
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("no random source for the job token: {e}"))?;
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after `--`")?;

    install_handlers();
    let launcher_pid = std::process::id() as libc::pid_t;
    let width = (n - 1).to_string().len();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut ranks: Vec<Rank> = Vec::with_capacity(n as usize);
    let mut pumps = 0usize;
    for r in 0..n {
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .env("RANK", r.to_string())
            .env("LOCAL_RANK", r.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("GROUP_RANK", "0")
            .env("ROLE_RANK", r.to_string())
            .env("ROLE_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANKLOG_GROUP", &group)
            .env("RANKLOG_STRATEGY", strategy.as_str())
            .env("RANKLOG_JOB_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &args.dir {
            cmd.env("RANKLOG_DIR", d);
        }
        // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid,
        // kill, getpid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher died between fork and prctl: do not outlive it.
                if libc::getppid() != launcher_pid {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut ranks);
                let what = program.to_string_lossy();
                return Err(anyhow::Error::new(e).context(if r == 0 {
                    format!("cannot start `{what}`; check the command after `--` (no rank was started)")
                } else {
                    format!("cannot start rank {r} of `{what}`; the {r} ranks already started were stopped")
                }));
            }
        };
        let prefix = format!("[rank {r:>width$}] ");
        if let Some(out) = child.stdout.take() {
            pumps += pump(out, prefix.clone(), false, done_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pumps += pump(err, prefix, true, done_tx.clone());
        }
        let pgid = child.id() as libc::pid_t;
        ranks.push(Rank {
            rank: r,
            child,
            pgid,
            status: None,
        });
    }
    drop(done_tx);
    eprintln!(
        "ranklog: launched {n} rank{} of group {group} ({strategy}), MASTER_PORT={port}",
        if n == 1 { "" } else { "s" }
    );

    let outcome = supervise(&mut ranks, grace);
    // Output of the ranks may still be in the pipes: wait for it, but not
    // for a process that escaped its group and keeps a pipe open.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..pumps {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let _ = std::io::stdout().flush();

    let code = match outcome {
        Outcome::Success => {
            eprintln!("ranklog: all {n} ranks finished");
            ExitCode::SUCCESS
        }
        Outcome::RankFailed {
            rank,
            status,
            stopped,
        } => {
            eprintln!(
                "ranklog: rank {rank} failed ({}); stopped the other {stopped} running rank{}",
                describe(status),
                if stopped == 1 { "" } else { "s" }
            );
            ExitCode::from(exit_byte(status))
        }
        Outcome::Interrupted { signal } => {
            eprintln!(
                "ranklog: stopped by {}; every rank was stopped",
                signal_name(signal)
            );
            ExitCode::from((128 + signal).clamp(1, 255) as u8)
        }
    };
    if !args.no_view {
        let _ = std::io::stdout().flush();
        match crate::group::print_view(&root, &group) {
            Ok(()) => {
                let dir = match &args.dir {
                    Some(d) => format!(" --dir {}", d.display()),
                    None => String::new(),
                };
                eprintln!("ranklog: charts: ranklog group {group}{dir} --plot {group}.svg");
            }
            Err(e) => eprintln!("ranklog: no group view: {e:#}"),
        }
    }
    Ok(code)
}

enum Outcome {
    Success,
    RankFailed {
        rank: u32,
        status: ExitStatus,
        stopped: usize,
    },
    Interrupted {
        signal: i32,
    },
}

/// Waits for every rank; stops the others when one fails or a signal comes.
fn supervise(ranks: &mut [Rank], grace: Duration) -> Outcome {
    let mut failed: Option<(u32, ExitStatus, usize)> = None;
    let mut interrupted: Option<i32> = None;
    let mut kill_at: Option<Instant> = None;
    loop {
        let sig = PENDING.swap(0, Ordering::SeqCst);
        if sig != 0 {
            if interrupted.is_some() || kill_at.is_some() {
                // Second signal: no more patience.
                kill_alive(ranks, libc::SIGKILL);
            } else {
                kill_alive(ranks, sig);
                kill_at = Some(Instant::now() + grace);
            }
            interrupted.get_or_insert(sig);
        }
        for r in ranks.iter_mut().filter(|r| r.status.is_none()) {
            match r.child.try_wait() {
                Ok(Some(status)) => {
                    r.status = Some(status);
                    // Whatever the rank left in its group goes with it.
                    r.signal(libc::SIGKILL);
                    if !status.success() && failed.is_none() && interrupted.is_none() {
                        failed = Some((r.rank, status, 0));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("ranklog: cannot wait for rank {}: {e}", r.rank);
                }
            }
        }
        let alive = ranks.iter().filter(|r| r.status.is_none()).count();
        if let Some((_, _, stopped)) = &mut failed {
            if kill_at.is_none() {
                *stopped = alive;
                if alive > 0 {
                    kill_alive(ranks, libc::SIGTERM);
                }
                kill_at = Some(Instant::now() + grace);
            }
        }
        if alive == 0 {
            break;
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            kill_alive(ranks, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match (failed, interrupted) {
        (Some((rank, status, stopped)), _) => Outcome::RankFailed {
            rank,
            status,
            stopped,
        },
        (None, Some(signal)) => Outcome::Interrupted { signal },
        (None, None) => Outcome::Success,
    }
}

fn kill_alive(ranks: &[Rank], sig: libc::c_int) {
    for r in ranks.iter().filter(|r| r.status.is_none()) {
        r.signal(sig);
    }
}

/// Stops ranks already started (used when a later rank cannot start).
fn stop_all(ranks: &mut [Rank]) {
    kill_alive(ranks, libc::SIGKILL);
    for r in ranks.iter_mut() {
        let _ = r.child.wait();
    }
}

/// Copies a rank's output, line by line, with its prefix; returns 1 if a
/// thread was started.
fn pump(
    src: impl Read + Send + 'static,
    prefix: String,
    err: bool,
    done: mpsc::Sender<()>,
) -> usize {
    let spawned = std::thread::Builder::new()
        .name("ranklog-output".into())
        .spawn(move || {
            let mut src = BufReader::new(src);
            let mut line = Vec::with_capacity(256);
            loop {
                line.clear();
                match src.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let written = if err {
                    let mut e = std::io::stderr().lock();
                    e.write_all(prefix.as_bytes())
                        .and_then(|()| e.write_all(&line))
                } else {
                    let mut o = std::io::stdout().lock();
                    o.write_all(prefix.as_bytes())
                        .and_then(|()| o.write_all(&line))
                        .and_then(|()| o.flush())
                };
                if written.is_err() {
                    // Our own output is gone (a closed pipe): keep draining
                    // so the rank never blocks on a full pipe.
                    continue;
                }
            }
            let _ = done.send(());
        });
    usize::from(spawned.is_ok())
}

fn generated_group() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let stamp = now.format(&f).unwrap_or_else(|_| "0".into());
    format!("launch-{stamp}-{}", std::process::id())
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by {}", signal_name(s)),
        _ => status.to_string(),
    }
}

fn exit_byte(status: ExitStatus) -> u8 {
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    };
    match (code & 0xff) as u8 {
        0 => 1,
        b => b,
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        other => format!("signal {other}"),
    }
}

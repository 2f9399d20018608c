//! The logging processes the driver kills.
//!
//! They speak to the driver on stdout, one line each (Rust's stdout is line
//! buffered): `RUN <dir>` once the run exists, `ACK <step>` after every
//! `Run::flush` that returned Ok (everything logged up to that step must
//! survive a SIGKILL from then on), `FINISHING` just before `finish`,
//! `FINISHED <µs>` after it returned.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ranklog::{Error, Mode, Run, Settings};

use crate::check::{self, Profile};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> ExitCode {
    say(&format!("ERROR {what}: {e}"));
    ExitCode::from(3)
}

/// `writer-child <root> <seed> <profile> [tracking-uri]`: one run, logged
/// following [`check::events`], flushed as the profile says.
pub fn writer_child(args: &[String]) -> ExitCode {
    let (Some(root), Some(seed), Some(profile)) = (args.first(), args.get(1), args.get(2)) else {
        return fail("usage", &"writer-child ROOT SEED PROFILE [URI]");
    };
    let Ok(seed) = seed.parse::<u64>() else {
        return fail("seed", &seed);
    };
    let Some(profile) = Profile::parse(profile) else {
        return fail("profile", &profile);
    };
    let mut settings = Settings::new()
        .project("torture")
        .dir(root)
        .silent(true)
        .capture_git(false)
        .config(check::initial_config(seed, profile));
    settings = match (profile, args.get(3)) {
        (Profile::Online, Some(uri)) => settings
            .mode(Mode::Online)
            .tracking_uri(uri.clone())
            .upload_timeout(Duration::from_secs(10)),
        _ => settings.mode(Mode::Offline),
    };
    let run = match ranklog::init(settings) {
        Ok(r) => r,
        Err(e) => return fail("init", &e),
    };
    let Some(dir) = run.dir() else {
        return fail("init", &"the run has no directory");
    };
    say(&format!("RUN {}", dir.display()));
    let started = Instant::now();
    let steps = check::steps(profile);
    let every = check::flush_every(seed, profile);
    for step in 0..steps {
        if let Err(e) = log_step(&run, seed, step) {
            return fail("log", &e);
        }
        if profile == Profile::Online {
            // Training pace: the live upload runs beside it.
            std::thread::sleep(Duration::from_millis(2));
        }
        if (step + 1) % every == 0 || step + 1 == steps {
            match run.flush() {
                Ok(()) => say(&format!("ACK {step}")),
                Err(e) => return fail("flush", &e),
            }
            match profile {
                Profile::Batch => std::thread::sleep(Duration::from_micros(300)),
                Profile::Flush | Profile::Finish | Profile::Online => {}
            }
        }
    }
    say(&format!("FINISHING {}", started.elapsed().as_micros()));
    let t = Instant::now();
    // At-finish kills are timed from inside: a thread SIGKILLs this process
    // `kill_us` after finish() was called (a pipe round trip to the driver
    // takes longer than a whole finish on a loaded machine).
    let killer = args
        .get(4)
        .and_then(|us| us.parse::<u64>().ok())
        .map(|us| std::thread::spawn(move || kill_at(t + Duration::from_micros(us))));
    let result = run.finish();
    let code = match result {
        Ok(_) => {
            say(&format!("FINISHED {}", t.elapsed().as_micros()));
            ExitCode::SUCCESS
        }
        Err(e) => fail("finish", &e),
    };
    if let Some(k) = killer {
        // Always die by the kill, before or after finish completed.
        let _ = k.join();
    }
    code
}

/// Sends SIGKILL to this process at `at` (sleeps, then spins the last bit).
fn kill_at(at: Instant) {
    let left = at.saturating_duration_since(Instant::now());
    if left > Duration::from_micros(300) {
        std::thread::sleep(left - Duration::from_micros(200));
    }
    while Instant::now() < at {
        std::hint::spin_loop();
    }
    // SAFETY: sends SIGKILL to this very process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Logs what [`check::events`] says happens at `step`.
fn log_step(run: &Run, seed: u64, step: u64) -> ranklog::Result<()> {
    run.log(
        check::KEYS
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, crate::value(seed, step, i as u64))),
    )?;
    if let Some(v) = check::summary_at(seed, step) {
        run.summary(check::SUMMARY_KEY, v)?;
    }
    if let Some(c) = check::config_update_at(step) {
        run.update_config(c)?;
    }
    Ok(())
}

/// `rank-child <seed>`: one rank of a single-writer job (its rank and the
/// job come from the environment the driver sets). Logs `loss` every
/// millisecond until stdin closes (the driver's "stop") or rank 0 is gone;
/// rank 0 flushes every 10 steps and acknowledges.
pub fn rank_child(args: &[String]) -> ExitCode {
    let Some(Ok(seed)) = args.first().map(|s| s.parse::<u64>()) else {
        return fail("usage", &"rank-child SEED");
    };
    let rank: u64 = std::env::var("RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        flag.store(true, Ordering::SeqCst);
    });
    let run = match ranklog::init(
        Settings::new()
            .project("torture-queue")
            .mode(Mode::Offline)
            .silent(true)
            .capture_git(false)
            .finish_timeout(Duration::from_secs(crate::queue::FINISH_TIMEOUT_S)),
    ) {
        Ok(r) => r,
        Err(e) => return fail("init", &e),
    };
    match run.dir() {
        Some(d) => say(&format!("RUN {}", d.display())),
        None => say(&format!("RUN {}", run.id())),
    }
    let mut step = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match run.log([("loss", crate::value(seed, step, rank))]) {
            Ok(()) => {}
            Err(Error::OwnerGone { .. }) => {
                say(&format!("OWNER GONE {step}"));
                break;
            }
            Err(e) => return fail("log", &e),
        }
        if rank == 0 && (step + 1) % 10 == 0 {
            match run.flush() {
                Ok(()) => say(&format!("ACK {step}")),
                Err(e) => return fail("flush", &e),
            }
        }
        step += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    say(&format!("STEPS {step}"));
    match run.finish() {
        Ok(_) => {
            say("FINISHED 0");
            ExitCode::SUCCESS
        }
        Err(Error::OwnerGone { .. }) => {
            say("FINISH OWNER GONE");
            ExitCode::SUCCESS
        }
        Err(e) => fail("finish", &e),
    }
}

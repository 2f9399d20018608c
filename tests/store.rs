//! The run log on disk: crashes, torn tails, corruption, a full disk.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use proptest::prelude::*;
use ranklog::record::{Exit, ExitState, Row};
use ranklog::store::{self, DamageKind, Reader, RunState, Writer, HEADER_LEN};
use ranklog::Record;

use crate::util::{child, is_child, offline, only_run, rows, temp_root};

/// Records written in frames of three, with the offset where each frame ends.
fn sample_log() -> (Vec<u8>, Vec<Record>, Vec<u64>) {
    let dir = temp_root();
    let path = dir.path().join("run.rlog");
    let mut w = Writer::create(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut all = Vec::new();
    let mut ends = Vec::new();
    for i in 0..30u32 {
        let r = if i % 7 == 0 {
            Record::Key {
                id: i,
                name: format!("key/{i}"),
            }
        } else {
            Record::History(Row {
                step: u64::from(i),
                t_us: i64::from(i) * 1000,
                values: vec![(0, f64::from(i) / 3.0), (1, -1.5)],
            })
        };
        w.append(&r);
        all.push(r);
        if i % 3 == 2 {
            w.flush().unwrap_or_else(|e| panic!("{e}"));
            ends.push(w.offset());
        }
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    (bytes, all, ends)
}

fn read(bytes: &[u8]) -> Option<(Vec<Record>, Option<ranklog::store::Damage>)> {
    let mut r = Reader::new(bytes).ok()?;
    let records: Vec<Record> = r.by_ref().collect();
    Some((records, r.damage().cloned()))
}

#[test]
fn a_log_cut_at_every_byte_reads_a_clean_prefix() {
    let (bytes, all, ends) = sample_log();
    for n in 0..=bytes.len() {
        let Some((records, damage)) = read(&bytes[..n]) else {
            assert!(n < HEADER_LEN, "header refused at {n}");
            continue;
        };
        let whole_frames = ends.iter().filter(|&&e| e <= n as u64).count();
        assert_eq!(records, all[..whole_frames * 3], "cut at {n}");
        let at_boundary = n == HEADER_LEN || ends.contains(&(n as u64));
        match damage {
            None => assert!(at_boundary, "cut at {n} not reported"),
            Some(d) => {
                assert!(!at_boundary, "clean cut at {n} reported as {d}");
                assert_eq!(d.kind, DamageKind::TornTail);
                let frame_start = if whole_frames == 0 {
                    HEADER_LEN as u64
                } else {
                    ends[whole_frames - 1]
                };
                assert_eq!(d.offset, frame_start, "cut at {n}");
            }
        }
    }
}

#[test]
fn a_flipped_byte_is_reported_at_its_frame() {
    let (bytes, all, ends) = sample_log();
    for p in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[p] ^= 0xA5;
        let Some((records, damage)) = read(&bad) else {
            assert!(p < HEADER_LEN, "header refused for a flip at {p}");
            continue;
        };
        assert!(
            p >= HEADER_LEN,
            "a flip in the header at {p} went unnoticed"
        );
        let frame = ends.iter().filter(|&&e| e <= p as u64).count();
        let frame_start = if frame == 0 {
            HEADER_LEN as u64
        } else {
            ends[frame - 1]
        };
        let d = damage.unwrap_or_else(|| panic!("flip at {p} not reported"));
        assert_eq!(d.offset, frame_start, "flip at {p}: {d}");
        assert_eq!(records, all[..frame * 3], "flip at {p}");
    }
}

fn any_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (any::<u32>(), "\\PC{0,40}").prop_map(|(id, name)| Record::Key { id, name }),
        (
            any::<u64>(),
            any::<i64>(),
            proptest::collection::vec((any::<u32>(), any::<f64>()), 0..20)
        )
            .prop_map(|(step, t_us, values)| Record::History(Row { step, t_us, values })),
        ("\\PC{0,20}", "\\PC{0,20}").prop_map(|(key, json)| Record::Summary { key, json }),
        (
            any::<i32>(),
            proptest::option::of("\\PC{0,30}"),
            any::<i64>()
        )
            .prop_map(|(code, message, t_us)| Record::Exit(Exit {
                state: ExitState::Failed,
                code,
                message,
                t_us
            })),
        any::<i64>().prop_map(|t_us| Record::Heartbeat { t_us }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_records_round_trip(records in proptest::collection::vec((any_record(), any::<bool>()), 0..60)) {
        let dir = temp_root();
        let path = dir.path().join("run.rlog");
        let mut w = Writer::create(&path).unwrap_or_else(|e| panic!("{e}"));
        for (r, flush) in &records {
            w.append(r);
            if *flush {
                w.flush().unwrap_or_else(|e| panic!("{e}"));
            }
        }
        w.sync().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = Reader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let back: Vec<Record> = reader.by_ref().collect();
        prop_assert!(reader.damage().is_none());
        // Debug text compares NaN values equal, unlike PartialEq.
        let want: Vec<String> = records.iter().map(|(r, _)| format!("{r:?}")).collect();
        let got: Vec<String> = back.iter().map(|r| format!("{r:?}")).collect();
        prop_assert_eq!(want, got);
    }

    #[test]
    fn any_bytes_read_without_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"RANKLOG\0\x01\0\0\0".to_vec();
        bytes.extend(tail);
        let _ = read(&bytes);
    }
}

#[test]
fn a_run_killed_with_sigkill_reads_as_crashed_with_every_flushed_row() {
    let root = temp_root();
    let mut proc = child(
        "store::child_logs_until_killed",
        &[("RANKLOG_DIR", &root.path().display().to_string())],
        None,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap_or_else(|e| panic!("{e}"));
    let stdout = proc.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut flushed = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        if let Some(n) = line.strip_prefix("FLUSHED ") {
            flushed = n.trim().parse().unwrap_or(0);
            if flushed >= 3000 {
                break;
            }
        }
    }
    assert!(flushed >= 3000, "child never reported a flush");
    // SAFETY: sending SIGKILL to our own child.
    unsafe { libc::kill(proc.id() as i32, libc::SIGKILL) };
    let _ = proc.wait();
    let dir = only_run(root.path());
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Crashed);
    assert!(s.exit.is_none());
    let mut reader = Reader::open(&dir.join("run.rlog")).unwrap_or_else(|e| panic!("{e}"));
    let mut keys = std::collections::HashMap::new();
    let mut step = 0u64;
    for r in reader.by_ref() {
        match r {
            Record::Key { id, name } => {
                keys.insert(id, name);
            }
            Record::History(row) => {
                assert_eq!(row.step, step);
                let want: Vec<(String, f64)> = (0..10)
                    .map(|k| (format!("m{k}"), step as f64 + f64::from(k) / 10.0))
                    .collect();
                let got: Vec<(String, f64)> = row
                    .values
                    .iter()
                    .map(|(id, v)| (keys[id].clone(), *v))
                    .collect();
                assert_eq!(got, want);
                step += 1;
            }
            _ => {}
        }
    }
    assert!(
        step >= flushed,
        "only {step} rows of {flushed} flushed ones survived"
    );
}

#[test]
#[ignore = "run as a child process by a_run_killed_with_sigkill_reads_as_crashed_with_every_flushed_row"]
fn child_logs_until_killed() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let root = std::path::PathBuf::from(std::env::var("RANKLOG_DIR").unwrap_or_default());
    let run = ranklog::init(offline(&root))?;
    let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
    for step in 0u64.. {
        run.log(
            keys.iter()
                .enumerate()
                .map(|(k, key)| (key, step as f64 + k as f64 / 10.0)),
        )?;
        if step % 1000 == 999 {
            run.flush()?;
            println!("FLUSHED {}", step + 1);
        }
    }
    Ok(())
}

#[test]
fn a_full_disk_is_reported_at_finish_and_keeps_what_was_written() {
    let root = temp_root();
    let out = child(
        "store::child_fills_the_disk",
        &[("RANKLOG_DIR", &root.path().display().to_string())],
        None,
    )
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    crate::util::assert_success(&out, "child_fills_the_disk");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    // Reported once, however many writes failed after it.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("cannot write").count(),
        1,
        "the full disk should be reported once:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // What was written before is intact (`rows` fails on any damage) and readable.
    let dir = only_run(root.path());
    let r = rows(&dir);
    assert!(
        r.len() >= 100,
        "the rows flushed before the disk filled are gone"
    );
    for (i, (step, values)) in r.iter().enumerate() {
        assert_eq!(*step, i as u64);
        assert_eq!(values[0].1, i as f64);
    }
    // The exit record could not be written either: the run reads as crashed.
    let s = store::scan(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.state, RunState::Crashed);
    crate::util::assert_success(
        &crate::util::ranklog(&["show", &dir.display().to_string()]),
        "ranklog show of a run cut by a full disk",
    );
}

#[test]
#[ignore = "run as a child process by a_full_disk_is_reported_at_finish_and_keeps_what_was_written"]
fn child_fills_the_disk() -> ranklog::Result<()> {
    if !is_child() {
        return Ok(());
    }
    let root = std::path::PathBuf::from(std::env::var("RANKLOG_DIR").unwrap_or_default());
    let run = ranklog::init(offline(&root))?;
    for i in 0..100u32 {
        run.log([("x", f64::from(i)), ("y", 0.5)])?;
    }
    run.flush()?;
    let size = std::fs::metadata(only_run(&root).join("run.rlog"))
        .map(|m| m.len())
        .unwrap_or(0);
    // SAFETY: ignoring SIGXFSZ makes writes past the limit fail with EFBIG
    // instead of killing the process; the limit then acts as a full disk.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: size + 4096,
            rlim_max: libc::RLIM_INFINITY,
        };
        libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
    }
    for i in 100..50_000u32 {
        // Training goes on: logging never fails because the disk is full.
        run.log([("x", f64::from(i)), ("y", 0.5)])?;
        if i % 10_000 == 0 {
            // Every flush now fails: each is a retry of the write.
            assert!(run.flush().is_err(), "a write past the limit succeeded");
        }
    }
    match run.finish() {
        Err(ranklog::Error::WriteFailed { lost, .. }) => assert!(lost > 0),
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    Ok(())
}

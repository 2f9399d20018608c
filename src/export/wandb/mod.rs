//! Export to W&B offline runs: `<out>/wandb/offline-run-…/run-<id>.wandb`.
//!
//! [`export_run`] reads a run directory in one pass and writes the W&B
//! transaction log that `wandb sync` uploads. The format and the mapping are
//! described in [`crate::export`]. [`Writer`] and [`Reader`] are the framing
//! alone; [`proto`] holds the protobuf messages.

mod convert;
mod framing;
mod history;
pub mod proto;
mod reader;
mod writer;

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub use framing::{checksum, ChunkType, BLOCK_SIZE, CHUNK_HEADER_LEN, HEADER};
pub use reader::{decode, read_file, ChunkCounts, Reader};
pub use writer::Writer;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{self, Damage, Meta, RunState};

/// What [`export_run`] wrote.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExportReport {
    /// The run id (also the W&B run id).
    pub id: String,
    /// The ranklog run directory that was read.
    pub run_dir: PathBuf,
    /// The W&B offline run directory, `<out>/wandb/offline-run-…-<id>`.
    pub offline_dir: PathBuf,
    /// The transaction log, `<offline_dir>/run-<id>.wandb`.
    pub file: PathBuf,
    /// How the run ended: finished, failed or crashed.
    pub state: RunState,
    /// The exit code written: 0 finished, non-zero failed or crashed.
    pub exit_code: i32,
    /// W&B records written.
    pub records: u64,
    /// History rows written (rows logged at one step are one row).
    pub rows: u64,
    /// Metric values written.
    pub points: u64,
    /// Size of the `.wandb` file.
    pub bytes: u64,
    /// Where the ranklog log stopped being readable, if it did; the export
    /// holds everything before that point.
    pub damage: Option<Damage>,
}

/// The W&B offline run directory name for a run: `offline-run-YYYYMMDD_HHMMSS-<id>`
/// (start time in UTC).
pub fn offline_dir_name(start_unix_us: i64, id: &str) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_unix_us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("offline-{}", store::run_dir_name(t, id))
}

/// Exports one run as a W&B offline run under `<out_dir>/wandb/`.
///
/// The file is written under a temporary name and renamed when complete, so
/// an earlier export of the same run is replaced whole or not at all. A run
/// without an exit record whose writer is gone (it crashed) gets an exit
/// record with exit code 1, so W&B shows it as failed rather than running.
///
/// # Errors
///
/// [`Error::Read`], [`Error::BadJson`] or [`Error::NotARunLog`] if the run
/// cannot be read, [`Error::RunStillRunning`] if its writer is still
/// writing, [`Error::Write`] if the export cannot be written.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let out = tempfile::tempdir()?;
/// use ranklog::{Mode, Settings};
/// let run = ranklog::init(Settings::new().project("demo").dir(dir.path()).mode(Mode::Offline).silent(true))?;
/// run.log([("loss", 0.5)])?;
/// let run_dir = run.dir().ok_or("offline runs have a directory")?.to_path_buf();
/// run.finish()?;
/// let report = ranklog::export::wandb::export_run(&run_dir, out.path())?;
/// assert!(report.file.ends_with(format!("run-{}.wandb", report.id)));
/// assert_eq!((report.rows, report.exit_code), (1, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export_run(run_dir: &Path, out_dir: &Path) -> Result<ExportReport> {
    let meta: Meta = store::read_json(&run_dir.join(store::META_FILE))?;
    let log = run_dir.join(store::LOG_FILE);
    let mut reader = store::Reader::open(&log)?;
    let start = match reader.next() {
        Some(Record::Start(start)) => start,
        _ => {
            return Err(Error::NotARunLog {
                path: log,
                reason: "it does not begin with a start record".into(),
            })
        }
    };
    let offline_dir = out_dir
        .join("wandb")
        .join(offline_dir_name(start.start_unix_us, &start.id));
    fs::create_dir_all(&offline_dir).map_err(|source| Error::Write {
        path: offline_dir.clone(),
        source,
    })?;
    let file = offline_dir.join(format!("run-{}.wandb", start.id));
    let partial = offline_dir.join(format!(
        ".run-{}.wandb.{}.partial",
        start.id,
        std::process::id()
    ));
    let result = write_log(&partial, &mut reader, &start, &meta, &log);
    let (state, exit_code, counts, bytes) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    fs::rename(&partial, &file).map_err(|source| Error::Write {
        path: file.clone(),
        source,
    })?;
    tracing::debug!(file = %file.display(), records = counts.records, "ranklog: exported to W&B");
    Ok(ExportReport {
        id: start.id.clone(),
        run_dir: run_dir.to_path_buf(),
        offline_dir,
        file,
        state,
        exit_code,
        records: counts.records,
        rows: counts.rows,
        points: counts.points,
        bytes,
        damage: reader.damage().cloned(),
    })
}

/// Writes the whole `.wandb` file to `path`; returns the run's state, the
/// exit code written, the counts and the size.
fn write_log(
    path: &Path,
    reader: &mut store::Reader,
    start: &crate::record::Start,
    meta: &Meta,
    log: &Path,
) -> Result<(RunState, i32, convert::Counts, u64)> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let out = File::create(path).map_err(write_err)?;
    let out = BufWriter::with_capacity(1 << 20, out);
    let mut conv =
        convert::Converter::start(out, start, &meta.name, meta.git.as_ref()).map_err(write_err)?;
    let mut exit = None;
    let mut last_t_us = 0i64;
    for record in reader.by_ref() {
        match &record {
            Record::Exit(e) => exit = Some(e.clone()),
            Record::History(row) => last_t_us = last_t_us.max(row.t_us),
            Record::Heartbeat { t_us } => last_t_us = last_t_us.max(*t_us),
            _ => {}
        }
        conv.record(record).map_err(write_err)?;
    }
    let state = store::detect_state(meta, exit.as_ref(), log);
    if state == RunState::Running {
        return Err(Error::RunStillRunning {
            dir: log.parent().map(Path::to_path_buf).unwrap_or_default(),
        });
    }
    let (exit_code, runtime_us) = match &exit {
        Some(e) => (e.code, e.t_us),
        None => (convert::CRASHED_EXIT_CODE, last_t_us),
    };
    let bytes_before_close = conv.bytes();
    let (out, counts) = conv.finish(exit_code, runtime_us).map_err(write_err)?;
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    let bytes = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or(bytes_before_close);
    Ok((state, exit_code, counts, bytes))
}

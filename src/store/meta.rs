//! The human-readable files of a run directory: `meta.json` and `summary.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rank::RankInfo;
use crate::record::GitInfo;

/// Name of the metadata file in a run directory.
pub const META_FILE: &str = "meta.json";
/// Name of the file written at finish.
pub const SUMMARY_FILE: &str = "summary.json";
/// Name of the run log in a run directory.
pub const LOG_FILE: &str = "run.rlog";
/// Name of the saved `git diff` of a dirty working tree.
pub const DIFF_FILE: &str = "diff.patch";

/// Who a run is and where it ran: the content of `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Version of the run-log format of this run.
    pub format: u32,
    /// Run id.
    pub id: String,
    /// Run name (the latest, if the run was renamed).
    pub name: String,
    /// Project.
    pub project: String,
    /// Group key, if any.
    pub group: Option<String>,
    /// Job type, if any.
    pub job_type: Option<String>,
    /// Rank information, if the run belongs to a multi-rank job.
    pub rank: Option<RankInfo>,
    /// Host name.
    pub host: String,
    /// Process id of the writer.
    pub pid: u32,
    /// Start time of that process (Linux clock ticks since boot), to tell a
    /// live writer from a recycled pid.
    pub pid_start: Option<u64>,
    /// Program path (`argv[0]`).
    pub program: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Start time, RFC 3339 in UTC.
    pub started: String,
    /// Start time, milliseconds since the Unix epoch.
    pub start_unix_ms: i64,
    /// Version of ranklog that wrote the run.
    pub ranklog_version: String,
    /// Mode the run was started in (`offline`, `online`).
    pub mode: String,
    /// Git state of the working directory, once captured.
    pub git: Option<GitInfo>,
}

/// What `summary.json` holds: how and when the run ended, and its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalSummary {
    /// `finished` or `failed`.
    pub state: String,
    /// 0 when finished.
    pub exit_code: i32,
    /// Failure message, if any.
    pub message: Option<String>,
    /// End time, RFC 3339 in UTC.
    pub ended: String,
    /// Seconds from start to end.
    pub duration_s: f64,
    /// Distinct steps logged.
    pub steps: u64,
    /// Metric values logged.
    pub points: u64,
    /// Size of `run.rlog` at the end.
    pub log_bytes: u64,
    /// The summary values set with [`crate::Run::summary`].
    pub summary: BTreeMap<String, serde_json::Value>,
}

/// Reads a JSON file of a run directory.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::BadJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the `meta.json` of a run directory.
pub(crate) fn read_meta(dir: &Path) -> Result<Meta> {
    read_json(&dir.join(META_FILE))
}

/// Writes a JSON file atomically: to a temporary name, then renamed.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| write_err(e.into()))?;
    bytes.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, &bytes).map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}

//! Upload of runs to a tracking server that speaks MLflow's REST API.
//!
//! The [`Uploader`] reads a run's log (`run.rlog`, the source of truth) from
//! the offset the server last acknowledged, turns its records into MLflow
//! metrics, params and tags (the mapping is documented in the `mapping`
//! submodule and below), and sends them with `runs/log-batch`. In
//! [`crate::Mode::Online`] a thread of the run does this live; `ranklog sync`
//! runs the same uploader later over offline, crashed or partly uploaded runs.
//!
//! # Mapping
//!
//! project → experiment (got by name, else created; when many ranks create it
//! at once, the losers get it again by name); run name → `run_name`; run id,
//! group, job type, rank and world size → tags `ranklog.run_id`,
//! `ranklog.group`, `ranklog.job_type`, `ranklog.rank`, `ranklog.world_size`,
//! …; config → params (nested keys joined with `.`); history → metrics with
//! the row's step and its wall-clock time in milliseconds; summary → tags
//! `ranklog.summary.<key>`; git → `mlflow.source.git.*`; exit → `runs/update`
//! with status `FINISHED` or `FAILED` and the end time. A crashed run (no exit
//! record, writer gone) is ended as `KILLED` at its last record's time.
//! Keys MLflow would reject are renamed deterministically and each renaming is
//! recorded in a tag `ranklog.renamed.<hash>`; nothing is dropped.
//!
//! # Exactly once
//!
//! Progress is kept in `sync.json` in the run directory ([`SyncState`]): the
//! remote run id and the acknowledged log offset, written only after the
//! server answered. Every batch is a pure function of the log, so a batch sent
//! again after a crash or a timeout carries the same `(key, value, step,
//! timestamp)` metrics, the same params and the same tags. MLflow's SQL
//! backends (SQLite, PostgreSQL, MySQL) keep one row per `(run, key,
//! timestamp, step, value)` and skip a repeated metric, accept a param logged
//! again with the same value, and overwrite tags; so a repeated batch changes
//! nothing. (MLflow's file-based backend, `./mlruns` without a database,
//! appends repeated metrics: use a database backend.) A crash between creating
//! the remote run and saving its id is covered by looking the run up by its
//! `ranklog.run_id` tag before creating one.
//!
//! # Limits and retries
//!
//! A batch holds at most 1000 entities, 100 params, 100 tags and 1 MB. 401
//! and 403 become [`crate::Error::PermissionDenied`]; other 4xx answers are
//! reported with the server's message ([`crate::Error::ServerRejected`]);
//! connection errors, timeouts, 429, 5xx and a 400 reporting a database
//! unique-key conflict (two uploaders writing the same rows at once, e.g. a
//! killed run's last request and `ranklog sync`) are retried with exponential
//! backoff (250 ms doubling to 10 s, with jitter; see
//! [`crate::Settings::upload_backoff`]), or after the wait a 429 or 5xx
//! answer's `Retry-After` asks for (up to 5 min). One request may take 60 s
//! ([`crate::Settings::upload_request_timeout`]); `ranklog sync` reads both
//! from the same environment variables.
//!
//! A request that failed may still have been applied (a 500 or a lost
//! answer after the server wrote it, a timeout while it was slow), so every
//! retried request is one whose repetition changes nothing: batches as
//! above, `runs/update`, reads; `experiments/create` sent again answers
//! `RESOURCE_ALREADY_EXISTS` and the experiment is got by name; and
//! `runs/create` is never simply sent again: each attempt looks the run up
//! by its `ranklog.run_id` tag first. An online run's upload never outlives
//! the deadline `finish` gives it: a request still unanswered then is
//! abandoned, and what it carried is sent again by `ranklog sync`.
//!
//! # Examples
//!
//! ```no_run
//! use ranklog::sync::{Target, Uploader};
//! let target = Target::resolve(Some("http://127.0.0.1:5000"))?;
//! let report = Uploader::open("ranklog/latest-run".as_ref(), &target)?.run(true, &mut |_| {})?;
//! println!("{} points in run {:?}", report.points, report.remote_run_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
mod client;
mod credentials;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod live;
mod mapping;
mod retry;
mod state;
mod uploader;

use std::path::Path;

pub use credentials::{
    credentials_for, credentials_path, store_credentials, Credentials, CREDENTIALS_FILE,
};
pub use state::{SyncState, LOCK_FILE, SYNC_FILE};
pub use uploader::Uploader;

use crate::error::{Error, Result};

/// A tracking server and how to authenticate to it.
#[derive(Clone)]
pub struct Target {
    /// The server URI, e.g. `http://127.0.0.1:5000`.
    pub server: String,
    /// Credentials, if the server wants them.
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &client::redact_user_info(&self.server))
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Target {
    /// The server `uri`, else `RANKLOG_TRACKING_URI`, else
    /// `MLFLOW_TRACKING_URI`; credentials from the environment or the file
    /// `ranklog login` writes.
    ///
    /// # Errors
    ///
    /// [`Error::NoTrackingServer`] if no server is named.
    pub fn resolve(uri: Option<&str>) -> Result<Target> {
        let server = uri
            .map(str::to_string)
            .or_else(crate::settings::tracking_uri_from_env)
            .filter(|u| !u.trim().is_empty())
            .ok_or(Error::NoTrackingServer)?;
        Ok(Target::new(server))
    }

    /// The server `uri` with the credentials known for it.
    pub fn new(uri: impl Into<String>) -> Target {
        let server = uri.into().trim().trim_end_matches('/').to_string();
        let credentials = credentials_for(&server);
        Target {
            server,
            credentials,
        }
    }

    /// Checks that the server speaks MLflow's REST API and accepts the
    /// credentials (lists one experiment).
    ///
    /// # Errors
    ///
    /// As [`Uploader::run`].
    pub fn check(&self) -> Result<()> {
        let tuning = crate::settings::upload_tuning_from_env()?;
        let client = client::Client::new(
            &self.server,
            self.credentials.clone(),
            tuning.request_timeout,
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Write {
                path: Default::default(),
                source,
            })?;
        let answer = rt.block_on(client.get("experiments/search", &[("max_results", "1")]));
        match answer {
            Ok(client::Answer::Ok(_)) => Ok(()),
            Ok(client::Answer::Api(e)) => Err(client.rejected("experiments/search", e)),
            Err(client::Failure::Fatal(e)) => Err(e),
            Err(client::Failure::Transient { error, .. }) => Err(*error),
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The tracking server.
    pub server: String,
    /// The remote experiment.
    pub experiment_id: Option<String>,
    /// The remote run.
    pub remote_run_id: Option<String>,
    /// Bytes of the log the server has acknowledged.
    pub acked_bytes: u64,
    /// Size of the log.
    pub log_bytes: u64,
    /// Metric values sent by this upload.
    pub points: u64,
    /// The status the remote run was ended with, if it was.
    pub status: Option<String>,
}

/// Where the upload of an online run stood when it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The tracking server.
    pub server: String,
    /// The remote experiment, once known.
    pub experiment_id: Option<String>,
    /// The remote run, once created.
    pub remote_run_id: Option<String>,
    /// Bytes of the log the server has acknowledged.
    pub acked_bytes: u64,
    /// Size of the log.
    pub log_bytes: u64,
    /// Whether everything, the end status included, is on the server.
    pub complete: bool,
    /// Why the upload stopped short, if it did.
    pub error: Option<String>,
}

/// Bytes of a run's log that `server` has acknowledged (0 if none, or if
/// the last upload went to another server).
pub fn acked_bytes(dir: &Path, server: &str) -> u64 {
    match SyncState::load(dir) {
        Ok(Some(state)) if state.server == client::base_uri(server) => state.acked_offset,
        _ => 0,
    }
}

/// Whether a run has been completely uploaded to `server`: its remote run
/// was ended and the whole log acknowledged.
pub fn is_synced(dir: &Path, server: &str) -> bool {
    let Ok(Some(state)) = SyncState::load(dir) else {
        return false;
    };
    let len = std::fs::metadata(dir.join(crate::store::LOG_FILE))
        .map(|m| m.len())
        .unwrap_or(u64::MAX);
    state.server == client::base_uri(server) && state.status.is_some() && state.acked_offset >= len
}

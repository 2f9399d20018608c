//! The one error type of ranklog.
//!
//! Variants are named for what the user does next; each message says what
//! happened and, where one action fixes it, what to do.

use std::path::PathBuf;

/// Every failure a user of ranklog can meet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A project, group, job type or run name uses characters ranklog does not allow.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which name: `project`, `group`, `job_type`, `run name` or `run id`.
        what: &'static str,
        /// The name as given.
        value: String,
        /// What is wrong and which characters are allowed.
        reason: String,
    },

    /// A metric or summary key is empty, too long, reserved or holds control characters.
    #[error("invalid metric key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// A setting (from code or from a `RANKLOG_*` variable) has a value ranklog cannot use.
    #[error("invalid setting {name}={value:?}: {reason}")]
    InvalidSetting {
        /// The setting or environment variable.
        name: String,
        /// The value as given.
        value: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },

    /// A row was logged at a step lower than the run's current step; nothing was written.
    #[error("step {step} is lower than the run's current step {current}; steps must not go backwards (log at step {current} or higher, or omit the step)")]
    StepWentBackwards {
        /// The step that was asked for.
        step: u64,
        /// The run's current step.
        current: u64,
    },

    /// A run with this id already exists under the root directory.
    #[error("run id {id:?} already exists in {}; choose another id or unset RANKLOG_RUN_ID (runs are never merged)", .dir.display())]
    RunIdExists {
        /// The id that was asked for.
        id: String,
        /// The existing run directory.
        dir: PathBuf,
    },

    /// The run directory or one of its files could not be created or written.
    #[error("cannot write {}; check that the directory exists, is writable and has free space (set RANKLOG_DIR to use another root)", .path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The run log could not be written to disk during the run (disk full, for example).
    ///
    /// Training went on; the records that reached the disk before the failure are
    /// intact and readable. `lost` counts the records that could not be written.
    #[error("could not write the run log {} ({lost} records lost); free disk space, then check the run with `ranklog show`", .path.display())]
    WriteFailed {
        /// The run log.
        path: PathBuf,
        /// How many records could not be written.
        lost: u64,
        /// The first write error.
        #[source]
        source: std::io::Error,
    },

    /// A file of a run could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A file is not a ranklog run log, or was written by an unsupported version.
    #[error("{} is not a readable ranklog run log: {reason}", .path.display())]
    NotARunLog {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// A run's `meta.json` or `summary.json` is not valid.
    #[error("cannot parse {}", .path.display())]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },

    /// No run matches an id, a name or a path.
    #[error("no run {query:?} under {}; list the runs with `ranklog runs --dir {}`", .root.display(), .root.display())]
    RunNotFound {
        /// What was looked for.
        query: String,
        /// The root directory searched.
        root: PathBuf,
    },

    /// A name matches several runs.
    #[error("{query:?} names {count} runs under {}; use the run id instead", .root.display())]
    AmbiguousRun {
        /// What was looked for.
        query: String,
        /// How many runs match.
        count: usize,
        /// The root directory searched.
        root: PathBuf,
    },

    /// The run has finished; it takes no more data.
    #[error("run {id} has finished; start a new run with ranklog::init")]
    RunFinished {
        /// The run's id.
        id: String,
    },

    /// The run's background writer is gone (it panicked or was never started).
    #[error("the writer thread of run {id} is gone; what it wrote so far is in the run directory")]
    WriterGone {
        /// The run's id.
        id: String,
    },

    /// The run's writer did not answer within the finish timeout.
    #[error("run {id} did not finish writing within {seconds} s; the run directory holds what was written")]
    FinishTimeout {
        /// The run's id.
        id: String,
        /// The timeout.
        seconds: u64,
    },

    /// The run handle was used in a child made by `fork()` without `exec`.
    #[error("run {id} was created in process {parent_pid} and used in forked child {child_pid}, where its writer thread does not exist; call ranklog::init in the child (with its own run id) or log from the parent")]
    ForkedProcess {
        /// The run's id.
        id: String,
        /// The process that created the run.
        parent_pid: u32,
        /// The process that used it.
        child_pid: u32,
    },

    /// The tracking server answered 401 (who are you?) or 403 (not allowed).
    #[error("{server} refused access to experiment {experiment:?} (HTTP {status}); {}", permission_hint(*.status))]
    PermissionDenied {
        /// The tracking server.
        server: String,
        /// The experiment (the run's project).
        experiment: String,
        /// 401 or 403.
        status: u16,
    },

    /// The host name of the tracking server does not resolve.
    #[error("cannot resolve the host of tracking server {server}; check the tracking URI (--tracking-uri, RANKLOG_TRACKING_URI or MLFLOW_TRACKING_URI)")]
    UnknownHost {
        /// The tracking server.
        server: String,
    },

    /// Nothing accepts connections at the tracking server's address.
    #[error("tracking server {server} refused the connection; start the MLflow server (`mlflow server --host ... --port ...`) or fix the tracking URI")]
    ConnectionRefused {
        /// The tracking server.
        server: String,
    },

    /// The TLS handshake with the tracking server failed.
    #[error("TLS handshake with tracking server {server} failed; check its certificate, or use http:// if the server does not speak TLS")]
    TlsFailure {
        /// The tracking server.
        server: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The server answers, but not with MLflow's REST API.
    #[error("{server} is not an MLflow tracking server (HTTP {status} on {path}); point the tracking URI at the server's root, e.g. http://host:5000")]
    NotMlflow {
        /// The tracking server.
        server: String,
        /// The API path that was asked for.
        path: String,
        /// The HTTP status of the answer.
        status: u16,
    },

    /// The tracking server rejected a request as invalid (HTTP 4xx other than 401/403/429).
    #[error("tracking server {server} rejected {path} (HTTP {status}, {code}): {message}")]
    ServerRejected {
        /// The tracking server.
        server: String,
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's error code, e.g. `INVALID_PARAMETER_VALUE`.
        code: String,
        /// The server's message.
        message: String,
    },

    /// The tracking server stayed unavailable (connection errors, 429 or 5xx) through every retry.
    #[error("tracking server {server} is unavailable ({detail}); the run is safe on disk: retry later with `ranklog sync`")]
    ServerUnavailable {
        /// The tracking server.
        server: String,
        /// The last failure.
        detail: String,
    },

    /// Uploading needs a tracking server and none is configured.
    #[error("no tracking server configured; pass --tracking-uri or set RANKLOG_TRACKING_URI (or MLFLOW_TRACKING_URI)")]
    NoTrackingServer,

    /// There is no per-user folder to keep credentials in.
    #[error("no folder for ranklog's credentials file; set RANKLOG_CONFIG_DIR or HOME")]
    NoConfigDir,

    /// Another process is uploading this run right now.
    #[error("run {} is being uploaded by another process (its online uploader or another `ranklog sync`); wait for it to end", .dir.display())]
    SyncInProgress {
        /// The run directory.
        dir: PathBuf,
    },

    /// Rank 0, which owns a single-writer run, has gone away.
    #[error("rank 0, which owns this single-writer run, is gone; rows from this rank are no longer recorded (the job's run keeps what arrived before)")]
    OwnerGone {
        /// This worker's rank.
        rank: u32,
    },

    /// Rank 0 took nothing from this worker for the stall timeout (frozen,
    /// overloaded, or cut off by the network).
    #[error("rank 0, which owns this single-writer run, took nothing from rank {rank} for {seconds} s (frozen, overloaded or cut off by the network); later rows from this rank are dropped and counted; if rank 0 is only slow, raise RANKLOG_QUEUE_STALL_TIMEOUT_S, or use the drop_newest policy to never wait")]
    OwnerUnresponsive {
        /// This worker's rank.
        rank: u32,
        /// The stall timeout that ran out.
        seconds: u64,
    },

    /// A worker could not reach rank 0 in time.
    #[error("rank {rank} could not reach rank 0 via {via} within {seconds} s; check that rank 0 runs ranklog::init with the same strategy and group (or set RANKLOG_QUEUE_CONNECT_TIMEOUT_S)")]
    OwnerUnreachable {
        /// This worker's rank.
        rank: u32,
        /// The transport and address tried.
        via: String,
        /// How long it waited.
        seconds: u64,
        /// The last error seen.
        #[source]
        source: std::io::Error,
    },

    /// Rank 0 refused this worker.
    #[error("rank 0 refused rank {rank}: {reason}")]
    QueueRefused {
        /// This worker's rank.
        rank: u32,
        /// The owner's reason.
        reason: String,
    },

    /// The single-writer queue could not be set up.
    #[error("{what}")]
    QueueSetup {
        /// What failed.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The config given to a run is not a JSON object.
    #[error("run config must be a JSON object of key/value pairs, got {found}; wrap it, e.g. json!({{\"config\": ...}})")]
    ConfigNotAnObject {
        /// The JSON type that was given.
        found: &'static str,
    },

    /// A launcher's rank variables are missing a partner, not numbers, or out of range.
    #[error("cannot tell this process's rank from the launcher's environment: {reason}")]
    RankEnvironment {
        /// The variable at fault.
        var: String,
        /// What is wrong, naming the variable and its value.
        reason: String,
    },

    /// A job of several ranks has no group key, so its runs could not be told apart from other jobs'.
    #[error("this process is one of {world_size} ranks ({launcher}) but no group key was found; set RANKLOG_GROUP (or Settings::group) to the same value on every rank, or start the job with `ranklog launch`, which sets it")]
    GroupRequired {
        /// The launcher whose variables were found.
        launcher: &'static str,
        /// The number of ranks in the job.
        world_size: u32,
    },

    /// No run under the root belongs to the group that was asked for.
    #[error("no runs of group {group:?} under {}; {}", .root.display(), groups_hint(.groups))]
    GroupNotFound {
        /// The group that was asked for.
        group: String,
        /// The root directory searched.
        root: std::path::PathBuf,
        /// The groups that do exist there, sorted.
        groups: Vec<String>,
    },

    /// A run cannot be exported because its writer is still writing it.
    #[error("run in {} is still being written; export it after it finishes (or set Settings::export_wandb to export at finish)", .dir.display())]
    RunStillRunning {
        /// The run directory.
        dir: PathBuf,
    },

    /// A `.wandb` file does not follow W&B's framing or record encoding.
    #[error("{} is not a valid W&B transaction log (byte {offset}): {reason}", .path.as_deref().map_or_else(|| "the input".to_string(), |p| p.display().to_string()))]
    BadWandbLog {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Byte offset of the first chunk that is wrong.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// `ranklog ui` could not listen on its address or could not keep serving.
    #[error("cannot serve the web page on {addr}; choose another port (--port, 0 picks a free one) or stop what uses this one")]
    Serve {
        /// The address asked for.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn groups_hint(groups: &[String]) -> String {
    match groups.len() {
        0 => "no run there has a group; list the runs with `ranklog runs`".to_string(),
        n if n <= 20 => format!("groups there: {}", groups.join(", ")),
        n => format!(
            "{n} groups there, e.g. {}; list them with `ranklog runs`",
            groups[..20].join(", ")
        ),
    }
}

/// What a user does after a 401 or a 403.
fn permission_hint(status: u16) -> &'static str {
    if status == 401 {
        "log in with `ranklog login`, or check RANKLOG_TRACKING_USERNAME/_PASSWORD/_TOKEN"
    } else {
        "ask an admin of the server for EDIT permission on the experiment, or log in as another user with `ranklog login`"
    }
}

/// A `Result` whose error is ranklog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

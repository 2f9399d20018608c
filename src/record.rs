//! The one vocabulary every part of ranklog speaks.
//!
//! A run is a sequence of [`Record`]s: the writer appends them to `run.rlog`,
//! readers (`ranklog show`, group views, sync, exports) read them back. The
//! order of the variants and of their fields is the on-disk format (postcard
//! encodes an enum by the index of its variant), so new variants go at the end
//! and any other change bumps [`crate::store::FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

use crate::rank::RankInfo;

/// One entry of a run log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// The first record: who the run is.
    Start(Box<Start>),
    /// Names a metric key once; history rows refer to it by `id`.
    Key {
        /// The small integer that rows use for this key.
        id: u32,
        /// The key, e.g. `train/loss`.
        name: String,
    },
    /// One row of metrics at one step.
    History(Row),
    /// A config update: a JSON object merged into the run's config.
    Config {
        /// The JSON object, as text.
        json: String,
    },
    /// One summary value (the last one written for a key wins).
    Summary {
        /// The summary key.
        key: String,
        /// The value, as JSON text.
        json: String,
    },
    /// The run was renamed.
    Name {
        /// The new name.
        name: String,
    },
    /// The git state of the working directory, captured after start.
    Git(GitInfo),
    /// The writer is alive; written when nothing else was for a while.
    Heartbeat {
        /// Microseconds since the run's start.
        t_us: i64,
    },
    /// A rank of a single-writer run went away before saying goodbye.
    RankLost {
        /// The rank.
        rank: u32,
        /// Why it is considered lost.
        reason: String,
    },
    /// Rows that were dropped on purpose (a `DropNewest` policy), counted.
    Dropped {
        /// The rank that dropped them.
        rank: u32,
        /// How many rows.
        count: u64,
    },
    /// The last record of a run that ended on purpose.
    Exit(Exit),
}

/// The identity of a run, as written in its first record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// The run id (8 characters of `[a-z0-9]` unless given).
    pub id: String,
    /// The human-readable name.
    pub name: String,
    /// The project.
    pub project: String,
    /// The group key shared by the ranks of one job, if any.
    pub group: Option<String>,
    /// The job type (e.g. `train`, `eval`), if any.
    pub job_type: Option<String>,
    /// The rank of the process that wrote the run, if it is part of a multi-rank job.
    pub rank: Option<RankInfo>,
    /// Wall-clock start, microseconds since the Unix epoch.
    pub start_unix_us: i64,
    /// The host name.
    pub host: String,
    /// The process id of the writer.
    pub pid: u32,
}

/// One row of metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The step.
    pub step: u64,
    /// Wall-clock time of the row, microseconds since the run's start (negative
    /// if the clock went backwards).
    pub t_us: i64,
    /// `(key id, value)` pairs; ids are named by earlier [`Record::Key`]s.
    pub values: Vec<(u32, f64)>,
}

/// The git state of the directory a run was started in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GitInfo {
    /// The commit SHA of `HEAD`, if the repository has one.
    pub commit: Option<String>,
    /// The branch, if `HEAD` is on one.
    pub branch: Option<String>,
    /// The `origin` remote URL, with any password removed.
    pub remote: Option<String>,
    /// Whether tracked files differ from `HEAD` (the diff is in `diff.patch`).
    pub dirty: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitState {
    /// `finish()` or the last handle dropped normally.
    Finished,
    /// The run was marked failed (a panic, or [`crate::Run::fail`]).
    Failed,
}

/// The last record of a run that ended on purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    /// Finished or failed.
    pub state: ExitState,
    /// 0 when finished, non-zero when failed.
    pub code: i32,
    /// The failure message (a panic message, for example).
    pub message: Option<String>,
    /// Microseconds since the run's start.
    pub t_us: i64,
}

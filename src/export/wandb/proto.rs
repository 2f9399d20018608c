//! The few messages of W&B's `wandb_internal` protobuf package that an export
//! writes, defined by hand with W&B's field numbers.
//!
//! Only the fields ranklog fills are declared; a decoder skips the others, so
//! these types also read `.wandb` files written by W&B itself (records of
//! other kinds decode with `record_type: None`). Field numbers follow
//! `wandb/proto/wandb_internal.proto` and must never change.

/// One entry of a `.wandb` transaction log (`wandb_internal.Record`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// Position in the log: 1, 2, 3…
    #[prost(int64, tag = "1")]
    pub num: i64,
    /// What the record is.
    #[prost(oneof = "RecordType", tags = "2, 3, 5, 17, 18, 21")]
    pub record_type: Option<RecordType>,
}

/// The kinds of [`Record`] ranklog writes.
// One run record per log: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum RecordType {
    /// One row of metrics.
    #[prost(message, tag = "2")]
    History(HistoryRecord),
    /// Summary updates.
    #[prost(message, tag = "3")]
    Summary(SummaryRecord),
    /// Config updates.
    #[prost(message, tag = "5")]
    Config(ConfigRecord),
    /// Who the run is; the first record after the header.
    #[prost(message, tag = "17")]
    Run(RunRecord),
    /// How the run ended.
    #[prost(message, tag = "18")]
    Exit(RunExitRecord),
    /// Which program wrote the log.
    #[prost(message, tag = "21")]
    Header(HeaderRecord),
}

/// `wandb_internal.HeaderRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderRecord {
    /// The producer of the log.
    #[prost(message, optional, tag = "1")]
    pub version_info: Option<VersionInfo>,
}

/// `wandb_internal.VersionInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionInfo {
    /// The program and version that wrote the log.
    #[prost(string, tag = "1")]
    pub producer: String,
    /// The oldest W&B server version that can read the data.
    #[prost(string, tag = "2")]
    pub min_consumer: String,
}

/// `wandb_internal.RunRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunRecord {
    /// The run id.
    #[prost(string, tag = "1")]
    pub run_id: String,
    /// The entity (user or team); empty for the default entity.
    #[prost(string, tag = "2")]
    pub entity: String,
    /// The project.
    #[prost(string, tag = "3")]
    pub project: String,
    /// Config given at start.
    #[prost(message, optional, tag = "4")]
    pub config: Option<ConfigRecord>,
    /// The group shared by the runs of one job.
    #[prost(string, tag = "6")]
    pub run_group: String,
    /// The job type.
    #[prost(string, tag = "7")]
    pub job_type: String,
    /// The run's display name.
    #[prost(string, tag = "8")]
    pub display_name: String,
    /// Tags.
    #[prost(string, repeated, tag = "10")]
    pub tags: Vec<String>,
    /// The host the run ran on.
    #[prost(string, tag = "13")]
    pub host: String,
    /// Wall-clock start.
    #[prost(message, optional, tag = "17")]
    pub start_time: Option<Timestamp>,
    /// Git state of the working directory.
    #[prost(message, optional, tag = "21")]
    pub git: Option<GitRepoRecord>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `wandb_internal.GitRepoRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GitRepoRecord {
    /// The remote URL.
    #[prost(string, tag = "1")]
    pub remote_url: String,
    /// The commit SHA.
    #[prost(string, tag = "2")]
    pub commit: String,
}

/// `wandb_internal.HistoryRecord`: one row.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryRecord {
    /// The values, `_step`, `_runtime` and `_timestamp` included.
    #[prost(message, repeated, tag = "1")]
    pub item: Vec<HistoryItem>,
    /// The row's step.
    #[prost(message, optional, tag = "2")]
    pub step: Option<HistoryStep>,
}

/// `wandb_internal.HistoryItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryItem {
    /// The metric key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// A nested key (W&B writes this instead of `key` for some metrics).
    #[prost(string, repeated, tag = "2")]
    pub nested_key: Vec<String>,
    /// The value as JSON; non-finite floats are `NaN`, `Infinity`, `-Infinity`.
    #[prost(string, tag = "16")]
    pub value_json: String,
}

/// `wandb_internal.HistoryStep`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct HistoryStep {
    /// The step.
    #[prost(int64, tag = "1")]
    pub num: i64,
}

/// `wandb_internal.ConfigRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigRecord {
    /// Keys set or replaced.
    #[prost(message, repeated, tag = "1")]
    pub update: Vec<ConfigItem>,
}

/// `wandb_internal.ConfigItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigItem {
    /// The top-level config key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// A nested key (unused by ranklog).
    #[prost(string, repeated, tag = "2")]
    pub nested_key: Vec<String>,
    /// The value as JSON.
    #[prost(string, tag = "16")]
    pub value_json: String,
}

/// `wandb_internal.SummaryRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryRecord {
    /// Keys set or replaced.
    #[prost(message, repeated, tag = "1")]
    pub update: Vec<SummaryItem>,
}

/// `wandb_internal.SummaryItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryItem {
    /// The summary key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// A nested key (unused by ranklog).
    #[prost(string, repeated, tag = "2")]
    pub nested_key: Vec<String>,
    /// The value as JSON; non-finite floats are `NaN`, `Infinity`, `-Infinity`.
    #[prost(string, tag = "16")]
    pub value_json: String,
}

/// `wandb_internal.RunExitRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunExitRecord {
    /// 0 marks the run finished, anything else failed.
    #[prost(int32, tag = "1")]
    pub exit_code: i32,
    /// Whole seconds from start to end.
    #[prost(int32, tag = "2")]
    pub runtime: i32,
}

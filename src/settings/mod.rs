//! How a run is configured: the [`Settings`] builder, and the one place that
//! reads `RANKLOG_*` environment variables.
//!
//! A value set in code wins over the environment, which wins over the default.
//! The rank comes from the launcher's variables ([`crate::rank`]) and, when no
//! group is set, the group key from the launcher's job id
//! (`TORCHELASTIC_RUN_ID`, `SLURM_JOB_ID`; see [`Settings::group`]).
//!
//! | variable | setting | default |
//! |---|---|---|
//! | `RANKLOG_MODE` | [`Settings::mode`]: `online`, `offline`, `disabled` | online if a tracking server is configured, else offline |
//! | `RANKLOG_DIR` | [`Settings::dir`] | `./ranklog` |
//! | `RANKLOG_PROJECT` | [`Settings::project`] | `uncategorized` |
//! | `RANKLOG_NAME` | [`Settings::name`] | `adjective-noun-N` |
//! | `RANKLOG_RUN_ID` | [`Settings::id`] | 8 random `[a-z0-9]` |
//! | `RANKLOG_GROUP` | [`Settings::group`] | none |
//! | `RANKLOG_JOB_TYPE` | [`Settings::job_type`] | none |
//! | `RANKLOG_STRATEGY` | [`Settings::strategy`]: `grouped`, `rank-zero-only` | `grouped` |
//! | `RANKLOG_SILENT` | [`Settings::silent`]: `1`/`true`/`yes` | false |
//! | `RANKLOG_FLUSH_INTERVAL_MS` | [`Settings::flush_interval`] | 100 |
//! | `RANKLOG_DISABLE_GIT` | `1` turns off [`Settings::capture_git`] | git captured |
//! | `RANKLOG_TRACKING_URI`, `MLFLOW_TRACKING_URI` | [`Settings::tracking_uri`] | none |
//! | `RANKLOG_EXPORT_WANDB` | [`Settings::export_wandb`] | no export |
//! | `RANKLOG_TRACKING_USERNAME`/`_PASSWORD`, `MLFLOW_TRACKING_USERNAME`/`_PASSWORD` | basic-auth credentials for the tracking server | `ranklog login`'s file |
//! | `RANKLOG_TRACKING_TOKEN`, `MLFLOW_TRACKING_TOKEN` | bearer token for the tracking server | `ranklog login`'s file |
//! | `RANKLOG_CONFIG_DIR` | where `ranklog login` keeps credentials | `$XDG_CONFIG_HOME/ranklog` or `~/.config/ranklog` |
//! | `RANKLOG_UPLOAD_TIMEOUT_S` | [`Settings::upload_timeout`] | 30 |
//! | `RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS` | [`Settings::upload_request_timeout`]; also read by `ranklog sync` | 60000 |
//! | `RANKLOG_UPLOAD_BACKOFF_MIN_MS`, `RANKLOG_UPLOAD_BACKOFF_MAX_MS` | [`Settings::upload_backoff`]; also read by `ranklog sync` | 250, 10000 |

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::names;
use crate::queue::{Merge, Policy, QueueConfig, Transport};
use crate::rank::{self, RankInfo};
use crate::strategy::Strategy;

mod queue;
mod tracking;

pub(crate) use tracking::{
    config_dir, tracking_credentials, tracking_uri_from_env, upload_tuning_from_env, UploadTuning,
};

/// Where a run's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write the run directory and stream it to a tracking server.
    Online,
    /// Write the run directory only; upload later with `ranklog sync`.
    Offline,
    /// Write nothing, start nothing: every method works and does nothing.
    Disabled,
}

impl Mode {
    /// The lower-case name (`online`, `offline`, `disabled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Online => "online",
            Mode::Offline => "offline",
            Mode::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "online" => Ok(Mode::Online),
            "offline" | "dryrun" => Ok(Mode::Offline),
            "disabled" => Ok(Mode::Disabled),
            _ => Err(Error::InvalidSetting {
                name: "mode".into(),
                value: s.to_string(),
                reason: "use online, offline or disabled".into(),
            }),
        }
    }
}

/// What [`crate::init`] does while another run of this process is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reinit {
    /// Finish every active run of this process, then start the new one.
    FinishPrevious,
    /// Return the most recent active run instead of starting a new one.
    ReturnPrevious,
    /// Start the new run beside the active ones (the default: independent
    /// code in one process never finishes another's run by surprise).
    #[default]
    CreateNew,
}

/// The settings of a run: a builder passed to [`crate::init`].
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ranklog::{Mode, Settings};
/// let settings = Settings::new()
///     .project("mnist")
///     .dir(dir.path())
///     .mode(Mode::Offline)
///     .config(serde_json::json!({"lr": 1e-3, "batch": 128}));
/// let run = ranklog::init(settings)?;
/// run.finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Settings {
    project: Option<String>,
    dir: Option<PathBuf>,
    mode: Option<Mode>,
    name: Option<String>,
    id: Option<String>,
    group: Option<String>,
    job_type: Option<String>,
    config: Option<serde_json::Value>,
    reinit: Option<Reinit>,
    silent: Option<bool>,
    flush_interval: Option<Duration>,
    capture_git: Option<bool>,
    tracking_uri: Option<String>,
    queue_capacity: Option<usize>,
    finish_timeout: Option<Duration>,
    strategy: Option<Strategy>,
    rank: Option<RankInfo>,
    transport: Option<Transport>,
    drop_policy: Option<Policy>,
    merge: Option<Merge>,
    queue_port: Option<u16>,
    connect_timeout: Option<Duration>,
    straggler_timeout: Option<Duration>,
    stall_timeout: Option<Duration>,
    export_wandb: Option<PathBuf>,
    upload_timeout: Option<Duration>,
    upload_request_timeout: Option<Duration>,
    upload_backoff: Option<(Duration, Duration)>,
}

/// Settings with every value decided.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub project: String,
    pub root: PathBuf,
    pub mode: Mode,
    pub name: Option<String>,
    pub id: Option<String>,
    pub group: Option<String>,
    pub job_type: Option<String>,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    pub reinit: Reinit,
    pub silent: bool,
    pub flush_interval: Duration,
    pub capture_git: bool,
    pub tracking_uri: Option<String>,
    pub queue_capacity: usize,
    pub finish_timeout: Duration,
    pub strategy: Strategy,
    /// The rank, when a launcher's variables were found.
    pub rank: Option<RankInfo>,
    /// How this rank reaches rank 0, for a single-writer job of several ranks.
    pub queue: Option<QueueConfig>,
    pub export_wandb: Option<PathBuf>,
    pub upload_timeout: Duration,
    pub upload_tuning: UploadTuning,
}

const DEFAULT_PROJECT: &str = "uncategorized";
const DEFAULT_DIR: &str = "ranklog";

impl Settings {
    /// Settings with nothing set: every value comes from the environment or its default.
    pub fn new() -> Settings {
        Settings::default()
    }

    /// The project the run belongs to (ASCII letters, digits, `-`, `_`, `.`).
    pub fn project(mut self, project: impl Into<String>) -> Settings {
        self.project = Some(project.into());
        self
    }

    /// The root directory that holds run directories.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Settings {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Online, offline or disabled.
    pub fn mode(mut self, mode: Mode) -> Settings {
        self.mode = Some(mode);
        self
    }

    /// The run's human-readable name; generated as `adjective-noun-N` when unset.
    pub fn name(mut self, name: impl Into<String>) -> Settings {
        self.name = Some(name.into());
        self
    }

    /// The run id (lower-case letters, digits, `-`, `_`); random when unset.
    pub fn id(mut self, id: impl Into<String>) -> Settings {
        self.id = Some(id.into());
        self
    }

    /// The group key shared by the runs of one job (same characters as a
    /// project).
    ///
    /// Unset, it is `RANKLOG_GROUP`, else `TORCHELASTIC_RUN_ID` unless that is
    /// `none`, else `SLURM_JOB_ID[.SLURM_STEP_ID]`. A [`Strategy::Grouped`] job
    /// of several ranks without any of these fails with
    /// [`Error::GroupRequired`].
    pub fn group(mut self, group: impl Into<String>) -> Settings {
        self.group = Some(group.into());
        self
    }

    /// The kind of job (`train`, `eval`, …).
    pub fn job_type(mut self, job_type: impl Into<String>) -> Settings {
        self.job_type = Some(job_type.into());
        self
    }

    /// The run's config (hyper-parameters): a JSON object.
    pub fn config(mut self, config: serde_json::Value) -> Settings {
        self.config = Some(config);
        self
    }

    /// What `init` does while another run of this process is active.
    pub fn reinit(mut self, reinit: Reinit) -> Settings {
        self.reinit = Some(reinit);
        self
    }

    /// Whether to skip the lines ranklog prints on stderr at init and finish.
    pub fn silent(mut self, silent: bool) -> Settings {
        self.silent = Some(silent);
        self
    }

    /// How often the writer hands data to the OS at the latest (default 100 ms).
    pub fn flush_interval(mut self, every: Duration) -> Settings {
        self.flush_interval = Some(every);
        self
    }

    /// Whether to record the git commit, remote and dirty state (default on).
    pub fn capture_git(mut self, capture: bool) -> Settings {
        self.capture_git = Some(capture);
        self
    }

    /// The tracking server for online mode.
    pub fn tracking_uri(mut self, uri: impl Into<String>) -> Settings {
        self.tracking_uri = Some(uri.into());
        self
    }

    /// Rows the channel between `log` and the writer holds (default 8192).
    /// When it is full, `log` waits for the writer: memory stays bounded and
    /// nothing is dropped.
    pub fn queue_capacity(mut self, rows: usize) -> Settings {
        self.queue_capacity = Some(rows);
        self
    }

    /// How long `finish` waits for the writer (default 60 s).
    pub fn finish_timeout(mut self, timeout: Duration) -> Settings {
        self.finish_timeout = Some(timeout);
        self
    }

    /// How the ranks of a multi-process job share the tracking (default
    /// [`Strategy::Grouped`]); `RANKLOG_STRATEGY` when unset.
    pub fn strategy(mut self, strategy: Strategy) -> Settings {
        self.strategy = Some(strategy);
        self
    }

    /// This process's rank, instead of the launcher's variables (for
    /// launchers ranklog does not know).
    pub fn rank(mut self, rank: RankInfo) -> Settings {
        self.rank = Some(rank);
        self
    }

    /// How single-writer workers reach rank 0 (default [`Transport::Auto`];
    /// `RANKLOG_TRANSPORT`).
    pub fn transport(mut self, transport: Transport) -> Settings {
        self.transport = Some(transport);
        self
    }

    /// What a single-writer worker's `log` does when its buffer is full
    /// (default [`Policy::Block`]; `RANKLOG_DROP_POLICY`).
    pub fn drop_policy(mut self, policy: Policy) -> Settings {
        self.drop_policy = Some(policy);
        self
    }

    /// How rank 0 merges the ranks' rows (default: per-rank keys plus mean,
    /// min and max; `RANKLOG_MERGE`, e.g. `per_rank,mean`).
    pub fn merge(mut self, merge: Merge) -> Settings {
        self.merge = Some(merge);
        self
    }

    /// The TCP port rank 0 listens on for single-writer workers on other
    /// nodes (default `MASTER_PORT + 1`, else 29501; `RANKLOG_QUEUE_PORT`).
    pub fn queue_port(mut self, port: u16) -> Settings {
        self.queue_port = Some(port);
        self
    }

    /// How long a single-writer worker waits for rank 0, and rank 0 for its
    /// workers (default 60 s; `RANKLOG_QUEUE_CONNECT_TIMEOUT_S`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Settings {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long rank 0 holds a step for a slow rank before writing it with
    /// the ranks that came (default 60 s; `RANKLOG_STRAGGLER_TIMEOUT_S`).
    pub fn straggler_timeout(mut self, timeout: Duration) -> Settings {
        self.straggler_timeout = Some(timeout);
        self
    }

    /// How long a single-writer worker waits for rank 0 to take its rows
    /// (default 60 s; `RANKLOG_QUEUE_STALL_TIMEOUT_S`). Under
    /// [`Policy::Block`], a `log` that found the buffer full for this long,
    /// or a send to rank 0 that made no progress for this long, makes the
    /// worker treat rank 0 as unresponsive: it warns, `log` returns
    /// [`Error::OwnerUnresponsive`], and later rows are dropped and counted.
    /// It also bounds a worker's `finish` while rank 0 takes nothing.
    pub fn queue_stall_timeout(mut self, timeout: Duration) -> Settings {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Exports the run as a W&B offline run under `<dir>/wandb/` when it
    /// finishes (see [`crate::export::wandb::export_run`]); `wandb sync`
    /// uploads it. A failed export makes [`crate::Run::finish`] return the
    /// error; the run itself is complete either way.
    pub fn export_wandb(mut self, dir: impl AsRef<Path>) -> Settings {
        self.export_wandb = Some(dir.as_ref().to_path_buf());
        self
    }

    /// How long `finish` waits, in online mode, for the upload to the
    /// tracking server to catch up (default 30 s); what is left is uploaded
    /// later with `ranklog sync`. `finish` returns within this bound plus
    /// 2 s even if the server hangs: a request still unanswered at the
    /// deadline is abandoned and the upload thread ends.
    pub fn upload_timeout(mut self, timeout: Duration) -> Settings {
        self.upload_timeout = Some(timeout);
        self
    }

    /// How long one request to the tracking server may take before it is
    /// abandoned and retried (default 60 s; `RANKLOG_UPLOAD_REQUEST_TIMEOUT_MS`).
    /// A request abandoned this way may still have been applied: the retry
    /// sends the same data, which the server keeps once.
    pub fn upload_request_timeout(mut self, timeout: Duration) -> Settings {
        self.upload_request_timeout = Some(timeout);
        self
    }

    /// The wait between retries of a failed upload request: `min` first,
    /// doubling (with jitter) up to `max` (default 250 ms and 10 s;
    /// `RANKLOG_UPLOAD_BACKOFF_MIN_MS`, `RANKLOG_UPLOAD_BACKOFF_MAX_MS`). A
    /// server's `Retry-After` answer is honoured even when longer.
    pub fn upload_backoff(mut self, min: Duration, max: Duration) -> Settings {
        self.upload_backoff = Some((min, max));
        self
    }

    /// The root directory these settings resolve to: [`Settings::dir`], else
    /// `RANKLOG_DIR`, else `./ranklog`.
    pub fn root(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| env_var("RANKLOG_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
    }

    /// Decides every value from code, then the environment, then defaults.
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        self.resolve_with(&env_var)
    }

    pub(crate) fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Resolved> {
        let pick = |code: &Option<String>, var: &str| code.clone().or_else(|| env(var));
        let project =
            pick(&self.project, "RANKLOG_PROJECT").unwrap_or_else(|| DEFAULT_PROJECT.into());
        names::check_name("project", &project)?;
        let group = pick(&self.group, "RANKLOG_GROUP");
        if let Some(g) = &group {
            names::check_name("group", g)?;
        }
        let strategy = match (self.strategy, env("RANKLOG_STRATEGY")) {
            (Some(s), _) => s,
            (None, Some(s)) => s.parse().map_err(|_| Error::InvalidSetting {
                name: "RANKLOG_STRATEGY".into(),
                value: s.clone(),
                reason: "use grouped, rank-zero-only or single-writer".into(),
            })?,
            (None, None) => Strategy::default(),
        };
        let detected = match self.rank {
            Some(info) => {
                if info.world_size == 0
                    || info.rank >= info.world_size
                    || info.local_rank >= info.local_world_size.max(1)
                {
                    return Err(Error::InvalidSetting {
                        name: "rank".into(),
                        value: format!("{info:?}"),
                        reason:
                            "rank must be below world_size and local_rank below local_world_size"
                                .into(),
                    });
                }
                Some(rank::Detected {
                    launcher: rank::Launcher::Explicit,
                    info,
                })
            }
            None => rank::detect(env)?,
        };
        let job_type = pick(&self.job_type, "RANKLOG_JOB_TYPE");
        if let Some(j) = &job_type {
            names::check_name("job_type", j)?;
        }
        let name = pick(&self.name, "RANKLOG_NAME");
        if let Some(n) = &name {
            names::check_run_name(n)?;
        }
        let id = pick(&self.id, "RANKLOG_RUN_ID");
        if let Some(i) = &id {
            names::check_id(i)?;
        }
        let tracking_uri = self
            .tracking_uri
            .clone()
            .or_else(|| env("RANKLOG_TRACKING_URI"))
            .or_else(|| env("MLFLOW_TRACKING_URI"))
            .filter(|u| !u.trim().is_empty());
        let mode = match (self.mode, env("RANKLOG_MODE")) {
            (Some(m), _) => m,
            (None, Some(s)) => s.parse().map_err(|_| Error::InvalidSetting {
                name: "RANKLOG_MODE".into(),
                value: s.clone(),
                reason: "use online, offline or disabled".into(),
            })?,
            (None, None) if tracking_uri.is_some() => Mode::Online,
            (None, None) => Mode::Offline,
        };
        // A disabled run writes nothing, so it needs no group.
        let group = crate::group::key::resolve(
            group,
            env,
            detected.as_ref(),
            strategy == Strategy::Grouped && mode != Mode::Disabled,
        )?;
        let queue = match mode {
            Mode::Disabled => None,
            _ => self.queue_config(
                strategy,
                detected.as_ref().map(|d| &d.info),
                group.as_deref(),
                env,
            )?,
        };
        let config = match &self.config {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(map)) => Some(map.clone()),
            Some(other) => {
                return Err(Error::ConfigNotAnObject {
                    found: json_type(other),
                })
            }
        };
        let flush_interval = match (self.flush_interval, env("RANKLOG_FLUSH_INTERVAL_MS")) {
            (Some(d), _) => d,
            (None, Some(ms)) => Duration::from_millis(parse_env("RANKLOG_FLUSH_INTERVAL_MS", &ms)?),
            (None, None) => Duration::from_millis(100),
        };
        let capture_git = match (self.capture_git, env("RANKLOG_DISABLE_GIT")) {
            (Some(c), _) => c,
            (None, Some(v)) => !parse_bool("RANKLOG_DISABLE_GIT", &v)?,
            (None, None) => true,
        };
        let silent = match (self.silent, env("RANKLOG_SILENT")) {
            (Some(s), _) => s,
            (None, Some(v)) => parse_bool("RANKLOG_SILENT", &v)?,
            (None, None) => false,
        };
        let queue_capacity = self.queue_capacity.unwrap_or(8192);
        if queue_capacity == 0 {
            return Err(Error::InvalidSetting {
                name: "queue_capacity".into(),
                value: "0".into(),
                reason: "the queue must hold at least one row".into(),
            });
        }
        let upload_timeout = match (self.upload_timeout, env("RANKLOG_UPLOAD_TIMEOUT_S")) {
            (Some(d), _) => d,
            (None, Some(v)) => Duration::from_secs(parse_env("RANKLOG_UPLOAD_TIMEOUT_S", &v)?),
            (None, None) => Duration::from_secs(30),
        };
        let upload_tuning =
            tracking::upload_tuning_with(env, self.upload_request_timeout, self.upload_backoff)?;
        Ok(Resolved {
            upload_timeout,
            upload_tuning,
            project,
            root: self
                .dir
                .clone()
                .or_else(|| env("RANKLOG_DIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
            mode,
            name,
            id,
            group,
            job_type,
            config,
            reinit: self.reinit.unwrap_or_default(),
            silent,
            flush_interval: flush_interval.max(Duration::from_millis(1)),
            capture_git,
            tracking_uri,
            queue_capacity,
            finish_timeout: self.finish_timeout.unwrap_or(Duration::from_secs(60)),
            strategy,
            rank: detected.map(|d| d.info),
            queue,
            export_wandb: self
                .export_wandb
                .clone()
                .or_else(|| env("RANKLOG_EXPORT_WANDB").map(PathBuf::from)),
        })
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env(name: &str, value: &str) -> Result<u64> {
    value.trim().parse().map_err(|_| Error::InvalidSetting {
        name: name.into(),
        value: value.into(),
        reason: "expected a whole number".into(),
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::InvalidSetting {
            name: name.into(),
            value: value.into(),
            reason: "expected 1/true/yes or 0/false/no".into(),
        }),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// An environment for tests: looks variables up in a table.
#[cfg(test)]
pub(crate) fn env_table(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[cfg(test)]
mod tests;

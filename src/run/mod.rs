//! The run handle and its lifecycle.
//!
//! [`init`] starts a run and returns a [`Run`]: a cheap, cloneable handle
//! that any thread may log through. The run ends when [`Run::finish`] is
//! called or when its last handle is dropped; a handle dropped while its
//! thread panics marks the run failed with the panic message.
//!
//! `Run::log` only takes an uncontended lock, looks its keys up in a hash map
//! and puts the row on a bounded channel; the writer thread does the I/O.
//! When the channel is full, `log` waits for the writer (lossless and bounded).

mod clock;
mod git;
mod identity;
mod inner;
mod registry;
mod row;
pub(crate) mod sink;
pub(crate) mod summary;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::record::{ExitState, Record};
use crate::settings::{Mode, Reinit, Settings};
use crate::store;
use crate::strategy::Strategy;

pub(crate) use clock::{now_unix_us, since_start_us};
pub use summary::SummaryValue;
pub use value::MetricValue;

pub(crate) use inner::Inner;
use sink::Sink;

/// Starts a run.
///
/// In a multi-process job the rank comes from the launcher's environment
/// (see [`crate::rank`]) and what this rank gets from [`Settings::strategy`]:
/// under [`Strategy::Grouped`] its own run, in the job's group and named
/// `<group>-rank<N>` unless named; under [`Strategy::RankZeroOnly`] a
/// disabled run on every rank but 0.
///
/// What happens while another run of this process is active depends on
/// [`Settings::reinit`]: by default the new run starts beside it.
///
/// # Errors
///
/// [`Error::InvalidName`]/[`Error::InvalidSetting`] for bad settings,
/// [`Error::RankEnvironment`] for inconsistent launcher variables,
/// [`Error::GroupRequired`] for a grouped job of several ranks without a group,
/// [`Error::RunIdExists`] when the id is taken in the root, [`Error::Write`]
/// when the root cannot be written, [`Error::NoTrackingServer`] for online
/// mode without a tracking server. An unreachable server is not an error:
/// the run goes on locally and the upload is retried (see [`crate::sync`]).
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use ranklog::{Mode, Settings};
/// let run = ranklog::init(Settings::new().project("mnist").dir(dir.path()).mode(Mode::Offline))?;
/// run.log([("loss", 0.25), ("acc", 0.91)])?;
/// run.log_at(100, [("val/loss", 0.3)])?;
/// run.summary("best_acc", 0.97)?;
/// let done = run.finish()?;
/// assert_eq!(done.steps, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn init(settings: Settings) -> Result<Run> {
    let cfg = settings.resolve()?;
    registry::install_hooks();
    match cfg.reinit {
        Reinit::FinishPrevious => {
            for previous in registry::active() {
                if let Err(e) = previous.finish(None) {
                    tracing::warn!(run = %previous.id, error = %e, "ranklog: finishing the previous run failed");
                }
            }
        }
        Reinit::ReturnPrevious => {
            if let Some(inner) = registry::active().pop() {
                return Ok(Run { inner });
            }
        }
        Reinit::CreateNew => {}
    }
    let silent_rank =
        cfg.strategy == Strategy::RankZeroOnly && cfg.rank.is_some_and(|r| r.rank > 0);
    let inner = match cfg.mode {
        Mode::Disabled => Inner::disabled(&cfg)?,
        _ if silent_rank => Inner::disabled(&cfg)?,
        Mode::Offline | Mode::Online => match (&cfg.queue, cfg.rank) {
            (Some(queue), Some(rank)) if rank.rank > 0 => Inner::worker(&cfg, queue, &rank)?,
            (Some(queue), Some(rank)) => Inner::local(&cfg, |local, id, name| {
                Ok(Sink::Owner(crate::queue::start_owner(
                    queue, &rank, local, id, name,
                )?))
            })?,
            _ => Inner::local(&cfg, |local, _, _| Ok(local))?,
        },
    };
    let inner = Arc::new(inner);
    registry::register(&inner);
    Ok(Run { inner })
}

/// A handle to a run: `Clone + Send + Sync`, so a data-loader thread can log too.
///
/// Every method works in every mode; in [`Mode::Disabled`] they do nothing.
#[derive(Clone)]
#[must_use = "dropping the last handle of a run finishes it"]
pub struct Run {
    inner: Arc<Inner>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Run id.
    pub id: String,
    /// Run name.
    pub name: String,
    /// Run directory (`None` when disabled).
    pub dir: Option<PathBuf>,
    /// Finished or failed.
    pub state: ExitState,
    /// Distinct steps logged.
    pub steps: u64,
    /// Metric values logged.
    pub points: u64,
    /// Size of the run log.
    pub log_bytes: u64,
    /// Time from start to finish.
    pub duration: Duration,
    /// Rows this rank dropped under [`crate::queue::Policy::DropNewest`].
    pub dropped: u64,
    /// In online mode, where the upload to the tracking server stood.
    pub upload: Option<crate::sync::UploadStatus>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(msg) = registry::panic_message() {
            self.inner.panic.lock().get_or_insert(msg);
        }
    }
}

impl Run {
    /// The run id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The run's current name.
    pub fn name(&self) -> String {
        self.inner.name.read().clone()
    }

    /// Renames the run; `run.set_name(run.id())` makes the name the id.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a blank name, one with control characters or `/`.
    pub fn set_name(&self, name: impl Into<String>) -> Result<()> {
        let name = name.into();
        crate::names::check_run_name(&name)?;
        self.inner.with_row(|_, emit| {
            emit(Record::Name { name: name.clone() });
            Ok(())
        })?;
        *self.inner.name.write() = name;
        Ok(())
    }

    /// The run directory; `None` for a disabled run.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// The step the next [`Run::log`] commits at.
    pub fn step(&self) -> u64 {
        self.inner.state.lock().row.step()
    }

    /// Logs one row at the current step, then moves to the next step.
    ///
    /// Values accumulated with [`Run::accumulate`] join this row.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad key (nothing of the row is written),
    /// [`Error::RunFinished`] after finish, [`Error::ForkedProcess`] in a
    /// forked child.
    #[inline]
    pub fn log<I, K, V>(&self, metrics: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: MetricValue,
    {
        if matches!(self.inner.sink, Sink::Disabled) {
            return Ok(());
        }
        let t_us = self.inner.t_us();
        self.inner.with_row(|row, emit| {
            let values = row.values(metrics, &mut *emit)?;
            row.commit(None, values, t_us, &mut *emit);
            Ok(())
        })
    }

    /// Logs one row at `step`; the next [`Run::log`] uses `step + 1`.
    ///
    /// Logging again at the same step adds to that step.
    ///
    /// # Errors
    ///
    /// [`Error::StepWentBackwards`] if `step` is lower than the current step
    /// (nothing is written); otherwise as [`Run::log`].
    pub fn log_at<I, K, V>(&self, step: u64, metrics: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: MetricValue,
    {
        if matches!(self.inner.sink, Sink::Disabled) {
            return Ok(());
        }
        let t_us = self.inner.t_us();
        self.inner.with_row(|row, emit| {
            row.check_step(step)?;
            let values = row.values(metrics, &mut *emit)?;
            row.commit(Some(step), values, t_us, &mut *emit);
            Ok(())
        })
    }

    /// Adds values to the current step's row without committing it (W&B's
    /// `commit=False`); the next [`Run::log`] or [`Run::commit`] commits them
    /// together.
    ///
    /// # Errors
    ///
    /// As [`Run::log`].
    pub fn accumulate<I, K, V>(&self, metrics: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: MetricValue,
    {
        if matches!(self.inner.sink, Sink::Disabled) {
            return Ok(());
        }
        self.inner.with_row(|row, emit| {
            let values = row.values(metrics, &mut *emit)?;
            row.accumulate(values);
            Ok(())
        })
    }

    /// Commits the values accumulated with [`Run::accumulate`], if any.
    ///
    /// # Errors
    ///
    /// [`Error::RunFinished`] after finish, [`Error::ForkedProcess`] in a forked child.
    pub fn commit(&self) -> Result<()> {
        let t_us = self.inner.t_us();
        self.inner.with_row(|row, emit| {
            row.commit_pending(t_us, emit);
            Ok(())
        })
    }

    /// Sets a summary value (the last one set for a key wins).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad key; otherwise as [`Run::commit`].
    pub fn summary(&self, key: &str, value: impl SummaryValue) -> Result<()> {
        crate::names::check_key(key)?;
        let json = value.to_json();
        self.inner.with_row(|_, emit| {
            emit(Record::Summary {
                key: key.to_string(),
                json,
            });
            Ok(())
        })
    }

    /// Merges a JSON object into the run's config.
    ///
    /// # Errors
    ///
    /// [`Error::ConfigNotAnObject`] if `config` is not an object; otherwise as [`Run::commit`].
    pub fn update_config(&self, config: serde_json::Value) -> Result<()> {
        if !config.is_object() {
            return Err(Error::ConfigNotAnObject {
                found: match config {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Number(_) => "a number",
                    serde_json::Value::Bool(_) => "a boolean",
                    _ => "null",
                },
            });
        }
        self.inner.with_row(|_, emit| {
            emit(Record::Config {
                json: config.to_string(),
            });
            Ok(())
        })
    }

    /// Waits until everything logged so far is in the run log file (handed to
    /// the OS, so it survives the process being killed). On rank 0 of a
    /// single-writer job this includes the steps still waiting for other
    /// ranks (see [`crate::queue`]).
    ///
    /// # Errors
    ///
    /// [`Error::WriteFailed`] if the disk refused the write (the data is kept
    /// and retried), [`Error::FinishTimeout`] if the writer did not answer in time.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_usable()?;
        self.inner
            .sink
            .flush(&self.inner.id, self.inner.finish_timeout)
            .map_err(|e| match e {
                Error::WriteFailed { lost, source, .. } => Error::WriteFailed {
                    path: self
                        .inner
                        .dir
                        .clone()
                        .unwrap_or_default()
                        .join(store::LOG_FILE),
                    lost,
                    source,
                },
                other => other,
            })
    }

    /// Finishes the run: commits any accumulated row, writes the exit record
    /// and `summary.json`, and syncs the log to disk. Calling it again returns
    /// the same report; other handles get [`Error::RunFinished`] from `log`.
    ///
    /// # Errors
    ///
    /// [`Error::WriteFailed`] if part of the run could not be written (what was
    /// written is intact), [`Error::FinishTimeout`] if the writer did not answer
    /// within [`Settings::finish_timeout`]. With [`Settings::export_wandb`],
    /// the export's error ([`Error::Write`], for example) once the run itself
    /// has finished; calling `finish` again then returns the report.
    pub fn finish(&self) -> Result<Finished> {
        self.inner.finish(None)
    }

    /// Finishes the run as failed, with a message (exit code 1).
    ///
    /// # Errors
    ///
    /// As [`Run::finish`].
    pub fn fail(&self, message: impl Into<String>) -> Result<Finished> {
        self.inner.finish(Some(message.into()))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.inner.id)
            .field("name", &*self.inner.name.read())
            .field("dir", &self.inner.dir)
            .finish()
    }
}

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
mod registry;
mod row;
pub(crate) mod sink;
pub(crate) mod summary;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::console;
use crate::error::{Error, Result};
use crate::record::{Exit, ExitState, Record, Start};
use crate::settings::{Mode, Reinit, Resolved, Settings};
use crate::store::{self, Meta, Writer};
use crate::strategy::Strategy;

pub(crate) use clock::{now_unix_us, since_start_us};
pub use summary::SummaryValue;
pub use value::MetricValue;

use row::RowState;
use sink::{LocalSink, Sink, SinkError};

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

pub(crate) struct Inner {
    id: String,
    name: RwLock<String>,
    dir: Option<PathBuf>,
    start_unix_us: i64,
    silent: bool,
    finish_timeout: Duration,
    /// Where to export a W&B offline run at finish, if anywhere.
    export_wandb: Option<PathBuf>,
    upload_timeout: Duration,
    /// The live upload of an online run.
    upload: Option<crate::sync::live::LiveUpload>,
    /// Fork generation and pid at creation: a forked child must not use the run.
    fork_generation: u64,
    pid: u32,
    /// The process's rank (0 outside multi-rank jobs).
    rank: u32,
    state: Mutex<State>,
    sink: Sink,
    git: Mutex<Option<std::thread::JoinHandle<()>>>,
    panic: Mutex<Option<String>>,
}

struct State {
    row: RowState,
    finished: Option<Finished>,
}

impl Inner {
    fn disabled(cfg: &Resolved) -> Result<Inner> {
        let id = match &cfg.id {
            Some(id) => id.clone(),
            None => identity::new_id()?,
        };
        let name = cfg.name.clone().unwrap_or_else(|| id.clone());
        Ok(Inner::new(
            id,
            name,
            None,
            now_unix_us(),
            cfg,
            Sink::Disabled,
        ))
    }

    /// A run with its own directory (offline, or online with a live
    /// upload); `wrap` may put the local writer behind another sink (the
    /// single-writer owner).
    fn local(cfg: &Resolved, wrap: impl FnOnce(Sink, &str, &str) -> Result<Sink>) -> Result<Inner> {
        let target = match cfg.mode {
            Mode::Online => Some(crate::sync::Target::new(
                cfg.tracking_uri.clone().ok_or(Error::NoTrackingServer)?,
            )),
            _ => None,
        };
        let id = match &cfg.id {
            Some(id) => id.clone(),
            None => identity::new_id()?,
        };
        let start_unix_us = now_unix_us();
        let started =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_unix_us) * 1000)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        let dir = store::create_run_dir(&cfg.root, started, &id)?;
        let name = match (&cfg.name, &cfg.group, cfg.rank) {
            (Some(n), _, _) => n.clone(),
            (None, Some(group), Some(rank)) if cfg.strategy == Strategy::Grouped => {
                crate::group::key::run_name(group, rank.rank)
            }
            (None, _, _) => identity::new_name(store::next_name_number(&cfg.root, &cfg.project)?),
        };
        // A rank-zero-only run stands for the whole job, not for one rank.
        let rank = match cfg.strategy {
            Strategy::RankZeroOnly => None,
            _ => cfg.rank,
        };
        let host = crate::sys::hostname();
        let pid = std::process::id();
        let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
        let meta = Meta {
            format: store::FORMAT_VERSION,
            id: id.clone(),
            name: name.clone(),
            project: cfg.project.clone(),
            group: cfg.group.clone(),
            job_type: cfg.job_type.clone(),
            rank,
            host: host.clone(),
            pid,
            pid_start: crate::sys::process_start_ticks(pid),
            program: argv.next().unwrap_or_default(),
            args: argv.collect(),
            cwd: std::env::current_dir()
                .ok()
                .map(|p| p.display().to_string()),
            started: clock::rfc3339(started),
            start_unix_ms: start_unix_us.div_euclid(1000),
            ranklog_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: cfg.mode.as_str().to_string(),
            git: None,
        };
        let mut log = Writer::create(&dir.join(store::LOG_FILE))?;
        log.append(&Record::Start(Box::new(Start {
            id: id.clone(),
            name: name.clone(),
            project: cfg.project.clone(),
            group: cfg.group.clone(),
            job_type: cfg.job_type.clone(),
            rank,
            start_unix_us,
            host,
            pid,
        })));
        if let Some(config) = &cfg.config {
            log.append(&Record::Config {
                json: serde_json::Value::Object(config.clone()).to_string(),
            });
        }
        log.flush().map_err(|source| Error::Write {
            path: log.path().to_path_buf(),
            source,
        })?;
        store::write_json(&dir.join(store::META_FILE), &meta)?;
        store::update_latest(&cfg.root, &dir);
        let local = Sink::Local(LocalSink::start(
            log,
            meta,
            dir.clone(),
            cfg.queue_capacity,
            cfg.flush_interval,
        )?);
        let sink = wrap(local, &id, &name)?;
        let mut inner = Inner::new(id, name, Some(dir.clone()), start_unix_us, cfg, sink);
        if let Some(target) = target {
            inner.upload = Some(crate::sync::live::LiveUpload::start(&dir, target));
        }
        if cfg.capture_git {
            inner.start_git_capture();
        }
        if !inner.silent {
            if let Some(dir) = &inner.dir {
                console::started(&inner.name.read(), &inner.id, dir);
            }
        }
        Ok(inner)
    }

    /// A worker rank of a single-writer job: no directory, rows go to rank 0.
    fn worker(
        cfg: &Resolved,
        queue: &crate::queue::QueueConfig,
        rank: &crate::RankInfo,
    ) -> Result<Inner> {
        let (sink, id, name) = crate::queue::connect_worker(queue, rank)?;
        Ok(Inner::new(
            id,
            name,
            None,
            now_unix_us(),
            cfg,
            Sink::Worker(sink),
        ))
    }

    fn new(
        id: String,
        name: String,
        dir: Option<PathBuf>,
        start_unix_us: i64,
        cfg: &Resolved,
        sink: Sink,
    ) -> Inner {
        Inner {
            id,
            name: RwLock::new(name),
            dir,
            start_unix_us,
            silent: cfg.silent,
            finish_timeout: cfg.finish_timeout,
            export_wandb: cfg.export_wandb.clone(),
            upload_timeout: cfg.upload_timeout,
            upload: None,
            fork_generation: registry::fork_generation(),
            pid: std::process::id(),
            rank: cfg.rank.map_or(0, |r| r.rank),
            state: Mutex::new(State {
                row: RowState::default(),
                finished: None,
            }),
            sink,
            git: Mutex::new(None),
            panic: Mutex::new(None),
        }
    }

    fn start_git_capture(&self) {
        let (Some(sender), Some(dir)) = (self.sink.record_sender(), self.dir.clone()) else {
            return;
        };
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let spawned = std::thread::Builder::new()
            .name("ranklog-git".into())
            .spawn(move || {
                if let Some(info) = git::capture(&cwd, Some(&dir.join(store::DIFF_FILE))) {
                    sender.send(Record::Git(info));
                }
            });
        match spawned {
            Ok(handle) => *self.git.lock() = Some(handle),
            Err(e) => tracing::debug!(error = %e, "ranklog: no thread for git capture"),
        }
    }

    fn is_finished(&self) -> bool {
        self.state.lock().finished.is_some()
    }

    #[inline]
    fn check_usable(&self) -> Result<()> {
        if registry::fork_generation() != self.fork_generation {
            return Err(Error::ForkedProcess {
                id: self.id.clone(),
                parent_pid: self.pid,
                child_pid: std::process::id(),
            });
        }
        Ok(())
    }

    /// Runs `f` on the row state, sending what it emits, unless the run finished.
    #[inline]
    fn with_row<T>(
        &self,
        f: impl FnOnce(&mut RowState, &mut dyn FnMut(Record)) -> Result<T>,
    ) -> Result<T> {
        self.check_usable()?;
        let mut state = self.state.lock();
        if state.finished.is_some() {
            return Err(Error::RunFinished {
                id: self.id.clone(),
            });
        }
        let mut failed = None;
        let mut emit = |r: Record| {
            if failed.is_none() {
                failed = self.sink.send(r).err();
            }
        };
        let out = f(&mut state.row, &mut emit)?;
        match failed {
            None => {}
            Some(SinkError::WriterGone) => {
                return Err(Error::WriterGone {
                    id: self.id.clone(),
                })
            }
            Some(SinkError::OwnerGone) => return Err(Error::OwnerGone { rank: self.rank }),
        }
        Ok(out)
    }

    fn t_us(&self) -> i64 {
        since_start_us(self.start_unix_us)
    }

    fn finish(&self, failure: Option<String>) -> Result<Finished> {
        self.check_usable()?;
        if let Some(handle) = self.git.lock().take() {
            let _ = handle.join();
        }
        let mut state = self.state.lock();
        if let Some(done) = &state.finished {
            return Ok(done.clone());
        }
        let t_us = self.t_us();
        let sink = &self.sink;
        state.row.commit_pending(t_us, &mut |r| {
            let _ = sink.send(r);
        });
        let failure = failure.or_else(|| self.panic.lock().take());
        let exit = Exit {
            state: if failure.is_some() {
                ExitState::Failed
            } else {
                ExitState::Finished
            },
            code: i32::from(failure.is_some()),
            message: failure,
            t_us,
        };
        let exit_state = exit.state;
        let report = self.sink.finish(&self.id, exit, self.finish_timeout);
        let name = self.name.read().clone();
        let mut report = match report {
            Ok(r) => r,
            Err(e) => {
                state.finished = Some(self.finished_with(name, exit_state, None, t_us));
                return Err(e);
            }
        };
        let failure = report.as_mut().and_then(|r| r.failure.take());
        let mut done = self.finished_with(name, exit_state, report.as_ref(), t_us);
        let (steps, points, log_bytes) = (done.steps, done.points, done.log_bytes);
        done.upload = self.upload.as_ref().map(|u| u.finish(self.upload_timeout));
        state.finished = Some(done.clone());
        drop(state);
        if !self.silent {
            if let Some(dir) = &self.dir {
                let word = match exit_state {
                    ExitState::Finished => "finished",
                    ExitState::Failed => "failed",
                };
                console::finished(
                    &done.name,
                    word,
                    steps,
                    points,
                    log_bytes,
                    done.duration.as_secs_f64(),
                    dir,
                    done.upload.as_ref(),
                );
            }
        }
        if let Some((source, lost)) = failure {
            return Err(Error::WriteFailed {
                path: self.dir.clone().unwrap_or_default().join(store::LOG_FILE),
                lost,
                source,
            });
        }
        if let (Some(out), Some(dir)) = (&self.export_wandb, &self.dir) {
            let report = crate::export::wandb::export_run(dir, out)?;
            if !self.silent {
                console::exported(&report.file, &report.offline_dir);
            }
        }
        Ok(done)
    }

    fn finished_with(
        &self,
        name: String,
        state: ExitState,
        report: Option<&sink::Report>,
        t_us: i64,
    ) -> Finished {
        Finished {
            id: self.id.clone(),
            name,
            dir: self.dir.clone(),
            state,
            steps: report.map_or(0, |r| r.steps),
            points: report.map_or(0, |r| r.points),
            log_bytes: report.map_or(0, |r| r.log_bytes),
            dropped: report.map_or(0, |r| r.dropped),
            duration: Duration::from_micros(t_us.max(0) as u64),
            upload: None,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if registry::fork_generation() != self.fork_generation {
            return;
        }
        let panic = registry::panic_message();
        if let Err(e) = self.finish(panic) {
            tracing::warn!(run = %self.id, error = %e, "ranklog: finishing the run on drop failed");
        }
    }
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
    /// the OS, so it survives the process being killed).
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

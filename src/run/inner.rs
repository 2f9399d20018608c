//! The state behind a run handle: how a run is created, fed and finished.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::row::RowState;
use super::sink::{self, LocalSink, Sink, SinkError};
use super::{clock, git, identity, now_unix_us, registry, since_start_us, Finished};
use crate::console;
use crate::error::{Error, Result};
use crate::record::{Exit, ExitState, Record, Start};
use crate::settings::{Mode, Resolved};
use crate::store::{self, Meta, Writer};
use crate::strategy::Strategy;

pub(crate) struct Inner {
    pub(super) id: String,
    pub(super) name: RwLock<String>,
    pub(super) dir: Option<PathBuf>,
    pub(super) start_unix_us: i64,
    pub(super) silent: bool,
    pub(super) finish_timeout: Duration,
    /// Where to export a W&B offline run at finish, if anywhere.
    pub(super) export_wandb: Option<PathBuf>,
    pub(super) upload_timeout: Duration,
    /// The live upload of an online run.
    pub(super) upload: Option<crate::sync::live::LiveUpload>,
    /// Fork generation and pid at creation: a forked child must not use the run.
    pub(super) fork_generation: u64,
    pub(super) pid: u32,
    /// The process's rank (0 outside multi-rank jobs).
    pub(super) rank: u32,
    pub(super) state: Mutex<State>,
    pub(super) sink: Sink,
    pub(super) git: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(super) panic: Mutex<Option<String>>,
}

pub(super) struct State {
    pub(super) row: RowState,
    pub(super) finished: Option<Finished>,
}

impl Inner {
    pub(super) fn disabled(cfg: &Resolved) -> Result<Inner> {
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
    pub(super) fn local(
        cfg: &Resolved,
        wrap: impl FnOnce(Sink, &str, &str) -> Result<Sink>,
    ) -> Result<Inner> {
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
            inner.upload = Some(crate::sync::live::LiveUpload::start(
                &dir,
                target,
                cfg.upload_tuning,
            ));
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
    pub(super) fn worker(
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

    pub(super) fn new(
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

    pub(super) fn start_git_capture(&self) {
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

    pub(super) fn is_finished(&self) -> bool {
        self.state.lock().finished.is_some()
    }

    #[inline]
    pub(super) fn check_usable(&self) -> Result<()> {
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
    pub(super) fn with_row<T>(
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
            Some(SinkError::OwnerUnresponsive { seconds }) => {
                return Err(Error::OwnerUnresponsive {
                    rank: self.rank,
                    seconds,
                })
            }
        }
        Ok(out)
    }

    pub(super) fn t_us(&self) -> i64 {
        since_start_us(self.start_unix_us)
    }

    pub(super) fn finish(&self, failure: Option<String>) -> Result<Finished> {
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

    pub(super) fn finished_with(
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

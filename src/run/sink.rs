//! Where a run's records go: its own log through a writer thread, or nowhere.
//!
//! This is the one place that decides: [`Sink::Local`] for offline (and,
//! later, online) runs, [`Sink::Disabled`] for disabled ones. `Run` never asks
//! which mode it is in.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::queue::{OwnerSink, SendError, WorkerSink};
use crate::record::{Exit, ExitState, Record};
use crate::store::{self, FinalSummary, Meta, Writer, HEARTBEAT_INTERVAL};

/// Backlog of unwritten data kept while the disk refuses writes; past it the
/// oldest unwritten records are dropped and counted.
const MAX_BACKLOG: usize = 64 << 20;

/// Unwritten bytes that make the writer flush before the interval is up, so
/// its memory stays small however fast rows come.
const EAGER_FLUSH: usize = 1 << 20;

/// What the writer says when it is done.
#[derive(Debug)]
pub(crate) struct Report {
    pub steps: u64,
    pub points: u64,
    pub log_bytes: u64,
    pub failure: Option<(io::Error, u64)>,
    /// Rows dropped under a drop policy (workers of a single-writer job).
    pub dropped: u64,
}

/// Destination of a run's records.
pub(crate) enum Sink {
    /// Nothing is written and nothing runs.
    Disabled,
    /// A writer thread appends to the run's own log.
    Local(LocalSink),
    /// Rank 0 of a single-writer job: merged with every rank's rows, then written.
    Owner(OwnerSink),
    /// Another rank of a single-writer job: sent to rank 0.
    Worker(WorkerSink),
}

/// Why a record could not be queued.
pub(crate) enum SinkError {
    /// The writer (or the owner's thread) is gone.
    WriterGone,
    /// Rank 0 is gone (a worker under the blocking policy).
    OwnerGone,
    /// Rank 0 took nothing for the stall timeout (a worker under the blocking policy).
    OwnerUnresponsive {
        /// The stall timeout.
        seconds: u64,
    },
}

/// The sending side of a writer thread.
///
/// Rows go on a bounded data channel with `try_send`, which never wakes the
/// writer: the writer wakes on its own every few milliseconds and drains the
/// channel. So `log` makes no system call unless the channel is full, when it
/// wakes the writer and waits for room (memory stays bounded, nothing is
/// dropped). Flush and finish requests go on a control channel and wake the
/// writer at once.
pub(crate) struct LocalSink {
    data: Sender<Record>,
    control: Sender<Control>,
    writer: std::thread::Thread,
    thread: Mutex<Option<JoinHandle<()>>>,
}

enum Control {
    Flush(Sender<io::Result<()>>),
    Finish(Box<Exit>, Sender<Report>),
}

impl Sink {
    /// Queues one record; waits while the queue is full.
    #[inline]
    pub(crate) fn send(&self, record: Record) -> std::result::Result<(), SinkError> {
        match self {
            Sink::Disabled => Ok(()),
            Sink::Local(l) => l.send(record).map_err(|()| SinkError::WriterGone),
            Sink::Owner(o) => o.send(record).map_err(|()| SinkError::WriterGone),
            Sink::Worker(w) => w.send(record).map_err(|e| match e {
                SendError::OwnerGone => SinkError::OwnerGone,
                SendError::OwnerUnresponsive { seconds } => {
                    SinkError::OwnerUnresponsive { seconds }
                }
            }),
        }
    }

    /// A sender for a helper thread (git capture) to add records.
    pub(crate) fn record_sender(&self) -> Option<RecordSender> {
        match self {
            Sink::Local(l) => Some(RecordSender(RecordTarget::Local(l.data.clone()))),
            Sink::Owner(o) => Some(RecordSender(RecordTarget::Owner(o.sender()))),
            Sink::Disabled | Sink::Worker(_) => None,
        }
    }

    /// Waits until everything queued so far is in the file.
    pub(crate) fn flush(&self, id: &str, timeout: Duration) -> Result<()> {
        let l = match self {
            Sink::Local(l) => l,
            Sink::Owner(o) => return o.flush(id, timeout),
            Sink::Disabled | Sink::Worker(_) => return Ok(()),
        };
        let (ack_tx, ack) = crossbeam_channel::bounded(1);
        l.request(Control::Flush(ack_tx)).map_err(|_| gone(id))?;
        match ack.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::WriteFailed {
                path: PathBuf::from(store::LOG_FILE),
                lost: 0,
                source,
            }),
            Err(RecvTimeoutError::Timeout) => Err(Error::FinishTimeout {
                id: id.to_string(),
                seconds: timeout.as_secs(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(gone(id)),
        }
    }

    /// Writes the exit record, syncs the log and stops the writer.
    pub(crate) fn finish(&self, id: &str, exit: Exit, timeout: Duration) -> Result<Option<Report>> {
        let l = match self {
            Sink::Local(l) => l,
            Sink::Owner(o) => return o.finish(id, exit, timeout),
            Sink::Worker(w) => {
                let r = w.finish(timeout);
                if !r.delivered {
                    let rank = w.rank();
                    return Err(match w.lost() {
                        SendError::OwnerUnresponsive { seconds } => {
                            Error::OwnerUnresponsive { rank, seconds }
                        }
                        SendError::OwnerGone => Error::OwnerGone { rank },
                    });
                }
                return Ok(Some(Report {
                    steps: 0,
                    points: 0,
                    log_bytes: 0,
                    failure: None,
                    dropped: r.dropped,
                }));
            }
            Sink::Disabled => return Ok(None),
        };
        let (ack_tx, ack) = crossbeam_channel::bounded(1);
        l.request(Control::Finish(Box::new(exit), ack_tx))
            .map_err(|_| gone(id))?;
        let report = match ack.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                return Err(Error::FinishTimeout {
                    id: id.to_string(),
                    seconds: timeout.as_secs(),
                })
            }
            Err(RecvTimeoutError::Disconnected) => return Err(gone(id)),
        };
        if let Some(t) = l.thread.lock().take() {
            let _ = t.join();
        }
        Ok(Some(report))
    }
}

fn gone(id: &str) -> Error {
    Error::WriterGone { id: id.to_string() }
}

/// Lets a helper thread add records to a run without holding the run.
pub(crate) struct RecordSender(RecordTarget);

enum RecordTarget {
    Local(Sender<Record>),
    Owner(Sender<Record>),
}

impl RecordSender {
    /// Queues a record; false if the writer has stopped.
    pub(crate) fn send(&self, record: Record) -> bool {
        match &self.0 {
            RecordTarget::Local(tx) | RecordTarget::Owner(tx) => tx.send(record).is_ok(),
        }
    }
}

impl LocalSink {
    /// Starts the writer thread over an open log.
    pub(crate) fn start(
        log: Writer,
        meta: Meta,
        dir: PathBuf,
        capacity: usize,
        flush_interval: Duration,
    ) -> Result<LocalSink> {
        let (data, rx) = crossbeam_channel::bounded(capacity);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let stage = WriterStage {
            rx,
            control: control_rx,
            log,
            meta,
            dir: dir.clone(),
            flush_interval,
            steps: 0,
            points: 0,
            last_step: None,
            last_t_us: 0,
            summary: BTreeMap::new(),
            failure: None,
            lost: 0,
        };
        let thread = std::thread::Builder::new()
            .name("ranklog-writer".into())
            .spawn(move || stage.run())
            .map_err(|source| Error::Write { path: dir, source })?;
        Ok(LocalSink {
            data,
            control,
            writer: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
        })
    }

    #[inline]
    fn send(&self, record: Record) -> std::result::Result<(), ()> {
        match self.data.try_send(record) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(record)) => {
                self.writer.unpark();
                self.data.send(record).map_err(|_| ())
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }

    fn request(&self, c: Control) -> std::result::Result<(), ()> {
        self.control.send(c).map_err(|_| ())?;
        self.writer.unpark();
        Ok(())
    }
}

/// The writer thread: drains the channel into the log.
struct WriterStage {
    rx: Receiver<Record>,
    control: Receiver<Control>,
    log: Writer,
    meta: Meta,
    dir: PathBuf,
    flush_interval: Duration,
    steps: u64,
    points: u64,
    last_step: Option<u64>,
    last_t_us: i64,
    summary: BTreeMap<String, serde_json::Value>,
    failure: Option<io::Error>,
    lost: u64,
}

impl WriterStage {
    fn run(mut self) {
        let tick =
            (self.flush_interval / 4).clamp(Duration::from_millis(1), Duration::from_millis(25));
        let mut next_flush = Instant::now() + self.flush_interval;
        let mut last_heartbeat = Instant::now();
        loop {
            // Take the control request first: every row sent before it is
            // then already in the data channel and is drained below.
            let request = self.control.try_recv();
            let mut closed = false;
            loop {
                match self.rx.try_recv() {
                    Ok(r) => {
                        self.observe(&r);
                        self.log.append(&r);
                        if self.log.pending_bytes() >= EAGER_FLUSH && self.failure.is_none() {
                            let _ = self.flush();
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            match request {
                Ok(Control::Flush(ack)) => {
                    let _ = ack.send(self.flush());
                    continue;
                }
                Ok(Control::Finish(exit, ack)) => {
                    let _ = ack.send(self.finish(*exit));
                    return;
                }
                Err(TryRecvError::Disconnected) if closed => {
                    // Every handle is gone without finishing (a forked child's
                    // copy, or a leak): keep what came, write no exit.
                    let _ = self.flush();
                    return;
                }
                Err(_) => {}
            }
            let now = Instant::now();
            if now >= next_flush {
                if now.duration_since(last_heartbeat) >= HEARTBEAT_INTERVAL {
                    self.log.append(&Record::Heartbeat {
                        t_us: crate::run::clock::since_start_us(self.meta.start_unix_ms * 1000),
                    });
                    last_heartbeat = now;
                }
                let _ = self.flush();
                next_flush = now + self.flush_interval;
            }
            std::thread::park_timeout(tick.min(next_flush.saturating_duration_since(now)));
        }
    }

    fn observe(&mut self, record: &Record) {
        match record {
            Record::History(row) => {
                if self.last_step != Some(row.step) {
                    self.steps += 1;
                    self.last_step = Some(row.step);
                }
                self.points += row.values.len() as u64;
                self.last_t_us = self.last_t_us.max(row.t_us);
            }
            Record::Summary { key, json } => {
                self.summary
                    .insert(key.clone(), crate::run::summary::parse(json));
            }
            Record::Name { name } => {
                self.meta.name = name.clone();
                self.write_meta();
            }
            Record::Git(git) => {
                self.meta.git = Some(git.clone());
                self.write_meta();
            }
            _ => {}
        }
    }

    fn write_meta(&self) {
        if let Err(e) = store::write_json(&self.dir.join(store::META_FILE), &self.meta) {
            tracing::warn!(error = %e, "ranklog: could not update meta.json");
        }
    }

    /// Writes what is pending; on failure keeps it (bounded) for the next try.
    fn flush(&mut self) -> io::Result<()> {
        match self.log.flush() {
            Ok(()) => {
                // Space came back before anything had to be discarded: the
                // run is whole, and `finish` must not report a failure.
                if self.lost == 0 && self.failure.take().is_some() {
                    tracing::info!(
                        path = %self.log.path().display(),
                        "ranklog: the run log is written again; nothing was lost"
                    );
                }
                Ok(())
            }
            Err(e) => {
                if self.failure.is_none() {
                    crate::console::warn(&format!(
                        "cannot write {} ({e}); training goes on and the write is retried",
                        self.log.path().display()
                    ));
                }
                if self.log.pending_bytes() > MAX_BACKLOG {
                    self.lost += self.log.discard_pending();
                }
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failure.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn finish(&mut self, exit: Exit) -> Report {
        let state = exit.state;
        let (code, message, t_us) = (exit.code, exit.message.clone(), exit.t_us);
        self.log.append(&Record::Exit(exit));
        match self.log.sync() {
            Err(e) => {
                // The first failure may come only now, when every row was
                // still pending: it is reported like one met by a flush.
                if self.failure.is_none() {
                    crate::console::warn(&format!(
                        "cannot write {} ({e}); the rows not yet written are lost",
                        self.log.path().display()
                    ));
                }
                self.failure.get_or_insert(e);
                self.lost += self.log.discard_pending();
            }
            // Every record is in the file after all: space came back.
            Ok(()) if self.lost == 0 => self.failure = None,
            Ok(()) => {}
        }
        let ended = time::OffsetDateTime::now_utc();
        let fin = FinalSummary {
            state: match state {
                ExitState::Finished => "finished",
                ExitState::Failed => "failed",
            }
            .to_string(),
            exit_code: code,
            message,
            ended: crate::run::clock::rfc3339(ended),
            duration_s: t_us as f64 / 1e6,
            steps: self.steps,
            points: self.points,
            log_bytes: self.log.offset(),
            summary: std::mem::take(&mut self.summary),
        };
        if self.failure.is_none() {
            if let Err(e) = store::write_json(&self.dir.join(store::SUMMARY_FILE), &fin) {
                tracing::warn!(error = %e, "ranklog: could not write summary.json");
            }
        }
        Report {
            steps: self.steps,
            points: self.points,
            log_bytes: self.log.offset(),
            failure: self.failure.take().map(|e| (e, self.lost)),
            dropped: 0,
        }
    }
}

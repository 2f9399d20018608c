//! The worker side: `log` fills a bounded buffer; a sender thread batches
//! records and does the (possibly blocking) transport send.
//!
//! Bounds, whatever the owner or the network does:
//! - `Block`: `log` waits for room at most the stall timeout. When the
//!   buffer stays full that long, rank 0 is declared unresponsive: a warning,
//!   `log` returns [`SendError::OwnerUnresponsive`], later rows are dropped
//!   and counted.
//! - `DropNewest`: `log` never waits; rows that find the buffer full are
//!   dropped, and keys, summaries and config skip the full buffer through a
//!   side channel so they are never lost. When the buffer is full and the
//!   sender has sent nothing for the stall timeout, rank 0 is declared
//!   unresponsive (a warning; everything after is dropped and counted), so
//!   the side channel holds at most what came in one stall timeout.
//! - `finish` waits at most its timeout, and only a short grace once the
//!   owner is known to be gone or unresponsive, or when the sender makes no
//!   progress for the stall timeout.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use parking_lot::Mutex;

use super::wire::{self, ToOwner};
use super::{Link, Policy};
use crate::record::Record;

/// Most records in one message to the owner.
const BATCH: usize = 512;
/// Longest a record waits in the sender before it is sent.
const LINGER: Duration = Duration::from_millis(2);
/// How often an idle sender checks that the owner is still there.
const LIVENESS: Duration = Duration::from_millis(100);
/// How long `finish` waits for the sender once the owner is out of reach.
const GRACE: Duration = Duration::from_millis(200);

const ALIVE: u8 = 0;
const GONE: u8 = 1;
const STALLED: u8 = 2;

/// Why a worker's record could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The owner went away; nothing more can be delivered.
    OwnerGone,
    /// The owner took nothing for `seconds` (frozen, or cut off by the network).
    OwnerUnresponsive {
        /// The stall timeout that ran out.
        seconds: u64,
    },
}

/// What the sender thread reports at finish.
#[derive(Debug)]
pub(crate) struct WorkerReport {
    pub dropped: u64,
    pub delivered: bool,
}

enum Control {
    Finish(Sender<WorkerReport>),
}

/// What `log`, `finish` and the sender thread share.
struct Shared {
    rank: u32,
    stall: Duration,
    /// `ALIVE`, `GONE` or `STALLED`; never goes back to `ALIVE`.
    state: AtomicU8,
    dropped: AtomicU64,
    /// When the sender last finished a send, in µs since `epoch`.
    progress_us: AtomicU64,
    epoch: Instant,
}

impl Shared {
    /// Records that the owner is out of reach; warns the first time only.
    fn lose(&self, how: u8) {
        if self
            .state
            .compare_exchange(ALIVE, how, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if how == STALLED {
            crate::console::warn(&format!(
                "rank 0, the owner of this run, took nothing from rank {} for {} s (frozen, \
                 overloaded or cut off by the network); later rows of this rank are dropped and \
                 counted (RANKLOG_QUEUE_STALL_TIMEOUT_S sets this bound)",
                self.rank,
                self.stall.as_secs_f64()
            ));
        } else {
            crate::console::warn(
                "rank 0, the owner of this run, is gone; later rows of this rank are not recorded",
            );
        }
    }

    fn alive(&self) -> bool {
        self.state.load(Ordering::Acquire) == ALIVE
    }

    fn error(&self) -> SendError {
        match self.state.load(Ordering::Acquire) {
            STALLED => SendError::OwnerUnresponsive {
                seconds: self.stall.as_secs(),
            },
            _ => SendError::OwnerGone,
        }
    }

    fn made_progress(&self) {
        let us = self.epoch.elapsed().as_micros() as u64;
        self.progress_us.store(us, Ordering::Release);
    }

    fn last_progress(&self) -> Instant {
        self.epoch + Duration::from_micros(self.progress_us.load(Ordering::Acquire))
    }

    fn drop_row(&self, record: &Record) {
        if matches!(record, Record::History(_)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The handle `Run` holds on a worker rank.
pub(crate) struct WorkerSink {
    tx: Sender<Record>,
    /// The buffer's other end, to count what is left when the sender is stuck.
    rx: Receiver<Record>,
    /// Keys, summaries and config that found the buffer full under `DropNewest`.
    urgent: Sender<Record>,
    control: Sender<Control>,
    policy: Policy,
    shared: Arc<Shared>,
    sender: std::thread::Thread,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WorkerSink {
    /// Starts the sender thread over a connected link; `stall` bounds every
    /// wait of `log` and `finish` for the owner.
    pub(crate) fn start(
        link: Box<dyn Link>,
        rank: u32,
        capacity: usize,
        policy: Policy,
        stall: Duration,
    ) -> io::Result<WorkerSink> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (urgent, urgent_rx) = crossbeam_channel::unbounded();
        let (control, control_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            rank,
            stall,
            state: AtomicU8::new(ALIVE),
            dropped: AtomicU64::new(0),
            progress_us: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let stage = Stage {
            rx: rx.clone(),
            urgent: urgent_rx,
            control: control_rx,
            link,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("ranklog-sender".into())
            .spawn(move || stage.run())?;
        Ok(WorkerSink {
            tx,
            rx,
            urgent,
            control,
            policy,
            shared,
            sender: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// This worker's rank.
    pub(crate) fn rank(&self) -> u32 {
        self.shared.rank
    }

    /// Why nothing more reaches the owner (once `finish` reported it undelivered).
    pub(crate) fn lost(&self) -> SendError {
        self.shared.error()
    }

    /// Queues a record. Under `DropNewest` it never waits (rows are dropped
    /// and counted); under `Block` it waits for room at most the stall timeout.
    #[inline]
    pub(crate) fn send(&self, record: Record) -> Result<(), SendError> {
        if !self.shared.alive() {
            return self.after_owner_lost(&record);
        }
        match self.tx.try_send(record) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(record)) => {
                self.sender.unpark();
                if self.policy == Policy::DropNewest {
                    // Full, and nothing sent for the stall timeout: the owner
                    // is frozen or cut off. Stop queueing (the side channel
                    // for keys would otherwise grow while it stays so).
                    if self.shared.last_progress().elapsed() >= self.shared.stall {
                        self.shared.lose(STALLED);
                        return self.after_owner_lost(&record);
                    }
                    if matches!(record, Record::History(_)) {
                        self.shared.drop_row(&record);
                    } else {
                        // Unbounded, so never full; it only fails once the
                        // sender is gone, and then the owner is too.
                        let _ = self.urgent.send(record);
                    }
                    return Ok(());
                }
                match self.tx.send_timeout(record, self.shared.stall) {
                    Ok(()) => Ok(()),
                    Err(SendTimeoutError::Timeout(record)) => {
                        self.shared.lose(STALLED);
                        self.after_owner_lost(&record)
                    }
                    Err(SendTimeoutError::Disconnected(record)) => self.after_owner_lost(&record),
                }
            }
            Err(TrySendError::Disconnected(record)) => self.after_owner_lost(&record),
        }
    }

    /// Counts the row as dropped; `Block` also reports why to the caller.
    fn after_owner_lost(&self, record: &Record) -> Result<(), SendError> {
        self.shared.drop_row(record);
        if self.policy == Policy::DropNewest {
            return Ok(());
        }
        Err(self.shared.error())
    }

    /// Sends what is buffered and a goodbye, within `timeout`; sooner when
    /// the owner is out of reach or the sender makes no progress for the
    /// stall timeout.
    pub(crate) fn finish(&self, timeout: Duration) -> WorkerReport {
        let (ack_tx, ack) = crossbeam_channel::bounded(1);
        let report = if self.control.send(Control::Finish(ack_tx)).is_ok() {
            self.sender.unpark();
            self.wait_ack(&ack, timeout)
        } else {
            None
        };
        if let Some(report) = report {
            // The sender answers right before it ends.
            if let Some(t) = self.thread.lock().take() {
                let _ = t.join();
            }
            if report.delivered {
                return report;
            }
        }
        // What is still buffered will never reach the owner.
        for r in self.rx.try_iter() {
            self.shared.drop_row(&r);
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            crate::console::warn(&format!(
                "{dropped} rows of rank {} did not reach rank 0 and are not in the run",
                self.shared.rank
            ));
        }
        WorkerReport {
            dropped,
            delivered: false,
        }
    }

    fn wait_ack(&self, ack: &Receiver<WorkerReport>, timeout: Duration) -> Option<WorkerReport> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let now = Instant::now();
            let mut until = deadline.min(now + LIVENESS);
            if !self.shared.alive() {
                until = until.min(now + GRACE);
            }
            match ack.recv_deadline(until) {
                Ok(r) => return Some(r),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= deadline || !self.shared.alive() {
                return None;
            }
            let last = self.shared.last_progress().max(start);
            if now.duration_since(last) >= self.shared.stall {
                self.shared.lose(STALLED);
                return None;
            }
        }
    }
}

struct Stage {
    rx: Receiver<Record>,
    urgent: Receiver<Record>,
    control: Receiver<Control>,
    link: Box<dyn Link>,
    shared: Arc<Shared>,
}

impl Stage {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut last_check = Instant::now();
        loop {
            let finish = self.control.try_recv();
            // Drain everything queued before the finish request.
            let deadline = Instant::now() + LINGER;
            loop {
                match self.rx.try_recv() {
                    Ok(r) => {
                        self.push(&mut batch, r);
                        if batch.len() >= BATCH {
                            if let Err(e) = self.ship(&mut batch) {
                                return self.owner_lost(&e, finish.ok());
                            }
                        }
                    }
                    Err(TryRecvError::Empty) if batch.is_empty() || Instant::now() >= deadline => {
                        break
                    }
                    Err(TryRecvError::Empty) => match self.rx.recv_deadline(deadline) {
                        Ok(r) => self.push(&mut batch, r),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            batch.extend(self.urgent.try_iter());
            if !batch.is_empty() {
                if let Err(e) = self.ship(&mut batch) {
                    return self.owner_lost(&e, finish.ok());
                }
            }
            if let Ok(Control::Finish(ack)) = finish {
                if !self.shared.alive() {
                    let gave_up =
                        io::Error::new(io::ErrorKind::TimedOut, "the owner is out of reach");
                    return self.owner_lost(&gave_up, Some(Control::Finish(ack)));
                }
                let dropped = self.shared.dropped.load(Ordering::Relaxed);
                let delivered = self
                    .link
                    .send(wire::encode(&ToOwner::Bye { dropped }))
                    .is_ok();
                let _ = ack.send(WorkerReport { dropped, delivered });
                return;
            }
            if last_check.elapsed() >= LIVENESS {
                last_check = Instant::now();
                if !self.link.owner_alive() {
                    let closed = io::Error::new(io::ErrorKind::ConnectionAborted, "owner closed");
                    return self.owner_lost(&closed, None);
                }
            }
            std::thread::park_timeout(LIVENESS / 4);
        }
    }

    /// Adds a record to the batch, after any key it may use that skipped
    /// the full buffer.
    #[inline]
    fn push(&self, batch: &mut Vec<Record>, record: Record) {
        if !self.urgent.is_empty() {
            batch.extend(self.urgent.try_iter());
        }
        batch.push(record);
    }

    /// Sends a batch; its rows count as dropped when the send fails.
    fn ship(&mut self, batch: &mut Vec<Record>) -> io::Result<()> {
        let rows = batch
            .iter()
            .filter(|r| matches!(r, Record::History(_)))
            .count() as u64;
        if !self.shared.alive() {
            // `log` gave up on the owner: nothing more is sent.
            self.shared.dropped.fetch_add(rows, Ordering::Relaxed);
            batch.clear();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the owner is out of reach",
            ));
        }
        let payload = wire::encode(&ToOwner::Records(std::mem::take(batch)));
        if let Err(e) = self.link.send(payload) {
            self.shared.dropped.fetch_add(rows, Ordering::Relaxed);
            return Err(e);
        }
        self.shared.made_progress();
        Ok(())
    }

    /// The owner is out of reach: say so, let blocked `log` calls fail, count what is left.
    fn owner_lost(self, error: &io::Error, finish: Option<Control>) {
        let stalled = matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        self.shared.lose(if stalled { STALLED } else { GONE });
        for r in self.rx.try_iter() {
            self.shared.drop_row(&r);
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let ack = match finish {
            Some(Control::Finish(ack)) => Some(ack),
            None => match self.control.recv() {
                Ok(Control::Finish(ack)) => Some(ack),
                Err(_) => None,
            },
        };
        if let Some(ack) = ack {
            let _ = ack.send(WorkerReport {
                dropped,
                delivered: false,
            });
        }
    }
}

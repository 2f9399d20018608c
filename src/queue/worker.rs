//! The worker side: `log` fills a bounded buffer; a sender thread batches
//! records and does the (possibly blocking) transport send.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
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

/// Why a worker's record could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The owner went away; nothing more can be delivered.
    OwnerGone,
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

/// The handle `Run` holds on a worker rank.
pub(crate) struct WorkerSink {
    tx: Sender<Record>,
    control: Sender<Control>,
    policy: Policy,
    dropped: Arc<AtomicU64>,
    gone: Arc<AtomicBool>,
    sender: std::thread::Thread,
    thread: Mutex<Option<JoinHandle<()>>>,
    rank: u32,
}

impl WorkerSink {
    /// Starts the sender thread over a connected link.
    pub(crate) fn start(
        link: Box<dyn Link>,
        rank: u32,
        capacity: usize,
        policy: Policy,
    ) -> io::Result<WorkerSink> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let dropped = Arc::new(AtomicU64::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        let stage = Stage {
            rx,
            control: control_rx,
            link,
            dropped: dropped.clone(),
            gone: gone.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("ranklog-sender".into())
            .spawn(move || stage.run())?;
        Ok(WorkerSink {
            tx,
            control,
            policy,
            dropped,
            gone,
            sender: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
            rank,
        })
    }

    /// This worker's rank.
    pub(crate) fn rank(&self) -> u32 {
        self.rank
    }

    /// Queues a record; never blocks under `DropNewest` (rows are dropped and
    /// counted instead; key and summary records always wait for room).
    #[inline]
    pub(crate) fn send(&self, record: Record) -> Result<(), SendError> {
        if self.gone.load(Ordering::Relaxed) {
            return self.after_owner_gone(&record);
        }
        match self.tx.try_send(record) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(record)) => {
                if self.policy == Policy::DropNewest && matches!(record, Record::History(_)) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                self.sender.unpark();
                match self.tx.send(record) {
                    Ok(()) => Ok(()),
                    Err(_) => Err(SendError::OwnerGone),
                }
            }
            Err(TrySendError::Disconnected(record)) => self.after_owner_gone(&record),
        }
    }

    fn after_owner_gone(&self, record: &Record) -> Result<(), SendError> {
        if self.policy == Policy::DropNewest {
            if matches!(record, Record::History(_)) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        Err(SendError::OwnerGone)
    }

    /// Sends what is buffered and a goodbye, within `timeout`.
    pub(crate) fn finish(&self, timeout: Duration) -> WorkerReport {
        let (ack_tx, ack) = crossbeam_channel::bounded(1);
        let unreachable = || WorkerReport {
            dropped: self.dropped.load(Ordering::Relaxed),
            delivered: false,
        };
        if self.control.send(Control::Finish(ack_tx)).is_err() {
            return unreachable();
        }
        self.sender.unpark();
        let report = ack.recv_timeout(timeout).unwrap_or_else(|_| unreachable());
        if report.delivered || self.gone.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.lock().take() {
                let _ = t.join();
            }
        }
        report
    }
}

struct Stage {
    rx: Receiver<Record>,
    control: Receiver<Control>,
    link: Box<dyn Link>,
    dropped: Arc<AtomicU64>,
    gone: Arc<AtomicBool>,
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
                        batch.push(r);
                        if batch.len() >= BATCH && !self.ship(&mut batch) {
                            return self.owner_lost(finish.ok());
                        }
                    }
                    Err(TryRecvError::Empty) if batch.is_empty() || Instant::now() >= deadline => {
                        break
                    }
                    Err(TryRecvError::Empty) => match self.rx.recv_deadline(deadline) {
                        Ok(r) => batch.push(r),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            if !batch.is_empty() && !self.ship(&mut batch) {
                return self.owner_lost(finish.ok());
            }
            if let Ok(Control::Finish(ack)) = finish {
                let dropped = self.dropped.load(Ordering::Relaxed);
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
                    return self.owner_lost(None);
                }
            }
            std::thread::park_timeout(LIVENESS / 4);
        }
    }

    fn ship(&mut self, batch: &mut Vec<Record>) -> bool {
        let payload = wire::encode(&ToOwner::Records(std::mem::take(batch)));
        self.link.send(payload).is_ok()
    }

    /// The owner is gone: say so, let blocked `log` calls fail, count what is left.
    fn owner_lost(self, finish: Option<Control>) {
        crate::console::warn(
            "rank 0, the owner of this run, is gone; later rows of this rank are not recorded",
        );
        self.gone.store(true, Ordering::Relaxed);
        let left = self
            .rx
            .try_iter()
            .filter(|r| matches!(r, Record::History(_)))
            .count() as u64;
        self.dropped.fetch_add(left, Ordering::Relaxed);
        let dropped = self.dropped.load(Ordering::Relaxed);
        drop(self.rx);
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

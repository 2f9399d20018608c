//! The rank-0 side: one thread drains every worker and rank 0's own rows,
//! merges them, and hands the result to the run's writer.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::merge::Merger;
use super::wire::ToOwner;
use super::{Event, Hub};
use crate::console;
use crate::error::{Error, Result};
use crate::record::{Exit, Record};
use crate::run::sink::{Report, Sink};

/// How long one wait for worker messages lasts; rank 0's own rows and
/// control requests are looked at between waits.
const TICK: Duration = Duration::from_millis(5);

/// Where the answer to a finish request goes.
type FinishAck = Sender<Result<Option<Report>>>;

enum Control {
    Flush(Sender<Result<()>>),
    Finish(Box<Exit>, FinishAck),
}

/// Timeouts of the owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerTimeouts {
    /// How long workers have to connect after the owner started.
    pub connect: Duration,
    /// How long a step waits for a slow rank.
    pub straggler: Duration,
    /// How long finish waits for the workers' goodbyes.
    pub goodbye: Duration,
}

/// The handle `Run` holds on rank 0 of a single-writer job.
pub(crate) struct OwnerSink {
    tx: Sender<Record>,
    control: Sender<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OwnerSink {
    /// Starts the drain thread.
    pub(crate) fn start(
        hub: Box<dyn Hub>,
        merger: Merger,
        local: Sink,
        world_size: u32,
        capacity: usize,
        timeouts: OwnerTimeouts,
        id: String,
    ) -> std::io::Result<OwnerSink> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let n = world_size.max(1) as usize;
        let stage = Stage {
            hub,
            merger,
            local,
            rx,
            control: control_rx,
            connected: vec![false; n],
            said_bye: vec![false; n],
            started: Instant::now(),
            timeouts,
            gave_up_connecting: false,
            id,
        };
        let thread = std::thread::Builder::new()
            .name("ranklog-owner".into())
            .spawn(move || stage.run())?;
        Ok(OwnerSink {
            tx,
            control,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A sender for helper threads (git capture) to add rank 0 records.
    pub(crate) fn sender(&self) -> Sender<Record> {
        self.tx.clone()
    }

    /// Queues one of rank 0's own records; waits while the queue is full.
    #[inline]
    pub(crate) fn send(&self, record: Record) -> std::result::Result<(), ()> {
        match self.tx.try_send(record) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(record)) => self.tx.send(record).map_err(|_| ()),
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }

    /// Waits until everything merged so far is in the run log.
    pub(crate) fn flush(&self, id: &str, timeout: Duration) -> Result<()> {
        let (ack_tx, ack) = crossbeam_channel::bounded(1);
        self.control
            .send(Control::Flush(ack_tx))
            .map_err(|_| Error::WriterGone { id: id.to_string() })?;
        ack.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(Error::FinishTimeout {
                id: id.to_string(),
                seconds: timeout.as_secs(),
            })
        })
    }

    /// Waits for the workers' goodbyes (bounded), writes what is held and
    /// finishes the run log.
    pub(crate) fn finish(&self, id: &str, exit: Exit, timeout: Duration) -> Result<Option<Report>> {
        let (ack_tx, ack) = crossbeam_channel::bounded(1);
        self.control
            .send(Control::Finish(Box::new(exit), ack_tx))
            .map_err(|_| Error::WriterGone { id: id.to_string() })?;
        let report = ack.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(Error::FinishTimeout {
                id: id.to_string(),
                seconds: timeout.as_secs(),
            })
        });
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        report
    }
}

struct Stage {
    hub: Box<dyn Hub>,
    merger: Merger,
    local: Sink,
    rx: Receiver<Record>,
    control: Receiver<Control>,
    connected: Vec<bool>,
    said_bye: Vec<bool>,
    started: Instant,
    timeouts: OwnerTimeouts,
    gave_up_connecting: bool,
    id: String,
}

impl Stage {
    fn run(mut self) {
        let mut finishing: Option<(Box<Exit>, FinishAck, Instant)> = None;
        loop {
            let events = self.hub.poll(TICK);
            let now = Instant::now();
            let merger = &mut self.merger;
            let local = &self.local;
            let mut out = |r: Record| {
                let _ = local.send(r);
            };
            for event in events {
                match event {
                    Event::Connected(rank) => {
                        tracing::debug!(rank, "ranklog: worker connected");
                        if let Some(c) = self.connected.get_mut(rank as usize) {
                            *c = true;
                        }
                    }
                    Event::Message(rank, ToOwner::Records(records)) => {
                        for r in records {
                            merger.record(rank, r, now, &mut out);
                        }
                    }
                    Event::Message(rank, ToOwner::Bye { dropped }) => {
                        if dropped > 0 {
                            out(Record::Dropped {
                                rank,
                                count: dropped,
                            });
                        }
                        merger.done(rank);
                        if let Some(b) = self.said_bye.get_mut(rank as usize) {
                            *b = true;
                        }
                    }
                    Event::Message(_, ToOwner::Hello { .. }) => {}
                    Event::Closed(rank) => {
                        if !self.said_bye.get(rank as usize).copied().unwrap_or(true) {
                            console::warn(&format!(
                                "rank {rank} went away without finishing; it is recorded as lost"
                            ));
                            merger.lost(
                                rank,
                                "connection closed without a goodbye (process killed or crashed)"
                                    .into(),
                                &mut out,
                            );
                        }
                    }
                    Event::Garbage(rank) => {
                        console::warn(&format!(
                            "rank {rank} sent an unreadable message; it is recorded as lost"
                        ));
                        merger.lost(rank, "sent an unreadable message".into(), &mut out);
                    }
                    Event::Refused(why) => {
                        console::warn(&format!("refused a queue connection: {why}"))
                    }
                }
            }
            // Take the control request before draining rank 0's rows: every
            // row logged before a flush is then already in the channel.
            let request = self.control.try_recv();
            for r in self.rx.try_iter() {
                merger.record(0, r, now, &mut out);
            }
            if !self.gave_up_connecting && self.started.elapsed() >= self.timeouts.connect {
                self.gave_up_connecting = true;
                for (rank, _) in self
                    .connected
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, c)| !**c)
                {
                    let rank = rank as u32;
                    if merger.is_live(rank) {
                        console::warn(&format!(
                            "rank {rank} did not connect within {} s; the run goes on without it",
                            self.timeouts.connect.as_secs()
                        ));
                        merger.lost(
                            rank,
                            format!(
                                "never connected within {} s",
                                self.timeouts.connect.as_secs()
                            ),
                            &mut out,
                        );
                    }
                }
            }
            merger.poll(now, self.timeouts.straggler, &mut out);
            match request {
                Ok(Control::Flush(ack)) => {
                    // `Run::flush` promises that what rank 0 logged is in the
                    // file: write its steps still waiting for other ranks now,
                    // as the straggler timeout would.
                    merger.write_through(0, &mut out);
                    let _ = ack.send(self.local.flush(&self.id, self.timeouts.goodbye));
                }
                Ok(Control::Finish(exit, ack)) => {
                    finishing = Some((exit, ack, now + self.timeouts.goodbye));
                }
                Err(_) => {}
            }
            if let Some((_, _, deadline)) = &finishing {
                let waiting: Vec<u32> = (1..self.connected.len() as u32)
                    .filter(|&r| self.merger.is_live(r))
                    .collect();
                if waiting.is_empty() || now >= *deadline {
                    let Some((exit, ack, _)) = finishing.take() else {
                        continue;
                    };
                    let _ = ack.send(self.end(*exit, &waiting));
                    return;
                }
            }
        }
    }

    fn end(&mut self, exit: Exit, waiting: &[u32]) -> Result<Option<Report>> {
        let (merger, local, rx, timeouts, id) = (
            &mut self.merger,
            &self.local,
            &self.rx,
            self.timeouts,
            &self.id,
        );
        let now = Instant::now();
        let mut out = |r: Record| {
            let _ = local.send(r);
        };
        for r in rx.try_iter() {
            merger.record(0, r, now, &mut out);
        }
        for &rank in waiting {
            console::warn(&format!(
                "rank {rank} did not finish within {} s of rank 0",
                timeouts.goodbye.as_secs()
            ));
            merger.lost(
                rank,
                format!(
                    "no goodbye within {} s of rank 0's finish",
                    timeouts.goodbye.as_secs()
                ),
                &mut out,
            );
        }
        merger.done(0);
        merger.flush(&mut out);
        self.hub.close();
        local.finish(id, exit, timeouts.goodbye.max(Duration::from_secs(60)))
    }
}

//! The single-writer strategy: every rank's rows travel to rank 0, which owns
//! the one run and merges them.
//!
//! # How it works
//!
//! Rank 0 starts the run as usual and an *owner*: one thread that drains
//! every worker and rank 0's own rows, merges them ([`Merge`]) and hands the
//! result to the run's writer. Every other rank's `ranklog::init` connects a
//! *worker* to the owner, learns the run's id and name, and from then on its
//! `log` puts records in a bounded buffer that a sender thread batches (up to
//! 512 records or 2 ms) and sends. The training code is the same on every rank.
//!
//! # Transports
//!
//! - [`Transport::Ipc`] (one host): ipc-channel. Rank 0 publishes one
//!   one-shot server name per worker in a private rendezvous folder (mode
//!   0700) and worker r connects to its own.
//! - [`Transport::Tcp`] (several nodes): TCP to rank 0 at `MASTER_ADDR` and
//!   the queue port, length-prefixed postcard frames of at most 8 MiB, and a
//!   job token that only ranks of this job know.
//! - [`Transport::Auto`] (default): ipc when every rank is on this node, else tcp.
//!
//! # Backpressure
//!
//! With [`Policy::Block`] (default, lossless while rank 0 keeps up) a
//! worker's `log` waits while its buffer is full, for at most the *stall
//! timeout* (60 s, [`crate::Settings::queue_stall_timeout`],
//! `RANKLOG_QUEUE_STALL_TIMEOUT_S`). With [`Policy::DropNewest`] it never
//! waits, whatever rank 0 or the network does: rows that find the buffer
//! full are dropped and counted, and the count is written to the run at
//! finish (`ranklog show` reports it). Keys, summaries and config are never
//! dropped (under `DropNewest` they skip a full buffer).
//!
//! # Bounds
//!
//! Nothing rank 0 or the network does can hang a worker:
//!
//! | fault | `Block` | `DropNewest` |
//! |---|---|---|
//! | rank 0 exits or is killed; its port closes (FIN); the connection is reset (RST) | `log` returns [`crate::Error::OwnerGone`] within about 100 ms | `log` goes on, rows are dropped and counted |
//! | rank 0 frozen (SIGSTOP), overloaded, or a half-open connection | `log` returns [`crate::Error::OwnerUnresponsive`] once its buffer stayed full for the stall timeout | `log` goes on, rows are dropped and counted; once the buffer is full and nothing was sent for the stall timeout, the worker warns and stops sending |
//! | any of these, at `finish` | returns within the finish timeout; within about 200 ms once rank 0 is known gone or unresponsive, and after the stall timeout when the sender makes no progress | same |
//!
//! Over TCP every write to rank 0 has the stall timeout as its write
//! timeout, so the sender thread itself is never stuck longer (ipc-channel
//! has no send timeout: there, the bound holds at `log` and `finish`).
//! After the worker has warned once, later rows are dropped and counted,
//! and `finish` warns with the count of rows that did not reach rank 0
//! (rank 0 records the worker as lost). Rows already handed to the
//! operating system when a connection breaks — at most the socket buffers —
//! are neither delivered nor counted: only what is in the run was received.
//!
//! # Flush
//!
//! The owner holds a step until every live rank has moved past it. A
//! `Run::flush` on rank 0 does not wait for them: it writes every held step
//! up to rank 0's last one as it stands (as the straggler timeout would) and
//! returns once that is in the file, so what rank 0 logged survives a
//! SIGKILL of rank 0. Values other ranks send later for those steps are
//! written as late rows of the same step.
//!
//! # Failures
//!
//! - A worker that dies is recorded in the run as lost (a `RankLost`
//!   record); what it sent is kept and the reductions go on without it.
//! - A worker that does not connect within the connect timeout (60 s) is
//!   recorded as lost, naming the rank.
//! - When rank 0 goes away, a worker notices within about 100 ms: `log`
//!   returns [`crate::Error::OwnerGone`] under `Block` and
//!   counts drops under `DropNewest`; `finish` returns at once.
//! - When rank 0 stops taking rows without going away (frozen, a half-open
//!   connection), a worker gives up after the stall timeout (see Bounds).
//! - Connections from outside the job (wrong token, garbage bytes, an
//!   oversized frame) are refused with a warning; the owner goes on.
//! - Rank 0's `finish` waits for every live worker's goodbye for at most the
//!   finish timeout, then records the missing ranks as lost and finishes.

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod ipc;
mod merge;
mod owner;
mod rendezvous;
mod tcp;
mod wire;
mod worker;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use merge::{Merge, Reduce};

pub(crate) use owner::{OwnerSink, OwnerTimeouts};
pub(crate) use worker::{SendError, WorkerSink};

use crate::error::{Error, Result};
use crate::rank::RankInfo;
use crate::run::sink::Sink;
use wire::{ToOwner, ToWorker};

/// How workers reach rank 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// ipc-channel when every rank is on one node, else TCP.
    #[default]
    Auto,
    /// ipc-channel through a rendezvous folder (one host only).
    Ipc,
    /// TCP to `MASTER_ADDR` and the queue port.
    Tcp,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Transport, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Transport::Auto),
            "ipc" => Ok(Transport::Ipc),
            "tcp" => Ok(Transport::Tcp),
            _ => Err("use auto, ipc or tcp".into()),
        }
    }
}

/// What a worker's `log` does when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Wait for room: lossless, and training slows down to the owner's pace.
    #[default]
    Block,
    /// Drop the row and count it; `log` never waits.
    DropNewest,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Policy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(Policy::Block),
            "drop_newest" | "drop-newest" | "drop" => Ok(Policy::DropNewest),
            _ => Err("use block or drop_newest".into()),
        }
    }
}

/// Everything the queue needs, decided by the settings.
#[derive(Debug, Clone)]
pub(crate) struct QueueConfig {
    pub transport: Transport,
    /// Rendezvous folder of this job (ipc).
    pub rendezvous: PathBuf,
    /// `host:port` of rank 0's listener (tcp).
    pub address: String,
    pub token: String,
    pub merge: Merge,
    pub policy: Policy,
    pub capacity: usize,
    pub connect_timeout: Duration,
    pub straggler_timeout: Duration,
    pub goodbye_timeout: Duration,
    /// Longest a worker waits for the owner to take its rows.
    pub stall_timeout: Duration,
}

impl QueueConfig {
    fn use_tcp(&self, rank: &RankInfo) -> bool {
        match self.transport {
            Transport::Tcp => true,
            Transport::Ipc => false,
            Transport::Auto => rank.local_world_size < rank.world_size,
        }
    }
}

/// Decides who may join, and answers hellos.
pub(crate) struct Admission {
    world_size: u32,
    token: String,
    welcome: ToWorker,
    admitted: Vec<bool>,
}

impl Admission {
    pub(crate) fn new(world_size: u32, token: String, id: String, name: String) -> Admission {
        Admission {
            world_size,
            token,
            welcome: ToWorker::Welcome { id, name },
            admitted: vec![false; world_size as usize],
        }
    }

    /// The answer to a hello claiming `rank` (`u32::MAX` when unknown).
    pub(crate) fn check(&mut self, rank: u32, hello: Option<&ToOwner>) -> ToWorker {
        let refuse = |reason: String| ToWorker::Refused { reason };
        let Some(ToOwner::Hello {
            rank: claimed,
            world_size,
            token,
            ..
        }) = hello
        else {
            return refuse("the first message is not a ranklog hello".into());
        };
        if *token != self.token {
            return refuse(
                "wrong job token (is this rank part of another job? check RANKLOG_JOB_TOKEN)"
                    .into(),
            );
        }
        if *claimed != rank && rank != u32::MAX {
            return refuse(format!(
                "rank {claimed} connected to the server of rank {rank}"
            ));
        }
        if *world_size != self.world_size {
            return refuse(format!(
                "world size {world_size} differs from rank 0's {}",
                self.world_size
            ));
        }
        match self.admitted.get_mut(*claimed as usize) {
            Some(slot) if *claimed > 0 && !*slot => {
                *slot = true;
                self.welcome.clone()
            }
            Some(_) if *claimed > 0 => refuse(format!("rank {claimed} is already connected")),
            _ => refuse(format!(
                "rank {claimed} is not a worker rank of a job of {} ranks",
                self.world_size
            )),
        }
    }
}

/// What the owner's transport saw.
pub(crate) enum Event {
    Connected(u32),
    Message(u32, ToOwner),
    /// An admitted worker's connection closed.
    Closed(u32),
    /// An admitted worker sent bytes that are not a message.
    Garbage(u32),
    /// A connection was refused, and why.
    Refused(String),
}

/// The owner's side of a transport.
pub(crate) trait Hub: Send {
    /// Waits up to `timeout` for what the workers sent.
    fn poll(&mut self, timeout: Duration) -> Vec<Event>;
    /// Stops accepting workers.
    fn close(&mut self);
}

/// A worker's connection to the owner.
pub(crate) trait Link: Send {
    /// Sends one message payload (may block while the owner is slow).
    fn send(&mut self, payload: Vec<u8>) -> io::Result<()>;
    /// False once the owner is known to be gone.
    fn owner_alive(&mut self) -> bool;
}

/// Starts the owner on rank 0 around the run's local writer.
pub(crate) fn start_owner(
    cfg: &QueueConfig,
    rank: &RankInfo,
    local: Sink,
    id: &str,
    name: &str,
) -> Result<OwnerSink> {
    let admission = Admission::new(
        rank.world_size,
        cfg.token.clone(),
        id.to_string(),
        name.to_string(),
    );
    let setup = |what: String| move |source: io::Error| Error::QueueSetup { what, source };
    let hub: Box<dyn Hub> = if cfg.use_tcp(rank) {
        Box::new(
            tcp::TcpHub::start(&cfg.address, admission)
                .map_err(setup(format!("cannot listen on {}", cfg.address)))?,
        )
    } else {
        Box::new(
            ipc::IpcHub::start(&cfg.rendezvous, admission).map_err(setup(format!(
                "cannot publish the ipc servers in {}",
                cfg.rendezvous.display()
            )))?,
        )
    };
    let timeouts = OwnerTimeouts {
        connect: cfg.connect_timeout,
        straggler: cfg.straggler_timeout,
        goodbye: cfg.goodbye_timeout,
    };
    let merger = merge::Merger::new(cfg.merge.clone(), rank.world_size);
    OwnerSink::start(
        hub,
        merger,
        local,
        rank.world_size,
        cfg.capacity,
        timeouts,
        id.to_string(),
    )
    .map_err(setup("cannot start the owner thread".into()))
}

/// Connects a worker rank to the owner; returns its sink and the run's id and name.
pub(crate) fn connect_worker(
    cfg: &QueueConfig,
    rank: &RankInfo,
) -> Result<(WorkerSink, String, String)> {
    let hello = ToOwner::Hello {
        rank: rank.rank,
        world_size: rank.world_size,
        token: cfg.token.clone(),
        pid: std::process::id(),
        host: crate::sys::hostname(),
    };
    let deadline = Instant::now() + cfg.connect_timeout;
    let tcp = cfg.use_tcp(rank);
    let unreachable = |source: io::Error| Error::OwnerUnreachable {
        rank: rank.rank,
        via: if tcp {
            format!("tcp {}", cfg.address)
        } else {
            format!("ipc rendezvous {}", cfg.rendezvous.display())
        },
        seconds: cfg.connect_timeout.as_secs(),
        source,
    };
    let (link, answer): (Box<dyn Link>, ToWorker) = if tcp {
        let (l, a) = tcp::TcpLink::connect(&cfg.address, &hello, deadline).map_err(unreachable)?;
        l.set_stall_timeout(cfg.stall_timeout)
            .map_err(|source| Error::QueueSetup {
                what: "cannot set the write timeout of the connection to rank 0".into(),
                source,
            })?;
        (Box::new(l), a)
    } else {
        let (l, a) = ipc::IpcLink::connect(&cfg.rendezvous, rank.rank, &hello, deadline)
            .map_err(unreachable)?;
        (Box::new(l), a)
    };
    match answer {
        ToWorker::Welcome { id, name } => {
            let sink =
                WorkerSink::start(link, rank.rank, cfg.capacity, cfg.policy, cfg.stall_timeout)
                    .map_err(|source| Error::QueueSetup {
                        what: "cannot start the sender thread".into(),
                        source,
                    })?;
            Ok((sink, id, name))
        }
        ToWorker::Refused { reason } => Err(Error::QueueRefused {
            rank: rank.rank,
            reason,
        }),
    }
}

#[cfg(test)]
mod tests;

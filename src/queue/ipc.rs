//! Same-host transport: ipc-channel, with a rendezvous folder.
//!
//! Upstream facts this is built around: `IpcOneShotServer::accept` has no
//! timeout (each runs in its own thread, and is woken by connecting to it
//! ourselves when we stop waiting); `send` blocks while the socket buffer is
//! full (only the worker's sender thread sends, never `log`); a dead peer
//! shows as a closed channel; one undecodable message would panic
//! ipc-channel's global ROUTER thread, so the ROUTER is never used: the owner
//! drains an `IpcReceiverSet` on its own thread and decodes every message
//! itself, so bad bytes fail only that peer. Socket names live under
//! `TMPDIR`, which must stay short (Unix socket paths are limited to 108 bytes).

use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{
    self, IpcMessage, IpcOneShotServer, IpcReceiver, IpcReceiverSet, IpcSelectionResult, IpcSender,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::rendezvous;
use super::wire::{self, ToOwner, ToWorker};
use super::{Admission, Event, Hub, Link};

/// What travels over ipc-channel: our own postcard payloads as bytes.
#[derive(Serialize, Deserialize)]
enum IpcMsg {
    /// A worker's first message, with the channel for the owner's answer.
    Hello {
        reply: IpcSender<ByteBuf>,
        payload: ByteBuf,
    },
    /// Any later message.
    Frame(ByteBuf),
    /// Sent by the owner to its own server to end a waiting `accept`.
    Wake,
}

struct Accepted {
    rank: u32,
    receiver: IpcReceiver<IpcMsg>,
    first: IpcMsg,
}

/// What an accept thread hands the owner.
enum Accept {
    /// A peer connected and sent its first message.
    Connected(Accepted),
    /// A peer connected but its first message could not be read.
    Unreadable(u32),
}

/// The owner's side: one one-shot server per worker, one receiver set.
pub(crate) struct IpcHub {
    dir: PathBuf,
    admission: Admission,
    set: IpcReceiverSet,
    ids: FxHashMap<u64, u32>,
    accepted_tx: Sender<Accept>,
    accepted: Receiver<Accept>,
    /// Latest server name per worker rank not yet connected.
    waiting: FxHashMap<u32, String>,
    /// Each admitted worker's answer channel, kept open: a worker sees the
    /// owner as gone when it closes.
    replies: FxHashMap<u32, IpcSender<ByteBuf>>,
}

impl IpcHub {
    /// Publishes a server for every worker rank in `dir`.
    pub(crate) fn start(dir: &Path, admission: Admission) -> io::Result<IpcHub> {
        rendezvous::prepare(dir)?;
        let (accepted_tx, accepted) = crossbeam_channel::unbounded();
        let mut hub = IpcHub {
            dir: dir.to_path_buf(),
            set: IpcReceiverSet::new()?,
            ids: FxHashMap::default(),
            accepted_tx,
            accepted,
            waiting: FxHashMap::default(),
            replies: FxHashMap::default(),
            admission,
        };
        for rank in 1..hub.admission.world_size {
            rendezvous::clear(dir, rank);
        }
        for rank in 1..hub.admission.world_size {
            hub.serve(rank)?;
        }
        Ok(hub)
    }

    /// Starts (or restarts) the one-shot server of `rank`.
    fn serve(&mut self, rank: u32) -> io::Result<()> {
        let (server, name) = IpcOneShotServer::<IpcMsg>::new().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create an ipc socket ({e}); if TMPDIR is a long path, set TMPDIR=/tmp"
                ),
            )
        })?;
        rendezvous::publish(&self.dir, rank, &name)?;
        self.waiting.insert(rank, name);
        let tx = self.accepted_tx.clone();
        std::thread::Builder::new()
            .name(format!("ranklog-accept-{rank}"))
            .spawn(move || {
                // ipc-channel looks up the channels named in the first message
                // without a bounds check: bytes from a stranger can panic
                // inside `accept`. Catching it keeps the rank reachable.
                match std::panic::catch_unwind(AssertUnwindSafe(|| server.accept())) {
                    Ok(Ok((receiver, first))) => {
                        let _ = tx.send(Accept::Connected(Accepted {
                            rank,
                            receiver,
                            first,
                        }));
                    }
                    Ok(Err(e)) => tracing::debug!(rank, error = %e, "ranklog: ipc accept ended"),
                    Err(_) => {
                        let _ = tx.send(Accept::Unreadable(rank));
                    }
                }
            })?;
        Ok(())
    }

    fn admit(&mut self, acc: Accept, events: &mut Vec<Event>) {
        let acc = match acc {
            Accept::Connected(acc) => acc,
            Accept::Unreadable(rank) => {
                return self.reopen(rank, "its first message is unreadable", events)
            }
        };
        let (reply, payload) = match acc.first {
            IpcMsg::Hello { reply, payload } => (reply, payload),
            IpcMsg::Frame(_) => {
                return self.reopen(acc.rank, "its first message is not a hello", events)
            }
            // Our own wake-up at close: nothing to serve any more.
            IpcMsg::Wake => return,
        };
        let hello = wire::decode::<ToOwner>(&payload);
        let answer = self.admission.check(acc.rank, hello.as_ref());
        let _ = reply.send(ByteBuf::from(wire::encode(&answer)));
        match answer {
            ToWorker::Welcome { .. } => match self.set.add(acc.receiver) {
                Ok(id) => {
                    self.ids.insert(id, acc.rank);
                    self.waiting.remove(&acc.rank);
                    self.replies.insert(acc.rank, reply);
                    events.push(Event::Connected(acc.rank));
                }
                Err(e) => {
                    tracing::warn!(rank = acc.rank, error = %e, "ranklog: cannot watch the worker's channel")
                }
            },
            ToWorker::Refused { reason } => self.reopen(acc.rank, &reason, events),
        }
    }

    /// Refuses a connection to `rank`'s server. The one-shot server is used
    /// up: a fresh one is published so the real worker can still connect.
    fn reopen(&mut self, rank: u32, why: &str, events: &mut Vec<Event>) {
        events.push(Event::Refused(format!(
            "ipc connection for rank {rank}: {why}"
        )));
        if let Err(e) = self.serve(rank) {
            tracing::warn!(rank, error = %e, "ranklog: cannot re-open the ipc server");
        }
    }
}

impl Hub for IpcHub {
    fn poll(&mut self, timeout: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(acc) = self.accepted.try_recv() {
            self.admit(acc, &mut events);
        }
        if self.ids.is_empty() {
            if let Ok(acc) = self.accepted.recv_timeout(timeout) {
                self.admit(acc, &mut events);
            }
            return events;
        }
        let results = match self.set.try_select_timeout(timeout) {
            Ok(r) => r,
            Err(ipc_channel::TrySelectError::Empty) => return events,
            Err(ipc_channel::TrySelectError::IoError(e)) => {
                tracing::warn!(error = %e, "ranklog: ipc select failed");
                std::thread::sleep(timeout);
                return events;
            }
        };
        for result in results {
            match result {
                IpcSelectionResult::MessageReceived(id, msg) => {
                    let Some(&rank) = self.ids.get(&id) else {
                        continue;
                    };
                    match decode_frame(msg) {
                        Some(m) => events.push(Event::Message(rank, m)),
                        None => events.push(Event::Garbage(rank)),
                    }
                }
                IpcSelectionResult::ChannelClosed(id) => {
                    if let Some(rank) = self.ids.remove(&id) {
                        self.replies.remove(&rank);
                        events.push(Event::Closed(rank));
                    }
                }
            }
        }
        events
    }

    fn close(&mut self) {
        self.replies.clear();
        // End the accept threads still waiting for a worker.
        for name in self.waiting.drain().map(|(_, n)| n) {
            if let Ok(tx) = IpcSender::<IpcMsg>::connect(name) {
                let _ = tx.send(IpcMsg::Wake);
            }
        }
    }
}

/// [`IpcMsg`] as the owner reads an admitted worker's messages: the same
/// variants, but the hello's reply channel read as the bare index that
/// ipc-channel writes for a channel. ipc-channel turns that index into a
/// channel without a bounds check, so reading an [`IpcMsg`] whose index
/// names no channel panics; a frame is all the owner expects here anyway.
#[derive(Serialize, Deserialize)]
enum Incoming {
    Hello { _reply: usize, _payload: ByteBuf },
    Frame(ByteBuf),
    Wake,
}

/// Decodes a message of an admitted worker: a frame holding a `ToOwner`;
/// `None` for anything else, whatever the bytes.
pub(crate) fn decode_frame(msg: IpcMessage) -> Option<ToOwner> {
    match msg.to::<Incoming>().ok()? {
        Incoming::Frame(bytes) => wire::decode::<ToOwner>(&bytes),
        Incoming::Hello { .. } | Incoming::Wake => None,
    }
}

/// The bytes ipc-channel sends for a worker's frame (fuzzing seeds).
#[cfg(feature = "fuzzing")]
pub(crate) fn frame_message_bytes(payload: &[u8]) -> Vec<u8> {
    postcard::to_stdvec(&IpcMsg::Frame(ByteBuf::from(payload.to_vec()))).unwrap_or_default()
}

/// A worker's connection to the owner over ipc-channel.
pub(crate) struct IpcLink {
    tx: IpcSender<IpcMsg>,
    reply: IpcReceiver<ByteBuf>,
}

impl IpcLink {
    /// Connects worker `rank` through the rendezvous folder, waiting for the
    /// owner until `deadline`; returns the link and the owner's answer.
    pub(crate) fn connect(
        dir: &Path,
        rank: u32,
        hello: &ToOwner,
        deadline: Instant,
    ) -> io::Result<(IpcLink, ToWorker)> {
        let payload = ByteBuf::from(wire::encode(hello));
        let mut tried = Vec::new();
        loop {
            let Some(name) = rendezvous::wait_for_name(dir, rank, deadline, &tried) else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no server name published",
                ));
            };
            tried.push(name.clone());
            let Ok(tx) = IpcSender::<IpcMsg>::connect(name) else {
                continue;
            };
            let (reply_tx, reply) = ipc::channel::<ByteBuf>()?;
            if tx
                .send(IpcMsg::Hello {
                    reply: reply_tx,
                    payload: payload.clone(),
                })
                .is_err()
            {
                continue;
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            match reply.try_recv_timeout(wait) {
                Ok(bytes) => {
                    let answer = wire::decode::<ToWorker>(&bytes).ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the owner's answer is not readable",
                        )
                    })?;
                    return Ok((IpcLink { tx, reply }, answer));
                }
                Err(_) if Instant::now() < deadline => continue,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the owner did not answer",
                    ))
                }
            }
        }
    }
}

impl Link for IpcLink {
    fn send(&mut self, payload: Vec<u8>) -> io::Result<()> {
        self.tx
            .send(IpcMsg::Frame(ByteBuf::from(payload)))
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))
    }

    fn owner_alive(&mut self) -> bool {
        !matches!(
            self.reply.try_recv(),
            Err(ipc_channel::TryRecvError::IpcError(
                ipc_channel::IpcError::Disconnected
            ))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Admission;
    use crate::record::Record;

    fn message(bytes: Vec<u8>) -> IpcMessage {
        IpcMessage::from_data(bytes)
    }

    /// Regression (issue #9, found by the `queue_frames` fuzz target): this
    /// panicked the owner's thread inside ipc-channel.
    #[test]
    fn a_hello_naming_no_channel_is_garbage_not_a_panic() {
        // IpcMsg::Hello { reply: channel #3, payload: [] } with no channel
        // attached: ipc-channel would index its channel list out of bounds.
        assert_eq!(decode_frame(message(vec![0, 3, 0])), None);
        assert_eq!(decode_frame(message(vec![0, 0, 2, 1, 2])), None);
        assert_eq!(decode_frame(message(vec![2])), None); // Wake
        assert_eq!(decode_frame(message(vec![7, 1])), None);
        assert_eq!(decode_frame(message(Vec::new())), None);
    }

    /// Regression (issue #9): a stranger's first message naming a channel
    /// that is not there panicked the accept thread inside ipc-channel, and
    /// the rank could no longer connect.
    #[test]
    fn an_unreadable_first_message_is_refused_and_the_rank_still_connects() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let rdv = dir.path().join("rdv");
        let admission = Admission::new(2, "secret".into(), "id".into(), "name".into());
        let mut hub = IpcHub::start(&rdv, admission).unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let name = rendezvous::wait_for_name(&rdv, 1, deadline, &[])
            .unwrap_or_else(|| panic!("no server published"));
        let stranger = IpcSender::<Incoming>::connect(name).unwrap_or_else(|e| panic!("{e}"));
        stranger
            .send(Incoming::Hello {
                _reply: 3,
                _payload: ByteBuf::new(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let mut events = Vec::new();
        while events.is_empty() && Instant::now() < deadline {
            events.extend(hub.poll(Duration::from_millis(20)));
        }
        assert!(
            matches!(events.as_slice(), [Event::Refused(why)] if why.contains("unreadable")),
            "{} events",
            events.len()
        );
        let hello = ToOwner::Hello {
            rank: 1,
            world_size: 2,
            token: "secret".into(),
            pid: 1,
            host: "h".into(),
        };
        let worker = std::thread::spawn({
            let rdv = rdv.clone();
            move || IpcLink::connect(&rdv, 1, &hello, deadline).map(|(_, answer)| answer)
        });
        let mut events = Vec::new();
        while events.is_empty() && Instant::now() < deadline {
            events.extend(hub.poll(Duration::from_millis(20)));
        }
        assert!(matches!(events.as_slice(), [Event::Connected(1)]));
        let answer = worker
            .join()
            .unwrap_or_else(|_| panic!("worker panicked"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(answer, ToWorker::Welcome { .. }));
        hub.close();
    }

    #[test]
    fn frames_decode_as_the_worker_sent_them() {
        let msg = ToOwner::Records(vec![Record::Key {
            id: 1,
            name: "loss".into(),
        }]);
        let bytes = postcard::to_stdvec(&IpcMsg::Frame(ByteBuf::from(wire::encode(&msg))))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decode_frame(message(bytes)), Some(msg));
    }
}

//! Multi-node transport: TCP to rank 0, length-prefixed postcard frames.
//!
//! A connection starts with [`TCP_MAGIC`], then a `Hello` frame carrying the
//! job token; the owner answers `Welcome` or `Refused`. Anything else — wrong
//! magic, a wrong token, an undecodable or oversized frame, no hello within
//! [`HANDSHAKE_TIMEOUT`] — closes that connection with a warning, and the
//! owner goes on. One thread serves every connection (mio).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::wire::{self, FrameBuffer, Next, ToOwner, ToWorker, TCP_MAGIC};
use super::{Admission, Event, Hub, Link};

const LISTENER: Token = Token(usize::MAX);
/// How long a new connection has to present its magic and hello.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

enum Stage {
    Magic,
    Hello,
    Admitted(u32),
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: FrameBuffer,
    stage: Stage,
    since: Instant,
}

/// The owner's side: a listener and the admitted connections.
pub(crate) struct TcpHub {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    admission: Admission,
}

impl TcpHub {
    /// Listens on `addr` (host:port).
    pub(crate) fn start(addr: &str, admission: Admission) -> io::Result<TcpHub> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{addr} resolves to no address"),
            )
        })?;
        let mut listener = TcpListener::bind(addr)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(TcpHub {
            poll,
            events: Events::with_capacity(256),
            listener,
            conns: Vec::new(),
            admission,
        })
    }

    /// The address actually bound (useful with port 0).
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let slot = self
                        .conns
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or_else(|| {
                            self.conns.push(None);
                            self.conns.len() - 1
                        });
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(slot), Interest::READABLE)
                    {
                        tracing::warn!(%peer, error = %e, "ranklog: cannot watch a queue connection");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.conns[slot] = Some(Conn {
                        stream,
                        peer,
                        buf: FrameBuffer::default(),
                        stage: Stage::Magic,
                        since: Instant::now(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "ranklog: accepting a queue connection failed");
                    return;
                }
            }
        }
    }

    /// Reads what a connection has; false when it must be closed.
    fn read(&mut self, slot: usize, events: &mut Vec<Event>) -> bool {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return true;
        };
        let mut chunk = [0u8; 64 << 10];
        let mut open = true;
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => conn.buf.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    open = false;
                    break;
                }
            }
        }
        loop {
            match conn.stage {
                Stage::Magic => match conn.buf.take_raw(TCP_MAGIC.len()) {
                    Some(m) if m == TCP_MAGIC => conn.stage = Stage::Hello,
                    Some(_) => {
                        events.push(Event::Refused(format!(
                            "{}: not a ranklog worker (bad magic bytes)",
                            conn.peer
                        )));
                        return false;
                    }
                    None => break,
                },
                Stage::Hello | Stage::Admitted(_) => match conn.buf.next_frame() {
                    Next::NeedMore => break,
                    Next::TooLarge(len) => {
                        let who = who(conn);
                        events.push(Event::Refused(format!(
                            "{who}: frame of {len} bytes is over the limit"
                        )));
                        if let Stage::Admitted(rank) = conn.stage {
                            events.push(Event::Garbage(rank));
                        }
                        return false;
                    }
                    Next::Frame(payload) => {
                        let msg = wire::decode::<ToOwner>(&payload);
                        match (&conn.stage, msg) {
                            (Stage::Admitted(rank), Some(m)) => {
                                events.push(Event::Message(*rank, m))
                            }
                            (Stage::Admitted(rank), None) => {
                                events.push(Event::Garbage(*rank));
                                return false;
                            }
                            (Stage::Hello, hello) => {
                                let rank = match &hello {
                                    Some(ToOwner::Hello { rank, .. }) => *rank,
                                    _ => u32::MAX,
                                };
                                let answer = self.admission.check(rank, hello.as_ref());
                                let _ = write_all_nonblocking(&mut conn.stream, &frame(&answer));
                                match answer {
                                    ToWorker::Welcome { .. } => {
                                        conn.stage = Stage::Admitted(rank);
                                        events.push(Event::Connected(rank));
                                    }
                                    ToWorker::Refused { reason } => {
                                        events.push(Event::Refused(format!(
                                            "{}: {reason}",
                                            conn.peer
                                        )));
                                        return false;
                                    }
                                }
                            }
                            (Stage::Magic, _) => break,
                        }
                    }
                },
            }
        }
        if !open {
            if let Stage::Admitted(rank) = conn.stage {
                events.push(Event::Closed(rank));
            }
        }
        open
    }

    fn drop_conn(&mut self, slot: usize) {
        if let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }
}

fn who(conn: &Conn) -> String {
    match conn.stage {
        Stage::Admitted(rank) => format!("rank {rank} ({})", conn.peer),
        _ => conn.peer.to_string(),
    }
}

fn frame(msg: &ToWorker) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = wire::write_frame(&mut out, &wire::encode(msg));
    out
}

/// Writes a small answer on a non-blocking socket, waiting briefly if needed.
fn write_all_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Hub for TcpHub {
    fn poll(&mut self, timeout: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(error = %e, "ranklog: queue poll failed");
            }
            return out;
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in ready {
            if token == LISTENER {
                self.accept();
            } else if !self.read(token.0, &mut out) {
                self.drop_conn(token.0);
            }
        }
        let stale: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| {
                        !matches!(c.stage, Stage::Admitted(_))
                            && c.since.elapsed() > HANDSHAKE_TIMEOUT
                    })
                    .map(|_| i)
            })
            .collect();
        for i in stale {
            if let Some(c) = &self.conns[i] {
                out.push(Event::Refused(format!(
                    "{}: no hello within {} s",
                    c.peer,
                    HANDSHAKE_TIMEOUT.as_secs()
                )));
            }
            self.drop_conn(i);
        }
        out
    }

    fn close(&mut self) {
        for i in 0..self.conns.len() {
            self.drop_conn(i);
        }
    }
}

/// A worker's connection to the owner over TCP.
pub(crate) struct TcpLink {
    stream: StdStream,
}

impl TcpLink {
    /// Connects to the owner at `addr`, retrying until `deadline` (the owner
    /// may start later than the worker); returns the link and the answer.
    pub(crate) fn connect(
        addr: &str,
        hello: &ToOwner,
        deadline: Instant,
    ) -> io::Result<(TcpLink, ToWorker)> {
        loop {
            match try_connect(addr, hello, deadline) {
                Ok(done) => return Ok(done),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl TcpLink {
    /// Bounds every write to the owner: a write that makes no progress for
    /// `timeout` fails, so a frozen owner or a half-open connection cannot
    /// hold the sender thread forever.
    pub(crate) fn set_stall_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
}

fn try_connect(addr: &str, hello: &ToOwner, deadline: Instant) -> io::Result<(TcpLink, ToWorker)> {
    let sock = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{addr} resolves to no address"),
        )
    })?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let mut stream = StdStream::connect_timeout(&sock, left)?;
    stream.set_nodelay(true)?;
    stream.write_all(&TCP_MAGIC)?;
    wire::write_frame(&mut stream, &wire::encode(hello))?;
    stream.set_read_timeout(Some(left))?;
    let answer = wire::read_frame(&mut stream)?;
    stream.set_read_timeout(None)?;
    let answer = wire::decode::<ToWorker>(&answer).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the owner's answer is not readable",
        )
    })?;
    Ok((TcpLink { stream }, answer))
}

impl Link for TcpLink {
    fn send(&mut self, payload: Vec<u8>) -> io::Result<()> {
        // A timed-out write may have sent part of a frame: the connection is
        // unusable after any error, and the sender stops using it.
        wire::write_frame(&mut self.stream, &payload).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, e),
            _ => e,
        })
    }

    fn owner_alive(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = [0u8; 1];
        let alive = match self.stream.peek(&mut probe) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        alive
    }
}

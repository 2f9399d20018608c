//! One conformance suite for both transports: admission, messages, closing.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::wire::{self, ToOwner, ToWorker};
use super::*;

fn hello(rank: u32, token: &str) -> ToOwner {
    ToOwner::Hello {
        rank,
        world_size: 3,
        token: token.into(),
        pid: 1,
        host: "h".into(),
    }
}

/// Connects a worker rank over one transport.
type Connect<'a> = dyn Fn(u32, &ToOwner) -> std::io::Result<(Box<dyn Link>, ToWorker)> + Sync + 'a;

fn admission() -> Admission {
    Admission::new(3, "secret".into(), "runid123".into(), "the-run".into())
}

/// Polls until `want` events came or a generous deadline passed.
fn collect(hub: &mut dyn Hub, want: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while events.len() < want && Instant::now() < deadline {
        events.extend(hub.poll(Duration::from_millis(20)));
    }
    events
}

fn conformance(mut hub: Box<dyn Hub>, connect: &Connect<'_>) {
    let h = std::thread::scope(|s| {
        let worker = s.spawn(|| connect(1, &hello(1, "secret")));
        let events = collect(hub.as_mut(), 1);
        assert!(
            matches!(events.as_slice(), [Event::Connected(1)]),
            "connect events"
        );
        worker
            .join()
            .unwrap_or_else(|_| panic!("worker thread panicked"))
    });
    let (mut link, answer) = h.unwrap_or_else(|e| panic!("connect failed: {e}"));
    assert_eq!(
        answer,
        ToWorker::Welcome {
            id: "runid123".into(),
            name: "the-run".into()
        }
    );
    let records = ToOwner::Records(vec![crate::record::Record::Key {
        id: 0,
        name: "loss".into(),
    }]);
    link.send(wire::encode(&records))
        .unwrap_or_else(|e| panic!("{e}"));
    link.send(wire::encode(&ToOwner::Bye { dropped: 2 }))
        .unwrap_or_else(|e| panic!("{e}"));
    let events = collect(hub.as_mut(), 2);
    assert!(matches!(&events[0], Event::Message(1, m) if *m == records));
    assert!(matches!(
        &events[1],
        Event::Message(1, ToOwner::Bye { dropped: 2 })
    ));
    assert!(link.owner_alive());
    drop(link);
    let events = collect(hub.as_mut(), 1);
    assert!(
        matches!(events.as_slice(), [Event::Closed(1)]),
        "{} events: {:?}",
        events.len(),
        events.iter().map(kind).collect::<Vec<_>>()
    );
    hub.close();
}

#[test]
fn ipc_transport_conforms() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rdv = dir.path().join("rdv");
    let hub = ipc::IpcHub::start(&rdv, admission()).unwrap_or_else(|e| panic!("{e}"));
    let connect = |rank: u32, hello: &ToOwner| -> std::io::Result<(Box<dyn Link>, ToWorker)> {
        let (l, a) =
            ipc::IpcLink::connect(&rdv, rank, hello, Instant::now() + Duration::from_secs(20))?;
        Ok((Box::new(l), a))
    };
    conformance(Box::new(hub), &connect);
}

#[test]
fn tcp_transport_conforms() {
    let hub = tcp::TcpHub::start("127.0.0.1:0", admission()).unwrap_or_else(|e| panic!("{e}"));
    let addr = hub
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let connect = move |_rank: u32,
                        hello: &ToOwner|
          -> std::io::Result<(Box<dyn Link>, ToWorker)> {
        let (l, a) = tcp::TcpLink::connect(&addr, hello, Instant::now() + Duration::from_secs(20))?;
        Ok((Box::new(l), a))
    };
    conformance(Box::new(hub), &connect);
}

#[test]
fn tcp_refuses_wrong_tokens_garbage_and_oversized_frames() {
    let mut hub = tcp::TcpHub::start("127.0.0.1:0", admission()).unwrap_or_else(|e| panic!("{e}"));
    let addr = hub
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let a2 = addr.clone();
    let wrong = std::thread::spawn(move || {
        tcp::TcpLink::connect(
            &a2,
            &hello(1, "guess"),
            Instant::now() + Duration::from_secs(20),
        )
    });
    let events = collect(&mut hub, 1);
    assert!(matches!(&events[0], Event::Refused(why) if why.contains("wrong job token")));
    let answer = wrong
        .join()
        .unwrap_or_else(|_| panic!("thread panicked"))
        .map(|(_, a)| a);
    assert!(matches!(answer, Ok(ToWorker::Refused { .. })));

    let mut garbage = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{e}"));
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let events = collect(&mut hub, 1);
    assert!(matches!(&events[0], Event::Refused(why) if why.contains("bad magic")));

    let mut big = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{e}"));
    big.write_all(&wire::TCP_MAGIC)
        .unwrap_or_else(|e| panic!("{e}"));
    big.write_all(&u32::MAX.to_le_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let events = collect(&mut hub, 1);
    assert!(matches!(&events[0], Event::Refused(why) if why.contains("over the limit")));

    // The owner goes on: a real worker still gets in.
    let real = std::thread::spawn(move || {
        tcp::TcpLink::connect(
            &addr,
            &hello(2, "secret"),
            Instant::now() + Duration::from_secs(20),
        )
    });
    let events = collect(&mut hub, 1);
    assert!(matches!(events.as_slice(), [Event::Connected(2)]));
    assert!(real.join().map(|r| r.is_ok()).unwrap_or(false));
}

#[test]
fn admission_refuses_duplicates_and_strangers() {
    let mut a = admission();
    assert!(matches!(
        a.check(1, Some(&hello(1, "secret"))),
        ToWorker::Welcome { .. }
    ));
    assert!(
        matches!(a.check(1, Some(&hello(1, "secret"))), ToWorker::Refused { reason } if reason.contains("already connected"))
    );
    assert!(matches!(
        a.check(2, Some(&hello(1, "secret"))),
        ToWorker::Refused { .. }
    ));
    assert!(matches!(
        a.check(u32::MAX, Some(&hello(0, "secret"))),
        ToWorker::Refused { .. }
    ));
    assert!(matches!(
        a.check(u32::MAX, Some(&hello(7, "secret"))),
        ToWorker::Refused { .. }
    ));
    assert!(matches!(a.check(2, None), ToWorker::Refused { .. }));
}

fn kind(e: &Event) -> String {
    match e {
        Event::Connected(r) => format!("connected {r}"),
        Event::Message(r, _) => format!("message {r}"),
        Event::Closed(r) => format!("closed {r}"),
        Event::Garbage(r) => format!("garbage {r}"),
        Event::Refused(w) => format!("refused {w}"),
    }
}

/// A link to an owner that never takes anything (frozen, half-open): every
/// send blocks until the test ends.
struct StuckLink(crossbeam_channel::Receiver<()>);

impl Link for StuckLink {
    fn send(&mut self, _payload: Vec<u8>) -> std::io::Result<()> {
        let _ = self.0.recv();
        Err(std::io::ErrorKind::BrokenPipe.into())
    }

    fn owner_alive(&mut self) -> bool {
        true
    }
}

fn row(step: u64) -> crate::record::Record {
    crate::record::Record::History(crate::record::Row {
        step,
        t_us: 0,
        values: vec![(0, step as f64)],
    })
}

#[test]
fn block_gives_up_on_a_stuck_owner_after_the_stall_timeout() {
    let (_release, stuck) = crossbeam_channel::bounded(0);
    let stall = Duration::from_millis(300);
    let w = WorkerSink::start(Box::new(StuckLink(stuck)), 1, 4, Policy::Block, stall)
        .unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let mut failed = None;
    // The sender holds up to a batch (512) while its send is stuck.
    for step in 0..10_000 {
        if let Err(e) = w.send(row(step)) {
            failed = Some(e);
            break;
        }
    }
    assert_eq!(
        failed,
        Some(SendError::OwnerUnresponsive { seconds: 0 }),
        "log never gave up"
    );
    assert!(start.elapsed() >= stall, "gave up before the stall timeout");
    // Later rows fail at once and are counted; finish does not wait for the stuck sender.
    assert!(w.send(row(10_000)).is_err());
    let report = w.finish(Duration::from_secs(600));
    assert!(!report.delivered);
    assert!(report.dropped >= 2, "{report:?}");
    assert_eq!(w.lost(), SendError::OwnerUnresponsive { seconds: 0 });
}

#[test]
fn drop_newest_never_waits_for_a_stuck_owner_not_even_for_keys() {
    let (_release, stuck) = crossbeam_channel::bounded(0);
    let stall = Duration::from_secs(600);
    let w = WorkerSink::start(
        Box::new(StuckLink(stuck)),
        1,
        4,
        Policy::DropNewest,
        Duration::from_millis(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for step in 0..10_000 {
        assert_eq!(w.send(row(step)), Ok(()));
        let key = crate::record::Record::Key {
            id: step as u32,
            name: format!("k{step}"),
        };
        assert_eq!(w.send(key), Ok(()));
    }
    // The sender made no progress for the stall timeout: finish gives up
    // then, long before its own timeout.
    let report = w.finish(stall);
    assert!(!report.delivered);
    assert!(report.dropped >= 9_990, "{report:?}");
    assert_eq!(w.lost(), SendError::OwnerUnresponsive { seconds: 0 });
}

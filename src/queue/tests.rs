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

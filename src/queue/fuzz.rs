//! Fuzzing entry points of the queue's decoders (feature `fuzzing`).
//!
//! Each function feeds untrusted bytes through the same calls the owner and
//! the workers make on what arrives from a peer, in the same order, and
//! checks what must hold whatever the bytes are.

use std::io::Read;
use std::time::{Duration, Instant};

use super::merge::{Merge, Merger, Reduce};
use super::wire::{self, FrameBuffer, Next, ToOwner, ToWorker, MAX_FRAME, TCP_MAGIC};
use super::{ipc, Admission};
use crate::record::Record;

/// World size of the job the fuzzed owner admits workers into.
pub const WORLD_SIZE: u32 = 4;
/// Job token the fuzzed owner expects in hellos.
pub const TOKEN: &str = "fuzz-token";

/// What the owner's TCP side does with the bytes of one connection: magic,
/// hello (admission), then frames of `ToOwner` into the merge, the stream
/// arriving in chunks of `chunk` bytes (1..=256) as reads would cut it.
pub fn owner_tcp(chunk: usize, stream: &[u8]) {
    let chunk = chunk.clamp(1, 256);
    let mut admission = Admission::new(WORLD_SIZE, TOKEN.into(), "abcd1234".into(), "run".into());
    let mut merger = Merger::new(merge_for(stream.len()), WORLD_SIZE);
    let mut buf = FrameBuffer::default();
    let mut magic_ok = false;
    let mut admitted: Option<u32> = None;
    let mut written = 0usize;
    let start = Instant::now();
    let mut out = |_r: Record| written += 1;
    'conn: for piece in stream.chunks(chunk) {
        buf.extend(piece);
        loop {
            if !magic_ok {
                match buf.take_raw(TCP_MAGIC.len()) {
                    Some(m) if m == TCP_MAGIC => magic_ok = true,
                    Some(_) => break 'conn,
                    None => break,
                }
                continue;
            }
            match buf.next_frame() {
                Next::NeedMore => break,
                Next::TooLarge(len) => {
                    assert!(len > MAX_FRAME);
                    break 'conn;
                }
                Next::Frame(payload) => {
                    assert!(payload.len() <= MAX_FRAME);
                    let msg = wire::decode::<ToOwner>(&payload);
                    match admitted {
                        None => {
                            let rank = match &msg {
                                Some(ToOwner::Hello { rank, .. }) => *rank,
                                _ => u32::MAX,
                            };
                            let answer = admission.check(rank, msg.as_ref());
                            // The answer goes back over the wire: the worker
                            // must read exactly it.
                            let mut framed = Vec::new();
                            if wire::write_frame(&mut framed, &wire::encode(&answer)).is_ok() {
                                let mut r: &[u8] = &framed;
                                let back = wire::read_frame(&mut r)
                                    .ok()
                                    .and_then(|p| wire::decode::<ToWorker>(&p));
                                assert_eq!(back.as_ref(), Some(&answer));
                            }
                            match answer {
                                ToWorker::Welcome { .. } => admitted = Some(rank),
                                ToWorker::Refused { .. } => break 'conn,
                            }
                        }
                        Some(rank) => match msg {
                            Some(ToOwner::Records(records)) => {
                                for r in records {
                                    merger.record(rank, r, start, &mut out);
                                }
                                merger.poll(start, Duration::from_secs(3600), &mut out);
                            }
                            Some(ToOwner::Bye { .. }) => merger.done(rank),
                            Some(ToOwner::Hello { .. }) => {}
                            None => break 'conn,
                        },
                    }
                }
            }
        }
    }
    if let Some(rank) = admitted {
        merger.lost(rank, "connection closed".into(), &mut out);
    }
    merger.flush(&mut out);
}

/// What a worker does with the owner's answer on TCP: blocking
/// length-prefixed reads, each payload decoded as a `ToWorker`.
pub fn worker_tcp(stream: &[u8]) {
    let mut r: &[u8] = stream;
    let mut frames = 0usize;
    while let Ok(payload) = wire::read_frame(&mut r) {
        assert!(payload.len() <= MAX_FRAME);
        frames += 1;
        if let Some(answer) = wire::decode::<ToWorker>(&payload) {
            // Whatever decodes encodes back to a message that decodes the same.
            assert_eq!(
                wire::decode::<ToWorker>(&wire::encode(&answer)),
                Some(answer)
            );
        }
    }
    assert!(frames <= stream.len() / 4);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
}

/// What the owner does with one ipc-channel message of an admitted worker,
/// and what a worker does with the owner's answer over ipc.
pub fn ipc_message(data: &[u8]) {
    let _ = ipc::decode_frame(ipc_channel::ipc::IpcMessage::from_data(data.to_vec()));
    if let Some(answer) = wire::decode::<ToWorker>(data) {
        assert_eq!(
            wire::decode::<ToWorker>(&wire::encode(&answer)),
            Some(answer)
        );
    }
    let hello = wire::decode::<ToOwner>(data);
    let mut admission = Admission::new(WORLD_SIZE, TOKEN.into(), "abcd1234".into(), "run".into());
    for rank in 1..WORLD_SIZE {
        let _ = admission.check(rank, hello.as_ref());
    }
}

/// Merge policies picked by the input, so every policy meets the records.
fn merge_for(n: usize) -> Merge {
    match n % 3 {
        0 => Merge::default(),
        1 => Merge {
            per_rank: false,
            reduce: vec![Reduce::Sum, Reduce::Mean],
        },
        _ => Merge {
            per_rank: true,
            reduce: Vec::new(),
        },
    }
}

/// Encoded messages for seeds: what real workers and owners put on the wire.
pub fn encode_to_owner_hello(rank: u32, world_size: u32, token: &str) -> Vec<u8> {
    wire::encode(&ToOwner::Hello {
        rank,
        world_size,
        token: token.into(),
        pid: 4242,
        host: "node-1".into(),
    })
}

/// A `Records` message of real records, encoded.
pub fn encode_to_owner_records(records: Vec<Record>) -> Vec<u8> {
    wire::encode(&ToOwner::Records(records))
}

/// A `Bye` message, encoded.
pub fn encode_to_owner_bye(dropped: u64) -> Vec<u8> {
    wire::encode(&ToOwner::Bye { dropped })
}

/// The owner's answers, encoded.
pub fn encode_to_worker(welcome: bool) -> Vec<u8> {
    wire::encode(&if welcome {
        ToWorker::Welcome {
            id: "abcd1234".into(),
            name: "brave-otter-3".into(),
        }
    } else {
        ToWorker::Refused {
            reason: "wrong job token".into(),
        }
    })
}

/// One TCP frame: `[len u32 LE][payload]`.
pub fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = wire::write_frame(&mut out, payload);
    out
}

/// The magic a TCP connection starts with.
pub fn tcp_magic() -> [u8; 8] {
    TCP_MAGIC
}

/// The bytes of an ipc-channel message carrying a frame, as a worker's
/// `IpcLink::send` produces them.
pub fn ipc_frame_bytes(payload: &[u8]) -> Vec<u8> {
    ipc::frame_message_bytes(payload)
}

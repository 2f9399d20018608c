//! The messages between workers and the owner, and their framing.
//!
//! Both transports carry the same messages, encoded with postcard. On TCP a
//! frame is `[len: u32 LE][payload]`; over ipc-channel each message is one
//! ipc message whose bytes are the payload. A payload longer than
//! [`MAX_FRAME`] is refused before it is read.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Largest payload either side accepts.
pub(crate) const MAX_FRAME: usize = 8 << 20;

/// Magic bytes a TCP connection starts with, so stray clients are told apart.
pub(crate) const TCP_MAGIC: [u8; 8] = *b"RLQUEUE1";

/// A worker's message to the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToOwner {
    /// The first message: who the worker is.
    Hello {
        rank: u32,
        world_size: u32,
        token: String,
        pid: u32,
        host: String,
    },
    /// Records of the worker's run (keys use the worker's own key ids).
    Records(Vec<Record>),
    /// The worker is done; it dropped `dropped` rows under its drop policy.
    Bye { dropped: u64 },
}

/// The owner's answer to a worker's hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Admitted: the run every rank writes to.
    Welcome { id: String, name: String },
    /// Not admitted, and why.
    Refused { reason: String },
}

/// Encodes a message as a payload.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Encoding into a Vec fails only for types postcard cannot express,
    // which these are not; an empty payload is then refused by the peer.
    postcard::to_stdvec(msg).unwrap_or_default()
}

/// Decodes a payload; `None` for bytes that are not a valid message.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Option<T> {
    postcard::from_bytes(payload).ok()
}

/// Writes one length-prefixed frame.
pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one length-prefixed frame (blocking).
pub(crate) fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Splits complete frames off the front of a receive buffer.
#[derive(Debug, Default)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
}

/// What [`FrameBuffer::next_frame`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    Frame(Vec<u8>),
    NeedMore,
    TooLarge(usize),
}

impl FrameBuffer {
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Takes `n` raw bytes off the front, if there are that many.
    pub(crate) fn take_raw(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.buf.len() >= n).then(|| self.buf.drain(..n).collect())
    }

    pub(crate) fn next_frame(&mut self) -> Next {
        if self.buf.len() < 4 {
            return Next::NeedMore;
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Next::TooLarge(len);
        }
        if self.buf.len() < 4 + len {
            return Next::NeedMore;
        }
        let frame = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Next::Frame(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Row;

    #[test]
    fn messages_round_trip_through_frames() {
        let msg = ToOwner::Records(vec![
            Record::Key {
                id: 0,
                name: "loss".into(),
            },
            Record::History(Row {
                step: 3,
                t_us: 10,
                values: vec![(0, 0.5)],
            }),
        ]);
        let mut wire = Vec::new();
        write_frame(&mut wire, &encode(&msg)).unwrap_or_else(|e| panic!("{e}"));
        let mut fb = FrameBuffer::default();
        for b in &wire[..wire.len() - 1] {
            fb.extend(&[*b]);
            assert_eq!(fb.next_frame(), Next::NeedMore);
        }
        fb.extend(&wire[wire.len() - 1..]);
        let Next::Frame(payload) = fb.next_frame() else {
            panic!("no frame")
        };
        assert_eq!(decode::<ToOwner>(&payload), Some(msg));
        assert_eq!(fb.len(), 0);
    }

    #[test]
    fn oversized_and_garbage_frames_are_refused() {
        let mut fb = FrameBuffer::default();
        fb.extend(&u32::MAX.to_le_bytes());
        assert!(matches!(fb.next_frame(), Next::TooLarge(_)));
        assert_eq!(decode::<ToOwner>(b"\xff\xff\xff\xff\xff"), None);
        let mut r: &[u8] = &(MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(read_frame(&mut r).is_err());
    }
}

//! One smux stream's state: the bytes received but not yet read, and which FINs have been exchanged.
//!
//! The session owns every [`SmuxStream`] and does the session-wide accounting; a stream only knows
//! its own buffer. Received data stays readable after the peer's FIN (xtaci `waitRead` returns
//! buffered data before EOF, issue xtaci/smux#82), and a stream is forgotten only once both FINs have
//! been exchanged *and* its buffer is empty.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

/// Identifies a stream within one session; the value is the id carried in every frame header.
///
/// A newtype so stream ids cannot be mixed up with the data channel's sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Receive buffer and close state of one stream.
#[derive(Debug, Default)]
pub(crate) struct SmuxStream {
    /// PSH payloads in arrival order, each a zero-copy slice of the decoder's buffer.
    recv: VecDeque<Bytes>,
    /// Total bytes in `recv`.
    recv_len: usize,
    /// We sent FIN: no more writes.
    pub(crate) local_fin: bool,
    /// The peer sent FIN: no more data will be accepted.
    pub(crate) remote_fin: bool,
}

impl SmuxStream {
    /// Buffers one PSH payload. Returns whether the buffer was empty before, i.e. whether the
    /// application needs a fresh `Readable` event.
    pub(crate) fn push(&mut self, data: Bytes) -> bool {
        let was_empty = self.recv_len == 0;
        self.recv_len += data.len();
        self.recv.push_back(data);
        was_empty
    }

    /// Takes up to `max` bytes from the front of the buffer, without copying: the result is at most
    /// one received PSH payload (or a prefix of it).
    pub(crate) fn read(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
        }
        let front = self.recv.front_mut()?;
        let chunk = if front.len() <= max {
            self.recv.pop_front()?
        } else {
            front.split_to(max)
        };
        self.recv_len -= chunk.len();
        Some(chunk)
    }

    /// Bytes received but not yet read.
    pub(crate) fn buffered(&self) -> usize {
        self.recv_len
    }

    /// Both directions are closed and nothing is left to read: the session can forget the stream.
    pub(crate) fn is_done(&self) -> bool {
        self.local_fin && self.remote_fin && self.recv_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_across_and_within_payloads() {
        let mut stream = SmuxStream::default();
        assert!(stream.push(Bytes::from_static(b"hello ")));
        assert!(
            !stream.push(Bytes::from_static(b"world")),
            "only the first push is an edge"
        );
        assert_eq!(stream.buffered(), 11);
        assert_eq!(stream.read(4).as_deref(), Some(&b"hell"[..]));
        assert_eq!(
            stream.read(100).as_deref(),
            Some(&b"o "[..]),
            "one payload at a time"
        );
        assert_eq!(stream.read(0), None);
        assert_eq!(stream.read(5).as_deref(), Some(&b"world"[..]));
        assert_eq!((stream.read(5), stream.buffered()), (None, 0));
        assert!(
            stream.push(Bytes::from_static(b"!")),
            "empty again, so the next push is an edge"
        );
    }

    #[test]
    fn is_done_needs_both_fins_and_an_empty_buffer() {
        let mut stream = SmuxStream::default();
        stream.push(Bytes::from_static(b"x"));
        stream.remote_fin = true;
        assert!(!stream.is_done());
        stream.local_fin = true;
        assert!(!stream.is_done(), "unread data keeps the stream alive");
        stream.read(1);
        assert!(stream.is_done());
    }

    #[test]
    fn stream_id_displays_as_the_wire_number() {
        assert_eq!(StreamId(3).to_string(), "3");
    }
}

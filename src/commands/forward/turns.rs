//! [`Turns`]: which connection's bytes go into smux next, sans-IO.
//!
//! Each connection's reads wait in a queue of their own; connections take turns, one frame of
//! at most `frame_data` bytes each per turn, so no connection's backlog delays another's next
//! bytes by more than a frame each. A short read from a connection with nothing waiting looks
//! interactive (a keystroke, a short request) and goes to the front of the line. A connection's
//! EOF or end is carried out only once its queued bytes are in smux.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use rssm_protocol::smux::StreamId;

/// A read of at most this many bytes from a connection with nothing else waiting counts as
/// interactive: it goes ahead of other connections' bulk.
pub const INTERACTIVE_BYTES: usize = 256;

/// One connection's queue.
#[derive(Debug, Default)]
struct Queue {
    /// Bytes read from the local socket, waiting for their turn in smux.
    up: VecDeque<Bytes>,
    /// The local side sent EOF: close our smux side once `up` is written.
    eof_after: bool,
    /// The connection task ended: forget the stream once `up` is written.
    closed_after: bool,
}

impl Queue {
    /// Whether the connection waits in the line (bytes, or an EOF, to pass on).
    fn waits(&self) -> bool {
        !self.up.is_empty() || self.eof_after
    }
}

/// What one turn passes on for a connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Turn {
    /// The connection's stream.
    pub id: StreamId,
    /// Bytes to write into smux (and to give back to the connection's read credit).
    pub data: Option<Bytes>,
    /// Close our side of the stream after the bytes (the local side sent EOF).
    pub close: bool,
    /// The connection is done: forget its stream.
    pub forget: bool,
}

/// The turn order of all connections; see the module docs.
#[derive(Debug)]
pub struct Turns {
    order: VecDeque<StreamId>,
    queues: HashMap<StreamId, Queue>,
    frame_data: usize,
}

impl Turns {
    /// Turns of at most `frame_data` bytes.
    pub fn new(frame_data: usize) -> Turns {
        Turns {
            order: VecDeque::new(),
            queues: HashMap::new(),
            frame_data: frame_data.max(1),
        }
    }

    /// Most bytes one turn passes on.
    pub fn frame_data(&self) -> usize {
        self.frame_data
    }

    /// Whether no connection waits for its turn.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bytes waiting, of all connections (only those in line have any).
    pub fn waiting_bytes(&self) -> usize {
        (self.order.iter())
            .filter_map(|id| self.queues.get(id))
            .flat_map(|q| q.up.iter().map(Bytes::len))
            .sum()
    }

    /// A connection read `bytes`; true when they look interactive (and so go first).
    pub fn push(&mut self, id: StreamId, bytes: Bytes) -> bool {
        let queue = self.queues.entry(id).or_default();
        let fresh = !queue.waits();
        let interactive = fresh && bytes.len() <= INTERACTIVE_BYTES;
        if fresh {
            if interactive {
                self.order.push_front(id);
            } else {
                self.order.push_back(id);
            }
        }
        queue.up.push_back(bytes);
        interactive
    }

    /// The local side sent EOF; true when the stream can be closed now (nothing waits before).
    pub fn eof(&mut self, id: StreamId) -> bool {
        match self.queues.get_mut(&id) {
            Some(q) if !q.up.is_empty() => {
                q.eof_after = true;
                false
            }
            _ => true,
        }
    }

    /// The connection ended; true when its stream can be forgotten now (nothing waits).
    pub fn closed(&mut self, id: StreamId) -> bool {
        match self.queues.get_mut(&id) {
            Some(q) if !q.up.is_empty() => {
                q.closed_after = true;
                false
            }
            _ => {
                self.queues.remove(&id);
                true
            }
        }
    }

    /// The connection broke: drops what waits (nothing more goes for it) and returns how many
    /// bytes that was, to give back to the read credit.
    pub fn reset(&mut self, id: StreamId) -> usize {
        let Some(q) = self.queues.get_mut(&id) else {
            return 0;
        };
        q.eof_after = false;
        q.up.drain(..).map(|b| b.len()).sum()
    }

    /// Forgets a connection (its stream is gone); returns the bytes that still waited.
    pub fn forget(&mut self, id: StreamId) -> usize {
        self.queues
            .remove(&id)
            .map_or(0, |q| q.up.iter().map(Bytes::len).sum())
    }

    /// The next turn: up to a frame of the first waiting connection's bytes, and what follows
    /// them. A connection with more waiting goes to the back of the line.
    pub fn next(&mut self) -> Option<Turn> {
        loop {
            let id = self.order.pop_front()?;
            let Some(q) = self.queues.get_mut(&id) else {
                continue; // forgotten meanwhile
            };
            let data = (q.up.front_mut()).map(|f| f.split_to(f.len().min(self.frame_data)));
            if q.up.front().is_some_and(Bytes::is_empty) {
                q.up.pop_front();
            }
            if !q.up.is_empty() {
                self.order.push_back(id);
                return Some(Turn {
                    id,
                    data,
                    close: false,
                    forget: false,
                });
            }
            let close = std::mem::take(&mut q.eof_after);
            let forget = q.closed_after;
            if forget {
                self.queues.remove(&id);
            }
            if data.is_none() && !close && !forget {
                continue; // reset meanwhile: nothing left to do
            }
            return Some(Turn {
                id,
                data,
                close,
                forget,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(n: usize) -> Bytes {
        Bytes::from(vec![b'b'; n])
    }

    /// The ids and sizes of the next `n` turns.
    fn take(t: &mut Turns, n: usize) -> Vec<(u32, usize)> {
        (0..n)
            .map_while(|_| t.next())
            .map(|turn| (turn.id.0, turn.data.map_or(0, |d| d.len())))
            .collect()
    }

    #[test]
    fn connections_take_turns_a_frame_at_a_time() {
        let mut t = Turns::new(1000);
        assert!(!t.push(StreamId(1), bulk(2500)));
        assert!(!t.push(StreamId(3), bulk(1500)));
        assert_eq!(t.waiting_bytes(), 4000);
        assert_eq!(
            take(&mut t, 10),
            [(1, 1000), (3, 1000), (1, 1000), (3, 500), (1, 500)]
        );
        assert!(t.is_empty());
        assert_eq!(t.waiting_bytes(), 0);
    }

    #[test]
    fn a_keystroke_goes_ahead_of_bulk_waiting_on_other_connections() {
        let mut t = Turns::new(1000);
        t.push(StreamId(1), bulk(5000));
        t.push(StreamId(3), bulk(5000));
        assert!(t.push(StreamId(5), Bytes::from_static(b"k")));
        assert_eq!(take(&mut t, 1), [(5, 1)]);
        // A short read behind its own connection's backlog is not interactive.
        t.push(StreamId(7), bulk(3000));
        assert!(!t.push(StreamId(7), Bytes::from_static(b"k")));
    }

    #[test]
    fn eof_and_end_wait_for_the_bytes_before_them() {
        let mut t = Turns::new(1000);
        assert!(t.eof(StreamId(1)), "nothing waits: close at once");
        t.push(StreamId(3), bulk(1500));
        assert!(!t.eof(StreamId(3)));
        assert!(!t.closed(StreamId(3)));
        let first = t.next().unwrap();
        assert!(!first.close && !first.forget);
        assert_eq!(
            t.next(),
            Some(Turn {
                id: StreamId(3),
                data: Some(bulk(500)),
                close: true,
                forget: true,
            })
        );
        assert_eq!(t.next(), None);
        assert!(
            t.closed(StreamId(9)),
            "an idle connection is forgotten at once"
        );
    }

    #[test]
    fn a_reset_drops_what_waits_and_returns_its_credit() {
        let mut t = Turns::new(1000);
        t.push(StreamId(1), bulk(1500));
        t.push(StreamId(1), bulk(700));
        t.eof(StreamId(1));
        t.push(StreamId(3), bulk(10));
        assert_eq!(t.reset(StreamId(1)), 2200);
        assert_eq!(
            take(&mut t, 5),
            [(3, 10)],
            "the reset connection has no turn"
        );
        assert_eq!(t.reset(StreamId(42)), 0);
    }

    #[test]
    fn a_forgotten_connection_loses_its_turns() {
        let mut t = Turns::new(100);
        t.push(StreamId(1), bulk(300));
        t.push(StreamId(3), bulk(50));
        assert_eq!(t.forget(StreamId(1)), 300);
        assert_eq!(take(&mut t, 5), [(3, 50)]);
    }
}

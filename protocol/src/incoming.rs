//! Received stream messages that arrived ahead of the expected sequence number (PROTOCOL.md §6.3).
//!
//! Messages stored here have already been acknowledged, so they must be delivered eventually: the
//! session drains them in order as soon as the gap before them is filled and its consumer is ready.

use std::collections::BTreeMap;

use crate::message::AgentMessage;

/// What to do with a received stream message, given the expected sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// `s == e`: process it now.
    InOrder,
    /// `s > e` and stored: acknowledge it.
    Buffered,
    /// `s > e` but already stored, or the buffer is full: drop it (acknowledge only if stored).
    AlreadyBuffered,
    /// `s > e` and no room: drop silently so the peer retransmits later.
    Full,
    /// `s < e`: a duplicate of something processed; re-acknowledge it (§6.3 recommendation).
    Duplicate,
}

/// The reorder buffer and the expected sequence number.
#[derive(Debug)]
pub struct IncomingBuffer {
    expected: i64,
    pending: BTreeMap<i64, AgentMessage>,
    capacity: usize,
}

impl IncomingBuffer {
    /// Expects sequence number 0 first.
    pub fn new(capacity: usize) -> Self {
        IncomingBuffer {
            expected: 0,
            pending: BTreeMap::new(),
            capacity,
        }
    }

    /// The next sequence number to deliver.
    pub fn expected(&self) -> i64 {
        self.expected
    }

    /// Messages waiting for a gap to fill.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Classifies `msg` and stores it when it is ahead of the expected number.
    pub fn arrive(&mut self, msg: &AgentMessage) -> Arrival {
        let s = msg.sequence_number;
        match s.cmp(&self.expected) {
            std::cmp::Ordering::Equal => Arrival::InOrder,
            std::cmp::Ordering::Less => Arrival::Duplicate,
            std::cmp::Ordering::Greater => {
                if self.pending.contains_key(&s) {
                    Arrival::AlreadyBuffered
                } else if self.pending.len() >= self.capacity {
                    Arrival::Full
                } else {
                    self.pending.insert(s, msg.clone());
                    Arrival::Buffered
                }
            }
        }
    }

    /// Marks the expected message as delivered.
    pub fn advance(&mut self) {
        self.expected += 1;
        // A message buffered with the number just delivered (impossible unless the peer reused a
        // number) must not shadow the next one.
        self.pending.remove(&(self.expected - 1));
    }

    /// Takes the buffered message that is now expected, if it arrived earlier.
    pub fn take_next(&mut self) -> Option<AgentMessage> {
        self.pending.remove(&self.expected)
    }

    /// Puts back a message taken with [`Self::take_next`] that could not be delivered yet.
    pub fn put_back(&mut self, msg: AgentMessage) {
        self.pending.insert(msg.sequence_number, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageType, PayloadType};
    use bytes::Bytes;
    use uuid::Uuid;

    fn m(seq: i64) -> AgentMessage {
        AgentMessage::new(
            MessageType::OutputStreamData,
            seq,
            0,
            1,
            Uuid::nil(),
            PayloadType::Output,
            Bytes::from(vec![seq as u8]),
        )
    }

    #[test]
    fn classifies_and_drains_in_order() {
        let mut b = IncomingBuffer::new(2);
        assert_eq!(b.arrive(&m(2)), Arrival::Buffered);
        assert_eq!(b.arrive(&m(2)), Arrival::AlreadyBuffered);
        assert_eq!(b.arrive(&m(1)), Arrival::Buffered);
        assert_eq!(b.arrive(&m(3)), Arrival::Full);
        assert_eq!(b.arrive(&m(0)), Arrival::InOrder);
        b.advance();
        assert_eq!(b.arrive(&m(0)), Arrival::Duplicate);
        let one = b.take_next().unwrap();
        assert_eq!(one.sequence_number, 1);
        b.put_back(one);
        assert_eq!(b.len(), 2);
        let one = b.take_next().unwrap();
        assert_eq!(one.sequence_number, 1);
        b.advance();
        assert_eq!(b.take_next().unwrap().sequence_number, 2);
        b.advance();
        assert!(b.take_next().is_none());
        assert_eq!(b.expected(), 3);
        assert!(b.is_empty());
    }
}

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
    /// `s > e` and no room (messages or bytes): drop silently so the peer retransmits later.
    Full,
    /// `s` is further ahead of `e` than the buffer holds messages: no real peer gets
    /// there (it cannot run further ahead than what it has not had acknowledged); dropped.
    TooFarAhead,
    /// `s < e`: a duplicate of something processed; re-acknowledge it (§6.3 recommendation).
    Duplicate,
}

/// What a stored message is counted as beyond its payload (header, map entry), so that a flood
/// of empty messages is bounded by the byte cap too.
const PER_MESSAGE_OVERHEAD: usize = 160;

/// The reorder buffer and the expected sequence number.
///
/// Bounded three ways against a peer that sends what it likes: at most `capacity` messages, at
/// most `capacity_bytes` of them, and nothing numbered more than `capacity` ahead of the expected
/// message (a real peer never runs further ahead than its unacknowledged messages).
#[derive(Debug)]
pub struct IncomingBuffer {
    expected: i64,
    pending: BTreeMap<i64, AgentMessage>,
    capacity: usize,
    capacity_bytes: usize,
    pending_bytes: usize,
}

fn stored_size(msg: &AgentMessage) -> usize {
    msg.payload.len() + PER_MESSAGE_OVERHEAD
}

impl IncomingBuffer {
    /// Expects sequence number 0 first; holds at most `capacity` messages, and none numbered
    /// further ahead than that.
    pub fn new(capacity: usize) -> Self {
        Self::with_byte_cap(capacity, usize::MAX)
    }

    /// Like [`Self::new`], holding at most `capacity_bytes` (payloads plus a fixed overhead each).
    pub fn with_byte_cap(capacity: usize, capacity_bytes: usize) -> Self {
        IncomingBuffer {
            expected: 0,
            pending: BTreeMap::new(),
            capacity,
            capacity_bytes,
            pending_bytes: 0,
        }
    }

    /// Bytes held (payloads plus the fixed overhead each).
    pub fn bytes(&self) -> usize {
        self.pending_bytes
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
                let ahead = s.saturating_sub(self.expected);
                if self.pending.contains_key(&s) {
                    Arrival::AlreadyBuffered
                } else if ahead > i64::try_from(self.capacity).unwrap_or(i64::MAX) {
                    Arrival::TooFarAhead
                } else if self.pending.len() >= self.capacity
                    || self.pending_bytes + stored_size(msg) > self.capacity_bytes
                {
                    Arrival::Full
                } else {
                    // A copy, not a slice: a received payload shares the allocation of the
                    // websocket read that brought it, which a held slice would keep alive whole
                    // (and the byte cap would then count too little).
                    let mut stored = msg.clone();
                    stored.payload = bytes::Bytes::copy_from_slice(&msg.payload);
                    self.pending_bytes += stored_size(&stored);
                    self.pending.insert(s, stored);
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
        if let Some(old) = self.pending.remove(&(self.expected - 1)) {
            self.pending_bytes -= stored_size(&old);
        }
    }

    /// Takes the buffered message that is now expected, if it arrived earlier.
    pub fn take_next(&mut self) -> Option<AgentMessage> {
        let msg = self.pending.remove(&self.expected)?;
        self.pending_bytes -= stored_size(&msg);
        Some(msg)
    }

    /// Puts back a message taken with [`Self::take_next`] that could not be delivered yet.
    pub fn put_back(&mut self, msg: AgentMessage) {
        self.pending_bytes += stored_size(&msg);
        if let Some(old) = self.pending.insert(msg.sequence_number, msg) {
            self.pending_bytes -= stored_size(&old);
        }
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

    fn sized(seq: i64, len: usize) -> AgentMessage {
        let mut msg = m(seq);
        msg.payload = Bytes::from(vec![0u8; len]);
        msg
    }

    #[test]
    fn far_future_numbers_are_refused_however_much_room_is_left() {
        let mut b = IncomingBuffer::new(100);
        assert_eq!(b.arrive(&m(100)), Arrival::Buffered);
        assert_eq!(b.arrive(&m(101)), Arrival::TooFarAhead);
        assert_eq!(b.arrive(&m(i64::MAX)), Arrival::TooFarAhead);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn the_byte_cap_bounds_what_is_held_and_frees_as_it_drains() {
        let cap = 3 * (1024 + PER_MESSAGE_OVERHEAD);
        let mut b = IncomingBuffer::with_byte_cap(100, cap);
        for seq in 1..=3 {
            assert_eq!(b.arrive(&sized(seq, 1024)), Arrival::Buffered);
        }
        assert_eq!(b.arrive(&sized(4, 1024)), Arrival::Full);
        assert_eq!(b.bytes(), cap);
        b.advance(); // 0 delivered
        let next = b.take_next().expect("1 was held");
        assert_eq!(b.bytes(), cap - stored_size(&next));
        b.put_back(next);
        assert_eq!(b.bytes(), cap);
        let next = b.take_next().expect("1 again");
        assert_eq!(next.sequence_number, 1);
        b.advance();
        assert_eq!(b.arrive(&sized(4, 1024)), Arrival::Buffered);
        assert_eq!(b.bytes(), cap);
    }

    #[test]
    fn a_held_message_owns_its_payload_instead_of_pinning_the_read_it_came_in() {
        let read = Bytes::from(vec![7u8; 64 * 1024]);
        let mut msg = m(1);
        msg.payload = read.slice(0..100);
        let mut b = IncomingBuffer::new(10);
        assert_eq!(b.arrive(&msg), Arrival::Buffered);
        b.advance();
        let held = b.take_next().expect("held");
        assert_eq!(held.payload, msg.payload);
        assert_ne!(held.payload.as_ptr(), msg.payload.as_ptr(), "copied");
    }

    #[test]
    fn classifies_and_drains_in_order() {
        let mut b = IncomingBuffer::new(2);
        assert_eq!(b.arrive(&m(2)), Arrival::Buffered);
        assert_eq!(b.arrive(&m(2)), Arrival::AlreadyBuffered);
        assert_eq!(b.arrive(&m(1)), Arrival::Buffered);
        assert_eq!(b.arrive(&m(3)), Arrival::TooFarAhead);
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

//! [`SendQueue`]: the caller's side of sending stream data, sans-IO. It decides what the
//! [`Session`] is given and when:
//!
//! * writes wait here, not numbered yet, so control messages (Size, flags) overtake them and
//!   small writes are joined into messages of up to [`MAX_STREAM_PAYLOAD`] bytes;
//! * they are numbered only while the send window ([`SEND_WINDOW`]) and span ([`SEND_SPAN`])
//!   have room and, paced, only as many as the pacer lets go at once ([`Session::batch_allowance`]);
//! * a command that hands data over on request (a forward) is asked for as many messages as may
//!   go now ([`SendQueue::ask`]);
//! * a short write with nothing queued looks typed ([`SendQueue::looks_typed`]): its answer is
//!   read as it comes;
//! * something interactive behind bulk data hurries the pacer for [`HURRY_FOR`].
//!
//! Time is passed in; the driver moves the bytes and sleeps until the instants returned here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::message::{PayloadType, MAX_STREAM_PAYLOAD};
use crate::session::Session;

/// Most unacknowledged messages in flight: ~0.5 MiB at 1 KiB each, enough to fill the service's
/// per-session rate (~1000 messages/s) at round trips up to half a second, and loopback's
/// ceiling, while bounding memory.
pub const SEND_WINDOW: usize = 512;
/// Most sequence numbers the send buffer may span. When the peer holds one message back (an
/// agent whose handler is not ready drops it until our retransmission), it keeps acking the
/// ones after it, and without this bound each of those would leave a slot behind until the
/// held-back one is acked.
pub const SEND_SPAN: usize = 8 * SEND_WINDOW;
/// Writes queued here, unpaced, before the caller stops taking more. Paced, only what the
/// pacer lets go at once is queued: whatever waits here waits in front of the next keystroke.
pub const QUEUED_UNPACED: usize = 8;
/// Numbered but never-sent messages without pacing: enough to keep the websocket busy between
/// two turns of the caller's loop.
pub const UNSENT_UNPACED: usize = 64;
/// A write up to this size, with nothing else waiting to go, counts as typed (a keystroke, an SSH
/// packet of one; a transfer's writes are larger or come queued).
pub const TYPED_BYTES: usize = 256;
/// How long a session that finishes waits for the acknowledgement of what it sent.
pub const FINISH_GRACE: Duration = Duration::from_secs(2);
/// How long a [`SendQueue::hurry`] keeps the pacer waking per message.
pub const HURRY_FOR: Duration = Duration::from_millis(20);

/// What [`SendQueue::ask`] decided about data a command offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing to ask for now (nothing offered, or no room: acks wake the caller).
    Nothing,
    /// Ask the command for this many messages' worth of data.
    Messages(usize),
    /// The pacer lets nothing go yet: ask again at this instant.
    Later(Instant),
}

/// Stream data between a command and the [`Session`]; see the module docs.
#[derive(Debug, Default)]
pub struct SendQueue {
    /// Writes taken from the command, not numbered yet.
    queued: VecDeque<Bytes>,
    /// The command hands data over when asked: it says itself what is interactive.
    asks: bool,
    /// Until when the pacer wakes per message.
    hurry_until: Option<Instant>,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> SendQueue {
        SendQueue::default()
    }

    /// Writes waiting to be numbered.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Whether no write waits.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Queues a write (an empty one is dropped).
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.queued.push_back(data);
        }
    }

    /// Whether a write of `len` bytes looks typed, so that its answer is read as it comes: short,
    /// with nothing waiting before it, from a command that does not say itself what is
    /// interactive (one that hands data over on request, whose small writes are often control
    /// frames such as a new connection's smux SYN, uses [`SendQueue::hurry`]).
    pub fn looks_typed(&self, len: usize, session: &Session) -> bool {
        !self.asks && len <= TYPED_BYTES && self.queued.is_empty() && session.unsent() == 0
    }

    /// Whether the caller should take another write from its command. `elsewhere` counts
    /// messages' worth of data that wait outside this queue (in the command's channel, or
    /// offered): the pacer lets a short write go at once when all of it fits in its tokens.
    pub fn has_room(&self, session: &mut Session, now: Instant, elsewhere: usize) -> bool {
        match self.allowance(session, now, elsewhere) {
            Some(n) => self.queued.len() + session.unsent() < n,
            None => self.queued.len() < QUEUED_UNPACED,
        }
    }

    /// Paced, how many messages may wait, numbered or not, before the next goes out: what the
    /// pacer lets go right now, at least one (so that data waits here rather than in the
    /// command's channel), and whatever comes next is never more than a write behind. `None`
    /// unpaced.
    fn allowance(&self, session: &mut Session, now: Instant, elsewhere: usize) -> Option<usize> {
        session.set_backlog(self.queued.len() + elsewhere);
        session.batch_allowance(now).map(|n| n.max(1))
    }

    /// Numbers queued writes while the session's queue of never-sent messages is short and the
    /// send window and span have room, joining small writes into messages of up to
    /// [`MAX_STREAM_PAYLOAD`] bytes. Returns how many messages it numbered.
    pub fn release(&mut self, session: &mut Session, now: Instant, elsewhere: usize) -> usize {
        let limit = self
            .allowance(session, now, elsewhere)
            .unwrap_or(UNSENT_UNPACED);
        let mut numbered = 0;
        while session.unsent() < limit
            && session.can_send()
            && session.unacked() < SEND_WINDOW
            && session.unacked_span() < SEND_SPAN
        {
            let Some(data) = self.next_message() else {
                break;
            };
            if session.send(PayloadType::Output, data).is_err() {
                break; // closed: nothing more goes
            }
            numbered += 1;
        }
        numbered
    }

    /// The next message's payload: the first write, joined with those after it while they fit.
    fn next_message(&mut self) -> Option<Bytes> {
        let first = self.queued.pop_front()?;
        let fits = |len: usize, next: &Bytes| len + next.len() <= MAX_STREAM_PAYLOAD;
        if !self.queued.front().is_some_and(|n| fits(first.len(), n)) {
            return Some(first);
        }
        let mut joined = BytesMut::from(&first[..]);
        while let Some(next) = self.queued.front() {
            if !fits(joined.len(), next) {
                break;
            }
            joined.extend_from_slice(next);
            self.queued.pop_front();
        }
        Some(joined.freeze())
    }

    /// Paced, for a command that offers `offered` messages' worth of data with `in_channel`
    /// writes already waiting in its channel: how many messages to ask it for, or when to look
    /// again. A whole batch at once (see [`Session::batch_allowance`]) unless all that is offered
    /// fits in the tokens there are; nothing while the channel still holds writes.
    pub fn ask(
        &mut self,
        session: &mut Session,
        now: Instant,
        offered: usize,
        in_channel: usize,
    ) -> Ask {
        if offered == 0 || in_channel > 0 {
            return Ask::Nothing;
        }
        session.set_backlog(self.queued.len() + offered);
        let Some(allowance) = session.batch_allowance(now) else {
            return Ask::Nothing;
        };
        if allowance == 0 {
            return session.next_send_at().map_or(Ask::Nothing, Ask::Later);
        }
        // Tokens but no room: what is queued waits for the send window (acks wake the caller).
        let room = allowance.saturating_sub(self.queued.len() + session.unsent());
        if room == 0 {
            return Ask::Nothing;
        }
        self.asks = true;
        Ask::Messages(room)
    }

    /// Something interactive waits behind bulk data: the pacer wakes per message until
    /// [`HURRY_FOR`] from `now` ([`Session::set_hurried`]).
    pub fn hurry(&mut self, session: &mut Session, now: Instant) {
        self.hurry_until = Some(now + HURRY_FOR);
        session.set_hurried(true);
    }

    /// Ends a hurry whose time is up.
    pub fn on_tick(&mut self, session: &mut Session, now: Instant) {
        if self.hurry_until.is_some_and(|t| now >= t) {
            self.hurry_until = None;
            session.set_hurried(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Event, SessionConfig};
    use crate::Role;

    fn session(rate: Option<u32>, now: Instant) -> Session {
        let mut config = SessionConfig::client("s", "i-1");
        config.max_message_rate = rate;
        config.role = Role::Client;
        Session::new(config, now, 0, [7; 32])
    }

    /// Payload sizes of the frames the session sends at `now`.
    fn sent_payloads(s: &mut Session, now: Instant) -> Vec<usize> {
        let mut sizes = Vec::new();
        while let Some(frame) = s.poll_transmit(now) {
            let msg = crate::AgentMessage::decode(frame).unwrap();
            sizes.push(msg.payload.len());
        }
        while s
            .poll_event()
            .is_some_and(|e| !matches!(e, Event::Closed(_)))
        {}
        sizes
    }

    #[test]
    fn small_writes_join_into_messages_of_at_most_the_payload_limit() {
        let t0 = Instant::now();
        let mut s = session(None, t0);
        let mut q = SendQueue::new();
        for _ in 0..5 {
            q.push(Bytes::from(vec![b'a'; 300]));
        }
        q.push(Bytes::from(vec![b'b'; 2000])); // too large to join, goes alone
        q.push(Bytes::new()); // dropped
        assert_eq!(q.len(), 6);
        assert_eq!(q.release(&mut s, t0, 0), 3);
        assert_eq!(sent_payloads(&mut s, t0), [900, 600, 2000]);
        assert!(q.is_empty());
    }

    #[test]
    fn unpaced_the_window_bounds_what_is_numbered() {
        let t0 = Instant::now();
        let mut s = session(None, t0);
        let mut q = SendQueue::new();
        for _ in 0..(SEND_WINDOW + 100) {
            q.push(Bytes::from_static(&[1; MAX_STREAM_PAYLOAD]));
        }
        let mut numbered = 0;
        for _ in 0..100 {
            numbered += q.release(&mut s, t0, 0);
            sent_payloads(&mut s, t0);
        }
        assert_eq!(
            numbered, SEND_WINDOW,
            "nothing past the window without acks"
        );
        assert_eq!(q.len(), 100);
        assert!(!q.has_room(&mut s, t0, 0), "a full queue takes no more");
    }

    #[test]
    fn unpaced_the_queue_takes_a_few_writes() {
        let t0 = Instant::now();
        let mut s = session(None, t0);
        let mut q = SendQueue::new();
        for _ in 0..QUEUED_UNPACED {
            assert!(q.has_room(&mut s, t0, 0));
            q.push(Bytes::from_static(b"x"));
        }
        assert!(!q.has_room(&mut s, t0, 0));
    }

    #[test]
    fn paced_a_batch_waits_for_its_tokens_and_the_ask_says_when() {
        let t0 = Instant::now();
        let mut s = session(Some(1000), t0);
        let mut q = SendQueue::new();
        // The bucket starts full: a whole burst may go at once.
        let Ask::Messages(first) = q.ask(&mut s, t0, 10_000, 0) else {
            panic!("tokens at the start");
        };
        assert!(first > 1);
        for _ in 0..first {
            q.push(Bytes::from_static(&[2; MAX_STREAM_PAYLOAD]));
        }
        assert_eq!(q.release(&mut s, t0, 10_000), first);
        assert_eq!(sent_payloads(&mut s, t0).len(), first);
        // No tokens left: the ask names the instant of the next batch, later than now.
        match q.ask(&mut s, t0, 10_000, 0) {
            Ask::Later(at) => {
                assert!(at > t0);
                let Ask::Messages(n) = q.ask(&mut s, at, 10_000, 0) else {
                    panic!("tokens at the promised instant");
                };
                assert!(n >= 1);
            }
            other => panic!("expected a later ask, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_asked_while_the_channel_holds_writes_or_nothing_is_offered() {
        let t0 = Instant::now();
        let mut s = session(Some(1000), t0);
        let mut q = SendQueue::new();
        assert_eq!(q.ask(&mut s, t0, 0, 0), Ask::Nothing);
        assert_eq!(q.ask(&mut s, t0, 5, 1), Ask::Nothing);
        assert!(matches!(q.ask(&mut s, t0, 5, 0), Ask::Messages(_)));
    }

    #[test]
    fn a_short_write_with_nothing_queued_looks_typed_until_the_command_is_asked() {
        let t0 = Instant::now();
        let mut s = session(Some(1000), t0);
        let mut q = SendQueue::new();
        assert!(q.looks_typed(1, &s));
        assert!(!q.looks_typed(TYPED_BYTES + 1, &s));
        q.push(Bytes::from_static(b"ls"));
        assert!(!q.looks_typed(1, &s), "behind a queued write");
        q.release(&mut s, t0, 0);
        sent_payloads(&mut s, t0);
        assert!(q.looks_typed(1, &s));
        let _ = q.ask(&mut s, t0, 3, 0);
        assert!(!q.looks_typed(1, &s), "a command that is asked says itself");
    }

    #[test]
    fn a_hurry_lasts_its_span_on_the_fake_clock() {
        let t0 = Instant::now();
        let mut s = session(Some(100), t0);
        let mut q = SendQueue::new();
        // Drain the bucket so that the next token is some way off.
        while let Ask::Messages(n) = q.ask(&mut s, t0, 10_000, 0) {
            for _ in 0..n {
                q.push(Bytes::from_static(b"d"));
            }
            q.release(&mut s, t0, 0);
            sent_payloads(&mut s, t0);
        }
        let batch_at = s.next_send_at().unwrap();
        q.hurry(&mut s, t0);
        let hurried_at = s.next_send_at().unwrap();
        assert!(hurried_at <= batch_at, "hurried, the next token is enough");
        q.on_tick(&mut s, t0 + HURRY_FOR - Duration::from_millis(1));
        assert_eq!(s.next_send_at().unwrap(), hurried_at, "still hurried");
        q.on_tick(&mut s, t0 + HURRY_FOR);
        assert_eq!(s.next_send_at().unwrap(), batch_at, "back to batches");
    }
}

//! Sent stream messages awaiting acknowledgement, and the retransmission timer (PROTOCOL.md §6.4).
//!
//! Differences from the reference client, each deliberate:
//! - a full buffer refuses new messages (backpressure) instead of evicting the oldest, which loses
//!   data silently in the Go plugin;
//! - every message in the first [`RETRANSMIT_WINDOW`] entries has its own timer, instead of only the
//!   head being checked every 100 ms: the agent acks out-of-order messages as they arrive (§6.3), so
//!   what stays unacked really was lost, and repairing several losses per RTO keeps a lossy link
//!   moving. The window bounds the burst after a long outage;
//! - the resend time is updated on every resend (the plugin's value-copy bug resends every 100 ms),
//!   and each further resend of the same message doubles its timeout up to the 1 s cap, so a
//!   silent peer costs one message per second, not five or ten;
//! - an ack that comes back within half a round trip of a resend answers an earlier copy: its
//!   RTT sample is measured from the first send, not the resend. Measuring from the resend (as
//!   the reference implementations do) reads the late ack of a spurious resend as a tiny RTT,
//!   shrinks the RTO, and makes the next delay look like a loss too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How many of the oldest unacked messages may be retransmitted at once.
pub const RETRANSMIT_WINDOW: usize = 64;

/// Initial smoothed round-trip time (§6.4).
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// Upper bound of the retransmission timeout (§6.4, `MaxTransmissionTimeout`).
pub const MAX_RTO: Duration = Duration::from_secs(1);
/// Floor of the variance term in the RTO (§6.4).
const MIN_RTO_VARIANCE: Duration = Duration::from_millis(10);

/// The RTO estimator both reference implementations use (§6.4): Jacobson/Karels with gains 1/8 and
/// 1/4, RTO = RTT + max(10 ms, 4·RTTVAR), capped at 1 s.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    rtt: f64,
    rttvar: f64,
    rto: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            rtt: INITIAL_RTT.as_nanos() as f64,
            rttvar: 0.0,
            rto: Duration::from_millis(200),
        }
    }
}

impl RttEstimator {
    /// Folds in one sample.
    pub fn update(&mut self, sample: Duration) {
        let r = sample.as_nanos() as f64;
        self.rttvar = 0.75 * self.rttvar + 0.25 * (self.rtt - r).abs();
        self.rtt = 0.875 * self.rtt + 0.125 * r;
        let var = Duration::from_nanos((4.0 * self.rttvar) as u64).max(MIN_RTO_VARIANCE);
        self.rto = (Duration::from_nanos(self.rtt as u64) + var).min(MAX_RTO);
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// Current smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        Duration::from_nanos(self.rtt as u64)
    }
}

/// How the oldest unacknowledged messages are retransmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// rssm's scheme (module docs): a timer per message among the oldest `window`, doubling
    /// per resend, RTT samples that tell a late ack from an answer to the resend.
    PerMessage {
        /// How many of the oldest unacked messages may be retransmitted at once.
        window: usize,
    },
    /// The agent's `ResendStreamDataMessageScheduler` (`agent/session/datachannel/datachannel.go`,
    /// PROTOCOL.md §6.4, §17.3): every `tick` it looks at the **head** only and resends it when
    /// more than the RTO has passed since it was last sent; no backoff, and the RTT sample of
    /// an ack is measured from the last (re)send. Ticks fall at `epoch + k·tick`.
    HeadEveryTick {
        /// `ResendSleepInterval`, 100 ms.
        tick: Duration,
        /// The first tick's reference point.
        epoch: Instant,
    },
}

/// Retransmission timeout of a message already sent `attempts` times: RTO doubled per resend, capped.
fn backoff(rto: Duration, attempts: u32) -> Duration {
    rto.saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_RTO.max(rto))
}

/// One sent (or queued) stream message.
#[derive(Debug, Clone)]
struct Entry {
    /// The encoded frame; resent byte for byte.
    frame: Bytes,
    /// Payload bytes (for flow accounting).
    payload_len: usize,
    /// First transmission, for the give-up deadline.
    first_sent: Option<Instant>,
    /// Most recent transmission, for the RTO and the RTT sample.
    last_sent: Option<Instant>,
    /// Transmissions so far.
    attempts: u32,
}

impl Entry {
    /// The round trip its acknowledgement at `now` shows, given the current smoothed RTT;
    /// `naive` measures from the last send, as the reference implementations do.
    fn rtt_sample(&self, now: Instant, rtt: Duration, naive: bool) -> Option<Duration> {
        let since_last = now.saturating_duration_since(self.last_sent?);
        if naive || self.attempts <= 1 || since_last >= rtt / 2 {
            return Some(since_last);
        }
        // Too quick to answer the resend: the first copy (or an earlier resend) arrived late.
        Some(now.saturating_duration_since(self.first_sent?))
    }
}

/// Outcome of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    /// The message was outstanding and is now removed.
    Removed,
    /// No such message (already acked, never sent, or out of range).
    Unknown,
}

/// The ordered buffer of outgoing stream messages, indexed by sequence number.
#[derive(Debug)]
pub struct OutgoingBuffer {
    /// Sequence number of `entries[0]`.
    base: i64,
    /// `None` marks a message acked out of order, kept until the head catches up.
    entries: VecDeque<Option<Entry>>,
    /// Live (unacked) entries.
    live: usize,
    /// Payload bytes of live entries.
    live_bytes: usize,
    /// Index into `entries` of the oldest never-sent message.
    next_unsent: usize,
    capacity: usize,
    /// How many of the oldest messages may be retransmitted at once.
    window: usize,
    rtt: RttEstimator,
    /// Most recent transmission time.
    latest: Option<Instant>,
    /// While `base` is below this, entries sent once may not be in sending order (after a
    /// reconnect made the window due, or a clock that went back).
    disordered_below: i64,
    /// `Some` for the agent's head-every-tick scheme ([`Resend::HeadEveryTick`]).
    tick: Option<(Duration, Instant)>,
    /// Head-every-tick: the tick whose check resent the head last. The scheduler resends at
    /// most one message a tick: a head that falls due while that tick's resend is in flight
    /// (its predecessor was just acknowledged) waits for the next tick.
    resent_at_tick: Option<Instant>,
}

impl OutgoingBuffer {
    /// An empty buffer whose first message will carry sequence number 0.
    pub fn new(capacity: usize) -> Self {
        Self::with_window(capacity, RETRANSMIT_WINDOW)
    }

    /// Like [`Self::new`], retransmitting among the oldest `window` messages only.
    pub fn with_window(capacity: usize, window: usize) -> Self {
        Self::with_resend(capacity, Resend::PerMessage { window })
    }

    /// A buffer with the given retransmission scheme.
    pub fn with_resend(capacity: usize, resend: Resend) -> Self {
        let (window, tick) = match resend {
            Resend::PerMessage { window } => (window, None),
            Resend::HeadEveryTick { tick, epoch } => {
                (1, Some((tick.max(Duration::from_millis(1)), epoch)))
            }
        };
        OutgoingBuffer {
            tick,
            resent_at_tick: None,
            window: window.max(1),
            base: 0,
            entries: VecDeque::new(),
            live: 0,
            live_bytes: 0,
            next_unsent: 0,
            capacity,
            rtt: RttEstimator::default(),
            latest: None,
            disordered_below: 0,
        }
    }

    /// Sequence number the next pushed message gets.
    pub fn next_sequence(&self) -> i64 {
        self.base + self.entries.len() as i64
    }

    /// Sequence numbers from the oldest unacked message to the next one to be pushed (each a
    /// slot, acked or not).
    pub fn span(&self) -> usize {
        self.entries.len()
    }

    /// Whether another message fits.
    pub fn has_room(&self) -> bool {
        self.live < self.capacity
    }

    /// Unacked messages (sent or not yet sent).
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when everything sent has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Payload bytes not yet acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.live_bytes
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Queues an encoded message; the caller numbered it with [`Self::next_sequence`].
    pub fn push(&mut self, frame: Bytes, payload_len: usize) {
        self.entries.push_back(Some(Entry {
            frame,
            payload_len,
            first_sent: None,
            last_sent: None,
            attempts: 0,
        }));
        self.live += 1;
        self.live_bytes += payload_len;
    }

    /// Removes the message with this sequence number and feeds the RTT sample (§6.2: only the
    /// sequence number is matched).
    pub fn ack(&mut self, sequence: i64, now: Instant) -> AckResult {
        // An ack for a message not sent yet is bogus: taking it out would leave a hole where
        // the next transmission is expected.
        let Some(idx) = self.index_of(sequence).filter(|&i| i < self.next_unsent) else {
            return AckResult::Unknown;
        };
        let Some(entry) = self.entries[idx].take() else {
            return AckResult::Unknown;
        };
        if let Some(sample) = entry.rtt_sample(now, self.rtt.rtt(), self.tick.is_some()) {
            self.rtt.update(sample);
        }
        self.live -= 1;
        self.live_bytes -= entry.payload_len;
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.base += 1;
            self.next_unsent = self.next_unsent.saturating_sub(1);
        }
        AckResult::Removed
    }

    fn index_of(&self, sequence: i64) -> Option<usize> {
        let off = sequence.checked_sub(self.base)?;
        (0..self.entries.len() as i64)
            .contains(&off)
            .then_some(off as usize)
    }

    /// The window's messages, oldest first, with their index in `entries`: the oldest
    /// `window` unacknowledged messages that have been sent. (The window counts unacknowledged
    /// messages, not sequence numbers: acked-out-of-order slots must not crowd later losses out
    /// of it.)
    fn window(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries
            .iter()
            .take(self.next_unsent)
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i, e)))
            .take(self.window)
    }

    /// The window's messages that can hold the earliest deadline, with their deadlines. While
    /// the buffer is in sending order, a message sent once was sent no later than anything
    /// after it, which falls due no earlier; so the walk ends at the first message sent once,
    /// after the resent ones before it (usually none): finding the next deadline does not walk
    /// the whole window, acked slots included, on every transmission.
    fn candidates(&self) -> impl Iterator<Item = (usize, Instant)> + '_ {
        let rto = self.rtt.rto();
        let ordered = self.base >= self.disordered_below;
        let mut window = self.window();
        let mut done = false;
        // Not `map_while` on the window: that would pull (skip acked slots up to) the next
        // message before stopping.
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let (i, e) = window.next()?;
            done = ordered && e.attempts <= 1;
            let due = match self.tick {
                Some(tick) => e.last_sent.map(|t| {
                    let due = tick_after(tick, t + rto);
                    match self.resent_at_tick {
                        Some(done) if due <= done => done + tick.0,
                        _ => due,
                    }
                }),
                None => e.last_sent.map(|t| t + backoff(rto, e.attempts)),
            };
            Some((i, due))
        })
        .filter_map(|(i, due)| Some((i, due?)))
    }

    /// Index of the first message in the window whose retransmission is due at `now`.
    fn first_overdue(&self, now: Instant) -> Option<usize> {
        self.candidates()
            .find(|&(_, due)| now >= due)
            .map(|(i, _)| i)
    }

    /// The next frame to transmit now, if any: first an overdue retransmission among the oldest
    /// [`RETRANSMIT_WINDOW`] messages, then the oldest never-sent message. Marks it sent at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(i64, Bytes, bool)> {
        let overdue = self.first_overdue(now);
        let (idx, retransmit) = match overdue {
            Some(i) => (i, true),
            None if self.next_unsent < self.entries.len() => {
                self.next_unsent += 1;
                (self.next_unsent - 1, false)
            }
            None => return None,
        };
        if self.latest.is_some_and(|t| now < t) {
            // The clock went back: sending order no longer orders the deadlines.
            self.disordered_below = self.next_sequence();
        }
        self.latest = Some(self.latest.map_or(now, |t| t.max(now)));
        if let (true, Some(tick)) = (retransmit, self.tick) {
            self.resent_at_tick = Some(tick_at_or_before(tick, now));
        }
        let entry = self.entries[idx]
            .as_mut()
            .expect("window holds live entries");
        entry.first_sent.get_or_insert(now);
        entry.last_sent = Some(now);
        entry.attempts += 1;
        Some((self.base + idx as i64, entry.frame.clone(), retransmit))
    }

    /// Messages pushed but never transmitted.
    pub fn unsent(&self) -> usize {
        self.entries.len() - self.next_unsent
    }

    /// Whether a never-sent message is waiting.
    pub fn has_unsent(&self) -> bool {
        self.next_unsent < self.entries.len()
    }

    /// When the earliest retransmission in the window falls due.
    pub fn next_retransmit(&self) -> Option<Instant> {
        self.candidates().map(|(_, due)| due).min()
    }

    /// First transmission time of the oldest unacked message: the give-up clock.
    pub fn oldest_first_sent(&self) -> Option<Instant> {
        self.entries
            .iter()
            .take(self.next_unsent)
            .flatten()
            .next()
            .and_then(|e| e.first_sent)
    }

    /// Head-every-tick: marks the never-sent messages as sent at `now` without sending them,
    /// as the agent does with what it numbers while paused or while its websocket is down
    /// (`SendStreamDataMessage`): they go out only as the head, one a tick.
    pub fn swallow_unsent(&mut self, now: Instant) {
        if self.tick.is_none() {
            return;
        }
        for e in self.entries.iter_mut().skip(self.next_unsent).flatten() {
            e.first_sent = Some(now);
            e.last_sent = Some(now);
            e.attempts = 1;
        }
        self.next_unsent = self.entries.len();
    }

    /// Whether this buffer follows the agent's head-every-tick scheme.
    pub fn resends_every_tick(&self) -> bool {
        self.tick.is_some()
    }

    /// Makes every sent message in the window due now, e.g. right after a websocket reconnect.
    pub fn make_window_due(&mut self, now: Instant) {
        let rto = self.rtt.rto();
        let window = self.window;
        for e in self
            .entries
            .iter_mut()
            .take(self.next_unsent)
            .flatten()
            .take(window)
        {
            // A fresh start after the outage: forget the backoff, make it due now.
            e.attempts = e.attempts.min(1);
            e.last_sent = Some(now.checked_sub(rto).unwrap_or(now));
        }
        self.disordered_below = self.next_sequence();
    }

    /// Total transmissions of the oldest unacked message.
    pub fn head_attempts(&self) -> u32 {
        self.entries
            .iter()
            .flatten()
            .next()
            .map_or(0, |e| e.attempts)
    }
}

/// The latest tick at or before `now`.
fn tick_at_or_before((tick, epoch): (Duration, Instant), now: Instant) -> Instant {
    let since = now.saturating_duration_since(epoch);
    let n = since.as_nanos() / tick.as_nanos();
    epoch + tick * u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first tick strictly after `due` (the scheduler resends when more than the RTO has passed).
fn tick_after((tick, epoch): (Duration, Instant), due: Instant) -> Instant {
    let since = due.saturating_duration_since(epoch);
    let n = since.as_nanos() / tick.as_nanos() + 1;
    epoch + tick * u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;

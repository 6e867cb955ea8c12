//! Pacing of outgoing stream messages: a token bucket under the service's per-session message
//! rate, which slows down when the path shows strain and creeps back up when it does not.
//!
//! The Message Gateway Service throttles a client that sends more than about 1000 stream messages
//! a second on one session (it answers with `pause_publication`, and closes sessions that keep
//! at it). The official plugin stays under that by sleeping 1 ms after every message; a token
//! bucket keeps the same average without a timer per message, lets a short burst (a paste, a
//! retransmission after a reconnect) go out at once, and holds everything else back in the
//! caller, where small writes can still be joined into full messages.
//!
//! Only stream messages (new and retransmitted) take tokens. Acknowledgements never wait: the
//! gateway does not count them, and holding them back would stall the peer.
//!
//! The rate adapts, multiplicative decrease / additive increase:
//! * down by [`DECREASE`] on `pause_publication`, on a retransmission storm (more than
//!   [`STORM_SHARE`] of the last second's transmissions were retransmissions, at least
//!   [`STORM_MIN`] of them), and when the smoothed round trip has grown past
//!   [`RTT_GROWTH`]× its minimum plus [`RTT_SLACK`] (messages queueing somewhere); at most once
//!   per [`HOLD`];
//! * up by a tenth of the ceiling every [`HOLD`] without any of those, back to the ceiling.
//!
//! Pure arithmetic over the `Instant`s the caller passes in, like the rest of the crate.

use std::time::{Duration, Instant};

/// Default ceiling: 96% of the service's ~1000 messages/s. With [`DEFAULT_BURST`], no one-second
/// window can see more than 992 messages.
pub const DEFAULT_MAX_RATE: u32 = 960;
/// Messages that may go out back to back after a quiet spell.
pub const DEFAULT_BURST: u32 = 32;
/// Messages per wake-up when held back, sent in one write: under the cap a wake-up costs more
/// CPU than the messages it sends, so fewer, larger batches are cheaper (BENCHMARKS.md). Below
/// [`DEFAULT_BURST`], so a late timer loses no tokens. Keystrokes do not wait for the batch: a
/// session with interactive bytes waiting wakes per token ([`crate::Session::set_hurried`]).
pub const DEFAULT_WAKE_BATCH: u32 = 24;
/// Factor applied to the rate on a sign of strain.
pub const DECREASE: f64 = 0.7;
/// Lowest rate the pacer falls to, messages per second.
pub const MIN_RATE: f64 = 20.0;
/// Minimum time between two rate changes.
pub const HOLD: Duration = Duration::from_millis(500);
/// Share of retransmissions among the last second's transmissions that counts as a storm.
pub const STORM_SHARE: f64 = 0.25;
/// Fewest retransmissions in a second that can make a storm (a lost message or two is not one).
pub const STORM_MIN: u32 = 16;
/// Smoothed RTT beyond this multiple of the lowest seen (plus [`RTT_SLACK`]) means queueing.
pub const RTT_GROWTH: u32 = 4;
/// Absolute slack on top of the RTT growth factor, so a fast path's jitter is not strain.
pub const RTT_SLACK: Duration = Duration::from_millis(200);

/// Float slack: a token that is there up to rounding is there.
const EPSILON: f64 = 1e-9;

/// Why the pacer slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strain {
    /// The gateway said `pause_publication`.
    Paused,
    /// Many retransmissions in the last second.
    RetransmissionStorm,
    /// The round trip grew well past its minimum.
    RttGrowth,
}

/// A token bucket whose refill rate adapts to the path. See the module docs.
#[derive(Debug, Clone)]
pub struct Pacer {
    max_rate: f64,
    rate: f64,
    burst: f64,
    tokens: f64,
    last_refill: Option<Instant>,
    last_decrease: Option<Instant>,
    last_increase: Option<Instant>,
    window_start: Option<Instant>,
    sent_in_window: u32,
    retransmitted_in_window: u32,
    min_rtt: Option<Duration>,
    decreases: u64,
}

impl Pacer {
    /// At most `max_rate` messages a second, `burst` at once; starts full at the ceiling.
    pub fn new(max_rate: u32, burst: u32) -> Pacer {
        let max_rate = f64::from(max_rate.max(1));
        let burst = f64::from(burst.max(1));
        Pacer {
            max_rate,
            rate: max_rate,
            burst,
            tokens: burst,
            last_refill: None,
            last_decrease: None,
            last_increase: None,
            window_start: None,
            sent_in_window: 0,
            retransmitted_in_window: 0,
            min_rtt: None,
            decreases: 0,
        }
    }

    /// The current rate, messages per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How many times the rate was cut.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last_refill {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last_refill = Some(self.last_refill.map_or(now, |l| l.max(now)));
    }

    /// Whether a message may go out at `now`.
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0 - EPSILON
    }

    /// Whole tokens at `now`: how many messages may go out at once.
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        (self.tokens + EPSILON).floor().max(0.0) as u32
    }

    /// Takes a token for a message sent at `now` (call after [`Self::ready`] said yes).
    pub fn on_sent(&mut self, now: Instant, retransmission: bool) {
        self.refill(now);
        self.tokens -= 1.0;
        self.roll_window(now);
        self.sent_in_window += 1;
        if retransmission {
            self.retransmitted_in_window += 1;
            let storm = self.retransmitted_in_window >= STORM_MIN
                && f64::from(self.retransmitted_in_window)
                    > STORM_SHARE * f64::from(self.sent_in_window);
            if storm {
                self.on_strain(now, Strain::RetransmissionStorm);
            }
        }
    }

    fn roll_window(&mut self, now: Instant) {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.window_start = Some(now);
                self.sent_in_window = 0;
                self.retransmitted_in_window = 0;
            }
        }
    }

    /// When the next token will be there (`now` if one is).
    pub fn next_ready(&self, now: Instant) -> Instant {
        self.next_ready_for(now, 1)
    }

    /// When `n` tokens will be there (capped at the burst): a caller that wakes only then
    /// sends that many messages per wake-up, which costs fewer wake-ups for the same rate.
    pub fn next_ready_for(&self, now: Instant, n: u32) -> Instant {
        let want = f64::from(n.max(1)).min(self.burst);
        let elapsed = self
            .last_refill
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if tokens >= want - EPSILON {
            return now;
        }
        // Rounded up to the next nanosecond, so that waking then finds the tokens there.
        let nanos = ((want - tokens) / self.rate * 1e9).ceil();
        now + Duration::from_nanos(nanos as u64)
    }

    /// An acknowledgement arrived at `now`; `srtt` is the smoothed round trip after it.
    pub fn on_ack(&mut self, now: Instant, srtt: Duration) {
        let min = *self.min_rtt.get_or_insert(srtt);
        if srtt < min {
            self.min_rtt = Some(srtt);
        }
        if srtt > min * RTT_GROWTH + RTT_SLACK {
            self.on_strain(now, Strain::RttGrowth);
            // The new level is the one to measure growth against from now on.
            self.min_rtt = Some(srtt);
            return;
        }
        let settled =
            |t: Option<Instant>| t.is_none_or(|t| now.saturating_duration_since(t) >= HOLD);
        if self.rate < self.max_rate && settled(self.last_decrease) && settled(self.last_increase) {
            self.refill(now);
            self.rate = (self.rate + self.max_rate / 10.0).min(self.max_rate);
            self.last_increase = Some(now);
        }
    }

    /// Slows down (at most once per [`HOLD`]). Returns whether the rate changed.
    pub fn on_strain(&mut self, now: Instant, _why: Strain) -> bool {
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < HOLD)
        {
            return false;
        }
        self.refill(now);
        self.rate = (self.rate * DECREASE).max(MIN_RATE.min(self.max_rate));
        self.last_decrease = Some(now);
        self.decreases += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends as fast as the pacer allows for `span`, polling every `step`; returns the count.
    fn drain(p: &mut Pacer, start: Instant, span: Duration, step: Duration) -> u32 {
        let mut n = 0;
        let mut t = start;
        while t < start + span {
            while p.ready(t) {
                p.on_sent(t, false);
                n += 1;
            }
            t += step;
        }
        n
    }

    #[test]
    fn a_burst_goes_out_at_once_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 32);
        let mut n = 0;
        while p.ready(t0) {
            p.on_sent(t0, false);
            n += 1;
        }
        assert_eq!(n, 32);
        // One token per millisecond after that.
        assert_eq!(p.next_ready(t0), t0 + ms(1));
        assert!(!p.ready(t0 + Duration::from_micros(900)));
        assert!(p.ready(t0 + ms(1)));
    }

    #[test]
    fn no_one_second_window_exceeds_rate_plus_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(DEFAULT_MAX_RATE, DEFAULT_BURST);
        // Sends timed by the pacer's own deadlines, as a driver would.
        let mut sends = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(5) {
            if p.ready(t) {
                p.on_sent(t, false);
                sends.push(t);
            } else {
                t = p.next_ready(t);
            }
        }
        for (i, &start) in sends.iter().enumerate() {
            let in_window = sends[i..]
                .iter()
                .take_while(|&&s| s < start + Duration::from_secs(1))
                .count();
            assert!(in_window <= 992, "{in_window} in the second from {i}");
        }
        // And the average is the ceiling: ≥ 95% of the service's 1000/s.
        assert!(sends.len() >= 5 * 950, "{} in 5 s", sends.len());
    }

    #[test]
    fn strain_cuts_the_rate_once_per_hold_and_calm_restores_it() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 10);
        assert!(p.on_strain(t0, Strain::Paused));
        assert_eq!(p.rate(), 700.0);
        // A second report within the hold changes nothing.
        assert!(!p.on_strain(t0 + ms(100), Strain::Paused));
        assert_eq!(p.rate(), 700.0);
        assert!(p.on_strain(t0 + ms(600), Strain::Paused));
        assert!((p.rate() - 490.0).abs() < 1e-9, "{}", p.rate());
        // Acks on a steady path: +100/s per hold period, up to the ceiling.
        let mut t = t0 + ms(600);
        for _ in 0..10 {
            t += HOLD;
            p.on_ack(t, ms(50));
        }
        assert_eq!(p.rate(), 1000.0);
        assert_eq!(p.decreases(), 2);
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 10);
        for i in 0..100 {
            p.on_strain(t0 + HOLD * i, Strain::RetransmissionStorm);
        }
        assert_eq!(p.rate(), MIN_RATE);
        assert!(drain(&mut p, t0 + HOLD * 100, Duration::from_secs(1), ms(1)) >= 20);
    }

    #[test]
    fn a_retransmission_storm_slows_down_but_a_few_losses_do_not() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 1000);
        // 1% loss: 10 retransmissions among 1000 sends in a second.
        for i in 0..1000u32 {
            p.on_sent(t0 + Duration::from_micros(u64::from(i) * 900), i % 100 == 0);
        }
        assert_eq!(p.decreases(), 0);
        // Then half of what goes out is retransmitted.
        let t1 = t0 + Duration::from_secs(2);
        for i in 0..100u32 {
            p.on_sent(t1 + Duration::from_micros(u64::from(i) * 900), i % 2 == 0);
        }
        assert_eq!(p.decreases(), 1);
        assert!(p.rate() < 1000.0);
    }

    #[test]
    fn a_growing_round_trip_slows_down() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 10);
        p.on_ack(t0, ms(40));
        p.on_ack(t0 + ms(10), ms(60));
        assert_eq!(p.decreases(), 0);
        // 40 ms × 4 + 200 ms = 360 ms.
        p.on_ack(t0 + ms(20), ms(400));
        assert_eq!(p.decreases(), 1);
        // Measured against the new level from now on: no cut for staying there.
        p.on_ack(t0 + Duration::from_secs(1), ms(420));
        assert_eq!(p.decreases(), 1);
    }

    #[test]
    fn waiting_for_a_batch_of_tokens_wakes_later_but_no_later_than_the_burst_allows() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 8);
        while p.ready(t0) {
            p.on_sent(t0, false);
        }
        assert_eq!(p.next_ready_for(t0, 1), t0 + ms(1));
        assert_eq!(p.next_ready_for(t0, 4), t0 + ms(4));
        // Never more than the bucket holds.
        assert_eq!(p.next_ready_for(t0, 100), t0 + ms(8));
    }

    #[test]
    fn tokens_do_not_pile_up_beyond_the_burst_while_idle() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 8);
        assert!(p.ready(t0));
        let n = drain(&mut p, t0 + Duration::from_secs(60), ms(1), ms(1));
        assert_eq!(n, 8);
    }
}

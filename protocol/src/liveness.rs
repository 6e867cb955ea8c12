//! When a data channel counts as dead, and how soon to try again: sans-IO, time passed in.
//!
//! [`Liveness`] notices a path that went silent (no frame at all, not even a pong) and a gateway
//! that keeps the socket alive but relays nothing (data waits and no acknowledgement comes).
//! [`reconnect_delay`] spaces the attempts to resume after that (§5.6).

use std::time::{Duration, Instant};

/// Websocket keep-alive ping interval (the plugin pings every 5 minutes; the agent every 54 s),
/// shortened to a third of the alive timeout when that is short, so a silently dead path is
/// noticed within the timeout plus one interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// The alive timeout unless the user says otherwise (`--alive-timeout`).
pub const DEFAULT_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnect attempts after the websocket drops: the first at once, then with exponential
/// backoff (100–200 ms doubling, capped at [`RECONNECT_MAX_DELAY`], like the official plugin's
/// retryer, §5.6): about half a minute in all.
pub const RECONNECT_ATTEMPTS: u32 = 8;
/// The longest wait between two reconnect attempts.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

/// Why a path counts as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    /// No frame of any kind for this long.
    Silent(Duration),
    /// Data waited this long without any acknowledgement arriving.
    NoAcks(Duration),
}

impl std::fmt::Display for Dead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dead::Silent(d) => write!(f, "no response from the service for {} s", d.as_secs()),
            Dead::NoAcks(d) => write!(
                f,
                "no acknowledgement from the target for {} s",
                d.as_secs()
            ),
        }
    }
}

/// Dead-peer detection for one websocket; see the module docs.
#[derive(Debug, Clone)]
pub struct Liveness {
    timeout: Duration,
    /// When the last frame of any kind arrived.
    last_rx: Instant,
    /// Acknowledgements received so far, and when that count last grew (or nothing waited).
    acks: u64,
    acks_since: Instant,
}

impl Liveness {
    /// A path that just opened at `now`, with `acks` acknowledgements received before it.
    pub fn new(timeout: Duration, now: Instant, acks: u64) -> Liveness {
        Liveness {
            timeout: timeout.max(Duration::from_millis(1)),
            last_rx: now,
            acks,
            acks_since: now,
        }
    }

    /// How long the path may stay silent.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often to ping, and to call [`Liveness::check`].
    pub fn ping_interval(&self) -> Duration {
        PING_INTERVAL
            .min(self.timeout / 3)
            .max(Duration::from_millis(1))
    }

    /// A frame arrived.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
    }

    /// Whether the path is dead at `now`, given the session's count of acknowledgements received
    /// and how many messages wait for one.
    pub fn check(&mut self, now: Instant, acks: u64, unacked: usize) -> Result<(), Dead> {
        let silent = now.saturating_duration_since(self.last_rx);
        if silent > self.timeout {
            return Err(Dead::Silent(self.timeout));
        }
        if acks != self.acks || unacked == 0 {
            self.acks = acks;
            self.acks_since = now;
            return Ok(());
        }
        let waited = now.saturating_duration_since(self.acks_since);
        if waited > self.timeout {
            return Err(Dead::NoAcks(waited));
        }
        Ok(())
    }
}

/// The wait before reconnect attempt `attempt` (from 1): none before the first, as in the
/// official client (§17.4), then 100–200 ms (`jitter` picks where) doubling up to
/// [`RECONNECT_MAX_DELAY`].
pub fn reconnect_delay(attempt: u32, jitter: u64) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let first = Duration::from_millis(100 + jitter % 100);
    first
        .saturating_mul(1 << (attempt - 2).min(16))
        .min(RECONNECT_MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_reconnect_goes_at_once_and_later_ones_back_off() {
        let delays: Vec<u64> = (1..=RECONNECT_ATTEMPTS)
            .map(|a| reconnect_delay(a, 37).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 137, 274, 548, 1096, 2192, 4384, 5000]);
        assert_eq!(reconnect_delay(2, 199), Duration::from_millis(199));
        let total: Duration = (1..=RECONNECT_ATTEMPTS)
            .map(|a| reconnect_delay(a, 99))
            .sum();
        assert!(total < Duration::from_secs(30), "{total:?}");
    }

    #[test]
    fn a_silent_path_is_dead_after_the_timeout_and_frames_keep_it_alive() {
        let t0 = Instant::now();
        let mut l = Liveness::new(30 * S, t0, 0);
        assert_eq!(l.ping_interval(), 10 * S);
        assert_eq!(l.check(t0 + 30 * S, 0, 0), Ok(()));
        l.on_frame(t0 + 20 * S);
        assert_eq!(l.check(t0 + 50 * S, 0, 0), Ok(()));
        assert_eq!(l.check(t0 + 51 * S, 0, 0), Err(Dead::Silent(30 * S)));
    }

    #[test]
    fn a_short_timeout_pings_at_a_third_of_it() {
        let l = Liveness::new(3 * S, Instant::now(), 0);
        assert_eq!(l.ping_interval(), S);
    }

    #[test]
    fn data_without_acks_is_dead_even_while_frames_arrive() {
        let t0 = Instant::now();
        let mut l = Liveness::new(10 * S, t0, 5);
        for s in 1..=10 {
            l.on_frame(t0 + s * S);
            assert_eq!(l.check(t0 + s * S, 5, 3), Ok(()), "at {s} s");
        }
        l.on_frame(t0 + 11 * S);
        assert_eq!(l.check(t0 + 11 * S, 5, 3), Err(Dead::NoAcks(11 * S)));
        // An ack, or nothing waiting, starts the count again.
        assert_eq!(l.check(t0 + 11 * S, 6, 3), Ok(()));
        l.on_frame(t0 + 25 * S);
        assert_eq!(l.check(t0 + 25 * S, 6, 0), Ok(()));
        l.on_frame(t0 + 30 * S);
        assert_eq!(l.check(t0 + 30 * S, 6, 1), Ok(()));
        assert_eq!(
            Dead::NoAcks(11 * S).to_string(),
            "no acknowledgement from the target for 11 s"
        );
    }
}

//! Per-frame fault injection for the relay: drop, duplicate, reorder, latency, tampering, and the
//! message-rate cap. Pure and seeded: given the same seed and frames it makes the same choices.

use crate::config::FaultConfig;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rssm_protocol::message::{AgentMessage, MessageType, PayloadType};
use std::time::{Duration, Instant};

/// Which way a frame travels through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Client → agent.
    ToAgent,
    /// Agent → client.
    ToClient,
}

/// How long a reordered frame may wait for a successor before it is released anyway.
pub const REORDER_HOLD: Duration = Duration::from_millis(50);

/// Counters of what the injector did (logged when a session ends).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames dropped on purpose.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Frames delivered after their successor.
    pub reordered: u64,
    /// Frames refused by the rate cap.
    pub throttled: u64,
    /// Payloads altered on purpose.
    pub tampered: u64,
}

/// The per-session injector.
pub struct FaultInjector {
    config: FaultConfig,
    rng: ChaCha8Rng,
    held: [Option<(Instant, Bytes)>; 2],
    /// What was done so far.
    pub stats: FaultStats,
}

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::ToAgent => 0,
        Direction::ToClient => 1,
    }
}

impl FaultInjector {
    /// An injector with its own seeded RNG.
    pub fn new(config: FaultConfig, seed: u64) -> FaultInjector {
        FaultInjector {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            held: [None, None],
            stats: FaultStats::default(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits → uniform in [0, 1).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// Decides what happens to one frame: returns the frames to deliver now, each with the time it
    /// should arrive (now + latency).
    pub fn process(&mut self, dir: Direction, frame: Bytes, now: Instant) -> Vec<(Instant, Bytes)> {
        let frame = self.maybe_tamper(dir, frame);
        let at = now + self.config.latency;
        let mut out = Vec::with_capacity(2);
        if self.chance(self.config.drop) {
            self.stats.dropped += 1;
        } else if self.held[slot(dir)].is_none() && self.chance(self.config.reorder) {
            self.stats.reordered += 1;
            self.held[slot(dir)] = Some((now, frame));
            return out;
        } else {
            let dup = self.chance(self.config.duplicate);
            if dup {
                self.stats.duplicated += 1;
                out.push((at, frame.clone()));
            }
            out.push((at, frame));
        }
        // A held frame goes out after the frame that overtook it.
        if let Some((_, held)) = self.held[slot(dir)].take() {
            out.push((at, held));
        }
        out
    }

    /// With [`FaultConfig::tamper_output`], alters the first agent Output message once.
    fn maybe_tamper(&mut self, dir: Direction, frame: Bytes) -> Bytes {
        if !self.config.tamper_output || dir != Direction::ToClient || self.stats.tampered > 0 {
            return frame;
        }
        match tamper_output(&frame) {
            Some(altered) => {
                self.stats.tampered += 1;
                altered
            }
            None => frame,
        }
    }

    /// Releases held frames that waited longer than [`REORDER_HOLD`].
    pub fn release_expired(&mut self, now: Instant) -> Vec<(Direction, Instant, Bytes)> {
        let mut out = Vec::new();
        for dir in [Direction::ToAgent, Direction::ToClient] {
            if let Some((since, _)) = &self.held[slot(dir)] {
                if now.duration_since(*since) >= REORDER_HOLD {
                    if let Some((_, f)) = self.held[slot(dir)].take() {
                        out.push((dir, now + self.config.latency, f));
                    }
                }
            }
        }
        out
    }

    /// The next time [`Self::release_expired`] has something to do.
    pub fn next_release(&self) -> Option<Instant> {
        self.held
            .iter()
            .flatten()
            .map(|(since, _)| *since + REORDER_HOLD)
            .min()
    }
}

/// Flips one payload byte of an `output_stream_data` Output message and re-encodes it with a
/// fresh digest, as a man in the middle without the session key could; `None` for other frames.
/// The byte is the first ciphertext byte of a KMS-encrypted payload (after the 12-byte nonce,
/// §8.3), so only the GCM tag can notice.
pub fn tamper_output(frame: &Bytes) -> Option<Bytes> {
    let mut msg = AgentMessage::decode(frame.clone()).ok()?;
    if msg.message_type != MessageType::OutputStreamData
        || msg.payload_type != PayloadType::Output
        || msg.payload.is_empty()
    {
        return None;
    }
    let mut payload = msg.payload.to_vec();
    let i = 12.min(payload.len() - 1);
    payload[i] ^= 0x01;
    msg.payload = Bytes::from(payload);
    Some(msg.encode())
}

/// What the rate limiter says about one client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the cap.
    Pass,
    /// Over the cap: drop it; `first_in_window` = tell the client to pause now.
    Throttle {
        /// First refusal in this one-second window.
        first_in_window: bool,
    },
}

/// A one-second window message counter with abuse detection.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    abuse_seconds: u32,
    window_start: Option<Instant>,
    count: u32,
    throttled_this_window: bool,
    consecutive_throttled: u32,
}

impl RateLimiter {
    /// `limit` messages per second; closing after `abuse_seconds` throttled seconds in a row.
    pub fn new(limit: u32, abuse_seconds: u32) -> RateLimiter {
        RateLimiter {
            limit,
            abuse_seconds,
            window_start: None,
            count: 0,
            throttled_this_window: false,
            consecutive_throttled: 0,
        }
    }

    /// Ends the window if a second has passed; returns true if the ended window was throttled
    /// (the client should be told to resume).
    pub fn roll(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now.duration_since(start) >= Duration::from_secs(1) => {
                let was = self.throttled_this_window;
                if was {
                    self.consecutive_throttled += 1;
                } else {
                    self.consecutive_throttled = 0;
                }
                self.window_start = Some(now);
                self.count = 0;
                self.throttled_this_window = false;
                was
            }
            Some(_) => false,
            None => {
                self.window_start = Some(now);
                false
            }
        }
    }

    /// When the current window ends.
    pub fn window_end(&self) -> Option<Instant> {
        self.window_start.map(|s| s + Duration::from_secs(1))
    }

    /// Counts one frame.
    pub fn check(&mut self, now: Instant) -> RateVerdict {
        self.roll(now);
        self.count += 1;
        if self.count <= self.limit {
            RateVerdict::Pass
        } else {
            let first = !self.throttled_this_window;
            self.throttled_this_window = true;
            RateVerdict::Throttle {
                first_in_window: first,
            }
        }
    }

    /// True once the sender has been throttled for `abuse_seconds` consecutive windows.
    pub fn is_abusive(&self) -> bool {
        self.consecutive_throttled >= self.abuse_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u8) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i])).collect()
    }

    #[test]
    fn same_seed_same_choices() {
        let cfg = FaultConfig {
            drop: 0.3,
            duplicate: 0.3,
            reorder: 0.3,
            ..FaultConfig::default()
        };
        let now = Instant::now();
        let run = || {
            let mut f = FaultInjector::new(cfg.clone(), 42);
            frames(100)
                .into_iter()
                .flat_map(|fr| f.process(Direction::ToAgent, fr, now))
                .map(|(_, b)| b[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let out = run();
        assert_ne!(
            out,
            (0..100).collect::<Vec<u8>>(),
            "faults changed the stream"
        );
    }

    #[test]
    fn reorder_swaps_neighbours_and_releases_on_timeout() {
        let cfg = FaultConfig {
            reorder: 1.0,
            ..FaultConfig::default()
        };
        let now = Instant::now();
        let mut f = FaultInjector::new(cfg, 1);
        let mut out = Vec::new();
        for fr in frames(2) {
            out.extend(f.process(Direction::ToClient, fr, now));
        }
        let order: Vec<u8> = out.iter().map(|(_, b)| b[0]).collect();
        assert_eq!(order, vec![1, 0]);
        assert!(f
            .process(Direction::ToClient, Bytes::from_static(b"x"), now)
            .is_empty());
        assert!(f.release_expired(now).is_empty());
        let later = now + REORDER_HOLD;
        assert_eq!(f.next_release(), Some(later));
        assert_eq!(f.release_expired(later).len(), 1);
    }

    #[test]
    fn tampering_alters_one_byte_of_the_first_output_only() {
        let output = |seq: i64, payload: &'static [u8]| {
            AgentMessage::new(
                MessageType::OutputStreamData,
                seq,
                0,
                1,
                uuid::Uuid::nil(),
                PayloadType::Output,
                Bytes::from_static(payload),
            )
            .encode()
        };
        let cfg = FaultConfig {
            tamper_output: true,
            ..FaultConfig::default()
        };
        let now = Instant::now();
        let mut f = FaultInjector::new(cfg, 1);
        let first = output(0, b"0123456789abcdefghij");
        // Client → agent traffic is left alone.
        let out = f.process(Direction::ToAgent, first.clone(), now);
        assert_eq!(out[0].1, first);
        let out = f.process(Direction::ToClient, first.clone(), now);
        let altered = AgentMessage::decode(out[0].1.clone()).unwrap();
        assert!(
            altered.validate().is_ok(),
            "the digest matches the new payload"
        );
        assert_eq!(&altered.payload[..], b"0123456789abbdefghij");
        let second = output(1, b"second");
        assert_eq!(
            f.process(Direction::ToClient, second.clone(), now)[0].1,
            second
        );
        assert_eq!(f.stats.tampered, 1);
    }

    #[test]
    fn rate_limiter_throttles_and_detects_abuse() {
        let mut r = RateLimiter::new(3, 2);
        let t0 = Instant::now();
        let verdicts: Vec<_> = (0..5).map(|_| r.check(t0)).collect();
        assert_eq!(verdicts[2], RateVerdict::Pass);
        assert_eq!(
            verdicts[3],
            RateVerdict::Throttle {
                first_in_window: true
            }
        );
        assert_eq!(
            verdicts[4],
            RateVerdict::Throttle {
                first_in_window: false
            }
        );
        assert!(r.roll(t0 + Duration::from_secs(1)));
        assert!(!r.is_abusive());
        for _ in 0..5 {
            r.check(t0 + Duration::from_secs(1));
        }
        r.roll(t0 + Duration::from_secs(2));
        assert!(r.is_abusive());
    }
}

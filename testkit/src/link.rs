//! A deterministic, seeded lossy link on a virtual clock: what one direction of a network does
//! to frames (loss, duplication, reordering, delay, jitter), for sans-IO protocol tests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Impairments of one direction of a link.
#[derive(Debug, Clone, Copy)]
pub struct Impairments {
    /// Probability that a frame is lost.
    pub drop: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame gets extra delay, so later frames overtake it.
    pub reorder: f64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra random delay up to this much (jitter), also the reorder extra.
    pub jitter: Duration,
}

impl Impairments {
    pub fn clean(delay_ms: u64) -> Self {
        Impairments {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
        }
    }
}

/// One direction of a link: frames in, frames out at their delivery time.
pub struct Link {
    rng: ChaCha8Rng,
    imp: Impairments,
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    counter: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Frames still to be lost whatever the impairments: an outage at the start.
    pub lose_first: u64,
}

impl Link {
    pub fn new(seed: u64, imp: Impairments) -> Self {
        Link {
            rng: ChaCha8Rng::seed_from_u64(seed),
            imp,
            queue: BinaryHeap::new(),
            counter: 0,
            dropped: 0,
            duplicated: 0,
            lose_first: 0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn jitter(&mut self) -> Duration {
        let j = self.imp.jitter.as_micros() as u64;
        if j == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.next_u64() % j)
        }
    }

    pub fn send(&mut self, frame: Bytes, now: Instant) {
        if self.lose_first > 0 {
            self.lose_first -= 1;
            self.dropped += 1;
            return;
        }
        if self.chance(self.imp.drop) {
            self.dropped += 1;
            return;
        }
        let copies = if self.chance(self.imp.duplicate) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + self.imp.delay + self.jitter();
            if self.chance(self.imp.reorder) {
                at += self.imp.jitter.max(Duration::from_millis(5)) * 2;
            }
            self.counter += 1;
            self.queue.push(Reverse((at, self.counter, frame.to_vec())));
        }
    }

    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Whether a frame is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_delivery().is_some_and(|t| t <= now)
    }

    pub fn recv(&mut self, now: Instant) -> Option<Bytes> {
        match self.queue.peek() {
            Some(Reverse((t, _, _))) if *t <= now => {
                let Reverse((_, _, f)) = self.queue.pop().unwrap();
                Some(Bytes::from(f))
            }
            _ => None,
        }
    }
}

/// The earliest of some moments (deliveries, timers): where a virtual clock jumps next.
pub fn earliest(moments: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    moments.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_link_delivers_in_order_after_its_delay() {
        let t0 = Instant::now();
        let mut link = Link::new(1, Impairments::clean(10));
        link.send(Bytes::from_static(b"a"), t0);
        link.send(Bytes::from_static(b"b"), t0);
        assert!(!link.due(t0));
        let at = link.next_delivery().unwrap();
        assert_eq!(at, t0 + Duration::from_millis(10));
        assert_eq!(link.recv(at).as_deref(), Some(&b"a"[..]));
        assert_eq!(link.recv(at).as_deref(), Some(&b"b"[..]));
        assert_eq!(link.recv(at), None);
    }

    #[test]
    fn the_same_seed_loses_the_same_frames() {
        let imp = Impairments {
            drop: 0.3,
            ..Impairments::clean(1)
        };
        let lost = |seed| {
            let mut link = Link::new(seed, imp);
            for _ in 0..200 {
                link.send(Bytes::from_static(b"x"), Instant::now());
            }
            link.dropped
        };
        assert_eq!(lost(5), lost(5));
        assert!(lost(5) > 0);
    }
}

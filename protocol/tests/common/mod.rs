//! Test harness: a deterministic, seeded lossy link and a virtual clock joining two sessions.

#![allow(dead_code)]

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

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Reads a recorded trace (one JSON object per line).
pub fn read_trace(name: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

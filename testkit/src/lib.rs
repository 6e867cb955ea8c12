//! Helpers shared by rssm's test suites (the root package's end-to-end tests, rssm-sim's and
//! rssm-protocol's tests): one copy of each, used as a dev-dependency only.
//!
//! - [`net`]: loopback TCP servers (echo, source), free ports, waiting for a listener.
//! - [`pattern`]: deterministic payload bytes.
//! - [`proc`]: a process's CPU time and peak RSS from /proc.
//! - [`lines`]: a child's output line by line, waiting for a line (bounded).
//! - [`link`]: a seeded lossy link (loss, duplication, reordering, delay) on a virtual clock.
//! - [`wait`]: bounded waits for a condition.
//! - `logs` (feature `logs`): `tracing` output captured in memory, to wait for a log line.
//!
//! Everything stays on loopback and every wait is bounded.

pub mod lines;
pub mod link;
#[cfg(feature = "logs")]
pub mod logs;
pub mod net;
pub mod pattern;
pub mod proc;
pub mod wait;

pub use pattern::pattern;

//! When to start a forward's next session. A session can be gone for good while the forward
//! should go on: the service closed it (TerminateSession, idle timeout, maximum duration), the
//! driver's resume attempts gave up (§5.6), or the agent restarted and StartSession answers
//! `TargetNotConnected` until it is back. The forward then starts a new session: at once after
//! a session that worked, then with growing pauses (1, 2, 4 … 30 s) while attempts fail, and
//! gives up when nothing has worked for [`PATIENCE`].

use std::time::Duration;

use tokio::time::Instant;

/// Pause after the first failed attempt; it doubles with every further failure …
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// … up to this.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// How long the forward keeps trying without a working session before it gives up: long
/// enough for an agent restart or an instance reboot.
pub const PATIENCE: Duration = Duration::from_secs(5 * 60);
/// A session that forwarded for less than this counts as a failed attempt, so a service that
/// closes every new session at once is not asked for new ones in a tight loop.
const SHORT_LIVED: Duration = Duration::from_secs(1);

/// The pacing of new sessions for one forward.
#[derive(Debug)]
pub struct Backoff {
    /// Since when no session has worked.
    outage_since: Instant,
    /// Failed attempts since the last session that worked.
    failures: u32,
}

impl Backoff {
    /// A forward whose session just ended after forwarding for `lived`.
    pub fn after_session(lived: Duration, now: Instant) -> Backoff {
        Backoff {
            outage_since: now,
            failures: u32::from(lived < SHORT_LIVED),
        }
    }

    /// A new session worked for `lived` and then ended too.
    pub fn session_ended(&mut self, lived: Duration, now: Instant) {
        if lived < SHORT_LIVED {
            self.failures += 1;
        } else {
            *self = Backoff::after_session(lived, now);
        }
    }

    /// An attempt to start a session failed.
    pub fn attempt_failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// How long to wait before the next attempt; `None` once [`PATIENCE`] is exhausted.
    pub fn next_delay(&self, now: Instant) -> Option<Duration> {
        let delay = match self.failures {
            0 => Duration::ZERO,
            n => FIRST_DELAY
                .saturating_mul(1 << (n - 1).min(16))
                .min(MAX_DELAY),
        };
        (now + delay <= self.outage_since + PATIENCE).then_some(delay)
    }

    /// How long no session has worked.
    pub fn outage(&self, now: Instant) -> Duration {
        now - self.outage_since
    }
}

/// Whether starting a session failed for a reason that retrying cannot fix: the user's
/// credentials, permissions, target or document are wrong. Everything else (the agent not
/// connected, throttling, an unreachable endpoint, a handshake that timed out) may pass.
pub fn is_permanent(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    [
        "AccessDeniedException",
        "InvalidDocument",
        "InvalidTarget",
        "InvalidParameters",
        "ValidationException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "is not an instance id",
    ]
    .iter()
    .any(|code| text.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn restarts_at_once_then_backs_off_to_thirty_seconds_and_gives_up_after_patience() {
        let t0 = Instant::now();
        let mut b = Backoff::after_session(secs(3600), t0);
        assert_eq!(b.next_delay(t0), Some(Duration::ZERO));
        let mut delays = Vec::new();
        for _ in 0..7 {
            b.attempt_failed();
            delays.push(b.next_delay(t0).unwrap().as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.next_delay(t0 + PATIENCE - secs(30)), Some(secs(30)));
        assert_eq!(b.next_delay(t0 + PATIENCE - secs(29)), None);
        assert_eq!(b.outage(t0 + secs(7)), secs(7));
    }

    #[test]
    fn a_session_that_worked_resets_the_pacing_but_a_short_lived_one_does_not() {
        let t0 = Instant::now();
        let mut b = Backoff::after_session(secs(10), t0);
        b.attempt_failed();
        b.attempt_failed();
        b.session_ended(secs(5), t0 + secs(100));
        assert_eq!(b.next_delay(t0 + secs(100)), Some(Duration::ZERO));
        assert_eq!(b.outage(t0 + secs(100)), Duration::ZERO);
        b.session_ended(Duration::from_millis(200), t0 + secs(101));
        assert_eq!(b.next_delay(t0 + secs(101)), Some(secs(1)));
        let quick = Backoff::after_session(Duration::from_millis(10), t0);
        assert_eq!(quick.next_delay(t0), Some(secs(1)));
    }

    #[test]
    fn only_configuration_and_credential_errors_are_permanent() {
        let e = |s: &str| anyhow::anyhow!("StartSession i-1 failed: {s}");
        assert!(!is_permanent(&e(
            "TargetNotConnected: i-1 is not connected."
        )));
        assert!(!is_permanent(&e("ThrottlingException: Rate exceeded")));
        assert!(!is_permanent(&anyhow::anyhow!(
            "StartSession failed: cannot reach the SSM endpoint: connection refused"
        )));
        assert!(is_permanent(&e("AccessDeniedException: not authorized")));
        assert!(is_permanent(&e("InvalidDocument: no such document")));
        assert!(is_permanent(&e("ExpiredTokenException: expired")));
    }
}

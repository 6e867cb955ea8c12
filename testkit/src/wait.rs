//! Bounded waits: tests wait for a sign that something happened, never for a stretch of time.

use std::thread;
use std::time::{Duration, Instant};

/// How often [`until`] looks again: short next to any deadline, long enough to leave the CPU
/// to the processes under test.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits up to `limit` for `ready` to return `Some`, looking every [`POLL`]; panics naming
/// `what` after that.
pub fn until<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what} within {limit:?}");
        thread::sleep(POLL);
    }
}

/// [`until`] for a plain condition.
pub fn until_true(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    until(what, limit, || ready().then_some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_ready() {
        let mut n = 0;
        assert_eq!(
            until("n = 3", Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            3
        );
    }

    #[test]
    #[should_panic(expected = "no never within")]
    fn panics_after_the_limit() {
        until_true("never", Duration::from_millis(50), || false);
    }
}

//! Local connections that arrive while a forward has no session (its session ended and a new one
//! is starting): accepted and held rather than refused, so a client that connects during the
//! gap just waits a little. Bounded in number (the rest wait in the kernel's accept queue) and
//! in time (a connection held too long is closed).

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::source::Source;

/// Most connections held at once; later ones wait, unaccepted, in the listen backlog.
pub const HOLD_LIMIT: usize = 64;
/// A connection held this long without a session is closed: its client has probably given up,
/// and one that has not gets an answer instead of silence.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connections waiting for the next session, oldest first.
#[derive(Debug, Default)]
pub struct Held {
    conns: VecDeque<(Instant, TcpStream)>,
}

impl Held {
    /// How many are waiting.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether another connection may be accepted.
    pub fn has_room(&self) -> bool {
        self.conns.len() < HOLD_LIMIT
    }

    /// Holds `stream`, accepted at `now`.
    pub fn push(&mut self, stream: TcpStream, now: Instant) {
        self.conns.push_back((now, stream));
    }

    /// When the oldest connection runs out of time.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.conns.front().map(|(since, _)| *since + HOLD_TIMEOUT)
    }

    /// Closes the connections held for [`HOLD_TIMEOUT`] or longer; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.conns.len();
        while self
            .conns
            .front()
            .is_some_and(|(since, _)| now >= *since + HOLD_TIMEOUT)
        {
            self.conns.pop_front();
        }
        before - self.conns.len()
    }

    /// Hands every waiting connection over, oldest first.
    pub fn take(&mut self) -> Vec<TcpStream> {
        self.conns.drain(..).map(|(_, s)| s).collect()
    }

    /// Runs `work` to completion while accepting connections from `source` into the queue and
    /// closing those that waited too long.
    pub async fn while_holding<T>(
        &mut self,
        source: &mut Source,
        work: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let mut accept_after: Option<Instant> = None;
        loop {
            let accepting = self.has_room() && accept_after.is_none_or(|t| Instant::now() >= t);
            let wake = [self.next_expiry(), accept_after]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                out = &mut work => return out,
                accepted = source.accept(), if accepting => match accepted {
                    Ok(stream) => {
                        tracing::debug!("connection held until a session is ready");
                        accept_after = None;
                        self.push(stream, Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        accept_after = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                },
                _ = sleep_until_opt(wake) => {
                    let now = Instant::now();
                    if accept_after.is_some_and(|t| now >= t) {
                        accept_after = None;
                    }
                    let closed = self.expire(now);
                    if closed > 0 {
                        tracing::info!(closed, "closed connections that waited too long for a session");
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_connections_while_working_and_closes_those_that_wait_too_long() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = Source::Listener(listener);
        let mut held = Held::default();
        let mut early = TcpStream::connect(addr).await.unwrap();
        let work = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            7
        };
        assert_eq!(held.while_holding(&mut listener, work).await, 7);
        assert_eq!(held.len(), 1, "accepted while the work ran");

        // Past the timeout the waiting connection is closed: its client reads EOF.
        let late = TcpStream::connect(addr).await.unwrap();
        let work = tokio::time::sleep(HOLD_TIMEOUT - Duration::from_millis(500));
        held.while_holding(&mut listener, work).await;
        assert_eq!(held.len(), 1, "the late one is still within its time");
        let mut buf = [0u8; 1];
        assert_eq!(early.read(&mut buf).await.unwrap(), 0);
        assert_eq!(held.take().len(), 1);
        assert!(held.has_room());
        assert_eq!(held.next_expiry(), None);
        drop(late);
    }
}

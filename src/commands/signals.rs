//! The signals a session command handles, in one place: Ctrl-C (SIGINT), SIGTERM and SIGHUP for
//! every command, and terminal resizes (SIGWINCH) for a shell. Registered once for the whole
//! session, so a signal that arrives while a loop turn is busy is not lost.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal as Listener, SignalKind};

/// A signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C where the terminal is not raw, or `kill -INT`).
    Interrupt,
    /// SIGTERM: ended from outside.
    Terminate,
    /// SIGHUP: the terminal went away.
    Hangup,
    /// SIGWINCH: the terminal was resized (only with [`Signals::with_resize`]).
    Resize,
}

impl Signal {
    /// The signal's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Resize => "SIGWINCH",
        }
    }

    /// The conventional exit status of a process it ended: 128 + its number.
    pub fn exit_status(self) -> u8 {
        128 + match self {
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
            Signal::Hangup => 1,
            Signal::Resize => 28,
        }
    }
}

/// Listeners for the signals of one session.
pub struct Signals {
    interrupt: Listener,
    terminate: Listener,
    hangup: Listener,
    resize: Option<Listener>,
}

impl Signals {
    /// SIGINT, SIGTERM and SIGHUP.
    pub fn new() -> Result<Signals> {
        let listen = |kind| signal(kind).context("cannot install signal handlers");
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
            resize: None,
        })
    }

    /// The same and SIGWINCH.
    pub fn with_resize() -> Result<Signals> {
        let mut signals = Signals::new()?;
        signals.resize =
            Some(signal(SignalKind::window_change()).context("cannot install signal handlers")?);
        Ok(signals)
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        let resize = async {
            match &mut self.resize {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.hangup.recv() => Signal::Hangup,
            _ = resize => Signal::Resize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_128_plus_the_number() {
        assert_eq!(Signal::Interrupt.exit_status(), 130);
        assert_eq!(Signal::Terminate.exit_status(), 143);
        assert_eq!(Signal::Hangup.exit_status(), 129);
    }

    #[tokio::test]
    async fn a_signal_sent_to_ourselves_arrives_by_name() {
        let mut signals = Signals::with_resize().unwrap();
        // SIGWINCH: harmless for the test process, whatever else listens.
        // SAFETY: kill(2) with our own pid and a valid signal number has no memory effects.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGWINCH) }, 0);
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), signals.recv())
            .await
            .expect("the signal arrives");
        assert_eq!(got, Signal::Resize);
    }
}

//! A process on a real PTY (expectrl), with everything it printed kept for failure messages.
//!
//! expectrl's own `expect` spins on non-blocking reads; on a 2-core machine running several of
//! these at once that would starve rssm and the simulator, so [`Term::expect`] polls with
//! `check` and a short sleep instead.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::{Regex, Session, WaitStatus};

/// Longest wait for any one thing to appear (the agent alone waits 1 s before its first read).
pub const STEP: Duration = Duration::from_secs(30);

pub struct Term {
    session: Session,
    seen: Vec<u8>,
}

impl Term {
    pub fn spawn(cmd: Command) -> Term {
        Term {
            session: Session::spawn(cmd).expect("spawn on a PTY"),
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, text: impl AsRef<[u8]>) {
        self.session.send(text).expect("write to the PTY");
    }

    pub fn pid(&self) -> i32 {
        self.session.get_process().pid().as_raw()
    }

    /// Resizes the PTY (its child gets SIGWINCH).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.session
            .get_process_mut()
            .set_window_size(cols, rows)
            .expect("resize the PTY");
    }

    /// Waits up to [`STEP`] for `re` in the output; returns everything up to and including it.
    pub fn expect(&mut self, re: &str) -> String {
        let start = Instant::now();
        loop {
            match self.session.check(Regex(re)) {
                Ok(c) if !c.is_empty() => {
                    self.seen.extend_from_slice(c.as_bytes());
                    return String::from_utf8_lossy(c.as_bytes()).into_owned();
                }
                // A PTY master can read as end-of-file for a moment (expectrl: "the read may
                // succeed later"); the deadline decides.
                Ok(_) | Err(expectrl::Error::Eof) => {}
                Err(e) => panic!("waiting for {re:?}: {e}; output so far: {:?}", self.text()),
            }
            if start.elapsed() > STEP {
                self.drain();
                panic!("no {re:?} within {STEP:?}; output: {:?}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads whatever is available without waiting.
    pub fn drain(&mut self) {
        while let Ok(c) = self.session.check(Regex("(?s).+")) {
            if c.is_empty() {
                break;
            }
            self.seen.extend_from_slice(c.as_bytes());
        }
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits (reading output meanwhile) for the process to exit; returns its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            self.drain();
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.drain();
                    return code;
                }
                Ok(WaitStatus::StillAlive) => {}
                other => panic!("unexpected status {other:?}; output: {:?}", self.text()),
            }
            if start.elapsed() > limit {
                panic!("still running after {limit:?}; output: {:?}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The local flags of the PTY's terminal settings (the master reports the slave's).
    pub fn lflags(&self) -> libc::tcflag_t {
        let master = self
            .session
            .get_process()
            .get_raw_handle()
            .expect("PTY master");
        // SAFETY: tcgetattr writes a termios into the zeroed struct; the fd is open for the call.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(master.as_raw_fd(), &mut t) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        t.c_lflag
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        // The PTY's child leads its own session and process group: whatever it started (the AWS
        // CLI's plugin, a wrapped rssm) goes down with it, so a failed test leaves nothing behind.
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
    }
}

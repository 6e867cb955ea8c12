//! A child process's output read line by line on a thread of its own, for tests that wait for
//! what a process says (bounded waits, never a stretch of time).

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// The lines of one reader (a child's stdout or stderr), with every line seen so far.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

/// Why a wait for a line ended without one.
#[derive(Debug, PartialEq, Eq)]
pub enum NoLine {
    /// The deadline passed.
    Timeout,
    /// The reader reached its end.
    Ended,
}

impl Lines {
    pub fn read(reader: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first line matching `pred`, looking at the lines already seen first, then at new
    /// ones for up to `within`.
    pub fn find(
        &mut self,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, NoLine> {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let line = self.next_before(deadline)?;
            if pred(&line) {
                return Ok(line);
            }
        }
    }

    /// [`Lines::find`], panicking (naming `what`, with the lines seen) if no line comes.
    pub fn wait_line(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.find(within, pred).unwrap_or_else(|e| {
            panic!(
                "no line {what} within {within:?} ({e:?}); saw {:?}",
                self.seen
            )
        })
    }

    /// Waits up to `within` until `n` lines match `pred` (counting the lines already seen).
    pub fn wait_count(
        &mut self,
        what: &str,
        n: usize,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while self.seen.iter().filter(|l| pred(l)).count() < n {
            if let Err(e) = self.next_before(deadline) {
                panic!(
                    "not {n} lines {what} within {within:?} ({e:?}); saw {:?}",
                    self.seen
                );
            }
        }
    }

    /// Reads up to the end (the process closed its side), for up to `within`.
    pub fn read_to_end(&mut self, within: Duration) -> Result<(), NoLine> {
        let deadline = Instant::now() + within;
        loop {
            match self.next_before(deadline) {
                Ok(_) => {}
                Err(NoLine::Ended) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Collects the lines that arrive within `d`: for checking that nothing more comes (a bound
    /// on an absence), never to wait for a line (that is [`Lines::wait_line`]).
    pub fn collect_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while self.next_before(deadline).is_ok() {}
    }

    fn next_before(&mut self, deadline: Instant) -> Result<String, NoLine> {
        match self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(NoLine::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(NoLine::Ended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    #[test]
    fn finds_counts_and_reaches_the_end() {
        let mut lines = Lines::read(&b"one\ntwo x\nthree x\n"[..]);
        assert_eq!(
            lines.wait_line("with x", LIMIT, |l| l.contains('x')),
            "two x"
        );
        lines.wait_count("with x", 2, LIMIT, |l| l.contains('x'));
        assert_eq!(lines.read_to_end(LIMIT), Ok(()));
        assert_eq!(lines.seen, ["one", "two x", "three x"]);
        assert_eq!(lines.find(LIMIT, |l| l == "four"), Err(NoLine::Ended));
    }
}

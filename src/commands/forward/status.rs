//! What the user sees on stderr: one-line messages, and a live status line (connections, bytes,
//! rate) rewritten in place when stderr is a terminal and `--quiet` is off.
//!
//! Every write is a single `write_all` on locked stderr, and a message first clears the status
//! line, so the two never garble each other; the next tick redraws the status below the message.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Redraw period: at most four times a second.
const TICK: Duration = Duration::from_millis(250);
/// The rate is averaged over this window.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Clear the current terminal line and return to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// Traffic counters shared by every forward of the command (relaxed atomics: only displayed).
#[derive(Debug, Default)]
pub struct Counters {
    /// Local connections currently open.
    pub open: AtomicU64,
    /// Local connections accepted so far.
    pub total: AtomicU64,
    /// Bytes read from local connections (towards the target).
    pub up: AtomicU64,
    /// Bytes written to local connections (from the target).
    pub down: AtomicU64,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A connection was accepted.
    pub fn opened(&self) {
        Counters::add(&self.open, 1);
        Counters::add(&self.total, 1);
    }

    /// A connection was closed.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            open: self.open.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    open: u64,
    total: u64,
    up: u64,
    down: u64,
}

/// Writes the command's messages to stderr.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    quiet: bool,
    status_line: bool,
}

impl Console {
    /// `quiet` keeps informational messages and the status line off; the status line also needs
    /// stderr to be a terminal.
    pub fn new(quiet: bool) -> Console {
        Console {
            quiet,
            status_line: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// A console that never shows the status line (the drop-in plugin's output stays as the
    /// official plugin's).
    pub fn without_status_line(quiet: bool) -> Console {
        Console {
            quiet,
            status_line: false,
        }
    }

    /// An informational line (not shown with `--quiet`).
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            self.line(msg);
        }
    }

    /// A line shown even with `--quiet`: errors, and what the user cannot do without.
    pub fn line(&self, msg: &str) {
        let clear = if self.status_line { CLEAR_LINE } else { "" };
        write_stderr(&format!("{clear}{msg}\n"));
    }

    /// Starts redrawing the status line from `counters` until the returned guard is dropped;
    /// `None` when there is no status line.
    pub fn start_status_line(&self, counters: Arc<Counters>) -> Option<StatusLine> {
        self.status_line
            .then(|| StatusLine(tokio::spawn(redraw(counters))))
    }
}

/// The running status line; dropping it stops the redraws and clears the line.
pub struct StatusLine(JoinHandle<()>);

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.0.abort();
        write_stderr(CLEAR_LINE);
    }
}

fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

async fn redraw(counters: Arc<Counters>) {
    let mut samples: VecDeque<(Instant, Snapshot)> = VecDeque::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let current = counters.snapshot();
        samples.push_back((now, current));
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        let rate = samples.front().map_or((0.0, 0.0), |(t, old)| {
            let secs = now.duration_since(*t).as_secs_f64();
            if secs <= 0.0 {
                (0.0, 0.0)
            } else {
                let per_sec = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
                (per_sec(current.up, old.up), per_sec(current.down, old.down))
            }
        });
        let mut text = status_text(current, rate);
        let width = crossterm::terminal::size().map_or(80, |(cols, _)| cols as usize);
        if let Some((cut, _)) = text.char_indices().nth(width.saturating_sub(1)) {
            text.truncate(cut);
        }
        write_stderr(&format!("{CLEAR_LINE}{text}"));
    }
}

/// `2 open / 57 total | up 12.3 MiB 1.2 MiB/s | down 45.6 MiB 3.4 MiB/s`
fn status_text(s: Snapshot, (up_rate, down_rate): (f64, f64)) -> String {
    format!(
        "{} open / {} total | up {} {}/s | down {} {}/s",
        s.open,
        s.total,
        human(s.up as f64),
        human(up_rate),
        human(s.down as f64),
        human(down_rate),
    )
}

/// Bytes with a binary unit, e.g. `512 B`, `1.5 KiB`, `12.3 MiB`.
fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[0])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_shows_connections_totals_and_rates() {
        let s = Snapshot {
            open: 2,
            total: 57,
            up: 12 * 1024 * 1024 + 300 * 1024,
            down: 700,
        };
        assert_eq!(
            status_text(s, (1.5 * 1024.0 * 1024.0, 0.0)),
            "2 open / 57 total | up 12.3 MiB 1.5 MiB/s | down 700 B 0 B/s"
        );
        assert_eq!(human(5.0 * 1024.0 * 1024.0 * 1024.0), "5.0 GiB");
    }
}

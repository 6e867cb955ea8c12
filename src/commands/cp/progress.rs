//! The progress bar of a copy: bytes, rate and ETA on a terminal; nothing in a pipe or with
//! `-q`, where notices are plain `rssm: …` lines (none with `-q`).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// The bar: name, bytes of total, rate, ETA.
const WITH_TOTAL: &str =
    "{msg:20!} {bytes:>10} / {total_bytes:<10} {wide_bar} {binary_bytes_per_sec:>12} ETA {eta}";

/// One file's (or tree's) progress. Cheap to clone: striped parts share it.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    flow: Arc<Mutex<Flow>>,
}

/// When data moved: from the first byte to the last, sessions' start-up and the final checks
/// left out (the rate `-v` reports, and the benchmarks read).
#[derive(Debug, Default, Clone, Copy)]
pub struct Flow {
    /// Bytes through.
    pub bytes: u64,
    /// The first and the latest time bytes went through.
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Flow {
    /// Seconds from the first byte to the last.
    pub fn seconds(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

impl Progress {
    /// A bar for `total` bytes (a counter when the total is not known) labelled `name`, on
    /// stderr when it is a terminal and not `quiet`.
    pub fn new(name: &str, total: Option<u64>, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            // Cleared however it ends, an interrupted copy included.
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
                .with_finish(ProgressFinish::AndClear);
            let template = match total {
                Some(_) => WITH_TOTAL,
                None => "{msg:20!} {spinner} packing on the target… {elapsed}",
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            bar,
            quiet,
            flow: Arc::default(),
        }
    }

    /// The total became known (a tree, once packed): a bar from now on.
    pub fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(WITH_TOTAL)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
        }
    }

    /// `n` more bytes are through.
    pub fn add(&self, n: u64) {
        {
            let now = Instant::now();
            let mut f = self.flow.lock().expect("flow");
            f.bytes += n;
            f.first.get_or_insert(now);
            f.last = Some(now);
        }
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// When data moved so far.
    pub fn flow(&self) -> Flow {
        *self.flow.lock().expect("flow")
    }

    /// `n` bytes counted before have to go again (a part is retried).
    pub fn take_back(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(b.position().saturating_sub(n));
        }
    }

    /// A status line above the bar (or on its own), unless quiet.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("rssm: {text}")),
            None if !self.quiet => eprintln!("rssm: {text}"),
            None => {}
        }
    }

    /// Removes the bar (the copy is over, one way or the other).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

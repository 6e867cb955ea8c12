//! The progress bar of a copy: bytes, rate and ETA on a terminal; nothing in a pipe or with
//! `-q`, where notices are plain `rssm: …` lines (none with `-q`).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// The bar: name, bytes of total, rate, ETA.
const WITH_TOTAL: &str =
    "{msg:20!} {bytes:>10} / {total_bytes:<10} {wide_bar} {binary_bytes_per_sec:>12} ETA {eta}";

/// One file's (or tree's) progress. Cheap to clone: striped parts share it.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
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
        Progress { bar, quiet }
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
        if let Some(b) = &self.bar {
            b.inc(n);
        }
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

//! `tracing` output captured in memory, so that a test can wait for a log line of the code it
//! runs in-process (the simulator says when a fault strikes, for instance).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;

/// INFO and above, as plain text lines, from every thread this capture is installed on.
#[derive(Clone)]
pub struct Logs {
    buf: Buf,
    dispatch: Dispatch,
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl io::Write for Buf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;

    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

impl Default for Logs {
    fn default() -> Self {
        Self::new()
    }
}

impl Logs {
    pub fn new() -> Logs {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(buf.clone())
            .finish();
        Logs {
            buf,
            dispatch: Dispatch::new(subscriber),
        }
    }

    /// Captures the current thread's logs until the guard is dropped (a current-thread tokio
    /// runtime: everything it runs logs here).
    pub fn install(&self) -> tracing::dispatcher::DefaultGuard {
        tracing::dispatcher::set_default(&self.dispatch)
    }

    /// Captures the current thread's logs for the rest of its life: for a runtime's
    /// `on_thread_start`, so that the tasks of a runtime of their own log here.
    pub fn install_for_this_thread(&self) {
        std::mem::forget(self.install());
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock()).into_owned()
    }

    /// The first captured line that contains every one of `needles`.
    pub fn line_with(&self, needles: &[&str]) -> Option<String> {
        self.text()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
    }

    /// Waits up to `limit` for a line containing every one of `needles` (on another thread
    /// than the one the logging code runs on).
    pub fn wait_line(&self, needles: &[&str], limit: std::time::Duration) -> String {
        crate::wait::until(&format!("log line with {needles:?}"), limit, || {
            self.line_with(needles)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn captures_the_threads_it_is_installed_on() {
        let logs = Logs::new();
        let on_thread = logs.clone();
        std::thread::spawn(move || {
            on_thread.install_for_this_thread();
            tracing::info!(session = "s-1", "fault: something");
            tracing::debug!("too fine to keep");
        })
        .join()
        .unwrap();
        tracing::info!("not captured: this thread has no capture");
        let line = logs.wait_line(&["fault: something", "s-1"], Duration::from_secs(5));
        assert!(line.contains("INFO"), "{line}");
        assert!(!logs.text().contains("too fine"));
        assert!(!logs.text().contains("not captured"));
    }
}

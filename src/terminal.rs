//! The local terminal during an interactive session: raw mode that is always undone, the window
//! size, and stdin as a stream of raw byte chunks.
//!
//! Raw mode (crossterm, i.e. `cfmakeraw`) rather than the official plugin's `stty cbreak -echo`
//! (PROTOCOL.md §9.1, §14.11): with ISIG off, Ctrl-C, Ctrl-Z and Ctrl-\ reach the remote as bytes
//! instead of being turned into local signals and back, and the plugin's habit of leaving the
//! terminal in cbreak mode on some exit paths (§14.20) is what [`RawMode`] exists to prevent.

use std::io::{self, IsTerminal, Read};
use std::os::fd::AsFd;
use std::sync::Once;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Most bytes per stdin read: one Output payload (`StdinBufferLimit`, PROTOCOL.md §9.1, §12).
pub const STDIN_CHUNK: usize = rssm_protocol::MAX_STREAM_PAYLOAD;

/// The terminal on stdin in raw mode until this is dropped.
///
/// Restoration is guaranteed on every way out of rssm that runs code: normal return and `?`
/// errors (drop), panics (a panic hook installed before raw mode is entered — it also covers
/// panics on other threads, which would not unwind through this guard), and SIGTERM/SIGHUP
/// (the shell command turns those into a normal return). Only a signal rssm does not handle
/// (SIGKILL, or SIGQUIT sent by another process) can skip it.
#[derive(Debug)]
pub struct RawMode(());

impl RawMode {
    /// Enters raw mode if stdin is a terminal; `None` (terminal untouched) when it is not, so
    /// piped input and scripts keep working.
    pub fn enable() -> io::Result<Option<RawMode>> {
        if !io::stdin().is_terminal() {
            return Ok(None);
        }
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()?;
        Ok(Some(RawMode(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts back the terminal settings saved when raw mode was entered; a no-op otherwise.
fn restore() {
    // crossterm keeps the saved termios and restores it at most once.
    let _ = crossterm::terminal::disable_raw_mode();
}

/// Chains a hook that restores the terminal before the previous hook prints the panic, so the
/// message is readable and the user's shell is usable afterwards.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The controlling terminal's size as (columns, rows), if there is a terminal with a known size.
pub fn size() -> Option<(u16, u16)> {
    // `window_size` asks /dev/tty (falling back to stdout) with TIOCGWINSZ; unlike
    // `terminal::size` it never spawns `tput`. A 0×0 answer means "unknown" (e.g. a fresh PTY).
    let ws = crossterm::terminal::window_size().ok()?;
    (ws.columns > 0 && ws.rows > 0).then_some((ws.columns, ws.rows))
}

/// Reads stdin on a dedicated thread and hands over chunks of at most [`STDIN_CHUNK`] bytes,
/// exactly as read (no translation). The channel closes at end of input or on a read error; if
/// stdin cannot be read at all (closed fd 0), it is closed from the start, like an empty input.
///
/// A plain thread rather than `tokio::io::stdin`: tokio's stdin blocks a runtime worker in a read
/// that cannot be cancelled, so the runtime could not shut down until the user pressed a key.
/// This thread is simply abandoned when rssm exits. The bounded channel stops the reads (and so
/// pushes back on the terminal or pipe) while the session is not taking input.
pub fn spawn_stdin_reader(capacity: usize) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(capacity);
    // A duplicate of fd 0, read without std's 8 KiB buffer in between.
    let mut input = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            tracing::debug!("stdin cannot be read: {e}");
            return rx;
        }
    };
    let reader = move || {
        let mut buf = [0u8; STDIN_CHUNK];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("stdin: {e}");
                    return;
                }
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("rssm-stdin".into())
        .spawn(reader)
    {
        tracing::warn!("cannot start the stdin reader: {e}");
    }
    rx
}

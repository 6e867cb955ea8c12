//! `rssm shell TARGET`: an interactive shell on the target (Standard_Stream; without `--document`
//! the service runs its default SSM-SessionManagerRunShell, PROTOCOL.md §9.1).
//!
//! The story: start the session → put the terminal in raw mode → send the terminal size, then
//! every keystroke as it is typed, and a new size on every SIGWINCH → print what the remote
//! terminal prints → when the service closes the channel, restore the terminal, say so, exit.
//!
//! Exit status: the remote exit status when the agent sends one (an ExitCode payload, which only
//! NonInteractiveCommands documents produce, §9.3); 0 after a normal close otherwise; 255 when the
//! session fails. For Standard_Stream and InteractiveCommands the real agent never reports the
//! shell's exit status, not in the data channel and not on the control channel either: its
//! `executeCommandsWithPty` reports success whenever the PTY read ends and only logs the shell's
//! `Wait()` error. So `exit 3` in a shell ends rssm with 0 — as with the official plugin — and no
//! client can do better without changing what runs on the target.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::aws::Aws;
use crate::cli::ShellArgs;
use crate::driver::{DriverConfig, End, Input, Output};
use crate::terminal::{self, RawMode};

use super::escape::{self, EscapeFilter, Escaped};
use super::signals::{Signal, Signals};
use super::{connect, Connected, EXIT_ERROR};

/// The size sent when there is no terminal to measure. The agent starts the shell's PTY at 0×0
/// and relies on the client for a size, and width-aware programs misbehave at 0 columns. 300×100
/// is what the official plugin sends in this case (§9.1): scripted users who migrate get the same
/// output, and wide lines are not wrapped or cut the way they would be at 80 columns.
const FALLBACK_SIZE: (u16, u16) = (300, 100);
/// Inputs read from stdin but not yet taken by the session; past this, stdin is not read.
const QUEUE_LIMIT: usize = 8;
/// Stdin chunks buffered between the reader thread and this task.
const STDIN_BUFFER: usize = 4;
/// Ctrl-C as the byte a terminal sends for it.
const ETX: &[u8] = b"\x03";
/// Ctrl-D: the terminal's end-of-input key.
const EOT: &[u8] = b"\x04";

/// Runs an interactive shell and returns the process exit status.
pub async fn run(aws: &Aws, args: &ShellArgs, config: DriverConfig) -> Result<u8> {
    let conn = connect(
        aws,
        config,
        &args.target,
        None,
        HashMap::new(),
        &args.session,
    )
    .await?;
    run_connected(conn, config.quiet, args.escape.0).await
}

/// Runs the interactive part on a session that is already open (also the drop-in plugin's
/// shell mode).
/// `escape` is the ssh-style escape character (`~`), active only when stdin is a terminal.
pub async fn run_connected(mut conn: Connected, quiet: bool, escape: Option<u8>) -> Result<u8> {
    // `interact` restores the terminal before it returns, however it ends.
    let result = interact(&mut conn, quiet, escape).await;
    let status = result.map(|outcome| outcome.report(quiet));
    conn.terminate().await;
    status
}

/// How the interactive part ended.
enum Ending {
    /// The session ended (the service closed the channel, or it failed).
    Session(End),
    /// A local signal ended rssm.
    Signal(Signal),
    /// The user typed the escape sequence that terminates (`~.`).
    Escape,
}

struct Outcome {
    ending: Ending,
    /// The remote exit status, if the agent reported one.
    exit_code: Option<i32>,
    /// Whether the cursor is at the start of a line (the last output byte was `\n`).
    at_line_start: bool,
}

impl Outcome {
    /// Tells the user how the session ended (the terminal is restored by now) and picks the
    /// exit status.
    fn report(self, quiet: bool) -> u8 {
        // Our messages go on a line of their own, even after a prompt without a newline.
        let nl = if self.at_line_start { "" } else { "\n" };
        // A status outside 0..=255 cannot be passed on; it must not read as success either.
        let remote_status = self
            .exit_code
            .map(|c| u8::try_from(c).unwrap_or(EXIT_ERROR));
        match self.ending {
            Ending::Session(End::Closed { reason }) => {
                if !quiet {
                    let why = if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    };
                    say(false, &format!("{nl}session closed{why}"));
                }
                remote_status.unwrap_or(0)
            }
            Ending::Session(End::Finished) => remote_status.unwrap_or(0),
            Ending::Session(End::Failed(reason)) => match remote_status {
                Some(status) => {
                    tracing::debug!("session failed after the exit code arrived: {reason}");
                    status
                }
                None => {
                    say(false, &format!("{nl}rssm: {reason}"));
                    EXIT_ERROR
                }
            },
            Ending::Escape => {
                if !quiet {
                    say(
                        false,
                        &format!("{nl}rssm: session terminated by escape sequence"),
                    );
                }
                // ssh ends with 255 here too: the remote did not finish on its own.
                EXIT_ERROR
            }
            Ending::Signal(signal) => {
                if !quiet {
                    let name = signal.name();
                    say(
                        false,
                        &format!("{nl}rssm: {name} received, session terminated"),
                    );
                }
                signal.exit_status()
            }
        }
    }
}

/// Carries keystrokes, sizes and output until the session ends or a signal ends rssm.
async fn interact(conn: &mut Connected, quiet: bool, escape: Option<u8>) -> Result<Outcome> {
    // Registered before the first size is measured, so a resize in between is not lost.
    let mut signals = Signals::with_resize()?;
    let raw = RawMode::enable().context("cannot put the terminal into raw mode")?;
    let tty = raw.is_some();
    // Like ssh, escapes only apply to a person typing, never to piped input.
    let mut escapes = escape.filter(|_| tty).map(EscapeFilter::new);
    let mut stdin = terminal::spawn_stdin_reader(STDIN_BUFFER);

    // Sent one at a time through `reserve`, never with a blocking `send`: the driver may be
    // waiting for us to take output before it takes more input.
    let mut queue: VecDeque<Input> = VecDeque::new();
    let mut size = terminal::size();
    let (cols, rows) = size.unwrap_or(FALLBACK_SIZE);
    queue.push_back(size_input(cols, rows));

    let mut stdout = tokio::io::stdout();
    let mut stdin_open = true;
    let mut interrupts = 0;
    let mut exit_code = None;
    let mut at_line_start = true;
    // The agent acknowledges but discards input that arrives before the handshake completes
    // (§7.6), which matters for KMS shells: hold keystrokes and the size until HandshakeComplete,
    // or a handshake-less shell's first output, as the plugin does.
    let mut started = false;
    let ending = 'session: loop {
        tokio::select! {
            out = conn.handle.output.recv() => match out {
                // Whatever the remote terminal prints, byte for byte; StdErr only comes from
                // non-interactive documents, and a terminal shows both on one screen.
                Some(Output::Data(b) | Output::StdErr(b)) => {
                    started = true;
                    stdout.write_all(&b).await.context("cannot write to stdout")?;
                    stdout.flush().await.context("cannot write to stdout")?;
                    if let Some(&last) = b.last() {
                        at_line_start = last == b'\n';
                    }
                }
                Some(Output::ExitCode(c)) => exit_code = Some(c),
                Some(Output::HandshakeComplete { customer_message }) => {
                    started = true;
                    if !quiet && !customer_message.is_empty() {
                        say(tty, customer_message.trim_end());
                    }
                }
                Some(Output::Ended(end)) => break Ending::Session(end),
                Some(other) => tracing::debug!(?other, "shell ignores"),
                None => break Ending::Session(End::Failed("the session driver stopped".into())),
            },
            permit = conn.handle.input.reserve(), if started && !queue.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(input) = queue.pop_front() {
                        permit.send(input);
                    }
                }
                // The driver is gone; its Ended report is on the way.
                Err(_) => queue.clear(),
            },
            chunk = stdin.recv(), if stdin_open && queue.len() < QUEUE_LIMIT => match chunk {
                // Bytes go exactly as typed or piped. No LF→CR rewrite (the plugin turns a lone
                // 0x0a into 0x0d, §9.1, §14.10): in raw mode Enter already sends CR and Ctrl-J
                // must stay LF (editors and readline bind them differently); piped input is the
                // user's data and the remote PTY's ICRNL already ends lines on either byte.
                Some(bytes) => match escapes.as_mut() {
                    None => queue.push_back(Input::Data(bytes)),
                    Some(filter) => {
                        for part in filter.feed(&bytes) {
                            match part {
                                Escaped::Data(d) => queue.push_back(Input::Data(Bytes::from(d))),
                                Escaped::Help => {
                                    let text = escape::help(escape.unwrap_or(b'~'));
                                    let _ = std::io::stderr().write_all(text.as_bytes());
                                }
                                Escaped::Terminate => break 'session Ending::Escape,
                            }
                        }
                    }
                },
                None => {
                    stdin_open = false;
                    if !tty {
                        // Piped input ran out: end it the way a person at a terminal would,
                        // with Ctrl-D, so `rssm shell i-… < script` ends when the script does
                        // (`ssh -tt` would hang here until someone typed `exit`). A script that
                        // ends in `exit N` has exited before this arrives.
                        queue.push_back(Input::Data(Bytes::from_static(EOT)));
                    }
                }
            },
            signal = signals.recv() => match signal {
            // Terminal resized: send the new size at once (the plugin polls every 500 ms).
            Signal::Resize => {
                let now = terminal::size();
                if let Some((cols, rows)) = now.filter(|_| now != size) {
                    size = now;
                    // Only the latest size matters: replace one still waiting.
                    if matches!(queue.back(), Some(Input::Size { .. })) {
                        queue.pop_back();
                    }
                    queue.push_back(size_input(cols, rows));
                }
            },
            // Not from the keyboard in raw mode (Ctrl-C is byte 0x03 then); with piped stdin
            // it is the user's only way to interrupt the remote command, so it is forwarded as
            // 0x03, like the plugin does, and a second one gives up, like `rssm exec`.
            Signal::Interrupt => {
                interrupts += 1;
                if interrupts > 1 {
                    break Ending::Signal(signal);
                }
                queue.push_back(Input::Data(Bytes::from_static(ETX)));
            },
            // Ended from outside, or the terminal went away: terminate the session and
            // restore the terminal.
            Signal::Terminate | Signal::Hangup => break Ending::Signal(signal),
            },
        }
    };
    drop(raw);
    Ok(Outcome {
        ending,
        exit_code,
        at_line_start,
    })
}

fn size_input(cols: u16, rows: u16) -> Input {
    Input::Size {
        cols: cols.into(),
        rows: rows.into(),
    }
}

/// One line on stderr. In raw mode the terminal does not turn `\n` into CR LF, so say it.
/// Write errors are ignored: after SIGHUP there may be no terminal left to tell.
fn say(raw: bool, text: &str) {
    let eol = if raw { "\r\n" } else { "\n" };
    let _ = write!(std::io::stderr(), "{text}{eol}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ending: Ending, exit_code: Option<i32>) -> u8 {
        Outcome {
            ending,
            exit_code,
            at_line_start: true,
        }
        .report(true)
    }

    #[test]
    fn exit_status_is_the_remote_one_when_reported_else_0_or_255() {
        let closed = || {
            Ending::Session(End::Closed {
                reason: String::new(),
            })
        };
        assert_eq!(status(closed(), None), 0);
        assert_eq!(status(closed(), Some(3)), 3);
        assert_eq!(status(closed(), Some(300)), 255);
        assert_eq!(status(closed(), Some(-1)), 255);
        let failed = || Ending::Session(End::Failed("the data channel failed".into()));
        assert_eq!(status(failed(), None), EXIT_ERROR);
        assert_eq!(status(failed(), Some(4)), 4);
        assert_eq!(status(Ending::Signal(Signal::Terminate), Some(3)), 143);
    }
}

//! `rssm exec TARGET -- CMD…`: run one command (AWS-StartNonInteractiveCommand), remote stdout to
//! stdout, remote stderr to stderr, byte for byte, remote exit code as ours.
//!
//! What the document must give (PROTOCOL.md §9.3, §17.1): `separateOutputStream=true`, or the
//! agent merges both streams into stdout, sends them only after the command ends, and reports
//! no exit status. rssm asks for it; a custom `--document` that does not declare the parameter
//! is run without it, with a warning, and then ends with 255 (the status cannot be known).
//!
//! The command runs under a small POSIX `sh` wrapper. It writes a trailer after the command on
//! both streams, so the agent's dropped stream ends cost nothing (see [`trailer`]). It passes a
//! Ctrl-C on to the command and all it started as SIGTERM: the agent signals only the process it
//! started, and a background job ignores SIGINT. It exits with the command's status. Ctrl-C here
//! sends the agent 0x03 (SIGINT to the wrapper); a second Ctrl-C, or SIGTERM or SIGHUP to rssm,
//! gives up at once (the session is ended on the service too).

pub(crate) mod trailer;

use std::collections::HashMap;

use anyhow::Result;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::aws::{Aws, ServiceError};
use crate::cli::ExecArgs;
use crate::driver::{DriverConfig, End, Input, Output};

use super::signals::{Signal, Signals};
use super::{connect, shell_quote, Connected, EXIT_ERROR};
use trailer::{Ending, Trailer, Unwrapper};

/// The document that runs a command without a PTY, with separate stdout/stderr and an exit code.
pub const DOCUMENT: &str = "AWS-StartNonInteractiveCommand";
/// The document parameter that separates the streams and brings the exit code.
const SEPARATE: &str = "separateOutputStream";

/// Runs the command and returns the process exit status.
pub async fn run(aws: &Aws, args: &ExecArgs, config: DriverConfig) -> Result<u8> {
    let trailer = Trailer::random();
    let command = wrapped_command(&args.command.join(" "), &trailer);
    let mut params = HashMap::from([
        ("command".to_owned(), vec![command]),
        (SEPARATE.to_owned(), vec!["true".to_owned()]),
    ]);
    let conn = match connect(
        aws,
        config,
        &args.target,
        Some(DOCUMENT),
        params.clone(),
        &args.session,
    )
    .await
    {
        Err(e) if refuses_separate(&e) => {
            let document = args.session.document.as_deref().unwrap_or(DOCUMENT);
            config.notice(&format!(
                "document {document} does not declare {SEPARATE}: stdout and stderr arrive \
                 merged on stdout when the command ends, and its exit status cannot be known"
            ));
            params.remove(SEPARATE);
            connect(
                aws,
                config,
                &args.target,
                Some(DOCUMENT),
                params,
                &args.session,
            )
            .await?
        }
        other => other?,
    };
    let outcome = relay_output(conn, &trailer).await?;
    Ok(exit_status(outcome))
}

/// StartSession's answer to a document that does not declare `separateOutputStream`.
fn refuses_separate(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServiceError>()
        .is_some_and(|se| se.code == "InvalidParameters" && se.message.contains(SEPARATE))
}

/// The remote command line the agent splits (shlex) and runs: `sh -c WRAPPER rssm-exec CMD TRAILER`.
fn wrapped_command(command: &str, trailer: &Trailer) -> String {
    // $0 names the inner shell, $1 is the command, $2 the trailer. The command runs in the
    // background (the only way a POSIX sh can signal it) in a session of its own where setsid
    // exists, so a Ctrl-C reaches all it started; a background job ignores SIGINT, hence
    // SIGTERM. `wait` returns early when the trap runs; the loop then waits for the command's
    // own status. `2>/dev/null` keeps the shell's "Terminated" notice out of the output.
    const WRAPPER: &str = "trap \"int=1; kill -TERM -\\$p 2>/dev/null || kill -TERM \\$p 2>/dev/null\" INT QUIT; \
        if command -v setsid >/dev/null 2>&1; then setsid sh -c \"$1\" \"$0\" & else sh -c \"$1\" \"$0\" & fi; \
        p=$!; \
        while :; do int=; wait $p 2>/dev/null; r=$?; [ -n \"$int\" ] && [ $r -gt 128 ] || break; done; \
        printf %s \"$2\"; printf %s \"$2\" >&2; exit $r";
    [
        "sh",
        "-c",
        &shell_quote(WRAPPER),
        "rssm-exec",
        &shell_quote(command),
        &shell_quote(trailer.as_str()),
    ]
    .join(" ")
}

/// What the session delivered, for the exit status.
#[derive(Debug)]
struct Outcome {
    end: End,
    exit_code: Option<i32>,
    stdout: Ending,
    stderr: Ending,
    /// rssm gave up on a signal (a second Ctrl-C, SIGTERM, SIGHUP).
    interrupted: Option<Signal>,
}

/// Copies the session's output to ours until it ends.
async fn relay_output(mut conn: Connected, trailer: &Trailer) -> Result<Outcome> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut out = Unwrapper::stdout(trailer);
    let mut err = Unwrapper::stderr(trailer);
    let mut exit_code: Option<i32> = None;
    let mut interrupts = 0;
    // One listener for the whole session: a fresh `ctrl_c()` per loop turn would miss a
    // SIGINT that arrives while a turn writes output.
    let mut signals = Signals::new()?;
    let end = loop {
        tokio::select! {
            o = conn.handle.output.recv() => match o {
                Some(Output::Data(b)) => write(&mut stdout, &out.push(&b)).await?,
                Some(Output::StdErr(b)) => write(&mut stderr, &err.push(&b)).await?,
                Some(Output::ExitCode(c)) => exit_code = Some(c),
                Some(Output::HandshakeComplete { customer_message }) if !customer_message.is_empty() => {
                    eprintln!("{customer_message}");
                }
                Some(Output::Ended(end)) => break end,
                Some(_) => {}
                None => break End::Failed("the session driver stopped".into()),
            },
            signal = signals.recv() => {
                interrupts += 1;
                // The first Ctrl-C goes to the command; a second one, or an end from outside,
                // gives up.
                if interrupts > 1 || signal != Signal::Interrupt {
                    conn.terminate().await;
                    return Ok(Outcome {
                        end: End::Finished,
                        exit_code: None,
                        stdout: Ending::Cut,
                        stderr: Ending::Cut,
                        interrupted: Some(signal),
                    });
                }
                let _ = conn.handle.input.send(Input::Data(Bytes::from_static(b"\x03"))).await;
            }
        }
    };
    conn.terminate().await;
    let (rest, stdout_end) = out.finish();
    write(&mut stdout, &rest).await?;
    let (rest, stderr_end) = err.finish();
    write(&mut stderr, &rest).await?;
    Ok(Outcome {
        end,
        exit_code,
        stdout: stdout_end,
        stderr: stderr_end,
        interrupted: None,
    })
}

async fn write(w: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> Result<()> {
    if !data.is_empty() {
        w.write_all(data).await?;
        w.flush().await?;
    }
    Ok(())
}

/// The exit status for an outcome, saying on stderr why when it is not the command's own.
fn exit_status(o: Outcome) -> u8 {
    if let Some(signal) = o.interrupted {
        return signal.exit_status();
    }
    let reason = match &o.end {
        End::Closed { reason } | End::Failed(reason) => reason.as_str(),
        _ => "",
    };
    let failed = matches!(o.end, End::Failed(_));
    match o.exit_code {
        Some(code) => {
            if o.stdout == Ending::Cut || o.stderr == Ending::Cut {
                let which = match (o.stdout, o.stderr) {
                    (Ending::Cut, Ending::Cut) => "stdout and stderr",
                    (Ending::Cut, _) => "stdout",
                    _ => "stderr",
                };
                error_line(&format!(
                    "the remote command exited with {code}, but its {which} ended early: the \
                     agent stopped reading it (it does when the connection drops mid-output), \
                     so the output above is incomplete"
                ));
                return EXIT_ERROR;
            }
            if failed {
                tracing::debug!("session failed after the exit code arrived: {reason}");
            }
            match u8::try_from(code) {
                Ok(c) => c,
                Err(_) => {
                    let why = if code < 0 {
                        " (killed by a signal)"
                    } else {
                        ""
                    };
                    error_line(&format!(
                        "the remote command reported exit status {code}{why}"
                    ));
                    EXIT_ERROR
                }
            }
        }
        None if !reason.is_empty() => {
            error_line(reason);
            EXIT_ERROR
        }
        // (Merged output has both trailers on stdout and no stderr at all.)
        None if o.stdout == Ending::Cut
            || (o.stderr == Ending::Cut && o.stdout != Ending::Whole { merged: true }) =>
        {
            error_line(
                "the session ended before the command's output and exit status arrived in \
                 full (the agent stops resending 2 s after the command ends, and the \
                 connection had lost some of it): the output above is incomplete",
            );
            EXIT_ERROR
        }
        None => {
            let cause = if matches!(o.stdout, Ending::Whole { merged: true }) {
                format!("the document ran the command without {SEPARATE}=true")
            } else {
                format!(
                    "the document did not set {SEPARATE}=true, or the agent is older than \
                     3.1.1511.0 and cannot separate output"
                )
            };
            error_line(&format!(
                "the agent reported no exit status for the command ({cause}); exiting with 255"
            ));
            EXIT_ERROR
        }
    }
}

/// An error that decides our exit status: printed even with `-q`.
fn error_line(text: &str) {
    eprintln!("rssm: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(end: End, exit_code: Option<i32>, stdout: Ending) -> Outcome {
        Outcome {
            end,
            exit_code,
            stdout,
            stderr: Ending::Whole { merged: false },
            interrupted: None,
        }
    }

    #[test]
    fn the_remote_status_becomes_ours_only_when_it_is_known_and_in_range() {
        let whole = Ending::Whole { merged: false };
        assert_eq!(exit_status(outcome(End::Finished, Some(3), whole)), 3);
        assert_eq!(exit_status(outcome(End::Finished, Some(-1), whole)), 255);
        assert_eq!(exit_status(outcome(End::Finished, Some(256), whole)), 255);
        assert_eq!(exit_status(outcome(End::Finished, None, whole)), 255);
        let merged = Ending::Whole { merged: true };
        assert_eq!(exit_status(outcome(End::Finished, None, merged)), 255);
        let mut merged_no_stderr = outcome(End::Finished, None, merged);
        merged_no_stderr.stderr = Ending::Cut;
        assert_eq!(exit_status(merged_no_stderr), 255);
        assert_eq!(exit_status(outcome(End::Finished, None, Ending::Cut)), 255);
        assert_eq!(
            exit_status(outcome(End::Finished, Some(0), Ending::Cut)),
            255
        );
        let closed = End::Closed {
            reason: String::new(),
        };
        assert_eq!(exit_status(outcome(closed, Some(0), whole)), 0);
    }
}

//! `rssm exec TARGET -- CMD…`: run one command (AWS-StartNonInteractiveCommand), remote stdout to
//! stdout, remote stderr to stderr, remote exit code as ours. Ctrl-C is sent to the remote
//! command (the agent turns byte 0x03 into SIGINT, PROTOCOL.md §9.3); a second Ctrl-C gives up.

use std::collections::HashMap;

use anyhow::Result;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::aws::Aws;
use crate::cli::ExecArgs;
use crate::driver::{End, Input, Output};

use super::{connect, EXIT_ERROR};

/// The document that runs a command without a PTY, with separate stdout/stderr and an exit code.
pub const DOCUMENT: &str = "AWS-StartNonInteractiveCommand";

/// Runs the command and returns the process exit status.
pub async fn run(aws: &Aws, args: &ExecArgs) -> Result<u8> {
    // Like ssh: the words are joined with spaces into one command line for the remote shell.
    // The agent runs the document's command with exec after shlex-splitting it, not through a
    // shell (PROTOCOL.md §9.3), so hand that line to `sh -c` explicitly.
    let command = format!("sh -c {}", shell_quote(&args.command.join(" ")));
    let params = HashMap::from([("command".to_owned(), vec![command])]);
    let mut conn = connect(aws, &args.target, Some(DOCUMENT), params, &args.session).await?;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut exit_code: Option<i32> = None;
    let mut interrupts = 0;
    let end = loop {
        tokio::select! {
            out = conn.handle.output.recv() => match out {
                Some(Output::Data(b)) => { stdout.write_all(&b).await?; stdout.flush().await?; }
                Some(Output::StdErr(b)) => { stderr.write_all(&b).await?; stderr.flush().await?; }
                Some(Output::ExitCode(c)) => exit_code = Some(c),
                Some(Output::HandshakeComplete { customer_message }) if !customer_message.is_empty() => {
                    eprintln!("{customer_message}");
                }
                Some(Output::Ended(end)) => break end,
                Some(_) => {}
                None => break End::Failed("the session driver stopped".into()),
            },
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts > 1 {
                    conn.terminate().await;
                    return Ok(130);
                }
                let _ = conn.handle.input.send(Input::Data(Bytes::from_static(b"\x03"))).await;
            }
        }
    };
    conn.terminate().await;
    stdout.flush().await?;
    Ok(match (end, exit_code) {
        (End::Closed { .. } | End::Finished, Some(code)) => code.clamp(0, 255) as u8,
        (End::Closed { reason } | End::Failed(reason), None) if !reason.is_empty() => {
            eprintln!("rssm: {reason}");
            EXIT_ERROR
        }
        (End::Failed(reason), Some(code)) => {
            tracing::debug!("session failed after the exit code arrived: {reason}");
            code.clamp(0, 255) as u8
        }
        (_, None) => 0,
    })
}

/// Quotes `s` as one POSIX shell word (and one shlex word).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(super::shell_quote("echo it's"), "'echo it'\\''s'");
        assert_eq!(super::shell_quote("a b"), "'a b'");
    }
}

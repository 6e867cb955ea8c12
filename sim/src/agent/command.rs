//! NonInteractiveCommands (PROTOCOL.md §9.3): the command runs without a PTY (arguments split like
//! a shell would, no shell), stdout goes out as Output and stderr as StdErr in ≤ 1024-byte chunks,
//! then `EXIT_CODE: <n>`. Input is only scanned for Ctrl-C (0x03 → SIGINT) and Ctrl-\ (0x1c →
//! SIGQUIT); Size is ignored.

use super::{wait_active, FromPlugin, PluginContext, ToPlugin, READ_CHUNK};
use bytes::Bytes;
use rssm_protocol::message::PayloadType;
use rssm_protocol::payload::exit_code_payload;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// Splits a command line into words: whitespace separates, single and double quotes group,
/// backslash escapes (outside single quotes). `None` for an unterminated quote.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        ch => cur.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

async fn fail(ctx: &PluginContext, message: String) {
    // The agent reports startup errors on StdErr after a short sleep (sendErrorToDataChannel).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = ctx
        .output
        .send(FromPlugin::Send(
            PayloadType::StdErr,
            Bytes::from(message.clone()),
        ))
        .await;
    let _ = ctx
        .output
        .send(FromPlugin::Done {
            output: message,
            failed: true,
        })
        .await;
}

/// Runs the command plugin.
pub async fn run(mut ctx: PluginContext) {
    let line = ctx.plan.command.clone().unwrap_or_default();
    let words = match split_words(&line) {
        Some(w) if !w.is_empty() => w,
        _ => return fail(&ctx, format!("invalid command: {line}")).await,
    };
    let mut child = match Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(&ctx, format!("failed to run commands: {e}")).await,
    };
    let _ = ctx.output.send(FromPlugin::Ready).await;
    let (tx, mut rx) = mpsc::channel::<(PayloadType, Bytes)>(16);
    let mut pumps = 0;
    if let Some(out) = child.stdout.take() {
        pumps += 1;
        tokio::spawn(pump(
            out,
            PayloadType::Output,
            tx.clone(),
            ctx.active.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        pumps += 1;
        tokio::spawn(pump(
            err,
            PayloadType::StdErr,
            tx.clone(),
            ctx.active.clone(),
        ));
    }
    drop(tx);
    let pid = child.id();
    let mut input_open = true;
    while pumps > 0 {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some((pt, data)) => {
                    if ctx.output.send(FromPlugin::Send(pt, data)).await.is_err() {
                        return;
                    }
                }
                None => pumps = 0,
            },
            input = ctx.input.recv(), if input_open => match input {
                Some(ToPlugin::Output(data)) => signal_for_input(pid, &data),
                Some(_) => {}
                None => {
                    input_open = false;
                    let _ = child.start_kill();
                }
            },
        }
    }
    let code = match child.wait().await {
        Ok(status) => status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }),
        Err(_) => -1,
    };
    let _ = ctx
        .output
        .send(FromPlugin::Send(
            PayloadType::ExitCode,
            Bytes::from(exit_code_payload(code)),
        ))
        .await;
    let _ = ctx
        .output
        .send(FromPlugin::Done {
            output: String::new(),
            failed: false,
        })
        .await;
}

fn signal_for_input(pid: Option<u32>, data: &[u8]) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    for b in data {
        let sig = match b {
            0x03 => libc::SIGINT,
            0x1c => libc::SIGQUIT,
            _ => continue,
        };
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

async fn pump(
    mut src: impl AsyncRead + Unpin,
    pt: PayloadType,
    tx: mpsc::Sender<(PayloadType, Bytes)>,
    mut active: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if !wait_active(&mut active).await {
            return;
        }
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send((pt, Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn splits_like_shlex() {
        assert_eq!(
            split_words(r#"sh -c 'echo "a b"; exit 3'"#).unwrap(),
            vec!["sh", "-c", r#"echo "a b"; exit 3"#]
        );
        assert_eq!(
            split_words(r#"printf "x\"y" a\ b"#).unwrap(),
            vec!["printf", "x\"y", "a b"]
        );
        assert!(split_words("echo 'open").is_none());
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
    }
}

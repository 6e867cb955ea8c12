//! NonInteractiveCommands (PROTOCOL.md §9.3, §17.1), as the agent's `shell.go` runs it: the
//! command line is split like a shell would (shlex), run without a shell and without a PTY, and
//! its output reaches the client one of two ways, chosen by the document's
//! `separateOutputStream` (default `false` in `AWS-StartNonInteractiveCommand`):
//!
//! - `false` (`processCommandsWithExec` + `writePump`): stdout and stderr go to one file; only
//!   after the command has exited is the file streamed as Output, in ≤ 1024-byte reads a
//!   millisecond apart. **No ExitCode is sent.**
//! - `true` (`processCommandsWithOutputStreamSeparate` + `setupRoutineToWriteCmdPipelineOutput`):
//!   stdout as Output and stderr as StdErr while the command runs, reads of ≤ 1024 − prefix
//!   bytes, the separator prefix at the start of the first chunk and after every chunk that ends
//!   in `\n`; once both pipes have ended, `EXIT_CODE: <n>` as ExitCode (Go's `ExitCode()`: −1
//!   for a command killed by a signal).
//!
//! Every chunk goes through `processStdoutData` ([`super::utf8`]): up to 3 trailing bytes are
//! held back and dropped at the end of the stream. A pipe reader that finds publication paused
//! stops for good ("Data Channel not in active status"), as the agent's does: what the command
//! writes after that is never read. Input is only scanned for Ctrl-C (0x03 → SIGINT) and
//! Ctrl-\ (0x1c → SIGQUIT), sent to the command's process alone; Size is ignored.

use super::utf8::process_stdout_data;
use super::{FromPlugin, PluginContext, ToPlugin, READ_CHUNK};
use bytes::Bytes;
use rssm_protocol::message::PayloadType;
use rssm_protocol::payload::exit_code_payload;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
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

/// `separateOutputStreamPrefixRegex` (`shell.go`): what the agent accepts as a prefix.
fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 30
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'\r' | b'\n' | b'_' | b':' | b'-'))
}

/// `sendErrorToDataChannel`: a second's sleep, then the text as StdErr; the session fails.
async fn fail(ctx: &PluginContext, message: String) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(ctx, PayloadType::StdErr, message.clone().into_bytes()).await;
    done(ctx, message, true).await;
}

async fn send(ctx: &PluginContext, pt: PayloadType, data: Vec<u8>) -> bool {
    // `SendStreamDataMessage` ignores empty payloads.
    data.is_empty()
        || ctx
            .output
            .send(FromPlugin::Send(pt, Bytes::from(data)))
            .await
            .is_ok()
}

async fn done(ctx: &PluginContext, output: String, failed: bool) {
    let _ = ctx.output.send(FromPlugin::Done { output, failed }).await;
}

/// Runs the command plugin.
pub async fn run(mut ctx: PluginContext) {
    let plan = ctx.plan.clone();
    if plan.separate_output {
        for (name, prefix) in [
            ("stdoutSeparatorPrefix", &plan.stdout_prefix),
            ("stderrSeparatorPrefix", &plan.stderr_prefix),
        ] {
            if !valid_prefix(prefix) {
                // `setSeparateOutputStreamProperties`: the session fails before anything runs.
                return done(&ctx, format!("invalid {name} {prefix}"), true).await;
            }
        }
    }
    let line = plan.command.clone().unwrap_or_default();
    let words = match split_words(&line) {
        Some(w) if !w.is_empty() => w,
        _ => {
            // `StartCommandExecutor` failed: the agent sleeps 2 s, then reports it.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let msg = format!("Unable to start command: Failed to parse commands input: {line}\n");
            return fail(&ctx, msg).await;
        }
    };
    let mut command = Command::new(&words[0]);
    command
        .args(&words[1..])
        .stdin(Stdio::null())
        .env("TERM", "xterm-256color")
        .kill_on_drop(true);
    if let Some(path) = &ctx.state.config.agent_path {
        // (The program itself is looked up on this PATH too, as a login would find it.)
        command.env("PATH", path);
    }
    // SAFETY: default_signals only calls signal(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            super::pty::default_signals();
            Ok(())
        });
    }
    if std::env::var_os("LANG").is_none() {
        command.env("LANG", "C.UTF-8");
    }
    if plan.separate_output {
        run_separated(&mut ctx, command).await;
    } else {
        run_merged(&mut ctx, command).await;
    }
}

/// `separateOutputStream: true`.
async fn run_separated(ctx: &mut PluginContext, mut command: Command) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            // "Error occurred starting the command": exit code 1 first, then the error.
            send(
                ctx,
                PayloadType::ExitCode,
                exit_code_payload(1).into_bytes(),
            )
            .await;
            return fail(ctx, e.to_string()).await;
        }
    };
    let _ = ctx.output.send(FromPlugin::Ready).await;
    let (tx, mut rx) = mpsc::channel::<(PayloadType, Vec<u8>)>(16);
    let stdout = child.stdout.take().map(|out| {
        let prefix = ctx.plan.stdout_prefix.clone();
        tokio::spawn(pipe_reader(
            out,
            PayloadType::Output,
            prefix,
            tx.clone(),
            ctx.active.clone(),
        ))
    });
    let stderr = child.stderr.take().map(|err| {
        let prefix = ctx.plan.stderr_prefix.clone();
        tokio::spawn(pipe_reader(
            err,
            PayloadType::StdErr,
            prefix,
            tx.clone(),
            ctx.active.clone(),
        ))
    });
    drop(tx);
    let pid = child.id();
    // Both readers must end before the command is waited for (`writeStdOutDone`, `writeStdErrDone`).
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some((pt, data)) => if !send(ctx, pt, data).await { return },
                None => break,
            },
            input = ctx.input.recv() => if !on_input(input, pid, &mut child) { return },
        }
    }
    // A reader that stopped hands its pipe back: like Go's, it stays open until the command
    // has been waited for, so the command's writes fill it rather than raise SIGPIPE.
    let kept_stdout = match stdout {
        Some(reader) => reader.await.ok(),
        None => None,
    };
    let kept_stderr = match stderr {
        Some(reader) => reader.await.ok(),
        None => None,
    };
    let code = exit_code(&mut child).await;
    drop((kept_stdout, kept_stderr));
    // `sendExitCode` sends only while publication is active.
    if *ctx.active.borrow() {
        send(
            ctx,
            PayloadType::ExitCode,
            exit_code_payload(code).into_bytes(),
        )
        .await;
    }
    done(ctx, String::new(), false).await;
}

/// `separateOutputStream: false` (the document's default).
async fn run_merged(ctx: &mut PluginContext, mut command: Command) {
    let file = match tempfile() {
        Ok(f) => f,
        Err(e) => {
            return fail(
                ctx,
                format!("Failed to open file for writing command output. error: {e}\n"),
            )
            .await
        }
    };
    let (Ok(out), Ok(err)) = (file.try_clone(), file.try_clone()) else {
        return fail(
            ctx,
            "Failed to open file for writing command output.\n".into(),
        )
        .await;
    };
    command.stdout(out).stderr(err);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return fail(ctx, e.to_string()).await,
    };
    let _ = ctx.output.send(FromPlugin::Ready).await;
    let pid = child.id();
    loop {
        tokio::select! {
            status = child.wait() => { let _ = status; break }
            input = ctx.input.recv() => if !on_input(input, pid, &mut child) { return },
        }
    }
    // `writePump` on the output file: reads of ≤ 1024 bytes a millisecond apart, none while
    // publication is paused; the end of the file ends it, and what it held back is lost.
    // (A local file: reads return at once, so plain reads between the async sleeps.)
    use std::io::{Read, Seek};
    let mut reader = file;
    if reader.seek(std::io::SeekFrom::Start(0)).is_err() {
        return done(ctx, String::new(), false).await;
    }
    let mut held = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if *ctx.active.borrow() {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data = process_stdout_data(&mut held, &buf[..n]);
            if !send(ctx, PayloadType::Output, data).await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done(ctx, String::new(), false).await;
}

/// An unnamed file in the temporary directory (the agent's `ExecOutputFileName` in the
/// orchestration directory, removed afterwards).
fn tempfile() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("rssm-sim-exec-{}", uuid::Uuid::new_v4()));
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// Client input while the command runs; false when the session is gone (the command is killed).
fn on_input(input: Option<ToPlugin>, pid: Option<u32>, child: &mut Child) -> bool {
    match input {
        Some(ToPlugin::Output(data)) => signal_for_input(pid, &data),
        Some(_) => {}
        None => {
            let _ = child.start_kill();
            return false;
        }
    }
    true
}

/// Go's `ExitError.ExitCode()`: the status, or −1 when a signal ended the command.
async fn exit_code(child: &mut Child) -> i32 {
    match child.wait().await {
        Ok(status) => status.code().unwrap_or(-1),
        Err(_) => 1,
    }
}

fn signal_for_input(pid: Option<u32>, data: &[u8]) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // `InputStreamMessageHandler`: the first control byte of the payload wins.
    let Some(sig) = data.iter().find_map(|b| match b {
        0x03 => Some(libc::SIGINT),
        0x1c => Some(libc::SIGQUIT),
        _ => None,
    }) else {
        return;
    };
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// One pipe's reader (`setupRoutineToWriteCmdPipelineOutput`).
async fn pipe_reader<P: AsyncRead + Unpin>(
    mut pipe: P,
    pt: PayloadType,
    prefix: String,
    tx: mpsc::Sender<(PayloadType, Vec<u8>)>,
    active: watch::Receiver<bool>,
) -> P {
    let mut buf = vec![0u8; READ_CHUNK - prefix.len()];
    let mut held = Vec::new();
    let mut need_prefix = true;
    loop {
        if !*active.borrow() {
            // "Data Channel not in active status": this stream ends here for good.
            tracing::debug!(?pt, "agent pipe reader stops: publication paused");
            return pipe;
        }
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return pipe, // EOF: what `held` keeps is dropped
            Ok(n) => n,
        };
        let mut chunk = Vec::with_capacity(prefix.len() + n);
        if need_prefix {
            chunk.extend_from_slice(prefix.as_bytes());
        }
        need_prefix = buf[n - 1] == b'\n';
        chunk.extend_from_slice(&buf[..n]);
        let data = process_stdout_data(&mut held, &chunk);
        if tx.send((pt, data)).await.is_err() {
            return pipe;
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

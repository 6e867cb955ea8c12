//! Standard_Stream and InteractiveCommands (PROTOCOL.md §9.1, §9.2): a shell (or `sh -c <command>`)
//! on a PTY. Output pump: 1 s initial delay, reads of ≤ 1024 bytes, UTF-8 hold-back, 1 ms between
//! reads, no reads while publication is paused. Input: Output payloads are written to the PTY as-is,
//! Size resizes it. The session ends when the PTY read fails (the shell exited).

use super::pty;
use super::utf8::process_stdout_data;
use super::{wait_active, FromPlugin, PluginContext, ToPlugin, READ_CHUNK};
use crate::documents::SessionKind;
use bytes::Bytes;
use rssm_protocol::message::PayloadType;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The agent sleeps this long before its first PTY read (`writePump`).
const FIRST_READ_DELAY: Duration = Duration::from_secs(1);

fn command_for(ctx: &PluginContext) -> Command {
    let shell = ctx
        .state
        .config
        .shell
        .clone()
        .or_else(|| std::env::var("SHELL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "/bin/sh".to_owned());
    let mut cmd = match (&ctx.plan.kind, &ctx.plan.command) {
        (SessionKind::InteractiveCommands, Some(c)) => {
            // `sh` from PATH, as the agent runs it (`agent/session/utility`:
            // `ShellPluginCommandName` "sh", `ShellPluginCommandArgs` "-c").
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        _ => Command::new(shell),
    };
    cmd.env("TERM", "xterm-256color");
    if let Some(path) = &ctx.state.config.agent_path {
        cmd.env("PATH", path);
    }
    if std::env::var_os("LANG").is_none() {
        cmd.env("LANG", "C.UTF-8");
    }
    cmd
}

/// Runs the shell plugin.
pub async fn run(mut ctx: PluginContext) {
    let cmd = command_for(&ctx);
    let pty = match pty::spawn(cmd, 80, 24) {
        Ok(p) => p,
        Err(e) => {
            let _ = ctx
                .output
                .send(FromPlugin::Done {
                    output: format!("Failed to start pty: {e}"),
                    failed: true,
                })
                .await;
            return;
        }
    };
    let pty::Pty {
        reader,
        writer,
        mut child,
    } = pty;
    let _ = ctx.output.send(FromPlugin::Ready).await;

    // The read pump runs on a blocking thread; chunks arrive through a bounded channel.
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Bytes>(16);
    let active = ctx.active.clone();
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || read_pump(reader, chunk_tx, active, handle));

    // Input goes to the terminal on a thread of its own, one payload at a time: the agent's
    // input handler writes it before it takes the next message (`InputStreamMessageHandler`),
    // so a terminal nobody reads holds the client back. But its output pump ends the session
    // when the command exits (`writePump`), whether or not a write is stuck: so does this loop.
    let resizer = writer.try_clone().ok();
    let stop = Arc::new(AtomicBool::new(false));
    let (write_tx, write_rx) = mpsc::channel::<Bytes>(1);
    let writer_stop = stop.clone();
    std::thread::spawn(move || write_pump(writer, write_rx, &writer_stop));
    let mut pending: Option<Bytes> = None;
    loop {
        tokio::select! {
            chunk = chunk_rx.recv() => match chunk {
                Some(c) => {
                    if ctx.output.send(FromPlugin::Send(PayloadType::Output, c)).await.is_err() {
                        break;
                    }
                }
                None => break, // the shell exited
            },
            permit = write_tx.reserve(), if pending.is_some() => match permit {
                Ok(permit) => permit.send(pending.take().unwrap_or_default()),
                Err(_) => pending = None, // the terminal refused a write: input is dropped
            },
            input = ctx.input.recv(), if pending.is_none() => match input {
                Some(ToPlugin::Output(data)) => pending = Some(data),
                Some(ToPlugin::Size(s)) => {
                    if let Some(w) = &resizer {
                        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
                        let _ = pty::resize(w, clamp(s.cols), clamp(s.rows));
                    }
                }
                Some(ToPlugin::Flag(_)) => {}
                None => {
                    // The driver is gone (channel_closed or terminate): hang up the shell.
                    let _ = child.kill();
                    break;
                }
            },
        }
    }
    stop.store(true, Ordering::Release);
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let _ = ctx
        .output
        .send(FromPlugin::Done {
            output: String::new(),
            failed: false,
        })
        .await;
}

/// Writes input to the terminal until the session ends; a write that fails (the terminal is
/// gone) ends it.
fn write_pump(mut writer: std::fs::File, mut rx: mpsc::Receiver<Bytes>, stop: &AtomicBool) {
    while let Some(data) = rx.blocking_recv() {
        if pty::write_all(&mut writer, &data, stop).is_err() {
            return;
        }
    }
}

fn read_pump(
    mut reader: std::fs::File,
    tx: mpsc::Sender<Bytes>,
    mut active: tokio::sync::watch::Receiver<bool>,
    handle: tokio::runtime::Handle,
) {
    std::thread::sleep(FIRST_READ_DELAY);
    let mut held: Vec<u8> = Vec::new();
    let mut buf = [0u8; READ_CHUNK];
    loop {
        if !*active.borrow() && !handle.block_on(wait_active(&mut active)) {
            return;
        }
        let n = match pty::read(&mut reader, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ready = process_stdout_data(&mut held, &buf[..n]);
        if !ready.is_empty() && tx.blocking_send(Bytes::from(ready)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The read failed (the shell exited): `writePump` returns, and the bytes `held` keeps are
    // never sent (PROTOCOL.md §17.2).
}

//! Uploads, through the one session type whose input reaches a command: a PTY
//! (AWS-StartInteractiveCommand). The script there turns echo off and the terminal raw before
//! it says `ready`, and the bytes go as base64 with their length given up front, so neither
//! the terminal nor the shell can change or end them. One session carries a whole file from
//! temporary name to final name; `--sessions N` writes N parts into one temporary file, each at
//! its offset, and a last command checks it and moves it into place.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Result;
use base64::Engine;
use bytes::Bytes;

use super::error::CpError;
use super::progress::Progress;
use super::remote::{Script, PART_ALIGN};
use super::session::{Pty, Remote};
use super::{parts, random_token};

/// The bytes of a message: what the service passes and what the official client sends.
const MESSAGE: usize = 1024;
/// Raw bytes read at a time: a multiple of 3 (no padding but at the very end) whose base64 is
/// a whole number of messages.
const BLOCK: usize = MESSAGE / 4 * 3 * 64;

/// What goes up: a local file (or a tar archive of a tree) with its size and digest.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The local file to read.
    pub local: std::path::PathBuf,
    /// The name it takes in a destination directory.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Permission bits in octal (`644`).
    pub mode: String,
    /// `f` (a file) or `t` (a tar archive of a tree, unpacked there).
    pub kind: &'static str,
}

/// Uploads `up` to `dest` on the target over up to `sessions` sessions.
pub async fn upload(
    remote: &Remote,
    up: &Upload,
    dest: &str,
    sessions: u8,
    progress: &Progress,
) -> Result<()> {
    let token = random_token();
    let ranges = parts(up.size, sessions);
    if ranges.len() <= 1 {
        return whole(remote, up, dest, &token, progress).await;
    }
    let ran = remote
        .exec(Script::Prepare, &[dest, &up.name, up.kind, &token], |_| {
            Ok(())
        })
        .await?;
    if let Some(e) = ran.failure(dest) {
        return Err(e.into());
    }
    let (Some(final_path), Some(tmp)) = (ran.report("path"), ran.report("tmp")) else {
        return Err(CpError::Protocol("no path reported".into()).into());
    };
    let (final_path, tmp) = (final_path.rest(), tmp.rest());
    remote.track_tmp(&tmp);
    let sent = futures_util::future::try_join_all(
        ranges
            .iter()
            .map(|&(offset, len)| part(remote, up, &tmp, offset, len, progress)),
    )
    .await;
    let result = match sent {
        Ok(_) => finish(remote, up, &final_path, &tmp).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Parts dropped mid-way still write: their sessions end before the file goes.
        remote.terminate_all().await;
        remote.remove_tmps().await;
    } else {
        remote.untrack_tmp(&tmp);
    }
    result
}

/// The whole upload in one session, retried once on a lost session.
async fn whole(
    remote: &Remote,
    up: &Upload,
    dest: &str,
    token: &str,
    progress: &Progress,
) -> Result<()> {
    let encoded = encoded_len(up.size).to_string();
    let size = up.size.to_string();
    let args = [
        dest, &up.name, up.kind, token, &encoded, &size, &up.sha256, &up.mode,
    ];
    for attempt in 0..2 {
        let sending = Sending {
            script: Script::Receive,
            args: &args,
            path: dest,
            range: (0, up.size),
            done: "done",
        };
        let result = sending.run(remote, &up.local, progress).await;
        match result {
            Err(e) if lost(&e) && attempt == 0 => {
                progress.take_back(up.size);
                progress.note(&format!("{e}; sending {} again", up.name));
            }
            Err(e) => {
                remote.remove_tmps().await;
                return Err(e);
            }
            Ok(()) => {
                remote.forget_tmps();
                return Ok(());
            }
        }
    }
    unreachable!("the loop returns")
}

/// One part of a striped upload, retried once on a lost session.
async fn part(
    remote: &Remote,
    up: &Upload,
    tmp: &str,
    offset: u64,
    len: u64,
    progress: &Progress,
) -> Result<()> {
    debug_assert_eq!(offset % PART_ALIGN, 0);
    let args = [tmp, &offset.to_string(), &encoded_len(len).to_string()];
    for attempt in 0..2 {
        let sending = Sending {
            script: Script::ReceivePart,
            args: &args,
            path: tmp,
            range: (offset, len),
            done: "part",
        };
        let result = sending.run(remote, &up.local, progress).await;
        match result {
            Err(e) if lost(&e) && attempt == 0 => {
                progress.take_back(len);
                progress.note(&format!(
                    "{e}; sending the part at offset {offset} of {} again",
                    up.name
                ));
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// Checks the assembled temporary file on the target and moves it into place.
async fn finish(remote: &Remote, up: &Upload, final_path: &str, tmp: &str) -> Result<()> {
    let size = up.size.to_string();
    let ran = remote
        .exec(
            Script::Finish,
            &[
                final_path, tmp, &size, &up.sha256, &up.mode, up.kind, &up.name,
            ],
            |_| Ok(()),
        )
        .await?;
    match ran.failure(final_path) {
        None if ran.report("done").is_some() => Ok(()),
        None => Err(CpError::Protocol("the finishing command said nothing".into()).into()),
        Some(e) => Err(e.into()),
    }
}

/// One session that takes a range of the file: its script, which reports `ready`, takes the
/// range's base64 and reports `done` when it has it all.
struct Sending<'a> {
    script: Script,
    args: &'a [&'a str],
    /// What the errors name.
    path: &'a str,
    /// Offset and length in the local file.
    range: (u64, u64),
    /// The report that says the range arrived.
    done: &'a str,
}

impl Sending<'_> {
    async fn run(&self, remote: &Remote, local: &Path, progress: &Progress) -> Result<()> {
        let mut pty = remote.pty(self.script, self.args, self.path).await?;
        let (offset, len) = self.range;
        let done = match send_range(&mut pty, local, offset, len, progress).await {
            Ok(()) => expect(&mut pty, self.done, self.path).await,
            Err(e) => Err(e),
        };
        pty.close().await;
        Ok(done?)
    }
}

/// Whether an error is a lost session (worth one more session).
fn lost(e: &anyhow::Error) -> bool {
    e.downcast_ref::<CpError>().is_some_and(CpError::is_lost)
}

/// Waits for the script's report `kind`; any other is an error.
async fn expect(pty: &mut Pty, kind: &str, path: &str) -> Result<(), CpError> {
    let r = pty.next_report().await?;
    if r.kind() == kind {
        return Ok(());
    }
    Err(CpError::from_report(&r, path)
        .unwrap_or_else(|| CpError::Protocol(format!("expected {kind}, got {r:?}"))))
}

/// The length of `n` bytes in base64.
fn encoded_len(n: u64) -> u64 {
    n.div_ceil(3) * 4
}

/// Sends `len` bytes of `local` from `offset` as base64, one full message at a time.
async fn send_range(
    pty: &mut Pty,
    local: &Path,
    offset: u64,
    len: u64,
    progress: &Progress,
) -> Result<(), CpError> {
    let read_err = |e: std::io::Error| CpError::local(local, &e);
    let mut file = std::fs::File::open(local).map_err(read_err)?;
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    let mut buf = vec![0u8; BLOCK];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(BLOCK);
        file.read_exact(&mut buf[..n]).map_err(read_err)?;
        let text = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
        let text = Bytes::from(text);
        for at in (0..text.len()).step_by(MESSAGE) {
            let end = (at + MESSAGE).min(text.len());
            pty.send(text.slice(at..end)).await?;
        }
        progress.add(n as u64);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_encode_to_whole_messages() {
        assert_eq!(BLOCK % 3, 0);
        assert_eq!(encoded_len(BLOCK as u64) as usize % MESSAGE, 0);
        assert_eq!(encoded_len(0), 0);
        assert_eq!(encoded_len(1), 4);
        assert_eq!(encoded_len(3), 4);
        assert_eq!(encoded_len(4), 8);
    }
}

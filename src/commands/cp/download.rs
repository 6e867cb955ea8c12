//! Downloads: a file in one or more ranges of blocks (each a non-interactive session running
//! `dd` block by block, see [`super::frames`]), a directory as a tar archive the target packs
//! first; either lands in a temporary file beside its final name, is checked against the
//! SHA-256 the target computed, and only then takes that name.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use base64::Engine;

use super::error::CpError;
use super::frames::{Frames, BLOCK};
use super::progress::Progress;
use super::remote::Script;
use super::session::Remote;
use super::{parts, random_token, sha256_file};

/// A remote regular file, as the probe found it.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    /// Permission bits, when the target could tell.
    pub mode: Option<u32>,
    pub sha256: String,
}

/// A temporary file beside `dest`, removed unless it is renamed into place.
fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile, CpError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".rssm-cp.part")
        .tempfile_in(dir)
        .map_err(|e| CpError::local(dir, &e))
}

/// Downloads `src` to `dest` over up to `sessions` sessions.
pub async fn file(
    remote: &Remote,
    src: &RemoteFile,
    dest: &Path,
    sessions: u8,
    progress: &Progress,
) -> Result<()> {
    let tmp = temp_beside(dest)?;
    fetch(remote, src, (&tmp, dest), sessions, progress).await?;
    let file = tmp.as_file();
    let mode = src.mode.unwrap_or(0o644);
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| CpError::local(dest, &e))?;
    file.sync_all().map_err(|e| CpError::local(dest, &e))?;
    tmp.persist(dest)
        .map_err(|e| CpError::local(dest, &e.error))?;
    Ok(())
}

/// Fetches `src` into `tmp` (the temporary file for `dest`) and checks its SHA-256.
async fn fetch(
    remote: &Remote,
    src: &RemoteFile,
    (tmp, dest): (&tempfile::NamedTempFile, &Path),
    sessions: u8,
    progress: &Progress,
) -> Result<()> {
    let file = tmp.as_file();
    let ranges = parts(src.size, sessions);
    let bad = futures_util::future::try_join_all(
        ranges
            .iter()
            .map(|&(offset, len)| fetch_range(remote, src, (file, dest), offset, len, progress)),
    )
    .await?;
    let bad: Vec<u64> = bad.into_iter().flatten().collect();
    if !bad.is_empty() {
        tracing::info!(
            "{} block(s) of {} came back altered: fetching them as base64",
            bad.len(),
            src.path
        );
        for group in bad.chunks(REPAIR_GROUP) {
            repair(remote, src, (file, dest), group).await?;
        }
    }
    let path = tmp.path().to_owned();
    let got = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await?
        .map_err(|e| CpError::local(dest, &e))?;
    if got != src.sha256 {
        return Err(CpError::Mismatch(format!(
            "{}: what arrived has SHA-256 {got}, the target's file {}; it may have changed \
             during the copy. Nothing was written under {}",
            src.path,
            src.sha256,
            dest.display()
        ))
        .into());
    }
    Ok(())
}

/// Blocks fetched again per repair session.
const REPAIR_GROUP: usize = 64;

/// The length of block `b` of a file of `size` bytes.
fn block_len(size: u64, b: u64) -> u64 {
    size.saturating_sub(b * BLOCK).min(BLOCK)
}

/// A marker no file holds by chance.
fn marker() -> String {
    format!("\x1erssm-blk-{}\x1e", random_token())
}

/// One range of the file, block by block at its offset; a lost session is retried once, from
/// the first block that had not arrived. Returns the blocks that came back altered.
async fn fetch_range(
    remote: &Remote,
    src: &RemoteFile,
    (file, dest): (&std::fs::File, &Path),
    offset: u64,
    len: u64,
    progress: &Progress,
) -> Result<Vec<u64>> {
    debug_assert_eq!(offset % BLOCK, 0);
    let end = (offset + len).div_ceil(BLOCK);
    let mut next = offset / BLOCK;
    let mut bad = Vec::new();
    let mark = marker();
    for attempt in 0..2 {
        let mut frames = Frames::new(&mark, next);
        let count = (end - next).to_string();
        let first = next.to_string();
        let ran = remote
            .exec(
                Script::Blocks,
                &[&src.path, &first, &count, &mark],
                |data| {
                    for f in frames.push(data) {
                        if f.block >= end {
                            return Err(CpError::Protocol(format!(
                                "block {} of {} was not asked for",
                                f.block, src.path
                            ))
                            .into());
                        }
                        let want = block_len(src.size, f.block);
                        if f.data.len() as u64 == want {
                            file.write_all_at(&f.data, f.block * BLOCK)
                                .map_err(|e| CpError::local(dest, &e))?;
                        } else {
                            bad.push(f.block);
                        }
                        progress.add(want);
                        next = f.block + 1;
                    }
                    Ok(())
                },
            )
            .await?;
        match ran.failure(&src.path) {
            None if next == end => return Ok(bad),
            None => {
                return Err(CpError::Remote(format!(
                    "{}: the file ended at block {next} of {end} (it shrank during the copy?)",
                    src.path
                ))
                .into())
            }
            Some(e) if e.is_lost() && attempt == 0 => {
                progress.note(&format!("{e}; fetching the rest of {} again", src.path));
            }
            Some(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
}

/// Fetches `blocks` again as base64, which the agent passes unchanged.
async fn repair(
    remote: &Remote,
    src: &RemoteFile,
    (file, dest): (&std::fs::File, &Path),
    blocks: &[u64],
) -> Result<()> {
    let mark = marker();
    let numbers: Vec<String> = blocks.iter().map(u64::to_string).collect();
    let mut args = vec![src.path.as_str(), mark.as_str()];
    args.extend(numbers.iter().map(String::as_str));
    let mut frames = Frames::new(&mark, 0);
    let mut done = 0;
    let ran = remote
        .exec(Script::Repair, &args, |data| {
            for f in frames.push(data) {
                let Some(&block) = blocks.get(f.block as usize) else {
                    return Err(CpError::Protocol("more blocks than asked for".into()).into());
                };
                let text: Vec<u8> = f.data.into_iter().filter(|b| !b.is_ascii_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .map_err(|e| CpError::Protocol(format!("block {block} in base64: {e}")))?;
                if bytes.len() as u64 != block_len(src.size, block) {
                    return Err(CpError::Mismatch(format!(
                        "{}: block {block} has {} bytes now, not {} (the file changed during the copy?)",
                        src.path,
                        bytes.len(),
                        block_len(src.size, block)
                    ))
                    .into());
                }
                file.write_all_at(&bytes, block * BLOCK)
                    .map_err(|e| CpError::local(dest, &e))?;
                done += 1;
            }
            Ok(())
        })
        .await?;
    match ran.failure(&src.path) {
        None if done == blocks.len() => Ok(()),
        None => Err(CpError::Protocol("the repair ended early".into()).into()),
        Some(e) => Err(e.into()),
    }
}

/// Downloads the remote directory `src` to `dest`: the target packs it into a temporary tar
/// archive, which comes like a file (checked, striped when asked), and is unpacked here into a
/// temporary directory that takes the final name (or, when `dest` exists already, into it).
pub async fn tree(
    remote: &Remote,
    src: &str,
    dest: &Path,
    sessions: u8,
    progress: &Progress,
) -> Result<()> {
    let ran = remote
        .exec(Script::Pack, &[src, &random_token()], |_| Ok(()))
        .await?;
    if let Some(t) = ran.report("tmp") {
        remote.track_tmp(&t.rest());
    }
    let result = async {
        if let Some(e) = ran.failure(src) {
            return Err(e.into());
        }
        let (Some(tmp), Some(r)) = (ran.report("tmp"), ran.report("file")) else {
            return Err(CpError::Protocol(format!("packing {src} said nothing")).into());
        };
        let Ok(size) = r.arg(1).parse::<u64>() else {
            return Err(CpError::Protocol(format!("a bad report {r:?}")).into());
        };
        let packed = RemoteFile {
            path: tmp.rest(),
            size,
            mode: None,
            sha256: r.arg(2).to_owned(),
        };
        progress.set_total(size);
        let archive = temp_beside(dest)?;
        fetch(remote, &packed, (&archive, dest), sessions, progress).await?;
        let name = super::operand::remote_basename(src).to_owned();
        let dest = dest.to_owned();
        let archive_path = archive.path().to_owned();
        tokio::task::spawn_blocking(move || unpack(&archive_path, &name, &dest)).await??;
        drop(archive);
        Ok(())
    }
    .await;
    remote.remove_tmps().await;
    result
}

/// Unpacks the archive whose top entry is `name` so that it becomes `dest`.
fn unpack(archive: &Path, name: &str, dest: &Path) -> Result<()> {
    let open = || -> Result<tar::Archive<std::fs::File>> {
        let mut a = tar::Archive::new(std::fs::File::open(archive)?);
        a.set_preserve_permissions(true);
        a.set_preserve_mtime(true);
        a.set_overwrite(true);
        Ok(a)
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if dest.is_dir() && dest.file_name().is_some_and(|n| n == name) {
        // Over an existing directory of the same name: merged, file by file.
        open()?
            .unpack(&parent)
            .map_err(|e| CpError::local(dest, &e))?;
        return Ok(());
    }
    if dest.exists() {
        return Err(
            CpError::Remote(format!("{} exists and is not a directory", dest.display())).into(),
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(".rssm-cp.")
        .tempdir_in(&parent)
        .map_err(|e| CpError::local(&parent, &e))?;
    open()?
        .unpack(staging.path())
        .map_err(|e| CpError::local(dest, &e))?;
    let top = staging.path().join(name);
    if !top.is_dir() {
        return Err(CpError::Protocol(format!("the archive has no top directory {name}")).into());
    }
    std::fs::rename(&top, dest).map_err(|e| CpError::local(dest, &e))?;
    Ok(())
}

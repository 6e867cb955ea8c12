//! Downloads: a file in one or more byte ranges (each a non-interactive session running `tail |
//! head`), a directory as one tar stream; either lands in a temporary file beside its final
//! name, is checked against the SHA-256 the target computed, and only then takes that name.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::error::CpError;
use super::progress::Progress;
use super::remote::Script;
use super::session::Remote;
use super::{parts, sha256_file};

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
    let ranges = parts(src.size, sessions);
    let file = tmp.as_file();
    futures_util::future::try_join_all(
        ranges
            .iter()
            .map(|&(offset, len)| fetch_range(remote, src, (file, dest), offset, len, progress)),
    )
    .await?;
    let path = tmp.path().to_owned();
    let got = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await?
        .map_err(|e| CpError::local(tmp.path(), &e))?;
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
    let mode = src.mode.unwrap_or(0o644);
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| CpError::local(dest, &e))?;
    file.sync_all().map_err(|e| CpError::local(dest, &e))?;
    tmp.persist(dest)
        .map_err(|e| CpError::local(dest, &e.error))?;
    Ok(())
}

/// One range of the file, written at its offset; a lost session is retried once, from where
/// it stopped.
async fn fetch_range(
    remote: &Remote,
    src: &RemoteFile,
    (file, dest): (&std::fs::File, &Path),
    offset: u64,
    len: u64,
    progress: &Progress,
) -> Result<()> {
    let mut got = 0u64;
    for attempt in 0..2 {
        let start = offset + got;
        let ran = remote
            .exec(
                Script::Range,
                &[&src.path, &start.to_string(), &(len - got).to_string()],
                |data| {
                    if got + data.len() as u64 > len {
                        return Err(CpError::Protocol(format!(
                            "more than the {len} bytes asked for from {}",
                            src.path
                        ))
                        .into());
                    }
                    file.write_all_at(data, offset + got)
                        .map_err(|e| CpError::local(dest, &e))?;
                    got += data.len() as u64;
                    progress.add(data.len() as u64);
                    Ok(())
                },
            )
            .await?;
        match ran.failure(&src.path) {
            None if got == len => return Ok(()),
            None => {
                return Err(CpError::Remote(format!(
                    "{}: {got} of {len} bytes arrived from offset {offset} and the file ended \
                     (it shrank during the copy?)",
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

/// Downloads the remote directory `src` to `dest`: a tar stream into a temporary file, checked,
/// then unpacked into a temporary directory that takes the final name (or, when `dest` exists
/// already, into it).
pub async fn tree(remote: &Remote, src: &str, dest: &Path, progress: &Progress) -> Result<()> {
    let archive = temp_beside(dest)?;
    let file = archive.as_file();
    let mut got = 0u64;
    let mut expected = None;
    for attempt in 0..2 {
        let ran = remote
            .exec(Script::Tree, &[src, &got.to_string()], |data| {
                file.write_all_at(data, got)
                    .map_err(|e| CpError::local(dest, &e))?;
                got += data.len() as u64;
                progress.add(data.len() as u64);
                Ok(())
            })
            .await?;
        let report = ran.report("tar").cloned();
        match (ran.failure(src), report) {
            (None, Some(r)) if r.arg(0) == "0" => {
                expected = Some(r.arg(1).to_owned());
                break;
            }
            (None, _) => {
                let why = ran
                    .stderr
                    .last_message()
                    .unwrap_or_else(|| "tar failed".into());
                return Err(CpError::from_message(src, Some(why), 1).into());
            }
            (Some(e), _) if e.is_lost() && attempt == 0 => {
                progress.note(&format!("{e}; fetching the rest of {src} again"));
            }
            (Some(e), _) => return Err(e.into()),
        }
    }
    let expected = expected.context("the tar stream did not finish")?;
    let path = archive.path().to_owned();
    let sum = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await?
        .map_err(|e| CpError::local(archive.path(), &e))?;
    if sum != expected {
        return Err(CpError::Mismatch(format!(
            "{src}: the tar stream that arrived has SHA-256 {sum}, the target sent {expected}; \
             nothing was unpacked"
        ))
        .into());
    }
    let name = super::operand::remote_basename(src).to_owned();
    let dest = dest.to_owned();
    let archive_path = archive.path().to_owned();
    tokio::task::spawn_blocking(move || unpack(&archive_path, &name, &dest)).await??;
    drop(archive);
    Ok(())
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

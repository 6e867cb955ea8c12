//! `rssm cp SOURCE… DEST`: files and directories to and from a target, as scp copies them, over
//! Session Manager alone (no sshd, no S3, no open port).
//!
//! Downloads run `tail | head` (a file, in byte ranges) or `tar` (a directory) in
//! non-interactive sessions, whose stdout arrives byte for byte; uploads go as base64 through
//! a PTY session, the only kind that passes input on ([`upload`]). Every file is checked end to
//! end: the side that receives computes the SHA-256 of what it wrote and compares it with the
//! sender's, and only a match gives the file its final name (a temporary name beside it until
//! then, with the mode bits of the source). `--sessions N` splits a large file into N parts,
//! each in a session of its own (each session has its own share of the service's message rate),
//! and retries a part once when its session is lost.
//!
//! Exit status: 0 when everything was copied, 1 when a file could not be (each says why on a
//! line of its own and the others still go), 255 when rssm itself failed (no session), 130 on
//! Ctrl-C, which ends the sessions and removes the temporary files on both sides.

mod download;
mod error;
mod frames;
mod operand;
mod progress;
mod remote;
mod session;
mod tree;
mod upload;

#[cfg(test)]
mod tests;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use crate::aws::Aws;
use crate::cli::CpArgs;
use crate::driver::DriverConfig;

use super::signals::Signals;
use super::EXIT_ERROR;
pub use error::CpError;
pub use operand::Operand;
use progress::Progress;
use remote::{Script, PART_ALIGN};
use session::Remote;

/// Exit status when a file could not be copied (scp's).
const EXIT_FAILED: u8 = 1;

/// Which way the copy goes.
#[derive(Debug)]
enum Plan {
    /// Local sources to a path on the target.
    Up { sources: Vec<PathBuf>, dest: String },
    /// Paths on the target to a local path.
    Down { sources: Vec<String>, dest: PathBuf },
}

/// Copies, and returns the exit status.
pub async fn run(aws: &Aws, args: &CpArgs, config: DriverConfig, quiet: bool) -> Result<u8> {
    let (plan, target) = plan(&args.paths)?;
    if let Err(e) = refuse_windows(aws, &target).await {
        eprintln!("rssm: cp: {e}");
        return Ok(EXIT_FAILED);
    }
    let remote = Remote::new(aws, config, &target, args.reason.clone());
    let mut signals = Signals::new()?;
    let work = copy_all(&remote, &plan, args, quiet);
    // The copy is dropped on a signal: its local temporary files go with it.
    let interrupted = tokio::select! {
        status = work => return Ok(status),
        signal = signals.recv() => signal,
    };
    eprintln!(
        "rssm: cp: interrupted ({}); nothing was written under a final name that was not \
         complete. Cleaning up (Ctrl-C again to skip)…",
        interrupted.name()
    );
    remote.terminate_all().await;
    tokio::select! {
        () = remote.remove_tmps() => {}
        _ = signals.recv() => {}
    }
    Ok(interrupted.exit_status())
}

/// Sorts the operands into a direction, with the one target they name.
fn plan(paths: &[Operand]) -> Result<(Plan, String)> {
    let (dest, sources) = paths.split_last().expect("clap requires two paths");
    let mut target = None;
    let mut written = None;
    for p in paths {
        if let Operand::Remote {
            target: t,
            written: w,
            ..
        } = p
        {
            match &written {
                None => {
                    target = Some(t.clone());
                    written = Some(w.clone());
                }
                Some(first) if first != w => {
                    bail!("cp copies to or from one target at a time, not {first} and {w}")
                }
                Some(_) => {}
            }
        }
    }
    let Some(target) = target else {
        bail!("neither side names a target: write TARGET:PATH for the remote side (web-1:/tmp/)")
    };
    let plan = match dest {
        Operand::Remote { path, .. } => Plan::Up {
            sources: sources
                .iter()
                .map(|s| match s {
                    Operand::Local(p) => Ok(p.clone()),
                    Operand::Remote { .. } => bail!(
                        "copying from a target to a target is not supported: copy through \
                         this machine"
                    ),
                })
                .collect::<Result<_>>()?,
            // Several sources need a directory: the trailing slash makes the target insist.
            dest: match remote_path(path) {
                p if sources.len() > 1 && !p.is_empty() && !p.ends_with('/') => format!("{p}/"),
                p => p,
            },
        },
        Operand::Local(d) => Plan::Down {
            sources: sources
                .iter()
                .map(|s| match s {
                    Operand::Remote { path, .. } if path.is_empty() => {
                        bail!("name a path on the target to copy (TARGET:PATH)")
                    }
                    Operand::Remote { path, .. } => Ok(remote_path(path)),
                    Operand::Local(p) => bail!(
                        "{} and the destination are both local: one side must be TARGET:PATH",
                        p.display()
                    ),
                })
                .collect::<Result<_>>()?,
            dest: d.clone(),
        },
    };
    Ok((plan, target))
}

/// A remote path as the scripts take it: relative to the home directory they start in (`~/x`
/// is `x`), and never mistaken for a tool's option (`-x` is `./-x`).
fn remote_path(path: &str) -> String {
    let p = match path {
        "~" => "",
        p => p.strip_prefix("~/").unwrap_or(p),
    };
    if p.starts_with('-') {
        format!("./{p}")
    } else {
        p.to_owned()
    }
}

/// Stops before any session when the target is known to run Windows.
async fn refuse_windows(aws: &Aws, target: &str) -> Result<(), CpError> {
    if let Ok(nodes) = crate::inventory::managed_nodes(aws, Some(target)).await {
        let windows = nodes
            .iter()
            .filter_map(|n| n.platform.as_deref())
            .any(|p| p.to_ascii_lowercase().contains("windows"));
        if windows {
            return Err(CpError::Unsupported(error::windows()));
        }
    }
    Ok(())
}

/// Copies every source; each failure is one line, and the others still go.
async fn copy_all(remote: &Remote, plan: &Plan, args: &CpArgs, quiet: bool) -> u8 {
    let mut status = 0;
    let mut fail = |what: &str, e: anyhow::Error| {
        let own = e.downcast_ref::<CpError>().is_some_and(|c| !c.is_lost());
        eprintln!("rssm: cp {what}: {e:#}");
        status = status.max(if own { EXIT_FAILED } else { EXIT_ERROR });
    };
    match plan {
        Plan::Up { sources, dest } => {
            for src in sources {
                if let Err(e) = put(remote, src, dest, args, quiet).await {
                    // Parts still under way when another failed were dropped: end their
                    // sessions on the service too.
                    remote.terminate_all().await;
                    fail(&src.display().to_string(), e);
                }
            }
        }
        Plan::Down { sources, dest } => {
            let several = sources.len() > 1;
            for src in sources {
                if let Err(e) = get(remote, src, dest, several, args, quiet).await {
                    remote.terminate_all().await;
                    fail(src, e);
                }
            }
        }
    }
    status
}

/// Uploads one local file or tree.
async fn put(remote: &Remote, src: &Path, dest: &str, args: &CpArgs, quiet: bool) -> Result<()> {
    let meta = std::fs::metadata(src).map_err(|e| CpError::local(src, &e))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .or_else(|| {
            std::fs::canonicalize(src)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "upload".into());
    let (local, kind, _archive) = if meta.is_dir() {
        if !args.recursive {
            return Err(CpError::IsDirectory(format!("{} (here)", src.display())).into());
        }
        let (s, n) = (src.to_owned(), name.clone());
        let archive = tokio::task::spawn_blocking(move || tree::archive(&s, &n))
            .await?
            .map_err(|e| CpError::local(src, &e))?;
        (archive.path().to_owned(), "t", Some(archive))
    } else if meta.is_file() {
        (src.to_owned(), "f", None)
    } else {
        return Err(CpError::Special(format!("{} (here)", src.display())).into());
    };
    let size = std::fs::metadata(&local)
        .map_err(|e| CpError::local(&local, &e))?
        .len();
    let l = local.clone();
    let sha256 = tokio::task::spawn_blocking(move || sha256_file(&l))
        .await?
        .map_err(|e| CpError::local(&local, &e))?;
    let up = upload::Upload {
        local,
        name: name.clone(),
        size,
        sha256,
        mode: format!("{:o}", meta.permissions().mode() & 0o777),
        kind,
    };
    let progress = Progress::new(&name, Some(size), quiet);
    let started = std::time::Instant::now();
    let result = upload::upload(remote, &up, dest, args.sessions, &progress).await;
    progress.finish();
    report(&name, &progress, started, result.is_ok());
    result
}

/// Downloads one remote file or tree.
async fn get(
    remote: &Remote,
    src: &str,
    dest: &Path,
    several: bool,
    args: &CpArgs,
    quiet: bool,
) -> Result<()> {
    let recursive = if args.recursive { "r" } else { "-" };
    let ran = remote
        .exec(Script::Probe, &[src, recursive], |_| Ok(()))
        .await?;
    if let Some(e) = ran.failure(src) {
        return Err(e.into());
    }
    let name = operand::remote_basename(src);
    let dest = if dest.is_dir() {
        dest.join(name)
    } else if several || dest.to_string_lossy().ends_with('/') {
        return Err(CpError::NoSuchFile(format!("directory {} (here)", dest.display())).into());
    } else {
        dest.to_owned()
    };
    if let Some(r) = ran.report("file") {
        let (Ok(size), sha256) = (r.arg(1).parse::<u64>(), r.arg(2).to_owned()) else {
            return Err(CpError::Protocol(format!("a bad probe report {r:?}")).into());
        };
        if dest.is_dir() {
            return Err(CpError::IsDirectory(format!("{} (here)", dest.display())).into());
        }
        if dest.exists() && !dest.is_file() {
            // A device or a FIFO: the copy would replace it, not write into it.
            return Err(CpError::Special(format!("{} (here)", dest.display())).into());
        }
        let file = download::RemoteFile {
            path: src.to_owned(),
            size,
            mode: u32::from_str_radix(r.arg(0), 8).ok(),
            sha256,
        };
        let progress = Progress::new(name, Some(size), quiet);
        let started = std::time::Instant::now();
        let result = download::file(remote, &file, &dest, args.sessions, &progress).await;
        progress.finish();
        report(name, &progress, started, result.is_ok());
        result
    } else if ran.report("dir").is_some() {
        let progress = Progress::new(name, None, quiet);
        let started = std::time::Instant::now();
        let result = download::tree(remote, src, &dest, args.sessions, &progress).await;
        progress.finish();
        report(name, &progress, started, result.is_ok());
        result
    } else {
        Err(CpError::Protocol(format!("the probe of {src} said nothing")).into())
    }
}

/// Says at `-v` how long a copy took and how fast its data moved.
fn report(name: &str, progress: &Progress, started: std::time::Instant, ok: bool) {
    if !ok {
        return;
    }
    let flow = progress.flow();
    let secs = flow.seconds();
    let rate = if secs > 0.0 {
        format!("{:.3} MB/s", flow.bytes as f64 / secs / 1e6)
    } else {
        "–".into()
    };
    tracing::info!(
        "copied {name}: {} bytes in {:.2} s; data moved for {secs:.2} s at {rate}",
        flow.bytes,
        started.elapsed().as_secs_f64()
    );
}

/// Splits `size` bytes into at most `sessions` parts that start at multiples of
/// [`PART_ALIGN`]; small files stay whole.
fn parts(size: u64, sessions: u8) -> Vec<(u64, u64)> {
    let most = (size / PART_ALIGN).max(1);
    let n = u64::from(sessions.max(1)).min(most);
    let each = size.div_ceil(n).div_ceil(PART_ALIGN) * PART_ALIGN;
    if n <= 1 || each == 0 {
        return vec![(0, size)];
    }
    (0..n)
        .map(|i| i * each)
        .take_while(|&start| start < size)
        .map(|start| (start, each.min(size - start)))
        .collect()
}

/// 16 random hex digits, for temporary names.
fn random_token() -> String {
    use rand_core::RngCore;
    format!("{:016x}", rand_core::OsRng.next_u64())
}

/// The SHA-256 of a local file, in hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

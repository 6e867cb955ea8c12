//! `rssm install-plugin`: makes rssm the `session-manager-plugin` the AWS CLI runs, by creating
//! a symbolic link to the rssm binary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Creates `DIR/<name>` → the running rssm binary; returns the exit status.
pub fn run(dir: Option<&Path>, force: bool, name: &str) -> Result<u8> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the rssm binary")?;
    let dir: PathBuf = match dir {
        Some(d) => d.to_path_buf(),
        None => exe
            .parent()
            .context("the rssm binary has no parent directory")?
            .to_path_buf(),
    };
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let link = dir.join(name);
    match std::fs::symlink_metadata(&link) {
        Ok(_) if link.canonicalize().ok().as_deref() == Some(exe.as_path()) => {
            eprintln!("{} already points to {}", link.display(), exe.display());
            return Ok(0);
        }
        Ok(_) if !force => bail!(
            "{} exists (the official plugin?): pass --force to replace it",
            link.display()
        ),
        Ok(_) => std::fs::remove_file(&link)
            .with_context(|| format!("cannot replace {}", link.display()))?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&exe, &link)
        .with_context(|| format!("cannot create {}", link.display()))?;
    eprintln!("{} -> {}", link.display(), exe.display());
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).any(|d| d.canonicalize().ok() == dir.canonicalize().ok())
        })
        .unwrap_or(false);
    if !on_path {
        eprintln!(
            "note: {} is not on PATH; the AWS CLI will not find the plugin there",
            dir.display()
        );
    }
    Ok(0)
}

//! A local directory as one tar archive for upload: symbolic links stay links, empty
//! directories stay, modes and times go along; owners do not (the target unpacks as its user).

use std::path::Path;

/// Writes `src` into a temporary tar archive whose top entry is `name`.
pub fn archive(src: &Path, name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let tmp = tempfile::Builder::new()
        .prefix("rssm-cp-")
        .suffix(".tar")
        .tempfile()?;
    let mut builder = tar::Builder::new(tmp.as_file());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder.append_dir_all(name, src)?;
    builder.into_inner()?.sync_all()?;
    Ok(tmp)
}

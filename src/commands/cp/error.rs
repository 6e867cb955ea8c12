//! Why a copy failed, as one line the user can act on.

use std::fmt;

use super::remote::Report;

/// A failed copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpError {
    /// A tool the remote script needs is not installed there.
    MissingTool(String),
    /// No such file or directory (which path, and on which side).
    NoSuchFile(String),
    /// Permission denied.
    PermissionDenied(String),
    /// The disk is full.
    DiskFull(String),
    /// A directory where a file was expected, or `-r` missing.
    IsDirectory(String),
    /// Not a regular file or directory (a device, a socket, a FIFO).
    Special(String),
    /// What arrived is not what was sent.
    Mismatch(String),
    /// A remote tool failed with this message.
    Remote(String),
    /// The session was lost (and its retry too, where there is one).
    Lost(String),
    /// The target cannot run the scripts.
    Unsupported(String),
    /// A script said something it should not have.
    Protocol(String),
}

impl CpError {
    /// The error a script's report stands for, if it is one. `path` names the file the report
    /// is about when the report does not.
    pub fn from_report(r: &Report, path: &str) -> Option<CpError> {
        let what = if r.rest().is_empty() {
            path.to_owned()
        } else {
            r.rest()
        };
        Some(match r.kind() {
            "missing" => CpError::MissingTool(r.arg(0).to_owned()),
            "nofile" => CpError::NoSuchFile(format!("{what} on the target")),
            "nodir" => CpError::NoSuchFile(format!("directory {what} on the target")),
            "denied" => CpError::PermissionDenied(format!("{what} on the target")),
            "isdir" => CpError::IsDirectory(format!("{what} on the target")),
            "special" => CpError::Special(format!("{what} on the target")),
            "full" => CpError::DiskFull(format!("on the target ({what})")),
            "mismatch" => CpError::Mismatch(format!(
                "{path}: the target received {} bytes with SHA-256 {}, which is not what was sent; \
                 nothing was written under the final name",
                r.arg(0),
                r.arg(1)
            )),
            _ => return None,
        })
    }

    /// The error for a remote tool that failed with `message` (its last line on stderr) and
    /// exit status `code`.
    pub fn from_message(path: &str, message: Option<String>, code: i32) -> CpError {
        let Some(m) = message else {
            return CpError::Remote(format!(
                "{path}: the remote command failed with status {code}"
            ));
        };
        let lower = m.to_ascii_lowercase();
        if lower.contains("no space left") || lower.contains("disk quota") {
            CpError::DiskFull(format!("on the target: {m}"))
        } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
            CpError::PermissionDenied(format!("on the target: {m}"))
        } else if lower.contains("no such file") {
            CpError::NoSuchFile(format!("on the target: {m}"))
        } else if lower.contains("not recognized as") || lower.contains("is not recognized") {
            CpError::Unsupported(windows())
        } else {
            CpError::Remote(m)
        }
    }

    /// The error for a local I/O failure on `path`.
    pub fn local(path: &std::path::Path, e: &std::io::Error) -> CpError {
        let p = path.display();
        match e.kind() {
            std::io::ErrorKind::NotFound => CpError::NoSuchFile(format!("{p} (here)")),
            std::io::ErrorKind::PermissionDenied => {
                CpError::PermissionDenied(format!("{p} (here)"))
            }
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                CpError::DiskFull(format!("writing {p} (here)"))
            }
            std::io::ErrorKind::IsADirectory => CpError::IsDirectory(format!("{p} (here)")),
            _ => CpError::Remote(format!("{p}: {e}")),
        }
    }

    /// Whether a fresh session may succeed where this one failed.
    pub fn is_lost(&self) -> bool {
        matches!(self, CpError::Lost(_))
    }
}

/// What to say about a Windows target.
pub fn windows() -> String {
    "the target runs Windows: rssm cp supports Linux and macOS targets only, for now".into()
}

impl fmt::Display for CpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpError::MissingTool(t) => write!(
                f,
                "the target has no `{t}`, which rssm cp needs there: install it (coreutils) or \
                 add it to the PATH of the session's user"
            ),
            CpError::NoSuchFile(w) => write!(f, "no such file or directory: {w}"),
            CpError::PermissionDenied(w) => write!(f, "permission denied: {w}"),
            CpError::DiskFull(w) => write!(f, "no space left on the device {w}"),
            CpError::IsDirectory(w) => write!(f, "{w} is a directory (copy directories with -r)"),
            CpError::Special(w) => write!(f, "{w} is not a regular file or a directory"),
            CpError::Mismatch(w) => write!(f, "integrity check failed: {w}"),
            CpError::Remote(m) => write!(f, "on the target: {m}"),
            CpError::Lost(why) => write!(f, "the session was lost: {why}"),
            CpError::Unsupported(why) => write!(f, "{why}"),
            CpError::Protocol(why) => write!(f, "the remote script misbehaved: {why}"),
        }
    }
}

impl std::error::Error for CpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_messages_become_the_matching_error() {
        let m = |s: &str| CpError::from_message("/x", Some(s.into()), 1);
        assert!(matches!(
            m("base64: write error: No space left on device"),
            CpError::DiskFull(_)
        ));
        assert!(matches!(
            m("tail: cannot open '/root/x' for reading: Permission denied"),
            CpError::PermissionDenied(_)
        ));
        assert!(matches!(
            m("tail: cannot open 'x': No such file or directory"),
            CpError::NoSuchFile(_)
        ));
        assert!(matches!(
            m("'sh' is not recognized as an internal or external command"),
            CpError::Unsupported(_)
        ));
        assert!(matches!(m("tar: something odd"), CpError::Remote(_)));
        assert!(matches!(
            CpError::from_message("/x", None, 2),
            CpError::Remote(_)
        ));
    }

    #[test]
    fn reports_name_the_path_and_the_tool() {
        let r = |w: &[&str]| Report(w.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            CpError::from_report(&r(&["missing", "base64"]), "/x"),
            Some(CpError::MissingTool("base64".into()))
        );
        let e = CpError::from_report(&r(&["nofile", "/tmp/a", "b"]), "/x").unwrap();
        assert_eq!(
            e.to_string(),
            "no such file or directory: /tmp/a b on the target"
        );
        assert!(CpError::from_report(&r(&["ready"]), "/x").is_none());
        assert!(CpError::from_report(&r(&["missing", "stty"]), "/x")
            .unwrap()
            .to_string()
            .contains("`stty`"));
    }
}

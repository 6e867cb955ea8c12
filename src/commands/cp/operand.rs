//! `rssm cp`'s operands: `TARGET:PATH` on a target, anything else a local path (scp's rule: a
//! colon before any slash makes it remote).

use std::path::PathBuf;

/// One SOURCE or DEST of `rssm cp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A path here.
    Local(PathBuf),
    /// A path on a target.
    Remote {
        /// The target as given (an alias, a Name tag, an id…); replaced by its instance id
        /// once resolved.
        target: String,
        /// The target as the user wrote it, to check that all remote operands name one target.
        written: String,
        /// The path there; empty for the remote user's home directory.
        path: String,
    },
}

impl std::str::FromStr for Operand {
    type Err = String;

    fn from_str(s: &str) -> Result<Operand, String> {
        if s.is_empty() {
            return Err("an empty path".into());
        }
        // Target forms that hold a colon themselves: `ecs:CLUSTER_TASK_RUNTIMEID`, `tag:K=V`.
        let skip = ["ecs:", "tag:"]
            .iter()
            .find(|p| s.starts_with(*p))
            .map_or(0, |p| p.len());
        let colon = s[skip..].find(':').map(|i| i + skip);
        // (`ecs:CLUSTER/TASK:PATH`: the target forms with a prefix may hold slashes.)
        let slash = s.find('/').filter(|_| skip == 0);
        match colon {
            Some(c) if slash.is_none_or(|sl| c < sl) && c > 0 => {
                let target = &s[..c];
                Ok(Operand::Remote {
                    target: target.to_owned(),
                    written: target.to_owned(),
                    path: s[c + 1..].to_owned(),
                })
            }
            _ => Ok(Operand::Local(PathBuf::from(s))),
        }
    }
}

impl Operand {
    /// Whether this names a path on a target.
    pub fn is_remote(&self) -> bool {
        matches!(self, Operand::Remote { .. })
    }
}

/// The last name of a remote path (`/etc/nginx/` → `nginx`), as `basename` gives it.
pub fn remote_basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(target: &str, path: &str) -> Operand {
        Operand::Remote {
            target: target.into(),
            written: target.into(),
            path: path.into(),
        }
    }

    #[test]
    fn a_colon_before_any_slash_makes_a_remote_path() {
        let p = |s: &str| s.parse::<Operand>().unwrap();
        assert_eq!(p("web-1:/tmp/"), remote("web-1", "/tmp/"));
        assert_eq!(
            p("i-0123456789abcdef0:x y"),
            remote("i-0123456789abcdef0", "x y")
        );
        assert_eq!(p("web-1:"), remote("web-1", ""));
        assert_eq!(p("./a:b"), Operand::Local("./a:b".into()));
        assert_eq!(p("/tmp/a:b"), Operand::Local("/tmp/a:b".into()));
        assert_eq!(p("build.tar.gz"), Operand::Local("build.tar.gz".into()));
        assert_eq!(p(":x"), Operand::Local(":x".into()));
        assert_eq!(p("ecs:c_t_r:/app/log"), remote("ecs:c_t_r", "/app/log"));
        assert_eq!(p("tag:Role=web:/srv"), remote("tag:Role=web", "/srv"));
        assert_eq!(
            p("ecs:web/0123abcd:/app"),
            remote("ecs:web/0123abcd", "/app")
        );
        assert_eq!(
            p("ecs:web/0123abcd/app:x"),
            remote("ecs:web/0123abcd/app", "x")
        );
        assert!("".parse::<Operand>().is_err());
    }

    #[test]
    fn basenames_ignore_trailing_slashes() {
        assert_eq!(remote_basename("/etc/nginx/"), "nginx");
        assert_eq!(remote_basename("app.log"), "app.log");
        assert_eq!(remote_basename("/a/b"), "b");
    }
}

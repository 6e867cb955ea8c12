//! The config file: defaults, host aliases and named forwards.
//!
//! ```toml
//! [defaults]
//! profile = "prod"
//! region  = "eu-west-1"
//!
//! [hosts.db-bastion]
//! target = "tag:Role=bastion"
//!
//! [forwards.pg]
//! via    = "db-bastion"
//! listen = "127.0.0.1:5432"
//! to     = "prod-db.cluster-abc.eu-west-1.rds.amazonaws.com:5432"
//! sessions = 2
//! ```
//!
//! It lives in the platform's config directory (`$XDG_CONFIG_HOME/rssm/config.toml`, else
//! `~/.config/rssm/config.toml` on Linux; `~/Library/Application Support/rssm/config.toml` on
//! macOS; `%APPDATA%\rssm\config.toml` on Windows), or wherever `--config FILE` / `RSSM_CONFIG`
//! says. No file is no settings; a file rssm cannot read or understand stops every command with
//! one line naming the file, the line and the key, as a bad `~/.ssh/config` stops ssh.
//!
//! Precedence: command-line flags, then a host alias's own `profile`/`region`, then the
//! environment (`AWS_PROFILE`, `AWS_REGION`, the proxy variables), then `[defaults]`.

mod apply;

pub use apply::{env_is_set, Flags, Resolved};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::commands::forward::spec::{parse_listen, ForwardSpec};
use crate::targets;

/// Environment variable naming the config file (as `--config` does).
pub const FILE_ENV: &str = "RSSM_CONFIG";
/// Most sessions behind one forward's listener (as `forward --sessions`).
const MAX_SESSIONS: i64 = 16;

/// The settings of one config file (or none).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file they came from; `None` when there was none.
    pub path: Option<PathBuf>,
    /// `[defaults]`.
    pub defaults: Defaults,
    /// `[hosts.NAME]`, by name.
    pub hosts: BTreeMap<String, Host>,
    /// `[forwards.NAME]`, by name.
    pub forwards: BTreeMap<String, Forward>,
}

/// `[defaults]`: used where neither a flag nor the environment says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// AWS named profile.
    pub profile: Option<String>,
    /// AWS region.
    pub region: Option<String>,
    /// HTTP proxy URL, as `--proxy`.
    pub proxy: Option<String>,
}

/// `[hosts.NAME]`: a name that stands for a TARGET wherever one is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Any TARGET form: id, Name tag, `tag:KEY=VALUE`, private IP or DNS name.
    pub target: String,
    /// Profile for this host (beats the environment and `[defaults]`, not `--profile`).
    pub profile: Option<String>,
    /// Region for this host, likewise.
    pub region: Option<String>,
}

/// `[forwards.NAME]`: a forward `rssm up` brings up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// A host alias or a TARGET.
    pub via: String,
    /// Where to listen and where to connect from the target.
    pub spec: ForwardSpec,
    /// Sessions behind the listener.
    pub sessions: u16,
}

/// Where rssm looks for its config file: `flag`, else `RSSM_CONFIG`, else the platform's config
/// directory. `None` when the platform has none (no home directory).
pub fn path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_owned());
    }
    if let Some(p) = std::env::var_os(FILE_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Some(dirs::config_dir()?.join("rssm").join("config.toml"))
}

impl Config {
    /// Loads the config file: `flag` or `RSSM_CONFIG` must exist; the default one may not.
    pub fn load(flag: Option<&Path>) -> Result<Config> {
        let named = flag.is_some() || std::env::var_os(FILE_ENV).is_some_and(|p| !p.is_empty());
        let Some(path) = path(flag) else {
            return Ok(Config::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => Ok(Config::default()),
            Err(e) => Err(anyhow!(
                "cannot read the config file {}: {e}",
                path.display()
            )),
        }
    }

    /// Parses and checks `text`, read from `path` (which errors name).
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let at = Locator { path, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
        let mut config = Config {
            path: Some(path.to_owned()),
            defaults: Defaults {
                profile: at.nonempty("defaults.profile", raw.defaults.profile)?,
                region: at.region("defaults.region", raw.defaults.region)?,
                proxy: at.proxy("defaults.proxy", raw.defaults.proxy)?,
            },
            ..Config::default()
        };
        for (name, host) in raw.hosts {
            let key = format!("hosts.{name}");
            at.check_name(&key, &name, host.span())?;
            let host = host.into_inner();
            let target = at.target(&format!("{key}.target"), host.target)?;
            config.hosts.insert(
                name,
                Host {
                    target,
                    profile: at.nonempty(&format!("{key}.profile"), host.profile)?,
                    region: at.region(&format!("{key}.region"), host.region)?,
                },
            );
        }
        let mut bound: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (name, forward) in raw.forwards {
            let key = format!("forwards.{name}");
            at.check_name(&key, &name, forward.span())?;
            let forward = forward.into_inner();
            let via = forward.via.get_ref().trim().to_owned();
            if !config.hosts.contains_key(&via) {
                at.target(&format!("{key}.via"), forward.via.clone())?;
            }
            let spec = at.spec(&key, &forward.listen, &forward.to)?;
            let addr = spec.bind_addr();
            if addr.port() != 0 {
                if let Some(other) = bound.insert(addr, name.clone()) {
                    return Err(at.error(
                        forward.listen.span(),
                        &format!("{key}.listen"),
                        &format!("{addr} is also forwards.{other}.listen"),
                    ));
                }
            }
            let sessions = match forward.sessions {
                None => 1,
                Some(n) => match *n.get_ref() {
                    v @ 1..=MAX_SESSIONS => v as u16,
                    v => {
                        return Err(at.error(
                            n.span(),
                            &format!("{key}.sessions"),
                            &format!("{v} is not 1-{MAX_SESSIONS}"),
                        ))
                    }
                },
            };
            config.forwards.insert(
                name,
                Forward {
                    via,
                    spec,
                    sessions,
                },
            );
        }
        Ok(config)
    }

    /// The alias `name` stands for, if it is one.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// Where the settings came from, for messages.
    pub fn shown_path(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the config file".into())
    }
}

/// The file as written; every key but these is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    hosts: BTreeMap<String, Spanned<RawHost>>,
    #[serde(default)]
    forwards: BTreeMap<String, Spanned<RawForward>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    profile: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    target: Spanned<String>,
    profile: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    via: Spanned<String>,
    listen: Spanned<PortOr>,
    to: Spanned<PortOr>,
    sessions: Option<Spanned<i64>>,
}

/// `5432` or `"127.0.0.1:5432"`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum PortOr {
    Port(i64),
    Text(String),
}

impl PortOr {
    fn text(&self) -> String {
        match self {
            PortOr::Port(p) => p.to_string(),
            PortOr::Text(t) => t.trim().to_owned(),
        }
    }
}

/// Turns byte offsets into `FILE:LINE: KEY: message` errors.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: Range<usize>, key: &str, message: &str) -> anyhow::Error {
        let line = self.line_of(span.start);
        anyhow!("{}:{line}: {key}: {message}", self.path.display())
    }

    /// A parse or schema error from the TOML reader, with the table it is in as the key.
    fn toml_error(&self, e: &toml::de::Error) -> anyhow::Error {
        let message = e.message().trim().replace('\n', " ");
        let Some(span) = e.span() else {
            return anyhow!("{}: {message}", self.path.display());
        };
        // The table header above the error, or on its line (a missing key points at the header).
        let start = span.start.min(self.text.len());
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let table = self.text[..line_end]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && l.ends_with(']'))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        let line = self.line_of(span.start);
        match table {
            Some(table) => anyhow!("{}:{line}: {table}: {message}", self.path.display()),
            None => anyhow!("{}:{line}: {message}", self.path.display()),
        }
    }

    fn nonempty(&self, key: &str, value: Option<Spanned<String>>) -> Result<Option<String>> {
        let Some(value) = value else { return Ok(None) };
        let text = value.get_ref().trim();
        if text.is_empty() || text.chars().any(char::is_control) {
            return Err(self.error(value.span(), key, "must be a non-empty name"));
        }
        Ok(Some(text.to_owned()))
    }

    /// `eu-west-1`, `us-gov-west-1`, `cn-north-1`: lowercase words and a number.
    fn region(&self, key: &str, value: Option<Spanned<String>>) -> Result<Option<String>> {
        let Some(value) = value else { return Ok(None) };
        let text = value.get_ref().trim();
        let parts: Vec<&str> = text.split('-').collect();
        let words = &parts[..parts.len().saturating_sub(1)];
        let ok = parts.len() >= 3
            && words
                .iter()
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
            && parts
                .last()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(self.error(
                value.span(),
                key,
                &format!("{text:?} is not an AWS region (e.g. eu-west-1)"),
            ));
        }
        Ok(Some(text.to_owned()))
    }

    fn proxy(&self, key: &str, value: Option<Spanned<String>>) -> Result<Option<String>> {
        let Some(value) = value else { return Ok(None) };
        let text = value.get_ref().trim().to_owned();
        if let Err(e) = crate::http_proxy::ProxyRules::flag(&text, None) {
            // The rules' message starts with `--proxy`; here the key says which setting.
            let message = e.to_string();
            let message = message.strip_prefix("--proxy").unwrap_or(&message);
            let message = message.trim_start_matches([':', ' ']);
            return Err(self.error(value.span(), key, message));
        }
        Ok(Some(text))
    }

    fn target(&self, key: &str, value: Spanned<String>) -> Result<String> {
        let text = value.get_ref().trim();
        targets::parse(text).map_err(|e| self.error(value.span(), key, &e.to_string()))?;
        Ok(text.to_owned())
    }

    /// Host and forward names: what a TARGET or a command-line word can be.
    fn check_name(&self, key: &str, name: &str, span: Range<usize>) -> Result<()> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(self.error(
                span,
                key,
                "names are letters, digits, '-', '_' and '.' only",
            ));
        }
        if targets::is_instance_id(name) {
            return Err(self.error(
                span,
                key,
                "an instance id cannot be an alias (it would hide the instance)",
            ));
        }
        Ok(())
    }

    /// `listen` (`[BIND:]PORT`) and `to` (`HOST:PORT`, or `PORT` on the target itself).
    fn spec(
        &self,
        key: &str,
        listen: &Spanned<PortOr>,
        to: &Spanned<PortOr>,
    ) -> Result<ForwardSpec> {
        let addr = parse_listen(&listen.get_ref().text())
            .map_err(|e| self.error(listen.span(), &format!("{key}.listen"), &e.to_string()))?;
        let to_text = to.get_ref().text();
        let remote = if to_text.bytes().all(|b| b.is_ascii_digit()) {
            format!("localhost:{to_text}")
        } else {
            to_text.clone()
        };
        let bind = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        ForwardSpec::parse(&format!("{bind}:{}:{remote}", addr.port())).map_err(|e| {
            let message = e.to_string();
            // The -L parser names the whole spec; here only `to` can be wrong.
            let message = match message.split_once(": ") {
                Some((_, rest)) if rest.contains("HOST") || rest.contains("RPORT") => {
                    format!("{to_text:?}: expected HOST:PORT or PORT ({rest})")
                }
                _ => format!("{to_text:?}: expected HOST:PORT or PORT"),
            };
            self.error(to.span(), &format!("{key}.to"), &message)
        })
    }
}

/// Fails unless `name` is a forward in `config`, naming the ones there are.
pub fn forward<'c>(config: &'c Config, name: &str) -> Result<&'c Forward> {
    config.forwards.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.forwards.keys().map(String::as_str).collect();
        if known.is_empty() {
            anyhow!(
                "no forward named {name:?}: {} has no [forwards.NAME] tables",
                config.shown_path()
            )
        } else {
            anyhow!(
                "no forward named {name:?} in {} (there are: {})",
                config.shown_path(),
                known.join(", ")
            )
        }
    })
}

/// Fails when the file has no forwards at all (for `rssm up` with no names).
pub fn require_forwards(config: &Config) -> Result<()> {
    if config.forwards.is_empty() {
        match &config.path {
            Some(p) => bail!(
                "{} has no [forwards.NAME] tables to bring up (see `rssm help config`)",
                p.display()
            ),
            None => bail!(
                "no config file{}: create one with [forwards.NAME] tables (see `rssm help config`)",
                path(None)
                    .map(|p| format!(" at {}", p.display()))
                    .unwrap_or_default()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! One file per subcommand. Each reads like the user's story: resolve the target, start the
//! session, run it, turn the outcome into an exit code.

pub mod config;
pub mod cp;
pub mod demo;
pub mod doctor;
pub mod escape;
pub mod exec;
pub mod forward;
pub mod help;
pub mod install_plugin;
pub mod list;
pub mod plugin;
pub mod proxy;
pub mod shell;
pub mod signals;
pub mod socks;
pub mod ssh;
pub mod ssh_config;
pub mod trace;
pub mod up;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use rssm_protocol::SessionConfig;

use crate::aws::{Aws, StartedSession};
use crate::cli::SessionArgs;
use crate::driver::{self, DriverConfig, DriverHandle};
use crate::transport::{self, ChannelAuth};

/// Exit status for failures of rssm itself (not of the remote command), as ssh uses.
pub const EXIT_ERROR: u8 = 255;

/// A started session with its driver running.
pub struct Connected {
    /// The API client, kept for TerminateSession.
    pub aws: Aws,
    /// What StartSession returned.
    pub started: StartedSession,
    /// The running session.
    pub handle: DriverHandle,
}

impl Connected {
    /// Ends the session on the service side too, within
    /// [`crate::aws::TERMINATE_BUDGET`]; called on every exit.
    pub async fn terminate(&self) {
        self.aws.terminate_session(&self.started.session_id).await;
    }
}

/// Quotes `s` as one POSIX shell word (and one shlex word, as the agent splits a command line).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Checks that `target` is something StartSession accepts by id.
pub fn check_target(target: &str) -> Result<()> {
    let ok = |prefix: &str| {
        target
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if ok("i-") || ok("mi-") || target.starts_with("ecs:") {
        Ok(())
    } else {
        bail!("{target:?} is not an instance id (i-…) or managed node id (mi-…)")
    }
}

/// Parses `--parameters` values: JSON objects of string lists (the AWS CLI's form) or
/// `key=value[,key=value…]`; later values extend earlier ones.
pub fn parse_parameters(values: &[String]) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for v in values {
        let v = v.trim();
        if v.starts_with('{') {
            let map: HashMap<String, serde_json::Value> = serde_json::from_str(v)
                .with_context(|| format!("--parameters {v}: not a JSON object"))?;
            for (k, val) in map {
                let list = match val {
                    serde_json::Value::String(s) => vec![s],
                    serde_json::Value::Array(items) => items
                        .into_iter()
                        .map(|i| match i {
                            serde_json::Value::String(s) => Ok(s),
                            other => Ok(other.to_string()),
                        })
                        .collect::<Result<Vec<_>>>()?,
                    other => vec![other.to_string()],
                };
                out.entry(k).or_default().extend(list);
            }
        } else {
            for pair in v.split(',').filter(|p| !p.is_empty()) {
                let (k, val) = pair
                    .split_once('=')
                    .with_context(|| format!("--parameters {pair:?}: expected key=value"))?;
                out.entry(k.trim().to_owned())
                    .or_default()
                    .push(val.to_owned());
            }
        }
    }
    Ok(out)
}

/// StartSession with the command's default document (unless overridden), then opens the data
/// channel and starts the driver. `extra` parameters come first; `--parameters` may override.
pub async fn connect(
    aws: &Aws,
    config: DriverConfig,
    target: &str,
    default_document: Option<&str>,
    extra: HashMap<String, Vec<String>>,
    args: &SessionArgs,
) -> Result<Connected> {
    check_target(target)?;
    let mut parameters = extra;
    parameters.extend(parse_parameters(&args.parameters)?);
    let document = args.document.as_deref().or(default_document);
    let started = aws
        .start_session(target, document, parameters, args.reason.as_deref())
        .await?;
    tracing::info!(session = %started.session_id, "session started");
    let result = open_channel(aws, config, target, &started).await;
    match result {
        Ok(handle) => Ok(Connected {
            aws: aws.clone(),
            started,
            handle,
        }),
        Err(e) => {
            // Do not leave a half-open session behind (the official plugin would hang here).
            aws.terminate_session(&started.session_id).await;
            Err(e)
        }
    }
}

/// Opens the data channel of a started session and starts its driver.
pub async fn open_channel(
    aws: &Aws,
    config: DriverConfig,
    target: &str,
    started: &StartedSession,
) -> Result<DriverHandle> {
    transport::check_stream_url(&started.stream_url)?;
    let auth = ChannelAuth {
        stream_url: started.stream_url.clone(),
        token: started.token.clone(),
        client_id: uuid::Uuid::new_v4().to_string(),
        credentials: Some(aws.current_credentials().await?),
        region: aws.region(),
        proxy: aws.proxy().clone(),
    };
    let context = driver::DriverContext {
        aws: aws.clone(),
        session_id: started.session_id.clone(),
    };
    let session = SessionConfig::client(&started.session_id, target);
    driver::start(auth, session, config, Some(context)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_accept_json_and_key_value_forms() {
        let p = parse_parameters(&[
            r#"{"portNumber":["22"],"host":"db"}"#.into(),
            "localPortNumber=0,x=1".into(),
        ])
        .unwrap();
        assert_eq!(p["portNumber"], vec!["22"]);
        assert_eq!(p["host"], vec!["db"]);
        assert_eq!(p["localPortNumber"], vec!["0"]);
        assert!(parse_parameters(&["novalue".into()]).is_err());
        assert!(parse_parameters(&["{bad".into()]).is_err());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("echo it's"), "'echo it'\\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn targets_must_be_ids() {
        assert!(check_target("i-0123456789abcdef0").is_ok());
        assert!(check_target("mi-0123456789abcdef0").is_ok());
        assert!(check_target("web-1").is_err());
        assert!(check_target("i-").is_err());
        assert!(check_target("i-xyz").is_err());
    }
}

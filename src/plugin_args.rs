//! The `session-manager-plugin` command-line contract (PROTOCOL.md §11): what the AWS CLI passes
//! when it runs the plugin, parsed into what rssm needs.

use anyhow::{bail, Context, Result};

/// The env var the AWS CLI uses for the StartSession response (newer CLIs pass its *name*).
pub const RESPONSE_ENV_PREFIX: &str = "AWS_SSM_START_SESSION_RESPONSE";

/// What the plugin was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum PluginCall {
    /// No arguments: the CLI's (and users') installation check.
    InstallCheck,
    /// `--version`.
    Version,
    /// Two or three arguments that are not `--version`.
    UnknownOperation(String),
    /// Start a session from a StartSession (or ECS ExecuteCommand) response.
    Start(PluginStart),
}

/// A session handed over by the AWS CLI.
#[derive(PartialEq, Eq)]
pub struct PluginStart {
    /// Session id.
    pub session_id: String,
    /// Secret token for OpenDataChannel.
    pub token: String,
    /// Data-channel websocket URL.
    pub stream_url: String,
    /// Region of the API calls.
    pub region: Option<String>,
    /// Profile, empty = default chain.
    pub profile: Option<String>,
    /// `Target` from the request JSON (KMS encryption context, messages).
    pub target: Option<String>,
    /// Endpoint of the SSM (or, for ECS, the ECS) client that started the session.
    pub endpoint_url: Option<String>,
    /// Whether the response (and so the token) came as an argument rather than through the
    /// environment: ECS exec always, start-session with old plugin versions.
    pub token_in_argv: bool,
}

impl std::fmt::Debug for PluginStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginStart")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .field(
                "stream_url",
                &crate::transport::redact_url(&self.stream_url),
            )
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("target", &self.target)
            .field("endpoint_url", &self.endpoint_url)
            .field("token_in_argv", &self.token_in_argv)
            .finish()
    }
}

/// When `args` name a StartSession response variable: its name and value, taken out of the
/// environment (the value holds the session token; no child process may inherit it). Call it
/// before other threads run: they may read the environment.
pub fn take_response_env(args: &[String]) -> Option<(String, Option<String>)> {
    let name = args
        .first()
        .filter(|a| a.starts_with(RESPONSE_ENV_PREFIX))?;
    // A name the environment cannot hold ('=' or NUL in it) names no variable; removing it
    // would panic.
    if name.contains(['=', '\0']) {
        return Some((name.clone(), None));
    }
    let value = std::env::var(name).ok();
    std::env::remove_var(name);
    Some((name.clone(), value))
}

/// Parses the plugin's arguments (without argv[0]). `env` looks up the response variable (see
/// [`take_response_env`]).
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<PluginCall> {
    match args {
        [] => return Ok(PluginCall::InstallCheck),
        [v] if v == "--version" => return Ok(PluginCall::Version),
        [first] | [first, _] => return Ok(PluginCall::UnknownOperation(first.clone())),
        _ => {}
    }
    let response_arg = &args[0];
    let token_in_argv = !response_arg.starts_with(RESPONSE_ENV_PREFIX);
    let response = if !token_in_argv {
        env(response_arg).with_context(|| {
            format!("the StartSession response variable {response_arg} is not set")
        })?
    } else {
        response_arg.clone()
    };
    let value: serde_json::Value =
        serde_json::from_str(&response).context("the StartSession response is not valid JSON")?;
    let field = |name: &str| -> Result<String> {
        // SSM sends SessionId/TokenValue/StreamUrl, ECS sessionId/tokenValue/streamUrl: match
        // keys case-insensitively, as Go's encoding/json does.
        value
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("the StartSession response has no {name}"))
    };
    let (session_id, token, stream_url) = (
        field("SessionId")?,
        field("TokenValue")?,
        field("StreamUrl")?,
    );
    let operation = args.get(2).map(String::as_str).unwrap_or("");
    if operation != "StartSession" {
        bail!("Invalid Operation {operation:?}: only StartSession is supported");
    }
    let non_empty = |i: usize| args.get(i).filter(|s| !s.is_empty()).cloned();
    let target = match args.get(4) {
        Some(json) if !json.is_empty() => {
            let req: serde_json::Value =
                serde_json::from_str(json).context("the StartSession request is not valid JSON")?;
            req.as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Target")))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_owned)
        }
        _ => None,
    };
    Ok(PluginCall::Start(PluginStart {
        session_id,
        token,
        stream_url,
        region: non_empty(1),
        profile: non_empty(3),
        target,
        endpoint_url: non_empty(5),
        token_in_argv,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_argv_is_parsed_or_refused_in_one_line(
            args in proptest::collection::vec("(?s).*", 0..9),
            env_value in proptest::option::of("(?s).*"),
        ) {
            if let Err(e) = parse(&args, |_| env_value.clone()) {
                let line = format!("{e:#}");
                proptest::prop_assert!(!line.contains('\n'), "{line}");
            }
        }

        #[test]
        fn any_response_json_is_parsed_or_refused_in_one_line(json in "(?s).*") {
            let args: Vec<String> =
                vec![json, "us-east-1".into(), "StartSession".into(), String::new()];
            if let Err(e) = parse(&args, |_| None) {
                let line = format!("{e:#}");
                proptest::prop_assert!(!line.contains('\n'), "{line}");
            }
        }
    }

    #[test]
    fn a_response_variable_name_the_environment_cannot_hold_names_nothing() {
        // Found by the plugin_args fuzz target: std::env::remove_var panics on such a name.
        for name in [
            "AWS_SSM_START_SESSION_RESPONSE=x",
            "AWS_SSM_START_SESSION_RESPONSE\0",
        ] {
            let taken = take_response_env(&[name.to_owned()]);
            assert_eq!(taken, Some((name.to_owned(), None)));
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const SSM: &str = r#"{"SessionId": "u-1", "TokenValue": "tok", "StreamUrl": "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/u-1?role=publish_subscribe"}"#;

    #[test]
    fn the_special_forms() {
        assert_eq!(parse(&[], |_| None).unwrap(), PluginCall::InstallCheck);
        assert_eq!(
            parse(&s(&["--version"]), |_| None).unwrap(),
            PluginCall::Version
        );
        assert_eq!(
            parse(&s(&["foo", "bar"]), |_| None).unwrap(),
            PluginCall::UnknownOperation("foo".into())
        );
    }

    #[test]
    fn the_modern_cli_passes_an_env_var_name() {
        let args = s(&[
            "AWS_SSM_START_SESSION_RESPONSE",
            "us-east-1",
            "StartSession",
            "",
            r#"{"Target": "i-0123", "DocumentName": "AWS-StartSSHSession"}"#,
            "https://ssm.us-east-1.amazonaws.com",
        ]);
        let PluginCall::Start(p) = parse(&args, |k| {
            (k == "AWS_SSM_START_SESSION_RESPONSE").then(|| SSM.to_owned())
        })
        .unwrap() else {
            panic!()
        };
        assert_eq!(p.session_id, "u-1");
        assert_eq!(p.token, "tok");
        assert_eq!(p.region.as_deref(), Some("us-east-1"));
        assert_eq!(p.profile, None);
        assert_eq!(p.target.as_deref(), Some("i-0123"));
        assert_eq!(
            p.endpoint_url.as_deref(),
            Some("https://ssm.us-east-1.amazonaws.com")
        );
        assert!(!format!("{p:?}").contains("tok\""));
    }

    #[test]
    fn the_legacy_forms_and_ecs_keys_work() {
        let ecs = r#"{"sessionId": "ecs-1", "streamUrl": "wss://x/y", "tokenValue": "t"}"#;
        let PluginCall::Start(p) =
            parse(&s(&[ecs, "eu-west-1", "StartSession"]), |_| None).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.session_id.as_str(), p.token.as_str()), ("ecs-1", "t"));
        assert!(p.token_in_argv);
        assert_eq!(p.target, None);
        assert_eq!(p.endpoint_url, None);
        let PluginCall::Start(p) = parse(
            &s(&[
                SSM,
                "us-east-1",
                "StartSession",
                "dev",
                r#"{"Target":"mi-1"}"#,
            ]),
            |_| None,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(p.profile.as_deref(), Some("dev"));
        assert_eq!(p.target.as_deref(), Some("mi-1"));
    }

    #[test]
    fn malformed_input_is_a_clear_error() {
        let e = parse(&s(&["{not json", "r", "StartSession"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"));
        let e = parse(&s(&[r#"{"SessionId":"x"}"#, "r", "StartSession"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("TokenValue"));
        let e = parse(
            &s(&["AWS_SSM_START_SESSION_RESPONSE", "r", "StartSession"]),
            |_| None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not set"));
        let e = parse(&s(&[SSM, "r", "Resume"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("Invalid Operation"));
    }
}

//! Session documents: which agent plugin a StartSession runs and with what properties.
//!
//! The real documents are AWS-managed (PROTOCOL.md §16.2); these reproduce the parts the agent and
//! the client consume: `sessionType`, the `properties` map (strings, keys sorted as Go marshals them)
//! and `inputs.kmsKeyId`, which turns KMS encryption on (§7.1): the account's preference for the
//! default shell document, or a custom session document's own `inputs` — StartSession itself has
//! no KMS parameter.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The agent-side session plugin (`sessionType` of the document, §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Interactive shell on a PTY.
    StandardStream,
    /// `sh -c <command>` on a PTY.
    InteractiveCommands,
    /// A command without PTY, separate stdout/stderr and an exit code.
    NonInteractiveCommands,
    /// TCP forwarding (basic, multiplexed or stdin/stdout).
    Port,
}

impl SessionKind {
    /// The plugin name sent in the handshake's SessionType action.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::StandardStream => "Standard_Stream",
            SessionKind::InteractiveCommands => "InteractiveCommands",
            SessionKind::NonInteractiveCommands => "NonInteractiveCommands",
            SessionKind::Port => "Port",
        }
    }
}

/// What the agent must run for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPlan {
    /// The plugin.
    pub kind: SessionKind,
    /// Document name as given (for DescribeSessions).
    pub document_name: String,
    /// Port properties (`portNumber`, `localPortNumber`, `type`, `host`); `Null` for shells.
    pub properties: Value,
    /// Command for the two command plugins.
    pub command: Option<String>,
    /// KMS key when the document asks for encryption (never for Port, §7.1).
    pub kms_key_id: Option<String>,
    /// NonInteractiveCommands: stdout/stderr as separate payload types plus ExitCode
    /// (`separateOutputStream`); otherwise both go to one file, streamed after the command
    /// exits, and no exit code is sent (PROTOCOL.md §17.1).
    pub separate_output: bool,
    /// `stdoutSeparatorPrefix` / `stderrSeparatorPrefix` as the document hands them to the
    /// agent; the agent validates them (see `agent::command`).
    pub stdout_prefix: String,
    /// See [`SessionPlan::stdout_prefix`].
    pub stderr_prefix: String,
}

/// A StartSession document/parameter problem, with the service's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Unknown document.
    #[error("Document {0} does not exist in your account")]
    NotFound(String),
    /// Parameter missing, unknown, or not matching its pattern.
    #[error("{0}")]
    InvalidParameters(String),
}

impl DocumentError {
    /// `__type` of the error.
    pub fn error_type(&self) -> &'static str {
        match self {
            DocumentError::NotFound(_) => "InvalidDocument",
            DocumentError::InvalidParameters(_) => "InvalidParameters",
        }
    }
}

/// The default shell document (used when StartSession has no DocumentName).
pub const DEFAULT_SHELL_DOCUMENT: &str = "SSM-SessionManagerRunShell";
/// A simulator-only shell document whose preferences enable KMS encryption (`alias/rssm-sim`).
pub const ENCRYPTED_SHELL_DOCUMENT: &str = "RSSM-Sim-EncryptedShell";
/// A simulator-only custom NonInteractiveCommands document, a copy of
/// `AWS-StartNonInteractiveCommand` (same parameters) whose `inputs` set `kmsKeyId` to
/// `alias/rssm-sim`, as a customer's own session document may.
pub const ENCRYPTED_COMMAND_DOCUMENT: &str = "RSSM-Sim-EncryptedNonInteractiveCommand";
/// A simulator-only custom NonInteractiveCommands document that declares only `command`, as
/// many customers' own documents do: StartSession refuses `separateOutputStream`, so the agent
/// merges stdout and stderr and reports no exit code.
pub const COMMAND_ONLY_DOCUMENT: &str = "RSSM-Sim-CommandOnly";
/// The document ECS ExecuteCommand runs.
pub const ECS_DOCUMENT: &str = "AmazonECS-ExecuteInteractiveCommand";

const PORT_PATTERN_HELP: &str = "^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// One parameter a document declares: its default (`None` = required) and, when the document
/// restricts them, its allowed values.
struct ParamDef {
    name: &'static str,
    default: Option<&'static str>,
    allowed: &'static [&'static str],
}

const fn param(name: &'static str, default: Option<&'static str>) -> ParamDef {
    ParamDef {
        name,
        default,
        allowed: &[],
    }
}

/// The parameters each document declares, as the AWS-owned documents do (`aws ssm get-document`;
/// PROTOCOL.md §16.2, §17.1). StartSession refuses a parameter a document does not declare, a
/// value outside its allowed values, and a missing required one; declared parameters left out
/// take their defaults. `AWS-StartNonInteractiveCommand`'s `separateOutputStream` defaults to
/// **false**: a client that does not ask gets merged output and no exit code.
fn parameters_of(name: &str) -> Option<&'static [ParamDef]> {
    const COMMAND: &[ParamDef] = &[param("command", None)];
    const NON_INTERACTIVE: &[ParamDef] = &[
        param("command", None),
        ParamDef {
            name: "separateOutputStream",
            default: Some("false"),
            allowed: &["true", "false"],
        },
        param("stdoutSeparatorPrefix", Some("")),
        param("stderrSeparatorPrefix", Some("")),
    ];
    const PORT: &[ParamDef] = &[
        param("portNumber", Some("80")),
        param("localPortNumber", Some("0")),
    ];
    const REMOTE_HOST: &[ParamDef] = &[
        param("host", None),
        param("portNumber", Some("80")),
        param("localPortNumber", Some("0")),
    ];
    const SSH: &[ParamDef] = &[param("portNumber", Some("22"))];
    Some(match name {
        DEFAULT_SHELL_DOCUMENT | ENCRYPTED_SHELL_DOCUMENT => &[],
        "AWS-StartInteractiveCommand" | COMMAND_ONLY_DOCUMENT | ECS_DOCUMENT => COMMAND,
        "AWS-StartNonInteractiveCommand" | ENCRYPTED_COMMAND_DOCUMENT => NON_INTERACTIVE,
        "AWS-StartPortForwardingSession" => PORT,
        "AWS-StartPortForwardingSessionToRemoteHost" => REMOTE_HOST,
        "AWS-StartSSHSession" => SSH,
        _ => return None,
    })
}

/// Checks `params` against the document's declarations and fills in the defaults.
fn bind_parameters<'a>(
    name: &str,
    defs: &'a [ParamDef],
    params: &'a BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<&'a str, &'a str>, DocumentError> {
    let mut bound = BTreeMap::new();
    for (key, values) in params {
        let Some(def) = defs.iter().find(|d| d.name == key) else {
            return Err(DocumentError::InvalidParameters(format!(
                "Parameter \"{key}\" is not defined in document {name}."
            )));
        };
        let value = values.first().map(String::as_str).unwrap_or("");
        if !def.allowed.is_empty() && !def.allowed.contains(&value) {
            return Err(DocumentError::InvalidParameters(format!(
                "Parameter \"{key}\" \"{value}\" : is not one of the allowed values [{}].",
                def.allowed.join(", ")
            )));
        }
        bound.insert(def.name, value);
    }
    for def in defs {
        if !bound.contains_key(def.name) {
            let default = def.default.ok_or_else(|| {
                DocumentError::InvalidParameters(format!(
                    "Required parameter \"{}\" is missing.",
                    def.name
                ))
            })?;
            bound.insert(def.name, default);
        }
    }
    Ok(bound)
}

/// Resolves a document name and StartSession `Parameters` into a plan.
///
/// `shell_kms_key` is the account's session preference key (applies to the default shell document).
pub fn resolve(
    name: Option<&str>,
    params: &BTreeMap<String, Vec<String>>,
    shell_kms_key: Option<&str>,
) -> Result<SessionPlan, DocumentError> {
    let name = name.unwrap_or(DEFAULT_SHELL_DOCUMENT);
    let defs = parameters_of(name).ok_or_else(|| DocumentError::NotFound(name.to_owned()))?;
    let bound = bind_parameters(name, defs, params)?;
    let get = |k: &str| bound.get(k).copied();
    let mut plan = SessionPlan {
        kind: SessionKind::StandardStream,
        document_name: name.to_owned(),
        properties: Value::Null,
        command: None,
        kms_key_id: None,
        separate_output: false,
        stdout_prefix: String::new(),
        stderr_prefix: String::new(),
    };
    match name {
        DEFAULT_SHELL_DOCUMENT => plan.kms_key_id = shell_kms_key.map(str::to_owned),
        ENCRYPTED_SHELL_DOCUMENT => plan.kms_key_id = Some("alias/rssm-sim".into()),
        "AWS-StartInteractiveCommand" | ECS_DOCUMENT => {
            plan.kind = SessionKind::InteractiveCommands;
            plan.command = Some(required(get("command"), "command")?.to_owned());
        }
        "AWS-StartNonInteractiveCommand" | ENCRYPTED_COMMAND_DOCUMENT | COMMAND_ONLY_DOCUMENT => {
            plan.kind = SessionKind::NonInteractiveCommands;
            plan.command = Some(required(get("command"), "command")?.to_owned());
            plan.separate_output = get("separateOutputStream") == Some("true");
            plan.stdout_prefix = get("stdoutSeparatorPrefix").unwrap_or("").to_owned();
            plan.stderr_prefix = get("stderrSeparatorPrefix").unwrap_or("").to_owned();
            if name == ENCRYPTED_COMMAND_DOCUMENT {
                plan.kms_key_id = Some("alias/rssm-sim".into());
            }
        }
        _ => {
            plan.kind = SessionKind::Port;
            // Go marshals map keys sorted; build sorted whatever serde_json's map ordering is.
            let mut props: BTreeMap<String, Value> = BTreeMap::new();
            let port = port_param(get("portNumber").unwrap_or("0"), "portNumber", false)?;
            props.insert("portNumber".into(), Value::String(port));
            if name != "AWS-StartSSHSession" {
                let local = port_param(
                    get("localPortNumber").unwrap_or("0"),
                    "localPortNumber",
                    true,
                )?;
                props.insert("localPortNumber".into(), Value::String(local));
                props.insert("type".into(), Value::String("LocalPortForwarding".into()));
            }
            if name == "AWS-StartPortForwardingSessionToRemoteHost" {
                let host = required(get("host"), "host")?;
                props.insert("host".into(), Value::String(host.to_owned()));
            }
            plan.properties = Value::Object(props.into_iter().collect::<Map<String, Value>>());
        }
    }
    Ok(plan)
}

fn required<'a>(v: Option<&'a str>, key: &str) -> Result<&'a str, DocumentError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        DocumentError::InvalidParameters(format!("Required parameter \"{key}\" is missing."))
    })
}

fn port_param(v: &str, key: &str, zero_ok: bool) -> Result<String, DocumentError> {
    let ok = !v.is_empty()
        && v.len() <= 5
        && v.bytes().all(|b| b.is_ascii_digit())
        && !(v.len() > 1 && v.starts_with('0'))
        && v.parse::<u32>()
            .is_ok_and(|n| n <= 65535 && (zero_ok || n > 0));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(DocumentError::InvalidParameters(format!(
            "Parameter \"{key}\" \"{v}\" : does not match the allowed pattern {PORT_PATTERN_HELP}."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn port_documents_produce_agent_properties() {
        let p = resolve(
            Some("AWS-StartPortForwardingSession"),
            &params(&[("portNumber", "7777"), ("localPortNumber", "0")]),
            None,
        )
        .unwrap();
        assert_eq!(p.kind, SessionKind::Port);
        assert_eq!(
            serde_json::to_string(&p.properties).unwrap(),
            r#"{"localPortNumber":"0","portNumber":"7777","type":"LocalPortForwarding"}"#
        );
        let ssh = resolve(Some("AWS-StartSSHSession"), &params(&[]), None).unwrap();
        assert_eq!(
            serde_json::to_string(&ssh.properties).unwrap(),
            r#"{"portNumber":"22"}"#
        );
        assert!(resolve(
            Some("AWS-StartPortForwardingSessionToRemoteHost"),
            &params(&[("portNumber", "80")]),
            None
        )
        .is_err());
    }

    #[test]
    fn rejects_bad_documents_and_parameters() {
        assert_eq!(
            resolve(Some("Nope"), &params(&[]), None)
                .unwrap_err()
                .error_type(),
            "InvalidDocument"
        );
        assert!(resolve(
            Some("AWS-StartPortForwardingSession"),
            &params(&[("portNumber", "70000")]),
            None
        )
        .is_err());
        assert!(resolve(None, &params(&[("x", "1")]), None).is_err());
        let shell = resolve(None, &params(&[]), Some("alias/k")).unwrap();
        assert_eq!(shell.kms_key_id.as_deref(), Some("alias/k"));
        assert_eq!(shell.kind, SessionKind::StandardStream);
        // Here the account's shell preference applies to the default shell document only; a
        // custom command document carries its own key.
        let plain = params(&[("command", "id")]);
        let cmd = resolve(
            Some("AWS-StartNonInteractiveCommand"),
            &plain,
            Some("alias/k"),
        )
        .unwrap();
        assert_eq!(cmd.kms_key_id, None);
        let enc = resolve(Some(ENCRYPTED_COMMAND_DOCUMENT), &plain, None).unwrap();
        assert_eq!(enc.kind, SessionKind::NonInteractiveCommands);
        assert_eq!(enc.kms_key_id.as_deref(), Some("alias/rssm-sim"));
    }

    #[test]
    fn non_interactive_commands_merge_output_unless_asked_to_separate() {
        let doc = Some("AWS-StartNonInteractiveCommand");
        let plain = resolve(doc, &params(&[("command", "id")]), None).unwrap();
        assert!(!plain.separate_output, "the document's default is false");
        let sep = params(&[
            ("command", "id"),
            ("separateOutputStream", "true"),
            ("stdoutSeparatorPrefix", "OUT:"),
        ]);
        let sep = resolve(doc, &sep, None).unwrap();
        assert!(sep.separate_output);
        assert_eq!((&*sep.stdout_prefix, &*sep.stderr_prefix), ("OUT:", ""));
        let bad = params(&[("command", "id"), ("separateOutputStream", "yes")]);
        let err = resolve(doc, &bad, None).unwrap_err();
        assert_eq!(err.error_type(), "InvalidParameters");
        assert!(err.to_string().contains("allowed values"), "{err}");
        assert!(
            resolve(doc, &params(&[]), None).is_err(),
            "command is required"
        );
        // A document that does not declare the parameter refuses it.
        let custom = params(&[("command", "id"), ("separateOutputStream", "true")]);
        let err = resolve(Some(COMMAND_ONLY_DOCUMENT), &custom, None).unwrap_err();
        assert!(err.to_string().contains("is not defined"), "{err}");
    }
}

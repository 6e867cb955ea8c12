//! The client's side of the session handshake (PROTOCOL.md §7) and the KMS data-key step (§8.1).
//!
//! The agent starts the handshake with a HandshakeRequest listing actions (SessionType, then
//! KMSEncryption when the document asks for it). We answer each; KMSEncryption needs a KMS
//! `GenerateDataKey` call, which is I/O, so the session surfaces it as an event
//! ([`crate::Event::DataKeyRequired`]) and resumes when the caller hands back the key — or, for
//! synchronous callers, through the small [`DataKeyProvider`] trait.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::crypto::{b64_encode, encryption_context};
use crate::payload::{
    action, ActionStatus, HandshakeRequestPayload, HandshakeResponsePayload, KmsEncryptionRequest,
    KmsEncryptionResponse, ProcessedClientAction, SessionTypeRequest,
};

/// How long the agent waits for our HandshakeResponse before it gives up on the session
/// (§7.2): a KMS data key that takes longer is useless.
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(15);

/// The session-type plugin the agent runs (§7.3, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionType {
    /// Interactive shell on a PTY (`Standard_Stream`).
    StandardStream,
    /// One command on a PTY (`InteractiveCommands`).
    InteractiveCommands,
    /// One command without a PTY, separate stdout/stderr and an exit code (`NonInteractiveCommands`).
    NonInteractiveCommands,
    /// Port forwarding, SSH stdio included (`Port`).
    Port,
}

impl SessionType {
    /// The agent's plugin name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::StandardStream => "Standard_Stream",
            SessionType::InteractiveCommands => "InteractiveCommands",
            SessionType::NonInteractiveCommands => "NonInteractiveCommands",
            SessionType::Port => "Port",
        }
    }

    /// Parses a plugin name; `None` for names the client does not know (answered as Failed).
    pub fn parse(name: &str) -> Option<SessionType> {
        match name {
            "Standard_Stream" => Some(SessionType::StandardStream),
            "InteractiveCommands" => Some(SessionType::InteractiveCommands),
            "NonInteractiveCommands" => Some(SessionType::NonInteractiveCommands),
            "Port" => Some(SessionType::Port),
            _ => None,
        }
    }
}

/// What the session turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionTypeInfo {
    /// The plugin the agent runs.
    pub session_type: SessionType,
    /// Document properties (Port sessions: `portNumber`, `type`, `host`, …); null for shells.
    pub properties: Value,
    /// The agent's version from the HandshakeRequest; `None` when the type was inferred from a
    /// first Output message (handshake-less shells, §7.6).
    pub agent_version: Option<String>,
}

impl SessionTypeInfo {
    /// A string property of the document (all port properties are strings, §9.4).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key)?.as_str()
    }
}

/// A `GenerateDataKey` call the caller must make (§8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRequest {
    /// KMS key id or ARN from the HandshakeRequest.
    pub key_id: String,
    /// Number of key bytes to ask for: always 64 (two AES-256 keys).
    pub number_of_bytes: u32,
    /// Encryption context binding the key to the session and target.
    pub encryption_context: BTreeMap<String, String>,
}

/// The result of `GenerateDataKey`.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    /// The 64-byte plaintext key: never logged.
    pub plaintext: Vec<u8>,
    /// KMS's CiphertextBlob, forwarded to the agent, which decrypts it with KMS.
    pub ciphertext_blob: Vec<u8>,
}

/// The plaintext key is overwritten when the `DataKey` is dropped.
impl Drop for DataKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.plaintext);
    }
}

impl zeroize::ZeroizeOnDrop for DataKey {}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("ciphertext_blob_len", &self.ciphertext_blob.len())
            .finish()
    }
}

/// Synchronous source of KMS data keys, for callers that can block (tests, simple tools).
/// Async callers answer [`crate::Event::DataKeyRequired`] with [`crate::Session::provide_data_key`].
pub trait DataKeyProvider {
    /// Calls KMS `GenerateDataKey`; the error text is shown to the user and sent to the agent.
    fn generate_data_key(&mut self, request: &DataKeyRequest) -> Result<DataKey, String>;
}

/// A HandshakeRequest digested into what the client must do.
#[derive(Debug, Clone)]
pub(crate) struct PendingResponse {
    /// Session type, when a valid SessionType action was present.
    pub session_type: Option<SessionTypeInfo>,
    /// One processed entry per requested action; KMS's is filled in when the key arrives.
    pub actions: Vec<ProcessedClientAction>,
    /// Index into `actions` of the KMSEncryption entry waiting for a data key.
    pub kms_slot: Option<usize>,
    /// The KMS call to make.
    pub kms_request: Option<DataKeyRequest>,
}

/// Answers each requested action (§7.4). KMSEncryption is left pending for the data key.
pub(crate) fn process_request(
    req: &HandshakeRequestPayload,
    session_id: &str,
    target_id: &str,
    acknowledge_challenge: bool,
) -> PendingResponse {
    let mut out = PendingResponse {
        session_type: None,
        actions: Vec::new(),
        kms_slot: None,
        kms_request: None,
    };
    for a in &req.requested_client_actions {
        let mut processed = ProcessedClientAction {
            action_type: a.action_type.clone(),
            action_status: ActionStatus::Success as i32,
            action_result: Value::Null,
            error: String::new(),
        };
        match a.action_type.as_str() {
            action::SESSION_TYPE => {
                match serde_json::from_value::<SessionTypeRequest>(a.action_parameters.clone()) {
                    Ok(p) => match SessionType::parse(&p.session_type) {
                        Some(t) => {
                            out.session_type = Some(SessionTypeInfo {
                                session_type: t,
                                properties: p.properties,
                                agent_version: Some(req.agent_version.clone()),
                            })
                        }
                        None => fail(
                            &mut processed,
                            format!("Unknown session type {}", p.session_type),
                        ),
                    },
                    Err(e) => fail(&mut processed, format!("invalid parameters: {e}")),
                }
            }
            action::KMS_ENCRYPTION => {
                match serde_json::from_value::<KmsEncryptionRequest>(a.action_parameters.clone()) {
                    Ok(p) if out.kms_slot.is_none() => {
                        let challenge = (acknowledge_challenge && !p.challenge.is_empty())
                            .then_some(p.challenge.as_str());
                        out.kms_slot = Some(out.actions.len());
                        out.kms_request = Some(DataKeyRequest {
                            key_id: p.kms_key_id,
                            number_of_bytes: crate::crypto::DATA_KEY_LEN as u32,
                            encryption_context: encryption_context(
                                session_id, target_id, challenge,
                            ),
                        });
                    }
                    Ok(_) => fail(&mut processed, "duplicate KMSEncryption action".into()),
                    Err(e) => fail(&mut processed, format!("invalid parameters: {e}")),
                }
            }
            other => {
                // The plugin puts 3 into ActionResult by mistake (§7.4); we report it properly.
                processed.action_status = ActionStatus::Unsupported as i32;
                processed.error = format!("Unsupported action {other}");
            }
        }
        out.actions.push(processed);
    }
    out
}

fn fail(p: &mut ProcessedClientAction, why: String) {
    p.action_status = ActionStatus::Failed as i32;
    p.error = format!("Failed to process action {}: {why}", p.action_type);
}

impl PendingResponse {
    /// Records the outcome of the KMS call in the KMSEncryption entry.
    pub fn complete_kms(&mut self, result: &Result<DataKey, String>, acknowledge_challenge: bool) {
        let Some(slot) = self.kms_slot else { return };
        let entry = &mut self.actions[slot];
        match result {
            Ok(key) => {
                let challenge_acknowledgement = self
                    .kms_request
                    .as_ref()
                    .filter(|_| acknowledge_challenge)
                    .and_then(|r| {
                        r.encryption_context
                            .contains_key(crate::crypto::CONTEXT_RANDOM_CHALLENGE)
                            .then_some(true)
                    });
                entry.action_result = serde_json::to_value(KmsEncryptionResponse {
                    kms_cipher_text_key: b64_encode(&key.ciphertext_blob),
                    kms_cipher_text_hash: None,
                    challenge_acknowledgement,
                })
                .expect("plain struct serializes");
            }
            Err(why) => fail(entry, why.clone()),
        }
    }

    /// The HandshakeResponse payload.
    pub fn response(&self, client_version: &str) -> HandshakeResponsePayload {
        let errors: Vec<String> = self
            .actions
            .iter()
            .filter(|a| a.action_status != ActionStatus::Success as i32)
            .map(|a| a.error.clone())
            .collect();
        HandshakeResponsePayload {
            client_version: client_version.to_owned(),
            processed_client_actions: self.actions.clone(),
            errors: (!errors.is_empty()).then_some(errors),
        }
    }
}

/// Compares dotted version strings numerically, component by component; a missing component
/// counts as 0 (the agent's rule, §9.4). Non-numeric components compare as 0.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> Vec<u64> {
        s.split('.')
            .map(|c| c.trim().parse().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parse(a), parse(b));
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => continue,
            other => return other,
        }
    }
    std::cmp::Ordering::Equal
}

/// Whether an agent of this version runs smux for LocalPortForwarding (client rule: > 3.0.196.0).
pub fn agent_supports_mux(agent_version: &str) -> bool {
    compare_versions(agent_version, "3.0.196.0").is_gt()
}

/// Whether an agent of this version has smux keep-alive disabled for us (client rule: > 3.1.1511.0),
/// so our smux client must not send NOPs either (§9.4.3).
pub fn agent_disables_smux_keepalive(agent_version: &str) -> bool {
    compare_versions(agent_version, "3.1.1511.0").is_gt()
}

/// Whether an agent that supports it sends the TerminateSession flag on Ctrl-C (> 2.3.722.0, §9.4.2).
pub fn agent_supports_terminate_flag(agent_version: &str) -> bool {
    compare_versions(agent_version, "2.3.722.0").is_gt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::RequestedClientAction;
    use serde_json::json;

    fn req(actions: Vec<RequestedClientAction>) -> HandshakeRequestPayload {
        HandshakeRequestPayload {
            agent_version: "3.3.987.0".into(),
            requested_client_actions: actions,
        }
    }

    #[test]
    fn port_session_type_is_accepted_with_properties() {
        let r = req(vec![RequestedClientAction {
            action_type: "SessionType".into(),
            action_parameters: json!({"SessionType":"Port","Properties":{"portNumber":"80","type":"LocalPortForwarding"}}),
        }]);
        let p = process_request(&r, "s", "i", false);
        let st = p.session_type.clone().unwrap();
        assert_eq!(st.session_type, SessionType::Port);
        assert_eq!(st.property("portNumber"), Some("80"));
        assert!(p.kms_request.is_none());
        assert_eq!(
            serde_json::to_string(&p.response("1.2.650.0")).unwrap(),
            r#"{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
    }

    #[test]
    fn unknown_session_type_and_action_fail_with_reference_texts() {
        let r = req(vec![
            RequestedClientAction {
                action_type: "SessionType".into(),
                action_parameters: json!({"SessionType":"Teleport"}),
            },
            RequestedClientAction {
                action_type: "Foo".into(),
                action_parameters: Value::Null,
            },
        ]);
        let p = process_request(&r, "s", "i", false);
        assert!(p.session_type.is_none());
        let resp = p.response("1.3.0.0");
        assert_eq!(resp.processed_client_actions[0].action_status, 2);
        assert_eq!(
            resp.processed_client_actions[0].error,
            "Failed to process action SessionType: Unknown session type Teleport"
        );
        assert_eq!(resp.processed_client_actions[1].action_status, 3);
        assert_eq!(
            resp.processed_client_actions[1].error,
            "Unsupported action Foo"
        );
        assert_eq!(resp.errors.unwrap().len(), 2);
    }

    #[test]
    fn kms_action_builds_the_context_and_the_result() {
        let r = req(vec![
            RequestedClientAction {
                action_type: "SessionType".into(),
                action_parameters: json!({"SessionType":"Standard_Stream","Properties":null}),
            },
            RequestedClientAction {
                action_type: "KMSEncryption".into(),
                action_parameters: json!({"KMSKeyId":"alias/k","Challenge":"AAAA"}),
            },
        ]);
        let mut p = process_request(&r, "sess-1", "i-9", false);
        let kr = p.kms_request.clone().unwrap();
        assert_eq!(kr.key_id, "alias/k");
        assert_eq!(kr.number_of_bytes, 64);
        assert_eq!(kr.encryption_context.len(), 2);
        assert_eq!(kr.encryption_context["aws:ssm:SessionId"], "sess-1");
        assert_eq!(kr.encryption_context["aws:ssm:TargetId"], "i-9");
        p.complete_kms(
            &Ok(DataKey {
                plaintext: vec![0; 64],
                ciphertext_blob: b"cipher-text-key".to_vec(),
            }),
            false,
        );
        let s = serde_json::to_string(&p.response("1.2.0.0")).unwrap();
        assert!(s.contains(r#"{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"Y2lwaGVyLXRleHQta2V5","KMSCipherTextHash":null},"Error":""}"#), "{s}");
        // Opting in binds the challenge into the context and says so.
        let mut p = process_request(&r, "sess-1", "i-9", true);
        assert_eq!(
            p.kms_request.as_ref().unwrap().encryption_context["aws:ssm:RandomChallenge"],
            "AAAA"
        );
        p.complete_kms(
            &Ok(DataKey {
                plaintext: vec![0; 64],
                ciphertext_blob: vec![1],
            }),
            true,
        );
        assert!(serde_json::to_string(&p.response("1"))
            .unwrap()
            .contains(r#""ChallengeAcknowledgement":true"#));
        p.complete_kms(&Err("AccessDenied".into()), true);
        assert_eq!(
            p.response("1").processed_client_actions[1].error,
            "Failed to process action KMSEncryption: AccessDenied"
        );
    }

    #[test]
    fn version_gates_match_the_reference_thresholds() {
        assert!(agent_supports_mux("3.0.196.1"));
        assert!(!agent_supports_mux("3.0.196.0"));
        assert!(agent_supports_mux("3.3.0.0"));
        assert!(!agent_disables_smux_keepalive("3.1.1511.0"));
        assert!(agent_disables_smux_keepalive("3.1.1600.0"));
        assert!(agent_supports_terminate_flag("3.0.0.0"));
        assert!(!agent_supports_terminate_flag("2.3.722.0"));
        assert!(compare_versions("1.2.331", "1.2.331.0").is_eq());
        assert!(compare_versions("1.10.0.0", "1.9.9.9").is_gt());
    }
}

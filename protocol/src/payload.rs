//! Payload contents: the JSON documents and small binary values carried inside agent messages.
//!
//! Field names and order follow the Go structs of both reference implementations so that
//! `serde_json::to_vec` produces the same bytes as Go's `json.Marshal` (PROTOCOL.md §5.2, §6.2, §7, §10).
//! Parsing is lenient where the peer is (missing optional fields default).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The first (text) websocket frame on a data channel: authenticates with the session token (§5.2).
///
/// The client sends `ClientId` and `ClientVersion`; the agent sends `ClientInstanceId` instead of
/// `ClientVersion` (§5.3). `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannelInput {
    /// Always `"1.0"`.
    pub message_schema_version: String,
    /// Fresh UUID per open.
    pub request_id: String,
    /// Secret token from StartSession/ResumeSession (client) or CreateDataChannel (agent).
    pub token_value: String,
    /// The agent's instance id (agent side only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_instance_id: Option<String>,
    /// UUID generated once per client process, reused on reconnect.
    pub client_id: String,
    /// The client's version; enables version-gated agent behaviour (§9.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

impl std::fmt::Debug for OpenDataChannelInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDataChannelInput")
            .field("message_schema_version", &self.message_schema_version)
            .field("request_id", &self.request_id)
            .field("token_value", &"<redacted>")
            .field("client_instance_id", &self.client_instance_id)
            .field("client_id", &self.client_id)
            .field("client_version", &self.client_version)
            .finish()
    }
}

/// Payload of an `acknowledge` message (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeContent {
    /// Type of the acknowledged message.
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    /// Canonical UUID string of the acknowledged message.
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    /// Its sequence number; the only field receivers match on.
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// Always true.
    #[serde(rename = "IsSequentialMessage", default = "yes")]
    pub is_sequential_message: bool,
}

fn yes() -> bool {
    true
}

/// HandshakeRequest (PayloadType 5), agent → client (§7.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeRequestPayload {
    /// The agent's version, e.g. `3.3.987.0`; gates smux keep-alive on the client (§9.4.3).
    #[serde(default)]
    pub agent_version: String,
    /// SessionType first, then KMSEncryption when enabled.
    #[serde(default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// One action the agent asks the client to perform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestedClientAction {
    /// `SessionType` or `KMSEncryption`.
    pub action_type: String,
    /// Action-specific parameters; see [`SessionTypeRequest`] and [`KmsEncryptionRequest`].
    #[serde(default)]
    pub action_parameters: Value,
}

/// Parameters of the `SessionType` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionTypeRequest {
    /// `Standard_Stream`, `InteractiveCommands`, `NonInteractiveCommands` or `Port`.
    pub session_type: String,
    /// The document's properties for Port sessions (`portNumber`, `type`, …); null otherwise.
    #[serde(default)]
    pub properties: Value,
}

/// Parameters of the `KMSEncryption` action (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionRequest {
    /// Key id or ARN for GenerateDataKey.
    #[serde(rename = "KMSKeyId")]
    pub kms_key_id: String,
    /// Base64 of 16 random bytes; optionally bound into the encryption context.
    #[serde(rename = "Challenge", default)]
    pub challenge: String,
}

/// Action type names.
pub mod action {
    /// Tells the client which kind of session this is.
    pub const SESSION_TYPE: &str = "SessionType";
    /// Asks the client to set up KMS encryption.
    pub const KMS_ENCRYPTION: &str = "KMSEncryption";
}

/// `ActionStatus` values (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ActionStatus {
    /// 1
    Success = 1,
    /// 2
    Failed = 2,
    /// 3
    Unsupported = 3,
}

/// HandshakeResponse (PayloadType 6), client → agent (§7.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeResponsePayload {
    /// Our version; the agent gates smux on it (§9.4).
    pub client_version: String,
    /// One entry per requested action, in order.
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// One message per failed action; `null` when none.
    pub errors: Option<Vec<String>>,
}

/// The client's answer to one requested action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessedClientAction {
    /// Echo of the requested action type.
    pub action_type: String,
    /// [`ActionStatus`] as an integer.
    pub action_status: i32,
    /// [`KmsEncryptionResponse`] for KMSEncryption, otherwise null.
    pub action_result: Value,
    /// `""` or an error message.
    pub error: String,
}

/// ActionResult of a successful KMSEncryption action (§7.4, §8.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsEncryptionResponse {
    /// Base64 of the GenerateDataKey CiphertextBlob.
    #[serde(rename = "KMSCipherTextKey")]
    pub kms_cipher_text_key: String,
    /// Always null.
    #[serde(rename = "KMSCipherTextHash", default)]
    pub kms_cipher_text_hash: Option<String>,
    /// True when the challenge was bound into the encryption context (newer agents, §8.1).
    #[serde(
        rename = "ChallengeAcknowledgement",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub challenge_acknowledgement: Option<bool>,
}

/// HandshakeComplete (PayloadType 7), agent → client (§7.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeCompletePayload {
    /// Handshake duration in nanoseconds (Go `time.Duration`).
    #[serde(default)]
    pub handshake_time_to_complete: i64,
    /// Text to show the user, e.g. "This session is encrypted using AWS KMS."
    #[serde(default)]
    pub customer_message: String,
}

/// EncChallengeRequest / EncChallengeResponse (PayloadTypes 8 and 9, §8.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionChallenge {
    /// Base64 of the encrypted challenge blob.
    pub challenge: String,
}

/// Terminal size (PayloadType 3), lower-case keys (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeData {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// Control flags (PayloadType 10): a 4-byte big-endian integer (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Client: the local TCP client went away (basic port forwarding).
    DisconnectToPort,
    /// Client: end the session (port sessions, Ctrl-C).
    TerminateSession,
    /// Agent: dialing the destination for a new smux stream failed.
    ConnectToPortError,
}

impl Flag {
    /// The integer value.
    pub fn value(self) -> u32 {
        match self {
            Flag::DisconnectToPort => 1,
            Flag::TerminateSession => 2,
            Flag::ConnectToPortError => 3,
        }
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        self.value().to_be_bytes()
    }

    /// Parses a flag payload; `None` for anything but a known 4-byte value.
    pub fn from_bytes(b: &[u8]) -> Option<Flag> {
        let v = u32::from_be_bytes(b.try_into().ok()?);
        match v {
            1 => Some(Flag::DisconnectToPort),
            2 => Some(Flag::TerminateSession),
            3 => Some(Flag::ConnectToPortError),
            _ => None,
        }
    }
}

/// Formats an ExitCode payload (PayloadType 12) as the agent does: `EXIT_CODE: <n>`.
pub fn exit_code_payload(code: i32) -> String {
    format!("EXIT_CODE: {code}")
}

/// Parses an ExitCode payload; tolerant of surrounding whitespace.
pub fn parse_exit_code(payload: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    text.strip_prefix("EXIT_CODE:")?.trim().parse().ok()
}

/// Payload of `channel_closed`, sent by the gateway when the session ends (§10.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelClosed {
    /// Id of the close message.
    #[serde(default)]
    pub message_id: String,
    /// Creation time as text (epoch milliseconds as digits from the service).
    #[serde(default)]
    pub created_date: String,
    /// The session's target.
    #[serde(default)]
    pub destination_id: String,
    /// The session id.
    #[serde(default)]
    pub session_id: String,
    /// `"channel_closed"`.
    #[serde(default)]
    pub message_type: String,
    /// 1.
    #[serde(default)]
    pub schema_version: i64,
    /// Reason text, often empty.
    #[serde(default)]
    pub output: String,
}

/// Payload of `agent_session_state` (agent → gateway, §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentSessionStatePayload {
    /// 1.
    pub schema_version: i64,
    /// `Connected` or `Terminating`.
    pub session_state: String,
    /// The session id.
    pub session_id: String,
}

/// Serializes a payload to compact JSON bytes. Our types cannot fail to serialize.
pub fn to_json<T: Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(value).expect("payload types always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        String::from_utf8(to_json(v).to_vec()).unwrap()
    }

    #[test]
    fn acknowledge_json_matches_tv3() {
        let ack = AcknowledgeContent {
            message_type: "input_stream_data".into(),
            message_id: "dd01e56b-ff48-483e-a508-b5f073f31b16".into(),
            sequence_number: 2,
            is_sequential_message: true,
        };
        let s = json(&ack);
        assert_eq!(
            s,
            r#"{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":2,"IsSequentialMessage":true}"#
        );
        assert_eq!(s.len(), 175);
        assert_eq!(serde_json::from_str::<AcknowledgeContent>(&s).unwrap(), ack);
    }

    #[test]
    fn handshake_response_json_matches_go() {
        let r = HandshakeResponsePayload {
            client_version: "1.2.0.0".into(),
            processed_client_actions: vec![
                ProcessedClientAction {
                    action_type: "KMSEncryption".into(),
                    action_status: 1,
                    action_result: serde_json::to_value(KmsEncryptionResponse {
                        kms_cipher_text_key: "Y2lwaGVyLXRleHQta2V5".into(),
                        kms_cipher_text_hash: None,
                        challenge_acknowledgement: None,
                    })
                    .unwrap(),
                    error: String::new(),
                },
                ProcessedClientAction {
                    action_type: "SessionType".into(),
                    action_status: 1,
                    action_result: Value::Null,
                    error: String::new(),
                },
            ],
            errors: None,
        };
        assert_eq!(
            json(&r),
            r#"{"ClientVersion":"1.2.0.0","ProcessedClientActions":[{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"Y2lwaGVyLXRleHQta2V5","KMSCipherTextHash":null},"Error":""},{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
    }

    #[test]
    fn handshake_request_parses_trace_json() {
        // From real-agent-port-smux.jsonl (Go map keys sorted, Python separators in the stand-in).
        let raw = r#"{"AgentVersion": "3.3.987.0", "RequestedClientActions": [{"ActionType": "SessionType", "ActionParameters": {"SessionType": "Port", "Properties": {"portNumber": "7777", "type": "LocalPortForwarding", "localPortNumber": "47712"}}}]}"#;
        let req: HandshakeRequestPayload = serde_json::from_str(raw).unwrap();
        assert_eq!(req.agent_version, "3.3.987.0");
        let st: SessionTypeRequest =
            serde_json::from_value(req.requested_client_actions[0].action_parameters.clone())
                .unwrap();
        assert_eq!(st.session_type, "Port");
        assert_eq!(st.properties["portNumber"], "7777");
    }

    #[test]
    fn handshake_complete_and_size_and_challenge_json() {
        let c = HandshakeCompletePayload {
            handshake_time_to_complete: 971495824,
            customer_message: String::new(),
        };
        assert_eq!(
            json(&c),
            r#"{"HandshakeTimeToComplete":971495824,"CustomerMessage":""}"#
        );
        assert_eq!(
            json(&SizeData {
                cols: 300,
                rows: 100
            }),
            r#"{"cols":300,"rows":100}"#
        );
        assert_eq!(
            json(&EncryptionChallenge {
                challenge: "AAEC".into()
            }),
            r#"{"Challenge":"AAEC"}"#
        );
    }

    #[test]
    fn open_data_channel_field_order_and_redaction() {
        let o = OpenDataChannelInput {
            message_schema_version: "1.0".into(),
            request_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            token_value: "AAEAA-secret".into(),
            client_instance_id: None,
            client_id: "7c9e6679-7425-40de-944b-e07fc1f90ae7".into(),
            client_version: Some("1.2.677.0".into()),
        };
        assert_eq!(
            json(&o),
            r#"{"MessageSchemaVersion":"1.0","RequestId":"0f8fad5b-d9cb-469f-a165-70867728950e","TokenValue":"AAEAA-secret","ClientId":"7c9e6679-7425-40de-944b-e07fc1f90ae7","ClientVersion":"1.2.677.0"}"#
        );
        assert!(!format!("{o:?}").contains("secret"));
        let agent = OpenDataChannelInput {
            client_instance_id: Some("i-0123".into()),
            client_version: None,
            ..o
        };
        assert_eq!(
            json(&agent),
            r#"{"MessageSchemaVersion":"1.0","RequestId":"0f8fad5b-d9cb-469f-a165-70867728950e","TokenValue":"AAEAA-secret","ClientInstanceId":"i-0123","ClientId":"7c9e6679-7425-40de-944b-e07fc1f90ae7"}"#
        );
    }

    #[test]
    fn flags_and_exit_codes() {
        assert_eq!(Flag::TerminateSession.to_bytes(), [0, 0, 0, 2]);
        assert_eq!(Flag::DisconnectToPort.to_bytes(), [0, 0, 0, 1]);
        assert_eq!(
            Flag::from_bytes(&[0, 0, 0, 3]),
            Some(Flag::ConnectToPortError)
        );
        assert_eq!(Flag::from_bytes(&[0, 0, 3]), None);
        assert_eq!(Flag::from_bytes(&[0, 0, 0, 9]), None);
        assert_eq!(exit_code_payload(7), "EXIT_CODE: 7");
        assert_eq!(parse_exit_code(b"EXIT_CODE: 7"), Some(7));
        assert_eq!(parse_exit_code(b"EXIT_CODE: -1\n"), Some(-1));
        assert_eq!(parse_exit_code(b"exit 7"), None);
    }

    #[test]
    fn channel_closed_parses_partial_json() {
        let c: ChannelClosed = serde_json::from_str(
            r#"{"MessageType":"channel_closed","SessionId":"s-1","Output":"bye","SchemaVersion":1}"#,
        )
        .unwrap();
        assert_eq!(c.session_id, "s-1");
        assert_eq!(c.output, "bye");
        assert_eq!(c.destination_id, "");
    }
}

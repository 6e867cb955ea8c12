//! The agent's side of the session handshake (PROTOCOL.md §7, §8): HandshakeRequest with the
//! SessionType action (and KMSEncryption when the document asks for it), ≤ 15 s for the
//! HandshakeResponse, KMS Decrypt of the client's data key, the encryption challenge, and
//! HandshakeComplete with the elapsed nanoseconds and the customer message.

use super::AgentSpec;
use crate::documents::SessionKind;
use rssm_protocol::crypto::{
    b64_decode, b64_encode, kms_random_challenge, SessionCipher, CONTEXT_RANDOM_CHALLENGE,
    CONTEXT_SESSION_ID, CONTEXT_TARGET_ID,
};
use rssm_protocol::message::PayloadType;
use rssm_protocol::payload::{
    to_json, EncryptionChallenge, HandshakeCompletePayload, HandshakeRequestPayload,
    HandshakeResponsePayload, KmsEncryptionResponse, RequestedClientAction,
};
use rssm_protocol::{Event, Role, Session};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the agent waits for each client answer (`handshakeTimeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The agent's failure text on timeout.
pub const TIMEOUT_MESSAGE: &str =
    "Handshake timed out. Please ensure that you have the latest version of the session manager plugin.";
const ENCRYPTED_MESSAGE: &str = "This session is encrypted using AWS KMS.";

enum Stage {
    AwaitResponse,
    AwaitChallenge {
        cipher: Box<SessionCipher>,
        challenge: Vec<u8>,
    },
}

/// Handshake progress.
pub struct Handshake {
    started: Instant,
    deadline: Instant,
    stage: Stage,
    kms_challenge: Option<String>,
    client_version: Option<String>,
}

/// What the driver should do after an event.
pub enum HandshakeStep {
    /// Keep waiting.
    Continue,
    /// End the session with this error.
    Failed(String),
    /// Start the plugin.
    Complete {
        /// From the HandshakeResponse.
        client_version: Option<String>,
    },
}

impl Handshake {
    /// Sends the HandshakeRequest (seq 0) and starts the clock.
    pub fn start(spec: &AgentSpec, session: &mut Session) -> Handshake {
        let plan = &spec.plan;
        let mut actions = vec![RequestedClientAction {
            action_type: "SessionType".into(),
            action_parameters: json!({
                "SessionType": plan.kind.as_str(),
                "Properties": if plan.kind == SessionKind::Port { plan.properties.clone() } else { serde_json::Value::Null },
            }),
        }];
        let mut kms_challenge = None;
        if let Some(key) = plan
            .kms_key_id
            .as_ref()
            .filter(|_| plan.kind != SessionKind::Port)
        {
            let challenge = kms_random_challenge(session.rng());
            actions.push(RequestedClientAction {
                action_type: "KMSEncryption".into(),
                action_parameters: json!({ "KMSKeyId": key, "Challenge": challenge }),
            });
            kms_challenge = Some(challenge);
        }
        let request = HandshakeRequestPayload {
            agent_version: spec.target.agent_version.clone(),
            requested_client_actions: actions,
        };
        let _ = session.send(PayloadType::HandshakeRequest, to_json(&request));
        let now = Instant::now();
        Handshake {
            started: now,
            deadline: now + HANDSHAKE_TIMEOUT,
            stage: Stage::AwaitResponse,
            kms_challenge,
            client_version: None,
        }
    }

    /// When the current wait times out.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Handles one session event. Client payloads other than the two handshake answers were
    /// already acknowledged by the session and are discarded, as the agent does (§7.6).
    pub fn on_event(
        &mut self,
        event: &Event,
        spec: &AgentSpec,
        session: &mut Session,
    ) -> HandshakeStep {
        let Event::Payload { payload_type, data } = event else {
            return HandshakeStep::Continue;
        };
        match (payload_type, &mut self.stage) {
            (PayloadType::HandshakeResponse, Stage::AwaitResponse) => {
                let resp: HandshakeResponsePayload = match serde_json::from_slice(data) {
                    Ok(r) => r,
                    Err(e) => {
                        return HandshakeStep::Failed(format!(
                            "Failed to unmarshal HandshakeResponse: {e}"
                        ))
                    }
                };
                self.client_version = Some(resp.client_version.clone());
                let mut kms_result = None;
                for action in &resp.processed_client_actions {
                    if action.action_status != 1 {
                        return HandshakeStep::Failed(format!(
                            "{} failed on client with status {} error: {}",
                            action.action_type, action.action_status, action.error
                        ));
                    }
                    if action.action_type == "KMSEncryption" {
                        kms_result = Some(action.action_result.clone());
                    }
                }
                let Some(kms_challenge) = self.kms_challenge.clone() else {
                    return self.complete(session, spec, false);
                };
                let Some(result) = kms_result else {
                    return HandshakeStep::Failed(
                        "KMSEncryption action missing in handshake response".into(),
                    );
                };
                let parsed: KmsEncryptionResponse = match serde_json::from_value(result) {
                    Ok(p) => p,
                    Err(e) => {
                        return HandshakeStep::Failed(format!("Invalid KMSEncryption result: {e}"))
                    }
                };
                let blob = match b64_decode(&parsed.kms_cipher_text_key) {
                    Ok(b) => b,
                    Err(e) => {
                        return HandshakeStep::Failed(format!("Invalid KMSCipherTextKey: {e}"))
                    }
                };
                let mut context = BTreeMap::from([
                    (CONTEXT_SESSION_ID.to_owned(), spec.session_id.clone()),
                    (CONTEXT_TARGET_ID.to_owned(), spec.target.id.clone()),
                ]);
                if parsed.challenge_acknowledgement == Some(true) {
                    context.insert(CONTEXT_RANDOM_CHALLENGE.to_owned(), kms_challenge);
                }
                let key =
                    match spec
                        .state
                        .kms
                        .decrypt(&blob, spec.plan.kms_key_id.as_deref(), &context)
                    {
                        Ok((_, key)) => key,
                        Err(e) => {
                            return HandshakeStep::Failed(format!(
                                "Failed to decrypt data key with KMS: {}",
                                e.error_type()
                            ))
                        }
                    };
                let mut cipher = match SessionCipher::new(&key, Role::Agent, session.rng()) {
                    Ok(c) => c,
                    Err(e) => return HandshakeStep::Failed(format!("Invalid data key: {e}")),
                };
                let (challenge, blob) = cipher.make_challenge(session.rng());
                let _ = session.send(
                    PayloadType::EncChallengeRequest,
                    to_json(&EncryptionChallenge {
                        challenge: b64_encode(&blob),
                    }),
                );
                self.deadline = Instant::now() + HANDSHAKE_TIMEOUT;
                self.stage = Stage::AwaitChallenge {
                    cipher: Box::new(cipher),
                    challenge: challenge.to_vec(),
                };
                HandshakeStep::Continue
            }
            (PayloadType::EncChallengeResponse, Stage::AwaitChallenge { cipher, challenge }) => {
                let verified = serde_json::from_slice::<EncryptionChallenge>(data)
                    .ok()
                    .and_then(|c| b64_decode(&c.challenge).ok())
                    .is_some_and(|blob| cipher.verify_challenge(challenge, &blob).is_ok());
                if !verified {
                    return HandshakeStep::Failed("Encryption challenge does not match!".into());
                }
                let stage = std::mem::replace(&mut self.stage, Stage::AwaitResponse);
                if let Stage::AwaitChallenge { cipher, .. } = stage {
                    session.set_cipher(*cipher);
                }
                self.complete(session, spec, true)
            }
            _ => HandshakeStep::Continue,
        }
    }

    fn complete(
        &mut self,
        session: &mut Session,
        _spec: &AgentSpec,
        encrypted: bool,
    ) -> HandshakeStep {
        let complete = HandshakeCompletePayload {
            handshake_time_to_complete: self.started.elapsed().as_nanos() as i64,
            customer_message: if encrypted {
                ENCRYPTED_MESSAGE.into()
            } else {
                String::new()
            },
        };
        let _ = session.send(PayloadType::HandshakeComplete, to_json(&complete));
        HandshakeStep::Complete {
            client_version: self.client_version.clone(),
        }
    }
}

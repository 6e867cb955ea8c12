//! The client's handshake steps inside a [`Session`]: answering the HandshakeRequest, the KMS
//! data key and challenge, and HandshakeComplete (PROTOCOL.md §7, §8).

use crate::crypto::{b64_decode, b64_encode, SessionCipher};
use crate::handshake::{process_request, DataKey, DataKeyProvider, PendingResponse};
use crate::message::{AgentMessage, PayloadType};
use crate::payload::{
    to_json, EncryptionChallenge, HandshakeCompletePayload, HandshakeRequestPayload,
};
use crate::Role;

use super::{CloseReason, Event, HandshakeState, Session};

impl Session {
    pub(super) fn on_handshake_message(&mut self, msg: &AgentMessage) {
        match msg.payload_type {
            PayloadType::HandshakeRequest => {
                let req: HandshakeRequestPayload = match serde_json::from_slice(&msg.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        return self.close_with(CloseReason::Handshake(format!(
                            "malformed HandshakeRequest: {e}"
                        )))
                    }
                };
                let pending = process_request(
                    &req,
                    &self.config.session_id,
                    &self.config.target_id,
                    self.config.acknowledge_kms_challenge,
                );
                if let Some(info) = &pending.session_type {
                    self.session_type = Some(info.clone());
                    self.events.push_back(Event::SessionType(info.clone()));
                }
                if let Some(kr) = &pending.kms_request {
                    self.events.push_back(Event::DataKeyRequired(kr.clone()));
                    self.handshake = HandshakeState::AwaitingDataKey(Box::new(pending));
                } else {
                    self.respond(&pending);
                }
            }
            PayloadType::EncChallengeRequest => {
                let answer = serde_json::from_slice::<EncryptionChallenge>(&msg.payload)
                    .map_err(|e| CloseReason::Handshake(format!("malformed challenge: {e}")))
                    .and_then(|c| b64_decode(&c.challenge).map_err(CloseReason::Crypto))
                    .and_then(|blob| match self.cipher.as_mut() {
                        Some(cipher) => cipher
                            .answer_challenge(&blob, &mut self.rng)
                            .map_err(CloseReason::Crypto),
                        None => Err(CloseReason::Handshake(
                            "encryption challenge before a KMS key was agreed".into(),
                        )),
                    });
                match answer {
                    Ok(blob) => {
                        let json = to_json(&EncryptionChallenge {
                            challenge: b64_encode(&blob),
                        });
                        let _ = self.send(PayloadType::EncChallengeResponse, json);
                    }
                    Err(reason) => self.close_with(reason),
                }
            }
            PayloadType::HandshakeComplete => {
                let done: HandshakeCompletePayload = serde_json::from_slice(&msg.payload)
                    .unwrap_or(HandshakeCompletePayload {
                        handshake_time_to_complete: 0,
                        customer_message: String::new(),
                    });
                if self.session_type.is_none() {
                    // The plugin aborts the same way (§7.2).
                    return self.close_with(CloseReason::Handshake(
                        "unable to determine SessionType".into(),
                    ));
                }
                self.handshake = HandshakeState::Done;
                self.events.push_back(Event::HandshakeComplete {
                    customer_message: done.customer_message,
                    encrypted: self.cipher.is_some(),
                });
            }
            _ => unreachable!("only handshake payload types are routed here"),
        }
    }

    fn respond(&mut self, pending: &PendingResponse) {
        let response = pending.response(&self.config.client_version);
        self.handshake = HandshakeState::Responded;
        let _ = self.send(PayloadType::HandshakeResponse, to_json(&response));
    }

    /// Answers [`Event::DataKeyRequired`]: installs the cipher (encryption starts before the
    /// response is sent, §8.4) and sends the HandshakeResponse; an error is reported to the agent
    /// as a failed action, which makes it end the session.
    pub fn provide_data_key(&mut self, result: Result<DataKey, String>) {
        let HandshakeState::AwaitingDataKey(mut pending) =
            std::mem::replace(&mut self.handshake, HandshakeState::Responded)
        else {
            return;
        };
        let result = result.and_then(|key| {
            SessionCipher::new(&key.plaintext, Role::Client, &mut self.rng)
                .map(|c| (key, c))
                .map_err(|e| e.to_string())
        });
        let key = match result {
            Ok((key, cipher)) => {
                self.cipher = Some(cipher);
                Ok(key)
            }
            Err(e) => Err(e),
        };
        pending.complete_kms(&key, self.config.acknowledge_kms_challenge);
        self.respond(&pending);
    }

    /// Answers a pending [`Event::DataKeyRequired`] synchronously through `provider`.
    pub fn resolve_data_key(&mut self, provider: &mut impl DataKeyProvider) {
        if let HandshakeState::AwaitingDataKey(p) = &self.handshake {
            let Some(req) = p.kms_request.clone() else {
                return;
            };
            let result = provider.generate_data_key(&req);
            self.provide_data_key(result);
        }
    }
}

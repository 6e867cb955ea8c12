//! Stream messages from the peer: ordering, readiness ("handler not ready", §6.3), decryption
//! and the events they become.

use bytes::Bytes;

use super::{CloseReason, Event, HandshakeState, Session};
use crate::handshake::{SessionType, SessionTypeInfo};
use crate::incoming::Arrival;
use crate::message::{AgentMessage, PayloadType};
use crate::payload::{parse_exit_code, Flag};
use crate::Role;

impl Session {
    pub(super) fn is_handshake_type(&self, pt: PayloadType) -> bool {
        self.config.role == Role::Client
            && self.config.handle_handshake
            && matches!(
                pt,
                PayloadType::HandshakeRequest
                    | PayloadType::HandshakeComplete
                    | PayloadType::EncChallengeRequest
            )
    }

    pub(super) fn on_stream_message(&mut self, msg: AgentMessage) {
        // Out of order or repeated arrivals mean loss or a retransmitting peer: ack them at once,
        // with whatever was held, so that the peer's repair is not slowed by our delay.
        match self.incoming.arrive(&msg) {
            Arrival::InOrder => {
                let gap_filled = !self.incoming.is_empty();
                if self.is_handshake_type(msg.payload_type) {
                    // The plugin acks handshake messages before processing them (§6.3).
                    self.queue_ack(&msg);
                    self.incoming.advance();
                    self.on_handshake_message(&msg);
                } else if self.ready {
                    self.queue_ack(&msg);
                    self.incoming.advance();
                    self.deliver(msg);
                } else {
                    self.stats.not_ready_drops += 1;
                    return;
                }
                if gap_filled {
                    self.flush_acks();
                }
                self.drain_incoming();
            }
            Arrival::Buffered => self.ack_at_once(&msg),
            Arrival::AlreadyBuffered => {
                self.stats.duplicates_received += 1;
                self.ack_at_once(&msg);
            }
            Arrival::Full | Arrival::TooFarAhead => self.stats.reorder_overflow_drops += 1,
            Arrival::Duplicate => {
                // Re-ack: the ack may have been lost, and a peer that never hears it retransmits
                // forever (the agent stalls under loss with the official client, §6.3).
                self.stats.duplicates_received += 1;
                self.ack_at_once(&msg);
            }
        }
    }

    /// Delivers buffered messages that are now in order (already acknowledged when stored).
    pub(super) fn drain_incoming(&mut self) {
        while !self.closed {
            let Some(msg) = self.incoming.take_next() else {
                return;
            };
            if self.is_handshake_type(msg.payload_type) {
                self.incoming.advance();
                self.on_handshake_message(&msg);
            } else if self.ready {
                self.incoming.advance();
                self.deliver(msg);
            } else {
                self.incoming.put_back(msg);
                return;
            }
        }
    }

    pub(super) fn deliver(&mut self, msg: AgentMessage) {
        let pt = msg.payload_type;
        let data = if self.decrypts(pt) {
            match self.cipher.as_ref().map(|c| c.decrypt(&msg.payload)) {
                Some(Ok(plain)) => Bytes::from(plain),
                Some(Err(e)) => return self.close_with(CloseReason::Crypto(e)),
                None => msg.payload,
            }
        } else {
            msg.payload
        };
        self.stats.payload_bytes_received += data.len() as u64;
        // A shell without handshake announces itself with its first Output (§7.6).
        if self.config.role == Role::Client
            && matches!(self.handshake, HandshakeState::NotStarted)
            && pt == PayloadType::Output
        {
            self.handshake = HandshakeState::Done;
            let info = SessionTypeInfo {
                session_type: SessionType::StandardStream,
                properties: serde_json::Value::Null,
                agent_version: None,
            };
            self.session_type = Some(info.clone());
            self.events.push_back(Event::SessionType(info));
        }
        let event = match pt {
            PayloadType::Output => Event::Output(data),
            PayloadType::StdErr => Event::StdErr(data),
            PayloadType::ExitCode => match parse_exit_code(&data) {
                Some(code) => Event::ExitCode(code),
                None => Event::Payload {
                    payload_type: pt,
                    data,
                },
            },
            PayloadType::Flag => match Flag::from_bytes(&data) {
                Some(f) => Event::Flag(f),
                None => Event::Payload {
                    payload_type: pt,
                    data,
                },
            },
            PayloadType::Size => match serde_json::from_slice(&data) {
                Ok(s) => Event::Size(s),
                Err(_) => Event::Payload {
                    payload_type: pt,
                    data,
                },
            },
            _ => Event::Payload {
                payload_type: pt,
                data,
            },
        };
        self.events.push_back(event);
    }
}

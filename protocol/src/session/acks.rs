//! Acknowledgements: held briefly so several leave in one write, let out at once when the peer
//! repairs a loss or seems to wait for them (see [`super::config::ACK_DELAY`]).

use std::time::Instant;

use uuid::Uuid;

use super::config::{ACK_BATCH, QUICK_ACKS_FOR};
use super::{Session, ACK_FLAGS};
use crate::message::{AgentMessage, MessageType, PayloadType};
use crate::payload::{to_json, AcknowledgeContent};

impl Session {
    pub(super) fn queue_ack(&mut self, msg: &AgentMessage) {
        let content = AcknowledgeContent {
            message_type: msg.message_type.as_str().to_owned(),
            message_id: msg.message_id.hyphenated().to_string(),
            sequence_number: msg.sequence_number,
            is_sequential_message: true,
        };
        let ack = AgentMessage::new(
            MessageType::Acknowledge,
            0,
            ACK_FLAGS,
            0,
            Uuid::nil(),
            PayloadType::Undefined,
            to_json(&content),
        );
        let frame = self.encode_fresh(ack);
        if self.acks.is_empty() {
            self.acks_due = Some(self.now + self.config.ack_delay.unwrap_or_default());
        }
        self.acks.push_back(frame);
        if self.quick_acks > 0 {
            self.quick_acks -= 1;
            self.flush_acks();
        } else if self.acks.len() >= ACK_BATCH {
            self.flush_acks();
        }
    }

    /// Sends the held acknowledgements with the next [`Session::poll_transmit`], whatever their
    /// delay (a full batch, a gap, quick acks; or a caller that read the frames late already).
    pub fn flush_acks(&mut self) {
        if !self.acks.is_empty() {
            self.acks_due = Some(self.now);
            self.acks_hurried = true;
        }
    }

    /// Whether the held acknowledgements go out at `now`.
    pub(super) fn acks_ready(&self, now: Instant) -> bool {
        !self.acks.is_empty() && (self.closed || self.acks_due.is_none_or(|t| now >= t))
    }

    /// Acknowledges `msg` and sends that with whatever was held.
    pub(super) fn ack_at_once(&mut self, msg: &AgentMessage) {
        self.queue_ack(msg);
        self.flush_acks();
    }

    /// Whether the peer seems to wait for our acknowledgements: a gap in what it sent is being
    /// repaired, or the last ones went out by their delay (it sends no faster than it hears from
    /// us). Reading its frames late would slow it down.
    pub fn peer_waits(&self) -> bool {
        let quick = self.quick_acks > 0 && self.now < self.quick_acks_since + QUICK_ACKS_FOR;
        quick || !self.incoming.is_empty()
    }
}

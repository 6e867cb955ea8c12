//! What a [`super::Session`] reports to its caller, and why it refuses things.

use std::time::Duration;

use bytes::Bytes;

use crate::crypto::CryptoError;
use crate::handshake::{DataKeyRequest, SessionTypeInfo};
use crate::message::{DecodeError, PayloadType, ValidationError};
use crate::payload::{AgentSessionStatePayload, ChannelClosed, Flag, SizeData};

/// Something the caller must act on, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The session type is known: from the HandshakeRequest, or inferred from a first Output
    /// message of a handshake-less shell (§7.6).
    SessionType(SessionTypeInfo),
    /// The handshake needs a KMS data key; answer with [`super::Session::provide_data_key`].
    DataKeyRequired(DataKeyRequest),
    /// The agent finished the handshake; the session may carry data now.
    HandshakeComplete {
        /// Text to show the user when non-empty.
        customer_message: String,
        /// Whether Output is encrypted with KMS.
        encrypted: bool,
    },
    /// Stream bytes (decrypted): terminal or TCP or smux data.
    Output(Bytes),
    /// Standard error of a non-interactive command (decrypted).
    StdErr(Bytes),
    /// A command's exit code.
    ExitCode(i32),
    /// A control flag.
    Flag(Flag),
    /// A terminal size (what an agent receives).
    Size(SizeData),
    /// Any other in-order stream payload, e.g. HandshakeResponse for an agent.
    Payload {
        /// Its type.
        payload_type: PayloadType,
        /// Its bytes (decrypted where the role decrypts that type).
        data: Bytes,
    },
    /// The gateway closed the session (§10.1). Nothing more will arrive.
    ChannelClosed(ChannelClosed),
    /// The gateway paused our publication (peer away).
    PublicationPaused,
    /// The gateway resumed our publication.
    PublicationStarted,
    /// The agent reported its state (normally consumed by the gateway).
    AgentSessionState(AgentSessionStatePayload),
    /// The session ended on our side; see the reason.
    Closed(CloseReason),
}

/// Why a session ended without a `channel_closed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The peer stopped acknowledging.
    #[error("the remote end stopped acknowledging data: no ack for {waited:?} after {attempts} transmissions")]
    GaveUp {
        /// How long the oldest message waited.
        waited: Duration,
        /// How often it was sent.
        attempts: u32,
    },
    /// A payload failed to decrypt or authenticate.
    #[error("encrypted data from the remote end failed to decrypt: {0}")]
    Crypto(CryptoError),
    /// The handshake could not be completed.
    #[error("session handshake failed: {0}")]
    Handshake(String),
    /// [`super::Session::close`] was called.
    #[error("closed locally")]
    Local,
}

/// Why [`super::Session::send`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is over.
    #[error("the session is closed")]
    Closed,
    /// Too many unacknowledged messages: wait for acks (backpressure).
    #[error("too many unacknowledged messages")]
    BufferFull,
    /// Neither reference implementation can carry an empty payload (§2.2).
    #[error("empty payloads cannot be sent")]
    Empty,
}

/// Why a received frame was ignored. Ignored frames are never acknowledged (§2.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// It did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// It decoded but failed validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// An acknowledge whose JSON did not parse.
    #[error("malformed acknowledge payload")]
    BadAck,
    /// A message type this role does not expect.
    #[error("unexpected message type {0}")]
    Unexpected(String),
    /// The session already ended.
    #[error("session closed")]
    Closed,
}

//! The 120-byte-header agent message, the unit of everything on the data channel (PROTOCOL.md §2).
//!
//! Both ends use the same layout; the plugin calls it `ClientMessage`, the agent `AgentMessage`. All
//! integers are big-endian. The payload offset is taken from the HeaderLength field (§2.3, §14.1),
//! not from PayloadLength, exactly as both reference readers do.

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Value written into the HeaderLength field: the offset of PayloadLength (§2.1).
pub const HEADER_LENGTH: u32 = 116;
/// Bytes before the payload: HeaderLength + 4 (the PayloadLength field).
pub const HEADER_SIZE: usize = 120;
/// Width of the space-padded MessageType field.
pub const MESSAGE_TYPE_LEN: usize = 32;
/// The only SchemaVersion either implementation writes.
pub const SCHEMA_VERSION: u32 = 1;
/// Most payload bytes in one stream message: what the peers' reads produce (the plugin reads
/// stdin and sockets, the agent its pty and connections, 1024 bytes at a time, §12). Larger
/// messages decode, but the agent's handlers expect no more.
pub const MAX_STREAM_PAYLOAD: usize = 1024;

/// The CreatedDate of a message made at wall-clock time `t`: milliseconds since the Unix epoch,
/// 1 for a clock set before it (0 is refused by the validation, §2).
pub fn created_date_at(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
        .max(1)
}

const OFF_MESSAGE_TYPE: usize = 4;
const OFF_SCHEMA_VERSION: usize = 36;
const OFF_CREATED_DATE: usize = 40;
const OFF_SEQUENCE: usize = 48;
const OFF_FLAGS: usize = 56;
const OFF_MESSAGE_ID: usize = 64;
const OFF_DIGEST: usize = 80;
const OFF_PAYLOAD_TYPE: usize = 112;
const OFF_PAYLOAD_LENGTH: usize = 116;

/// The `MessageType` header field (§3). Unknown strings are kept verbatim so a relay can pass them on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Client → agent stream data (keystrokes, TCP bytes, Size, Flag, handshake answers).
    InputStreamData,
    /// Agent → client stream data (output, handshake requests, flags).
    OutputStreamData,
    /// Acknowledgement of one stream message, in either direction.
    Acknowledge,
    /// The gateway telling a side that the session is over (§10).
    ChannelClosed,
    /// The gateway telling a side it may send again.
    StartPublication,
    /// The gateway telling a side to stop sending: its peer is away (§6.5).
    PausePublication,
    /// Agent → gateway session state (`Connected`, `Terminating`); consumed by the gateway.
    AgentSessionState,
    /// Anything else (control-channel types, future additions).
    Other(String),
}

impl MessageType {
    /// The wire string of this message type.
    pub fn as_str(&self) -> &str {
        match self {
            MessageType::InputStreamData => "input_stream_data",
            MessageType::OutputStreamData => "output_stream_data",
            MessageType::Acknowledge => "acknowledge",
            MessageType::ChannelClosed => "channel_closed",
            MessageType::StartPublication => "start_publication",
            MessageType::PausePublication => "pause_publication",
            MessageType::AgentSessionState => "agent_session_state",
            MessageType::Other(s) => s,
        }
    }

    /// Stream-data types carry sequence numbers and are acknowledged (§6.1).
    pub fn is_stream_data(&self) -> bool {
        matches!(
            self,
            MessageType::InputStreamData | MessageType::OutputStreamData
        )
    }
}

impl From<&str> for MessageType {
    fn from(s: &str) -> Self {
        match s {
            "input_stream_data" => MessageType::InputStreamData,
            "output_stream_data" => MessageType::OutputStreamData,
            "acknowledge" => MessageType::Acknowledge,
            "channel_closed" => MessageType::ChannelClosed,
            "start_publication" => MessageType::StartPublication,
            "pause_publication" => MessageType::PausePublication,
            "agent_session_state" => MessageType::AgentSessionState,
            other => MessageType::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `PayloadType` header field (§4). Values no one defines are kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// 0: non-stream messages (acks, state, channel_closed).
    Undefined,
    /// 1: raw bytes: terminal I/O, TCP data, the smux byte stream.
    Output,
    /// 2: defined but unused by either implementation.
    Error,
    /// 3: terminal size JSON, client → agent.
    Size,
    /// 4: defined but unused.
    Parameter,
    /// 5: agent → client handshake start.
    HandshakeRequest,
    /// 6: client → agent handshake answer.
    HandshakeResponse,
    /// 7: agent → client handshake end.
    HandshakeComplete,
    /// 8: agent → client KMS challenge.
    EncChallengeRequest,
    /// 9: client → agent KMS challenge answer.
    EncChallengeResponse,
    /// 10: 4-byte big-endian control flag (port sessions).
    Flag,
    /// 11: agent → client standard error of non-interactive commands.
    StdErr,
    /// 12: agent → client `EXIT_CODE: <n>` text.
    ExitCode,
    /// Any other value, preserved.
    Unknown(u32),
}

impl From<u32> for PayloadType {
    fn from(v: u32) -> Self {
        match v {
            0 => PayloadType::Undefined,
            1 => PayloadType::Output,
            2 => PayloadType::Error,
            3 => PayloadType::Size,
            4 => PayloadType::Parameter,
            5 => PayloadType::HandshakeRequest,
            6 => PayloadType::HandshakeResponse,
            7 => PayloadType::HandshakeComplete,
            8 => PayloadType::EncChallengeRequest,
            9 => PayloadType::EncChallengeResponse,
            10 => PayloadType::Flag,
            11 => PayloadType::StdErr,
            12 => PayloadType::ExitCode,
            other => PayloadType::Unknown(other),
        }
    }
}

impl From<PayloadType> for u32 {
    fn from(p: PayloadType) -> u32 {
        match p {
            PayloadType::Undefined => 0,
            PayloadType::Output => 1,
            PayloadType::Error => 2,
            PayloadType::Size => 3,
            PayloadType::Parameter => 4,
            PayloadType::HandshakeRequest => 5,
            PayloadType::HandshakeResponse => 6,
            PayloadType::HandshakeComplete => 7,
            PayloadType::EncChallengeRequest => 8,
            PayloadType::EncChallengeResponse => 9,
            PayloadType::Flag => 10,
            PayloadType::StdErr => 11,
            PayloadType::ExitCode => 12,
            PayloadType::Unknown(v) => v,
        }
    }
}

/// Why a frame could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed header.
    #[error("agent message too short: {0} bytes, the header alone is 120")]
    TooShort(usize),
    /// HeaderLength points past the end of the frame.
    #[error("agent message header length {header_length} does not fit a {frame_len}-byte frame")]
    BadHeaderLength {
        /// The HeaderLength field.
        header_length: u32,
        /// Length of the whole frame.
        frame_len: usize,
    },
    /// The MessageType field is not ASCII/UTF-8.
    #[error("agent message type is not valid text")]
    BadMessageType,
}

/// Why a decoded message must be ignored (§2.7). Such messages are logged and never acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// HeaderLength was zero.
    #[error("header length is zero")]
    ZeroHeaderLength,
    /// MessageType was empty after trimming.
    #[error("message type is empty")]
    EmptyMessageType,
    /// CreatedDate was zero.
    #[error("created date is zero")]
    ZeroCreatedDate,
    /// SHA-256 of the payload differs from PayloadDigest.
    #[error("payload digest does not match the payload")]
    DigestMismatch,
}

/// One agent message: the fixed header fields plus the payload (§2.1).
///
/// Decoding keeps the received digest, header length and payload length so that odd frames (§14) can
/// be inspected and validated; encoding always writes HeaderLength 116, recomputes PayloadLength and the
/// SHA-256 digest, as both reference writers do (§2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentMessage {
    /// Kind of message.
    pub message_type: MessageType,
    /// Always 1 when written by us; not checked on receipt.
    pub schema_version: u32,
    /// Unix epoch milliseconds.
    pub created_date: u64,
    /// Per-direction stream sequence number; 0 for non-stream messages.
    pub sequence_number: i64,
    /// Bit 0 SYN, bit 1 FIN; no receiver reads them (§2.5).
    pub flags: u64,
    /// Random per-message id (v4 UUID), stored with its halves swapped on the wire (§2.4).
    pub message_id: Uuid,
    /// What the payload holds.
    pub payload_type: PayloadType,
    /// The payload bytes (ciphertext when KMS encryption is on).
    pub payload: Bytes,
    /// Fields only meaningful on a decoded message.
    pub received: Option<ReceivedHeader>,
}

/// Header fields as they arrived, kept for validation of a decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedHeader {
    /// The HeaderLength field (116 from every known writer).
    pub header_length: u32,
    /// The PayloadLength field, which readers do not use to slice (§2.3).
    pub payload_length: u32,
    /// The PayloadDigest field.
    pub digest: [u8; 32],
}

impl AgentMessage {
    /// A new message to send; `received` is `None`.
    pub fn new(
        message_type: MessageType,
        sequence_number: i64,
        flags: u64,
        created_date: u64,
        message_id: Uuid,
        payload_type: PayloadType,
        payload: Bytes,
    ) -> Self {
        AgentMessage {
            message_type,
            schema_version: SCHEMA_VERSION,
            created_date,
            sequence_number,
            flags,
            message_id,
            payload_type,
            payload,
            received: None,
        }
    }

    /// Length of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE + self.payload.len()
    }

    /// Serializes to a websocket frame (§2.2). Computes the one SHA-256 of the payload.
    ///
    /// A message type longer than 32 bytes is truncated; no known type is. Empty payloads are
    /// encoded faithfully, but the session layer never produces them (§2.2: the reference
    /// implementations cannot serialize them, so peers never see one).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Appends the encoded frame to `buf`.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u32(HEADER_LENGTH);
        let mut mt = [b' '; MESSAGE_TYPE_LEN];
        let name = self.message_type.as_str().as_bytes();
        let n = name.len().min(MESSAGE_TYPE_LEN);
        mt[..n].copy_from_slice(&name[..n]);
        buf.put_slice(&mt);
        buf.put_u32(self.schema_version);
        buf.put_u64(self.created_date);
        buf.put_i64(self.sequence_number);
        buf.put_u64(self.flags);
        buf.put_slice(&uuid_to_wire(&self.message_id));
        buf.put_slice(&Sha256::digest(&self.payload));
        buf.put_u32(self.payload_type.into());
        buf.put_u32(self.payload.len() as u32);
        buf.put_slice(&self.payload);
    }

    /// Parses a websocket frame. Never panics; the payload is a zero-copy slice of `frame`.
    ///
    /// Like both reference readers, the payload is `frame[HL+4..]` whatever PayloadLength says, and
    /// MessageType is trimmed of NULs and whitespace. Call [`AgentMessage::validate`] before acting on it.
    pub fn decode(frame: Bytes) -> Result<AgentMessage, DecodeError> {
        if frame.len() < HEADER_SIZE {
            return Err(DecodeError::TooShort(frame.len()));
        }
        let header_length = be_u32(&frame, 0);
        // Go slices `input[HL+4:]`: any HL that keeps the start inside the frame is accepted, even one
        // pointing into the header (odd publication messages, §14); validate() rejects HL == 0 later.
        let payload_start = header_length as u64 + 4;
        if payload_start > frame.len() as u64 {
            return Err(DecodeError::BadHeaderLength {
                header_length,
                frame_len: frame.len(),
            });
        }
        let raw_type = &frame[OFF_MESSAGE_TYPE..OFF_MESSAGE_TYPE + MESSAGE_TYPE_LEN];
        let text =
            std::str::from_utf8(trim_nuls(raw_type)).map_err(|_| DecodeError::BadMessageType)?;
        let message_type = MessageType::from(text.trim());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&frame[OFF_DIGEST..OFF_DIGEST + 32]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&frame[OFF_MESSAGE_ID..OFF_MESSAGE_ID + 16]);
        let payload = frame.slice(payload_start as usize..);
        Ok(AgentMessage {
            message_type,
            schema_version: be_u32(&frame, OFF_SCHEMA_VERSION),
            created_date: be_u64(&frame, OFF_CREATED_DATE),
            sequence_number: be_u64(&frame, OFF_SEQUENCE) as i64,
            flags: be_u64(&frame, OFF_FLAGS),
            message_id: uuid_from_wire(&id),
            payload_type: PayloadType::from(be_u32(&frame, OFF_PAYLOAD_TYPE)),
            payload,
            received: Some(ReceivedHeader {
                header_length,
                payload_length: be_u32(&frame, OFF_PAYLOAD_LENGTH),
                digest,
            }),
        })
    }

    /// The plugin's receive-side checks (§2.7), the stricter of the two implementations: publication
    /// messages are accepted unconditionally; otherwise HeaderLength, MessageType and CreatedDate
    /// must be non-zero and, when PayloadLength ≠ 0, the digest must match.
    ///
    /// Messages built locally (not decoded) always validate.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let Some(rx) = &self.received else {
            return Ok(());
        };
        if matches!(
            self.message_type,
            MessageType::StartPublication | MessageType::PausePublication
        ) {
            return Ok(());
        }
        if rx.header_length == 0 {
            return Err(ValidationError::ZeroHeaderLength);
        }
        if self.message_type.as_str().is_empty() {
            return Err(ValidationError::EmptyMessageType);
        }
        if self.created_date == 0 {
            return Err(ValidationError::ZeroCreatedDate);
        }
        if rx.payload_length != 0 && Sha256::digest(&self.payload)[..] != rx.digest[..] {
            return Err(ValidationError::DigestMismatch);
        }
        Ok(())
    }
}

fn trim_nuls(mut s: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., 0] = s {
        s = rest;
    }
    s
}

fn be_u32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// Wire form of a MessageId: the canonical bytes' second half first (§2.4).
pub fn uuid_to_wire(id: &Uuid) -> [u8; 16] {
    let u = id.as_bytes();
    let mut w = [0u8; 16];
    w[..8].copy_from_slice(&u[8..]);
    w[8..].copy_from_slice(&u[..8]);
    w
}

/// Inverse of [`uuid_to_wire`].
pub fn uuid_from_wire(w: &[u8; 16]) -> Uuid {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&w[8..]);
    u[8..].copy_from_slice(&w[..8]);
    Uuid::from_bytes(u)
}

#[cfg(test)]
mod tests;

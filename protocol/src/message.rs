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
mod tests {
    use super::*;

    const CREATED: u64 = 1503434274948;
    const ID: &str = "dd01e56b-ff48-483e-a508-b5f073f31b16";

    fn hex(s: &str) -> Vec<u8> {
        let clean: String = s
            .lines()
            .map(|l| l.split_once(':').map_or(l, |(_, r)| r))
            .map(|l| l.split("  ").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        ::hex::decode(clean.split_whitespace().collect::<String>()).unwrap()
    }

    fn msg(mt: MessageType, seq: i64, flags: u64, pt: PayloadType, payload: &[u8]) -> AgentMessage {
        AgentMessage::new(
            mt,
            seq,
            flags,
            CREATED,
            Uuid::parse_str(ID).unwrap(),
            pt,
            Bytes::copy_from_slice(payload),
        )
    }

    /// Encodes, compares with the vector, decodes the vector and compares every field.
    fn assert_vector(m: &AgentMessage, expected: &[u8]) {
        assert_eq!(m.encode().as_ref(), expected, "encode");
        let d = AgentMessage::decode(Bytes::copy_from_slice(expected)).unwrap();
        d.validate().unwrap();
        assert_eq!(d.message_type, m.message_type);
        assert_eq!(d.schema_version, 1);
        assert_eq!(d.created_date, m.created_date);
        assert_eq!(d.sequence_number, m.sequence_number);
        assert_eq!(d.flags, m.flags);
        assert_eq!(d.message_id, m.message_id);
        assert_eq!(d.payload_type, m.payload_type);
        assert_eq!(d.payload, m.payload);
        let rx = d.received.unwrap();
        assert_eq!(rx.header_length, 116);
        assert_eq!(rx.payload_length as usize, m.payload.len());
    }

    const TV1: &str = "
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: 23 9f 59 ed 55 e7 37 c7 71 47 cf 55 ad 0c 1b 03
0060: 0b 6d 7e e7 48 a7 42 69 52 f9 b8 52 d5 a9 35 e5
0070: 00 00 00 00 00 00 00 07 70 61 79 6c 6f 61 64";

    #[test]
    fn tv1_plugin_test_message() {
        let m = msg(
            MessageType::InputStreamData,
            1,
            2,
            PayloadType::Undefined,
            b"payload",
        );
        let v = hex(TV1);
        assert_eq!(v.len(), 127);
        assert_vector(&m, &v);
    }

    #[test]
    fn tv2_agent_test_message() {
        let mut v = hex(TV1);
        let mut field = [b' '; 32];
        field[..17].copy_from_slice(b"interactive_shell");
        v[4..36].copy_from_slice(&field);
        let m = msg(
            MessageType::Other("interactive_shell".into()),
            1,
            2,
            PayloadType::Undefined,
            b"payload",
        );
        assert_vector(&m, &v);
    }

    #[test]
    fn tv3_acknowledge() {
        let payload = br#"{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":2,"IsSequentialMessage":true}"#;
        let mut v = hex("
0000: 00 00 00 74 61 63 6b 6e 6f 77 6c 65 64 67 65 20
0010: 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03
0040: 80 b4 00 c0 4f d4 30 c8 6b a7 b8 14 9d ad 41 d1
0050: 78 a7 e0 a6 66 0b 25 f7 97 58 5b 89 a2 df c4 7d
0060: 31 eb 35 b0 4e 63 c1 d9 5b 8f 2c 82 59 73 24 bd
0070: 00 00 00 00 00 00 00 af");
        v.extend_from_slice(payload);
        assert_eq!(v.len(), 295);
        assert_eq!(&v[0x120..], b"\":true}");
        let mut m = msg(
            MessageType::Acknowledge,
            0,
            3,
            PayloadType::Undefined,
            payload,
        );
        m.message_id = Uuid::parse_str("6ba7b814-9dad-41d1-80b4-00c04fd430c8").unwrap();
        assert_vector(&m, &v);
    }

    #[test]
    fn tv4_terminate_session_flag() {
        let v = hex("
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 00
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: 43 3e bf 5b c0 3d ff a3 85 36 67 32 07 a2 12 81
0060: 61 2c ef 5f aa 9b c7 a4 d5 b9 be 2f db 12 cf 1a
0070: 00 00 00 0a 00 00 00 04 00 00 00 02");
        assert_eq!(v.len(), 124);
        let m = msg(
            MessageType::InputStreamData,
            5,
            0,
            PayloadType::Flag,
            &[0, 0, 0, 2],
        );
        assert_vector(&m, &v);
    }

    #[test]
    fn tv5_streaming_test_message() {
        let v = hex("
0000: 00 00 00 74 6f 75 74 70 75 74 5f 73 74 72 65 61
0010: 6d 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: e2 83 f7 8f bb a7 ce e0 83 74 c7 7d e5 49 73 ac
0060: a4 18 47 88 f3 76 0e a2 b8 05 17 c8 b6 34 3d 92
0070: 00 00 00 01 00 00 00 0c 74 65 73 74 50 61 79 6c
0080: 6f 61 64 30");
        assert_eq!(v.len(), 132);
        let m = msg(
            MessageType::OutputStreamData,
            0,
            2,
            PayloadType::Output,
            b"testPayload0",
        );
        assert_vector(&m, &v);
    }

    #[test]
    fn tv6_size_message() {
        let v = hex("
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 00
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: e1 53 7a d4 74 9d 88 db 6f 6d 97 ed 16 e4 43 de
0060: e6 ba 30 c4 3a fa 2c 48 75 bb 14 32 f0 7d 8b 3a
0070: 00 00 00 03 00 00 00 17 7b 22 63 6f 6c 73 22 3a
0080: 33 30 30 2c 22 72 6f 77 73 22 3a 31 30 30 7d");
        assert_eq!(v.len(), 143);
        let m = msg(
            MessageType::InputStreamData,
            3,
            0,
            PayloadType::Size,
            br#"{"cols":300,"rows":100}"#,
        );
        assert_vector(&m, &v);
    }

    #[test]
    fn message_id_halves_are_swapped_on_the_wire() {
        let id = Uuid::parse_str(ID).unwrap();
        assert_eq!(
            uuid_to_wire(&id).to_vec(),
            hex("a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e")
        );
        assert_eq!(uuid_from_wire(&uuid_to_wire(&id)), id);
    }

    // The small integer vectors of §15: our fields are written with BufMut's big-endian puts and read
    // with be_u32/be_u64; these pin the same byte layouts the reference tests assert.
    #[test]
    fn small_integer_vectors() {
        let mut b = BytesMut::new();
        b.put_i64(5747283);
        assert_eq!(b.as_ref(), hex("00 00 00 00 00 57 b2 53"));

        let mut ten = vec![0u8; 10];
        ten[1..9].copy_from_slice(&92837273i64.to_be_bytes());
        assert_eq!(ten, hex("00 00 00 00 00 05 88 95 99 00"));

        assert_eq!(50i64.to_be_bytes().to_vec(), hex("00 00 00 00 00 00 00 32"));

        let mut five = vec![0u8; 5];
        five[..4].copy_from_slice(&324u32.to_be_bytes());
        assert_eq!(five, hex("00 00 01 44 00"));

        let mut eight = vec![0u8; 8];
        eight[1..5].copy_from_slice(&520392u32.to_be_bytes());
        assert_eq!(eight, hex("00 00 07 f0 c8 00 00 00"));

        assert_eq!(be_u64(&hex("00 00 00 00 00 5a 05 66 00"), 0), 5899622);

        let mut nine = vec![0u8; 9];
        nine[1..9].copy_from_slice(&4294967296i64.to_be_bytes());
        assert_eq!(&nine[1..9], hex("00 00 00 01 00 00 00 00").as_slice());
        assert_eq!(be_u64(&nine, 1), 4294967296);

        assert_eq!(
            be_u64(&hex("00 00 00 00 00 00 01 00 01 00 00 00"), 1),
            65537
        );
        assert_eq!(be_u32(&hex("00 00 00 00 ff 00"), 1), 255);
        assert_eq!(be_u32(&hex("00 00 00 01 00 00"), 2), 65536);
        assert_eq!(trim_nuls(&hex("72 77 00")), b"rw");
    }

    #[test]
    fn message_type_accepts_nul_and_space_padding() {
        let mut v = hex(TV1);
        for b in &mut v[21..36] {
            *b = 0;
        }
        let d = AgentMessage::decode(Bytes::from(v)).unwrap();
        assert_eq!(d.message_type, MessageType::InputStreamData);
    }

    #[test]
    fn payload_comes_from_header_length_not_payload_length() {
        let mut v = hex(TV1);
        v[116..120].copy_from_slice(&100u32.to_be_bytes()); // lie about the length
        let d = AgentMessage::decode(Bytes::from(v)).unwrap();
        assert_eq!(d.payload.as_ref(), b"payload");
        // The digest still matches the real payload, so the message is valid (§2.3).
        d.validate().unwrap();
    }

    #[test]
    fn validation_rules() {
        let good = hex(TV1);
        let mut bad_digest = good.clone();
        bad_digest[126] ^= 1;
        assert_eq!(
            AgentMessage::decode(Bytes::from(bad_digest))
                .unwrap()
                .validate(),
            Err(ValidationError::DigestMismatch)
        );
        let mut zero_date = good.clone();
        zero_date[40..48].fill(0);
        assert_eq!(
            AgentMessage::decode(Bytes::from(zero_date))
                .unwrap()
                .validate(),
            Err(ValidationError::ZeroCreatedDate)
        );
        let mut empty_type = good.clone();
        empty_type[4..36].fill(b' ');
        assert_eq!(
            AgentMessage::decode(Bytes::from(empty_type))
                .unwrap()
                .validate(),
            Err(ValidationError::EmptyMessageType)
        );
        let mut zero_hl = good.clone();
        zero_hl[0..4].fill(0);
        assert_eq!(
            AgentMessage::decode(Bytes::from(zero_hl))
                .unwrap()
                .validate(),
            Err(ValidationError::ZeroHeaderLength)
        );
    }

    #[test]
    fn publication_messages_with_odd_headers_are_accepted() {
        let mut m = msg(
            MessageType::PausePublication,
            0,
            0,
            PayloadType::Undefined,
            b"x",
        );
        m.created_date = 0;
        let mut v = m.encode().to_vec();
        v[0..4].fill(0); // HeaderLength 0
        v[80..112].fill(0); // bogus digest
        let d = AgentMessage::decode(Bytes::from(v)).unwrap();
        assert_eq!(d.message_type, MessageType::PausePublication);
        d.validate().unwrap();
    }

    #[test]
    fn short_or_overlong_header_length_is_an_error() {
        assert_eq!(
            AgentMessage::decode(Bytes::from_static(&[0; 119])),
            Err(DecodeError::TooShort(119))
        );
        let mut v = hex(TV1);
        v[0..4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            AgentMessage::decode(Bytes::from(v)),
            Err(DecodeError::BadHeaderLength { .. })
        ));
    }

    #[test]
    fn empty_payload_round_trips_as_agent_reads_it() {
        // A 120-byte message (what a peer could send with no payload) decodes to an empty payload
        // with PayloadLength 0, which skips the digest check (§2.3, §2.7).
        let m = msg(MessageType::Acknowledge, 0, 3, PayloadType::Undefined, b"");
        let d = AgentMessage::decode(m.encode()).unwrap();
        assert!(d.payload.is_empty());
        d.validate().unwrap();
    }
}

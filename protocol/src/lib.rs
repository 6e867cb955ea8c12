//! Sans-IO implementation of the AWS Session Manager data-channel protocol: the binary
//! messages that the Session Manager client and the SSM agent exchange through the Message Gateway
//! Service, with acknowledgements, retransmission, the session handshake, KMS encryption and smux.
//!
//! Nothing here does I/O or reads a clock. Like `quinn-proto`, the caller feeds in websocket frames
//! and the current [`std::time::Instant`], and takes out frames to send, timer deadlines and
//! [`Event`]s. That keeps every transition testable with a fake clock and a seeded lossy link.
//!
//! Map of the crate (each file one concern; section numbers refer to PROTOCOL.md):
//! - [`message`]: the 120-byte header codec (§2); [`payload`]: the JSON and binary payloads (§4–§10);
//! - [`outgoing`] / [`incoming`]: the reliability layer's send and reorder buffers (§6);
//! - [`pacing`]: the adaptive token bucket that keeps stream messages under the service's rate;
//! - [`handshake`]: the client's handshake answers and version gates (§7, §9.4);
//! - [`crypto`]: the KMS session cipher (§8); [`smux`]: smux v1 for multiplexed port forwarding (§9.4.3);
//! - [`session`]: the [`Session`] state machine tying them together; [`stats`]: its counters.
//!
//! # Example: a client session answering a port-forwarding handshake
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use rssm_protocol::{Event, Session, SessionConfig, Role, PayloadType};
//!
//! let mut now = Instant::now();
//! let mut client = Session::new(SessionConfig::client("sess-1", "i-0123"), now, 1_700_000_000_000, [1; 32]);
//! // A stand-in agent built on the same machine, with the agent's defaults.
//! let mut agent = Session::new(SessionConfig::agent("sess-1", "i-0123"), now, 1_700_000_000_000, [2; 32]);
//! let request = br#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}"#;
//! agent.send(PayloadType::HandshakeRequest, Bytes::from_static(request)).unwrap();
//!
//! // Move frames both ways until nothing is left to do (a real driver uses a websocket).
//! loop {
//!     let mut moved = false;
//!     while let Some(frame) = agent.poll_transmit(now) { client.handle_frame(frame, now).unwrap(); moved = true; }
//!     while let Some(frame) = client.poll_transmit(now) { agent.handle_frame(frame, now).unwrap(); moved = true; }
//!     if moved { continue; }
//!     // Quiet now: sleep until the next timer (the client holds its acks a few milliseconds).
//!     match [client.poll_timeout(), agent.poll_timeout()].into_iter().flatten().min() {
//!         Some(t) => now = now.max(t),
//!         None => break,
//!     }
//! }
//! assert!(matches!(client.poll_event(), Some(Event::SessionType(t)) if t.property("portNumber") == Some("22")));
//! // The agent received our HandshakeResponse, and every message on both sides was acknowledged.
//! assert!(matches!(agent.poll_event(), Some(Event::Payload { payload_type: PayloadType::HandshakeResponse, .. })));
//! assert_eq!((client.unacked(), agent.unacked()), (0, 0));
//! # let _ = Role::Client;
//! ```

pub mod crypto;
pub mod handshake;
pub mod incoming;
pub mod liveness;
pub mod message;
pub mod outgoing;
pub mod pacing;
pub mod payload;
pub mod read_batch;
pub mod send_queue;
pub mod session;
pub mod smux;
pub mod stats;

pub use handshake::{DataKey, DataKeyProvider, DataKeyRequest, SessionType, SessionTypeInfo};
pub use message::{AgentMessage, MessageType, PayloadType, MAX_STREAM_PAYLOAD};
pub use session::{CloseReason, Event, FrameError, SendError, Session, SessionConfig};
pub use stats::Stats;

/// The ClientVersion rssm reports in OpenDataChannel and the HandshakeResponse.
///
/// Current official clients built from source report `1.3.0.0`; the agent enables smux for clients
/// ≥ 1.1.70 and disables smux keep-alive for clients > 1.2.331.0 (PROTOCOL.md header note, §9.4),
/// which is what we want: our smux client sends no keep-alives to a modern agent.
pub const CLIENT_VERSION: &str = "1.3.0.0";

/// Which end of the data channel a state machine plays.
///
/// Both ends speak the same message format (PROTOCOL.md §2) but differ in which message type they
/// send stream data with, what they encrypt and with which half of the KMS data key (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The session-manager-plugin side (rssm itself): sends `input_stream_data`.
    Client,
    /// The SSM agent side (the simulator): sends `output_stream_data`.
    Agent,
}

//! The channels between a relay, its client's websocket task and its agent, and what travels
//! on them.

use bytes::Bytes;
use tokio::sync::mpsc;

/// Capacity of every channel between relay, websocket task and agent.
pub const CHANNEL_CAPACITY: usize = 256;

/// Messages into a relay.
#[derive(Debug)]
pub enum RelayCommand {
    /// A client opened the data channel with a valid token; frames for it go to `outbox`.
    ClientAttached {
        /// Identifies this websocket connection.
        conn: u64,
        /// Frames to write to the websocket.
        outbox: mpsc::Sender<ClientOut>,
    },
    /// A data frame from a client websocket.
    ClientFrame {
        /// Which connection.
        conn: u64,
        /// The frame.
        frame: Bytes,
    },
    /// The client websocket closed.
    ClientDetached {
        /// Which connection.
        conn: u64,
    },
    /// Drop the client's websocket now, like the kill faults (for tests that choose the moment).
    KillClient,
    /// TerminateSession was called.
    Terminate {
        /// `channel_closed` Output text.
        output: String,
    },
}

/// What the relay asks a client websocket task to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOut {
    /// Write a binary frame.
    Frame(Bytes),
    /// Send a close frame and end the connection.
    Close(u16, String),
    /// Drop the TCP connection without a close frame (a network failure).
    Kill,
    /// Keep the TCP connection but go silent on it: read nothing, write nothing, answer no pings
    /// ([`crate::FaultConfig::blackhole`]). Later frames are discarded; a `Close` or `Kill` ends it.
    Blackhole,
}

/// What a simulated agent sends towards the gateway.
#[derive(Debug)]
pub enum AgentOut {
    /// A websocket frame.
    Frame(Bytes),
    /// The agent's session plugin ended (what `agent_task_complete` reports on the control channel).
    Finished {
        /// Error text, empty on success.
        output: String,
        /// Whether the session failed.
        failed: bool,
    },
}

/// The agent's end of its data channel.
pub struct AgentLink {
    /// Frames and the final report, towards the gateway.
    pub to_gateway: mpsc::Sender<AgentOut>,
    /// Frames from the gateway.
    pub from_gateway: mpsc::Receiver<Bytes>,
}

/// The gateway's end of an agent's data channel.
pub struct GatewayLink {
    /// Frames to the agent.
    pub to_agent: mpsc::Sender<Bytes>,
    /// Frames and the final report from the agent.
    pub from_agent: mpsc::Receiver<AgentOut>,
}

/// A connected pair of links.
pub fn agent_channel() -> (AgentLink, GatewayLink) {
    let (to_gateway, from_agent) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_agent, from_gateway) = mpsc::channel(CHANNEL_CAPACITY);
    (
        AgentLink {
            to_gateway,
            from_gateway,
        },
        GatewayLink {
            to_agent,
            from_agent,
        },
    )
}

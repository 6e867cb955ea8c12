//! What a command and the driver say to each other: [`Input`] in, [`Output`] out, both through
//! bounded channels, so a slow terminal or socket pushes back on the websocket.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use rssm_protocol::payload::Flag;
use rssm_protocol::SessionTypeInfo;
use tokio::sync::{mpsc, Notify};

use super::Demand;

/// What a command asks of the session.
#[derive(Debug)]
pub enum Input {
    /// Stream bytes (keystrokes, TCP data, smux bytes): at most 1024 per message.
    Data(Bytes),
    /// Terminal size.
    Size { cols: u32, rows: u32 },
    /// A control flag (TerminateSession, DisconnectToPort).
    Flag(Flag),
    /// Whether the command can take Output now ("handler not ready", PROTOCOL.md §6.3).
    Ready(bool),
    /// Send what is queued, wait briefly for acknowledgements, close the websocket.
    Finish,
}

/// What the session reports to a command.
#[derive(Debug)]
pub enum Output {
    /// The session type (from the handshake, or inferred from a shell's first output).
    SessionType(SessionTypeInfo),
    /// Handshake finished; `customer_message` is shown to the user when non-empty.
    HandshakeComplete { customer_message: String },
    /// Remote stdout / terminal / TCP / smux bytes.
    Data(Bytes),
    /// Remote stderr (non-interactive commands).
    StdErr(Bytes),
    /// Remote exit code.
    ExitCode(i32),
    /// A control flag from the agent.
    Flag(Flag),
    /// The data channel was lost and the session resumed on a new one. The agent's readers of a
    /// non-interactive command may have stopped for good meanwhile (PROTOCOL.md §13.2): a
    /// command that waits for output may want to give up on it sooner.
    Resumed,
    /// The session is over; nothing follows.
    Ended(End),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The service closed the channel (`channel_closed`), with its reason text (often empty).
    Closed { reason: String },
    /// We finished after [`Input::Finish`].
    Finished,
    /// Something broke: the websocket died, the peer stopped acknowledging, bad crypto.
    Failed(String),
}

/// The command side of a running session.
pub struct DriverHandle {
    /// Requests to the session (bounded: sending waits while the session is full).
    pub input: mpsc::Sender<Input>,
    /// Reports from the session, ending with [`Output::Ended`].
    pub output: Outputs,
    /// Notified when something interactive (a keystroke through a forward) waits behind bulk
    /// data: the pacer then wakes per message for a while ([`SendQueue::hurry`](rssm_protocol::send_queue::SendQueue::hurry)).
    pub hurry: Arc<Notify>,
    /// Paced, how a command with more data than the pacer lets go hands it over (see
    /// [`Demand`]); `None` when the session is not paced.
    pub demand: Option<Arc<Demand>>,
}

/// The stream of [`Output`]s, with room to put back what a caller looked at too early (the
/// drop-in plugin reads the handshake before it knows which command runs the session).
pub struct Outputs {
    pub(super) rx: mpsc::Receiver<Output>,
    pub(super) unread: VecDeque<Output>,
}

impl Outputs {
    /// The next report; `None` once the driver is gone.
    pub async fn recv(&mut self) -> Option<Output> {
        match self.unread.pop_front() {
            Some(o) => Some(o),
            None => self.rx.recv().await,
        }
    }

    /// Puts reports back, in order, to be received again.
    pub fn unread(&mut self, outputs: impl IntoIterator<Item = Output>) {
        let mut v: Vec<Output> = outputs.into_iter().collect();
        v.extend(self.unread.drain(..));
        self.unread = v.into();
    }
}

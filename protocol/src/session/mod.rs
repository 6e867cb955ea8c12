//! [`Session`]: one end of a data channel as a sans-IO state machine (the `quinn_proto::Connection`
//! of this crate).
//!
//! The caller owns the websocket and the clock. It feeds every received frame to
//! [`Session::handle_frame`], sends whatever [`Session::poll_transmit`] returns, wakes at
//! [`Session::poll_timeout`] to call [`Session::handle_timeout`], and reacts to
//! [`Session::poll_event`]. Application data goes in through [`Session::send`].
//!
//! The same machine serves both roles: rssm is the [`Role::Client`]; the simulator's agent and the
//! tests' peers use [`Role::Agent`]. Behaviour follows PROTOCOL.md §6–§8, with the improvements the
//! spec recommends (duplicates re-acked, no silent eviction, a bounded give-up).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use uuid::Uuid;

use crate::crypto::SessionCipher;
use crate::handshake::{PendingResponse, SessionTypeInfo};
use crate::incoming::IncomingBuffer;
use crate::message::{AgentMessage, MessageType, PayloadType};
use crate::outgoing::{OutgoingBuffer, Resend};
use crate::pacing::{Pacer, Strain};
use crate::payload::{to_json, AcknowledgeContent, ChannelClosed, Flag, SizeData};
use crate::stats::Stats;
use crate::Role;

mod acks;
mod allowance;
mod client_handshake;
mod config;
mod events;
mod receive;

pub use config::{
    SessionConfig, ACK_BATCH, ACK_DELAY, AGENT_RESEND_TICK, QUICK_ACKS, QUICK_ACKS_FOR,
    SLOW_PEER_ACKS,
};
pub use events::{CloseReason, Event, FrameError, SendError};

/// Flags value of acknowledgements and other non-stream messages (§2.5).
const ACK_FLAGS: u64 = 3;

#[derive(Debug)]
enum HandshakeState {
    /// No handshake message seen yet.
    NotStarted,
    /// Waiting for the caller's KMS data key.
    AwaitingDataKey(Box<PendingResponse>),
    /// Response sent; waiting for challenge / complete.
    Responded,
    /// HandshakeComplete received, or a handshake-less shell started.
    Done,
}

/// One end of a data channel. See the module docs for the calling pattern.
pub struct Session {
    config: SessionConfig,
    rng: ChaCha20Rng,
    /// Anchor for CreatedDate: wall-clock ms at `epoch`.
    unix_ms: u64,
    epoch: Instant,
    /// Latest time the caller told us about; stamps CreatedDate of messages queued by `send`.
    now: Instant,
    outgoing: OutgoingBuffer,
    incoming: IncomingBuffer,
    /// Encoded acknowledgements waiting to go out: always sent before stream data.
    acks: VecDeque<Bytes>,
    /// When the held acknowledgements must go (see [`SessionConfig::ack_delay`]); `None` once
    /// they are being let out.
    acks_due: Option<Instant>,
    /// The held acknowledgements were made due before their delay (batch full, a gap, a quick ack).
    acks_hurried: bool,
    /// Messages still to be acknowledged at once (see [`QUICK_ACKS`]), and when that began.
    quick_acks: u32,
    quick_acks_since: Instant,
    events: VecDeque<Event>,
    cipher: Option<SessionCipher>,
    handshake: HandshakeState,
    session_type: Option<SessionTypeInfo>,
    ready: bool,
    paused_until: Option<Option<Instant>>,
    /// See [`Session::set_hurried`].
    hurried: bool,
    /// Paced, when the batch being let out opened (see [`Session::batch_allowance`]): at that
    /// instant its messages keep going while tokens last.
    batch_open: Option<Instant>,
    /// See [`Session::set_backlog`].
    backlog: usize,
    pacer: Option<Pacer>,
    closed: bool,
    stats: Stats,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.config.role)
            .field("session_id", &self.config.session_id)
            .field("closed", &self.closed)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session. `unix_ms` is the wall clock at `now` (for CreatedDate); `rng_seed` seeds
    /// the message ids and the client's encryption nonces, so pass OS randomness outside tests.
    pub fn new(config: SessionConfig, now: Instant, unix_ms: u64, rng_seed: [u8; 32]) -> Self {
        let pacer = config
            .max_message_rate
            .map(|r| Pacer::new(r, config.pacing_burst));
        Session {
            outgoing: OutgoingBuffer::with_resend(
                config.outgoing_capacity,
                match config.resend_tick {
                    Some(tick) => Resend::HeadEveryTick { tick, epoch: now },
                    None => Resend::PerMessage {
                        window: config.retransmit_window,
                    },
                },
            ),
            incoming: IncomingBuffer::with_byte_cap(
                config.incoming_capacity,
                config.incoming_capacity_bytes,
            ),
            config,
            rng: ChaCha20Rng::from_seed(rng_seed),
            unix_ms,
            epoch: now,
            now,
            acks: VecDeque::new(),
            acks_due: None,
            acks_hurried: false,
            quick_acks: 0,
            quick_acks_since: now,
            events: VecDeque::new(),
            cipher: None,
            handshake: HandshakeState::NotStarted,
            session_type: None,
            ready: true,
            paused_until: None,
            hurried: false,
            batch_open: None,
            backlog: 0,
            pacer,
            closed: false,
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Counters for status lines and benchmarks.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The session type, once known.
    pub fn session_type(&self) -> Option<&SessionTypeInfo> {
        self.session_type.as_ref()
    }

    /// Smoothed round-trip time of acknowledgements.
    pub fn rtt(&self) -> Duration {
        self.outgoing.rtt().rtt()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether [`Session::send`] would accept a message now.
    pub fn can_send(&self) -> bool {
        !self.closed && self.outgoing.has_room()
    }

    /// Stream messages sent but not acknowledged.
    pub fn unacked(&self) -> usize {
        self.outgoing.len()
    }

    /// Sequence numbers from the oldest unacknowledged message to the next one to be numbered:
    /// what the send buffer spans, including messages acked out of order behind an unacked one.
    pub fn unacked_span(&self) -> usize {
        self.outgoing.span()
    }

    /// Payload bytes sent but not acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.outgoing.unacked_bytes()
    }

    /// Whether the handshake has completed (or was skipped by a handshake-less shell).
    pub fn handshake_done(&self) -> bool {
        matches!(self.handshake, HandshakeState::Done)
    }

    /// Installs the KMS cipher (an agent does this after KMS Decrypt; a client gets it from the
    /// handshake automatically).
    pub fn set_cipher(&mut self, cipher: SessionCipher) {
        self.cipher = Some(cipher);
    }

    /// Whether payloads are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Random bytes from the session's generator (for a simulated agent's challenges).
    pub fn rng(&mut self) -> &mut (impl RngCore + rand_core::CryptoRng) {
        &mut self.rng
    }

    /// Marks the consumer ready or not. While not ready, in-order data messages are neither
    /// acknowledged nor consumed, so the peer retransmits them ("handler not ready", §6.3, §14.14–15);
    /// messages already acknowledged wait in the reorder buffer and are delivered once ready again.
    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
        if ready {
            self.drain_incoming();
        }
    }

    fn created_date(&self, now: Instant) -> u64 {
        self.unix_ms + now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn new_id(&mut self) -> Uuid {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }

    fn stream_type(&self) -> MessageType {
        match self.config.role {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }

    fn peer_stream_type(&self) -> MessageType {
        match self.config.role {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        }
    }

    /// Which payload types this role encrypts on send / decrypts on receipt (§8.4).
    fn encrypts(&self, pt: PayloadType) -> bool {
        match self.config.role {
            Role::Client => pt == PayloadType::Output,
            Role::Agent => matches!(
                pt,
                PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
            ),
        }
    }

    fn decrypts(&self, pt: PayloadType) -> bool {
        match self.config.role {
            Role::Client => matches!(
                pt,
                PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
            ),
            Role::Agent => pt == PayloadType::Output,
        }
    }

    /// Queues one stream message and returns its sequence number. Output (and, for an agent,
    /// StdErr/ExitCode) is encrypted when a cipher is installed. Callers keep data payloads at
    /// most 1024 bytes, the size the peer's reads produce (§12).
    pub fn send(&mut self, payload_type: PayloadType, data: Bytes) -> Result<i64, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        if !self.outgoing.has_room() {
            return Err(SendError::BufferFull);
        }
        let data_len = data.len();
        let encrypt = self.encrypts(payload_type);
        let payload = match &mut self.cipher {
            Some(c) if encrypt => Bytes::from(c.encrypt(&data, &mut self.rng)),
            _ => data,
        };
        let seq = self.outgoing.next_sequence();
        // The agent marks its first stream message SYN; the client never sets flags (§2.5).
        let flags = u64::from(self.config.role == Role::Agent && seq == 0);
        let msg = AgentMessage::new(
            self.stream_type(),
            seq,
            flags,
            0,
            Uuid::nil(),
            payload_type,
            payload,
        );
        let frame = self.encode_fresh(msg);
        self.outgoing.push(frame, data_len);
        if self.paused_until.is_some() {
            // Head-every-tick only (see `PausePublication` in `handle_frame`).
            self.outgoing.swallow_unsent(self.now);
        }
        self.stats.messages_queued += 1;
        self.stats.payload_bytes_sent += data_len as u64;
        Ok(seq)
    }

    /// Stamps id and date (at transmission-queue time; the epoch anchor keeps it monotonic) and
    /// encodes once: retransmissions resend the same bytes, like the reference implementations.
    fn encode_fresh(&mut self, mut msg: AgentMessage) -> Bytes {
        msg.message_id = self.new_id();
        msg.created_date = self.created_date(self.now);
        let mut buf = BytesMut::with_capacity(msg.encoded_len());
        msg.encode_into(&mut buf);
        buf.freeze()
    }

    /// Sends a control flag (DisconnectToPort, TerminateSession).
    pub fn send_flag(&mut self, flag: Flag) -> Result<i64, SendError> {
        self.send(PayloadType::Flag, Bytes::copy_from_slice(&flag.to_bytes()))
    }

    /// Sends the terminal size.
    pub fn send_size(&mut self, cols: u32, rows: u32) -> Result<i64, SendError> {
        self.send(PayloadType::Size, to_json(&SizeData { cols, rows }))
    }

    /// Processes one websocket frame (binary or text: both carry agent messages, §5.4).
    pub fn handle_frame(&mut self, frame: Bytes, now: Instant) -> Result<(), FrameError> {
        self.now = self.now.max(now);
        if self.closed {
            return Err(FrameError::Closed);
        }
        self.stats.frames_received += 1;
        let msg = AgentMessage::decode(frame).inspect_err(|_| self.stats.invalid_frames += 1)?;
        msg.validate()
            .inspect_err(|_| self.stats.invalid_frames += 1)?;
        match &msg.message_type {
            t if *t == self.peer_stream_type() => {
                self.unpause();
                self.on_stream_message(msg);
                Ok(())
            }
            MessageType::Acknowledge => self.on_ack(&msg, now),
            MessageType::ChannelClosed => {
                let cc = serde_json::from_slice(&msg.payload).unwrap_or(ChannelClosed {
                    message_id: String::new(),
                    created_date: String::new(),
                    destination_id: String::new(),
                    session_id: self.config.session_id.clone(),
                    message_type: "channel_closed".into(),
                    schema_version: 1,
                    output: String::new(),
                });
                self.closed = true;
                self.events.push_back(Event::ChannelClosed(cc));
                Ok(())
            }
            MessageType::PausePublication => {
                self.paused_until = Some(self.config.pause_expiry.map(|d| now + d));
                // The agent numbers and buffers what it sends while paused, but writes none of
                // it: that leaves only as the head, one a tick (`SendStreamDataMessage`). A
                // no-op unless head-every-tick.
                self.outgoing.swallow_unsent(now);
                if let Some(p) = &mut self.pacer {
                    if p.on_strain(now, Strain::Paused) {
                        self.stats.pacing_decreases += 1;
                    }
                }
                self.events.push_back(Event::PublicationPaused);
                Ok(())
            }
            MessageType::StartPublication => {
                self.unpause();
                // The agent only clears its pause flag (`handleStartPublicationMessage`).
                if !self.outgoing.resends_every_tick() {
                    self.outgoing.make_window_due(now);
                }
                self.events.push_back(Event::PublicationStarted);
                Ok(())
            }
            MessageType::AgentSessionState => {
                if let Ok(s) = serde_json::from_slice(&msg.payload) {
                    self.events.push_back(Event::AgentSessionState(s));
                }
                Ok(())
            }
            other => Err(FrameError::Unexpected(other.to_string())),
        }
    }

    fn unpause(&mut self) {
        if self.paused_until.take().is_some() {
            self.events.push_back(Event::PublicationStarted);
        }
    }

    fn on_ack(&mut self, msg: &AgentMessage, now: Instant) -> Result<(), FrameError> {
        let ack: AcknowledgeContent =
            serde_json::from_slice(&msg.payload).map_err(|_| FrameError::BadAck)?;
        self.stats.acks_received += 1;
        self.outgoing.ack(ack.sequence_number, now);
        if let Some(p) = &mut self.pacer {
            let before = p.decreases();
            p.on_ack(now, self.outgoing.rtt().rtt());
            self.stats.pacing_decreases += p.decreases() - before;
        }
        // Any ack shows the path works again (the agent does the same, §6.5).
        self.unpause();
        Ok(())
    }

    fn close_with(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(Event::Closed(reason));
        }
    }

    /// Ends the session locally (pending acks may still be flushed with [`Session::poll_transmit`]).
    pub fn close(&mut self) {
        self.close_with(CloseReason::Local);
    }

    /// Makes unacknowledged messages due for retransmission now. Call after a websocket
    /// reconnect: sequence state survives a reconnect and retransmission fills the gap (§5.6).
    pub fn on_reconnect(&mut self, now: Instant) {
        self.outgoing.make_window_due(now);
    }

    /// The next frame to write to the websocket: acknowledgements first, then retransmissions,
    /// then new messages. While publication is paused only acknowledgements go out.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.now = self.now.max(now);
        if self.acks_ready(now) {
            // First of a batch: a small one the delay let out means a peer waiting to hear from us.
            if self.acks_due.take().is_some() {
                let slow_peer = !self.acks_hurried && self.acks.len() <= SLOW_PEER_ACKS;
                if slow_peer && self.config.ack_delay.is_some() && !self.closed {
                    self.quick_acks = QUICK_ACKS;
                    self.quick_acks_since = now;
                }
                self.acks_hurried = false;
            }
            if let Some(ack) = self.acks.pop_front() {
                self.stats.acks_sent += 1;
                self.stats.frames_sent += 1;
                return Some(ack);
            }
        }
        if self.closed || self.is_paused(now) {
            return None;
        }
        if self.batch_allowance(now) == Some(0) {
            return None;
        }
        let (_, frame, retransmit) = self.outgoing.poll_transmit(now)?;
        if let Some(p) = &mut self.pacer {
            let before = p.decreases();
            p.on_sent(now, retransmit);
            self.stats.pacing_decreases += p.decreases() - before;
        }
        self.stats.frames_sent += 1;
        if retransmit {
            self.stats.retransmissions += 1;
        }
        Some(frame)
    }

    /// Messages numbered by [`Session::send`] that have not been transmitted yet. A caller
    /// with more to say keeps it (and joins it) while this is above a few: everything
    /// queued here waits its turn behind the pacer.
    pub fn unsent(&self) -> usize {
        self.outgoing.unsent()
    }

    fn is_paused(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(Some(until)) if now >= until => {
                self.paused_until = None;
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Whether acknowledgements or never-sent messages are waiting, i.e. whether
    /// [`Session::poll_transmit`] has work without any timer having fired. Retransmissions are not
    /// counted: they fall due at [`Session::poll_timeout`], after which the caller must call
    /// [`Session::poll_transmit`] whatever this says.
    pub fn has_transmit(&self) -> bool {
        self.acks_ready(self.now)
            || (!self.closed && self.paused_until.is_none() && self.outgoing.has_unsent())
    }

    /// When to call [`Session::handle_timeout`] (and then [`Session::poll_transmit`]) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        // While paused nothing is retransmitted, so a due retransmission is no reason to wake:
        // reporting it would make a driver spin until the pause ends.
        let retransmit = match self.paused_until {
            None => self.outgoing.next_retransmit(),
            Some(_) => None,
        };
        let give_up = self
            .config
            .give_up_after
            .and_then(|d| self.outgoing.oldest_first_sent().map(|t| t + d));
        let pause = self.paused_until.flatten();
        // Held back by the pacer: new messages go when the next token is there, and a
        // retransmission no earlier than that.
        let token = self.next_send_at();
        let paced = token.filter(|_| self.outgoing.has_unsent());
        let retransmit = match (retransmit, token) {
            (Some(r), Some(t)) => Some(r.max(t)),
            (r, _) => r,
        };
        // Acks without a due time are a batch already being let out: due now.
        let acks = (!self.acks.is_empty()).then(|| self.acks_due.unwrap_or(self.now));
        [retransmit, give_up, pause, paced, acks]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances timers: ends the session when the give-up deadline has passed. Retransmissions
    /// that fell due are produced by the next [`Session::poll_transmit`] calls.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.closed {
            return;
        }
        if let (Some(limit), Some(first)) =
            (self.config.give_up_after, self.outgoing.oldest_first_sent())
        {
            let waited = now.saturating_duration_since(first);
            if waited >= limit {
                let attempts = self.outgoing.head_attempts();
                self.close_with(CloseReason::GaveUp { waited, attempts });
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

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
use crate::handshake::{PendingResponse, SessionType, SessionTypeInfo};
use crate::incoming::{Arrival, IncomingBuffer};
use crate::message::{AgentMessage, MessageType, PayloadType};
use crate::outgoing::{OutgoingBuffer, Resend};
use crate::pacing::{Pacer, Strain};
use crate::payload::{parse_exit_code, to_json, AcknowledgeContent, ChannelClosed, Flag, SizeData};
use crate::stats::Stats;
use crate::Role;

mod client_handshake;
mod events;

pub use events::{CloseReason, Event, FrameError, SendError};

/// Flags value of acknowledgements and other non-stream messages (§2.5).
const ACK_FLAGS: u64 = 3;

/// How a [`Session`] behaves; [`SessionConfig::client`] and [`SessionConfig::agent`] give the
/// reference defaults for each role.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Which end this is.
    pub role: Role,
    /// Session id (KMS encryption context, messages).
    pub session_id: String,
    /// Target id (KMS encryption context).
    pub target_id: String,
    /// Version reported in the HandshakeResponse. The agent gates smux and smux keep-alive on it
    /// (§9.4, §14.8); see [`crate::CLIENT_VERSION`].
    pub client_version: String,
    /// Most unacknowledged outgoing messages; [`Session::send`] refuses more (backpressure).
    pub outgoing_capacity: usize,
    /// Most out-of-order messages held for reordering.
    pub incoming_capacity: usize,
    /// Most bytes of out-of-order messages held (payloads plus a fixed overhead each).
    pub incoming_capacity_bytes: usize,
    /// End the session when the oldest unacknowledged message has gone this long without an ack.
    /// `None` retransmits forever (the agent's behaviour).
    pub give_up_after: Option<Duration>,
    /// How many of the oldest unacknowledged messages may be retransmitted at once: the client
    /// repairs several losses per RTO ([`crate::outgoing::RETRANSMIT_WINDOW`]); 1 is the
    /// reference implementations' head-only scheme, which the agent defaults keep (§6.4).
    pub retransmit_window: usize,
    /// `Some(tick)`: retransmit as the agent does instead ([`Resend::HeadEveryTick`]): the
    /// head only, checked every `tick`, no backoff; `retransmit_window` is then ignored. The
    /// simulated agent uses it so that a repair after an outage takes as long as on AWS.
    pub resend_tick: Option<Duration>,
    /// How long a `pause_publication` holds back new stream messages before we probe again.
    /// `None` waits for `start_publication` or peer traffic, as the agent does.
    pub pause_expiry: Option<Duration>,
    /// Client: answer the handshake internally (true), or surface HandshakeRequest payloads as
    /// [`Event::Payload`] (false).
    pub handle_handshake: bool,
    /// Client: bind the agent's KMS challenge into the encryption context and say so
    /// (`ChallengeAcknowledgement`, §8.1). Only agents that understand it may be told.
    pub acknowledge_kms_challenge: bool,
    /// Pace stream messages (new and retransmitted) to at most this many per second, adapting
    /// to the path ([`crate::pacing`]); `None` sends as fast as the caller polls.
    pub max_message_rate: Option<u32>,
    /// Messages the pacer lets out back to back.
    pub pacing_burst: u32,
    /// When held back by the pacer, wake (via [`Session::poll_timeout`]) only once this many
    /// messages may go: fewer wake-ups at the same rate, at the cost of up to this many
    /// messages' worth of extra latency.
    pub pacing_wake_batch: u32,
    /// Hold acknowledgements up to this long, so that several go out in one write (the agent
    /// sends a message a millisecond, and acking each on its own was a third of rssm's system
    /// calls in a download). `None` acks at once, as the agent does.
    pub ack_delay: Option<Duration>,
}

/// The agent's `ResendSleepInterval` (PROTOCOL.md §6.4).
pub const AGENT_RESEND_TICK: Duration = Duration::from_millis(100);

/// The client's [`SessionConfig::ack_delay`]. The peer's round-trip estimate takes in our
/// average hold, so only its variation (at most this) must stay under the 10 ms floor of the
/// retransmission timeout's variance term (§6.4): the peer never resends for it.
pub const ACK_DELAY: Duration = Duration::from_millis(8);
/// Held acknowledgements that go out at once, delay or not: under the service's rate (a message
/// a millisecond) the sixth arrives before the delay is up, so acks leave in the wake-up a
/// message caused instead of one of their own (capped download: 2.25 -> 2.06 CPU-s per 100 MiB
/// against 4 ms and 8).
pub const ACK_BATCH: usize = 6;
/// Held acknowledgements released by the delay rather than by [`ACK_BATCH`] or a gap: this few
/// means the peer sends only when it hears from us (the agent repairs losses head-only, one
/// message a round trip, §6.5), so holding acks slows it to one message per delay.
pub const SLOW_PEER_ACKS: usize = 2;
/// After such a release, this many messages are acknowledged at once (as TCP's quick-ack mode):
/// enough to carry a head-only repair through, few enough that a steady stream soon batches again.
pub const QUICK_ACKS: u32 = 64;
/// A peer that sent nothing for this long after quick acks began no longer counts as waiting
/// for them ([`Session::peer_waits`]): it was a lone message, not a repair.
pub const QUICK_ACKS_FOR: Duration = Duration::from_secs(1);

impl SessionConfig {
    /// Client defaults: buffers of 10 000 (§6.4), give up after 5 minutes without an ack (about
    /// what the plugin's 3000 resends take), pauses expire after a second.
    pub fn client(session_id: impl Into<String>, target_id: impl Into<String>) -> Self {
        SessionConfig {
            role: Role::Client,
            session_id: session_id.into(),
            target_id: target_id.into(),
            client_version: crate::CLIENT_VERSION.to_owned(),
            outgoing_capacity: 10_000,
            incoming_capacity: 10_000,
            // 10 000 full messages, with room to spare for encrypted ones.
            incoming_capacity_bytes: 12 << 20,
            give_up_after: Some(Duration::from_secs(300)),
            retransmit_window: crate::outgoing::RETRANSMIT_WINDOW,
            resend_tick: None,
            pause_expiry: Some(Duration::from_secs(1)),
            handle_handshake: true,
            acknowledge_kms_challenge: false,
            max_message_rate: None,
            pacing_burst: crate::pacing::DEFAULT_BURST,
            pacing_wake_batch: crate::pacing::DEFAULT_WAKE_BATCH,
            ack_delay: Some(ACK_DELAY),
        }
    }

    /// Agent defaults: buffers of 100 000, never give up, head-only retransmission every 100 ms
    /// tick (`ResendSleepInterval`), honour pauses until told otherwise, ack at once.
    pub fn agent(session_id: impl Into<String>, target_id: impl Into<String>) -> Self {
        SessionConfig {
            role: Role::Agent,
            outgoing_capacity: 100_000,
            incoming_capacity: 100_000,
            incoming_capacity_bytes: usize::MAX,
            give_up_after: None,
            retransmit_window: 1,
            resend_tick: Some(AGENT_RESEND_TICK),
            pause_expiry: None,
            handle_handshake: false,
            ack_delay: None,
            ..SessionConfig::client(session_id, target_id)
        }
    }
}

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

    fn queue_ack(&mut self, msg: &AgentMessage) {
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
    fn acks_ready(&self, now: Instant) -> bool {
        !self.acks.is_empty() && (self.closed || self.acks_due.is_none_or(|t| now >= t))
    }

    fn is_handshake_type(&self, pt: PayloadType) -> bool {
        self.config.role == Role::Client
            && self.config.handle_handshake
            && matches!(
                pt,
                PayloadType::HandshakeRequest
                    | PayloadType::HandshakeComplete
                    | PayloadType::EncChallengeRequest
            )
    }

    fn on_stream_message(&mut self, msg: AgentMessage) {
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

    /// Acknowledges `msg` and sends that with whatever was held.
    fn ack_at_once(&mut self, msg: &AgentMessage) {
        self.queue_ack(msg);
        self.flush_acks();
    }

    /// Delivers buffered messages that are now in order (already acknowledged when stored).
    fn drain_incoming(&mut self) {
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

    fn deliver(&mut self, msg: AgentMessage) {
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
    /// with more to say keeps it (and coalesces it) while this is above a few: everything
    /// queued here waits its turn behind the pacer.
    pub fn unsent(&self) -> usize {
        self.outgoing.unsent()
    }

    /// While something interactive waits behind held-back data, the pacer wakes for every
    /// token instead of every [`SessionConfig::pacing_wake_batch`]: it goes within a token or two.
    pub fn set_hurried(&mut self, hurried: bool) {
        self.hurried = hurried;
    }

    /// How many new messages may go out at `now`, when pacing: a caller that holds data back
    /// until it can go takes this many messages' worth and sends them in one write. `None`
    /// when not pacing; 0 while publication is paused or the session is closed.
    pub fn send_allowance(&mut self, now: Instant) -> Option<usize> {
        self.now = self.now.max(now);
        self.pacer.as_ref()?;
        if self.closed || self.is_paused(now) {
            return Some(0);
        }
        self.pacer.as_mut().map(|p| p.available(now) as usize)
    }

    /// Paced, the messages' worth of data the caller has waiting beyond those it numbered with
    /// [`Session::send`] (it hands data over only as the pacer lets it go): whether all that
    /// waits fits in the tokens there are depends on it (see [`Session::batch_allowance`]).
    pub fn set_backlog(&mut self, messages: usize) {
        self.backlog = messages;
    }

    /// Paced, how many new messages to let go at `now`, in one write: none until the pacer has
    /// a whole wake-up's batch of tokens ([`SessionConfig::pacing_wake_batch`]), then as many as
    /// its tokens allow (calls at the same `now` go on with the batch opened then). Whatever
    /// wakes the caller in between (acks, input) would otherwise send the few tokens that
    /// trickled in since, in a write and a wake-up of their own, and the batches would shrink
    /// to that. No wait while hurried, or when all that waits (never-sent messages and the
    /// [backlog](Session::set_backlog)) fits in the tokens there are: a short write after a busy
    /// spell. `None` when not pacing; 0 while paused or closed.
    pub fn batch_allowance(&mut self, now: Instant) -> Option<usize> {
        let tokens = self.send_allowance(now)?;
        let opens = self.hurried || tokens >= self.batch_size() || tokens >= self.waiting();
        if tokens > 0 && opens {
            self.batch_open = Some(now);
        }
        Some(if self.batch_open == Some(now) {
            tokens
        } else {
            0
        })
    }

    /// New messages waiting to go: never sent, or still with the caller.
    fn waiting(&self) -> usize {
        self.outgoing.unsent() + self.backlog
    }

    /// Tokens a paced wake-up waits for (the burst bounds it: the bucket holds no more).
    fn batch_size(&self) -> usize {
        let burst = self.config.pacing_burst.max(1);
        self.config.pacing_wake_batch.clamp(1, burst) as usize
    }

    /// The current pacing rate in messages per second, when pacing.
    pub fn pacing_rate(&self) -> Option<f64> {
        self.pacer.as_ref().map(Pacer::rate)
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

    /// Paced, when the pacer next lets new messages go (see [`Session::batch_allowance`]): when
    /// it has a batch of tokens, or enough for all that waits; the next token while hurried.
    /// `None` when not pacing, or while publication is paused.
    pub fn next_send_at(&self) -> Option<Instant> {
        let pacer = self.pacer.as_ref()?;
        if self.paused_until.is_some() || self.closed {
            return None;
        }
        let want = if self.hurried {
            1
        } else {
            self.batch_size().min(self.waiting().max(1))
        };
        Some(pacer.next_ready_for(self.now, want as u32))
    }

    /// Whether the peer seems to wait for our acknowledgements: a gap in what it sent is being
    /// repaired, or the last ones went out by their delay (it sends no faster than it hears from
    /// us). Reading its frames late would slow it down.
    pub fn peer_waits(&self) -> bool {
        let quick = self.quick_acks > 0 && self.now < self.quick_acks_since + QUICK_ACKS_FOR;
        quick || !self.incoming.is_empty()
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

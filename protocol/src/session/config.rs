//! [`SessionConfig`] and the reference defaults of each role.

use std::time::Duration;

use crate::Role;

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
    /// Hold acknowledgements up to this long, so that several go out in one write instead of
    /// one system call per agent message (it sends one a millisecond under the service's rate).
    /// `None` acks at once, as the agent does.
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
/// message caused instead of one of their own, saving a wake-up per batch.
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

//! Simulator configuration: listen address, region, credentials, fleet, timeouts and faults.

use crate::fleet::Fleet;
use crate::sigv4::SimCredentials;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything a [`crate::Simulator`] needs to start. `Default` gives a ready-to-use simulator on an
/// ephemeral loopback port with the built-in fleet and no faults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The region every endpoint claims to be in (SigV4 scope must match).
    pub region: String,
    /// The only accepted key pair.
    pub credentials: SimCredentials,
    /// Account id used in ARNs.
    pub account_id: String,
    /// IAM user name: the prefix of session ids and the `Owner` of sessions.
    pub user_name: String,
    /// The targets.
    pub fleet: Fleet,
    /// Whether the websocket upgrade must carry a SigV4 signature (plugins ≥ 1.2.764.0 sign it;
    /// older ones do not).
    pub require_signed_websocket: bool,
    /// Session ends after this long without stream data in either direction (the service's default is 20 min).
    pub idle_timeout: Duration,
    /// Session ends after this long regardless (`None` = unlimited, the service default).
    pub max_session_duration: Option<Duration>,
    /// How long a token from StartSession/ResumeSession may be used to open a data channel.
    pub token_ttl: Duration,
    /// Simulated network and service faults.
    pub faults: FaultConfig,
    /// Seed for every random choice (fault injection, ids), so failures reproduce.
    pub seed: u64,
    /// The shell for Standard_Stream sessions (`$SHELL` or `/bin/sh` when `None`).
    pub shell: Option<String>,
    /// The account's session-preference KMS key: when set, default shell sessions are encrypted.
    pub shell_kms_key_id: Option<String>,
    /// The agent sleeps this long after every 1024-byte read of a PTY, a basic/SSH port
    /// connection or its smux output (1 ms, like the real agent's pumps, which caps every
    /// session near 1 MB/s).
    /// Zero lifts that cap for tests and benchmarks that move bulk data.
    pub agent_read_pause: Duration,
    /// The gateway sends the agent `pause_publication` while the client's websocket is gone and
    /// `start_publication` when it is back. The protocol's messages exist for this (§6.5,
    /// §13.2) but what the real gateway does is not public, so the harsher answer is the
    /// default. It matters for `separateOutputStream` commands: the agent's pipe readers stop
    /// for good when they find the channel paused (`shell.go`), so output written during a
    /// reconnect is never read. `false` models a gateway that does not pause the agent.
    pub pause_agent_while_client_away: bool,
    /// The `PATH` of the commands and shells the agent starts (`None`: the simulator's own).
    /// A directory with some tools left out is an instance without them: a minimal image.
    pub agent_path: Option<String>,
    /// How long a key sent with EC2 Instance Connect SendSSHPublicKey stays valid (the
    /// service's is 60 s).
    pub instance_connect_key_ttl: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            region: "us-east-1".into(),
            credentials: SimCredentials::default(),
            account_id: "123456789012".into(),
            user_name: "rssm-sim".into(),
            fleet: Fleet::default(),
            require_signed_websocket: true,
            idle_timeout: Duration::from_secs(20 * 60),
            max_session_duration: None,
            token_ttl: Duration::from_secs(60),
            faults: FaultConfig::default(),
            seed: 0x5eed,
            shell: None,
            shell_kms_key_id: None,
            agent_read_pause: Duration::from_millis(1),
            pause_agent_while_client_away: true,
            agent_path: None,
            instance_connect_key_ttl: Duration::from_secs(60),
        }
    }
}

/// Faults applied by the gateway relay between client and agent. All probabilities are 0..=1 and
/// apply per binary frame, in each direction.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Probability a frame is silently dropped.
    pub drop: f64,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Probability a frame is held back and delivered after the next one.
    pub reorder: f64,
    /// Fixed one-way delay added to every frame.
    pub latency: Duration,
    /// Flip one byte of the first Output payload the agent sends the client and recompute the
    /// digest: a man in the middle without the session key. A KMS-encrypted session must reject
    /// it (the GCM tag fails, §8.3); a plain one shows one altered byte.
    pub tamper_output: bool,
    /// Client→agent stream messages (input_stream_data, retransmissions included; not acks)
    /// per second per session before the gateway throttles (like the real service's ~1000/s);
    /// `None` = unlimited. The agent's stream messages are held to the same rate (shaped: they
    /// wait, and the agent's websocket pushes back), as the service carries about that much a
    /// session either way; the real agent does not pace a command's piped output itself
    /// (`shell.go setupRoutineToWriteCmdPipelineOutput` has no pause, unlike `writePump`).
    pub rate_limit: Option<u32>,
    /// Consecutive throttled seconds after which the gateway closes the session as abusive.
    pub rate_abuse_seconds: u32,
    /// Close the client websocket after this many frames (both directions) on one connection.
    pub kill_after_messages: Option<u64>,
    /// Close the client websocket this long after it opened.
    pub kill_after: Option<Duration>,
    /// How many times the kill faults fire per session.
    pub kill_times: u32,
    /// The kill faults blackhole the client's websocket instead of dropping it: the TCP
    /// connection stays open, but the gateway stops reading it, writing to it and answering its
    /// pings (a hung gateway, a half-dead NAT path). Only the client's own dead-peer detection
    /// can notice; what the agent sends meanwhile is lost, as it would be.
    pub blackhole: bool,
    /// Tokens are valid for this long instead of [`SimConfig::token_ttl`]; a reconnect then needs
    /// ResumeSession.
    pub expire_tokens_after: Option<Duration>,
    /// The agent's websocket drops this long after the session starts …
    pub agent_disconnect_after: Option<Duration>,
    /// … and comes back after this long.
    pub agent_disconnect_for: Duration,
    /// The agent restarts this long after the first session starts (once per simulator): that
    /// session ends, as when the agent process dies, and StartSession answers
    /// `TargetNotConnected` for its target …
    pub agent_restart_after: Option<Duration>,
    /// … until the agent is back after this long.
    pub agent_restart_for: Duration,
    /// API operations (`TerminateSession`, …) the simulator receives but never answers, as an
    /// endpoint behind a dead proxy or a stalled load balancer would: a client must bound its
    /// own wait.
    pub hang_api: Vec<String>,
    /// An API operation (`ResumeSession`, …) that answers only after this long, like a slow
    /// or congested endpoint.
    pub delay_api: Option<(String, Duration)>,
    /// A broken or hostile agent, to see that a client's memory stays bounded.
    pub hostile: Option<Hostile>,
}

/// What a hostile agent sends a client, once per session ([`FaultConfig::hostile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// [`Hostile::BIG_FLOOD`] Output messages of 64 KiB numbered a million ahead of anything
    /// sent.
    FarFutureSequence,
    /// [`Hostile::BIG_FLOOD`] Output messages of 64 KiB numbered from 1000 on: within any
    /// reorder window, so only a cap on bytes holds them.
    NearFutureFlood,
    /// One websocket message of 4 MiB.
    OversizedFrame,
    /// [`Hostile::FLOOD`] Output messages of 128 smux SYNs each, opening streams the client
    /// never asked for.
    SmuxSynFlood,
}

impl Hostile {
    /// Messages in the SYN flood.
    pub const FLOOD: u64 = 20_000;
    /// Messages in the 64 KiB floods (125 MiB).
    pub const BIG_FLOOD: u64 = 2_000;

    /// Frames (or messages) the fault sends in all.
    pub fn frames(self) -> u64 {
        match self {
            Hostile::OversizedFrame => 1,
            Hostile::SmuxSynFlood => Hostile::FLOOD,
            Hostile::FarFutureSequence | Hostile::NearFutureFlood => Hostile::BIG_FLOOD,
        }
    }
}

impl std::str::FromStr for Hostile {
    type Err = String;
    fn from_str(s: &str) -> Result<Hostile, String> {
        match s {
            "far-future-sequence" => Ok(Hostile::FarFutureSequence),
            "near-future-flood" => Ok(Hostile::NearFutureFlood),
            "oversized-frame" => Ok(Hostile::OversizedFrame),
            "smux-syn-flood" => Ok(Hostile::SmuxSynFlood),
            _ => Err(format!(
                "unknown hostile mode {s:?} (far-future-sequence, near-future-flood, oversized-frame, smux-syn-flood)"
            )),
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            latency: Duration::ZERO,
            tamper_output: false,
            rate_limit: None,
            rate_abuse_seconds: 10,
            kill_after_messages: None,
            kill_after: None,
            kill_times: 1,
            blackhole: false,
            expire_tokens_after: None,
            agent_disconnect_after: None,
            agent_disconnect_for: Duration::from_secs(2),
            agent_restart_after: None,
            agent_restart_for: Duration::from_secs(5),
            hang_api: Vec::new(),
            delay_api: None,
            hostile: None,
        }
    }
}

impl FaultConfig {
    /// True when no per-frame fault is configured (the relay can take its fast path).
    pub fn is_lossless(&self) -> bool {
        self.drop == 0.0
            && self.duplicate == 0.0
            && self.reorder == 0.0
            && self.latency.is_zero()
            && !self.tamper_output
    }
}

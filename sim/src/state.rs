//! Shared simulator state: configuration, the session table and tokens.
//!
//! Each session's traffic is owned by its relay task ([`crate::relay`]); this table only holds what
//! the API must answer (status, dates, the current token) and the relay's command channel. Critical
//! sections are short and never await.

use crate::config::SimConfig;
use crate::documents::SessionPlan;
use crate::kms::Kms;
use crate::relay::RelayCommand;
use crate::sigv4::SimCredentials;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Session status as `DescribeSessions` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Started, no client has opened the data channel yet.
    Connecting,
    /// A client is attached.
    Connected,
    /// The client went away; it may resume.
    Disconnected,
    /// Ending.
    Terminating,
    /// Ended normally.
    Terminated,
    /// Ended with an error.
    Failed,
}

impl SessionStatus {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Connecting => "Connecting",
            SessionStatus::Connected => "Connected",
            SessionStatus::Disconnected => "Disconnected",
            SessionStatus::Terminating => "Terminating",
            SessionStatus::Terminated => "Terminated",
            SessionStatus::Failed => "Failed",
        }
    }

    /// True for `State: Active` in DescribeSessions.
    pub fn is_active(self) -> bool {
        !matches!(self, SessionStatus::Terminated | SessionStatus::Failed)
    }
}

/// One session's bookkeeping.
#[derive(Debug)]
pub struct SessionRecord {
    /// `<user>-<17 hex>`.
    pub id: String,
    /// Target id.
    pub target: String,
    /// What runs.
    pub plan: SessionPlan,
    /// `Reason` from StartSession.
    pub reason: Option<String>,
    /// Owner ARN.
    pub owner: String,
    /// Current status.
    pub status: SessionStatus,
    /// Start time.
    pub start: SystemTime,
    /// End time once ended.
    pub end: Option<SystemTime>,
    /// The token a client may open the data channel with, and when it stops working.
    pub token: Option<(String, Instant)>,
    /// Commands to the session's relay.
    pub relay: mpsc::Sender<RelayCommand>,
    /// Connections (smux streams) its port forwarding agent accepted.
    pub streams_opened: u64,
}

/// Why a data-channel token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No session with that id.
    #[error("session not found")]
    UnknownSession,
    /// The session has ended.
    #[error("session is terminated")]
    Terminated,
    /// Wrong token for the session.
    #[error("invalid token")]
    Invalid,
    /// Token too old.
    #[error("token expired")]
    Expired,
}

/// State shared by the HTTP handlers, relays and agents.
pub struct SimState {
    /// The configuration the simulator was started with.
    pub config: SimConfig,
    /// The bound address.
    pub addr: SocketAddr,
    /// The simulated KMS.
    pub kms: Kms,
    sessions: Mutex<HashMap<String, SessionRecord>>,
    rng: Mutex<ChaCha8Rng>,
    /// The one simulated agent restart ([`crate::FaultConfig::agent_restart_after`]): which
    /// target, and until when its agent is away.
    agent_restart: Mutex<Option<(String, Instant)>>,
    /// Client stream messages the rate cap refused, in all sessions so far.
    throttled: AtomicU64,
    /// Agent frames the gateway dropped because no client was attached, in all sessions.
    dropped_while_away: AtomicU64,
    /// Frames a hostile agent ([`crate::Hostile`]) has sent, in all sessions.
    hostile_sent: AtomicU64,
    /// The key pair requests must be signed with now ([`SimState::rotate_credentials`]).
    credentials: Mutex<SimCredentials>,
    /// Keys sent with EC2 Instance Connect: instance, OS user, key, valid until.
    instance_connect_keys: Mutex<Vec<(String, String, String, Instant)>>,
}

impl SimState {
    /// Creates the state for a simulator bound to `addr`.
    pub fn new(config: SimConfig, addr: SocketAddr) -> SimState {
        let kms = Kms::new(&config);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let config_credentials = config.credentials.clone();
        SimState {
            config,
            addr,
            kms,
            sessions: Mutex::new(HashMap::new()),
            rng: Mutex::new(rng),
            agent_restart: Mutex::new(None),
            throttled: AtomicU64::new(0),
            dropped_while_away: AtomicU64::new(0),
            hostile_sent: AtomicU64::new(0),
            credentials: Mutex::new(config_credentials),
            instance_connect_keys: Mutex::new(Vec::new()),
        }
    }

    /// Agent frames the gateway dropped while the session's client was away (between a
    /// websocket's end and the next OpenDataChannel), in all sessions so far.
    pub fn dropped_while_away(&self) -> u64 {
        self.dropped_while_away.load(Ordering::Relaxed)
    }

    /// Frames (messages) a hostile agent has sent so far, in all sessions.
    pub fn hostile_sent(&self) -> u64 {
        self.hostile_sent.load(Ordering::Relaxed)
    }

    pub(crate) fn count_hostile(&self) {
        self.hostile_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped_while_away(&self) {
        self.dropped_while_away.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a key sent with EC2 Instance Connect, valid until `expires`.
    pub fn push_instance_connect_key(
        &self,
        instance: &str,
        user: &str,
        key: &str,
        expires: Instant,
    ) {
        let mut keys = self.instance_connect_keys.lock().expect("keys");
        keys.retain(|k| k.3 > Instant::now());
        keys.push((
            instance.to_owned(),
            user.to_owned(),
            key.to_owned(),
            expires,
        ));
    }

    /// The keys `instance` accepts for `user` now (those sent less than the TTL ago).
    pub fn instance_connect_keys(&self, instance: &str, user: &str) -> Vec<String> {
        let now = Instant::now();
        let keys = self.instance_connect_keys.lock().expect("keys");
        keys.iter()
            .filter(|k| k.0 == instance && k.1 == user && k.3 > now)
            .map(|k| k.2.clone())
            .collect()
    }

    /// The key pair every API call and data-channel upgrade must be signed with now.
    pub fn credentials(&self) -> SimCredentials {
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the accepted key pair: from now on only `new` is accepted, as when temporary
    /// credentials (STS, SSO, assume-role) expire and the client's provider fetches new ones.
    pub fn rotate_credentials(&self, new: SimCredentials) {
        *self.credentials.lock().unwrap_or_else(|e| e.into_inner()) = new;
    }

    /// Client stream messages the rate cap ([`crate::FaultConfig::rate_limit`]) refused so far,
    /// in all sessions: what the real service would have answered with `pause_publication`.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Counts a message the rate cap refused.
    pub(crate) fn count_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// The session table.
    pub fn sessions(&self) -> MutexGuard<'_, HashMap<String, SessionRecord>> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A seeded random u64 (ids, tokens, per-session seeds).
    pub fn random_u64(&self) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64()
    }

    /// A fresh session id like the service's: `<user>-<17 hex digits>`.
    pub fn new_session_id(&self) -> String {
        let n = self.random_u64() as u128 | ((self.random_u64() as u128 & 0xf) << 64);
        format!("{}-{:017x}", self.config.user_name, n & ((1u128 << 68) - 1))
    }

    /// A fresh opaque token.
    pub fn new_token(&self) -> String {
        let mut raw = [0u8; 48];
        for chunk in raw.chunks_mut(8) {
            chunk.copy_from_slice(&self.random_u64().to_le_bytes());
        }
        format!("AAEAA{}", rssm_protocol::crypto::b64_encode(&raw))
    }

    /// How long a freshly issued token stays usable.
    pub fn token_lifetime(&self) -> std::time::Duration {
        self.config
            .faults
            .expire_tokens_after
            .unwrap_or(self.config.token_ttl)
    }

    /// The StreamUrl clients dial for a session.
    pub fn stream_url(&self, session_id: &str) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("ws://{addr}/v1/data-channel/{session_id}?role=publish_subscribe")
    }

    /// The base HTTP endpoint.
    pub fn endpoint(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// Checks a data-channel token and returns the session's relay on success.
    pub fn check_token(
        &self,
        session_id: &str,
        token: &str,
        now: Instant,
    ) -> Result<mpsc::Sender<RelayCommand>, TokenError> {
        let sessions = self.sessions();
        let rec = sessions.get(session_id).ok_or(TokenError::UnknownSession)?;
        if !rec.status.is_active() {
            return Err(TokenError::Terminated);
        }
        match &rec.token {
            Some((t, until)) if t == token => {
                if now > *until {
                    Err(TokenError::Expired)
                } else {
                    Ok(rec.relay.clone())
                }
            }
            _ => Err(TokenError::Invalid),
        }
    }

    /// Starts the simulated agent restart on `target`, away until `until`; false if the agent
    /// restarted already (it restarts once per simulator).
    pub fn begin_agent_restart(&self, target: &str, until: Instant) -> bool {
        let mut restart = self.agent_restart.lock().unwrap_or_else(|e| e.into_inner());
        if restart.is_some() {
            return false;
        }
        *restart = Some((target.to_owned(), until));
        true
    }

    /// Whether `target`'s agent is restarting at `now` (StartSession: `TargetNotConnected`).
    pub fn agent_restarting(&self, target: &str, now: Instant) -> bool {
        let restart = self.agent_restart.lock().unwrap_or_else(|e| e.into_inner());
        restart
            .as_ref()
            .is_some_and(|(t, until)| t == target && now < *until)
    }

    /// Updates a session's status (and end time for final states).
    pub fn set_status(&self, session_id: &str, status: SessionStatus) {
        if let Some(rec) = self.sessions().get_mut(session_id) {
            if !rec.status.is_active() {
                return; // final states are final
            }
            rec.status = status;
            if !status.is_active() {
                rec.end = Some(SystemTime::now());
                rec.token = None;
            }
        }
    }
}

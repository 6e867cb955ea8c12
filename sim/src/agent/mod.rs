//! The simulated SSM agent: one task per session that plays the agent's data channel (PROTOCOL.md
//! §13.1) on the protocol crate's [`Session`] in the agent role, performs the agent's handshake
//! (§7) and runs the session plugin the document names (§9).
//!
//! The driver owns the `Session`; plugins (`shell`, `command`, `port`) are separate tasks that talk
//! to it through bounded channels: [`ToPlugin`] carries what the client sent, [`FromPlugin`] what to
//! send back. Like the real agent, input is refused ("handler not ready", §6.3) until the plugin is
//! ready and while it is backlogged, so the client retransmits instead of anything being lost.

mod command;
mod handshake;
mod port;
mod pty;
mod shell;
mod utf8;

use crate::documents::{SessionKind, SessionPlan};
use crate::fleet::Target;
use crate::relay::{AgentLink, AgentOut};
use crate::state::SimState;
use bytes::Bytes;
use handshake::{Handshake, HandshakeStep};
use rssm_protocol::message::{created_date_at, AgentMessage, MessageType, PayloadType};
use rssm_protocol::payload::{to_json, AgentSessionStatePayload, Flag, SizeData};
use rssm_protocol::{Event, Session, SessionConfig};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;

/// Bytes per read from a PTY, pipe or TCP socket (`StreamDataPayloadSize`, §12).
pub const READ_CHUNK: usize = rssm_protocol::MAX_STREAM_PAYLOAD;
/// Unacknowledged messages beyond which the driver stops taking plugin output (keeps memory bounded).
const MAX_IN_FLIGHT: usize = 4096;
/// Client inputs queued for a plugin beyond which new ones are refused (the client retransmits).
const PLUGIN_QUEUE: usize = 64;
/// How long the agent waits for its outgoing buffer to drain before closing (§6.4).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Client input for a plugin.
#[derive(Debug)]
pub enum ToPlugin {
    /// Output payload (keystrokes, TCP bytes, smux stream).
    Output(Bytes),
    /// Terminal size.
    Size(SizeData),
    /// Control flag.
    Flag(Flag),
}

/// Plugin output for the driver.
#[derive(Debug)]
pub enum FromPlugin {
    /// The plugin can take input now.
    Ready,
    /// Send a stream payload.
    Send(PayloadType, Bytes),
    /// The plugin ended.
    Done {
        /// Error text (empty on success).
        output: String,
        /// Whether it failed.
        failed: bool,
    },
}

/// What a plugin gets.
pub struct PluginContext {
    /// Shared simulator state (config, KMS).
    pub state: Arc<SimState>,
    /// Session id.
    pub session_id: String,
    /// The target.
    pub target: Target,
    /// The document's plan.
    pub plan: SessionPlan,
    /// The client version from the handshake, if there was one.
    pub client_version: Option<String>,
    /// False while the gateway has paused publication: read pumps must not read (§6.5).
    pub active: watch::Receiver<bool>,
    /// Input from the client.
    pub input: mpsc::Receiver<ToPlugin>,
    /// Output to the client.
    pub output: mpsc::Sender<FromPlugin>,
}

impl PluginContext {
    /// Waits until publication is active (returns false if the driver is gone).
    pub async fn wait_active(&mut self) -> bool {
        self.active.wait_for(|a| *a).await.is_ok()
    }
}

/// Waits until `active` is true; false when the driver is gone.
pub async fn wait_active(active: &mut watch::Receiver<bool>) -> bool {
    active.wait_for(|a| *a).await.is_ok()
}

/// Everything needed to run one simulated agent session.
pub struct AgentSpec {
    /// Shared state.
    pub state: Arc<SimState>,
    /// Session id.
    pub session_id: String,
    /// Target.
    pub target: Target,
    /// What to run.
    pub plan: SessionPlan,
    /// Seed for the session's RNG.
    pub seed: u64,
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, chunk) in s.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed.rotate_left(i as u32 * 16) ^ i as u64).to_le_bytes());
    }
    s
}

/// Does the real agent need a handshake for this plan? Port and NonInteractiveCommands always;
/// shells only when KMS encryption is on (§7.1).
pub fn needs_handshake(plan: &SessionPlan) -> bool {
    matches!(
        plan.kind,
        SessionKind::Port | SessionKind::NonInteractiveCommands
    ) || (plan.kms_key_id.is_some() && plan.kind != SessionKind::Port)
}

enum Stage {
    Handshake(Box<Handshake>),
    Running,
}

struct AgentSession {
    spec: AgentSpec,
    session: Session,
    link: AgentLink,
    phase: Stage,
    plugin_in: Option<mpsc::Sender<ToPlugin>>,
    plugin_out: Option<mpsc::Receiver<FromPlugin>>,
    pending_in: VecDeque<ToPlugin>,
    plugin_ready: bool,
    active: watch::Sender<bool>,
    outcome: Option<(String, bool)>,
    channel_closed: bool,
    /// A timer fired: retransmissions may be due, which `Session::has_transmit` does not report.
    timer_fired: bool,
}

/// Runs one simulated agent session to completion.
pub async fn run(spec: AgentSpec, link: AgentLink) {
    let now = Instant::now();
    let config = SessionConfig::agent(spec.session_id.clone(), spec.target.id.clone());
    let session = Session::new(
        config,
        now,
        created_date_at(SystemTime::now()),
        seed_bytes(spec.seed),
    );
    let (active, _) = watch::channel(true);
    let mut d = AgentSession {
        spec,
        session,
        link,
        phase: Stage::Running,
        plugin_in: None,
        plugin_out: None,
        pending_in: VecDeque::new(),
        plugin_ready: false,
        active,
        outcome: None,
        channel_closed: false,
        timer_fired: false,
    };
    d.main().await;
}

impl AgentSession {
    async fn main(&mut self) {
        self.send_state("Connected").await;
        if needs_handshake(&self.spec.plan) {
            let hs = Handshake::start(&self.spec, &mut self.session);
            self.phase = Stage::Handshake(Box::new(hs));
        } else {
            self.start_plugin(None);
        }
        self.update_ready();
        self.event_loop().await;
        if !self.channel_closed {
            self.drain().await;
            self.send_state("Terminating").await;
            self.drain().await;
        }
        let stats = self.session.stats();
        tracing::info!(session = %self.spec.session_id, retransmissions = stats.retransmissions,
            frames_sent = stats.frames_sent, "agent session finished");
        let (output, failed) = self.outcome.take().unwrap_or_default();
        let _ = self
            .link
            .to_gateway
            .send(AgentOut::Finished { output, failed })
            .await;
    }

    async fn send_state(&mut self, state: &str) {
        let payload = AgentSessionStatePayload {
            schema_version: 1,
            session_state: state.to_owned(),
            session_id: self.spec.session_id.clone(),
        };
        let frame = AgentMessage::new(
            MessageType::AgentSessionState,
            0,
            3,
            created_date_at(SystemTime::now()),
            uuid::Uuid::new_v4(),
            PayloadType::Undefined,
            to_json(&payload),
        )
        .encode();
        let _ = self.link.to_gateway.send(AgentOut::Frame(frame)).await;
    }

    fn start_plugin(&mut self, client_version: Option<String>) {
        let (in_tx, in_rx) = mpsc::channel(PLUGIN_QUEUE);
        let (out_tx, out_rx) = mpsc::channel(PLUGIN_QUEUE);
        let ctx = PluginContext {
            state: self.spec.state.clone(),
            session_id: self.spec.session_id.clone(),
            target: self.spec.target.clone(),
            plan: self.spec.plan.clone(),
            client_version,
            active: self.active.subscribe(),
            input: in_rx,
            output: out_tx,
        };
        match self.spec.plan.kind {
            SessionKind::StandardStream | SessionKind::InteractiveCommands => {
                tokio::spawn(shell::run(ctx));
            }
            SessionKind::NonInteractiveCommands => {
                tokio::spawn(command::run(ctx));
            }
            SessionKind::Port => {
                tokio::spawn(port::run(ctx));
            }
        }
        self.plugin_in = Some(in_tx);
        self.plugin_out = Some(out_rx);
        self.phase = Stage::Running;
    }

    /// The session consumes client data only when the plugin can take it (§6.3 "not ready").
    fn update_ready(&mut self) {
        let ready = match self.phase {
            Stage::Handshake(_) => true,
            Stage::Running => self.plugin_ready && self.pending_in.len() < PLUGIN_QUEUE,
        };
        self.session.set_ready(ready);
    }

    fn finish(&mut self, output: String, failed: bool) {
        if self.outcome.is_none() {
            tracing::debug!(session = %self.spec.session_id, %output, failed, "agent session ending");
            self.outcome = Some((output, failed));
        }
    }

    async fn event_loop(&mut self) {
        loop {
            self.process_events();
            if self.outcome.is_some() || self.channel_closed {
                return;
            }
            self.flush_plugin_input();
            let now = Instant::now();
            let mut deadline = self.session.poll_timeout();
            if let Stage::Handshake(hs) = &self.phase {
                deadline = Some(deadline.map_or(hs.deadline(), |d| d.min(hs.deadline())));
            }
            let wake = deadline.unwrap_or(now + Duration::from_secs(3600));
            // Plugin output waits in its channel while paused: the agent's pumps read nothing
            // then, so nothing is numbered that could leave only as the head (§6.5).
            let can_take = self.session.unacked() < MAX_IN_FLIGHT
                && self.session.can_send()
                && *self.active.borrow();
            let has_tx = self.session.has_transmit() || self.timer_fired;
            let retry_input = !self.pending_in.is_empty();
            let to_gateway = self.link.to_gateway.clone();
            tokio::select! {
                permit = to_gateway.reserve(), if has_tx => {
                    let Ok(permit) = permit else { return self.finish(String::new(), false) };
                    match self.session.poll_transmit(Instant::now()) {
                        Some(frame) => permit.send(AgentOut::Frame(frame)),
                        None => self.timer_fired = false,
                    }
                }
                frame = self.link.from_gateway.recv() => match frame {
                    Some(f) => {
                        if let Err(e) = self.session.handle_frame(f, Instant::now()) {
                            tracing::debug!(session = %self.spec.session_id, "agent ignored frame: {e}");
                        }
                    }
                    None => {
                        // The gateway is gone: nothing more can be said to anyone.
                        self.channel_closed = true;
                        return;
                    }
                },
                out = recv_opt(&mut self.plugin_out), if can_take => self.on_plugin(out),
                _ = tokio::time::sleep(Duration::from_millis(5)), if retry_input => {}
                _ = sleep_until(wake.into()) => {
                    let now = Instant::now();
                    self.session.handle_timeout(now);
                    self.timer_fired = true;
                    if let Stage::Handshake(hs) = &self.phase {
                        if now >= hs.deadline() {
                            self.finish(handshake::TIMEOUT_MESSAGE.into(), true);
                        }
                    }
                }
            }
        }
    }

    fn on_plugin(&mut self, out: Option<FromPlugin>) {
        match out {
            Some(FromPlugin::Ready) => {
                self.plugin_ready = true;
                self.update_ready();
            }
            Some(FromPlugin::Send(pt, data)) => {
                if let Err(e) = self.session.send(pt, data) {
                    tracing::debug!(session = %self.spec.session_id, "agent send refused: {e}");
                }
            }
            Some(FromPlugin::Done { output, failed }) => self.finish(output, failed),
            None => {
                tracing::debug!(session = %self.spec.session_id, "plugin ended without a report");
                self.finish(String::new(), false)
            }
        }
    }

    fn flush_plugin_input(&mut self) {
        if let Some(tx) = &self.plugin_in {
            while let Some(item) = self.pending_in.pop_front() {
                match tx.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(item)) => {
                        self.pending_in.push_front(item);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.pending_in.clear();
                        break;
                    }
                }
            }
        }
        self.update_ready();
    }

    fn process_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            if let Stage::Handshake(hs) = &mut self.phase {
                match hs.on_event(&event, &self.spec, &mut self.session) {
                    HandshakeStep::Continue => {}
                    HandshakeStep::Failed(msg) => {
                        tracing::info!(session = %self.spec.session_id, "handshake failed: {msg}");
                        self.finish(msg, true);
                        return;
                    }
                    HandshakeStep::Complete { client_version } => {
                        tracing::debug!(session = %self.spec.session_id, ?client_version, "handshake complete");
                        self.start_plugin(client_version);
                        self.update_ready();
                    }
                }
                if !matches!(
                    event,
                    Event::ChannelClosed(_)
                        | Event::PublicationPaused
                        | Event::PublicationStarted
                        | Event::Closed(_)
                ) {
                    continue;
                }
            }
            match event {
                Event::Output(b) => self.pending_in.push_back(ToPlugin::Output(b)),
                Event::Size(s) => self.pending_in.push_back(ToPlugin::Size(s)),
                Event::Flag(f) => self.pending_in.push_back(ToPlugin::Flag(f)),
                Event::ChannelClosed(_) => {
                    tracing::info!(session = %self.spec.session_id, "agent got channel_closed");
                    self.channel_closed = true;
                    return;
                }
                // `send_replace`: the value must change even when no plugin task listens (one
                // that has ended still has output waiting in its channel).
                Event::PublicationPaused => {
                    self.active.send_replace(false);
                }
                Event::PublicationStarted => {
                    self.active.send_replace(true);
                }
                Event::Closed(reason) => {
                    self.finish(reason.to_string(), true);
                    return;
                }
                other => {
                    tracing::debug!(session = %self.spec.session_id, ?other, "agent ignores event");
                }
            }
        }
        self.update_ready();
    }

    /// Waits (≤ 2 s) until everything sent was acknowledged, still answering the peer.
    async fn drain(&mut self) {
        let until = Instant::now() + DRAIN_TIMEOUT;
        while self.session.unacked() > 0 || self.session.has_transmit() || self.timer_fired {
            if Instant::now() >= until {
                return;
            }
            let wake = self.session.poll_timeout().map_or(until, |t| t.min(until));
            let has_tx = self.session.has_transmit() || self.timer_fired;
            let to_gateway = self.link.to_gateway.clone();
            tokio::select! {
                permit = to_gateway.reserve(), if has_tx => {
                    let Ok(permit) = permit else { return };
                    match self.session.poll_transmit(Instant::now()) {
                        Some(frame) => permit.send(AgentOut::Frame(frame)),
                        None => self.timer_fired = false,
                    }
                }
                frame = self.link.from_gateway.recv() => match frame {
                    Some(f) => { let _ = self.session.handle_frame(f, Instant::now()); }
                    None => return,
                },
                _ = sleep_until(wake.into()) => {
                    self.session.handle_timeout(Instant::now());
                    self.timer_fired = true;
                }
            }
            while let Some(ev) = self.session.poll_event() {
                if matches!(ev, Event::ChannelClosed(_)) {
                    self.channel_closed = true;
                    return;
                }
            }
        }
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

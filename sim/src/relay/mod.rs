//! The per-session gateway relay (MGS stand-in, PROTOCOL.md §13.2): one task owns both sides of a
//! session's data channel, forwards binary frames between the client websocket and the simulated
//! agent, consumes `agent_session_state`, sends `channel_closed`, pauses/resumes publication when a
//! side is away, enforces idle/max-duration limits, and applies the configured faults in between.

use crate::faults::{Direction, FaultInjector, RateLimiter, RateVerdict};
use crate::state::{SessionStatus, SimState};
use bytes::Bytes;
use rssm_protocol::message::{created_date_at, AgentMessage, MessageType, PayloadType};
use rssm_protocol::payload::{to_json, AgentSessionStatePayload, ChannelClosed};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

mod links;

pub use links::{
    agent_channel, AgentLink, AgentOut, ClientOut, GatewayLink, RelayCommand, CHANNEL_CAPACITY,
};

struct Client {
    conn: u64,
    outbox: mpsc::Sender<ClientOut>,
    opened: Instant,
    frames: u64,
    /// Blackholed: nothing reaches it any more and no fault fires on it again.
    silenced: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: Instant,
    order: u64,
    dir: Direction,
    frame: Bytes,
}

/// One session's relay. Build with [`Relay::new`], run with [`Relay::run`].
pub struct Relay {
    state: Arc<SimState>,
    session_id: String,
    target: String,
    commands: mpsc::Receiver<RelayCommand>,
    agent: GatewayLink,
    agent_open: bool,
    client: Option<Client>,
    /// Agent frames dropped because no client was attached (see [`Relay::send_to_client`]).
    dropped_while_away: u64,
    faults: FaultInjector,
    rate: Option<RateLimiter>,
    /// The same cap on the agent's stream messages, as shaping: one may pass every
    /// `interval`; the next one waits in `held_agent`, and meanwhile nothing more is read from
    /// the agent, whose websocket then pushes back on it (a gateway that drains its side no
    /// faster than the cap).
    agent_pace: Option<AgentPace>,
    scheduled: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    kills_done: u32,
    told_agent_pause: bool,
    hostile_done: bool,
    agent_disconnect_at: Option<Instant>,
    agent_away_until: Option<Instant>,
    agent_restart_at: Option<Instant>,
    started: Instant,
    last_activity: Instant,
    done: bool,
}

/// Shaping of the agent's stream messages ([`FaultConfig::rate_limit`]).
#[derive(Debug)]
struct AgentPace {
    interval: std::time::Duration,
    /// When the next stream message may pass.
    next: Instant,
    /// A stream message waiting for `next`.
    held: Option<Bytes>,
    /// Messages that had to wait.
    shaped: u64,
}

impl AgentPace {
    /// Messages that may pass back to back after a quiet spell.
    const BURST: u32 = 32;

    /// Whether a stream message may pass at `now`; if so, books its slot.
    fn admit(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        // Lateness (a timer that fired late) is made up within a small burst, no more.
        let floor = now.checked_sub(self.interval * Self::BURST).unwrap_or(now);
        self.next = self.next.max(floor) + self.interval;
        true
    }
}

/// Encodes a gateway-generated (unsequenced) message.
pub fn gateway_message(message_type: MessageType, payload: Bytes) -> Bytes {
    AgentMessage::new(
        message_type,
        0,
        0,
        created_date_at(SystemTime::now()),
        uuid::Uuid::new_v4(),
        PayloadType::Undefined,
        payload,
    )
    .encode()
}

impl Relay {
    /// A relay for one session.
    pub fn new(
        state: Arc<SimState>,
        session_id: String,
        target: String,
        commands: mpsc::Receiver<RelayCommand>,
        agent: GatewayLink,
        seed: u64,
    ) -> Relay {
        let now = Instant::now();
        let faults = state.config.faults.clone();
        Relay {
            rate: faults
                .rate_limit
                .map(|l| RateLimiter::new(l, faults.rate_abuse_seconds)),
            agent_pace: faults.rate_limit.filter(|&l| l > 0).map(|l| AgentPace {
                interval: std::time::Duration::from_secs(1) / l,
                next: now,
                held: None,
                shaped: 0,
            }),
            agent_disconnect_at: faults.agent_disconnect_after.map(|d| now + d),
            agent_restart_at: faults.agent_restart_after.map(|d| now + d),
            faults: FaultInjector::new(faults, seed),
            state,
            session_id,
            target,
            commands,
            agent,
            agent_open: true,
            client: None,
            dropped_while_away: 0,
            scheduled: BinaryHeap::new(),
            order: 0,
            kills_done: 0,
            told_agent_pause: false,
            hostile_done: false,
            agent_away_until: None,
            started: now,
            last_activity: now,
            done: false,
        }
    }

    /// Runs until the session ends.
    pub async fn run(mut self) {
        while !self.done {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => self.finish(String::new(), false).await,
                },
                out = self.agent.from_agent.recv(), if self.agent_open && !self.holds_agent_frame() => match out {
                    Some(AgentOut::Frame(f)) => self.on_agent_frame(f).await,
                    Some(AgentOut::Finished { output, failed }) => self.finish(output, failed).await,
                    None => {
                        self.agent_open = false;
                        self.finish(String::new(), false).await;
                    }
                },
                _ = sleep_until(deadline.into()) => self.on_timer().await,
            }
        }
        let s = self.faults.stats;
        tracing::info!(session = %self.session_id, dropped = s.dropped, duplicated = s.duplicated,
            reordered = s.reordered, throttled = s.throttled, dropped_while_away = self.dropped_while_away,
            agent_shaped = self.agent_pace.as_ref().map_or(0, |p| p.shaped),
            "session relay finished");
    }

    fn holds_agent_frame(&self) -> bool {
        self.agent_pace.as_ref().is_some_and(|p| p.held.is_some())
    }

    fn next_deadline(&self) -> Instant {
        let cfg = &self.state.config;
        let mut d = self.last_activity + cfg.idle_timeout;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = d.min(t);
            }
        };
        consider(cfg.max_session_duration.map(|m| self.started + m));
        consider(self.scheduled.peek().map(|Reverse(s)| s.at));
        consider(self.faults.next_release());
        consider(self.agent_disconnect_at);
        consider(self.agent_away_until);
        consider(self.agent_restart_at);
        consider(self.rate.as_ref().and_then(|r| r.window_end()));
        consider(
            self.agent_pace
                .as_ref()
                .filter(|p| p.held.is_some())
                .map(|p| p.next),
        );
        if let (Some(c), Some(k)) = (&self.client, cfg.faults.kill_after) {
            if self.kills_done < cfg.faults.kill_times && !c.silenced {
                consider(Some(c.opened + k));
            }
        }
        d
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let state = self.state.clone();
        let cfg = &state.config;
        if now >= self.last_activity + cfg.idle_timeout {
            tracing::info!(session = %self.session_id, "idle timeout");
            return self
                .finish(
                    "Session has been terminated due to inactivity.".into(),
                    false,
                )
                .await;
        }
        if cfg
            .max_session_duration
            .is_some_and(|m| now >= self.started + m)
        {
            tracing::info!(session = %self.session_id, "maximum session duration reached");
            return self
                .finish(
                    "Session has reached the maximum session duration.".into(),
                    false,
                )
                .await;
        }
        if self.agent_disconnect_at.is_some_and(|t| now >= t) {
            self.agent_disconnect_at = None;
            self.agent_away_until = Some(now + cfg.faults.agent_disconnect_for);
            tracing::info!(session = %self.session_id, "fault: agent websocket down");
            self.send_to_client(gateway_message(MessageType::PausePublication, Bytes::new()))
                .await;
        }
        if self.agent_restart_at.is_some_and(|t| now >= t) {
            self.agent_restart_at = None;
            let until = now + cfg.faults.agent_restart_for;
            if self.state.begin_agent_restart(&self.target, until) {
                tracing::info!(session = %self.session_id, "fault: the agent restarts");
                // The agent process is gone with its sessions; the service ends them.
                return self.finish(String::new(), true).await;
            }
        }
        if self.agent_away_until.is_some_and(|t| now >= t) {
            self.agent_away_until = None;
            tracing::info!(session = %self.session_id, "fault: agent websocket back");
            self.send_to_client(gateway_message(MessageType::StartPublication, Bytes::new()))
                .await;
        }
        if let Some(rate) = &mut self.rate {
            if rate.roll(now) {
                if rate.is_abusive() {
                    tracing::warn!(session = %self.session_id, "message rate abuse: closing");
                    return self
                        .finish("Session terminated: message rate exceeded.".into(), true)
                        .await;
                }
                self.send_to_client(gateway_message(MessageType::StartPublication, Bytes::new()))
                    .await;
            }
        }
        if let (Some(c), Some(k)) = (&self.client, cfg.faults.kill_after) {
            if self.kills_done < cfg.faults.kill_times && !c.silenced && now >= c.opened + k {
                self.kill_client().await;
            }
        }
        for (dir, at, frame) in self.faults.release_expired(now) {
            self.schedule(dir, at, frame);
        }
        if let Some(frame) = self
            .agent_pace
            .as_mut()
            .filter(|p| p.held.is_some() && now >= p.next)
            .and_then(|p| p.held.take())
        {
            self.on_agent_frame(frame).await;
        }
        self.deliver_due(now).await;
    }

    async fn on_command(&mut self, cmd: RelayCommand) {
        match cmd {
            RelayCommand::ClientAttached { conn, outbox } => {
                if let Some(old) = self.client.take() {
                    let _ = old.outbox.try_send(ClientOut::Close(1000, String::new()));
                }
                tracing::info!(session = %self.session_id, conn, "client attached");
                self.client = Some(Client {
                    conn,
                    outbox,
                    opened: Instant::now(),
                    frames: 0,
                    silenced: false,
                });
                self.state
                    .set_status(&self.session_id, SessionStatus::Connected);
                self.misbehave().await;
                if self.told_agent_pause {
                    self.told_agent_pause = false;
                    self.send_to_agent(gateway_message(
                        MessageType::StartPublication,
                        Bytes::new(),
                    ))
                    .await;
                }
            }
            RelayCommand::ClientFrame { conn, frame } => {
                if self.client.as_ref().is_some_and(|c| c.conn == conn) {
                    self.on_client_frame(frame).await;
                }
            }
            RelayCommand::ClientDetached { conn } => {
                if self.client.as_ref().is_some_and(|c| c.conn == conn) {
                    self.client_gone().await;
                }
            }
            RelayCommand::KillClient => self.kill_client().await,
            RelayCommand::Terminate { output } => self.finish(output, false).await,
        }
    }

    /// A hostile agent's frames that bypass its session ([`crate::Hostile`]), once, to the
    /// first client that attaches.
    async fn misbehave(&mut self) {
        let Some(mode) = self
            .state
            .config
            .faults
            .hostile
            .filter(|_| !self.hostile_done)
        else {
            return;
        };
        self.hostile_done = true;
        let frame = |seq: i64, payload: Bytes| {
            AgentMessage::new(
                MessageType::OutputStreamData,
                seq,
                0,
                created_date_at(SystemTime::now()),
                uuid::Uuid::new_v4(),
                PayloadType::Output,
                payload,
            )
            .encode()
        };
        match mode {
            crate::Hostile::FarFutureSequence | crate::Hostile::NearFutureFlood => {
                let first = if mode == crate::Hostile::NearFutureFlood {
                    1_000
                } else {
                    1_000_000
                };
                let payload = Bytes::from(vec![b'x'; 64 * 1024]);
                for i in 0..crate::Hostile::BIG_FLOOD {
                    self.send_to_client(frame(first + i as i64, payload.clone()))
                        .await;
                    self.state.count_hostile();
                }
            }
            crate::Hostile::OversizedFrame => {
                self.send_to_client(frame(1, Bytes::from(vec![b'x'; 4 << 20])))
                    .await;
                self.state.count_hostile();
            }
            // The agent's own plugin sends this one (see `agent::port`).
            crate::Hostile::SmuxSynFlood => {}
        }
    }

    async fn client_gone(&mut self) {
        tracing::info!(session = %self.session_id, "client detached");
        self.client = None;
        self.state
            .set_status(&self.session_id, SessionStatus::Disconnected);
        if !self.told_agent_pause && self.state.config.pause_agent_while_client_away {
            self.told_agent_pause = true;
            self.send_to_agent(gateway_message(MessageType::PausePublication, Bytes::new()))
                .await;
        }
    }

    async fn kill_client(&mut self) {
        let blackhole = self.state.config.faults.blackhole;
        let Some(c) = &mut self.client else { return };
        self.kills_done += 1;
        if blackhole {
            // The gateway does not know it is broken: the client stays attached, the agent is
            // not paused, and what either side sends is lost.
            tracing::info!(session = %self.session_id, "fault: blackholing client websocket");
            c.silenced = true;
            let _ = c.outbox.try_send(ClientOut::Blackhole);
        } else {
            tracing::info!(session = %self.session_id, "fault: killing client websocket");
            let _ = c.outbox.try_send(ClientOut::Kill);
            self.client_gone().await;
        }
    }

    fn count_client_frame(&mut self) -> bool {
        let limit = self.state.config.faults.kill_after_messages;
        let times = self.state.config.faults.kill_times;
        if let Some(c) = self.client.as_mut().filter(|c| !c.silenced) {
            c.frames += 1;
            if let Some(n) = limit {
                return self.kills_done < times && c.frames >= n;
            }
        }
        false
    }

    /// Whether the frame carries stream data (not an acknowledgement or a control message).
    fn is_stream_data(frame: &Bytes) -> bool {
        AgentMessage::decode(frame.clone()).is_ok_and(|m| m.message_type.is_stream_data())
    }

    async fn on_client_frame(&mut self, frame: Bytes) {
        let now = Instant::now();
        let stream_data = Self::is_stream_data(&frame);
        if stream_data {
            self.last_activity = now;
        }
        if self.count_client_frame() {
            return self.kill_client().await;
        }
        // The cap counts the client's stream messages (new and retransmitted), not its
        // acknowledgements: the agent sends up to ~1000 messages a second and every client acks
        // each one, so a cap on acks would throttle every download the official plugin makes.
        if let Some(rate) = self.rate.as_mut().filter(|_| stream_data) {
            if let RateVerdict::Throttle { first_in_window } = rate.check(now) {
                self.faults.stats.throttled += 1;
                self.state.count_throttled();
                if first_in_window {
                    self.send_to_client(gateway_message(
                        MessageType::PausePublication,
                        Bytes::new(),
                    ))
                    .await;
                }
                return;
            }
        }
        if self.agent_away_until.is_some() {
            return; // the agent's websocket is down: the frame is lost, the client retransmits
        }
        for (at, f) in self.faults.process(Direction::ToAgent, frame, now) {
            self.schedule(Direction::ToAgent, at, f);
        }
        self.deliver_due(now).await;
    }

    async fn on_agent_frame(&mut self, frame: Bytes) {
        let now = Instant::now();
        match AgentMessage::decode(frame.clone()) {
            Ok(m) if m.message_type == MessageType::AgentSessionState => {
                // Consumed by the gateway (§13.2).
                let state: Option<AgentSessionStatePayload> =
                    serde_json::from_slice(&m.payload).ok();
                tracing::debug!(session = %self.session_id, ?state, "agent session state");
                if state.is_some_and(|s| s.session_state == "Terminating") {
                    self.state
                        .set_status(&self.session_id, SessionStatus::Terminating);
                }
                return;
            }
            Ok(m) if m.message_type.is_stream_data() => {
                self.last_activity = now;
                if let Some(pace) = &mut self.agent_pace {
                    if !pace.admit(now) {
                        pace.shaped += 1;
                        pace.held = Some(frame);
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(session = %self.session_id, "undecodable agent frame: {e}"),
        }
        if self.agent_away_until.is_some() {
            return; // lost on the dead agent websocket; the agent retransmits
        }
        if self.client.is_some() && self.count_client_frame() {
            return self.kill_client().await;
        }
        for (at, f) in self.faults.process(Direction::ToClient, frame, now) {
            self.schedule(Direction::ToClient, at, f);
        }
        self.deliver_due(now).await;
    }

    fn schedule(&mut self, dir: Direction, at: Instant, frame: Bytes) {
        self.order += 1;
        self.scheduled.push(Reverse(Scheduled {
            at,
            order: self.order,
            dir,
            frame,
        }));
    }

    async fn deliver_due(&mut self, now: Instant) {
        while self.scheduled.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Some(Reverse(s)) = self.scheduled.pop() else {
                break;
            };
            match s.dir {
                Direction::ToAgent => self.send_to_agent(s.frame).await,
                Direction::ToClient => self.send_to_client(s.frame).await,
            }
        }
    }

    async fn send_to_agent(&mut self, frame: Bytes) {
        if self.agent_open && self.agent.to_agent.send(frame).await.is_err() {
            tracing::debug!(session = %self.session_id, "agent gone");
        }
    }

    async fn send_to_client(&mut self, frame: Bytes) {
        match &self.client {
            Some(c) if c.silenced => {} // lost in the blackhole
            Some(c) => {
                if c.outbox.send(ClientOut::Frame(frame)).await.is_err() {
                    self.client_gone().await;
                }
            }
            None => {
                // No client attached (between a websocket's end and the next OpenDataChannel):
                // the frame is lost, as with the real gateway, which does not queue for a
                // client that is away (§13.2, §17.3). The
                // agent brings it back by resending its head, one message a 100 ms tick.
                self.dropped_while_away += 1;
                self.state.count_dropped_while_away();
            }
        }
    }

    /// Ends the session: pending frames reach the client first, then `channel_closed` (§10.1).
    async fn finish(&mut self, output: String, failed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        while let Some(Reverse(s)) = self.scheduled.pop() {
            if s.dir == Direction::ToClient {
                self.send_to_client(s.frame).await;
            }
        }
        let closed = ChannelClosed {
            message_id: uuid::Uuid::new_v4().to_string(),
            created_date: created_date_at(SystemTime::now()).to_string(),
            destination_id: self.target.clone(),
            session_id: self.session_id.clone(),
            message_type: "channel_closed".into(),
            schema_version: 1,
            output: output.clone(),
        };
        let frame = gateway_message(MessageType::ChannelClosed, to_json(&closed));
        if let Some(c) = &self.client {
            let _ = c.outbox.send(ClientOut::Frame(frame.clone())).await;
            let _ = c.outbox.send(ClientOut::Close(1000, String::new())).await;
        }
        if self.agent_open {
            let _ = self.agent.to_agent.try_send(frame);
        }
        let status = if failed {
            SessionStatus::Failed
        } else {
            SessionStatus::Terminated
        };
        self.state.set_status(&self.session_id, status);
        tracing::info!(session = %self.session_id, %output, failed, "session ended");
    }
}

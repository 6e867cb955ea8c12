//! Starting a session: record, token, relay task and agent task.

use crate::agent::{self, AgentSpec};
use crate::documents::SessionPlan;
use crate::fleet::Target;
use crate::relay::{agent_channel, Relay, CHANNEL_CAPACITY};
use crate::state::{SessionRecord, SessionStatus, SimState};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Creates the session and spawns its relay and simulated agent; returns (session id, token).
/// Must run inside a tokio runtime.
pub fn start(
    state: &Arc<SimState>,
    target: &Target,
    plan: SessionPlan,
    reason: Option<String>,
) -> (String, String) {
    let id = state.new_session_id();
    let token = state.new_token();
    let (relay_tx, relay_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (agent_link, gateway_link) = agent_channel();
    let owner = format!(
        "arn:aws:iam::{}:user/{}",
        state.config.account_id, state.config.user_name
    );
    state.sessions().insert(
        id.clone(),
        SessionRecord {
            id: id.clone(),
            target: target.id.clone(),
            plan: plan.clone(),
            reason,
            owner,
            status: SessionStatus::Connecting,
            start: SystemTime::now(),
            end: None,
            token: Some((token.clone(), Instant::now() + state.token_lifetime())),
            relay: relay_tx,
            streams_opened: 0,
        },
    );
    tracing::info!(session = %id, target = %target.id, document = %plan.document_name, "session started");
    let relay = Relay::new(
        state.clone(),
        id.clone(),
        target.id.clone(),
        relay_rx,
        gateway_link,
        state.random_u64(),
    );
    tokio::spawn(relay.run());
    let spec = AgentSpec {
        state: state.clone(),
        session_id: id.clone(),
        target: target.clone(),
        plan,
        seed: state.random_u64(),
    };
    tokio::spawn(agent::run(spec, agent_link));
    (id, token)
}

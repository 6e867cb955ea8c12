//! One forward from start to end: start its session for a listener that is already bound, wait
//! for the handshake, pick multiplexed or basic mode from the agent's version (§9.4), serve, and
//! close the session cleanly — or, when the session is gone for good, start the next one on the
//! same listener ([`restart`]). The drop-in plugin enters halfway, with a session the AWS CLI
//! started ([`forward_connected`]); it ends with its session, as the official plugin does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rssm_protocol::handshake::{agent_disables_smux_keepalive, agent_supports_mux};
use rssm_protocol::payload::Flag;
use rssm_protocol::{SessionType, SessionTypeInfo};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::held::Held;
use super::lanes::{LaneState, Phase};
use super::link::{Link, Stop};
use super::restart::{self, Backoff};
use super::source::Source;
use super::spec::ForwardSpec;
use super::status::{Console, Counters};
use super::voice::{Ctx, Label, Voice};
use super::{basic, mux};
use crate::aws::Aws;
use crate::cli::SessionArgs;
use crate::commands::{connect, Connected};
use crate::driver::{DriverConfig, End, Input, Output};

/// How long the agent may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping forward waits for the session to wind down.
const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything one forward needs.
pub struct Tunnel {
    /// API client.
    pub aws: Aws,
    /// How its sessions run.
    pub config: DriverConfig,
    /// Instance or managed-node id.
    pub target: String,
    /// `--document`, `--parameters`, `--reason`.
    pub session: SessionArgs,
    /// What to forward.
    pub spec: ForwardSpec,
    /// Its own listener (bound already, so a busy port fails before any session starts), or
    /// its lane of a listener several sessions share.
    pub source: Source,
    /// The lane's state, which the dispatcher reads (a forward of its own has one nobody reads).
    pub lane: Arc<LaneState>,
    /// Which forward and which of its sessions this is, for messages.
    pub label: Label,
}

impl Tunnel {
    /// One forward per lane (see [`super::lanes`]), all for the same destination, labelled
    /// `session I of N` when there are several, and with `name` if it has one.
    pub fn for_lanes(
        aws: &Aws,
        config: DriverConfig,
        target: &str,
        session: &SessionArgs,
        spec: &ForwardSpec,
        name: Option<&str>,
        lanes: Vec<(Source, Arc<LaneState>)>,
    ) -> Vec<Tunnel> {
        let n = lanes.len();
        lanes
            .into_iter()
            .enumerate()
            .map(|(i, (source, lane))| Tunnel {
                aws: aws.clone(),
                config,
                target: target.to_owned(),
                session: session.clone(),
                spec: spec.clone(),
                source,
                lane,
                label: Label {
                    name: name.map(str::to_owned),
                    lane: (n > 1).then_some((i + 1, n)),
                },
            })
            .collect()
    }
}

/// How the agent forwards (§9.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardMode {
    /// smux: any number of connections share the session.
    Mux { keep_alive: bool },
    /// Old agents: one connection at a time.
    Basic { agent_version: String },
}

/// Runs one forward of `rssm forward`. `Ok` when it stopped because the user asked; otherwise
/// the error says why it could not go on.
///
/// The first session must start: a wrong target, document or credentials fail the command at
/// once. After that the listener stays open whatever happens to the session: when one is gone
/// for good, its connections are closed (FIN) and a new session is started
/// ([`next_session`]), while new local connections wait for it ([`Held`]).
pub async fn run(
    tunnel: Tunnel,
    console: Console,
    counters: Arc<Counters>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let lane = tunnel.lane.clone();
    let name = tunnel.label.name.clone();
    let result = run_lane(tunnel, console, counters, shutdown).await;
    // With several named forwards (`rssm up`), say which one cannot go on.
    let result = match (result, name) {
        (Err(e), Some(name)) => Err(e.context(format!("forward {name}"))),
        (result, _) => result,
    };
    lane.set_phase(match &result {
        Ok(()) => Phase::Stopped,
        Err(e) => Phase::Failed(crate::one_line(e)),
    });
    result
}

async fn run_lane(
    tunnel: Tunnel,
    console: Console,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let Tunnel {
        aws,
        config,
        target,
        session,
        spec,
        mut source,
        lane,
        label,
    } = tunnel;
    let local = source.local_addr()?;
    let ctx =
        Ctx::new(console, counters, spec.remote().to_string(), Voice::Rssm).with_lane(lane.clone());
    let starter = Starter {
        aws,
        config,
        target,
        session,
        spec,
        local,
        label,
    };
    let (mut conn, mut mode) = match starter.start(&mut shutdown, &ctx.console).await {
        Ok(Some(ready)) => ready,
        Ok(None) => return Ok(()),
        Err(e) => return Err(e.error),
    };
    starter.announce(&ctx, &conn, &mode);
    lane.set_phase(Phase::Up);
    let mut held = Held::default();
    let mut backoff: Option<Backoff> = None;
    loop {
        let id = conn.started.session_id.clone();
        let began = Instant::now();
        let stop = serve(
            &mut conn,
            &mode,
            &mut source,
            held.take(),
            &ctx,
            &mut shutdown,
        )
        .await;
        tracing::debug!(session = %id, ?stop, "forward stopping");
        let why = match stop {
            Stop::Shutdown => {
                finish(&mut conn).await;
                conn.terminate().await;
                return Ok(());
            }
            Stop::Ended(End::Closed { reason }) if reason.is_empty() => {
                "closed by the service".to_owned()
            }
            Stop::Ended(End::Closed { reason }) => format!("closed by the service: {reason}"),
            Stop::Ended(End::Failed(reason)) => reason,
            Stop::Ended(End::Finished) => "finished".to_owned(),
            Stop::Failed(why) => {
                finish(&mut conn).await;
                why
            }
        };
        conn.terminate().await;
        drop(conn);
        lane.set_phase(Phase::Restarting);
        ctx.console.info(&format!(
            "rssm: session {id} ended ({why}); starting a new one…"
        ));
        let (lived, now) = (began.elapsed(), Instant::now());
        let backoff = match &mut backoff {
            Some(b) => {
                b.session_ended(lived, now);
                b
            }
            None => backoff.insert(Backoff::after_session(lived, now)),
        };
        let next = held
            .while_holding(
                &mut source,
                next_session(&starter, backoff, &shutdown, &ctx),
            )
            .await?;
        let Some(ready) = next else { return Ok(()) };
        (conn, mode) = ready;
        lane.set_phase(Phase::Up);
        let waiting = match held.len() {
            0 => String::new(),
            1 => " (1 connection waited for it)".to_owned(),
            n => format!(" ({n} connections waited for it)"),
        };
        ctx.console.info(&format!(
            "rssm: forwarding again via session {}{waiting}",
            conn.started.session_id
        ));
    }
}

/// Starts sessions for one forward.
struct Starter {
    aws: Aws,
    config: DriverConfig,
    target: String,
    session: SessionArgs,
    spec: ForwardSpec,
    local: SocketAddr,
    label: Label,
}

/// Why a session could not be started.
struct StartError {
    error: anyhow::Error,
    /// Trying again cannot help (see [`restart::is_permanent`]).
    permanent: bool,
}

impl StartError {
    fn new(error: anyhow::Error) -> StartError {
        StartError {
            permanent: restart::is_permanent(&error),
            error,
        }
    }
}

impl Starter {
    /// StartSession, the handshake and the mode: a session ready to serve. `None` when the user
    /// stopped meanwhile (the half-started session is ended).
    async fn start(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        console: &Console,
    ) -> Result<Option<(Connected, ForwardMode)>, StartError> {
        let params = self.spec.parameters(self.local.port());
        let document = Some(self.spec.document());
        let mut conn = connect(
            &self.aws,
            self.config,
            &self.target,
            document,
            params,
            &self.session,
        )
        .await
        .map_err(StartError::new)?;
        let id = conn.started.session_id.clone();
        // Agent data waits, unacknowledged, until a local connection can take it (§9.4, §14.15).
        let _ = conn.handle.input.send(Input::Ready(false)).await;
        let info = match handshake(&mut conn, shutdown, console).await {
            Ok(info) => info,
            Err(Stop::Shutdown) => {
                finish(&mut conn).await;
                conn.terminate().await;
                return Ok(None);
            }
            Err(Stop::Ended(end)) => {
                conn.terminate().await;
                return Err(StartError::new(anyhow!(
                    "session {id} {}",
                    ended_early(&end)
                )));
            }
            Err(Stop::Failed(why)) => {
                finish(&mut conn).await;
                conn.terminate().await;
                return Err(StartError::new(anyhow!("session {id}: {why}")));
            }
        };
        match mode(info.as_ref()) {
            Ok(mode) => Ok(Some((conn, mode))),
            Err(why) => {
                finish(&mut conn).await;
                conn.terminate().await;
                // The document's session type does not change: no point in retrying.
                Err(StartError {
                    error: anyhow!("session {id}: {why}"),
                    permanent: true,
                })
            }
        }
    }

    /// The `Forwarding …` line of a forward's first session.
    fn announce(&self, ctx: &Ctx, conn: &Connected, mode: &ForwardMode) {
        let local = self.local;
        let (target, id) = (&self.target, &conn.started.session_id);
        let mut line = format!("Forwarding {local} -> {} via {target} ({id})", ctx.remote);
        let label = self.label.to_string();
        if !label.is_empty() {
            line.push_str(&format!("; {label}"));
        }
        if let ForwardMode::Basic { agent_version } = mode {
            line.push_str(&format!(
                "; one connection at a time: agent {agent_version} predates multiplexing"
            ));
        }
        // With LPORT 0 the user cannot do without the chosen port, even with --quiet (one
        // line says it when several sessions share the port).
        if self.spec.local_port == 0 && self.label.is_first() {
            ctx.console.line(&line);
        } else {
            ctx.console.info(&line);
        }
    }
}

/// How a session that ended before its handshake completed is described.
fn ended_early(end: &End) -> String {
    match end {
        End::Closed { reason } if reason.is_empty() => "was closed by the service".into(),
        End::Closed { reason } => format!("was closed by the service: {reason}"),
        End::Failed(reason) => format!("failed: {reason}"),
        End::Finished => "ended".into(),
    }
}

/// Starts a new session after one was lost, pacing the attempts with `backoff`. `Ok(None)` when
/// the user stopped meanwhile; an error when retrying cannot help or patience ran out.
async fn next_session(
    starter: &Starter,
    backoff: &mut Backoff,
    shutdown: &watch::Receiver<bool>,
    ctx: &Ctx,
) -> Result<Option<(Connected, ForwardMode)>> {
    let mut shutdown = shutdown.clone();
    let mut last_error = None;
    loop {
        let Some(delay) = backoff.next_delay(Instant::now()) else {
            let why = last_error.map_or_else(String::new, |e: anyhow::Error| {
                format!(": {}", crate::one_line(&e))
            });
            return Err(anyhow!(
                "no working session for {} after {} s of trying; giving up{why}",
                starter.target,
                backoff.outage(Instant::now()).as_secs()
            ));
        };
        if *shutdown.borrow() {
            return Ok(None);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return Ok(None),
        }
        match starter.start(&mut shutdown, &ctx.console).await {
            Ok(ready) => return Ok(ready),
            Err(e) if e.permanent => return Err(e.error),
            Err(e) => {
                backoff.attempt_failed();
                let next = backoff.next_delay(Instant::now()).map_or_else(
                    || "giving up".to_owned(),
                    |d| format!("retrying in {} s", d.as_secs()),
                );
                ctx.console.info(&format!(
                    "rssm: cannot start a new session: {}; {next}",
                    crate::one_line(&e.error)
                ));
                last_error = Some(e.error);
            }
        }
    }
}

/// Serves `listener` over a connected session: handshake, mode, `announce`, serve.
pub async fn forward_connected(
    conn: &mut Connected,
    source: &mut Source,
    ctx: &Ctx,
    shutdown: &mut watch::Receiver<bool>,
    announce: impl FnOnce(&ForwardMode),
) -> Stop {
    // Agent data waits, unacknowledged, until a local connection can take it (§9.4, §14.15).
    let _ = conn.handle.input.send(Input::Ready(false)).await;
    let info = match handshake(conn, shutdown, &ctx.console).await {
        Ok(info) => info,
        Err(stop) => return stop,
    };
    let mode = match mode(info.as_ref()) {
        Ok(mode) => mode,
        Err(why) => return Stop::Failed(why),
    };
    announce(&mode);
    serve(conn, &mode, source, Vec::new(), ctx, shutdown).await
}

/// Serves `listener` over a session whose handshake is done, starting with the connections
/// that `waiting` for it.
async fn serve(
    conn: &mut Connected,
    mode: &ForwardMode,
    source: &mut Source,
    waiting: Vec<TcpStream>,
    ctx: &Ctx,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let link = Link {
        input: &conn.handle.input,
        output: &mut conn.handle.output,
        shutdown,
        hurry: Some(&conn.handle.hurry),
        demand: conn.handle.demand.as_deref(),
    };
    match mode {
        ForwardMode::Mux { keep_alive } => {
            let _ = link.input.send(Input::Ready(true)).await;
            mux::serve(source, waiting, link, ctx, *keep_alive).await
        }
        ForwardMode::Basic { .. } => basic::serve(source, waiting, link, ctx).await,
    }
}

/// Waits for the handshake; returns the session type the agent announced.
async fn handshake(
    conn: &mut Connected,
    shutdown: &mut watch::Receiver<bool>,
    console: &Console,
) -> Result<Option<SessionTypeInfo>, Stop> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut info = None;
    loop {
        if *shutdown.borrow() {
            return Err(Stop::Shutdown);
        }
        tokio::select! {
            out = conn.handle.output.recv() => match out {
                Some(Output::SessionType(t)) => info = Some(t),
                Some(Output::HandshakeComplete { customer_message }) => {
                    if !customer_message.is_empty() {
                        console.info(&customer_message);
                    }
                    return Ok(info);
                }
                Some(Output::Ended(end)) => return Err(Stop::Ended(end)),
                Some(other) => tracing::debug!("before the handshake completed: {other:?}"),
                None => return Err(Stop::Ended(End::Failed("the session driver stopped".into()))),
            },
            _ = shutdown.changed() => return Err(Stop::Shutdown),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Stop::Failed(format!(
                    "the agent did not complete the handshake within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )));
            }
        }
    }
}

/// Multiplexed or basic, as the official client decides (§9.4 table, §9.4.3 keep-alive).
fn mode(info: Option<&SessionTypeInfo>) -> Result<ForwardMode, String> {
    let info = info.ok_or("the agent did not announce a session type")?;
    if info.session_type != SessionType::Port {
        return Err(format!(
            "the document started a {} session, not port forwarding",
            info.session_type.as_str()
        ));
    }
    if info.property("type") != Some("LocalPortForwarding") {
        return Err(
            "the document's port session is not of type LocalPortForwarding \
                    (for SSH-style sessions use `rssm proxy`)"
                .into(),
        );
    }
    Ok(match info.agent_version.as_deref() {
        Some(v) if !agent_supports_mux(v) => ForwardMode::Basic {
            agent_version: v.to_owned(),
        },
        Some(v) => ForwardMode::Mux {
            keep_alive: !agent_disables_smux_keepalive(v),
        },
        // We report a client version that makes every agent able to multiplex do so.
        None => ForwardMode::Mux { keep_alive: false },
    })
}

/// Ends the session from our side: Flag TerminateSession (§9.4.2–3), then a finish that waits
/// briefly for acknowledgements. Output is drained meanwhile so the driver never blocks on us.
pub async fn finish(conn: &mut Connected) {
    let mut queue = VecDeque::from([Input::Flag(Flag::TerminateSession), Input::Finish]);
    let deadline = Instant::now() + FINISH_TIMEOUT;
    loop {
        tokio::select! {
            permit = conn.handle.input.reserve(), if !queue.is_empty() => match (permit, queue.pop_front()) {
                (Ok(permit), Some(input)) => permit.send(input),
                _ => return,
            },
            out = conn.handle.output.recv() => match out {
                Some(Output::Ended(_)) | None => return,
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::forward::voice::remote_of;
    use serde_json::json;

    fn port(version: Option<&str>, kind: Option<&str>) -> SessionTypeInfo {
        SessionTypeInfo {
            session_type: SessionType::Port,
            properties: match kind {
                Some(k) => json!({"portNumber": "80", "type": k}),
                None => json!({"portNumber": "80"}),
            },
            agent_version: version.map(str::to_owned),
        }
    }

    #[test]
    fn mode_follows_the_official_version_gates() {
        let lpf = Some("LocalPortForwarding");
        assert_eq!(
            mode(Some(&port(Some("3.3.1802.0"), lpf))),
            Ok(ForwardMode::Mux { keep_alive: false })
        );
        assert_eq!(
            mode(Some(&port(Some("3.1.1511.0"), lpf))),
            Ok(ForwardMode::Mux { keep_alive: true })
        );
        assert_eq!(
            mode(Some(&port(Some("3.0.196.0"), lpf))),
            Ok(ForwardMode::Basic {
                agent_version: "3.0.196.0".into()
            })
        );
        assert!(mode(Some(&port(Some("3.3.1802.0"), None))).is_err());
        assert!(mode(None).is_err());
    }

    #[test]
    fn remote_is_host_and_port_with_ipv6_bracketed() {
        let mut info = port(None, None);
        assert_eq!(remote_of(&info), "localhost:80");
        info.properties = json!({"portNumber": "5432", "host": "fd00::5"});
        assert_eq!(remote_of(&info), "[fd00::5]:5432");
        info.properties = json!({"portNumber": "5432", "host": "db.internal"});
        assert_eq!(remote_of(&info), "db.internal:5432");
    }
}

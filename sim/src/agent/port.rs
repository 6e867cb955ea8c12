//! Port sessions (PROTOCOL.md §9.4, §9.5): AWS-StartPortForwardingSession[ToRemoteHost] and
//! AWS-StartSSHSession.
//!
//! Mode, as the agent chooses it: `type == LocalPortForwarding` and client version ≥ 1.1.70 →
//! smux server (keep-alive off iff client version > 1.2.331.0); otherwise basic single-stream
//! forwarding, where for SSH-style sessions (no `type`) destination EOF ends the session. Reads are
//! ≤ 1024 bytes and stop while publication is paused. Link-local destinations (IMDS, VPC DNS) are
//! refused.

use super::{wait_active, FromPlugin, PluginContext, ToPlugin, READ_CHUNK};
use bytes::Bytes;
use rssm_protocol::handshake::compare_versions;
use rssm_protocol::message::PayloadType;
use rssm_protocol::payload::Flag;
use rssm_protocol::smux::{SmuxConfig, SmuxEvent, SmuxRole, SmuxSession, StreamId};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// Clients at or above this version get smux (`port.go`).
const MUX_MIN_CLIENT: &str = "1.1.70";
/// Clients above this version get smux keep-alive disabled.
const KEEPALIVE_OFF_AFTER: &str = "1.2.331.0";

fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(), // 169.254.0.0/16: IMDS, VPC DNS, time sync
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd00 && s[1] == 0x0ec2 // fd00:ec2::/32: IMDS and DNS over IPv6
        }
    }
}

/// Whether the agent multiplexes for this client (§9.4).
pub fn uses_mux(port_type: Option<&str>, client_version: Option<&str>) -> bool {
    port_type == Some("LocalPortForwarding")
        && client_version.is_some_and(|v| compare_versions(v, MUX_MIN_CLIENT).is_ge())
}

/// Whether the agent's smux server keeps keep-alive on for this client.
pub fn keepalive_on(client_version: Option<&str>) -> bool {
    !client_version.is_some_and(|v| compare_versions(v, KEEPALIVE_OFF_AFTER).is_gt())
}

async fn done(ctx: &PluginContext, output: String, failed: bool) {
    let _ = ctx.output.send(FromPlugin::Done { output, failed }).await;
}

async fn dial(dest: &str) -> Result<TcpStream, String> {
    let addrs: Vec<_> = tokio::net::lookup_host(dest)
        .await
        .map_err(|e| format!("dial tcp {dest}: {e}"))?
        .collect();
    if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(format!(
            "Forwarding to IP address {} is forbidden.",
            bad.ip()
        ));
    }
    let mut last = format!("dial tcp {dest}: no addresses");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("dial tcp {a}: {e}"),
        }
    }
    Err(last)
}

/// Runs the port plugin.
pub async fn run(ctx: PluginContext) {
    let props = &ctx.plan.properties;
    let prop = |k: &str| props.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let port = prop("portNumber").unwrap_or_else(|| "80".into());
    let host = prop("host").unwrap_or_else(|| "localhost".into());
    let port_type = prop("type");
    if let Ok(ip) = host.parse::<IpAddr>() {
        if is_forbidden(ip) {
            return done(
                &ctx,
                format!("Forwarding to IP address {ip} is forbidden."),
                true,
            )
            .await;
        }
    }
    let dest = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let version = ctx.client_version.clone();
    if uses_mux(port_type.as_deref(), version.as_deref()) {
        let keepalive = keepalive_on(version.as_deref());
        tracing::debug!(session = %ctx.session_id, %dest, keepalive, "port session: smux");
        mux(ctx, dest, keepalive).await;
    } else {
        let end_on_eof = port_type.as_deref() != Some("LocalPortForwarding");
        tracing::debug!(session = %ctx.session_id, %dest, end_on_eof, "port session: basic");
        basic(ctx, dest, end_on_eof).await;
    }
}

enum ReadEvent {
    Data(u64, Bytes),
    Eof(u64),
}

fn spawn_reader(
    gen: u64,
    pause: Duration,
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<ReadEvent>,
    mut active: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut pacer = ReadPacer::new(pause);
        loop {
            if !wait_active(&mut active).await {
                return;
            }
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(ReadEvent::Eof(gen)).await;
                    return;
                }
                Ok(n) => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if tx.send(ReadEvent::Data(gen, data)).await.is_err() {
                        return;
                    }
                }
            }
            pacer.wait().await;
        }
    })
}

/// Basic single-stream forwarding (`port_basic.go`).
async fn basic(mut ctx: PluginContext, dest: String, end_on_eof: bool) {
    let stream = match dial(&dest).await {
        Ok(s) => s,
        Err(e) => {
            return done(
                &ctx,
                format!("Unable to connect to specified port: {e}"),
                true,
            )
            .await
        }
    };
    let _ = ctx.output.send(FromPlugin::Ready).await;
    let (tx, mut rx) = mpsc::channel::<ReadEvent>(16);
    let mut gen = 0u64;
    let (rd, wr) = stream.into_split();
    let mut reader = Some(spawn_reader(
        gen,
        ctx.state.config.agent_read_pause,
        rd,
        tx.clone(),
        ctx.active.clone(),
    ));
    let mut writer: Option<OwnedWriteHalf> = Some(wr);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ReadEvent::Data(g, data)) if g == gen => {
                    if ctx.output.send(FromPlugin::Send(PayloadType::Output, data)).await.is_err() {
                        return;
                    }
                }
                Some(ReadEvent::Eof(g)) if g == gen => {
                    if end_on_eof {
                        return done(&ctx, String::new(), false).await;
                    }
                    // Wait for the next Output to re-dial (reconnectToPort).
                    writer = None;
                }
                Some(_) => {}
                None => return,
            },
            input = ctx.input.recv() => match input {
                Some(ToPlugin::Output(data)) => {
                    if writer.is_none() {
                        match dial(&dest).await {
                            Ok(s) => {
                                gen += 1;
                                let (rd, wr) = s.into_split();
                                if let Some(r) = reader.take() { r.abort(); }
                                reader = Some(spawn_reader(gen, ctx.state.config.agent_read_pause, rd, tx.clone(), ctx.active.clone()));
                                writer = Some(wr);
                            }
                            Err(e) => {
                                return done(&ctx, format!("Unable to connect to specified port: {e}"), true).await;
                            }
                        }
                    }
                    if let Some(w) = &mut writer {
                        if w.write_all(&data).await.is_err() {
                            writer = None;
                        }
                    }
                }
                Some(ToPlugin::Flag(Flag::DisconnectToPort)) => {
                    if let Some(r) = reader.take() { r.abort(); }
                    writer = None;
                    gen += 1;
                }
                Some(ToPlugin::Flag(Flag::TerminateSession)) => {
                    return done(&ctx, String::new(), false).await;
                }
                Some(_) => {}
                None => return,
            },
        }
    }
}

enum StreamMsg {
    Connected(StreamId, mpsc::Sender<Bytes>),
    ConnectFailed(StreamId, String),
    Data(StreamId, Bytes),
    Eof(StreamId),
}

#[derive(Default)]
struct MuxStream {
    writer: Option<mpsc::Sender<Bytes>>,
    peer_finished: bool,
}

/// The agent's pumps sleep 1 ms after each read and send (`time.Sleep(time.Millisecond)`, which
/// oversleeps slightly). Tokio's timers round up to whole milliseconds, which alone would halve that
/// rate, so this keeps one read per pause on average: a late wake-up lets the next few go at
/// once instead of losing the time.
struct ReadPacer {
    pause: Duration,
    next: Instant,
}

impl ReadPacer {
    fn new(pause: Duration) -> ReadPacer {
        ReadPacer {
            pause,
            next: Instant::now(),
        }
    }

    fn ready(&self) -> bool {
        self.pause.is_zero() || Instant::now() >= self.next
    }

    fn sent(&mut self) {
        let now = Instant::now();
        let floor = now.checked_sub(self.pause * 4).unwrap_or(now);
        self.next = (self.next + self.pause).max(floor);
    }

    async fn wait(&mut self) {
        if self.pause.is_zero() {
            return;
        }
        self.sent();
        tokio::time::sleep_until(self.next.into()).await;
    }
}

/// Largest read from a mux stream's destination (Go's `io.Copy` buffer).
const DEST_READ: usize = 32 * 1024;

/// Smux output held before the mux stops taking data from its destination connections.
const MUX_OUTPUT_LIMIT: usize = 64 * 1024;

/// Multiplexed forwarding (`port_mux.go`): an smux server whose streams each dial the destination.
async fn mux(mut ctx: PluginContext, dest: String, keepalive: bool) {
    let config = SmuxConfig {
        keep_alive: keepalive.then_some(SmuxConfig::DEFAULT_KEEP_ALIVE),
        ..SmuxConfig::default()
    };
    let mut smux = SmuxSession::new(SmuxRole::Server, config, Instant::now());
    let _ = ctx.output.send(FromPlugin::Ready).await;
    if ctx.state.config.faults.hostile == Some(crate::Hostile::SmuxSynFlood) {
        syn_flood(&ctx).await;
    }
    let (ev_tx, mut ev_rx) = mpsc::channel::<StreamMsg>(64);
    let mut streams: HashMap<StreamId, MuxStream> = HashMap::new();
    let mut readable: HashSet<StreamId> = HashSet::new();
    // `transferDataToMgs` reads at most 1024 bytes of smux output, sends them and sleeps 1 ms:
    // one message per pause, which caps a mux session near 1 MB/s however many streams it has.
    let mut pacer = ReadPacer::new(ctx.state.config.agent_read_pause);
    loop {
        // `if dataChannel.IsActive()` before every read: nothing is read while paused.
        while pacer.ready() && *ctx.active.borrow() {
            let Some(chunk) = smux.poll_output(READ_CHUNK) else {
                break;
            };
            if ctx
                .output
                .send(FromPlugin::Send(PayloadType::Output, chunk))
                .await
                .is_err()
            {
                tracing::debug!(session = %ctx.session_id, "mux: driver gone (output)");
                return;
            }
            pacer.sent();
        }
        while let Some(ev) = smux.poll_event() {
            match ev {
                SmuxEvent::StreamOpened(id) => {
                    if let Some(r) = ctx.state.sessions().get_mut(&ctx.session_id) {
                        r.streams_opened += 1;
                    }
                    streams.insert(id, MuxStream::default());
                    tokio::spawn(stream_task(
                        id,
                        dest.clone(),
                        ev_tx.clone(),
                        ctx.active.clone(),
                    ));
                }
                SmuxEvent::Readable(id) => {
                    readable.insert(id);
                }
                SmuxEvent::StreamFinished(id) => {
                    if let Some(s) = streams.get_mut(&id) {
                        s.peer_finished = true;
                    }
                    readable.insert(id);
                }
                SmuxEvent::SessionClosed(e) => {
                    tracing::info!(session = %ctx.session_id, "smux session closed: {e}");
                    return done(&ctx, String::new(), false).await;
                }
            }
        }
        // Move received stream data to destination writers that have room.
        readable.retain(|id| {
            let Some(s) = streams.get_mut(id) else {
                return false;
            };
            let Some(w) = &s.writer else {
                return true; // still dialing
            };
            while w.capacity() > 0 {
                match smux.read(*id, 32 * 1024) {
                    Some(b) => {
                        let _ = w.try_send(b);
                    }
                    None => {
                        if s.peer_finished {
                            s.writer = None; // half-close towards the destination
                        }
                        return false;
                    }
                }
            }
            true
        });
        let blocked = !readable.is_empty();
        let active = *ctx.active.borrow();
        let paced = smux.pending_output() > 0 && active;
        // Data from the destinations waits in their sockets, not here, while output is paced.
        let take_data = smux.pending_output() < MUX_OUTPUT_LIMIT;
        let wake = smux
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            input = ctx.input.recv() => match input {
                Some(ToPlugin::Output(data)) => {
                    if let Err(e) = smux.handle_input(&data, Instant::now()) {
                        tracing::info!(session = %ctx.session_id, "smux input error: {e}");
                        return done(&ctx, format!("smux error: {e}"), true).await;
                    }
                }
                Some(ToPlugin::Flag(Flag::TerminateSession)) => {
                    tracing::debug!(session = %ctx.session_id, "mux: TerminateSession flag");
                    return done(&ctx, String::new(), false).await;
                }
                Some(_) => {}
                None => {
                    tracing::debug!(session = %ctx.session_id, "mux: driver gone (input)");
                    return;
                }
            },
            msg = ev_rx.recv(), if take_data => match msg {
                Some(StreamMsg::Connected(id, w)) => {
                    if let Some(s) = streams.get_mut(&id) {
                        s.writer = Some(w);
                        readable.insert(id);
                    }
                }
                Some(StreamMsg::ConnectFailed(id, e)) => {
                    tracing::info!(session = %ctx.session_id, "mux dial failed: {e}");
                    let flag = Bytes::copy_from_slice(&Flag::ConnectToPortError.to_bytes());
                    let _ = ctx.output.send(FromPlugin::Send(PayloadType::Flag, flag)).await;
                    let _ = smux.close(id);
                    streams.remove(&id);
                }
                Some(StreamMsg::Data(id, data)) => {
                    if smux.write(id, &data).is_err() {
                        streams.remove(&id);
                    }
                }
                Some(StreamMsg::Eof(id)) => {
                    let _ = smux.close(id);
                }
                None => return,
            },
            _ = tokio::time::sleep(Duration::from_millis(2)), if blocked => {}
            _ = tokio::time::sleep_until(pacer.next.into()), if paced => {}
            changed = ctx.active.changed(), if !active => if changed.is_err() { return },
            _ = tokio::time::sleep_until(wake.into()) => smux.handle_timeout(Instant::now()),
        }
    }
}

/// [`crate::Hostile::SmuxSynFlood`]: messages of 128 smux SYN headers (version 1, cmd 0,
/// length 0, a new even stream id each, as a server's), opening streams nobody asked for.
async fn syn_flood(ctx: &PluginContext) {
    let mut id: u32 = 2;
    for _ in 0..crate::Hostile::FLOOD {
        let mut msg = Vec::with_capacity(READ_CHUNK);
        for _ in 0..READ_CHUNK / 8 {
            msg.extend_from_slice(&[1, 0, 0, 0]);
            msg.extend_from_slice(&id.to_le_bytes());
            id = id.wrapping_add(2);
        }
        let sent = ctx
            .output
            .send(FromPlugin::Send(PayloadType::Output, Bytes::from(msg)))
            .await;
        if sent.is_err() {
            return;
        }
        ctx.state.count_hostile();
    }
}

async fn stream_task(
    id: StreamId,
    dest: String,
    events: mpsc::Sender<StreamMsg>,
    mut active: watch::Receiver<bool>,
) {
    let stream = match dial(&dest).await {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(StreamMsg::ConnectFailed(id, e)).await;
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(16);
    if events.send(StreamMsg::Connected(id, wtx)).await.is_err() {
        return;
    }
    tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    // The agent copies a destination into its smux stream with `io.Copy` (32 KiB reads); only
    // the pump that turns smux output into messages reads 1024 bytes at a time. Reading the
    // destination 1024 bytes at a time too would split every 1032-byte frame into a full
    // message and an 8-byte one.
    let mut buf = vec![0u8; DEST_READ];
    loop {
        if !wait_active(&mut active).await {
            return;
        }
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = events.send(StreamMsg::Eof(id)).await;
                return;
            }
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                if events.send(StreamMsg::Data(id, data)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_gates_match_the_agent() {
        assert!(uses_mux(Some("LocalPortForwarding"), Some("1.2.0.0")));
        assert!(uses_mux(Some("LocalPortForwarding"), Some("1.1.70")));
        assert!(!uses_mux(Some("LocalPortForwarding"), Some("1.1.61.0")));
        assert!(!uses_mux(None, Some("1.3.0.0")));
        assert!(!uses_mux(Some("LocalPortForwarding"), None));
        assert!(keepalive_on(Some("1.2.0.0")));
        assert!(keepalive_on(Some("1.2.331.0")));
        assert!(!keepalive_on(Some("1.2.650.0")));
        assert!(!keepalive_on(Some("1.3.0.0")));
    }

    #[test]
    fn refuses_link_local_destinations() {
        assert!(is_forbidden("169.254.169.254".parse().unwrap()));
        assert!(is_forbidden("fd00:ec2::254".parse().unwrap()));
        assert!(!is_forbidden("127.0.0.1".parse().unwrap()));
    }
}

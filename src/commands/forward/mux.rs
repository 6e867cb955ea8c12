//! Multiplexed forwarding (PROTOCOL.md §9.4.3): we are the smux client; every accepted local
//! connection is one smux stream, and the session's Output payloads carry the smux byte stream.
//!
//! One loop owns the [`SmuxSession`] and talks to a task per connection ([`Conn`]). Memory stays
//! bounded in both directions:
//! * upstream, the loop takes connection bytes only while little smux output is waiting, and hands
//!   smux output to the driver only when the driver has room — so a slow data channel stops the
//!   local reads;
//! * downstream, each connection has a small queue; smux v1 has no per-stream flow control, so when
//!   a local reader is slow its bytes wait in the session-wide receive buffer, and once that is full
//!   ([`SmuxSession::can_receive`]) we stop taking Output from the driver, whose bounded channel
//!   then pushes back on the websocket (xtaci does the same with its token bucket).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rssm_protocol::payload::Flag;
use rssm_protocol::smux::{SmuxConfig, SmuxEvent, SmuxRole, SmuxSession, StreamId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::conn::{Conn, ConnEvent};
use super::tunnel::{Ctx, Link, Reports, Stop, CHUNK};
use crate::driver::{End, Input, Output};

/// Stop taking local bytes while this much smux output waits for the driver.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Connection events in flight, from all connections together (each ≤ 32 KiB of data).
const EVENT_QUEUE: usize = 32;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// A local connection as the loop sees it.
struct Stream {
    conn: Conn,
    /// Bytes delivered towards the local socket so far.
    bytes_down: u64,
    /// The agent sent FIN: once the buffered bytes are delivered, the socket is half-closed.
    remote_fin: bool,
}

/// Serves `listener` over the session until the user stops, the session ends, or smux fails,
/// starting with the connections `waiting` since before the session was ready.
/// `keep_alive` turns on smux NOPs for agents that keep their own keep-alive on (§9.4.3).
pub async fn serve<R: Reports>(
    listener: &TcpListener,
    waiting: Vec<TcpStream>,
    link: Link<'_, R>,
    ctx: &Ctx,
    keep_alive: bool,
) -> Stop {
    let config = SmuxConfig {
        keep_alive: keep_alive.then_some(SmuxConfig::DEFAULT_KEEP_ALIVE),
        ..SmuxConfig::default()
    };
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let mut mux = Mux {
        smux: SmuxSession::new(SmuxRole::Client, config, Instant::now().into_std()),
        streams: HashMap::new(),
        readable: BTreeSet::new(),
        refused_pending: 0,
        events_tx,
        room: Arc::new(Notify::new()),
        ctx,
    };
    for socket in waiting {
        mux.adopt(socket);
    }
    mux.run(listener, link, events).await
}

struct Mux<'a> {
    smux: SmuxSession,
    streams: HashMap<StreamId, Stream>,
    /// Streams that may have received bytes (or a FIN) not yet passed to their connection; after
    /// [`Mux::deliver`] only those whose connection queue is full remain.
    readable: BTreeSet<StreamId>,
    /// ConnectToPortError flags not yet matched to the stream the agent closed.
    refused_pending: usize,
    events_tx: mpsc::Sender<ConnEvent>,
    room: Arc<Notify>,
    ctx: &'a Ctx,
}

impl Mux<'_> {
    async fn run<R: Reports>(
        &mut self,
        listener: &TcpListener,
        link: Link<'_, R>,
        mut events: mpsc::Receiver<ConnEvent>,
    ) -> Stop {
        let Link {
            input,
            output,
            shutdown,
        } = link;
        let mut accept_after: Option<Instant> = None;
        loop {
            if let Some(stop) = self.handle_smux_events() {
                return stop;
            }
            self.deliver();
            let accepting = accept_after.is_none_or(|t| Instant::now() >= t);
            let timer = self.smux.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = shutdown.changed() => return Stop::Shutdown,
                out = output.recv(), if self.smux.can_receive() => match out {
                    Some(Output::Data(bytes)) => {
                        if let Err(e) = self.smux.handle_input(&bytes, Instant::now().into_std()) {
                            return Stop::Failed(format!("the smux stream from the agent is broken: {e}"));
                        }
                    }
                    Some(Output::Flag(Flag::ConnectToPortError)) => self.on_refused(),
                    Some(Output::Ended(end)) => return Stop::Ended(end),
                    Some(other) => tracing::debug!("ignored during forwarding: {other:?}"),
                    None => return Stop::Ended(End::Failed("the session driver stopped".into())),
                },
                permit = input.reserve(), if self.smux.pending_output() > 0 => {
                    let Ok(permit) = permit else {
                        return Stop::Ended(End::Failed("the session driver stopped".into()));
                    };
                    // One payload per message, as the agent expects (§12); then as many more as
                    // the driver takes without waiting.
                    if let Some(chunk) = self.smux.poll_output(CHUNK) {
                        permit.send(Input::Data(chunk));
                    }
                    while self.smux.pending_output() > 0 {
                        let Ok(permit) = input.try_reserve() else { break };
                        if let Some(chunk) = self.smux.poll_output(CHUNK) {
                            permit.send(Input::Data(chunk));
                        }
                    }
                },
                _ = self.room.notified(), if !self.readable.is_empty() => {}
                Some(event) = events.recv(), if self.smux.pending_output() < OUTPUT_HIGH_WATER => {
                    self.on_conn_event(event);
                }
                accepted = listener.accept(), if accepting => match accepted {
                    Ok((socket, peer)) => {
                        tracing::debug!(%peer, "connection accepted");
                        accept_after = None;
                        self.adopt(socket);
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        accept_after = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                },
                _ = sleep_until_opt(accept_after), if !accepting => accept_after = None,
                _ = sleep_until_opt(timer), if timer.is_some() => {
                    self.smux.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }

    /// Serves a new local connection as a new smux stream.
    fn adopt(&mut self, socket: TcpStream) {
        match self.smux.open_stream() {
            Ok(id) => {
                tracing::debug!(stream = id.0, "stream opened");
                self.ctx.counters.opened();
                self.ctx.on_accept(false);
                let conn = Conn::spawn(
                    id.0,
                    socket,
                    self.events_tx.clone(),
                    self.room.clone(),
                    self.ctx.counters.clone(),
                );
                self.streams.insert(
                    id,
                    Stream {
                        conn,
                        bytes_down: 0,
                        remote_fin: false,
                    },
                );
            }
            Err(e) => {
                // Only GoAway (ids exhausted after ~2 billion connections) or a dead session get
                // here; the latter is reported by its event.
                let peer = socket
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                self.ctx
                    .console
                    .line(&format!("rssm: cannot open a stream for {peer}: {e}"));
            }
        }
    }

    fn handle_smux_events(&mut self) -> Option<Stop> {
        while let Some(event) = self.smux.poll_event() {
            match event {
                SmuxEvent::Readable(id) => {
                    self.readable.insert(id);
                }
                SmuxEvent::StreamFinished(id) => self.on_remote_fin(id),
                SmuxEvent::StreamOpened(id) => {
                    // The agent is the smux server and never opens streams; refuse politely.
                    tracing::debug!(stream = id.0, "agent opened a stream; closing it");
                    let _ = self.smux.drop_stream(id);
                }
                SmuxEvent::SessionClosed(e) => {
                    return Some(Stop::Failed(format!("the smux session failed: {e}")));
                }
            }
        }
        None
    }

    /// Moves received bytes into the connections' queues while they have room.
    fn deliver(&mut self) {
        let mut blocked = BTreeSet::new();
        for id in std::mem::take(&mut self.readable) {
            let Some(stream) = self.streams.get_mut(&id) else {
                while self.smux.read(id, usize::MAX).is_some() {} // connection gone: discard
                continue;
            };
            // What to do once the borrow of the connection's queue ends.
            enum Next {
                Done,
                Blocked,
                HalfClose,
                Gone,
            }
            let next = loop {
                let Some(to_local) = &stream.conn.to_local else {
                    while self.smux.read(id, usize::MAX).is_some() {}
                    break Next::Done;
                };
                match to_local.try_reserve() {
                    Ok(permit) => match self.smux.read(id, usize::MAX) {
                        Some(chunk) => {
                            stream.bytes_down += chunk.len() as u64;
                            permit.send(chunk);
                        }
                        None if stream.remote_fin => break Next::HalfClose,
                        None => break Next::Done,
                    },
                    Err(TrySendError::Full(())) => break Next::Blocked,
                    Err(TrySendError::Closed(())) => break Next::Gone,
                }
            };
            match next {
                Next::Done => {}
                Next::Blocked => {
                    blocked.insert(id);
                }
                // Dropping the queue half-closes the local socket once it is written.
                Next::HalfClose => stream.conn.to_local = None,
                Next::Gone => {
                    // The local socket cannot be written any more: stop receiving too.
                    stream.conn.to_local = None;
                    let _ = self.smux.drop_stream(id);
                }
            }
        }
        self.readable = blocked;
    }

    fn on_conn_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Data(id, bytes) => {
                // Fails only for a stream already dropped (refused, or the socket broke).
                let _ = self.smux.write(StreamId(id), &bytes);
            }
            ConnEvent::Eof(id) => {
                let _ = self.smux.close(StreamId(id));
            }
            ConnEvent::Reset(id) => {
                let id = StreamId(id);
                let _ = self.smux.drop_stream(id);
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.conn.to_local = None;
                }
            }
            ConnEvent::Closed(id) => {
                let id = StreamId(id);
                // Normally both FINs were seen and smux forgot the stream already; if the agent's
                // side is still open (our socket broke), close it now.
                let _ = self.smux.drop_stream(id);
                if self.streams.remove(&id).is_some() {
                    self.ctx.counters.closed();
                }
            }
        }
    }

    /// The agent could not connect to the destination for one stream (§9.4.3). The flag names no
    /// stream; the agent closes the stream right after sending it, so the stream is the one whose
    /// FIN arrives (or arrived) without any data.
    fn on_refused(&mut self) {
        self.ctx.on_refused();
        let already_finished = self
            .streams
            .iter()
            .filter(|(id, s)| s.remote_fin && s.bytes_down == 0 && !self.readable.contains(id))
            .map(|(id, _)| *id)
            .max();
        match already_finished {
            Some(id) => self.close_refused(id),
            None => self.refused_pending += 1,
        }
    }

    fn on_remote_fin(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.remote_fin = true;
        // A stream with data is in `readable` already (its Readable came first).
        let no_data = stream.bytes_down == 0 && !self.readable.contains(&id);
        if no_data && self.refused_pending > 0 {
            self.refused_pending -= 1;
            self.close_refused(id);
        } else {
            self.readable.insert(id);
        }
    }

    /// Closes a refused connection's socket both ways, so the local client sees it fail at once.
    fn close_refused(&mut self, id: StreamId) {
        let _ = self.smux.drop_stream(id);
        self.readable.remove(&id);
        if let Some(stream) = self.streams.remove(&id) {
            stream.conn.abort();
            self.ctx.counters.closed();
        }
    }
}

/// Leaving the loop closes every connection cleanly: what the agent sent is delivered, then FIN.
impl Drop for Mux<'_> {
    fn drop(&mut self) {
        for (_, stream) in self.streams.drain() {
            stream.conn.close();
            self.ctx.counters.closed();
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

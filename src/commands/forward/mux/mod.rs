//! Multiplexed forwarding (PROTOCOL.md §9.4.3): we are the smux client; every accepted local
//! connection is one smux stream, and the session's Output payloads carry the smux byte stream.
//!
//! One loop owns the [`SmuxSession`] and talks to a task per connection ([`Conn`]). Memory stays
//! bounded in both directions:
//! * upstream, each connection may have [`UP_CREDIT`] bytes read but not yet passed on (its
//!   reads wait for credit); the loop writes them into smux round-robin, at most one message's
//!   worth per connection per turn, and only while little smux output waits for the driver — so a
//!   slow data channel stops the local reads, and a keystroke on one connection never queues
//!   behind another connection's bulk (with pacing on, connection bytes go into smux only when
//!   the driver asks for as many messages as it can send at once, see [`Demand`], so its frame
//!   goes out with the next message);
//! * downstream, each connection has a small queue; smux v1 has no per-stream flow control, so when
//!   a local reader is slow its bytes wait in the session-wide receive buffer, and once that is full
//!   ([`SmuxSession::can_receive`]) we stop taking Output from the driver, whose bounded channel
//!   then pushes back on the websocket (xtaci does the same with its token bucket).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rssm_protocol::payload::Flag;
use rssm_protocol::smux::{SmuxConfig, SmuxEvent, SmuxRole, SmuxSession, StreamId};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;

use super::conn::{Conn, ConnEvent, Credit, READ_SIZE, TO_LOCAL_CHUNK};
use super::link::{Link, Reports, Stop};
use super::source::Source;
use super::turns::Turns;
use super::voice::Ctx;
use rssm_protocol::MAX_STREAM_PAYLOAD;

use crate::clock::sleep_until_opt;
use crate::driver::{Demand, End, Input, Output};

/// Bytes one connection may have read and not yet passed on to smux.
const UP_CREDIT: usize = 64 * 1024;
/// The same for all connections together: one busy connection gets its whole [`UP_CREDIT`],
/// fifty share this (bounding memory, not throughput: the session is the bottleneck then).
const UP_POOL: usize = 512 * 1024;
/// Connection bytes per smux frame: one frame fills one stream message (8-byte smux header).
const FRAME_DATA: usize = MAX_STREAM_PAYLOAD - 8;
/// Stop writing connection bytes into smux while this much smux output waits for the driver
/// without pacing, where the data channel drains it at once. Paced, connection bytes go into
/// smux only when the driver asks for messages (see [`Demand`]), as many as it asked for: what
/// waits in smux waits in front of every other connection's bytes.
const OUTPUT_LOW_UNPACED: usize = 64 * 1024;
/// Received bytes the smux session may hold for slow local readers before we stop taking
/// Output from the driver (xtaci's default is 4 MiB).
const RECEIVE_BUFFER: usize = 1024 * 1024;
/// Connection events in flight, from all connections together (each ≤ 32 KiB of data).
const EVENT_QUEUE: usize = 32;
/// How long the session's receive buffer may stay full before the connection holding the most
/// of it is dropped. smux v1 has no per-stream flow control: one local client that stops
/// reading (a paused program, a stuck pipe) would otherwise stop every connection of the
/// session, and with them the driver's acknowledgements, for good.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// A local connection as the loop sees it.
struct Stream {
    conn: Conn,
    /// The local client's address, for messages.
    peer: Option<std::net::SocketAddr>,
    /// Bytes delivered towards the local socket so far.
    bytes_down: u64,
    /// The agent sent FIN: once the buffered bytes are delivered, the socket is half-closed.
    remote_fin: bool,
    /// The connection's read credit (see [`Conn::spawn_credited`]).
    credit: Arc<Credit>,
}

/// Serves the connections of `source` over the session until the user stops, the session ends,
/// or smux fails, starting with the connections `waiting` since before the session was ready.
/// `keep_alive` turns on smux NOPs for agents that keep their own keep-alive on (§9.4.3).
pub async fn serve<R: Reports>(
    source: &mut Source,
    waiting: Vec<TcpStream>,
    link: Link<'_, R>,
    ctx: &Ctx,
    keep_alive: bool,
) -> Stop {
    let config = SmuxConfig {
        keep_alive: keep_alive.then_some(SmuxConfig::DEFAULT_KEEP_ALIVE),
        max_receive_buffer: RECEIVE_BUFFER,
        ..SmuxConfig::default()
    };
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let paced = link.demand.is_some();
    let mut mux = Mux {
        smux: SmuxSession::new(SmuxRole::Client, config, Instant::now().into_std()),
        streams: HashMap::new(),
        turns: Turns::new(if paced { FRAME_DATA } else { READ_SIZE }),
        readable: BTreeSet::new(),
        refused_pending: 0,
        full_since: None,
        events_tx,
        room: Arc::new(Notify::new()),
        up_pool: Arc::new(Semaphore::new(UP_POOL)),
        ctx,
    };
    for socket in waiting {
        mux.adopt(socket);
    }
    mux.run(source, link, events).await
}

struct Mux<'a> {
    smux: SmuxSession,
    streams: HashMap<StreamId, Stream>,
    /// Connection bytes (or EOFs) waiting to go into smux, and whose turn it is. Turns carry
    /// one message's worth when paced (fair to the message), a whole read otherwise (fewer
    /// frames for the agent to handle).
    turns: Turns,
    /// Streams that may have received bytes (or a FIN) not yet passed to their connection; after
    /// [`Mux::deliver`] only those whose connection queue is full remain.
    readable: BTreeSet<StreamId>,
    /// ConnectToPortError flags not yet matched to the stream the agent closed.
    refused_pending: usize,
    /// Since when the session's receive buffer has been full (see [`STALL_LIMIT`]).
    full_since: Option<Instant>,
    events_tx: mpsc::Sender<ConnEvent>,
    room: Arc<Notify>,
    /// The upload credit all connections share (see [`Credit`]).
    up_pool: Arc<Semaphore>,
    ctx: &'a Ctx,
}

/// How many messages the driver asks for; never, without a [`Demand`].
async fn wanted(demand: Option<&Demand>) -> usize {
    match demand {
        Some(demand) => demand.wanted().await,
        None => std::future::pending().await,
    }
}

impl Mux<'_> {
    async fn run<R: Reports>(
        &mut self,
        source: &mut Source,
        link: Link<'_, R>,
        mut events: mpsc::Receiver<ConnEvent>,
    ) -> Stop {
        let Link {
            input,
            output,
            shutdown,
            hurry,
            demand,
        } = link;
        // Paced, the driver asks for data (see `Demand`); otherwise it takes what it is given.
        let mut accept_after: Option<Instant> = None;
        loop {
            if let Some(stop) = self.handle_smux_events() {
                return stop;
            }
            self.deliver();
            let stall_deadline = self.drop_stalled();
            if demand.is_none() {
                self.take_turns(OUTPUT_LOW_UNPACED);
            }
            let accepting = accept_after.is_none_or(|t| Instant::now() >= t);
            let has_output = self.smux.pending_output() > 0 || !self.turns.is_empty();
            if let Some(demand) = demand {
                if has_output {
                    demand.offer(self.waiting_messages());
                } else {
                    demand.withdraw();
                }
            }
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
                // Paced: the driver asked for `n` messages, which go out at once. Only now do
                // connections take their turns, so a keystroke that came meanwhile is in them.
                n = wanted(demand), if has_output => {
                    self.take_turns(n * MAX_STREAM_PAYLOAD);
                    for _ in 0..n {
                        let permit = match input.try_reserve() {
                            Ok(permit) => permit,
                            Err(TrySendError::Closed(())) => {
                                return Stop::Ended(End::Failed("the session driver stopped".into()));
                            }
                            Err(TrySendError::Full(())) => break,
                        };
                        // One payload per message, as the agent expects (§12).
                        let Some(chunk) = self.smux.poll_output(MAX_STREAM_PAYLOAD) else { break };
                        permit.send(Input::Data(chunk));
                    }
                },
                permit = input.reserve(), if demand.is_none() && has_output => {
                    let Ok(permit) = permit else {
                        return Stop::Ended(End::Failed("the session driver stopped".into()));
                    };
                    // One payload per message, as the agent expects (§12): as many as the
                    // driver takes without waiting.
                    if let Some(chunk) = self.smux.poll_output(MAX_STREAM_PAYLOAD) {
                        permit.send(Input::Data(chunk));
                    }
                    while self.smux.pending_output() > 0 {
                        let Ok(permit) = input.try_reserve() else { break };
                        if let Some(chunk) = self.smux.poll_output(MAX_STREAM_PAYLOAD) {
                            permit.send(Input::Data(chunk));
                        }
                    }
                },
                _ = self.room.notified(), if !self.readable.is_empty() => {}
                _ = sleep_until_opt(stall_deadline) => {}
                Some(event) = events.recv() => {
                    if self.on_conn_event(event) {
                        if let Some(hurry) = hurry {
                            hurry.notify_one();
                        }
                    }
                }
                accepted = source.accept(), if accepting => match accepted {
                    Ok(socket) => {
                        accept_after = None;
                        self.adopt(socket);
                        // A new connection's first exchange (a TLS or SSH handshake, a request)
                        // waits on round trips like typing does: its SYN goes at once and the
                        // answers are read as they come, not in the next batch.
                        if let Some(hurry) = hurry {
                            hurry.notify_one();
                        }
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

    /// Messages' worth of data waiting to go: smux output, and connection bytes not yet in
    /// smux (a frame header each message).
    fn waiting_messages(&self) -> usize {
        let up = self.turns.waiting_bytes();
        self.smux.pending_output().div_ceil(MAX_STREAM_PAYLOAD)
            + up.div_ceil(self.turns.frame_data())
    }

    /// Serves a new local connection as a new smux stream.
    fn adopt(&mut self, socket: TcpStream) {
        match self.smux.open_stream() {
            Ok(id) => {
                tracing::debug!(stream = id.0, "stream opened");
                self.ctx.opened();
                self.ctx.on_accept(false);
                let credit = Arc::new(Credit::new(UP_CREDIT, self.up_pool.clone()));
                let peer = socket.peer_addr().ok();
                let conn = Conn::spawn_credited(
                    id.0,
                    socket,
                    self.events_tx.clone(),
                    self.room.clone(),
                    self.ctx.counters.clone(),
                    Some(credit.clone()),
                );
                self.streams.insert(
                    id,
                    Stream {
                        conn,
                        peer,
                        bytes_down: 0,
                        remote_fin: false,
                        credit,
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
                    // The agent is the smux server and never opens streams: forget it, without
                    // a FIN, so a flood of them costs nothing but the reading.
                    tracing::debug!(stream = id.0, "agent opened a stream; ignoring it");
                    self.smux.refuse_stream(id);
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
                    Ok(permit) => match self.smux.read(id, TO_LOCAL_CHUNK) {
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

    /// Takes a connection's report; true when it brought interactive bytes (a few, from a
    /// connection that had nothing waiting: a keystroke, not a transfer), which then go first.
    fn on_conn_event(&mut self, event: ConnEvent) -> bool {
        match event {
            ConnEvent::Data(id, bytes) => {
                let id = StreamId(id);
                if self.streams.contains_key(&id) {
                    return self.turns.push(id, bytes);
                }
            }
            ConnEvent::Eof(id) => {
                let id = StreamId(id);
                if self.turns.eof(id) {
                    let _ = self.smux.close(id);
                }
            }
            ConnEvent::Reset(id) => {
                let id = StreamId(id);
                let _ = self.smux.drop_stream(id);
                let charged = self.turns.reset(id);
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.conn.to_local = None;
                    // The pool is shared: what this connection was charged goes back to it.
                    stream.credit.give(charged);
                }
            }
            ConnEvent::Closed(id) => {
                // Read to the end, but not all of it in smux yet: that is finished first.
                let id = StreamId(id);
                if self.turns.closed(id) {
                    self.forget(id);
                }
            }
        }
        false
    }

    /// The connection is done: normally both FINs were seen and smux forgot the stream already;
    /// if the agent's side is still open (our socket broke), close it now.
    fn forget(&mut self, id: StreamId) {
        let _ = self.smux.drop_stream(id);
        self.turns.forget(id);
        if self.streams.remove(&id).is_some() {
            self.ctx.closed();
        }
    }

    /// Writes waiting connection bytes into smux, a turn at a time (see [`Turns`]), while less
    /// than `output_low` bytes of smux output wait.
    fn take_turns(&mut self, output_low: usize) {
        while self.smux.pending_output() < output_low {
            let Some(turn) = self.turns.next() else {
                return;
            };
            if let Some(data) = turn.data {
                if let Some(stream) = self.streams.get(&turn.id) {
                    stream.credit.give(data.len());
                }
                // Fails only for a stream already dropped (refused, or the socket broke).
                let _ = self.smux.write(turn.id, &data);
            }
            if turn.close {
                let _ = self.smux.close(turn.id);
            }
            if turn.forget {
                self.forget(turn.id);
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
            Some(id) => self.close_now(id),
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
            self.close_now(id);
        } else {
            self.readable.insert(id);
        }
    }

    /// While the receive buffer is full, drops the blocked connection holding the most of it
    /// once the buffer has been full for [`STALL_LIMIT`]; returns when to look again.
    fn drop_stalled(&mut self) -> Option<Instant> {
        if self.smux.can_receive() {
            self.full_since = None;
            return None;
        }
        let now = Instant::now();
        let since = *self.full_since.get_or_insert(now);
        let deadline = since + STALL_LIMIT;
        if now < deadline {
            return Some(deadline);
        }
        let id = self
            .readable
            .iter()
            .copied()
            .max_by_key(|id| self.smux.stream_buffered(*id))?;
        let peer = self.streams.get(&id).and_then(|s| s.peer);
        self.ctx
            .on_stalled(peer, now - since, self.smux.stream_buffered(id));
        self.close_now(id);
        self.full_since = None;
        None
    }

    /// Closes a connection's socket both ways and forgets its stream, so the local client sees
    /// it fail at once (a refused or a stalled connection).
    fn close_now(&mut self, id: StreamId) {
        let _ = self.smux.drop_stream(id);
        self.readable.remove(&id);
        if let Some(stream) = self.streams.remove(&id) {
            stream.conn.abort();
            self.ctx.closed();
        }
    }
}

/// Leaving the loop closes every connection cleanly: what the agent sent is delivered, then FIN.
impl Drop for Mux<'_> {
    fn drop(&mut self) {
        for (_, stream) in self.streams.drain() {
            stream.conn.close();
            self.ctx.closed();
        }
    }
}

#[cfg(test)]
mod tests;

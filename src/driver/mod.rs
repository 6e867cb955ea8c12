//! Runs one protocol [`Session`] on tokio: the only code that touches both the websocket and the
//! sans-IO state machine. It is a loop that moves bytes and sleeps until timers; what to send
//! when is decided in `rssm-protocol` ([`SendQueue`], [`Liveness`], [`ReadBatcher`]) and the
//! session itself. Commands talk to it through [`channel`]'s two bounded channels.
//!
//! Beside the loop: [`reconnect`] (resuming on a new websocket), [`kms`] (the data key of an
//! encrypted session) and [`Demand`] (paced hand-over of bulk data).

mod channel;
mod demand;
mod kms;
mod reconnect;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use rand_core::RngCore;
use rssm_protocol::liveness::{Liveness, DEFAULT_ALIVE_TIMEOUT};
use rssm_protocol::message::created_date_at;
use rssm_protocol::read_batch::{self, ReadBatcher, FRAMES_PER_WAKE};
use rssm_protocol::send_queue::{Ask, SendQueue, FINISH_GRACE};
use rssm_protocol::{Event, Session, SessionConfig};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub use channel::{DriverHandle, End, Input, Output, Outputs};
pub use demand::Demand;

use crate::clock::sleep_until_opt;
use crate::transport::{self, close_quickly, ChannelAuth, Ws};
use kms::{recv_data_key, DataKeyResult};

/// How every session of this process runs, from the command line (or, in plugin mode, the
/// environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// How long a path may stay silent before it counts as dead: no frame at all (not even a
    /// pong), or data waiting without any acknowledgement, or a write that cannot go out. The
    /// session then resumes on a new websocket.
    pub alive_timeout: Duration,
    /// Stream messages per second per session (`--max-msg-rate`); `None` sends unpaced.
    pub max_message_rate: Option<u32>,
    /// Status notices (reconnecting, resumed) stay off: `--quiet`.
    pub quiet: bool,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            alive_timeout: DEFAULT_ALIVE_TIMEOUT,
            max_message_rate: Some(rssm_protocol::pacing::DEFAULT_MAX_RATE),
            quiet: false,
        }
    }
}

impl DriverConfig {
    /// A status message for the user on stderr, unless quiet (see [`crate::notice`]).
    pub fn notice(&self, text: &str) {
        if !self.quiet {
            crate::notice(text);
        }
    }
}

/// What the driver asks of AWS for this session: ResumeSession for a fresh token when the
/// websocket drops, KMS GenerateDataKey when the agent asks for encryption (§8.1).
pub struct DriverContext {
    /// The API client.
    pub aws: crate::aws::Aws,
    /// The session to resume.
    pub session_id: String,
}

/// Opens the data channel and starts driving `session` on it; its pacing comes from `config`.
/// Fails only if the websocket cannot be opened; later failures arrive as [`End::Failed`].
pub async fn start(
    auth: ChannelAuth,
    mut session: SessionConfig,
    config: DriverConfig,
    context: Option<DriverContext>,
) -> Result<DriverHandle> {
    let ws = transport::open(&auth).await?;
    session.max_message_rate = config.max_message_rate;
    let now = Instant::now();
    let mut seed = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let session = Session::new(
        session,
        now.into_std(),
        created_date_at(std::time::SystemTime::now()),
        seed,
    );
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(256);
    let hurry = Arc::new(Notify::new());
    let demand = config.max_message_rate.map(|_| Arc::new(Demand::default()));
    let mut d = Driver {
        session,
        ws,
        auth,
        context,
        config,
        data_key: None,
        failure: None,
        input: in_rx,
        output: out_tx,
        finishing: None,
        queue: SendQueue::new(),
        liveness: Liveness::new(config.alive_timeout, now.into_std(), 0),
        hurry: hurry.clone(),
        demand: demand.clone(),
        read_batcher: Some(ReadBatcher::default()),
        mark_to_set: None,
    };
    tokio::spawn(async move {
        let end = d.run().await;
        tracing::debug!(?end, stats = ?d.session.stats(), "session ended");
        close_quickly(&mut d.ws).await;
        let _ = d.output.send(Output::Ended(end)).await;
    });
    Ok(DriverHandle {
        input: in_tx,
        output: Outputs {
            rx: out_rx,
            unread: Default::default(),
        },
        hurry,
        demand,
    })
}

/// Why the websocket stopped working (as opposed to the session ending).
struct Broken(String);

struct Driver {
    session: Session,
    ws: Ws,
    auth: ChannelAuth,
    context: Option<DriverContext>,
    config: DriverConfig,
    /// The answer of a KMS call in flight; the loop keeps serving the websocket meanwhile.
    data_key: Option<oneshot::Receiver<DataKeyResult>>,
    /// Why the session cannot go on although the channel may still close cleanly (a KMS
    /// failure): reported instead of however the channel ends.
    failure: Option<String>,
    input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
    /// Deadline of a requested [`Input::Finish`].
    finishing: Option<Instant>,
    /// Stream data taken from the command, and what may go when.
    queue: SendQueue,
    /// Dead-peer detection for the current websocket.
    liveness: Liveness,
    /// See [`DriverHandle::hurry`].
    hurry: Arc<Notify>,
    demand: Option<Arc<Demand>>,
    /// When to read the websocket (see [`read_batch`]); `None` where the low-water mark
    /// cannot be set.
    read_batcher: Option<ReadBatcher>,
    /// A low-water mark the batcher asked for and [`Driver::apply_mark`] has not set yet.
    mark_to_set: Option<u32>,
}

impl Driver {
    /// Runs until the session ends; a broken websocket is resumed when possible (§5.6).
    async fn run(&mut self) -> End {
        let end = loop {
            let Broken(why) = match self.run_connected().await {
                Ok(end) => break end,
                Err(broken) => broken,
            };
            if self.finishing.is_some() {
                break End::Finished;
            }
            if let Err(e) = self.reconnect(&why).await {
                break End::Failed(e);
            }
        };
        tracing::debug!(stats = ?self.session.stats(), "session totals");
        match self.failure.take() {
            Some(why) => End::Failed(why),
            None => end,
        }
    }

    /// Drives the session on the current websocket.
    async fn run_connected(&mut self) -> Result<End, Broken> {
        let alive = self.liveness.timeout();
        let every = self.liveness.ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        let mut input_open = true;
        let mut woke_for_frames = true;
        // Its own handle, so that waiting on it in `select!` borrows nothing of `self`.
        let demand = self.demand.clone();
        loop {
            if !woke_for_frames
                && self
                    .read_batcher
                    .as_ref()
                    .is_some_and(ReadBatcher::batching)
            {
                // Awake anyway: read what the raised mark kept back before deciding anything on
                // it (a retransmission timer must not fire for messages whose acks wait unread,
                // and the pacer's batch goes after its predecessor's acks). Lowering the mark
                // makes the socket readable at once; one yield lets the runtime see that.
                self.batch_reads(Instant::now(), |b, _, _| b.on_wake());
                self.apply_mark();
                tokio::task::yield_now().await;
                self.take_ready_frames()?;
                // Read late: their acks go now, not after their own delay.
                self.session.flush_acks();
            }
            woke_for_frames = false;
            if input_open {
                self.take_waiting_input();
            }
            // A gateway that stops reading lets the socket's buffers fill; the write would wait
            // forever.
            match tokio::time::timeout(alive, self.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Broken(format!("sending failed: {e}"))),
                Err(_) => return Err(Broken(format!("sending stalled for {} s", alive.as_secs()))),
            }
            if let Some(end) = self.forward_events().await {
                return Ok(end);
            }
            if let Some(deadline) = self.finishing {
                let done = self.session.unacked() == 0 && self.queue.is_empty();
                if done || Instant::now() >= deadline {
                    return Ok(End::Finished);
                }
            }
            let accept_input = input_open && self.finishing.is_none() && self.has_room();
            self.queue
                .on_tick(&mut self.session, Instant::now().into_std());
            let next_ask = self.ask_for_offered_data();
            if let Some(batch) = next_ask {
                // Until the pacer's next batch, frames (this batch's acks) can wait for it.
                self.batch_reads(Instant::now(), |b, now, waits| {
                    b.hold_until(now, batch.into_std(), waits)
                });
            }
            let timer = self
                .session
                .poll_timeout()
                .map(Instant::from_std)
                .into_iter()
                .chain(self.finishing)
                .chain(next_ask)
                .chain(
                    (self.read_batcher.as_ref())
                        .and_then(ReadBatcher::deadline)
                        .map(Instant::from_std),
                )
                .min();
            self.apply_mark();
            tokio::select! {
                biased;
                frame = self.ws.next() => {
                    woke_for_frames = true;
                    self.on_ws(frame)?;
                    self.take_ready_frames()?;
                    // Read late when the mark was up: the acks go now, not after their delay.
                    if self.read_batcher.as_ref().is_some_and(ReadBatcher::batching) {
                        self.session.flush_acks();
                    }
                }
                key = recv_data_key(&mut self.data_key) => self.on_data_key(key),
                _ = offered(demand.as_deref()) => {}
                _ = self.hurry.notified() => {
                    let now = Instant::now().into_std();
                    self.queue.hurry(&mut self.session, now);
                    self.batch_reads(Instant::now(), |b, now, _| b.on_interactive(now));
                }
                cmd = self.input.recv(), if accept_input => match cmd {
                    Some(cmd) => self.on_input(cmd),
                    None => {
                        input_open = false;
                        self.finishing = Some(Instant::now() + FINISH_GRACE);
                    }
                },
                _ = sleep_until_opt(timer) => self.session.handle_timeout(Instant::now().into_std()),
                _ = ping.tick() => {
                    let stats = self.session.stats();
                    let now = Instant::now().into_std();
                    if let Err(dead) = self.liveness.check(now, stats.acks_received, self.session.unacked()) {
                        return Err(Broken(dead.to_string()));
                    }
                    let ping = self.ws.send(Message::Ping(Bytes::from_static(b"keepalive")));
                    match tokio::time::timeout(alive, ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(Broken(e.to_string())),
                        Err(_) => return Err(Broken(format!("sending stalled for {} s", alive.as_secs()))),
                    }
                }
            }
        }
    }

    /// Takes what the websocket gave: a frame for the session, or the end of the connection.
    fn on_ws(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), Broken> {
        let now = Instant::now();
        self.liveness.on_frame(now.into_std());
        match frame {
            Some(Ok(Message::Binary(b))) => {
                let len = b.len();
                self.on_frame(b, now);
                self.batch_reads(now, |b, now, waits| b.on_frame(now, len, waits));
            }
            Some(Ok(Message::Text(t))) => self.on_frame(Bytes::from(t.as_bytes().to_vec()), now),
            Some(Ok(Message::Close(c))) => {
                let why = c
                    .map(|c| format!(" ({} {})", c.code, c.reason))
                    .unwrap_or_default();
                return Err(Broken(format!("the service closed the data channel{why}")));
            }
            Some(Ok(_)) => {} // ping/pong: tungstenite answers pings on the next flush
            Some(Err(e)) => return Err(Broken(e.to_string())),
            None => return Err(Broken("the data channel closed".into())),
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Bytes, now: Instant) {
        if let Err(e) = self.session.handle_frame(frame, now.into_std()) {
            tracing::debug!("ignored frame: {e}");
        }
    }

    /// Takes the frames already read (or readable without waiting), up to [`FRAMES_PER_WAKE`]
    /// in all with the one just taken: they go through the session before anything else runs,
    /// so the loop's work (flush, events, timers) is done once per wake-up, not per frame. Not
    /// past the end of the session: the websocket's close that follows channel_closed is no
    /// reason to reconnect.
    fn take_ready_frames(&mut self) -> Result<(), Broken> {
        for _ in 1..FRAMES_PER_WAKE {
            if self.session.is_closed() {
                break;
            }
            match self.ws.next().now_or_never() {
                Some(frame) => self.on_ws(frame)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Passes an event at `now` to the read batcher (with whether the peer waits for our acks);
    /// the low-water mark it asks for is set by [`Self::apply_mark`], once per loop turn.
    fn batch_reads(
        &mut self,
        now: Instant,
        event: impl FnOnce(&mut ReadBatcher, std::time::Instant, bool) -> Option<u32>,
    ) {
        let Some(b) = &mut self.read_batcher else {
            return;
        };
        if let Some(mark) = event(b, now.into_std(), self.session.peer_waits()) {
            self.mark_to_set = Some(mark);
        }
    }

    /// Sets the low-water mark the batcher last asked for, if it changed. A mark that cannot
    /// be set ends read batching for the session: the kernel's default reads every frame as it
    /// comes.
    fn apply_mark(&mut self) {
        let Some(mark) = self.mark_to_set.take() else {
            return;
        };
        tracing::trace!(mark, "websocket receive low-water mark");
        if let Err(e) = transport::set_read_low_water(&self.ws, mark) {
            tracing::debug!("cannot set the receive low-water mark, reading every frame: {e}");
            self.read_batcher = None;
            let _ = transport::set_read_low_water(&self.ws, read_batch::READ_AT_ONCE);
        }
    }

    fn on_input(&mut self, cmd: Input) {
        // What looks typed is answered soon: read that answer as it comes.
        let typed = match &cmd {
            Input::Data(b) => self.queue.looks_typed(b.len(), &self.session),
            Input::Size { .. } | Input::Flag(_) => true,
            Input::Ready(_) | Input::Finish => false,
        };
        if typed {
            self.batch_reads(Instant::now(), |b, now, _| b.on_interactive(now));
        }
        let result = match cmd {
            Input::Data(b) => {
                self.queue.push(b);
                Ok(0)
            }
            Input::Size { cols, rows } => self.session.send_size(cols, rows),
            Input::Flag(f) => self.session.send_flag(f),
            Input::Ready(r) => {
                self.session.set_ready(r);
                Ok(0)
            }
            Input::Finish => {
                self.finishing = Some(Instant::now() + FINISH_GRACE);
                Ok(0)
            }
        };
        if let Err(e) = result {
            tracing::debug!("send refused: {e}");
        }
    }

    /// Messages' worth of data waiting outside the send queue: in the input channel (a message
    /// at most each) or offered by a command (see [`Demand`]).
    fn waiting_elsewhere(&self) -> usize {
        self.input.len() + self.demand.as_deref().map_or(0, Demand::offered)
    }

    /// Whether to take more data from the input channel.
    fn has_room(&mut self) -> bool {
        let elsewhere = self.waiting_elsewhere();
        (self.queue).has_room(&mut self.session, Instant::now().into_std(), elsewhere)
    }

    /// Takes what waits in the input channel and may go out now, so that one write carries it
    /// all (paced, a batch's messages go at once, not one now and the rest a loop turn later).
    fn take_waiting_input(&mut self) {
        while self.finishing.is_none() && self.has_room() {
            let Ok(cmd) = self.input.try_recv() else {
                return; // empty, or closed: the loop's `recv` sees that
            };
            self.on_input(cmd);
        }
    }

    /// Paced, asks a command that offers data for as many messages as may go now; when the
    /// pacer lets none go, returns when to ask again (its next wake-up).
    fn ask_for_offered_data(&mut self) -> Option<Instant> {
        let demand = self.demand.as_deref()?;
        if self.finishing.is_some() {
            return None;
        }
        let now = Instant::now().into_std();
        match (self.queue).ask(&mut self.session, now, demand.offered(), self.input.len()) {
            Ask::Nothing => None,
            Ask::Messages(n) => {
                demand.ask(n);
                None
            }
            Ask::Later(at) => Some(Instant::from_std(at)),
        }
    }

    /// Writes everything the session has to send now: acknowledgements, due retransmissions,
    /// and queued data as far as the pacer and the send window allow.
    async fn flush(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let now = Instant::now().into_std();
        let mut any = false;
        loop {
            let elsewhere = self.waiting_elsewhere();
            self.queue.release(&mut self.session, now, elsewhere);
            let mut sent = false;
            while let Some(frame) = self.session.poll_transmit(now) {
                self.ws.feed(Message::Binary(frame)).await?;
                sent = true;
            }
            any |= sent;
            if !sent || self.queue.is_empty() {
                break;
            }
        }
        if any {
            self.ws.flush().await?;
        }
        Ok(())
    }

    /// Passes session events on; returns how the session ended, if it did.
    async fn forward_events(&mut self) -> Option<End> {
        while let Some(ev) = self.session.poll_event() {
            let out = match ev {
                Event::SessionType(t) => Output::SessionType(t),
                Event::HandshakeComplete {
                    customer_message, ..
                } => Output::HandshakeComplete { customer_message },
                Event::Output(b) => Output::Data(b),
                Event::StdErr(b) => Output::StdErr(b),
                Event::ExitCode(c) => Output::ExitCode(c),
                Event::Flag(f) => Output::Flag(f),
                Event::DataKeyRequired(req) => {
                    self.request_data_key(req);
                    continue;
                }
                Event::ChannelClosed(cc) => return Some(End::Closed { reason: cc.output }),
                Event::Closed(reason) => return Some(End::Failed(reason.to_string())),
                Event::PublicationPaused
                | Event::PublicationStarted
                | Event::AgentSessionState(_)
                | Event::Size(_)
                | Event::Payload { .. } => continue,
            };
            if self.output.send(out).await.is_err() {
                // The command is gone: finish quietly.
                self.finishing.get_or_insert(Instant::now() + FINISH_GRACE);
            }
        }
        None
    }
}

/// Returns when a command offers data; never without a [`Demand`] (unpaced).
async fn offered(demand: Option<&Demand>) {
    match demand {
        Some(d) => d.to_driver.notified().await,
        None => std::future::pending().await,
    }
}

//! Runs one protocol [`Session`] on tokio: the only code that touches both the websocket and the
//! sans-IO state machine. Commands talk to it through two bounded channels — [`Input`] in,
//! [`Output`] out — so a slow terminal or socket pushes back on the websocket instead of buffering.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use rssm_protocol::crypto::CONTEXT_TARGET_ID;
use rssm_protocol::payload::Flag;
use rssm_protocol::{
    DataKey, DataKeyRequest, Event, PayloadType, Session, SessionConfig, SessionTypeInfo,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::coalesce::{self, Coalescer};
use crate::transport::{self, ChannelAuth, Ws};

/// Most unacknowledged messages in flight: ~0.5 MiB at 1 KiB each, enough to fill the service's
/// per-session rate (~1000 messages/s) at round trips up to half a second, and loopback's
/// ceiling, while bounding memory.
const SEND_WINDOW: usize = 512;
/// Most sequence numbers the send buffer may span. When the peer holds one message back (an
/// agent whose handler is not ready drops it until our retransmission), it keeps acking the
/// ones after it, and without this bound each of those would leave a slot behind until the
/// held one is acked: 15 000 slots (1.3 MiB) in a 150 MB/s burst on loopback.
const SEND_SPAN: usize = 8 * SEND_WINDOW;
/// Websocket keep-alive ping interval (the plugin pings every 5 minutes; the agent every 54 s),
/// shortened to a third of the alive timeout when that is short, so a silently dead path is
/// noticed within [`alive_timeout`] plus one interval.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// The alive timeout unless `--alive-timeout` says otherwise.
pub const DEFAULT_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// The alive timeout in milliseconds: a process-wide setting from the command line (like
/// `--quiet`), read by every session the process runs.
static ALIVE_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_ALIVE_TIMEOUT.as_millis() as u64);

/// Sets how long a path may stay silent before it counts as dead: no frame at all (not even a
/// pong), or data waiting without any acknowledgement, or a write that cannot go out. The
/// session then resumes on a new websocket.
pub fn set_alive_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    ALIVE_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

fn alive_timeout() -> Duration {
    Duration::from_millis(ALIVE_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Stream messages per second per session (`--max-msg-rate`; 0 = unpaced): a process-wide
/// setting like the alive timeout.
static MAX_MESSAGE_RATE: AtomicU32 = AtomicU32::new(rssm_protocol::pacing::DEFAULT_MAX_RATE);

/// Sets the pacing ceiling of every session this process starts (0 turns pacing off).
pub fn set_max_message_rate(rate: u32) {
    MAX_MESSAGE_RATE.store(rate, Ordering::Relaxed);
}

/// The pacing ceiling for new sessions, `None` when pacing is off.
pub fn max_message_rate() -> Option<u32> {
    Some(MAX_MESSAGE_RATE.load(Ordering::Relaxed)).filter(|&r| r > 0)
}

/// Data inputs the driver holds before it stops taking more from its channel. Held data is not
/// numbered yet, so control messages (Size, flags) overtake it and small writes coalesce. Paced,
/// the driver holds only what the pacer lets go at once (see [`Driver::data_room`]): whatever
/// waits here waits in front of the next keystroke.
const HELD_DATA_UNPACED: usize = 8;
/// Numbered but never-sent messages without pacing: enough to keep the websocket busy between
/// two loop turns.
const UNSENT_UNPACED: usize = 64;
/// Payload bytes per stream message (PROTOCOL.md §12): coalesced writes never exceed it.
const MAX_PAYLOAD: usize = 1024;
/// Reconnect attempts after the websocket drops: the first at once, then with exponential
/// backoff (100–200 ms doubling, capped at 5 s, like the official plugin's retryer, §5.6) —
/// about half a minute in all.
const RECONNECT_ATTEMPTS: u32 = 8;
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Input up to this size, with nothing else waiting to go, counts as typed (a keystroke, an SSH
/// packet of one; a transfer's writes are larger or come queued).
const TYPED_BYTES: usize = 256;
/// Most websocket frames taken in one turn of the driver loop (the rest wait for the next turn).
const FRAMES_PER_TURN: usize = 64;
/// How long a [`DriverHandle::hurry`] keeps the pacer waking per message.
const HURRY_FOR: Duration = Duration::from_millis(20);
/// Longest wait for our close frame to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long [`Input::Finish`] waits for outstanding acknowledgements.
const FINISH_GRACE: Duration = Duration::from_secs(2);
/// Longest wait for KMS GenerateDataKey: the agent gives up on our HandshakeResponse after 15 s
/// (§7.2), so a slower answer is useless.
const KMS_TIMEOUT: Duration = Duration::from_secs(15);

/// What a command asks of the session.
#[derive(Debug)]
pub enum Input {
    /// Stream bytes (keystrokes, TCP data, smux bytes): at most 1024 per message.
    Data(Bytes),
    /// Terminal size.
    Size { cols: u32, rows: u32 },
    /// A control flag (TerminateSession, DisconnectToPort).
    Flag(Flag),
    /// Whether the command can take Output now ("handler not ready", PROTOCOL.md §6.3).
    Ready(bool),
    /// Send what is queued, wait briefly for acknowledgements, close the websocket.
    Finish,
}

/// What the session reports to a command.
#[derive(Debug)]
pub enum Output {
    /// The session type (from the handshake, or inferred from a shell's first output).
    SessionType(SessionTypeInfo),
    /// Handshake finished; `customer_message` is shown to the user when non-empty.
    HandshakeComplete { customer_message: String },
    /// Remote stdout / terminal / TCP / smux bytes.
    Data(Bytes),
    /// Remote stderr (non-interactive commands).
    StdErr(Bytes),
    /// Remote exit code.
    ExitCode(i32),
    /// A control flag from the agent.
    Flag(Flag),
    /// The session is over; nothing follows.
    Ended(End),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The service closed the channel (`channel_closed`), with its reason text (often empty).
    Closed { reason: String },
    /// We finished after [`Input::Finish`].
    Finished,
    /// Something broke: the websocket died, the peer stopped acknowledging, bad crypto.
    Failed(String),
}

/// The command side of a running session.
pub struct DriverHandle {
    /// Requests to the session (bounded: sending waits while the session is full).
    pub input: mpsc::Sender<Input>,
    /// Reports from the session, ending with [`Output::Ended`].
    pub output: Outputs,
    /// Notified when something interactive (a keystroke through a forward) waits behind bulk
    /// data: the pacer then wakes per message for [`HURRY_FOR`] ([`Session::set_hurried`]).
    pub hurry: Arc<Notify>,
    /// How a command with more data than the pacer lets go hands it over (see [`Demand`]).
    pub demand: Arc<Demand>,
}

/// Paced, how a command with bulk data to send (a forward) hands it over without queueing it:
/// it [offers](Demand::offer), the driver [asks](Demand::ask) for as many messages as it may
/// send right now, and only then does the command choose whose bytes those are, so a keystroke
/// that arrives meanwhile goes first instead of waiting behind data the driver merely holds.
/// The messages a wake-up of the pacer allows arrive together and leave in one write.
#[derive(Debug, Default)]
pub struct Demand {
    /// Messages the driver asked for and the command has not handed over yet.
    want: AtomicUsize,
    /// How many messages' worth of data the command has waiting (0: none).
    offered: AtomicUsize,
    /// Wakes the command when the driver asks.
    to_command: Notify,
    /// Wakes the driver when the command offers.
    to_driver: Notify,
}

impl Demand {
    /// Command: `messages` messages' worth of data wait to be asked for (the pacer lets a
    /// short write go at once when all of it fits in its tokens, a long one in whole batches).
    pub fn offer(&self, messages: usize) {
        if self.offered.swap(messages.max(1), Ordering::AcqRel) == 0 {
            self.to_driver.notify_one();
        }
    }

    /// Command: nothing waits any more (a request not yet answered lapses).
    pub fn withdraw(&self) {
        self.offered.store(0, Ordering::Release);
        self.want.store(0, Ordering::Release);
    }

    /// Command: waits until the driver asks; how many messages it wants now.
    pub async fn wanted(&self) -> usize {
        loop {
            let n = self.want.swap(0, Ordering::AcqRel);
            if n > 0 {
                return n;
            }
            self.to_command.notified().await;
        }
    }

    /// Driver: asks for `n` messages, unless a request is still open.
    pub fn ask(&self, n: usize) {
        if n > 0
            && self
                .want
                .compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.to_command.notify_one();
        }
    }

    fn offered(&self) -> usize {
        self.offered.load(Ordering::Acquire)
    }
}

/// The stream of [`Output`]s, with room to put back what a caller looked at too early (the
/// drop-in plugin reads the handshake before it knows which command runs the session).
pub struct Outputs {
    rx: mpsc::Receiver<Output>,
    unread: std::collections::VecDeque<Output>,
}

impl Outputs {
    /// The next report; `None` once the driver is gone.
    pub async fn recv(&mut self) -> Option<Output> {
        match self.unread.pop_front() {
            Some(o) => Some(o),
            None => self.rx.recv().await,
        }
    }

    /// Puts reports back, in order, to be received again.
    pub fn unread(&mut self, outputs: impl IntoIterator<Item = Output>) {
        let mut v: Vec<Output> = outputs.into_iter().collect();
        v.extend(self.unread.drain(..));
        self.unread = v.into();
    }
}

/// Opens the data channel and starts driving `config` on it. Fails only if the websocket cannot
/// be opened; later failures arrive as [`End::Failed`].
pub async fn start(
    auth: ChannelAuth,
    config: SessionConfig,
    context: Option<DriverContext>,
) -> Result<DriverHandle> {
    let ws = transport::open(&auth).await?;
    let now = Instant::now().into_std();
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut seed = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let session = Session::new(config, now, unix_ms, seed);
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(256);
    let hurry = Arc::new(Notify::new());
    let hurried = hurry.clone();
    let demand = Arc::new(Demand::default());
    let demanded = demand.clone();
    tokio::spawn(async move {
        let mut d = Driver {
            session,
            ws,
            auth,
            context,
            data_key: None,
            failure: None,
            input: in_rx,
            output: out_tx,
            finishing: None,
            held: VecDeque::new(),
            last_rx: Instant::now(),
            ack_progress: (0, Instant::now()),
            hurry: hurried,
            hurry_until: None,
            demand: demanded,
            coalescer: Some(Coalescer::default()),
            mark_to_set: None,
            asked_for_data: false,
        };
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

use rand_core::RngCore;

/// What the driver asks of AWS for this session: ResumeSession for a fresh token when the
/// websocket drops, KMS GenerateDataKey when the agent asks for encryption (§8.1).
pub struct DriverContext {
    /// The API client.
    pub aws: crate::aws::Aws,
    /// The session to resume.
    pub session_id: String,
}

/// What a KMS GenerateDataKey call running beside the driver loop hands back.
type DataKeyResult = Result<DataKey, String>;

/// Why the websocket stopped working (as opposed to the session ending).
struct Broken(String);

struct Driver {
    session: Session,
    ws: Ws,
    auth: ChannelAuth,
    context: Option<DriverContext>,
    /// The answer of a KMS call in flight; the loop keeps serving the websocket meanwhile.
    data_key: Option<oneshot::Receiver<DataKeyResult>>,
    /// Why the session cannot go on although the channel may still close cleanly (a KMS
    /// failure): reported instead of however the channel ends.
    failure: Option<String>,
    /// When the last frame of any kind arrived (dead-peer detection).
    last_rx: Instant,
    /// Acknowledgements received so far and when that count last grew: a gateway that keeps
    /// the socket (and pongs) alive but relays nothing shows up here (dead-peer detection).
    ack_progress: (u64, Instant),
    input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
    /// Deadline of a requested [`Input::Finish`].
    finishing: Option<Instant>,
    /// Stream data taken from the command but not yet given to the session (see
    /// [`HELD_DATA_UNPACED`]).
    held: VecDeque<Bytes>,
    /// See [`DriverHandle::hurry`].
    hurry: Arc<Notify>,
    /// Until when the pacer wakes per message.
    hurry_until: Option<Instant>,
    demand: Arc<Demand>,
    /// When to read the websocket (see [`crate::coalesce`]); `None` where the low-water mark
    /// cannot be set.
    coalescer: Option<Coalescer>,
    /// A low-water mark the coalescer asked for and [`Driver::apply_mark`] has not set yet.
    mark_to_set: Option<u32>,
    /// The command hands data over when asked (see [`Demand`]).
    asked_for_data: bool,
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
        let alive = alive_timeout();
        let every = PING_INTERVAL.min(alive / 3);
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        let mut input_open = true;
        let mut woke_for_frames = true;
        loop {
            if !woke_for_frames && self.coalescer.as_ref().is_some_and(Coalescer::coalescing) {
                // Awake anyway: read what the raised mark kept back before deciding anything on
                // it (a retransmission timer must not fire for messages whose acks wait unread,
                // and the pacer's batch goes after its predecessor's acks). Lowering the mark
                // makes the socket readable at once; one yield lets the runtime see that.
                self.coalesce(Instant::now(), |c, _, _| c.on_wake());
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
                let done = self.session.unacked() == 0 && self.held.is_empty();
                if done || Instant::now() >= deadline {
                    return Ok(End::Finished);
                }
            }
            let accept_input = input_open && self.finishing.is_none() && self.data_room();
            if self.hurry_until.is_some_and(|t| Instant::now() >= t) {
                self.hurry_until = None;
                self.session.set_hurried(false);
            }
            let next_token = self.ask_for_offered_data();
            if let Some(batch) = next_token {
                // Until the pacer's next batch, frames (this batch's acks) can wait for it.
                self.coalesce(Instant::now(), |c, now, waits| {
                    c.hold_until(now, batch.into_std(), waits)
                });
            }
            let timer = self
                .session
                .poll_timeout()
                .map(Instant::from_std)
                .into_iter()
                .chain(self.finishing)
                .chain(next_token)
                .chain(
                    self.coalescer
                        .as_ref()
                        .and_then(|c| c.deadline())
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
                    if self.coalescer.as_ref().is_some_and(Coalescer::coalescing) {
                        self.session.flush_acks();
                    }
                }
                key = recv_data_key(&mut self.data_key) => self.on_data_key(key),
                _ = self.demand.to_driver.notified() => {}
                _ = self.hurry.notified() => {
                    let now = Instant::now();
                    self.hurry_until = Some(now + HURRY_FOR);
                    self.session.set_hurried(true);
                    self.coalesce(now, |c, now, _| c.on_interactive(now));
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
                    if self.last_rx.elapsed() > alive {
                        return Err(Broken(format!(
                            "no response from the service for {} s",
                            alive.as_secs()
                        )));
                    }
                    if let Some(stalled) = self.ack_stall(alive) {
                        return Err(Broken(format!(
                            "no acknowledgement from the target for {} s",
                            stalled.as_secs()
                        )));
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

    /// How long data has waited without any acknowledgement arriving, once that exceeds
    /// `alive`.
    fn ack_stall(&mut self, alive: Duration) -> Option<Duration> {
        let acks = self.session.stats().acks_received;
        let now = Instant::now();
        if acks != self.ack_progress.0 || self.session.unacked() == 0 {
            self.ack_progress = (acks, now);
            return None;
        }
        let waited = now - self.ack_progress.1;
        (waited > alive).then_some(waited)
    }

    /// ResumeSession for a fresh token, then the same StreamUrl again; sequence numbers and
    /// unacknowledged messages survive and retransmission fills the gap (§5.6, §14.19).
    async fn reconnect(&mut self, why: &str) -> Result<(), String> {
        let Some(resume) = &self.context else {
            return Err(format!("the data channel failed: {why}"));
        };
        let started = Instant::now();
        crate::notice(&format!("connection lost ({why}); reconnecting…"));
        // The first attempt goes at once, as the official client's retryer does (§17.4): every
        // agent message the gateway drops meanwhile costs a 100 ms resend tick later. The old
        // websocket is closed beside the new one, not waited for.
        let jitter = u64::from(rand_core::OsRng.next_u32());
        let mut last = String::new();
        for attempt in 1..=RECONNECT_ATTEMPTS {
            tokio::time::sleep(reconnect_delay(attempt, jitter)).await;
            // Credentials as they are now: the ones the session started with may have expired.
            let creds = match resume.aws.current_credentials().await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{e:#}");
                    continue;
                }
            };
            self.auth.credentials = Some(creds.clone());
            // ResumeSession and the new websocket's handshakes (TCP, TLS, the signed upgrade)
            // run side by side: only the OpenDataChannel frame needs the new token.
            let (token, dialed) = tokio::join!(
                resume.aws.resume_session(&resume.session_id, &creds),
                transport::connect(&self.auth)
            );
            match token {
                Ok(Some(token)) => {
                    self.auth.token = token;
                    let opened = match dialed {
                        Ok(mut ws) => transport::authenticate(&mut ws, &self.auth)
                            .await
                            .map(|()| ws),
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok(ws) => {
                            let mut old = std::mem::replace(&mut self.ws, ws);
                            tokio::spawn(async move { close_quickly(&mut old).await });
                            if let Some(c) = &mut self.coalescer {
                                c.reset();
                            }
                            self.mark_to_set = None;
                            self.last_rx = Instant::now();
                            self.ack_progress =
                                (self.session.stats().acks_received, Instant::now());
                            self.session.on_reconnect(Instant::now().into_std());
                            crate::notice(&format!(
                                "resumed after {}",
                                human_duration(started.elapsed())
                            ));
                            return Ok(());
                        }
                        Err(e) => last = format!("{e:#}"),
                    }
                }
                Ok(None) => {
                    return Err("the session has ended meanwhile and cannot be resumed".into())
                }
                Err(e) if is_permanent(&e) => {
                    return Err(format!("the session cannot be resumed: {e:#}"))
                }
                Err(e) => last = format!("{e:#}"),
            }
            tracing::debug!(attempt, "reconnect failed: {last}");
        }
        Err(format!(
            "lost the data channel ({why}) and could not reconnect: {last}"
        ))
    }

    /// Takes what the websocket gave: a frame for the session, or the end of the connection.
    fn on_ws(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), Broken> {
        let now = Instant::now();
        self.last_rx = now;
        match frame {
            Some(Ok(Message::Binary(b))) => {
                let len = b.len();
                self.on_frame(b, now);
                self.coalesce(now, |c, now, waits| c.on_frame(now, len, waits));
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

    /// Takes the frames already read (or readable without waiting), up to [`FRAMES_PER_TURN`]
    /// in all with the one just taken: they go through the session before anything else runs,
    /// so the loop's work (flush, events, timers) is done once per wake-up, not per frame. Not
    /// past the end of the session: the websocket's close that follows channel_closed is no
    /// reason to reconnect.
    fn take_ready_frames(&mut self) -> Result<(), Broken> {
        for _ in 1..FRAMES_PER_TURN {
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

    /// Passes an event at `now` to the coalescer (with whether the peer waits for our acks);
    /// the low-water mark it asks for is set by [`Self::apply_mark`], once per loop turn.
    fn coalesce(
        &mut self,
        now: Instant,
        event: impl FnOnce(&mut Coalescer, std::time::Instant, bool) -> Option<u32>,
    ) {
        let Some(c) = &mut self.coalescer else { return };
        if let Some(mark) = event(c, now.into_std(), self.session.peer_waits()) {
            self.mark_to_set = Some(mark);
        }
    }

    /// Sets the low-water mark the coalescer last asked for, if it changed. A mark that cannot
    /// be set ends coalescing for the session: the kernel's default reads every frame as it
    /// comes.
    fn apply_mark(&mut self) {
        let Some(mark) = self.mark_to_set.take() else {
            return;
        };
        tracing::trace!(mark, "websocket receive low-water mark");
        if let Err(e) = transport::set_read_low_water(&self.ws, mark) {
            tracing::debug!("cannot set the receive low-water mark, reading every frame: {e}");
            self.coalescer = None;
            let _ = transport::set_read_low_water(&self.ws, coalesce::READ_AT_ONCE);
        }
    }

    fn on_input(&mut self, cmd: Input) {
        // What looks typed is answered soon: read that answer as it comes. A command that
        // hands data over on request (a forward) says itself what is interactive (`hurry`):
        // its small writes are often control frames (a new connection's smux SYN).
        let typed = match &cmd {
            Input::Data(b) => {
                !self.asked_for_data
                    && b.len() <= TYPED_BYTES
                    && self.held.is_empty()
                    && self.session.unsent() == 0
            }
            Input::Size { .. } | Input::Flag(_) => true,
            Input::Ready(_) | Input::Finish => false,
        };
        if typed {
            self.coalesce(Instant::now(), |c, now, _| c.on_interactive(now));
        }
        let result = match cmd {
            Input::Data(b) if b.is_empty() => Ok(0),
            Input::Data(b) => {
                self.held.push_back(b);
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

    /// How many messages may wait, numbered or not, before the next goes out: paced, what the
    /// pacer lets go right now (at least one, so that data waits here rather than in the
    /// channel); then whatever comes next (a keystroke on another connection) is never more
    /// than a write behind. Unpaced, enough to keep the websocket busy.
    fn send_allowance(&mut self) -> Option<usize> {
        self.update_backlog();
        self.session
            .batch_allowance(Instant::now().into_std())
            .map(|n| n.max(1))
    }

    /// Tells the session how much data waits beyond what it numbered: held here, queued in the
    /// input channel (a message at most each), or offered by a command (see [`Demand`]). The
    /// pacer lets a short write go at once when all of it fits in its tokens.
    fn update_backlog(&mut self) {
        let waiting = self.held.len() + self.input.len() + self.demand.offered();
        self.session.set_backlog(waiting);
    }

    /// Takes what waits in the input channel and may go out now, so that one write carries it
    /// all (paced, a batch's messages go at once, not one now and the rest a loop turn later).
    fn take_waiting_input(&mut self) {
        while self.finishing.is_none() && self.data_room() {
            let Ok(cmd) = self.input.try_recv() else {
                return; // empty, or closed: the loop's `recv` sees that
            };
            self.on_input(cmd);
        }
    }

    /// Paced, asks a command that offers data for as many messages as may go now; when the
    /// pacer lets none go, returns when to ask again (its next wake-up).
    fn ask_for_offered_data(&mut self) -> Option<Instant> {
        if self.demand.offered() == 0 || self.finishing.is_some() || !self.input.is_empty() {
            return None;
        }
        // A whole batch at once (see `Session::batch_allowance`), unless all that is offered
        // fits in the tokens there are.
        self.update_backlog();
        let allowance = self.session.batch_allowance(Instant::now().into_std())?;
        if allowance == 0 {
            return self.session.next_send_at().map(Instant::from_std);
        }
        // Tokens but no room: what is held waits for the send window (acks), which wake us.
        let room = allowance.saturating_sub(self.held.len() + self.session.unsent());
        if room > 0 {
            self.asked_for_data = true;
            self.demand.ask(room);
        }
        None
    }

    /// Whether to take more data from the input channel.
    fn data_room(&mut self) -> bool {
        match self.send_allowance() {
            Some(n) => self.held.len() + self.session.unsent() < n,
            None => self.held.len() < HELD_DATA_UNPACED,
        }
    }

    /// Gives held data to the session while its queue of never-sent messages is short,
    /// coalescing small writes into messages of up to [`MAX_PAYLOAD`] bytes.
    fn release_held(&mut self) {
        let limit = self.send_allowance().unwrap_or(UNSENT_UNPACED);
        while self.session.unsent() < limit
            && self.session.can_send()
            && self.session.unacked() < SEND_WINDOW
            && self.session.unacked_span() < SEND_SPAN
        {
            let Some(first) = self.held.pop_front() else {
                return;
            };
            let data = if self
                .held
                .front()
                .is_some_and(|next| first.len() + next.len() <= MAX_PAYLOAD)
            {
                let mut joined = BytesMut::from(&first[..]);
                while let Some(next) = self.held.front() {
                    if joined.len() + next.len() > MAX_PAYLOAD {
                        break;
                    }
                    joined.extend_from_slice(next);
                    self.held.pop_front();
                }
                joined.freeze()
            } else {
                first
            };
            if let Err(e) = self.session.send(PayloadType::Output, data) {
                tracing::debug!("send refused: {e}");
                return;
            }
        }
    }

    /// Writes everything the session has to send now: acknowledgements, due retransmissions,
    /// and held data as far as the pacer and the send window allow.
    async fn flush(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let now = Instant::now().into_std();
        let mut any = false;
        loop {
            self.release_held();
            let mut sent = false;
            while let Some(frame) = self.session.poll_transmit(now) {
                self.ws.feed(Message::Binary(frame)).await?;
                sent = true;
            }
            any |= sent;
            if !sent || self.held.is_empty() {
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

impl Driver {
    /// Starts KMS GenerateDataKey beside the loop (the answer arrives in [`Self::on_data_key`]),
    /// so acknowledgements and pings keep flowing while KMS answers.
    fn request_data_key(&mut self, req: DataKeyRequest) {
        tracing::debug!(key = %req.key_id, "KMS data key requested");
        let (tx, rx) = oneshot::channel();
        self.data_key = Some(rx);
        let aws = self.context.as_ref().map(|c| c.aws.clone());
        tokio::spawn(async move {
            let _ = tx.send(generate_data_key(aws, &req).await);
        });
    }

    /// Hands the data key to the session, which then answers the handshake. Without a key the
    /// agent is told why (a failed KMSEncryption action ends the session on its side) and we
    /// end with the reason, whatever the channel says afterwards.
    fn on_data_key(&mut self, result: DataKeyResult) {
        self.data_key = None;
        match result {
            Ok(key) => {
                tracing::debug!("KMS data key received");
                self.session.provide_data_key(Ok(key));
            }
            Err(why) => {
                self.session.provide_data_key(Err(why.clone()));
                self.failure = Some(format!(
                    "{why}; the session document requires KMS encryption"
                ));
                self.finishing.get_or_insert(Instant::now() + FINISH_GRACE);
            }
        }
    }
}

/// KMS GenerateDataKey for `req`, as one line on failure. Never logs key material.
async fn generate_data_key(aws: Option<crate::aws::Aws>, req: &DataKeyRequest) -> DataKeyResult {
    let Some(aws) = aws else {
        return Err("no AWS configuration to call KMS with".into());
    };
    if req
        .encryption_context
        .get(CONTEXT_TARGET_ID)
        .is_none_or(|t| t.is_empty())
    {
        // The legacy 4-argument plugin call carries no target for the encryption context; the
        // official plugin refuses the same way (§7.4, §11).
        return Err("Installed version of CLI does not support Session Manager encryption feature. Please upgrade to the latest version of your CLI (e.g., AWS CLI).".into());
    }
    match tokio::time::timeout(KMS_TIMEOUT, aws.generate_data_key(req)).await {
        Ok(Ok(key)) => Ok(key),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!(
            "KMS GenerateDataKey for key {} timed out after {} s",
            req.key_id,
            KMS_TIMEOUT.as_secs()
        )),
    }
}

/// The answer of the KMS call in flight; pending forever when there is none.
async fn recv_data_key(rx: &mut Option<oneshot::Receiver<DataKeyResult>>) -> DataKeyResult {
    match rx {
        Some(rx) => rx
            .await
            .unwrap_or_else(|_| Err("the KMS call ended without an answer".into())),
        None => std::future::pending().await,
    }
}

/// The wait before reconnect attempt `attempt` (from 1): none before the first, as in the
/// official client (§17.4), then 100–200 ms (`jitter` picks where) doubling up to
/// [`RECONNECT_MAX_DELAY`].
fn reconnect_delay(attempt: u32, jitter: u64) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let first = Duration::from_millis(100 + jitter % 100);
    first
        .saturating_mul(1 << (attempt - 2).min(16))
        .min(RECONNECT_MAX_DELAY)
}

/// `12 ms` under a second, `1.3 s` above.
fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Closes the websocket politely, but never waits long: on a dead path the close frame may never
/// leave.
async fn close_quickly(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Errors after which retrying ResumeSession is pointless.
fn is_permanent(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    [
        "DoesNotExistException",
        "InvalidParameters",
        "AccessDeniedException",
        "terminated",
    ]
    .iter()
    .any(|code| text.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reconnect_goes_at_once_and_later_ones_back_off() {
        let delays: Vec<u64> = (1..=RECONNECT_ATTEMPTS)
            .map(|a| reconnect_delay(a, 37).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 137, 274, 548, 1096, 2192, 4384, 5000]);
        assert_eq!(reconnect_delay(2, 199), Duration::from_millis(199));
        let total: Duration = (1..=RECONNECT_ATTEMPTS)
            .map(|a| reconnect_delay(a, 99))
            .sum();
        assert!(total < Duration::from_secs(30), "{total:?}");
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(human_duration(Duration::from_millis(12)), "12 ms");
        assert_eq!(human_duration(Duration::from_millis(1340)), "1.3 s");
    }
}

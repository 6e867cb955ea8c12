//! [`SmuxSession`]: the sans-IO smux v1 state machine both ends of multiplexed port forwarding run.
//!
//! It mirrors xtaci/smux v1.5.15/16 (`session.go`, `stream.go`) frame by frame, with one deliberate
//! extension: [`SmuxSession::close`] is a half-close (we keep receiving until the peer's FIN), while
//! [`SmuxSession::drop_stream`] is xtaci's `Stream.Close` exactly. Both put the same FIN on the wire,
//! so the peer cannot tell them apart.
//!
//! Output is one contiguous byte queue. `write` copies the caller's bytes into it once (they are
//! borrowed), and `poll_output` hands out `Bytes` views of it without copying again, so the 1024-byte
//! Output payloads the driver cuts never cost a copy per frame.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{encode_header, Cmd, Frame, FrameDecoder, HEADER_LEN, MAX_DATA_LEN};
use super::stream::{SmuxStream, StreamId};
use super::{SmuxConfig, SmuxError, SmuxEvent, SmuxRole};

/// Keep-alive periods are clamped to this so `Instant` arithmetic can never overflow.
const MAX_TIMER_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// One smux session over one reliable byte stream (here: the data channel's Output payloads).
///
/// The caller moves bytes in ([`handle_input`](Self::handle_input)) and out
/// ([`poll_output`](Self::poll_output)), and drives time ([`handle_timeout`](Self::handle_timeout)).
/// Nothing here blocks, spawns threads or reads a clock.
#[derive(Debug)]
pub struct SmuxSession {
    role: SmuxRole,
    config: SmuxConfig,
    /// Last stream id we allocated (xtaci `nextStreamID`): 1 for a fresh client, 0 for a server.
    next_stream_id: u32,
    /// Our id space wrapped; no more streams can be opened (xtaci `goAway`).
    go_away: bool,
    streams: HashMap<StreamId, SmuxStream>,
    decoder: FrameDecoder,
    output: BytesMut,
    events: VecDeque<SmuxEvent>,
    /// Sum of all streams' unread bytes: xtaci's token bucket seen from the other side.
    buffered: usize,
    keep_alive: Option<KeepAlive>,
    closed: bool,
}

/// xtaci's keep-alive goroutine as two tickers on a fixed grid: a NOP every `interval`, and every
/// `timeout` a check that some frame arrived since the previous check.
#[derive(Debug)]
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    next_check: Instant,
    /// A frame header arrived since the last check (xtaci `dataReady`).
    frame_seen: bool,
}

impl SmuxSession {
    /// A new session; `now` starts the keep-alive tickers, as `smux.Client`/`smux.Server` do.
    ///
    /// Out-of-range config values are clamped rather than rejected so construction cannot fail:
    /// `max_frame_size` to `1..=65535`, keep-alive periods to at least 1 ns.
    pub fn new(role: SmuxRole, mut config: SmuxConfig, now: Instant) -> SmuxSession {
        config.max_frame_size = config.max_frame_size.clamp(1, MAX_DATA_LEN);
        let clamp = |d: Duration| d.clamp(Duration::from_nanos(1), MAX_TIMER_PERIOD);
        let keep_alive = config.keep_alive.map(|(interval, timeout)| {
            let (interval, timeout) = (clamp(interval), clamp(timeout));
            KeepAlive {
                interval,
                timeout,
                next_ping: later(now, interval),
                next_check: later(now, timeout),
                frame_seen: false,
            }
        });
        SmuxSession {
            role,
            config,
            next_stream_id: match role {
                SmuxRole::Client => 1,
                SmuxRole::Server => 0,
            },
            go_away: false,
            streams: HashMap::new(),
            decoder: FrameDecoder::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            buffered: 0,
            keep_alive,
            closed: false,
        }
    }

    /// Which end we are.
    pub fn role(&self) -> SmuxRole {
        self.role
    }

    /// Opens a stream with the next id of our parity and queues its SYN (xtaci `OpenStream`). The
    /// peer learns of the stream from the SYN; there is no handshake to wait for.
    pub fn open_stream(&mut self) -> Result<StreamId, SmuxError> {
        if self.closed {
            return Err(SmuxError::SessionClosed);
        }
        loop {
            if self.go_away {
                return Err(SmuxError::GoAway);
            }
            self.next_stream_id = self.next_stream_id.wrapping_add(2);
            let id = StreamId(self.next_stream_id);
            // Wrapped back to 0 or 1: xtaci's `sid == sid%2` overflow test.
            self.go_away = id.0 < 2;
            // Skip an id the peer already opened with a wrong-parity SYN; xtaci would overwrite
            // that stream's state, which can only confuse both sides.
            if !self.go_away && !self.streams.contains_key(&id) {
                self.streams.insert(id, SmuxStream::default());
                encode_header(Cmd::Syn, id.0, 0, &mut self.output);
                return Ok(id);
            }
        }
    }

    /// Queues `data` as PSH frames of at most `max_frame_size` bytes (xtaci v1 `Stream.Write`).
    ///
    /// Allowed after the peer's FIN, as in xtaci v1 (the peer will drop the data if it has forgotten
    /// the stream). An empty `data` queues nothing. There is no per-stream flow control in v1: the
    /// caller should watch [`pending_output`](Self::pending_output) to bound memory.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<(), SmuxError> {
        if self.closed {
            return Err(SmuxError::SessionClosed);
        }
        match self.streams.get(&id) {
            None => return Err(SmuxError::UnknownStream(id)),
            Some(stream) if stream.local_fin => return Err(SmuxError::StreamClosed(id)),
            Some(_) => {}
        }
        let frame_size = self.config.max_frame_size;
        self.output
            .reserve(data.len() + data.len().div_ceil(frame_size) * HEADER_LEN);
        for chunk in data.chunks(frame_size) {
            // `frame_size` ≤ 65535 (clamped in `new`), so the length always fits.
            encode_header(Cmd::Psh, id.0, chunk.len() as u16, &mut self.output);
            self.output.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Sends FIN: we will write no more on this stream, like `shutdown(SHUT_WR)`.
    ///
    /// Unlike xtaci's `Stream.Close`, data the peer sends until its own FIN is still delivered; use
    /// [`drop_stream`](Self::drop_stream) to stop receiving too. The stream is forgotten once the
    /// peer's FIN has arrived and everything received has been read.
    pub fn close(&mut self, id: StreamId) -> Result<(), SmuxError> {
        if self.closed {
            return Err(SmuxError::SessionClosed);
        }
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(SmuxError::UnknownStream(id))?;
        if stream.local_fin {
            return Err(SmuxError::StreamClosed(id));
        }
        stream.local_fin = true;
        encode_header(Cmd::Fin, id.0, 0, &mut self.output);
        self.forget_if_done(id);
        Ok(())
    }

    /// Closes the stream the way xtaci's `Stream.Close` does: sends FIN (unless already sent),
    /// discards unread data (returning its share of the receive buffer) and forgets the stream, so
    /// anything the peer still sends on it is ignored.
    ///
    /// Use it when the local end is gone entirely; it also works on a dead session, to free buffers.
    pub fn drop_stream(&mut self, id: StreamId) -> Result<(), SmuxError> {
        let stream = self
            .streams
            .remove(&id)
            .ok_or(SmuxError::UnknownStream(id))?;
        self.buffered -= stream.buffered();
        if !stream.local_fin && !self.closed {
            encode_header(Cmd::Fin, id.0, 0, &mut self.output);
        }
        Ok(())
    }

    /// Forgets a stream the peer opened and we will not serve, without answering it: a peer that
    /// floods SYNs then costs no output either (xtaci leaves such streams unanswered in its
    /// accept backlog).
    pub fn refuse_stream(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.remove(&id) {
            self.buffered -= stream.buffered();
        }
    }

    /// Feeds bytes received from the peer, fragmented anyhow (§9.4.3).
    ///
    /// Overdue keep-alive deadlines are processed first, judged without these bytes, so a caller
    /// that runs late cannot rescue a session xtaci would already have closed. A protocol error kills
    /// the session and is returned; after that every call returns [`SmuxError::SessionClosed`].
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<(), SmuxError> {
        if self.closed {
            return Err(SmuxError::SessionClosed);
        }
        self.handle_timeout(now);
        if self.closed {
            return Err(SmuxError::KeepAliveTimeout);
        }
        let header_was_waiting = self.decoder.pending_len() >= HEADER_LEN;
        let mut decoded_any = false;
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    decoded_any = true;
                    self.note_frame_seen();
                    self.on_frame(frame);
                }
                Ok(None) => break,
                Err(error) => {
                    self.die(error.clone());
                    return Err(error);
                }
            }
        }
        // xtaci marks the session alive as soon as a header is read, before the PSH body arrives,
        // but not again while it waits for the rest of that body.
        let header_waiting = self.decoder.pending_len() >= HEADER_LEN;
        if header_waiting && (decoded_any || !header_was_waiting) {
            self.note_frame_seen();
        }
        Ok(())
    }

    /// Dispatches one frame the way xtaci's `recvLoop` does.
    fn on_frame(&mut self, frame: Frame) {
        let id = StreamId(frame.stream_id);
        match frame.cmd {
            Cmd::Nop => {}
            Cmd::Syn => {
                // A SYN for an id already in use is ignored, not an error (xtaci).
                if let Entry::Vacant(entry) = self.streams.entry(id) {
                    entry.insert(SmuxStream::default());
                    self.events.push_back(SmuxEvent::StreamOpened(id));
                }
            }
            Cmd::Fin => {
                // FIN for an unknown or forgotten stream is ignored (xtaci).
                if let Some(stream) = self.streams.get_mut(&id) {
                    if !stream.remote_fin {
                        stream.remote_fin = true;
                        self.events.push_back(SmuxEvent::StreamFinished(id));
                        self.forget_if_done(id);
                    }
                }
            }
            Cmd::Psh => {
                // xtaci drops data for streams it does not know (never opened, or already closed
                // and forgotten). Data after the peer's own FIN is dropped too — a deviation: xtaci
                // would buffer it, but then it could surface after `StreamFinished`.
                let Some(stream) = self.streams.get_mut(&id) else {
                    return;
                };
                if frame.data.is_empty() || stream.remote_fin {
                    return;
                }
                self.buffered += frame.data.len();
                if stream.push(frame.data) {
                    self.events.push_back(SmuxEvent::Readable(id));
                }
            }
        }
    }

    /// The next chunk of the outgoing byte stream, at most `max_len` bytes (the driver uses 1024 per
    /// Output payload). Chunks ignore frame boundaries, as the real pump does; `None` when idle.
    pub fn poll_output(&mut self, max_len: usize) -> Option<Bytes> {
        if self.output.is_empty() || max_len == 0 {
            return None;
        }
        let len = max_len.min(self.output.len());
        Some(self.output.split_to(len).freeze())
    }

    /// Bytes queued for the peer; the caller's backpressure signal for [`write`](Self::write).
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// The next thing that happened, in wire order.
    pub fn poll_event(&mut self) -> Option<SmuxEvent> {
        self.events.pop_front()
    }

    /// Takes up to `max` received bytes of a stream, without copying (at most one received PSH
    /// payload per call, so call until `None`). `None` also for unknown streams and `max == 0`.
    /// Still works after the peer's FIN and after the session died, until the buffer is empty.
    pub fn read(&mut self, id: StreamId, max: usize) -> Option<Bytes> {
        let chunk = self.streams.get_mut(&id)?.read(max)?;
        self.buffered -= chunk.len();
        self.forget_if_done(id);
        Some(chunk)
    }

    /// Received-but-unread bytes across all streams.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Received-but-unread bytes of one stream (0 for an unknown one).
    pub fn stream_buffered(&self, id: StreamId) -> usize {
        self.streams.get(&id).map_or(0, |s| s.buffered())
    }

    /// Whether the caller should feed more input. xtaci stops reading the connection while
    /// `max_receive_buffer` bytes are unread (its token bucket is empty), which pushes back on the
    /// peer through the transport; the sans-IO caller does the same by pausing `handle_input`.
    pub fn can_receive(&self) -> bool {
        self.buffered < self.config.max_receive_buffer
    }

    /// Runs keep-alive for `now`: queues a NOP when the ping ticker fired, and kills the session
    /// if a timeout window passed without any frame. Like Go tickers, late calls fire once and then
    /// realign to the original grid rather than catching up on every missed tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let receive_full = !self.can_receive();
        let Some(keep_alive) = self.keep_alive.as_mut() else {
            return;
        };
        let ping = now >= keep_alive.next_ping;
        if ping {
            keep_alive.next_ping = next_tick(keep_alive.next_ping, keep_alive.interval, now);
        }
        let mut silent = false;
        if now >= keep_alive.next_check {
            // xtaci spares a silent session whose receive buffer is full: it has stopped reading,
            // so the silence may be its own doing.
            silent = !keep_alive.frame_seen && !receive_full;
            keep_alive.frame_seen = false;
            keep_alive.next_check = next_tick(keep_alive.next_check, keep_alive.timeout, now);
        }
        if ping {
            encode_header(Cmd::Nop, 0, 0, &mut self.output);
        }
        if silent {
            self.die(SmuxError::KeepAliveTimeout);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs to run; `None` without keep-alive.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.keep_alive
            .as_ref()
            .map(|k| k.next_ping.min(k.next_check))
    }

    /// Whether the session died (protocol error or keep-alive timeout).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Streams not yet forgotten (xtaci `NumStreams`), e.g. to tell when a session is idle.
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    fn note_frame_seen(&mut self) {
        if let Some(keep_alive) = self.keep_alive.as_mut() {
            keep_alive.frame_seen = true;
        }
    }

    fn forget_if_done(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(SmuxStream::is_done) {
            self.streams.remove(&id);
        }
    }

    /// Kills the session like xtaci's `Session.Close`: nothing more is sent (queued output is
    /// dropped), but data already received stays readable.
    fn die(&mut self, reason: SmuxError) {
        if !self.closed {
            self.closed = true;
            self.output.clear();
            self.keep_alive = None;
            self.events.push_back(SmuxEvent::SessionClosed(reason));
        }
    }
}

/// `t + d`, saturating at `t` if the platform's `Instant` cannot represent the sum.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

/// The first tick of the grid `deadline + k·period` strictly after `now` (`now ≥ deadline`).
fn next_tick(deadline: Instant, period: Duration, now: Instant) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let missed = now.saturating_duration_since(deadline).as_nanos() / period_ns;
    let skip_ns = u64::try_from(period_ns.saturating_mul(missed + 1)).unwrap_or(u64::MAX);
    deadline
        .checked_add(Duration::from_nanos(skip_ns))
        .unwrap_or_else(|| later(now, period))
}

#[cfg(test)]
mod tests;

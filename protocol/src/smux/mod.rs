//! smux protocol version 1, the stream multiplexer inside multiplexed port forwarding
//! (PROTOCOL.md §9.4.3).
//!
//! The plugin runs an xtaci/smux **client** and the agent an xtaci/smux **server** (v1.5.16 and
//! v1.5.15, `smux.DefaultConfig()`); the data channel's Output payloads carry their byte stream,
//! fragmented at arbitrary points. This module speaks the same protocol as a sans-IO state machine in
//! the style of quinn-proto: feed peer bytes to [`SmuxSession::handle_input`], drain
//! [`SmuxSession::poll_output`] into Output payloads, react to [`SmuxSession::poll_event`], and drive
//! keep-alive with [`SmuxSession::poll_timeout`] / [`SmuxSession::handle_timeout`]. Time is always
//! passed in, so every transition is testable with a fake clock.
//!
//! We write the protocol ourselves rather than using `async_smux`/`tokio_smux` because those are tied
//! to async IO objects and this crate must stay IO-free (STACK.md, "smux").
//!
//! * `frame` — [`Frame`], the 8-byte header codec, and the fragment-tolerant [`FrameDecoder`].
//! * `stream` — one stream's receive buffer and FIN bookkeeping.
//! * `session` — [`SmuxSession`]: stream ids, frame dispatch, output queue, keep-alive.

mod frame;
mod session;
mod stream;

use std::time::Duration;

pub use frame::{Cmd, Frame, FrameDecoder, HEADER_LEN, MAX_DATA_LEN, VERSION};
pub use session::SmuxSession;
pub use stream::StreamId;

/// Which end of the smux session we are; it decides the parity of the stream ids we allocate.
///
/// xtaci starts a client's id counter at 1 and a server's at 0 and adds 2 before each use, so the
/// plugin's streams are 3, 5, 7, … and the agent's (which never opens any in port forwarding) 2, 4, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmuxRole {
    /// The plugin side (rssm): opens one stream per accepted local connection.
    Client,
    /// The agent side (the simulator): accepts streams and dials the destination for each.
    Server,
}

/// Tunables of a session, mirroring the parts of xtaci's `smux.Config` that exist in protocol v1.
///
/// The default is xtaci's `DefaultConfig()` with keep-alive **off**, which is what rssm wants: it
/// reports a ClientVersion that makes modern agents disable keep-alive too (§9.4.3, §14 item 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmuxConfig {
    /// `(interval, timeout)`: send a NOP every `interval`, and close the session if no frame at all
    /// arrived during a whole `timeout` window. `None` disables both (xtaci `KeepAliveDisabled`).
    /// The agent enables `(10 s, 30 s)` for clients ≤ 1.2.331.0, so the simulator needs it.
    pub keep_alive: Option<(Duration, Duration)>,
    /// Largest PSH payload we send; longer writes are split. Values outside `1..=65535` are clamped
    /// because the length field is a `u16`.
    pub max_frame_size: usize,
    /// Session-wide limit on received-but-unread bytes. xtaci's receiver stops reading the connection
    /// once this many bytes wait in stream buffers; the sans-IO equivalent is the caller consulting
    /// [`SmuxSession::can_receive`] before feeding more input.
    pub max_receive_buffer: usize,
}

impl SmuxConfig {
    /// xtaci's default keep-alive: a NOP every 10 s, session dead after a silent 30 s window.
    pub const DEFAULT_KEEP_ALIVE: (Duration, Duration) =
        (Duration::from_secs(10), Duration::from_secs(30));
}

impl Default for SmuxConfig {
    fn default() -> Self {
        SmuxConfig {
            keep_alive: None,
            max_frame_size: 32_768,
            max_receive_buffer: 4 * 1024 * 1024,
        }
    }
}

/// Something the application must react to, returned by [`SmuxSession::poll_event`] in the order
/// it happened on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmuxEvent {
    /// The peer opened a stream with SYN (xtaci `AcceptStream` would return it). Not emitted for our
    /// own [`SmuxSession::open_stream`].
    StreamOpened(StreamId),
    /// Data arrived on a stream whose receive buffer was empty. Edge-triggered: call
    /// [`SmuxSession::read`] until it returns `None`; no further event comes for data that arrives
    /// while bytes are still buffered.
    Readable(StreamId),
    /// The peer sent FIN: after the bytes already buffered (still returned by `read`), nothing more
    /// will arrive on this stream. The stream stays writable until we close it.
    StreamFinished(StreamId),
    /// The session died; the reason is the error that killed it. Emitted once, always last.
    SessionClosed(SmuxError),
}

/// Everything that can go wrong in smux, either on the wire or in how the caller uses a session.
///
/// Wire errors (`BadVersion`, `UnknownCommand`, `ControlFrameLength`) and `KeepAliveTimeout` are
/// fatal for the session, as in xtaci; the others only reject one call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmuxError {
    /// A frame header carried a version other than 1 (xtaci `ErrInvalidProtocol`).
    #[error("smux frame has version {0}, expected 1")]
    BadVersion(u8),
    /// A frame header carried a command outside SYN/FIN/PSH/NOP. This includes UPD (4), which only
    /// exists in protocol version 2.
    #[error("smux frame has unknown command {0}")]
    UnknownCommand(u8),
    /// A SYN, FIN or NOP frame declared data bytes; only PSH carries data.
    #[error("smux {cmd:?} frame declares {len} data bytes, but only PSH carries data")]
    ControlFrameLength {
        /// The offending command.
        cmd: Cmd,
        /// The declared (or, when encoding, supplied) data length.
        len: usize,
    },
    /// A frame to encode has more data than the 16-bit length field can describe.
    #[error("smux frame data is {0} bytes, more than the 65535 a frame can carry")]
    FrameTooLarge(usize),
    /// The stream id was never opened, or the stream has already been fully closed and forgotten.
    #[error("smux stream {0} does not exist")]
    UnknownStream(StreamId),
    /// We already sent FIN on this stream, so it can no longer be written to or closed again
    /// (xtaci `io.ErrClosedPipe`).
    #[error("smux stream {0} is closed for writing")]
    StreamClosed(StreamId),
    /// Every stream id of our parity has been used; a new session is needed (xtaci `ErrGoAway`).
    #[error("smux stream ids are exhausted, a new session is needed")]
    GoAway,
    /// Keep-alive was on and a whole timeout window passed without any frame from the peer.
    #[error("smux keep-alive timeout: no frame received from the peer")]
    KeepAliveTimeout,
    /// The session has already died (see [`SmuxEvent::SessionClosed`] for why).
    #[error("smux session is closed")]
    SessionClosed,
}

#[cfg(test)]
mod tests {
    //! Whole-protocol properties: two sessions talking to each other over a randomly chunked byte
    //! pipe, and hostile input.

    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Instant;

    use proptest::prelude::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Moves at most `max_len` bytes from `from`'s output into `to`, like one data-channel message.
    fn pump(from: &mut SmuxSession, to: &mut SmuxSession, max_len: usize, now: Instant) {
        if let Some(chunk) = from.poll_output(max_len) {
            assert!(chunk.len() <= max_len && !chunk.is_empty());
            to.handle_input(&chunk, now).expect("valid smux stream");
        }
    }

    /// One end of the exchange test: an application that sends its own payload on every stream,
    /// half-closes when done, and reads lazily (edge-triggered, like a driver whose socket is slow).
    struct Peer<'a> {
        session: SmuxSession,
        /// Unsent remainder per stream; removed once the stream is closed.
        to_send: BTreeMap<StreamId, &'a [u8]>,
        got: BTreeMap<StreamId, Vec<u8>>,
        /// Streams announced `Readable` that have not yet been read until `None`.
        unread: BTreeSet<StreamId>,
        finished: Vec<StreamId>,
    }

    impl<'a> Peer<'a> {
        fn new(role: SmuxRole, config: SmuxConfig, now: Instant) -> Self {
            let session = SmuxSession::new(role, config, now);
            let (to_send, got, unread) = Default::default();
            Peer {
                session,
                to_send,
                got,
                unread,
                finished: Vec::new(),
            }
        }

        fn write_some(&mut self, rng: &mut ChaCha8Rng) {
            let Some((&id, &rest)) = self.to_send.iter().nth(pick(rng, self.to_send.len())) else {
                return;
            };
            let n = pick(rng, 4000).min(rest.len());
            self.session.write(id, &rest[..n]).unwrap();
            if n == rest.len() {
                self.session.close(id).unwrap();
                self.to_send.remove(&id);
            } else {
                self.to_send.insert(id, &rest[n..]);
            }
        }

        fn read_some(&mut self, rng: &mut ChaCha8Rng) {
            let Some(&id) = self.unread.iter().nth(pick(rng, self.unread.len())) else {
                return;
            };
            match self.session.read(id, 1 + pick(rng, 3000)) {
                Some(chunk) => self.got.entry(id).or_default().extend_from_slice(&chunk),
                None => _ = self.unread.remove(&id),
            }
        }

        /// Handles events; `reply` gives the payload to send on a stream the peer opened.
        fn handle_events(&mut self, reply: impl Fn(StreamId) -> &'a [u8]) {
            while let Some(event) = self.session.poll_event() {
                match event {
                    SmuxEvent::StreamOpened(id) => {
                        assert!(self.to_send.insert(id, reply(id)).is_none())
                    }
                    SmuxEvent::Readable(id) => _ = self.unread.insert(id),
                    SmuxEvent::StreamFinished(id) => self.finished.push(id),
                    SmuxEvent::SessionClosed(reason) => panic!("session died: {reason}"),
                }
            }
        }

        fn is_idle(&self) -> bool {
            let s = &self.session;
            self.to_send.is_empty()
                && self.unread.is_empty()
                && s.num_streams() == 0
                && s.pending_output() == 0
        }
    }

    fn pick(rng: &mut ChaCha8Rng, n: usize) -> usize {
        rng.next_u32() as usize % n.max(1)
    }

    /// Client and server both send a payload on every stream (the server's is the next stream's
    /// client payload, so lengths differ), full duplex, FINs in random order, bytes moved in random
    /// chunks; both must receive everything exactly once, in order, and end with no stream state.
    fn exchange_many_streams(seed: u64, payloads: &[Vec<u8>], max_frame_size: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let now = Instant::now();
        let config = SmuxConfig {
            max_frame_size,
            ..SmuxConfig::default()
        };
        let mut client = Peer::new(SmuxRole::Client, config.clone(), now);
        let mut server = Peer::new(SmuxRole::Server, config, now);
        let index = |id: StreamId| (id.0 as usize - 3) / 2;
        let server_payload = |i: usize| payloads[(i + 1) % payloads.len()].as_slice();
        for payload in payloads {
            let id = client.session.open_stream().unwrap();
            client.to_send.insert(id, payload);
        }
        let ids: Vec<StreamId> = client.to_send.keys().copied().collect();
        let expected_ids: Vec<StreamId> = (0..payloads.len() as u32)
            .map(|i| StreamId(3 + 2 * i))
            .collect();
        assert_eq!(ids, expected_ids);

        for _ in 0..1_000_000 {
            match rng.next_u32() % 6 {
                0 => client.write_some(&mut rng),
                1 => server.write_some(&mut rng),
                2 => pump(
                    &mut client.session,
                    &mut server.session,
                    1 + pick(&mut rng, 2048),
                    now,
                ),
                3 => pump(
                    &mut server.session,
                    &mut client.session,
                    1 + pick(&mut rng, 2048),
                    now,
                ),
                4 => client.read_some(&mut rng),
                _ => server.read_some(&mut rng),
            }
            client.handle_events(|id| panic!("server opened stream {id}"));
            server.handle_events(|id| server_payload(index(id)));
            if client.is_idle() && server.is_idle() {
                break;
            }
        }

        for (i, id) in ids.iter().enumerate() {
            let got = |peer: &Peer| peer.got.get(id).cloned().unwrap_or_default();
            assert_eq!(got(&server), payloads[i], "server side of stream {id}");
            assert_eq!(
                got(&client),
                server_payload(i),
                "client side of stream {id}"
            );
        }
        for peer in [&mut client, &mut server] {
            peer.finished.sort();
            assert_eq!(peer.finished, ids, "every stream finished exactly once");
            // Both FINs seen and everything read: no stream state or bytes are kept.
            assert_eq!(
                (peer.session.num_streams(), peer.session.buffered()),
                (0, 0)
            );
            assert!(!peer.session.is_closed());
        }
    }

    #[test]
    fn exchanges_one_large_stream_across_small_messages() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        exchange_many_streams(1, &[payload], 32_768);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn exchanges_many_streams_through_random_chunking(
            seed in any::<u64>(),
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6000), 1..8),
            max_frame_size in prop_oneof![Just(32_768usize), 1usize..300],
        ) {
            exchange_many_streams(seed, &payloads, max_frame_size);
        }

        #[test]
        fn arbitrary_input_never_panics(
            client_role in any::<bool>(),
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16),
        ) {
            let role = if client_role { SmuxRole::Client } else { SmuxRole::Server };
            let start = Instant::now();
            let mut session = SmuxSession::new(role, SmuxConfig::default(), start);
            let _ = session.open_stream();
            for chunk in &chunks {
                let _ = session.handle_input(chunk, start);
                while session.poll_event().is_some() {}
                let _ = session.read(StreamId(3), 10);
            }
        }

        /// Plausible headers (version 1, small ids and lengths, commands 0..=5) reach far deeper
        /// into the session than uniform noise, which almost always dies on the version byte.
        #[test]
        fn near_valid_frames_never_panic(
            frames in prop::collection::vec((0u8..6, 0u32..8, 0u16..20, any::<bool>()), 0..40),
            split in any::<prop::sample::Index>(),
            ops in prop::collection::vec((0u8..5, 0u32..8), 0..20),
        ) {
            let start = Instant::now();
            let config = SmuxConfig { keep_alive: Some((Duration::from_secs(1), Duration::from_secs(2))), max_frame_size: 7, max_receive_buffer: 50 };
            let mut session = SmuxSession::new(SmuxRole::Server, config, start);
            let mut wire = Vec::new();
            for &(cmd, sid, len, with_data) in &frames {
                wire.push(1);
                wire.push(cmd);
                wire.extend_from_slice(&len.to_le_bytes());
                wire.extend_from_slice(&sid.to_le_bytes());
                if with_data {
                    wire.extend(std::iter::repeat_n(0xAB, len as usize));
                }
            }
            let cut = split.index(wire.len() + 1);
            for (i, part) in [&wire[..cut], &wire[cut..]].into_iter().enumerate() {
                let now = start + Duration::from_millis(1500 * i as u64);
                let _ = session.handle_input(part, now);
                for &(op, sid) in &ops {
                    let id = StreamId(sid);
                    let _ = match op {
                        0 => session.write(id, b"hello world").map(|_| ()),
                        1 => session.close(id),
                        2 => session.drop_stream(id),
                        3 => session.open_stream().map(|_| ()),
                        _ => { session.read(id, 3); Ok(()) }
                    };
                }
                session.handle_timeout(now);
                while session.poll_event().is_some() {}
                while session.poll_output(100).is_some() {}
            }
        }
    }

    // Helpers shared with the session tests.

    pub(super) const SECOND: Duration = Duration::from_secs(1);

    pub(super) fn session(role: SmuxRole) -> (SmuxSession, Instant) {
        let now = Instant::now();
        (SmuxSession::new(role, SmuxConfig::default(), now), now)
    }

    pub(super) fn output_hex(session: &mut SmuxSession) -> String {
        let mut out = Vec::new();
        while let Some(chunk) = session.poll_output(usize::MAX) {
            out.extend_from_slice(&chunk);
        }
        hex::encode(out)
    }

    pub(super) fn feed(session: &mut SmuxSession, wire_hex: &str, now: Instant) {
        session
            .handle_input(&hex::decode(wire_hex).unwrap(), now)
            .unwrap();
    }

    pub(super) fn events(session: &mut SmuxSession) -> Vec<SmuxEvent> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    pub(super) fn read_all(session: &mut SmuxSession, id: StreamId) -> Vec<u8> {
        std::iter::from_fn(|| session.read(id, usize::MAX))
            .flatten()
            .collect()
    }

    /// Replays stream 3 of `official-client-port-smux.jsonl` from the plugin's side.
    #[test]
    fn client_reproduces_the_official_plugin_bytes() {
        let (mut client, now) = session(SmuxRole::Client);
        let id = client.open_stream().unwrap();
        assert_eq!(output_hex(&mut client), "0100000003000000");
        client.write(id, b"hello world 0\n").unwrap();
        assert_eq!(
            output_hex(&mut client),
            "01020e000300000068656c6c6f20776f726c6420300a"
        );
        feed(
            &mut client,
            "01020e000300000048454c4c4f20574f524c4420300a",
            now,
        );
        assert_eq!(events(&mut client), [SmuxEvent::Readable(id)]);
        assert_eq!(read_all(&mut client, id), b"HELLO WORLD 0\n");
        client.close(id).unwrap();
        assert_eq!(output_hex(&mut client), "0101000003000000");
        feed(&mut client, "0101000003000000", now);
        assert_eq!(events(&mut client), [SmuxEvent::StreamFinished(id)]);
        assert_eq!(client.num_streams(), 0, "both FINs seen: stream forgotten");
        assert_eq!(client.open_stream(), Ok(StreamId(5)));
    }

    /// Replays stream 3 of `real-agent-port-smux.jsonl` from the agent's side (echo destination).
    #[test]
    fn server_reproduces_the_real_agent_bytes() {
        let (mut server, now) = session(SmuxRole::Server);
        feed(
            &mut server,
            "010000000300000001020e000300000068656c6c6f20776f726c6420300a",
            now,
        );
        let id = StreamId(3);
        assert_eq!(
            events(&mut server),
            [SmuxEvent::StreamOpened(id), SmuxEvent::Readable(id)]
        );
        let echo = read_all(&mut server, id);
        server.write(id, &echo).unwrap();
        assert_eq!(
            output_hex(&mut server),
            "01020e000300000068656c6c6f20776f726c6420300a"
        );
        feed(&mut server, "0101000003000000", now);
        assert_eq!(events(&mut server), [SmuxEvent::StreamFinished(id)]);
        server.close(id).unwrap();
        assert_eq!(output_hex(&mut server), "0101000003000000");
        assert_eq!(server.num_streams(), 0);
    }

    mod keep_alive {
        //! xtaci's keep-alive tickers, driven by a fake clock.

        use super::*;

        fn keep_alive_session(role: SmuxRole) -> (SmuxSession, Instant) {
            let config = SmuxConfig {
                keep_alive: Some(SmuxConfig::DEFAULT_KEEP_ALIVE),
                ..SmuxConfig::default()
            };
            let start = Instant::now();
            (SmuxSession::new(role, config, start), start)
        }

        #[test]
        fn keep_alive_sends_a_nop_every_interval() {
            let (mut session, start) = keep_alive_session(SmuxRole::Client);
            assert_eq!(session.poll_timeout(), Some(start + 10 * SECOND));
            session.handle_timeout(start + 9 * SECOND);
            assert_eq!(session.pending_output(), 0);
            for tick in 1..=2 {
                session.handle_timeout(start + tick * 10 * SECOND);
                assert_eq!(output_hex(&mut session), "0103000000000000");
                assert_eq!(
                    session.poll_timeout(),
                    Some(start + (tick + 1) * 10 * SECOND)
                );
            }
            // A late call fires once and realigns to the 10 s grid.
            feed(&mut session, "0103000000000000", start + 25 * SECOND);
            session.handle_timeout(start + 57 * SECOND);
            assert_eq!(output_hex(&mut session), "0103000000000000");
            assert!(
                !session.is_closed(),
                "a frame arrived in the 0–30 s window; 30–60 s not checked yet"
            );
            assert_eq!(session.poll_timeout(), Some(start + 60 * SECOND));
            feed(&mut session, "0103000000000000", start + 58 * SECOND);
            session.handle_timeout(start + 60 * SECOND);
            assert_eq!(
                output_hex(&mut session),
                "0103000000000000",
                "back on the grid"
            );
        }

        #[test]
        fn keep_alive_closes_a_silent_session_at_the_timeout_tick() {
            let (mut session, start) = keep_alive_session(SmuxRole::Server);
            feed(&mut session, "0103000000000000", start + 5 * SECOND);
            session.handle_timeout(start + 30 * SECOND);
            assert!(!session.is_closed(), "the NOP at 5 s counts");
            feed(&mut session, "0103", start + 40 * SECOND); // half a header is not a frame
            session.handle_timeout(start + 59 * SECOND);
            assert!(!session.is_closed());
            session.handle_timeout(start + 60 * SECOND);
            assert!(session.is_closed());
            let closed = SmuxEvent::SessionClosed(SmuxError::KeepAliveTimeout);
            assert_eq!(events(&mut session), [closed]);
            assert_eq!(
                (session.poll_timeout(), session.pending_output()),
                (None, 0)
            );
        }

        #[test]
        fn keep_alive_counts_headers_not_body_bytes() {
            let (mut session, start) = keep_alive_session(SmuxRole::Server);
            feed(&mut session, "010210000300000061", start + 29 * SECOND); // PSH header, 1 of 16 bytes
            session.handle_timeout(start + 30 * SECOND);
            assert!(
                !session.is_closed(),
                "xtaci marks the session alive once the header is read"
            );
            feed(&mut session, "62", start + 45 * SECOND);
            session.handle_timeout(start + 60 * SECOND);
            assert!(
                session.is_closed(),
                "body bytes of a frame already counted are not a new frame"
            );
        }

        #[test]
        fn input_after_a_silent_window_is_too_late() {
            let (mut session, start) = keep_alive_session(SmuxRole::Server);
            let nop = hex::decode("0103000000000000").unwrap();
            assert_eq!(
                session.handle_input(&nop, start + 31 * SECOND),
                Err(SmuxError::KeepAliveTimeout)
            );
            assert!(session.is_closed());
        }

        #[test]
        fn keep_alive_spares_a_session_whose_receive_buffer_is_full() {
            let config = SmuxConfig {
                keep_alive: Some(SmuxConfig::DEFAULT_KEEP_ALIVE),
                max_receive_buffer: 1,
                ..SmuxConfig::default()
            };
            let start = Instant::now();
            let mut session = SmuxSession::new(SmuxRole::Server, config, start);
            feed(&mut session, "01000000030000000102010003000000ff", start);
            session.handle_timeout(start + 30 * SECOND);
            session.handle_timeout(start + 60 * SECOND);
            assert!(!session.is_closed());
            session.read(StreamId(3), 1);
            session.handle_timeout(start + 90 * SECOND);
            assert!(session.is_closed());
        }

        #[test]
        fn keep_alive_off_never_times_out() {
            let (mut session, start) = session(SmuxRole::Client);
            assert_eq!(session.poll_timeout(), None);
            session.handle_timeout(start + 1000 * SECOND);
            assert!(!session.is_closed());
            assert_eq!(session.pending_output(), 0);
        }
    }
}

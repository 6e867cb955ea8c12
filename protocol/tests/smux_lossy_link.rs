//! Multiplexed port forwarding end to end inside the protocol crate: a client smux session over a
//! client data-channel session, an echoing server smux session over an agent session, joined by a
//! seeded lossy link. Every stream's echo must come back exactly, and every stream must close
//! cleanly in both directions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rssm_protocol::smux::{SmuxConfig, SmuxEvent, SmuxRole, SmuxSession, StreamId};
use rssm_protocol::{Event, PayloadType, Session, SessionConfig};
use rssm_testkit::link::{earliest, Impairments, Link};
use rssm_testkit::pattern;

/// Largest Output payload either side sends: the agent's read size (PROTOCOL.md §12).
const CHUNK: usize = 1024;

struct Side {
    session: Session,
    smux: SmuxSession,
}

impl Side {
    /// Moves smux output into data-channel messages (bounded by the session's window) and the
    /// session's frames onto the link.
    fn pump_out(&mut self, link: &mut Link, now: Instant) {
        while self.session.can_send() && self.session.unacked() < 256 {
            let Some(chunk) = self.smux.poll_output(CHUNK) else {
                break;
            };
            self.session.send(PayloadType::Output, chunk).unwrap();
        }
        while let Some(f) = self.session.poll_transmit(now) {
            link.send(f, now);
        }
    }

    /// Feeds delivered Output into smux.
    fn pump_in(&mut self, now: Instant) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Output(b) => self.smux.handle_input(&b, now).unwrap(),
                Event::SessionType(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn side(config: SessionConfig, role: SmuxRole, seed: u8, now: Instant) -> Side {
    Side {
        session: Session::new(config, now, 1_700_000_000_000, [seed; 32]),
        smux: SmuxSession::new(role, SmuxConfig::default(), now),
    }
}

/// Opens `sizes.len()` streams, sends each its bytes, echoes them on the server side, and checks.
fn run(seed: u64, sizes: &[usize], imp: Impairments) {
    let start = Instant::now();
    let mut now = start;
    let mut client = side(SessionConfig::client("s", "i"), SmuxRole::Client, 1, now);
    // The windowed retransmission on both ends keeps 256 lossy cases quick; the real agent's
    // head-only scheme is covered in lossy_link.rs.
    let mut agent_config = SessionConfig::agent("s", "i");
    agent_config.retransmit_window = rssm_protocol::outgoing::RETRANSMIT_WINDOW;
    agent_config.resend_tick = None;
    let mut server = side(agent_config, SmuxRole::Server, 2, now);
    let mut c2a = Link::new(seed, imp);
    let mut a2c = Link::new(seed ^ 0x5555, imp);

    struct Upload {
        data: Vec<u8>,
        written: usize,
        fin_sent: bool,
        echoed: Vec<u8>,
        echo_finished: bool,
    }
    let mut uploads: BTreeMap<StreamId, Upload> = BTreeMap::new();
    for (i, &n) in sizes.iter().enumerate() {
        let id = client.smux.open_stream().unwrap();
        uploads.insert(
            id,
            Upload {
                data: pattern(seed.wrapping_add(i as u64), n),
                written: 0,
                fin_sent: false,
                echoed: Vec::new(),
                echo_finished: false,
            },
        );
    }
    let mut server_streams: BTreeMap<StreamId, bool> = BTreeMap::new();

    for _ in 0..2_000_000 {
        // Client application: write a bounded amount per stream, then half-close.
        for (&id, u) in uploads.iter_mut() {
            if client.smux.pending_output() > 64 * 1024 {
                break;
            }
            if u.written < u.data.len() {
                let end = (u.written + 4096).min(u.data.len());
                client.smux.write(id, &u.data[u.written..end]).unwrap();
                u.written = end;
            } else if !u.fin_sent {
                client.smux.close(id).unwrap();
                u.fin_sent = true;
            }
        }
        client.pump_out(&mut c2a, now);
        server.pump_out(&mut a2c, now);
        while let Some(f) = c2a.recv(now) {
            let _ = server.session.handle_frame(f, now);
        }
        while let Some(f) = a2c.recv(now) {
            let _ = client.session.handle_frame(f, now);
        }
        for s in [&mut client, &mut server] {
            if s.session.poll_timeout().is_some_and(|t| t <= now) {
                s.session.handle_timeout(now);
            }
            s.pump_in(now);
        }
        // Server application: echo everything, close after the client's FIN.
        while let Some(ev) = server.smux.poll_event() {
            match ev {
                SmuxEvent::StreamOpened(id) => {
                    server_streams.insert(id, false);
                }
                SmuxEvent::Readable(id) => {
                    while let Some(b) = server.smux.read(id, usize::MAX) {
                        server.smux.write(id, &b).unwrap();
                    }
                }
                SmuxEvent::StreamFinished(id) => {
                    while let Some(b) = server.smux.read(id, usize::MAX) {
                        server.smux.write(id, &b).unwrap();
                    }
                    server.smux.close(id).unwrap();
                    server_streams.insert(id, true);
                }
                SmuxEvent::SessionClosed(e) => panic!("server smux closed: {e}"),
            }
        }
        while let Some(ev) = client.smux.poll_event() {
            match ev {
                SmuxEvent::Readable(id) | SmuxEvent::StreamFinished(id) => {
                    let u = uploads.get_mut(&id).expect("echo on a stream we opened");
                    while let Some(b) = client.smux.read(id, usize::MAX) {
                        u.echoed.extend_from_slice(&b);
                    }
                    if matches!(ev, SmuxEvent::StreamFinished(_)) {
                        u.echo_finished = true;
                    }
                }
                SmuxEvent::StreamOpened(id) => panic!("server opened stream {id:?}"),
                SmuxEvent::SessionClosed(e) => panic!("client smux closed: {e}"),
            }
        }
        let all_done = uploads.values().all(|u| u.echo_finished)
            && client.session.unacked() == 0
            && server.session.unacked() == 0;
        if all_done {
            for (id, u) in &uploads {
                assert_eq!(u.echoed.len(), u.data.len(), "stream {id:?} length");
                assert!(u.echoed == u.data, "stream {id:?} bytes differ");
            }
            assert_eq!(server_streams.len(), sizes.len());
            assert!(server_streams.values().all(|&fin| fin));
            return;
        }
        let busy = client.session.has_transmit()
            || server.session.has_transmit()
            || (client.smux.pending_output() > 0
                && client.session.can_send()
                && client.session.unacked() < 256)
            || (server.smux.pending_output() > 0
                && server.session.can_send()
                && server.session.unacked() < 256)
            || uploads
                .values()
                .any(|u| !u.fin_sent && client.smux.pending_output() <= 64 * 1024)
            || c2a.due(now)
            || a2c.due(now);
        if busy {
            continue;
        }
        let next = earliest([
            c2a.next_delivery(),
            a2c.next_delivery(),
            client.session.poll_timeout(),
            server.session.poll_timeout(),
        ])
        .expect("stalled with streams incomplete");
        now = next.max(now);
        assert!(
            now - start < Duration::from_secs(3600),
            "no progress within an hour of virtual time"
        );
    }
    panic!("iteration bound reached");
}

#[test]
fn fifty_streams_echo_through_a_lossy_link() {
    let imp = Impairments {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
    };
    let sizes: Vec<usize> = (0..50).map(|i| 1 + i * 997 % 20_000).collect();
    run(42, &sizes, imp);
}

#[test]
fn one_large_stream_on_a_clean_link() {
    run(7, &[2 * 1024 * 1024], Impairments::clean(5));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn smux_streams_survive_any_seeded_lossy_link(
        seed in any::<u64>(),
        sizes in proptest::collection::vec(0usize..6_000, 1..12),
        drop in 0.0f64..0.2,
        duplicate in 0.0f64..0.1,
        reorder in 0.0f64..0.2,
        delay_ms in 0u64..60,
        jitter_ms in 0u64..30,
    ) {
        let imp = Impairments {
            drop, duplicate, reorder,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
        };
        run(seed, &sizes, imp);
    }
}

//! Two endpoints (a client session and an agent session built on the same state machine) joined by
//! a deterministic, seeded lossy link deliver both byte streams exactly and in order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rssm_protocol::{Event, PayloadType, Session, SessionConfig};
use rssm_testkit::link::{earliest, Impairments, Link};
use rssm_testkit::pattern;

/// One side of the simulation: a session, the bytes it must send and what it received.
pub struct Endpoint {
    pub session: Session,
    pub to_send: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
    pub chunk: usize,
    /// Flow control a driver would apply: at most this many unacked messages.
    pub window: usize,
}

impl Endpoint {
    fn new(session: Session, to_send: Vec<u8>, chunk: usize) -> Self {
        Endpoint {
            session,
            to_send,
            sent: 0,
            received: Vec::new(),
            chunk,
            window: 256,
        }
    }

    fn pump_app(&mut self) {
        while self.sent < self.to_send.len()
            && self.session.can_send()
            && self.session.unacked() < self.window
        {
            let end = (self.sent + self.chunk).min(self.to_send.len());
            let data = Bytes::copy_from_slice(&self.to_send[self.sent..end]);
            self.session.send(PayloadType::Output, data).unwrap();
            self.sent = end;
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Output(b) => self.received.extend_from_slice(&b),
                Event::SessionType(_) => {}
                Event::Closed(r) => panic!("session closed: {r}"),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    fn done(&self, expect: usize) -> bool {
        self.sent == self.to_send.len()
            && self.session.unacked() == 0
            && self.received.len() == expect
    }
}

/// Runs until both streams are delivered and acknowledged; returns the virtual time it took.
pub fn run(
    client: &mut Endpoint,
    agent: &mut Endpoint,
    c2a: &mut Link,
    a2c: &mut Link,
) -> Duration {
    let start = Instant::now();
    let mut now = start;
    let limit = start + Duration::from_secs(3600);
    let (want_c, want_a) = (agent.to_send.len(), client.to_send.len());
    for _ in 0..5_000_000 {
        for (ep, link) in [(&mut *client, &mut *c2a), (&mut *agent, &mut *a2c)] {
            ep.pump_app();
            while let Some(f) = ep.session.poll_transmit(now) {
                link.send(f, now);
            }
        }
        while let Some(f) = c2a.recv(now) {
            let _ = agent.session.handle_frame(f, now);
        }
        while let Some(f) = a2c.recv(now) {
            let _ = client.session.handle_frame(f, now);
        }
        for ep in [&mut *client, &mut *agent] {
            if ep.session.poll_timeout().is_some_and(|t| t <= now) {
                ep.session.handle_timeout(now);
            }
            ep.drain_events();
        }
        if client.done(want_c) && agent.done(want_a) {
            return now - start;
        }
        // Anything to do right now (new frames queued by acks/deliveries)?
        let busy = [&client.session, &agent.session]
            .iter()
            .any(|s| s.has_transmit())
            || c2a.due(now)
            || a2c.due(now);
        if busy {
            continue;
        }
        let next = earliest([
            c2a.next_delivery(),
            a2c.next_delivery(),
            client.session.poll_timeout(),
            agent.session.poll_timeout(),
        ])
        .expect("stalled: nothing in flight and no timer, but streams incomplete");
        now = next.max(now);
        assert!(
            now < limit,
            "did not finish within six hours of virtual time"
        );
    }
    panic!("iteration bound reached");
}

fn pair(seed: u64, c_len: usize, a_len: usize, chunk: usize) -> (Endpoint, Endpoint) {
    pair_with_agent_window(
        seed,
        c_len,
        a_len,
        chunk,
        rssm_protocol::outgoing::RETRANSMIT_WINDOW,
        None,
    )
}

/// `agent_tick` `Some` is the real agent's retransmission (the head only, one message a tick:
/// slow under loss, by design); `None` a timer per message among the oldest `agent_window` (1:
/// head-only at the round-trip rate). The property tests use the windowed scheme on both ends
/// to cover many cases quickly.
fn pair_with_agent_window(
    seed: u64,
    c_len: usize,
    a_len: usize,
    chunk: usize,
    agent_window: usize,
    agent_tick: Option<Duration>,
) -> (Endpoint, Endpoint) {
    let now = Instant::now();
    let mut seed_c = [0u8; 32];
    seed_c[..8].copy_from_slice(&seed.to_le_bytes());
    let mut seed_a = seed_c;
    seed_a[31] = 1;
    let client = Session::new(
        SessionConfig::client("s", "i"),
        now,
        1_700_000_000_000,
        seed_c,
    );
    let mut agent_config = SessionConfig::agent("s", "i");
    agent_config.retransmit_window = agent_window;
    agent_config.resend_tick = agent_tick;
    let agent = Session::new(agent_config, now, 1_700_000_000_000, seed_a);
    (
        Endpoint::new(client, pattern(seed, c_len), chunk),
        Endpoint::new(agent, pattern(seed ^ 0xabcdef, a_len), chunk),
    )
}

#[test]
fn clean_link_delivers_both_ways_in_one_pass() {
    let (mut c, mut a) = pair(1, 100_000, 100_000, 1024);
    let mut c2a = Link::new(1, Impairments::clean(10));
    let mut a2c = Link::new(2, Impairments::clean(10));
    run(&mut c, &mut a, &mut c2a, &mut a2c);
    assert_eq!(a.received, c.to_send);
    assert_eq!(c.received, a.to_send);
    assert_eq!(c.session.stats().retransmissions, 0);
    assert_eq!(a.session.stats().retransmissions, 0);
}

#[test]
fn heavy_loss_still_delivers_and_duplicates_are_reacked() {
    let imp = Impairments {
        drop: 0.2,
        duplicate: 0.1,
        reorder: 0.1,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
    };
    let (mut c, mut a) = pair(7, 200_000, 200_000, 1000);
    let mut c2a = Link::new(3, imp);
    let mut a2c = Link::new(4, imp);
    run(&mut c, &mut a, &mut c2a, &mut a2c);
    assert_eq!(a.received, c.to_send);
    assert_eq!(c.received, a.to_send);
    assert!(c.session.stats().retransmissions > 0);
    assert!(c.session.stats().duplicates_received > 0);
    assert!(a.session.stats().duplicates_received > 0);
}

#[test]
fn a_head_only_agent_like_the_real_one_still_delivers_under_loss() {
    let imp = Impairments {
        drop: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
    };
    let tick = Some(rssm_protocol::session::AGENT_RESEND_TICK);
    let (mut c, mut a) = pair_with_agent_window(11, 50_000, 50_000, 1024, 1, tick);
    let mut c2a = Link::new(5, imp);
    let mut a2c = Link::new(6, imp);
    run(&mut c, &mut a, &mut c2a, &mut a2c);
    assert_eq!(a.received, c.to_send);
    assert_eq!(c.received, a.to_send);
}

#[test]
fn the_real_agents_repair_after_an_outage_refills_one_message_a_tick() {
    // The agent's first 20 messages are lost. It looks at the head of its unacknowledged list
    // every 100 ms and resends it once older than its RTO: one message a tick, however quickly
    // the client acks (PROTOCOL.md §17.3). What a reconnect loses therefore costs 100 ms a frame.
    let tick = rssm_protocol::session::AGENT_RESEND_TICK;
    let (mut c, mut a) = pair_with_agent_window(17, 0, 64 * 1024, 1024, 1, Some(tick));
    let lost = 20u32;
    let mut c2a = Link::new(9, Impairments::clean(2));
    let mut a2c = Link::new(10, Impairments::clean(2));
    a2c.lose_first = u64::from(lost);
    let took = run(&mut c, &mut a, &mut c2a, &mut a2c);
    assert_eq!(c.received, a.to_send);
    assert!(took >= tick * lost, "repair took {took:?}");
    assert!(took < tick * (lost + 4), "repair took {took:?}");
    assert_eq!(a.session.stats().retransmissions, u64::from(lost));
}

#[test]
fn a_head_only_repair_at_the_round_trip_rate_is_not_slowed_by_held_acks() {
    // A peer that resends its oldest unacknowledged message, and the next one as soon as that
    // is acked (head-only at the round-trip rate, not the real agent's 100 ms tick): the client
    // must ack each at once. Holding acks for the delay would add it to every round trip.
    let rtt = Duration::from_millis(4);
    let (mut c, mut a) = pair_with_agent_window(13, 0, 256 * 1024, 1024, 1, None);
    let lost = a.window as u64;
    let mut c2a = Link::new(7, Impairments::clean(2));
    let mut a2c = Link::new(8, Impairments::clean(2));
    a2c.lose_first = lost;
    let took = run(&mut c, &mut a, &mut c2a, &mut a2c);
    assert_eq!(c.received, a.to_send);
    // The first resend waits out the initial timeout; then each lost message costs a round trip
    // (plus slack for timer granularity), well under the 4 + 8 ms it costs with held acks.
    let bound = rssm_protocol::outgoing::MAX_RTO + rtt * 3 / 2 * lost as u32;
    assert!(took < bound, "repair took {took:?}, over {bound:?}");
    assert!(a.session.stats().retransmissions >= lost);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn lossy_link_delivers_both_streams_exactly(
        seed in any::<u64>(),
        c_len in 0usize..40_000,
        a_len in 0usize..40_000,
        chunk in 1usize..=1024,
        drop in 0.0f64..0.3,
        duplicate in 0.0f64..0.2,
        reorder in 0.0f64..0.3,
        delay_ms in 0u64..100,
        jitter_ms in 0u64..50,
    ) {
        let imp = Impairments {
            drop, duplicate, reorder,
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
        };
        let (mut c, mut a) = pair(seed, c_len, a_len, chunk);
        let mut c2a = Link::new(seed.wrapping_add(1), imp);
        let mut a2c = Link::new(seed.wrapping_add(2), imp);
        run(&mut c, &mut a, &mut c2a, &mut a2c);
        prop_assert_eq!(&a.received, &c.to_send);
        prop_assert_eq!(&c.received, &a.to_send);
    }
}

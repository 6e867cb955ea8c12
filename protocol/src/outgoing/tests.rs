use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn rto_starts_at_200ms_and_follows_the_reference_formula() {
    let mut r = RttEstimator::default();
    assert_eq!(r.rto(), ms(200));
    r.update(ms(100));
    // RTTVAR = 0, RTT = 100 ms ⇒ RTO = 100 + max(10, 0) = 110 ms.
    assert_eq!(r.rto(), ms(110));
    r.update(ms(20));
    // RTTVAR = 0.25·80 = 20 ms; RTT = 0.875·100 + 0.125·20 = 90 ms ⇒ RTO = 90 + 80 = 170 ms.
    assert_eq!(r.rto(), ms(170));
    assert_eq!(r.rtt(), ms(90));
}

#[test]
fn rto_is_capped_at_one_second() {
    let mut r = RttEstimator::default();
    for _ in 0..50 {
        r.update(Duration::from_secs(5));
    }
    assert_eq!(r.rto(), MAX_RTO);
}

#[test]
fn sends_in_order_then_retransmits_only_overdue_messages() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(10);
    for i in 0..3u8 {
        assert_eq!(b.next_sequence(), i as i64);
        b.push(Bytes::from(vec![i]), 1);
    }
    for i in 0..3 {
        let (seq, frame, re) = b.poll_transmit(t0).unwrap();
        assert_eq!((seq, frame.as_ref(), re), (i, &[i as u8][..], false));
    }
    assert!(b.poll_transmit(t0 + ms(199)).is_none());
    assert_eq!(b.next_retransmit(), Some(t0 + ms(200)));
    assert_eq!(b.ack(1, t0 + ms(50)), AckResult::Removed);
    assert_eq!(b.ack(1, t0 + ms(50)), AckResult::Unknown);
    // RTO is now 50 + 10 ms... rtt = 0.875*100+0.125*50 = 93.75, var = 12.5 → 93.75+50 = 143.75
    let due = b.next_retransmit().unwrap();
    assert_eq!(due, t0 + Duration::from_micros(143_750));
    let (s, _, re) = b.poll_transmit(due).unwrap();
    assert_eq!((s, re), (0, true));
    let (s, _, re) = b.poll_transmit(due).unwrap();
    assert_eq!((s, re), (2, true));
    assert!(b.poll_transmit(due).is_none());
    assert_eq!(b.len(), 2);
}

#[test]
fn out_of_order_acks_free_the_head_later() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(3);
    for _ in 0..3 {
        b.push(Bytes::from_static(b"xy"), 2);
        b.poll_transmit(t0);
    }
    assert!(!b.has_room());
    assert_eq!(b.unacked_bytes(), 6);
    b.ack(2, t0);
    b.ack(1, t0);
    assert_eq!(b.next_sequence(), 3);
    assert_eq!(b.len(), 1);
    // The slots acked behind the unacked head still count towards the span.
    assert_eq!(b.span(), 3);
    b.ack(0, t0);
    assert!(b.is_empty());
    assert_eq!(b.span(), 0);
    assert_eq!(b.next_sequence(), 3);
    b.push(Bytes::from_static(b"z"), 1);
    assert_eq!(b.poll_transmit(t0).unwrap().0, 3);
    assert_eq!(b.ack(-5, t0), AckResult::Unknown);
    assert_eq!(b.ack(i64::MAX, t0), AckResult::Unknown);
}

#[test]
fn the_late_ack_of_a_spurious_resend_is_measured_from_the_first_send() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(10);
    b.push(Bytes::from_static(b"a"), 1);
    b.poll_transmit(t0);
    // Resent at the 200 ms RTO; the first copy's ack comes 1 ms later: a 201 ms round trip.
    assert!(b.poll_transmit(t0 + ms(200)).unwrap().2);
    b.ack(0, t0 + ms(201));
    // RTT = 0.875·100 + 0.125·201 ≈ 112.6 ms: it grew, not fell towards 1 ms.
    assert!(b.rtt().rtt() > ms(112), "{:?}", b.rtt().rtt());

    // An ack a full round trip after the resend answers the resend: measured from it.
    let mut b = OutgoingBuffer::new(10);
    b.push(Bytes::from_static(b"a"), 1);
    b.poll_transmit(t0);
    b.poll_transmit(t0 + ms(200));
    b.ack(0, t0 + ms(300));
    assert_eq!(b.rtt().rtt(), ms(100));
}

#[test]
fn an_ack_for_a_message_not_sent_yet_is_ignored() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(10);
    b.push(Bytes::from_static(b"a"), 1);
    b.push(Bytes::from_static(b"b"), 1);
    b.poll_transmit(t0);
    assert_eq!(b.ack(1, t0), AckResult::Unknown);
    assert_eq!(
        b.poll_transmit(t0).map(|(s, f, _)| (s, f)),
        Some((1, Bytes::from_static(b"b")))
    );
    assert_eq!(b.ack(1, t0), AckResult::Removed);
}

#[test]
fn reconnect_makes_the_window_due_at_once() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(100);
    b.push(Bytes::from_static(b"a"), 1);
    b.poll_transmit(t0);
    assert!(b.poll_transmit(t0 + ms(10)).is_none());
    b.make_window_due(t0 + ms(10));
    assert!(b.poll_transmit(t0 + ms(10)).unwrap().2);
    assert_eq!(b.head_attempts(), 2);
    assert_eq!(b.oldest_first_sent(), Some(t0));
}

fn agent_buffer(t0: Instant) -> OutgoingBuffer {
    OutgoingBuffer::with_resend(
        100,
        Resend::HeadEveryTick {
            tick: ms(100),
            epoch: t0,
        },
    )
}

#[test]
fn the_agent_resends_only_the_head_at_the_first_tick_past_its_rto() {
    let t0 = Instant::now();
    let mut b = agent_buffer(t0);
    for i in 0..3u8 {
        b.push(Bytes::from(vec![i]), 1);
    }
    let sent = t0 + ms(30);
    for _ in 0..3 {
        b.poll_transmit(sent).unwrap();
    }
    // Due at 230 ms (RTO 200 ms): the scheduler looks at 300 ms.
    assert_eq!(b.next_retransmit(), Some(t0 + ms(300)));
    assert!(b.poll_transmit(t0 + ms(299)).is_none());
    let (seq, _, re) = b.poll_transmit(t0 + ms(300)).unwrap();
    assert_eq!((seq, re), (0, true));
    assert!(
        b.poll_transmit(t0 + ms(300)).is_none(),
        "one message a tick"
    );
    // No backoff: resent again at the first tick more than an RTO later.
    assert_eq!(b.next_retransmit(), Some(t0 + ms(600)));
    // Acking the head makes the next one the head; its RTT sample is from the last send.
    assert_eq!(b.ack(0, t0 + ms(350)), AckResult::Removed);
    assert_eq!(b.rtt().rtt(), Duration::from_micros(93_750));
    let (seq, _, _) = b.poll_transmit(t0 + ms(400)).unwrap();
    assert_eq!(seq, 1);
}

#[test]
fn a_gap_of_lost_messages_refills_one_message_a_tick() {
    let t0 = Instant::now();
    let mut b = agent_buffer(t0);
    for i in 0..4u8 {
        b.push(Bytes::from(vec![i]), 1);
    }
    for _ in 0..4 {
        b.poll_transmit(t0).unwrap();
    }
    // All four were lost; the client acks each resend at once (a 1 ms round trip).
    let mut at = Vec::new();
    while !b.is_empty() {
        let now = b.next_retransmit().unwrap();
        let (seq, _, re) = b.poll_transmit(now).unwrap();
        assert!(re);
        assert!(b.poll_transmit(now).is_none());
        assert_eq!(b.ack(seq, now + ms(1)), AckResult::Removed);
        at.push((now - t0).as_millis());
    }
    assert_eq!(at, [300, 400, 500, 600]);
}

#[test]
fn what_the_agent_numbers_while_it_cannot_write_leaves_only_as_the_head() {
    let t0 = Instant::now();
    let mut b = agent_buffer(t0);
    b.push(Bytes::from_static(b"a"), 1);
    b.push(Bytes::from_static(b"b"), 1);
    b.swallow_unsent(t0);
    assert!(!b.has_unsent());
    assert_eq!(b.next_retransmit(), Some(t0 + ms(300)));
    assert_eq!(b.poll_transmit(t0 + ms(300)).map(|(s, _, _)| s), Some(0));
    assert!(b.poll_transmit(t0 + ms(300)).is_none());
}

#[test]
fn repeated_resends_back_off_to_the_cap() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(10);
    b.push(Bytes::from_static(b"a"), 1);
    let mut now = t0;
    let mut gaps = vec![];
    for _ in 0..6 {
        b.poll_transmit(now).unwrap();
        let next = b.next_retransmit().unwrap();
        gaps.push((next - now).as_millis());
        now = next;
    }
    assert_eq!(gaps, vec![200, 400, 800, 1000, 1000, 1000]);
}

#[test]
fn a_window_of_one_retransmits_only_the_head() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::with_window(100, 1);
    for _ in 0..5 {
        b.push(Bytes::from_static(b"a"), 1);
        b.poll_transmit(t0);
    }
    let later = t0 + Duration::from_secs(5);
    assert_eq!(
        b.poll_transmit(later).map(|(s, _, re)| (s, re)),
        Some((0, true))
    );
    assert!(b.poll_transmit(later).is_none());
    b.ack(0, later);
    assert_eq!(
        b.poll_transmit(later).map(|(s, _, re)| (s, re)),
        Some((1, true))
    );
}

#[test]
fn retransmissions_are_bounded_by_the_window() {
    let t0 = Instant::now();
    let mut b = OutgoingBuffer::new(1000);
    for _ in 0..200 {
        b.push(Bytes::from_static(b"a"), 1);
        b.poll_transmit(t0);
    }
    let later = t0 + Duration::from_secs(5);
    let mut n = 0;
    while let Some((_, _, re)) = b.poll_transmit(later) {
        assert!(re);
        n += 1;
    }
    assert_eq!(n, RETRANSMIT_WINDOW);
}

/// The first overdue message in the window, found the plain way: every message in it.
fn scan_overdue(b: &OutgoingBuffer, now: Instant) -> Option<usize> {
    let rto = b.rtt.rto();
    b.window()
        .find(|(_, e)| {
            e.last_sent
                .is_some_and(|t| now >= t + backoff(rto, e.attempts))
        })
        .map(|(i, _)| i)
}

/// The window's earliest deadline, found the plain way.
fn scan_next_retransmit(b: &OutgoingBuffer) -> Option<Instant> {
    let rto = b.rtt.rto();
    b.window()
        .filter_map(|(_, e)| e.last_sent.map(|t| t + backoff(rto, e.attempts)))
        .min()
}

#[derive(Debug, Clone)]
enum Op {
    Push,
    Transmit,
    Ack(u8),
    Advance(u16),
    GoBack(u8),
    Reconnect,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => Just(Op::Push),
        4 => Just(Op::Transmit),
        4 => any::<u8>().prop_map(Op::Ack),
        3 => (0u16..400).prop_map(Op::Advance),
        1 => any::<u8>().prop_map(Op::GoBack),
        1 => Just(Op::Reconnect),
    ]
}

proptest::proptest! {
    /// Walking the window only up to the first message sent once finds the same
    /// retransmission, and the same next deadline, as scanning all of it, whatever happened
    /// before: losses, out-of-order acks, reconnects, a clock that goes back.
    #[test]
    fn the_short_walk_agrees_with_a_full_scan(
        window in 1usize..6,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        // Far enough ahead that going back (at most 300 × 255 ms) stays above the clock's zero.
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut now = t0;
        let mut b = OutgoingBuffer::with_window(16, window);
        for op in ops {
            match op {
                Op::Push => {
                    if b.has_room() {
                        b.push(Bytes::from_static(b"m"), 1);
                    }
                }
                Op::Transmit => {
                    proptest::prop_assert_eq!(b.first_overdue(now), scan_overdue(&b, now));
                    b.poll_transmit(now);
                }
                Op::Ack(k) => {
                    let seq = b.base + i64::from(k % 20) - 2;
                    b.ack(seq, now);
                }
                Op::Advance(ms) => now += Duration::from_millis(u64::from(ms)),
                Op::GoBack(ms) => now -= Duration::from_millis(u64::from(ms)),
                Op::Reconnect => b.make_window_due(now),
            }
            proptest::prop_assert_eq!(b.next_retransmit(), scan_next_retransmit(&b));
            proptest::prop_assert_eq!(b.first_overdue(now), scan_overdue(&b, now));
        }
    }
}

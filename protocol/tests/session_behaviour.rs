//! Behaviour of the session state machine beyond the happy path: KMS encryption end to end,
//! readiness, publication pauses, give-up, and what happens to malformed input.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rssm_protocol::crypto::{b64_decode, b64_encode, SessionCipher};
use rssm_protocol::message::uuid_to_wire;
use rssm_protocol::payload::{
    to_json, EncryptionChallenge, HandshakeResponsePayload, KmsEncryptionResponse,
};
use rssm_protocol::session::{ACK_BATCH, ACK_DELAY, QUICK_ACKS};
use rssm_protocol::{
    AgentMessage, CloseReason, DataKey, DataKeyProvider, DataKeyRequest, Event, FrameError,
    MessageType, PayloadType, Role, Session, SessionConfig,
};
use uuid::Uuid;

const UNIX_MS: u64 = 1_700_000_000_000;

/// A client that acks at once, so that one `exchange` settles everything; the held acks of the
/// default configuration have tests of their own.
fn client(now: Instant) -> Session {
    let config = SessionConfig {
        ack_delay: None,
        ..SessionConfig::client("sess-1", "i-0123")
    };
    Session::new(config, now, UNIX_MS, [1; 32])
}

/// A client with the default configuration: it holds acks up to [`ACK_DELAY`].
fn default_client(now: Instant) -> Session {
    Session::new(
        SessionConfig::client("sess-1", "i-0123"),
        now,
        UNIX_MS,
        [1; 32],
    )
}

fn acks_in(frames: &[Bytes]) -> usize {
    frames
        .iter()
        .filter(|f| {
            AgentMessage::decode((*f).clone()).unwrap().message_type == MessageType::Acknowledge
        })
        .count()
}

fn drain(s: &mut Session, now: Instant) -> Vec<Bytes> {
    std::iter::from_fn(|| s.poll_transmit(now)).collect()
}

/// Queues `n` stream messages, each carrying its index.
fn send_numbered(c: &mut Session, n: u32) {
    for i in 0..n {
        c.send(PayloadType::Output, Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
    }
}

/// The agent sends one message of `data`; the client receives it at `now`.
fn relay(a: &mut Session, c: &mut Session, data: &'static [u8], now: Instant) {
    a.send(PayloadType::Output, Bytes::from_static(data))
        .unwrap();
    c.handle_frame(a.poll_transmit(now).unwrap(), now).unwrap();
}

#[test]
fn acks_are_held_briefly_and_go_out_together() {
    let t0 = Instant::now();
    let mut c = default_client(t0);
    let mut a = agent(t0);
    for _ in 0..3 {
        a.send(PayloadType::Output, Bytes::from_static(b"x"))
            .unwrap();
    }
    for f in drain(&mut a, t0) {
        c.handle_frame(f, t0).unwrap();
    }
    assert!(drain(&mut c, t0).is_empty(), "held");
    assert!(!c.has_transmit());
    assert_eq!(c.poll_timeout(), Some(t0 + ACK_DELAY));
    let t1 = t0 + ACK_DELAY;
    let acks = drain(&mut c, t1);
    assert_eq!(acks_in(&acks), 3);
    for f in acks {
        a.handle_frame(f, t1).unwrap();
    }
    assert_eq!(a.unacked(), 0);
    // The delay counts from the oldest held ack, not the newest.
    relay(&mut a, &mut c, b"y", t1);
    a.send(PayloadType::Output, Bytes::from_static(b"z"))
        .unwrap();
    let t2 = t1 + ACK_DELAY / 2;
    c.handle_frame(a.poll_transmit(t2).unwrap(), t2).unwrap();
    assert_eq!(c.poll_timeout(), Some(t1 + ACK_DELAY));
    assert_eq!(acks_in(&drain(&mut c, t1 + ACK_DELAY)), 2);
}

#[test]
fn a_batch_of_acks_goes_out_at_once_and_closing_flushes_the_rest() {
    let t0 = Instant::now();
    let mut c = default_client(t0);
    let mut a = agent(t0);
    for _ in 0..ACK_BATCH + 1 {
        a.send(PayloadType::Output, Bytes::from_static(b"x"))
            .unwrap();
    }
    let frames = drain(&mut a, t0);
    for f in frames.iter().take(ACK_BATCH).cloned() {
        c.handle_frame(f, t0).unwrap();
    }
    assert!(c.has_transmit());
    assert_eq!(acks_in(&drain(&mut c, t0)), ACK_BATCH);
    c.handle_frame(frames[ACK_BATCH].clone(), t0).unwrap();
    assert!(drain(&mut c, t0).is_empty(), "one ack is held");
    c.close();
    assert_eq!(acks_in(&drain(&mut c, t0)), 1, "closing sends it");
}

#[test]
fn a_peer_that_waits_for_acks_gets_them_at_once_for_a_while() {
    let t0 = Instant::now();
    let mut c = default_client(t0);
    let mut a = agent(t0);
    // One message, then silence until its ack: held for the whole delay.
    relay(&mut a, &mut c, b"x", t0);
    assert!(drain(&mut c, t0).is_empty(), "held");
    let mut now = t0 + ACK_DELAY;
    assert_eq!(acks_in(&drain(&mut c, now)), 1);
    // So the next messages are acked as they come...
    for i in 0..QUICK_ACKS {
        now += Duration::from_millis(1);
        relay(&mut a, &mut c, b"y", now);
        assert_eq!(acks_in(&drain(&mut c, now)), 1, "message {i} acked at once");
    }
    // ...and then held again, as a steady stream's are.
    relay(&mut a, &mut c, b"z", now);
    assert!(drain(&mut c, now).is_empty(), "held again");
    // A full batch is no sign of a waiting peer: it does not start quick acks.
    for _ in 1..ACK_BATCH {
        relay(&mut a, &mut c, b"z", now);
    }
    assert_eq!(acks_in(&drain(&mut c, now)), ACK_BATCH);
    relay(&mut a, &mut c, b"z", now);
    assert!(drain(&mut c, now).is_empty(), "held after a batch");
}

#[test]
fn arrivals_out_of_order_are_acked_at_once_with_what_was_held() {
    let t0 = Instant::now();
    let mut c = default_client(t0);
    let mut a = agent(t0);
    for _ in 0..4 {
        a.send(PayloadType::Output, Bytes::from_static(b"x"))
            .unwrap();
    }
    let frames = drain(&mut a, t0);
    c.handle_frame(frames[0].clone(), t0).unwrap();
    assert!(drain(&mut c, t0).is_empty(), "in order: held");
    // A gap (message 1 lost): acked at once, with message 0's held ack.
    c.handle_frame(frames[2].clone(), t0).unwrap();
    assert_eq!(acks_in(&drain(&mut c, t0)), 2);
    // The retransmission that fills the gap, and a duplicate: each acked at once.
    c.handle_frame(frames[1].clone(), t0).unwrap();
    assert_eq!(acks_in(&drain(&mut c, t0)), 1);
    c.handle_frame(frames[0].clone(), t0).unwrap();
    assert_eq!(acks_in(&drain(&mut c, t0)), 1);
    // Back in order with nothing missing: held again.
    c.handle_frame(frames[3].clone(), t0).unwrap();
    assert!(drain(&mut c, t0).is_empty(), "held again");
    let got: Vec<_> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            Event::Output(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 4);
}

fn agent(now: Instant) -> Session {
    Session::new(
        SessionConfig::agent("sess-1", "i-0123"),
        now,
        UNIX_MS,
        [2; 32],
    )
}

/// Moves frames both ways until both sides are quiet; returns frames moved.
fn exchange(a: &mut Session, b: &mut Session, now: Instant) -> usize {
    let mut n = 0;
    loop {
        let mut moved = false;
        while let Some(f) = a.poll_transmit(now) {
            let _ = b.handle_frame(f, now);
            moved = true;
            n += 1;
        }
        while let Some(f) = b.poll_transmit(now) {
            let _ = a.handle_frame(f, now);
            moved = true;
            n += 1;
        }
        if !moved {
            return n;
        }
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A pretend KMS: GenerateDataKey returns a fixed key and a "ciphertext" that is the key
/// reversed; the agent side "decrypts" by reversing back after checking the context.
struct FakeKms {
    calls: Vec<DataKeyRequest>,
}

impl DataKeyProvider for FakeKms {
    fn generate_data_key(&mut self, request: &DataKeyRequest) -> Result<DataKey, String> {
        self.calls.push(request.clone());
        let plaintext: Vec<u8> = (0..64u8).collect();
        let mut blob = plaintext.clone();
        blob.reverse();
        Ok(DataKey {
            plaintext,
            ciphertext_blob: blob,
        })
    }
}

/// Runs the agent's half of a KMS handshake (PROTOCOL.md §7.2, §8.5) against our client and
/// returns both sessions with encryption established.
fn kms_pair(now: Instant) -> (Session, Session) {
    let mut c = client(now);
    let mut a = agent(now);
    let req = r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"alias/ssm","Challenge":"c2VjcmV0"}}]}"#;
    a.send(PayloadType::HandshakeRequest, Bytes::from(req))
        .unwrap();
    exchange(&mut a, &mut c, now);
    let ev = events(&mut c);
    assert!(
        matches!(&ev[1], Event::DataKeyRequired(r) if r.key_id == "alias/ssm"
        && r.encryption_context["aws:ssm:SessionId"] == "sess-1"
        && r.encryption_context["aws:ssm:TargetId"] == "i-0123")
    );
    let mut kms = FakeKms { calls: vec![] };
    c.resolve_data_key(&mut kms);
    assert_eq!(kms.calls.len(), 1);
    exchange(&mut a, &mut c, now);
    // Agent: read the response, "decrypt" the key, install the cipher, send the challenge.
    let resp = match events(&mut a).pop() {
        Some(Event::Payload {
            payload_type: PayloadType::HandshakeResponse,
            data,
        }) => data,
        other => panic!("{other:?}"),
    };
    let resp: HandshakeResponsePayload = serde_json::from_slice(&resp).unwrap();
    assert_eq!(resp.processed_client_actions[1].action_status, 1);
    let kr: KmsEncryptionResponse =
        serde_json::from_value(resp.processed_client_actions[1].action_result.clone()).unwrap();
    let mut key = b64_decode(&kr.kms_cipher_text_key).unwrap();
    key.reverse();
    let cipher = SessionCipher::new(&key, Role::Agent, a.rng()).unwrap();
    a.set_cipher(cipher);
    let mut agent_cipher = SessionCipher::new(&key, Role::Agent, a.rng()).unwrap();
    let (plain, blob) = agent_cipher.make_challenge(a.rng());
    a.send(
        PayloadType::EncChallengeRequest,
        to_json(&EncryptionChallenge {
            challenge: b64_encode(&blob),
        }),
    )
    .unwrap();
    exchange(&mut a, &mut c, now);
    let answer = match events(&mut a).pop() {
        Some(Event::Payload {
            payload_type: PayloadType::EncChallengeResponse,
            data,
        }) => data,
        other => panic!("{other:?}"),
    };
    let answer: EncryptionChallenge = serde_json::from_slice(&answer).unwrap();
    agent_cipher
        .verify_challenge(&plain, &b64_decode(&answer.challenge).unwrap())
        .unwrap();
    a.send(
        PayloadType::HandshakeComplete,
        Bytes::from_static(br#"{"HandshakeTimeToComplete":1000,"CustomerMessage":"This session is encrypted using AWS KMS."}"#),
    )
    .unwrap();
    exchange(&mut a, &mut c, now);
    assert!(
        matches!(events(&mut c).pop(), Some(Event::HandshakeComplete { encrypted: true, customer_message })
        if customer_message == "This session is encrypted using AWS KMS.")
    );
    assert!(c.is_encrypted() && c.handshake_done());
    (c, a)
}

#[test]
fn kms_session_encrypts_output_both_ways() {
    let now = Instant::now();
    let (mut c, mut a) = kms_pair(now);
    c.send(PayloadType::Output, Bytes::from_static(b"ls -l\n"))
        .unwrap();
    // On the wire the client's Output is ciphertext: plaintext + 28 bytes.
    let wire = c.poll_transmit(now).unwrap();
    let m = AgentMessage::decode(wire.clone()).unwrap();
    assert_eq!(m.payload.len(), 6 + 28);
    assert!(!m.payload.windows(5).any(|w| w == b"ls -l"));
    a.handle_frame(wire, now).unwrap();
    assert_eq!(
        events(&mut a),
        vec![Event::Output(Bytes::from_static(b"ls -l\n"))]
    );
    // Size stays clear (§8.4) and the agent encrypts StdErr and ExitCode too.
    c.send_size(80, 24).unwrap();
    a.send(PayloadType::StdErr, Bytes::from_static(b"oops"))
        .unwrap();
    a.send(PayloadType::ExitCode, Bytes::from_static(b"EXIT_CODE: 7"))
        .unwrap();
    exchange(&mut a, &mut c, now);
    assert_eq!(
        events(&mut a),
        vec![Event::Size(rssm_protocol::payload::SizeData {
            cols: 80,
            rows: 24
        })]
    );
    assert_eq!(
        events(&mut c),
        vec![
            Event::StdErr(Bytes::from_static(b"oops")),
            Event::ExitCode(7)
        ]
    );
}

#[test]
fn tampered_ciphertext_ends_the_session_without_delivering() {
    let now = Instant::now();
    let (mut c, mut a) = kms_pair(now);
    a.send(PayloadType::Output, Bytes::from_static(b"secret output"))
        .unwrap();
    let wire = a.poll_transmit(now).unwrap();
    let mut m = AgentMessage::decode(wire).unwrap();
    let mut p = m.payload.to_vec();
    p[20] ^= 0x40; // flip a ciphertext bit; re-encode so the digest matches the tampered bytes
    m.payload = Bytes::from(p);
    c.handle_frame(m.encode(), now).unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(ev.as_slice(), [Event::Closed(CloseReason::Crypto(_))]),
        "{ev:?}"
    );
    assert!(c.is_closed());
}

#[test]
fn failed_kms_call_is_reported_to_the_agent_as_a_failed_action() {
    let now = Instant::now();
    let mut c = client(now);
    let mut a = agent(now);
    let req = r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"k","Challenge":""}}]}"#;
    a.send(PayloadType::HandshakeRequest, Bytes::from(req))
        .unwrap();
    exchange(&mut a, &mut c, now);
    c.provide_data_key(Err("AccessDeniedException: not allowed to use key k".into()));
    exchange(&mut a, &mut c, now);
    let Some(Event::Payload { data, .. }) = events(&mut a).pop() else {
        panic!()
    };
    let resp: HandshakeResponsePayload = serde_json::from_slice(&data).unwrap();
    assert_eq!(resp.processed_client_actions[1].action_status, 2);
    assert!(resp.errors.unwrap()[0].contains("AccessDeniedException"));
    assert!(!c.is_encrypted());
}

#[test]
fn not_ready_consumer_leaves_data_unacked_until_ready() {
    let t0 = Instant::now();
    let mut c = client(t0);
    let mut a = agent(t0);
    c.set_ready(false);
    a.send(PayloadType::Output, Bytes::from_static(b"one"))
        .unwrap();
    a.send(PayloadType::Output, Bytes::from_static(b"two"))
        .unwrap();
    exchange(&mut a, &mut c, t0);
    // "two" arrived out of the reader's order position and was acked+buffered; "one" was refused.
    assert_eq!(a.unacked(), 1);
    assert!(events(&mut c).is_empty());
    assert_eq!(c.stats().not_ready_drops, 1);
    c.set_ready(true);
    // The agent retransmits after its RTO; now it is accepted and both are delivered in order.
    let t1 = a.poll_timeout().unwrap();
    exchange(&mut a, &mut c, t1);
    assert_eq!(a.unacked(), 0);
    let out: Vec<Event> = events(&mut c)
        .into_iter()
        .filter(|e| matches!(e, Event::Output(_)))
        .collect();
    assert_eq!(
        out,
        vec![
            Event::Output(Bytes::from_static(b"one")),
            Event::Output(Bytes::from_static(b"two"))
        ]
    );
}

fn control_frame(mt: MessageType, payload: &'static [u8]) -> Bytes {
    AgentMessage::new(
        mt,
        0,
        0,
        UNIX_MS,
        Uuid::nil(),
        PayloadType::Undefined,
        Bytes::from_static(payload),
    )
    .encode()
}

#[test]
fn pause_publication_holds_new_data_and_expires_for_a_client() {
    let t0 = Instant::now();
    let mut c = client(t0);
    c.handle_frame(control_frame(MessageType::PausePublication, b"x"), t0)
        .unwrap();
    assert_eq!(events(&mut c), vec![Event::PublicationPaused]);
    c.send(PayloadType::Output, Bytes::from_static(b"k"))
        .unwrap();
    assert!(c.poll_transmit(t0).is_none());
    // The client probes again after the pause expiry (1 s), in case start_publication was lost.
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    assert!(c.poll_transmit(t0 + Duration::from_secs(1)).is_some());

    let mut a = agent(t0);
    a.handle_frame(control_frame(MessageType::PausePublication, b"x"), t0)
        .unwrap();
    a.send(PayloadType::Output, Bytes::from_static(b"k"))
        .unwrap();
    assert!(
        a.poll_transmit(t0 + Duration::from_secs(3600)).is_none(),
        "the agent waits for start"
    );
    a.handle_frame(control_frame(MessageType::StartPublication, b"x"), t0)
        .unwrap();
    // What the agent numbered while paused was never written: it goes out as the head, at the
    // first 100 ms tick after the 200 ms RTO.
    assert!(a.poll_transmit(t0).is_none());
    let tick = t0 + Duration::from_millis(300);
    assert_eq!(a.poll_timeout(), Some(tick));
    assert!(a.poll_transmit(tick).is_some());
}

#[test]
fn a_paused_session_does_not_ask_to_wake_for_retransmissions_it_will_not_send() {
    let t0 = Instant::now();
    let mut c = client(t0);
    c.send(PayloadType::Output, Bytes::from_static(b"k"))
        .unwrap();
    assert!(c.poll_transmit(t0).is_some());
    let later = t0 + Duration::from_millis(500);
    c.handle_frame(control_frame(MessageType::PausePublication, b"x"), later)
        .unwrap();
    // The retransmission fell due at t0 + 200 ms, but while paused the next wake-up is the
    // pause expiry, not a deadline already in the past (which would make a driver spin).
    assert_eq!(c.poll_timeout(), Some(later + Duration::from_secs(1)));
    assert!(c.poll_transmit(later).is_none());
    let mut a = agent(t0);
    a.send(PayloadType::Output, Bytes::from_static(b"k"))
        .unwrap();
    assert!(a.poll_transmit(t0).is_some());
    a.handle_frame(control_frame(MessageType::PausePublication, b"x"), later)
        .unwrap();
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn silent_peer_makes_the_client_give_up_with_a_clear_reason() {
    let t0 = Instant::now();
    let mut c = client(t0);
    c.send(PayloadType::Output, Bytes::from_static(b"hello"))
        .unwrap();
    let mut now = t0;
    let mut sent = 0;
    for _ in 0..10_000 {
        while c.poll_transmit(now).is_some() {
            sent += 1;
        }
        match c.poll_timeout() {
            Some(t) => now = t,
            None => break,
        }
        c.handle_timeout(now);
    }
    let ev = events(&mut c);
    assert!(
        matches!(ev.as_slice(), [Event::Closed(CloseReason::GaveUp { waited, .. })] if *waited >= Duration::from_secs(300)),
        "{ev:?}"
    );
    // Retransmissions back off to the 1 s cap rather than the plugin's every-100-ms bug.
    assert!((295..=305).contains(&sent), "sent {sent} times");
    assert!(c
        .send(PayloadType::Output, Bytes::from_static(b"x"))
        .is_err());
}

#[test]
fn invalid_frames_are_ignored_and_never_acked() {
    let t0 = Instant::now();
    let mut c = client(t0);
    let mut a = agent(t0);
    a.send(PayloadType::Output, Bytes::from_static(b"data"))
        .unwrap();
    let good = a.poll_transmit(t0).unwrap();
    let mut bad = good.to_vec();
    *bad.last_mut().unwrap() ^= 1; // payload no longer matches its digest
    assert!(matches!(
        c.handle_frame(Bytes::from(bad), t0),
        Err(FrameError::Invalid(_))
    ));
    assert!(matches!(
        c.handle_frame(Bytes::from_static(b"short"), t0),
        Err(FrameError::Decode(_))
    ));
    assert!(c.poll_transmit(t0).is_none());
    assert_eq!(c.stats().invalid_frames, 2);
    c.handle_frame(good, t0).unwrap();
    assert!(c.poll_transmit(t0).is_some());
    // Empty payloads are refused at the source (§2.2).
    assert!(c.send(PayloadType::Output, Bytes::new()).is_err());
}

#[test]
fn channel_closed_ends_the_session_with_its_reason() {
    let t0 = Instant::now();
    let mut c = client(t0);
    let cc = br#"{"MessageId":"m","CreatedDate":"1","DestinationId":"i-0123","SessionId":"sess-1","MessageType":"channel_closed","SchemaVersion":1,"Output":"Session terminated by admin"}"#;
    c.handle_frame(control_frame(MessageType::ChannelClosed, cc), t0)
        .unwrap();
    let Some(Event::ChannelClosed(c2)) = c.poll_event() else {
        panic!()
    };
    assert_eq!(c2.output, "Session terminated by admin");
    assert!(c.is_closed());
    assert!(c.poll_timeout().is_none());
}

#[test]
fn agent_marks_only_its_first_stream_message_syn() {
    let t0 = Instant::now();
    let mut a = agent(t0);
    let mut c = client(t0);
    for _ in 0..2 {
        a.send(PayloadType::Output, Bytes::from_static(b"x"))
            .unwrap();
        c.send(PayloadType::Output, Bytes::from_static(b"y"))
            .unwrap();
    }
    let flags = |s: &mut Session| -> Vec<u64> {
        std::iter::from_fn(|| s.poll_transmit(t0))
            .map(|f| AgentMessage::decode(f).unwrap().flags)
            .collect()
    };
    assert_eq!(flags(&mut a), vec![1, 0]);
    assert_eq!(flags(&mut c), vec![0, 0]);
    // Message ids differ and are stored with swapped halves like any other.
    let id = Uuid::new_v4();
    assert_eq!(uuid_to_wire(&id)[..8], id.as_bytes()[8..]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = AgentMessage::decode(Bytes::from(bytes.clone())).map(|m| m.validate());
        let t0 = Instant::now();
        let _ = client(t0).handle_frame(Bytes::from(bytes.clone()), t0);
        let _ = agent(t0).handle_frame(Bytes::from(bytes), t0);
    }

    #[test]
    fn frames_with_a_valid_header_and_random_payload_never_panic(
        mt in prop_oneof![Just("output_stream_data".to_string()), Just("input_stream_data".to_string()), Just("acknowledge".to_string()), Just("channel_closed".to_string()), Just("pause_publication".to_string()), Just("agent_session_state".to_string()), "[a-z_]{0,40}"],
        pt in 0u32..16,
        seq in -3i64..5,
        payload in proptest::collection::vec(any::<u8>(), 1..300),
    ) {
        let t0 = Instant::now();
        let f = AgentMessage::new(MessageType::from(mt.as_str()), seq, 0, UNIX_MS, Uuid::nil(), PayloadType::from(pt), Bytes::from(payload)).encode();
        let mut c = client(t0);
        let _ = c.handle_frame(f.clone(), t0);
        while c.poll_event().is_some() {}
        let mut a = agent(t0);
        let _ = a.handle_frame(f, t0);
        while a.poll_event().is_some() {}
    }

    #[test]
    fn encode_decode_round_trip(
        mt in "[a-z_]{1,32}",
        seq in any::<i64>(),
        flags in any::<u64>(),
        created in 1u64..u64::MAX,
        id in any::<u128>(),
        pt in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let m = AgentMessage::new(MessageType::from(mt.as_str()), seq, flags, created, Uuid::from_u128(id), PayloadType::from(pt), Bytes::from(payload));
        let encoded = m.encode();
        prop_assert_eq!(encoded.len(), 120 + m.payload.len());
        let d = AgentMessage::decode(encoded.clone()).unwrap();
        d.validate().unwrap();
        prop_assert_eq!(&d.message_type, &m.message_type);
        prop_assert_eq!(d.sequence_number, seq);
        prop_assert_eq!(d.flags, flags);
        prop_assert_eq!(d.created_date, created);
        prop_assert_eq!(d.message_id, m.message_id);
        prop_assert_eq!(u32::from(d.payload_type), pt);
        prop_assert_eq!(&d.payload, &m.payload);
        // Re-encoding a decoded frame reproduces it byte for byte.
        prop_assert_eq!(d.encode(), encoded);
    }
}

#[test]
fn a_paced_client_stays_under_its_rate_while_acks_never_wait() {
    let t0 = Instant::now();
    let mut config = SessionConfig::client("sess-1", "i-0123");
    config.max_message_rate = Some(960);
    // Acks never wait for a pacing token; the brief hold of ACK_DELAY is tested on its own.
    config.ack_delay = None;
    let mut c = Session::new(config, t0, UNIX_MS, [1; 32]);
    let mut a = agent(t0);
    // 3000 messages queued at once; a driver that wakes only when poll_timeout says so.
    send_numbered(&mut c, 3000);
    let mut sent_at = Vec::new();
    let mut now = t0;
    let mut wakeups = 0;
    while c.unacked() > 0 {
        c.handle_timeout(now);
        while let Some(f) = c.poll_transmit(now) {
            let m = AgentMessage::decode(f.clone()).unwrap();
            if m.message_type == MessageType::InputStreamData {
                sent_at.push(now);
            }
            let _ = a.handle_frame(f, now);
        }
        // The agent answers at once; its acks are processed by the client at once, and the
        // agent's own stream messages are acked without waiting for a pacing token.
        if wakeups == 100 {
            a.send(PayloadType::Output, Bytes::from_static(b"from the agent"))
                .unwrap();
        }
        while let Some(f) = a.poll_transmit(now) {
            c.handle_frame(f, now).unwrap();
        }
        if wakeups == 100 {
            let ack = c
                .poll_transmit(now)
                .expect("the ack goes out while data is held back");
            let m = AgentMessage::decode(ack.clone()).unwrap();
            assert_eq!(m.message_type, MessageType::Acknowledge);
            a.handle_frame(ack, now).unwrap();
        }
        if c.unacked() == 0 {
            break;
        }
        let next = c
            .poll_timeout()
            .expect("data is waiting, so a wake-up is due");
        assert!(next > now, "the pacer must not make a driver spin");
        now = next.max(now);
        wakeups += 1;
        assert!(wakeups < 10_000, "bounded");
    }
    assert_eq!(sent_at.len(), 3000);
    // No one-second window holds more than rate + burst = 992 messages.
    for (i, &start) in sent_at.iter().enumerate() {
        let n = sent_at[i..]
            .iter()
            .take_while(|&&t| t < start + Duration::from_secs(1))
            .count();
        assert!(n <= 992, "{n} messages in the second from message {i}");
    }
    // And it goes as fast as allowed: (3000 - 32 burst) / 960 per second ≈ 3.09 s.
    let span = *sent_at.last().unwrap() - t0;
    assert!(span < Duration::from_millis(3200), "{span:?}");
    assert_eq!(c.stats().pacing_decreases, 0);
}

/// A paced client at 1000 messages a second that wakes every 8 tokens, with its burst spent.
fn batching_client(t0: Instant) -> Session {
    let mut config = SessionConfig::client("sess-1", "i-0123");
    config.max_message_rate = Some(1000);
    config.pacing_burst = 8;
    config.pacing_wake_batch = 8;
    let mut c = Session::new(config, t0, UNIX_MS, [1; 32]);
    send_numbered(&mut c, 8);
    assert_eq!(drain(&mut c, t0).len(), 8, "the burst goes at once");
    c
}

#[test]
fn a_paced_client_lets_whole_batches_go_not_what_trickled_in() {
    let t0 = Instant::now();
    let mut c = batching_client(t0);
    send_numbered(&mut c, 100);
    // Woken early (acks, input): three tokens are there, but a batch is eight.
    let early = t0 + Duration::from_millis(3);
    assert_eq!(c.batch_allowance(early), Some(0));
    assert_eq!(drain(&mut c, early).len(), 0, "nothing trickles out");
    let due = c.poll_timeout().expect("data waits");
    assert!(
        due >= t0 + Duration::from_micros(7900),
        "{:?}: the batch's eight tokens",
        due - t0
    );
    // Then the whole batch goes in one go, and the next is a batch away again.
    assert_eq!(c.batch_allowance(due), Some(8));
    assert_eq!(drain(&mut c, due).len(), 8);
    let next = c.poll_timeout().expect("data waits") - due;
    assert!(next >= Duration::from_micros(7900), "{next:?}");
}

#[test]
fn a_short_write_goes_at_once_when_it_fits_in_the_tokens_there_are() {
    let t0 = Instant::now();
    let mut c = batching_client(t0);
    // Three tokens later, two messages: all that waits fits, so they go now.
    let now = t0 + Duration::from_millis(3);
    send_numbered(&mut c, 2);
    assert_eq!(drain(&mut c, now).len(), 2);
    // A caller holding more than the tokens (its backlog) waits for a whole batch, even for
    // the one message it numbered.
    let now = now + Duration::from_millis(2);
    c.set_backlog(50);
    c.send(PayloadType::Output, Bytes::from_static(b"x"))
        .unwrap();
    assert_eq!(c.batch_allowance(now), Some(0));
    assert_eq!(drain(&mut c, now).len(), 0);
    // Without that backlog the message fits.
    c.set_backlog(0);
    assert_eq!(drain(&mut c, now).len(), 1);
}

#[test]
fn a_hurried_client_does_not_wait_for_a_batch() {
    let t0 = Instant::now();
    let mut c = batching_client(t0);
    send_numbered(&mut c, 100);
    let now = t0 + Duration::from_millis(3);
    assert_eq!(drain(&mut c, now).len(), 0);
    c.set_hurried(true);
    assert_eq!(
        drain(&mut c, now).len(),
        3,
        "what the tokens allow, at once"
    );
    let next = c.poll_timeout().expect("data waits") - now;
    assert!(
        next <= Duration::from_micros(1100),
        "{next:?}: the next token"
    );
}

#[test]
fn a_hurried_pacer_wakes_per_message_and_a_calm_one_per_batch() {
    let t0 = Instant::now();
    let mut config = SessionConfig::client("sess-1", "i-0123");
    config.max_message_rate = Some(1000);
    config.pacing_burst = 4;
    config.pacing_wake_batch = 4;
    let mut c = Session::new(config, t0, UNIX_MS, [1; 32]);
    send_numbered(&mut c, 100);
    // The burst goes at once; then the pacer holds the rest back.
    let mut sent = 0;
    while c.poll_transmit(t0).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 4);
    let calm = c.poll_timeout().expect("data waits") - t0;
    assert!(
        calm >= Duration::from_micros(3900),
        "{calm:?}: four tokens at 1000/s"
    );
    c.set_hurried(true);
    let hurried = c.poll_timeout().expect("data waits") - t0;
    assert!(
        hurried <= Duration::from_micros(1100),
        "{hurried:?}: one token"
    );
    c.set_hurried(false);
    assert_eq!(
        c.poll_timeout().expect("data waits") - t0,
        calm,
        "calm again"
    );
}

/// Arbitrary handshake-shaped JSON: known keys with values of any type, unknown keys, and
/// plain strings.
fn handshake_json() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#"{"SessionType":"Port","Properties":{"type":"LocalPortForwarding"}}"#.to_owned()),
        Just(r#"{"KMSKeyId":7,"Challenge":"!!"}"#.to_owned()),
        Just("[[[]]]".to_owned()),
    ];
    let action = (
        prop_oneof![
            Just("SessionType".to_owned()),
            Just("KMSEncryption".to_owned()),
            ".{0,8}"
        ],
        value.clone(),
    )
        .prop_map(|(t, p)| {
            format!(
                r#"{{"ActionType":{},"ActionParameters":{p}}}"#,
                serde_json::to_string(&t).unwrap()
            )
        });
    prop_oneof![
        ".{1,64}",
        (value, proptest::collection::vec(action, 0..4)).prop_map(|(v, actions)| format!(
            r#"{{"AgentVersion":{v},"RequestedClientActions":[{}]}}"#,
            actions.join(",")
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn any_handshake_request_is_answered_or_refused_in_one_line(json in handshake_json()) {
        let now = Instant::now();
        let mut c = client(now);
        let mut a = agent(now);
        a.send(PayloadType::HandshakeRequest, Bytes::from(json)).unwrap();
        exchange(&mut a, &mut c, now);
        let mut kms = FakeKms { calls: vec![] };
        c.resolve_data_key(&mut kms);
        exchange(&mut a, &mut c, now);
        for ev in events(&mut c) {
            if let Event::Closed(reason) = ev {
                let line = reason.to_string();
                prop_assert!(!line.contains('\n'), "{line}");
            }
        }
    }
}

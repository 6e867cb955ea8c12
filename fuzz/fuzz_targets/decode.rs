//! Arbitrary websocket frames against the agent-message codec and both roles of [`Session`].
//!
//! Everything a peer or the gateway sends reaches `AgentMessage::decode` and `Session::handle_frame`
//! unfiltered, so no input may panic them (STYLE.md: no `unwrap()` on anything from the network).
//! Besides "no panic", the codec must round-trip: a decoded message, re-encoded, decodes to the
//! same fields (see `assert_same_fields` for the one exception) and passes validation unless a field
//! value (CreatedDate 0, an empty type) forbids it.
//!
//! The input is used twice: whole, as one frame, and split into `[u16 big-endian length][frame]`
//! records fed in order to the same sessions, so the fuzzer can build multi-frame conversations
//! (a handshake followed by stream data, acks for messages we sent, ...).

#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rssm_protocol::message::ValidationError;
use rssm_protocol::{AgentMessage, DataKey, Event, PayloadType, Session, SessionConfig};

/// More frames than any input could legitimately make a session emit in one drain; reaching it
/// means `poll_transmit` never runs dry, a livelock worth reporting.
const MAX_TRANSMITS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    check_codec(frame.clone());

    let now = Instant::now();
    let mut client = Session::new(SessionConfig::client("s", "i"), now, 1, [1; 32]);
    let mut agent = Session::new(SessionConfig::agent("s", "i"), now, 1, [2; 32]);
    // Something queued on each side, so that fuzzed acknowledgements have a message to ack.
    let _ = client.send(PayloadType::Output, Bytes::from_static(b"ls\n"));
    let _ = agent.send(PayloadType::Output, Bytes::from_static(b"$ "));

    for session in [&mut client, &mut agent] {
        let _ = session.handle_frame(frame.clone(), now);
        drain(session, now);
        for record in records(data) {
            let _ = session.handle_frame(record, now);
            drain(session, now);
        }
        // Time passing: retransmissions fall due and the client's give-up deadline passes.
        let later = now + Duration::from_secs(600);
        session.handle_timeout(later);
        drain(session, later);
        let _ = session.poll_timeout();
    }
});

/// Decodes, validates, and checks that the re-encoding decodes to the same message.
fn check_codec(frame: Bytes) {
    let Ok(msg) = AgentMessage::decode(frame) else {
        return;
    };
    let _ = msg.validate();

    let mut current = msg;
    let mut encoded = current.encode();
    assert_eq!(encoded.len(), current.encoded_len());
    loop {
        let next = AgentMessage::decode(encoded.clone()).expect("our own encoding decodes");
        assert_same_fields(&next, &current);
        // Our encoding has a correct header and digest, so only field values can make it invalid.
        match next.validate() {
            Ok(()) | Err(ValidationError::ZeroCreatedDate | ValidationError::EmptyMessageType) => {}
            Err(e) => panic!("our own encoding fails validation: {e}"),
        }
        let next_encoded = next.encode();
        if next_encoded == encoded {
            return;
        }
        // Only a type with NUL at an edge may change (see `assert_same_fields`); it loses edge
        // characters each round, so this loop ends within 32 rounds.
        let (before, after) = (current.message_type.as_str(), next.message_type.as_str());
        assert!(
            after.len() < before.len() && before.contains(after),
            "re-encoding changed message type {before:?} into {after:?}"
        );
        (current, encoded) = (next, next_encoded);
    }
}

/// Every field survives re-encoding, except header fields the encoder recomputes and one kind of
/// message type: the decoder strips NULs before whitespace, like the reference readers, so a type
/// that still starts or ends with NUL after that (raw padding such as `" \0\0-"`) loses those NULs
/// once re-encoded with space padding. Real message types never contain NUL.
fn assert_same_fields(decoded: &AgentMessage, original: &AgentMessage) {
    let name = original.message_type.as_str();
    if !name.starts_with('\0') && !name.ends_with('\0') {
        assert_eq!(decoded.message_type, original.message_type);
    }
    assert_eq!(decoded.schema_version, original.schema_version);
    assert_eq!(decoded.created_date, original.created_date);
    assert_eq!(decoded.sequence_number, original.sequence_number);
    assert_eq!(decoded.flags, original.flags);
    assert_eq!(decoded.message_id, original.message_id);
    assert_eq!(decoded.payload_type, original.payload_type);
    assert_eq!(decoded.payload, original.payload);
}

/// Splits `data` into `[u16 length][bytes]` records; a short last record takes what is left.
fn records(mut data: &[u8]) -> impl Iterator<Item = Bytes> + '_ {
    std::iter::from_fn(move || {
        let [hi, lo, rest @ ..] = data else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (record, tail) = rest.split_at(len);
        data = tail;
        Some(Bytes::copy_from_slice(record))
    })
}

/// Reacts to every event the way a driver would, then sends everything there is to send.
fn drain(session: &mut Session, now: Instant) {
    while let Some(event) = session.poll_event() {
        if let Event::DataKeyRequired(_) = event {
            // A fixed key lets the fuzzer reach encrypted delivery and the KMS challenge.
            session.provide_data_key(Ok(DataKey {
                plaintext: (0..64).collect(),
                ciphertext_blob: b"blob".to_vec(),
            }));
        }
    }
    let mut sent = 0;
    while session.poll_transmit(now).is_some() {
        sent += 1;
        assert!(sent < MAX_TRANSMITS, "poll_transmit never runs dry");
    }
}

//! Per-message cost of the data-channel protocol, for 1 KiB payloads (the size the peers' reads
//! produce, PROTOCOL.md §12).
//!
//! Run with:
//!
//! ```text
//! cargo bench -p rssm-protocol --bench codec
//! ```
//!
//! Throughput is reported in payload bytes per second (the 120-byte header is not counted), so the
//! numbers compare directly with the link speed a session has to keep up with.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use rssm_protocol::{AgentMessage, Event, MessageType, PayloadType, Session, SessionConfig};
use uuid::Uuid;

/// Payload size of every benchmark: one full read of the peer (§12).
const PAYLOAD_LEN: usize = 1024;

fn main() {
    divan::main();
}

fn payload() -> Bytes {
    (0..PAYLOAD_LEN).map(|i| (i % 251) as u8).collect()
}

fn output_message() -> AgentMessage {
    AgentMessage::new(
        MessageType::OutputStreamData,
        42,
        0,
        1_700_000_000_000,
        Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        PayloadType::Output,
        payload(),
    )
}

/// Encoding an `output_stream_data` message, including the SHA-256 of its payload.
#[divan::bench]
fn encode(bencher: Bencher) {
    let msg = output_message();
    let mut buf = BytesMut::with_capacity(msg.encoded_len());
    bencher
        .counter(BytesCount::new(PAYLOAD_LEN))
        .bench_local(|| {
            buf.clear();
            black_box(&msg).encode_into(&mut buf);
            black_box(&buf);
        });
}

/// Decoding a received frame and validating it, which recomputes the digest (§2.7).
#[divan::bench]
fn decode_validate(bencher: Bencher) {
    let frame = output_message().encode();
    bencher
        .counter(BytesCount::new(PAYLOAD_LEN))
        .bench_local(|| {
            let msg = AgentMessage::decode(black_box(frame.clone())).expect("frame decodes");
            msg.validate().expect("digest matches");
            msg
        });
}

/// Encode, then decode and validate: what one message costs its two ends at the codec level.
#[divan::bench]
fn codec_round_trip(bencher: Bencher) {
    let msg = output_message();
    bencher
        .counter(BytesCount::new(PAYLOAD_LEN))
        .bench_local(|| {
            let frame = black_box(&msg).encode();
            let decoded = AgentMessage::decode(frame).expect("frame decodes");
            decoded.validate().expect("digest matches");
            decoded
        });
}

/// One Output message through two sessions: the agent sends it, the client receives it and
/// acknowledges it, and the agent takes the acknowledgement. That is the full per-message protocol
/// cost both ends pay (two encodes, two decodes with digest checks, ack JSON, the reliability
/// buffers), without KMS encryption.
#[divan::bench]
fn session_round_trip(bencher: Bencher) {
    let now = Instant::now();
    let unix_ms = 1_700_000_000_000;
    let mut agent = Session::new(SessionConfig::agent("sess", "i-0"), now, unix_ms, [1; 32]);
    let mut client = Session::new(SessionConfig::client("sess", "i-0"), now, unix_ms, [2; 32]);
    let data = payload();
    bencher
        .counter(BytesCount::new(PAYLOAD_LEN))
        .bench_local(|| {
            agent
                .send(PayloadType::Output, data.clone())
                .expect("agent accepts the message");
            let frame = agent
                .poll_transmit(now)
                .expect("agent transmits the message");
            client.handle_frame(frame, now).expect("client accepts it");
            let mut delivered = 0;
            while let Some(event) = client.poll_event() {
                if let Event::Output(bytes) = event {
                    delivered += bytes.len();
                }
            }
            assert_eq!(delivered, PAYLOAD_LEN);
            let ack = client.poll_transmit(now).expect("client acknowledges");
            agent.handle_frame(ack, now).expect("agent accepts the ack");
        });
    // Every message was acknowledged, so the buffers did not grow during the run.
    assert_eq!(agent.unacked(), 0);
}

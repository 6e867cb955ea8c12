//! Arbitrary bytes as the agent's HandshakeRequest JSON (§7.2), sent by an agent session to a
//! client session: the client answers or ends the session with a one-line reason, never panics.

#![no_main]

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rssm_protocol::{DataKey, Event, PayloadType, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut client = Session::new(SessionConfig::client("s", "i-1"), now, 1, [1; 32]);
    let mut agent = Session::new(SessionConfig::agent("s", "i-1"), now, 1, [2; 32]);
    if agent
        .send(PayloadType::HandshakeRequest, Bytes::copy_from_slice(data))
        .is_err()
    {
        return; // empty
    }
    for _ in 0..4 {
        while let Some(frame) = agent.poll_transmit(now) {
            let _ = client.handle_frame(frame, now);
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::DataKeyRequired(_) => client.provide_data_key(Ok(DataKey {
                    plaintext: (0..64).collect(),
                    ciphertext_blob: b"blob".to_vec(),
                })),
                Event::Closed(reason) => {
                    let line = reason.to_string();
                    assert!(!line.contains('\n'), "reason on several lines: {line:?}");
                }
                _ => {}
            }
        }
        while let Some(frame) = client.poll_transmit(now) {
            let _ = agent.handle_frame(frame, now);
        }
        while agent.poll_event().is_some() {}
    }
});

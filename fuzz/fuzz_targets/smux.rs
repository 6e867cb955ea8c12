//! Arbitrary peer bytes against the smux frame decoder and [`SmuxSession`] (PROTOCOL.md §9.4.3).
//!
//! The first input byte picks the role, whether keep-alive is on, and the fragment size the rest is
//! fed in (data-channel Output payloads cut smux frames anywhere). The session is driven like an echo
//! server: streams the peer opens are read and their data written back, and finished streams are
//! closed, so writes, closes and the output queue run on fuzzed state too. Nothing may panic, and
//! every frame the decoder accepts must re-encode to exactly the bytes it came from.

#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rssm_protocol::smux::{FrameDecoder, SmuxConfig, SmuxEvent, SmuxRole, SmuxSession};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    check_frame_round_trip(input);

    let role = if control & 1 == 0 {
        SmuxRole::Client
    } else {
        SmuxRole::Server
    };
    let config = SmuxConfig {
        keep_alive: (control & 2 != 0).then_some(SmuxConfig::DEFAULT_KEEP_ALIVE),
        ..SmuxConfig::default()
    };
    let fragment = usize::from(control >> 2) + 1;

    let start = Instant::now();
    let mut session = SmuxSession::new(role, config, start);
    // One stream of our own, so that input for our id space has something to hit.
    let _ = session.open_stream();
    for (i, chunk) in input.chunks(fragment).enumerate() {
        // Seconds pass between fragments so keep-alive pings and timeouts fire as well.
        let now = start + Duration::from_secs(i as u64);
        let _ = session.handle_input(chunk, now);
        react(&mut session);
        while session.poll_output(1024).is_some() {}
        let _ = session.poll_timeout();
    }
    session.handle_timeout(start + Duration::from_secs(3600));
    react(&mut session);
    while session.poll_output(1024).is_some() {}
});

/// Decodes every complete frame and checks that re-encoding reproduces the consumed bytes.
fn check_frame_round_trip(input: &[u8]) {
    let mut decoder = FrameDecoder::new();
    decoder.push(input);
    let mut encoded = BytesMut::new();
    while let Ok(Some(frame)) = decoder.next_frame() {
        frame
            .encode(&mut encoded)
            .expect("a decoded frame re-encodes");
    }
    assert_eq!(
        &encoded[..],
        &input[..encoded.len()],
        "re-encoded frames differ from the bytes they were decoded from"
    );
    assert_eq!(encoded.len() + decoder.pending_len(), input.len());
}

/// An echo server's reaction to each event.
fn react(session: &mut SmuxSession) {
    while let Some(event) = session.poll_event() {
        match event {
            SmuxEvent::StreamOpened(_) | SmuxEvent::SessionClosed(_) => {}
            SmuxEvent::Readable(id) => {
                while let Some(bytes) = session.read(id, 4096) {
                    let _ = session.write(id, &bytes);
                }
            }
            SmuxEvent::StreamFinished(id) => {
                let _ = session.close(id);
            }
        }
    }
}

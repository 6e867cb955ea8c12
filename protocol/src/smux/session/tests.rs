use super::*;
use crate::smux::tests::{events, feed, output_hex, read_all, session};

#[test]
fn stream_ids_have_the_role_parity_and_go_away_on_wrap() {
    let (mut client, _) = session(SmuxRole::Client);
    let (mut server, _) = session(SmuxRole::Server);
    let client_ids: Vec<u32> = (0..3).map(|_| client.open_stream().unwrap().0).collect();
    let server_ids: Vec<u32> = (0..3).map(|_| server.open_stream().unwrap().0).collect();
    assert_eq!((client_ids, server_ids), (vec![3, 5, 7], vec![2, 4, 6]));

    client.next_stream_id = u32::MAX - 2;
    assert_eq!(client.open_stream(), Ok(StreamId(u32::MAX)));
    assert_eq!(client.open_stream(), Err(SmuxError::GoAway));
    assert_eq!(
        client.open_stream(),
        Err(SmuxError::GoAway),
        "go-away is permanent"
    );
    server.next_stream_id = u32::MAX - 1;
    assert_eq!(server.open_stream(), Err(SmuxError::GoAway));
}

#[test]
fn open_stream_skips_an_id_the_peer_already_opened() {
    let (mut client, now) = session(SmuxRole::Client);
    feed(&mut client, "0100000003000000", now);
    assert_eq!(client.open_stream(), Ok(StreamId(5)));
}

#[test]
fn write_splits_into_max_frame_size_psh_frames() {
    let (mut client, _) = session(SmuxRole::Client);
    let id = client.open_stream().unwrap();
    output_hex(&mut client);
    client.write(id, &[]).unwrap();
    assert_eq!(client.pending_output(), 0, "empty writes send nothing");
    let data: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    client.write(id, &data).unwrap();
    let mut decoder = FrameDecoder::new();
    decoder.push(&hex::decode(output_hex(&mut client)).unwrap());
    let frames: Vec<Frame> = std::iter::from_fn(|| decoder.next_frame().unwrap()).collect();
    let sizes: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
    assert_eq!(sizes, [32_768, 32_768, 4_464]);
    assert!(frames.iter().all(|f| f.cmd == Cmd::Psh && f.stream_id == 3));
    assert_eq!(
        frames
            .iter()
            .flat_map(|f| f.data.to_vec())
            .collect::<Vec<_>>(),
        data
    );
}

#[test]
fn poll_output_cuts_the_byte_stream_at_max_len() {
    let (mut client, _) = session(SmuxRole::Client);
    let id = client.open_stream().unwrap();
    client.write(id, &[0xAA; 2000]).unwrap();
    assert_eq!(client.pending_output(), 8 + 8 + 2000);
    let lens: Vec<usize> = std::iter::from_fn(|| client.poll_output(1024))
        .map(|c| c.len())
        .collect();
    assert_eq!(lens, [1024, 992]);
    assert_eq!(
        (client.poll_output(1024), client.pending_output()),
        (None, 0)
    );
    client.write(id, b"x").unwrap();
    assert_eq!(client.poll_output(0), None);
}

#[test]
fn ignores_frames_xtaci_ignores() {
    let (mut server, now) = session(SmuxRole::Server);
    feed(&mut server, "0102030009000000616263", now); // PSH for a stream never opened
    feed(&mut server, "0101000009000000", now); // FIN for a stream never opened
    feed(&mut server, "0103000000000000", now); // NOP
    assert_eq!(
        (events(&mut server), server.buffered(), server.num_streams()),
        (vec![], 0, 0)
    );
    feed(
        &mut server,
        "01000000030000000102010003000000610100000003000000",
        now,
    );
    let id = StreamId(3);
    assert_eq!(
        events(&mut server),
        [SmuxEvent::StreamOpened(id), SmuxEvent::Readable(id)]
    );
    assert_eq!(
        server.buffered(),
        1,
        "a repeated SYN neither re-announces nor resets"
    );
    feed(&mut server, "0102000003000000", now); // empty PSH
    assert_eq!((events(&mut server), server.buffered()), (vec![], 1));
}

#[test]
fn peer_fin_keeps_buffered_data_readable_and_stops_later_data() {
    let (mut server, now) = session(SmuxRole::Server);
    let id = StreamId(3);
    feed(
        &mut server,
        "010000000300000001020300030000006162630102020003000000646501010000",
        now,
    );
    feed(&mut server, "03000000", now);
    let expected = [
        SmuxEvent::StreamOpened(id),
        SmuxEvent::Readable(id),
        SmuxEvent::StreamFinished(id),
    ];
    assert_eq!(
        events(&mut server),
        expected,
        "one Readable for two PSH, then the FIN"
    );
    feed(&mut server, "0102010003000000660101000003000000", now); // data and FIN again after FIN
    assert_eq!((events(&mut server), server.buffered()), (vec![], 5));
    server.write(id, b"still writable").unwrap();
    server.close(id).unwrap();
    assert_eq!(server.num_streams(), 1, "unread data keeps the stream");
    assert_eq!(server.read(id, 2).as_deref(), Some(&b"ab"[..]));
    assert_eq!(read_all(&mut server, id), b"cde");
    assert_eq!(
        (server.num_streams(), server.buffered(), server.read(id, 9)),
        (0, 0, None)
    );
}

#[test]
fn half_close_keeps_receiving_until_the_peer_fin() {
    let (mut client, now) = session(SmuxRole::Client);
    let id = client.open_stream().unwrap();
    client.close(id).unwrap();
    assert_eq!(client.write(id, b"x"), Err(SmuxError::StreamClosed(id)));
    assert_eq!(client.close(id), Err(SmuxError::StreamClosed(id)));
    feed(&mut client, "010203000300000058595a", now);
    assert_eq!(
        read_all(&mut client, id),
        b"XYZ",
        "data after our FIN is delivered"
    );
    feed(&mut client, "0101000003000000", now);
    assert_eq!(client.num_streams(), 0);
    assert_eq!(client.write(id, b"x"), Err(SmuxError::UnknownStream(id)));
    feed(&mut client, "0102010003000000ff", now);
    assert_eq!(
        client.buffered(),
        0,
        "data for a forgotten stream is dropped"
    );
    feed(&mut client, "0100000003000000", now);
    assert!(
        events(&mut client).contains(&SmuxEvent::StreamOpened(id)),
        "ids are reusable"
    );
}

#[test]
fn drop_stream_discards_data_and_forgets_the_stream() {
    let (mut server, now) = session(SmuxRole::Server);
    let id = StreamId(3);
    feed(&mut server, "01000000030000000102040003000000abcdef01", now);
    assert_eq!(server.buffered(), 4);
    server.drop_stream(id).unwrap();
    assert_eq!((server.buffered(), server.num_streams()), (0, 0));
    assert_eq!(output_hex(&mut server), "0101000003000000");
    feed(&mut server, "0102010003000000ff0101000003000000", now);
    assert_eq!(server.buffered(), 0);
    assert_eq!(server.drop_stream(id), Err(SmuxError::UnknownStream(id)));
    assert_eq!(server.close(id), Err(SmuxError::UnknownStream(id)));
    // After a half-close, dropping sends no second FIN.
    feed(&mut server, "0100000005000000", now);
    server.close(StreamId(5)).unwrap();
    server.drop_stream(StreamId(5)).unwrap();
    assert_eq!(output_hex(&mut server), "0101000005000000");
}

#[test]
fn protocol_error_kills_the_session_but_keeps_received_data() {
    let (mut server, now) = session(SmuxRole::Server);
    let id = StreamId(3);
    feed(&mut server, "01000000030000000102020003000000abcd", now);
    server.write(id, b"queued").unwrap();
    let bad = hex::decode("0200000003000000").unwrap();
    assert_eq!(
        server.handle_input(&bad, now),
        Err(SmuxError::BadVersion(2))
    );
    assert!(server.is_closed());
    assert_eq!(
        events(&mut server).last(),
        Some(&SmuxEvent::SessionClosed(SmuxError::BadVersion(2)))
    );
    assert_eq!(server.pending_output(), 0, "nothing is sent after death");
    assert_eq!(server.handle_input(b"", now), Err(SmuxError::SessionClosed));
    assert_eq!(server.write(id, b"x"), Err(SmuxError::SessionClosed));
    assert_eq!(server.open_stream(), Err(SmuxError::SessionClosed));
    assert_eq!(read_all(&mut server, id), [0xab, 0xcd]);
    assert_eq!(events(&mut server), []);
}

#[test]
fn receive_buffer_accounting_drives_can_receive() {
    let config = SmuxConfig {
        max_receive_buffer: 4,
        ..SmuxConfig::default()
    };
    let now = Instant::now();
    let mut server = SmuxSession::new(SmuxRole::Server, config, now);
    feed(&mut server, "01000000030000000102030003000000616263", now);
    assert!(server.can_receive());
    feed(
        &mut server,
        "0102010003000000 64".replace(' ', "").as_str(),
        now,
    );
    assert_eq!((server.buffered(), server.can_receive()), (4, false));
    server.read(StreamId(3), 1);
    assert_eq!((server.buffered(), server.can_receive()), (3, true));
}

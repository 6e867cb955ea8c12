use super::*;

const CREATED: u64 = 1503434274948;
const ID: &str = "dd01e56b-ff48-483e-a508-b5f073f31b16";

fn hex(s: &str) -> Vec<u8> {
    let clean: String = s
        .lines()
        .map(|l| l.split_once(':').map_or(l, |(_, r)| r))
        .map(|l| l.split("  ").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    ::hex::decode(clean.split_whitespace().collect::<String>()).unwrap()
}

fn msg(mt: MessageType, seq: i64, flags: u64, pt: PayloadType, payload: &[u8]) -> AgentMessage {
    AgentMessage::new(
        mt,
        seq,
        flags,
        CREATED,
        Uuid::parse_str(ID).unwrap(),
        pt,
        Bytes::copy_from_slice(payload),
    )
}

/// Encodes, compares with the vector, decodes the vector and compares every field.
fn assert_vector(m: &AgentMessage, expected: &[u8]) {
    assert_eq!(m.encode().as_ref(), expected, "encode");
    let d = AgentMessage::decode(Bytes::copy_from_slice(expected)).unwrap();
    d.validate().unwrap();
    assert_eq!(d.message_type, m.message_type);
    assert_eq!(d.schema_version, 1);
    assert_eq!(d.created_date, m.created_date);
    assert_eq!(d.sequence_number, m.sequence_number);
    assert_eq!(d.flags, m.flags);
    assert_eq!(d.message_id, m.message_id);
    assert_eq!(d.payload_type, m.payload_type);
    assert_eq!(d.payload, m.payload);
    let rx = d.received.unwrap();
    assert_eq!(rx.header_length, 116);
    assert_eq!(rx.payload_length as usize, m.payload.len());
}

const TV1: &str = "
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: 23 9f 59 ed 55 e7 37 c7 71 47 cf 55 ad 0c 1b 03
0060: 0b 6d 7e e7 48 a7 42 69 52 f9 b8 52 d5 a9 35 e5
0070: 00 00 00 00 00 00 00 07 70 61 79 6c 6f 61 64";

#[test]
fn tv1_plugin_test_message() {
    let m = msg(
        MessageType::InputStreamData,
        1,
        2,
        PayloadType::Undefined,
        b"payload",
    );
    let v = hex(TV1);
    assert_eq!(v.len(), 127);
    assert_vector(&m, &v);
}

#[test]
fn tv2_agent_test_message() {
    let mut v = hex(TV1);
    let mut field = [b' '; 32];
    field[..17].copy_from_slice(b"interactive_shell");
    v[4..36].copy_from_slice(&field);
    let m = msg(
        MessageType::Other("interactive_shell".into()),
        1,
        2,
        PayloadType::Undefined,
        b"payload",
    );
    assert_vector(&m, &v);
}

#[test]
fn tv3_acknowledge() {
    let payload = br#"{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":2,"IsSequentialMessage":true}"#;
    let mut v = hex("
0000: 00 00 00 74 61 63 6b 6e 6f 77 6c 65 64 67 65 20
0010: 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03
0040: 80 b4 00 c0 4f d4 30 c8 6b a7 b8 14 9d ad 41 d1
0050: 78 a7 e0 a6 66 0b 25 f7 97 58 5b 89 a2 df c4 7d
0060: 31 eb 35 b0 4e 63 c1 d9 5b 8f 2c 82 59 73 24 bd
0070: 00 00 00 00 00 00 00 af");
    v.extend_from_slice(payload);
    assert_eq!(v.len(), 295);
    assert_eq!(&v[0x120..], b"\":true}");
    let mut m = msg(
        MessageType::Acknowledge,
        0,
        3,
        PayloadType::Undefined,
        payload,
    );
    m.message_id = Uuid::parse_str("6ba7b814-9dad-41d1-80b4-00c04fd430c8").unwrap();
    assert_vector(&m, &v);
}

#[test]
fn tv4_terminate_session_flag() {
    let v = hex("
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 00
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: 43 3e bf 5b c0 3d ff a3 85 36 67 32 07 a2 12 81
0060: 61 2c ef 5f aa 9b c7 a4 d5 b9 be 2f db 12 cf 1a
0070: 00 00 00 0a 00 00 00 04 00 00 00 02");
    assert_eq!(v.len(), 124);
    let m = msg(
        MessageType::InputStreamData,
        5,
        0,
        PayloadType::Flag,
        &[0, 0, 0, 2],
    );
    assert_vector(&m, &v);
}

#[test]
fn tv5_streaming_test_message() {
    let v = hex("
0000: 00 00 00 74 6f 75 74 70 75 74 5f 73 74 72 65 61
0010: 6d 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: e2 83 f7 8f bb a7 ce e0 83 74 c7 7d e5 49 73 ac
0060: a4 18 47 88 f3 76 0e a2 b8 05 17 c8 b6 34 3d 92
0070: 00 00 00 01 00 00 00 0c 74 65 73 74 50 61 79 6c
0080: 6f 61 64 30");
    assert_eq!(v.len(), 132);
    let m = msg(
        MessageType::OutputStreamData,
        0,
        2,
        PayloadType::Output,
        b"testPayload0",
    );
    assert_vector(&m, &v);
}

#[test]
fn tv6_size_message() {
    let v = hex("
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 00
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: e1 53 7a d4 74 9d 88 db 6f 6d 97 ed 16 e4 43 de
0060: e6 ba 30 c4 3a fa 2c 48 75 bb 14 32 f0 7d 8b 3a
0070: 00 00 00 03 00 00 00 17 7b 22 63 6f 6c 73 22 3a
0080: 33 30 30 2c 22 72 6f 77 73 22 3a 31 30 30 7d");
    assert_eq!(v.len(), 143);
    let m = msg(
        MessageType::InputStreamData,
        3,
        0,
        PayloadType::Size,
        br#"{"cols":300,"rows":100}"#,
    );
    assert_vector(&m, &v);
}

#[test]
fn message_id_halves_are_swapped_on_the_wire() {
    let id = Uuid::parse_str(ID).unwrap();
    assert_eq!(
        uuid_to_wire(&id).to_vec(),
        hex("a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e")
    );
    assert_eq!(uuid_from_wire(&uuid_to_wire(&id)), id);
}

// The small integer vectors of §15: our fields are written with BufMut's big-endian puts and read
// with be_u32/be_u64; these pin the same byte layouts the reference tests assert.
#[test]
fn small_integer_vectors() {
    let mut b = BytesMut::new();
    b.put_i64(5747283);
    assert_eq!(b.as_ref(), hex("00 00 00 00 00 57 b2 53"));

    let mut ten = vec![0u8; 10];
    ten[1..9].copy_from_slice(&92837273i64.to_be_bytes());
    assert_eq!(ten, hex("00 00 00 00 00 05 88 95 99 00"));

    assert_eq!(50i64.to_be_bytes().to_vec(), hex("00 00 00 00 00 00 00 32"));

    let mut five = vec![0u8; 5];
    five[..4].copy_from_slice(&324u32.to_be_bytes());
    assert_eq!(five, hex("00 00 01 44 00"));

    let mut eight = vec![0u8; 8];
    eight[1..5].copy_from_slice(&520392u32.to_be_bytes());
    assert_eq!(eight, hex("00 00 07 f0 c8 00 00 00"));

    assert_eq!(be_u64(&hex("00 00 00 00 00 5a 05 66 00"), 0), 5899622);

    let mut nine = vec![0u8; 9];
    nine[1..9].copy_from_slice(&4294967296i64.to_be_bytes());
    assert_eq!(&nine[1..9], hex("00 00 00 01 00 00 00 00").as_slice());
    assert_eq!(be_u64(&nine, 1), 4294967296);

    assert_eq!(
        be_u64(&hex("00 00 00 00 00 00 01 00 01 00 00 00"), 1),
        65537
    );
    assert_eq!(be_u32(&hex("00 00 00 00 ff 00"), 1), 255);
    assert_eq!(be_u32(&hex("00 00 00 01 00 00"), 2), 65536);
    assert_eq!(trim_nuls(&hex("72 77 00")), b"rw");
}

#[test]
fn message_type_accepts_nul_and_space_padding() {
    let mut v = hex(TV1);
    for b in &mut v[21..36] {
        *b = 0;
    }
    let d = AgentMessage::decode(Bytes::from(v)).unwrap();
    assert_eq!(d.message_type, MessageType::InputStreamData);
}

#[test]
fn payload_comes_from_header_length_not_payload_length() {
    let mut v = hex(TV1);
    v[116..120].copy_from_slice(&100u32.to_be_bytes()); // lie about the length
    let d = AgentMessage::decode(Bytes::from(v)).unwrap();
    assert_eq!(d.payload.as_ref(), b"payload");
    // The digest still matches the real payload, so the message is valid (§2.3).
    d.validate().unwrap();
}

/// A change to a valid frame.
type Edit = fn(&mut Vec<u8>);

#[test]
fn validation_rules() {
    let good = hex(TV1);
    let broken = |edit: Edit| {
        let mut v = good.clone();
        edit(&mut v);
        AgentMessage::decode(Bytes::from(v)).unwrap().validate()
    };
    let cases: [(Edit, ValidationError); 4] = [
        (|v| v[126] ^= 1, ValidationError::DigestMismatch),
        (|v| v[40..48].fill(0), ValidationError::ZeroCreatedDate),
        (|v| v[4..36].fill(b' '), ValidationError::EmptyMessageType),
        (|v| v[0..4].fill(0), ValidationError::ZeroHeaderLength),
    ];
    for (edit, want) in cases {
        assert_eq!(broken(edit), Err(want));
    }
}

#[test]
fn publication_messages_with_odd_headers_are_accepted() {
    let mut m = msg(
        MessageType::PausePublication,
        0,
        0,
        PayloadType::Undefined,
        b"x",
    );
    m.created_date = 0;
    let mut v = m.encode().to_vec();
    v[0..4].fill(0); // HeaderLength 0
    v[80..112].fill(0); // bogus digest
    let d = AgentMessage::decode(Bytes::from(v)).unwrap();
    assert_eq!(d.message_type, MessageType::PausePublication);
    d.validate().unwrap();
}

#[test]
fn short_or_overlong_header_length_is_an_error() {
    assert_eq!(
        AgentMessage::decode(Bytes::from_static(&[0; 119])),
        Err(DecodeError::TooShort(119))
    );
    let mut v = hex(TV1);
    v[0..4].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        AgentMessage::decode(Bytes::from(v)),
        Err(DecodeError::BadHeaderLength { .. })
    ));
}

#[test]
fn empty_payload_round_trips_as_agent_reads_it() {
    // A 120-byte message (what a peer could send with no payload) decodes to an empty payload
    // with PayloadLength 0, which skips the digest check (§2.3, §2.7).
    let m = msg(MessageType::Acknowledge, 0, 3, PayloadType::Undefined, b"");
    let d = AgentMessage::decode(m.encode()).unwrap();
    assert!(d.payload.is_empty());
    d.validate().unwrap();
}

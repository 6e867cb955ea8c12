//! The smux v1 frame: an 8-byte header and, for PSH only, data (PROTOCOL.md §9.4.3).
//!
//! ```text
//! ver u8 (=1) | cmd u8 | length u16 LE | stream id u32 LE | length bytes of data
//! ```
//!
//! Unlike the rest of the data channel, the integers are **little-endian** (xtaci `frame.go`).
//! Validation follows upstream xtaci's `recvLoop` (≥ v1.5.56): a wrong version, an unknown command,
//! UPD in protocol v1, or a SYN/FIN/NOP that declares data are protocol errors detected as soon as the
//! header is complete. The versions the agent and plugin vendor (v1.5.15/16) skip those checks and
//! would misparse such input; neither ever sends it, so rejecting it loses nothing and avoids
//! silently desynchronising the stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::SmuxError;

/// The only protocol version we speak (`smux.DefaultConfig().Version`).
pub const VERSION: u8 = 1;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;
/// Most data one frame can carry: the length field is a `u16`.
pub const MAX_DATA_LEN: usize = u16::MAX as usize;

/// A frame's command byte. UPD (4) is deliberately absent: it exists only in protocol version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Opens a stream; the id is chosen by the opener (odd for clients, even for servers).
    Syn = 0,
    /// Half-closes a stream: the sender will send no more data on it (an EOF mark).
    Fin = 1,
    /// Carries stream data.
    Psh = 2,
    /// Keep-alive; always stream id 0, ignored by the receiver apart from proving liveness.
    Nop = 3,
}

impl Cmd {
    /// Parses a command byte; `None` for anything protocol v1 does not define.
    pub fn from_byte(byte: u8) -> Option<Cmd> {
        match byte {
            0 => Some(Cmd::Syn),
            1 => Some(Cmd::Fin),
            2 => Some(Cmd::Psh),
            3 => Some(Cmd::Nop),
            _ => None,
        }
    }

    /// The byte written on the wire.
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Cmd {
    type Error = SmuxError;

    fn try_from(byte: u8) -> Result<Self, Self::Error> {
        Cmd::from_byte(byte).ok_or(SmuxError::UnknownCommand(byte))
    }
}

/// One smux frame as it travels on the wire.
///
/// `data` is a [`Bytes`] so decoded PSH payloads can be handed to streams without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame does.
    pub cmd: Cmd,
    /// The stream it belongs to (0 for NOP). Raw `u32` because NOP's 0 names no stream.
    pub stream_id: u32,
    /// The data; non-empty only for PSH.
    pub data: Bytes,
}

impl Frame {
    /// A SYN opening `stream_id`.
    pub fn syn(stream_id: u32) -> Frame {
        Frame {
            cmd: Cmd::Syn,
            stream_id,
            data: Bytes::new(),
        }
    }

    /// A FIN ending our direction of `stream_id`.
    pub fn fin(stream_id: u32) -> Frame {
        Frame {
            cmd: Cmd::Fin,
            stream_id,
            data: Bytes::new(),
        }
    }

    /// A PSH carrying `data` on `stream_id`.
    pub fn psh(stream_id: u32, data: Bytes) -> Frame {
        Frame {
            cmd: Cmd::Psh,
            stream_id,
            data,
        }
    }

    /// The keep-alive NOP; xtaci always sends it on stream 0.
    pub fn nop() -> Frame {
        Frame {
            cmd: Cmd::Nop,
            stream_id: 0,
            data: Bytes::new(),
        }
    }

    /// Bytes this frame occupies on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// Appends the wire form to `dst`.
    ///
    /// Fails (writing nothing) for frames our own decoder — and upstream xtaci — would reject: data
    /// longer than 65535 bytes, or data on anything but PSH.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), SmuxError> {
        let len = self.data.len();
        if self.cmd != Cmd::Psh && len != 0 {
            return Err(SmuxError::ControlFrameLength { cmd: self.cmd, len });
        }
        let len = u16::try_from(len).map_err(|_| SmuxError::FrameTooLarge(len))?;
        dst.reserve(HEADER_LEN + self.data.len());
        encode_header(self.cmd, self.stream_id, len, dst);
        dst.extend_from_slice(&self.data);
        Ok(())
    }
}

/// Writes just a header; the session appends PSH data itself straight from the caller's slice.
pub(crate) fn encode_header(cmd: Cmd, stream_id: u32, len: u16, dst: &mut BytesMut) {
    dst.put_u8(VERSION);
    dst.put_u8(cmd.as_byte());
    dst.put_u16_le(len);
    dst.put_u32_le(stream_id);
}

/// Reassembles frames from a byte stream delivered in arbitrary fragments (data-channel Output
/// payloads split frames anywhere, §9.4.3).
///
/// Push bytes with [`push`](Self::push), then call [`next_frame`](Self::next_frame) until it returns
/// `Ok(None)`. Errors are sticky: the bad header is not consumed, so every later call returns the same
/// error, just as xtaci stops reading after a protocol error.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as part of a frame (a partial frame, or frames not
    /// yet taken). A value ≥ [`HEADER_LEN`] means a complete header is waiting.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the protocol error in the next
    /// header (reported as soon as the header is complete, before its data arrives).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SmuxError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        if header[0] != VERSION {
            return Err(SmuxError::BadVersion(header[0]));
        }
        let cmd = Cmd::try_from(header[1])?;
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let stream_id = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if cmd != Cmd::Psh && len != 0 {
            return Err(SmuxError::ControlFrameLength { cmd, len });
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        // Copied out rather than split off: a view would keep the decoder's whole buffer (up to
        // tens of KiB, shared by every stream's frames) alive for as long as the slowest reader
        // holds its chunk, so memory would grow past what the receive buffer counts. A copy
        // costs a memcpy and leaves the buffer free for reuse.
        let data = Bytes::copy_from_slice(&self.buf[..len]);
        self.buf.advance(len);
        Ok(Some(Frame {
            cmd,
            stream_id,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Frames copied from `official-client-port-smux.jsonl` (Output payloads, offset 120): the
    /// official plugin's SYN/PSH/FIN for stream 3 and the upper-casing agent stand-in's answer.
    const CLIENT_SYN_3: &str = "0100000003000000";
    const CLIENT_PSH_3: &str = "01020e000300000068656c6c6f20776f726c6420300a";
    const CLIENT_FIN_3: &str = "0101000003000000";
    const AGENT_PSH_3: &str = "01020e000300000048454c4c4f20574f524c4420300a";
    const CLIENT_PSH_5: &str = "01020e000500000068656c6c6f20776f726c6420310a";
    /// `real-agent-port-smux.jsonl`, client message seq 1: SYN and PSH in one Output payload.
    const REAL_SYN_PSH_3: &str = "010000000300000001020e000300000068656c6c6f20776f726c6420300a";

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).unwrap();
        buf.to_vec()
    }

    fn decode_all(decoder: &mut FrameDecoder) -> Vec<Frame> {
        std::iter::from_fn(|| decoder.next_frame().unwrap()).collect()
    }

    fn trace_frames() -> Vec<(&'static str, Frame)> {
        vec![
            (CLIENT_SYN_3, Frame::syn(3)),
            (
                CLIENT_PSH_3,
                Frame::psh(3, Bytes::from_static(b"hello world 0\n")),
            ),
            (
                AGENT_PSH_3,
                Frame::psh(3, Bytes::from_static(b"HELLO WORLD 0\n")),
            ),
            (CLIENT_FIN_3, Frame::fin(3)),
            (
                CLIENT_PSH_5,
                Frame::psh(5, Bytes::from_static(b"hello world 1\n")),
            ),
        ]
    }

    #[test]
    fn encodes_frames_byte_exact_as_recorded() {
        for (wire, frame) in trace_frames() {
            assert_eq!(hex::encode(encode(&frame)), wire, "{frame:?}");
            assert_eq!(frame.encoded_len(), wire.len() / 2);
        }
        // Keep-alive as xtaci writes it: version 1, cmd 3, length 0, stream 0.
        assert_eq!(hex::encode(encode(&Frame::nop())), "0103000000000000");
    }

    #[test]
    fn decodes_recorded_frames() {
        for (wire, frame) in trace_frames() {
            let mut decoder = FrameDecoder::new();
            decoder.push(&hex::decode(wire).unwrap());
            assert_eq!(decode_all(&mut decoder), vec![frame]);
            assert_eq!(decoder.pending_len(), 0);
        }
    }

    #[test]
    fn decodes_two_frames_sharing_one_payload() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&hex::decode(REAL_SYN_PSH_3).unwrap());
        let expected = vec![
            Frame::syn(3),
            Frame::psh(3, Bytes::from_static(b"hello world 0\n")),
        ];
        assert_eq!(decode_all(&mut decoder), expected);
    }

    #[test]
    fn length_and_stream_id_are_little_endian() {
        let frame = Frame::psh(0x0403_0201, Bytes::from(vec![7u8; 0x0102]));
        let wire = encode(&frame);
        assert_eq!(
            &wire[..HEADER_LEN],
            &[1, 2, 0x02, 0x01, 0x01, 0x02, 0x03, 0x04]
        );
        let mut decoder = FrameDecoder::new();
        decoder.push(&wire);
        assert_eq!(decode_all(&mut decoder), vec![frame]);
    }

    #[test]
    fn decodes_identically_at_every_split_point() {
        let wire: Vec<u8> = trace_frames()
            .iter()
            .flat_map(|(w, _)| hex::decode(w).unwrap())
            .collect();
        let expected: Vec<Frame> = trace_frames().into_iter().map(|(_, f)| f).collect();
        for cut in 0..=wire.len() {
            let mut decoder = FrameDecoder::new();
            decoder.push(&wire[..cut]);
            let mut frames = decode_all(&mut decoder);
            decoder.push(&wire[cut..]);
            frames.extend(decode_all(&mut decoder));
            assert_eq!(frames, expected, "split at {cut}");
            assert_eq!(decoder.pending_len(), 0);
        }
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            frames.extend(decode_all(&mut decoder));
        }
        assert_eq!(frames, expected, "one byte at a time");
    }

    #[test]
    fn rejects_bad_headers_as_soon_as_the_header_is_complete() {
        let cases: [(&str, SmuxError); 5] = [
            ("0200000003000000", SmuxError::BadVersion(2)),
            ("0104000003000000", SmuxError::UnknownCommand(4)), // UPD is v2-only
            ("01ff000003000000", SmuxError::UnknownCommand(0xff)),
            (
                "0100050003000000",
                SmuxError::ControlFrameLength {
                    cmd: Cmd::Syn,
                    len: 5,
                },
            ),
            (
                "0103010000000000",
                SmuxError::ControlFrameLength {
                    cmd: Cmd::Nop,
                    len: 1,
                },
            ),
        ];
        for (wire, error) in cases {
            let wire = hex::decode(wire).unwrap();
            let mut decoder = FrameDecoder::new();
            decoder.push(&wire[..HEADER_LEN - 1]);
            assert_eq!(
                decoder.next_frame(),
                Ok(None),
                "incomplete header is not judged yet"
            );
            decoder.push(&wire[HEADER_LEN - 1..]);
            assert_eq!(decoder.next_frame(), Err(error.clone()));
            assert_eq!(decoder.next_frame(), Err(error), "errors are sticky");
        }
    }

    #[test]
    fn empty_psh_is_a_valid_frame() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&hex::decode("0102000009000000").unwrap());
        assert_eq!(decode_all(&mut decoder), vec![Frame::psh(9, Bytes::new())]);
    }

    #[test]
    fn refuses_to_encode_what_the_peer_would_reject() {
        let mut buf = BytesMut::new();
        let too_big = Frame::psh(3, Bytes::from(vec![0u8; MAX_DATA_LEN + 1]));
        assert_eq!(
            too_big.encode(&mut buf),
            Err(SmuxError::FrameTooLarge(MAX_DATA_LEN + 1))
        );
        let fin_with_data = Frame {
            data: Bytes::from_static(b"x"),
            ..Frame::fin(3)
        };
        let error = SmuxError::ControlFrameLength {
            cmd: Cmd::Fin,
            len: 1,
        };
        assert_eq!(fin_with_data.encode(&mut buf), Err(error));
        assert!(buf.is_empty());
        let biggest = Frame::psh(3, Bytes::from(vec![0u8; MAX_DATA_LEN]));
        assert_eq!(encode(&biggest)[2..4], [0xff, 0xff]);
    }

    #[test]
    fn cmd_bytes_round_trip() {
        for byte in 0..=u8::MAX {
            match Cmd::try_from(byte) {
                Ok(cmd) => assert_eq!(cmd.as_byte(), byte),
                Err(e) => assert!(byte > 3 && e == SmuxError::UnknownCommand(byte)),
            }
        }
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let control = (0u8..4, any::<u32>()).prop_filter_map("PSH handled below", |(c, sid)| {
            let cmd = Cmd::from_byte(c)?;
            (cmd != Cmd::Psh).then(|| Frame {
                cmd,
                stream_id: sid,
                data: Bytes::new(),
            })
        });
        let psh = (any::<u32>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(sid, data)| Frame::psh(sid, Bytes::from(data)));
        prop_oneof![control, psh]
    }

    proptest! {
        #[test]
        fn round_trips_through_arbitrary_fragmentation(
            frames in prop::collection::vec(arb_frame(), 0..20),
            cuts in prop::collection::vec(1usize..100, 0..50),
        ) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut wire).unwrap();
            }
            let mut decoder = FrameDecoder::new();
            let mut decoded = Vec::new();
            let mut rest = &wire[..];
            for cut in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
                let (now, later) = rest.split_at(cut.min(rest.len()));
                decoder.push(now);
                decoded.extend(decode_all(&mut decoder));
                rest = later;
            }
            prop_assert_eq!(decoded, frames);
            prop_assert_eq!(decoder.pending_len(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut decoder = FrameDecoder::new();
            decoder.push(&bytes);
            while let Ok(Some(_)) = decoder.next_frame() {}
        }
    }
}

//! The agent's `processStdoutData` (`agent/session/shell/shell.go`), byte for byte: every chunk
//! read from a PTY or a command's pipe goes through it before it is sent, with the bytes it held
//! back last time in front.
//!
//! It walks the bytes as Go's `bufio.Reader.ReadRune` decodes them. A `utf8.RuneError` within
//! the last 3 bytes (`len - i < utf8.UTFMax`) holds everything from there back for the next
//! chunk; when the pipe ends, what is held back is **dropped** (PROTOCOL.md §17.2). A RuneError
//! further in passes one byte and skips the rune's width: harmless for an invalid byte (width 1),
//! but a *valid* U+FFFD (`EF BF BD`, which `ReadRune` also reports as `RuneError`, width 3)
//! comes out as the lone byte `EF`. Both quirks are modelled, not fixed.

/// Go's `utf8.UTFMax`.
const UTF_MAX: usize = 4;

/// Go's `utf8.DecodeRune` on `b` (not empty): the width, and whether the rune compares equal to
/// `utf8.RuneError` (an invalid or incomplete sequence, width 1, or a valid U+FFFD, width 3).
fn decode(b: &[u8]) -> (usize, bool) {
    let width = match b[0] {
        0x00..=0x7F => return (1, false),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (1, true),
    };
    match b.get(..width).map(std::str::from_utf8) {
        Some(Ok(s)) => (width, s == "\u{FFFD}"),
        _ => (1, true),
    }
}

/// One `processStdoutData` call: `held` (the bytes held back last time) followed by `chunk`
/// become the bytes to send; `held` is left with what is held back now.
pub fn process_stdout_data(held: &mut Vec<u8>, chunk: &[u8]) -> Vec<u8> {
    let mut buf = std::mem::take(held);
    buf.extend_from_slice(chunk);
    let n = buf.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let (width, rune_error) = decode(&buf[i..]);
        if rune_error {
            if n - i < UTF_MAX {
                held.extend_from_slice(&buf[i..]);
                break;
            }
            out.push(buf[i]);
        } else {
            out.extend_from_slice(&buf[i..i + width]);
        }
        i += width;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::process_stdout_data as process;

    #[test]
    fn ascii_and_whole_runes_pass_at_once() {
        let mut held = Vec::new();
        assert_eq!(process(&mut held, "ab€".as_bytes()), "ab€".as_bytes());
        assert!(held.is_empty());
    }

    #[test]
    fn an_incomplete_rune_at_the_end_waits_for_the_next_chunk() {
        let euro = "€".as_bytes();
        let mut held = Vec::new();
        assert_eq!(process(&mut held, &[b'x', euro[0], euro[1]]), b"x");
        assert_eq!(held, &euro[..2]);
        assert_eq!(process(&mut held, &euro[2..]), euro);
        assert!(held.is_empty());
    }

    #[test]
    fn an_invalid_byte_near_the_end_holds_back_what_follows_it_too() {
        let mut held = Vec::new();
        // 0xC2 then ASCII: invalid at 3 bytes from the end, so "\xC2ab" is held.
        assert_eq!(process(&mut held, b"xyz\xC2ab"), b"xyz");
        assert_eq!(held, b"\xC2ab");
        // Four or more bytes after it: the invalid byte passes on its own.
        assert_eq!(process(&mut held, b"cd"), b"\xC2abcd");
        assert!(held.is_empty());
    }

    #[test]
    fn a_valid_replacement_character_inside_a_chunk_loses_two_bytes() {
        let mut held = Vec::new();
        assert_eq!(process(&mut held, b"a\xEF\xBF\xBDbcd"), b"a\xEFbcd");
    }

    #[test]
    fn random_binary_loses_at_most_its_last_three_bytes_besides_replacement_characters() {
        let mut x: u32 = 7;
        let data: Vec<u8> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut held = Vec::new();
        let mut out = Vec::new();
        for chunk in data.chunks(1024) {
            out.extend(process(&mut held, chunk));
        }
        assert!(held.len() <= 3);
        assert_eq!(out.len() + held.len(), data.len());
        assert_eq!(out, data[..out.len()]);
    }
}

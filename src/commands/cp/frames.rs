//! Downloads arrive in frames: each [`BLOCK`] of the file (the last one shorter), then a
//! per-run marker of printable ASCII between record separators.
//!
//! The agent does not pass a command's output through untouched: it turns every valid U+FFFD
//! (`EF BF BD`) into the single byte `EF` (PROTOCOL.md §17.2; `shell.go processStdoutData`),
//! which random binary data holds about once in 16 MiB. Nothing else it does changes a byte
//! that is followed by more output, so a frame that arrives at its full length arrived exact,
//! and one that is short says which block to fetch again another way (base64, which has no
//! such bytes). The whole file's SHA-256 is checked at the end all the same.

/// The bytes in each frame: also the alignment of striped parts, so every part starts on a
/// block (`dd skip=` counts in blocks).
pub const BLOCK: u64 = super::remote::PART_ALIGN;

/// A frame that arrived.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The block's index in the file.
    pub block: u64,
    /// Its bytes as they arrived.
    pub data: Vec<u8>,
}

/// Cuts a stream of frames apart at their markers.
#[derive(Debug)]
pub struct Frames {
    marker: Vec<u8>,
    /// The next frame's block.
    next: u64,
    /// The frame under way, with what may be the start of its marker at the end.
    buf: Vec<u8>,
}

impl Frames {
    /// Frames that start at block `first`, each ended by `marker`.
    pub fn new(marker: &str, first: u64) -> Frames {
        Frames {
            marker: marker.as_bytes().to_vec(),
            next: first,
            buf: Vec::new(),
        }
    }

    /// Takes bytes; returns the frames they completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        // The marker can only start where it could not be found before.
        let mut from = self.buf.len().saturating_sub(self.marker.len() - 1);
        self.buf.extend_from_slice(data);
        while let Some(at) = find(&self.buf[from..], &self.marker) {
            let end = from + at;
            let rest = self.buf.split_off(end + self.marker.len());
            self.buf.truncate(end);
            out.push(Frame {
                block: self.next,
                data: std::mem::replace(&mut self.buf, rest),
            });
            self.next += 1;
            from = 0;
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: &str = "\x1erssm-blk-0123456789abcdef\x1e";

    fn stream(frames: &[&[u8]]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| [f, M.as_bytes()].concat())
            .collect()
    }

    #[test]
    fn frames_come_apart_at_their_markers() {
        let s = stream(&[b"abc", b"", b"\x1e\x1erssm"]);
        let mut f = Frames::new(M, 7);
        let got = f.push(&s);
        assert_eq!(
            got,
            vec![
                Frame {
                    block: 7,
                    data: b"abc".to_vec()
                },
                Frame {
                    block: 8,
                    data: vec![]
                },
                Frame {
                    block: 9,
                    data: b"\x1e\x1erssm".to_vec()
                },
            ]
        );
        assert!(f.push(b"").is_empty());
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_gives_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(0usize..3000, 0..12),
        ) {
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let s = stream(&refs);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
            cuts.sort_unstable();
            let mut f = Frames::new(M, 0);
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([s.len()]) {
                got.extend(f.push(&s[at..c]));
                at = c;
            }
            prop_assert_eq!(got.len(), frames.len());
            for (i, (g, want)) in got.iter().zip(&frames).enumerate() {
                prop_assert_eq!(g.block, i as u64);
                prop_assert_eq!(&g.data, want);
            }
        }
    }
}

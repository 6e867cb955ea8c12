//! Byte-exact output from an agent that drops the end of a stream.
//!
//! The agent holds back up to 3 trailing bytes of every read that could begin an incomplete UTF-8
//! sequence and drops them when the pipe ends (PROTOCOL.md §17.2), so a command whose output
//! ends in such bytes (any binary file, half the time) loses them. `rssm exec` therefore has
//! the remote shell write a trailer of plain ASCII after the command, on stdout and on stderr:
//! ASCII is never held back, so everything before the trailer arrives whole, and the trailer
//! is stripped here. A stream that ends without its trailer was cut short (the agent stopped
//! reading it), which is reported instead of passing for the whole output.
//!
//! Without `separateOutputStream` the agent writes both streams to one file, so stdout ends with
//! the trailer twice (stdout's, then stderr's): [`Unwrapper::finish`] accepts either.

/// A per-run marker of printable ASCII between two record separators: it cannot occur in the
/// command's own output by chance, and shows nothing if it ever reaches a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer(String);

impl Trailer {
    /// A trailer with 16 random hex digits.
    pub fn random() -> Trailer {
        use rand_core::RngCore;
        let n = rand_core::OsRng.next_u64();
        Trailer(format!("\x1erssm-end-{n:016x}\x1e"))
    }

    /// The trailer's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// With its trailer (and stderr's, when the agent merged the streams).
    Whole {
        /// Both trailers were there: the agent wrote stdout and stderr to one file.
        merged: bool,
    },
    /// Without it: the output was cut short.
    Cut,
}

/// Passes a stream through, holding back only what could be the start of its trailer.
#[derive(Debug)]
pub struct Unwrapper {
    /// The trailer once, or twice for stdout (see the module docs).
    pattern: Vec<u8>,
    trailer_len: usize,
    /// Bytes at the end of what arrived that are a prefix of `pattern`: not output yet.
    pending: Vec<u8>,
}

impl Unwrapper {
    /// For stdout: accepts one trailer or two (merged streams).
    pub fn stdout(trailer: &Trailer) -> Unwrapper {
        Unwrapper::new(trailer, 2)
    }

    /// For stderr: one trailer.
    pub fn stderr(trailer: &Trailer) -> Unwrapper {
        Unwrapper::new(trailer, 1)
    }

    fn new(trailer: &Trailer, copies: usize) -> Unwrapper {
        Unwrapper {
            pattern: trailer.as_str().repeat(copies).into_bytes(),
            trailer_len: trailer.as_str().len(),
            pending: Vec::new(),
        }
    }

    /// Takes what arrived; returns what may be written now (everything but a possible start of
    /// the trailer at the very end).
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let keep = longest_suffix_prefix(&self.pending, &self.pattern);
        let ready = self.pending.len() - keep;
        self.pending.drain(..ready).collect()
    }

    /// At the end of the stream: what is still to be written, and how the stream ended. A cut
    /// stream gives back everything it held (it was output, not trailer).
    pub fn finish(&mut self) -> (Vec<u8>, Ending) {
        let held = std::mem::take(&mut self.pending);
        let t = self.trailer_len;
        if held.len() == 2 * t && held == self.pattern {
            (Vec::new(), Ending::Whole { merged: true })
        } else if held.len() == t && held == self.pattern[..t] {
            (Vec::new(), Ending::Whole { merged: false })
        } else {
            (held, Ending::Cut)
        }
    }
}

/// The length of the longest suffix of `data` that is a prefix of `pattern`.
fn longest_suffix_prefix(data: &[u8], pattern: &[u8]) -> usize {
    let max = data.len().min(pattern.len());
    (1..=max)
        .rev()
        .find(|&k| data[data.len() - k..] == pattern[..k])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trailer() -> Trailer {
        Trailer("\x1erssm-end-0123456789abcdef\x1e".into())
    }

    fn run(u: &mut Unwrapper, chunks: &[&[u8]]) -> (Vec<u8>, Ending) {
        let mut out = Vec::new();
        for c in chunks {
            out.extend(u.push(c));
        }
        let (rest, ending) = u.finish();
        out.extend(rest);
        (out, ending)
    }

    #[test]
    fn strips_the_trailer_and_passes_the_rest_at_once() {
        let t = trailer();
        let mut u = Unwrapper::stderr(&t);
        assert_eq!(u.push(b"hello\n"), b"hello\n", "nothing held back");
        let (out, ending) = run(&mut u, &[t.as_str().as_bytes()]);
        assert_eq!((out, ending), (vec![], Ending::Whole { merged: false }));
    }

    #[test]
    fn a_trailer_split_over_messages_is_still_found() {
        let t = trailer();
        let mut u = Unwrapper::stdout(&t);
        let mut data = b"abc\x1e".to_vec();
        data.extend_from_slice(t.as_str().as_bytes());
        let (a, b) = data.split_at(6);
        let (out, ending) = run(&mut u, &[a, b]);
        assert_eq!(out, b"abc\x1e");
        assert_eq!(ending, Ending::Whole { merged: false });
    }

    #[test]
    fn merged_streams_end_with_both_trailers() {
        let t = trailer();
        let mut u = Unwrapper::stdout(&t);
        let both = format!("out\nerr\n{0}{0}", t.as_str());
        let (out, ending) = run(&mut u, &[both.as_bytes()]);
        assert_eq!(
            (out, ending),
            (b"out\nerr\n".to_vec(), Ending::Whole { merged: true })
        );
    }

    #[test]
    fn a_stream_without_its_trailer_was_cut_and_keeps_every_byte() {
        let t = trailer();
        let mut u = Unwrapper::stdout(&t);
        let partial = &t.as_str().as_bytes()[..5];
        let (out, ending) = run(&mut u, &[b"data", partial]);
        assert_eq!(out, [&b"data"[..], partial].concat());
        assert_eq!(ending, Ending::Cut);
        let mut empty = Unwrapper::stderr(&t);
        assert_eq!(run(&mut empty, &[]), (vec![], Ending::Cut));
    }

    proptest! {
        #[test]
        fn any_output_in_any_pieces_comes_back_exactly(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(0usize..3000, 0..8),
            merged in any::<bool>(),
        ) {
            let t = trailer();
            let mut whole = data.clone();
            whole.extend_from_slice(t.as_str().as_bytes());
            if merged {
                whole.extend_from_slice(t.as_str().as_bytes());
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(whole.len())).collect();
            cuts.sort();
            let mut u = Unwrapper::stdout(&t);
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([whole.len()]) {
                out.extend(u.push(&whole[at..c]));
                at = c;
            }
            let (rest, ending) = u.finish();
            out.extend(rest);
            prop_assert_eq!(out, data);
            prop_assert_eq!(ending, Ending::Whole { merged });
        }
    }
}

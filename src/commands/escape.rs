//! ssh-style escape sequences for `rssm shell`: the escape character (default `~`) right after a
//! newline starts a command for rssm instead of the remote: `~.` ends the session, `~?` lists the
//! escapes, `~~` sends one `~`. Anything else after the escape character is sent as typed.

/// What the keyboard bytes turned into, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escaped {
    /// Bytes for the remote.
    Data(Vec<u8>),
    /// `~.`: end the session.
    Terminate,
    /// `~?`: show the escapes.
    Help,
}

/// The help text for `~?` (CR LF: the terminal is in raw mode).
pub fn help(escape: u8) -> String {
    let e = escape as char;
    format!(
        "Supported escape sequences:\r\n {e}.   - terminate the session\r\n {e}?   - this message\r\n {e}{e}   - send the escape character\r\n(Escapes are only recognized immediately after a newline.)\r\n"
    )
}

/// The escape state machine over the keyboard byte stream.
#[derive(Debug)]
pub struct EscapeFilter {
    escape: u8,
    /// Whether the last byte typed ended a line (or nothing was typed yet).
    at_line_start: bool,
    /// An escape character at line start is waiting for the next byte.
    pending: bool,
}

impl EscapeFilter {
    /// A filter for `escape` (usually `b'~'`).
    pub fn new(escape: u8) -> Self {
        EscapeFilter {
            escape,
            at_line_start: true,
            pending: false,
        }
    }

    /// Splits typed bytes into data and escape commands.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Escaped> {
        let mut out = Vec::new();
        let mut data = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'.' => {
                        flush(&mut out, &mut data);
                        out.push(Escaped::Terminate);
                        return out;
                    }
                    b'?' => {
                        flush(&mut out, &mut data);
                        out.push(Escaped::Help);
                        // Still at the start of a line: another escape may follow.
                        self.at_line_start = true;
                        continue;
                    }
                    b if b == self.escape => {
                        data.push(b);
                        self.at_line_start = false;
                        continue;
                    }
                    _ => data.push(self.escape),
                }
            } else if self.at_line_start && b == self.escape {
                self.pending = true;
                continue;
            }
            data.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        flush(&mut out, &mut data);
        out
    }
}

fn flush(out: &mut Vec<Escaped>, data: &mut Vec<u8>) {
    if !data.is_empty() {
        out.push(Escaped::Data(std::mem::take(data)));
    }
}

/// The `--escape` option: a character, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscapeChar(pub Option<u8>);

impl std::str::FromStr for EscapeChar {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_escape(s).map(EscapeChar)
    }
}

/// Parses `--escape`: one character, `^X`, or `none`.
pub fn parse_escape(s: &str) -> Result<Option<u8>, String> {
    match s {
        "none" => Ok(None),
        _ if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
        _ if s.len() == 2 && s.starts_with('^') => {
            // ssh's `^X` notation for control characters.
            let c = s.as_bytes()[1].to_ascii_uppercase();
            if (b'@'..=b'_').contains(&c) {
                Ok(Some(c - b'@'))
            } else {
                Err(format!("invalid escape character {s:?}"))
            }
        }
        _ => Err(format!(
            "invalid escape character {s:?}: use one character, ^X, or none"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &[u8]) -> Escaped {
        Escaped::Data(s.to_vec())
    }

    #[test]
    fn tilde_dot_after_a_newline_terminates() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"ls\r~."), vec![data(b"ls\r"), Escaped::Terminate]);
        // At the very start of the session too.
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"~."), vec![Escaped::Terminate]);
    }

    #[test]
    fn tilde_inside_a_line_is_plain_data() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"cd ~/x.~."), vec![data(b"cd ~/x.~.")]);
    }

    #[test]
    fn split_across_reads_still_works() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"echo\r"), vec![data(b"echo\r")]);
        assert_eq!(f.feed(b"~"), vec![]);
        assert_eq!(f.feed(b"."), vec![Escaped::Terminate]);
    }

    #[test]
    fn double_tilde_sends_one_and_help_lists_escapes() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"~~a"), vec![data(b"~a")]);
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"~?~."), vec![Escaped::Help, Escaped::Terminate]);
        assert!(help(b'~').contains("~."));
    }

    #[test]
    fn other_characters_after_the_escape_go_through() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"~x\r"), vec![data(b"~x\r")]);
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.feed(b"\n~\x03"), vec![data(b"\n~\x03")]);
    }

    #[test]
    fn escape_option_parsing() {
        assert_eq!(parse_escape("none"), Ok(None));
        assert_eq!(parse_escape("~"), Ok(Some(b'~')));
        assert_eq!(parse_escape("^]"), Ok(Some(0x1d)));
        assert!(parse_escape("ab").is_err());
    }
}

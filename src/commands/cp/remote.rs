//! The POSIX `sh` scripts `rssm cp` runs on the target, and what they report back.
//!
//! Every script runs as `sh -c SCRIPT rssm-cp TRAILER ARGS…`. Its body runs in a subshell, so an
//! `exit` anywhere still reaches the end: the trailer goes out on stdout and stderr (the agent's
//! UTF-8 hold-back cannot eat the last bytes before it, see `exec::trailer`), and the script
//! exits with the body's status. Reports are markers, `RS rssm-cp WORDS… RS` (record separator,
//! 0x1e) on stderr, which in a PTY session is the terminal: they cannot be mistaken for file data
//! or a tool's message, and [`Reports`] picks them out of whatever else is there.
//!
//! Only POSIX tools and options are used, plus `head -c`, `base64 -d` and `sha256sum` (or
//! `shasum -a 256`), which GNU coreutils, busybox and the BSDs all have. A missing one is
//! reported by name before anything is written.

use crate::commands::shell_quote;

/// Functions every script has: `say WORDS…` reports a marker, `need TOOL…` stops unless each
/// tool is on PATH (`needsum` for a SHA-256 tool), `sum` prints the SHA-256 of stdin (hex),
/// `mode F` its permission bits in octal (GNU/busybox `stat -c`, BSD `stat -f`; `-` when
/// neither works), `spill F` removes a file that could not be written, saying `full` when its
/// file system has no room left (a tool's message need not say so).
const LIB: &str = r#"say() { printf '\036rssm-cp %s\036' "$*" >&2; };
need() { for t; do command -v "$t" >/dev/null 2>&1 || { say missing "$t"; exit 3; }; done; };
needsum() { command -v sha256sum >/dev/null 2>&1 || command -v shasum >/dev/null 2>&1 || { say missing sha256sum; exit 3; }; };
sum() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -c1-64; };
mode() { stat -c %a "$1" 2>/dev/null || stat -f %Lp "$1" 2>/dev/null || echo -; };
spill() { a=$(df -P "$(dirname "$1")" 2>/dev/null | tail -n 1 | (read f s u a r; echo "$a")); rm -f "$1"; [ "$a" = 0 ] && say full "$(dirname "$1")"; exit 6; };
"#;

/// Where an upload goes, as scp decides it: into DEST when DEST is a directory (under the
/// source's NAME), else DEST itself, whose directory must exist. Sets `t` (the final path) and
/// `tmp` (a hidden temporary name beside it, from TOKEN) and creates `tmp` empty, readable by the
/// owner only until it is complete. Arguments: DEST NAME KIND(f|t) TOKEN.
const PLACE: &str = r#"place() { d=${1:-.}; if [ -d "$d" ]; then t=${d%/}/$2; else case $d in */) say nodir "$d"; exit 4;; esac; t=$d; fi;
[ "$3" = f ] && [ -d "$t" ] && { say isdir "$t"; exit 5; }; [ -e "$t" ] && ! [ -f "$t" ] && ! [ -d "$t" ] && { say special "$t"; exit 5; };
p=$(dirname "$t"); [ -d "$p" ] || { say nodir "$p"; exit 4; };
tmp=$p/.rssm-cp-$4.part; (umask 077; : > "$tmp") || { say denied "$p"; exit 6; }; };
"#;

/// Checks the complete temporary file and moves it into place: size and SHA-256, then mode and
/// rename (a file), or unpacking into a fresh directory that is then renamed (a tree; over an
/// existing directory it is unpacked in place, merging). Removes what it made on any failure.
/// Arguments: SIZE SHA256 MODE KIND NAME, with `t` and `tmp` set.
const FINISH: &str = r#"finish() { n=$(wc -c < "$tmp"); n=$((n+0)); h=$(sum < "$tmp");
if [ "$n" != "$1" ] || [ "$h" != "$2" ]; then rm -f "$tmp"; say mismatch "$n" "$h"; exit 7; fi;
if [ "$4" = f ]; then chmod "$3" "$tmp" && mv -f "$tmp" "$t" || { rm -f "$tmp"; exit 6; };
elif [ -d "$t" ]; then (cd "$(dirname "$t")" && tar xof "$tmp"); r=$?; rm -f "$tmp"; [ $r = 0 ] || exit 6;
else x=$tmp.d; mkdir "$x" && (cd "$x" && tar xof "$tmp") && mv "$x/$5" "$t"; r=$?; rm -rf "$x" "$tmp"; [ $r = 0 ] || exit 6; fi;
say done; };
"#;

/// What a script is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// PATH RECURSIVE(r|-): what PATH is. Reports `file MODE SIZE SHA256` or `dir MODE`.
    Probe,
    /// PATH FIRST COUNT MARK: COUNT blocks of the file from block FIRST, each followed by
    /// MARK, on stdout (see `frames`).
    Blocks,
    /// PATH MARK BLOCK…: those blocks again, each as base64 followed by MARK.
    Repair,
    /// DIR TOKEN: a tar archive of DIR (its last name as the top entry) in a temporary file;
    /// reports `tmp PATH`, then `file MODE SIZE SHA256` of the archive.
    Pack,
    /// DEST NAME KIND TOKEN: makes the empty temporary file; reports `path FINAL`, `tmp TMP`.
    Prepare,
    /// (PTY) DEST NAME KIND TOKEN ENCODED SIZE SHA256 MODE: the whole upload in one session,
    /// from [`Script::Prepare`] to [`Script::Finish`]. Reports `tmp TMP`, `ready`, then `done`.
    Receive,
    /// (PTY) TMP OFFSET ENCODED: one part of a striped upload, written at OFFSET (a multiple of
    /// [`PART_ALIGN`]). Reports `ready`, then `part`.
    ReceivePart,
    /// FINAL TMP SIZE SHA256 MODE KIND NAME: checks and moves a striped upload into place.
    Finish,
    /// TMP: removes a failed upload's temporary file.
    Remove,
}

/// Parts of a striped upload start at multiples of this (the block size `dd` seeks by).
pub const PART_ALIGN: u64 = 64 * 1024;

impl Script {
    /// The script's text.
    fn body(self) -> String {
        match self {
            Script::Probe => format!(
                "{LIB}main() {{ f=$1; [ -e \"$f\" ] || [ -L \"$f\" ] || {{ say nofile \"$f\"; exit 4; }};
if [ -d \"$f\" ]; then [ \"$2\" = r ] || {{ say isdir \"$f\"; exit 5; }}; need tar dd cut dirname basename; needsum; [ -r \"$f\" ] && [ -x \"$f\" ] || {{ say denied \"$f\"; exit 6; }}; say dir \"$(mode \"$f\")\"; exit 0; fi;
[ -f \"$f\" ] || {{ say special \"$f\"; exit 5; }}; [ -r \"$f\" ] || {{ say denied \"$f\"; exit 6; }};
need dd cut; needsum; s=$(wc -c < \"$f\") || exit 6; h=$(sum < \"$f\") || exit 6; say file \"$(mode \"$f\")\" $((s+0)) \"$h\"; }};"
            ),
            Script::Blocks => format!(
                "main() {{ i=$2; e=$(($2+$3)); while [ $i -lt $e ]; do dd if=\"$1\" bs={PART_ALIGN} skip=$i count=1 2>/dev/null || exit 6; printf %s \"$4\"; i=$((i+1)); done; }};"
            ),
            Script::Repair => format!(
                "{LIB}main() {{ need base64; f=$1; m=$2; shift 2; for i; do dd if=\"$f\" bs={PART_ALIGN} skip=$i count=1 2>/dev/null | base64 || exit 6; printf %s \"$m\"; done; }};"
            ),
            Script::Pack => format!(
                "{LIB}main() {{ need tar dd cut dirname basename; needsum; p=$(dirname \"$1\"); b=$(basename \"$1\"); t=${{TMPDIR:-/tmp}}/rssm-cp-$2.tar;
(umask 077; tar cf \"$t\" -C \"$p\" \"$b\") || {{ rm -f \"$t\"; exit 6; }}; say tmp \"$t\"; s=$(wc -c < \"$t\"); h=$(sum < \"$t\"); say file 600 $((s+0)) \"$h\"; }};"
            ),
            Script::Prepare => format!(
                "{LIB}{PLACE}main() {{ need dirname cut; needsum; [ \"$3\" = t ] && need tar; place \"$1\" \"$2\" \"$3\" \"$4\"; say path \"$t\"; say tmp \"$tmp\"; }};"
            ),
            Script::Receive => format!(
                "{LIB}{PLACE}{FINISH}main() {{ need stty head base64 dirname cut; needsum; [ \"$3\" = t ] && need tar; place \"$1\" \"$2\" \"$3\" \"$4\";
say tmp \"$tmp\"; stty raw -echo || exit 3; say ready; head -c \"$5\" | base64 -d > \"$tmp\" || spill \"$tmp\";
finish \"$6\" \"$7\" \"$8\" \"$3\" \"$2\"; }};"
            ),
            Script::ReceivePart => format!(
                "{LIB}main() {{ need stty head base64 dd; stty raw -echo || exit 3; say ready;
head -c \"$3\" | base64 -d | dd of=\"$1\" bs={PART_ALIGN} seek=$(($2/{PART_ALIGN})) conv=notrunc 2>/dev/null || spill \"$1\"; say part; }};"
            ),
            Script::Finish => format!(
                "{LIB}{FINISH}main() {{ t=$1; tmp=$2; finish \"$3\" \"$4\" \"$5\" \"$6\" \"$7\"; }};"
            ),
            Script::Remove => "main() { rm -f \"$1\"; };".to_owned(),
        }
    }

    /// The command line for the agent (split like a shell, then run): `sh -c SCRIPT rssm-cp
    /// TRAILER ARGS…`.
    pub fn command(self, trailer: &str, args: &[&str]) -> String {
        let script = format!(
            "T=$1; shift; cd \"${{HOME:-/}}\" 2>/dev/null; {} ( main \"$@\" ); r=$?; printf %s \"$T\"; printf %s \"$T\" >&2; exit $r",
            self.body().replace('\n', " ")
        );
        let mut words = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            shell_quote(&script),
            "rssm-cp".to_owned(),
            shell_quote(trailer),
        ];
        words.extend(args.iter().map(|a| shell_quote(a)));
        words.join(" ")
    }
}

/// One marker from a script: its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report(pub Vec<String>);

impl Report {
    /// The first word (`ready`, `file`, `missing`, …).
    pub fn kind(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// The word at `i` after the kind.
    pub fn arg(&self, i: usize) -> &str {
        self.0.get(i + 1).map_or("", String::as_str)
    }

    /// Everything after the kind, as sent (a path with spaces in it).
    pub fn rest(&self) -> String {
        self.0.get(1..).unwrap_or_default().join(" ")
    }
}

/// Picks markers out of a byte stream that also carries other text (tools' messages, a
/// terminal's noise), which it keeps for error messages.
#[derive(Debug, Default)]
pub struct Reports {
    buf: Vec<u8>,
    /// Text that was not a marker, for the error line when a tool fails.
    pub other: Vec<u8>,
}

const RS: u8 = 0x1e;
const PREFIX: &[u8] = b"rssm-cp ";

impl Reports {
    /// Takes bytes; returns the markers they completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Report> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let Some(start) = self.buf.iter().position(|&b| b == RS) else {
                self.other.append(&mut self.buf);
                break;
            };
            self.other.extend(self.buf.drain(..start));
            let Some(len) = self.buf[1..].iter().position(|&b| b == RS) else {
                break; // the marker's end has not arrived yet
            };
            let inner = self.buf[1..1 + len].to_vec();
            match inner.strip_prefix(PREFIX) {
                Some(words) => {
                    self.buf.drain(..len + 2);
                    let text = String::from_utf8_lossy(words);
                    out.push(Report(text.split(' ').map(str::to_owned).collect()));
                }
                None => {
                    // Not ours (an RS in a tool's output): keep it as text, look further.
                    self.other.push(RS);
                    self.buf.drain(..1);
                }
            }
        }
        self.keep_other_short();
        out
    }

    /// The other text, trimmed to its last line that says something.
    pub fn last_message(&self) -> Option<String> {
        self.last_message_except("")
    }

    /// [`Reports::last_message`] with `noise` (a script's trailer, on a terminal) left out.
    pub fn last_message_except(&self, noise: &str) -> Option<String> {
        // (What waits for a marker's end counts too: it may be a trailer, cut short.)
        let mut text = String::from_utf8_lossy(&self.other).into_owned();
        text.push_str(&String::from_utf8_lossy(&self.buf));
        if !noise.is_empty() {
            text = text.replace(noise, "");
        }
        text.lines()
            .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c.is_control()))
            .rfind(|l| !l.is_empty())
            .map(str::to_owned)
    }

    fn keep_other_short(&mut self) {
        const KEEP: usize = 4096;
        if self.other.len() > 2 * KEEP {
            self.other.drain(..self.other.len() - KEEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn reports_survive_any_split_and_any_noise_between_them(
            noise in proptest::collection::vec("[ -~\\n]{0,40}", 1..5),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            // Noise (a tool's message, printable with newlines), then a report, in turns.
            let mut stream = Vec::new();
            for (i, n) in noise.iter().enumerate() {
                stream.extend_from_slice(n.as_bytes());
                stream.extend_from_slice(format!("\x1erssm-cp file {i} a b\x1e").as_bytes());
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut r = Reports::default();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                got.extend(r.push(&stream[at..c]));
                at = c;
            }
            prop_assert_eq!(got.len(), noise.len());
            for (i, g) in got.iter().enumerate() {
                prop_assert_eq!(g.kind(), "file");
                prop_assert_eq!(g.rest(), format!("{i} a b"));
            }
            prop_assert_eq!(String::from_utf8_lossy(&r.other), noise.concat());
        }
    }

    #[test]
    fn markers_are_found_across_chunks_among_other_text() {
        let mut r = Reports::default();
        assert!(r.push(b"tail: oops\n\x1erssm-cp fi").is_empty());
        let got = r.push(b"le 644 3 abc\x1e\x1erssm-cp ready\x1e trailing");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind(), "file");
        assert_eq!(got[0].arg(2), "abc");
        assert_eq!(got[1].kind(), "ready");
        assert_eq!(r.last_message().as_deref(), Some("trailing"));
        assert!(String::from_utf8_lossy(&r.other).contains("tail: oops"));
    }

    #[test]
    fn a_stray_record_separator_is_text() {
        let mut r = Reports::default();
        let got = r.push(b"a\x1eb\x1erssm-cp done\x1e");
        assert_eq!(got, vec![Report(vec!["done".into()])]);
        assert_eq!(r.other, b"a\x1eb");
    }

    #[test]
    fn commands_quote_every_argument() {
        let c = Script::Remove.command("\x1eT\x1e", &["it's a file"]);
        assert!(c.starts_with("sh -c '"));
        assert!(c.ends_with(" rssm-cp '\x1eT\x1e' 'it'\\''s a file'"), "{c}");
    }
}

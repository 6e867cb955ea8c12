//! `rssm trace FILE`: decodes a recorded data-channel session (one websocket frame per JSON line,
//! the format of the project's replay fixtures) into one readable line per frame — the tool we use
//! to compare our client with the official one. Tokens in OpenDataChannel frames are never printed.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::anyhow;
use bytes::Bytes;
use rssm_protocol::{AgentMessage, PayloadType};

/// One line for one recorded frame (a line of the recording): its time, direction and what the
/// frame holds; a line that is not a JSON record is an error.
pub fn describe_line(line: &str) -> Result<String, String> {
    let rec: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON record: {e}"))?;
    let text = describe(&rec).unwrap_or_else(|e| format!("(undecodable: {e})"));
    let t = rec["t_ms"].as_u64().unwrap_or(0);
    let dir = rec["dir"].as_str().unwrap_or("?");
    Ok(format!("{t:>8} ms  {dir:<16} {text}"))
}

/// Prints one line per frame of the recording at `path`.
pub fn run(path: &Path) -> anyhow::Result<u8> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| anyhow!("cannot open {shown}: {e}"))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| anyhow!("{shown}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let text = describe_line(&line).map_err(|e| anyhow!("{shown}:{}: {e}", n + 1))?;
        if writeln!(out, "{text}").is_err() {
            return Ok(0); // reader went away (e.g. `| head`)
        }
    }
    Ok(0)
}

fn describe(rec: &serde_json::Value) -> Result<String, String> {
    if rec["kind"] == "text" {
        // The OpenDataChannel frame carries the session token: show only its shape.
        let v: serde_json::Value =
            serde_json::from_str(rec["text"].as_str().unwrap_or("")).map_err(|e| e.to_string())?;
        let version = v["ClientVersion"].as_str().unwrap_or("-");
        return Ok(format!(
            "TEXT open_data_channel ClientVersion={version} TokenValue=<redacted>"
        ));
    }
    let hex = rec["hex"].as_str().ok_or("no hex field")?;
    let bytes = decode_hex(hex)?;
    let m = AgentMessage::decode(Bytes::from(bytes)).map_err(|e| e.to_string())?;
    let valid = match m.validate() {
        Ok(()) => String::new(),
        Err(e) => format!(" INVALID({e})"),
    };
    let body = match m.payload_type {
        PayloadType::Output | PayloadType::StdErr | PayloadType::Flag => {
            let shown: String = m
                .payload
                .iter()
                .take(24)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if m.payload.len() > 24 { "…" } else { "" };
            format!("{shown}{more}")
        }
        // One line per frame: control characters (newlines in JSON text) become spaces.
        _ => String::from_utf8_lossy(&m.payload)
            .chars()
            .take(160)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    };
    Ok(format!(
        "{} seq={} flags={} type={:?} len={}{valid}  {body}",
        m.message_type,
        m.sequence_number,
        m.flags,
        m.payload_type,
        m.payload.len()
    ))
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    // Byte pairs, not string slices: a non-ASCII character must be an error, not a panic on a
    // char boundary.
    let digit = |b: u8| char::from(b).to_digit(16).ok_or("not a hex digit");
    s.as_bytes()
        .chunks(2)
        .map(|pair| Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_hex_line_with_non_ascii_characters_is_an_error_not_a_panic() {
        assert!(decode_hex("é0").is_err());
        assert!(decode_hex("0g").is_err());
        assert_eq!(decode_hex("00ff").unwrap(), [0, 255]);
        let rec = serde_json::json!({"kind": "binary", "hex": "ab€d"});
        assert!(describe(&rec).is_err());
    }

    proptest! {
        #[test]
        fn any_record_is_described_or_refused_in_one_line(
            kind in prop_oneof![Just("text".to_owned()), Just("binary".to_owned()), ".*"],
            hex in ".*",
            text in ".*",
        ) {
            let rec = serde_json::json!({"kind": kind, "hex": hex, "text": text});
            match describe(&rec) {
                Ok(line) | Err(line) => prop_assert!(!line.contains('\n'), "{line}"),
            }
        }

        #[test]
        fn any_frame_bytes_are_described_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let rec = serde_json::json!({"kind": "binary", "hex": hex});
            let _ = describe(&rec);
        }
    }
}

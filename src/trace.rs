//! `rssm trace FILE`: decodes a recorded data-channel session (one websocket frame per JSON line,
//! the format of the project's replay fixtures) into one readable line per frame — the tool we use
//! to compare our client with the official one. Tokens in OpenDataChannel frames are never printed.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::anyhow;
use bytes::Bytes;
use rssm_protocol::{AgentMessage, PayloadType};

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
        let rec: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow!("{shown}:{}: not a JSON record: {e}", n + 1))?;
        let text = describe(&rec).unwrap_or_else(|e| format!("(undecodable: {e})"));
        let t = rec["t_ms"].as_u64().unwrap_or(0);
        let dir = rec["dir"].as_str().unwrap_or("?");
        if writeln!(out, "{t:>8} ms  {dir:<16} {text}").is_err() {
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
        _ => String::from_utf8_lossy(&m.payload)
            .chars()
            .take(160)
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
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

//! `rssm trace` decodes recorded sessions and never prints tokens.

use std::process::Command;

fn rssm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rssm"))
}

fn fixture(name: &str) -> String {
    format!(
        "{}/protocol/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn trace_decodes_every_frame_of_a_recorded_session() {
    let out = rssm()
        .args(["trace", &fixture("real-agent-port-smux.jsonl")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 33);
    assert!(text.contains("agent_session_state seq=0 flags=3"));
    assert!(text.contains("output_stream_data seq=0 flags=1 type=HandshakeRequest"));
    assert!(text.contains("input_stream_data seq=6 flags=0 type=Flag len=4  00000002"));
    assert!(!text.contains("undecodable") && !text.contains("INVALID"));
    // The token in the OpenDataChannel frame never reaches the terminal.
    assert!(text.contains("TokenValue=<redacted>"));
    assert!(!text.contains("agent-tok") && !text.contains("client-tok"));
}

#[test]
fn trace_of_a_missing_file_is_one_clear_line_and_nonzero() {
    let out = rssm()
        .args(["trace", "/nonexistent/x.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rssm: cannot open /nonexistent/x.jsonl"));
}

#[test]
fn unknown_arguments_exit_2_with_usage() {
    let out = rssm().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = rssm().arg("--version").output().unwrap();
    assert!(String::from_utf8(v.stdout).unwrap().starts_with("rssm 0."));
}

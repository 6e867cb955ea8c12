//! The simulated agent ↔ the protocol crate's client machine over the gateway: shell, commands,
//! port forwarding (basic and smux), KMS, termination.

mod common;

use bytes::Bytes;
use common::*;
use rssm_protocol::smux::{SmuxConfig, SmuxRole, SmuxSession};
use rssm_protocol::{Event, PayloadType, SessionType};
use rssm_sim::{SimConfig, Simulator};
use rssm_testkit::net::echo_server;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

async fn sim() -> Simulator {
    sim_with(SimConfig::default()).await
}

async fn sim_with(mut config: SimConfig) -> Simulator {
    init_logs();
    config.shell = Some("/bin/sh".into());
    Simulator::start(config).await.unwrap()
}

#[tokio::test]
async fn shell_echoes_commands_and_ends_with_channel_closed() {
    let sim = sim().await;
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    c.session.send_size(100, 30).unwrap();
    c.send(PayloadType::Output, b"echo hello-$((6*7)); stty size\n");
    c.run_until_output(Duration::from_secs(20), &["hello-42", "30 100"])
        .await;
    c.send(PayloadType::Output, b"exit\n");
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(matches!(events.last(), Some(Event::ChannelClosed(cc)) if cc.output.is_empty()));
    let (_, d) = ssm(&sim, "DescribeSessions", json!({ "State": "History" })).await;
    assert_eq!(d["Sessions"][0]["Status"], "Terminated", "{d}");
    sim.shutdown().await;
}

/// Runs `command` on AWS-StartNonInteractiveCommand with extra `parameters`; the session's events.
async fn non_interactive(command: &str, parameters: serde_json::Value) -> Vec<Event> {
    let sim = sim().await;
    let mut params = json!({ "command": [command] });
    if let (Some(all), Some(extra)) = (params.as_object_mut(), parameters.as_object()) {
        all.extend(extra.clone());
    }
    let resp = start_session(
        &sim,
        json!({
            "Target": DEMO,
            "DocumentName": "AWS-StartNonInteractiveCommand",
            "Parameters": params,
        }),
    )
    .await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(events.iter().any(|e| matches!(e, Event::SessionType(t) if t.session_type == SessionType::NonInteractiveCommands)));
    sim.shutdown().await;
    events
}

fn stderr_bytes(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StdErr(b) => Some(b.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn separate_output_streams_reports_stdout_stderr_and_exit_code() {
    let events = non_interactive(
        "sh -c 'echo to-out; echo to-err >&2; exit 3'",
        json!({ "separateOutputStream": ["true"] }),
    )
    .await;
    assert_eq!(output_text(&events), "to-out\n");
    assert_eq!(stderr_bytes(&events), b"to-err\n");
    assert!(
        events.iter().any(|e| matches!(e, Event::ExitCode(3))),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_documents_default_merges_output_and_sends_no_exit_code() {
    let events = non_interactive("sh -c 'echo to-out; echo to-err >&2; exit 3'", json!({})).await;
    assert_eq!(output_text(&events), "to-out\nto-err\n");
    assert!(stderr_bytes(&events).is_empty(), "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, Event::ExitCode(_))),
        "{events:?}"
    );
}

#[tokio::test]
async fn separator_prefixes_start_each_line_and_a_bad_one_fails_the_session() {
    let events = non_interactive(
        "sh -c 'printf \"a\\nb\\n\"; echo e >&2'",
        json!({ "separateOutputStream": ["true"], "stdoutSeparatorPrefix": ["O:"], "stderrSeparatorPrefix": ["E:"] }),
    )
    .await;
    // One read takes both lines: the prefix goes at the start of the chunk only.
    assert_eq!(output_text(&events), "O:a\nb\n");
    assert_eq!(stderr_bytes(&events), b"E:e\n");
    let events = non_interactive(
        "true",
        json!({ "separateOutputStream": ["true"], "stdoutSeparatorPrefix": ["no spaces"] }),
    )
    .await;
    let closed = events.iter().find_map(|e| match e {
        Event::ChannelClosed(cc) => Some(cc.output.clone()),
        _ => None,
    });
    assert_eq!(
        closed.as_deref(),
        Some("invalid stdoutSeparatorPrefix no spaces")
    );
}

#[tokio::test]
async fn the_agent_drops_the_incomplete_utf8_end_of_a_stream() {
    // "x" then the first two bytes of "€": the agent holds them back and the pipe ends.
    let events = non_interactive(
        "printf 'x\\342\\202'",
        json!({ "separateOutputStream": ["true"] }),
    )
    .await;
    assert_eq!(output_text(&events), "x");
    assert!(events.iter().any(|e| matches!(e, Event::ExitCode(0))));
}

#[tokio::test]
async fn interactive_command_runs_on_a_pty() {
    let sim = sim().await;
    let resp = start_session(
        &sim,
        json!({
            "Target": DEMO,
            "DocumentName": "AWS-StartInteractiveCommand",
            "Parameters": { "command": ["sh -c 'test -t 0 && echo on-a-tty'"] },
        }),
    )
    .await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(output_text(&events).contains("on-a-tty"), "{events:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn kms_encrypted_shell_completes_the_challenge() {
    let sim = sim().await;
    let resp = start_session(
        &sim,
        json!({ "Target": DEMO, "DocumentName": "RSSM-Sim-EncryptedShell" }),
    )
    .await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::HandshakeComplete { .. })
        })
        .await;
    assert!(
        matches!(events.last(), Some(Event::HandshakeComplete { encrypted: true, customer_message }) if customer_message.contains("KMS"))
    );
    assert!(c.session.is_encrypted());
    c.send(PayloadType::Output, b"echo secret-$((1+1))\n");
    c.run_until_output(Duration::from_secs(20), &["secret-2"])
        .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn port_forwarding_smux_carries_many_streams_intact() {
    let sim = sim().await;
    let port = echo_server(b"");
    let mut c = port_session(&sim, port, rssm_protocol::CLIENT_VERSION).await;
    smux_echo(&mut c, 16, 40_000).await;
    c.session
        .send_flag(rssm_protocol::payload::Flag::TerminateSession)
        .unwrap();
    c.run_until(Duration::from_secs(20), |e, _| {
        matches!(e, Event::ChannelClosed(_))
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn port_forwarding_basic_for_old_clients_is_single_stream() {
    let sim = sim().await;
    let port = echo_server(b"");
    let mut c = port_session(&sim, port, "1.1.61.0").await;
    let data = rssm_testkit::pattern(5, 200_000);
    let mut sent = 0;
    let mut got = Vec::new();
    while sent < data.len() && c.session.unacked() < 300 {
        let end = (sent + 1024).min(data.len());
        c.send(PayloadType::Output, &data[sent..end]);
        sent = end;
    }
    c.run_loop(Duration::from_secs(60), |e, s| {
        if let Some(Event::Output(b)) = e {
            got.extend_from_slice(&b[..]);
        }
        while sent < data.len() && s.unacked() < 300 {
            let end = (sent + 1024).min(data.len());
            s.send(
                PayloadType::Output,
                Bytes::copy_from_slice(&data[sent..end]),
            )
            .unwrap();
            sent = end;
        }
        got.len() >= data.len()
    })
    .await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    sim.shutdown().await;
}

#[tokio::test]
async fn smux_stream_to_a_closed_port_gets_connect_to_port_error() {
    let sim = sim().await;
    // Bind then drop: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = port_session(&sim, closed, rssm_protocol::CLIENT_VERSION).await;
    let mut smux = SmuxSession::new(SmuxRole::Client, SmuxConfig::default(), Instant::now());
    smux.open_stream().unwrap();
    while let Some(chunk) = smux.poll_output(1024) {
        c.send(PayloadType::Output, &chunk);
    }
    c.run_until(Duration::from_secs(20), |e, _| {
        matches!(
            e,
            Event::Flag(rssm_protocol::payload::Flag::ConnectToPortError)
        )
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn ssh_session_ends_when_the_destination_closes() {
    let sim = sim().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"SSH-2.0-sim\r\n").await;
        }
    });
    let resp = start_session(
        &sim,
        json!({ "Target": DEMO, "DocumentName": "AWS-StartSSHSession", "Parameters": { "portNumber": [port.to_string()] } }),
    )
    .await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert_eq!(output_text(&events), "SSH-2.0-sim\r\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn terminate_session_sends_channel_closed() {
    let sim = sim().await;
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    c.run_until(Duration::from_secs(20), |e, _| {
        matches!(e, Event::Output(_))
    })
    .await;
    let (status, _) = ssm(
        &sim,
        "TerminateSession",
        json!({ "SessionId": c.session_id }),
    )
    .await;
    assert_eq!(status, 200);
    c.run_until(Duration::from_secs(20), |e, _| {
        matches!(e, Event::ChannelClosed(_))
    })
    .await;
    let (_, r) = ssm(&sim, "ResumeSession", json!({ "SessionId": c.session_id })).await;
    assert!(r.get("TokenValue").is_none(), "{r}");
    sim.shutdown().await;
}

#[tokio::test]
async fn ecs_execute_command_runs_the_command_interactively() {
    let sim = sim().await;
    let (ecs, status, r) = ecs_execute_command(&sim, "echo from-the-container").await;
    assert_eq!(status, 200, "{r}");
    // The plugin matches the response keys case-insensitively (§11.1).
    let session = json!({
        "SessionId": r["session"]["sessionId"],
        "StreamUrl": r["session"]["streamUrl"],
        "TokenValue": r["session"]["tokenValue"],
    });
    let mut c = Client::connect(&sim, &session, &ecs.id).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(
        output_text(&events).contains("from-the-container"),
        "{}",
        summary(&events)
    );
    sim.shutdown().await;
}

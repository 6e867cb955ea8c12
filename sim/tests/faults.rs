//! Every fault mode, with nothing lost: port forwarding through smux with sha256-checked echoes
//! while the gateway drops, duplicates, reorders, delays, kills websockets, expires tokens,
//! disconnects the agent; plus the rate cap, idle timeout and maximum session duration.

mod common;

use common::*;
use rssm_protocol::Event;
use rssm_sim::state::{SessionStatus, TokenError};
use rssm_sim::{FaultConfig, SimConfig, Simulator};
use rssm_testkit::logs::Logs;
use rssm_testkit::net::echo_server;
use serde_json::json;
use std::time::Duration;

async fn sim_with(faults: FaultConfig) -> Simulator {
    let config = SimConfig {
        faults,
        shell: Some("/bin/sh".into()),
        ..SimConfig::default()
    };
    Simulator::start(config).await.unwrap()
}

async fn echo_through(sim: &Simulator, streams: usize, size: usize) -> u32 {
    let port = echo_server(b"");
    let mut c = port_session(sim, port, rssm_protocol::CLIENT_VERSION).await;
    smux_echo(&mut c, streams, size).await;
    c.reconnects
}

#[tokio::test]
async fn lossy_duplicating_reordering_slow_link_loses_nothing() {
    let sim = sim_with(FaultConfig {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        latency: Duration::from_millis(2),
        ..FaultConfig::default()
    })
    .await;
    echo_through(&sim, 4, 30_000).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn killed_websockets_resume_without_losing_bytes() {
    let sim = sim_with(FaultConfig {
        kill_after_messages: Some(40),
        kill_times: 3,
        ..FaultConfig::default()
    })
    .await;
    let reconnects = echo_through(&sim, 4, 30_000).await;
    assert_eq!(reconnects, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_are_refused_and_resume_issues_new_ones() {
    let sim = sim_with(FaultConfig {
        expire_tokens_after: Some(Duration::from_millis(300)),
        kill_after: Some(Duration::from_millis(600)),
        ..FaultConfig::default()
    })
    .await;
    // A token used after its lifetime is refused: once the simulator's own check says it has
    // expired.
    let stale = start_session(&sim, json!({ "Target": DEMO })).await;
    let (id, token) = (
        stale["SessionId"].as_str().unwrap(),
        stale["TokenValue"].as_str().unwrap(),
    );
    let state = sim.state();
    wait_until(
        "the token's expiry",
        Duration::from_secs(30),
        || async move {
            matches!(
                state.check_token(id, token, std::time::Instant::now()),
                Err(TokenError::Expired)
            )
        },
    )
    .await;
    use futures_util::StreamExt;
    let mut ws = open_ws(
        &sim,
        stale["StreamUrl"].as_str().unwrap(),
        stale["TokenValue"].as_str().unwrap(),
    )
    .await;
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(
        matches!(&msg, Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) if f.reason.contains("expired")),
        "{msg:?}"
    );

    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    // Runs past the kill (the simulator has the client detached): the client must resume with a
    // fresh token.
    c.session.send_size(80, 24).unwrap();
    let (state, id) = (sim.state(), c.session_id.as_str());
    wait_until(
        "the websocket kill",
        Duration::from_secs(30),
        || async move { state.sessions()[id].status == SessionStatus::Disconnected },
    )
    .await;
    c.send(
        rssm_protocol::PayloadType::Output,
        b"echo after-$((2*21))\n",
    );
    c.run_until_output(Duration::from_secs(20), &["after-42"])
        .await;
    assert!(c.reconnects >= 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn agent_disconnect_pauses_the_client_and_loses_nothing() {
    let sim = sim_with(FaultConfig {
        agent_disconnect_after: Some(Duration::from_millis(400)),
        agent_disconnect_for: Duration::from_millis(800),
        latency: Duration::from_millis(1),
        ..FaultConfig::default()
    })
    .await;
    let port = echo_server(b"");
    let mut c = port_session(&sim, port, rssm_protocol::CLIENT_VERSION).await;
    let mut paused = false;
    c.run_until(Duration::from_secs(10), |e, _| {
        paused |= matches!(e, Event::PublicationPaused);
        paused
    })
    .await;
    smux_echo(&mut c, 3, 20_000).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn normal_traffic_stays_under_the_rate_cap() {
    let sim = sim_with(FaultConfig {
        rate_limit: Some(1000),
        ..FaultConfig::default()
    })
    .await;
    echo_through(&sim, 2, 50_000).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn message_flood_is_paused_then_closed() {
    let sim = sim_with(FaultConfig {
        rate_limit: Some(20),
        rate_abuse_seconds: 2,
        ..FaultConfig::default()
    })
    .await;
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    for i in 0..400 {
        c.send(
            rssm_protocol::PayloadType::Output,
            format!(": {i}\n").as_bytes(),
        );
    }
    let mut paused = false;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            paused |= matches!(e, Event::PublicationPaused);
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(paused, "the gateway paused the flooding client");
    assert!(matches!(events.last(), Some(Event::ChannelClosed(cc)) if cc.output.contains("rate")));
    let (_, d) = ssm(&sim, "DescribeSessions", json!({ "State": "History" })).await;
    assert_eq!(d["Sessions"][0]["Status"], "Failed", "{d}");
    sim.shutdown().await;
}

#[tokio::test]
async fn idle_sessions_and_long_sessions_are_closed() {
    let config = SimConfig {
        idle_timeout: Duration::from_millis(1500),
        shell: Some("/bin/sh".into()),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(
        matches!(events.last(), Some(Event::ChannelClosed(cc)) if cc.output.contains("inactivity"))
    );
    sim.shutdown().await;

    let config = SimConfig {
        max_session_duration: Some(Duration::from_millis(1500)),
        shell: Some("/bin/sh".into()),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(20), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(
        matches!(events.last(), Some(Event::ChannelClosed(cc)) if cc.output.contains("maximum"))
    );
    sim.shutdown().await;
}

/// Waits (bounded) for the first websocket message that `pred` accepts.
async fn next_matching(
    ws: &mut Ws,
    limit: Duration,
    pred: impl Fn(&tokio_tungstenite::tungstenite::Message) -> bool,
) -> bool {
    use futures_util::StreamExt;
    tokio::time::timeout(limit, async {
        while let Some(Ok(msg)) = ws.next().await {
            if pred(&msg) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn a_blackholed_websocket_stays_open_but_silent_until_the_client_resumes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // The simulator runs on this thread (a current-thread runtime): its logs come here.
    let logs = Logs::new();
    let _capture = logs.install();
    let sim = sim_with(FaultConfig {
        kill_after: Some(Duration::from_millis(300)),
        blackhole: true,
        ..FaultConfig::default()
    })
    .await;
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let url = resp["StreamUrl"].as_str().unwrap();
    let mut ws = open_ws(&sim, url, resp["TokenValue"].as_str().unwrap()).await;
    let ping = || Message::Ping(bytes::Bytes::from_static(b"keepalive"));
    let pong = |m: &Message| matches!(m, Message::Pong(_));

    ws.send(ping()).await.unwrap();
    assert!(next_matching(&mut ws, Duration::from_secs(5), pong).await);
    // Once the gateway says it has gone silent.
    let logs = &logs;
    wait_until("the blackhole", Duration::from_secs(30), || async move {
        logs.line_with(&["data channel blackholed"]).is_some()
    })
    .await;
    // Blackholed: no pong, no frame (the shell's prompt is due meanwhile), no close — and writes
    // still succeed, because the TCP connection is up. (The 1.5 s bound the silence this test is
    // about; they wait for nothing.)
    ws.send(ping()).await.unwrap();
    let silence = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await;
    assert!(silence.is_err(), "expected silence, got {silence:?}");
    ws.send(ping()).await.unwrap();

    // ResumeSession and a new websocket: pongs again, and the agent's retransmitted output.
    let id = resp["SessionId"].as_str().unwrap();
    let (status, resumed) = ssm(&sim, "ResumeSession", json!({ "SessionId": id })).await;
    assert_eq!(status, 200, "{resumed}");
    let mut ws2 = open_ws(&sim, url, resumed["TokenValue"].as_str().unwrap()).await;
    ws2.send(ping()).await.unwrap();
    assert!(next_matching(&mut ws2, Duration::from_secs(5), pong).await);
    let output = |m: &Message| matches!(m, Message::Binary(_));
    assert!(next_matching(&mut ws2, Duration::from_secs(10), output).await);
    // The blackholed connection is dropped once its client has moved on (EOF or reset).
    let old = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(_)) => {}
                end => return end.map(|r| r.map(|_| ())),
            }
        }
    })
    .await;
    assert!(matches!(old, Ok(None) | Ok(Some(Err(_)))), "{old:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_agent_restart_ends_the_session_and_refuses_new_ones_until_it_is_back() {
    let sim = sim_with(FaultConfig {
        agent_restart_after: Some(Duration::from_millis(500)),
        agent_restart_for: Duration::from_secs(2),
        ..FaultConfig::default()
    })
    .await;
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    let events = c
        .run_until(Duration::from_secs(10), |e, _| {
            matches!(e, Event::ChannelClosed(_))
        })
        .await;
    assert!(matches!(events.last(), Some(Event::ChannelClosed(_))));
    let (status, err) = ssm(&sim, "StartSession", json!({ "Target": DEMO })).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["__type"], "TargetNotConnected", "{err}");
    let (_, conn) = ssm(&sim, "GetConnectionStatus", json!({ "Target": DEMO })).await;
    assert_eq!(conn["Status"], "notconnected", "{conn}");
    // Back (the API says so once the restart is over), and it restarts only once.
    let simulator = &sim;
    wait_until("the agent back", Duration::from_secs(30), || async move {
        let (_, conn) = ssm(simulator, "GetConnectionStatus", json!({ "Target": DEMO })).await;
        conn["Status"] == "connected"
    })
    .await;
    let resp = start_session(&sim, json!({ "Target": DEMO })).await;
    let mut c = Client::connect(&sim, &resp, DEMO).await;
    c.session.send_size(80, 24).unwrap();
    c.send(rssm_protocol::PayloadType::Output, b"echo back-$((6*7))\n");
    c.run_until_output(Duration::from_secs(20), &["back-42"])
        .await;
    sim.shutdown().await;
}

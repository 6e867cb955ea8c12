//! The simulated agent answers the frames the official client sent to the real agent
//! (`protocol/tests/fixtures/real-agent-port-smux.jsonl`) with what the real agent sent.

use bytes::Bytes;
use rssm_protocol::{AgentMessage, MessageType, PayloadType};
use rssm_sim::agent::{self, AgentSpec};
use rssm_sim::relay::{agent_channel, AgentOut, GatewayLink};
use rssm_sim::state::SimState;
use rssm_sim::{documents, SimConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

struct Frame {
    dir: String,
    bytes: Bytes,
}

fn trace() -> Vec<Frame> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/tests/fixtures/real-agent-port-smux.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let hex = v["hex"].as_str()?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>();
            Some(Frame {
                dir: v["dir"].as_str().unwrap().to_owned(),
                bytes: Bytes::from(bytes),
            })
        })
        .collect()
}

async fn next_agent_message(link: &mut GatewayLink) -> AgentMessage {
    loop {
        let out = tokio::time::timeout(Duration::from_secs(5), link.from_agent.recv())
            .await
            .expect("agent frame in time")
            .expect("agent running");
        if let AgentOut::Frame(f) = out {
            return AgentMessage::decode(f).unwrap();
        }
    }
}

#[tokio::test]
async fn agent_matches_the_real_agent_on_a_port_handshake() {
    let frames = trace();
    let real: Vec<AgentMessage> = frames
        .iter()
        .filter(|f| f.dir == "agent->client")
        .map(|f| AgentMessage::decode(f.bytes.clone()).unwrap())
        .collect();

    let mut config = SimConfig::default();
    config.fleet.targets[0].agent_version = "3.3.0.0".into();
    let target = config.fleet.targets[0].clone();
    let state = Arc::new(SimState::new(config, "127.0.0.1:1".parse().unwrap()));
    let params: BTreeMap<String, Vec<String>> = [
        ("portNumber".to_owned(), vec!["7777".to_owned()]),
        ("localPortNumber".to_owned(), vec!["47715".to_owned()]),
    ]
    .into();
    let plan = documents::resolve(Some("AWS-StartPortForwardingSession"), &params, None).unwrap();
    let (agent_link, mut link) = agent_channel();
    tokio::spawn(agent::run(
        AgentSpec {
            state,
            session_id: "S1".into(),
            target,
            plan,
            seed: 1,
        },
        agent_link,
    ));

    // agent_session_state Connected, then the HandshakeRequest: byte-identical payloads.
    for want in &real[..2] {
        let got = next_agent_message(&mut link).await;
        assert_eq!(
            (
                &got.message_type,
                got.sequence_number,
                got.flags,
                got.payload_type
            ),
            (
                &want.message_type,
                want.sequence_number,
                want.flags,
                want.payload_type
            )
        );
        assert_eq!(got.payload, want.payload);
    }

    // Feed the official client's ack and HandshakeResponse.
    let client: Vec<&Frame> = frames.iter().filter(|f| f.dir == "client->agent").collect();
    for f in &client[..2] {
        link.to_agent.send(f.bytes.clone()).await.unwrap();
    }
    let mut saw_ack = false;
    loop {
        let got = next_agent_message(&mut link).await;
        match (&got.message_type, got.payload_type) {
            (MessageType::Acknowledge, _) => {
                let ack: serde_json::Value = serde_json::from_slice(&got.payload).unwrap();
                assert_eq!(ack["AcknowledgedMessageType"], "input_stream_data");
                assert_eq!(ack["AcknowledgedMessageSequenceNumber"], 0);
                assert_eq!(got.flags, 3);
                assert_eq!(
                    got.payload.len(),
                    175,
                    "same length as the real agent's acks"
                );
                saw_ack = true;
            }
            (MessageType::OutputStreamData, PayloadType::HandshakeComplete) => {
                assert_eq!(got.sequence_number, 1);
                let text = std::str::from_utf8(&got.payload).unwrap();
                assert!(text.starts_with("{\"HandshakeTimeToComplete\":"), "{text}");
                assert!(text.ends_with(",\"CustomerMessage\":\"\"}"), "{text}");
                break;
            }
            // Retransmissions of the HandshakeRequest may come first.
            (MessageType::OutputStreamData, PayloadType::HandshakeRequest) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_ack);
}

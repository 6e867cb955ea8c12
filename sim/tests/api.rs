//! The JSON API against a raw SigV4-signing client: every operation, the real error shapes, and
//! SigV4 rejection on API calls and on the websocket upgrade.

mod common;

use common::*;
use rssm_sim::sigv4::SimCredentials;
use rssm_sim::{SimConfig, Simulator};
use serde_json::json;

async fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).await.unwrap()
}

#[tokio::test]
async fn describe_instance_information_lists_the_fleet_with_filters() {
    let sim = sim().await;
    let (status, r) = ssm(&sim, "DescribeInstanceInformation", json!({})).await;
    assert_eq!(status, 200, "{r}");
    let list = r["InstanceInformationList"].as_array().unwrap();
    let ids: Vec<&str> = list
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"i-0123456789abcdef0"));
    assert!(ids.contains(&"mi-0123456789abcdef0"));
    assert!(list.iter().any(|i| i["PingStatus"] == "ConnectionLost"));
    assert!(list
        .iter()
        .all(|i| i["AgentVersion"].is_string() && i["PlatformType"] == "Linux"));
    let (_, r) = ssm(
        &sim,
        "DescribeInstanceInformation",
        json!({ "Filters": [{ "Key": "tag:Name", "Values": ["demo"] }] }),
    )
    .await;
    assert_eq!(r["InstanceInformationList"].as_array().unwrap().len(), 1);
    let (_, r) = ssm(
        &sim,
        "DescribeInstanceInformation",
        json!({ "InstanceInformationFilterList": [{ "key": "PingStatus", "valueSet": ["Online"] }] }),
    )
    .await;
    assert!(r["InstanceInformationList"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["PingStatus"] == "Online"));
    sim.shutdown().await;
}

#[tokio::test]
async fn session_lifecycle_through_the_api() {
    let sim = sim().await;
    let (_, c) = ssm(
        &sim,
        "GetConnectionStatus",
        json!({ "Target": "i-0123456789abcdef0" }),
    )
    .await;
    assert_eq!(c["Status"], "connected");
    let (_, c) = ssm(
        &sim,
        "GetConnectionStatus",
        json!({ "Target": "i-0fedcba9876543210" }),
    )
    .await;
    assert_eq!(c["Status"], "notconnected");

    let s = start_session(
        &sim,
        json!({ "Target": "i-0123456789abcdef0", "Reason": "testing" }),
    )
    .await;
    let id = s["SessionId"].as_str().unwrap();
    assert!(id.starts_with("rssm-sim-"), "{id}");
    assert!(s["StreamUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v1/data-channel/{id}?role=publish_subscribe")));
    assert!(!s["TokenValue"].as_str().unwrap().is_empty());

    let (_, d) = ssm(&sim, "DescribeSessions", json!({ "State": "Active" })).await;
    let sessions = d["Sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["Reason"], "testing");
    assert_eq!(sessions[0]["Status"], "Connecting");
    assert_eq!(sessions[0]["DocumentName"], "SSM-SessionManagerRunShell");

    let (_, d) = ssm(
        &sim,
        "DescribeSessions",
        json!({ "State": "Active", "Filters": [{ "key": "InvokedAfter", "value": "2100-01-01T00:00:00Z" }] }),
    )
    .await;
    assert_eq!(d["Sessions"].as_array().unwrap().len(), 0, "{d}");
    let (_, d) = ssm(
        &sim,
        "DescribeSessions",
        json!({ "State": "Active", "Filters": [{ "key": "Target", "value": "i-0123456789abcdef0" }] }),
    )
    .await;
    assert_eq!(d["Sessions"].as_array().unwrap().len(), 1, "{d}");

    let (_, r) = ssm(&sim, "ResumeSession", json!({ "SessionId": id })).await;
    assert_eq!(r["SessionId"], id);
    assert_ne!(r["TokenValue"], s["TokenValue"]);

    let (status, t) = ssm(&sim, "TerminateSession", json!({ "SessionId": id })).await;
    assert_eq!((status, &t["SessionId"]), (200, &json!(id)));
    let simulator = &sim;
    wait_until(
        "the session in History",
        std::time::Duration::from_secs(30),
        || async move {
            let (_, d) = ssm(simulator, "DescribeSessions", json!({ "State": "History" })).await;
            d["Sessions"].as_array().unwrap().len() == 1
        },
    )
    .await;
    let (_, d) = ssm(&sim, "DescribeSessions", json!({ "State": "History" })).await;
    assert_eq!(d["Sessions"][0]["Status"], "Terminated");
    assert!(d["Sessions"][0]["EndDate"].is_number());
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_have_the_services_shapes() {
    let sim = sim().await;
    let cases = [
        (
            json!({ "Target": "i-0fedcba9876543210" }),
            "TargetNotConnected",
        ),
        (
            json!({ "Target": "i-00000000000000000" }),
            "TargetNotConnected",
        ),
        (
            json!({ "Target": "i-0123456789abcdef0", "DocumentName": "No-Such-Doc" }),
            "InvalidDocument",
        ),
        (
            json!({ "Target": "i-0123456789abcdef0", "DocumentName": "AWS-StartPortForwardingSession", "Parameters": { "portNumber": ["99999"] } }),
            "InvalidParameters",
        ),
        (json!({}), "ValidationException"),
    ];
    for (body, want) in cases {
        let (status, r) = ssm(&sim, "StartSession", body.clone()).await;
        assert_eq!(status, 400, "{body} → {r}");
        assert_eq!(r["__type"], want, "{body} → {r}");
        assert!(r["Message"].is_string() || r["message"].is_string(), "{r}");
    }
    let (status, r) = ssm(&sim, "DescribeSessions", json!({})).await;
    assert_eq!(
        (status, r["__type"].as_str()),
        (400, Some("ValidationException"))
    );
    let (status, r) = ssm(&sim, "ResumeSession", json!({ "SessionId": "nope-0" })).await;
    assert_eq!(
        (status, r["__type"].as_str()),
        (400, Some("DoesNotExistException"))
    );
    let (status, r) = ssm(&sim, "NoSuchOperation", json!({})).await;
    assert_eq!(
        (status, r["__type"].as_str()),
        (400, Some("UnknownOperationException"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn access_denied_for_a_denied_target() {
    let mut config = SimConfig::default();
    config.fleet.targets[0].deny_sessions = true;
    let sim = Simulator::start(config).await.unwrap();
    let (status, r) = ssm(
        &sim,
        "StartSession",
        json!({ "Target": "i-0123456789abcdef0" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(r["__type"], "AccessDeniedException");
    assert!(r["Message"]
        .as_str()
        .unwrap()
        .contains("is not authorized to perform: ssm:StartSession"));
    sim.shutdown().await;
}

#[tokio::test]
async fn sigv4_wrong_key_wrong_secret_and_wrong_service_are_rejected() {
    let sim = sim().await;
    let good = sim.config().credentials.clone();
    let body = json!({});
    let wrong_key = SimCredentials {
        access_key_id: "AKIAWRONGWRONGWRONG0".into(),
        ..good.clone()
    };
    let (status, r) = call_as(&sim, &wrong_key, "ssm", "AmazonSSM.DescribeSessions", &body).await;
    assert_eq!(status, 400);
    assert_eq!(r["__type"], "UnrecognizedClientException");
    assert_eq!(
        r["message"],
        "The security token included in the request is invalid."
    );

    let wrong_secret = SimCredentials {
        secret_access_key: "not-the-secret".into(),
        ..good.clone()
    };
    let (status, r) = call_as(
        &sim,
        &wrong_secret,
        "ssm",
        "AmazonSSM.DescribeSessions",
        &body,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(r["__type"], "InvalidSignatureException");
    assert!(r["message"]
        .as_str()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));

    let (_, r) = call_as(&sim, &good, "kms", "AmazonSSM.DescribeSessions", &body).await;
    assert_eq!(r["__type"], "InvalidSignatureException");

    // Unsigned.
    let resp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut r, mut w) = resp.into_split();
    w.write_all(b"POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: AmazonSSM.DescribeSessions\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}").await.unwrap();
    let mut out = String::new();
    r.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("MissingAuthenticationTokenException"), "{out}");
    sim.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_requires_a_valid_signature_and_token() {
    let sim = sim().await;
    let s = start_session(&sim, json!({ "Target": "i-0123456789abcdef0" })).await;
    let url = s["StreamUrl"].as_str().unwrap();
    // Unsigned upgrade → HTTP 403.
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    // Signed upgrade but a wrong token → the gateway closes the websocket.
    use futures_util::StreamExt;
    let mut ws = open_ws(&sim, url, "AAEAAwrong").await;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(
        matches!(&msg, Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) if u16::from(f.code) == 1008),
        "{msg:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn websocket_answers_pings() {
    let sim = sim().await;
    let s = start_session(&sim, json!({ "Target": "i-0123456789abcdef0" })).await;
    let mut ws = open_ws(
        &sim,
        s["StreamUrl"].as_str().unwrap(),
        s["TokenValue"].as_str().unwrap(),
    )
    .await;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Ping(b"keepalive".to_vec().into()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("pong in time");
        if let Some(Ok(Message::Pong(p))) = msg {
            assert_eq!(&p[..], b"keepalive");
            break;
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn ecs_execute_command_returns_a_camel_case_session() {
    let sim = sim().await;
    let (ecs, status, r) = ecs_execute_command(&sim, "echo hi").await;
    let (cluster, task, _) = ecs.ecs_parts().unwrap();
    assert_eq!(status, 200, "{r}");
    assert!(r["session"]["sessionId"].is_string());
    assert!(r["session"]["streamUrl"]
        .as_str()
        .unwrap()
        .starts_with("ws://"));
    assert!(r["session"]["tokenValue"].is_string());
    assert!(r["taskArn"].as_str().unwrap().ends_with(task));
    let (status, r) = call_as(
        &sim,
        &sim.config().credentials,
        "ecs",
        "AmazonEC2ContainerServiceV20141113.ExecuteCommand",
        &json!({ "cluster": cluster, "task": "nope", "command": "sh", "interactive": true }),
    )
    .await;
    assert_eq!(
        (status, r["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn kms_round_trip_and_context_mismatch() {
    let sim = sim().await;
    let creds = sim.config().credentials.clone();
    let ctx = json!({ "aws:ssm:SessionId": "s-1", "aws:ssm:TargetId": "i-1" });
    let (status, g) = call_as(
        &sim,
        &creds,
        "kms",
        "TrentService.GenerateDataKey",
        &json!({ "KeyId": "alias/rssm-sim", "NumberOfBytes": 64, "EncryptionContext": ctx }),
    )
    .await;
    assert_eq!(status, 200, "{g}");
    let (status, d) = call_as(
        &sim,
        &creds,
        "kms",
        "TrentService.Decrypt",
        &json!({ "CiphertextBlob": g["CiphertextBlob"], "EncryptionContext": ctx }),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["Plaintext"], g["Plaintext"]);
    assert_eq!(d["KeyId"], g["KeyId"]);
    let (status, e) = call_as(
        &sim,
        &creds,
        "kms",
        "TrentService.Decrypt",
        &json!({ "CiphertextBlob": g["CiphertextBlob"] }),
    )
    .await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("InvalidCiphertextException"))
    );
    sim.shutdown().await;
}

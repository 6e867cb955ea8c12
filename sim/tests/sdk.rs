//! aws-sdk-ssm against the simulator: every SSM operation, the error shapes as the SDK parses
//! them, and SigV4 rejection of a wrong key.

mod common;

use aws_sdk_ssm::types::{InstanceInformationStringFilter, SessionState};
use aws_sdk_ssm::Client;
use rssm_sim::{SimConfig, Simulator};

async fn client(sim: &Simulator, key: &str, secret: &str) -> Client {
    Client::new(&common::sdk::config(sim, key, secret).await)
}

async fn good_client(sim: &Simulator) -> Client {
    Client::new(&common::sdk::good_config(sim).await)
}

#[tokio::test]
async fn sdk_runs_every_ssm_operation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let ssm = good_client(&sim).await;

    let info = ssm
        .describe_instance_information()
        .filters(
            InstanceInformationStringFilter::builder()
                .key("tag:Name")
                .values("demo")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let list = info.instance_information_list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].instance_id(), Some("i-0123456789abcdef0"));
    assert_eq!(list[0].ping_status().map(|p| p.as_str()), Some("Online"));
    assert!(list[0].last_ping_date_time().is_some());

    let status = ssm
        .get_connection_status()
        .target("i-0123456789abcdef0")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().map(|s| s.as_str()), Some("connected"));

    let started = ssm
        .start_session()
        .target("i-0123456789abcdef0")
        .document_name("AWS-StartPortForwardingSession")
        .parameters("portNumber", vec!["8080".into()])
        .reason("sdk test")
        .send()
        .await
        .unwrap();
    let id = started.session_id().unwrap().to_owned();
    assert!(started.stream_url().unwrap().contains(&id));
    assert!(started.token_value().is_some());

    let resumed = ssm.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(resumed.session_id(), Some(id.as_str()));
    assert_ne!(resumed.token_value(), started.token_value());

    let active = ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    let s = &active.sessions()[0];
    assert_eq!(s.session_id(), Some(id.as_str()));
    assert_eq!(s.reason(), Some("sdk test"));
    assert_eq!(s.document_name(), Some("AWS-StartPortForwardingSession"));
    assert!(s.start_date().is_some());

    let t = ssm
        .terminate_session()
        .session_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(t.session_id(), Some(id.as_str()));
    sim.shutdown().await;
}

#[tokio::test]
async fn sdk_parses_the_service_errors() {
    let mut config = SimConfig::default();
    config.fleet.targets[2].deny_sessions = true;
    let denied = config.fleet.targets[2].id.clone();
    let sim = Simulator::start(config).await.unwrap();
    let ssm = good_client(&sim).await;

    let err = ssm
        .start_session()
        .target("i-0fedcba9876543210")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_target_not_connected(), "{err:?}");
    assert!(err.meta().message().unwrap().contains("is not connected"));

    let err = ssm
        .start_session()
        .target("i-0123456789abcdef0")
        .document_name("Nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_document(), "{err:?}");

    let err = ssm
        .start_session()
        .target(&denied)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("AccessDeniedException"), "{err:?}");

    let err = ssm
        .resume_session()
        .session_id("rssm-sim-nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_does_not_exist_exception(), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn sdk_with_wrong_credentials_gets_the_real_auth_errors() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let c = sim.config().credentials.clone();
    let wrong_key = client(&sim, "AKIAWRONGWRONGWRONG0", &c.secret_access_key).await;
    let err = wrong_key
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("UnrecognizedClientException"));
    assert_eq!(
        err.meta().message(),
        Some("The security token included in the request is invalid.")
    );
    let wrong_secret = client(&sim, &c.access_key_id, "wrong").await;
    let err = wrong_secret
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.meta().code(), Some("InvalidSignatureException"));
    sim.shutdown().await;
}

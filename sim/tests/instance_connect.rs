//! EC2 Instance Connect SendSSHPublicKey through the real SDK, and the keys an instance's
//! metadata service then lists for its sshd: valid for the TTL, for that instance and OS user
//! only, with the service's errors for bad input, unknown instances and a denied caller.

mod common;

use std::time::{Duration, Instant};

use common::DEMO;
use rssm_sim::{Fleet, SimConfig, Simulator, Target};

async fn client(sim: &Simulator) -> aws_sdk_ec2instanceconnect::Client {
    aws_sdk_ec2instanceconnect::Client::new(&common::sdk::good_config(sim).await)
}

/// What the instance's metadata service lists for `user` (a plain HTTP GET on loopback).
async fn active_keys(sim: &Simulator, instance: &str, user: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let req = format!(
        "GET /imds/{instance}/latest/meta-data/managed-ssh-keys/active-keys/{user}/ HTTP/1.1\r\n\
         Host: localhost\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn key(tag: &str) -> String {
    format!(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} {tag}",
        "Q".repeat(43)
    )
}

fn code<E: aws_sdk_ec2instanceconnect::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_sent_key_is_listed_for_its_instance_and_user_until_it_expires() {
    let sim = Simulator::start(SimConfig {
        instance_connect_key_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let eic = client(&sim).await;
    let out = eic
        .send_ssh_public_key()
        .instance_id(DEMO)
        .instance_os_user("ec2-user")
        .ssh_public_key(key("one"))
        .send()
        .await
        .unwrap();
    assert!(out.success());
    assert!(out.request_id().is_some());
    assert_eq!(
        active_keys(&sim, DEMO, "ec2-user").await,
        format!("{}\n", key("one"))
    );
    // Another user, another instance: nothing.
    assert_eq!(active_keys(&sim, DEMO, "root").await, "");
    assert_eq!(
        active_keys(&sim, "i-0fedcba9876543210", "ec2-user").await,
        ""
    );
    // Gone once its time is up (a bounded wait for the expiry, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !active_keys(&sim, DEMO, "ec2-user").await.is_empty() {
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_input_unknown_instances_and_denied_callers_get_the_services_errors() {
    let mut fleet = Fleet::default();
    let mut denied = Target::new("i-0aaaaaaaaaaaaaaa1");
    denied.deny_instance_connect = true;
    fleet.targets.push(denied);
    let sim = Simulator::start(SimConfig {
        fleet,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let eic = client(&sim).await;
    let send = |id: &str, user: &str, k: String| {
        eic.send_ssh_public_key()
            .instance_id(id)
            .instance_os_user(user)
            .ssh_public_key(k)
            .send()
    };
    let cases = [
        (
            "mi-0123456789abcdef0",
            "ec2-user",
            key("x"),
            "InvalidArgsException",
        ),
        (DEMO, "1bad user", key("x"), "InvalidArgsException"),
        (
            DEMO,
            "ec2-user",
            "ssh-dss AAAA".to_owned(),
            "InvalidArgsException",
        ),
        (
            "i-0bbbbbbbbbbbbbbb2",
            "ec2-user",
            key("x"),
            "EC2InstanceNotFoundException",
        ),
        ("i-0aaaaaaaaaaaaaaa1", "ec2-user", key("x"), "AuthException"),
    ];
    for (id, user, k, want) in cases {
        let e = send(id, user, k).await.unwrap_err().into_service_error();
        assert_eq!(code(&e), want, "{id} {user}: {e:?}");
    }
    let denied = send("i-0aaaaaaaaaaaaaaa1", "ec2-user", key("x"))
        .await
        .unwrap_err()
        .into_service_error();
    let message = denied.to_string();
    assert!(
        format!("{denied:?}").contains("ec2-instance-connect:SendSSHPublicKey"),
        "{message} / {denied:?}"
    );
}

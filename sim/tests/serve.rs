//! The `rssm-sim serve` binary, and the AWS CLI (from PyPI) against it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Served {
    child: Child,
    env: Vec<(String, String)>,
    /// Kept open while the simulator runs: it may still write to its stdout.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rssm-sim"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rssm-sim runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut env = Vec::new();
    // Every export line: endpoints (SSM, ECS, KMS, EC2, STS, IAM, EC2 Instance Connect), region
    // twice, the key pair.
    for _ in 0..11 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let line = line.trim_end();
        let (k, v) = line
            .strip_prefix("export ")
            .and_then(|kv| kv.split_once('='))
            .unwrap_or_else(|| panic!("not an export line: {line}"));
        env.push((k.to_owned(), v.trim_matches('\'').to_owned()));
    }
    Served {
        child,
        env,
        _stdout: stdout,
    }
}

impl Served {
    fn get(&self, k: &str) -> &str {
        &self.env.iter().find(|(n, _)| n == k).unwrap().1
    }
}

#[test]
fn serve_prints_the_client_environment() {
    let s = serve(&["--listen", "127.0.0.1:0"]);
    let names: Vec<&str> = s.env.iter().map(|(k, _)| k.as_str()).collect();
    for want in [
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_ECS",
        "AWS_ENDPOINT_URL_KMS",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL_IAM",
        "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let endpoint = s.get("AWS_ENDPOINT_URL_SSM");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert!(!endpoint.ends_with(":0"));
}

#[test]
fn serve_takes_random_keys_per_run_unless_told_to_use_the_example_ones() {
    // Its agent starts real shells as the user running it: other local users must not be able
    // to sign requests with keys everybody knows.
    let example = rssm_sim::SimCredentials::default();
    let (a, b) = (serve(&[]), serve(&[]));
    let key = |s: &Served| s.get("AWS_ACCESS_KEY_ID").to_owned();
    let secret = |s: &Served| s.get("AWS_SECRET_ACCESS_KEY").to_owned();
    assert_ne!(key(&a), example.access_key_id);
    assert_ne!(secret(&a), example.secret_access_key);
    assert_ne!(key(&a), key(&b));
    assert_ne!(secret(&a), secret(&b));
    let fixed = serve(&["--fixed-credentials"]);
    assert_eq!(key(&fixed), example.access_key_id);
    assert_eq!(secret(&fixed), example.secret_access_key);
}

#[test]
fn serve_rejects_a_bad_fleet_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_rssm-sim"))
        .args(["serve", "--fleet", "/nonexistent/fleet.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fleet"));
}

/// The AWS CLI (`pip install awscli`; `scripts/test.sh` installs it). Missing in CI is a failure;
/// a developer without it gets a loud note instead.
fn aws_cli() -> Option<String> {
    let cli = std::env::var("RSSM_SIM_AWS_CLI").unwrap_or_else(|_| "aws".to_owned());
    let ok = Command::new(&cli)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(cli)
    } else if std::env::var_os("CI").is_some() {
        panic!("the AWS CLI is required in CI: scripts/test.sh installs it (pip install awscli)");
    } else {
        eprintln!("AWS CLI not found: NOT TESTED (pip install awscli, or set RSSM_SIM_AWS_CLI)");
        None
    }
}

fn aws(cli: &str, s: &Served, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(cli);
    cmd.args(args).args(["--output", "json"]);
    for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1");
    for (k, v) in &s.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn aws_cli_lists_the_fleet_and_manages_sessions() {
    let Some(cli) = aws_cli() else { return };
    let s = serve(&[]);
    let (ok, out, err) = aws(&cli, &s, &["ssm", "describe-instance-information"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = v["InstanceInformationList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"i-0123456789abcdef0"), "{out}");

    let (ok, out, err) = aws(&cli, &s, &["ssm", "describe-sessions", "--state", "Active"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"Sessions\""), "{out}");

    let (ok, out, err) = aws(
        &cli,
        &s,
        &[
            "ssm",
            "terminate-session",
            "--session-id",
            "rssm-sim-00000000000000000",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("rssm-sim-00000000000000000"), "{out}");

    // Errors come back in a shape botocore parses into the service's error code.
    let (ok, _, err) = aws(
        &cli,
        &s,
        &["ssm", "start-session", "--target", "i-0fedcba9876543210"],
    );
    assert!(!ok);
    assert!(err.contains("TargetNotConnected"), "{err}");
}

#[test]
fn aws_cli_with_a_wrong_secret_gets_the_signature_error() {
    let Some(cli) = aws_cli() else { return };
    let mut s = serve(&[]);
    for (k, v) in &mut s.env {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "definitely-not-the-secret".into();
        }
    }
    let (ok, _, err) = aws(&cli, &s, &["ssm", "describe-sessions", "--state", "Active"]);
    assert!(!ok);
    assert!(err.contains("InvalidSignatureException"), "{err}");
}

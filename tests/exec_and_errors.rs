//! `rssm exec` end to end against the simulator, and what users see on bad input: one clear line
//! on stderr, a non-zero exit, no hang.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{rssm, run_bounded, Sim, DEMO};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exec_separates_stdout_and_stderr_and_propagates_exit_code_7() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args([
        "exec",
        DEMO,
        "--",
        "echo",
        "out-$((40+2));",
        "echo",
        "err-line",
        ">&2;",
        "exit",
        "7",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-42\n");
    assert_eq!(stderr(&out), "err-line\n");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn exec_passes_bulk_output_intact() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    // 200 000 bytes of output crosses many 1024-byte agent reads and messages.
    cmd.args(["exec", DEMO, "--", "head -c 200000 /dev/zero | tr '\\0' x"]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 200_000);
    assert!(out.stdout.iter().all(|&b| b == b'x'));
}

#[test]
fn exec_works_with_stdin_that_is_not_a_tty() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args(["exec", DEMO, "--", "true"]);
    // run_bounded gives /dev/null as stdin.
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn demo_runs_a_command_on_the_builtin_simulator() {
    let mut cmd = rssm();
    cmd.args(["--quiet", "demo", "--", "echo", "demo-ok;", "exit", "4"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "demo-ok\n");
    assert_eq!(out.status.code(), Some(4));
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(255), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
    assert!(err.starts_with("rssm: "), "{err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_target_is_a_clear_error() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.args(["exec", "i-00000000000000bad", "--", "true"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_one_line_error(&out, "i-00000000000000bad");
}

#[test]
fn malformed_target_is_refused_before_any_call() {
    let mut cmd = rssm();
    // Names, tags and IPs are targets too (looked up in EC2); a tag without a value is not.
    cmd.args(["exec", "tag:web", "--", "true"]);
    let out = run_bounded(cmd, Duration::from_secs(10));
    assert_one_line_error(&out, "expected tag:KEY=VALUE");
}

#[test]
fn offline_target_says_target_not_connected_and_how_to_diagnose() {
    let sim = Sim::start();
    let offline = sim
        .sim
        .config()
        .fleet
        .targets
        .iter()
        .find(|t| !t.is_online())
        .expect("the default fleet has an offline instance")
        .id
        .clone();
    let mut cmd = sim.rssm();
    cmd.args(["exec", &offline, "--", "true"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_one_line_error(&out, "TargetNotConnected");
    assert!(stderr(&out).contains("rssm doctor"));
}

#[test]
fn bad_credentials_are_rejected_with_the_services_reason() {
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.env("AWS_SECRET_ACCESS_KEY", "not-the-right-secret");
    cmd.args(["exec", DEMO, "--", "true"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_one_line_error(&out, "InvalidSignatureException");
    // The secret itself is never echoed back.
    assert!(!stderr(&out).contains("not-the-right-secret"));
}

#[test]
fn unreachable_endpoint_fails_fast_with_the_address() {
    // A port nothing listens on: bind then drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sim = Sim::start();
    let mut cmd = sim.rssm();
    cmd.env("AWS_ENDPOINT_URL_SSM", format!("http://127.0.0.1:{port}"));
    cmd.args(["exec", DEMO, "--", "true"]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_one_line_error(&out, "cannot reach the SSM endpoint");
}

#[test]
fn missing_region_is_explained() {
    let mut cmd = rssm();
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "x");
    cmd.args(["exec", DEMO, "--", "true"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_one_line_error(&out, "no AWS region");
}

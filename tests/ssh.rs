//! `rssm ssh` with real OpenSSH: a real `sshd` on a loopback port that trusts no key of its own
//! (`AuthorizedKeysFile none`) and asks the simulator's instance metadata for the keys EC2
//! Instance Connect holds (`AuthorizedKeysCommand`, as the ec2-instance-connect package does).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::sshd::{require, start_sshd_with, Sshd};
use common::{run_bounded, Sim, DEMO};
use rssm_sim::{Fleet, SimConfig};
use rssm_testkit::net::{connect_when_listening, echo_server, free_port, round_trip};

const LIMIT: Duration = Duration::from_secs(120);

/// An sshd that accepts exactly the keys the simulator's EC2 Instance Connect holds for DEMO.
fn instance_connect_sshd(sim: &Sim) -> Sshd {
    let curl = require("curl");
    start_sshd_with(&format!(
        "AuthorizedKeysFile none\n\
         AuthorizedKeysCommand {curl} -sf {}/imds/{DEMO}/latest/meta-data/managed-ssh-keys/active-keys/%u/\n\
         AuthorizedKeysCommandUser nobody\n",
        sim.sim.endpoint()
    ))
}

/// `rssm ssh --user USER demo` with ssh options that keep the machine's own ssh config, agent
/// and known hosts out of it, then `rest`.
fn rssm_ssh(sim: &Sim, sshd: &Sshd, rest: &[&str]) -> Command {
    let mut cmd = sim.rssm();
    // -vv: rssm logs the ssh command line it runs (never a secret).
    cmd.env_remove("SSH_AUTH_SOCK")
        .args(["-vv", "ssh", "--user", &sshd.user, "demo"])
        .args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "LogLevel=ERROR", "-p", &sshd.port.to_string()])
        .args(rest);
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_command_runs_with_no_key_set_up_anywhere_and_its_status_comes_back() {
    let sim = Sim::start();
    let sshd = instance_connect_sshd(&sim);
    // rssm's temporary directory of its own, to see that the key file does not outlive ssh.
    let tmp = common::TempDir::new("ssh-tmp");
    let mut cmd = rssm_ssh(&sim, &sshd, &["--", "echo ok"]);
    cmd.env("TMPDIR", &tmp.0);
    let o = run_bounded(cmd, LIMIT);
    assert_eq!(text(&o.stdout), "ok\n", "{}", text(&o.stderr));
    assert_eq!(o.status.code(), Some(0));
    // The key file was in that directory (and is gone, below).
    let key_dir = format!("{}/rssm-ssh-", tmp.0.display());
    assert!(text(&o.stderr).contains(&key_dir), "{}", text(&o.stderr));
    let mut cmd = rssm_ssh(&sim, &sshd, &["--", "exit 7"]);
    cmd.env("TMPDIR", &tmp.0);
    let o = run_bounded(cmd, LIMIT);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    // The key was pushed, and nothing was left behind.
    assert!(sim.logs.text().contains("instance connect key sent"));
    let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_local_forward_passed_to_ssh_works() {
    let sim = Sim::start();
    let sshd = instance_connect_sshd(&sim);
    let echo = echo_server(b"");
    let local = free_port();
    let mut cmd = rssm_ssh(
        &sim,
        &sshd,
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            &format!("{local}:127.0.0.1:{echo}"),
        ],
    );
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], local));
    drop(connect_when_listening(addr, LIMIT));
    let data = rssm_testkit::pattern::pattern(3, 100_000);
    assert_eq!(round_trip(addr, &data, LIMIT), data);
    // SAFETY: kill(2) on the process group of our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    let _ = child.wait();
}

#[test]
fn an_expired_key_is_refused_by_sshd_and_rssm_says_what_may_be_wrong() {
    // Keys that expire at once: what sshd sees when the 60 s ran out.
    let sim = Sim::with_config(SimConfig {
        instance_connect_key_ttl: Duration::ZERO,
        ..Default::default()
    });
    let sshd = instance_connect_sshd(&sim);
    let o = run_bounded(rssm_ssh(&sim, &sshd, &["--", "echo ok"]), LIMIT);
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(
        text(&o.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("EC2 Instance Connect"),
        "{}",
        text(&o.stderr)
    );
}

fn assert_one_line(o: &std::process::Output, needle: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(255), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} in {err}");
}

#[test]
fn a_denied_key_push_no_ssh_and_a_non_ec2_target_are_one_line_each() {
    let mut fleet = Fleet::default();
    for t in &mut fleet.targets {
        if t.id == DEMO {
            t.deny_instance_connect = true;
        }
    }
    let sim = Sim::with_config(SimConfig {
        fleet,
        ..Default::default()
    });
    let mut cmd = sim.rssm();
    cmd.args(["ssh", "--user", "root", "demo", "--", "true"]);
    assert_one_line(
        &run_bounded(cmd, LIMIT),
        "ec2-instance-connect:SendSSHPublicKey",
    );

    let mut cmd = sim.rssm();
    cmd.env("PATH", "/nonexistent")
        .args(["ssh", "demo", "--", "true"]);
    assert_one_line(&run_bounded(cmd, LIMIT), "no `ssh` on PATH");

    let onprem = sim
        .sim
        .config()
        .fleet
        .targets
        .iter()
        .find(|t| t.id.starts_with("mi-") && t.is_online())
        .expect("the default fleet has an online hybrid node")
        .id
        .clone();
    let mut cmd = sim.rssm();
    cmd.args(["ssh", "--user", "root", &onprem, "--", "true"]);
    assert_one_line(&run_bounded(cmd, LIMIT), "is not an EC2 instance");
}

#[test]
fn doctor_says_whether_rssm_ssh_can_push_its_key() {
    let mut fleet = Fleet::default();
    for t in &mut fleet.targets {
        if t.id == DEMO {
            t.deny_instance_connect = true;
        }
    }
    for (fleet, want) in [(Fleet::default(), "ok"), (fleet, "warn")] {
        let sim = Sim::with_config(SimConfig {
            fleet,
            ..Default::default()
        });
        let mut cmd = sim.rssm();
        cmd.args(["doctor", "--output", "json", "demo"]);
        let o = run_bounded(cmd, LIMIT);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&o.stdout), text(&o.stderr)));
        let rows = report.to_string();
        let row = report["checks"]
            .as_array()
            .or_else(|| report.as_array())
            .into_iter()
            .flatten()
            .find(|r| r["check"] == "ssh key push")
            .unwrap_or_else(|| panic!("no ssh key push row: {rows}"));
        assert_eq!(row["verdict"], want, "{row}");
        if want == "warn" {
            assert!(
                row["fix"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ec2-instance-connect:SendSSHPublicKey"),
                "{row}"
            );
        }
        // A warning is not a failure: Session Manager itself works.
        assert_eq!(o.status.code(), Some(0), "{rows}");
    }
}

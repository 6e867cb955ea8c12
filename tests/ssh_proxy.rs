//! `rssm proxy` as a real OpenSSH ProxyCommand: a real `sshd` on a loopback port (throwaway host
//! and user keys), real `ssh` and `scp`, the simulator in between.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::run_bounded;
use common::sshd::{require, ssh_opts, start_sshd, Sshd};
use common::{rssm_path, Sim, DEMO};
use sha2::{Digest, Sha256};

/// The ProxyCommand of these tests: `rssm proxy`.
fn proxy_opts(sshd: &Sshd) -> Vec<String> {
    ssh_opts(sshd, &format!("{} proxy %h %p", rssm_path().display()))
}

#[test]
fn ssh_through_rssm_proxy_runs_a_command_and_returns_its_exit_code() {
    let sim = Sim::start();
    let sshd = start_sshd();
    let mut ssh = Command::new(require("ssh"));
    sim.apply_env(&mut ssh);
    ssh.args(proxy_opts(&sshd))
        .args(["-p", &sshd.port.to_string()])
        .arg(format!("{}@{DEMO}", sshd.user))
        .arg("echo through-$((20+1)); exit 5");
    let out = run_bounded(ssh, Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through-21\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn scp_of_64_mib_through_rssm_proxy_arrives_intact_both_ways() {
    // Bulk data: lift the agent's 1 ms-per-read pacing (the service-like cap has its own tests).
    let sim = Sim::with_config(rssm_sim::SimConfig {
        agent_read_pause: Duration::ZERO,
        ..Default::default()
    });
    let sshd = start_sshd();
    let src = sshd.dir.0.join("payload.bin");
    let mut data = vec![0u8; 64 * 1024 * 1024];
    let mut state = 0x9e3779b97f4a7c15u64;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::File::create(&src)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let want = Sha256::digest(&data);
    drop(data);

    // Upload: local file → "remote" path (sshd runs on this machine, so both are local files).
    let uploaded = sshd.dir.0.join("uploaded.bin");
    let mut scp = Command::new(require("scp"));
    sim.apply_env(&mut scp);
    scp.args(proxy_opts(&sshd))
        .args(["-q", "-P", &sshd.port.to_string()])
        .arg(&src)
        .arg(format!("{}@{DEMO}:{}", sshd.user, uploaded.display()));
    let started = Instant::now();
    let out = run_bounded(scp, Duration::from_secs(300));
    let up = started.elapsed();
    assert!(
        out.status.success(),
        "scp upload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        Sha256::digest(std::fs::read(&uploaded).unwrap()),
        want,
        "upload sha256"
    );

    // Download.
    let downloaded = sshd.dir.0.join("downloaded.bin");
    let mut scp = Command::new(require("scp"));
    sim.apply_env(&mut scp);
    scp.args(proxy_opts(&sshd))
        .args(["-q", "-P", &sshd.port.to_string()])
        .arg(format!("{}@{DEMO}:{}", sshd.user, src.display()))
        .arg(&downloaded);
    let started = Instant::now();
    let out = run_bounded(scp, Duration::from_secs(300));
    let down = started.elapsed();
    assert!(
        out.status.success(),
        "scp download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        Sha256::digest(std::fs::read(&downloaded).unwrap()),
        want,
        "download sha256"
    );
    eprintln!(
        "scp 64 MiB through rssm proxy: up {:.1} MB/s, down {:.1} MB/s",
        64.0 * 1.048576 / up.as_secs_f64(),
        64.0 * 1.048576 / down.as_secs_f64()
    );
}

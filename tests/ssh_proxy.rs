//! `rssm proxy` as a real OpenSSH ProxyCommand: a real `sshd` on a loopback port (throwaway host
//! and user keys), real `ssh` and `scp`, the simulator in between.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rssm_path, Sim, TempDir, DEMO};
use sha2::{Digest, Sha256};

/// A throwaway sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: TempDir,
    user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(tool: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("{tool} is required for this test: install openssh-server and openssh-client (.ci/run does)");
}

fn keygen(path: &Path) {
    let ok = Command::new(require("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn start_sshd() -> Sshd {
    let sshd = require("sshd");
    let dir = TempDir::new("sshd");
    let d = &dir.0;
    keygen(&d.join("host_key"));
    keygen(&d.join("user_key"));
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin yes\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new(&sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd {
        child,
        port,
        dir,
        user,
    }
}

/// ssh/scp options for going through `rssm proxy`.
fn ssh_opts(sshd: &Sshd) -> Vec<String> {
    let d = sshd.dir.0.display();
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        format!("{d}/user_key"),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        format!("ProxyCommand={} proxy %h %p", rssm_path().display()),
    ]
}

fn run_bounded(mut cmd: Command, limit: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("starts");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "timed out after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn ssh_through_rssm_proxy_runs_a_command_and_returns_its_exit_code() {
    let sim = Sim::start();
    let sshd = start_sshd();
    let mut ssh = Command::new(require("ssh"));
    sim.apply_env(&mut ssh);
    ssh.args(ssh_opts(&sshd))
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
    scp.args(ssh_opts(&sshd))
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
    scp.args(ssh_opts(&sshd))
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

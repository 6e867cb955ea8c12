//! Sessions survive a dropped websocket: ResumeSession for a fresh token, the same stream, and
//! retransmission filling the gap (PROTOCOL.md §5.6). The simulator kills the data channel
//! mid-transfer; nothing may be lost or duplicated.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Sim, DEMO};
use rssm_sim::{FaultConfig, SimConfig};
use sha2::{Digest, Sha256};

fn run_bounded(mut cmd: std::process::Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("rssm starts");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!("hung; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn killing_sim(faults: FaultConfig) -> Sim {
    Sim::with_config(SimConfig {
        agent_read_pause: Duration::ZERO,
        faults,
        ..Default::default()
    })
}

#[test]
fn exec_output_survives_two_websocket_kills_exactly_once() {
    let sim = killing_sim(FaultConfig {
        kill_after_messages: Some(400),
        kill_times: 2,
        ..Default::default()
    });
    let mut cmd = sim.rssm();
    cmd.args(["exec", DEMO, "--", "head -c 3000000 /dev/zero | tr '\\0' z"]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout.len(), 3_000_000, "{err}");
    assert!(out.stdout.iter().all(|&b| b == b'z'));
    assert_eq!(err.matches("reconnecting").count(), 2, "{err}");
    assert_eq!(err.matches("resumed after").count(), 2, "{err}");
}

#[test]
fn forward_survives_loss_duplication_reordering_latency_and_two_kills() {
    let sim = killing_sim(FaultConfig {
        drop: 0.01,
        duplicate: 0.01,
        reorder: 0.01,
        latency: Duration::from_millis(20),
        kill_after_messages: Some(3000),
        kill_times: 2,
        ..Default::default()
    });
    // A TCP echo server on loopback.
    let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = echo.accept() {
            let mut r = s.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut s);
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    });
    let local = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = sim.rssm();
    cmd.args([
        "forward",
        DEMO,
        "-L",
        &format!("{local}:localhost:{echo_port}"),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, local));
    let mut conn = None;
    for _ in 0..200 {
        if let Ok(c) = TcpStream::connect(addr) {
            conn = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let conn = conn.expect("forward listens");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    const LEN: usize = 8 * 1024 * 1024;
    let mut data = vec![0u8; LEN];
    let mut x = 0x243f6a8885a308d3u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let want = Sha256::digest(&data);
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(LEN);
    (&conn)
        .read_to_end(&mut got)
        .expect("echo arrives without a reset");
    sender.join().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(got.len(), LEN, "{err}");
    assert_eq!(Sha256::digest(&got), want, "{err}");
    assert!(err.matches("resumed after").count() >= 2, "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
}
